//! The storage API's well-known names and readings, as upstream's `k8s.io/component-helpers`
//! (`storage/volume`) and `pkg/controller/volume/persistentvolume/util` declare them: the
//! annotations the PV controller, the provisioner, the scheduler and the kubelet write and read,
//! the protection finalizers, and how a claim's or a volume's class is read.

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// On a claim: the binder has finished binding it (`pv.kubernetes.io/bind-completed`).
pub const BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// On a claim or volume: the PV controller, not the user, bound it.
pub const BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// On a claim: the node the scheduler chose for its first consumer (WaitForFirstConsumer).
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// On a claim: the provisioner asked to provision it.
pub const STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
/// The same, in the beta form the PV controller still writes next to it.
pub const BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
/// On a volume: the provisioner that made it.
pub const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// The finalizer that keeps a claim while a pod uses it.
pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
/// The finalizer that keeps a volume while it is Bound.
pub const PV_PROTECTION: &str = "kubernetes.io/pv-protection";
/// The annotation that makes a StorageClass the default.
pub const IS_DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
/// Its beta form, still honoured.
pub const BETA_IS_DEFAULT_CLASS: &str = "storageclass.beta.kubernetes.io/is-default-class";
/// The beta annotation that named a claim's or volume's class before `storageClassName`.
pub const BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// Whether a StorageClass's metadata marks it default (either annotation, `"true"`).
pub fn is_default_class(meta: &ObjectMeta) -> bool {
    [IS_DEFAULT_CLASS, BETA_IS_DEFAULT_CLASS]
        .iter()
        .any(|key| annotation(meta, key) == Some("true"))
}

/// A claim's class (`GetPersistentVolumeClaimClass`): the beta annotation, else
/// `spec.storageClassName`, else `""` (no class).
pub fn claim_class(claim: &PersistentVolumeClaim) -> String {
    if let Some(class) = annotation(&claim.metadata, BETA_STORAGE_CLASS) {
        return class.to_owned();
    }
    claim
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.clone())
        .unwrap_or_default()
}

/// A volume's class (`GetPersistentVolumeClass`): the beta annotation, else
/// `spec.storageClassName`.
pub fn volume_class(volume: &PersistentVolume) -> String {
    if let Some(class) = annotation(&volume.metadata, BETA_STORAGE_CLASS) {
        return class.to_owned();
    }
    volume
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.clone())
        .unwrap_or_default()
}

/// Whether an object's metadata has annotation `key` (with any value).
pub fn has_annotation(meta: &ObjectMeta, key: &str) -> bool {
    annotation(meta, key).is_some()
}

/// The value of annotation `key`, if set.
pub fn annotation_value<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    annotation(meta, key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn classes_are_read_annotation_first() {
        let claim: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"annotations": {BETA_STORAGE_CLASS: "beta"}},
            "spec": {"storageClassName": "spec"},
        }))
        .unwrap();
        assert_eq!(claim_class(&claim), "beta");
        let plain: PersistentVolumeClaim =
            serde_json::from_value(json!({"spec": {"storageClassName": "standard"}})).unwrap();
        assert_eq!(claim_class(&plain), "standard");
        assert_eq!(claim_class(&PersistentVolumeClaim::default()), "");
        let volume: PersistentVolume =
            serde_json::from_value(json!({"spec": {"storageClassName": "standard"}})).unwrap();
        assert_eq!(volume_class(&volume), "standard");
        let meta: ObjectMeta =
            serde_json::from_value(json!({"annotations": {BETA_IS_DEFAULT_CLASS: "true"}}))
                .unwrap();
        assert!(is_default_class(&meta));
        assert!(!is_default_class(&ObjectMeta::default()));
    }
}
