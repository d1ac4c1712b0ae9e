//! PodTopologySpread: pods spread over topology domains (nodes, zones, any node label) by their
//! `topologySpreadConstraints`. As a filter, a `DoNotSchedule` constraint rejects a node when
//! placing the pod there would make its domain exceed the least populated domain by more than
//! `maxSkew`; as a score, `ScheduleAnyway` constraints prefer domains with fewer matching pods.
//!
//! As upstream: pods count when they are in the pod's namespace, match the constraint's
//! `labelSelector` (plus `matchLabelKeys`) and are not terminating; a node counts toward domains
//! when it has every constraint's topology key and passes `nodeAffinityPolicy` (default
//! `Honor`: the pod's nodeSelector and required node affinity) and `nodeTaintsPolicy` (default
//! `Ignore`); fewer domains than `minDomains` make the global minimum 0. A pod without
//! constraints gets the system defaults (`kubernetes.io/hostname` maxSkew 3 and
//! `topology.kubernetes.io/zone` maxSkew 5, both `ScheduleAnyway`) over the pods selected by
//! the Services, ReplicationControllers, ReplicaSets and StatefulSets that select it, if any
//! do.

use std::collections::{BTreeMap, HashMap, HashSet};

use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};

use super::filters::{self, Filter, NodeInfo};
use super::{affinity, scores};
use crate::apimachinery::labels;

/// The plugin's name.
pub const NAME: &str = "PodTopologySpread";
/// A node would break a constraint's skew.
pub const CONSTRAINTS_NOT_MATCH: &str = "node(s) didn't match pod topology spread constraints";
/// A node lacks a constraint's topology key.
pub const MISSING_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";
/// The node name label.
pub const HOSTNAME: &str = "kubernetes.io/hostname";
/// The zone label.
pub const ZONE: &str = "topology.kubernetes.io/zone";

/// One constraint, defaults applied.
#[derive(Clone, Debug, PartialEq)]
pub struct Constraint {
    /// `maxSkew`.
    pub max_skew: i64,
    /// `topologyKey`.
    pub topology_key: String,
    /// `whenUnsatisfiable: DoNotSchedule` (a filter) rather than `ScheduleAnyway` (a score).
    pub hard: bool,
    /// `labelSelector` with `matchLabelKeys` folded in; `None` matches no pod.
    pub selector: Option<LabelSelector>,
    /// `minDomains` (1 unless set on a `DoNotSchedule` constraint).
    pub min_domains: i64,
    /// `nodeAffinityPolicy: Honor` (the default).
    pub honor_affinity: bool,
    /// `nodeTaintsPolicy: Honor` (default `Ignore`).
    pub honor_taints: bool,
}

impl Constraint {
    fn counts_pod(&self, namespace: &str, pod: &ObjectMeta) -> bool {
        pod.namespace.as_deref().unwrap_or_default() == namespace
            && pod.deletion_timestamp.is_none()
            && self.selector.as_ref().is_some_and(|s| {
                labels::matches(s, pod.labels.as_ref().unwrap_or(&BTreeMap::new()))
            })
    }

    fn matching_on(&self, namespace: &str, node: &NodeInfo) -> i64 {
        node.pods
            .iter()
            .filter(|p| self.counts_pod(namespace, &p.metadata))
            .count() as i64
    }

    fn includes(&self, pod: &Pod, node: &NodeInfo) -> bool {
        (!self.honor_affinity || affinity::filter(pod, node) == Filter::Ok)
            && (!self.honor_taints || filters::taint_toleration(pod, node) == Filter::Ok)
    }
}

fn label<'a>(node: &'a NodeInfo, key: &str) -> Option<&'a String> {
    node.node.metadata.labels.as_ref().and_then(|l| l.get(key))
}

/// The selector kube-scheduler's system defaults use: the conjunction of the selectors of the
/// Services, ReplicationControllers, ReplicaSets and StatefulSets in the pod's namespace that
/// select it (empty if none).
pub fn default_selector(
    pod: &Pod,
    services: &[&Service],
    replication_controllers: &[&ReplicationController],
    replica_sets: &[&ReplicaSet],
    stateful_sets: &[&StatefulSet],
) -> LabelSelector {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let empty = BTreeMap::new();
    let pod_labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    let mut selector = LabelSelector::default();
    let add_labels = |m: &BTreeMap<String, String>, selector: &mut LabelSelector| {
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .extend(m.clone());
    };
    // Services' and RCs' selectors are equality maps.
    let maps = services
        .iter()
        .filter(|s| s.metadata.namespace.as_deref().unwrap_or_default() == namespace)
        .filter_map(|s| s.spec.as_ref().and_then(|s| s.selector.as_ref()))
        .chain(
            replication_controllers
                .iter()
                .filter(|r| r.metadata.namespace.as_deref().unwrap_or_default() == namespace)
                .filter_map(|r| r.spec.as_ref().and_then(|s| s.selector.as_ref())),
        );
    for m in maps {
        if !m.is_empty() && m.iter().all(|(k, v)| pod_labels.get(k) == Some(v)) {
            add_labels(m, &mut selector);
        }
    }
    let selectors = replica_sets
        .iter()
        .filter(|r| r.metadata.namespace.as_deref().unwrap_or_default() == namespace)
        .filter_map(|r| r.spec.as_ref().map(|s| &s.selector))
        .chain(
            stateful_sets
                .iter()
                .filter(|s| s.metadata.namespace.as_deref().unwrap_or_default() == namespace)
                .filter_map(|s| s.spec.as_ref().map(|s| &s.selector)),
        );
    for s in selectors {
        if labels::is_empty(s) || !labels::matches(s, pod_labels) {
            continue;
        }
        if let Some(m) = &s.match_labels {
            add_labels(m, &mut selector);
        }
        if let Some(e) = &s.match_expressions {
            selector
                .match_expressions
                .get_or_insert_with(Vec::new)
                .extend(e.clone());
        }
    }
    selector
}

/// The pod's constraints, and whether they are the system defaults (built over
/// `default_selector` when the pod has none; none at all if that selector is empty).
pub fn constraints(pod: &Pod, default_selector: &LabelSelector) -> (Vec<Constraint>, bool) {
    let empty = BTreeMap::new();
    let pod_labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    let own = pod
        .spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.as_deref())
        .unwrap_or_default();
    if own.is_empty() {
        if labels::is_empty(default_selector) {
            return (Vec::new(), true);
        }
        let soft = |key: &str, max_skew| Constraint {
            max_skew,
            topology_key: key.to_owned(),
            hard: false,
            selector: Some(default_selector.clone()),
            min_domains: 1,
            honor_affinity: true,
            honor_taints: false,
        };
        return (vec![soft(HOSTNAME, 3), soft(ZONE, 5)], true);
    }
    let list = own
        .iter()
        .map(|c| {
            let hard = c.when_unsatisfiable == "DoNotSchedule";
            let mut selector = c.label_selector.clone();
            if let Some(s) = selector.as_mut() {
                for key in c.match_label_keys.iter().flatten() {
                    if let Some(value) = pod_labels.get(key) {
                        s.match_expressions.get_or_insert_with(Vec::new).push(
                            LabelSelectorRequirement {
                                key: key.clone(),
                                operator: "In".into(),
                                values: Some(vec![value.clone()]),
                            },
                        );
                    }
                }
            }
            Constraint {
                max_skew: i64::from(c.max_skew),
                topology_key: c.topology_key.clone(),
                hard,
                selector,
                min_domains: if hard {
                    i64::from(c.min_domains.unwrap_or(1))
                } else {
                    1
                },
                honor_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
                honor_taints: c.node_taints_policy.as_deref() == Some("Honor"),
            }
        })
        .collect();
    (list, false)
}

/// What the filter needs, computed once per pod over all nodes (upstream's PreFilter).
pub struct FilterState {
    hard: Vec<Constraint>,
    /// Per hard constraint: matching pods per domain (topology value).
    counts: Vec<HashMap<String, i64>>,
    self_match: Vec<bool>,
}

impl FilterState {
    /// Counts, per `DoNotSchedule` constraint, the matching pods in every domain; `None` if the
    /// pod has no such constraint.
    pub fn new(pod: &Pod, constraints: &[Constraint], nodes: &[NodeInfo]) -> Option<Self> {
        let hard: Vec<Constraint> = constraints.iter().filter(|c| c.hard).cloned().collect();
        if hard.is_empty() {
            return None;
        }
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let mut counts = vec![HashMap::new(); hard.len()];
        for node in nodes {
            if hard.iter().any(|c| label(node, &c.topology_key).is_none()) {
                continue;
            }
            for (i, c) in hard.iter().enumerate() {
                if !c.includes(pod, node) {
                    continue;
                }
                let value = label(node, &c.topology_key).cloned().unwrap_or_default();
                *counts[i].entry(value).or_insert(0) += c.matching_on(namespace, node);
            }
        }
        let empty = BTreeMap::new();
        let pod_labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
        let self_match = hard
            .iter()
            .map(|c| {
                c.selector
                    .as_ref()
                    .is_some_and(|s| labels::matches(s, pod_labels))
            })
            .collect();
        Some(FilterState {
            hard,
            counts,
            self_match,
        })
    }

    /// The filter: for every hard constraint, the node's domain after placing the pod may exceed
    /// the least populated domain by at most `maxSkew`.
    pub fn filter(&self, node: &NodeInfo) -> Filter {
        for (i, c) in self.hard.iter().enumerate() {
            let Some(value) = label(node, &c.topology_key) else {
                return Filter::Unschedulable(vec![MISSING_LABEL.into()]);
            };
            let domains = &self.counts[i];
            let min = if (domains.len() as i64) < c.min_domains {
                0
            } else {
                domains.values().copied().min().unwrap_or(0)
            };
            let here = domains.get(value).copied().unwrap_or(0);
            let skew = here + i64::from(self.self_match[i]) - min;
            if skew > c.max_skew {
                return Filter::Unschedulable(vec![CONSTRAINTS_NOT_MATCH.into()]);
            }
        }
        Filter::Ok
    }
}

/// What the score needs, computed once per pod over the feasible and all nodes (PreScore).
pub struct ScoreState {
    soft: Vec<Constraint>,
    namespace: String,
    ignored: HashSet<String>,
    pair_counts: Vec<HashMap<String, i64>>,
    weights: Vec<f64>,
}

impl ScoreState {
    /// `None` when the pod has no `ScheduleAnyway` constraint (every node then scores 0).
    pub fn new(
        pod: &Pod,
        constraints: &[Constraint],
        system_defaulted: bool,
        feasible: &[&NodeInfo],
        all: &[NodeInfo],
    ) -> Option<Self> {
        let soft: Vec<Constraint> = constraints.iter().filter(|c| !c.hard).cloned().collect();
        if soft.is_empty() {
            return None;
        }
        // System defaults do not require nodes to carry every key (nodes without zones are
        // common); a pod's own constraints do.
        let require_all = !system_defaulted;
        let has_all = |n: &NodeInfo| soft.iter().all(|c| label(n, &c.topology_key).is_some());
        let mut ignored = HashSet::new();
        let mut pair_counts = vec![HashMap::new(); soft.len()];
        let mut hosts = 0usize;
        for node in feasible {
            if require_all && !has_all(node) {
                ignored.insert(node.name().to_owned());
                continue;
            }
            hosts += 1;
            for (i, c) in soft.iter().enumerate() {
                if c.topology_key == HOSTNAME {
                    continue;
                }
                if let Some(value) = label(node, &c.topology_key) {
                    pair_counts[i].entry(value.clone()).or_insert(0);
                }
            }
        }
        let weights = soft
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let size = if c.topology_key == HOSTNAME {
                    hosts
                } else {
                    pair_counts[i].len()
                };
                ((size + 2) as f64).ln()
            })
            .collect();
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        for node in all {
            if require_all && !has_all(node) {
                continue;
            }
            for (i, c) in soft.iter().enumerate() {
                if c.topology_key == HOSTNAME || !c.includes(pod, node) {
                    continue;
                }
                let Some(value) = label(node, &c.topology_key) else {
                    continue;
                };
                if let Some(count) = pair_counts[i].get_mut(value) {
                    *count += c.matching_on(&namespace, node);
                }
            }
        }
        Some(ScoreState {
            soft,
            namespace,
            ignored,
            pair_counts,
            weights,
        })
    }

    /// The raw score: per constraint, matching pods in the node's domain times the domain
    /// weight `ln(domains + 2)`, plus `maxSkew - 1` (more is worse; normalising turns it).
    pub fn score(&self, node: &NodeInfo) -> i64 {
        if self.ignored.contains(node.name()) {
            return 0;
        }
        let mut score = 0.0;
        for (i, c) in self.soft.iter().enumerate() {
            let Some(value) = label(node, &c.topology_key) else {
                continue;
            };
            let count = if c.topology_key == HOSTNAME {
                c.matching_on(&self.namespace, node)
            } else {
                self.pair_counts[i].get(value).copied().unwrap_or(0)
            };
            score += count as f64 * self.weights[i] + (c.max_skew - 1) as f64;
        }
        score.round() as i64
    }

    /// Normalises raw scores: `100 * (max + min - s) / max` (100 for all if max is 0), 0 for
    /// ignored nodes.
    pub fn normalize(&self, names: &[&str], scores: &mut [i64]) {
        let counted = || {
            names
                .iter()
                .zip(scores.iter())
                .filter(|(n, _)| !self.ignored.contains(**n))
                .map(|(_, s)| *s)
        };
        let min = counted().min().unwrap_or(0);
        let max = counted().max().unwrap_or(0);
        for (name, s) in names.iter().zip(scores.iter_mut()) {
            *s = if self.ignored.contains(*name) {
                0
            } else if max == 0 {
                scores::MAX_SCORE
            } else {
                scores::MAX_SCORE * (max + min - *s) / max
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Node;
    use serde_json::{Value, json};

    use super::*;

    fn node(name: &str, zone: Option<&str>, pods: &[&str]) -> NodeInfo {
        let mut labels = json!({HOSTNAME: name});
        if let Some(zone) = zone {
            labels[ZONE] = json!(zone);
        }
        let node: Node = serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}})).unwrap();
        let pods = pods
            .iter()
            .enumerate()
            .map(|(i, app)| {
                serde_json::from_value(json!({"metadata": {"name": format!("{name}-{i}"), "namespace": "default", "uid": format!("{name}-{i}"), "labels": {"app": app}}, "spec": {"containers": [{"name": "c"}]}})).unwrap()
            })
            .collect();
        NodeInfo::new(node, pods)
    }

    fn pod(constraints: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "new", "namespace": "default", "labels": {"app": "web"}}, "spec": {"containers": [{"name": "c"}], "topologySpreadConstraints": constraints}})).unwrap()
    }

    fn zone_constraint(max_skew: i32, when: &str) -> serde_json::Value {
        json!([{"maxSkew": max_skew, "topologyKey": ZONE, "whenUnsatisfiable": when, "labelSelector": {"matchLabels": {"app": "web"}}}])
    }

    fn verdicts(pod: &Pod, nodes: &[NodeInfo]) -> Vec<&'static str> {
        let (constraints, _) = constraints(pod, &LabelSelector::default());
        let state = FilterState::new(pod, &constraints, nodes);
        nodes
            .iter()
            .map(|n| match state.as_ref().map(|s| s.filter(n)) {
                None | Some(Filter::Ok) => "ok",
                Some(Filter::Unschedulable(r)) if r[0] == MISSING_LABEL => "missing",
                Some(Filter::Unschedulable(_)) => "skew",
            })
            .collect()
    }

    #[test]
    fn filter() {
        // Zone a has 2 web pods, zones b and c 1 each (node-4 has no zone).
        let nodes = vec![
            node("node-1", Some("a"), &["web", "web"]),
            node("node-2", Some("b"), &["web", "db"]),
            node("node-3", Some("c"), &["web"]),
            node("node-4", None, &[]),
        ];
        let with_min_domains = json!([{"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule", "minDomains": 4, "labelSelector": {"matchLabels": {"app": "web"}}}]);
        let honoring_selector = json!([{"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "web"}}}]);
        let mut selective = pod(honoring_selector);
        selective.spec.as_mut().unwrap().node_selector =
            Some(BTreeMap::from([(HOSTNAME.to_owned(), "node-1".to_owned())]));
        for (name, pod, expected) in [
            (
                "maxSkew 1: not the fullest zone",
                pod(zone_constraint(1, "DoNotSchedule")),
                vec!["skew", "ok", "ok", "missing"],
            ),
            (
                "maxSkew 2: every zone",
                pod(zone_constraint(2, "DoNotSchedule")),
                vec!["ok", "ok", "ok", "missing"],
            ),
            (
                "ScheduleAnyway never filters",
                pod(zone_constraint(1, "ScheduleAnyway")),
                vec!["ok", "ok", "ok", "ok"],
            ),
            (
                "minDomains above the domains: the minimum is 0",
                pod(with_min_domains),
                vec!["skew", "skew", "skew", "missing"],
            ),
            (
                "nodeAffinityPolicy Honor: only node-1's zone counts, so it is the minimum",
                selective,
                vec!["ok", "ok", "ok", "missing"],
            ),
        ] {
            assert_eq!(verdicts(&pod, &nodes), expected, "{name}");
        }
    }

    #[test]
    fn score() {
        let nodes = vec![
            node("node-1", Some("a"), &["web", "web"]),
            node("node-2", Some("a"), &[]),
            node("node-3", Some("b"), &["web"]),
            node("node-4", None, &[]),
        ];
        let all: Vec<&NodeInfo> = nodes.iter().collect();
        let names: Vec<&str> = nodes.iter().map(NodeInfo::name).collect();
        let run = |pod: &Pod, defaults: &LabelSelector| {
            let (constraints, system) = constraints(pod, defaults);
            let state = ScoreState::new(pod, &constraints, system, &all, &nodes)?;
            let mut scores: Vec<i64> = nodes.iter().map(|n| state.score(n)).collect();
            let raw = scores.clone();
            state.normalize(&names, &mut scores);
            Some((raw, scores))
        };
        // Zone a has 2 matching pods, b 1; 2 zones, so the weight is ln(4).
        let (raw, normalized) = run(
            &pod(zone_constraint(1, "ScheduleAnyway")),
            &LabelSelector::default(),
        )
        .unwrap();
        let w = 4f64.ln();
        assert_eq!(
            raw,
            [
                (2.0 * w).round() as i64,
                (2.0 * w).round() as i64,
                w.round() as i64,
                0
            ]
        );
        assert_eq!(
            normalized,
            // 100 * (max + min - s) / max with max 3 and min 1.
            [100 / 3, 100 / 3, 100, 0]
        );
        // A bare pod selected by nothing: no constraints, no scores.
        let bare: Pod = serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "default", "labels": {"app": "web"}}, "spec": {"containers": [{"name": "c"}]}})).unwrap();
        assert!(run(&bare, &LabelSelector::default()).is_none());
        // Selected by a Service: the system defaults spread by host (maxSkew 3) and zone (5);
        // nodes without a zone are not ignored.
        let service: Service = serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {"selector": {"app": "web"}}})).unwrap();
        let selector = default_selector(&bare, &[&service], &[], &[], &[]);
        assert_eq!(
            selector.match_labels,
            Some(BTreeMap::from([("app".into(), "web".into())]))
        );
        // A ReplicationController's equality selector counts as a Service's does; one of
        // another namespace or that does not select the pod does not.
        let rc = |namespace: &str, selector: Value| -> ReplicationController {
            serde_json::from_value(json!({"metadata": {"name": "rc", "namespace": namespace}, "spec": {"selector": selector}})).unwrap()
        };
        let (mine, theirs, other) = (
            rc("default", json!({"app": "web"})),
            rc("elsewhere", json!({"tier": "x"})),
            rc("default", json!({"app": "db"})),
        );
        assert_eq!(
            default_selector(&bare, &[], &[&mine, &theirs, &other], &[], &[]).match_labels,
            Some(BTreeMap::from([("app".into(), "web".into())]))
        );
        assert!(labels::is_empty(&default_selector(
            &bare,
            &[],
            &[&theirs, &other],
            &[],
            &[]
        )));
        let (raw, normalized) = run(&bare, &selector).unwrap();
        let (host_w, zone_w) = (6f64.ln(), 4f64.ln());
        let expected_raw = [
            (2.0 * host_w + 2.0 + 2.0 * zone_w + 4.0).round() as i64,
            (2.0 + 2.0 * zone_w + 4.0).round() as i64,
            (host_w + 2.0 + zone_w + 4.0).round() as i64,
            2,
        ];
        assert_eq!(raw, expected_raw);
        assert_eq!(normalized[3], 100, "the emptiest node scores best");
        assert!(normalized[0] < normalized[1] && normalized[1] < normalized[2] + 1);
    }
}
