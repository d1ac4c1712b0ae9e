//! The scheduler's cache (kube-scheduler's `Cache` and its `NodeInfo` snapshot): one
//! [`NodeInfo`] per node with the pods on it and their summed requests, updated incrementally
//! from the watch (a pod added, changed, finished or deleted touches one node), plus **assumed**
//! pods: a pod counts on its chosen node from the moment the scheduler picks it, while its
//! binding is still on its way, until the watch shows it bound (confirmed) or the binding fails
//! (forgotten). Pods the watch shows on a node the cache does not know yet wait aside until the
//! node appears.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Affinity, Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::filters::NodeInfo;
use super::queue::{key, meta_key};

/// A change the cache saw that may help unschedulable pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Nothing that matters to scheduling.
    None,
    /// A node appeared.
    NodeAdded,
    /// A node's labels, taints, cordon, allocatable or images changed.
    NodeChanged,
    /// A pod started counting on a node.
    PodAdded,
    /// A counted pod changed.
    PodChanged,
    /// A pod stopped counting (deleted or finished).
    PodRemoved,
}

/// The cache.
#[derive(Default)]
pub struct Cache {
    nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    /// Pods counted on nodes the cache does not know (yet).
    waiting: HashMap<String, Vec<Arc<PodInfo>>>,
    /// Where each counted pod is counted.
    placed: HashMap<String, String>,
    /// Pods assumed on a node, not yet seen bound.
    assumed: HashMap<String, String>,
    /// How many nodes have each image (by every name the node reports).
    images: HashMap<String, usize>,
}

fn image_names(node: &Node) -> Vec<String> {
    let mut names: Vec<String> = node
        .status
        .iter()
        .flat_map(|s| s.images.iter().flatten())
        .flat_map(|i| i.names.iter().flatten())
        .flat_map(|n| {
            let short = n.strip_prefix("docker.io/library/").map(str::to_owned);
            std::iter::once(n.clone()).chain(short)
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// What the scheduler keeps of a pod, applied before its cache takes the pod in: what the
/// filters, scores and queue read (metadata, the scheduling fields of the spec, each
/// container's name, image, ports, resources and restart policy, the volumes that name a claim,
/// and the phase), not what only the kubelet reads (commands, env, probes, mounts, the other
/// volumes, the rest of the status). With thousands of
/// pods the difference is most of the scheduler's memory.
fn slim(pod: &mut Pod) {
    use k8s_openapi::api::core::v1::{Container, PodStatus};
    pod.metadata.annotations = None;
    if let Some(spec) = &mut pod.spec {
        let containers = spec.containers.iter_mut();
        for c in containers.chain(spec.init_containers.iter_mut().flatten()) {
            *c = Container {
                name: std::mem::take(&mut c.name),
                image: c.image.take(),
                ports: c.ports.take(),
                resources: c.resources.take(),
                restart_policy: c.restart_policy.take(),
                ..Default::default()
            };
        }
        spec.ephemeral_containers = None;
        // VolumeBinding reads the claims; every other volume (each kilobytes, even a small
        // projected token) is the kubelet's.
        crate::apimachinery::pods::keep_claim_volumes(spec);
    }
    if let Some(status) = &mut pod.status {
        *status = PodStatus {
            phase: status.phase.take(),
            ..Default::default()
        };
    }
    crate::apimachinery::pods::shrink(pod);
}

/// What the scheduler keeps of a pod. Of every pod: its metadata, what the plugins read of the
/// pods already on a node (node, affinity, priority, phase) and its requests, summed when it
/// arrives. Of a pod still without a node, also the pod itself as [`slim`] leaves it, which the
/// filters and scores are asked about. A bound pod keeps no `Pod`: the type's empty size alone
/// (over 2 KiB) would be most of what the scheduler holds for a cluster's running pods.
#[derive(Clone, Debug)]
pub struct PodInfo {
    /// Its metadata.
    pub metadata: ObjectMeta,
    /// `spec.nodeName`, when not empty.
    pub node_name: Option<String>,
    /// `spec.affinity`.
    pub affinity: Option<Box<Affinity>>,
    /// `spec.priority`.
    pub priority: Option<i32>,
    /// `status.phase`.
    pub phase: Option<String>,
    /// What it asks for ([`super::filters::requests`]).
    pub requests: BTreeMap<String, i64>,
    /// Its cpu and memory for scoring, with the non-zero defaults.
    pub non_zero: (i64, i64),
    /// The slim pod, while it has no node.
    pending: Option<Arc<Pod>>,
}

impl PodInfo {
    /// What the scheduler keeps of `pod`.
    pub fn new(mut pod: Pod) -> PodInfo {
        slim(&mut pod);
        let requests = super::filters::requests(&pod);
        let non_zero = super::filters::non_zero_of(&requests);
        let spec = pod.spec.as_ref();
        let mut info = PodInfo {
            metadata: pod.metadata.clone(),
            node_name: spec
                .and_then(|s| s.node_name.clone())
                .filter(|n| !n.is_empty()),
            affinity: spec.and_then(|s| s.affinity.clone()).map(Box::new),
            priority: spec.and_then(|s| s.priority),
            phase: pod.status.as_ref().and_then(|s| s.phase.clone()),
            requests,
            non_zero,
            pending: None,
        };
        if info.node_name.is_none() {
            info.pending = Some(Arc::new(pod));
        }
        info
    }

    /// The pod, while it has no node (what is scheduled); `None` once it is bound.
    pub fn pod(&self) -> Option<&Arc<Pod>> {
        self.pending.as_ref()
    }

    /// The same pod, counted on `node` (an assumed binding).
    fn on_node(&self, node: &str) -> PodInfo {
        PodInfo {
            node_name: Some(node.to_owned()),
            pending: None,
            ..self.clone()
        }
    }
}

/// Keyed and named as the pod is, so the scheduler's reflector can cache it.
impl kube::Resource for PodInfo {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(_: &()) -> std::borrow::Cow<'_, str> {
        <Pod as kube::Resource>::kind(&())
    }

    fn group(_: &()) -> std::borrow::Cow<'_, str> {
        <Pod as kube::Resource>::group(&())
    }

    fn version(_: &()) -> std::borrow::Cow<'_, str> {
        <Pod as kube::Resource>::version(&())
    }

    fn plural(_: &()) -> std::borrow::Cow<'_, str> {
        <Pod as kube::Resource>::plural(&())
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// Whether the pod counts on a node: bound and not finished.
fn counts(pod: &PodInfo) -> Option<&str> {
    let finished = matches!(pod.phase.as_deref(), Some("Succeeded" | "Failed"));
    pod.node_name.as_deref().filter(|_| !finished)
}

impl Cache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every known node, in the order the scheduler samples them.
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    /// How many nodes report `image`.
    pub fn nodes_with_image(&self, image: &str) -> usize {
        self.images.get(image).copied().unwrap_or(0)
    }

    /// Whether the pod is assumed (its binding on its way).
    pub fn is_assumed(&self, key: &str) -> bool {
        self.assumed.contains_key(key)
    }

    fn node_mut(&mut self, name: &str) -> Option<&mut NodeInfo> {
        self.index.get(name).map(|&i| &mut self.nodes[i])
    }

    fn place(&mut self, pod: Arc<PodInfo>, node: &str) {
        self.placed.insert(key(&*pod), node.to_owned());
        match self.node_mut(node) {
            Some(info) => info.add_pod(pod),
            None => self.waiting.entry(node.to_owned()).or_default().push(pod),
        }
    }

    fn unplace(&mut self, pod: &ObjectMeta) -> bool {
        let Some(node) = self.placed.remove(&meta_key(pod)) else {
            return false;
        };
        match self.node_mut(&node) {
            Some(info) => {
                info.remove_pod(pod);
            }
            None => {
                if let Some(list) = self.waiting.get_mut(&node) {
                    list.retain(|p| !super::filters::same_pod(&p.metadata, pod));
                }
            }
        }
        true
    }

    /// A node was added or changed.
    pub fn apply_node(&mut self, node: Node) -> Change {
        let name = node.metadata.name.clone().unwrap_or_default();
        let added = image_names(&node);
        if let Some(info) = self.node_mut(&name) {
            let before = (
                info.node.metadata.labels.clone(),
                info.node.spec.clone(),
                info.allocatable.clone(),
            );
            let removed = image_names(&info.node);
            info.set_node(node);
            let after = (
                info.node.metadata.labels.clone(),
                info.node.spec.clone(),
                info.allocatable.clone(),
            );
            let images_changed = removed != added;
            for n in removed {
                if let Some(c) = self.images.get_mut(&n) {
                    *c -= 1;
                }
            }
            for n in added {
                *self.images.entry(n).or_default() += 1;
            }
            return if before != after || images_changed {
                Change::NodeChanged
            } else {
                Change::None
            };
        }
        for n in added {
            *self.images.entry(n).or_default() += 1;
        }
        let pods = self.waiting.remove(&name).unwrap_or_default();
        let mut info = NodeInfo::new(node, Vec::new());
        for pod in pods {
            info.add_pod(pod);
        }
        self.index.insert(name, self.nodes.len());
        self.nodes.push(info);
        Change::NodeAdded
    }

    /// A node was deleted: its pods wait aside in case it comes back.
    pub fn delete_node(&mut self, name: &str) {
        let Some(i) = self.index.remove(name) else {
            return;
        };
        let info = self.nodes.swap_remove(i);
        if i < self.nodes.len() {
            let moved = self.nodes[i].name().to_owned();
            self.index.insert(moved, i);
        }
        for n in image_names(&info.node) {
            if let Some(c) = self.images.get_mut(&n) {
                *c -= 1;
            }
        }
        if !info.pods.is_empty() {
            self.waiting.insert(name.to_owned(), info.pods);
        }
    }

    /// Counts `pod` on `node` before its binding is confirmed.
    pub fn assume(&mut self, pod: &PodInfo, node: &str) {
        self.unplace(&pod.metadata);
        self.assumed.insert(key(pod), node.to_owned());
        self.place(Arc::new(pod.on_node(node)), node);
    }

    /// The binding failed: the pod no longer counts anywhere (unless the watch saw it bound).
    pub fn forget(&mut self, pod: &ObjectMeta) {
        if self.assumed.remove(&meta_key(pod)).is_some() {
            self.unplace(pod);
        }
    }

    /// A pod as the watch shows it. Returns what changed for scheduling.
    pub fn apply_pod(&mut self, pod: Arc<PodInfo>) -> Change {
        let k = key(&*pod);
        match counts(&pod).map(str::to_owned) {
            Some(node) => {
                self.assumed.remove(&k);
                let existed = self.unplace(&pod.metadata);
                self.place(pod, &node);
                if existed {
                    Change::PodChanged
                } else {
                    Change::PodAdded
                }
            }
            None if self.assumed.contains_key(&k) && pod.node_name.is_none() => {
                // Still pending in the watch; our binding is on its way.
                Change::None
            }
            None => {
                self.assumed.remove(&k);
                if self.unplace(&pod.metadata) {
                    Change::PodRemoved
                } else {
                    Change::None
                }
            }
        }
    }

    /// A pod was deleted.
    pub fn delete_pod(&mut self, pod: &ObjectMeta) -> Change {
        self.assumed.remove(&meta_key(pod));
        if self.unplace(pod) {
            Change::PodRemoved
        } else {
            Change::None
        }
    }

    /// After a relist: every pod counted again from the full list (assumed pods still pending
    /// in it stay assumed).
    pub fn reset_pods(&mut self, pods: &[Arc<PodInfo>]) {
        for info in &mut self.nodes {
            let node = info.node.clone();
            *info = NodeInfo::new(node, Vec::new());
        }
        self.waiting.clear();
        self.placed.clear();
        let assumed = std::mem::take(&mut self.assumed);
        let by_key: BTreeMap<String, &Arc<PodInfo>> = pods.iter().map(|p| (key(&**p), p)).collect();
        for pod in pods {
            self.apply_pod(pod.clone());
        }
        for (k, node) in assumed {
            if let Some(pod) = by_key.get(&k)
                && pod.node_name.is_none()
            {
                self.assume(pod, &node);
            }
        }
    }

    /// After a relist: nodes no longer listed are dropped.
    pub fn retain_nodes(&mut self, names: &[String]) {
        let gone: Vec<String> = self
            .index
            .keys()
            .filter(|n| !names.contains(n))
            .cloned()
            .collect();
        for n in gone {
            self.delete_node(&n);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn node(name: &str) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name}, "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}})).unwrap()
    }

    fn pod(name: &str, node: Option<&str>, phase: &str) -> Arc<PodInfo> {
        Arc::new(PodInfo::new(serde_json::from_value(json!({"metadata": {"name": name, "namespace": "default", "uid": name}, "spec": {"nodeName": node, "containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}, "status": {"phase": phase}})).unwrap()))
    }

    fn cpu(cache: &Cache) -> Vec<(String, i64, usize)> {
        cache
            .nodes()
            .iter()
            .map(|n| {
                (
                    n.name().to_owned(),
                    n.requested.get("cpu").copied().unwrap_or(0),
                    n.pods.len(),
                )
            })
            .collect()
    }

    #[test]
    fn a_bound_pod_keeps_its_requests_and_what_plugins_read_not_the_pod() {
        let bound = pod("a", Some("node-1"), "Running");
        assert_eq!(bound.requests.get("cpu"), Some(&1000));
        assert!(bound.pod().is_none());
        assert_eq!(bound.node_name.as_deref(), Some("node-1"));
        assert_eq!(bound.phase.as_deref(), Some("Running"));
        assert_eq!(bound.metadata.name.as_deref(), Some("a"));
        // A pending pod keeps its containers: the filters read them.
        let pending = pod("b", None, "Pending");
        let spec = pending.pod().unwrap().spec.as_ref().unwrap();
        assert_eq!(spec.containers.len(), 1);
        // Assumed on a node, it is counted there as a bound pod is.
        let assumed = pending.on_node("node-2");
        assert!(assumed.pod().is_none());
        assert_eq!(assumed.node_name.as_deref(), Some("node-2"));
        assert_eq!(assumed.requests.get("cpu"), Some(&1000));
    }

    #[test]
    fn incremental() {
        let mut cache = Cache::new();
        // A pod seen on a node before the node: it waits, then counts.
        assert_eq!(
            cache.apply_pod(pod("a", Some("node-1"), "Running")),
            Change::PodAdded
        );
        assert_eq!(cache.apply_node(node("node-1")), Change::NodeAdded);
        assert_eq!(cache.apply_node(node("node-2")), Change::NodeAdded);
        assert_eq!(cache.apply_node(node("node-2")), Change::None);
        assert_eq!(
            cpu(&cache),
            [("node-1".into(), 1000, 1), ("node-2".into(), 0, 0)]
        );
        // Assumed, then confirmed by the watch: counted once.
        let pending = pod("b", None, "Pending");
        cache.assume(&pending, "node-2");
        assert!(cache.is_assumed("default/b"));
        assert_eq!(cache.apply_pod(pending.clone()), Change::None);
        assert_eq!(cpu(&cache)[1], ("node-2".into(), 1000, 1));
        assert_eq!(
            cache.apply_pod(pod("b", Some("node-2"), "Pending")),
            Change::PodChanged
        );
        assert!(!cache.is_assumed("default/b"));
        assert_eq!(cpu(&cache)[1], ("node-2".into(), 1000, 1));
        // Assumed, then the binding fails: forgotten.
        let c = pod("c", None, "Pending");
        cache.assume(&c, "node-1");
        assert_eq!(cpu(&cache)[0], ("node-1".into(), 2000, 2));
        cache.forget(&c.metadata);
        assert_eq!(cpu(&cache)[0], ("node-1".into(), 1000, 1));
        // Finished pods stop counting; deleted ones too.
        assert_eq!(
            cache.apply_pod(pod("a", Some("node-1"), "Succeeded")),
            Change::PodRemoved
        );
        assert_eq!(
            cache.delete_pod(&pod("b", Some("node-2"), "Running").metadata),
            Change::PodRemoved
        );
        assert_eq!(
            cpu(&cache),
            [("node-1".into(), 0, 0), ("node-2".into(), 0, 0)]
        );
        // A relist counts everything again.
        cache.reset_pods(&[
            pod("d", Some("node-2"), "Running"),
            pod("e", Some("node-3"), "Running"),
        ]);
        assert_eq!(
            cpu(&cache),
            [("node-1".into(), 0, 0), ("node-2".into(), 1000, 1)]
        );
        cache.delete_node("node-1");
        assert_eq!(cache.apply_node(node("node-3")), Change::NodeAdded);
        assert_eq!(
            cpu(&cache),
            [("node-2".into(), 1000, 1), ("node-3".into(), 1000, 1)]
        );
    }
}
