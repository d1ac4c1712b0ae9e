//! Shared informers, as client-go's `SharedInformerFactory` builds them for
//! kube-controller-manager: one list+watch per resource type for every controller, one cache of
//! `Arc<K>` they all read, indexes (by namespace, by controlling owner, and any a controller
//! adds, such as pods by node), and event handlers that turn each change into work-queue keys.
//!
//! A controller takes the informers it needs from the factory before [`SharedInformerFactory::start`],
//! adds its handlers and indexes, and waits for [`Informer::synced`] before its first reconcile.
//! Handlers run on the informer's task after the cache has taken the change in, so a handler
//! (and the reconcile it queues) always reads a cache at least as new as the change.

use std::any::{Any, TypeId};
use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, Mutex, RwLock};

use futures::StreamExt;
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;

/// The index of objects by the uid of their controlling owner reference.
pub const BY_OWNER: &str = "owner";
/// The index of objects without a controller (orphans a controller may adopt), by namespace.
pub const ORPHANS: &str = "orphans";
/// The index of objects by namespace.
const BY_NAMESPACE: &str = "namespace";

/// What a resource type needs to be watched and cached.
pub trait Watched:
    kube::Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static
{
}
impl<K> Watched for K where
    K: kube::Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static
{
}

/// One change the cache has taken in, as client-go's `ResourceEventHandler` sees it.
#[derive(Debug)]
pub enum Change<'a, K> {
    /// A new object (or one seen for the first time after a relist).
    Add(&'a K),
    /// A changed object (or, after a relist, one whose resourceVersion moved).
    Update {
        /// What the cache held before.
        old: &'a K,
        /// What it holds now.
        new: &'a K,
    },
    /// A deleted object (its last state).
    Delete(&'a K),
}

impl<'a, K> Change<'a, K> {
    /// The object as it is now (or was last, for a deletion).
    pub fn object(&self) -> &'a K {
        match self {
            Change::Add(o) | Change::Delete(o) => o,
            Change::Update { new, .. } => new,
        }
    }
}

type Handler<K> = Arc<dyn Fn(Change<'_, K>) + Send + Sync>;
type IndexFn<K> = Box<dyn Fn(&K) -> Vec<String> + Send + Sync>;
/// An object's place in the cache: namespace (`""` when cluster-scoped) and name.
type ObjectKey = (String, String);
/// One change as the cache saw it: what it held before, and what it holds now.
type Transition<K> = (Option<Arc<K>>, Option<Arc<K>>);
/// The informers a factory has handed out, by type.
type Informers = Arc<Mutex<Vec<(TypeId, Box<dyn Start>)>>>;

/// The cache itself: the objects, and the indexes over them.
struct State<K> {
    objects: HashMap<ObjectKey, Arc<K>>,
    indexers: Vec<(&'static str, IndexFn<K>)>,
    indexes: HashMap<&'static str, HashMap<String, HashSet<ObjectKey>>>,
}

impl<K: Watched> State<K> {
    fn index_values(&self, object: &K) -> Vec<(&'static str, String)> {
        self.indexers
            .iter()
            .flat_map(|(name, f)| f(object).into_iter().map(move |v| (*name, v)))
            .collect()
    }

    fn unindex(&mut self, key: &ObjectKey, object: &K) {
        for (name, value) in self.index_values(object) {
            if let Some(values) = self.indexes.get_mut(name)
                && let Some(keys) = values.get_mut(&value)
            {
                keys.remove(key);
                if keys.is_empty() {
                    values.remove(&value);
                }
            }
        }
    }

    fn index(&mut self, key: &ObjectKey, object: &K) {
        for (name, value) in self.index_values(object) {
            self.indexes
                .entry(name)
                .or_default()
                .entry(value)
                .or_default()
                .insert(key.clone());
        }
    }

    /// Puts `object` in, returning what it replaces.
    fn insert(&mut self, object: Arc<K>) -> Option<Arc<K>> {
        let key = key_of(&*object);
        let old = self.objects.insert(key.clone(), object.clone());
        if let Some(old) = &old {
            self.unindex(&key, old);
        }
        self.index(&key, &object);
        old
    }

    fn remove(&mut self, key: &ObjectKey) -> Option<Arc<K>> {
        let old = self.objects.remove(key)?;
        self.unindex(key, &old);
        Some(old)
    }
}

fn key_of<K: kube::Resource>(object: &K) -> ObjectKey {
    let meta = object.meta();
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

struct InformerInner<K> {
    state: RwLock<State<K>>,
    handlers: RwLock<Vec<Handler<K>>>,
    synced: tokio::sync::watch::Sender<bool>,
    /// What is done to each object before the cache takes it in (client-go's `SetTransform`).
    transform: RwLock<fn(&mut K)>,
}

/// One resource type's shared cache and its handlers. Cloning is cheap: every clone is the same
/// informer.
pub struct Informer<K> {
    inner: Arc<InformerInner<K>>,
}

impl<K> Clone for Informer<K> {
    fn clone(&self) -> Self {
        Informer {
            inner: self.inner.clone(),
        }
    }
}

impl<K: Watched> Informer<K> {
    fn new() -> Self {
        let mut state = State {
            objects: HashMap::new(),
            indexers: Vec::new(),
            indexes: HashMap::new(),
        };
        state.indexers.push((
            BY_NAMESPACE,
            Box::new(|o: &K| o.meta().namespace.clone().into_iter().collect()),
        ));
        state.indexers.push((
            BY_OWNER,
            Box::new(|o: &K| {
                crate::apimachinery::pods::controller_uid(o.meta())
                    .map(str::to_owned)
                    .into_iter()
                    .collect()
            }),
        ));
        state.indexers.push((
            ORPHANS,
            Box::new(
                |o: &K| match crate::apimachinery::pods::controller_uid(o.meta()) {
                    Some(_) => Vec::new(),
                    None => o.meta().namespace.clone().into_iter().collect(),
                },
            ),
        ));
        Informer {
            inner: Arc::new(InformerInner {
                state: RwLock::new(state),
                handlers: RwLock::new(Vec::new()),
                transform: RwLock::new(|_| {}),
                synced: tokio::sync::watch::Sender::new(false),
            }),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State<K>> {
        self.inner.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State<K>> {
        self.inner.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The object named `name` in `namespace` (`""` for a cluster-scoped one).
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        self.read()
            .objects
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Every cached object.
    pub fn list(&self) -> Vec<Arc<K>> {
        self.read().objects.values().cloned().collect()
    }

    /// Every cached object in `namespace`.
    pub fn list_namespace(&self, namespace: &str) -> Vec<Arc<K>> {
        self.by_index(BY_NAMESPACE, namespace)
    }

    /// How many objects the cache holds.
    pub fn len(&self) -> usize {
        self.read().objects.len()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds an index: `f` gives the values an object is found under with [`Informer::by_index`].
    /// Objects already cached are indexed at once. Adding a name twice keeps the first.
    pub fn add_index(
        &self,
        name: &'static str,
        f: impl Fn(&K) -> Vec<String> + Send + Sync + 'static,
    ) {
        let mut state = self.write();
        if state.indexers.iter().any(|(n, _)| *n == name) {
            return;
        }
        state.indexers.push((name, Box::new(f)));
        let objects: Vec<(ObjectKey, Arc<K>)> = state
            .objects
            .iter()
            .map(|(k, o)| (k.clone(), o.clone()))
            .collect();
        let f = &state.indexers.last().expect("just pushed").1;
        let mut index: HashMap<String, HashSet<ObjectKey>> = HashMap::new();
        for (key, object) in objects {
            for value in f(&object) {
                index.entry(value).or_default().insert(key.clone());
            }
        }
        state.indexes.insert(name, index);
    }

    /// The objects found under `value` in the index `name` (none for an unknown index).
    pub fn by_index(&self, name: &str, value: &str) -> Vec<Arc<K>> {
        let state = self.read();
        state
            .indexes
            .get(name)
            .and_then(|values| values.get(value))
            .map(|keys| {
                keys.iter()
                    .filter_map(|k| state.objects.get(k).cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Sets what is done to each object before the cache takes it in, as client-go's
    /// `SetTransform`: the controller manager drops what no controller reads of objects it
    /// keeps very many of. Set before the factory starts.
    pub fn set_transform(&self, transform: fn(&mut K)) {
        *self
            .inner
            .transform
            .write()
            .unwrap_or_else(|p| p.into_inner()) = transform;
    }

    /// Adds a handler, called for every change after the cache has taken it in. Handlers run on
    /// the informer's task and should only enqueue keys. Objects cached before the handler was
    /// added are delivered to it as additions, as client-go does.
    pub fn add_handler(&self, handler: impl Fn(Change<'_, K>) + Send + Sync + 'static) {
        let handler: Handler<K> = Arc::new(handler);
        self.inner
            .handlers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(handler.clone());
        for object in self.list() {
            handler(Change::Add(&object));
        }
    }

    /// Whether the cache holds its first list.
    pub fn has_synced(&self) -> bool {
        *self.inner.synced.borrow()
    }

    /// Waits until the cache holds its first list.
    pub async fn synced(&self) {
        let mut synced = self.inner.synced.subscribe();
        let _ = synced.wait_for(|s| *s).await;
    }

    fn notify(&self, changes: &[Transition<K>]) {
        let handlers = self
            .inner
            .handlers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for (old, new) in changes {
            let change = match (old, new) {
                (None, Some(new)) => Change::Add(new),
                (Some(old), Some(new)) => Change::Update { old, new },
                (Some(old), None) => Change::Delete(old),
                (None, None) => continue,
            };
            for handler in &handlers {
                handler(match &change {
                    Change::Add(o) => Change::Add(o),
                    Change::Update { old, new } => Change::Update { old, new },
                    Change::Delete(o) => Change::Delete(o),
                });
            }
        }
    }

    /// Takes one watcher event in: updates the cache, then tells the handlers. A relist
    /// (`Init` .. `InitDone`) is buffered and replaces the cache at its end, with additions,
    /// updates (resourceVersion moved) and deletions (gone from the list) computed against it.
    pub(crate) fn apply(
        &self,
        event: watcher::Event<K>,
        relist: &mut Option<HashMap<ObjectKey, Arc<K>>>,
    ) {
        match event {
            watcher::Event::Init => *relist = Some(HashMap::new()),
            watcher::Event::InitApply(object) => {
                relist
                    .get_or_insert_default()
                    .insert(key_of(&object), Arc::new(object));
            }
            watcher::Event::InitDone => {
                let listed = relist.take().unwrap_or_default();
                let mut changes = Vec::new();
                {
                    let mut state = self.write();
                    let mut gone: Vec<ObjectKey> = state
                        .objects
                        .keys()
                        .filter(|k| !listed.contains_key(*k))
                        .cloned()
                        .collect();
                    gone.sort();
                    for key in gone {
                        changes.push((state.remove(&key), None));
                    }
                    // In key order, so handlers hear of a relist's objects deterministically.
                    let mut listed: Vec<(ObjectKey, Arc<K>)> = listed.into_iter().collect();
                    listed.sort_by(|a, b| a.0.cmp(&b.0));
                    for (_, object) in listed {
                        let old = state.insert(object.clone());
                        let moved = old.as_ref().is_none_or(|old| {
                            old.meta().resource_version != object.meta().resource_version
                        });
                        if moved {
                            changes.push((old, Some(object)));
                        }
                    }
                }
                self.inner.synced.send_replace(true);
                self.notify(&changes);
            }
            watcher::Event::Apply(object) => {
                let object = Arc::new(object);
                let old = self.write().insert(object.clone());
                self.notify(&[(old, Some(object))]);
            }
            watcher::Event::Delete(object) => {
                let key = key_of(&object);
                let old = self.write().remove(&key);
                self.notify(&[(Some(old.unwrap_or_else(|| Arc::new(object))), None)]);
            }
        }
    }

    /// Lists and watches every `K` through `client` (dropping `managedFields`, which no
    /// controller reads and which can be most of an object's size), forever.
    async fn run(self, client: kube::Client) {
        let api = kube::Api::<K>::all(client);
        let transform = *self
            .inner
            .transform
            .read()
            .unwrap_or_else(|p| p.into_inner());
        let mut events = watcher(api, watcher::Config::default())
            .modify(move |o: &mut K| {
                o.meta_mut().managed_fields = None;
                transform(o);
            })
            .default_backoff()
            .boxed();
        let mut relist = None;
        while let Some(event) = events.next().await {
            match event {
                Ok(event) => self.apply(event, &mut relist),
                Err(e) => tracing::debug!(kind = %K::kind(&()), "watch failed: {e}"),
            }
        }
    }
}

/// Starts an informer of a type the factory no longer names.
trait Start: Send + Sync {
    fn start(&self, client: kube::Client) -> tokio::task::JoinHandle<()>;
    fn as_any(&self) -> &dyn Any;
}

impl<K: Watched> Start for Informer<K> {
    fn start(&self, client: kube::Client) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.clone().run(client))
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Hands out one [`Informer`] per resource type, and starts them all with one client.
#[derive(Clone)]
pub struct SharedInformerFactory {
    client: kube::Client,
    informers: Informers,
}

impl SharedInformerFactory {
    /// A factory whose informers list and watch through `client`.
    pub fn new(client: kube::Client) -> Self {
        SharedInformerFactory {
            client,
            informers: Arc::default(),
        }
    }

    /// The informer of `K`: the same cache for every caller. Informers taken after
    /// [`SharedInformerFactory::start`] are started by the next call to it.
    pub fn informer<K: Watched>(&self) -> Informer<K> {
        let mut informers = self.informers.lock().unwrap_or_else(|p| p.into_inner());
        let id = TypeId::of::<K>();
        if let Some((_, informer)) = informers.iter().find(|(t, _)| *t == id) {
            return informer
                .as_any()
                .downcast_ref::<Informer<K>>()
                .expect("one informer per type")
                .clone();
        }
        let informer = Informer::<K>::new();
        informers.push((id, Box::new(informer.clone())));
        informer
    }

    /// Starts a list+watch for every informer taken so far; the tasks run until aborted.
    pub fn start(&self) -> Vec<tokio::task::JoinHandle<()>> {
        let informers = self.informers.lock().unwrap_or_else(|p| p.into_inner());
        informers
            .iter()
            .map(|(_, informer)| informer.start(self.client.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    fn pod(name: &str, rv: &str, node: &str, owner: Option<&str>) -> Pod {
        let owners: Vec<_> = owner
            .into_iter()
            .map(|uid| json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": uid, "controller": true}))
            .collect();
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "resourceVersion": rv, "ownerReferences": owners},
            "spec": {"nodeName": node, "containers": []},
        }))
        .unwrap()
    }

    fn names(pods: Vec<Arc<Pod>>) -> Vec<String> {
        let mut names: Vec<String> = pods
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn events_update_the_cache_the_indexes_and_the_handlers() {
        let informer = Informer::<Pod>::new();
        informer.add_index("node", |p: &Pod| {
            p.spec.iter().filter_map(|s| s.node_name.clone()).collect()
        });
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        informer.add_handler(move |change| {
            let what = match change {
                Change::Add(p) => format!("add {}", p.metadata.name.as_deref().unwrap()),
                Change::Update { old, new } => format!(
                    "update {} {}->{}",
                    new.metadata.name.as_deref().unwrap(),
                    old.metadata.resource_version.as_deref().unwrap(),
                    new.metadata.resource_version.as_deref().unwrap()
                ),
                Change::Delete(p) => format!("delete {}", p.metadata.name.as_deref().unwrap()),
            };
            record.lock().unwrap().push(what);
        });
        let mut relist = None;
        informer.apply(watcher::Event::Init, &mut relist);
        informer.apply(
            watcher::Event::InitApply(pod("a", "1", "n1", Some("u1"))),
            &mut relist,
        );
        informer.apply(
            watcher::Event::InitApply(pod("b", "2", "n2", Some("u1"))),
            &mut relist,
        );
        assert!(!informer.has_synced() && informer.is_empty());
        informer.apply(watcher::Event::InitDone, &mut relist);
        assert!(informer.has_synced());
        assert_eq!(names(informer.by_index(BY_OWNER, "u1")), ["a", "b"]);
        assert_eq!(names(informer.by_index("node", "n2")), ["b"]);
        assert_eq!(names(informer.list_namespace("default")), ["a", "b"]);

        // b moves node and loses its owner; the indexes follow.
        informer.apply(
            watcher::Event::Apply(pod("b", "3", "n1", None)),
            &mut relist,
        );
        assert_eq!(names(informer.by_index("node", "n1")), ["a", "b"]);
        assert!(informer.by_index("node", "n2").is_empty());
        assert_eq!(names(informer.by_index(BY_OWNER, "u1")), ["a"]);
        assert_eq!(names(informer.by_index(ORPHANS, "default")), ["b"]);

        // A relist that has lost a, kept b unchanged and found c.
        informer.apply(watcher::Event::Init, &mut relist);
        informer.apply(
            watcher::Event::InitApply(pod("b", "3", "n1", None)),
            &mut relist,
        );
        informer.apply(
            watcher::Event::InitApply(pod("c", "4", "n1", None)),
            &mut relist,
        );
        informer.apply(watcher::Event::InitDone, &mut relist);
        informer.apply(
            watcher::Event::Delete(pod("c", "5", "n1", None)),
            &mut relist,
        );
        assert_eq!(names(informer.list()), ["b"]);
        assert!(informer.by_index(BY_OWNER, "u1").is_empty());
        assert_eq!(
            *seen.lock().unwrap(),
            [
                "add a",
                "add b",
                "update b 2->3",
                "delete a",
                "add c",
                "delete c"
            ]
        );

        // A late handler hears of what is cached as additions; a late index indexes it.
        let late = Arc::new(Mutex::new(0));
        let count = late.clone();
        informer.add_handler(move |_| *count.lock().unwrap() += 1);
        assert_eq!(*late.lock().unwrap(), 1);
        informer.add_index("name", |p: &Pod| {
            p.metadata.name.clone().into_iter().collect()
        });
        assert_eq!(names(informer.by_index("name", "b")), ["b"]);
    }
}
