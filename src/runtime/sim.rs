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
//!   `sleep` and `exit` as above, `write` exits 0 at once; `hello`, `pause` and `hog` run until
//!   stopped (the simulation has no memory to exhaust).
//! - Anything else, including no command at all (the image's own entrypoint), runs until stopped.
//! - Stopping handles SIGTERM at once (exit code 143); a grace period of zero kills (137).
//! - `exec` in a running container runs its command by the same words, on the exec's own
//!   streams: `echo <text>` writes the text and a newline to stdout, `cat` copies stdin to
//!   stdout until stdin ends, `env` prints the container's environment (`NAME=value` lines),
//!   `hostname` prints the pod's hostname, `sleep <seconds>` waits, `true`/`false`/`exit <n>`
//!   set the exit code, and `sh -c "<script>"` runs statements separated by `;` or `&&` (a
//!   failed statement ends an `&&` chain). A program it does not know fails as runc does
//!   (`exec: "<x>": executable file not found in $PATH` on stderr, exit code 126); inside a
//!   script it fails as a shell does (`sh: <x>: not found`, 127). With a terminal, stderr goes
//!   to stdout and resizing does nothing (the simulated terminal has no size).
//! - Images pull after a short delay; a reference whose tag is `notfound` fails as a registry
//!   would (`manifest unknown`), for showing `ErrImagePull` and `ImagePullBackOff`.
//!
//! Time is tokio's, so tests run the rules on a paused clock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;

use super::{
    ContainerConfig, ContainerRuntime, ContainerState, ContainerStatus, ExecRequest, ExecSession,
    LogLine, Result, RuntimeError, SandboxConfig, SandboxStatus,
};

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
    Forever,
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
        // The built-in images' tools (`/orrery sleep 5`, `/orrery exit 1`) do what their
        // names say.
        "orrery" if words.len() > 1 => statement(&words[1..]),
        // `orrery write <file> <text>`: done at once.
        "write" => vec![Step::Status(0)],
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
        _ => vec![Step::Forever],
    }
}

/// What a container's command and args do, by the rules in the module documentation.
fn plan(config: &ContainerConfig) -> Vec<Step> {
    let program: Vec<&str> = config
        .command
        .iter()
        .chain(&config.args)
        .map(String::as_str)
        .collect();
    if program.is_empty() {
        return vec![Step::Forever];
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
    /// Removed: gone for every purpose but its logs (`kubectl logs --previous`), until its
    /// sandbox is removed.
    removed: bool,
}

#[derive(Default)]
struct State {
    sandboxes: HashMap<String, SandboxConfig>,
    containers: HashMap<String, Container>,
    serial: u64,
    pulled: std::collections::HashSet<String>,
}

/// The simulated runtime. Cheap to clone.
#[derive(Clone, Default)]
pub struct SimRuntime {
    options: SimOptions,
    state: Arc<Mutex<State>>,
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
                removed: false,
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
        // A stable address in the node's pod CIDR, from the pod's uid (no network to ask).
        let n = config
            .uid
            .bytes()
            .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        let prefix = config
            .pod_cidr
            .rsplit_once('.')
            .map_or("10.244.0", |(p, _)| p);
        Ok(SandboxStatus {
            ip: Some(format!("{prefix}.{}", 2 + n % 250)),
            ready: true,
        })
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
            (vec![], vec![], vec![Forever]),
            (vec!["nginx"], vec!["-g", "daemon off;"], vec![Forever]),
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
            (vec!["/orrery", "hello"], vec![], vec![Forever]),
            (vec!["/orrery", "hog", "256"], vec![], vec![Forever]),
            (vec!["/orrery"], vec![], vec![Forever]),
        ] {
            assert_eq!(
                plan(&config(&command, &args)),
                expected,
                "{command:?} {args:?}"
            );
        }
    }

    async fn started(rt: &SimRuntime, command: &[&str]) -> String {
        let sandbox = rt
            .run_pod_sandbox(&SandboxConfig {
                uid: "u".into(),
                namespace: "ns".into(),
                name: "p".into(),
                hostname: "p".into(),
                node: "node-1".into(),
                pod_cidr: "10.244.1.0/24".into(),
                dns_search: Vec::new(),
                dns_servers: Vec::new(),
            })
            .await
            .unwrap();
        let id = rt
            .create_container(&sandbox, &config(command, &[]))
            .await
            .unwrap();
        rt.start_container(&id).await.unwrap();
        id
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
