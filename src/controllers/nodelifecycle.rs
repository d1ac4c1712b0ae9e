//! The node lifecycle controller, with its taint-based eviction, as kube-controller-manager runs
//! them: it watches each node's heartbeats (its Lease in `kube-node-lease` and its `Ready`
//! condition), and when a node has not been heard from for `--node-monitor-grace-period` it sets
//! the node's conditions to `Unknown` ("Kubelet stopped posting node status."), marks its pods
//! not ready, and taints it `node.kubernetes.io/unreachable` (NoSchedule and NoExecute); a node
//! whose kubelet reports `Ready=False` gets the `not-ready` taints instead, and a healthy node
//! loses them. Pods on a node with a NoExecute taint they do not tolerate are evicted at once;
//! those that tolerate it for `tolerationSeconds` (the API server gives every pod 300 s for
//! `unreachable` and `not-ready`) are evicted when that time has passed since the taint was
//! added, and their controllers replace them elsewhere.
//!
//! It reads the shared Node, Lease and Pod informers (pods indexed by node). Their handlers queue
//! a node's name when the node or its Lease changes, or a pod lands on it; every
//! `--node-monitor-period` (5 s, at most a quarter of the grace period) every node is queued, as
//! upstream's `monitorNodeHealth` looks at them all, and a node whose pods' tolerations run out
//! later is looked at again then. Each sync handles one node. The decisions are pure functions
//! ([`taints_for`], [`eviction_due`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;

use super::Context;
use super::workqueue::{self, Action, Key, WorkQueue};
use crate::flow::{Flow, FlowEvent};
use crate::informers::{Change, Informer};
use crate::scheduler::filters::tolerates;

const COMPONENT: &str = "controller/nodelifecycle";
/// The taint a node gets when its kubelet stops posting status.
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// The taint a node gets when its kubelet reports it not ready.
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
/// How often nodes are looked at, at most (upstream's `--node-monitor-period`).
const MONITOR_PERIOD: Duration = Duration::from_secs(5);
/// The namespace of the nodes' Leases.
const LEASE_NAMESPACE: &str = "kube-node-lease";
/// The pod informer's index of pods by `spec.nodeName`.
const BY_NODE: &str = "node";
/// Workers at once (upstream's `nodeUpdateWorkerSize`).
const WORKERS: usize = 8;

/// Why a node's sync did not finish; it is looked at again after a backoff.
#[derive(Debug, thiserror::Error)]
pub enum NodeLifecycleError {
    /// A write to the node failed.
    #[error("{action} node {node}: {source}")]
    Write {
        /// What was being done.
        action: &'static str,
        /// The node's name.
        node: String,
        /// The API error.
        source: kube::Error,
    },
}

/// A node's `Ready` condition status: `True`, `False`, `Unknown` (or empty when missing).
fn ready_status(node: &Node) -> String {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.clone())
        .unwrap_or_default()
}

/// The lifecycle taints (key, effect) a node with this `Ready` status should have.
pub fn taints_for(ready: &str) -> Vec<(&'static str, &'static str)> {
    let key = match ready {
        "False" => NOT_READY,
        "Unknown" => UNREACHABLE,
        // Ready, or never reported (the node is not judged until its grace period is over).
        _ => return Vec::new(),
    };
    vec![(key, "NoSchedule"), (key, "NoExecute")]
}

/// When a pod on a node with these taints is to be evicted, in seconds after the newest
/// NoExecute taint was added: `Some(0)` at once (a NoExecute taint it does not tolerate), `None`
/// never (no NoExecute taint, or it tolerates them all forever), otherwise the shortest
/// `tolerationSeconds` among the tolerations it uses, counted from each taint's `timeAdded`.
pub fn eviction_due(pod: &Pod, taints: &[Taint], now: jiff::Timestamp) -> Option<jiff::Timestamp> {
    let tolerations: &[Toleration] = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default();
    let mut due: Option<jiff::Timestamp> = None;
    for taint in taints.iter().filter(|t| t.effect == "NoExecute") {
        let matching: Vec<&Toleration> =
            tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if matching.is_empty() {
            return Some(now);
        }
        // The shortest of the tolerations that apply; one without a limit tolerates forever.
        let Some(seconds) = matching
            .iter()
            .map(|t| t.toleration_seconds)
            .collect::<Option<Vec<i64>>>()
            .and_then(|s| s.into_iter().min())
        else {
            continue;
        };
        let added = taint.time_added.as_ref().map_or(now, |t| t.0);
        let at = added
            .checked_add(jiff::SignedDuration::from_secs(seconds.max(0)))
            .unwrap_or(added);
        due = Some(due.map_or(at, |d| d.min(at)));
    }
    due
}

/// What the controller remembers of a node's last heartbeat.
struct Heartbeat {
    /// The Lease's renewTime and the Ready condition's lastHeartbeatTime, as last seen.
    seen: (String, String),
    /// When (on this controller's clock) they last changed.
    at: tokio::time::Instant,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The node a pod is bound to, if any.
fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

/// The node a pod change concerns for eviction: a pod newly bound there, or one whose
/// tolerations changed.
fn pod_node(change: &Change<'_, Pod>) -> Option<String> {
    match change {
        Change::Add(pod) => node_of(pod).map(str::to_owned),
        Change::Update { old, new } => {
            let tolerations = |p: &Pod| p.spec.as_ref().map(|s| s.tolerations.clone());
            (node_of(old) != node_of(new) || tolerations(old) != tolerations(new))
                .then(|| node_of(new).map(str::to_owned))
                .flatten()
        }
        Change::Delete(_) => None,
    }
}

/// The node lifecycle controller; runs until its task is aborted.
pub struct NodeLifecycleController {
    client: kube::Client,
    flow: Flow,
    grace: Duration,
    nodes: Informer<Node>,
    leases: Informer<Lease>,
    pods: Informer<Pod>,
    queue: WorkQueue,
    heartbeats: Mutex<HashMap<String, Heartbeat>>,
    /// The resourceVersion each node was marked Unknown at: not marked again until the cache
    /// shows the node changed.
    marked: Mutex<HashMap<String, String>>,
    /// Pods evicted and not yet gone from the cache (uids): not evicted twice.
    evicted: Arc<Mutex<HashSet<String>>>,
}

impl NodeLifecycleController {
    /// A controller on the shared Node, Lease and Pod informers that gives nodes `grace` to
    /// renew their Lease, writing as `controller/nodelifecycle`.
    pub fn new(ctx: &Context, grace: Duration) -> Self {
        let nodes = ctx.factory.informer::<Node>();
        let leases = ctx.factory.informer::<Lease>();
        let pods = ctx.factory.informer::<Pod>();
        let queue = WorkQueue::new("nodelifecycle");
        let evicted: Arc<Mutex<HashSet<String>>> = Arc::default();
        pods.add_index(BY_NODE, |p: &Pod| {
            node_of(p).map(str::to_owned).into_iter().collect()
        });
        let q = queue.clone();
        nodes.add_handler(move |change: Change<'_, Node>| {
            q.add(Key::of(change.object()));
        });
        let q = queue.clone();
        leases.add_handler(move |change: Change<'_, Lease>| {
            let meta = &change.object().metadata;
            if meta.namespace.as_deref() == Some(LEASE_NAMESPACE)
                && let Some(name) = &meta.name
            {
                q.add(Key::new("", name.clone()));
            }
        });
        let (q, gone) = (queue.clone(), evicted.clone());
        pods.add_handler(move |change: Change<'_, Pod>| {
            if let Change::Delete(pod) = &change
                && let Some(uid) = &pod.metadata.uid
            {
                lock(&gone).remove(uid);
            }
            if let Some(node) = pod_node(&change) {
                q.add(Key::new("", node));
            }
        });
        NodeLifecycleController {
            client: ctx.client("nodelifecycle"),
            flow: ctx.flow.clone(),
            grace,
            nodes,
            leases,
            pods,
            queue,
            heartbeats: Mutex::default(),
            marked: Mutex::default(),
            evicted,
        }
    }

    /// The flow event of a hop this controller takes.
    fn hop(
        &self,
        verb: &str,
        kind: &str,
        namespace: &str,
        name: &str,
        detail: String,
    ) -> FlowEvent {
        FlowEvent::new(COMPONENT, "apiserver", verb)
            .object(kind, namespace, name)
            .detail(detail)
    }

    /// Waits for the caches, then looks at every node each monitor period and at a node when it
    /// changes, forever.
    pub async fn run(self) {
        self.nodes.synced().await;
        self.leases.synced().await;
        self.pods.synced().await;
        let period = MONITOR_PERIOD.min(self.grace / 4);
        let monitor = async {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                for node in self.nodes.list() {
                    self.queue.add(Key::of(&*node));
                }
            }
        };
        let workers =
            workqueue::run_workers(self.queue.clone(), WORKERS, |key: Key| self.sync(key.name));
        futures::future::join(monitor, workers).await;
    }

    /// One node: its heartbeat, its conditions when it has gone quiet, its taints, and the
    /// eviction of its pods whose toleration has run out.
    async fn sync(&self, name: String) -> Result<Action, NodeLifecycleError> {
        let Some(mut node) = self.nodes.get("", &name) else {
            lock(&self.heartbeats).remove(&name);
            lock(&self.marked).remove(&name);
            return Ok(Action::Done);
        };
        let renew = self
            .leases
            .get(LEASE_NAMESPACE, &name)
            .and_then(|l| Some(l.spec.as_ref()?.renew_time.as_ref()?.0.to_string()))
            .unwrap_or_default();
        let heartbeat = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .and_then(|c| c.last_heartbeat_time.as_ref())
            .map(|t| t.0.to_string())
            .unwrap_or_default();
        let seen = (renew, heartbeat);
        let now = tokio::time::Instant::now();
        let silent = {
            let mut heartbeats = lock(&self.heartbeats);
            let entry = heartbeats.entry(name.clone()).or_insert(Heartbeat {
                seen: seen.clone(),
                at: now,
            });
            if entry.seen != seen {
                *entry = Heartbeat { seen, at: now };
            }
            now.duration_since(entry.at)
        };
        let mut ready = ready_status(&node);
        let version = node.metadata.resource_version.clone().unwrap_or_default();
        if silent > self.grace
            && ready != "Unknown"
            && lock(&self.marked).get(&name) != Some(&version)
        {
            node = Arc::new(self.mark_unknown(&node, &name).await?);
            lock(&self.marked).insert(name.clone(), version);
            ready = "Unknown".into();
        }
        self.reconcile_taints(&node, &name, &ready).await?;
        Ok(match self.evict(&node, &name).await {
            Some(next) => Action::RequeueAfter(next),
            None => Action::Done,
        })
    }

    /// The kubelet has gone quiet: every condition it posts becomes Unknown, and its pods are no
    /// longer ready. Returns the node as written.
    async fn mark_unknown(&self, node: &Node, name: &str) -> Result<Node, NodeLifecycleError> {
        self.flow
            .gate_emit(self.hop(
                "UPDATE",
                "Node",
                "",
                name,
                format!(
                    "no heartbeat for more than {}s: Ready=Unknown",
                    self.grace.as_secs_f64()
                ),
            ))
            .await;
        let now = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let posted = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        // The conditions the kubelet posts; one it never posted is "never updated".
        let conditions: Vec<serde_json::Value> =
            ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"]
                .iter()
                .map(|kind| match posted.iter().find(|c| c.type_ == *kind) {
                    Some(c) => json!({
                        "type": kind,
                        "status": "Unknown",
                        "reason": "NodeStatusUnknown",
                        "message": "Kubelet stopped posting node status.",
                        "lastHeartbeatTime": c.last_heartbeat_time,
                        "lastTransitionTime": now,
                    }),
                    None => json!({
                        "type": kind,
                        "status": "Unknown",
                        "reason": "NodeStatusNeverUpdated",
                        "message": "Kubelet never posted node status.",
                        "lastHeartbeatTime": node.metadata.creation_timestamp,
                        "lastTransitionTime": now,
                    }),
                })
                .collect();
        let api: Api<Node> = Api::all(self.client.clone());
        let written = api
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Strategic(json!({"status": {"conditions": conditions}})),
            )
            .await
            .map_err(|source| NodeLifecycleError::Write {
                action: "marking Unknown",
                node: name.to_owned(),
                source,
            })?;
        super::event(
            &self.client,
            node,
            "node-controller",
            "Normal",
            "NodeNotReady",
            &format!("Node {name} status is now: NodeNotReady"),
        )
        .await;
        // MarkPodsNotReady: the pods' Ready condition is False until the node is heard from.
        for pod in self
            .pods
            .by_index(BY_NODE, name)
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
        {
            let (Some(ns), Some(pod_name)) = (&pod.metadata.namespace, &pod.metadata.name) else {
                continue;
            };
            let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
            let patch = json!({"status": {"conditions": [
                {"type": "Ready", "status": "False", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": "False", "lastTransitionTime": now},
            ]}});
            let _ = api
                .patch_status(pod_name, &PatchParams::default(), &Patch::Strategic(patch))
                .await;
        }
        Ok(written)
    }

    /// Adds the lifecycle taints a node's readiness calls for and removes the others.
    async fn reconcile_taints(
        &self,
        node: &Node,
        name: &str,
        ready: &str,
    ) -> Result<(), NodeLifecycleError> {
        let current: Vec<Taint> = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        let wanted = taints_for(ready);
        let lifecycle = |t: &Taint| t.key == UNREACHABLE || t.key == NOT_READY;
        let has =
            |key: &str, effect: &str| current.iter().any(|t| t.key == key && t.effect == effect);
        let stale = current
            .iter()
            .any(|t| lifecycle(t) && !wanted.contains(&(t.key.as_str(), t.effect.as_str())));
        let missing: Vec<&(&str, &str)> = wanted.iter().filter(|(k, e)| !has(k, e)).collect();
        if !stale && missing.is_empty() {
            return Ok(());
        }
        let now = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let mut taints: Vec<serde_json::Value> = current
            .iter()
            .filter(|t| !lifecycle(t) || wanted.contains(&(t.key.as_str(), t.effect.as_str())))
            .map(|t| serde_json::to_value(t).unwrap_or_default())
            .collect();
        for (key, effect) in &missing {
            let mut taint = json!({"key": key, "effect": effect});
            if *effect == "NoExecute" {
                taint["timeAdded"] = json!(now);
            }
            taints.push(taint);
        }
        let names: Vec<String> = taints
            .iter()
            .map(|t| {
                format!(
                    "{}:{}",
                    t["key"].as_str().unwrap_or_default(),
                    t["effect"].as_str().unwrap_or_default()
                )
            })
            .collect();
        self.flow
            .gate_emit(self.hop(
                "PATCH",
                "Node",
                "",
                name,
                format!("Ready={ready}: taints now [{}]", names.join(", ")),
            ))
            .await;
        let api: Api<Node> = Api::all(self.client.clone());
        let patch = json!({
            "metadata": {"resourceVersion": node.metadata.resource_version},
            // No taints left: the field goes, as `kubectl taint ... -` leaves it.
            "spec": {"taints": if taints.is_empty() { serde_json::Value::Null } else { json!(taints) }},
        });
        api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(|source| NodeLifecycleError::Write {
                action: "updating the taints of",
                node: name.to_owned(),
                source,
            })?;
        Ok(())
    }

    /// Taint-based eviction: deletes the node's pods whose toleration of its NoExecute taints
    /// has run out. Returns how long until the next one runs out, if any will.
    async fn evict(&self, node: &Node, node_name: &str) -> Option<Duration> {
        let now = jiff::Timestamp::now();
        let node_taints: &[Taint] = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_deref())
            .unwrap_or_default();
        if node_taints.is_empty() {
            return None;
        }
        let mut next: Option<Duration> = None;
        for pod in self.pods.by_index(BY_NODE, node_name) {
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            if lock(&self.evicted).contains(&uid) {
                continue;
            }
            let Some(due) = eviction_due(&pod, node_taints, now) else {
                continue;
            };
            if due > now {
                let left = Duration::try_from(due.duration_since(now)).unwrap_or_default();
                next = Some(next.map_or(left, |n| n.min(left)));
                continue;
            }
            let (Some(ns), Some(name)) = (&pod.metadata.namespace, &pod.metadata.name) else {
                continue;
            };
            self.flow
                .gate_emit(self.hop(
                    "DELETE",
                    "Pod",
                    ns,
                    name,
                    format!("evicted from {node_name}: its NoExecute taint is no longer tolerated"),
                ))
                .await;
            let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
            let condition = json!({"status": {"conditions": [{
                "type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
                "message": "Taint manager: deleting due to NoExecute taint",
                "lastTransitionTime": now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            }]}});
            let _ = api
                .patch_status(name, &PatchParams::default(), &Patch::Strategic(condition))
                .await;
            if api.delete(name, &DeleteParams::default()).await.is_ok() {
                lock(&self.evicted).insert(uid);
                super::event(
                    &self.client,
                    &*pod,
                    "taint-eviction-controller",
                    "Normal",
                    "TaintManagerEviction",
                    &format!("Marking for deletion Pod {ns}/{name}"),
                )
                .await;
            }
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(tolerations: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"spec": {"containers": [], "tolerations": tolerations}}))
            .unwrap()
    }

    fn taint(key: &str, effect: &str, added: &str) -> Taint {
        serde_json::from_value(json!({"key": key, "effect": effect, "timeAdded": added})).unwrap()
    }

    #[test]
    fn pods_landing_on_a_node_or_changing_tolerations_queue_it() {
        let on = |node: Option<&str>, tolerations: serde_json::Value| -> Pod {
            serde_json::from_value(
                json!({"spec": {"containers": [], "nodeName": node, "tolerations": tolerations}}),
            )
            .unwrap()
        };
        let pending = on(None, json!([]));
        let bound = on(Some("node-1"), json!([]));
        let tolerant = on(Some("node-1"), json!([{"operator": "Exists"}]));
        assert_eq!(pod_node(&Change::Add(&pending)), None);
        assert_eq!(pod_node(&Change::Add(&bound)).as_deref(), Some("node-1"));
        let update = |old, new| pod_node(&Change::Update { old, new });
        assert_eq!(update(&pending, &bound).as_deref(), Some("node-1"));
        assert_eq!(
            update(&bound, &bound),
            None,
            "a status change is not looked at"
        );
        assert_eq!(update(&bound, &tolerant).as_deref(), Some("node-1"));
        assert_eq!(pod_node(&Change::Delete(&bound)), None);
    }

    #[test]
    fn lifecycle_taints_follow_readiness() {
        assert!(taints_for("True").is_empty());
        assert!(
            taints_for("").is_empty(),
            "not judged before its grace period"
        );
        assert_eq!(
            taints_for("Unknown"),
            [(UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")]
        );
        assert_eq!(
            taints_for("False"),
            [(NOT_READY, "NoSchedule"), (NOT_READY, "NoExecute")]
        );
    }

    #[test]
    fn eviction_waits_for_the_shortest_toleration() {
        let now: jiff::Timestamp = "2026-11-21T10:00:00Z".parse().unwrap();
        let added = "2026-11-21T09:59:00Z";
        let unreachable = vec![taint(UNREACHABLE, "NoExecute", added)];
        let at = |s: &str| Some(s.parse::<jiff::Timestamp>().unwrap());
        let cases = [
            // The API server's default: 300 s after the taint was added.
            (
                json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]),
                at("2026-11-21T10:04:00Z"),
            ),
            // Not tolerated: at once.
            (json!([]), Some(now)),
            (
                json!([{"key": "other", "operator": "Exists", "effect": "NoExecute"}]),
                Some(now),
            ),
            // Tolerated forever.
            (json!([{"operator": "Exists"}]), None),
            (json!([{"key": UNREACHABLE, "operator": "Exists"}]), None),
            // The shortest of several that apply.
            (
                json!([
                    {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                    {"operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30},
                ]),
                at("2026-11-21T09:59:30Z"),
            ),
        ];
        for (tolerations, want) in cases {
            assert_eq!(
                eviction_due(&pod(tolerations.clone()), &unreachable, now),
                want,
                "{tolerations}"
            );
        }
        // NoSchedule taints never evict.
        let no_schedule = vec![taint(UNREACHABLE, "NoSchedule", added)];
        assert_eq!(eviction_due(&pod(json!([])), &no_schedule, now), None);
    }
}
