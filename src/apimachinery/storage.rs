//! The storage API's well-known names and readings, as upstream's `k8s.io/component-helpers`
//! (`storage/volume`) and `pkg/controller/volume/persistentvolume/util` declare them: the
//! annotations the PV controller, the provisioner, the scheduler and the kubelet write and read,
//! the protection finalizers, how a claim's or a volume's class is read, and which volume
//! matches a claim ([`find_matching_volume`], what the PV controller and the scheduler's
//! VolumeBinding plugin both use).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    NodeSelectorRequirement, ObjectReference, PersistentVolume, PersistentVolumeClaim,
};
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

/// A claim's storage request in bytes (0 when absent or unreadable).
pub fn requested_bytes(claim: &PersistentVolumeClaim) -> i64 {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .and_then(|q| super::quantity::bytes(&q.0).ok())
        .unwrap_or(0)
}

/// A volume's storage capacity in bytes (0 when absent or unreadable).
pub fn capacity_bytes(volume: &PersistentVolume) -> i64 {
    volume
        .spec
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .and_then(|q| super::quantity::bytes(&q.0).ok())
        .unwrap_or(0)
}

/// The `claimRef` a volume bound (or pre-bound) to `claim` carries: the claim's name, namespace,
/// uid and resourceVersion, as upstream's `GetReference` writes it.
pub fn claim_ref(claim: &PersistentVolumeClaim) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolumeClaim".into()),
        namespace: claim.metadata.namespace.clone(),
        name: claim.metadata.name.clone(),
        uid: claim.metadata.uid.clone(),
        resource_version: claim.metadata.resource_version.clone(),
        field_path: None,
    }
}

/// Whether `volume` is bound, or pre-bound, to `claim` (`IsVolumeBoundToClaim`): its claimRef
/// names the claim, with the claim's uid or none.
pub fn is_volume_bound_to_claim(volume: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let Some(reference) = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return false;
    };
    reference.name == claim.metadata.name
        && reference.namespace == claim.metadata.namespace
        && reference
            .uid
            .as_deref()
            .is_none_or(|uid| uid.is_empty() || Some(uid) == claim.metadata.uid.as_deref())
}

/// Whether the claim and the volume want different volume modes (unset is `Filesystem`).
pub fn volume_mode_mismatch(claim: &PersistentVolumeClaim, volume: &PersistentVolume) -> bool {
    let claim_mode = claim.spec.as_ref().and_then(|s| s.volume_mode.as_deref());
    let volume_mode = volume.spec.as_ref().and_then(|s| s.volume_mode.as_deref());
    claim_mode.unwrap_or("Filesystem") != volume_mode.unwrap_or("Filesystem")
}

fn access_modes_of(modes: Option<&Vec<String>>) -> Vec<&str> {
    modes
        .map(|m| m.iter().map(String::as_str).collect())
        .unwrap_or_default()
}

/// Whether the volume offers every access mode the claim asks for (`CheckAccessModes`).
pub fn offers_access_modes(claim: &PersistentVolumeClaim, volume: &PersistentVolume) -> bool {
    let offered = access_modes_of(volume.spec.as_ref().and_then(|s| s.access_modes.as_ref()));
    access_modes_of(claim.spec.as_ref().and_then(|s| s.access_modes.as_ref()))
        .iter()
        .all(|m| offered.contains(m))
}

fn requirement_holds(requirement: &NodeSelectorRequirement, value: Option<&String>) -> bool {
    let values = requirement.values.as_deref().unwrap_or_default();
    let number = |v: Option<&String>| v.and_then(|v| v.parse::<i64>().ok());
    let bound = values.first().and_then(|v| v.parse::<i64>().ok());
    match requirement.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => matches!((number(value), bound), (Some(a), Some(b)) if a > b),
        "Lt" => matches!((number(value), bound), (Some(a), Some(b)) if a < b),
        _ => false,
    }
}

/// Whether a node (its name and labels) satisfies the volume's required node affinity
/// (`CheckNodeAffinity`): any one term, each of whose expressions (on labels) and fields (on
/// `metadata.name`) holds. A volume without affinity fits every node.
pub fn node_affinity_allows(
    volume: &PersistentVolume,
    node: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    let Some(required) = volume
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
    else {
        return true;
    };
    let fields = BTreeMap::from([("metadata.name".to_owned(), node.to_owned())]);
    required.node_selector_terms.iter().any(|term| {
        let expressions = term.match_expressions.as_deref().unwrap_or_default();
        let by_field = term.match_fields.as_deref().unwrap_or_default();
        (!expressions.is_empty() || !by_field.is_empty())
            && expressions
                .iter()
                .all(|r| requirement_holds(r, labels.get(&r.key)))
            && by_field
                .iter()
                .all(|r| requirement_holds(r, fields.get(&r.key)))
    })
}

/// The volume that fits `claim` best (upstream's `FindMatchingVolume` behind the PV controller's
/// `findBestMatchForClaim` and the scheduler's volume binder): a volume pre-bound to the claim
/// wins outright; otherwise the smallest Available one of the claim's class, big enough, of its
/// volume mode, matching its selector and not being deleted. Volumes are tried in groups by
/// their access modes, fewest modes first, among those offering all the claim's. Without a
/// `node` (the PV controller) a claim whose class binds on first consumer (`delay_binding`)
/// only takes a pre-bound volume; with one (the scheduler) the volume's node affinity must
/// allow that node.
pub fn find_matching_volume(
    claim: &PersistentVolumeClaim,
    volumes: &[Arc<PersistentVolume>],
    node: Option<(&str, &BTreeMap<String, String>)>,
    delay_binding: bool,
) -> Option<Arc<PersistentVolume>> {
    let requested = requested_bytes(claim);
    let class = claim_class(claim);
    let selector = claim.spec.as_ref().and_then(|s| s.selector.as_ref());
    let mut groups: BTreeMap<usize, Vec<&Arc<PersistentVolume>>> = BTreeMap::new();
    for volume in volumes.iter().filter(|v| offers_access_modes(claim, v)) {
        let modes = access_modes_of(volume.spec.as_ref().and_then(|s| s.access_modes.as_ref()));
        let mut distinct = modes.clone();
        distinct.sort_unstable();
        distinct.dedup();
        groups.entry(distinct.len()).or_default().push(volume);
    }
    for mut group in groups.into_values() {
        // Deterministic, whatever order the cache lists them in.
        group.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let mut smallest: Option<(&Arc<PersistentVolume>, i64)> = None;
        for volume in group {
            let spec = volume.spec.as_ref();
            if spec.and_then(|s| s.claim_ref.as_ref()).is_some()
                && !is_volume_bound_to_claim(volume, claim)
            {
                continue;
            }
            let capacity = capacity_bytes(volume);
            if capacity < requested
                || volume_mode_mismatch(claim, volume)
                || volume.metadata.deletion_timestamp.is_some()
            {
                continue;
            }
            let node_fits =
                node.is_none_or(|(name, labels)| node_affinity_allows(volume, name, labels));
            if is_volume_bound_to_claim(volume, claim) {
                return node_fits.then(|| volume.clone());
            }
            if node.is_none() && delay_binding {
                continue;
            }
            let available =
                volume.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Available");
            let labels = volume.metadata.labels.clone().unwrap_or_default();
            if !available
                || selector.is_some_and(|s| !super::labels::matches(s, &labels))
                || volume_class(volume) != class
                || !node_fits
            {
                continue;
            }
            if smallest.is_none_or(|(_, size)| size > capacity) {
                smallest = Some((volume, capacity));
            }
        }
        if let Some((volume, _)) = smallest {
            return Some(volume.clone());
        }
    }
    None
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
    fn volume(value: serde_json::Value) -> Arc<PersistentVolume> {
        Arc::new(serde_json::from_value(value).unwrap())
    }

    #[test]
    fn the_best_match_is_prebound_else_the_smallest_that_fits() {
        let claim: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": "data", "namespace": "default", "uid": "c1"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "manual",
                     "resources": {"requests": {"storage": "1Gi"}},
                     "selector": {"matchLabels": {"tier": "db"}}},
        }))
        .unwrap();
        let pv = |name: &str, size: &str, modes: serde_json::Value, extra: serde_json::Value| {
            let mut v = json!({
                "metadata": {"name": name, "labels": {"tier": "db"}},
                "spec": {"capacity": {"storage": size}, "accessModes": modes, "storageClassName": "manual",
                         "hostPath": {"path": "/x"}},
                "status": {"phase": "Available"},
            });
            crate_merge(&mut v, extra);
            volume(v)
        };
        let rwo = json!(["ReadWriteOnce"]);
        type Case<'a> = (&'a str, Vec<Arc<PersistentVolume>>, Option<&'a str>);
        let cases: Vec<Case<'_>> = vec![
            ("nothing", vec![], None),
            (
                "too small",
                vec![pv("a", "512Mi", rwo.clone(), json!({}))],
                None,
            ),
            (
                "the smallest big enough",
                vec![
                    pv("big", "10Gi", rwo.clone(), json!({})),
                    pv("small", "1Gi", rwo.clone(), json!({})),
                    pv("tiny", "1Mi", rwo.clone(), json!({})),
                ],
                Some("small"),
            ),
            (
                "fewest access modes first, even if bigger",
                vec![
                    pv(
                        "many",
                        "1Gi",
                        json!(["ReadWriteOnce", "ReadOnlyMany"]),
                        json!({}),
                    ),
                    pv("one", "5Gi", rwo.clone(), json!({})),
                ],
                Some("one"),
            ),
            (
                "other class, selector, phase, mode, deletion",
                vec![
                    pv(
                        "class",
                        "1Gi",
                        rwo.clone(),
                        json!({"spec": {"storageClassName": "fast"}}),
                    ),
                    pv(
                        "labels",
                        "1Gi",
                        rwo.clone(),
                        json!({"metadata": {"labels": {"tier": "web"}}}),
                    ),
                    pv(
                        "released",
                        "1Gi",
                        rwo.clone(),
                        json!({"status": {"phase": "Released"}}),
                    ),
                    pv(
                        "block",
                        "1Gi",
                        rwo.clone(),
                        json!({"spec": {"volumeMode": "Block"}}),
                    ),
                    pv(
                        "going",
                        "1Gi",
                        rwo.clone(),
                        json!({"metadata": {"deletionTimestamp": "2020-01-01T00:00:00Z"}}),
                    ),
                    pv("rwx", "1Gi", json!(["ReadWriteMany"]), json!({})),
                ],
                None,
            ),
            (
                "bound elsewhere",
                vec![pv(
                    "taken",
                    "1Gi",
                    rwo.clone(),
                    json!({"spec": {"claimRef": {"namespace": "default", "name": "other"}}}),
                )],
                None,
            ),
            (
                "pre-bound wins over a smaller one, whatever its class",
                vec![
                    pv("small", "1Gi", rwo.clone(), json!({})),
                    pv(
                        "mine",
                        "9Gi",
                        rwo.clone(),
                        json!({"spec": {"storageClassName": "other", "claimRef": {"namespace": "default", "name": "data"}}}),
                    ),
                ],
                Some("mine"),
            ),
            (
                "pre-bound to an earlier claim of the name",
                vec![pv(
                    "stale",
                    "1Gi",
                    rwo.clone(),
                    json!({"spec": {"claimRef": {"namespace": "default", "name": "data", "uid": "old"}}}),
                )],
                None,
            ),
        ];
        for (case, volumes, want) in cases {
            let got = find_matching_volume(&claim, &volumes, None, false);
            assert_eq!(
                got.and_then(|v| v.metadata.name.clone()).as_deref(),
                want,
                "{case}"
            );
        }
        // Binding on first consumer: the PV controller takes only a pre-bound volume; the
        // scheduler also checks the node.
        let local = pv(
            "local",
            "1Gi",
            rwo.clone(),
            json!({"spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["node-1"]}]}]}}}}),
        );
        let volumes = vec![local];
        assert!(find_matching_volume(&claim, &volumes, None, true).is_none());
        let labels =
            |n: &str| BTreeMap::from([("kubernetes.io/hostname".to_owned(), n.to_owned())]);
        let on = |n: &str| find_matching_volume(&claim, &volumes, Some((n, &labels(n))), true);
        assert!(on("node-1").is_some());
        assert!(on("node-2").is_none());
    }

    /// Merges `extra` into `base`, objects key by key.
    fn crate_merge(base: &mut serde_json::Value, extra: serde_json::Value) {
        match (base, extra) {
            (serde_json::Value::Object(b), serde_json::Value::Object(e)) => {
                for (k, v) in e {
                    crate_merge(b.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (b, e) => *b = e,
        }
    }
}
