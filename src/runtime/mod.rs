//! The container runtime seam, shaped like the kubelet's CRI: pod sandboxes, images, and
//! containers created, started, stopped, removed, inspected and read from.
//!
//! The kubelet drives a [`ContainerRuntime`] and never knows which one it has: the simulated
//! runtime ([`sim::SimRuntime`], for thousands of virtual pods and for machines without root,
//! always chosen explicitly with `--runtime sim`) or real containers through youki's libcontainer
//! (`libcontainer::LibcontainerRuntime`, run in a single-threaded helper process). Only the kubelet (and the runtime helper process) may import this module.

pub mod libcontainer;
pub mod sim;

use std::time::Duration;

use async_trait::async_trait;

/// What went wrong in the runtime.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RuntimeError {
    /// No sandbox or container with this id.
    #[error("{kind} {id:?} not found")]
    NotFound {
        /// `sandbox` or `container`.
        kind: &'static str,
        /// The id asked for.
        id: String,
    },
    /// The operation does not fit the container's state (starting one twice, say).
    #[error("container {id:?} is {state}: cannot {action}")]
    InvalidState {
        /// The container.
        id: String,
        /// Its state.
        state: &'static str,
        /// What was asked.
        action: &'static str,
    },
    /// The image could not be pulled, with the registry's words.
    #[error("failed to pull image {image:?}: {message}")]
    ImagePull {
        /// The image reference.
        image: String,
        /// What the registry said.
        message: String,
    },
    /// The runtime cannot do this at all (the simulated runtime has no processes to exec in).
    #[error("{0}")]
    Unsupported(String),
    /// The runtime tried and failed, with its own words: what the kubelet reports as
    /// `CreateContainerError`, `RunContainerError` or a failed sandbox.
    #[error("failed to {action}: {message}")]
    Failed {
        /// What was being done (`create container`, `start container`, `run pod sandbox`, ...).
        action: &'static str,
        /// What went wrong.
        message: String,
    },
}

/// The result of a runtime operation.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// A pod's sandbox: what its containers share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxConfig {
    /// The pod's uid.
    pub uid: String,
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// The pod's hostname (its name, or `spec.hostname`), for `/etc/hostname` and UTS.
    pub hostname: String,
    /// The node it runs on (`node-1`): part of its cgroup path.
    pub node: String,
    /// The node's pod CIDR (`10.244.1.0/24`): where the runtime takes the pod's IP from.
    pub pod_cidr: String,
    /// `/etc/resolv.conf` search domains (`<namespace>.svc.cluster.local svc.cluster.local
    /// cluster.local`).
    pub dns_search: Vec<String>,
    /// `/etc/resolv.conf` nameservers; empty means the host's.
    pub dns_servers: Vec<String>,
    /// `/etc/resolv.conf` options (`ndots:5`), the kubelet's by the pod's `dnsPolicy`.
    pub dns_options: Vec<String>,
}

/// A sandbox as the runtime has it now (CRI's PodSandboxStatus).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxStatus {
    /// The pod's IP, once its network is up.
    pub ip: Option<String>,
    /// Whether the sandbox (its namespaces and network) is up.
    pub ready: bool,
}

/// A host path made visible in a container (a volume, or a file the kubelet writes such as
/// the termination-message file).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mount {
    /// The path on the host.
    pub host_path: std::path::PathBuf,
    /// Where it appears in the container.
    pub container_path: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// What a container may do (from `securityContext`), in the runtime's terms.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Security {
    /// `runAsUser`; the image's user when unset.
    pub run_as_user: Option<u32>,
    /// `runAsGroup`.
    pub run_as_group: Option<u32>,
    /// `readOnlyRootFilesystem`.
    pub read_only_root: bool,
    /// `privileged`: every capability, no masked or read-only paths, host devices.
    pub privileged: bool,
    /// `capabilities.add` (`NET_ADMIN`, without `CAP_`).
    pub add_capabilities: Vec<String>,
    /// `capabilities.drop` (`ALL` drops every one).
    pub drop_capabilities: Vec<String>,
    /// `allowPrivilegeEscalation` as set; `no_new_privs` is on unless this is `Some(true)` or
    /// the container is privileged.
    pub allow_privilege_escalation: Option<bool>,
    /// `seccompProfile`, the container's over the pod's.
    pub seccomp: SeccompProfile,
}

/// The seccomp filter a container runs under (`securityContext.seccompProfile.type`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum SeccompProfile {
    /// `Unconfined`, and Kubernetes' default when unset: no filter.
    #[default]
    Unconfined,
    /// `RuntimeDefault`: the runtime's default profile (containerd's and Docker's).
    RuntimeDefault,
    /// `Localhost`: the profile in this file on the node (`<kubelet root>/seccomp/<name>`).
    Localhost(std::path::PathBuf),
}

/// The limits a container's cgroup enforces (from `resources.limits`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    /// `limits.memory`, in bytes.
    pub memory_limit: Option<i64>,
    /// `limits.cpu`, in millicores (quota = millicores * period / 1000, period 100 ms).
    pub cpu_limit_millis: Option<i64>,
    /// `requests.cpu`, in millicores (cpu shares = millicores * 1024 / 1000, at least 2).
    pub cpu_request_millis: Option<i64>,
    /// The most processes the container may have (the kubelet's pod pids limit).
    pub pids_limit: Option<i64>,
}

/// One container to create in a sandbox.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerConfig {
    /// The container's name in its pod.
    pub name: String,
    /// The image reference.
    pub image: String,
    /// `command` (the entrypoint), if the pod sets it.
    pub command: Vec<String>,
    /// `args`, if the pod sets them.
    pub args: Vec<String>,
    /// Environment variables.
    pub env: Vec<(String, String)>,
    /// How many times this container has been created before in its pod (CRI's
    /// `ContainerMetadata.attempt`): what a restarted kubelet reads its restart count from.
    pub attempt: u32,
    /// `workingDir`; the image's when unset.
    pub working_dir: Option<String>,
    /// Volumes and files mounted into the container.
    pub mounts: Vec<Mount>,
    /// `securityContext`, merged with the pod's.
    pub security: Security,
    /// `resources`.
    pub resources: Resources,
    /// `tty`: the container's stdout is a terminal.
    pub tty: bool,
    /// `stdin`: the container takes input, which a client may [`ContainerRuntime::attach`] to.
    pub stdin: bool,
    /// The id of the container whose process namespace this one joins (an ephemeral
    /// container's `targetContainerName`); `None`: a namespace of its own.
    pub target: Option<String>,
    /// The TCP `containerPort`s the pod declares for this container. Real containers listen
    /// wherever their programs bind (the list is informational, as in Kubernetes); the
    /// simulated runtime's programs listen on them (see [`sim`]).
    pub ports: Vec<u16>,
}

/// Where a container is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContainerState {
    /// Created, not started.
    Created,
    /// Its process runs.
    Running,
    /// Its process has ended.
    Exited,
}

impl ContainerState {
    fn name(self) -> &'static str {
        match self {
            ContainerState::Created => "created",
            ContainerState::Running => "running",
            ContainerState::Exited => "exited",
        }
    }
}

/// A container's status, as the kubelet reads it to write `containerStatuses`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerStatus {
    /// The container id.
    pub id: String,
    /// Its name in the pod.
    pub name: String,
    /// Its state.
    pub state: ContainerState,
    /// When it started running, if it did.
    pub started_at: Option<jiff::Timestamp>,
    /// When it exited, if it did.
    pub finished_at: Option<jiff::Timestamp>,
    /// Its exit code, once exited.
    pub exit_code: Option<i32>,
    /// Why it exited, as the kubelet reports it: `Completed`, `Error`, `OOMKilled`.
    pub reason: Option<String>,
    /// Its [`ContainerConfig::attempt`].
    pub attempt: u32,
    /// A message about its end (the termination message, or what the runtime knows).
    pub message: Option<String>,
}

/// A container's resource use so far (CRI's ContainerStats), as its cgroup counts it on the
/// real runtime and as its program declares it on the simulated one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ContainerStats {
    /// When it was read.
    pub timestamp: jiff::Timestamp,
    /// CPU time used since the container started, in nanoseconds (cumulative).
    pub cpu_usage_core_nanos: u64,
    /// Memory in use, page cache included (cgroup `memory.usage_in_bytes` / `memory.current`).
    pub memory_usage_bytes: u64,
    /// The working set: usage less inactive file pages, what the kubelet evicts by and `kubectl
    /// top` shows.
    pub memory_working_set_bytes: u64,
    /// Anonymous and swap-cache memory (`rss` / `anon`).
    pub memory_rss_bytes: u64,
    /// Page faults so far.
    pub page_faults: u64,
    /// Major page faults so far.
    pub major_page_faults: u64,
}

/// A command to run in a running container (`kubectl exec`, exec probes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecRequest {
    /// The command and its arguments.
    pub command: Vec<String>,
    /// Whether the caller sends stdin.
    pub stdin: bool,
    /// Whether the command gets a terminal (stdout and stderr are then one stream).
    pub tty: bool,
}

/// A command running in a container: its streams and, in the end, its exit code.
pub struct ExecSession {
    /// Its stdin, when asked for; dropping it closes the command's stdin.
    pub stdin: Option<Box<dyn tokio::io::AsyncWrite + Send + Unpin>>,
    /// Its stdout (with a terminal: everything it writes).
    pub stdout: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    /// Its stderr; `None` with a terminal.
    pub stderr: Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>>,
    /// Resizes its terminal (columns, rows); `None` without one.
    pub resize: Option<Box<dyn Fn(u16, u16) + Send + Sync>>,
    /// Resolves to its exit code once it has ended.
    pub exit: futures::future::BoxFuture<'static, Result<i32>>,
}

impl std::fmt::Debug for ExecSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecSession")
            .field("stdin", &self.stdin.is_some())
            .field("tty", &self.resize.is_some())
            .finish_non_exhaustive()
    }
}

/// A byte stream into a pod's network: what an httpGet or tcpSocket probe, or a forwarded
/// port, talks through.
pub trait PodStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> PodStream for T {}

/// A connection opened by [`ContainerRuntime::dial`].
pub type PodConnection = Box<dyn PodStream>;

/// A TCP connection from this machine to `host:port` (an IP address or a name to resolve),
/// as the host's own network routes it: how a runtime whose pods have real addresses on the
/// host dials them.
pub async fn dial_tcp(host: &str, port: u16) -> std::io::Result<PodConnection> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let stream = tokio::net::TcpStream::connect((host, port)).await?;
    Ok(Box::new(stream))
}

/// One line a container wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// When it was written.
    pub time: jiff::Timestamp,
    /// `stdout` or `stderr`.
    pub stream: &'static str,
    /// The line, without its newline.
    pub text: String,
}

/// The runtime seam: what the kubelet needs from a container runtime (CRI's shape).
#[async_trait]
pub trait ContainerRuntime: Send + Sync + 'static {
    /// The runtime's name and version (CRI's Version): `containerID`s read `<name>://<id>` and
    /// the Node's `containerRuntimeVersion` `<name>://<version>`.
    fn version(&self) -> (&'static str, &'static str);
    /// Creates a pod's sandbox and returns its id.
    async fn run_pod_sandbox(&self, config: &SandboxConfig) -> Result<String>;
    /// Stops every container in a sandbox (at once) and the sandbox itself.
    async fn stop_pod_sandbox(&self, sandbox: &str) -> Result<()>;
    /// Removes a stopped sandbox and its containers.
    async fn remove_pod_sandbox(&self, sandbox: &str) -> Result<()>;
    /// The sandbox's IP and readiness.
    async fn pod_sandbox_status(&self, sandbox: &str) -> Result<SandboxStatus>;
    /// Makes an image available and returns its resolved reference (its image id, as
    /// `imageID` in a container status).
    async fn pull_image(&self, image: &str) -> Result<String>;
    /// The image's id if it is present already (CRI's ImageStatus), for `imagePullPolicy:
    /// IfNotPresent` and `Never`.
    async fn image_present(&self, image: &str) -> Option<String>;
    /// Creates a container in a sandbox and returns its id.
    async fn create_container(&self, sandbox: &str, config: &ContainerConfig) -> Result<String>;
    /// Starts a created container.
    async fn start_container(&self, id: &str) -> Result<()>;
    /// Stops a running container: SIGTERM, then SIGKILL after `grace`.
    async fn stop_container(&self, id: &str, grace: Duration) -> Result<()>;
    /// Removes a container that is not running.
    async fn remove_container(&self, id: &str) -> Result<()>;
    /// A container's current status.
    async fn container_status(&self, id: &str) -> Result<ContainerStatus>;
    /// A running container's resource use (CRI's ContainerStats).
    async fn container_stats(&self, id: &str) -> Result<ContainerStats>;
    /// Everything a container has written so far; a removed container's logs stay readable
    /// until its sandbox is removed (for `kubectl logs --previous`).
    async fn container_logs(&self, id: &str) -> Result<Vec<LogLine>>;
    /// Runs a command in a running container (CRI's Exec).
    async fn exec(&self, id: &str, request: ExecRequest) -> Result<ExecSession>;
    /// Attaches to a running container's own process (CRI's Attach): its output from now on,
    /// its input if it takes any (`stdin`), its terminal's size if it has one; `exit`
    /// resolves with the container's exit code.
    async fn attach(&self, id: &str) -> Result<ExecSession>;
    /// Every sandbox with its config (CRI's ListPodSandbox): what a restarted kubelet finds its
    /// pods' sandboxes by.
    async fn list_pod_sandboxes(&self) -> Vec<(String, SandboxConfig)>;
    /// The status of every container in a sandbox (CRI's ListContainers with a sandbox filter).
    async fn list_containers(&self, sandbox: &str) -> Result<Vec<ContainerStatus>>;
    /// The newest container called `container` in the sandbox of pod `namespace/pod` (CRI's
    /// ListContainers with a filter), for serving its logs; with `previous`, the one before it
    /// (removed ones included).
    async fn find_container(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        previous: bool,
    ) -> Option<String>;

    /// Opens a TCP connection from the node to `port` at `host`, as the kubelet's httpGet and
    /// tcpSocket probes and port-forward do: `host` is the sandbox's IP, or the host a probe
    /// names. The pod network is the runtime's, so the runtime says where that leads (real
    /// containers: the host's network, which routes pod IPs to the node's bridge; simulated
    /// ones: the simulated programs, never the network). Errors are the connection's
    /// (`ConnectionRefused`, ...); the caller bounds the time it waits.
    async fn dial(&self, sandbox: &str, host: &str, port: u16) -> std::io::Result<PodConnection>;

    /// Runs a command in a container to its end (CRI's ExecSync, for exec probes): its exit
    /// code and its stdout and stderr together, or `Failed` after `timeout`.
    async fn exec_sync(
        &self,
        id: &str,
        command: Vec<String>,
        timeout: Duration,
    ) -> Result<(i32, Vec<u8>)> {
        use tokio::io::AsyncReadExt;
        let session = self
            .exec(
                id,
                ExecRequest {
                    command,
                    stdin: false,
                    tty: false,
                },
            )
            .await?;
        let run = async move {
            let mut stdout = session.stdout;
            let mut stderr = session.stderr;
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let read_err = async {
                if let Some(stderr) = stderr.as_mut() {
                    let _ = stderr.read_to_end(&mut err).await;
                }
            };
            let (_, _) = tokio::join!(stdout.read_to_end(&mut out), read_err);
            let code = session.exit.await?;
            out.extend_from_slice(&err);
            Ok((code, out))
        };
        tokio::time::timeout(timeout, run)
            .await
            .map_err(|_| RuntimeError::Failed {
                action: "exec",
                message: format!("command timed out after {}s", timeout.as_secs_f64()),
            })?
    }
}
