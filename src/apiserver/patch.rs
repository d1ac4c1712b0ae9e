//! The four PATCH types: JSON merge patch and JSON patch (through the `json-patch` crate),
//! strategic merge patch (here: lists merged by the merge keys the Kubernetes types declare, with
//! the `$patch`, `$setElementOrder`, `$retainKeys` and `$deleteFromPrimitiveList` directives), and
//! server-side apply (`super::apply`).

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
        let keep: Vec<&str> = retain
            .as_array()
            .ok_or_else(|| bad("$retainKeys must be a list"))?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        target.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (key, value) in patch {
        if key == "$patch" || key == "$retainKeys" || key.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(list_field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            let remove = value.as_array().cloned().unwrap_or_default();
            if let Some(Value::Array(items)) = target.get_mut(list_field) {
                items.retain(|v| !remove.contains(v));
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
        let order = order.as_array().cloned().unwrap_or_default();
        let mk = merge_key_for(list_field, this_field);
        let position = |item: &Value| {
            order
                .iter()
                .position(|o| match mk {
                    Some(k) => o.get(k) == item.get(k),
                    None => o == item,
                })
                .unwrap_or(usize::MAX)
        };
        items.sort_by_key(position);
    }
    Ok(())
}

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
        for v in patch {
            if !items.contains(v) {
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
    for element in patch {
        let Some(id) = element.get(key) else {
            return Err(bad(format!(
                "map: {element} does not contain declared merge key: {key}"
            )));
        };
        let position = items.iter().position(|i| i.get(key) == Some(id));
        if element.get("$patch").and_then(Value::as_str) == Some("delete") {
            if let Some(i) = position {
                items.remove(i);
            }
            continue;
        }
        match position {
            Some(i) => merge_value(&mut items[i], element, field, parent)?,
            None => {
                let mut fresh = Value::Null;
                merge_value(&mut fresh, element, field, parent)?;
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
