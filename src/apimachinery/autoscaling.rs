//! HorizontalPodAutoscaler objects between `autoscaling/v1` and `autoscaling/v2`, as JSON, the
//! way the API server's `pkg/apis/autoscaling/v1/conversion.go` converts them through the
//! internal version: v1's `targetCPUUtilizationPercentage` is v2's `cpu` Resource metric with a
//! Utilization target, v1's `currentCPUUtilizationPercentage` its current utilization, and what
//! v1 cannot say (the other metrics and their statuses, the conditions, the behavior) rides in
//! v1's annotations (`autoscaling.alpha.kubernetes.io/metrics`, `.../current-metrics`,
//! `.../conditions`, `.../behavior`), in the shapes upstream writes them: the metrics as v1's
//! (v2beta1-shaped) `MetricSpec`/`MetricStatus`, the behavior as the internal type's field names.
//! Also the API's defaulting of both versions (`SetDefaults_HorizontalPodAutoscaler`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use k8s_openapi::api::autoscaling::v2::{
    HPAScalingPolicy, HPAScalingRules, HorizontalPodAutoscalerBehavior,
};

/// The annotation that carries v2's metrics other than a CPU utilization target in v1.
pub const METRIC_SPECS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/metrics";
/// The annotation that carries v2's `status.currentMetrics` in v1.
pub const METRIC_STATUSES_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
/// The annotation that carries v2's `status.conditions` in v1.
pub const CONDITIONS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/conditions";
/// The annotation that carries v2's `spec.behavior` in v1.
pub const BEHAVIOR_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/behavior";
/// The CPU utilization target when none is given (`autoscaling.DefaultCPUUtilization`).
pub const DEFAULT_CPU_UTILIZATION: i32 = 80;

const ROUND_TRIP_ANNOTATIONS: [&str; 4] = [
    METRIC_SPECS_ANNOTATION,
    BEHAVIOR_ANNOTATION,
    METRIC_STATUSES_ANNOTATION,
    CONDITIONS_ANNOTATION,
];

/// A quantity Go writes even when unset (a non-pointer `resource.Quantity`): `"0"`.
fn zero() -> Value {
    json!("0")
}

fn is_null(v: &Value) -> bool {
    v.is_null()
}

// autoscaling/v1's MetricSpec and MetricStatus, as the annotations carry them.

#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct V1MetricSpec {
    #[serde(rename = "type", default)]
    type_: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    object: Option<V1ObjectSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pods: Option<V1PodsSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resource: Option<V1ResourceSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    container_resource: Option<V1ResourceSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    external: Option<V1ExternalSource>,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct V1ObjectSource {
    #[serde(default)]
    target: Value,
    #[serde(default)]
    metric_name: String,
    #[serde(default = "zero")]
    target_value: Value,
    #[serde(default, skip_serializing_if = "is_null")]
    selector: Value,
    #[serde(default, skip_serializing_if = "is_null")]
    average_value: Value,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct V1PodsSource {
    #[serde(default)]
    metric_name: String,
    #[serde(default = "zero")]
    target_average_value: Value,
    #[serde(default, skip_serializing_if = "is_null")]
    selector: Value,
}

/// v1's `ResourceMetricSource`, and `ContainerResourceMetricSource` with `container`.
#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct V1ResourceSource {
    #[serde(default)]
    name: String,
    #[serde(default, skip_serializing_if = "is_null")]
    target_average_utilization: Value,
    #[serde(default, skip_serializing_if = "is_null")]
    target_average_value: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    container: Option<String>,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct V1ExternalSource {
    #[serde(default)]
    metric_name: String,
    #[serde(default, skip_serializing_if = "is_null")]
    metric_selector: Value,
    #[serde(default, skip_serializing_if = "is_null")]
    target_value: Value,
    #[serde(default, skip_serializing_if = "is_null")]
    target_average_value: Value,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct V1MetricStatus {
    #[serde(rename = "type", default)]
    type_: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    object: Option<V1ObjectStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pods: Option<V1PodsStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resource: Option<V1ResourceStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    container_resource: Option<V1ResourceStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    external: Option<V1ExternalStatus>,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct V1ObjectStatus {
    #[serde(default)]
    target: Value,
    #[serde(default)]
    metric_name: String,
    #[serde(default = "zero")]
    current_value: Value,
    #[serde(default, skip_serializing_if = "is_null")]
    selector: Value,
    #[serde(default, skip_serializing_if = "is_null")]
    average_value: Value,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct V1PodsStatus {
    #[serde(default)]
    metric_name: String,
    #[serde(default = "zero")]
    current_average_value: Value,
    #[serde(default, skip_serializing_if = "is_null")]
    selector: Value,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct V1ResourceStatus {
    #[serde(default)]
    name: String,
    #[serde(default, skip_serializing_if = "is_null")]
    current_average_utilization: Value,
    #[serde(default = "zero")]
    current_average_value: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    container: Option<String>,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct V1ExternalStatus {
    #[serde(default)]
    metric_name: String,
    #[serde(default, skip_serializing_if = "is_null")]
    metric_selector: Value,
    #[serde(default = "zero")]
    current_value: Value,
    #[serde(default, skip_serializing_if = "is_null")]
    current_average_value: Value,
}

fn get<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    let mut v = v;
    for key in path {
        v = v.get(key).unwrap_or(&Value::Null);
    }
    v
}

fn or_zero(v: &Value) -> Value {
    if v.is_null() { zero() } else { v.clone() }
}

/// Inserts `value` under `key` unless it is null.
fn put(map: &mut Map<String, Value>, key: &str, value: Value) {
    if !value.is_null() {
        map.insert(key.to_owned(), value);
    }
}

fn cross_version_reference(v: &Value) -> Value {
    let mut out = Map::new();
    put(&mut out, "kind", get(v, &["kind"]).clone());
    put(&mut out, "name", get(v, &["name"]).clone());
    put(&mut out, "apiVersion", get(v, &["apiVersion"]).clone());
    Value::Object(out)
}

/// A v2 `MetricSpec` as v1's annotation carries it.
fn metric_spec_to_v1(m: &Value) -> V1MetricSpec {
    let mut out = V1MetricSpec {
        type_: get(m, &["type"]).as_str().unwrap_or_default().to_owned(),
        ..Default::default()
    };
    if let Some(o) = m.get("object").filter(|o| !o.is_null()) {
        out.object = Some(V1ObjectSource {
            target: cross_version_reference(get(o, &["describedObject"])),
            metric_name: get(o, &["metric", "name"])
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            target_value: or_zero(get(o, &["target", "value"])),
            selector: get(o, &["metric", "selector"]).clone(),
            average_value: get(o, &["target", "averageValue"]).clone(),
        });
    }
    if let Some(p) = m.get("pods").filter(|p| !p.is_null()) {
        out.pods = Some(V1PodsSource {
            metric_name: get(p, &["metric", "name"])
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            target_average_value: or_zero(get(p, &["target", "averageValue"])),
            selector: get(p, &["metric", "selector"]).clone(),
        });
    }
    let resource = |r: &Value, container: bool| V1ResourceSource {
        name: get(r, &["name"]).as_str().unwrap_or_default().to_owned(),
        target_average_utilization: get(r, &["target", "averageUtilization"]).clone(),
        target_average_value: get(r, &["target", "averageValue"]).clone(),
        container: container.then(|| {
            get(r, &["container"])
                .as_str()
                .unwrap_or_default()
                .to_owned()
        }),
    };
    if let Some(r) = m.get("resource").filter(|r| !r.is_null()) {
        out.resource = Some(resource(r, false));
    }
    if let Some(r) = m.get("containerResource").filter(|r| !r.is_null()) {
        out.container_resource = Some(resource(r, true));
    }
    if let Some(e) = m.get("external").filter(|e| !e.is_null()) {
        out.external = Some(V1ExternalSource {
            metric_name: get(e, &["metric", "name"])
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            metric_selector: get(e, &["metric", "selector"]).clone(),
            target_value: get(e, &["target", "value"]).clone(),
            target_average_value: get(e, &["target", "averageValue"]).clone(),
        });
    }
    out
}

fn metric_identifier(name: &str, selector: &Value) -> Value {
    let mut out = Map::new();
    out.insert("name".to_owned(), json!(name));
    put(&mut out, "selector", selector.clone());
    Value::Object(out)
}

fn metric_target(type_: &str, value: &Value, average_value: &Value, utilization: &Value) -> Value {
    let mut out = Map::new();
    out.insert("type".to_owned(), json!(type_));
    put(&mut out, "value", value.clone());
    put(&mut out, "averageValue", average_value.clone());
    put(&mut out, "averageUtilization", utilization.clone());
    Value::Object(out)
}

/// v1's annotated `MetricSpec` as v2's.
fn metric_spec_from_v1(m: V1MetricSpec) -> Value {
    let mut out = Map::new();
    out.insert("type".to_owned(), json!(m.type_));
    if let Some(o) = m.object {
        let type_ = if o.average_value.is_null() {
            "Value"
        } else {
            "AverageValue"
        };
        out.insert(
            "object".to_owned(),
            json!({
                "describedObject": cross_version_reference(&o.target),
                "metric": metric_identifier(&o.metric_name, &o.selector),
                "target": metric_target(type_, &o.target_value, &o.average_value, &Value::Null),
            }),
        );
    }
    if let Some(p) = m.pods {
        out.insert(
            "pods".to_owned(),
            json!({
                "metric": metric_identifier(&p.metric_name, &p.selector),
                "target": metric_target("AverageValue", &Value::Null, &p.target_average_value, &Value::Null),
            }),
        );
    }
    let resource = |r: V1ResourceSource| {
        let type_ = if r.target_average_utilization.is_null() {
            "AverageValue"
        } else {
            "Utilization"
        };
        let mut out = Map::new();
        out.insert("name".to_owned(), json!(r.name));
        if let Some(container) = r.container {
            out.insert("container".to_owned(), json!(container));
        }
        out.insert(
            "target".to_owned(),
            metric_target(
                type_,
                &Value::Null,
                &r.target_average_value,
                &r.target_average_utilization,
            ),
        );
        Value::Object(out)
    };
    if let Some(r) = m.resource {
        out.insert("resource".to_owned(), resource(r));
    }
    if let Some(r) = m.container_resource {
        out.insert("containerResource".to_owned(), resource(r));
    }
    if let Some(e) = m.external {
        let type_ = if e.target_value.is_null() {
            "AverageValue"
        } else {
            "Value"
        };
        out.insert(
            "external".to_owned(),
            json!({
                "metric": metric_identifier(&e.metric_name, &e.metric_selector),
                "target": metric_target(type_, &e.target_value, &e.target_average_value, &Value::Null),
            }),
        );
    }
    Value::Object(out)
}

/// A v2 `MetricStatus` as v1's annotation carries it.
fn metric_status_to_v1(m: &Value) -> V1MetricStatus {
    let mut out = V1MetricStatus {
        type_: get(m, &["type"]).as_str().unwrap_or_default().to_owned(),
        ..Default::default()
    };
    if let Some(o) = m.get("object").filter(|o| !o.is_null()) {
        out.object = Some(V1ObjectStatus {
            target: cross_version_reference(get(o, &["describedObject"])),
            metric_name: get(o, &["metric", "name"])
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            current_value: or_zero(get(o, &["current", "value"])),
            selector: get(o, &["metric", "selector"]).clone(),
            average_value: get(o, &["current", "averageValue"]).clone(),
        });
    }
    if let Some(p) = m.get("pods").filter(|p| !p.is_null()) {
        out.pods = Some(V1PodsStatus {
            metric_name: get(p, &["metric", "name"])
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            current_average_value: or_zero(get(p, &["current", "averageValue"])),
            selector: get(p, &["metric", "selector"]).clone(),
        });
    }
    let resource = |r: &Value, container: bool| V1ResourceStatus {
        name: get(r, &["name"]).as_str().unwrap_or_default().to_owned(),
        current_average_utilization: get(r, &["current", "averageUtilization"]).clone(),
        current_average_value: or_zero(get(r, &["current", "averageValue"])),
        container: container.then(|| {
            get(r, &["container"])
                .as_str()
                .unwrap_or_default()
                .to_owned()
        }),
    };
    if let Some(r) = m.get("resource").filter(|r| !r.is_null()) {
        out.resource = Some(resource(r, false));
    }
    if let Some(r) = m.get("containerResource").filter(|r| !r.is_null()) {
        out.container_resource = Some(resource(r, true));
    }
    if let Some(e) = m.get("external").filter(|e| !e.is_null()) {
        out.external = Some(V1ExternalStatus {
            metric_name: get(e, &["metric", "name"])
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            metric_selector: get(e, &["metric", "selector"]).clone(),
            current_value: or_zero(get(e, &["current", "value"])),
            current_average_value: get(e, &["current", "averageValue"]).clone(),
        });
    }
    out
}

fn metric_value_status(value: &Value, average_value: &Value, utilization: &Value) -> Value {
    let mut out = Map::new();
    put(&mut out, "value", value.clone());
    put(&mut out, "averageValue", average_value.clone());
    put(&mut out, "averageUtilization", utilization.clone());
    Value::Object(out)
}

/// v1's annotated `MetricStatus` as v2's.
fn metric_status_from_v1(m: V1MetricStatus) -> Value {
    let mut out = Map::new();
    out.insert("type".to_owned(), json!(m.type_));
    if let Some(o) = m.object {
        out.insert(
            "object".to_owned(),
            json!({
                "describedObject": cross_version_reference(&o.target),
                "metric": metric_identifier(&o.metric_name, &o.selector),
                "current": metric_value_status(&o.current_value, &o.average_value, &Value::Null),
            }),
        );
    }
    if let Some(p) = m.pods {
        out.insert(
            "pods".to_owned(),
            json!({
                "metric": metric_identifier(&p.metric_name, &p.selector),
                "current": metric_value_status(&Value::Null, &p.current_average_value, &Value::Null),
            }),
        );
    }
    let resource = |r: V1ResourceStatus| {
        let mut out = Map::new();
        out.insert("name".to_owned(), json!(r.name));
        if let Some(container) = r.container {
            out.insert("container".to_owned(), json!(container));
        }
        out.insert(
            "current".to_owned(),
            metric_value_status(
                &Value::Null,
                &r.current_average_value,
                &r.current_average_utilization,
            ),
        );
        Value::Object(out)
    };
    if let Some(r) = m.resource {
        out.insert("resource".to_owned(), resource(r));
    }
    if let Some(r) = m.container_resource {
        out.insert("containerResource".to_owned(), resource(r));
    }
    if let Some(e) = m.external {
        out.insert(
            "external".to_owned(),
            json!({
                "metric": metric_identifier(&e.metric_name, &e.metric_selector),
                "current": metric_value_status(&e.current_value, &e.current_average_value, &Value::Null),
            }),
        );
    }
    Value::Object(out)
}

/// The behavior as upstream writes it to the annotation: the internal type, which has no JSON
/// tags, so Go's field names in the type's order, with every unset pointer as `null`.
fn behavior_to_internal(b: &Value) -> String {
    fn rules(r: &Value) -> String {
        if r.is_null() {
            return "null".to_owned();
        }
        let policies = match r.get("policies") {
            Some(Value::Array(list)) => {
                let list: Vec<String> = list
                    .iter()
                    .map(|p| {
                        ordered(&[
                            (
                                "Type",
                                json!(get(p, &["type"]).as_str().unwrap_or_default()),
                            ),
                            ("Value", json!(get(p, &["value"]).as_i64().unwrap_or(0))),
                            (
                                "PeriodSeconds",
                                json!(get(p, &["periodSeconds"]).as_i64().unwrap_or(0)),
                            ),
                        ])
                    })
                    .collect();
                format!("[{}]", list.join(","))
            }
            _ => "null".to_owned(),
        };
        format!(
            "{{\"StabilizationWindowSeconds\":{},\"SelectPolicy\":{},\"Policies\":{},\"Tolerance\":{}}}",
            get(r, &["stabilizationWindowSeconds"]),
            get(r, &["selectPolicy"]),
            policies,
            get(r, &["tolerance"]),
        )
    }
    format!(
        "{{\"ScaleUp\":{},\"ScaleDown\":{}}}",
        rules(get(b, &["scaleUp"])),
        rules(get(b, &["scaleDown"])),
    )
}

/// A JSON object with its fields in the given order.
fn ordered(fields: &[(&str, Value)]) -> String {
    let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    format!("{{{}}}", body.join(","))
}

/// Looks `key` up as Go's `encoding/json` does: an exact match, else a case-insensitive one.
fn field<'a>(object: &'a Value, key: &str) -> &'a Value {
    let Some(map) = object.as_object() else {
        return &Value::Null;
    };
    map.get(key)
        .or_else(|| {
            map.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v)
        })
        .unwrap_or(&Value::Null)
}

/// The behavior annotation read back as v2's `spec.behavior`; `None` when it does not parse or
/// sets neither direction, as upstream ignores it then.
fn behavior_from_internal(raw: &str) -> Option<Value> {
    let parsed: Value = serde_json::from_str(raw).ok()?;
    if !parsed.is_object() {
        return None;
    }
    fn rules(r: &Value) -> Option<Value> {
        if !r.is_object() {
            return None;
        }
        let mut out = Map::new();
        put(
            &mut out,
            "stabilizationWindowSeconds",
            field(r, "StabilizationWindowSeconds").clone(),
        );
        put(&mut out, "selectPolicy", field(r, "SelectPolicy").clone());
        if let Value::Array(list) = field(r, "Policies") {
            let policies = list
                .iter()
                .map(|p| {
                    json!({
                        "type": field(p, "Type").as_str().unwrap_or_default(),
                        "value": field(p, "Value").as_i64().unwrap_or(0),
                        "periodSeconds": field(p, "PeriodSeconds").as_i64().unwrap_or(0),
                    })
                })
                .collect();
            out.insert("policies".to_owned(), Value::Array(policies));
        }
        put(&mut out, "tolerance", field(r, "Tolerance").clone());
        Some(Value::Object(out))
    }
    let up = rules(field(&parsed, "ScaleUp"));
    let down = rules(field(&parsed, "ScaleDown"));
    if up.is_none() && down.is_none() {
        return None;
    }
    let mut out = Map::new();
    if let Some(up) = up {
        out.insert("scaleUp".to_owned(), up);
    }
    if let Some(down) = down {
        out.insert("scaleDown".to_owned(), down);
    }
    Some(Value::Object(out))
}

fn is_cpu_utilization_target(m: &Value) -> bool {
    get(m, &["type"]) == "Resource"
        && get(m, &["resource", "name"]) == "cpu"
        && !get(m, &["resource", "target", "averageUtilization"]).is_null()
}

/// The metadata with the round-trip annotations removed, and those annotations' values.
fn split_annotations(metadata: &Value) -> (Value, Map<String, Value>) {
    let mut metadata = metadata.clone();
    let mut taken = Map::new();
    if let Some(annotations) = metadata
        .get_mut("annotations")
        .and_then(Value::as_object_mut)
    {
        for key in ROUND_TRIP_ANNOTATIONS {
            if let Some(value) = annotations.remove(key) {
                taken.insert(key.to_owned(), value);
            }
        }
    }
    // Go omits an empty map.
    let empty = get(&metadata, &["annotations"])
        .as_object()
        .is_some_and(Map::is_empty);
    if empty && let Some(meta) = metadata.as_object_mut() {
        meta.remove("annotations");
    }
    (metadata, taken)
}

fn annotate(metadata: &mut Value, key: &str, value: String) {
    if !metadata.is_object() {
        *metadata = json!({});
    }
    let Some(meta) = metadata.as_object_mut() else {
        return;
    };
    let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
    if !annotations.is_object() {
        *annotations = json!({});
    }
    if let Some(map) = annotations.as_object_mut() {
        map.insert(key.to_owned(), Value::String(value));
    }
}

/// An `autoscaling/v2` HorizontalPodAutoscaler as `autoscaling/v1` shows it.
pub fn v2_to_v1(object: Value) -> Value {
    let (mut metadata, _) = split_annotations(get(&object, &["metadata"]));
    let spec = get(&object, &["spec"]);
    let status = get(&object, &["status"]);
    let metrics: &[Value] = get(spec, &["metrics"])
        .as_array()
        .map_or(&[], Vec::as_slice);

    let mut v1_spec = Map::new();
    v1_spec.insert(
        "scaleTargetRef".to_owned(),
        cross_version_reference(get(spec, &["scaleTargetRef"])),
    );
    put(
        &mut v1_spec,
        "minReplicas",
        get(spec, &["minReplicas"]).clone(),
    );
    v1_spec.insert(
        "maxReplicas".to_owned(),
        json!(get(spec, &["maxReplicas"]).as_i64().unwrap_or(0)),
    );
    // The first cpu Resource metric gives the target, if it targets a utilization.
    if let Some(cpu) = metrics
        .iter()
        .find(|m| get(m, &["type"]) == "Resource" && get(m, &["resource", "name"]) == "cpu")
    {
        put(
            &mut v1_spec,
            "targetCPUUtilizationPercentage",
            get(cpu, &["resource", "target", "averageUtilization"]).clone(),
        );
    }

    let current_metrics: &[Value] = get(status, &["currentMetrics"])
        .as_array()
        .map_or(&[], Vec::as_slice);
    let mut v1_status = Map::new();
    put(
        &mut v1_status,
        "observedGeneration",
        get(status, &["observedGeneration"]).clone(),
    );
    put(
        &mut v1_status,
        "lastScaleTime",
        get(status, &["lastScaleTime"]).clone(),
    );
    v1_status.insert(
        "currentReplicas".to_owned(),
        json!(get(status, &["currentReplicas"]).as_i64().unwrap_or(0)),
    );
    v1_status.insert(
        "desiredReplicas".to_owned(),
        json!(get(status, &["desiredReplicas"]).as_i64().unwrap_or(0)),
    );
    // The last cpu Resource status with a utilization gives the current utilization.
    for m in current_metrics {
        if get(m, &["type"]) == "Resource" && get(m, &["resource", "name"]) == "cpu" {
            put(
                &mut v1_status,
                "currentCPUUtilizationPercentage",
                get(m, &["resource", "current", "averageUtilization"]).clone(),
            );
        }
    }

    let others: Vec<V1MetricSpec> = metrics
        .iter()
        .filter(|m| !is_cpu_utilization_target(m))
        .map(metric_spec_to_v1)
        .collect();
    if !others.is_empty()
        && let Ok(encoded) = serde_json::to_string(&others)
    {
        annotate(&mut metadata, METRIC_SPECS_ANNOTATION, encoded);
    }
    if !current_metrics.is_empty() {
        let statuses: Vec<V1MetricStatus> =
            current_metrics.iter().map(metric_status_to_v1).collect();
        if let Ok(encoded) = serde_json::to_string(&statuses) {
            annotate(&mut metadata, METRIC_STATUSES_ANNOTATION, encoded);
        }
    }
    let behavior = get(spec, &["behavior"]);
    if !behavior.is_null() {
        annotate(
            &mut metadata,
            BEHAVIOR_ANNOTATION,
            behavior_to_internal(behavior),
        );
    }
    if let Some(conditions) = get(status, &["conditions"])
        .as_array()
        .filter(|c| !c.is_empty())
    {
        annotate(
            &mut metadata,
            CONDITIONS_ANNOTATION,
            Value::Array(conditions.clone()).to_string(),
        );
    }

    let mut out = Map::new();
    out.insert("apiVersion".to_owned(), json!("autoscaling/v1"));
    out.insert("kind".to_owned(), json!("HorizontalPodAutoscaler"));
    if !metadata.is_null() {
        out.insert("metadata".to_owned(), metadata);
    }
    out.insert("spec".to_owned(), Value::Object(v1_spec));
    out.insert("status".to_owned(), Value::Object(v1_status));
    Value::Object(out)
}

/// An `autoscaling/v1` HorizontalPodAutoscaler as `autoscaling/v2` shows it: the annotated
/// fields restored (an annotation that does not parse is dropped), the CPU target after the
/// annotated metrics, and a CPU utilization target of [`DEFAULT_CPU_UTILIZATION`] when there is
/// no metric at all.
pub fn v1_to_v2(object: Value) -> Value {
    let (metadata, taken) = split_annotations(get(&object, &["metadata"]));
    let annotation = |key: &str| taken.get(key).and_then(Value::as_str);
    let spec = get(&object, &["spec"]);
    let status = get(&object, &["status"]);

    let mut metrics: Vec<Value> = annotation(METRIC_SPECS_ANNOTATION)
        .and_then(|raw| serde_json::from_str::<Vec<V1MetricSpec>>(raw).ok())
        .map(|list| list.into_iter().map(metric_spec_from_v1).collect())
        .unwrap_or_default();
    let target_cpu = get(spec, &["targetCPUUtilizationPercentage"]);
    if !target_cpu.is_null() {
        metrics.push(cpu_utilization_metric(target_cpu.clone()));
    }
    if metrics.is_empty() {
        metrics.push(cpu_utilization_metric(json!(DEFAULT_CPU_UTILIZATION)));
    }

    let mut v2_spec = Map::new();
    v2_spec.insert(
        "scaleTargetRef".to_owned(),
        cross_version_reference(get(spec, &["scaleTargetRef"])),
    );
    put(
        &mut v2_spec,
        "minReplicas",
        get(spec, &["minReplicas"]).clone(),
    );
    v2_spec.insert(
        "maxReplicas".to_owned(),
        json!(get(spec, &["maxReplicas"]).as_i64().unwrap_or(0)),
    );
    v2_spec.insert("metrics".to_owned(), Value::Array(metrics));
    if let Some(behavior) = annotation(BEHAVIOR_ANNOTATION).and_then(behavior_from_internal) {
        v2_spec.insert("behavior".to_owned(), behavior);
    }

    let mut v2_status = Map::new();
    put(
        &mut v2_status,
        "observedGeneration",
        get(status, &["observedGeneration"]).clone(),
    );
    put(
        &mut v2_status,
        "lastScaleTime",
        get(status, &["lastScaleTime"]).clone(),
    );
    let current = get(status, &["currentReplicas"]).as_i64().unwrap_or(0);
    if current != 0 {
        v2_status.insert("currentReplicas".to_owned(), json!(current));
    }
    v2_status.insert(
        "desiredReplicas".to_owned(),
        json!(get(status, &["desiredReplicas"]).as_i64().unwrap_or(0)),
    );
    let mut current_metrics = Vec::new();
    let current_cpu = get(status, &["currentCPUUtilizationPercentage"]);
    if !current_cpu.is_null() {
        current_metrics.push(json!({
            "type": "Resource",
            "resource": {"name": "cpu", "current": {"averageUtilization": current_cpu}},
        }));
    }
    // The annotated statuses say more than the CPU utilization alone.
    if let Some(statuses) = annotation(METRIC_STATUSES_ANNOTATION)
        .and_then(|raw| serde_json::from_str::<Vec<V1MetricStatus>>(raw).ok())
    {
        current_metrics = statuses.into_iter().map(metric_status_from_v1).collect();
    }
    if !current_metrics.is_empty() {
        v2_status.insert("currentMetrics".to_owned(), Value::Array(current_metrics));
    }
    if let Some(conditions) = annotation(CONDITIONS_ANNOTATION)
        .and_then(|raw| serde_json::from_str::<Vec<Value>>(raw).ok())
        .filter(|c| !c.is_empty())
    {
        v2_status.insert("conditions".to_owned(), Value::Array(conditions));
    }

    let mut out = Map::new();
    out.insert("apiVersion".to_owned(), json!("autoscaling/v2"));
    out.insert("kind".to_owned(), json!("HorizontalPodAutoscaler"));
    if !metadata.is_null() {
        out.insert("metadata".to_owned(), metadata);
    }
    out.insert("spec".to_owned(), Value::Object(v2_spec));
    out.insert("status".to_owned(), Value::Object(v2_status));
    Value::Object(out)
}

fn cpu_utilization_metric(utilization: Value) -> Value {
    json!({
        "type": "Resource",
        "resource": {
            "name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": utilization},
        },
    })
}

/// The API's defaults for an `autoscaling/v2` object (upstream's v2
/// `SetDefaults_HorizontalPodAutoscaler`): `minReplicas` 1, a CPU utilization target of
/// [`DEFAULT_CPU_UTILIZATION`] when there are no metrics, and a set `behavior`'s unset rules
/// ([`default_behavior`]; an unset behavior stays unset).
pub fn default_v2(object: &mut Value) {
    let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if spec.get("minReplicas").is_none_or(Value::is_null) {
        spec.insert("minReplicas".to_owned(), json!(1));
    }
    if spec
        .get("metrics")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
    {
        spec.insert(
            "metrics".to_owned(),
            json!([cpu_utilization_metric(json!(DEFAULT_CPU_UTILIZATION))]),
        );
    }
    if let Some(behavior) = spec.get("behavior").filter(|b| !b.is_null()) {
        // A behavior that does not read as one is left for validation to reject.
        let parsed = serde_json::from_value(behavior.clone()).ok();
        if let Some(defaulted) = default_behavior(parsed).and_then(|b| serde_json::to_value(b).ok())
        {
            spec.insert("behavior".to_owned(), defaulted);
        }
    }
}

/// The API's defaults for an `autoscaling/v1` object (upstream's v1
/// `SetDefaults_HorizontalPodAutoscaler`): `minReplicas` 1. The CPU target is not defaulted in
/// the object: conversion to v2 applies it, as it can see the annotated metrics.
pub fn default_v1(object: &mut Value) {
    let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if spec.get("minReplicas").is_none_or(Value::is_null) {
        spec.insert("minReplicas".to_owned(), json!(1));
    }
}

/// The API's defaults for `spec.behavior` (upstream's `SetDefaults_HorizontalPodAutoscalerBehavior`):
/// an unset behavior stays unset (the legacy path applies); a set one gets every unset rule
/// field from [`scale_up_rules`] and [`scale_down_rules`].
pub fn default_behavior(
    behavior: Option<HorizontalPodAutoscalerBehavior>,
) -> Option<HorizontalPodAutoscalerBehavior> {
    behavior.map(|b| HorizontalPodAutoscalerBehavior {
        scale_up: Some(scale_up_rules(b.scale_up)),
        scale_down: Some(scale_down_rules(b.scale_down)),
    })
}

/// Upstream's `GenerateHPAScaleUpRules`: `rules` over the scale-up defaults (no stabilization,
/// `selectPolicy: Max`, 4 pods or 100% every 15 seconds).
pub fn scale_up_rules(rules: Option<HPAScalingRules>) -> HPAScalingRules {
    let defaults = HPAScalingRules {
        stabilization_window_seconds: Some(0),
        select_policy: Some("Max".to_owned()),
        policies: Some(vec![
            HPAScalingPolicy {
                type_: "Pods".to_owned(),
                value: 4,
                period_seconds: 15,
            },
            HPAScalingPolicy {
                type_: "Percent".to_owned(),
                value: 100,
                period_seconds: 15,
            },
        ]),
        tolerance: None,
    };
    copy_rules(rules, defaults)
}

/// Upstream's `GenerateHPAScaleDownRules`: `rules` over the scale-down defaults
/// (`selectPolicy: Max`, 100% every 15 seconds; the stabilization window stays unset, for the
/// controller's `--horizontal-pod-autoscaler-downscale-stabilization`).
pub fn scale_down_rules(rules: Option<HPAScalingRules>) -> HPAScalingRules {
    let defaults = HPAScalingRules {
        stabilization_window_seconds: None,
        select_policy: Some("Max".to_owned()),
        policies: Some(vec![HPAScalingPolicy {
            type_: "Percent".to_owned(),
            value: 100,
            period_seconds: 15,
        }]),
        tolerance: None,
    };
    copy_rules(rules, defaults)
}

/// Upstream's `copyHPAScalingRules`: the set fields of `from` over `to`.
fn copy_rules(from: Option<HPAScalingRules>, mut to: HPAScalingRules) -> HPAScalingRules {
    let Some(from) = from else {
        return to;
    };
    if from.select_policy.is_some() {
        to.select_policy = from.select_policy;
    }
    if from.stabilization_window_seconds.is_some() {
        to.stabilization_window_seconds = from.stabilization_window_seconds;
    }
    if from.policies.is_some() {
        to.policies = from.policies;
    }
    if from.tolerance.is_some() {
        to.tolerance = from.tolerance;
    }
    to
}

#[cfg(test)]
mod tests {
    //! Round trips as upstream's `pkg/apis/autoscaling/v1/conversion_test.go` checks them, and
    //! the shapes of the annotations.
    use super::*;

    fn v2_object() -> Value {
        json!({
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "default", "annotations": {"team": "a"}},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 2,
                "maxReplicas": 10,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}},
                    {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "10"}}},
                    {"type": "Object", "object": {
                        "describedObject": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "main"},
                        "metric": {"name": "requests", "selector": {"matchLabels": {"a": "b"}}},
                        "target": {"type": "Value", "value": "2k"},
                    }},
                    {"type": "External", "external": {"metric": {"name": "queue"}, "target": {"type": "AverageValue", "averageValue": "30"}}},
                    {"type": "ContainerResource", "containerResource": {"name": "cpu", "container": "app", "target": {"type": "Utilization", "averageUtilization": 60}}},
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}},
                ],
                "behavior": {
                    "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
                        "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15}]},
                    "scaleDown": {"selectPolicy": "Min",
                        "policies": [{"type": "Percent", "value": 10, "periodSeconds": 60}]},
                },
            },
            "status": {
                "observedGeneration": 3,
                "lastScaleTime": "2024-01-01T00:00:00Z",
                "currentReplicas": 3,
                "desiredReplicas": 4,
                "currentMetrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "current": {"averageValue": "120m", "averageUtilization": 60}}},
                    {"type": "Pods", "pods": {"metric": {"name": "qps"}, "current": {"averageValue": "12"}}},
                ],
                "conditions": [
                    {"type": "AbleToScale", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z",
                     "reason": "ReadyForNewScale", "message": "recommended size matches current size"},
                ],
            },
        })
    }

    #[test]
    fn v2_to_v1_carries_the_rest_in_annotations() {
        let v1 = v2_to_v1(v2_object());
        assert_eq!(v1["apiVersion"], "autoscaling/v1");
        assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 50);
        assert_eq!(v1["spec"]["minReplicas"], 2);
        assert_eq!(v1["spec"]["maxReplicas"], 10);
        assert_eq!(v1["spec"]["scaleTargetRef"]["kind"], "Deployment");
        assert_eq!(v1["status"]["currentCPUUtilizationPercentage"], 60);
        assert_eq!(v1["status"]["currentReplicas"], 3);
        assert_eq!(v1["status"]["observedGeneration"], 3);
        let annotations = &v1["metadata"]["annotations"];
        assert_eq!(annotations["team"], "a");
        let metrics: Value =
            serde_json::from_str(annotations[METRIC_SPECS_ANNOTATION].as_str().unwrap()).unwrap();
        assert_eq!(
            metrics,
            json!([
                {"type": "Resource", "resource": {"name": "memory", "targetAverageValue": "100Mi"}},
                {"type": "Pods", "pods": {"metricName": "qps", "targetAverageValue": "10"}},
                {"type": "Object", "object": {
                    "target": {"kind": "Ingress", "name": "main", "apiVersion": "networking.k8s.io/v1"},
                    "metricName": "requests", "targetValue": "2k", "selector": {"matchLabels": {"a": "b"}},
                }},
                {"type": "External", "external": {"metricName": "queue", "targetAverageValue": "30"}},
                {"type": "ContainerResource", "containerResource": {"name": "cpu", "targetAverageUtilization": 60, "container": "app"}},
            ])
        );
        let statuses: Value =
            serde_json::from_str(annotations[METRIC_STATUSES_ANNOTATION].as_str().unwrap())
                .unwrap();
        assert_eq!(
            statuses,
            json!([
                {"type": "Resource", "resource": {"name": "cpu", "currentAverageUtilization": 60, "currentAverageValue": "120m"}},
                {"type": "Pods", "pods": {"metricName": "qps", "currentAverageValue": "12"}},
            ])
        );
        assert_eq!(
            annotations[BEHAVIOR_ANNOTATION],
            "{\"ScaleUp\":{\"StabilizationWindowSeconds\":0,\"SelectPolicy\":\"Max\",\"Policies\":[{\"Type\":\"Pods\",\"Value\":4,\"PeriodSeconds\":15}],\"Tolerance\":null},\
             \"ScaleDown\":{\"StabilizationWindowSeconds\":null,\"SelectPolicy\":\"Min\",\"Policies\":[{\"Type\":\"Percent\",\"Value\":10,\"PeriodSeconds\":60}],\"Tolerance\":null}}"
        );
        let conditions: Value =
            serde_json::from_str(annotations[CONDITIONS_ANNOTATION].as_str().unwrap()).unwrap();
        assert_eq!(conditions[0]["reason"], "ReadyForNewScale");
    }

    #[test]
    fn round_trip_v2_v1_v2() {
        let original = v2_object();
        let back = v1_to_v2(v2_to_v1(original.clone()));
        assert_eq!(back["apiVersion"], "autoscaling/v2");
        // The CPU utilization target comes back after the others.
        assert_eq!(back["spec"]["metrics"], original["spec"]["metrics"]);
        assert_eq!(back["spec"]["behavior"], original["spec"]["behavior"]);
        assert_eq!(
            back["spec"]["scaleTargetRef"],
            original["spec"]["scaleTargetRef"]
        );
        assert_eq!(back["status"], original["status"]);
        // The round-trip annotations are gone, the others kept.
        assert_eq!(back["metadata"]["annotations"], json!({"team": "a"}));
    }

    #[test]
    fn round_trip_v1_v2_v1() {
        let v1 = json!({
            "apiVersion": "autoscaling/v1",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 1,
                "maxReplicas": 5,
                "targetCPUUtilizationPercentage": 70,
            },
            "status": {"currentReplicas": 2, "desiredReplicas": 2, "currentCPUUtilizationPercentage": 40},
        });
        let v2 = v1_to_v2(v1.clone());
        assert_eq!(
            v2["spec"]["metrics"],
            json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}])
        );
        assert_eq!(
            v2["status"]["currentMetrics"],
            json!([{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 40}}}])
        );
        assert!(v2["spec"].get("behavior").is_none());
        let back = v2_to_v1(v2);
        assert_eq!(back["spec"], v1["spec"]);
        assert_eq!(back["status"]["currentCPUUtilizationPercentage"], 40);
        assert_eq!(back["status"]["currentReplicas"], 2);
        // The status statuses ride along (the raw value with the utilization).
        assert!(back["metadata"]["annotations"][METRIC_STATUSES_ANNOTATION].is_string());
        assert!(
            back["metadata"]["annotations"]
                .get(METRIC_SPECS_ANNOTATION)
                .is_none()
        );
    }

    #[test]
    fn v1_without_target_gets_the_default_cpu_target() {
        let v2 = v1_to_v2(json!({
            "apiVersion": "autoscaling/v1",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 3},
        }));
        assert_eq!(
            v2["spec"]["metrics"],
            json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}])
        );
    }

    #[test]
    fn bad_annotations_are_dropped() {
        // Upstream's "test empty value for Annotations": empty values do not fail conversion.
        let v1 = json!({
            "apiVersion": "autoscaling/v1",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "annotations": {
                METRIC_SPECS_ANNOTATION: "", METRIC_STATUSES_ANNOTATION: "",
                CONDITIONS_ANNOTATION: "", BEHAVIOR_ANNOTATION: "",
            }},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 3},
        });
        let v2 = v1_to_v2(v1);
        assert_eq!(v2["metadata"], json!({"name": "web"}));
        assert_eq!(v2["spec"]["metrics"][0]["resource"]["name"], "cpu");
        assert!(v2["spec"].get("behavior").is_none());
        // A behavior annotation of "{}" sets neither direction: no behavior.
        assert_eq!(behavior_from_internal("{}"), None);
        // Go reads field names case-insensitively.
        assert_eq!(
            behavior_from_internal("{\"scaleUp\":{\"selectPolicy\":\"Min\"}}"),
            Some(json!({"scaleUp": {"selectPolicy": "Min"}}))
        );
    }

    #[test]
    fn v2_defaults() {
        let mut object = json!({"spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 3}});
        default_v2(&mut object);
        assert_eq!(object["spec"]["minReplicas"], 1);
        assert_eq!(
            object["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            80
        );
        assert!(object["spec"].get("behavior").is_none());

        let mut object = json!({"spec": {"minReplicas": 0, "maxReplicas": 3, "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}});
        default_v2(&mut object);
        assert_eq!(object["spec"]["minReplicas"], 0);
        assert_eq!(
            object["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"],
            60
        );
        assert_eq!(
            object["spec"]["behavior"]["scaleDown"]["selectPolicy"],
            "Max"
        );
        assert_eq!(
            object["spec"]["behavior"]["scaleUp"]["policies"][0]["value"],
            4
        );

        let mut v1 = json!({"spec": {"maxReplicas": 3}});
        default_v1(&mut v1);
        assert_eq!(v1["spec"], json!({"maxReplicas": 3, "minReplicas": 1}));
    }
}
