//! `orrery bench cluster`: what a whole cluster costs, measured from outside as a user would. It
//! starts `orrery up --headless` (this binary, on the simulated runtime, a temporary state
//! directory, a free port) as a child process, reads its resident memory once its nodes are
//! Ready and it has sat idle, then, with `--pods N`, creates a Deployment of N replicas through
//! the API, waits (bounded) until all N pods are Running and available, and reads its memory
//! again. Before the N pods, it counts the hops one Deployment of 3 replicas puts on the flow
//! from its create until all three are available (the hops that name the Deployment, its
//! ReplicaSet, its pods or their events), and how many of them are watch deliveries: the shared
//! informers deliver each change once to the controller manager. The child is stopped with
//! SIGTERM at the end, as `orrery down` does.

use std::fmt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Options of `orrery bench cluster`.
#[derive(Clone, Debug, clap::Args)]
pub struct ClusterBenchOptions {
    /// Virtual nodes [default: 3, or enough for --pods at 100 pods a node].
    #[arg(long)]
    pub nodes: Option<u32>,
    /// Pods to run after the idle reading (0: idle only).
    #[arg(long, default_value_t = 0)]
    pub pods: u32,
    /// How long the cluster sits idle before the first reading.
    #[arg(long, default_value = "10s", value_parser = crate::cli::parse_duration)]
    pub idle: Duration,
    /// Give up waiting for the pods after this long.
    #[arg(long, default_value = "600s", value_parser = crate::cli::parse_duration)]
    pub timeout: Duration,
    /// A flag for `orrery up` (repeat it for more: `--up-arg=--metrics-resolution=1h`), to
    /// measure a setting's cost.
    #[arg(long = "up-arg", allow_hyphen_values = true)]
    pub up_args: Vec<String>,
}

/// The figures.
#[derive(Clone, Debug, Default)]
pub struct ClusterReport {
    nodes: u32,
    pods: u32,
    startup: Duration,
    idle_rss_kib: u64,
    running: Option<Duration>,
    running_rss_kib: u64,
    /// Resident memory once the pods have run a while (two metrics rounds, 30 s later).
    settled_rss_kib: u64,
    peak_rss_kib: u64,
    /// Hops of one Deployment of 3 replicas: all, and watch deliveries.
    hops: Option<(usize, usize)>,
}

/// The goals: resident memory with 10,000 simulated pods, and the time until they are all
/// available (what it was before the shared informers: 1,364 MiB and 128 s).
const GOAL_RSS_10K_MIB: f64 = 400.0;
const GOAL_AVAILABLE_10K_S: f64 = 128.0;

impl fmt::Display for ClusterReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mib = |kib: u64| kib as f64 / 1024.0;
        writeln!(
            f,
            "orrery bench cluster: {} virtual nodes, simulated runtime",
            self.nodes
        )?;
        writeln!(
            f,
            "| row | measured | goal |\n|---|---|---|\n| start until every node is Ready | {:.2} s | |",
            self.startup.as_secs_f64()
        )?;
        writeln!(f, "| RSS, idle | {:.1} MiB | |", mib(self.idle_rss_kib))?;
        if let Some((all, watches)) = self.hops {
            writeln!(
                f,
                "| hops of one Deployment of 3 replicas, create until available | {all} ({watches} watch deliveries) | one watch delivery per change to the controller manager |"
            )?;
        }
        let ten_k = self.pods == 10_000;
        if self.pods > 0 {
            match self.running {
                Some(t) => writeln!(
                    f,
                    "| {} pods: create Deployment until all available | {:.1} s | {} |",
                    self.pods,
                    t.as_secs_f64(),
                    if ten_k {
                        format!("< {GOAL_AVAILABLE_10K_S} s")
                    } else {
                        String::new()
                    }
                )?,
                None => writeln!(f, "| {} pods | not all available in time | |", self.pods)?,
            }
            writeln!(
                f,
                "| RSS with {} pods running | {:.1} MiB | {} |",
                self.pods,
                mib(self.running_rss_kib),
                if ten_k {
                    format!("< {GOAL_RSS_10K_MIB} MiB")
                } else {
                    String::new()
                }
            )?;
            writeln!(
                f,
                "| RSS with {} pods, 30 s later (two metrics rounds) | {:.1} MiB | |",
                self.pods,
                mib(self.settled_rss_kib)
            )?;
        }
        writeln!(
            f,
            "| peak RSS (VmHWM) | {:.1} MiB | |",
            mib(self.peak_rss_kib)
        )
    }
}

/// `VmRSS` and `VmHWM` of a process, in KiB.
pub(super) fn memory(pid: u32) -> Result<(u64, u64), String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("cannot read /proc/{pid}/status: {e}"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    Ok((field("VmRSS:"), field("VmHWM:")))
}

/// The cluster under test; stopped when dropped.
pub(super) struct Up(pub(super) Child);

impl Drop for Up {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let _ = self.0.wait();
    }
}

pub(super) async fn client(state_dir: &Path) -> Result<kube::Client, String> {
    let kubeconfig = kube::config::Kubeconfig::read_from(state_dir.join("kubeconfig"))
        .map_err(|e| e.to_string())?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .map_err(|e| e.to_string())?;
    kube::Client::try_from(config).map_err(|e| e.to_string())
}

/// Starts `orrery up --headless` on the simulated runtime with `nodes` nodes (and `extra`
/// flags) in a new state directory, and waits until every node is Ready: the directory, the
/// cluster, a client, and how long that took.
pub(super) async fn start(
    nodes: u32,
    extra: &[&str],
) -> Result<(tempfile::TempDir, Up, kube::Client, Duration), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let started = Instant::now();
    let child = Command::new(exe)
        .arg("--state-dir")
        .arg(dir.path())
        .args(["up", "--headless", "--port", "0", "--no-kubeconfig-merge"])
        .args(["--ingress-port", "0", "--ingress-https-port", "0"])
        .args(["--runtime", "sim", "--nodes", &nodes.to_string()])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start orrery up: {e}"))?;
    let up = Up(child);
    let deadline = started + Duration::from_secs(60);
    while !crate::cluster::pid_file(dir.path()).exists() {
        if Instant::now() > deadline {
            return Err("orrery up did not start within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let client = client(dir.path()).await?;
    loop {
        let ready = super::ready_nodes(&client).await;
        if ready == nodes as usize {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("only {ready} of {nodes} nodes Ready after 60 s"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok((dir, up, client, started.elapsed()))
}

/// Runs the benchmark.
pub async fn run_cluster_bench(options: &ClusterBenchOptions) -> Result<ClusterReport, String> {
    let nodes = options
        .nodes
        .unwrap_or_else(|| 3.max(options.pods.div_ceil(100)));
    let extra: Vec<&str> = options.up_args.iter().map(String::as_str).collect();
    let (_dir, up, client, startup) = start(nodes, &extra).await?;
    let pid = up.0.id();
    let mut report = ClusterReport {
        nodes,
        pods: options.pods,
        startup,
        ..Default::default()
    };
    tokio::time::sleep(options.idle).await;
    (report.idle_rss_kib, report.peak_rss_kib) = memory(pid)?;
    report.hops = Some(deployment_hops(&client).await?);
    if options.pods > 0 {
        report.running = super::hello_deployment(
            &client,
            "bench",
            options.pods,
            options.timeout,
            Duration::from_millis(200),
        )
        .await?
        .1;
        tokio::time::sleep(Duration::from_secs(2)).await;
        (report.running_rss_kib, report.peak_rss_kib) = memory(pid)?;
        tokio::time::sleep(Duration::from_secs(30)).await;
        (report.settled_rss_kib, report.peak_rss_kib) = memory(pid)?;
    }
    drop(up);
    Ok(report)
}

/// The flow's events after `since` (all of them with `since` 0), as `/orrery/v1/flow` gives them.
async fn flow_after(client: &kube::Client, since: u64) -> Result<Vec<serde_json::Value>, String> {
    let request = http::Request::get(format!("/orrery/v1/flow?follow=false&since={since}"))
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    let text = client
        .request_text(request)
        .await
        .map_err(|e| format!("cannot read the flow: {e}"))?;
    Ok(text
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect())
}

/// Creates the Deployment `hops` of 3 replicas, waits until they are available (and a second
/// more, for the last status writes), and counts its hops: every hop naming `hops` or an object
/// named after it in `default`, and how many of those are `WATCH` deliveries.
async fn deployment_hops(client: &kube::Client) -> Result<(usize, usize), String> {
    let seq = |e: &serde_json::Value| e.get("seq").and_then(serde_json::Value::as_u64);
    let since = flow_after(client, 0)
        .await?
        .iter()
        .filter_map(seq)
        .max()
        .unwrap_or(0);
    let (_, available) = super::hello_deployment(
        client,
        "hops",
        3,
        Duration::from_secs(60),
        Duration::from_millis(50),
    )
    .await?;
    if available.is_none() {
        return Err("the Deployment hops was not available within 60 s".into());
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let field = |e: &serde_json::Value, f: &str| {
        e.get(f)
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let ours: Vec<serde_json::Value> = flow_after(client, since)
        .await?
        .into_iter()
        .filter(|e| field(e, "namespace") == "default" && field(e, "name").starts_with("hops"))
        .collect();
    let watches = ours
        .iter()
        .filter(|e| field(e, "verb").starts_with("WATCH"))
        .count();
    Ok((ours.len(), watches))
}
