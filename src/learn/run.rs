//! The headless runner, `orrery learn run NAME [--check]`: starts the lesson's cluster as a
//! child `orrery up --headless` (this binary) in a temporary state directory of its own, with a
//! name of its own and, for real containers, the pod network the caller gives
//! (`--cluster-cidr`), so that runs side by side never meet; then performs each step as a
//! learner would (its actions in order, then its checks, each retried until it holds or its
//! `within` passes), printing every action and check with ✓ or ✗, what was expected and what
//! was seen, and how long it took, and each step's `explain`; then stops the cluster. A step
//! in step mode has its gates let through one at a time, as a learner pressing `n`, while its
//! actions run and until its checks hold; then the cluster is back in run mode.
//!
//! A child process rather than a cluster in this one: the lesson's commands (`kubectl`, `orrery
//! component stop ...`) reach it exactly as they reach any cluster, a real-container cluster
//! keeps its runtime helper and kernel state out of this process, and stopping it is `orrery
//! down`'s SIGTERM.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use super::check::{self, FlowLog, Session, seconds};
use super::lesson::{Lesson, Runtime, Step};

/// How long an action's command may run.
const ACTION_LIMIT: Duration = Duration::from_secs(120);

/// How long a lesson's cluster may take to start (real containers pull nothing: the built-in
/// images are made from this binary).
const START_LIMIT: Duration = Duration::from_secs(120);

/// How long the cluster may take to stop before it is killed.
const STOP_LIMIT: Duration = Duration::from_secs(30);

/// What went wrong running a lesson (as opposed to a check that did not hold).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The lesson needs real containers, which need root.
    #[error("lesson {0} runs real containers, which need root: run it with sudo")]
    NeedsRoot(String),
    /// The temporary state directory could not be made.
    #[error("cannot make a state directory for the lesson's cluster: {0}")]
    StateDir(std::io::Error),
    /// The cluster did not start.
    #[error("the lesson's cluster did not start: {why}\n{log}")]
    Start {
        /// Why.
        why: String,
        /// The end of its log.
        log: String,
    },
    /// Writing what happened failed.
    #[error("cannot write the lesson's report: {0}")]
    Output(#[from] std::io::Error),
}

/// How the runner runs.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// The pod network for a real-container cluster (`--cluster-cidr`); `orrery up`'s default
    /// when `None`.
    pub cluster_cidr: Option<String>,
    /// Print only the verdict (`orrery bench lessons`).
    pub quiet: bool,
}

/// What came of one lesson.
#[derive(Clone, Debug)]
pub struct LessonReport {
    /// The lesson's name.
    pub name: String,
    /// Its runtime.
    pub runtime: Runtime,
    /// How long the whole run took, cluster start and stop included.
    pub took: Duration,
    /// How long the cluster took to be ready.
    pub startup: Duration,
    /// The steps whose checks all held.
    pub passed: usize,
    /// Its steps.
    pub steps: usize,
    /// What failed: `step 2 "Scale it", check 3: <expected>: <seen>`.
    pub failures: Vec<String>,
}

impl LessonReport {
    /// Whether every step held.
    pub fn passed(&self) -> bool {
        self.failures.is_empty() && self.passed == self.steps
    }
}

/// The lesson's cluster, a child `orrery up`; stopped when dropped.
struct LessonCluster {
    child: tokio::process::Child,
    dir: tempfile::TempDir,
    name: String,
}

/// A cluster name no other run of this machine uses: `l<pid>-<n>` (short: a real cluster's
/// bridge is `orr-<name>`, cut to 15 bytes).
fn unique_name() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    format!(
        "l{}-{}",
        std::process::id() % 100_000,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The last lines of a file, for a failure's report.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

impl LessonCluster {
    /// The `orrery up` flags for `lesson`'s cluster (after `--state-dir` and `--name`).
    fn flags(lesson: &Lesson, options: &RunOptions) -> Vec<String> {
        let mut flags: Vec<String> = [
            "up",
            "--headless",
            "--port",
            "0",
            "--no-kubeconfig-merge",
            "--ingress-port",
            "0",
            "--ingress-https-port",
            "0",
            "--runtime",
            match lesson.cluster.runtime {
                Runtime::Sim => "sim",
                Runtime::Real => "libcontainer",
            },
            "--nodes",
        ]
        .map(str::to_owned)
        .to_vec();
        flags.push(lesson.cluster.nodes.to_string());
        if let (Runtime::Real, Some(cidr)) = (lesson.cluster.runtime, &options.cluster_cidr) {
            flags.extend(["--cluster-cidr".to_owned(), cidr.clone()]);
        }
        flags.extend(lesson.cluster.args.iter().cloned());
        flags
    }

    async fn start(
        lesson: &Lesson,
        options: &RunOptions,
    ) -> Result<(LessonCluster, kube::Client), RunError> {
        if lesson.cluster.runtime == Runtime::Real && !nix::unistd::geteuid().is_root() {
            return Err(RunError::NeedsRoot(lesson.name.clone()));
        }
        let dir = tempfile::Builder::new()
            .prefix("orrery-lesson-")
            .tempdir()
            .map_err(RunError::StateDir)?;
        let name = unique_name();
        let log_path = dir.path().join("orrery-up.log");
        let log = std::fs::File::create(&log_path).map_err(RunError::StateDir)?;
        let start_error = |why: String| RunError::Start {
            why,
            log: tail(&log_path),
        };
        let exe = std::env::current_exe().map_err(|e| start_error(e.to_string()))?;
        let mut command = tokio::process::Command::new(exe);
        command
            .arg("--state-dir")
            .arg(dir.path().join("cluster"))
            .args(["--name", &name]);
        if let Some(store) = &lesson.cluster.store {
            command.args(["--store", store]);
        }
        command
            .args(Self::flags(lesson, options))
            .env_remove("KUBECONFIG")
            .env_remove("ORRERY_STORE")
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().map_err(RunError::StateDir)?)
            .stderr(log)
            .kill_on_drop(true);
        let child = command
            .spawn()
            .map_err(|e| start_error(format!("cannot run orrery up: {e}")))?;
        let mut cluster = LessonCluster { child, dir, name };
        let client = cluster
            .ready(lesson.cluster.nodes)
            .await
            .map_err(start_error)?;
        Ok((cluster, client))
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("cluster")
    }

    /// Waits until the API answers, every node is Ready and `default` has its service account
    /// (pods need it); the cluster's client.
    async fn ready(&mut self, nodes: u16) -> Result<kube::Client, String> {
        let deadline = Instant::now() + START_LIMIT;
        let pid_file = crate::cluster::pid_file(&self.state_dir());
        while !pid_file.exists() {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("orrery up exited ({status})"));
            }
            if Instant::now() > deadline {
                return Err(format!("not up within {}", seconds(START_LIMIT)));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let client = client(&self.state_dir()).await?;
        let accounts: kube::Api<k8s_openapi::api::core::v1::ServiceAccount> =
            kube::Api::namespaced(client.clone(), "default");
        loop {
            let ready = crate::bench::ready_nodes(&client).await;
            let account = accounts.get_opt("default").await.ok().flatten().is_some();
            if ready == usize::from(nodes) && account {
                return Ok(client);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("orrery up exited ({status})"));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{ready} of {nodes} nodes Ready after {}{}",
                    seconds(START_LIMIT),
                    if account {
                        ""
                    } else {
                        ", and no default service account"
                    }
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the cluster as `orrery down` does (SIGTERM), killing it if it has not stopped in
    /// [`STOP_LIMIT`].
    async fn stop(mut self) {
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        if tokio::time::timeout(STOP_LIMIT, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// A client for the cluster in `state_dir`, from its admin kubeconfig.
pub async fn client(state_dir: &Path) -> Result<kube::Client, String> {
    let path = state_dir.join("kubeconfig");
    let kubeconfig = kube::config::Kubeconfig::read_from(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .map_err(|e| format!("{}: {e}", path.display()))?;
    kube::Client::try_from(config).map_err(|e| e.to_string())
}

/// Writes the report as it goes, unless quiet.
struct Printer {
    quiet: bool,
}

impl Printer {
    fn line(&self, text: impl AsRef<str>) -> Result<(), RunError> {
        if !self.quiet {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", text.as_ref())?;
            out.flush()?;
        }
        Ok(())
    }

    /// `text` indented, each line.
    fn block(&self, indent: &str, text: &str) -> Result<(), RunError> {
        for line in text.trim_end().lines() {
            self.line(format!("{indent}{line}").trim_end())?;
        }
        Ok(())
    }
}

fn mark(held: bool) -> &'static str {
    if held { "✓" } else { "✗" }
}

/// Runs `lesson` headless on a cluster of its own and reports what held.
pub async fn run(lesson: &Lesson, options: &RunOptions) -> Result<LessonReport, RunError> {
    let out = Printer {
        quiet: options.quiet,
    };
    let started = Instant::now();
    out.line(format!("lesson {}: {}", lesson.name, lesson.title))?;
    out.block("  claim: ", &lesson.claim.replace('\n', " "))?;
    let (cluster, client) = LessonCluster::start(lesson, options).await?;
    let startup = started.elapsed();
    out.line(format!(
        "  cluster {}: {} runtime, {}, up in {} (state dir {})",
        cluster.name,
        lesson.cluster.runtime.word(),
        lesson.cluster.nodes_words(),
        seconds(startup),
        cluster.state_dir().display()
    ))?;
    let tmp = cluster.dir.path().join("tmp");
    std::fs::create_dir_all(&tmp).map_err(RunError::StateDir)?;
    let mut session = Session::new(client, &cluster.state_dir(), &cluster.name, &tmp);
    let mut log = FlowLog::after(0);
    let mut report = LessonReport {
        name: lesson.name.clone(),
        runtime: lesson.cluster.runtime,
        took: Duration::ZERO,
        startup,
        passed: 0,
        steps: lesson.steps.len(),
        failures: Vec::new(),
    };
    for (i, step) in lesson.steps.iter().enumerate() {
        let failures = run_step(&out, lesson, i, step, &mut session, &mut log).await?;
        if !failures.is_empty() {
            report.failures = failures;
            if i + 1 < lesson.steps.len() {
                out.line(format!(
                    "  (steps {}..{} not run: step {} did not hold)",
                    i + 2,
                    lesson.steps.len(),
                    i + 1
                ))?;
            }
            break;
        }
        report.passed += 1;
    }
    let stopping = Instant::now();
    cluster.stop().await;
    report.took = started.elapsed();
    let verdict = if report.passed() {
        format!(
            "lesson {}: passed, {} steps in {} (cluster start {}, stop {})",
            lesson.name,
            report.steps,
            seconds(report.took),
            seconds(startup),
            seconds(stopping.elapsed())
        )
    } else {
        format!(
            "lesson {}: FAILED after {}: {}",
            lesson.name,
            seconds(report.took),
            report.failures.join("; ")
        )
    };
    out.line(verdict)?;
    Ok(report)
}

/// One step: the cluster put in step mode if the step asks, its actions, its checks, step
/// mode undone, the explanation. The failures, in words.
async fn run_step(
    out: &Printer,
    lesson: &Lesson,
    index: usize,
    step: &Step,
    session: &mut Session,
    log: &mut FlowLog,
) -> Result<Vec<String>, RunError> {
    let started = Instant::now();
    let number = index + 1;
    out.line(format!(
        "step {number}/{}: {}",
        lesson.steps.len(),
        step.title
    ))?;
    out.block(
        "  | ",
        &session
            .expand(&step.say)
            .unwrap_or_else(|_| step.say.clone()),
    )?;
    let stepping = step.steps();
    let mut failures = Vec::new();
    let failure = |what: String| format!("step {number} {:?}, {what}", step.title);
    if step.watch.step {
        let focus = step.watch.focus.clone();
        if let Err(why) = session
            .stepper(json!({"mode": "step", "focus": focus}))
            .await
        {
            failures.push(failure(format!("step mode: {why}")));
        }
    }
    if let Err(why) = log.catch_up(session.client()).await {
        failures.push(failure(why));
    }
    let since = log.last();
    // The actions, in order; in step mode, gates are let through meanwhile (a kubectl apply
    // waits at its write's gate).
    let mut released = 0u32;
    if failures.is_empty() {
        let actions = async {
            let mut done = Vec::new();
            for action in &step.actions {
                let began = Instant::now();
                let outcome = check::perform(action, session, ACTION_LIMIT).await;
                done.push((outcome, began.elapsed()));
                if !done.last().is_some_and(|(o, _)| o.held) {
                    break;
                }
            }
            done
        };
        // Bounded by the actions' own limits: they end first.
        let limit = ACTION_LIMIT * (step.actions.len() as u32 + 1);
        let releasing = async {
            while started.elapsed() < limit {
                if stepping && session.release_one().await {
                    released += 1;
                }
                tokio::time::sleep(check::RETRY).await;
            }
        };
        let done = tokio::select! {
            biased;
            done = actions => done,
            () = releasing => Vec::new(),
        };
        for (i, (outcome, took)) in done.iter().enumerate() {
            out.line(format!(
                "  {} do: {}  ({})",
                mark(outcome.held),
                outcome.expected,
                seconds(*took)
            ))?;
            if !outcome.held {
                out.line(format!("      seen: {}", outcome.seen))?;
                failures.push(failure(format!(
                    "action {}: {}: {}",
                    i + 1,
                    outcome.expected,
                    outcome.seen
                )));
            }
        }
    }
    if failures.is_empty() {
        for (i, check) in step.checks.iter().enumerate() {
            let tried = check::check_until(check, session, log, since, stepping).await;
            released += tried.released;
            let outcome = &tried.outcome;
            out.line(format!(
                "  {} {}  ({}{})",
                mark(outcome.held),
                outcome.expected,
                seconds(tried.took),
                if tried.tries > 1 {
                    format!(", {} tries", tried.tries)
                } else {
                    String::new()
                }
            ))?;
            out.line(format!("      seen: {}", outcome.seen))?;
            // A flow check's hops, each with why it happens, as the dashboard's detail says it.
            for hop in &outcome.hops {
                out.line(format!("        {hop}"))?;
            }
            if !outcome.held {
                failures.push(failure(format!(
                    "check {}: {}: {}",
                    i + 1,
                    outcome.expected,
                    outcome.seen
                )));
                break;
            }
        }
    }
    if stepping {
        if let Err(why) = session.stepper(json!({"mode": "run", "focus": null})).await {
            failures.push(failure(format!("run mode again: {why}")));
        }
        out.line(format!(
            "  (step mode: {released} gates let through one at a time, then run mode)"
        ))?;
    }
    log.forget_through(log.last());
    if failures.is_empty() {
        let explain = session
            .expand(&step.explain)
            .unwrap_or_else(|_| step.explain.clone());
        if !explain.trim().is_empty() {
            out.line("  explain:")?;
            out.block("    ", &explain)?;
        }
        out.line(format!(
            "  step {number} held in {}",
            seconds(started.elapsed())
        ))?;
    }
    Ok(failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cluster_flags_come_from_the_lesson() {
        let lesson = Lesson::parse(
            "09-real.yaml",
            "title: t\nclaim: c\ncluster: {runtime: real, nodes: 3, args: [--node-cpu, \"2\"]}\nsteps:\n  - title: s\n    check: [{run: \"true\"}]\n",
        )
        .unwrap();
        let options = RunOptions {
            cluster_cidr: Some("10.250.0.0/16".into()),
            quiet: true,
        };
        let flags = LessonCluster::flags(&lesson, &options).join(" ");
        assert!(
            flags.starts_with("up --headless --port 0 --no-kubeconfig-merge"),
            "{flags}"
        );
        assert!(
            flags.contains(
                "--runtime libcontainer --nodes 3 --cluster-cidr 10.250.0.0/16 --node-cpu 2"
            ),
            "{flags}"
        );
        let first = unique_name();
        assert_ne!(first, unique_name());
        assert!(
            first.len() <= 11,
            "{first}: a bridge name has 15 bytes, orr- and this"
        );
    }
}
