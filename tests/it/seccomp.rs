//! `securityContext.seccompProfile` and `privileged` on real containers (`orrery up` with
//! libcontainer, as root), looked at from inside the container: `RuntimeDefault` puts the
//! container under a seccomp filter (`/proc/self/status` says `Seccomp: 2`), the default
//! (unset) leaves it unconfined, a missing `Localhost` profile fails the container with
//! containerd's words, and a privileged container runs unconfined with every capability.
//! Pods asking for host namespaces are refused by the kubelet, on any runtime.

use crate::common;

use common::Cluster;
use common::registry::Registry;

#[test]
fn runtime_default_seccomp_filters_the_container() {
    let Some(c) = Cluster::real("seccomp", 1, "10.236.0.0/16") else {
        return;
    };
    let registry = Registry::start();
    let image = registry.push_busybox("1.36");
    let script = "grep -E '^(Seccomp|CapEff):' /proc/self/status; exec sleep 3600";
    c.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: filtered}}
spec:
  securityContext:
    seccompProfile: {{type: RuntimeDefault}}
  containers:
  - name: main
    image: {image}
    command: ["sh", "-c", "{script}"]
  - name: unconfined
    image: {image}
    command: ["sh", "-c", "{script}"]
    securityContext:
      seccompProfile: {{type: Unconfined}}
---
apiVersion: v1
kind: Pod
metadata: {{name: plain}}
spec:
  containers:
  - name: main
    image: {image}
    command: ["sh", "-c", "{script}"]
---
apiVersion: v1
kind: Pod
metadata: {{name: privileged}}
spec:
  securityContext:
    seccompProfile: {{type: RuntimeDefault}}
  containers:
  - name: main
    image: {image}
    command: ["sh", "-c", "{script}"]
    securityContext: {{privileged: true}}
---
apiVersion: v1
kind: Pod
metadata: {{name: missing}}
spec:
  containers:
  - name: main
    image: {image}
    command: ["sh", "-c", "{script}"]
    securityContext:
      seccompProfile: {{type: Localhost, localhostProfile: profiles/nope.json}}
"#
    ));
    let logs = |pod: &str, container: &str, seccomp: &str| {
        c.eventually(&["logs", pod, "-c", container], 60, |l| {
            l.contains(&format!("Seccomp:\t{seccomp}"))
        })
    };
    // The pod's RuntimeDefault: filtered; the container's Unconfined overrides it.
    logs("filtered", "main", "2");
    logs("filtered", "unconfined", "0");
    // Unset: unconfined, as in Kubernetes.
    logs("plain", "main", "0");
    // Privileged: unconfined, with every capability the runtime has (this process's bounding
    // set, which may lack some where the machine itself runs in a container).
    let privileged = logs("privileged", "main", "0");
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let bounding = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .unwrap()
        .trim();
    assert!(
        privileged.contains(&format!("CapEff:\t{bounding}")),
        "{privileged}"
    );
    // A Localhost profile that is not there: the container never runs.
    let message = c.eventually(
        &[
            "get",
            "pod",
            "missing",
            "-o",
            "jsonpath={.status.containerStatuses[0].state.waiting.message}",
        ],
        60,
        |m| m.contains("cannot load seccomp profile"),
    );
    assert!(message.contains("profiles/nope.json"), "{message}");
}

#[test]
fn host_namespaces_are_refused_with_a_reason() {
    let c = Cluster::with_nodes(1);
    c.apply(
        r#"apiVersion: v1
kind: Pod
metadata: {name: hostnet}
spec:
  hostNetwork: true
  containers:
  - name: main
    image: orrery/hello
"#,
    );
    let waiting = c.eventually(
        &[
            "get",
            "pod",
            "hostnet",
            "-o",
            "jsonpath={.status.containerStatuses[0].state.waiting.reason}: {.status.containerStatuses[0].state.waiting.message}",
        ],
        30,
        |w| w.starts_with("CreateContainerConfigError"),
    );
    assert!(
        waiting.contains("hostNetwork is not supported: Orrery's nodes are virtual"),
        "{waiting}"
    );
    let events = c.eventually(
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=hostnet",
        ],
        30,
        |e| e.contains("hostNetwork is not supported"),
    );
    assert!(events.contains("Failed"), "{events}");
}
