//! Automatic compaction: keeps a window of recent history on any [`Store`], as the real API
//! server compacts etcd every few minutes.
//!
//! Every tick the compactor samples the store's current revision. It then compacts up to the
//! newer of two marks: the revision the store had `keep_for` ago (so recent history survives for
//! watchers to resume from), and `keep_revisions` behind the current revision (so a burst of
//! writes cannot grow history without bound). A watcher or paginated list older than that gets
//! [`super::Error::Compacted`], which the API server reports as `410 Expired`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{Result, Revision, Store};

/// How much history to keep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompactionPolicy {
    /// Keep the changes of at least this long ago...
    pub keep_for: Duration,
    /// ...but never more than this many revisions.
    pub keep_revisions: u64,
    /// How often to check.
    pub interval: Duration,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        CompactionPolicy {
            keep_for: Duration::from_secs(5 * 60),
            keep_revisions: 10_000,
            interval: Duration::from_secs(10),
        }
    }
}

/// Compacts one store by a [`CompactionPolicy`].
pub struct Compactor {
    store: Arc<dyn Store>,
    policy: CompactionPolicy,
    /// (when, the store's revision then), oldest first.
    samples: VecDeque<(Instant, Revision)>,
    compacted: Revision,
}

impl Compactor {
    /// A compactor for `store`.
    pub fn new(store: Arc<dyn Store>, policy: CompactionPolicy) -> Self {
        Compactor {
            store,
            policy,
            samples: VecDeque::new(),
            compacted: 0,
        }
    }

    /// Runs forever (until the task is aborted), compacting every `policy.interval`.
    pub fn spawn(mut self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(self.policy.interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                if let Err(error) = self.tick().await {
                    tracing::warn!(%error, "automatic compaction failed");
                }
            }
        })
    }

    /// One check: samples the current revision and compacts if the policy says so. Returns the
    /// revision compacted to, if it compacted.
    pub async fn tick(&mut self) -> Result<Option<Revision>> {
        let now = Instant::now();
        let current = self.store.current_revision().await?;
        self.samples.push_back((now, current));
        let mut by_time = 0;
        // The newest sample taken at least `keep_for` ago marks where the window starts.
        while let Some(&(at, revision)) = self.samples.front() {
            if now.duration_since(at) < self.policy.keep_for {
                break;
            }
            by_time = revision;
            self.samples.pop_front();
        }
        if by_time > 0 {
            self.samples
                .push_front((now - self.policy.keep_for, by_time));
        }
        let by_count = current.saturating_sub(self.policy.keep_revisions);
        let target = by_time.max(by_count);
        if target <= self.compacted || target <= 1 {
            return Ok(None);
        }
        self.store.compact(target).await?;
        self.compacted = target;
        tracing::debug!(revision = target, current, "compacted store history");
        Ok(Some(target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::EmbeddedStore;
    use crate::store::{Error, RangeRequest};

    async fn write(store: &dyn Store, n: usize) {
        for i in 0..n {
            store
                .create(
                    &format!("/k/{i:06}-{}", store.current_revision().await.unwrap()),
                    "v".into(),
                )
                .await
                .unwrap();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn keeps_the_window_and_caps_revisions() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&dir.path().join("s")).unwrap());
        let policy = CompactionPolicy {
            keep_for: Duration::from_secs(60),
            keep_revisions: 100,
            interval: Duration::from_secs(10),
        };
        let mut compactor = Compactor::new(store.clone(), policy);

        write(&*store, 10).await; // revisions 2..=11
        assert_eq!(
            compactor.tick().await.unwrap(),
            None,
            "nothing is old enough yet"
        );
        tokio::time::advance(Duration::from_secs(30)).await;
        write(&*store, 10).await; // 12..=21
        assert_eq!(compactor.tick().await.unwrap(), None);
        tokio::time::advance(Duration::from_secs(31)).await;
        // The first sample (revision 11) is now over a minute old.
        assert_eq!(compactor.tick().await.unwrap(), Some(11));
        assert!(matches!(
            store.watch("/k/", 10).await.err(),
            Some(Error::Compacted {
                requested: 10,
                compacted: Some(11)
            })
        ));
        assert!(store.watch("/k/", 11).await.is_ok());

        write(&*store, 150).await; // up to 171: the cap wins over the window
        assert_eq!(compactor.tick().await.unwrap(), Some(71));
        let old = RangeRequest {
            at_revision: Some(70),
            ..RangeRequest::prefix("/k/")
        };
        assert!(matches!(
            store.range(&old).await,
            Err(Error::Compacted { .. })
        ));
        assert_eq!(
            compactor.tick().await.unwrap(),
            None,
            "nothing new to compact"
        );
    }
}
