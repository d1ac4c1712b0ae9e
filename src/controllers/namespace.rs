//! The Namespace controller: a namespace being deleted is emptied (every namespaced resource the
//! API server's discovery lists is deleted), and once nothing is left, its `kubernetes`
//! finalizer is removed through `namespaces/<name>/finalize`, which lets the API server delete it.

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::discovery::{ApiResource, Discovery, Scope, verbs};
use serde_json::json;

use super::Context;
use super::workqueue::{Action, Key, WorkQueue, run_workers};
use crate::flow::{Flow, FlowEvent};
use crate::informers::Informer;

const COMPONENT: &str = "controller/namespace";

/// The Namespace controller; runs until its task is aborted.
pub struct NamespaceController {
    client: kube::Client,
    flow: Flow,
    namespaces: Informer<Namespace>,
    queue: WorkQueue,
    /// The namespaced resources discovery listed, learnt at the first deletion.
    resources: tokio::sync::Mutex<Vec<ApiResource>>,
}

/// How soon a namespace that is not empty yet is looked at again.
const RECHECK: Duration = Duration::from_secs(1);

impl NamespaceController {
    /// A controller talking to the API server through `client`.
    pub fn new(ctx: &Context) -> Self {
        let namespaces = ctx.factory.informer::<Namespace>();
        let queue = WorkQueue::new("namespace");
        let q = queue.clone();
        namespaces.add_handler(move |change| {
            if change.object().metadata.deletion_timestamp.is_some() {
                q.add(Key::of(change.object()));
            }
        });
        NamespaceController {
            client: ctx.client("namespace"),
            flow: ctx.flow.clone(),
            namespaces,
            queue,
            resources: tokio::sync::Mutex::default(),
        }
    }

    /// Every namespaced resource that can be listed and deleted, from discovery.
    async fn resources(&self) -> Vec<ApiResource> {
        let Ok(discovery) = Discovery::new(self.client.clone()).run().await else {
            return Vec::new();
        };
        discovery
            .groups()
            .flat_map(|group| group.recommended_resources())
            .filter(|(_, caps)| {
                caps.scope == Scope::Namespaced
                    && caps.supports_operation(verbs::LIST)
                    && caps.supports_operation(verbs::DELETE)
            })
            .map(|(resource, _)| resource)
            .collect()
    }

    /// Watches namespaces and empties the ones being deleted, forever.
    pub async fn run(self) {
        self.namespaces.synced().await;
        run_workers(self.queue.clone(), 1, |key| self.sync(key)).await;
    }

    /// Empties the terminating namespace `key`, then finalizes it; until it is empty, looks
    /// again every [`RECHECK`].
    async fn sync(&self, key: Key) -> Result<Action, std::convert::Infallible> {
        let Some(namespace) = self.namespaces.get("", &key.name) else {
            return Ok(Action::Done);
        };
        if namespace.metadata.deletion_timestamp.is_none() {
            return Ok(Action::Done);
        }
        let resources = {
            let mut known = self.resources.lock().await;
            if known.is_empty() {
                *known = self.resources().await;
            }
            known.clone()
        };
        if resources.is_empty() {
            // Discovery failed: never finalize a namespace without knowing what it may hold.
            return Ok(Action::RequeueAfter(RECHECK));
        }
        Ok(if self.empty(&namespace, &resources).await {
            Action::Done
        } else {
            Action::RequeueAfter(RECHECK)
        })
    }

    /// Deletes what is left in the namespace; whether it was empty (and is now finalized).
    async fn empty(&self, namespace: &Namespace, resources: &[ApiResource]) -> bool {
        let Some(name) = namespace.metadata.name.clone() else {
            return true;
        };
        let mut remaining = 0;
        for resource in resources {
            let api: Api<DynamicObject> =
                Api::namespaced_with(self.client.clone(), &name, resource);
            let Ok(list) = api.list(&ListParams::default()).await else {
                continue;
            };
            if list.items.is_empty() {
                continue;
            }
            remaining += list.items.len();
            // Only what is not already on its way out needs a delete.
            if list
                .items
                .iter()
                .any(|o| o.metadata.deletion_timestamp.is_none())
            {
                self.flow
                    .gate_emit(
                        FlowEvent::new(COMPONENT, "apiserver", "DELETECOLLECTION")
                            .object("Namespace", "", &name)
                            .detail(format!(
                                "delete {} {} in namespace {name}",
                                list.items.len(),
                                resource.plural
                            )),
                    )
                    .await;
                let _ = api
                    .delete_collection(&DeleteParams::background(), &ListParams::default())
                    .await;
            }
        }
        if remaining > 0 {
            return false;
        }
        let finalizers = namespace
            .spec
            .as_ref()
            .and_then(|s| s.finalizers.as_ref())
            .is_some_and(|f| !f.is_empty());
        if finalizers {
            self.flow.emit(
                FlowEvent::new(COMPONENT, "apiserver", "FINALIZE")
                    .object("Namespace", "", &name)
                    .detail(format!("namespace {name} is empty: remove its finalizer")),
            );
            let api: Api<Namespace> = Api::all(self.client.clone());
            let finalized = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}, "spec": {"finalizers": []}});
            if let Err(error) = api
                .replace_subresource("finalize", &name, &PostParams::default(), &finalized)
                .await
            {
                tracing::debug!(%error, namespace = %name, "could not finalize");
                return false;
            }
        }
        true
    }
}
