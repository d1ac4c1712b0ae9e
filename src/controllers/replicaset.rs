//! The ReplicaSet controller: keeps `spec.replicas` pods matching each ReplicaSet's selector
//! running, creating them from the template (owned by the ReplicaSet) or deleting extras, adopts
//! orphans its selector matches, and writes the ReplicaSet's status. Like kube-controller-manager's,
//! it remembers what it has asked for ("expectations") and does not act on a ReplicaSet again
//! until its own creates and deletes have shown up, so a lagging cache never doubles a scale-up.
//!
//! The controller is generic over the kind it keeps replicas of ([`Replicated`]), as upstream's
//! ReplicationManager is the ReplicaSet controller run over ReplicationControllers through a
//! conversion: [`ReplicaSetController`] for ReplicaSets, and
//! [`super::replication::ReplicationManager`] for ReplicationControllers. What differs between
//! the two is what [`Replicated`] says (the selector's form, the names); the pods, owner
//! references, events, hops and status are one code path.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use super::expectations::Expectations;
use super::workqueue::{Action, Key, WorkQueue, run_workers};
use super::{Context, api_message, event};
use crate::apimachinery::pods::{
    controller_ref, controller_uid, is_active, is_available, is_ready, until_available,
};
use crate::flow::{Flow, FlowEvent};
use crate::informers::{BY_OWNER, Change, Informer, ORPHANS, Watched};

/// The most pods created or deleted in one pass (upstream's `BurstReplicas`).
const BURST: usize = 500;
/// How many owners are reconciled at once (upstream's `--concurrent-replicaset-syncs`, and
/// `--concurrent-rc-syncs`: both 5).
const WORKERS: usize = 5;
/// The condition a failed create or delete sets (`ReplicaSetReplicaFailure`, and the RC's
/// `ReplicationControllerReplicaFailure`).
const REPLICA_FAILURE: &str = "ReplicaFailure";

/// A kind whose objects keep a number of pods from a template: what the controller reads of
/// one, as upstream's RC-to-ReplicaSet conversion gives it the RS controller.
pub trait Replicated:
    Watched + serde::Serialize + kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
{
    /// The controller's name (`replicaset`): its client is `controller/<name>`, and its hops
    /// come from there.
    const CONTROLLER: &'static str;
    /// Its work queue's name (upstream's: `replicaset`, `replicationmanager`).
    const QUEUE: &'static str;
    /// The component its Events name (`replicaset-controller`).
    const EVENT_SOURCE: &'static str;

    /// Whether the selector selects a pod with `labels` (an empty selector selects nothing).
    fn selects(&self, labels: &BTreeMap<String, String>) -> bool;
    /// `spec.replicas` (1 when unset).
    fn replicas(&self) -> i32;
    /// `spec.minReadySeconds`.
    fn min_ready_seconds(&self) -> i32;
    /// `spec.template`.
    fn template(&self) -> Option<&PodTemplateSpec>;
    /// The status, in the ReplicaSet's form (the two have the same fields).
    fn replica_status(&self) -> ReplicaSetStatus;
}

impl Replicated for ReplicaSet {
    const CONTROLLER: &'static str = "replicaset";
    const QUEUE: &'static str = "replicaset";
    const EVENT_SOURCE: &'static str = "replicaset-controller";

    fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.spec
            .as_ref()
            .is_some_and(|s| crate::apimachinery::labels::controller_selects(&s.selector, labels))
    }

    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }

    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }

    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().and_then(|s| s.template.as_ref())
    }

    fn replica_status(&self) -> ReplicaSetStatus {
        self.status.clone().unwrap_or_default()
    }
}

/// The ReplicaSet controller over ReplicaSets.
pub type ReplicaSetController = ReplicaController<ReplicaSet>;

/// The controller of one [`Replicated`] kind; runs until its task is aborted.
pub struct ReplicaController<K: Replicated> {
    client: kube::Client,
    flow: Flow,
    owners: Informer<K>,
    pods: Informer<Pod>,
    queue: WorkQueue,
    expectations: Expectations,
}

fn selects<K: Replicated>(owner: &K, pod: &Pod) -> bool {
    let empty = BTreeMap::new();
    owner.selects(pod.metadata.labels.as_ref().unwrap_or(&empty))
}

/// The key of the owner of kind `K` that controls `pod`, if it is one the cache knows (same
/// uid).
fn owner_key<K: Replicated>(owners: &Informer<K>, pod: &Pod) -> Option<Key> {
    let owner = controller_ref(&pod.metadata)?;
    if owner.kind != K::kind(&()) {
        return None;
    }
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let found = owners.get(namespace, &owner.name)?;
    (found.meta().uid.as_deref() == Some(owner.uid.as_str())).then(|| Key::of(&*found))
}

/// Queues every owner in the orphan's namespace whose selector matches it (one may adopt it).
fn enqueue_adopters<K: Replicated>(owners: &Informer<K>, queue: &WorkQueue, pod: &Pod) {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    for owner in owners.list_namespace(namespace) {
        if selects(&*owner, pod) {
            queue.add(Key::of(&*owner));
        }
    }
}

/// The controller owner reference of a pod of `owner`.
fn owner_reference<K: Replicated>(name: &str, uid: &str) -> Value {
    json!({"apiVersion": K::api_version(&()), "kind": K::kind(&()), "name": name, "uid": uid, "controller": true, "blockOwnerDeletion": true})
}

/// What went wrong creating or deleting pods in one pass: upstream's `manageReplicas` error,
/// which the `ReplicaFailure` condition reports.
struct ManageFailure {
    /// `FailedCreate` or `FailedDelete`.
    reason: &'static str,
    /// The API server's message.
    message: String,
}

/// Upstream's `calculateStatus`: the counts of the active pods the owner controls, and the
/// `ReplicaFailure` condition set when a create or delete failed (kept while failures go on)
/// and removed once a pass goes through. `now` stamps a new condition and decides
/// availability.
fn calculate_status<K: Replicated>(
    owner: &K,
    active: &[&Pod],
    failure: Option<&ManageFailure>,
    now: jiff::Timestamp,
) -> ReplicaSetStatus {
    let mut status = owner.replica_status();
    let template_labels = owner
        .template()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let min_ready = i64::from(owner.min_ready_seconds());
    let fully_labeled = active
        .iter()
        .filter(|p| {
            let labels = p.metadata.labels.as_ref();
            template_labels
                .iter()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        })
        .count();
    let ready = active.iter().filter(|p| is_ready(p)).count();
    let available = active
        .iter()
        .filter(|p| is_available(p, min_ready, now))
        .count();
    let has_failure = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == REPLICA_FAILURE);
    match failure {
        Some(failure) if !has_failure => {
            status
                .conditions
                .get_or_insert_with(Vec::new)
                .push(ReplicaSetCondition {
                    type_: REPLICA_FAILURE.to_owned(),
                    status: "True".to_owned(),
                    reason: Some(failure.reason.to_owned()),
                    message: Some(failure.message.clone()),
                    // metav1.Time is whole seconds on the wire: stored, it reads back so.
                    last_transition_time: jiff::Timestamp::from_second(now.as_second())
                        .ok()
                        .map(Time),
                });
        }
        None if has_failure => {
            let conditions = status.conditions.take().unwrap_or_default();
            let kept: Vec<ReplicaSetCondition> = conditions
                .into_iter()
                .filter(|c| c.type_ != REPLICA_FAILURE)
                .collect();
            status.conditions = (!kept.is_empty()).then_some(kept);
        }
        _ => {}
    }
    status.replicas = active.len() as i32;
    status.fully_labeled_replicas = Some(fully_labeled as i32);
    status.ready_replicas = Some(ready as i32);
    status.available_replicas = Some(available as i32);
    status.observed_generation = owner.meta().generation;
    status
}

/// The merge patch that writes `new` over `old`: the whole status, and `conditions: null` when
/// the last condition went (a merge patch leaves out what it does not name).
fn status_patch(old: &ReplicaSetStatus, new: &ReplicaSetStatus) -> Value {
    let mut status = serde_json::to_value(new).unwrap_or_else(|_| json!({}));
    if new.conditions.is_none() && old.conditions.is_some() {
        status["conditions"] = Value::Null;
    }
    json!({ "status": status })
}

impl<K: Replicated> ReplicaController<K> {
    /// A controller on the shared informers of `ctx`, writing as `controller/<K::CONTROLLER>`.
    pub fn new(ctx: &Context) -> Self {
        let owners = ctx.factory.informer::<K>();
        let pods = ctx.factory.informer::<Pod>();
        let queue = WorkQueue::new(K::QUEUE);
        let expectations = Expectations::default();
        {
            let (queue, expectations) = (queue.clone(), expectations.clone());
            owners.add_handler(move |change| {
                crate::controllers::owner_changed(&queue, &expectations, change)
            });
        }
        {
            let (owners, queue, expectations) =
                (owners.clone(), queue.clone(), expectations.clone());
            pods.add_handler(move |change| {
                let name = |p: &Pod| p.metadata.name.clone().unwrap_or_default();
                match change {
                    // Upstream's addPod / updatePod / deletePod: a pod that shows up is an
                    // observed creation, one that goes (or starts terminating) an observed
                    // deletion; either way its owner looks again, and an orphan's candidates do.
                    Change::Add(pod) => match owner_key(&owners, pod) {
                        Some(key) => {
                            if pod.metadata.deletion_timestamp.is_some() {
                                expectations.deletion_observed(&key.to_string(), &name(pod));
                            } else {
                                expectations.creation_observed(&key.to_string());
                            }
                            queue.add(key);
                        }
                        None if controller_ref(&pod.metadata).is_none() => {
                            enqueue_adopters(&owners, &queue, pod)
                        }
                        None => {}
                    },
                    Change::Update { old, new } => {
                        let old_key = owner_key(&owners, old);
                        let new_key = owner_key(&owners, new);
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
                                enqueue_adopters(&owners, &queue, new)
                            }
                            None => {}
                        }
                    }
                    Change::Delete(pod) => {
                        if let Some(key) = owner_key(&owners, pod) {
                            expectations.deletion_observed(&key.to_string(), &name(pod));
                            queue.add(key);
                        }
                    }
                }
            });
        }
        ReplicaController {
            client: ctx.client(K::CONTROLLER),
            flow: ctx.flow.clone(),
            owners,
            pods,
            queue,
            expectations,
        }
    }

    /// The flow event of a hop this controller takes about `owner`.
    fn hop(&self, verb: &str, owner: &K, detail: String) -> FlowEvent {
        let meta = owner.meta();
        let mut e = FlowEvent::new(format!("controller/{}", K::CONTROLLER), "apiserver", verb)
            .object(
                &K::kind(&()),
                meta.namespace.as_deref().unwrap_or_default(),
                meta.name.as_deref().unwrap_or_default(),
            )
            .detail(detail);
        e.uid = meta.uid.clone().unwrap_or_default();
        e
    }

    /// Records an Event about `owner` as this controller.
    async fn record(&self, owner: &K, kind: &str, reason: &str, message: &str) {
        event(&self.client, owner, K::EVENT_SOURCE, kind, reason, message).await;
    }

    /// Waits for the caches, then reconciles one owner per key, forever.
    pub async fn run(self) {
        self.owners.synced().await;
        self.pods.synced().await;
        run_workers(self.queue.clone(), WORKERS, |key| self.sync(key)).await;
    }

    /// Reconciles the owner `key` from the caches.
    async fn sync(&self, key: Key) -> Result<Action, std::convert::Infallible> {
        let Some(owner) = self.owners.get(&key.namespace, &key.name) else {
            self.expectations.forget(&key.to_string());
            return Ok(Action::Done);
        };
        if !self.expectations.satisfied(&key.to_string()) {
            // Its pods' events wake it; in case one is lost, look again when they time out.
            return Ok(Action::RequeueAfter(super::expectations::TIMEOUT));
        }
        Ok(self.reconcile(&owner, &key).await)
    }

    /// Creates the missing pods from the template, in batches of 1, 2, 4, ... created
    /// concurrently (upstream's slow start), stopping at the first batch with a failure; at
    /// most [`BURST`] per pass. The first failure is what the pass reports.
    async fn create_pods(
        &self,
        owner: &K,
        key: &str,
        missing: usize,
        pods_api: &Api<Pod>,
    ) -> Option<ManageFailure> {
        let meta = owner.meta();
        let (name, uid) = (
            meta.name.clone().unwrap_or_default(),
            meta.uid.clone().unwrap_or_default(),
        );
        let template = owner.template().cloned().unwrap_or_default();
        let mut metadata = template.metadata.unwrap_or_default();
        metadata.name = None;
        metadata.generate_name = Some(format!("{name}-"));
        metadata.namespace = meta.namespace.clone();
        metadata.owner_references = Some(vec![
            serde_json::from_value(owner_reference::<K>(&name, &uid)).expect("valid"),
        ]);
        let pod = Pod {
            metadata,
            spec: template.spec,
            status: None,
        };
        let params = PostParams::default();
        let mut remaining = missing.min(BURST);
        let mut batch = 1;
        while remaining > 0 {
            let size = batch.min(remaining);
            remaining -= size;
            batch *= 2;
            self.expectations.expect_creations(key, size);
            let results =
                futures::future::join_all((0..size).map(|_| pods_api.create(&params, &pod))).await;
            let mut failure = None;
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
                        self.expectations.creation_observed(key);
                        let message = api_message(&error);
                        failure.get_or_insert(ManageFailure {
                            reason: "FailedCreate",
                            message: message.clone(),
                        });
                        (
                            "FailedCreate",
                            "Warning",
                            format!("Error creating: {message}"),
                        )
                    }
                });
            }
            futures::future::join_all(
                outcomes
                    .iter()
                    .map(|(reason, kind, message)| self.record(owner, kind, reason, message)),
            )
            .await;
            if failure.is_some() {
                return failure;
            }
        }
        None
    }

    /// Deletes `extra` of the owner's pods, the least far along first: unscheduled, then not
    /// ready, then the newest. A pod already gone is no failure.
    async fn delete_pods(
        &self,
        owner: &K,
        key: &str,
        mut owned: Vec<&Pod>,
        extra: usize,
        pods_api: &Api<Pod>,
    ) -> Option<ManageFailure> {
        owned.sort_by_key(|p| {
            let scheduled = p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
            (
                scheduled,
                is_ready(p),
                std::cmp::Reverse(p.metadata.creation_timestamp.clone()),
            )
        });
        let doomed: Vec<String> = owned
            .iter()
            .take(extra.min(BURST))
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        self.expectations
            .expect_deletions(key, doomed.iter().cloned());
        let mut failure = None;
        for pod_name in doomed {
            match pods_api.delete(&pod_name, &DeleteParams::default()).await {
                Ok(_) => {
                    self.record(
                        owner,
                        "Normal",
                        "SuccessfulDelete",
                        &format!("Deleted pod: {pod_name}"),
                    )
                    .await
                }
                Err(error) => {
                    // It will not go.
                    self.expectations.deletion_observed(key, &pod_name);
                    if !matches!(&error, kube::Error::Api(s) if s.code == 404) {
                        let message = api_message(&error);
                        self.record(
                            owner,
                            "Warning",
                            "FailedDelete",
                            &format!("Error deleting: {message}"),
                        )
                        .await;
                        failure.get_or_insert(ManageFailure {
                            reason: "FailedDelete",
                            message,
                        });
                    }
                }
            }
        }
        failure
    }

    /// Brings one owner's pods to its `replicas` and writes its status; when to look again.
    async fn reconcile(&self, owner: &K, key: &Key) -> Action {
        let meta = owner.meta();
        let (Some(namespace), Some(name), Some(uid)) =
            (meta.namespace.clone(), meta.name.clone(), meta.uid.clone())
        else {
            return Action::Done;
        };
        if meta.deletion_timestamp.is_some() {
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
        for orphan in in_namespace
            .iter()
            .filter(|p| controller_uid(&p.metadata).is_none() && is_active(p) && selects(owner, p))
        {
            let adopt =
                json!({"metadata": {"ownerReferences": [owner_reference::<K>(&name, &uid)]}});
            if let Some(pod_name) = &orphan.metadata.name {
                let _ = pods_api
                    .patch(pod_name, &PatchParams::default(), &Patch::Strategic(adopt))
                    .await;
            }
        }
        // Release the pods whose labels no longer match (`kubectl label pod x app-`): they are
        // no longer this owner's, and it replaces them.
        for stray in in_namespace
            .iter()
            .filter(|p| controller_uid(&p.metadata) == Some(uid.as_str()) && !selects(owner, p))
        {
            let (Some(pod_name), Some(pod_uid)) = (&stray.metadata.name, &stray.metadata.uid)
            else {
                continue;
            };
            self.flow
                .gate_emit(self.hop(
                    "RELEASE",
                    owner,
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
        let owned: Vec<&Pod> = in_namespace
            .iter()
            .copied()
            .filter(|p| {
                controller_uid(&p.metadata) == Some(uid.as_str())
                    && is_active(p)
                    && selects(owner, p)
            })
            .collect();
        let wanted = owner.replicas().max(0) as usize;
        let failure = if owned.len() < wanted {
            let missing = wanted - owned.len();
            self.flow
                .gate_emit(self.hop(
                    "SCALE UP",
                    owner,
                    format!("{} of {wanted} pods exist: creating {missing}", owned.len()),
                ))
                .await;
            self.create_pods(owner, &key, missing, &pods_api).await
        } else if owned.len() > wanted {
            let extra = owned.len() - wanted;
            self.flow
                .gate_emit(self.hop(
                    "SCALE DOWN",
                    owner,
                    format!("{} of {wanted} pods exist: deleting {extra}", owned.len()),
                ))
                .await;
            self.delete_pods(owner, &key, owned.clone(), extra, &pods_api)
                .await
        } else {
            None
        };
        // Status, written only when it changes.
        let now = jiff::Timestamp::now();
        let current = owner.replica_status();
        let status = calculate_status(owner, &owned, failure.as_ref(), now);
        if status != current {
            let owners: Api<K> = Api::namespaced(self.client.clone(), &namespace);
            let _ = owners
                .patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(status_patch(&current, &status)),
                )
                .await;
        }
        // A ready pod that is not yet available becomes so after minReadySeconds: look then.
        let min_ready = i64::from(owner.min_ready_seconds());
        let next = owned
            .iter()
            .filter_map(|p| until_available(p, min_ready, now))
            .min();
        next.map_or(Action::Done, Action::RequeueAfter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ReplicationController;

    fn pod(labels: Value, ready: bool) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default", "labels": labels},
            "status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": if ready { "True" } else { "False" },
                 "lastTransitionTime": "2020-01-01T00:00:00Z"}]},
        }))
        .unwrap()
    }

    fn rc(status: Value) -> ReplicationController {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "generation": 3},
            "spec": {"replicas": 3, "selector": {"app": "web"},
                     "template": {"metadata": {"labels": {"app": "web", "tier": "front"}}}},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn status_counts_fully_labeled_ready_and_available_pods() {
        let owner = rc(json!({"replicas": 0}));
        let full = pod(json!({"app": "web", "tier": "front", "extra": "x"}), true);
        let partial = pod(json!({"app": "web"}), false);
        let now = jiff::Timestamp::now();
        let status = calculate_status(&owner, &[&full, &partial], None, now);
        assert_eq!(status.replicas, 2);
        assert_eq!(status.fully_labeled_replicas, Some(1));
        assert_eq!(status.ready_replicas, Some(1));
        assert_eq!(status.available_replicas, Some(1));
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(status.conditions, None);
    }

    #[test]
    fn a_failed_create_sets_replica_failure_until_a_pass_goes_through() {
        let owner = rc(json!({"replicas": 0}));
        let failure = ManageFailure {
            reason: "FailedCreate",
            message: "pods \"web-x\" is forbidden: exceeded quota: q".into(),
        };
        let now = jiff::Timestamp::now();
        let failed = calculate_status(&owner, &[], Some(&failure), now);
        let condition = &failed.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (
                condition.type_.as_str(),
                condition.status.as_str(),
                condition.reason.as_deref()
            ),
            ("ReplicaFailure", "True", Some("FailedCreate"))
        );
        assert_eq!(condition.message.as_deref(), Some(failure.message.as_str()));
        // Kept as it was (its time too) while failures go on.
        let owner = rc(serde_json::to_value(&failed).unwrap());
        let later = now + jiff::SignedDuration::from_secs(60);
        let still = calculate_status(&owner, &[], Some(&failure), later);
        assert_eq!(still.conditions, failed.conditions);
        // Gone once a pass has no failure, and the patch says so.
        let cleared = calculate_status(&owner, &[], None, later);
        assert_eq!(cleared.conditions, None);
        let patch = status_patch(&owner.replica_status(), &cleared);
        assert_eq!(patch["status"]["conditions"], Value::Null);
        assert!(
            patch["status"]
                .as_object()
                .unwrap()
                .contains_key("conditions")
        );
    }

    #[test]
    fn pods_are_owned_as_their_kind_says() {
        assert_eq!(
            owner_reference::<ReplicaSet>("web", "u")["apiVersion"],
            "apps/v1"
        );
        let rc = owner_reference::<ReplicationController>("web", "u");
        assert_eq!(
            (&rc["apiVersion"], &rc["kind"]),
            (&json!("v1"), &json!("ReplicationController"))
        );
    }
}
