//! The ServiceAccount controller: every active namespace has a `default` ServiceAccount, which
//! pods use unless they name another.

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, PostParams};

use super::Context;
use super::workqueue::{Action, Key, WorkQueue, run_workers};
use crate::flow::{Flow, FlowEvent};
use crate::informers::{Change, Informer};

/// Gives every namespace its `default` ServiceAccount; runs until its task is aborted.
pub struct ServiceAccountController {
    client: kube::Client,
    flow: Flow,
    namespaces: Informer<Namespace>,
    accounts: Informer<ServiceAccount>,
    /// Keyed by namespace name.
    queue: WorkQueue,
}

impl ServiceAccountController {
    /// A controller on the shared informers of `ctx`, writing as `controller/serviceaccount`.
    pub fn new(ctx: &Context) -> Self {
        let namespaces = ctx.factory.informer::<Namespace>();
        let accounts = ctx.factory.informer::<ServiceAccount>();
        let queue = WorkQueue::new("serviceaccount");
        let q = queue.clone();
        namespaces.add_handler(move |change| {
            if !matches!(change, Change::Delete(_)) {
                q.add(Key::of(change.object()));
            }
        });
        let q = queue.clone();
        accounts.add_handler(move |change| {
            if let Change::Delete(sa) = change
                && sa.metadata.name.as_deref() == Some("default")
            {
                q.add(Key::new(
                    "",
                    sa.metadata.namespace.clone().unwrap_or_default(),
                ));
            }
        });
        ServiceAccountController {
            client: ctx.client("serviceaccount"),
            flow: ctx.flow.clone(),
            namespaces,
            accounts,
            queue,
        }
    }

    /// Waits for the caches, then gives each namespace key its account, forever.
    pub async fn run(self) {
        self.namespaces.synced().await;
        self.accounts.synced().await;
        run_workers(self.queue.clone(), 1, |key| self.sync(key)).await;
    }

    /// Creates the namespace's `default` ServiceAccount if it is missing.
    async fn sync(&self, key: Key) -> Result<Action, kube::Error> {
        let name = key.name;
        let Some(ns) = self.namespaces.get("", &name) else {
            return Ok(Action::Done);
        };
        if ns.metadata.deletion_timestamp.is_some() || self.accounts.get(&name, "default").is_some()
        {
            return Ok(Action::Done);
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
        match api.create(&PostParams::default(), &account).await {
            Ok(_) => Ok(Action::Done),
            // Already there (the cache lags), or the namespace is going: nothing to do.
            Err(kube::Error::Api(status)) if status.code == 409 || status.code == 403 => {
                Ok(Action::Done)
            }
            Err(error) => Err(error),
        }
    }
}
