//! The Job controller (batch/v1): runs a Job's pods to completion. It creates pods from the
//! template (owned by the Job, `generateName` `<job>-`, or `<job>-<index>-` with the
//! `batch.kubernetes.io/job-completion-index` annotation, label and `JOB_COMPLETION_INDEX`
//! variable for `completionMode: Indexed`) up to `parallelism` and the completions still missing,
//! waits out the failure back-off (10 s doubling to 6 min since the last failure) before
//! replacing failed pods, deletes active pods of a suspended Job, and writes the status
//! (`active`, `ready`, `terminating`, `succeeded`, `failed`, `completedIndexes`, `startTime`,
//! `completionTime`). As kube-controller-manager 1.33 does, a Job that has reached its
//! completions first gets `SuccessCriteriaMet` and then `Complete`; one past its `backoffLimit`
//! (failed pods, or container restarts under `restartPolicy: OnFailure`) or its
//! `activeDeadlineSeconds` first gets `FailureTarget`, its active pods are deleted, and `Failed`
//! follows once none is left terminating.
//!
//! What to do is [`plan`], a pure function of the Job, its pods and the time. The controller
//! reads the shared Job and pod informers: a Job's change, or a change to a pod it controls
//! (found through the pod's controller reference), puts the Job's key on its work queue, and
//! its `sync` carries out the plan for that one Job, asking to be woken when the back-off or
//! the deadline runs out. The shared [`Expectations`], as in the ReplicaSet controller, keep a
//! lagging cache from doubling a creation.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::api::{Api, DeleteParams, PostParams};

use super::expectations::{Expectations, TIMEOUT as EXPECTATIONS_TIMEOUT};
use super::workqueue::{Action, Key, WorkQueue, run_workers};
use super::{Context, event};
use crate::apimachinery::pods::{controller_ref, is_active, is_ready, phase};
use crate::flow::{Flow, FlowEvent};
use crate::informers::{BY_OWNER, Change, Informer};

const COMPONENT: &str = "controller/job";
const SOURCE: &str = "job-controller";
/// The annotation (and label) carrying an Indexed Job pod's completion index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// The first failure back-off; it doubles with every further failure.
const BACKOFF_BASE: Duration = Duration::from_secs(10);
/// The longest failure back-off.
const BACKOFF_MAX: Duration = Duration::from_secs(360);
/// How many pods one pass creates or deletes at most, as kube-controller-manager's.
const MAX_PER_SYNC: usize = 500;
/// Added to a back-off's or deadline's end before looking again, so that the look (whose
/// clock is read in whole seconds) falls after it.
const REQUEUE_SLACK: Duration = Duration::from_millis(100);

/// What went wrong writing for a Job.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// A pod could not be created.
    #[error("creating a pod for job {job}: {source}")]
    Create {
        /// The Job.
        job: String,
        /// The API error.
        source: kube::Error,
    },
    /// The status could not be written.
    #[error("writing the status of job {job}: {source}")]
    Status {
        /// The Job.
        job: String,
        /// The API error.
        source: kube::Error,
    },
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// An Indexed Job pod's completion index, if it has a valid one.
fn completion_index(pod: &Pod) -> Option<i32> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(COMPLETION_INDEX))
        .and_then(|i| i.parse().ok())
        .filter(|i: &i32| *i >= 0)
}

/// When a pod finished: its containers' last `finishedAt`, else its creation.
fn finished_at(pod: &Pod) -> Option<jiff::Timestamp> {
    let status = pod.status.as_ref();
    status
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max()
        .or_else(|| pod.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

fn condition<'a>(job: &'a Job, type_: &str) -> Option<&'a JobCondition> {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .find(|c| c.type_ == type_ && c.status == "True")
}

/// Whether the Job has finished (`Complete` or `Failed`), after which nothing is done for it.
pub fn is_finished(job: &Job) -> bool {
    condition(job, "Complete").is_some() || condition(job, "Failed").is_some()
}

fn is_indexed(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.completion_mode.as_deref()) == Some("Indexed")
}

fn is_suspended(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.suspend) == Some(true)
}

/// The back-off left before a failed pod may be replaced: `10 s × 2^(n-1)` (at most 6 min) for
/// the `n` failures since the last success, counted from the last failure.
fn backoff_remaining(pods: &[&Pod], now: jiff::Timestamp) -> Duration {
    let last_success = pods
        .iter()
        .filter(|p| phase(p) == "Succeeded")
        .filter_map(|p| finished_at(p))
        .max();
    let failures: Vec<jiff::Timestamp> = pods
        .iter()
        .filter(|p| phase(p) == "Failed")
        .filter_map(|p| finished_at(p))
        .filter(|t| last_success.is_none_or(|s| *t > s))
        .collect();
    let Some(last_failure) = failures.iter().max() else {
        return Duration::ZERO;
    };
    let mut backoff = BACKOFF_BASE;
    for _ in 1..failures.len() {
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
    let elapsed = Duration::from_secs(
        now.as_second()
            .saturating_sub(last_failure.as_second())
            .max(0) as u64,
    );
    backoff.saturating_sub(elapsed)
}

/// `completedIndexes` as the API writes it: sorted ranges, `1,3-5,7`.
pub fn format_indexes(indexes: &BTreeSet<i32>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut iter = indexes.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    parts.join(",")
}

/// The indexes in `completedIndexes` (`1,3-5,7`).
pub fn parse_indexes(text: &str) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) {
                    out.extend(a..=b);
                }
            }
            None => {
                if let Ok(i) = part.parse() {
                    out.insert(i);
                }
            }
        }
    }
    out
}

/// What one pass decides for one Job, from the Job, its pods and the time alone.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Pods to delete (too many, a suspended Job, or a failing Job's active pods).
    pub delete: Vec<String>,
    /// Pods to create, each with its completion index for an Indexed Job.
    pub create: Vec<Option<i32>>,
    /// The status to write (the current one if nothing changed).
    pub status: JobStatus,
    /// Core events: (type, reason, message).
    pub events: Vec<(&'static str, &'static str, String)>,
    /// When to look at the Job again without a change (back-off, deadline).
    pub requeue: Option<Duration>,
}

fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: jiff::Timestamp,
) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()).filter(|r: &String| !r.is_empty()),
        message: Some(message.into()).filter(|m: &String| !m.is_empty()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Sets a condition's status, adding it if it is new and True; whether anything changed.
fn ensure_condition(
    conditions: &mut Vec<JobCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: jiff::Timestamp,
) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) if c.status == status => false,
        Some(c) => {
            *c = new_condition(type_, status, reason, message, now);
            true
        }
        None if status == "True" => {
            conditions.push(new_condition(type_, status, reason, message, now));
            true
        }
        None => false,
    }
}

/// Decides what to do for `job`, given the pods it controls and whether the controller's own
/// creations and deletions have all been seen.
pub fn plan(job: &Job, pods: &[&Pod], now: jiff::Timestamp, expectations_met: bool) -> Plan {
    let now = jiff::Timestamp::from_second(now.as_second()).unwrap_or(now);
    let spec = job.spec.clone().unwrap_or_default();
    let current = job.status.clone().unwrap_or_default();
    let mut status = current.clone();
    let mut out = Plan::default();
    if is_finished(job) {
        out.status = current;
        return out;
    }
    let indexed = is_indexed(job);
    let completions = spec.completions;
    let backoff_limit = spec.backoff_limit.unwrap_or(6);
    let suspended = is_suspended(job);
    let mut conditions = status.conditions.clone().unwrap_or_default();

    let mut active: Vec<&Pod> = pods.iter().copied().filter(|p| is_active(p)).collect();
    let mut terminating = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_some() && !is_terminal(p))
        .count() as i32;
    let mut ready = active.iter().filter(|p| is_ready(p)).count() as i32;
    let failed_pods = pods.iter().filter(|p| phase(p) == "Failed").count() as i32;
    let failed = current.failed.unwrap_or(0).max(failed_pods);
    let succeeded_indexes: BTreeSet<i32> = if indexed {
        let completions = completions.unwrap_or(0);
        let mut set = parse_indexes(current.completed_indexes.as_deref().unwrap_or_default());
        set.extend(
            pods.iter()
                .filter(|p| phase(p) == "Succeeded")
                .filter_map(|p| completion_index(p))
                .filter(|i| *i < completions),
        );
        set
    } else {
        BTreeSet::new()
    };
    let succeeded = if indexed {
        succeeded_indexes.len() as i32
    } else {
        let pods_succeeded = pods.iter().filter(|p| phase(p) == "Succeeded").count() as i32;
        current.succeeded.unwrap_or(0).max(pods_succeeded)
    };
    if status.start_time.is_none() && !suspended {
        status.start_time = Some(Time(now));
    }

    // Is the Job finishing: already marked, or now past its limits?
    let mut finishing: Option<JobCondition> = None;
    if let Some(c) = condition(job, "SuccessCriteriaMet") {
        finishing = Some(c.clone());
    } else if let Some(c) = condition(job, "FailureTarget") {
        finishing = Some(c.clone());
    } else if failed > backoff_limit || past_backoff_limit_on_failure(job, pods) {
        finishing = Some(new_condition(
            "FailureTarget",
            "True",
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
            now,
        ));
    } else if let (Some(deadline), Some(start), false) = (
        spec.active_deadline_seconds,
        status.start_time.as_ref(),
        suspended,
    ) {
        let elapsed = now.as_second() - start.0.as_second();
        if elapsed >= deadline {
            finishing = Some(new_condition(
                "FailureTarget",
                "True",
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
                now,
            ));
        } else {
            out.requeue = Some(Duration::from_secs((deadline - elapsed) as u64));
        }
    }

    if let Some(finish) = &finishing {
        // Every active pod goes; the final condition waits until none is left terminating.
        if !expectations_met {
            out.status = current;
            return out;
        }
        for pod in &active {
            if let Some(name) = &pod.metadata.name {
                out.delete.push(name.clone());
            }
        }
        terminating += active.len() as i32;
        ready -= active.iter().filter(|p| is_ready(p)).count() as i32;
        active.clear();
        if !conditions
            .iter()
            .any(|c| c.type_ == finish.type_ && c.status == "True")
        {
            conditions.push(finish.clone());
        }
    } else {
        if expectations_met && job.metadata.deletion_timestamp.is_none() {
            manage(
                job,
                &mut active,
                pods,
                &succeeded_indexes,
                succeeded,
                terminating,
                now,
                &mut out,
            );
            terminating += out.delete.len() as i32;
        }
        let active_count = active.len() as i32 + out.create.len() as i32;
        let complete = match completions {
            None => succeeded > 0 && active_count == 0,
            Some(c) => succeeded >= c && active_count == 0,
        };
        if complete {
            let met = new_condition(
                "SuccessCriteriaMet",
                "True",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
                now,
            );
            conditions.push(met.clone());
            finishing = Some(met);
        } else if expectations_met && job.metadata.deletion_timestamp.is_none() {
            if suspended {
                if ensure_condition(
                    &mut conditions,
                    "Suspended",
                    "True",
                    "JobSuspended",
                    "Job suspended",
                    now,
                ) {
                    out.events
                        .push(("Normal", "Suspended", "Job suspended".into()));
                }
            } else if ensure_condition(
                &mut conditions,
                "Suspended",
                "False",
                "JobResumed",
                "Job resumed",
                now,
            ) {
                out.events.push(("Normal", "Resumed", "Job resumed".into()));
                // The deadline counts the time a Job is continuously active.
                status.start_time = Some(Time(now));
            }
        }
    }
    let active_count = active.len() as i32 + out.create.len() as i32;
    // The terminal condition, once no pod is left terminating.
    if let Some(finish) = &finishing
        && terminating == 0
    {
        let final_type = if finish.type_ == "SuccessCriteriaMet" {
            "Complete"
        } else {
            "Failed"
        };
        let reason = finish.reason.clone().unwrap_or_default();
        let message = finish.message.clone().unwrap_or_default();
        conditions.push(new_condition(final_type, "True", &reason, &message, now));
        if final_type == "Complete" {
            status.completion_time = Some(Time(now));
            if completions.is_some_and(|c| succeeded > c) {
                out.events.push((
                    "Warning",
                    "TooManySucceededPods",
                    "Too many succeeded pods running after completion count reached".into(),
                ));
            }
            out.events
                .push(("Normal", "Completed", "Job completed".into()));
        } else {
            let reason: &'static str = match reason.as_str() {
                "BackoffLimitExceeded" => "BackoffLimitExceeded",
                "DeadlineExceeded" => "DeadlineExceeded",
                _ => "JobFailed",
            };
            out.events.push(("Warning", reason, message));
        }
    }
    status.active = (active_count > 0).then_some(active_count);
    status.ready = Some(ready.max(0));
    status.terminating = Some(terminating);
    status.succeeded = (succeeded > 0).then_some(succeeded);
    status.failed = (failed > 0).then_some(failed);
    if indexed {
        status.completed_indexes = Some(format_indexes(&succeeded_indexes));
    }
    status.conditions = (!conditions.is_empty()).then_some(conditions);
    if status.uncounted_terminated_pods.is_none() {
        status.uncounted_terminated_pods = Some(Default::default());
    }
    out.status = status;
    out
}

/// Under `restartPolicy: OnFailure` a failing container restarts in place; its restarts count
/// toward `backoffLimit`.
fn past_backoff_limit_on_failure(job: &Job, pods: &[&Pod]) -> bool {
    let spec = job.spec.as_ref();
    let policy = spec
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.restart_policy.as_deref());
    if policy != Some("OnFailure") {
        return false;
    }
    let restarts: i32 = pods
        .iter()
        .filter(|p| matches!(phase(p), "Running" | "Pending"))
        .filter_map(|p| p.status.as_ref())
        .flat_map(|s| {
            s.init_container_statuses
                .iter()
                .flatten()
                .chain(s.container_statuses.iter().flatten())
        })
        .map(|c| c.restart_count)
        .sum();
    let limit = spec.and_then(|s| s.backoff_limit).unwrap_or(6);
    if limit == 0 {
        restarts > 0
    } else {
        restarts >= limit
    }
}

/// The pods to remove first: unscheduled, then pending, then not ready, then the newest.
fn removal_order(pod: &Pod) -> impl Ord {
    let scheduled = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_ref())
        .is_some();
    let running = phase(pod) == "Running";
    (
        scheduled,
        running,
        is_ready(pod),
        std::cmp::Reverse(pod.metadata.creation_timestamp.clone()),
    )
}

/// Creates or deletes toward `parallelism` and the remaining completions (manageJob).
#[allow(clippy::too_many_arguments)] // the pass's state, as manageJob has it
fn manage(
    job: &Job,
    active: &mut Vec<&Pod>,
    pods: &[&Pod],
    succeeded_indexes: &BTreeSet<i32>,
    succeeded: i32,
    terminating: i32,
    now: jiff::Timestamp,
    out: &mut Plan,
) {
    let spec = job.spec.clone().unwrap_or_default();
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    if is_suspended(job) {
        out.delete
            .extend(active.iter().filter_map(|p| p.metadata.name.clone()));
        active.clear();
        return;
    }
    let want = match spec.completions {
        None if succeeded > 0 => active.len() as i32,
        None => parallelism,
        Some(c) => (c - succeeded).clamp(0, parallelism),
    };
    // Indexed: pods with no valid index, a repeated one, or one already succeeded go first.
    let mut remove: Vec<&Pod> = Vec::new();
    if is_indexed(job) {
        let completions = spec.completions.unwrap_or(0);
        let mut seen = HashSet::new();
        let mut sorted = active.clone();
        sorted.sort_by_key(|p| std::cmp::Reverse(removal_order(p)));
        for pod in sorted {
            match completion_index(pod) {
                Some(i) if i < completions && !succeeded_indexes.contains(&i) && seen.insert(i) => {
                }
                _ => remove.push(pod),
            }
        }
    }
    let at_least = (active.len() as i32 - want).max(0) as usize;
    if remove.len() < at_least {
        let mut rest: Vec<&Pod> = active
            .iter()
            .copied()
            .filter(|p| !remove.iter().any(|r| r.metadata.name == p.metadata.name))
            .collect();
        rest.sort_by_key(|p| removal_order(p));
        let extra = at_least - remove.len();
        remove.extend(rest.into_iter().take(extra));
    }
    if !remove.is_empty() {
        remove.truncate(MAX_PER_SYNC);
        out.delete
            .extend(remove.iter().filter_map(|p| p.metadata.name.clone()));
        active.retain(|p| !remove.iter().any(|r| r.metadata.name == p.metadata.name));
        return;
    }
    let replacing_only_failed = spec.pod_replacement_policy.as_deref() == Some("Failed");
    let blocking = if replacing_only_failed {
        terminating
    } else {
        0
    };
    let diff = want - blocking - active.len() as i32;
    if diff <= 0 {
        return;
    }
    let remaining = backoff_remaining(pods, now);
    if !remaining.is_zero() {
        // The sooner of the back-off's end and the deadline.
        out.requeue = Some(out.requeue.map_or(remaining, |r| r.min(remaining)));
        return;
    }
    let diff = (diff as usize).min(MAX_PER_SYNC);
    if is_indexed(job) {
        let held: HashSet<i32> = active.iter().filter_map(|p| completion_index(p)).collect();
        let completions = spec.completions.unwrap_or(0);
        out.create.extend(
            (0..completions)
                .filter(|i| !succeeded_indexes.contains(i) && !held.contains(i))
                .take(diff)
                .map(Some),
        );
    } else {
        out.create.extend(std::iter::repeat_n(None, diff));
    }
}

/// The pod for `job` (with completion `index` for an Indexed Job).
pub fn pod_for(job: &Job, index: Option<i32>) -> Pod {
    let name = job.metadata.name.clone().unwrap_or_default();
    let template = job.spec.clone().unwrap_or_default().template;
    let mut metadata = template.metadata.unwrap_or_default();
    let mut spec = template.spec.unwrap_or_default();
    metadata.name = None;
    metadata.namespace = job.metadata.namespace.clone();
    metadata.generate_name = Some(format!("{name}-"));
    metadata.owner_references = Some(vec![OwnerReference {
        api_version: "batch/v1".into(),
        kind: "Job".into(),
        name: name.clone(),
        uid: job.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }]);
    if let Some(index) = index {
        metadata.generate_name = Some(format!("{name}-{index}-"));
        metadata
            .annotations
            .get_or_insert_default()
            .insert(COMPLETION_INDEX.into(), index.to_string());
        metadata
            .labels
            .get_or_insert_default()
            .insert(COMPLETION_INDEX.into(), index.to_string());
        spec.hostname = Some(format!("{name}-{index}"));
        let variable = EnvVar {
            name: "JOB_COMPLETION_INDEX".into(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    api_version: None,
                    field_path: format!("metadata.annotations['{COMPLETION_INDEX}']"),
                }),
                ..Default::default()
            }),
        };
        for container in spec
            .containers
            .iter_mut()
            .chain(spec.init_containers.iter_mut().flatten())
        {
            let env = container.env.get_or_insert_default();
            if !env.iter().any(|e| e.name == "JOB_COMPLETION_INDEX") {
                env.push(variable.clone());
            }
        }
    }
    Pod {
        metadata,
        spec: Some(spec),
        status: None,
    }
}

/// How many Jobs are reconciled at once (upstream's `ConcurrentJobSyncs`).
const WORKERS: usize = 5;

/// What the informers' handlers need: the Jobs to resolve owners in, the queue to put their
/// keys on, and the expectations to report what they see to.
#[derive(Clone)]
struct Handlers {
    jobs: Informer<Job>,
    queue: WorkQueue,
    expectations: Expectations,
}

impl Handlers {
    /// The Job a controller reference names, if it still exists with that uid (upstream's
    /// `resolveControllerRef`).
    fn resolve(&self, pod: &Pod, owner: Option<&OwnerReference>) -> Option<Key> {
        let owner = owner.filter(|o| o.kind == "Job")?;
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        self.jobs
            .get(namespace, &owner.name)
            .filter(|job| job.metadata.uid.as_deref() == Some(owner.uid.as_str()))
            .map(|job| Key::of(&*job))
    }

    /// upstream's `addPod`, `updatePod` and `deletePod` (a Job adopts no orphans).
    fn pod(&self, change: Change<'_, Pod>) {
        match change {
            // Already going (seen first after a restart): no creation to observe.
            Change::Add(pod) if pod.metadata.deletion_timestamp.is_some() => self.pod_gone(pod),
            Change::Add(pod) => {
                if let Some(key) = self.resolve(pod, controller_ref(&pod.metadata)) {
                    self.expectations.creation_observed(&key.to_string());
                    self.queue.add(key);
                }
            }
            Change::Update { old, new } => {
                if old.metadata.resource_version == new.metadata.resource_version {
                    return;
                }
                // A pod being deleted counts as deleted: the Job need not wait for its grace
                // period to act again.
                if new.metadata.deletion_timestamp.is_some() {
                    return self.pod_gone(new);
                }
                let (was, is) = (controller_ref(&old.metadata), controller_ref(&new.metadata));
                if was != is
                    && let Some(key) = self.resolve(old, was)
                {
                    self.queue.add(key);
                }
                if let Some(key) = self.resolve(new, is) {
                    self.queue.add(key);
                }
            }
            Change::Delete(pod) => self.pod_gone(pod),
        }
    }

    /// A pod went (or started terminating): its Job's deletion expectation is met.
    fn pod_gone(&self, pod: &Pod) {
        if let Some(key) = self.resolve(pod, controller_ref(&pod.metadata)) {
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            self.expectations.deletion_observed(&key.to_string(), name);
            self.queue.add(key);
        }
    }
}

/// The Job controller: built on the shared informers, reconciling one Job per key.
pub struct JobController {
    client: kube::Client,
    flow: Flow,
    jobs: Informer<Job>,
    pods: Informer<Pod>,
    queue: WorkQueue,
    expectations: Expectations,
}

impl JobController {
    /// A controller on `ctx`'s informers (Jobs and pods), writing as `controller/job`.
    pub fn new(ctx: &Context) -> Self {
        let handlers = Handlers {
            jobs: ctx.factory.informer::<Job>(),
            queue: WorkQueue::new("job"),
            expectations: Expectations::default(),
        };
        let controller = JobController {
            client: ctx.client("job"),
            flow: ctx.flow.clone(),
            jobs: handlers.jobs.clone(),
            pods: ctx.factory.informer::<Pod>(),
            queue: handlers.queue.clone(),
            expectations: handlers.expectations.clone(),
        };
        let h = handlers.clone();
        controller
            .jobs
            .add_handler(move |c| super::owner_changed(&h.queue, &h.expectations, c));
        controller.pods.add_handler(move |c| handlers.pod(c));
        controller
    }

    /// The flow event of a hop this controller takes.
    fn hop(&self, verb: &str, job: &Job, detail: String) -> FlowEvent {
        let mut e = FlowEvent::new(COMPONENT, "apiserver", verb)
            .object(
                "Job",
                job.metadata.namespace.as_deref().unwrap_or_default(),
                job.metadata.name.as_deref().unwrap_or_default(),
            )
            .detail(detail);
        e.uid = job.metadata.uid.clone().unwrap_or_default();
        e
    }

    async fn record(&self, job: &Job, event_type: &str, reason: &str, message: &str) {
        event(&self.client, job, SOURCE, event_type, reason, message).await;
    }

    /// Waits for the caches, then reconciles the Jobs whose keys come up, forever.
    pub async fn run(self) {
        self.jobs.synced().await;
        self.pods.synced().await;
        run_workers(self.queue.clone(), WORKERS, |key| self.sync(key)).await;
    }

    /// Reconciles the Job `key` from the caches (upstream's `syncJob`): carries out its
    /// [`plan`], and asks to be woken when its back-off or deadline runs out.
    async fn sync(&self, key: Key) -> Result<Action, JobError> {
        let id = key.to_string();
        let Some(job) = self.jobs.get(&key.namespace, &key.name) else {
            self.expectations.forget(&id);
            return Ok(Action::Done);
        };
        let (Some(name), Some(uid)) = (job.metadata.name.clone(), job.metadata.uid.clone()) else {
            return Ok(Action::Done);
        };
        if is_finished(&job) {
            return Ok(Action::Done);
        }
        let mut pods: Vec<Arc<Pod>> = self
            .pods
            .by_index(BY_OWNER, &uid)
            .into_iter()
            .filter(|p| p.metadata.namespace == job.metadata.namespace)
            .collect();
        pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let pods: Vec<&Pod> = pods.iter().map(|p| &**p).collect();
        let met = self.expectations.satisfied(&id);
        let plan = plan(&job, &pods, jiff::Timestamp::now(), met);
        let pods_api: Api<Pod> = Api::namespaced(self.client.clone(), &key.namespace);
        if !plan.delete.is_empty() {
            self.flow
                .gate_emit(self.hop(
                    "DELETE PODS",
                    &job,
                    format!("deleting {} active pod(s) of job {name}", plan.delete.len()),
                ))
                .await;
            // Expected before asking, so that the informer's report cannot come first.
            self.expectations
                .expect_deletions(&id, plan.delete.iter().cloned());
            for pod in &plan.delete {
                match pods_api.delete(pod, &DeleteParams::background()).await {
                    Ok(_) => {
                        self.record(
                            &job,
                            "Normal",
                            "SuccessfulDelete",
                            &format!("Deleted pod: {pod}"),
                        )
                        .await;
                    }
                    Err(kube::Error::Api(e)) if e.code == 404 => {
                        self.expectations.deletion_observed(&id, pod);
                    }
                    Err(error) => {
                        self.expectations.deletion_observed(&id, pod);
                        self.record(
                            &job,
                            "Warning",
                            "FailedDelete",
                            &format!("Error deleting: {error}"),
                        )
                        .await;
                    }
                }
            }
        }
        let mut created = 0;
        if !plan.create.is_empty() {
            self.flow
                .gate_emit(self.hop(
                    "CREATE PODS",
                    &job,
                    format!("creating {} pod(s) for job {name}", plan.create.len()),
                ))
                .await;
            self.expectations.expect_creations(&id, plan.create.len());
            for index in &plan.create {
                match pods_api
                    .create(&PostParams::default(), &pod_for(&job, *index))
                    .await
                {
                    Ok(pod) => {
                        let pod_name = pod.metadata.name.unwrap_or_default();
                        created += 1;
                        self.record(
                            &job,
                            "Normal",
                            "SuccessfulCreate",
                            &format!("Created pod: {pod_name}"),
                        )
                        .await;
                    }
                    Err(source) => {
                        self.record(
                            &job,
                            "Warning",
                            "FailedCreate",
                            &format!("Error creating: {source}"),
                        )
                        .await;
                        // Neither this pod nor the ones not tried will show up, and they are
                        // not active: the retry creates them.
                        let missing = plan.create.len() - created;
                        for _ in 0..missing {
                            self.expectations.creation_observed(&id);
                        }
                        let mut status = plan.status.clone();
                        status.active =
                            status.active.map(|a| a - missing as i32).filter(|a| *a > 0);
                        self.write_status(&job, status).await?;
                        return Err(JobError::Create { job: name, source });
                    }
                }
            }
        }
        if job.status.as_ref() != Some(&plan.status) {
            self.write_status(&job, plan.status.clone()).await?;
            for (event_type, reason, message) in &plan.events {
                self.record(&job, event_type, reason, message).await;
            }
        }
        // A Job waiting for its own pods to show up looks again once the expectations time
        // out, should one never come.
        let wait = (!met).then_some(EXPECTATIONS_TIMEOUT);
        let requeue = plan.requeue.map(|r| r + REQUEUE_SLACK);
        Ok(match (requeue, wait) {
            (Some(a), Some(b)) => Action::RequeueAfter(a.min(b)),
            (Some(d), None) | (None, Some(d)) => Action::RequeueAfter(d),
            (None, None) => Action::Done,
        })
    }

    async fn write_status(&self, job: &Job, status: JobStatus) -> Result<(), JobError> {
        let namespace = job.metadata.namespace.clone().unwrap_or_default();
        let name = job.metadata.name.clone().unwrap_or_default();
        let mut updated = job.clone();
        let summary = format!(
            "active {} ready {} succeeded {} failed {}{}",
            status.active.unwrap_or(0),
            status.ready.unwrap_or(0),
            status.succeeded.unwrap_or(0),
            status.failed.unwrap_or(0),
            status
                .conditions
                .iter()
                .flatten()
                .filter(|c| c.status == "True")
                .map(|c| format!(", {}", c.type_))
                .collect::<String>()
        );
        updated.status = Some(status);
        self.flow
            .gate_emit(self.hop("UPDATE STATUS", job, summary))
            .await;
        let api: Api<Job> = Api::namespaced(self.client.clone(), &namespace);
        api.replace_status(&name, &PostParams::default(), &updated)
            .await
            .map(|_| ())
            .map_err(|source| JobError::Status { job: name, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    const NOW: i64 = 1_700_000_000;

    fn at(second: i64) -> String {
        jiff::Timestamp::from_second(second).unwrap().to_string()
    }

    fn job(spec: Value, status: Value) -> Job {
        let mut spec_full = json!({
            "parallelism": 2, "backoffLimit": 6, "completionMode": "NonIndexed", "suspend": false,
            "podReplacementPolicy": "TerminatingOrFailed",
            "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}},
        });
        for (k, v) in spec.as_object().unwrap() {
            spec_full[k] = v.clone();
        }
        serde_json::from_value(json!({
            "metadata": {"name": "j", "namespace": "default", "uid": "job-uid"},
            "spec": spec_full, "status": status,
        }))
        .unwrap()
    }

    /// A pod: name, phase, completion index, when it finished, being deleted, restarts.
    fn pod(name: &str, phase: &str, index: Option<i32>, finished: i64, deleting: bool) -> Pod {
        let mut p = json!({
            "metadata": {"name": name, "namespace": "default", "creationTimestamp": at(finished - 5)},
            "status": {"phase": phase},
        });
        if let Some(i) = index {
            p["metadata"]["annotations"] = json!({COMPLETION_INDEX: i.to_string()});
        }
        if deleting {
            p["metadata"]["deletionTimestamp"] = json!(at(NOW));
        }
        if matches!(phase, "Succeeded" | "Failed") {
            p["status"]["containerStatuses"] = json!([{"name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "finishedAt": at(finished)}}}]);
        }
        serde_json::from_value(p).unwrap()
    }

    fn types(status: &JobStatus) -> Vec<String> {
        status
            .conditions
            .iter()
            .flatten()
            .map(|c| {
                format!(
                    "{}={}/{}",
                    c.type_,
                    c.status,
                    c.reason.clone().unwrap_or_default()
                )
            })
            .collect()
    }

    struct Case {
        name: &'static str,
        job: Job,
        pods: Vec<Pod>,
        met: bool,
        delete: usize,
        create: Vec<Option<i32>>,
        conditions: &'static [&'static str],
        events: &'static [&'static str],
        requeue: Option<u64>,
    }

    #[test]
    fn plans() {
        let ft = json!({"conditions": [{"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}], "failed": 3});
        let cases = vec![
            Case {
                name: "a new job starts parallelism pods",
                job: job(json!({"completions": 3}), json!(null)),
                pods: vec![],
                met: true,
                delete: 0,
                create: vec![None, None],
                conditions: &[],
                events: &[],
                requeue: None,
            },
            Case {
                name: "never more than the completions still missing",
                job: job(json!({"completions": 3}), json!(null)),
                pods: vec![
                    pod("a", "Succeeded", None, NOW - 1, false),
                    pod("b", "Succeeded", None, NOW - 1, false),
                ],
                met: true,
                delete: 0,
                create: vec![None],
                conditions: &[],
                events: &[],
                requeue: None,
            },
            Case {
                name: "a lagging cache creates nothing",
                job: job(json!({"completions": 3}), json!(null)),
                pods: vec![],
                met: false,
                delete: 0,
                create: vec![],
                conditions: &[],
                events: &[],
                requeue: None,
            },
            Case {
                name: "all completions: SuccessCriteriaMet, then Complete",
                job: job(json!({"completions": 2}), json!(null)),
                pods: vec![
                    pod("a", "Succeeded", None, NOW - 1, false),
                    pod("b", "Succeeded", None, NOW - 1, false),
                ],
                met: true,
                delete: 0,
                create: vec![],
                conditions: &[
                    "SuccessCriteriaMet=True/CompletionsReached",
                    "Complete=True/CompletionsReached",
                ],
                events: &["Completed"],
                requeue: None,
            },
            Case {
                name: "no completions: one success is enough once nothing runs",
                job: job(json!({"completions": null}), json!(null)),
                pods: vec![
                    pod("a", "Succeeded", None, NOW - 1, false),
                    pod("b", "Running", None, NOW, false),
                ],
                met: true,
                delete: 0,
                create: vec![],
                conditions: &[],
                events: &[],
                requeue: None,
            },
            Case {
                name: "past the backoff limit: active pods go, FailureTarget first",
                job: job(json!({"completions": 3, "backoffLimit": 1}), json!(null)),
                pods: vec![
                    pod("a", "Failed", None, NOW - 1, false),
                    pod("b", "Failed", None, NOW - 1, false),
                    pod("c", "Running", None, NOW, false),
                ],
                met: true,
                delete: 1,
                create: vec![],
                conditions: &["FailureTarget=True/BackoffLimitExceeded"],
                events: &[],
                requeue: None,
            },
            Case {
                name: "FailureTarget and nothing terminating: Failed",
                job: job(json!({"completions": 3, "backoffLimit": 2}), ft.clone()),
                pods: vec![pod("a", "Failed", None, NOW - 1, false)],
                met: true,
                delete: 0,
                create: vec![],
                conditions: &[
                    "FailureTarget=True/BackoffLimitExceeded",
                    "Failed=True/BackoffLimitExceeded",
                ],
                events: &["BackoffLimitExceeded"],
                requeue: None,
            },
            Case {
                name: "FailureTarget with a pod still terminating: not Failed yet",
                job: job(json!({"completions": 3, "backoffLimit": 2}), ft),
                pods: vec![pod("a", "Running", None, NOW, true)],
                met: true,
                delete: 0,
                create: vec![],
                conditions: &["FailureTarget=True/BackoffLimitExceeded"],
                events: &[],
                requeue: None,
            },
            Case {
                name: "one failure: 10 s back-off before the replacement",
                job: job(json!({"completions": 1, "parallelism": 1}), json!(null)),
                pods: vec![pod("a", "Failed", None, NOW - 3, false)],
                met: true,
                delete: 0,
                create: vec![],
                conditions: &[],
                events: &[],
                requeue: Some(7),
            },
            Case {
                name: "two failures: 20 s",
                job: job(json!({"completions": 1, "parallelism": 1}), json!(null)),
                pods: vec![
                    pod("a", "Failed", None, NOW - 30, false),
                    pod("b", "Failed", None, NOW - 12, false),
                ],
                met: true,
                delete: 0,
                create: vec![],
                conditions: &[],
                events: &[],
                requeue: Some(8),
            },
            Case {
                name: "back-off over: replaced",
                job: job(json!({"completions": 1, "parallelism": 1}), json!(null)),
                pods: vec![pod("a", "Failed", None, NOW - 11, false)],
                met: true,
                delete: 0,
                create: vec![None],
                conditions: &[],
                events: &[],
                requeue: None,
            },
            Case {
                name: "past the deadline: DeadlineExceeded",
                job: job(
                    json!({"completions": 1, "activeDeadlineSeconds": 10}),
                    json!({"startTime": at(NOW - 10)}),
                ),
                pods: vec![pod("a", "Running", None, NOW, false)],
                met: true,
                delete: 1,
                create: vec![],
                conditions: &["FailureTarget=True/DeadlineExceeded"],
                events: &[],
                requeue: None,
            },
            Case {
                name: "before the deadline: look again then",
                job: job(
                    json!({"completions": 1, "parallelism": 1, "activeDeadlineSeconds": 10}),
                    json!({"startTime": at(NOW - 4)}),
                ),
                pods: vec![pod("a", "Running", None, NOW, false)],
                met: true,
                delete: 0,
                create: vec![],
                conditions: &[],
                events: &[],
                requeue: Some(6),
            },
            Case {
                name: "a back-off outlasting the deadline: look again at the deadline",
                job: job(
                    json!({"completions": 1, "parallelism": 1, "activeDeadlineSeconds": 10}),
                    json!({"startTime": at(NOW - 4)}),
                ),
                pods: vec![pod("a", "Failed", None, NOW - 3, false)],
                met: true,
                delete: 0,
                create: vec![],
                conditions: &[],
                events: &[],
                requeue: Some(6),
            },
            Case {
                name: "suspended: active pods go",
                job: job(json!({"completions": 3, "suspend": true}), json!(null)),
                pods: vec![
                    pod("a", "Running", None, NOW, false),
                    pod("b", "Pending", None, NOW, false),
                ],
                met: true,
                delete: 2,
                create: vec![],
                conditions: &["Suspended=True/JobSuspended"],
                events: &["Suspended"],
                requeue: None,
            },
            Case {
                name: "indexed: the missing indexes, lowest first",
                job: job(
                    json!({"completions": 4, "parallelism": 2, "completionMode": "Indexed"}),
                    json!(null),
                ),
                pods: vec![
                    pod("a", "Succeeded", Some(0), NOW - 1, false),
                    pod("b", "Running", Some(2), NOW, false),
                ],
                met: true,
                delete: 0,
                create: vec![Some(1)],
                conditions: &[],
                events: &[],
                requeue: None,
            },
            Case {
                name: "indexed: a repeated index goes",
                job: job(
                    json!({"completions": 2, "parallelism": 2, "completionMode": "Indexed"}),
                    json!(null),
                ),
                pods: vec![
                    pod("a", "Running", Some(0), NOW, false),
                    pod("b", "Running", Some(0), NOW, false),
                ],
                met: true,
                delete: 1,
                create: vec![],
                conditions: &[],
                events: &[],
                requeue: None,
            },
        ];
        let now = jiff::Timestamp::from_second(NOW).unwrap();
        for case in cases {
            let pods: Vec<&Pod> = case.pods.iter().collect();
            let plan = plan(&case.job, &pods, now, case.met);
            assert_eq!(plan.delete.len(), case.delete, "{}", case.name);
            assert_eq!(plan.create, case.create, "{}", case.name);
            assert_eq!(types(&plan.status), case.conditions, "{}", case.name);
            let reasons: Vec<&str> = plan.events.iter().map(|e| e.1).collect();
            assert_eq!(reasons, case.events, "{}", case.name);
            assert_eq!(
                plan.requeue,
                case.requeue.map(Duration::from_secs),
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn status_counts() {
        let j = job(
            json!({"completions": 3, "completionMode": "Indexed"}),
            json!({"completedIndexes": "0"}),
        );
        let pods = [
            pod("a", "Succeeded", Some(2), NOW - 1, false),
            pod("b", "Running", Some(1), NOW, false),
            pod("c", "Running", Some(1), NOW, true),
        ];
        let pods: Vec<&Pod> = pods.iter().collect();
        let status = plan(&j, &pods, jiff::Timestamp::from_second(NOW).unwrap(), true).status;
        assert_eq!(status.active, Some(1));
        assert_eq!(status.terminating, Some(1));
        assert_eq!(status.succeeded, Some(2));
        assert_eq!(status.completed_indexes.as_deref(), Some("0,2"));
        assert_eq!(
            status.start_time,
            Some(Time(jiff::Timestamp::from_second(NOW).unwrap()))
        );
    }

    #[test]
    fn restarts_count_toward_the_limit_under_on_failure() {
        let mut j = job(json!({"completions": 1, "backoffLimit": 2}), json!(null));
        j.spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .restart_policy = Some("OnFailure".into());
        let mut p = pod("a", "Running", None, NOW, false);
        p.status.as_mut().unwrap().container_statuses = Some(vec![
            serde_json::from_value(json!({"name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 2})).unwrap(),
        ]);
        let plan = plan(&j, &[&p], jiff::Timestamp::from_second(NOW).unwrap(), true);
        assert_eq!(
            types(&plan.status),
            ["FailureTarget=True/BackoffLimitExceeded"]
        );
        assert_eq!(plan.delete, ["a"]);
    }

    #[tokio::test]
    async fn pod_changes_wake_their_job_and_meet_expectations() {
        use kube::runtime::watcher::Event;
        let ctx = Context::offline();
        let controller = JobController::new(&ctx);
        let (queue, expectations) = (&controller.queue, &controller.expectations);
        let (jobs, pods) = (ctx.factory.informer::<Job>(), ctx.factory.informer::<Pod>());
        let j = job(json!({"completions": 2}), json!(null));
        jobs.apply(Event::Apply(j.clone()), &mut None);
        assert_eq!(queue.drain_sorted().await, ["default/j"]);

        let owned = |name: &str, rv: &str, deleting: bool| {
            let mut p = pod(name, "Running", None, NOW, deleting);
            p.metadata.resource_version = Some(rv.into());
            p.metadata.owner_references = pod_for(&j, None).metadata.owner_references;
            p
        };
        expectations.expect_creations("default/j", 2);
        pods.apply(Event::Apply(owned("a", "1", false)), &mut None);
        assert!(!expectations.satisfied("default/j"));
        pods.apply(Event::Apply(owned("b", "2", false)), &mut None);
        assert!(expectations.satisfied("default/j"));
        assert_eq!(queue.drain_sorted().await, ["default/j"]);

        // A pod starting to terminate counts as deleted; its final deletion wakes the Job too.
        expectations.expect_deletions("default/j", ["a".to_owned()]);
        pods.apply(Event::Apply(owned("a", "3", true)), &mut None);
        assert!(expectations.satisfied("default/j"));
        assert_eq!(queue.drain_sorted().await, ["default/j"]);
        pods.apply(Event::Delete(owned("a", "4", true)), &mut None);
        assert_eq!(queue.drain_sorted().await, ["default/j"]);

        // Orphans and another Job's pods (same name, other uid) wake nothing: no adoption.
        let mut orphan = pod("c", "Running", None, NOW, false);
        orphan.metadata.resource_version = Some("5".into());
        pods.apply(Event::Apply(orphan), &mut None);
        let mut foreign = owned("d", "6", false);
        foreign.metadata.owner_references.as_mut().unwrap()[0].uid = "other".into();
        pods.apply(Event::Apply(foreign), &mut None);
        assert!(queue.drain_sorted().await.is_empty());

        // Deleting the Job forgets what it waited for.
        expectations.expect_creations("default/j", 1);
        jobs.apply(Event::Delete(j), &mut None);
        assert!(expectations.satisfied("default/j"));
    }

    #[test]
    fn completed_indexes_round_trip() {
        for (text, indexes) in [
            ("", vec![]),
            ("0", vec![0]),
            ("0-2", vec![0, 1, 2]),
            ("1,3-5,7", vec![1, 3, 4, 5, 7]),
        ] {
            let set: BTreeSet<i32> = indexes.into_iter().collect();
            assert_eq!(format_indexes(&set), text);
            assert_eq!(parse_indexes(text), set);
        }
    }

    #[test]
    fn indexed_pods_carry_their_index() {
        let j = job(
            json!({"completions": 3, "completionMode": "Indexed"}),
            json!(null),
        );
        let p = pod_for(&j, Some(2));
        assert_eq!(p.metadata.generate_name.as_deref(), Some("j-2-"));
        assert_eq!(p.metadata.annotations.unwrap()[COMPLETION_INDEX], "2");
        assert_eq!(p.metadata.labels.unwrap()[COMPLETION_INDEX], "2");
        let spec = p.spec.unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("j-2"));
        let env = spec.containers[0].env.clone().unwrap();
        assert_eq!(env[0].name, "JOB_COMPLETION_INDEX");
        let owner = &p.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (
                owner.kind.as_str(),
                owner.uid.as_str(),
                owner.controller,
                owner.block_owner_deletion
            ),
            ("Job", "job-uid", Some(true), Some(true))
        );
        let plain = pod_for(&j, None);
        assert_eq!(plain.metadata.generate_name.as_deref(), Some("j-"));
    }
}
