//! The scheduling queue, as kube-scheduler's `PriorityQueue` has it: pods waiting for a node sit
//! in one of three places. **activeQ** holds the pods to try next, highest priority first, then
//! the longest waiting. **backoffQ** holds pods that failed and wait out their back-off (1 s after
//! the first attempt, doubling per attempt up to 10 s) before going back to activeQ.
//! **unschedulablePods** holds pods no node could take; they stay there until a cluster event
//! that may help the plugins that rejected them (a node added or changed, a pod deleted or
//! finished, ...) moves them back, or until they have waited 5 minutes.
//!
//! A popped pod is *in flight* until the scheduler requeues it (it failed) or forgets it (it was
//! bound). A cluster event that arrives while pods are in flight makes their failure go to
//! backoffQ rather than unschedulablePods, so the event is not lost (upstream's move-request
//! cycle). Time is tokio's, so tests run on a paused clock.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use tokio::time::Instant;

use super::cache::PodInfo;

/// The first back-off (`podInitialBackoffSeconds`).
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// The longest back-off (`podMaxBackoffSeconds`).
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long a pod stays unschedulable without any event before it is retried anyway.
pub const MAX_UNSCHEDULABLE: Duration = Duration::from_secs(5 * 60);

/// A pod's queue key, `namespace/name`.
pub fn key(pod: &impl kube::Resource) -> String {
    meta_key(pod.meta())
}

/// [`key`] of the object with this metadata.
pub fn meta_key(meta: &ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

/// A pod in the queue, with what the queue knows about its attempts.
#[derive(Clone, Debug)]
pub struct QueuedPod {
    /// The pod, as last seen.
    pub pod: Arc<PodInfo>,
    /// How many times it has been popped for scheduling.
    pub attempts: u32,
    /// When it was last added to the queue (orders pods of equal priority).
    pub timestamp: Instant,
    /// When it was first added.
    pub initial: Instant,
    /// The plugins that rejected it last time (what a cluster event must help to move it).
    pub unschedulable_plugins: BTreeSet<String>,
    /// The scheduling cycle it was popped in.
    cycle: u64,
}

impl QueuedPod {
    fn new(pod: Arc<PodInfo>, now: Instant) -> Self {
        QueuedPod {
            pod,
            attempts: 0,
            timestamp: now,
            initial: now,
            unschedulable_plugins: BTreeSet::new(),
            cycle: 0,
        }
    }

    fn priority(&self) -> i32 {
        self.pod.priority.unwrap_or(0)
    }

    /// How long this pod backs off after its last attempt: 1 s doubling per attempt, at most
    /// 10 s.
    pub fn backoff(&self) -> Duration {
        let mut duration = INITIAL_BACKOFF;
        for _ in 1..self.attempts {
            duration *= 2;
            if duration >= MAX_BACKOFF {
                return MAX_BACKOFF;
            }
        }
        duration
    }

    fn backoff_expiry(&self) -> Instant {
        self.timestamp + self.backoff()
    }
}

/// Why an attempt failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No node fits; these plugins rejected nodes.
    Unschedulable(BTreeSet<String>),
    /// Something else went wrong (the binding failed, say): retry after the back-off.
    Error,
}

/// A change in the cluster that may make unschedulable pods schedulable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterEvent {
    /// A node joined.
    NodeAdd,
    /// A node changed (labels, taints, allocatable, cordon).
    NodeUpdate,
    /// A pod was bound to a node.
    AssignedPodAdd,
    /// A pod on a node changed (its labels, say).
    AssignedPodUpdate,
    /// A pod on a node was deleted or finished, freeing its resources.
    AssignedPodDelete,
    /// A PersistentVolumeClaim, PersistentVolume or StorageClass was added or changed.
    StorageChange,
}

impl ClusterEvent {
    /// Whether the event may help a pod rejected by `plugin` (upstream's `EventsToRegister`).
    fn may_help(self, plugin: &str) -> bool {
        match self {
            ClusterEvent::NodeAdd | ClusterEvent::NodeUpdate => true,
            ClusterEvent::AssignedPodAdd | ClusterEvent::AssignedPodUpdate => {
                matches!(plugin, "PodTopologySpread" | "InterPodAffinity")
            }
            ClusterEvent::AssignedPodDelete => matches!(
                plugin,
                "NodeResourcesFit" | "PodTopologySpread" | "InterPodAffinity"
            ),
            ClusterEvent::StorageChange => plugin == super::volumebinding::NAME,
        }
    }
}

enum Place {
    Active(u64),
    Backoff(u64),
    Unschedulable(Instant),
}

struct Entry {
    queued: QueuedPod,
    place: Place,
}

/// Ordered so that the max-heap pops the highest priority, then the earliest timestamp.
struct ActiveKey {
    priority: i32,
    timestamp: Instant,
    seq: u64,
    key: String,
}

impl PartialEq for ActiveKey {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for ActiveKey {}
impl PartialOrd for ActiveKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for ActiveKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.timestamp.cmp(&self.timestamp))
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

/// How many pods each part of the queue holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// activeQ.
    pub active: usize,
    /// backoffQ.
    pub backoff: usize,
    /// unschedulablePods.
    pub unschedulable: usize,
    /// Popped and not yet requeued or done.
    pub in_flight: usize,
}

/// The queue. Heaps hold keys with a sequence number; an entry that moved on leaves a stale key
/// behind that is skipped when it comes up.
#[derive(Default)]
pub struct SchedulingQueue {
    pods: HashMap<String, Entry>,
    /// The keys of the unschedulable pods (what cluster events look through).
    unschedulable: HashSet<String>,
    active: BinaryHeap<ActiveKey>,
    backoff: BinaryHeap<Reverse<(Instant, u64, String)>>,
    in_flight: HashMap<String, QueuedPod>,
    seq: u64,
    cycle: u64,
    move_request_cycle: u64,
}

impl SchedulingQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes a pod out of whichever part holds it.
    fn take(&mut self, key: &str) -> Option<Entry> {
        self.unschedulable.remove(key);
        self.pods.remove(key)
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn push_active(&mut self, queued: QueuedPod) {
        let seq = self.next_seq();
        let key = key(&*queued.pod);
        self.active.push(ActiveKey {
            priority: queued.priority(),
            timestamp: queued.timestamp,
            seq,
            key: key.clone(),
        });
        self.pods.insert(
            key,
            Entry {
                queued,
                place: Place::Active(seq),
            },
        );
    }

    fn push_backoff(&mut self, queued: QueuedPod) {
        let seq = self.next_seq();
        let key = key(&*queued.pod);
        self.backoff
            .push(Reverse((queued.backoff_expiry(), seq, key.clone())));
        self.pods.insert(
            key,
            Entry {
                queued,
                place: Place::Backoff(seq),
            },
        );
    }

    /// Active if its back-off is over, else backoffQ.
    fn push_active_or_backoff(&mut self, queued: QueuedPod, now: Instant) {
        if queued.attempts > 0 && queued.backoff_expiry() > now {
            self.push_backoff(queued);
        } else {
            self.push_active(queued);
        }
    }

    /// A new pending pod: straight to activeQ.
    pub fn add(&mut self, pod: Arc<PodInfo>) {
        let k = key(&*pod);
        if self.pods.contains_key(&k) || self.in_flight.contains_key(&k) {
            self.update(pod);
            return;
        }
        self.push_active(QueuedPod::new(pod, Instant::now()));
    }

    /// A pending pod changed: kept where it is with the new object, except that an
    /// unschedulable pod whose spec or labels changed gets another try.
    pub fn update(&mut self, pod: Arc<PodInfo>) {
        let k = key(&*pod);
        if let Some(flying) = self.in_flight.get_mut(&k) {
            flying.pod = pod;
            return;
        }
        let Some(entry) = self.pods.get_mut(&k) else {
            self.add(pod);
            return;
        };
        // Status-only changes (our own PodScheduled=False, say) do not make a pod schedulable.
        let changed = entry.queued.pod.pod().map(|p| &p.spec) != pod.pod().map(|p| &p.spec)
            || entry.queued.pod.metadata.labels != pod.metadata.labels;
        entry.queued.pod = pod;
        if changed
            && let Place::Unschedulable(_) = entry.place
            && let Some(entry) = self.take(&k)
        {
            self.push_active_or_backoff(entry.queued, Instant::now());
        }
    }

    /// A pod was deleted, bound elsewhere or no longer ours: gone from every part.
    pub fn delete(&mut self, key: &str) {
        self.take(key);
        self.in_flight.remove(key);
    }

    /// The next pod to schedule, if activeQ has one (moving finished back-offs first). The pod
    /// is in flight until [`requeue`](Self::requeue) or [`done`](Self::done).
    pub fn pop(&mut self) -> Option<QueuedPod> {
        self.flush_backoff();
        while let Some(top) = self.active.pop() {
            let current = matches!(
                self.pods.get(&top.key),
                Some(Entry { place: Place::Active(seq), .. }) if *seq == top.seq
            );
            if !current {
                continue;
            }
            let mut queued = self.take(&top.key)?.queued;
            self.cycle += 1;
            queued.attempts += 1;
            queued.cycle = self.cycle;
            self.in_flight.insert(top.key, queued.clone());
            return Some(queued);
        }
        None
    }

    /// The pod was bound (or assumed and on its way): no longer queued.
    pub fn done(&mut self, key: &str) {
        self.in_flight.remove(key);
    }

    /// A popped pod failed: to unschedulablePods if no node fits and nothing changed since it
    /// was popped, else to backoffQ. A pod deleted meanwhile is dropped.
    pub fn requeue(&mut self, key: &str, failure: Failure) {
        let Some(mut queued) = self.in_flight.remove(key) else {
            return;
        };
        let now = Instant::now();
        queued.timestamp = now;
        match failure {
            Failure::Unschedulable(plugins) if self.move_request_cycle < queued.cycle => {
                queued.unschedulable_plugins = plugins;
                self.unschedulable.insert(key.to_owned());
                self.pods.insert(
                    key.to_owned(),
                    Entry {
                        queued,
                        place: Place::Unschedulable(now),
                    },
                );
            }
            Failure::Unschedulable(plugins) => {
                queued.unschedulable_plugins = plugins;
                self.push_backoff(queued);
            }
            Failure::Error => self.push_backoff(queued),
        }
    }

    /// A cluster event: unschedulable pods it may help go back to activeQ (or backoffQ while
    /// they back off).
    pub fn on_event(&mut self, event: ClusterEvent) {
        let now = Instant::now();
        self.move_request_cycle = self.cycle;
        let helped: Vec<String> = self
            .unschedulable
            .iter()
            .filter(|k| {
                self.pods.get(*k).is_some_and(|e| {
                    e.queued.unschedulable_plugins.is_empty()
                        || e.queued
                            .unschedulable_plugins
                            .iter()
                            .any(|p| event.may_help(p))
                })
            })
            .cloned()
            .collect();
        for k in helped {
            if let Some(entry) = self.take(&k) {
                self.push_active_or_backoff(entry.queued, now);
            }
        }
    }

    /// Moves pods whose back-off is over to activeQ, and pods unschedulable for 5 minutes back
    /// to the queue (upstream runs these every 1 s and 30 s; here the scheduler calls it before
    /// every pop and on a timer).
    pub fn flush(&mut self) {
        self.flush_backoff();
        let now = Instant::now();
        let stale: Vec<String> = self
            .unschedulable
            .iter()
            .filter(|k| {
                self.pods.get(*k).is_some_and(|e| {
                    matches!(e.place, Place::Unschedulable(since) if now.duration_since(since) >= MAX_UNSCHEDULABLE)
                })
            })
            .cloned()
            .collect();
        for k in stale {
            if let Some(entry) = self.take(&k) {
                self.push_active_or_backoff(entry.queued, now);
            }
        }
    }

    fn flush_backoff(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((expiry, seq, _))) = self.backoff.peek() {
            if *expiry > now {
                break;
            }
            let (seq, Some(Reverse((_, _, k)))) = (*seq, self.backoff.pop()) else {
                break;
            };
            let current = matches!(
                self.pods.get(&k),
                Some(Entry { place: Place::Backoff(s), .. }) if *s == seq
            );
            if current && let Some(entry) = self.take(&k) {
                self.push_active(entry.queued);
            }
        }
    }

    /// Whether activeQ may have a pod to pop.
    pub fn has_active(&self) -> bool {
        !self.active.is_empty()
    }

    /// When the earliest back-off ends, if any pod backs off.
    pub fn next_backoff(&self) -> Option<Instant> {
        self.backoff.iter().map(|Reverse((t, _, _))| *t).min()
    }

    /// How many pods each part holds.
    pub fn counts(&self) -> Counts {
        let mut counts = Counts {
            in_flight: self.in_flight.len(),
            ..Counts::default()
        };
        for e in self.pods.values() {
            match e.place {
                Place::Active(_) => counts.active += 1,
                Place::Backoff(_) => counts.backoff += 1,
                Place::Unschedulable(_) => counts.unschedulable += 1,
            }
        }
        counts
    }

    /// Whether the pod is queued or in flight.
    pub fn contains(&self, key: &str) -> bool {
        self.pods.contains_key(key) || self.in_flight.contains_key(key)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(name: &str, priority: i32) -> Arc<PodInfo> {
        Arc::new(PodInfo::new(
            serde_json::from_value(json!({"metadata": {"name": name, "namespace": "default"}, "spec": {"priority": priority, "containers": [{"name": "c"}]}}))
                .unwrap(),
        ))
    }

    fn names(q: &mut SchedulingQueue) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(p) = q.pop() {
            out.push(p.pod.metadata.name.clone().unwrap());
        }
        out
    }

    fn counts(active: usize, backoff: usize, unschedulable: usize) -> Counts {
        Counts {
            active,
            backoff,
            unschedulable,
            in_flight: 0,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn active_queue_orders_by_priority_then_time() {
        let mut q = SchedulingQueue::new();
        for (name, priority) in [("a", 0), ("b", 10), ("c", 0), ("d", 10), ("e", -5)] {
            q.add(pod(name, priority));
            tokio::time::advance(Duration::from_millis(1)).await;
        }
        assert_eq!(names(&mut q), ["b", "d", "a", "c", "e"]);
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_to_ten_seconds() {
        for (attempts, expected) in [(1, 1), (2, 2), (3, 4), (4, 8), (5, 10), (9, 10)] {
            let mut queued = QueuedPod::new(pod("p", 0), Instant::now());
            queued.attempts = attempts;
            assert_eq!(
                queued.backoff(),
                Duration::from_secs(expected),
                "{attempts}"
            );
        }
    }

    /// One step of a queue story: what to do, then the counts expected after it.
    enum Step {
        Add(&'static str),
        Pop(Option<&'static str>),
        Unschedulable(&'static str, &'static str),
        Error(&'static str),
        Event(ClusterEvent),
        Advance(u64),
        Flush,
        Delete(&'static str),
    }

    #[tokio::test(start_paused = true)]
    async fn stories() {
        use ClusterEvent::*;
        use Step::*;
        let table: Vec<(&str, Vec<(Step, Counts)>)> = vec![
            (
                "an unschedulable pod waits for an event that may help it",
                vec![
                    (Add("p"), counts(1, 0, 0)),
                    (Pop(Some("p")), counts(0, 0, 0)),
                    (Unschedulable("p", "NodeResourcesFit"), counts(0, 0, 1)),
                    (Event(AssignedPodAdd), counts(0, 0, 1)),
                    (Advance(2), counts(0, 0, 1)),
                    (Event(AssignedPodDelete), counts(1, 0, 0)),
                    (Pop(Some("p")), counts(0, 0, 0)),
                ],
            ),
            (
                "an event during the attempt sends the failure to backoffQ",
                vec![
                    (Add("p"), counts(1, 0, 0)),
                    (Pop(Some("p")), counts(0, 0, 0)),
                    (Event(NodeAdd), counts(0, 0, 0)),
                    (Unschedulable("p", "TaintToleration"), counts(0, 1, 0)),
                    (Pop(None), counts(0, 1, 0)),
                    (Advance(1), counts(0, 1, 0)),
                    (Pop(Some("p")), counts(0, 0, 0)),
                ],
            ),
            (
                "a moved pod still backs off (second attempt: 2 s)",
                vec![
                    (Add("p"), counts(1, 0, 0)),
                    (Pop(Some("p")), counts(0, 0, 0)),
                    (Error("p"), counts(0, 1, 0)),
                    (Advance(1), counts(0, 1, 0)),
                    (Pop(Some("p")), counts(0, 0, 0)),
                    (Unschedulable("p", "NodeAffinity"), counts(0, 0, 1)),
                    (Event(NodeUpdate), counts(0, 1, 0)),
                    (Advance(1), counts(0, 1, 0)),
                    (Pop(None), counts(0, 1, 0)),
                    (Advance(1), counts(0, 1, 0)),
                    (Pop(Some("p")), counts(0, 0, 0)),
                ],
            ),
            (
                "unschedulable pods are retried after 5 minutes anyway",
                vec![
                    (Add("p"), counts(1, 0, 0)),
                    (Pop(Some("p")), counts(0, 0, 0)),
                    (Unschedulable("p", "NodeResourcesFit"), counts(0, 0, 1)),
                    (Advance(299), counts(0, 0, 1)),
                    (Flush, counts(0, 0, 1)),
                    (Advance(1), counts(0, 0, 1)),
                    (Flush, counts(1, 0, 0)),
                ],
            ),
            (
                "a deleted pod leaves every part",
                vec![
                    (Add("p"), counts(1, 0, 0)),
                    (Add("q"), counts(2, 0, 0)),
                    (Delete("p"), counts(1, 0, 0)),
                    (Pop(Some("q")), counts(0, 0, 0)),
                    (Delete("q"), counts(0, 0, 0)),
                    (Error("q"), counts(0, 0, 0)),
                    (Pop(None), counts(0, 0, 0)),
                ],
            ),
        ];
        for (story, steps) in table {
            let mut q = SchedulingQueue::new();
            for (i, (step, expected)) in steps.into_iter().enumerate() {
                match step {
                    Add(name) => q.add(pod(name, 0)),
                    Pop(name) => assert_eq!(
                        q.pop().map(|p| p.pod.metadata.name.clone().unwrap()),
                        name.map(str::to_owned),
                        "{story}: step {i}"
                    ),
                    Unschedulable(name, plugin) => q.requeue(
                        &format!("default/{name}"),
                        Failure::Unschedulable(BTreeSet::from([plugin.to_owned()])),
                    ),
                    Error(name) => q.requeue(&format!("default/{name}"), Failure::Error),
                    Event(event) => q.on_event(event),
                    Advance(secs) => tokio::time::advance(Duration::from_secs(secs)).await,
                    Flush => q.flush(),
                    Delete(name) => q.delete(&format!("default/{name}")),
                }
                let now = Counts {
                    in_flight: 0,
                    ..q.counts()
                };
                assert_eq!(now, expected, "{story}: after step {i}");
            }
        }
    }
}
