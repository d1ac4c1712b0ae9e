//! The DaemonSet and EndpointSlice controllers as a user sees them: the real `kubectl` against
//! `orrery up` with virtual nodes on the simulated runtime.

use crate::common;

use std::time::{Duration, Instant};

use common::{Cluster, rows};
use serde_json::Value;

const DAEMONSET: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers:
      - name: agent
        image: orrery/agent:1
"#;

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: orrery/hello:1
        ports: [{name: http, containerPort: 8080}]
"#;

const SERVICE: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
"#;

/// Polls `check` until it gives a value (at most 30 s, every 100 ms).
#[allow(clippy::disallowed_methods)] // a plain test thread, not a tokio worker
fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    for _ in 0..300 {
        if let Some(value) = check() {
            return value;
        }
        if Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

/// `(node, image)` of every daemon pod that is not terminating, sorted.
fn daemon_pods(c: &Cluster) -> Vec<(String, String)> {
    let out = c.ok(&["get", "pods", "-l", "app=agent", "-o", "json"]);
    let list: Value = serde_json::from_str(&out).unwrap();
    let mut pods: Vec<(String, String)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            (
                p["spec"]["nodeName"].as_str().unwrap_or("").to_owned(),
                p["spec"]["containers"][0]["image"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect();
    pods.sort();
    pods
}

fn on_nodes(nodes: &[&str], image: &str) -> Vec<(String, String)> {
    nodes
        .iter()
        .map(|n| ((*n).to_owned(), image.to_owned()))
        .collect()
}

#[test]
fn a_daemonset_runs_one_pod_per_node_rolls_and_undoes() {
    let c = Cluster::with_nodes(3);
    c.ok_with(&["apply", "-f", "-"], Some(DAEMONSET));
    let done = c.ok(&["rollout", "status", "ds/agent", "--timeout=60s"]);
    assert!(
        done.ends_with("daemon set \"agent\" successfully rolled out\n"),
        "{done}"
    );
    assert_eq!(
        daemon_pods(&c),
        on_nodes(&["node-1", "node-2", "node-3"], "orrery/agent:1")
    );
    let table = rows(&c.ok(&["get", "ds", "agent"]));
    assert_eq!(
        table[0],
        [
            "NAME",
            "DESIRED",
            "CURRENT",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "NODE SELECTOR",
            "AGE"
        ]
    );
    assert_eq!(
        table[1][..7],
        ["agent", "3", "3", "3", "3", "3", "<none>"],
        "{table:?}"
    );
    // The pods carry the standard DaemonSet tolerations and are pinned to their node.
    let pod: Value = serde_json::from_str(&c.ok(&[
        "get",
        "pods",
        "-l",
        "app=agent",
        "--field-selector",
        "spec.nodeName=node-2",
        "-o",
        "jsonpath={.items[0]}",
    ]))
    .unwrap();
    let tolerations = pod["spec"]["tolerations"].to_string();
    for key in [
        "node.kubernetes.io/unschedulable",
        "node.kubernetes.io/disk-pressure",
        "node.kubernetes.io/not-ready",
    ] {
        assert!(tolerations.contains(key), "{tolerations}");
    }
    assert_eq!(
        pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            [0]["matchFields"][0]["values"][0],
        "node-2"
    );
    assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "DaemonSet");

    c.ok(&["set", "image", "ds/agent", "agent=orrery/agent:2"]);
    c.ok(&["rollout", "status", "ds/agent", "--timeout=60s"]);
    wait_for("every daemon pod on the new image", || {
        (daemon_pods(&c) == on_nodes(&["node-1", "node-2", "node-3"], "orrery/agent:2"))
            .then_some(())
    });
    let history = c.ok(&["rollout", "history", "ds/agent"]);
    assert!(
        history.contains("\n1 ") && history.contains("\n2 "),
        "{history}"
    );
    c.ok(&["rollout", "undo", "ds/agent"]);
    c.ok(&["rollout", "status", "ds/agent", "--timeout=60s"]);
    assert_eq!(
        c.ok(&[
            "get",
            "ds",
            "agent",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}"
        ]),
        "orrery/agent:1"
    );
    wait_for("every daemon pod back on the first image", || {
        (daemon_pods(&c) == on_nodes(&["node-1", "node-2", "node-3"], "orrery/agent:1"))
            .then_some(())
    });
    // Rolling back renumbers the first template's revision: revisions 2 and 3 remain.
    let history = c.ok(&["rollout", "history", "ds/agent"]);
    assert!(
        history.contains("\n2 ") && history.contains("\n3 ") && !history.contains("\n1 "),
        "{history}"
    );
    let revisions = rows(&c.ok(&["get", "controllerrevisions"]));
    assert_eq!(revisions.len(), 3, "two revisions: {revisions:?}");
    assert!(
        revisions[1][1].starts_with("daemonset.apps/agent"),
        "{revisions:?}"
    );
}

#[test]
fn a_node_tainted_noschedule_gets_no_new_daemon_pod() {
    let c = Cluster::with_nodes(3);
    c.ok_with(&["apply", "-f", "-"], Some(DAEMONSET));
    c.ok(&["rollout", "status", "ds/agent", "--timeout=60s"]);
    c.ok(&["taint", "nodes", "node-2", "k=v:NoSchedule"]);
    // The pod already there may stay; it is counted as misscheduled.
    wait_for("desired 2 and one misscheduled", || {
        let status = c.ok(&[
            "get",
            "ds",
            "agent",
            "-o",
            "jsonpath={.status.desiredNumberScheduled} {.status.numberMisscheduled}",
        ]);
        (status == "2 1").then_some(())
    });
    assert_eq!(daemon_pods(&c).len(), 3);
    c.ok(&["set", "image", "ds/agent", "agent=orrery/agent:2"]);
    c.ok(&["rollout", "status", "ds/agent", "--timeout=60s"]);
    wait_for("new pods on the untainted nodes only", || {
        (daemon_pods(&c) == on_nodes(&["node-1", "node-3"], "orrery/agent:2")).then_some(())
    });
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.kind=DaemonSet",
    ]);
    assert!(events.contains("SuccessfulCreate"), "{events}");
    assert!(events.contains("Created pod: agent-"), "{events}");
    assert!(events.contains("Deleted pod: agent-"), "{events}");
}

/// The endpoints of the `web` slices: (address, ready) and the slices' ports.
fn slices(c: &Cluster) -> (usize, Vec<(String, bool)>, Vec<i64>) {
    let out = c.ok(&[
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=web",
        "-o",
        "json",
    ]);
    let list: Value = serde_json::from_str(&out).unwrap();
    let items = list["items"].as_array().unwrap();
    let mut endpoints = Vec::new();
    let mut ports = Vec::new();
    for slice in items {
        assert_eq!(slice["addressType"], "IPv4");
        assert_eq!(
            slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
            "endpointslice-controller.k8s.io"
        );
        assert_eq!(slice["metadata"]["ownerReferences"][0]["kind"], "Service");
        for e in slice["endpoints"].as_array().into_iter().flatten() {
            endpoints.push((
                e["addresses"][0].as_str().unwrap().to_owned(),
                e["conditions"]["ready"] == true,
            ));
        }
        for p in slice["ports"].as_array().into_iter().flatten() {
            ports.push(p["port"].as_i64().unwrap());
        }
    }
    endpoints.sort();
    (items.len(), endpoints, ports)
}

#[test]
fn endpointslices_and_endpoints_follow_a_service_s_pods() {
    let c = Cluster::with_nodes(3);
    c.ok_with(&["apply", "-f", "-"], Some(DEPLOYMENT));
    c.ok_with(&["apply", "-f", "-"], Some(SERVICE));
    c.ok(&["rollout", "status", "deploy/web", "--timeout=60s"]);
    let three = wait_for("three ready endpoints", || {
        let (count, endpoints, ports) = slices(&c);
        (count == 1 && endpoints.len() == 3 && endpoints.iter().all(|(_, ready)| *ready))
            .then_some((endpoints, ports))
    });
    assert_eq!(three.1, [8080], "the named targetPort resolved");
    for (address, _) in &three.0 {
        assert!(address.starts_with("10.244."), "{address}");
    }
    let slice_name = c.ok(&[
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=web",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ]);
    assert!(
        slice_name.starts_with("web-") && slice_name.len() == 9,
        "{slice_name}"
    );
    let table = rows(&c.ok(&["get", "endpoints", "web"]));
    assert_eq!(table[0], ["NAME", "ENDPOINTS", "AGE"]);
    for (address, _) in &three.0 {
        assert!(
            table[1][1].contains(&format!("{address}:8080")),
            "{table:?}"
        );
    }
    assert!(
        c.ok(&["describe", "service", "web"]).contains("8080"),
        "describe shows the endpoints"
    );

    c.ok(&["scale", "deploy/web", "--replicas=1"]);
    wait_for("one endpoint left", || {
        let (count, endpoints, _) = slices(&c);
        (count == 1 && endpoints.len() == 1).then_some(())
    });
    assert_eq!(
        c.ok(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
            "-o",
            "jsonpath={.items[0].metadata.name}",
        ]),
        slice_name,
        "the slice was updated in place"
    );
    wait_for("Endpoints with one address", || {
        let row = rows(&c.ok(&["get", "endpoints", "web"])).remove(1);
        (row[1].matches(":8080").count() == 1).then_some(())
    });

    // A Service that loses its selector loses its managed slices.
    c.ok(&[
        "patch",
        "service",
        "web",
        "--type=json",
        "-p",
        r#"[{"op": "remove", "path": "/spec/selector"}]"#,
    ]);
    wait_for("the slices gone with the selector", || {
        (slices(&c).0 == 0).then_some(())
    });
    c.ok(&[
        "patch",
        "service",
        "web",
        "-p",
        r#"{"spec": {"selector": {"app": "web"}}}"#,
    ]);
    wait_for("a slice again with the selector back", || {
        let (count, endpoints, _) = slices(&c);
        (count == 1 && endpoints.len() == 1).then_some(())
    });
    c.ok(&["delete", "service", "web"]);
    wait_for("the slices and Endpoints gone with the Service", || {
        let endpoints = c.kubectl(&["get", "endpoints", "web"], None, &[]);
        (slices(&c).0 == 0 && !endpoints.status.success()).then_some(())
    });
}

#[test]
fn the_kubernetes_service_points_at_the_api_server() {
    let c = Cluster::start();
    let port = c.port.to_string();
    let service = wait_for("the kubernetes Service", || {
        let out = c.kubectl(&["get", "service", "kubernetes"], None, &[]);
        out.status
            .success()
            .then(|| rows(&String::from_utf8(out.stdout).unwrap()).remove(1))
    });
    assert_eq!(
        service[..5],
        ["kubernetes", "ClusterIP", "10.96.0.1", "<none>", "443/TCP"]
    );
    let endpoints = wait_for("its Endpoints", || {
        let out = c.kubectl(&["get", "endpoints", "kubernetes"], None, &[]);
        out.status
            .success()
            .then(|| rows(&String::from_utf8(out.stdout).unwrap()).remove(1))
    });
    assert_eq!(endpoints[1], format!("127.0.0.1:{port}"));
    let slice = c.ok(&[
        "get",
        "endpointslice",
        "kubernetes",
        "-o",
        "jsonpath={.endpoints[0].addresses[0]} {.ports[0].port}",
    ]);
    assert_eq!(slice, format!("127.0.0.1 {port}"));
}
