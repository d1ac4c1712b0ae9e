//! The ServiceAccount controller: every active namespace has a `default` ServiceAccount, which
//! pods use unless they name another.

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, PostParams};
use kube::runtime::watcher;

use crate::flow::{Flow, FlowEvent};

/// The ServiceAccount controller; runs until its task is aborted.
pub struct ServiceAccountController {
    client: kube::Client,
    flow: Flow,
}

impl ServiceAccountController {
    /// A controller talking to the API server through `client`.
    pub fn new(client: kube::Client, flow: Flow) -> Self {
        ServiceAccountController { client, flow }
    }

    /// Watches namespaces and service accounts, and creates missing `default` accounts, forever.
    pub async fn run(self) {
        let (namespaces, ns_events) =
            crate::informers::cache::<Namespace>(&self.client, watcher::Config::default());
        let sa_config = watcher::Config::default().fields("metadata.name=default");
        let (accounts, sa_events) =
            crate::informers::cache::<ServiceAccount>(&self.client, sa_config);
        let mut changes = futures::stream::select(ns_events, sa_events).boxed();
        crate::informers::prime(&mut changes, async {
            let _ = namespaces.wait_until_ready().await;
            let _ = accounts.wait_until_ready().await;
        })
        .await;
        let mut pace = crate::informers::Pace::default();
        loop {
            let have: HashSet<String> = accounts
                .state()
                .iter()
                .filter_map(|sa| sa.metadata.namespace.clone())
                .collect();
            for ns in namespaces.state() {
                let Some(name) = ns.metadata.name.clone() else {
                    continue;
                };
                if ns.metadata.deletion_timestamp.is_some() || have.contains(&name) {
                    continue;
                }
                self.flow
                    .gate_emit(
                        FlowEvent::new("controller/serviceaccount", "apiserver", "CREATE")
                            .object("ServiceAccount", &name, "default")
                            .detail(format!("namespace {name} gets its default ServiceAccount")),
                    )
                    .await;
                let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), &name);
                let account = ServiceAccount {
                    metadata: kube::api::ObjectMeta {
                        name: Some("default".into()),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                if let Err(error) = api.create(&PostParams::default(), &account).await {
                    tracing::debug!(%error, namespace = %name, "could not create the default ServiceAccount");
                }
            }
            crate::informers::next_batch(&mut changes, Duration::from_secs(5), &mut pace).await;
        }
    }
}
