//! The dashboard's model: everything it knows of the cluster (rows built from the API's
//! objects, the flow events it has seen, the stepper's state), what the learner is looking at,
//! and [`Model::update`], the one function that changes it. Nothing here does I/O: the shell
//! (`tui::app`) feeds it [`Msg`]s and carries out the [`Effect`]s it returns.

use std::collections::{BTreeMap, VecDeque};

use crossterm::event::KeyEvent;
use serde::Deserialize;

use crate::flow::FlowEvent;

/// How many flow events the dashboard keeps.
pub const KEPT_EVENTS: usize = 5_000;

/// A pod as the dashboard shows it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodRow {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its uid.
    pub uid: String,
    /// The node it is bound to, if any.
    pub node: Option<String>,
    /// `status.phase`, or `Terminating` when it has a deletionTimestamp.
    pub phase: String,
    /// What `kubectl get pods` prints in STATUS (`Running`, `CrashLoopBackOff`, `Init:0/1`, ...).
    pub status: String,
    /// Ready containers.
    pub ready: u32,
    /// All containers.
    pub containers: u32,
    /// Restarts, summed over containers.
    pub restarts: u32,
    /// The root of its ownerReferences chain (`Deployment/web`), when the dashboard knows it.
    pub owner: String,
    /// `metadata.creationTimestamp` (RFC 3339).
    pub created: String,
}

/// A node as the dashboard shows it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeRow {
    /// Its name.
    pub name: String,
    /// The Ready condition's status: `True`, `False` or `Unknown`.
    pub ready: String,
    /// `spec.unschedulable` (cordoned).
    pub unschedulable: bool,
    /// Its taints, as `key:Effect`.
    pub taints: Vec<String>,
    /// `status.nodeInfo.containerRuntimeVersion`.
    pub runtime: String,
}

/// A Deployment as the dashboard shows it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeploymentRow {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// `spec.replicas`.
    pub desired: i32,
    /// `status.readyReplicas`.
    pub ready: i32,
    /// `status.updatedReplicas`.
    pub updated: i32,
    /// `status.availableReplicas`.
    pub available: i32,
}

/// A Kubernetes Event as the dashboard shows it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventRow {
    /// Its namespace.
    pub namespace: String,
    /// Its name (the key the dashboard keeps it under).
    pub name: String,
    /// `Normal` or `Warning`.
    pub type_: String,
    /// Its reason (`Scheduled`, `Pulled`, ...).
    pub reason: String,
    /// The involved object, `Kind/name`.
    pub object: String,
    /// Its message.
    pub message: String,
    /// How many times it happened.
    pub count: i32,
    /// When it last happened (RFC 3339).
    pub last: String,
}

/// A component of the cluster (`apiserver`, `scheduler`, `controller-manager`, a node's kubelet),
/// as `GET /orrery/v1/components` lists it.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct ComponentRow {
    /// Its name (`scheduler`, `node-1`, ...).
    pub name: String,
    /// `component` or `node`.
    pub role: String,
    /// Whether it runs.
    pub running: bool,
}

/// A gate waiting for the learner, as `GET /orrery/v1/stepper` lists it.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Gate {
    /// Release it by this id.
    pub id: u64,
    /// "scheduler wants to BIND default/web-7d4b9-abcde to node-1".
    pub words: String,
    /// Who waits.
    pub from: String,
    /// Its verb.
    pub verb: String,
    /// The object's kind.
    #[serde(default)]
    pub kind: String,
    /// The object's namespace.
    #[serde(default)]
    pub namespace: String,
    /// The object's name.
    #[serde(default)]
    pub name: String,
    /// Its story.
    #[serde(default)]
    pub root: String,
}

/// The stepper, as `GET /orrery/v1/stepper` answers.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct StepperView {
    /// `run` or `step`.
    pub mode: String,
    /// The waiting gates, oldest first.
    #[serde(default)]
    pub pending: Vec<Gate>,
    /// The story step mode holds (`{"namespace":..,"root":..}`), if focused.
    #[serde(default)]
    pub focus: Option<serde_json::Value>,
}

/// What the store holds for one object, as `GET /orrery/v1/store/<resource>/<namespace>/<name>`
/// answers (`namespace` is `-` for cluster-scoped objects).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreInfo {
    /// The store key (`/registry/pods/default/web-1`).
    pub key: String,
    /// The revision that created it.
    pub create_revision: u64,
    /// The revision that last changed it.
    pub mod_revision: u64,
    /// How many times it was written since it was created.
    pub version: u64,
}

/// Everything the detail view shows of one object.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Detail {
    /// Its kind (`Pod`, `Deployment`, `Node`, ...).
    pub kind: String,
    /// Its namespace, empty for cluster-scoped objects.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The object as YAML (`kubectl get -o yaml`).
    pub yaml: String,
    /// For a pod: the scheduler's decision (`GET /orrery/v1/scheduling/<ns>/<pod>`), as JSON.
    pub decision: Option<serde_json::Value>,
    /// What the store holds for it.
    pub store: Option<StoreInfo>,
    /// Its Events, oldest first.
    pub events: Vec<EventRow>,
}

/// Something the cluster or the learner did; [`Model::update`] takes one at a time.
#[derive(Clone, Debug)]
pub enum Msg {
    /// A key press.
    Key(KeyEvent),
    /// The terminal's new size.
    Resize(u16, u16),
    /// A flow event, in sequence order.
    Flow(FlowEvent),
    /// The flow bus dropped this many events because the dashboard read too slowly.
    Lost(u64),
    /// A pod was added or changed.
    Pod(PodRow),
    /// A pod is gone (namespace, name).
    PodGone(String, String),
    /// A node was added or changed.
    Node(NodeRow),
    /// A node is gone.
    NodeGone(String),
    /// A Deployment was added or changed.
    Deployment(DeploymentRow),
    /// A Deployment is gone (namespace, name).
    DeploymentGone(String, String),
    /// An Event was added or changed.
    Event(EventRow),
    /// The components and whether they run.
    Components(Vec<ComponentRow>),
    /// The stepper's state.
    Stepper(StepperView),
    /// The detail the model asked for with [`Effect::Describe`].
    Detail(Detail),
    /// Log lines the model asked for with [`Effect::Logs`] (namespace, pod, text).
    Logs(String, String, String),
    /// The manifests that can be applied (paths, relative to `manifests/`).
    Manifests(Vec<String>),
    /// An effect finished: what to tell the learner, and whether it failed.
    Done(String, bool),
    /// Time passed (the shell ticks a few times a second, for ages and fades).
    Tick(jiff::Timestamp),
}

/// Something the shell must do for the model. Every action goes through the Kubernetes API or
/// a `/orrery/v1` control endpoint, so it appears in the flow itself.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// `POST /orrery/v1/stepper` with this JSON body.
    Stepper(serde_json::Value),
    /// Fetch the [`Detail`] of one object (kind, namespace, name).
    Describe(String, String, String),
    /// Fetch a pod's logs (namespace, name).
    Logs(String, String),
    /// Apply the manifest at this path (server-side apply, as `kubectl apply --server-side`).
    Apply(String),
    /// Scale a Deployment (namespace, name, replicas) through its scale subresource.
    Scale(String, String, i32),
    /// Delete a pod (namespace, name).
    DeletePod(String, String),
    /// Cordon (true) or uncordon (false) a node.
    Cordon(String, bool),
    /// Drain a node: cordon it, then evict its pods (not DaemonSet pods) through `pods/eviction`.
    Drain(String),
    /// Stop (false) or start (true) a node's kubelet: `POST /orrery/v1/nodes/<name>/{stop,start}`.
    Kubelet(String, bool),
    /// Stop (false) or start (true) a component (`apiserver`, `scheduler`,
    /// `controller-manager`): `POST /orrery/v1/components/<name>/{stop,start}`.
    Component(String, bool),
    /// Leave the dashboard; the cluster keeps running (an attached dashboard).
    Quit,
    /// Leave the dashboard and stop the cluster (`orrery up`, after the learner confirmed).
    QuitAndStop,
}

/// Where the dashboard runs: inside `orrery up` (quitting asks, then stops the cluster) or
/// attached with `orrery tui` (quitting leaves the cluster running).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Host {
    /// Inside `orrery up`.
    Up,
    /// `orrery tui`.
    Attached,
}

/// The whole state of the dashboard.
#[derive(Debug)]
pub struct Model {
    /// Where it runs.
    pub host: Host,
    /// The cluster's name.
    pub cluster: String,
    /// The flow events seen, oldest first, at most [`KEPT_EVENTS`].
    pub events: VecDeque<FlowEvent>,
    /// Flow events the bus dropped before the dashboard read them.
    pub lost: u64,
    /// Pods by `namespace/name`.
    pub pods: BTreeMap<String, PodRow>,
    /// Nodes by name.
    pub nodes: BTreeMap<String, NodeRow>,
    /// Deployments by `namespace/name`.
    pub deployments: BTreeMap<String, DeploymentRow>,
    /// Events by `namespace/name`.
    pub kube_events: BTreeMap<String, EventRow>,
    /// The components.
    pub components: Vec<ComponentRow>,
    /// The stepper.
    pub stepper: StepperView,
    /// The manifests that can be applied.
    pub manifests: Vec<String>,
    /// The terminal's size.
    pub size: (u16, u16),
    /// The latest tick.
    pub now: Option<jiff::Timestamp>,
}

impl Model {
    /// An empty model.
    pub fn new(host: Host, cluster: &str) -> Self {
        Model {
            host,
            cluster: cluster.to_owned(),
            events: VecDeque::new(),
            lost: 0,
            pods: BTreeMap::new(),
            nodes: BTreeMap::new(),
            deployments: BTreeMap::new(),
            kube_events: BTreeMap::new(),
            components: Vec::new(),
            stepper: StepperView::default(),
            manifests: Vec::new(),
            size: (80, 24),
            now: None,
        }
    }
}
