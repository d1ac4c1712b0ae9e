//! What every component's watch loop shares (client-go calls these informers): the controller
//! manager's [`SharedInformerFactory`] (one cache per resource type for every controller, with
//! indexes and event handlers), and for the other components caches filled by kube-runtime
//! reflectors (of the objects, or of a compact value a component keeps of each: [`compact`],
//! [`changes_as`]), primed before the first pass, then woken by batches of changes.

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
    let (store, changes) = changes::<K>(client, config);
    (store, changes.map(|_| ()).boxed())
}

/// What a compact cache keeps of one `K`: its namespace and name (its key in the cache) and
/// `value`, what the component reads of it.
#[derive(Debug)]
pub struct Keyed<K, T> {
    /// The object's namespace (`None` when cluster-scoped).
    pub namespace: Option<String>,
    /// The object's name.
    pub name: String,
    /// What the component keeps of it.
    pub value: T,
    kind: std::marker::PhantomData<fn() -> K>,
}

impl<K, T: Clone> Clone for Keyed<K, T> {
    fn clone(&self) -> Self {
        Keyed {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            value: self.value.clone(),
            kind: std::marker::PhantomData,
        }
    }
}

impl<K: kube::Resource<DynamicType = ()>, T> Keyed<K, T> {
    /// `value`, kept for `object`.
    pub fn new(object: &K, value: T) -> Self {
        let meta = object.meta();
        Keyed {
            namespace: meta.namespace.clone(),
            name: meta.name.clone().unwrap_or_default(),
            value,
            kind: std::marker::PhantomData,
        }
    }
}

impl<K: kube::Resource<DynamicType = ()>, T> kube::runtime::reflector::Lookup for Keyed<K, T> {
    type DynamicType = ();

    fn kind(_: &()) -> std::borrow::Cow<'_, str> {
        K::kind(&())
    }

    fn group(_: &()) -> std::borrow::Cow<'_, str> {
        K::group(&())
    }

    fn version(_: &()) -> std::borrow::Cow<'_, str> {
        K::version(&())
    }

    fn plural(_: &()) -> std::borrow::Cow<'_, str> {
        K::plural(&())
    }

    fn name(&self) -> Option<std::borrow::Cow<'_, str>> {
        Some(self.name.as_str().into())
    }

    fn namespace(&self) -> Option<std::borrow::Cow<'_, str>> {
        self.namespace.as_deref().map(Into::into)
    }

    fn resource_version(&self) -> Option<std::borrow::Cow<'_, str>> {
        None
    }

    fn uid(&self) -> Option<std::borrow::Cow<'_, str>> {
        None
    }
}

/// Like [`cache`], but what the cache keeps of each object is only what `compact` makes of it
/// (with its key): a component that reads a few fields of very many objects (DNS, of every
/// pod; each kube-proxy, of every node) keeps a small value of its own rather than the API
/// type, whose empty size alone is kilobytes.
pub fn compact<K, T>(
    client: &kube::Client,
    config: kube::runtime::watcher::Config,
    compact: impl Fn(&K) -> T + Send + 'static,
) -> (
    kube::runtime::reflector::Store<Keyed<K, T>>,
    BoxStream<'static, ()>,
)
where
    K: Watched,
    T: Clone + Send + Sync + 'static,
{
    let (store, changes) = changes_as(client, config, move |o: K| Keyed::new(&o, compact(&o)));
    (store, changes.map(|_| ()).boxed())
}

/// Like [`changes`], but the cache holds `T`s made from each object by `make` (a type of the
/// component's own that keeps what it reads, and is keyed as the object is).
pub fn changes_as<K, T>(
    client: &kube::Client,
    config: kube::runtime::watcher::Config,
    make: impl Fn(K) -> T + Send + 'static,
) -> (
    kube::runtime::reflector::Store<T>,
    BoxStream<'static, kube::runtime::watcher::Event<T>>,
)
where
    K: Watched,
    T: kube::runtime::reflector::Lookup<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    use kube::runtime::watcher::Event;
    use kube::runtime::{WatchStreamExt, reflector, watcher};
    let (store, writer) = reflector::store::<T>();
    let api = kube::Api::<K>::all(client.clone());
    // Like kube-controller-manager's informers, the caches drop managedFields, which no
    // component reads and which can be most of an object's size.
    let events = watcher(api, config)
        .modify(|o: &mut K| o.meta_mut().managed_fields = None)
        .map(move |event| {
            event.map(|event| match event {
                Event::Apply(o) => Event::Apply(make(o)),
                Event::Delete(o) => Event::Delete(make(o)),
                Event::InitApply(o) => Event::InitApply(make(o)),
                Event::Init => Event::Init,
                Event::InitDone => Event::InitDone,
            })
        });
    let changes = reflector(writer, events)
        .default_backoff()
        .filter_map(|event| async move { event.ok() })
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
    K: Watched,
{
    changes_as(client, config, |o: K| o)
}
