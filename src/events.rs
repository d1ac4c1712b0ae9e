//! Events: the core/v1 `Event`s components write about objects (`Scheduled`, `Pulling`,
//! `SuccessfulCreate`, ...), which `kubectl describe` and `kubectl get events` show. Every
//! component records them the same way, through the API server.

use kube::api::{Api, PostParams};
use serde_json::json;

/// The object an event is about.
pub struct Involved<'a> {
    /// Its kind (`Pod`, `ReplicaSet`, ...).
    pub kind: &'a str,
    /// Its namespace.
    pub namespace: &'a str,
    /// Its name.
    pub name: &'a str,
    /// Its uid.
    pub uid: &'a str,
}

/// Who reports an event.
pub struct Source<'a> {
    /// `default-scheduler`, `kubelet`, `replicaset-controller`, ...
    pub component: &'a str,
    /// The node, for a kubelet.
    pub host: Option<&'a str>,
    /// Which instance of the component.
    pub instance: Option<&'a str>,
}

/// Records an event; a failure to record one is logged, never fatal.
pub async fn record(
    client: &kube::Client,
    about: &Involved<'_>,
    source: &Source<'_>,
    event_type: &str,
    reason: &str,
    message: &str,
) {
    let api_version = match about.kind {
        "ReplicaSet" | "Deployment" | "DaemonSet" | "StatefulSet" => "apps/v1",
        "Job" | "CronJob" => "batch/v1",
        "PodDisruptionBudget" => "policy/v1",
        "HorizontalPodAutoscaler" => "autoscaling/v2",
        "Lease" => "coordination.k8s.io/v1",
        _ => "v1",
    };
    // Events about cluster-scoped objects (Nodes, PersistentVolumes) live in `default`.
    let namespace = if about.namespace.is_empty() {
        "default"
    } else {
        about.namespace
    };
    let stamp = jiff::Timestamp::now();
    let now = stamp.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let mut object = json!({
        "metadata": {"name": format!("{}.{:x}", about.name, stamp.as_nanosecond()), "namespace": namespace},
        "involvedObject": {"apiVersion": api_version, "kind": about.kind, "namespace": about.namespace, "name": about.name, "uid": about.uid},
        "reason": reason, "message": message, "type": event_type,
        "source": {"component": source.component},
        "reportingComponent": source.component,
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    });
    if let Some(host) = source.host {
        object["source"]["host"] = json!(host);
    }
    if let Some(instance) = source.instance {
        object["reportingInstance"] = json!(instance);
    }
    match serde_json::from_value::<k8s_openapi::api::core::v1::Event>(object) {
        Ok(event) => {
            let events: Api<k8s_openapi::api::core::v1::Event> =
                Api::namespaced(client.clone(), namespace);
            if let Err(error) = events.create(&PostParams::default(), &event).await {
                tracing::debug!(%error, "could not record an event");
            }
        }
        Err(error) => tracing::debug!(%error, "could not build an event"),
    }
}
