//! The garbage collector: keeps a dependency graph of every object the API server serves (every
//! resource discovery lists as listable, watchable and deletable, events aside) through
//! `ownerReferences`, and enforces the three deletion propagation policies as
//! kube-controller-manager's does. Background: a dependent whose owners are all gone is deleted
//! (with a uid precondition); an owner missing from the cache counts as gone only once a GET by
//! name answers 404 or another uid, so a lagging cache never deletes a live object's dependents.
//! Foreground: an owner being deleted with the `foregroundDeletion` finalizer has its dependents
//! deleted (in the foreground themselves if they have dependents), and the finalizer comes off
//! once no dependent with `blockOwnerDeletion` is left. Orphan: an owner being deleted with the
//! `orphan` finalizer has its ownerReferences removed from its dependents, then the finalizer.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy,
};
use kube::discovery::{ApiResource, Discovery, Scope, verbs};
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

use crate::flow::{Flow, FlowEvent};

const COMPONENT: &str = "controller/garbagecollector";
/// The finalizer of an owner whose dependents go first.
pub const FOREGROUND: &str = "foregroundDeletion";
/// The finalizer of an owner whose dependents stay, without their references to it.
pub const ORPHAN: &str = "orphan";

/// What went wrong collecting garbage.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// Discovery failed.
    #[error("discovering the served resources: {0}")]
    Discovery(kube::Error),
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
#[derive(Clone, Debug)]
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
    dependents: HashMap<String, Vec<String>>,
}

impl Graph {
    /// The graph of `nodes`.
    pub fn new(nodes: impl IntoIterator<Item = Node>) -> Self {
        let mut graph = Graph::default();
        for node in nodes {
            for owner in &node.owners {
                graph
                    .dependents
                    .entry(owner.uid.clone())
                    .or_default()
                    .push(node.uid.clone());
            }
            graph.nodes.insert(node.uid.clone(), node);
        }
        graph
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
            .flat_map(|n| n.owners.iter().map(move |o| (n, o)))
            .filter(|(_, o)| !self.nodes.contains_key(&o.uid))
            .collect()
    }

    /// Decides every write, given what GETs said about owners missing from the graph (an owner
    /// not in `absent` is neither known to exist nor to dangle, so its dependents wait).
    pub fn plan(&self, absent: &HashMap<String, Absent>) -> Vec<Action> {
        let mut actions = Vec::new();
        for node in self.nodes.values() {
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
                continue;
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
                continue;
            }
            if node.deleting || node.owners.is_empty() {
                continue;
            }
            if let Some(action) = self.attempt_to_delete(node, absent) {
                actions.push(action);
            }
        }
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

fn node_of(resource: usize, kind: &str, object: &DynamicObject) -> Option<Node> {
    let meta = &object.metadata;
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

/// The garbage collector; runs until its task is aborted.
pub struct GarbageCollector {
    client: kube::Client,
    flow: Flow,
}

impl GarbageCollector {
    /// A collector talking to the API server through `client`.
    pub fn new(client: kube::Client, flow: Flow) -> Self {
        GarbageCollector { client, flow }
    }

    /// Every resource to watch: listable, watchable and deletable, events aside.
    async fn served(&self) -> Result<Vec<Served>, GcError> {
        let discovery = Discovery::new(self.client.clone())
            .run()
            .await
            .map_err(GcError::Discovery)?;
        Ok(discovery
            .groups()
            .flat_map(|group| group.recommended_resources())
            .filter(|(resource, caps)| {
                caps.supports_operation(verbs::LIST)
                    && caps.supports_operation(verbs::WATCH)
                    && caps.supports_operation(verbs::DELETE)
                    && resource.plural != "events"
            })
            .map(|(resource, caps)| Served {
                resource,
                namespaced: caps.scope == Scope::Namespaced,
            })
            .collect())
    }

    /// Watches every served resource and collects, forever.
    pub async fn run(self) {
        let served = loop {
            match self.served().await {
                Ok(served) if !served.is_empty() => break served,
                Ok(_) => tracing::debug!("no resources to watch yet"),
                Err(error) => tracing::debug!(%error, "garbage collector discovery"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        let mut stores: Vec<Store<DynamicObject>> = Vec::new();
        let mut streams: Vec<BoxStream<'static, ()>> = Vec::new();
        for s in &served {
            let writer = Writer::<DynamicObject>::new(s.resource.clone());
            stores.push(writer.as_reader());
            let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &s.resource);
            streams.push(
                // Only the metadata the graph needs is kept (upstream's collector watches
                // metadata only).
                reflector(
                    writer,
                    watcher(api, watcher::Config::default()).modify(|o: &mut DynamicObject| {
                        o.data = serde_json::Value::Null;
                        o.metadata.managed_fields = None;
                        o.metadata.annotations = None;
                        o.metadata.labels = None;
                    }),
                )
                .default_backoff()
                .map(|_| ())
                .boxed(),
            );
        }
        let mut changes = futures::stream::select_all(streams).boxed();
        let ready = stores.clone();
        crate::informers::prime(&mut changes, async move {
            for store in ready {
                let _ = store.wait_until_ready().await;
            }
        })
        .await;
        // What was done to which object at which resourceVersion: not done again until the
        // cache shows the object changed.
        let mut acted: HashMap<String, String> = HashMap::new();
        let mut pace = crate::informers::Pace::default();
        loop {
            let graph = Graph::new(stores.iter().enumerate().flat_map(|(i, store)| {
                let kind = served[i].resource.kind.clone();
                store
                    .state()
                    .into_iter()
                    .filter_map(move |o| node_of(i, &kind, &o))
            }));
            acted.retain(|uid, _| graph.nodes.contains_key(uid));
            let absent = self.verify_absent(&graph, &served).await;
            for action in graph.plan(&absent) {
                let Some(node) = graph.nodes.get(action.uid()) else {
                    continue;
                };
                if acted.get(&node.uid) == Some(&node.resource_version) {
                    continue;
                }
                match self.act(&action, node, &graph, &served).await {
                    Ok(()) => {
                        acted.insert(node.uid.clone(), node.resource_version.clone());
                    }
                    Err(error) => tracing::debug!(%error, "garbage collector"),
                }
            }
            crate::informers::next_batch(&mut changes, Duration::from_secs(5), &mut pace).await;
        }
    }

    /// Asks the API server about every owner missing from the cache, by name: 404 or another
    /// uid is dangling.
    async fn verify_absent(&self, graph: &Graph, served: &[Served]) -> HashMap<String, Absent> {
        let mut out = HashMap::new();
        for (dependent, owner) in graph.absent_owners() {
            if out.contains_key(&owner.uid) {
                continue;
            }
            let group = owner.api_version.split_once('/').map_or("", |(g, _)| g);
            let Some(target) = served
                .iter()
                .find(|s| s.resource.group == group && s.resource.kind == owner.kind)
            else {
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
            match api.get_opt(&owner.name).await {
                Ok(Some(found)) if found.metadata.uid.as_deref() == Some(owner.uid.as_str()) => {
                    out.insert(owner.uid.clone(), Absent::Exists);
                }
                Ok(_) => {
                    out.insert(owner.uid.clone(), Absent::Dangling);
                }
                Err(error) => tracing::debug!(%error, owner = %owner.name, "owner lookup"),
            }
        }
        out
    }

    fn api(&self, node: &Node, served: &[Served]) -> Api<DynamicObject> {
        let resource = &served[node.resource].resource;
        match &node.namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, resource),
            None => Api::all_with(self.client.clone(), resource),
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

    async fn act(
        &self,
        action: &Action,
        node: &Node,
        graph: &Graph,
        served: &[Served],
    ) -> Result<(), GcError> {
        let api = self.api(node, served);
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
                let names: Vec<String> = owners
                    .iter()
                    .map(|uid| match graph.nodes.get(uid) {
                        Some(o) => o.label(),
                        None => format!("uid {uid}"),
                    })
                    .collect();
                self.flow
                    .gate_emit(self.hop(
                        "PATCH",
                        node,
                        format!(
                            "remove ownerReferences to {} from {}",
                            names.join(", "),
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
