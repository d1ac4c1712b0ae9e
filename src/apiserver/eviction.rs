//! `POST pods/<name>/eviction`: a pod deleted only if no PodDisruptionBudget forbids it, as
//! upstream's `pkg/registry/core/pod/storage/eviction.go` decides. A pod that is pending,
//! finished or already being deleted goes without a look at budgets. Otherwise the one budget
//! whose selector matches it (more than one is a 500 Status) must allow a disruption: its
//! `disruptionsAllowed` is decremented, the pod named in `disruptedPods`, with the budget's
//! resourceVersion as precondition (retried on conflict), before the pod is deleted; none left
//! is 429 TooManyRequests with a `DisruptionBudget` cause, which `kubectl drain` retries. An
//! unready pod may go without spending a disruption (`unhealthyPodEvictionPolicy`
//! `AlwaysAllow`, or `IfHealthyBudget` while the budget has its healthy pods), deleted with the
//! resourceVersion it was judged at. The deleted pod first gets the `DisruptionTarget`
//! condition. The API server reads budgets from its own store: it is the only component that
//! may.

use std::sync::Arc;

use axum::response::Response;
use http::StatusCode;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};

use super::errors::{ApiError, from_store};
use super::handlers::Params;
use super::registry::store::{UpdateKind, Write, delete_object, get_object, update_object};
use super::resources::{self, Resource};
use super::{ApiServer, decode, json_response};
use crate::apimachinery::disruption;
use crate::store::RangeRequest;

/// How many times a write that lost a race is tried again (upstream's `EvictionsRetry`
/// has 20 steps).
const RETRIES: usize = 20;
/// Upstream's `MaxDisruptedPodSize`.
const MAX_DISRUPTED_PODS: usize = 2000;
/// The manager of the budget's status writes (kube-apiserver's loopback client).
const MANAGER: &str = "kube-apiserver";

fn budgets() -> &'static Resource {
    resources::find("policy", "v1", "poddisruptionbudgets").expect("served")
}

/// 429 "still being processed": the budget's status is older than its spec, or the pod
/// changed while it was judged.
fn still_processing(pdb: &str) -> ApiError {
    ApiError::TooManyRequests {
        message: "Cannot evict pod as it would violate the pod's disruption budget.".into(),
        causes: vec![(
            disruption::DISRUPTION_BUDGET_CAUSE,
            format!("The disruption budget {pdb} is still being processed by the server."),
        )],
        retry_after: 10,
    }
}

fn success() -> Response {
    json_response(
        StatusCode::CREATED,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    )
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

fn terminal_or_deleting(pod: &Value) -> bool {
    matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    ) || pod["metadata"]["deletionTimestamp"].is_string()
}

/// `canIgnorePDB`: nothing a budget guards is lost by deleting this pod.
fn can_ignore_budgets(pod: &Value) -> bool {
    terminal_or_deleting(pod) || pod["status"]["phase"] == "Pending"
}

fn has_rv_precondition(options: &Value) -> bool {
    options["preconditions"]["resourceVersion"].is_string()
}

fn with_rv_precondition(options: &Value, rv: &Value) -> Value {
    let mut options = options.clone();
    if !options.is_object() {
        options = json!({});
    }
    options["preconditions"]["resourceVersion"] = rv.clone();
    options
}

/// `propagateDryRun`: the request's `dryRun` and the body's DeleteOptions' must agree.
fn delete_options(eviction: &Value, params: &Params) -> Result<Value, ApiError> {
    let query: Vec<Value> = params
        .get("dryRun")
        .map(|d| vec![json!(d)])
        .unwrap_or_default();
    let mut options = match &eviction["deleteOptions"] {
        Value::Object(_) => eviction["deleteOptions"].clone(),
        _ => return Ok(json!({"dryRun": query})),
    };
    let body = options["dryRun"].as_array().cloned().unwrap_or_default();
    if body.is_empty() {
        options["dryRun"] = json!(query);
    } else if !query.is_empty() && query != body {
        let list = |v: &[Value]| {
            let items: Vec<&str> = v.iter().filter_map(Value::as_str).collect();
            format!("[{}]", items.join(" "))
        };
        return Err(ApiError::BadRequest(format!(
            "Non-matching dry-run options in request and content: {} and {}",
            list(&query),
            list(&body)
        )));
    }
    Ok(options)
}

fn dry_run(options: &Value) -> bool {
    options["dryRun"]
        .as_array()
        .is_some_and(|d| d.iter().any(|v| v == "All"))
}

/// Serves one eviction of the pod `name`.
pub(crate) async fn evict(
    api: &Arc<ApiServer>,
    pods: &'static Resource,
    namespace: &str,
    name: &str,
    eviction: &Value,
    params: &Params,
) -> Result<Response, ApiError> {
    if eviction["metadata"]["name"].as_str() != Some(name) {
        return Err(ApiError::BadRequest(
            "name in URL does not match name in Eviction object".into(),
        ));
    }
    super::noderestriction::admit_eviction(api, namespace, name).await?;
    let options = delete_options(eviction, params)?;
    let mut pod = Value::Null;
    let retries = if has_rv_precondition(&options) {
        1
    } else {
        RETRIES
    };
    for attempt in 1..=retries {
        pod = get_object(api, pods, Some(namespace), name).await?;
        if !can_ignore_budgets(&pod) {
            break;
        }
        let mut options = options.clone();
        if !terminal_or_deleting(&pod) && !has_rv_precondition(&options) {
            options = with_rv_precondition(&options, &pod["metadata"]["resourceVersion"]);
        }
        match delete_with_condition(api, pods, namespace, name, options, params).await {
            Ok(()) => return Ok(success()),
            Err(ApiError::Conflict { .. }) if attempt < retries => continue,
            Err(e) => return Err(e),
        }
    }

    let matching = budgets_of(api, namespace, &pod).await?;
    let budget = match matching.as_slice() {
        [] => None,
        [one] => Some(one.clone()),
        _ => {
            return Ok(json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.", "code": 500}),
            ));
        }
    };
    let mut judged_unhealthy = false;
    if let Some((mut pdb, mut revision)) = budget {
        let pdb_name = pdb.metadata.name.clone().unwrap_or_default();
        let status = pdb.status.clone().unwrap_or_default();
        let spends = if is_ready(&pod) {
            true
        } else if pdb
            .spec
            .as_ref()
            .and_then(|s| s.unhealthy_pod_eviction_policy.as_deref())
            == Some("AlwaysAllow")
            || (status.current_healthy >= status.desired_healthy && status.desired_healthy > 0)
        {
            // An unready pod guarded by a healthy budget goes without spending a disruption.
            judged_unhealthy = true;
            false
        } else {
            true
        };
        if spends {
            let mut done = false;
            for _ in 0..RETRIES {
                match check_and_decrement(api, namespace, name, &pdb, revision, dry_run(&options))
                    .await
                {
                    Ok(()) => {
                        done = true;
                        break;
                    }
                    Err(ApiError::Conflict { .. }) => {
                        let fresh = api
                            .store()
                            .get(&budgets().key(Some(namespace), &pdb_name))
                            .await
                            .map_err(|e| from_store(e, &budgets().qualified(), &pdb_name))?
                            .ok_or_else(|| ApiError::NotFound {
                                resource: budgets().qualified(),
                                name: pdb_name.clone(),
                            })?;
                        revision = fresh.mod_revision;
                        pdb = typed(&decode(&fresh)?)?;
                    }
                    Err(e) => return Err(e),
                }
            }
            if !done {
                return Err(ApiError::Timeout(format!(
                    "couldn't update PodDisruptionBudget \"{pdb_name}\" due to conflicts"
                )));
            }
        }
        if judged_unhealthy {
            let options = with_rv_precondition(&options, &pod["metadata"]["resourceVersion"]);
            return match delete_with_condition(api, pods, namespace, name, options, params).await {
                Err(ApiError::Conflict { .. })
                    if !has_rv_precondition(&client_options(eviction)) =>
                {
                    Err(still_processing(&pdb_name))
                }
                Err(e) => Err(e),
                Ok(()) => Ok(success()),
            };
        }
    }
    delete_with_condition(api, pods, namespace, name, options, params).await?;
    Ok(success())
}

/// The DeleteOptions the client sent, as it sent them.
fn client_options(eviction: &Value) -> Value {
    eviction["deleteOptions"].clone()
}

fn typed(object: &Value) -> Result<PodDisruptionBudget, ApiError> {
    serde_json::from_value(object.clone()).map_err(|e| {
        ApiError::Internal(format!("a stored PodDisruptionBudget does not decode: {e}"))
    })
}

/// The budgets of the pod's namespace whose selector matches its labels (a missing selector
/// matches nothing, an empty one everything), each with its store revision.
async fn budgets_of(
    api: &ApiServer,
    namespace: &str,
    pod: &Value,
) -> Result<Vec<(PodDisruptionBudget, crate::store::Revision)>, ApiError> {
    let range = api
        .store()
        .range(&RangeRequest::prefix(budgets().key_prefix(Some(namespace))))
        .await
        .map_err(|e| from_store(e, &budgets().qualified(), ""))?;
    let labels: std::collections::BTreeMap<String, String> =
        serde_json::from_value(pod["metadata"]["labels"].clone()).unwrap_or_default();
    let mut out = Vec::new();
    for kv in &range.kvs {
        let pdb = typed(&decode(kv)?)?;
        let Some(selector) = pdb.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
            continue;
        };
        if crate::apimachinery::labels::matches(selector, &labels) {
            out.push((pdb, kv.mod_revision));
        }
    }
    Ok(out)
}

/// `checkAndDecrement`: one disruption spent from the budget, written with its revision as
/// precondition (a `Conflict` means: read it again and retry).
async fn check_and_decrement(
    api: &ApiServer,
    namespace: &str,
    pod: &str,
    pdb: &PodDisruptionBudget,
    revision: crate::store::Revision,
    dry_run: bool,
) -> Result<(), ApiError> {
    let name = pdb.metadata.name.clone().unwrap_or_default();
    let mut status = pdb.status.clone().unwrap_or_default();
    if status.observed_generation.unwrap_or(0) < pdb.metadata.generation.unwrap_or(0) {
        return Err(still_processing(&name));
    }
    let forbidden = |detail: &str| ApiError::Forbidden {
        resource: "poddisruptionbudget.policy".into(),
        name: name.clone(),
        detail: detail.into(),
    };
    if status.disruptions_allowed < 0 {
        return Err(forbidden("pdb disruptions allowed is negative"));
    }
    if status.disrupted_pods.as_ref().map_or(0, |d| d.len()) > MAX_DISRUPTED_PODS {
        return Err(forbidden(
            "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
        ));
    }
    if status.disruptions_allowed == 0 {
        return Err(ApiError::TooManyRequests {
            message: "Cannot evict pod as it would violate the pod's disruption budget.".into(),
            causes: vec![(
                disruption::DISRUPTION_BUDGET_CAUSE,
                format!(
                    "The disruption budget {name} needs {} healthy pods and has {} currently",
                    status.desired_healthy, status.current_healthy
                ),
            )],
            retry_after: 0,
        });
    }
    let now = Time(jiff::Timestamp::now());
    status.disruptions_allowed -= 1;
    if status.disruptions_allowed == 0 {
        disruption::update_disruption_allowed_condition(&mut status, now.clone());
    }
    if dry_run {
        return Ok(());
    }
    status
        .disrupted_pods
        .get_or_insert_with(Default::default)
        .insert(pod.to_owned(), now);
    let status = serde_json::to_value(&status)
        .map_err(|e| ApiError::Internal(format!("a budget's status does not encode: {e}")))?;
    update_object(
        api,
        budgets(),
        Some(namespace),
        &name,
        Write {
            kind: UpdateKind::Status,
            precondition: Some(revision),
            allow_create: false,
            manager: Some(MANAGER),
            dry_run: false,
        },
        |old| {
            let mut new = old.clone();
            new["status"] = status.clone();
            Ok(new)
        },
    )
    .await?;
    Ok(())
}

/// `addConditionAndDeletePod`: the `DisruptionTarget` condition on the pod (unless a dry run),
/// then the delete, its resourceVersion precondition moved to the condition's write.
async fn delete_with_condition(
    api: &ApiServer,
    pods: &'static Resource,
    namespace: &str,
    name: &str,
    mut options: Value,
    params: &Params,
) -> Result<(), ApiError> {
    if !dry_run(&options) {
        let uid = options["preconditions"]["uid"].as_str().map(str::to_owned);
        let rv = options["preconditions"]["resourceVersion"]
            .as_str()
            .map(str::to_owned);
        let now = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let updated = update_object(
            api,
            pods,
            Some(namespace),
            name,
            Write {
                kind: UpdateKind::Status,
                precondition: None,
                allow_create: false,
                manager: Some(MANAGER),
                dry_run: false,
            },
            |old| {
                let conflict = |detail: String| ApiError::Conflict {
                    resource: "Pod".into(),
                    name: name.into(),
                    detail,
                };
                let (old_uid, old_rv) = (
                    old["metadata"]["uid"].as_str().unwrap_or_default(),
                    old["metadata"]["resourceVersion"].as_str().unwrap_or_default(),
                );
                if let Some(uid) = uid.as_deref().filter(|u| !u.is_empty() && *u != old_uid) {
                    return Err(conflict(format!("the UID in the precondition ({uid}) does not match the UID in record ({old_uid}). The object might have been deleted and then recreated")));
                }
                if let Some(rv) = rv.as_deref().filter(|r| !r.is_empty() && *r != old_rv) {
                    return Err(conflict(format!("the ResourceVersion in the precondition ({rv}) does not match the ResourceVersion in record ({old_rv}). The object might have been modified")));
                }
                let mut new = old.clone();
                add_disruption_target(&mut new, &now);
                Ok(new)
            },
        )
        .await?;
        if rv.is_some() {
            options["preconditions"]["resourceVersion"] =
                updated.object["metadata"]["resourceVersion"].clone();
        }
    }
    delete_object(api, pods, Some(namespace), name, &options, params).await?;
    Ok(())
}

/// `UpdatePodCondition` with `DisruptionTarget=True`, reason `EvictionByEvictionAPI`.
fn add_disruption_target(pod: &mut Value, now: &str) {
    let condition = json!({
        "type": "DisruptionTarget",
        "status": "True",
        "lastProbeTime": null,
        "lastTransitionTime": now,
        "reason": "EvictionByEvictionAPI",
        "message": "Eviction API: evicting",
    });
    if !pod["status"]["conditions"].is_array() {
        pod["status"]["conditions"] = json!([]);
    }
    let list = pod["status"]["conditions"]
        .as_array_mut()
        .expect("an array, just made");
    match list.iter_mut().find(|c| c["type"] == "DisruptionTarget") {
        Some(existing) => {
            if existing["status"] == "True" {
                let since = existing["lastTransitionTime"].clone();
                *existing = condition;
                existing["lastTransitionTime"] = since;
            } else {
                *existing = condition;
            }
        }
        None => list.push(condition),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_are_skipped_only_for_pods_with_nothing_left_to_guard() {
        let pod = |phase: &str, deleting: bool| {
            let mut p = json!({"metadata": {}, "status": {"phase": phase}});
            if deleting {
                p["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
            }
            p
        };
        assert!(can_ignore_budgets(&pod("Pending", false)));
        assert!(can_ignore_budgets(&pod("Succeeded", false)));
        assert!(can_ignore_budgets(&pod("Failed", false)));
        assert!(can_ignore_budgets(&pod("Running", true)));
        assert!(!can_ignore_budgets(&pod("Running", false)));
    }

    #[test]
    fn dry_run_options_must_agree() {
        let mut params = Params::new();
        params.insert("dryRun".into(), "All".into());
        let eviction = json!({"deleteOptions": {"dryRun": ["All"]}});
        assert!(dry_run(&delete_options(&eviction, &params).unwrap()));
        let eviction = json!({"metadata": {"name": "p"}});
        assert!(dry_run(&delete_options(&eviction, &params).unwrap()));
        let eviction = json!({"deleteOptions": {"dryRun": ["Other"]}});
        assert_eq!(
            delete_options(&eviction, &params).unwrap_err().to_string(),
            "Non-matching dry-run options in request and content: [All] and [Other]"
        );
    }

    #[test]
    fn the_disruption_target_condition_is_added_once() {
        let mut pod = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        add_disruption_target(&mut pod, "2024-01-01T00:00:00Z");
        add_disruption_target(&mut pod, "2024-01-02T00:00:00Z");
        let conditions = pod["status"]["conditions"].as_array().unwrap();
        assert_eq!(conditions.len(), 2);
        assert_eq!(conditions[1]["reason"], "EvictionByEvictionAPI");
        assert_eq!(conditions[1]["lastTransitionTime"], "2024-01-01T00:00:00Z");
    }
}
