//! The explanation table against the sources: every verb the code emits has its own sentence.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::*;

/// One hop of each kind the components emit, as they emit it (from, to, verb, kind, detail).
const HOPS: &[(&str, &str, &str, &str, &str)] = &[
    // Clients' requests (the verb is the request's method, or LIST/WATCH for a collection GET).
    ("kubectl", "apiserver", "POST", "Deployment", ""),
    ("kubectl", "apiserver", "GET", "Pod", ""),
    ("kubectl", "apiserver", "LIST", "Pod", ""),
    ("kubectl", "apiserver", "WATCH", "Pod", ""),
    ("kubectl", "apiserver", "PUT", "ConfigMap", ""),
    ("dashboard", "apiserver", "PATCH", "Deployment", ""),
    ("kubectl", "apiserver", "DELETE", "Pod", ""),
    ("kubectl", "apiserver", "FORBIDDEN", "Secret", ""),
    ("kubelet/node-1", "apiserver", "PUT", "Lease", ""),
    ("kubelet/node-1", "apiserver", "POST", "Node", ""),
    ("kubelet/node-1", "apiserver", "PATCH", "Node", ""),
    ("kubelet/node-1", "apiserver", "PATCH", "Pod", ""),
    ("kubelet/node-1", "apiserver", "WATCH", "Pod", ""),
    ("kubelet/node-1", "apiserver", "GET", "Secret", ""),
    ("scheduler", "apiserver", "WATCH", "Pod", ""),
    ("scheduler", "apiserver", "POST", "Pod", ""),
    ("scheduler-2", "apiserver", "PUT", "Lease", ""),
    (
        "kube-proxy/node-1",
        "apiserver",
        "WATCH",
        "EndpointSlice",
        "",
    ),
    // The store.
    ("apiserver", "store", "CREATE", "Pod", ""),
    ("apiserver", "store", "UPDATE", "Pod", ""),
    ("apiserver", "store", "DELETE", "Pod", ""),
    ("apiserver", "store", "GET", "Pod", ""),
    ("apiserver", "store", "RANGE", "Pod", ""),
    ("apiserver", "store", "WATCH", "Pod", ""),
    ("apiserver", "store", "FAILED", "Pod", ""),
    ("apiserver", "store", "RESTORE", "", ""),
    // Watch deliveries.
    ("apiserver", "scheduler", "WATCH ADDED", "Pod", ""),
    ("apiserver", "kubelet/node-1", "WATCH MODIFIED", "Pod", ""),
    (
        "apiserver",
        "controller/replicaset",
        "WATCH DELETED",
        "Pod",
        "",
    ),
    (
        "apiserver",
        "kube-proxy/node-1",
        "WATCH MODIFIED",
        "EndpointSlice",
        "",
    ),
    ("apiserver", "kubectl", "WATCH ADDED", "Pod", ""),
    (
        "apiserver",
        "controller/deployment",
        "WATCH SYNC",
        "Deployment",
        "",
    ),
    // Admission webhooks.
    ("apiserver", "pods.policy.example", "ADMIT", "Pod", ""),
    ("pods.policy.example", "apiserver", "ALLOWED", "Pod", ""),
    ("pods.policy.example", "apiserver", "PATCHED", "Pod", ""),
    ("pods.policy.example", "apiserver", "DENIED", "Pod", ""),
    ("pods.policy.example", "apiserver", "FAILED", "Pod", ""),
    ("pods.policy.example", "apiserver", "IGNORED", "Pod", ""),
    // The scheduler.
    ("scheduler", "scheduler", "DECIDE", "Pod", ""),
    ("scheduler", "apiserver", "BIND", "Pod", ""),
    ("scheduler", "apiserver", "BIND VOLUME", "Pod", ""),
    ("scheduler", "apiserver", "SELECT NODE", "Pod", ""),
    ("scheduler", "apiserver", "UNSCHEDULABLE", "Pod", ""),
    // The kubelet: its CRI calls, the runtime's answers, status and Events.
    ("kubelet/node-1", "runtime/node-1", "RUN SANDBOX", "Pod", ""),
    ("kubelet/node-1", "runtime/node-1", "PULL IMAGE", "Pod", ""),
    (
        "kubelet/node-1",
        "runtime/node-1",
        "CREATE CONTAINER",
        "Pod",
        "",
    ),
    (
        "kubelet/node-1",
        "runtime/node-1",
        "START CONTAINER",
        "Pod",
        "",
    ),
    (
        "kubelet/node-1",
        "runtime/node-1",
        "STOP CONTAINER",
        "Pod",
        "",
    ),
    (
        "kubelet/node-1",
        "runtime/node-1",
        "REMOVE CONTAINER",
        "Pod",
        "",
    ),
    (
        "kubelet/node-1",
        "runtime/node-1",
        "STOP SANDBOX",
        "Pod",
        "",
    ),
    (
        "kubelet/node-1",
        "runtime/node-1",
        "REMOVE SANDBOX",
        "Pod",
        "",
    ),
    ("kubelet/node-1", "runtime/node-1", "EXEC", "Pod", ""),
    ("kubelet/node-1", "runtime/node-1", "ATTACH", "Pod", ""),
    (
        "runtime/node-1",
        "kubelet/node-1",
        "SANDBOX READY",
        "Pod",
        "",
    ),
    (
        "runtime/node-1",
        "kubelet/node-1",
        "SANDBOX FAILED",
        "Pod",
        "",
    ),
    (
        "runtime/node-1",
        "kubelet/node-1",
        "IMAGE PULLED",
        "Pod",
        "",
    ),
    ("runtime/node-1", "kubelet/node-1", "PULL FAILED", "Pod", ""),
    (
        "runtime/node-1",
        "kubelet/node-1",
        "CONTAINER EXITED",
        "Pod",
        "",
    ),
    ("kubelet/node-1", "apiserver", "STATUS", "Pod", ""),
    ("kubelet/node-1", "apiserver", "PULLING", "Pod", ""),
    ("kubelet/node-1", "apiserver", "PULLED", "Pod", ""),
    ("kubelet/node-1", "apiserver", "CREATED", "Pod", ""),
    ("kubelet/node-1", "apiserver", "STARTED", "Pod", ""),
    ("kubelet/node-1", "apiserver", "KILLING", "Pod", ""),
    ("kubelet/node-1", "apiserver", "BACKOFF", "Pod", ""),
    ("kubelet/node-1", "apiserver", "FAILED", "Pod", ""),
    (
        "kubelet/node-1",
        "apiserver",
        "ERRIMAGENEVERPULL",
        "Pod",
        "",
    ),
    ("kubelet/node-1", "apiserver", "UNHEALTHY", "Pod", ""),
    ("kubelet/node-1", "apiserver", "FAILEDMOUNT", "Pod", ""),
    (
        "kubelet/node-1",
        "apiserver",
        "FAILEDPRESTOPHOOK",
        "Pod",
        "",
    ),
    // The controllers.
    (
        "controller/deployment",
        "apiserver",
        "CREATE",
        "ReplicaSet",
        "",
    ),
    (
        "controller/deployment",
        "apiserver",
        "SCALE",
        "ReplicaSet",
        "",
    ),
    (
        "controller/deployment",
        "apiserver",
        "WATCH",
        "ReplicaSet",
        "",
    ),
    (
        "controller/replicaset",
        "apiserver",
        "SCALE UP",
        "ReplicaSet",
        "2 of 3 pods exist: creating 1",
    ),
    (
        "controller/replicaset",
        "apiserver",
        "SCALE DOWN",
        "ReplicaSet",
        "4 of 3 pods exist: deleting 1",
    ),
    ("controller/replicaset", "apiserver", "RELEASE", "Pod", ""),
    ("controller/replicaset", "apiserver", "POST", "Pod", ""),
    ("controller/daemonset", "apiserver", "ADOPT", "Pod", ""),
    ("controller/daemonset", "apiserver", "CREATE", "Pod", ""),
    ("controller/daemonset", "apiserver", "DELETE", "Pod", ""),
    (
        "controller/daemonset",
        "apiserver",
        "CREATE",
        "ControllerRevision",
        "",
    ),
    (
        "controller/daemonset",
        "apiserver",
        "UPDATE",
        "ControllerRevision",
        "",
    ),
    (
        "controller/daemonset",
        "apiserver",
        "DELETE",
        "ControllerRevision",
        "",
    ),
    (
        "controller/daemonset",
        "apiserver",
        "UPDATE STATUS",
        "DaemonSet",
        "",
    ),
    ("controller/statefulset", "apiserver", "CREATE", "Pod", ""),
    (
        "controller/statefulset",
        "apiserver",
        "CREATE",
        "PersistentVolumeClaim",
        "",
    ),
    ("controller/statefulset", "apiserver", "UPDATE", "Pod", ""),
    (
        "controller/statefulset",
        "apiserver",
        "UPDATE",
        "PersistentVolumeClaim",
        "",
    ),
    ("controller/statefulset", "apiserver", "DELETE", "Pod", ""),
    ("controller/statefulset", "apiserver", "RELEASE", "Pod", ""),
    ("controller/job", "apiserver", "CREATE PODS", "Job", ""),
    ("controller/job", "apiserver", "DELETE PODS", "Job", ""),
    ("controller/job", "apiserver", "UPDATE STATUS", "Job", ""),
    (
        "controller/cronjob",
        "apiserver",
        "CREATE JOB",
        "CronJob",
        "",
    ),
    (
        "controller/cronjob",
        "apiserver",
        "DELETE JOB",
        "CronJob",
        "",
    ),
    (
        "controller/cronjob",
        "apiserver",
        "UPDATE STATUS",
        "CronJob",
        "",
    ),
    (
        "controller/disruption",
        "apiserver",
        "UPDATE STATUS",
        "PodDisruptionBudget",
        "",
    ),
    (
        "controller/resourcequota",
        "apiserver",
        "UPDATE STATUS",
        "ResourceQuota",
        "",
    ),
    (
        "controller/endpointslice",
        "apiserver",
        "CREATE",
        "EndpointSlice",
        "",
    ),
    (
        "controller/endpointslice",
        "apiserver",
        "UPDATE",
        "EndpointSlice",
        "",
    ),
    (
        "controller/endpointslice",
        "apiserver",
        "DELETE",
        "EndpointSlice",
        "",
    ),
    (
        "controller/endpoints",
        "apiserver",
        "CREATE",
        "Endpoints",
        "",
    ),
    (
        "controller/endpoints",
        "apiserver",
        "DELETE",
        "Endpoints",
        "",
    ),
    (
        "kube-apiserver/endpoint-reconciler",
        "apiserver",
        "CREATE",
        "Service",
        "",
    ),
    (
        "kube-apiserver/endpoint-reconciler",
        "apiserver",
        "UPDATE",
        "Endpoints",
        "",
    ),
    (
        "controller/endpoints",
        "apiserver",
        "UPDATE",
        "Endpoints",
        "",
    ),
    (
        "controller/serviceaccount",
        "apiserver",
        "CREATE",
        "ServiceAccount",
        "",
    ),
    (
        "controller/garbagecollector",
        "apiserver",
        "DELETE",
        "Pod",
        "",
    ),
    (
        "controller/garbagecollector",
        "apiserver",
        "PATCH",
        "Pod",
        "",
    ),
    (
        "controller/nodelifecycle",
        "apiserver",
        "UPDATE",
        "Node",
        "",
    ),
    ("controller/nodelifecycle", "apiserver", "PATCH", "Node", ""),
    ("controller/nodelifecycle", "apiserver", "DELETE", "Pod", ""),
    (
        "controller/namespace",
        "apiserver",
        "DELETECOLLECTION",
        "Namespace",
        "",
    ),
    (
        "controller/namespace",
        "apiserver",
        "FINALIZE",
        "Namespace",
        "",
    ),
    (
        "controller/clusterrole-aggregation",
        "apiserver",
        "AGGREGATE",
        "ClusterRole",
        "",
    ),
    (
        "controller/root-ca-cert-publisher",
        "apiserver",
        "PUBLISH",
        "ConfigMap",
        "",
    ),
    (
        "controller/certificate",
        "apiserver",
        "SIGN",
        "CertificateSigningRequest",
        "",
    ),
    (
        "controller/certificate",
        "apiserver",
        "FAIL",
        "CertificateSigningRequest",
        "",
    ),
    (
        "controller/pvc-protection",
        "apiserver",
        "PROTECT",
        "PersistentVolumeClaim",
        "",
    ),
    (
        "controller/pvc-protection",
        "apiserver",
        "RELEASE",
        "PersistentVolumeClaim",
        "",
    ),
    (
        "controller/pv-protection",
        "apiserver",
        "PROTECT",
        "PersistentVolume",
        "",
    ),
    (
        "controller/pv-protection",
        "apiserver",
        "RELEASE",
        "PersistentVolume",
        "",
    ),
    (
        "controller/persistentvolume-binder",
        "apiserver",
        "ASSIGN CLASS",
        "PersistentVolumeClaim",
        "",
    ),
    (
        "controller/persistentvolume-binder",
        "apiserver",
        "PROVISION",
        "PersistentVolumeClaim",
        "",
    ),
    (
        "controller/persistentvolume-binder",
        "apiserver",
        "BIND",
        "PersistentVolume",
        "",
    ),
    (
        "controller/persistentvolume-binder",
        "apiserver",
        "UNBIND",
        "PersistentVolume",
        "",
    ),
    (
        "controller/persistentvolume-binder",
        "apiserver",
        "STATUS",
        "PersistentVolumeClaim",
        "",
    ),
    (
        "controller/horizontal-pod-autoscaler",
        "apiserver",
        "DECIDE",
        "HorizontalPodAutoscaler",
        "",
    ),
    (
        "controller/horizontal-pod-autoscaler",
        "apiserver",
        "SCALE",
        "HorizontalPodAutoscaler",
        "",
    ),
    // The add-ons and the node's other parts.
    ("kube-proxy/node-1", "nftables", "SYNC", "", ""),
    ("ingress-controller", "ingress", "SYNC", "", ""),
    ("ingress-controller", "apiserver", "STATUS", "Ingress", ""),
    (
        "ingress-controller",
        "apiserver",
        "CREATE",
        "IngressClass",
        "",
    ),
    ("client", "ingress-controller", "GET", "Ingress", ""),
    (
        "service-lb-controller",
        "service/default/web",
        "ASSIGN",
        "Service",
        "",
    ),
    (
        "service-lb-controller",
        "service/default/web",
        "RELEASE",
        "Service",
        "",
    ),
    ("client", "service-lb-controller", "CONNECT", "Service", ""),
    (
        "local-path-provisioner",
        "apiserver",
        "PROVISION",
        "PersistentVolume",
        "",
    ),
    (
        "local-path-provisioner",
        "apiserver",
        "RESIZE",
        "PersistentVolume",
        "",
    ),
    (
        "local-path-provisioner",
        "apiserver",
        "DELETE",
        "PersistentVolume",
        "",
    ),
    (
        "local-path-provisioner",
        "apiserver",
        "CREATE",
        "StorageClass",
        "",
    ),
    ("kube-dns", "apiserver", "CREATE", "Service", ""),
    ("kube-dns", "apiserver", "UPDATE", "Endpoints", ""),
    ("pod/default/web-1", "kube-dns", "DNS A", "Pod", ""),
    ("10.244.1.7:53124", "kube-dns", "DNS AAAA", "", ""),
    ("pod/default/web-1", "kube-dns", "DNS SRV", "Pod", ""),
    ("pod/default/web-1", "kube-dns", "DNS PTR", "Pod", ""),
    ("pod/default/web-1", "kube-dns", "DNS MX", "Pod", ""),
    ("metrics-server", "kubelet", "SCRAPE", "", ""),
    // The operator and the stepper.
    ("orrery", "scheduler", "STOP", "", ""),
    ("orrery", "scheduler", "START", "", ""),
    ("scheduler", "apiserver", "GATE", "Pod", ""),
    ("scheduler-2", "scheduler-2", "LEADER", "Lease", ""),
    ("scheduler-1", "scheduler-1", "STANDBY", "Lease", ""),
    (
        "controller-manager",
        "controller-manager",
        "LOST",
        "Lease",
        "",
    ),
    ("scheduler-2", "scheduler-2", "RESIGN", "Lease", ""),
];

fn hop(from: &str, to: &str, verb: &str, kind: &str, detail: &str) -> FlowEvent {
    FlowEvent::new(from, to, verb)
        .object(kind, "default", "x")
        .detail(detail)
}

/// Upper-case words in the sources that are not verbs, and why.
const NOT_VERBS: &[(&str, &str)] = &[
    ("HTTP", "a protocol (the API server's listener, webhooks)"),
    ("TCP", "a protocol (Service ports)"),
    ("UDP", "a protocol (Service ports)"),
    ("TZ", "an environment variable (CronJob time zones)"),
    ("URI", "a log line's field"),
    (
        "COMPACT",
        "a store operation a FAILED hop names in its data (apiserver::reported)",
    ),
    ("VIP", "the ipMode of a load balancer's address"),
    (
        "ADDED",
        "a watch event's type: its hop's verb is WATCH ADDED",
    ),
    (
        "MODIFIED",
        "a watch event's type: its hop's verb is WATCH MODIFIED",
    ),
    (
        "DELETED",
        "a watch event's type: its hop's verb is WATCH DELETED",
    ),
    ("BOOKMARK", "a watch event's type that is never a hop"),
    ("ERROR", "a watch event's type that is never a hop"),
    (
        "JOB_COMPLETION_INDEX",
        "an environment variable of indexed Jobs",
    ),
];

/// Verbs made at run time, which no literal in the sources shows whole.
const MADE_AT_RUN_TIME: &[(&str, &str)] = &[
    ("GET", "apiserver::handlers: a request's HTTP method"),
    ("POST", "apiserver::handlers: a request's HTTP method"),
    ("PUT", "apiserver::handlers: a request's HTTP method"),
    ("PATCH", "apiserver::handlers: a request's HTTP method"),
    ("DELETE", "apiserver::handlers: a request's HTTP method"),
    (
        "WATCH ADDED",
        "apiserver::watch: WATCH and the event's type",
    ),
    (
        "WATCH MODIFIED",
        "apiserver::watch: WATCH and the event's type",
    ),
    (
        "WATCH DELETED",
        "apiserver::watch: WATCH and the event's type",
    ),
    ("DNS A", "dns: DNS and the question's type"),
    ("DNS AAAA", "dns: DNS and the question's type"),
    ("DNS SRV", "dns: DNS and the question's type"),
    ("DNS PTR", "dns: DNS and the question's type"),
];

/// Every source file under `dir`, recursively.
fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The verbs the sources emit, each with the files that name it: the upper-case string literals
/// in the code (not the tests) of every file that builds flow events (the dashboard, the
/// benchmarks and this table aside), and the kubelet's Event reasons, which become verbs in
/// upper case.
fn emitted() -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    let literal = regex::Regex::new(r#""([A-Z][A-Z_]+(?: [A-Z][A-Z_]*)*)""#).unwrap();
    let reason = regex::Regex::new(r#""(?:Normal|Warning)",\s*"([A-Za-z]+)""#).unwrap();
    let mut verbs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for path in files {
        let name = path
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if name.starts_with("tui/") || name.starts_with("bench/") || name.starts_with("flow/") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        // The code, not its tests, and only where it builds hops.
        let text = &text[..text.find("\n#[cfg(test)]").unwrap_or(text.len())];
        if !text.contains("FlowEvent::new(") {
            continue;
        }
        for found in literal.captures_iter(text) {
            verbs
                .entry(found[1].to_owned())
                .or_default()
                .insert(name.clone());
        }
        if text.contains("reason.to_uppercase()") {
            for found in reason.captures_iter(text) {
                verbs
                    .entry(found[1].to_uppercase())
                    .or_default()
                    .insert(name.clone());
            }
        }
    }
    verbs
}

#[test]
fn every_verb_the_sources_emit_has_its_own_sentence() {
    let sampled: BTreeSet<&str> = HOPS.iter().map(|h| h.2).collect();
    let not_verbs: BTreeSet<&str> = NOT_VERBS.iter().map(|(w, _)| *w).collect();
    let emitted = emitted();
    assert!(
        emitted.len() > 60,
        "the scan found only {} verbs: is it reading the sources?",
        emitted.len()
    );
    let missing: Vec<String> = emitted
        .iter()
        .filter(|(verb, _)| !sampled.contains(verb.as_str()) && !not_verbs.contains(verb.as_str()))
        .map(|(verb, files)| {
            format!(
                "{verb} ({})",
                files.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        })
        .collect();
    assert!(
        missing.is_empty(),
        "verbs emitted with no sample hop (add one to HOPS and a sentence to flow::explain, or \
         the word to NOT_VERBS): {missing:?}"
    );
    for (verb, from) in MADE_AT_RUN_TIME {
        assert!(sampled.contains(verb), "{verb} ({from}) has no sample hop");
    }
    // A word called not a verb must still be in the sources, or the list goes stale.
    for (word, _) in NOT_VERBS {
        assert!(
            emitted.contains_key(*word),
            "{word} is no longer in the sources"
        );
    }
}

#[test]
fn every_sample_hop_gets_a_sentence_of_its_own() {
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for &(from, to, verb, kind, detail) in HOPS {
        let hop = hop(from, to, verb, kind, detail);
        let said = sentence(&hop).unwrap_or_else(|| {
            panic!(
                "{from} -> {to} {verb} {kind} has no sentence, only: {}",
                why(&hop)
            )
        });
        assert_eq!(said, why(&hop));
        // One sentence: a full stop at its end and nowhere before.
        assert!(said.ends_with('.'), "{said}");
        assert!(
            !said.trim_end_matches('.').contains(". "),
            "two sentences: {said}"
        );
        assert!(
            said.len() < 260,
            "too long for one line of the detail: {said}"
        );
        if let Some(other) = seen.insert(said.to_string(), verb)
            && other != verb
        {
            panic!("{other} and {verb} share one sentence: {said}");
        }
    }
}

#[test]
fn sentences_name_the_specific_parts() {
    let said = |from: &str, to: &str, verb: &str, kind: &str, detail: &str| {
        why(&hop(from, to, verb, kind, detail)).into_owned()
    };
    assert_eq!(
        said(
            "controller/replicaset",
            "apiserver",
            "SCALE UP",
            "ReplicaSet",
            "2 of 3 pods exist: creating 1"
        ),
        "The ReplicaSet controller creates pods because its ReplicaSet wants 3 and has 2: \
         controllers only write desired state through the API server, and the scheduler and \
         kubelets do the rest."
    );
    assert!(said("apiserver", "store", "CREATE", "Deployment", "").contains("Deployments"));
    assert!(
        said("apiserver", "kubelet/node-2", "WATCH MODIFIED", "Pod", "").contains("the kubelet")
    );
    assert!(
        said("apiserver", "controller/job", "WATCH ADDED", "Pod", "")
            .contains("the Job controller")
    );
    assert!(said("orrery", "scheduler-2", "STOP", "", "").contains("stopped scheduler-2"));
    assert!(said("kubectl", "apiserver", "POST", "Ingress", "").contains("create an Ingress"));
    // One replica of several is still the scheduler.
    assert_eq!(
        said("scheduler-2", "apiserver", "BIND", "Pod", ""),
        said("scheduler", "apiserver", "BIND", "Pod", "")
    );
    // A hop the table does not know still gets a sentence, built from its ends.
    assert_eq!(
        said("kubectl", "apiserver", "TELEPORT", "Pod", ""),
        "kubectl sends apiserver a TELEPORT about a Pod: one step of a story, which the hops \
         before and after it explain."
    );
    assert_eq!(plural("Ingress"), "Ingresses");
    assert_eq!(plural("Endpoints"), "Endpoints");
    assert_eq!(plural("NetworkPolicy"), "NetworkPolicies");
    assert_eq!(a("EndpointSlice"), "an EndpointSlice");
    assert_eq!(a(""), "an object");
}

#[test]
fn a_decision_names_the_filters_passed_the_winning_scores_and_the_rejections() {
    let decision = serde_json::json!({
        "pod": "default/web-1", "attempt": 1, "nodes": 3, "evaluated": 3, "feasible": 2,
        "rejected": {"node-3": {"plugin": "NodeUnschedulable", "reasons": ["node(s) were unschedulable"]}},
        "scores": {
            "node-1": {
                "NodeResourcesFit": {"raw": 78, "normalized": 78, "weight": 1},
                "NodeResourcesBalancedAllocation": {"raw": 95, "normalized": 95, "weight": 1},
                "TaintToleration": {"raw": 0, "normalized": 100, "weight": 3},
                "ImageLocality": {"raw": 0, "normalized": 0, "weight": 1}
            },
            "node-2": {"NodeResourcesFit": {"raw": 40, "normalized": 40, "weight": 1}}
        },
        "totals": {"node-1": 473, "node-2": 142},
        "chosen": "node-1"
    });
    assert_eq!(
        super::decision(&decision).unwrap(),
        "node-1 passed every filter (NodeUnschedulable, NodeName, TaintToleration, NodeAffinity, \
         NodeResourcesFit, VolumeBinding, PodTopologySpread, InterPodAffinity) and scored 473 \
         (TaintToleration 300, NodeResourcesBalancedAllocation 95, NodeResourcesFit 78) against \
         node-2's 142; rejected: node-3 by NodeUnschedulable (node(s) were unschedulable)"
    );
    let alone = serde_json::json!({
        "nodes": 1, "feasible": 1, "rejected": {},
        "scores": {"node-1": {"NodeResourcesFit": {"raw": 0, "normalized": 0, "weight": 1}}},
        "totals": {"node-1": 0}, "chosen": "node-1"
    });
    assert!(
        super::decision(&alone)
            .unwrap()
            .ends_with("and scored 0, the only node that passed")
    );
    let none = serde_json::json!({
        "nodes": 1, "feasible": 0,
        "rejected": {"node-1": {"plugin": "NodeResourcesFit", "reasons": ["Insufficient cpu"]}},
        "message": "0/1 nodes are available: 1 Insufficient cpu."
    });
    assert_eq!(
        super::decision(&none).unwrap(),
        "no node fits (0/1 nodes are available: 1 Insufficient cpu.); rejected: node-1 by \
         NodeResourcesFit (Insufficient cpu)"
    );
    assert_eq!(super::decision(&serde_json::json!({"pod": "x"})), None);
}
