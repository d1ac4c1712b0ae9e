//! The scheduler end to end, through the real kubectl: inter-pod anti-affinity, topology
//! spread, a pending pod re-queued when a node changes, and the decisions it publishes at
//! `/orrery/v1/scheduling/<namespace>/<pod>`.

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::Cluster;

fn node(name: &str, zone: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n  labels: {{kubernetes.io/hostname: {name}, topology.kubernetes.io/zone: {zone}}}\nstatus:\n  allocatable: {{cpu: \"4\", memory: 8Gi, pods: \"110\"}}\n  capacity: {{cpu: \"4\", memory: 8Gi, pods: \"110\"}}\n"
    )
}

fn pod(name: &str, app: &str, spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: {app}}}}}\nspec:\n  containers: [{{name: c, image: busybox}}]\n{spec}\n---\n"
    )
}

const PREEMPTION: &str =
    "preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.";

#[test]
#[allow(clippy::disallowed_methods)] // a plain test thread, not a tokio worker
fn affinity_spread_requeue_and_decisions() {
    let c = Cluster::start();
    for (name, zone) in [("node-1", "a"), ("node-2", "a"), ("node-3", "b")] {
        c.ok_with(&["create", "-f", "-"], Some(&node(name, zone)));
    }
    let anti = "  affinity:\n    podAntiAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n      - {labelSelector: {matchLabels: {app: guard}}, topologyKey: kubernetes.io/hostname}";
    let spread = "  topologySpreadConstraints:\n  - {maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: zonal}}}";
    let mut manifest = String::new();
    for i in 1..=4 {
        manifest += &pod(&format!("guard-{i}"), "guard", anti);
    }
    for i in 1..=4 {
        manifest += &pod(&format!("zonal-{i}"), "zonal", spread);
    }
    manifest += &pod("picky", "picky", "  nodeSelector: {disk: ssd}");
    c.ok_with(&["create", "-f", "-"], Some(&manifest));

    // Where each pod went, and the PodScheduled message of those that did not.
    let placement = || -> BTreeMap<String, (String, String)> {
        c.ok(&[
            "get",
            "pods",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}|{.spec.nodeName}|{.status.conditions[?(@.type==\"PodScheduled\")].message}{\"\\n\"}{end}",
        ])
        .lines()
        .map(|l| {
            let mut parts = l.splitn(3, '|');
            let mut next = || parts.next().unwrap_or_default().to_owned();
            (next(), (next(), next()))
        })
        .collect()
    };
    let settled = |p: &BTreeMap<String, (String, String)>| {
        p.len() == 9
            && p.values()
                .all(|(node, message)| !node.is_empty() || !message.is_empty())
    };
    let mut now = placement();
    for _ in 0..100 {
        if settled(&now) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        now = placement();
    }
    assert!(settled(&now), "{now:#?}");

    // Required anti-affinity by host: three guards on three nodes, the fourth pending.
    let guards: Vec<&(String, String)> = (1..=4).map(|i| &now[&format!("guard-{i}")]).collect();
    let mut hosts: Vec<&str> = guards
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| !n.is_empty())
        .collect();
    hosts.sort();
    assert_eq!(hosts, ["node-1", "node-2", "node-3"], "{now:#?}");
    let pending = (1..=4)
        .map(|i| format!("guard-{i}"))
        .find(|g| now[g].0.is_empty())
        .unwrap();
    assert_eq!(
        now[&pending].1,
        format!(
            "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules. {PREEMPTION}"
        )
    );

    // Zone spread with maxSkew 1 over zones a and b: 2 and 2.
    let zone = |n: &str| if n == "node-3" { "b" } else { "a" };
    let mut zones: BTreeMap<&str, usize> = BTreeMap::new();
    for i in 1..=4 {
        *zones
            .entry(zone(&now[&format!("zonal-{i}")].0))
            .or_default() += 1;
    }
    assert_eq!(zones, BTreeMap::from([("a", 2), ("b", 2)]), "{now:#?}");

    // A nodeSelector nobody matches: pending, until a node gets the label (a node update moves
    // the pod back from the unschedulable pods).
    assert_eq!(
        now["picky"].1,
        format!(
            "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. {PREEMPTION}"
        )
    );
    c.ok(&["label", "node", "node-2", "disk=ssd"]);
    let mut picky = String::new();
    for _ in 0..100 {
        picky = c.ok(&["get", "pod", "picky", "-o", "jsonpath={.spec.nodeName}"]);
        if !picky.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(picky, "node-2");

    // The decisions, as the dashboard reads them.
    let decision = |name: &str| -> serde_json::Value {
        let raw = c.ok(&[
            "get",
            "--raw",
            &format!("/orrery/v1/scheduling/default/{name}"),
        ]);
        serde_json::from_str(&raw).unwrap()
    };
    let d = decision("picky");
    assert_eq!(d["pod"], "default/picky");
    assert_eq!(d["chosen"], "node-2");
    assert!(d["attempt"].as_u64().unwrap() >= 2, "{d}");
    assert_eq!(
        d["rejected"]["node-1"],
        serde_json::json!({"plugin": "NodeAffinity", "reasons": ["node(s) didn't match Pod's node affinity/selector"]})
    );
    let scores = d["scores"]["node-2"].as_object().unwrap();
    let weights: BTreeMap<&str, i64> = scores
        .iter()
        .map(|(plugin, s)| (plugin.as_str(), s["weight"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        weights,
        BTreeMap::from([
            ("ImageLocality", 1),
            ("InterPodAffinity", 2),
            ("NodeAffinity", 2),
            ("NodeResourcesBalancedAllocation", 1),
            ("NodeResourcesFit", 1),
            ("PodTopologySpread", 2),
            ("TaintToleration", 3),
        ])
    );
    let total: i64 = scores
        .values()
        .map(|s| s["normalized"].as_i64().unwrap() * s["weight"].as_i64().unwrap())
        .sum();
    assert_eq!(d["totals"]["node-2"], total);
    let d = decision(&pending);
    assert_eq!(d["chosen"], serde_json::Value::Null);
    assert_eq!(d["feasible"], 0);
    for n in ["node-1", "node-2", "node-3"] {
        assert_eq!(d["rejected"][n]["plugin"], "InterPodAffinity", "{d}");
    }
    assert_eq!(d["message"], now[&pending].1.as_str());
    let missing = c.fails(
        &["get", "--raw", "/orrery/v1/scheduling/default/nobody"],
        None,
    );
    assert!(missing.contains("NotFound"), "{missing}");

    // Deleting a guard frees its host: the pending guard goes there.
    let freed = now["guard-1"].0.clone();
    let freed = if pending == "guard-1" {
        c.ok(&["delete", "pod", "guard-2", "--grace-period=0", "--force"]);
        now["guard-2"].0.clone()
    } else {
        c.ok(&["delete", "pod", "guard-1", "--grace-period=0", "--force"]);
        freed
    };
    let mut placed = String::new();
    for _ in 0..100 {
        placed = c.ok(&["get", "pod", &pending, "-o", "jsonpath={.spec.nodeName}"]);
        if !placed.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(placed, freed);
}

/// Scheduling gates (the pod strategy's `SchedulingGated` condition, the scheduler's
/// `SchedulingGates` PreEnqueue plugin): a gated pod is never placed, kubectl shows it
/// `SchedulingGated`, a gate can be removed but not added, and removing the last one schedules
/// it.
#[test]
fn scheduling_gates_hold_a_pod_until_the_last_is_removed() {
    let c = Cluster::start();
    c.ok_with(&["create", "-f", "-"], Some(&node("node-1", "a")));
    let gates = "  schedulingGates: [{name: example.com/quota}, {name: example.com/arch}]";
    c.ok_with(&["create", "-f", "-"], Some(&pod("gated", "gated", gates)));
    let condition = c.ok(&[
        "get",
        "pod",
        "gated",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].reason}|{.status.conditions[?(@.type==\"PodScheduled\")].message}",
    ]);
    assert_eq!(
        condition,
        "SchedulingGated|Scheduling is blocked due to non-empty scheduling gates"
    );
    let table = c.ok(&["get", "pod", "gated", "--no-headers"]);
    assert!(table.contains("SchedulingGated"), "{table}");

    // An ungated pod created after it is placed; the gated one still is not.
    let placed = |name: &str| c.ok(&["get", "pod", name, "-o", "jsonpath={.spec.nodeName}"]);
    let mut bound = 0;
    let mut bind_one = |name: &str| {
        bound += 1;
        let name = format!("{name}-{bound}");
        c.ok_with(&["create", "-f", "-"], Some(&pod(&name, "free", "")));
        c.eventually(
            &["get", "pod", &name, "-o", "jsonpath={.spec.nodeName}"],
            20,
            |n| n == "node-1",
        );
    };
    bind_one("free");
    assert_eq!(placed("gated"), "");

    // Adding a gate is refused in upstream's words; removing one is not enough.
    let remove = |path: &str| {
        let patch = format!(r#"[{{"op":"remove","path":"{path}"}}]"#);
        c.ok(&["patch", "pod", "gated", "--type=json", "-p", &patch]);
    };
    let refused = c.fails(
        &[
            "patch",
            "pod",
            "gated",
            "--type=json",
            "-p",
            r#"[{"op":"add","path":"/spec/schedulingGates/-","value":{"name":"example.com/more"}}]"#,
        ],
        None,
    );
    assert!(
        refused.contains("spec.schedulingGates[2].name: Forbidden: only deletion is allowed, but found new scheduling gate 'example.com/more'"),
        "{refused}"
    );
    remove("/spec/schedulingGates/0");
    bind_one("free");
    assert_eq!(placed("gated"), "");

    // The last gate removed: scheduled.
    remove("/spec/schedulingGates");
    c.eventually(
        &["get", "pod", "gated", "-o", "jsonpath={.spec.nodeName}"],
        20,
        |n| n == "node-1",
    );
}
