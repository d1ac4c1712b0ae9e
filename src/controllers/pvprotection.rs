//! The PV protection controller, kube-controller-manager's `pv-protection`: a volume carries the
//! `kubernetes.io/pv-protection` finalizer (put there on create by the StorageObjectInUseProtection
//! admission plugin, added here where missing), and a deleted volume keeps it, `Terminating`,
//! while it is `Bound` to a claim. Once it is not, the finalizer goes and the volume with it.

use std::sync::Arc;

use k8s_openapi::api::core::v1::PersistentVolume;
use kube::api::{Api, PostParams};

use super::Context;
use super::workqueue::{Action, Key, WorkQueue, run_workers};
use crate::apimachinery::storage::PV_PROTECTION;
use crate::flow::{Flow, FlowEvent};
use crate::informers::{Change, Informer};

/// The controller's name.
pub const NAME: &str = "pv-protection";

/// What went wrong reconciling a volume.
#[derive(Debug, thiserror::Error)]
#[error("update the finalizers of volume {name}: {source}")]
pub struct Error {
    /// The volume.
    name: String,
    /// The API server's error.
    source: kube::Error,
}

/// The finalizers `volume` should have, if they differ from what it has: the protection added
/// to a live volume, removed from a deleted one that is not Bound.
pub fn finalizers(volume: &PersistentVolume) -> Option<Vec<String>> {
    let current: Vec<String> = volume.metadata.finalizers.clone().unwrap_or_default();
    let has = current.iter().any(|f| f == PV_PROTECTION);
    let bound = volume.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    match (volume.metadata.deletion_timestamp.is_some(), has) {
        (false, false) => {
            let mut more = current;
            more.push(PV_PROTECTION.to_owned());
            Some(more)
        }
        (true, true) if !bound => {
            Some(current.into_iter().filter(|f| f != PV_PROTECTION).collect())
        }
        _ => None,
    }
}

/// The PV protection controller.
pub struct PvProtectionController {
    client: kube::Client,
    flow: Flow,
    volumes: Informer<PersistentVolume>,
    queue: WorkQueue<Key>,
}

impl PvProtectionController {
    /// Takes the volume informer from `ctx`; every change of a volume queues it.
    pub fn new(ctx: &Context) -> Self {
        let volumes = ctx.factory.informer::<PersistentVolume>();
        let queue = WorkQueue::new(NAME);
        {
            let queue = queue.clone();
            volumes.add_handler(move |change| {
                if !matches!(change, Change::Delete(_)) {
                    queue.add(Key::of(change.object()));
                }
            });
        }
        PvProtectionController {
            client: ctx.client(NAME),
            flow: ctx.flow.clone(),
            volumes,
            queue,
        }
    }

    /// Waits for the cache, then reconciles volumes one at a time.
    pub async fn run(self) {
        self.volumes.synced().await;
        let this = Arc::new(self);
        run_workers(this.queue.clone(), 1, |key| {
            let this = this.clone();
            async move { this.sync(key).await }
        })
        .await;
    }

    async fn sync(&self, key: Key) -> Result<Action, Error> {
        let Some(volume) = self.volumes.get("", &key.name) else {
            return Ok(Action::Done);
        };
        let Some(wanted) = finalizers(&volume) else {
            return Ok(Action::Done);
        };
        let deleting = volume.metadata.deletion_timestamp.is_some();
        let (verb, detail) = if deleting {
            (
                "RELEASE",
                format!("volume not Bound: remove finalizer {PV_PROTECTION}"),
            )
        } else {
            ("PROTECT", format!("add finalizer {PV_PROTECTION}"))
        };
        let mut updated = (*volume).clone();
        updated.metadata.finalizers = Some(wanted);
        self.flow
            .gate_emit(
                FlowEvent::new(format!("controller/{NAME}"), "apiserver", verb)
                    .object("PersistentVolume", "", &key.name)
                    .detail(detail),
            )
            .await;
        let volumes: Api<PersistentVolume> = Api::all(self.client.clone());
        match volumes
            .replace(&key.name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => Ok(Action::Done),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(Action::Done),
            Err(source) => Err(Error {
                name: key.name,
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_volume_goes_once_it_is_not_bound() {
        let volume = |finalizers: serde_json::Value,
                      deleting: bool,
                      phase: &str|
         -> PersistentVolume {
            let mut v = json!({"metadata": {"name": "pv1", "finalizers": finalizers}, "status": {"phase": phase}});
            if deleting {
                v["metadata"]["deletionTimestamp"] = json!("2020-01-01T00:00:00Z");
            }
            serde_json::from_value(v).unwrap()
        };
        let protected = json!([PV_PROTECTION]);
        assert_eq!(
            finalizers(&volume(json!([]), false, "Available")),
            Some(vec![PV_PROTECTION.to_owned()])
        );
        assert_eq!(finalizers(&volume(protected.clone(), false, "Bound")), None);
        assert_eq!(finalizers(&volume(protected.clone(), true, "Bound")), None);
        assert_eq!(
            finalizers(&volume(json!([PV_PROTECTION, "other"]), true, "Released")),
            Some(vec!["other".to_owned()])
        );
    }
}
