//! The metrics server (what k3s and k0s ship as metrics-server): `metrics-server`, an API
//! client that every `--metrics-resolution` (15 s by default, as metrics-server's release
//! manifest sets it) lists the nodes and reads each kubelet's resource metrics
//! (`/metrics/resource`, through the API server's `nodes/proxy`, since the kubelets answer the
//! API server alone), and keeps the last two points of every node and container. The API
//! server serves `metrics.k8s.io/v1beta1` from what it keeps ([`Scraped`]), as kube-apiserver's
//! aggregation layer serves the real one from metrics-server; while this component is stopped
//! that API answers 503, as an unavailable aggregated API does.
//!
//! Rates are metrics-server's: CPU is the growth of the cumulative counter between the two
//! points over the time between them (the `window`); a container seen once, or restarted since
//! the earlier point, is measured from its start with nothing used. Memory is the working set
//! at the later point. A node is measured once it has been read twice.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};

use crate::flow::{Flow, FlowEvent};

/// The component's name: its client's name and the `from` of its hops.
pub const COMPONENT: &str = "metrics-server";
/// How often the kubelets are read, unless `--metrics-resolution` says otherwise.
pub const DEFAULT_RESOLUTION: Duration = Duration::from_secs(15);
/// How many kubelets are read at once.
const CONCURRENT_SCRAPES: usize = 16;

/// One reading of a counter and a gauge.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Point {
    at: Timestamp,
    /// Cumulative CPU, core-seconds.
    cpu_seconds: f64,
    /// Working set, bytes.
    memory: u64,
    /// When the container started (none for a node).
    started: Option<Timestamp>,
}

/// The last two readings of one node or container.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Series {
    earlier: Option<Point>,
    last: Point,
}

impl Series {
    fn push(previous: Option<&Series>, point: Point) -> Series {
        Series {
            earlier: previous.map(|s| s.last).filter(|p| p.at < point.at),
            last: point,
        }
    }

    /// The rate and the gauge over the window the two points span.
    fn usage(&self) -> Option<Usage> {
        let last = self.last;
        let earlier = match self.earlier {
            Some(e) if e.cpu_seconds <= last.cpu_seconds && e.started == last.started => e,
            // Seen once, or restarted: from its start, with nothing used.
            _ => Point {
                at: last.started.filter(|s| *s < last.at)?,
                cpu_seconds: 0.0,
                memory: 0,
                started: last.started,
            },
        };
        let window = last.at.duration_since(earlier.at);
        if window.is_negative() || window.is_zero() {
            return None;
        }
        let used = (last.cpu_seconds - earlier.cpu_seconds).max(0.0);
        Some(Usage {
            timestamp: last.at,
            window: window.unsigned_abs(),
            cpu_nanocores: (used / window.as_secs_f64() * 1e9).round() as u64,
            memory_bytes: last.memory,
        })
    }
}

/// A node's or container's use over a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    /// The end of the window.
    pub timestamp: Timestamp,
    /// How long the window is.
    pub window: Duration,
    /// CPU over the window, in billionths of a core.
    pub cpu_nanocores: u64,
    /// Working set at its end, in bytes.
    pub memory_bytes: u64,
}

/// One pod's containers' use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodUsage {
    /// The latest end of its containers' windows.
    pub timestamp: Timestamp,
    /// The longest of its containers' windows.
    pub window: Duration,
    /// Each container's, by name.
    pub containers: BTreeMap<String, Usage>,
}

/// One node's pods, by (namespace, name): each container's series, by name (a pod has one or
/// a few: a list, not a map, whose smallest node holds eleven).
type NodePods = HashMap<(String, String), Vec<(String, Series)>>;

#[derive(Default)]
struct State {
    nodes: HashMap<String, Series>,
    /// Per node, per (namespace, pod): each container's series.
    pods: HashMap<String, NodePods>,
}

/// What the metrics server keeps, shared with the API server that serves it.
#[derive(Default)]
pub struct Scraped {
    state: RwLock<State>,
    running: AtomicBool,
}

impl Scraped {
    /// Whether the metrics server is running (the API is available).
    pub fn available(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Every node's use that can be measured.
    pub fn nodes(&self) -> BTreeMap<String, Usage> {
        self.read()
            .nodes
            .iter()
            .filter_map(|(name, s)| Some((name.clone(), s.usage()?)))
            .collect()
    }

    /// Every pod's use that can be measured (each of its containers can), in `namespace` or
    /// in all.
    pub fn pods(&self, namespace: Option<&str>) -> BTreeMap<(String, String), PodUsage> {
        let state = self.read();
        let mut out = BTreeMap::new();
        for pods in state.pods.values() {
            for ((ns, name), containers) in pods {
                if namespace.is_some_and(|n| n != ns) {
                    continue;
                }
                let usage: Option<BTreeMap<String, Usage>> = containers
                    .iter()
                    .map(|(c, s)| Some((c.clone(), s.usage()?)))
                    .collect();
                let Some(usage) = usage.filter(|u| !u.is_empty()) else {
                    continue;
                };
                let timestamp = usage.values().map(|u| u.timestamp).max().expect("some");
                let window = usage.values().map(|u| u.window).max().expect("some");
                out.insert(
                    (ns.clone(), name.clone()),
                    PodUsage {
                        timestamp,
                        window,
                        containers: usage,
                    },
                );
            }
        }
        out
    }

    /// Takes in one node's reading: its own point and its containers', replacing what the
    /// node had (pods that are gone from it are forgotten).
    fn record(&self, node: &str, metrics: &ResourceMetrics) {
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        if let Some(point) = metrics.node {
            let series = Series::push(state.nodes.get(node), point);
            state.nodes.insert(node.to_owned(), series);
        }
        let before = state.pods.remove(node).unwrap_or_default();
        let mut now = NodePods::with_capacity(before.len());
        for ((ns, pod, container), point) in &metrics.containers {
            let key = (ns.clone(), pod.clone());
            let previous = before
                .get(&key)
                .and_then(|c| c.iter().find(|(name, _)| name == container))
                .map(|(_, s)| s);
            now.entry(key)
                .or_default()
                .push((container.clone(), Series::push(previous, *point)));
        }
        for containers in now.values_mut() {
            containers.shrink_to_fit();
        }
        state.pods.insert(node.to_owned(), now);
    }

    /// Forgets nodes that are gone.
    fn retain_nodes(&self, nodes: &[String]) {
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        state.nodes.retain(|n, _| nodes.contains(n));
        state.pods.retain(|n, _| nodes.contains(n));
    }
}

/// One kubelet's `/metrics/resource`, read.
#[derive(Debug, Default, PartialEq)]
struct ResourceMetrics {
    node: Option<Point>,
    containers: BTreeMap<(String, String, String), Point>,
}

/// What went wrong reading a kubelet's metrics.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    /// The API server (or the kubelet behind it) did not answer with metrics.
    #[error("unable to fetch metrics from node {node}: {message}")]
    Fetch {
        /// The node.
        node: String,
        /// What went wrong.
        message: String,
    },
}

/// The labels of a Prometheus sample (`{container="c",namespace="n",pod="p"}`).
fn labels(text: &str) -> BTreeMap<&str, &str> {
    text.split(',')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            Some((k.trim(), v.trim().trim_matches('"')))
        })
        .collect()
}

/// Reads the Prometheus text of `/metrics/resource` (as metrics-server's decoder does: the
/// container and node CPU counters, working sets and start times, with their timestamps in
/// milliseconds).
fn parse(text: &str) -> ResourceMetrics {
    #[derive(Default)]
    struct Partial {
        cpu: Option<(f64, i64)>,
        memory: Option<u64>,
        started: Option<i64>,
    }
    let mut node = Partial::default();
    let mut containers: BTreeMap<(String, String, String), Partial> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (name_labels, rest) = match line.find('}') {
            Some(end) => (&line[..=end], line[end + 1..].trim()),
            None => match line.split_once(' ') {
                Some((name, rest)) => (name, rest.trim()),
                None => continue,
            },
        };
        let (name, label_text) = match name_labels.split_once('{') {
            Some((name, labels)) => (name, labels.trim_end_matches('}')),
            None => (name_labels, ""),
        };
        let mut fields = rest.split_whitespace();
        let Some(value) = fields.next().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        let at = fields
            .next()
            .and_then(|t| t.parse::<i64>().ok())
            .unwrap_or(0);
        let container = || {
            let l = labels(label_text);
            Some((
                l.get("namespace")?.to_string(),
                l.get("pod")?.to_string(),
                l.get("container")?.to_string(),
            ))
        };
        match name {
            "node_cpu_usage_seconds_total" => node.cpu = Some((value, at)),
            "node_memory_working_set_bytes" => node.memory = Some(value as u64),
            "container_cpu_usage_seconds_total" => {
                if let Some(key) = container() {
                    containers.entry(key).or_default().cpu = Some((value, at));
                }
            }
            "container_memory_working_set_bytes" => {
                if let Some(key) = container() {
                    containers.entry(key).or_default().memory = Some(value as u64);
                }
            }
            "container_start_time_seconds" => {
                if let Some(key) = container() {
                    containers.entry(key).or_default().started = Some(value as i64);
                }
            }
            _ => {}
        }
    }
    let point = |p: &Partial| -> Option<Point> {
        let (cpu_seconds, at) = p.cpu?;
        Some(Point {
            at: Timestamp::from_millisecond(at).ok()?,
            cpu_seconds,
            memory: p.memory?,
            started: p.started.and_then(|s| Timestamp::from_second(s).ok()),
        })
    };
    ResourceMetrics {
        node: point(&node),
        containers: containers
            .iter()
            .filter_map(|(k, p)| Some((k.clone(), point(p)?)))
            .collect(),
    }
}

/// The metrics server: reads every kubelet each resolution, through the API server.
pub struct MetricsServer {
    client: kube::Client,
    flow: Flow,
    resolution: Duration,
    scraped: Arc<Scraped>,
}

impl MetricsServer {
    /// A metrics server reading through `client` every `resolution` into `scraped`.
    pub fn new(
        client: kube::Client,
        flow: Flow,
        resolution: Duration,
        scraped: Arc<Scraped>,
    ) -> Self {
        MetricsServer {
            client,
            flow,
            resolution,
            scraped,
        }
    }

    /// Reads one node's kubelet.
    async fn scrape(&self, node: &str) -> Result<ResourceMetrics, ScrapeError> {
        let path = format!("/api/v1/nodes/{node}/proxy/metrics/resource");
        let request =
            http::Request::get(&path)
                .body(Vec::new())
                .map_err(|e| ScrapeError::Fetch {
                    node: node.to_owned(),
                    message: e.to_string(),
                })?;
        let text = tokio::time::timeout(self.resolution, self.client.request_text(request))
            .await
            .map_err(|_| ScrapeError::Fetch {
                node: node.to_owned(),
                message: "timed out".into(),
            })?
            .map_err(|e| ScrapeError::Fetch {
                node: node.to_owned(),
                message: e.to_string(),
            })?;
        Ok(parse(&text))
    }

    /// One round: every node with a kubelet endpoint, read at most [`CONCURRENT_SCRAPES`] at
    /// a time; a hop says what was read.
    async fn round(&self) {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let Ok(list) = nodes.list(&ListParams::default()).await else {
            return;
        };
        let names: Vec<String> = list
            .items
            .iter()
            .filter(|n| {
                n.status
                    .as_ref()
                    .and_then(|s| s.daemon_endpoints.as_ref())
                    .and_then(|d| d.kubelet_endpoint.as_ref())
                    .is_some_and(|e| e.port > 0)
            })
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        let results: Vec<(String, Result<ResourceMetrics, ScrapeError>)> =
            futures::stream::iter(names.iter().cloned())
                .map(|node| async move {
                    let result = self.scrape(&node).await;
                    (node, result)
                })
                .buffer_unordered(CONCURRENT_SCRAPES)
                .collect()
                .await;
        let (mut pods, mut failed) = (0, Vec::new());
        for (node, result) in results {
            match result {
                Ok(metrics) => {
                    pods += metrics
                        .containers
                        .keys()
                        .map(|(ns, pod, _)| (ns, pod))
                        .collect::<std::collections::BTreeSet<_>>()
                        .len();
                    self.scraped.record(&node, &metrics);
                }
                Err(error) => {
                    tracing::debug!(%error, "scrape failed");
                    failed.push(node);
                }
            }
        }
        self.scraped.retain_nodes(&names);
        let mut detail = format!(
            "scraped {} node(s), {pods} pod(s) with containers running",
            names.len() - failed.len()
        );
        if !failed.is_empty() {
            detail.push_str(&format!("; unable to fetch from {}", failed.join(", ")));
        }
        self.flow.emit(
            FlowEvent::new(COMPONENT, "kubelet", "SCRAPE")
                .detail(detail)
                .data(serde_json::json!({
                    "nodes": names.len() - failed.len(),
                    "pods": pods,
                    "failed": failed,
                })),
        );
    }

    /// Reads the kubelets every resolution until the task is aborted; the API is available
    /// while this runs.
    pub async fn run(self) {
        struct Running(Arc<Scraped>);
        impl Drop for Running {
            fn drop(&mut self) {
                self.0.running.store(false, Ordering::SeqCst);
                // What it kept goes with it, as with a metrics-server pod that stops.
                *self.0.state.write().unwrap_or_else(|p| p.into_inner()) = State::default();
            }
        }
        self.scraped.running.store(true, Ordering::SeqCst);
        let _running = Running(self.scraped.clone());
        let mut tick = tokio::time::interval(self.resolution);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.round().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apimachinery::summary::{
        ContainerSummary, CpuStats, MemoryStats, NodeSummary, PodReference, PodSummary, Summary,
    };

    fn summary(at: &str, cpu_ns: u64, memory: u64) -> Summary {
        let cpu = CpuStats {
            time: at.into(),
            usage_nano_cores: None,
            usage_core_nano_seconds: cpu_ns,
        };
        let mem = MemoryStats {
            time: at.into(),
            working_set_bytes: memory,
            ..MemoryStats::default()
        };
        Summary {
            node: NodeSummary {
                node_name: "node-1".into(),
                start_time: "2026-01-01T00:00:00Z".into(),
                cpu: cpu.clone(),
                memory: mem.clone(),
            },
            pods: vec![PodSummary {
                pod_ref: PodReference {
                    name: "web".into(),
                    namespace: "default".into(),
                    uid: "u".into(),
                },
                start_time: "2026-01-01T00:00:10Z".into(),
                containers: vec![ContainerSummary {
                    name: "app".into(),
                    start_time: "2026-01-01T00:00:10Z".into(),
                    cpu: cpu.clone(),
                    memory: mem.clone(),
                }],
                cpu,
                memory: mem,
            }],
        }
    }

    #[test]
    fn the_kubelets_text_reads_back() {
        let text = crate::kubelet::stats::resource_metrics(&summary(
            "2026-01-01T00:00:20Z",
            4_000_000_000,
            64 << 20,
        ));
        let read = parse(&text);
        let at = Timestamp::from_second(1_767_225_620).unwrap();
        assert_eq!(
            read.node,
            Some(Point {
                at,
                cpu_seconds: 4.0,
                memory: 64 << 20,
                started: None
            })
        );
        let container = &read.containers[&("default".into(), "web".into(), "app".into())];
        assert_eq!(container.cpu_seconds, 4.0);
        assert_eq!(
            container.started,
            Some(Timestamp::from_second(1_767_225_610).unwrap())
        );
    }

    #[test]
    fn a_rate_is_the_counters_growth_over_the_window() {
        let scraped = Scraped::default();
        let read = |at: &str, cpu: u64| {
            parse(&crate::kubelet::stats::resource_metrics(&summary(
                at,
                cpu,
                1 << 20,
            )))
        };
        // Once: the container from its start (10 s, 4 s of CPU: 400m); the node not yet.
        scraped.record("node-1", &read("2026-01-01T00:00:20Z", 4_000_000_000));
        assert!(scraped.nodes().is_empty());
        let pods = scraped.pods(None);
        let web = &pods[&("default".into(), "web".into())];
        assert_eq!(web.containers["app"].cpu_nanocores, 400_000_000);
        assert_eq!(web.window, Duration::from_secs(10));
        // Twice: 3 s of CPU in 15 s is 200m, for both.
        scraped.record("node-1", &read("2026-01-01T00:00:35Z", 7_000_000_000));
        assert_eq!(scraped.nodes()["node-1"].cpu_nanocores, 200_000_000);
        assert_eq!(scraped.nodes()["node-1"].window, Duration::from_secs(15));
        let pods = scraped.pods(Some("default"));
        assert_eq!(
            pods[&("default".into(), "web".into())].containers["app"],
            Usage {
                timestamp: Timestamp::from_second(1_767_225_635).unwrap(),
                window: Duration::from_secs(15),
                cpu_nanocores: 200_000_000,
                memory_bytes: 1 << 20,
            }
        );
        assert!(scraped.pods(Some("other")).is_empty());
        // A node that is gone is forgotten with its pods.
        scraped.retain_nodes(&[]);
        assert!(scraped.nodes().is_empty() && scraped.pods(None).is_empty());
    }
}
