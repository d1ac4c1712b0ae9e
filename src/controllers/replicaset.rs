//! The ReplicaSet controller: keeps `spec.replicas` pods matching each ReplicaSet's selector
//! running, creating them from the template (owned by the ReplicaSet) or deleting extras, adopts
//! orphans its selector matches, and writes the ReplicaSet's status. Like kube-controller-manager's,
//! it remembers what it has asked for ("expectations") and does not act on a ReplicaSet again
//! until its own creates and deletes have shown up, so a lagging cache never doubles a scale-up.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::expectations::Expectations;
use super::workqueue::{Action, Key, WorkQueue, run_workers};
use super::{Context, event};
use crate::apimachinery::pods::{
    controller_ref, controller_uid, is_active, is_available, is_ready, until_available,
};
use crate::flow::{Flow, FlowEvent};
use crate::informers::{BY_OWNER, Change, Informer, ORPHANS};

const COMPONENT: &str = "controller/replicaset";
/// The most pods created or deleted in one pass (upstream's `BurstReplicas`).
const BURST: usize = 500;
/// How many ReplicaSets are reconciled at once (upstream's `--concurrent-replicaset-syncs`).
const WORKERS: usize = 5;

/// Whether the ReplicaSet's selector selects the pod (an empty selector selects nothing).
fn selector_matches(rs: &ReplicaSet, pod: &Pod) -> bool {
    let Some(selector) = rs.spec.as_ref().map(|s| &s.selector) else {
        return false;
    };
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    crate::apimachinery::labels::controller_selects(selector, &labels)
}

/// The ReplicaSet controller; runs until its task is aborted.
pub struct ReplicaSetController {
    client: kube::Client,
    flow: Flow,
    sets: Informer<ReplicaSet>,
    pods: Informer<Pod>,
    queue: WorkQueue,
    expectations: Expectations,
}

/// The key of the ReplicaSet that controls `pod`, if it is one the cache knows (same uid).
fn owner_key(sets: &Informer<ReplicaSet>, pod: &Pod) -> Option<Key> {
    let owner = controller_ref(&pod.metadata)?;
    if owner.kind != "ReplicaSet" {
        return None;
    }
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let rs = sets.get(namespace, &owner.name)?;
    (rs.metadata.uid.as_deref() == Some(owner.uid.as_str())).then(|| Key::of(&*rs))
}

/// Queues every ReplicaSet in the orphan's namespace whose selector matches it (one may adopt it).
fn enqueue_adopters(sets: &Informer<ReplicaSet>, queue: &WorkQueue, pod: &Pod) {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    for rs in sets.list_namespace(namespace) {
        if selector_matches(&rs, pod) {
            queue.add(Key::of(&*rs));
        }
    }
}

impl ReplicaSetController {
    /// A controller on the shared informers of `ctx`, writing as `controller/replicaset`.
    pub fn new(ctx: &Context) -> Self {
        let sets = ctx.factory.informer::<ReplicaSet>();
        let pods = ctx.factory.informer::<Pod>();
        let queue = WorkQueue::new("replicaset");
        let expectations = Expectations::default();
        {
            let (queue, expectations) = (queue.clone(), expectations.clone());
            sets.add_handler(move |change| {
                crate::controllers::owner_changed(&queue, &expectations, change)
            });
        }
        {
            let (sets, queue, expectations) = (sets.clone(), queue.clone(), expectations.clone());
            pods.add_handler(move |change| {
                let name = |p: &Pod| p.metadata.name.clone().unwrap_or_default();
                match change {
                    // Upstream's addPod / updatePod / deletePod: a pod that shows up is an
                    // observed creation, one that goes (or starts terminating) an observed
                    // deletion; either way its owner looks again, and an orphan's candidates do.
                    Change::Add(pod) => match owner_key(&sets, pod) {
                        Some(key) => {
                            if pod.metadata.deletion_timestamp.is_some() {
                                expectations.deletion_observed(&key.to_string(), &name(pod));
                            } else {
                                expectations.creation_observed(&key.to_string());
                            }
                            queue.add(key);
                        }
                        None if controller_ref(&pod.metadata).is_none() => {
                            enqueue_adopters(&sets, &queue, pod)
                        }
                        None => {}
                    },
                    Change::Update { old, new } => {
                        let old_key = owner_key(&sets, old);
                        let new_key = owner_key(&sets, new);
                        if let Some(key) = &new_key
                            && new.metadata.deletion_timestamp.is_some()
                            && old.metadata.deletion_timestamp.is_none()
                        {
                            expectations.deletion_observed(&key.to_string(), &name(new));
                        }
                        if old_key != new_key
                            && let Some(key) = old_key
                        {
                            queue.add(key);
                        }
                        match new_key {
                            Some(key) => queue.add(key),
                            None if controller_ref(&new.metadata).is_none()
                                && (old.metadata.labels != new.metadata.labels
                                    || controller_ref(&old.metadata).is_some()) =>
                            {
                                enqueue_adopters(&sets, &queue, new)
                            }
                            None => {}
                        }
                    }
                    Change::Delete(pod) => {
                        if let Some(key) = owner_key(&sets, pod) {
                            expectations.deletion_observed(&key.to_string(), &name(pod));
                            queue.add(key);
                        }
                    }
                }
            });
        }
        ReplicaSetController {
            client: ctx.client("replicaset"),
            flow: ctx.flow.clone(),
            sets,
            pods,
            queue,
            expectations,
        }
    }

    /// The flow event of a hop this controller takes.
    fn hop(&self, verb: &str, rs: &ReplicaSet, detail: String) -> FlowEvent {
        let mut e = FlowEvent::new(COMPONENT, "apiserver", verb)
            .object(
                "ReplicaSet",
                rs.metadata.namespace.as_deref().unwrap_or_default(),
                rs.metadata.name.as_deref().unwrap_or_default(),
            )
            .detail(detail);
        e.uid = rs.metadata.uid.clone().unwrap_or_default();
        e
    }

    /// Waits for the caches, then reconciles one ReplicaSet per key, forever.
    pub async fn run(self) {
        self.sets.synced().await;
        self.pods.synced().await;
        run_workers(self.queue.clone(), WORKERS, |key| self.sync(key)).await;
    }

    /// Reconciles the ReplicaSet `key` from the caches.
    async fn sync(&self, key: Key) -> Result<Action, std::convert::Infallible> {
        let Some(rs) = self.sets.get(&key.namespace, &key.name) else {
            self.expectations.forget(&key.to_string());
            return Ok(Action::Done);
        };
        if !self.expectations.satisfied(&key.to_string()) {
            // Its pods' events wake it; in case one is lost, look again when they time out.
            return Ok(Action::RequeueAfter(super::expectations::TIMEOUT));
        }
        Ok(self.reconcile(&rs, &key).await)
    }

    /// Brings one ReplicaSet's pods to its `replicas` and writes its status; when to look again.
    async fn reconcile(&self, rs: &ReplicaSet, key: &Key) -> Action {
        let (Some(namespace), Some(name), Some(uid)) = (
            rs.metadata.namespace.clone(),
            rs.metadata.name.clone(),
            rs.metadata.uid.clone(),
        ) else {
            return Action::Done;
        };
        if rs.metadata.deletion_timestamp.is_some() {
            return Action::Done;
        }
        let key = key.to_string();
        // Its own pods and the namespace's orphans: the only pods it may act on.
        let candidates: Vec<Arc<Pod>> = self
            .pods
            .by_index(BY_OWNER, &uid)
            .into_iter()
            .chain(self.pods.by_index(ORPHANS, &namespace))
            .collect();
        let in_namespace: Vec<&Pod> = candidates.iter().map(|p| &**p).collect();
        let pods_api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        // Adopt orphans the selector matches.
        for orphan in in_namespace.iter().filter(|p| {
            controller_uid(&p.metadata).is_none() && is_active(p) && selector_matches(rs, p)
        }) {
            let owner = json!({"metadata": {"ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name, "uid": uid, "controller": true, "blockOwnerDeletion": true}]}});
            if let Some(pod_name) = &orphan.metadata.name {
                let _ = pods_api
                    .patch(pod_name, &PatchParams::default(), &Patch::Strategic(owner))
                    .await;
            }
        }
        // Release the pods whose labels no longer match (`kubectl label pod x app-`): they are
        // no longer this ReplicaSet's, and it replaces them.
        for stray in in_namespace.iter().filter(|p| {
            controller_uid(&p.metadata) == Some(uid.as_str()) && !selector_matches(rs, p)
        }) {
            let (Some(pod_name), Some(pod_uid)) = (&stray.metadata.name, &stray.metadata.uid)
            else {
                continue;
            };
            self.flow
                .gate_emit(self.hop(
                    "RELEASE",
                    rs,
                    format!("pod {pod_name} no longer matches the selector: releasing it"),
                ))
                .await;
            let release = json!({"metadata": {"ownerReferences": [{"$patch": "delete", "uid": uid}], "uid": pod_uid}});
            let _ = pods_api
                .patch(
                    pod_name,
                    &PatchParams::default(),
                    &Patch::Strategic(release),
                )
                .await;
        }
        let mut owned: Vec<&Pod> = in_namespace
            .iter()
            .copied()
            .filter(|p| {
                controller_uid(&p.metadata) == Some(uid.as_str())
                    && is_active(p)
                    && selector_matches(rs, p)
            })
            .collect();
        let wanted = rs
            .spec
            .as_ref()
            .and_then(|s| s.replicas)
            .unwrap_or(1)
            .max(0) as usize;
        if owned.len() < wanted {
            let missing = wanted - owned.len();
            self.flow
                .gate_emit(self.hop(
                    "SCALE UP",
                    rs,
                    format!("{} of {wanted} pods exist: creating {missing}", owned.len()),
                ))
                .await;
            let template = rs
                .spec
                .as_ref()
                .and_then(|s| s.template.clone())
                .unwrap_or_default();
            let mut metadata = template.metadata.unwrap_or_default();
            metadata.name = None;
            metadata.generate_name = Some(format!("{name}-"));
            metadata.namespace = Some(namespace.clone());
            metadata.owner_references = Some(vec![serde_json::from_value(json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name, "uid": uid, "controller": true, "blockOwnerDeletion": true})).expect("valid")]);
            let pod = Pod {
                metadata,
                spec: template.spec,
                status: None,
            };
            // Slow start, as upstream: batches of 1, 2, 4, ... created concurrently, stopping
            // at the first batch with a failure; at most BURST per pass.
            let params = PostParams::default();
            let mut remaining = missing.min(BURST);
            let mut batch = 1;
            while remaining > 0 {
                let size = batch.min(remaining);
                remaining -= size;
                batch *= 2;
                self.expectations.expect_creations(&key, size);
                let results =
                    futures::future::join_all((0..size).map(|_| pods_api.create(&params, &pod)))
                        .await;
                let mut failed = false;
                let mut outcomes = Vec::new();
                for result in results {
                    outcomes.push(match result {
                        Ok(created) => {
                            let pod_name = created.metadata.name.unwrap_or_default();
                            (
                                "SuccessfulCreate",
                                "Normal",
                                format!("Created pod: {pod_name}"),
                            )
                        }
                        Err(error) => {
                            // It will never show up.
                            self.expectations.creation_observed(&key);
                            failed = true;
                            (
                                "FailedCreate",
                                "Warning",
                                format!("Error creating: {error}"),
                            )
                        }
                    });
                }
                futures::future::join_all(outcomes.iter().map(|(reason, kind, message)| {
                    event(
                        &self.client,
                        rs,
                        "replicaset-controller",
                        kind,
                        reason,
                        message,
                    )
                }))
                .await;
                if failed {
                    break;
                }
            }
        } else if owned.len() > wanted {
            // Delete the least far along first: unscheduled, then not ready, then the newest.
            owned.sort_by_key(|p| {
                let scheduled = p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
                (
                    scheduled,
                    is_ready(p),
                    std::cmp::Reverse(p.metadata.creation_timestamp.clone()),
                )
            });
            let extra = owned.len() - wanted;
            self.flow
                .gate_emit(self.hop(
                    "SCALE DOWN",
                    rs,
                    format!("{} of {wanted} pods exist: deleting {extra}", owned.len()),
                ))
                .await;
            let doomed: Vec<String> = owned
                .iter()
                .take(extra)
                .filter_map(|p| p.metadata.name.clone())
                .collect();
            self.expectations
                .expect_deletions(&key, doomed.iter().cloned());
            for pod_name in doomed {
                if pods_api
                    .delete(&pod_name, &DeleteParams::default())
                    .await
                    .is_err()
                {
                    // It will not go.
                    self.expectations.deletion_observed(&key, &pod_name);
                } else {
                    event(
                        &self.client,
                        rs,
                        "replicaset-controller",
                        "Normal",
                        "SuccessfulDelete",
                        &format!("Deleted pod: {pod_name}"),
                    )
                    .await;
                }
            }
        }
        // Status, written only when it changes.
        let replicas = owned.len().min(wanted.max(owned.len())) as i32;
        let ready = owned.iter().filter(|p| is_ready(p)).count() as i32;
        let min_ready = rs
            .spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0);
        let now = jiff::Timestamp::now();
        let available = owned
            .iter()
            .filter(|p| is_available(p, i64::from(min_ready), now))
            .count() as i32;
        // A ready pod that is not yet available becomes so after minReadySeconds: look then.
        let next = owned
            .iter()
            .filter_map(|p| until_available(p, i64::from(min_ready), now))
            .min();
        let status = json!({
            "replicas": replicas,
            "fullyLabeledReplicas": replicas,
            "readyReplicas": ready,
            "availableReplicas": available,
            "observedGeneration": rs.metadata.generation,
        });
        let current = rs.status.as_ref().map(|s| {
            json!({
                "replicas": s.replicas,
                "fullyLabeledReplicas": s.fully_labeled_replicas.unwrap_or(0),
                "readyReplicas": s.ready_replicas.unwrap_or(0),
                "availableReplicas": s.available_replicas.unwrap_or(0),
                "observedGeneration": s.observed_generation,
            })
        });
        if current.as_ref() != Some(&status) {
            let sets: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &namespace);
            let _ = sets
                .patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": status})),
                )
                .await;
        }
        next.map_or(Action::Done, Action::RequeueAfter)
    }
}
