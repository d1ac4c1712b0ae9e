//! The PVC protection controller, kube-controller-manager's `pvc-protection`: a claim carries
//! the `kubernetes.io/pvc-protection` finalizer (the StorageObjectInUseProtection admission
//! plugin puts it on every new claim; this controller adds it where it is missing), and a
//! deleted claim keeps it, staying `Terminating`, until no scheduled pod names the claim in its
//! volumes. Then the finalizer goes and the API server removes the claim.
//!
//! Whether a pod uses a claim is read from the shared pod cache (indexed by claim); a claim the
//! cache finds unused is checked again against a live list of its namespace's pods before its
//! finalizer goes, as upstream does, so a cache that is behind never lets a claim in use go.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams, PostParams};

use super::Context;
use super::persistentvolume::{BY_CLAIM, claims_of};
use super::workqueue::{Action, Key, WorkQueue, run_workers};
use crate::apimachinery::storage::PVC_PROTECTION;
use crate::flow::{Flow, FlowEvent};
use crate::informers::{Change, Informer};

/// The controller's name.
pub const NAME: &str = "pvc-protection";

/// What went wrong reconciling a claim.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a request.
    #[error("{what}: {source}")]
    Api {
        /// What was being done.
        what: String,
        /// The error.
        source: kube::Error,
    },
}

/// Whether `pod` uses claim `name` (upstream's `podUsesPVC`): only a scheduled pod counts,
/// since the kubelet starts no pod whose claim is being deleted.
pub fn pod_uses(pod: &Pod, name: &str) -> bool {
    let spec = pod.spec.as_ref();
    spec.and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty())
        && spec
            .into_iter()
            .flat_map(|s| s.volumes.iter().flatten())
            .any(|v| {
                v.persistent_volume_claim
                    .as_ref()
                    .is_some_and(|c| c.claim_name == name)
            })
}

/// What the controller does about a claim.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Add the finalizer.
    Protect,
    /// Remove the finalizer: the claim is being deleted and no pod uses it.
    Release,
    /// Nothing.
    Keep,
}

/// The decision for `claim`, given whether a pod uses it.
pub fn decide(claim: &PersistentVolumeClaim, in_use: bool) -> Decision {
    let has = claim
        .metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == PVC_PROTECTION);
    let deleting = claim.metadata.deletion_timestamp.is_some();
    match (deleting, has) {
        (false, false) => Decision::Protect,
        (true, true) if !in_use => Decision::Release,
        _ => Decision::Keep,
    }
}

/// The PVC protection controller.
pub struct PvcProtectionController {
    client: kube::Client,
    flow: Flow,
    claims: Informer<PersistentVolumeClaim>,
    pods: Informer<Pod>,
    queue: WorkQueue<Key>,
}

impl PvcProtectionController {
    /// Takes the claim and pod informers from `ctx`: a claim's change queues it, a pod's change
    /// queues the claims it names.
    pub fn new(ctx: &Context) -> Self {
        let claims = ctx.factory.informer::<PersistentVolumeClaim>();
        let pods = ctx.factory.informer::<Pod>();
        pods.add_index(BY_CLAIM, claims_of);
        let queue = WorkQueue::new(NAME);
        {
            let queue = queue.clone();
            claims.add_handler(move |change| {
                if !matches!(change, Change::Delete(_)) {
                    queue.add(Key::of(change.object()));
                }
            });
        }
        {
            let queue = queue.clone();
            pods.add_handler(move |change| {
                let mut claims = claims_of(change.object());
                if let Change::Update { old, .. } = &change {
                    claims.extend(claims_of(old));
                }
                for claim in claims {
                    if let Some((namespace, name)) = claim.split_once('/') {
                        queue.add(Key::new(namespace, name));
                    }
                }
            });
        }
        PvcProtectionController {
            client: ctx.client(NAME),
            flow: ctx.flow.clone(),
            claims,
            pods,
            queue,
        }
    }

    /// Waits for the caches, then reconciles claims one at a time.
    pub async fn run(self) {
        self.claims.synced().await;
        self.pods.synced().await;
        let this = Arc::new(self);
        run_workers(this.queue.clone(), 1, |key| {
            let this = this.clone();
            async move { this.sync(key).await }
        })
        .await;
    }

    /// Whether a pod uses the claim: the cache first, then (when it says no) a live list.
    async fn in_use(&self, key: &Key) -> Result<bool, Error> {
        let cached = self.pods.by_index(BY_CLAIM, &key.to_string());
        if cached.iter().any(|p| pod_uses(p, &key.name)) {
            return Ok(true);
        }
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &key.namespace);
        let listed = pods
            .list(&ListParams::default())
            .await
            .map_err(|source| Error::Api {
                what: format!("live list of pods in {}", key.namespace),
                source,
            })?;
        Ok(listed.items.iter().any(|p| pod_uses(p, &key.name)))
    }

    async fn sync(&self, key: Key) -> Result<Action, Error> {
        let Some(claim) = self.claims.get(&key.namespace, &key.name) else {
            return Ok(Action::Done);
        };
        let deleting = claim.metadata.deletion_timestamp.is_some();
        let in_use = deleting && self.in_use(&key).await?;
        let (verb, detail) = match decide(&claim, in_use) {
            Decision::Keep => return Ok(Action::Done),
            Decision::Protect => ("PROTECT", format!("add finalizer {PVC_PROTECTION}")),
            Decision::Release => (
                "RELEASE",
                format!("no pod uses the claim: remove finalizer {PVC_PROTECTION}"),
            ),
        };
        let mut updated = (*claim).clone();
        let finalizers = updated.metadata.finalizers.get_or_insert_default();
        if deleting {
            finalizers.retain(|f| f != PVC_PROTECTION);
        } else {
            finalizers.push(PVC_PROTECTION.to_owned());
        }
        self.flow
            .gate_emit(
                FlowEvent::new(format!("controller/{NAME}"), "apiserver", verb)
                    .object("PersistentVolumeClaim", &key.namespace, &key.name)
                    .detail(detail),
            )
            .await;
        let claims: Api<PersistentVolumeClaim> =
            Api::namespaced(self.client.clone(), &key.namespace);
        match claims
            .replace(&key.name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => Ok(Action::Done),
            // Gone meanwhile: nothing left to protect.
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(Action::Done),
            Err(source) => Err(Error::Api {
                what: format!("update the finalizers of claim {key}"),
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
    fn a_claim_goes_only_when_no_scheduled_pod_uses_it() {
        let claim = |finalizers: serde_json::Value, deleting: bool| -> PersistentVolumeClaim {
            let mut c = json!({"metadata": {"name": "data", "namespace": "default", "finalizers": finalizers}});
            if deleting {
                c["metadata"]["deletionTimestamp"] = json!("2020-01-01T00:00:00Z");
            }
            serde_json::from_value(c).unwrap()
        };
        let protected = json!([PVC_PROTECTION]);
        assert_eq!(decide(&claim(json!([]), false), false), Decision::Protect);
        assert_eq!(
            decide(&claim(protected.clone(), false), true),
            Decision::Keep
        );
        assert_eq!(
            decide(&claim(protected.clone(), true), true),
            Decision::Keep
        );
        assert_eq!(
            decide(&claim(protected.clone(), true), false),
            Decision::Release
        );
        assert_eq!(
            decide(&claim(json!(["other"]), true), false),
            Decision::Keep
        );

        let pod = |node: Option<&str>| -> Pod {
            serde_json::from_value(
                json!({"metadata": {"name": "p"}, "spec": {"nodeName": node, "containers": [],
                "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "data"}}]}}),
            )
            .unwrap()
        };
        assert!(pod_uses(&pod(Some("node-1")), "data"));
        assert!(!pod_uses(&pod(None), "data"), "not scheduled");
        assert!(!pod_uses(&pod(Some("node-1")), "other"));
    }
}
