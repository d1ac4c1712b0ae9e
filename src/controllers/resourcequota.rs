//! The resource quota controller, kube-controller-manager's `resourcequota-controller`: keeps
//! every ResourceQuota's `status.hard` (its `spec.hard`) and `status.used` (a recount of what
//! the namespace's objects use, by [`crate::apimachinery::quota::usage`]) current. A quota is
//! recounted when it changes, when an object it may count is deleted or changes what it uses
//! (a pod ends, a Service changes type, a claim grows), and every
//! `--resource-quota-sync-period` (five minutes) in any case, as upstream's full resync. A new
//! object triggers nothing, as upstream's quota monitor: admission charged it already, and a
//! recount then could miss objects charged but not yet written. This controller gives back what
//! deleted and finished objects no longer use. The counted objects are listed through the API (the shared
//! pod cache keeps no requests); a write is a compare-and-swap on the quota's resourceVersion,
//! so a charge admission made meanwhile is never overwritten: the sync is tried again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Pod, ReplicationController, ResourceQuota, Secret, Service,
};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams};
use serde_json::Value;

use super::Context;
use super::workqueue::{Action, Key, WorkQueue, run_workers};
use crate::apimachinery::quantity::Quantity;
use crate::apimachinery::quota::{self as accounting, ResourceList, resource_list, to_json};
use crate::flow::{Flow, FlowEvent};
use crate::informers::{Change, Informer, Watched};

/// The controller's name (its client is `controller/resourcequota`).
pub const NAME: &str = "resourcequota";

/// Upstream's `--resource-quota-sync-period` default: every quota is recounted this often.
pub const SYNC_PERIOD: Duration = Duration::from_secs(5 * 60);

/// What went wrong syncing a quota.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Listing what the quota counts failed.
    #[error("list {resource} in namespace {namespace}: {source}")]
    List {
        /// `pods`, `deployments.apps`.
        resource: String,
        /// The quota's namespace.
        namespace: String,
        /// The API server's error.
        source: kube::Error,
    },
    /// The status write failed (a conflict: admission charged the quota meanwhile).
    #[error("update the status of quota {key}: {source}")]
    Status {
        /// The quota.
        key: String,
        /// The API server's error.
        source: kube::Error,
    },
}

/// The kinds a quota name is counted from: `(group, plural)`.
pub fn kinds_of(name: &str) -> Vec<(String, String)> {
    if let Some(rest) = name.strip_prefix("count/") {
        let (plural, group) = rest.split_once('.').unwrap_or((rest, ""));
        return vec![(group.to_owned(), plural.to_owned())];
    }
    [
        "pods",
        "services",
        "persistentvolumeclaims",
        "configmaps",
        "secrets",
        "replicationcontrollers",
        "resourcequotas",
    ]
    .iter()
    .filter(|p| accounting::matches("", p, name))
    .map(|p| (String::new(), (*p).to_owned()))
    .collect()
}

/// A quota's usage from the objects of each kind it counts (`objects`: by `(group, plural)`):
/// every name of `hard`, zero where nothing uses it.
pub fn used(
    quota: &Value,
    hard: &ResourceList,
    objects: &BTreeMap<(String, String), Vec<Value>>,
) -> ResourceList {
    let mut total = ResourceList::new();
    for ((group, plural), list) in objects {
        for object in list
            .iter()
            .filter(|o| accounting::in_scope(quota, group, plural, o))
        {
            let usage = accounting::usage(group, plural, object);
            total = accounting::add(&total, &accounting::mask(&usage, hard.keys()));
        }
    }
    hard.keys()
        .map(|k| {
            (
                k.clone(),
                total.get(k).copied().unwrap_or(Quantity::count(0)),
            )
        })
        .collect()
}

/// The resource quota controller.
pub struct ResourceQuotaController {
    client: kube::Client,
    flow: Flow,
    quotas: Informer<ResourceQuota>,
    queue: WorkQueue<Key>,
    sync_period: Duration,
}

/// Queues every quota of `namespace`.
fn queue_namespace(quotas: &Informer<ResourceQuota>, queue: &WorkQueue<Key>, namespace: &str) {
    for quota in quotas.list_namespace(namespace) {
        queue.add(Key::of(&*quota));
    }
}

impl ResourceQuotaController {
    /// Takes the quota informer and those of the kinds quotas count from `ctx`.
    pub fn new(ctx: &Context, sync_period: Duration) -> Self {
        let quotas = ctx.factory.informer::<ResourceQuota>();
        let queue = WorkQueue::new(NAME);
        {
            let (queue, informer) = (queue.clone(), quotas.clone());
            quotas.add_handler(move |change| match change {
                Change::Add(q) => queue.add(Key::of(q)),
                // Only a change of `spec.hard`: a status update is admission's charge or this
                // controller's own count, and a recount then could miss objects charged but not
                // yet written (upstream's `UpdateFunc` ignores them too).
                Change::Update { old, new } => {
                    let hard = |q: &ResourceQuota| q.spec.as_ref().and_then(|s| s.hard.clone());
                    if hard(old) != hard(new) {
                        queue.add(Key::of(new));
                    }
                }
                // The others counted it under `resourcequotas`.
                Change::Delete(q) => queue_namespace(
                    &informer,
                    &queue,
                    q.metadata.namespace.as_deref().unwrap_or_default(),
                ),
            });
        }
        // Pods count again when they end, as well as when they come and go.
        {
            let (queue, informer) = (queue.clone(), quotas.clone());
            ctx.factory.informer::<Pod>().add_handler(move |change| {
                let (pod, counts) = match change {
                    Change::Add(_) => return,
                    Change::Delete(p) => (p, true),
                    Change::Update { old, new } => (new, ended(old) != ended(new)),
                };
                if counts {
                    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
                    queue_namespace(&informer, &queue, namespace);
                }
            });
        }
        fn on_add_delete<K: Watched>(
            ctx: &Context,
            quotas: &Informer<ResourceQuota>,
            queue: &WorkQueue<Key>,
            on_update: fn(&K, &K) -> bool,
        ) {
            let (queue, informer) = (queue.clone(), quotas.clone());
            ctx.factory.informer::<K>().add_handler(move |change| {
                let (object, counts) = match change {
                    Change::Add(_) => return,
                    Change::Delete(o) => (o, true),
                    Change::Update { old, new } => (new, on_update(old, new)),
                };
                if counts {
                    let namespace = object.meta().namespace.as_deref().unwrap_or_default();
                    queue_namespace(&informer, &queue, namespace);
                }
            });
        }
        fn never<K>(_: &K, _: &K) -> bool {
            false
        }
        on_add_delete::<Service>(ctx, &quotas, &queue, |old, new| {
            old.spec
                .as_ref()
                .map(|s| (&s.type_, s.ports.as_ref().map(Vec::len)))
                != new
                    .spec
                    .as_ref()
                    .map(|s| (&s.type_, s.ports.as_ref().map(Vec::len)))
        });
        on_add_delete::<PersistentVolumeClaim>(ctx, &quotas, &queue, |old, new| {
            let size = |c: &PersistentVolumeClaim| {
                c.spec
                    .as_ref()
                    .and_then(|s| s.resources.as_ref())
                    .and_then(|r| r.requests.as_ref())
                    .and_then(|r| r.get("storage"))
                    .map(|q| q.0.clone())
            };
            size(old) != size(new)
        });
        on_add_delete::<ConfigMap>(ctx, &quotas, &queue, never);
        on_add_delete::<Secret>(ctx, &quotas, &queue, never);
        on_add_delete::<ReplicationController>(ctx, &quotas, &queue, never);
        on_add_delete::<Deployment>(ctx, &quotas, &queue, never);
        on_add_delete::<ReplicaSet>(ctx, &quotas, &queue, never);
        on_add_delete::<StatefulSet>(ctx, &quotas, &queue, never);
        on_add_delete::<DaemonSet>(ctx, &quotas, &queue, never);
        on_add_delete::<Job>(ctx, &quotas, &queue, never);
        on_add_delete::<CronJob>(ctx, &quotas, &queue, never);
        ResourceQuotaController {
            client: ctx.client(NAME),
            flow: ctx.flow.clone(),
            quotas,
            queue,
            sync_period,
        }
    }

    /// Waits for the quota cache, then syncs quotas one at a time.
    pub async fn run(self) {
        self.quotas.synced().await;
        let this = Arc::new(self);
        run_workers(this.queue.clone(), 1, |key| {
            let this = this.clone();
            async move { this.sync(key).await }
        })
        .await;
    }

    /// The objects of `group`/`plural` in `namespace`, as JSON; none if the kind is not served.
    async fn list(&self, group: &str, plural: &str, namespace: &str) -> Result<Vec<Value>, Error> {
        let failed = |source| Error::List {
            resource: if group.is_empty() {
                plural.to_owned()
            } else {
                format!("{plural}.{group}")
            },
            namespace: namespace.to_owned(),
            source,
        };
        let version = if group.is_empty() {
            "v1".to_owned()
        } else {
            // The group's preferred version, from discovery.
            let request = http::Request::get(format!("/apis/{group}"))
                .body(Vec::new())
                .expect("a valid request");
            match self.client.request::<Value>(request).await {
                Ok(g) => match g["preferredVersion"]["version"].as_str() {
                    Some(v) => v.to_owned(),
                    None => return Ok(Vec::new()),
                },
                Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Vec::new()),
                Err(e) => return Err(failed(e)),
            }
        };
        let api_version = if group.is_empty() {
            version.clone()
        } else {
            format!("{group}/{version}")
        };
        let resource = ApiResource {
            group: group.to_owned(),
            version,
            api_version,
            kind: String::new(),
            plural: plural.to_owned(),
        };
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &resource);
        match api.list(&ListParams::default()).await {
            Ok(list) => Ok(list
                .items
                .into_iter()
                .filter_map(|o| serde_json::to_value(o).ok())
                .collect()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(Vec::new()),
            Err(e) => Err(failed(e)),
        }
    }

    async fn sync(&self, key: Key) -> Result<Action, Error> {
        let Some(quota) = self.quotas.get(&key.namespace, &key.name) else {
            return Ok(Action::Done);
        };
        let hard = resource_list(
            &serde_json::to_value(quota.spec.as_ref().and_then(|s| s.hard.as_ref()))
                .unwrap_or_default(),
        );
        let kinds: BTreeSet<(String, String)> =
            hard.keys().flat_map(|name| kinds_of(name)).collect();
        let mut objects = BTreeMap::new();
        for (group, plural) in kinds {
            let list = self.list(&group, &plural, &key.namespace).await?;
            objects.insert((group, plural), list);
        }
        let used = used(
            &serde_json::to_value(&*quota).unwrap_or_default(),
            &hard,
            &objects,
        );
        let status = serde_json::json!({"hard": to_json(&hard), "used": to_json(&used)});
        let current = serde_json::to_value(&quota.status).unwrap_or_default();
        let same = |field: &str| to_json(&resource_list(&current[field])) == status[field];
        if same("hard") && same("used") {
            return Ok(Action::RequeueAfter(self.sync_period));
        }
        let summary = used
            .iter()
            .map(|(k, v)| format!("{k}: {v}/{}", hard[k]))
            .collect::<Vec<_>>()
            .join(", ");
        let mut hop = FlowEvent::new(format!("controller/{NAME}"), "apiserver", "UPDATE STATUS")
            .object("ResourceQuota", &key.namespace, &key.name)
            .detail(if summary.is_empty() {
                "nothing counted".to_owned()
            } else {
                summary
            });
        hop.uid = quota.metadata.uid.clone().unwrap_or_default();
        self.flow.gate_emit(hop).await;
        let mut updated = (*quota).clone();
        updated.status = serde_json::from_value(status).ok();
        let api: Api<ResourceQuota> = Api::namespaced(self.client.clone(), &key.namespace);
        match api
            .replace_status(&key.name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => Ok(Action::RequeueAfter(self.sync_period)),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(Action::Done),
            Err(source) => Err(Error::Status {
                key: key.to_string(),
                source,
            }),
        }
    }
}

/// Whether a pod has ended, so that it no longer counts under `pods` and compute resources.
fn ended(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quota_names_are_counted_from_their_kinds() {
        let k = |g: &str, p: &str| (g.to_owned(), p.to_owned());
        assert_eq!(kinds_of("pods"), [k("", "pods")]);
        assert_eq!(kinds_of("requests.cpu"), [k("", "pods")]);
        assert_eq!(
            kinds_of("requests.storage"),
            [k("", "persistentvolumeclaims")]
        );
        assert_eq!(
            kinds_of("count/deployments.apps"),
            [k("apps", "deployments")]
        );
        assert_eq!(kinds_of("count/pods"), [k("", "pods")]);
        assert_eq!(kinds_of("services.nodeports"), [k("", "services")]);
    }

    #[test]
    fn usage_is_recounted_without_ended_pods() {
        let hard = resource_list(
            &json!({"pods": "10", "requests.cpu": "2", "count/pods": "10", "services": "5"}),
        );
        let pod = |phase: &str, cpu: &str| json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}, "status": {"phase": phase}});
        let objects = BTreeMap::from([(
            (String::new(), "pods".to_owned()),
            vec![
                pod("Running", "500m"),
                pod("Pending", "250m"),
                pod("Succeeded", "1"),
            ],
        )]);
        assert_eq!(
            to_json(&used(&json!({"spec": {}}), &hard, &objects)),
            json!({"count/pods": "3", "pods": "2", "requests.cpu": "750m", "services": "0"})
        );
    }
}
