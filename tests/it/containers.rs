//! Real containers, tried as a user would: `orrery up --runtime libcontainer` (root; CI runs as
//! root), the real `kubectl`, images from a real registry on 127.0.0.1 (built with umoci and
//! pushed with skopeo) and the built-in `orrery/hello`. Each test has its own cluster name and
//! pod network so that tests running side by side do not meet.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::registry::Registry;
use common::{Cluster, http_get};

fn jsonpath(c: &Cluster, what: &str, path: &str) -> String {
    c.ok(&["get", what, "-o", &format!("jsonpath={path}")])
}

fn running(c: &Cluster, pod: &str, seconds: u64) {
    c.eventually(
        &["get", "pod", pod, "-o", "jsonpath={.status.phase}"],
        seconds,
        |p| p == "Running",
    );
}

#[test]
fn busybox_from_a_local_registry_runs_logs_and_execs() {
    let Some(c) = Cluster::real("ctr-busybox", 1, "10.201.0.0/16") else {
        return;
    };
    let registry = Registry::start();
    let image = registry.push_busybox("1.36");
    c.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: bb}}
spec:
  containers:
  - name: main
    image: {image}
    command: ["sh", "-c", "echo hello from busybox; exec sleep 3600"]
"#
    ));
    running(&c, "bb", 60);
    c.eventually(&["logs", "bb"], 10, |l| l.contains("hello from busybox"));
    // The image really came from the registry through the image store.
    let ls = String::from_utf8_lossy(&c.orrery(&["image", "ls"]).stdout).into_owned();
    assert!(ls.contains(&format!("{}/busybox", registry.host)), "{ls}");
    // exec: output, hostname (the pod's), and the exit code.
    assert_eq!(
        c.ok(&["exec", "bb", "--", "echo", "in", "it"]).trim(),
        "in it"
    );
    assert_eq!(c.ok(&["exec", "bb", "--", "hostname"]).trim(), "bb");
    let out = c.kubectl(&["exec", "bb", "--", "sh", "-c", "exit 3"], None, &[]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("command terminated with exit code 3"),
        "{out:?}"
    );
    // -it: a terminal (util-linux's `script` gives kubectl one).
    let tty = Command::new("script")
        .args(["-qec"])
        .arg(format!(
            "kubectl --kubeconfig {} exec -it bb -- sh -c 'tty; exit 4'",
            c.kubeconfig().display()
        ))
        .arg("/dev/null")
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&tty.stdout);
    assert!(printed.contains("/dev/pts/"), "{printed}");
    assert_eq!(tty.status.code(), Some(4), "{printed}");
    // stdin
    let out = c.ok_with(&["exec", "-i", "bb", "--", "cat"], Some("through stdin\n"));
    assert_eq!(out, "through stdin\n");
    // kubectl cp runs tar through exec, both ways.
    let local = c.dir.path().join("note.txt");
    std::fs::write(&local, "copied in\n").unwrap();
    c.ok(&["cp", local.to_str().unwrap(), "bb:/tmp/note.txt"]);
    assert_eq!(
        c.ok(&["exec", "bb", "--", "cat", "/tmp/note.txt"]),
        "copied in\n"
    );
    let back = c.dir.path().join("back.txt");
    c.ok(&["cp", "bb:/tmp/note.txt", back.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(back).unwrap(), "copied in\n");
    // A tag the registry does not have: ErrImagePull with the registry's words, then back-off.
    c.ok(&[
        "run",
        "missing",
        &format!("--image={}/busybox:nope", registry.host),
    ]);
    let reason = c.eventually(
        &[
            "get",
            "pod",
            "missing",
            "-o",
            "jsonpath={.status.containerStatuses[0].state.waiting.reason}",
        ],
        30,
        |r| r == "ImagePullBackOff",
    );
    assert_eq!(reason, "ImagePullBackOff");
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=missing",
    ]);
    assert!(events.contains("manifest unknown"), "{events}");
}

#[test]
fn hello_answers_over_the_pod_ip_and_through_port_forward() {
    let Some(c) = Cluster::real("ctr-hello", 2, "10.202.0.0/16") else {
        return;
    };
    c.ok(&[
        "create",
        "deployment",
        "hello",
        "--image=orrery/hello:v1",
        "--replicas=2",
    ]);
    c.eventually(
        &[
            "get",
            "deploy",
            "hello",
            "-o",
            "jsonpath={.status.availableReplicas}",
        ],
        60,
        |n| n == "2",
    );
    let names = jsonpath(&c, "pods", "{.items[*].metadata.name}");
    let ips = jsonpath(&c, "pods", "{.items[*].status.podIP}");
    let nodes = jsonpath(&c, "pods", "{.items[*].spec.nodeName}");
    for ((name, ip), node) in names
        .split_whitespace()
        .zip(ips.split_whitespace())
        .zip(nodes.split_whitespace())
    {
        // The pod's IP is in its node's pod CIDR.
        let cidr = c.ok(&["get", "node", node, "-o", "jsonpath={.spec.podCIDR}"]);
        let prefix = cidr.trim_end_matches("0/24");
        assert!(ip.starts_with(prefix), "{ip} not in {cidr}");
        let answer = http_get(&format!("{ip}:8080"));
        assert!(
            answer.contains(&format!("Hello from {name} in default at {ip}")),
            "{answer}"
        );
    }
    // Pod to pod, across nodes: one pod's hello reached from the other pod... through a
    // container that has no shell: use port-forward from the host instead, and check that the
    // two pods are on different nodes (the scheduler spreads replicas).
    let distinct: std::collections::BTreeSet<&str> = nodes.split_whitespace().collect();
    assert_eq!(distinct.len(), 2, "{nodes}");
    let first = names.split_whitespace().next().unwrap().to_owned();
    let mut forward = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(c.kubeconfig())
        .args(["port-forward", &format!("pod/{first}"), ":8080"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut output = BufReader::new(forward.stdout.take().unwrap());
    output.read_line(&mut line).unwrap();
    // kubectl goes on writing "Handling connection for ..." there: keep reading it.
    std::thread::spawn(move || std::io::copy(&mut output, &mut std::io::sink()));
    // "Forwarding from 127.0.0.1:41234 -> 8080"
    let local = line
        .split_whitespace()
        .nth(2)
        .unwrap_or_else(|| panic!("unexpected port-forward output {line:?}"))
        .to_owned();
    let answer = http_get(&local);
    let _ = forward.kill();
    let _ = forward.wait();
    assert!(answer.contains(&format!("Hello from {first}")), "{answer}");
}

#[test]
fn containers_of_a_pod_share_localhost_and_follow_logs() {
    let Some(c) = Cluster::real("ctr-pod", 1, "10.203.0.0/16") else {
        return;
    };
    let registry = Registry::start();
    let image = registry.push_busybox("1");
    c.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: duo}}
spec:
  containers:
  - name: web
    image: orrery/hello:v1
  - name: client
    image: {image}
    command: ["sh", "-c", "until wget -qO- http://localhost:8080/; do sleep 0.2; done; exec sleep 3600"]
---
apiVersion: v1
kind: Pod
metadata: {{name: counter}}
spec:
  restartPolicy: Never
  containers:
  - name: count
    image: {image}
    command: ["sh", "-c", "for i in 1 2 3 4 5; do echo line $i; sleep 0.3; done"]
"#
    ));
    running(&c, "duo", 60);
    c.eventually(&["logs", "duo", "-c", "client"], 20, |l| {
        l.contains("Hello from duo in default")
    });
    // `logs -f` follows until the container ends, and has every line.
    let follow = c.ok(&["logs", "-f", "counter"]);
    for i in 1..=5 {
        assert!(follow.contains(&format!("line {i}")), "{follow}");
    }
    let tail = c.ok(&["logs", "counter", "--tail=1"]);
    assert_eq!(tail.trim(), "line 5");
    let stamped = c.ok(&["logs", "counter", "--timestamps", "--tail=1"]);
    assert!(
        stamped.contains('T') && stamped.contains("Z line 5"),
        "{stamped}"
    );
}

#[test]
fn oom_crash_loops_init_order_and_readiness() {
    let Some(c) = Cluster::real("ctr-life", 1, "10.204.0.0/16") else {
        return;
    };
    let registry = Registry::start();
    let image = registry.push_busybox("1");
    c.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: hog}}
spec:
  restartPolicy: Never
  containers:
  - name: hog
    image: {image}
    command: ["sh", "-c", "x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done"]
    resources: {{limits: {{memory: 32Mi}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: crash}}
spec:
  containers:
  - name: crash
    image: {image}
    command: ["sh", "-c", "echo crashing; exit 1"]
---
apiVersion: v1
kind: Pod
metadata: {{name: ordered}}
spec:
  restartPolicy: Never
  volumes: [{{name: shared, emptyDir: {{}}}}]
  initContainers:
  - {{name: first, image: "{image}", command: ["sh", "-c", "echo first >> /shared/order"], volumeMounts: [{{name: shared, mountPath: /shared}}]}}
  - {{name: second, image: "{image}", command: ["sh", "-c", "echo second >> /shared/order"], volumeMounts: [{{name: shared, mountPath: /shared}}]}}
  containers:
  - {{name: main, image: "{image}", command: ["cat", "/shared/order"], volumeMounts: [{{name: shared, mountPath: /shared}}]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: gated}}
spec:
  containers:
  - name: app
    image: {image}
    command: ["sleep", "3600"]
    readinessProbe:
      exec: {{command: ["cat", "/tmp/ready"]}}
      periodSeconds: 1
"#
    ));
    let oom = c.eventually(
        &[
            "get",
            "pod",
            "hog",
            "-o",
            "jsonpath={.status.containerStatuses[0].state.terminated.reason} {.status.containerStatuses[0].state.terminated.exitCode}",
        ],
        60,
        |r| !r.trim().is_empty(),
    );
    assert_eq!(oom.trim(), "OOMKilled 137");
    let ordered = c.eventually(
        &["get", "pod", "ordered", "-o", "jsonpath={.status.phase}"],
        60,
        |p| p == "Succeeded",
    );
    assert_eq!(ordered, "Succeeded");
    assert_eq!(c.ok(&["logs", "ordered"]), "first\nsecond\n");
    // Readiness gates Ready until the probe passes.
    running(&c, "gated", 60);
    let ready = || {
        jsonpath(
            &c,
            "pod/gated",
            "{.status.conditions[?(@.type==\"Ready\")].status}",
        )
    };
    assert_eq!(ready(), "False");
    c.ok(&["exec", "gated", "--", "touch", "/tmp/ready"]);
    c.eventually(
        &[
            "get",
            "pod",
            "gated",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ],
        20,
        |s| s == "True",
    );
    // The crashing container loops with growing restarts and back-off.
    let status = c.eventually(
        &[
            "get",
            "pod",
            "crash",
            "-o",
            "jsonpath={.status.containerStatuses[0].restartCount} {.status.containerStatuses[0].state.waiting.reason}",
        ],
        60,
        |s| {
            let mut parts = s.split_whitespace();
            let restarts: u32 = parts.next().and_then(|n| n.parse().ok()).unwrap_or(0);
            restarts >= 2 && parts.next() == Some("CrashLoopBackOff")
        },
    );
    assert!(status.ends_with("CrashLoopBackOff"), "{status}");
    assert!(c.ok(&["logs", "crash", "--previous"]).contains("crashing"));
}

/// What a cluster named `name` may have left on the host.
fn leftovers(name: &str, state_dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    let cgroup_path = format!("/orrery/{name}");
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if pid.parse::<u32>().is_err() {
            continue;
        }
        if let Ok(cgroups) = std::fs::read_to_string(entry.path().join("cgroup"))
            && cgroups.lines().any(|l| l.contains(&cgroup_path))
        {
            found.push(format!("process {pid} in {cgroup_path}"));
        }
    }
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let dir = hierarchy.path().join("orrery").join(name);
        if dir.exists() {
            found.push(format!("cgroup {}", dir.display()));
        }
    }
    let unified = std::path::Path::new("/sys/fs/cgroup/unified/orrery").join(name);
    if unified.exists() {
        found.push(format!("cgroup {}", unified.display()));
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let state = state_dir.to_string_lossy().into_owned();
    for line in mounts.lines().filter(|l| l.contains(&state)) {
        found.push(format!("mount {line}"));
    }
    let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    for line in String::from_utf8_lossy(&netns.stdout).lines() {
        if line.contains(name) {
            found.push(format!("netns {line}"));
        }
    }
    let links = Command::new("ip").args(["-o", "link"]).output().unwrap();
    let bridge = format!("orr-{name}");
    let bridge = &bridge[..bridge.len().min(15)];
    for line in String::from_utf8_lossy(&links.stdout).lines() {
        if line.contains(bridge) {
            found.push(format!("link {line}"));
        }
    }
    found
}

#[test]
#[allow(clippy::disallowed_methods)] // a plain test thread, not a tokio worker
fn down_leaves_nothing_and_up_brings_the_pods_back() {
    let Some(c) = Cluster::real("ctr-down", 2, "10.205.0.0/16") else {
        return;
    };
    c.ok(&[
        "create",
        "deployment",
        "hello",
        "--image=orrery/hello:v1",
        "--replicas=3",
    ]);
    c.eventually(
        &[
            "get",
            "deploy",
            "hello",
            "-o",
            "jsonpath={.status.availableReplicas}",
        ],
        60,
        |n| n == "3",
    );
    let before = jsonpath(
        &c,
        "pods",
        "{.items[*].status.containerStatuses[0].containerID}",
    );
    assert!(before.split_whitespace().count() == 3, "{before}");
    let state_dir = c.dir.path().to_owned();
    assert!(
        !leftovers("ctr-down", &state_dir).is_empty(),
        "a running cluster shows up"
    );
    let dir = c.down();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = leftovers("ctr-down", dir.path());
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left behind after down: {left:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Up again on the same state dir: the pods come back, with new containers.
    let c = Cluster::start_in(
        dir,
        &[
            "--no-kubeconfig-merge",
            "--name",
            "ctr-down",
            "--nodes",
            "2",
            "--runtime",
            "libcontainer",
            "--cluster-cidr",
            "10.205.0.0/16",
        ],
    );
    // The statuses written before `down` still say Running: wait for the kubelets to report
    // the three new containers (a different id for each), all running.
    let old: Vec<String> = before.split_whitespace().map(str::to_owned).collect();
    c.eventually(
        &[
            "get",
            "pods",
            "-o",
            "jsonpath={range .items[*]}{.status.containerStatuses[0].containerID} {.status.containerStatuses[0].state.running.startedAt}{\"\\n\"}{end}",
        ],
        60,
        |s| {
            let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
            lines.len() == 3
                && lines.iter().all(|l| {
                    let mut words = l.split_whitespace();
                    let id = words.next().unwrap_or_default();
                    words.next().is_some() && !id.is_empty() && !old.iter().any(|o| o == id)
                })
        },
    );
    let ip = jsonpath(&c, "pods", "{.items[0].status.podIP}");
    assert!(http_get(&format!("{ip}:8080")).contains("Hello from"));
}

/// The state a deleted pod's only container ended in, as the last event before `DELETED`
/// showed it: `(phase, Ready reason, exit code, reason, containerID)`.
fn ended(c: &Cluster, pod: &str) -> (String, String, i32, String, String) {
    let running = jsonpath(
        c,
        &format!("pod/{pod}"),
        "{.status.containerStatuses[0].containerID}",
    );
    let events = c.delete_pod_watching("default", pod, 60);
    let last = common::last_before_deleted(&events);
    let status = last.status.clone().unwrap();
    let ready = status
        .conditions
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    let app = &status.container_statuses.unwrap()[0];
    assert!(!app.ready);
    let t = app.state.clone().unwrap().terminated.unwrap();
    assert!(t.started_at.is_some() && t.finished_at.is_some(), "{t:?}");
    assert_eq!(t.container_id.as_deref(), Some(running.as_str()));
    (
        status.phase.unwrap(),
        format!("{} {}", ready.status, ready.reason.unwrap_or_default()),
        t.exit_code,
        t.reason.unwrap_or_default(),
        t.container_id.unwrap_or_default(),
    )
}

#[test]
fn deleted_pods_end_with_their_containers_exit_before_they_go() {
    let Some(c) = Cluster::real("ctr-term", 1, "10.217.0.0/16") else {
        return;
    };
    c.apply(
        r#"apiVersion: v1
kind: Pod
metadata: {name: hello}
spec:
  initContainers:
  - {name: setup, image: orrery/hello, command: ["/orrery", "exit", "0"]}
  containers:
  - {name: hello, image: orrery/hello}
---
apiVersion: v1
kind: Pod
metadata: {name: sleeper}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: sleeper, image: orrery/hello, command: ["/orrery", "sleep", "3600"]}
"#,
    );
    for pod in ["hello", "sleeper"] {
        c.eventually(
            &[
                "get",
                "pod",
                pod,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ],
            60,
            |t| t == "True",
        );
    }
    // hello ends cleanly on SIGTERM: its container Completed, the pod Succeeded.
    let (phase, ready, code, reason, id) = ended(&c, "hello");
    assert_eq!(
        (phase.as_str(), ready.as_str(), code, reason.as_str()),
        ("Succeeded", "False PodCompleted", 0, "Completed")
    );
    assert!(id.starts_with("libcontainer://"), "{id}");
    // `sleep`, the init of its pid namespace, has no SIGTERM handler: the signal is ignored
    // and SIGKILL ends it when its 1 s grace is up.
    let (phase, ready, code, reason, _) = ended(&c, "sleeper");
    assert_eq!(
        (phase.as_str(), ready.as_str(), code, reason.as_str()),
        ("Failed", "False PodFailed", 137, "Error")
    );
}
