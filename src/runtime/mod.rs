//! The container runtime seam, shaped like the kubelet's CRI: pod sandboxes, images, and
//! containers created, started, stopped, removed, inspected and read from.
//!
//! The kubelet drives a [`ContainerRuntime`] and never knows which one it has: the simulated
//! runtime ([`sim::SimRuntime`], for thousands of virtual pods and for machines without root,
//! always chosen explicitly with `--runtime sim`) or, in a later issue, real containers through
//! youki's libcontainer. Only the kubelet (and the runtime helper process) may import this module.

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
    /// Creates a pod's sandbox and returns its id.
    async fn run_pod_sandbox(&self, config: &SandboxConfig) -> Result<String>;
    /// Stops every container in a sandbox (at once) and the sandbox itself.
    async fn stop_pod_sandbox(&self, sandbox: &str) -> Result<()>;
    /// Removes a stopped sandbox and its containers.
    async fn remove_pod_sandbox(&self, sandbox: &str) -> Result<()>;
    /// Makes an image available and returns its resolved reference.
    async fn pull_image(&self, image: &str) -> Result<String>;
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
    /// Everything a container has written so far.
    async fn container_logs(&self, id: &str) -> Result<Vec<LogLine>>;
    /// Every sandbox with its config (CRI's ListPodSandbox): what a restarted kubelet finds its
    /// pods' sandboxes by.
    async fn list_pod_sandboxes(&self) -> Vec<(String, SandboxConfig)>;
    /// The status of every container in a sandbox (CRI's ListContainers with a sandbox filter).
    async fn list_containers(&self, sandbox: &str) -> Result<Vec<ContainerStatus>>;
    /// The newest container called `container` in the sandbox of pod `namespace/pod` (CRI's
    /// ListContainers with a filter), for serving its logs.
    async fn find_container(&self, namespace: &str, pod: &str, container: &str) -> Option<String>;
}
