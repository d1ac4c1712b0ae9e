//! Turning the metrics' recommendation into the HorizontalPodAutoscaler's desired replicas, as
//! kube-controller-manager's `horizontal.go` does: the legacy path when `spec.behavior` is unset
//! (`normalizeDesiredReplicas`: a 5-minute scale-down stabilization and a scale-up limit of
//! `max(2*current, 4)`), the behavior path (`normalizeDesiredReplicasWithBehaviors`: per-direction
//! stabilization windows and rate policies over the recent scale events), the reason and message
//! each sets on the `AbleToScale` and `ScalingLimited` conditions, the bookkeeping of recent
//! recommendations and scale events (`storeScaleEvent`, `markScaleEventsOutdated`), and the
//! API's defaulting of `spec.behavior` (`pkg/apis/autoscaling/v2/defaults.go`). Pure functions:
//! the controller keeps the per-HPA lists and passes the clock in.

use std::time::Duration;

use jiff::Timestamp;

use crate::apimachinery::autoscaling::{scale_down_rules, scale_up_rules};
use k8s_openapi::api::autoscaling::v2::{
    HPAScalingPolicy, HPAScalingRules, HorizontalPodAutoscalerBehavior,
};

/// The scale-down stabilization window when `spec.behavior` is unset or leaves the scale-down
/// window unset (`--horizontal-pod-autoscaler-downscale-stabilization`).
pub const DOWNSCALE_STABILIZATION_WINDOW: Duration = Duration::from_secs(5 * 60);

/// One recommendation of the metrics, kept for stabilization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recommendation {
    /// When it was made.
    pub at: Timestamp,
    /// The replicas the metrics recommended (before normalization).
    pub replicas: i32,
}

/// One scale of the target, kept per direction (upstream's `timestampedScaleEvent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScaleEvent {
    /// When it happened.
    pub at: Timestamp,
    /// How many replicas it added (in the scale-up list) or removed (in the scale-down list).
    pub change: i32,
    /// Whether it is older than the longest policy period, so its slot can be reused.
    pub outdated: bool,
}

/// The desired replicas, and the conditions normalization sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Normalized {
    /// The desired replica count.
    pub replicas: i32,
    /// The `ScalingLimited` condition's reason: `DesiredWithinRange`, `TooFewReplicas`,
    /// `TooManyReplicas`, `ScaleUpLimit` or `ScaleDownLimit`.
    pub reason: &'static str,
    /// The `ScalingLimited` condition's message.
    pub message: &'static str,
    /// The `ScalingLimited` condition's status: whether the count was limited, that is differs
    /// from the stabilized recommendation.
    pub limited: bool,
    /// The `AbleToScale` condition's reason (its status is `True`): `ReadyForNewScale`,
    /// `ScaleUpStabilized` or `ScaleDownStabilized`.
    pub able_reason: &'static str,
    /// The `AbleToScale` condition's message.
    pub able_message: &'static str,
}

const READY_FOR_NEW_SCALE: (&str, &str) =
    ("ReadyForNewScale", "recommended size matches current size");
const SCALE_DOWN_STABILIZED: (&str, &str) = (
    "ScaleDownStabilized",
    "recent recommendations were higher than current one, applying the highest recent recommendation",
);
const SCALE_UP_STABILIZED: (&str, &str) = (
    "ScaleUpStabilized",
    "recent recommendations were lower than current one, applying the lowest recent recommendation",
);
const DESIRED_WITHIN_RANGE: (&str, &str) = (
    "DesiredWithinRange",
    "the desired count is within the acceptable range",
);
const SCALE_UP_LIMIT: (&str, &str) = (
    "ScaleUpLimit",
    "the desired replica count is increasing faster than the maximum scale rate",
);
const TOO_MANY_REPLICAS: (&str, &str) = (
    "TooManyReplicas",
    "the desired replica count is more than the maximum replica count",
);
const SCALE_DOWN_LIMIT: (&str, &str) = (
    "ScaleDownLimit",
    "the desired replica count is decreasing faster than the maximum scale rate",
);
const TOO_FEW_REPLICAS: (&str, &str) = (
    "TooFewReplicas",
    "the desired replica count is less than the minimum replica count",
);

fn minus(t: Timestamp, d: Duration) -> Timestamp {
    t.saturating_sub(d).unwrap_or(Timestamp::MIN)
}

fn seconds(s: i32) -> Duration {
    Duration::from_secs(u64::try_from(s).unwrap_or(0))
}

/// Upstream's `stabilizeRecommendation`: the highest recommendation of the last `window`
/// (this one included), recording this one over the oldest slot that fell out of the window.
pub fn stabilize_recommendation(
    recommendations: &mut Vec<Recommendation>,
    now: Timestamp,
    window: Duration,
    prenormalized: i32,
) -> i32 {
    let mut max_recommendation = prenormalized;
    let cutoff = minus(now, window);
    let mut old = None;
    for (i, rec) in recommendations.iter().enumerate() {
        if rec.at < cutoff {
            old = Some(i);
        } else if rec.replicas > max_recommendation {
            max_recommendation = rec.replicas;
        }
    }
    record(recommendations, old, now, prenormalized);
    max_recommendation
}

fn record(
    recommendations: &mut Vec<Recommendation>,
    old: Option<usize>,
    now: Timestamp,
    replicas: i32,
) {
    let rec = Recommendation { at: now, replicas };
    match old.and_then(|i| recommendations.get_mut(i)) {
        Some(slot) => *slot = rec,
        None => recommendations.push(rec),
    }
}

/// Upstream's `convertDesiredReplicasWithRules`: `desired` bounded by `min` and by the lower of
/// `max` and the legacy scale-up limit `max(2*current, 4)`, with the `ScalingLimited` reason
/// and message.
pub fn convert_desired_replicas_with_rules(
    current: i32,
    desired: i32,
    min: i32,
    max: i32,
) -> (i32, &'static str, &'static str) {
    let scale_up_limit = (2.0 * f64::from(current)).max(4.0) as i32;
    let (maximum, limit) = if max > scale_up_limit {
        (scale_up_limit, SCALE_UP_LIMIT)
    } else {
        (max, TOO_MANY_REPLICAS)
    };
    if desired < min {
        (min, TOO_FEW_REPLICAS.0, TOO_FEW_REPLICAS.1)
    } else if desired > maximum {
        (maximum, limit.0, limit.1)
    } else {
        (desired, DESIRED_WITHIN_RANGE.0, DESIRED_WITHIN_RANGE.1)
    }
}

/// The legacy normalization, used when `spec.behavior` is unset (upstream's
/// `normalizeDesiredReplicas`): stabilize scale-downs over `downscale_stabilization`
/// ([`DOWNSCALE_STABILIZATION_WINDOW`] by default), then bound by `min`, `max` and the scale-up
/// limit.
pub fn normalize_legacy(
    recommendations: &mut Vec<Recommendation>,
    now: Timestamp,
    downscale_stabilization: Duration,
    prenormalized: i32,
    current: i32,
    min: i32,
    max: i32,
) -> Normalized {
    let stabilized =
        stabilize_recommendation(recommendations, now, downscale_stabilization, prenormalized);
    let able = if stabilized != prenormalized {
        SCALE_DOWN_STABILIZED
    } else {
        READY_FOR_NEW_SCALE
    };
    let (replicas, reason, message) =
        convert_desired_replicas_with_rules(current, stabilized, min, max);
    Normalized {
        replicas,
        reason,
        message,
        limited: replicas != stabilized,
        able_reason: able.0,
        able_message: able.1,
    }
}

/// Upstream's `stabilizeRecommendationWithBehaviors`: `prenormalized` brought within the lowest
/// recommendation of the scale-up window and the highest of the scale-down window (starting from
/// `current`), recording `prenormalized` over a slot older than both windows. Returns the
/// stabilized count and the `AbleToScale` reason and message that go with it if it differs.
pub fn stabilize_recommendation_with_behaviors(
    recommendations: &mut Vec<Recommendation>,
    now: Timestamp,
    scale_up_window: Duration,
    scale_down_window: Duration,
    prenormalized: i32,
    current: i32,
) -> (i32, &'static str, &'static str) {
    let up_cutoff = minus(now, scale_up_window);
    let down_cutoff = minus(now, scale_down_window);
    let (mut up, mut down) = (prenormalized, prenormalized);
    let mut old = None;
    for (i, rec) in recommendations.iter().enumerate() {
        if rec.at > up_cutoff {
            up = up.min(rec.replicas);
        }
        if rec.at > down_cutoff {
            down = down.max(rec.replicas);
        }
        if rec.at < up_cutoff && rec.at < down_cutoff {
            old = Some(i);
        }
    }
    let mut recommendation = current;
    if recommendation < up {
        recommendation = up;
    }
    if recommendation > down {
        recommendation = down;
    }
    record(recommendations, old, now, prenormalized);
    let (reason, message) = if prenormalized >= current {
        SCALE_UP_STABILIZED
    } else {
        SCALE_DOWN_STABILIZED
    };
    (recommendation, reason, message)
}

/// Upstream's `getReplicasChangePerPeriod`: the replicas the events of the last `period_seconds`
/// changed.
pub fn replicas_change_per_period(
    period_seconds: i32,
    events: &[ScaleEvent],
    now: Timestamp,
) -> i32 {
    let cutoff = minus(now, seconds(period_seconds));
    events
        .iter()
        .filter(|e| e.at > cutoff)
        .fold(0i32, |sum, e| sum.saturating_add(e.change))
}

/// The policy selection of a rule set (`Max` when unset).
fn select_policy(rules: &HPAScalingRules) -> &str {
    rules.select_policy.as_deref().unwrap_or("Max")
}

fn policies(rules: &HPAScalingRules) -> &[HPAScalingPolicy] {
    rules.policies.as_deref().unwrap_or_default()
}

/// Upstream's `calculateScaleUpLimitWithScalingRules`: the most replicas the scale-up policies
/// allow now, given the recent scale events.
pub fn calculate_scale_up_limit_with_scaling_rules(
    current: i32,
    scale_up_events: &[ScaleEvent],
    scale_down_events: &[ScaleEvent],
    rules: &HPAScalingRules,
    now: Timestamp,
) -> i32 {
    let select = select_policy(rules);
    if select == "Disabled" {
        return current;
    }
    let min_select = select == "Min";
    let mut result = if min_select { i32::MAX } else { i32::MIN };
    let mut proposed: i32 = 0;
    for policy in policies(rules) {
        let added = replicas_change_per_period(policy.period_seconds, scale_up_events, now);
        let deleted = replicas_change_per_period(policy.period_seconds, scale_down_events, now);
        let period_start = current.saturating_sub(added).saturating_add(deleted);
        match policy.type_.as_str() {
            "Pods" => proposed = period_start.saturating_add(policy.value),
            "Percent" => {
                // Rounded up, so that a small target can always grow.
                proposed = (f64::from(period_start) * (1.0 + f64::from(policy.value) / 100.0))
                    .ceil() as i32;
            }
            _ => {}
        }
        result = if min_select {
            result.min(proposed)
        } else {
            result.max(proposed)
        };
    }
    result
}

/// Upstream's `calculateScaleDownLimitWithBehaviors`: the fewest replicas the scale-down policies
/// allow now, given the recent scale events.
pub fn calculate_scale_down_limit_with_behaviors(
    current: i32,
    scale_up_events: &[ScaleEvent],
    scale_down_events: &[ScaleEvent],
    rules: &HPAScalingRules,
    now: Timestamp,
) -> i32 {
    let select = select_policy(rules);
    if select == "Disabled" {
        return current;
    }
    let min_select = select == "Min";
    let mut result = if min_select { i32::MIN } else { i32::MAX };
    let mut proposed: i32 = 0;
    for policy in policies(rules) {
        let added = replicas_change_per_period(policy.period_seconds, scale_up_events, now);
        let deleted = replicas_change_per_period(policy.period_seconds, scale_down_events, now);
        let period_start = current.saturating_sub(added).saturating_add(deleted);
        match policy.type_.as_str() {
            "Pods" => proposed = period_start.saturating_sub(policy.value),
            "Percent" => {
                proposed =
                    (f64::from(period_start) * (1.0 - f64::from(policy.value) / 100.0)) as i32;
            }
            _ => {}
        }
        result = if min_select {
            result.max(proposed)
        } else {
            result.min(proposed)
        };
    }
    result
}

/// Upstream's `convertDesiredReplicasWithBehaviorRate`: `desired` bounded by `min`, `max` and the
/// rate the policies allow, with the `ScalingLimited` reason and message.
#[allow(clippy::too_many_arguments)]
pub fn convert_desired_replicas_with_behavior_rate(
    current: i32,
    desired: i32,
    min: i32,
    max: i32,
    scale_up: &HPAScalingRules,
    scale_down: &HPAScalingRules,
    scale_up_events: &[ScaleEvent],
    scale_down_events: &[ScaleEvent],
    now: Timestamp,
) -> (i32, &'static str, &'static str) {
    if desired > current {
        let mut limit = calculate_scale_up_limit_with_scaling_rules(
            current,
            scale_up_events,
            scale_down_events,
            scale_up,
            now,
        );
        // No further scale-up until the recent scale-ups age out.
        if limit < current {
            limit = current;
        }
        let (maximum, why) = if max > limit {
            (limit, SCALE_UP_LIMIT)
        } else {
            (max, TOO_MANY_REPLICAS)
        };
        if desired > maximum {
            return (maximum, why.0, why.1);
        }
    } else if desired < current {
        let mut limit = calculate_scale_down_limit_with_behaviors(
            current,
            scale_up_events,
            scale_down_events,
            scale_down,
            now,
        );
        // No further scale-down until the recent scale-downs age out.
        if limit > current {
            limit = current;
        }
        let (minimum, why) = if min < limit {
            (limit, SCALE_DOWN_LIMIT)
        } else {
            (min, TOO_FEW_REPLICAS)
        };
        if desired < minimum {
            return (minimum, why.0, why.1);
        }
    }
    (desired, DESIRED_WITHIN_RANGE.0, DESIRED_WITHIN_RANGE.1)
}

/// The normalization with `spec.behavior` set (upstream's
/// `normalizeDesiredReplicasWithBehaviors`): stabilize over both directions' windows, then bound
/// by `min`, `max` and the policies' rates over the recent scale events. `behavior` is expected
/// defaulted ([`crate::apimachinery::autoscaling::default_behavior`]); rules still unset get their defaults here, and an unset
/// scale-down window is [`DOWNSCALE_STABILIZATION_WINDOW`] (upstream's
/// `maybeInitScaleDownStabilizationWindow`).
#[allow(clippy::too_many_arguments)]
pub fn normalize_with_behavior(
    recommendations: &mut Vec<Recommendation>,
    scale_up_events: &[ScaleEvent],
    scale_down_events: &[ScaleEvent],
    now: Timestamp,
    behavior: &HorizontalPodAutoscalerBehavior,
    prenormalized: i32,
    current: i32,
    min: i32,
    max: i32,
) -> Normalized {
    let scale_up = scale_up_rules(behavior.scale_up.clone());
    let scale_down = scale_down_rules(behavior.scale_down.clone());
    let up_window = seconds(scale_up.stabilization_window_seconds.unwrap_or(0));
    let down_window = scale_down
        .stabilization_window_seconds
        .map(seconds)
        .unwrap_or(DOWNSCALE_STABILIZATION_WINDOW);
    let (stabilized, reason, message) = stabilize_recommendation_with_behaviors(
        recommendations,
        now,
        up_window,
        down_window,
        prenormalized,
        current,
    );
    let able = if stabilized != prenormalized {
        (reason, message)
    } else {
        READY_FOR_NEW_SCALE
    };
    let (replicas, reason, message) = convert_desired_replicas_with_behavior_rate(
        current,
        stabilized,
        min,
        max,
        &scale_up,
        &scale_down,
        scale_up_events,
        scale_down_events,
        now,
    );
    Normalized {
        replicas,
        reason,
        message,
        limited: replicas != stabilized,
        able_reason: able.0,
        able_message: able.1,
    }
}

/// Upstream's `getLongestPolicyPeriod`.
pub fn longest_policy_period(rules: &HPAScalingRules) -> i32 {
    policies(rules)
        .iter()
        .map(|p| p.period_seconds)
        .fold(0, i32::max)
}

/// Upstream's `markScaleEventsOutdated`: marks the events older than `longest_period_seconds`.
pub fn mark_scale_events_outdated(
    events: &mut [ScaleEvent],
    longest_period_seconds: i32,
    now: Timestamp,
) {
    let cutoff = minus(now, seconds(longest_period_seconds));
    for event in events.iter_mut() {
        if event.at < cutoff {
            event.outdated = true;
        }
    }
}

/// Upstream's `storeScaleEvent`: records a scale from `previous` to `new` replicas in the list of
/// its direction (a scale-up when `new > previous`, else a scale-down), over the last slot
/// outdated by the direction's longest policy period, or appended. Nothing is recorded without a
/// behavior, as the legacy path does not read events.
pub fn store_scale_event(
    behavior: Option<&HorizontalPodAutoscalerBehavior>,
    scale_up_events: &mut Vec<ScaleEvent>,
    scale_down_events: &mut Vec<ScaleEvent>,
    previous: i32,
    new: i32,
    now: Timestamp,
) {
    let Some(behavior) = behavior else {
        return;
    };
    let (events, rules, change) = if new > previous {
        (
            scale_up_events,
            &behavior.scale_up,
            new.saturating_sub(previous),
        )
    } else {
        (
            scale_down_events,
            &behavior.scale_down,
            previous.saturating_sub(new),
        )
    };
    let longest = rules.as_ref().map(longest_policy_period).unwrap_or(0);
    mark_scale_events_outdated(events, longest, now);
    let event = ScaleEvent {
        at: now,
        change,
        outdated: false,
    };
    match events.iter().rposition(|e| e.outdated) {
        Some(i) => events[i] = event,
        None => events.push(event),
    }
}

#[cfg(test)]
mod tests {
    //! Ported from upstream's `horizontal_test.go`: `TestNormalizeDesiredReplicas`,
    //! `TestScalingWithRules`, `TestStoreScaleEvents`, `TestNormalizeDesiredReplicasWithBehavior`
    //! and `TestCalculateScaleDownLimitWithBehaviors`-style cases.
    use super::*;
    use crate::apimachinery::autoscaling::default_behavior;

    fn now() -> Timestamp {
        Timestamp::from_second(1_700_000_000).unwrap()
    }
    fn ago(secs: f64) -> Timestamp {
        now() - jiff::SignedDuration::from_secs_f64(secs)
    }
    fn rec(replicas: i32, secs_ago: f64) -> Recommendation {
        Recommendation {
            at: ago(secs_ago),
            replicas,
        }
    }

    /// Upstream's `generateScalingRules`.
    fn rules(
        pods: i32,
        pods_period: i32,
        percent: i32,
        percent_period: i32,
        window: i32,
    ) -> HPAScalingRules {
        let mut policies = Vec::new();
        if pods != 0 {
            policies.push(HPAScalingPolicy {
                type_: "Pods".into(),
                value: pods,
                period_seconds: pods_period,
            });
        }
        if percent != 0 {
            policies.push(HPAScalingPolicy {
                type_: "Percent".into(),
                value: percent,
                period_seconds: percent_period,
            });
        }
        HPAScalingRules {
            stabilization_window_seconds: Some(window),
            select_policy: Some("Max".into()),
            policies: (!policies.is_empty()).then_some(policies),
            tolerance: None,
        }
    }

    /// Upstream's `generateEventsUniformDistribution`: events spread evenly over the last
    /// `period` seconds, each in the middle of its segment.
    fn events(raw: &[i32], period: f64) -> Vec<ScaleEvent> {
        let segment = period / raw.len() as f64;
        raw.iter()
            .enumerate()
            .map(|(i, change)| {
                // Go's time.Duration of the float truncates to whole nanoseconds, then is
                // multiplied by a second: so whole seconds.
                let boundary = (period - segment * (i as f64 + 1.0) + segment / 2.0).trunc();
                ScaleEvent {
                    at: ago(boundary),
                    change: *change,
                    outdated: false,
                }
            })
            .collect()
    }

    #[test]
    fn legacy_stabilization() {
        // (name, recommendations, prenormalized, stabilized, log length)
        let cases = [
            ("empty log", vec![], 5, 5, 1),
            ("stabilize", vec![rec(4, 120.0), rec(5, 60.0)], 3, 5, 3),
            ("no stabilize", vec![rec(1, 120.0), rec(2, 60.0)], 3, 3, 3),
            (
                "no stabilize - old recommendations",
                vec![rec(10, 600.0), rec(9, 540.0)],
                3,
                3,
                2,
            ),
            (
                "stabilize - old recommendations",
                vec![rec(10, 600.0), rec(4, 60.0), rec(5, 120.0), rec(9, 540.0)],
                3,
                5,
                4,
            ),
        ];
        for (name, mut recs, prenormalized, expected, len) in cases {
            let got = stabilize_recommendation(
                &mut recs,
                now(),
                DOWNSCALE_STABILIZATION_WINDOW,
                prenormalized,
            );
            assert_eq!(got, expected, "{name}");
            assert_eq!(recs.len(), len, "{name}");
        }
    }

    #[test]
    fn legacy_normalization_conditions() {
        let mut recs = vec![rec(8, 60.0)];
        let n = normalize_legacy(
            &mut recs,
            now(),
            DOWNSCALE_STABILIZATION_WINDOW,
            3,
            8,
            1,
            10,
        );
        assert_eq!(
            (n.replicas, n.reason, n.limited),
            (8, "DesiredWithinRange", false)
        );
        assert_eq!(
            n.message,
            "the desired count is within the acceptable range"
        );
        assert_eq!(n.able_reason, "ScaleDownStabilized");

        // The scale-up limit is max(2*current, 4).
        let n = normalize_legacy(
            &mut Vec::new(),
            now(),
            DOWNSCALE_STABILIZATION_WINDOW,
            20,
            3,
            1,
            10,
        );
        assert_eq!((n.replicas, n.reason, n.limited), (6, "ScaleUpLimit", true));
        assert_eq!(n.able_reason, "ReadyForNewScale");
        let n = normalize_legacy(
            &mut Vec::new(),
            now(),
            DOWNSCALE_STABILIZATION_WINDOW,
            20,
            1,
            1,
            10,
        );
        assert_eq!((n.replicas, n.reason), (4, "ScaleUpLimit"));
        let n = normalize_legacy(
            &mut Vec::new(),
            now(),
            DOWNSCALE_STABILIZATION_WINDOW,
            20,
            8,
            1,
            10,
        );
        assert_eq!((n.replicas, n.reason), (10, "TooManyReplicas"));
        assert_eq!(
            n.message,
            "the desired replica count is more than the maximum replica count"
        );
        let n = normalize_legacy(
            &mut Vec::new(),
            now(),
            DOWNSCALE_STABILIZATION_WINDOW,
            1,
            8,
            2,
            10,
        );
        assert_eq!((n.replicas, n.reason), (2, "TooFewReplicas"));
        assert_eq!(
            n.message,
            "the desired replica count is less than the minimum replica count"
        );
    }

    struct RuleCase {
        name: &'static str,
        up_events: Vec<ScaleEvent>,
        down_events: Vec<ScaleEvent>,
        min: i32,
        max: i32,
        up: Option<HPAScalingRules>,
        down: Option<HPAScalingRules>,
        current: i32,
        desired: i32,
        expected: i32,
        reason: &'static str,
    }

    fn rule_case(
        name: &'static str,
        current: i32,
        desired: i32,
        min: i32,
        max: i32,
        expected: i32,
        reason: &'static str,
    ) -> RuleCase {
        RuleCase {
            name,
            up_events: vec![],
            down_events: vec![],
            min,
            max,
            up: None,
            down: None,
            current,
            desired,
            expected,
            reason,
        }
    }

    /// Upstream's `TestScalingWithRules` (its one case marked `testThis`, which upstream
    /// skips, is left out).
    #[test]
    fn scaling_with_rules() {
        let e = events;
        let cases = vec![
            rule_case(
                "prenormalized desired replicas within range",
                5,
                7,
                3,
                8,
                7,
                "DesiredWithinRange",
            ),
            rule_case(
                "prenormalized desired replicas < minReplicas",
                3,
                1,
                2,
                8,
                2,
                "TooFewReplicas",
            ),
            rule_case(
                "within range when minReplicas is 0",
                1,
                0,
                0,
                10,
                0,
                "DesiredWithinRange",
            ),
            rule_case(
                "maxReplicas is the limit because maxReplicas < scaleUpLimit",
                20,
                1000,
                1,
                10,
                10,
                "TooManyReplicas",
            ),
            rule_case(
                "desired replica count is more than the maximum replica count",
                100,
                1000,
                100,
                150,
                150,
                "TooManyReplicas",
            ),
            RuleCase {
                up: Some(rules(0, 0, 1, 60, 0)),
                ..rule_case(
                    "scaleUpLimit < maxReplicas with user policies",
                    3,
                    1000,
                    1,
                    2000,
                    4,
                    "ScaleUpLimit",
                )
            },
            rule_case(
                "scaleUp with default behavior",
                10,
                50,
                1,
                1000,
                20,
                "ScaleUpLimit",
            ),
            RuleCase {
                up: Some(rules(100, 60, 100, 60, 0)),
                ..rule_case(
                    "scaleUp with pods policy larger than percent policy",
                    10,
                    500,
                    1,
                    1000,
                    110,
                    "ScaleUpLimit",
                )
            },
            RuleCase {
                up: Some(rules(2, 60, 100, 60, 0)),
                ..rule_case(
                    "scaleUp with percent policy larger than pods policy",
                    10,
                    500,
                    1,
                    1000,
                    20,
                    "ScaleUpLimit",
                )
            },
            RuleCase {
                up: Some(rules(100, 60, 0, 0, 0)),
                ..rule_case(
                    "scaleUp with spec MaxReplicas limitation with large pod policy",
                    10,
                    50,
                    1,
                    1000,
                    50,
                    "DesiredWithinRange",
                )
            },
            RuleCase {
                up: Some(rules(30, 60, 0, 0, 0)),
                ..rule_case(
                    "scaleUp with pod policy limitation",
                    10,
                    50,
                    1,
                    1000,
                    40,
                    "ScaleUpLimit",
                )
            },
            RuleCase {
                up: Some(rules(0, 0, 200, 60, 0)),
                ..rule_case(
                    "scaleUp with percent policy limitation",
                    10,
                    50,
                    1,
                    1000,
                    30,
                    "ScaleUpLimit",
                )
            },
            RuleCase {
                down: Some(rules(20, 60, 1, 60, 300)),
                ..rule_case(
                    "scaleDown with percent policy larger than pod policy",
                    100,
                    2,
                    1,
                    1000,
                    80,
                    "ScaleDownLimit",
                )
            },
            RuleCase {
                down: Some(rules(2, 60, 1, 60, 300)),
                ..rule_case(
                    "scaleDown with pod policy larger than percent policy",
                    100,
                    2,
                    1,
                    1000,
                    98,
                    "ScaleDownLimit",
                )
            },
            RuleCase {
                down: Some(rules(100, 60, 0, 0, 300)),
                ..rule_case(
                    "scaleDown with spec MinReplicas limitation with large pod policy",
                    10,
                    0,
                    1,
                    1000,
                    1,
                    "TooFewReplicas",
                )
            },
            RuleCase {
                down: Some(rules(0, 0, 100, 60, 300)),
                ..rule_case(
                    "scaleDown with spec MinReplicas limitation with large percent policy",
                    10,
                    2,
                    5,
                    1000,
                    5,
                    "TooFewReplicas",
                )
            },
            RuleCase {
                down: Some(rules(5, 60, 0, 0, 300)),
                ..rule_case(
                    "scaleDown with pod policy limitation",
                    10,
                    2,
                    1,
                    1000,
                    5,
                    "ScaleDownLimit",
                )
            },
            RuleCase {
                down: Some(rules(0, 0, 50, 60, 300)),
                ..rule_case(
                    "scaleDown with percent policy limitation",
                    10,
                    5,
                    1,
                    1000,
                    5,
                    "DesiredWithinRange",
                )
            },
            RuleCase {
                up_events: e(&[1, 5, 9], 120.0),
                up: Some(rules(300, 60, 0, 0, 0)),
                ..rule_case(
                    "scaleUp with MaxReplicas limitation, large pod policy and events",
                    100,
                    500,
                    1,
                    200,
                    200,
                    "TooManyReplicas",
                )
            },
            RuleCase {
                up_events: e(&[1, 5, 9], 120.0),
                up: Some(rules(0, 0, 10000, 60, 0)),
                ..rule_case(
                    "scaleUp with MaxReplicas limitation, large percent policy and events",
                    100,
                    500,
                    1,
                    200,
                    200,
                    "TooManyReplicas",
                )
            },
            RuleCase {
                up_events: e(&[1, 5, 9], 120.0),
                up: Some(rules(5, 120, 0, 0, 0)),
                ..rule_case(
                    "scaleUp limited by currentReplicas with a lot of recent scale up events",
                    100,
                    500,
                    1,
                    1000,
                    100,
                    "ScaleUpLimit",
                )
            },
            RuleCase {
                up_events: e(&[1, 5, 9], 120.0),
                up: Some(rules(150, 120, 0, 0, 0)),
                ..rule_case(
                    "scaleUp with pod policy and previous scale up events",
                    100,
                    500,
                    1,
                    1000,
                    235,
                    "ScaleUpLimit",
                )
            },
            RuleCase {
                up_events: e(&[1, 5, 9], 120.0),
                up: Some(rules(0, 0, 200, 120, 0)),
                ..rule_case(
                    "scaleUp with percent policy and previous scale up events",
                    100,
                    500,
                    1,
                    1000,
                    255,
                    "ScaleUpLimit",
                )
            },
            RuleCase {
                up_events: e(&[4], 120.0),
                down_events: e(&[2], 120.0),
                up: Some(rules(0, 0, 300, 300, 0)),
                ..rule_case(
                    "scaleUp with percent policy and previous scale up and down events",
                    6,
                    24,
                    1,
                    1000,
                    16,
                    "ScaleUpLimit",
                )
            },
            RuleCase {
                down_events: e(&[1, 5, 9], 120.0),
                ..rule_case(
                    "scaleDown with default policy and previous events",
                    10,
                    5,
                    1,
                    1000,
                    5,
                    "DesiredWithinRange",
                )
            },
            RuleCase {
                down_events: e(&[1, 5, 9], 120.0),
                down: Some(rules(115, 120, 0, 0, 300)),
                ..rule_case(
                    "scaleDown with MinReplicas limitation, large pod policy and previous events",
                    100,
                    0,
                    1,
                    1000,
                    1,
                    "TooFewReplicas",
                )
            },
            RuleCase {
                down_events: e(&[1, 5, 9], 120.0),
                down: Some(rules(130, 120, 0, 0, 300)),
                ..rule_case(
                    "scaleDown with MinReplicas=5 limitation, large pod policy and previous events",
                    100,
                    0,
                    5,
                    1000,
                    5,
                    "TooFewReplicas",
                )
            },
            RuleCase {
                down_events: e(&[1, 5, 9], 120.0),
                down: Some(rules(0, 0, 100, 120, 300)),
                ..rule_case(
                    "scaleDown with MinReplicas limitation, large percent policy and previous events",
                    100,
                    2,
                    5,
                    1000,
                    5,
                    "TooFewReplicas",
                )
            },
            RuleCase {
                down_events: e(&[1, 5, 9], 120.0),
                down: Some(rules(5, 120, 0, 0, 300)),
                ..rule_case(
                    "scaleDown with pod policy limitation and previous events",
                    100,
                    2,
                    1,
                    1000,
                    100,
                    "ScaleDownLimit",
                )
            },
            RuleCase {
                down_events: e(&[2, 4, 6], 120.0),
                down: Some(rules(0, 0, 50, 120, 300)),
                ..rule_case(
                    "scaleDown with percent policy limitation and previous events",
                    100,
                    0,
                    1,
                    1000,
                    56,
                    "ScaleDownLimit",
                )
            },
            RuleCase {
                up_events: e(&[2], 120.0),
                down_events: e(&[4], 120.0),
                down: Some(rules(0, 0, 50, 180, 0)),
                ..rule_case(
                    "scaleDown with percent policy and previous scale up and down events",
                    10,
                    1,
                    1,
                    1000,
                    6,
                    "ScaleDownLimit",
                )
            },
            RuleCase {
                down_events: e(&[10, 10, 10], 120.0),
                down: Some(rules(0, 0, 10, 120, 300)),
                ..rule_case(
                    "scaleDown with previous events preventing further scale down",
                    100,
                    0,
                    1,
                    1000,
                    100,
                    "ScaleDownLimit",
                )
            },
            RuleCase {
                down_events: e(&[10, 10, 10], 120.0),
                down: Some(rules(0, 0, 1000, 120, 300)),
                ..rule_case(
                    "scaleDown with previous events still allowing more scale down",
                    10,
                    5,
                    1,
                    1000,
                    5,
                    "DesiredWithinRange",
                )
            },
            RuleCase {
                up_events: e(&[8, 12, 9, 11], 120.0),
                up: Some(rules(1000, 60, 0, 0, 0)),
                ..rule_case(
                    "check 'outdated' flag for events for one behavior for up",
                    100,
                    200,
                    1,
                    1000,
                    200,
                    "DesiredWithinRange",
                )
            },
            RuleCase {
                up_events: e(&[8, 12, 9, 11], 120.0),
                up: Some(rules(1000, 120, 100, 60, 0)),
                ..rule_case(
                    "events not marked 'outdated' for two different policies for up",
                    100,
                    200,
                    1,
                    1000,
                    200,
                    "DesiredWithinRange",
                )
            },
            RuleCase {
                down_events: e(&[8, 12, 9, 11], 120.0),
                down: Some(rules(1000, 60, 0, 0, 300)),
                ..rule_case(
                    "check 'outdated' flag for events for one behavior for down",
                    100,
                    5,
                    1,
                    1000,
                    5,
                    "DesiredWithinRange",
                )
            },
            RuleCase {
                down_events: e(&[8, 12, 9, 11], 120.0),
                down: Some(rules(1000, 30, 100, 60, 300)),
                ..rule_case(
                    "events marked 'outdated' for two different policies for down",
                    100,
                    5,
                    1,
                    1000,
                    5,
                    "DesiredWithinRange",
                )
            },
        ];
        for c in cases {
            let (replicas, reason, _) = convert_desired_replicas_with_behavior_rate(
                c.current,
                c.desired,
                c.min,
                c.max,
                &scale_up_rules(c.up),
                &scale_down_rules(c.down),
                &c.up_events,
                &c.down_events,
                now(),
            );
            assert_eq!((replicas, reason), (c.expected, c.reason), "{}", c.name);
        }
    }

    /// Upstream's `TestCalculateScaleDownLimitWithBehaviors`-style selection: `Min` picks the
    /// smaller change (the larger count) on a scale-down, `Disabled` keeps the count.
    #[test]
    fn select_policies() {
        let mut r = rules(2, 60, 50, 60, 300);
        assert_eq!(
            calculate_scale_down_limit_with_behaviors(5, &[], &[], &r, now()),
            2
        );
        r.select_policy = Some("Min".into());
        assert_eq!(
            calculate_scale_down_limit_with_behaviors(5, &[], &[], &r, now()),
            3
        );
        r.select_policy = Some("Disabled".into());
        assert_eq!(
            calculate_scale_down_limit_with_behaviors(5, &[], &[], &r, now()),
            5
        );
        let mut r = rules(4, 60, 100, 60, 0);
        assert_eq!(
            calculate_scale_up_limit_with_scaling_rules(10, &[], &[], &r, now()),
            20
        );
        r.select_policy = Some("Min".into());
        assert_eq!(
            calculate_scale_up_limit_with_scaling_rules(10, &[], &[], &r, now()),
            14
        );
        r.select_policy = Some("Disabled".into());
        assert_eq!(
            calculate_scale_up_limit_with_scaling_rules(10, &[], &[], &r, now()),
            10
        );
    }

    /// A store case: name, previous events, rules, (change, outdated) after, change in the last
    /// 60 s before.
    type StoreCase = (
        &'static str,
        Vec<ScaleEvent>,
        Option<HPAScalingRules>,
        Vec<(i32, bool)>,
        i32,
    );

    /// Upstream's `TestStoreScaleEvents`, both directions.
    #[test]
    fn store_scale_events() {
        let ev = |change, secs_ago: f64, outdated| ScaleEvent {
            at: ago(secs_ago),
            change,
            outdated,
        };
        // (name, previous events, rules, expected (change, outdated) after, change in last 60s before)
        let cases: Vec<StoreCase> = vec![
            (
                "empty entries with default behavior",
                vec![],
                None,
                vec![],
                0,
            ),
            (
                "empty entries with two-policy-behavior",
                vec![],
                Some(rules(10, 60, 100, 60, 0)),
                vec![(5, false)],
                0,
            ),
            (
                "one outdated entry to be kept untouched without behavior",
                vec![ev(7, 61.0, false)],
                None,
                vec![(7, false)],
                0,
            ),
            (
                "one outdated entry to be replaced with behavior",
                vec![ev(7, 61.0, false)],
                Some(rules(10, 60, 100, 60, 0)),
                vec![(5, false)],
                0,
            ),
            (
                "one actual entry to be not touched with behavior",
                vec![ev(7, 58.0, false)],
                Some(rules(10, 60, 100, 60, 0)),
                vec![(7, false), (5, false)],
                7,
            ),
            (
                "two entries, one of them to be replaced",
                vec![ev(7, 61.0, false), ev(6, 59.0, false)],
                Some(rules(10, 60, 0, 0, 0)),
                vec![(5, false), (6, false)],
                6,
            ),
            (
                "replace one entry, use policies with different periods",
                vec![
                    ev(8, 29.0, false),
                    ev(6, 59.0, false),
                    ev(7, 61.0, false),
                    ev(9, 61.0, false),
                ],
                Some(rules(10, 60, 100, 30, 0)),
                vec![(8, false), (6, false), (7, true), (5, false)],
                14,
            ),
            (
                "two entries, both actual",
                vec![ev(7, 58.0, false), ev(6, 59.0, false)],
                Some(rules(10, 120, 100, 30, 0)),
                vec![(7, false), (6, false), (5, false)],
                13,
            ),
        ];
        for (name, previous, rules, expected, change_before) in cases {
            for up in [true, false] {
                let behavior = rules.clone().map(|r| HorizontalPodAutoscalerBehavior {
                    scale_up: up.then(|| r.clone()),
                    scale_down: (!up).then_some(r),
                });
                let (mut ups, mut downs) = if up {
                    (previous.clone(), vec![])
                } else {
                    (vec![], previous.clone())
                };
                let list = if up { &ups } else { &downs };
                assert_eq!(
                    replicas_change_per_period(60, list, now()),
                    change_before,
                    "{name}"
                );
                let new = if up { 15 } else { 5 };
                store_scale_event(behavior.as_ref(), &mut ups, &mut downs, 10, new, now());
                let list = if up { &ups } else { &downs };
                let got: Vec<(i32, bool)> = list.iter().map(|e| (e.change, e.outdated)).collect();
                assert_eq!(got, expected, "{name} (up: {up})");
            }
        }
    }

    /// A stabilization case: name, recommendations, current, prenormalized, stabilized, stored,
    /// up window, down window.
    type StabilizeCase = (
        &'static str,
        Vec<Recommendation>,
        i32,
        i32,
        i32,
        Option<Vec<i32>>,
        u64,
        u64,
    );

    /// Upstream's `TestNormalizeDesiredReplicasWithBehavior`.
    #[test]
    fn stabilization_with_behaviors() {
        // (name, recommendations, current, prenormalized, stabilized, stored, up window, down window)
        let cases: Vec<StabilizeCase> = vec![
            (
                "empty recommendations for scaling down",
                vec![],
                100,
                5,
                5,
                Some(vec![5]),
                0,
                0,
            ),
            (
                "simple scale down stabilization",
                vec![rec(4, 120.0), rec(5, 60.0)],
                100,
                3,
                5,
                Some(vec![4, 5, 3]),
                0,
                180,
            ),
            (
                "simple scale up stabilization",
                vec![rec(4, 120.0), rec(5, 60.0)],
                1,
                7,
                4,
                Some(vec![4, 5, 7]),
                300,
                0,
            ),
            (
                "no scale down stabilization",
                vec![rec(1, 120.0), rec(2, 60.0)],
                100,
                3,
                3,
                Some(vec![1, 2, 3]),
                300,
                0,
            ),
            (
                "no scale up stabilization",
                vec![rec(4, 120.0), rec(5, 60.0)],
                1,
                3,
                3,
                Some(vec![4, 5, 3]),
                0,
                300,
            ),
            (
                "no scale down stabilization, reuse recommendation element",
                vec![rec(10, 600.0), rec(9, 540.0)],
                100,
                3,
                3,
                Some(vec![10, 3]),
                0,
                0,
            ),
            (
                "no scale up stabilization, reuse recommendation element",
                vec![rec(10, 600.0), rec(9, 540.0)],
                1,
                100,
                100,
                Some(vec![10, 100]),
                0,
                0,
            ),
            (
                "scale down stabilization, reuse one of obsolete recommendation element",
                vec![rec(10, 600.0), rec(4, 60.0), rec(5, 120.0), rec(9, 540.0)],
                100,
                3,
                5,
                Some(vec![10, 4, 5, 3]),
                0,
                180,
            ),
            (
                "scale up stabilization, reuse one of obsolete recommendation element",
                vec![rec(10, 6000.0), rec(6, 60.0), rec(5, 120.0), rec(9, 180.0)],
                1,
                100,
                5,
                Some(vec![100, 6, 5, 9]),
                300,
                0,
            ),
            (
                "scale up and down stabilization, do not scale up when prenormalized rec goes down",
                vec![rec(2, 6000.0), rec(3, 180.0)],
                2,
                1,
                2,
                None,
                300,
                300,
            ),
            (
                "scale up and down stabilization, do not scale down when prenormalized rec goes up",
                vec![rec(2, 6000.0), rec(1, 180.0)],
                2,
                3,
                2,
                None,
                300,
                300,
            ),
        ];
        for (name, mut recs, current, prenormalized, expected, stored, up, down) in cases {
            let (got, _, _) = stabilize_recommendation_with_behaviors(
                &mut recs,
                now(),
                Duration::from_secs(up),
                Duration::from_secs(down),
                prenormalized,
                current,
            );
            assert_eq!(got, expected, "{name}");
            if let Some(stored) = stored {
                let kept: Vec<i32> = recs.iter().map(|r| r.replicas).collect();
                assert_eq!(kept, stored, "{name}");
            }
        }
    }

    #[test]
    fn normalize_with_behavior_conditions() {
        let behavior = default_behavior(Some(HorizontalPodAutoscalerBehavior::default())).unwrap();
        // The default scale-down window is the controller's 5 minutes.
        let mut recs = vec![rec(8, 60.0)];
        let n = normalize_with_behavior(&mut recs, &[], &[], now(), &behavior, 3, 8, 1, 10);
        assert_eq!(
            (n.replicas, n.reason, n.limited),
            (8, "DesiredWithinRange", false)
        );
        assert_eq!((n.able_reason, n.able_message), SCALE_DOWN_STABILIZED);
        // The default scale-up rate: max(+4 pods, +100%) per 15 s.
        let n = normalize_with_behavior(&mut Vec::new(), &[], &[], now(), &behavior, 50, 3, 1, 100);
        assert_eq!((n.replicas, n.reason, n.limited), (7, "ScaleUpLimit", true));
        assert_eq!(
            n.message,
            "the desired replica count is increasing faster than the maximum scale rate"
        );
        assert_eq!(n.able_reason, "ReadyForNewScale");
        // A scale-up already made in the period counts against the rate.
        let ups = [ScaleEvent {
            at: ago(5.0),
            change: 3,
            outdated: false,
        }];
        let n =
            normalize_with_behavior(&mut Vec::new(), &ups, &[], now(), &behavior, 50, 6, 1, 100);
        assert_eq!((n.replicas, n.reason), (7, "ScaleUpLimit"));
        // Scale-down stabilized by a recent higher recommendation, then limited by minReplicas.
        let mut recs = vec![rec(2, 10.0)];
        let n = normalize_with_behavior(&mut recs, &[], &[], now(), &behavior, 0, 6, 3, 100);
        assert_eq!(
            (n.replicas, n.reason, n.limited),
            (3, "TooFewReplicas", true)
        );
        assert_eq!(n.able_reason, "ScaleDownStabilized");
        // A scale-down rate of one pod a minute.
        let slow = HorizontalPodAutoscalerBehavior {
            scale_down: Some(rules(1, 60, 0, 0, 0)),
            ..Default::default()
        };
        let n = normalize_with_behavior(&mut Vec::new(), &[], &[], now(), &slow, 1, 6, 1, 100);
        assert_eq!((n.replicas, n.reason), (5, "ScaleDownLimit"));
        assert_eq!(
            n.message,
            "the desired replica count is decreasing faster than the maximum scale rate"
        );
    }

    #[test]
    fn behavior_defaults() {
        assert_eq!(default_behavior(None), None);
        let defaulted = default_behavior(Some(HorizontalPodAutoscalerBehavior::default())).unwrap();
        assert_eq!(
            serde_json::to_value(&defaulted).unwrap(),
            serde_json::json!({
                "scaleUp": {
                    "stabilizationWindowSeconds": 0,
                    "selectPolicy": "Max",
                    "policies": [
                        {"type": "Pods", "value": 4, "periodSeconds": 15},
                        {"type": "Percent", "value": 100, "periodSeconds": 15},
                    ],
                },
                "scaleDown": {
                    "selectPolicy": "Max",
                    "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
                },
            })
        );
        // Set fields are kept, field by field.
        let partial = HorizontalPodAutoscalerBehavior {
            scale_up: Some(HPAScalingRules {
                stabilization_window_seconds: Some(60),
                ..Default::default()
            }),
            scale_down: Some(HPAScalingRules {
                select_policy: Some("Disabled".into()),
                policies: Some(vec![]),
                ..Default::default()
            }),
        };
        let defaulted = default_behavior(Some(partial)).unwrap();
        let up = defaulted.scale_up.unwrap();
        assert_eq!(up.stabilization_window_seconds, Some(60));
        assert_eq!(up.select_policy.as_deref(), Some("Max"));
        assert_eq!(up.policies.map(|p| p.len()), Some(2));
        let down = defaulted.scale_down.unwrap();
        assert_eq!(down.select_policy.as_deref(), Some("Disabled"));
        assert_eq!(down.policies, Some(vec![]));
        assert_eq!(down.stabilization_window_seconds, None);
    }
}
