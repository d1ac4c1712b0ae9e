//! Calling the webhooks a request matches, as upstream's dispatchers do: mutating webhooks one
//! after another, each seeing what the previous ones made of the object and answering with a
//! JSONPatch (applied to the object in the version it was sent in, then read back through the
//! type), those with `reinvocationPolicy: IfNeeded` called once more when a later one changed
//! the object; validating webhooks all at once, the first refusal (in call order) answering
//! the request. A webhook that cannot be called fails the request (`failurePolicy: Fail`:
//! `Internal error occurred: failed calling webhook "x": ...`) or is passed over (`Ignore`).
//! A refusal is the webhook's own Status, prefixed `admission webhook "x" denied the request`.
//! Its `warnings` become the response's `Warning` headers.
//!
//! Each call is two flow hops: `apiserver -> <webhook> ADMIT` as it is sent, and `<webhook> ->
//! apiserver` `ALLOWED`, `PATCHED`, `DENIED`, `FAILED` or `IGNORED` with the latency, so the
//! dashboard draws the detour.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value, json};

use super::matching::{self, Invocation, Target};
use super::review::{self, Answer};
use super::source::{Hook, Kind};
use super::{Operation, Request, config};
use crate::apiserver::ApiServer;
use crate::apiserver::auth::UserInfo;
use crate::apiserver::errors::ApiError;
use crate::flow::FlowEvent;

/// Runs the mutating webhooks `request` matches over `object` (`Null` for a DELETE, which has
/// none), changing it as their patches say.
pub(crate) async fn mutate(
    api: &ApiServer,
    request: &Request<'_>,
    object: &mut Value,
    warnings: &mut Vec<String>,
) -> Result<(), ApiError> {
    if config::is_configuration(request.resource) {
        return Ok(());
    }
    let hooks = api.webhooks().hooks(&api.store_arc(), Kind::Mutating).await;
    if hooks.is_empty() {
        return Ok(());
    }
    let user = requester();
    // Upstream's webhookReinvokeContext: the reinvocable webhooks called so far, and those to
    // call again because a later one changed the object.
    let mut invoked: HashSet<usize> = HashSet::new();
    let mut again: HashSet<usize> = HashSet::new();
    let mut reinvoke = false;
    for round in 0..2 {
        if round == 1 && !reinvoke {
            break;
        }
        for (i, hook) in hooks.iter().enumerate() {
            if round == 1 && !again.contains(&i) {
                continue;
            }
            let current = (!object.is_null()).then_some(&*object);
            let Some(invocation) = should_call(api, hook, request, current).await? else {
                continue;
            };
            let changed =
                call_mutating(api, hook, invocation, request, object, &user, warnings).await?;
            if changed {
                again = invoked.clone();
                reinvoke = true;
            }
            if hook.reinvoke {
                invoked.insert(i);
            }
        }
    }
    Ok(())
}

/// Runs the validating webhooks `request` matches, all at once, for `object` (none for a
/// DELETE).
pub(crate) async fn validate(
    api: &ApiServer,
    request: &Request<'_>,
    object: Option<&Value>,
    warnings: &mut Vec<String>,
) -> Result<(), ApiError> {
    if config::is_configuration(request.resource) {
        return Ok(());
    }
    let hooks = api
        .webhooks()
        .hooks(&api.store_arc(), Kind::Validating)
        .await;
    if hooks.is_empty() {
        return Ok(());
    }
    let user = requester();
    let mut calls = Vec::new();
    for hook in hooks.iter() {
        if let Some(invocation) = should_call(api, hook, request, object).await? {
            calls.push((hook, invocation));
        }
    }
    let results =
        futures::future::join_all(calls.iter().map(|(hook, invocation)| {
            call_validating(api, hook, *invocation, request, object, &user)
        }))
        .await;
    let mut first = None;
    for (said, result) in results {
        warnings.extend(said);
        if let Err(e) = result {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

fn requester() -> Arc<UserInfo> {
    crate::apiserver::auth::requester().unwrap_or_default()
}

/// `ShouldCallHook`: the rules (and equivalents), then the namespace and object selectors.
async fn should_call(
    api: &ApiServer,
    hook: &Hook,
    request: &Request<'_>,
    object: Option<&Value>,
) -> Result<Option<Invocation>, ApiError> {
    let target = Target {
        resource: request.resource,
        subresource: request.subresource,
        operation: request.operation,
        namespace: &request.namespace,
    };
    let Some(invocation) = matching::invocation(&hook.rules, hook.equivalent, &target) else {
        return Ok(None);
    };
    if !namespace_selected(api, hook, request, object).await? {
        return Ok(None);
    }
    if !matching::object_selected(&hook.object_selector, object, request.old) {
        return Ok(None);
    }
    Ok(Some(invocation))
}

/// `namespace.Matcher`: cluster-scoped objects but Namespaces are always selected; a Namespace
/// being created or updated is judged by its own new labels, anything else by its namespace's.
async fn namespace_selected(
    api: &ApiServer,
    hook: &Hook,
    request: &Request<'_>,
    object: Option<&Value>,
) -> Result<bool, ApiError> {
    let resource = request.resource;
    let is_namespace = (resource.group, resource.plural) == ("", "namespaces");
    if (request.namespace.is_empty() && !is_namespace)
        || crate::apimachinery::labels::is_empty(&hook.namespace_selector)
    {
        return Ok(true);
    }
    let labels_of = |o: &Value| -> BTreeMap<String, String> {
        serde_json::from_value(o["metadata"]["labels"].clone()).unwrap_or_default()
    };
    let labels = match object {
        Some(o)
            if is_namespace
                && request.subresource.is_empty()
                && request.operation != Operation::Delete =>
        {
            labels_of(o)
        }
        _ => {
            let key = format!("/registry/namespaces/{}", request.namespace);
            let kv = api
                .store()
                .get(&key)
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?
                .ok_or_else(|| ApiError::NotFound {
                    resource: "namespaces".into(),
                    name: request.namespace.clone(),
                })?;
            let namespace: Value =
                serde_json::from_slice(&kv.value).map_err(|e| ApiError::Internal(e.to_string()))?;
            labels_of(&namespace)
        }
    };
    Ok(matching::selects(&hook.namespace_selector, &labels))
}

/// An object in the version the webhook matched (an equivalent's, for `Equivalent`).
fn versioned(request: &Request<'_>, invocation: &Invocation, object: &Value) -> Value {
    if invocation.resource == request.resource {
        object.clone()
    } else {
        invocation
            .resource
            .served(request.resource.stored(object.clone()))
    }
}

/// What a mutating webhook sees of an object being created: upstream sets the uid, the
/// creation time, the generation and a generated name after mutating admission.
fn as_before_create(request: &Request<'_>, object: &mut Value) {
    if let Some(meta) = object["metadata"].as_object_mut() {
        for field in ["uid", "creationTimestamp", "generation"] {
            meta.remove(field);
        }
        if request.generated_name {
            meta.remove("name");
        }
    }
}

/// What a failed exchange was.
enum Failure {
    /// The webhook could not be asked (upstream's `ErrCallingWebhook`): the reason.
    Calling(String),
    /// The request is refused outright.
    Refused(ApiError),
}

/// Sends one review and reads the answer, with the outgoing hop.
async fn exchange(
    api: &ApiServer,
    hook: &Hook,
    invocation: Invocation,
    request: &Request<'_>,
    (object, old): (Option<&Value>, Option<&Value>),
    user: &UserInfo,
) -> Result<Answer, Failure> {
    if request.dry_run && !matches!(hook.side_effects.as_str(), "None" | "NoneOnDryRun") {
        return Err(Failure::Refused(ApiError::BadRequest(format!(
            "admission webhook {:?} does not support dry run",
            hook.name
        ))));
    }
    let Some(version) = review::review_version(&hook.review_versions) else {
        return Err(Failure::Calling(
            "could not create admission objects: webhook does not accept known AdmissionReview versions (v1, v1beta1)"
                .into(),
        ));
    };
    let uid = uuid::Uuid::new_v4().to_string();
    let resource = invocation.resource;
    let name = if hook.mutating && request.generated_name {
        ""
    } else {
        request.name.as_str()
    };
    let body = review::encode(&review::Request {
        uid: &uid,
        version,
        kind: invocation.kind,
        resource: (resource.group, resource.version, resource.plural),
        subresource: request.subresource,
        request_kind: crate::apiserver::resources::subresource_kind(
            request.resource,
            request.subresource,
        ),
        request_resource: (
            request.resource.group,
            request.resource.version,
            request.resource.plural,
        ),
        name,
        namespace: &request.namespace,
        operation: request.operation,
        user,
        object,
        old_object: old,
        dry_run: request.dry_run,
        options: &request.options,
    });
    let kind = if hook.mutating {
        "mutating"
    } else {
        "validating"
    };
    let mut what = format!("{} {}", request.operation.as_str(), resource.qualified());
    if !request.subresource.is_empty() {
        what.push('/');
        what.push_str(request.subresource);
    }
    let mut detail = format!(
        "{what}: {kind} webhook of {}, {}",
        hook.configuration,
        hook.endpoint.url(hook.timeout)
    );
    if hook.match_conditions > 0 {
        // No CEL here: the webhook is called as if its conditions held.
        detail.push_str(&format!(
            " ({} matchConditions not evaluated)",
            hook.match_conditions
        ));
    }
    api.emit(hop(request, "apiserver", &hook.name, "ADMIT").detail(detail));
    let answer = hook
        .endpoint
        .call(api.store(), hook.timeout, body)
        .await
        .map_err(|e| Failure::Calling(format!("failed to call webhook: {e}")))?;
    review::decode(&answer, &uid, version, hook.mutating)
        .map_err(|e| Failure::Calling(format!("received invalid webhook response: {e}")))
}

/// A hop about the request's object.
fn hop(request: &Request<'_>, from: &str, to: &str, verb: &str) -> FlowEvent {
    let namespace = if request.resource.namespaced {
        request.namespace.as_str()
    } else {
        ""
    };
    FlowEvent::new(from, to, verb).object(request.resource.kind, namespace, &request.name)
}

/// The answering hop: the decision, in words and as data, with the latency.
fn answered(
    api: &ApiServer,
    hook: &Hook,
    request: &Request<'_>,
    verb: &str,
    detail: &str,
    started: Instant,
) {
    let millis = started.elapsed().as_secs_f64() * 1000.0;
    api.emit(
        hop(request, &hook.name, "apiserver", verb)
            .detail(format!("{detail} in {millis:.1} ms"))
            .data(json!({
                "webhook": hook.name,
                "configuration": hook.configuration,
                "mutating": hook.mutating,
                "decision": verb,
                "latencyMs": millis,
            })),
    );
}

/// What a call that could not be made does: nothing with `Ignore`, else upstream's
/// `Internal error occurred: failed calling webhook "x": <reason>`.
fn calling_failed(
    api: &ApiServer,
    hook: &Hook,
    request: &Request<'_>,
    reason: &str,
    started: Instant,
) -> Result<(), ApiError> {
    let error = format!("failed calling webhook {:?}: {reason}", hook.name);
    if hook.ignore_failures {
        tracing::warn!(
            "Failed calling webhook, failing open {}: {error}",
            hook.name
        );
        answered(
            api,
            hook,
            request,
            "IGNORED",
            &format!("{error} (failurePolicy Ignore)"),
            started,
        );
        return Ok(());
    }
    tracing::warn!(
        "Failed calling webhook, failing closed {}: {error}",
        hook.name
    );
    answered(api, hook, request, "FAILED", &error, started);
    Err(ApiError::internal_with_cause(&error))
}

fn refused(
    api: &ApiServer,
    hook: &Hook,
    request: &Request<'_>,
    error: ApiError,
    started: Instant,
) -> ApiError {
    answered(api, hook, request, "DENIED", &error.to_string(), started);
    error
}

/// One mutating webhook: whether it changed the object.
async fn call_mutating(
    api: &ApiServer,
    hook: &Hook,
    invocation: Invocation,
    request: &Request<'_>,
    object: &mut Value,
    user: &UserInfo,
    warnings: &mut Vec<String>,
) -> Result<bool, ApiError> {
    let started = Instant::now();
    let mut sent = (!object.is_null()).then(|| versioned(request, &invocation, object));
    if request.operation == Operation::Create
        && let Some(sent) = sent.as_mut()
    {
        as_before_create(request, sent);
    }
    let old = request.old.map(|o| versioned(request, &invocation, o));
    let answer = match exchange(
        api,
        hook,
        invocation,
        request,
        (sent.as_ref(), old.as_ref()),
        user,
    )
    .await
    {
        Ok(answer) => answer,
        Err(Failure::Calling(reason)) => {
            return calling_failed(api, hook, request, &reason, started).map(|()| false);
        }
        Err(Failure::Refused(error)) => return Err(refused(api, hook, request, error, started)),
    };
    warnings.extend(answer.warnings.iter().cloned());
    if !answer.allowed {
        let status = review::denial(&hook.name, answer.status.as_ref());
        return Err(refused(
            api,
            hook,
            request,
            ApiError::Status(Box::new(status)),
            started,
        ));
    }
    let Some(patch) = answer.patch else {
        answered(api, hook, request, "ALLOWED", "allowed", started);
        return Ok(false);
    };
    let patch: json_patch::Patch = match serde_json::from_slice(&patch) {
        Ok(patch) => patch,
        Err(e) => {
            let reason = format!("received undecodable patch in webhook response: {e}");
            return calling_failed(api, hook, request, &reason, started).map(|()| false);
        }
    };
    if patch.0.is_empty() {
        answered(api, hook, request, "ALLOWED", "allowed", started);
        return Ok(false);
    }
    let Some(mut patched) = sent else {
        let error = ApiError::internal_with_cause(&format!(
            "admission webhook {:?} attempted to modify the object, which is not supported for this operation",
            hook.name
        ));
        return Err(refused(api, hook, request, error, started));
    };
    let internal = |e: String| ApiError::internal_with_cause(&e);
    json_patch::patch(&mut patched, &patch).map_err(|e| internal(e.to_string()))?;
    // Read back through the type, as upstream decodes the patched JSON into its Go type.
    let typed = invocation
        .resource
        .canonical(patched)
        .map_err(|e| internal(e.to_string()))?;
    let mut back = if invocation.resource == request.resource {
        typed
    } else {
        request
            .resource
            .canonical(request.resource.served(invocation.resource.stored(typed)))
            .map_err(|e| internal(e.to_string()))?
    };
    if request.operation == Operation::Create {
        // What the server sets after mutating admission stays the server's.
        for field in ["uid", "creationTimestamp", "generation", "name"] {
            match object["metadata"].get(field) {
                Some(value) => back["metadata"][field] = value.clone(),
                None => {
                    if let Some(meta) = back["metadata"].as_object_mut() {
                        meta.remove(field);
                    }
                }
            }
        }
    }
    let changed = back != *object;
    *object = back;
    let operations = patch.0.len();
    answered(
        api,
        hook,
        request,
        "PATCHED",
        &format!(
            "allowed with a JSONPatch of {operations} operation{}",
            if operations == 1 { "" } else { "s" }
        ),
        started,
    );
    Ok(changed)
}

/// One validating webhook: its warnings, and whether it let the request through.
async fn call_validating(
    api: &ApiServer,
    hook: &Hook,
    invocation: Invocation,
    request: &Request<'_>,
    object: Option<&Value>,
    user: &UserInfo,
) -> (Vec<String>, Result<(), ApiError>) {
    let started = Instant::now();
    let sent = object.map(|o| versioned(request, &invocation, o));
    let old = request.old.map(|o| versioned(request, &invocation, o));
    let answer = match exchange(
        api,
        hook,
        invocation,
        request,
        (sent.as_ref(), old.as_ref()),
        user,
    )
    .await
    {
        Ok(answer) => answer,
        Err(Failure::Calling(reason)) => {
            return (
                Vec::new(),
                calling_failed(api, hook, request, &reason, started),
            );
        }
        Err(Failure::Refused(error)) => {
            return (Vec::new(), Err(refused(api, hook, request, error, started)));
        }
    };
    if answer.allowed {
        answered(api, hook, request, "ALLOWED", "allowed", started);
        return (answer.warnings, Ok(()));
    }
    let status = review::denial(&hook.name, answer.status.as_ref());
    let error = refused(
        api,
        hook,
        request,
        ApiError::Status(Box::new(status)),
        started,
    );
    (answer.warnings, Err(error))
}
