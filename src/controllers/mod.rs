//! The controller manager's controllers, built as kube-controller-manager builds them: every
//! controller reads from one [`SharedInformerFactory`] (one list+watch per resource type, shared
//! caches with indexes), turns changes into keys on its own [`workqueue::WorkQueue`], and
//! reconciles one key at a time with [`workqueue::run_workers`]; controllers that create pods
//! share one [`expectations::Expectations`]. Every write goes through the API server under the
//! controller's own name (`controller/<name>`), as an ordinary API client.
//!
//! So far: the Deployment ([`deployment`]), ReplicaSet ([`replicaset`]), ReplicationController
//! ([`replication`]: the ReplicaSet controller over RCs), DaemonSet
//! ([`daemonset`]), StatefulSet ([`statefulset`]), Job ([`job`]), CronJob ([`cronjob`]),
//! disruption ([`disruption`]: PodDisruptionBudget status), EndpointSlice and Endpoints ([`endpointslice`]), Namespace
//! ([`namespace`]), ServiceAccount ([`serviceaccount`]) and node lifecycle ([`nodelifecycle`],
//! with taint-based eviction) controllers, the garbage collector ([`garbagecollector`]), and the
//! volume controllers: the PV controller ([`persistentvolume`], `persistentvolume-binder`) and
//! the claim and volume protection controllers ([`pvcprotection`], [`pvprotection`]), and the
//! `kubernetes.io/kube-apiserver-client` signer ([`csrsigning`]), and the resource quota
//! controller ([`resourcequota`]).

pub mod clusterroleaggregation;
pub mod cronjob;
pub mod csrsigning;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpointslice;
pub mod expectations;
pub mod garbagecollector;
pub mod job;
pub mod namespace;
pub mod nodelifecycle;
pub mod persistentvolume;
pub mod podautoscaler;
pub mod pvcprotection;
pub mod pvprotection;
pub mod replicaset;
pub mod replication;
pub mod resourcequota;
pub mod rootcacertpublisher;
pub mod serviceaccount;
pub mod statefulset;
pub mod workqueue;

use k8s_openapi::api::core::v1::Pod;

use crate::apimachinery::pods;
use crate::flow::Flow;
use crate::informers::{self, SharedInformerFactory};

/// The user name the shared informers list and watch as: one watch per resource on the flow.
pub const INFORMERS_CLIENT: &str = "controller-manager";

/// What every controller is built from: the shared informers, the flow, and a client per
/// controller for its writes.
pub struct Context {
    /// The informers all controllers share.
    pub factory: SharedInformerFactory,
    /// The flow the controllers' hops go on.
    pub flow: Flow,
    clients: Box<dyn Fn(&str) -> kube::Client + Send + Sync>,
}

impl Context {
    /// A context whose controllers get their clients from `clients` (given `controller/<name>`),
    /// and whose informers watch through `clients(INFORMERS_CLIENT)`.
    pub fn new(flow: Flow, clients: impl Fn(&str) -> kube::Client + Send + Sync + 'static) -> Self {
        let factory = SharedInformerFactory::new(clients(INFORMERS_CLIENT));
        factory.informer::<Pod>().set_transform(slim_pod);
        Context {
            factory,
            flow,
            clients: Box::new(clients),
        }
    }

    /// The client a controller writes with: user `controller/<controller>`.
    pub fn client(&self, controller: &str) -> kube::Client {
        (self.clients)(&format!("controller/{controller}"))
    }

    /// A context for tests whose clients answer 404 to everything: its informers are fed by
    /// hand (`Informer::apply`), and a controller built on it only queues keys.
    #[cfg(test)]
    pub(crate) fn offline() -> Self {
        Context::new(Flow::new(), |_| {
            let service = tower::service_fn(|_: http::Request<kube::client::Body>| async {
                let empty = http_body_util::Empty::<bytes::Bytes>::new();
                Ok::<_, std::convert::Infallible>(
                    http::Response::builder()
                        .status(404)
                        .body(empty)
                        .expect("a valid response"),
                )
            });
            kube::Client::new(service, "default")
        })
    }
}

/// What the controller manager keeps of a pod, applied before its informer caches it: every
/// field a controller reads (metadata; the spec's node, hostname, scheduling fields and the
/// ports of the containers that declare some, for EndpointSlices' named target ports; volumes
/// that name a claim; the whole status), in lists without spare room ([`pods::shrink`]), and
/// not what only the kubelet reads (the other volumes, each of which is kilobytes even when it
/// is a small projected token, the other containers and fields of containers). A controller
/// that writes a pod back whole reads it from the API server first.
pub fn slim_pod(pod: &mut Pod) {
    use k8s_openapi::api::core::v1::Container;
    fn with_ports(list: Vec<Container>) -> Vec<Container> {
        list.into_iter()
            .filter(|c| c.ports.as_ref().is_some_and(|p| !p.is_empty()))
            .map(|c| Container {
                name: c.name,
                ports: c.ports,
                ..Default::default()
            })
            .collect()
    }
    if let Some(spec) = pod.spec.as_mut() {
        pods::keep_claim_volumes(spec);
        spec.containers = with_ports(std::mem::take(&mut spec.containers));
        spec.init_containers = spec
            .init_containers
            .take()
            .map(with_ports)
            .filter(|l| !l.is_empty());
        spec.ephemeral_containers = None;
    }
    pods::shrink(pod);
}

/// What an owner's own change does to a controller that creates pods for it: the owner is
/// queued, and its pending expectations are dropped when it is deleted or replaced by a new
/// object of the same name (another uid), as upstream's `deleteRS`/`updateRS` do.
pub(crate) fn owner_changed<K: kube::Resource>(
    queue: &workqueue::WorkQueue,
    expectations: &expectations::Expectations,
    change: informers::Change<'_, K>,
) {
    use informers::Change;
    use workqueue::Key;
    let replaced = match &change {
        Change::Add(_) => false,
        Change::Update { old, new } => old.meta().uid != new.meta().uid,
        Change::Delete(_) => true,
    };
    let key = Key::of(change.object());
    if replaced {
        expectations.forget(&key.to_string());
    }
    queue.add(key);
}

/// What an API error says, as Go's `err.Error()` of a `StatusError` says it (the Status's
/// message: `pods "web-x" is forbidden: exceeded quota: ...`); other errors as they display.
/// Controllers put it in Events and conditions, where upstream's put `err.Error()`.
pub(crate) fn api_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

/// Records a core/v1 Event about `object` (its kind, namespace, name and uid), as controllers do.
pub(crate) async fn event<K: kube::Resource<DynamicType = ()>>(
    client: &kube::Client,
    object: &K,
    component: &str,
    event_type: &str,
    reason: &str,
    message: &str,
) {
    let meta = object.meta();
    let about = crate::events::Involved {
        kind: &K::kind(&()),
        namespace: meta.namespace.as_deref().unwrap_or_default(),
        name: meta.name.as_deref().unwrap_or_default(),
        uid: meta.uid.as_deref().unwrap_or_default(),
    };
    let source = crate::events::Source {
        component,
        host: None,
        instance: None,
    };
    crate::events::record(client, &about, &source, event_type, reason, message).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_controller_manager_keeps_what_controllers_read_of_a_pod() {
        let mut pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default", "labels": {"app": "web"}},
            "spec": {
                "nodeName": "node-1",
                "hostname": "web-0",
                "containers": [
                    {"name": "web", "image": "nginx", "env": [{"name": "A", "value": "1"}],
                     "ports": [{"name": "http", "containerPort": 80}]},
                    {"name": "sidecar", "image": "busybox", "command": ["sleep", "1d"]},
                ],
                "initContainers": [{"name": "init", "image": "busybox"}],
                "volumes": [
                    {"name": "data", "persistentVolumeClaim": {"claimName": "data-web-0"}},
                    {"name": "token", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}},
                ],
            },
            "status": {"phase": "Running", "podIP": "10.244.1.5",
                "containerStatuses": [{"name": "web", "image": "nginx", "imageID": "", "ready": true, "restartCount": 2}]},
        }))
        .unwrap();
        let status = pod.status.clone();
        slim_pod(&mut pod);
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(
            serde_json::to_value(&spec.containers).unwrap(),
            json!([{"name": "web", "ports": [{"name": "http", "containerPort": 80}]}])
        );
        assert!(spec.init_containers.is_none());
        let volumes: Vec<&str> = spec
            .volumes
            .iter()
            .flatten()
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(volumes, ["data"]);
        assert_eq!(
            (spec.node_name.as_deref(), spec.hostname.as_deref()),
            (Some("node-1"), Some("web-0"))
        );
        assert_eq!(pod.status, status);
        assert_eq!(pod.metadata.labels.unwrap()["app"], "web");
    }
}
