//! A cluster for tests: `orrery up --headless` as a child process on a free port, with its own
//! state directory, and the real `kubectl` pointed at it through a temporary kubeconfig.

#![allow(dead_code)]

pub mod registry;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Cluster {
    child: Child,
    pub dir: tempfile::TempDir,
    pub port: u16,
}

impl Cluster {
    /// Starts a cluster without nodes (the API server and the scheduler) and waits until its
    /// API answers.
    pub fn start() -> Cluster {
        Self::start_in(
            tempfile::tempdir().unwrap(),
            &["--no-kubeconfig-merge", "--nodes", "0"],
        )
    }

    /// Starts a cluster with `nodes` virtual nodes on the simulated runtime.
    pub fn with_nodes(nodes: u16) -> Cluster {
        Self::with_nodes_and(nodes, &[])
    }

    /// Starts a cluster with `nodes` virtual nodes on the simulated runtime whose silence the
    /// node lifecycle controller notices in seconds (leases of 4 s, a grace period of 3 s), with
    /// `extra` flags for `orrery up`.
    pub fn with_quick_node_monitor(nodes: u16, extra: &[&str]) -> Cluster {
        let flags = [
            "--node-lease-duration-seconds",
            "4",
            "--node-monitor-grace-period",
            "3s",
        ];
        Self::with_nodes_and(nodes, &[&flags[..], extra].concat())
    }

    /// Starts a cluster with `nodes` virtual nodes on the simulated runtime, with `extra` flags.
    pub fn with_nodes_and(nodes: u16, extra: &[&str]) -> Cluster {
        let nodes = nodes.to_string();
        let mut args = vec![
            "--no-kubeconfig-merge",
            "--nodes",
            &nodes,
            "--runtime",
            "sim",
        ];
        args.extend_from_slice(extra);
        Self::start_in(tempfile::tempdir().unwrap(), &args)
    }

    /// Starts a cluster of `nodes` nodes on real containers (libcontainer), with its own name
    /// (its cgroups, bridge and namespaces are named after it) and pod network `cidr` (a /16),
    /// so that tests running side by side do not meet. `None` when not root (the test then
    /// says so and passes: CI runs as root).
    pub fn real(name: &str, nodes: u16, cidr: &str) -> Option<Cluster> {
        Self::real_with(name, nodes, cidr, &[])
    }

    /// [`Cluster::real`] with extra `up` flags.
    pub fn real_with(name: &str, nodes: u16, cidr: &str, extra: &[&str]) -> Option<Cluster> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: real containers need root");
            return None;
        }
        let nodes = nodes.to_string();
        let mut args = vec![
            "--no-kubeconfig-merge",
            "--name",
            name,
            "--nodes",
            &nodes,
            "--runtime",
            "libcontainer",
            "--cluster-cidr",
            cidr,
        ];
        args.extend_from_slice(extra);
        Some(Self::start_in(tempfile::tempdir().unwrap(), &args))
    }

    /// Applies a manifest given as text.
    pub fn apply(&self, manifest: &str) {
        self.ok_with(&["apply", "-f", "-"], Some(manifest));
    }

    /// Starts a cluster on an existing state directory (a restart), with extra `up` flags.
    pub fn start_in(dir: tempfile::TempDir, flags: &[&str]) -> Cluster {
        Self::start_with(dir, flags, None)
    }

    /// Like [`Cluster::start_in`], with `orrery up`'s stderr (its warnings) in the file
    /// [`Cluster::log`] rather than the test's.
    pub fn start_logged(dir: tempfile::TempDir, flags: &[&str]) -> Cluster {
        let log = std::fs::File::create(Self::log_of(dir.path())).expect("create the log");
        Self::start_with(dir, flags, Some(log))
    }

    fn log_of(dir: &std::path::Path) -> PathBuf {
        dir.with_extension("stderr")
    }

    /// What `orrery up` wrote to stderr, for a cluster started with [`Cluster::start_logged`].
    pub fn log(&self) -> String {
        std::fs::read_to_string(Self::log_of(self.dir.path())).unwrap_or_default()
    }

    /// The `orrery up` process's id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    #[allow(clippy::disallowed_methods)] // a plain test thread, not a tokio worker
    fn start_with(dir: tempfile::TempDir, flags: &[&str], log: Option<std::fs::File>) -> Cluster {
        let _ = std::fs::remove_file(dir.path().join("orrery.pid"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_orrery"));
        command
            .arg("--state-dir")
            .arg(dir.path())
            .args(["up", "--headless", "--port", "0"])
            .args(flags)
            // Tests run side by side: the ingress controller on any free ports unless told.
            .args(if flags.contains(&"--ingress-port") {
                &[][..]
            } else {
                &["--ingress-port", "0", "--ingress-https-port", "0"][..]
            })
            .env("KUBECONFIG", dir.path().join("user-kubeconfig"))
            .stdout(Stdio::null());
        match log {
            // Warnings and above, whatever RUST_LOG the tests run with.
            Some(log) => command.env("RUST_LOG", "warn").stderr(log),
            None => command.stderr(Stdio::inherit()),
        };
        let child = command.spawn().expect("start orrery up");
        let pid_file = dir.path().join("orrery.pid");
        let deadline = Instant::now() + Duration::from_secs(20);
        let port = loop {
            if let Ok(text) = std::fs::read_to_string(&pid_file)
                && let Some(port) = text.split_whitespace().nth(1).and_then(|p| p.parse().ok())
            {
                break port;
            }
            assert!(
                Instant::now() < deadline,
                "orrery up did not start within 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Cluster { child, dir, port }
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// Runs kubectl against this cluster, with a fresh discovery cache.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Output {
        let mut command = Command::new("kubectl");
        command
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .arg("--cache-dir")
            .arg(self.dir.path().join("kubectl-cache"))
            .args(args)
            .env_remove("KUBECONFIG")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("run kubectl");
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        child.wait_with_output().unwrap()
    }

    /// kubectl that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_with(args, None)
    }

    pub fn ok_with(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl(args, stdin, &[]);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// kubectl that must fail; returns its stderr.
    pub fn fails(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl(args, stdin, &[]);
        assert!(
            !out.status.success(),
            "kubectl {args:?} should have failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }
}

impl Cluster {
    /// Stops the cluster with `orrery down` and hands back its state directory.
    pub fn down(mut self) -> tempfile::TempDir {
        let out = Command::new(env!("CARGO_BIN_EXE_orrery"))
            .arg("--state-dir")
            .arg(self.dir.path())
            .arg("down")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "orrery down: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let status = self.child.wait().unwrap();
        assert!(
            status.success(),
            "orrery up exits cleanly on down: {status}"
        );
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, dir)
    }
}

impl Cluster {
    /// Runs `orrery <args>` against this cluster's state directory.
    pub fn orrery(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_orrery"))
            .arg("--state-dir")
            .arg(self.dir.path())
            .args(args)
            .output()
            .expect("run orrery")
    }

    /// Runs `orrery <args>` against this cluster, fails the test if it fails, and returns its
    /// standard output.
    pub fn orrery_ok(&self, args: &[&str]) -> String {
        let out = self.orrery(args);
        assert!(
            out.status.success(),
            "orrery {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The resourceVersion of `kind/name` once the controllers have stopped writing to it (the
    /// same for a second in a row; at most 10 s).
    #[allow(clippy::disallowed_methods)] // a plain test thread, not a tokio worker
    pub fn settled_rv(&self, kind: &str, name: &str) -> String {
        let read = || {
            self.ok(&[
                "get",
                kind,
                name,
                "-o",
                "jsonpath={.metadata.resourceVersion}",
            ])
        };
        let mut rv = read();
        for _ in 0..10 {
            std::thread::sleep(Duration::from_secs(1));
            let now = read();
            if now == rv {
                break;
            }
            rv = now;
        }
        rv
    }

    /// Polls `kubectl <args>` every 100 ms until its output satisfies `done`, for at most
    /// `seconds`; returns that output or fails the test with the last one.
    #[allow(clippy::disallowed_methods)] // a plain test thread, not a tokio worker
    pub fn eventually(&self, args: &[&str], seconds: u64, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            let out = self.kubectl(args, None, &[]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if out.status.success() && done(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "kubectl {args:?} did not get there within {seconds} s; last: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Cluster {
    /// Stops the cluster as Ctrl-C would (SIGTERM: its containers are stopped and cleaned up),
    /// and kills it if it has not ended within 20 s.
    #[allow(clippy::disallowed_methods)] // a plain test thread, not a tokio worker
    fn drop(&mut self) {
        let _ = std::fs::remove_file(Self::log_of(self.dir.path()));
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Cluster {
    /// Deletes pod `namespace/name` through kube-rs (a graceful delete, as `kubectl delete`
    /// makes one) and watches it from the resourceVersion it had just before, as a client
    /// waiting for it to stop would: every event until `DELETED` (at most `seconds`), in order,
    /// as `(type, pod)`.
    pub fn delete_pod_watching(
        &self,
        namespace: &str,
        name: &str,
        seconds: u64,
    ) -> Vec<(String, k8s_openapi::api::core::v1::Pod)> {
        use futures::StreamExt;
        use k8s_openapi::api::core::v1::Pod;
        use kube::api::{Api, DeleteParams, WatchEvent, WatchParams};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let pods: Api<Pod> = Api::namespaced(kube_client(&self.kubeconfig()).await, namespace);
            let before = pods.get(name).await.unwrap();
            let version = before.metadata.resource_version.unwrap();
            let params = WatchParams::default()
                .fields(&format!("metadata.name={name}"))
                .timeout(seconds as u32);
            let mut stream = pods.watch(&params, &version).await.unwrap().boxed();
            pods.delete(name, &DeleteParams::default()).await.unwrap();
            let mut seen = Vec::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
            while let Ok(Some(event)) = tokio::time::timeout_at(deadline, stream.next()).await {
                let (kind, pod) = match event.unwrap() {
                    WatchEvent::Added(p) => ("ADDED", p),
                    WatchEvent::Modified(p) => ("MODIFIED", p),
                    WatchEvent::Deleted(p) => ("DELETED", p),
                    WatchEvent::Bookmark(_) => continue,
                    WatchEvent::Error(e) => panic!("the watch failed: {e:?}"),
                };
                seen.push((kind.to_owned(), pod));
                if kind == "DELETED" {
                    break;
                }
            }
            seen
        })
    }
}

impl Cluster {
    /// Creates `pod` in `default` through kube-rs and watches it from its creation, as a
    /// client following it would: every version of it the API server had, in order, until
    /// `done` holds for one (that one included), for at most `seconds`. The test fails if
    /// `done` never holds, with every version seen.
    pub fn create_pod_watching(
        &self,
        pod: serde_json::Value,
        seconds: u64,
        done: impl Fn(&k8s_openapi::api::core::v1::Pod) -> bool,
    ) -> Vec<k8s_openapi::api::core::v1::Pod> {
        use futures::StreamExt;
        use k8s_openapi::api::core::v1::Pod;
        use kube::api::{Api, PostParams, WatchEvent, WatchParams};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let pods: Api<Pod> = Api::namespaced(kube_client(&self.kubeconfig()).await, "default");
            let pod: Pod = serde_json::from_value(pod).unwrap();
            let created = pods.create(&PostParams::default(), &pod).await.unwrap();
            let name = created.metadata.name.clone().unwrap();
            let version = created.metadata.resource_version.clone().unwrap();
            let params = WatchParams::default()
                .fields(&format!("metadata.name={name}"))
                .timeout(seconds as u32);
            let mut stream = pods.watch(&params, &version).await.unwrap().boxed();
            let mut seen = vec![created];
            let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
            while let Ok(Some(event)) = tokio::time::timeout_at(deadline, stream.next()).await {
                match event.unwrap() {
                    WatchEvent::Added(p) | WatchEvent::Modified(p) | WatchEvent::Deleted(p) => {
                        let finished = done(&p);
                        seen.push(p);
                        if finished {
                            return seen;
                        }
                    }
                    WatchEvent::Bookmark(_) => {}
                    WatchEvent::Error(e) => panic!("the watch failed: {e:?}"),
                }
            }
            let story: Vec<String> = seen
                .iter()
                .map(|p| serde_json::to_string(&p.status).unwrap())
                .collect();
            panic!(
                "pod {name} never got there within {seconds} s:\n{}",
                story.join("\n")
            );
        })
    }
}

/// The pod as the last event before `DELETED` showed it, once `events` (from
/// [`Cluster::delete_pod_watching`]) are checked to end with `DELETED` after an event in which
/// the pod is no longer `Ready`.
pub fn last_before_deleted(
    events: &[(String, k8s_openapi::api::core::v1::Pod)],
) -> &k8s_openapi::api::core::v1::Pod {
    let story = || {
        events
            .iter()
            .map(|(kind, pod)| format!("{kind} {}", serde_json::to_string(&pod.status).unwrap()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        events.last().map(|(kind, _)| kind.as_str()),
        Some("DELETED"),
        "the watch never saw the pod go:\n{}",
        story()
    );
    let before = &events[..events.len() - 1];
    let (_, last) = before
        .last()
        .unwrap_or_else(|| panic!("nothing before DELETED:\n{}", story()));
    let ready = |pod: &k8s_openapi::api::core::v1::Pod| {
        pod.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status.clone())
    };
    assert_eq!(
        ready(last).as_deref(),
        Some("False"),
        "the pod was still Ready when it went:\n{}",
        story()
    );
    last
}

/// The rows of a kubectl table, split on runs of spaces.
pub fn rows(output: &str) -> Vec<Vec<String>> {
    output
        .lines()
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

/// `GET /` over plain HTTP/1.0; the whole answer.
pub fn http_get(address: &str) -> String {
    try_http_get(address).unwrap_or_else(|e| panic!("{e}"))
}

/// `GET /` over plain HTTP/1.0 with a `Host` header; the whole answer, or why there is none.
pub fn try_http_get(address: &str) -> Result<String, String> {
    http_request(address, "GET / HTTP/1.0\r\n\r\n")
}

/// Sends `request` as it is and reads the whole answer (5 s to connect, 5 s per read).
pub fn http_request(address: &str, request: &str) -> Result<String, String> {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect_timeout(
        &address
            .parse()
            .map_err(|e| format!("address {address}: {e}"))?,
        Duration::from_secs(5),
    )
    .map_err(|e| format!("connect {address}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("write to {address}: {e}"))?;
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    Ok(answer)
}

/// The Python interpreter with the official Kubernetes client: `ORRERY_PYTHON`, or the venv
/// `scripts/test` makes at `target/python`. Fails the test with what to do when missing.
pub fn python() -> PathBuf {
    let path = std::env::var_os("ORRERY_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/python/bin/python")
        });
    assert!(
        path.exists(),
        "no Python with the kubernetes client at {} (set ORRERY_PYTHON, or run scripts/test, which makes the venv)",
        path.display()
    );
    path
}

/// Runs `script` with [`python`] and `args`; returns its stdout, failing the test with its
/// stderr if it fails.
pub fn run_python(script: &str, args: &[&str]) -> String {
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "the Python script failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Cluster {
    /// Runs a Python script with the official Kubernetes client loaded from this cluster's
    /// kubeconfig (as `api`, a `CoreV1Api`); fails the test when the script does, and returns
    /// what it printed.
    pub fn python(&self, script: &str) -> String {
        let prelude = "import sys\nfrom kubernetes import client, config\nconfig.load_kube_config(config_file=sys.argv[1])\napi = client.CoreV1Api()\n";
        let kubeconfig = self.kubeconfig();
        run_python(
            &format!("{prelude}{script}"),
            &[kubeconfig.to_str().expect("a UTF-8 path")],
        )
    }
}

/// Whether an `etcd` binary is here to start. Without one the caller skips its test, unless
/// `ORRERY_REQUIRE_ETCD` or `CI` is set, where the test fails instead: CI installs etcd, so a
/// missing one there is a broken test command, not a reason to pass quietly.
#[cfg(feature = "etcd")]
pub fn etcd_available() -> bool {
    if orrery::store::etcd::LocalEtcd::available() {
        return true;
    }
    let required =
        std::env::var_os("ORRERY_REQUIRE_ETCD").is_some() || std::env::var_os("CI").is_some();
    assert!(
        !required,
        "etcd is required here but there is no `etcd` binary (apt-get install etcd-server)"
    );
    eprintln!("skipped: no `etcd` binary (apt-get install etcd-server)");
    false
}

/// The namespace's `default` service account, which pods run as, on an in-process API server
/// where no controller manager runs to make it.
pub async fn default_account(api: &std::sync::Arc<orrery::apiserver::ApiServer>, namespace: &str) {
    let accounts: kube::Api<k8s_openapi::api::core::v1::ServiceAccount> =
        kube::Api::namespaced(api.client("test"), namespace);
    accounts
        .create(
            &kube::api::PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": "default"}})).unwrap(),
        )
        .await
        .unwrap();
}

/// A kube-rs client from the kubeconfig at `path`, as a user's program makes one.
pub async fn kube_client(path: &std::path::Path) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}
