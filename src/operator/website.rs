//! The `Website` custom resource (`samples.orrery.dev/v1`), as its Rust type: the spec a user
//! writes, the status the operator writes, and the CustomResourceDefinition both come from
//! (`Website::crd()`, derived by kube's `CustomResource` with a `schemars` schema).
//!
//! `manifests/website-crd.yaml` is that definition, checked in as the source of truth a learner
//! reads and applies; a unit test here says it is exactly what [`crd`] generates, so the YAML
//! and the type cannot drift apart (`orrery operator website crd` prints the generated one).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

// Each doc comment below is also the field's description in the definition's schema (what
// `kubectl explain website.spec` shows), so each is one line.

/// What a website serves and how: its page, its replicas and its Service's type.
// Several `printcolumn(type_ = "integer", ...)` read to clippy as one attribute repeated.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "samples.orrery.dev",
    version = "v1",
    kind = "Website",
    namespaced,
    shortname = "web",
    category = "all",
    doc = "A website: replicas of the built-in orrery/hello server answering with a page, behind a Service. The website operator (orrery operator website) makes and keeps its ConfigMap, Deployment and Service.",
    status = "WebsiteStatus",
    derive = "PartialEq",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".spec.replicas",
        description = "How many replicas should serve the page"
    ),
    printcolumn(
        name = "Ready",
        type_ = "integer",
        json_path = ".status.readyReplicas",
        description = "How many replicas are ready"
    ),
    printcolumn(
        name = "Exposure",
        type_ = "string",
        json_path = ".spec.exposure",
        description = "The Service's type",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct WebsiteSpec {
    /// The text each replica answers with, before its greeting (in the ConfigMap <name>-page).
    #[schemars(length(min = 1))]
    pub page: String,
    /// How many pods serve the page (the scale subresource's replicas), 0 to 10.
    #[serde(default = "default_replicas")]
    #[schemars(extend("minimum" = 0, "maximum" = 10))]
    pub replicas: i32,
    /// The Service's type: ClusterIP (inside the cluster) or NodePort (on every node too).
    #[serde(default)]
    pub exposure: Exposure,
}

fn default_replicas() -> i32 {
    1
}

/// The Service's type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Exposure {
    /// Reachable inside the cluster, at the Service's ClusterIP and DNS name.
    #[default]
    ClusterIP,
    /// Also on a port of every node's address.
    NodePort,
}

impl Exposure {
    /// The Service `type` it asks for.
    pub fn service_type(self) -> &'static str {
        match self {
            Exposure::ClusterIP => "ClusterIP",
            Exposure::NodePort => "NodePort",
        }
    }
}

/// What the operator last saw, written through the status subresource.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebsiteStatus {
    /// The metadata.generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// How many pods the Deployment has (the scale subresource's status replicas).
    #[serde(default)]
    pub replicas: i32,
    /// How many of them are ready.
    #[serde(default)]
    pub ready_replicas: i32,
    /// The pods' label selector (the scale subresource's, which an autoscaler reads).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub selector: String,
    /// Ready is True once every replica of the current page is ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}

/// The schema of a list of `metav1.Condition`s, as Kubernetes' own types publish it: a list
/// keyed by `type` (so server-side apply merges conditions one by one), each with its five
/// required fields. `k8s-openapi`'s `Condition` is the Rust type; its `schemars` feature would
/// give every type of the API a schema for this one.
fn conditions_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
        "items": {
            "type": "object",
            "description": "One aspect of the website's state (metav1.Condition).",
            "required": ["type", "status", "lastTransitionTime", "reason", "message"],
            "properties": {
                "type": {"type": "string", "description": "The condition's type, such as Ready."},
                "status": {"type": "string", "enum": ["True", "False", "Unknown"], "description": "True, False or Unknown."},
                "observedGeneration": {"type": "integer", "format": "int64", "description": "The metadata.generation the condition was set for."},
                "lastTransitionTime": {"type": "string", "format": "date-time", "description": "When the status last changed."},
                "reason": {"type": "string", "description": "Why, in CamelCase."},
                "message": {"type": "string", "description": "Why, in words."},
            },
        },
    })
}

/// The CustomResourceDefinition of `Website`, as kube derives it.
pub fn crd() -> CustomResourceDefinition {
    Website::crd()
}

/// [`crd`] as YAML, what `orrery operator website crd` prints.
pub fn crd_yaml() -> String {
    serde_yaml::to_string(&crd()).expect("a CustomResourceDefinition serializes to YAML")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(name: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("manifests")
            .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// `value` with every whole float as an integer: the schema's bounds are Go float64s
    /// (`maximum: 10.0` in k8s-openapi's type), which the YAML writes as the API server
    /// answers them, `10`.
    fn whole_numbers(value: serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match value {
            Value::Number(n) => match n.as_f64() {
                Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 1e15 => {
                    Value::from(f as i64)
                }
                _ => Value::Number(n),
            },
            Value::Array(items) => Value::Array(items.into_iter().map(whole_numbers).collect()),
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(k, v)| (k, whole_numbers(v)))
                    .collect(),
            ),
            other => other,
        }
    }

    #[test]
    fn the_manifest_is_the_generated_definition() {
        let checked_in: serde_json::Value =
            serde_yaml::from_str(&manifest("website-crd.yaml")).unwrap();
        let generated = whole_numbers(serde_json::to_value(crd()).unwrap());
        assert!(
            checked_in == generated,
            "manifests/website-crd.yaml differs from the Website type's definition; \
             regenerate it with `orrery operator website crd` (keeping its comment header):\n{}",
            crd_yaml()
        );
    }

    #[test]
    fn the_definition_has_what_the_sample_teaches() {
        let crd = serde_json::to_value(crd()).unwrap();
        let spec = &crd["spec"];
        assert_eq!(crd["metadata"]["name"], "websites.samples.orrery.dev");
        assert_eq!(spec["scope"], "Namespaced");
        assert_eq!(spec["names"]["shortNames"], serde_json::json!(["web"]));
        let version = &spec["versions"][0];
        assert_eq!(version["subresources"]["status"], serde_json::json!({}));
        assert_eq!(
            version["subresources"]["scale"],
            serde_json::json!({
                "specReplicasPath": ".spec.replicas",
                "statusReplicasPath": ".status.replicas",
                "labelSelectorPath": ".status.selector",
            })
        );
        let schema = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
        assert_eq!(schema["required"], serde_json::json!(["page"]));
        assert_eq!(schema["properties"]["replicas"]["default"], 1);
        assert_eq!(schema["properties"]["exposure"]["default"], "ClusterIP");
        assert_eq!(
            schema["properties"]["exposure"]["enum"],
            serde_json::json!(["ClusterIP", "NodePort"])
        );
        let columns: Vec<&str> = version["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(columns, ["Replicas", "Ready", "Exposure", "Age"]);
    }

    #[test]
    fn the_sample_website_reads_as_the_type_with_defaults() {
        let website: Website = serde_yaml::from_str(&manifest("website.yaml")).unwrap();
        assert_eq!(website.metadata.name.as_deref(), Some("hello-site"));
        assert_eq!(website.spec.replicas, 1);
        assert_eq!(website.spec.exposure, Exposure::ClusterIP);
        assert!(!website.spec.page.is_empty());
    }
}
