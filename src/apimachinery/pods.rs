//! Pod readiness and ownership as every controller reads them (upstream's
//! `k8s.io/kubernetes/pkg/api/v1/pod` and `pkg/controller/controller_utils.go`): whether a pod
//! is active, ready, or available for `minReadySeconds`, and which object controls it (the
//! owner reference with `controller: true`); and how a component that caches many pods keeps
//! each one small ([`shrink`]).

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

/// Gives back the spare capacity of a decoded pod's lists. A list decoded from JSON grows by
/// doubling from four, so one container status (752 bytes) takes room for four and five
/// conditions room for eight: about 3 KiB of every pod a cache keeps, for nothing.
pub fn shrink(pod: &mut Pod) {
    fn fit<T>(list: &mut Option<Vec<T>>) {
        if let Some(list) = list {
            list.shrink_to_fit();
        }
    }
    let meta = &mut pod.metadata;
    fit(&mut meta.owner_references);
    fit(&mut meta.finalizers);
    if let Some(spec) = pod.spec.as_mut() {
        spec.containers.shrink_to_fit();
        fit(&mut spec.init_containers);
        fit(&mut spec.tolerations);
        fit(&mut spec.volumes);
        // A projected volume's sources (the service account's three) decode with room for four.
        for volume in spec.volumes.iter_mut().flatten() {
            if let Some(projected) = volume.projected.as_mut() {
                fit(&mut projected.sources);
            }
        }
        fit(&mut spec.readiness_gates);
        fit(&mut spec.topology_spread_constraints);
        for c in spec
            .containers
            .iter_mut()
            .chain(spec.init_containers.iter_mut().flatten())
        {
            fit(&mut c.ports);
            fit(&mut c.env);
            fit(&mut c.volume_mounts);
            fit(&mut c.command);
            fit(&mut c.args);
        }
    }
    if let Some(status) = pod.status.as_mut() {
        fit(&mut status.conditions);
        fit(&mut status.container_statuses);
        fit(&mut status.init_container_statuses);
        fit(&mut status.ephemeral_container_statuses);
        fit(&mut status.host_ips);
        fit(&mut status.pod_ips);
    }
}

/// Drops the volumes that name no claim (a `persistentVolumeClaim` or an `ephemeral` one): what
/// a component that reads only a pod's claims (the scheduler, the controller manager) keeps.
pub fn keep_claim_volumes(spec: &mut k8s_openapi::api::core::v1::PodSpec) {
    if let Some(volumes) = spec.volumes.as_mut() {
        volumes.retain(|v| v.persistent_volume_claim.is_some() || v.ephemeral.is_some());
    }
}

/// The owner reference that controls the object (`controller: true`), if any.
pub fn controller_ref(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

/// The uid of the object's controller, if any.
pub fn controller_uid(meta: &ObjectMeta) -> Option<&str> {
    controller_ref(meta).map(|r| r.uid.as_str())
}

/// The pod's phase (`""` before the kubelet has written one).
pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

/// Not being deleted and not finished (upstream's `IsPodActive`).
pub fn is_active(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none() && !matches!(phase(pod), "Succeeded" | "Failed")
}

/// Whether the pod's `Ready` condition is `True` (upstream's `IsPodReady`).
pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// When the `Ready` condition last turned `True`: `Some(None)` when it is true without a
/// transition time, `None` when the pod is not ready.
fn ready_since(pod: &Pod) -> Option<Option<jiff::Timestamp>> {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready" && c.status == "True"))
        .map(|c| c.last_transition_time.as_ref().map(|t| t.0))
}

/// Ready for at least `min_ready_seconds` at `now` (upstream's `IsPodAvailable`).
pub fn is_available(pod: &Pod, min_ready_seconds: i64, now: jiff::Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(None) => false,
        Some(Some(t)) => now.duration_since(t).as_secs() >= min_ready_seconds,
    }
}

/// How long until a ready pod becomes available (`None` when it is not ready or already
/// available): when a controller should look at it again.
pub fn until_available(
    pod: &Pod,
    min_ready_seconds: i64,
    now: jiff::Timestamp,
) -> Option<std::time::Duration> {
    let Some(Some(since)) = ready_since(pod) else {
        return None;
    };
    let left = min_ready_seconds - now.duration_since(since).as_secs();
    (left > 0).then(|| std::time::Duration::from_secs(left as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_shrunk_pod_keeps_its_lists_without_spare_room() {
        let conditions: Vec<_> = ["A", "B", "C", "D", "E"]
            .iter()
            .map(|t| json!({"type": t, "status": "True"}))
            .collect();
        let mut p: Pod = serde_json::from_slice(
            &serde_json::to_vec(&json!({
                "spec": {"containers": [{"name": "c"}], "tolerations": [{"key": "a"}, {"key": "b"}]},
                "status": {"conditions": conditions, "containerStatuses": [
                    {"name": "c", "image": "i", "imageID": "", "ready": true, "restartCount": 0}]},
            }))
            .unwrap(),
        )
        .unwrap();
        let before = p.clone();
        shrink(&mut p);
        assert_eq!(p, before);
        let status = p.status.as_ref().unwrap();
        assert_eq!(status.conditions.as_ref().unwrap().capacity(), 5);
        assert_eq!(status.container_statuses.as_ref().unwrap().capacity(), 1);
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.tolerations.as_ref().unwrap().capacity(), 2);
    }

    #[test]
    fn readiness_and_availability() {
        let now: jiff::Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
        let ready = pod(json!({"status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:30Z"}]}}));
        let unready = pod(json!({"status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "False"}]}}));
        assert!(is_ready(&ready) && !is_ready(&unready));
        assert!(is_available(&ready, 0, now) && is_available(&ready, 30, now));
        assert!(!is_available(&ready, 31, now) && !is_available(&unready, 0, now));
        assert_eq!(
            until_available(&ready, 40, now),
            Some(std::time::Duration::from_secs(10))
        );
        assert_eq!(until_available(&ready, 30, now), None);
    }

    #[test]
    fn activity_and_controller() {
        let done = pod(json!({"status": {"phase": "Succeeded"}}));
        let deleting = pod(json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}));
        let owned = pod(json!({"metadata": {"ownerReferences": [
            {"apiVersion": "v1", "kind": "X", "name": "a", "uid": "1"},
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "b", "uid": "2", "controller": true}]}}));
        assert!(!is_active(&done) && !is_active(&deleting) && is_active(&owned));
        assert_eq!(controller_uid(&owned.metadata), Some("2"));
        assert_eq!(controller_uid(&done.metadata), None);
    }
}
