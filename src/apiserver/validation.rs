//! Validation of the batch and policy kinds beyond what every object gets, in upstream's words
//! (`pkg/apis/batch/validation` for CronJobs, `pkg/apis/policy/validation` for
//! PodDisruptionBudgets): the cron schedule and its time zone, the concurrency policy, history
//! limits and the Job template's generated selector; a budget's int-or-percent bounds, its
//! label selector and its unhealthy-pod eviction policy.

use serde_json::{Value, json};

use super::errors::Cause;
use crate::apimachinery::cron;

const PERCENT: &str = "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')";
const NON_NEGATIVE: &str = "must be greater than or equal to 0";

/// A CronJob's name, longer than this, leaves no room for the `-<minutes>` its Jobs add.
const CRONJOB_NAME_MAX: usize = 52;

/// `ValidateCronJobCreate` / `ValidateCronJobUpdate` beyond the metadata and pod template
/// checks every workload gets (`old` is the stored CronJob on update).
pub(crate) fn cronjob(object: &Value, old: Option<&Value>, causes: &mut Vec<Cause>) {
    let spec = &object["spec"];
    let old_spec = old.map(|o| &o["spec"]);
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    if old.is_none() && name.len() > CRONJOB_NAME_MAX {
        causes.push(Cause::invalid(
            "metadata.name",
            &json!(name),
            "must be no more than 52 characters",
        ));
    }
    let schedule = spec["schedule"].as_str().unwrap_or_default();
    let time_zone = spec["timeZone"].as_str();
    if schedule.is_empty() {
        causes.push(Cause::required("spec.schedule"));
    } else {
        // A schedule stored with TZ before the field existed may keep it.
        let tz_allowed =
            old_spec.is_some_and(|o| o["schedule"].as_str().unwrap_or_default().contains("TZ"));
        if let Err(e) = cron::parse(schedule) {
            causes.push(Cause::invalid(
                "spec.schedule",
                &json!(schedule),
                e.to_string(),
            ));
        }
        if tz_allowed && schedule.contains("TZ") && time_zone.is_some() {
            causes.push(Cause::invalid(
                "spec.schedule",
                &json!(schedule),
                "cannot use both timeZone field and TZ or CRON_TZ in schedule",
            ));
        } else if !tz_allowed && schedule.contains("TZ") {
            causes.push(Cause::invalid(
                "spec.schedule",
                &json!(schedule),
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            ));
        }
    }
    non_negative(spec, "startingDeadlineSeconds", causes);
    if old_spec.is_none_or(|o| o["timeZone"] != spec["timeZone"])
        && let Some(tz) = time_zone
    {
        time_zone_causes(tz, causes);
    }
    match spec["concurrencyPolicy"].as_str() {
        Some("Allow" | "Forbid" | "Replace") | None => {}
        Some("") => causes.push(Cause::required("spec.concurrencyPolicy")),
        Some(other) => causes.push(Cause::unsupported(
            "spec.concurrencyPolicy",
            &json!(other),
            &["Allow", "Forbid", "Replace"],
        )),
    }
    let job = &spec["jobTemplate"]["spec"];
    if !job["selector"].is_null() {
        causes.push(Cause::invalid_shown(
            "spec.jobTemplate.spec.selector",
            &label_selector_go(&job["selector"]),
            "`selector` will be auto-generated",
        ));
    }
    if job["manualSelector"] == json!(true) {
        causes.push(Cause::unsupported(
            "spec.jobTemplate.spec.manualSelector",
            &json!(true),
            &["nil", "false"],
        ));
    }
    non_negative(spec, "successfulJobsHistoryLimit", causes);
    non_negative(spec, "failedJobsHistoryLimit", causes);
}

fn non_negative(spec: &Value, field: &str, causes: &mut Vec<Cause>) {
    if let Some(n) = spec[field].as_i64()
        && n < 0
    {
        causes.push(Cause::invalid(
            format!("spec.{field}"),
            &json!(n),
            NON_NEGATIVE,
        ));
    }
}

/// `validateTimeZone`: IANA naming rules, not `Local`, and a zone the database has.
fn time_zone_causes(tz: &str, causes: &mut Vec<Cause>) {
    let field = "spec.timeZone";
    if tz.is_empty() {
        causes.push(Cause::invalid(
            field,
            &json!(tz),
            "timeZone must be nil or non-empty string",
        ));
        return;
    }
    let part_ok = |p: &str| {
        p != "."
            && p != ".."
            && !p.starts_with('-')
            && (1..=14).contains(&p.len())
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'+'))
    };
    if !tz.split('/').all(part_ok) {
        causes.push(Cause::invalid(
            field,
            &json!(tz),
            format!("unknown time zone {tz}"),
        ));
        return;
    }
    if tz.eq_ignore_ascii_case("Local") {
        causes.push(Cause::invalid(
            field,
            &json!(tz),
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
        ));
    }
    if tz != "Local"
        && let Err(e) = cron::load_location(tz)
    {
        causes.push(Cause::invalid(field, &json!(tz), e));
    }
}

/// Go's `%#v` of a `*metav1.LabelSelector`, as a field error prints a struct it cannot name
/// otherwise (the shape is what users see; pointers print as addresses in Go, here as `...`).
fn label_selector_go(selector: &Value) -> String {
    let labels: Vec<String> = selector["matchLabels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k:?}:{:?}", v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    format!(
        "&v1.LabelSelector{{MatchLabels:map[string]string{{{}}}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}}",
        labels.join(", ")
    )
}

/// Go's `%#v` of an `intstr.IntOrString`, which is how a field error shows one.
fn int_or_string_go(value: &Value) -> String {
    match value {
        Value::String(s) => format!("intstr.IntOrString{{Type:1, IntVal:0, StrVal:{s:?}}}"),
        other => format!(
            "intstr.IntOrString{{Type:0, IntVal:{}, StrVal:\"\"}}",
            other.as_i64().unwrap_or_default()
        ),
    }
}

/// An int-or-percent as `ValidatePositiveIntOrPercent` and `IsNotMoreThan100Percent` check it.
fn int_or_percent(field: &str, value: &Value, causes: &mut Vec<Cause>) {
    match value {
        Value::String(s) => {
            let digits = s.strip_suffix('%').unwrap_or_default();
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                causes.push(Cause::invalid_shown(
                    field,
                    &int_or_string_go(value),
                    PERCENT,
                ));
            } else if digits.parse::<u64>().map_or(true, |p| p > 100) {
                causes.push(Cause::invalid_shown(
                    field,
                    &int_or_string_go(value),
                    "must not be greater than 100%",
                ));
            }
        }
        Value::Number(n) if n.as_i64().is_some_and(|n| n < 0) => {
            causes.push(Cause::invalid(field, value, NON_NEGATIVE));
        }
        _ => {}
    }
}

/// `ValidatePodDisruptionBudget`.
pub(crate) fn pod_disruption_budget(object: &Value, causes: &mut Vec<Cause>) {
    let spec = &object["spec"];
    let (min, max) = (&spec["minAvailable"], &spec["maxUnavailable"]);
    if !min.is_null() && !max.is_null() {
        let shown = format!(
            "policy.PodDisruptionBudgetSpec{{MinAvailable:{}, Selector:..., MaxUnavailable:{}, UnhealthyPodEvictionPolicy:...}}",
            int_or_string_go(min),
            int_or_string_go(max)
        );
        causes.push(Cause::invalid_shown(
            "spec",
            &shown,
            "minAvailable and maxUnavailable cannot be both set",
        ));
    }
    if !min.is_null() {
        int_or_percent("spec.minAvailable", min, causes);
    }
    if !max.is_null() {
        int_or_percent("spec.maxUnavailable", max, causes);
    }
    label_selector("spec.selector", &spec["selector"], causes);
    if let Some(policy) = spec["unhealthyPodEvictionPolicy"].as_str()
        && !matches!(policy, "AlwaysAllow" | "IfHealthyBudget")
    {
        causes.push(Cause::unsupported(
            "spec.unhealthyPodEvictionPolicy",
            &json!(policy),
            &["AlwaysAllow", "IfHealthyBudget"],
        ));
    }
}

/// `ValidateLabelSelector`: each requirement's operator and values.
pub(crate) fn label_selector(path: &str, selector: &Value, causes: &mut Vec<Cause>) {
    let Some(requirements) = selector["matchExpressions"].as_array() else {
        return;
    };
    for (i, r) in requirements.iter().enumerate() {
        let field = format!("{path}.matchExpressions[{i}]");
        let values = r["values"].as_array().map_or(0, Vec::len);
        match r["operator"].as_str().unwrap_or_default() {
            "In" | "NotIn" if values == 0 => causes.push(Cause::required_because(
                format!("{field}.values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            )),
            "Exists" | "DoesNotExist" if values > 0 => causes.push(Cause::forbidden(
                format!("{field}.values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => causes.push(Cause::invalid(
                format!("{field}.operator"),
                &json!(other),
                "not a valid selector operator",
            )),
        }
    }
}

/// `ValidateHorizontalPodAutoscaler` (`pkg/apis/autoscaling/validation`), on the object as
/// autoscaling/v2 has it (a v1 object is checked after its conversion, as upstream checks the
/// internal form): the target reference, the replica bounds, each Resource metric's target and
/// the behavior's policies and windows.
pub(crate) fn horizontal_pod_autoscaler(object: &Value, causes: &mut Vec<Cause>) {
    let spec = &object["spec"];
    let target = &spec["scaleTargetRef"];
    for field in ["kind", "name"] {
        if target[field].as_str().is_none_or(str::is_empty) {
            causes.push(Cause::required(format!("spec.scaleTargetRef.{field}")));
        }
    }
    let min = spec["minReplicas"].as_i64();
    if let Some(min) = min.filter(|m| *m < 1) {
        causes.push(Cause::invalid(
            "spec.minReplicas",
            &json!(min),
            "must be greater than or equal to 1",
        ));
    }
    let max = spec["maxReplicas"].as_i64().unwrap_or(0);
    if max < 1 {
        causes.push(Cause::invalid(
            "spec.maxReplicas",
            &json!(max),
            "must be greater than 0",
        ));
    }
    if let Some(min) = min
        && max < min
    {
        causes.push(Cause::invalid(
            "spec.maxReplicas",
            &json!(max),
            "must be greater than or equal to `minReplicas`",
        ));
    }
    for (i, metric) in spec["metrics"].as_array().into_iter().flatten().enumerate() {
        let at = format!("spec.metrics[{i}]");
        match metric["type"].as_str().unwrap_or_default() {
            "" => causes.push(Cause::required(format!("{at}.type"))),
            "Resource" | "ContainerResource" => {
                let source = if metric["type"] == "Resource" {
                    "resource"
                } else {
                    "containerResource"
                };
                let r = &metric[source];
                let at = format!("{at}.{source}");
                if !r.is_object() {
                    causes.push(Cause::required(at));
                    continue;
                }
                if r["name"].as_str().is_none_or(str::is_empty) {
                    causes.push(Cause::required(format!("{at}.name")));
                }
                metric_target(&format!("{at}.target"), &r["target"], causes);
            }
            "Pods" | "Object" | "External" => {}
            other => causes.push(Cause::invalid(
                format!("{at}.type"),
                &json!(other),
                "must be either Resource, Pods, Object, External or ContainerResource",
            )),
        }
    }
    for direction in ["scaleUp", "scaleDown"] {
        let rules = &spec["behavior"][direction];
        let at = format!("spec.behavior.{direction}");
        if let Some(window) = rules["stabilizationWindowSeconds"].as_i64()
            && !(0..=3600).contains(&window)
        {
            let detail = if window < 0 {
                "must be greater than or equal to zero"
            } else {
                "must be less than or equal to 3600"
            };
            causes.push(Cause::invalid(
                format!("{at}.stabilizationWindowSeconds"),
                &json!(window),
                detail,
            ));
        }
        if let Some(policy) = rules["selectPolicy"].as_str()
            && !["Max", "Min", "Disabled"].contains(&policy)
        {
            causes.push(Cause::invalid(
                format!("{at}.selectPolicy"),
                &json!(policy),
                "must be one of Max, Min or Disabled",
            ));
        }
        for (i, policy) in rules["policies"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let at = format!("{at}.policies[{i}]");
            let kind = policy["type"].as_str().unwrap_or_default();
            if !["Pods", "Percent"].contains(&kind) {
                causes.push(Cause::invalid(
                    format!("{at}.type"),
                    &json!(kind),
                    "must be one of Pods or Percent",
                ));
            }
            let value = policy["value"].as_i64().unwrap_or(0);
            if value <= 0 {
                causes.push(Cause::invalid(
                    format!("{at}.value"),
                    &json!(value),
                    "must be greater than zero",
                ));
            }
            let period = policy["periodSeconds"].as_i64().unwrap_or(0);
            if period <= 0 {
                causes.push(Cause::invalid(
                    format!("{at}.periodSeconds"),
                    &json!(period),
                    "must be greater than zero",
                ));
            } else if period > 1800 {
                causes.push(Cause::invalid(
                    format!("{at}.periodSeconds"),
                    &json!(period),
                    "must be less than or equal to 1800",
                ));
            }
        }
    }
}

/// `validateMetricTarget`: the target type and the value that type needs.
fn metric_target(at: &str, target: &Value, causes: &mut Vec<Cause>) {
    match target["type"].as_str().unwrap_or_default() {
        "" => causes.push(Cause::required(format!("{at}.type"))),
        "Utilization" => match target["averageUtilization"].as_i64() {
            None => causes.push(Cause::required_because(
                format!("{at}.averageUtilization"),
                "must set averageUtilization when type is Utilization",
            )),
            Some(u) if u <= 0 => causes.push(Cause::invalid(
                format!("{at}.averageUtilization"),
                &json!(u),
                "must be greater than 0",
            )),
            Some(_) => {}
        },
        "AverageValue" => {
            let value = target["averageValue"].as_str().unwrap_or_default();
            if value.is_empty() {
                causes.push(Cause::required_because(
                    format!("{at}.averageValue"),
                    "must set averageValue when type is AverageValue",
                ));
            } else if crate::apimachinery::quantity::parse_milli(value).is_ok_and(|v| v <= 0) {
                causes.push(Cause::invalid(
                    format!("{at}.averageValue"),
                    &json!(value),
                    "must be positive",
                ));
            }
        }
        "Value" => {}
        other => causes.push(Cause::invalid(
            format!("{at}.type"),
            &json!(other),
            "must be either Utilization, Value, or AverageValue",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(causes: &[Cause]) -> Vec<String> {
        causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    fn cronjob_causes(spec: Value, old: Option<Value>) -> Vec<String> {
        let object = json!({"metadata": {"name": "c"}, "spec": spec});
        let old = old.map(|s| json!({"metadata": {"name": "c"}, "spec": s}));
        let mut causes = Vec::new();
        cronjob(&object, old.as_ref(), &mut causes);
        messages(&causes)
    }

    #[test]
    fn cronjob_schedules_and_zones_are_refused_in_upstreams_words() {
        let cases: &[(Value, Option<Value>, &[&str])] = &[
            (json!({"schedule": "*/5 * * * *"}), None, &[]),
            (
                json!({"schedule": "61 * * * *"}),
                None,
                &[
                    "spec.schedule: Invalid value: \"61 * * * *\": end of range (61) above maximum (59): 61",
                ],
            ),
            (
                json!({"schedule": "CRON_TZ=UTC * * * * *"}),
                None,
                &[
                    "spec.schedule: Invalid value: \"CRON_TZ=UTC * * * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
                ],
            ),
            (
                json!({"schedule": "TZ=UTC * * * * *", "timeZone": "UTC"}),
                Some(json!({"schedule": "TZ=UTC * * * * *"})),
                &[
                    "spec.schedule: Invalid value: \"TZ=UTC * * * * *\": cannot use both timeZone field and TZ or CRON_TZ in schedule",
                ],
            ),
            (
                json!({"schedule": "TZ=UTC * * * * *"}),
                Some(json!({"schedule": "TZ=UTC * * * * *"})),
                &[],
            ),
            (json!({"schedule": "@every 1h"}), None, &[]),
            (
                json!({"schedule": "* * * * *", "timeZone": "Europe/Pariss"}),
                None,
                &[
                    "spec.timeZone: Invalid value: \"Europe/Pariss\": unknown time zone Europe/Pariss",
                ],
            ),
            (
                json!({"schedule": "* * * * *", "timeZone": "Local"}),
                None,
                &[
                    "spec.timeZone: Invalid value: \"Local\": timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
                ],
            ),
            (
                json!({"schedule": "* * * * *", "timeZone": "Europe/Paris", "concurrencyPolicy": "Sometimes", "failedJobsHistoryLimit": -1}),
                None,
                &[
                    "spec.concurrencyPolicy: Unsupported value: \"Sometimes\": supported values: \"Allow\", \"Forbid\", \"Replace\"",
                    "spec.failedJobsHistoryLimit: Invalid value: -1: must be greater than or equal to 0",
                ],
            ),
        ];
        for (spec, old, want) in cases {
            assert_eq!(cronjob_causes(spec.clone(), old.clone()), *want, "{spec}");
        }
        let long = json!({"metadata": {"name": "a".repeat(53)}, "spec": {"schedule": "@daily"}});
        let mut causes = Vec::new();
        cronjob(&long, None, &mut causes);
        assert!(messages(&causes)[0].ends_with("must be no more than 52 characters"));
    }

    #[test]
    fn budgets_take_one_int_or_percent() {
        let check = |spec: Value| {
            let mut causes = Vec::new();
            pod_disruption_budget(&json!({"spec": spec}), &mut causes);
            messages(&causes)
        };
        assert!(check(json!({"minAvailable": 2})).is_empty());
        assert!(check(json!({"maxUnavailable": "50%"})).is_empty());
        assert_eq!(
            check(json!({"minAvailable": "50"})),
            [format!(
                "spec.minAvailable: Invalid value: intstr.IntOrString{{Type:1, IntVal:0, StrVal:\"50\"}}: {PERCENT}"
            )]
        );
        assert_eq!(
            check(json!({"maxUnavailable": "150%"})),
            [
                "spec.maxUnavailable: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"150%\"}: must not be greater than 100%"
            ]
        );
        assert_eq!(
            check(json!({"minAvailable": -1})),
            ["spec.minAvailable: Invalid value: -1: must be greater than or equal to 0"]
        );
        let both = check(json!({"minAvailable": 1, "maxUnavailable": 1}));
        assert_eq!(both.len(), 1);
        assert!(both[0].ends_with("minAvailable and maxUnavailable cannot be both set"));
        assert_eq!(
            check(json!({"minAvailable": 1, "unhealthyPodEvictionPolicy": "Never"})),
            [
                "spec.unhealthyPodEvictionPolicy: Unsupported value: \"Never\": supported values: \"AlwaysAllow\", \"IfHealthyBudget\""
            ]
        );
    }
}
