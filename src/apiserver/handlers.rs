//! The HTTP side of the verbs on resources, as kube-apiserver's `endpoints/handlers`: a
//! request's body and options decoded and checked, then get, list, create, update, patch,
//! delete, deletecollection and the subresources (status, scale, binding, eviction, a
//! CertificateSigningRequest's approval) carried out through the [`super::registry`].

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use base64::Engine;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::errors::{ApiError, Cause, from_store};
use super::path::Target;
use super::registry::store::{
    UpdateKind, Write, create_object, delete_object, emit_read, get_object, invalid, name_of,
    update_object,
};
use super::registry::strategy::Strategy;
use super::resources::Resource;
use super::selectors;
use super::{ApiServer, admission, apply, decode, json_response, patch, tables, watch};
use crate::flow::FlowEvent;
use crate::store::{RangeRequest, Revision};

/// The most bytes a request body may have (a 1.5 MiB object plus its JSON framing): 3 MiB, as
/// kube-apiserver's `MaxRequestBodyBytes`.
const MAX_BODY: usize = 3 << 20;

pub(crate) use crate::apimachinery::params::Params;
use crate::apimachinery::params::flag;
use crate::apimachinery::wire;

pub(crate) fn params(request: &Request) -> Params {
    crate::apimachinery::params::parse(request.uri().query().unwrap_or_default())
}

fn header(request: &Request, name: http::header::HeaderName) -> String {
    request
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// The request's body, refused as kube-apiserver's `limitedReadBody` refuses it once it is over
/// [`MAX_BODY`] (413): at once when its `Content-Length` says so, else as soon as that much
/// has arrived, so an oversized body is never held whole.
pub(crate) async fn body_bytes(request: Request) -> Result<bytes::Bytes, ApiError> {
    let too_large = || ApiError::RequestEntityTooLarge(format!("limit is {MAX_BODY}"));
    let declared = request
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(request.into_body(), MAX_BODY)
        .await
        .map_err(|e| {
            let e = e.into_inner();
            if e.is::<http_body_util::LengthLimitError>() {
                too_large()
            } else {
                ApiError::BadRequest(format!("cannot read the request body: {e}"))
            }
        })
}

fn parse_body(content_type: &str, body: &[u8]) -> Result<Value, ApiError> {
    let media = content_type.split(';').next().unwrap_or_default().trim();
    match media {
        ""
        | "application/json"
        | "application/merge-patch+json"
        | "application/strategic-merge-patch+json"
        | "application/json-patch+json"
        | "*/*" => {
            if super::body::too_deep(body, super::body::MAX_DEPTH) {
                // Go's `encoding/json` words.
                return Err(ApiError::BadRequest(
                    "the body of the request was not valid JSON: exceeded max depth".into(),
                ));
            }
            serde_json::from_slice(body).map_err(|e| {
                ApiError::BadRequest(format!("the body of the request was not valid JSON: {e}"))
            })
        }
        "application/yaml" | "application/apply-patch+yaml" | "text/yaml" => {
            if super::body::too_deep(body, super::body::MAX_DEPTH) {
                // go-yaml's words, with our limit.
                return Err(ApiError::BadRequest(format!(
                    "the body of the request was not valid YAML: yaml: exceeded max depth of {}",
                    super::body::MAX_DEPTH
                )));
            }
            serde_yaml::from_slice(body).map_err(|e| {
                ApiError::BadRequest(format!("the body of the request was not valid YAML: {e}"))
            })
        }
        _ => Err(ApiError::UnsupportedMediaType),
    }
}

/// A request body holding an object of `resource`: JSON, YAML or Kubernetes protobuf.
fn parse_resource_body(
    resource: &Resource,
    content_type: &str,
    body: &[u8],
) -> Result<Value, ApiError> {
    if content_type.split(';').next().unwrap_or_default().trim() == super::protobuf::MEDIA_TYPE {
        return super::protobuf::decode(resource, body);
    }
    parse_body(content_type, body)
}

/// Bodies from this size on are decoded on the blocking pool ([`off_thread`]).
const LARGE_BODY: usize = 64 << 10;

/// Decodes a body with `decode`: a large one on the blocking pool, so its CPU time stalls no
/// other request on the async workers, and a request whose client has gone meanwhile (its
/// future dropped by the connection) does nothing more with the result. Small bodies are
/// decoded in place.
async fn off_thread<T: Send + 'static>(
    body: bytes::Bytes,
    decode: impl FnOnce(&[u8]) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    if body.len() < LARGE_BODY {
        return decode(&body);
    }
    tokio::task::spawn_blocking(move || decode(&body))
        .await
        .map_err(|e| ApiError::Internal(format!("decoding the request body: {e}")))?
}

/// A create's or update's object from its body, which is dropped as soon as it is decoded. An
/// object over a whole-object size limit (a ConfigMap's or Secret's 1 MiB of data) is refused
/// here, in validation's words, before the copies normalising, defaulting and encoding make.
async fn object_body(
    resource: &'static Resource,
    content_type: &str,
    body: bytes::Bytes,
) -> Result<Value, ApiError> {
    let content_type = content_type.to_owned();
    let object = off_thread(body, move |body| {
        parse_resource_body(resource, &content_type, body)
    })
    .await?;
    let causes = admission::validate_size(resource, &object);
    if !causes.is_empty() {
        return Err(invalid(resource, name_of(&object), causes));
    }
    Ok(object)
}

/// Fields in `input` that the typed form dropped: unknown to the type.
fn unknown_fields(input: &Value, typed: &Value, path: &str, out: &mut Vec<String>) {
    if let (Value::Object(a), Value::Object(b)) = (input, typed) {
        for (k, v) in a {
            let field = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            match b.get(k) {
                None if !v.is_null() => out.push(field),
                Some(t) => unknown_fields(v, t, &field, out),
                None => {}
            }
        }
    } else if let (Value::Array(a), Value::Array(b)) = (input, typed) {
        for (i, (v, t)) in a.iter().zip(b).enumerate() {
            unknown_fields(v, t, &format!("{path}[{i}]"), out);
        }
    }
}

/// Normalises a request object through its type, applying `fieldValidation`.
fn normalize(
    strategy: &Strategy,
    mut object: Value,
    params: &Params,
    warnings: &mut Vec<String>,
) -> Result<Value, ApiError> {
    let resource = strategy.resource;
    let version = resource.version;
    if !object.is_object() {
        return Err(ApiError::BadRequest(format!(
            "{} in version \"{version}\" cannot be handled as a {}: the body must be a JSON object",
            resource.kind, resource.kind
        )));
    }
    let expected = resource.api_version();
    if let Some(given) = object["apiVersion"].as_str()
        && given != expected
    {
        return Err(ApiError::BadRequest(format!(
            "the API version in the data ({given}) does not match the expected API version ({expected})"
        )));
    }
    if let Some(kind) = object["kind"].as_str()
        && kind != resource.kind
    {
        return Err(ApiError::BadRequest(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            resource.kind
        )));
    }
    object["apiVersion"] = json!(expected);
    object["kind"] = json!(resource.kind);
    if !object["metadata"].is_object() {
        object["metadata"] = json!({});
    }
    let undecodable = |e: &dyn std::fmt::Display| {
        ApiError::BadRequest(format!(
            "{} in version \"{version}\" cannot be handled as a {}: {e}",
            resource.kind, resource.kind
        ))
    };
    crate::apimachinery::bytes::canonicalize(&mut object).map_err(|e| undecodable(&e))?;
    resource.convert_request(&mut object);
    let mut typed = (resource.normalize)(object.clone()).map_err(|e| undecodable(&e))?;
    let mut unknown = Vec::new();
    unknown_fields(&object, &typed, "", &mut unknown);
    // A custom resource is pruned by its schema, its dropped fields told as a type's are.
    unknown.extend(strategy.prune(&mut typed).iter().map(|w| {
        w.trim_start_matches("unknown field \"")
            .trim_end_matches('"')
            .to_owned()
    }));
    if !unknown.is_empty() {
        match params.get("fieldValidation").map(String::as_str) {
            Some("Strict") => {
                let list: Vec<String> = unknown
                    .iter()
                    .map(|f| format!("unknown field \"{f}\""))
                    .collect();
                return Err(ApiError::BadRequest(format!(
                    "{} in version \"{version}\" cannot be handled as a {}: strict decoding error: {}",
                    resource.kind,
                    resource.kind,
                    list.join(", ")
                )));
            }
            Some("Ignore") => {}
            _ => warnings.extend(unknown.iter().map(|f| format!("unknown field \"{f}\""))),
        }
    }
    // Still as sent (an empty list is not yet gone), as server-side apply reads it; create and
    // update give it Go's shape (`Resource::canonical`) before defaulting.
    Ok(typed)
}

fn with_warnings(mut response: Response, warnings: &[String]) -> Response {
    for w in warnings {
        if let Ok(v) = http::HeaderValue::from_str(&format!("299 - \"{}\"", w.replace('"', "\\\"")))
        {
            response.headers_mut().append("Warning", v);
        }
    }
    response
}

/// `dryRun=All`: validate and answer as if written, but write nothing.
fn is_dry_run(params: &Params) -> bool {
    params.get("dryRun").is_some_and(|d| d == "All")
}

fn precondition_of(object: &Value) -> Result<Option<Revision>, ApiError> {
    match object["metadata"]["resourceVersion"].as_str() {
        None | Some("") => Ok(None),
        Some(rv) => rv
            .parse()
            .map(Some)
            .map_err(|_| ApiError::BadRequest(format!("invalid resourceVersion {rv:?}"))),
    }
}

/// Upstream's `ValidateCreateOptions`, `ValidateUpdateOptions`, `ValidatePatchOptions` and
/// `ValidateDeleteOptions` on a write's query parameters (and a delete's body): a 422 about the
/// options kind before anything is read or written, in upstream's words. `dryRun` may repeat;
/// every value must be `All`.
fn validate_options(
    method: &Method,
    query: &str,
    params: &Params,
    content_type: &str,
    delete_body: Option<&Value>,
) -> Result<(), ApiError> {
    let kind = match *method {
        Method::POST => "CreateOptions",
        Method::PUT => "UpdateOptions",
        Method::PATCH => "PatchOptions",
        Method::DELETE => "DeleteOptions",
        _ => return Ok(()),
    };
    let mut causes = Vec::new();
    let apply =
        content_type.split(';').next().unwrap_or_default().trim() == "application/apply-patch+yaml";
    if kind == "PatchOptions" && !apply && params.contains_key("force") {
        causes.push(Cause::forbidden(
            "force",
            "may not be specified for non-apply patch",
        ));
    }
    if kind != "DeleteOptions"
        && let Some(manager) = params.get("fieldManager")
    {
        if manager.len() > 128 {
            causes.push(Cause {
                reason: "FieldValueTooLong",
                field: "fieldManager".into(),
                message: "Too long: may not be more than 128 bytes".into(),
            });
        }
        for (i, c) in manager.char_indices() {
            if c.is_control() || (c.is_whitespace() && c != ' ') {
                causes.push(Cause::invalid(
                    "fieldManager",
                    &json!(manager),
                    format!("invalid character U+{:04X} (at position {i})", u32::from(c)),
                ));
            }
        }
    }
    if kind == "DeleteOptions" {
        let policy = params.get("propagationPolicy").cloned().or_else(|| {
            delete_body.and_then(|o| o["propagationPolicy"].as_str().map(str::to_owned))
        });
        if let Some(policy) = policy
            && !matches!(policy.as_str(), "Foreground" | "Background" | "Orphan")
        {
            causes.push(Cause::unsupported(
                "propagationPolicy",
                &json!(policy),
                &["Foreground", "Background", "Orphan", "nil"],
            ));
        }
    }
    let mut dry_run: Vec<String> = form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == "dryRun")
        .map(|(_, v)| v.into_owned())
        .collect();
    if let Some(values) = delete_body.and_then(|o| o["dryRun"].as_array()) {
        dry_run.extend(
            values
                .iter()
                .map(|v| v.as_str().unwrap_or_default().to_owned()),
        );
    }
    if dry_run.iter().any(|d| d != "All") {
        // Go prints the `[]string` with `%#v`.
        let shown: Vec<String> = dry_run.iter().map(|d| format!("{d:?}")).collect();
        causes.push(Cause {
            reason: "FieldValueNotSupported",
            field: "dryRun".into(),
            message: format!(
                "Unsupported value: []string{{{}}}: supported values: \"All\"",
                shown.join(", ")
            ),
        });
    }
    if let Some(validation) = params.get("fieldValidation")
        && kind != "DeleteOptions"
        && !matches!(validation.as_str(), "" | "Ignore" | "Warn" | "Strict")
    {
        causes.push(Cause::unsupported(
            "fieldValidation",
            &json!(validation),
            &["", "Ignore", "Strict", "Warn"],
        ));
    }
    if causes.is_empty() {
        return Ok(());
    }
    Err(ApiError::Invalid {
        group: "meta.k8s.io".into(),
        kind: kind.into(),
        name: String::new(),
        causes,
    })
}

/// Serves one resource request.
pub(crate) async fn resource(
    api: &Arc<ApiServer>,
    target: Target,
    request: Request,
    client: String,
) -> Result<Response, ApiError> {
    let params = params(&request);
    let method = request.method().clone();
    let accept = header(&request, http::header::ACCEPT);
    let content_type = header(&request, http::header::CONTENT_TYPE);
    let resource = target.resource;
    let namespace = if resource.namespaced {
        target.namespace.clone()
    } else {
        None
    };
    let watching = flag(&params, "watch");
    let verb = match (&method, &target.name) {
        (&Method::GET, None) if watching => "WATCH",
        (&Method::GET, None) => "LIST",
        (m, _) => m.as_str(),
    };
    let mut event = FlowEvent::new(client.clone(), "apiserver", verb).object(
        resource.kind,
        namespace.as_deref().unwrap_or_default(),
        target.name.as_deref().unwrap_or_default(),
    );
    event.detail = format!("{verb} {}", request.uri().path());
    // Who asked, and which rule let them: the authentication and authorization steps.
    if let Some(authorized) = request.extensions().get::<super::Authorized>() {
        event = event.data(json!({
            "user": &*authorized.user,
            "allowed": true,
            "reason": authorized.reason,
        }));
    }
    api.emit(event);
    if super::auth::reviews::is_review(resource) {
        if method != Method::POST || target.name.is_some() || target.subresource.is_some() {
            return Err(ApiError::MethodNotAllowed);
        }
        let user = request
            .extensions()
            .get::<super::Authorized>()
            .map(|a| (*a.user).clone())
            .unwrap_or_default();
        let body = body_bytes(request).await?;
        let object = parse_resource_body(resource, &content_type, &body)?;
        let answer =
            super::auth::reviews::create(api, resource, namespace.as_deref(), &user, object)
                .await?;
        return Ok(json_response(StatusCode::CREATED, &answer));
    }
    if target.resource.namespaced && target.namespace.is_none() && target.name.is_some() {
        return Err(ApiError::NoSuchPath);
    }
    let strategy = Strategy::of(api, resource).await?;
    let sub = target.subresource.as_deref().unwrap_or_default();
    if !matches!(sub, "proxy" | "exec" | "attach" | "portforward" | "log") {
        let query = request.uri().query().unwrap_or_default();
        validate_options(&method, query, &params, &content_type, None)?;
    }
    let manager_name = params
        .get("fieldManager")
        .filter(|m| !m.is_empty())
        .cloned()
        .unwrap_or_else(|| client.clone());
    let manager = Some(manager_name.as_str());
    let mut warnings = Vec::new();
    let response = match (method.clone(), target.name.as_deref(), sub) {
        (Method::GET, None, "") if watching => {
            watch::serve(
                api.clone(),
                resource,
                namespace,
                params,
                &accept,
                client.clone(),
            )
            .await?
        }
        (Method::GET, None, "") => {
            list(api, resource, namespace.as_deref(), &params, &accept).await?
        }
        (Method::GET, Some(name), "" | "status" | "ephemeralcontainers" | "approval") => {
            let object = get_object(api, resource, namespace.as_deref(), name).await?;
            let revision = object["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|r| r.parse().ok())
                .unwrap_or(0);
            emit_read(
                api,
                "GET",
                resource,
                namespace.as_deref(),
                name,
                revision,
                format!("get {}", resource.key(namespace.as_deref(), name)),
            );
            if tables::wants_table(&accept) {
                let rv = object["metadata"]["resourceVersion"].clone();
                json_response(
                    StatusCode::OK,
                    &strategy.table(vec![object], json!({"resourceVersion": rv})),
                )
            } else {
                json_response(StatusCode::OK, &object)
            }
        }
        (Method::GET, Some(name), "scale") => {
            let object = get_object(api, resource, namespace.as_deref(), name).await?;
            json_response(StatusCode::OK, &strategy.scale(&object))
        }
        (Method::GET, Some(name), "log") => {
            super::logs::serve(
                api,
                namespace.as_deref().unwrap_or("default"),
                name,
                &params,
            )
            .await?
        }
        (_, Some(name), "proxy") => super::proxy::serve_node(api, name, request).await?,
        (Method::POST, Some(name), "token") => {
            let body = body_bytes(request).await?;
            let media = content_type.split(';').next().unwrap_or_default().trim();
            let asked = if media == super::protobuf::MEDIA_TYPE {
                super::protobuf::decode_kind("authentication.k8s.io", "v1", "TokenRequest", &body)?
            } else {
                parse_body(&content_type, &body)?
            };
            let namespace = namespace.as_deref().unwrap_or("default");
            super::noderestriction::admit_token_request(api, namespace, name, &asked).await?;
            let answer = super::auth::tokens::token_request(api, namespace, name, asked).await?;
            json_response(StatusCode::CREATED, &answer)
        }
        (Method::GET | Method::POST, Some(name), "exec" | "attach" | "portforward") => {
            super::proxy::serve(
                api,
                namespace.as_deref().unwrap_or("default"),
                name,
                sub,
                request,
            )
            .await?
        }
        (Method::POST, None, "") => {
            let object = object_body(resource, &content_type, body_bytes(request).await?).await?;
            let object = normalize(&strategy, object, &params, &mut warnings)?;
            let dry_run = params.get("dryRun").is_some_and(|d| d == "All");
            let object = create_object(
                api,
                resource,
                namespace.as_deref(),
                object,
                manager,
                dry_run,
                &mut warnings,
            )
            .await?;
            json_response(StatusCode::CREATED, &object)
        }
        (Method::POST, Some(name), "binding") => {
            let body = body_bytes(request).await?;
            let binding = parse_body(&content_type, &body)?;
            bind(api, resource, namespace.as_deref(), name, &binding, manager).await?
        }
        (Method::POST, Some(name), "eviction") => {
            let body = body_bytes(request).await?;
            let eviction = parse_body(&content_type, &body)?;
            super::eviction::evict(
                api,
                resource,
                namespace.as_deref().unwrap_or("default"),
                name,
                &eviction,
                &params,
            )
            .await?
        }
        (
            Method::PUT,
            Some(name),
            "" | "status" | "finalize" | "ephemeralcontainers" | "approval",
        ) => {
            let object = object_body(resource, &content_type, body_bytes(request).await?).await?;
            let object = normalize(&strategy, object, &params, &mut warnings)?;
            let kind = match sub {
                "status" => UpdateKind::Status,
                "finalize" => UpdateKind::Finalize,
                "ephemeralcontainers" => UpdateKind::EphemeralContainers,
                "approval" => UpdateKind::Approval,
                _ => UpdateKind::Main,
            };
            let precondition = precondition_of(&object)?;
            let updated = update_object(
                api,
                resource,
                namespace.as_deref(),
                name,
                Write {
                    kind,
                    precondition,
                    allow_create: false,
                    manager,
                    dry_run: is_dry_run(&params),
                },
                |_| Ok(object.clone()),
            )
            .await?;
            warnings.extend(updated.warnings);
            json_response(
                if updated.created {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                },
                &updated.object,
            )
        }
        (Method::PUT, Some(name), "scale") => {
            let body = body_bytes(request).await?;
            let scale = parse_body(&content_type, &body)?;
            let replicas = scale["spec"]["replicas"].clone();
            let precondition = precondition_of(&scale)?;
            let updated = update_object(
                api,
                resource,
                namespace.as_deref(),
                name,
                Write {
                    kind: UpdateKind::Main,
                    precondition,
                    allow_create: false,
                    manager,
                    dry_run: is_dry_run(&params),
                },
                |old| Ok(strategy.scaled(old, replicas.clone())),
            )
            .await?;
            json_response(StatusCode::OK, &strategy.scale(&updated.object))
        }
        (
            Method::PATCH,
            Some(name),
            "" | "status" | "scale" | "ephemeralcontainers" | "approval",
        ) => {
            let body = body_bytes(request).await?;
            patch_object(
                api,
                resource,
                namespace.as_deref(),
                name,
                sub,
                &content_type,
                body,
                &params,
                &manager_name,
                &mut warnings,
            )
            .await?
        }
        (Method::DELETE, Some(name), "") => {
            let uri = request.uri().clone();
            let body = body_bytes(request).await?;
            let options = if body.is_empty() {
                json!({})
            } else {
                parse_body("application/json", &body)?
            };
            let query = uri.query().unwrap_or_default();
            validate_options(&method, query, &params, &content_type, Some(&options))?;
            let object =
                delete_object(api, resource, namespace.as_deref(), name, &options, &params).await?;
            json_response(StatusCode::OK, &object)
        }
        (Method::DELETE, None, "") => {
            let uri = request.uri().clone();
            let body = body_bytes(request).await?;
            let options = if body.is_empty() {
                json!({})
            } else {
                parse_body("application/json", &body)?
            };
            let query = uri.query().unwrap_or_default();
            validate_options(&method, query, &params, &content_type, Some(&options))?;
            delete_collection(api, resource, namespace.as_deref(), &options, &params).await?
        }
        _ => return Err(ApiError::MethodNotAllowed),
    };
    Ok(with_warnings(response, &warnings))
}

#[allow(clippy::too_many_arguments)]
async fn patch_object(
    api: &ApiServer,
    resource: &'static Resource,
    namespace: Option<&str>,
    name: &str,
    sub: &str,
    content_type: &str,
    body: bytes::Bytes,
    params: &Params,
    manager: &str,
    warnings: &mut Vec<String>,
) -> Result<Response, ApiError> {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    let patch_doc = {
        let media = media.clone();
        off_thread(body, move |body| parse_body(&media, body)).await?
    };
    let strategy = Strategy::of(api, resource).await?;
    if media == "application/apply-patch+yaml" {
        return apply_patch(
            api, resource, namespace, name, sub, patch_doc, params, warnings,
        )
        .await;
    }
    let kind = match sub {
        "status" => UpdateKind::Status,
        "ephemeralcontainers" => UpdateKind::EphemeralContainers,
        "approval" => UpdateKind::Approval,
        _ => UpdateKind::Main,
    };
    let precondition = precondition_of(&patch_doc).unwrap_or(None);
    let mut produced_warnings = Vec::new();
    let updated = update_object(
        api,
        resource,
        namespace,
        name,
        Write {
            kind,
            precondition,
            allow_create: false,
            manager: Some(manager),
            dry_run: is_dry_run(params),
        },
        |old| {
            let base = if sub == "scale" {
                strategy.scale(old)
            } else {
                old.clone()
            };
            let patched = match media.as_str() {
                "application/merge-patch+json" => patch::merge(&base, &patch_doc),
                "application/json-patch+json" => patch::json(&base, &patch_doc)?,
                "application/strategic-merge-patch+json" => {
                    patch::strategic_merge(&base, &patch_doc)?
                }
                _ => return Err(ApiError::UnsupportedMediaType),
            };
            if sub == "scale" {
                return Ok(strategy.scaled(old, patched["spec"]["replicas"].clone()));
            }
            let mut w = Vec::new();
            let normalized = normalize(&strategy, patched, params, &mut w)?;
            produced_warnings = w;
            Ok(normalized)
        },
    )
    .await?;
    warnings.extend(produced_warnings);
    warnings.extend(updated.warnings);
    let object = if sub == "scale" {
        strategy.scale(&updated.object)
    } else {
        updated.object
    };
    Ok(json_response(StatusCode::OK, &object))
}

/// Server-side apply (`application/apply-patch+yaml`): creates the object when absent, otherwise
/// merges the applied configuration into it, owning its fields for `fieldManager`.
#[allow(clippy::too_many_arguments)]
async fn apply_patch(
    api: &ApiServer,
    resource: &'static Resource,
    namespace: Option<&str>,
    name: &str,
    sub: &str,
    applied: Value,
    params: &Params,
    warnings: &mut Vec<String>,
) -> Result<Response, ApiError> {
    let manager = params
        .get("fieldManager")
        .filter(|m| !m.is_empty())
        .ok_or_else(|| {
            ApiError::BadRequest(
                "PATCH, fieldManager: Required value: is required for apply patch".into(),
            )
        })?
        .clone();
    let force = flag(params, "force");
    let strategy = Strategy::of(api, resource).await?;
    let applied = normalize(&strategy, applied, params, warnings)?;
    if name_of(&applied) != name {
        return Err(ApiError::BadRequest(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            name_of(&applied)
        )));
    }
    let kind = match sub {
        "status" => UpdateKind::Status,
        "approval" => UpdateKind::Approval,
        _ => UpdateKind::Main,
    };
    let updated = update_object(
        api,
        resource,
        namespace,
        name,
        Write {
            kind,
            precondition: None,
            allow_create: true,
            manager: None,
            dry_run: is_dry_run(params),
        },
        |old| apply::merge(resource, old, &applied, &manager, force),
    )
    .await?;
    warnings.extend(updated.warnings);
    Ok(json_response(
        if updated.created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        &updated.object,
    ))
}

async fn bind(
    api: &ApiServer,
    resource: &'static Resource,
    namespace: Option<&str>,
    name: &str,
    binding: &Value,
    manager: Option<&str>,
) -> Result<Response, ApiError> {
    let node = binding["target"]["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| invalid(resource, name, vec![Cause::required("target.name")]))?
        .to_owned();
    update_object(
        api,
        resource,
        namespace,
        name,
        Write {
            kind: UpdateKind::Binding,
            precondition: None,
            allow_create: false,
            manager,
            dry_run: false,
        },
        |old| {
            if let Some(existing) = old["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
                return Err(ApiError::Conflict {
                    resource: "pods".into(),
                    name: name.into(),
                    detail: format!("pod {name} is already assigned to node \"{existing}\""),
                });
            }
            if old["metadata"]["deletionTimestamp"].is_string() {
                return Err(ApiError::Conflict {
                    resource: "pods".into(),
                    name: name.into(),
                    detail: format!("pod {name} is being deleted, cannot be assigned to a host"),
                });
            }
            let mut new = old.clone();
            new["spec"]["nodeName"] = json!(node);
            // As the real binding does, the pod is marked scheduled in the same write.
            let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
            let scheduled = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now});
            let mut conditions: Vec<Value> = old["status"]["conditions"].as_array().cloned().unwrap_or_default();
            conditions.retain(|c| c["type"] != "PodScheduled");
            conditions.push(scheduled);
            new["status"]["conditions"] = json!(conditions);
            Ok(new)
        },
    )
    .await?;
    Ok(json_response(
        StatusCode::CREATED,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}

async fn delete_collection(
    api: &ApiServer,
    resource: &'static Resource,
    namespace: Option<&str>,
    options: &Value,
    params: &Params,
) -> Result<Response, ApiError> {
    let (labels, fields) = selectors::from_params(params, resource.kind)?;
    let range = api
        .store()
        .range(&RangeRequest::prefix(resource.key_prefix(namespace)))
        .await
        .map_err(|e| from_store(e, &resource.qualified(), ""))?;
    let mut deleted = Vec::new();
    for kv in &range.kvs {
        let object = resource.served(decode(kv)?);
        if !labels.matches_object(&object) || !fields.matches(&object) {
            continue;
        }
        let ns = object["metadata"]["namespace"].as_str().map(str::to_owned);
        match delete_object(
            api,
            resource,
            ns.as_deref(),
            name_of(&object),
            options,
            params,
        )
        .await
        {
            Ok(o) => deleted.push(o),
            Err(ApiError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({"kind": format!("{}List", resource.kind), "apiVersion": resource.api_version(), "metadata": {}, "items": list_items(deleted)}),
    ))
}

/// Objects as a list's items: without `kind` and `apiVersion`, which kube-apiserver leaves out
/// of list items (the list says them once; `decode_raw` does the same for stored bytes).
fn list_items(mut items: Vec<Value>) -> Vec<Value> {
    for item in &mut items {
        if let Some(map) = item.as_object_mut() {
            map.remove("kind");
            map.remove("apiVersion");
        }
    }
    items
}

/// A continue token: the revision of the first page and the last key returned, as the real
/// server encodes them (base64 JSON).
fn encode_continue(revision: Revision, last_key: &str, prefix: &str) -> String {
    let start = last_key.strip_prefix(prefix).unwrap_or(last_key);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
        json!({"v": "meta.k8s.io/v1", "rv": revision, "start": format!("{start}\u{0}")})
            .to_string(),
    )
}

fn decode_continue(token: &str, prefix: &str) -> Result<(Revision, String), ApiError> {
    let bad = || ApiError::BadRequest("continue key is not valid: expired or malformed".into());
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(token))
        .map_err(|_| bad())?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let rv = value["rv"].as_u64().ok_or_else(bad)?;
    let start = value["start"]
        .as_str()
        .ok_or_else(bad)?
        .trim_end_matches('\u{0}');
    Ok((rv, format!("{prefix}{start}")))
}

async fn list(
    api: &Arc<ApiServer>,
    resource: &'static Resource,
    namespace: Option<&str>,
    params: &Params,
    accept: &str,
) -> Result<Response, ApiError> {
    let (labels, fields) = selectors::from_params(params, resource.kind)?;
    let limit: usize = params
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let prefix = resource.key_prefix(namespace);
    let (mut at, mut start_after) = (None, None);
    if let Some(token) = params.get("continue").filter(|t| !t.is_empty()) {
        let (rv, key) = decode_continue(token, &prefix)?;
        at = Some(rv);
        start_after = Some(key);
    } else if let Some(rv) = params
        .get("resourceVersion")
        .filter(|rv| !rv.is_empty() && *rv != "0")
    {
        let rv: Revision = rv
            .parse()
            .map_err(|_| ApiError::BadRequest(format!("invalid resourceVersion {rv:?}")))?;
        if params
            .get("resourceVersionMatch")
            .is_some_and(|m| m == "Exact")
        {
            at = Some(rv);
        }
    }
    let filtering = !labels.is_empty() || !fields.is_empty();
    // Plain JSON lists splice each stored object in with only its metadata re-encoded; tables and
    // selectors on other fields need whole objects.
    let table = tables::wants_table(accept);
    let raw = !table && fields.only_metadata() && resource.conversion.is_none();
    if raw && limit == 0 {
        let request = RangeRequest {
            prefix,
            start_after,
            limit: Some(STREAMED_PAGE),
            at_revision: at,
        };
        return list_streamed(
            api,
            resource,
            namespace.map(str::to_owned),
            request,
            labels,
            fields,
        )
        .await;
    }
    let mut items: Vec<Value> = Vec::new();
    let mut raw_items: Vec<bytes::Bytes> = Vec::new();
    let mut revision: Option<Revision>;
    let mut next_continue = None;
    loop {
        let taken = items.len() + raw_items.len();
        let page_limit = if limit == 0 {
            None
        } else if filtering {
            Some(limit.max(500))
        } else {
            Some(limit - taken)
        };
        let page = read_page(
            api,
            resource,
            namespace,
            RangeRequest {
                prefix: prefix.clone(),
                start_after: start_after.clone(),
                limit: page_limit,
                at_revision: at,
            },
        )
        .await?;
        revision = Some(page.revision);
        at = Some(page.revision);
        let mut last_key = None;
        for kv in &page.kvs {
            last_key = Some(kv.key.clone());
            if raw {
                let object = api.list_item(kv)?;
                if labels.matches(&object.labels)
                    && fields.matches_metadata(&object.name, &object.namespace)
                {
                    raw_items.push(object.json.clone());
                }
            } else {
                let object = resource.served(decode(kv)?);
                if labels.matches_object(&object) && fields.matches(&object) {
                    items.push(object);
                }
            }
            if limit > 0 && items.len() + raw_items.len() == limit {
                break;
            }
        }
        let exhausted = !page.more && last_key.as_ref() == page.kvs.last().map(|kv| &kv.key);
        if limit > 0 && items.len() + raw_items.len() == limit {
            if !exhausted {
                next_continue = last_key.map(|k| encode_continue(page.revision, &k, &prefix));
            }
            break;
        }
        if !page.more {
            break;
        }
        start_after = last_key;
    }
    let mut metadata = json!({"resourceVersion": revision.unwrap_or(0).to_string()});
    if let Some(token) = next_continue {
        metadata["continue"] = json!(token);
    }
    if table {
        return Ok(json_response(
            StatusCode::OK,
            &Strategy::of(api, resource).await?.table(items, metadata),
        ));
    }
    if !raw {
        let body = json!({"kind": format!("{}List", resource.kind), "apiVersion": resource.api_version(), "metadata": metadata, "items": list_items(items)});
        return Ok(json_response(StatusCode::OK, &body));
    }
    let mut body = ListBody::new(resource, &metadata);
    for item in &raw_items {
        body.item(item);
    }
    let stream = futures::stream::iter(body.finish().into_iter().map(Ok::<_, std::io::Error>));
    Ok(list_response(Body::from_stream(stream)))
}

/// Hands `chunks` to a streamed body; `false` once its client has gone.
async fn send_all(
    tx: &tokio::sync::mpsc::Sender<Result<bytes::Bytes, std::io::Error>>,
    chunks: Vec<bytes::Bytes>,
) -> bool {
    for chunk in chunks {
        if tx.send(Ok(chunk)).await.is_err() {
            return false;
        }
    }
    true
}

/// One store read of a LIST, on the flow as a `RANGE` hop.
async fn read_page(
    api: &ApiServer,
    resource: &Resource,
    namespace: Option<&str>,
    request: RangeRequest,
) -> Result<crate::store::RangeResult, ApiError> {
    let page = api.store().range(&request).await.map_err(|e| match e {
        crate::store::Error::Compacted { .. } => ApiError::Expired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.".into()),
        other => from_store(other, &resource.qualified(), ""),
    })?;
    emit_read(
        api,
        "RANGE",
        resource,
        namespace,
        "",
        page.revision,
        format!(
            "range {} from {:?}: {} keys at revision {}",
            request.prefix,
            request.start_after,
            page.kvs.len(),
            page.revision
        ),
    );
    Ok(page)
}

/// The store page a LIST without a `limit` is read in: the first one decides the list's
/// revision, and the body starts going out while the rest are read at that revision.
const STREAMED_PAGE: usize = 500;

/// A plain JSON list body, built of the stored objects' encodings in chunks of about
/// [`ListBody::CHUNK`] bytes, in Go's order: kind, apiVersion, metadata (a ListMeta), items; and
/// a newline at the end.
struct ListBody {
    chunks: Vec<bytes::Bytes>,
    chunk: bytes::BytesMut,
    first: bool,
}

impl ListBody {
    const CHUNK: usize = 256 << 10;

    fn new(resource: &Resource, metadata: &Value) -> Self {
        let mut chunk = bytes::BytesMut::with_capacity(Self::CHUNK);
        chunk.extend_from_slice(
            format!(
                "{{\"kind\":\"{}List\",\"apiVersion\":\"{}\",\"metadata\":",
                resource.kind,
                resource.api_version(),
            )
            .as_bytes(),
        );
        let mut meta = Vec::new();
        wire::write_as(
            metadata,
            "apimachinery.pkg.apis.meta.v1.ListMeta",
            &mut meta,
        );
        chunk.extend_from_slice(&meta);
        chunk.extend_from_slice(b",\"items\":[");
        ListBody {
            chunks: Vec::new(),
            chunk,
            first: true,
        }
    }

    fn item(&mut self, json: &[u8]) {
        if !std::mem::take(&mut self.first) {
            self.chunk.extend_from_slice(b",");
        }
        self.chunk.extend_from_slice(json);
        if self.chunk.len() >= Self::CHUNK {
            self.chunks.push(self.chunk.split().freeze());
            // A whole chunk's room at once: grown item by item from empty, the buffer would be
            // copied again at every doubling.
            self.chunk.reserve(Self::CHUNK + json.len());
        }
    }

    /// The items of one store page that the selectors match.
    fn page(
        &mut self,
        api: &ApiServer,
        kvs: &[crate::store::KeyValue],
        labels: &selectors::LabelSelector,
        fields: &selectors::FieldSelector,
    ) -> Result<(), ApiError> {
        for kv in kvs {
            let object = api.list_item(kv)?;
            if labels.matches(&object.labels)
                && fields.matches_metadata(&object.name, &object.namespace)
            {
                self.item(&object.json);
            }
        }
        Ok(())
    }

    /// The chunks not taken yet, the list's end included.
    fn finish(mut self) -> Vec<bytes::Bytes> {
        self.chunk.extend_from_slice(b"]}\n");
        self.chunks.push(self.chunk.freeze());
        self.chunks
    }
}

fn list_response(body: Body) -> Response {
    let mut response = Response::new(body);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// A plain JSON LIST without a `limit`, as the stored objects' encodings: the first store page
/// is read before answering (its revision is the list's, and its errors are the answer's);
/// the rest are read at that revision while the body already flows, so the client's reading
/// overlaps the server's. A later page that fails (its revision compacted in the meantime) ends
/// the body with an error, which the client sees as a broken response, never as a short list.
async fn list_streamed(
    api: &Arc<ApiServer>,
    resource: &'static Resource,
    namespace: Option<String>,
    mut request: RangeRequest,
    labels: selectors::LabelSelector,
    fields: selectors::FieldSelector,
) -> Result<Response, ApiError> {
    let page = read_page(api, resource, namespace.as_deref(), request.clone()).await?;
    let metadata = json!({"resourceVersion": page.revision.to_string()});
    let mut body = ListBody::new(resource, &metadata);
    body.page(api, &page.kvs, &labels, &fields)?;
    if !page.more {
        let stream = futures::stream::iter(body.finish().into_iter().map(Ok::<_, std::io::Error>));
        return Ok(list_response(Body::from_stream(stream)));
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
    let first = std::mem::take(&mut body.chunks);
    request.at_revision = Some(page.revision);
    request.start_after = page.kvs.last().map(|kv| kv.key.clone());
    let api = api.clone();
    tokio::spawn(async move {
        if !send_all(&tx, first).await {
            return;
        }
        loop {
            let page = match read_page(&api, resource, namespace.as_deref(), request.clone()).await
            {
                Ok(page) => page,
                Err(error) => {
                    let _ = tx.send(Err(std::io::Error::other(error.to_string()))).await;
                    return;
                }
            };
            if let Err(error) = body.page(&api, &page.kvs, &labels, &fields) {
                let _ = tx.send(Err(std::io::Error::other(error.to_string()))).await;
                return;
            }
            if !page.more {
                send_all(&tx, body.finish()).await;
                return;
            }
            if !send_all(&tx, std::mem::take(&mut body.chunks)).await {
                return;
            }
            request.start_after = page.kvs.last().map(|kv| kv.key.clone());
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    Ok(list_response(Body::from_stream(stream)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_options_are_validated_in_upstreams_words() {
        let check = |method: Method, query: &str, body: Option<Value>| {
            let params = crate::apimachinery::params::parse(query);
            validate_options(&method, query, &params, "application/json", body.as_ref())
                .err()
                .map(|e| {
                    (
                        e.code().as_u16(),
                        e.to_string(),
                        e.status()["details"].clone(),
                    )
                })
        };
        assert_eq!(check(Method::POST, "dryRun=All", None), None);
        assert_eq!(check(Method::GET, "dryRun=Bogus", None), None);
        let (code, message, details) = check(Method::POST, "dryRun=Bogus", None).unwrap();
        assert_eq!(code, 422);
        assert_eq!(
            message,
            r#"CreateOptions.meta.k8s.io "" is invalid: dryRun: Unsupported value: []string{"Bogus"}: supported values: "All""#
        );
        assert_eq!(details["kind"], "CreateOptions");
        assert_eq!(details["group"], "meta.k8s.io");
        assert_eq!(details["causes"][0]["reason"], "FieldValueNotSupported");
        let (_, message, _) = check(Method::PATCH, "dryRun=All&dryRun=x", None).unwrap();
        assert!(
            message.starts_with(r#"PatchOptions.meta.k8s.io "" is invalid: dryRun: Unsupported value: []string{"All", "x"}"#),
            "{message}"
        );
        let (_, message, _) =
            check(Method::DELETE, "", Some(json!({"dryRun": ["Bogus"]}))).unwrap();
        assert!(
            message.starts_with("DeleteOptions.meta.k8s.io"),
            "{message}"
        );
        let (_, message, _) = check(Method::DELETE, "propagationPolicy=Sideways", None).unwrap();
        assert_eq!(
            message,
            r#"DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Unsupported value: "Sideways": supported values: "Foreground", "Background", "Orphan", "nil""#
        );
        let long = format!("fieldManager={}", "m".repeat(129));
        let (_, message, _) = check(Method::PUT, &long, None).unwrap();
        assert_eq!(
            message,
            r#"UpdateOptions.meta.k8s.io "" is invalid: fieldManager: Too long: may not be more than 128 bytes"#
        );
        let (_, message, _) = check(Method::PUT, "fieldManager=a%07b", None).unwrap();
        assert!(
            message.ends_with("invalid character U+0007 (at position 1)"),
            "{message}"
        );
        let (_, message, _) = check(Method::PATCH, "force=true", None).unwrap();
        assert!(
            message.ends_with("force: Forbidden: may not be specified for non-apply patch"),
            "{message}"
        );
        let (_, message, _) = check(Method::POST, "fieldValidation=Loose", None).unwrap();
        assert!(
            message.ends_with(r#"supported values: "", "Ignore", "Strict", "Warn""#),
            "{message}"
        );
    }
}
