//! The scheduling loop: an ordinary API client that watches nodes and pods, and for each pod
//! without a node runs the filters, scores the feasible nodes, waits at the stepper's gate and
//! binds the pod through `pods/binding`, or records why it cannot (`PodScheduled=False` and a
//! `FailedScheduling` event with kube-scheduler's wording).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{reflector, watcher};
use serde_json::json;

use super::affinity;
use super::filters::{self, Filter, NodeInfo};
use super::scores;
use crate::flow::{Flow, FlowEvent};

/// The scheduler's name, in `spec.schedulerName` and in its events.
pub const SCHEDULER_NAME: &str = "default-scheduler";

/// One scheduling decision, as the flow (and the dashboard) shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// Per node: the filter reasons that rejected it (empty: feasible).
    pub rejected: BTreeMap<String, Vec<String>>,
    /// Per feasible node: per plugin, (raw, normalised) scores.
    pub scores: BTreeMap<String, BTreeMap<String, (i64, i64)>>,
    /// The weighted totals.
    pub totals: BTreeMap<String, i64>,
    /// The chosen node, if any.
    pub chosen: Option<String>,
}

fn key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

fn needs_scheduling(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    spec.is_some_and(|s| s.node_name.as_deref().is_none_or(str::is_empty))
        && spec
            .and_then(|s| s.scheduler_name.as_deref())
            .is_none_or(|n| n == SCHEDULER_NAME)
        && pod.metadata.deletion_timestamp.is_none()
        && !matches!(phase, Some("Succeeded" | "Failed"))
}

/// Filters and scores `pod` against `nodes`.
pub fn decide(pod: &Pod, nodes: &[NodeInfo], nodes_with_image: &dyn Fn(&str) -> usize) -> Decision {
    let mut decision = Decision {
        rejected: BTreeMap::new(),
        scores: BTreeMap::new(),
        totals: BTreeMap::new(),
        chosen: None,
    };
    let mut feasible = Vec::new();
    for node in nodes {
        let name = node.node.metadata.name.clone().unwrap_or_default();
        let mut reasons = Vec::new();
        for result in [
            filters::node_name(pod, node),
            filters::node_unschedulable(pod, node),
            filters::node_resources_fit(pod, node),
            affinity::filter(pod, node),
            filters::taint_toleration(pod, node),
        ] {
            if let Filter::Unschedulable(r) = result {
                reasons.extend(r);
                // kube-scheduler stops at the first failing filter for a node.
                break;
            }
        }
        if reasons.is_empty() {
            feasible.push(node);
        } else {
            decision.rejected.insert(name, reasons);
        }
    }
    if feasible.is_empty() {
        return decision;
    }
    let names: Vec<String> = feasible
        .iter()
        .map(|n| n.node.metadata.name.clone().unwrap_or_default())
        .collect();
    let raw = |f: &dyn Fn(&NodeInfo) -> i64| feasible.iter().map(|n| f(n)).collect::<Vec<i64>>();
    let mut plugins: Vec<(&str, Vec<i64>, Vec<i64>)> = Vec::new();
    let least = raw(&|n| scores::least_allocated(pod, n));
    plugins.push(("NodeResourcesFit", least.clone(), least));
    let balanced = raw(&|n| scores::balanced_allocation(pod, n));
    plugins.push((
        "NodeResourcesBalancedAllocation",
        balanced.clone(),
        balanced,
    ));
    let taints = raw(&|n| scores::intolerable_taints(pod, n));
    let mut taints_normalized = taints.clone();
    scores::normalize_reverse(&mut taints_normalized);
    plugins.push(("TaintToleration", taints, taints_normalized));
    let affinity_raw = raw(&|n| affinity::score(pod, n));
    let mut affinity_normalized = affinity_raw.clone();
    scores::normalize(&mut affinity_normalized);
    plugins.push(("NodeAffinity", affinity_raw, affinity_normalized));
    let images = raw(&|n| scores::image_locality(pod, n, nodes_with_image, nodes.len()));
    plugins.push(("ImageLocality", images.clone(), images));
    for (i, name) in names.iter().enumerate() {
        let mut per_plugin = BTreeMap::new();
        let mut total = 0;
        for (plugin, raw, normalized) in &plugins {
            let weight = scores::WEIGHTS
                .iter()
                .find(|(p, _)| p == plugin)
                .map_or(1, |(_, w)| *w);
            total += normalized[i] * weight;
            per_plugin.insert((*plugin).to_owned(), (raw[i], normalized[i]));
        }
        decision.scores.insert(name.clone(), per_plugin);
        decision.totals.insert(name.clone(), total);
    }
    // The highest total wins; ties go to the first name, so decisions are reproducible.
    decision.chosen = names
        .iter()
        .max_by(|a, b| {
            decision.totals[*a]
                .cmp(&decision.totals[*b])
                .then_with(|| b.cmp(a))
        })
        .cloned();
    decision
}

/// The scheduler: runs until its task is aborted.
pub struct Scheduler {
    client: kube::Client,
    flow: Flow,
}

impl Scheduler {
    /// A scheduler talking to the API server through `client`.
    pub fn new(client: kube::Client, flow: Flow) -> Self {
        Scheduler { client, flow }
    }

    /// Watches nodes and pods and schedules pending pods, forever.
    pub async fn run(self) {
        let (nodes, node_events) =
            crate::informers::cache::<Node>(&self.client, watcher::Config::default());
        let (pods, pod_events) =
            crate::informers::cache::<Pod>(&self.client, watcher::Config::default());
        let mut changes = futures::stream::select(node_events, pod_events).boxed();
        // The stores fill as the watches are polled: poll until both have their first list.
        crate::informers::prime(&mut changes, async {
            let _ = nodes.wait_until_ready().await;
            let _ = pods.wait_until_ready().await;
        })
        .await;
        // Pods bound here that the pod store has not seen bound yet.
        let mut assumed: HashMap<String, String> = HashMap::new();
        // The last message reported for each unschedulable pod, so events are not repeated.
        let mut reported: HashMap<String, String> = HashMap::new();
        let mut pace = crate::informers::Pace::default();
        loop {
            self.schedule_pending(&nodes, &pods, &mut assumed, &mut reported)
                .await;
            // Wait for the next burst of changes (or retry after a while).
            crate::informers::next_batch(&mut changes, Duration::from_secs(5), &mut pace).await;
        }
    }

    async fn schedule_pending(
        &self,
        nodes: &reflector::Store<Node>,
        pods: &reflector::Store<Pod>,
        assumed: &mut HashMap<String, String>,
        reported: &mut HashMap<String, String>,
    ) {
        let all_pods = pods.state();
        assumed.retain(|k, _| all_pods.iter().any(|p| key(p) == *k && needs_scheduling(p)));
        let mut pending: Vec<_> = all_pods
            .iter()
            .filter(|p| needs_scheduling(p) && !assumed.contains_key(&key(p)))
            .cloned()
            .collect();
        pending.sort_by(|a, b| {
            a.metadata
                .creation_timestamp
                .cmp(&b.metadata.creation_timestamp)
                .then_with(|| key(a).cmp(&key(b)))
        });
        if pending.is_empty() {
            return;
        }
        let mut infos: Vec<NodeInfo> = nodes
            .state()
            .iter()
            .map(|n| NodeInfo {
                node: (**n).clone(),
                pods: Vec::new(),
            })
            .collect();
        infos.sort_by(|a, b| a.node.metadata.name.cmp(&b.node.metadata.name));
        for pod in all_pods.iter() {
            let node = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .filter(|n| !n.is_empty())
                .or_else(|| assumed.get(&key(pod)).cloned());
            let finished = matches!(
                pod.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            );
            if let (Some(node), false) = (node, finished)
                && let Some(info) = infos
                    .iter_mut()
                    .find(|i| i.node.metadata.name.as_deref() == Some(&node))
            {
                info.pods.push((**pod).clone());
            }
        }
        for pod in pending {
            let images_on = |image: &str| {
                infos
                    .iter()
                    .filter(|i| {
                        i.node
                            .status
                            .as_ref()
                            .and_then(|s| s.images.as_ref())
                            .is_some_and(|imgs| {
                                imgs.iter().any(|img| {
                                    img.names.iter().flatten().any(|n| n.ends_with(image))
                                })
                            })
                    })
                    .count()
            };
            let decision = decide(&pod, &infos, &images_on);
            let pod_key = key(&pod);
            match decision.chosen.clone() {
                Some(node) => {
                    if self.bind(&pod, &node, &decision).await {
                        assumed.insert(pod_key.clone(), node.clone());
                        reported.remove(&pod_key);
                        if let Some(info) = infos
                            .iter_mut()
                            .find(|i| i.node.metadata.name.as_deref() == Some(&node))
                        {
                            info.pods.push((*pod).clone());
                        }
                    }
                }
                None => {
                    let message = if infos.is_empty() {
                        "no nodes available to schedule pods".to_owned()
                    } else {
                        filters::failed_scheduling(
                            infos.len(),
                            &decision.rejected.values().cloned().collect::<Vec<_>>(),
                        )
                    };
                    if reported.get(&pod_key) != Some(&message) {
                        self.unschedulable(&pod, &message).await;
                        reported.insert(pod_key, message);
                    }
                }
            }
        }
    }

    fn event(&self, verb: &str, pod: &Pod, detail: String) {
        let mut event = FlowEvent::new("scheduler", "apiserver", verb)
            .object(
                "Pod",
                pod.metadata.namespace.as_deref().unwrap_or_default(),
                pod.metadata.name.as_deref().unwrap_or_default(),
            )
            .detail(detail);
        event.uid = pod.metadata.uid.clone().unwrap_or_default();
        self.flow.emit(event);
    }

    async fn bind(&self, pod: &Pod, node: &str, decision: &Decision) -> bool {
        let (namespace, name) = (
            pod.metadata.namespace.clone().unwrap_or_default(),
            pod.metadata.name.clone().unwrap_or_default(),
        );
        let summary: Vec<String> = decision
            .totals
            .iter()
            .map(|(n, t)| format!("{n}={t}"))
            .collect();
        let detail = format!(
            "filter: {} nodes -> {} feasible; score {}; bind {node}",
            decision.rejected.len() + decision.totals.len(),
            decision.totals.len(),
            summary.join(" ")
        );
        self.flow.stepper().gate().await;
        self.event("BIND", pod, detail);
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, "namespace": namespace}, "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
        match pods
            .create_subresource::<_, serde_json::Value>(
                "binding",
                &name,
                &PostParams::default(),
                &binding,
            )
            .await
        {
            Ok(_) => {
                self.record_event(
                    pod,
                    "Normal",
                    "Scheduled",
                    &format!("Successfully assigned {namespace}/{name} to {node}"),
                )
                .await;
                true
            }
            Err(error) => {
                tracing::debug!(%error, pod = %name, "binding failed");
                false
            }
        }
    }

    async fn unschedulable(&self, pod: &Pod, message: &str) {
        let (namespace, name) = (
            pod.metadata.namespace.clone().unwrap_or_default(),
            pod.metadata.name.clone().unwrap_or_default(),
        );
        self.event("UNSCHEDULABLE", pod, message.to_owned());
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let now = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let status = json!({"status": {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message, "lastProbeTime": null, "lastTransitionTime": now}]}});
        if let Err(error) = pods
            .patch_status(&name, &PatchParams::default(), &Patch::Strategic(status))
            .await
        {
            tracing::debug!(%error, pod = %name, "could not record PodScheduled=False");
        }
        self.record_event(pod, "Warning", "FailedScheduling", message)
            .await;
    }

    async fn record_event(&self, pod: &Pod, kind: &str, reason: &str, message: &str) {
        let about = crate::events::Involved {
            kind: "Pod",
            namespace: pod.metadata.namespace.as_deref().unwrap_or_default(),
            name: pod.metadata.name.as_deref().unwrap_or_default(),
            uid: pod.metadata.uid.as_deref().unwrap_or_default(),
        };
        let instance = format!("{SCHEDULER_NAME}-orrery");
        let source = crate::events::Source {
            component: SCHEDULER_NAME,
            host: None,
            instance: Some(&instance),
        };
        crate::events::record(&self.client, &about, &source, kind, reason, message).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cpu: &str) -> NodeInfo {
        NodeInfo {
            node: serde_json::from_value(json!({"metadata": {"name": name}, "status": {"allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"}}})).unwrap(),
            pods: Vec::new(),
        }
    }

    fn pod(cpu: &str) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}})).unwrap()
    }

    #[test]
    fn decisions() {
        let none = |_: &str| 0usize;
        let nodes = vec![
            node("node-1", "2"),
            node("node-2", "4"),
            node("node-3", "1"),
        ];
        let d = decide(&pod("1500m"), &nodes, &none);
        assert_eq!(d.rejected.keys().collect::<Vec<_>>(), ["node-3"]);
        assert_eq!(d.rejected["node-3"], ["Insufficient cpu"]);
        assert_eq!(
            d.chosen.as_deref(),
            Some("node-2"),
            "the emptiest node wins"
        );
        assert!(
            d.scores["node-2"]["NodeResourcesFit"].1 > d.scores["node-1"]["NodeResourcesFit"].1
        );
        let d = decide(&pod("8"), &nodes, &none);
        assert_eq!(d.chosen, None);
        assert_eq!(
            filters::failed_scheduling(3, &d.rejected.values().cloned().collect::<Vec<_>>()),
            "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
        );
    }
}
