//! The DaemonSet controller: one pod per eligible node for every DaemonSet, as
//! kube-controller-manager's. A node is eligible when the pod template's `nodeName`,
//! `nodeSelector` and required node affinity match it and the template (with the standard
//! DaemonSet tolerations added) tolerates its NoSchedule and NoExecute taints; a pod stays on a
//! node that became ineligible only through a NoSchedule taint. Each pod is pinned to its node by
//! a required `matchFields metadata.name In [<node>]` affinity and bound by the scheduler. The
//! controller keeps one ControllerRevision per template (`<ds>-<hash>`, numbered, pods labelled
//! `controller-revision-hash`), replaces old pods by the update strategy (RollingUpdate within
//! `maxUnavailable` or `maxSurge`, or OnDelete), and writes the status `kubectl rollout status`
//! reads.
//!
//! It reads the shared informers of DaemonSets, pods (by controlling owner), nodes and
//! ControllerRevisions. Their handlers put DaemonSet keys on its work queue as upstream's do: a
//! pod's change wakes its controller (or, for an orphan, the DaemonSets selecting it), a node's
//! the DaemonSets whose answer for it changed, a revision's its owner. Its `sync`
//! then reconciles that one DaemonSet from the caches, and asks to be woken when a ready pod
//! becomes available (`minReadySeconds`). Like the ReplicaSet controller it waits (through the
//! shared [`Expectations`]) for its own creates and deletes to show up before acting on a
//! DaemonSet again.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod, PodSpec, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use super::expectations::{Expectations, TIMEOUT as EXPECTATIONS_TIMEOUT};
use super::workqueue::{Action, Key, WorkQueue, run_workers};
use super::{Context, event};
use crate::apimachinery::pods::{self, controller_ref, is_available, is_ready, phase};
use crate::flow::{Flow, FlowEvent};
use crate::informers::{BY_OWNER, Change, Informer, ORPHANS};
use crate::scheduler::filters::{NodeInfo, tolerates};

const COMPONENT: &str = "controller/daemonset";
const SOURCE: &str = "daemonset-controller";
/// The label naming a pod's (and a revision's) template hash.
const HASH_LABEL: &str = "controller-revision-hash";
/// The deprecated label carrying the DaemonSet's generation a pod was made from.
const GENERATION_LABEL: &str = "pod-template-generation";

/// The tolerations the controller adds to every daemon pod, as upstream's
/// `AddOrUpdateDaemonPodTolerations`: daemons survive a not-ready or unreachable node and are
/// placed despite pressure and cordoning (and, with host networking, a missing network).
fn daemon_tolerations(host_network: bool) -> Vec<Toleration> {
    let mut list = vec![
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        list.push(("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    list.into_iter()
        .map(|(key, effect)| Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some(effect.into()),
            ..Default::default()
        })
        .collect()
}

/// Adds the daemon tolerations a spec lacks (same key and effect).
fn add_daemon_tolerations(spec: &mut PodSpec) {
    let wanted = daemon_tolerations(spec.host_network == Some(true));
    let list = spec.tolerations.get_or_insert_with(Vec::new);
    for t in wanted {
        if !list
            .iter()
            .any(|have| have.key == t.key && have.effect == t.effect)
        {
            list.push(t);
        }
    }
}

/// Pins a daemon pod to `node` as upstream's `ReplaceDaemonSetPodNodeNameNodeAffinity`: every
/// required term's `matchFields` becomes `metadata.name In [node]` (a single such term if there
/// was none), the terms' expressions kept.
fn pin_to_node(spec: &mut PodSpec, node: &str) {
    let field =
        serde_json::from_value(json!({"key": "metadata.name", "operator": "In", "values": [node]}))
            .expect("a valid requirement");
    let affinity = spec.affinity.get_or_insert_with(Default::default);
    let node_affinity = affinity.node_affinity.get_or_insert_with(Default::default);
    let required = node_affinity
        .required_during_scheduling_ignored_during_execution
        .get_or_insert_with(Default::default);
    if required.node_selector_terms.is_empty() {
        required.node_selector_terms.push(Default::default());
    }
    for term in &mut required.node_selector_terms {
        term.match_fields = Some(vec![Clone::clone(&field)]);
    }
}

/// The node a daemon pod is for: its `nodeName`, or, before it is bound, the node its
/// `matchFields metadata.name` affinity names (upstream's `GetTargetNodeName`).
fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(node) = spec.node_name.clone().filter(|n| !n.is_empty()) {
        return Some(node);
    }
    spec.affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|f| f.key == "metadata.name" && f.operator == "In")
        .and_then(|f| f.values.as_ref()?.first().cloned())
}

fn untolerated(taints: &[Taint], tolerations: &[Toleration], effects: &[&str]) -> bool {
    taints
        .iter()
        .filter(|t| effects.contains(&t.effect.as_str()))
        .any(|taint| !tolerations.iter().any(|t| tolerates(t, taint)))
}

/// Upstream's `NodeShouldRunDaemonPod`: (should run a daemon pod, should keep one running).
fn should_run(template: &PodSpec, node: &Node) -> (bool, bool) {
    let name = node.metadata.name.clone().unwrap_or_default();
    let mut spec = template.clone();
    if spec
        .node_name
        .as_deref()
        .is_some_and(|n| !n.is_empty() && n != name)
    {
        return (false, false);
    }
    add_daemon_tolerations(&mut spec);
    let pod = Pod {
        spec: Some(spec),
        ..Default::default()
    };
    let info = NodeInfo::new(node.clone(), Vec::new());
    if !matches!(
        crate::scheduler::affinity::filter(&pod, &info),
        crate::scheduler::filters::Filter::Ok
    ) {
        return (false, false);
    }
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default();
    if untolerated(taints, tolerations, &["NoSchedule", "NoExecute"]) {
        return (false, !untolerated(taints, tolerations, &["NoExecute"]));
    }
    (true, true)
}

/// The template's hash as upstream spells it: FNV-1a (32 bits) of the template, its decimal
/// digits written in the alphabet Kubernetes uses for generated names.
fn template_hash(template: &Value) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in template.to_string().bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    hash.to_string()
        .bytes()
        .map(|b| ALPHABET[b as usize % ALPHABET.len()] as char)
        .collect()
}

/// A ControllerRevision's `data`, as upstream's `getDaemonSetPatch`: a strategic merge patch
/// that replaces `spec.template`, which `kubectl rollout undo` sends back.
fn revision_patch(template: &Value) -> Value {
    let mut template = template.clone();
    template["$patch"] = json!("replace");
    json!({"spec": {"template": template}})
}

fn hash_of(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(HASH_LABEL))
        .map(String::as_str)
}

/// `maxSurge`/`maxUnavailable`: a count, or a percentage of `total` rounded up, as the
/// DaemonSet controller scales them.
fn scaled(value: Option<&IntOrString>, total: i64, default: i64) -> i64 {
    match value {
        None => default,
        Some(IntOrString::Int(n)) => i64::from(*n),
        Some(IntOrString::String(s)) => {
            match s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) {
                Some(percent) => (percent * total + 99) / 100,
                None => s.parse().unwrap_or(default),
            }
        }
    }
}

/// Old pods that are creation-ordered, and among equals the one further along first (upstream's
/// `podByCreationTimestampAndPhase`).
fn oldest_first(pods: &mut [&Pod]) {
    pods.sort_by_key(|p| {
        (
            p.metadata.creation_timestamp.as_ref().map(|t| t.0),
            phase(p) != "Running",
            p.metadata.name.clone(),
        )
    });
}

/// What one pass decides for a DaemonSet: nodes to create a pod on, pods to delete.
#[derive(Debug, Default, PartialEq)]
struct Plan {
    create: Vec<String>,
    delete: Vec<String>,
    /// Failed daemon pods among `delete`, with their nodes (a `FailedDaemonPod` event each).
    failed: Vec<(String, String)>,
}

/// The status fields a pass computes.
#[derive(Debug, Default, PartialEq)]
struct Counts {
    desired: i64,
    current: i64,
    misscheduled: i64,
    ready: i64,
    available: i64,
    updated: i64,
}

/// The pods per node (target node), with pods for nodes that do not exist under their name too.
fn by_node<'a>(pods: &[&'a Pod]) -> BTreeMap<String, Vec<&'a Pod>> {
    let mut map: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    for pod in pods {
        if let Some(node) = target_node(pod) {
            map.entry(node).or_default().push(pod);
        }
    }
    map
}

/// One pass of upstream's `manage` and `rollingUpdate` over the DaemonSet's pods (`pods`: every
/// pod it controls, terminating ones included) on `nodes`, with `hash` the current template's.
fn plan<N: Borrow<Node>>(
    ds: &DaemonSet,
    nodes: &[N],
    pods: &[&Pod],
    hash: &str,
    now: jiff::Timestamp,
) -> Plan {
    let mut out = Plan::default();
    let Some(spec) = ds.spec.as_ref() else {
        return out;
    };
    let template = spec.template.spec.clone().unwrap_or_default();
    let min_ready = i64::from(spec.min_ready_seconds.unwrap_or(0));
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let rolling = strategy.type_.as_deref() != Some("OnDelete");
    let rolling_update = strategy.rolling_update.unwrap_or_default();
    let placed = by_node(pods);
    let mut eligible = BTreeMap::new();
    for node in nodes.iter().map(Borrow::borrow) {
        let name = node.metadata.name.clone().unwrap_or_default();
        eligible.insert(name, should_run(&template, node));
    }
    let desired = eligible.values().filter(|(run, _)| *run).count() as i64;
    let max_surge = if rolling {
        scaled(rolling_update.max_surge.as_ref(), desired, 0)
    } else {
        0
    };
    let mut max_unavailable = scaled(rolling_update.max_unavailable.as_ref(), desired, 1);
    if max_surge == 0 && max_unavailable == 0 {
        max_unavailable = 1;
    }
    // manage: create where a pod is missing, delete where none should be, prune duplicates.
    for (node, (run, keep)) in &eligible {
        let on_node = placed.get(node).cloned().unwrap_or_default();
        if *run && on_node.is_empty() {
            out.create.push(node.clone());
        } else if *keep {
            let mut running = Vec::new();
            for pod in on_node
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
            {
                match phase(pod) {
                    "Failed" => {
                        let name = pod.metadata.name.clone().unwrap_or_default();
                        out.failed.push((name.clone(), node.clone()));
                        out.delete.push(name);
                    }
                    "Succeeded" => out
                        .delete
                        .push(pod.metadata.name.clone().unwrap_or_default()),
                    _ => running.push(*pod),
                }
            }
            oldest_first(&mut running);
            if max_surge == 0 {
                for extra in running.iter().skip(1) {
                    out.delete
                        .push(extra.metadata.name.clone().unwrap_or_default());
                }
            } else if running.is_empty() && *run {
                out.create.push(node.clone());
            } else if running.len() > 1 {
                // Surging: keep the oldest new pod and the oldest old one (while the new one is
                // not yet available); everything else goes.
                let (mut newest, mut oldest_old) = (None, None);
                for pod in &running {
                    let slot = if hash_of(pod) == Some(hash) {
                        &mut newest
                    } else {
                        &mut oldest_old
                    };
                    if slot.is_none() {
                        *slot = Some(*pod);
                    } else {
                        out.delete
                            .push(pod.metadata.name.clone().unwrap_or_default());
                    }
                }
                if let (Some(new), Some(old)) = (newest, oldest_old)
                    && (!is_ready(old) || is_available(new, min_ready, now))
                {
                    out.delete
                        .push(old.metadata.name.clone().unwrap_or_default());
                }
            }
        } else {
            for pod in on_node
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
            {
                out.delete
                    .push(pod.metadata.name.clone().unwrap_or_default());
            }
        }
    }
    // Unbound pods for nodes that no longer exist.
    for (node, on_node) in &placed {
        if !eligible.contains_key(node) {
            for pod in on_node.iter().filter(|p| {
                p.metadata.deletion_timestamp.is_none()
                    && p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_none()
            }) {
                out.delete
                    .push(pod.metadata.name.clone().unwrap_or_default());
            }
        }
    }
    if !rolling {
        return out;
    }
    // rollingUpdate: replace old pods within maxUnavailable, or surge new ones within maxSurge.
    let live: BTreeMap<&String, Vec<&Pod>> = placed
        .iter()
        .map(|(node, pods)| {
            let mut live: Vec<&Pod> = pods
                .iter()
                .copied()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect();
            oldest_first(&mut live);
            (node, live)
        })
        .collect();
    let split = |pods: &[&'_ Pod]| -> Option<(Option<String>, Option<String>, bool, bool)> {
        // (new pod, old pod, new available, old available); None with more than one of a kind.
        let new: Vec<&&Pod> = pods.iter().filter(|p| hash_of(p) == Some(hash)).collect();
        let old: Vec<&&Pod> = pods.iter().filter(|p| hash_of(p) != Some(hash)).collect();
        if new.len() > 1 || old.len() > 1 {
            return None;
        }
        Some((
            new.first().and_then(|p| p.metadata.name.clone()),
            old.first().and_then(|p| p.metadata.name.clone()),
            new.first().is_some_and(|p| is_available(p, min_ready, now)),
            old.first().is_some_and(|p| is_available(p, min_ready, now)),
        ))
    };
    if max_surge == 0 {
        let mut unavailable = 0;
        let mut allowed = Vec::new();
        let mut candidates = Vec::new();
        for pods in live.values() {
            match split(pods) {
                None => unavailable += 1,
                Some((None, None, ..)) | Some((Some(_), Some(_), ..)) => unavailable += 1,
                Some((Some(_), None, new_ok, _)) => {
                    if !new_ok {
                        unavailable += 1;
                    }
                }
                Some((None, Some(old), _, old_ok)) => {
                    if !old_ok {
                        allowed.push(old);
                    } else if unavailable < max_unavailable {
                        candidates.push(old);
                    }
                }
            }
        }
        let room = ((max_unavailable - unavailable).max(0) as usize).min(candidates.len());
        out.delete.extend(allowed);
        out.delete.extend(candidates.into_iter().take(room));
    } else {
        let mut surging = 0;
        let mut allowed = Vec::new();
        let mut candidates = Vec::new();
        for (node, pods) in &live {
            match split(pods) {
                None => surging += 1,
                Some((_, None, ..)) => {}
                Some((None, Some(_), _, old_ok)) => {
                    if !eligible.get(*node).is_some_and(|(run, _)| *run) {
                        continue;
                    }
                    if !old_ok {
                        allowed.push((*node).clone());
                    } else if surging < max_surge {
                        candidates.push((*node).clone());
                    }
                }
                Some((Some(_), Some(old), new_ok, _)) => {
                    if new_ok {
                        out.delete.push(old);
                    } else {
                        surging += 1;
                    }
                }
            }
        }
        let room = ((max_surge - surging).max(0) as usize).min(candidates.len());
        out.create.extend(allowed);
        out.create.extend(candidates.into_iter().take(room));
    }
    let mut seen = HashSet::new();
    out.delete.retain(|name| seen.insert(name.clone()));
    let mut seen = HashSet::new();
    out.create.retain(|name| seen.insert(name.clone()));
    out
}

/// The status counts, as upstream's `updateDaemonSetStatus`.
fn counts<N: Borrow<Node>>(
    ds: &DaemonSet,
    nodes: &[N],
    pods: &[&Pod],
    hash: &str,
    now: jiff::Timestamp,
) -> Counts {
    let mut c = Counts::default();
    let Some(spec) = ds.spec.as_ref() else {
        return c;
    };
    let template = spec.template.spec.clone().unwrap_or_default();
    let min_ready = i64::from(spec.min_ready_seconds.unwrap_or(0));
    let generation = ds.metadata.generation.unwrap_or(0).to_string();
    let placed = by_node(pods);
    for node in nodes.iter().map(Borrow::borrow) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let (run, _) = should_run(&template, node);
        let mut on_node = placed.get(&name).cloned().unwrap_or_default();
        if !run {
            c.misscheduled += i64::from(!on_node.is_empty());
            continue;
        }
        c.desired += 1;
        if on_node.is_empty() {
            continue;
        }
        c.current += 1;
        oldest_first(&mut on_node);
        let pod = on_node[0];
        if is_ready(pod) {
            c.ready += 1;
            if is_available(pod, min_ready, now) {
                c.available += 1;
            }
        }
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        if labels.get(GENERATION_LABEL) == Some(&generation) || hash_of(pod) == Some(hash) {
            c.updated += 1;
        }
    }
    c
}

/// The pod the DaemonSet runs on `node`.
fn new_pod(ds: &DaemonSet, node: &str, hash: &str) -> Pod {
    let spec = ds.spec.clone().unwrap_or_default();
    let mut metadata = spec.template.metadata.unwrap_or_default();
    let name = ds.metadata.name.clone().unwrap_or_default();
    metadata.name = None;
    metadata.generate_name = Some(format!("{name}-"));
    metadata.namespace = ds.metadata.namespace.clone();
    let labels = metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(HASH_LABEL.into(), hash.into());
    labels.insert(
        GENERATION_LABEL.into(),
        ds.metadata.generation.unwrap_or(0).to_string(),
    );
    metadata.owner_references = Some(vec![owner_reference(ds)]);
    let mut pod_spec = spec.template.spec.unwrap_or_default();
    add_daemon_tolerations(&mut pod_spec);
    pin_to_node(&mut pod_spec, node);
    Pod {
        metadata,
        spec: Some(pod_spec),
        status: None,
    }
}

fn owner_reference(ds: &DaemonSet) -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".into(),
        kind: "DaemonSet".into(),
        name: ds.metadata.name.clone().unwrap_or_default(),
        uid: ds.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// What went wrong reconciling a DaemonSet: the key is tried again after a back-off.
#[derive(Debug, thiserror::Error)]
pub enum DaemonSetError {
    /// An orphan pod could not be adopted.
    #[error("adopting pod {pod} for daemonset {daemonset}: {source}")]
    Adopt {
        /// The DaemonSet (`namespace/name`).
        daemonset: String,
        /// The pod.
        pod: String,
        /// The API error.
        source: kube::Error,
    },
    /// A daemon pod could not be created.
    #[error("creating a pod for daemonset {daemonset}: {source}")]
    Create {
        /// The DaemonSet (`namespace/name`).
        daemonset: String,
        /// The API error.
        source: kube::Error,
    },
    /// A daemon pod could not be deleted.
    #[error("deleting pod {pod} of daemonset {daemonset}: {source}")]
    Delete {
        /// The DaemonSet (`namespace/name`).
        daemonset: String,
        /// The pod.
        pod: String,
        /// The API error.
        source: kube::Error,
    },
    /// A ControllerRevision could not be created, renumbered or deleted.
    #[error("writing revision {revision} of daemonset {daemonset}: {source}")]
    Revision {
        /// The DaemonSet (`namespace/name`).
        daemonset: String,
        /// The ControllerRevision.
        revision: String,
        /// The API error.
        source: kube::Error,
    },
    /// The status could not be written.
    #[error("writing the status of daemonset {daemonset}: {source}")]
    Status {
        /// The DaemonSet (`namespace/name`).
        daemonset: String,
        /// The API error.
        source: kube::Error,
    },
}

/// Whether an API error is a 404 (the object is already gone).
fn not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(e) if e.code == 404)
}

/// How many DaemonSets are reconciled at once (upstream's `ConcurrentDaemonSetSyncs`).
const WORKERS: usize = 2;

/// What the informers' handlers need: the DaemonSets to resolve owners in, the queue to put
/// their keys on, and the expectations to report what they see to.
#[derive(Clone)]
struct Handlers {
    sets: Informer<DaemonSet>,
    queue: WorkQueue,
    expectations: Expectations,
}

impl Handlers {
    /// The DaemonSet a controller reference names, if it still exists with that uid (upstream's
    /// `resolveControllerRef`).
    fn resolve(&self, namespace: &str, owner: &OwnerReference) -> Option<Key> {
        if owner.kind != "DaemonSet" {
            return None;
        }
        self.sets
            .get(namespace, &owner.name)
            .filter(|ds| ds.metadata.uid.as_deref() == Some(owner.uid.as_str()))
            .map(|ds| Key::of(&*ds))
    }

    /// The DaemonSets whose selector selects an orphan pod (upstream's `GetPodDaemonSets`): they
    /// may want to adopt it.
    fn selecting(&self, pod: &Pod) -> Vec<Key> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        self.sets
            .list_namespace(namespace)
            .iter()
            .filter(|ds| {
                ds.spec.as_ref().is_some_and(|s| {
                    crate::apimachinery::labels::controller_selects(&s.selector, &labels)
                })
            })
            .map(|ds| Key::of(&**ds))
            .collect()
    }

    /// upstream's `addPod`, `updatePod` and `deletePod`.
    fn pod(&self, change: Change<'_, Pod>) {
        let namespace = |p: &Pod| p.metadata.namespace.clone().unwrap_or_default();
        match change {
            // Already going (seen first after a restart): no creation to observe.
            Change::Add(pod) if pod.metadata.deletion_timestamp.is_some() => self.pod_gone(pod),
            Change::Add(pod) => match controller_ref(&pod.metadata) {
                Some(owner) => {
                    if let Some(key) = self.resolve(&namespace(pod), owner) {
                        self.expectations.creation_observed(&key.to_string());
                        self.queue.add(key);
                    }
                }
                None => self
                    .selecting(pod)
                    .into_iter()
                    .for_each(|k| self.queue.add(k)),
            },
            Change::Update { old, new } => {
                if old.metadata.resource_version == new.metadata.resource_version {
                    return;
                }
                // A pod being deleted counts as deleted: its replacement need not wait for
                // the grace period.
                if new.metadata.deletion_timestamp.is_some() {
                    return self.pod_gone(new);
                }
                let (was, is) = (controller_ref(&old.metadata), controller_ref(&new.metadata));
                if was != is
                    && let Some(key) = was.and_then(|w| self.resolve(&namespace(old), w))
                {
                    self.queue.add(key);
                }
                match is {
                    Some(owner) => {
                        if let Some(key) = self.resolve(&namespace(new), owner) {
                            self.queue.add(key);
                        }
                    }
                    None if was != is || old.metadata.labels != new.metadata.labels => {
                        self.selecting(new)
                            .into_iter()
                            .for_each(|k| self.queue.add(k));
                    }
                    None => {}
                }
            }
            Change::Delete(pod) => self.pod_gone(pod),
        }
    }

    /// A pod went (or started terminating): its DaemonSet's deletion expectation is met.
    fn pod_gone(&self, pod: &Pod) {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let Some(key) = controller_ref(&pod.metadata).and_then(|o| self.resolve(namespace, o))
        else {
            return;
        };
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        self.expectations.deletion_observed(&key.to_string(), name);
        self.queue.add(key);
    }

    /// upstream's `addNode` and `updateNode`: the DaemonSets whose answer for the node
    /// changed; a node's deletion wakes every DaemonSet (its counts, and unbound pods meant
    /// for it).
    fn node(&self, change: Change<'_, Node>) {
        let template = |ds: &DaemonSet| {
            ds.spec
                .as_ref()
                .and_then(|s| s.template.spec.clone())
                .unwrap_or_default()
        };
        match change {
            Change::Add(node) => {
                for ds in self.sets.list() {
                    if should_run(&template(&ds), node).0 {
                        self.queue.add(Key::of(&*ds));
                    }
                }
            }
            Change::Update { old, new } => {
                // Only the name, labels and spec (taints) decide; heartbeats do not.
                if old.metadata.name == new.metadata.name
                    && old.metadata.labels == new.metadata.labels
                    && old.spec == new.spec
                {
                    return;
                }
                for ds in self.sets.list() {
                    let template = template(&ds);
                    if should_run(&template, old) != should_run(&template, new) {
                        self.queue.add(Key::of(&*ds));
                    }
                }
            }
            Change::Delete(_) => {
                for ds in self.sets.list() {
                    self.queue.add(Key::of(&*ds));
                }
            }
        }
    }

    /// A ControllerRevision's change wakes its DaemonSet (orphans are not adopted).
    fn revision(&self, change: Change<'_, ControllerRevision>) {
        let revision = change.object();
        let namespace = revision.metadata.namespace.as_deref().unwrap_or_default();
        if let Change::Update { old, .. } = &change
            && controller_ref(&old.metadata) != controller_ref(&revision.metadata)
            && let Some(key) =
                controller_ref(&old.metadata).and_then(|o| self.resolve(namespace, o))
        {
            self.queue.add(key);
        }
        if let Some(key) =
            controller_ref(&revision.metadata).and_then(|o| self.resolve(namespace, o))
        {
            self.queue.add(key);
        }
    }
}

/// The DaemonSet controller: built on the shared informers, reconciling one DaemonSet per key.
pub struct DaemonSetController {
    client: kube::Client,
    flow: Flow,
    sets: Informer<DaemonSet>,
    pods: Informer<Pod>,
    nodes: Informer<Node>,
    revisions: Informer<ControllerRevision>,
    queue: WorkQueue,
    expectations: Expectations,
}

impl DaemonSetController {
    /// A controller on `ctx`'s informers (DaemonSets, pods, nodes, ControllerRevisions), writing
    /// as `controller/daemonset`.
    pub fn new(ctx: &Context) -> Self {
        let handlers = Handlers {
            sets: ctx.factory.informer::<DaemonSet>(),
            queue: WorkQueue::new("daemonset"),
            expectations: Expectations::default(),
        };
        let controller = DaemonSetController {
            client: ctx.client("daemonset"),
            flow: ctx.flow.clone(),
            sets: handlers.sets.clone(),
            pods: ctx.factory.informer::<Pod>(),
            nodes: ctx.factory.informer::<Node>(),
            revisions: ctx.factory.informer::<ControllerRevision>(),
            queue: handlers.queue.clone(),
            expectations: handlers.expectations.clone(),
        };
        let h = handlers.clone();
        controller
            .sets
            .add_handler(move |c| super::owner_changed(&h.queue, &h.expectations, c));
        let h = handlers.clone();
        controller.pods.add_handler(move |c| h.pod(c));
        let h = handlers.clone();
        controller.nodes.add_handler(move |c| h.node(c));
        controller
            .revisions
            .add_handler(move |c| handlers.revision(c));
        controller
    }

    /// The flow event of a hop this controller takes.
    fn hop(&self, verb: &str, ds: &DaemonSet, kind: &str, name: &str, detail: String) -> FlowEvent {
        let namespace = ds.metadata.namespace.as_deref().unwrap_or_default();
        let mut e = FlowEvent::new(COMPONENT, "apiserver", verb)
            .object(kind, namespace, name)
            .detail(detail);
        e.root = format!(
            "DaemonSet/{}",
            ds.metadata.name.as_deref().unwrap_or_default()
        );
        e
    }

    async fn record(&self, ds: &DaemonSet, event_type: &str, reason: &str, message: &str) {
        event(&self.client, ds, SOURCE, event_type, reason, message).await;
    }

    /// Waits for the caches, then reconciles the DaemonSets whose keys come up, forever.
    pub async fn run(self) {
        self.sets.synced().await;
        self.pods.synced().await;
        self.nodes.synced().await;
        self.revisions.synced().await;
        run_workers(self.queue.clone(), WORKERS, |key| self.sync(key)).await;
    }

    /// Reconciles the DaemonSet `key` from the caches (upstream's `syncDaemonSet`).
    async fn sync(&self, key: Key) -> Result<Action, DaemonSetError> {
        let id = key.to_string();
        let Some(ds) = self.sets.get(&key.namespace, &key.name) else {
            self.expectations.forget(&id);
            return Ok(Action::Done);
        };
        let Some(uid) = ds.metadata.uid.clone() else {
            return Ok(Action::Done);
        };
        if ds.metadata.deletion_timestamp.is_some() {
            return Ok(Action::Done);
        }
        let Some(spec) = ds.spec.as_ref() else {
            return Ok(Action::Done);
        };
        let namespace = key.namespace.as_str();
        let template = serde_json::to_value(&spec.template).unwrap_or(Value::Null);
        let hash = template_hash(&template);
        let now = jiff::Timestamp::now();
        let pods_api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let mut failure = None;

        let mut revisions: Vec<Arc<ControllerRevision>> = self
            .revisions
            .by_index(BY_OWNER, &uid)
            .into_iter()
            .filter(|r| r.metadata.namespace.as_deref() == Some(namespace))
            .collect();
        revisions.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let revisions: Vec<&ControllerRevision> = revisions.iter().map(|r| &**r).collect();
        if let Err(e) = self.sync_revision(&ds, &revisions, &template, &hash).await {
            failure.get_or_insert(e);
        }

        // Adopt orphans the selector matches, as ClaimPods does.
        let mut orphans: Vec<Arc<Pod>> = self
            .pods
            .by_index(ORPHANS, namespace)
            .into_iter()
            .filter(|p| {
                p.metadata.deletion_timestamp.is_none()
                    && crate::apimachinery::labels::controller_selects(
                        &spec.selector,
                        &p.metadata.labels.clone().unwrap_or_default(),
                    )
            })
            .collect();
        orphans.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        for orphan in &orphans {
            let Some(pod_name) = orphan.metadata.name.as_deref() else {
                continue;
            };
            self.flow
                .gate_emit(self.hop(
                    "ADOPT",
                    &ds,
                    "Pod",
                    pod_name,
                    format!("adopt orphan pod {pod_name}"),
                ))
                .await;
            let owner = json!({"metadata": {"ownerReferences": [owner_reference(&ds)]}});
            match pods_api
                .patch(pod_name, &PatchParams::default(), &Patch::Strategic(owner))
                .await
            {
                Err(source) if !not_found(&source) => {
                    failure.get_or_insert(DaemonSetError::Adopt {
                        daemonset: id.clone(),
                        pod: pod_name.to_owned(),
                        source,
                    });
                }
                _ => {}
            }
        }

        let mut owned: Vec<Arc<Pod>> = self
            .pods
            .by_index(BY_OWNER, &uid)
            .into_iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(namespace))
            .collect();
        owned.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let owned: Vec<&Pod> = owned.iter().map(|p| &**p).collect();
        let nodes = self.nodes.list();
        // Look again when a ready pod becomes available (status, and a surge's old pod), or,
        // should an expected pod never show up, once the expectations have timed out.
        let min_ready = i64::from(spec.min_ready_seconds.unwrap_or(0));
        let mut next = owned
            .iter()
            .filter_map(|p| pods::until_available(p, min_ready, now))
            .min();
        if self.expectations.satisfied(&id) {
            let todo = plan(&ds, &nodes, &owned, &hash, now);
            if let Err(e) = self.sync_nodes(&ds, &id, &todo, &hash).await {
                failure.get_or_insert(e);
            }
            if let Err(e) = self.clean_history(&ds, &revisions, &owned, &hash).await {
                failure.get_or_insert(e);
            }
        } else {
            next = Some(next.map_or(EXPECTATIONS_TIMEOUT, |n| n.min(EXPECTATIONS_TIMEOUT)));
        }
        if let Err(e) = self
            .write_status(&ds, &counts(&ds, &nodes, &owned, &hash, now))
            .await
        {
            failure.get_or_insert(e);
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(next.map_or(Action::Done, Action::RequeueAfter)),
        }
    }

    /// Creates and deletes what `todo` says (upstream's `syncNodes`), expecting each before
    /// asking, so that the informer's report of it cannot come first.
    async fn sync_nodes(
        &self,
        ds: &DaemonSet,
        id: &str,
        todo: &Plan,
        hash: &str,
    ) -> Result<(), DaemonSetError> {
        let namespace = ds.metadata.namespace.as_deref().unwrap_or_default();
        let pods_api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let mut failure = None;
        if !todo.create.is_empty() {
            self.expectations.expect_creations(id, todo.create.len());
        }
        for (done, node) in todo.create.iter().enumerate() {
            self.flow
                .gate_emit(self.hop(
                    "CREATE",
                    ds,
                    "Pod",
                    "",
                    format!("daemon pod for node {node} (revision hash {hash})"),
                ))
                .await;
            match pods_api
                .create(&PostParams::default(), &new_pod(ds, node, hash))
                .await
            {
                Ok(created) => {
                    let pod_name = created.metadata.name.unwrap_or_default();
                    self.record(
                        ds,
                        "Normal",
                        "SuccessfulCreate",
                        &format!("Created pod: {pod_name}"),
                    )
                    .await;
                }
                Err(source) => {
                    self.record(
                        ds,
                        "Warning",
                        "FailedCreate",
                        &format!("Error creating: {source}"),
                    )
                    .await;
                    // Neither this pod nor the ones not tried will show up.
                    for _ in done..todo.create.len() {
                        self.expectations.creation_observed(id);
                    }
                    failure = Some(DaemonSetError::Create {
                        daemonset: id.to_owned(),
                        source,
                    });
                    break;
                }
            }
        }
        for (pod_name, node) in &todo.failed {
            let message = format!(
                "Found failed daemon pod {namespace}/{pod_name} on node {node}, will try to kill it"
            );
            self.record(ds, "Warning", "FailedDaemonPod", &message)
                .await;
        }
        if !todo.delete.is_empty() {
            self.expectations
                .expect_deletions(id, todo.delete.iter().cloned());
        }
        for pod_name in &todo.delete {
            self.flow
                .gate_emit(self.hop(
                    "DELETE",
                    ds,
                    "Pod",
                    pod_name,
                    format!("daemon pod {pod_name} is not wanted on its node, or is out of date"),
                ))
                .await;
            match pods_api.delete(pod_name, &DeleteParams::default()).await {
                Ok(_) => {
                    self.record(
                        ds,
                        "Normal",
                        "SuccessfulDelete",
                        &format!("Deleted pod: {pod_name}"),
                    )
                    .await;
                }
                Err(source) => {
                    // The informer will not report this one going.
                    self.expectations.deletion_observed(id, pod_name);
                    self.record(
                        ds,
                        "Warning",
                        "FailedDelete",
                        &format!("Error deleting: {source}"),
                    )
                    .await;
                    if !not_found(&source) {
                        failure.get_or_insert(DaemonSetError::Delete {
                            daemonset: id.to_owned(),
                            pod: pod_name.clone(),
                            source,
                        });
                    }
                }
            }
        }
        failure.map_or(Ok(()), Err)
    }

    /// Makes sure the current template has the newest revision (`constructHistory`).
    async fn sync_revision(
        &self,
        ds: &DaemonSet,
        revisions: &[&ControllerRevision],
        template: &Value,
        hash: &str,
    ) -> Result<(), DaemonSetError> {
        let namespace = ds.metadata.namespace.clone().unwrap_or_default();
        let name = ds.metadata.name.clone().unwrap_or_default();
        let api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), &namespace);
        let max = revisions.iter().map(|r| r.revision).max().unwrap_or(0);
        let revision_name = format!("{name}-{hash}");
        let failed = |revision: &str, source| DaemonSetError::Revision {
            daemonset: format!("{namespace}/{name}"),
            revision: revision.to_owned(),
            source,
        };
        let current = revisions.iter().find(|r| {
            r.metadata.name.as_deref() == Some(&revision_name)
                || r.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(HASH_LABEL))
                    .map(String::as_str)
                    == Some(hash)
        });
        match current {
            Some(current) if current.revision < max => {
                // A template rolled back to an old revision makes it the newest again.
                let current_name = current.metadata.name.clone().unwrap_or_default();
                self.flow
                    .gate_emit(self.hop(
                        "UPDATE",
                        ds,
                        "ControllerRevision",
                        &current_name,
                        format!("revision {} becomes revision {}", current.revision, max + 1),
                    ))
                    .await;
                match api
                    .patch(
                        &current_name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"revision": max + 1})),
                    )
                    .await
                {
                    Err(source) if !not_found(&source) => Err(failed(&current_name, source)),
                    _ => Ok(()),
                }
            }
            Some(_) => Ok(()),
            None => {
                let mut labels = ds
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.metadata.as_ref())
                    .and_then(|m| m.labels.clone())
                    .unwrap_or_default();
                labels.insert(HASH_LABEL.into(), hash.into());
                let revision = ControllerRevision {
                    metadata: kube::api::ObjectMeta {
                        name: Some(revision_name.clone()),
                        namespace: Some(namespace.clone()),
                        labels: Some(labels),
                        annotations: ds.metadata.annotations.clone(),
                        owner_references: Some(vec![owner_reference(ds)]),
                        ..Default::default()
                    },
                    data: Some(k8s_openapi::apimachinery::pkg::runtime::RawExtension(
                        revision_patch(template),
                    )),
                    revision: max + 1,
                };
                self.flow
                    .gate_emit(self.hop(
                        "CREATE",
                        ds,
                        "ControllerRevision",
                        &revision_name,
                        format!("revision {} for template hash {hash}", max + 1),
                    ))
                    .await;
                match api.create(&PostParams::default(), &revision).await {
                    // Made by an earlier sync the cache has not shown yet: its event will
                    // bring the DaemonSet back.
                    Err(kube::Error::Api(e)) if e.code == 409 => {
                        tracing::debug!(revision = %revision_name, "ControllerRevision exists: {}", e.message);
                        Ok(())
                    }
                    Err(source) => Err(failed(&revision_name, source)),
                    Ok(_) => Ok(()),
                }
            }
        }
    }

    /// Deletes the oldest revisions beyond `revisionHistoryLimit` that no pod runs
    /// (`cleanupHistory`).
    async fn clean_history(
        &self,
        ds: &DaemonSet,
        revisions: &[&ControllerRevision],
        pods: &[&Pod],
        hash: &str,
    ) -> Result<(), DaemonSetError> {
        let limit = ds
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(10)
            .max(0) as usize;
        let live: HashSet<&str> = pods.iter().filter_map(|p| hash_of(p)).collect();
        let mut old: Vec<&ControllerRevision> = revisions
            .iter()
            .copied()
            .filter(|r| {
                let h = r
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(HASH_LABEL))
                    .map(String::as_str);
                h != Some(hash) && !h.is_some_and(|h| live.contains(h))
            })
            .collect();
        if old.len() <= limit {
            return Ok(());
        }
        old.sort_by_key(|r| r.revision);
        let namespace = ds.metadata.namespace.clone().unwrap_or_default();
        let api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), &namespace);
        let mut failure = None;
        for r in old.iter().take(old.len() - limit) {
            let name = r.metadata.name.clone().unwrap_or_default();
            self.flow
                .gate_emit(self.hop(
                    "DELETE",
                    ds,
                    "ControllerRevision",
                    &name,
                    format!(
                        "revision {} is beyond the history limit of {limit}",
                        r.revision
                    ),
                ))
                .await;
            match api.delete(&name, &DeleteParams::default()).await {
                Err(source) if !not_found(&source) => {
                    failure.get_or_insert(DaemonSetError::Revision {
                        daemonset: format!(
                            "{namespace}/{}",
                            ds.metadata.name.as_deref().unwrap_or_default()
                        ),
                        revision: name,
                        source,
                    });
                }
                _ => {}
            }
        }
        failure.map_or(Ok(()), Err)
    }

    async fn write_status(&self, ds: &DaemonSet, c: &Counts) -> Result<(), DaemonSetError> {
        let status = json!({
            "desiredNumberScheduled": c.desired,
            "currentNumberScheduled": c.current,
            "numberMisscheduled": c.misscheduled,
            "numberReady": c.ready,
            "numberAvailable": c.available,
            "updatedNumberScheduled": c.updated,
            "numberUnavailable": (c.desired - c.available).max(0),
            "observedGeneration": ds.metadata.generation,
        });
        let current = serde_json::to_value(&ds.status).unwrap_or(Value::Null);
        let changed = status
            .as_object()
            .expect("an object")
            .iter()
            .any(|(k, v)| current.get(k).cloned().unwrap_or(json!(0)) != *v);
        if !changed {
            return Ok(());
        }
        let name = ds.metadata.name.clone().unwrap_or_default();
        self.flow
            .gate_emit(self.hop(
                "UPDATE STATUS",
                ds,
                "DaemonSet",
                &name,
                format!(
                    "desired {}, current {}, ready {}, up-to-date {}, available {}",
                    c.desired, c.current, c.ready, c.updated, c.available
                ),
            ))
            .await;
        let namespace = ds.metadata.namespace.as_deref().unwrap_or_default();
        let api: Api<DaemonSet> = Api::namespaced(self.client.clone(), namespace);
        match api
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": status})),
            )
            .await
        {
            Err(source) if !not_found(&source) => Err(DaemonSetError::Status {
                daemonset: format!("{namespace}/{name}"),
                source,
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, labels: Value, taints: Value) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"taints": taints},
        }))
        .unwrap()
    }

    fn daemonset(template_spec: Value, strategy: Value) -> DaemonSet {
        serde_json::from_value(json!({
            "metadata": {"name": "agent", "namespace": "default", "uid": "ds-uid", "generation": 2},
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "template": {"metadata": {"labels": {"app": "agent"}}, "spec": template_spec},
                "updateStrategy": strategy,
            },
        }))
        .unwrap()
    }

    /// A daemon pod on `node` from template `hash`, ready or not, maybe terminating.
    fn pod(name: &str, node: &str, hash: &str, ready: bool, terminating: bool) -> Pod {
        let mut pod = json!({
            "metadata": {"name": name, "labels": {"app": "agent", HASH_LABEL: hash},
                "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }, "lastTransitionTime": "2026-01-01T00:00:00Z"}]},
        });
        if terminating {
            pod["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:01Z");
        }
        serde_json::from_value(pod).unwrap()
    }

    fn three_nodes() -> Vec<Node> {
        vec![
            node("node-1", json!({"disk": "ssd"}), json!([])),
            node("node-2", json!({}), json!([])),
            node("node-3", json!({"disk": "ssd"}), json!([])),
        ]
    }

    fn plain() -> Value {
        json!({"containers": [{"name": "c", "image": "i"}]})
    }

    fn rolling(surge: i64, unavailable: i64) -> Value {
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}})
    }

    #[test]
    fn eligibility_follows_name_selector_affinity_and_taints() {
        let cases = [
            ("plain node", plain(), json!([]), (true, true)),
            (
                "nodeSelector misses",
                json!({"containers": [], "nodeSelector": {"disk": "ssd"}}),
                json!([]),
                (false, false),
            ),
            (
                "other nodeName",
                json!({"containers": [], "nodeName": "node-9"}),
                json!([]),
                (false, false),
            ),
            (
                "required affinity misses",
                json!({"containers": [], "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "disk", "operator": "Exists"}]}]}}}}),
                json!([]),
                (false, false),
            ),
            (
                "NoSchedule taint: no new pod, the old one stays",
                plain(),
                json!([{"key": "k", "value": "v", "effect": "NoSchedule"}]),
                (false, true),
            ),
            (
                "NoExecute taint: the pod goes",
                plain(),
                json!([{"key": "k", "value": "v", "effect": "NoExecute"}]),
                (false, false),
            ),
            (
                "PreferNoSchedule is no obstacle",
                plain(),
                json!([{"key": "k", "effect": "PreferNoSchedule"}]),
                (true, true),
            ),
            (
                "standard taints are tolerated",
                plain(),
                json!([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}, {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]),
                (true, true),
            ),
            (
                "network-unavailable only with hostNetwork",
                plain(),
                json!([{"key": "node.kubernetes.io/network-unavailable", "effect": "NoSchedule"}]),
                (false, true),
            ),
            (
                "hostNetwork tolerates network-unavailable",
                json!({"containers": [], "hostNetwork": true}),
                json!([{"key": "node.kubernetes.io/network-unavailable", "effect": "NoSchedule"}]),
                (true, true),
            ),
            (
                "a template toleration",
                json!({"containers": [], "tolerations": [{"key": "k", "operator": "Equal", "value": "v", "effect": "NoSchedule"}]}),
                json!([{"key": "k", "value": "v", "effect": "NoSchedule"}]),
                (true, true),
            ),
        ];
        for (what, spec, taints, want) in cases {
            let spec: PodSpec = serde_json::from_value(spec).unwrap();
            let n = node("node-2", json!({}), taints);
            assert_eq!(should_run(&spec, &n), want, "{what}");
        }
    }

    #[test]
    fn new_pods_are_pinned_owned_labelled_and_tolerant() {
        let spec = json!({"containers": [{"name": "c", "image": "i"}], "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "disk", "operator": "Exists"}], "matchFields": [{"key": "metadata.name", "operator": "In", "values": ["x"]}]}]}}}});
        let ds = daemonset(spec, rolling(0, 1));
        let pod = new_pod(&ds, "node-3", "abc");
        let value = serde_json::to_value(&pod).unwrap();
        let term = &value["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"][0];
        assert_eq!(
            term["matchFields"],
            json!([{"key": "metadata.name", "operator": "In", "values": ["node-3"]}])
        );
        assert_eq!(term["matchExpressions"][0]["key"], "disk");
        assert_eq!(target_node(&pod).as_deref(), Some("node-3"));
        assert_eq!(value["metadata"]["generateName"], "agent-");
        assert_eq!(value["metadata"]["labels"][HASH_LABEL], "abc");
        assert_eq!(value["metadata"]["labels"][GENERATION_LABEL], "2");
        assert_eq!(value["metadata"]["ownerReferences"][0]["kind"], "DaemonSet");
        assert_eq!(value["metadata"]["ownerReferences"][0]["controller"], true);
        let keys: Vec<&str> = value["spec"]["tolerations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["key"].as_str().unwrap())
            .collect();
        assert_eq!(keys.len(), 6, "{keys:?}");
        assert!(keys.contains(&"node.kubernetes.io/unschedulable"));
        assert!(!keys.contains(&"node.kubernetes.io/network-unavailable"));
    }

    #[test]
    fn plans_as_upstream_manage_and_rolling_update() {
        let now: jiff::Timestamp = "2026-01-01T01:00:00Z".parse().unwrap();
        let selector = json!({"containers": [], "nodeSelector": {"disk": "ssd"}});
        let mut failed = pod("a", "node-1", "new", false, false);
        failed.status.as_mut().unwrap().phase = Some("Failed".into());
        // (what, template spec, update strategy, pods, nodes to create on, pods to delete)
        type Case = (
            &'static str,
            Value,
            Value,
            Vec<Pod>,
            Vec<&'static str>,
            Vec<&'static str>,
        );
        let cases: Vec<Case> = vec![
            (
                "one pod per node",
                plain(),
                rolling(0, 1),
                vec![],
                vec!["node-1", "node-2", "node-3"],
                vec![],
            ),
            (
                "only where the selector matches",
                selector.clone(),
                rolling(0, 1),
                vec![],
                vec!["node-1", "node-3"],
                vec![],
            ),
            (
                "a pod where the selector no longer matches goes",
                selector,
                rolling(0, 1),
                vec![
                    pod("a", "node-1", "new", true, false),
                    pod("b", "node-2", "new", true, false),
                    pod("c", "node-3", "new", true, false),
                ],
                vec![],
                vec!["b"],
            ),
            (
                "a terminating pod blocks its replacement",
                plain(),
                rolling(0, 1),
                vec![
                    pod("a", "node-1", "new", true, true),
                    pod("b", "node-2", "new", true, false),
                    pod("c", "node-3", "new", true, false),
                ],
                vec![],
                vec![],
            ),
            (
                "maxUnavailable 1 replaces one old pod at a time",
                plain(),
                rolling(0, 1),
                vec![
                    pod("a", "node-1", "old", true, false),
                    pod("b", "node-2", "old", true, false),
                    pod("c", "node-3", "old", true, false),
                ],
                vec![],
                vec!["a"],
            ),
            (
                "no more while a new pod is not ready",
                plain(),
                rolling(0, 1),
                vec![
                    pod("a", "node-1", "new", false, false),
                    pod("b", "node-2", "old", true, false),
                    pod("c", "node-3", "old", true, false),
                ],
                vec![],
                vec![],
            ),
            (
                "unavailable old pods may always go",
                plain(),
                rolling(0, 1),
                vec![
                    pod("a", "node-1", "new", false, false),
                    pod("b", "node-2", "old", false, false),
                    pod("c", "node-3", "old", true, false),
                ],
                vec![],
                vec!["b"],
            ),
            (
                "maxUnavailable 2",
                plain(),
                rolling(0, 2),
                vec![
                    pod("a", "node-1", "old", true, false),
                    pod("b", "node-2", "old", true, false),
                    pod("c", "node-3", "old", true, false),
                ],
                vec![],
                vec!["a", "b"],
            ),
            (
                "maxSurge 1 starts a new pod beside an old one",
                plain(),
                rolling(1, 0),
                vec![
                    pod("a", "node-1", "old", true, false),
                    pod("b", "node-2", "old", true, false),
                    pod("c", "node-3", "old", true, false),
                ],
                vec!["node-1"],
                vec![],
            ),
            (
                "surge: the old pod goes once the new one is available",
                plain(),
                rolling(1, 0),
                vec![
                    pod("a", "node-1", "old", true, false),
                    pod("a2", "node-1", "new", true, false),
                    pod("b", "node-2", "old", true, false),
                    pod("c", "node-3", "old", true, false),
                ],
                vec!["node-2"],
                vec!["a"],
            ),
            (
                "OnDelete leaves old pods alone",
                plain(),
                json!({"type": "OnDelete"}),
                vec![
                    pod("a", "node-1", "old", true, false),
                    pod("b", "node-2", "old", true, false),
                ],
                vec!["node-3"],
                vec![],
            ),
            (
                "a failed pod goes (and is replaced once gone)",
                plain(),
                rolling(0, 1),
                vec![
                    failed,
                    pod("b", "node-2", "new", true, false),
                    pod("c", "node-3", "new", true, false),
                ],
                vec![],
                vec!["a"],
            ),
            (
                "duplicates: all but the oldest go",
                plain(),
                rolling(0, 1),
                vec![
                    pod("a", "node-1", "new", true, false),
                    pod("b", "node-1", "new", true, false),
                    pod("c", "node-2", "new", true, false),
                    pod("d", "node-3", "new", true, false),
                ],
                vec![],
                vec!["b"],
            ),
        ];
        for (what, spec, strategy, pods, create, delete) in cases {
            let ds = daemonset(spec, strategy);
            let refs: Vec<&Pod> = pods.iter().collect();
            let got = plan(&ds, &three_nodes(), &refs, "new", now);
            assert_eq!(got.create, create, "{what}: create");
            assert_eq!(got.delete, delete, "{what}: delete");
        }
    }

    #[test]
    fn status_counts() {
        let now: jiff::Timestamp = "2026-01-01T01:00:00Z".parse().unwrap();
        let ds = daemonset(
            json!({"containers": [], "nodeSelector": {"disk": "ssd"}}),
            rolling(0, 1),
        );
        let pods = [
            pod("a", "node-1", "new", true, false),
            pod("b", "node-2", "old", true, false),
            pod("c", "node-3", "old", false, false),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        assert_eq!(
            counts(&ds, &three_nodes(), &refs, "new", now),
            Counts {
                desired: 2,
                current: 2,
                misscheduled: 1,
                ready: 1,
                available: 1,
                updated: 1
            }
        );
    }

    #[tokio::test]
    async fn changes_wake_the_daemonsets_they_concern_and_meet_expectations() {
        use kube::runtime::watcher::Event;
        let ctx = Context::offline();
        let controller = DaemonSetController::new(&ctx);
        let (queue, expectations) = (&controller.queue, &controller.expectations);
        let (sets, pods, nodes) = (
            ctx.factory.informer::<DaemonSet>(),
            ctx.factory.informer::<Pod>(),
            ctx.factory.informer::<Node>(),
        );
        let ds = daemonset(
            json!({"containers": [], "nodeSelector": {"disk": "ssd"}}),
            rolling(0, 1),
        );
        sets.apply(Event::Apply(ds.clone()), &mut None);
        assert_eq!(queue.drain_sorted().await, ["default/agent"]);

        let in_default = |mut p: Pod, rv: &str, owner: Option<OwnerReference>| {
            p.metadata.namespace = Some("default".into());
            p.metadata.resource_version = Some(rv.into());
            p.metadata.owner_references = owner.map(|o| vec![o]);
            p
        };
        // Its pod's creation is observed, and the pod's deletion starting counts as deleted.
        expectations.expect_creations("default/agent", 1);
        let owned = in_default(
            pod("a", "node-1", "h", true, false),
            "1",
            Some(owner_reference(&ds)),
        );
        pods.apply(Event::Apply(owned.clone()), &mut None);
        assert!(expectations.satisfied("default/agent"));
        expectations.expect_deletions("default/agent", ["a".to_owned()]);
        let mut going = in_default(owned, "2", Some(owner_reference(&ds)));
        going.metadata.deletion_timestamp =
            pod("x", "n", "h", true, true).metadata.deletion_timestamp;
        pods.apply(Event::Apply(going), &mut None);
        assert!(expectations.satisfied("default/agent"));
        assert_eq!(queue.drain_sorted().await, ["default/agent"]);

        // An orphan the selector matches wakes it (to adopt it); a pod of another DaemonSet of
        // the same name (another uid) does not.
        let orphan = in_default(pod("b", "node-1", "h", true, false), "3", None);
        pods.apply(Event::Apply(orphan), &mut None);
        assert_eq!(queue.drain_sorted().await, ["default/agent"]);
        let mut stranger = owner_reference(&ds);
        stranger.uid = "other".into();
        let foreign = in_default(pod("c", "node-1", "h", true, false), "4", Some(stranger));
        pods.apply(Event::Apply(foreign), &mut None);
        assert!(queue.drain_sorted().await.is_empty());

        // A node it should not run on, and a heartbeat, wake nothing; a label that makes the
        // node eligible wakes it; a node's deletion wakes every DaemonSet.
        let plain_node = node("node-2", json!({}), json!([]));
        nodes.apply(Event::Apply(plain_node.clone()), &mut None);
        let mut beat = plain_node.clone();
        beat.metadata.resource_version = Some("9".into());
        beat.status = Some(Default::default());
        nodes.apply(Event::Apply(beat), &mut None);
        assert!(queue.drain_sorted().await.is_empty());
        let labelled = node("node-2", json!({"disk": "ssd"}), json!([]));
        nodes.apply(Event::Apply(labelled.clone()), &mut None);
        assert_eq!(queue.drain_sorted().await, ["default/agent"]);
        nodes.apply(Event::Delete(labelled), &mut None);
        assert_eq!(queue.drain_sorted().await, ["default/agent"]);

        // Deleting the DaemonSet forgets what it waited for.
        expectations.expect_creations("default/agent", 3);
        sets.apply(Event::Delete(ds), &mut None);
        assert!(expectations.satisfied("default/agent"));
        assert_eq!(queue.drain_sorted().await, ["default/agent"]);
    }

    #[test]
    fn revisions_hash_and_patch() {
        let a = json!({"spec": {"containers": [{"image": "a"}]}});
        let b = json!({"spec": {"containers": [{"image": "b"}]}});
        assert_eq!(template_hash(&a), template_hash(&a.clone()));
        assert_ne!(template_hash(&a), template_hash(&b));
        assert!(
            template_hash(&a)
                .chars()
                .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c))
        );
        assert_eq!(revision_patch(&a)["spec"]["template"]["$patch"], "replace");
        assert_eq!(revision_patch(&a)["spec"]["template"]["spec"], a["spec"]);
        let percent = IntOrString::String("50%".into());
        assert_eq!(scaled(Some(&percent), 3, 1), 2, "percentages round up");
        assert_eq!(scaled(None, 3, 1), 1);
        assert_eq!(scaled(Some(&IntOrString::Int(0)), 3, 1), 0);
    }
}
