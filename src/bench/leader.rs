//! `orrery bench leader`: how long a leader's end leaves the cluster without one. For each set
//! of timings it starts `orrery up --headless --schedulers 2 --controller-managers 2` (this
//! binary, on the simulated runtime, a temporary state directory, a free port) as a child
//! process, then runs rounds. Each round ends the current holder of each Lease twice: first with
//! `orrery component stop` (a clean stop: kube-scheduler gives its Lease up, as upstream's
//! `ReleaseOnCancel`; kube-controller-manager does not), then with `orrery component kill` (the
//! process dying: nothing is given back). Each time it creates a bare pod and a ReplicaSet of
//! one at once, and times, from the stop, until the standby holds each Lease
//! (`kube-system/kube-scheduler`, `kube-system/kube-controller-manager`) and until it acts: the
//! pod is bound (the new scheduler), the ReplicaSet's pod exists (the new controller manager).
//! The stopped replicas are started again (standbys now) before the next handover. The figures
//! are printed next to the goal, the lease duration. Every wait is bounded.

use std::fmt;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

use crate::leaderelection::{self, Timings};

/// Options of `orrery bench leader`.
#[derive(Clone, Debug, clap::Args)]
pub struct LeaderBenchOptions {
    /// Handovers to measure for each set of timings.
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// A set of timings, `<lease duration>/<renew deadline>/<retry period>` in Go durations
    /// (repeat for more) [default: upstream's 15s/10s/2s, and 4s/3s/1s].
    #[arg(long = "timings", value_parser = parse_timings)]
    pub timings: Vec<Timings>,
}

/// `15s/10s/2s`, checked as `orrery up` checks them.
fn parse_timings(text: &str) -> Result<Timings, String> {
    let parts: Vec<&str> = text.split('/').collect();
    let [lease, renew, retry] = parts[..] else {
        return Err(format!(
            "{text:?}: want <lease duration>/<renew deadline>/<retry period>, such as 15s/10s/2s"
        ));
    };
    let duration = |s: &str| {
        let nanos = crate::apimachinery::gotypes::parse_go_duration(s)?;
        u64::try_from(nanos)
            .map(Duration::from_nanos)
            .map_err(|_| format!("{s}: must be greater than zero"))
    };
    let timings = Timings {
        lease_duration: duration(lease)?,
        renew_deadline: duration(renew)?,
        retry_period: duration(retry)?,
    };
    timings.validate().map_err(|e| e.to_string())?;
    Ok(timings)
}

/// One Lease's handover in one round, from the stop.
#[derive(Clone, Copy, Debug)]
struct Handover {
    /// Until the standby held the Lease.
    held: Duration,
    /// Until it acted.
    acted: Duration,
}

/// How a round ends the leaders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    /// `orrery component stop`.
    Stop,
    /// `orrery component kill`.
    Kill,
}

impl Ending {
    const ALL: [Ending; 2] = [Ending::Stop, Ending::Kill];

    /// The control endpoint's action, and the command's word.
    fn action(self) -> &'static str {
        match self {
            Ending::Stop => "stop",
            Ending::Kill => "kill",
        }
    }
}

/// The handovers after one kind of ending.
#[derive(Clone, Debug, Default)]
struct Handovers {
    scheduler: Vec<Handover>,
    controller_manager: Vec<Handover>,
}

/// The rounds of one set of timings.
#[derive(Clone, Debug)]
struct Set {
    timings: Timings,
    /// After `stop`, after `kill`.
    ended: [Handovers; 2],
    /// Why the rounds stopped early, if they did.
    failed: Option<String>,
}

/// The figures.
#[derive(Clone, Debug, Default)]
pub struct LeaderReport {
    sets: Vec<Set>,
}

impl LeaderReport {
    /// Whether every set measured every round it was asked for.
    pub fn complete(&self) -> bool {
        self.sets.iter().all(|s| s.failed.is_none())
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// `median / max (each round's)`.
fn summary(samples: &[Duration]) -> String {
    if samples.is_empty() {
        return "-".into();
    }
    let mut sorted = samples.to_vec();
    sorted.sort();
    let each: Vec<String> = samples
        .iter()
        .map(|d| format!("{:.1}", d.as_secs_f64()))
        .collect();
    format!(
        "{} / {} ({})",
        seconds(super::percentile(&sorted, 0.5)),
        seconds(sorted[sorted.len() - 1]),
        each.join(", ")
    )
}

impl fmt::Display for LeaderReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::apimachinery::gotypes::go_duration;
        writeln!(
            f,
            "orrery bench leader: 2 schedulers, 2 controller managers (simulated runtime, 1 node); \
             each round ends the holder of each Lease with `orrery component stop` (kube-scheduler \
             gives its Lease up, kube-controller-manager does not), then with `orrery component kill` \
             (nothing given back), and times from the stop"
        )?;
        writeln!(
            f,
            "| timings (lease/renew/retry) | leader | Lease | standby holds the Lease: median / max (rounds) | standby acts: median / max (rounds) | goal: within the lease duration |"
        )?;
        writeln!(f, "|---|---|---|---|---|---|")?;
        for set in &self.sets {
            let t = set.timings;
            let name = format!(
                "{}/{}/{}",
                go_duration(t.lease_duration),
                go_duration(t.renew_deadline),
                go_duration(t.retry_period)
            );
            for (ending, handovers) in Ending::ALL.iter().zip(&set.ended) {
                let how = match ending {
                    Ending::Stop => "stopped",
                    Ending::Kill => "killed",
                };
                for (lease, acts, rounds) in [
                    (
                        leaderelection::SCHEDULER_LEASE,
                        "a new pod bound",
                        &handovers.scheduler,
                    ),
                    (
                        leaderelection::CONTROLLER_MANAGER_LEASE,
                        "a new ReplicaSet's pod created",
                        &handovers.controller_manager,
                    ),
                ] {
                    let held: Vec<Duration> = rounds.iter().map(|r| r.held).collect();
                    let acted: Vec<Duration> = rounds.iter().map(|r| r.acted).collect();
                    let within = held.iter().filter(|d| **d <= t.lease_duration).count();
                    writeln!(
                        f,
                        "| {name} | {how} | {lease} | {} | {} ({acts}) | {} s: {within} of {} rounds |",
                        summary(&held),
                        summary(&acted),
                        t.lease_duration.as_secs_f64(),
                        held.len()
                    )?;
                }
            }
            if let Some(why) = &set.failed {
                writeln!(f, "| {name} | stopped early: {why} | | | | |")?;
            }
        }
        Ok(())
    }
}

/// Runs the benchmark.
pub async fn run_leader_bench(options: &LeaderBenchOptions) -> Result<LeaderReport, String> {
    let sets = if options.timings.is_empty() {
        vec![
            Timings::default(),
            Timings {
                lease_duration: Duration::from_secs(4),
                renew_deadline: Duration::from_secs(3),
                retry_period: Duration::from_secs(1),
            },
        ]
    } else {
        options.timings.clone()
    };
    let mut report = LeaderReport::default();
    for timings in sets {
        report.sets.push(measure(timings, options.rounds).await?);
    }
    Ok(report)
}

/// The replica holding `lease` now (empty: none).
async fn holder(client: &kube::Client, lease: &str) -> String {
    let leases: Api<Lease> = Api::namespaced(client.clone(), leaderelection::NAMESPACE);
    let identity = leases
        .get_opt(lease)
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec?.holder_identity)
        .unwrap_or_default();
    leaderelection::replica_of(&identity).to_owned()
}

/// Starts a cluster with `timings` and measures `rounds` handovers.
async fn measure(timings: Timings, rounds: u32) -> Result<Set, String> {
    use crate::apimachinery::gotypes::go_duration;
    let flags = [
        "--schedulers".to_owned(),
        "2".to_owned(),
        "--controller-managers".to_owned(),
        "2".to_owned(),
        format!(
            "--leader-elect-lease-duration={}",
            go_duration(timings.lease_duration)
        ),
        format!(
            "--leader-elect-renew-deadline={}",
            go_duration(timings.renew_deadline)
        ),
        format!(
            "--leader-elect-retry-period={}",
            go_duration(timings.retry_period)
        ),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let (dir, up, client, _) = super::cluster::start(1, &flags).await?;
    let mut set = Set {
        timings,
        ended: Default::default(),
        failed: None,
    };
    // Long enough for the worst handover (a lease duration after the standby saw the last
    // renewal, two jittered retries) with room to spare.
    let limit = timings.lease_duration * 3 + timings.retry_period * 10 + Duration::from_secs(30);
    'rounds: for round in 1..=rounds {
        for (i, ending) in Ending::ALL.into_iter().enumerate() {
            let probe = format!("{}-{round}", ending.action());
            let handovers = &mut set.ended[i];
            if let Err(why) = one_round(dir.path(), &client, &probe, ending, limit, handovers).await
            {
                set.failed = Some(why);
                break 'rounds;
            }
        }
    }
    drop(up);
    Ok(set)
}

/// Waits until both Leases have a holder and every replica runs.
async fn settled(client: &kube::Client, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        let scheduler = holder(client, leaderelection::SCHEDULER_LEASE).await;
        let manager = holder(client, leaderelection::CONTROLLER_MANAGER_LEASE).await;
        let request = http::Request::get("/orrery/v1/components")
            .body(Vec::new())
            .map_err(|e| e.to_string())?;
        let running = client
            .request::<serde_json::Value>(request)
            .await
            .ok()
            .and_then(|v| v["components"].as_array().cloned())
            .is_some_and(|all| {
                all.iter()
                    .filter(|c| c["lease"].is_string())
                    .all(|c| c["running"] == true)
            });
        if !scheduler.is_empty() && !manager.is_empty() && running {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the Leases were not held by running replicas within {limit:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Ends both leaders as `ending` says and times the handovers; `round` names what it creates.
async fn one_round(
    dir: &std::path::Path,
    client: &kube::Client,
    round: &str,
    ending: Ending,
    limit: Duration,
    set: &mut Handovers,
) -> Result<(), String> {
    settled(client, limit).await?;
    let scheduler = holder(client, leaderelection::SCHEDULER_LEASE).await;
    let manager = holder(client, leaderelection::CONTROLLER_MANAGER_LEASE).await;
    let control = |path: String| async move {
        crate::cluster::control(dir, &path)
            .await
            .map_err(|e| format!("{path}: {e}"))
    };
    let action = ending.action();
    let stopped = Instant::now();
    control(format!("components/{scheduler}/{action}")).await?;
    control(format!("components/{manager}/{action}")).await?;
    // What only a leader does: bind a new pod, make a new ReplicaSet's pod.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let probe = format!("probe-{round}");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": probe},
        "spec": {"containers": [{"name": "app", "image": "orrery/hello"}]},
    }))
    .map_err(|e| e.to_string())?;
    pods.create(&PostParams::default(), &pod)
        .await
        .map_err(|e| format!("cannot create pod {probe}: {e}"))?;
    let app = format!("rs-{round}");
    let replica_set: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": app},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": app}},
            "template": {
                "metadata": {"labels": {"app": app}},
                "spec": {"containers": [{"name": "app", "image": "orrery/hello"}]},
            },
        },
    }))
    .map_err(|e| e.to_string())?;
    Api::<ReplicaSet>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &replica_set)
        .await
        .map_err(|e| format!("cannot create ReplicaSet {app}: {e}"))?;
    let (mut scheduler_held, mut scheduler_acted) = (None, None);
    let (mut manager_held, mut manager_acted) = (None, None);
    let deadline = stopped + limit;
    while scheduler_held.is_none()
        || scheduler_acted.is_none()
        || manager_held.is_none()
        || manager_acted.is_none()
    {
        if Instant::now() > deadline {
            return Err(format!("round {round}: no handover within {limit:?}"));
        }
        let now = stopped.elapsed();
        if scheduler_held.is_none() {
            let holder = holder(client, leaderelection::SCHEDULER_LEASE).await;
            if !holder.is_empty() && holder != scheduler {
                scheduler_held = Some(now);
            }
        }
        if manager_held.is_none() {
            let holder = holder(client, leaderelection::CONTROLLER_MANAGER_LEASE).await;
            if !holder.is_empty() && holder != manager {
                manager_held = Some(now);
            }
        }
        if scheduler_acted.is_none()
            && let Ok(pod) = pods.get(&probe).await
            && pod.spec.and_then(|s| s.node_name).is_some()
        {
            scheduler_acted = Some(now);
        }
        if manager_acted.is_none() {
            let selected = ListParams::default().labels(&format!("app={app}"));
            if pods
                .list(&selected)
                .await
                .is_ok_and(|l| !l.items.is_empty())
            {
                manager_acted = Some(now);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if let (Some(held), Some(acted)) = (scheduler_held, scheduler_acted) {
        set.scheduler.push(Handover { held, acted });
    }
    if let (Some(held), Some(acted)) = (manager_held, manager_acted) {
        set.controller_manager.push(Handover { held, acted });
    }
    // The old leaders come back, as standbys now.
    control(format!("components/{scheduler}/start")).await?;
    control(format!("components/{manager}/start")).await?;
    Ok(())
}
