//! VolumeBinding, as kube-scheduler's plugin: a pod's PersistentVolumeClaims decide where it
//! may run, and the binding cycle binds what they need before the pod.
//!
//! - **PreFilter** ([`pre_filter`]): every claim the pod names must exist and not be being
//!   deleted; claims split into bound ones, unbound ones whose class binds on first consumer
//!   (`WaitForFirstConsumer`), and unbound ones that bind at once: any of the last makes the pod
//!   unschedulable ("pod has unbound immediate PersistentVolumeClaims") until the PV controller
//!   binds them.
//! - **Filter** ([`filter`]): a bound claim's volume must exist and its node affinity allow the
//!   node ("node(s) had volume node affinity conflict"); each unbound claim needs a matching
//!   static volume the node may use, or a class with a provisioner whose allowed topologies
//!   include the node ("node(s) didn't find available persistent volumes to bind").
//! - **PreBind** ([`bindings`], done by the binding cycle in [`super::run`]): static volumes get
//!   their claimRef, claims to provision get `volume.kubernetes.io/selected-node`, and the pod is
//!   bound only once every claim is bound (the PV controller and the provisioner do that), or
//!   sent back to the queue if provisioning gave up the node.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;

use super::filters::{Filter, NodeInfo};
use crate::apimachinery::storage::{
    BIND_COMPLETED, SELECTED_NODE, claim_class, find_matching_volume, has_annotation,
    node_affinity_allows,
};

/// The plugin's name.
pub const NAME: &str = "VolumeBinding";
/// PreFilter's reason for a claim that must bind before scheduling.
pub const UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";
/// Filter's reason for a bound volume the node may not use.
pub const NODE_CONFLICT: &str = "node(s) had volume node affinity conflict";
/// Filter's reason for an unbound claim with nothing to bind to on the node.
pub const BIND_CONFLICT: &str = "node(s) didn't find available persistent volumes to bind";
/// Filter's reason for a bound claim whose volume does not exist.
pub const PV_NOT_EXIST: &str =
    "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)";
/// The provisioner name of classes that never provision (local volumes made by hand).
pub const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";

/// What the plugin reads besides the pod and the node: the claims, volumes and classes.
#[derive(Clone, Copy)]
pub struct Storage<'a> {
    /// The claim named `name` in `namespace`.
    pub claim: &'a dyn Fn(&str, &str) -> Option<Arc<PersistentVolumeClaim>>,
    /// Every volume.
    pub volumes: &'a [Arc<PersistentVolume>],
    /// Every class.
    pub classes: &'a [Arc<StorageClass>],
}

impl Storage<'_> {
    /// No claims, volumes or classes (a cluster without storage, and tests).
    pub fn none() -> Storage<'static> {
        Storage {
            claim: &|_, _| None,
            volumes: &[],
            classes: &[],
        }
    }

    fn class(&self, name: &str) -> Option<&Arc<StorageClass>> {
        self.classes
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some(name))
    }

    fn volume(&self, name: &str) -> Option<&Arc<PersistentVolume>> {
        self.volumes
            .iter()
            .find(|v| v.metadata.name.as_deref() == Some(name))
    }
}

/// The pod's claims, as PreFilter sorted them.
#[derive(Clone, Debug, Default)]
pub struct PodVolumes {
    /// Claims that name their volume.
    pub bound: Vec<Arc<PersistentVolumeClaim>>,
    /// Unbound claims of a class that binds on first consumer.
    pub delayed: Vec<Arc<PersistentVolumeClaim>>,
}

/// The claims `pod` names, in its volumes' order.
pub fn claim_names(pod: &Pod) -> Vec<String> {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| c.claim_name.clone())
        .collect()
}

/// Whether the claim's class binds on first consumer.
fn delayed(claim: &PersistentVolumeClaim, storage: &Storage<'_>) -> bool {
    let name = claim_class(claim);
    !name.is_empty()
        && storage
            .class(&name)
            .is_some_and(|c| c.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"))
}

/// PreFilter: `Ok(None)` when the pod names no claim (the plugin has nothing to do), the sorted
/// claims, or why no node can take the pod (the reason for every node).
pub fn pre_filter(pod: &Pod, storage: &Storage<'_>) -> Result<Option<PodVolumes>, String> {
    let names = claim_names(pod);
    if names.is_empty() {
        return Ok(None);
    }
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let mut volumes = PodVolumes::default();
    let mut immediate = false;
    for name in names {
        let Some(claim) = (storage.claim)(namespace, &name) else {
            return Err(format!("persistentvolumeclaim {name:?} not found"));
        };
        if claim.metadata.deletion_timestamp.is_some() {
            return Err(format!("persistentvolumeclaim {name:?} is being deleted"));
        }
        let volume = claim.spec.as_ref().and_then(|s| s.volume_name.as_deref());
        if volume.is_some_and(|v| !v.is_empty()) {
            volumes.bound.push(claim);
        } else if delayed(&claim, storage) {
            volumes.delayed.push(claim);
        } else {
            immediate = true;
        }
    }
    if immediate {
        return Err(UNBOUND_IMMEDIATE.to_owned());
    }
    Ok(Some(volumes))
}

fn node_labels(node: &NodeInfo) -> BTreeMap<String, String> {
    node.node.metadata.labels.clone().unwrap_or_default()
}

/// What binding the pod to a node needs first.
#[derive(Clone, Debug, Default)]
pub struct Bindings {
    /// Static volumes to give to claims: `(claim, volume)`.
    pub volumes: Vec<(Arc<PersistentVolumeClaim>, Arc<PersistentVolume>)>,
    /// Claims to provision on the node.
    pub provision: Vec<Arc<PersistentVolumeClaim>>,
}

/// Whether the node's labels satisfy a class's `allowedTopologies` (none: every node).
fn topology_allows(class: &StorageClass, labels: &BTreeMap<String, String>) -> bool {
    let Some(terms) = class.allowed_topologies.as_ref().filter(|t| !t.is_empty()) else {
        return true;
    };
    terms.iter().any(|term| {
        term.match_label_expressions
            .iter()
            .flatten()
            .all(|e| labels.get(&e.key).is_some_and(|v| e.values.contains(v)))
    })
}

/// Finds, for each unbound claim, a static volume the node may use (none chosen twice) or
/// else a provisioning; `Err(reason)` when some claim has neither.
fn find(
    volumes: &PodVolumes,
    node: &NodeInfo,
    storage: &Storage<'_>,
) -> Result<Bindings, &'static str> {
    let labels = node_labels(node);
    let mut out = Bindings::default();
    let mut free: Vec<Arc<PersistentVolume>> = storage.volumes.to_vec();
    for claim in &volumes.delayed {
        let found = find_matching_volume(claim, &free, Some((node.name(), &labels)), true);
        if let Some(volume) = found {
            free.retain(|v| v.metadata.name != volume.metadata.name);
            out.volumes.push((claim.clone(), volume));
            continue;
        }
        let class = storage.class(&claim_class(claim));
        let provisions = class.is_some_and(|c| {
            !c.provisioner.is_empty()
                && c.provisioner != NO_PROVISIONER
                && topology_allows(c, &labels)
        });
        if !provisions {
            return Err(BIND_CONFLICT);
        }
        out.provision.push(claim.clone());
    }
    Ok(out)
}

/// Filter: whether the node can have the pod's volumes.
pub fn filter(volumes: &PodVolumes, node: &NodeInfo, storage: &Storage<'_>) -> Filter {
    let labels = node_labels(node);
    let mut reasons = Vec::new();
    for claim in &volumes.bound {
        let name = claim
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.as_deref())
            .unwrap_or_default();
        match storage.volume(name) {
            None => {
                reasons.push(PV_NOT_EXIST.to_owned());
                break;
            }
            Some(volume) if !node_affinity_allows(volume, node.name(), &labels) => {
                reasons.push(NODE_CONFLICT.to_owned());
                break;
            }
            Some(_) => {}
        }
    }
    if let Err(reason) = find(volumes, node, storage) {
        reasons.push(reason.to_owned());
    }
    if reasons.is_empty() {
        Filter::Ok
    } else {
        Filter::Unschedulable(reasons)
    }
}

/// What binding the pod to `node` needs done first (the node passed [`filter`]).
pub fn bindings(volumes: &PodVolumes, node: &NodeInfo, storage: &Storage<'_>) -> Bindings {
    find(volumes, node, storage).unwrap_or_default()
}

/// Whether a claim is fully bound (`isPVCFullyBound`): it names its volume and the PV
/// controller finished (`pv.kubernetes.io/bind-completed`).
pub fn fully_bound(claim: &PersistentVolumeClaim) -> bool {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .is_some_and(|v| !v.is_empty())
        && has_annotation(&claim.metadata, BIND_COMPLETED)
}

/// Whether provisioning for a claim gave the node up: the claim lost its
/// `volume.kubernetes.io/selected-node` (a provisioner that cannot provision there removes it)
/// before it was bound.
pub fn rescheduled(claim: &PersistentVolumeClaim, node: &str) -> bool {
    !fully_bound(claim)
        && crate::apimachinery::storage::annotation_value(&claim.metadata, SELECTED_NODE)
            != Some(node)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn node(name: &str) -> NodeInfo {
        NodeInfo::new(
            serde_json::from_value(
                json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
                "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}}),
            )
            .unwrap(),
            Vec::new(),
        )
    }

    fn pod(claims: &[&str]) -> Pod {
        let volumes: Vec<Value> = claims
            .iter()
            .map(|c| json!({"name": c, "persistentVolumeClaim": {"claimName": c}}))
            .collect();
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [], "volumes": volumes}}))
        .unwrap()
    }

    fn claim(name: &str, class: &str, volume: Option<&str>) -> Arc<PersistentVolumeClaim> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                    "storageClassName": class, "volumeName": volume}}))
            .unwrap(),
        )
    }

    fn class(name: &str, mode: &str, provisioner: &str) -> Arc<StorageClass> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name}, "provisioner": provisioner, "volumeBindingMode": mode}))
                .unwrap(),
        )
    }

    fn local_volume(name: &str, class: &str, node: &str) -> Arc<PersistentVolume> {
        Arc::new(serde_json::from_value(json!({"metadata": {"name": name},
            "spec": {"capacity": {"storage": "5Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": class,
                "local": {"path": "/mnt"}, "nodeAffinity": {"required": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}},
            "status": {"phase": "Available"}})).unwrap())
    }

    #[test]
    fn volume_binding() {
        let claims = [
            claim("wffc", "standard", None),
            claim("now", "fast", None),
            claim("bound", "standard", Some("pv-on-1")),
            claim("lost", "standard", Some("pv-gone")),
            claim("manual", "local", None),
            claim("nothing", "none", None),
        ];
        let classes = vec![
            class("standard", "WaitForFirstConsumer", "rancher.io/local-path"),
            class("fast", "Immediate", "example.com/fast"),
            class("local", "WaitForFirstConsumer", NO_PROVISIONER),
            class("none", "WaitForFirstConsumer", NO_PROVISIONER),
        ];
        let volumes = vec![
            local_volume("pv-on-1", "standard", "node-1"),
            local_volume("local-on-2", "local", "node-2"),
        ];
        let lookup = |_: &str, name: &str| {
            claims
                .iter()
                .find(|c| c.metadata.name.as_deref() == Some(name))
                .cloned()
        };
        let storage = Storage {
            claim: &lookup,
            volumes: &volumes,
            classes: &classes,
        };
        assert!(pre_filter(&pod(&[]), &storage).unwrap().is_none());
        assert_eq!(
            pre_filter(&pod(&["wffc", "now"]), &storage).unwrap_err(),
            UNBOUND_IMMEDIATE
        );
        assert_eq!(
            pre_filter(&pod(&["missing"]), &storage).unwrap_err(),
            "persistentvolumeclaim \"missing\" not found"
        );
        let verdict = |claims: &[&str], n: &str| {
            let volumes = pre_filter(&pod(claims), &storage).unwrap().unwrap();
            match filter(&volumes, &node(n), &storage) {
                Filter::Ok => "ok".to_owned(),
                Filter::Unschedulable(r) => r.join("; "),
            }
        };
        assert_eq!(verdict(&["wffc"], "node-1"), "ok", "provisioned anywhere");
        assert_eq!(verdict(&["bound"], "node-1"), "ok");
        assert_eq!(verdict(&["bound"], "node-2"), NODE_CONFLICT);
        assert_eq!(verdict(&["lost"], "node-1"), PV_NOT_EXIST);
        assert_eq!(
            verdict(&["manual"], "node-2"),
            "ok",
            "its local volume is there"
        );
        assert_eq!(verdict(&["manual"], "node-1"), BIND_CONFLICT);
        assert_eq!(verdict(&["nothing"], "node-1"), BIND_CONFLICT);
        assert_eq!(
            verdict(&["bound", "manual"], "node-2"),
            format!("{NODE_CONFLICT}")
        );

        let volumes = pre_filter(&pod(&["wffc", "manual"]), &storage)
            .unwrap()
            .unwrap();
        let b = bindings(&volumes, &node("node-2"), &storage);
        assert_eq!(b.volumes.len(), 1);
        assert_eq!(b.volumes[0].1.metadata.name.as_deref(), Some("local-on-2"));
        assert_eq!(b.provision.len(), 1);
        assert_eq!(b.provision[0].metadata.name.as_deref(), Some("wffc"));
    }

    #[test]
    fn a_claim_is_fully_bound_once_the_controller_says_so() {
        let mut c = (*claim("data", "standard", Some("pv1"))).clone();
        assert!(!fully_bound(&c));
        c.metadata.annotations = Some([(BIND_COMPLETED.to_owned(), "yes".to_owned())].into());
        assert!(fully_bound(&c));
        let mut waiting = (*claim("data", "standard", None)).clone();
        waiting.metadata.annotations =
            Some([(SELECTED_NODE.to_owned(), "node-1".to_owned())].into());
        assert!(!rescheduled(&waiting, "node-1"));
        waiting.metadata.annotations = None;
        assert!(rescheduled(&waiting, "node-1"));
    }
}
