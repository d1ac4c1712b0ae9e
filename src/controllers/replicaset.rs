//! The ReplicaSet controller: keeps `spec.replicas` pods matching each ReplicaSet's selector
//! running, creating them from the template (owned by the ReplicaSet) or deleting extras, adopts
//! orphans its selector matches, and writes the ReplicaSet's status. Like kube-controller-manager's,
//! it remembers what it has asked for ("expectations") and does not act on a ReplicaSet again
//! until its own creates and deletes have shown up, so a lagging cache never doubles a scale-up.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;

use super::event;
use crate::flow::{Flow, FlowEvent};

const COMPONENT: &str = "controller/replicaset";
/// The most pods created or deleted in one pass (upstream's `BurstReplicas`).
const BURST: usize = 500;

/// What the controller has asked for and not yet seen, per ReplicaSet uid.
#[derive(Default)]
struct Expectations {
    creates: HashMap<String, HashSet<String>>,
    deletes: HashMap<String, HashSet<String>>,
}

impl Expectations {
    /// Forgets what has been observed (a created pod that exists; a deleted pod that is gone
    /// or terminating); whether nothing is left pending for `uid`.
    fn satisfied(&mut self, uid: &str, existing: &HashSet<String>, live: &HashSet<String>) -> bool {
        if let Some(c) = self.creates.get_mut(uid) {
            c.retain(|name| !existing.contains(name));
        }
        if let Some(d) = self.deletes.get_mut(uid) {
            d.retain(|name| live.contains(name));
        }
        self.creates.get(uid).is_none_or(HashSet::is_empty)
            && self.deletes.get(uid).is_none_or(HashSet::is_empty)
    }
}

/// Whether the ReplicaSet's selector selects the pod (an empty selector selects nothing).
fn selector_matches(rs: &ReplicaSet, pod: &Pod) -> bool {
    let Some(selector) = rs.spec.as_ref().map(|s| &s.selector) else {
        return false;
    };
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    !crate::apimachinery::labels::is_empty(selector)
        && crate::apimachinery::labels::matches(selector, &labels)
}

fn controller_uid(pod: &Pod) -> Option<String> {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.clone())
}

fn is_active(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && !matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        )
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Ready for at least `min_ready` seconds (a pod's "available", as upstream counts it).
fn is_available(pod: &Pod, min_ready: i32, now: jiff::Timestamp) -> bool {
    let since = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready" && c.status == "True"))
        .map(|c| c.last_transition_time.as_ref().map(|t| t.0));
    match since {
        None => false,
        Some(_) if min_ready <= 0 => true,
        Some(None) => false,
        Some(Some(t)) => now.duration_since(t).as_secs() >= i64::from(min_ready),
    }
}

/// The ReplicaSet controller; runs until its task is aborted.
pub struct ReplicaSetController {
    client: kube::Client,
    flow: Flow,
}

impl ReplicaSetController {
    /// A controller talking to the API server through `client`.
    pub fn new(client: kube::Client, flow: Flow) -> Self {
        ReplicaSetController { client, flow }
    }
    /// The flow event of a hop this controller takes.
    fn hop(&self, verb: &str, rs: &ReplicaSet, detail: String) -> FlowEvent {
        let mut e = FlowEvent::new(COMPONENT, "apiserver", verb)
            .object(
                "ReplicaSet",
                rs.metadata.namespace.as_deref().unwrap_or_default(),
                rs.metadata.name.as_deref().unwrap_or_default(),
            )
            .detail(detail);
        e.uid = rs.metadata.uid.clone().unwrap_or_default();
        e
    }

    /// Watches ReplicaSets and pods and reconciles, forever.
    pub async fn run(self) {
        let (sets, set_events) =
            crate::informers::cache::<ReplicaSet>(&self.client, watcher::Config::default());
        let (pods, pod_events) =
            crate::informers::cache::<Pod>(&self.client, watcher::Config::default());
        let mut changes = futures::stream::select(set_events, pod_events).boxed();
        crate::informers::prime(&mut changes, async {
            let _ = sets.wait_until_ready().await;
            let _ = pods.wait_until_ready().await;
        })
        .await;
        let mut expectations = Expectations::default();
        let mut pace = crate::informers::Pace::default();
        loop {
            for rs in sets.state() {
                self.reconcile(&rs, &pods.state(), &mut expectations).await;
            }
            crate::informers::next_batch(&mut changes, Duration::from_secs(5), &mut pace).await;
        }
    }

    async fn reconcile(
        &self,
        rs: &ReplicaSet,
        all: &[std::sync::Arc<Pod>],
        expectations: &mut Expectations,
    ) {
        let (Some(namespace), Some(name), Some(uid)) = (
            rs.metadata.namespace.clone(),
            rs.metadata.name.clone(),
            rs.metadata.uid.clone(),
        ) else {
            return;
        };
        if rs.metadata.deletion_timestamp.is_some() {
            return;
        }
        let in_namespace: Vec<&Pod> = all
            .iter()
            .map(|p| &**p)
            .filter(|p| p.metadata.namespace.as_deref() == Some(&namespace))
            .collect();
        let names: HashSet<String> = in_namespace
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        // A pod being deleted counts as deleted, as upstream's expectations count it.
        let live: HashSet<String> = in_namespace
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        if !expectations.satisfied(&uid, &names, &live) {
            return;
        }
        let pods_api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        // Adopt orphans the selector matches.
        for orphan in in_namespace
            .iter()
            .filter(|p| controller_uid(p).is_none() && is_active(p) && selector_matches(rs, p))
        {
            let owner = json!({"metadata": {"ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name, "uid": uid, "controller": true, "blockOwnerDeletion": true}]}});
            if let Some(pod_name) = &orphan.metadata.name {
                let _ = pods_api
                    .patch(pod_name, &PatchParams::default(), &Patch::Strategic(owner))
                    .await;
            }
        }
        // Release the pods whose labels no longer match (`kubectl label pod x app-`): they are
        // no longer this ReplicaSet's, and it replaces them.
        for stray in in_namespace
            .iter()
            .filter(|p| controller_uid(p).as_deref() == Some(&uid) && !selector_matches(rs, p))
        {
            let (Some(pod_name), Some(pod_uid)) = (&stray.metadata.name, &stray.metadata.uid)
            else {
                continue;
            };
            self.flow
                .gate_emit(self.hop(
                    "RELEASE",
                    rs,
                    format!("pod {pod_name} no longer matches the selector: releasing it"),
                ))
                .await;
            let release = json!({"metadata": {"ownerReferences": [{"$patch": "delete", "uid": uid}], "uid": pod_uid}});
            let _ = pods_api
                .patch(
                    pod_name,
                    &PatchParams::default(),
                    &Patch::Strategic(release),
                )
                .await;
        }
        let mut owned: Vec<&Pod> = in_namespace
            .iter()
            .copied()
            .filter(|p| {
                controller_uid(p).as_deref() == Some(&uid)
                    && is_active(p)
                    && selector_matches(rs, p)
            })
            .collect();
        let wanted = rs
            .spec
            .as_ref()
            .and_then(|s| s.replicas)
            .unwrap_or(1)
            .max(0) as usize;
        if owned.len() < wanted {
            let missing = wanted - owned.len();
            self.flow
                .gate_emit(self.hop(
                    "SCALE UP",
                    rs,
                    format!("{} of {wanted} pods exist: creating {missing}", owned.len()),
                ))
                .await;
            let template = rs
                .spec
                .as_ref()
                .and_then(|s| s.template.clone())
                .unwrap_or_default();
            let mut metadata = template.metadata.unwrap_or_default();
            metadata.name = None;
            metadata.generate_name = Some(format!("{name}-"));
            metadata.namespace = Some(namespace.clone());
            metadata.owner_references = Some(vec![serde_json::from_value(json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name, "uid": uid, "controller": true, "blockOwnerDeletion": true})).expect("valid")]);
            let pod = Pod {
                metadata,
                spec: template.spec,
                status: None,
            };
            // Slow start, as upstream: batches of 1, 2, 4, ... created concurrently, stopping
            // at the first batch with a failure; at most BURST per pass.
            let params = PostParams::default();
            let mut remaining = missing.min(BURST);
            let mut batch = 1;
            while remaining > 0 {
                let size = batch.min(remaining);
                remaining -= size;
                batch *= 2;
                let results =
                    futures::future::join_all((0..size).map(|_| pods_api.create(&params, &pod)))
                        .await;
                let mut failed = false;
                let mut outcomes = Vec::new();
                for result in results {
                    outcomes.push(match result {
                        Ok(created) => {
                            let pod_name = created.metadata.name.unwrap_or_default();
                            expectations
                                .creates
                                .entry(uid.clone())
                                .or_default()
                                .insert(pod_name.clone());
                            (
                                "SuccessfulCreate",
                                "Normal",
                                format!("Created pod: {pod_name}"),
                            )
                        }
                        Err(error) => {
                            failed = true;
                            (
                                "FailedCreate",
                                "Warning",
                                format!("Error creating: {error}"),
                            )
                        }
                    });
                }
                futures::future::join_all(outcomes.iter().map(|(reason, kind, message)| {
                    event(
                        &self.client,
                        rs,
                        "replicaset-controller",
                        kind,
                        reason,
                        message,
                    )
                }))
                .await;
                if failed {
                    break;
                }
            }
        } else if owned.len() > wanted {
            // Delete the least far along first: unscheduled, then not ready, then the newest.
            owned.sort_by_key(|p| {
                let scheduled = p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
                (
                    scheduled,
                    is_ready(p),
                    std::cmp::Reverse(p.metadata.creation_timestamp.clone()),
                )
            });
            let extra = owned.len() - wanted;
            self.flow
                .gate_emit(self.hop(
                    "SCALE DOWN",
                    rs,
                    format!("{} of {wanted} pods exist: deleting {extra}", owned.len()),
                ))
                .await;
            for pod in owned.iter().take(extra) {
                let Some(pod_name) = pod.metadata.name.clone() else {
                    continue;
                };
                if pods_api
                    .delete(&pod_name, &DeleteParams::default())
                    .await
                    .is_ok()
                {
                    expectations
                        .deletes
                        .entry(uid.clone())
                        .or_default()
                        .insert(pod_name.clone());
                    event(
                        &self.client,
                        rs,
                        "replicaset-controller",
                        "Normal",
                        "SuccessfulDelete",
                        &format!("Deleted pod: {pod_name}"),
                    )
                    .await;
                }
            }
        }
        // Status, written only when it changes.
        let replicas = owned.len().min(wanted.max(owned.len())) as i32;
        let ready = owned.iter().filter(|p| is_ready(p)).count() as i32;
        let min_ready = rs
            .spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0);
        let now = jiff::Timestamp::now();
        let available = owned
            .iter()
            .filter(|p| is_available(p, min_ready, now))
            .count() as i32;
        let status = json!({
            "replicas": replicas,
            "fullyLabeledReplicas": replicas,
            "readyReplicas": ready,
            "availableReplicas": available,
            "observedGeneration": rs.metadata.generation,
        });
        let current = rs.status.as_ref().map(|s| {
            json!({
                "replicas": s.replicas,
                "fullyLabeledReplicas": s.fully_labeled_replicas.unwrap_or(0),
                "readyReplicas": s.ready_replicas.unwrap_or(0),
                "availableReplicas": s.available_replicas.unwrap_or(0),
                "observedGeneration": s.observed_generation,
            })
        });
        if current.as_ref() != Some(&status) {
            let sets: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &namespace);
            let _ = sets
                .patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": status})),
                )
                .await;
        }
    }
}
