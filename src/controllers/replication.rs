//! The ReplicationController controller (kube-controller-manager's `replicationcontroller`,
//! service account `replication-controller`). Upstream's `pkg/controller/replication` is the
//! ReplicaSet controller run over ReplicationControllers through a conversion to ReplicaSets;
//! here the ReplicaSet controller is generic ([`super::replicaset::Replicated`]) and this module
//! says how an RC is read as one: its selector is an equality map (`labels.SelectorFromSet`,
//! where a ReplicaSet has a `LabelSelector`), its pods are owned by `v1`
//! `ReplicationController`, its status has a ReplicaSet's fields, and its Events come from
//! `replication-controller`. Everything else (adoption, release, slow-start creation,
//! deletion order, expectations, `SCALE UP`/`SCALE DOWN` hops, `SuccessfulCreate` and
//! `SuccessfulDelete`, the `ReplicaFailure` condition) is the ReplicaSet controller's.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::ReplicaSetStatus;
use k8s_openapi::api::core::v1::{PodTemplateSpec, ReplicationController};

use super::replicaset::{ReplicaController, Replicated};

/// The ReplicaSet controller over ReplicationControllers (upstream's `ReplicationManager`).
pub type ReplicationManager = ReplicaController<ReplicationController>;

impl Replicated for ReplicationController {
    const CONTROLLER: &'static str = "replicationcontroller";
    const QUEUE: &'static str = "replicationmanager";
    const EVENT_SOURCE: &'static str = "replication-controller";

    /// Every pair of the map; an empty (or missing) selector selects nothing, as validation
    /// never lets one be stored.
    fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| labels.get(k) == Some(v)))
    }

    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }

    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }

    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().and_then(|s| s.template.as_ref())
    }

    /// Upstream's `Convert_v1_ReplicationControllerStatus_To_apps_ReplicaSetStatus`: the same
    /// fields under the same names, conditions included.
    fn replica_status(&self) -> ReplicaSetStatus {
        self.status
            .as_ref()
            .and_then(|s| serde_json::to_value(s).ok())
            .and_then(|s| serde_json::from_value(s).ok())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rc(spec: serde_json::Value) -> ReplicationController {
        serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": spec})).unwrap()
    }

    #[test]
    fn an_rc_selects_by_equality_and_an_empty_selector_selects_nothing() {
        let labels = BTreeMap::from([
            ("app".to_owned(), "web".to_owned()),
            ("tier".to_owned(), "front".to_owned()),
        ]);
        assert!(rc(json!({"selector": {"app": "web"}})).selects(&labels));
        assert!(rc(json!({"selector": {"app": "web", "tier": "front"}})).selects(&labels));
        assert!(!rc(json!({"selector": {"app": "db"}})).selects(&labels));
        assert!(!rc(json!({"selector": {}})).selects(&labels));
        assert!(!rc(json!({})).selects(&labels));
        assert_eq!(rc(json!({})).replicas(), 1);
    }

    #[test]
    fn an_rcs_status_reads_as_a_replica_sets() {
        let mut owner = rc(json!({"selector": {"app": "web"}}));
        owner.status = Some(
            serde_json::from_value(json!({
                "replicas": 2, "fullyLabeledReplicas": 2, "readyReplicas": 1,
                "availableReplicas": 1, "observedGeneration": 4,
                "conditions": [{"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate"}],
            }))
            .unwrap(),
        );
        let status = owner.replica_status();
        assert_eq!(
            (
                status.replicas,
                status.ready_replicas,
                status.observed_generation
            ),
            (2, Some(1), Some(4))
        );
        assert_eq!(
            status.conditions.unwrap()[0].reason.as_deref(),
            Some("FailedCreate")
        );
    }
}
