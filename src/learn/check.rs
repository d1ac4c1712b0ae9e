//! What a lesson does to a cluster and checks on it, shared by the headless runner
//! (`learn::run`) and the dashboard's effects: a [`Session`] (the cluster's client, the
//! environment its commands run in, the lesson's variables), its actions ([`perform`]), the
//! hops since a step began ([`FlowLog`], read from `GET /orrery/v1/flow`), and every check kind,
//! tried once ([`evaluate`]) or until it holds ([`check_until`]). A check says what it expected
//! and what it saw, in words for the learner.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::lesson::{Action, Check, CheckKind, Expect, StepperAction, expand};
use crate::flow::{FlowEvent, HopPattern};

/// How often a check that does not hold yet is tried again.
pub const RETRY: Duration = Duration::from_millis(200);

/// The longest a check's command may run in one try.
const COMMAND_TRY: Duration = Duration::from_secs(20);

/// How much of a command's output a result quotes.
const QUOTED: usize = 300;

/// How many hops after the last matched one a failed flow check quotes.
const QUOTED_HOPS: usize = 6;

/// The lesson's side of one cluster: a client, the environment its commands run in, and the
/// lesson's variables (the built-in ones and those captured so far).
pub struct Session {
    client: kube::Client,
    env: Vec<(String, OsString)>,
    vars: BTreeMap<String, String>,
}

impl Session {
    /// A session on the cluster with this client, state directory and name; `tmp` is a
    /// directory of the run's own (kubectl's cache goes there too).
    pub fn new(client: kube::Client, state_dir: &Path, name: &str, tmp: &Path) -> Session {
        let kubeconfig = state_dir.join("kubeconfig");
        // This orrery first on PATH, so `orrery component stop ...` is this cluster's binary.
        let mut path = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(Path::to_path_buf))
            .map(|dir| vec![dir])
            .unwrap_or_default();
        path.extend(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
        ));
        let path = std::env::join_paths(path).unwrap_or_else(|_| "/usr/bin:/bin".into());
        let env = vec![
            ("KUBECONFIG".to_owned(), kubeconfig.clone().into_os_string()),
            (
                "KUBECACHEDIR".to_owned(),
                tmp.join("kube-cache").into_os_string(),
            ),
            (
                "ORRERY_STATE_DIR".to_owned(),
                state_dir.as_os_str().to_owned(),
            ),
            ("ORRERY_NAME".to_owned(), name.into()),
            ("PATH".to_owned(), path),
        ];
        let vars = BTreeMap::from([
            ("state_dir".to_owned(), state_dir.display().to_string()),
            ("kubeconfig".to_owned(), kubeconfig.display().to_string()),
            ("tmp".to_owned(), tmp.display().to_string()),
            ("name".to_owned(), name.to_owned()),
        ]);
        Session { client, env, vars }
    }

    /// The lesson's variables.
    pub fn vars(&self) -> &BTreeMap<String, String> {
        &self.vars
    }

    /// Sets a variable (one a `capture:` made earlier, say).
    pub fn set(&mut self, name: &str, value: &str) {
        self.vars.insert(name.to_owned(), value.to_owned());
    }

    /// The client.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// `text` with the lesson's variables filled in.
    pub fn expand(&self, text: &str) -> Result<String, String> {
        expand(text, |name| self.vars.get(name).cloned())
    }

    /// Runs `command` with `sh -c` in the lesson's environment, feeding it `stdin`, for at most
    /// `limit`.
    pub async fn shell(&self, command: &str, stdin: Option<&str>, limit: Duration) -> Shell {
        // /bin/sh, as POSIX has it (dash on Debian, an essential package).
        let mut child = tokio::process::Command::new("/bin/sh");
        child
            .arg("-c")
            .arg(command)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(if stdin.is_some() {
                std::process::Stdio::piped()
            } else {
                std::process::Stdio::null()
            })
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = match child.spawn() {
            Ok(child) => child,
            Err(e) => {
                return Shell {
                    code: None,
                    stdout: String::new(),
                    stderr: format!("cannot run sh: {e}"),
                };
            }
        };
        if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
            let text = text.to_owned();
            tokio::spawn(async move {
                let _ = input.write_all(text.as_bytes()).await;
            });
        }
        match tokio::time::timeout(limit, child.wait_with_output()).await {
            Ok(Ok(out)) => Shell {
                code: out.status.code(),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            },
            Ok(Err(e)) => Shell {
                code: None,
                stdout: String::new(),
                stderr: format!("sh failed: {e}"),
            },
            Err(_) => Shell {
                code: None,
                stdout: String::new(),
                stderr: format!("still running after {}", seconds(limit)),
            },
        }
    }

    /// `POST /orrery/v1/stepper` with `body`; the stepper's state.
    pub async fn stepper(&self, body: Value) -> Result<Value, String> {
        let request = http::Request::post("/orrery/v1/stepper")
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(&body).unwrap_or_default())
            .map_err(|e| e.to_string())?;
        self.client
            .request::<Value>(request)
            .await
            .map_err(|e| format!("the stepper: {e}"))
    }

    /// Releases the oldest waiting gate if the cluster is in step mode and one waits, as a
    /// learner pressing `n`; whether one was released.
    pub async fn release_one(&self) -> bool {
        let request = http::Request::get("/orrery/v1/stepper")
            .body(Vec::new())
            .expect("a valid request");
        let Ok(state) = self.client.request::<Value>(request).await else {
            return false;
        };
        if state["mode"] != "step" {
            return false;
        }
        let Some(id) = state["pending"]
            .as_array()
            .and_then(|p| p.first())
            .and_then(|g| g["id"].as_u64())
        else {
            return false;
        };
        self.stepper(json!({ "releaseGate": id })).await.is_ok()
    }
}

/// What a command did.
#[derive(Clone, Debug, Default)]
pub struct Shell {
    /// Its exit code (`None`: killed, timed out, or not run).
    pub code: Option<i32>,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error (or why it did not run).
    pub stderr: String,
}

impl Shell {
    fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// `exit 1: <stderr>` in a few words.
    fn words(&self) -> String {
        let status = match self.code {
            Some(code) => format!("exit {code}"),
            None => "did not finish".to_owned(),
        };
        let out = if self.stderr.trim().is_empty() {
            self.stdout.trim()
        } else {
            self.stderr.trim()
        };
        if out.is_empty() {
            status
        } else {
            format!("{status}: {}", quote(out))
        }
    }
}

/// `text` on one line and cut to [`QUOTED`] characters.
fn quote(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() > QUOTED {
        let cut: String = line.chars().take(QUOTED).collect();
        format!("{cut}…")
    } else {
        line
    }
}

/// `1.2s`.
pub fn seconds(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// What came of one check or action.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// Whether it held (the action succeeded).
    pub held: bool,
    /// What was expected, in words.
    pub expected: String,
    /// What was seen, in words.
    pub seen: String,
    /// The hops a flow check matched, each with why it happens (`flow::explain`); empty for
    /// every other check.
    pub hops: Vec<String>,
}

impl Outcome {
    fn new(held: bool, expected: impl Into<String>, seen: impl Into<String>) -> Outcome {
        Outcome {
            held,
            expected: expected.into(),
            seen: seen.into(),
            hops: Vec::new(),
        }
    }
}

/// Performs one action; `limit` bounds a command.
pub async fn perform(action: &Action, session: &Session, limit: Duration) -> Outcome {
    match action {
        Action::Run {
            command,
            stdin,
            may_fail,
        } => {
            let (command, stdin) = match expanded(session, command, stdin.as_deref()) {
                Ok(both) => both,
                Err(why) => return Outcome::new(false, command.clone(), why),
            };
            let shell = session.shell(&command, stdin.as_deref(), limit).await;
            let expected = if *may_fail {
                format!("{command} (may fail)")
            } else {
                command
            };
            Outcome::new(shell.ok() || *may_fail, expected, shell.words())
        }
        Action::Stepper(what) => {
            let (body, expected) = match what {
                StepperAction::Step => (json!({"mode": "step"}), "step mode"),
                StepperAction::Run => (json!({"mode": "run"}), "run mode"),
                StepperAction::Next => (json!({"release": 1}), "the oldest gate released"),
            };
            match session.stepper(body).await {
                Ok(state) => Outcome::new(
                    true,
                    expected,
                    format!(
                        "{} mode, {} waiting",
                        state["mode"].as_str().unwrap_or("?"),
                        state["waiting"].as_u64().unwrap_or(0)
                    ),
                ),
                Err(why) => Outcome::new(false, expected, why),
            }
        }
    }
}

fn expanded(
    session: &Session,
    command: &str,
    stdin: Option<&str>,
) -> Result<(String, Option<String>), String> {
    let command = session.expand(command)?;
    let stdin = stdin.map(|s| session.expand(s)).transpose()?;
    Ok((command, stdin))
}

// ---------------------------------------------------------------------------------------------
// The flow.

/// The hops after a sequence number, read from `GET /orrery/v1/flow?follow=false` and kept up
/// to date by [`FlowLog::catch_up`].
#[derive(Clone, Debug, Default)]
pub struct FlowLog {
    events: Vec<FlowEvent>,
    /// The last sequence number read.
    last: u64,
    /// Events the bus had already forgotten when read (the ring holds 10,000).
    pub missed: u64,
}

impl FlowLog {
    /// A log of the hops after `seq`.
    pub fn after(seq: u64) -> FlowLog {
        FlowLog {
            events: Vec::new(),
            last: seq,
            missed: 0,
        }
    }

    /// Reads the hops that happened since the last read.
    pub async fn catch_up(&mut self, client: &kube::Client) -> Result<(), String> {
        let request =
            http::Request::get(format!("/orrery/v1/flow?follow=false&since={}", self.last))
                .body(Vec::new())
                .map_err(|e| e.to_string())?;
        let text = client
            .request_text(request)
            .await
            .map_err(|e| format!("cannot read the flow: {e}"))?;
        for line in text.lines() {
            if let Some(crate::tui::source::FlowLine::Event(event)) =
                crate::tui::source::parse_flow_line(line)
                && event.seq > self.last
            {
                // A log that starts after 0 wants every hop from there on: a gap is lost hops.
                if event.seq > self.last + 1 && self.last > 0 {
                    self.missed += event.seq - self.last - 1;
                }
                self.last = event.seq;
                self.events.push(*event);
            }
        }
        Ok(())
    }

    /// The last sequence number read.
    pub fn last(&self) -> u64 {
        self.last
    }

    /// The hops after `seq` that were read.
    pub fn since(&self, seq: u64) -> &[FlowEvent] {
        let at = self.events.partition_point(|e| e.seq <= seq);
        &self.events[at..]
    }

    /// Forgets the hops up to `seq` (a finished step's).
    pub fn forget_through(&mut self, seq: u64) {
        let at = self.events.partition_point(|e| e.seq <= seq);
        self.events.drain(..at);
    }
}

/// A hop as a result quotes it: `#12 kubectl -> apiserver POST Deployment default/web`.
fn hop_words(e: &FlowEvent) -> String {
    let mut s = format!("#{} {} -> {} {}", e.seq, e.from, e.to, e.verb);
    if !e.kind.is_empty() {
        s.push(' ');
        s.push_str(&e.kind);
    }
    if !e.name.is_empty() {
        s.push(' ');
        if !e.namespace.is_empty() {
            s.push_str(&e.namespace);
            s.push('/');
        }
        s.push_str(&e.name);
    }
    s
}

/// `pattern` with the lesson's variables filled in.
fn expand_pattern(session: &Session, pattern: &HopPattern) -> Result<HopPattern, String> {
    let field = |f: &Option<String>| f.as_deref().map(|t| session.expand(t)).transpose();
    Ok(HopPattern {
        from: field(&pattern.from)?,
        to: field(&pattern.to)?,
        verb: field(&pattern.verb)?,
        kind: field(&pattern.kind)?,
        namespace: field(&pattern.namespace)?,
        name: field(&pattern.name)?,
    })
}

/// Whether `hops` hold `patterns` in order (others between): the matched hops, or how far it
/// got and what came after.
pub fn in_order<'a>(
    hops: &'a [FlowEvent],
    patterns: &[HopPattern],
) -> Result<Vec<&'a FlowEvent>, (usize, Vec<&'a FlowEvent>)> {
    let mut matched = Vec::new();
    let mut from = 0;
    for pattern in patterns {
        match hops[from..].iter().position(|h| pattern.matches(h)) {
            Some(at) => {
                matched.push(&hops[from + at]);
                from += at + 1;
            }
            None => return Err((matched.len(), matched)),
        }
    }
    Ok(matched)
}

// ---------------------------------------------------------------------------------------------
// Checks.

/// What `check` expects, in words (its variables filled in where they have values).
pub fn expected(check: &Check, session: &Session) -> String {
    let fill = |t: &str| session.expand(t).unwrap_or_else(|_| t.to_owned());
    let expect_words = |expect: &Expect| {
        expect
            .text()
            .map_or_else(|| expect.words(""), |t| expect.words(&fill(t)))
    };
    let patterns = |ps: &[HopPattern]| {
        ps.iter()
            .map(|p| {
                expand_pattern(session, p)
                    .unwrap_or_else(|_| p.clone())
                    .to_string()
            })
            .collect::<Vec<_>>()
    };
    let mut words = match &check.kind {
        CheckKind::Run {
            command, expect, ..
        } => format!("{} {}", fill(command), expect_words(expect)),
        CheckKind::Fails { command, with, .. } => {
            format!("{} fails with {:?}", fill(command), fill(with))
        }
        CheckKind::Flow(ps) => format!("flow: {}", patterns(ps).join(", then ")),
        CheckKind::NoFlow(ps) => format!("no hop {}", patterns(ps).join(", nor ")),
        CheckKind::Http { url, expect } => format!("GET {} {}", fill(url), expect_words(expect)),
        CheckKind::Capture { var, command, .. } => {
            format!("${{{var}}} from {}", fill(command))
        }
    };
    if let Some(hold) = check.hold {
        words.push_str(&format!(", for {}", seconds(hold)));
    }
    words
}

/// Tries `check` once. A flow check reads the hops since the last read into `log` and looks at
/// those after `since` (the step's beginning). A capture that holds sets its variable.
pub async fn evaluate(
    check: &Check,
    session: &mut Session,
    log: &mut FlowLog,
    since: u64,
) -> Outcome {
    let expected = expected(check, session);
    let failed = |seen: String| Outcome::new(false, expected.clone(), seen);
    match &check.kind {
        CheckKind::Run {
            command,
            stdin,
            expect,
        } => {
            let (command, stdin) = match expanded(session, command, stdin.as_deref()) {
                Ok(both) => both,
                Err(why) => return failed(why),
            };
            let want = match expect.text().map(|t| session.expand(t)).transpose() {
                Ok(want) => want.unwrap_or_default(),
                Err(why) => return failed(why),
            };
            let shell = session.shell(&command, stdin.as_deref(), COMMAND_TRY).await;
            if !shell.ok() {
                return failed(shell.words());
            }
            let held = expect.holds(&want, &shell.stdout);
            Outcome::new(held, expected, format!("{:?}", quote(shell.stdout.trim())))
        }
        CheckKind::Fails {
            command,
            stdin,
            with,
        } => {
            let (command, stdin, with) = match expanded(session, command, stdin.as_deref())
                .and_then(|(c, s)| Ok((c, s, session.expand(with)?)))
            {
                Ok(all) => all,
                Err(why) => return failed(why),
            };
            let shell = session.shell(&command, stdin.as_deref(), COMMAND_TRY).await;
            let output = format!("{}{}", shell.stdout, shell.stderr);
            let held = !shell.ok() && shell.code.is_some() && output.contains(&with);
            Outcome::new(held, expected, shell.words())
        }
        CheckKind::Capture {
            var,
            command,
            stdin,
        } => {
            let (command, stdin) = match expanded(session, command, stdin.as_deref()) {
                Ok(both) => both,
                Err(why) => return failed(why),
            };
            let shell = session.shell(&command, stdin.as_deref(), COMMAND_TRY).await;
            let value = shell.stdout.trim().to_owned();
            if !shell.ok() || value.is_empty() {
                return failed(if shell.ok() {
                    "no output".to_owned()
                } else {
                    shell.words()
                });
            }
            session.set(var, &value);
            Outcome::new(true, expected, format!("${{{var}}} = {:?}", quote(&value)))
        }
        CheckKind::Http { url, expect } => {
            let (url, want) = match session.expand(url).and_then(|u| {
                Ok((
                    u,
                    expect
                        .text()
                        .map(|t| session.expand(t))
                        .transpose()?
                        .unwrap_or_default(),
                ))
            }) {
                Ok(both) => both,
                Err(why) => return failed(why),
            };
            match http_get(&url).await {
                Ok((status, body)) => {
                    let held = (200..300).contains(&status) && expect.holds(&want, &body);
                    Outcome::new(
                        held,
                        expected,
                        format!("{status}: {:?}", quote(body.trim())),
                    )
                }
                Err(why) => failed(why),
            }
        }
        CheckKind::Flow(patterns) | CheckKind::NoFlow(patterns) => {
            let patterns: Vec<HopPattern> = match patterns
                .iter()
                .map(|p| expand_pattern(session, p))
                .collect()
            {
                Ok(ps) => ps,
                Err(why) => return failed(why),
            };
            if let Err(why) = log.catch_up(session.client()).await {
                return failed(why);
            }
            let hops = log.since(since);
            let missed = if log.missed > 0 {
                format!(" ({} hops were lost before they were read)", log.missed)
            } else {
                String::new()
            };
            if matches!(check.kind, CheckKind::NoFlow(_)) {
                return match hops.iter().find(|h| patterns.iter().any(|p| p.matches(h))) {
                    Some(hop) => failed(format!("{}{missed}", hop_words(hop))),
                    None => Outcome::new(
                        true,
                        expected,
                        format!("none among {} hops{missed}", hops.len()),
                    ),
                };
            }
            match in_order(hops, &patterns) {
                Ok(matched) => Outcome {
                    hops: matched
                        .iter()
                        .map(|h| format!("{}: {}", hop_words(h), crate::flow::explain::why(h)))
                        .collect(),
                    ..Outcome::new(
                        true,
                        expected,
                        matched
                            .iter()
                            .map(|h| format!("#{}", h.seq))
                            .collect::<Vec<_>>()
                            .join(" "),
                    )
                },
                Err((count, matched)) => {
                    let after = matched.last().map_or(0, |h| h.seq);
                    let later: Vec<String> = hops
                        .iter()
                        .filter(|h| h.seq > after && h.kind != "Lease")
                        .take(QUOTED_HOPS)
                        .map(hop_words)
                        .collect();
                    let mut seen = format!(
                        "{count} of {} in order ({}); then no {} among {} hops",
                        patterns.len(),
                        matched
                            .iter()
                            .map(|h| hop_words(h))
                            .collect::<Vec<_>>()
                            .join(", "),
                        patterns[count],
                        hops.iter().filter(|h| h.seq > after).count()
                    );
                    if !later.is_empty() {
                        seen.push_str(&format!(" (the first: {})", later.join(", ")));
                    }
                    seen.push_str(&missed);
                    failed(seen)
                }
            }
        }
    }
}

/// Tries `check` once, as the dashboard's `c` does; one with `for:` that holds is tried again
/// until it has held that long (an absence is not seen in one look).
pub async fn check_once(
    check: &Check,
    session: &mut Session,
    log: &mut FlowLog,
    since: u64,
) -> Outcome {
    let once = Check {
        within: Duration::ZERO,
        ..check.clone()
    };
    check_until(&once, session, log, since, false).await.outcome
}

/// What came of a check tried until it held.
#[derive(Clone, Debug)]
pub struct Tried {
    /// The last outcome.
    pub outcome: Outcome,
    /// How long it took.
    pub took: Duration,
    /// How many times it was tried.
    pub tries: u32,
    /// How many gates were released meanwhile.
    pub released: u32,
}

/// Tries `check` every [`RETRY`] until it holds or its `within` passes; with `for:`, until it
/// has then kept holding that long. With `stepping`, each try that fails first lets the
/// oldest waiting gate through (as a learner pressing `n`).
pub async fn check_until(
    check: &Check,
    session: &mut Session,
    log: &mut FlowLog,
    since: u64,
    stepping: bool,
) -> Tried {
    let started = Instant::now();
    let deadline = started + check.within;
    let mut tries = 0;
    let mut released = 0;
    loop {
        tries += 1;
        let outcome = evaluate(check, session, log, since).await;
        if outcome.held {
            let Some(hold) = check.hold else {
                return Tried {
                    outcome,
                    took: started.elapsed(),
                    tries,
                    released,
                };
            };
            return keep_holding(check, session, log, since, hold, started, tries, released).await;
        }
        if Instant::now() + RETRY > deadline {
            let mut outcome = outcome;
            if tries > 1 {
                outcome.seen = format!("after {}: {}", seconds(check.within), outcome.seen);
            }
            return Tried {
                outcome,
                took: started.elapsed(),
                tries,
                released,
            };
        }
        if stepping && session.release_one().await {
            released += 1;
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// The `for:` of a check that held: tried again until `hold` has passed, failing at the first
/// try that does not hold.
#[allow(clippy::too_many_arguments)]
async fn keep_holding(
    check: &Check,
    session: &mut Session,
    log: &mut FlowLog,
    since: u64,
    hold: Duration,
    started: Instant,
    mut tries: u32,
    released: u32,
) -> Tried {
    let held_at = Instant::now();
    loop {
        tokio::time::sleep(RETRY).await;
        tries += 1;
        let mut outcome = evaluate(check, session, log, since).await;
        if !outcome.held {
            outcome.seen = format!(
                "held, then not after {}: {}",
                seconds(held_at.elapsed()),
                outcome.seen
            );
        } else if held_at.elapsed() < hold {
            continue;
        } else {
            outcome.seen = format!("held for {}: {}", seconds(hold), outcome.seen);
        }
        return Tried {
            outcome,
            took: started.elapsed(),
            tries,
            released,
        };
    }
}

/// `GET url` (plain `http://`) from the host, HTTP/1.1 with `Connection: close`: the status and
/// the body. Five seconds to connect, five to answer.
async fn http_get(url: &str) -> Result<(u16, String), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
    if parsed.scheme() != "http" {
        return Err(format!("{url}: only http:// is fetched"));
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| format!("{url}: no host"))?
        .to_owned();
    let port = parsed.port_or_known_default().unwrap_or(80);
    let mut path = parsed.path().to_owned();
    if let Some(query) = parsed.query() {
        path.push('?');
        path.push_str(query);
    }
    let limit = Duration::from_secs(5);
    let mut stream =
        tokio::time::timeout(limit, tokio::net::TcpStream::connect((host.as_str(), port)))
            .await
            .map_err(|_| format!("connect {host}:{port}: timed out"))?
            .map_err(|e| format!("connect {host}:{port}: {e}"))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: orrery-learn\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send to {host}:{port}: {e}"))?;
    let mut answer = Vec::new();
    tokio::time::timeout(limit, stream.take(1 << 20).read_to_end(&mut answer))
        .await
        .map_err(|_| format!("{url}: no answer within 5s"))?
        .map_err(|e| format!("read from {host}:{port}: {e}"))?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{url}: not an HTTP answer: {}", quote(head)))?;
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().replace(' ', "") == "transfer-encoding:chunked");
    Ok((
        status,
        if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        },
    ))
}

/// A chunked body's data.
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(seq: u64, from: &str, to: &str, verb: &str, kind: &str, name: &str) -> FlowEvent {
        let mut e = FlowEvent::new(from, to, verb).object(kind, "default", name);
        e.seq = seq;
        e
    }

    fn pattern(yaml: &str) -> HopPattern {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn hops_are_matched_in_order_with_others_between() {
        let hops = vec![
            hop(1, "kubectl", "apiserver", "POST", "Deployment", "web"),
            hop(2, "apiserver", "store", "CREATE", "Deployment", "web"),
            hop(3, "kubelet/node-1", "apiserver", "PUT", "Lease", "node-1"),
            hop(
                4,
                "controller/deployment",
                "apiserver",
                "POST",
                "ReplicaSet",
                "web-1",
            ),
            hop(5, "apiserver", "store", "CREATE", "ReplicaSet", "web-1"),
        ];
        let story = [
            pattern("{from: kubectl, verb: POST}"),
            pattern("{to: store, kind: Deployment}"),
            pattern("{from: controller/*, kind: ReplicaSet}"),
            pattern("{to: store, kind: ReplicaSet}"),
        ];
        let matched = in_order(&hops, &story).unwrap();
        assert_eq!(
            matched.iter().map(|h| h.seq).collect::<Vec<_>>(),
            [1, 2, 4, 5]
        );
        // Out of order: the ReplicaSet's store write before the Deployment's is not there.
        let backwards = [
            pattern("{to: store, kind: ReplicaSet}"),
            pattern("{to: store, kind: Deployment}"),
        ];
        let (count, matched) = in_order(&hops, &backwards).unwrap_err();
        assert_eq!((count, matched[0].seq), (1, 5));
        assert_eq!(
            hop_words(&hops[3]),
            "#4 controller/deployment -> apiserver POST ReplicaSet default/web-1"
        );
    }

    #[test]
    fn the_flow_log_keeps_the_hops_after_its_start() {
        let mut log = FlowLog::after(10);
        for seq in [11, 12, 15] {
            log.events.push(hop(seq, "a", "b", "GET", "Pod", "p"));
            log.last = seq;
        }
        assert_eq!(log.since(11).len(), 2);
        assert_eq!(log.since(0).len(), 3);
        log.forget_through(12);
        assert_eq!(log.since(0).len(), 1);
        assert_eq!(log.last(), 15);
    }

    #[test]
    fn chunked_bodies_are_read_whole() {
        assert_eq!(
            dechunk("5\r\nHello\r\n7\r\n, world\r\n0\r\n\r\n"),
            "Hello, world"
        );
        assert_eq!(quote("a\n  b\tc"), "a b c");
    }
}

#[cfg(test)]
mod kinds {
    //! Every check kind but the flow's (which needs a cluster: `tests/it/learn.rs`), tried
    //! against commands and a local HTTP server.

    use super::*;
    use crate::learn::lesson::Lesson;

    /// A session whose client reaches nothing (no check here asks the API).
    fn session(tmp: &Path) -> Session {
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        Session::new(client, Path::new("/tmp/lesson-state"), "lesson", tmp)
    }

    /// The checks of a one-step lesson whose `check:` is `checks`.
    fn checks(checks: &str) -> Vec<Check> {
        let text = format!("title: t\nclaim: c\nsteps:\n  - title: s\n    check:\n{checks}");
        Lesson::parse("01-t.yaml", &text)
            .unwrap()
            .steps
            .remove(0)
            .checks
    }

    #[tokio::test]
    async fn commands_are_checked_by_their_output_and_exit() {
        let tmp = tempfile::tempdir().unwrap();
        let mut session = session(tmp.path());
        let mut log = FlowLog::after(0);
        let all = checks(
            r#"      - capture: who
        run: printf ' web-1 \n'
      - run: echo "${who} at $ORRERY_NAME in $${KUBECONFIG}"
        expect: web-1 at lesson in /tmp/lesson-state/kubeconfig
      - run: echo hello there
        contains: lo th
      - run: echo pod/web-12
        matches: ^pod/${who}\d$
      - run: cat
        stdin: "fed ${who}"
        expect: fed web-1
      - run: echo nope >&2; exit 3
        fails-with: nope
      - run: echo 3
        expect: "4"
      - run: "false"
      - run: echo fine
        fails-with: fine
"#,
        );
        let mut outcomes = Vec::new();
        for check in &all {
            outcomes.push(evaluate(check, &mut session, &mut log, 0).await);
        }
        let held: Vec<bool> = outcomes.iter().map(|o| o.held).collect();
        assert_eq!(
            held,
            [true, true, true, true, true, true, false, false, false],
            "{outcomes:#?}"
        );
        assert_eq!(session.vars()["who"], "web-1");
        assert_eq!(outcomes[0].seen, "${who} = \"web-1\"");
        assert_eq!(
            outcomes[1].expected,
            "echo \"web-1 at $ORRERY_NAME in ${KUBECONFIG}\" = \"web-1 at lesson in /tmp/lesson-state/kubeconfig\""
        );
        assert_eq!(outcomes[5].seen, "exit 3: nope");
        assert_eq!(outcomes[6].seen, "\"3\"");
        assert_eq!(outcomes[7].seen, "exit 1");
        assert_eq!(outcomes[8].seen, "exit 0: fine");
    }

    #[tokio::test]
    async fn http_checks_get_from_the_host_and_for_keeps_trying() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let served = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let mut request = [0u8; 1024];
                let _ = stream.read(&mut request).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\nHello from hello")
                    .await;
            }
        });
        let tmp = tempfile::tempdir().unwrap();
        let mut session = session(tmp.path());
        let mut log = FlowLog::after(0);
        let all = checks(&format!(
            r#"      - http: http://127.0.0.1:{port}/
        contains: Hello from
        for: 500ms
      - http: http://127.0.0.1:{port}/
        expect: Goodbye
        within: 300ms
      - http: http://127.0.0.1:1/
        within: 200ms
"#
        ));
        let tried = check_until(&all[0], &mut session, &mut log, 0, false).await;
        assert!(tried.outcome.held, "{tried:?}");
        assert!(tried.tries >= 3, "kept trying for 500ms: {tried:?}");
        assert!(
            tried
                .outcome
                .seen
                .starts_with("held for 0.5s: 200: \"Hello from hello\"")
        );
        let tried = check_until(&all[1], &mut session, &mut log, 0, false).await;
        assert!(!tried.outcome.held);
        assert!(
            tried.outcome.seen.starts_with("after 0.3s: 200: "),
            "{tried:?}"
        );
        let tried = check_until(&all[2], &mut session, &mut log, 0, false).await;
        assert!(!tried.outcome.held);
        assert!(
            tried.outcome.seen.contains("connect 127.0.0.1:1"),
            "{tried:?}"
        );
        served.abort();
    }
}
