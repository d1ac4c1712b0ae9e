//! Benchmarks anyone can rerun, each a subcommand of `orrery bench` that prints its figures:
//! `store` (the embedded store against a real etcd), `apiserver` (the Kubernetes API over
//! HTTPS), `scheduler` (pods scheduled per second), `cluster` (a whole `orrery up`: start-up,
//! memory idle and with N pods), `pods` (pod start latency on a real runtime, next to a raw
//! libcontainer start, and a Deployment's time to all Running) and `tui` (the dashboard: frame
//! time and key latency under load, the flow bus with slow readers, an attached dashboard's
//! CPU). Every loop is bounded in count and in time.

mod apiserver;
mod cluster;
mod pods;
mod scheduler;
mod store;
mod tui;

pub use apiserver::{ApiBenchOptions, ApiReport, run_apiserver_bench};
pub use cluster::{ClusterBenchOptions, ClusterReport, run_cluster_bench};
pub use pods::{PodBenchOptions, PodReport, run_pod_bench};
pub use scheduler::{SchedulerBenchOptions, SchedulerReport, run_scheduler_bench};
pub use store::{StoreBenchOptions, StoreFigures, StoreReport, measure, run_store_bench};
pub use tui::{TuiBenchOptions, TuiReport, run_tui_bench};

use std::time::Duration;

/// The value at fraction `p` of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// How many nodes are Ready now (0 if they cannot be listed).
pub(crate) async fn ready_nodes(client: &kube::Client) -> usize {
    use k8s_openapi::api::core::v1::Node;
    let nodes: kube::Api<Node> = kube::Api::all(client.clone());
    nodes
        .list(&kube::api::ListParams::default())
        .await
        .map(|l| {
            l.items
                .iter()
                .filter(|n| {
                    n.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
                })
                .count()
        })
        .unwrap_or(0)
}
