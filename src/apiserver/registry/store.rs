//! The generic store every resource is written through, as kube-apiserver's
//! `registry/generic/registry.Store`: create (with `generateName`, defaulting, admission and
//! validation), update with its retries and preconditions, get, and delete with grace periods,
//! finalizers and propagation; each write waits at the stepper's gate and is told on the flow.
//! What differs between resources is the resource's [`super::strategy`]; the Service
//! allocations are [`super::ipallocator`]'s.

use serde_json::{Value, json};

use super::ipallocator;
use super::strategy::Strategy;
use crate::apimachinery::params::Params;
use crate::apiserver::errors::{ApiError, Cause, from_store};
use crate::apiserver::resources::{self, Resource};
use crate::apiserver::webhook::{self, Operation::Create, Operation::Update};
use crate::apiserver::{ApiServer, admission, apply, decode, encode};
use crate::flow::FlowEvent;
use crate::store::Revision;

/// How many times a write that lost a race (no resourceVersion given) is retried. kube-apiserver's
/// `GuaranteedUpdate` retries without bound: a write only loses when another one committed, so
/// every retry means progress, and hundreds of concurrent patches of one object all succeed.
/// The bound is only a guard against a bug turning into an endless loop.
const RETRIES: usize = 100_000;

pub(crate) fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Five characters of upstream's `utilrand.String` alphabet: `generateName`'s suffix.
pub(crate) fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    bytes[..5]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

pub(crate) fn name_of(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or_default()
}

/// Kinds whose `metadata.generation` counts spec changes (a PodTemplate's: its template's).
pub(crate) fn has_generation(resource: &Resource) -> bool {
    matches!(
        resource.kind,
        "Deployment"
            | "ReplicaSet"
            | "ReplicationController"
            | "PodTemplate"
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

pub(crate) fn invalid(resource: &Resource, name: &str, causes: Vec<Cause>) -> ApiError {
    ApiError::Invalid {
        group: resource.group.into(),
        kind: resource.kind.into(),
        name: name.into(),
        causes,
    }
}

/// Checks the namespace a namespaced object is created in: it must exist and not be terminating.
pub(crate) async fn check_namespace(
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

/// Waits at the stepper's gate before a store write; returns the object's story (its root).
pub(crate) async fn gate_write(api: &ApiServer, verb: &str, object: &Value) -> String {
    let root = api.root_owner(object).await;
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

pub(crate) fn emit_store(
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
pub(crate) fn canonical(resource: &Resource, object: Value) -> Result<Value, ApiError> {
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
    let strategy = Strategy::of(api, resource).await?;
    strategy.check_create()?;
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
    if strategy.has_generation() {
        meta.insert("generation".into(), json!(1));
    } else {
        meta.remove("generation");
    }
    // In Go's shape first, so defaulting sees a zero Go omits as unset, as Go's defaulting does.
    let mut object = canonical(resource, object)?;
    admission::prepare_for_create(resource, &mut object);
    strategy.default(&mut object);
    let pod = resource.kind == "Pod" && resource.group.is_empty();
    if pod {
        // NamespaceLifecycle comes first: a pod in no namespace is refused for that.
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default");
        check_namespace(api, resource, namespace, name_of(&object)).await?;
        crate::apiserver::serviceaccount::admit(api, &mut object).await?;
    }
    if resource.kind == "Pod" {
        admission::default_toleration_seconds(&mut object, api.default_toleration_seconds());
    }
    if (resource.group, resource.kind) == ("networking.k8s.io", "Ingress") {
        admission::default_ingress_class_of(api, &mut object).await?;
    }
    // The Service REST storage's BeginCreate: its addresses are reserved now, and released if
    // the create fails after all.
    let reserved = if (resource.group, resource.kind) == ("", "Service") {
        Some(ipallocator::allocate(api, &mut object, None, dry_run).await?)
    } else {
        None
    };
    let created = finish_create(api, &strategy, object, manager, dry_run, pod, warnings).await;
    if created.is_err()
        && let Some(reserved) = reserved
    {
        ipallocator::release_reserved(api, &reserved).await;
    }
    created
}

/// Whether a new object's name came from its `generateName` (the prefix and five random
/// characters, [`random_suffix`]'s), which mutating webhooks do not see yet: upstream names the
/// object after mutating admission.
fn generated_name(object: &Value) -> bool {
    let meta = &object["metadata"];
    match (meta["generateName"].as_str(), meta["name"].as_str()) {
        (Some(prefix), Some(name)) if !prefix.is_empty() => {
            name.strip_prefix(prefix).is_some_and(|rest| {
                rest.len() == 5
                    && rest
                        .bytes()
                        .all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b))
            })
        }
        _ => false,
    }
}

/// The rest of a create, once the object's addresses are reserved.
async fn finish_create(
    api: &ApiServer,
    strategy: &Strategy,
    mut object: Value,
    manager: Option<&str>,
    dry_run: bool,
    pod: bool,
    warnings: &mut Vec<String>,
) -> Result<Value, ApiError> {
    let resource = strategy.resource;
    if (resource.group, resource.kind) == ("", "PersistentVolumeClaim") {
        crate::apiserver::storage::admit_default_class(api, &mut object).await?;
    }
    // LimitRanger's mutating half now; its refusal after validation, where upstream's
    // validating admission runs.
    let limit_refusal = crate::apiserver::limitranger::admit(api, resource, &mut object).await?;
    if (resource.group, resource.kind) == ("", "Pod") {
        object["status"]["qosClass"] = json!(admission::pod_qos(&object));
        admission::scheduling_gated(&mut object);
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
    let mut hooked = webhook::Request::of(resource, "", Create, &object, None, manager, dry_run);
    hooked.generated_name = generated_name(&object);
    webhook::mutate(api, &hooked, &mut object, warnings).await?;
    let name = name_of(&object).to_owned();
    crate::apiserver::noderestriction::admit(
        api,
        resource,
        "",
        crate::apiserver::noderestriction::Op::Create(&object),
    )
    .await?;
    let mut causes = strategy.validate(&object, None);
    if crate::apiserver::certificates::is_csr(resource) {
        causes.extend(crate::apiserver::certificates::validate(
            &object,
            None,
            UpdateKind::Main,
        ));
    }
    if !causes.is_empty() {
        return Err(invalid(resource, &name, causes));
    }
    if crate::apiserver::certificates::is_csr(resource) {
        crate::apiserver::certificates::admit(api, UpdateKind::Main, &object, None).await?;
    }
    crate::apiserver::auth::rbac::confirm_no_escalation(api, resource, &object, None).await?;
    let namespace = object["metadata"]["namespace"].as_str().map(str::to_owned);
    if let Some(ns) = namespace.as_ref().filter(|_| !pod) {
        check_namespace(api, resource, ns, &name).await?;
    }
    if let Some(refusal) = limit_refusal {
        return Err(refusal);
    }
    warnings.extend(crate::apiserver::podsecurity::admit(api, resource, &object, None).await?);
    let hooked = webhook::Request::of(resource, "", Create, &object, None, manager, dry_run);
    webhook::validate(api, &hooked, Some(&object), warnings).await?;
    crate::apiserver::quota::admit(api, resource, &object, None, dry_run).await?;
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

/// How an update treats the stored object.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum UpdateKind {
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
    pub(crate) fn subresource(self) -> &'static str {
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
pub(crate) struct Write<'a> {
    pub(crate) kind: UpdateKind,
    /// The resourceVersion the client based its change on (`None`: retry until it sticks).
    pub(crate) precondition: Option<Revision>,
    /// Whether a missing object is created (server-side apply).
    pub(crate) allow_create: bool,
    /// Who changes the fields (`None`: the caller maintains managedFields itself).
    pub(crate) manager: Option<&'a str>,
    /// `dryRun=All`: everything but the write.
    pub(crate) dry_run: bool,
}

/// The result of an update.
pub(crate) struct Updated {
    pub(crate) object: Value,
    pub(crate) created: bool,
    /// What admission warns of (Pod Security's `warn` level).
    pub(crate) warnings: Vec<String>,
}

/// Writes `new` over the stored object, as PUT (and, after patching, PATCH) do.
pub(crate) async fn update_object(
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
    let strategy = Strategy::of(api, resource).await?;
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
                    match old.get("status") {
                        Some(status) => new["status"] = status.clone(),
                        None => {
                            if let Some(map) = new.as_object_mut() {
                                map.remove("status");
                            }
                        }
                    }
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
        if crate::apiserver::certificates::is_csr(resource) {
            crate::apiserver::certificates::prepare_for_update(kind, &mut new, &old);
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
        strategy.default(&mut new);
        admission::keep_allocated(resource, &mut new, &old);
        crate::apiserver::storage::prepare_for_update(resource, &mut new, &old);
        if admission::is_crd(resource) && kind == UpdateKind::Main {
            crate::apiserver::apiextensions::validation::prepare_crd_for_update(&mut new, &old);
        }
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
            webhook::Request::of(resource, sub, Update, &new, Some(&old), manager, dry_run)
        });
        if let Some(hooked) = &hooked {
            webhook::mutate(api, hooked, &mut new, &mut hook_warnings).await?;
        }
        if strategy.has_generation()
            && kind == UpdateKind::Main
            && strategy.generation_changed(&new, &old)
        {
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
            new["metadata"]["generation"] = json!(generation);
        }
        let op = crate::apiserver::noderestriction::Op::Update {
            new: &new,
            old: &old,
        };
        crate::apiserver::noderestriction::admit(api, resource, kind.subresource(), op).await?;
        let mut causes = strategy.validate(&new, Some(&old));
        if crate::apiserver::certificates::is_csr(resource) {
            causes.extend(crate::apiserver::certificates::validate(
                &new,
                Some(&old),
                kind,
            ));
        }
        if !causes.is_empty() {
            return Err(invalid(resource, name, causes));
        }
        if crate::apiserver::certificates::is_csr(resource) {
            crate::apiserver::certificates::admit(api, kind, &new, Some(&old)).await?;
        }
        crate::apiserver::auth::rbac::confirm_no_escalation(api, resource, &new, Some(&old))
            .await?;
        if (resource.group, resource.kind) == ("", "PersistentVolumeClaim")
            && kind == UpdateKind::Main
        {
            crate::apiserver::storage::admit_resize(api, &new, &old).await?;
            // LimitRanger holds a claim's new size to the namespace's bounds (pods' updates
            // it passes over, as upstream).
            if let Some(refusal) =
                crate::apiserver::limitranger::admit(api, resource, &mut new).await?
            {
                return Err(refusal);
            }
        }
        let mut warnings =
            crate::apiserver::podsecurity::admit(api, resource, &new, Some((&old, kind))).await?;
        if let Some(hooked) = &hooked {
            webhook::validate(api, hooked, Some(&new), &mut hook_warnings).await?;
        }
        warnings.extend(hook_warnings);
        if kind == UpdateKind::Main {
            crate::apiserver::quota::admit(api, resource, &new, Some(&old), dry_run).await?;
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
        let service = (resource.group, resource.kind) == ("", "Service");
        let reserved = if service && kind == UpdateKind::Main && !finalized {
            Some(ipallocator::allocate(api, &mut new, Some(&old), false).await?)
        } else {
            None
        };
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
                if finalized {
                    after_delete(api, resource, &new).await;
                } else if reserved.is_some() {
                    ipallocator::release_dropped(api, &new, &old).await;
                }
                new["metadata"]["resourceVersion"] = json!(revision.to_string());
                return Ok(Updated {
                    object: new,
                    created: false,
                    warnings,
                });
            }
            Err(e) => {
                if let Some(reserved) = &reserved {
                    ipallocator::release_reserved(api, reserved).await;
                }
                match e {
                    crate::store::Error::Conflict { .. } | crate::store::Error::NotFound { .. }
                        if precondition.is_none() =>
                    {
                        continue;
                    }
                    e => return Err(from_store(e, &qualified, name)),
                }
            }
        }
    }
    Err(ApiError::modified(&qualified, name))
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

pub(crate) fn grace_period(options: &Value, params: &Params) -> Option<i64> {
    params
        .get("gracePeriodSeconds")
        .and_then(|g| g.parse().ok())
        .or_else(|| options["gracePeriodSeconds"].as_i64())
}

/// Whether deleting an object of `resource` without a `propagationPolicy` orphans its
/// dependents: core/v1 ReplicationControllers do, for compatibility with the days before
/// server-side garbage collection (the RC strategy's `DefaultGarbageCollectionPolicy`);
/// `kubectl delete` always sends a policy (`Background`).
fn orphans_by_default(resource: &Resource) -> bool {
    (resource.group, resource.kind) == ("", "ReplicationController")
}

/// Deletes an object as the real server does: at once, or by setting `deletionTimestamp` when
/// finalizers (including the garbage collector's `foregroundDeletion`/`orphan`, which record
/// `propagationPolicy`) or a pod's grace period make it wait.
pub(crate) async fn delete_object(
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
    let strategy = Strategy::of(api, resource).await?;
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
        crate::apiserver::noderestriction::admit(
            api,
            resource,
            "",
            crate::apiserver::noderestriction::Op::Delete(&object),
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
        let hooked = webhook::Request::delete(resource, &object, options, params);
        webhook::mutate(api, &hooked, &mut Value::Null, &mut Vec::new()).await?;
        webhook::validate(api, &hooked, None, &mut Vec::new()).await?;
        drop(hooked);
        // kubectl sends dryRun in the DeleteOptions body; other clients in the query.
        let body_dry_run = options["dryRun"]
            .as_array()
            .is_some_and(|d| d.iter().any(|v| v == "All"));
        if params.get("dryRun").is_some_and(|d| d == "All") || body_dry_run {
            return Ok(object);
        }
        let mut finalizers: Vec<Value> = object["metadata"]["finalizers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        // A CRD's objects go before it does (its REST storage's Delete).
        if admission::is_crd(resource) && object["metadata"]["deletionTimestamp"].is_null() {
            let cleanup = json!(crate::apiserver::apiextensions::served::CLEANUP_FINALIZER);
            if !finalizers.contains(&cleanup) {
                finalizers.push(cleanup);
            }
            terminating_condition(&mut object);
        }
        match policy.as_deref() {
            Some("Foreground") if !finalizers.contains(&json!("foregroundDeletion")) => {
                finalizers.push(json!("foregroundDeletion"))
            }
            Some("Orphan") if !finalizers.contains(&json!("orphan")) => {
                finalizers.push(json!("orphan"))
            }
            // Upstream's `shouldOrphanDependents`: without a policy (nor a finalizer saying
            // one), a kind whose strategy's `DefaultGarbageCollectionPolicy` is
            // `OrphanDependents` orphans its dependents.
            None if orphans_by_default(resource)
                && !finalizers.contains(&json!("foregroundDeletion"))
                && !finalizers.contains(&json!("orphan")) =>
            {
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
                    after_delete(api, resource, &object).await;
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
        if strategy.has_generation() {
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

/// What goes with an object once it has left the store (upstream's `AfterDelete`): a Service's
/// cluster IP and node ports are free again.
async fn after_delete(api: &ApiServer, resource: &Resource, object: &Value) {
    if (resource.group, resource.kind) == ("", "Service") {
        ipallocator::release(api, object).await;
    }
}

/// A CRD asked to go is `Terminating` until its objects have gone.
fn terminating_condition(crd: &mut Value) {
    let now = now();
    let condition = json!({
        "type": "Terminating",
        "status": "True",
        "lastTransitionTime": now,
        "reason": "InstanceDeletionPending",
        "message": "CustomResourceDefinition marked for deletion; CustomResource deletion will begin soon",
    });
    let conditions = &mut crd["status"]["conditions"];
    match conditions.as_array_mut() {
        Some(list) => {
            list.retain(|c| c["type"] != "Terminating");
            list.push(condition);
        }
        None => *conditions = json!([condition]),
    }
}
