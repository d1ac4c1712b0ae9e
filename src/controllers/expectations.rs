//! What a controller has asked for and not yet seen (upstream's `ControllerExpectations`, with
//! `UIDTrackingControllerExpectations` for deletions): before creating n pods for an owner it
//! expects n creations, before deleting pods it expects those names to go, and it does not act
//! on the owner again until the informer has shown it all (or five minutes have passed, in case
//! an event was lost), so a lagging cache never doubles a scale-up or a scale-down.
//!
//! The pod informer's handlers report what they see ([`Expectations::creation_observed`],
//! [`Expectations::deletion_observed`]); a create that fails is observed at once, since it will
//! never show up.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// How long expectations hold before the controller acts anyway (upstream's
/// `ExpectationsTimeout`).
pub const TIMEOUT: Duration = Duration::from_secs(5 * 60);

#[derive(Debug)]
struct Pending {
    creations: i64,
    deletions: HashSet<String>,
    since: Instant,
}

/// Pending creations and deletions per owner key (`ns/name`). Cloning is cheap: every clone
/// shares the same record.
#[derive(Clone, Default, Debug)]
pub struct Expectations {
    pending: Arc<Mutex<HashMap<String, Pending>>>,
}

impl Expectations {
    fn with<R>(&self, key: &str, f: impl FnOnce(&mut Pending) -> R) -> R {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let entry = pending.entry(key.to_owned()).or_insert_with(|| Pending {
            creations: 0,
            deletions: HashSet::new(),
            since: Instant::now(),
        });
        f(entry)
    }

    /// Expects `n` more pods of `key` to appear.
    pub fn expect_creations(&self, key: &str, n: usize) {
        self.with(key, |p| {
            // A stray observation (a pod it did not create) never pays for a future creation.
            p.creations = p.creations.max(0) + n as i64;
            p.since = Instant::now();
        });
    }

    /// One pod of `key` appeared (or its create failed).
    pub fn creation_observed(&self, key: &str) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = pending.get_mut(key) {
            p.creations -= 1;
        }
    }

    /// Expects the pods `names` of `key` to go (be deleted, or start terminating).
    pub fn expect_deletions(&self, key: &str, names: impl IntoIterator<Item = String>) {
        self.with(key, |p| {
            p.deletions.extend(names);
            p.since = Instant::now();
        });
    }

    /// The pod `name` of `key` went (or its delete failed).
    pub fn deletion_observed(&self, key: &str, name: &str) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = pending.get_mut(key) {
            p.deletions.remove(name);
        }
    }

    /// Whether the controller may act on `key`: nothing is pending, or what is pending has
    /// waited past [`TIMEOUT`].
    pub fn satisfied(&self, key: &str) -> bool {
        let pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.get(key).is_none_or(|p| {
            (p.creations <= 0 && p.deletions.is_empty()) || p.since.elapsed() > TIMEOUT
        })
    }

    /// Drops what is pending for `key` (its owner is gone).
    pub fn forget(&self, key: &str) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn pending_work_holds_the_owner_until_seen_or_timed_out() {
        let e = Expectations::default();
        assert!(e.satisfied("ns/a"));
        e.expect_creations("ns/a", 2);
        e.creation_observed("ns/a");
        assert!(!e.satisfied("ns/a"));
        e.creation_observed("ns/a");
        assert!(e.satisfied("ns/a"));

        e.expect_deletions("ns/a", ["p1".to_owned(), "p2".to_owned()]);
        e.deletion_observed("ns/a", "p1");
        e.deletion_observed("ns/a", "p1");
        assert!(!e.satisfied("ns/a"));
        e.deletion_observed("ns/a", "p2");
        assert!(e.satisfied("ns/a"));

        e.expect_creations("ns/b", 1);
        assert!(!e.satisfied("ns/b"));
        tokio::time::advance(TIMEOUT + Duration::from_secs(1)).await;
        assert!(e.satisfied("ns/b"), "a lost event does not wedge the owner");
        e.forget("ns/b");
        e.creation_observed("ns/b");
        assert!(e.satisfied("ns/b"));
    }
}
