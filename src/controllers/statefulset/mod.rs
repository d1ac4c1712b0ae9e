//! The StatefulSet controller, as kube-controller-manager's (`pkg/controller/statefulset`):
//! pods with stable names (`<set>-<ordinal>`), hostnames under the set's headless Service and
//! one PersistentVolumeClaim per template and ordinal, created in order and each only once the
//! one before is Running and Ready (`OrderedReady`) or all at once (`Parallel`), removed from the
//! highest ordinal down; a ControllerRevision per template, updated by `RollingUpdate` (highest
//! ordinal first, down to the partition) or `OnDelete`; and the status `kubectl rollout` reads.
//!
//! [`identity`] is what makes a pod the set's, [`revision`] its history, [`claims`] the claims'
//! retention policy and [`plan`] the decision of each pass; all pure.

pub mod claims;
pub mod identity;
pub mod plan;
pub mod revision;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::Context;
use super::event;
use super::expectations::{self, Expectations};
use super::workqueue::{Action, Key, WorkQueue, run_workers};
use crate::apimachinery::{labels, pods};
use crate::flow::{Flow, FlowEvent};
use crate::informers::{Change, Informer};
use identity::{is_member_of, is_terminating, name, new_controller_ref};
use plan::{Reason, Step};
use revision::UpdateRevision;

const COMPONENT: &str = "controller/statefulset";
/// The name its Events carry (`source.component`).
const EVENT_SOURCE: &str = "statefulset-controller";
/// Upstream's `--concurrent-statefulset-syncs` default.
const WORKERS: usize = 5;
/// How many differently-templated revisions may share a name before the controller gives up
/// for this pass (each collision bumps `status.collisionCount`).
const MAX_COLLISIONS: i32 = 10;

/// What a pass over a StatefulSet could not do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A write the API server refused.
    #[error("{what}: {source}")]
    Write {
        /// What was being written.
        what: String,
        /// The API server's answer.
        #[source]
        source: kube::Error,
    },
    /// A claim the pod needs is being deleted.
    #[error("pvc {0} is being deleted")]
    ClaimTerminating(String),
    /// Every revision name tried belonged to another template.
    #[error("{0} ControllerRevisions named alike hold other templates")]
    Collisions(i32),
}

fn write(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| Error::Write { what, source }
}

fn code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

fn already_exists(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists")
}

/// The StatefulSet controller; runs until its task is aborted.
pub struct StatefulSetController {
    client: kube::Client,
    flow: Flow,
    sets: Informer<StatefulSet>,
    pods: Informer<Pod>,
    revisions: Informer<ControllerRevision>,
    claims: Informer<PersistentVolumeClaim>,
    queue: WorkQueue,
    expectations: Expectations,
}

/// The key of the set that controls the pod, if one in the cache does.
fn owner_key(sets: &Informer<StatefulSet>, pod: &Pod) -> Option<Key> {
    let owner = pods::controller_ref(&pod.metadata)?;
    if owner.kind != "StatefulSet" || !owner.api_version.starts_with("apps/") {
        return None;
    }
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let set = sets.get(namespace, &owner.name)?;
    (set.metadata.uid.as_deref() == Some(owner.uid.as_str())).then(|| Key::of(&*set))
}

/// The sets of the pod's namespace whose selector selects it (an orphan's candidates).
fn selecting(sets: &Informer<StatefulSet>, pod: &Pod) -> Vec<Key> {
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    sets.list_namespace(pod.metadata.namespace.as_deref().unwrap_or_default())
        .iter()
        .filter(|s| {
            s.spec
                .as_ref()
                .is_some_and(|spec| labels::controller_selects(&spec.selector, &labels))
        })
        .map(|s| Key::of(&**s))
        .collect()
}

fn min_ready_seconds(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0)
}

impl StatefulSetController {
    /// The controller on the shared informers of `ctx`: StatefulSets, pods, ControllerRevisions
    /// and PersistentVolumeClaims, with handlers that queue the set a change concerns (as
    /// upstream's `addPod`/`updatePod`/`deletePod` resolve a pod to its set).
    pub fn new(ctx: &Context) -> Self {
        let sets = ctx.factory.informer::<StatefulSet>();
        let pods = ctx.factory.informer::<Pod>();
        let queue = WorkQueue::new("statefulset");
        let expectations = Expectations::default();
        {
            let (queue, expectations) = (queue.clone(), expectations.clone());
            sets.add_handler(move |change| {
                crate::controllers::owner_changed(&queue, &expectations, change)
            });
        }
        {
            let (queue, expectations, sets) = (queue.clone(), expectations.clone(), sets.clone());
            pods.add_handler(move |change| match change {
                Change::Add(pod) => {
                    if let Some(key) = owner_key(&sets, pod) {
                        if is_terminating(pod) {
                            expectations.deletion_observed(&key.to_string(), name(&pod.metadata));
                        } else {
                            expectations.creation_observed(&key.to_string());
                        }
                        queue.add(key);
                    } else if pods::controller_ref(&pod.metadata).is_none() {
                        selecting(&sets, pod).into_iter().for_each(|k| queue.add(k));
                    }
                }
                Change::Update { old, new } => {
                    if old.metadata.resource_version == new.metadata.resource_version {
                        return;
                    }
                    let old_owner = owner_key(&sets, old);
                    let new_owner = owner_key(&sets, new);
                    if old_owner != new_owner
                        && let Some(key) = old_owner
                    {
                        queue.add(key);
                    }
                    if let Some(key) = new_owner {
                        if is_terminating(new) && !is_terminating(old) {
                            expectations.deletion_observed(&key.to_string(), name(&new.metadata));
                        }
                        let min_ready = sets
                            .get(&key.namespace, &key.name)
                            .map_or(0, |s| min_ready_seconds(&s));
                        if min_ready > 0 && !pods::is_ready(old) && pods::is_ready(new) {
                            queue.add_after(key.clone(), Duration::from_secs(min_ready as u64));
                        }
                        queue.add(key);
                    } else if pods::controller_ref(&new.metadata).is_none()
                        && (old.metadata.labels != new.metadata.labels
                            || pods::controller_ref(&old.metadata).is_some())
                    {
                        selecting(&sets, new).into_iter().for_each(|k| queue.add(k));
                    }
                }
                Change::Delete(pod) => {
                    if let Some(key) = owner_key(&sets, pod) {
                        expectations.deletion_observed(&key.to_string(), name(&pod.metadata));
                        queue.add(key);
                    }
                }
            });
        }
        StatefulSetController {
            client: ctx.client("statefulset"),
            flow: ctx.flow.clone(),
            revisions: ctx.factory.informer::<ControllerRevision>(),
            claims: ctx.factory.informer::<PersistentVolumeClaim>(),
            sets,
            pods,
            queue,
            expectations,
        }
    }

    /// Waits for the caches, then reconciles queued sets with a few workers, forever.
    pub async fn run(self) {
        self.sets.synced().await;
        self.pods.synced().await;
        self.revisions.synced().await;
        self.claims.synced().await;
        let queue = self.queue.clone();
        run_workers(queue, WORKERS, |key| self.sync(key)).await;
    }

    /// A hop of this controller about `kind` `name` in the set's namespace.
    fn hop(&self, verb: &str, set: &StatefulSet, kind: &str, object: &str) -> FlowEvent {
        let mut e = FlowEvent::new(COMPONENT, "apiserver", verb).object(
            kind,
            set.metadata.namespace.as_deref().unwrap_or_default(),
            object,
        );
        if kind == "StatefulSet" {
            e.uid = set.metadata.uid.clone().unwrap_or_default();
        }
        e
    }

    async fn record(&self, set: &StatefulSet, event_type: &str, reason: &str, message: &str) {
        event(&self.client, set, EVENT_SOURCE, event_type, reason, message).await;
    }

    /// One pass over the set named by `key` (upstream's `sync` and `UpdateStatefulSet`).
    async fn sync(&self, key: Key) -> Result<Action, Error> {
        let expectations_key = key.to_string();
        let Some(set) = self.sets.get(&key.namespace, &key.name) else {
            self.expectations.forget(&expectations_key);
            return Ok(Action::Done);
        };
        let Some(spec) = set.spec.as_ref() else {
            return Ok(Action::Done);
        };
        if labels::is_empty(&spec.selector) {
            // Validation refuses it; a set that has one anyway is left alone, not retried.
            tracing::warn!(set = %key, "StatefulSet has an empty selector: ignored");
            return Ok(Action::Done);
        }
        if !self.expectations.satisfied(&expectations_key) {
            // Its own creates and deletes have not shown up yet: the pod events requeue it, or,
            // should one be lost, the expectations' timeout does.
            return Ok(Action::RequeueAfter(expectations::TIMEOUT));
        }
        let mut revisions = self.revisions_of(&set).await?;
        let pods = self.claim_pods(&set).await?;

        // The current and update revisions (`getStatefulSetRevisions`).
        let mut sorted: Vec<&ControllerRevision> = revisions.iter().map(|r| &**r).collect();
        revision::sort(&mut sorted);
        let mut collisions = set
            .status
            .as_ref()
            .and_then(|s| s.collision_count)
            .unwrap_or(0);
        let update = match revision::decide(&set, &sorted, collisions) {
            UpdateRevision::Newest(i) => sorted[i].clone(),
            UpdateRevision::Renumber { index, revision } => {
                self.renumber(&set, sorted[index], revision).await?
            }
            UpdateRevision::Create(candidate) => {
                self.create_revision(&set, *candidate, &mut collisions)
                    .await?
            }
        };
        let status_current = set
            .status
            .as_ref()
            .and_then(|s| s.current_revision.as_deref())
            .unwrap_or_default();
        let current = sorted
            .iter()
            .find(|r| name(&r.metadata) == status_current)
            .map_or_else(|| update.clone(), |r| (*r).clone());
        let current_set = revision::apply(&set, &current);
        let update_set = revision::apply(&set, &update);

        let claims = self.claims.list_namespace(&key.namespace);
        let claims_by_name: BTreeMap<String, &PersistentVolumeClaim> = claims
            .iter()
            .map(|c| (name(&c.metadata).to_owned(), &**c))
            .collect();
        let pod_refs: Vec<&Pod> = pods.iter().map(|p| &**p).collect();
        let now = jiff::Timestamp::now();
        let decided = plan::plan(&plan::Input {
            set: &set,
            current: &current_set,
            update: &update_set,
            current_revision: name(&current.metadata),
            update_revision: name(&update.metadata),
            collision_count: collisions,
            pods: &pod_refs,
            claims: &claims_by_name,
            now,
        });
        let outcome = self.execute(&set, &expectations_key, &decided).await;
        if let Some(status) = plan::finish_status(&set, decided.status.clone()) {
            self.write_status(&set, &status, decided.waiting.as_deref())
                .await?;
        }
        // Keep the history within its limit (`truncateHistory`), the new revision included.
        if !revisions
            .iter()
            .any(|r| r.metadata.name == update.metadata.name)
        {
            revisions.push(Arc::new(update.clone()));
        }
        let mut sorted: Vec<&ControllerRevision> = revisions.iter().map(|r| &**r).collect();
        revision::sort(&mut sorted);
        for old in revision::to_truncate(
            &set,
            &pod_refs,
            &sorted,
            name(&current.metadata),
            name(&update.metadata),
        ) {
            self.delete_revision(&set, old).await?;
        }
        outcome?;
        let min_ready = min_ready_seconds(&set);
        if min_ready > 0
            && decided.status.available_replicas.unwrap_or(0) != identity::replicas(&set)
        {
            return Ok(Action::RequeueAfter(Duration::from_secs(min_ready as u64)));
        }
        Ok(Action::Done)
    }

    /// The set's revisions: those it controls and the orphans its selector matches, adopted
    /// (`ListRevisions`, `AdoptOrphanRevisions`).
    async fn revisions_of(&self, set: &StatefulSet) -> Result<Vec<Arc<ControllerRevision>>, Error> {
        let Some(spec) = set.spec.as_ref() else {
            return Ok(Vec::new());
        };
        let uid = set.metadata.uid.as_deref().unwrap_or_default();
        let namespace = set.metadata.namespace.as_deref().unwrap_or_default();
        let mut out = Vec::new();
        for r in self.revisions.list_namespace(namespace) {
            let labels = r.metadata.labels.clone().unwrap_or_default();
            if !labels::controller_selects(&spec.selector, &labels) {
                continue;
            }
            match pods::controller_uid(&r.metadata) {
                Some(owner) if owner == uid => out.push(r),
                Some(_) => {}
                None if set.metadata.deletion_timestamp.is_none() => {
                    let revision_name = name(&r.metadata).to_owned();
                    self.flow
                        .gate_emit(
                            self.hop("ADOPT", set, "ControllerRevision", &revision_name)
                                .detail(format!(
                                    "orphan revision {} matches the selector of StatefulSet {}",
                                    r.revision,
                                    name(&set.metadata)
                                )),
                        )
                        .await;
                    let api: Api<ControllerRevision> =
                        Api::namespaced(self.client.clone(), namespace);
                    let adopted = api
                        .patch(
                            &revision_name,
                            &PatchParams::default(),
                            &Patch::Strategic(json!({"metadata": {
                                "ownerReferences": [new_controller_ref(set)],
                                "uid": r.metadata.uid,
                            }})),
                        )
                        .await
                        .map_err(write(format!("adopt ControllerRevision {revision_name}")))?;
                    out.push(Arc::new(adopted));
                }
                None => {}
            }
        }
        Ok(out)
    }

    /// The set's pods (`getPodsForStatefulSet` and `ClaimPods`): those it controls that its
    /// selector still matches and whose names are its own, plus orphans it adopts; pods it
    /// controls that no longer match are released.
    async fn claim_pods(&self, set: &StatefulSet) -> Result<Vec<Arc<Pod>>, Error> {
        let Some(spec) = set.spec.as_ref() else {
            return Ok(Vec::new());
        };
        let uid = set.metadata.uid.as_deref().unwrap_or_default();
        let namespace = set.metadata.namespace.as_deref().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let mut out = Vec::new();
        for pod in self.pods.list_namespace(namespace) {
            let labels = pod.metadata.labels.clone().unwrap_or_default();
            let matches =
                labels::controller_selects(&spec.selector, &labels) && is_member_of(set, &pod);
            let pod_name = name(&pod.metadata).to_owned();
            match pods::controller_uid(&pod.metadata) {
                Some(owner) if owner == uid => {
                    if matches {
                        out.push(pod);
                    } else if !is_terminating(&pod) {
                        self.flow
                            .gate_emit(self.hop("RELEASE", set, "Pod", &pod_name).detail(format!(
                                "{pod_name} no longer matches the selector: releasing it"
                            )))
                            .await;
                        let release = json!({"metadata": {
                            "ownerReferences": [{"$patch": "delete", "uid": uid}],
                            "uid": pod.metadata.uid,
                        }});
                        match api
                            .patch(
                                &pod_name,
                                &PatchParams::default(),
                                &Patch::Strategic(release),
                            )
                            .await
                        {
                            Ok(_) => {}
                            Err(e) if code(&e) == Some(404) => {}
                            Err(e) => return Err(write(format!("release pod {pod_name}"))(e)),
                        }
                    }
                }
                Some(_) => {}
                None => {
                    if !matches || is_terminating(&pod) || set.metadata.deletion_timestamp.is_some()
                    {
                        continue;
                    }
                    self.flow
                        .gate_emit(self.hop("ADOPT", set, "Pod", &pod_name).detail(format!(
                            "orphan pod {pod_name} matches StatefulSet {}",
                            name(&set.metadata)
                        )))
                        .await;
                    let adopt = json!({"metadata": {
                        "ownerReferences": [new_controller_ref(set)],
                        "uid": pod.metadata.uid,
                    }});
                    match api
                        .patch(&pod_name, &PatchParams::default(), &Patch::Strategic(adopt))
                        .await
                    {
                        Ok(adopted) => out.push(Arc::new(adopted)),
                        Err(e) if code(&e) == Some(404) => {}
                        Err(e) => return Err(write(format!("adopt pod {pod_name}"))(e)),
                    }
                }
            }
        }
        Ok(out)
    }

    /// Makes an older revision the newest again (a rollback): `UpdateControllerRevision`.
    async fn renumber(
        &self,
        set: &StatefulSet,
        old: &ControllerRevision,
        revision: i64,
    ) -> Result<ControllerRevision, Error> {
        let revision_name = name(&old.metadata).to_owned();
        self.flow
            .gate_emit(
                self.hop("UPDATE", set, "ControllerRevision", &revision_name)
                    .detail(format!(
                        "the template is revision {}'s again: it becomes revision {revision}",
                        old.revision
                    )),
            )
            .await;
        let api: Api<ControllerRevision> = Api::namespaced(
            self.client.clone(),
            set.metadata.namespace.as_deref().unwrap_or_default(),
        );
        api.patch(
            &revision_name,
            &PatchParams::default(),
            &Patch::Merge(json!({"revision": revision})),
        )
        .await
        .map_err(write(format!(
            "renumber ControllerRevision {revision_name}"
        )))
    }

    /// Creates the update revision, naming it anew (and counting a collision) while its name
    /// is taken by another template (`CreateControllerRevision`).
    async fn create_revision(
        &self,
        set: &StatefulSet,
        candidate: ControllerRevision,
        collisions: &mut i32,
    ) -> Result<ControllerRevision, Error> {
        let api: Api<ControllerRevision> = Api::namespaced(
            self.client.clone(),
            set.metadata.namespace.as_deref().unwrap_or_default(),
        );
        let mut candidate = candidate;
        for _ in 0..MAX_COLLISIONS {
            let revision_name = name(&candidate.metadata).to_owned();
            self.flow
                .gate_emit(
                    self.hop("CREATE", set, "ControllerRevision", &revision_name)
                        .detail(format!(
                            "revision {} of StatefulSet {}: its pod template",
                            candidate.revision,
                            name(&set.metadata)
                        )),
                )
                .await;
            match api.create(&PostParams::default(), &candidate).await {
                Ok(created) => return Ok(created),
                Err(e) if already_exists(&e) => {
                    let existing = api
                        .get(&revision_name)
                        .await
                        .map_err(write(format!("read ControllerRevision {revision_name}")))?;
                    if revision::equal(&existing, &candidate) {
                        return Ok(existing);
                    }
                    *collisions += 1;
                    candidate = revision::new_revision(set, candidate.revision, *collisions);
                }
                Err(e) => {
                    return Err(write(format!("create ControllerRevision {revision_name}"))(
                        e,
                    ));
                }
            }
        }
        Err(Error::Collisions(*collisions))
    }

    async fn delete_revision(
        &self,
        set: &StatefulSet,
        old: &ControllerRevision,
    ) -> Result<(), Error> {
        let revision_name = name(&old.metadata).to_owned();
        let limit = set
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(10);
        self.flow
            .gate_emit(
                self.hop("DELETE", set, "ControllerRevision", &revision_name)
                    .detail(format!(
                        "revision {} is beyond the history limit of {limit}",
                        old.revision
                    )),
            )
            .await;
        let api: Api<ControllerRevision> = Api::namespaced(
            self.client.clone(),
            set.metadata.namespace.as_deref().unwrap_or_default(),
        );
        match api.delete(&revision_name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(e) if code(&e) == Some(404) => Ok(()),
            Err(e) => Err(write(format!("delete ControllerRevision {revision_name}"))(
                e,
            )),
        }
    }

    /// Writes the plan's steps: in order, stopping at the first failure (`OrderedReady`), or in
    /// slow-start batches of 1, 2, 4, ... run together, stopping after a batch with a failure
    /// (`Parallel`, upstream's `slowStartBatch`).
    async fn execute(
        &self,
        set: &StatefulSet,
        key: &str,
        decided: &plan::Plan,
    ) -> Result<(), Error> {
        let parallel = set
            .spec
            .as_ref()
            .and_then(|s| s.pod_management_policy.as_deref())
            == Some("Parallel");
        if !parallel {
            for step in &decided.steps {
                self.step(set, key, step).await?;
            }
            return Ok(());
        }
        // Scale-down deletions start only once every claim has its owners (upstream's separate
        // `runForAll` passes), so a scaled-away pod never goes before its claim names it.
        let barrier = decided
            .steps
            .iter()
            .position(|s| {
                matches!(
                    s,
                    Step::DeletePod {
                        reason: Reason::ScaleDown,
                        ..
                    }
                )
            })
            .unwrap_or(decided.steps.len());
        let (first, then) = decided.steps.split_at(barrier);
        for phase in [first, then] {
            let mut rest = phase;
            let mut batch = 1;
            while !rest.is_empty() {
                let (now, later) = rest.split_at(batch.min(rest.len()));
                let results =
                    futures::future::join_all(now.iter().map(|s| self.step(set, key, s))).await;
                if let Some(e) = results.into_iter().find_map(Result::err) {
                    return Err(e);
                }
                rest = later;
                batch *= 2;
            }
        }
        Ok(())
    }

    async fn step(&self, set: &StatefulSet, key: &str, step: &Step) -> Result<(), Error> {
        let set_name = name(&set.metadata);
        let namespace = set.metadata.namespace.as_deref().unwrap_or_default();
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        match step {
            Step::CreatePod { pod, claims } => {
                let pod_name = name(&pod.metadata).to_owned();
                if let Err(e) = self.create_claims(set, &pod_name, claims).await {
                    self.record(
                        set,
                        "Warning",
                        "FailedCreate",
                        &format!(
                            "create Pod {pod_name} in StatefulSet {set_name} failed error: {e}"
                        ),
                    )
                    .await;
                    return Err(e);
                }
                self.flow
                    .gate_emit(self.hop("CREATE", set, "Pod", &pod_name).detail(format!(
                        "ordinal {} of StatefulSet {set_name} at revision {}",
                        identity::ordinal(pod).unwrap_or_default(),
                        identity::revision_of(pod)
                    )))
                    .await;
                self.expectations.expect_creations(key, 1);
                match pods.create(&PostParams::default(), pod).await {
                    Ok(_) => {
                        self.record(
                            set,
                            "Normal",
                            "SuccessfulCreate",
                            &format!("create Pod {pod_name} in StatefulSet {set_name} successful"),
                        )
                        .await;
                        Ok(())
                    }
                    Err(e) => {
                        self.expectations.creation_observed(key);
                        if !already_exists(&e) {
                            self.record(
                                set,
                                "Warning",
                                "FailedCreate",
                                &format!(
                                    "create Pod {pod_name} in StatefulSet {set_name} failed error: {e}"
                                ),
                            )
                            .await;
                        }
                        Err(write(format!("create pod {pod_name}"))(e))
                    }
                }
            }
            Step::CreateClaims { pod, claims } => self.create_claims(set, pod, claims).await,
            Step::UpdatePod { pod, claims } => {
                let pod_name = name(&pod.metadata).to_owned();
                let result = async {
                    self.create_claims(set, &pod_name, claims).await?;
                    self.flow
                        .gate_emit(self.hop("UPDATE", set, "Pod", &pod_name).detail(format!(
                            "{pod_name} gets back its identity and storage in StatefulSet {set_name}"
                        )))
                        .await;
                    // The informer's copy is slimmed (see `slim_pod`): the repair goes onto
                    // the pod as the API server has it, at its resourceVersion.
                    let mut live = pods
                        .get(&pod_name)
                        .await
                        .map_err(write(format!("update pod {pod_name}")))?;
                    identity::carry_repair(pod, &mut live);
                    pods.replace(&pod_name, &PostParams::default(), &live)
                        .await
                        .map_err(write(format!("update pod {pod_name}")))
                }
                .await;
                let (kind, reason, words) = match &result {
                    Ok(_) => ("Normal", "SuccessfulUpdate", "successful".to_owned()),
                    Err(e) => ("Warning", "FailedUpdate", format!("failed error: {e}")),
                };
                self.record(
                    set,
                    kind,
                    reason,
                    &format!("update Pod {pod_name} in StatefulSet {set_name} {words}"),
                )
                .await;
                result.map(|_| ())
            }
            Step::UpdateClaim { pod, claim } => {
                let claim_name = name(&claim.metadata).to_owned();
                let owners: Vec<String> = claim
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .map(|r| format!("{} {}", r.kind, r.name))
                    .collect();
                self.flow
                    .gate_emit(
                        self.hop("UPDATE", set, "PersistentVolumeClaim", &claim_name)
                            .detail(format!(
                                "claim of {pod} owned by {} for the retention policy",
                                if owners.is_empty() {
                                    "nothing".to_owned()
                                } else {
                                    owners.join(" and ")
                                }
                            )),
                    )
                    .await;
                let api: Api<PersistentVolumeClaim> =
                    Api::namespaced(self.client.clone(), namespace);
                api.replace(&claim_name, &PostParams::default(), claim)
                    .await
                    .map(|_| ())
                    .map_err(write(format!(
                        "could not update claim {claim_name} for delete policy ownerRefs"
                    )))
            }
            Step::DeletePod { pod, reason } => {
                let why = match reason {
                    Reason::Finished => "it has finished: it is made again",
                    Reason::ScaleDown => "its ordinal is beyond spec.replicas",
                    Reason::Update => "it runs an old revision",
                };
                self.flow
                    .gate_emit(
                        self.hop("DELETE", set, "Pod", pod)
                            .detail(format!("{pod} of StatefulSet {set_name}: {why}")),
                    )
                    .await;
                self.expectations.expect_deletions(key, [pod.clone()]);
                let result = pods.delete(pod, &DeleteParams::default()).await;
                match result {
                    Ok(_) => {
                        self.record(
                            set,
                            "Normal",
                            "SuccessfulDelete",
                            &format!("delete Pod {pod} in StatefulSet {set_name} successful"),
                        )
                        .await;
                        Ok(())
                    }
                    Err(e) => {
                        self.expectations.deletion_observed(key, pod);
                        if code(&e) == Some(404) {
                            return Ok(());
                        }
                        self.record(
                            set,
                            "Warning",
                            "FailedDelete",
                            &format!(
                                "delete Pod {pod} in StatefulSet {set_name} failed error: {e}"
                            ),
                        )
                        .await;
                        Err(write(format!("delete pod {pod}"))(e))
                    }
                }
            }
        }
    }

    /// Creates a pod's missing claims (`createPersistentVolumeClaims`); one of its claims being
    /// deleted holds the pod back.
    async fn create_claims(
        &self,
        set: &StatefulSet,
        pod: &str,
        claims: &[PersistentVolumeClaim],
    ) -> Result<(), Error> {
        let set_name = name(&set.metadata);
        let namespace = set.metadata.namespace.as_deref().unwrap_or_default();
        if let Some(ordinal) = identity::parent_and_ordinal(pod).and_then(|(_, o)| o) {
            for (_, claim) in identity::claims_for(set, ordinal) {
                let claim_name = name(&claim.metadata);
                if self
                    .claims
                    .get(namespace, claim_name)
                    .is_some_and(|c| c.metadata.deletion_timestamp.is_some())
                {
                    return Err(Error::ClaimTerminating(claim_name.to_owned()));
                }
            }
        }
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), namespace);
        for claim in claims {
            let claim_name = name(&claim.metadata).to_owned();
            self.flow
                .gate_emit(
                    self.hop("CREATE", set, "PersistentVolumeClaim", &claim_name)
                        .detail(format!("stable storage of {pod} in StatefulSet {set_name}")),
                )
                .await;
            match api.create(&PostParams::default(), claim).await {
                Ok(_) => {
                    self.record(
                        set,
                        "Normal",
                        "SuccessfulCreate",
                        &format!(
                            "create Claim {claim_name} Pod {pod} in StatefulSet {set_name} success"
                        ),
                    )
                    .await;
                }
                Err(e) if already_exists(&e) => {}
                Err(e) => {
                    self.record(
                        set,
                        "Warning",
                        "FailedCreate",
                        &format!(
                            "create Claim {claim_name} for Pod {pod} in StatefulSet {set_name} failed error: {e}"
                        ),
                    )
                    .await;
                    return Err(write(format!("failed to create PVC {claim_name}"))(e));
                }
            }
        }
        Ok(())
    }

    /// Records the status (`UpdateStatefulSetStatus`), every field, as upstream replaces it.
    async fn write_status(
        &self,
        set: &StatefulSet,
        status: &StatefulSetStatus,
        waiting: Option<&str>,
    ) -> Result<(), Error> {
        let set_name = name(&set.metadata).to_owned();
        let mut words = format!(
            "{} of {} ready, {} updated to {}",
            status.ready_replicas.unwrap_or(0),
            identity::replicas(set),
            status.updated_replicas.unwrap_or(0),
            status.update_revision.as_deref().unwrap_or_default()
        );
        if let Some(waiting) = waiting {
            words.push_str("; ");
            words.push_str(waiting);
        }
        self.flow
            .gate_emit(
                self.hop("UPDATE STATUS", set, "StatefulSet", &set_name)
                    .detail(words),
            )
            .await;
        let api: Api<StatefulSet> = Api::namespaced(
            self.client.clone(),
            set.metadata.namespace.as_deref().unwrap_or_default(),
        );
        let body = json!({"status": {
            "observedGeneration": status.observed_generation,
            "replicas": status.replicas,
            "readyReplicas": status.ready_replicas.unwrap_or(0),
            "currentReplicas": status.current_replicas.unwrap_or(0),
            "updatedReplicas": status.updated_replicas.unwrap_or(0),
            "availableReplicas": status.available_replicas.unwrap_or(0),
            "currentRevision": status.current_revision,
            "updateRevision": status.update_revision,
            "collisionCount": status.collision_count,
        }});
        match api
            .patch_status(&set_name, &PatchParams::default(), &Patch::Merge(body))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if code(&e) == Some(404) => Ok(()),
            Err(e) => Err(write(format!("update status of StatefulSet {set_name}"))(e)),
        }
    }
}
