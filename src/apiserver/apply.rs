//! Server-side apply and field ownership: `metadata.managedFields` in the real server's
//! `FieldsV1` form (`{"f:spec": {"f:replicas": {}}}`, `k:{"name":"web"}` for keyed list
//! entries), conflicts when an apply would change a field another manager set, and pruning of
//! fields a manager applied before but no longer applies.

use std::collections::{HashMap, HashSet};

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

/// Finds the elements of keyed lists by their key through an index built once per list, so
/// looking up every element of a long list is linear, not quadratic.
#[derive(Default)]
struct Finder<'a> {
    /// (the list's address, the key's name) -> the key's JSON text -> the first such element.
    lists: HashMap<(usize, String), HashMap<String, &'a Value>>,
}

impl<'a> Finder<'a> {
    fn find(&mut self, items: &'a [Value], key: &str, wanted: &Value) -> Option<&'a Value> {
        let index = self
            .lists
            .entry((items.as_ptr() as usize, key.to_owned()))
            .or_insert_with(|| {
                let mut index = HashMap::with_capacity(items.len());
                for item in items {
                    if let Some(id) = item.get(key) {
                        index.entry(id.to_string()).or_insert(item);
                    }
                }
                index
            });
        index.get(&wanted.to_string()).copied()
    }
}

/// The value an object holds at a field path.
fn value_at<'a>(object: &'a Value, path: &[String], finder: &mut Finder<'a>) -> Option<&'a Value> {
    let mut node = object;
    for segment in path {
        if let Some(field) = segment.strip_prefix("f:") {
            node = node.get(field)?;
        } else if let Some(key) = segment.strip_prefix("k:") {
            let wanted: Value = serde_json::from_str(key).ok()?;
            let (k, v) = wanted.as_object()?.iter().next()?;
            node = finder.find(node.as_array()?, k, v)?;
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

/// Removes field paths from an object in one walk: the paths as a tree (`{"f:a": {"k:{..}":
/// {}}}`, an empty node being a path's end), each keyed list indexed once, so pruning every
/// element of a long list is linear.
fn prune(object: &mut Value, tree: &Map<String, Value>) {
    match object {
        Value::Object(map) => {
            for (segment, below) in tree {
                let Some(field) = segment.strip_prefix("f:") else {
                    continue;
                };
                let below = below.as_object().filter(|b| !b.is_empty());
                match below {
                    None => {
                        map.remove(field);
                    }
                    Some(below) => {
                        if let Some(child) = map.get_mut(field) {
                            prune(child, below);
                        }
                    }
                }
            }
        }
        Value::Array(items) => {
            let mut index: HashMap<(String, String), usize> = HashMap::new();
            let mut indexed: HashSet<String> = HashSet::new();
            let mut gone = HashSet::new();
            for (segment, below) in tree {
                let Some(key) = segment.strip_prefix("k:") else {
                    continue;
                };
                let Ok(Value::Object(wanted)) = serde_json::from_str::<Value>(key) else {
                    continue;
                };
                let Some((k, v)) = wanted.iter().next() else {
                    continue;
                };
                if indexed.insert(k.clone()) {
                    for (i, item) in items.iter().enumerate() {
                        if let Some(id) = item.get(k) {
                            index.entry((k.clone(), id.to_string())).or_insert(i);
                        }
                    }
                }
                let Some(&i) = index.get(&(k.clone(), v.to_string())) else {
                    continue;
                };
                match below.as_object().filter(|b| !b.is_empty()) {
                    // Every element with the key goes, as `retain` removed them before.
                    None => {
                        gone.insert((k.clone(), v.to_string()));
                    }
                    Some(below) => prune(&mut items[i], below),
                }
            }
            if !gone.is_empty() {
                items.retain(|item| {
                    !indexed.iter().any(|k| {
                        item.get(k)
                            .is_some_and(|v| gone.contains(&(k.clone(), v.to_string())))
                    })
                });
            }
        }
        _ => {}
    }
}

/// Adds a field path to a tree of paths (see [`prune`]).
fn add_path(tree: &mut Map<String, Value>, path: &[String]) {
    let mut node = tree;
    for segment in path {
        node = node
            .entry(segment.clone())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("object");
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
    let (mut in_old, mut in_applied) = (Finder::default(), Finder::default());
    for entry in &entries {
        if entry["manager"] == manager && entry["operation"] == "Apply" {
            continue;
        }
        let theirs = &entry["fieldsV1"];
        for path in &our_leaves {
            if contains(theirs, path)
                && value_at(old, path, &mut in_old) != value_at(applied, path, &mut in_applied)
            {
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
        let mut gone = Map::new();
        for path in before {
            let still_ours = contains(&ours, &path);
            let others = entries.iter().any(|e| {
                !(e["manager"] == manager && e["operation"] == "Apply")
                    && contains(&e["fieldsV1"], &path)
            });
            if !still_ours && !others {
                add_path(&mut gone, &path);
            }
        }
        prune(&mut result, &gone);
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
                    // The old elements by key (the first of each), so the comparison is linear.
                    let mut by_key = std::collections::HashMap::with_capacity(olds.len());
                    for o in olds {
                        by_key.entry(o.get(key).map(Value::to_string)).or_insert(o);
                    }
                    let mut list = Map::new();
                    for item in items {
                        let previous = by_key.get(&item.get(key).map(Value::to_string)).copied();
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

    /// Ownership of 20,000 list elements, through every path that looks elements up: an
    /// update's changed fields, apply's conflicts (forced) and pruning. Each is linear in the
    /// list (no timing asserted: a quadratic lookup would make this run for minutes).
    #[test]
    fn long_keyed_lists_cost_linear_time() {
        const N: usize = 20_000;
        let cm = find("", "v1", "configmaps").unwrap();
        let with = |block: bool| {
            let owners: Vec<Value> = (0..N)
                .map(|i| json!({"apiVersion": "v1", "kind": "ConfigMap", "name": format!("o{i}"), "uid": format!("u{i}"), "blockOwnerDeletion": block}))
                .collect();
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "ownerReferences": owners}})
        };
        let applied = with(false);
        let created = merge(cm, &Value::Null, &applied, "alice", false).unwrap();
        // Bob changes every element with an ordinary update: he owns their blockOwnerDeletion.
        let mut updated = with(true);
        updated["metadata"]["managedFields"] = created["metadata"]["managedFields"].clone();
        record_update(cm, &created, &mut updated, "bob", "");
        let bobs = &updated["metadata"]["managedFields"][1];
        assert_eq!(bobs["manager"], "bob");
        assert_eq!(
            bobs["fieldsV1"]["f:metadata"]["f:ownerReferences"]
                .as_object()
                .unwrap()
                .len(),
            N
        );
        // Alice's apply conflicts on every element; forced, she takes them back.
        let Err(ApiError::ApplyConflict { causes, .. }) =
            merge(cm, &updated, &applied, "alice", false)
        else {
            panic!("no conflict");
        };
        assert_eq!(causes.len(), N);
        let forced = merge(cm, &updated, &applied, "alice", true).unwrap();
        assert_eq!(
            forced["metadata"]["ownerReferences"][7]["blockOwnerDeletion"],
            false
        );
        // Applying none of them prunes them all.
        let none = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
        let pruned = merge(cm, &forced, &none, "alice", false).unwrap();
        assert!(
            pruned["metadata"]["ownerReferences"]
                .as_array()
                .is_none_or(|refs| refs.iter().all(|r| r.get("uid").is_none())),
            "{}",
            pruned["metadata"]["ownerReferences"]
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
