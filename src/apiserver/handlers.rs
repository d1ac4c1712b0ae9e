//! The verbs on resources: get, list, create, update, patch, delete, deletecollection and the
//! subresources (status, scale, binding, eviction, a CertificateSigningRequest's approval), plus Orrery's `/orrery/v1` control endpoints.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::errors::{ApiError, Cause, from_store};
use super::path::Target;
use super::resources::{self, Resource};
use super::selectors;
use super::webhook::Operation::{Create, Update};
use super::{ApiServer, admission, apply, decode, encode, json_response, patch, tables, watch};
use crate::flow::{FlowEvent, StepMode};
use crate::store::{RangeRequest, Revision};

/// The most bytes a request body may have (a 1.5 MiB object plus its JSON framing): 3 MiB, as
/// kube-apiserver's `MaxRequestBodyBytes`.
const MAX_BODY: usize = 3 << 20;
/// How many times a write that lost a race (no resourceVersion given) is retried. kube-apiserver's
/// `GuaranteedUpdate` retries without bound: a write only loses when another one committed, so
/// every retry means progress, and hundreds of concurrent patches of one object all succeed.
/// The bound is only a guard against a bug turning into an endless loop.
const RETRIES: usize = 100_000;

pub(crate) use crate::apimachinery::params::Params;
use crate::apimachinery::params::flag;
use crate::apimachinery::wire;

fn params(request: &Request) -> Params {
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
async fn body_bytes(request: Request) -> Result<bytes::Bytes, ApiError> {
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

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Five characters of upstream's `utilrand.String` alphabet: `generateName`'s suffix.
pub(super) fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    bytes[..5]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

fn name_of(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or_default()
}

/// Kinds whose `metadata.generation` counts spec changes.
fn has_generation(resource: &Resource) -> bool {
    matches!(
        resource.kind,
        "Deployment"
            | "ReplicaSet"
            | "StatefulSet"
            | "DaemonSet"
            | "Job"
            | "CronJob"
            | "Pod"
            | "Ingress"
            | "IngressClass"
            | "PodDisruptionBudget"
    )
}

fn invalid(resource: &Resource, name: &str, causes: Vec<Cause>) -> ApiError {
    ApiError::Invalid {
        group: resource.group.into(),
        kind: resource.kind.into(),
        name: name.into(),
        causes,
    }
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
    resource: &Resource,
    mut object: Value,
    params: &Params,
    warnings: &mut Vec<String>,
) -> Result<Value, ApiError> {
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
    let typed = (resource.normalize)(object.clone()).map_err(|e| undecodable(&e))?;
    let mut unknown = Vec::new();
    unknown_fields(&object, &typed, "", &mut unknown);
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

/// Checks the namespace a namespaced object is created in: it must exist and not be terminating.
async fn check_namespace(
    api: &ApiServer,
    resource: &Resource,
    namespace: &str,
    name: &str,
) -> Result<(), ApiError> {
    let namespaces = resources::find("", "v1", "namespaces").expect("served");
    let kv = api
        .store()
        .get(&namespaces.key(None, namespace))
        .await
        .map_err(|e| from_store(e, "namespaces", namespace))?
        .ok_or_else(|| ApiError::NotFound {
            resource: "namespaces".into(),
            name: namespace.into(),
        })?;
    let ns = decode(&kv)?;
    if ns["metadata"]["deletionTimestamp"].is_string() || ns["status"]["phase"] == "Terminating" {
        return Err(ApiError::Forbidden {
            resource: resource.qualified(),
            name: name.into(),
            detail: format!(
                "unable to create new content in namespace {namespace} because it is being terminated"
            ),
        });
    }
    Ok(())
}

/// The object at the root of `object`'s controller ownerReferences, as `Kind/name`.
async fn root_owner(api: &ApiServer, object: &Value) -> String {
    let mut current = object.clone();
    let mut root = format!(
        "{}/{}",
        current["kind"].as_str().unwrap_or_default(),
        name_of(&current)
    );
    for _ in 0..5 {
        let owner = current["metadata"]["ownerReferences"]
            .as_array()
            .and_then(|refs| {
                refs.iter()
                    .find(|r| r["controller"] == true)
                    .or_else(|| refs.first())
            })
            .cloned();
        let Some(owner) = owner else { break };
        let kind = owner["kind"].as_str().unwrap_or_default();
        let name = owner["name"].as_str().unwrap_or_default();
        root = format!("{kind}/{name}");
        let Some(resource) = resources::RESOURCES
            .iter()
            .find(|r| r.kind == kind && owner["apiVersion"] == r.api_version())
        else {
            break;
        };
        let namespace = current["metadata"]["namespace"].as_str().map(str::to_owned);
        match api
            .store()
            .get(&resource.key(namespace.as_deref(), name))
            .await
        {
            Ok(Some(kv)) => match decode(&kv) {
                Ok(o) => current = o,
                Err(_) => break,
            },
            _ => break,
        }
    }
    root
}

/// Waits at the stepper's gate before a store write; returns the object's story (its root).
pub(super) async fn gate_write(api: &ApiServer, verb: &str, object: &Value) -> String {
    let root = root_owner(api, object).await;
    let meta = &object["metadata"];
    let mut hop = FlowEvent::new("apiserver", "store", verb).object(
        object["kind"].as_str().unwrap_or_default(),
        meta["namespace"].as_str().unwrap_or_default(),
        name_of(object),
    );
    hop.root = root.clone();
    let words = format!(
        "apiserver wants to {verb} {} in the store",
        store_key_words(&hop)
    );
    api.flow().gate_with(&hop, words).await;
    root
}

/// `Kind namespace/name` or `Kind name`.
fn store_key_words(hop: &FlowEvent) -> String {
    if hop.namespace.is_empty() {
        format!("{} {}", hop.kind, hop.name)
    } else {
        format!("{} {}/{}", hop.kind, hop.namespace, hop.name)
    }
}

/// Emits a store read that serves a request (reads are not gated).
pub(crate) fn emit_read(
    api: &ApiServer,
    verb: &str,
    resource: &Resource,
    namespace: Option<&str>,
    name: &str,
    revision: Revision,
    detail: String,
) {
    let mut event = FlowEvent::new("apiserver", "store", verb)
        .object(resource.kind, namespace.unwrap_or_default(), name)
        .detail(detail);
    event.revision = Some(revision);
    api.emit(event);
}

pub(super) fn emit_store(
    api: &ApiServer,
    verb: &str,
    object: &Value,
    revision: Option<Revision>,
    root: String,
    detail: String,
) {
    let meta = &object["metadata"];
    let mut event = FlowEvent::new("apiserver", "store", verb)
        .object(
            object["kind"].as_str().unwrap_or_default(),
            meta["namespace"].as_str().unwrap_or_default(),
            name_of(object),
        )
        .detail(detail);
    event.uid = meta["uid"].as_str().unwrap_or_default().to_owned();
    if let Some(revision) = revision {
        api.written(&event.kind, revision);
    }
    event.revision = revision;
    event.root = root;
    api.emit(event);
    if let Some(revision) = revision {
        api.announced(revision);
    }
}

/// An object through its type and into Go's shape (a failure is the server's own fault: the
/// object was decoded through the same type before).
fn canonical(resource: &Resource, object: Value) -> Result<Value, ApiError> {
    resource
        .canonical(object)
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// Creates an object: the whole write path of a POST. A dry run (`dryRun=All`) takes every step
/// but the store's write, as upstream's `DryRunnableStorage`: the name must still be free, and
/// the object comes back as it would be stored, without a resourceVersion.
pub(crate) async fn create_object(
    api: &ApiServer,
    resource: &'static Resource,
    namespace: Option<&str>,
    mut object: Value,
    manager: Option<&str>,
    dry_run: bool,
    warnings: &mut Vec<String>,
) -> Result<Value, ApiError> {
    let meta = object["metadata"]
        .as_object_mut()
        .ok_or_else(|| ApiError::BadRequest("metadata must be an object".into()))?;
    if resource.namespaced {
        let ns = namespace.unwrap_or("default");
        match meta.get("namespace").and_then(Value::as_str) {
            Some(given) if !given.is_empty() && given != ns => {
                return Err(ApiError::BadRequest(
                    "the namespace of the provided object does not match the namespace sent on the request".into(),
                ));
            }
            _ => {
                meta.insert("namespace".into(), json!(ns));
            }
        }
    } else {
        meta.remove("namespace");
    }
    let name = meta
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if name.is_empty()
        && let Some(prefix) = meta
            .get("generateName")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
    {
        meta.insert("name".into(), json!(format!("{prefix}{}", random_suffix())));
    }
    meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    meta.insert("creationTimestamp".into(), json!(now()));
    meta.remove("resourceVersion");
    meta.remove("deletionTimestamp");
    meta.remove("deletionGracePeriodSeconds");
    if has_generation(resource) {
        meta.insert("generation".into(), json!(1));
    } else {
        meta.remove("generation");
    }
    // In Go's shape first, so defaulting sees a zero Go omits as unset, as Go's defaulting does.
    let mut object = canonical(resource, object)?;
    admission::prepare_for_create(resource, &mut object);
    admission::default(resource, &mut object);
    let pod = resource.kind == "Pod" && resource.group.is_empty();
    if pod {
        // NamespaceLifecycle comes first: a pod in no namespace is refused for that.
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default");
        check_namespace(api, resource, namespace, name_of(&object)).await?;
        super::serviceaccount::admit(api, &mut object).await?;
    }
    if resource.kind == "Pod" {
        admission::default_toleration_seconds(&mut object, api.default_toleration_seconds());
    }
    if resource.kind == "Service" {
        allocate_service_ips(api, &mut object).await?;
    }
    if (resource.group, resource.kind) == ("networking.k8s.io", "Ingress") {
        default_ingress_class(api, &mut object).await?;
    }
    if (resource.group, resource.kind) == ("", "PersistentVolumeClaim") {
        super::storage::admit_default_class(api, &mut object).await?;
    }
    // LimitRanger's mutating half now; its refusal after validation, where upstream's
    // validating admission runs.
    let limit_refusal = super::limitranger::admit(api, resource, &mut object).await?;
    if (resource.group, resource.kind) == ("", "Pod") {
        object["status"]["qosClass"] = json!(admission::pod_qos(&object));
    }

    // Back through the type: whatever defaulting left empty (nulls) goes, as in the real server;
    // field ownership is then computed on the object as Go's JSON has it.
    let mut object = canonical(resource, object)?;
    if let Some(manager) = manager {
        if let Some(m) = object["metadata"].as_object_mut() {
            m.remove("managedFields");
        }
        apply::record_update(resource, &Value::Null, &mut object, manager, "");
    }
    let generated = name.is_empty();
    let mut hooked =
        super::webhook::Request::of(resource, "", Create, &object, None, manager, dry_run);
    hooked.generated_name = generated;
    super::webhook::mutate(api, &hooked, &mut object, warnings).await?;
    let name = name_of(&object).to_owned();
    super::noderestriction::admit(
        api,
        resource,
        "",
        super::noderestriction::Op::Create(&object),
    )
    .await?;
    let mut causes = admission::validate(resource, &object, None);
    if super::certificates::is_csr(resource) {
        causes.extend(super::certificates::validate(
            &object,
            None,
            UpdateKind::Main,
        ));
    }
    if !causes.is_empty() {
        return Err(invalid(resource, &name, causes));
    }
    if super::certificates::is_csr(resource) {
        super::certificates::admit(api, UpdateKind::Main, &object, None).await?;
    }
    super::auth::rbac::confirm_no_escalation(api, resource, &object, None).await?;
    let namespace = object["metadata"]["namespace"].as_str().map(str::to_owned);
    if let Some(ns) = namespace.as_ref().filter(|_| !pod) {
        check_namespace(api, resource, ns, &name).await?;
    }
    if let Some(refusal) = limit_refusal {
        return Err(refusal);
    }
    warnings.extend(super::podsecurity::admit(api, resource, &object, None).await?);
    let hooked = super::webhook::Request::of(resource, "", Create, &object, None, manager, dry_run);
    super::webhook::validate(api, &hooked, Some(&object), warnings).await?;
    super::quota::admit(api, resource, &object, None, dry_run).await?;
    let key = resource.key(namespace.as_deref(), &name);
    if dry_run {
        let existing = api
            .store()
            .get(&key)
            .await
            .map_err(|e| from_store(e, &resource.qualified(), &name))?;
        if existing.is_some() {
            return Err(ApiError::AlreadyExists {
                resource: resource.qualified(),
                name,
            });
        }
        return Ok(object);
    }
    let root = gate_write(api, "CREATE", &object).await;
    let revision = api
        .store()
        .create(&key, encode(resource.stored(object.clone())))
        .await
        .map_err(|e| from_store(e, &resource.qualified(), &name))?;
    emit_store(
        api,
        "CREATE",
        &object,
        Some(revision),
        root,
        format!("create {key} at revision {revision}"),
    );
    object["metadata"]["resourceVersion"] = json!(revision.to_string());
    Ok(object)
}

/// The service network, kube-apiserver's default `--service-cluster-ip-range`.
const SERVICE_NETWORK: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 96, 0, 0);
/// Its size (a /12).
const SERVICE_ADDRESSES: u32 = 1 << 20;
/// The low band kept for Services that ask for their address (KEP-3070: `min(max(16, size/16),
/// 256)` addresses): `kubernetes` at 10.96.0.1 and `kube-dns` at 10.96.0.10 live there, and
/// dynamic allocation takes it only when the rest is full.
const STATIC_BAND: u32 = 256;

/// A random offset into the dynamic band.
fn rand_offset() -> u32 {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// A free cluster IP as kube-apiserver's allocator picks one: from a random place in the upper
/// (dynamic) band, the first free address from there on (wrapping); then the static band.
/// The network and broadcast addresses are never given.
fn dynamic_cluster_ip(used: impl Fn(u32) -> bool, random: u32) -> Option<std::net::Ipv4Addr> {
    let dynamic = SERVICE_ADDRESSES - 1 - STATIC_BAND;
    let start = random % dynamic;
    (0..dynamic)
        .map(|i| STATIC_BAND + (start + i) % dynamic)
        .chain(1..STATIC_BAND)
        .find(|n| !used(*n))
        .map(|n| std::net::Ipv4Addr::from(u32::from(SERVICE_NETWORK) + n))
}

/// Gives a new Service its cluster IP (from 10.96.0.0/12, as kube-apiserver's default range) and
/// node ports, the way the real API server allocates them on create.
/// The DefaultIngressClass admission plugin: an Ingress created with neither
/// `spec.ingressClassName` nor the `kubernetes.io/ingress.class` annotation gets the default
/// IngressClass's name when exactly one is marked default, and is refused when several are
/// (see [`admission::default_ingress_class`]).
async fn default_ingress_class(api: &ApiServer, ingress: &mut Value) -> Result<(), ApiError> {
    if ingress["spec"]["ingressClassName"].is_string()
        || ingress["metadata"]["annotations"]["kubernetes.io/ingress.class"].is_string()
    {
        return Ok(());
    }
    let classes = resources::find("networking.k8s.io", "v1", "ingressclasses").expect("served");
    let existing = api
        .store()
        .range(&RangeRequest::prefix(classes.key_prefix(None)))
        .await
        .map_err(|e| from_store(e, "ingressclasses.networking.k8s.io", ""))?;
    let objects: Vec<Value> = existing
        .kvs
        .iter()
        .filter_map(|kv| decode(kv).ok())
        .collect();
    match admission::default_ingress_class(&objects) {
        Ok(Some(name)) => ingress["spec"]["ingressClassName"] = json!(name),
        Ok(None) => {}
        // admission.NewForbidden around an InternalError, in upstream's words.
        Err(n) => {
            return Err(ApiError::Forbidden {
                resource: "ingresses.networking.k8s.io".into(),
                name: name_of(ingress).to_owned(),
                detail: format!(
                    "Internal error occurred: {n} default IngressClasses were found, only 1 allowed"
                ),
            });
        }
    }
    Ok(())
}

async fn allocate_service_ips(api: &ApiServer, service: &mut Value) -> Result<(), ApiError> {
    let services = resources::find("", "v1", "services").expect("served");
    let existing = api
        .store()
        .range(&RangeRequest::prefix(services.key_prefix(None)))
        .await
        .map_err(|e| from_store(e, "services", ""))?;
    let objects: Vec<Value> = existing
        .kvs
        .iter()
        .filter_map(|kv| decode(kv).ok())
        .collect();
    let spec = &mut service["spec"];
    let kind = spec["type"].as_str().unwrap_or("ClusterIP").to_owned();
    if kind != "ExternalName" && spec["clusterIP"].as_str().is_none_or(str::is_empty) {
        // Offsets into the service network of the addresses taken.
        let used: std::collections::HashSet<u32> = objects
            .iter()
            .filter_map(|s| {
                s["spec"]["clusterIP"]
                    .as_str()?
                    .parse::<std::net::Ipv4Addr>()
                    .ok()
            })
            .map(|ip| u32::from(ip).wrapping_sub(u32::from(SERVICE_NETWORK)))
            .collect();
        let ip = dynamic_cluster_ip(|n| used.contains(&n), rand_offset())
            .ok_or_else(|| ApiError::Internal("the service IP range is full".into()))?
            .to_string();
        spec["clusterIP"] = json!(ip);
        spec["clusterIPs"] = json!([ip]);
    } else if let Some(ip) = spec["clusterIP"].as_str().map(str::to_owned) {
        spec["clusterIPs"] = json!([ip]);
    }
    if matches!(kind.as_str(), "NodePort" | "LoadBalancer") {
        let used: std::collections::HashSet<i64> = objects
            .iter()
            .flat_map(|s| s["spec"]["ports"].as_array().cloned().unwrap_or_default())
            .filter_map(|p| p["nodePort"].as_i64())
            .collect();
        let mut next = 30000;
        if let Some(ports) = spec["ports"].as_array_mut() {
            for p in ports {
                if p["nodePort"].as_i64().is_none() {
                    while used.contains(&next) {
                        next += 1;
                    }
                    p["nodePort"] = json!(next);
                    next += 1;
                }
            }
        }
        if spec["externalTrafficPolicy"].is_null() {
            spec["externalTrafficPolicy"] = json!("Cluster");
        }
    }
    Ok(())
}

/// How an update treats the stored object.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum UpdateKind {
    /// The main resource: status is kept as stored (for kinds with a status subresource).
    Main,
    /// The status subresource: only status changes.
    Status,
    /// Namespace finalize: only `spec.finalizers` changes.
    Finalize,
    /// A pod's binding: `spec.nodeName` and the PodScheduled condition change together.
    Binding,
    /// A pod's `ephemeralcontainers` subresource: only `spec.ephemeralContainers` changes.
    EphemeralContainers,
    /// A CertificateSigningRequest's `approval` subresource: only the conditions change.
    Approval,
}

impl UpdateKind {
    /// The subresource written (`""`: the object itself).
    pub(super) fn subresource(self) -> &'static str {
        match self {
            UpdateKind::Main => "",
            UpdateKind::Status => "status",
            UpdateKind::Finalize => "finalize",
            UpdateKind::Binding => "binding",
            UpdateKind::EphemeralContainers => "ephemeralcontainers",
            UpdateKind::Approval => "approval",
        }
    }
}

/// How an update writes.
#[derive(Clone, Copy, Debug)]
pub(super) struct Write<'a> {
    pub(super) kind: UpdateKind,
    /// The resourceVersion the client based its change on (`None`: retry until it sticks).
    pub(super) precondition: Option<Revision>,
    /// Whether a missing object is created (server-side apply).
    pub(super) allow_create: bool,
    /// Who changes the fields (`None`: the caller maintains managedFields itself).
    pub(super) manager: Option<&'a str>,
    /// `dryRun=All`: everything but the write.
    pub(super) dry_run: bool,
}

/// The result of an update.
pub(super) struct Updated {
    pub(super) object: Value,
    pub(super) created: bool,
    /// What admission warns of (Pod Security's `warn` level).
    pub(super) warnings: Vec<String>,
}

/// Writes `new` over the stored object, as PUT (and, after patching, PATCH) do.
pub(super) async fn update_object(
    api: &ApiServer,
    resource: &'static Resource,
    namespace: Option<&str>,
    name: &str,
    write: Write<'_>,
    mut make_new: impl FnMut(&Value) -> Result<Value, ApiError>,
) -> Result<Updated, ApiError> {
    let Write {
        kind,
        precondition,
        allow_create,
        manager,
        dry_run,
    } = write;
    let key = resource.key(namespace, name);
    let qualified = resource.qualified();
    for _ in 0..RETRIES {
        let current = api
            .store()
            .get(&key)
            .await
            .map_err(|e| from_store(e, &qualified, name))?;
        let Some(current) = current else {
            if allow_create && kind == UpdateKind::Main {
                let new = make_new(&Value::Null)?;
                let mut warnings = Vec::new();
                let object = create_object(
                    api,
                    resource,
                    namespace,
                    new,
                    manager,
                    dry_run,
                    &mut warnings,
                )
                .await?;
                return Ok(Updated {
                    object,
                    created: true,
                    warnings,
                });
            }
            return Err(ApiError::NotFound {
                resource: qualified,
                name: name.into(),
            });
        };
        if let Some(expected) = precondition
            && expected != current.mod_revision
        {
            return Err(from_store(
                crate::store::Error::Conflict {
                    key: key.clone(),
                    expected,
                    actual: current.mod_revision,
                },
                &qualified,
                name,
            ));
        }
        let old = resource.served(decode(&current)?);
        let requested = make_new(&old)?;
        let mut new = match kind {
            UpdateKind::Main => {
                let mut new = requested;
                if resource.has_status() {
                    new["status"] = old["status"].clone();
                }
                // A pod's ephemeral containers change through their subresource alone (the
                // pod strategy's `PrepareForUpdate` keeps them).
                if (resource.group, resource.kind) == ("", "Pod") {
                    new["spec"]["ephemeralContainers"] = old["spec"]["ephemeralContainers"].clone();
                }
                new
            }
            UpdateKind::EphemeralContainers => {
                let mut new = old.clone();
                new["spec"]["ephemeralContainers"] =
                    requested["spec"]["ephemeralContainers"].clone();
                new
            }
            UpdateKind::Binding => requested,
            UpdateKind::Status | UpdateKind::Approval => {
                let mut new = old.clone();
                new["status"] = requested["status"].clone();
                new
            }
            UpdateKind::Finalize => {
                let mut new = old.clone();
                new["spec"]["finalizers"] = requested["spec"]["finalizers"].clone();
                new
            }
        };
        if super::certificates::is_csr(resource) {
            super::certificates::prepare_for_update(kind, &mut new, &old);
        }
        // What only the server sets stays as stored.
        for field in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "namespace",
        ] {
            match old["metadata"].get(field) {
                Some(v) => new["metadata"][field] = v.clone(),
                None => {
                    if let Some(m) = new["metadata"].as_object_mut() {
                        m.remove(field);
                    }
                }
            }
        }
        if name_of(&new) != name {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                name_of(&new)
            )));
        }
        let mut new = canonical(resource, new)?;
        admission::default(resource, &mut new);
        admission::keep_allocated(resource, &mut new, &old);
        super::storage::prepare_for_update(resource, &mut new, &old);
        let mut new = canonical(resource, new)?;
        if let Some(manager) = manager {
            new["metadata"]["managedFields"] = old["metadata"]["managedFields"].clone();
            apply::record_update(resource, &old, &mut new, manager, kind.subresource());
            if new["metadata"]["managedFields"]
                .as_array()
                .is_some_and(Vec::is_empty)
                && let Some(m) = new["metadata"].as_object_mut()
            {
                m.remove("managedFields");
            }
        }
        let mut hook_warnings = Vec::new();
        let hooked = (kind != UpdateKind::Binding).then(|| {
            let sub = kind.subresource();
            super::webhook::Request::of(resource, sub, Update, &new, Some(&old), manager, dry_run)
        });
        if let Some(hooked) = &hooked {
            super::webhook::mutate(api, hooked, &mut new, &mut hook_warnings).await?;
        }
        if has_generation(resource) && kind == UpdateKind::Main && new["spec"] != old["spec"] {
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
            new["metadata"]["generation"] = json!(generation);
        }
        let op = super::noderestriction::Op::Update {
            new: &new,
            old: &old,
        };
        super::noderestriction::admit(api, resource, kind.subresource(), op).await?;
        let mut causes = admission::validate(resource, &new, Some(&old));
        if super::certificates::is_csr(resource) {
            causes.extend(super::certificates::validate(&new, Some(&old), kind));
        }
        if !causes.is_empty() {
            return Err(invalid(resource, name, causes));
        }
        if super::certificates::is_csr(resource) {
            super::certificates::admit(api, kind, &new, Some(&old)).await?;
        }
        super::auth::rbac::confirm_no_escalation(api, resource, &new, Some(&old)).await?;
        if (resource.group, resource.kind) == ("", "PersistentVolumeClaim")
            && kind == UpdateKind::Main
        {
            super::storage::admit_resize(api, &new, &old).await?;
            // LimitRanger holds a claim's new size to the namespace's bounds (pods' updates
            // it passes over, as upstream).
            if let Some(refusal) = super::limitranger::admit(api, resource, &mut new).await? {
                return Err(refusal);
            }
        }
        let mut warnings =
            super::podsecurity::admit(api, resource, &new, Some((&old, kind))).await?;
        if let Some(hooked) = &hooked {
            super::webhook::validate(api, hooked, Some(&new), &mut hook_warnings).await?;
        }
        warnings.extend(hook_warnings);
        if kind == UpdateKind::Main {
            super::quota::admit(api, resource, &new, Some(&old), dry_run).await?;
        }
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
        if new == old {
            // A no-op update writes nothing, so the resourceVersion stays.
            return Ok(Updated {
                object: old,
                created: false,
                warnings,
            });
        }
        if dry_run {
            return Ok(Updated {
                object: new,
                created: false,
                warnings,
            });
        }
        // Upstream's `shouldDeleteDuringUpdate`: an object being deleted goes once its last
        // finalizer does, unless it is still in its grace period (a pod whose kubelet is
        // stopping it, and writes its status meanwhile, stays until the kubelet deletes it).
        let finalized = old["metadata"]["deletionTimestamp"].is_string()
            && old["metadata"]["deletionGracePeriodSeconds"]
                .as_i64()
                .is_none_or(|g| g == 0)
            && new["metadata"]["finalizers"]
                .as_array()
                .is_none_or(Vec::is_empty)
            && (resource.kind != "Namespace"
                || new["spec"]["finalizers"]
                    .as_array()
                    .is_none_or(Vec::is_empty));
        let root = gate_write(api, if finalized { "DELETE" } else { "UPDATE" }, &new).await;
        let result = if finalized {
            api.store().delete(&key, current.mod_revision).await
        } else {
            api.store()
                .update(
                    &key,
                    encode(resource.stored(new.clone())),
                    current.mod_revision,
                )
                .await
        };
        match result {
            Ok(revision) => {
                let verb = if finalized { "DELETE" } else { "UPDATE" };
                emit_store(
                    api,
                    verb,
                    &new,
                    Some(revision),
                    root,
                    format!("{} {key} at revision {revision}", verb.to_lowercase()),
                );
                new["metadata"]["resourceVersion"] = json!(revision.to_string());
                return Ok(Updated {
                    object: new,
                    created: false,
                    warnings,
                });
            }
            Err(crate::store::Error::Conflict { .. } | crate::store::Error::NotFound { .. })
                if precondition.is_none() =>
            {
                continue;
            }
            Err(e) => return Err(from_store(e, &qualified, name)),
        }
    }
    Err(ApiError::modified(&qualified, name))
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
                    &tables::table(resource, &[object], json!({"resourceVersion": rv})),
                )
            } else {
                json_response(StatusCode::OK, &object)
            }
        }
        (Method::GET, Some(name), "scale") => {
            let object = get_object(api, resource, namespace.as_deref(), name).await?;
            json_response(StatusCode::OK, &scale_of(&object))
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
            let object = normalize(resource, object, &params, &mut warnings)?;
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
            let object = normalize(resource, object, &params, &mut warnings)?;
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
                |old| {
                    let mut new = old.clone();
                    new["spec"]["replicas"] = replicas.clone();
                    Ok(new)
                },
            )
            .await?;
            json_response(StatusCode::OK, &scale_of(&updated.object))
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

pub(crate) async fn get_object(
    api: &ApiServer,
    resource: &Resource,
    namespace: Option<&str>,
    name: &str,
) -> Result<Value, ApiError> {
    let kv = api
        .store()
        .get(&resource.key(namespace, name))
        .await
        .map_err(|e| from_store(e, &resource.qualified(), name))?
        .ok_or_else(|| ApiError::NotFound {
            resource: resource.qualified(),
            name: name.into(),
        })?;
    Ok(resource.served(decode(&kv)?))
}

/// The `autoscaling/v1 Scale` of a scalable object.
fn scale_of(object: &Value) -> Value {
    let meta = &object["metadata"];
    let selector = object["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": object["spec"]["replicas"].as_i64().unwrap_or(0)},
        "status": {"replicas": object["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector},
    })
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
                scale_of(old)
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
                let mut new = old.clone();
                new["spec"]["replicas"] = patched["spec"]["replicas"].clone();
                return Ok(new);
            }
            let mut w = Vec::new();
            let normalized = normalize(resource, patched, params, &mut w)?;
            produced_warnings = w;
            Ok(normalized)
        },
    )
    .await?;
    warnings.extend(produced_warnings);
    warnings.extend(updated.warnings);
    let object = if sub == "scale" {
        scale_of(&updated.object)
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
    let applied = normalize(resource, applied, params, warnings)?;
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

fn grace_period(options: &Value, params: &Params) -> Option<i64> {
    params
        .get("gracePeriodSeconds")
        .and_then(|g| g.parse().ok())
        .or_else(|| options["gracePeriodSeconds"].as_i64())
}

/// Deletes an object as the real server does: at once, or by setting `deletionTimestamp` when
/// finalizers (including the garbage collector's `foregroundDeletion`/`orphan`, which record
/// `propagationPolicy`) or a pod's grace period make it wait.
pub(super) async fn delete_object(
    api: &ApiServer,
    resource: &'static Resource,
    namespace: Option<&str>,
    name: &str,
    options: &Value,
    params: &Params,
) -> Result<Value, ApiError> {
    let key = resource.key(namespace, name);
    let qualified = resource.qualified();
    let policy = params
        .get("propagationPolicy")
        .cloned()
        .or_else(|| options["propagationPolicy"].as_str().map(str::to_owned));
    let expected_uid = options["preconditions"]["uid"].as_str().map(str::to_owned);
    let expected_rv = options["preconditions"]["resourceVersion"]
        .as_str()
        .map(str::to_owned);
    for _ in 0..RETRIES {
        let kv = api
            .store()
            .get(&key)
            .await
            .map_err(|e| from_store(e, &qualified, name))?
            .ok_or_else(|| ApiError::NotFound {
                resource: qualified.clone(),
                name: name.into(),
            })?;
        let mut object = resource.served(decode(&kv)?);
        super::noderestriction::admit(
            api,
            resource,
            "",
            super::noderestriction::Op::Delete(&object),
        )
        .await?;
        if let Some(uid) = &expected_uid
            && object["metadata"]["uid"].as_str() != Some(uid)
        {
            return Err(ApiError::Conflict {
                resource: qualified.clone(),
                name: name.into(),
                detail: format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    object["metadata"]["uid"].as_str().unwrap_or_default()
                ),
            });
        }
        if let Some(rv) = &expected_rv
            && object["metadata"]["resourceVersion"].as_str() != Some(rv)
        {
            return Err(ApiError::Conflict {
                resource: qualified.clone(),
                name: name.into(),
                detail: format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    object["metadata"]["resourceVersion"]
                        .as_str()
                        .unwrap_or_default()
                ),
            });
        }
        let hooked = super::webhook::Request::delete(resource, &object, options, params);
        super::webhook::mutate(api, &hooked, &mut Value::Null, &mut Vec::new()).await?;
        super::webhook::validate(api, &hooked, None, &mut Vec::new()).await?;
        drop(hooked);
        // kubectl sends dryRun in the DeleteOptions body; other clients in the query.
        let body_dry_run = options["dryRun"]
            .as_array()
            .is_some_and(|d| d.iter().any(|v| v == "All"));
        if is_dry_run(params) || body_dry_run {
            return Ok(object);
        }
        let mut finalizers: Vec<Value> = object["metadata"]["finalizers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        match policy.as_deref() {
            Some("Foreground") if !finalizers.contains(&json!("foregroundDeletion")) => {
                finalizers.push(json!("foregroundDeletion"))
            }
            Some("Orphan") if !finalizers.contains(&json!("orphan")) => {
                finalizers.push(json!("orphan"))
            }
            _ => {}
        }
        let grace = if resource.kind == "Pod" {
            let requested = grace_period(options, params).unwrap_or_else(|| {
                object["spec"]["terminationGracePeriodSeconds"]
                    .as_i64()
                    .unwrap_or(30)
            });
            // Upstream's `CheckGracefulDelete`: a pod that never reached a node, or whose
            // containers have all ended, has nothing to stop and goes at once; a negative period
            // is one second.
            let unscheduled = object["spec"]["nodeName"]
                .as_str()
                .is_none_or(str::is_empty);
            let ended = matches!(
                object["status"]["phase"].as_str(),
                Some("Succeeded" | "Failed")
            );
            if unscheduled || ended {
                0
            } else if requested < 0 {
                1
            } else {
                requested
            }
        } else {
            0
        };
        let namespace_finalizers = resource.kind == "Namespace"
            && object["spec"]["finalizers"]
                .as_array()
                .is_some_and(|f| !f.is_empty());
        let waits = !finalizers.is_empty() || grace > 0 || namespace_finalizers;
        if !waits {
            let root = gate_write(api, "DELETE", &object).await;
            match api.store().delete(&key, kv.mod_revision).await {
                Ok(revision) => {
                    emit_store(
                        api,
                        "DELETE",
                        &object,
                        Some(revision),
                        root,
                        format!("delete {key} at revision {revision}"),
                    );
                    return Ok(object);
                }
                Err(crate::store::Error::Conflict { .. }) => continue,
                Err(e) => return Err(from_store(e, &qualified, name)),
            }
        }
        // Already being deleted: only a shorter grace period is recorded, counted from when the
        // deletion was asked for (upstream's `BeforeDelete`).
        let mut asked = jiff::Timestamp::now();
        if let Some(since) = object["metadata"]["deletionTimestamp"].as_str() {
            let current = object["metadata"]["deletionGracePeriodSeconds"]
                .as_i64()
                .unwrap_or(0);
            if grace >= current {
                return Ok(object);
            }
            if let Ok(t) = since.parse::<jiff::Timestamp>() {
                asked = t
                    .checked_sub(jiff::SignedDuration::from_secs(current))
                    .unwrap_or(t);
            }
        }
        // A period past the year 9999 is the last moment a timestamp can say.
        let deadline = asked
            .checked_add(jiff::SignedDuration::from_secs(grace))
            .unwrap_or(jiff::Timestamp::MAX);
        object["metadata"]["deletionTimestamp"] =
            json!(deadline.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
        object["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
        object["metadata"]["finalizers"] = json!(finalizers);
        if resource.kind == "Namespace" {
            object["status"]["phase"] = json!("Terminating");
        }
        if has_generation(resource) {
            let generation = object["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
            object["metadata"]["generation"] = json!(generation);
        }
        let root = gate_write(api, "UPDATE", &object).await;
        match api
            .store()
            .update(
                &key,
                encode(resource.stored(object.clone())),
                kv.mod_revision,
            )
            .await
        {
            Ok(revision) => {
                emit_store(
                    api,
                    "UPDATE",
                    &object,
                    Some(revision),
                    root,
                    format!("mark {key} for deletion (grace {grace}s)"),
                );
                object["metadata"]["resourceVersion"] = json!(revision.to_string());
                return Ok(object);
            }
            Err(crate::store::Error::Conflict { .. }) => continue,
            Err(e) => return Err(from_store(e, &qualified, name)),
        }
    }
    Err(ApiError::modified(&qualified, name))
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
    api: &ApiServer,
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
        let request = RangeRequest {
            prefix: prefix.clone(),
            start_after: start_after.clone(),
            limit: page_limit,
            at_revision: at,
        };
        let page = api.store().range(&request).await.map_err(|e| match e {
            crate::store::Error::Compacted { .. } => ApiError::Expired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.".into()),
            other => from_store(other, &resource.qualified(), ""),
        })?;
        revision = Some(page.revision);
        emit_read(
            api,
            "RANGE",
            resource,
            namespace,
            "",
            page.revision,
            format!(
                "range {prefix} from {:?}: {} keys at revision {}",
                request.start_after,
                page.kvs.len(),
                page.revision
            ),
        );
        at = Some(page.revision);
        let mut last_key = None;
        for kv in &page.kvs {
            last_key = Some(kv.key.clone());
            if raw {
                let object = api.list_item(kv)?;
                if labels.matches(&object.labels)
                    && fields.matches_metadata(&object.name, &object.namespace)
                {
                    raw_items.push(object.json);
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
            &tables::table(resource, &items, metadata),
        ));
    }
    if !raw {
        let body = json!({"kind": format!("{}List", resource.kind), "apiVersion": resource.api_version(), "metadata": metadata, "items": list_items(items)});
        return Ok(json_response(StatusCode::OK, &body));
    }
    // The body goes out in chunks of about 256 KiB, so a large list starts flowing at once.
    const CHUNK: usize = 256 << 10;
    // Go's order: kind, apiVersion, metadata (a ListMeta), items; and a newline at the end.
    let mut head = format!(
        "{{\"kind\":\"{}List\",\"apiVersion\":\"{}\",\"metadata\":",
        resource.kind,
        resource.api_version(),
    )
    .into_bytes();
    wire::write_as(
        &metadata,
        "apimachinery.pkg.apis.meta.v1.ListMeta",
        &mut head,
    );
    head.extend_from_slice(b",\"items\":[");
    let mut chunks = Vec::new();
    let mut chunk = bytes::BytesMut::with_capacity(CHUNK);
    chunk.extend_from_slice(&head);
    for (i, item) in raw_items.iter().enumerate() {
        if i > 0 {
            chunk.extend_from_slice(b",");
        }
        chunk.extend_from_slice(item);
        if chunk.len() >= CHUNK {
            chunks.push(chunk.split().freeze());
        }
    }
    chunk.extend_from_slice(b"]}\n");
    chunks.push(chunk.freeze());
    let stream = futures::stream::iter(chunks.into_iter().map(Ok::<_, std::convert::Infallible>));
    let mut response = Response::new(Body::from_stream(stream));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// `/orrery/v1/...`: the flow stream, the stepper, and the scheduler's decisions.
pub(crate) async fn control(api: &Arc<ApiServer>, rest: &str, request: Request) -> Response {
    match (request.method().clone(), rest) {
        (Method::GET, path) if path.starts_with("scheduling/") => {
            let mut parts = path["scheduling/".len()..].split('/');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(namespace), Some(name), None)
                    if !namespace.is_empty() && !name.is_empty() =>
                {
                    match api.decisions().get(namespace, name) {
                        Some(decision) => json_response(StatusCode::OK, &decision),
                        None => ApiError::NotFound {
                            resource: "schedulingdecisions".into(),
                            name: format!("{namespace}/{name}"),
                        }
                        .into_response(),
                    }
                }
                _ => ApiError::NoSuchPath.into_response(),
            }
        }
        (Method::GET, path) if path.starts_with("store/") => {
            match store_info(api, &path["store/".len()..]).await {
                Ok(answer) => json_response(StatusCode::OK, &answer),
                Err(e) => e.into_response(),
            }
        }
        (Method::GET, "flow") => {
            let query = params(&request);
            let since = query.get("since").and_then(|s| s.parse().ok()).unwrap_or(0);
            // `follow=false`: the events kept so far, then the end (a script's look).
            let follow = !query.contains_key("follow") || flag(&query, "follow");
            let (backlog, mut live) = api.flow().subscribe(since);
            let (tx, rx) =
                tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::convert::Infallible>>(256);
            tokio::spawn(async move {
                let line = |e: &crate::flow::FlowEvent| {
                    let mut line = serde_json::to_vec(e).unwrap_or_default();
                    line.push(b'\n');
                    bytes::Bytes::from(line)
                };
                let mut last = since;
                for e in &backlog {
                    last = e.seq;
                    if tx.send(Ok(line(e))).await.is_err() {
                        return;
                    }
                }
                if !follow {
                    return;
                }
                loop {
                    match live.recv().await {
                        Ok(e) if e.seq <= last => {}
                        Ok(e) => {
                            last = e.seq;
                            if tx.send(Ok(line(&e))).await.is_err() {
                                return;
                            }
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(lost)) => {
                            // A reader too slow for the bus loses events, and is told how many.
                            let line = format!("{{\"lost\":{lost}}}\n");
                            if tx.send(Ok(bytes::Bytes::from(line))).await.is_err() {
                                return;
                            }
                        }
                        Err(_) => return,
                    }
                }
            });
            let mut response = Response::new(Body::from_stream(
                tokio_stream::wrappers::ReceiverStream::new(rx),
            ));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/x-ndjson"),
            );
            response
        }
        (Method::GET, "stepper") => {
            json_response(StatusCode::OK, &json!(api.flow().stepper().state()))
        }
        (Method::POST, "stepper") => {
            let body = match body_bytes(request).await {
                Ok(b) => b,
                Err(e) => return e.into_response(),
            };
            match step(api.flow().stepper(), &body) {
                Ok(state) => json_response(StatusCode::OK, &json!(state)),
                Err(e) => e.into_response(),
            }
        }
        (Method::GET, "components") => match api.supervisor() {
            Some(supervisor) => {
                json_response(StatusCode::OK, &json!({"components": supervisor.list()}))
            }
            None => json_response(StatusCode::OK, &json!({"components": []})),
        },
        (Method::POST, rest) => match operate(api, rest) {
            Ok(answer) => json_response(StatusCode::OK, &answer),
            Err(e) => e.into_response(),
        },
        _ => ApiError::NoSuchPath.into_response(),
    }
}

/// `GET /orrery/v1/store/<resource>/<namespace or ->/<name>`: what the store holds for one
/// object, as etcd would say it: its key, the revisions that created and last changed it, and
/// its version (how many writes since it was created, counted from the store's history; absent
/// once that history is compacted away). `<resource>` is a plural, optionally with its group
/// (`deployments.apps`).
async fn store_info(api: &Arc<ApiServer>, rest: &str) -> Result<Value, ApiError> {
    let parts: Vec<&str> = rest.split('/').collect();
    let [plural, namespace, name] = parts[..] else {
        return Err(ApiError::NoSuchPath);
    };
    let (plural, group) = plural.split_once('.').unwrap_or((plural, ""));
    let resource = crate::apiserver::resources::RESOURCES
        .iter()
        .find(|r| r.plural == plural && (group.is_empty() || r.group == group))
        .ok_or(ApiError::NoSuchPath)?;
    let namespace = (resource.namespaced && namespace != "-").then_some(namespace);
    if name.is_empty() || (resource.namespaced && namespace.is_none()) {
        return Err(ApiError::NoSuchPath);
    }
    let key = resource.key(namespace, name);
    let not_found = || ApiError::NotFound {
        resource: resource.qualified(),
        name: name.to_owned(),
    };
    let kv = api
        .store()
        .get(&key)
        .await
        .map_err(|e| from_store(e, &resource.qualified(), name))?
        .ok_or_else(not_found)?;
    let mut answer = json!({
        "key": kv.key,
        "createRevision": kv.create_revision,
        "modRevision": kv.mod_revision,
    });
    if let Some(version) = version_of(api, &kv).await {
        answer["version"] = json!(version);
    }
    Ok(answer)
}

/// How many times `kv` was written since it was created (etcd's `version`), by reading the
/// store's history of its key from its creation to its latest change; `None` if that history is
/// gone (compacted) or cannot be read in time.
async fn version_of(api: &ApiServer, kv: &crate::store::KeyValue) -> Option<u64> {
    use futures::StreamExt;
    let mut events = api.store().watch(&kv.key, kv.create_revision).await.ok()?;
    let count = async {
        let mut version = 0u64;
        while let Some(event) = events.next().await {
            let event = event.ok()?;
            if event.revision() > kv.mod_revision {
                break;
            }
            if matches!(&event, crate::store::Event::Put { kv: put, .. } if put.key == kv.key) {
                version += 1;
            }
            if event.revision() == kv.mod_revision {
                break;
            }
        }
        Some(version)
    };
    tokio::time::timeout(std::time::Duration::from_secs(2), count)
        .await
        .ok()
        .flatten()
        .filter(|v| *v > 0)
}

/// `POST /orrery/v1/stepper`: `{"mode": "run"|"step"}`, `{"release": n}` (the n oldest gates),
/// `{"releaseGate": id}` (exactly that hop), `{"focus": {"namespace": .., "root": ..}}` or
/// `{"focus": null}`; any together. Answers the stepper's state.
fn step(
    stepper: &crate::flow::Stepper,
    body: &[u8],
) -> Result<crate::flow::StepperState, ApiError> {
    let command: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("the stepper command is not JSON: {e}")))?
    };
    let Some(command) = command.as_object() else {
        return Err(ApiError::BadRequest(
            "the stepper command must be a JSON object".into(),
        ));
    };
    let mode = match command.get("mode") {
        None | Some(Value::Null) => None,
        Some(Value::String(m)) if m == "step" => Some(StepMode::Step),
        Some(Value::String(m)) if m == "run" => Some(StepMode::Run),
        Some(other) => {
            return Err(ApiError::Invalid {
                group: "orrery.dev".into(),
                kind: "Stepper".into(),
                name: "stepper".into(),
                causes: vec![crate::apiserver::errors::Cause::unsupported(
                    "mode",
                    other,
                    &["run", "step"],
                )],
            });
        }
    };
    let focus = match command.get("focus") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(f) => Some(Some(
            serde_json::from_value::<crate::flow::Focus>(f.clone())
                .map_err(|e| ApiError::BadRequest(format!("focus: {e}")))?,
        )),
    };
    let release = match command.get("release") {
        None => None,
        Some(n) => Some(
            n.as_u64()
                .ok_or_else(|| ApiError::BadRequest("release must be a number of gates".into()))?,
        ),
    };
    let gate = match command.get("releaseGate") {
        None => None,
        Some(n) => Some(
            n.as_u64()
                .ok_or_else(|| ApiError::BadRequest("releaseGate must be a gate's id".into()))?,
        ),
    };
    if let Some(mode) = mode {
        stepper.set_mode(mode);
    }
    if let Some(focus) = focus {
        stepper.set_focus(focus);
    }
    if let Some(n) = release {
        stepper.release(n as usize);
    }
    if let Some(id) = gate
        && !stepper.release_gate(id)
    {
        return Err(ApiError::NotFound {
            resource: "gates".into(),
            name: id.to_string(),
        });
    }
    Ok(stepper.state())
}

/// `POST /orrery/v1/components/<name>/{stop,start}` and `/orrery/v1/nodes/<name>/{stop,start}`.
fn operate(api: &ApiServer, rest: &str) -> Result<Value, ApiError> {
    use crate::supervisor::Role;
    // A node's component has a slash in its name (`kube-proxy/node-1`).
    let Some((group, (name, action))) = rest
        .split_once('/')
        .and_then(|(group, rest)| Some((group, rest.rsplit_once('/')?)))
    else {
        return Err(ApiError::NoSuchPath);
    };
    let role = match group {
        "components" => Role::Component,
        "nodes" => Role::Node,
        _ => return Err(ApiError::NoSuchPath),
    };
    let supervisor = api
        .supervisor()
        .ok_or_else(|| ApiError::Unavailable("this API server runs no components".into()))?;
    let changed = match action {
        "stop" => supervisor.stop(role, name),
        "start" => supervisor.start(role, name),
        _ => return Err(ApiError::NoSuchPath),
    }
    .map_err(|_| ApiError::NotFound {
        resource: group.to_owned(),
        name: name.to_owned(),
    })?;
    Ok(json!({"name": name, "running": action == "start", "changed": changed}))
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

    #[test]
    fn dynamic_cluster_ips_stay_out_of_the_static_band_until_the_rest_is_full() {
        let ip = |used: &dyn Fn(u32) -> bool, random| {
            dynamic_cluster_ip(used, random).map(|ip| ip.to_string())
        };
        let none = |_| false;
        assert_eq!(ip(&none, 0).as_deref(), Some("10.96.1.0"));
        let top = SERVICE_ADDRESSES - 2 - STATIC_BAND;
        assert_eq!(ip(&none, top).as_deref(), Some("10.111.255.254"));
        // Wraps round past the top, never onto the broadcast address.
        let top_used = |n| n == SERVICE_ADDRESSES - 2;
        assert_eq!(ip(&top_used, top).as_deref(), Some("10.96.1.0"));
        // With the dynamic band full, the static band is used, from its first address.
        let dynamic_full = |n| n >= STATIC_BAND;
        assert_eq!(ip(&dynamic_full, 7).as_deref(), Some("10.96.0.1"));
        let all = |_| true;
        assert_eq!(ip(&all, 7), None);
    }
}
