//! Services benchmarks. (a) `programming`: one [`KubeProxy`] against an in-process API server
//! on a temporary embedded store holding N Services with EndpointSlices of M endpoints each (no
//! pods): how long the first full sync takes, then, over a bounded number of EndpointSlice
//! changes made one at a time, the time from the write to the rules applied (the `SYNC` hop,
//! emitted after `nft` returns), p50/p99/max. Programs nftables inside a network namespace of
//! its own when run as root with `nft` installed, else only computes the rules.

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, PostParams};
use tokio::sync::broadcast::error::RecvError;

use super::percentile;
use crate::flow::FlowEvent;
use crate::proxy::{KubeProxy, ProxyConfig, ProxyMode};

/// Options of the kube-proxy programming benchmark.
#[derive(Clone, Debug, clap::Args)]
pub struct ProgrammingOptions {
    /// Keep the store under this directory [default: the system's temp directory].
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Services.
    #[arg(long, default_value_t = 1000)]
    pub services: usize,
    /// Endpoints per Service.
    #[arg(long, default_value_t = 10)]
    pub endpoints: usize,
    /// EndpointSlice changes to time.
    #[arg(long, default_value_t = 200)]
    pub changes: usize,
    /// Only compute the rules, even as root.
    #[arg(long)]
    pub compute: bool,
}

impl Default for ProgrammingOptions {
    fn default() -> Self {
        ProgrammingOptions {
            dir: None,
            services: 1000,
            endpoints: 10,
            changes: 200,
            compute: false,
        }
    }
}

/// The figures.
#[derive(Clone, Debug, Default)]
pub struct ProgrammingReport {
    /// `nftables` (rules applied in a netns) or `compute`.
    pub mode: String,
    /// Services created.
    pub services: usize,
    /// Endpoints in all.
    pub endpoints: usize,
    /// From the proxy's start to its first full table in place.
    pub first_sync: Duration,
    /// Changes timed.
    pub changes: usize,
    /// Write-to-rules-applied latency.
    pub p50: Duration,
    /// Write-to-rules-applied latency.
    pub p99: Duration,
    /// Write-to-rules-applied latency.
    pub max: Duration,
    /// Changes whose sync did not arrive within ten seconds.
    pub missed: usize,
}

impl fmt::Display for ProgrammingReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "kube-proxy ({}): {} services, {} endpoints",
            self.mode, self.services, self.endpoints
        )?;
        writeln!(f, "  first full sync      {:>10.1?}", self.first_sync)?;
        writeln!(
            f,
            "  slice change -> rules p50 {:.1?}  p99 {:.1?}  max {:.1?}  ({} changes, {} missed)",
            self.p50, self.p99, self.max, self.changes, self.missed
        )
    }
}

/// How long one change may take to show before it counts as missed.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the first sync may take.
const FIRST_TIMEOUT: Duration = Duration::from_secs(120);

fn service(i: usize) -> Service {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("svc-{i}"), "namespace": "default"},
        // Explicit ClusterIPs (10.100.0.0/16, inside 10.96.0.0/12) keep 16 concurrent writers
        // clear of the allocator.
        "spec": {"clusterIP": format!("10.100.{}.{}", (i >> 8) & 255, i & 255),
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
                 "selector": {"app": format!("svc-{i}")}},
    }))
    .expect("a valid Service")
}

/// The address of endpoint `e` of Service `i` in generation `g` (every change moves one
/// endpoint to a new address).
fn address(i: usize, e: usize, g: usize) -> String {
    let n = i * 16 + e;
    let second = if g == 0 { 64 } else { 65 + (g - 1) % 100 };
    format!("10.{second}.{}.{}", (n >> 8) & 255, n & 255)
}

fn slice(i: usize, endpoints: usize, generation: usize) -> EndpointSlice {
    let eps: Vec<_> = (0..endpoints)
        .map(|e| {
            let g = if e == 0 { generation } else { 0 };
            serde_json::json!({"addresses": [address(i, e, g)], "nodeName": format!("node-{}", e % 3),
                "conditions": {"ready": true, "serving": true, "terminating": false}})
        })
        .collect();
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("svc-{i}-bench"), "namespace": "default",
            "labels": {"kubernetes.io/service-name": format!("svc-{i}")}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": eps,
    }))
    .expect("a valid EndpointSlice")
}

/// Waits for the next `SYNC` hop whose detail satisfies `wanted`.
async fn sync_hop(
    events: &mut tokio::sync::broadcast::Receiver<FlowEvent>,
    wanted: impl Fn(&FlowEvent) -> bool,
    timeout: Duration,
) -> Option<FlowEvent> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(e)) if e.verb == "SYNC" && wanted(&e) => return Some(e),
            Ok(Ok(_)) | Ok(Err(RecvError::Lagged(_))) => {}
            Ok(Err(RecvError::Closed)) | Err(_) => return None,
        }
    }
}

/// A network namespace of the benchmark's own, deleted when dropped.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .output();
    }
}

/// Runs the programming benchmark.
pub async fn programming(options: &ProgrammingOptions) -> Result<ProgrammingReport, String> {
    let (_dir, api, flow) = super::in_process_api(options.dir.as_deref()).await?;
    let client = api.client("bench");

    // The objects, 16 writers at a time.
    let mut tasks = tokio::task::JoinSet::new();
    let writers = 16;
    for w in 0..writers {
        let client = client.clone();
        let (n, m) = (options.services, options.endpoints);
        tasks.spawn(async move {
            let services: Api<Service> = Api::namespaced(client.clone(), "default");
            let slices: Api<EndpointSlice> = Api::namespaced(client, "default");
            for i in (w..n).step_by(writers) {
                services.create(&PostParams::default(), &service(i)).await?;
                slices
                    .create(&PostParams::default(), &slice(i, m, 0))
                    .await?;
            }
            Ok::<_, kube::Error>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot create the objects: {e}"))?;
    }

    let root = nix::unistd::geteuid().is_root();
    let netns = if !options.compute && root && crate::proxy::check_nft().is_ok() {
        let name = format!("orrbench{}", std::process::id() % 100_000);
        let out = std::process::Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .map_err(|e| format!("ip netns add: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "ip netns add {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Some(Netns(name))
    } else {
        None
    };
    let mode = if netns.is_some() {
        ProxyMode::Nftables
    } else {
        ProxyMode::Compute
    };
    let config = ProxyConfig {
        node: "node-1".into(),
        node_ip: "10.244.1.1".parse().expect("an address"),
        pod_cidr: "10.244.1.0/24".parse().expect("a CIDR"),
        cluster_cidr: "10.244.0.0/14".parse().expect("a CIDR"),
        host: false,
        table: ProxyConfig::table_name("bench", "node-1"),
        mode,
        netns: netns.as_ref().map(|n| n.0.clone()),
    };
    let (_, mut events) = flow.subscribe(u64::MAX);
    let proxy = KubeProxy::new(config, api.client("kube-proxy/node-1"), flow.clone());
    let started = Instant::now();
    let running = tokio::spawn(proxy.run());
    let first = sync_hop(
        &mut events,
        |e| e.detail.contains(&format!("{} services", options.services)),
        FIRST_TIMEOUT,
    )
    .await;
    let mut report = ProgrammingReport {
        mode: match mode {
            ProxyMode::Nftables => "nftables".into(),
            ProxyMode::Compute => "compute".into(),
        },
        services: options.services,
        endpoints: options.services * options.endpoints,
        first_sync: started.elapsed(),
        ..Default::default()
    };
    let Some(first) = first else {
        running.abort();
        return Err("kube-proxy's first sync did not come".into());
    };
    if first.detail.contains("not programmed") {
        running.abort();
        return Err(format!("kube-proxy's first sync failed: {}", first.detail));
    }

    let slices: Api<EndpointSlice> = Api::namespaced(client, "default");
    let mut latencies = Vec::new();
    for c in 0..options.changes {
        let i = (c * 7919) % options.services.max(1);
        let name = format!("svc-{i}-bench");
        let mut current = slices.get(&name).await.map_err(|e| e.to_string())?;
        let fresh = slice(i, options.endpoints, c + 1);
        current.endpoints = fresh.endpoints;
        let wanted = format!("default/svc-{i} +");
        let t = Instant::now();
        slices
            .replace(&name, &PostParams::default(), &current)
            .await
            .map_err(|e| e.to_string())?;
        match sync_hop(&mut events, |e| e.detail.contains(&wanted), CHANGE_TIMEOUT).await {
            Some(_) => latencies.push(t.elapsed()),
            None => {
                tracing::warn!(change = c, "bench: no SYNC hop naming {wanted}");
                report.missed += 1
            }
        }
    }
    running.abort();
    let _ = running.await;
    if let Some(ns) = &netns {
        let _ = crate::proxy::remove_tables_in(&crate::proxy::table_prefix("bench"), Some(&ns.0));
    }
    latencies.sort();
    report.changes = latencies.len();
    report.p50 = percentile(&latencies, 0.50);
    report.p99 = percentile(&latencies, 0.99);
    report.max = latencies.last().copied().unwrap_or_default();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_small_run_times_every_change() {
        let options = ProgrammingOptions {
            services: 20,
            endpoints: 3,
            changes: 5,
            compute: true,
            dir: None,
        };
        let report = programming(&options).await.unwrap();
        assert_eq!(report.mode, "compute");
        assert_eq!((report.changes, report.missed), (5, 0), "{report}");
    }
}
