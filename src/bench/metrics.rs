//! `orrery bench metrics`: what the metrics pipeline costs and how fast autoscaling answers a
//! load change, measured from outside on `orrery up --runtime sim` as a child process. With
//! `--nodes` nodes (100) and `--pods` pods (10,000, the built-in `hello`) running, it reads the
//! process's CPU time (`/proc/<pid>/stat`) and resident memory over `--windows` metrics
//! resolutions with the metrics server running, then stops the metrics server (`orrery
//! component stop metrics-server`, which drops what it kept) and reads them again over as
//! long: the differences are what scraping every kubelet and keeping the points cost. It also
//! times one `GET /apis/metrics.k8s.io/v1beta1/pods` of every pod, as `kubectl top pods -A`
//! sends it. Then, on a separate Deployment of one `burn 20m` pod (request 100m) with an HPA
//! at 50% CPU, it changes the load to `burn 400m` and times the change until the HPA has
//! scaled the Deployment: what a learner waits, dominated by the resolution and the HPA's sync
//! period (both at their defaults unless given). With a busy cluster in the background (10,000
//! simulated pods keep their kubelets syncing), the pipeline's share at 15 s is within the
//! readings' noise; `--resolution 1s` makes every round fifteen times as frequent, so the
//! difference, and the CPU time of one round it gives, stands out.

use std::fmt;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use super::cluster::{memory, start};

/// Options of `orrery bench metrics`.
#[derive(Clone, Debug, clap::Args)]
pub struct MetricsBenchOptions {
    /// Virtual nodes.
    #[arg(long, default_value_t = 100)]
    pub nodes: u32,
    /// Pods running while the pipeline is measured.
    #[arg(long, default_value_t = 10_000)]
    pub pods: u32,
    /// The metrics resolution (`orrery up --metrics-resolution`).
    #[arg(long, default_value = "15s", value_parser = crate::cli::parse_duration)]
    pub resolution: Duration,
    /// The HPA controller's sync period.
    #[arg(long, default_value = "15s", value_parser = crate::cli::parse_duration)]
    pub sync_period: Duration,
    /// How many resolutions each CPU reading spans.
    #[arg(long, default_value_t = 4)]
    pub windows: u32,
    /// Give up waiting (for the pods, for the scale) after this long.
    #[arg(long, default_value = "600s", value_parser = crate::cli::parse_duration)]
    pub timeout: Duration,
}

/// The figures.
#[derive(Clone, Debug, Default)]
pub struct MetricsReport {
    nodes: u32,
    pods: u32,
    resolution: Duration,
    cpu_with: f64,
    cpu_without: f64,
    rss_with_kib: u64,
    rss_without_kib: u64,
    list_all: Duration,
    listed: usize,
    to_scale: Option<Duration>,
}

/// The goals: the pipeline's share of one core with 10,000 pods, and a load change answered
/// within two resolutions plus two sync periods (a scrape window to see it, a sync to act).
const GOAL_CPU_SHARE: f64 = 0.05;

impl fmt::Display for MetricsReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mib = |kib: u64| kib as f64 / 1024.0;
        writeln!(
            f,
            "orrery bench metrics: {} virtual nodes, {} pods, resolution {:?}, simulated runtime",
            self.nodes, self.pods, self.resolution
        )?;
        writeln!(f, "| row | measured | goal |\n|---|---|---|")?;
        writeln!(
            f,
            "| orrery's CPU, metrics server running | {:.1}% of a core | |",
            self.cpu_with * 100.0
        )?;
        writeln!(
            f,
            "| orrery's CPU, metrics server stopped | {:.1}% of a core | |",
            self.cpu_without * 100.0
        )?;
        writeln!(
            f,
            "| metrics pipeline (difference) | {:.1}% of a core | < {:.0}% |",
            (self.cpu_with - self.cpu_without) * 100.0,
            GOAL_CPU_SHARE * 100.0
        )?;
        writeln!(
            f,
            "| CPU time of one round (every kubelet read, every point kept) | {:.0} ms | |",
            (self.cpu_with - self.cpu_without) * self.resolution.as_secs_f64() * 1000.0
        )?;
        writeln!(
            f,
            "| RSS with / without the metrics server | {:.1} / {:.1} MiB (difference {:.1} MiB) | |",
            mib(self.rss_with_kib),
            mib(self.rss_without_kib),
            mib(self.rss_with_kib) - mib(self.rss_without_kib)
        )?;
        writeln!(
            f,
            "| GET every PodMetrics ({} items) | {:.0} ms | |",
            self.listed,
            self.list_all.as_secs_f64() * 1000.0
        )?;
        match self.to_scale {
            Some(t) => writeln!(
                f,
                "| load change until the HPA scaled | {:.1} s | < 2 resolutions + 2 sync periods |",
                t.as_secs_f64()
            ),
            None => writeln!(f, "| load change until the HPA scaled | not in time | |"),
        }
    }
}

/// The process's CPU time so far (user and system), from `/proc/<pid>/stat`.
fn cpu_time(pid: u32) -> Result<Duration, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("cannot read /proc/{pid}/stat: {e}"))?;
    // The fields after the command (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the line: 11 and 12 after the state.
    let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    Ok(Duration::from_secs_f64(
        (ticks(11) + ticks(12)) as f64 / per_second,
    ))
}

/// The process's share of one core over `span`.
async fn cpu_share(pid: u32, span: Duration) -> Result<f64, String> {
    let (before, at) = (cpu_time(pid)?, Instant::now());
    tokio::time::sleep(span).await;
    let used = cpu_time(pid)?.saturating_sub(before);
    Ok(used.as_secs_f64() / at.elapsed().as_secs_f64())
}

async fn raw(client: &kube::Client, method: http::Method, path: &str) -> Result<String, String> {
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    client
        .request_text(request)
        .await
        .map_err(|e| format!("{path}: {e}"))
}

/// Runs the benchmark.
pub async fn run_metrics_bench(options: &MetricsBenchOptions) -> Result<MetricsReport, String> {
    let resolution = crate::apimachinery::gotypes::go_duration(options.resolution);
    let sync = crate::apimachinery::gotypes::go_duration(options.sync_period);
    let (_dir, up, client, _) = start(
        options.nodes,
        &[
            "--metrics-resolution",
            &resolution,
            "--horizontal-pod-autoscaler-sync-period",
            &sync,
        ],
    )
    .await?;
    let pid = up.0.id();
    let mut report = MetricsReport {
        nodes: options.nodes,
        pods: options.pods,
        resolution: options.resolution,
        ..MetricsReport::default()
    };
    if options.pods > 0 {
        let (_, running) = super::hello_deployment(
            &client,
            "bench",
            options.pods,
            options.timeout,
            Duration::from_millis(500),
        )
        .await?;
        running.ok_or("the pods were not all available in time")?;
    }
    // Two resolutions for every pod to have been read twice, then the readings.
    let span = options.resolution * options.windows.max(1);
    tokio::time::sleep(options.resolution * 2).await;
    let listed_at = Instant::now();
    let all = raw(
        &client,
        http::Method::GET,
        "/apis/metrics.k8s.io/v1beta1/pods",
    )
    .await?;
    report.list_all = listed_at.elapsed();
    report.listed = serde_json::from_str::<serde_json::Value>(&all)
        .ok()
        .and_then(|v| v["items"].as_array().map(Vec::len))
        .unwrap_or(0);
    drop(all);
    report.cpu_with = cpu_share(pid, span).await?;
    report.rss_with_kib = memory(pid)?.0;
    raw(
        &client,
        http::Method::POST,
        "/orrery/v1/components/metrics-server/stop",
    )
    .await?;
    // Freed memory goes back to the system within the allocator's decay time.
    tokio::time::sleep(Duration::from_secs(3)).await;
    report.cpu_without = cpu_share(pid, span).await?;
    report.rss_without_kib = memory(pid)?.0;
    raw(
        &client,
        http::Method::POST,
        "/orrery/v1/components/metrics-server/start",
    )
    .await?;
    report.to_scale = load_change_to_scale(&client, options.timeout).await?;
    drop(up);
    Ok(report)
}

/// One `burn` pod under an HPA: the time from raising its load until the HPA has scaled it.
async fn load_change_to_scale(
    client: &kube::Client,
    timeout: Duration,
) -> Result<Option<Duration>, String> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let burn = |cpu: &str| json!(["/orrery", "burn", cpu]);
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "load"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "load"}},
            "template": {
                "metadata": {"labels": {"app": "load"}},
                "spec": {"containers": [{
                    "name": "app", "image": "orrery/hello", "command": burn("20m"),
                    "resources": {"requests": {"cpu": "100m"}},
                }]},
            },
        },
    }))
    .map_err(|e| e.to_string())?;
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .map_err(|e| format!("cannot create the Deployment: {e}"))?;
    let hpas: Api<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler> =
        Api::namespaced(client.clone(), "default");
    let hpa = serde_json::from_value(json!({
        "metadata": {"name": "load"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "load"},
            "minReplicas": 1, "maxReplicas": 4,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}],
        },
    }))
    .map_err(|e| e.to_string())?;
    hpas.create(&PostParams::default(), &hpa)
        .await
        .map_err(|e| format!("cannot create the HPA: {e}"))?;
    // Settled at one replica (20m of 100m is 20%), measured at least once.
    let deadline = Instant::now() + timeout;
    loop {
        let hpa = hpas.get_status("load").await.map_err(|e| e.to_string())?;
        let measured = hpa
            .status
            .as_ref()
            .and_then(|s| s.current_metrics.as_ref())
            .is_some_and(|m| !m.is_empty());
        if measured {
            break;
        }
        if Instant::now() > deadline {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let changed = Instant::now();
    deployments
        .patch(
            "load",
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(json!([{"op": "replace", "path": "/spec/template/spec/containers/0/command", "value": burn("400m")}]))
                    .map_err(|e| e.to_string())?,
            ),
        )
        .await
        .map_err(|e| format!("cannot change the load: {e}"))?;
    while Instant::now() < deadline {
        let replicas = deployments
            .get("load")
            .await
            .ok()
            .and_then(|d| d.spec?.replicas)
            .unwrap_or(1);
        if replicas > 1 {
            return Ok(Some(changed.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(None)
}
