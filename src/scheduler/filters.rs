//! Filter plugins, as kube-scheduler's framework has them: each says whether a pod can run on a
//! node (`Ok`), or why not in the words kube-scheduler uses (`Unschedulable(reasons)`), and
//! [`failed_scheduling`] sums the reasons up the way the `FailedScheduling` event does.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::cache::PodInfo;
use crate::apimachinery::quantity;

/// A node and the pods already on it, with what they add up to (kube-scheduler's `NodeInfo`):
/// the scheduler's cache keeps one per node and updates the sums as pods come and go, so no
/// plugin re-adds a node's pods for every pod it schedules.
#[derive(Clone, Debug, Default)]
pub struct NodeInfo {
    /// The node.
    pub node: Node,
    /// The pods bound (or assumed bound) to it and not yet finished.
    pub pods: Vec<Arc<PodInfo>>,
    /// The node's allocatable resources, in the scheduler's units (millicores, bytes, pods).
    pub allocatable: BTreeMap<String, i64>,
    /// The pods' summed requests.
    pub requested: BTreeMap<String, i64>,
    /// The pods' summed cpu and memory with the scoring defaults for pods that ask for none.
    pub non_zero: (i64, i64),
    /// How many of the pods declare pod affinity or anti-affinity (InterPodAffinity looks only
    /// at nodes that have some, unless the incoming pod has preferences of its own).
    pub pods_with_affinity: usize,
}

impl NodeInfo {
    /// A node with `pods` on it.
    pub fn new(node: Node, pods: Vec<Pod>) -> Self {
        let mut info = NodeInfo::default();
        info.set_node(node);
        for pod in pods {
            info.add_pod(Arc::new(PodInfo::new(pod)));
        }
        info
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        self.node.metadata.name.as_deref().unwrap_or_default()
    }

    /// Replaces the node object (after an update), keeping its pods.
    pub fn set_node(&mut self, node: Node) {
        self.allocatable = node
            .status
            .as_ref()
            .and_then(|s| s.allocatable.as_ref())
            .map(|a| {
                a.iter()
                    .map(|(name, q)| (name.clone(), quantity::amount(name, &q.0)))
                    .collect()
            })
            .unwrap_or_default();
        self.node = node;
    }

    /// Counts a pod on this node.
    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        for (name, v) in &pod.requests {
            *self.requested.entry(name.clone()).or_default() += v;
        }
        let (cpu, memory) = pod.non_zero;
        self.non_zero.0 += cpu;
        self.non_zero.1 += memory;
        if super::interpod::has_affinity(pod.affinity.as_deref()) {
            self.pods_with_affinity += 1;
        }
        self.pods.push(pod);
    }

    /// Stops counting the pod with this uid (or namespace/name when it has none); whether it was
    /// here.
    pub fn remove_pod(&mut self, pod: &ObjectMeta) -> bool {
        let Some(i) = self.pods.iter().position(|p| same_pod(&p.metadata, pod)) else {
            return false;
        };
        let gone = self.pods.swap_remove(i);
        for (name, v) in &gone.requests {
            *self.requested.entry(name.clone()).or_default() -= v;
        }
        let (cpu, memory) = gone.non_zero;
        self.non_zero.0 -= cpu;
        self.non_zero.1 -= memory;
        if super::interpod::has_affinity(gone.affinity.as_deref()) {
            self.pods_with_affinity -= 1;
        }
        true
    }
}

/// Whether two objects are the same pod: same uid, or same namespace and name without uids.
pub fn same_pod(a: &ObjectMeta, b: &ObjectMeta) -> bool {
    match (a.uid.as_deref(), b.uid.as_deref()) {
        (Some(x), Some(y)) => x == y,
        _ => a.namespace == b.namespace && a.name == b.name,
    }
}

/// What a pod without requests counts as when scoring (kube-scheduler's non-zero defaults).
pub const DEFAULT_CPU_MILLIS: i64 = 100;
/// The memory a pod without a memory request counts as when scoring (200 MiB).
pub const DEFAULT_MEMORY: i64 = 200 * 1024 * 1024;

/// A pod's cpu and memory for scoring, with the non-zero defaults.
pub fn non_zero_requests(pod: &Pod) -> (i64, i64) {
    non_zero_of(&requests(pod))
}

/// The scoring cpu and memory of summed requests.
pub fn non_zero_of(r: &BTreeMap<String, i64>) -> (i64, i64) {
    let cpu = r
        .get("cpu")
        .copied()
        .filter(|v| *v > 0)
        .unwrap_or(DEFAULT_CPU_MILLIS);
    let memory = r
        .get("memory")
        .copied()
        .filter(|v| *v > 0)
        .unwrap_or(DEFAULT_MEMORY);
    (cpu, memory)
}

/// A filter's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Filter {
    /// The pod fits.
    Ok,
    /// The pod cannot run here, for these reasons.
    Unschedulable(Vec<String>),
}

/// NodeName: a pod that names its node fits only there.
pub const NODE_NAME: &str = "node(s) didn't match the requested node name";
/// NodeUnschedulable: cordoned nodes take no new pods (unless tolerated).
pub const NODE_UNSCHEDULABLE: &str = "node(s) were unschedulable";
/// NodeResourcesFit: too many pods.
pub const TOO_MANY_PODS: &str = "Too many pods";

/// NodeName.
pub fn node_name(pod: &Pod, node: &NodeInfo) -> Filter {
    match pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
        Some(wanted)
            if !wanted.is_empty() && Some(wanted) != node.node.metadata.name.as_deref() =>
        {
            Filter::Unschedulable(vec![NODE_NAME.into()])
        }
        _ => Filter::Ok,
    }
}

fn tolerations(pod: &Pod) -> &[Toleration] {
    pod.spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default()
}

/// Whether a toleration tolerates a taint (same key, or an empty key with Exists; same effect
/// or any; Equal compares values).
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect_ok = toleration
        .effect
        .as_deref()
        .is_none_or(|e| e.is_empty() || e == taint.effect);
    let key_ok = match toleration.key.as_deref() {
        None | Some("") => toleration.operator.as_deref() == Some("Exists"),
        Some(key) => key == taint.key,
    };
    let value_ok = match toleration.operator.as_deref() {
        Some("Exists") => true,
        _ => {
            toleration.value.as_deref().unwrap_or_default()
                == taint.value.as_deref().unwrap_or_default()
        }
    };
    effect_ok && key_ok && value_ok
}

/// NodeUnschedulable.
pub fn node_unschedulable(pod: &Pod, node: &NodeInfo) -> Filter {
    let cordoned = node
        .node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false);
    if !cordoned {
        return Filter::Ok;
    }
    let taint = Taint {
        key: "node.kubernetes.io/unschedulable".into(),
        effect: "NoSchedule".into(),
        ..Default::default()
    };
    if !tolerations(pod).iter().any(|t| tolerates(t, &taint)) {
        return Filter::Unschedulable(vec![NODE_UNSCHEDULABLE.into()]);
    }
    Filter::Ok
}

/// TaintToleration: every NoSchedule and NoExecute taint must be tolerated.
pub fn taint_toleration(pod: &Pod, node: &NodeInfo) -> Filter {
    let taints = node
        .node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    for taint in taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
    {
        if !tolerations(pod).iter().any(|t| tolerates(t, taint)) {
            return Filter::Unschedulable(vec![format!(
                "node(s) had untolerated taint {{{}: {}}}",
                taint.key,
                taint.value.as_deref().unwrap_or_default()
            )]);
        }
    }
    Filter::Ok
}

/// What a pod asks for: the larger of its containers' summed requests and any one init
/// container's, per resource (cpu in millicores, the rest in bytes), as kube-scheduler counts.
pub fn requests(pod: &Pod) -> BTreeMap<String, i64> {
    let Some(spec) = pod.spec.as_ref() else {
        return BTreeMap::new();
    };
    let read = |name: &str, q: &k8s_openapi::apimachinery::pkg::api::resource::Quantity| {
        quantity::amount(name, &q.0)
    };
    let mut sum: BTreeMap<String, i64> = BTreeMap::new();
    for c in &spec.containers {
        for (name, q) in c
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .into_iter()
            .flatten()
        {
            *sum.entry(name.clone()).or_default() += read(name, q);
        }
    }
    for c in spec.init_containers.iter().flatten() {
        for (name, q) in c
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .into_iter()
            .flatten()
        {
            let v = read(name, q);
            let entry = sum.entry(name.clone()).or_default();
            *entry = (*entry).max(v);
        }
    }
    for (name, q) in spec.overhead.iter().flatten() {
        *sum.entry(name.clone()).or_default() += read(name, q);
    }
    sum
}

/// NodeResourcesFit: the pod's requests fit in what the node's allocatable leaves after the pods
/// already on it, and there is room for one more pod.
pub fn node_resources_fit(pod: &Pod, node: &NodeInfo) -> Filter {
    fits(&requests(pod), node)
}

/// NodeResourcesFit with the pod's requests already summed (once per scheduling cycle).
pub fn fits(wanted: &BTreeMap<String, i64>, node: &NodeInfo) -> Filter {
    let mut reasons = Vec::new();
    let max_pods = node.allocatable.get("pods").copied().unwrap_or(110);
    if node.pods.len() as i64 + 1 > max_pods {
        reasons.push(TOO_MANY_PODS.to_owned());
    }
    for (name, &wanted) in wanted {
        if wanted == 0 {
            continue;
        }
        let free = node.allocatable.get(name).copied().unwrap_or(0)
            - node.requested.get(name).copied().unwrap_or(0);
        if wanted > free {
            reasons.push(format!("Insufficient {name}"));
        }
    }
    if reasons.is_empty() {
        Filter::Ok
    } else {
        Filter::Unschedulable(reasons)
    }
}

/// The `FailedScheduling` message when a PreFilter plugin rejects the pod for every node: its
/// message in place of the per-node reasons, as upstream's `FitError` writes it.
pub fn failed_pre_filter(nodes: usize, message: &str) -> String {
    format!(
        "0/{nodes} nodes are available: {message}. preemption: 0/{nodes} nodes are available: {nodes} Preemption is not helpful for scheduling."
    )
}

/// The `FailedScheduling` message: `0/3 nodes are available: 1 node(s) had untolerated taint
/// {k: v}, 2 Insufficient cpu. preemption: ...`, reasons counted and sorted as kube-scheduler does.
pub fn failed_scheduling(nodes: usize, reasons: &[Vec<String>]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for node_reasons in reasons {
        for r in node_reasons {
            *counts.entry(r.as_str()).or_default() += 1;
        }
    }
    let mut parts: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
    parts.sort();
    format!(
        "0/{nodes} nodes are available: {}. preemption: 0/{nodes} nodes are available: {nodes} Preemption is not helpful for scheduling.",
        parts.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn node(value: serde_json::Value) -> NodeInfo {
        let mut node: Node = serde_json::from_value(value).unwrap();
        if node.status.is_none() {
            node.status = serde_json::from_value(
                json!({"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}),
            )
            .unwrap();
        }
        NodeInfo::new(node, Vec::new())
    }

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    fn requesting(cpu: &str, memory: &str) -> Pod {
        pod(
            json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": memory}}}]}}),
        )
    }

    #[test]
    fn filters() {
        let plain = node(json!({"metadata": {"name": "node-1"}}));
        let cordoned =
            node(json!({"metadata": {"name": "node-2"}, "spec": {"unschedulable": true}}));
        let tainted = node(
            json!({"metadata": {"name": "node-3"}, "spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}}),
        );
        let any = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}}));
        let tolerant = pod(
            json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}], "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}, {"operator": "Exists", "key": "node.kubernetes.io/unschedulable"}]}}),
        );
        let pinned = pod(
            json!({"metadata": {"name": "p"}, "spec": {"nodeName": "node-2", "containers": [{"name": "c"}]}}),
        );
        let no = |r: &str| Filter::Unschedulable(vec![r.to_owned()]);
        for (name, result, expected) in [
            (
                "any pod on a plain node",
                node_unschedulable(&any, &plain),
                Filter::Ok,
            ),
            (
                "cordoned",
                node_unschedulable(&any, &cordoned),
                no(NODE_UNSCHEDULABLE),
            ),
            (
                "cordoned, tolerated",
                node_unschedulable(&tolerant, &cordoned),
                Filter::Ok,
            ),
            (
                "tainted",
                taint_toleration(&any, &tainted),
                no("node(s) had untolerated taint {dedicated: gpu}"),
            ),
            (
                "tainted, tolerated",
                taint_toleration(&tolerant, &tainted),
                Filter::Ok,
            ),
            (
                "pinned elsewhere",
                node_name(&pinned, &plain),
                no(NODE_NAME),
            ),
            ("pinned here", node_name(&pinned, &cordoned), Filter::Ok),
            (
                "fits",
                node_resources_fit(&requesting("3500m", "7Gi"), &plain),
                Filter::Ok,
            ),
            (
                "too much cpu",
                node_resources_fit(&requesting("5", "1Gi"), &plain),
                no("Insufficient cpu"),
            ),
            (
                "too much memory",
                node_resources_fit(&requesting("1", "9Gi"), &plain),
                no("Insufficient memory"),
            ),
        ] {
            assert_eq!(result, expected, "{name}");
        }
        let mut busy = plain.clone();
        busy.add_pod(Arc::new(PodInfo::new(requesting("3", "1Gi"))));
        assert_eq!(
            node_resources_fit(&requesting("1500m", "1Gi"), &busy),
            no("Insufficient cpu")
        );
        let mut node = busy.node.clone();
        node.status = serde_json::from_value(
            json!({"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "1"}}),
        )
        .unwrap();
        busy.set_node(node);
        assert_eq!(
            node_resources_fit(&requesting("0", "0"), &busy),
            no(TOO_MANY_PODS)
        );
    }

    #[test]
    fn init_containers_count_by_their_largest() {
        let p = pod(json!({"spec": {
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "2"}}}],
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "500m"}}}, {"name": "b", "resources": {"requests": {"cpu": "500m", "memory": "64Mi"}}}],
        }}));
        assert_eq!(
            requests(&p),
            BTreeMap::from([("cpu".to_owned(), 2000), ("memory".to_owned(), 64 << 20)])
        );
    }

    #[test]
    fn failed_scheduling_reads_like_kube_scheduler() {
        let message = failed_scheduling(
            3,
            &[
                vec![
                    "node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"
                        .into(),
                ],
                vec!["Insufficient cpu".into()],
                vec!["Insufficient cpu".into()],
            ],
        );
        assert_eq!(
            message,
            "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 2 Insufficient cpu. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
        );
    }
}
