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

/// Records a core/v1 Event about an object, as controllers do.
#[allow(clippy::too_many_arguments)] // the event's fields, as the API spells them
pub(crate) async fn event(
    client: &kube::Client,
    kind: &str,
    namespace: &str,
    name: &str,
    uid: &str,
    component: &str,
    event_type: &str,
    reason: &str,
    message: &str,
) {
    let about = crate::events::Involved {
        kind,
        namespace,
        name,
        uid,
    };
    let source = crate::events::Source {
        component,
        host: None,
        instance: None,
    };
    crate::events::record(client, &about, &source, event_type, reason, message).await;
}
