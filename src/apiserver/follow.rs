//! Objects followed from the store into an authorizer's or admission plugin's state, as
//! kube-apiserver's authorizers and quota admission follow theirs through informers: each kind listed, then watched from the list's revision
//! (and listed again whenever its watch ends), in a task per kind, from the first request that
//! needs them until the API server is dropped.
//!
//! The state ([`State`]) says what it keeps of each object; [`Following`] runs the loops, and
//! knows how far each kind has been applied, so that a decision can wait for a write this API
//! server just made ([`Following::caught_up`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{OnceCell, watch};

use crate::store::{Event, KeyValue, RangeRequest, Revision, Store};

/// What an authorizer keeps of the objects it follows. Its methods are called from the
/// followers' tasks; readers share it behind its own locks.
pub(crate) trait State: Default + Send + Sync + 'static {
    /// The kinds followed: each one's name (as a write's flow event names it) and its store
    /// prefix (`/registry/pods/`).
    const KINDS: &'static [(&'static str, &'static str)];

    /// `kind`'s objects as just listed: what was known of the kind is replaced by them.
    fn reset(&self, kind: usize, objects: &[KeyValue]);

    /// One object of `kind` was put (`Some`: its stored value) or deleted (`None`).
    fn apply(&self, kind: usize, key: &str, value: Option<&[u8]>);
}

/// A [`State`] kept current from the store, started by the first request that needs it.
pub(crate) struct Following<S: State> {
    follower: OnceCell<Follower<S>>,
    /// The highest revision this API server wrote of each kind.
    written: Mutex<Vec<Revision>>,
}

struct Follower<S> {
    state: Arc<S>,
    /// The revision each kind's follower has applied.
    seen: Vec<watch::Sender<Revision>>,
    /// Dropped with the API server: the followers then stop.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl<S: State> Default for Following<S> {
    fn default() -> Self {
        Following {
            follower: OnceCell::new(),
            written: Mutex::new(vec![0; S::KINDS.len()]),
        }
    }
}

impl<S: State> Following<S> {
    /// The state, as current as its followers are (the first call lists every kind first).
    pub(crate) async fn state(&self, store: &Arc<dyn Store>) -> &S {
        &self.follower(store).await.state
    }

    async fn follower(&self, store: &Arc<dyn Store>) -> &Follower<S> {
        self.follower.get_or_init(|| start(store.clone())).await
    }

    /// Notes that this API server wrote an object of `kind` (a kind name such as `Pod`; others
    /// are ignored) at `revision`.
    pub(crate) fn written(&self, kind: &str, revision: Revision) {
        if let Some(i) = S::KINDS.iter().position(|(k, _)| *k == kind) {
            let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
            written[i] = written[i].max(revision);
        }
    }

    /// Waits (`within` at most) until every write of the followed kinds this server made so far
    /// is in the state, so that a decision reads what its client just wrote.
    pub(crate) async fn caught_up(&self, store: &Arc<dyn Store>, within: Duration) {
        let follower = self.follower(store).await;
        let written = self
            .written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let all = async {
            for (seen, wanted) in follower.seen.iter().zip(written) {
                let mut seen = seen.subscribe();
                let _ = seen.wait_for(|r| *r >= wanted).await;
            }
        };
        let _ = tokio::time::timeout(within, all).await;
    }
}

/// Lists each kind and follows its watch, in a task per kind.
async fn start<S: State>(store: Arc<dyn Store>) -> Follower<S> {
    let state = Arc::new(S::default());
    let seen: Vec<_> = S::KINDS.iter().map(|_| watch::Sender::new(0)).collect();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let stopped = futures::future::FutureExt::shared(async move {
        let _ = stopped.await;
    });
    for (kind, sender) in seen.iter().enumerate() {
        // The first list is made here, so the first decision already has every object.
        let (revision, objects) = list::<S>(&*store, kind).await.unwrap_or_default();
        state.reset(kind, &objects);
        sender.send_replace(revision);
        let follow = follow(store.clone(), kind, revision, state.clone(), sender.clone());
        let stopped = stopped.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = follow => {}
                () = stopped => {}
            }
        });
    }
    Follower {
        state,
        seen,
        _stop: stop,
    }
}

async fn list<S: State>(
    store: &dyn Store,
    kind: usize,
) -> Result<(Revision, Vec<KeyValue>), crate::store::Error> {
    let result = store.range(&RangeRequest::prefix(S::KINDS[kind].1)).await?;
    Ok((result.revision, result.kvs))
}

/// Applies one kind's watch events, listing again whenever the watch ends.
async fn follow<S: State>(
    store: Arc<dyn Store>,
    kind: usize,
    mut revision: Revision,
    state: Arc<S>,
    seen: watch::Sender<Revision>,
) {
    let prefix = S::KINDS[kind].1;
    loop {
        match store.watch(prefix, revision + 1).await {
            Ok(mut events) => {
                while let Some(Ok(event)) = events.next().await {
                    let at = event.revision();
                    match &event {
                        Event::Put { kv, .. } => state.apply(kind, &kv.key, Some(&kv.value)),
                        Event::Delete { key, .. } => state.apply(kind, key, None),
                    }
                    revision = at;
                    seen.send_replace(at);
                }
            }
            Err(error) => tracing::warn!(%error, "authorization: cannot watch {prefix}"),
        }
        // The watch ended (compacted, or the store restarted): list again.
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Ok((at, objects)) = list::<S>(&*store, kind).await {
            state.reset(kind, &objects);
            revision = at;
            seen.send_replace(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::EmbeddedStore;

    /// Keys seen, per kind.
    #[derive(Default)]
    struct Keys(Mutex<Vec<std::collections::BTreeSet<String>>>);

    impl State for Keys {
        const KINDS: &'static [(&'static str, &'static str)] =
            &[("Pod", "/registry/pods/"), ("Node", "/registry/nodes/")];

        fn reset(&self, kind: usize, objects: &[KeyValue]) {
            let mut keys = self.0.lock().unwrap();
            keys.resize(2, Default::default());
            keys[kind] = objects.iter().map(|kv| kv.key.clone()).collect();
        }

        fn apply(&self, kind: usize, key: &str, value: Option<&[u8]>) {
            let mut keys = self.0.lock().unwrap();
            match value {
                Some(_) => keys[kind].insert(key.to_owned()),
                None => keys[kind].remove(key),
            };
        }
    }

    fn has(keys: &Keys, kind: usize, key: &str) -> bool {
        keys.0.lock().unwrap()[kind].contains(key)
    }

    #[tokio::test]
    async fn lists_then_follows_each_kind_and_waits_for_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(&dir.path().join("store.redb")).unwrap());
        store
            .create("/registry/pods/default/a", "{}".into())
            .await
            .unwrap();
        let following = Following::<Keys>::default();
        let keys = following.state(&store).await;
        assert!(has(keys, 0, "/registry/pods/default/a"));

        let revision = store
            .create("/registry/nodes/n1", "{}".into())
            .await
            .unwrap();
        following.written("Node", revision);
        // Other kinds are not this state's.
        following.written("Secret", revision + 100);
        following.caught_up(&store, Duration::from_secs(60)).await;
        assert!(has(keys, 1, "/registry/nodes/n1"));

        let revision = store.delete("/registry/pods/default/a", 2).await.unwrap();
        following.written("Pod", revision);
        following.caught_up(&store, Duration::from_secs(60)).await;
        assert!(!has(keys, 0, "/registry/pods/default/a"));
    }
}
