//! Real containers through `LibcontainerRuntime` and its helper process, with a root filesystem
//! made from Debian's `busybox-static`. Needs root (CI is root); skips with a reason otherwise.
//! Pods use loopback-only network namespaces here, so the tests do not depend on the bridge.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use orrery::images::{Image, ImageConfig};
use orrery::runtime::libcontainer::{
    LibcontainerRuntime, LocalImages, PodNetworkMode, RuntimeOptions,
};
use orrery::runtime::{
    ContainerConfig, ContainerRuntime, ContainerState, ExecRequest, Resources, SandboxConfig,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const APPLETS: [&str; 18] = [
    "test", "seq", "sh", "echo", "sleep", "cat", "ls", "id", "hostname", "wget", "nc", "readlink",
    "true", "false", "dd", "tail", "head", "grep",
];

fn root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("skipping: real containers need root (CI runs as root)");
    false
}

/// A runtime on a private root with busybox images; shut down (or, on a panic, cleaned up by
/// the helper when the socket closes) at the end.
struct Fixture {
    runtime: LibcontainerRuntime,
    /// Dropped after the runtime and before the root directory.
    _helper_gone: HelperGone,
    root: tempfile::TempDir,
    cluster: String,
}

/// On a failure the runtime is dropped, its socket closes, and the helper cleans up and exits:
/// waits (bounded) for that, so the root directory is removed only after.
struct HelperGone(String);

impl Drop for HelperGone {
    fn drop(&mut self) {
        let marker = format!("--cluster\0{}\0", self.0);
        for _ in 0..500 {
            let alive = std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
                std::fs::read(entry.path().join("cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&marker))
            });
            if !alive {
                return;
            }
            #[allow(clippy::disallowed_methods)] // a plain test thread, not a tokio worker
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn busybox_layer(dir: &Path) -> PathBuf {
    let layer = dir.join("layer");
    std::fs::create_dir_all(layer.join("bin")).unwrap();
    std::fs::create_dir_all(layer.join("etc")).unwrap();
    std::fs::copy("/bin/busybox", layer.join("bin/busybox")).unwrap();
    for applet in APPLETS {
        std::os::unix::fs::symlink("busybox", layer.join("bin").join(applet)).unwrap();
    }
    std::fs::write(
        layer.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )
    .unwrap();
    std::fs::write(layer.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
    layer
}

impl Fixture {
    async fn start(tag: &str) -> Fixture {
        static N: AtomicU32 = AtomicU32::new(0);
        let root = tempfile::tempdir().unwrap();
        let cluster = format!(
            "t{}{}{}",
            std::process::id(),
            tag,
            N.fetch_add(1, Ordering::Relaxed)
        );
        let layer = busybox_layer(root.path());
        let images = Arc::new(LocalImages::default());
        let image = |reference: &str, entrypoint: &[&str], cmd: &[&str]| Image {
            id: format!("sha256:{reference}"),
            reference: reference.to_owned(),
            layers: vec![layer.clone()],
            config: ImageConfig {
                entrypoint: entrypoint.iter().map(|s| s.to_string()).collect(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                env: vec!["PATH=/bin".into()],
                working_dir: None,
                user: None,
            },
        };
        images.insert(image("busybox", &[], &["sh"]));
        images.insert(image("pause", &["sleep"], &["2147483647"]));
        let mut options = RuntimeOptions::new(root.path().join("runtime"), &cluster);
        options.executable = PathBuf::from(env!("CARGO_BIN_EXE_orrery"));
        options.network = PodNetworkMode::Loopback;
        options.pause_image = "pause".into();
        let runtime = LibcontainerRuntime::start(options, images).await.unwrap();
        Fixture {
            runtime,
            _helper_gone: HelperGone(cluster.clone()),
            root,
            cluster,
        }
    }

    fn sandbox_config(&self, name: &str) -> SandboxConfig {
        SandboxConfig {
            uid: format!("uid-{name}"),
            namespace: "default".into(),
            name: name.into(),
            hostname: name.into(),
            node: "node-1".into(),
            pod_cidr: "10.244.1.0/24".into(),
            dns_search: vec!["default.svc.cluster.local".into()],
            dns_servers: vec!["10.96.0.10".into()],
            dns_options: vec!["ndots:5".into()],
        }
    }

    async fn sandbox(&self, name: &str) -> String {
        self.runtime
            .run_pod_sandbox(&self.sandbox_config(name))
            .await
            .unwrap()
    }

    async fn run(&self, sandbox: &str, config: ContainerConfig) -> String {
        let id = self
            .runtime
            .create_container(sandbox, &config)
            .await
            .unwrap();
        self.runtime.start_container(&id).await.unwrap();
        id
    }

    async fn wait_exited(&self, id: &str) -> orrery::runtime::ContainerStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let status = self.runtime.container_status(id).await.unwrap();
            if status.state == ContainerState::Exited {
                return status;
            }
            assert!(Instant::now() < deadline, "{id} still {:?}", status.state);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn logs(&self, id: &str) -> Vec<String> {
        let lines = self.runtime.container_logs(id).await.unwrap();
        lines.into_iter().map(|l| l.text).collect()
    }

    /// Shuts down and checks that nothing is left on the host.
    async fn finish(self) {
        self.runtime.shutdown().await.unwrap();
        assert_nothing_left(&self.cluster, self.root.path());
    }
}

fn sh(name: &str, script: &str) -> ContainerConfig {
    ContainerConfig {
        name: name.into(),
        image: "busybox".into(),
        command: vec!["sh".into(), "-c".into(), script.into()],
        ..Default::default()
    }
}

fn assert_nothing_left(cluster: &str, root: &Path) {
    let marker = format!("/orrery/{cluster}");
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if entry.file_name().to_string_lossy().parse::<u32>().is_err() {
            continue;
        }
        let cgroup = std::fs::read_to_string(entry.path().join("cgroup")).unwrap_or_default();
        assert!(
            !cgroup.contains(&marker),
            "process {:?} is left in {marker}",
            entry.file_name()
        );
    }
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let left = hierarchy.path().join("orrery").join(cluster);
        assert!(!left.exists(), "cgroup {} is left", left.display());
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root = root.to_string_lossy();
    for line in mountinfo.lines() {
        assert!(!line.contains(root.as_ref()), "mount left: {line}");
    }
    if let Ok(entries) = std::fs::read_dir("/run/netns") {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            assert!(
                !name.starts_with(&format!("orrery-{cluster}-")),
                "netns {name} is left"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn echo_exits_zero_with_its_log_line_and_a_failure_is_an_error() {
    if !root() {
        return;
    }
    let f = Fixture::start("echo").await;
    let sandbox = f.sandbox("echo").await;
    let started = Instant::now();
    let id = f
        .run(&sandbox, sh("hello", "echo hello from $(hostname)"))
        .await;
    eprintln!("create+start: {:?}", started.elapsed());
    let status = f.wait_exited(&id).await;
    assert_eq!(status.exit_code, Some(0));
    assert_eq!(status.reason.as_deref(), Some("Completed"));
    assert!(status.started_at.is_some() && status.finished_at.is_some());
    assert_eq!(f.logs(&id).await, ["hello from echo"]);

    let failing = f.run(&sandbox, sh("fail", "echo oops >&2; exit 3")).await;
    let status = f.wait_exited(&failing).await;
    assert_eq!(
        (status.exit_code, status.reason.as_deref()),
        (Some(3), Some("Error"))
    );
    let lines = f.runtime.container_logs(&failing).await.unwrap();
    assert_eq!(
        (lines[0].stream, lines[0].text.as_str()),
        ("stderr", "oops")
    );

    // A removed container's log stays, and find_container finds the newest and the previous.
    let again = f
        .run(
            &sandbox,
            ContainerConfig {
                attempt: 1,
                ..sh("fail", "exit 0")
            },
        )
        .await;
    f.wait_exited(&again).await;
    f.runtime.remove_container(&failing).await.unwrap();
    assert_eq!(f.logs(&failing).await, ["oops"]);
    let find = |previous| {
        f.runtime
            .find_container("default", "echo", "fail", previous)
    };
    assert_eq!(find(false).await.as_deref(), Some(again.as_str()));
    assert_eq!(find(true).await.as_deref(), Some(failing.as_str()));
    let listed = f.runtime.list_containers(&sandbox).await.unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    let sandboxes = f.runtime.for_node("node-1").list_pod_sandboxes().await;
    assert_eq!(sandboxes.len(), 1);
    assert!(
        f.runtime
            .for_node("node-2")
            .list_pod_sandboxes()
            .await
            .is_empty()
    );
    assert!(f.runtime.pod_sandbox_status(&sandbox).await.unwrap().ready);
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_sends_sigterm_then_sigkill_after_the_grace_period() {
    if !root() {
        return;
    }
    let f = Fixture::start("stop").await;
    let sandbox = f.sandbox("stop").await;
    let polite = f
        .run(
            &sandbox,
            sh(
                "polite",
                "trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done",
            ),
        )
        .await;
    let stubborn = f
        .run(
            &sandbox,
            ContainerConfig {
                command: vec!["sleep".into(), "1000".into()],
                ..sh("stubborn", "")
            },
        )
        .await;
    // Let the trap be installed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    f.runtime
        .stop_container(&polite, Duration::from_secs(20))
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    let status = f.runtime.container_status(&polite).await.unwrap();
    assert_eq!(
        (status.state, status.exit_code),
        (ContainerState::Exited, Some(0))
    );
    assert_eq!(f.logs(&polite).await, ["bye"]);

    let started = Instant::now();
    f.runtime
        .stop_container(&stubborn, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1));
    let status = f.runtime.container_status(&stubborn).await.unwrap();
    assert_eq!(status.exit_code, Some(137));
    assert_eq!(status.reason.as_deref(), Some("Error"));
    f.runtime.stop_pod_sandbox(&sandbox).await.unwrap();
    f.runtime.remove_pod_sandbox(&sandbox).await.unwrap();
    assert!(f.runtime.list_pod_sandboxes().await.is_empty());
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_memory_hog_is_oom_killed() {
    if !root() {
        return;
    }
    let f = Fixture::start("oom").await;
    let sandbox = f.sandbox("oom").await;
    let id = f
        .run(
            &sandbox,
            ContainerConfig {
                resources: Resources {
                    memory_limit: Some(32 << 20),
                    ..Default::default()
                },
                ..sh("hog", "x=a; while true; do x=$x$x; done")
            },
        )
        .await;
    let status = f.wait_exited(&id).await;
    assert_eq!(status.exit_code, Some(137));
    assert_eq!(status.reason.as_deref(), Some("OOMKilled"));
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn containers_in_a_sandbox_share_hostname_ipc_and_localhost() {
    if !root() {
        return;
    }
    let f = Fixture::start("share").await;
    let sandbox = f.sandbox("shared-pod").await;
    let server = f
        .run(
            &sandbox,
            sh(
                "server",
                "hostname; readlink /proc/self/ns/ipc; readlink /proc/self/ns/net; \
                 echo pong | nc -l -p 7777",
            ),
        )
        .await;
    let client = f
        .run(
            &sandbox,
            sh(
                "client",
                "hostname; readlink /proc/self/ns/ipc; readlink /proc/self/ns/net; \
                 cat /etc/hostname; grep nameserver /etc/resolv.conf; \
                 for i in $(seq 1 100); do nc 127.0.0.1 7777 </dev/null && exit 0; sleep 0.05; done; exit 1",
            ),
        )
        .await;
    let status = f.wait_exited(&client).await;
    let client_lines = f.logs(&client).await;
    assert_eq!(status.exit_code, Some(0), "{client_lines:?}");
    f.wait_exited(&server).await;
    let server_lines = f.logs(&server).await;
    assert_eq!(server_lines[0], "shared-pod");
    assert_eq!(client_lines[0], "shared-pod");
    assert_eq!(server_lines[1], client_lines[1], "same IPC namespace");
    assert_eq!(server_lines[2], client_lines[2], "same network namespace");
    assert_eq!(client_lines[3], "shared-pod");
    assert_eq!(client_lines[4], "nameserver 10.96.0.10");
    assert_eq!(client_lines[5], "pong");
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_returns_output_exit_code_and_takes_stdin() {
    if !root() {
        return;
    }
    let f = Fixture::start("exec").await;
    let sandbox = f.sandbox("exec").await;
    let id = f
        .run(
            &sandbox,
            ContainerConfig {
                env: vec![("GREETING".into(), "hi".into())],
                command: vec!["sleep".into(), "1000".into()],
                ..sh("main", "")
            },
        )
        .await;
    let (code, output) = f
        .runtime
        .exec_sync(
            &id,
            vec![
                "sh".into(),
                "-c".into(),
                "echo $GREETING; echo err >&2; exit 4".into(),
            ],
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(code, 4);
    assert_eq!(String::from_utf8_lossy(&output), "hi\nerr\n");

    let session = f
        .runtime
        .exec(
            &id,
            ExecRequest {
                command: vec!["cat".into()],
                stdin: true,
                tty: false,
            },
        )
        .await
        .unwrap();
    let mut stdin = session.stdin.unwrap();
    stdin.write_all(b"through stdin\n").await.unwrap();
    drop(stdin);
    let mut out = String::new();
    let mut stdout = session.stdout;
    tokio::time::timeout(Duration::from_secs(10), stdout.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out, "through stdin\n");
    assert_eq!(session.exit.await.unwrap(), 0);

    let session = f
        .runtime
        .exec(
            &id,
            ExecRequest {
                command: vec![
                    "sh".into(),
                    "-c".into(),
                    "test -t 1 && echo terminal".into(),
                ],
                stdin: false,
                tty: true,
            },
        )
        .await
        .unwrap();
    (session.resize.as_ref().unwrap())(100, 40);
    let mut out = String::new();
    let mut stdout = session.stdout;
    tokio::time::timeout(Duration::from_secs(10), stdout.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.trim(), "terminal");
    assert_eq!(session.exit.await.unwrap(), 0);
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_socket_makes_the_helper_clean_up_and_exit() {
    if !root() {
        return;
    }
    let f = Fixture::start("drop").await;
    let sandbox = f.sandbox("dropped").await;
    f.run(
        &sandbox,
        ContainerConfig {
            command: vec!["sleep".into(), "1000".into()],
            ..sh("sleeper", "")
        },
    )
    .await;
    let Fixture {
        runtime,
        _helper_gone,
        root,
        cluster,
    } = f;
    // As when the cluster process dies: the socket closes and nothing else is said.
    drop(runtime);
    tokio::task::spawn_blocking(move || drop(_helper_gone))
        .await
        .unwrap();
    assert_nothing_left(&cluster, root.path());
}
