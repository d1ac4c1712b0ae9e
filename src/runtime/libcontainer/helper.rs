//! The runtime helper: the `orrery` binary re-executed as `orrery runtime-helper`, one per
//! cluster, which owns every container through youki's libcontainer.
//!
//! libcontainer clones and runs Rust code in the child without exec, so it must run in a
//! single-threaded process: the helper is a tokio `current_thread` runtime (no
//! `spawn_blocking`, no `tokio::fs`) whose one loop takes requests from the client socket,
//! child-exit notices (SIGCHLD) and log-reader endings, in turn. It is a child subreaper and
//! `waitpid`s exactly the pids it knows (containers' and execs' init processes), never `-1`:
//! libcontainer reaps its own intermediate processes; the one exception is a killed container's
//! init, which ends only once the zombies of a failed exec in its pid namespace are reaped. It writes each container's stdout and
//! stderr as CRI log files. When the socket to the main process closes (or on `Shutdown`), it
//! kills every container, unmounts, deletes, removes cgroups and network namespaces, and exits;
//! at start it sweeps whatever a crashed previous helper left under the same root.
//!
//! Layout under `--root`: `state/` (libcontainer's state dirs), `containers/<id>/` (bundle:
//! `config.json`, the overlay's `rootfs`, `upper`, `work`), `sandboxes/<id>/` (`hosts`,
//! `hostname`, `resolv.conf`, the pod's `shm`), `pods/<ns>_<pod>_<uid>/<container>/<n>.log`.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use libcontainer::container::Container as LcContainer;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::mount::{MntFlags, MsFlags};
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, oneshot};

use super::logs::LineSplitter;
use super::network::{Network, PodNetwork};
use super::protocol::{
    self, ContainerInfo, ContainerSpec, Envelope, Request, Response, SandboxInfo, SandboxSpec,
};
use super::spec::{self, Namespaces, SandboxFiles};

/// How pods get their network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodNetworkMode {
    /// A veth to the cluster's bridge and an address from the node's pod CIDR
    /// ([`Network::add_pod`]).
    Bridge,
    /// A network namespace with only loopback up (no address, like a pod with only CNI's
    /// loopback plugin): for machines and tests without the bridge.
    Loopback,
}

/// The helper's options, from its command line.
#[derive(Clone, Debug)]
pub struct HelperArgs {
    /// Its root directory.
    pub root: PathBuf,
    /// The cluster's name (cgroup paths, netns names, bridge).
    pub cluster: String,
    /// The cluster's pod network (`10.244.0.0/14`), routed on-link from every pod.
    pub cluster_cidr: String,
    /// The socket to the client, inherited as this descriptor.
    pub fd: i32,
    /// How pods get their network.
    pub network: PodNetworkMode,
}

/// Runs the helper until its socket closes. Call it before any other thread exists.
pub fn main(args: HelperArgs) -> ExitCode {
    init_tracing(&args.root);
    if let Err(error) = nix::sys::prctl::set_child_subreaper(true) {
        eprintln!("orrery runtime-helper: cannot become a child subreaper: {error}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("orrery runtime-helper: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    let local = tokio::task::LocalSet::new();
    match local.block_on(&runtime, serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("orrery runtime-helper: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to `<root>/helper.log`, never to stderr: a container's init process runs the helper's
/// code (and its logging) after its stderr has become the container's, so anything written to
/// stderr there would land in the container's log.
fn init_tracing(root: &Path) {
    let _ = std::fs::create_dir_all(root);
    let Ok(file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(root.join("helper.log"))
    else {
        return;
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,libcgroups=error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .init();
}

/// A container's output streams the helper reads: (`stdout`/`stderr`, read end).
type Streams = Vec<(&'static str, OwnedFd)>;

/// What the loop takes in besides requests.
enum Event {
    /// A log reader reached the end of its stream.
    LogClosed(String),
}

struct Sandbox {
    spec: SandboxSpec,
    dir: PathBuf,
    network: Option<PodNetwork>,
    pause: Option<String>,
    stopped: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Created,
    Running,
    Exited,
}

struct Container {
    sandbox: String,
    name: String,
    attempt: u32,
    dir: PathBuf,
    cgroups_path: String,
    log_path: PathBuf,
    state: State,
    pid: Option<Pid>,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    exit_code: Option<i32>,
    reason: Option<String>,
    open_streams: u8,
    removed: bool,
    waiters: Vec<oneshot::Sender<()>>,
    /// The process's spec, for execs.
    process: serde_json::Value,
    /// Where input to the container goes (its terminal's master, or its stdin pipe), for
    /// attaching; `None` unless it was created with `stdin`.
    input: Option<OwnedFd>,
    /// The attached clients' ends, by stream: its output is copied to each as to its log.
    sinks: Sinks,
}

/// The attached clients of a container, by stream (`stdout`, `stderr`).
type Sinks = std::rc::Rc<std::cell::RefCell<Vec<(&'static str, std::os::unix::net::UnixStream)>>>;

struct Exec {
    pid: Pid,
    code: Option<i32>,
    waiters: Vec<oneshot::Sender<i32>>,
}

enum Owner {
    Container(String),
    Exec(u64),
}

struct Helper {
    root: PathBuf,
    cluster: String,
    mode: PodNetworkMode,
    network: Network,
    sandboxes: HashMap<String, Sandbox>,
    containers: HashMap<String, Container>,
    execs: HashMap<u64, Exec>,
    pids: HashMap<Pid, Owner>,
    next_exec: u64,
    events: mpsc::UnboundedSender<Event>,
}

async fn serve(args: HelperArgs) -> Result<(), HelperError> {
    // SAFETY: the client passed us this descriptor; nothing else in this process owns it.
    let socket: OwnedFd = unsafe { std::os::fd::FromRawFd::from_raw_fd(args.fd) };
    let socket = std::os::unix::net::UnixStream::from(socket);
    socket.set_nonblocking(true).map_err(HelperError::Io)?;
    let socket = tokio::net::UnixStream::from_std(socket).map_err(HelperError::Io)?;
    let (mut reader, writer) = protocol::split(socket);
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let mut helper = Helper {
        root: args.root.clone(),
        cluster: args.cluster.clone(),
        mode: args.network,
        network: Network::new(&args.cluster).with_cluster_cidr(&args.cluster_cidr)?,
        sandboxes: HashMap::new(),
        containers: HashMap::new(),
        execs: HashMap::new(),
        pids: HashMap::new(),
        next_exec: 1,
        events: events_tx,
    };
    for dir in ["state", "containers", "sandboxes", "pods"] {
        std::fs::create_dir_all(helper.root.join(dir)).map_err(HelperError::Io)?;
    }
    helper.sweep().await;
    let mut children = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child())
        .map_err(HelperError::Io)?;
    let (requests_tx, mut requests) = mpsc::unbounded_channel();
    tokio::task::spawn_local(async move {
        loop {
            match reader.next::<Envelope<Request>>().await {
                Ok((request, _fds)) => {
                    if requests_tx.send(request).is_err() {
                        break;
                    }
                }
                Err(error) => {
                    if !matches!(error, protocol::ProtocolError::Closed) {
                        tracing::warn!(%error, "runtime helper: reading a request failed");
                    }
                    break;
                }
            }
        }
    });
    // The first reap catches children that ended before the handler was installed.
    helper.reap();
    loop {
        tokio::select! {
            request = requests.recv() => {
                let Some(Envelope { id, body }) = request else { break };
                if body == Request::Shutdown {
                    helper.cleanup().await;
                    let _ = writer.send(&Envelope { id, body: Response::Ok }, vec![]).await;
                    return Ok(());
                }
                helper.handle(id, body, &writer).await;
            }
            _ = children.recv() => helper.reap(),
            Some(event) = events.recv() => match event {
                Event::LogClosed(id) => {
                    if let Some(container) = helper.containers.get_mut(&id) {
                        container.open_streams = container.open_streams.saturating_sub(1);
                    }
                    helper.settle(&id);
                }
            },
        }
    }
    helper.cleanup().await;
    Ok(())
}

/// What went wrong in the helper itself (its socket, its directories).
#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    /// A system call on the helper's own resources failed.
    #[error("{0}")]
    Io(std::io::Error),
    /// The pod network's settings are wrong.
    #[error(transparent)]
    Network(#[from] super::network::NetworkError),
}

/// This process's children that have ended and wait to be reaped (state `Z`), from
/// `/proc/self/task/*/children`.
fn zombie_children() -> Vec<Pid> {
    let mut zombies = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return zombies;
    };
    for task in tasks.flatten() {
        let Ok(children) = std::fs::read_to_string(task.path().join("children")) else {
            continue;
        };
        for child in children
            .split_whitespace()
            .filter_map(|c| c.parse::<i32>().ok())
        {
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            // `pid (comm) S ...`: the state follows the last `)`, since comm may hold one.
            let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
            if state.is_some_and(|rest| rest.starts_with('Z')) {
                zombies.push(Pid::from_raw(child));
            }
        }
    }
    zombies
}

fn now_nanos() -> i64 {
    jiff::Timestamp::now().as_nanosecond() as i64
}

fn failed(action: &str, message: impl std::fmt::Display) -> Response {
    Response::Failed {
        action: action.to_owned(),
        message: message.to_string(),
    }
}

fn not_found(kind: &str, id: &str) -> Response {
    Response::NotFound {
        kind: kind.to_owned(),
        id: id.to_owned(),
    }
}

fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn state_name(state: State) -> &'static str {
    match state {
        State::Created => "created",
        State::Running => "running",
        State::Exited => "exited",
    }
}

impl Helper {
    fn state_dir(&self) -> PathBuf {
        self.root.join("state")
    }

    fn netns_prefix(&self) -> String {
        format!("orrery-{}-", self.cluster)
    }

    async fn handle(&mut self, id: u64, request: Request, writer: &protocol::Writer) {
        let mut fds = Vec::new();
        let response = match request {
            Request::RunPodSandbox(spec) => self.run_sandbox(*spec).await,
            Request::StopPodSandbox { id } => self.stop_sandbox(&id),
            Request::RemovePodSandbox { id } => self.remove_sandbox(&id).await,
            Request::ListPodSandboxes => Response::Sandboxes {
                sandboxes: self
                    .sandboxes
                    .iter()
                    .map(|(id, sandbox)| self.sandbox_info(id, sandbox))
                    .collect(),
            },
            Request::CreateContainer { sandbox, spec } => match self.sandboxes.get(&sandbox) {
                None => not_found("sandbox", &sandbox),
                Some(sb) if sb.stopped => failed("create container", "sandbox is stopped"),
                Some(_) => match self.create(&sandbox, *spec, false) {
                    Ok(id) => Response::Id { id },
                    Err(response) => response,
                },
            },
            Request::StartContainer { id } => self.start(&id),
            Request::Kill { id, signal } => self.kill(&id, signal),
            Request::WaitExit { id: container } => match self.containers.get_mut(&container) {
                None => not_found("container", &container),
                Some(c) if c.state == State::Exited => Response::Ok,
                Some(c) => {
                    let (tx, rx) = oneshot::channel();
                    c.waiters.push(tx);
                    let writer = writer.clone();
                    tokio::task::spawn_local(async move {
                        let body = match rx.await {
                            Ok(()) => Response::Ok,
                            Err(_) => failed("wait for container", "container removed"),
                        };
                        let _ = writer.send(&Envelope { id, body }, vec![]).await;
                    });
                    return;
                }
            },
            Request::RemoveContainer { id } => self.remove(&id),
            // Removed containers answer too (marked), for their logs.
            Request::ContainerStatus { id } => match self.containers.get(&id) {
                Some(c) => Response::Container(Box::new(self.info(&id, c))),
                None => not_found("container", &id),
            },
            Request::Attach { id } => match self.attach(&id) {
                Ok((tty, stdin, handed)) => {
                    fds = handed;
                    Response::Attached { tty, stdin }
                }
                Err(response) => response,
            },
            Request::ContainerStats { id } => match self.containers.get(&id) {
                Some(c) if !c.removed => Response::Stats(super::stats::read(&c.cgroups_path)),
                _ => not_found("container", &id),
            },
            Request::ListContainers { sandbox, removed } => {
                if !self.sandboxes.contains_key(&sandbox) {
                    not_found("sandbox", &sandbox)
                } else {
                    let mut containers: Vec<ContainerInfo> = self
                        .containers
                        .iter()
                        .filter(|(_, c)| c.sandbox == sandbox && c.name != "POD")
                        .filter(|(_, c)| removed || !c.removed)
                        .map(|(id, c)| self.info(id, c))
                        .collect();
                    containers.sort_by_key(|c| (c.created_at, c.attempt));
                    Response::Containers { containers }
                }
            }
            Request::Exec {
                id: container,
                command,
                stdin,
                tty,
            } => match self.exec(&container, command, stdin, tty) {
                Ok((exec, handed)) => {
                    fds = handed;
                    Response::ExecStarted { exec }
                }
                Err(response) => response,
            },
            Request::WaitExec { exec } => match self.execs.get_mut(&exec) {
                None => not_found("exec", &exec.to_string()),
                Some(e) => match e.code {
                    Some(code) => {
                        self.execs.remove(&exec);
                        Response::Exited { code }
                    }
                    None => {
                        let (tx, rx) = oneshot::channel();
                        e.waiters.push(tx);
                        let writer = writer.clone();
                        tokio::task::spawn_local(async move {
                            let body = match rx.await {
                                Ok(code) => Response::Exited { code },
                                Err(_) => failed("wait for exec", "helper stopped"),
                            };
                            let _ = writer.send(&Envelope { id, body }, vec![]).await;
                        });
                        return;
                    }
                },
            },
            Request::PrepareNode { pod_cidr } => match self.mode {
                PodNetworkMode::Bridge => match self.network.prepare_node(&pod_cidr).await {
                    Ok(ip) => Response::Address { ip },
                    Err(error) => failed("prepare node network", error.to_string()),
                },
                PodNetworkMode::Loopback => Response::Ok,
            },
            Request::Shutdown => Response::Ok,
        };
        if let Err(error) = writer.send(&Envelope { id, body: response }, fds).await {
            tracing::warn!(%error, "runtime helper: answering failed");
        }
    }

    fn sandbox_info(&self, id: &str, sandbox: &Sandbox) -> SandboxInfo {
        let pause_running = sandbox
            .pause
            .as_ref()
            .and_then(|p| self.containers.get(p))
            .is_some_and(|c| c.state == State::Running);
        SandboxInfo {
            id: id.to_owned(),
            spec: sandbox.spec.clone(),
            ip: sandbox
                .network
                .as_ref()
                .filter(|n| !n.ip.is_unspecified())
                .map(|n| n.ip.to_string()),
            ready: !sandbox.stopped && pause_running,
        }
    }

    fn info(&self, id: &str, c: &Container) -> ContainerInfo {
        ContainerInfo {
            id: id.to_owned(),
            sandbox: c.sandbox.clone(),
            name: c.name.clone(),
            attempt: c.attempt,
            state: state_name(c.state).to_owned(),
            created_at: c.created_at,
            started_at: c.started_at,
            finished_at: c.finished_at,
            exit_code: c.exit_code,
            reason: c.reason.clone(),
            log_path: c.log_path.clone(),
            removed: c.removed,
        }
    }

    async fn run_sandbox(&mut self, spec: SandboxSpec) -> Response {
        let id = new_id();
        let dir = self.root.join("sandboxes").join(&id);
        let netns_name = format!("{}{}", self.netns_prefix(), &id[..12]);
        let network = match self.mode {
            PodNetworkMode::Bridge => self
                .network
                .add_pod(&netns_name, &spec.pod_cidr)
                .await
                .map_err(|e| e.to_string()),
            PodNetworkMode::Loopback => loopback_netns(&netns_name).await,
        };
        let network = match network {
            Ok(network) => network,
            Err(error) => return failed("run pod sandbox", format!("set up network: {error}")),
        };
        self.sandboxes.insert(
            id.clone(),
            Sandbox {
                spec: spec.clone(),
                dir: dir.clone(),
                network: Some(network.clone()),
                pause: None,
                stopped: false,
            },
        );
        let result = (|| -> Result<(), String> {
            std::fs::create_dir_all(dir.join("shm")).map_err(|e| e.to_string())?;
            nix::mount::mount(
                Some("shm"),
                &dir.join("shm"),
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                Some("mode=1777,size=65536k"),
            )
            .map_err(|e| format!("mount shm: {e}"))?;
            let ip = (!network.ip.is_unspecified()).then(|| network.ip.to_string());
            let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            for (file, text) in [
                ("hosts", spec::hosts_file(ip.as_deref(), &spec.hostname)),
                ("hostname", format!("{}\n", spec.hostname)),
                (
                    "resolv.conf",
                    spec::resolv_conf(
                        &spec.dns_servers,
                        &spec.dns_search,
                        &spec.dns_options,
                        &host_resolv,
                    ),
                ),
            ] {
                std::fs::write(dir.join(file), text).map_err(|e| format!("write {file}: {e}"))?;
            }
            Ok(())
        })();
        if let Err(message) = result {
            self.remove_sandbox(&id).await;
            return failed("run pod sandbox", message);
        }
        let pause = match self.create(&id, spec.pause.clone(), true) {
            Ok(pause) => pause,
            Err(response) => {
                self.remove_sandbox(&id).await;
                return response;
            }
        };
        if let Some(sandbox) = self.sandboxes.get_mut(&id) {
            sandbox.pause = Some(pause.clone());
        }
        match self.start(&pause) {
            Response::Ok => Response::Id { id },
            other => {
                self.remove_sandbox(&id).await;
                other
            }
        }
    }

    fn stop_sandbox(&mut self, id: &str) -> Response {
        let Some(sandbox) = self.sandboxes.get_mut(id) else {
            return not_found("sandbox", id);
        };
        sandbox.stopped = true;
        let members: Vec<String> = self
            .containers
            .iter()
            .filter(|(_, c)| c.sandbox == id && c.state != State::Exited && !c.removed)
            .map(|(cid, _)| cid.clone())
            .collect();
        for cid in members {
            self.kill(&cid, Signal::SIGKILL as i32);
        }
        Response::Ok
    }

    async fn remove_sandbox(&mut self, id: &str) -> Response {
        if !self.sandboxes.contains_key(id) {
            return not_found("sandbox", id);
        }
        let members: Vec<String> = self
            .containers
            .iter()
            .filter(|(_, c)| c.sandbox == id)
            .map(|(cid, _)| cid.clone())
            .collect();
        for cid in &members {
            self.destroy_container(cid);
        }
        for cid in &members {
            if let Some(c) = self.containers.remove(cid)
                && let Some(pid) = c.pid
            {
                // Killed above; its exit status is no longer wanted.
                self.pids.remove(&pid);
                let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
            }
        }
        let Some(sandbox) = self.sandboxes.remove(id) else {
            return Response::Ok;
        };
        let _ = nix::mount::umount2(&sandbox.dir.join("shm"), MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir_all(&sandbox.dir);
        if let Some(network) = &sandbox.network {
            let result = match self.mode {
                PodNetworkMode::Bridge => self.network.remove_pod(network).await,
                PodNetworkMode::Loopback => {
                    remove_netns(&network.netns);
                    Ok(())
                }
            };
            if let Err(error) = result {
                tracing::warn!(%error, "runtime helper: removing a pod network failed");
            }
        }
        let spec = &sandbox.spec;
        let _ = std::fs::remove_dir_all(
            self.root
                .join("pods")
                .join(format!("{}_{}_{}", spec.namespace, spec.name, spec.uid)),
        );
        // The pod's cgroup, then its node's and the cluster's when they are empty.
        let pod = format!("orrery/{}/{}/{}", self.cluster, spec.node, spec.uid);
        remove_cgroup_tree(&pod);
        for parent in [
            format!("orrery/{}/{}", self.cluster, spec.node),
            format!("orrery/{}", self.cluster),
        ] {
            for hierarchy in cgroup_hierarchies() {
                let _ = std::fs::remove_dir(hierarchy.join(&parent));
            }
        }
        Response::Ok
    }

    /// Creates a container: its overlay root, its spec, its log pipes, libcontainer's create.
    fn create(
        &mut self,
        sandbox_id: &str,
        spec: ContainerSpec,
        pause: bool,
    ) -> Result<String, Response> {
        let action = if pause {
            "run pod sandbox"
        } else {
            "create container"
        };
        let sandbox = self
            .sandboxes
            .get(sandbox_id)
            .ok_or_else(|| not_found("sandbox", sandbox_id))?;
        let namespaces = if pause {
            Namespaces::Sandbox {
                netns: sandbox
                    .network
                    .as_ref()
                    .map(|n| n.netns.clone())
                    .unwrap_or_default(),
                hostname: sandbox.spec.hostname.clone(),
            }
        } else {
            let pause_pid = sandbox
                .pause
                .as_ref()
                .and_then(|p| self.containers.get(p))
                .filter(|c| c.state == State::Running)
                .and_then(|c| c.pid)
                .ok_or_else(|| failed(action, "the sandbox's pause container is not running"))?;
            let pid_of = match &spec.target {
                None => None,
                Some(target) => Some(
                    self.containers
                        .get(target)
                        .filter(|c| c.state == State::Running)
                        .and_then(|c| c.pid)
                        .ok_or_else(|| {
                            failed(
                                action,
                                format!("the target container {target} is not running"),
                            )
                        })?
                        .as_raw(),
                ),
            };
            Namespaces::Member {
                pause_pid: pause_pid.as_raw(),
                pid_of,
            }
        };
        let files = (!pause).then(|| SandboxFiles {
            hosts: sandbox.dir.join("hosts"),
            hostname: sandbox.dir.join("hostname"),
            resolv_conf: sandbox.dir.join("resolv.conf"),
            shm: sandbox.dir.join("shm"),
        });
        let name = if pause {
            "POD".to_owned()
        } else {
            spec.name.clone()
        };
        let pod = &sandbox.spec;
        let cgroups_path = spec::cgroups_path(
            &self.cluster,
            &pod.node,
            &pod.uid,
            if pause { "pause" } else { &spec.name },
        );
        let log_path = self
            .root
            .join("pods")
            .join(format!("{}_{}_{}", pod.namespace, pod.name, pod.uid))
            .join(&name)
            .join(format!("{}.log", spec.attempt));
        let id = new_id();
        let dir = self.root.join("containers").join(&id);
        let rootfs = dir.join("rootfs");
        let prepared = (|| -> Result<serde_json::Value, String> {
            mount_overlay(&dir, &spec.layers)?;
            let read = |file: &str| std::fs::read_to_string(rootfs.join(file)).unwrap_or_default();
            let user = spec::resolve_user(
                spec.uid,
                spec.gid,
                spec.user.as_deref(),
                &read("etc/passwd"),
                &read("etc/group"),
            )
            .map_err(|e| e.to_string())?;
            let oci = spec::oci_spec(
                &spec,
                &user,
                &rootfs,
                &namespaces,
                files.as_ref(),
                &cgroups_path,
                spec::host_capabilities(),
            )
            .map_err(|e| e.to_string())?;
            std::fs::write(
                dir.join("config.json"),
                serde_json::to_vec_pretty(&oci).map_err(|e| e.to_string())?,
            )
            .map_err(|e| format!("write config.json: {e}"))?;
            if let Some(parent) = log_path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| format!("create log dir: {e}"))?;
            }
            Ok(oci)
        })();
        let oci = match prepared {
            Ok(oci) => oci,
            Err(message) => {
                unmount_container_dir(&dir);
                return Err(failed(action, message));
            }
        };
        let log = match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
        {
            Ok(log) => log,
            Err(error) => {
                unmount_container_dir(&dir);
                return Err(failed(action, format!("open log: {error}")));
            }
        };
        let created = self.libcontainer_create(&id, &dir, spec.tty, spec.stdin);
        let (lc, streams, input) = match created {
            Ok(created) => created,
            Err(message) => {
                let _ = LcContainer::load(self.state_dir().join(&id)).map(|mut c| c.delete(true));
                unmount_container_dir(&dir);
                return Err(failed(action, message));
            }
        };
        let pid = lc.pid().map(|p| Pid::from_raw(p.as_raw()));
        let open_streams = streams.len() as u8;
        let log = std::rc::Rc::new(std::cell::RefCell::new(log));
        let sinks = Sinks::default();
        for (stream, fd) in streams {
            let events = self.events.clone();
            let log = log.clone();
            let id = id.clone();
            let sinks = sinks.clone();
            tokio::task::spawn_local(async move {
                copy_to_log(fd, stream, &log, &sinks).await;
                let _ = events.send(Event::LogClosed(id));
            });
        }
        if let Some(pid) = pid {
            self.pids.insert(pid, Owner::Container(id.clone()));
        }
        self.containers.insert(
            id.clone(),
            Container {
                sandbox: sandbox_id.to_owned(),
                name,
                attempt: spec.attempt,
                dir,
                cgroups_path,
                log_path,
                state: State::Created,
                pid,
                created_at: now_nanos(),
                started_at: None,
                finished_at: None,
                exit_code: None,
                reason: None,
                open_streams,
                removed: false,
                waiters: Vec::new(),
                process: oci["process"].clone(),
                input,
                sinks,
            },
        );
        Ok(id)
    }

    /// libcontainer's create, with stdout and stderr to pipes (or a terminal) the helper reads,
    /// and, with `stdin`, where its input goes (the terminal's master, or a pipe to its stdin).
    fn libcontainer_create(
        &mut self,
        id: &str,
        bundle: &Path,
        tty: bool,
        stdin: bool,
    ) -> Result<(LcContainer, Streams, Option<OwnedFd>), String> {
        let (stdin_fd, mut input): (OwnedFd, Option<OwnedFd>) = if stdin && !tty {
            let (in_r, in_w) =
                nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
            (in_r, Some(in_w))
        } else {
            let null = std::fs::File::open("/dev/null").map_err(|e| e.to_string())?;
            (OwnedFd::from(null), None)
        };
        let builder = ContainerBuilder::new(id.to_owned(), SyscallType::default())
            .with_root_path(self.state_dir())
            .map_err(|e| e.to_string())?
            .with_stdin(stdin_fd);
        if tty {
            let (socket_path, listener) = self.console_listener()?;
            let container = builder
                .with_console_socket(Some(&socket_path))
                .as_init(bundle)
                .with_systemd(false)
                .with_detach(true)
                .build()
                .map_err(|e| e.to_string());
            let _ = std::fs::remove_file(&socket_path);
            let container = container?;
            let master = receive_console(&listener)?;
            if stdin {
                input = Some(master.try_clone().map_err(|e| e.to_string())?);
            }
            Ok((container, vec![("stdout", master)], input))
        } else {
            let (out_r, out_w) =
                nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
            let (err_r, err_w) =
                nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
            let container = builder
                .with_stdout(out_w)
                .with_stderr(err_w)
                .as_init(bundle)
                .with_systemd(false)
                .with_detach(true)
                .build()
                .map_err(|e| e.to_string())?;
            Ok((container, vec![("stdout", out_r), ("stderr", err_r)], input))
        }
    }

    /// Attaches a client to a running container: a socket per output stream (the helper
    /// copies the container's output to it as it comes) and, if the container takes input, a
    /// duplicate of where its input goes. The descriptors travel with the answer: the input
    /// (when there is one), then stdout, then (without a terminal) stderr.
    fn attach(&mut self, id: &str) -> Result<(bool, bool, Vec<OwnedFd>), Response> {
        let Some(c) = self.containers.get(id).filter(|c| !c.removed) else {
            return Err(not_found("container", id));
        };
        if c.state != State::Running {
            return Err(Response::InvalidState {
                id: id.to_owned(),
                state: state_name(c.state).to_owned(),
                action: "attach".to_owned(),
            });
        }
        let tty = c.process["terminal"] == true;
        let mut fds = Vec::new();
        if let Some(input) = &c.input {
            fds.push(
                input
                    .try_clone()
                    .map_err(|e| failed("attach", e.to_string()))?,
            );
        }
        let streams: &[&'static str] = if tty {
            &["stdout"]
        } else {
            &["stdout", "stderr"]
        };
        for stream in streams {
            let (ours, theirs) = std::os::unix::net::UnixStream::pair()
                .map_err(|e| failed("attach", e.to_string()))?;
            ours.set_nonblocking(true)
                .map_err(|e| failed("attach", e.to_string()))?;
            c.sinks.borrow_mut().push((stream, ours));
            fds.push(OwnedFd::from(theirs));
        }
        Ok((tty, c.input.is_some(), fds))
    }

    fn console_listener(&mut self) -> Result<(PathBuf, std::os::unix::net::UnixListener), String> {
        self.next_exec += 1;
        let path = self.root.join(format!("console-{}.sock", self.next_exec));
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path)
            .map_err(|e| format!("console socket {}: {e}", path.display()))?;
        Ok((path, listener))
    }

    fn start(&mut self, id: &str) -> Response {
        let Some(c) = self.containers.get(id).filter(|c| !c.removed) else {
            return not_found("container", id);
        };
        if c.state != State::Created {
            return Response::InvalidState {
                id: id.to_owned(),
                state: state_name(c.state).to_owned(),
                action: "start".to_owned(),
            };
        }
        let started = LcContainer::load(self.state_dir().join(id))
            .and_then(|mut lc| lc.start())
            .map_err(|e| e.to_string());
        match started {
            Ok(()) => {
                if let Some(c) = self.containers.get_mut(id)
                    && c.state == State::Created
                {
                    c.state = State::Running;
                    c.started_at = Some(now_nanos());
                }
                Response::Ok
            }
            Err(message) => failed("start container", message),
        }
    }

    fn kill(&mut self, id: &str, signal: i32) -> Response {
        let Some(c) = self.containers.get(id).filter(|c| !c.removed) else {
            return not_found("container", id);
        };
        let Ok(signal) = Signal::try_from(signal) else {
            return failed("stop container", format!("invalid signal {signal}"));
        };
        if c.exit_code.is_some() {
            return Response::Ok;
        }
        if let Some(pid) = c.pid {
            match nix::sys::signal::kill(pid, signal) {
                Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
                Err(error) => return failed("stop container", error),
            }
        }
        Response::Ok
    }

    /// Kills (if still alive), deletes with libcontainer, and unmounts a container.
    fn destroy_container(&mut self, id: &str) {
        let Some(c) = self.containers.get(id) else {
            return;
        };
        if c.removed {
            return;
        }
        if let Some(pid) = c.pid
            && c.exit_code.is_none()
            && self.pids.contains_key(&pid)
        {
            // SIGKILL to the init of its pid namespace ends every process in it; wait for it
            // so its cgroup is empty before it is removed.
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            self.wait_killed(pid);
            self.pids.remove(&pid);
            if let Some(c) = self.containers.get_mut(id) {
                c.exit_code = Some(128 + Signal::SIGKILL as i32);
                c.finished_at = Some(now_nanos());
                c.reason = Some("Error".to_owned());
            }
        }
        let Some(c) = self.containers.get(id) else {
            return;
        };
        if let Ok(mut lc) = LcContainer::load(self.state_dir().join(id))
            && let Err(error) = lc.delete(true)
        {
            tracing::warn!(%error, id, "runtime helper: libcontainer delete failed");
        }
        let dir = c.dir.clone();
        let cgroup = c.cgroups_path.trim_start_matches('/').to_owned();
        unmount_container_dir(&dir);
        remove_cgroup_tree(&cgroup);
        if let Some(c) = self.containers.get_mut(id) {
            c.removed = true;
        }
    }

    fn remove(&mut self, id: &str) -> Response {
        let Some(c) = self.containers.get(id).filter(|c| !c.removed) else {
            return not_found("container", id);
        };
        if c.state == State::Running {
            return Response::InvalidState {
                id: id.to_owned(),
                state: "running".to_owned(),
                action: "remove".to_owned(),
            };
        }
        self.destroy_container(id);
        Response::Ok
    }

    /// Collects the exit of every known pid that has ended.
    fn reap(&mut self) {
        let pids: Vec<Pid> = self.pids.keys().copied().collect();
        for pid in pids {
            let code = match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, code)) => code,
                Ok(WaitStatus::Signaled(_, signal, _)) => 128 + signal as i32,
                Ok(_) => continue,
                Err(nix::errno::Errno::ECHILD) => 255,
                Err(_) => continue,
            };
            match self.pids.remove(&pid) {
                Some(Owner::Container(id)) => {
                    if let Some(c) = self.containers.get_mut(&id) {
                        c.exit_code = Some(code);
                        c.finished_at = Some(now_nanos());
                        let oom = oom_killed(&c.cgroups_path);
                        c.reason = Some(
                            if oom {
                                "OOMKilled"
                            } else if code == 0 {
                                "Completed"
                            } else {
                                "Error"
                            }
                            .to_owned(),
                        );
                        if c.started_at.is_none() {
                            c.started_at = c.finished_at;
                        }
                    }
                    self.settle(&id);
                }
                Some(Owner::Exec(exec)) => {
                    if let Some(e) = self.execs.get_mut(&exec) {
                        e.code = Some(code);
                        for waiter in e.waiters.drain(..) {
                            let _ = waiter.send(code);
                        }
                    }
                }
                None => {}
            }
        }
    }

    /// Waits for a killed container's init. The kernel lets the init of a pid namespace end only
    /// once every other process of the namespace has been reaped, and an exec that failed
    /// inside libcontainer (`kubectl exec` of a program the image lacks) leaves processes there
    /// whose parent is this helper (the subreaper) but whose pids it never learned: those
    /// zombies are reaped here, or the wait would never end. Bounded: after 10 s it gives up
    /// (the next start's sweep removes what is left).
    #[allow(clippy::disallowed_methods)] // The helper's one thread has nothing else to do.
    fn wait_killed(&self, pid: Pid) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => {}
                _ => return,
            }
            for stray in zombie_children() {
                if !self.pids.contains_key(&stray) {
                    let _ = waitpid(stray, Some(WaitPidFlag::WNOHANG));
                }
            }
            if std::time::Instant::now() >= deadline {
                tracing::warn!(%pid, "a killed container's init did not end within 10 s");
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// A container whose process has ended and whose output is all written is exited.
    fn settle(&mut self, id: &str) {
        if let Some(c) = self.containers.get_mut(id)
            && c.exit_code.is_some()
            && c.open_streams == 0
            && c.state != State::Exited
        {
            c.state = State::Exited;
            for waiter in c.waiters.drain(..) {
                let _ = waiter.send(());
            }
        }
    }

    fn exec(
        &mut self,
        id: &str,
        command: Vec<String>,
        stdin: bool,
        tty: bool,
    ) -> Result<(u64, Vec<OwnedFd>), Response> {
        let c = self
            .containers
            .get(id)
            .filter(|c| !c.removed)
            .ok_or_else(|| not_found("container", id))?;
        if c.state != State::Running {
            return Err(Response::InvalidState {
                id: id.to_owned(),
                state: state_name(c.state).to_owned(),
                action: "exec".to_owned(),
            });
        }
        if command.is_empty() {
            return Err(failed("exec", "no command specified"));
        }
        self.next_exec += 1;
        let exec = self.next_exec;
        // CRI's exec: the container's process spec with the command's arguments.
        let mut process = c.process.clone();
        process["args"] = serde_json::json!(command);
        process["terminal"] = serde_json::json!(tty);
        let process_path = c.dir.join(format!("exec-{exec}.json"));
        std::fs::write(&process_path, process.to_string()).map_err(|e| failed("exec", e))?;
        let result = (|| -> Result<(Pid, Vec<OwnedFd>), String> {
            let builder = ContainerBuilder::new(id.to_owned(), SyscallType::default())
                .with_root_path(self.state_dir())
                .map_err(|e| e.to_string())?;
            let pipe =
                || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| e.to_string());
            if tty {
                let (socket_path, listener) = self.console_listener()?;
                let pid = builder
                    .with_console_socket(Some(&socket_path))
                    .as_tenant()
                    .with_process(Some(&process_path))
                    .with_detach(true)
                    .build()
                    .map_err(|e| e.to_string());
                let _ = std::fs::remove_file(&socket_path);
                let pid = pid?;
                let master = receive_console(&listener)?;
                Ok((Pid::from_raw(pid.as_raw()), vec![master]))
            } else {
                let (in_r, in_w) = if stdin {
                    let (r, w) = pipe()?;
                    (r, Some(w))
                } else {
                    (
                        OwnedFd::from(std::fs::File::open("/dev/null").map_err(|e| e.to_string())?),
                        None,
                    )
                };
                let (out_r, out_w) = pipe()?;
                let (err_r, err_w) = pipe()?;
                let pid = builder
                    .with_stdin(in_r)
                    .with_stdout(out_w)
                    .with_stderr(err_w)
                    .as_tenant()
                    .with_process(Some(&process_path))
                    .with_detach(true)
                    .build()
                    .map_err(|e| e.to_string())?;
                let mut fds: Vec<OwnedFd> = in_w.into_iter().collect();
                fds.push(out_r);
                fds.push(err_r);
                Ok((Pid::from_raw(pid.as_raw()), fds))
            }
        })();
        let _ = std::fs::remove_file(&process_path);
        let (pid, fds) = result.map_err(|message| failed("exec", message))?;
        self.pids.insert(pid, Owner::Exec(exec));
        self.execs.insert(
            exec,
            Exec {
                pid,
                code: None,
                waiters: Vec::new(),
            },
        );
        // It may have ended already.
        self.reap();
        Ok((exec, fds))
    }

    /// Stops and removes everything: at shutdown.
    async fn cleanup(&mut self) {
        let sandboxes: Vec<String> = self.sandboxes.keys().cloned().collect();
        for id in &sandboxes {
            self.stop_sandbox(id);
        }
        for exec in self.execs.values() {
            let _ = nix::sys::signal::kill(exec.pid, Signal::SIGKILL);
        }
        for id in sandboxes {
            self.remove_sandbox(&id).await;
        }
        let orphans: Vec<String> = self.containers.keys().cloned().collect();
        for id in orphans {
            self.destroy_container(&id);
        }
        self.reap();
        self.sweep().await;
    }

    /// Removes what a previous helper under this root left behind: containers in libcontainer's
    /// state dir (killed and deleted), mounts under the root, cgroups and network namespaces
    /// of this cluster.
    async fn sweep(&mut self) {
        if let Ok(entries) = std::fs::read_dir(self.state_dir()) {
            for entry in entries.flatten() {
                if let Ok(mut lc) = LcContainer::load(entry.path()) {
                    if let Some(pid) = lc.pid() {
                        let _ =
                            nix::sys::signal::kill(Pid::from_raw(pid.as_raw()), Signal::SIGKILL);
                    }
                    let _ = lc.delete(true);
                }
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        for mount in mounts_under(&self.root) {
            let _ = nix::mount::umount2(&mount, MntFlags::MNT_DETACH);
        }
        for dir in ["containers", "sandboxes"] {
            if let Ok(entries) = std::fs::read_dir(self.root.join(dir)) {
                for entry in entries.flatten() {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        // A crashed helper's containers are not our children: kill them and wait (bounded)
        // until their cgroups are empty.
        for _ in 0..200 {
            if !kill_cgroup_processes(&format!("orrery/{}", self.cluster)) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        remove_cgroup_tree(&format!("orrery/{}", self.cluster));
        for hierarchy in cgroup_hierarchies() {
            let _ = std::fs::remove_dir(hierarchy.join("orrery"));
        }
        let prefix = self.netns_prefix();
        if let Ok(entries) = std::fs::read_dir("/run/netns") {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with(&prefix) {
                    remove_netns(&entry.path());
                }
            }
        }
        if self.mode == PodNetworkMode::Bridge
            && let Err(error) = self.network.destroy(&prefix).await
        {
            tracing::warn!(%error, "runtime helper: removing the pod network failed");
        }
    }
}

/// Reads a container's stream into its CRI log until the stream ends.
async fn copy_to_log(
    fd: OwnedFd,
    stream: &'static str,
    log: &std::rc::Rc<std::cell::RefCell<std::fs::File>>,
    sinks: &Sinks,
) {
    use std::io::Write;
    let mut receiver = match tokio::net::unix::pipe::Receiver::from_owned_fd_unchecked(fd) {
        Ok(receiver) => receiver,
        Err(error) => {
            tracing::warn!(%error, "runtime helper: cannot read a container's output");
            return;
        }
    };
    let mut splitter = LineSplitter::default();
    let mut buffer = vec![0u8; 32 * 1024];
    loop {
        // A terminal's master reads EIO once the container's side is closed: its end too.
        let n = receiver.read(&mut buffer).await.unwrap_or(0);
        let records = if n == 0 {
            splitter.finish(jiff::Timestamp::now(), stream)
        } else {
            splitter.push(jiff::Timestamp::now(), stream, &buffer[..n])
        };
        if !records.is_empty() {
            let _ = log.borrow_mut().write_all(&records);
        }
        if n == 0 {
            // The attached clients see the end.
            sinks.borrow_mut().retain(|(s, _)| *s != stream);
            return;
        }
        // Attached clients get the bytes as they are; one that cannot keep up is let go.
        sinks
            .borrow_mut()
            .retain_mut(|(s, sink)| *s != stream || sink.write_all(&buffer[..n]).is_ok());
    }
}

/// Receives the terminal master a container's init sends through the console socket.
fn receive_console(listener: &std::os::unix::net::UnixListener) -> Result<OwnedFd, String> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    let (stream, _) = listener
        .accept()
        .map_err(|e| format!("console socket: {e}"))?;
    let mut buffer = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buffer)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let message = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| format!("console socket: {e}"))?;
    for cmsg in message.cmsgs().map_err(|e| e.to_string())? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg
            && let Some(fd) = fds.first()
        {
            // SAFETY: the kernel just installed this descriptor for us.
            return Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(*fd) });
        }
    }
    Err("console socket: no terminal received".to_owned())
}

/// Mounts the container's overlay root: the image's layers (top first) under a per-container
/// upper and work directory.
pub(crate) fn mount_overlay(dir: &Path, layers: &[PathBuf]) -> Result<(), String> {
    if layers.is_empty() {
        return Err("the image has no layers".to_owned());
    }
    for sub in ["rootfs", "upper", "work"] {
        std::fs::create_dir_all(dir.join(sub)).map_err(|e| format!("create {sub}: {e}"))?;
    }
    let lower: Vec<String> = layers
        .iter()
        .rev()
        .map(|layer| layer.display().to_string())
        .collect();
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        dir.join("upper").display(),
        dir.join("work").display()
    );
    nix::mount::mount(
        Some("overlay"),
        &dir.join("rootfs"),
        Some("overlay"),
        MsFlags::empty(),
        Some(options.as_str()),
    )
    .map_err(|e| format!("mount overlay root: {e}"))
}

/// Unmounts whatever is mounted under a container's dir and removes it.
pub(crate) fn unmount_container_dir(dir: &Path) {
    let mut mounts = mounts_under(dir);
    mounts.sort_by_key(|m| std::cmp::Reverse(m.as_os_str().len()));
    for mount in mounts {
        let _ = nix::mount::umount2(&mount, MntFlags::MNT_DETACH);
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Mount points at or under `root`, deepest first, from `/proc/self/mountinfo`.
pub fn mounts_under(root: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mounts: Vec<PathBuf> = text
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mount_path)
        .filter(|path| path.starts_with(root))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.as_os_str().len()));
    mounts.dedup();
    mounts
}

fn unescape_mount_path(field: &str) -> PathBuf {
    let mut out = Vec::with_capacity(field.len());
    let bytes = field.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && let Ok(byte) = u8::from_str_radix(&field[i + 1..i + 4], 8)
        {
            out.push(byte);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(out))
}

/// Every cgroup hierarchy mounted under `/sys/fs/cgroup` (v1 controllers, the unified v2 one).
pub fn cgroup_hierarchies() -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter(|line| line.contains(" - cgroup ") || line.contains(" - cgroup2 "))
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mount_path)
        .collect()
}

/// Removes a cgroup and its children, deepest first, in every hierarchy.
fn remove_cgroup_tree(relative: &str) {
    fn remove(dir: &Path) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    remove(&entry.path());
                }
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
    for hierarchy in cgroup_hierarchies() {
        remove(&hierarchy.join(relative));
    }
}

/// SIGKILLs every process in a cgroup tree (a crashed helper's leftovers); whether there was
/// any.
fn kill_cgroup_processes(relative: &str) -> bool {
    fn walk(dir: &Path, found: &mut bool) {
        if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            for pid in text.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                *found = true;
                let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&entry.path(), found);
                }
            }
        }
    }
    let mut found = false;
    for hierarchy in cgroup_hierarchies() {
        walk(&hierarchy.join(relative), &mut found);
    }
    found
}

/// Whether the kernel's OOM killer has killed a process in this container's cgroup (cgroup v1
/// `memory.oom_control`'s `oom_kill`, or v2 `memory.events`'s `oom_kill`).
fn oom_killed(cgroups_path: &str) -> bool {
    let relative = cgroups_path.trim_start_matches('/');
    let count = |text: String| {
        text.lines()
            .filter_map(|line| line.strip_prefix("oom_kill "))
            .any(|n| n.trim().parse::<u64>().is_ok_and(|n| n > 0))
    };
    cgroup_hierarchies().into_iter().any(|hierarchy| {
        ["memory.oom_control", "memory.events"].iter().any(|file| {
            std::fs::read_to_string(hierarchy.join(relative).join(file)).is_ok_and(count)
        })
    })
}

/// Creates `/run/netns/<name>` with only loopback up: the helper enters a new network
/// namespace, binds it to the file, brings `lo` up, and returns to its own.
async fn loopback_netns(name: &str) -> Result<PodNetwork, String> {
    use nix::sched::{CloneFlags, setns, unshare};
    let dir = Path::new("/run/netns");
    std::fs::create_dir_all(dir).map_err(|e| format!("create /run/netns: {e}"))?;
    let path = dir.join(name);
    std::fs::File::create(&path).map_err(|e| format!("create {}: {e}", path.display()))?;
    let own = std::fs::File::open("/proc/thread-self/ns/net").map_err(|e| e.to_string())?;
    // The helper is single-threaded, so switching its network namespace switches the process's.
    unshare(CloneFlags::CLONE_NEWNET).map_err(|e| format!("unshare network: {e}"))?;
    let bound = nix::mount::mount(
        Some("/proc/thread-self/ns/net"),
        &path,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| format!("bind {}: {e}", path.display()));
    let up = loopback_up();
    setns(&own, CloneFlags::CLONE_NEWNET).map_err(|e| format!("return to own netns: {e}"))?;
    if let Err(error) = bound.and(up) {
        remove_netns(&path);
        return Err(error);
    }
    Ok(PodNetwork {
        netns: path,
        host_veth: String::new(),
        ip: std::net::Ipv4Addr::UNSPECIFIED,
    })
}

/// Sets `lo` up in the current network namespace (SIOCSIFFLAGS).
fn loopback_up() -> Result<(), String> {
    use nix::libc;
    let socket = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| format!("socket: {e}"))?;
    // SAFETY: ifreq is plain data; zeroed is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *slot = *byte as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we own, on our socket.
    unsafe {
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) < 0 {
            return Err(format!("get lo flags: {}", std::io::Error::last_os_error()));
        }
        request.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &request) < 0 {
            return Err(format!("set lo up: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

fn remove_netns(path: &Path) {
    let _ = nix::mount::umount2(path, MntFlags::MNT_DETACH);
    let _ = std::fs::remove_file(path);
}
