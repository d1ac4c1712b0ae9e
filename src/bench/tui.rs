//! `orrery bench tui`: whether the dashboard keeps up, in four figures printed next to their
//! goals. (a) Frame time: a dashboard model holding 10,000 pods on 10 nodes and a full flow
//! ring is fed 1,000 flow events per second of simulated time, and each frame's update plus
//! draw (`ratatui`'s `TestBackend`, at 80x24 and 200x60) is timed. (b) Input: the time from a
//! key press to the drawn frame that shows it, under the same load. (c) The flow bus: a real
//! [`Flow`] with subscribers that never read or read ten events a second (one of them through
//! the `/orrery/v1/flow` stream of an in-process API server), while a producer emits 1,000
//! events a second: how long `Flow::emit` takes and how many events the slow readers lost.
//! (d) Idle CPU: `orrery tui` attached inside `tmux` to a simulated `orrery up`, idle and while
//! a Deployment's pods churn, from `/proc/<pid>/stat`. Every loop is bounded in count and time,
//! and the cluster and the tmux server are stopped when the benchmark ends, on error too.

use std::fmt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::cluster::{Up, client};
use super::percentile;
use crate::flow::{Flow, FlowEvent};
use crate::tui::model::{DeploymentRow, Host, KEPT_EVENTS, Model, Msg, NodeRow, PodRow};

/// Options of `orrery bench tui`.
#[derive(Clone, Debug, clap::Args)]
pub struct TuiBenchOptions {
    /// Pods in the model whose frames are timed.
    #[arg(long, default_value_t = 10_000)]
    pub pods: u32,
    /// Nodes they run on.
    #[arg(long, default_value_t = 10)]
    pub nodes: u32,
    /// Frames timed at each terminal size.
    #[arg(long, default_value_t = 300)]
    pub frames: u32,
    /// Frames per second of simulated time (the flow's events are shared out among them).
    #[arg(long, default_value_t = 30)]
    pub fps: u32,
    /// Flow events per second, for the frames and for the bus.
    #[arg(long, default_value_t = 1000)]
    pub rate: u32,
    /// How long the producer emits on the bus.
    #[arg(long, default_value = "6s", value_parser = crate::cli::parse_duration)]
    pub emit: Duration,
    /// Pods of the Deployment that churns while the attached dashboard's CPU is read (0: idle
    /// only). Nodes are added at 100 pods a node.
    #[arg(long, default_value_t = 2000)]
    pub cluster_pods: u32,
    /// How long the dashboard's CPU is sampled, each time.
    #[arg(long, default_value = "10s", value_parser = crate::cli::parse_duration)]
    pub sample: Duration,
    /// Skip (d), the attached dashboard's CPU (it needs `tmux`).
    #[arg(long)]
    pub no_cluster: bool,
    /// Give up waiting for the cluster or its pods after this long.
    #[arg(long, default_value = "300s", value_parser = crate::cli::parse_duration)]
    pub timeout: Duration,
}

/// p50, p99 and max of some samples.
#[derive(Clone, Copy, Debug, Default)]
struct Spread {
    p50: Duration,
    p99: Duration,
    max: Duration,
    n: usize,
}

impl Spread {
    fn of(mut samples: Vec<Duration>) -> Spread {
        samples.sort();
        Spread {
            p50: percentile(&samples, 0.5),
            p99: percentile(&samples, 0.99),
            max: samples.last().copied().unwrap_or_default(),
            n: samples.len(),
        }
    }
}

impl fmt::Display for Spread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        write!(
            f,
            "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} samples)",
            ms(self.p50),
            ms(self.p99),
            ms(self.max),
            self.n
        )
    }
}

/// One terminal size's frames.
#[derive(Clone, Debug, Default)]
struct Frames {
    width: u16,
    height: u16,
    frame: Spread,
    key: Spread,
    /// Key frames whose effect was on screen.
    shown: usize,
}

/// The bus's figures.
#[derive(Clone, Debug, Default)]
struct Bus {
    emitted: u64,
    seconds: f64,
    emit: Spread,
    lost_never: u64,
    lost_slow: u64,
    read_slow: u64,
    lost_http: Option<Result<(u64, u64), String>>,
}

/// The attached dashboard's CPU.
#[derive(Clone, Debug, Default)]
struct Cpu {
    nodes: u32,
    idle: f64,
    pods: u32,
    churn: Option<f64>,
    running: Option<Duration>,
    idle_pods: Option<f64>,
}

/// The figures.
#[derive(Clone, Debug, Default)]
pub struct TuiReport {
    pods: u32,
    nodes: u32,
    events: usize,
    rate: u32,
    fps: u32,
    frames: Vec<Frames>,
    bus: Bus,
    cpu: Option<Result<Cpu, String>>,
}

impl fmt::Display for TuiReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "orrery bench tui: a model of {} pods on {} nodes, {} flow events kept, fed {} events/s at {} frames/s",
            self.pods, self.nodes, self.events, self.rate, self.fps
        )?;
        for frames in &self.frames {
            writeln!(
                f,
                "(a) frame (update + draw), {}x{}: {}   goal: p99 < 10 ms",
                frames.width, frames.height, frames.frame
            )?;
            writeln!(
                f,
                "(b) key press to the frame that shows it, {}x{}: {} (shown in {} of {})   goal: p99 < 10 ms",
                frames.width, frames.height, frames.key, frames.shown, frames.key.n
            )?;
        }
        let bus = &self.bus;
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        writeln!(
            f,
            "(c) Flow::emit with slow readers, {} events in {:.1} s: p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs   goal: never waits for a reader, p99 < 1 ms",
            bus.emitted,
            bus.seconds,
            us(bus.emit.p50),
            us(bus.emit.p99),
            us(bus.emit.max)
        )?;
        writeln!(
            f,
            "(c) lost by a reader that never reads: {}; by one reading 10/s: {} (read {})   goal: the slow reader loses, and is told",
            bus.lost_never, bus.lost_slow, bus.read_slow
        )?;
        match &bus.lost_http {
            Some(Ok((lost, read))) => writeln!(
                f,
                "(c) GET /orrery/v1/flow read 10 lines/s, then caught up: {{\"lost\":N}} lines add up to {lost} (read {read} lines)   goal: told how many"
            )?,
            Some(Err(e)) => writeln!(f, "(c) GET /orrery/v1/flow: not measured: {e}")?,
            None => {}
        }
        match &self.cpu {
            Some(Ok(cpu)) => {
                writeln!(
                    f,
                    "(d) orrery tui attached, idle cluster of {} nodes: {:.2}% of a core   goal: < 5%",
                    cpu.nodes, cpu.idle
                )?;
                if let Some(churn) = cpu.churn {
                    writeln!(
                        f,
                        "(d) orrery tui while a Deployment of {} pods starts: {:.2}% of a core (all available after {})",
                        cpu.pods,
                        churn,
                        cpu.running
                            .map(|d| format!("{:.1} s", d.as_secs_f64()))
                            .unwrap_or_else(|| "-, not in time".into())
                    )?;
                }
                if let Some(idle) = cpu.idle_pods {
                    writeln!(
                        f,
                        "(d) orrery tui attached, {} pods running, idle: {:.2}% of a core   goal: < 5%",
                        cpu.pods, idle
                    )?;
                }
            }
            Some(Err(e)) => writeln!(f, "(d) orrery tui CPU: not measured: {e}")?,
            None => writeln!(f, "(d) orrery tui CPU: skipped (--no-cluster)")?,
        }
        Ok(())
    }
}

/// Hands a message to the model, as the dashboard's shell does.
fn feed(model: &mut Model, msg: Msg) {
    // The effects are the shell's to carry out; a key pressed here asks for none that matter.
    let _effects = model.update(msg);
}

/// The hops one pod's story takes, as the components emit them (from, to, verb, kind).
const STORY: &[(&str, &str, &str, &str)] = &[
    ("kubectl", "apiserver", "POST", "Deployment"),
    ("apiserver", "store", "CREATE", "Deployment"),
    ("controller/deployment", "apiserver", "POST", "ReplicaSet"),
    ("apiserver", "store", "CREATE", "ReplicaSet"),
    ("controller/replicaset", "apiserver", "POST", "Pod"),
    ("apiserver", "store", "CREATE", "Pod"),
    ("scheduler", "apiserver", "BIND", "Pod"),
    ("apiserver", "store", "UPDATE", "Pod"),
    ("kubelet/node-1", "runtime/node-1", "RUN SANDBOX", "Pod"),
    ("kubelet/node-1", "runtime/node-1", "START CONTAINER", "Pod"),
    ("kubelet/node-1", "apiserver", "STATUS", "Pod"),
    ("apiserver", "store", "UPDATE", "Pod"),
];

/// The `seq`th synthetic flow event, at `micros` after the start of simulated time.
fn event(seq: u64, micros: u64, nodes: u32) -> FlowEvent {
    let story = seq / STORY.len() as u64;
    let (from, to, verb, kind) = STORY[(seq % STORY.len() as u64) as usize];
    let node = format!("node-{}", story % u64::from(nodes.max(1)) + 1);
    let name = match kind {
        "Deployment" => format!("app-{story}"),
        "ReplicaSet" => format!("app-{story}-7d4b9"),
        _ => format!("app-{story}-7d4b9-{:05x}", story * 7919 % 0xfffff),
    };
    let mut e = FlowEvent::new(
        from.replace("node-1", &node),
        to.replace("node-1", &node),
        verb,
    )
    .object(kind, &format!("ns-{}", story % 5), &name)
    .detail(format!("{verb} {kind} {name}"));
    e.seq = seq;
    e.time = (jiff::Timestamp::UNIX_EPOCH + Duration::from_micros(1_700_000_000_000_000 + micros))
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    e.root = format!("Deployment/app-{story}");
    if to == "store" {
        e.revision = Some(seq + 100);
    }
    e
}

/// A model of `pods` pods on `nodes` nodes with a full flow ring; returns it and the next seq.
fn loaded_model(pods: u32, nodes: u32) -> (Model, u64) {
    let mut model = Model::new(Host::Attached, "bench");
    for n in 1..=nodes {
        feed(
            &mut model,
            Msg::Node(NodeRow {
                name: format!("node-{n}"),
                ready: "True".into(),
                unschedulable: false,
                taints: Vec::new(),
                runtime: "orrery-sim://1".into(),
            }),
        );
    }
    let deployments = pods.div_ceil(100);
    for d in 0..deployments {
        feed(
            &mut model,
            Msg::Deployment(DeploymentRow {
                namespace: format!("ns-{}", d % 5),
                name: format!("app-{d}"),
                desired: 100,
                ready: 100,
                updated: 100,
                available: 100,
            }),
        );
    }
    for p in 0..pods {
        let d = p / 100;
        let (phase, status, ready) = match p % 20 {
            0 => ("Pending", "Pending", 0),
            1 => ("Running", "CrashLoopBackOff", 0),
            _ => ("Running", "Running", 1),
        };
        feed(
            &mut model,
            Msg::Pod(PodRow {
                namespace: format!("ns-{}", d % 5),
                name: format!("app-{d}-7d4b9-{p:05x}"),
                uid: format!("uid-{p}"),
                node: (phase != "Pending").then(|| format!("node-{}", p % nodes.max(1) + 1)),
                phase: phase.into(),
                status: status.into(),
                ready,
                containers: 1,
                restarts: i64::from(status == "CrashLoopBackOff") * 3,
                last_restart: None,
                owner: format!("Deployment/app-{d}"),
                created: "2023-11-14T22:13:20Z".into(),
            }),
        );
    }
    let mut seq = 1;
    for _ in 0..KEPT_EVENTS {
        feed(&mut model, Msg::Flow(event(seq, seq * 1000, nodes)));
        seq += 1;
    }
    (model, seq)
}

/// The keys pressed in (b): each opens something that the next one closes again.
fn key(n: usize) -> KeyEvent {
    if n.is_multiple_of(2) {
        KeyEvent::new(KeyCode::Char('?'), KeyModifiers::NONE)
    } else {
        KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE)
    }
}

/// Whether a frame drawn after key `n` shows that key's effect (the help is open after `?`
/// and closed after `esc`).
fn shows(n: usize, screen: &str) -> bool {
    // The help view's title (the key bar's `? help` hint is always there).
    let help = screen.contains("help (esc back)");
    help == n.is_multiple_of(2)
}

/// The text of a drawn frame.
fn screen(terminal: &Terminal<TestBackend>) -> String {
    let buffer = terminal.backend().buffer();
    let mut text = String::with_capacity(buffer.content.len() + buffer.area.height as usize);
    for (i, cell) in buffer.content.iter().enumerate() {
        if i > 0 && i % buffer.area.width as usize == 0 {
            text.push('\n');
        }
        text.push_str(cell.symbol());
    }
    text
}

/// (a) and (b) at one terminal size.
fn frames(options: &TuiBenchOptions, width: u16, height: u16) -> Result<Frames, String> {
    let (mut model, mut seq) = loaded_model(options.pods, options.nodes);
    feed(&mut model, Msg::Resize(width, height));
    let mut terminal = Terminal::new(TestBackend::new(width, height)).map_err(|e| e.to_string())?;
    terminal
        .draw(|f| crate::tui::view::draw(f, &model))
        .map_err(|e| e.to_string())?;
    let fps = u64::from(options.fps.max(1));
    let frame_micros = 1_000_000 / fps;
    let mut frame_times = Vec::new();
    let mut key_times = Vec::new();
    let mut shown = 0;
    let started = Instant::now();
    // Simulated time: event k of a second falls at k/rate seconds; frame f takes every event
    // up to its own end.
    let base = seq * 1000;
    let mut sent = 0u64;
    for f in 0..u64::from(options.frames) {
        if started.elapsed() > Duration::from_secs(120) {
            break;
        }
        let frame_end = (f + 1) * frame_micros;
        let due = frame_end * u64::from(options.rate) / 1_000_000;
        let pressed = f % 10 == 5;
        let key_n = key_times.len();
        let t0 = Instant::now();
        if pressed {
            feed(&mut model, Msg::Key(key(key_n)));
        }
        while sent < due {
            let micros = base + sent * 1_000_000 / u64::from(options.rate.max(1));
            feed(&mut model, Msg::Flow(event(seq, micros, options.nodes)));
            seq += 1;
            sent += 1;
        }
        let now = jiff::Timestamp::UNIX_EPOCH
            + Duration::from_micros(1_700_000_000_000_000 + base + frame_end);
        feed(&mut model, Msg::Tick(now));
        terminal
            .draw(|frame| crate::tui::view::draw(frame, &model))
            .map_err(|e| e.to_string())?;
        let took = t0.elapsed();
        frame_times.push(took);
        if pressed {
            key_times.push(took);
            if shows(key_n, &screen(&terminal)) {
                shown += 1;
            }
        }
    }
    Ok(Frames {
        width,
        height,
        frame: Spread::of(frame_times),
        key: Spread::of(key_times),
        shown,
    })
}

/// (c): the bus under a producer of `rate` events a second, with slow readers.
async fn bus(options: &TuiBenchOptions) -> Result<Bus, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let store: Arc<dyn crate::store::Store> = Arc::new(
        crate::store::embedded::EmbeddedStore::open(&dir.path().join("store.redb"))
            .map_err(|e| e.to_string())?,
    );
    let api = crate::apiserver::ApiServer::new(store, Flow::new());
    api.bootstrap().await.map_err(|e| e.to_string())?;
    let flow = api.flow().clone();
    let since = flow.emit(FlowEvent::new("bench", "bench", "START"));
    // A reader that never reads.
    let (_, mut never) = flow.subscribe(since);
    // A reader that reads ten events a second.
    let (_, mut slow) = flow.subscribe(since);
    let done = Arc::new(AtomicBool::new(false));
    let lost_slow = Arc::new(AtomicU64::new(0));
    let read_slow = Arc::new(AtomicU64::new(0));
    let slow_task = tokio::spawn({
        let (done, lost, read) = (done.clone(), lost_slow.clone(), read_slow.clone());
        async move {
            use tokio::sync::broadcast::error::TryRecvError;
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            while !done.load(Ordering::Relaxed) {
                tick.tick().await;
                match slow.try_recv() {
                    Ok(_) => {
                        read.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(TryRecvError::Lagged(n)) => {
                        lost.fetch_add(n, Ordering::Relaxed);
                    }
                    Err(_) => {}
                }
            }
        }
    });
    // The same through `GET /orrery/v1/flow`, ten lines a second.
    let http_task = tokio::spawn({
        let client = api.client("bench");
        let done = done.clone();
        async move {
            use futures::AsyncBufReadExt;
            let request = http::Request::get(format!("/orrery/v1/flow?since={since}"))
                .body(Vec::new())
                .map_err(|e| e.to_string())?;
            let stream = client
                .request_stream(request)
                .await
                .map_err(|e| e.to_string())?;
            let mut lines = stream.lines();
            let (mut lost, mut read) = (0u64, 0u64);
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            while !done.load(Ordering::Relaxed) {
                tick.tick().await;
                let line = match tokio::time::timeout(
                    Duration::from_millis(50),
                    futures::StreamExt::next(&mut lines),
                )
                .await
                {
                    Ok(Some(line)) => line.map_err(|e| e.to_string())?,
                    Ok(None) => return Err("the flow stream ended".into()),
                    Err(_) => continue,
                };
                read += 1;
                lost += lost_in(&line);
            }
            // Then it catches up at full speed, and meets the line that says what it lost.
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                match tokio::time::timeout(
                    Duration::from_millis(500),
                    futures::StreamExt::next(&mut lines),
                )
                .await
                {
                    Ok(Some(line)) => {
                        read += 1;
                        lost += lost_in(&line.map_err(|e| e.to_string())?);
                    }
                    Ok(None) => return Err("the flow stream ended".into()),
                    Err(_) => break,
                }
            }
            Ok::<_, String>((lost, read))
        }
    });
    // The producer: `rate` events a second, in batches every 10 ms.
    let per_batch = (options.rate / 100).max(1);
    let batches = (options.emit.as_millis() / 10).max(1) as u64;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut emits = Vec::with_capacity((batches * u64::from(per_batch)) as usize);
    let started = Instant::now();
    let mut n = 0u64;
    for _ in 0..batches {
        tick.tick().await;
        for _ in 0..per_batch {
            let e = event(n, 0, 3);
            let t0 = Instant::now();
            flow.emit(e);
            emits.push(t0.elapsed());
            n += 1;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    // Let the slow readers see that they lagged before they stop.
    tokio::time::sleep(Duration::from_millis(500)).await;
    done.store(true, Ordering::Relaxed);
    let _ = slow_task.await;
    let lost_http = match tokio::time::timeout(Duration::from_secs(15), http_task).await {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the flow stream reader did not stop in 15 s".into()),
    };
    let lost_never = match never.try_recv() {
        Err(tokio::sync::broadcast::error::TryRecvError::Lagged(n)) => n,
        _ => 0,
    };
    Ok(Bus {
        emitted: n,
        seconds,
        emit: Spread::of(emits),
        lost_never,
        lost_slow: lost_slow.load(Ordering::Relaxed),
        read_slow: read_slow.load(Ordering::Relaxed),
        lost_http: Some(lost_http),
    })
}

/// N of a `{"lost":N}` line of the flow stream, else 0.
fn lost_in(line: &str) -> u64 {
    serde_json::from_str::<serde_json::Value>(line)
        .ok()
        .and_then(|v| v.get("lost")?.as_u64())
        .unwrap_or(0)
}

/// A tmux server of its own, killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn command(&self) -> Command {
        let mut command = Command::new("tmux");
        command.args(["-L", &self.socket]);
        command.stdin(Stdio::null()).stderr(Stdio::piped());
        command
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.command().arg("kill-server").output();
    }
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> Result<f64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("cannot read /proc/{pid}/stat: {e}"))?;
    // The fields after the command name (which may hold spaces) start at state, field 3.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or("unreadable /proc/<pid>/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<u64, String> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| "unreadable /proc/<pid>/stat".to_owned())
    };
    // utime is field 14 and stime 15, so 11 and 12 counted from state.
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    Ok((ticks(11)? + ticks(12)?) as f64 / hz)
}

/// Percent of one core that `pid` used over `window`.
async fn cpu_percent(pid: u32, window: Duration) -> Result<f64, String> {
    let before = cpu_seconds(pid)?;
    let started = Instant::now();
    tokio::time::sleep(window).await;
    let used = cpu_seconds(pid)? - before;
    Ok(used / started.elapsed().as_secs_f64() * 100.0)
}

/// Waits until `count` nodes are Ready.
async fn nodes_ready(client: &kube::Client, count: u32, deadline: Instant) -> Result<(), String> {
    loop {
        let ready = super::ready_nodes(client).await;
        if ready >= count as usize {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("only {ready} of {count} nodes Ready in time"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// (d): `orrery tui` attached to a simulated cluster, inside tmux.
async fn cpu(options: &TuiBenchOptions) -> Result<Cpu, String> {
    let nodes = 3.max(options.cluster_pods.div_ceil(100));
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let child = Command::new(&exe)
        .arg("--state-dir")
        .arg(dir.path())
        .args(["up", "--headless", "--port", "0", "--no-kubeconfig-merge"])
        .args(["--ingress-port", "0", "--ingress-https-port", "0"])
        .args(["--runtime", "sim", "--nodes", &nodes.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start orrery up: {e}"))?;
    let _up = Up(child);
    let deadline = Instant::now() + options.timeout;
    while !crate::cluster::pid_file(dir.path()).exists() {
        if Instant::now() > deadline {
            return Err("orrery up did not start in time".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let client = client(dir.path()).await?;
    nodes_ready(&client, nodes, deadline).await?;
    let tmux = Tmux {
        socket: format!("orrery-bench-{}", std::process::id()),
    };
    let tui = format!(
        "exec {} --state-dir {} tui",
        shell_quote(&exe),
        shell_quote(dir.path())
    );
    let out = tmux
        .command()
        .args(["new-session", "-d", "-x", "120", "-y", "40", &tui])
        .output()
        .map_err(|e| format!("cannot run tmux: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "tmux new-session: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let out = tmux
        .command()
        .args(["list-panes", "-F", "#{pane_pid}"])
        .output()
        .map_err(|e| format!("cannot run tmux: {e}"))?;
    let pid: u32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| "tmux did not name the pane's process".to_owned())?;
    // The dashboard is up once it draws the cluster's nodes; then it settles.
    let drawn = Instant::now() + Duration::from_secs(30);
    loop {
        let out = tmux
            .command()
            .args(["capture-pane", "-p", "-J"])
            .output()
            .map_err(|e| format!("cannot run tmux: {e}"))?;
        let screen = String::from_utf8_lossy(&out.stdout);
        if screen.contains("node-1") {
            break;
        }
        if Instant::now() > drawn {
            return Err(format!(
                "the dashboard did not draw node-1 within 30 s; the pane shows:\n{screen}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = cpu_percent(pid, options.sample).await?;
    let mut report = Cpu {
        nodes,
        idle,
        pods: options.cluster_pods,
        ..Default::default()
    };
    if options.cluster_pods > 0 {
        let before = cpu_seconds(pid)?;
        let (created, running) = super::hello_deployment(
            &client,
            "bench",
            options.cluster_pods,
            options.timeout,
            Duration::from_millis(500),
        )
        .await?;
        report.running = running;
        report.churn = Some((cpu_seconds(pid)? - before) / created.elapsed().as_secs_f64() * 100.0);
        if report.running.is_some() {
            tokio::time::sleep(Duration::from_secs(3)).await;
            report.idle_pods = Some(cpu_percent(pid, options.sample).await?);
        }
    }
    drop(tmux);
    Ok(report)
}

/// `text` in single quotes for `sh`.
fn shell_quote(path: impl AsRef<Path>) -> String {
    format!(
        "'{}'",
        path.as_ref().to_string_lossy().replace('\'', r"'\''")
    )
}

/// Runs the benchmark.
pub async fn run_tui_bench(options: &TuiBenchOptions) -> Result<TuiReport, String> {
    let mut report = TuiReport {
        pods: options.pods,
        nodes: options.nodes,
        events: KEPT_EVENTS,
        rate: options.rate,
        fps: options.fps,
        ..Default::default()
    };
    for (width, height) in [(80, 24), (200, 60)] {
        let options = options.clone();
        let frames = tokio::task::spawn_blocking(move || frames(&options, width, height))
            .await
            .map_err(|e| e.to_string())??;
        report.frames.push(frames);
    }
    report.bus = bus(options).await?;
    if !options.no_cluster {
        report.cpu = Some(cpu(options).await);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_events_tell_whole_stories_in_order() {
        let story: Vec<FlowEvent> = (0..STORY.len() as u64)
            .map(|seq| event(seq, seq, 10))
            .collect();
        assert!(story.iter().all(|e| e.root == "Deployment/app-0"));
        assert_eq!(
            (story[0].from.as_str(), story[0].verb.as_str()),
            ("kubectl", "POST")
        );
        assert_eq!(story[8].to, "runtime/node-1");
        assert_eq!(story[1].revision, Some(101));
        assert_eq!(story[0].time, "2023-11-14T22:13:20.000000Z");
        assert_eq!(event(STORY.len() as u64, 0, 10).to, "apiserver");
        assert_eq!(event(STORY.len() as u64 + 8, 0, 10).to, "runtime/node-2");
    }

    #[test]
    fn the_flow_streams_lost_lines_are_counted() {
        assert_eq!(lost_in(r#"{"lost":42}"#), 42);
        assert_eq!(lost_in(r#"{"seq":1,"from":"kubectl"}"#), 0);
        assert_eq!(lost_in("not json"), 0);
    }

    #[test]
    fn cpu_time_is_read_from_proc() {
        // Busy until /proc shows 20 ms more CPU time, for at most 5 s (the machine is shared).
        let before = cpu_seconds(std::process::id()).unwrap();
        let started = Instant::now();
        let mut x = 0u64;
        let mut after = before;
        while after < before + 0.02 && started.elapsed() < Duration::from_secs(5) {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
            after = cpu_seconds(std::process::id()).unwrap();
        }
        assert!(after >= before + 0.02, "{before} -> {after}");
        assert!(cpu_seconds(u32::MAX).is_err());
    }
}
