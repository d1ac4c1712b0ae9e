//! `orrery bench scheduler`: the real [`Scheduler`] against an in-process API server on a
//! temporary embedded store. Creates N ready nodes (or, with `--kubelets`, runs N virtual
//! kubelets on the simulated runtime, which register their own nodes), then P pods as fast as the
//! API server takes them, and watches pods: pods scheduled per second (first create to last bind
//! seen by the watch), per-pod create-to-bound latency, and with kubelets the time until every
//! pod is Running. Bounded by `--timeout`.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, PostParams};
use kube::runtime::watcher;

use super::percentile;
use crate::kubelet::{Kubelet, NodeConfig};
use crate::runtime::ContainerRuntime;
use crate::runtime::sim::{SimOptions, SimRuntime};
use crate::scheduler::run::Scheduler;

/// Options of `orrery bench scheduler`.
#[derive(Clone, Debug, clap::Args)]
pub struct SchedulerBenchOptions {
    /// Keep the cluster's data under this directory [default: the system's temp directory].
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Nodes.
    #[arg(long, default_value_t = 1000)]
    pub nodes: usize,
    /// Pods.
    #[arg(long, default_value_t = 10_000)]
    pub pods: usize,
    /// Concurrent pod creators.
    #[arg(long, default_value_t = 64)]
    pub creators: usize,
    /// Run a virtual kubelet per node (simulated runtime) and wait for every pod to run.
    #[arg(long)]
    pub kubelets: bool,
    /// Create every pod before the scheduler starts, so the decision rate is the scheduler's
    /// alone rather than the API server's create rate.
    #[arg(long)]
    pub backlog: bool,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
}

/// The figures.
#[derive(Clone, Debug, Default)]
pub struct SchedulerReport {
    nodes: usize,
    pods: usize,
    kubelets: bool,
    backlog: bool,
    created_in: Duration,
    decided_in: Duration,
    bound: usize,
    bound_in: Duration,
    bound_p50: Duration,
    bound_p99: Duration,
    running: usize,
    running_in: Duration,
    timed_out: bool,
}

impl fmt::Display for SchedulerReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rate = |n: usize, d: Duration| n as f64 / d.as_secs_f64().max(1e-9);
        writeln!(
            f,
            "orrery bench scheduler: {} nodes{}, {} pods",
            self.nodes,
            if self.kubelets {
                " (virtual kubelets, simulated runtime)"
            } else {
                ""
            },
            self.pods
        )?;
        if self.backlog {
            writeln!(f, "  (pods created before the scheduler started)")?;
        }
        writeln!(
            f,
            "  created           {:>8} pods in {:>8.2} s  {:>9.0} pods/s",
            self.pods,
            self.created_in.as_secs_f64(),
            rate(self.pods, self.created_in)
        )?;
        writeln!(
            f,
            "  decided           {:>8} pods in {:>8.2} s  {:>9.0} pods/s  (scheduling cycles, first to last decision)",
            self.bound,
            self.decided_in.as_secs_f64(),
            rate(self.bound, self.decided_in)
        )?;
        writeln!(
            f,
            "  scheduled (bound) {:>8} pods in {:>8.2} s  {:>9.0} pods/s  ({} to last bind)",
            self.bound,
            self.bound_in.as_secs_f64(),
            rate(self.bound, self.bound_in),
            if self.backlog {
                "scheduler start"
            } else {
                "first create"
            }
        )?;
        writeln!(
            f,
            "  create -> bound   p50 {:>8.1} ms   p99 {:>8.1} ms",
            self.bound_p50.as_secs_f64() * 1e3,
            self.bound_p99.as_secs_f64() * 1e3
        )?;
        if self.kubelets {
            writeln!(
                f,
                "  running           {:>8} pods in {:>8.2} s  (first create to last Running)",
                self.running,
                self.running_in.as_secs_f64()
            )?;
        }
        if self.timed_out {
            writeln!(f, "  (timed out before every pod got there)")?;
        }
        Ok(())
    }
}

fn node(name: &str) -> Node {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}},
        "status": {
            "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "bench node"}],
        },
    }))
    .expect("a valid Node")
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "c", "image": "orrery/hello:1", "command": ["serve"], "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]},
    }))
    .expect("a valid Pod")
}

#[derive(Default)]
struct Seen {
    bound: HashMap<String, Instant>,
    running: HashMap<String, Instant>,
}

/// Runs `orrery bench scheduler`.
pub async fn run_scheduler_bench(
    options: &SchedulerBenchOptions,
) -> Result<SchedulerReport, String> {
    let deadline = Instant::now() + Duration::from_secs(options.timeout);
    let (dir, api, flow) = super::in_process_api(options.dir.as_deref()).await?;
    let client = api.client("bench");
    let mut tasks = Vec::new();

    // Nodes: registered by kubelets, or created directly.
    let nodes: Api<Node> = Api::all(client.clone());
    if options.kubelets {
        let pki =
            crate::pki::Pki::load_or_create(&dir.path().join("pki")).map_err(|e| e.to_string())?;
        for index in 1..=options.nodes {
            let config = NodeConfig {
                name: format!("node-{index}"),
                index: index as u16,
                cluster_cidr: Default::default(),
                address: crate::kubelet::sim_address(index as u16),
                cpu: "4".into(),
                memory: "8Gi".into(),
                max_pods: 110,
                lease_duration_seconds: 40,
                root_dir: dir.path().join("kubelet").join(format!("node-{index}")),
                pod_pids_limit: Some(crate::kubelet::DEFAULT_POD_PIDS_LIMIT),
                cluster_dns: vec![crate::kubelet::DEFAULT_CLUSTER_DNS],
                cluster_domain: crate::dns::DEFAULT_DOMAIN.into(),
                control_plane: None,
            };
            let runtime: Arc<dyn ContainerRuntime> =
                Arc::new(SimRuntime::new(SimOptions::default()));
            let kubelet_client = api.client(&format!("kubelet/{}", config.name));
            let tls = pki
                .kubelet_serving(
                    &config.name,
                    config.address.into(),
                    &config.root_dir.join("pki"),
                )
                .map_err(|e| e.to_string())?;
            tasks.push(tokio::spawn(
                Kubelet::new(config, kubelet_client, runtime, flow.clone(), tls).run(),
            ));
        }
        loop {
            let listed = nodes
                .list(&Default::default())
                .await
                .map_err(|e| e.to_string())?;
            if listed.items.len() >= options.nodes {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "only {} of {} kubelets registered their nodes in time",
                    listed.items.len(),
                    options.nodes
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    } else {
        let names: Vec<String> = (1..=options.nodes).map(|i| format!("node-{i}")).collect();
        futures::stream::iter(names)
            .map(|name| {
                let nodes = nodes.clone();
                async move { nodes.create(&PostParams::default(), &node(&name)).await }
            })
            .buffer_unordered(32)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
    }

    let seen = Arc::new(Mutex::new(Seen::default()));
    let watch = {
        let (seen, pods) = (
            seen.clone(),
            Api::<Pod>::namespaced(client.clone(), "default"),
        );
        tokio::spawn(async move {
            let mut stream = watcher(pods, watcher::Config::default()).boxed();
            while let Some(event) = stream.next().await {
                let (Ok(watcher::Event::Apply(pod)) | Ok(watcher::Event::InitApply(pod))) = event
                else {
                    continue;
                };
                let now = Instant::now();
                let name = pod.metadata.name.clone().unwrap_or_default();
                let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
                if pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_ref())
                    .is_some()
                {
                    seen.bound.entry(name.clone()).or_insert(now);
                }
                if pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") {
                    seen.running.entry(name).or_insert(now);
                }
            }
        })
    };
    tasks.push(watch);
    // The first and last scheduling decisions, from the flow (a lagging receiver may miss some
    // in between, never the ends).
    let decided: Arc<Mutex<Option<(Instant, Instant)>>> = Arc::default();
    let (_, mut live) = flow.subscribe(u64::MAX);
    tasks.push(tokio::spawn({
        let decided = decided.clone();
        async move {
            loop {
                match live.recv().await {
                    Ok(e) if e.verb == "DECIDE" => {
                        let now = Instant::now();
                        let mut d = decided.lock().unwrap_or_else(|p| p.into_inner());
                        let first = d.map_or(now, |(first, _)| first);
                        *d = Some((first, now));
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => return,
                }
            }
        }
    }));
    let scheduler = || tokio::spawn(Scheduler::new(api.client("scheduler"), flow.clone()).run());
    if !options.backlog {
        tasks.push(scheduler());
        // Let the scheduler's watches list before the pods come.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let pods_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut started = Instant::now();
    let created: Vec<(String, Instant)> = futures::stream::iter(0..options.pods)
        .map(|i| {
            let pods_api = pods_api.clone();
            async move {
                let name = format!("pod-{i:05}");
                let t = Instant::now();
                pods_api
                    .create(&PostParams::default(), &pod(&name))
                    .await
                    .map(|_| (name, t))
            }
        })
        .buffer_unordered(options.creators.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let created_in = started.elapsed();
    if options.backlog {
        started = Instant::now();
        tasks.push(scheduler());
    }

    let mut report = SchedulerReport {
        nodes: options.nodes,
        pods: options.pods,
        kubelets: options.kubelets,
        backlog: options.backlog,
        created_in,
        ..SchedulerReport::default()
    };
    loop {
        let (bound, running) = {
            let seen = seen.lock().unwrap_or_else(|p| p.into_inner());
            (seen.bound.len(), seen.running.len())
        };
        let done = bound >= options.pods && (!options.kubelets || running >= options.pods);
        if done || Instant::now() > deadline {
            report.timed_out = !done;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = seen.lock().unwrap_or_else(|p| p.into_inner());
    let mut latencies: Vec<Duration> = created
        .iter()
        .filter_map(|(name, t)| {
            seen.bound
                .get(name)
                .map(|b| b.saturating_duration_since(*t))
        })
        .collect();
    latencies.sort();
    report.bound = latencies.len();
    report.bound_in = seen.bound.values().max().map_or(Duration::ZERO, |last| {
        last.saturating_duration_since(started)
    });
    report.bound_p50 = percentile(&latencies, 0.5);
    report.bound_p99 = percentile(&latencies, 0.99);
    if let Some((first, last)) = *decided.lock().unwrap_or_else(|p| p.into_inner()) {
        report.decided_in = last.saturating_duration_since(first);
    }
    report.running = seen.running.len();
    report.running_in = seen.running.values().max().map_or(Duration::ZERO, |last| {
        last.saturating_duration_since(started)
    });
    for task in tasks {
        task.abort();
    }
    Ok(report)
}
