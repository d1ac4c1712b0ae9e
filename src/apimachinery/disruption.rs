//! What the eviction subresource and the disruption controller share about a
//! PodDisruptionBudget's status, as upstream's `k8s.io/component-helpers/apps/
//! poddisruptionbudget` is shared by kube-apiserver and kube-controller-manager: the
//! `DisruptionAllowed` condition (`SufficientPods` / `InsufficientPods`) set the way
//! `meta.SetStatusCondition` sets conditions, and the names of the status's cause and reasons.

use k8s_openapi::api::policy::v1::PodDisruptionBudgetStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// The condition type.
pub const DISRUPTION_ALLOWED: &str = "DisruptionAllowed";
/// The reason when at least one disruption is allowed.
pub const SUFFICIENT_PODS: &str = "SufficientPods";
/// The reason when none is.
pub const INSUFFICIENT_PODS: &str = "InsufficientPods";
/// The reason when the controller could not compute the budget (an owner without a scale).
pub const SYNC_FAILED: &str = "SyncFailed";
/// The `StatusCause` type of a refused eviction.
pub const DISRUPTION_BUDGET_CAUSE: &str = "DisruptionBudget";

/// `meta.SetStatusCondition`: replaces the condition of the same type, keeping its transition
/// time unless the status changed; a new condition's transition time is `now`.
pub fn set_status_condition(conditions: &mut Vec<Condition>, mut new: Condition, now: Time) {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(existing) => {
            if existing.status != new.status {
                existing.status = new.status;
                existing.last_transition_time = now;
            }
            existing.reason = new.reason;
            existing.message = new.message;
            existing.observed_generation = new.observed_generation;
        }
        None => {
            new.last_transition_time = now;
            conditions.push(new);
        }
    }
}

/// `UpdateDisruptionAllowedCondition`: `True`/`SufficientPods` when a disruption is allowed,
/// else `False`/`InsufficientPods`, at the status's observed generation.
pub fn update_disruption_allowed_condition(status: &mut PodDisruptionBudgetStatus, now: Time) {
    let allowed = status.disruptions_allowed > 0;
    let condition = Condition {
        type_: DISRUPTION_ALLOWED.into(),
        status: if allowed { "True" } else { "False" }.into(),
        reason: if allowed {
            SUFFICIENT_PODS
        } else {
            INSUFFICIENT_PODS
        }
        .into(),
        message: String::new(),
        observed_generation: status.observed_generation,
        last_transition_time: now.clone(),
    };
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    set_status_condition(conditions, condition, now);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Time {
        Time(jiff::Timestamp::from_second(s).unwrap())
    }

    #[test]
    fn the_condition_follows_disruptions_allowed_and_keeps_its_transition_time() {
        let mut status = PodDisruptionBudgetStatus {
            disruptions_allowed: 1,
            observed_generation: Some(2),
            ..Default::default()
        };
        update_disruption_allowed_condition(&mut status, at(10));
        let c = &status.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", SUFFICIENT_PODS)
        );
        assert_eq!(c.last_transition_time, at(10));
        update_disruption_allowed_condition(&mut status, at(20));
        assert_eq!(
            status.conditions.as_ref().unwrap()[0].last_transition_time,
            at(10)
        );
        status.disruptions_allowed = 0;
        update_disruption_allowed_condition(&mut status, at(30));
        let c = &status.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", INSUFFICIENT_PODS)
        );
        assert_eq!(c.last_transition_time, at(30));
        assert_eq!(c.observed_generation, Some(2));
    }
}
