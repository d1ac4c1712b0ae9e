//! Nodes and components going away and coming back, driven the way a user does it: `orrery node
//! stop|start`, `orrery component stop|start`, and the real kubectl watching what the cluster
//! does about it. Also the kubelet's init containers.

use crate::common;

use common::{Cluster, rows};

#[test]
fn a_stopped_node_goes_unknown_and_its_pods_are_replaced_elsewhere() {
    let c = Cluster::with_quick_node_monitor(3, &["--default-unreachable-toleration-seconds", "2"]);
    // Three workers and the control-plane node.
    c.eventually(&["get", "nodes", "-o", "name"], 20, |t| {
        t.lines().count() == 4
    });
    c.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx",
        "--replicas=6",
    ]);
    c.eventually(
        &["rollout", "status", "deployment/web", "--timeout=1s"],
        30,
        |_| true,
    );
    // Every node has some of them (the scheduler spreads a ReplicaSet's pods).
    let placed = c.ok(&["get", "pods", "-o", "jsonpath={.items[*].spec.nodeName}"]);
    assert!(placed.contains("node-2"), "{placed}");

    assert_eq!(
        c.orrery_ok(&["node", "stop", "node-2"]),
        "orrery: node node-2 stopped\n"
    );
    assert_eq!(
        c.orrery_ok(&["node", "stop", "node-2"]),
        "orrery: node node-2 was already stopped\n"
    );
    // The node lifecycle controller notices the silence...
    let ready = "jsonpath={.status.conditions[?(@.type==\"Ready\")].status} {.status.conditions[?(@.type==\"Ready\")].message}";
    let text = c.eventually(&["get", "node", "node-2", "-o", ready], 20, |t| {
        t.starts_with("Unknown")
    });
    assert_eq!(text, "Unknown Kubelet stopped posting node status.");
    let taints = c.eventually(
        &[
            "get",
            "node",
            "node-2",
            "-o",
            "jsonpath={.spec.taints[*].key}:{.spec.taints[*].effect}",
        ],
        10,
        |t| t.contains("NoExecute"),
    );
    assert_eq!(
        taints,
        "node.kubernetes.io/unreachable node.kubernetes.io/unreachable:NoSchedule NoExecute"
    );
    assert!(
        rows(&c.ok(&["get", "nodes"]))
            .iter()
            .any(|r| r[..2] == ["node-2", "NotReady"])
    );
    // ...evicts its pods once their 2 s toleration is up, and the ReplicaSet replaces them on
    // the other nodes.
    // "<name> <node> <phase><deletionTimestamp>": a live pod's line ends with " Running".
    let live = "jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName} {.status.phase}{.metadata.deletionTimestamp}{\"\\n\"}{end}";
    c.eventually(&["get", "pods", "-o", live], 40, |t| {
        let running: Vec<&str> = t.lines().filter(|l| l.ends_with(" Running")).collect();
        running.len() == 6 && running.iter().all(|l| !l.contains(" node-2 "))
    });
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "reason=TaintManagerEviction",
        "-o",
        "name",
    ]);
    assert!(!events.is_empty(), "eviction events are recorded");

    // The kubelet comes back: the node is Ready again, loses its taints, and finishes deleting
    // the pods that were evicted from it.
    assert_eq!(
        c.orrery_ok(&["node", "start", "node-2"]),
        "orrery: node node-2 started\n"
    );
    c.eventually(&["get", "node", "node-2", "-o", ready], 20, |t| {
        t.starts_with("True")
    });
    c.eventually(
        &["get", "node", "node-2", "-o", "jsonpath={.spec.taints}"],
        20,
        |t| t.is_empty(),
    );
    c.eventually(
        &[
            "get",
            "pods",
            "--field-selector",
            "spec.nodeName=node-2",
            "-o",
            "name",
        ],
        30,
        |t| t.is_empty(),
    );

    let err = c.orrery(&["node", "stop", "node-9"]);
    assert!(!err.status.success());
    assert!(
        String::from_utf8_lossy(&err.stderr).contains("nodes \"node-9\" not found"),
        "{}",
        String::from_utf8_lossy(&err.stderr)
    );
}

#[test]
fn stopped_components_stop_working_until_started_again() {
    let c = Cluster::with_nodes(1);
    c.eventually(&["get", "nodes", "-o", "name"], 20, |t| {
        t.lines().count() == 2
    });

    // No scheduler: a new pod waits, unbound.
    assert_eq!(
        c.orrery_ok(&["component", "stop", "scheduler"]),
        "orrery: component scheduler stopped\n"
    );
    c.ok(&["run", "waiting", "--image=nginx"]);
    #[allow(clippy::disallowed_methods)] // a plain test thread, not a tokio worker
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(
        c.ok(&[
            "get",
            "pod",
            "waiting",
            "-o",
            "jsonpath={.spec.nodeName}|{.status.phase}"
        ]),
        "|Pending"
    );
    c.orrery_ok(&["component", "start", "scheduler"]);
    c.eventually(
        &["get", "pod", "waiting", "-o", "jsonpath={.status.phase}"],
        20,
        |t| t == "Running",
    );

    // No controller manager: a deployment gets no ReplicaSet.
    c.orrery_ok(&["component", "stop", "controller-manager"]);
    c.ok(&["create", "deployment", "later", "--image=nginx"]);
    #[allow(clippy::disallowed_methods)] // a plain test thread, not a tokio worker
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(c.ok(&["get", "rs", "-o", "name"]), "");
    c.orrery_ok(&["component", "start", "controller-manager"]);
    c.eventually(
        &["rollout", "status", "deployment/later", "--timeout=1s"],
        30,
        |_| true,
    );

    // No API server: kubectl gets 503, the control endpoints still answer, and a watch opened
    // before ends (as a stopped kube-apiserver's connections do).
    let mut watch = std::process::Command::new("kubectl")
        .args(["get", "pods", "--watch", "--request-timeout=0"])
        .env("KUBECONFIG", c.kubeconfig())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(watch.stdout.as_mut().unwrap()),
        &mut first,
    )
    .unwrap();
    assert!(first.contains("NAME"), "{first}");
    c.orrery_ok(&["component", "stop", "apiserver"]);
    let ended = (0..100).any(|_| {
        #[allow(clippy::disallowed_methods)] // a plain test thread, not a tokio worker
        std::thread::sleep(std::time::Duration::from_millis(100));
        watch.try_wait().unwrap().is_some()
    });
    if !ended {
        let _ = watch.kill();
    }
    let _ = watch.wait();
    assert!(ended, "a watch outlived the API server's stop");
    let err = c.fails(&["get", "pods"], None);
    assert!(
        err.contains("the API server is stopped")
            || err.contains("ServiceUnavailable")
            || err.contains("503"),
        "{err}"
    );
    // Nor does it ask who is asking: a stranger gets the same 503, not a 401.
    let stranger = std::process::Command::new("curl")
        .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(["-H", "Authorization: Bearer not.a.token"])
        .arg(format!("https://127.0.0.1:{}/api/v1/pods", c.port))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&stranger.stdout), "503");
    c.orrery_ok(&["component", "start", "apiserver"]);
    assert!(c.ok(&["get", "pods"]).contains("waiting"));

    let err = c.orrery(&["component", "stop", "etcd"]);
    assert!(!err.status.success());
    let said = String::from_utf8_lossy(&err.stderr);
    assert!(said.contains("components \"etcd\" not found"), "{said}");
}

#[test]
fn init_containers_run_in_order_before_the_containers() {
    let c = Cluster::with_nodes(1);
    let pod = r#"
apiVersion: v1
kind: Pod
metadata: {name: with-init}
spec:
  initContainers:
  - {name: first, image: busybox, command: ["sh", "-c", "echo one; sleep 1"]}
  - {name: second, image: busybox, command: ["sh", "-c", "echo two"]}
  containers:
  - {name: app, image: nginx}
---
apiVersion: v1
kind: Pod
metadata: {name: bad-init}
spec:
  restartPolicy: Never
  initContainers:
  - {name: fails, image: busybox, command: ["sh", "-c", "exit 2"]}
  containers:
  - {name: app, image: nginx}
---
apiVersion: v1
kind: Pod
metadata: {name: retried-init}
spec:
  initContainers:
  - {name: fails, image: busybox, command: ["sh", "-c", "exit 1"]}
  containers:
  - {name: app, image: nginx}
"#;
    c.ok_with(&["apply", "-f", "-"], Some(pod));
    // While the first init container runs, the pod is initializing.
    let status = "jsonpath={.status.phase} {.status.conditions[?(@.type==\"Initialized\")].status}";
    let text = c.eventually(&["get", "pod", "with-init", "-o", status], 20, |t| {
        t.starts_with("Pending False") || t.starts_with("Running")
    });
    assert_eq!(
        text, "Pending False",
        "the 1 s init container is still running"
    );
    c.eventually(&["get", "pod", "with-init", "-o", status], 20, |t| {
        t == "Running True"
    });
    let inits = c.ok(&[
        "get",
        "pod",
        "with-init",
        "-o",
        "jsonpath={range .status.initContainerStatuses[*]}{.name}={.state.terminated.reason},{.ready};{end}",
    ]);
    assert_eq!(inits, "first=Completed,true;second=Completed,true;");
    // The init containers started in order.
    let started = c.ok(&[
        "get",
        "pod",
        "with-init",
        "-o",
        "jsonpath={.status.initContainerStatuses[0].state.terminated.finishedAt}<={.status.initContainerStatuses[1].state.terminated.startedAt}",
    ]);
    let (a, b) = started.split_once("<=").unwrap();
    assert!(a <= b, "{started}");
    assert_eq!(c.ok(&["logs", "with-init", "-c", "second"]), "two\n");

    // A failed init container with restartPolicy Never fails the pod; the app never starts.
    c.eventually(
        &["get", "pod", "bad-init", "-o", "jsonpath={.status.phase}"],
        20,
        |t| t == "Failed",
    );
    let row = c.ok(&["get", "pod", "bad-init", "--no-headers"]);
    assert!(row.contains("Init:Error"), "{row}");
    assert_eq!(
        c.ok(&[
            "get",
            "pod",
            "bad-init",
            "-o",
            "jsonpath={.status.containerStatuses[0].state.waiting.reason}"
        ]),
        "PodInitializing"
    );
    // With restartPolicy Always it is retried with back-off.
    let row = c.eventually(&["get", "pod", "retried-init", "--no-headers"], 20, |t| {
        t.contains("Init:CrashLoopBackOff")
    });
    assert!(row.contains("Init:CrashLoopBackOff"), "{row}");
}
