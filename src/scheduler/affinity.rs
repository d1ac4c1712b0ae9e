//! NodeAffinity: `nodeSelector` and required node affinity as a filter, preferred node affinity
//! as a score (the summed weights of the preferred terms a node matches).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, Pod};

use super::filters::{Filter, NodeInfo};

/// The reason kube-scheduler gives.
pub const NODE_AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";

fn requirement_matches(req: &NodeSelectorRequirement, value: Option<&String>) -> bool {
    let values = req.values.as_deref().unwrap_or_default();
    let number = |v: Option<&String>| v.and_then(|v| v.parse::<i64>().ok());
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => {
            matches!((number(value), values.first().and_then(|v| v.parse::<i64>().ok())), (Some(a), Some(b)) if a > b)
        }
        "Lt" => {
            matches!((number(value), values.first().and_then(|v| v.parse::<i64>().ok())), (Some(a), Some(b)) if a < b)
        }
        _ => false,
    }
}

/// Whether a node matches one selector term (its expressions and fields all hold; an empty
/// term matches nothing, as in Kubernetes).
pub fn term_matches(term: &NodeSelectorTerm, node: &NodeInfo) -> bool {
    let empty = BTreeMap::new();
    let labels = node.node.metadata.labels.as_ref().unwrap_or(&empty);
    let expressions = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    let node_fields = if fields.is_empty() {
        BTreeMap::new()
    } else {
        BTreeMap::from([("metadata.name".to_owned(), node.name().to_owned())])
    };
    expressions
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key)))
        && fields
            .iter()
            .all(|r| requirement_matches(r, node_fields.get(&r.key)))
}

/// The NodeAffinity filter: `nodeSelector` labels and any one required term.
pub fn filter(pod: &Pod, node: &NodeInfo) -> Filter {
    let Some(spec) = pod.spec.as_ref() else {
        return Filter::Ok;
    };
    let empty = BTreeMap::new();
    let labels = node.node.metadata.labels.as_ref().unwrap_or(&empty);
    let selector_ok = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    let affinity_ok =
        required.is_none_or(|r| r.node_selector_terms.iter().any(|t| term_matches(t, node)));
    if selector_ok && affinity_ok {
        Filter::Ok
    } else {
        Filter::Unschedulable(vec![NODE_AFFINITY.into()])
    }
}

/// The NodeAffinity score before normalisation: the weights of the preferred terms that match.
pub fn score(pod: &Pod, node: &NodeInfo) -> i64 {
    pod.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .map(|terms| {
            terms
                .iter()
                .filter(|t| term_matches(&t.preference, node))
                .map(|t| i64::from(t.weight))
                .sum()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Node;
    use serde_json::json;

    use super::*;

    fn node(name: &str, labels: serde_json::Value) -> NodeInfo {
        let node: Node =
            serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap();
        NodeInfo::new(node, Vec::new())
    }

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap()
    }

    #[test]
    fn affinity() {
        let ssd = node("node-1", json!({"disk": "ssd", "zone": "a", "gen": "5"}));
        let hdd = node("node-2", json!({"disk": "hdd", "zone": "b"}));
        let selector = pod(json!({"containers": [], "nodeSelector": {"disk": "ssd"}}));
        assert_eq!(filter(&selector, &ssd), Filter::Ok);
        assert_eq!(
            filter(&selector, &hdd),
            Filter::Unschedulable(vec![NODE_AFFINITY.into()])
        );
        let required = pod(
            json!({"containers": [], "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b", "c"]}]},
                {"matchExpressions": [{"key": "gen", "operator": "Gt", "values": ["4"]}, {"key": "disk", "operator": "Exists"}]},
            ]}}}}),
        );
        assert_eq!(filter(&required, &ssd), Filter::Ok, "the second term holds");
        assert_eq!(filter(&required, &hdd), Filter::Ok, "the first term holds");
        let by_name = pod(
            json!({"containers": [], "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["node-1"]}]},
            ]}}}}),
        );
        assert!(matches!(filter(&by_name, &ssd), Filter::Unschedulable(_)));
        assert_eq!(filter(&by_name, &hdd), Filter::Ok);
        let preferred = pod(
            json!({"containers": [], "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 80, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}},
                {"weight": 20, "preference": {"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}},
            ]}}}),
        );
        assert_eq!((score(&preferred, &ssd), score(&preferred, &hdd)), (80, 20));
    }
}
