//! The provisioner's decisions, pure: whether a claim is this provisioner's to provision (as
//! `sig-storage-lib-external-provisioner`'s `shouldProvision` decides), the volume it gets (as
//! rancher's local-path provisioner makes one), whether a volume is this provisioner's to delete
//! (`shouldDelete`), and whether a claim asks its volume to grow.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, Node, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec, VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::apimachinery::storage::{
    BETA_STORAGE_PROVISIONER, PROVISIONED_BY, SELECTED_NODE, STORAGE_PROVISIONER, annotation_value,
    capacity_bytes, claim_class, requested_bytes,
};

/// The provisioner's name, as kind's `standard` class names rancher's.
pub const PROVISIONER: &str = "rancher.io/local-path";
/// The annotation rancher's provisioner records the volume's node in.
pub const NODE_ANNOTATION: &str = "local.path.provisioner/selected-node";
/// The node label a volume's node affinity names.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// What to do about a claim.
#[derive(Debug, PartialEq)]
pub enum ClaimPlan {
    /// Not this provisioner's, or not yet (no node chosen), or already provisioned.
    Skip,
    /// Provisioning cannot work: a `ProvisioningFailed` event with this message.
    Fail(String),
    /// Make the directory and create this volume.
    Provision(Box<Provision>),
    /// The bound claim asks for more than its volume has, and its class allows it: the volume's
    /// capacity becomes this.
    Expand(Quantity),
}

/// A volume to provision.
#[derive(Debug, PartialEq)]
pub struct Provision {
    /// The directory on the host.
    pub path: PathBuf,
    /// The volume object.
    pub volume: PersistentVolume,
}

/// The name of a claim's volume: `pvc-<claim uid>`, as every external provisioner names it.
pub fn volume_name(claim: &PersistentVolumeClaim) -> String {
    format!("pvc-{}", claim.metadata.uid.as_deref().unwrap_or_default())
}

/// The directory a volume lives in: `<root>/<volume>_<namespace>_<claim>`, rancher's layout.
pub fn directory(root: &Path, claim: &PersistentVolumeClaim) -> PathBuf {
    root.join(format!(
        "{}_{}_{}",
        volume_name(claim),
        claim.metadata.namespace.as_deref().unwrap_or_default(),
        claim.metadata.name.as_deref().unwrap_or_default()
    ))
}

fn class_named<'a>(
    classes: &'a [std::sync::Arc<StorageClass>],
    name: &str,
) -> Option<&'a StorageClass> {
    classes
        .iter()
        .find(|c| c.metadata.name.as_deref() == Some(name))
        .map(|c| &**c)
}

/// What to do about `claim`, given the classes, nodes and volumes the caches hold.
pub fn plan_claim(
    claim: &PersistentVolumeClaim,
    classes: &[std::sync::Arc<StorageClass>],
    nodes: &[std::sync::Arc<Node>],
    volumes: &[std::sync::Arc<PersistentVolume>],
    root: &Path,
) -> ClaimPlan {
    if claim.metadata.deletion_timestamp.is_some() {
        return ClaimPlan::Skip;
    }
    let spec = claim.spec.clone().unwrap_or_default();
    let class_name = claim_class(claim);
    let Some(class) = class_named(classes, &class_name) else {
        return ClaimPlan::Skip;
    };
    if class.provisioner != PROVISIONER {
        return ClaimPlan::Skip;
    }
    let bound_to = spec.volume_name.clone().unwrap_or_default();
    if !bound_to.is_empty() {
        return plan_expansion(claim, class, volumes, &bound_to);
    }
    let asked = [STORAGE_PROVISIONER, BETA_STORAGE_PROVISIONER]
        .iter()
        .any(|a| annotation_value(&claim.metadata, a) == Some(PROVISIONER));
    if !asked {
        return ClaimPlan::Skip;
    }
    let name = volume_name(claim);
    if volumes
        .iter()
        .any(|v| v.metadata.name.as_deref() == Some(name.as_str()))
    {
        return ClaimPlan::Skip;
    }
    let fail = |why: &str| {
        ClaimPlan::Fail(format!(
            "failed to provision volume with StorageClass {class_name:?}: {why}"
        ))
    };
    let delayed = class.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer");
    let selected = annotation_value(&claim.metadata, SELECTED_NODE);
    if delayed && selected.is_none() {
        // The scheduler has not chosen a node yet.
        return ClaimPlan::Skip;
    }
    let Some(node_name) = selected else {
        return fail("configuration error, no node was specified");
    };
    let Some(node) = nodes
        .iter()
        .find(|n| n.metadata.name.as_deref() == Some(node_name))
    else {
        return fail(&format!("nodes {node_name:?} not found"));
    };
    let modes = spec.access_modes.clone().unwrap_or_default();
    if modes
        .iter()
        .any(|m| m != "ReadWriteOnce" && m != "ReadWriteOncePod")
    {
        return fail(
            "NodePath only supports ReadWriteOnce and ReadWriteOncePod (1.22+) access modes",
        );
    }
    let Some(request) = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .cloned()
    else {
        return ClaimPlan::Skip;
    };
    let hostname = node
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(HOSTNAME_LABEL))
        .cloned()
        .unwrap_or_else(|| node_name.to_owned());
    let path = directory(root, claim);
    let volume = PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name),
            annotations: Some(BTreeMap::from([
                (NODE_ANNOTATION.to_owned(), node_name.to_owned()),
                (PROVISIONED_BY.to_owned(), PROVISIONER.to_owned()),
            ])),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeSpec {
            access_modes: Some(modes),
            capacity: Some(BTreeMap::from([("storage".to_owned(), request)])),
            claim_ref: Some(crate::apimachinery::storage::claim_ref(claim)),
            host_path: Some(HostPathVolumeSource {
                path: path.display().to_string(),
                type_: Some("DirectoryOrCreate".into()),
            }),
            node_affinity: Some(VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: HOSTNAME_LABEL.into(),
                            operator: "In".into(),
                            values: Some(vec![hostname]),
                        }]),
                        match_fields: None,
                    }],
                }),
            }),
            persistent_volume_reclaim_policy: Some(
                class
                    .reclaim_policy
                    .clone()
                    .unwrap_or_else(|| "Delete".into()),
            ),
            storage_class_name: Some(class_name.clone()),
            volume_mode: Some("Filesystem".into()),
            ..PersistentVolumeSpec::default()
        }),
        status: None,
    };
    ClaimPlan::Provision(Box::new(Provision { path, volume }))
}

/// A bound claim whose request outgrew its volume (one this provisioner made, in a class that
/// allows expansion).
fn plan_expansion(
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    volumes: &[std::sync::Arc<PersistentVolume>],
    volume_name: &str,
) -> ClaimPlan {
    let Some(volume) = volumes
        .iter()
        .find(|v| v.metadata.name.as_deref() == Some(volume_name))
    else {
        return ClaimPlan::Skip;
    };
    let ours = annotation_value(&volume.metadata, PROVISIONED_BY) == Some(PROVISIONER);
    if !ours || class.allow_volume_expansion != Some(true) {
        return ClaimPlan::Skip;
    }
    if requested_bytes(claim) <= capacity_bytes(volume) {
        return ClaimPlan::Skip;
    }
    claim
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .cloned()
        .map_or(ClaimPlan::Skip, ClaimPlan::Expand)
}

/// The directory of a volume this provisioner should delete now (`shouldDelete`): one it made
/// (its `pv.kubernetes.io/provisioned-by`), Released, with the `Delete` policy, and whose path
/// is one of its own directories under `root` (nothing else on the host is ever removed).
pub fn to_delete(volume: &PersistentVolume, root: &Path) -> Option<PathBuf> {
    if annotation_value(&volume.metadata, PROVISIONED_BY) != Some(PROVISIONER)
        || volume.metadata.deletion_timestamp.is_some()
    {
        return None;
    }
    let spec = volume.spec.as_ref()?;
    let released = volume.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
    if !released || spec.persistent_volume_reclaim_policy.as_deref() != Some("Delete") {
        return None;
    }
    let path = PathBuf::from(&spec.host_path.as_ref()?.path);
    let inside = path.parent() == Some(root)
        && path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("pvc-"));
    inside.then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use std::sync::Arc;

    fn claim(extra: Value) -> PersistentVolumeClaim {
        let mut base = json!({
            "metadata": {"name": "data", "namespace": "default", "uid": "u1", "resourceVersion": "7",
                "annotations": {STORAGE_PROVISIONER: PROVISIONER, SELECTED_NODE: "node-1"}},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "storageClassName": "standard"},
        });
        merge(&mut base, extra);
        serde_json::from_value(base).unwrap()
    }

    fn merge(base: &mut Value, extra: Value) {
        match (base, extra) {
            (Value::Object(b), Value::Object(e)) => {
                for (k, v) in e {
                    if v.is_null() {
                        b.remove(&k);
                    } else {
                        merge(b.entry(k).or_insert(Value::Null), v);
                    }
                }
            }
            (b, e) => *b = e,
        }
    }

    fn classes(mode: &str) -> Vec<Arc<StorageClass>> {
        vec![Arc::new(
            serde_json::from_value(json!({"metadata": {"name": "standard"}, "provisioner": PROVISIONER,
                "reclaimPolicy": "Delete", "volumeBindingMode": mode, "allowVolumeExpansion": true}))
            .unwrap(),
        )]
    }

    fn nodes() -> Vec<Arc<Node>> {
        vec![Arc::new(
            serde_json::from_value(
                json!({"metadata": {"name": "node-1", "labels": {HOSTNAME_LABEL: "node-1"}}}),
            )
            .unwrap(),
        )]
    }

    #[test]
    fn a_claim_gets_a_directory_and_a_volume_on_its_node() {
        let root = Path::new("/state/storage");
        let wffc = classes("WaitForFirstConsumer");
        let ClaimPlan::Provision(p) = plan_claim(&claim(json!({})), &wffc, &nodes(), &[], root)
        else {
            panic!("provisioned")
        };
        assert_eq!(p.path, Path::new("/state/storage/pvc-u1_default_data"));
        let v = serde_json::to_value(&p.volume).unwrap();
        assert_eq!(v["metadata"]["name"], "pvc-u1");
        assert_eq!(v["metadata"]["annotations"][PROVISIONED_BY], PROVISIONER);
        assert_eq!(v["spec"]["capacity"]["storage"], "1Gi");
        assert_eq!(v["spec"]["claimRef"]["uid"], "u1");
        assert_eq!(v["spec"]["persistentVolumeReclaimPolicy"], "Delete");
        assert_eq!(
            v["spec"]["hostPath"]["path"],
            "/state/storage/pvc-u1_default_data"
        );
        assert_eq!(
            v["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0],
            json!({"key": HOSTNAME_LABEL, "operator": "In", "values": ["node-1"]})
        );

        let cases: Vec<(&str, PersistentVolumeClaim, Vec<Arc<StorageClass>>, ClaimPlan)> = vec![
            ("no node chosen yet", claim(json!({"metadata": {"annotations": {SELECTED_NODE: null}}})), wffc.clone(), ClaimPlan::Skip),
            (
                "Immediate: rancher's provisioner needs a node",
                claim(json!({"metadata": {"annotations": {SELECTED_NODE: null}}})),
                classes("Immediate"),
                ClaimPlan::Fail("failed to provision volume with StorageClass \"standard\": configuration error, no node was specified".into()),
            ),
            ("not asked", claim(json!({"metadata": {"annotations": {STORAGE_PROVISIONER: "other.io/x"}}})), wffc.clone(), ClaimPlan::Skip),
            ("another class", claim(json!({"spec": {"storageClassName": "fast"}})), wffc.clone(), ClaimPlan::Skip),
            (
                "shared access",
                claim(json!({"spec": {"accessModes": ["ReadWriteMany"]}})),
                wffc.clone(),
                ClaimPlan::Fail("failed to provision volume with StorageClass \"standard\": NodePath only supports ReadWriteOnce and ReadWriteOncePod (1.22+) access modes".into()),
            ),
            (
                "a node that is gone",
                claim(json!({"metadata": {"annotations": {SELECTED_NODE: "node-9"}}})),
                wffc.clone(),
                ClaimPlan::Fail("failed to provision volume with StorageClass \"standard\": nodes \"node-9\" not found".into()),
            ),
        ];
        for (case, c, classes, want) in cases {
            assert_eq!(
                plan_claim(&c, &classes, &nodes(), &[], root),
                want,
                "{case}"
            );
        }
        // Provisioned already: nothing more.
        let made = vec![Arc::new(p.volume.clone())];
        assert_eq!(
            plan_claim(&claim(json!({})), &wffc, &nodes(), &made, root),
            ClaimPlan::Skip
        );
        // Bound, and asking for more: the volume grows.
        let bound = claim(
            json!({"spec": {"volumeName": "pvc-u1", "resources": {"requests": {"storage": "2Gi"}}}}),
        );
        assert_eq!(
            plan_claim(&bound, &wffc, &nodes(), &made, root),
            ClaimPlan::Expand(Quantity("2Gi".into()))
        );
        let same = claim(json!({"spec": {"volumeName": "pvc-u1"}}));
        assert_eq!(
            plan_claim(&same, &wffc, &nodes(), &made, root),
            ClaimPlan::Skip
        );
    }

    #[test]
    fn only_its_own_released_volumes_are_deleted() {
        let root = Path::new("/state/storage");
        let volume = |extra: Value| -> PersistentVolume {
            let mut base = json!({
                "metadata": {"name": "pvc-u1", "annotations": {PROVISIONED_BY: PROVISIONER}},
                "spec": {"persistentVolumeReclaimPolicy": "Delete", "hostPath": {"path": "/state/storage/pvc-u1_default_data"}},
                "status": {"phase": "Released"},
            });
            merge(&mut base, extra);
            serde_json::from_value(base).unwrap()
        };
        assert_eq!(
            to_delete(&volume(json!({})), root),
            Some(PathBuf::from("/state/storage/pvc-u1_default_data"))
        );
        for extra in [
            json!({"status": {"phase": "Bound"}}),
            json!({"spec": {"persistentVolumeReclaimPolicy": "Retain"}}),
            json!({"metadata": {"annotations": {PROVISIONED_BY: "other.io/x"}}}),
            json!({"spec": {"hostPath": {"path": "/etc"}}}),
            json!({"spec": {"hostPath": {"path": "/state/storage/../../etc"}}}),
        ] {
            assert_eq!(to_delete(&volume(extra.clone()), root), None, "{extra}");
        }
    }
}
