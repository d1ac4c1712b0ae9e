//! ResourceQuotas and the `ResourceQuota` admission plugin
//! (`k8s.io/apiserver/pkg/admission/plugin/resourcequota`): a quota's strategy (its status
//! cleared on create; `spec.hard` validated in upstream's words) and, on every create of a
//! namespaced object (and on updates of Services and claims, whose usage may grow), the charge:
//! the quotas of the namespace whose `status.hard` names something the object uses are checked
//! (a pod must then name the cpu and memory they limit: `failed quota: <q>: must specify ...`;
//! `exceeded quota: <q>, requested: pods=1, used: pods=2, limited: pods=2`) and their
//! `status.used` raised, a compare-and-swap on each quota's resourceVersion retried on conflict,
//! before the object itself is written. So concurrent creates never both take the last unit, as
//! upstream serializes them through the quota. The resource quota controller recounts later.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::errors::{ApiError, Cause, from_store};
use super::resources::{self, Resource};
use super::{ApiServer, decode, encode};
use crate::apimachinery::quantity::{Quantity, go_debug};
use crate::apimachinery::quota::{
    self as accounting, ResourceList, add, less_than_or_equal, mask, pretty, resource_list,
    subtract_non_negative, to_json,
};
use crate::store::RangeRequest;

/// How often a charge is tried again after losing a race for a quota.
const RETRIES: usize = 10;

/// The kinds never charged (upstream's `DefaultIgnoredResources`).
fn ignored(resource: &Resource) -> bool {
    resource.plural == "events" || super::auth::reviews::is_review(resource)
}

/// The quota strategy's `PrepareForCreate`: a new quota has no status.
pub(crate) fn prepare_for_create(quota: &mut Value) {
    if let Some(m) = quota.as_object_mut() {
        m.remove("status");
    }
}

/// `ValidateResourceQuotaResourceName` and `ValidateResourceQuantityValue` over one list.
fn validate_list(list: &Value, path: &str, causes: &mut Vec<Cause>) {
    for (k, v) in list.as_object().into_iter().flatten() {
        let field = format!("{path}[{k}]");
        let found = super::admission::qualified_name_causes(&field, k);
        if !found.is_empty() {
            causes.extend(found);
        } else if !k.contains('/') {
            if !accounting::is_standard_name(k) && k != "storage" {
                causes.push(Cause::invalid(
                    &field,
                    &json!(k),
                    "must be a standard resource type or fully qualified",
                ));
            } else if !accounting::is_standard_name(k) {
                causes.push(Cause::invalid(
                    &field,
                    &json!(k),
                    "must be a standard resource for quota",
                ));
            }
        }
        let text = v.as_str().map_or(v.to_string(), str::to_owned);
        let Some(q) = Quantity::of(v) else {
            continue;
        };
        if q.is_negative() {
            causes.push(Cause::invalid(
                &field,
                &json!(q.to_string()),
                "must be greater than or equal to 0",
            ));
        }
        if (accounting::is_integer_name(k) || is_extended(k)) && q.milli() % 1000 != 0 {
            causes.push(Cause::invalid_shown(
                &field,
                &go_debug(&text),
                "must be an integer",
            ));
        }
    }
}

/// `IsExtendedResourceName`: a name outside `kubernetes.io/` that is not a request.
fn is_extended(name: &str) -> bool {
    name.contains('/') && !name.contains("kubernetes.io/") && !name.starts_with("requests.")
}

/// `ValidateResourceQuota` (spec and status) and its scopes' basic rules.
pub(crate) fn validate(quota: &Value, causes: &mut Vec<Cause>) {
    validate_list(&quota["spec"]["hard"], "spec.hard", causes);
    validate_list(&quota["status"]["hard"], "status.hard", causes);
    validate_list(&quota["status"]["used"], "status.used", causes);
    let scopes = &quota["spec"]["scopes"];
    const SCOPES: &[&str] = &[
        "Terminating",
        "NotTerminating",
        "BestEffort",
        "NotBestEffort",
        "PriorityClass",
        "CrossNamespacePodAffinity",
    ];
    let list: Vec<&str> = scopes
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let shown = format!("[]core.ResourceQuotaScope{{{}}}", {
        list.iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    });
    for s in &list {
        if !SCOPES.contains(s) {
            causes.push(Cause::invalid_shown(
                "spec.scopes",
                &shown,
                "unsupported scope",
            ));
        }
    }
    for (a, b) in [
        ("BestEffort", "NotBestEffort"),
        ("Terminating", "NotTerminating"),
    ] {
        if list.contains(&a) && list.contains(&b) {
            causes.push(Cause::invalid_shown(
                "spec.scopes",
                &shown,
                "conflicting scopes",
            ));
        }
    }
}

/// One quota of the namespace as read: its store key and revision, and the object.
struct Read {
    key: String,
    revision: crate::store::Revision,
    quota: Value,
}

async fn quotas(api: &ApiServer, namespace: &str) -> Result<Vec<Read>, ApiError> {
    let quotas = resources::find("", "v1", "resourcequotas").expect("served");
    let listed = api
        .store()
        .range(&RangeRequest::prefix(quotas.key_prefix(Some(namespace))))
        .await
        .map_err(|e| from_store(e, "resourcequotas", ""))?;
    Ok(listed
        .kvs
        .iter()
        .filter_map(|kv| {
            Some(Read {
                key: kv.key.clone(),
                revision: kv.mod_revision,
                quota: decode(kv).ok()?,
            })
        })
        .collect())
}

/// What the admission plugin decides for one quota.
#[derive(Debug, PartialEq)]
pub(crate) enum Charge {
    /// Nothing the quota limits is used.
    Untouched,
    /// The quota's new `status.used`.
    Used(ResourceList),
}

/// The checks of one quota against an object's usage growth (`delta`), as upstream's
/// `CheckRequest`: the pod constraints, known usage, and the hard limits. `Err` is the
/// refusal's detail.
pub(crate) fn check(
    group: &str,
    plural: &str,
    quota: &Value,
    object: &Value,
    delta: &ResourceList,
) -> Result<Charge, String> {
    let name = quota["metadata"]["name"].as_str().unwrap_or_default();
    let hard = resource_list(&quota["status"]["hard"]);
    let used = resource_list(&quota["status"]["used"]);
    if !accounting::in_scope(quota, group, plural, object) {
        return Ok(Charge::Untouched);
    }
    let required: BTreeSet<String> = hard
        .keys()
        .filter(|k| accounting::matches(group, plural, k))
        .cloned()
        .collect();
    if required.is_empty() {
        return Ok(Charge::Untouched);
    }
    if (group, plural) == ("", "pods") {
        accounting::pod_constraints(&required, object)
            .map_err(|e| format!("failed quota: {name}: {e}"))?;
    }
    if required.iter().any(|r| !used.contains_key(r)) {
        return Err(format!(
            "status unknown for quota: {name}, resources: {}",
            required.iter().cloned().collect::<Vec<_>>().join(",")
        ));
    }
    let requested = mask(delta, hard.keys());
    if requested.is_empty() {
        return Ok(Charge::Untouched);
    }
    let new_used = add(&used, &requested);
    let (ok, exceeded) = less_than_or_equal(&mask(&new_used, requested.keys()), &hard);
    if !ok {
        return Err(format!(
            "exceeded quota: {name}, requested: {}, used: {}, limited: {}",
            pretty(&mask(&requested, &exceeded)),
            pretty(&mask(&used, &exceeded)),
            pretty(&mask(&hard, &exceeded)),
        ));
    }
    Ok(Charge::Used(new_used))
}

/// The plugin on a create (`old` is `None`) or an update of `object`: checks every quota of the
/// namespace and charges those it concerns before the object is written. A dry run is checked
/// but charges nothing.
pub(crate) async fn admit(
    api: &ApiServer,
    resource: &Resource,
    object: &Value,
    old: Option<&Value>,
    dry_run: bool,
) -> Result<(), ApiError> {
    if !resource.namespaced || ignored(resource) {
        return Ok(());
    }
    if old.is_some()
        && !(resource.group.is_empty()
            && matches!(resource.plural, "services" | "persistentvolumeclaims"))
    {
        return Ok(());
    }
    let Some(namespace) = object["metadata"]["namespace"].as_str() else {
        return Ok(());
    };
    if !api
        .constrained(super::constraints::Constraint::ResourceQuota, namespace)
        .await
    {
        return Ok(());
    }
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let forbidden = |detail: String| ApiError::Forbidden {
        resource: resource.qualified(),
        name: name.to_owned(),
        detail,
    };
    let mut delta = accounting::usage(resource.group, resource.plural, object);
    if let Some(old) = old {
        delta = subtract_non_negative(
            &delta,
            &accounting::usage(resource.group, resource.plural, old),
        );
    }
    delta.retain(|_, q| !q.is_zero());
    // The quotas already charged, by key, when a later one lost a race.
    let mut charged = BTreeSet::new();
    for _ in 0..RETRIES {
        let reads = quotas(api, namespace).await?;
        // Every quota's constraints and known usage first, then the limits, as upstream.
        let nothing = ResourceList::new();
        for read in &reads {
            check(
                resource.group,
                resource.plural,
                &read.quota,
                object,
                &nothing,
            )
            .map_err(forbidden)?;
        }
        let mut writes = Vec::new();
        for read in reads {
            if charged.contains(&read.key) {
                continue;
            }
            match check(resource.group, resource.plural, &read.quota, object, &delta) {
                Err(detail) => return Err(forbidden(detail)),
                Ok(Charge::Untouched) => {}
                Ok(Charge::Used(used)) => writes.push((read, used)),
            }
        }
        if dry_run || writes.is_empty() {
            return Ok(());
        }
        let mut lost = false;
        for (read, used) in writes {
            let mut quota = read.quota;
            quota["status"]["used"] = to_json(&used);
            let root = super::registry::store::gate_write(api, "UPDATE", &quota).await;
            match api
                .store()
                .update(&read.key, encode(quota.clone()), read.revision)
                .await
            {
                Ok(revision) => {
                    super::registry::store::emit_store(
                        api,
                        "UPDATE",
                        &quota,
                        Some(revision),
                        root,
                        format!(
                            "update {} at revision {revision} (quota charged for {} {namespace}/{name})",
                            read.key, resource.kind
                        ),
                    );
                    charged.insert(read.key);
                }
                Err(
                    crate::store::Error::Conflict { .. } | crate::store::Error::NotFound { .. },
                ) => {
                    lost = true;
                    break;
                }
                Err(e) => return Err(from_store(e, "resourcequotas", "")),
            }
        }
        if !lost {
            return Ok(());
        }
    }
    Err(forbidden("resource quota evaluation timed out".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(hard: Value, used: Value) -> Value {
        json!({"metadata": {"name": "q"}, "spec": {"hard": hard}, "status": {"hard": hard, "used": used}})
    }

    fn pod(resources: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "resources": resources}]}})
    }

    fn charge(quota: &Value, object: &Value) -> Result<Charge, String> {
        let delta = accounting::usage("", "pods", object);
        check("", "pods", quota, object, &delta)
    }

    #[test]
    fn the_third_pod_exceeds_a_quota_of_two() {
        let q = quota(json!({"pods": "2"}), json!({"pods": "2"}));
        assert_eq!(
            charge(&q, &pod(json!({}))),
            Err("exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2".into())
        );
        let q = quota(json!({"pods": "2"}), json!({"pods": "1"}));
        let Ok(Charge::Used(used)) = charge(&q, &pod(json!({}))) else {
            panic!("charged")
        };
        assert_eq!(to_json(&used), json!({"pods": "2"}));
    }

    #[test]
    fn a_quota_on_cpu_wants_every_container_to_name_it() {
        let q = quota(
            json!({"requests.cpu": "1", "limits.cpu": "2", "pods": "10"}),
            json!({"requests.cpu": "0", "limits.cpu": "0", "pods": "0"}),
        );
        assert_eq!(
            charge(&q, &pod(json!({}))),
            Err("failed quota: q: must specify limits.cpu for: c; requests.cpu for: c".into())
        );
        assert_eq!(
            charge(&q, &pod(json!({"requests": {"cpu": "1500m"}, "limits": {"cpu": "2"}}))),
            Err("exceeded quota: q, requested: requests.cpu=1500m, used: requests.cpu=0, limited: requests.cpu=1".into())
        );
        let Ok(Charge::Used(used)) = charge(
            &q,
            &pod(json!({"requests": {"cpu": "500m"}, "limits": {"cpu": "1"}})),
        ) else {
            panic!("charged")
        };
        assert_eq!(
            to_json(&used),
            json!({"limits.cpu": "1", "pods": "1", "requests.cpu": "500m"})
        );
    }

    #[test]
    fn a_quota_without_status_or_without_a_match_is_passed_over() {
        let fresh = json!({"metadata": {"name": "q"}, "spec": {"hard": {"pods": "0"}}});
        assert_eq!(charge(&fresh, &pod(json!({}))), Ok(Charge::Untouched));
        let other = quota(json!({"services": "1"}), json!({"services": "1"}));
        assert_eq!(charge(&other, &pod(json!({}))), Ok(Charge::Untouched));
        let unknown = quota(json!({"pods": "2"}), json!({}));
        assert_eq!(
            charge(&unknown, &pod(json!({}))),
            Err("status unknown for quota: q, resources: pods".into())
        );
    }

    #[test]
    fn a_quota_is_validated_in_upstreams_words() {
        let mut causes = Vec::new();
        validate(
            &json!({"spec": {"hard": {"pods": "1.5", "bogus": "1", "cpu": "-1", "count/deployments.apps": "2"}}}),
            &mut causes,
        );
        let shown: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        assert_eq!(
            shown,
            [
                r#"spec.hard[bogus]: Invalid value: "bogus": must be a standard resource type or fully qualified"#,
                r#"spec.hard[cpu]: Invalid value: "-1": must be greater than or equal to 0"#,
                r#"spec.hard[pods]: Invalid value: resource.Quantity{i:resource.int64Amount{value:15, scale:-1}, d:resource.infDecAmount{Dec:(*inf.Dec)(nil)}, s:"", Format:"DecimalSI"}: must be an integer"#,
            ]
        );
    }
}
