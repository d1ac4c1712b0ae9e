//! The controller manager's controllers, each an ordinary API client (list + watch + write
//! through the API server), in-process like every Orrery component.
//!
//! So far: the Deployment ([`deployment`]), ReplicaSet ([`replicaset`]), DaemonSet
//! ([`daemonset`]), Job ([`job`]), EndpointSlice and Endpoints ([`endpointslice`]), Namespace
//! ([`namespace`]), ServiceAccount ([`serviceaccount`]) and node lifecycle ([`nodelifecycle`],
//! with taint-based eviction) controllers and the garbage collector ([`garbagecollector`]).

pub mod daemonset;
pub mod deployment;
pub mod endpointslice;
pub mod garbagecollector;
pub mod job;
pub mod namespace;
pub mod nodelifecycle;
pub mod replicaset;
pub mod serviceaccount;

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
