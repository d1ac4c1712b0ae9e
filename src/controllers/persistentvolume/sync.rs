//! The PV controller's decisions, pure: given a claim (or a volume) and what the caches hold,
//! what upstream's `syncClaim` (`syncUnboundClaim`, `syncBoundClaim`) and `syncVolume` would
//! do, as a [`ClaimSync`] or [`VolumeSync`] the controller then writes. Upstream's event
//! reasons and messages are here too, word for word.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::apimachinery::storage::{
    self as helpers, BIND_COMPLETED, PROVISIONED_BY, SELECTED_NODE, claim_class, has_annotation,
    is_volume_bound_to_claim, volume_class,
};

/// An event to record on the claim or volume synced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// `Normal` or `Warning`.
    pub type_: &'static str,
    /// The reason (`WaitForFirstConsumer`, `FailedBinding`, ...).
    pub reason: &'static str,
    /// The message, in upstream's words.
    pub message: String,
}

impl Event {
    fn normal(reason: &'static str, message: impl Into<String>) -> Event {
        Event {
            type_: "Normal",
            reason,
            message: message.into(),
        }
    }

    fn warning(reason: &'static str, message: impl Into<String>) -> Event {
        Event {
            type_: "Warning",
            reason,
            message: message.into(),
        }
    }
}

/// What a claim's sync decides.
#[derive(Clone, Debug, PartialEq)]
pub enum ClaimSync {
    /// The claim waits: its phase is made `Pending` (status capacity and access modes cleared),
    /// after recording the event if any.
    Pending(Option<Event>),
    /// No volume, and the claim names no class: it gets the default class (upstream's
    /// RetroactiveDefaultStorageClass) and is synced again.
    AssignClass(String),
    /// The claim's class has a provisioner: the claim is annotated with it
    /// (`volume.kubernetes.io/storage-provisioner` and the beta form) and the event says so;
    /// the provisioner creates a volume pre-bound to it, which the next sync binds.
    Provision {
        /// The provisioner's name (`rancher.io/local-path`).
        provisioner: String,
        /// `ExternalProvisioning`, or `ProvisioningFailed` when the class is missing.
        event: Event,
    },
    /// Bind the claim and this volume, each step only where it is not done yet: the volume's
    /// claimRef, its phase `Bound`, the claim's `volumeName` and annotations, its status.
    Bind(Arc<PersistentVolume>),
    /// The claim lost its volume: phase `Lost`, with the event, once.
    Lost(Event),
    /// Nothing to do (or an error case upstream only logs).
    Nothing,
}

/// What a volume's sync decides.
#[derive(Clone, Debug, PartialEq)]
pub enum VolumeSync {
    /// The volume's phase should be this (written only if it is not).
    Phase(&'static str),
    /// The claim must finish the binding: queue it.
    SyncClaim {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// The claim is gone: the volume is `Released` (unless already Released or Failed), then
    /// reclaimed by its policy ([`reclaim`]).
    Release,
    /// The controller bound this volume to a claim that took another: the claimRef goes (or,
    /// for a user's pre-binding, only its uid), and the volume is Available again.
    Unbind,
    /// The volume and its claim want different volume modes: both get a `VolumeMismatch`
    /// event, nothing is bound.
    Mismatch {
        /// The volume's event.
        volume: Event,
        /// The claim's event.
        claim: Event,
    },
}

/// What reclaiming a released volume does, by its `persistentVolumeReclaimPolicy`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reclaim {
    /// `Retain`: nothing; the volume stays Released for its administrator.
    Retain,
    /// `Delete` of a volume an external provisioner made: that provisioner deletes it.
    External(String),
    /// No plugin of the controller can: the volume is `Failed`, with this event and message.
    Fail(Event),
}

/// Whether the claim's class binds on first consumer (`IsDelayBindingMode`): a class that is
/// missing, or no class, binds at once.
pub fn delay_binding(claim: &PersistentVolumeClaim, classes: &[Arc<StorageClass>]) -> bool {
    let name = claim_class(claim);
    !name.is_empty()
        && classes.iter().any(|c| {
            c.metadata.name.as_deref() == Some(name.as_str())
                && c.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer")
        })
}

/// The default StorageClass of `classes` (upstream's `GetDefaultClass`: the newest of those
/// marked default, then the first by name).
pub fn default_class(classes: &[Arc<StorageClass>]) -> Option<String> {
    let mut defaults: Vec<&Arc<StorageClass>> = classes
        .iter()
        .filter(|c| helpers::is_default_class(&c.metadata))
        .collect();
    defaults.sort_by(|a, b| {
        let created = |c: &StorageClass| c.metadata.creation_timestamp.as_ref().map(|t| t.0);
        created(b)
            .cmp(&created(a))
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
    defaults.first().and_then(|c| c.metadata.name.clone())
}

/// `checkVolumeSatisfyClaim`: why a volume the claim asked for by name cannot be its.
pub fn volume_unsatisfying(
    volume: &PersistentVolume,
    claim: &PersistentVolumeClaim,
) -> Option<String> {
    let name = volume.metadata.name.clone().unwrap_or_default();
    if volume.metadata.deletion_timestamp.is_some() {
        return Some(format!("the volume is marked for deletion {name:?}"));
    }
    if helpers::capacity_bytes(volume) < helpers::requested_bytes(claim) {
        return Some("requested PV is too small".into());
    }
    if volume_class(volume) != claim_class(claim) {
        return Some("storageClassName does not match".into());
    }
    if helpers::volume_mode_mismatch(claim, volume) {
        return Some("incompatible volumeMode".into());
    }
    if !helpers::offers_access_modes(claim, volume) {
        return Some("incompatible accessMode".into());
    }
    None
}

/// The names of the pods that use a claim and are not scheduled yet.
pub type UnscheduledPods = Vec<String>;

/// `syncClaim`: what to do about `claim`, given every volume and class, and the unscheduled
/// pods that use it (for the event of a claim waiting for its first consumer).
pub fn sync_claim(
    claim: &PersistentVolumeClaim,
    volumes: &[Arc<PersistentVolume>],
    classes: &[Arc<StorageClass>],
    unscheduled: &UnscheduledPods,
) -> ClaimSync {
    let volume_name = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .unwrap_or_default();
    let find = |name: &str| {
        volumes
            .iter()
            .find(|v| v.metadata.name.as_deref() == Some(name))
            .cloned()
    };
    if has_annotation(&claim.metadata, BIND_COMPLETED) {
        // syncBoundClaim.
        if volume_name.is_empty() {
            return ClaimSync::Lost(Event::warning(
                "ClaimLost",
                "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!",
            ));
        }
        let Some(volume) = find(&volume_name) else {
            return ClaimSync::Lost(Event::warning(
                "ClaimLost",
                "Bound claim has lost its PersistentVolume. Data on the volume is lost!",
            ));
        };
        let reference = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
        return match reference {
            None => ClaimSync::Bind(volume),
            Some(r) if r.uid == claim.metadata.uid => ClaimSync::Bind(volume),
            Some(_) => ClaimSync::Lost(Event::warning(
                "ClaimMisbound",
                "Two claims are bound to the same volume, this one is bound incorrectly",
            )),
        };
    }
    // syncUnboundClaim.
    if !volume_name.is_empty() {
        // The user asked for a volume by name.
        let Some(volume) = find(&volume_name) else {
            return ClaimSync::Pending(None);
        };
        let reference = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
        if reference.is_none() {
            return match volume_unsatisfying(&volume, claim) {
                Some(why) => ClaimSync::Pending(Some(Event::warning(
                    "VolumeMismatch",
                    format!("Cannot bind to requested volume {volume_name:?}: {why}"),
                ))),
                None => ClaimSync::Bind(volume),
            };
        }
        if is_volume_bound_to_claim(&volume, claim) {
            return ClaimSync::Bind(volume);
        }
        let event = Event::warning(
            "FailedBinding",
            format!("volume {volume_name:?} already bound to a different claim."),
        );
        // Whether the user or the controller (upstream: "this should never happen") named the
        // volume, the claim waits with the event, and is tried again.
        return ClaimSync::Pending(Some(event));
    }
    let delayed = delay_binding(claim, classes);
    if let Some(volume) = helpers::find_matching_volume(claim, volumes, None, delayed) {
        return ClaimSync::Bind(volume);
    }
    let names_class = claim
        .spec
        .as_ref()
        .is_some_and(|s| s.storage_class_name.is_some())
        || has_annotation(&claim.metadata, helpers::BETA_STORAGE_CLASS);
    if !names_class && let Some(class) = default_class(classes) {
        return ClaimSync::AssignClass(class);
    }
    let class = claim_class(claim);
    if delayed && !has_annotation(&claim.metadata, SELECTED_NODE) {
        let event = match unscheduled.as_slice() {
            [] => Event::normal(
                "WaitForFirstConsumer",
                "waiting for first consumer to be created before binding",
            ),
            [one] => Event::normal(
                "WaitForPodScheduled",
                format!("waiting for pod {one} to be scheduled"),
            ),
            many => Event::normal(
                "WaitForPodScheduled",
                format!("waiting for pods {} to be scheduled", many.join(",")),
            ),
        };
        return ClaimSync::Pending(Some(event));
    }
    if !class.is_empty() {
        let Some(found) = classes
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some(class.as_str()))
        else {
            return ClaimSync::Pending(Some(Event::warning(
                "ProvisioningFailed",
                format!("storageclass.storage.k8s.io {class:?} not found"),
            )));
        };
        let provisioner = found.provisioner.clone();
        let message = format!(
            "Waiting for a volume to be created either by the external provisioner '{provisioner}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered."
        );
        return ClaimSync::Provision {
            provisioner,
            event: Event::normal("ExternalProvisioning", message),
        };
    }
    ClaimSync::Pending(Some(Event::normal(
        "FailedBinding",
        "no persistent volumes available for this claim and no storage class is set",
    )))
}

/// `syncVolume`: what to do about `volume`, given its claim as the caches (or, when they miss
/// it, the API server) have it: `None` when it is gone.
pub fn sync_volume(volume: &PersistentVolume, claim: Option<&PersistentVolumeClaim>) -> VolumeSync {
    let Some(reference) = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return VolumeSync::Phase("Available");
    };
    if reference.uid.as_deref().is_none_or(str::is_empty) {
        // Pre-bound by a user to a claim not bound yet: the claim's sync binds it.
        return VolumeSync::Phase("Available");
    }
    let claim = claim.filter(|c| c.metadata.uid == reference.uid);
    let Some(claim) = claim else {
        return VolumeSync::Release;
    };
    let claim_volume = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .unwrap_or_default();
    let volume_name = volume.metadata.name.as_deref().unwrap_or_default();
    if claim_volume.is_empty() {
        if helpers::volume_mode_mismatch(claim, volume) {
            let claim_name = claim.metadata.name.as_deref().unwrap_or_default();
            return VolumeSync::Mismatch {
                volume: Event::warning(
                    "VolumeMismatch",
                    format!(
                        "Cannot bind PersistentVolume to requested PersistentVolumeClaim {claim_name:?} due to incompatible volumeMode."
                    ),
                ),
                claim: Event::warning(
                    "VolumeMismatch",
                    format!(
                        "Cannot bind PersistentVolume {volume_name:?} to requested PersistentVolumeClaim due to incompatible volumeMode."
                    ),
                ),
            };
        }
        return VolumeSync::SyncClaim {
            namespace: claim.metadata.namespace.clone().unwrap_or_default(),
            name: claim.metadata.name.clone().unwrap_or_default(),
        };
    }
    if claim_volume == volume_name {
        return VolumeSync::Phase("Bound");
    }
    // The claim is bound to another volume.
    let provisioned = has_annotation(&volume.metadata, PROVISIONED_BY);
    let policy = volume
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref());
    if provisioned && policy == Some("Delete") {
        return VolumeSync::Release;
    }
    VolumeSync::Unbind
}

/// `reclaimVolume`: what the released volume's policy makes of it.
pub fn reclaim(volume: &PersistentVolume) -> Reclaim {
    let policy = volume
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        .unwrap_or("Retain");
    let name = volume.metadata.name.as_deref().unwrap_or_default();
    match policy {
        "Delete" => {
            let provisioner = helpers::annotation_value(&volume.metadata, PROVISIONED_BY)
                .filter(|p| !p.is_empty() && !p.starts_with("kubernetes.io/"));
            match provisioner {
                Some(p) => Reclaim::External(p.to_owned()),
                None => Reclaim::Fail(Event::warning(
                    "VolumeFailedDelete",
                    format!(
                        "error getting deleter volume plugin for volume {name:?}: no deletable volume plugin matched"
                    ),
                )),
            }
        }
        "Recycle" => Reclaim::Fail(Event::warning(
            "VolumeFailedRecycle",
            "No recycler plugin found for the volume!",
        )),
        _ => Reclaim::Retain,
    }
}

/// The claim's status as it should be: `phase`, and with a volume its access modes and
/// capacity (`updateClaimStatus`); `None` when it already is.
pub fn claim_status(
    claim: &PersistentVolumeClaim,
    phase: &str,
    volume: Option<&PersistentVolume>,
) -> Option<k8s_openapi::api::core::v1::PersistentVolumeClaimStatus> {
    let mut status = claim.status.clone().unwrap_or_default();
    let before = status.clone();
    status.phase = Some(phase.to_owned());
    match volume.and_then(|v| v.spec.as_ref()) {
        None => {
            status.access_modes = None;
            status.capacity = None;
        }
        Some(spec) => {
            status.access_modes.clone_from(&spec.access_modes);
            let storage = |c: Option<&BTreeMap<String, Quantity>>| {
                c.and_then(|c| c.get("storage"))
                    .and_then(|q| crate::apimachinery::quantity::bytes(&q.0).ok())
            };
            if storage(spec.capacity.as_ref()) != storage(status.capacity.as_ref()) {
                status.capacity = spec.capacity.as_ref().map(|c| {
                    c.iter()
                        .filter(|(k, _)| *k == "storage")
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                });
            }
        }
    }
    (status != before).then_some(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn claim(extra: Value) -> PersistentVolumeClaim {
        let mut base = json!({
            "metadata": {"name": "data", "namespace": "default", "uid": "c1"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "storageClassName": "standard"},
            "status": {"phase": "Pending"},
        });
        merge(&mut base, extra);
        serde_json::from_value(base).unwrap()
    }

    fn volume(name: &str, extra: Value) -> Arc<PersistentVolume> {
        let mut base = json!({
            "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"}, "storageClassName": "standard", "hostPath": {"path": "/x"}, "persistentVolumeReclaimPolicy": "Retain"},
            "status": {"phase": "Available"},
        });
        merge(&mut base, extra);
        Arc::new(serde_json::from_value(base).unwrap())
    }

    fn class(name: &str, mode: &str, default: bool) -> Arc<StorageClass> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "creationTimestamp": "2020-01-01T00:00:00Z",
                    "annotations": {"storageclass.kubernetes.io/is-default-class": default.to_string()}},
                "provisioner": "rancher.io/local-path", "volumeBindingMode": mode,
            }))
            .unwrap(),
        )
    }

    fn merge(base: &mut Value, extra: Value) {
        match (base, extra) {
            (Value::Object(b), Value::Object(e)) => {
                for (k, v) in e {
                    merge(b.entry(k).or_insert(Value::Null), v);
                }
            }
            (b, e) => *b = e,
        }
    }

    fn bound_ref() -> Value {
        json!({"spec": {"claimRef": {"kind": "PersistentVolumeClaim", "namespace": "default", "name": "data", "uid": "c1"}}})
    }

    #[test]
    fn claims() {
        let immediate = vec![class("standard", "Immediate", true)];
        let wffc = vec![class("standard", "WaitForFirstConsumer", true)];
        let none: Vec<String> = Vec::new();
        let bind = |name: &str| format!("bind {name}");
        let show = |s: ClaimSync| match s {
            ClaimSync::Bind(v) => bind(v.metadata.name.as_deref().unwrap()),
            ClaimSync::Pending(None) => "pending".into(),
            ClaimSync::Pending(Some(e)) | ClaimSync::Lost(e) => {
                format!("{} {}: {}", e.type_, e.reason, e.message)
            }
            ClaimSync::Provision { provisioner, event } => {
                format!("provision by {provisioner}: {}", event.reason)
            }
            ClaimSync::AssignClass(c) => format!("class {c}"),
            ClaimSync::Nothing => "nothing".into(),
        };
        type Case<'a> = (
            &'a str,
            PersistentVolumeClaim,
            Vec<Arc<PersistentVolume>>,
            &'a Vec<Arc<StorageClass>>,
            Vec<String>,
            String,
        );
        let cases: Vec<Case<'_>> = vec![
            ("a static volume that fits", claim(json!({})), vec![volume("pv1", json!({}))], &immediate, none.clone(), bind("pv1")),
            (
                "no volume, an Immediate class: the provisioner is asked",
                claim(json!({})), vec![], &immediate, none.clone(),
                "provision by rancher.io/local-path: ExternalProvisioning".into(),
            ),
            (
                "no volume, first consumer not there yet",
                claim(json!({})), vec![], &wffc, none.clone(),
                "Normal WaitForFirstConsumer: waiting for first consumer to be created before binding".into(),
            ),
            (
                "no volume, a pod waits for scheduling",
                claim(json!({})), vec![], &wffc, vec!["web-0".to_owned()],
                "Normal WaitForPodScheduled: waiting for pod web-0 to be scheduled".into(),
            ),
            (
                "the scheduler chose a node: provision",
                claim(json!({"metadata": {"annotations": {SELECTED_NODE: "node-1"}}})), vec![], &wffc, none.clone(),
                "provision by rancher.io/local-path: ExternalProvisioning".into(),
            ),
            (
                "a static volume is not taken before the first consumer",
                claim(json!({})), vec![volume("pv1", json!({}))], &wffc, none.clone(),
                "Normal WaitForFirstConsumer: waiting for first consumer to be created before binding".into(),
            ),
            (
                "the provisioned volume, pre-bound, is taken",
                claim(json!({"metadata": {"annotations": {SELECTED_NODE: "node-1"}}})),
                vec![volume("pvc-c1", bound_ref())], &wffc, none.clone(), bind("pvc-c1"),
            ),
            (
                "no class at all: the default one",
                claim(json!({"spec": {"storageClassName": null}})), vec![], &immediate, none.clone(), "class standard".into(),
            ),
            (
                "an empty class and nothing static",
                claim(json!({"spec": {"storageClassName": ""}})), vec![], &immediate, none.clone(),
                "Normal FailedBinding: no persistent volumes available for this claim and no storage class is set".into(),
            ),
            (
                "a class that does not exist",
                claim(json!({"spec": {"storageClassName": "gold"}})), vec![], &immediate, none.clone(),
                "Warning ProvisioningFailed: storageclass.storage.k8s.io \"gold\" not found".into(),
            ),
            (
                "asked by name, and free",
                claim(json!({"spec": {"volumeName": "pv9"}})), vec![volume("pv9", json!({}))], &immediate, none.clone(), bind("pv9"),
            ),
            (
                "asked by name, too small",
                claim(json!({"spec": {"volumeName": "pv9", "resources": {"requests": {"storage": "5Gi"}}}})),
                vec![volume("pv9", json!({}))], &immediate, none.clone(),
                "Warning VolumeMismatch: Cannot bind to requested volume \"pv9\": requested PV is too small".into(),
            ),
            (
                "asked by name, taken",
                claim(json!({"spec": {"volumeName": "pv9"}})),
                vec![volume("pv9", json!({"spec": {"claimRef": {"namespace": "default", "name": "other", "uid": "o"}}}))],
                &immediate, none.clone(),
                "Warning FailedBinding: volume \"pv9\" already bound to a different claim.".into(),
            ),
            ("asked by name, missing", claim(json!({"spec": {"volumeName": "pv9"}})), vec![], &immediate, none.clone(), "pending".into()),
            (
                "bound, and its volume agrees",
                claim(json!({"metadata": {"annotations": {BIND_COMPLETED: "yes"}}, "spec": {"volumeName": "pv1"}})),
                vec![volume("pv1", bound_ref())], &immediate, none.clone(), bind("pv1"),
            ),
            (
                "bound, volume gone",
                claim(json!({"metadata": {"annotations": {BIND_COMPLETED: "yes"}}, "spec": {"volumeName": "pv1"}})),
                vec![], &immediate, none.clone(),
                "Warning ClaimLost: Bound claim has lost its PersistentVolume. Data on the volume is lost!".into(),
            ),
            (
                "bound, volume taken by another",
                claim(json!({"metadata": {"annotations": {BIND_COMPLETED: "yes"}}, "spec": {"volumeName": "pv1"}})),
                vec![volume("pv1", json!({"spec": {"claimRef": {"namespace": "default", "name": "data", "uid": "other"}}}))],
                &immediate, none.clone(),
                "Warning ClaimMisbound: Two claims are bound to the same volume, this one is bound incorrectly".into(),
            ),
        ];
        for (case, c, volumes, classes, pods, want) in cases {
            assert_eq!(
                show(sync_claim(&c, &volumes, classes, &pods)),
                want,
                "{case}"
            );
        }
    }

    #[test]
    fn volumes() {
        let show = |s: VolumeSync| match s {
            VolumeSync::Phase(p) => p.to_owned(),
            VolumeSync::SyncClaim { namespace, name } => format!("sync {namespace}/{name}"),
            VolumeSync::Release => "release".into(),
            VolumeSync::Unbind => "unbind".into(),
            VolumeSync::Mismatch { .. } => "mismatch".into(),
        };
        let bound_claim = claim(json!({"spec": {"volumeName": "pv1"}}));
        let elsewhere = claim(json!({"spec": {"volumeName": "pv2"}}));
        let pending = claim(json!({}));
        let recreated = claim(json!({"metadata": {"uid": "c2"}}));
        let cases: Vec<(
            &str,
            Arc<PersistentVolume>,
            Option<&PersistentVolumeClaim>,
            &str,
        )> = vec![
            ("unclaimed", volume("pv1", json!({})), None, "Available"),
            (
                "pre-bound by a user",
                volume(
                    "pv1",
                    json!({"spec": {"claimRef": {"namespace": "default", "name": "data"}}}),
                ),
                None,
                "Available",
            ),
            (
                "bound both ways",
                volume("pv1", bound_ref()),
                Some(&bound_claim),
                "Bound",
            ),
            (
                "claim not bound yet",
                volume("pv1", bound_ref()),
                Some(&pending),
                "sync default/data",
            ),
            ("claim gone", volume("pv1", bound_ref()), None, "release"),
            (
                "claim recreated under the name",
                volume("pv1", bound_ref()),
                Some(&recreated),
                "release",
            ),
            (
                "claim took another",
                volume("pv1", bound_ref()),
                Some(&elsewhere),
                "unbind",
            ),
            (
                "provisioned for a claim that took another",
                volume(
                    "pv1",
                    json!({"metadata": {"annotations": {PROVISIONED_BY: "rancher.io/local-path"}}, "spec": {"claimRef": {"namespace": "default", "name": "data", "uid": "c1"}, "persistentVolumeReclaimPolicy": "Delete"}}),
                ),
                Some(&elsewhere),
                "release",
            ),
            (
                "modes differ",
                volume(
                    "pv1",
                    json!({"spec": {"volumeMode": "Block", "claimRef": {"namespace": "default", "name": "data", "uid": "c1"}}}),
                ),
                Some(&pending),
                "mismatch",
            ),
        ];
        for (case, v, c, want) in cases {
            assert_eq!(show(sync_volume(&v, c)), want, "{case}");
        }
    }

    #[test]
    fn reclaim_by_policy() {
        let with = |extra: Value| reclaim(&volume("pv1", extra));
        assert_eq!(with(json!({})), Reclaim::Retain);
        assert_eq!(
            with(
                json!({"metadata": {"annotations": {PROVISIONED_BY: "rancher.io/local-path"}}, "spec": {"persistentVolumeReclaimPolicy": "Delete"}})
            ),
            Reclaim::External("rancher.io/local-path".into())
        );
        let Reclaim::Fail(event) =
            with(json!({"spec": {"persistentVolumeReclaimPolicy": "Delete"}}))
        else {
            panic!("a static volume has no deleter")
        };
        assert_eq!(
            (event.reason, event.message.as_str()),
            (
                "VolumeFailedDelete",
                "error getting deleter volume plugin for volume \"pv1\": no deletable volume plugin matched"
            )
        );
        let Reclaim::Fail(event) =
            with(json!({"spec": {"persistentVolumeReclaimPolicy": "Recycle"}}))
        else {
            panic!("no recycler")
        };
        assert_eq!(event.reason, "VolumeFailedRecycle");
    }

    #[test]
    fn claim_status_follows_the_volume() {
        let c = claim(json!({}));
        let v = volume(
            "pv1",
            json!({"spec": {"capacity": {"storage": "2Gi"}, "accessModes": ["ReadWriteOnce", "ReadOnlyMany"]}}),
        );
        let status = claim_status(&c, "Bound", Some(&v)).unwrap();
        assert_eq!(status.phase.as_deref(), Some("Bound"));
        assert_eq!(status.capacity.unwrap()["storage"].0, "2Gi");
        assert_eq!(status.access_modes.unwrap().len(), 2);
        assert_eq!(claim_status(&c, "Pending", None), None, "already so");
        let mut bound = c.clone();
        bound.status = Some(claim_status(&c, "Bound", Some(&v)).unwrap());
        assert_eq!(claim_status(&bound, "Bound", Some(&v)), None);
        let lost = claim_status(&bound, "Lost", None).unwrap();
        assert_eq!((lost.capacity, lost.access_modes), (None, None));
    }
}
