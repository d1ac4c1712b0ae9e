//! The owner index: each workload object's controller owner, followed from the store (as the
//! garbage collector's graph follows owner references), so a write learns its story — the
//! object at the root of its owner references (`Deployment/web` for a pod of a Deployment's
//! ReplicaSet) — without reading the owners from the store.
//!
//! Only the kinds that own pods and are themselves owned are indexed (ReplicaSets, Jobs,
//! Deployments, StatefulSets, DaemonSets, ReplicationControllers, CronJobs); a chain ends at
//! the first owner of another kind (a custom resource, say), which then names the story.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::follow::{Following, State};
use super::resources;
use crate::store::{KeyValue, Store};

/// How many owners a story's root is looked for through.
const DEPTH: usize = 5;

/// One object's controller owner (or else its first owner), as `kind` and `name`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Owner {
    api_version: String,
    kind: String,
    name: String,
}

/// The owner of every indexed object, by store key (`None`: it has none).
#[derive(Default)]
pub(crate) struct Index {
    owners: Mutex<HashMap<String, Option<Owner>>>,
}

impl State for Index {
    const KINDS: &'static [(&'static str, &'static str)] = &[
        ("ReplicaSet", "/registry/replicasets/"),
        ("Job", "/registry/jobs/"),
        ("Deployment", "/registry/deployments/"),
        ("StatefulSet", "/registry/statefulsets/"),
        ("DaemonSet", "/registry/daemonsets/"),
        ("ReplicationController", "/registry/replicationcontrollers/"),
        ("CronJob", "/registry/cronjobs/"),
    ];

    fn reset(&self, kind: usize, objects: &[KeyValue]) {
        let prefix = Self::KINDS[kind].1;
        let mut owners = self.owners.lock().unwrap_or_else(|p| p.into_inner());
        owners.retain(|key, _| !key.starts_with(prefix));
        for kv in objects {
            owners.insert(kv.key.clone(), owner_in(&kv.value));
        }
    }

    fn apply(&self, _kind: usize, key: &str, value: Option<&[u8]>) {
        let mut owners = self.owners.lock().unwrap_or_else(|p| p.into_inner());
        match value {
            Some(value) => owners.insert(key.to_owned(), owner_in(value)),
            None => owners.remove(key),
        };
    }
}

/// What a stored object's metadata says of its owners (nothing else of it is decoded).
#[derive(Deserialize)]
struct Stored {
    #[serde(default)]
    metadata: StoredMeta,
}

#[derive(Default, Deserialize)]
struct StoredMeta {
    #[serde(default, rename = "ownerReferences")]
    owner_references: Vec<StoredOwner>,
}

#[derive(Deserialize)]
struct StoredOwner {
    #[serde(default, rename = "apiVersion")]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    controller: Option<bool>,
}

/// The controller owner (else the first owner) of a stored object.
fn owner_in(value: &[u8]) -> Option<Owner> {
    let stored: Stored = serde_json::from_slice(value).ok()?;
    let refs = stored.metadata.owner_references;
    let pick = refs
        .iter()
        .position(|r| r.controller == Some(true))
        .unwrap_or(0);
    refs.into_iter().nth(pick).map(|r| Owner {
        api_version: r.api_version,
        kind: r.kind,
        name: r.name,
    })
}

/// The controller owner (else the first owner) of an object being written.
fn owner_of(object: &Value) -> Option<Owner> {
    let refs = object["metadata"]["ownerReferences"].as_array()?;
    let owner = refs
        .iter()
        .find(|r| r["controller"] == true)
        .or_else(|| refs.first())?;
    let text = |field: &str| owner[field].as_str().unwrap_or_default().to_owned();
    Some(Owner {
        api_version: text("apiVersion"),
        kind: text("kind"),
        name: text("name"),
    })
}

impl Index {
    /// What the index knows of the object of `owner`'s kind named by it in `namespace`:
    /// `None` if that kind is not indexed or the object is not (yet) known, else its owner.
    fn owner_of(&self, owner: &Owner, namespace: Option<&str>) -> Option<Option<Owner>> {
        let key = indexed_key(owner, namespace)?;
        let owners = self.owners.lock().unwrap_or_else(|p| p.into_inner());
        owners.get(&key).cloned()
    }
}

/// The store key of `owner` in `namespace`, if its kind is one the index follows.
fn indexed_key(owner: &Owner, namespace: Option<&str>) -> Option<String> {
    if !Index::KINDS.iter().any(|(kind, _)| *kind == owner.kind) {
        return None;
    }
    let resource = resources::RESOURCES
        .iter()
        .find(|r| r.kind == owner.kind && r.api_version() == owner.api_version)?;
    Some(resource.key(namespace, &owner.name))
}

/// The owner index, and the writes of its kinds this API server made.
#[derive(Default)]
pub(crate) struct Owners {
    following: Following<Index>,
}

impl Owners {
    /// Notes this API server's write of an object of `kind` at `revision`.
    pub(crate) fn written(&self, kind: &str, revision: crate::store::Revision) {
        self.following.written(kind, revision);
    }

    /// The object at the root of `object`'s controller owner references, as `Kind/name`
    /// (`object`'s own when it has no owner). An owner this API server wrote a moment ago and
    /// the index has not followed yet is waited for, a second at most.
    pub(crate) async fn root(&self, store: &Arc<dyn Store>, object: &Value) -> String {
        let mut root = format!(
            "{}/{}",
            object["kind"].as_str().unwrap_or_default(),
            object["metadata"]["name"].as_str().unwrap_or_default()
        );
        let namespace = object["metadata"]["namespace"].as_str();
        let mut next = owner_of(object);
        let index = self.following.state(store).await;
        let mut waited = false;
        for _ in 0..DEPTH {
            let Some(owner) = next.take() else { break };
            root = format!("{}/{}", owner.kind, owner.name);
            next = match index.owner_of(&owner, namespace) {
                Some(known) => known,
                None if !waited && indexed_key(&owner, namespace).is_some() => {
                    waited = true;
                    self.following
                        .caught_up(store, Duration::from_secs(1))
                        .await;
                    index.owner_of(&owner, namespace).flatten()
                }
                None => None,
            };
        }
        root
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kv(key: &str, value: Value) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: serde_json::to_vec(&value).unwrap().into(),
            create_revision: 1,
            mod_revision: 1,
        }
    }

    fn owned_by(kind: &str, api_version: &str, name: &str) -> Value {
        json!({"metadata": {"ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "not-the-controller"},
            {"apiVersion": api_version, "kind": kind, "name": name, "controller": true},
        ]}})
    }

    fn owner(api_version: &str, kind: &str, name: &str) -> Owner {
        Owner {
            api_version: api_version.into(),
            kind: kind.into(),
            name: name.into(),
        }
    }

    #[test]
    fn the_index_keeps_each_objects_controller_owner_by_key() {
        let index = Index::default();
        index.reset(
            0,
            &[
                kv(
                    "/registry/replicasets/default/web-1",
                    owned_by("Deployment", "apps/v1", "web"),
                ),
                kv(
                    "/registry/replicasets/default/solo",
                    json!({"metadata": {}}),
                ),
            ],
        );
        let rs = |name: &str| owner("apps/v1", "ReplicaSet", name);
        assert_eq!(
            index.owner_of(&rs("web-1"), Some("default")),
            Some(Some(owner("apps/v1", "Deployment", "web")))
        );
        assert_eq!(index.owner_of(&rs("solo"), Some("default")), Some(None));
        assert_eq!(index.owner_of(&rs("solo"), Some("other")), None);
        // A kind the index does not follow, or a look-alike from another group.
        assert_eq!(
            index.owner_of(&owner("v1", "ConfigMap", "x"), Some("default")),
            None
        );
        assert_eq!(
            index.owner_of(
                &owner("example.com/v1", "ReplicaSet", "web-1"),
                Some("default")
            ),
            None
        );
        index.apply(0, "/registry/replicasets/default/web-1", None);
        assert_eq!(index.owner_of(&rs("web-1"), Some("default")), None);
        // A list replaces only its own kind's entries.
        index.apply(
            1,
            "/registry/jobs/default/pi",
            Some(&serde_json::to_vec(&owned_by("CronJob", "batch/v1", "nightly")).unwrap()),
        );
        index.reset(0, &[]);
        assert_eq!(index.owner_of(&rs("solo"), Some("default")), None);
        assert_eq!(
            index.owner_of(&owner("batch/v1", "Job", "pi"), Some("default")),
            Some(Some(owner("batch/v1", "CronJob", "nightly")))
        );
    }

    #[tokio::test]
    async fn a_story_is_the_root_of_the_owner_chain_read_from_the_followed_store() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            crate::store::embedded::EmbeddedStore::open(&dir.path().join("store.redb")).unwrap(),
        );
        let owners = Owners::default();
        let pod = |controller: Value| {
            json!({"kind": "Pod", "metadata": {"name": "p", "namespace": "default",
                "ownerReferences": [controller]}})
        };
        // Unowned: its own story. Owned by an unknown ReplicaSet: the ReplicaSet.
        assert_eq!(
            owners
                .root(&store, &json!({"kind": "Pod", "metadata": {"name": "p"}}))
                .await,
            "Pod/p"
        );
        let of_rs = pod(
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1",
            "controller": true}),
        );
        assert_eq!(owners.root(&store, &of_rs).await, "ReplicaSet/web-1");
        // The ReplicaSet written (and noted) after the index started: waited for, then its
        // Deployment, which a custom resource owns, names the story.
        let mut rs = owned_by("Deployment", "apps/v1", "web");
        rs["kind"] = json!("ReplicaSet");
        let revision = store
            .create(
                "/registry/replicasets/default/web-1",
                serde_json::to_vec(&rs).unwrap().into(),
            )
            .await
            .unwrap();
        let mut deployment = owned_by("Website", "example.com/v1", "site");
        deployment["kind"] = json!("Deployment");
        let at = store
            .create(
                "/registry/deployments/default/web",
                serde_json::to_vec(&deployment).unwrap().into(),
            )
            .await
            .unwrap();
        owners.written("ReplicaSet", revision);
        owners.written("Deployment", at);
        assert_eq!(owners.root(&store, &of_rs).await, "Website/site");
        let of_job = pod(json!({"apiVersion": "batch/v1", "kind": "Job", "name": "pi"}));
        assert_eq!(owners.root(&store, &of_job).await, "Job/pi");
    }
}
