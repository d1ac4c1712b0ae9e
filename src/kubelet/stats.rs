//! The kubelet's resource-usage endpoints, which the API server's `nodes/proxy` reaches and its
//! metrics API scrapes: the Summary API (`GET /stats/summary`, kubelet `stats/v1alpha1`: the
//! node and every pod and container with `cpu` and `memory`) and the resource metrics
//! (`GET /metrics/resource`, the Prometheus text metrics-server reads). Both come from
//! [`ContainerRuntime::container_stats`] for every running container of the node's pods.
//!
//! CPU is cumulative (`usageCoreNanoSeconds`) plus a rate (`usageNanoCores`) that the kubelet
//! works out, as cAdvisor does between housekeeping samples, from the last sample it kept at
//! least [`MIN_SAMPLE_GAP`] earlier. Memory is the working set (usage less inactive file
//! pages), with usage and RSS. A virtual node's own figures are its pods' sums (the
//! processes of the node are its pods; the kubelet itself runs in orrery's process), and
//! its `availableBytes` is its memory capacity less that working set. Pods whose containers
//! are the control plane's in-process components (static pods) have no cgroup of their own
//! and are left out, as are network, filesystem and volume figures, which nothing here
//! measures.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;

use crate::apimachinery::summary::{
    ContainerSummary, CpuStats, MemoryStats, NodeSummary, PodReference, PodSummary, Summary,
};
use crate::runtime::{ContainerRuntime, ContainerState, ContainerStats};

/// The least time between two samples a CPU rate is worked out from (cAdvisor samples every
/// 10–15 s; a rate over a shorter gap is mostly noise).
pub const MIN_SAMPLE_GAP: Duration = Duration::from_secs(1);

/// What the kubelet keeps of a running container between reads: the sample its CPU rate is
/// measured from (when, and its CPU time then), the last rate worked out, and its CPU time
/// when last read (what the node's counter has counted of it).
#[derive(Clone, Copy, Debug)]
struct Sample {
    at: Timestamp,
    cpu: u64,
    rate: Option<u64>,
    counted: u64,
}

/// What the stats endpoints know about their node, and the samples CPU rates come from.
pub(super) struct NodeStats {
    pub(super) node: String,
    pub(super) memory_capacity: u64,
    pub(super) started: Timestamp,
    /// Per running container id.
    samples: Mutex<HashMap<String, Sample>>,
    /// The node's CPU time so far, every container's counted as it was seen to grow: a
    /// counter that never goes back when a pod goes.
    node_cpu: std::sync::atomic::AtomicU64,
}

impl NodeStats {
    pub(super) fn new(node: &str, memory_capacity: u64, started: Timestamp) -> Self {
        NodeStats {
            node: node.to_owned(),
            memory_capacity,
            started,
            samples: Mutex::default(),
            node_cpu: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The container's CPU rate in nanocores: from the kept sample if it is old enough (which
    /// this sample then replaces), else the last rate worked out.
    fn rate(&self, id: &str, stats: &ContainerStats) -> Option<u64> {
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let Some(sample) = samples.get_mut(id) else {
            samples.insert(
                id.to_owned(),
                Sample {
                    at: stats.timestamp,
                    cpu: stats.cpu_usage_core_nanos,
                    rate: None,
                    counted: 0,
                },
            );
            return None;
        };
        let gap = stats.timestamp.duration_since(sample.at);
        if gap.as_secs_f64() < MIN_SAMPLE_GAP.as_secs_f64() {
            return sample.rate;
        }
        let used = stats.cpu_usage_core_nanos.saturating_sub(sample.cpu) as f64;
        let rate = (used / gap.as_secs_f64()) as u64;
        (sample.at, sample.cpu, sample.rate) =
            (stats.timestamp, stats.cpu_usage_core_nanos, Some(rate));
        Some(rate)
    }

    /// Adds what the running containers used since they were last seen to the node's CPU
    /// time, forgets the containers that no longer run, and returns the node's CPU time.
    fn node_cpu(&self, running: &HashMap<String, u64>) -> u64 {
        use std::sync::atomic::Ordering;
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        samples.retain(|id, _| running.contains_key(id));
        let mut grown = 0;
        for (id, now) in running {
            let sample = samples.entry(id.clone()).or_insert(Sample {
                at: Timestamp::now(),
                cpu: *now,
                rate: None,
                counted: 0,
            });
            grown += now.saturating_sub(sample.counted);
            sample.counted = *now;
        }
        self.node_cpu.fetch_add(grown, Ordering::Relaxed) + grown
    }
}

fn time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn add_cpu(total: &mut CpuStats, one: &CpuStats) {
    total.usage_core_nano_seconds += one.usage_core_nano_seconds;
    total.usage_nano_cores = match (total.usage_nano_cores, one.usage_nano_cores) {
        (Some(a), Some(b)) => Some(a + b),
        (a, b) => a.or(b),
    };
}

fn add_memory(total: &mut MemoryStats, one: &MemoryStats) {
    total.usage_bytes += one.usage_bytes;
    total.working_set_bytes += one.working_set_bytes;
    total.rss_bytes += one.rss_bytes;
    total.page_faults += one.page_faults;
    total.major_page_faults += one.major_page_faults;
}

/// Reads every running container of the node's pods and sums them up.
pub(super) async fn summary(runtime: &dyn ContainerRuntime, node: &NodeStats) -> Summary {
    let now = Timestamp::now();
    // The node's figures are as of its last container's reading, so its CPU counter and its
    // time agree.
    let mut latest = now;
    let mut pods = Vec::new();
    let mut running = HashMap::new();
    let mut sandboxes = runtime.list_pod_sandboxes().await;
    sandboxes.retain(|(_, config)| config.node == node.node);
    sandboxes.sort_by(|a, b| (&a.1.namespace, &a.1.name).cmp(&(&b.1.namespace, &b.1.name)));
    for (sandbox, config) in sandboxes {
        let Ok(statuses) = runtime.list_containers(&sandbox).await else {
            continue;
        };
        let mut containers = Vec::new();
        let mut started: Option<Timestamp> = None;
        for status in statuses {
            if status.state != ContainerState::Running {
                continue;
            }
            let Ok(stats) = runtime.container_stats(&status.id).await else {
                continue;
            };
            running.insert(status.id.clone(), stats.cpu_usage_core_nanos);
            latest = latest.max(stats.timestamp);
            let start = status.started_at.unwrap_or(now);
            started = Some(started.map_or(start, |s| s.min(start)));
            let at = time(stats.timestamp);
            containers.push(ContainerSummary {
                name: status.name.clone(),
                start_time: time(start),
                cpu: CpuStats {
                    time: at.clone(),
                    usage_nano_cores: node.rate(&status.id, &stats),
                    usage_core_nano_seconds: stats.cpu_usage_core_nanos,
                },
                memory: MemoryStats {
                    time: at,
                    available_bytes: None,
                    usage_bytes: stats.memory_usage_bytes,
                    working_set_bytes: stats.memory_working_set_bytes,
                    rss_bytes: stats.memory_rss_bytes,
                    page_faults: stats.page_faults,
                    major_page_faults: stats.major_page_faults,
                },
            });
        }
        if containers.is_empty() {
            continue;
        }
        containers.sort_by(|a, b| a.name.cmp(&b.name));
        let at = time(now);
        let mut cpu = CpuStats {
            time: at.clone(),
            ..CpuStats::default()
        };
        let mut memory = MemoryStats {
            time: at,
            ..MemoryStats::default()
        };
        for c in &containers {
            add_cpu(&mut cpu, &c.cpu);
            add_memory(&mut memory, &c.memory);
        }
        pods.push(PodSummary {
            pod_ref: PodReference {
                name: config.name,
                namespace: config.namespace,
                uid: config.uid,
            },
            start_time: time(started.unwrap_or(now)),
            containers,
            cpu,
            memory,
        });
    }
    let at = time(latest);
    let mut cpu = CpuStats {
        time: at.clone(),
        ..CpuStats::default()
    };
    let mut memory = MemoryStats {
        time: at,
        ..MemoryStats::default()
    };
    for pod in &pods {
        add_cpu(&mut cpu, &pod.cpu);
        add_memory(&mut memory, &pod.memory);
    }
    cpu.usage_core_nano_seconds = node.node_cpu(&running);
    memory.available_bytes = Some(
        node.memory_capacity
            .saturating_sub(memory.working_set_bytes),
    );
    Summary {
        node: NodeSummary {
            node_name: node.node.clone(),
            start_time: time(node.started),
            cpu,
            memory,
        },
        pods,
    }
}

/// The resource metrics in Prometheus' text format, as the kubelet's `/metrics/resource`
/// writes them (metric names, help texts and labels as upstream's; samples carry their
/// timestamps in milliseconds).
pub fn resource_metrics(summary: &Summary) -> String {
    use std::fmt::Write;
    let millis = |t: &str| {
        t.parse::<Timestamp>()
            .map(|t| t.as_millisecond())
            .unwrap_or(0)
    };
    let seconds = |nanos: u64| nanos as f64 / 1e9;
    let mut out = String::new();
    let mut family = |name: &str, help: &str, kind: &str, samples: Vec<(String, String, i64)>| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value, at) in samples {
            let labels = if labels.is_empty() {
                String::new()
            } else {
                format!("{{{labels}}}")
            };
            let _ = writeln!(out, "{name}{labels} {value} {at}");
        }
    };
    let containers = |f: &dyn Fn(&ContainerSummary) -> (String, i64)| {
        summary
            .pods
            .iter()
            .flat_map(|p| {
                p.containers.iter().map(move |c| {
                    let (value, at) = f(c);
                    (
                        format!(
                            "container=\"{}\",namespace=\"{}\",pod=\"{}\"",
                            c.name, p.pod_ref.namespace, p.pod_ref.name
                        ),
                        value,
                        at,
                    )
                })
            })
            .collect::<Vec<_>>()
    };
    let pods = |f: &dyn Fn(&PodSummary) -> (String, i64)| {
        summary
            .pods
            .iter()
            .map(|p| {
                let (value, at) = f(p);
                (
                    format!(
                        "namespace=\"{}\",pod=\"{}\"",
                        p.pod_ref.namespace, p.pod_ref.name
                    ),
                    value,
                    at,
                )
            })
            .collect::<Vec<_>>()
    };
    family(
        "container_cpu_usage_seconds_total",
        "[STABLE] Cumulative cpu time consumed by the container in core-seconds",
        "counter",
        containers(&|c| {
            (
                seconds(c.cpu.usage_core_nano_seconds).to_string(),
                millis(&c.cpu.time),
            )
        }),
    );
    family(
        "container_memory_working_set_bytes",
        "[STABLE] Current working set of the container in bytes",
        "gauge",
        containers(&|c| {
            (
                c.memory.working_set_bytes.to_string(),
                millis(&c.memory.time),
            )
        }),
    );
    family(
        "container_start_time_seconds",
        "[STABLE] Start time of the container since unix epoch in seconds",
        "gauge",
        containers(&|c| {
            let start = millis(&c.start_time);
            ((start / 1000).to_string(), start)
        }),
    );
    let node = &summary.node;
    family(
        "node_cpu_usage_seconds_total",
        "[STABLE] Cumulative cpu time consumed by the node in core-seconds",
        "counter",
        vec![(
            String::new(),
            seconds(node.cpu.usage_core_nano_seconds).to_string(),
            millis(&node.cpu.time),
        )],
    );
    family(
        "node_memory_working_set_bytes",
        "[STABLE] Current working set of the node in bytes",
        "gauge",
        vec![(
            String::new(),
            node.memory.working_set_bytes.to_string(),
            millis(&node.memory.time),
        )],
    );
    family(
        "pod_cpu_usage_seconds_total",
        "[STABLE] Cumulative cpu time consumed by the pod in core-seconds",
        "counter",
        pods(&|p| {
            (
                seconds(p.cpu.usage_core_nano_seconds).to_string(),
                millis(&p.cpu.time),
            )
        }),
    );
    family(
        "pod_memory_working_set_bytes",
        "[STABLE] Current working set of the pod in bytes",
        "gauge",
        pods(&|p| {
            (
                p.memory.working_set_bytes.to_string(),
                millis(&p.memory.time),
            )
        }),
    );
    let _ = writeln!(
        out,
        "# HELP resource_scrape_error [STABLE] 1 if there was an error while getting container metrics, 0 otherwise\n# TYPE resource_scrape_error gauge\nresource_scrape_error 0"
    );
    out
}

/// `GET /stats/summary`.
pub(super) async fn serve_summary(
    State(runtime): State<Arc<dyn ContainerRuntime>>,
    axum::Extension(node): axum::Extension<Arc<NodeStats>>,
) -> Response {
    let summary = summary(runtime.as_ref(), &node).await;
    let body = serde_json::to_vec_pretty(&summary).unwrap_or_default();
    ([(http::header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `GET /metrics/resource`.
pub(super) async fn serve_resource_metrics(
    State(runtime): State<Arc<dyn ContainerRuntime>>,
    axum::Extension(node): axum::Extension<Arc<NodeStats>>,
) -> Response {
    let summary = summary(runtime.as_ref(), &node).await;
    (
        [(
            http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        resource_metrics(&summary),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::sim::{SimOptions, SimRuntime};
    use crate::runtime::{ContainerConfig, SandboxConfig};

    #[tokio::test]
    async fn burn_and_hog_are_summed_into_their_pod_and_node() {
        let runtime = SimRuntime::new(SimOptions {
            start_delay: Duration::ZERO,
            pull_delay: Duration::ZERO,
        });
        let sandbox = runtime
            .run_pod_sandbox(&SandboxConfig {
                uid: "u1".into(),
                namespace: "default".into(),
                name: "load".into(),
                hostname: "load".into(),
                node: "node-1".into(),
                pod_cidr: "10.244.1.0/24".into(),
                dns_search: vec![],
                dns_servers: vec![],
                dns_options: vec![],
            })
            .await
            .unwrap();
        for (name, tool, arg) in [("cpu", "burn", "400m"), ("mem", "hog", "64")] {
            let config = ContainerConfig {
                name: name.into(),
                image: "orrery/hello".into(),
                command: vec!["/orrery".into(), tool.into(), arg.into()],
                ..ContainerConfig::default()
            };
            let id = runtime.create_container(&sandbox, &config).await.unwrap();
            runtime.start_container(&id).await.unwrap();
        }
        // The run tasks record their loads.
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        let node = NodeStats::new("node-1", 8 << 30, Timestamp::now());
        let first = summary(&runtime, &node).await;
        assert_eq!(first.pods.len(), 1);
        let pod = &first.pods[0];
        assert_eq!(pod.pod_ref.name, "load");
        assert_eq!(
            pod.containers.iter().map(|c| &c.name).collect::<Vec<_>>(),
            ["cpu", "mem"]
        );
        assert_eq!(pod.memory.working_set_bytes, 64 << 20);
        assert_eq!(first.node.memory.working_set_bytes, 64 << 20);
        assert_eq!(
            first.node.memory.available_bytes,
            Some((8 << 30) - (64 << 20))
        );
        // The first sample has no rate yet.
        assert_eq!(pod.containers[0].cpu.usage_nano_cores, None);
        let text = resource_metrics(&first);
        assert!(text.contains(
            "container_memory_working_set_bytes{container=\"mem\",namespace=\"default\",pod=\"load\"} 67108864 "
        ));
        assert!(text.contains("# TYPE node_cpu_usage_seconds_total counter"));
        assert!(text.ends_with("resource_scrape_error 0\n"));
    }

    #[test]
    fn the_rate_is_measured_over_at_least_the_least_gap() {
        let node = NodeStats::new("n", 0, Timestamp::UNIX_EPOCH);
        let at = |secs: f64, nanos: u64| ContainerStats {
            timestamp: Timestamp::UNIX_EPOCH + Duration::from_secs_f64(secs),
            cpu_usage_core_nanos: nanos,
            ..ContainerStats::default()
        };
        assert_eq!(node.rate("c", &at(0.0, 0)), None);
        // Too soon: no rate yet, and the first sample stays the base.
        assert_eq!(node.rate("c", &at(0.5, 100_000_000)), None);
        // 0.8 s of CPU in 2 s: 400m.
        assert_eq!(node.rate("c", &at(2.0, 800_000_000)), Some(400_000_000));
        assert_eq!(node.rate("c", &at(2.1, 900_000_000)), Some(400_000_000));
        node.node_cpu(&HashMap::new());
        assert_eq!(node.rate("c", &at(3.0, 0)), None);
    }

    #[test]
    fn the_node_counter_never_goes_back_when_a_pod_goes() {
        let node = NodeStats::new("n", 0, Timestamp::UNIX_EPOCH);
        let running = |pairs: &[(&str, u64)]| {
            pairs
                .iter()
                .map(|(id, n)| (id.to_string(), *n))
                .collect::<HashMap<_, _>>()
        };
        assert_eq!(node.node_cpu(&running(&[("a", 100), ("b", 50)])), 150);
        assert_eq!(node.node_cpu(&running(&[("a", 130)])), 180);
        // A container seen for the first time counts from zero.
        assert_eq!(node.node_cpu(&running(&[("a", 130), ("c", 5)])), 185);
    }
}
