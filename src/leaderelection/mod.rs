//! Leader election over a coordination.k8s.io Lease, as client-go's `tools/leaderelection` with
//! a `LeaseLock` runs it for kube-scheduler and kube-controller-manager: several replicas of a
//! component compete for one Lease in `kube-system` (`kube-scheduler`,
//! `kube-controller-manager`), and only the one holding it acts.
//!
//! A [`LeaderElector`] is one replica's candidacy. It tries to take the Lease every retry
//! period (with jitter: 1 to 2.2 times it) and takes it when it is free, its own, or expired.
//! Expired is judged on the candidate's own clock: a Lease held by another expires a lease
//! duration after the candidate *last saw its record change* (the observed time), whatever
//! `renewTime` says, so clocks need not agree. Once leader it renews every retry period; if a
//! renewal has not succeeded within the renew deadline it stops leading. Taking the Lease
//! records `acquireTime`, counts `leaseTransitions`, emits a [`crate::flow::LEADER`] hop and an
//! Event (`<identity> became leader`, reason `LeaderElection`, on the Lease, as upstream's
//! recorder writes it).
//!
//! The replica's work (the scheduling loop, the controller manager's informers and
//! controllers) runs only while it leads, as upstream starts it in `OnStartedLeading`: the
//! future [`LeaderElector::run`] is given is polled while the replica leads and dropped (so its
//! tasks are aborted) when it stops. Upstream's components then exit and are restarted; here the
//! replica goes back to being a candidate at once, which is what that restart comes to.
//! How a replica ends decides whether it gives its Lease up (writes it free, so a standby takes
//! it at its next try instead of waiting for it to expire), as upstream's `ReleaseOnCancel`:
//! - `orrery component stop` is the process stopped cleanly (SIGTERM): [`Candidate::stop`]
//!   releases the Lease if the component is configured to, as kube-scheduler is
//!   (`ReleaseOnCancel: true`); kube-controller-manager is not, so its standby waits for the
//!   Lease to expire.
//! - `orrery component kill` is the process dying (SIGKILL): nothing is given back.
//! - A clean `orrery down` ([`Candidate::resign`]) gives every Lease up, so the next
//!   `orrery up` need not wait for one to expire.
//!
//! Time is tokio's, so tests run on a paused clock.

pub mod lock;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use crate::apimachinery::gotypes::go_duration;
use crate::complog::Instance;
use crate::flow::{Flow, FlowEvent};
pub use lock::{LeaseLock, LockError, Record};

/// The namespace of the control plane's Leases.
pub const NAMESPACE: &str = "kube-system";
/// kube-scheduler's Lease.
pub const SCHEDULER_LEASE: &str = "kube-scheduler";
/// kube-controller-manager's Lease.
pub const CONTROLLER_MANAGER_LEASE: &str = "kube-controller-manager";

/// How much a standby's retry period is stretched at random, at most (`JitterFactor`): it
/// waits 1 to 2.2 retry periods between tries.
pub const JITTER_FACTOR: f64 = 1.2;

/// What an election is tuned by (`--leader-elect-lease-duration`, `-renew-deadline`,
/// `-retry-period`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timings {
    /// How long a standby waits, from the last change it saw, before taking the Lease over.
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it gives up leading.
    pub renew_deadline: Duration,
    /// How long candidates wait between tries.
    pub retry_period: Duration,
}

impl Default for Timings {
    /// Upstream's defaults: 15 s, 10 s, 2 s.
    fn default() -> Self {
        Timings {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// Timings that cannot work.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TimingsError {
    /// What component-base's `ValidateLeaderElectionConfiguration` says, its errors joined as
    /// an aggregate is printed.
    #[error("{}", aggregate(.0))]
    Invalid(Vec<String>),
    /// What `NewLeaderElector` says when the renew deadline leaves no room for a jittered retry.
    #[error("renewDeadline must be greater than retryPeriod*JitterFactor")]
    Jitter,
}

/// `utilerrors.NewAggregate(errs).Error()`: one error as it is, several in brackets.
fn aggregate(errors: &[String]) -> String {
    match errors {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

impl Timings {
    /// Checks the timings as kube-scheduler does at start (`leaderElection.*` field errors,
    /// a Duration's value as Go prints it), then as `NewLeaderElector` does.
    pub fn validate(&self) -> Result<(), TimingsError> {
        let invalid = |field: &str, value: Duration, why: &str| {
            format!(
                "leaderElection.{field}: Invalid value: {}: {why}",
                go_duration(value)
            )
        };
        let mut errors = Vec::new();
        let zero = "must be greater than zero";
        if self.lease_duration.is_zero() {
            errors.push(invalid("leaseDuration", self.lease_duration, zero));
        }
        if self.renew_deadline.is_zero() {
            errors.push(invalid("renewDeadline", self.renew_deadline, zero));
        }
        if self.retry_period.is_zero() {
            errors.push(invalid("retryPeriod", self.retry_period, zero));
        }
        if self.lease_duration <= self.renew_deadline {
            // Upstream shows the renew deadline as the lease duration's value.
            errors.push(invalid(
                "leaseDuration",
                self.renew_deadline,
                "must be greater than `RenewDeadline`",
            ));
        }
        if !errors.is_empty() {
            return Err(TimingsError::Invalid(errors));
        }
        if self.renew_deadline <= self.retry_period.mul_f64(JITTER_FACTOR) {
            return Err(TimingsError::Jitter);
        }
        Ok(())
    }

    /// The Lease's `leaseDurationSeconds`: whole seconds, as upstream truncates them.
    fn lease_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }
}

/// A replica's identity in `holderIdentity`: its host and its name, `<host>_<replica>`
/// (upstream: `<hostname>_<uuid>`). It is the same on every run, so a replica started again (or
/// a whole cluster after a crash) takes back its own Lease at once instead of waiting for it to
/// expire.
pub fn identity(host: &str, replica: &str) -> String {
    format!("{host}_{replica}")
}

/// The replica an identity names (`scheduler-1` of `orrery-control-plane_scheduler-1`), or the
/// identity itself if it is not one of [`identity`]'s.
pub fn replica_of(identity: &str) -> &str {
    identity.rsplit_once('_').map_or(identity, |(_, r)| r)
}

/// One replica's place in an election, made once by `orrery up` and shared by every run of the
/// replica (each run is a [`LeaderElector`]) and by whoever asks whether it leads.
pub struct Candidate {
    namespace: String,
    lease: String,
    identity: String,
    name: String,
    event_source: String,
    log: Instance,
    timings: Timings,
    /// Whether a clean stop gives the Lease up (upstream's `ReleaseOnCancel`).
    release_on_stop: bool,
    leading: AtomicBool,
    /// Whether an elector runs for it now.
    running: tokio::sync::watch::Sender<bool>,
    /// Why the running elector is asked to end, once it is.
    cancel: tokio::sync::watch::Sender<Option<Cancel>>,
}

/// Why a running elector is asked to end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cancel {
    /// The replica is stopped cleanly (`orrery component stop`).
    Stop,
    /// The cluster goes down (`orrery down`).
    Down,
}

impl Candidate {
    /// Replica `name` (`scheduler-2`, its name on the flow) of the component logging as `log`,
    /// competing for `kube-system/<lease>` as `identity`, its Events recorded as `event_source`
    /// (`default-scheduler`, `kube-controller-manager`); `release_on_stop` as the component's
    /// `ReleaseOnCancel` (kube-scheduler's is true, kube-controller-manager's false).
    pub fn new(
        lease: &str,
        identity: &str,
        name: &str,
        event_source: &str,
        log: Instance,
        timings: Timings,
        release_on_stop: bool,
    ) -> Arc<Candidate> {
        Arc::new(Candidate {
            namespace: NAMESPACE.to_owned(),
            lease: lease.to_owned(),
            identity: identity.to_owned(),
            name: name.to_owned(),
            event_source: event_source.to_owned(),
            log,
            timings,
            release_on_stop,
            leading: AtomicBool::new(false),
            running: tokio::sync::watch::Sender::new(false),
            cancel: tokio::sync::watch::Sender::new(None),
        })
    }

    /// `kube-system/kube-scheduler`.
    pub fn lease(&self) -> String {
        format!("{}/{}", self.namespace, self.lease)
    }

    /// Its `holderIdentity`.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Whether it leads now.
    pub fn leading(&self) -> bool {
        self.leading.load(Ordering::SeqCst)
    }

    /// Gives the Lease up for good as the cluster goes down: the running elector stops its
    /// work, then writes the Lease free (no holder, a one-second duration) if it holds it, so
    /// that the next `orrery up` need not wait for it to expire. Returns once the elector has
    /// ended (at most the renew deadline); at once if none runs.
    pub async fn resign(&self) {
        self.cancel(Cancel::Down).await;
    }

    /// What a clean stop of the replica's process does before it ends (`orrery component
    /// stop`): if the component releases on cancel (kube-scheduler), the running elector stops
    /// its work and gives the Lease up as [`Candidate::resign`] does; otherwise (and when it is
    /// killed instead) nothing: its Lease is taken over once it expires.
    pub async fn stop(&self) {
        if self.release_on_stop {
            self.cancel(Cancel::Stop).await;
        }
    }

    async fn cancel(&self, why: Cancel) {
        let mut running = self.running.subscribe();
        if !*running.borrow_and_update() {
            return;
        }
        self.cancel.send_replace(Some(why));
        let _ = tokio::time::timeout(self.timings.renew_deadline, running.wait_for(|r| !r)).await;
    }
}

/// Marks a candidate's elector as running while it lives; not leading once it is dropped (its
/// task aborted, say).
struct Running(Arc<Candidate>);

impl Running {
    fn on(candidate: &Arc<Candidate>) -> Self {
        candidate.running.send_replace(true);
        Running(candidate.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.leading.store(false, Ordering::SeqCst);
        self.0.running.send_replace(false);
    }
}

/// How a term as leader ended.
#[derive(PartialEq, Eq)]
enum Term {
    /// A renewal did not succeed within the renew deadline.
    Lost,
    /// The replica was asked to end.
    Cancelled(Cancel),
}

/// One run of a candidate: its view of the record and when it last saw it change.
pub struct LeaderElector {
    candidate: Arc<Candidate>,
    lock: LeaseLock,
    flow: Flow,
    observed: Record,
    observed_raw: Option<lock::Raw>,
    observed_time: Instant,
    /// The holder last reported (upstream's `reportedLeader`).
    reported: String,
    /// The record as it was when this candidate took it over (`None`: it created it).
    taken_from: Option<Record>,
}

impl LeaderElector {
    /// A run of `candidate`, talking to the API server through `client`, its hops on `flow`.
    pub fn new(candidate: Arc<Candidate>, client: kube::Client, flow: Flow) -> Self {
        let lock = LeaseLock::new(
            client,
            (&candidate.namespace, &candidate.lease),
            &candidate.identity,
            &candidate.event_source,
            candidate.timings.renew_deadline,
        );
        LeaderElector {
            candidate,
            lock,
            flow,
            observed: Record::default(),
            observed_raw: None,
            observed_time: Instant::now(),
            reported: String::new(),
            taken_from: None,
        }
    }

    /// Competes for the Lease until the candidate resigns (or the task is aborted): each time it
    /// becomes leader it runs `lead()`'s future until it stops leading, then stands again.
    pub async fn run<F, Fut>(mut self, mut lead: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = ()>,
    {
        let candidate = self.candidate.clone();
        // A run starts uncancelled (a replica stopped cleanly may be started again).
        candidate.cancel.send_replace(None);
        let _running = Running::on(&candidate);
        let mut cancel = candidate.cancel.subscribe();
        let logs = self.flow.logs().clone();
        logs.info(
            candidate.log,
            &format!(
                "attempting to acquire leader lease {}...",
                candidate.lease()
            ),
            &[],
        );
        loop {
            tokio::select! {
                biased;
                _ = cancel.wait_for(Option::is_some) => return,
                () = self.acquire() => {}
            }
            candidate.leading.store(true, Ordering::SeqCst);
            // The work runs as long as the replica leads; should it end by itself, the replica
            // still holds the Lease (as upstream's does when `OnStartedLeading` returns).
            let work = lead();
            let work = async move {
                work.await;
                std::future::pending::<Term>().await
            };
            let term = tokio::select! {
                biased;
                why = cancel.wait_for(Option::is_some) => {
                    Term::Cancelled(why.ok().and_then(|w| *w).unwrap_or(Cancel::Down))
                }
                () = self.renew() => Term::Lost,
                term = work => term,
            };
            // The work is dropped here, before anything else: a replica that no longer leads
            // does nothing.
            candidate.leading.store(false, Ordering::SeqCst);
            // Upstream's `ReleaseOnCancel` gives the Lease up whenever leading ends, lost
            // included (where the write usually fails: the API server did not answer); going
            // down, every replica gives it up.
            let release = candidate.release_on_stop || term == Term::Cancelled(Cancel::Down);
            let released = release && self.release().await;
            match term {
                Term::Cancelled(why) => {
                    if released {
                        let detail = match why {
                            Cancel::Down => format!(
                                "{} gave {} up as the cluster goes down: the next leader need not wait for it to expire",
                                candidate.name,
                                candidate.lease()
                            ),
                            Cancel::Stop => format!(
                                "{} gave {} up as it was stopped (ReleaseOnCancel): a standby takes it at its next try, without waiting for it to expire",
                                candidate.name,
                                candidate.lease()
                            ),
                        };
                        self.hop(crate::flow::RESIGN, detail);
                    }
                    // Recorded before the replica (or the cluster) stops serving.
                    if let Some(recording) = self.lock.record_event("stopped leading") {
                        let _ = recording.await;
                    }
                    return;
                }
                Term::Lost => {
                    self.lock.record_event("stopped leading");
                    logs.info(
                        candidate.log,
                        "Leaderelection lost",
                        &[("lease", candidate.lease().into())],
                    );
                    self.hop(
                        crate::flow::LOST,
                        format!(
                            "{} lost {}: it could not renew it within the renew deadline ({}); it stops acting and stands again",
                            candidate.name,
                            candidate.lease(),
                            go_duration(candidate.timings.renew_deadline)
                        ),
                    );
                    // Stands again after a retry period, as a restarted process would, not at
                    // once: a Lease it just freed goes to a standby first.
                    tokio::select! {
                        biased;
                        _ = cancel.wait_for(Option::is_some) => return,
                        () = tokio::time::sleep(jitter(candidate.timings.retry_period)) => {}
                    }
                }
            }
        }
    }

    fn is_leader(&self) -> bool {
        self.observed.holder_identity == self.candidate.identity
    }

    /// Whether the record last seen is still held, on this candidate's clock: a lease duration
    /// after it last saw it change.
    fn is_lease_valid(&self, now: Instant) -> bool {
        let seconds = u64::try_from(self.observed.lease_duration_seconds).unwrap_or(0);
        self.observed_time + Duration::from_secs(seconds) > now
    }

    fn set_observed(&mut self, record: Record) {
        self.observed = record;
        self.observed_time = Instant::now();
    }

    /// Tries every retry period (jittered) until it holds the Lease.
    async fn acquire(&mut self) {
        let timings = self.candidate.timings;
        loop {
            let acquired = self.try_acquire_or_renew().await;
            self.maybe_report_transition();
            if acquired {
                self.lock.record_event("became leader");
                self.flow.logs().info(
                    self.candidate.log,
                    &format!("successfully acquired lease {}", self.candidate.lease()),
                    &[],
                );
                self.became_leader();
                return;
            }
            tokio::time::sleep(jitter(timings.retry_period)).await;
        }
    }

    /// Renews every retry period; returns once a renewal has not succeeded within the renew
    /// deadline.
    async fn renew(&mut self) {
        let timings = self.candidate.timings;
        loop {
            let deadline = Instant::now() + timings.renew_deadline;
            let renewed = loop {
                match tokio::time::timeout_at(deadline, self.try_acquire_or_renew()).await {
                    Ok(true) => break true,
                    Err(_) => break false,
                    Ok(false) => {}
                }
                let next = Instant::now() + timings.retry_period;
                if next >= deadline {
                    tokio::time::sleep_until(deadline).await;
                    break false;
                }
                tokio::time::sleep_until(next).await;
            };
            self.maybe_report_transition();
            if !renewed {
                return;
            }
            tokio::time::sleep(timings.retry_period).await;
        }
    }

    /// One try (`tryAcquireOrRenew`): the leader's optimistic update first; otherwise read the
    /// record, and take it if it is free, this candidate's own, or expired.
    async fn try_acquire_or_renew(&mut self) -> bool {
        let now = now();
        let mut desired = Record {
            holder_identity: self.candidate.identity.clone(),
            lease_duration_seconds: self.candidate.timings.lease_seconds(),
            acquire_time: Some(now),
            renew_time: Some(now),
            leader_transitions: 0,
        };
        // The leader's fast path: update the record as last seen.
        if self.is_leader() && self.is_lease_valid(Instant::now()) {
            desired.acquire_time = self.observed.acquire_time;
            desired.leader_transitions = self.observed.leader_transitions;
            match self.lock.update(&desired).await {
                Ok(()) => {
                    self.set_observed(desired);
                    return true;
                }
                Err(error) => tracing::debug!(
                    lease = %self.lock.describe(), %error,
                    "Failed to update lock optimistically, falling back to slow path"
                ),
            }
        }
        let old = match self.lock.get().await {
            Ok(old) => old,
            Err(error) if error.is_not_found() => {
                return match self.lock.create(&desired).await {
                    Ok(()) => {
                        self.taken_from = None;
                        self.set_observed(desired);
                        true
                    }
                    Err(error) => {
                        tracing::debug!(%error, "error initially creating leader election record");
                        false
                    }
                };
            }
            Err(error) => {
                tracing::debug!(lease = %self.lock.describe(), %error, "error retrieving resource lock");
                return false;
            }
        };
        let raw = old.raw();
        if self.observed_raw.as_ref() != Some(&raw) {
            self.set_observed(old.clone());
            self.observed_raw = Some(raw);
        }
        if !old.holder_identity.is_empty()
            && self.is_lease_valid(Instant::now())
            && !self.is_leader()
        {
            return false;
        }
        if self.is_leader() {
            desired.acquire_time = old.acquire_time;
            desired.leader_transitions = old.leader_transitions;
        } else {
            desired.leader_transitions = old.leader_transitions + 1;
        }
        match self.lock.update(&desired).await {
            Ok(()) => {
                self.taken_from = Some(old);
                self.set_observed(desired);
                true
            }
            Err(error) => {
                tracing::debug!(lease = %self.lock.describe(), %error, "Failed to update lock");
                false
            }
        }
    }

    /// Gives the Lease up if this candidate holds it: no holder, a duration of one second.
    async fn release(&mut self) -> bool {
        if !self.is_leader() {
            return false;
        }
        let now = now();
        let record = Record {
            holder_identity: String::new(),
            lease_duration_seconds: 1,
            acquire_time: Some(now),
            renew_time: Some(now),
            leader_transitions: self.observed.leader_transitions,
        };
        let mut written = self.lock.update(&record).await;
        // A renewal cut short as the replica stopped may still have been written: the Lease is
        // then newer than the one last seen. Read it again, and release it if it is still ours.
        if written.as_ref().is_err_and(LockError::is_conflict)
            && self
                .lock
                .get()
                .await
                .is_ok_and(|now| now.holder_identity == self.candidate.identity)
        {
            written = self.lock.update(&record).await;
        }
        match written {
            Ok(()) => {
                self.set_observed(record);
                true
            }
            Err(error) => {
                tracing::warn!(lease = %self.lock.describe(), %error, "Failed to release lock");
                false
            }
        }
    }

    /// Says so when the holder it sees changes (upstream's `OnNewLeader`): a standby's hop when
    /// another replica leads.
    fn maybe_report_transition(&mut self) {
        if self.observed.holder_identity == self.reported {
            return;
        }
        self.reported = self.observed.holder_identity.clone();
        if self.reported.is_empty() || self.is_leader() {
            return;
        }
        let candidate = &self.candidate;
        self.flow.logs().info(
            candidate.log,
            "New leader elected",
            &[("identity", self.reported.clone().into())],
        );
        self.hop(
            crate::flow::STANDBY,
            format!(
                "{} is standby: {} is held by {}; it takes over if the lease goes {} without a renewal",
                candidate.name,
                candidate.lease(),
                replica_of(&self.reported),
                go_duration(candidate.timings.lease_duration)
            ),
        );
    }

    /// The hop that says this replica leads now, and over whom.
    fn became_leader(&mut self) {
        let candidate = &self.candidate;
        let (name, lease) = (&candidate.name, candidate.lease());
        let previous = self.taken_from.as_ref().map(|r| r.holder_identity.as_str());
        let detail = match previous {
            None => format!("{name} became leader of {lease}, which it created"),
            Some("") => format!("{name} became leader of {lease}, which no one held"),
            Some(own) if own == candidate.identity => {
                format!("{name} became leader of {lease} again: the lease was still its own")
            }
            Some(other) => format!(
                "{name} became leader of {lease} after {}'s lease expired (no renewal seen for {})",
                replica_of(other),
                go_duration(candidate.timings.lease_duration)
            ),
        };
        self.reported = candidate.identity.clone();
        let data = json!({
            "lease": lease,
            "holderIdentity": candidate.identity,
            "previousHolder": previous,
            "leaseTransitions": self.observed.leader_transitions,
        });
        let event = self.event(crate::flow::LEADER, detail).data(data);
        self.flow.emit(event);
    }

    fn event(&self, verb: &str, detail: String) -> FlowEvent {
        let candidate = &self.candidate;
        FlowEvent::new(candidate.name.as_str(), candidate.name.as_str(), verb)
            .object("Lease", &candidate.namespace, &candidate.lease)
            .detail(detail)
    }

    fn hop(&self, verb: &str, detail: String) {
        self.flow.emit(self.event(verb, detail));
    }
}

/// The time written into the Lease (`acquireTime`, `renewTime`): the wall clock when first
/// asked, moved on by tokio's clock since, so that a paused test clock moves it too (upstream's
/// tests inject a fake clock). No candidate judges expiry by these times; they say when.
fn now() -> jiff::Timestamp {
    static ANCHOR: std::sync::OnceLock<(Instant, jiff::Timestamp)> = std::sync::OnceLock::new();
    let (at, wall) = *ANCHOR.get_or_init(|| (Instant::now(), jiff::Timestamp::now()));
    let elapsed = Instant::now().saturating_duration_since(at);
    jiff::SignedDuration::try_from(elapsed)
        .ok()
        .and_then(|d| wall.checked_add(d).ok())
        .unwrap_or(wall)
}

/// `wait.Jitter(period, JitterFactor)`: the period stretched by a random 0 to 120%.
fn jitter(period: Duration) -> Duration {
    let random = (uuid::Uuid::new_v4().as_u128() >> 75) as f64 / (1u64 << 53) as f64;
    period + period.mul_f64(random * JITTER_FACTOR)
}
