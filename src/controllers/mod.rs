//! The controller manager's controllers, each an ordinary API client (list + watch + write
//! through the API server), in-process like every Orrery component.
//!
//! So far: the Deployment ([`deployment`]), ReplicaSet ([`replicaset`]), Namespace
//! ([`namespace`]) and ServiceAccount ([`serviceaccount`]) controllers. The Job, DaemonSet,
//! garbage collector, node lifecycle and EndpointSlice controllers come with the rest of issue 4.

pub mod deployment;
pub mod namespace;
pub mod replicaset;
pub mod serviceaccount;

use kube::api::{Api, PostParams};
use serde_json::json;

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
    let api_version = match kind {
        "ReplicaSet" | "Deployment" | "DaemonSet" | "StatefulSet" => "apps/v1",
        "Job" | "CronJob" => "batch/v1",
        _ => "v1",
    };
    let stamp = jiff::Timestamp::now();
    let now = stamp.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let object = json!({
        "metadata": {"name": format!("{name}.{:x}", stamp.as_nanosecond()), "namespace": namespace},
        "involvedObject": {"apiVersion": api_version, "kind": kind, "namespace": namespace, "name": name, "uid": uid},
        "reason": reason, "message": message, "type": event_type,
        "source": {"component": component},
        "reportingComponent": component,
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    });
    if let Ok(event) = serde_json::from_value::<k8s_openapi::api::core::v1::Event>(object) {
        let events: Api<k8s_openapi::api::core::v1::Event> =
            Api::namespaced(client.clone(), namespace);
        if let Err(error) = events.create(&PostParams::default(), &event).await {
            tracing::debug!(%error, "could not record an event");
        }
    }
}
