//! Metrics, autoscaling and debugging as users meet them, with the real kubectl: `kubectl top`
//! against the metrics API (on the simulated runtime, where `burn` and `hog` are reported as
//! what they declare, and on real containers, where the cgroups measure them), a
//! HorizontalPodAutoscaler scaling a Deployment up under load and back down after its own
//! stabilization window, `nodes/proxy` to the kubelet's Summary API, and `kubectl debug` with
//! an ephemeral container that shares its target's processes.

use crate::common;

use std::process::Command;

use common::registry::Registry;
use common::{Cluster, rows};

/// The fast settings tests use: the kubelets read every second, HPAs looked at every second.
const QUICK: [&str; 4] = [
    "--metrics-resolution",
    "1s",
    "--horizontal-pod-autoscaler-sync-period",
    "1s",
];

fn load(name: &str, tool: &str, arg: &str, request_cpu: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
      - name: main
        image: orrery/hello
        command: ["/orrery", "{tool}", "{arg}"]
        resources: {{requests: {{cpu: {request_cpu}}}}}
"#
    )
}

/// `200m` or `1500m` or `2` as millicores; `64Mi` as MiB.
fn millicores(text: &str) -> i64 {
    match text.strip_suffix('m') {
        Some(m) => m.parse().unwrap(),
        None => text.parse::<i64>().unwrap() * 1000,
    }
}

fn mebibytes(text: &str) -> i64 {
    text.strip_suffix("Mi").unwrap().parse().unwrap()
}

/// The row of `kubectl top pod` output whose pod name starts with `prefix`.
fn top_row(out: &str, prefix: &str) -> Option<Vec<String>> {
    rows(out).into_iter().find(|r| r[0].starts_with(prefix))
}

#[test]
fn top_shows_what_burn_and_hog_declare_on_the_simulated_runtime() {
    let c = Cluster::with_nodes_and(1, &QUICK);
    c.apply(&load("burn", "burn", "400m", "200m"));
    c.apply(&load("hog", "hog", "64", "100m"));
    // metrics.k8s.io is in discovery, as kubectl top needs.
    let resources = c.ok(&["api-resources", "--api-group", "metrics.k8s.io"]);
    assert!(resources.contains("PodMetrics"), "{resources}");
    // The first window runs from the container's start (read to the second), the next ones
    // between two readings.
    let out = c.eventually(&["top", "pods", "--no-headers"], 30, |t| {
        top_row(t, "burn").is_some_and(|r| (390..=410).contains(&millicores(&r[1])))
            && top_row(t, "hog").is_some()
    });
    let burn = top_row(&out, "burn").unwrap();
    assert!((390..=410).contains(&millicores(&burn[1])), "{out}");
    let hog = top_row(&out, "hog").unwrap();
    assert_eq!(mebibytes(&hog[2]), 64, "{out}");
    // --containers, -l, --sort-by and -A read as upstream's.
    let out = c.ok(&["top", "pods", "--containers", "-l", "app=burn"]);
    let table = rows(&out);
    assert_eq!(table[0], ["POD", "NAME", "CPU(cores)", "MEMORY(bytes)"]);
    assert_eq!(table.len(), 2, "{out}");
    assert_eq!(table[1][1], "main");
    let sorted = c.ok(&["top", "pods", "-A", "--sort-by=cpu", "--no-headers"]);
    assert!(rows(&sorted)[0][1].starts_with("burn"), "{sorted}");
    // The node: the sum of its pods, against its allocatable (4 cores: 400m is 10%).
    let nodes = c.eventually(&["top", "nodes", "--no-headers"], 20, |t| {
        rows(t)
            .iter()
            .any(|r| r[0] == "node-1" && (390..=410).contains(&millicores(&r[1])))
    });
    let node = rows(&nodes).into_iter().find(|r| r[0] == "node-1").unwrap();
    // kubectl's percentage, of the node's 4 cores, truncated (399m is 9%).
    let percent = millicores(&node[1]) * 100 / 4000;
    assert_eq!(node[2], format!("{percent}%"), "{nodes}");
    // The Summary API through nodes/proxy, and the resource metrics.
    let summary: serde_json::Value =
        serde_json::from_str(&c.ok(&["get", "--raw", "/api/v1/nodes/node-1/proxy/stats/summary"]))
            .unwrap();
    assert_eq!(summary["node"]["nodeName"], "node-1");
    let pods = summary["pods"].as_array().unwrap();
    let hog = pods
        .iter()
        .find(|p| p["podRef"]["name"].as_str().unwrap().starts_with("hog"))
        .unwrap();
    assert_eq!(
        hog["containers"][0]["memory"]["workingSetBytes"],
        64 * 1024 * 1024
    );
    let text = c.ok(&[
        "get",
        "--raw",
        "/api/v1/nodes/node-1/proxy/metrics/resource",
    ]);
    assert!(
        text.contains("# TYPE container_cpu_usage_seconds_total counter"),
        "{text}"
    );
    // Bad requests get the API's words: a watch is not allowed, an unknown pod is not found.
    let missing = c.fails(
        &[
            "get",
            "--raw",
            "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/nope",
        ],
        None,
    );
    assert!(
        missing.contains("NotFound") || missing.contains("not found"),
        "{missing}"
    );
    // Stopping the metrics server makes the API unavailable, as an aggregated API is.
    c.orrery_ok(&["component", "stop", "metrics-server"]);
    let gone = c.fails(&["top", "nodes"], None);
    assert!(
        gone.contains("Metrics API not available") || gone.contains("unable to handle"),
        "{gone}"
    );
}

#[test]
fn an_hpa_scales_up_under_load_and_back_down_after_its_window() {
    let c = Cluster::with_nodes_and(2, &QUICK);
    c.apply(&load("web", "burn", "400m", "200m"));
    c.apply(
        r#"apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 1
  maxReplicas: 3
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}
  behavior:
    scaleDown:
      stabilizationWindowSeconds: 3
      policies: [{type: Percent, value: 100, periodSeconds: 1}]
"#,
    );
    // 400m of a 200m request is 200%: four times the target, capped at three.
    c.eventually(
        &[
            "get",
            "hpa",
            "web",
            "-o",
            "jsonpath={.status.desiredReplicas}",
        ],
        60,
        |r| r == "3",
    );
    c.eventually(
        &["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"],
        10,
        |r| r == "3",
    );
    let table = c.ok(&["get", "hpa", "web"]);
    let table = rows(&table);
    assert_eq!(
        table[0],
        [
            "NAME",
            "REFERENCE",
            "TARGETS",
            "MINPODS",
            "MAXPODS",
            "REPLICAS",
            "AGE"
        ]
    );
    assert_eq!(table[1][1], "Deployment/web");
    assert!(
        table[1][2].starts_with("cpu: ") && table[1][2].ends_with("/50%"),
        "{table:?}"
    );
    let described = c.ok(&["describe", "hpa", "web"]);
    assert!(described.contains("SuccessfulRescale"), "{described}");
    assert!(
        described.contains("above target"),
        "upstream's reason text: {described}"
    );
    // Once the new pods are measured too, the proposal is past the maximum: limited.
    c.eventually(
        &[
            "get",
            "hpa",
            "web",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"ScalingLimited\")].reason}",
        ],
        30,
        |r| r == "TooManyReplicas",
    );
    // The load drops: the new pods burn 20m (10%), and after the 3 s window the HPA scales
    // down to its minimum, never below.
    c.ok(&[
        "patch",
        "deploy",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/template/spec/containers/0/command","value":["/orrery","burn","20m"]}]"#,
    ]);
    c.eventually(
        &["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"],
        90,
        |r| r == "1",
    );
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.kind=HorizontalPodAutoscaler,reason=SuccessfulRescale",
        "-o",
        "jsonpath={range .items[*]}{.message}{\"\\n\"}{end}",
    ]);
    assert!(
        events.contains("reason: All metrics below target"),
        "{events}"
    );
    for line in events.lines() {
        let size: i32 = line
            .trim_start_matches("New size: ")
            .split(';')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=3).contains(&size), "outside min/max: {events}");
    }
    // kubectl events reads them as on a real cluster: --for, --types, and -o json.
    let events = c.ok(&["events", "--for", "hpa/web", "--types=Normal"]);
    let header = rows(&events);
    assert_eq!(
        header[0],
        ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    );
    assert!(events.contains("SuccessfulRescale"), "{events}");
    assert!(events.contains("HorizontalPodAutoscaler/web"), "{events}");
    let warnings = c.ok(&[
        "events",
        "--for",
        "hpa/web",
        "--types=Warning",
        "-o",
        "json",
    ]);
    let warnings: serde_json::Value = serde_json::from_str(&warnings).unwrap();
    assert!(
        warnings["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["type"] == "Warning")
    );
    // A watch of events replays what there is, then ends with its timeout.
    let watched = c.ok(&["get", "events", "--watch", "--request-timeout=2s"]);
    assert!(watched.contains("SuccessfulRescale"), "{watched}");
    // autoscaling/v1 reads the same HPA, its CPU target in v1's field.
    let v1 = c.ok(&[
        "get",
        "--raw",
        "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers/web",
    ]);
    let v1: serde_json::Value = serde_json::from_str(&v1).unwrap();
    assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 50);
    // kubectl autoscale makes one that acts too; a bad one is refused in the API's words.
    let bad = c.fails(
        &[
            "autoscale",
            "deploy",
            "web",
            "--min=3",
            "--max=2",
            "--name=bad",
        ],
        None,
    );
    assert!(
        bad.contains("must be greater than or equal to `minReplicas`") || bad.contains("min"),
        "{bad}"
    );
}

#[test]
fn top_measures_real_containers_and_debug_attaches_to_a_running_pod() {
    let Some(c) = Cluster::real_with("metrics", 1, "10.202.0.0/16", &QUICK) else {
        return;
    };
    let registry = Registry::start();
    let busybox = registry.push_busybox("1.36");
    // A request of two cores is 2048 CPU shares: the kernel gives burn its 400m even while
    // the machine is busy with other tests.
    c.apply(&load("burn", "burn", "400m", "2"));
    c.apply(&load("hog", "hog", "64", "100m"));
    c.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: bb}}
spec:
  containers:
  - name: main
    image: {busybox}
    command: ["sh", "-c", "exec sleep 3600"]
  - name: shell
    image: {busybox}
    command: ["sh"]
    stdin: true
    tty: true
"#
    ));
    // The first window runs from the container's start; the figures settle within a few.
    let out = c.eventually(&["top", "pods", "--no-headers"], 120, |t| {
        top_row(t, "burn").is_some_and(|r| (350..=450).contains(&millicores(&r[1])))
            && top_row(t, "hog").is_some_and(|r| mebibytes(&r[2]) >= 64)
    });
    let burn = millicores(&top_row(&out, "burn").unwrap()[1]);
    assert!((350..=450).contains(&burn), "burn 400m: {out}");
    let hog = mebibytes(&top_row(&out, "hog").unwrap()[2]);
    assert!((64..=72).contains(&hog), "hog 64: {out}");
    c.eventually(
        &["get", "pod", "bb", "-o", "jsonpath={.status.phase}"],
        60,
        |p| p == "Running",
    );
    // kubectl debug: an ephemeral container in bb's process namespace (it sees `sleep 3600`),
    // attached with a terminal (util-linux's `script` gives kubectl one).
    let debug = Command::new("script")
        .args(["-qec"])
        .arg(format!(
            "kubectl --kubeconfig {} debug -it bb --image={busybox} --target=main -c debugger -- sh -c 'sleep 1; ps; exit 0'",
            c.kubeconfig().display()
        ))
        .arg("/dev/null")
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&debug.stdout);
    assert!(printed.contains("sleep 3600"), "{printed}");
    let status = c.eventually(
        &[
            "get",
            "pod",
            "bb",
            "-o",
            "jsonpath={.status.ephemeralContainerStatuses[0].state.terminated.exitCode}",
        ],
        30,
        |s| !s.is_empty(),
    );
    assert_eq!(status, "0");
    // An ephemeral container cannot be removed or changed once there.
    let refused = c.fails(
        &[
            "patch",
            "pod",
            "bb",
            "--subresource=ephemeralcontainers",
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/spec/ephemeralContainers/0"}]"#,
        ],
        None,
    );
    assert!(refused.contains("may not be removed"), "{refused}");
    // kubectl attach to a container started with stdin and tty: what is typed runs.
    let attach = Command::new("script")
        .args(["-qec"])
        .arg(format!(
            "printf 'echo attached-$((40+2))\\nexit\\n' | kubectl --kubeconfig {} attach -i -t bb -c shell",
            c.kubeconfig().display()
        ))
        .arg("/dev/null")
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&attach.stdout);
    assert!(printed.contains("attached-42"), "{printed}");
}
