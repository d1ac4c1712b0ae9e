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
//! The decisions are pure functions ([`taints_for`], [`eviction_due`]); the loop applies them.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::watcher;
use serde_json::json;

use crate::flow::{Flow, FlowEvent};
use crate::scheduler::filters::tolerates;

const COMPONENT: &str = "controller/nodelifecycle";
/// The taint a node gets when its kubelet stops posting status.
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// The taint a node gets when its kubelet reports it not ready.
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
/// How often nodes are looked at, at most (upstream's `--node-monitor-period`).
const MONITOR_PERIOD: Duration = Duration::from_secs(5);

/// The node lifecycle controller; runs until its task is aborted.
pub struct NodeLifecycleController {
    client: kube::Client,
    flow: Flow,
    grace: Duration,
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

impl NodeLifecycleController {
    /// A controller that gives nodes `grace` to renew their Lease.
    pub fn new(client: kube::Client, flow: Flow, grace: Duration) -> Self {
        NodeLifecycleController {
            client,
            flow,
            grace,
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

    /// Watches nodes, leases and pods, forever.
    pub async fn run(self) {
        let (nodes, node_events) =
            crate::informers::cache::<Node>(&self.client, watcher::Config::default());
        let (leases, lease_events) =
            crate::informers::cache::<Lease>(&self.client, watcher::Config::default());
        let (pods, pod_events) =
            crate::informers::cache::<Pod>(&self.client, watcher::Config::default());
        let mut changes =
            futures::stream::select_all([node_events, lease_events, pod_events]).boxed();
        crate::informers::prime(&mut changes, async {
            let _ = nodes.wait_until_ready().await;
            let _ = leases.wait_until_ready().await;
            let _ = pods.wait_until_ready().await;
        })
        .await;
        let period = MONITOR_PERIOD.min(self.grace / 4);
        let mut heartbeats: HashMap<String, Heartbeat> = HashMap::new();
        let mut pace = crate::informers::Pace::default();
        loop {
            let now = tokio::time::Instant::now();
            let all_pods = pods.state();
            let renewals: HashMap<String, String> = leases
                .state()
                .iter()
                .filter(|l| l.metadata.namespace.as_deref() == Some("kube-node-lease"))
                .filter_map(|l| {
                    let renew = l.spec.as_ref()?.renew_time.as_ref()?.0.to_string();
                    Some((l.metadata.name.clone()?, renew))
                })
                .collect();
            for node in nodes.state() {
                let Some(name) = node.metadata.name.clone() else {
                    continue;
                };
                let renew = renewals.get(&name).cloned().unwrap_or_default();
                let heartbeat = node
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
                    .and_then(|c| c.last_heartbeat_time.as_ref())
                    .map(|t| t.0.to_string())
                    .unwrap_or_default();
                let seen = (renew, heartbeat);
                let entry = heartbeats.entry(name.clone()).or_insert(Heartbeat {
                    seen: seen.clone(),
                    at: now,
                });
                if entry.seen != seen {
                    *entry = Heartbeat { seen, at: now };
                }
                let mut ready = ready_status(&node);
                if now.duration_since(entry.at) > self.grace && ready != "Unknown" {
                    self.mark_unknown(&node, &name, &all_pods).await;
                    ready = "Unknown".into();
                }
                self.reconcile_taints(&node, &name, &ready).await;
            }
            let all_nodes = nodes.state();
            let names: std::collections::HashSet<&str> = all_nodes
                .iter()
                .filter_map(|n| n.metadata.name.as_deref())
                .collect();
            heartbeats.retain(|name, _| names.contains(name.as_str()));
            self.evict(&all_nodes, &all_pods).await;
            crate::informers::next_batch(&mut changes, period, &mut pace).await;
        }
    }

    /// The kubelet has gone quiet: every condition it posts becomes Unknown, and its pods are no
    /// longer ready.
    async fn mark_unknown(&self, node: &Node, name: &str, pods: &[std::sync::Arc<Pod>]) {
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
        if let Err(error) = api
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Strategic(json!({"status": {"conditions": conditions}})),
            )
            .await
        {
            tracing::debug!(%error, node = name, "could not mark the node Unknown");
            return;
        }
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
        for pod in pods.iter().filter(|p| {
            p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(name)
                && p.metadata.deletion_timestamp.is_none()
        }) {
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
    }

    /// Adds the lifecycle taints a node's readiness calls for and removes the others.
    async fn reconcile_taints(&self, node: &Node, name: &str, ready: &str) {
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
            return;
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
        if let Err(error) = api
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            tracing::debug!(%error, node = name, "could not update the node's taints");
        }
    }

    /// Taint-based eviction: deletes the pods whose toleration of their node's NoExecute taints
    /// has run out.
    async fn evict(&self, nodes: &[std::sync::Arc<Node>], pods: &[std::sync::Arc<Pod>]) {
        let now = jiff::Timestamp::now();
        let taints: HashMap<&str, Vec<Taint>> = nodes
            .iter()
            .filter_map(|n| {
                let taints = n.spec.as_ref()?.taints.clone()?;
                Some((n.metadata.name.as_deref()?, taints))
            })
            .collect();
        for pod in pods {
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) else {
                continue;
            };
            let Some(node_taints) = taints.get(node) else {
                continue;
            };
            if eviction_due(pod, node_taints, now).is_none_or(|due| due > now) {
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
                    format!("evicted from {node}: its NoExecute taint is no longer tolerated"),
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
                super::event(
                    &self.client,
                    &**pod,
                    "taint-eviction-controller",
                    "Normal",
                    "TaintManagerEviction",
                    &format!("Marking for deletion Pod {ns}/{name}"),
                )
                .await;
            }
        }
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
