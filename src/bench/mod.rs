//! Benchmarks anyone can rerun, each a subcommand of `orrery bench` that prints its figures:
//! `store` (the embedded store against a real etcd), `apiserver` (the Kubernetes API over
//! HTTPS), `scheduler` (pods scheduled per second) and `cluster` (a whole `orrery up`: start-up,
//! memory idle and with N pods). Every loop is bounded in count and in time.

mod apiserver;
mod cluster;
mod scheduler;
mod store;

pub use apiserver::{ApiBenchOptions, ApiReport, run_apiserver_bench};
pub use cluster::{ClusterBenchOptions, ClusterReport, run_cluster_bench};
pub use scheduler::{SchedulerBenchOptions, SchedulerReport, run_scheduler_bench};
pub use store::{StoreBenchOptions, StoreFigures, StoreReport, measure, run_store_bench};

use std::time::Duration;

/// The value at fraction `p` of sorted samples.
pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}
