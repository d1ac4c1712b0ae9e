//! What differs between resources, as kube-apiserver's per-resource strategies
//! (`pkg/registry/<group>/<resource>/strategy.go`) and apiextensions-apiserver's custom
//! resource strategy: how a request's object is decoded (through its `k8s-openapi` type, or
//! pruned by its CRD version's schema), defaulted, validated, whether its generation counts
//! spec changes, its `scale` subresource's paths, and its table. The generic verbs
//! ([`super::store`], [`crate::apiserver::handlers`]) ask the strategy and nothing else
//! about the kind; built-in kinds and custom resources go through the same code.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::apimachinery::labels;
use crate::apiserver::apiextensions::columns;
use crate::apiserver::apiextensions::served::{ScalePaths, Version, at_path, set_path};
use crate::apiserver::errors::{ApiError, Cause};
use crate::apiserver::resources::Resource;
use crate::apiserver::{ApiServer, admission, tables};

/// One resource's strategy.
#[derive(Clone)]
pub(crate) struct Strategy {
    pub(crate) resource: &'static Resource,
    /// The CRD version serving a custom resource.
    custom: Option<Arc<Version>>,
}

/// The built-in scalable kinds' paths.
fn built_in_scale() -> ScalePaths {
    ScalePaths {
        spec_replicas: ".spec.replicas".into(),
        status_replicas: ".status.replicas".into(),
        label_selector: None,
    }
}

impl Strategy {
    /// `resource`'s strategy. A built-in resource's costs nothing; a custom resource's is its
    /// CRD version as now served (`NotFound` if the CRD went meanwhile).
    pub(crate) async fn of(api: &ApiServer, resource: &'static Resource) -> Result<Self, ApiError> {
        if resource.custom.is_none() {
            return Ok(Strategy {
                resource,
                custom: None,
            });
        }
        let served = api.custom_resources().await;
        let custom = served.of(resource).cloned().ok_or(ApiError::NoSuchPath)?;
        Ok(Strategy {
            resource,
            custom: Some(custom),
        })
    }

    /// Refuses a create while the resource's CRD is being deleted, as the `crdHandler` does.
    pub(crate) fn check_create(&self) -> Result<(), ApiError> {
        match &self.custom {
            Some(v) if v.terminating => Err(ApiError::MethodNotAllowedWith(
                "create not allowed while custom resource definition is terminating".into(),
            )),
            _ => Ok(()),
        }
    }

    /// Drops what the object's schema does not know (a custom resource's pruning), returning
    /// the fields dropped as `unknown field "spec.x"`. A built-in object is pruned by its type
    /// when it is decoded instead.
    pub(crate) fn prune(&self, object: &mut Value) -> Vec<String> {
        match self.custom.as_deref().and_then(|v| v.schema.as_ref()) {
            Some(schema) => schema.prune(object),
            None => Vec::new(),
        }
    }

    /// The defaults: the kind's (`SetDefaults_*`), or the CRD schema's `default`s.
    pub(crate) fn default(&self, object: &mut Value) {
        match &self.custom {
            Some(v) => {
                if let Some(schema) = &v.schema {
                    schema.default(object);
                }
            }
            None => admission::default(self.resource, object),
        }
    }

    /// Every field error of `object` (`old`: the stored one, on update).
    pub(crate) fn validate(&self, object: &Value, old: Option<&Value>) -> Vec<Cause> {
        match &self.custom {
            Some(v) => {
                use crate::apiserver::apiextensions::validate;
                let r = v.resource;
                let mut causes = validate::validate_type_meta(object, r.group, r.version, r.kind);
                causes.extend(match &v.schema {
                    Some(schema) => schema.validate(object, old),
                    None => validate::validate_metadata(object),
                });
                causes
            }
            None => admission::validate(self.resource, object, old),
        }
    }

    /// Whether `metadata.generation` counts spec changes: always for custom resources.
    pub(crate) fn has_generation(&self) -> bool {
        self.custom.is_some() || super::store::has_generation(self.resource)
    }

    /// Whether an update of `old` to `new` changes what the generation counts: the spec; for a
    /// custom resource everything but `metadata` (and `status`, with a status subresource).
    pub(crate) fn generation_changed(&self, new: &Value, old: &Value) -> bool {
        if self.custom.is_none() {
            // A PodTemplate's generation counts its template's changes (its strategy's
            // `PrepareForUpdate`).
            let desired = match (self.resource.group, self.resource.kind) {
                ("", "PodTemplate") => "template",
                _ => "spec",
            };
            return new[desired] != old[desired];
        }
        let rest = |o: &Value| -> Value {
            let mut o = o.clone();
            if let Some(map) = o.as_object_mut() {
                map.remove("metadata");
                if self.resource.has_status() {
                    map.remove("status");
                }
            }
            o
        };
        rest(new) != rest(old)
    }

    fn scale_paths(&self) -> ScalePaths {
        match self.custom.as_deref().and_then(|v| v.scale.clone()) {
            Some(paths) => paths,
            None => built_in_scale(),
        }
    }

    /// The `autoscaling/v1 Scale` of a scalable object.
    pub(crate) fn scale(&self, object: &Value) -> Value {
        let paths = self.scale_paths();
        let meta = &object["metadata"];
        let selector = match &paths.label_selector {
            Some(path) => at_path(object, path)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            None if self.custom.is_some() => String::new(),
            None => selector_string(self.resource.kind, &object["spec"]["selector"]),
        };
        let replicas = |path: &str| at_path(object, path).and_then(Value::as_i64).unwrap_or(0);
        let mut status = json!({"replicas": replicas(&paths.status_replicas)});
        if !selector.is_empty() || self.custom.is_none() {
            status["selector"] = json!(selector);
        }
        json!({
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
                "resourceVersion": meta["resourceVersion"],
                "creationTimestamp": meta["creationTimestamp"],
            },
            "spec": {"replicas": replicas(&paths.spec_replicas)},
            "status": status,
        })
    }

    /// `object` with the replicas a Scale asks for.
    pub(crate) fn scaled(&self, object: &Value, replicas: Value) -> Value {
        let mut new = object.clone();
        set_path(&mut new, &self.scale_paths().spec_replicas, replicas);
        new
    }

    /// The objects as a `meta.k8s.io/v1` Table: kubectl's columns for a built-in kind, the
    /// CRD version's printer columns for a custom resource.
    pub(crate) fn table(&self, objects: Vec<Value>, list_metadata: Value) -> Value {
        let Some(version) = &self.custom else {
            return tables::table(self.resource, objects, list_metadata);
        };
        let now = jiff::Timestamp::now();
        let rows: Vec<Value> = objects
            .into_iter()
            .map(|mut o| {
                let cells = columns::cells(&version.columns, &o, now);
                Value::Object(tables::table_row(cells, o["metadata"].take()))
            })
            .collect();
        tables::table_of(list_metadata, columns::definitions(&version.columns), rows)
    }
}

/// A scale subresource's `status.selector`: `labels.Selector.String()` of the object's
/// selector, an equality map for a ReplicationController (`labels.SelectorFromSet`), a
/// `LabelSelector` for the other kinds (`LabelSelectorAsSelector`).
fn selector_string(kind: &str, selector: &Value) -> String {
    if kind == "ReplicationController" {
        labels::set_string(selector)
    } else {
        labels::selector_string(selector)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::resources;

    #[test]
    fn scale_selectors_are_written_as_labels_selector_string() {
        let rc = resources::find("", "v1", "replicationcontrollers").unwrap();
        let object = json!({"metadata": {"name": "web"}, "spec": {"replicas": 2, "selector": {"tier": "front", "app": "web"}}, "status": {"replicas": 1}});
        let scale = Strategy {
            resource: rc,
            custom: None,
        }
        .scale(&object);
        assert_eq!(scale["spec"]["replicas"], 2);
        assert_eq!(
            scale["status"],
            json!({"replicas": 1, "selector": "app=web,tier=front"})
        );
        let deployments = resources::find("apps", "v1", "deployments").unwrap();
        let selector = json!({"matchLabels": {"app": "web"}, "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["front", "back"]},
            {"key": "canary", "operator": "DoesNotExist"},
            {"key": "zone", "operator": "Exists"},
        ]});
        assert_eq!(
            selector_string(deployments.kind, &selector),
            "app=web,!canary,tier in (back,front),zone"
        );
    }
}
