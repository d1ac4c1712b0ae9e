//! The Deployment controller: one ReplicaSet per pod template (named and labelled with the
//! template's `pod-template-hash`), scaled by the strategy: RollingUpdate within `maxSurge` and
//! `maxUnavailable`, or Recreate (old pods gone before new ones start). It numbers revisions
//! (`deployment.kubernetes.io/revision`), keeps `revisionHistoryLimit` old ReplicaSets, and
//! writes the status `kubectl rollout status` reads: observedGeneration, replicas, updated,
//! ready and available counts, and the Available and Progressing conditions.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use super::workqueue::{Action, Key, WorkQueue, run_workers};
use super::{Context, event};
use crate::apimachinery::pods::controller_ref;
use crate::flow::{Flow, FlowEvent};
use crate::informers::{BY_OWNER, Change, Informer};

const COMPONENT: &str = "controller/deployment";
const REVISION: &str = "deployment.kubernetes.io/revision";
const HASH_LABEL: &str = "pod-template-hash";
/// How many Deployments are reconciled at once (upstream's `--concurrent-deployment-syncs`).
const WORKERS: usize = 5;

/// The template's hash, in the alphabet Kubernetes uses for generated names.
fn template_hash(template: &Value) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    template.to_string().hash(&mut hasher);
    let mut n = hasher.finish();
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut out = String::new();
    for _ in 0..10 {
        out.push(ALPHABET[(n % ALPHABET.len() as u64) as usize] as char);
        n /= ALPHABET.len() as u64;
    }
    out
}

/// `maxSurge`/`maxUnavailable`: a count, or a percentage of `replicas` (surge rounds up,
/// unavailable rounds down, as Kubernetes does).
fn resolve(value: Option<&Value>, replicas: i64, round_up: bool, default: &str) -> i64 {
    let value = value.cloned().unwrap_or_else(|| json!(default));
    match value {
        Value::Number(n) => n.as_i64().unwrap_or(0),
        Value::String(s) => match s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) {
            Some(percent) if round_up => (percent * replicas + 99) / 100,
            Some(percent) => percent * replicas / 100,
            None => s.parse().unwrap_or(0),
        },
        _ => 0,
    }
}

fn owned_by(rs: &ReplicaSet, uid: &str) -> bool {
    rs.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.controller == Some(true) && r.uid == uid)
}

fn replicas(rs: &ReplicaSet) -> i64 {
    i64::from(rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0))
}

fn available(rs: &ReplicaSet) -> i64 {
    i64::from(
        rs.status
            .as_ref()
            .and_then(|s| s.available_replicas)
            .unwrap_or(0),
    )
}

fn revision(rs: &ReplicaSet) -> i64 {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// The Deployment controller; runs until its task is aborted.
pub struct DeploymentController {
    client: kube::Client,
    flow: Flow,
    deployments: Informer<Deployment>,
    sets: Informer<ReplicaSet>,
    queue: WorkQueue,
}

/// The key of the Deployment a ReplicaSet names as its controller.
fn owner_key(rs: &ReplicaSet) -> Option<Key> {
    let owner = controller_ref(&rs.metadata)?;
    (owner.kind == "Deployment").then(|| {
        Key::new(
            rs.metadata.namespace.clone().unwrap_or_default(),
            owner.name.clone(),
        )
    })
}

impl DeploymentController {
    /// A controller on the shared informers of `ctx`, writing as `controller/deployment`.
    pub fn new(ctx: &Context) -> Self {
        let deployments = ctx.factory.informer::<Deployment>();
        let sets = ctx.factory.informer::<ReplicaSet>();
        let queue = WorkQueue::new("deployment");
        let q = queue.clone();
        deployments.add_handler(move |change| q.add(Key::of(change.object())));
        let q = queue.clone();
        sets.add_handler(move |change| {
            if let Change::Update { old, new } = &change
                && owner_key(old) != owner_key(new)
                && let Some(key) = owner_key(old)
            {
                q.add(key);
            }
            if let Some(key) = owner_key(change.object()) {
                q.add(key);
            }
        });
        DeploymentController {
            client: ctx.client("deployment"),
            flow: ctx.flow.clone(),
            deployments,
            sets,
            queue,
        }
    }

    /// Waits for the caches, then reconciles one Deployment per key, forever.
    pub async fn run(self) {
        self.deployments.synced().await;
        self.sets.synced().await;
        run_workers(self.queue.clone(), WORKERS, |key| self.sync(key)).await;
    }

    /// Reconciles the Deployment `key` from the caches.
    async fn sync(&self, key: Key) -> Result<Action, std::convert::Infallible> {
        if let Some(d) = self.deployments.get(&key.namespace, &key.name) {
            let uid = d.metadata.uid.clone().unwrap_or_default();
            self.reconcile(&d, &self.sets.by_index(BY_OWNER, &uid))
                .await;
        }
        Ok(Action::Done)
    }

    async fn scale(&self, api: &Api<ReplicaSet>, d: &Deployment, rs: &ReplicaSet, to: i64) {
        let name = rs.metadata.name.clone().unwrap_or_default();
        if replicas(rs) == to {
            return;
        }
        let mut e = FlowEvent::new(COMPONENT, "apiserver", "SCALE")
            .object(
                "ReplicaSet",
                rs.metadata.namespace.as_deref().unwrap_or_default(),
                &name,
            )
            .detail(format!("scale {name} from {} to {to}", replicas(rs)));
        e.root = format!(
            "Deployment/{}",
            d.metadata.name.as_deref().unwrap_or_default()
        );
        self.flow.gate_emit(e).await;
        if api
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": to}})),
            )
            .await
            .is_ok()
        {
            let verb = if to > replicas(rs) { "up" } else { "down" };
            event(
                &self.client,
                d,
                "deployment-controller",
                "Normal",
                "ScalingReplicaSet",
                &format!(
                    "Scaled {verb} replica set {name} from {} to {to}",
                    replicas(rs)
                ),
            )
            .await;
        }
    }

    async fn reconcile(&self, d: &Deployment, all: &[std::sync::Arc<ReplicaSet>]) {
        let (Some(namespace), Some(name), Some(uid)) = (
            d.metadata.namespace.clone(),
            d.metadata.name.clone(),
            d.metadata.uid.clone(),
        ) else {
            return;
        };
        if d.metadata.deletion_timestamp.is_some() {
            return;
        }
        let Some(spec) = d.spec.clone() else { return };
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &namespace);
        let desired = i64::from(spec.replicas.unwrap_or(1));
        let template = serde_json::to_value(&spec.template).unwrap_or(Value::Null);
        let hash = template_hash(&template);
        let mut owned: Vec<ReplicaSet> = all
            .iter()
            .filter(|rs| rs.metadata.namespace.as_deref() == Some(&namespace) && owned_by(rs, &uid))
            .map(|rs| (**rs).clone())
            .collect();
        let max_revision = owned.iter().map(revision).max().unwrap_or(0);
        let new_rs = owned
            .iter()
            .find(|rs| rs.metadata.labels.as_ref().and_then(|l| l.get(HASH_LABEL)) == Some(&hash))
            .cloned();
        if spec.paused == Some(true) {
            // Paused (`kubectl rollout pause`): no new ReplicaSet and no rollout; only a change
            // of replicas reaches the newest ReplicaSet, as upstream's sync of a paused one does.
            let newest = new_rs
                .clone()
                .or_else(|| owned.iter().max_by_key(|rs| revision(rs)).cloned());
            if let Some(newest) = newest {
                let others: i64 = owned
                    .iter()
                    .filter(|rs| rs.metadata.name != newest.metadata.name)
                    .map(replicas)
                    .sum();
                let to = (desired - others).max(0);
                if replicas(&newest) != to {
                    self.scale(&api, d, &newest, to).await;
                }
                self.write_status(d, &owned, &newest, desired).await;
            }
            return;
        }
        let new_rs = match new_rs {
            Some(rs) => {
                // A template rolled back to an old ReplicaSet makes it the newest revision again.
                if revision(&rs) < max_revision {
                    let _ = api.patch(rs.metadata.name.as_deref().unwrap_or_default(), &PatchParams::default(), &Patch::Merge(json!({"metadata": {"annotations": {REVISION: (max_revision + 1).to_string()}}}))).await;
                }
                rs
            }
            None => {
                let rs_name = format!("{name}-{hash}");
                let mut rs_template = template.clone();
                rs_template["metadata"]["labels"][HASH_LABEL] = json!(hash);
                let mut selector = serde_json::to_value(&spec.selector).unwrap_or(json!({}));
                selector["matchLabels"][HASH_LABEL] = json!(hash);
                let labels = rs_template["metadata"]["labels"].clone();
                let initial = if owned.is_empty() { desired } else { 0 };
                let object = json!({
                    "metadata": {
                        "name": rs_name, "namespace": namespace, "labels": labels,
                        "annotations": {REVISION: (max_revision + 1).to_string(), "deployment.kubernetes.io/desired-replicas": desired.to_string()},
                        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name, "uid": uid, "controller": true, "blockOwnerDeletion": true}],
                    },
                    "spec": {"replicas": initial, "selector": selector, "template": rs_template, "minReadySeconds": spec.min_ready_seconds.unwrap_or(0)},
                });
                let Ok(rs) = serde_json::from_value::<ReplicaSet>(object) else {
                    return;
                };
                self.flow
                    .gate_emit(
                        FlowEvent::new(COMPONENT, "apiserver", "CREATE")
                            .object("ReplicaSet", &namespace, &rs_name)
                            .detail(format!(
                                "new ReplicaSet {rs_name} for revision {}",
                                max_revision + 1
                            )),
                    )
                    .await;
                match api.create(&PostParams::default(), &rs).await {
                    Ok(created) => {
                        event(
                            &self.client,
                            d,
                            "deployment-controller",
                            "Normal",
                            "ScalingReplicaSet",
                            &format!("Scaled up replica set {rs_name} from 0 to {initial}"),
                        )
                        .await;
                        owned.push(created.clone());
                        created
                    }
                    Err(_) => return,
                }
            }
        };
        let new_name = new_rs.metadata.name.clone().unwrap_or_default();
        let mut old: Vec<ReplicaSet> = owned
            .iter()
            .filter(|rs| rs.metadata.name.as_deref() != Some(&new_name))
            .cloned()
            .collect();
        old.sort_by_key(revision);
        let strategy = spec.strategy.clone().unwrap_or_default();
        if strategy.type_.as_deref() == Some("Recreate") {
            let old_running: i64 = old
                .iter()
                .map(|rs| i64::from(rs.status.as_ref().map_or(0, |s| s.replicas)))
                .sum();
            for rs in &old {
                self.scale(&api, d, rs, 0).await;
            }
            if old_running == 0 {
                self.scale(&api, d, &new_rs, desired).await;
            }
        } else {
            let rolling = serde_json::to_value(&strategy.rolling_update).unwrap_or(Value::Null);
            let surge = resolve(rolling.get("maxSurge"), desired, true, "25%");
            let unavailable = resolve(rolling.get("maxUnavailable"), desired, false, "25%")
                .max(if surge == 0 { 1 } else { 0 });
            // Scale up the new ReplicaSet within maxSurge.
            let total: i64 = owned.iter().map(replicas).sum();
            if replicas(&new_rs) < desired {
                let room = (desired + surge - total).max(0);
                let to = (replicas(&new_rs) + room).min(desired);
                self.scale(&api, d, &new_rs, to).await;
            } else if replicas(&new_rs) > desired {
                self.scale(&api, d, &new_rs, desired).await;
            }
            // Scale down old ReplicaSets, keeping desired - maxUnavailable available.
            // A ReplicaSet's status may still count pods it is deleting: never more than its
            // spec asks for.
            let available_total: i64 = owned.iter().map(|rs| available(rs).min(replicas(rs))).sum();
            let mut can_remove = (available_total - (desired - unavailable)).max(0);
            for rs in &old {
                // Old pods that are not available can always go.
                let unhealthy = (replicas(rs) - available(rs)).max(0);
                let take = (unhealthy + can_remove).min(replicas(rs));
                if take > 0 {
                    self.scale(&api, d, rs, replicas(rs) - take).await;
                    can_remove -= (take - unhealthy).max(0);
                }
            }
        }
        // Old ReplicaSets beyond the history limit go.
        let limit = spec.revision_history_limit.unwrap_or(10).max(0) as usize;
        let idle: Vec<&ReplicaSet> = old
            .iter()
            .filter(|rs| replicas(rs) == 0 && rs.status.as_ref().is_none_or(|s| s.replicas == 0))
            .collect();
        for rs in idle.iter().take(idle.len().saturating_sub(limit)) {
            let _ = api
                .delete(
                    rs.metadata.name.as_deref().unwrap_or_default(),
                    &DeleteParams::default(),
                )
                .await;
        }
        self.write_status(d, &owned, &new_rs, desired).await;
    }

    async fn write_status(
        &self,
        d: &Deployment,
        owned: &[ReplicaSet],
        new_rs: &ReplicaSet,
        desired: i64,
    ) {
        let count = |f: &dyn Fn(&ReplicaSet) -> i64| owned.iter().map(f).sum::<i64>();
        let replicas_now = count(&|rs| i64::from(rs.status.as_ref().map_or(0, |s| s.replicas)));
        let ready = count(&|rs| {
            i64::from(
                rs.status
                    .as_ref()
                    .and_then(|s| s.ready_replicas)
                    .unwrap_or(0),
            )
        });
        let available_now = count(&available);
        let updated = i64::from(new_rs.status.as_ref().map_or(0, |s| s.replicas));
        let old_conditions: BTreeMap<String, Value> = d
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .map(|c| {
                c.iter()
                    .map(|c| {
                        (
                            c.type_.clone(),
                            serde_json::to_value(c).unwrap_or(Value::Null),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let now = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let condition = |kind: &str, status: &str, reason: &str, message: String| {
            // Keep the transition time while the status stays the same.
            let previous = old_conditions.get(kind);
            let unchanged =
                previous.is_some_and(|p| p["status"] == status && p["reason"] == reason);
            let transition = if unchanged {
                previous
                    .map(|p| p["lastTransitionTime"].clone())
                    .unwrap_or(json!(now))
            } else {
                json!(now)
            };
            let update = if unchanged {
                previous
                    .map(|p| p["lastUpdateTime"].clone())
                    .unwrap_or(json!(now))
            } else {
                json!(now)
            };
            json!({"type": kind, "status": status, "reason": reason, "message": message, "lastTransitionTime": transition, "lastUpdateTime": update})
        };
        let rs_name = new_rs.metadata.name.clone().unwrap_or_default();
        let complete = updated == desired && replicas_now == desired && available_now == desired;
        let unavailable_allowed = resolve(
            serde_json::to_value(
                d.spec
                    .as_ref()
                    .and_then(|s| s.strategy.as_ref())
                    .and_then(|s| s.rolling_update.as_ref()),
            )
            .ok()
            .as_ref()
            .and_then(|r| r.get("maxUnavailable")),
            desired,
            false,
            "25%",
        );
        let is_available = available_now >= desired - unavailable_allowed;
        let status = json!({
            "observedGeneration": d.metadata.generation,
            "replicas": replicas_now,
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": available_now,
            "unavailableReplicas": (replicas_now - available_now).max(0),
            "conditions": [
                if is_available {
                    condition("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.".into())
                } else {
                    condition("Available", "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.".into())
                },
                if d.spec.as_ref().and_then(|s| s.paused) == Some(true) {
                    condition("Progressing", "Unknown", "DeploymentPaused", "Deployment is paused".into())
                } else if complete {
                    condition("Progressing", "True", "NewReplicaSetAvailable", format!("ReplicaSet \"{rs_name}\" has successfully progressed."))
                } else {
                    condition("Progressing", "True", "ReplicaSetUpdated", format!("ReplicaSet \"{rs_name}\" is progressing."))
                },
            ],
        });
        let current = serde_json::to_value(&d.status).unwrap_or(Value::Null);
        let changed = [
            "observedGeneration",
            "replicas",
            "updatedReplicas",
            "readyReplicas",
            "availableReplicas",
            "unavailableReplicas",
        ]
        .iter()
        .any(|k| {
            current.get(*k).cloned().unwrap_or(json!(0))
                != status.get(*k).cloned().unwrap_or(json!(0))
        }) || current["conditions"].as_array().map(|c| {
            c.iter()
                .map(|c| (c["type"].clone(), c["reason"].clone()))
                .collect::<Vec<_>>()
        }) != status["conditions"].as_array().map(|c| {
            c.iter()
                .map(|c| (c["type"].clone(), c["reason"].clone()))
                .collect::<Vec<_>>()
        });
        if changed {
            let (ns, name) = (
                d.metadata.namespace.clone().unwrap_or_default(),
                d.metadata.name.clone().unwrap_or_default(),
            );
            let api: Api<Deployment> = Api::namespaced(self.client.clone(), &ns);
            let revision_annotation =
                json!({"metadata": {"annotations": {REVISION: revision(new_rs).to_string()}}});
            let _ = api
                .patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(revision_annotation),
                )
                .await;
            let _ = api
                .patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": status})),
                )
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn surge_and_unavailable() {
        assert_eq!(resolve(None, 4, true, "25%"), 1);
        assert_eq!(resolve(None, 6, true, "25%"), 2, "surge rounds up");
        assert_eq!(resolve(None, 6, false, "25%"), 1, "unavailable rounds down");
        assert_eq!(resolve(Some(&json!(3)), 6, false, "25%"), 3);
        assert_eq!(resolve(Some(&json!("50%")), 10, false, "25%"), 5);
        assert_ne!(
            template_hash(&json!({"a": 1})),
            template_hash(&json!({"a": 2}))
        );
        assert_eq!(template_hash(&json!({"a": 1})).len(), 10);
    }
}
