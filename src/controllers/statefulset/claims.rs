//! `persistentVolumeClaimRetentionPolicy` as upstream enforces it: not by deleting claims but by
//! owner references the garbage collector follows. `whenDeleted: Delete` makes the set an owner
//! (controller) of each claim, `whenScaled: Delete` makes a scaled-down pod the owner of its
//! claims, so the claims go when their owner goes; `Retain` leaves no reference. A reference to
//! a set or pod of the same name but another uid is stale: such a claim is not touched, and a
//! claim stale for a pod about to be created blocks it until the collector has removed the claim.
//! Pure (`stateful_set_utils.go`: `isClaimOwnerUpToDate`, `updateClaimOwnerRefForSetAndPod`).

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::identity::{in_range, name, new_controller_ref, ordinal};

const DELETE: &str = "Delete";

/// `(whenDeleted, whenScaled)`, each `Retain` unless it says `Delete`
/// (`getPersistentVolumeClaimRetentionPolicy`; unknown values are treated as `Retain`).
pub fn policy(set: &StatefulSet) -> (bool, bool) {
    let p = set
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
    let delete = |v: Option<&String>| v.map(String::as_str) == Some(DELETE);
    (
        p.is_some_and(|p| delete(p.when_deleted.as_ref())),
        p.is_some_and(|p| delete(p.when_scaled.as_ref())),
    )
}

/// Whether a reference names this object by kind and name (any uid).
fn names(r: &OwnerReference, api_version: &str, kind: &str, meta: &ObjectMeta) -> bool {
    r.api_version == api_version && r.kind == kind && r.name == name(meta)
}

fn names_set(r: &OwnerReference, set: &StatefulSet) -> bool {
    names(r, "apps/v1", "StatefulSet", &set.metadata)
}

fn names_pod(r: &OwnerReference, pod: &Pod) -> bool {
    names(r, "v1", "Pod", &pod.metadata)
}

fn uid(meta: &ObjectMeta) -> &str {
    meta.uid.as_deref().unwrap_or_default()
}

fn refs(claim: &PersistentVolumeClaim) -> &[OwnerReference] {
    claim
        .metadata
        .owner_references
        .as_deref()
        .unwrap_or_default()
}

/// Whether the claim has a reference with the owner's uid.
fn has_owner(claim: &PersistentVolumeClaim, owner: &ObjectMeta) -> bool {
    refs(claim).iter().any(|r| r.uid == uid(owner))
}

/// Whether the claim refers to an object of this kind and name with another uid
/// (`hasStaleOwnerRef`: the first reference naming it decides).
fn stale_for(
    claim: &PersistentVolumeClaim,
    matches: impl Fn(&OwnerReference) -> bool,
    owner: &ObjectMeta,
) -> bool {
    refs(claim)
        .iter()
        .find(|r| matches(r))
        .is_some_and(|r| r.uid != uid(owner))
}

/// Whether the claim of a pod about to be created still belongs to an earlier pod of that name
/// (`PodClaimIsStale`: only under `whenScaled: Delete`, whose claims were meant to go).
pub fn is_stale(set: &StatefulSet, claim: &PersistentVolumeClaim, pod: &Pod) -> bool {
    policy(set).1 && stale_for(claim, |r| names_pod(r, pod), &pod.metadata)
}

/// A controller of the claim other than this set and pod, under a policy that deletes
/// (`hasUnexpectedController`); a reference to the set or pod with another uid counts as one.
pub fn has_unexpected_controller(
    claim: &PersistentVolumeClaim,
    set: &StatefulSet,
    pod: &Pod,
) -> bool {
    let (when_deleted, when_scaled) = policy(set);
    if !when_deleted && !when_scaled {
        return false;
    }
    refs(claim).iter().any(|r| {
        if names_set(r, set) {
            r.uid != uid(&set.metadata)
        } else if names_pod(r, pod) {
            r.uid != uid(&pod.metadata)
        } else {
            r.controller == Some(true)
        }
    })
}

/// The set or pod refers to the claim without being its controller (`hasNonControllerOwner`).
fn has_non_controller_owner(claim: &PersistentVolumeClaim, set: &StatefulSet, pod: &Pod) -> bool {
    refs(claim).iter().any(|r| {
        (r.uid == uid(&set.metadata) || r.uid == uid(&pod.metadata)) && r.controller != Some(true)
    })
}

/// Whether the pod's ordinal is outside the set's range now (it is being scaled away).
fn scaled_down(set: &StatefulSet, pod: &Pod) -> bool {
    !ordinal(pod).is_some_and(|o| in_range(set, o))
}

/// Whether the claim's references already say what the policy wants (`isClaimOwnerUpToDate`).
pub fn owner_up_to_date(claim: &PersistentVolumeClaim, set: &StatefulSet, pod: &Pod) -> bool {
    if stale_for(claim, |r| names_set(r, set), &set.metadata)
        || stale_for(claim, |r| names_pod(r, pod), &pod.metadata)
    {
        return true;
    }
    if has_unexpected_controller(claim, set, pod) {
        return !(has_owner(claim, &set.metadata) || has_owner(claim, &pod.metadata));
    }
    if has_non_controller_owner(claim, set, pod) {
        return false;
    }
    let (set_owns, pod_owns) = wanted(set, pod);
    has_owner(claim, &set.metadata) == set_owns && has_owner(claim, &pod.metadata) == pod_owns
}

/// Which of set and pod should own the claim: `(set, pod)`.
fn wanted(set: &StatefulSet, pod: &Pod) -> (bool, bool) {
    let (when_deleted, when_scaled) = policy(set);
    let down = scaled_down(set, pod);
    match (when_deleted, when_scaled) {
        (false, false) => (false, false),
        (true, false) => (true, false),
        (false, true) => (false, down),
        (true, true) => (!down, down),
    }
}

/// The claim's references made to say what the policy wants (`updateClaimOwnerRefForSetAndPod`):
/// the set's and pod's own references removed, then added back as controllers where wanted
/// (none when another controller holds the claim).
pub fn update_owner_refs(claim: &mut PersistentVolumeClaim, set: &StatefulSet, pod: &Pod) {
    let unexpected = has_unexpected_controller(claim, set, pod);
    let mut kept: Vec<OwnerReference> = refs(claim)
        .iter()
        .filter(|r| !names_set(r, set) && !names_pod(r, pod))
        .cloned()
        .collect();
    if !unexpected {
        let (set_owns, pod_owns) = wanted(set, pod);
        if pod_owns && !kept.iter().any(|r| r.uid == uid(&pod.metadata)) {
            kept.push(OwnerReference {
                api_version: "v1".into(),
                kind: "Pod".into(),
                name: name(&pod.metadata).to_owned(),
                uid: uid(&pod.metadata).to_owned(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            });
        }
        if set_owns && !kept.iter().any(|r| r.uid == uid(&set.metadata)) {
            kept.push(new_controller_ref(set));
        }
    }
    claim.metadata.owner_references = (!kept.is_empty()).then_some(kept);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::statefulset::identity::tests::web;
    use serde_json::json;

    const RETAIN: &str = "Retain";

    fn set_with(when_deleted: &str, when_scaled: &str, replicas: i32) -> StatefulSet {
        let mut set = web();
        let spec = set.spec.as_mut().unwrap();
        spec.replicas = Some(replicas);
        spec.persistent_volume_claim_retention_policy = Some(
            serde_json::from_value(json!({"whenDeleted": when_deleted, "whenScaled": when_scaled}))
                .unwrap(),
        );
        set
    }

    fn pod(ordinal: i32) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": format!("web-{ordinal}"), "uid": format!("pod-{ordinal}")}}))
            .unwrap()
    }

    fn claim(refs: serde_json::Value) -> PersistentVolumeClaim {
        serde_json::from_value(json!({"metadata": {"name": "www-web-2", "ownerReferences": refs}}))
            .unwrap()
    }

    fn owners(claim: &PersistentVolumeClaim) -> Vec<(String, String)> {
        refs(claim)
            .iter()
            .map(|r| (r.kind.clone(), r.uid.clone()))
            .collect()
    }

    /// Every policy, for a pod in range (ordinal 2 of 3) and one scaled away (of 2): the
    /// references the claim ends with, and that they are then up to date.
    #[test]
    fn each_policy_gives_its_owners() {
        let set_ref = ("StatefulSet".to_owned(), "set-uid".to_owned());
        let pod_ref = ("Pod".to_owned(), "pod-2".to_owned());
        for (deleted, scaled, replicas, want) in [
            (RETAIN, RETAIN, 3, vec![]),
            (RETAIN, RETAIN, 2, vec![]),
            (DELETE, RETAIN, 3, vec![set_ref.clone()]),
            (DELETE, RETAIN, 2, vec![set_ref.clone()]),
            (RETAIN, DELETE, 3, vec![]),
            (RETAIN, DELETE, 2, vec![pod_ref.clone()]),
            (DELETE, DELETE, 3, vec![set_ref.clone()]),
            (DELETE, DELETE, 2, vec![pod_ref.clone()]),
        ] {
            let set = set_with(deleted, scaled, replicas);
            let mut c = claim(json!(null));
            let up_to_date = owner_up_to_date(&c, &set, &pod(2));
            assert_eq!(
                up_to_date,
                want.is_empty(),
                "{deleted}/{scaled} of {replicas}"
            );
            update_owner_refs(&mut c, &set, &pod(2));
            assert_eq!(owners(&c), want, "{deleted}/{scaled} of {replicas}");
            assert!(owner_up_to_date(&c, &set, &pod(2)));
            // Back to Retain/Retain: the references go.
            let retain = set_with(RETAIN, RETAIN, replicas);
            update_owner_refs(&mut c, &retain, &pod(2));
            assert!(owners(&c).is_empty());
        }
    }

    #[test]
    fn stale_and_foreign_references_are_left_alone() {
        let set = set_with(DELETE, DELETE, 3);
        // A reference to an earlier web-2: stale, not touched, and blocks a new web-2.
        let stale = claim(
            json!([{"apiVersion": "v1", "kind": "Pod", "name": "web-2", "uid": "old", "controller": true}]),
        );
        assert!(owner_up_to_date(&stale, &set, &pod(2)));
        assert!(is_stale(&set, &stale, &pod(2)));
        assert!(!is_stale(&set_with(DELETE, RETAIN, 3), &stale, &pod(2)));
        // Another controller: the set does not add itself.
        let mut foreign = claim(
            json!([{"apiVersion": "example.com/v1", "kind": "Db", "name": "x", "uid": "db", "controller": true}]),
        );
        assert!(has_unexpected_controller(&foreign, &set, &pod(2)));
        assert!(owner_up_to_date(&foreign, &set, &pod(2)));
        update_owner_refs(&mut foreign, &set, &pod(2));
        assert_eq!(owners(&foreign), [("Db".to_owned(), "db".to_owned())]);
        // The set as a non-controller owner is fixed.
        let weak = claim(
            json!([{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "set-uid"}]),
        );
        assert!(!owner_up_to_date(&weak, &set, &pod(2)));
    }
}
