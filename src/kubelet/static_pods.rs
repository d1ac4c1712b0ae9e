//! Static pods and their mirror pods, as the kubelet of a kubeadm control-plane node keeps them.
//!
//! A kubelet started with a manifest directory (kubeadm's `/etc/kubernetes/manifests`, here
//! `<state-dir>/kubernetes/manifests`, see [`crate::control_plane`]) reads a pod from each file there,
//! names it `<name>-<node>`, gives it the file's hash as `kubernetes.io/config.hash` (its UID),
//! `kubernetes.io/config.seen`, `kubernetes.io/config.source: file` and a toleration of every
//! `NoExecute` taint (so node trouble never evicts it), and runs it. The API server learns of it
//! through a *mirror pod*: the same pod, annotated `kubernetes.io/config.mirror` with the hash
//! and owned by the Node, created by the kubelet through the API like any client. A mirror pod
//! deleted through the API is created again; one whose hash is out of date is replaced; one
//! whose static pod is gone (an orphan) is deleted. The kubelet never runs a mirror pod: it runs
//! the static pod.
//!
//! In Orrery the static pods are pictures: their components (the API server, the store, the
//! scheduler, the controller manager) run inside the `orrery up` process. So "running" one
//! means following its component: this kubelet reads each component's state from the API
//! server's `GET /orrery/v1/components` every second, as a real kubelet probes a static pod's
//! health endpoints, and writes the mirror pod's status through the API: Running and Ready while
//! the supervisor runs the component; its container terminated (exit code 137, as a killed
//! process) and the pod not ready once `orrery component stop` stopped it; running again with
//! `restartCount` one higher and the run before as `lastState` once it is started again. While
//! the API server itself is stopped no status can be written, as in a real cluster: its mirror
//! pod shows the change only when it is back. The containers' logs are the components' own
//! ([`InProcess`], [`crate::complog`]).
//!
//! The members of `--store etcd-cluster=N` are real processes (children of `orrery up`), one
//! static pod each (`etcd-1`, ...: [`crate::control_plane::MEMBER`] names the member): their
//! pods follow the supervised component of that name the same way, their container ids say
//! `child-process`, and their logs are the members' own log files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Digest;

use super::Kubelet;
use crate::complog::{Component, Instance};
use crate::runtime::{
    ContainerConfig, ContainerRuntime, ContainerState, ContainerStats, ContainerStatus,
    ExecRequest, ExecSession, LogLine, Result, RuntimeError, SandboxConfig, SandboxStatus,
};

/// The annotation that marks a mirror pod, with its static pod's hash.
pub(super) const MIRROR: &str = "kubernetes.io/config.mirror";
const HASH: &str = "kubernetes.io/config.hash";
const SEEN: &str = "kubernetes.io/config.seen";
const SOURCE: &str = "kubernetes.io/config.source";

/// How often the components' states are read (kubeadm's readiness probes run every second).
const SYNC: Duration = Duration::from_secs(1);

/// The exit code a stopped component's container shows: a process killed by SIGKILL (the
/// supervisor drops the component's tasks at once, without letting them finish).
const KILLED: i32 = 137;

/// What makes a node a kubeadm control-plane node: its static pods and where their logs are.
#[derive(Clone, Debug)]
pub struct ControlPlane {
    /// The manifest directory (`--pod-manifest-path`, kubeadm's `/etc/kubernetes/manifests`).
    pub manifests: PathBuf,
    /// Where the components' logs are ([`crate::complog::log_path`]).
    pub logs: PathBuf,
}

/// Whether `pod` is a mirror pod.
pub(super) fn is_mirror(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(MIRROR))
}

/// The component a static pod's `component` label names.
fn component_of(label: &str) -> Option<Component> {
    match label {
        "etcd" | "orrery-store" => Some(Component::Store),
        other => Component::from_log_name(other),
    }
}

/// What a static pod's container is a picture of.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Picture {
    /// A component (the replica, for a replicated one) inside the `orrery up` process.
    InProcess(Instance),
    /// An etcd member: a child process of `orrery up`, supervised as the component of this name,
    /// and its log file.
    Member(String, PathBuf),
}

impl Picture {
    /// The key of its container ids and states: `kube-scheduler`, `etcd-2`.
    fn key(&self) -> String {
        match self {
            Picture::InProcess(component) => component.log_name(),
            Picture::Member(name, _) => name.clone(),
        }
    }

    /// The supervised component it follows (none for the store, which cannot be stopped).
    fn follows(&self) -> Option<String> {
        match self {
            Picture::InProcess(component) => component.supervised_as(),
            Picture::Member(name, _) => Some(name.clone()),
        }
    }

    /// The container ids' prefix.
    fn scheme(&self) -> &'static str {
        match self {
            Picture::InProcess(_) => "in-process",
            Picture::Member(..) => "child-process",
        }
    }
}

/// A static pod read from a manifest.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct StaticPod {
    namespace: String,
    name: String,
    container: String,
    image: String,
    component: Component,
    /// What its container is: an in-process component (its log name, `kube-scheduler`), or an
    /// etcd member's process (the member, `etcd-2`). Container ids and states are keyed by it.
    picture: Picture,
    hash: String,
    /// The pod as the kubelet runs it (defaults applied).
    pod: Value,
}

/// The static pod in manifest `file` (whose text is `text`) for node `node`, seen at `seen`:
/// kubelet's defaults for a file source applied.
fn static_pod(file: &Path, text: &str, node: &str, seen: &str) -> Result<StaticPod, String> {
    let mut pod: Value =
        serde_yaml::from_str(text).map_err(|e| format!("{}: {e}", file.display()))?;
    if pod["kind"] != "Pod" {
        return Err(format!("{}: not a Pod", file.display()));
    }
    let typed: Pod = serde_json::from_value(pod.clone())
        .map_err(|e| format!("{}: invalid pod: {e}", file.display()))?;
    let name = typed.metadata.name.clone().unwrap_or_default();
    let containers = typed.spec.as_ref().map(|s| s.containers.clone());
    let Some(first) = containers.as_ref().and_then(|c| c.first()) else {
        return Err(format!("{}: invalid pod: no containers", file.display()));
    };
    if name.is_empty() {
        return Err(format!(
            "{}: invalid pod: metadata.name: Required value",
            file.display()
        ));
    }
    let label = typed
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("component"))
        .cloned()
        .unwrap_or_default();
    let component = component_of(&label).ok_or_else(|| {
        format!(
            "{}: no Orrery component is labelled component={label:?}: only the control plane's \
             static pods are shown",
            file.display()
        )
    })?;
    let annotation = |name: &str| {
        typed
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(name))
            .cloned()
            .unwrap_or_default()
    };
    let member = annotation(crate::control_plane::MEMBER);
    let picture = if component == Component::Store && !member.is_empty() && !member.contains('/') {
        Picture::Member(
            member,
            PathBuf::from(annotation(crate::control_plane::MEMBER_LOG)),
        )
    } else {
        // A replica's pod is named after it (`kube-scheduler-2`); the label is the component's.
        Picture::InProcess(
            Instance::from_log_name(&name)
                .filter(|i| i.component == component)
                .unwrap_or(Instance::from(component)),
        )
    };
    // The UID is a hash of where the pod came from and what it is, as the kubelet makes it.
    let mut hasher = sha2::Sha256::new();
    hasher.update(format!("host:{node}file:{}", file.display()));
    hasher.update(serde_json::to_vec(&pod).unwrap_or_default());
    let hash: String = hasher.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let namespace = typed
        .metadata
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".into());
    pod["metadata"]["name"] = json!(format!("{name}-{}", node.to_lowercase()));
    pod["metadata"]["namespace"] = json!(namespace);
    pod["metadata"]["uid"] = json!(hash);
    let annotations = &mut pod["metadata"]["annotations"];
    if !annotations.is_object() {
        *annotations = json!({});
    }
    annotations[HASH] = json!(hash);
    annotations[SEEN] = json!(seen);
    annotations[SOURCE] = json!("file");
    pod["spec"]["nodeName"] = json!(node);
    let tolerations = &mut pod["spec"]["tolerations"];
    if !tolerations.is_array() {
        *tolerations = json!([]);
    }
    let every_no_execute = json!({"operator": "Exists", "effect": "NoExecute"});
    if let Some(list) = tolerations.as_array_mut()
        && !list.contains(&every_no_execute)
    {
        list.push(every_no_execute);
    }
    Ok(StaticPod {
        name: format!("{name}-{}", node.to_lowercase()),
        namespace,
        container: first.name.clone(),
        image: first.image.clone().unwrap_or_default(),
        component,
        picture,
        hash,
        pod,
    })
}

/// The static pods in `dir`, in file order; a manifest that cannot be read is reported and left
/// out, as the kubelet does.
fn read_manifests(dir: &Path, node: &str) -> Vec<StaticPod> {
    let seen = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.9fZ")
        .to_string();
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(error) => {
            tracing::warn!(%error, dir = %dir.display(), "cannot read the static pod manifests");
            return Vec::new();
        }
    };
    files.sort();
    files
        .iter()
        // Hidden files (an editor's, a half-written manifest) are skipped, as the kubelet does.
        .filter(|f| {
            f.file_name()
                .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
        })
        .filter_map(|file| {
            let text = std::fs::read_to_string(file)
                .map_err(|e| format!("{}: {e}", file.display()))
                .and_then(|text| static_pod(file, &text, node, &seen));
            match text {
                Ok(pod) => Some(pod),
                Err(error) => {
                    tracing::warn!(%error, "could not process a static pod manifest");
                    None
                }
            }
        })
        .collect()
}

/// One run of a component, as `/orrery/v1/components` lists it.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct Run {
    started_at: String,
    #[serde(default)]
    stopped_at: Option<String>,
}

/// A component's state, as `/orrery/v1/components` lists it.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
struct Seen {
    name: String,
    running: bool,
    #[serde(default)]
    restarts: u32,
    #[serde(default)]
    runs: Vec<Run>,
}

#[derive(Deserialize)]
struct Components {
    components: Vec<Seen>,
}

/// What the static pods' manager and the node's runtime view ([`InProcess`]) share: the static
/// pods and their components' latest states.
#[derive(Default)]
pub(super) struct Pictures {
    pods: Mutex<Vec<StaticPod>>,
    /// By [`Picture::key`].
    states: Mutex<HashMap<String, Seen>>,
}

impl Pictures {
    fn state(&self, key: &str) -> Option<Seen> {
        self.states
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    /// The static pod whose container ids have `key`.
    fn pod(&self, key: &str) -> Option<StaticPod> {
        self.pods
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|p| p.picture.key() == key)
            .cloned()
    }
}

/// A mirror pod as the kubelet's pod watch saw it.
pub(super) enum MirrorEvent {
    /// Added or changed.
    Seen(Pod),
    /// Deleted.
    Deleted(Pod),
}

/// An etcd member's log lines (zap's JSON, one object a line) as container log lines: the time
/// from each line's `ts` where it reads as one, the text as written.
fn member_log(text: &str) -> Vec<LogLine> {
    let mut last = jiff::Timestamp::UNIX_EPOCH;
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let ts = serde_json::from_str::<Value>(line)
                .ok()
                .and_then(|v| v["ts"].as_str().map(str::to_owned));
            // etcd 3.4 writes `2026-12-04T16:00:00.123+0100`: jiff wants `+01:00`.
            if let Some(time) = ts.and_then(|ts| {
                ts.parse::<jiff::Timestamp>().ok().or_else(|| {
                    let (head, zone) = ts.split_at(ts.len().saturating_sub(5));
                    let fixed = format!(
                        "{head}{}:{}",
                        &zone[..zone.len().min(3)],
                        &zone[zone.len().min(3)..]
                    );
                    fixed.parse::<jiff::Timestamp>().ok()
                })
            }) {
                last = time;
            }
            LogLine {
                time: last,
                stream: "stderr",
                text: line.to_owned(),
            }
        })
        .collect()
}

/// The time as Kubernetes writes it (seconds).
fn seconds(time: &str) -> String {
    time.parse::<jiff::Timestamp>()
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|_| time.to_owned())
}

/// A container id for run `run` of `picture`: `in-process/kube-scheduler/2`,
/// `child-process/etcd-2/0`.
fn container_id(picture: &Picture, run: u32) -> String {
    format!("{}/{}/{run}", picture.scheme(), picture.key())
}

/// The `containerID` of run `run` of `picture`: `in-process://kube-scheduler/2`.
fn container_uri(picture: &Picture, run: u32) -> String {
    format!("{}://{}/{run}", picture.scheme(), picture.key())
}

/// The picture's key and run of a static pod's container id (an in-process component's, or an
/// etcd member's: any key, which [`Pictures`] may or may not know).
fn parse_container_id(id: &str) -> Option<(String, u32)> {
    let rest = match id.strip_prefix("in-process/") {
        Some(rest) => {
            let key = rest.split('/').next()?;
            Instance::from_log_name(key)?;
            rest
        }
        None => id.strip_prefix("child-process/")?,
    };
    let mut parts = rest.split('/');
    let key = parts.next().filter(|k| !k.is_empty())?.to_owned();
    let run = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((key, run))
}

/// A terminated container state for run `run` of a picture.
fn terminated(picture: &Picture, run_index: u32, run: &Run) -> Value {
    json!({"terminated": {
        "exitCode": KILLED,
        "reason": "Error",
        "message": format!(
            "stopped by the operator (orrery component stop {})",
            picture.follows().unwrap_or_default()
        ),
        "startedAt": seconds(&run.started_at),
        "finishedAt": run.stopped_at.as_deref().map(seconds),
        "containerID": container_uri(picture, run_index),
    }})
}

/// The mirror pod's status for a component in state `seen`: what a kubelet writes for a
/// host-network pod whose one container is that component. `previous` is the pod's current
/// conditions (a condition's transition time moves only when its status does).
/// A static pod's status; like kubeadm's, the pods use the host's network, so their IP is the
/// node's `address`.
fn status(
    pod: &StaticPod,
    seen: &Seen,
    start_time: &str,
    previous: &[Value],
    address: std::net::Ipv4Addr,
) -> Value {
    let current_run = seen.restarts;
    let current = seen.runs.last().cloned().unwrap_or_default();
    let state = if seen.running {
        json!({"running": {"startedAt": seconds(&current.started_at)}})
    } else {
        terminated(&pod.picture, current_run, &current)
    };
    let last_state = match seen.runs.len() {
        2.. if current_run > 0 => terminated(
            &pod.picture,
            current_run - 1,
            &seen.runs[seen.runs.len() - 2],
        ),
        _ => json!({}),
    };
    let ready = seen.running;
    let container_status = json!({
        "name": pod.container,
        "image": pod.image,
        "imageID": "",
        "containerID": container_uri(&pod.picture, current_run),
        "ready": ready,
        "started": ready,
        "restartCount": seen.restarts,
        "state": state,
        "lastState": last_state,
    });
    let now = super::now();
    let condition = |kind: &str, ok: bool| {
        let status = if ok { "True" } else { "False" };
        let since = previous
            .iter()
            .find(|c| c["type"] == kind && c["status"] == status)
            .and_then(|c| c["lastTransitionTime"].as_str())
            .map_or_else(|| now.clone(), str::to_owned);
        let mut c = json!({"type": kind, "status": status, "lastProbeTime": null, "lastTransitionTime": since});
        if !ok {
            c["reason"] = json!("ContainersNotReady");
            c["message"] = json!(format!(
                "containers with unready status: [{}]",
                pod.container
            ));
        }
        c
    };
    json!({
        "phase": "Running",
        "conditions": [
            condition("PodReadyToStartContainers", true),
            condition("Initialized", true),
            condition("Ready", ready),
            condition("ContainersReady", ready),
            condition("PodScheduled", true),
        ],
        "hostIP": address.to_string(),
        "hostIPs": [{"ip": address.to_string()}],
        "podIP": address.to_string(),
        "podIPs": [{"ip": address.to_string()}],
        "startTime": start_time,
        "qosClass": "Burstable",
        "containerStatuses": [container_status],
    })
}

/// The mirror pod of a static pod: the pod with the mirror annotation, owned by the Node
/// (`uid`), with no UID of its own (the API server gives it one).
fn mirror_of(pod: &StaticPod, node: &str, node_uid: &str) -> Value {
    let mut mirror = pod.pod.clone();
    mirror["metadata"]["annotations"][MIRROR] = json!(pod.hash);
    if let Some(meta) = mirror["metadata"].as_object_mut() {
        meta.remove("uid");
    }
    mirror["metadata"]["ownerReferences"] = json!([{
        "apiVersion": "v1", "kind": "Node", "name": node, "uid": node_uid, "controller": true,
    }]);
    mirror
}

/// A mirror pod bound to a node that has no static pod of its name (an orphan) is deleted, as
/// every kubelet does.
pub(super) async fn delete_orphan(client: &kube::Client, pod: &Pod) {
    let (Some(namespace), Some(name)) = (&pod.metadata.namespace, &pod.metadata.name) else {
        return;
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    if let Err(error) = pods.delete(name, &params).await {
        tracing::debug!(%error, pod = %name, "could not delete an orphaned mirror pod");
    }
}

/// The manager: reads the manifests, keeps a mirror pod per static pod and writes their status,
/// until the kubelet stops.
pub(super) async fn run(
    kubelet: Arc<Kubelet>,
    control_plane: ControlPlane,
    pictures: Arc<Pictures>,
    mut events: tokio::sync::mpsc::UnboundedReceiver<MirrorEvent>,
) {
    let node = kubelet.config.name.clone();
    let pods = read_manifests(&control_plane.manifests, &node);
    *pictures.pods.lock().unwrap_or_else(|p| p.into_inner()) = pods.clone();
    let started = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    let mut manager = Manager {
        kubelet,
        node,
        pods,
        store_started: started,
        mirrors: HashMap::new(),
        written: HashMap::new(),
        attempted: HashMap::new(),
    };
    let mut ticker = tokio::time::interval(SYNC);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(event) => manager.observe(event).await,
                None => return,
            },
            _ = ticker.tick() => manager.sync(&pictures).await,
        }
    }
}

struct Manager {
    kubelet: Arc<Kubelet>,
    node: String,
    pods: Vec<StaticPod>,
    /// When the store's picture started (the store runs as long as the process).
    store_started: String,
    /// The mirror pods as the API server has them, by name.
    mirrors: HashMap<String, Pod>,
    /// The status last written for each mirror pod (by name), with the resourceVersion that
    /// write made: a later change by anyone else (the node lifecycle controller marking the pods
    /// of a silent node not ready, say) makes the status be written again.
    written: HashMap<String, (Value, Option<String>)>,
    /// The status last sent for each mirror pod, written or not.
    attempted: HashMap<String, Value>,
}

impl Manager {
    fn ours(&self, pod: &Pod) -> Option<&StaticPod> {
        self.pods.iter().find(|s| {
            pod.metadata.name.as_deref() == Some(&s.name)
                && pod.metadata.namespace.as_deref() == Some(&s.namespace)
        })
    }

    async fn observe(&mut self, event: MirrorEvent) {
        match event {
            MirrorEvent::Seen(pod) => {
                let Some(name) = self.ours(&pod).map(|s| s.name.clone()) else {
                    delete_orphan(&self.kubelet.client, &pod).await;
                    return;
                };
                if pod.metadata.deletion_timestamp.is_some() {
                    // Deleted through the API: let it go now (it is made again at once).
                    delete_orphan(&self.kubelet.client, &pod).await;
                    return;
                }
                let ours = self.written.get(&name).map(|(_, rv)| rv);
                if ours.is_some_and(|rv| rv.as_ref() != pod.metadata.resource_version.as_ref()) {
                    self.written.remove(&name);
                }
                self.mirrors.insert(name, pod);
            }
            MirrorEvent::Deleted(pod) => {
                let Some(name) = self.ours(&pod).map(|s| s.name.clone()) else {
                    return;
                };
                if self
                    .mirrors
                    .get(&name)
                    .and_then(|m| m.metadata.uid.as_ref())
                    == pod.metadata.uid.as_ref()
                {
                    self.mirrors.remove(&name);
                    self.written.remove(&name);
                }
            }
        }
    }

    /// Makes the mirror pod of `pod` if there is none (or only an outdated one).
    async fn ensure_mirror(&mut self, pod: &StaticPod) -> Option<Pod> {
        let api: Api<Pod> = Api::namespaced(self.kubelet.client.clone(), &pod.namespace);
        let hash_of = |m: &Pod| {
            m.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(MIRROR))
                .cloned()
        };
        if let Some(existing) = self.mirrors.get(&pod.name) {
            if hash_of(existing).as_deref() == Some(pod.hash.as_str()) {
                return Some(existing.clone());
            }
            // Out of date: replaced.
            delete_orphan(&self.kubelet.client, existing).await;
            self.mirrors.remove(&pod.name);
        }
        // The owner is the Node as it is now, read at each creation as upstream's mirror client
        // does: a Node deleted and registered again has a new UID, and the garbage collector
        // removes the mirror pods of the old one.
        let nodes: Api<Node> = Api::all(self.kubelet.client.clone());
        let node_uid = nodes.get_opt(&self.node).await.ok()??.metadata.uid?;
        let mirror: Pod = serde_json::from_value(mirror_of(pod, &self.node, &node_uid)).ok()?;
        match api.create(&PostParams::default(), &mirror).await {
            Ok(created) => {
                self.mirrors.insert(pod.name.clone(), created.clone());
                self.written.remove(&pod.name);
                Some(created)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                // Made before this kubelet started: ours if its hash is this one's.
                let existing = api.get_opt(&pod.name).await.ok().flatten()?;
                if hash_of(&existing).as_deref() != Some(pod.hash.as_str()) {
                    delete_orphan(&self.kubelet.client, &existing).await;
                    return None;
                }
                self.mirrors.insert(pod.name.clone(), existing.clone());
                Some(existing)
            }
            Err(error) => {
                tracing::debug!(%error, pod = %pod.name, "could not create a mirror pod");
                None
            }
        }
    }

    /// Reads the components' states, then keeps each mirror pod and its status current.
    async fn sync(&mut self, pictures: &Pictures) {
        let request = http::Request::get("/orrery/v1/components")
            .body(Vec::new())
            .expect("a valid request");
        let Ok(components) = self.kubelet.client.request::<Components>(request).await else {
            return;
        };
        {
            let mut states = pictures.states.lock().unwrap_or_else(|p| p.into_inner());
            for seen in components.components {
                for pod in &self.pods {
                    if pod.picture.follows().as_deref() == Some(seen.name.as_str()) {
                        states.insert(pod.picture.key(), seen.clone());
                    }
                }
            }
            states.insert(
                Component::Store.log_name().to_owned(),
                Seen {
                    name: "store".into(),
                    running: true,
                    restarts: 0,
                    runs: vec![Run {
                        started_at: self.store_started.clone(),
                        stopped_at: None,
                    }],
                },
            );
        }
        for pod in self.pods.clone() {
            let Some(seen) = pictures.state(&pod.picture.key()) else {
                continue;
            };
            let Some(mirror) = self.ensure_mirror(&pod).await else {
                continue;
            };
            let previous = mirror
                .status
                .as_ref()
                .map(|s| serde_json::to_value(s).unwrap_or_default())
                .unwrap_or_default();
            let conditions = previous["conditions"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let start_time = previous["startTime"]
                .as_str()
                .map_or_else(|| seconds(&self.store_started), str::to_owned);
            let address = self.kubelet.config.address;
            let status = status(&pod, &seen, &start_time, &conditions, address);
            if self.written.get(&pod.name).map(|(s, _)| s) == Some(&status) {
                continue;
            }
            self.write_status(&pod, &mirror, status).await;
        }
    }

    /// Writes a mirror pod's status through the API, after its hop; kept as written only once
    /// the API server took it (a stopped API server is tried again on the next sync).
    async fn write_status(&mut self, pod: &StaticPod, mirror: &Pod, status: Value) {
        // A retry of a write that failed (the API server is stopped) is not a new hop.
        if self.attempted.get(&pod.name) != Some(&status) {
            let was = mirror.status.as_ref().and_then(|s| s.phase.as_deref());
            let uid = mirror.metadata.uid.as_deref().unwrap_or_default();
            super::status::announce(
                &self.kubelet,
                (&pod.namespace, &pod.name, uid),
                &status,
                was.unwrap_or_default(),
            )
            .await;
            self.attempted.insert(pod.name.clone(), status.clone());
        }
        let api: Api<Pod> = Api::namespaced(self.kubelet.client.clone(), &pod.namespace);
        match api
            .patch_status(
                &pod.name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": status})),
            )
            .await
        {
            Ok(updated) => {
                let rv = updated.metadata.resource_version.clone();
                self.mirrors.insert(pod.name.clone(), updated);
                self.written.insert(pod.name.clone(), (status, rv));
            }
            Err(error) => {
                tracing::debug!(%error, pod = %pod.name, "could not write a mirror pod's status");
            }
        }
    }
}

/// The control-plane node's runtime, as the kubelet's log, exec and port-forward server and its
/// pod workers see it: the node's container runtime, plus the static pods' containers, which
/// are the in-process components. Their logs are the components' log files and their state the
/// component's; nothing else can be done with them (no process of their own runs in a container
/// to exec into). Every other call goes to the node's runtime unchanged.
pub(super) struct InProcess {
    inner: Arc<dyn ContainerRuntime>,
    pictures: Arc<Pictures>,
    logs: PathBuf,
}

impl InProcess {
    /// The view over the node's runtime `inner`.
    pub(super) fn new(
        inner: Arc<dyn ContainerRuntime>,
        pictures: Arc<Pictures>,
        logs: PathBuf,
    ) -> Self {
        InProcess {
            inner,
            pictures,
            logs,
        }
    }
}

fn in_process(id: &str) -> RuntimeError {
    RuntimeError::Unsupported(format!(
        "container {id} is an in-process component of orrery, not a container: there is no \
         process of its own to run commands in"
    ))
}

#[async_trait]
impl ContainerRuntime for InProcess {
    fn version(&self) -> (&'static str, &'static str) {
        self.inner.version()
    }
    async fn run_pod_sandbox(&self, config: &SandboxConfig) -> Result<String> {
        self.inner.run_pod_sandbox(config).await
    }
    async fn stop_pod_sandbox(&self, sandbox: &str) -> Result<()> {
        self.inner.stop_pod_sandbox(sandbox).await
    }
    async fn remove_pod_sandbox(&self, sandbox: &str) -> Result<()> {
        self.inner.remove_pod_sandbox(sandbox).await
    }
    async fn pod_sandbox_status(&self, sandbox: &str) -> Result<SandboxStatus> {
        self.inner.pod_sandbox_status(sandbox).await
    }
    async fn pull_image(&self, image: &str) -> Result<String> {
        self.inner.pull_image(image).await
    }
    async fn image_present(&self, image: &str) -> Option<String> {
        self.inner.image_present(image).await
    }
    async fn create_container(&self, sandbox: &str, config: &ContainerConfig) -> Result<String> {
        self.inner.create_container(sandbox, config).await
    }
    async fn start_container(&self, id: &str) -> Result<()> {
        match parse_container_id(id) {
            Some(_) => Err(in_process(id)),
            None => self.inner.start_container(id).await,
        }
    }
    async fn stop_container(&self, id: &str, grace: Duration) -> Result<()> {
        match parse_container_id(id) {
            Some(_) => Err(in_process(id)),
            None => self.inner.stop_container(id, grace).await,
        }
    }
    async fn remove_container(&self, id: &str) -> Result<()> {
        match parse_container_id(id) {
            Some(_) => Err(in_process(id)),
            None => self.inner.remove_container(id).await,
        }
    }
    async fn attach(&self, id: &str) -> Result<ExecSession> {
        match parse_container_id(id) {
            Some(_) => Err(in_process(id)),
            None => self.inner.attach(id).await,
        }
    }
    async fn container_stats(&self, id: &str) -> Result<ContainerStats> {
        // The components share orrery's process: no cgroup measures one of them alone.
        match parse_container_id(id) {
            Some(_) => Err(in_process(id)),
            None => self.inner.container_stats(id).await,
        }
    }
    async fn container_status(&self, id: &str) -> Result<ContainerStatus> {
        let Some((key, run)) = parse_container_id(id) else {
            return self.inner.container_status(id).await;
        };
        let seen = self.pictures.state(&key).unwrap_or_default();
        let running = seen.running && run == seen.restarts;
        let container = self
            .pictures
            .pod(&key)
            .map(|p| p.container)
            .unwrap_or_default();
        Ok(ContainerStatus {
            id: id.to_owned(),
            name: container,
            state: if running {
                ContainerState::Running
            } else {
                ContainerState::Exited
            },
            started_at: None,
            finished_at: None,
            exit_code: (!running).then_some(KILLED),
            reason: (!running).then(|| "Error".to_owned()),
            attempt: run,
            message: None,
        })
    }
    async fn container_logs(&self, id: &str) -> Result<Vec<LogLine>> {
        let Some((key, run)) = parse_container_id(id) else {
            return self.inner.container_logs(id).await;
        };
        let picture = self.pictures.pod(&key).map(|p| p.picture);
        let (path, member) = match picture {
            Some(Picture::InProcess(component)) => {
                (crate::complog::log_path(&self.logs, component, run), false)
            }
            // The member's own log, every run appended.
            Some(Picture::Member(_, log)) => (log, true),
            None => {
                return Err(RuntimeError::NotFound {
                    kind: "container",
                    id: id.to_owned(),
                });
            }
        };
        match tokio::fs::read_to_string(&path).await {
            Ok(text) if member => Ok(member_log(&text)),
            Ok(text) => Ok(crate::runtime::libcontainer::logs::parse(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(RuntimeError::Failed {
                action: "read logs",
                message: format!("{}: {e}", path.display()),
            }),
        }
    }
    async fn exec(&self, id: &str, request: ExecRequest) -> Result<ExecSession> {
        match parse_container_id(id) {
            Some(_) => Err(in_process(id)),
            None => self.inner.exec(id, request).await,
        }
    }
    async fn list_pod_sandboxes(&self) -> Vec<(String, SandboxConfig)> {
        self.inner.list_pod_sandboxes().await
    }
    async fn dial(
        &self,
        sandbox: &str,
        host: &str,
        port: u16,
    ) -> std::io::Result<crate::runtime::PodConnection> {
        self.inner.dial(sandbox, host, port).await
    }
    async fn list_containers(&self, sandbox: &str) -> Result<Vec<ContainerStatus>> {
        self.inner.list_containers(sandbox).await
    }
    async fn find_container(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        previous: bool,
    ) -> Option<String> {
        let picture = self
            .pictures
            .pods
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|p| p.namespace == namespace && p.name == pod && p.container == container)
            .map(|p| p.picture.clone());
        let Some(picture) = picture else {
            return self
                .inner
                .find_container(namespace, pod, container, previous)
                .await;
        };
        let seen = self.pictures.state(&picture.key())?;
        let run = if previous {
            seen.restarts.checked_sub(1)?
        } else {
            seen.restarts
        };
        Some(container_id(&picture, run))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEDULER: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-scheduler\n  namespace: kube-system\n  labels: {component: kube-scheduler, tier: control-plane}\nspec:\n  hostNetwork: true\n  containers:\n  - name: kube-scheduler\n    image: registry.k8s.io/kube-scheduler:v1.33.0\n    command: [kube-scheduler, --v=2]\n";

    fn scheduler() -> StaticPod {
        static_pod(
            Path::new("/m/kube-scheduler.yaml"),
            SCHEDULER,
            "orrery-control-plane",
            "2026-12-04T16:00:00.000000000Z",
        )
        .unwrap()
    }

    #[test]
    fn a_static_pod_gets_the_kubelets_defaults_and_its_mirror_the_nodes_ownership() {
        let pod = scheduler();
        assert_eq!(pod.name, "kube-scheduler-orrery-control-plane");
        assert_eq!(pod.namespace, "kube-system");
        assert_eq!(pod.component, Component::Scheduler);
        assert_eq!(
            pod.picture,
            Picture::InProcess(Instance::from(Component::Scheduler))
        );
        // A replica's static pod pictures that replica.
        let replica = static_pod(
            Path::new("/m/kube-scheduler-2.yaml"),
            &SCHEDULER.replace("name: kube-scheduler\n", "name: kube-scheduler-2\n"),
            "orrery-control-plane",
            "",
        )
        .unwrap();
        assert_eq!(replica.name, "kube-scheduler-2-orrery-control-plane");
        assert_eq!(
            replica.picture,
            Picture::InProcess(Instance::replica(Component::Scheduler, 2))
        );
        assert_eq!(pod.hash.len(), 32);
        let annotations = &pod.pod["metadata"]["annotations"];
        assert_eq!(annotations[HASH], json!(pod.hash));
        assert_eq!(annotations[SOURCE], "file");
        assert_eq!(annotations[SEEN], "2026-12-04T16:00:00.000000000Z");
        assert_eq!(pod.pod["spec"]["nodeName"], "orrery-control-plane");
        assert_eq!(
            pod.pod["spec"]["tolerations"],
            json!([{"operator": "Exists", "effect": "NoExecute"}])
        );
        // The same manifest on another node, or changed, hashes differently.
        let elsewhere =
            static_pod(Path::new("/m/kube-scheduler.yaml"), SCHEDULER, "other", "").unwrap();
        assert_ne!(elsewhere.hash, pod.hash);
        let mirror = mirror_of(&pod, "orrery-control-plane", "uid-1");
        assert_eq!(mirror["metadata"]["annotations"][MIRROR], json!(pod.hash));
        assert!(mirror["metadata"].get("uid").is_none());
        assert_eq!(
            mirror["metadata"]["ownerReferences"],
            json!([{"apiVersion": "v1", "kind": "Node", "name": "orrery-control-plane", "uid": "uid-1", "controller": true}])
        );
        // What cannot be shown is said, not run.
        for (text, words) in [
            ("kind: Service\nmetadata: {name: x}\n", "not a Pod"),
            (
                "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {containers: []}\n",
                "no containers",
            ),
            (
                "apiVersion: v1\nkind: Pod\nmetadata: {name: x, labels: {component: nginx}}\nspec: {containers: [{name: c, image: nginx}]}\n",
                "only the control plane",
            ),
        ] {
            let error = static_pod(Path::new("/m/x.yaml"), text, "n", "").unwrap_err();
            assert!(error.contains(words), "{error}");
        }
    }

    #[test]
    fn the_status_follows_the_component() {
        let pod = scheduler();
        let run = |started: &str, stopped: Option<&str>| Run {
            started_at: started.into(),
            stopped_at: stopped.map(str::to_owned),
        };
        let running = Seen {
            name: "scheduler".into(),
            running: true,
            restarts: 0,
            runs: vec![run("2026-12-04T16:00:00.5Z", None)],
        };
        let status = status(
            &pod,
            &running,
            "2026-12-04T16:00:01Z",
            &[],
            std::net::Ipv4Addr::LOCALHOST,
        );
        let container = &status["containerStatuses"][0];
        assert_eq!(status["phase"], "Running");
        assert_eq!(status["podIP"], "127.0.0.1");
        assert_eq!(container["ready"], true);
        assert_eq!(
            container["state"],
            json!({"running": {"startedAt": "2026-12-04T16:00:00Z"}})
        );
        assert_eq!(container["containerID"], "in-process://kube-scheduler/0");
        let ready = |s: &Value| {
            s["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == "Ready")
                .cloned()
                .unwrap()
        };
        assert_eq!(ready(&status)["status"], "True");

        let stopped = Seen {
            running: false,
            runs: vec![run("2026-12-04T16:00:00Z", Some("2026-12-04T16:05:00Z"))],
            ..running.clone()
        };
        let status = super::status(
            &pod,
            &stopped,
            "2026-12-04T16:00:01Z",
            &[],
            std::net::Ipv4Addr::LOCALHOST,
        );
        let container = &status["containerStatuses"][0];
        assert_eq!(status["phase"], "Running");
        assert_eq!(container["ready"], false);
        assert_eq!(container["state"]["terminated"]["exitCode"], KILLED);
        assert_eq!(
            container["state"]["terminated"]["finishedAt"],
            "2026-12-04T16:05:00Z"
        );
        assert_eq!(ready(&status)["status"], "False");
        assert_eq!(ready(&status)["reason"], "ContainersNotReady");
        assert_eq!(
            ready(&status)["message"],
            "containers with unready status: [kube-scheduler]"
        );

        let restarted = Seen {
            running: true,
            restarts: 1,
            runs: vec![
                run("2026-12-04T16:00:00Z", Some("2026-12-04T16:05:00Z")),
                run("2026-12-04T16:06:00Z", None),
            ],
            ..running
        };
        let status = super::status(
            &pod,
            &restarted,
            "2026-12-04T16:00:01Z",
            &[],
            std::net::Ipv4Addr::LOCALHOST,
        );
        let container = &status["containerStatuses"][0];
        assert_eq!(container["restartCount"], 1);
        assert_eq!(container["ready"], true);
        assert_eq!(container["containerID"], "in-process://kube-scheduler/1");
        assert_eq!(
            container["lastState"]["terminated"]["startedAt"],
            "2026-12-04T16:00:00Z"
        );
        assert_eq!(
            container["lastState"]["terminated"]["containerID"],
            "in-process://kube-scheduler/0"
        );
    }

    #[test]
    fn in_process_container_ids_name_a_component_and_a_run() {
        assert_eq!(
            parse_container_id(&container_id(
                &Picture::InProcess(Component::ControllerManager.into()),
                3
            )),
            Some(("kube-controller-manager".to_owned(), 3))
        );
        let replica = Picture::InProcess(Instance::replica(Component::Scheduler, 2));
        assert_eq!(container_id(&replica, 1), "in-process/kube-scheduler-2/1");
        assert_eq!(
            parse_container_id("in-process/kube-scheduler-2/1"),
            Some(("kube-scheduler-2".to_owned(), 1))
        );
        let member = Picture::Member("etcd-2".into(), PathBuf::from("/s/etcd/etcd-2.log"));
        assert_eq!(container_id(&member, 1), "child-process/etcd-2/1");
        assert_eq!(container_uri(&member, 1), "child-process://etcd-2/1");
        assert_eq!(
            parse_container_id("child-process/etcd-2/1"),
            Some(("etcd-2".to_owned(), 1))
        );
        for other in [
            "abc123",
            "in-process/nope/1",
            "in-process/kube-scheduler/x",
            "in-process/kube-scheduler/1/2",
            "child-process//1",
        ] {
            assert_eq!(parse_container_id(other), None, "{other}");
        }
    }

    #[test]
    fn an_etcd_members_pod_follows_the_member() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: etcd-2\n  namespace: kube-system\n  labels: {component: etcd, tier: control-plane}\n  annotations: {orrery.dev/etcd-member: etcd-2, orrery.dev/etcd-member-log: /s/etcd/etcd-2.log}\nspec:\n  hostNetwork: true\n  containers:\n  - name: etcd\n    image: registry.k8s.io/etcd:3.5.21-0\n    command: [etcd, --name=etcd-2]\n";
        let pod = static_pod(
            Path::new("/m/etcd-2.yaml"),
            text,
            "orrery-control-plane",
            "",
        )
        .unwrap();
        assert_eq!(pod.name, "etcd-2-orrery-control-plane");
        assert_eq!(
            pod.picture,
            Picture::Member("etcd-2".into(), PathBuf::from("/s/etcd/etcd-2.log"))
        );
        assert_eq!(pod.picture.follows().as_deref(), Some("etcd-2"));
        let stopped = Seen {
            name: "etcd-2".into(),
            running: false,
            restarts: 0,
            runs: vec![Run {
                started_at: "2026-12-04T16:00:00Z".into(),
                stopped_at: Some("2026-12-04T16:01:00Z".into()),
            }],
        };
        let status = status(
            &pod,
            &stopped,
            "2026-12-04T16:00:00Z",
            &[],
            std::net::Ipv4Addr::LOCALHOST,
        );
        let terminated = &status["containerStatuses"][0]["state"]["terminated"];
        assert_eq!(terminated["containerID"], "child-process://etcd-2/0");
        assert_eq!(
            terminated["message"],
            "stopped by the operator (orrery component stop etcd-2)"
        );
        let lines = member_log(
            "{\"level\":\"info\",\"ts\":\"2026-12-04T16:00:00.250+0100\",\"msg\":\"ready\"}\nnot json\n",
        );
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].time.to_string(), "2026-12-04T15:00:00.25Z");
        assert_eq!(
            lines[1].time, lines[0].time,
            "a line without a time keeps the last one"
        );
    }
}
