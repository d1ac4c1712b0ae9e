//! The Namespace controller: a namespace being deleted is emptied (every namespaced resource the
//! API server's discovery lists is deleted), and once nothing is left, its `kubernetes`
//! finalizer is removed through `namespaces/<name>/finalize`, which lets the API server delete it.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::discovery::{ApiResource, Discovery, Scope, verbs};
use kube::runtime::watcher;
use serde_json::json;

use crate::flow::{Flow, FlowEvent};

const COMPONENT: &str = "controller/namespace";

/// The Namespace controller; runs until its task is aborted.
pub struct NamespaceController {
    client: kube::Client,
    flow: Flow,
}

impl NamespaceController {
    /// A controller talking to the API server through `client`.
    pub fn new(client: kube::Client, flow: Flow) -> Self {
        NamespaceController { client, flow }
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
        let (namespaces, mut changes) =
            crate::informers::cache::<Namespace>(&self.client, watcher::Config::default());
        let mut resources: Vec<ApiResource> = Vec::new();
        loop {
            let terminating: Vec<_> = namespaces
                .state()
                .into_iter()
                .filter(|n| n.metadata.deletion_timestamp.is_some())
                .collect();
            if !terminating.is_empty() && resources.is_empty() {
                resources = self.resources().await;
            }
            for namespace in terminating {
                self.empty(&namespace, &resources).await;
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), changes.next()).await;
        }
    }

    async fn empty(&self, namespace: &Namespace, resources: &[ApiResource]) {
        let Some(name) = namespace.metadata.name.clone() else {
            return;
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
            return;
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
            }
        }
    }
}
