//! The CustomResourceDefinitions this API server serves, followed from the store as
//! apiextensions-apiserver's `crdHandler` follows them through its informer: each
//! established CRD's served versions become resources ([`Version`]), with the version's
//! schema compiled once, its subresources and printer columns, so requests for custom
//! resources are routed, defaulted, pruned, validated and printed from them. A change of any
//! CRD swaps in a new [`Served`] whole, and wakes the CRD controllers
//! ([`super::controller`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionVersion,
};
use serde_json::Value;

use super::columns::{self, Column};
use super::schema::Structural;
use crate::apiserver::follow::{Following, State};
use crate::apiserver::resources::{CustomResource, Resource};
use crate::store::{KeyValue, Store};

/// Where CRDs are kept.
pub(crate) const PREFIX: &str = "/registry/customresourcedefinitions/";
/// The finalizer that makes a CRD's deletion delete its objects first.
pub(crate) const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// Where a version's `scale` subresource reads and writes (`.spec.replicas` and so on).
#[derive(Debug, Clone)]
pub(crate) struct ScalePaths {
    pub(crate) spec_replicas: String,
    pub(crate) status_replicas: String,
    pub(crate) label_selector: Option<String>,
}

/// One served version of an established CRD.
pub(crate) struct Version {
    pub(crate) resource: &'static Resource,
    /// The version's schema, compiled (`None` only if it does not compile, which the CRD's
    /// validation refuses).
    pub(crate) schema: Option<Structural>,
    pub(crate) scale: Option<ScalePaths>,
    pub(crate) columns: Vec<Column>,
    /// The CRD is being deleted: its objects may be read and deleted, not created.
    pub(crate) terminating: bool,
}

/// Every served version of every established CRD.
#[derive(Default)]
pub(crate) struct Served {
    versions: Vec<Arc<Version>>,
}

impl Served {
    /// The version served at `group`/`version` under `plural`.
    pub(crate) fn find(&self, group: &str, version: &str, plural: &str) -> Option<&Arc<Version>> {
        self.versions.iter().find(|v| {
            let r = v.resource;
            r.group == group && r.version == version && r.plural == plural
        })
    }

    /// The version serving `resource`.
    pub(crate) fn of(&self, resource: &Resource) -> Option<&Arc<Version>> {
        self.versions
            .iter()
            .find(|v| std::ptr::eq(v.resource, resource))
    }

    /// Every served custom resource, in the order discovery lists them (by CRD name, then
    /// the versions in the CRD's order).
    pub(crate) fn resources(&self) -> Vec<&'static Resource> {
        self.versions.iter().map(|v| v.resource).collect()
    }
}

/// The CRDs as followed from the store.
#[derive(Default)]
pub(crate) struct Definitions {
    /// Each CRD by name, as stored.
    crds: Mutex<BTreeMap<String, Arc<CustomResourceDefinition>>>,
    served: RwLock<Arc<Served>>,
    /// Bumped on every change, for the controllers.
    changed: tokio::sync::watch::Sender<u64>,
}

impl State for Definitions {
    const KINDS: &'static [(&'static str, &'static str)] = &[("CustomResourceDefinition", PREFIX)];

    fn reset(&self, _kind: usize, objects: &[KeyValue]) {
        let mut crds = self.crds.lock().unwrap_or_else(|p| p.into_inner());
        crds.clear();
        for kv in objects {
            if let Some(crd) = parse(&kv.value) {
                crds.insert(crd.metadata.name.clone().unwrap_or_default(), Arc::new(crd));
            }
        }
        self.rebuild(&crds);
    }

    fn apply(&self, _kind: usize, key: &str, value: Option<&[u8]>) {
        let mut crds = self.crds.lock().unwrap_or_else(|p| p.into_inner());
        let name = key.strip_prefix(PREFIX).unwrap_or(key).to_owned();
        match value.and_then(parse) {
            Some(crd) => crds.insert(name, Arc::new(crd)),
            None => crds.remove(&name),
        };
        self.rebuild(&crds);
    }
}

fn parse(value: &[u8]) -> Option<CustomResourceDefinition> {
    serde_json::from_slice(value).ok()
}

/// Whether a CRD's condition of `kind` is `True`.
pub(crate) fn condition_true(crd: &CustomResourceDefinition, kind: &str) -> bool {
    crd.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == kind && c.status == "True"))
}

impl Definitions {
    /// The CRDs now.
    pub(crate) fn crds(&self) -> Vec<Arc<CustomResourceDefinition>> {
        let crds = self.crds.lock().unwrap_or_else(|p| p.into_inner());
        crds.values().cloned().collect()
    }

    /// What is served now.
    pub(crate) fn served(&self) -> Arc<Served> {
        self.served
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Woken on every change of a CRD.
    pub(crate) fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn rebuild(&self, crds: &BTreeMap<String, Arc<CustomResourceDefinition>>) {
        let versions = crds
            .values()
            .filter(|crd| condition_true(crd, "Established"))
            .flat_map(|crd| served_versions(crd))
            .collect();
        *self.served.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(Served { versions });
        self.changed.send_modify(|n| *n += 1);
    }
}

/// A CRD's served versions, as resources.
fn served_versions(crd: &CustomResourceDefinition) -> Vec<Arc<Version>> {
    let spec = &crd.spec;
    let names = &spec.names;
    let storage = spec
        .versions
        .iter()
        .find(|v| v.storage)
        .map(|v| v.name.clone())
        .unwrap_or_default();
    let terminating = crd.metadata.deletion_timestamp.is_some();
    spec.versions
        .iter()
        .filter(|v| v.served)
        .map(|v| {
            let subresources = v.subresources.as_ref();
            let mut subs = Vec::new();
            if subresources.is_some_and(|s| s.status.is_some()) {
                subs.push("status".to_owned());
            }
            let scale = subresources
                .and_then(|s| s.scale.as_ref())
                .map(|s| ScalePaths {
                    spec_replicas: s.spec_replicas_path.clone(),
                    status_replicas: s.status_replicas_path.clone(),
                    label_selector: s.label_selector_path.clone(),
                });
            if scale.is_some() {
                subs.push("scale".to_owned());
            }
            let resource = CustomResource {
                group: spec.group.clone(),
                version: v.name.clone(),
                plural: names.plural.clone(),
                singular: names
                    .singular
                    .clone()
                    .unwrap_or_else(|| names.kind.to_lowercase()),
                kind: names.kind.clone(),
                namespaced: spec.scope == "Namespaced",
                short_names: names.short_names.clone().unwrap_or_default(),
                categories: names.categories.clone().unwrap_or_default(),
                subresources: subs,
                storage_version: storage.clone(),
            }
            .resource();
            Arc::new(Version {
                resource,
                schema: schema_of(v),
                scale,
                columns: columns::columns(v.additional_printer_columns.as_deref())
                    .unwrap_or_default(),
                terminating,
            })
        })
        .collect()
}

fn schema_of(version: &CustomResourceDefinitionVersion) -> Option<Structural> {
    let props = version.schema.as_ref()?.open_api_v3_schema.as_ref()?;
    Structural::new(props).ok()
}

/// The CRDs, followed from the first request that needs them.
#[derive(Default)]
pub(crate) struct Crds {
    following: Following<Definitions>,
}

impl Crds {
    /// The CRDs' state, listing them first if nothing did yet.
    pub(crate) async fn definitions(&self, store: &Arc<dyn Store>) -> &Definitions {
        self.following.state(store).await
    }

    /// Notes this API server's write of an object of `kind` at `revision`.
    pub(crate) fn written(&self, kind: &str, revision: crate::store::Revision) {
        self.following.written(kind, revision);
    }

    /// Waits until every CRD write of this API server is followed (a few seconds at most).
    pub(crate) async fn caught_up(&self, store: &Arc<dyn Store>) {
        self.following
            .caught_up(store, std::time::Duration::from_secs(3))
            .await;
    }
}

/// A JSON value at a `.a.b.c` path (what the scale subresource's paths name).
pub(crate) fn at_path<'v>(object: &'v Value, path: &str) -> Option<&'v Value> {
    path.trim_start_matches('.')
        .split('.')
        .filter(|s| !s.is_empty())
        .try_fold(object, |v, key| v.get(key))
}

/// Sets the value at a `.a.b.c` path, making the objects on the way.
pub(crate) fn set_path(object: &mut Value, path: &str, value: Value) {
    let mut current = object;
    let keys: Vec<&str> = path
        .trim_start_matches('.')
        .split('.')
        .filter(|s| !s.is_empty())
        .collect();
    for key in &keys[..keys.len().saturating_sub(1)] {
        if !current[*key].is_object() {
            current[*key] = Value::Object(Default::default());
        }
        current = &mut current[*key];
    }
    if let Some(last) = keys.last() {
        current[*last] = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn crd(established: bool) -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "crontabs.stable.example.com"},
            "spec": {
                "group": "stable.example.com",
                "scope": "Namespaced",
                "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab", "shortNames": ["ct"]},
                "versions": [
                    {"name": "v1", "served": true, "storage": true,
                     "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "properties": {"replicas": {"type": "integer"}}}}}},
                     "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}}},
                    {"name": "v1beta1", "served": false, "storage": false,
                     "schema": {"openAPIV3Schema": {"type": "object"}}},
                ],
            },
            "status": {"conditions": [{"type": "Established", "status": if established { "True" } else { "False" }}]},
        })
    }

    #[test]
    fn only_established_crds_served_versions_are_served() {
        let definitions = Definitions::default();
        let kv = |v: &Value| KeyValue {
            key: format!("{PREFIX}crontabs.stable.example.com"),
            value: serde_json::to_vec(v).unwrap().into(),
            create_revision: 1,
            mod_revision: 1,
        };
        definitions.reset(0, &[kv(&crd(false))]);
        assert!(definitions.served().resources().is_empty());
        definitions.apply(0, &kv(&crd(true)).key, Some(&kv(&crd(true)).value));
        let served = definitions.served();
        let version = served.find("stable.example.com", "v1", "crontabs").unwrap();
        assert_eq!(version.resource.kind, "CronTab");
        assert_eq!(version.resource.subresources, &["status", "scale"]);
        assert_eq!(
            version.resource.key("default".into(), "a"),
            "/registry/stable.example.com/crontabs/default/a"
        );
        assert!(
            served
                .find("stable.example.com", "v1beta1", "crontabs")
                .is_none()
        );
        // The same definition is served by the same resource.
        definitions.reset(0, &[kv(&crd(true))]);
        assert!(std::ptr::eq(
            definitions.served().resources()[0],
            version.resource
        ));
        definitions.apply(0, &kv(&crd(true)).key, None);
        assert!(definitions.served().resources().is_empty());
    }

    #[test]
    fn scale_paths_read_and_write() {
        let mut object = json!({"spec": {}});
        set_path(&mut object, ".spec.replicas", json!(3));
        set_path(&mut object, ".status.replicas", json!(2));
        assert_eq!(at_path(&object, ".spec.replicas"), Some(&json!(3)));
        assert_eq!(at_path(&object, ".status.replicas"), Some(&json!(2)));
        assert_eq!(at_path(&object, ".status.selector"), None);
    }
}
