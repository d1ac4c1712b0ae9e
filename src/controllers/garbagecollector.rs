//! The garbage collector: keeps a dependency graph of every object the API server serves (every
//! resource but events, each through the controller manager's shared informer of its kind, as
//! upstream's collector takes the shared informer of every kind it knows) through
//! `ownerReferences`, and enforces the three deletion propagation policies as
//! kube-controller-manager's does. The informers' handlers keep the graph and queue the uids a
//! change concerns (the object, its owners, and its dependents when it goes or starts or stops
//! deleting); a worker decides and acts for one object at a time. Background: a dependent whose
//! owners are all gone is deleted (with a uid precondition); an owner missing from the cache
//! counts as gone only once a GET by name answers 404 or another uid, so a lagging cache never
//! deletes a live object's dependents (one the API server has but the cache does not yet show is
//! looked at again after 5 s). Foreground: an owner being deleted with the `foregroundDeletion`
//! finalizer has its dependents deleted (in the foreground themselves if they have dependents),
//! and the finalizer comes off once no dependent with `blockOwnerDeletion` is left. Orphan: an
//! owner being deleted with the `orphan` finalizer has its ownerReferences removed from its
//! dependents, then the finalizer.
//!
//! Custom resources are in the graph too, as upstream's collector monitors every deletable
//! resource discovery lists: each Established CustomResourceDefinition's storage version is
//! watched (a watcher of its own, started when the definition is seen Established and stopped,
//! its objects taken out of the graph, when the definition goes), so a custom resource owns
//! and is owned like a built-in object. Upstream finds them by polling discovery every 30 s;
//! following the definitions' shared informer finds them at once.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::{
    admissionregistration, apps, autoscaling, batch, certificates, coordination, core, discovery,
    networking, policy, rbac, storage,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{
    Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy,
};
use kube::discovery::ApiResource;
use kube::runtime::watcher;
use serde_json::json;
use tokio::sync::mpsc;

use super::Context;
use super::workqueue::{self, WorkQueue};
use crate::flow::{Flow, FlowEvent};
use crate::informers::{Change, Watched};

const COMPONENT: &str = "controller/garbagecollector";
/// The finalizer of an owner whose dependents go first.
pub const FOREGROUND: &str = "foregroundDeletion";
/// The finalizer of an owner whose dependents stay, without their references to it.
pub const ORPHAN: &str = "orphan";
/// Workers deciding at once (upstream's `--concurrent-gc-syncs`).
const WORKERS: usize = 20;
/// When to look again at a dependent whose owner the API server has but the cache does not show
/// yet (upstream requeues such an unobserved owner too).
const RECHECK: Duration = Duration::from_secs(5);
/// How many owners confirmed gone are remembered, so their other dependents need no GET
/// (upstream's `absentOwnerCache`).
const ABSENT_CACHE: usize = 500;

/// What went wrong collecting garbage.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// Looking up an owner missing from the cache failed.
    #[error("looking up {kind} {name}: {source}")]
    Lookup {
        /// The owner's kind.
        kind: String,
        /// The owner's name.
        name: String,
        /// The API error.
        source: kube::Error,
    },
    /// A write failed.
    #[error("{action} {kind} {name}: {source}")]
    Write {
        /// What was being done.
        action: &'static str,
        /// The object's kind.
        kind: String,
        /// The object's name.
        name: String,
        /// The API error.
        source: kube::Error,
    },
}

/// One served resource the graph covers.
#[derive(Clone, Debug, PartialEq)]
struct Served {
    resource: ApiResource,
    namespaced: bool,
}

/// One object in the graph: its identity and what the collector needs of its metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Index of its resource in the collector's list.
    pub resource: usize,
    /// Its kind.
    pub kind: String,
    /// Its namespace, if namespaced.
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
    /// Its uid.
    pub uid: String,
    /// Its resourceVersion.
    pub resource_version: String,
    /// Its ownerReferences.
    pub owners: Vec<OwnerReference>,
    /// Whether it has a deletionTimestamp.
    pub deleting: bool,
    /// Its finalizers.
    pub finalizers: Vec<String>,
}

impl Node {
    fn has(&self, finalizer: &str) -> bool {
        self.finalizers.iter().any(|f| f == finalizer)
    }

    fn deleting_dependents(&self) -> bool {
        self.deleting && self.has(FOREGROUND)
    }

    fn label(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{}/{ns}/{}", self.kind, self.name),
            None => format!("{}/{}", self.kind, self.name),
        }
    }
}

/// What a GET by name said about an owner missing from the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Absent {
    /// 404, or another object (another uid) has the name now: the reference dangles.
    Dangling,
    /// It exists with this uid: the cache lags, so wait.
    Exists,
}

/// How to delete a dependent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Delete it now; its own dependents are collected after.
    Background,
    /// Delete its dependents first.
    Foreground,
    /// Keep its dependents.
    Orphan,
}

/// One write the collector decides on.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Delete a dependent whose owners are gone or waiting for it.
    Delete {
        /// The dependent's uid.
        uid: String,
        /// The propagation policy of the delete.
        policy: Policy,
        /// Why, for the flow.
        why: String,
    },
    /// Remove some ownerReferences (to owners orphaning it, dangling or waiting, while it has a
    /// solid owner).
    RemoveOwners {
        /// The dependent's uid.
        uid: String,
        /// The owners' uids.
        owners: Vec<String>,
    },
    /// Remove a finalizer the collector is responsible for.
    RemoveFinalizer {
        /// The owner's uid.
        uid: String,
        /// `foregroundDeletion` or `orphan`.
        finalizer: &'static str,
    },
}

impl Action {
    fn uid(&self) -> &str {
        match self {
            Action::Delete { uid, .. }
            | Action::RemoveOwners { uid, .. }
            | Action::RemoveFinalizer { uid, .. } => uid,
        }
    }
}

/// The graph: every node by uid, and each owner uid's dependents.
#[derive(Debug, Default)]
pub struct Graph {
    /// Every object, by uid.
    pub nodes: BTreeMap<String, Node>,
    dependents: HashMap<String, BTreeSet<String>>,
}

impl Graph {
    /// The graph of `nodes`.
    pub fn new(nodes: impl IntoIterator<Item = Node>) -> Self {
        let mut graph = Graph::default();
        for node in nodes {
            graph.insert(node);
        }
        graph
    }

    /// Puts `node` in (replacing the node of its uid), returning what it replaces.
    pub fn insert(&mut self, node: Node) -> Option<Node> {
        let old = self.remove(&node.uid);
        for owner in &node.owners {
            self.dependents
                .entry(owner.uid.clone())
                .or_default()
                .insert(node.uid.clone());
        }
        self.nodes.insert(node.uid.clone(), node);
        old
    }

    /// Takes the node of `uid` out. Its dependents keep their references to it: they now have
    /// an owner missing from the graph.
    pub fn remove(&mut self, uid: &str) -> Option<Node> {
        let old = self.nodes.remove(uid)?;
        for owner in &old.owners {
            if let Some(dependents) = self.dependents.get_mut(&owner.uid) {
                dependents.remove(uid);
                if dependents.is_empty() {
                    self.dependents.remove(&owner.uid);
                }
            }
        }
        Some(old)
    }

    fn dependents_of(&self, uid: &str) -> impl Iterator<Item = &Node> {
        self.dependents
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|d| self.nodes.get(d))
    }

    /// The owner references whose owner is not in the graph: (dependent uid, reference).
    pub fn absent_owners(&self) -> Vec<(&Node, &OwnerReference)> {
        self.nodes
            .values()
            .flat_map(|n| self.absent_owners_of(n).map(move |o| (n, o)))
            .collect()
    }

    /// The node's owner references whose owner is not in the graph.
    fn absent_owners_of<'a>(&'a self, node: &'a Node) -> impl Iterator<Item = &'a OwnerReference> {
        node.owners
            .iter()
            .filter(|o| !self.nodes.contains_key(&o.uid))
    }

    /// Decides every write, given what GETs said about owners missing from the graph (an owner
    /// not in `absent` is neither known to exist nor to dangle, so its dependents wait).
    pub fn plan(&self, absent: &HashMap<String, Absent>) -> Vec<Action> {
        self.nodes
            .values()
            .flat_map(|node| self.plan_node(node, absent))
            .collect()
    }

    /// Decides the writes one node calls for: an orphaning owner's references coming off its
    /// dependents (then its finalizer), a foreground-deleting owner's finalizer once nothing
    /// blocks it, or what becomes of a dependent ([`Graph::attempt_to_delete`]).
    fn plan_node(&self, node: &Node, absent: &HashMap<String, Absent>) -> Vec<Action> {
        let mut actions = Vec::new();
        if node.deleting && node.has(ORPHAN) {
            let dependents: Vec<&Node> = self.dependents_of(&node.uid).collect();
            for dependent in &dependents {
                actions.push(Action::RemoveOwners {
                    uid: dependent.uid.clone(),
                    owners: vec![node.uid.clone()],
                });
            }
            if dependents.is_empty() {
                actions.push(Action::RemoveFinalizer {
                    uid: node.uid.clone(),
                    finalizer: ORPHAN,
                });
            }
            return actions;
        }
        if node.deleting_dependents() {
            let blocking = self.dependents_of(&node.uid).any(|d| {
                d.owners
                    .iter()
                    .any(|o| o.uid == node.uid && o.block_owner_deletion == Some(true))
            });
            if !blocking {
                actions.push(Action::RemoveFinalizer {
                    uid: node.uid.clone(),
                    finalizer: FOREGROUND,
                });
            }
            return actions;
        }
        if node.deleting || node.owners.is_empty() {
            return actions;
        }
        actions.extend(self.attempt_to_delete(node, absent));
        actions
    }
    /// attemptToDeleteItem: a dependent with no solid owner left goes; one with a solid owner
    /// loses its references to dangling and waiting owners.
    fn attempt_to_delete(&self, node: &Node, absent: &HashMap<String, Absent>) -> Option<Action> {
        let mut solid = Vec::new();
        let mut dangling = Vec::new();
        let mut waiting = Vec::new();
        for owner in &node.owners {
            match self.nodes.get(&owner.uid) {
                Some(o) if o.deleting_dependents() => waiting.push(owner.uid.clone()),
                Some(_) => solid.push(owner.uid.clone()),
                None => match absent.get(&owner.uid) {
                    Some(Absent::Dangling) => dangling.push(owner.uid.clone()),
                    // Exists, or not (yet) known: treat as solid until the cache shows it.
                    _ => solid.push(owner.uid.clone()),
                },
            }
        }
        if !solid.is_empty() {
            if dangling.is_empty() && waiting.is_empty() {
                return None;
            }
            let mut owners = dangling;
            owners.extend(waiting);
            return Some(Action::RemoveOwners {
                uid: node.uid.clone(),
                owners,
            });
        }
        let has_dependents = self.dependents_of(&node.uid).next().is_some();
        if !waiting.is_empty() && has_dependents {
            return Some(Action::Delete {
                uid: node.uid.clone(),
                policy: Policy::Foreground,
                why: "its owner is deleting its dependents, and it has dependents of its own"
                    .into(),
            });
        }
        let policy = if node.has(ORPHAN) {
            Policy::Orphan
        } else if node.has(FOREGROUND) {
            Policy::Foreground
        } else {
            Policy::Background
        };
        let why = if waiting.is_empty() {
            "all its owners are gone".to_owned()
        } else {
            "its owner is deleting its dependents".to_owned()
        };
        Some(Action::Delete {
            uid: node.uid.clone(),
            policy,
            why,
        })
    }
}

fn node_of(resource: usize, kind: &str, meta: &ObjectMeta) -> Option<Node> {
    Some(Node {
        resource,
        kind: kind.to_owned(),
        namespace: meta.namespace.clone(),
        name: meta.name.clone()?,
        uid: meta.uid.clone()?,
        resource_version: meta.resource_version.clone().unwrap_or_default(),
        owners: meta.owner_references.clone().unwrap_or_default(),
        deleting: meta.deletion_timestamp.is_some(),
        finalizers: meta.finalizers.clone().unwrap_or_default(),
    })
}

/// What a CustomResourceDefinition's change means to the collector.
#[derive(Debug)]
enum Definition {
    /// The definition (by name) is Established: its storage version is served.
    Served(String, Served),
    /// The definition is gone, or not (or no longer) Established.
    Gone(String),
}

fn crd_name(crd: &CustomResourceDefinition) -> String {
    crd.metadata.name.clone().unwrap_or_default()
}

/// The resource an Established definition serves, in its storage version (where its objects
/// are kept, as the collector keeps every kind in the form it is stored in).
fn custom_resource(crd: &CustomResourceDefinition) -> Option<Served> {
    let established = crd.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Established" && c.status == "True")
    });
    if !established || crd.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let spec = &crd.spec;
    let version = spec.versions.iter().find(|v| v.storage)?;
    Some(Served {
        resource: ApiResource {
            group: spec.group.clone(),
            version: version.name.clone(),
            api_version: format!("{}/{}", spec.group, version.name),
            kind: spec.names.kind.clone(),
            plural: spec.names.plural.clone(),
        },
        namespaced: spec.scope == "Namespaced",
    })
}

/// The index of `served` in the list, added if new.
fn register(list: &Mutex<Vec<Served>>, served: Served) -> usize {
    let mut list = lock(list);
    match list.iter().position(|s| *s == served) {
        Some(index) => index,
        None => {
            list.push(served);
            list.len() - 1
        }
    }
}

/// Follows one custom resource's objects into the graph until aborted: a watcher (relisting
/// with kube's default backoff when its watch ends), each object upserted as the built-in
/// kinds' handlers do, and after a relist the objects it no longer lists taken out.
async fn watch_custom(
    client: kube::Client,
    index: usize,
    served: Served,
    shared: Arc<Shared>,
    queue: WorkQueue<String>,
) {
    use kube::runtime::WatchStreamExt;
    use kube::runtime::watcher::Event;
    let api: Api<DynamicObject> = Api::all_with(client, &served.resource);
    let kind = served.resource.kind;
    let mut known: HashSet<String> = HashSet::new();
    let mut listed: HashSet<String> = HashSet::new();
    let mut events = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Init) => listed.clear(),
            Ok(Event::InitApply(object)) => {
                if let Some(node) = node_of(index, &kind, &object.metadata) {
                    listed.insert(node.uid.clone());
                    shared.upsert(node, &queue);
                }
            }
            Ok(Event::InitDone) => {
                for uid in known.difference(&listed) {
                    shared.delete(uid, &queue);
                }
                known = std::mem::take(&mut listed);
            }
            Ok(Event::Apply(object)) => {
                if let Some(node) = node_of(index, &kind, &object.metadata) {
                    known.insert(node.uid.clone());
                    shared.upsert(node, &queue);
                }
            }
            Ok(Event::Delete(object)) => {
                if let Some(uid) = &object.metadata.uid {
                    known.remove(uid);
                    shared.delete(uid, &queue);
                }
            }
            Err(error) => tracing::debug!(%error, kind, "garbage collector: watching"),
        }
    }
}

/// A JSON patch that sets (or, when empty, removes) one metadata list, only if the object is
/// still the one (uid) and the version (resourceVersion) the decision was made on.
fn guarded_replace(node: &Node, field: &str, value: serde_json::Value) -> json_patch::Patch {
    let path = format!("/metadata/{field}");
    let change = if value.as_array().is_some_and(Vec::is_empty) {
        json!({"op": "remove", "path": path})
    } else {
        json!({"op": "replace", "path": path, "value": value})
    };
    let patch = json!([
        {"op": "test", "path": "/metadata/uid", "value": node.uid},
        {"op": "test", "path": "/metadata/resourceVersion", "value": node.resource_version},
        change,
    ]);
    serde_json::from_value(patch).expect("a valid JSON patch")
}

/// What the informers' handlers and the workers share: the graph, the queue of uids to look at,
/// what was done, and the owners confirmed gone.
#[derive(Default)]
struct Shared {
    graph: Mutex<Graph>,
    /// What was done to which object at which resourceVersion: not done again until the cache
    /// shows the object changed.
    acted: Mutex<HashMap<String, String>>,
    /// Owner uids a GET found gone (a uid never comes back).
    absent: Mutex<HashSet<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// An object was added or changed: the graph takes it in, and the uids it concerns are
    /// queued (upstream's `processGraphChanges`).
    fn upsert(&self, node: Node, queue: &WorkQueue<String>) {
        let mut graph = lock(&self.graph);
        let old = graph.insert(node.clone());
        let mut wake: BTreeSet<String> = BTreeSet::new();
        if !node.owners.is_empty() || node.deleting {
            wake.insert(node.uid.clone());
        }
        // Its owners: an orphaning one has a new reference to strip, a foreground-deleting one
        // may have lost its last blocking dependent, a dependent's write may have raced theirs.
        for owner in node.owners.iter().chain(old.iter().flat_map(|o| &o.owners)) {
            wake.insert(owner.uid.clone());
        }
        // Its dependents, when it starts (or stops) deleting or its finalizers change.
        let turned = old
            .as_ref()
            .is_none_or(|o| o.deleting != node.deleting || o.finalizers != node.finalizers);
        if node.deleting && turned {
            wake.extend(graph.dependents_of(&node.uid).map(|d| d.uid.clone()));
        }
        wake.retain(|uid| graph.nodes.contains_key(uid));
        drop(graph);
        for uid in wake {
            queue.add(uid);
        }
    }

    /// An object went: its dependents have an owner missing now, and its owners one dependent
    /// fewer.
    /// Takes every object of the resource at `index` out of the graph (its definition went).
    fn forget_resource(&self, index: usize, queue: &WorkQueue<String>) {
        let uids: Vec<String> = lock(&self.graph)
            .nodes
            .values()
            .filter(|n| n.resource == index)
            .map(|n| n.uid.clone())
            .collect();
        for uid in uids {
            self.delete(&uid, queue);
        }
    }

    fn delete(&self, uid: &str, queue: &WorkQueue<String>) {
        let mut graph = lock(&self.graph);
        let Some(old) = graph.remove(uid) else {
            return;
        };
        let mut wake: BTreeSet<String> = graph.dependents_of(uid).map(|d| d.uid.clone()).collect();
        wake.extend(old.owners.iter().map(|o| o.uid.clone()));
        wake.retain(|uid| graph.nodes.contains_key(uid));
        drop(graph);
        lock(&self.acted).remove(uid);
        for uid in wake {
            queue.add(uid);
        }
    }
}

/// Visits every kind the collector covers: each typed resource the API server serves but events,
/// with whether it is namespaced.
trait Kinds {
    fn kind<K: Watched>(&mut self, namespaced: bool);
}

fn every_kind(v: &mut impl Kinds) {
    v.kind::<core::v1::Namespace>(false);
    v.kind::<core::v1::Node>(false);
    v.kind::<core::v1::Pod>(true);
    v.kind::<core::v1::Service>(true);
    v.kind::<core::v1::Endpoints>(true);
    v.kind::<core::v1::ConfigMap>(true);
    v.kind::<core::v1::Secret>(true);
    v.kind::<core::v1::ServiceAccount>(true);
    v.kind::<core::v1::PersistentVolumeClaim>(true);
    v.kind::<core::v1::PersistentVolume>(false);
    v.kind::<core::v1::ResourceQuota>(true);
    v.kind::<core::v1::LimitRange>(true);
    v.kind::<core::v1::ReplicationController>(true);
    v.kind::<core::v1::PodTemplate>(true);
    v.kind::<apps::v1::Deployment>(true);
    v.kind::<apps::v1::ReplicaSet>(true);
    v.kind::<apps::v1::DaemonSet>(true);
    v.kind::<apps::v1::StatefulSet>(true);
    v.kind::<apps::v1::ControllerRevision>(true);
    v.kind::<autoscaling::v2::HorizontalPodAutoscaler>(true);
    v.kind::<batch::v1::Job>(true);
    v.kind::<batch::v1::CronJob>(true);
    v.kind::<certificates::v1::CertificateSigningRequest>(false);
    v.kind::<coordination::v1::Lease>(true);
    v.kind::<discovery::v1::EndpointSlice>(true);
    v.kind::<networking::v1::Ingress>(true);
    v.kind::<networking::v1::IngressClass>(false);
    v.kind::<networking::v1::IPAddress>(false);
    v.kind::<policy::v1::PodDisruptionBudget>(true);
    v.kind::<storage::v1::StorageClass>(false);
    v.kind::<admissionregistration::v1::MutatingWebhookConfiguration>(false);
    v.kind::<admissionregistration::v1::ValidatingWebhookConfiguration>(false);
    v.kind::<rbac::v1::ClusterRole>(false);
    v.kind::<rbac::v1::ClusterRoleBinding>(false);
    v.kind::<rbac::v1::Role>(true);
    v.kind::<rbac::v1::RoleBinding>(true);
    v.kind::<CustomResourceDefinition>(false);
}

/// Takes each kind's shared informer into a collector.
struct Taking<'a> {
    gc: &'a mut GarbageCollector,
    ctx: &'a Context,
}

impl Kinds for Taking<'_> {
    fn kind<K: Watched>(&mut self, namespaced: bool) {
        self.gc.watch::<K>(self.ctx, namespaced);
    }
}

/// Waits for one informer's first list.
type Synced = Box<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

/// The garbage collector; runs until its task is aborted.
pub struct GarbageCollector {
    client: kube::Client,
    flow: Flow,
    /// Every resource the graph covers; a node's `resource` indexes it. Built-in kinds first,
    /// then each custom resource as its definition is seen (never removed: a definition made
    /// again reuses its index).
    served: Arc<Mutex<Vec<Served>>>,
    /// The CustomResourceDefinitions' changes, for [`GarbageCollector::run`] to follow.
    definitions: Mutex<Option<mpsc::UnboundedReceiver<Definition>>>,
    shared: Arc<Shared>,
    queue: WorkQueue<String>,
    /// Each informer's first list, to wait for.
    synced: Vec<Synced>,
}

impl GarbageCollector {
    /// A collector on the shared informers of every resource the API server serves but events,
    /// writing as `controller/garbagecollector`.
    pub fn new(ctx: &Context) -> Self {
        let mut gc = GarbageCollector {
            client: ctx.client("garbagecollector"),
            flow: ctx.flow.clone(),
            served: Arc::default(),
            definitions: Mutex::new(None),
            shared: Arc::default(),
            queue: WorkQueue::new("garbagecollector"),
            synced: Vec::new(),
        };
        every_kind(&mut Taking { gc: &mut gc, ctx });
        gc.follow_definitions(ctx);
        gc
    }

    /// Takes the shared informer of CustomResourceDefinitions: each change says which custom
    /// resource is served (or no longer) to [`GarbageCollector::run`].
    fn follow_definitions(&mut self, ctx: &Context) {
        let (tx, rx) = mpsc::unbounded_channel();
        *lock(&self.definitions) = Some(rx);
        let informer = ctx.factory.informer::<CustomResourceDefinition>();
        informer.add_handler(move |change: Change<'_, CustomResourceDefinition>| {
            let definition = match change {
                Change::Add(crd) | Change::Update { new: crd, .. } => match custom_resource(crd) {
                    Some(served) => Definition::Served(crd_name(crd), served),
                    None => Definition::Gone(crd_name(crd)),
                },
                Change::Delete(crd) => Definition::Gone(crd_name(crd)),
            };
            let _ = tx.send(definition);
        });
        self.synced.push(Box::new(move || {
            let informer = informer.clone();
            async move { informer.synced().await }.boxed()
        }));
    }

    /// Takes the shared informer of `K` into the graph.
    fn watch<K: Watched>(&mut self, ctx: &Context, namespaced: bool) {
        let resource = ApiResource::erase::<K>(&());
        let kind = resource.kind.clone();
        let index = register(
            &self.served,
            Served {
                resource,
                namespaced,
            },
        );
        let informer = ctx.factory.informer::<K>();
        let (shared, queue) = (self.shared.clone(), self.queue.clone());
        informer.add_handler(move |change: Change<'_, K>| match change {
            Change::Add(o) => {
                if let Some(node) = node_of(index, &kind, o.meta()) {
                    shared.upsert(node, &queue);
                }
            }
            Change::Update { old, new } => {
                // The same name, another object (seen across a relist): the old one went.
                if let Some(uid) = &old.meta().uid
                    && old.meta().uid != new.meta().uid
                {
                    shared.delete(uid, &queue);
                }
                if let Some(node) = node_of(index, &kind, new.meta()) {
                    shared.upsert(node, &queue);
                }
            }
            Change::Delete(o) => {
                if let Some(uid) = &o.meta().uid {
                    shared.delete(uid, &queue);
                }
            }
        });
        self.synced.push(Box::new(move || {
            let informer = informer.clone();
            async move { informer.synced().await }.boxed()
        }));
    }

    /// Waits for every informer's first list, then collects, forever (following the custom
    /// resources as their definitions come and go).
    pub async fn run(self) {
        for synced in &self.synced {
            synced().await;
        }
        let definitions = lock(&self.definitions).take();
        let custom = async {
            if let Some(definitions) = definitions {
                self.follow_custom_resources(definitions).await;
            }
        };
        let workers = workqueue::run_workers(self.queue.clone(), WORKERS, |uid| self.sync(uid));
        futures::join!(workers, custom);
    }

    /// Runs a watcher per served custom resource, started when its definition is Established
    /// and stopped (its objects taken out of the graph) when the definition goes or changes
    /// its storage version. The watchers live in a `JoinSet`, so they end with the collector.
    async fn follow_custom_resources(&self, mut definitions: mpsc::UnboundedReceiver<Definition>) {
        let mut watching: HashMap<String, (usize, tokio::task::AbortHandle)> = HashMap::new();
        let mut tasks = tokio::task::JoinSet::new();
        while let Some(definition) = definitions.recv().await {
            while tasks.try_join_next().is_some() {}
            let (name, served) = match definition {
                Definition::Served(name, served) => (name, Some(served)),
                Definition::Gone(name) => (name, None),
            };
            let index = served.as_ref().map(|s| register(&self.served, s.clone()));
            if let Some((watched, _)) = watching.get(&name)
                && Some(*watched) == index
            {
                continue;
            }
            if let Some((watched, task)) = watching.remove(&name) {
                task.abort();
                self.shared.forget_resource(watched, &self.queue);
            }
            if let (Some(index), Some(served)) = (index, served) {
                let task = tasks.spawn(watch_custom(
                    self.client.clone(),
                    index,
                    served,
                    self.shared.clone(),
                    self.queue.clone(),
                ));
                watching.insert(name, (index, task));
            }
        }
    }

    /// Decides and acts for the object of `uid` (upstream's `attemptToDeleteItem` and
    /// `attemptToOrphan`).
    async fn sync(&self, uid: String) -> Result<workqueue::Action, GcError> {
        let (node, missing) = {
            let graph = lock(&self.shared.graph);
            let Some(node) = graph.nodes.get(&uid) else {
                return Ok(workqueue::Action::Done);
            };
            let missing: Vec<OwnerReference> = if node.deleting {
                Vec::new()
            } else {
                graph.absent_owners_of(node).cloned().collect()
            };
            (node.clone(), missing)
        };
        let absent = self.verify_absent(&node, &missing).await?;
        let planned: Vec<(Action, Node, Vec<String>)> = {
            let graph = lock(&self.shared.graph);
            let Some(node) = graph.nodes.get(&uid) else {
                return Ok(workqueue::Action::Done);
            };
            graph
                .plan_node(node, &absent)
                .into_iter()
                .filter_map(|action| {
                    let target = graph.nodes.get(action.uid())?.clone();
                    let names = match &action {
                        Action::RemoveOwners { owners, .. } => owners
                            .iter()
                            .map(|uid| match graph.nodes.get(uid) {
                                Some(o) => o.label(),
                                None => format!("uid {uid}"),
                            })
                            .collect(),
                        _ => Vec::new(),
                    };
                    Some((action, target, names))
                })
                .collect()
        };
        let mut failed = None;
        for (action, target, names) in planned {
            if lock(&self.shared.acted).get(&target.uid) == Some(&target.resource_version) {
                continue;
            }
            match self.act(&action, &target, &names).await {
                Ok(()) => {
                    lock(&self.shared.acted)
                        .insert(target.uid.clone(), target.resource_version.clone());
                }
                Err(error) if failed.is_none() => failed = Some(error),
                Err(error) => tracing::debug!(%error, "garbage collector"),
            }
        }
        if let Some(error) = failed {
            return Err(error);
        }
        if absent.values().any(|a| *a == Absent::Exists) {
            return Ok(workqueue::Action::RequeueAfter(RECHECK));
        }
        Ok(workqueue::Action::Done)
    }

    /// Asks the API server about each owner of `dependent` missing from the cache, by name: 404
    /// or another uid is dangling.
    async fn verify_absent(
        &self,
        dependent: &Node,
        owners: &[OwnerReference],
    ) -> Result<HashMap<String, Absent>, GcError> {
        let mut out = HashMap::new();
        for owner in owners {
            if out.contains_key(&owner.uid) {
                continue;
            }
            if lock(&self.shared.absent).contains(&owner.uid) {
                out.insert(owner.uid.clone(), Absent::Dangling);
                continue;
            }
            let group = owner.api_version.split_once('/').map_or("", |(g, _)| g);
            let target = lock(&self.served)
                .iter()
                .find(|s| s.resource.group == group && s.resource.kind == owner.kind)
                .cloned();
            let Some(target) = target else {
                // A kind the server does not serve: nothing can be said of it.
                continue;
            };
            let api: Api<DynamicObject> = match (&dependent.namespace, target.namespaced) {
                (Some(ns), true) => Api::namespaced_with(self.client.clone(), ns, &target.resource),
                // A cluster-scoped dependent cannot have a namespaced owner: the reference is
                // invalid, so dangling.
                (None, true) => {
                    out.insert(owner.uid.clone(), Absent::Dangling);
                    continue;
                }
                (_, false) => Api::all_with(self.client.clone(), &target.resource),
            };
            let found = api
                .get_opt(&owner.name)
                .await
                .map_err(|source| GcError::Lookup {
                    kind: owner.kind.clone(),
                    name: owner.name.clone(),
                    source,
                })?;
            if found.is_some_and(|f| f.metadata.uid.as_deref() == Some(owner.uid.as_str())) {
                out.insert(owner.uid.clone(), Absent::Exists);
            } else {
                let mut absent = lock(&self.shared.absent);
                if absent.len() >= ABSENT_CACHE {
                    absent.clear();
                }
                absent.insert(owner.uid.clone());
                out.insert(owner.uid.clone(), Absent::Dangling);
            }
        }
        Ok(out)
    }

    fn api(&self, node: &Node) -> Api<DynamicObject> {
        let resource = lock(&self.served)[node.resource].resource.clone();
        match &node.namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &resource),
            None => Api::all_with(self.client.clone(), &resource),
        }
    }

    /// The flow event of a hop this controller takes.
    fn hop(&self, verb: &str, node: &Node, detail: String) -> FlowEvent {
        let mut e = FlowEvent::new(COMPONENT, "apiserver", verb)
            .object(
                &node.kind,
                node.namespace.as_deref().unwrap_or_default(),
                &node.name,
            )
            .detail(detail);
        e.uid = node.uid.clone();
        e
    }

    /// Makes one write; `owner_names` names the owners a [`Action::RemoveOwners`] removes.
    async fn act(
        &self,
        action: &Action,
        node: &Node,
        owner_names: &[String],
    ) -> Result<(), GcError> {
        let api = self.api(node);
        let write_error = |action: &'static str, source: kube::Error| GcError::Write {
            action,
            kind: node.kind.clone(),
            name: node.name.clone(),
            source,
        };
        let gone =
            |e: &kube::Error| matches!(e, kube::Error::Api(s) if s.code == 404 || s.code == 409);
        match action {
            Action::Delete { policy, why, .. } => {
                self.flow
                    .gate_emit(self.hop(
                        "DELETE",
                        node,
                        format!("delete {} ({policy:?}): {why}", node.label()),
                    ))
                    .await;
                let params = DeleteParams {
                    propagation_policy: Some(match policy {
                        Policy::Background => PropagationPolicy::Background,
                        Policy::Foreground => PropagationPolicy::Foreground,
                        Policy::Orphan => PropagationPolicy::Orphan,
                    }),
                    preconditions: Some(Preconditions {
                        uid: Some(node.uid.clone()),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                match api.delete(&node.name, &params).await {
                    Ok(_) => Ok(()),
                    Err(e) if gone(&e) => Ok(()),
                    Err(e) => Err(write_error("deleting", e)),
                }
            }
            Action::RemoveOwners { owners, .. } => {
                self.flow
                    .gate_emit(self.hop(
                        "PATCH",
                        node,
                        format!(
                            "remove ownerReferences to {} from {}",
                            owner_names.join(", "),
                            node.label()
                        ),
                    ))
                    .await;
                let kept: Vec<&OwnerReference> = node
                    .owners
                    .iter()
                    .filter(|o| !owners.contains(&o.uid))
                    .collect();
                let patch = guarded_replace(node, "ownerReferences", json!(kept));
                match api
                    .patch(
                        &node.name,
                        &PatchParams::default(),
                        &Patch::Json::<()>(patch),
                    )
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(e) if gone(&e) => Ok(()),
                    Err(e) => Err(write_error("removing ownerReferences from", e)),
                }
            }
            Action::RemoveFinalizer { finalizer, .. } => {
                self.flow
                    .gate_emit(self.hop(
                        "PATCH",
                        node,
                        format!("remove the {finalizer} finalizer from {}", node.label()),
                    ))
                    .await;
                let kept: Vec<&String> =
                    node.finalizers.iter().filter(|f| f != finalizer).collect();
                let patch = guarded_replace(node, "finalizers", json!(kept));
                match api
                    .patch(
                        &node.name,
                        &PatchParams::default(),
                        &Patch::Json::<()>(patch),
                    )
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(e) if gone(&e) => Ok(()),
                    Err(e) => Err(write_error("removing a finalizer from", e)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node: uid, owners as (uid, blockOwnerDeletion), deleting, finalizers.
    fn node(uid: &str, owners: &[(&str, bool)], deleting: bool, finalizers: &[&str]) -> Node {
        Node {
            resource: 0,
            kind: "Thing".into(),
            namespace: Some("default".into()),
            name: uid.into(),
            uid: uid.into(),
            resource_version: "1".into(),
            owners: owners
                .iter()
                .map(|(o, block)| OwnerReference {
                    api_version: "v1".into(),
                    kind: "Thing".into(),
                    name: (*o).into(),
                    uid: (*o).into(),
                    controller: Some(true),
                    block_owner_deletion: Some(*block),
                })
                .collect(),
            deleting,
            finalizers: finalizers.iter().map(|f| (*f).to_owned()).collect(),
        }
    }

    /// Actions as (uid, policy for a delete) plus the rest spelled out, for comparison.
    fn summary(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .map(|a| match a {
                Action::Delete { uid, policy, .. } => format!("delete {uid} {policy:?}"),
                Action::RemoveOwners { uid, owners } => {
                    format!("unown {uid} from {}", owners.join(","))
                }
                Action::RemoveFinalizer { uid, finalizer } => {
                    format!("unfinalize {uid} {finalizer}")
                }
            })
            .collect()
    }

    #[test]
    fn plans() {
        let dangling = HashMap::from([("gone".to_owned(), Absent::Dangling)]);
        let exists = HashMap::from([("gone".to_owned(), Absent::Exists)]);
        let none = HashMap::new();
        type Case<'a> = (
            &'a str,
            Vec<Node>,
            &'a HashMap<String, Absent>,
            Vec<&'a str>,
        );
        let cases: Vec<Case<'_>> = vec![
            (
                "an owned object with its owner present stays",
                vec![
                    node("rs", &[], false, &[]),
                    node("pod", &[("rs", true)], false, &[]),
                ],
                &none,
                vec![],
            ),
            (
                "a dependent of a dangling owner goes in the background",
                vec![node("pod", &[("gone", true)], false, &[])],
                &dangling,
                vec!["delete pod Background"],
            ),
            (
                "an owner the cache lacks but the API server has: wait",
                vec![node("pod", &[("gone", true)], false, &[])],
                &exists,
                vec![],
            ),
            (
                "an owner not yet looked up: wait",
                vec![node("pod", &[("gone", true)], false, &[])],
                &none,
                vec![],
            ),
            (
                "a solid owner and a dangling one: only the reference goes",
                vec![
                    node("rs", &[], false, &[]),
                    node("pod", &[("rs", true), ("gone", false)], false, &[]),
                ],
                &dangling,
                vec!["unown pod from gone"],
            ),
            (
                "foreground: dependents go (foreground if they have their own), the owner waits",
                vec![
                    node("deploy", &[], true, &[FOREGROUND]),
                    node("rs", &[("deploy", true)], false, &[]),
                    node("pod", &[("rs", true)], false, &[]),
                ],
                &none,
                vec!["delete rs Foreground"],
            ),
            (
                "foreground: a dependent without dependents goes in the background",
                vec![
                    node("rs", &[], true, &[FOREGROUND]),
                    node("pod", &[("rs", true)], false, &[]),
                ],
                &none,
                vec!["delete pod Background"],
            ),
            (
                "foreground: a dependent on its way out still blocks",
                vec![
                    node("rs", &[], true, &[FOREGROUND]),
                    node("pod", &[("rs", true)], true, &[]),
                ],
                &none,
                vec![],
            ),
            (
                "foreground: only non-blocking dependents left, the finalizer comes off",
                vec![
                    node("rs", &[], true, &[FOREGROUND]),
                    node("pod", &[("rs", false)], false, &[]),
                ],
                &none,
                vec!["delete pod Background", "unfinalize rs foregroundDeletion"],
            ),
            (
                "orphan: references come off the dependents first",
                vec![
                    node("rs", &[], true, &[ORPHAN]),
                    node("a", &[("rs", true)], false, &[]),
                    node("b", &[("rs", true)], false, &[]),
                ],
                &none,
                vec!["unown a from rs", "unown b from rs"],
            ),
            (
                "orphan: no dependents left, the finalizer comes off",
                vec![
                    node("rs", &[], true, &[ORPHAN, "other"]),
                    node("a", &[], false, &[]),
                ],
                &none,
                vec!["unfinalize rs orphan"],
            ),
            (
                "a dependent already being deleted is left to finish",
                vec![node("pod", &[("gone", true)], true, &[])],
                &dangling,
                vec![],
            ),
            (
                "a dependent with an orphan finalizer of its own is deleted orphaning",
                vec![node("rs", &[("gone", true)], false, &[ORPHAN])],
                &dangling,
                vec!["delete rs Orphan"],
            ),
        ];
        for (name, nodes, absent, want) in cases {
            let graph = Graph::new(nodes);
            assert_eq!(summary(&graph.plan(absent)), want, "{name}");
        }
    }

    #[test]
    fn absent_owners_are_the_ones_to_look_up() {
        let graph = Graph::new([
            node("rs", &[], false, &[]),
            node("a", &[("rs", true), ("gone", true)], false, &[]),
        ]);
        let absent: Vec<(&str, &str)> = graph
            .absent_owners()
            .into_iter()
            .map(|(d, o)| (d.uid.as_str(), o.uid.as_str()))
            .collect();
        assert_eq!(absent, [("a", "gone")]);
    }

    #[tokio::test]
    async fn changes_keep_the_graph_and_queue_what_they_concern() {
        let shared = Shared::default();
        let queue = WorkQueue::new("test");
        shared.upsert(node("deploy", &[], false, &[]), &queue);
        assert!(
            queue.drain_sorted().await.is_empty(),
            "nothing to decide for an owner alone"
        );
        shared.upsert(node("rs", &[("deploy", true)], false, &[]), &queue);
        shared.upsert(node("pod", &[("rs", true)], false, &[]), &queue);
        assert_eq!(queue.drain_sorted().await, ["deploy", "pod", "rs"]);
        // A status change of the pod looks at it and its owner, not its owner's owner.
        shared.upsert(node("pod", &[("rs", true)], false, &[]), &queue);
        assert_eq!(queue.drain_sorted().await, ["pod", "rs"]);
        // The Deployment starts deleting in the foreground: it and its dependents.
        shared.upsert(node("deploy", &[], true, &[FOREGROUND]), &queue);
        assert_eq!(queue.drain_sorted().await, ["deploy", "rs"]);
        // The ReplicaSet goes: its pod has a missing owner, the Deployment one dependent fewer.
        shared.delete("rs", &queue);
        assert_eq!(queue.drain_sorted().await, ["deploy", "pod"]);
        let graph = lock(&shared.graph);
        assert_eq!(graph.dependents.get("rs").map(BTreeSet::len), Some(1));
        assert!(!graph.dependents.contains_key("deploy"));
        assert_eq!(
            graph
                .absent_owners()
                .into_iter()
                .map(|(d, o)| (d.uid.as_str(), o.uid.as_str()))
                .collect::<Vec<_>>(),
            [("pod", "rs")]
        );
    }

    #[test]
    fn every_served_resource_but_events_is_in_the_graph() {
        struct Listing(Vec<(String, String, String, String, bool)>);
        impl Kinds for Listing {
            fn kind<K: Watched>(&mut self, namespaced: bool) {
                let r = ApiResource::erase::<K>(&());
                self.0
                    .push((r.group, r.version, r.plural, r.kind, namespaced));
            }
        }
        let mut covered = Listing(Vec::new());
        every_kind(&mut covered);
        let mut covered = covered.0;
        covered.sort();
        let mut served: Vec<(String, String, String, String, bool)> =
            crate::apiserver::resources::RESOURCES
                .iter()
                // Events are not collected; a resource served in another version's form is
                // collected in the form it is stored in.
                // The reviews are answered, never stored.
                .filter(|r| {
                    r.plural != "events"
                        && r.conversion.is_none()
                        && !crate::apiserver::auth::reviews::is_review(r)
                })
                .map(|r| {
                    (
                        r.group.to_owned(),
                        r.version.to_owned(),
                        r.plural.to_owned(),
                        r.kind.to_owned(),
                        r.namespaced,
                    )
                })
                .collect();
        served.sort();
        assert_eq!(
            covered, served,
            "a resource the API server serves is not collected"
        );
    }

    #[test]
    fn guarded_patches_remove_empty_lists() {
        let n = node("pod", &[("rs", true)], false, &[]);
        let patch =
            serde_json::to_value(guarded_replace(&n, "ownerReferences", json!([]))).unwrap();
        assert_eq!(
            patch,
            json!([
                {"op": "test", "path": "/metadata/uid", "value": "pod"},
                {"op": "test", "path": "/metadata/resourceVersion", "value": "1"},
                {"op": "remove", "path": "/metadata/ownerReferences"},
            ])
        );
        let patch = serde_json::to_value(guarded_replace(&n, "finalizers", json!(["x"]))).unwrap();
        assert_eq!(
            patch[2],
            json!({"op": "replace", "path": "/metadata/finalizers", "value": ["x"]})
        );
    }
}
