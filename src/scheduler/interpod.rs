//! InterPodAffinity: pods placed near (affinity) or away from (anti-affinity) other pods, per
//! topology domain (`topologyKey`: a node, a zone, any node label).
//!
//! As a filter: the pod's required affinity terms must each find a matching pod in the node's
//! domain (unless no pod matches anywhere and the pod matches its own terms: the first of a
//! group), its required anti-affinity terms must find none, and no existing pod's required
//! anti-affinity may match the pod within that pod's domain (the symmetry). As a score: the
//! weights of the pod's preferred terms matched by pods in the node's domain (anti-affinity
//! subtracting), plus, symmetrically, existing pods' preferred terms matching this pod and their
//! required affinity terms at `hardPodAffinityWeight` 1; normalised min-max to 0..100.
//!
//! A term matches a pod in its `namespaces` (its own pod's namespace when neither those nor a
//! `namespaceSelector` are set) or in namespaces its `namespaceSelector` selects (`{}`: all),
//! whose labels satisfy its `labelSelector` (with `matchLabelKeys` and `mismatchLabelKeys`
//! folded in); a missing selector matches no pod.

use std::collections::{BTreeMap, HashMap, HashSet};

use k8s_openapi::api::core::v1::{Affinity, Pod, PodAffinityTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};

use super::filters::{Filter, NodeInfo};
use super::scores;
use crate::apimachinery::labels;

/// The plugin's name.
pub const NAME: &str = "InterPodAffinity";
/// A required affinity term finds no pod in the node's domain.
pub const AFFINITY_NOT_MATCH: &str = "node(s) didn't match pod affinity rules";
/// A required anti-affinity term finds a pod in the node's domain.
pub const ANTI_AFFINITY_NOT_MATCH: &str = "node(s) didn't match pod anti-affinity rules";
/// An existing pod's anti-affinity rejects the pod in the node's domain.
pub const EXISTING_ANTI_AFFINITY_NOT_MATCH: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";
/// The weight an existing pod's required affinity term gives a node when the pod matches it.
pub const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

/// Namespace labels by namespace name (for `namespaceSelector`).
pub type NamespaceLabels<'a> = &'a dyn Fn(&str) -> BTreeMap<String, String>;

/// A term, compiled for the pod that declares it.
#[derive(Clone, Debug)]
struct Term {
    namespaces: HashSet<String>,
    namespace_selector: Option<LabelSelector>,
    selector: Option<LabelSelector>,
    topology_key: String,
    weight: i64,
}

impl Term {
    fn new(owner: &ObjectMeta, t: &PodAffinityTerm, weight: i64) -> Self {
        let mut namespaces: HashSet<String> = t.namespaces.iter().flatten().cloned().collect();
        if namespaces.is_empty() && t.namespace_selector.is_none() {
            namespaces.insert(owner.namespace.clone().unwrap_or_default());
        }
        let mut selector = t.label_selector.clone();
        let empty = BTreeMap::new();
        let owner_labels = owner.labels.as_ref().unwrap_or(&empty);
        if let Some(s) = selector.as_mut() {
            for (keys, operator) in [
                (&t.match_label_keys, "In"),
                (&t.mismatch_label_keys, "NotIn"),
            ] {
                for key in keys.iter().flatten() {
                    if let Some(value) = owner_labels.get(key) {
                        s.match_expressions.get_or_insert_with(Vec::new).push(
                            LabelSelectorRequirement {
                                key: key.clone(),
                                operator: operator.into(),
                                values: Some(vec![value.clone()]),
                            },
                        );
                    }
                }
            }
        }
        Term {
            namespaces,
            namespace_selector: t.namespace_selector.clone(),
            selector,
            topology_key: t.topology_key.clone(),
            weight,
        }
    }

    fn matches(&self, pod: &ObjectMeta, ns_labels: NamespaceLabels<'_>) -> bool {
        let namespace = pod.namespace.as_deref().unwrap_or_default();
        let in_namespace = self.namespaces.contains(namespace)
            || self
                .namespace_selector
                .as_ref()
                .is_some_and(|s| labels::is_empty(s) || labels::matches(s, &ns_labels(namespace)));
        let empty = BTreeMap::new();
        in_namespace
            && self
                .selector
                .as_ref()
                .is_some_and(|s| labels::matches(s, pod.labels.as_ref().unwrap_or(&empty)))
    }
}

/// A pod's terms: required affinity, required anti-affinity, preferred affinity, preferred
/// anti-affinity.
#[derive(Default)]
struct Terms {
    affinity: Vec<Term>,
    anti: Vec<Term>,
    preferred: Vec<Term>,
    preferred_anti: Vec<Term>,
}

fn terms(pod: &ObjectMeta, affinity: Option<&Affinity>) -> Terms {
    let Some(affinity) = affinity else {
        return Terms::default();
    };
    let required = |terms: Option<&Vec<PodAffinityTerm>>| -> Vec<Term> {
        terms
            .into_iter()
            .flatten()
            .map(|t| Term::new(pod, t, 1))
            .collect()
    };
    let a = affinity.pod_affinity.as_ref();
    let anti = affinity.pod_anti_affinity.as_ref();
    Terms {
        affinity: required(a.and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        })),
        anti: required(anti.and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        })),
        preferred: a
            .and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .into_iter()
            .flatten()
            .map(|w| Term::new(pod, &w.pod_affinity_term, i64::from(w.weight)))
            .collect(),
        preferred_anti: anti
            .and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .into_iter()
            .flatten()
            .map(|w| Term::new(pod, &w.pod_affinity_term, i64::from(w.weight)))
            .collect(),
    }
}

/// `spec.affinity` of a pod.
pub fn affinity_of(pod: &Pod) -> Option<&Affinity> {
    pod.spec.as_ref().and_then(|s| s.affinity.as_ref())
}

/// Whether a pod declares any pod affinity or anti-affinity (the cache counts these per node).
pub fn has_affinity(affinity: Option<&Affinity>) -> bool {
    affinity.is_some_and(|a| a.pod_affinity.is_some() || a.pod_anti_affinity.is_some())
}

type Pair = (String, String);

fn pair(node: &NodeInfo, key: &str) -> Option<Pair> {
    node.node
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(key))
        .map(|v| (key.to_owned(), v.clone()))
}

/// What the filter needs, computed once per pod over all nodes (upstream's PreFilter).
pub struct FilterState {
    affinity: Vec<Term>,
    anti: Vec<Term>,
    affinity_counts: HashMap<Pair, i64>,
    anti_counts: HashMap<Pair, i64>,
    existing_anti: HashMap<Pair, i64>,
    matches_own_terms: bool,
}

impl FilterState {
    /// Counts matching pods per domain; `None` when there is nothing to check (the pod has no
    /// required terms and no existing pod's anti-affinity matches it).
    pub fn new(pod: &Pod, nodes: &[NodeInfo], ns_labels: NamespaceLabels<'_>) -> Option<Self> {
        let own = terms(&pod.metadata, affinity_of(pod));
        let mut existing_anti = HashMap::new();
        for node in nodes.iter().filter(|n| n.pods_with_affinity > 0) {
            for other in node
                .pods
                .iter()
                .filter(|p| has_affinity(p.affinity.as_deref()))
            {
                for term in terms(&other.metadata, other.affinity.as_deref()).anti {
                    if term.matches(&pod.metadata, ns_labels)
                        && let Some(p) = pair(node, &term.topology_key)
                    {
                        *existing_anti.entry(p).or_insert(0) += 1;
                    }
                }
            }
        }
        if own.affinity.is_empty() && own.anti.is_empty() && existing_anti.is_empty() {
            return None;
        }
        let mut affinity_counts = HashMap::new();
        let mut anti_counts = HashMap::new();
        if !own.affinity.is_empty() || !own.anti.is_empty() {
            for node in nodes {
                for other in &node.pods {
                    for (list, counts) in [
                        (&own.affinity, &mut affinity_counts),
                        (&own.anti, &mut anti_counts),
                    ] {
                        for term in list {
                            if term.matches(&other.metadata, ns_labels)
                                && let Some(p) = pair(node, &term.topology_key)
                            {
                                *counts.entry(p).or_insert(0) += 1;
                            }
                        }
                    }
                }
            }
        }
        let matches_own_terms = own
            .affinity
            .iter()
            .all(|t| t.matches(&pod.metadata, ns_labels));
        Some(FilterState {
            affinity: own.affinity,
            anti: own.anti,
            affinity_counts,
            anti_counts,
            existing_anti,
            matches_own_terms,
        })
    }

    /// The filter, in upstream's order: affinity, anti-affinity, existing pods' anti-affinity.
    pub fn filter(&self, node: &NodeInfo) -> Filter {
        let no = |r: &str| Filter::Unschedulable(vec![r.to_owned()]);
        let mut pods_exist = true;
        for term in &self.affinity {
            match pair(node, &term.topology_key) {
                None => return no(AFFINITY_NOT_MATCH),
                Some(p) if self.affinity_counts.get(&p).copied().unwrap_or(0) <= 0 => {
                    pods_exist = false;
                }
                Some(_) => {}
            }
        }
        // The first pod of a group that likes itself may go anywhere with the topology keys.
        let first_of_group = self.affinity_counts.is_empty() && self.matches_own_terms;
        if !pods_exist && !first_of_group {
            return no(AFFINITY_NOT_MATCH);
        }
        if self.anti.iter().any(|t| {
            pair(node, &t.topology_key)
                .is_some_and(|p| self.anti_counts.get(&p).copied().unwrap_or(0) > 0)
        }) {
            return no(ANTI_AFFINITY_NOT_MATCH);
        }
        let labels = node.node.metadata.labels.clone().unwrap_or_default();
        if labels
            .into_iter()
            .any(|p| self.existing_anti.get(&p).copied().unwrap_or(0) > 0)
        {
            return no(EXISTING_ANTI_AFFINITY_NOT_MATCH);
        }
        Filter::Ok
    }
}

/// What the score needs: per domain, the summed weights (upstream's PreScore).
pub struct ScoreState {
    topology_score: HashMap<Pair, i64>,
}

impl ScoreState {
    /// `None` when nothing scores (no preferred terms on the pod and none on existing pods that
    /// match it).
    pub fn new(pod: &Pod, nodes: &[NodeInfo], ns_labels: NamespaceLabels<'_>) -> Option<Self> {
        let own = terms(&pod.metadata, affinity_of(pod));
        let has_constraints = !own.preferred.is_empty() || !own.preferred_anti.is_empty();
        let mut topology_score: HashMap<Pair, i64> = HashMap::new();
        let mut add = |term: &Term, target: &ObjectMeta, node: &NodeInfo, weight: i64| {
            if term.matches(target, ns_labels)
                && let Some(p) = pair(node, &term.topology_key)
            {
                *topology_score.entry(p).or_insert(0) += weight;
            }
        };
        for node in nodes {
            if !has_constraints && node.pods_with_affinity == 0 {
                continue;
            }
            for existing in &node.pods {
                let theirs = if has_affinity(existing.affinity.as_deref()) {
                    terms(&existing.metadata, existing.affinity.as_deref())
                } else if has_constraints {
                    Terms::default()
                } else {
                    continue;
                };
                for t in &own.preferred {
                    add(t, &existing.metadata, node, t.weight);
                }
                for t in &own.preferred_anti {
                    add(t, &existing.metadata, node, -t.weight);
                }
                for t in &theirs.affinity {
                    add(t, &pod.metadata, node, HARD_POD_AFFINITY_WEIGHT);
                }
                for t in &theirs.preferred {
                    add(t, &pod.metadata, node, t.weight);
                }
                for t in &theirs.preferred_anti {
                    add(t, &pod.metadata, node, -t.weight);
                }
            }
        }
        if topology_score.is_empty() {
            return None;
        }
        Some(ScoreState { topology_score })
    }

    /// The raw score: the weights summed over the node's domains.
    pub fn score(&self, node: &NodeInfo) -> i64 {
        node.node
            .metadata
            .labels
            .iter()
            .flatten()
            .filter_map(|(k, v)| self.topology_score.get(&(k.clone(), v.clone())))
            .sum()
    }
}

/// Min-max normalisation to 0..100 (all 0 when every node scores the same).
pub fn normalize(scores: &mut [i64]) {
    let min = scores.iter().copied().min().unwrap_or(0);
    let max = scores.iter().copied().max().unwrap_or(0);
    for s in scores.iter_mut() {
        *s = if max > min {
            (scores::MAX_SCORE as f64 * (*s - min) as f64 / (max - min) as f64) as i64
        } else {
            0
        };
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Node;
    use serde_json::json;

    use super::*;

    fn node(name: &str, zone: &str, pods: Vec<Pod>) -> NodeInfo {
        let node: Node = serde_json::from_value(json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "zone": zone}}})).unwrap();
        NodeInfo::new(node, pods)
    }

    fn pod(name: &str, app: &str, affinity: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": name, "uid": name, "namespace": "default", "labels": {"app": app}}, "spec": {"containers": [{"name": "c"}], "affinity": affinity}})).unwrap()
    }

    fn term(app: &str, key: &str) -> serde_json::Value {
        json!({"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key})
    }

    #[test]
    fn filter() {
        let none = |_: &str| BTreeMap::new();
        let db = pod("db-1", "db", json!(null));
        let guard = pod(
            "guard",
            "guard",
            json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("web", "zone")]}}),
        );
        let nodes = vec![
            node("node-1", "a", vec![db]),
            node("node-2", "a", vec![]),
            node("node-3", "b", vec![guard]),
            node("node-4", "c", vec![]),
        ];
        let ok = "ok";
        let verdicts = |p: &Pod| -> Vec<String> {
            let state = FilterState::new(p, &nodes, &none);
            nodes
                .iter()
                .map(|n| match state.as_ref().map(|s| s.filter(n)) {
                    None | Some(Filter::Ok) => ok.to_owned(),
                    Some(Filter::Unschedulable(r)) => r[0].clone(),
                })
                .collect()
        };
        for (name, p, expected) in [
            (
                "near db, by zone",
                pod(
                    "w",
                    "api",
                    json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("db", "zone")]}}),
                ),
                [ok, ok, AFFINITY_NOT_MATCH, AFFINITY_NOT_MATCH],
            ),
            (
                "away from db, by host",
                pod(
                    "w",
                    "api",
                    json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("db", "kubernetes.io/hostname")]}}),
                ),
                [ANTI_AFFINITY_NOT_MATCH, ok, ok, ok],
            ),
            (
                "a web pod is kept out of the guard's zone",
                pod("w", "web", json!(null)),
                [ok, ok, EXISTING_ANTI_AFFINITY_NOT_MATCH, ok],
            ),
            (
                "the first of a group that likes itself goes anywhere",
                pod(
                    "c-1",
                    "cache",
                    json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("cache", "zone")]}}),
                ),
                [ok, ok, ok, ok],
            ),
            (
                "affinity to pods that do not exist fails everywhere",
                pod(
                    "x",
                    "api",
                    json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("nothing", "zone")]}}),
                ),
                [AFFINITY_NOT_MATCH; 4],
            ),
            (
                "a missing topology key fails the affinity",
                pod(
                    "w",
                    "api",
                    json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("db", "rack")]}}),
                ),
                [AFFINITY_NOT_MATCH; 4],
            ),
        ] {
            assert_eq!(verdicts(&p), expected, "{name}");
        }
    }

    #[test]
    fn score() {
        let none = |_: &str| BTreeMap::new();
        let likes_web = pod(
            "fan",
            "fan",
            json!({"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 10, "podAffinityTerm": term("web", "zone")}]}}),
        );
        let nodes = vec![
            node("node-1", "a", vec![pod("db", "db", json!(null))]),
            node("node-2", "a", vec![]),
            node("node-3", "b", vec![likes_web]),
            node("node-4", "c", vec![pod("cache", "cache", json!(null))]),
        ];
        for (name, p, raw, normalized) in [
            (
                "preferred affinity to db (50) and anti-affinity to cache (20), by zone",
                pod(
                    "w",
                    "api",
                    json!({
                        "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 50, "podAffinityTerm": term("db", "zone")}]},
                        "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 20, "podAffinityTerm": term("cache", "zone")}]},
                    }),
                ),
                [50, 50, 0, -20],
                [100, 100, 28, 0],
            ),
            (
                "symmetry: the existing pod's preferred term draws a web pod to its zone",
                pod("w", "web", json!(null)),
                [0, 0, 10, 0],
                [0, 0, 100, 0],
            ),
        ] {
            let state = ScoreState::new(&p, &nodes, &none).expect(name);
            let mut scores: Vec<i64> = nodes.iter().map(|n| state.score(n)).collect();
            assert_eq!(scores, raw, "{name}");
            normalize(&mut scores);
            assert_eq!(scores, normalized, "{name}");
        }
        assert!(
            ScoreState::new(&pod("w", "api", json!(null)), &nodes, &none).is_none(),
            "nothing to score"
        );
    }
}
