//! What the dashboard's `:top` view knows: the live CPU and memory of every node and pod, as
//! the metrics API (`metrics.k8s.io/v1beta1`, served from metrics-server's scrapes) last
//! answered, with a short history per object for sparklines; what each node can give
//! (`status.allocatable`) and what each pod asked for (its containers' requests and limits,
//! summed); the metrics server's last `SCRAPE` hop; and the HorizontalPodAutoscaler
//! controller's recent decisions, from its `DECIDE` and `SCALE` hops. Pure data and functions:
//! `tui::source` reads the API and the flow into them, the model keeps them, the view draws them.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde::Deserialize;

use crate::apimachinery::quantity::{bytes, cpu_millis};
use crate::flow::FlowEvent;

/// How many samples of each node and pod are kept for its sparkline.
pub const HISTORY: usize = 30;

/// How many decisions of each HorizontalPodAutoscaler are kept.
pub const DECISIONS: usize = 5;

/// Who the HorizontalPodAutoscaler controller's hops come from.
pub const HPA_CONTROLLER: &str = "controller/horizontal-pod-autoscaler";

/// Who the metrics server's hops come from.
pub const METRICS_SERVER: &str = "metrics-server";

/// CPU in millicores and memory in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// CPU, in millicores.
    pub cpu: i64,
    /// Memory, in bytes.
    pub memory: i64,
}

/// What a pod asked for: its containers' requests and limits, summed. A limit is only known
/// when every container sets it (one unlimited container leaves the pod unlimited).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    /// CPU requested, in millicores.
    pub cpu_request: Option<i64>,
    /// CPU limit, in millicores.
    pub cpu_limit: Option<i64>,
    /// Memory requested, in bytes.
    pub memory_request: Option<i64>,
    /// Memory limit, in bytes.
    pub memory_limit: Option<i64>,
}

impl Resources {
    /// The request and limit of `resource` (`cpu` or `memory`).
    pub fn of(&self, resource: Resource) -> (Option<i64>, Option<i64>) {
        match resource {
            Resource::Cpu => (self.cpu_request, self.cpu_limit),
            Resource::Memory => (self.memory_request, self.memory_limit),
        }
    }
}

/// One of the two resources the metrics API reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    /// CPU, in millicores.
    Cpu,
    /// Memory, in bytes.
    Memory,
}

impl Resource {
    /// This resource of `usage`.
    pub fn of(self, usage: Usage) -> i64 {
        match self {
            Resource::Cpu => usage.cpu,
            Resource::Memory => usage.memory,
        }
    }

    /// An amount of it as Kubernetes writes one, short (`400m`, `1.5`, `64Mi`, `1.2Gi`).
    pub fn text(self, amount: i64) -> String {
        match self {
            Resource::Cpu => cpu_text(amount),
            Resource::Memory => memory_text(amount),
        }
    }
}

/// Millicores as a short quantity: `0`, `400m`, `2`, `1.5`.
pub fn cpu_text(millis: i64) -> String {
    if millis < 1000 {
        format!("{millis}m")
    } else if millis % 1000 == 0 {
        format!("{}", millis / 1000)
    } else {
        let text = format!("{:.2}", millis as f64 / 1000.0);
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// Bytes as a short binary quantity: `900`, `12Ki`, `64Mi`, `1.5Gi`.
pub fn memory_text(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["", "Ki", "Mi", "Gi", "Ti"];
    let mut value = bytes.max(0) as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value >= 10.0 || value.fract() < 0.05 {
        format!("{}{}", value.round() as i64, UNITS[unit])
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

/// One object's usage, as one item of a metrics list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    /// `name` for a node, `namespace/name` for a pod.
    pub key: String,
    /// When the metrics server read it (`timestamp`, RFC 3339).
    pub timestamp: String,
    /// Over how long it was measured (`window`, `15s`).
    pub window: String,
    /// What it used (a pod's containers summed).
    pub usage: Usage,
}

/// One answer of the metrics API poll.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetricsRead {
    /// `GET .../nodes` and `GET .../pods` answered.
    Lists {
        /// The NodeMetricsList's items.
        nodes: Vec<Sample>,
        /// The PodMetricsList's items.
        pods: Vec<Sample>,
    },
    /// The API did not answer with metrics (the metrics server is stopped: 503; the API is not
    /// served: 404; or the request failed), in these words.
    Unavailable(String),
}

/// Whether the metrics API answers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum MetricsState {
    /// Not asked yet.
    #[default]
    Waiting,
    /// It answered with metrics.
    Serving,
    /// It did not, for this reason; the usage shown is the last it gave.
    Unavailable(String),
}

/// The latest usage of one node or pod and its recent history.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    /// The latest sample's `timestamp`.
    pub timestamp: String,
    /// The latest sample's `window`.
    pub window: String,
    /// Usage, one entry per scrape the API reported (a poll that finds the same timestamp adds
    /// none), oldest first, at most [`HISTORY`].
    pub history: VecDeque<Usage>,
}

impl Series {
    /// The latest usage.
    pub fn latest(&self) -> Option<Usage> {
        self.history.back().copied()
    }

    fn take(&mut self, sample: Sample) {
        if self.history.is_empty() || self.timestamp != sample.timestamp {
            if self.history.len() >= HISTORY {
                self.history.pop_front();
            }
            self.history.push_back(sample.usage);
        }
        self.timestamp = sample.timestamp;
        self.window = sample.window;
    }
}

/// The metrics server's last round, from its `SCRAPE` hop.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Scrape {
    /// When (the hop's time).
    #[serde(skip)]
    pub time: String,
    /// Nodes read.
    #[serde(default)]
    pub nodes: u64,
    /// Pods with running containers read.
    #[serde(default)]
    pub pods: u64,
    /// Nodes it could not read.
    #[serde(default)]
    pub failed: Vec<String>,
}

/// One decision of the HorizontalPodAutoscaler controller, from its `DECIDE` hop (and marked
/// scaled by the `SCALE` hop that carried it out).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Decision {
    /// The `DECIDE` hop's sequence number.
    #[serde(skip)]
    pub seq: u64,
    /// When it decided (the latest hop's time, when repeated).
    #[serde(skip)]
    pub time: String,
    /// Replicas the target had.
    #[serde(default)]
    pub current: i64,
    /// Replicas the metrics asked for, before the limits and stabilization.
    #[serde(default)]
    pub proposed: Option<i64>,
    /// Replicas it decided on.
    #[serde(default)]
    pub desired: i64,
    /// `minReplicas`.
    #[serde(default)]
    pub min: Option<i64>,
    /// `maxReplicas`.
    #[serde(default)]
    pub max: Option<i64>,
    /// The metric that decided (`cpu resource utilization (percentage of request)`).
    #[serde(default)]
    pub metric: String,
    /// Its current value (`85%`).
    #[serde(default)]
    pub value: String,
    /// Its target (`50%`).
    #[serde(default)]
    pub target: String,
    /// What limited it (`DesiredWithinRange`, `ScaleUpLimit`, ...).
    #[serde(default)]
    pub limit: String,
    /// Why it could not decide, if it could not.
    #[serde(default)]
    pub error: String,
    /// Whether a `SCALE` hop carried it out.
    #[serde(skip)]
    pub scaled: bool,
    /// How many times in a row the controller decided the same (it re-decides every sync).
    #[serde(skip)]
    pub repeats: u32,
}

impl Decision {
    /// Whether `other` decided the same thing (so it only repeats this one).
    fn same(&self, other: &Decision) -> bool {
        (
            self.current,
            self.desired,
            &self.value,
            &self.target,
            &self.error,
        ) == (
            other.current,
            other.desired,
            &other.value,
            &other.target,
            &other.error,
        )
    }
}

/// Everything `:top` shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metrics {
    /// Whether the metrics API answers.
    pub state: MetricsState,
    /// Nodes' usage, by name.
    pub nodes: BTreeMap<String, Series>,
    /// Pods' usage, by `namespace/name`.
    pub pods: BTreeMap<String, Series>,
    /// Each node's `status.allocatable`, by name.
    pub allocatable: BTreeMap<String, Usage>,
    /// Each pod's requests and limits, by `namespace/name`.
    pub resources: BTreeMap<String, Resources>,
    /// The metrics server's last `SCRAPE` hop.
    pub scrape: Option<Scrape>,
    /// Each HorizontalPodAutoscaler's recent decisions (`namespace/name`), oldest first, at
    /// most [`DECISIONS`].
    pub decisions: BTreeMap<String, VecDeque<Decision>>,
}

impl Metrics {
    /// Takes in one poll of the metrics API. Objects the API no longer lists are forgotten;
    /// an unavailable API keeps the last usage it gave.
    pub fn read(&mut self, read: MetricsRead) {
        match read {
            MetricsRead::Unavailable(why) => self.state = MetricsState::Unavailable(why),
            MetricsRead::Lists { nodes, pods } => {
                self.state = MetricsState::Serving;
                merge(&mut self.nodes, nodes);
                merge(&mut self.pods, pods);
            }
        }
    }

    /// Takes in a flow event: the metrics server's `SCRAPE`, the HPA controller's `DECIDE` and
    /// `SCALE`; others are ignored.
    pub fn flow(&mut self, e: &FlowEvent) {
        if e.from == METRICS_SERVER && e.verb == "SCRAPE" {
            let mut scrape: Scrape = e
                .data
                .as_ref()
                .and_then(|d| serde_json::from_str(d.get()).ok())
                .unwrap_or_default();
            scrape.time = e.time.clone();
            self.scrape = Some(scrape);
            return;
        }
        if e.from != HPA_CONTROLLER
            || e.kind != "HorizontalPodAutoscaler"
            || !matches!(e.verb.as_str(), "DECIDE" | "SCALE")
        {
            return;
        }
        let Some(mut decision) = e
            .data
            .as_ref()
            .and_then(|d| serde_json::from_str::<Decision>(d.get()).ok())
        else {
            return;
        };
        decision.seq = e.seq;
        decision.time = e.time.clone();
        let kept = self
            .decisions
            .entry(format!("{}/{}", e.namespace, e.name))
            .or_default();
        if e.verb == "SCALE" {
            // The scale carries out the newest decision to these replicas.
            if let Some(last) = kept.iter_mut().rev().find(|d| {
                !d.scaled && (d.current, d.desired) == (decision.current, decision.desired)
            }) {
                last.scaled = true;
                return;
            }
            decision.scaled = true;
        } else if let Some(last) = kept.back_mut()
            && !last.scaled
            && last.same(&decision)
        {
            last.repeats += 1;
            last.seq = decision.seq;
            last.time = decision.time;
            return;
        }
        if kept.len() >= DECISIONS {
            kept.pop_front();
        }
        kept.push_back(decision);
    }

    /// Forgets a node that is gone.
    pub fn forget_node(&mut self, name: &str) {
        self.allocatable.remove(name);
        self.nodes.remove(name);
    }

    /// Forgets a pod that is gone (`namespace/name`).
    pub fn forget_pod(&mut self, key: &str) {
        self.resources.remove(key);
        self.pods.remove(key);
    }

    /// The autoscalers, the one that decided last first.
    pub fn autoscalers(&self) -> Vec<(&String, &VecDeque<Decision>)> {
        let mut all: Vec<_> = self.decisions.iter().collect();
        all.sort_by_key(|(_, d)| std::cmp::Reverse(d.back().map_or(0, |d| d.seq)));
        all
    }
}

fn merge(series: &mut BTreeMap<String, Series>, samples: Vec<Sample>) {
    let listed: BTreeSet<&str> = samples.iter().map(|s| s.key.as_str()).collect();
    series.retain(|k, _| listed.contains(k.as_str()));
    for sample in samples {
        series.entry(sample.key.clone()).or_default().take(sample);
    }
}

#[derive(Deserialize)]
struct WireList {
    #[serde(default)]
    items: Vec<WireItem>,
}

#[derive(Deserialize, Default)]
struct WireMeta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
}

#[derive(Deserialize)]
struct WireItem {
    #[serde(default)]
    metadata: WireMeta,
    #[serde(default)]
    timestamp: String,
    #[serde(default)]
    window: String,
    #[serde(default)]
    usage: BTreeMap<String, String>,
    #[serde(default)]
    containers: Vec<WireContainer>,
}

#[derive(Deserialize)]
struct WireContainer {
    #[serde(default)]
    usage: BTreeMap<String, String>,
}

/// A usage map (`{"cpu":"400m","memory":"64Mi"}`); `None` if a quantity is unreadable.
fn usage_of(usage: &BTreeMap<String, String>) -> Option<Usage> {
    Some(Usage {
        cpu: usage.get("cpu").map_or(Ok(0), |q| cpu_millis(q)).ok()?,
        memory: usage.get("memory").map_or(Ok(0), |q| bytes(q)).ok()?,
    })
}

/// Reads a `NodeMetricsList` or `PodMetricsList` answer into samples: a node's usage, or a
/// pod's containers' usage summed. An item with an unreadable quantity is left out.
pub fn read_list(text: &str) -> Result<Vec<Sample>, String> {
    let list: WireList =
        serde_json::from_str(text).map_err(|e| format!("an unreadable metrics list: {e}"))?;
    Ok(list
        .items
        .into_iter()
        .filter(|item| !item.metadata.name.is_empty())
        .filter_map(|item| {
            let usage = if item.containers.is_empty() {
                usage_of(&item.usage)?
            } else {
                let mut sum = Usage::default();
                for c in &item.containers {
                    let u = usage_of(&c.usage)?;
                    sum.cpu += u.cpu;
                    sum.memory += u.memory;
                }
                sum
            };
            let key = if item.metadata.namespace.is_empty() {
                item.metadata.name
            } else {
                format!("{}/{}", item.metadata.namespace, item.metadata.name)
            };
            Some(Sample {
                key,
                timestamp: item.timestamp,
                window: item.window,
                usage,
            })
        })
        .collect())
}

/// A node's `status.allocatable` (its capacity when no allocatable is written).
pub fn allocatable(node: &Node) -> Usage {
    let status = node.status.as_ref();
    let pick = |resource: &str| -> Option<&Quantity> {
        status
            .and_then(|s| s.allocatable.as_ref())
            .and_then(|a| a.get(resource))
            .or_else(|| {
                status
                    .and_then(|s| s.capacity.as_ref())
                    .and_then(|c| c.get(resource))
            })
    };
    Usage {
        cpu: pick("cpu").and_then(|q| cpu_millis(&q.0).ok()).unwrap_or(0),
        memory: pick("memory").and_then(|q| bytes(&q.0).ok()).unwrap_or(0),
    }
}

/// A pod's requests and limits: its containers' summed (init containers run before them and
/// are not counted).
pub fn resources(pod: &Pod) -> Resources {
    let containers = pod.spec.as_ref().map_or(&[][..], |s| &s.containers[..]);
    let sum = |resource: &str, limits: bool| -> Option<i64> {
        let mut total = None::<i64>;
        for c in containers {
            let r = c.resources.as_ref();
            let map = if limits {
                r.and_then(|r| r.limits.as_ref())
            } else {
                r.and_then(|r| r.requests.as_ref())
            };
            let amount = map.and_then(|m| m.get(resource)).and_then(|q| {
                if resource == "cpu" {
                    cpu_millis(&q.0).ok()
                } else {
                    bytes(&q.0).ok()
                }
            });
            match amount {
                Some(a) => total = Some(total.unwrap_or(0) + a),
                // One container without a limit leaves the pod without one.
                None if limits => return None,
                None => {}
            }
        }
        total
    };
    Resources {
        cpu_request: sum("cpu", false),
        cpu_limit: sum("cpu", true),
        memory_request: sum("memory", false),
        memory_limit: sum("memory", true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lists_read_nodes_and_pods_summing_containers() {
        let nodes = json!({"kind": "NodeMetricsList", "items": [
            {"metadata": {"name": "node-1"}, "timestamp": "2026-01-01T12:00:15Z", "window": "15s",
             "usage": {"cpu": "400m", "memory": "64Mi"}},
            {"metadata": {"name": "node-2"}, "timestamp": "2026-01-01T12:00:15Z", "window": "15s",
             "usage": {"cpu": "17483094n", "memory": "12868Ki"}},
            {"metadata": {"name": "bad"}, "usage": {"cpu": "lots"}},
        ]});
        let samples = read_list(&nodes.to_string()).unwrap();
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[0].key, "node-1");
        assert_eq!(
            samples[0].usage,
            Usage {
                cpu: 400,
                memory: 64 << 20
            }
        );
        assert_eq!(
            samples[1].usage,
            Usage {
                cpu: 18,
                memory: 12868 << 10
            }
        );
        let pods = json!({"kind": "PodMetricsList", "items": [
            {"metadata": {"name": "web-1", "namespace": "default"}, "timestamp": "t", "window": "15s",
             "containers": [{"name": "app", "usage": {"cpu": "2", "memory": "1000"}},
                            {"name": "side", "usage": {"cpu": "250m", "memory": "24"}}]},
        ]});
        let samples = read_list(&pods.to_string()).unwrap();
        assert_eq!(samples[0].key, "default/web-1");
        assert_eq!(
            samples[0].usage,
            Usage {
                cpu: 2250,
                memory: 1024
            }
        );
        assert!(read_list("<html>").is_err());
    }

    #[test]
    fn quantities_print_short() {
        assert_eq!(cpu_text(0), "0m");
        assert_eq!(cpu_text(400), "400m");
        assert_eq!(cpu_text(2000), "2");
        assert_eq!(cpu_text(1500), "1.5");
        assert_eq!(cpu_text(1250), "1.25");
        assert_eq!(memory_text(900), "900");
        assert_eq!(memory_text(64 << 20), "64Mi");
        assert_eq!(memory_text(3 << 29), "1.5Gi");
    }

    #[test]
    fn requests_and_limits_sum_over_containers() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [
                {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"},
                                            "limits": {"cpu": "200m", "memory": "128Mi"}}},
                {"name": "b", "resources": {"requests": {"cpu": "50m"}, "limits": {"cpu": "1"}}},
            ]}
        }))
        .unwrap();
        assert_eq!(
            resources(&pod),
            Resources {
                cpu_request: Some(150),
                cpu_limit: Some(1200),
                memory_request: Some(64 << 20),
                memory_limit: None,
            }
        );
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "n"},
            "status": {"capacity": {"cpu": "4", "memory": "8Gi"},
                       "allocatable": {"cpu": "3500m"}}
        }))
        .unwrap();
        assert_eq!(
            allocatable(&node),
            Usage {
                cpu: 3500,
                memory: 8 << 30
            }
        );
    }
}
