//! The simulated runtime: containers without processes, for thousands of virtual pods and for
//! machines without root (`orrery up --runtime sim`, never chosen silently).
//!
//! A simulated container "runs" its `command` and `args` by these rules, so that tests and
//! lessons can show starts, crashes and completions:
//! - `sh -c "<script>"` (or `bash -c`): the script's statements, separated by `;` or `&&`, run
//!   in order: `echo <text>` writes a log line, `sleep <seconds>` waits, `exit <n>` ends with
//!   code `n`, `true`/`false` set the status; at the end the container exits with the last
//!   status. Any other statement (`nginx`, `python app.py`, ...) runs until the container is
//!   stopped.
//! - `sleep <seconds>` exits 0 after that many seconds (`sleep infinity` never ends);
//!   `echo <text>` logs the text and exits 0; `true` exits 0; `false` exits 1.
//! - `/orrery <tool> ...` (the built-in images' tools, see `apps`) runs as `<tool> ...`:
//!   `sleep` and `exit` as above, `write` exits 0 at once (the simulation has no files);
//!   `hello` and `pause` run until stopped; `hog <MiB>` and `burn <cpu>` run until stopped
//!   and are reported as using what they name (that much memory as working set, that share
//!   of a core, cumulative from when the tool began), so `kubectl top` and autoscaling read
//!   the same on both runtimes; nothing else uses any CPU or memory,
//!   `fetch` exits 1 (no packet leaves a simulated pod).
//! - No command at all runs the image's entrypoint: the built-in `orrery/hello` runs `/orrery
//!   hello` (with the container's `args`), `orrery/pause` runs `/orrery pause`; any other
//!   image's own entrypoint is a program the simulation does not know. Without a command,
//!   `args` alone are the program (an image without an entrypoint runs them).
//! - Anything else runs until stopped.
//! - Stopping handles SIGTERM at once (exit code 143); a grace period of zero kills (137).
//!
//! The pod network is simulated too: nothing of a simulated pod is on the host's network, and
//! a connection to it (an httpGet or tcpSocket probe, a forwarded port) is made in memory,
//! never through a socket. A connection to a port of a pod reaches the first running
//! container of the pod (oldest first) whose program listens there, by these rules:
//! - `hello` (the built-in image's program) listens on `$PORT` (8080 when unset; nowhere
//!   when `PORT` is not a number) and serves what the real one serves: every request gets
//!   200 and `Hello from <pod> in <namespace> at <ip>`, the pod's hostname, `$POD_NAMESPACE`
//!   or the namespace of its DNS search domains, and `$POD_IP` or the pod's IP. It reads no
//!   `HELLO_FILE` (no files) and logs no requests.
//! - A program the simulation does not know (`nginx`, an image's own entrypoint), once it
//!   runs, listens on the TCP `containerPort`s its container declares, as the pod promises.
//!   It accepts a connection, waits for the first bytes sent (or the end), then closes it
//!   without a word, since nothing simulated speaks its protocol: a tcpSocket probe
//!   succeeds, an httpGet probe fails (`EOF`), a forwarded connection ends empty.
//! - Nothing else listens (`sleep`, `pause`, a script's steps before its program runs, an
//!   exited container): the connection is refused, as by a real pod's kernel.
//! - A connection ends when the container that accepted it exits.
//!
//! A probe that names its own `host` gets what a simulated node's network has: the pod's IP,
//! or another simulated pod's on the node, is that pod, as above; a loopback address
//! (`127.0.0.0/8`, `::1`, `localhost`) is this machine's loopback, which the kubelet really
//! shares; any other host is unreachable (`network is unreachable`): the simulation never
//! sends a probe or a forwarded connection off the machine.
//!
//! `exec` in a running container runs its command by the same words, on the exec's own
//! streams: `echo <text>` writes the text and a newline to stdout, `cat` copies stdin to stdout
//! until stdin ends, `env` prints the container's environment (`NAME=value` lines), `hostname`
//! prints the pod's hostname, `sleep <seconds>` waits, `true`/`false`/`exit <n>` set the exit
//! code, and `sh -c "<script>"` runs statements separated by `;` or `&&` (a failed statement
//! ends an `&&` chain). A program it does not know fails as runc does (`exec: "<x>":
//! executable file not found in $PATH` on stderr, exit code 126); inside a script it fails as
//! a shell does (`sh: <x>: not found`, 127). With a terminal, stderr goes to stdout and
//! resizing does nothing (the simulated terminal has no size).
//!
//! Images pull after a short delay; a reference whose tag is `notfound` fails as a registry
//! would (`manifest unknown`), for showing `ErrImagePull` and `ImagePullBackOff`.
//!
//! Time is tokio's, so tests run the rules on a paused clock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{oneshot, watch};

use super::{
    ContainerConfig, ContainerRuntime, ContainerState, ContainerStats, ContainerStatus,
    ExecRequest, ExecSession, LogLine, PodConnection, Result, RuntimeError, SandboxConfig,
    SandboxStatus, Security,
};
use crate::apps;

/// Timings of the simulation.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// From `start_container` until the process runs.
    pub start_delay: Duration,
    /// How long an image pull takes.
    pub pull_delay: Duration,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            start_delay: Duration::from_millis(20),
            pull_delay: Duration::from_millis(50),
        }
    }
}

/// One step of a simulated program.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    Log(String),
    Sleep(Duration),
    Status(i32),
    Exit(i32),
    /// Runs until stopped, listening nowhere.
    Forever,
    /// Runs until stopped, using what it declares (`burn`, `hog`).
    Load(Load),
    /// Runs until stopped, listening as the server says.
    Serve(Server),
}

/// What a running tool declares it uses: `burn`'s share of a core, `hog`'s memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Load {
    millicores: u64,
    bytes: u64,
}

/// What a running program listens on, by the rules in the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Server {
    /// The built-in `hello`: HTTP on `$PORT` or 8080.
    Hello,
    /// A program the simulation does not know: its container's declared ports, answering
    /// nothing.
    Unknown,
}

fn seconds(text: &str) -> Option<Step> {
    if text == "infinity" {
        return Some(Step::Forever);
    }
    let value: f64 = text.trim_end_matches('s').parse().ok()?;
    Some(Step::Sleep(Duration::from_secs_f64(value.max(0.0))))
}

/// One shell statement (or a whole program without a shell) as steps.
fn statement(words: &[&str]) -> Vec<Step> {
    let program = words
        .first()
        .map(|w| w.rsplit('/').next().unwrap_or(w))
        .unwrap_or("");
    match program {
        // The built-in images' tools (`/orrery sleep 5`, `/orrery exit 1`).
        "orrery" => tool(&words[1..]),
        "echo" => vec![
            Step::Log(words[1..].join(" ").trim_matches(['"', '\'']).to_owned()),
            Step::Status(0),
        ],
        "sleep" => match words.get(1).and_then(|s| seconds(s)) {
            Some(step) => vec![step, Step::Status(0)],
            None => vec![Step::Status(1)],
        },
        "exit" => vec![Step::Exit(
            words.get(1).and_then(|n| n.parse().ok()).unwrap_or(0),
        )],
        "true" => vec![Step::Status(0)],
        "false" => vec![Step::Status(1)],
        _ => vec![Step::Serve(Server::Unknown)],
    }
}

/// `/orrery <tool> ...`: the tools do what their names say.
fn tool(words: &[&str]) -> Vec<Step> {
    match words.first().copied() {
        // `orrery write <file> <text>`: done at once.
        Some("write") => vec![Step::Status(0)],
        Some("hello") => vec![Step::Serve(Server::Hello)],
        Some("hog") => vec![match words.get(1).and_then(|m| m.parse::<u64>().ok()) {
            Some(mib) => Step::Load(Load {
                millicores: 0,
                bytes: mib << 20,
            }),
            None => Step::Exit(2),
        }],
        Some("burn") => vec![match words.get(1).and_then(|c| apps::burn_millicores(c)) {
            Some(millicores) => Step::Load(Load {
                millicores,
                bytes: 0,
            }),
            None => Step::Exit(2),
        }],
        Some("pause") | None => vec![Step::Forever],
        // No packet leaves a simulated pod.
        Some("fetch") => vec![Step::Status(1)],
        Some(_) => statement(words),
    }
}

/// What a container's command and args do, by the rules in the module documentation.
fn plan(config: &ContainerConfig) -> Vec<Step> {
    let entrypoint = match config.command.is_empty() {
        true => crate::images::builtin_entrypoint(&config.image),
        false => None,
    };
    let program: Vec<&str> = entrypoint
        .iter()
        .flatten()
        .copied()
        .chain(config.command.iter().map(String::as_str))
        .chain(config.args.iter().map(String::as_str))
        .collect();
    if program.is_empty() {
        // The entrypoint of an image the simulation does not know.
        return vec![Step::Serve(Server::Unknown)];
    }
    let shell = matches!(program[0].rsplit('/').next(), Some("sh" | "bash" | "ash"));
    if shell && program.get(1) == Some(&"-c") {
        let script = program.get(2).copied().unwrap_or_default();
        return script
            .split([';', '\n'])
            .flat_map(|part| part.split("&&"))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .flat_map(|s| statement(&s.split_whitespace().collect::<Vec<_>>()))
            .collect();
    }
    statement(&program)
}

struct Container {
    /// Creation order, to find the newest of a name.
    serial: u64,
    sandbox: String,
    name: String,
    plan: Vec<Step>,
    state: ContainerState,
    started_at: Option<jiff::Timestamp>,
    finished_at: Option<jiff::Timestamp>,
    exit_code: Option<i32>,
    logs: Vec<LogLine>,
    stop: Option<oneshot::Sender<i32>>,
    attempt: u32,
    env: Vec<(String, String)>,
    /// The TCP ports its container declares.
    ports: Vec<u16>,
    /// What its program listens on now (only while it runs its server step).
    listening: Option<Server>,
    /// Becomes true when it exits: the end of the connections it accepted.
    exited: watch::Sender<bool>,
    /// Removed: gone for every purpose but its logs (`kubectl logs --previous`), until its
    /// sandbox is removed.
    removed: bool,
    /// What its program uses now, and since when (only while it runs a [`Step::Load`]).
    load: Option<(Load, jiff::Timestamp)>,
    /// The security settings it was created with (nothing enforces them here; tests read
    /// them through [`SimRuntime::security`]).
    security: Security,
}

impl Container {
    /// Its CPU time so far: its load's share of the time it has run.
    fn stats(&self, now: jiff::Timestamp) -> ContainerStats {
        let (load, since) = self.load.unwrap_or((Load::default(), now));
        let until = self.finished_at.unwrap_or(now);
        let ran = until.duration_since(since).as_nanos().max(0) as u128;
        ContainerStats {
            timestamp: now,
            cpu_usage_core_nanos: (ran * u128::from(load.millicores) / 1000) as u64,
            memory_usage_bytes: load.bytes,
            memory_working_set_bytes: load.bytes,
            memory_rss_bytes: load.bytes,
            ..ContainerStats::default()
        }
    }
}

#[derive(Default)]
struct State {
    sandboxes: HashMap<String, SandboxConfig>,
    containers: HashMap<String, Container>,
    serial: u64,
    pulled: std::collections::HashSet<String>,
}

impl State {
    /// The sandbox `id`, for a connection to its pod.
    fn sandbox(&self, id: &str) -> std::io::Result<&SandboxConfig> {
        self.sandboxes.get(id).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("sandbox {id:?} not found"),
            )
        })
    }
}

/// The simulated runtime. Cheap to clone.
#[derive(Clone, Default)]
pub struct SimRuntime {
    options: SimOptions,
    state: Arc<Mutex<State>>,
}

/// A simulated pod's IP: a stable address in the node's pod CIDR, from the pod's uid (no
/// network to ask).
fn ip_of(config: &SandboxConfig) -> String {
    let n = config
        .uid
        .bytes()
        .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    let prefix = config
        .pod_cidr
        .rsplit_once('.')
        .map_or("10.244.0", |(p, _)| p);
    format!("{prefix}.{}", 2 + n % 250)
}

/// A host on this machine's loopback: `localhost`, `127.0.0.0/8` or `::1`.
fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The port `hello` listens on: `$PORT`, or 8080; `None` when `PORT` is not a port number.
fn hello_port(env: &[(String, String)]) -> Option<u16> {
    match env.iter().rev().find(|(name, _)| name == "PORT") {
        Some((_, port)) => port.parse().ok(),
        None => Some(apps::HELLO_PORT),
    }
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

impl SimRuntime {
    /// A simulated runtime with these timings.
    pub fn new(options: SimOptions) -> Self {
        SimRuntime {
            options,
            state: Arc::default(),
        }
    }

    /// The security settings (`securityContext`, seccomp profile included) a container was
    /// created with: accepted and recorded, as nothing runs to enforce them.
    pub fn security(&self, id: &str) -> Option<Security> {
        self.lock().containers.get(id).map(|c| c.security.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn finish(&self, id: &str, code: i32) {
        let mut state = self.lock();
        if let Some(c) = state.containers.get_mut(id)
            && c.state == ContainerState::Running
        {
            c.state = ContainerState::Exited;
            c.exit_code = Some(code);
            c.finished_at = Some(jiff::Timestamp::now());
            c.stop = None;
            c.listening = None;
            c.exited.send_replace(true);
        }
    }

    /// Runs a container's plan until it ends or is stopped.
    async fn run(self, id: String, steps: Vec<Step>, mut stop: oneshot::Receiver<i32>) {
        let mut status = 0;
        for step in steps {
            let wait = match step {
                Step::Log(text) => {
                    if let Some(c) = self.lock().containers.get_mut(&id) {
                        c.logs.push(LogLine {
                            time: jiff::Timestamp::now(),
                            stream: "stdout",
                            text,
                        });
                    }
                    continue;
                }
                Step::Status(code) => {
                    status = code;
                    continue;
                }
                Step::Exit(code) => {
                    status = code;
                    break;
                }
                Step::Sleep(d) => Some(d),
                Step::Forever => None,
                Step::Load(load) => {
                    if let Some(c) = self.lock().containers.get_mut(&id) {
                        c.load = Some((load, jiff::Timestamp::now()));
                    }
                    None
                }
                Step::Serve(server) => {
                    if let Some(c) = self.lock().containers.get_mut(&id) {
                        c.listening = Some(server);
                    }
                    None
                }
            };
            let sleep = async {
                match wait {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = sleep => {}
                signal = &mut stop => {
                    self.finish(&id, signal.unwrap_or(137));
                    return;
                }
            }
        }
        self.finish(&id, status);
    }

    /// A connection to `port` of the pod in `sandbox`: to the program listening there, in
    /// memory, or refused.
    fn connect(&self, sandbox: &str, port: u16) -> std::io::Result<PodConnection> {
        let (server, identity, exited) = {
            let state = self.lock();
            let config = state.sandbox(sandbox)?;
            let mut running: Vec<&Container> = state
                .containers
                .values()
                .filter(|c| {
                    c.sandbox == sandbox && !c.removed && c.state == ContainerState::Running
                })
                .collect();
            running.sort_by_key(|c| c.serial);
            let listener = running.into_iter().find_map(|c| {
                let server = c.listening?;
                let listens = match server {
                    Server::Hello => hello_port(&c.env) == Some(port),
                    Server::Unknown => c.ports.contains(&port),
                };
                listens.then_some((server, c))
            });
            let Some((server, c)) = listener else {
                return Err(std::io::ErrorKind::ConnectionRefused.into());
            };
            let env = |name: &str| {
                c.env
                    .iter()
                    .rev()
                    .find(|(n, v)| n == name && !v.is_empty())
                    .map(|(_, v)| v.clone())
            };
            let identity = apps::Identity {
                pod: config.hostname.clone(),
                namespace: env("POD_NAMESPACE")
                    .or_else(|| {
                        apps::namespace_from_search(config.dns_search.iter().map(String::as_str))
                    })
                    .unwrap_or_else(|| "unknown".to_owned()),
                ip: env("POD_IP").unwrap_or_else(|| ip_of(config)),
            };
            (server, identity, c.exited.subscribe())
        };
        let (client, pod_side) = tokio::io::duplex(64 * 1024);
        tokio::spawn(serve(server, identity, pod_side, exited));
        Ok(Box::new(client))
    }

    fn container<T>(&self, id: &str, f: impl FnOnce(&mut Container) -> Result<T>) -> Result<T> {
        let mut state = self.lock();
        let c = state
            .containers
            .get_mut(id)
            .filter(|c| !c.removed)
            .ok_or_else(|| RuntimeError::NotFound {
                kind: "container",
                id: id.to_owned(),
            })?;
        f(c)
    }
}

#[async_trait]
impl ContainerRuntime for SimRuntime {
    fn version(&self) -> (&'static str, &'static str) {
        ("sim", "0.1")
    }

    async fn run_pod_sandbox(&self, config: &SandboxConfig) -> Result<String> {
        let id = new_id("sim-sandbox-");
        self.lock().sandboxes.insert(id.clone(), config.clone());
        Ok(id)
    }

    async fn stop_pod_sandbox(&self, sandbox: &str) -> Result<()> {
        let ids: Vec<String> = {
            let state = self.lock();
            if !state.sandboxes.contains_key(sandbox) {
                return Err(RuntimeError::NotFound {
                    kind: "sandbox",
                    id: sandbox.to_owned(),
                });
            }
            state
                .containers
                .iter()
                .filter(|(_, c)| c.sandbox == sandbox && !c.removed)
                .map(|(id, _)| id.clone())
                .collect()
        };
        for id in ids {
            self.stop_container(&id, Duration::ZERO).await?;
        }
        Ok(())
    }

    async fn remove_pod_sandbox(&self, sandbox: &str) -> Result<()> {
        self.stop_pod_sandbox(sandbox).await?;
        let mut state = self.lock();
        state.containers.retain(|_, c| c.sandbox != sandbox);
        state.sandboxes.remove(sandbox);
        Ok(())
    }

    async fn pull_image(&self, image: &str) -> Result<String> {
        tokio::time::sleep(self.options.pull_delay).await;
        let tag = image
            .rsplit_once(':')
            .map(|(_, t)| t)
            .filter(|t| !t.contains('/'));
        if tag == Some("notfound") {
            return Err(RuntimeError::ImagePull {
                image: image.to_owned(),
                message: "manifest unknown: manifest unknown".into(),
            });
        }
        self.lock().pulled.insert(image.to_owned());
        Ok(format!("sim.local/{image}"))
    }

    async fn create_container(&self, sandbox: &str, config: &ContainerConfig) -> Result<String> {
        let mut state = self.lock();
        if !state.sandboxes.contains_key(sandbox) {
            return Err(RuntimeError::NotFound {
                kind: "sandbox",
                id: sandbox.to_owned(),
            });
        }
        let id = new_id("sim-");
        state.serial += 1;
        let serial = state.serial;
        state.containers.insert(
            id.clone(),
            Container {
                serial,
                sandbox: sandbox.to_owned(),
                name: config.name.clone(),
                plan: plan(config),
                state: ContainerState::Created,
                started_at: None,
                finished_at: None,
                exit_code: None,
                logs: Vec::new(),
                stop: None,
                attempt: config.attempt,
                env: config.env.clone(),
                ports: config.ports.clone(),
                listening: None,
                exited: watch::Sender::new(false),
                removed: false,
                load: None,
                security: config.security.clone(),
            },
        );
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        let (steps, stop) = self.container(id, |c| {
            if c.state != ContainerState::Created {
                return Err(RuntimeError::InvalidState {
                    id: id.to_owned(),
                    state: c.state.name(),
                    action: "start",
                });
            }
            let (tx, rx) = oneshot::channel();
            c.stop = Some(tx);
            Ok((c.plan.clone(), rx))
        })?;
        tokio::time::sleep(self.options.start_delay).await;
        self.container(id, |c| {
            c.state = ContainerState::Running;
            c.started_at = Some(jiff::Timestamp::now());
            Ok(())
        })?;
        tokio::spawn(self.clone().run(id.to_owned(), steps, stop));
        Ok(())
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> Result<()> {
        let stop = self.container(id, |c| Ok(c.stop.take()))?;
        if let Some(stop) = stop {
            // The simulated process handles SIGTERM at once; no grace means SIGKILL.
            let _ = stop.send(if grace.is_zero() { 137 } else { 143 });
        }
        // Wait until the run task has recorded the exit.
        for _ in 0..1000 {
            if self.container(id, |c| Ok(c.state != ContainerState::Running))? {
                return Ok(());
            }
            tokio::task::yield_now().await;
        }
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let mut state = self.lock();
        match state
            .containers
            .get(id)
            .filter(|c| !c.removed)
            .map(|c| c.state)
        {
            None => Err(RuntimeError::NotFound {
                kind: "container",
                id: id.to_owned(),
            }),
            Some(ContainerState::Running) => Err(RuntimeError::InvalidState {
                id: id.to_owned(),
                state: "running",
                action: "remove",
            }),
            Some(_) => {
                let Some(c) = state.containers.get_mut(id) else {
                    return Ok(());
                };
                c.removed = true;
                // Keep one dead container per name, as the kubelet's garbage collection does.
                let (sandbox, name, serial) = (c.sandbox.clone(), c.name.clone(), c.serial);
                state.containers.retain(|_, c| {
                    !(c.removed && c.sandbox == sandbox && c.name == name && c.serial < serial)
                });
                Ok(())
            }
        }
    }

    async fn container_status(&self, id: &str) -> Result<ContainerStatus> {
        self.container(id, |c| {
            Ok(ContainerStatus {
                id: id.to_owned(),
                name: c.name.clone(),
                state: c.state,
                started_at: c.started_at,
                finished_at: c.finished_at,
                exit_code: c.exit_code,
                reason: c
                    .exit_code
                    .map(|code| if code == 0 { "Completed" } else { "Error" }.to_owned()),
                attempt: c.attempt,
                message: None,
            })
        })
    }

    async fn attach(&self, id: &str) -> Result<ExecSession> {
        self.container(id, |_| Ok(()))?;
        Err(RuntimeError::Unsupported(
            "a simulated container has no process to attach to: attach needs real containers \
             (--runtime libcontainer)"
                .into(),
        ))
    }

    async fn container_stats(&self, id: &str) -> Result<ContainerStats> {
        self.container(id, |c| Ok(c.stats(jiff::Timestamp::now())))
    }

    async fn list_pod_sandboxes(&self) -> Vec<(String, SandboxConfig)> {
        let state = self.lock();
        state
            .sandboxes
            .iter()
            .map(|(id, config)| (id.clone(), config.clone()))
            .collect()
    }

    async fn list_containers(&self, sandbox: &str) -> Result<Vec<ContainerStatus>> {
        let ids: Vec<String> = {
            let state = self.lock();
            if !state.sandboxes.contains_key(sandbox) {
                return Err(RuntimeError::NotFound {
                    kind: "sandbox",
                    id: sandbox.to_owned(),
                });
            }
            state
                .containers
                .iter()
                .filter(|(_, c)| c.sandbox == sandbox && !c.removed)
                .map(|(id, _)| id.clone())
                .collect()
        };
        let mut statuses = Vec::new();
        for id in ids {
            statuses.push(self.container_status(&id).await?);
        }
        Ok(statuses)
    }

    async fn container_logs(&self, id: &str) -> Result<Vec<LogLine>> {
        // Removed containers included, until their sandbox goes.
        self.lock()
            .containers
            .get(id)
            .map(|c| c.logs.clone())
            .ok_or_else(|| RuntimeError::NotFound {
                kind: "container",
                id: id.to_owned(),
            })
    }

    async fn find_container(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        previous: bool,
    ) -> Option<String> {
        let state = self.lock();
        let mut found: Vec<(&String, &Container)> = state
            .containers
            .iter()
            .filter(|(_, c)| {
                c.name == container
                    && state
                        .sandboxes
                        .get(&c.sandbox)
                        .is_some_and(|s| s.namespace == namespace && s.name == pod)
            })
            .collect();
        found.sort_by_key(|(_, c)| std::cmp::Reverse(c.serial));
        found
            .get(usize::from(previous))
            .map(|(id, _)| (*id).clone())
    }

    async fn pod_sandbox_status(&self, sandbox: &str) -> Result<SandboxStatus> {
        let state = self.lock();
        let config = state
            .sandboxes
            .get(sandbox)
            .ok_or_else(|| RuntimeError::NotFound {
                kind: "sandbox",
                id: sandbox.to_owned(),
            })?;
        Ok(SandboxStatus {
            ip: Some(ip_of(config)),
            ready: true,
        })
    }

    async fn dial(&self, sandbox: &str, host: &str, port: u16) -> std::io::Result<PodConnection> {
        let pod = {
            let state = self.lock();
            let config = state.sandbox(sandbox)?;
            if ip_of(config) == host {
                Some(sandbox.to_owned())
            } else {
                state
                    .sandboxes
                    .iter()
                    .find(|(_, config)| ip_of(config) == host)
                    .map(|(id, _)| id.clone())
            }
        };
        match pod {
            Some(pod) => self.connect(&pod, port),
            None if is_loopback(host) => super::dial_tcp(host, port).await,
            None => Err(std::io::Error::new(
                std::io::ErrorKind::NetworkUnreachable,
                "network is unreachable (a simulated node reaches only its simulated pods and loopback)",
            )),
        }
    }

    async fn image_present(&self, image: &str) -> Option<String> {
        self.lock()
            .pulled
            .contains(image)
            .then(|| format!("sim.local/{image}"))
    }

    async fn exec(&self, id: &str, request: ExecRequest) -> Result<ExecSession> {
        let (env, hostname) = {
            let state = self.lock();
            let c = state
                .containers
                .get(id)
                .ok_or_else(|| RuntimeError::NotFound {
                    kind: "container",
                    id: id.to_owned(),
                })?;
            if c.state != ContainerState::Running {
                return Err(RuntimeError::InvalidState {
                    id: id.to_owned(),
                    state: c.state.name(),
                    action: "exec",
                });
            }
            let hostname = state
                .sandboxes
                .get(&c.sandbox)
                .map(|s| s.hostname.clone())
                .unwrap_or_default();
            (c.env.clone(), hostname)
        };
        const PIPE: usize = 64 * 1024;
        let (stdout, stdout_reader) = tokio::io::duplex(PIPE);
        let (stderr, stderr_reader) = if request.tty {
            (None, None)
        } else {
            let (w, r) = tokio::io::duplex(PIPE);
            (Some(w), Some(r))
        };
        let (stdin_writer, stdin) = if request.stdin {
            let (w, r) = tokio::io::duplex(PIPE);
            (Some(w), Some(r))
        } else {
            (None, None)
        };
        let (done, exit) = oneshot::channel();
        let mut process = ExecProcess {
            stdin,
            stdout,
            stderr,
            env,
            hostname,
        };
        tokio::spawn(async move {
            let code = process.run(&request.command).await;
            // The streams close before the exit code is known, as a real process's pipes do.
            drop(process);
            let _ = done.send(code);
        });
        Ok(ExecSession {
            stdin: stdin_writer.map(|w| Box::new(w) as Box<dyn AsyncWrite + Send + Unpin>),
            stdout: Box::new(stdout_reader),
            stderr: stderr_reader.map(|r| Box::new(r) as Box<dyn AsyncRead + Send + Unpin>),
            resize: request
                .tty
                .then(|| Box::new(|_: u16, _: u16| {}) as Box<dyn Fn(u16, u16) + Send + Sync>),
            exit: exit
                .map(|code| {
                    code.map_err(|_| RuntimeError::Failed {
                        action: "exec",
                        message: "the simulated process vanished".into(),
                    })
                })
                .boxed(),
        })
    }
}

/// The pod's side of one accepted connection, until it is done or the program exits.
async fn serve(
    server: Server,
    identity: apps::Identity,
    mut connection: tokio::io::DuplexStream,
    mut exited: watch::Receiver<bool>,
) {
    let done = async {
        match server {
            Server::Hello => {
                let service = hyper::service::service_fn(move |_request| {
                    let response = apps::hello_response(&identity, None);
                    async move { Ok::<_, std::convert::Infallible>(response) }
                });
                // A client may shut its side once it has asked (a forwarded connection does).
                let _ = hyper::server::conn::http1::Builder::new()
                    .half_close(true)
                    .serve_connection(hyper_util::rt::TokioIo::new(&mut connection), service)
                    .await;
            }
            Server::Unknown => {
                // The first bytes (or the end), then close without a word.
                let mut buffer = [0u8; 4096];
                let _ = connection.read(&mut buffer).await;
            }
        }
    };
    tokio::select! {
        _ = done => {}
        _ = exited.wait_for(|exited| *exited) => {}
    }
}

/// A simulated process started by `exec`: its streams and what it can print.
struct ExecProcess {
    stdin: Option<tokio::io::DuplexStream>,
    stdout: tokio::io::DuplexStream,
    /// `None` with a terminal: stderr is stdout.
    stderr: Option<tokio::io::DuplexStream>,
    env: Vec<(String, String)>,
    hostname: String,
}

impl ExecProcess {
    async fn out(&mut self, text: &str) {
        let _ = self.stdout.write_all(text.as_bytes()).await;
    }

    async fn err(&mut self, text: &str) {
        let stream = self.stderr.as_mut().unwrap_or(&mut self.stdout);
        let _ = stream.write_all(text.as_bytes()).await;
    }

    /// Runs a whole command line (no shell) and returns its exit code.
    async fn run(&mut self, command: &[String]) -> i32 {
        let words: Vec<&str> = command.iter().map(String::as_str).collect();
        let program = words.first().map(|w| w.rsplit('/').next().unwrap_or(w));
        if matches!(program, Some("sh" | "bash" | "ash")) && words.get(1) == Some(&"-c") {
            let shell = program.unwrap_or("sh").to_owned();
            return self
                .script(&shell, words.get(2).copied().unwrap_or(""))
                .await;
        }
        match self.builtin(&words).await {
            Some(code) => code,
            None => {
                let name = words.first().copied().unwrap_or("");
                self.err(&format!(
                    "OCI runtime exec failed: exec failed: unable to start container process: exec: \"{name}\": executable file not found in $PATH: unknown\n"
                ))
                .await;
                126
            }
        }
    }

    /// `sh -c`: statements separated by `;` or newlines, each a chain of `&&`.
    async fn script(&mut self, shell: &str, script: &str) -> i32 {
        let mut status = 0;
        for statement in script.split([';', '\n']) {
            for (i, part) in statement.split("&&").enumerate() {
                if i > 0 && status != 0 {
                    break;
                }
                let words = shell_words(part);
                if words.is_empty() {
                    continue;
                }
                let words: Vec<&str> = words.iter().map(String::as_str).collect();
                if words[0] == "exit" {
                    return words.get(1).and_then(|n| n.parse().ok()).unwrap_or(status);
                }
                status = match self.builtin(&words).await {
                    Some(code) => code,
                    None => {
                        self.err(&format!("{shell}: {}: not found\n", words[0]))
                            .await;
                        127
                    }
                };
            }
        }
        status
    }

    /// One program the simulation knows; `None` for any other.
    async fn builtin(&mut self, words: &[&str]) -> Option<i32> {
        let program = words.first()?.rsplit('/').next().unwrap_or_default();
        Some(match program {
            "echo" => {
                self.out(&format!("{}\n", words[1..].join(" "))).await;
                0
            }
            "true" => 0,
            "false" => 1,
            "exit" => words.get(1).and_then(|n| n.parse().ok()).unwrap_or(0),
            "hostname" => {
                let name = self.hostname.clone();
                self.out(&format!("{name}\n")).await;
                0
            }
            "env" => {
                let text: String = self.env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
                self.out(&text).await;
                0
            }
            "sleep" => match words.get(1).and_then(|s| seconds(s)) {
                Some(Step::Sleep(d)) => {
                    tokio::time::sleep(d).await;
                    0
                }
                Some(_) => {
                    std::future::pending::<()>().await;
                    0
                }
                None => {
                    self.err("sleep: invalid number\n").await;
                    1
                }
            },
            "cat" => {
                let mut buffer = vec![0; 16 * 1024];
                if let Some(mut stdin) = self.stdin.take() {
                    loop {
                        match stdin.read(&mut buffer).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if self.stdout.write_all(&buffer[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                }
                0
            }
            _ => return None,
        })
    }
}

/// Splits a shell statement into words, honouring single and double quotes.
fn shell_words(statement: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for ch in statement.chars() {
        match (quote, ch) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(ch);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

#[cfg(test)]
impl SimRuntime {
    /// For unit tests that need a simulated pod: the sandbox of pod `shop/web` on `node-1`.
    pub(crate) async fn test_sandbox(&self) -> String {
        self.run_pod_sandbox(&SandboxConfig {
            uid: "uid-1".into(),
            namespace: "shop".into(),
            name: "web".into(),
            hostname: "web".into(),
            node: "node-1".into(),
            pod_cidr: "10.244.1.0/24".into(),
            dns_search: vec!["shop.svc.cluster.local".into()],
            dns_servers: Vec::new(),
            dns_options: vec!["ndots:5".into()],
        })
        .await
        .expect("a simulated sandbox")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(command: &[&str], args: &[&str]) -> ContainerConfig {
        ContainerConfig {
            name: "c".into(),
            image: "busybox".into(),
            command: command.iter().map(|s| (*s).to_owned()).collect(),
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn commands_become_plans() {
        use Step::*;
        for (command, args, expected) in [
            (vec!["sh", "-c", "exit 3"], vec![], vec![Exit(3)]),
            (vec![], vec![], vec![Serve(Server::Unknown)]),
            (
                vec!["nginx"],
                vec!["-g", "daemon off;"],
                vec![Serve(Server::Unknown)],
            ),
            (
                vec!["sleep", "5"],
                vec![],
                vec![Sleep(Duration::from_secs(5)), Status(0)],
            ),
            (vec!["sleep"], vec!["infinity"], vec![Forever, Status(0)]),
            (
                vec!["/bin/echo", "hi", "there"],
                vec![],
                vec![Log("hi there".into()), Status(0)],
            ),
            (vec!["false"], vec![], vec![Status(1)]),
            (
                vec!["/bin/sh", "-c"],
                vec!["echo start; sleep 2 && echo done; exit 0"],
                vec![
                    Log("start".into()),
                    Status(0),
                    Sleep(Duration::from_secs(2)),
                    Status(0),
                    Log("done".into()),
                    Status(0),
                    Exit(0),
                ],
            ),
            (
                vec!["sh", "-c", "echo 'crashing'; false"],
                vec![],
                vec![Log("crashing".into()), Status(0), Status(1)],
            ),
            // The built-in images' tools.
            (
                vec!["/orrery", "exit", "1", "giving up"],
                vec![],
                vec![Exit(1)],
            ),
            (
                vec!["/orrery", "sleep", "3"],
                vec![],
                vec![Sleep(Duration::from_secs(3)), Status(0)],
            ),
            (
                vec!["/orrery", "write", "/work/a", "text"],
                vec![],
                vec![Status(0)],
            ),
            (vec!["/orrery", "hello"], vec![], vec![Serve(Server::Hello)]),
            (vec!["/orrery", "pause"], vec![], vec![Forever]),
            (
                vec!["/orrery", "hog", "256"],
                vec![],
                vec![Load(super::Load {
                    millicores: 0,
                    bytes: 256 << 20,
                })],
            ),
            (
                vec!["/orrery", "burn", "400m"],
                vec![],
                vec![Load(super::Load {
                    millicores: 400,
                    bytes: 0,
                })],
            ),
            (vec!["/orrery", "burn", "lots"], vec![], vec![Exit(2)]),
            (vec!["/orrery"], vec![], vec![Forever]),
        ] {
            assert_eq!(
                plan(&config(&command, &args)),
                expected,
                "{command:?} {args:?}"
            );
        }
        // Without a command, a built-in image runs its entrypoint with the args.
        for (image, args, expected) in [
            ("orrery/hello", vec![], vec![Serve(Server::Hello)]),
            (
                "docker.io/orrery/hello:v2",
                vec!["x"],
                vec![Serve(Server::Hello)],
            ),
            ("orrery/pause:3.10", vec![], vec![Forever]),
            (
                "busybox",
                vec!["sleep", "2"],
                vec![Sleep(Duration::from_secs(2)), Status(0)],
            ),
        ] {
            let config = ContainerConfig {
                image: image.into(),
                ..config(&[], &args)
            };
            assert_eq!(plan(&config), expected, "{image} {args:?}");
        }
    }

    async fn started(rt: &SimRuntime, command: &[&str]) -> String {
        let sandbox = pod(rt, "u").await;
        let id = rt
            .create_container(&sandbox, &config(command, &[]))
            .await
            .unwrap();
        rt.start_container(&id).await.unwrap();
        id
    }

    #[tokio::test]
    async fn security_and_seccomp_profile_are_recorded() {
        let rt = SimRuntime::new(SimOptions::default());
        let sandbox = pod(&rt, "u-sec").await;
        let mut c = config(&["sleep", "infinity"], &[]);
        c.security.seccomp = crate::runtime::SeccompProfile::RuntimeDefault;
        let id = rt.create_container(&sandbox, &c).await.unwrap();
        assert_eq!(
            rt.security(&id).unwrap().seccomp,
            crate::runtime::SeccompProfile::RuntimeDefault
        );
    }

    /// A sandbox for pod `p` in namespace `ns`, with uid `uid`.
    async fn pod(rt: &SimRuntime, uid: &str) -> String {
        rt.run_pod_sandbox(&SandboxConfig {
            uid: uid.into(),
            namespace: "ns".into(),
            name: "p".into(),
            hostname: "p".into(),
            node: "node-1".into(),
            pod_cidr: "10.244.1.0/24".into(),
            dns_search: vec![
                "ns.svc.cluster.local".into(),
                "svc.cluster.local".into(),
                "cluster.local".into(),
            ],
            dns_servers: Vec::new(),
            dns_options: vec!["ndots:5".into()],
        })
        .await
        .unwrap()
    }

    /// Starts `config` in `sandbox` and lets its program run to its first wait.
    async fn run(rt: &SimRuntime, sandbox: &str, config: ContainerConfig) -> String {
        let id = rt.create_container(sandbox, &config).await.unwrap();
        rt.start_container(&id).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
        id
    }

    /// What a plain HTTP/1.0 `GET /` to `host:port` in the pod of `sandbox` gets back.
    async fn get(rt: &SimRuntime, sandbox: &str, host: &str, port: u16) -> std::io::Result<String> {
        let mut connection = rt.dial(sandbox, host, port).await?;
        connection.write_all(b"GET / HTTP/1.0\r\n\r\n").await?;
        let mut answer = String::new();
        connection.read_to_string(&mut answer).await?;
        Ok(answer)
    }

    #[tokio::test(start_paused = true)]
    async fn the_pod_network_by_the_rules() {
        use std::io::ErrorKind::{ConnectionRefused, NetworkUnreachable};
        let rt = SimRuntime::new(SimOptions::default());
        let sandbox = pod(&rt, "u1").await;
        let ip = rt.pod_sandbox_status(&sandbox).await.unwrap().ip.unwrap();
        let kind = |result: std::io::Result<String>| result.map_err(|e| e.kind());
        // Nothing runs yet: refused.
        assert_eq!(
            kind(get(&rt, &sandbox, &ip, 8080).await),
            Err(ConnectionRefused)
        );
        // The built-in hello answers on 8080 as the real one does.
        let hello = ContainerConfig {
            image: "orrery/hello".into(),
            ..config(&[], &[])
        };
        let hello = run(&rt, &sandbox, hello).await;
        let answer = get(&rt, &sandbox, &ip, 8080).await.unwrap();
        assert!(answer.starts_with("HTTP/1.0 200 OK\r\n"), "{answer}");
        assert!(
            answer.contains("content-type: text/plain; charset=utf-8\r\n"),
            "{answer}"
        );
        assert!(
            answer.ends_with(&format!("\r\n\r\nHello from p in ns at {ip}\n")),
            "{answer}"
        );
        assert_eq!(
            kind(get(&rt, &sandbox, &ip, 80).await),
            Err(ConnectionRefused)
        );
        // A connection ends when its program exits; then the port is closed.
        let mut open = rt.dial(&sandbox, &ip, 8080).await.unwrap();
        rt.stop_container(&hello, Duration::from_secs(30))
            .await
            .unwrap();
        let mut rest = Vec::new();
        assert_eq!(open.read_to_end(&mut rest).await.unwrap(), 0);
        assert_eq!(
            kind(get(&rt, &sandbox, &ip, 8080).await),
            Err(ConnectionRefused)
        );

        // `PORT` and the pod's own variables.
        let other = pod(&rt, "u2").await;
        let other_ip = rt.pod_sandbox_status(&other).await.unwrap().ip.unwrap();
        let env = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let moved = ContainerConfig {
            env: env(&[("PORT", "9090"), ("POD_NAMESPACE", "shop"), ("POD_IP", "")]),
            ..config(&["/orrery", "hello"], &[])
        };
        run(&rt, &other, moved).await;
        assert_eq!(
            kind(get(&rt, &other, &other_ip, 8080).await),
            Err(ConnectionRefused)
        );
        let answer = get(&rt, &other, &other_ip, 9090).await.unwrap();
        assert!(
            answer.ends_with(&format!("Hello from p in shop at {other_ip}\n")),
            "{answer}"
        );
        // One simulated pod reaches another on its node by its IP; nothing off the machine.
        let answer = get(&rt, &sandbox, &other_ip, 9090).await.unwrap();
        assert!(
            answer.ends_with(&format!("Hello from p in shop at {other_ip}\n")),
            "{answer}"
        );
        assert_eq!(
            kind(get(&rt, &sandbox, "192.0.2.1", 80).await),
            Err(NetworkUnreachable)
        );
        assert_eq!(
            kind(get(&rt, &sandbox, "example.com", 80).await),
            Err(NetworkUnreachable)
        );

        // An unknown program listens on its declared ports once it runs, and hangs up.
        let third = pod(&rt, "u3").await;
        let third_ip = rt.pod_sandbox_status(&third).await.unwrap().ip.unwrap();
        let web = ContainerConfig {
            ports: vec![80],
            ..config(&["sh", "-c", "sleep 5; nginx -g 'daemon off;'"], &[])
        };
        run(&rt, &third, web).await;
        assert_eq!(
            kind(get(&rt, &third, &third_ip, 80).await),
            Err(ConnectionRefused)
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(
            kind(get(&rt, &third, &third_ip, 80).await),
            Ok(String::new())
        );
        assert_eq!(
            kind(get(&rt, &third, &third_ip, 81).await),
            Err(ConnectionRefused)
        );
        // Programs that listen nowhere, declared ports or not.
        for command in [vec!["sleep", "infinity"], vec!["/orrery", "pause"]] {
            let quiet = pod(&rt, &format!("quiet-{}", command[0])).await;
            let quiet_ip = rt.pod_sandbox_status(&quiet).await.unwrap().ip.unwrap();
            let config = ContainerConfig {
                ports: vec![80],
                ..config(&command, &[])
            };
            run(&rt, &quiet, config).await;
            assert_eq!(
                kind(get(&rt, &quiet, &quiet_ip, 80).await),
                Err(ConnectionRefused),
                "{command:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn containers_exit_by_the_rules() {
        let rt = SimRuntime::new(SimOptions::default());
        let crash = started(&rt, &["sh", "-c", "echo boom; exit 3"]).await;
        let sleeper = started(&rt, &["sleep", "5"]).await;
        let server = started(&rt, &["nginx"]).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
        let status = rt.container_status(&crash).await.unwrap();
        assert_eq!(
            (status.state, status.exit_code, status.reason.as_deref()),
            (ContainerState::Exited, Some(3), Some("Error"))
        );
        assert_eq!(rt.container_logs(&crash).await.unwrap()[0].text, "boom");
        assert_eq!(
            rt.container_status(&sleeper).await.unwrap().state,
            ContainerState::Running
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
        let status = rt.container_status(&sleeper).await.unwrap();
        assert_eq!(
            (status.state, status.exit_code, status.reason.as_deref()),
            (ContainerState::Exited, Some(0), Some("Completed"))
        );
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(
            rt.container_status(&server).await.unwrap().state,
            ContainerState::Running
        );
        rt.stop_container(&server, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(
            rt.container_status(&server).await.unwrap().exit_code,
            Some(143)
        );
        rt.remove_container(&server).await.unwrap();
        assert!(matches!(
            rt.container_status(&server).await,
            Err(RuntimeError::NotFound { .. })
        ));
        // A removed container's logs stay for `--previous`.
        assert_eq!(rt.container_logs(&crash).await.unwrap().len(), 1);
        rt.remove_container(&crash).await.unwrap();
        assert_eq!(rt.container_logs(&crash).await.unwrap()[0].text, "boom");
        assert_eq!(
            rt.find_container("ns", "p", "c", true).await,
            Some(sleeper.clone())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn errors_and_sandboxes() {
        let rt = SimRuntime::new(SimOptions::default());
        assert!(matches!(
            rt.pull_image("nginx:notfound").await,
            Err(RuntimeError::ImagePull { .. })
        ));
        assert_eq!(
            rt.pull_image("localhost:5000/app:1").await.unwrap(),
            "sim.local/localhost:5000/app:1"
        );
        let id = started(&rt, &["nginx"]).await;
        assert!(matches!(
            rt.start_container(&id).await,
            Err(RuntimeError::InvalidState { .. })
        ));
        assert!(matches!(
            rt.remove_container(&id).await,
            Err(RuntimeError::InvalidState { .. })
        ));
        let sandbox = rt.lock().containers[&id].sandbox.clone();
        rt.remove_pod_sandbox(&sandbox).await.unwrap();
        assert!(matches!(
            rt.container_status(&id).await,
            Err(RuntimeError::NotFound { .. })
        ));
        assert!(matches!(
            rt.create_container(&sandbox, &config(&[], &[])).await,
            Err(RuntimeError::NotFound { .. })
        ));
    }

    async fn exec_output(
        rt: &SimRuntime,
        id: &str,
        command: &[&str],
        stdin: Option<&str>,
    ) -> (i32, String, String) {
        let session = rt
            .exec(
                id,
                ExecRequest {
                    command: command.iter().map(|s| (*s).to_owned()).collect(),
                    stdin: stdin.is_some(),
                    tty: false,
                },
            )
            .await
            .unwrap();
        if let (Some(mut writer), Some(input)) = (session.stdin, stdin) {
            writer.write_all(input.as_bytes()).await.unwrap();
        }
        let (mut out, mut err) = (String::new(), String::new());
        let mut stdout = session.stdout;
        let mut stderr = session.stderr.unwrap();
        let (a, b) = tokio::join!(
            stdout.read_to_string(&mut out),
            stderr.read_to_string(&mut err)
        );
        a.unwrap();
        b.unwrap();
        (session.exit.await.unwrap(), out, err)
    }

    #[tokio::test(start_paused = true)]
    async fn exec_runs_the_words() {
        let rt = SimRuntime::new(SimOptions::default());
        let id = started(&rt, &["nginx"]).await;
        for (command, stdin, expected) in [
            (vec!["echo", "hi", "there"], None, (0, "hi there\n", "")),
            (vec!["sh", "-c", "exit 3"], None, (3, "", "")),
            (
                vec![
                    "sh",
                    "-c",
                    "echo 'a  b'; false && echo no; true && echo yes",
                ],
                None,
                (0, "a  b\nyes\n", ""),
            ),
            (vec!["cat"], Some("data\nmore"), (0, "data\nmore", "")),
            (vec!["hostname"], None, (0, "p\n", "")),
            (
                vec!["nope", "x"],
                None,
                (
                    126,
                    "",
                    "OCI runtime exec failed: exec failed: unable to start container process: exec: \"nope\": executable file not found in $PATH: unknown\n",
                ),
            ),
            (
                vec!["/bin/sh", "-c", "nope"],
                None,
                (127, "", "sh: nope: not found\n"),
            ),
        ] {
            let (code, out, err) = exec_output(&rt, &id, &command, stdin).await;
            assert_eq!((code, out.as_str(), err.as_str()), expected, "{command:?}");
        }
        rt.stop_container(&id, Duration::ZERO).await.unwrap();
        assert!(matches!(
            rt.exec(&id, ExecRequest::default()).await,
            Err(RuntimeError::InvalidState { .. })
        ));
    }
}
