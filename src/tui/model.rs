//! The dashboard's model: everything it knows of the cluster (rows built from the API's
//! objects, the flow events it has seen, the stepper's state), what the learner is looking at,
//! and [`Model::update`], the one function that changes it. Nothing here does I/O: the shell
//! (`tui::app`) feeds it [`Msg`]s and carries out the [`Effect`]s it returns.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crossterm::event::KeyEvent;
use serde::Deserialize;

mod lesson;

pub use lesson::{Busy, Learn, OpenLesson, fill};

use super::metrics::{Metrics, MetricsRead, Resources, Usage};
use super::services::{NodeProxy, ServiceRow, SliceRow, sync_of};
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
    /// Restarts, summed over the containers kubectl counts.
    pub restarts: i64,
    /// When the last of those restarts was, if a container says.
    pub last_restart: Option<jiff::Timestamp>,
    /// The root of its ownerReferences chain (`Deployment/web`), when the dashboard knows it.
    pub owner: String,
    /// `metadata.creationTimestamp` (RFC 3339).
    pub created: String,
}

impl PodRow {
    /// RESTARTS as kubectl prints it at `now` (`3 (5m ago)`); the bare count before the
    /// dashboard's first tick.
    pub fn restarts_text(&self, now: Option<jiff::Timestamp>) -> String {
        match now {
            Some(now) => {
                crate::apimachinery::printers::restarts_text(self.restarts, self.last_restart, now)
            }
            None => self.restarts.to_string(),
        }
    }
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

/// A StatefulSet, ReplicationController, CronJob or PodDisruptionBudget as the dashboard lists
/// it: after namespace and name, the columns `kubectl get` prints for its kind
/// ([`View::workload_columns`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkloadRow {
    /// `StatefulSet`, `ReplicationController`, `CronJob` or `PodDisruptionBudget`.
    pub kind: String,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The kind's columns, printed.
    pub columns: Vec<String>,
    /// Whether it is as wanted (all replicas ready; a disruption allowed; a CronJob not
    /// suspended).
    pub healthy: bool,
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
    /// For a component that elects a leader, its Lease (`kube-system/kube-scheduler`).
    #[serde(default)]
    pub lease: Option<String>,
    /// For a component that elects a leader, whether it holds its Lease (leads) or stands by.
    #[serde(default)]
    pub leading: Option<bool>,
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
    /// How many times it was written since it was created; absent once the store's history of
    /// it was compacted.
    #[serde(default)]
    pub version: Option<u64>,
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
    /// A node's `status.allocatable` (name, CPU and memory).
    Allocatable(String, Usage),
    /// A pod's requests and limits, its containers' summed (namespace, name, resources).
    PodResources(String, String, Resources),
    /// What the metrics API (`metrics.k8s.io/v1beta1`) answered this poll.
    Metrics(MetricsRead),
    /// A Deployment was added or changed.
    Deployment(DeploymentRow),
    /// A Deployment is gone (namespace, name).
    DeploymentGone(String, String),
    /// A StatefulSet, CronJob or PodDisruptionBudget was added or changed.
    Workload(WorkloadRow),
    /// One is gone (kind, namespace, name).
    WorkloadGone(String, String, String),
    /// An Event was added or changed.
    Event(EventRow),
    /// A Service was added or changed.
    Service(ServiceRow),
    /// A Service is gone (namespace, name).
    ServiceGone(String, String),
    /// An EndpointSlice was added or changed.
    Slice(SliceRow),
    /// An EndpointSlice is gone (namespace, name).
    SliceGone(String, String),
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
    /// The learner's progress, as read or just saved.
    Progress(crate::learn::progress::Progress),
    /// One action's outcome (`Some`), or the end of them (`None`), of a lesson's step (lesson
    /// index, step index).
    LessonAction(usize, usize, Option<crate::learn::check::Outcome>),
    /// What a lesson step's checks found (lesson index, step index, outcomes in order, the
    /// variables they captured).
    LessonChecked(
        usize,
        usize,
        Vec<crate::learn::check::Outcome>,
        BTreeMap<String, String>,
    ),
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
    /// Stop, kill or start a component (`apiserver`, `scheduler`, `controller-manager`):
    /// `POST /orrery/v1/components/<name>/{stop,kill,start}`.
    Component(String, Operation),
    /// Leave the dashboard; the cluster keeps running (an attached dashboard).
    Quit,
    /// Leave the dashboard and stop the cluster (`orrery up`, after the learner confirmed).
    QuitAndStop,
    /// Perform a lesson step's actions, in order (`x`), answering [`Msg::LessonAction`].
    LessonDo {
        /// The lesson's index in the catalogue.
        lesson: usize,
        /// The step's index.
        step: usize,
        /// Its actions.
        actions: Vec<crate::learn::lesson::Action>,
        /// The lesson's variables so far.
        vars: BTreeMap<String, String>,
    },
    /// Try a lesson step's checks once each, in order (`c`), answering [`Msg::LessonChecked`].
    LessonCheck {
        /// The lesson's index in the catalogue.
        lesson: usize,
        /// The step's index.
        step: usize,
        /// Its checks.
        checks: Vec<crate::learn::lesson::Check>,
        /// The lesson's variables so far.
        vars: BTreeMap<String, String>,
        /// Its flow checks look at the hops after this sequence number.
        since: u64,
    },
    /// Record that a lesson's step held, in the progress file (answering [`Msg::Progress`]).
    SaveProgress {
        /// The lesson's name.
        lesson: String,
        /// The step's index.
        step: usize,
        /// How many steps the lesson has.
        steps: usize,
    },
}

/// What `:stop`, `:kill` and `:start` do to a component.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Stop it as its process is stopped (a leading kube-scheduler gives its Lease up).
    Stop,
    /// Stop it as if its process died: nothing is given back.
    Kill,
    /// Start it again.
    Start,
}

impl Operation {
    /// The control endpoint's action: `stop`, `kill`, `start`.
    pub fn action(self) -> &'static str {
        match self {
            Operation::Stop => "stop",
            Operation::Kill => "kill",
            Operation::Start => "start",
        }
    }
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
    /// StatefulSets, CronJobs and PodDisruptionBudgets by `Kind/namespace/name`.
    pub workloads: BTreeMap<String, WorkloadRow>,
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
    /// What the learner is looking at.
    pub view: View,
    /// Where `esc` goes back to, most recent last, each with the filter it had.
    pub back: Vec<(View, String)>,
    /// The selected row of each list view (an index into its filtered rows).
    pub selection: BTreeMap<View, usize>,
    /// The selected timeline event by `seq`; `None` follows the newest event.
    pub timeline_selected: Option<u64>,
    /// The timeline groups events by story (`g`) instead of listing them live.
    pub grouped: bool,
    /// The timeline shows heartbeats (every hop about a Lease but the leader election's own,
    /// [`FlowEvent::is_heartbeat`]: the kubelets' and leaders' renewals and their watch
    /// deliveries), which `h` toggles; hidden at first, so a story is not drowned by them.
    pub heartbeats: bool,
    /// The `/` filter over the current list or timeline (name, namespace or component).
    pub filter: String,
    /// The prompt on the bottom line, if one is open.
    pub prompt: Option<Prompt>,
    /// The status line's message and whether it reports a failure.
    pub status: Option<(String, bool)>,
    /// The object the detail view shows (kind, namespace, name), asked for with `d`.
    pub detail_target: Option<(String, String, String)>,
    /// The detail the shell fetched for `detail_target`.
    pub detail: Option<Detail>,
    /// The logs view's pod and text (namespace, name, text).
    pub logs: Option<(String, String, String)>,
    /// How far the detail, logs or help view is scrolled.
    pub scroll: usize,
    /// Draw without colour (bold and reversed only): set when `NO_COLOR` is set.
    pub monochrome: bool,
    /// Gates this dashboard asked to release that the last stepper poll still listed.
    pub released: BTreeSet<u64>,
    /// The controllers (`controller/deployment`, ...) seen in the flow.
    pub controllers: BTreeSet<String>,
    /// Pods by node (`""` for pods no node holds yet), kept as pods come and go so the map
    /// never walks every pod.
    pub node_pods: BTreeMap<String, NodePods>,
    /// Services by `namespace/name`.
    pub services: BTreeMap<String, ServiceRow>,
    /// EndpointSlices by `namespace/name`.
    pub slices: BTreeMap<String, SliceRow>,
    /// What each node's kube-proxy last programmed (from its `SYNC` hops), by node.
    pub kube_proxy: BTreeMap<String, NodeProxy>,
    /// Live usage from the metrics API, allocatable, requests and limits, and the
    /// autoscalers' decisions from the flow (`:top`).
    pub metrics: Metrics,
    /// What a lesson asks the learner to watch: drawn marked on the map and the timeline.
    pub highlight: Highlight,
    /// The flow hop the detail view was opened from (`d` on a timeline row): the detail starts
    /// with it and why it happened.
    pub detail_hop: Option<FlowEvent>,
    /// The lessons, the learner's progress and the lesson open (`:learn`).
    pub learn: Learn,
}

/// What the map and timeline mark for the learner (a lesson's step sets it): components by
/// name as the supervisor and the flow name them (`apiserver`, `store`, `scheduler`,
/// `controller-manager`, `kubelet`, `kube-proxy`, `runtime`, `etcd-2`, ...), and hops by pattern.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Highlight {
    /// Components to mark.
    pub components: BTreeSet<String>,
    /// Hops to mark.
    pub hops: Vec<crate::flow::HopPattern>,
}

impl Highlight {
    /// Whether `hop` is one to mark.
    pub fn hop(&self, hop: &FlowEvent) -> bool {
        self.hops.iter().any(|pattern| pattern.matches(hop))
    }

    /// Whether the map marks the component `who` (a name as the flow and the supervisor give
    /// it): named itself, or by what it is an instance of — `kubelet` marks every
    /// `kubelet/<node>`, `scheduler` every replica `scheduler-<n>`, `etcd` every `etcd-<n>`,
    /// and `controller/deployment` may also be named `deployment`.
    pub fn component(&self, who: &str) -> bool {
        if self.components.is_empty() {
            return false;
        }
        let base = who.split('/').next().unwrap_or(who);
        let instance_of = base
            .rsplit_once('-')
            .filter(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .map(|(kind, _)| kind);
        self.components.contains(who)
            || (base != who && base != "controller" && self.components.contains(base))
            || instance_of.is_some_and(|kind| self.components.contains(kind))
            || who
                .strip_prefix("controller/")
                .is_some_and(|short| self.components.contains(short))
    }
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
            workloads: BTreeMap::new(),
            kube_events: BTreeMap::new(),
            components: Vec::new(),
            stepper: StepperView::default(),
            manifests: Vec::new(),
            size: (80, 24),
            now: None,
            view: View::Home,
            back: Vec::new(),
            selection: BTreeMap::new(),
            timeline_selected: None,
            grouped: false,
            heartbeats: false,
            filter: String::new(),
            prompt: None,
            status: None,
            detail_target: None,
            detail: None,
            logs: None,
            scroll: 0,
            monochrome: false,
            released: BTreeSet::new(),
            controllers: BTreeSet::new(),
            node_pods: BTreeMap::new(),
            services: BTreeMap::new(),
            slices: BTreeMap::new(),
            kube_proxy: BTreeMap::new(),
            metrics: Metrics::default(),
            highlight: Highlight::default(),
            detail_hop: None,
            learn: Learn::default(),
        }
    }
}

/// A screen of the dashboard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum View {
    /// The cluster map above the flow timeline (`:map`).
    Home,
    /// The flow timeline alone (`:flow`).
    Flow,
    /// `:pods`.
    Pods,
    /// `:deploy`.
    Deployments,
    /// `:sts`.
    StatefulSets,
    /// `:rc`.
    ReplicationControllers,
    /// `:cj`.
    CronJobs,
    /// `:pdb`.
    Budgets,
    /// `:nodes`.
    Nodes,
    /// `:events`.
    Events,
    /// `:svc`: Services, and the selected one's ports, endpoints and kube-proxy state.
    Services,
    /// `:top`: live CPU and memory of nodes and pods, and the autoscalers' decisions.
    Top,
    /// `:store`: the store's writes, from the flow.
    Store,
    /// One object: YAML, status, decision, store and Events.
    Detail,
    /// A pod's logs.
    Logs,
    /// Every key.
    Help,
    /// `:learn`: the lessons, with the learner's progress.
    Learn,
}

impl View {
    /// The kind a workload list shows.
    pub fn workload_kind(self) -> Option<&'static str> {
        match self {
            View::StatefulSets => Some("StatefulSet"),
            View::ReplicationControllers => Some("ReplicationController"),
            View::CronJobs => Some("CronJob"),
            View::Budgets => Some("PodDisruptionBudget"),
            _ => None,
        }
    }

    /// The columns a workload list prints after NAMESPACE and NAME, as `kubectl get` does.
    pub fn workload_columns(self) -> &'static [&'static str] {
        match self {
            View::StatefulSets => &["READY"],
            View::ReplicationControllers => &["DESIRED", "CURRENT", "READY"],
            View::CronJobs => &["SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST SCHEDULE"],
            View::Budgets => &["MIN AVAILABLE", "MAX UNAVAILABLE", "ALLOWED DISRUPTIONS"],
            _ => &[],
        }
    }

    /// Its name on the status line (the command that opens it).
    pub fn name(self) -> &'static str {
        match self {
            View::Home => "map",
            View::Flow => "flow",
            View::Pods => "pods",
            View::Deployments => "deploy",
            View::StatefulSets => "sts",
            View::ReplicationControllers => "rc",
            View::CronJobs => "cj",
            View::Budgets => "pdb",
            View::Nodes => "nodes",
            View::Events => "events",
            View::Services => "svc",
            View::Top => "top",
            View::Store => "store",
            View::Detail => "detail",
            View::Logs => "logs",
            View::Help => "help",
            View::Learn => "learn",
        }
    }

    /// Whether it shows the flow timeline.
    pub fn timeline(self) -> bool {
        matches!(self, View::Home | View::Flow)
    }
}

/// The prompt on the bottom line.
#[derive(Clone, Debug, PartialEq)]
pub enum Prompt {
    /// `:` and what was typed so far.
    Command(String),
    /// `/` and what was typed so far (the filter applies as it is typed).
    Filter(String),
    /// A yes/no question.
    Confirm(Confirm),
    /// The replica count for a Deployment (namespace, name, digits typed).
    Scale(String, String, String),
    /// The manifest picker (`a`), with the selected manifest's index.
    Picker(usize),
}

/// What a yes/no question would do.
#[derive(Clone, Debug, PartialEq)]
pub enum Confirm {
    /// Quit `orrery up` and stop the cluster.
    QuitAndStop,
    /// Delete a pod (namespace, name).
    DeletePod(String, String),
    /// Drain a node.
    Drain(String),
}

impl Confirm {
    /// The question, as the prompt asks it.
    pub fn question(&self) -> String {
        match self {
            Confirm::QuitAndStop => "stop the cluster? (y/n)".to_owned(),
            Confirm::DeletePod(ns, name) => format!("delete pod {ns}/{name}? (y/n)"),
            Confirm::Drain(node) => format!("drain {node} (cordon, then evict its pods)? (y/n)"),
        }
    }
}

/// How a pod is coloured on the map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodClass {
    /// Running and every container ready.
    Ready = 0,
    /// Running, not every container ready (or terminating).
    NotReady = 1,
    /// Not running yet.
    Pending = 2,
    /// Failed, crash-looping or in error.
    Failed = 3,
    /// Completed.
    Succeeded = 4,
}

impl PodClass {
    /// Every class, in the order the map counts them.
    pub const ALL: [PodClass; 5] = [
        PodClass::Ready,
        PodClass::NotReady,
        PodClass::Pending,
        PodClass::Failed,
        PodClass::Succeeded,
    ];

    /// The class of `pod`.
    pub fn of(pod: &PodRow) -> PodClass {
        let status = pod.status.as_str();
        if pod.phase == "Failed"
            || status.contains("CrashLoop")
            || status.contains("Error")
            || status.contains("OOMKilled")
            || status.contains("BackOff")
        {
            PodClass::Failed
        } else if pod.phase == "Succeeded" || status == "Completed" {
            PodClass::Succeeded
        } else if pod.phase == "Terminating" {
            PodClass::NotReady
        } else if pod.phase == "Running" {
            if pod.containers > 0 && pod.ready == pod.containers {
                PodClass::Ready
            } else {
                PodClass::NotReady
            }
        } else {
            PodClass::Pending
        }
    }
}

/// The pods one node holds, and how many of each [`PodClass`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodePods {
    /// The pods' `namespace/name` keys.
    pub keys: BTreeSet<String>,
    /// How many pods of each class, indexed by `PodClass as usize`.
    pub counts: [usize; 5],
}

/// One row of the timeline.
#[derive(Clone, Debug, PartialEq)]
pub enum TimelineRow {
    /// A story's heading (its root, empty for events of no story) and how many of its events
    /// the timeline shows.
    Story(String, usize),
    /// The flow event at this index of [`Model::events`].
    Event(usize),
}

/// The add-ons the map draws beside the control plane once seen in the flow.
pub const ADDONS: [&str; 5] = [
    "kube-dns",
    "ingress-controller",
    "service-lb-controller",
    "local-path-provisioner",
    "metrics-server",
];

/// The components `:stop`/`:start` know besides nodes.
const COMPONENTS: [&str; 3] = ["apiserver", "scheduler", "controller-manager"];

/// Whether `hay` contains `needle` (already lowercase), ignoring ASCII case, without allocating.
pub fn contains_ci(hay: &str, needle: &str) -> bool {
    let (hay, needle) = (hay.as_bytes(), needle.as_bytes());
    needle.is_empty()
        || hay
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

/// Whether a flow event is a store write (not a read: `GET`, `RANGE`, `LIST`, `WATCH`).
pub fn is_store_write(e: &FlowEvent) -> bool {
    e.to == "store" && !matches!(e.verb.as_str(), "GET" | "RANGE" | "LIST" | "WATCH" | "GATE")
}

/// `Kind ns/name`, `Kind name` or `Kind ns` (what an event names).
pub fn object_words(kind: &str, namespace: &str, name: &str) -> String {
    let mut s = kind.to_owned();
    if !namespace.is_empty() || !name.is_empty() {
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str(namespace);
        if !namespace.is_empty() && !name.is_empty() {
            s.push('/');
        }
        s.push_str(name);
    }
    s
}

impl Model {
    /// Changes the model by one message; returns what the shell must do.
    pub fn update(&mut self, msg: Msg) -> Vec<Effect> {
        match msg {
            Msg::Key(key) => return self.key(key),
            Msg::Resize(w, h) => self.size = (w, h),
            Msg::Flow(event) => self.flow(event),
            Msg::Lost(n) => self.lost += n,
            Msg::Pod(pod) => self.upsert_pod(pod),
            Msg::PodGone(ns, name) => {
                let key = format!("{ns}/{name}");
                self.metrics.forget_pod(&key);
                self.remove_pod(&key);
            }
            Msg::Node(node) => {
                self.nodes.insert(node.name.clone(), node);
            }
            Msg::NodeGone(name) => {
                self.metrics.forget_node(&name);
                self.nodes.remove(&name);
            }
            Msg::Allocatable(name, usage) => {
                self.metrics.allocatable.insert(name, usage);
            }
            Msg::PodResources(ns, name, resources) => {
                self.metrics
                    .resources
                    .insert(format!("{ns}/{name}"), resources);
            }
            Msg::Metrics(read) => self.metrics.read(read),
            Msg::Deployment(d) => {
                self.deployments
                    .insert(format!("{}/{}", d.namespace, d.name), d);
            }
            Msg::DeploymentGone(ns, name) => {
                self.deployments.remove(&format!("{ns}/{name}"));
            }
            Msg::Workload(w) => {
                self.workloads
                    .insert(format!("{}/{}/{}", w.kind, w.namespace, w.name), w);
            }
            Msg::WorkloadGone(kind, ns, name) => {
                self.workloads.remove(&format!("{kind}/{ns}/{name}"));
            }
            Msg::Event(e) => {
                self.kube_events
                    .insert(format!("{}/{}", e.namespace, e.name), e);
            }
            Msg::Service(svc) => {
                self.services
                    .insert(format!("{}/{}", svc.namespace, svc.name), svc);
            }
            Msg::ServiceGone(ns, name) => {
                self.services.remove(&format!("{ns}/{name}"));
            }
            Msg::Slice(slice) => {
                self.slices
                    .insert(format!("{}/{}", slice.namespace, slice.name), slice);
            }
            Msg::SliceGone(ns, name) => {
                self.slices.remove(&format!("{ns}/{name}"));
            }
            Msg::Components(components) => self.components = components,
            Msg::Stepper(stepper) => {
                self.released
                    .retain(|id| stepper.pending.iter().any(|g| g.id == *id));
                self.stepper = stepper;
            }
            // A late answer for an object the learner has left is dropped.
            Msg::Detail(detail) => {
                if self.detail_target.as_ref().is_none_or(|(kind, ns, name)| {
                    (kind, ns, name) == (&detail.kind, &detail.namespace, &detail.name)
                }) {
                    self.detail = Some(detail);
                }
            }
            Msg::Logs(ns, name, text) => {
                if self
                    .detail_target
                    .as_ref()
                    .is_none_or(|(_, tns, tname)| (tns, tname) == (&ns, &name))
                {
                    self.logs = Some((ns, name, text));
                }
            }
            Msg::Manifests(manifests) => self.manifests = manifests,
            Msg::Done(message, failed) => self.status = Some((message, failed)),
            Msg::Tick(now) => self.now = Some(now),
            Msg::Progress(progress) => self.learn.progress = progress,
            Msg::LessonAction(lesson, step, outcome) => self.lesson_acted(lesson, step, outcome),
            Msg::LessonChecked(lesson, step, outcomes, vars) => {
                return self.lesson_checked(lesson, step, outcomes, vars);
            }
        }
        Vec::new()
    }

    fn flow(&mut self, event: FlowEvent) {
        for who in [&event.from, &event.to] {
            if who.starts_with("controller/") && !self.controllers.contains(who.as_str()) {
                self.controllers.insert(who.clone());
            }
            // The add-ons drawn with the controllers.
            let base = who.split('/').next().unwrap_or_default();
            if ADDONS.contains(&base) && !self.controllers.contains(base) {
                self.controllers.insert(base.to_owned());
            }
        }
        self.metrics.flow(&event);
        if let Some((node, data)) = sync_of(&event) {
            self.kube_proxy
                .entry(node)
                .or_default()
                .apply(data, &event.time);
        }
        if self.events.len() >= KEPT_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    fn upsert_pod(&mut self, pod: PodRow) {
        let key = format!("{}/{}", pod.namespace, pod.name);
        self.remove_pod(&key);
        let on = self
            .node_pods
            .entry(pod.node.clone().unwrap_or_default())
            .or_default();
        on.keys.insert(key.clone());
        on.counts[PodClass::of(&pod) as usize] += 1;
        self.pods.insert(key, pod);
    }

    fn remove_pod(&mut self, key: &str) {
        let Some(old) = self.pods.remove(key) else {
            return;
        };
        let node = old.node.clone().unwrap_or_default();
        if let Some(on) = self.node_pods.get_mut(&node) {
            on.keys.remove(key);
            let count = &mut on.counts[PodClass::of(&old) as usize];
            *count = count.saturating_sub(1);
            if on.keys.is_empty() {
                self.node_pods.remove(&node);
            }
        }
    }

    /// Whether step mode is on.
    pub fn stepping(&self) -> bool {
        self.stepper.mode == "step"
    }

    /// The oldest pending gate this dashboard has not released yet.
    pub fn pending_gate(&self) -> Option<&Gate> {
        self.stepper
            .pending
            .iter()
            .find(|g| !self.released.contains(&g.id))
    }

    /// The flow event with sequence number `seq`, if it is still kept.
    pub fn event_by_seq(&self, seq: u64) -> Option<&FlowEvent> {
        self.events
            .binary_search_by_key(&seq, |e| e.seq)
            .ok()
            .map(|i| &self.events[i])
    }

    /// The hop waiting at the oldest pending gate in step mode, as a flow event: its `seq` is
    /// the gate's id, its `to` the `GATE` event's.
    pub fn waiting_hop(&self) -> Option<FlowEvent> {
        if !self.stepping() {
            return None;
        }
        let gate = self.pending_gate()?;
        let to = self
            .event_by_seq(gate.id)
            .map(|e| e.to.clone())
            .unwrap_or_default();
        let mut hop = FlowEvent::new(gate.from.clone(), to, gate.verb.clone()).object(
            &gate.kind,
            &gate.namespace,
            &gate.name,
        );
        hop.seq = gate.id;
        hop.root = gate.root.clone();
        hop.detail = gate.words.clone();
        Some(hop)
    }

    /// The hop in flight: the one waiting at the oldest pending gate in step mode, otherwise
    /// the newest hop (leases and Events, the heartbeat noise, are skipped).
    pub fn hop_in_flight(&self) -> Option<FlowEvent> {
        self.waiting_hop()
            .or_else(|| self.recent_hops().next().cloned())
    }

    /// The hops the map draws, newest first: the hop in flight (and whether it waits at its
    /// gate), then up to `fading - 1` hops before it.
    pub fn map_hops(&self, fading: usize) -> Vec<(FlowEvent, bool)> {
        let mut hops = Vec::with_capacity(fading);
        if let Some(waiting) = self.waiting_hop() {
            hops.push((waiting, true));
        }
        hops.extend(
            self.recent_hops()
                .take(fading.saturating_sub(hops.len()))
                .map(|e| (e.clone(), false)),
        );
        hops
    }

    /// The recent hops a learner follows, newest first: not `GATE` announcements, heartbeats
    /// ([`FlowEvent::is_heartbeat`]) or Events, among the last 256.
    fn recent_hops(&self) -> impl Iterator<Item = &FlowEvent> {
        self.events
            .iter()
            .rev()
            .take(256)
            .filter(|e| e.verb != "GATE" && !e.is_heartbeat() && e.kind != "Event")
    }

    /// The hop the step bar explains: the selected timeline row's hop while the learner has
    /// chosen one, otherwise the hop waiting at the pending gate.
    pub fn explained_hop(&self) -> Option<FlowEvent> {
        if self.view.timeline() && self.timeline_selected.is_some() {
            return self.selected_event().cloned();
        }
        self.waiting_hop()
    }

    /// The scheduler's decision behind a `DECIDE` or `BIND` hop: the `DECIDE` hop's data (for a
    /// `BIND`, the latest `DECIDE` about the same pod before it), else the decision the detail
    /// view fetched for that pod.
    pub fn decision_of(&self, hop: &FlowEvent) -> Option<serde_json::Value> {
        let scheduling = hop.from == "scheduler" || hop.from.starts_with("scheduler-");
        if !scheduling || !matches!(hop.verb.as_str(), "DECIDE" | "BIND") || hop.kind != "Pod" {
            return None;
        }
        let parse = |e: &FlowEvent| {
            e.data
                .as_ref()
                .and_then(|d| serde_json::from_str::<serde_json::Value>(d.get()).ok())
        };
        if hop.verb == "DECIDE"
            && let Some(decision) = parse(hop)
        {
            return Some(decision);
        }
        let before = if hop.seq == 0 { u64::MAX } else { hop.seq };
        self.events
            .iter()
            .rev()
            .filter(|e| e.seq < before)
            .take(KEPT_EVENTS)
            .find(|e| {
                e.verb == "DECIDE"
                    && e.kind == "Pod"
                    && e.namespace == hop.namespace
                    && e.name == hop.name
            })
            .and_then(parse)
            .or_else(|| {
                let detail = self.detail.as_ref()?;
                (detail.kind == "Pod"
                    && detail.namespace == hop.namespace
                    && detail.name == hop.name)
                    .then(|| detail.decision.clone())
                    .flatten()
            })
    }

    /// Why `hop` happens, in words (`flow::explain::why`), and for a scheduling hop what the
    /// decision found on the chosen node.
    pub fn explanation(&self, hop: &FlowEvent) -> String {
        let mut words = crate::flow::explain::why(hop).into_owned();
        if let Some(found) = self
            .decision_of(hop)
            .and_then(|d| crate::flow::explain::decision(&d))
        {
            words.push_str(" Decision: ");
            words.push_str(&found);
            words.push('.');
        }
        words
    }

    /// How many rows the step bar takes on a terminal `height` rows tall: a second one says why
    /// the explained hop happens, when there is one and room for it.
    pub fn step_bar_rows(&self, height: u16) -> u16 {
        if height >= 12 && self.explained_hop().is_some() {
            2
        } else {
            1
        }
    }

    /// Sets what the map and the timeline mark (a lesson's step calls it; an empty
    /// [`Highlight`] clears the marks).
    pub fn set_highlight(&mut self, highlight: Highlight) {
        self.highlight = highlight;
    }

    fn filter_lower(&self) -> String {
        self.filter.to_ascii_lowercase()
    }

    fn event_matches(e: &FlowEvent, f: &str) -> bool {
        f.is_empty()
            || contains_ci(&e.name, f)
            || contains_ci(&e.namespace, f)
            || contains_ci(&e.from, f)
            || contains_ci(&e.to, f)
            || contains_ci(&e.root, f)
    }

    /// The timeline's rows: live (oldest first) or grouped by story (stories in the order of
    /// their first event, each story's events in sequence order). `GATE` events are not rows:
    /// the step bar shows the pending gate.
    pub fn timeline_rows(&self) -> Vec<TimelineRow> {
        let f = self.filter_lower();
        let shown = self
            .events
            .iter()
            .enumerate()
            .filter(|(_, e)| {
                e.verb != "GATE"
                    && (self.heartbeats || !e.is_heartbeat())
                    && Self::event_matches(e, &f)
            })
            .map(|(i, _)| i);
        if !self.grouped {
            return shown.map(TimelineRow::Event).collect();
        }
        let mut order: Vec<&str> = Vec::new();
        let mut stories: std::collections::HashMap<&str, Vec<usize>> =
            std::collections::HashMap::new();
        for i in shown {
            let root = self.events[i].root.as_str();
            stories
                .entry(root)
                .or_insert_with(|| {
                    order.push(root);
                    Vec::new()
                })
                .push(i);
        }
        let mut rows = Vec::with_capacity(self.events.len() + order.len());
        for root in order {
            let members = &stories[root];
            rows.push(TimelineRow::Story(root.to_owned(), members.len()));
            rows.extend(members.iter().map(|i| TimelineRow::Event(*i)));
        }
        rows
    }

    /// The index in `rows` of the selected timeline event (the newest when following).
    pub fn timeline_cursor(&self, rows: &[TimelineRow]) -> Option<usize> {
        match self.timeline_selected {
            Some(seq) => rows
                .iter()
                .position(|r| matches!(r, TimelineRow::Event(i) if self.events[*i].seq == seq))
                .or_else(|| self.last_event_row(rows)),
            None if self.grouped => rows
                .iter()
                .enumerate()
                .filter_map(|(n, r)| match r {
                    TimelineRow::Event(i) => Some((n, self.events[*i].seq)),
                    TimelineRow::Story(..) => None,
                })
                .max_by_key(|(_, seq)| *seq)
                .map(|(n, _)| n),
            None => self.last_event_row(rows),
        }
    }

    fn last_event_row(&self, rows: &[TimelineRow]) -> Option<usize> {
        rows.iter()
            .rposition(|r| matches!(r, TimelineRow::Event(_)))
    }

    /// The selected timeline event.
    pub fn selected_event(&self) -> Option<&FlowEvent> {
        let rows = self.timeline_rows();
        match rows.get(self.timeline_cursor(&rows)?)? {
            TimelineRow::Event(i) => self.events.get(*i),
            TimelineRow::Story(..) => None,
        }
    }

    /// `:pods` rows, filtered, sorted by namespace and name.
    pub fn pod_rows(&self) -> Vec<&PodRow> {
        let f = self.filter_lower();
        self.pods
            .values()
            .filter(|p| {
                f.is_empty()
                    || contains_ci(&p.name, &f)
                    || contains_ci(&p.namespace, &f)
                    || p.node.as_deref().is_some_and(|n| contains_ci(n, &f))
            })
            .collect()
    }

    /// `:deploy` rows, filtered.
    pub fn deployment_rows(&self) -> Vec<&DeploymentRow> {
        let f = self.filter_lower();
        self.deployments
            .values()
            .filter(|d| f.is_empty() || contains_ci(&d.name, &f) || contains_ci(&d.namespace, &f))
            .collect()
    }

    /// The rows of a workload list (`:sts`, `:cj`, `:pdb`), filtered.
    pub fn workload_rows(&self, view: View) -> Vec<&WorkloadRow> {
        let f = self.filter_lower();
        let Some(kind) = view.workload_kind() else {
            return Vec::new();
        };
        self.workloads
            .values()
            .filter(|w| w.kind == kind)
            .filter(|w| f.is_empty() || contains_ci(&w.name, &f) || contains_ci(&w.namespace, &f))
            .collect()
    }

    /// `:nodes` rows, filtered.
    pub fn node_rows(&self) -> Vec<&NodeRow> {
        let f = self.filter_lower();
        self.nodes
            .values()
            .filter(|n| f.is_empty() || contains_ci(&n.name, &f))
            .collect()
    }

    /// `:events` rows, filtered, oldest first (as `kubectl get events`).
    pub fn event_rows(&self) -> Vec<&EventRow> {
        let f = self.filter_lower();
        let mut rows: Vec<&EventRow> = self
            .kube_events
            .values()
            .filter(|e| {
                f.is_empty()
                    || contains_ci(&e.object, &f)
                    || contains_ci(&e.namespace, &f)
                    || contains_ci(&e.reason, &f)
            })
            .collect();
        rows.sort_by(|a, b| a.last.cmp(&b.last));
        rows
    }

    /// `:store` rows: the store's writes from the flow (indices into [`Model::events`]),
    /// newest last.
    pub fn store_rows(&self) -> Vec<usize> {
        let f = self.filter_lower();
        self.events
            .iter()
            .enumerate()
            .filter(|(_, e)| is_store_write(e) && Self::event_matches(e, &f))
            .map(|(i, _)| i)
            .collect()
    }

    /// `:svc` rows, filtered, sorted by namespace and name.
    pub fn service_rows(&self) -> Vec<&ServiceRow> {
        let f = self.filter_lower();
        self.services
            .values()
            .filter(|s| f.is_empty() || contains_ci(&s.name, &f) || contains_ci(&s.namespace, &f))
            .collect()
    }

    /// The selected Service of `:svc`.
    pub fn selected_service(&self) -> Option<&ServiceRow> {
        let rows = self.service_rows();
        Some(rows[self.selected(View::Services, rows.len())?])
    }

    /// The EndpointSlices of a Service, by name.
    pub fn slices_of(&self, namespace: &str, service: &str) -> Vec<&SliceRow> {
        self.slices
            .range(format!("{namespace}/")..)
            .take_while(|(k, _)| k.starts_with(&format!("{namespace}/")))
            .map(|(_, s)| s)
            .filter(|s| s.service == service)
            .collect()
    }

    /// How many rows the current list view has.
    fn list_len(&self) -> usize {
        match self.view {
            View::Pods | View::Top => self.pod_rows().len(),
            View::Deployments => self.deployment_rows().len(),
            View::StatefulSets | View::ReplicationControllers | View::CronJobs | View::Budgets => {
                self.workload_rows(self.view).len()
            }
            View::Nodes => self.node_rows().len(),
            View::Events => self.event_rows().len(),
            View::Services => self.service_rows().len(),
            View::Store => self.store_rows().len(),
            View::Learn => self.learn.catalogue.lessons().len(),
            _ => 0,
        }
    }

    /// The selected row of the current list view, clamped to its rows (`None` if empty).
    pub fn selected(&self, view: View, len: usize) -> Option<usize> {
        let wanted = self.selection.get(&view).copied().unwrap_or(match view {
            // The store lists newest last: start at the newest write.
            View::Store => usize::MAX,
            _ => 0,
        });
        (len > 0).then(|| wanted.min(len - 1))
    }

    /// Rows a page holds (for PgUp/PgDn).
    fn page(&self) -> usize {
        usize::from(self.size.1.saturating_sub(8)).max(1)
    }

    fn open(&mut self, view: View) {
        if self.view != view {
            self.back
                .push((self.view, std::mem::take(&mut self.filter)));
            if self.back.len() > 32 {
                self.back.remove(0);
            }
            self.view = view;
        }
        self.scroll = if view == View::Logs { usize::MAX } else { 0 };
    }

    fn go_back(&mut self) {
        if let Some((view, filter)) = self.back.pop() {
            self.view = view;
            self.filter = filter;
            self.scroll = 0;
        }
    }

    fn say(&mut self, message: impl Into<String>, failed: bool) {
        self.status = Some((message.into(), failed));
    }

    fn key(&mut self, key: KeyEvent) -> Vec<Effect> {
        use crossterm::event::{KeyCode, KeyEventKind, KeyModifiers};
        if key.kind == KeyEventKind::Release {
            return Vec::new();
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if let Some(prompt) = self.prompt.take() {
            return self.prompt_key(prompt, key);
        }
        if ctrl {
            return match key.code {
                KeyCode::Char('c') => self.quit(),
                KeyCode::Char('d') if self.view == View::Pods => {
                    match self.selected_pod() {
                        Some((ns, name)) => {
                            self.prompt = Some(Prompt::Confirm(Confirm::DeletePod(ns, name)));
                        }
                        None => self.say("no pod selected", true),
                    }
                    Vec::new()
                }
                KeyCode::Char('f') => {
                    self.move_by(self.page() as isize);
                    Vec::new()
                }
                KeyCode::Char('b') => {
                    self.move_by(-(self.page() as isize));
                    Vec::new()
                }
                _ => Vec::new(),
            };
        }
        if self.view == View::Home
            && self.learn.open.is_some()
            && let Some(effects) = self.lesson_key(key.code)
        {
            return effects;
        }
        match key.code {
            KeyCode::Char('q') => return self.quit(),
            KeyCode::Char('?') => self.open(View::Help),
            KeyCode::Char(':') => self.prompt = Some(Prompt::Command(String::new())),
            KeyCode::Char('/') => self.prompt = Some(Prompt::Filter(self.filter.clone())),
            KeyCode::Esc => {
                if !self.filter.is_empty() {
                    self.filter.clear();
                } else if self.view == View::Home && self.learn.open.is_some() {
                    return self.close_lesson();
                } else {
                    self.go_back();
                }
                self.status = None;
            }
            KeyCode::Char(' ') => {
                let mode = if self.stepping() { "run" } else { "step" };
                self.say(format!("asking for {mode} mode"), false);
                return vec![Effect::Stepper(serde_json::json!({ "mode": mode }))];
            }
            KeyCode::Char('n') => return self.release(),
            KeyCode::Enter
                if self.view.timeline() && self.stepping() && self.pending_gate().is_some() =>
            {
                return self.release();
            }
            KeyCode::Enter if self.view == View::Learn => {
                let len = self.learn.catalogue.lessons().len();
                return match self.selected(View::Learn, len) {
                    Some(index) => self.open_lesson(index),
                    None => {
                        self.say("no lessons", true);
                        Vec::new()
                    }
                };
            }
            KeyCode::Enter | KeyCode::Char('d') => return self.describe(),
            KeyCode::Char('f') => return self.focus(),
            KeyCode::Char('F') => {
                self.say("stepping holds every story", false);
                return vec![Effect::Stepper(serde_json::json!({ "focus": null }))];
            }
            KeyCode::Char('g') if self.view.timeline() => {
                self.grouped = !self.grouped;
                self.timeline_selected = None;
            }
            KeyCode::Char('h') if self.view.timeline() => {
                self.heartbeats = !self.heartbeats;
                self.timeline_selected = None;
                let shown = if self.heartbeats { "shown" } else { "hidden" };
                self.say(format!("heartbeats (Leases) {shown}"), false);
            }
            KeyCode::Char('a') => {
                if self.manifests.is_empty() {
                    self.say("no manifests found in manifests/", true);
                } else {
                    self.prompt = Some(Prompt::Picker(0));
                }
            }
            KeyCode::Char('l') => return self.logs_of_selected(),
            KeyCode::Char('S') => {
                self.open(View::Services);
                self.status = None;
            }
            KeyCode::Char('t') => {
                self.open(View::Top);
                self.status = None;
            }
            KeyCode::Char('s') if self.view == View::Deployments => {
                let rows = self.deployment_rows();
                match self
                    .selected(View::Deployments, rows.len())
                    .map(|i| rows[i])
                {
                    Some(d) => {
                        self.prompt = Some(Prompt::Scale(
                            d.namespace.clone(),
                            d.name.clone(),
                            d.desired.to_string(),
                        ));
                    }
                    None => self.say("no deployment selected", true),
                }
            }
            KeyCode::Char('c') if self.view == View::Nodes => {
                if let Some(node) = self.selected_node() {
                    let cordon = !node.unschedulable;
                    let name = node.name.clone();
                    return vec![Effect::Cordon(name, cordon)];
                }
            }
            KeyCode::Char('r') if self.view == View::Nodes => {
                if let Some(node) = self.selected_node() {
                    self.prompt = Some(Prompt::Confirm(Confirm::Drain(node.name.clone())));
                }
            }
            KeyCode::Char('k') if self.view == View::Nodes => {
                if let Some(node) = self.selected_node() {
                    let name = node.name.clone();
                    let start = !self.kubelet_running(&name);
                    return vec![Effect::Kubelet(name, start)];
                }
            }
            KeyCode::Down | KeyCode::Char('j') => self.move_by(1),
            KeyCode::Up | KeyCode::Char('k') => self.move_by(-1),
            KeyCode::PageDown => self.move_by(self.page() as isize),
            KeyCode::PageUp => self.move_by(-(self.page() as isize)),
            KeyCode::Home => self.move_to_end(false),
            KeyCode::End | KeyCode::Char('G') => self.move_to_end(true),
            _ => {}
        }
        Vec::new()
    }

    fn quit(&mut self) -> Vec<Effect> {
        match self.host {
            Host::Attached => vec![Effect::Quit],
            Host::Up => {
                self.prompt = Some(Prompt::Confirm(Confirm::QuitAndStop));
                Vec::new()
            }
        }
    }

    fn release(&mut self) -> Vec<Effect> {
        if !self.stepping() {
            self.say("not stepping: space switches to step mode", true);
            return Vec::new();
        }
        match self.pending_gate().map(|g| g.id) {
            Some(id) => {
                self.released.insert(id);
                vec![Effect::Stepper(serde_json::json!({ "releaseGate": id }))]
            }
            None => {
                self.say("no gate is waiting", false);
                Vec::new()
            }
        }
    }

    /// The story of the selected row: a timeline event's root, a deployment, a pod's owner or
    /// the object in the detail view.
    fn selected_story(&self) -> Option<String> {
        match self.view {
            View::Home | View::Flow => {
                let rows = self.timeline_rows();
                match rows.get(self.timeline_cursor(&rows)?)? {
                    TimelineRow::Story(root, _) => Some(root.clone()),
                    TimelineRow::Event(i) => Some(self.events[*i].root.clone()),
                }
            }
            View::Store => {
                let rows = self.store_rows();
                let i = rows[self.selected(View::Store, rows.len())?];
                Some(self.events[i].root.clone())
            }
            View::Deployments => {
                let rows = self.deployment_rows();
                let d = rows[self.selected(View::Deployments, rows.len())?];
                Some(format!("Deployment/{}", d.name))
            }
            View::StatefulSets | View::ReplicationControllers | View::CronJobs | View::Budgets => {
                let rows = self.workload_rows(self.view);
                let w = rows[self.selected(self.view, rows.len())?];
                Some(format!("{}/{}", w.kind, w.name))
            }
            View::Pods | View::Top => {
                let rows = self.pod_rows();
                let p = rows[self.selected(self.view, rows.len())?];
                Some(p.owner.clone())
            }
            View::Services => self
                .selected_service()
                .map(|s| format!("Service/{}", s.name)),
            View::Detail | View::Logs => {
                let (kind, _, name) = self.detail_target.as_ref()?;
                Some(format!("{kind}/{name}"))
            }
            _ => None,
        }
        .filter(|root| !root.is_empty())
    }

    fn focus(&mut self) -> Vec<Effect> {
        match self.selected_story() {
            Some(root) => {
                self.say(format!("stepping holds only {root}"), false);
                vec![Effect::Stepper(
                    serde_json::json!({ "focus": { "root": root } }),
                )]
            }
            None => {
                self.say("the selected row belongs to no story", true);
                Vec::new()
            }
        }
    }

    /// The object of the selected row (kind, namespace, name).
    fn selected_object(&self) -> Option<(String, String, String)> {
        let of_event = |e: &FlowEvent| (e.kind.clone(), e.namespace.clone(), e.name.clone());
        let object = match self.view {
            View::Home | View::Flow => self.selected_event().map(of_event),
            View::Store => {
                let rows = self.store_rows();
                let i = rows[self.selected(View::Store, rows.len())?];
                Some(of_event(&self.events[i]))
            }
            View::Pods | View::Top => self
                .selected_pod()
                .map(|(ns, name)| ("Pod".to_owned(), ns, name)),
            View::Deployments => {
                let rows = self.deployment_rows();
                let d = rows[self.selected(View::Deployments, rows.len())?];
                Some(("Deployment".to_owned(), d.namespace.clone(), d.name.clone()))
            }
            View::StatefulSets | View::ReplicationControllers | View::CronJobs | View::Budgets => {
                let rows = self.workload_rows(self.view);
                let w = rows[self.selected(self.view, rows.len())?];
                Some((w.kind.clone(), w.namespace.clone(), w.name.clone()))
            }
            View::Nodes => self
                .selected_node()
                .map(|n| ("Node".to_owned(), String::new(), n.name.clone())),
            View::Services => self
                .selected_service()
                .map(|s| ("Service".to_owned(), s.namespace.clone(), s.name.clone())),
            View::Events => {
                let rows = self.event_rows();
                let e = rows[self.selected(View::Events, rows.len())?];
                let (kind, name) = e.object.split_once('/')?;
                let namespace = if kind == "Node" {
                    String::new()
                } else {
                    e.namespace.clone()
                };
                Some((kind.to_owned(), namespace, name.to_owned()))
            }
            View::Detail | View::Logs => self.detail_target.clone(),
            View::Help | View::Learn => None,
        }?;
        (!object.0.is_empty() && !object.2.is_empty()).then_some(object)
    }

    fn describe(&mut self) -> Vec<Effect> {
        // A timeline row's detail starts with the hop itself; a hop that names no object (a
        // watch's initial sync, a scrape) has only that.
        let hop = match self.view {
            View::Home | View::Flow => self.selected_event().cloned(),
            View::Detail | View::Logs => self.detail_hop.clone(),
            _ => None,
        };
        match self.selected_object() {
            Some((kind, ns, name)) => {
                self.detail = None;
                self.detail_hop = hop;
                self.detail_target = Some((kind.clone(), ns.clone(), name.clone()));
                self.open(View::Detail);
                vec![Effect::Describe(kind, ns, name)]
            }
            None if hop.is_some() => {
                self.detail = None;
                self.detail_hop = hop;
                self.detail_target = None;
                self.open(View::Detail);
                Vec::new()
            }
            None => {
                self.say("the selected row names no object", true);
                Vec::new()
            }
        }
    }

    fn logs_of_selected(&mut self) -> Vec<Effect> {
        match self.selected_object() {
            Some((kind, ns, name)) if kind == "Pod" => {
                self.logs = None;
                self.detail_target = Some((kind, ns.clone(), name.clone()));
                self.open(View::Logs);
                vec![Effect::Logs(ns, name)]
            }
            _ => {
                self.say("logs: select a pod", true);
                Vec::new()
            }
        }
    }

    fn selected_pod(&self) -> Option<(String, String)> {
        let view = if self.view == View::Top {
            View::Top
        } else {
            View::Pods
        };
        let rows = self.pod_rows();
        let p = rows[self.selected(view, rows.len())?];
        Some((p.namespace.clone(), p.name.clone()))
    }

    fn selected_node(&self) -> Option<&NodeRow> {
        let rows = self.node_rows();
        Some(rows[self.selected(View::Nodes, rows.len())?])
    }

    /// Whether a node's kubelet runs (true when the components were not listed yet).
    pub fn kubelet_running(&self, node: &str) -> bool {
        self.component_running(node)
    }

    /// Whether a component or node runs, as `GET /orrery/v1/components` said last (true when
    /// it was not listed).
    pub fn component_running(&self, name: &str) -> bool {
        self.components
            .iter()
            .find(|c| c.name == name)
            .is_none_or(|c| c.running)
    }

    fn move_by(&mut self, delta: isize) {
        match self.view {
            View::Home | View::Flow => {
                let rows = self.timeline_rows();
                let Some(cursor) = self.timeline_cursor(&rows) else {
                    return;
                };
                let step = delta.signum();
                let mut at = cursor;
                let mut left = delta.unsigned_abs();
                // Walk event rows only: a story's heading is not a stop.
                while left > 0 {
                    let mut next = at as isize + step;
                    while next >= 0
                        && (next as usize) < rows.len()
                        && matches!(rows[next as usize], TimelineRow::Story(..))
                    {
                        next += step;
                    }
                    if next < 0 || next as usize >= rows.len() {
                        break;
                    }
                    at = next as usize;
                    left -= 1;
                }
                let last = self.last_event_row(&rows);
                self.timeline_selected = match rows[at] {
                    // Back at the newest row of the live timeline: follow again.
                    _ if !self.grouped && Some(at) == last => None,
                    TimelineRow::Event(i) => Some(self.events[i].seq),
                    TimelineRow::Story(..) => self.timeline_selected,
                };
            }
            View::Detail | View::Logs | View::Help => {
                let base = if self.scroll == usize::MAX {
                    self.content_len()
                } else {
                    self.scroll
                };
                self.scroll = base.saturating_add_signed(delta).min(self.content_len());
            }
            view => {
                let len = self.list_len();
                if let Some(at) = self.selected(view, len) {
                    let to = at.saturating_add_signed(delta).min(len - 1);
                    self.selection.insert(view, to);
                }
            }
        }
    }

    fn move_to_end(&mut self, end: bool) {
        match self.view {
            View::Home | View::Flow => {
                self.timeline_selected = if end {
                    None
                } else {
                    let rows = self.timeline_rows();
                    rows.iter().find_map(|r| match r {
                        TimelineRow::Event(i) => Some(self.events[*i].seq),
                        TimelineRow::Story(..) => None,
                    })
                };
            }
            View::Detail | View::Logs | View::Help => {
                self.scroll = if end { self.content_len() } else { 0 };
            }
            view => {
                let len = self.list_len();
                self.selection
                    .insert(view, if end { len.saturating_sub(1) } else { 0 });
            }
        }
    }

    /// How far the detail, logs or help view scrolls: its lines less the lines the terminal
    /// shows (the view clamps the same way, so a key press always moves what is seen).
    fn content_len(&self) -> usize {
        let shown = usize::from(
            self.size
                .1
                .saturating_sub(3 + self.step_bar_rows(self.size.1)),
        );
        super::view::scrollable_lines(self).saturating_sub(shown)
    }

    fn prompt_key(&mut self, prompt: Prompt, key: KeyEvent) -> Vec<Effect> {
        use crossterm::event::{KeyCode, KeyModifiers};
        let ctrl_c =
            key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c');
        match prompt {
            Prompt::Command(mut text) => match key.code {
                KeyCode::Enter => return self.command(&text),
                KeyCode::Esc => {}
                _ if ctrl_c => {}
                KeyCode::Backspace => {
                    if text.pop().is_some() {
                        self.prompt = Some(Prompt::Command(text));
                    }
                }
                KeyCode::Char(c) => {
                    text.push(c);
                    self.prompt = Some(Prompt::Command(text));
                }
                _ => self.prompt = Some(Prompt::Command(text)),
            },
            Prompt::Filter(mut text) => match key.code {
                KeyCode::Enter => {}
                KeyCode::Esc => self.filter.clear(),
                _ if ctrl_c => self.filter.clear(),
                KeyCode::Backspace => {
                    text.pop();
                    self.filter = text.clone();
                    self.prompt = Some(Prompt::Filter(text));
                }
                KeyCode::Char(c) => {
                    text.push(c);
                    self.filter = text.clone();
                    self.prompt = Some(Prompt::Filter(text));
                }
                _ => self.prompt = Some(Prompt::Filter(text)),
            },
            Prompt::Confirm(what) => {
                if matches!(key.code, KeyCode::Char('y') | KeyCode::Char('Y')) {
                    return match what {
                        Confirm::QuitAndStop => vec![Effect::QuitAndStop],
                        Confirm::DeletePod(ns, name) => {
                            self.say(format!("deleting pod {ns}/{name}"), false);
                            vec![Effect::DeletePod(ns, name)]
                        }
                        Confirm::Drain(node) => {
                            self.say(format!("draining {node}"), false);
                            vec![Effect::Drain(node)]
                        }
                    };
                }
            }
            Prompt::Scale(ns, name, mut digits) => match key.code {
                KeyCode::Enter => match digits.parse::<i32>() {
                    Ok(n) => {
                        self.say(format!("scaling deployment {ns}/{name} to {n}"), false);
                        return vec![Effect::Scale(ns, name, n)];
                    }
                    Err(_) => self.say("scale: type a number of replicas", true),
                },
                KeyCode::Esc => {}
                _ if ctrl_c => {}
                KeyCode::Backspace => {
                    digits.pop();
                    self.prompt = Some(Prompt::Scale(ns, name, digits));
                }
                KeyCode::Char(c) if c.is_ascii_digit() && digits.len() < 6 => {
                    digits.push(c);
                    self.prompt = Some(Prompt::Scale(ns, name, digits));
                }
                _ => self.prompt = Some(Prompt::Scale(ns, name, digits)),
            },
            Prompt::Picker(at) => {
                let last = self.manifests.len().saturating_sub(1);
                match key.code {
                    KeyCode::Enter => {
                        if let Some(path) = self.manifests.get(at).cloned() {
                            self.say(format!("applying {path}"), false);
                            return vec![Effect::Apply(path)];
                        }
                    }
                    KeyCode::Esc => {}
                    _ if ctrl_c => {}
                    KeyCode::Down | KeyCode::Char('j') => {
                        self.prompt = Some(Prompt::Picker((at + 1).min(last)));
                    }
                    KeyCode::Up | KeyCode::Char('k') => {
                        self.prompt = Some(Prompt::Picker(at.saturating_sub(1)));
                    }
                    _ => self.prompt = Some(Prompt::Picker(at)),
                }
            }
        }
        Vec::new()
    }

    /// Runs a `:` command.
    fn command(&mut self, text: &str) -> Vec<Effect> {
        let mut words = text.split_whitespace();
        let Some(verb) = words.next() else {
            return Vec::new();
        };
        let arg = words.next();
        if let Some(extra) = words.next() {
            self.say(format!(":{verb}: unexpected '{extra}'"), true);
            return Vec::new();
        }
        let view = match verb {
            "pods" | "pod" | "po" => Some(View::Pods),
            "deploy" | "deployments" | "deployment" | "dp" => Some(View::Deployments),
            "sts" | "statefulsets" | "statefulset" => Some(View::StatefulSets),
            "rc" | "replicationcontrollers" | "replicationcontroller" => {
                Some(View::ReplicationControllers)
            }
            "cj" | "cronjobs" | "cronjob" => Some(View::CronJobs),
            "pdb" | "poddisruptionbudgets" | "poddisruptionbudget" => Some(View::Budgets),
            "nodes" | "node" | "no" => Some(View::Nodes),
            "events" | "event" | "ev" => Some(View::Events),
            "svc" | "services" | "service" => Some(View::Services),
            "top" => Some(View::Top),
            "flow" => Some(View::Flow),
            "store" => Some(View::Store),
            "map" | "home" => Some(View::Home),
            "help" => Some(View::Help),
            "learn" | "lessons" if arg.is_none() => Some(View::Learn),
            _ => None,
        };
        if let Some(view) = view {
            if let Some(arg) = arg {
                self.say(format!(":{verb} takes no argument (got '{arg}')"), true);
            } else {
                self.open(view);
                self.status = None;
            }
            return Vec::new();
        }
        match (verb, arg) {
            ("learn" | "lessons", Some(name)) => self.open_lesson_named(name),
            ("q" | "quit" | "q!", None) => self.quit(),
            ("apply", None) => {
                if self.manifests.is_empty() {
                    self.say("no manifests found in manifests/", true);
                } else {
                    self.prompt = Some(Prompt::Picker(0));
                }
                Vec::new()
            }
            ("apply", Some(path)) => {
                self.say(format!("applying {path}"), false);
                vec![Effect::Apply(path.to_owned())]
            }
            ("stop" | "start" | "kill", Some(target)) => {
                let start = verb == "start";
                let operation = match verb {
                    "start" => Operation::Start,
                    "kill" => Operation::Kill,
                    _ => Operation::Stop,
                };
                let target = target.strip_prefix("kubelet/").unwrap_or(target);
                // A replica (`scheduler-2`, with `orrery up --schedulers 2`) is a component too.
                let replica = self
                    .components
                    .iter()
                    .any(|c| c.role == "component" && c.name == target);
                if COMPONENTS.contains(&target) || replica {
                    let doing = match operation {
                        Operation::Stop => "stopping",
                        Operation::Kill => "killing",
                        Operation::Start => "starting",
                    };
                    self.say(format!("{doing} {target}"), false);
                    vec![Effect::Component(target.to_owned(), operation)]
                } else if operation != Operation::Kill
                    && (self.nodes.contains_key(target)
                        || self
                            .components
                            .iter()
                            .any(|c| c.role == "node" && c.name == target))
                {
                    let doing = if start { "starting" } else { "stopping" };
                    self.say(format!("{doing} the kubelet of {target}"), false);
                    vec![Effect::Kubelet(target.to_owned(), start)]
                } else {
                    self.say(
                        format!(
                            ":{verb} {target}: no such component (apiserver, scheduler, \
                             controller-manager or a node)"
                        ),
                        true,
                    );
                    Vec::new()
                }
            }
            ("stop" | "start" | "kill", None) => {
                self.say(
                    format!(":{verb} needs a component: apiserver, scheduler, controller-manager or node-N"),
                    true,
                );
                Vec::new()
            }
            _ => {
                self.say(
                    format!("unknown command ':{text}' (? lists the commands)"),
                    true,
                );
                Vec::new()
            }
        }
    }
}

/// Every key and command, as the help view lists them (key, what it does).
pub const HELP: &[(&str, &str)] = &[
    ("?", "this help"),
    (
        ":",
        "command mode (:pods :deploy :nodes :events :svc :top :flow :store :map :help)",
    ),
    (
        ":learn [name]",
        "lessons and your progress (enter opens one); with a name, open it",
    ),
    (
        ":apply [path]",
        "apply a manifest (no path: pick one from manifests/)",
    ),
    (
        ":stop X / :start X",
        "stop or start apiserver, scheduler, controller-manager or node-N",
    ),
    (
        ":kill X",
        "stop a component as if it crashed (a leader keeps its Lease until it expires)",
    ),
    (":q", "quit"),
    (
        "/",
        "filter by name, namespace or component (enter keeps it)",
    ),
    ("esc", "clear the filter, close a prompt, or go back"),
    ("j k / up down", "move the selection or scroll"),
    ("pgup pgdn", "a page up or down (also ctrl-b ctrl-f)"),
    (
        "home / end G",
        "the first or last row (end follows the timeline)",
    ),
    (
        "enter",
        "open the selected object (in step mode on the timeline: release the gate)",
    ),
    (
        "d",
        "describe: a hop and why it happens, YAML, status, decision, store, events",
    ),
    ("l", "logs of the selected pod"),
    (
        "S",
        "Services (:svc): ports, endpoints, each node's kube-proxy",
    ),
    (
        "t",
        "top (:top): CPU and memory of nodes and pods, HPA decisions",
    ),
    ("space", "switch between run and step mode"),
    ("n", "step mode: let the pending hop through"),
    (
        "f",
        "step only the selected story; other work keeps running",
    ),
    ("F", "step every story again"),
    ("g", "timeline: live, or grouped by story"),
    ("h", "timeline: show or hide heartbeats (Lease renewals)"),
    ("a", "apply a manifest from manifests/"),
    ("s", ":deploy: scale the selected deployment"),
    ("ctrl-d", ":pods: delete the selected pod (asks)"),
    ("c", ":nodes: cordon or uncordon the selected node"),
    ("r", ":nodes: drain the selected node (asks)"),
    ("k", ":nodes: stop or start the selected node's kubelet"),
    ("x", "lesson: perform the step's actions"),
    ("c", "lesson: check the step on the cluster now"),
    ("] [", "lesson: the next or the previous step"),
    ("esc", "lesson: close it, back to :learn"),
    (
        "q / ctrl-c",
        "quit (orrery up asks, then stops the cluster)",
    ),
];

#[cfg(test)]
#[path = "model_tests.rs"]
pub(crate) mod tests;
