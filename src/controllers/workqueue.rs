//! The keyed work queue every controller reconciles from, with client-go's `workqueue`
//! semantics: a key waiting in the queue is there once however often it is added (changes
//! coalesce), a key is processed by one worker at a time (added while processing, it is queued
//! again when the worker is done), and a failed key comes back after a per-key exponential
//! backoff (5 ms doubling to 1000 s, upstream's `DefaultControllerRateLimiter` item limiter).
//!
//! [`run_workers`] is the loop around a controller's reconcile: take a key, reconcile it, then
//! forget it, requeue it after the delay the reconcile asked for, or requeue it rate-limited
//! after an error.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::{Debug, Display};
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// An object's key: its namespace (`""` when cluster-scoped) and name, written `ns/name` (or
/// `name`), as client-go's `MetaNamespaceKeyFunc` writes it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// The namespace, `""` for a cluster-scoped object.
    pub namespace: String,
    /// The name.
    pub name: String,
}

impl Key {
    /// The key of `namespace`/`name`.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Key {
        Key {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The key of an object.
    pub fn of<K: kube::Resource>(object: &K) -> Key {
        let meta = object.meta();
        Key::new(
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
        )
    }
}

impl Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{}", self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

/// What a reconcile asks of the queue when it succeeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing more until the next change.
    Done,
    /// Look again after this long (say, when a pod becomes available).
    RequeueAfter(Duration),
}

/// The first and the longest backoff of a failing key.
const BASE_DELAY: Duration = Duration::from_millis(5);
const MAX_DELAY: Duration = Duration::from_secs(1000);

struct State<T> {
    queue: VecDeque<T>,
    /// Keys waiting to be processed (in `queue`, or to be queued when their worker is done).
    dirty: HashSet<T>,
    /// Keys a worker holds.
    processing: HashSet<T>,
    /// Keys waiting for a delay, and when they are due.
    waiting: HashMap<T, Instant>,
    /// Consecutive failures per key.
    failures: HashMap<T, u32>,
    shutting_down: bool,
}

struct Inner<T> {
    name: &'static str,
    state: Mutex<State<T>>,
    ready: Notify,
}

/// A keyed, deduplicating, rate-limited work queue. Cloning is cheap: every clone is the same
/// queue.
pub struct WorkQueue<T = Key> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for WorkQueue<T> {
    fn clone(&self) -> Self {
        WorkQueue {
            inner: self.inner.clone(),
        }
    }
}

impl<T: Clone + Eq + Hash + Send + Sync + 'static> WorkQueue<T> {
    /// An empty queue; `name` is the controller's, for its logs.
    pub fn new(name: &'static str) -> Self {
        WorkQueue {
            inner: Arc::new(Inner {
                name,
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    dirty: HashSet::new(),
                    processing: HashSet::new(),
                    waiting: HashMap::new(),
                    failures: HashMap::new(),
                    shutting_down: false,
                }),
                ready: Notify::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The controller's name.
    pub fn name(&self) -> &'static str {
        self.inner.name
    }

    /// Queues `item` unless it is already waiting.
    pub fn add(&self, item: T) {
        let mut state = self.lock();
        if state.shutting_down || !state.dirty.insert(item.clone()) {
            return;
        }
        if !state.processing.contains(&item) {
            state.queue.push_back(item);
            drop(state);
            self.inner.ready.notify_one();
        }
    }

    /// Queues `item` after `delay` (at once when it is zero). A key already waiting for an
    /// earlier time keeps it.
    pub fn add_after(&self, item: T, delay: Duration) {
        if delay.is_zero() {
            return self.add(item);
        }
        let due = Instant::now() + delay;
        {
            let mut state = self.lock();
            if state.shutting_down {
                return;
            }
            match state.waiting.get(&item) {
                Some(earlier) if *earlier <= due => return,
                _ => {
                    state.waiting.insert(item.clone(), due);
                }
            }
        }
        let queue = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(due).await;
            let mut state = queue.lock();
            // A later add_after for an earlier time replaced this one: it adds the key.
            if state.waiting.get(&item) == Some(&due) {
                state.waiting.remove(&item);
                drop(state);
                queue.add(item);
            }
        });
    }

    /// Queues `item` after its backoff, which doubles with each failure until [`Self::forget`].
    pub fn add_rate_limited(&self, item: T) {
        let delay = {
            let mut state = self.lock();
            let failures = state.failures.entry(item.clone()).or_insert(0);
            let delay = BASE_DELAY
                .checked_mul(1u32.checked_shl(*failures).unwrap_or(u32::MAX))
                .unwrap_or(MAX_DELAY)
                .min(MAX_DELAY);
            *failures += 1;
            delay
        };
        self.add_after(item, delay);
    }

    /// Forgets `item`'s failures: its next backoff is the first again.
    pub fn forget(&self, item: &T) {
        self.lock().failures.remove(item);
    }

    /// How many times `item` has failed since it was last forgotten.
    pub fn failures(&self, item: &T) -> u32 {
        self.lock().failures.get(item).copied().unwrap_or(0)
    }

    /// Takes the next key, waiting for one; `None` once the queue shuts down. The caller owns the
    /// key until [`Self::done`].
    pub async fn get(&self) -> Option<T> {
        loop {
            {
                let mut state = self.lock();
                if let Some(item) = state.queue.pop_front() {
                    state.dirty.remove(&item);
                    state.processing.insert(item.clone());
                    return Some(item);
                }
                if state.shutting_down {
                    return None;
                }
            }
            self.inner.ready.notified().await;
        }
    }

    /// Hands `item` back: if it was added while processed, it is queued again.
    pub fn done(&self, item: &T) {
        let mut state = self.lock();
        state.processing.remove(item);
        if state.dirty.contains(item) {
            state.queue.push_back(item.clone());
            drop(state);
            self.inner.ready.notify_one();
        }
    }

    /// How many keys are queued (not counting those being processed or waiting for a delay).
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// Whether no key is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// For tests: takes every queued key out (marking each done), written out and sorted.
    #[cfg(test)]
    pub(crate) async fn drain_sorted(&self) -> Vec<String>
    where
        T: Display,
    {
        let mut keys = Vec::new();
        while !self.is_empty() {
            let Some(key) = self.get().await else { break };
            self.done(&key);
            keys.push(key.to_string());
        }
        keys.sort();
        keys
    }

    /// Stops handing out keys: every waiting [`Self::get`] returns `None`.
    pub fn shut_down(&self) {
        self.lock().shutting_down = true;
        self.inner.ready.notify_waiters();
    }
}

/// Runs `workers` workers over `queue` until it shuts down: each takes a key, reconciles it, and
/// forgets it ([`Action::Done`]), requeues it after a delay ([`Action::RequeueAfter`]), or, when
/// the reconcile fails, logs the error and requeues it rate-limited, as client-go's
/// `processNextWorkItem` does.
pub async fn run_workers<T, F, Fut, E>(queue: WorkQueue<T>, workers: usize, reconcile: F)
where
    T: Clone + Eq + Hash + Send + Sync + Display + 'static,
    F: Fn(T) -> Fut,
    Fut: Future<Output = Result<Action, E>>,
    E: Display,
{
    let worker = || async {
        while let Some(key) = queue.get().await {
            match reconcile(key.clone()).await {
                Ok(Action::Done) => queue.forget(&key),
                Ok(Action::RequeueAfter(delay)) => {
                    queue.forget(&key);
                    queue.add_after(key.clone(), delay);
                }
                Err(e) => {
                    tracing::info!(controller = queue.name(), key = %key, "reconcile failed, requeued: {e}");
                    queue.add_rate_limited(key.clone());
                }
            }
            queue.done(&key);
        }
    };
    futures::future::join_all((0..workers.max(1)).map(|_| worker())).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn a_queued_key_is_there_once_and_comes_back_if_added_while_processed() {
        let queue = WorkQueue::new("test");
        queue.add(Key::new("ns", "a"));
        queue.add(Key::new("ns", "b"));
        queue.add(Key::new("ns", "a"));
        assert_eq!(queue.len(), 2);
        let a = queue.get().await.unwrap();
        assert_eq!(a.to_string(), "ns/a");
        // Added while processed: not handed to a second worker...
        queue.add(a.clone());
        assert_eq!(queue.get().await.unwrap().to_string(), "ns/b");
        assert!(queue.is_empty());
        // ...but queued again once the first is done.
        queue.done(&a);
        assert_eq!(queue.get().await.unwrap(), a);
        assert_eq!(Key::new("", "node-1").to_string(), "node-1");
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_exponentially_until_forgotten() {
        let queue = WorkQueue::new("test");
        let start = Instant::now();
        for expected_ms in [5, 10, 20, 40] {
            let before = Instant::now();
            queue.add_rate_limited("k");
            let k = queue.get().await.unwrap();
            assert_eq!(before.elapsed(), Duration::from_millis(expected_ms));
            queue.done(&k);
        }
        assert_eq!(queue.failures(&"k"), 4);
        queue.forget(&"k");
        assert_eq!(queue.failures(&"k"), 0);
        // 5 + 10 + 20 + 40 ms of backoff have passed on the paused clock.
        assert_eq!(start.elapsed(), Duration::from_millis(75));
    }

    #[tokio::test(start_paused = true)]
    async fn add_after_keeps_the_earliest_time() {
        let queue = WorkQueue::new("test");
        let start = Instant::now();
        queue.add_after("k", Duration::from_secs(10));
        queue.add_after("k", Duration::from_secs(3));
        queue.add_after("k", Duration::from_secs(20));
        let k = queue.get().await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        queue.done(&k);
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(queue.is_empty(), "the later timers were dropped");
    }

    #[tokio::test(start_paused = true)]
    async fn workers_requeue_errors_and_stop_at_shutdown() {
        let queue = WorkQueue::new("test");
        let calls = Arc::new(AtomicUsize::new(0));
        queue.add("k".to_owned());
        let (q, c) = (queue.clone(), calls.clone());
        let workers = tokio::spawn(run_workers(queue.clone(), 2, move |key: String| {
            let (q, c) = (q.clone(), c.clone());
            async move {
                let n = c.fetch_add(1, Ordering::SeqCst);
                if n < 2 {
                    return Err(format!("failure {n}"));
                }
                q.shut_down();
                assert_eq!(key, "k");
                Ok(Action::Done)
            }
        }));
        workers.await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(queue.failures(&"k".to_owned()), 0);
    }
}
