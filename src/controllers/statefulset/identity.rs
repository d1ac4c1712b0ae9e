//! A StatefulSet pod's identity, as upstream's `stateful_set_utils.go` defines it: the ordinal
//! in its name (`web-2`), the labels that name it (`statefulset.kubernetes.io/pod-name`,
//! `apps.kubernetes.io/pod-index`, `controller-revision-hash`), its hostname and subdomain, and
//! its stable storage (one claim per `volumeClaimTemplates` entry, `<template>-<set>-<ordinal>`).
//! Also the pod states the controller reads (created, running and ready, available). Pure.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::apimachinery::pods;

/// The label naming the pod (`apps.StatefulSetPodNameLabel`).
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The label holding the pod's ordinal (`apps.PodIndexLabel`, GA in 1.32).
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// The label naming the pod's ControllerRevision (`apps.StatefulSetRevisionLabel`).
pub const REVISION_LABEL: &str = "controller-revision-hash";

/// The set's name and the ordinal in a pod's name, as upstream's `(.*)-([0-9]+)$` reads it:
/// `None` without a numeric suffix; `Some((parent, None))` when the number is beyond an int32.
pub fn parent_and_ordinal(name: &str) -> Option<(&str, Option<i32>)> {
    let (parent, digits) = name.rsplit_once('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((parent, digits.parse::<i32>().ok()))
}

/// A pod's ordinal, if its name has a valid one.
pub fn ordinal(pod: &Pod) -> Option<i32> {
    parent_and_ordinal(name(&pod.metadata)).and_then(|(_, o)| o)
}

/// Whether the pod's name says it belongs to `set` (`isMemberOf`).
pub fn is_member_of(set: &StatefulSet, pod: &Pod) -> bool {
    parent_and_ordinal(name(&pod.metadata)).map(|(parent, _)| parent) == Some(name(&set.metadata))
}

/// The first ordinal (`spec.ordinals.start`, else 0).
pub fn start_ordinal(set: &StatefulSet) -> i32 {
    spec_of(set)
        .and_then(|s| s.ordinals.as_ref())
        .and_then(|o| o.start)
        .unwrap_or(0)
}

/// `spec.replicas` (1 when unset, as defaulting makes it).
pub fn replicas(set: &StatefulSet) -> i32 {
    spec_of(set).and_then(|s| s.replicas).unwrap_or(1).max(0)
}

/// Whether the ordinal is one the set should run now (`podInOrdinalRange`).
pub fn in_range(set: &StatefulSet, ordinal: i32) -> bool {
    let start = start_ordinal(set);
    ordinal >= start && ordinal < start + replicas(set)
}

/// `<set>-<ordinal>`.
pub fn pod_name(set: &StatefulSet, ordinal: i32) -> String {
    format!("{}-{ordinal}", name(&set.metadata))
}

/// `<template>-<set>-<ordinal>`.
pub fn claim_name(set: &StatefulSet, template: &PersistentVolumeClaim, ordinal: i32) -> String {
    format!(
        "{}-{}-{ordinal}",
        name(&template.metadata),
        name(&set.metadata)
    )
}

/// The set's headless Service name (`spec.serviceName`, empty when unset).
pub fn service_name(set: &StatefulSet) -> &str {
    spec_of(set)
        .and_then(|s| s.service_name.as_deref())
        .unwrap_or_default()
}

/// Whether the pod has its identity in `set` (`identityMatches`): its name, namespace and
/// pod-name label.
pub fn identity_matches(set: &StatefulSet, pod: &Pod) -> bool {
    let pod_name_ = name(&pod.metadata);
    match parent_and_ordinal(pod_name_) {
        Some((parent, Some(ordinal))) => {
            parent == name(&set.metadata)
                && pod_name_ == pod_name(set, ordinal)
                && pod.metadata.namespace == set.metadata.namespace
                && label(&pod.metadata, POD_NAME_LABEL) == Some(pod_name_)
        }
        _ => false,
    }
}

/// Whether the pod mounts every claim the templates give it (`storageMatches`).
pub fn storage_matches(set: &StatefulSet, pod: &Pod) -> bool {
    let Some(ordinal) = ordinal(pod) else {
        return false;
    };
    let volumes: BTreeMap<&str, &Volume> = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
        .map(|v| (v.name.as_str(), v))
        .collect();
    templates(set).iter().all(|template| {
        volumes
            .get(name(&template.metadata))
            .and_then(|v| v.persistent_volume_claim.as_ref())
            .is_some_and(|c| c.claim_name == claim_name(set, template, ordinal))
    })
}

/// The claims of the pod at `ordinal`, one per template in template order, as
/// `getPersistentVolumeClaims` makes them: the template named for the pod, in the set's
/// namespace, with the template's labels plus the selector's `matchLabels`.
pub fn claims_for(set: &StatefulSet, ordinal: i32) -> Vec<(String, PersistentVolumeClaim)> {
    let selector_labels = spec_of(set)
        .and_then(|s| s.selector.match_labels.clone())
        .unwrap_or_default();
    templates(set)
        .iter()
        .map(|template| {
            let mut claim = template.clone();
            claim.metadata.name = Some(claim_name(set, template, ordinal));
            claim.metadata.namespace = set.metadata.namespace.clone();
            let mut labels = claim.metadata.labels.take().unwrap_or_default();
            labels.extend(selector_labels.clone());
            claim.metadata.labels = Some(labels);
            // A template's status (`phase: Pending`, from defaulting) is not the claim's to set.
            claim.status = None;
            (name(&template.metadata).to_owned(), claim)
        })
        .collect()
}

/// Points the pod's volumes named after templates at its claims, keeping its other volumes
/// (`updateStorage`; the claims first, in template order, where upstream's map order is random).
pub fn update_storage(set: &StatefulSet, pod: &mut Pod) {
    let Some(ordinal) = ordinal(pod) else {
        return;
    };
    let claims = claims_for(set, ordinal);
    let names: BTreeSet<&str> = claims.iter().map(|(n, _)| n.as_str()).collect();
    let spec = pod.spec.get_or_insert_with(Default::default);
    let mut volumes: Vec<Volume> = claims
        .iter()
        .map(|(template, claim)| Volume {
            name: template.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: name(&claim.metadata).to_owned(),
                read_only: None,
            }),
            ..Default::default()
        })
        .collect();
    volumes.extend(
        spec.volumes
            .take()
            .unwrap_or_default()
            .into_iter()
            .filter(|v| !names.contains(v.name.as_str())),
    );
    spec.volumes = (!volumes.is_empty()).then_some(volumes);
}

/// Puts what [`update_identity`] and [`update_storage`] repaired on `repaired` (a copy of the
/// controller manager's slimmed pod) onto `live` (the pod as the API server has it): the
/// labels, hostname and subdomain, and the claim volumes by name, keeping every other volume.
pub fn carry_repair(repaired: &Pod, live: &mut Pod) {
    live.metadata.labels = repaired.metadata.labels.clone();
    let (Some(from), Some(to)) = (repaired.spec.as_ref(), live.spec.as_mut()) else {
        return;
    };
    to.hostname = from.hostname.clone();
    to.subdomain = from.subdomain.clone();
    let claims = from
        .volumes
        .iter()
        .flatten()
        .filter(|v| v.persistent_volume_claim.is_some());
    let volumes = to.volumes.get_or_insert_with(Vec::new);
    for claim in claims {
        match volumes.iter_mut().find(|v| v.name == claim.name) {
            Some(v) => *v = claim.clone(),
            None => volumes.insert(0, claim.clone()),
        }
    }
}

/// Gives the pod its name, namespace and identity labels (`updateIdentity`).
pub fn update_identity(set: &StatefulSet, pod: &mut Pod) {
    let Some(ordinal) = ordinal(pod) else {
        return;
    };
    let name = pod_name(set, ordinal);
    pod.metadata.name = Some(name.clone());
    pod.metadata.namespace = set.metadata.namespace.clone();
    let labels = pod.metadata.labels.get_or_insert_with(Default::default);
    labels.insert(POD_NAME_LABEL.into(), name);
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
}

/// The controller reference a pod (or claim, or revision) of the set carries.
pub fn new_controller_ref(set: &StatefulSet) -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".into(),
        kind: "StatefulSet".into(),
        name: name(&set.metadata).to_owned(),
        uid: set.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// A new pod of the set at `ordinal` (`newStatefulSetPod`): `controller.GetPodFromTemplate`'s
/// labels, annotations, finalizers, `generateName: <set>-` and controller reference, the
/// template's spec, then its identity (hostname and subdomain set only here, at creation) and
/// storage.
pub fn new_pod(set: &StatefulSet, ordinal: i32) -> Pod {
    let template = spec_of(set).map(|s| s.template.clone()).unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut pod = Pod {
        metadata: ObjectMeta {
            name: Some(pod_name(set, ordinal)),
            generate_name: Some(format!("{}-", name(&set.metadata))),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![new_controller_ref(set)]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    };
    update_identity(set, &mut pod);
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.hostname = Some(pod_name(set, ordinal));
    let subdomain = service_name(set);
    spec.subdomain = (!subdomain.is_empty()).then(|| subdomain.to_owned());
    update_storage(set, &mut pod);
    pod
}

/// The revision a pod runs (its `controller-revision-hash` label: the revision's name).
pub fn revision_of(pod: &Pod) -> &str {
    label(&pod.metadata, REVISION_LABEL).unwrap_or_default()
}

/// Sets the pod's revision label.
pub fn set_revision(pod: &mut Pod, revision: &str) {
    pod.metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert(REVISION_LABEL.into(), revision.into());
}

/// The phase, empty for a pod not yet created.
pub fn phase(pod: &Pod) -> &str {
    pods::phase(pod)
}

/// Whether the API server holds the pod (`isCreated`: its phase is set).
pub fn is_created(pod: &Pod) -> bool {
    !phase(pod).is_empty()
}

/// Whether the pod is being deleted.
pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// `Running` with a `Ready=True` condition (`isRunningAndReady`).
pub fn is_running_and_ready(pod: &Pod) -> bool {
    phase(pod) == "Running" && pods::is_ready(pod)
}

/// Ready for `min_ready_seconds` at `now` (`podutil.IsPodAvailable`).
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: jiff::Timestamp) -> bool {
    pods::is_available(pod, i64::from(min_ready_seconds), now)
}

/// Not available, or terminating (`isUnavailable`).
pub fn is_unavailable(pod: &Pod, min_ready_seconds: i32, now: jiff::Timestamp) -> bool {
    !is_available(pod, min_ready_seconds, now) || is_terminating(pod)
}

fn spec_of(set: &StatefulSet) -> Option<&k8s_openapi::api::apps::v1::StatefulSetSpec> {
    set.spec.as_ref()
}

fn templates(set: &StatefulSet) -> &[PersistentVolumeClaim] {
    spec_of(set)
        .and_then(|s| s.volume_claim_templates.as_deref())
        .unwrap_or_default()
}

pub(super) fn name(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or_default()
}

fn label<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(key))
        .map(String::as_str)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn web() -> StatefulSet {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "set-uid"},
            "spec": {
                "replicas": 3,
                "serviceName": "nginx",
                "selector": {"matchLabels": {"app": "nginx"}},
                "template": {
                    "metadata": {"labels": {"app": "nginx"}, "annotations": {"a": "b"}},
                    "spec": {"containers": [{"name": "nginx", "image": "nginx:1"}],
                             "volumes": [{"name": "cache", "emptyDir": {}}]}
                },
                "volumeClaimTemplates": [{
                    "metadata": {"name": "www", "labels": {"tier": "data"}},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
                    "status": {"phase": "Pending"}
                }]
            }
        }))
        .unwrap()
    }

    #[test]
    fn ordinals_are_read_as_upstream_reads_them() {
        for (name, want) in [
            ("web-0", Some(("web", Some(0)))),
            ("web-12", Some(("web", Some(12)))),
            ("my-web-3", Some(("my-web", Some(3)))),
            ("web-01", Some(("web", Some(1)))),
            ("web-99999999999", Some(("web", None))),
            ("web", None),
            ("web-", None),
            ("web-x1", None),
            ("-4", Some(("", Some(4)))),
        ] {
            assert_eq!(parent_and_ordinal(name), want, "{name}");
        }
    }

    #[test]
    fn a_new_pod_has_its_identity_storage_and_owner() {
        let set = web();
        let pod = new_pod(&set, 2);
        let value = serde_json::to_value(&pod).unwrap();
        assert_eq!(value["metadata"]["name"], "web-2");
        assert_eq!(value["metadata"]["generateName"], "web-");
        assert_eq!(value["metadata"]["namespace"], "default");
        assert_eq!(
            value["metadata"]["labels"],
            json!({"app": "nginx", POD_NAME_LABEL: "web-2", POD_INDEX_LABEL: "2"})
        );
        assert_eq!(value["metadata"]["annotations"], json!({"a": "b"}));
        assert_eq!(
            value["metadata"]["ownerReferences"],
            json!([{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "set-uid", "controller": true, "blockOwnerDeletion": true}])
        );
        assert_eq!(value["spec"]["hostname"], "web-2");
        assert_eq!(value["spec"]["subdomain"], "nginx");
        assert_eq!(
            value["spec"]["volumes"],
            json!([
                {"name": "www", "persistentVolumeClaim": {"claimName": "www-web-2"}},
                {"name": "cache", "emptyDir": {}}
            ])
        );
        assert!(identity_matches(&set, &pod));
        assert!(storage_matches(&set, &pod));
        assert!(is_member_of(&set, &pod));
        assert!(!is_created(&pod));
    }

    #[test]
    fn claims_carry_template_and_selector_labels() {
        let claims = claims_for(&web(), 1);
        assert_eq!(claims.len(), 1);
        let (template, claim) = &claims[0];
        assert_eq!(template, "www");
        let value = serde_json::to_value(claim).unwrap();
        assert_eq!(value["metadata"]["name"], "www-web-1");
        assert_eq!(value["metadata"]["namespace"], "default");
        assert_eq!(
            value["metadata"]["labels"],
            json!({"app": "nginx", "tier": "data"})
        );
        assert_eq!(value["spec"]["resources"]["requests"]["storage"], "1Gi");
        assert!(value.get("status").is_none());
    }

    #[test]
    fn a_repair_of_the_slimmed_pod_goes_onto_the_whole_one() {
        let set = web();
        let mut live = new_pod(&set, 0);
        live.metadata
            .labels
            .as_mut()
            .unwrap()
            .remove(POD_NAME_LABEL);
        let spec = live.spec.as_mut().unwrap();
        spec.volumes.as_mut().unwrap().retain(|v| v.name != "www");
        spec.containers[0].env = Some(vec![
            serde_json::from_value(json!({"name": "A", "value": "1"})).unwrap(),
        ]);
        // What the controller manager's informer keeps, repaired.
        let mut repaired = live.clone();
        crate::controllers::slim_pod(&mut repaired);
        update_identity(&set, &mut repaired);
        update_storage(&set, &mut repaired);
        carry_repair(&repaired, &mut live);
        assert!(identity_matches(&set, &live));
        assert!(storage_matches(&set, &live));
        let spec = live.spec.as_ref().unwrap();
        let volumes: Vec<&str> = spec
            .volumes
            .iter()
            .flatten()
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(volumes, ["www", "cache"]);
        assert!(spec.containers[0].env.is_some());
    }

    #[test]
    fn identity_and_storage_mismatches_are_seen_and_repaired() {
        let set = web();
        let mut pod = new_pod(&set, 0);
        pod.metadata.labels.as_mut().unwrap().remove(POD_NAME_LABEL);
        pod.spec.as_mut().unwrap().volumes = None;
        assert!(!identity_matches(&set, &pod));
        assert!(!storage_matches(&set, &pod));
        update_identity(&set, &mut pod);
        update_storage(&set, &mut pod);
        assert!(identity_matches(&set, &pod));
        assert!(storage_matches(&set, &pod));
        // Another set's pod is not a member.
        let mut other = pod.clone();
        other.metadata.name = Some("webby-0".into());
        assert!(!is_member_of(&set, &other));
        assert!(!identity_matches(&set, &other));
    }

    #[test]
    fn readiness_and_availability() {
        let now: jiff::Timestamp = "2025-01-01T00:01:00Z".parse().unwrap();
        let pod = |phase: &str, ready: &str, since: &str| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": "web-0"},
                "status": {"phase": phase, "conditions": [
                    {"type": "Ready", "status": ready, "lastTransitionTime": since}
                ]}
            }))
            .unwrap()
        };
        let ready = pod("Running", "True", "2025-01-01T00:00:30Z");
        assert!(is_running_and_ready(&ready));
        assert!(is_available(&ready, 0, now));
        assert!(is_available(&ready, 30, now));
        assert!(!is_available(&ready, 31, now));
        assert!(is_unavailable(&ready, 31, now));
        assert!(!is_running_and_ready(&pod(
            "Pending",
            "True",
            "2025-01-01T00:00:00Z"
        )));
        assert!(!is_running_and_ready(&pod(
            "Running",
            "False",
            "2025-01-01T00:00:00Z"
        )));
        let mut terminating = ready.clone();
        terminating.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now));
        assert!(is_unavailable(&terminating, 0, now));
    }
}
