//! The kubelet's container features on the simulated runtime, driven with the real kubectl:
//! probes (the kubelet itself probes: a probe of a simulated pod reaches its simulated
//! programs in memory, and one with `host: 127.0.0.1` the node's loopback, where this test
//! runs a server), imagePullPolicy, env from ConfigMaps, and volumes written
//! under the kubelet's root (`<state-dir>/kubelet/node-1`).

use crate::common;

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::time::{Duration, Instant};

use common::Cluster;
use k8s_openapi::api::core::v1::Pod;

/// A tiny HTTP server on 127.0.0.1 answering every request with the status in `code`; it
/// stops when dropped (and after two minutes at most).
struct TestServer {
    port: u16,
    code: Arc<AtomicU16>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    #[allow(clippy::disallowed_methods)] // a plain test thread, not a tokio worker
    fn start(code: u16) -> TestServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let code = Arc::new(AtomicU16::new(code));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (code, stop) = (code.clone(), stop.clone());
            move || {
                let deadline = Instant::now() + Duration::from_secs(120);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    match listener.accept() {
                        Ok((mut stream, _)) => {
                            let _ = stream.set_nonblocking(false);
                            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                            let mut buf = [0u8; 2048];
                            let _ = stream.read(&mut buf);
                            let status = code.load(Ordering::Relaxed);
                            let reply = format!(
                                "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                            );
                            let _ = stream.write_all(reply.as_bytes());
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            }
        });
        TestServer {
            port,
            code,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn ready_of(c: &Cluster, pod: &str) -> String {
    c.ok(&[
        "get",
        "pod",
        pod,
        "-o",
        "jsonpath={.status.phase} {.status.conditions[?(@.type==\"Ready\")].status} {.status.containerStatuses[0].ready}",
    ])
}

#[test]
#[allow(clippy::disallowed_methods)] // a plain test thread, not a tokio worker
fn readiness_http_get_gates_the_ready_condition() {
    let c = Cluster::with_nodes(1);
    let server = TestServer::start(503);
    let manifest = format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "web"}},
        "spec": {{"containers": [{{"name": "c", "image": "nginx:1",
          "readinessProbe": {{"httpGet": {{"host": "127.0.0.1", "port": {}, "path": "/ready"}}, "periodSeconds": 1}}}}]}}}}"#,
        server.port
    );
    c.ok_with(&["apply", "-f", "-"], Some(&manifest));
    c.eventually(
        &["get", "pod", "web", "-o", "jsonpath={.status.phase}"],
        20,
        |t| t == "Running",
    );
    // Running, but the server says 503: not ready, and the kubelet says why.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(ready_of(&c, "web"), "Running False false");
    let events = c.eventually(
        &[
            "get",
            "events",
            "--field-selector",
            "reason=Unhealthy",
            "-o",
            "jsonpath={.items[*].message}",
        ],
        10,
        |t| !t.is_empty(),
    );
    assert!(
        events.contains("Readiness probe failed: HTTP probe failed with statuscode: 503"),
        "{events}"
    );
    // Healthy now: Ready follows.
    server.code.store(200, Ordering::Relaxed);
    c.eventually(
        &[
            "get",
            "pod",
            "web",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ],
        10,
        |t| t == "True",
    );
    assert_eq!(ready_of(&c, "web"), "Running True true");
    let row = c.ok(&["get", "pod", "web", "--no-headers"]);
    assert!(row.contains("1/1"), "{row}");
}

/// A probed container is not ready (readinessProbe) or not started (startupProbe) until its
/// probe has succeeded for that very container, when it first starts and again after each
/// restart, as upstream's prober has it: the kubelet never says `1/1` before the first success.
/// And a pod whose containers crash-loop under `restartPolicy: Always` is `Running` (upstream's
/// `getPhase` counts a waiting container that ran before as stopped), never back to `Pending`.
#[test]
fn probed_containers_wait_for_their_own_first_success_and_a_crash_loop_stays_running() {
    let c = Cluster::with_nodes(1);
    let server = TestServer::start(200);
    let probe = serde_json::json!({
        "httpGet": {"host": "127.0.0.1", "port": server.port, "path": "/ok"},
        "initialDelaySeconds": 1, "periodSeconds": 1,
    });
    // Each run ends after 5 s: the first restart is at once, the second after a 10 s back-off.
    let command = serde_json::json!(["sh", "-c", "sleep 5; exit 1"]);
    let pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probed"},
        "spec": {"containers": [
            {"name": "r", "image": "busybox:1", "command": command, "readinessProbe": probe},
            {"name": "s", "image": "busybox:1", "command": command, "startupProbe": probe},
        ]}
    });
    let statuses = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.clone())
            .unwrap_or_default()
    };
    // Until both are waiting out their back-off after the second run.
    let seen = c.create_pod_watching(pod, 60, |p| {
        let all = statuses(p);
        all.len() == 2
            && all.iter().all(|s| {
                s.restart_count == 1
                    && s.state
                        .as_ref()
                        .and_then(|s| s.waiting.as_ref())
                        .and_then(|w| w.reason.as_deref())
                        == Some("CrashLoopBackOff")
            })
    });
    let story = || {
        seen.iter()
            .map(|p| serde_json::to_string(&p.status).unwrap())
            .collect::<Vec<_>>()
            .join("\n")
    };
    // Every running container instance, by its ID: (name, ready, started), status by status.
    type Seen = (String, bool, bool);
    let mut instances: Vec<(String, Vec<Seen>)> = Vec::new();
    for pod in &seen {
        for s in statuses(pod) {
            let runs = s.state.as_ref().is_some_and(|s| s.running.is_some());
            let Some(id) = s.container_id.clone().filter(|_| runs) else {
                continue;
            };
            let now = (s.name.clone(), s.ready, s.started == Some(true));
            match instances.iter_mut().find(|(i, _)| *i == id) {
                Some((_, list)) => list.push(now),
                None => instances.push((id, vec![now])),
            }
        }
    }
    // Two runs of each container.
    assert_eq!(instances.len(), 4, "{}", story());
    for (id, list) in &instances {
        let (name, ready, started) = &list[0];
        assert!(!ready, "{name} {id} ready at its start:\n{}", story());
        if name == "s" {
            assert!(
                !started,
                "{name} {id} started before its startup probe:\n{}",
                story()
            );
        }
        // Its probe succeeded while it ran: ready from then on, never before.
        let first_ready = list.iter().position(|(_, ready, _)| *ready);
        let first_ready =
            first_ready.unwrap_or_else(|| panic!("{name} {id} never ready:\n{}", story()));
        assert!(
            list[first_ready..].iter().all(|(_, ready, _)| *ready),
            "{name} {id} unready again:\n{}",
            story()
        );
        assert!(list[first_ready..].iter().all(|(_, _, started)| *started));
    }
    // Once Running, the pod stays Running: restarts and the back-off included.
    let phases: Vec<&str> = seen
        .iter()
        .filter_map(|p| p.status.as_ref()?.phase.as_deref())
        .collect();
    let running = phases.iter().position(|p| *p == "Running").unwrap();
    assert!(
        phases[running..].iter().all(|p| *p == "Running"),
        "{phases:?}:\n{}",
        story()
    );
    assert_eq!(
        c.ok(&["get", "pod", "probed", "-o", "jsonpath={.status.phase}"]),
        "Running"
    );
}

/// A probe of a simulated pod never leaves the machine: the built-in hello answers its
/// readiness httpGet, an unknown program accepts a tcpSocket on its declared port, and an
/// httpGet to a port nothing simulated listens on is refused: that pod stays unready and the
/// kubelet says why.
#[test]
fn sim_probes_reach_only_the_simulated_programs() {
    let c = Cluster::with_nodes(1);
    let manifest = r#"
apiVersion: v1
kind: Pod
metadata: {name: closed}
spec:
  containers:
  - name: hello
    image: orrery/hello
    readinessProbe: {httpGet: {path: /, port: 9999}, periodSeconds: 1}
---
apiVersion: v1
kind: Pod
metadata: {name: open}
spec:
  containers:
  - name: hello
    image: orrery/hello
    readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Pod
metadata: {name: declared}
spec:
  containers:
  - name: web
    image: nginx
    ports: [{containerPort: 80}]
    readinessProbe: {tcpSocket: {port: 80}, periodSeconds: 1}
"#;
    c.ok_with(&["apply", "-f", "-"], Some(manifest));
    for pod in ["open", "declared"] {
        c.eventually(
            &[
                "get",
                "pod",
                pod,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ],
            30,
            |t| t == "True",
        );
    }
    let ip = c.eventually(
        &["get", "pod", "closed", "-o", "jsonpath={.status.podIP}"],
        20,
        |t| !t.is_empty(),
    );
    let events = c.eventually(
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=closed,reason=Unhealthy",
            "-o",
            "jsonpath={.items[*].message}",
        ],
        20,
        |t| !t.is_empty(),
    );
    assert!(
        events.contains(&format!(
            "Readiness probe failed: Get \"http://{ip}:9999/\": dial tcp {ip}:9999: connect: connection refused"
        )),
        "{events}"
    );
    assert_eq!(ready_of(&c, "closed"), "Running False false");
}

#[test]
fn liveness_tcp_failures_restart_the_container() {
    let c = Cluster::with_nodes(1);
    // A port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let manifest = format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "sick"}},
        "spec": {{"terminationGracePeriodSeconds": 1, "containers": [{{"name": "app", "image": "nginx:1",
          "livenessProbe": {{"tcpSocket": {{"host": "127.0.0.1", "port": {port}}}, "periodSeconds": 1, "failureThreshold": 2}}}}]}}}}"#
    );
    c.ok_with(&["apply", "-f", "-"], Some(&manifest));
    c.eventually(
        &[
            "get",
            "pod",
            "sick",
            "-o",
            "jsonpath={.status.containerStatuses[0].restartCount}",
        ],
        40,
        |t| t.parse::<u32>().is_ok_and(|n| n >= 2),
    );
    let events = c.ok(&[
        "get",
        "events",
        "-o",
        "jsonpath={range .items[*]}{.reason}: {.message}{\"\\n\"}{end}",
    ]);
    assert!(
        events.contains(&format!(
            "Unhealthy: Liveness probe failed: dial tcp 127.0.0.1:{port}: connect: connection refused"
        )),
        "{events}"
    );
    assert!(
        events.contains("Killing: Container app failed liveness probe, will be restarted"),
        "{events}"
    );
    let last = c.ok(&[
        "get",
        "pod",
        "sick",
        "-o",
        "jsonpath={.status.containerStatuses[0].lastState.terminated.exitCode}",
    ]);
    assert_eq!(last, "143", "SIGTERM ends the simulated container");
}

#[test]
fn image_pull_policy_never_without_the_image() {
    let c = Cluster::with_nodes(1);
    let manifest = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "offline"},
        "spec": {"containers": [{"name": "c", "image": "example.com/app:2", "imagePullPolicy": "Never"}]}}"#;
    c.ok_with(&["apply", "-f", "-"], Some(manifest));
    let waiting = c.eventually(
        &["get", "pod", "offline", "-o", "jsonpath={.status.containerStatuses[0].state.waiting.reason}: {.status.containerStatuses[0].state.waiting.message}"],
        20,
        |t| t.starts_with("ErrImageNeverPull"),
    );
    assert_eq!(
        waiting,
        "ErrImageNeverPull: Container image \"example.com/app:2\" is not present with pull policy of Never"
    );
    let row = c.ok(&["get", "pod", "offline", "--no-headers"]);
    assert!(row.contains("ErrImageNeverPull"), "{row}");
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "reason=ErrImageNeverPull",
        "-o",
        "jsonpath={.items[*].type}",
    ]);
    assert!(events.starts_with("Warning"), "{events}");

    // IfNotPresent pulls once; the second pod finds the image on the node.
    for name in ["first", "second"] {
        let manifest = format!(
            r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "{name}"}},
            "spec": {{"containers": [{{"name": "c", "image": "example.com/tool:3"}}]}}}}"#
        );
        c.ok_with(&["apply", "-f", "-"], Some(&manifest));
        c.eventually(
            &["get", "pod", name, "-o", "jsonpath={.status.phase}"],
            20,
            |t| t == "Running",
        );
    }
    let policy = c.ok(&[
        "get",
        "pod",
        "second",
        "-o",
        "jsonpath={.spec.containers[0].imagePullPolicy}",
    ]);
    assert_eq!(policy, "IfNotPresent");
    let pulled = |pod: &str| {
        c.ok(&[
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name={pod},reason=Pulled"),
            "-o",
            "jsonpath={.items[*].message}",
        ])
    };
    assert!(
        pulled("first").starts_with("Successfully pulled image \"example.com/tool:3\""),
        "{}",
        pulled("first")
    );
    assert_eq!(
        pulled("second"),
        "Container image \"example.com/tool:3\" already present on machine"
    );
}

#[test]
fn env_from_a_missing_config_map_waits_for_it() {
    let c = Cluster::with_nodes(1);
    let manifest = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "configured"},
        "spec": {"containers": [{"name": "c", "image": "nginx:1",
          "env": [{"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}}]}]}}"#;
    c.ok_with(&["apply", "-f", "-"], Some(manifest));
    let waiting = c.eventually(
        &["get", "pod", "configured", "-o", "jsonpath={.status.containerStatuses[0].state.waiting.reason}: {.status.containerStatuses[0].state.waiting.message}"],
        20,
        |t| t.starts_with("CreateContainerConfigError"),
    );
    assert_eq!(
        waiting,
        "CreateContainerConfigError: configmap \"settings\" not found"
    );
    // The kubelet records its Event after the status it reports (its recorder runs apart).
    c.eventually(
        &[
            "get",
            "events",
            "--field-selector",
            "reason=Failed",
            "-o",
            "jsonpath={.items[*].message}",
        ],
        20,
        |events| events.contains("Error: configmap \"settings\" not found"),
    );
    // The key is missing at first, then there.
    c.ok(&["create", "configmap", "settings", "--from-literal=other=1"]);
    c.eventually(
        &[
            "get",
            "pod",
            "configured",
            "-o",
            "jsonpath={.status.containerStatuses[0].state.waiting.message}",
        ],
        20,
        |t| t == "couldn't find key mode in ConfigMap default/settings",
    );
    c.ok(&[
        "patch",
        "configmap",
        "settings",
        "--type=merge",
        "-p",
        r#"{"data": {"mode": "fast"}}"#,
    ]);
    c.eventually(
        &["get", "pod", "configured", "-o", "jsonpath={.status.phase}"],
        20,
        |t| t == "Running",
    );
}

#[test]
fn volumes_are_written_under_the_kubelet_root() {
    let c = Cluster::with_nodes(1);
    c.ok(&[
        "create",
        "configmap",
        "app-config",
        "--from-literal=greeting=hello",
        "--from-literal=level=3",
    ]);
    c.ok(&[
        "create",
        "secret",
        "generic",
        "app-secret",
        "--from-literal=password=s3cret",
    ]);
    let manifest = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "files", "labels": {"app": "files"}},
        "spec": {"containers": [{"name": "c", "image": "nginx:1",
            "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}, {"name": "sec", "mountPath": "/etc/sec"},
                             {"name": "scratch", "mountPath": "/scratch"}, {"name": "info", "mountPath": "/etc/info"}]}],
          "volumes": [
            {"name": "cfg", "configMap": {"name": "app-config", "items": [{"key": "greeting", "path": "hello.txt", "mode": 256}]}},
            {"name": "sec", "secret": {"secretName": "app-secret"}},
            {"name": "scratch", "emptyDir": {}},
            {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                                                       {"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}]}}"#;
    c.ok_with(&["apply", "-f", "-"], Some(manifest));
    c.eventually(
        &["get", "pod", "files", "-o", "jsonpath={.status.phase}"],
        20,
        |t| t == "Running",
    );
    let uid = c.ok(&["get", "pod", "files", "-o", "jsonpath={.metadata.uid}"]);
    let pod_dir = c.dir.path().join("kubelet/node-1/pods").join(&uid);
    let volumes = pod_dir.join("volumes");
    let read =
        |p: &str| std::fs::read_to_string(volumes.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert_eq!(read("kubernetes.io~configmap/cfg/hello.txt"), "hello");
    assert!(!volumes.join("kubernetes.io~configmap/cfg/level").exists());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(volumes.join("kubernetes.io~configmap/cfg/hello.txt"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o400);
    assert_eq!(read("kubernetes.io~secret/sec/password"), "s3cret");
    assert_eq!(
        read("kubernetes.io~downward-api/info/labels"),
        "app=\"files\""
    );
    assert_eq!(read("kubernetes.io~downward-api/info/ns"), "default");
    assert!(volumes.join("kubernetes.io~empty-dir/scratch").is_dir());
    // A termination-message file for the container's first attempt.
    assert!(pod_dir.join("containers/c/00000000").is_file());
    // Deleting the pod removes its directory.
    c.ok(&["delete", "pod", "files", "--wait=true"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while pod_dir.exists() {
        assert!(
            Instant::now() < deadline,
            "{} still exists",
            pod_dir.display()
        );
        #[allow(clippy::disallowed_methods)] // a plain test thread, not a tokio worker
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_missing_config_map_volume_keeps_the_pod_creating() {
    let c = Cluster::with_nodes(1);
    let manifest = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "unmounted"},
        "spec": {"containers": [{"name": "c", "image": "nginx:1"}],
          "volumes": [{"name": "cfg", "configMap": {"name": "nowhere"}}]}}"#;
    c.ok_with(&["apply", "-f", "-"], Some(manifest));
    let events = c.eventually(
        &[
            "get",
            "events",
            "--field-selector",
            "reason=FailedMount",
            "-o",
            "jsonpath={.items[*].message}",
        ],
        20,
        |t| !t.is_empty(),
    );
    assert_eq!(
        events,
        "MountVolume.SetUp failed for volume \"cfg\" : configmap \"nowhere\" not found"
    );
    let row = c.ok(&["get", "pod", "unmounted", "--no-headers"]);
    assert!(row.contains("ContainerCreating"), "{row}");
    c.ok(&["create", "configmap", "nowhere", "--from-literal=a=b"]);
    c.eventually(
        &["get", "pod", "unmounted", "-o", "jsonpath={.status.phase}"],
        30,
        |t| t == "Running",
    );
}

#[test]
fn termination_message_falls_back_to_logs_on_error() {
    let c = Cluster::with_nodes(1);
    let manifest = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "failing"},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1",
          "terminationMessagePolicy": "FallbackToLogsOnError",
          "command": ["sh", "-c", "echo starting; echo it broke; exit 3"]}]}}"#;
    c.ok_with(&["apply", "-f", "-"], Some(manifest));
    c.eventually(
        &["get", "pod", "failing", "-o", "jsonpath={.status.phase}"],
        20,
        |t| t == "Failed",
    );
    let message = c.ok(&[
        "get",
        "pod",
        "failing",
        "-o",
        "jsonpath={.status.containerStatuses[0].state.terminated.message}",
    ]);
    assert_eq!(message, "starting\nit broke\n");
}

/// A condition of `pod` as `(status, reason)`.
fn condition(pod: &Pod, kind: &str) -> Option<(String, Option<String>)> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

#[test]
fn a_deleted_pod_is_seen_stopped_and_not_ready_before_it_goes() {
    let c = Cluster::with_nodes(1);
    c.apply(
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "ending"},
        "spec": {"initContainers": [{"name": "setup", "image": "busybox:1", "command": ["sh", "-c", "echo set up"]}],
          "containers": [{"name": "app", "image": "nginx:1"}]}}"#,
    );
    c.eventually(
        &[
            "get",
            "pod",
            "ending",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ],
        20,
        |t| t == "True",
    );
    let running: Pod =
        serde_json::from_str(&c.ok(&["get", "pod", "ending", "-o", "json"])).unwrap();
    let running_app = &running
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0];
    let started_at = running_app
        .state
        .as_ref()
        .unwrap()
        .running
        .as_ref()
        .unwrap()
        .started_at
        .clone();

    let events = c.delete_pod_watching("default", "ending", 60);
    // The first event is the delete itself: the pod still runs and is still Ready.
    let (kind, first) = &events[0];
    assert_eq!(kind, "MODIFIED");
    assert!(first.metadata.deletion_timestamp.is_some());
    assert_eq!(condition(first, "Ready").unwrap().0, "True");
    // Then the kubelet's word that it stopped, before the pod goes.
    let last = common::last_before_deleted(&events);
    let status = last.status.as_ref().unwrap();
    // The simulated process ends on SIGTERM with 143: the pod failed (Kubernetes 1.27 on).
    assert_eq!(status.phase.as_deref(), Some("Failed"));
    let failed = ("False".to_owned(), Some("PodFailed".to_owned()));
    assert_eq!(condition(last, "Ready").unwrap(), failed);
    assert_eq!(condition(last, "ContainersReady").unwrap(), failed);
    assert_eq!(
        condition(last, "PodReadyToStartContainers").unwrap().0,
        "False"
    );
    assert_eq!(condition(last, "Initialized").unwrap().0, "True");
    // A plain delete is no disruption: the kubelet adds no DisruptionTarget.
    assert_eq!(condition(last, "DisruptionTarget"), None);
    assert_eq!(status.pod_ip, running.status.as_ref().unwrap().pod_ip);
    let app = &status.container_statuses.as_ref().unwrap()[0];
    assert!(!app.ready);
    assert_eq!(app.started, Some(false));
    assert_eq!(app.container_id, running_app.container_id);
    let ended = app.state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!(
        (ended.exit_code, ended.reason.as_deref()),
        (143, Some("Error"))
    );
    assert_eq!(ended.container_id, running_app.container_id);
    assert_eq!(ended.started_at, started_at);
    assert!(ended.finished_at.as_ref().unwrap().0 >= ended.started_at.as_ref().unwrap().0);
    let setup = &status.init_container_statuses.as_ref().unwrap()[0];
    let done = setup.state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!(
        (done.exit_code, done.reason.as_deref()),
        (0, Some("Completed"))
    );
    assert!(setup.ready);
    // The pod as it went is the pod as the kubelet last wrote it.
    let (_, gone) = events.last().unwrap();
    assert_eq!(gone.status, last.status);
}

/// Deletes the pod through the official Python client and watches it go as
/// `watch.Watch().stream(list_namespaced_pod, ...)` shows it: one JSON line per event.
const PYTHON_WATCH: &str = r#"
import json, sys
from kubernetes import client, config, watch

kubeconfig, namespace, name = sys.argv[1:4]
config.load_kube_config(config_file=kubeconfig)
v1 = client.CoreV1Api()
version = v1.read_namespaced_pod(name, namespace).metadata.resource_version
v1.delete_namespaced_pod(name, namespace)
w = watch.Watch()
for event in w.stream(v1.list_namespaced_pod, namespace, field_selector="metadata.name=" + name,
                      resource_version=version, timeout_seconds=60):
    pod = event["object"]
    conditions = {c.type: [c.status, c.reason] for c in pod.status.conditions or []}
    ended = [s.state.terminated for s in pod.status.container_statuses or []]
    print(json.dumps({
        "type": event["type"],
        "phase": pod.status.phase,
        "ready": conditions.get("Ready"),
        "containersReady": conditions.get("ContainersReady"),
        "ended": [None if t is None else [t.exit_code, t.reason] for t in ended],
    }), flush=True)
    if event["type"] == "DELETED":
        w.stop()
"#;

#[test]
fn the_python_client_sees_a_deleted_pod_not_ready_before_it_goes() {
    let python = common::python();
    let c = Cluster::with_nodes(1);
    c.apply(
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "ending-py"},
        "spec": {"containers": [{"name": "app", "image": "nginx:1"}]}}"#,
    );
    c.eventually(
        &[
            "get",
            "pod",
            "ending-py",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ],
        20,
        |t| t == "True",
    );
    let out = std::process::Command::new(python)
        .arg("-c")
        .arg(PYTHON_WATCH)
        .arg(c.kubeconfig())
        .args(["default", "ending-py"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types.last(), Some(&"DELETED"), "{events:#?}");
    assert_eq!(
        events[0]["ready"],
        serde_json::json!(["True", null]),
        "{events:#?}"
    );
    let last = &events[events.len() - 2];
    assert_eq!(last["type"], "MODIFIED", "{events:#?}");
    assert_eq!(last["phase"], "Failed");
    assert_eq!(last["ready"], serde_json::json!(["False", "PodFailed"]));
    assert_eq!(
        last["containersReady"],
        serde_json::json!(["False", "PodFailed"])
    );
    assert_eq!(last["ended"], serde_json::json!([[143, "Error"]]));
}

#[test]
fn a_finished_pod_whose_sandbox_is_gone_is_still_deleted() {
    let c = Cluster::with_nodes(1);
    c.apply(
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "done"},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1", "command": ["sh", "-c", "exit 0"]}]}}"#,
    );
    c.eventually(
        &["get", "pod", "done", "-o", "jsonpath={.status.phase}"],
        20,
        |t| t == "Succeeded",
    );
    // Up again on the same state: the simulated runtime starts empty, the pod's sandbox is gone.
    let dir = c.down();
    let c = Cluster::start_in(
        dir,
        &["--no-kubeconfig-merge", "--nodes", "1", "--runtime", "sim"],
    );
    c.eventually(&["get", "nodes", "--no-headers"], 20, |t| {
        t.contains(" Ready ")
    });
    c.ok(&["delete", "pod", "done", "--timeout=30s"]);
    assert_eq!(
        c.ok(&["get", "pods", "-o", "name"]),
        "",
        "the kubelet deletes the finished pod for good"
    );
}

/// A second deletion with a shorter grace period cuts a termination short, as upstream's pod
/// worker restarts it: a preStop hook that would hold the pod for ten minutes gives way to a
/// one-second grace period, and the pod goes within seconds.
#[test]
fn a_shorter_second_deletion_cuts_the_termination_short() {
    let c = Cluster::with_nodes(1);
    c.apply(
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "slow"},
        "spec": {"terminationGracePeriodSeconds": 600,
          "containers": [{"name": "app", "image": "orrery/hello",
            "lifecycle": {"preStop": {"exec": {"command": ["sleep", "600"]}}}}]}}"#,
    );
    c.eventually(
        &["get", "pod", "slow", "-o", "jsonpath={.status.phase}"],
        20,
        |t| t == "Running",
    );
    c.ok(&["delete", "pod", "slow", "--wait=false"]);
    c.eventually(
        &[
            "get",
            "events",
            "--field-selector=involvedObject.name=slow,reason=Killing",
            "-o",
            "name",
        ],
        20,
        |t| !t.is_empty(),
    );
    c.ok(&["delete", "pod", "slow", "--wait=false", "--grace-period=1"]);
    c.ok(&["wait", "--for=delete", "pod/slow", "--timeout=30s"]);
}

/// A container that fails at once can exit between the kubelet's look at it and its status
/// report of the same round. The kubelet still notes the exit (the runtime's `CONTAINER
/// EXITED` hop) before it writes the `Failed` status, so the flow tells it in the order it
/// happened; before, about half of such pods had their `Failed` STATUS hop first.
#[test]
fn an_exit_is_heard_before_the_status_that_reports_it() {
    let c = Cluster::with_nodes(1);
    let names: Vec<String> = (1..=8).map(|i| format!("fails-{i}")).collect();
    for name in &names {
        c.ok(&[
            "run",
            name,
            "--image=orrery/hello",
            "--restart=Never",
            "--command",
            "--",
            "/orrery",
            "exit",
            "1",
        ]);
    }
    for name in &names {
        c.eventually(
            &["get", "pod", name, "-o", "jsonpath={.status.phase}"],
            30,
            |p| p == "Failed",
        );
    }
    let hops: Vec<serde_json::Value> = c
        .ok(&["get", "--raw", "/orrery/v1/flow?since=0&follow=false"])
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    for name in &names {
        let of: Vec<&serde_json::Value> = hops
            .iter()
            .filter(|h| h["kind"] == "Pod" && h["name"] == name.as_str())
            .collect();
        let seq = |verb: &str, detail: &str| {
            of.iter()
                .find(|h| {
                    h["verb"] == verb && h["detail"].as_str().unwrap_or("").starts_with(detail)
                })
                .and_then(|h| h["seq"].as_u64())
                .unwrap_or_else(|| panic!("{name}: no {verb} {detail} in {of:#?}"))
        };
        let (exited, reported) = (seq("CONTAINER EXITED", ""), seq("STATUS", "Failed"));
        assert!(
            exited < reported,
            "{name}: STATUS Failed #{reported} before CONTAINER EXITED #{exited}"
        );
    }
}
