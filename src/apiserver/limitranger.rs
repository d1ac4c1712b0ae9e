//! LimitRanges and the `LimitRanger` admission plugin (`plugin/pkg/admission/limitranger`):
//! a LimitRange's defaults (`SetDefaults_LimitRangeItem`: a Container item's default limit from
//! its max, its default request from the default limit, else from its min) and validation in
//! upstream's words (`ValidateLimitRange`: min <= defaultRequest <= default <= max, ratios), and
//! on pod create the plugin's two halves: `mutate` fills missing container requests and limits
//! from each `Container` item's `defaultRequest` and `default` and says so in the
//! `kubernetes.io/limit-ranger` annotation; `validate` holds containers (and, for `Pod` items,
//! the pod's sums) to `min`, `max` and `maxLimitRequestRatio`, refusing with 403 `pods "x" is
//! forbidden: [maximum cpu usage per Container is 1, but limit is 2, ...]`. A claim's storage
//! request is held to the `PersistentVolumeClaim` items' `min` and `max` on create.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::errors::{ApiError, Cause, from_store};
use super::resources::{self, Resource};
use super::{ApiServer, decode};
use crate::apimachinery::quantity::{Quantity, go_debug};
use crate::apimachinery::quota::{ResourceList, pod_resources, resource_list};
use crate::store::RangeRequest;

/// The annotation the plugin records its defaults in.
pub(crate) const ANNOTATION: &str = "kubernetes.io/limit-ranger";

/// `SetDefaults_LimitRangeItem`, for every `Container` item of a LimitRange.
pub(crate) fn default(limit_range: &mut Value) {
    let Some(items) = limit_range["spec"]["limits"].as_array_mut() else {
        return;
    };
    for item in items {
        if item["type"] != "Container" {
            continue;
        }
        let max = item["max"].as_object().cloned().unwrap_or_default();
        let min = item["min"].as_object().cloned().unwrap_or_default();
        let Some(map) = item.as_object_mut() else {
            continue;
        };
        let mut default = map
            .get("default")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        for (k, v) in &max {
            default.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let mut request = map
            .get("defaultRequest")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        for (k, v) in default.iter().chain(min.iter()) {
            request.entry(k.clone()).or_insert_with(|| v.clone());
        }
        if !default.is_empty() {
            map.insert("default".into(), Value::Object(default));
        }
        if !request.is_empty() {
            map.insert("defaultRequest".into(), Value::Object(request));
        }
    }
}

/// The resources a container (or pod) item may name (`IsStandardContainerResourceName`).
fn is_container_resource(name: &str) -> bool {
    matches!(name, "cpu" | "memory" | "ephemeral-storage") || name.starts_with("hugepages-")
}

/// `IsStandardResourceName`.
fn is_standard_resource(name: &str) -> bool {
    crate::apimachinery::quota::is_standard_name(name) || name == "storage"
}

/// `validateLimitRangeResourceName`.
fn resource_name_causes(limit_type: &str, name: &str, field: &str, causes: &mut Vec<Cause>) {
    let found = super::admission::qualified_name_causes(field, name);
    if !found.is_empty() {
        causes.extend(found);
        return;
    }
    if name.contains('/') {
        return;
    }
    if !is_standard_resource(name) {
        causes.push(Cause::invalid(
            field,
            &json!(name),
            "must be a standard resource type or fully qualified",
        ));
    } else if matches!(limit_type, "Pod" | "Container") && !is_container_resource(name) {
        causes.push(Cause::invalid(
            field,
            &json!(name),
            "must be a standard resource for containers",
        ));
    }
}

/// `ValidateLimitRange`, the spec's part.
pub(crate) fn validate(limit_range: &Value, causes: &mut Vec<Cause>) {
    let items = limit_range["spec"]["limits"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut types = BTreeSet::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("spec.limits[{i}]");
        let limit_type = item["type"].as_str().unwrap_or_default();
        let type_field = format!("{path}.type");
        let found = super::admission::qualified_name_causes(&type_field, limit_type);
        if !found.is_empty() {
            causes.extend(found);
        } else if !limit_type.contains('/')
            && !matches!(limit_type, "Pod" | "Container" | "PersistentVolumeClaim")
        {
            causes.push(Cause::invalid(
                &type_field,
                &json!(limit_type),
                "must be a standard limit type or fully qualified",
            ));
        }
        if !types.insert(limit_type) {
            causes.push(Cause::duplicate(&type_field, &json!(limit_type)));
        }
        // The texts as given, for the messages.
        let texts = |field: &str| -> BTreeMap<String, String> {
            item[field]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().map_or(v.to_string(), str::to_owned)))
                .collect()
        };
        let mut lists: BTreeMap<&str, BTreeMap<String, String>> = BTreeMap::new();
        let mut keys = BTreeSet::new();
        for field in ["max", "min"] {
            let list = texts(field);
            for k in list.keys() {
                resource_name_causes(limit_type, k, &format!("{path}.{field}[{k}]"), causes);
                keys.insert(k.clone());
            }
            lists.insert(field, list);
        }
        if limit_type == "Pod" {
            for field in ["default", "defaultRequest"] {
                if item[field].as_object().is_some_and(|m| !m.is_empty()) {
                    causes.push(Cause::forbidden(
                        format!("{path}.{field}"),
                        "may not be specified when `type` is 'Pod'",
                    ));
                }
            }
        } else {
            for field in ["default", "defaultRequest"] {
                let list = texts(field);
                for k in list.keys() {
                    resource_name_causes(limit_type, k, &format!("{path}.{field}[{k}]"), causes);
                    keys.insert(k.clone());
                }
                lists.insert(field, list);
            }
        }
        if limit_type == "PersistentVolumeClaim"
            && !lists["min"].contains_key("storage")
            && !lists["max"].contains_key("storage")
        {
            causes.push(Cause::required_because(
                format!("{path}.limits"),
                "either minimum or maximum storage value is required, but neither was provided",
            ));
        }
        let ratios = texts("maxLimitRequestRatio");
        for k in ratios.keys() {
            resource_name_causes(
                limit_type,
                k,
                &format!("{path}.maxLimitRequestRatio[{k}]"),
                causes,
            );
            keys.insert(k.clone());
        }
        lists.insert("maxLimitRequestRatio", ratios);
        for k in &keys {
            let get = |field: &str| -> Option<(Quantity, String)> {
                let text = lists.get(field)?.get(k)?;
                Some((Quantity::parse(text).ok()?, text.clone()))
            };
            let (min, max, default, request, ratio) = (
                get("min"),
                get("max"),
                get("default"),
                get("defaultRequest"),
                get("maxLimitRequestRatio"),
            );
            let field = |f: &str| format!("{path}.{f}[{k}]");
            let invalid = |f: &str, shown: &str, detail: String| {
                Cause::invalid_shown(field(f), &go_debug(shown), detail)
            };
            if let (Some((min, mt)), Some((max, _))) = (&min, &max)
                && min > max
            {
                causes.push(invalid(
                    "min",
                    mt,
                    format!("min value {min} is greater than max value {max}"),
                ));
            }
            if let (Some((req, rt)), Some((min, _))) = (&request, &min)
                && min > req
            {
                causes.push(invalid(
                    "defaultRequest",
                    rt,
                    format!("min value {min} is greater than default request value {req}"),
                ));
            }
            if let (Some((req, rt)), Some((max, _))) = (&request, &max)
                && req > max
            {
                causes.push(invalid(
                    "defaultRequest",
                    rt,
                    format!("default request value {req} is greater than max value {max}"),
                ));
            }
            if let (Some((req, rt)), Some((def, _))) = (&request, &default)
                && req > def
            {
                causes.push(invalid(
                    "defaultRequest",
                    rt,
                    format!(
                        "default request value {req} is greater than default limit value {def}"
                    ),
                ));
            }
            if let (Some((def, _)), Some((min, mt))) = (&default, &min)
                && min > def
            {
                causes.push(invalid(
                    "default",
                    mt,
                    format!("min value {min} is greater than default value {def}"),
                ));
            }
            if let (Some((def, _)), Some((max, xt))) = (&default, &max)
                && def > max
            {
                causes.push(invalid(
                    "default",
                    xt,
                    format!("default value {def} is greater than max value {max}"),
                ));
            }
            if let Some((ratio, text)) = &ratio {
                if *ratio < Quantity::count(1) {
                    causes.push(invalid(
                        "maxLimitRequestRatio",
                        text,
                        format!("ratio {ratio} is less than 1"),
                    ));
                }
                if let (Some((min, _)), Some((max, _))) = (&min, &max) {
                    let limit = max.milli() as f64 / min.milli() as f64;
                    if ratio.milli() as f64 / 1000.0 > limit {
                        causes.push(invalid(
                            "maxLimitRequestRatio",
                            text,
                            format!("ratio {ratio} is greater than max/min = {limit:.6}"),
                        ));
                    }
                }
            }
        }
    }
}

/// The LimitRanges of a namespace, in name order.
async fn limit_ranges(api: &ApiServer, namespace: &str) -> Result<Vec<Value>, ApiError> {
    if !api
        .constrained(super::constraints::Constraint::LimitRange, namespace)
        .await
    {
        return Ok(Vec::new());
    }
    let ranges = resources::find("", "v1", "limitranges").expect("served");
    let listed = api
        .store()
        .range(&RangeRequest::prefix(ranges.key_prefix(Some(namespace))))
        .await
        .map_err(|e| from_store(e, "limitranges", ""))?;
    Ok(listed.kvs.iter().filter_map(|kv| decode(kv).ok()).collect())
}

/// `defaultContainerResourceRequirements`: the `Container` items' default requests and limits.
/// Resource names and their quantities as given.
type Defaults = Vec<(String, Value)>;

fn container_defaults(limit_range: &Value) -> (Defaults, Defaults) {
    let (mut requests, mut limits) = (BTreeMap::new(), BTreeMap::new());
    for item in limit_range["spec"]["limits"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if item["type"] != "Container" {
            continue;
        }
        for (field, out) in [("defaultRequest", &mut requests), ("default", &mut limits)] {
            for (k, v) in item[field].as_object().into_iter().flatten() {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    (requests.into_iter().collect(), limits.into_iter().collect())
}

/// `mergePodResourceRequirements`: fills what each container lacks from one LimitRange's
/// defaults, and records what it set in the annotation.
fn merge_defaults(pod: &mut Value, limit_range: &Value) {
    let (requests, limits) = container_defaults(limit_range);
    if requests.is_empty() && limits.is_empty() {
        return;
    }
    let mut notes = Vec::new();
    for (field, prefix) in [
        ("containers", "container"),
        ("initContainers", "init container"),
    ] {
        let Some(list) = pod["spec"][field].as_array_mut() else {
            continue;
        };
        for c in list {
            let name = c["name"].as_str().unwrap_or_default().to_owned();
            if !c["resources"].is_object() {
                c["resources"] = json!({});
            }
            let mut set = |what: &str, defaults: &Defaults| -> Vec<String> {
                if !c["resources"][what].is_object() {
                    c["resources"][what] = json!({});
                }
                let map = c["resources"][what].as_object_mut().expect("an object");
                let mut names = Vec::new();
                for (k, v) in defaults {
                    if !map.contains_key(k) {
                        map.insert(k.clone(), v.clone());
                        names.push(k.clone());
                    }
                }
                names
            };
            let set_limits = set("limits", &limits);
            let set_requests = set("requests", &requests);
            for (what, names) in [("request", set_requests), ("limit", set_limits)] {
                if !names.is_empty() {
                    notes.push(format!("{} {what} for {prefix} {name}", names.join(", ")));
                }
            }
        }
    }
    if !notes.is_empty() {
        if !pod["metadata"]["annotations"].is_object() {
            pod["metadata"]["annotations"] = json!({});
        }
        pod["metadata"]["annotations"][ANNOTATION] =
            json!(format!("LimitRanger plugin set: {}", notes.join("; ")));
    }
}

fn list_of(item: &Value, field: &str) -> Vec<(String, Quantity)> {
    resource_list(&item[field]).into_iter().collect()
}

/// `minConstraint`.
fn min_constraint(
    kind: &str,
    name: &str,
    enforced: Quantity,
    requests: &ResourceList,
    limits: &ResourceList,
) -> Option<String> {
    let Some(req) = requests.get(name) else {
        return Some(format!(
            "minimum {name} usage per {kind} is {enforced}.  No request is specified"
        ));
    };
    if req.milli() < enforced.milli() {
        return Some(format!(
            "minimum {name} usage per {kind} is {enforced}, but request is {req}"
        ));
    }
    match limits.get(name) {
        Some(lim) if lim.milli() < enforced.milli() => Some(format!(
            "minimum {name} usage per {kind} is {enforced}, but limit is {lim}"
        )),
        _ => None,
    }
}

/// `maxConstraint`.
fn max_constraint(
    kind: &str,
    name: &str,
    enforced: Quantity,
    requests: &ResourceList,
    limits: &ResourceList,
) -> Option<String> {
    let Some(lim) = limits.get(name) else {
        return Some(format!(
            "maximum {name} usage per {kind} is {enforced}.  No limit is specified"
        ));
    };
    if lim.milli() > enforced.milli() {
        return Some(format!(
            "maximum {name} usage per {kind} is {enforced}, but limit is {lim}"
        ));
    }
    match requests.get(name) {
        Some(req) if req.milli() > enforced.milli() => Some(format!(
            "maximum {name} usage per {kind} is {enforced}, but request is {req}"
        )),
        _ => None,
    }
}

/// `limitRequestRatioConstraint`.
fn ratio_constraint(
    kind: &str,
    name: &str,
    enforced: Quantity,
    requests: &ResourceList,
    limits: &ResourceList,
) -> Option<String> {
    let req = requests.get(name).map_or(0, Quantity::milli);
    if req == 0 {
        return Some(format!(
            "{name} max limit to request ratio per {kind} is {enforced}, but no request is specified or request is 0"
        ));
    }
    let lim = limits.get(name).map_or(0, Quantity::milli);
    if lim == 0 {
        return Some(format!(
            "{name} max limit to request ratio per {kind} is {enforced}, but no limit is specified or limit is 0"
        ));
    }
    let observed = lim as f64 / req as f64;
    if observed * 1000.0 > enforced.milli() as f64 {
        return Some(format!(
            "{name} max limit to request ratio per {kind} is {enforced}, but provided ratio is {observed:.6}"
        ));
    }
    None
}

/// `PodValidateLimitFunc`: what one LimitRange finds wrong with a pod, in its order.
pub(crate) fn pod_violations(limit_range: &Value, pod: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    let mut check = |kind: &str, item: &Value, requests: &ResourceList, limits: &ResourceList| {
        for (name, q) in list_of(item, "min") {
            errors.extend(min_constraint(kind, &name, q, requests, limits));
        }
        for (name, q) in list_of(item, "max") {
            errors.extend(max_constraint(kind, &name, q, requests, limits));
        }
        for (name, q) in list_of(item, "maxLimitRequestRatio") {
            errors.extend(ratio_constraint(kind, &name, q, requests, limits));
        }
    };
    for item in limit_range["spec"]["limits"]
        .as_array()
        .into_iter()
        .flatten()
    {
        match item["type"].as_str() {
            Some("Container") => {
                for field in ["containers", "initContainers"] {
                    for c in pod["spec"][field].as_array().into_iter().flatten() {
                        let requests = resource_list(&c["resources"]["requests"]);
                        let limits = resource_list(&c["resources"]["limits"]);
                        check("Container", item, &requests, &limits);
                    }
                }
            }
            Some("Pod") => {
                let requests = pod_resources(pod, "requests");
                let limits = pod_resources(pod, "limits");
                check("Pod", item, &requests, &limits);
            }
            _ => {}
        }
    }
    errors
}

/// `maxRequestConstraint`: a max held against the request alone (claims name no limits).
fn max_request_constraint(
    kind: &str,
    name: &str,
    enforced: Quantity,
    requests: &ResourceList,
) -> Option<String> {
    match requests.get(name) {
        None => Some(format!(
            "maximum {name} usage per {kind} is {enforced}.  No request is specified"
        )),
        Some(req) if req.milli() > enforced.milli() => Some(format!(
            "maximum {name} usage per {kind} is {enforced}, but request is {req}"
        )),
        Some(_) => None,
    }
}

/// `PersistentVolumeClaimValidateLimitFunc`: a claim's storage request against the
/// `PersistentVolumeClaim` items' min and max.
pub(crate) fn claim_violations(limit_range: &Value, claim: &Value) -> Vec<String> {
    let requests = resource_list(&claim["spec"]["resources"]["requests"]);
    let mut errors = Vec::new();
    for item in limit_range["spec"]["limits"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if item["type"] != "PersistentVolumeClaim" {
            continue;
        }
        for (name, q) in list_of(item, "min") {
            errors.extend(min_constraint(
                "PersistentVolumeClaim",
                &name,
                q,
                &requests,
                &ResourceList::new(),
            ));
        }
        for (name, q) in list_of(item, "max") {
            errors.extend(max_request_constraint(
                "PersistentVolumeClaim",
                &name,
                q,
                &requests,
            ));
        }
    }
    errors
}

/// `utilerrors.NewAggregate(errs).Error()`: one message alone, more in brackets.
fn aggregate(errors: &[String]) -> String {
    match errors {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

/// The plugin on a pod's create: every LimitRange of the namespace fills in its defaults (the
/// mutating half), then each is checked in turn (the validating half). The refusal, if any, is
/// returned for the caller to raise after the pod's own validation, where upstream's
/// validating admission runs.
pub(crate) async fn admit(
    api: &ApiServer,
    resource: &Resource,
    pod: &mut Value,
) -> Result<Option<ApiError>, ApiError> {
    let claim = (resource.group, resource.kind) == ("", "PersistentVolumeClaim");
    if (resource.group, resource.kind) != ("", "Pod") && !claim {
        return Ok(None);
    }
    let namespace = pod["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_owned();
    let ranges = limit_ranges(api, &namespace).await?;
    if claim {
        let name = pod["metadata"]["name"].as_str().unwrap_or_default();
        for range in &ranges {
            let errors = claim_violations(range, pod);
            if !errors.is_empty() {
                return Ok(Some(ApiError::Forbidden {
                    resource: "persistentvolumeclaims".into(),
                    name: name.to_owned(),
                    detail: aggregate(&errors),
                }));
            }
        }
        return Ok(None);
    }
    for range in &ranges {
        merge_defaults(pod, range);
    }
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    for range in &ranges {
        let errors = pod_violations(range, pod);
        if !errors.is_empty() {
            return Ok(Some(ApiError::Forbidden {
                resource: "pods".into(),
                name: name.to_owned(),
                detail: aggregate(&errors),
            }));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(limits: Value) -> Value {
        let mut r = json!({"metadata": {"name": "limits"}, "spec": {"limits": limits}});
        default(&mut r);
        r
    }

    #[test]
    fn a_container_item_defaults_as_upstreams() {
        let r = range(json!([
            {"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "64Mi"}, "default": {"memory": "256Mi"}},
            {"type": "Pod", "max": {"cpu": "4"}},
        ]));
        let item = &r["spec"]["limits"][0];
        assert_eq!(item["default"], json!({"cpu": "2", "memory": "256Mi"}));
        assert_eq!(
            item["defaultRequest"],
            json!({"cpu": "2", "memory": "256Mi"}),
            "from the default limit before the min"
        );
        assert!(r["spec"]["limits"][1].get("default").is_none());
    }

    #[test]
    fn a_pod_gets_the_defaults_and_the_annotation() {
        let r = range(
            json!([{"type": "Container", "default": {"cpu": "500m", "memory": "128Mi"}, "defaultRequest": {"cpu": "100m"}}]),
        );
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "c", "resources": {}},
            {"name": "d", "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "1"}}},
        ]}});
        merge_defaults(&mut pod, &r);
        assert_eq!(
            pod["spec"]["containers"][0]["resources"],
            json!({"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}})
        );
        assert_eq!(
            pod["spec"]["containers"][1]["resources"]["limits"],
            json!({"cpu": "1", "memory": "128Mi"})
        );
        assert_eq!(
            pod["metadata"]["annotations"][ANNOTATION],
            "LimitRanger plugin set: cpu, memory request for container c; cpu, memory limit for container c; memory request for container d; memory limit for container d"
        );
    }

    #[test]
    fn violations_are_in_upstreams_words() {
        let r = range(json!([
            {"type": "Container", "max": {"cpu": "1"}, "min": {"cpu": "100m"}, "maxLimitRequestRatio": {"memory": "2"}},
            {"type": "Pod", "max": {"memory": "1Gi"}},
        ]));
        let pod = json!({"spec": {"containers": [
            {"name": "c", "resources": {"limits": {"cpu": "2", "memory": "2Gi"}, "requests": {"cpu": "50m", "memory": "512Mi"}}},
        ]}});
        let errors = pod_violations(&r, &pod);
        assert_eq!(
            errors,
            [
                "minimum cpu usage per Container is 100m, but request is 50m",
                "maximum cpu usage per Container is 1, but limit is 2",
                "memory max limit to request ratio per Container is 2, but provided ratio is 4.000000",
                "maximum memory usage per Pod is 1Gi, but limit is 2Gi",
            ]
        );
        assert_eq!(
            aggregate(&errors[1..2]),
            "maximum cpu usage per Container is 1, but limit is 2"
        );
        let bare = json!({"spec": {"containers": [{"name": "c"}]}});
        assert_eq!(
            pod_violations(&r, &bare)[..2],
            [
                "minimum cpu usage per Container is 100m, but request is 100m"
                    .replace(", but request is 100m", ".  No request is specified"),
                "maximum cpu usage per Container is 1.  No limit is specified".to_owned(),
            ]
        );
    }

    #[test]
    fn a_claim_is_held_to_the_storage_bounds() {
        let r = range(
            json!([{"type": "PersistentVolumeClaim", "min": {"storage": "1Gi"}, "max": {"storage": "10Gi"}}]),
        );
        let claim = |size: &str| json!({"spec": {"resources": {"requests": {"storage": size}}}});
        assert_eq!(
            claim_violations(&r, &claim("500Mi")),
            ["minimum storage usage per PersistentVolumeClaim is 1Gi, but request is 500Mi"]
        );
        assert_eq!(
            claim_violations(&r, &claim("20Gi")),
            ["maximum storage usage per PersistentVolumeClaim is 10Gi, but request is 20Gi"]
        );
        assert!(claim_violations(&r, &claim("5Gi")).is_empty());
    }

    #[test]
    fn a_limit_range_is_validated_in_upstreams_words() {
        let mut causes = Vec::new();
        let r = json!({"spec": {"limits": [
            {"type": "Container", "min": {"cpu": "2"}, "max": {"cpu": "1"}},
            {"type": "Container"},
            {"type": "Pod", "default": {"cpu": "1"}, "max": {"pods": "1"}},
        ]}});
        validate(&r, &mut causes);
        let shown: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        assert_eq!(
            shown,
            [
                r#"spec.limits[0].min[cpu]: Invalid value: resource.Quantity{i:resource.int64Amount{value:2, scale:0}, d:resource.infDecAmount{Dec:(*inf.Dec)(nil)}, s:"2", Format:"DecimalSI"}: min value 2 is greater than max value 1"#,
                r#"spec.limits[1].type: Duplicate value: "Container""#,
                r#"spec.limits[2].max[pods]: Invalid value: "pods": must be a standard resource for containers"#,
                "spec.limits[2].default: Forbidden: may not be specified when `type` is 'Pod'",
            ]
        );
    }
}
