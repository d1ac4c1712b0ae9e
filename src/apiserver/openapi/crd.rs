//! A CustomResourceDefinition version's part of the OpenAPI documents, as the apiextensions
//! server's builder (`pkg/controller/openapi/builder`) makes it: the kind's definition (the
//! version's `openAPIV3Schema` with `apiVersion`, `kind` and `metadata` added, and its
//! `x-kubernetes-group-version-kind`), the list kind's, both named as upstream names them
//! (`com.example.stable.v1.CronTab`), and the shape of its paths (a custom resource's: no watch
//! paths, `status` and `scale` if the version has them). OpenAPI v2 gets the schema made
//! v2-compatible as `ToStructuralOpenAPIV2` makes it, with its defaults pruned.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Map, Value, json};

use super::definitions;
use super::paths::{Shape, Subresource};
use super::{Extra, Gvk, OpenApiError, Version};

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
/// `PartialObjectMetadata`'s description of `metadata`, which the builder gives a custom kind's.
const METADATA: &str = "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
/// `PartialObjectMetadataList`'s description of `metadata`.
const LIST_METADATA: &str = "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const EMBEDDED_API_VERSION: &str = "apiVersion defines the versioned schema of this representation of an object. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources";
const EMBEDDED_KIND: &str = "kind is a string value representing the type of this object. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";

/// The definition name upstream gives a custom kind: the group reversed, the version, the kind
/// (`stable.example.com`, `v1`, `CronTab` → `com.example.stable.v1.CronTab`).
pub(crate) fn definition_name(group: &str, version: &str, kind: &str) -> String {
    let group: Vec<&str> = group.split('.').rev().collect();
    format!("{}.{version}.{kind}", group.join("."))
}

/// `TypeMeta`'s `apiVersion` and `kind` properties, as every built-in kind's definition has them.
fn type_meta() -> (Value, Value) {
    let pod = definitions::get()
        .ok()
        .and_then(|d| d.value("io.k8s.api.core.v1.Pod"));
    let property = |name: &str| {
        pod.as_ref()
            .and_then(|p| p.pointer(&format!("/properties/{name}")).cloned())
            .unwrap_or_else(|| json!({"type": "string"}))
    };
    (property("apiVersion"), property("kind"))
}

fn is_true(schema: &Map<String, Value>, key: &str) -> bool {
    schema.get(key).and_then(Value::as_bool) == Some(true)
}

/// `ToStructuralOpenAPIV2` and `PruneDefaults`, on one schema and everything under it.
fn to_v2(schema: &mut Map<String, Value>) {
    for key in ["allOf", "oneOf", "anyOf", "not", "default"] {
        schema.remove(key);
    }
    if is_true(schema, "nullable") {
        // kubectl cannot take a typed value that may be null: untyped, and nothing under it.
        for key in ["type", "nullable", "items", "properties"] {
            schema.remove(key);
        }
    }
    if is_true(schema, "x-kubernetes-preserve-unknown-fields") {
        schema.remove("items");
        schema.remove("properties");
    }
    if !schema.contains_key("items") && schema.get("type") == Some(&json!("array")) {
        schema.remove("type");
    }
    let nullable: Vec<String> = schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|props| {
            props
                .iter()
                .filter(|(_, p)| p.as_object().is_some_and(|p| is_true(p, "nullable")))
                .map(|(name, _)| name.clone())
                .collect()
        })
        .unwrap_or_default();
    if let Some(Value::Array(required)) = schema.get_mut("required") {
        required.retain(|r| !r.as_str().is_some_and(|r| nullable.iter().any(|n| n == r)));
        if required.is_empty() {
            schema.remove("required");
        }
    }
    if schema
        .get("additionalProperties")
        .and_then(Value::as_object)
        .is_some_and(|a| is_true(a, "nullable"))
    {
        schema.insert("additionalProperties".into(), json!(true));
    }
    for_children(schema, to_v2);
}

fn for_children(schema: &mut Map<String, Value>, f: fn(&mut Map<String, Value>)) {
    if let Some(Value::Object(props)) = schema.get_mut("properties") {
        props
            .values_mut()
            .filter_map(Value::as_object_mut)
            .for_each(f);
    }
    for key in ["items", "additionalProperties"] {
        if let Some(Value::Object(child)) = schema.get_mut(key) {
            f(child);
        }
    }
    for key in ["allOf", "oneOf", "anyOf"] {
        if let Some(Value::Array(children)) = schema.get_mut(key) {
            children
                .iter_mut()
                .filter_map(Value::as_object_mut)
                .for_each(f);
        }
    }
    if let Some(Value::Object(child)) = schema.get_mut("not") {
        f(child);
    }
}

/// The structural schema's `Unfold`: an `x-kubernetes-int-or-string` value is an integer or a
/// string.
fn unfold(schema: &mut Map<String, Value>) {
    if is_true(schema, "x-kubernetes-int-or-string") {
        let either = json!([{"type": "integer"}, {"type": "string"}]);
        if schema.contains_key("anyOf") {
            let mut all = vec![json!({"anyOf": either})];
            if let Some(Value::Array(rest)) = schema.remove("allOf") {
                all.extend(rest);
            }
            schema.insert("allOf".into(), Value::Array(all));
        } else {
            schema.insert("anyOf".into(), either);
        }
    }
    for_children(schema, unfold);
}

/// `addEmbeddedProperties`: an embedded resource's `apiVersion`, `kind` and `metadata`.
fn embed(schema: &mut Map<String, Value>, version: Version) {
    if let Some(Value::Object(props)) = schema.get_mut("properties") {
        props
            .values_mut()
            .filter_map(Value::as_object_mut)
            .for_each(|p| embed(p, version));
    }
    for key in ["items", "additionalProperties"] {
        if let Some(Value::Object(child)) = schema.get_mut(key) {
            embed(child, version);
        }
    }
    if version == Version::V2 && is_true(schema, "x-kubernetes-preserve-unknown-fields") {
        return;
    }
    if !is_true(schema, "x-kubernetes-embedded-resource") {
        return;
    }
    let (mut api_version, mut kind) = type_meta();
    api_version["description"] = json!(EMBEDDED_API_VERSION);
    kind["description"] = json!(EMBEDDED_KIND);
    let props = schema
        .entry("properties")
        .or_insert_with(|| json!({}))
        .as_object_mut();
    if let Some(props) = props {
        props.insert("apiVersion".into(), api_version);
        props.insert("kind".into(), kind);
        props.insert(
            "metadata".into(),
            json!({"$ref": format!("{}{OBJECT_META}", version.prefix()), "description": METADATA}),
        );
    }
    let required = schema.entry("required").or_insert_with(|| json!([]));
    if let Value::Array(required) = required {
        for name in ["kind", "apiVersion"] {
            if !required.iter().any(|r| r == name) {
                required.push(json!(name));
            }
        }
    }
}

/// What one version of a CustomResourceDefinition adds to the documents of `version`'s kind
/// (OpenAPI v2 or v3): its two definitions and its paths' shape.
pub(crate) fn openapi(
    crd: &CustomResourceDefinition,
    served_version: &str,
    version: Version,
) -> Result<Extra, OpenApiError> {
    let crd_name = crd.metadata.name.clone().unwrap_or_default();
    let spec = &crd.spec;
    let v = spec
        .versions
        .iter()
        .find(|v| v.name == served_version)
        .ok_or_else(|| OpenApiError::NoSuchVersion {
            crd: crd_name.clone(),
            version: served_version.to_owned(),
        })?;
    let group = spec.group.as_str();
    let kind = spec.names.kind.as_str();
    let list_kind = spec
        .names
        .list_kind
        .clone()
        .unwrap_or_else(|| format!("{kind}List"));
    let gvk = |kind: &str| json!([{"group": group, "kind": kind, "version": served_version}]);
    let schema = v
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .map(serde_json::to_value)
        .transpose()
        .map_err(|e| OpenApiError::Schema {
            crd: crd_name.clone(),
            version: served_version.to_owned(),
            error: e.to_string(),
        })?;
    let preserve_unknown = spec.preserve_unknown_fields == Some(true)
        || schema
            .as_ref()
            .is_some_and(|s| s.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true)));
    let mut definition = match schema {
        Some(Value::Object(mut schema)) if !(version == Version::V2 && preserve_unknown) => {
            unfold(&mut schema);
            if version == Version::V2 {
                to_v2(&mut schema);
            }
            let (api_version, kind_property) = type_meta();
            let props = schema
                .entry("properties")
                .or_insert_with(|| json!({}))
                .as_object_mut();
            if let Some(props) = props {
                props.insert(
                    "metadata".into(),
                    json!({"$ref": format!("{}{OBJECT_META}", version.prefix()), "description": METADATA}),
                );
                props.insert("apiVersion".into(), api_version);
                props.insert("kind".into(), kind_property);
            }
            embed(&mut schema, version);
            schema
        }
        // No schema, or (for v2) one that keeps unknown fields: kubectl would refuse any field
        // not listed, so nothing is.
        _ => Map::from_iter([("type".to_owned(), json!("object"))]),
    };
    definition.insert("x-kubernetes-group-version-kind".into(), gvk(kind));
    let name = definition_name(group, served_version, kind);
    let (api_version, kind_property) = type_meta();
    let list = json!({
        "description": format!("{list_kind} is a list of {kind}"),
        "properties": {
            "apiVersion": api_version,
            "items": {
                "description": format!("List of {}. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md", spec.names.plural),
                "items": {"$ref": format!("{}{name}", version.prefix())},
                "type": "array",
            },
            "kind": kind_property,
            "metadata": {"$ref": format!("{}{LIST_META}", version.prefix()), "description": LIST_METADATA},
        },
        "required": ["items"],
        "x-kubernetes-group-version-kind": gvk(&list_kind),
    });
    let own = Gvk::new(group, served_version, kind);
    let mut subresources = Vec::new();
    if let Some(subs) = &v.subresources {
        let verbs: &'static [&'static str] = &["get", "patch", "update"];
        if subs.status.is_some() {
            subresources.push(Subresource {
                name: "status".into(),
                gvk: own.clone(),
                verbs,
            });
        }
        if subs.scale.is_some() {
            subresources.push(Subresource {
                name: "scale".into(),
                gvk: Gvk::new("autoscaling", "v1", "Scale"),
                verbs,
            });
        }
    }
    Ok(Extra {
        definitions: vec![
            (name, Value::Object(definition)),
            (definition_name(group, served_version, &list_kind), list),
        ],
        shape: Shape {
            group: group.to_owned(),
            version: served_version.to_owned(),
            plural: spec.names.plural.clone(),
            kind: kind.to_owned(),
            namespaced: spec.scope == "Namespaced",
            subresources,
            create_only: false,
            custom: true,
        },
    })
}
