//! Pruning: dropping the fields a custom resource's schema does not specify, as
//! apiextensions-apiserver's `pruning.PruneWithOptions` does before an object is stored.
//! `x-kubernetes-preserve-unknown-fields` keeps a node's unknown fields (its known ones are
//! still pruned by their own schemas), `additionalProperties` schemas cover every other key,
//! and an embedded resource (the root is one) keeps `apiVersion`, `kind` and `metadata`, whose
//! own unknown fields go as `ObjectMeta`'s decoding drops them. The dropped paths are what
//! `fieldValidation=Warn` warns of and `Strict` refuses.

use serde_json::{Map, Value};

use super::schema::{Schema, Structural};

/// The fields `metav1.ObjectMeta` has: anything else under `metadata` is unknown.
const OBJECT_META_FIELDS: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

impl Structural {
    /// Drops every field the schema does not know from `object` (a whole custom resource)
    /// and returns one `unknown field "spec.foo"` per dropped field, sorted, as the warnings
    /// (`fieldValidation=Warn`) and the strict decoding error (`Strict`) word them.
    pub(crate) fn prune(&self, object: &mut Value) -> Vec<String> {
        let mut pruned = Vec::new();
        prune_node(
            object,
            Some(self.root()),
            true,
            &mut Vec::new(),
            &mut pruned,
        );
        pruned.sort();
        pruned
            .into_iter()
            .map(|p| format!("unknown field {p:?}"))
            .collect()
    }
}

/// Prunes `value` by `s` (`None`: nothing is known there), `embedded` when it is a resource
/// of its own; `path` is where `value` is (`spec`, `items`, `[0]`), `pruned` collects paths.
pub(crate) fn prune_node(
    value: &mut Value,
    s: Option<&Schema>,
    embedded: bool,
    path: &mut Vec<String>,
    pruned: &mut Vec<String>,
) {
    if let Some(s) = s
        && s.preserve_unknown
    {
        skip_prune(value, s, embedded, path, pruned);
        return;
    }
    match value {
        Value::Object(map) => {
            let Some(s) = s else {
                let keys: Vec<String> = map.keys().cloned().collect();
                for k in keys {
                    record(path, &k, pruned);
                    map.remove(&k);
                }
                return;
            };
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                if (embedded || s.embedded) && meta_field(map, &k, path, pruned) {
                    continue;
                }
                let Some(v) = map.get_mut(&k) else { continue };
                if let Some(p) = s.properties.get(&k) {
                    path.push(k.clone());
                    prune_node(v, Some(p), p.embedded, path, pruned);
                    path.pop();
                } else if let Some(a) = &s.additional {
                    let a = match a {
                        super::schema::Additional::Schema(a) => Some(&**a),
                        super::schema::Additional::Allows(_) => None,
                    };
                    path.push(k.clone());
                    prune_node(v, a, a.is_some_and(|a| a.embedded), path, pruned);
                    path.pop();
                } else {
                    record(path, &k, pruned);
                    map.remove(&k);
                }
            }
        }
        Value::Array(items) => {
            let item = s.and_then(|s| s.items.as_deref());
            for (i, v) in items.iter_mut().enumerate() {
                path.push(format!("[{i}]"));
                prune_node(v, item, item.is_some_and(|i| i.embedded), path, pruned);
                path.pop();
            }
        }
        _ => {}
    }
}

/// Under `x-kubernetes-preserve-unknown-fields`: unknown keys stay, known ones are pruned by
/// their schemas.
fn skip_prune(
    value: &mut Value,
    s: &Schema,
    embedded: bool,
    path: &mut Vec<String>,
    pruned: &mut Vec<String>,
) {
    match value {
        Value::Object(map) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                if (embedded || s.embedded) && meta_field(map, &k, path, pruned) {
                    continue;
                }
                let Some(v) = map.get_mut(&k) else { continue };
                let sub = s.properties.get(&k).or_else(|| s.additional_schema());
                if let Some(p) = sub {
                    path.push(k.clone());
                    prune_node(v, Some(p), p.embedded, path, pruned);
                    path.pop();
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = s.items.as_deref() {
                for (i, v) in items.iter_mut().enumerate() {
                    path.push(format!("[{i}]"));
                    prune_node(v, Some(item), item.embedded, path, pruned);
                    path.pop();
                }
            }
        }
        _ => {}
    }
}

/// An embedded resource's `apiVersion`, `kind` and `metadata` are kept (true); `metadata`
/// loses the fields `ObjectMeta` does not have.
fn meta_field(
    map: &mut Map<String, Value>,
    k: &str,
    path: &mut Vec<String>,
    pruned: &mut Vec<String>,
) -> bool {
    match k {
        "apiVersion" | "kind" => true,
        "metadata" => {
            if let Some(Value::Object(meta)) = map.get_mut(k) {
                path.push("metadata".into());
                let unknown: Vec<String> = meta
                    .keys()
                    .filter(|f| !OBJECT_META_FIELDS.contains(&f.as_str()))
                    .cloned()
                    .collect();
                for f in unknown {
                    record(path, &f, pruned);
                    meta.remove(&f);
                }
                path.pop();
            }
            true
        }
        _ => false,
    }
}

/// Records `path.key` as upstream's `PruneOpts` joins it (`spec.list[0].x`).
fn record(path: &[String], key: &str, pruned: &mut Vec<String>) {
    let mut text = String::new();
    for part in path.iter().map(String::as_str).chain([key]) {
        if !text.is_empty() && !part.starts_with('[') {
            text.push('.');
        }
        text.push_str(part);
    }
    pruned.push(text);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::apiserver::apiextensions::schema::tests::props;

    fn compile(schema: Value) -> Structural {
        Structural::new(&props(schema)).expect("structural")
    }

    #[test]
    fn unknown_fields_are_dropped_and_named() {
        let s = compile(json!({"type": "object", "properties": {
            "spec": {"type": "object", "properties": {
                "a": {"type": "string"},
                "list": {"type": "array", "items": {"type": "object", "properties": {"x": {"type": "integer"}}}},
                "map": {"type": "object", "additionalProperties": {"type": "object", "properties": {"y": {"type": "string"}}}},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {"known": {"type": "object"}}},
                "template": {"type": "object", "x-kubernetes-embedded-resource": true, "properties": {"spec": {"type": "object"}}},
            }},
        }}));
        let mut object = json!({
            "apiVersion": "a.b/v1", "kind": "K",
            "metadata": {"name": "x", "bogus": 1, "labels": {"a": "b"}},
            "spec": {
                "a": "keep", "b": "drop",
                "list": [{"x": 1, "z": 2}],
                "map": {"k": {"y": "keep", "w": 1}},
                "free": {"anything": {"deep": 1}, "known": {"gone": true}},
                "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}, "status": {}},
            },
            "status": {"ready": true},
        });
        let pruned = s.prune(&mut object);
        assert_eq!(
            pruned,
            [
                "unknown field \"metadata.bogus\"",
                "unknown field \"spec.b\"",
                "unknown field \"spec.free.known.gone\"",
                "unknown field \"spec.list[0].z\"",
                "unknown field \"spec.map.k.w\"",
                "unknown field \"spec.template.status\"",
                "unknown field \"status\"",
            ]
        );
        assert_eq!(
            object,
            json!({
                "apiVersion": "a.b/v1", "kind": "K",
                "metadata": {"name": "x", "labels": {"a": "b"}},
                "spec": {
                    "a": "keep",
                    "list": [{"x": 1}],
                    "map": {"k": {"y": "keep"}},
                    "free": {"anything": {"deep": 1}, "known": {}},
                    "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}},
                },
            })
        );
    }

    #[test]
    fn a_preserving_root_keeps_everything() {
        let s = compile(json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}));
        let mut object = json!({"metadata": {"name": "x"}, "spec": {"a": 1}, "extra": [1]});
        let before = object.clone();
        assert!(s.prune(&mut object).is_empty());
        assert_eq!(object, before);
    }
}
