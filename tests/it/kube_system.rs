//! `kube-system` as on a kubeadm cluster, through the real kubectl: a control-plane node,
//! labelled and tainted, whose kubelet shows the control plane as mirror pods of static pods;
//! their status follows the components (`orrery component stop|start`), and `kubectl logs`
//! shows each component's own lines.

use crate::common;

use common::{Cluster, rows};

const NODE: &str = "orrery-control-plane";

/// Waits (20 s at most) until the Ready conditions of the kube-system pods read `expected`.
fn wait_ready_conditions(c: &Cluster, expected: &str) {
    c.eventually(
        &[
            "get",
            "pods",
            "-n",
            "kube-system",
            "-o",
            "jsonpath={.items[*].status.conditions[?(@.type==\"Ready\")].status}",
        ],
        20,
        |t| t == expected,
    );
}

/// Waits until every kube-system pod is Running with its container ready.
fn wait_control_plane_ready(c: &Cluster) -> String {
    c.eventually(
        &[
            "get",
            "pods",
            "-n",
            "kube-system",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.status.phase} {.status.containerStatuses[0].ready}{\"\\n\"}{end}",
        ],
        30,
        |t| t.lines().count() == 4 && t.lines().all(|l| l.ends_with(" Running true")),
    )
}

#[test]
fn the_control_plane_runs_as_static_pods_on_a_tainted_control_plane_node() {
    let c = Cluster::with_nodes(1);
    let pods = wait_control_plane_ready(&c);
    let names: Vec<&str> = pods.lines().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(
        names,
        [
            format!("kube-apiserver-{NODE}"),
            format!("kube-controller-manager-{NODE}"),
            format!("kube-scheduler-{NODE}"),
            format!("orrery-store-{NODE}"),
        ]
    );

    // The node: Ready, with kubeadm's role label and taint; the worker has no role.
    let nodes = rows(&c.ok(&["get", "nodes"]));
    assert_eq!(nodes[0][..3], ["NAME", "STATUS", "ROLES"]);
    assert_eq!(nodes[1][..3], ["node-1", "Ready", "<none>"]);
    assert_eq!(nodes[2][..3], [NODE, "Ready", "control-plane"]);
    assert_eq!(
        c.ok(&["get", "node", NODE, "-o", "jsonpath={.spec.taints}"]),
        r#"[{"effect":"NoSchedule","key":"node-role.kubernetes.io/control-plane"}]"#
    );
    assert_eq!(
        c.ok(&[
            "get",
            "lease",
            "-n",
            "kube-node-lease",
            NODE,
            "-o",
            "jsonpath={.spec.holderIdentity}"
        ]),
        NODE
    );

    // A mirror pod as the kubelet makes it.
    let pod = format!("kube-scheduler-{NODE}");
    let get = |jsonpath: &str| {
        c.ok(&[
            "get",
            "pod",
            "-n",
            "kube-system",
            &pod,
            "-o",
            &format!("jsonpath={jsonpath}"),
        ])
    };
    let hash = get("{.metadata.annotations.kubernetes\\.io/config\\.hash}");
    assert_eq!(hash.len(), 32, "{hash}");
    assert_eq!(
        get("{.metadata.annotations.kubernetes\\.io/config\\.mirror}"),
        hash
    );
    assert_eq!(
        get("{.metadata.annotations.kubernetes\\.io/config\\.source}"),
        "file"
    );
    assert_eq!(
        get("{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}"),
        format!("Node/{NODE}")
    );
    assert_eq!(
        get("{.metadata.labels.component} {.metadata.labels.tier}"),
        "kube-scheduler control-plane"
    );
    assert_eq!(
        get("{.spec.priorityClassName} {.spec.priority} {.spec.hostNetwork} {.status.podIP}"),
        // The host's network: the node's own address (a loopback one on the simulated runtime).
        format!(
            "system-node-critical 2000001000 true {}",
            orrery::kubelet::sim_address(0)
        )
    );
    assert_eq!(
        get("{.spec.containers[0].image}"),
        "registry.k8s.io/kube-scheduler:v1.33.0"
    );
    assert!(
        get("{.metadata.annotations.orrery\\.dev/in-process}")
            .contains("runs inside the `orrery up` process"),
    );
    // The manifest it mirrors is where kubeadm would keep it.
    assert!(
        c.dir
            .path()
            .join("kubernetes/manifests/kube-scheduler.yaml")
            .exists()
    );

    // Workloads stay off the tainted node; the scheduler's log says where they went.
    c.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx",
        "--replicas=2",
    ]);
    c.eventually(
        &["rollout", "status", "deployment/web", "--timeout=1s"],
        30,
        |_| true,
    );
    assert_eq!(
        c.ok(&["get", "pods", "-o", "jsonpath={.items[*].spec.nodeName}"]),
        "node-1 node-1"
    );
    let web = c.ok(&["get", "pods", "-o", "jsonpath={.items[0].metadata.name}"]);
    let log = c.eventually(&["logs", "-n", "kube-system", &pod], 10, |t| {
        t.contains(&format!(
            "\"Successfully bound pod to node\" pod=\"default/{web}\" node=\"node-1\" evaluatedNodes=2 feasibleNodes=1"
        ))
    });
    let first = log.lines().next().unwrap();
    assert!(first.starts_with('I'), "klog lines: {first}");
    assert!(
        first.contains("\"Starting Kubernetes Scheduler\" version=\"v1.33.0\""),
        "{log}"
    );
    // An unschedulable pod: the scheduler says why, in its log too.
    c.ok(&["run", "huge", "--image=nginx", "--overrides", r#"{"spec":{"containers":[{"name":"huge","image":"nginx","resources":{"requests":{"cpu":"64"}}}]}}"#]);
    c.eventually(&["logs", "-n", "kube-system", &pod, "--tail=1"], 10, |t| {
        t.contains("\"Unable to schedule pod; no fit; waiting\" pod=\"default/huge\" err=\"0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }.")
    });
    let stamped = c.ok(&[
        "logs",
        "-n",
        "kube-system",
        &pod,
        "--tail=1",
        "--timestamps",
    ]);
    let (stamp, line) = stamped.split_once(' ').unwrap();
    assert!(stamp.parse::<jiff::Timestamp>().is_ok(), "{stamped}");
    assert!(line.starts_with('I'), "{stamped}");

    // The controller manager's and the API server's own lines.
    let controllers = c.ok(&[
        "logs",
        "-n",
        "kube-system",
        &format!("kube-controller-manager-{NODE}"),
    ]);
    assert!(
        controllers.contains(
            "logger=\"replicaset-controller\" verb=\"SCALE UP\" replicaSet=\"default/web-"
        ),
        "{controllers}"
    );
    assert!(controllers.contains("\"Started controller\" controller=\"daemonset-controller\""));
    // Its own acts only: the requests it sent are the API server's lines.
    assert!(
        !controllers.contains("verb=\"LIST\"") && !controllers.contains("verb=\"WATCH\""),
        "{controllers}"
    );
    let apiserver = c.ok(&[
        "logs",
        "-n",
        "kube-system",
        &format!("kube-apiserver-{NODE}"),
    ]);
    assert!(
        apiserver
            .contains("\"HTTP\" verb=\"POST\" URI=\"/apis/apps/v1/namespaces/default/deployments")
            && apiserver.contains("resp=201"),
        "{apiserver}"
    );
    let store = c.ok(&["logs", "-n", "kube-system", &format!("orrery-store-{NODE}")]);
    assert!(store.contains("\"Opened the embedded store\""), "{store}");
}

#[test]
fn a_stopped_component_makes_its_pod_not_ready_until_it_comes_back() {
    let c = Cluster::with_nodes(1);
    wait_control_plane_ready(&c);
    let pod = format!("kube-scheduler-{NODE}");
    let state = || {
        c.ok(&[
            "get", "pod", "-n", "kube-system", &pod, "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status} {.status.containerStatuses[0].restartCount} {.status.containerStatuses[0].state}",
        ])
    };
    assert!(state().starts_with("True 0 {\"running\""), "{}", state());

    c.orrery_ok(&["component", "stop", "scheduler"]);
    let stopped = c.eventually(
        &["get", "pod", "-n", "kube-system", &pod, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status} {.status.containerStatuses[0].state.terminated.exitCode}"],
        10,
        |t| t == "False 137",
    );
    assert_eq!(stopped, "False 137");
    let table = rows(&c.ok(&["get", "pods", "-n", "kube-system"]));
    let row = table.iter().find(|r| r[0] == pod).unwrap();
    assert_eq!(row[1], "0/1", "{table:?}");
    // The other components are untouched.
    let ready = c.ok(&[
        "get",
        "pod",
        "-n",
        "kube-system",
        &format!("kube-controller-manager-{NODE}"),
        "-o",
        "jsonpath={.status.containerStatuses[0].ready}",
    ]);
    assert_eq!(ready, "true");

    c.orrery_ok(&["component", "start", "scheduler"]);
    c.eventually(
        &["get", "pod", "-n", "kube-system", &pod, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status} {.status.containerStatuses[0].restartCount} {.status.containerStatuses[0].lastState.terminated.exitCode}"],
        10,
        |t| t == "True 1 137",
    );
    // The new run's log starts afresh; the one before is --previous.
    let current = c.ok(&["logs", "-n", "kube-system", &pod]);
    assert_eq!(
        current.matches("Starting Kubernetes Scheduler").count(),
        1,
        "{current}"
    );
    let previous = c.ok(&["logs", "-n", "kube-system", &pod, "--previous"]);
    assert!(
        previous.contains("Starting Kubernetes Scheduler"),
        "{previous}"
    );

    // Deleted through the API, a mirror pod is made again (with a new UID).
    let uid = c.ok(&[
        "get",
        "pod",
        "-n",
        "kube-system",
        &pod,
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    c.ok(&["delete", "pod", "-n", "kube-system", &pod, "--wait=false"]);
    c.eventually(
        &[
            "get",
            "pod",
            "-n",
            "kube-system",
            &pod,
            "-o",
            "jsonpath={.metadata.uid} {.status.phase}",
        ],
        15,
        |t| !t.starts_with(&uid) && t.ends_with(" Running"),
    );
    // A status someone else wrote is put right, as the kubelet's status manager does.
    c.ok(&[
        "patch", "pod", "-n", "kube-system", &pod, "--subresource=status", "--type=merge", "-p",
        r#"{"status":{"containerStatuses":[{"name":"kube-scheduler","image":"x","imageID":"","ready":false,"restartCount":0}]}}"#,
    ]);
    c.eventually(
        &["get", "pod", "-n", "kube-system", &pod, "-o", "jsonpath={.status.containerStatuses[0].ready} {.status.containerStatuses[0].restartCount}"],
        10,
        |t| t == "true 1",
    );
    // Nothing to exec into: it is not a container.
    let err = c.fails(&["exec", "-n", "kube-system", &pod, "--", "true"], None);
    assert!(err.contains("in-process component"), "{err}");
}

#[test]
fn daemonsets_reach_the_control_plane_node_only_when_they_tolerate_its_taint() {
    let c = Cluster::with_nodes(2);
    wait_control_plane_ready(&c);
    let ds = |name: &str, tolerations: &str| {
        format!(
            "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {{name: {name}}}\nspec:\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      containers: [{{name: c, image: nginx}}]\n{tolerations}"
        )
    };
    c.apply(&ds("plain", ""));
    c.apply(&ds(
        "everywhere",
        "      tolerations: [{key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule}]\n",
    ));
    let placed = |app: &str| {
        c.eventually(
            &[
                "get",
                "pods",
                "-l",
                &format!("app={app}"),
                "-o",
                "jsonpath={range .items[*]}{.spec.nodeName}={.status.phase}{\"\\n\"}{end}",
            ],
            30,
            |t| !t.is_empty() && t.lines().all(|l| l.ends_with("=Running")),
        )
    };
    let mut plain: Vec<String> = placed("plain").lines().map(str::to_owned).collect();
    plain.sort();
    assert_eq!(plain, ["node-1=Running", "node-2=Running"]);
    let everywhere = c.eventually(
        &[
            "get",
            "pods",
            "-l",
            "app=everywhere",
            "-o",
            "jsonpath={range .items[*]}{.spec.nodeName}={.status.phase}{\"\\n\"}{end}",
        ],
        30,
        |t| t.lines().count() == 3 && t.lines().all(|l| l.ends_with("=Running")),
    );
    let mut everywhere: Vec<&str> = everywhere.lines().collect();
    everywhere.sort();
    assert_eq!(
        everywhere,
        [
            "node-1=Running",
            "node-2=Running",
            &format!("{NODE}=Running")
        ]
    );
    // It runs on the control-plane node's own share of the pod network, as on kind.
    let ip = c.ok(&[
        "get",
        "pods",
        "-l",
        "app=everywhere",
        "--field-selector",
        &format!("spec.nodeName={NODE}"),
        "-o",
        "jsonpath={.items[0].status.podIP}",
    ]);
    assert!(ip.starts_with("10.244.0."), "{ip}");
}

#[test]
fn a_pod_tolerating_the_taint_runs_in_real_containers_on_the_control_plane_node() {
    let Some(c) = Cluster::real("cp-real", 1, "10.231.0.0/16") else {
        return;
    };
    let node = "cp-real-control-plane";
    wait_control_plane_ready(&c);
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: hello}}\nspec:\n  nodeSelector: {{kubernetes.io/hostname: {node}}}\n  tolerations: [{{key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule}}]\n  containers: [{{name: hello, image: \"orrery/hello:v1\"}}]\n"
    ));
    let placed = c.eventually(
        &[
            "get",
            "pod",
            "hello",
            "-o",
            "jsonpath={.spec.nodeName} {.status.phase} {.status.podIP}",
        ],
        60,
        |t| t.contains(" Running 10."),
    );
    let (on, rest) = placed.split_once(' ').unwrap();
    assert_eq!(on, node);
    let ip = rest.split(' ').nth(1).unwrap();
    assert!(
        ip.starts_with("10.231.0."),
        "the control-plane node's /24: {ip}"
    );
    let answer = common::http_get(&format!("{ip}:8080"));
    assert!(answer.contains("Hello from hello in default"), "{answer}");
}

#[test]
fn a_stopped_control_plane_kubelet_leaves_its_pods_unready_until_it_is_back() {
    let c = Cluster::with_quick_node_monitor(1, &[]);
    wait_control_plane_ready(&c);
    c.orrery_ok(&["node", "stop", NODE]);
    // The node lifecycle controller marks the silent node's pods not ready; its components
    // still run, but nobody reports them.
    wait_ready_conditions(&c, "False False False False");
    // Back: the kubelet writes the components' true state again.
    c.orrery_ok(&["node", "start", NODE]);
    wait_control_plane_ready(&c);
    wait_ready_conditions(&c, "True True True True");
}

/// With `--store etcd=URL`, the store's pod is kubeadm's `etcd-<node>`, pointing at that etcd.
#[cfg(feature = "etcd")]
#[test]
fn with_etcd_the_store_pod_is_etcd() {
    use orrery::store::etcd::LocalEtcd;
    if !common::etcd_available() {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let etcd = runtime.block_on(LocalEtcd::start(None)).unwrap();
    let store = format!("etcd={}", etcd.endpoint);
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start_in(
        dir,
        &[
            "--no-kubeconfig-merge",
            "--nodes",
            "1",
            "--runtime",
            "sim",
            "--store",
            &store,
        ],
    );
    let pods = wait_control_plane_ready(&c);
    assert!(
        pods.contains(&format!("etcd-{NODE} Running true")),
        "{pods}"
    );
    assert!(!pods.contains("orrery-store"), "{pods}");
    let pod = format!("etcd-{NODE}");
    assert_eq!(
        c.ok(&[
            "get",
            "pod",
            "-n",
            "kube-system",
            &pod,
            "-o",
            "jsonpath={.spec.containers[0].image} {.spec.containers[0].command[1]}"
        ]),
        format!(
            "registry.k8s.io/etcd:3.5.21-0 --advertise-client-urls={}",
            etcd.endpoint
        )
    );
    let log = c.ok(&["logs", "-n", "kube-system", &pod]);
    assert!(
        log.contains(&format!(
            "\"Connected to etcd\" endpoints=\"{}\"",
            etcd.endpoint
        )),
        "{log}"
    );
    drop(c);
    drop(etcd);
}
