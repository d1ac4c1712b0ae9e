//! `kubectl exec`, `kubectl logs` and `kubectl port-forward` against `orrery up --runtime sim`,
//! with the real kubectl (and kube-rs's `Api::exec`, and the official Python client's
//! `stream`): the API server proxies the upgrade to the kubelet, which speaks WebSocket v5 for
//! exec and SPDY/3.1 for port-forward.

use crate::common;

use std::time::{Duration, Instant};

use common::Cluster;

/// A cluster with one sim node and a running pod `web` (container `app`, which runs until
/// stopped, with an environment), plus whatever `manifest` adds.
fn cluster_with(manifest: &str) -> Cluster {
    let c = Cluster::with_nodes(1);
    c.eventually(&["get", "nodes", "-o", "name"], 20, |t| {
        t.contains("node-1")
    });
    c.eventually(
        &["get", "serviceaccount", "default", "-o", "name"],
        20,
        |t| !t.is_empty(),
    );
    let web = r#"
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: app
    image: nginx
    env: [{name: GREETING, value: hello}]
  - name: side
    image: busybox
    command: [sleep, infinity]
"#;
    c.ok_with(
        &["apply", "-f", "-"],
        Some(&format!("{web}\n---\n{manifest}")),
    );
    c.eventually(
        &["get", "pod", "web", "-o", "jsonpath={.status.phase}"],
        30,
        |t| t == "Running",
    );
    c
}

#[test]
fn exec_runs_commands_with_exit_codes_and_stdin() {
    let c = cluster_with("");
    assert_eq!(
        c.ok(&["exec", "web", "-c", "app", "--", "echo", "hi"]),
        "hi\n"
    );
    // The pod's own variable first, then the kubelet's Service links.
    let env = c.ok(&["exec", "web", "-c", "app", "--", "env"]);
    assert!(env.starts_with("GREETING=hello\n"), "{env}");
    assert!(env.contains("KUBERNETES_SERVICE_HOST=10.96.0.1\n"), "{env}");
    let out = c.kubectl(
        &[
            "exec",
            "web",
            "-c",
            "app",
            "--",
            "sh",
            "-c",
            "echo out; exit 3",
        ],
        None,
        &[],
    );
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("command terminated with exit code 3"),
        "{out:?}"
    );
    // stdin reaches the command, and its end closes the command's stdin (v5's close channel).
    assert_eq!(
        c.ok_with(
            &["exec", "-i", "web", "-c", "side", "--", "cat"],
            Some("data\nmore\n")
        ),
        "data\nmore\n"
    );
    // An unknown program fails as runc does.
    let out = c.kubectl(
        &["exec", "web", "-c", "app", "--", "nginx-debug"],
        None,
        &[],
    );
    assert_eq!(out.status.code(), Some(126), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("exec: \"nginx-debug\": executable file not found in $PATH"),
        "{out:?}"
    );
    // A container the pod does not have: the API server's words.
    let error = c.fails(&["exec", "web", "-c", "nope", "--", "true"], None);
    assert!(
        error.contains("Error from server (BadRequest): container nope is not valid for pod web"),
        "{error}"
    );
    // Two containers and none named: kubectl takes the first and says so.
    let out = c.kubectl(&["exec", "web", "--", "hostname"], None, &[]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "web\n", "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Defaulted container \"app\""),
        "{out:?}"
    );
}

/// The official Python client writes stdin and resizes as WebSocket text messages: the
/// kubelet reads them as it reads binary ones, with or without a terminal, and v5's close of
/// stdin ends `cat` with success.
#[test]
fn python_exec_writes_stdin_as_text() {
    let c = cluster_with("");
    let out = c.python(
        r#"
import json
from kubernetes.stream import stream
for tty in (False, True):
    resp = stream(api.connect_get_namespaced_pod_exec, "web", "default", container="app",
                  command=["cat"], stdin=True, stdout=True, stderr=not tty, tty=tty,
                  _preload_content=False)
    assert resp.subprotocol == "v5.channel.k8s.io", resp.subprotocol
    resp.write_stdin("hello\n")
    line = resp.readline_stdout(timeout=20)
    assert line == "hello", repr(line)
    # A resize on channel 4, as a text message too: the session goes on.
    resp.write_channel(4, json.dumps({"Width": 100, "Height": 30}))
    resp.write_stdin("again\n")
    line = resp.readline_stdout(timeout=20)
    assert line == "again", repr(line)
    resp.close_channel(0)
    resp.run_forever(timeout=20)
    assert not resp.is_open(), "cat ends once stdin is closed"
    print("tty" if tty else "plain", resp.returncode)
"#,
    );
    assert_eq!(out, "plain 0\ntty 0\n");
}

#[test]
fn exec_errors_come_from_the_api_server_and_the_kubelet() {
    let c = cluster_with(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: done}
spec:
  restartPolicy: Never
  containers: [{name: job, image: busybox, command: [sh, -c, "echo finished"]}]
"#,
    );
    c.eventually(
        &["get", "pod", "done", "-o", "jsonpath={.status.phase}"],
        30,
        |t| t == "Succeeded",
    );
    // kubectl refuses a completed pod itself; the raw API reaches the kubelet, which finds no
    // running container.
    let error = c.fails(&["exec", "done", "--", "true"], None);
    assert!(
        error.contains("cannot exec into a container in a completed pod"),
        "{error}"
    );
    // The kubelet finds no running container, and its answer comes back through the API
    // server as it is.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let error = runtime.block_on(async {
        let config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(c.kubeconfig()).unwrap(),
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .unwrap();
        let client = kube::Client::try_from(config).unwrap();
        let request = http::Request::get(
            "/api/v1/namespaces/default/pods/done/exec?command=true&stdout=true",
        )
        .body(Vec::new())
        .unwrap();
        client.request_text(request).await.unwrap_err().to_string()
    });
    assert!(error.contains("container not found (\"job\")"), "{error}");
    // The API server validates the container for any client.
    let out = c.kubectl(
        &[
            "get",
            "--raw",
            "/api/v1/namespaces/default/pods/web/exec?command=true&container=nope&stdout=true",
        ],
        None,
        &[],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("container nope is not valid for pod web"),
        "{out:?}"
    );
}

#[test]
fn kube_rs_exec_works() {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, AttachParams};
    use tokio::io::AsyncReadExt;

    let c = cluster_with("");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(c.kubeconfig()).unwrap(),
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .unwrap();
        let client = kube::Client::try_from(config).unwrap();
        let pods: Api<Pod> = Api::default_namespaced(client);
        let mut process = pods
            .exec(
                "web",
                ["sh", "-c", "echo from kube; exit 4"],
                &AttachParams::default().container("app").stderr(false),
            )
            .await
            .unwrap();
        let mut out = String::new();
        process
            .stdout()
            .unwrap()
            .read_to_string(&mut out)
            .await
            .unwrap();
        let status = process.take_status().unwrap().await.unwrap();
        assert_eq!(out, "from kube\n");
        assert_eq!(status.reason.as_deref(), Some("NonZeroExitCode"));
        let causes = status.details.unwrap().causes.unwrap();
        assert_eq!(causes[0].message.as_deref(), Some("4"));
        process.join().await.unwrap();
    });
}

#[test]
fn logs_follow_previous_tail_and_timestamps() {
    let c = cluster_with(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: talker}
spec:
  restartPolicy: Never
  containers: [{name: c, image: busybox, command: [sh, -c, "echo one; sleep 1; echo two; sleep 1; echo three"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: crasher}
spec:
  containers: [{name: c, image: busybox, command: [sh, -c, "echo run; sleep 1; exit 1"]}]
"#,
    );
    // -f streams lines as they come and ends when the container has exited.
    let started = Instant::now();
    c.eventually(
        &["get", "pod", "talker", "-o", "jsonpath={.status.phase}"],
        30,
        |t| t == "Running",
    );
    assert_eq!(c.ok(&["logs", "-f", "talker"]), "one\ntwo\nthree\n");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(c.ok(&["logs", "talker", "--tail=1"]), "three\n");
    let stamped = c.ok(&["logs", "talker", "--timestamps", "--tail=2"]);
    let lines: Vec<&str> = stamped.lines().collect();
    assert_eq!(lines.len(), 2, "{stamped}");
    let (time, text) = lines[1].split_once(' ').unwrap();
    assert_eq!(text, "three");
    assert!(time.parse::<jiff::Timestamp>().is_ok(), "{time}");
    assert_eq!(time.len(), "2024-01-01T00:00:00.000000000Z".len(), "{time}");
    // --previous: none before the first restart, then the last run's lines.
    let error = c.fails(&["logs", "talker", "--previous"], None);
    assert!(
        error.contains("previous terminated container \"c\" in pod \"talker\" not found"),
        "{error}"
    );
    c.eventually(
        &[
            "get",
            "pod",
            "crasher",
            "-o",
            "jsonpath={.status.containerStatuses[0].restartCount}",
        ],
        40,
        |t| t.parse::<u32>().is_ok_and(|n| n >= 1),
    );
    assert_eq!(c.ok(&["logs", "crasher", "--previous"]), "run\n");
}

/// A background kubectl, killed when dropped.
struct Background(std::process::Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Lines a child writes, read on a plain thread.
fn lines_of(reader: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(reader).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// The whole answer to a plain `GET /` at `address`, or `None` if nothing answers there.
fn answer_from(address: std::net::SocketAddr) -> Option<String> {
    use std::io::{Read, Write};
    let mut connection =
        std::net::TcpStream::connect_timeout(&address, Duration::from_secs(5)).ok()?;
    connection
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    connection.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut answer = Vec::new();
    let _ = connection.read_to_end(&mut answer);
    (!answer.is_empty()).then(|| String::from_utf8_lossy(&answer).into_owned())
}

/// The built-in hello, which the simulated runtime serves in memory on 8080.
const HELLO: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: hello}
spec:
  containers: [{name: hello, image: orrery/hello}]
"#;

/// A cluster with [`HELLO`] running beside the `web` pod, and the two pods' IPs.
fn hello_running() -> (Cluster, String, String) {
    let c = cluster_with(HELLO);
    c.eventually(
        &["get", "pod", "hello", "-o", "jsonpath={.status.phase}"],
        30,
        |t| t == "Running",
    );
    let hello_ip = c.ok(&["get", "pod", "hello", "-o", "jsonpath={.status.podIP}"]);
    let web_ip = c.ok(&["get", "pod", "web", "-o", "jsonpath={.status.podIP}"]);
    (c, hello_ip, web_ip)
}

/// kubectl port-forward through the API server to the kubelet's SPDY endpoint: the simulated
/// hello answers over localhost as the real one would (the kubelet reaches it through the
/// runtime, never the host's network); a port nothing simulated listens on is refused, and
/// kubectl reports the kubelet's error.
#[test]
fn port_forward_reaches_the_simulated_pod_or_reports_the_kubelets_error() {
    let (c, hello_ip, web_ip) = hello_running();
    // kubectl 1.32 tunnels SPDY through a WebSocket; without it, it upgrades to SPDY itself.
    for websockets in ["true", "false"] {
        let (answer, _stderr, _kubectl) = forward_once(&c, "pod/hello", websockets);
        let answer = answer.unwrap_or_else(|| panic!("hello answers (websockets {websockets})"));
        assert!(answer.starts_with("HTTP/1.0 200 OK\r\n"), "{answer}");
        assert!(
            answer.ends_with(&format!(
                "\r\n\r\nHello from hello in default at {hello_ip}\n"
            )),
            "{answer}"
        );
        // nginx is a program the simulation does not know, declaring no port: refused.
        let (answer, stderr, _kubectl) = forward_once(&c, "pod/web", websockets);
        assert_eq!(answer, None, "nothing answers at {web_ip}:8080");
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        let reported = loop {
            assert!(
                Instant::now() < deadline,
                "kubectl did not report the kubelet's error: {seen:#?}"
            );
            let Ok(line) = stderr.recv_timeout(Duration::from_millis(200)) else {
                continue;
            };
            if line.contains("error forwarding port 8080 to pod") {
                break line;
            }
            seen.push(line);
        };
        assert!(
            reported.contains(&format!(
                ", uid : dial tcp {web_ip}:8080: connect: connection refused"
            )),
            "{reported}"
        );
    }
}

/// Starts `kubectl port-forward <pod> :8080` and makes one request through it: the answer,
/// kubectl's stderr lines, and kubectl itself (killed when dropped).
fn forward_once(
    c: &Cluster,
    pod: &str,
    websockets: &str,
) -> (
    Option<String>,
    std::sync::mpsc::Receiver<String>,
    Background,
) {
    use std::process::{Command, Stdio};

    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(c.kubeconfig())
        .args(["port-forward", pod, ":8080"])
        .env("KUBECTL_PORT_FORWARD_WEBSOCKETS", websockets)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = lines_of(child.stdout.take().unwrap());
    let stderr = lines_of(child.stderr.take().unwrap());
    let kubectl = Background(child);
    let forwarding = stdout
        .recv_timeout(Duration::from_secs(20))
        .expect("kubectl says where it forwards from");
    // "Forwarding from 127.0.0.1:41234 -> 8080"
    let local: u16 = forwarding
        .split_once("127.0.0.1:")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{forwarding}"));
    (answer_from(([127, 0, 0, 1], local).into()), stderr, kubectl)
}

/// kube-rs's `Api::portforward` speaks the WebSocket channel protocol (two channels a port,
/// the port number first on each): the simulated hello's answer comes on the data channel, and
/// a refused port's error on the error channel.
#[test]
fn kube_rs_port_forward_works() {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::Api;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (c, hello_ip, web_ip) = hello_running();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(c.kubeconfig()).unwrap(),
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .unwrap();
        let pods: Api<Pod> = Api::default_namespaced(kube::Client::try_from(config).unwrap());
        let mut forwarder = pods.portforward("hello", &[8080]).await.unwrap();
        let mut stream = forwarder.take_stream(8080).unwrap();
        stream.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer))
            .await
            .expect("the pod's answer in time")
            .unwrap();
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.ends_with(&format!("Hello from hello in default at {hello_ip}\n")),
            "{text}"
        );
        drop(stream);
        forwarder.abort();

        let mut forwarder = pods.portforward("web", &[8080]).await.unwrap();
        let error = forwarder.take_error(8080).unwrap();
        let message = tokio::time::timeout(Duration::from_secs(20), error)
            .await
            .expect("the kubelet's error in time")
            .expect("an error");
        assert!(
            message.starts_with("error forwarding port 8080 to pod ")
                && message.ends_with(&format!(
                    ", uid : dial tcp {web_ip}:8080: connect: connection refused"
                )),
            "{message}"
        );
        forwarder.abort();
    });
}

/// A kubelet's streams end with it: `orrery node stop` ends an exec session in progress (and
/// kubectl with it), as stopping a real node's kubelet does.
#[test]
fn stopping_the_node_ends_its_exec_sessions() {
    use std::io::Write;
    use std::process::{Command, Stdio};

    let c = cluster_with("");
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(c.kubeconfig())
        .args(["exec", "-i", "web", "-c", "side", "--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = lines_of(child.stdout.take().unwrap());
    let mut kubectl = Background(child);
    stdin.write_all(b"ping\n").unwrap();
    assert_eq!(
        stdout.recv_timeout(Duration::from_secs(20)).as_deref(),
        Ok("ping"),
        "the session is open"
    );
    c.orrery_ok(&["node", "stop", "node-1"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while kubectl.0.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "kubectl exec still runs after its node stopped"
        );
        let _ = stdout.recv_timeout(Duration::from_millis(100));
    }
    drop(stdin);
}
