//! The resources the API server serves: names, kinds, scopes, verbs and subresources as the real
//! API server reports them in discovery, and the `k8s-openapi` type behind each.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use k8s_openapi::api::{
    admissionregistration, apps, authentication, authorization, autoscaling, batch, certificates,
    coordination, core, discovery, events, networking, policy, rbac, storage,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions;

/// Turns a JSON object into its typed form and back: what the type does not know is dropped
/// (the real server prunes unknown fields too) and what it knows is kept exactly.
pub(crate) type Normalize = fn(Value) -> Result<Value, serde_json::Error>;

fn normalize<T: Serialize + DeserializeOwned>(value: Value) -> Result<Value, serde_json::Error> {
    serde_json::to_value(serde_json::from_value::<T>(value)?)
}

/// One resource, such as `pods` or `deployments.apps`.
#[derive(Debug)]
pub(crate) struct Resource {
    pub(crate) group: &'static str,
    pub(crate) version: &'static str,
    pub(crate) plural: &'static str,
    pub(crate) singular: &'static str,
    pub(crate) kind: &'static str,
    pub(crate) namespaced: bool,
    pub(crate) short_names: &'static [&'static str],
    pub(crate) categories: &'static [&'static str],
    /// Subresources other than the main one, such as `status` or `scale`.
    pub(crate) subresources: &'static [&'static str],
    pub(crate) normalize: Normalize,
    /// For a resource served in another form than it is stored in (events.k8s.io Events are
    /// kept as core Events, as the real server keeps them).
    pub(crate) conversion: Option<Conversion>,
    /// For a custom resource (a CustomResourceDefinition's version): where its objects are kept
    /// and in which version.
    pub(crate) custom: Option<CustomStorage>,
}

/// Where a custom resource's objects are kept: every version of a CustomResourceDefinition
/// under `/registry/<group>/<plural>/`, in its storage version (conversion `None` only
/// rewrites `apiVersion`, as apiextensions-apiserver's nop converter does).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct CustomStorage {
    /// `example.com/crontabs`.
    pub(crate) stored_as: &'static str,
    /// The storage version's `apiVersion` (`example.com/v1`).
    pub(crate) storage_api_version: &'static str,
}

/// What a custom resource is served as: everything of a [`Resource`] that is not a function,
/// owned, so that the API server can make one from a CustomResourceDefinition at run time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct CustomResource {
    pub(crate) group: String,
    pub(crate) version: String,
    pub(crate) plural: String,
    pub(crate) singular: String,
    pub(crate) kind: String,
    pub(crate) namespaced: bool,
    pub(crate) short_names: Vec<String>,
    pub(crate) categories: Vec<String>,
    pub(crate) subresources: Vec<String>,
    pub(crate) storage_version: String,
}

/// Custom resources are handed round as `&'static Resource` like the built-in ones: each
/// distinct one is made once and kept for the life of the process (a CRD deleted and created
/// again, or changed back, is served by the one made before), so what is kept is bounded by
/// how many distinct definitions the process ever saw.
fn interned()
-> &'static std::sync::Mutex<std::collections::HashMap<CustomResource, &'static Resource>> {
    static INTERNED: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<CustomResource, &'static Resource>>,
    > = std::sync::OnceLock::new();
    INTERNED.get_or_init(Default::default)
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

fn leak_all(list: &[String]) -> &'static [&'static str] {
    Box::leak(
        list.iter()
            .map(|s| leak(s))
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    )
}

/// Custom resources keep what they are sent: pruning is their schema's
/// ([`crate::apiserver::apiextensions`]), not a type's.
fn unstructured(value: Value) -> Result<Value, serde_json::Error> {
    Ok(value)
}

impl CustomResource {
    /// The served resource, made once per distinct definition.
    pub(crate) fn resource(&self) -> &'static Resource {
        let mut interned = interned().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(resource) = interned.get(self) {
            return resource;
        }
        let resource: &'static Resource = Box::leak(Box::new(Resource {
            group: leak(&self.group),
            version: leak(&self.version),
            plural: leak(&self.plural),
            singular: leak(&self.singular),
            kind: leak(&self.kind),
            namespaced: self.namespaced,
            short_names: leak_all(&self.short_names),
            categories: leak_all(&self.categories),
            subresources: leak_all(&self.subresources),
            normalize: unstructured,
            conversion: None,
            custom: Some(CustomStorage {
                stored_as: leak(&format!("{}/{}", self.group, self.plural)),
                storage_api_version: leak(&format!("{}/{}", self.group, self.storage_version)),
            }),
        }));
        interned.insert(self.clone(), resource);
        resource
    }
}

/// Converts between how a resource is served and how it is stored.
#[derive(Debug)]
pub(crate) struct Conversion {
    /// The stored form's store resource (`events`).
    pub(crate) stored_as: &'static str,
    pub(crate) to_served: fn(Value) -> Value,
    pub(crate) to_stored: fn(Value) -> Value,
}

impl PartialEq for Resource {
    fn eq(&self, other: &Self) -> bool {
        (self.group, self.version, self.plural) == (other.group, other.version, other.plural)
    }
}

impl Resource {
    /// `v1` or `apps/v1`.
    pub(crate) fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `pods` or `deployments.apps`, as error messages name a resource.
    pub(crate) fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_owned()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// An object through its type and into the shape Go gives it: what the type does not know
    /// is dropped, and the zeros Go omits go (see [`crate::apimachinery::wire`]).
    pub(crate) fn canonical(&self, object: Value) -> Result<Value, serde_json::Error> {
        if self.custom.is_some() {
            return canonical_metadata(object);
        }
        (self.normalize)(object).map(crate::apimachinery::wire::shape)
    }

    /// Converts a request's object of this resource's version into the form the server keeps,
    /// as kube-apiserver's conversion to its internal type does: a Secret's `stringData` is
    /// merged into `data` (base64), overwriting keys `data` has, and goes.
    pub(crate) fn convert_request(&self, object: &mut Value) {
        if (self.group, self.kind) == ("", "Secret") {
            merge_string_data(object);
        }
    }

    /// The verbs of the resource itself, as discovery lists them: the reviews are only
    /// created.
    pub(crate) fn verbs(&self) -> &'static [&'static str] {
        if super::auth::reviews::is_review(self) {
            &["create"]
        } else {
            verbs("")
        }
    }

    pub(crate) fn has_status(&self) -> bool {
        self.subresources.contains(&"status")
    }

    /// An object as stored, in the form this resource serves.
    pub(crate) fn served(&self, stored: Value) -> Value {
        match (&self.conversion, &self.custom) {
            (Some(c), _) => (c.to_served)(stored),
            (None, Some(custom)) => with_api_version(stored, custom, &self.api_version()),
            (None, None) => stored,
        }
    }

    /// An object as served, in the form it is stored in.
    pub(crate) fn stored(&self, served: Value) -> Value {
        match (&self.conversion, &self.custom) {
            (Some(c), _) => (c.to_stored)(served),
            (None, Some(custom)) => with_api_version(served, custom, custom.storage_api_version),
            (None, None) => served,
        }
    }

    /// The store key prefix for all objects of this resource (in one namespace, if given):
    /// `/registry/<resource>/<namespace>/`, as the real API server keys etcd.
    pub(crate) fn key_prefix(&self, namespace: Option<&str>) -> String {
        let resource = match (&self.conversion, &self.custom) {
            (Some(c), _) => c.stored_as,
            (None, Some(custom)) => custom.stored_as,
            (None, None) => self.plural,
        };
        match namespace {
            Some(ns) if self.namespaced => format!("/registry/{resource}/{ns}/"),
            _ => format!("/registry/{resource}/"),
        }
    }

    /// The store key of one object.
    pub(crate) fn key(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}{name}", self.key_prefix(namespace))
    }
}

/// A custom resource's `apiVersion` set to `api_version` (what converting between a CRD's
/// versions with strategy `None` does).
fn with_api_version(mut object: Value, _custom: &CustomStorage, api_version: &str) -> Value {
    if let Some(map) = object.as_object_mut()
        && map.get("apiVersion").and_then(Value::as_str) != Some(api_version)
    {
        map.insert("apiVersion".into(), Value::String(api_version.to_owned()));
    }
    object
}

/// A custom resource's `metadata` through `ObjectMeta` (what it does not know is dropped, and
/// Go's zeros go), the rest as it is.
fn canonical_metadata(mut object: Value) -> Result<Value, serde_json::Error> {
    if let Some(meta) = object.get_mut("metadata") {
        let typed: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta =
            serde_json::from_value(meta.take())?;
        *meta = serde_json::to_value(typed)?;
    }
    Ok(object)
}

/// `stringData` into `data`, as `Convert_v1_Secret_To_core_Secret` does.
fn merge_string_data(secret: &mut Value) {
    use base64::Engine;
    let Some(map) = secret.as_object_mut() else {
        return;
    };
    // Values that are not strings stay, for the typed decoding to refuse in its words.
    let Some(Value::Object(strings)) = map.get("stringData") else {
        return;
    };
    if strings.values().any(|v| !v.is_string() && !v.is_null()) {
        return;
    }
    let Some(Value::Object(strings)) = map.remove("stringData") else {
        return;
    };
    if strings.is_empty() {
        return;
    }
    if !map.get("data").is_some_and(Value::is_object) {
        map.insert("data".into(), Value::Object(Default::default()));
    }
    let data = map
        .get_mut("data")
        .and_then(Value::as_object_mut)
        .expect("an object, just made");
    for (key, value) in strings {
        let text = value.as_str().unwrap_or_default().to_owned();
        data.insert(
            key,
            Value::String(base64::engine::general_purpose::STANDARD.encode(text)),
        );
    }
}

const ALL: &[&str] = &["all"];
const NONE: &[&str] = &[];
/// The category `kubectl get api-extensions` lists (webhook configurations, CRDs, APIServices).
const API_EXTENSIONS: &[&str] = &["api-extensions"];

macro_rules! resource {
    ($group:expr, $version:expr, $plural:expr, $singular:expr, $kind:expr, $namespaced:expr,
     $short:expr, $categories:expr, $subresources:expr, $ty:ty) => {
        Resource {
            group: $group,
            version: $version,
            plural: $plural,
            singular: $singular,
            kind: $kind,
            namespaced: $namespaced,
            short_names: $short,
            categories: $categories,
            subresources: $subresources,
            normalize: normalize::<$ty>,
            conversion: None,
            custom: None,
        }
    };
    ($($args:expr),+ ; $ty:ty ; $conversion:expr) => {
        Resource { conversion: Some($conversion), ..resource!($($args),+, $ty) }
    };
}

/// Moves fields between the two Event forms: `(core/v1 name, events.k8s.io/v1 name)`.
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("reportingComponent", "reportingController"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

fn rename_fields(
    mut object: Value,
    pairs: impl Iterator<Item = (&'static str, &'static str)>,
    api_version: &str,
) -> Value {
    if let Some(map) = object.as_object_mut() {
        for (from, to) in pairs {
            if let Some(v) = map.remove(from) {
                map.insert(to.to_owned(), v);
            }
        }
        map.insert("apiVersion".into(), Value::String(api_version.to_owned()));
    }
    object
}

fn event_to_served(stored: Value) -> Value {
    rename_fields(stored, EVENT_FIELDS.iter().copied(), "events.k8s.io/v1")
}

fn event_to_stored(served: Value) -> Value {
    rename_fields(served, EVENT_FIELDS.iter().map(|(a, b)| (*b, *a)), "v1")
}

/// autoscaling/v1 HorizontalPodAutoscalers are kept as autoscaling/v2 ones, as the real server
/// keeps them ([`crate::apimachinery::autoscaling`]).
const HPA_V1: Conversion = Conversion {
    stored_as: "horizontalpodautoscalers",
    to_served: crate::apimachinery::autoscaling::v2_to_v1,
    to_stored: crate::apimachinery::autoscaling::v1_to_v2,
};

const EVENTS: Conversion = Conversion {
    stored_as: "events",
    to_served: event_to_served,
    to_stored: event_to_stored,
};

/// Every resource served, in discovery order.
pub(crate) static RESOURCES: &[Resource] = &[
    resource!(
        "",
        "v1",
        "namespaces",
        "namespace",
        "Namespace",
        false,
        &["ns"],
        NONE,
        &["status", "finalize"],
        core::v1::Namespace
    ),
    resource!(
        "",
        "v1",
        "nodes",
        "node",
        "Node",
        false,
        &["no"],
        NONE,
        &["status", "proxy"],
        core::v1::Node
    ),
    resource!(
        "",
        "v1",
        "pods",
        "pod",
        "Pod",
        true,
        &["po"],
        ALL,
        &[
            "status",
            "binding",
            "log",
            "eviction",
            "exec",
            "portforward",
            "attach",
            "ephemeralcontainers"
        ],
        core::v1::Pod
    ),
    resource!(
        "",
        "v1",
        "services",
        "service",
        "Service",
        true,
        &["svc"],
        ALL,
        &["status"],
        core::v1::Service
    ),
    resource!(
        "",
        "v1",
        "endpoints",
        "endpoints",
        "Endpoints",
        true,
        &["ep"],
        NONE,
        NONE,
        core::v1::Endpoints
    ),
    resource!(
        "",
        "v1",
        "configmaps",
        "configmap",
        "ConfigMap",
        true,
        &["cm"],
        NONE,
        NONE,
        core::v1::ConfigMap
    ),
    resource!(
        "",
        "v1",
        "secrets",
        "secret",
        "Secret",
        true,
        NONE,
        NONE,
        NONE,
        core::v1::Secret
    ),
    resource!(
        "",
        "v1",
        "serviceaccounts",
        "serviceaccount",
        "ServiceAccount",
        true,
        &["sa"],
        NONE,
        &["token"],
        core::v1::ServiceAccount
    ),
    resource!(
        "",
        "v1",
        "events",
        "event",
        "Event",
        true,
        &["ev"],
        NONE,
        NONE,
        core::v1::Event
    ),
    resource!(
        "",
        "v1",
        "persistentvolumeclaims",
        "persistentvolumeclaim",
        "PersistentVolumeClaim",
        true,
        &["pvc"],
        NONE,
        &["status"],
        core::v1::PersistentVolumeClaim
    ),
    resource!(
        "",
        "v1",
        "persistentvolumes",
        "persistentvolume",
        "PersistentVolume",
        false,
        &["pv"],
        NONE,
        &["status"],
        core::v1::PersistentVolume
    ),
    resource!(
        "",
        "v1",
        "resourcequotas",
        "resourcequota",
        "ResourceQuota",
        true,
        &["quota"],
        NONE,
        &["status"],
        core::v1::ResourceQuota
    ),
    resource!(
        "",
        "v1",
        "limitranges",
        "limitrange",
        "LimitRange",
        true,
        &["limits"],
        NONE,
        NONE,
        core::v1::LimitRange
    ),
    resource!(
        "",
        "v1",
        "replicationcontrollers",
        "replicationcontroller",
        "ReplicationController",
        true,
        &["rc"],
        ALL,
        &["status", "scale"],
        core::v1::ReplicationController
    ),
    resource!(
        "",
        "v1",
        "podtemplates",
        "podtemplate",
        "PodTemplate",
        true,
        NONE,
        NONE,
        NONE,
        core::v1::PodTemplate
    ),
    resource!(
        "apps",
        "v1",
        "deployments",
        "deployment",
        "Deployment",
        true,
        &["deploy"],
        ALL,
        &["status", "scale"],
        apps::v1::Deployment
    ),
    resource!(
        "apps",
        "v1",
        "replicasets",
        "replicaset",
        "ReplicaSet",
        true,
        &["rs"],
        ALL,
        &["status", "scale"],
        apps::v1::ReplicaSet
    ),
    resource!(
        "apps",
        "v1",
        "daemonsets",
        "daemonset",
        "DaemonSet",
        true,
        &["ds"],
        ALL,
        &["status"],
        apps::v1::DaemonSet
    ),
    resource!(
        "apps",
        "v1",
        "statefulsets",
        "statefulset",
        "StatefulSet",
        true,
        &["sts"],
        ALL,
        &["status", "scale"],
        apps::v1::StatefulSet
    ),
    resource!(
        "apps",
        "v1",
        "controllerrevisions",
        "controllerrevision",
        "ControllerRevision",
        true,
        NONE,
        NONE,
        NONE,
        apps::v1::ControllerRevision
    ),
    resource!(
        "batch",
        "v1",
        "jobs",
        "job",
        "Job",
        true,
        NONE,
        ALL,
        &["status"],
        batch::v1::Job
    ),
    resource!(
        "batch",
        "v1",
        "cronjobs",
        "cronjob",
        "CronJob",
        true,
        &["cj"],
        ALL,
        &["status"],
        batch::v1::CronJob
    ),
    resource!(
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        "horizontalpodautoscaler",
        "HorizontalPodAutoscaler",
        true,
        &["hpa"],
        ALL,
        &["status"],
        autoscaling::v2::HorizontalPodAutoscaler
    ),
    resource!(
        "autoscaling",
        "v1",
        "horizontalpodautoscalers",
        "horizontalpodautoscaler",
        "HorizontalPodAutoscaler",
        true,
        &["hpa"],
        ALL,
        &["status"];
        autoscaling::v1::HorizontalPodAutoscaler;
        HPA_V1
    ),
    resource!(
        "certificates.k8s.io",
        "v1",
        "certificatesigningrequests",
        "certificatesigningrequest",
        "CertificateSigningRequest",
        false,
        &["csr"],
        NONE,
        &["status", "approval"],
        certificates::v1::CertificateSigningRequest
    ),
    resource!(
        "coordination.k8s.io",
        "v1",
        "leases",
        "lease",
        "Lease",
        true,
        NONE,
        NONE,
        NONE,
        coordination::v1::Lease
    ),
    resource!(
        "discovery.k8s.io",
        "v1",
        "endpointslices",
        "endpointslice",
        "EndpointSlice",
        true,
        NONE,
        NONE,
        NONE,
        discovery::v1::EndpointSlice
    ),
    resource!(
        "networking.k8s.io",
        "v1",
        "ingresses",
        "ingress",
        "Ingress",
        true,
        &["ing"],
        NONE,
        &["status"],
        networking::v1::Ingress
    ),
    resource!(
        "networking.k8s.io",
        "v1",
        "ipaddresses",
        "ipaddress",
        "IPAddress",
        false,
        &["ip"],
        NONE,
        NONE,
        networking::v1::IPAddress
    ),
    resource!(
        "networking.k8s.io",
        "v1",
        "ingressclasses",
        "ingressclass",
        "IngressClass",
        false,
        NONE,
        NONE,
        NONE,
        networking::v1::IngressClass
    ),
    resource!(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "poddisruptionbudget",
        "PodDisruptionBudget",
        true,
        &["pdb"],
        NONE,
        &["status"],
        policy::v1::PodDisruptionBudget
    ),
    resource!(
        "storage.k8s.io",
        "v1",
        "storageclasses",
        "storageclass",
        "StorageClass",
        false,
        &["sc"],
        NONE,
        NONE,
        storage::v1::StorageClass
    ),
    resource!(
        "admissionregistration.k8s.io",
        "v1",
        "mutatingwebhookconfigurations",
        "mutatingwebhookconfiguration",
        "MutatingWebhookConfiguration",
        false,
        NONE,
        API_EXTENSIONS,
        NONE,
        admissionregistration::v1::MutatingWebhookConfiguration
    ),
    resource!(
        "admissionregistration.k8s.io",
        "v1",
        "validatingwebhookconfigurations",
        "validatingwebhookconfiguration",
        "ValidatingWebhookConfiguration",
        false,
        NONE,
        API_EXTENSIONS,
        NONE,
        admissionregistration::v1::ValidatingWebhookConfiguration
    ),
    resource!(
        "events.k8s.io",
        "v1",
        "events",
        "event",
        "Event",
        true,
        &["ev"],
        NONE,
        NONE;
        events::v1::Event;
        EVENTS
    ),
    resource!(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "clusterrolebinding",
        "ClusterRoleBinding",
        false,
        NONE,
        NONE,
        NONE,
        rbac::v1::ClusterRoleBinding
    ),
    resource!(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterroles",
        "clusterrole",
        "ClusterRole",
        false,
        NONE,
        NONE,
        NONE,
        rbac::v1::ClusterRole
    ),
    resource!(
        "rbac.authorization.k8s.io",
        "v1",
        "rolebindings",
        "rolebinding",
        "RoleBinding",
        true,
        NONE,
        NONE,
        NONE,
        rbac::v1::RoleBinding
    ),
    resource!(
        "rbac.authorization.k8s.io",
        "v1",
        "roles",
        "role",
        "Role",
        true,
        NONE,
        NONE,
        NONE,
        rbac::v1::Role
    ),
    resource!(
        "authentication.k8s.io",
        "v1",
        "selfsubjectreviews",
        "selfsubjectreview",
        "SelfSubjectReview",
        false,
        NONE,
        NONE,
        NONE,
        authentication::v1::SelfSubjectReview
    ),
    resource!(
        "authentication.k8s.io",
        "v1",
        "tokenreviews",
        "tokenreview",
        "TokenReview",
        false,
        NONE,
        NONE,
        NONE,
        authentication::v1::TokenReview
    ),
    resource!(
        "authorization.k8s.io",
        "v1",
        "localsubjectaccessreviews",
        "localsubjectaccessreview",
        "LocalSubjectAccessReview",
        true,
        NONE,
        NONE,
        NONE,
        authorization::v1::LocalSubjectAccessReview
    ),
    resource!(
        "authorization.k8s.io",
        "v1",
        "selfsubjectaccessreviews",
        "selfsubjectaccessreview",
        "SelfSubjectAccessReview",
        false,
        NONE,
        NONE,
        NONE,
        authorization::v1::SelfSubjectAccessReview
    ),
    resource!(
        "authorization.k8s.io",
        "v1",
        "selfsubjectrulesreviews",
        "selfsubjectrulesreview",
        "SelfSubjectRulesReview",
        false,
        NONE,
        NONE,
        NONE,
        authorization::v1::SelfSubjectRulesReview
    ),
    resource!(
        "authorization.k8s.io",
        "v1",
        "subjectaccessreviews",
        "subjectaccessreview",
        "SubjectAccessReview",
        false,
        NONE,
        NONE,
        NONE,
        authorization::v1::SubjectAccessReview
    ),
    resource!(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "customresourcedefinition",
        "CustomResourceDefinition",
        false,
        &["crd", "crds"],
        &["api-extensions"],
        &["status"],
        apiextensions::v1::CustomResourceDefinition
    ),
];

/// The API groups other than the core group, with their one version, in discovery order.
pub(crate) fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        match groups.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) if !versions.contains(&r.version) => versions.push(r.version),
            Some(_) => {}
            None => groups.push((r.group, vec![r.version])),
        }
    }
    groups
}

/// The resource served at `group`/`version` under `plural`.
pub(crate) fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The verbs of a subresource (or of the resource itself, for `""`), as discovery lists them.
pub(crate) fn verbs(subresource: &str) -> &'static [&'static str] {
    match subresource {
        "" => &[
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ],
        "status" | "scale" | "approval" => &["get", "patch", "update"],
        "binding" | "eviction" | "token" => &["create"],
        "log" => &["get"],
        "exec" | "portforward" | "attach" => &["create", "get"],
        "ephemeralcontainers" => &["get", "patch", "update"],
        "proxy" => &["create", "delete", "get", "patch", "update"],
        "finalize" => &["update"],
        _ => &[],
    }
}

/// The kind a subresource's requests and answers carry.
pub(crate) fn subresource_kind(
    resource: &Resource,
    subresource: &str,
) -> (&'static str, &'static str, &'static str) {
    match subresource {
        "scale" => ("autoscaling", "v1", "Scale"),
        "binding" => ("", "v1", "Binding"),
        "token" => ("authentication.k8s.io", "v1", "TokenRequest"),
        "eviction" => ("policy", "v1", "Eviction"),
        "log" => ("", "v1", "Pod"),
        "exec" => ("", "v1", "PodExecOptions"),
        "portforward" => ("", "v1", "PodPortForwardOptions"),
        "attach" => ("", "v1", "PodAttachOptions"),
        "ephemeralcontainers" => ("", "v1", "Pod"),
        "proxy" => ("", "v1", "NodeProxyOptions"),
        _ => (resource.group, resource.version, resource.kind),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_resource_round_trips_its_type() {
        for r in RESOURCES {
            let object = serde_json::json!({
                "apiVersion": r.api_version(),
                "kind": r.kind,
                "metadata": {"name": "x", "ownerReferences": [{"apiVersion": "v1", "kind": "K", "name": "o", "uid": "u", "controller": true}]},
                "unknownField": 1,
            });
            let normalized = (r.normalize)(object).unwrap();
            assert_eq!(normalized["kind"], r.kind, "{}", r.plural);
            assert_eq!(
                normalized["metadata"]["ownerReferences"][0]["controller"],
                true
            );
            assert!(normalized.get("unknownField").is_none());
        }
    }

    #[test]
    fn keys_look_like_the_real_api_servers() {
        let pods = find("", "v1", "pods").unwrap();
        assert_eq!(
            pods.key(Some("default"), "web"),
            "/registry/pods/default/web"
        );
        let nodes = find("", "v1", "nodes").unwrap();
        assert_eq!(nodes.key(None, "node-1"), "/registry/nodes/node-1");
        let events = find("events.k8s.io", "v1", "events").unwrap();
        assert_eq!(
            events.key(Some("ns"), "e"),
            "/registry/events/ns/e",
            "stored with core Events"
        );
        let served = events.served(serde_json::json!({"apiVersion": "v1", "kind": "Event", "message": "m", "involvedObject": {"name": "p"}}));
        assert_eq!(
            served,
            serde_json::json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "note": "m", "regarding": {"name": "p"}})
        );
        assert_eq!(events.stored(served)["message"], "m");
        let deploy = find("apps", "v1", "deployments").unwrap();
        assert_eq!(deploy.key(Some("ns"), "d"), "/registry/deployments/ns/d");
    }
}
