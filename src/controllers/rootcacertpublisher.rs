//! The root CA certificate publisher, kube-controller-manager's `root-ca-cert-publisher`: every
//! namespace has the ConfigMap `kube-root-ca.crt` holding the cluster's CA as `ca.crt`, which
//! every pod's service account volume projects so in-cluster clients can check the API
//! server. A namespace is looked at when it appears or changes, and again every five minutes
//! (a deleted or edited ConfigMap comes back then).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ObjectMeta, PostParams};

use super::Context;
use super::workqueue::{Action, Key, WorkQueue, run_workers};
use crate::apiserver::serviceaccount::ROOT_CA_CONFIG_MAP;
use crate::flow::{Flow, FlowEvent};
use crate::informers::{Change, Informer};

/// The controller's name.
pub const NAME: &str = "root-ca-cert-publisher";

const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

/// How often each namespace's ConfigMap is checked again.
const RESYNC: Duration = Duration::from_secs(300);

/// What went wrong publishing the CA in a namespace.
#[derive(Debug, thiserror::Error)]
#[error("publish {ROOT_CA_CONFIG_MAP} in namespace {namespace}: {source}")]
pub struct Error {
    /// The namespace.
    namespace: String,
    /// The API server's error.
    source: kube::Error,
}

/// The root CA publisher.
pub struct RootCaCertPublisher {
    client: kube::Client,
    flow: Flow,
    namespaces: Informer<Namespace>,
    queue: WorkQueue<Key>,
    ca: String,
}

impl RootCaCertPublisher {
    /// Takes the namespace informer from `ctx`; `ca` is the CA certificate (PEM).
    pub fn new(ctx: &Context, ca: String) -> Self {
        let namespaces = ctx.factory.informer::<Namespace>();
        let queue = WorkQueue::new(NAME);
        {
            let queue = queue.clone();
            namespaces.add_handler(move |change| {
                if !matches!(change, Change::Delete(_)) {
                    queue.add(Key::of(change.object()));
                }
            });
        }
        RootCaCertPublisher {
            client: ctx.client(NAME),
            flow: ctx.flow.clone(),
            namespaces,
            queue,
            ca,
        }
    }

    /// Waits for the cache, then publishes one namespace at a time.
    pub async fn run(self) {
        self.namespaces.synced().await;
        let this = Arc::new(self);
        run_workers(this.queue.clone(), 1, |key| {
            let this = this.clone();
            async move { this.sync(key).await }
        })
        .await;
    }

    fn wanted(&self, namespace: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(ROOT_CA_CONFIG_MAP.into()),
                namespace: Some(namespace.into()),
                annotations: Some(BTreeMap::from([(
                    "kubernetes.io/description".to_owned(),
                    DESCRIPTION.to_owned(),
                )])),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([("ca.crt".to_owned(), self.ca.clone())])),
            ..ConfigMap::default()
        }
    }

    async fn sync(&self, key: Key) -> Result<Action, Error> {
        let Some(namespace) = self.namespaces.get("", &key.name) else {
            return Ok(Action::Done);
        };
        if namespace.metadata.deletion_timestamp.is_some() {
            return Ok(Action::Done);
        }
        let failed = |source| Error {
            namespace: key.name.clone(),
            source,
        };
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &key.name);
        let current = api.get_opt(ROOT_CA_CONFIG_MAP).await.map_err(failed)?;
        let wanted = self.wanted(&key.name);
        let result = match current {
            None => {
                self.emit(&key.name, "create").await;
                api.create(&PostParams::default(), &wanted).await.map(drop)
            }
            Some(current) if current.data != wanted.data => {
                self.emit(&key.name, "update").await;
                let mut updated = current;
                updated.data = wanted.data;
                api.replace(ROOT_CA_CONFIG_MAP, &PostParams::default(), &updated)
                    .await
                    .map(drop)
            }
            Some(_) => Ok(()),
        };
        match result {
            Ok(()) => Ok(Action::RequeueAfter(RESYNC)),
            // Gone, terminating, or raced with another write: the next look settles it.
            Err(kube::Error::Api(s)) if matches!(s.code, 403 | 404 | 409) => {
                Ok(Action::RequeueAfter(Duration::from_secs(1)))
            }
            Err(source) => Err(failed(source)),
        }
    }

    async fn emit(&self, namespace: &str, what: &str) {
        self.flow
            .gate_emit(
                FlowEvent::new(format!("controller/{NAME}"), "apiserver", "PUBLISH")
                    .object("ConfigMap", namespace, ROOT_CA_CONFIG_MAP)
                    .detail(format!(
                        "{what} the cluster's CA for service account volumes"
                    )),
            )
            .await;
    }
}
