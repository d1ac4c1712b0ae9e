//! PodDisruptionBudgets end to end on the simulated runtime: the disruption controller's status
//! (`kubectl get pdb`'s columns, the counts, the `DisruptionAllowed` condition), the eviction
//! subresource's 429 byte for byte (and its 500 for a pod two budgets select), and `kubectl
//! drain` waiting on a budget, retrying, and finishing once the budget allows it.

use crate::common;

use common::{Cluster, rows};

const DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 3\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: web, image: orrery/hello:1}]\n";

fn budget(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {{name: {name}}}\nspec:\n  selector: {{matchLabels: {{app: web}}}}\n  {spec}\n"
    )
}

/// POSTs an Eviction of `pod` with `kubectl create --raw` (which, unlike kube-rs, does not
/// retry a 429 without Retry-After): whether it succeeded, and the answer's body (from
/// kubectl's `-v=8` log when it failed).
fn evict(c: &Cluster, pod: &str) -> (bool, String) {
    let body = format!(
        "{{\"apiVersion\":\"policy/v1\",\"kind\":\"Eviction\",\"metadata\":{{\"name\":\"{pod}\",\"namespace\":\"default\"}}}}"
    );
    let path = format!("/api/v1/namespaces/default/pods/{pod}/eviction");
    let out = c.kubectl(
        &["create", "--raw", &path, "-f", "-", "-v=8"],
        Some(&body),
        &[],
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() {
        return (true, stdout);
    }
    // klog: `"Response Body" body=<` then the body on a tab-indented line.
    let response = stderr
        .split_once("\"Response Body\" body=<\n\t")
        .and_then(|(_, rest)| rest.split_once("\n >"))
        .map(|(body, _)| body.to_owned())
        .unwrap_or(stderr);
    (false, response)
}

fn ready_pods(c: &Cluster) -> Vec<String> {
    c.ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
    ])
    .lines()
    .filter(|l| l.ends_with(" True"))
    .map(|l| l.split_whitespace().next().unwrap().to_owned())
    .collect()
}

#[test]
fn a_budget_refuses_evictions_with_upstreams_429_and_keeps_its_status() {
    let c = Cluster::with_nodes(2);
    c.ok_with(&["apply", "-f", "-"], Some(DEPLOYMENT));
    c.ok_with(
        &["apply", "-f", "-"],
        Some(&budget("web", "minAvailable: 3")),
    );
    c.eventually(
        &[
            "get",
            "pdb",
            "web",
            "-o",
            "jsonpath={.status.expectedPods}/{.status.currentHealthy}/{.status.desiredHealthy}/{.status.disruptionsAllowed}/{.status.observedGeneration}",
        ],
        30,
        |out| out == "3/3/3/0/1",
    );
    let condition = c.ok(&[
        "get",
        "pdb",
        "web",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"DisruptionAllowed\")].status}/{.status.conditions[?(@.type==\"DisruptionAllowed\")].reason}",
    ]);
    assert_eq!(condition, "False/InsufficientPods");
    let table = rows(&c.ok(&["get", "pdb"]));
    assert_eq!(
        table[0],
        [
            "NAME",
            "MIN AVAILABLE",
            "MAX UNAVAILABLE",
            "ALLOWED DISRUPTIONS",
            "AGE"
        ]
    );
    assert_eq!(table[1][..4], ["web", "3", "N/A", "0"]);

    let pod = ready_pods(&c)[0].clone();
    let (ok, body) = evict(&c, &pod);
    assert!(!ok, "{body}");
    assert_eq!(
        format!("{body}\n"),
        "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\
         \"message\":\"Cannot evict pod as it would violate the pod's disruption budget.\",\
         \"reason\":\"TooManyRequests\",\"details\":{\"causes\":[{\"reason\":\"DisruptionBudget\",\
         \"message\":\"The disruption budget web needs 3 healthy pods and has 3 currently\"}]},\
         \"code\":429}\n"
    );

    // Two budgets for one pod: the eviction subresource does not choose.
    c.ok_with(
        &["apply", "-f", "-"],
        Some(&budget("also", "maxUnavailable: 1")),
    );
    let (ok, body) = evict(&c, &pod);
    assert!(!ok, "{body}");
    assert!(
        body.contains("This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."),
        "{body}"
    );
    c.ok(&["delete", "pdb", "also"]);

    // A budget that allows one: the eviction spends it, then the pod goes.
    c.ok(&[
        "patch",
        "pdb",
        "web",
        "--type=merge",
        "-p",
        "{\"spec\":{\"minAvailable\":2}}",
    ]);
    c.eventually(
        &[
            "get",
            "pdb",
            "web",
            "-o",
            "jsonpath={.status.disruptionsAllowed}/{.status.observedGeneration}",
        ],
        20,
        |out| out == "1/2",
    );
    let (ok, body) = evict(&c, &pod);
    assert!(ok && body.contains("\"status\":\"Success\""), "{body}");
    c.eventually(
        &[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ],
        30,
        |out| !out.split_whitespace().any(|p| p == pod),
    );
}

#[test]
#[allow(clippy::disallowed_methods)] // a plain test thread: time for drain to meet the budget
fn kubectl_drain_waits_for_the_budget_and_then_finishes() {
    let c = Cluster::with_nodes(2);
    c.ok_with(&["apply", "-f", "-"], Some(DEPLOYMENT));
    c.ok_with(
        &["apply", "-f", "-"],
        Some(&budget("web", "minAvailable: 3")),
    );
    c.eventually(
        &[
            "get",
            "pdb",
            "web",
            "-o",
            "jsonpath={.status.currentHealthy}",
        ],
        30,
        |out| out == "3",
    );
    let pod = ready_pods(&c)[0].clone();
    let node = c.ok(&["get", "pod", &pod, "-o", "jsonpath={.spec.nodeName}"]);
    std::thread::scope(|s| {
        let drain = s.spawn(|| {
            c.kubectl(
                &["drain", &node, "--ignore-daemonsets", "--timeout=120s"],
                None,
                &[],
            )
        });
        c.eventually(
            &["get", "node", &node, "-o", "jsonpath={.spec.unschedulable}"],
            20,
            |out| out == "true",
        );
        // The budget holds: drain is refused and keeps trying.
        std::thread::sleep(std::time::Duration::from_secs(3));
        assert!(!drain.is_finished(), "drain finished despite the budget");
        assert!(ready_pods(&c).contains(&pod));
        c.ok(&[
            "patch",
            "pdb",
            "web",
            "--type=merge",
            "-p",
            "{\"spec\":{\"minAvailable\":2}}",
        ]);
        let out = drain.join().unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "{stdout}{stderr}");
        assert!(
            stderr.contains(&format!("error when evicting pods/\"{pod}\" -n \"default\" (will retry after 5s): Cannot evict pod as it would violate the pod's disruption budget.")),
            "{stderr}"
        );
        assert!(stdout.contains(&format!("node/{node} drained")), "{stdout}");
    });
    // Every pod of the Deployment now runs elsewhere.
    let nodes = c.ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[*].spec.nodeName}",
    ]);
    assert!(!nodes.split_whitespace().any(|n| n == node), "{nodes}");
}
