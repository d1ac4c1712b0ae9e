//! The disruption controller (policy/v1), kube-controller-manager's `pkg/controller/
//! disruption`: keeps each PodDisruptionBudget's status current, which is what the eviction
//! subresource reads. For the pods its selector matches (none without a selector, all with an
//! empty one): `expectedPods` (the pods themselves for an integer `minAvailable`; otherwise the
//! summed scale of their controllers, a ReplicationController, a Deployment through its
//! ReplicaSet, a ReplicaSet or a StatefulSet; an owner without a scale subresource fails the
//! sync), `desiredHealthy` (from
//! `minAvailable`, or `expectedPods - maxUnavailable`, percentages rounded up),
//! `currentHealthy` (ready pods not being deleted and not in `disruptedPods`),
//! `disruptionsAllowed` (their difference, never below 0, 0 while no pod is expected),
//! `disruptedPods` (evictions the API server approved, kept for two minutes unless the pod
//! goes), `observedGeneration` and the `DisruptionAllowed` condition (`SufficientPods` /
//! `InsufficientPods`; `SyncFailed` with no disruptions allowed when the sync fails). The
//! computation is pure ([`expected_pod_count`], [`disrupted_pod_map`], [`count_healthy`],
//! [`new_status`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, PostParams};

use super::Context;
use super::workqueue::{Action, Key, WorkQueue, run_workers};
use crate::apimachinery::disruption as helper;
use crate::apimachinery::labels;
use crate::apimachinery::pods;
use crate::flow::{Flow, FlowEvent};
use crate::informers::{Change, Informer};

const COMPONENT: &str = "controller/disruption";
const SOURCE: &str = "controllermanager";
/// How long an approved eviction keeps its pod out of the healthy count (upstream's
/// `DeletionTimeout`).
pub const DELETION_TIMEOUT: SignedDuration = SignedDuration::from_mins(2);

/// What went wrong syncing a budget.
#[derive(Debug, thiserror::Error)]
pub enum DisruptionError {
    /// The budget's numbers could not be computed (the status says so, `SyncFailed`).
    #[error("{0}")]
    Compute(String),
    /// The status write failed.
    #[error("writing the status of poddisruptionbudget {pdb}: {source}")]
    Status {
        /// `namespace/name`.
        pdb: String,
        /// The API error.
        source: kube::Error,
    },
}

/// A controller's uid and scale, as the finders return them.
pub type Scale = (String, i32);

/// Finds the uid and scale of the controller an owner reference names, in a namespace
/// (`Ok(None)`: not one it knows).
pub type Finder<'a> = &'a dyn Fn(&OwnerReference, &str) -> Result<Option<Scale>, String>;

/// `intstr.GetScaledValueFromIntOrPercent(v, total, true)`.
fn scaled(value: &IntOrString, total: i32) -> Result<i32, String> {
    match value {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let percent: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("invalid value for IntOrString: invalid value {s:?}"))?;
            Ok((i64::from(total) * percent + 99).div_euclid(100) as i32)
        }
    }
}

/// `getExpectedPodCount`: (expectedPods, desiredHealthy, unmanaged pod names). `find` gives
/// the uid and scale of the controller a pod's controller reference names (`Ok(None)`: not
/// one it knows).
pub fn expected_pod_count(
    pdb: &PodDisruptionBudget,
    pods: &[&Pod],
    find: Finder<'_>,
) -> Result<(i32, i32, Vec<String>), String> {
    let spec = pdb.spec.clone().unwrap_or_default();
    let expected_scale = || -> Result<(i32, Vec<String>), String> {
        let mut scales: BTreeMap<String, i32> = BTreeMap::new();
        let mut unmanaged = Vec::new();
        for pod in pods {
            let name = pod.metadata.name.clone().unwrap_or_default();
            let Some(owner) = pods::controller_ref(&pod.metadata) else {
                unmanaged.push(name);
                continue;
            };
            if scales.contains_key(&owner.uid) {
                continue;
            }
            let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
            match find(owner, namespace)? {
                Some((uid, scale)) => {
                    scales.insert(uid, scale);
                }
                None => return Err(format!("found no controllers for pod {name:?}")),
            }
        }
        Ok((scales.values().sum(), unmanaged))
    };
    if let Some(max) = &spec.max_unavailable {
        let (expected, unmanaged) = expected_scale()?;
        let desired = (expected - scaled(max, expected)?).max(0);
        return Ok((expected, desired, unmanaged));
    }
    match &spec.min_available {
        Some(IntOrString::Int(n)) => Ok((pods.len() as i32, *n, Vec::new())),
        Some(min) => {
            let (expected, unmanaged) = expected_scale()?;
            Ok((expected, scaled(min, expected)?, unmanaged))
        }
        None => Ok((0, 0, Vec::new())),
    }
}

/// `buildDisruptedPodMap`: the approved evictions still pending (their pods not yet being
/// deleted, within [`DELETION_TIMEOUT`]), when to look again, and the pods that outlived
/// theirs.
pub fn disrupted_pod_map(
    pods: &[&Pod],
    pdb: &PodDisruptionBudget,
    now: Timestamp,
) -> (BTreeMap<String, Time>, Option<Timestamp>, Vec<String>) {
    let mut result = BTreeMap::new();
    let mut recheck: Option<Timestamp> = None;
    let mut not_deleted = Vec::new();
    let Some(disrupted) = pdb.status.as_ref().and_then(|s| s.disrupted_pods.as_ref()) else {
        return (result, recheck, not_deleted);
    };
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let name = pod.metadata.name.clone().unwrap_or_default();
        let Some(since) = disrupted.get(&name) else {
            continue;
        };
        let expected = since.0 + DELETION_TIMEOUT;
        if expected < now {
            not_deleted.push(name);
        } else {
            if recheck.is_none_or(|r| expected < r) {
                recheck = Some(expected);
            }
            result.insert(name, since.clone());
        }
    }
    (result, recheck, not_deleted)
}

/// `countHealthyPods`: ready pods neither being deleted nor about to be.
pub fn count_healthy(pods: &[&Pod], disrupted: &BTreeMap<String, Time>, now: Timestamp) -> i32 {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            let name = p.metadata.name.as_deref().unwrap_or_default();
            disrupted
                .get(name)
                .is_none_or(|t| t.0 + DELETION_TIMEOUT <= now)
        })
        .filter(|p| pods::is_ready(p))
        .count() as i32
}

/// `ConditionsAreUpToDate`.
fn conditions_up_to_date(pdb: &PodDisruptionBudget) -> bool {
    let status = pdb.status.clone().unwrap_or_default();
    let Some(c) = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == helper::DISRUPTION_ALLOWED)
    else {
        return false;
    };
    if status.observed_generation != pdb.metadata.generation {
        return false;
    }
    if status.disruptions_allowed > 0 {
        c.status == "True" && c.reason == helper::SUFFICIENT_PODS
    } else {
        c.status == "False" && c.reason == helper::INSUFFICIENT_PODS
    }
}

/// `updatePdbStatus`'s decision: the new status, or `None` when the stored one says it all.
pub fn new_status(
    pdb: &PodDisruptionBudget,
    current_healthy: i32,
    desired_healthy: i32,
    expected: i32,
    disrupted: BTreeMap<String, Time>,
    now: Timestamp,
) -> Option<PodDisruptionBudgetStatus> {
    let mut allowed = current_healthy - desired_healthy;
    if expected <= 0 || allowed <= 0 {
        allowed = 0;
    }
    let old = pdb.status.clone().unwrap_or_default();
    let same_disrupted = old.disrupted_pods.clone().unwrap_or_default() == disrupted;
    if old.current_healthy == current_healthy
        && old.desired_healthy == desired_healthy
        && old.expected_pods == expected
        && old.disruptions_allowed == allowed
        && same_disrupted
        && old.observed_generation == pdb.metadata.generation
        && conditions_up_to_date(pdb)
    {
        return None;
    }
    let mut status = PodDisruptionBudgetStatus {
        current_healthy,
        desired_healthy,
        expected_pods: expected,
        disruptions_allowed: allowed,
        disrupted_pods: (!disrupted.is_empty()).then_some(disrupted),
        observed_generation: pdb.metadata.generation,
        conditions: old.conditions,
    };
    helper::update_disruption_allowed_condition(&mut status, Time(now));
    Some(status)
}

/// `failSafe`'s status: no disruptions, `DisruptionAllowed=False`/`SyncFailed` saying why.
pub fn fail_safe_status(
    pdb: &PodDisruptionBudget,
    error: &str,
    now: Timestamp,
) -> PodDisruptionBudgetStatus {
    let mut status = pdb.status.clone().unwrap_or_default();
    status.disruptions_allowed = 0;
    let condition = Condition {
        type_: helper::DISRUPTION_ALLOWED.into(),
        status: "False".into(),
        reason: helper::SYNC_FAILED.into(),
        message: error.into(),
        observed_generation: status.observed_generation,
        last_transition_time: Time(now),
    };
    helper::set_status_condition(
        status.conditions.get_or_insert_with(Vec::new),
        condition,
        Time(now),
    );
    status
}

/// The resource a kind without a scale subresource is, for the sync's error.
fn resource_of(owner: &OwnerReference) -> String {
    let group = owner.api_version.split_once('/').map(|(g, _)| g);
    match (group, owner.kind.as_str()) {
        (Some("apps"), "DaemonSet") => "daemonsets.apps".into(),
        (Some("batch"), "Job") => "jobs.batch".into(),
        (Some("batch"), "CronJob") => "cronjobs.batch".into(),
        (None, "Node") => "nodes".into(),
        _ => String::new(),
    }
}

fn selects(pdb: &PodDisruptionBudget, pod: &Pod) -> bool {
    let Some(selector) = pdb.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return false;
    };
    labels::matches(selector, &pod.metadata.labels.clone().unwrap_or_default())
}

/// The disruption controller; runs until its task is aborted.
pub struct DisruptionController {
    client: kube::Client,
    flow: Flow,
    budgets: Informer<PodDisruptionBudget>,
    pods: Informer<Pod>,
    replicasets: Informer<ReplicaSet>,
    replication_controllers: Informer<ReplicationController>,
    deployments: Informer<Deployment>,
    statefulsets: Informer<StatefulSet>,
    queue: WorkQueue,
}

impl DisruptionController {
    /// A controller on the shared informers of `ctx`.
    pub fn new(ctx: &Context) -> Self {
        let budgets = ctx.factory.informer::<PodDisruptionBudget>();
        let pods = ctx.factory.informer::<Pod>();
        let queue = WorkQueue::new("disruption");
        {
            let queue = queue.clone();
            budgets.add_handler(move |change| queue.add(Key::of(change.object())));
        }
        {
            let queue = queue.clone();
            let budgets = budgets.clone();
            let enqueue = move |pod: &Pod| {
                let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
                for pdb in budgets.list_namespace(namespace) {
                    if selects(&pdb, pod) {
                        queue.add(Key::of(&*pdb));
                    }
                }
            };
            pods.add_handler(move |change| {
                if let Change::Update { old, .. } = &change {
                    enqueue(old);
                }
                enqueue(change.object());
            });
        }
        DisruptionController {
            client: ctx.client("disruption"),
            flow: ctx.flow.clone(),
            budgets,
            pods,
            replicasets: ctx.factory.informer::<ReplicaSet>(),
            replication_controllers: ctx.factory.informer::<ReplicationController>(),
            deployments: ctx.factory.informer::<Deployment>(),
            statefulsets: ctx.factory.informer::<StatefulSet>(),
            queue,
        }
    }

    /// Waits for the caches, then syncs budgets as their keys come up.
    pub async fn run(self) {
        self.budgets.synced().await;
        self.pods.synced().await;
        self.replicasets.synced().await;
        self.replication_controllers.synced().await;
        self.deployments.synced().await;
        self.statefulsets.synced().await;
        let this = Arc::new(self);
        run_workers(this.queue.clone(), 2, |key| {
            let this = this.clone();
            async move { this.sync(key).await }
        })
        .await;
    }

    /// The finders, in upstream's order: a ReplicationController (by kind alone, as
    /// upstream's), a Deployment through its ReplicaSet, a ReplicaSet (not a Deployment's), a
    /// StatefulSet; anything else has no scale here.
    fn find(&self, owner: &OwnerReference, namespace: &str) -> Result<Option<Scale>, String> {
        let apps = owner.api_version.starts_with("apps/");
        match (apps, owner.kind.as_str()) {
            (_, "ReplicationController") => Ok(self
                .replication_controllers
                .get(namespace, &owner.name)
                .filter(|rc| rc.metadata.uid.as_deref() == Some(owner.uid.as_str()))
                .map(|rc| {
                    (
                        owner.uid.clone(),
                        rc.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                    )
                })),
            (true, "ReplicaSet") => {
                let Some(rs) = self
                    .replicasets
                    .get(namespace, &owner.name)
                    .filter(|rs| rs.metadata.uid.as_deref() == Some(owner.uid.as_str()))
                else {
                    return Ok(None);
                };
                if let Some(parent) = pods::controller_ref(&rs.metadata) {
                    if parent.kind != "Deployment" {
                        return Ok(Some((owner.uid.clone(), replicas(&rs))));
                    }
                    let Some(d) = self
                        .deployments
                        .get(namespace, &parent.name)
                        .filter(|d| d.metadata.uid.as_deref() == Some(parent.uid.as_str()))
                    else {
                        return Ok(None);
                    };
                    let scale = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                    return Ok(Some((parent.uid.clone(), scale)));
                }
                Ok(Some((owner.uid.clone(), replicas(&rs))))
            }
            (true, "StatefulSet") => Ok(self
                .statefulsets
                .get(namespace, &owner.name)
                .filter(|s| s.metadata.uid.as_deref() == Some(owner.uid.as_str()))
                .map(|s| {
                    (
                        owner.uid.clone(),
                        s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                    )
                })),
            _ => match resource_of(owner) {
                r if r.is_empty() => Err(format!(
                    "no matches for kind {:?} in version {:?}",
                    owner.kind, owner.api_version
                )),
                r => Err(format!("{r} does not implement the scale subresource")),
            },
        }
    }

    fn hop(&self, verb: &str, pdb: &PodDisruptionBudget, detail: String) -> FlowEvent {
        let mut e = FlowEvent::new(COMPONENT, "apiserver", verb)
            .object(
                "PodDisruptionBudget",
                pdb.metadata.namespace.as_deref().unwrap_or_default(),
                pdb.metadata.name.as_deref().unwrap_or_default(),
            )
            .detail(detail);
        e.uid = pdb.metadata.uid.clone().unwrap_or_default();
        e
    }

    async fn write_status(
        &self,
        pdb: &PodDisruptionBudget,
        status: PodDisruptionBudgetStatus,
    ) -> Result<(), DisruptionError> {
        let summary = format!(
            "{} of {} healthy (need {}), {} disruption(s) allowed",
            status.current_healthy,
            status.expected_pods,
            status.desired_healthy,
            status.disruptions_allowed
        );
        let mut updated = pdb.clone();
        updated.status = Some(status);
        self.flow
            .gate_emit(self.hop("UPDATE STATUS", pdb, summary))
            .await;
        let namespace = pdb.metadata.namespace.as_deref().unwrap_or_default();
        let name = pdb.metadata.name.as_deref().unwrap_or_default();
        let api: Api<PodDisruptionBudget> = Api::namespaced(self.client.clone(), namespace);
        api.replace_status(name, &PostParams::default(), &updated)
            .await
            .map(|_| ())
            .map_err(|source| DisruptionError::Status {
                pdb: Key::of(pdb).to_string(),
                source,
            })
    }

    async fn record(&self, pdb: &PodDisruptionBudget, event_type: &str, reason: &str, msg: &str) {
        super::event(&self.client, pdb, SOURCE, event_type, reason, msg).await;
    }

    /// `sync`: `trySync`, and on a failure other than a conflict, `failSafe`.
    async fn sync(&self, key: Key) -> Result<Action, DisruptionError> {
        let Some(pdb) = self.budgets.get(&key.namespace, &key.name) else {
            return Ok(Action::Done);
        };
        match self.try_sync(&pdb).await {
            Ok(action) => Ok(action),
            Err(DisruptionError::Compute(message)) => {
                let status = fail_safe_status(&pdb, &message, Timestamp::now());
                self.write_status(&pdb, status).await?;
                Err(DisruptionError::Compute(message))
            }
            Err(e) => Err(e),
        }
    }

    async fn try_sync(&self, pdb: &PodDisruptionBudget) -> Result<Action, DisruptionError> {
        let namespace = pdb.metadata.namespace.clone().unwrap_or_default();
        let all = self.pods.list_namespace(&namespace);
        let pods: Vec<&Pod> = all
            .iter()
            .map(|p| &**p)
            .filter(|p| selects(pdb, p))
            .collect();
        if pods.is_empty() {
            self.record(pdb, "Normal", "NoPods", "No matching pods found")
                .await;
        }
        let (expected, desired, unmanaged) =
            match expected_pod_count(pdb, &pods, &|owner, ns| self.find(owner, ns)) {
                Ok(counts) => counts,
                Err(e) => {
                    let message = format!("Failed to calculate the number of expected pods: {e}");
                    self.record(pdb, "Warning", "CalculateExpectedPodCountFailed", &message)
                        .await;
                    return Err(DisruptionError::Compute(e));
                }
            };
        if !unmanaged.is_empty() {
            let selector = pdb
                .spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .map(go_selector)
                .unwrap_or_default();
            self.record(pdb, "Warning", "UnmanagedPods", &format!("Pods selected by this PodDisruptionBudget (selector: {selector}) were found to be unmanaged. As a result, the status of the PDB cannot be calculated correctly, which may result in undefined behavior. To account for these pods please set \".spec.minAvailable\" field of the PDB to an integer value.")).await;
        }
        let now = Timestamp::now();
        let (disrupted, recheck, not_deleted) = disrupted_pod_map(&pods, pdb, now);
        for name in not_deleted {
            if let Some(pod) = pods
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some(&name))
            {
                let message = format!(
                    "Pod was expected by PDB {namespace}/{namespace} to be deleted but it wasn't"
                );
                super::event(
                    &self.client,
                    *pod,
                    SOURCE,
                    "Warning",
                    "NotDeleted",
                    &message,
                )
                .await;
            }
        }
        let healthy = count_healthy(&pods, &disrupted, now);
        if let Some(status) = new_status(pdb, healthy, desired, expected, disrupted, now) {
            self.write_status(pdb, status).await?;
        }
        Ok(match recheck {
            Some(at) => {
                Action::RequeueAfter(at.duration_since(now).try_into().unwrap_or(Duration::ZERO))
            }
            None => Action::Done,
        })
    }
}

/// A selector as Go's `%v` prints a `*metav1.LabelSelector` (its generated `String()`).
fn go_selector(selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector) -> String {
    let labels: String = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}: {v},"))
        .collect();
    let expressions: String = selector
        .match_expressions
        .iter()
        .flatten()
        .map(|e| {
            format!(
                "LabelSelectorRequirement{{Key:{},Operator:{},Values:[{}],}},",
                e.key,
                e.operator,
                e.values.clone().unwrap_or_default().join(" ")
            )
        })
        .collect();
    format!(
        "&LabelSelector{{MatchLabels:map[string]string{{{labels}}},MatchExpressions:[]LabelSelectorRequirement{{{expressions}}},}}"
    )
}

fn replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::api::policy::v1::PodDisruptionBudgetSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn pod(name: &str, ready: bool, owner: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                owner_references: owner.map(|uid| {
                    vec![OwnerReference {
                        api_version: "apps/v1".into(),
                        kind: "ReplicaSet".into(),
                        name: "web-abc".into(),
                        uid: uid.into(),
                        controller: Some(true),
                        block_owner_deletion: None,
                    }]
                }),
                ..Default::default()
            },
            status: Some(PodStatus {
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn budget(min: Option<IntOrString>, max: Option<IntOrString>) -> PodDisruptionBudget {
        PodDisruptionBudget {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                generation: Some(1),
                ..Default::default()
            },
            spec: Some(PodDisruptionBudgetSpec {
                min_available: min,
                max_unavailable: max,
                selector: Some(LabelSelector::default()),
                unhealthy_pod_eviction_policy: None,
            }),
            status: None,
        }
    }

    fn scale_of_four(owner: &OwnerReference, _: &str) -> Result<Option<Scale>, String> {
        Ok((owner.uid == "rs").then(|| ("deploy".to_owned(), 4)))
    }

    #[test]
    fn expected_and_desired_counts_follow_the_budget_kind() {
        let (a, b, c) = (
            pod("a", true, Some("rs")),
            pod("b", true, Some("rs")),
            pod("c", false, Some("rs")),
        );
        let pods = [&a, &b, &c];
        let cases = [
            (budget(Some(IntOrString::Int(2)), None), Ok((3, 2, vec![]))),
            (
                budget(Some(IntOrString::String("50%".into())), None),
                Ok((4, 2, vec![])),
            ),
            (budget(None, Some(IntOrString::Int(1))), Ok((4, 3, vec![]))),
            (
                budget(None, Some(IntOrString::String("30%".into()))),
                Ok((4, 2, vec![])),
            ),
            (budget(None, Some(IntOrString::Int(9))), Ok((4, 0, vec![]))),
        ];
        for (pdb, want) in cases {
            assert_eq!(
                expected_pod_count(&pdb, &pods, &scale_of_four),
                want,
                "{:?}",
                pdb.spec
            );
        }
        let orphan = pod("o", true, None);
        let pdb = budget(None, Some(IntOrString::Int(1)));
        assert_eq!(
            expected_pod_count(&pdb, &[&a, &orphan], &scale_of_four),
            Ok((4, 3, vec!["o".to_owned()]))
        );
        let stranger = pod("s", true, Some("elsewhere"));
        assert_eq!(
            expected_pod_count(&pdb, &[&stranger], &scale_of_four),
            Err("found no controllers for pod \"s\"".to_owned())
        );
    }

    #[test]
    fn approved_evictions_keep_pods_out_of_the_healthy_count_for_two_minutes() {
        let (a, b, c) = (
            pod("a", true, Some("rs")),
            pod("b", true, Some("rs")),
            pod("c", true, Some("rs")),
        );
        let pods = [&a, &b, &c];
        let mut pdb = budget(Some(IntOrString::Int(2)), None);
        pdb.status = Some(PodDisruptionBudgetStatus {
            disrupted_pods: Some(BTreeMap::from([
                ("a".to_owned(), Time(ts("2024-05-01T10:00:00Z"))),
                ("b".to_owned(), Time(ts("2024-05-01T09:00:00Z"))),
            ])),
            ..Default::default()
        });
        let now = ts("2024-05-01T10:01:00Z");
        let (map, recheck, late) = disrupted_pod_map(&pods, &pdb, now);
        assert_eq!(map.keys().collect::<Vec<_>>(), ["a"]);
        assert_eq!(recheck, Some(ts("2024-05-01T10:02:00Z")));
        assert_eq!(late, ["b"]);
        assert_eq!(count_healthy(&pods, &map, now), 2);
        let status = new_status(&pdb, 2, 2, 3, map, now).unwrap();
        assert_eq!(status.disruptions_allowed, 0);
        let condition = &status.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (condition.status.as_str(), condition.reason.as_str()),
            ("False", "InsufficientPods")
        );
    }

    #[test]
    fn the_status_is_written_only_when_it_changes() {
        let mut pdb = budget(Some(IntOrString::Int(1)), None);
        let now = ts("2024-05-01T10:00:00Z");
        let status = new_status(&pdb, 3, 1, 3, BTreeMap::new(), now).unwrap();
        assert_eq!(
            (status.disruptions_allowed, status.observed_generation),
            (2, Some(1))
        );
        pdb.status = Some(status);
        assert_eq!(new_status(&pdb, 3, 1, 3, BTreeMap::new(), now), None);
        // No pod expected yet: no disruption, whatever the counts.
        assert_eq!(
            new_status(&pdb, 3, 1, 0, BTreeMap::new(), now)
                .unwrap()
                .disruptions_allowed,
            0
        );
        let failed = fail_safe_status(
            &pdb,
            "jobs.batch does not implement the scale subresource",
            now,
        );
        let c = &failed.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (failed.disruptions_allowed, c.reason.as_str()),
            (0, "SyncFailed")
        );
    }
}
