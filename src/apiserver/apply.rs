//! Server-side apply and field ownership: `metadata.managedFields` in the real server's
//! `FieldsV1` form (`{"f:spec": {"f:replicas": {}}}`, `k:{"name":"web"}` for keyed list
//! entries), conflicts when an apply would change a field another manager set, and pruning of
//! fields a manager applied before but no longer applies.

use serde_json::{Map, Value, json};

use super::errors::{ApiError, Cause};
use super::patch;
use super::resources::Resource;

/// Metadata fields the server owns; they never appear in a field set.
const SERVER_FIELDS: &[&str] = &[
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
    "namespace",
    "name",
];

fn merge_key_of(list: &str, parent: &str) -> Option<&'static str> {
    patch::merge_key_for(list, parent)
}

fn key_entry(key: &str, item: &Value) -> String {
    format!("k:{}", json!({key: item[key]}))
}

/// The field set of a whole list: one `k:{...}` entry per element for lists with a merge key, or
/// the list as one atomic field.
fn keyed_list_set(items: &[Value], list: &str, parent: &str) -> Value {
    let Some(key) = merge_key_of(list, parent) else {
        return json!({});
    };
    let mut set = Map::new();
    for item in items {
        let mut sub = field_set(item, list, false);
        sub.as_object_mut()
            .expect("object")
            .insert(".".into(), json!({}));
        set.insert(key_entry(key, item), sub);
    }
    Value::Object(set)
}

/// The field set of `value` (an object), in `FieldsV1` form.
pub(crate) fn field_set(value: &Value, field: &str, top: bool) -> Value {
    let mut set = Map::new();
    if let Value::Object(map) = value {
        for (k, v) in map {
            if top && matches!(k.as_str(), "apiVersion" | "kind" | "status") {
                continue;
            }
            if field == "metadata" && SERVER_FIELDS.contains(&k.as_str()) {
                continue;
            }
            let entry = match v {
                Value::Object(m) => {
                    let sub = field_set(v, k, false);
                    // Only server-owned fields (such as metadata.name): nothing to own.
                    if !m.is_empty() && sub.as_object().is_some_and(|s| s.is_empty()) {
                        continue;
                    }
                    sub
                }
                Value::Array(items) => keyed_list_set(items, k, field),
                _ => json!({}),
            };
            set.insert(format!("f:{k}"), entry);
        }
    }
    Value::Object(set)
}

/// The leaf paths of a field set, each as the list of its segments.
fn leaves(set: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let Some(map) = set.as_object() else { return };
    let children: Vec<(&String, &Value)> = map.iter().filter(|(k, _)| k.as_str() != ".").collect();
    if children.is_empty() {
        out.push(prefix.clone());
        return;
    }
    for (k, v) in children {
        prefix.push(k.clone());
        leaves(v, prefix, out);
        prefix.pop();
    }
}

/// Whether a field set has a path as a member. Membership is exact, as in structured-merge-diff:
/// owning a field (`f:data: {}`, an empty map applied) is not owning what a map or object under
/// it holds, so applying `data: {}` gives up the keys applied before. (Atomic lists and values
/// are single leaves in both sets, so nothing deeper is ever asked of them.)
fn contains(set: &Value, path: &[String]) -> bool {
    let mut node = set;
    for segment in path {
        match node.get(segment) {
            Some(next) => node = next,
            None => return false,
        }
    }
    true
}

/// The value an object holds at a field path.
fn value_at<'a>(object: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut node = object;
    for segment in path {
        if let Some(field) = segment.strip_prefix("f:") {
            node = node.get(field)?;
        } else if let Some(key) = segment.strip_prefix("k:") {
            let wanted: Value = serde_json::from_str(key).ok()?;
            let (k, v) = wanted.as_object()?.iter().next()?;
            node = node
                .as_array()?
                .iter()
                .find(|item| item.get(k) == Some(v))?;
        } else {
            return None;
        }
    }
    Some(node)
}

/// Removes a field path from a field set, dropping emptied parents.
fn remove(set: &mut Value, path: &[String]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    let Some(map) = set.as_object_mut() else {
        return;
    };
    if rest.is_empty() {
        map.remove(first);
        return;
    }
    if let Some(child) = map.get_mut(first) {
        remove(child, rest);
        if child
            .as_object()
            .is_some_and(|m| m.keys().all(|k| k == "."))
        {
            map.remove(first);
        }
    }
}

/// Removes a field path from an object.
fn prune(object: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = object;
    for segment in parents {
        let next = if let Some(field) = segment.strip_prefix("f:") {
            node.get_mut(field)
        } else if let Some(key) = segment.strip_prefix("k:") {
            let Ok(wanted) = serde_json::from_str::<Value>(key) else {
                return;
            };
            let Some((k, v)) = wanted.as_object().and_then(|m| m.iter().next()) else {
                return;
            };
            node.as_array_mut()
                .and_then(|items| items.iter_mut().find(|item| item.get(k) == Some(v)))
        } else {
            None
        };
        match next {
            Some(n) => node = n,
            None => return,
        }
    }
    if let Some(field) = last.strip_prefix("f:") {
        if let Some(map) = node.as_object_mut() {
            map.remove(field);
        }
    } else if let Some(key) = last.strip_prefix("k:") {
        let Ok(wanted) = serde_json::from_str::<Value>(key) else {
            return;
        };
        if let (Some((k, v)), Some(items)) = (
            wanted.as_object().and_then(|m| m.iter().next()),
            node.as_array_mut(),
        ) {
            items.retain(|item| item.get(k) != Some(v));
        }
    }
}

/// A field path as the real server prints it: `.spec.containers[name="web"].image`.
fn render(path: &[String]) -> String {
    path.iter()
        .map(|s| {
            if let Some(f) = s.strip_prefix("f:") {
                return format!(".{f}");
            }
            let key = s.trim_start_matches("k:");
            match serde_json::from_str::<Value>(key) {
                Ok(Value::Object(m)) => {
                    let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    format!("[{}]", parts.join(","))
                }
                _ => format!("[{key}]"),
            }
        })
        .collect()
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn managed(object: &Value) -> Vec<Value> {
    object["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Merges an applied configuration into `old` (`Value::Null` when the object does not exist yet)
/// for `manager`, as server-side apply does.
pub(crate) fn merge(
    resource: &Resource,
    old: &Value,
    applied: &Value,
    manager: &str,
    force: bool,
) -> Result<Value, ApiError> {
    let ours = field_set(applied, "", true);
    let mut our_leaves = Vec::new();
    leaves(&ours, &mut Vec::new(), &mut our_leaves);
    let mut entries = managed(old);
    let api_version = resource.api_version();

    // Conflicts: fields another manager set, which this apply would change.
    let mut conflicts = Vec::new();
    for entry in &entries {
        if entry["manager"] == manager && entry["operation"] == "Apply" {
            continue;
        }
        let theirs = &entry["fieldsV1"];
        for path in &our_leaves {
            if contains(theirs, path) && value_at(old, path) != value_at(applied, path) {
                conflicts.push((
                    entry["manager"].as_str().unwrap_or_default().to_owned(),
                    path.clone(),
                ));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        let causes: Vec<Cause> = conflicts
            .iter()
            .map(|(m, path)| Cause {
                reason: "FieldManagerConflict",
                field: render(path),
                message: format!("conflict with \"{m}\" using {api_version}"),
            })
            .collect();
        let list: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.message, c.field))
            .collect();
        let summary = if list.len() == 1 {
            format!("Apply failed with 1 conflict: {}", list[0])
        } else {
            format!(
                "Apply failed with {} conflicts: {}",
                list.len(),
                list.join("\n")
            )
        };
        return Err(ApiError::ApplyConflict {
            message: summary,
            causes,
        });
    }
    // Forced: the fields change hands.
    for entry in entries.iter_mut() {
        if entry["manager"] == manager && entry["operation"] == "Apply" {
            continue;
        }
        for (_, path) in conflicts.iter() {
            remove(&mut entry["fieldsV1"], path);
        }
    }

    let mut result = if old.is_null() {
        applied.clone()
    } else {
        patch::strategic_merge(old, applied)?
    };

    // Fields this manager applied before and no longer applies go, unless someone else owns them.
    if let Some(previous) = entries
        .iter()
        .find(|e| e["manager"] == manager && e["operation"] == "Apply")
    {
        let mut before = Vec::new();
        leaves(&previous["fieldsV1"], &mut Vec::new(), &mut before);
        for path in before {
            let still_ours = contains(&ours, &path);
            let others = entries.iter().any(|e| {
                !(e["manager"] == manager && e["operation"] == "Apply")
                    && contains(&e["fieldsV1"], &path)
            });
            if !still_ours && !others {
                prune(&mut result, &path);
            }
        }
    }
    // An apply that owns the same fields as before keeps its entry (and its time), so a repeated
    // apply that changes nothing writes nothing.
    let unchanged = entries.iter().position(|e| {
        e["manager"] == manager && e["operation"] == "Apply" && e["fieldsV1"] == ours
    });
    let entry = match unchanged {
        Some(i) => entries.remove(i),
        None => {
            json!({"manager": manager, "operation": "Apply", "apiVersion": api_version, "time": now(), "fieldsType": "FieldsV1", "fieldsV1": ours})
        }
    };
    entries.retain(|e| !(e["manager"] == manager && e["operation"] == "Apply"));
    entries.retain(|e| e["fieldsV1"].as_object().is_some_and(|m| !m.is_empty()));
    entries.push(entry);
    result["metadata"]["managedFields"] = json!(entries);
    Ok(result)
}

/// The leaf fields that differ between two objects, as a field set.
fn changed(old: &Value, new: &Value, field: &str, top: bool) -> Value {
    let mut set = Map::new();
    let (Some(a), Some(b)) = (old.as_object(), new.as_object()) else {
        return Value::Object(set);
    };
    for (k, v) in b {
        if top && matches!(k.as_str(), "apiVersion" | "kind" | "status") {
            continue;
        }
        if field == "metadata" && SERVER_FIELDS.contains(&k.as_str()) {
            continue;
        }
        let before = a.get(k);
        if before == Some(v) {
            continue;
        }
        let entry = match (before, v) {
            (Some(o @ Value::Object(_)), Value::Object(_)) => {
                let sub = changed(o, v, k, false);
                if sub.as_object().is_some_and(|s| s.is_empty()) {
                    continue;
                }
                sub
            }
            (_, Value::Object(_)) => field_set(v, k, false),
            (Some(Value::Array(olds)), Value::Array(items)) => match merge_key_of(k, field) {
                Some(key) => {
                    let mut list = Map::new();
                    for item in items {
                        let previous = olds.iter().find(|o| o.get(key) == item.get(key));
                        if previous == Some(item) {
                            continue;
                        }
                        let mut sub = match previous {
                            Some(p) => changed(p, item, k, false),
                            None => field_set(item, k, false),
                        };
                        sub.as_object_mut()
                            .expect("object")
                            .insert(".".into(), json!({}));
                        list.insert(key_entry(key, item), sub);
                    }
                    Value::Object(list)
                }
                None => json!({}),
            },
            (_, Value::Array(items)) => keyed_list_set(items, k, field),
            _ => json!({}),
        };
        set.insert(format!("f:{k}"), entry);
    }
    Value::Object(set)
}

/// Records that `manager` made an ordinary write (create, update, patch) from `old` to `new`:
/// it now owns the fields it changed, which no other manager owns any more.
pub(crate) fn record_update(
    resource: &Resource,
    old: &Value,
    new: &mut Value,
    manager: &str,
    subresource: &str,
) {
    let mut entries = managed(old);
    let set = if old.is_null() {
        field_set(new, "", true)
    } else {
        changed(old, new, "", true)
    };
    let mut paths = Vec::new();
    leaves(&set, &mut Vec::new(), &mut paths);
    if paths.is_empty() || set.as_object().is_some_and(|m| m.is_empty()) {
        new["metadata"]["managedFields"] = json!(entries);
        return;
    }
    for entry in entries.iter_mut() {
        if entry["manager"] == manager && entry["operation"] == "Update" {
            continue;
        }
        for path in &paths {
            remove(&mut entry["fieldsV1"], path);
        }
    }
    let mut mine = entries
        .iter()
        .position(|e| e["manager"] == manager && e["operation"] == "Update")
        .map(|i| entries.remove(i)["fieldsV1"].clone())
        .unwrap_or_else(|| json!({}));
    merge_sets(&mut mine, &set);
    entries.retain(|e| e["fieldsV1"].as_object().is_some_and(|m| !m.is_empty()));
    let mut entry = json!({"manager": manager, "operation": "Update", "apiVersion": resource.api_version(), "time": now(), "fieldsType": "FieldsV1", "fieldsV1": mine});
    if !subresource.is_empty() {
        entry["subresource"] = json!(subresource);
    }
    entries.push(entry);
    new["metadata"]["managedFields"] = json!(entries);
}

fn merge_sets(into: &mut Value, from: &Value) {
    let (Some(a), Some(b)) = (into.as_object_mut(), from.as_object()) else {
        return;
    };
    for (k, v) in b {
        merge_sets(a.entry(k.clone()).or_insert_with(|| json!({})), v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::resources::find;

    #[test]
    fn field_sets_use_the_real_format() {
        let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "labels": {"app": "a"}}, "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "web", "image": "nginx"}]}}}});
        assert_eq!(
            field_set(&d, "", true),
            json!({"f:metadata": {"f:labels": {"f:app": {}}}, "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {".": {}, "f:image": {}, "f:name": {}}}}}}})
        );
    }

    #[test]
    fn apply_conflicts_and_prunes() {
        let deploy = find("apps", "v1", "deployments").unwrap();
        let first = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "labels": {"a": "1", "b": "2"}}, "spec": {"replicas": 2}});
        let created = merge(deploy, &Value::Null, &first, "alice", false).unwrap();
        assert_eq!(created["metadata"]["managedFields"][0]["manager"], "alice");

        // Someone scales with an ordinary update: they now own spec.replicas.
        let mut scaled = created.clone();
        scaled["spec"]["replicas"] = json!(5);
        record_update(deploy, &created, &mut scaled, "kubectl-scale", "");
        // Alice re-applies replicas: 2, which conflicts.
        let err = merge(deploy, &scaled, &first, "alice", false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Apply failed with 1 conflict: conflict with \"kubectl-scale\" using apps/v1: .spec.replicas"
        );
        // Forced, she takes it back.
        let forced = merge(deploy, &scaled, &first, "alice", true).unwrap();
        assert_eq!(forced["spec"]["replicas"], 2);
        // Dropping label b from her config removes it from the object.
        let second = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "labels": {"a": "1"}}, "spec": {"replicas": 2}});
        let pruned = merge(deploy, &forced, &second, "alice", false).unwrap();
        assert_eq!(pruned["metadata"]["labels"], json!({"a": "1"}));
        // An empty map applied gives up the keys applied before; so does leaving the map out.
        let emptied = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "labels": {}}, "spec": {"replicas": 2}});
        let emptied = merge(deploy, &pruned, &emptied, "alice", false).unwrap();
        assert_eq!(emptied["metadata"]["labels"], json!({}));
        let again = merge(deploy, &forced, &json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"replicas": 2}}), "alice", false).unwrap();
        assert!(
            again["metadata"]
                .get("labels")
                .is_none_or(|l| l == &json!({})),
            "{again}"
        );
        // Owning a map is not owning its keys: another manager's key in it is no conflict.
        let mut labelled = emptied.clone();
        labelled["metadata"]["labels"]["c"] = json!("3");
        record_update(deploy, &emptied, &mut labelled, "kubectl-label", "");
        let with_c = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "labels": {"c": "3"}}, "spec": {"replicas": 2}});
        assert!(merge(deploy, &labelled, &with_c, "bob", false).is_ok());
        // Applying the same value another manager set is no conflict.
        let same = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"replicas": 5}});
        assert!(merge(deploy, &scaled, &same, "bob", false).is_ok());
    }
}
