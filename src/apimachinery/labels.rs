//! Labels and label selectors as `k8s.io/apimachinery/pkg/labels` has them: how a
//! `metav1.LabelSelector` matches a set of labels (every `matchLabels` pair and every
//! `matchExpressions` requirement must hold; an empty selector matches everything, a missing one,
//! which callers handle, nothing), and the well-known labels components agree on, as upstream's
//! `well_known_labels.go` files declare them (the endpointslice controller, kube-proxy, cluster
//! DNS, the load balancer, the ingress controller and the dashboard name them from here).
//! Selectors are also written here as `labels.Selector.String()` writes them, the one form the
//! server's tables, kubectl's columns and `Scale.status.selector` share.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use std::collections::BTreeMap;

/// The label naming a slice's Service.
pub const SERVICE_NAME: &str = "kubernetes.io/service-name";
/// The label naming who manages a slice.
pub const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";

/// Whether `labels` satisfy `selector`.
pub fn matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_label = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    by_label
        && selector.match_expressions.iter().flatten().all(|e| {
            let values = e.values.as_deref().unwrap_or_default();
            match e.operator.as_str() {
                "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
                "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
                "Exists" => labels.contains_key(&e.key),
                "DoesNotExist" => !labels.contains_key(&e.key),
                _ => false,
            }
        })
}

/// Whether a workload controller's selector selects `labels`: as for [`matches`], except that an
/// empty selector selects nothing (upstream's controllers refuse to act on everything).
pub fn controller_selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    !is_empty(selector) && matches(selector, labels)
}

/// Whether the selector has no requirement at all.
pub fn is_empty(selector: &LabelSelector) -> bool {
    selector
        .match_labels
        .as_ref()
        .is_none_or(BTreeMap::is_empty)
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(Vec::is_empty)
}

/// A `metav1.LabelSelector` (as JSON) written as `LabelSelectorAsSelector(s).String()`:
/// requirements sorted by key, `k=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`, values sorted
/// and without repeats; empty when it has no requirement (kubectl prints that `<none>`).
pub fn selector_string(selector: &serde_json::Value) -> String {
    let mut requirements = equalities(&selector["matchLabels"]);
    for e in selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let key = text(&e["key"]);
        let mut values: Vec<String> = e["values"]
            .as_array()
            .map(|v| v.iter().map(text).collect())
            .unwrap_or_default();
        values.sort();
        values.dedup();
        let shown = match e["operator"].as_str() {
            Some("In") => format!("{key} in ({})", values.join(",")),
            Some("NotIn") => format!("{key} notin ({})", values.join(",")),
            Some("Exists") => key.clone(),
            Some("DoesNotExist") => format!("!{key}"),
            _ => continue,
        };
        requirements.push((key, shown));
    }
    joined(requirements)
}

/// A label set (an equality-only selector such as a Service's or a ReplicationController's,
/// as JSON) written as `labels.SelectorFromSet(set).String()`: `k=v` sorted by key; empty when
/// the set is.
pub fn set_string(set: &serde_json::Value) -> String {
    joined(equalities(set))
}

fn text(v: &serde_json::Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

fn equalities(set: &serde_json::Value) -> Vec<(String, String)> {
    set.as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), format!("{k}={}", text(v))))
        .collect()
}

/// Requirements (each with its key) sorted by key, as `internalSelector` keeps them.
fn joined(mut requirements: Vec<(String, String)>) -> String {
    requirements.sort();
    requirements
        .into_iter()
        .map(|(_, shown)| shown)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn selectors() {
        let labels = BTreeMap::from([
            ("app".to_owned(), "web".to_owned()),
            ("tier".to_owned(), "front".to_owned()),
        ]);
        for (selector, expected) in [
            (json!({}), true),
            (json!({"matchLabels": {"app": "web"}}), true),
            (json!({"matchLabels": {"app": "db"}}), false),
            (
                json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["front", "back"]}]}),
                true,
            ),
            (
                json!({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["front"]}]}),
                false,
            ),
            (
                json!({"matchExpressions": [{"key": "zone", "operator": "DoesNotExist"}]}),
                true,
            ),
            (
                json!({"matchExpressions": [{"key": "zone", "operator": "Exists"}]}),
                false,
            ),
        ] {
            let parsed: LabelSelector = serde_json::from_value(selector.clone()).unwrap();
            assert_eq!(matches(&parsed, &labels), expected, "{selector}");
        }
    }

    #[test]
    fn selectors_are_written_sorted_as_labels_selector_string() {
        let selector = json!({
            "matchLabels": {"tier": "front", "app": "web"},
            "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["prod", "dev", "prod"]},
                {"key": "zone", "operator": "NotIn", "values": ["b", "a"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "gpu", "operator": "Exists"},
            ],
        });
        assert_eq!(
            selector_string(&selector),
            "app=web,!canary,env in (dev,prod),gpu,tier=front,zone notin (a,b)"
        );
        assert_eq!(selector_string(&json!({})), "");
        assert_eq!(selector_string(&serde_json::Value::Null), "");
        assert_eq!(set_string(&json!({"b": "2", "a": "1"})), "a=1,b=2");
        assert_eq!(set_string(&json!(null)), "");
    }
}
