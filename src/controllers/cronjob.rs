//! The CronJob controller (batch/v1), kube-controller-manager's `cronjob_controllerv2`: each
//! CronJob is a key on a work queue, synced when it or one of its Jobs changes and again just
//! after its next scheduled time (100 ms late, as upstream). A sync reaps finished Jobs past
//! `successfulJobsHistoryLimit` / `failedJobsHistoryLimit` (oldest start first), follows the
//! Jobs it owns into `status.active` (`SawCompletedJob`, `lastSuccessfulTime`, `MissingJob`),
//! and, unless the CronJob is suspended or being deleted, finds the most recent unmet scheduled
//! time ([`most_recent_schedule_time`], in the CronJob's `timeZone` or the controller's local
//! zone): missed by more than `startingDeadlineSeconds` is `MissSchedule`, more than 100 missed
//! a `TooManyMissedTimes` warning, already run is nothing, `Forbid` with an active Job is
//! `JobAlreadyActive`, `Replace` deletes the active Jobs first; then it creates the Job
//! `<cronjob>-<scheduled time in minutes since the epoch>` from the template (owned by the
//! CronJob, annotated `batch.kubernetes.io/cronjob-scheduled-timestamp`) and records it in
//! `status.active` and `lastScheduleTime`. The schedule language is
//! [`crate::apimachinery::cron`]'s; [`plan`] is the pure decision.

use std::sync::Arc;
use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::api::{Api, DeleteParams, PostParams};

use super::Context;
use super::workqueue::{Action, Key, WorkQueue, run_workers};
use crate::apimachinery::cron::{self, Schedule};
use crate::flow::{Flow, FlowEvent};
use crate::informers::{Change, Informer};

const COMPONENT: &str = "controller/cronjob";
const SOURCE: &str = "cronjob-controller";
/// The annotation with a Job's scheduled time (RFC 3339, in the CronJob's time zone).
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// How late after a scheduled time the CronJob is looked at again (upstream's
/// `nextScheduleDelta`, against clock skew).
const NEXT_SCHEDULE_DELTA: SignedDuration = SignedDuration::from_millis(100);
/// More missed start times than this is "too many".
const TOO_MANY_MISSED: i64 = 100;

/// What went wrong syncing a CronJob (the key is requeued rate-limited).
#[derive(Debug, thiserror::Error)]
pub enum CronJobError {
    /// A request to the API server failed.
    #[error("{what} for cronjob {cronjob}: {source}")]
    Api {
        /// What was asked.
        what: &'static str,
        /// `namespace/name`.
        cronjob: String,
        /// The API error.
        source: kube::Error,
    },
    /// `Replace` could not delete an active Job.
    #[error("could not replace job {0}")]
    Replace(String),
}

/// How many scheduled times have passed since the CronJob last ran (roughly, as upstream
/// counts them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missed {
    /// None.
    None,
    /// Up to 100.
    Few,
    /// More than 100.
    Many,
}

/// The schedule never fires twice a second apart (a date that never occurs, like `31 2`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("time difference between two schedules is less than 1 second")]
pub struct NeverFires;

/// What [`most_recent_schedule_time`] finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MostRecent {
    /// The time counted from: the last scheduled time, else the creation time (moved up to
    /// the starting deadline when asked).
    pub earliest: Timestamp,
    /// The latest scheduled time at or before now, if one has passed since `earliest`.
    pub time: Option<Timestamp>,
    /// How many passed.
    pub missed: Missed,
}

/// The times a schedule needs: when counting starts and now, in the zone the schedule runs in
/// when it names none.
#[derive(Debug, Clone)]
pub struct When<'a> {
    /// The CronJob's creation time.
    pub created: Timestamp,
    /// `status.lastScheduleTime`.
    pub last_scheduled: Option<Timestamp>,
    /// `spec.startingDeadlineSeconds`.
    pub starting_deadline: Option<i64>,
    /// Now.
    pub now: Timestamp,
    /// The controller's local zone.
    pub local: &'a TimeZone,
}

/// Upstream's `mostRecentScheduleTime`: the latest scheduled time in (earliest, now], found by
/// stepping back from an estimate of how many were missed, so a years-old CronJob costs a few
/// steps rather than millions.
pub fn most_recent_schedule_time(
    schedule: &Schedule,
    when: &When<'_>,
    include_starting_deadline: bool,
) -> Result<MostRecent, NeverFires> {
    let mut earliest = when.last_scheduled.unwrap_or(when.created);
    if include_starting_deadline && let Some(deadline) = when.starting_deadline {
        let limit = when.now - SignedDuration::from_secs(deadline);
        if limit > earliest {
            earliest = limit;
        }
    }
    let next = |t: Timestamp| schedule.next_after(t, when.local);
    let (Some(t1), Some(t2)) = (next(earliest), next(earliest).and_then(next)) else {
        return Err(NeverFires);
    };
    let result = |time, missed| MostRecent {
        earliest,
        time,
        missed,
    };
    if when.now < t1 {
        return Ok(result(None, Missed::None));
    }
    if when.now < t2 {
        return Ok(result(Some(t1), Missed::None));
    }
    let between = t2
        .duration_since(t1)
        .round(jiff::Unit::Second)
        .unwrap_or_default();
    let between = between.as_secs();
    if between < 1 {
        return Err(NeverFires);
    }
    let elapsed = when.now.duration_since(t1).as_secs();
    let missed_count = elapsed / between + 1;
    let potential = t1 + SignedDuration::from_secs((missed_count - 2) * between);
    let mut most_recent = None;
    let mut t = next(potential);
    // Bounded: the estimate lands within a period or two of now.
    for _ in 0..100_000 {
        match t {
            Some(at) if at <= when.now => {
                most_recent = Some(at);
                t = next(at);
            }
            _ => break,
        }
    }
    let missed = if missed_count > TOO_MANY_MISSED {
        Missed::Many
    } else {
        Missed::Few
    };
    Ok(result(most_recent, missed))
}

/// Upstream's `nextScheduleTimeDuration`: how long until just after the next scheduled time
/// (none when the schedule never fires again).
pub fn next_schedule_delay(schedule: &Schedule, when: &When<'_>) -> Option<Duration> {
    let from = match most_recent_schedule_time(schedule, when, false) {
        Err(_) => when.now,
        Ok(MostRecent { time: Some(t), .. }) => t,
        Ok(MostRecent {
            earliest,
            missed: Missed::None,
            ..
        }) => earliest,
        Ok(_) => when.now,
    };
    let next = schedule.next_after(from, when.local)?;
    let delay = (next + NEXT_SCHEDULE_DELTA).duration_since(when.now);
    Some(delay.try_into().unwrap_or(Duration::ZERO))
}

/// The schedule the controller runs: `TZ=<timeZone> <schedule>` when a (loadable) zone is
/// given, the schedule as written otherwise.
pub fn format_schedule(cj: &CronJob) -> String {
    let spec = cj.spec.as_ref();
    let schedule = spec.map(|s| s.schedule.clone()).unwrap_or_default();
    if schedule.contains("TZ") {
        return schedule;
    }
    match spec.and_then(|s| s.time_zone.as_deref()) {
        Some(tz) if cron::load_location(tz).is_ok() => format!("TZ={tz} {schedule}"),
        _ => schedule,
    }
}

/// `<cronjob>-<scheduled time in minutes since the epoch>`.
pub fn job_name(cronjob: &str, scheduled: Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second().div_euclid(60))
}

/// Upstream's `getJobFromTemplate2`: the Job for one scheduled time.
pub fn job_from_template(cj: &CronJob, scheduled: Timestamp) -> Job {
    let template = cj
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    // The zone of `timeZone`, UTC when none (Go's `LoadLocation("")`).
    let tz = cj
        .spec
        .as_ref()
        .and_then(|s| s.time_zone.as_deref())
        .and_then(|tz| cron::load_location(tz).ok())
        .unwrap_or(TimeZone::UTC);
    annotations.insert(SCHEDULED_TIMESTAMP.into(), rfc3339(scheduled, &tz));
    let name = cj.metadata.name.clone().unwrap_or_default();
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(&name, scheduled)),
            namespace: cj.metadata.namespace.clone(),
            labels: meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".into(),
                kind: "CronJob".into(),
                name,
                uid: cj.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// Go's `time.RFC3339` of `t` in `tz`: `Z` for UTC, else the offset.
fn rfc3339(t: Timestamp, tz: &TimeZone) -> String {
    let zoned = t.to_zoned(tz.clone());
    if zoned.offset().seconds() == 0 {
        zoned.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        zoned.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }
}

/// `Complete` or `Failed`, if the Job has finished.
pub fn finished(job: &Job) -> Option<&'static str> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    ["Complete", "Failed"].into_iter().find(|t| {
        conditions
            .iter()
            .any(|c| c.type_ == *t && c.status == "True")
    })
}

/// The finished Jobs past a history limit, oldest start first (`byJobStartTime`: Jobs
/// without a start time last, ties by name).
pub fn over_history_limit<'a>(jobs: &[&'a Job], limit: i32) -> Vec<&'a Job> {
    let excess = jobs.len().saturating_sub(limit.max(0) as usize);
    let mut sorted = jobs.to_vec();
    sorted.sort_by(|a, b| {
        let start = |j: &Job| j.status.as_ref().and_then(|s| s.start_time.clone());
        match (start(a), start(b)) {
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(_), None) => std::cmp::Ordering::Less,
            (x, y) if x == y => a.metadata.name.cmp(&b.metadata.name),
            (x, y) => x.map(|t| t.0).cmp(&y.map(|t| t.0)),
        }
    });
    sorted.truncate(excess);
    sorted
}

/// What a sync decides about starting a Job, given the CronJob as the sync has brought it up
/// to date.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Nothing to do (suspended, or being deleted): no requeue.
    Idle,
    /// The schedule does not parse (`UnparseableSchedule`) or never fires (`InvalidSchedule`):
    /// nothing until the spec changes.
    BadSchedule {
        /// The event's reason.
        reason: &'static str,
        /// The event's message.
        message: String,
    },
    /// Nothing is due; look again after `requeue`.
    Wait {
        /// When to look again.
        requeue: Option<Duration>,
        /// The scheduled time that was missed by more than the starting deadline.
        missed: Option<Timestamp>,
        /// Whether a prior run at the due time blocks this one (`Forbid`).
        already_active: bool,
        /// More than 100 start times were missed.
        too_many_missed: bool,
    },
    /// Start the Job for `scheduled` (deleting the active ones first under `Replace`).
    Run {
        /// The scheduled time.
        scheduled: Timestamp,
        /// Whether the active Jobs go first.
        replace: bool,
        /// When to look again.
        requeue: Option<Duration>,
        /// More than 100 start times were missed.
        too_many_missed: bool,
    },
}

/// The decision of `syncCronJob` after the active list is current: upstream's order of checks,
/// pure (the controller's local zone and now are given).
pub fn plan(cj: &CronJob, now: Timestamp, local: &TimeZone) -> Plan {
    let spec = cj.spec.clone().unwrap_or_default();
    if cj.metadata.deletion_timestamp.is_some() {
        return Plan::Idle;
    }
    if let Some(tz) = spec.time_zone.as_deref()
        && let Err(e) = cron::load_location(tz)
    {
        return Plan::BadSchedule {
            reason: "UnknownTimeZone",
            message: format!("invalid timeZone: {tz:?}: {e}"),
        };
    }
    if spec.suspend == Some(true) {
        return Plan::Idle;
    }
    let schedule = match cron::parse(&format_schedule(cj)) {
        Ok(s) => s,
        Err(e) => {
            return Plan::BadSchedule {
                reason: "UnparseableSchedule",
                message: format!("unparseable schedule: {:?} : {e}", spec.schedule),
            };
        }
    };
    let status = cj.status.clone().unwrap_or_default();
    let when = When {
        created: cj.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0),
        last_scheduled: status.last_schedule_time.as_ref().map(|t| t.0),
        starting_deadline: spec.starting_deadline_seconds,
        now,
        local,
    };
    let requeue = next_schedule_delay(&schedule, &when);
    let wait = |missed, already_active, too_many_missed| Plan::Wait {
        requeue,
        missed,
        already_active,
        too_many_missed,
    };
    let found = match most_recent_schedule_time(&schedule, &when, true) {
        Ok(found) => found,
        Err(e) => {
            return Plan::BadSchedule {
                reason: "InvalidSchedule",
                message: format!("invalid schedule: {} : {e}", spec.schedule),
            };
        }
    };
    let Some(scheduled) = found.time.filter(|t| *t <= now) else {
        return wait(None, false, false);
    };
    let too_many = found.missed == Missed::Many;
    if let Some(deadline) = spec.starting_deadline_seconds
        && scheduled + SignedDuration::from_secs(deadline) < now
    {
        return wait(Some(scheduled), false, too_many);
    }
    let active = status.active.unwrap_or_default();
    let name = job_name(cj.metadata.name.as_deref().unwrap_or_default(), scheduled);
    let namespace = cj.metadata.namespace.clone();
    if active
        .iter()
        .any(|r| r.name.as_ref() == Some(&name) && r.namespace == namespace)
        || status.last_schedule_time.map(|t| t.0) == Some(scheduled)
    {
        return wait(None, false, too_many);
    }
    let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
    if policy == "Forbid" && !active.is_empty() {
        return wait(None, true, too_many);
    }
    Plan::Run {
        scheduled,
        replace: policy == "Replace",
        requeue,
        too_many_missed: too_many,
    }
}

/// `getRef`: the reference `status.active` keeps.
fn reference(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        field_path: None,
    }
}

fn in_active(cj: &CronJob, uid: &str) -> bool {
    cj.status
        .as_ref()
        .and_then(|s| s.active.as_ref())
        .is_some_and(|a| a.iter().any(|r| r.uid.as_deref() == Some(uid)))
}

fn remove_from_active(cj: &mut CronJob, uid: &str) {
    if let Some(active) = cj.status.as_mut().and_then(|s| s.active.as_mut()) {
        active.retain(|r| r.uid.as_deref() != Some(uid));
    }
}

/// The CronJob controller; runs until its task is aborted.
pub struct CronJobController {
    client: kube::Client,
    flow: Flow,
    cronjobs: Informer<CronJob>,
    jobs: Informer<Job>,
    queue: WorkQueue,
    local: TimeZone,
}

impl CronJobController {
    /// A controller on the shared informers of `ctx`, scheduling in the host's local zone.
    pub fn new(ctx: &Context) -> Self {
        let cronjobs = ctx.factory.informer::<CronJob>();
        let jobs = ctx.factory.informer::<Job>();
        let queue = WorkQueue::new("cronjob");
        let local = TimeZone::system();
        {
            let queue = queue.clone();
            let local = local.clone();
            cronjobs.add_handler(move |change| match change {
                Change::Add(cj) | Change::Delete(cj) => queue.add(Key::of(cj)),
                Change::Update { old, new } => {
                    let (a, b) = (old.spec.as_ref(), new.spec.as_ref());
                    let moved = a.map(|s| (&s.schedule, &s.time_zone))
                        != b.map(|s| (&s.schedule, &s.time_zone));
                    if !moved {
                        queue.add(Key::of(new));
                        return;
                    }
                    // A new schedule: look again at its next time (a sooner one wins).
                    let Ok(schedule) = cron::parse(&format_schedule(new)) else {
                        return;
                    };
                    let now = Timestamp::now();
                    let when = When {
                        created: new
                            .metadata
                            .creation_timestamp
                            .as_ref()
                            .map_or(now, |t| t.0),
                        last_scheduled: new
                            .status
                            .as_ref()
                            .and_then(|s| s.last_schedule_time.as_ref())
                            .map(|t| t.0),
                        starting_deadline: b.and_then(|s| s.starting_deadline_seconds),
                        now,
                        local: &local,
                    };
                    if let Some(delay) = next_schedule_delay(&schedule, &when) {
                        queue.add_after(Key::of(new), delay);
                    }
                }
            });
        }
        {
            let queue = queue.clone();
            let cronjobs = cronjobs.clone();
            let owner_key = move |job: &Job| {
                let owner = crate::apimachinery::pods::controller_ref(&job.metadata)?;
                if owner.kind != "CronJob" {
                    return None;
                }
                let namespace = job.metadata.namespace.clone().unwrap_or_default();
                let cj = cronjobs.get(&namespace, &owner.name)?;
                (cj.metadata.uid.as_deref() == Some(owner.uid.as_str()))
                    .then(|| Key::new(namespace, owner.name.clone()))
            };
            jobs.add_handler(move |change| {
                if let Change::Update { old, .. } = &change
                    && let Some(key) = owner_key(old)
                {
                    queue.add(key);
                }
                if let Some(key) = owner_key(change.object()) {
                    queue.add(key);
                }
            });
        }
        CronJobController {
            client: ctx.client("cronjob"),
            flow: ctx.flow.clone(),
            cronjobs,
            jobs,
            queue,
            local,
        }
    }

    /// Waits for the caches, then syncs CronJobs as their keys come up.
    pub async fn run(self) {
        self.cronjobs.synced().await;
        self.jobs.synced().await;
        let this = Arc::new(self);
        run_workers(this.queue.clone(), 5, |key| {
            let this = this.clone();
            async move { this.sync(key).await }
        })
        .await;
    }

    fn hop(&self, verb: &str, cj: &CronJob, detail: String) -> FlowEvent {
        let mut e = FlowEvent::new(COMPONENT, "apiserver", verb)
            .object(
                "CronJob",
                cj.metadata.namespace.as_deref().unwrap_or_default(),
                cj.metadata.name.as_deref().unwrap_or_default(),
            )
            .detail(detail);
        e.uid = cj.metadata.uid.clone().unwrap_or_default();
        e
    }

    async fn record(&self, cj: &CronJob, event_type: &str, reason: &str, message: &str) {
        super::event(&self.client, cj, SOURCE, event_type, reason, message).await;
    }

    fn api_error(what: &'static str, cj: &CronJob, source: kube::Error) -> CronJobError {
        CronJobError::Api {
            what,
            cronjob: Key::of(cj).to_string(),
            source,
        }
    }

    /// Upstream's `sync`: cleanup, then `syncCronJob`, then one status write if anything
    /// changed.
    async fn sync(&self, key: Key) -> Result<Action, CronJobError> {
        let Some(original) = self.cronjobs.get(&key.namespace, &key.name) else {
            return Ok(Action::Done);
        };
        // Every Job whose controller reference names this CronJob, even if its labels changed.
        let jobs: Vec<Arc<Job>> = self
            .jobs
            .list_namespace(&key.namespace)
            .into_iter()
            .filter(|j| {
                crate::apimachinery::pods::controller_ref(&j.metadata)
                    .is_some_and(|r| r.name == key.name)
            })
            .collect();
        let mut cj = (*original).clone();
        let cleaned = self.cleanup_finished_jobs(&mut cj, &jobs).await;
        let (requeue, changed) = self.sync_cronjob(&mut cj, &jobs).await?;
        if cleaned || changed {
            let summary = format!(
                "{} active, last scheduled {}",
                cj.status
                    .as_ref()
                    .and_then(|s| s.active.as_ref())
                    .map_or(0, Vec::len),
                cj.status
                    .as_ref()
                    .and_then(|s| s.last_schedule_time.as_ref())
                    .map_or("never".to_owned(), |t| t.0.to_string())
            );
            self.flow
                .gate_emit(self.hop("UPDATE STATUS", &cj, summary))
                .await;
            let api: Api<CronJob> = Api::namespaced(self.client.clone(), &key.namespace);
            api.replace_status(&key.name, &PostParams::default(), &cj)
                .await
                .map_err(|e| Self::api_error("updating the status", &cj, e))?;
        }
        Ok(match requeue {
            Some(delay) => Action::RequeueAfter(delay),
            None => Action::Done,
        })
    }

    /// Upstream's `cleanupFinishedJobs`: whether the status changed.
    async fn cleanup_finished_jobs(&self, cj: &mut CronJob, jobs: &[Arc<Job>]) -> bool {
        let spec = cj.spec.clone().unwrap_or_default();
        if spec.successful_jobs_history_limit.is_none() && spec.failed_jobs_history_limit.is_none()
        {
            return false;
        }
        let of = |kind| -> Vec<&Job> {
            jobs.iter()
                .map(|j| &**j)
                .filter(|j| finished(j) == Some(kind))
                .collect()
        };
        let mut changed = false;
        for (kind, limit) in [
            ("Complete", spec.successful_jobs_history_limit),
            ("Failed", spec.failed_jobs_history_limit),
        ] {
            let Some(limit) = limit else { continue };
            for job in over_history_limit(&of(kind), limit) {
                changed |= self.delete_job(cj, job).await;
            }
        }
        changed
    }

    /// Upstream's `deleteJob`: the Job (background propagation) and its active reference.
    async fn delete_job(&self, cj: &mut CronJob, job: &Job) -> bool {
        let name = job.metadata.name.clone().unwrap_or_default();
        let namespace = job.metadata.namespace.clone().unwrap_or_default();
        self.flow
            .gate_emit(self.hop("DELETE JOB", cj, format!("deleting job {name}")))
            .await;
        let api: Api<Job> = Api::namespaced(self.client.clone(), &namespace);
        if let Err(e) = api.delete(&name, &DeleteParams::background()).await {
            self.record(cj, "Warning", "FailedDelete", &format!("Deleted job: {e}"))
                .await;
            return false;
        }
        remove_from_active(cj, job.metadata.uid.as_deref().unwrap_or_default());
        self.record(
            cj,
            "Normal",
            "SuccessfulDelete",
            &format!("Deleted job {name}"),
        )
        .await;
        true
    }

    /// Upstream's `syncCronJob`: the requeue delay and whether the status changed.
    async fn sync_cronjob(
        &self,
        cj: &mut CronJob,
        jobs: &[Arc<Job>],
    ) -> Result<(Option<Duration>, bool), CronJobError> {
        let namespace = cj.metadata.namespace.clone().unwrap_or_default();
        let name = cj.metadata.name.clone().unwrap_or_default();
        let cronjobs: Api<CronJob> = Api::namespaced(self.client.clone(), &namespace);
        let jobs_api: Api<Job> = Api::namespaced(self.client.clone(), &namespace);
        let mut changed = false;
        for job in jobs {
            let uid = job.metadata.uid.clone().unwrap_or_default();
            let found = in_active(cj, &uid);
            let done = finished(job);
            if !found && done.is_none() {
                // Perhaps the status write that added it has not reached the cache yet.
                let fresh = cronjobs
                    .get(&name)
                    .await
                    .map_err(|e| Self::api_error("reading the cronjob", cj, e))?;
                if in_active(&fresh, &uid) {
                    *cj = fresh;
                    continue;
                }
                self.record(
                    cj,
                    "Warning",
                    "UnexpectedJob",
                    &format!(
                        "Saw a job that the controller did not create or forgot: {}",
                        job.metadata.name.as_deref().unwrap_or_default()
                    ),
                )
                .await;
            } else if let Some(condition) = done {
                if found {
                    remove_from_active(cj, &uid);
                    self.record(
                        cj,
                        "Normal",
                        "SawCompletedJob",
                        &format!(
                            "Saw completed job: {}, condition: {condition}",
                            job.metadata.name.as_deref().unwrap_or_default()
                        ),
                    )
                    .await;
                    changed = true;
                }
                if condition == "Complete" {
                    let completed = job.status.as_ref().and_then(|s| s.completion_time.clone());
                    let status = cj.status.get_or_insert_with(Default::default);
                    match (&status.last_successful_time, completed) {
                        (None, Some(t)) => {
                            status.last_successful_time = Some(t);
                            changed = true;
                        }
                        (Some(last), Some(t)) if t.0 > last.0 => {
                            status.last_successful_time = Some(t);
                            changed = true;
                        }
                        _ => {}
                    }
                }
            }
        }
        // Active references whose Job is gone (asked of the API server, not the cache).
        let active: Vec<ObjectReference> = cj
            .status
            .as_ref()
            .and_then(|s| s.active.clone())
            .unwrap_or_default();
        for r in active {
            if jobs
                .iter()
                .any(|j| j.metadata.uid.is_some() && j.metadata.uid == r.uid)
            {
                continue;
            }
            let job_name = r.name.clone().unwrap_or_default();
            match jobs_api.get_opt(&job_name).await {
                Ok(None) => {
                    self.record(
                        cj,
                        "Normal",
                        "MissingJob",
                        &format!("Active job went missing: {job_name}"),
                    )
                    .await;
                    remove_from_active(cj, r.uid.as_deref().unwrap_or_default());
                    changed = true;
                }
                Ok(Some(_)) => {}
                Err(e) => return Err(Self::api_error("reading a job", cj, e)),
            }
        }
        if let Some(schedule) = cj.spec.as_ref().map(|s| s.schedule.clone())
            && schedule.contains("TZ")
        {
            self.record(
                cj,
                "Warning",
                "UnsupportedSchedule",
                &format!("CRON_TZ or TZ used in schedule {schedule:?} is not officially supported, see https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/ for more details"),
            )
            .await;
        }
        let now = Timestamp::now();
        let (scheduled, replace, requeue) = match plan(cj, now, &self.local) {
            Plan::Idle => return Ok((None, changed)),
            Plan::BadSchedule { reason, message } => {
                self.record(cj, "Warning", reason, &message).await;
                return Ok((None, changed));
            }
            Plan::Wait {
                requeue,
                missed,
                already_active,
                too_many_missed,
            } => {
                if too_many_missed {
                    self.too_many_missed(cj).await;
                }
                if let Some(t) = missed {
                    self.record(
                        cj,
                        "Warning",
                        "MissSchedule",
                        &format!(
                            "Missed scheduled time to start a job: {}",
                            t.strftime("%a, %d %b %Y %H:%M:%S +0000")
                        ),
                    )
                    .await;
                }
                if already_active {
                    self.record(
                        cj,
                        "Normal",
                        "JobAlreadyActive",
                        "Not starting job because prior execution is running and concurrency policy is Forbid",
                    )
                    .await;
                }
                return Ok((requeue, changed));
            }
            Plan::Run {
                scheduled,
                replace,
                requeue,
                too_many_missed,
            } => {
                if too_many_missed {
                    self.too_many_missed(cj).await;
                }
                (scheduled, replace, requeue)
            }
        };
        if replace {
            let active = cj
                .status
                .as_ref()
                .and_then(|s| s.active.clone())
                .unwrap_or_default();
            for r in active {
                let job_name = r.name.clone().unwrap_or_default();
                let job = match jobs_api.get(&job_name).await {
                    Ok(job) => job,
                    Err(e) => {
                        self.record(cj, "Warning", "FailedGet", &format!("Get job: {e}"))
                            .await;
                        return Err(Self::api_error("reading a job", cj, e));
                    }
                };
                if !self.delete_job(cj, &job).await {
                    return Err(CronJobError::Replace(format!("{namespace}/{job_name}")));
                }
                changed = true;
            }
        }
        let request = job_from_template(cj, scheduled);
        let job_name = request.metadata.name.clone().unwrap_or_default();
        self.flow
            .gate_emit(self.hop(
                "CREATE JOB",
                cj,
                format!("creating job {job_name} for {scheduled}"),
            ))
            .await;
        let created = match jobs_api.create(&PostParams::default(), &request).await {
            Ok(job) => {
                self.record(
                    cj,
                    "Normal",
                    "SuccessfulCreate",
                    &format!("Created job {job_name}"),
                )
                .await;
                job
            }
            Err(kube::Error::Api(status)) if status.reason == "AlreadyExists" => {
                // Created before, perhaps by this controller before its status write failed.
                let job = jobs_api
                    .get(&job_name)
                    .await
                    .map_err(|e| Self::api_error("reading a job", cj, e))?;
                let ours = crate::apimachinery::pods::controller_uid(&job.metadata)
                    .is_some_and(|uid| Some(uid) == cj.metadata.uid.as_deref());
                if !ours || in_active(cj, job.metadata.uid.as_deref().unwrap_or_default()) {
                    return Ok((None, changed));
                }
                job
            }
            Err(e) => {
                if let kube::Error::Api(status) = &e
                    && status.details.as_ref().is_some_and(|d| {
                        d.causes.iter().any(|c| c.reason == "NamespaceTerminating")
                    })
                {
                    return Err(Self::api_error("creating a job", cj, e));
                }
                self.record(
                    cj,
                    "Warning",
                    "FailedCreate",
                    &format!("Error creating job: {e}"),
                )
                .await;
                return Err(Self::api_error("creating a job", cj, e));
            }
        };
        let status = cj.status.get_or_insert_with(Default::default);
        status
            .active
            .get_or_insert_with(Vec::new)
            .push(reference(&created));
        status.last_schedule_time = Some(Time(scheduled));
        Ok((requeue, true))
    }

    async fn too_many_missed(&self, cj: &CronJob) {
        self.record(
            cj,
            "Warning",
            "TooManyMissedTimes",
            "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew",
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{CronJobSpec, CronJobStatus, JobStatus, JobTemplateSpec};

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn cronjob(schedule: &str, created: &str) -> CronJob {
        CronJob {
            metadata: ObjectMeta {
                name: Some("backup".into()),
                namespace: Some("default".into()),
                uid: Some("cj-uid".into()),
                creation_timestamp: Some(Time(ts(created))),
                ..Default::default()
            },
            spec: Some(CronJobSpec {
                schedule: schedule.into(),
                concurrency_policy: Some("Allow".into()),
                job_template: JobTemplateSpec::default(),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn with(mut cj: CronJob, f: impl FnOnce(&mut CronJobSpec, &mut CronJobStatus)) -> CronJob {
        let mut status = cj.status.take().unwrap_or_default();
        f(cj.spec.as_mut().unwrap(), &mut status);
        cj.status = Some(status);
        cj
    }

    fn active(name: &str) -> ObjectReference {
        ObjectReference {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("{name}-uid")),
            ..Default::default()
        }
    }

    fn run(at: &str) -> Plan {
        Plan::Run {
            scheduled: ts(at),
            replace: false,
            requeue: None,
            too_many_missed: false,
        }
    }

    /// The plan without its requeue delay (checked on its own).
    fn plan_at(cj: &CronJob, now: &str) -> Plan {
        match plan(cj, ts(now), &TimeZone::UTC) {
            Plan::Run {
                scheduled,
                replace,
                too_many_missed,
                ..
            } => Plan::Run {
                scheduled,
                replace,
                requeue: None,
                too_many_missed,
            },
            Plan::Wait {
                missed,
                already_active,
                too_many_missed,
                ..
            } => Plan::Wait {
                requeue: None,
                missed,
                already_active,
                too_many_missed,
            },
            other => other,
        }
    }

    fn wait(missed: Option<&str>, already_active: bool, too_many: bool) -> Plan {
        Plan::Wait {
            requeue: None,
            missed: missed.map(ts),
            already_active,
            too_many_missed: too_many,
        }
    }

    #[test]
    fn plans_follow_upstreams_checks() {
        let every_minute = cronjob("* * * * *", "2024-05-01T10:00:30Z");
        let hourly = cronjob("0 * * * *", "2024-05-01T10:00:30Z");
        let cases: Vec<(&str, CronJob, &str, Plan)> = vec![
            (
                "before the first time",
                every_minute.clone(),
                "2024-05-01T10:00:50Z",
                wait(None, false, false),
            ),
            (
                "the first time",
                every_minute.clone(),
                "2024-05-01T10:01:00.1Z",
                run("2024-05-01T10:01:00Z"),
            ),
            (
                "several missed: the latest runs",
                every_minute.clone(),
                "2024-05-01T10:05:10Z",
                run("2024-05-01T10:05:00Z"),
            ),
            (
                "already run at that time",
                with(every_minute.clone(), |_, st| {
                    st.last_schedule_time = Some(Time(ts("2024-05-01T10:05:00Z")))
                }),
                "2024-05-01T10:05:10Z",
                wait(None, false, false),
            ),
            (
                "suspended",
                with(every_minute.clone(), |s, _| s.suspend = Some(true)),
                "2024-05-01T10:05:10Z",
                Plan::Idle,
            ),
            (
                "forbid with an active job",
                with(every_minute.clone(), |s, st| {
                    s.concurrency_policy = Some("Forbid".into());
                    st.active = Some(vec![active("backup-28574461")]);
                    st.last_schedule_time = Some(Time(ts("2024-05-01T10:01:00Z")));
                }),
                "2024-05-01T10:02:00.1Z",
                wait(None, true, false),
            ),
            (
                "allow with an active job",
                with(every_minute.clone(), |_, st| {
                    st.active = Some(vec![active("backup-28574461")]);
                    st.last_schedule_time = Some(Time(ts("2024-05-01T10:01:00Z")));
                }),
                "2024-05-01T10:02:00.1Z",
                run("2024-05-01T10:02:00Z"),
            ),
            (
                "replace deletes first",
                with(every_minute.clone(), |s, st| {
                    s.concurrency_policy = Some("Replace".into());
                    st.active = Some(vec![active("backup-28574461")]);
                    st.last_schedule_time = Some(Time(ts("2024-05-01T10:01:00Z")));
                }),
                "2024-05-01T10:02:00.1Z",
                Plan::Run {
                    scheduled: ts("2024-05-01T10:02:00Z"),
                    replace: true,
                    requeue: None,
                    too_many_missed: false,
                },
            ),
            (
                "past the starting deadline",
                with(hourly.clone(), |s, _| s.starting_deadline_seconds = Some(60)),
                "2024-05-01T11:05:00Z",
                wait(None, false, false),
            ),
            (
                "within the starting deadline",
                with(hourly.clone(), |s, _| s.starting_deadline_seconds = Some(600)),
                "2024-05-01T11:05:00Z",
                run("2024-05-01T11:00:00Z"),
            ),
            (
                "more than 100 missed",
                every_minute.clone(),
                "2024-05-01T13:00:10Z",
                Plan::Run {
                    scheduled: ts("2024-05-01T13:00:00Z"),
                    replace: false,
                    requeue: None,
                    too_many_missed: true,
                },
            ),
            (
                "a schedule that never fires",
                cronjob("0 0 31 2 *", "2024-05-01T10:00:30Z"),
                "2024-05-01T13:00:10Z",
                Plan::BadSchedule {
                    reason: "InvalidSchedule",
                    message: "invalid schedule: 0 0 31 2 * : time difference between two schedules is less than 1 second".into(),
                },
            ),
        ];
        for (what, cj, now, want) in cases {
            assert_eq!(plan_at(&cj, now), want, "{what}");
        }
    }

    #[test]
    fn a_deadline_that_expires_before_the_next_time_is_a_miss() {
        // startingDeadlineSeconds shorter than the gap: scheduling from creation sees the
        // 11:00 slot only while within 30 s of it; the earlier bound hides it after.
        let cj = with(cronjob("0 * * * *", "2024-05-01T10:00:30Z"), |s, _| {
            s.starting_deadline_seconds = Some(30)
        });
        assert_eq!(
            plan_at(&cj, "2024-05-01T11:00:20Z"),
            run("2024-05-01T11:00:00Z")
        );
        // Found through the most recent time, but too late: MissSchedule.
        let last = with(cj, |_, st| {
            st.last_schedule_time = Some(Time(ts("2024-05-01T10:00:00Z")))
        });
        let when = When {
            created: ts("2024-05-01T10:00:30Z"),
            last_scheduled: Some(ts("2024-05-01T10:00:00Z")),
            starting_deadline: Some(30),
            now: ts("2024-05-01T11:00:45Z"),
            local: &TimeZone::UTC,
        };
        let schedule = cron::parse("0 * * * *").unwrap();
        let found = most_recent_schedule_time(&schedule, &when, true).unwrap();
        assert_eq!(found.time, None, "the deadline moved earliest past 11:00");
        assert_eq!(
            plan_at(&last, "2024-05-01T11:00:45Z"),
            wait(None, false, false)
        );
    }

    #[test]
    fn requeues_land_just_after_the_next_time() {
        let schedule = cron::parse("*/5 * * * *").unwrap();
        fn when<'a>(utc: &'a TimeZone, last: Option<&str>, now: &str) -> When<'a> {
            When {
                created: ts("2024-05-01T10:00:30Z"),
                last_scheduled: last.map(ts),
                starting_deadline: None,
                now: ts(now),
                local: utc,
            }
        }
        let utc = TimeZone::UTC;
        let delay = |w: &When<'_>| next_schedule_delay(&schedule, w).unwrap();
        assert_eq!(
            delay(&when(&utc, None, "2024-05-01T10:01:00Z")),
            Duration::from_millis(240_100)
        );
        assert_eq!(
            delay(&when(
                &utc,
                Some("2024-05-01T10:05:00Z"),
                "2024-05-01T10:05:00.5Z"
            )),
            Duration::from_millis(299_600)
        );
        // Missed ones (never run since creation): from now.
        assert_eq!(
            delay(&when(&utc, None, "2024-05-01T10:12:00Z")),
            Duration::from_millis(180_100)
        );
        // In a zone: 03:00 Paris is 01:00 UTC in summer.
        let paris = with(cronjob("0 3 * * *", "2024-07-01T00:00:00Z"), |s, _| {
            s.time_zone = Some("Europe/Paris".into())
        });
        match plan(&paris, ts("2024-07-01T00:30:00Z"), &TimeZone::UTC) {
            Plan::Wait { requeue, .. } => {
                assert_eq!(requeue, Some(Duration::from_millis(1_800_100)))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn jobs_are_named_annotated_and_owned_as_upstreams() {
        let cj = with(cronjob("* * * * *", "2024-05-01T10:00:30Z"), |s, _| {
            s.time_zone = Some("Europe/Paris".into())
        });
        let job = job_from_template(&cj, ts("2024-05-01T10:01:00Z"));
        assert_eq!(job.metadata.name.as_deref(), Some("backup-28575961"));
        assert_eq!(
            job.metadata.annotations.as_ref().unwrap()[SCHEDULED_TIMESTAMP],
            "2024-05-01T12:01:00+02:00"
        );
        let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("CronJob", "cj-uid", Some(true))
        );
        let utc = job_from_template(
            &cronjob("* * * * *", "2024-05-01T10:00:30Z"),
            ts("2024-05-01T10:01:00Z"),
        );
        assert_eq!(
            utc.metadata.annotations.as_ref().unwrap()[SCHEDULED_TIMESTAMP],
            "2024-05-01T10:01:00Z"
        );
    }

    #[test]
    fn history_limits_delete_the_oldest_started_first() {
        let job = |name: &str, start: Option<&str>| Job {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            status: Some(JobStatus {
                start_time: start.map(|s| Time(ts(s))),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (a, b, c, d) = (
            job("a", Some("2024-05-01T10:03:00Z")),
            job("b", Some("2024-05-01T10:01:00Z")),
            job("c", None),
            job("d", Some("2024-05-01T10:01:00Z")),
        );
        let all = [&a, &b, &c, &d];
        let names = |jobs: Vec<&Job>| -> Vec<String> {
            jobs.iter()
                .map(|j| j.metadata.name.clone().unwrap())
                .collect()
        };
        assert_eq!(names(over_history_limit(&all, 1)), ["b", "d", "a"]);
        assert_eq!(names(over_history_limit(&all, 3)), ["b"]);
        assert!(over_history_limit(&all, 4).is_empty());
    }
}
