//! What every component's watch loop shares (client-go calls these informers): the controller
//! manager's [`SharedInformerFactory`] (one cache per resource type for every controller, with
//! indexes and event handlers), and for the other components caches filled by kube-runtime
//! reflectors, primed before the first pass, then woken by batches of changes.

mod shared;

pub use shared::{BY_OWNER, Change, Informer, ORPHANS, SharedInformerFactory, Watched};

use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;

/// Polls `changes` (the reflectors' streams, which fill the caches) until `ready` completes,
/// that is until every cache holds its first list.
pub async fn prime(changes: &mut BoxStream<'_, ()>, ready: impl Future<Output = ()>) {
    tokio::pin!(ready);
    loop {
        tokio::select! {
            _ = &mut ready => return,
            _ = changes.next() => {}
        }
    }
}

/// How often a component's loop may pass over its caches: each pass is followed by a pause of
/// at least three times its length, so a component whose pass over 10,000 objects takes 20 ms
/// does at most ~12 passes a second however fast changes arrive, and spends at most a quarter of
/// a core on them. Small caches pass in microseconds and keep reacting within milliseconds.
#[derive(Debug)]
pub struct Pace {
    /// When the last pass began (when `next_batch` last returned).
    pass_began: tokio::time::Instant,
}

impl Default for Pace {
    fn default() -> Self {
        Pace {
            pass_began: tokio::time::Instant::now(),
        }
    }
}

/// The shortest and longest pause after a pass.
const MIN_PAUSE: Duration = Duration::from_millis(5);
const MAX_PAUSE: Duration = Duration::from_secs(2);

/// Waits for the next change (at most `resync`, after which a component looks again anyway),
/// then takes in the changes that come with it for a pause paced by the last pass (see
/// [`Pace`]). The caches stay current throughout: the stream is polled the whole time.
pub async fn next_batch(changes: &mut BoxStream<'_, ()>, resync: Duration, pace: &mut Pace) {
    let pass = pace.pass_began.elapsed();
    let _ = tokio::time::timeout(resync, changes.next()).await;
    let pause = (pass * 3).clamp(MIN_PAUSE, MAX_PAUSE);
    let deadline = tokio::time::Instant::now() + pause;
    while let Ok(Some(_)) = tokio::time::timeout_at(deadline, changes.next()).await {}
    pace.pass_began = tokio::time::Instant::now();
}

/// A cache of every `K` the API server has (narrowed by `config`, e.g. a field selector), kept
/// current by a kube-runtime reflector, and the stream that drives it (one `()` per change).
pub fn cache<K>(
    client: &kube::Client,
    config: kube::runtime::watcher::Config,
) -> (kube::runtime::reflector::Store<K>, BoxStream<'static, ()>)
where
    K: Watched,
{
    cache_with(client, config, |_: &mut K| {})
}

/// Like [`cache`], with `slim` applied to each object before the cache takes it in: a component
/// that reads a few fields of many objects (DNS, of every pod) keeps only those.
pub fn cache_with<K>(
    client: &kube::Client,
    config: kube::runtime::watcher::Config,
    slim: impl FnMut(&mut K) + Send + 'static,
) -> (kube::runtime::reflector::Store<K>, BoxStream<'static, ()>)
where
    K: Watched,
{
    let (store, changes) = changes_with::<K>(client, config, slim);
    (store, changes.map(|_| ()).boxed())
}

/// Like [`cache`], but the stream yields each change (after the cache has taken it in), for a
/// component that keeps its own state up to date incrementally (the scheduler's node cache):
/// `Apply` and `Delete` per object, and `InitDone` after every (re)list, when the cache holds the
/// whole truth again.
pub fn changes<K>(
    client: &kube::Client,
    config: kube::runtime::watcher::Config,
) -> (
    kube::runtime::reflector::Store<K>,
    BoxStream<'static, kube::runtime::watcher::Event<K>>,
)
where
    K: Watched,
{
    changes_with(client, config, |_: &mut K| {})
}

/// Like [`changes`], with `slim` applied to each object before the cache takes it in.
pub fn changes_with<K>(
    client: &kube::Client,
    config: kube::runtime::watcher::Config,
    mut slim: impl FnMut(&mut K) + Send + 'static,
) -> (
    kube::runtime::reflector::Store<K>,
    BoxStream<'static, kube::runtime::watcher::Event<K>>,
)
where
    K: Watched,
{
    use kube::runtime::{WatchStreamExt, reflector, watcher};
    let (store, writer) = reflector::store::<K>();
    let api = kube::Api::<K>::all(client.clone());
    // Like kube-controller-manager's informers, the caches drop managedFields, which no
    // component reads and which can be most of an object's size.
    let changes = reflector(
        writer,
        watcher(api, config).modify(move |o: &mut K| {
            o.meta_mut().managed_fields = None;
            slim(o);
        }),
    )
    .default_backoff()
    .filter_map(|event| async move { event.ok() })
    .boxed();
    (store, changes)
}
