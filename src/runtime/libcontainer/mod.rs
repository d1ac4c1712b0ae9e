//! Real containers through youki's libcontainer: [`LibcontainerRuntime`], the kubelets'
//! [`ContainerRuntime`], a client of one runtime helper process per cluster ([`helper`]) that
//! it starts and talks to over a Unix socket ([`protocol`]).
//!
//! The client resolves images (through an [`ImageSource`], the image store in a cluster) into
//! layer directories and the container's process (Entrypoint/Cmd with the pod's command/args,
//! env, user), and sends the helper what to run; the helper builds the OCI spec ([`spec`]),
//! mounts the overlay root, runs libcontainer, reaps, and writes CRI logs ([`logs`]). Waiting
//! out a stop's grace period happens here in the client, so the helper never blocks on it.
//! One helper serves every node; [`LibcontainerRuntime::for_node`] gives each kubelet a view
//! that lists only its node's sandboxes.

pub mod helper;
pub mod logs;
pub mod network;
pub mod protocol;
pub mod raw;
pub mod seccomp;
pub mod spec;
mod stats;

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::oneshot;

pub use helper::PodNetworkMode;
use protocol::{
    ContainerInfo, ContainerSpec, Envelope, MountSpec, Request, ResourceSpec, Response,
    SandboxSpec, SecuritySpec,
};

use super::{
    ContainerConfig, ContainerRuntime, ContainerState, ContainerStats, ContainerStatus,
    ExecRequest, ExecSession, LogLine, Result, RuntimeError, SandboxConfig, SandboxStatus,
};
use crate::images::{Image, ImageError, ImageStore};

/// The image a sandbox's pause process comes from (built into `orrery`).
pub const PAUSE_IMAGE: &str = "orrery/pause";

/// Where the runtime finds images: the cluster's image store, or (for tests and tools) a
/// fixed set of local ones.
#[async_trait]
pub trait ImageSource: Send + Sync + 'static {
    /// The image if present.
    fn get(&self, reference: &str) -> Option<Image>;
    /// Makes the image present and returns it.
    async fn pull(&self, reference: &str) -> Result<Image, ImageError>;
}

#[async_trait]
impl ImageSource for ImageStore {
    fn get(&self, reference: &str) -> Option<Image> {
        ImageStore::get(self, reference)
    }

    async fn pull(&self, reference: &str) -> Result<Image, ImageError> {
        ImageStore::pull(self, reference).await
    }
}

/// Images given by their unpacked layers, without a store (nothing to pull from).
#[derive(Default)]
pub struct LocalImages {
    images: Mutex<HashMap<String, Image>>,
}

impl LocalImages {
    /// Adds (or replaces) an image under its reference.
    pub fn insert(&self, image: Image) {
        lock(&self.images).insert(image.reference.clone(), image);
    }
}

#[async_trait]
impl ImageSource for LocalImages {
    fn get(&self, reference: &str) -> Option<Image> {
        lock(&self.images).get(reference).cloned()
    }

    async fn pull(&self, reference: &str) -> Result<Image, ImageError> {
        self.get(reference)
            .ok_or_else(|| ImageError::NotFound(reference.to_owned()))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// How to start the runtime helper.
#[derive(Clone, Debug)]
pub struct RuntimeOptions {
    /// The `orrery` binary to re-execute (`/proc/self/exe` in the cluster; the test binary's
    /// `CARGO_BIN_EXE_orrery` in tests).
    pub executable: PathBuf,
    /// The helper's root directory (containers, sandboxes, logs).
    pub root: PathBuf,
    /// The cluster's name.
    pub cluster: String,
    /// The cluster's pod network (`--cluster-cidr`).
    pub cluster_cidr: String,
    /// How pods get their network.
    pub network: PodNetworkMode,
    /// The sandbox's pause image ([`PAUSE_IMAGE`]).
    pub pause_image: String,
}

impl RuntimeOptions {
    /// The cluster's defaults: this executable, bridge networking, the built-in pause image.
    pub fn new(root: PathBuf, cluster: &str) -> Self {
        RuntimeOptions {
            executable: PathBuf::from("/proc/self/exe"),
            root,
            cluster: cluster.to_owned(),
            cluster_cidr: super::libcontainer::network::CLUSTER_CIDR.to_owned(),
            network: PodNetworkMode::Bridge,
            pause_image: PAUSE_IMAGE.to_owned(),
        }
    }
}

type Pending = HashMap<u64, oneshot::Sender<(Response, Vec<OwnedFd>)>>;

struct Shared {
    writer: protocol::Writer,
    pending: Arc<Mutex<Option<Pending>>>,
    next_id: AtomicU64,
    images: Arc<dyn ImageSource>,
    pause_image: String,
    child: tokio::sync::Mutex<Option<tokio::process::Child>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The reader holds the socket too: without it, the socket closes and the helper
        // cleans up and exits.
        self.reader.abort();
    }
}

/// Real containers: a client of the cluster's runtime helper. Cheap to clone; every clone and
/// node view shares the one helper.
#[derive(Clone)]
pub struct LibcontainerRuntime {
    shared: Arc<Shared>,
    node: Option<String>,
}

impl std::fmt::Debug for LibcontainerRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LibcontainerRuntime")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

fn helper_failed(message: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Failed {
        action: "reach the runtime helper",
        message: message.to_string(),
    }
}

impl LibcontainerRuntime {
    /// Starts the cluster's runtime helper (`<executable> runtime-helper`) with one end of a
    /// socket pair as its descriptor 3, in its own process group (a terminal's Ctrl-C reaches
    /// the cluster, which then shuts the helper down in order).
    pub async fn start(options: RuntimeOptions, images: Arc<dyn ImageSource>) -> Result<Self> {
        std::fs::create_dir_all(&options.root).map_err(helper_failed)?;
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().map_err(helper_failed)?;
        let theirs = OwnedFd::from(theirs);
        let raw = theirs.as_raw_fd();
        let mut command = tokio::process::Command::new(&options.executable);
        command
            .arg("runtime-helper")
            .arg("--root")
            .arg(&options.root)
            .arg("--cluster")
            .arg(&options.cluster)
            .arg("--cluster-cidr")
            .arg(&options.cluster_cidr)
            .arg("--fd")
            .arg("3")
            .arg("--pod-network")
            .arg(match options.network {
                PodNetworkMode::Bridge => "bridge",
                PodNetworkMode::Loopback => "loopback",
            })
            .stdin(std::process::Stdio::null())
            .process_group(0);
        // SAFETY: between fork and exec, only async-signal-safe calls (dup2, fcntl).
        unsafe {
            command.pre_exec(move || {
                use nix::libc;
                if raw == 3 {
                    let flags = libc::fcntl(3, libc::F_GETFD);
                    if flags < 0 || libc::fcntl(3, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(raw, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().map_err(|e| RuntimeError::Failed {
            action: "start the runtime helper",
            message: format!("{}: {e}", options.executable.display()),
        })?;
        drop(theirs);
        ours.set_nonblocking(true).map_err(helper_failed)?;
        let stream = tokio::net::UnixStream::from_std(ours).map_err(helper_failed)?;
        let (mut reader, writer) = protocol::split(stream);
        let pending: Arc<Mutex<Option<Pending>>> = Arc::new(Mutex::new(Some(HashMap::new())));
        let dispatch = pending.clone();
        let reader = tokio::spawn(async move {
            loop {
                match reader.next::<Envelope<Response>>().await {
                    Ok((Envelope { id, body }, fds)) => {
                        let waiter = lock(&dispatch).as_mut().and_then(|p| p.remove(&id));
                        if let Some(waiter) = waiter {
                            let _ = waiter.send((body, fds));
                        }
                    }
                    Err(error) => {
                        if !matches!(error, protocol::ProtocolError::Closed) {
                            tracing::warn!(%error, "runtime helper connection failed");
                        }
                        // Every caller waiting, and every later one, gets an error.
                        lock(&dispatch).take();
                        return;
                    }
                }
            }
        });
        Ok(LibcontainerRuntime {
            shared: Arc::new(Shared {
                writer,
                pending,
                next_id: AtomicU64::new(1),
                images,
                pause_image: options.pause_image,
                child: tokio::sync::Mutex::new(Some(child)),
                reader,
            }),
            node: None,
        })
    }

    /// The view a node's kubelet uses: the same helper, listing only that node's sandboxes.
    pub fn for_node(&self, node: &str) -> LibcontainerRuntime {
        LibcontainerRuntime {
            shared: self.shared.clone(),
            node: Some(node.to_owned()),
        }
    }

    /// Puts a node on the pod network before its first pod: the cluster's bridge with the
    /// node's gateway, the first address of `pod_cidr`, which is the node's own address (its
    /// InternalIP). `None` when pods get no network of their own (`--pod-network loopback`).
    pub async fn prepare_node(&self, pod_cidr: &str) -> Result<Option<std::net::Ipv4Addr>> {
        let request = Request::PrepareNode {
            pod_cidr: pod_cidr.to_owned(),
        };
        match self.call(request).await? {
            (Response::Address { ip }, _) => Ok(Some(ip)),
            (Response::Ok, _) => Ok(None),
            (other, _) => Err(unexpected(other)),
        }
    }

    /// Stops every container, removes every mount, cgroup and network namespace, and waits
    /// for the helper to exit. Later calls fail.
    pub async fn shutdown(&self) -> Result<()> {
        let answer = tokio::time::timeout(Duration::from_secs(120), self.call(Request::Shutdown));
        let result = match answer.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(helper_failed(
                "the helper did not finish shutting down in 120s",
            )),
        };
        if let Some(mut child) = self.shared.child.lock().await.take() {
            if result.is_err() {
                let _ = child.start_kill();
            }
            let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
        }
        result
    }

    async fn call(&self, request: Request) -> Result<(Response, Vec<OwnedFd>)> {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        match lock(&self.shared.pending).as_mut() {
            Some(pending) => pending.insert(id, tx),
            None => return Err(helper_failed("the runtime helper has exited")),
        };
        if let Err(error) = self
            .shared
            .writer
            .send(&Envelope { id, body: request }, vec![])
            .await
        {
            if let Some(p) = lock(&self.shared.pending).as_mut() {
                p.remove(&id);
            }
            return Err(helper_failed(error));
        }
        let (response, fds) = rx
            .await
            .map_err(|_| helper_failed("the runtime helper has exited"))?;
        match response {
            Response::NotFound { kind, id } => Err(RuntimeError::NotFound {
                kind: match kind.as_str() {
                    "sandbox" => "sandbox",
                    "exec" => "exec",
                    _ => "container",
                },
                id,
            }),
            Response::InvalidState { id, state, action } => Err(RuntimeError::InvalidState {
                id,
                state: match state.as_str() {
                    "created" => "created",
                    "running" => "running",
                    _ => "exited",
                },
                action: match action.as_str() {
                    "start" => "start",
                    "remove" => "remove",
                    "exec" => "exec",
                    _ => "do that",
                },
            }),
            Response::Failed { action, message } => Err(RuntimeError::Failed {
                action: static_action(&action),
                message,
            }),
            response => Ok((response, fds)),
        }
    }

    async fn ok(&self, request: Request) -> Result<()> {
        self.call(request).await.map(|_| ())
    }

    async fn info(&self, id: &str) -> Result<ContainerInfo> {
        match self
            .call(Request::ContainerStatus { id: id.to_owned() })
            .await?
        {
            (Response::Container(info), _) => Ok(*info),
            (other, _) => Err(unexpected(other)),
        }
    }

    async fn sandboxes(&self) -> Result<Vec<protocol::SandboxInfo>> {
        match self.call(Request::ListPodSandboxes).await? {
            (Response::Sandboxes { sandboxes }, _) => Ok(sandboxes
                .into_iter()
                .filter(|s| self.node.as_ref().is_none_or(|n| *n == s.spec.node))
                .collect()),
            (other, _) => Err(unexpected(other)),
        }
    }

    async fn containers(&self, sandbox: &str, removed: bool) -> Result<Vec<ContainerInfo>> {
        let request = Request::ListContainers {
            sandbox: sandbox.to_owned(),
            removed,
        };
        match self.call(request).await? {
            (Response::Containers { containers }, _) => Ok(containers),
            (other, _) => Err(unexpected(other)),
        }
    }

    /// The image if present, looked up off the async workers: the store reads files, and a
    /// built-in image is generated from the binary on first use.
    async fn present(&self, reference: &str) -> Option<Image> {
        let images = self.shared.images.clone();
        let reference = reference.to_owned();
        tokio::task::spawn_blocking(move || images.get(&reference))
            .await
            .ok()
            .flatten()
    }

    async fn image(&self, reference: &str) -> Result<Image> {
        if let Some(image) = self.present(reference).await {
            return Ok(image);
        }
        self.shared
            .images
            .pull(reference)
            .await
            .map_err(|error| RuntimeError::ImagePull {
                image: reference.to_owned(),
                message: error.to_string(),
            })
    }
}

/// Resizes the terminal whose master is `master` (columns, rows), as a session's resize.
fn resizer(master: OwnedFd) -> Box<dyn Fn(u16, u16) + Send + Sync> {
    Box::new(move |columns: u16, rows: u16| {
        let size = nix::pty::Winsize {
            ws_row: rows,
            ws_col: columns,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads the winsize we pass, on the master we own.
        unsafe {
            nix::libc::ioctl(master.as_raw_fd(), nix::libc::TIOCSWINSZ, &size);
        }
    })
}

fn static_action(action: &str) -> &'static str {
    const ACTIONS: [&str; 8] = [
        "run pod sandbox",
        "prepare node network",
        "create container",
        "start container",
        "stop container",
        "exec",
        "wait for container",
        "wait for exec",
    ];
    ACTIONS
        .into_iter()
        .find(|a| *a == action)
        .unwrap_or("run the container runtime")
}

fn unexpected(response: Response) -> RuntimeError {
    helper_failed(format!("unexpected answer {response:?}"))
}

fn timestamp(nanos: Option<i64>) -> Option<jiff::Timestamp> {
    nanos.and_then(|n| jiff::Timestamp::from_nanosecond(n as i128).ok())
}

fn status(info: ContainerInfo) -> ContainerStatus {
    ContainerStatus {
        id: info.id,
        name: info.name,
        state: match info.state.as_str() {
            "created" => ContainerState::Created,
            "running" => ContainerState::Running,
            _ => ContainerState::Exited,
        },
        started_at: timestamp(info.started_at),
        finished_at: timestamp(info.finished_at),
        exit_code: info.exit_code,
        reason: info.reason,
        attempt: info.attempt,
        message: None,
    }
}

/// The container's process from its image and its pod, on the wire.
/// The OCI seccomp profile a container runs under: none when unconfined or privileged (a
/// privileged container runs unconfined, as in containerd), the runtime's default, or a
/// `Localhost` file, whose conditions (capabilities, architecture, kernel) are resolved
/// against the container's capabilities and this node.
fn seccomp_profile(security: &crate::runtime::Security) -> Result<Option<serde_json::Value>> {
    use crate::runtime::SeccompProfile;
    if security.privileged || security.seccomp == SeccompProfile::Unconfined {
        return Ok(None);
    }
    let failed = |message: String| RuntimeError::Failed {
        action: "create container",
        message,
    };
    let caps = spec::capabilities(
        security.privileged,
        &security.add_capabilities,
        &security.drop_capabilities,
    )
    .map_err(|e| failed(e.to_string()))?;
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let target = seccomp::Target {
        arch: seccomp::native_arch(),
        kernel: seccomp::kernel_version(release.trim()),
        caps: &caps,
    };
    match &security.seccomp {
        SeccompProfile::Unconfined => Ok(None),
        SeccompProfile::RuntimeDefault => Ok(Some(seccomp::runtime_default(&target))),
        SeccompProfile::Localhost(path) => seccomp::localhost(path, &target)
            .map(Some)
            .map_err(|e| failed(e.to_string())),
    }
}

fn container_spec(image: &Image, config: &ContainerConfig) -> Result<ContainerSpec> {
    let args = spec::process_args(
        &image.config.entrypoint,
        &image.config.cmd,
        &config.command,
        &config.args,
    )
    .map_err(|e| RuntimeError::Failed {
        action: "create container",
        message: e.to_string(),
    })?;
    let security = &config.security;
    Ok(ContainerSpec {
        name: config.name.clone(),
        attempt: config.attempt,
        image_id: image.id.clone(),
        image: config.image.clone(),
        layers: image.layers.clone(),
        args,
        env: spec::merge_env(&image.config.env, &config.env),
        cwd: config
            .working_dir
            .clone()
            .or_else(|| image.config.working_dir.clone())
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| "/".to_owned()),
        uid: security.run_as_user,
        gid: security.run_as_group,
        user: image.config.user.clone(),
        mounts: config
            .mounts
            .iter()
            .map(|m| MountSpec {
                source: m.host_path.clone(),
                destination: m.container_path.clone(),
                read_only: m.read_only,
            })
            .collect(),
        security: SecuritySpec {
            privileged: security.privileged,
            add: security.add_capabilities.clone(),
            drop: security.drop_capabilities.clone(),
            no_new_privileges: security.allow_privilege_escalation != Some(true)
                && !security.privileged,
            read_only_root: security.read_only_root,
            seccomp: seccomp_profile(security)?,
        },
        resources: ResourceSpec {
            memory_limit: config.resources.memory_limit,
            cpu_limit_millis: config.resources.cpu_limit_millis,
            cpu_request_millis: config.resources.cpu_request_millis,
            pids_limit: config.resources.pids_limit,
        },
        tty: config.tty,
        stdin: config.stdin,
        target: config.target.clone(),
    })
}

#[async_trait]
impl ContainerRuntime for LibcontainerRuntime {
    fn version(&self) -> (&'static str, &'static str) {
        ("libcontainer", "0.7.0")
    }

    async fn run_pod_sandbox(&self, config: &SandboxConfig) -> Result<String> {
        let image = self.image(&self.shared.pause_image).await?;
        let pause = container_spec(
            &image,
            &ContainerConfig {
                name: "POD".to_owned(),
                image: self.shared.pause_image.clone(),
                // The pause process must not be stopped by a pod's grace: it runs as the
                // image says, unprivileged escalation off.
                ..Default::default()
            },
        )?;
        let spec = SandboxSpec {
            uid: config.uid.clone(),
            namespace: config.namespace.clone(),
            name: config.name.clone(),
            hostname: config.hostname.clone(),
            node: config.node.clone(),
            pod_cidr: config.pod_cidr.clone(),
            dns_search: config.dns_search.clone(),
            dns_servers: config.dns_servers.clone(),
            dns_options: config.dns_options.clone(),
            pause,
        };
        match self.call(Request::RunPodSandbox(Box::new(spec))).await? {
            (Response::Id { id }, _) => Ok(id),
            (other, _) => Err(unexpected(other)),
        }
    }

    async fn stop_pod_sandbox(&self, sandbox: &str) -> Result<()> {
        self.ok(Request::StopPodSandbox {
            id: sandbox.to_owned(),
        })
        .await?;
        // Killed at once; wait (bounded) for their ends so statuses are final.
        for container in self.containers(sandbox, false).await? {
            if container.state != "exited" {
                let wait = self.ok(Request::WaitExit {
                    id: container.id.clone(),
                });
                let _ = tokio::time::timeout(Duration::from_secs(10), wait).await;
            }
        }
        Ok(())
    }

    async fn remove_pod_sandbox(&self, sandbox: &str) -> Result<()> {
        self.ok(Request::RemovePodSandbox {
            id: sandbox.to_owned(),
        })
        .await
    }

    async fn pod_sandbox_status(&self, sandbox: &str) -> Result<SandboxStatus> {
        self.sandboxes()
            .await?
            .into_iter()
            .find(|s| s.id == sandbox)
            .map(|s| SandboxStatus {
                ip: s.ip,
                ready: s.ready,
            })
            .ok_or_else(|| RuntimeError::NotFound {
                kind: "sandbox",
                id: sandbox.to_owned(),
            })
    }

    async fn pull_image(&self, image: &str) -> Result<String> {
        self.shared
            .images
            .pull(image)
            .await
            .map(|image| image.id)
            .map_err(|error| RuntimeError::ImagePull {
                image: image.to_owned(),
                message: error.to_string(),
            })
    }

    async fn image_present(&self, image: &str) -> Option<String> {
        self.present(image).await.map(|image| image.id)
    }

    async fn create_container(&self, sandbox: &str, config: &ContainerConfig) -> Result<String> {
        let image = self.image(&config.image).await?;
        let spec = container_spec(&image, config)?;
        let request = Request::CreateContainer {
            sandbox: sandbox.to_owned(),
            spec: Box::new(spec),
        };
        match self.call(request).await? {
            (Response::Id { id }, _) => Ok(id),
            (other, _) => Err(unexpected(other)),
        }
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        self.ok(Request::StartContainer { id: id.to_owned() }).await
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> Result<()> {
        let info = self.info(id).await?;
        if info.state == "exited" {
            return Ok(());
        }
        let signal = |signal: nix::sys::signal::Signal| Request::Kill {
            id: id.to_owned(),
            signal: signal as i32,
        };
        let wait = || Request::WaitExit { id: id.to_owned() };
        if !grace.is_zero() {
            self.ok(signal(nix::sys::signal::Signal::SIGTERM)).await?;
            if let Ok(result) = tokio::time::timeout(grace, self.ok(wait())).await {
                return result;
            }
        }
        self.ok(signal(nix::sys::signal::Signal::SIGKILL)).await?;
        tokio::time::timeout(Duration::from_secs(10), self.ok(wait()))
            .await
            .map_err(|_| RuntimeError::Failed {
                action: "stop container",
                message: "still running 10s after SIGKILL".to_owned(),
            })?
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        self.ok(Request::RemoveContainer { id: id.to_owned() })
            .await
    }

    async fn container_status(&self, id: &str) -> Result<ContainerStatus> {
        let info = self.info(id).await?;
        if info.removed {
            return Err(RuntimeError::NotFound {
                kind: "container",
                id: id.to_owned(),
            });
        }
        Ok(status(info))
    }

    async fn container_stats(&self, id: &str) -> Result<ContainerStats> {
        let request = Request::ContainerStats { id: id.to_owned() };
        match self.call(request).await? {
            (Response::Stats(usage), _) => Ok(ContainerStats {
                timestamp: jiff::Timestamp::now(),
                cpu_usage_core_nanos: usage.cpu_usage_core_nanos,
                memory_usage_bytes: usage.memory_usage_bytes,
                memory_working_set_bytes: usage.memory_working_set_bytes,
                memory_rss_bytes: usage.memory_rss_bytes,
                page_faults: usage.page_faults,
                major_page_faults: usage.major_page_faults,
            }),
            (other, _) => Err(unexpected(other)),
        }
    }

    async fn container_logs(&self, id: &str) -> Result<Vec<LogLine>> {
        let info = self.info(id).await?;
        let text = match std::fs::read(&info.log_path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(error) => {
                return Err(RuntimeError::Failed {
                    action: "run the container runtime",
                    message: format!("read {}: {error}", info.log_path.display()),
                });
            }
        };
        Ok(logs::parse(&text))
    }

    async fn dial(
        &self,
        _sandbox: &str,
        host: &str,
        port: u16,
    ) -> std::io::Result<super::PodConnection> {
        // Pod IPs are real addresses on the node's bridge: the host's network routes there,
        // as it routes any other host a probe names.
        super::dial_tcp(host, port).await
    }

    async fn exec(&self, id: &str, request: ExecRequest) -> Result<ExecSession> {
        let (response, fds) = self
            .call(Request::Exec {
                id: id.to_owned(),
                command: request.command,
                stdin: request.stdin,
                tty: request.tty,
            })
            .await?;
        let Response::ExecStarted { exec } = response else {
            return Err(unexpected(response));
        };
        let io = |e: std::io::Error| RuntimeError::Failed {
            action: "exec",
            message: e.to_string(),
        };
        let runtime = self.clone();
        let exit: futures::future::BoxFuture<'static, Result<i32>> = Box::pin(async move {
            match runtime.call(Request::WaitExec { exec }).await? {
                (Response::Exited { code }, _) => Ok(code),
                (other, _) => Err(unexpected(other)),
            }
        });
        let mut fds = fds.into_iter();
        let mut next = || {
            fds.next().ok_or_else(|| RuntimeError::Failed {
                action: "exec",
                message: "the helper sent too few descriptors".to_owned(),
            })
        };
        if request.tty {
            use tokio::net::unix::pipe;
            let master = next()?;
            let reading = master.try_clone().map_err(io)?;
            let writing = master.try_clone().map_err(io)?;
            let stdout = pipe::Receiver::from_owned_fd_unchecked(reading).map_err(io)?;
            let stdin = pipe::Sender::from_owned_fd_unchecked(writing).map_err(io)?;
            let resize = resizer(master);
            return Ok(ExecSession {
                stdin: request
                    .stdin
                    .then(|| Box::new(stdin) as Box<dyn tokio::io::AsyncWrite + Send + Unpin>),
                stdout: Box::new(PtyReader(stdout)),
                stderr: None,
                resize: Some(resize),
                exit,
            });
        }
        use tokio::net::unix::pipe;
        let stdin = if request.stdin {
            Some(Box::new(pipe::Sender::from_owned_fd(next()?).map_err(io)?)
                as Box<dyn tokio::io::AsyncWrite + Send + Unpin>)
        } else {
            None
        };
        let stdout = pipe::Receiver::from_owned_fd(next()?).map_err(io)?;
        let stderr = pipe::Receiver::from_owned_fd(next()?).map_err(io)?;
        Ok(ExecSession {
            stdin,
            stdout: Box::new(stdout),
            stderr: Some(Box::new(stderr)),
            resize: None,
            exit,
        })
    }

    async fn attach(&self, id: &str) -> Result<ExecSession> {
        use tokio::net::UnixStream;
        let (response, fds) = self.call(Request::Attach { id: id.to_owned() }).await?;
        let Response::Attached { tty, stdin } = response else {
            return Err(unexpected(response));
        };
        let io = |e: std::io::Error| RuntimeError::Failed {
            action: "attach",
            message: e.to_string(),
        };
        let mut fds = fds.into_iter();
        let mut next = || {
            fds.next().ok_or_else(|| RuntimeError::Failed {
                action: "attach",
                message: "the helper sent too few descriptors".to_owned(),
            })
        };
        let input = if stdin { Some(next()?) } else { None };
        let socket = |fd: OwnedFd| -> Result<UnixStream> {
            let std = std::os::unix::net::UnixStream::from(fd);
            std.set_nonblocking(true).map_err(io)?;
            UnixStream::from_std(std).map_err(io)
        };
        let stdout = socket(next()?)?;
        let stderr = if tty { None } else { Some(socket(next()?)?) };
        let runtime = self.clone();
        let waited = id.to_owned();
        let exit: futures::future::BoxFuture<'static, Result<i32>> = Box::pin(async move {
            runtime
                .call(Request::WaitExit { id: waited.clone() })
                .await?;
            Ok(runtime.info(&waited).await?.exit_code.unwrap_or(0))
        });
        let mut resize: Option<Box<dyn Fn(u16, u16) + Send + Sync>> = None;
        let writer = match input {
            Some(fd) => {
                if tty {
                    resize = Some(resizer(fd.try_clone().map_err(io)?));
                }
                Some(Box::new(
                    tokio::net::unix::pipe::Sender::from_owned_fd_unchecked(fd).map_err(io)?,
                )
                    as Box<dyn tokio::io::AsyncWrite + Send + Unpin>)
            }
            None => None,
        };
        Ok(ExecSession {
            stdin: writer,
            stdout: Box::new(stdout),
            stderr: stderr.map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            resize,
            exit,
        })
    }

    async fn list_pod_sandboxes(&self) -> Vec<(String, SandboxConfig)> {
        self.sandboxes()
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|s| {
                let spec = s.spec;
                (
                    s.id,
                    SandboxConfig {
                        uid: spec.uid,
                        namespace: spec.namespace,
                        name: spec.name,
                        hostname: spec.hostname,
                        node: spec.node,
                        pod_cidr: spec.pod_cidr,
                        dns_search: spec.dns_search,
                        dns_servers: spec.dns_servers,
                        dns_options: spec.dns_options,
                    },
                )
            })
            .collect()
    }

    async fn list_containers(&self, sandbox: &str) -> Result<Vec<ContainerStatus>> {
        Ok(self
            .containers(sandbox, false)
            .await?
            .into_iter()
            .map(status)
            .collect())
    }

    async fn find_container(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        previous: bool,
    ) -> Option<String> {
        let mut found = Vec::new();
        for sandbox in self.sandboxes().await.ok()? {
            if sandbox.spec.namespace != namespace || sandbox.spec.name != pod {
                continue;
            }
            for info in self.containers(&sandbox.id, true).await.unwrap_or_default() {
                if info.name == container {
                    found.push((info.created_at, info.id));
                }
            }
        }
        found.sort();
        let skip = usize::from(previous);
        found.into_iter().rev().nth(skip).map(|(_, id)| id)
    }
}

/// A terminal master's output: reading after the other side closed gives EIO, which is the end.
struct PtyReader(tokio::net::unix::pipe::Receiver);

impl tokio::io::AsyncRead for PtyReader {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match std::pin::Pin::new(&mut self.0).poll_read(cx, buf) {
            std::task::Poll::Ready(Err(e)) if e.raw_os_error() == Some(nix::libc::EIO) => {
                std::task::Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::ImageConfig;

    fn image() -> Image {
        Image {
            id: "sha256:abc".into(),
            reference: "busybox".into(),
            layers: vec!["/l/0".into(), "/l/1".into()],
            config: ImageConfig {
                entrypoint: vec![],
                cmd: vec!["sh".into()],
                env: vec!["PATH=/bin".into(), "A=1".into()],
                working_dir: Some("/work".into()),
                user: Some("nobody".into()),
            },
        }
    }

    #[test]
    fn a_container_spec_comes_from_its_image_and_pod() {
        let config = ContainerConfig {
            name: "c".into(),
            image: "busybox".into(),
            args: vec!["-c".into(), "echo hi".into()],
            env: vec![("A".into(), "2".into())],
            ..Default::default()
        };
        let spec = container_spec(&image(), &config).unwrap();
        assert_eq!(spec.args, ["-c", "echo hi"]);
        assert_eq!(spec.env, ["PATH=/bin", "A=2"]);
        assert_eq!(spec.cwd, "/work");
        assert_eq!(spec.user.as_deref(), Some("nobody"));
        assert!(spec.security.no_new_privileges);
        assert_eq!(spec.layers.len(), 2);
        let escalating = ContainerConfig {
            command: vec!["/bin/true".into()],
            security: crate::runtime::Security {
                allow_privilege_escalation: Some(true),
                ..Default::default()
            },
            ..config
        };
        let spec = container_spec(&image(), &escalating).unwrap();
        assert!(!spec.security.no_new_privileges);
        assert_eq!(spec.args, ["/bin/true", "-c", "echo hi"]);
    }

    #[test]
    fn seccomp_profile_selection() {
        use crate::runtime::{SeccompProfile, Security};
        let with = |seccomp: SeccompProfile, privileged: bool| {
            seccomp_profile(&Security {
                seccomp,
                privileged,
                ..Default::default()
            })
        };
        assert_eq!(with(SeccompProfile::Unconfined, false).unwrap(), None);
        let default = with(SeccompProfile::RuntimeDefault, false)
            .unwrap()
            .unwrap();
        assert_eq!(default["defaultAction"], "SCMP_ACT_ERRNO");
        // A privileged container runs unconfined, as in containerd.
        assert_eq!(with(SeccompProfile::RuntimeDefault, true).unwrap(), None);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.json");
        std::fs::write(&path, r#"{"defaultAction": "SCMP_ACT_LOG"}"#).unwrap();
        let local = with(SeccompProfile::Localhost(path), false)
            .unwrap()
            .unwrap();
        assert_eq!(local["defaultAction"], "SCMP_ACT_LOG");
        let missing = with(
            SeccompProfile::Localhost(dir.path().join("nope.json")),
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(missing.contains("cannot load seccomp profile"), "{missing}");
    }

    #[tokio::test]
    async fn local_images_resolve_by_reference() {
        let images = LocalImages::default();
        images.insert(image());
        assert_eq!(images.get("busybox").unwrap().id, "sha256:abc");
        assert!(matches!(
            images.pull("nginx").await,
            Err(ImageError::NotFound(_))
        ));
    }
}
