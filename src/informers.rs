//! What every component's watch loop shares (client-go calls these informers): caches filled by
//! kube-runtime reflectors, primed before the first pass, then woken by batches of changes.

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

/// Waits for the next change (at most `resync`, after which a component looks again anyway),
/// then takes in the burst of changes that came with it.
pub async fn next_batch(changes: &mut BoxStream<'_, ()>, resync: Duration) {
    let _ = tokio::time::timeout(resync, changes.next()).await;
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(5), changes.next()).await {}
}

/// A cache of every `K` the API server has (narrowed by `config`, e.g. a field selector), kept
/// current by a kube-runtime reflector, and the stream that drives it (one `()` per change).
pub fn cache<K>(
    client: &kube::Client,
    config: kube::runtime::watcher::Config,
) -> (kube::runtime::reflector::Store<K>, BoxStream<'static, ()>)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    use kube::runtime::{WatchStreamExt, reflector, watcher};
    let (store, writer) = reflector::store::<K>();
    let api = kube::Api::<K>::all(client.clone());
    let changes = reflector(writer, watcher(api, config))
        .default_backoff()
        .map(|_| ())
        .boxed();
    (store, changes)
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
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    use kube::runtime::{WatchStreamExt, reflector, watcher};
    let (store, writer) = reflector::store::<K>();
    let api = kube::Api::<K>::all(client.clone());
    let changes = reflector(writer, watcher(api, config))
        .default_backoff()
        .filter_map(|event| async move { event.ok() })
        .boxed();
    (store, changes)
}
