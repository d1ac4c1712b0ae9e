//! The four PATCH types: JSON merge patch and JSON patch (through the `json-patch` crate),
//! strategic merge patch (here: lists merged by the merge keys the Kubernetes types declare, with
//! the `$patch`, `$setElementOrder`, `$retainKeys` and `$deleteFromPrimitiveList` directives), and
//! server-side apply (`super::apply`).

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::errors::ApiError;

/// The merge key of a list field, from the types' `x-kubernetes-patch-merge-key` (`parent` is the
/// name of the field holding the object that holds the list, which tells container ports from
/// service ports).
pub(crate) fn merge_key_for(field: &str, parent: &str) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "imagePullSecrets"
        | "env"
        | "resourceClaims"
        | "schedulingGates" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "hostAliases" => "ip",
        "ports"
            if matches!(
                parent,
                "containers" | "initContainers" | "ephemeralContainers"
            ) =>
        {
            "containerPort"
        }
        "ports" => "port",
        "conditions" | "addresses" => "type",
        "ownerReferences" => "uid",
        _ => return None,
    })
}

/// Lists of scalars that merge as sets rather than being replaced.
fn merges_primitives(field: &str) -> bool {
    field == "finalizers"
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::BadRequest(message.into())
}

/// Applies a strategic merge patch to `original`.
pub(crate) fn strategic_merge(original: &Value, patch: &Value) -> Result<Value, ApiError> {
    let mut result = original.clone();
    merge_value(&mut result, patch, "", "")?;
    Ok(result)
}

fn merge_value(
    target: &mut Value,
    patch: &Value,
    field: &str,
    _parent: &str,
) -> Result<(), ApiError> {
    match patch {
        Value::Object(p) => {
            if p.get("$patch").and_then(Value::as_str) == Some("replace") {
                let mut replacement = p.clone();
                replacement.remove("$patch");
                *target = Value::Object(replacement);
                return Ok(());
            }
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            merge_map(target.as_object_mut().expect("object"), p, field)
        }
        other => {
            *target = other.clone();
            Ok(())
        }
    }
}

fn merge_map(
    target: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    this_field: &str,
) -> Result<(), ApiError> {
    if let Some(directive) = patch.get("$patch").and_then(Value::as_str) {
        if directive == "delete" {
            target.clear();
            return Ok(());
        }
        if directive != "merge" {
            return Err(bad(format!("unknown patch type: {directive:?}")));
        }
    }
    if let Some(retain) = patch.get("$retainKeys") {
        let keep: HashSet<&str> = retain
            .as_array()
            .ok_or_else(|| bad("$retainKeys must be a list"))?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        target.retain(|k, _| keep.contains(k.as_str()));
    }
    for (key, value) in patch {
        if key == "$patch" || key == "$retainKeys" || key.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(list_field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            let remove: HashSet<String> = value
                .as_array()
                .map(|r| r.iter().map(identity).collect())
                .unwrap_or_default();
            if let Some(Value::Array(items)) = target.get_mut(list_field) {
                items.retain(|v| !remove.contains(&identity(v)));
            }
            continue;
        }
        if value.is_null() {
            target.remove(key);
            continue;
        }
        match value {
            Value::Array(patch_items) => {
                let existing = target.remove(key).unwrap_or(Value::Null);
                let merged = merge_list(existing, patch_items, key, this_field)?;
                target.insert(key.clone(), merged);
            }
            _ => {
                let entry = target.entry(key.clone()).or_insert(Value::Null);
                merge_value(entry, value, key, this_field)?;
            }
        }
    }
    // `$setElementOrder/<list>` orders the merged list as the patch's author saw it.
    for (key, order) in patch {
        let Some(list_field) = key.strip_prefix("$setElementOrder/") else {
            continue;
        };
        let Some(Value::Array(items)) = target.get_mut(list_field) else {
            continue;
        };
        let mk = merge_key_for(list_field, this_field);
        let id = |item: &Value| match mk {
            Some(k) => item.get(k).map(identity),
            None => Some(identity(item)),
        };
        // Each element's place in the order, looked up by its identity: linear in both lists.
        let mut places: HashMap<String, usize> = HashMap::new();
        for (i, o) in order.as_array().into_iter().flatten().enumerate() {
            if let Some(id) = id(o) {
                places.entry(id).or_insert(i);
            }
        }
        items.sort_by_cached_key(|item| {
            id(item)
                .and_then(|id| places.get(&id).copied())
                .unwrap_or(usize::MAX)
        });
    }
    Ok(())
}

/// A value's identity as a hash key: its JSON text (so `"1"` and `1` differ).
fn identity(value: &Value) -> String {
    value.to_string()
}

/// Merges a patch's list into the existing one. Linear in both lists: elements are found by
/// their merge key (or, in a set of primitives, by value) through a hash index, never by
/// scanning, so a patch adding 100,000 finalizers or ownerReferences costs 100,000 lookups.
fn merge_list(
    existing: Value,
    patch: &[Value],
    field: &str,
    parent: &str,
) -> Result<Value, ApiError> {
    let mut items = match existing {
        Value::Array(items) => items,
        _ => Vec::new(),
    };
    if merges_primitives(field) {
        let mut seen: HashSet<String> = items.iter().map(identity).collect();
        for v in patch {
            if seen.insert(identity(v)) {
                items.push(v.clone());
            }
        }
        return Ok(Value::Array(items));
    }
    let Some(key) = merge_key_for(field, parent) else {
        // No merge key: the patch's list replaces the old one (minus directives).
        return Ok(Value::Array(
            patch
                .iter()
                .filter(|v| v.get("$patch").is_none())
                .cloned()
                .collect(),
        ));
    };
    // A `$patch: replace` element replaces the whole list with the rest of the patch.
    if patch
        .iter()
        .any(|v| v.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        return Ok(Value::Array(
            patch
                .iter()
                .filter(|v| v.get("$patch").is_none())
                .cloned()
                .collect(),
        ));
    }
    let mut deleted = HashSet::new();
    for element in patch {
        let Some(id) = element.get(key) else {
            return Err(bad(format!(
                "map: {element} does not contain declared merge key: {key}"
            )));
        };
        if element.get("$patch").and_then(Value::as_str) == Some("delete") {
            deleted.insert(identity(id));
        }
    }
    // As upstream's `mergeSliceWithSpecialElements`: deletions first (every element with the
    // key), then the rest merged into the element with the same key, or appended.
    if !deleted.is_empty() {
        items.retain(|i| i.get(key).is_none_or(|id| !deleted.contains(&identity(id))));
    }
    let mut index: HashMap<String, usize> = HashMap::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        if let Some(id) = item.get(key) {
            index.entry(identity(id)).or_insert(i);
        }
    }
    for element in patch {
        if element.get("$patch").and_then(Value::as_str) == Some("delete") {
            continue;
        }
        let id = identity(&element[key]);
        match index.get(&id) {
            Some(&i) => merge_value(&mut items[i], element, field, parent)?,
            None => {
                let mut fresh = Value::Null;
                merge_value(&mut fresh, element, field, parent)?;
                index.insert(id, items.len());
                items.push(fresh);
            }
        }
    }
    Ok(Value::Array(items))
}

/// Applies a JSON merge patch (RFC 7386).
pub(crate) fn merge(original: &Value, patch: &Value) -> Value {
    let mut result = original.clone();
    json_patch::merge(&mut result, patch);
    result
}

/// Applies a JSON patch (RFC 6902), `test` operations included.
pub(crate) fn json(original: &Value, patch: &Value) -> Result<Value, ApiError> {
    let patch: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| bad(format!("the JSON patch is invalid: {e}")))?;
    let mut result = original.clone();
    json_patch::patch(&mut result, &patch).map_err(|e| ApiError::Invalid {
        group: String::new(),
        kind: String::new(),
        name: String::new(),
        causes: vec![super::errors::Cause {
            reason: "FieldValueInvalid",
            field: String::new(),
            message: e.to_string(),
        }],
    })?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(original: Value, patch: Value, expected: Value) {
        assert_eq!(
            strategic_merge(&original, &patch).unwrap(),
            expected,
            "patch {patch}"
        );
    }

    #[test]
    fn strategic_merge_patches() {
        let pod = json!({"metadata": {"labels": {"a": "1", "b": "2"}, "finalizers": ["x"]}, "spec": {"containers": [
            {"name": "web", "image": "nginx:1", "env": [{"name": "A", "value": "1"}], "ports": [{"containerPort": 80}]},
            {"name": "side", "image": "busybox"},
        ], "tolerations": [{"key": "t"}]}});
        // Containers merge by name; maps merge; null deletes.
        check(
            pod.clone(),
            json!({"metadata": {"labels": {"b": null, "c": "3"}}, "spec": {"containers": [{"name": "web", "image": "nginx:2"}]}}),
            json!({"metadata": {"labels": {"a": "1", "c": "3"}, "finalizers": ["x"]}, "spec": {"containers": [
                {"name": "web", "image": "nginx:2", "env": [{"name": "A", "value": "1"}], "ports": [{"containerPort": 80}]},
                {"name": "side", "image": "busybox"},
            ], "tolerations": [{"key": "t"}]}}),
        );
        // $patch: delete removes an element; lists without a merge key are replaced.
        check(
            pod.clone(),
            json!({"spec": {"containers": [{"name": "side", "$patch": "delete"}], "tolerations": [{"key": "u"}]}}),
            json!({"metadata": {"labels": {"a": "1", "b": "2"}, "finalizers": ["x"]}, "spec": {"containers": [
                {"name": "web", "image": "nginx:1", "env": [{"name": "A", "value": "1"}], "ports": [{"containerPort": 80}]},
            ], "tolerations": [{"key": "u"}]}}),
        );
        // Nested lists merge by their own keys (env by name, container ports by containerPort).
        let patched = strategic_merge(&pod, &json!({"spec": {"containers": [{"name": "web", "env": [{"name": "B", "value": "2"}], "ports": [{"containerPort": 443}]}]}})).unwrap();
        assert_eq!(
            patched["spec"]["containers"][0]["env"],
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}])
        );
        assert_eq!(
            patched["spec"]["containers"][0]["ports"],
            json!([{"containerPort": 80}, {"containerPort": 443}])
        );
        // $setElementOrder, finalizers as a set and $deleteFromPrimitiveList.
        let patched = strategic_merge(&pod, &json!({
            "metadata": {"finalizers": ["y"], "$deleteFromPrimitiveList/finalizers": ["x"]},
            "spec": {"$setElementOrder/containers": [{"name": "side"}, {"name": "web"}], "containers": [{"name": "side", "image": "busybox:2"}]},
        })).unwrap();
        assert_eq!(patched["metadata"]["finalizers"], json!(["y"]));
        assert_eq!(patched["spec"]["containers"][0]["name"], "side");
        assert_eq!(patched["spec"]["containers"][0]["image"], "busybox:2");
        // $patch: replace on a map, $retainKeys.
        check(
            json!({"spec": {"a": 1, "b": 2}}),
            json!({"spec": {"$patch": "replace", "c": 3}}),
            json!({"spec": {"c": 3}}),
        );
        check(
            json!({"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}),
            json!({"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}),
            json!({"strategy": {"type": "Recreate"}}),
        );
        // Service ports merge by port.
        check(
            json!({"spec": {"ports": [{"port": 80, "name": "http"}]}}),
            json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}]}}),
            json!({"spec": {"ports": [{"port": 80, "name": "http", "targetPort": 8080}]}}),
        );
    }

    /// The probes' patches: 100,000 finalizers or ownerReferences in one strategic merge patch.
    /// Nested scans made these minutes of CPU; indexed, they finish at once (no timing asserted:
    /// a quadratic merge would make this test run for minutes).
    #[test]
    fn long_lists_merge_in_linear_time() {
        const N: usize = 100_000;
        let original = json!({"metadata": {"name": "x", "finalizers": ["keep.example.com/a"]}});
        let finalizers: Vec<Value> = (0..N).map(|i| json!(format!("example.com/f{i}"))).collect();
        let patched = strategic_merge(
            &original,
            &json!({"metadata": {"finalizers": finalizers.clone()}}),
        )
        .unwrap();
        assert_eq!(
            patched["metadata"]["finalizers"].as_array().unwrap().len(),
            N + 1
        );
        // Again: all duplicates.
        let again = strategic_merge(
            &patched,
            &json!({"metadata": {"finalizers": finalizers.clone()}}),
        )
        .unwrap();
        assert_eq!(again, patched);
        // Half of them deleted.
        let halved = strategic_merge(
            &patched,
            &json!({"metadata": {"$deleteFromPrimitiveList/finalizers": finalizers[..N / 2].to_vec()}}),
        )
        .unwrap();
        assert_eq!(
            halved["metadata"]["finalizers"].as_array().unwrap().len(),
            N / 2 + 1
        );

        let owners: Vec<Value> = (0..N)
            .map(|i| json!({"apiVersion": "v1", "kind": "ConfigMap", "name": format!("o{i}"), "uid": format!("u{i}")}))
            .collect();
        let owned = strategic_merge(
            &original,
            &json!({"metadata": {"ownerReferences": owners.clone()}}),
        )
        .unwrap();
        assert_eq!(
            owned["metadata"]["ownerReferences"]
                .as_array()
                .unwrap()
                .len(),
            N
        );
        // Every element changed, every other one deleted, in reverse order.
        let changes: Vec<Value> = (0..N)
            .map(|i| {
                if i % 2 == 0 {
                    json!({"uid": format!("u{i}"), "$patch": "delete"})
                } else {
                    json!({"uid": format!("u{i}"), "controller": false})
                }
            })
            .collect();
        let order: Vec<Value> = (0..N)
            .rev()
            .map(|i| json!({"uid": format!("u{i}")}))
            .collect();
        let changed = strategic_merge(
            &owned,
            &json!({"metadata": {"ownerReferences": changes, "$setElementOrder/ownerReferences": order}}),
        )
        .unwrap();
        let refs = changed["metadata"]["ownerReferences"].as_array().unwrap();
        assert_eq!(refs.len(), N / 2);
        assert_eq!(refs[0]["uid"], format!("u{}", N - 1));
        assert_eq!(refs[0]["controller"], false);
        assert_eq!(refs[0]["name"], format!("o{}", N - 1));
    }

    #[test]
    fn json_and_merge_patches() {
        let obj = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"replicas": 1}});
        assert_eq!(
            merge(
                &obj,
                &json!({"metadata": {"labels": {"a": null, "b": "2"}}})
            ),
            json!({"metadata": {"labels": {"b": "2"}}, "spec": {"replicas": 1}})
        );
        let patched = json(&obj, &json!([{"op": "test", "path": "/spec/replicas", "value": 1}, {"op": "replace", "path": "/spec/replicas", "value": 3}])).unwrap();
        assert_eq!(patched["spec"]["replicas"], 3);
        assert!(
            json(
                &obj,
                &json!([{"op": "test", "path": "/spec/replicas", "value": 2}])
            )
            .is_err()
        );
    }
}
