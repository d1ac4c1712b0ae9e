//! The PV controller, kube-controller-manager's `persistentvolume-binder`: binds claims to
//! volumes and keeps both phases true. A claim gets the best matching volume (a pre-bound one,
//! else the smallest Available one of its class, size, access and volume modes and selector);
//! without one, a claim of a class with a provisioner is annotated for it
//! (`volume.kubernetes.io/storage-provisioner`) and bound once the provisioner's volume
//! appears; a claim whose class binds on first consumer waits for the scheduler's
//! `volume.kubernetes.io/selected-node`. Binding writes the volume's claimRef, its phase
//! `Bound`, the claim's `volumeName` with `pv.kubernetes.io/bind-completed` and
//! `bound-by-controller`, and the claim's status (capacity and access modes from the volume).
//! A volume whose claim is gone is `Released`, then reclaimed by its policy: `Retain` keeps it,
//! `Delete` is left to the provisioner that made it, anything the controller cannot do itself
//! marks it `Failed`. A claim whose volume went is `Lost`.
//!
//! The decisions are pure ([`sync`]); this module is the loop around them: shared informers of
//! claims, volumes, classes and pods, one work queue for claims and one for volumes, and a
//! resync of everything every 15 s (upstream's `--pvclaimbinder-sync-period`).

pub mod sync;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimStatus, Pod,
};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, PostParams};

use self::sync::{ClaimSync, Event, Reclaim, VolumeSync};
use super::Context;
use super::workqueue::{Action, Key, WorkQueue, run_workers};
use crate::apimachinery::storage::{
    BETA_STORAGE_PROVISIONER, BIND_COMPLETED, BOUND_BY_CONTROLLER, STORAGE_PROVISIONER,
    annotation_value, has_annotation, is_volume_bound_to_claim,
};
use crate::flow::{Flow, FlowEvent};
use crate::informers::{Change, Informer};

/// The controller's name (`--controllers`, its client `controller/persistentvolume-binder`).
pub const NAME: &str = "persistentvolume-binder";
/// Who its events say they are from.
const EVENT_SOURCE: &str = "persistentvolume-controller";
/// How often every claim and volume is looked at again.
const RESYNC: Duration = Duration::from_secs(15);
/// The pod index: pods by the claims (`namespace/claim`) their volumes name.
pub const BY_CLAIM: &str = "pvc";

/// What went wrong reconciling a claim or volume.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a write or read.
    #[error("{what}: {source}")]
    Api {
        /// What was being done.
        what: String,
        /// The error.
        source: kube::Error,
    },
}

fn api(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| Error::Api { what, source }
}

/// The claims a pod's volumes name, as `namespace/claim`.
pub fn claims_of(pod: &Pod) -> Vec<String> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| format!("{namespace}/{}", c.claim_name))
        .collect()
}

/// The PV controller.
pub struct PersistentVolumeController {
    client: kube::Client,
    flow: Flow,
    claims: Informer<PersistentVolumeClaim>,
    volumes: Informer<PersistentVolume>,
    classes: Informer<StorageClass>,
    pods: Informer<Pod>,
    claim_queue: WorkQueue<Key>,
    volume_queue: WorkQueue<Key>,
    /// The last event recorded per object, so a resync does not record it again.
    recorded: Arc<Mutex<HashMap<String, (String, String)>>>,
}

impl PersistentVolumeController {
    /// Takes the informers it needs from `ctx` and turns their changes into queued keys.
    pub fn new(ctx: &Context) -> Self {
        let claims = ctx.factory.informer::<PersistentVolumeClaim>();
        let volumes = ctx.factory.informer::<PersistentVolume>();
        let classes = ctx.factory.informer::<StorageClass>();
        let pods = ctx.factory.informer::<Pod>();
        pods.add_index(BY_CLAIM, claims_of);
        let claim_queue = WorkQueue::new("claims");
        let volume_queue = WorkQueue::new("volumes");
        {
            let (claim_queue, volume_queue) = (claim_queue.clone(), volume_queue.clone());
            claims.add_handler(move |change| match change {
                Change::Add(c) | Change::Update { new: c, .. } => claim_queue.add(Key::of(c)),
                // A deleted claim releases its volume.
                Change::Delete(c) => {
                    if let Some(volume) = c.spec.as_ref().and_then(|s| s.volume_name.as_deref())
                        && !volume.is_empty()
                    {
                        volume_queue.add(Key::new("", volume));
                    }
                }
            });
        }
        {
            let (claim_queue, volume_queue) = (claim_queue.clone(), volume_queue.clone());
            let claims = claims.clone();
            volumes.add_handler(move |change| match change {
                Change::Add(v) | Change::Update { new: v, .. } => {
                    volume_queue.add(Key::of(v));
                    // A free volume may be what a waiting claim needs: look now rather than at
                    // the next resync.
                    if v.spec.as_ref().is_some_and(|s| s.claim_ref.is_none()) {
                        for claim in claims.list() {
                            let unbound = claim
                                .spec
                                .as_ref()
                                .and_then(|s| s.volume_name.as_deref())
                                .is_none_or(str::is_empty);
                            if unbound {
                                claim_queue.add(Key::of(&*claim));
                            }
                        }
                    }
                }
                // A deleted volume leaves its claim Lost.
                Change::Delete(v) => {
                    if let Some(r) = v.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) {
                        claim_queue.add(Key::new(
                            r.namespace.clone().unwrap_or_default(),
                            r.name.clone().unwrap_or_default(),
                        ));
                    }
                }
            });
        }
        {
            // A class that comes or changes may let its waiting claims go on.
            let (claim_queue, claims) = (claim_queue.clone(), claims.clone());
            classes.add_handler(move |change| {
                let class = change.object().metadata.name.clone().unwrap_or_default();
                for claim in claims.list() {
                    let unbound = claim
                        .spec
                        .as_ref()
                        .and_then(|s| s.volume_name.as_deref())
                        .is_none_or(str::is_empty);
                    let named = crate::apimachinery::storage::claim_class(&claim);
                    if unbound && (named == class || named.is_empty()) {
                        claim_queue.add(Key::of(&*claim));
                    }
                }
            });
        }
        PersistentVolumeController {
            client: ctx.client(NAME),
            flow: ctx.flow.clone(),
            claims,
            volumes,
            classes,
            pods,
            claim_queue,
            volume_queue,
            recorded: Arc::default(),
        }
    }

    /// Waits for the caches, then reconciles claims and volumes, with a resync every 15 s.
    pub async fn run(self) {
        self.claims.synced().await;
        self.volumes.synced().await;
        self.classes.synced().await;
        self.pods.synced().await;
        let this = Arc::new(self);
        let resync = {
            let this = this.clone();
            async move {
                loop {
                    tokio::time::sleep(RESYNC).await;
                    for claim in this.claims.list() {
                        this.claim_queue.add(Key::of(&*claim));
                    }
                    for volume in this.volumes.list() {
                        this.volume_queue.add(Key::of(&*volume));
                    }
                }
            }
        };
        let claims = run_workers(this.claim_queue.clone(), 1, |key| {
            let this = this.clone();
            async move { this.sync_claim(key).await }
        });
        let volumes = run_workers(this.volume_queue.clone(), 1, |key| {
            let this = this.clone();
            async move { this.sync_volume(key).await }
        });
        tokio::join!(resync, claims, volumes);
    }

    fn hop(
        &self,
        verb: &str,
        kind: &str,
        namespace: &str,
        name: &str,
        detail: String,
    ) -> FlowEvent {
        FlowEvent::new(format!("controller/{NAME}"), "apiserver", verb)
            .object(kind, namespace, name)
            .detail(detail)
    }

    /// Records `event` on `object` unless it was the last one recorded there.
    async fn record<K: kube::Resource<DynamicType = ()>>(&self, object: &K, event: &Event) {
        let key = format!("{}/{}", K::kind(&()), Key::of(object));
        let this = (event.reason.to_owned(), event.message.clone());
        {
            let mut recorded = self.recorded.lock().unwrap_or_else(|p| p.into_inner());
            if recorded.get(&key) == Some(&this) {
                return;
            }
            recorded.insert(key, this);
        }
        super::event(
            &self.client,
            object,
            EVENT_SOURCE,
            event.type_,
            event.reason,
            &event.message,
        )
        .await;
    }

    /// The unscheduled pods that use `claim`, by name.
    fn unscheduled_pods(&self, claim: &PersistentVolumeClaim) -> Vec<String> {
        let mut names: Vec<String> = self
            .pods
            .by_index(BY_CLAIM, &Key::of(claim).to_string())
            .iter()
            .filter(|p| {
                p.spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_deref())
                    .is_none_or(str::is_empty)
            })
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        names.sort();
        names
    }

    async fn sync_claim(&self, key: Key) -> Result<Action, Error> {
        let Some(claim) = self.claims.get(&key.namespace, &key.name) else {
            self.recorded
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&format!("PersistentVolumeClaim/{key}"));
            return Ok(Action::Done);
        };
        let decision = sync::sync_claim(
            &claim,
            &self.volumes.list(),
            &self.classes.list(),
            &self.unscheduled_pods(&claim),
        );
        match decision {
            ClaimSync::Nothing => {}
            ClaimSync::Pending(event) => {
                if let Some(event) = &event {
                    self.record(&*claim, event).await;
                }
                self.claim_phase(&claim, "Pending", None).await?;
            }
            ClaimSync::AssignClass(class) => {
                let mut updated = (*claim).clone();
                updated.spec.get_or_insert_default().storage_class_name = Some(class.clone());
                self.flow
                    .gate_emit(self.hop(
                        "ASSIGN CLASS",
                        "PersistentVolumeClaim",
                        &key.namespace,
                        &key.name,
                        format!("no class named: the default StorageClass {class}"),
                    ))
                    .await;
                self.claims_api(&key.namespace)
                    .replace(&key.name, &PostParams::default(), &updated)
                    .await
                    .map_err(api(format!("assign class to claim {key}")))?;
            }
            ClaimSync::Provision { provisioner, event } => {
                let annotated = [STORAGE_PROVISIONER, BETA_STORAGE_PROVISIONER]
                    .iter()
                    .all(|a| annotation_value(&claim.metadata, a) == Some(provisioner.as_str()));
                if !annotated {
                    let mut updated = (*claim).clone();
                    let annotations = updated.metadata.annotations.get_or_insert_default();
                    annotations.insert(BETA_STORAGE_PROVISIONER.into(), provisioner.clone());
                    annotations.insert(STORAGE_PROVISIONER.into(), provisioner.clone());
                    self.flow
                        .gate_emit(self.hop(
                            "PROVISION",
                            "PersistentVolumeClaim",
                            &key.namespace,
                            &key.name,
                            format!("no volume fits: asking provisioner {provisioner}"),
                        ))
                        .await;
                    self.claims_api(&key.namespace)
                        .replace(&key.name, &PostParams::default(), &updated)
                        .await
                        .map_err(api(format!("annotate claim {key} for provisioning")))?;
                }
                self.record(&*claim, &event).await;
            }
            ClaimSync::Bind(volume) => self.bind(&claim, &volume).await?,
            ClaimSync::Lost(event) => {
                let phase = claim.status.as_ref().and_then(|s| s.phase.as_deref());
                if phase != Some("Lost") {
                    self.claim_phase(&claim, "Lost", None).await?;
                    self.record(&*claim, &event).await;
                }
            }
        }
        Ok(Action::Done)
    }

    fn claims_api(&self, namespace: &str) -> Api<PersistentVolumeClaim> {
        Api::namespaced(self.client.clone(), namespace)
    }

    fn volumes_api(&self) -> Api<PersistentVolume> {
        Api::all(self.client.clone())
    }

    /// Writes the claim's status for `phase` (and `volume`), if it differs.
    async fn claim_phase(
        &self,
        claim: &PersistentVolumeClaim,
        phase: &str,
        volume: Option<&PersistentVolume>,
    ) -> Result<Option<PersistentVolumeClaim>, Error> {
        let Some(status): Option<PersistentVolumeClaimStatus> =
            sync::claim_status(claim, phase, volume)
        else {
            return Ok(None);
        };
        let key = Key::of(claim);
        let mut updated = claim.clone();
        updated.status = Some(status);
        self.flow
            .gate_emit(self.hop(
                "STATUS",
                "PersistentVolumeClaim",
                &key.namespace,
                &key.name,
                format!("claim {phase}"),
            ))
            .await;
        let written = self
            .claims_api(&key.namespace)
            .replace_status(&key.name, &PostParams::default(), &updated)
            .await
            .map_err(api(format!("write the status of claim {key}")))?;
        Ok(Some(written))
    }

    /// Writes the volume's phase (and message), if it differs; returns the volume as it is now.
    async fn volume_phase(
        &self,
        volume: &PersistentVolume,
        phase: &str,
        message: Option<&str>,
    ) -> Result<PersistentVolume, Error> {
        let status = volume.status.clone().unwrap_or_default();
        if status.phase.as_deref() == Some(phase) {
            return Ok(volume.clone());
        }
        let name = volume.metadata.name.clone().unwrap_or_default();
        let mut updated = volume.clone();
        let status = updated.status.get_or_insert_default();
        status.phase = Some(phase.to_owned());
        status.message = message.map(str::to_owned);
        self.flow
            .gate_emit(self.hop(
                "STATUS",
                "PersistentVolume",
                "",
                &name,
                format!("volume {phase}"),
            ))
            .await;
        self.volumes_api()
            .replace_status(&name, &PostParams::default(), &updated)
            .await
            .map_err(api(format!("write the status of volume {name}")))
    }

    /// Binds `claim` and `volume` (upstream's `bind`): each step only where it is not done.
    async fn bind(
        &self,
        claim: &PersistentVolumeClaim,
        volume: &PersistentVolume,
    ) -> Result<(), Error> {
        let claim_key = Key::of(claim);
        let volume_name = volume.metadata.name.clone().unwrap_or_default();
        // The volume's claimRef, with `bound-by-controller` when the controller chose it.
        let mut volume = volume.clone();
        let reference = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
        let points_here = reference.is_some_and(|r| {
            r.name == claim.metadata.name
                && r.namespace == claim.metadata.namespace
                && r.uid == claim.metadata.uid
        });
        let chosen_by_controller = !is_volume_bound_to_claim(&volume, claim);
        let needs_annotation =
            chosen_by_controller && !has_annotation(&volume.metadata, BOUND_BY_CONTROLLER);
        if !points_here || needs_annotation {
            let mut updated = volume.clone();
            if !points_here {
                updated.spec.get_or_insert_default().claim_ref =
                    Some(crate::apimachinery::storage::claim_ref(claim));
            }
            if needs_annotation {
                updated
                    .metadata
                    .annotations
                    .get_or_insert_default()
                    .insert(BOUND_BY_CONTROLLER.into(), "yes".into());
            }
            self.flow
                .gate_emit(self.hop(
                    "BIND",
                    "PersistentVolume",
                    "",
                    &volume_name,
                    format!("volume {volume_name} to claim {claim_key}"),
                ))
                .await;
            volume = self
                .volumes_api()
                .replace(&volume_name, &PostParams::default(), &updated)
                .await
                .map_err(api(format!(
                    "bind volume {volume_name} to claim {claim_key}"
                )))?;
        }
        let volume = self.volume_phase(&volume, "Bound", None).await?;
        // The claim's volumeName and annotations.
        let mut claim = claim.clone();
        let named = claim.spec.as_ref().and_then(|s| s.volume_name.as_deref())
            == Some(volume_name.as_str());
        if !named || !has_annotation(&claim.metadata, BIND_COMPLETED) {
            let mut updated = claim.clone();
            let annotations = updated.metadata.annotations.get_or_insert_default();
            if !named {
                annotations
                    .entry(BOUND_BY_CONTROLLER.into())
                    .or_insert_with(|| "yes".into());
            }
            annotations
                .entry(BIND_COMPLETED.into())
                .or_insert_with(|| "yes".into());
            updated.spec.get_or_insert_default().volume_name = Some(volume_name.clone());
            self.flow
                .gate_emit(self.hop(
                    "BIND",
                    "PersistentVolumeClaim",
                    &claim_key.namespace,
                    &claim_key.name,
                    format!("claim {claim_key} to volume {volume_name}"),
                ))
                .await;
            claim = self
                .claims_api(&claim_key.namespace)
                .replace(&claim_key.name, &PostParams::default(), &updated)
                .await
                .map_err(api(format!(
                    "bind claim {claim_key} to volume {volume_name}"
                )))?;
        }
        self.claim_phase(&claim, "Bound", Some(&volume)).await?;
        Ok(())
    }

    /// The volume's claim: from the cache, else (for a volume not yet Released or Failed: a
    /// provisioner's or the scheduler's claim may be newer than the cache) from the API server.
    /// A cached claim with another uid is read again too, in case the cache is behind.
    async fn claim_of(
        &self,
        volume: &PersistentVolume,
    ) -> Result<Option<PersistentVolumeClaim>, Error> {
        let Some(reference) = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
            return Ok(None);
        };
        let (namespace, name) = (
            reference.namespace.clone().unwrap_or_default(),
            reference.name.clone().unwrap_or_default(),
        );
        let cached = self.claims.get(&namespace, &name);
        let phase = volume.status.as_ref().and_then(|s| s.phase.as_deref());
        let settled = matches!(phase, Some("Released" | "Failed"));
        let ask = match &cached {
            None => !settled,
            Some(c) => c.metadata.uid != reference.uid,
        };
        if !ask {
            return Ok(cached.map(|c| (*c).clone()));
        }
        self.claims_api(&namespace)
            .get_opt(&name)
            .await
            .map_err(api(format!("read claim {namespace}/{name}")))
    }

    async fn sync_volume(&self, key: Key) -> Result<Action, Error> {
        let Some(volume) = self.volumes.get("", &key.name) else {
            self.recorded
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&format!("PersistentVolume/{key}"));
            return Ok(Action::Done);
        };
        let claim = self.claim_of(&volume).await?;
        match sync::sync_volume(&volume, claim.as_ref()) {
            VolumeSync::Phase(phase) => {
                self.volume_phase(&volume, phase, None).await?;
            }
            VolumeSync::SyncClaim { namespace, name } => {
                self.claim_queue.add(Key::new(namespace, name));
            }
            VolumeSync::Mismatch {
                volume: v,
                claim: c,
            } => {
                self.record(&*volume, &v).await;
                if let Some(claim) = &claim {
                    self.record(claim, &c).await;
                }
            }
            VolumeSync::Release => {
                let phase = volume.status.as_ref().and_then(|s| s.phase.as_deref());
                let volume = if matches!(phase, Some("Released" | "Failed")) {
                    (*volume).clone()
                } else {
                    self.volume_phase(&volume, "Released", None).await?
                };
                match sync::reclaim(&volume) {
                    // Retained for its administrator; or its provisioner deletes it.
                    Reclaim::Retain | Reclaim::External(_) => {}
                    Reclaim::Fail(event) => {
                        if volume.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Failed")
                        {
                            self.volume_phase(&volume, "Failed", Some(&event.message))
                                .await?;
                            self.record(&volume, &event).await;
                        }
                    }
                }
            }
            VolumeSync::Unbind => {
                let mut updated = (*volume).clone();
                if has_annotation(&volume.metadata, BOUND_BY_CONTROLLER) {
                    updated.spec.get_or_insert_default().claim_ref = None;
                    if let Some(annotations) = updated.metadata.annotations.as_mut() {
                        annotations.remove(BOUND_BY_CONTROLLER);
                    }
                } else if let Some(r) = updated.spec.as_mut().and_then(|s| s.claim_ref.as_mut()) {
                    // Pre-bound by its user: it stays reserved for the claim's name.
                    r.uid = None;
                }
                self.flow
                    .gate_emit(self.hop(
                        "UNBIND",
                        "PersistentVolume",
                        "",
                        &key.name,
                        "its claim is bound to another volume".into(),
                    ))
                    .await;
                let written = self
                    .volumes_api()
                    .replace(&key.name, &PostParams::default(), &updated)
                    .await
                    .map_err(api(format!("unbind volume {}", key.name)))?;
                self.volume_phase(&written, "Available", None).await?;
            }
        }
        Ok(Action::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pods_are_indexed_by_the_claims_they_use() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"containers": [], "volumes": [
                {"name": "a", "persistentVolumeClaim": {"claimName": "data"}},
                {"name": "b", "emptyDir": {}},
                {"name": "c", "persistentVolumeClaim": {"claimName": "logs", "readOnly": true}},
            ]},
        }))
        .unwrap();
        assert_eq!(claims_of(&pod), ["shop/data", "shop/logs"]);
    }
}
