//! Benchmarks anyone can rerun, each a subcommand of `orrery bench` that prints its figures:
//! `store` (the embedded store against a real etcd), `apiserver` (the Kubernetes API over
//! HTTPS), `scheduler` (pods scheduled per second), `cluster` (a whole `orrery up`: start-up,
//! memory idle and with N pods), `pods` (pod start latency on a real runtime, next to a raw
//! libcontainer start, and a Deployment's time to all Running), `tui` (the dashboard: frame
//! time and key latency under load, the flow bus with slow readers, an attached dashboard's
//! CPU), `metrics` (the metrics pipeline's cost with 10,000 pods and a load change's time to
//! the HPA's scale), `leader` (how long after a leader stops its standby holds the Lease and
//! acts), `lessons` (each lesson's headless check, and the catalogue's total) and the cluster
//! DNS server's queries per second and latency ([`dns_queries`]). Every loop is bounded in
//! count and in time.

mod apiserver;
mod cluster;
mod dataplane;
mod dns;
mod leader;
mod lessons;
mod metrics;
mod pods;
mod routing;
mod scheduler;
mod services;
mod store;
mod tui;

pub use apiserver::{ApiBenchOptions, ApiReport, run_apiserver_bench};
pub use cluster::{ClusterBenchOptions, ClusterReport, run_cluster_bench};
pub use dataplane::{ServicesBenchOptions, ServicesReport, run_services_bench};
pub use dns::{DnsReport, queries as dns_queries};
pub use leader::{LeaderBenchOptions, LeaderReport, run_leader_bench};
pub use lessons::{
    GOAL_TOTAL as LESSONS_GOAL, LessonBenchOptions, LessonReports, run_lesson_bench,
};
pub use metrics::{MetricsBenchOptions, MetricsReport, run_metrics_bench};
pub use pods::{PodBenchOptions, PodReport, run_pod_bench};
pub use routing::{RoutingFigures, routing};
pub use scheduler::{SchedulerBenchOptions, SchedulerReport, run_scheduler_bench};
pub use services::{ProgrammingOptions, ProgrammingReport, programming};
pub use store::{StoreBenchOptions, StoreFigures, StoreReport, measure, run_store_bench};
pub use tui::{TuiBenchOptions, TuiReport, run_tui_bench};

use std::time::Duration;

/// An in-process API server (bootstrapped, with its own `Flow`) on an embedded store in a new
/// temporary directory under `parent` (the system's temp directory when `None`), which lives
/// as long as the returned `TempDir`.
pub(crate) async fn in_process_api(
    parent: Option<&std::path::Path>,
) -> Result<
    (
        tempfile::TempDir,
        std::sync::Arc<crate::apiserver::ApiServer>,
        crate::flow::Flow,
    ),
    String,
> {
    let parent = parent.map_or_else(std::env::temp_dir, std::path::Path::to_owned);
    let dir = tempfile::tempdir_in(&parent)
        .map_err(|e| format!("cannot create a directory under {}: {e}", parent.display()))?;
    let path = dir.path().join("store.redb");
    let store: std::sync::Arc<dyn crate::store::Store> = std::sync::Arc::new(
        tokio::task::spawn_blocking(move || crate::store::embedded::EmbeddedStore::open(&path))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?,
    );
    let flow = crate::flow::Flow::new();
    let api = crate::apiserver::ApiServer::new(store, flow.clone());
    api.bootstrap().await.map_err(|e| e.to_string())?;
    // Pods run as their namespace's `default` account, which no controller makes here.
    let accounts: kube::Api<k8s_openapi::api::core::v1::ServiceAccount> =
        kube::Api::namespaced(api.client("bench"), "default");
    accounts
        .create(
            &kube::api::PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": "default"}}))
                .map_err(|e| e.to_string())?,
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok((dir, api, flow))
}

/// The value at fraction `p` of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// How many worker nodes (the `--nodes` asked for, not the control-plane node) are Ready now (0
/// if they cannot be listed).
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
                    let labels = n.metadata.labels.as_ref();
                    !labels.is_some_and(|l| l.contains_key(crate::kubelet::CONTROL_PLANE_ROLE))
                })
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

/// Creates the Deployment `name` (`replicas` pods of `orrery/hello`) in `default` and waits,
/// polling every `poll`, until all are available or `timeout` passes after the create. Returns
/// when the create was sent, and how long until all were available (none if they were not in
/// time).
pub(crate) async fn hello_deployment(
    client: &kube::Client,
    name: &str,
    replicas: u32,
    timeout: std::time::Duration,
    poll: std::time::Duration,
) -> Result<(std::time::Instant, Option<std::time::Duration>), String> {
    use k8s_openapi::api::apps::v1::Deployment;
    let deployments: kube::Api<Deployment> = kube::Api::namespaced(client.clone(), "default");
    let deployment: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "orrery/hello"}]},
            },
        },
    }))
    .map_err(|e| e.to_string())?;
    let created = std::time::Instant::now();
    deployments
        .create(&kube::api::PostParams::default(), &deployment)
        .await
        .map_err(|e| format!("cannot create the Deployment: {e}"))?;
    let deadline = created + timeout;
    while std::time::Instant::now() < deadline {
        let available = deployments
            .get_status(name)
            .await
            .ok()
            .and_then(|d| d.status?.available_replicas)
            .unwrap_or(0);
        if available >= replicas as i32 {
            return Ok((created, Some(created.elapsed())));
        }
        tokio::time::sleep(poll).await;
    }
    Ok((created, None))
}
