//! What the real API server does to an object before it stores it: defaulting (the same defaults
//! the real server applies to pods, containers, deployments, services, jobs, ...) and validation
//! with field-level causes (names, labels, required fields, duplicates, port ranges, immutable
//! fields).

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::errors::Cause;
use super::resources::Resource;

pub(crate) const DNS1123_SUBDOMAIN: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1123_LABEL: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const LABEL_VALUE: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const QUALIFIED_NAME: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

pub(crate) fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

pub(crate) fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

fn is_label_value(s: &str) -> bool {
    s.is_empty()
        || (s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && s.as_bytes()[0].is_ascii_alphanumeric()
            && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric())
}

pub(crate) fn qualified_name_causes(field: &str, key: &str) -> Vec<Cause> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let mut causes = Vec::new();
    if let Some(p) = prefix
        && !is_dns1123_subdomain(p)
    {
        causes.push(Cause::invalid(
            field,
            &json!(key),
            format!("prefix part {DNS1123_SUBDOMAIN}"),
        ));
    }
    if name.is_empty() || name.len() > 63 || !is_label_value(name) {
        causes.push(Cause::invalid(field, &json!(key), QUALIFIED_NAME));
    }
    causes
}

/// Whether a resource's names must be DNS-1123 labels (stricter than subdomains).
fn names_are_labels(resource: &Resource) -> bool {
    matches!(resource.plural, "namespaces" | "services")
}

/// Validates `metadata`: name, labels, annotations.
fn validate_metadata(resource: &Resource, object: &Value, causes: &mut Vec<Cause>) {
    let meta = &object["metadata"];
    let name = meta["name"].as_str().unwrap_or_default();
    if name.is_empty() {
        if meta["generateName"].as_str().unwrap_or_default().is_empty() {
            causes.push(Cause::required("metadata.name"));
        }
    } else if resource.group == "rbac.authorization.k8s.io" {
        // RBAC names are path segments (`ValidateRBACName`): `system:node` is one.
        let reason = match name {
            "." => Some("may not be '.'".to_owned()),
            ".." => Some("may not be '..'".to_owned()),
            _ => ["/", "%"]
                .iter()
                .find(|c| name.contains(**c))
                .map(|c| format!("may not contain '{c}'")),
        };
        if let Some(reason) = reason {
            causes.push(Cause::invalid("metadata.name", &json!(name), reason));
        }
    } else if names_are_labels(resource) {
        if !is_dns1123_label(name) {
            causes.push(Cause::invalid("metadata.name", &json!(name), DNS1123_LABEL));
        }
    } else if !is_dns1123_subdomain(name) {
        causes.push(Cause::invalid(
            "metadata.name",
            &json!(name),
            DNS1123_SUBDOMAIN,
        ));
    }
    if let Some(labels) = meta["labels"].as_object() {
        for (k, v) in labels {
            causes.extend(qualified_name_causes("metadata.labels", k));
            let v = v.as_str().unwrap_or_default();
            if !is_label_value(v) {
                causes.push(Cause::invalid(
                    "metadata.labels".to_string(),
                    &json!(v),
                    LABEL_VALUE,
                ));
            }
        }
    }
    if let Some(annotations) = meta["annotations"].as_object() {
        for k in annotations.keys() {
            causes.extend(qualified_name_causes("metadata.annotations", k));
        }
        // `ValidateAnnotationsSize`: keys and values together.
        let size: usize = annotations
            .iter()
            .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
            .sum();
        if size > TOTAL_ANNOTATION_SIZE {
            causes.push(too_long("metadata.annotations", TOTAL_ANNOTATION_SIZE));
        }
    }
}

/// `TotalAnnotationSizeLimitB`: 256 KiB of annotations.
const TOTAL_ANNOTATION_SIZE: usize = 256 << 10;
/// `core.MaxSecretSize`: the most a ConfigMap's or a Secret's data may hold, 1 MiB.
pub(crate) const MAX_SECRET_SIZE: usize = 1 << 20;

/// `field.TooLong(path, _, max)` as 1.33 words it.
fn too_long(field: &str, max: usize) -> Cause {
    Cause {
        reason: "FieldValueTooLong",
        field: field.into(),
        message: format!("Too long: may not be more than {max} bytes"),
    }
}

/// The bytes a ConfigMap's `data` and `binaryData`, or a Secret's `data` (base64 on the wire,
/// counted decoded), hold together, as `ValidateConfigMap` and `ValidateSecret` count them.
fn data_size(object: &Value, secret: bool) -> usize {
    let decoded = |text: &str| {
        let padding = text.bytes().rev().take_while(|b| *b == b'=').count();
        (text.len() / 4 * 3).saturating_sub(padding)
    };
    let strings = |field: &str, base64: bool| -> usize {
        object[field].as_object().map_or(0, |m| {
            m.values()
                .filter_map(Value::as_str)
                .map(|v| if base64 { decoded(v) } else { v.len() })
                .sum()
        })
    };
    if secret {
        strings("data", true)
    } else {
        strings("data", false) + strings("binaryData", true)
    }
}

/// The whole-object size limits alone ([`validate`] checks them too): what the API server
/// checks first of a large body, before copying it.
pub(crate) fn validate_size(resource: &Resource, object: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    validate_data_size(resource, object, &mut causes);
    causes
}

/// The whole-object size limits of ConfigMaps (`[]`, the object itself) and Secrets (`data`).
fn validate_data_size(resource: &Resource, object: &Value, causes: &mut Vec<Cause>) {
    match (resource.group, resource.kind) {
        ("", "ConfigMap") if data_size(object, false) > MAX_SECRET_SIZE => {
            causes.push(too_long("[]", MAX_SECRET_SIZE));
        }
        ("", "Secret") if data_size(object, true) > MAX_SECRET_SIZE => {
            causes.push(too_long("data", MAX_SECRET_SIZE));
        }
        _ => {}
    }
}

fn validate_port(field: String, port: &Value, causes: &mut Vec<Cause>) {
    match port.as_i64() {
        Some(p) if (1..=65535).contains(&p) => {}
        Some(_) => causes.push(Cause::invalid(
            field,
            port,
            "must be between 1 and 65535, inclusive",
        )),
        None => causes.push(Cause::required(field)),
    }
}

/// Validates a pod spec found at `path` (`spec` or `spec.template.spec`).
fn validate_pod_spec(path: &str, spec: &Value, allowed_restart: &[&str], causes: &mut Vec<Cause>) {
    let containers = spec["containers"].as_array().cloned().unwrap_or_default();
    if containers.is_empty() {
        causes.push(Cause::required(format!("{path}.containers")));
    }
    let mut names = BTreeSet::new();
    for (list, items) in [
        (
            "initContainers",
            spec["initContainers"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        ),
        ("containers", containers),
    ] {
        for (i, c) in items.iter().enumerate() {
            let field = format!("{path}.{list}[{i}]");
            match c["name"].as_str() {
                None | Some("") => causes.push(Cause::required(format!("{field}.name"))),
                Some(name) if !is_dns1123_label(name) => causes.push(Cause::invalid(
                    format!("{field}.name"),
                    &json!(name),
                    DNS1123_LABEL,
                )),
                Some(name) => {
                    if !names.insert(name.to_owned()) {
                        causes.push(Cause::duplicate(format!("{field}.name"), &json!(name)));
                    }
                }
            }
            if c["image"].as_str().unwrap_or_default().trim().is_empty() {
                causes.push(Cause::required(format!("{field}.image")));
            }
            for (j, p) in c["ports"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                validate_port(
                    format!("{field}.ports[{j}].containerPort"),
                    &p["containerPort"],
                    causes,
                );
                if let Some(proto) = p["protocol"].as_str()
                    && !matches!(proto, "TCP" | "UDP" | "SCTP")
                {
                    causes.push(Cause::unsupported(
                        format!("{field}.ports[{j}].protocol"),
                        &json!(proto),
                        &["SCTP", "TCP", "UDP"],
                    ));
                }
            }
        }
    }
    if let Some(policy) = spec["restartPolicy"].as_str()
        && !allowed_restart.contains(&policy)
    {
        causes.push(Cause::unsupported(
            format!("{path}.restartPolicy"),
            &json!(policy),
            allowed_restart,
        ));
    }
    let mut volumes = BTreeSet::new();
    for (i, v) in spec["volumes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let name = v["name"].as_str().unwrap_or_default();
        if name.is_empty() {
            causes.push(Cause::required(format!("{path}.volumes[{i}].name")));
        } else if !volumes.insert(name.to_owned()) {
            causes.push(Cause::duplicate(
                format!("{path}.volumes[{i}].name"),
                &json!(name),
            ));
        }
    }
}

fn validate_workload_selector(path_prefix: &str, spec: &Value, causes: &mut Vec<Cause>) {
    let selector = &spec["selector"];
    if selector.is_null() || selector.as_object().is_some_and(|m| m.is_empty()) {
        causes.push(Cause::required(format!("{path_prefix}.selector")));
        return;
    }
    let template_labels = super::selectors::labels_of(&spec["template"]);
    let matches = selector["matchLabels"]
        .as_object()
        .map(|m| {
            m.iter()
                .all(|(k, v)| template_labels.get(k).map(String::as_str) == v.as_str())
        })
        .unwrap_or(true);
    if !matches {
        causes.push(Cause::invalid_shown(
            format!("{path_prefix}.template.metadata.labels"),
            &go_string_map(&spec["template"]["metadata"]["labels"]),
            "`selector` does not match template `labels`",
        ));
    }
}

/// A `map[string]string` as Go's `%#v` prints it (how `field.Invalid` shows one): keys sorted,
/// `map[string]string{"app":"web", "tier":"db"}`, or `map[string]string(nil)` when absent.
fn go_string_map(map: &Value) -> String {
    match map.as_object() {
        None => "map[string]string(nil)".to_owned(),
        Some(m) => {
            let mut pairs: Vec<(&String, &str)> = m
                .iter()
                .map(|(k, v)| (k, v.as_str().unwrap_or_default()))
                .collect();
            pairs.sort();
            let shown: Vec<String> = pairs.iter().map(|(k, v)| format!("{k:?}:{v:?}")).collect();
            format!("map[string]string{{{}}}", shown.join(", "))
        }
    }
}

/// `ValidateNonnegativeField`.
fn nonnegative(field: &str, value: &Value, causes: &mut Vec<Cause>) {
    if value.as_i64().is_some_and(|n| n < 0) {
        causes.push(Cause::invalid(
            field,
            value,
            "must be greater than or equal to 0",
        ));
    }
}

/// `ValidatePodTemplateSpec` at `path` (`spec.template`, or a PodTemplate's `template`): the
/// template's labels (checked as `<path>.labels`, as upstream names them), its pod spec
/// (`restart` the restart policies allowed), and no ephemeral containers.
fn validate_pod_template_spec(
    path: &str,
    template: &Value,
    restart: &[&str],
    causes: &mut Vec<Cause>,
) {
    if let Some(labels) = template["metadata"]["labels"].as_object() {
        for (k, v) in labels {
            causes.extend(qualified_name_causes(&format!("{path}.labels"), k));
            let v = v.as_str().unwrap_or_default();
            if !is_label_value(v) {
                causes.push(Cause::invalid(
                    format!("{path}.labels"),
                    &json!(v),
                    LABEL_VALUE,
                ));
            }
        }
    }
    if let Some(annotations) = template["metadata"]["annotations"].as_object() {
        for k in annotations.keys() {
            causes.extend(qualified_name_causes(&format!("{path}.annotations"), k));
        }
    }
    let spec = &template["spec"];
    validate_pod_spec(&format!("{path}.spec"), spec, restart, causes);
    if spec["ephemeralContainers"]
        .as_array()
        .is_some_and(|l| !l.is_empty())
    {
        causes.push(Cause::forbidden(
            format!("{path}.spec.ephemeralContainers"),
            "ephemeral containers not allowed in pod template",
        ));
    }
}

/// `ValidateReplicationController` (after `SetDefaults_ReplicationController`): a non-negative
/// `minReadySeconds` and `replicas`, a selector (an equality map) that is not empty, and a
/// template whose labels it matches, restarting `Always` and without `activeDeadlineSeconds`;
/// and `ValidateReplicationControllerStatus` (the counts non-negative, none above `replicas`,
/// `availableReplicas` not above `readyReplicas`).
fn validate_replication_controller(object: &Value, causes: &mut Vec<Cause>) {
    let spec = &object["spec"];
    nonnegative("spec.minReadySeconds", &spec["minReadySeconds"], causes);
    let selector = spec["selector"].as_object().cloned().unwrap_or_default();
    if selector.is_empty() {
        causes.push(Cause::required("spec.selector"));
    }
    nonnegative("spec.replicas", &spec["replicas"], causes);
    let template = &spec["template"];
    if !template.is_object() {
        causes.push(Cause::required("spec.template"));
    } else {
        let labels = &template["metadata"]["labels"];
        let matches = selector
            .iter()
            .all(|(k, v)| labels.get(k).and_then(Value::as_str) == v.as_str());
        if !selector.is_empty() && !matches {
            causes.push(Cause::invalid_shown(
                "spec.template.metadata.labels",
                &go_string_map(labels),
                "`selector` does not match template `labels`",
            ));
        }
        validate_pod_template_spec("spec.template", template, &["Always"], causes);
        if !template["spec"]["activeDeadlineSeconds"].is_null() {
            causes.push(Cause::forbidden(
                "spec.template.spec.activeDeadlineSeconds",
                "activeDeadlineSeconds in ReplicationController is not Supported",
            ));
        }
    }
    let status = &object["status"];
    for field in [
        "replicas",
        "fullyLabeledReplicas",
        "readyReplicas",
        "availableReplicas",
        "observedGeneration",
    ] {
        nonnegative(&format!("status.{field}"), &status[field], causes);
    }
    let count = |field: &str| status[field].as_i64().unwrap_or(0);
    for field in ["fullyLabeledReplicas", "readyReplicas", "availableReplicas"] {
        if count(field) > count("replicas") {
            causes.push(Cause::invalid(
                format!("status.{field}"),
                &json!(count(field)),
                "cannot be greater than status.replicas",
            ));
        }
    }
    if count("availableReplicas") > count("readyReplicas") {
        causes.push(Cause::invalid(
            "status.availableReplicas",
            &json!(count("availableReplicas")),
            "cannot be greater than readyReplicas",
        ));
    }
}

/// What ValidateStatefulSetSpec checks beyond the workload basics: the pod management policy,
/// the update strategy and its partition, the claim retention policy, and non-negative
/// `minReadySeconds` and `ordinals.start`.
fn validate_statefulset_spec(spec: &Value, causes: &mut Vec<Cause>) {
    match spec["podManagementPolicy"].as_str() {
        None | Some("") => causes.push(Cause::required("spec.podManagementPolicy")),
        Some("OrderedReady" | "Parallel") => {}
        Some(other) => causes.push(Cause::invalid(
            "spec.podManagementPolicy",
            &json!(other),
            "must be 'OrderedReady' or 'Parallel'",
        )),
    }
    let strategy = &spec["updateStrategy"];
    match strategy["type"].as_str() {
        None | Some("") => causes.push(Cause::required("spec.updateStrategy")),
        Some("OnDelete") => {
            if !strategy["rollingUpdate"].is_null() {
                causes.push(Cause::invalid(
                    "spec.updateStrategy.rollingUpdate",
                    &strategy["rollingUpdate"],
                    "only allowed for updateStrategy 'RollingUpdate'",
                ));
            }
        }
        Some("RollingUpdate") => {
            let partition = &strategy["rollingUpdate"]["partition"];
            if partition.as_i64().is_some_and(|p| p < 0) {
                causes.push(Cause::invalid(
                    "spec.updateStrategy.rollingUpdate.partition",
                    partition,
                    "must be greater than or equal to 0",
                ));
            }
        }
        Some(_) => causes.push(Cause::invalid(
            "spec.updateStrategy",
            strategy,
            "must be 'RollingUpdate' or 'OnDelete'",
        )),
    }
    for when in ["whenDeleted", "whenScaled"] {
        let value = &spec["persistentVolumeClaimRetentionPolicy"][when];
        if let Some(v) = value.as_str()
            && !matches!(v, "Retain" | "Delete")
        {
            causes.push(Cause::unsupported(
                format!("spec.persistentVolumeClaimRetentionPolicy.{when}"),
                value,
                &["Retain", "Delete"],
            ));
        }
    }
    for (field, value) in [
        ("spec.minReadySeconds", &spec["minReadySeconds"]),
        ("spec.ordinals.start", &spec["ordinals"]["start"]),
    ] {
        if value.as_i64().is_some_and(|v| v < 0) {
            causes.push(Cause::invalid(
                field,
                value,
                "must be greater than or equal to 0",
            ));
        }
    }
    if !spec["template"]["spec"]["activeDeadlineSeconds"].is_null() {
        causes.push(Cause::forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            "activeDeadlineSeconds in StatefulSet is not Supported",
        ));
    }
}

const WILDCARD_DNS1123_SUBDOMAIN: &str = "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character (e.g. '*.example.com', regex used for validation is '\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1035_LABEL: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

/// The annotation the DefaultIngressClass admission plugin looks for.
pub(crate) const IS_DEFAULT_CLASS: &str = "ingressclass.kubernetes.io/is-default-class";

/// A host as an Ingress rule or TLS entry may name it: a DNS subdomain, or `*.` and one.
fn validate_ingress_host(field: &str, host: &str, causes: &mut Vec<Cause>) {
    if host.parse::<std::net::IpAddr>().is_ok() {
        causes.push(Cause::invalid(
            field,
            &json!(host),
            "must be a DNS name, not an IP address",
        ));
    } else if host.contains('*') {
        let ok = host.strip_prefix("*.").is_some_and(is_dns1123_subdomain);
        if !ok {
            causes.push(Cause::invalid(
                field,
                &json!(host),
                WILDCARD_DNS1123_SUBDOMAIN,
            ));
        }
    } else if !is_dns1123_subdomain(host) {
        causes.push(Cause::invalid(field, &json!(host), DNS1123_SUBDOMAIN));
    }
}

/// validation's `IsValidPortName`.
fn port_name_problems(name: &str) -> Vec<&'static str> {
    let mut problems = Vec::new();
    if name.len() > 15 {
        problems.push("must be no more than 15 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        problems.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)");
    }
    if !name.bytes().any(|b| b.is_ascii_lowercase()) {
        problems.push("must contain at least one letter (a-z)");
    }
    if name.contains("--") {
        problems.push("must not contain consecutive hyphens");
    }
    if name.starts_with('-') || name.ends_with('-') {
        problems.push("must not begin or end with a hyphen");
    }
    problems
}

/// `validateIngressBackend`: exactly one of service and resource; a service by name with a
/// port name or number.
fn validate_ingress_backend(path: &str, backend: &Value, causes: &mut Vec<Cause>) {
    let service = &backend["service"];
    match (backend["resource"].is_object(), service.is_object()) {
        (true, true) => causes.push(Cause::invalid(
            path,
            &json!(""),
            "cannot set both resource and service backends",
        )),
        (true, false) => {
            let resource = &backend["resource"];
            for key in ["kind", "name"] {
                if resource[key].as_str().unwrap_or_default().is_empty() {
                    causes.push(Cause::required(format!("{path}.resource.{key}")));
                }
            }
        }
        (false, true) => {
            let name = service["name"].as_str().unwrap_or_default();
            if name.is_empty() {
                causes.push(Cause::required(format!("{path}.service.name")));
            } else if !is_dns1123_label(name) || !name.as_bytes()[0].is_ascii_lowercase() {
                causes.push(Cause::invalid(
                    format!("{path}.service.name"),
                    &json!(name),
                    DNS1035_LABEL,
                ));
            }
            let port_name = service["port"]["name"].as_str().unwrap_or_default();
            let number = service["port"]["number"].as_i64().unwrap_or(0);
            match (port_name.is_empty(), number == 0) {
                (false, false) => causes.push(Cause::invalid(
                    path,
                    &json!(""),
                    "cannot set both port name & port number",
                )),
                (false, true) => {
                    for problem in port_name_problems(port_name) {
                        causes.push(Cause::invalid(
                            format!("{path}.service.port.name"),
                            &json!(port_name),
                            problem,
                        ));
                    }
                }
                (true, false) => {
                    if !(1..=65535).contains(&number) {
                        causes.push(Cause::invalid(
                            format!("{path}.service.port.number"),
                            &json!(number),
                            "must be between 1 and 65535, inclusive",
                        ));
                    }
                }
                (true, true) => causes.push(Cause::required_because(
                    path,
                    "port name or number is required",
                )),
            }
        }
        (false, false) => causes.push(Cause::invalid(
            path,
            &json!(""),
            "resource or service backend is required",
        )),
    }
}

/// `validateHTTPIngressPath`.
fn validate_ingress_path(field: &str, path: &Value, causes: &mut Vec<Cause>) {
    let text = path["path"].as_str().unwrap_or_default();
    let absolute = |causes: &mut Vec<Cause>| {
        if !text.starts_with('/') {
            causes.push(Cause::invalid(
                format!("{field}.path"),
                &json!(text),
                "must be an absolute path",
            ));
        }
    };
    // k8s-openapi's `pathType` is a plain string: an absent one reads as "".
    match path["pathType"].as_str() {
        None | Some("") => {
            causes.push(Cause::required_because(
                format!("{field}.pathType"),
                "pathType must be specified",
            ));
            return;
        }
        Some("Exact" | "Prefix") => {
            absolute(causes);
            for bad in ["//", "/./", "/../", "%2f", "%2F"] {
                if text.contains(bad) {
                    causes.push(Cause::invalid(
                        format!("{field}.path"),
                        &json!(text),
                        format!("must not contain '{bad}'"),
                    ));
                }
            }
            for bad in ["/..", "/."] {
                if text.ends_with(bad) {
                    causes.push(Cause::invalid(
                        format!("{field}.path"),
                        &json!(text),
                        format!("cannot end with '{bad}'"),
                    ));
                }
            }
        }
        Some("ImplementationSpecific") => {
            if !text.is_empty() {
                absolute(causes);
            }
        }
        Some(other) => causes.push(Cause::unsupported(
            format!("{field}.pathType"),
            &json!(other),
            &["Exact", "ImplementationSpecific", "Prefix"],
        )),
    }
    validate_ingress_backend(&format!("{field}.backend"), &path["backend"], causes);
}

/// `ValidateIngressSpec`: rules or a default backend, hosts, paths, backends, TLS hosts, the
/// class name.
fn validate_ingress_spec(spec: &Value, causes: &mut Vec<Cause>) {
    let rules = spec["rules"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if spec["defaultBackend"].is_object() {
        validate_ingress_backend("spec.defaultBackend", &spec["defaultBackend"], causes);
    } else if rules.is_empty() {
        causes.push(Cause::invalid(
            "spec.rules",
            &json!("[]"),
            "either `defaultBackend` or `rules` must be specified",
        ));
    }
    for (i, rule) in rules.iter().enumerate() {
        if let Some(host) = rule["host"].as_str().filter(|h| !h.is_empty()) {
            validate_ingress_host(&format!("spec.rules[{i}].host"), host, causes);
        }
        let Some(http) = rule["http"].as_object() else {
            continue;
        };
        let paths = http
            .get("paths")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        if paths.is_empty() {
            causes.push(Cause::required(format!("spec.rules[{i}].http.paths")));
        }
        for (j, path) in paths.iter().enumerate() {
            validate_ingress_path(&format!("spec.rules[{i}].http.paths[{j}]"), path, causes);
        }
    }
    for (i, tls) in spec["tls"].as_array().into_iter().flatten().enumerate() {
        for (j, host) in tls["hosts"].as_array().into_iter().flatten().enumerate() {
            validate_ingress_host(
                &format!("spec.tls[{i}].hosts[{j}]"),
                host.as_str().unwrap_or_default(),
                causes,
            );
        }
    }
    if let Some(class) = spec["ingressClassName"].as_str()
        && !is_dns1123_subdomain(class)
    {
        causes.push(Cause::invalid(
            "spec.ingressClassName",
            &json!(class),
            DNS1123_SUBDOMAIN,
        ));
    }
}

/// `IsDomainPrefixedPath`: an IngressClass's controller, such as `acme.io/ingress-controller`.
fn validate_domain_prefixed_path(field: &str, value: &Value, causes: &mut Vec<Cause>) {
    let text = value.as_str().unwrap_or_default();
    if text.is_empty() {
        causes.push(Cause::required(field));
        return;
    }
    let Some((host, path)) = text.split_once('/') else {
        causes.push(Cause::invalid(
            field,
            &json!(text),
            "must be a domain-prefixed path (such as \"acme.io/foo\")",
        ));
        return;
    };
    if !is_dns1123_subdomain(host) {
        causes.push(Cause::invalid(field, &json!(host), DNS1123_SUBDOMAIN));
    }
    let path_ok = !path.is_empty()
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-._~%!$&'()*+,;=:".contains(&b));
    if !path_ok {
        causes.push(Cause::invalid(field, &json!(path), "Invalid path"));
    }
}

/// The DefaultIngressClass admission plugin's choice: the one IngressClass annotated
/// `ingressclass.kubernetes.io/is-default-class: "true"`; none when none is; the number found
/// when several are, which upstream's plugin refuses ("N default IngressClasses were found,
/// only 1 allowed").
pub(crate) fn default_ingress_class(classes: &[Value]) -> Result<Option<String>, usize> {
    let defaults: Vec<&Value> = classes
        .iter()
        .filter(|c| c["metadata"]["annotations"][IS_DEFAULT_CLASS].as_str() == Some("true"))
        .collect();
    match defaults.as_slice() {
        [] => Ok(None),
        [one] => Ok(one["metadata"]["name"].as_str().map(str::to_owned)),
        several => Err(several.len()),
    }
}

/// Validates a whole object, new or updated (`old` is the stored object on update).
pub(crate) fn validate(resource: &Resource, object: &Value, old: Option<&Value>) -> Vec<Cause> {
    if is_crd(resource) {
        return validate_crd(object, old);
    }
    let mut causes = Vec::new();
    validate_metadata(resource, object, &mut causes);
    validate_data_size(resource, object, &mut causes);
    let spec = &object["spec"];
    match (resource.group, resource.kind) {
        ("", "Pod") => {
            validate_pod_spec("spec", spec, &["Always", "OnFailure", "Never"], &mut causes);
            validate_scheduling_gates(&spec["schedulingGates"], &mut causes);
        }
        ("", "LimitRange") => super::limitranger::validate(object, &mut causes),
        ("", "ResourceQuota") => super::quota::validate(object, &mut causes),
        ("", "ReplicationController") => validate_replication_controller(object, &mut causes),
        // `ValidatePodTemplate`: any restart policy.
        ("", "PodTemplate") => validate_pod_template_spec(
            "template",
            &object["template"],
            &["Always", "OnFailure", "Never"],
            &mut causes,
        ),
        ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet") => {
            validate_workload_selector("spec", spec, &mut causes);
            validate_pod_spec(
                "spec.template.spec",
                &spec["template"]["spec"],
                &["Always"],
                &mut causes,
            );
            if spec["replicas"].as_i64().is_some_and(|r| r < 0) {
                causes.push(Cause::invalid(
                    "spec.replicas",
                    &spec["replicas"],
                    "must be greater than or equal to 0",
                ));
            }
            if resource.kind == "StatefulSet" {
                validate_statefulset_spec(spec, &mut causes);
            }
        }
        ("batch", "Job") => {
            validate_pod_spec(
                "spec.template.spec",
                &spec["template"]["spec"],
                &["OnFailure", "Never"],
                &mut causes,
            );
        }
        ("autoscaling", "HorizontalPodAutoscaler") => {
            let v2 = resource.stored(object.clone());
            super::validation::horizontal_pod_autoscaler(&v2, &mut causes);
        }
        ("batch", "CronJob") => {
            super::validation::cronjob(object, old, &mut causes);
            validate_pod_spec(
                "spec.jobTemplate.spec.template.spec",
                &spec["jobTemplate"]["spec"]["template"]["spec"],
                &["OnFailure", "Never"],
                &mut causes,
            );
        }
        ("", "Service") => {
            let ports = spec["ports"].as_array().cloned().unwrap_or_default();
            let headless = spec["clusterIP"].as_str() == Some("None");
            if ports.is_empty() && !headless && spec["type"].as_str() != Some("ExternalName") {
                causes.push(Cause::required("spec.ports"));
            }
            let mut names = BTreeSet::new();
            for (i, p) in ports.iter().enumerate() {
                validate_port(format!("spec.ports[{i}].port"), &p["port"], &mut causes);
                if ports.len() > 1 {
                    match p["name"].as_str() {
                        None | Some("") => {
                            causes.push(Cause::required(format!("spec.ports[{i}].name")))
                        }
                        Some(n) if !names.insert(n.to_owned()) => causes
                            .push(Cause::duplicate(format!("spec.ports[{i}].name"), &json!(n))),
                        _ => {}
                    }
                }
            }
            if let Some(t) = spec["type"].as_str()
                && !matches!(
                    t,
                    "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName"
                )
            {
                causes.push(Cause::unsupported(
                    "spec.type",
                    &json!(t),
                    &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
                ));
            }
        }
        ("networking.k8s.io", "Ingress") => validate_ingress_spec(spec, &mut causes),
        ("policy", "PodDisruptionBudget") => {
            super::validation::pod_disruption_budget(object, &mut causes)
        }
        ("networking.k8s.io", "IngressClass") => {
            validate_domain_prefixed_path("spec.controller", &spec["controller"], &mut causes)
        }
        _ => {}
    }
    if let Some(old) = old {
        validate_update(resource, object, old, &mut causes);
    }
    causes.extend(super::storage::validate(resource, object, old));
    causes.extend(super::webhook::config::validate(resource, object, old));
    causes
}

/// The fields the real server refuses to change after creation.
fn validate_update(resource: &Resource, new: &Value, old: &Value, causes: &mut Vec<Cause>) {
    let immutable = |field: &str, a: &Value, b: &Value, causes: &mut Vec<Cause>| {
        if a != b {
            causes.push(Cause::invalid(field, a, "field is immutable"));
        }
    };
    match (resource.group, resource.kind) {
        ("apps", "Deployment" | "ReplicaSet" | "DaemonSet") => {
            immutable(
                "spec.selector",
                &new["spec"]["selector"],
                &old["spec"]["selector"],
                causes,
            );
        }
        ("apps", "StatefulSet") => {
            // ValidateStatefulSetUpdate: only these fields of the spec may change.
            let mutable = [
                "replicas",
                "ordinals",
                "template",
                "updateStrategy",
                "persistentVolumeClaimRetentionPolicy",
                "minReadySeconds",
            ];
            let rest = |spec: &Value| -> Value {
                let mut spec = spec.clone();
                if let Some(m) = spec.as_object_mut() {
                    m.retain(|k, _| !mutable.contains(&k.as_str()));
                }
                spec
            };
            if rest(&new["spec"]) != rest(&old["spec"]) {
                causes.push(Cause::forbidden(
                    "spec",
                    "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
                ));
            }
        }
        ("apps", "ControllerRevision") => {
            immutable("data", &new["data"], &old["data"], causes);
        }
        ("batch", "Job") => {
            immutable(
                "spec.selector",
                &new["spec"]["selector"],
                &old["spec"]["selector"],
                causes,
            );
            if new["spec"]["template"] != old["spec"]["template"] {
                causes.push(Cause::invalid(
                    "spec.template",
                    &json!("core.PodTemplateSpec{...}"),
                    "field is immutable",
                ));
            }
        }
        ("networking.k8s.io", "IngressClass") => {
            let (a, b) = (&new["spec"]["controller"], &old["spec"]["controller"]);
            immutable("spec.controller", a, b, causes);
        }
        ("", "Service") => {
            let (a, b) = (&new["spec"]["clusterIP"], &old["spec"]["clusterIP"]);
            if !a.is_null() && a != b {
                causes.push(Cause::invalid(
                    "spec.clusterIPs[0]",
                    a,
                    "may not change once set",
                ));
            }
        }
        ("", "ConfigMap" | "Secret")
            if old["immutable"] == true
                && (new["data"] != old["data"] || new["binaryData"] != old["binaryData"]) =>
        {
            causes.push(Cause::forbidden(
                "data",
                "field is immutable when `immutable` is set",
            ));
        }
        ("", "Pod") => {
            // Only images, activeDeadlineSeconds, tolerations (additions) and a few more may
            // change; compare the rest with images masked out.
            let mask = |spec: &Value| {
                let mut spec = spec.clone();
                for list in ["containers", "initContainers"] {
                    if let Some(items) = spec[list].as_array_mut() {
                        for c in items {
                            c["image"] = Value::Null;
                        }
                    }
                }
                for field in [
                    "activeDeadlineSeconds",
                    "tolerations",
                    "terminationGracePeriodSeconds",
                    "nodeName",
                    "schedulingGates",
                    // Changed through `pods/ephemeralcontainers` alone, checked below.
                    "ephemeralContainers",
                ] {
                    if let Some(m) = spec.as_object_mut() {
                        m.remove(field);
                    }
                }
                spec
            };
            if mask(&new["spec"]) != mask(&old["spec"]) {
                causes.push(Cause::forbidden(
                    "spec",
                    "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
                ));
            }
            validate_ephemeral_containers(&new["spec"], &old["spec"], causes);
            validate_scheduling_gates(&new["spec"]["schedulingGates"], causes);
            only_deleted_scheduling_gates(
                &new["spec"]["schedulingGates"],
                &old["spec"]["schedulingGates"],
                causes,
            );
        }
        _ => {}
    }
}

/// `validateSchedulingGates`: each gate's name a qualified name, none twice.
fn validate_scheduling_gates(gates: &Value, causes: &mut Vec<Cause>) {
    let mut seen = BTreeSet::new();
    for (i, gate) in gates.as_array().into_iter().flatten().enumerate() {
        let path = format!("spec.schedulingGates[{i}]");
        let name = gate["name"].as_str().unwrap_or_default();
        causes.extend(qualified_name_causes(&path, name));
        if !seen.insert(name) {
            causes.push(Cause::duplicate(path, &json!(name)));
        }
    }
}

/// `validateOnlyDeletedSchedulingGates`: gates may be removed from a pod, never added.
fn only_deleted_scheduling_gates(new: &Value, old: &Value, causes: &mut Vec<Cause>) {
    let names = |gates: &Value| -> Vec<String> {
        gates
            .as_array()
            .into_iter()
            .flatten()
            .map(|g| g["name"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let before = names(old);
    for (i, name) in names(new).iter().enumerate() {
        if !before.contains(name) {
            causes.push(Cause::forbidden(
                format!("spec.schedulingGates[{i}].name"),
                format!("only deletion is allowed, but found new scheduling gate '{name}'"),
            ));
        }
    }
}

/// `ValidateEphemeralContainers` and the ephemeral containers update's own checks: each has a
/// name unique in the pod and an image, sets none of the fields an ephemeral container may not
/// (ports, probes, lifecycle, resources), targets a container the pod has; the ones already
/// there stay as they were.
fn validate_ephemeral_containers(new: &Value, old: &Value, causes: &mut Vec<Cause>) {
    let list = |spec: &Value| {
        spec["ephemeralContainers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let (now, before) = (list(new), list(old));
    for was in &before {
        let name = was["name"].as_str().unwrap_or_default();
        match now.iter().find(|c| c["name"] == was["name"]) {
            None => causes.push(Cause::forbidden(
                "spec.ephemeralContainers",
                format!("existing ephemeral containers {name:?} may not be removed"),
            )),
            Some(c) if c != was => causes.push(Cause::forbidden(
                "spec.ephemeralContainers",
                format!("existing ephemeral containers {name:?} may not be changed"),
            )),
            Some(_) => {}
        }
    }
    let mut names: BTreeSet<String> = ["containers", "initContainers"]
        .iter()
        .flat_map(|l| new[*l].as_array().cloned().unwrap_or_default())
        .filter_map(|c| c["name"].as_str().map(str::to_owned))
        .collect();
    let regular: BTreeSet<String> = names.clone();
    for (i, c) in now.iter().enumerate() {
        let at = format!("spec.ephemeralContainers[{i}]");
        match c["name"].as_str().filter(|n| !n.is_empty()) {
            None => causes.push(Cause::required(format!("{at}.name"))),
            Some(name) if !names.insert(name.to_owned()) => {
                causes.push(Cause::duplicate(format!("{at}.name"), &json!(name)))
            }
            Some(_) => {}
        }
        if c["image"].as_str().is_none_or(str::is_empty) {
            causes.push(Cause::required(format!("{at}.image")));
        }
        for field in [
            "ports",
            "livenessProbe",
            "readinessProbe",
            "startupProbe",
            "lifecycle",
            "resources",
        ] {
            let set = match &c[field] {
                Value::Null => false,
                Value::Array(a) => !a.is_empty(),
                Value::Object(o) => !o.is_empty(),
                _ => true,
            };
            if set {
                causes.push(Cause::forbidden(
                    format!("{at}.{field}"),
                    "cannot be set for an Ephemeral Container",
                ));
            }
        }
        if let Some(target) = c["targetContainerName"].as_str()
            && !regular.contains(target)
        {
            causes.push(Cause::not_found(
                format!("{at}.targetContainerName"),
                &json!(target),
            ));
        }
    }
}

fn set_default(map: &mut Map<String, Value>, key: &str, value: Value) {
    if map.get(key).is_none_or(Value::is_null) {
        map.insert(key.to_owned(), value);
    }
}

fn object_at<'a>(value: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    if !value[key].is_object() {
        value[key] = json!({});
    }
    value[key].as_object_mut().expect("just made an object")
}

fn default_container(c: &mut Value) {
    let Some(m) = c.as_object_mut() else { return };
    let image = m
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let tag = image.rsplit('/').next().unwrap_or_default();
    let latest = !tag.contains(':') && !image.contains('@') || tag.ends_with(":latest");
    set_default(
        m,
        "imagePullPolicy",
        json!(if latest { "Always" } else { "IfNotPresent" }),
    );
    set_default(m, "terminationMessagePath", json!("/dev/termination-log"));
    set_default(m, "terminationMessagePolicy", json!("File"));
    set_default(m, "resources", json!({}));
    if let Some(ports) = m.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports {
            if let Some(p) = p.as_object_mut() {
                set_default(p, "protocol", json!("TCP"));
            }
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = m.get_mut(probe).and_then(Value::as_object_mut) {
            set_default(p, "timeoutSeconds", json!(1));
            set_default(p, "periodSeconds", json!(10));
            set_default(p, "successThreshold", json!(1));
            set_default(p, "failureThreshold", json!(3));
            if let Some(http) = p.get_mut("httpGet").and_then(Value::as_object_mut) {
                set_default(http, "path", json!("/"));
                set_default(http, "scheme", json!("HTTP"));
            }
        }
    }
}

/// The real defaults of a pod spec.
fn default_pod_spec(spec: &mut Value) {
    if !spec.is_object() {
        *spec = json!({});
    }
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        if let Some(items) = spec.get_mut(list).and_then(Value::as_array_mut) {
            items.iter_mut().for_each(default_container);
        }
    }
    let m = spec.as_object_mut().expect("object");
    set_default(m, "restartPolicy", json!("Always"));
    set_default(m, "terminationGracePeriodSeconds", json!(30));
    set_default(m, "dnsPolicy", json!("ClusterFirst"));
    set_default(m, "securityContext", json!({}));
    set_default(m, "schedulerName", json!("default-scheduler"));
    set_default(m, "enableServiceLinks", json!(true));
    set_default(m, "preemptionPolicy", json!("PreemptLowerPriority"));
    set_default(m, "priority", json!(0));
    if let Some(volumes) = m.get_mut("volumes").and_then(Value::as_array_mut) {
        for v in volumes {
            for (source, mode) in [
                ("configMap", "defaultMode"),
                ("secret", "defaultMode"),
                ("downwardAPI", "defaultMode"),
                ("projected", "defaultMode"),
            ] {
                if let Some(s) = v.get_mut(source).and_then(Value::as_object_mut) {
                    set_default(s, mode, json!(420));
                }
            }
        }
    }
}

/// `SetDefaults_Pod`: a container (or init container) that sets a limit but no request of a
/// resource requests its limit.
fn default_requests_from_limits(spec: &mut Value) {
    for list in ["containers", "initContainers"] {
        let Some(items) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in items {
            let Some(limits) = c["resources"]["limits"].as_object().cloned() else {
                continue;
            };
            if limits.is_empty() {
                continue;
            }
            if !c["resources"]["requests"].is_object() {
                c["resources"]["requests"] = json!({});
            }
            let requests = c["resources"]["requests"]
                .as_object_mut()
                .expect("an object");
            for (k, v) in limits {
                requests.entry(k).or_insert(v);
            }
        }
    }
}

/// `qos.GetPodQOS` (`PrepareForCreate` sets it): `Guaranteed` when every container limits cpu
/// and memory and requests what it limits, `BestEffort` when none requests or limits either,
/// else `Burstable`.
pub(crate) fn pod_qos(pod: &Value) -> &'static str {
    use crate::apimachinery::quota::{ResourceList, add, resource_list};
    let compute = |list: &Value| -> ResourceList {
        resource_list(list)
            .into_iter()
            .filter(|(k, q)| matches!(k.as_str(), "cpu" | "memory") && !q.is_zero())
            .collect()
    };
    let (mut requests, mut limits) = (ResourceList::new(), ResourceList::new());
    let mut guaranteed = true;
    for list in ["containers", "initContainers"] {
        for c in pod["spec"][list].as_array().into_iter().flatten() {
            requests = add(&requests, &compute(&c["resources"]["requests"]));
            let own = compute(&c["resources"]["limits"]);
            if !(own.contains_key("cpu") && own.contains_key("memory")) {
                guaranteed = false;
            }
            limits = add(&limits, &own);
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    let same = requests.len() == limits.len()
        && requests
            .iter()
            .all(|(k, q)| limits.get(k).is_some_and(|l| l.milli() == q.milli()));
    if guaranteed && same {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

fn default_template(spec: &mut Value) {
    default_pod_spec(&mut spec["template"]["spec"]);
    if !spec["template"]["metadata"].is_object() {
        spec["template"]["metadata"] = json!({});
    }
}

/// `SetDefaults_ReplicationController`: a template with labels (even none) gives an empty
/// selector and empty object labels its labels; `replicas` is 1. The template, when there is
/// one (it may be missing, which validation refuses), gets a pod spec's defaults.
fn default_replication_controller(object: &mut Value) {
    let labels = object["spec"]["template"]["metadata"]["labels"].clone();
    if labels.is_object() {
        let spec = object_at(object, "spec");
        if spec
            .get("selector")
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty)
        {
            spec.insert("selector".into(), labels.clone());
        }
        let meta = object_at(object, "metadata");
        if meta
            .get("labels")
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty)
        {
            meta.insert("labels".into(), labels);
        }
    }
    set_default(object_at(object, "spec"), "replicas", json!(1));
    if object["spec"]["template"].is_object() {
        default_template(&mut object["spec"]);
    }
}

/// What an update leaves out but the server allocated keeps its old value, as the real
/// Service strategy does: the cluster IPs and the node ports.
pub(crate) fn keep_allocated(resource: &Resource, new: &mut Value, old: &Value) {
    if resource.kind != "Service" || !resource.group.is_empty() {
        return;
    }
    let (old_spec, spec) = (&old["spec"], &mut new["spec"]);
    if spec["clusterIP"].as_str().is_none_or(str::is_empty) && old_spec["clusterIP"].is_string() {
        spec["clusterIP"] = old_spec["clusterIP"].clone();
        spec["clusterIPs"] = old_spec["clusterIPs"].clone();
    }
    let old_ports = old_spec["ports"].as_array().cloned().unwrap_or_default();
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for port in ports {
            if port["nodePort"].as_i64().is_some_and(|n| n != 0) {
                continue;
            }
            let same = old_ports
                .iter()
                .find(|o| o["port"] == port["port"] && o["protocol"] == port["protocol"]);
            if let Some(node_port) = same.and_then(|o| o["nodePort"].as_i64()) {
                port["nodePort"] = json!(node_port);
            }
        }
    }
}

/// The DefaultTolerationSeconds admission plugin: a new pod that does not tolerate the
/// `not-ready` and `unreachable` NoExecute taints (with `Exists`, or with no key) gets
/// tolerations for them that last `not_ready` and `unreachable` seconds, so its controller
/// replaces it when its node goes away.
pub(crate) fn default_toleration_seconds(object: &mut Value, (not_ready, unreachable): (u32, u32)) {
    let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
    let Some(list) = tolerations.as_array_mut() else {
        return;
    };
    for (key, seconds) in [
        ("node.kubernetes.io/not-ready", not_ready),
        ("node.kubernetes.io/unreachable", unreachable),
    ] {
        let tolerated = list.iter().any(|t| {
            let effect_matches = t["effect"].is_null() || t["effect"] == "NoExecute";
            let key_matches = t["key"] == key || (t["key"].is_null() && t["operator"] == "Exists");
            effect_matches && key_matches
        });
        if !tolerated {
            list.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds}));
        }
    }
}

/// Applies the real server's defaults to a new or updated object.
/// A Job without `manualSelector: true` selects its pods by its uid, and its template labels
/// them with its uid and name (both the `batch.kubernetes.io/` and the legacy keys), as the real
/// server's job strategy does on create. The selector is immutable, so an update keeps it.
fn generate_job_selector(object: &mut Value) {
    if object["spec"]["manualSelector"] == json!(true) || !object["spec"]["selector"].is_null() {
        return;
    }
    let (Some(uid), Some(name)) = (
        object["metadata"]["uid"].as_str().map(str::to_owned),
        object["metadata"]["name"].as_str().map(str::to_owned),
    ) else {
        return;
    };
    let template = &mut object["spec"]["template"];
    if !template["metadata"].is_object() {
        template["metadata"] = json!({});
    }
    let labels = object_at(&mut template["metadata"], "labels");
    for key in ["batch.kubernetes.io/controller-uid", "controller-uid"] {
        set_default(labels, key, json!(uid));
    }
    for key in ["batch.kubernetes.io/job-name", "job-name"] {
        set_default(labels, key, json!(name));
    }
    object["spec"]["selector"] =
        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
}

/// What only a create sets, as the strategies' `PrepareForCreate` do: a new Namespace is
/// Active and carries the `kubernetes` finalizer (which the namespace controller removes, so
/// it is no default: an update may leave it out).
/// Whether `resource` is `customresourcedefinitions.apiextensions.k8s.io`.
pub(crate) fn is_crd(resource: &Resource) -> bool {
    (resource.group, resource.kind) == ("apiextensions.k8s.io", "CustomResourceDefinition")
}

/// The CRD strategy's validation, on create or update.
fn validate_crd(object: &Value, old: Option<&Value>) -> Vec<Cause> {
    use super::apiextensions::validation;
    let typed = |v: &Value| serde_json::from_value(v.clone());
    let Ok(crd) = typed(object) else {
        return vec![Cause::invalid("spec", &Value::Null, "cannot be read")];
    };
    match old.map(typed) {
        Some(Ok(old)) => validation::validate_crd_update(&crd, &old),
        _ => validation::validate_crd(&crd),
    }
}

pub(crate) fn prepare_for_create(resource: &Resource, object: &mut Value) {
    super::storage::prepare_for_create(resource, object);
    if is_crd(resource) {
        super::apiextensions::validation::prepare_crd_for_create(object);
    }
    if super::certificates::is_csr(resource) {
        super::certificates::prepare_for_create(object);
    }
    if (resource.group, resource.kind) == ("", "ResourceQuota") {
        super::quota::prepare_for_create(object);
    }
    if (resource.group, resource.kind) == ("", "ReplicationController") {
        // The RC strategy's `PrepareForCreate`: the status is the controller's to write.
        object["status"] = json!({});
    }
    if (resource.group, resource.kind) == ("", "Namespace") {
        let spec = object_at(object, "spec");
        let finalizers = spec.entry("finalizers").or_insert_with(|| json!([]));
        if !finalizers.is_array() {
            *finalizers = json!([]);
        }
        let list = finalizers.as_array_mut().expect("an array");
        if !list.iter().any(|f| f == "kubernetes") {
            list.push(json!("kubernetes"));
        }
        // On create the status is Active, whatever the client sent.
        object["status"] = json!({"phase": "Active"});
    }
}

/// The pod strategy's `applySchedulingGatedCondition`, on create: a pod with scheduling gates
/// starts `PodScheduled=False` (`SchedulingGated`), which `kubectl get` prints as its status,
/// unless it already has a `PodScheduled` condition.
pub(crate) fn scheduling_gated(pod: &mut Value) {
    if pod["spec"]["schedulingGates"]
        .as_array()
        .is_none_or(Vec::is_empty)
    {
        return;
    }
    let conditions = &mut pod["status"]["conditions"];
    if conditions
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["type"] == "PodScheduled"))
    {
        return;
    }
    let condition = json!({
        "type": "PodScheduled",
        "status": "False",
        "lastProbeTime": null,
        "lastTransitionTime": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "reason": "SchedulingGated",
        "message": "Scheduling is blocked due to non-empty scheduling gates",
    });
    match conditions.as_array_mut() {
        Some(list) => list.push(condition),
        None => *conditions = json!([condition]),
    }
}

pub(crate) fn default(resource: &Resource, object: &mut Value) {
    super::storage::default(resource, object);
    super::webhook::config::default(resource, object);
    if is_crd(resource) {
        super::apiextensions::validation::default_crd(object);
    }
    match (resource.group, resource.kind) {
        ("", "LimitRange") => super::limitranger::default(object),
        ("", "Pod") => {
            // A mirror pod's spec is its static pod's: the ServiceAccount admission plugin
            // leaves it alone (the kubelet would find it changed).
            let mirror = object
                .pointer("/metadata/annotations/kubernetes.io~1config.mirror")
                .is_some();
            default_pod_spec(&mut object["spec"]);
            default_requests_from_limits(&mut object["spec"]);
            let spec = object["spec"].as_object_mut().expect("object");
            if !mirror {
                let account = spec
                    .get("serviceAccountName")
                    .cloned()
                    .filter(|v| !v.is_null())
                    .unwrap_or(json!("default"));
                set_default(spec, "serviceAccountName", account.clone());
                set_default(spec, "serviceAccount", account);
            }
            let status = object_at(object, "status");
            set_default(status, "phase", json!("Pending"));
            set_default(status, "qosClass", json!("BestEffort"));
        }
        ("apps", "Deployment") => {
            let spec = object_at(object, "spec");
            set_default(spec, "replicas", json!(1));
            set_default(spec, "revisionHistoryLimit", json!(10));
            set_default(spec, "progressDeadlineSeconds", json!(600));
            set_default(
                spec,
                "strategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}),
            );
            default_template(&mut object["spec"]);
        }
        ("autoscaling", "HorizontalPodAutoscaler") if resource.version == "v2" => {
            crate::apimachinery::autoscaling::default_v2(object);
        }
        ("autoscaling", "HorizontalPodAutoscaler") => {
            crate::apimachinery::autoscaling::default_v1(object);
        }
        ("apps", "ReplicaSet") => {
            set_default(object_at(object, "spec"), "replicas", json!(1));
            default_template(&mut object["spec"]);
        }
        ("", "ReplicationController") => default_replication_controller(object),
        ("", "PodTemplate") => {
            // The template is a value in Go, so it is always there to default.
            default_template(object);
        }
        ("apps", "StatefulSet") => {
            let spec = object_at(object, "spec");
            set_default(spec, "replicas", json!(1));
            set_default(spec, "podManagementPolicy", json!("OrderedReady"));
            set_default(spec, "revisionHistoryLimit", json!(10));
            // Field by field, as SetDefaults_StatefulSet: a type given without `rollingUpdate`
            // keeps none; a `rollingUpdate` without a partition gets 0.
            let strategy = object_at(&mut object["spec"], "updateStrategy");
            if strategy
                .get("type")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                strategy.insert("type".into(), json!("RollingUpdate"));
                set_default(strategy, "rollingUpdate", json!({}));
            }
            if strategy.get("type") == Some(&json!("RollingUpdate"))
                && let Some(rolling) = strategy
                    .get_mut("rollingUpdate")
                    .and_then(Value::as_object_mut)
            {
                set_default(rolling, "partition", json!(0));
            }
            let policy = object_at(&mut object["spec"], "persistentVolumeClaimRetentionPolicy");
            set_default(policy, "whenDeleted", json!("Retain"));
            set_default(policy, "whenScaled", json!("Retain"));
            // Each claim template is defaulted as a claim is (SetObjectDefaults_StatefulSet).
            if let Some(templates) = object["spec"]["volumeClaimTemplates"].as_array_mut() {
                for claim in templates.iter_mut().filter(|c| c.is_object()) {
                    set_default(object_at(claim, "spec"), "volumeMode", json!("Filesystem"));
                    set_default(object_at(claim, "status"), "phase", json!("Pending"));
                }
            }
            default_template(&mut object["spec"]);
        }
        ("apps", "DaemonSet") => {
            let spec = object_at(object, "spec");
            set_default(spec, "revisionHistoryLimit", json!(10));
            // Field by field, as SetDefaults_DaemonSet: a given strategy keeps what it says.
            let strategy = object_at(&mut object["spec"], "updateStrategy");
            set_default(strategy, "type", json!("RollingUpdate"));
            if strategy.get("type") == Some(&json!("RollingUpdate")) {
                let rolling = object_at(&mut object["spec"]["updateStrategy"], "rollingUpdate");
                set_default(rolling, "maxUnavailable", json!(1));
                set_default(rolling, "maxSurge", json!(0));
            }
            default_template(&mut object["spec"]);
        }
        ("batch", "Job") => {
            let spec = object_at(object, "spec");
            set_default(spec, "parallelism", json!(1));
            if spec.get("completions").is_none_or(Value::is_null)
                && spec.get("parallelism") == Some(&json!(1))
            {
                spec.insert("completions".into(), json!(1));
            }
            set_default(spec, "backoffLimit", json!(6));
            set_default(spec, "completionMode", json!("NonIndexed"));
            set_default(spec, "suspend", json!(false));
            set_default(spec, "manualSelector", json!(false));
            set_default(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
            default_pod_spec(&mut object["spec"]["template"]["spec"]);
            generate_job_selector(object);
        }
        ("networking.k8s.io", "IngressClass") => {
            // SetDefaults_IngressClass: parameters are cluster-scoped unless said otherwise.
            if let Some(parameters) = object["spec"]["parameters"].as_object_mut() {
                set_default(parameters, "scope", json!("Cluster"));
            }
        }
        ("batch", "CronJob") => {
            let spec = object_at(object, "spec");
            set_default(spec, "concurrencyPolicy", json!("Allow"));
            set_default(spec, "suspend", json!(false));
            set_default(spec, "successfulJobsHistoryLimit", json!(3));
            set_default(spec, "failedJobsHistoryLimit", json!(1));
            default_pod_spec(&mut object["spec"]["jobTemplate"]["spec"]["template"]["spec"]);
        }
        ("", "Service") => {
            let spec = object_at(object, "spec");
            set_default(spec, "type", json!("ClusterIP"));
            set_default(spec, "sessionAffinity", json!("None"));
            if spec.get("type") != Some(&json!("ExternalName")) {
                set_default(spec, "internalTrafficPolicy", json!("Cluster"));
                set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
                set_default(spec, "ipFamilies", json!(["IPv4"]));
            }
            if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                for p in ports {
                    if let Some(p) = p.as_object_mut() {
                        set_default(p, "protocol", json!("TCP"));
                        let port = p.get("port").cloned().unwrap_or(Value::Null);
                        set_default(p, "targetPort", port);
                    }
                }
            }
            object_at(object, "status")
                .entry("loadBalancer")
                .or_insert_with(|| json!({}));
        }
        ("", "Secret") => {
            let m = object.as_object_mut().expect("object");
            set_default(m, "type", json!("Opaque"));
        }
        ("", "Namespace") => {
            set_default(object_at(object, "status"), "phase", json!("Active"));
            let name = object["metadata"]["name"].clone();
            let labels = object_at(&mut object["metadata"], "labels");
            labels.insert("kubernetes.io/metadata.name".into(), name);
        }
        ("", "PersistentVolumeClaim") => {
            let spec = object_at(object, "spec");
            set_default(spec, "volumeMode", json!("Filesystem"));
            set_default(object_at(object, "status"), "phase", json!("Pending"));
        }
        ("", "Node") => {
            set_default(
                object_at(object, "status"),
                "daemonEndpoints",
                json!({"kubeletEndpoint": {"Port": 0}}),
            );
        }
        _ => {}
    }
}

/// The DefaultIngressClass admission plugin: an Ingress created with neither
/// `spec.ingressClassName` nor the `kubernetes.io/ingress.class` annotation gets the default
/// IngressClass's name when exactly one is marked default, and is refused when several are
/// (see [`default_ingress_class`]).
pub(crate) async fn default_ingress_class_of(
    api: &super::ApiServer,
    ingress: &mut Value,
) -> Result<(), super::errors::ApiError> {
    if ingress["spec"]["ingressClassName"].is_string()
        || ingress["metadata"]["annotations"]["kubernetes.io/ingress.class"].is_string()
    {
        return Ok(());
    }
    let classes =
        super::resources::find("networking.k8s.io", "v1", "ingressclasses").expect("served");
    let existing = api
        .store()
        .range(&crate::store::RangeRequest::prefix(
            classes.key_prefix(None),
        ))
        .await
        .map_err(|e| super::errors::from_store(e, "ingressclasses.networking.k8s.io", ""))?;
    let objects: Vec<Value> = existing
        .kvs
        .iter()
        .filter_map(|kv| super::decode(kv).ok())
        .collect();
    match default_ingress_class(&objects) {
        Ok(Some(name)) => ingress["spec"]["ingressClassName"] = json!(name),
        Ok(None) => {}
        // admission.NewForbidden around an InternalError, in upstream's words.
        Err(n) => {
            return Err(super::errors::ApiError::Forbidden {
                resource: "ingresses.networking.k8s.io".into(),
                name: ingress["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                detail: format!(
                    "Internal error occurred: {n} default IngressClasses were found, only 1 allowed"
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::resources::find;

    #[test]
    fn a_limit_without_a_request_is_requested_and_qos_follows() {
        let pods = find("", "v1", "pods").unwrap();
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "c", "image": "nginx", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}},
        ]}});
        default(pods, &mut pod);
        assert_eq!(
            pod["spec"]["containers"][0]["resources"]["requests"],
            json!({"cpu": "500m", "memory": "1Gi"})
        );
        assert_eq!(pod_qos(&pod), "Burstable");
        pod["spec"]["containers"][0]["resources"]["requests"]["cpu"] = json!("1000m");
        assert_eq!(pod_qos(&pod), "Guaranteed");
        pod["spec"]["containers"][0]["resources"] = json!({});
        assert_eq!(pod_qos(&pod), "BestEffort");
    }

    #[test]
    fn a_gated_pod_starts_scheduling_gated_and_gates_can_only_go() {
        let mut pod = json!({"spec": {"schedulingGates": [{"name": "a"}]}, "status": {}});
        scheduling_gated(&mut pod);
        let conditions = pod["status"]["conditions"].as_array().unwrap();
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0]["reason"], "SchedulingGated");
        assert_eq!(conditions[0]["status"], "False");
        // Not twice, and not on an ungated pod.
        scheduling_gated(&mut pod);
        assert_eq!(pod["status"]["conditions"].as_array().unwrap().len(), 1);
        let mut free = json!({"spec": {"schedulingGates": []}, "status": {}});
        scheduling_gated(&mut free);
        assert!(free["status"]["conditions"].is_null());

        let mut causes = Vec::new();
        only_deleted_scheduling_gates(
            &json!([{"name": "a"}, {"name": "c"}]),
            &json!([{"name": "a"}, {"name": "b"}]),
            &mut causes,
        );
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "spec.schedulingGates[1].name");
        assert_eq!(
            causes[0].message,
            "Forbidden: only deletion is allowed, but found new scheduling gate 'c'"
        );
        let mut causes = Vec::new();
        validate_scheduling_gates(&json!([{"name": "a"}, {"name": "a"}]), &mut causes);
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "spec.schedulingGates[1]");
        assert_eq!(causes[0].message, "Duplicate value: \"a\"");
    }

    #[test]
    fn pod_defaults_are_the_real_ones() {
        let pods = find("", "v1", "pods").unwrap();
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "nginx", "ports": [{"containerPort": 80}]}, {"name": "d", "image": "busybox:1.36"}]}});
        default(pods, &mut pod);
        default_toleration_seconds(&mut pod, (300, 7));
        assert_eq!(pod["spec"]["restartPolicy"], "Always");
        assert_eq!(pod["spec"]["terminationGracePeriodSeconds"], 30);
        assert_eq!(pod["spec"]["serviceAccountName"], "default");
        assert_eq!(pod["spec"]["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(
            pod["spec"]["containers"][1]["imagePullPolicy"],
            "IfNotPresent"
        );
        assert_eq!(pod["spec"]["containers"][0]["ports"][0]["protocol"], "TCP");
        assert_eq!(pod["spec"]["tolerations"].as_array().unwrap().len(), 2);
        assert_eq!(
            pod["spec"]["tolerations"][1]["key"],
            "node.kubernetes.io/unreachable"
        );
        assert_eq!(pod["spec"]["tolerations"][1]["tolerationSeconds"], 7);
        assert_eq!(pod["status"]["phase"], "Pending");
        // A pod that tolerates everything gets nothing more.
        let mut tolerant = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        default_toleration_seconds(&mut tolerant, (300, 300));
        assert_eq!(tolerant["spec"]["tolerations"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn daemonset_strategy_defaults_field_by_field() {
        let sets = find("apps", "v1", "daemonsets").unwrap();
        let cases = [
            (
                json!(null),
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
            ),
            (
                json!({"rollingUpdate": {"maxSurge": "25%"}}),
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": "25%"}}),
            ),
            (json!({"type": "OnDelete"}), json!({"type": "OnDelete"})),
        ];
        for (given, want) in cases {
            let mut ds = json!({"metadata": {"name": "d"}, "spec": {"updateStrategy": given, "template": {"spec": {"containers": []}}}});
            default(sets, &mut ds);
            assert_eq!(ds["spec"]["updateStrategy"], want);
            assert_eq!(ds["spec"]["revisionHistoryLimit"], 10);
        }
    }

    #[test]
    fn statefulset_defaults_field_by_field_and_validation() {
        let sets = find("apps", "v1", "statefulsets").unwrap();
        let set = |strategy: Value, extra: Value| {
            let mut set = json!({"metadata": {"name": "web"}, "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {"accessModes": ["ReadWriteOnce"]}}],
                "updateStrategy": strategy,
            }});
            if let (Some(spec), Some(extra)) = (set["spec"].as_object_mut(), extra.as_object()) {
                spec.extend(extra.clone());
            }
            default(sets, &mut set);
            set
        };
        for (given, want) in [
            (
                json!(null),
                json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
            ),
            (
                json!({"type": "RollingUpdate"}),
                json!({"type": "RollingUpdate"}),
            ),
            (
                json!({"type": "RollingUpdate", "rollingUpdate": {}}),
                json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
            ),
            (json!({"type": "OnDelete"}), json!({"type": "OnDelete"})),
        ] {
            assert_eq!(set(given, json!({}))["spec"]["updateStrategy"], want);
        }
        let defaulted = set(
            json!(null),
            json!({"persistentVolumeClaimRetentionPolicy": {"whenScaled": "Delete"}}),
        );
        let spec = &defaulted["spec"];
        assert_eq!(spec["replicas"], 1);
        assert_eq!(spec["podManagementPolicy"], "OrderedReady");
        assert_eq!(spec["revisionHistoryLimit"], 10);
        assert_eq!(
            spec["persistentVolumeClaimRetentionPolicy"],
            json!({"whenDeleted": "Retain", "whenScaled": "Delete"})
        );
        assert_eq!(
            spec["volumeClaimTemplates"][0]["spec"]["volumeMode"],
            "Filesystem"
        );
        assert_eq!(
            spec["volumeClaimTemplates"][0]["status"]["phase"],
            "Pending"
        );
        assert!(validate(sets, &defaulted, None).is_empty());

        let causes = |object: &Value, old: Option<&Value>| -> Vec<(String, String)> {
            validate(sets, object, old)
                .into_iter()
                .map(|c| (c.field, c.message))
                .collect()
        };
        let bad = set(
            json!({"type": "OnDelete", "rollingUpdate": {"partition": 1}}),
            json!({"podManagementPolicy": "Sometimes", "minReadySeconds": -1,
                   "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Keep"}}),
        );
        assert_eq!(
            causes(&bad, None),
            [
                (
                    "spec.podManagementPolicy".to_owned(),
                    "Invalid value: \"Sometimes\": must be 'OrderedReady' or 'Parallel'".to_owned()
                ),
                (
                    "spec.updateStrategy.rollingUpdate".to_owned(),
                    "Invalid value: {\"partition\":1}: only allowed for updateStrategy 'RollingUpdate'"
                        .to_owned()
                ),
                (
                    "spec.persistentVolumeClaimRetentionPolicy.whenDeleted".to_owned(),
                    "Unsupported value: \"Keep\": supported values: \"Retain\", \"Delete\"".to_owned()
                ),
                (
                    "spec.minReadySeconds".to_owned(),
                    "Invalid value: -1: must be greater than or equal to 0".to_owned()
                ),
            ]
        );
        // Only replicas, ordinals, template, updateStrategy, the retention policy and
        // minReadySeconds may change.
        let mut scaled = defaulted.clone();
        scaled["spec"]["replicas"] = json!(3);
        scaled["spec"]["template"]["spec"]["containers"][0]["image"] = json!("y");
        assert!(causes(&scaled, Some(&defaulted)).is_empty());
        let mut renamed = defaulted.clone();
        renamed["spec"]["serviceName"] = json!("other");
        assert_eq!(
            causes(&renamed, Some(&defaulted)),
            [(
                "spec".to_owned(),
                "Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden".to_owned()
            )]
        );
    }

    #[test]
    fn whole_object_sizes_are_bounded_as_upstream() {
        let cm = find("", "v1", "configmaps").unwrap();
        let secrets = find("", "v1", "secrets").unwrap();
        let messages = |resource, object: Value| -> Vec<String> {
            validate(resource, &object, None)
                .into_iter()
                .map(|c| format!("{}: {}", c.field, c.message))
                .collect()
        };
        let mib = MAX_SECRET_SIZE;
        let fits = json!({"metadata": {"name": "c"}, "data": {"a": "x".repeat(mib / 2), "b": "x".repeat(mib / 2)}});
        assert!(messages(cm, fits).is_empty());
        let over = json!({"metadata": {"name": "c"}, "data": {"a": "x".repeat(mib / 2)}, "binaryData": {"b": "eHh4".repeat(mib / 6 + 1)}});
        assert_eq!(
            messages(cm, over),
            ["[]: Too long: may not be more than 1048576 bytes"]
        );
        // A Secret's data counts decoded: 4 base64 characters are 3 bytes.
        let fits = json!({"metadata": {"name": "s"}, "data": {"a": "eHh4".repeat(mib / 3)}});
        assert!(messages(secrets, fits).is_empty());
        let over = json!({"metadata": {"name": "s"}, "data": {"a": "eHh4".repeat(mib / 3 + 1)}});
        assert_eq!(
            messages(secrets, over),
            ["data: Too long: may not be more than 1048576 bytes"]
        );
        let annotated =
            json!({"metadata": {"name": "c", "annotations": {"a": "x".repeat(256 << 10)}}});
        assert_eq!(
            messages(cm, annotated),
            ["metadata.annotations: Too long: may not be more than 262144 bytes"]
        );
    }

    #[test]
    fn validation_names_the_field() {
        let pods = find("", "v1", "pods").unwrap();
        let pod = json!({"metadata": {"name": "Bad_Name", "labels": {"ok": "-bad"}}, "spec": {"containers": [{"name": "c", "image": ""}, {"name": "c", "image": "x", "ports": [{"containerPort": 70000}]}]}});
        let causes: Vec<(String, &str)> = validate(pods, &pod, None)
            .into_iter()
            .map(|c| (c.field, c.reason))
            .collect();
        assert_eq!(
            causes,
            [
                ("metadata.name".to_owned(), "FieldValueInvalid"),
                ("metadata.labels".to_owned(), "FieldValueInvalid"),
                ("spec.containers[0].image".to_owned(), "FieldValueRequired"),
                ("spec.containers[1].name".to_owned(), "FieldValueDuplicate"),
                (
                    "spec.containers[1].ports[0].containerPort".to_owned(),
                    "FieldValueInvalid"
                ),
            ]
        );
        let deploy = find("apps", "v1", "deployments").unwrap();
        let d = json!({"metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"app": "a"}}, "template": {"metadata": {"labels": {"app": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        let causes = validate(deploy, &d, None);
        assert_eq!(causes[0].field, "spec.template.metadata.labels");
        assert_eq!(
            causes[0].message,
            r#"Invalid value: map[string]string{"app":"b"}: `selector` does not match template `labels`"#
        );
        let mut changed = d.clone();
        changed["spec"]["selector"]["matchLabels"]["app"] = json!("b");
        let causes = validate(deploy, &changed, Some(&d));
        assert!(
            causes
                .iter()
                .any(|c| c.field == "spec.selector" && c.message.contains("field is immutable"))
        );
    }

    /// `(field, message)` of each cause, as `Status.details.causes` carries them.
    fn causes_of(causes: Vec<Cause>) -> Vec<(String, String)> {
        causes.into_iter().map(|c| (c.field, c.message)).collect()
    }

    #[test]
    fn replication_controllers_default_as_set_defaults_replication_controller() {
        let rcs = find("", "v1", "replicationcontrollers").unwrap();
        // Selector and labels from the template's labels; one replica; the pod spec's
        // defaults in the template.
        let mut rc = json!({"metadata": {"name": "web"}, "spec": {"template": {
            "metadata": {"labels": {"app": "web", "tier": "front"}},
            "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}}});
        default(rcs, &mut rc);
        let labels = json!({"app": "web", "tier": "front"});
        assert_eq!(rc["spec"]["selector"], labels);
        assert_eq!(rc["metadata"]["labels"], labels);
        assert_eq!(rc["spec"]["replicas"], 1);
        let pod = &rc["spec"]["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Always");
        assert_eq!(pod["dnsPolicy"], "ClusterFirst");
        assert_eq!(pod["containers"][0]["imagePullPolicy"], "IfNotPresent");
        assert!(validate(rcs, &rc, None).is_empty());
        // What is given stays: a selector, labels, zero replicas.
        let mut given = json!({"metadata": {"name": "web", "labels": {"mine": "x"}}, "spec": {
            "replicas": 0, "selector": {"app": "web"},
            "template": {"metadata": {"labels": {"app": "web", "v": "2"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        default(rcs, &mut given);
        assert_eq!(given["spec"]["selector"], json!({"app": "web"}));
        assert_eq!(given["metadata"]["labels"], json!({"mine": "x"}));
        assert_eq!(given["spec"]["replicas"], 0);
        // No template: nothing made up for it, and no selector to take.
        let mut bare = json!({"metadata": {"name": "web"}, "spec": {}});
        default(rcs, &mut bare);
        assert!(bare["spec"]["template"].is_null());
        assert!(bare["spec"]["selector"].is_null());
        assert_eq!(bare["spec"]["replicas"], 1);
    }

    #[test]
    fn replication_controller_validation_speaks_upstreams_words() {
        let rcs = find("", "v1", "replicationcontrollers").unwrap();
        let rc = |spec: Value| {
            let mut rc = json!({"metadata": {"name": "web"}, "spec": spec});
            default(rcs, &mut rc);
            causes_of(validate(rcs, &rc, None))
        };
        let containers = json!([{"name": "c", "image": "i"}]);
        assert_eq!(
            rc(json!({"selector": {"app": "web"}, "template": {
                "metadata": {"labels": {"app": "other", "tier": "x"}}, "spec": {"containers": containers}}})),
            [(
                "spec.template.metadata.labels".to_owned(),
                r#"Invalid value: map[string]string{"app":"other", "tier":"x"}: `selector` does not match template `labels`"#.to_owned()
            )]
        );
        assert_eq!(
            rc(json!({"selector": {"app": "web"}, "template": {"spec": {"containers": containers}}})),
            [(
                "spec.template.metadata.labels".to_owned(),
                "Invalid value: map[string]string(nil): `selector` does not match template `labels`".to_owned()
            )]
        );
        assert_eq!(
            rc(json!({})),
            [
                ("spec.selector".to_owned(), "Required value".to_owned()),
                ("spec.template".to_owned(), "Required value".to_owned()),
            ]
        );
        assert_eq!(
            rc(json!({"replicas": -1, "minReadySeconds": -2, "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": containers, "restartPolicy": "Never", "activeDeadlineSeconds": 5}}})),
            [
                (
                    "spec.minReadySeconds".to_owned(),
                    "Invalid value: -2: must be greater than or equal to 0".to_owned()
                ),
                (
                    "spec.replicas".to_owned(),
                    "Invalid value: -1: must be greater than or equal to 0".to_owned()
                ),
                (
                    "spec.template.spec.restartPolicy".to_owned(),
                    r#"Unsupported value: "Never": supported values: "Always""#.to_owned()
                ),
                (
                    "spec.template.spec.activeDeadlineSeconds".to_owned(),
                    "Forbidden: activeDeadlineSeconds in ReplicationController is not Supported"
                        .to_owned()
                ),
            ]
        );
        // The template's own labels are checked where upstream names them.
        let mut bad_label = json!({"metadata": {"name": "web", "labels": {"ok": "yes"}}, "spec": {
            "template": {"metadata": {"labels": {"app": "-web"}}, "spec": {"containers": containers}}}});
        default(rcs, &mut bad_label);
        let fields: Vec<String> = causes_of(validate(rcs, &bad_label, None))
            .into_iter()
            .map(|(field, _)| field)
            .collect();
        assert_eq!(fields, ["spec.template.labels"]);
        // The selector may change (an RC's is not immutable), the status is checked.
        let mut old = json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"},
            "template": {"metadata": {"labels": {"app": "web", "v": "1"}}, "spec": {"containers": containers}}}});
        default(rcs, &mut old);
        let mut new = old.clone();
        new["spec"]["selector"] = json!({"v": "1"});
        assert!(validate(rcs, &new, Some(&old)).is_empty());
        new["status"] = json!({"replicas": 1, "readyReplicas": 2, "availableReplicas": 2, "fullyLabeledReplicas": -1});
        assert_eq!(
            causes_of(validate(rcs, &new, Some(&old))),
            [
                (
                    "status.fullyLabeledReplicas".to_owned(),
                    "Invalid value: -1: must be greater than or equal to 0".to_owned()
                ),
                (
                    "status.readyReplicas".to_owned(),
                    "Invalid value: 2: cannot be greater than status.replicas".to_owned()
                ),
                (
                    "status.availableReplicas".to_owned(),
                    "Invalid value: 2: cannot be greater than status.replicas".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn pod_templates_default_and_validate_their_template() {
        let templates = find("", "v1", "podtemplates").unwrap();
        let mut t = json!({"metadata": {"name": "t"}, "template": {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], "restartPolicy": "Never"}}});
        default(templates, &mut t);
        assert_eq!(t["template"]["spec"]["dnsPolicy"], "ClusterFirst");
        assert_eq!(t["template"]["spec"]["restartPolicy"], "Never");
        assert_eq!(
            t["template"]["spec"]["containers"][0]["imagePullPolicy"],
            "Always"
        );
        assert!(validate(templates, &t, None).is_empty());
        let mut empty = json!({"metadata": {"name": "t"}});
        default(templates, &mut empty);
        assert_eq!(
            causes_of(validate(templates, &empty, None)),
            [(
                "template.spec.containers".to_owned(),
                "Required value".to_owned()
            )]
        );
        t["template"]["spec"]["ephemeralContainers"] =
            json!([{"name": "debug", "image": "busybox"}]);
        assert_eq!(
            causes_of(validate(templates, &t, None)),
            [(
                "template.spec.ephemeralContainers".to_owned(),
                "Forbidden: ephemeral containers not allowed in pod template".to_owned()
            )]
        );
    }

    #[test]
    fn ingress_validation_speaks_upstreams_words() {
        let ingresses = find("networking.k8s.io", "v1", "ingresses").unwrap();
        let backend = json!({"service": {"name": "web", "port": {"number": 80}}});
        let ing = json!({"metadata": {"name": "i"}, "spec": {
            "ingressClassName": "Bad_Class",
            "tls": [{"hosts": ["*.ok.com", "10.0.0.1"]}],
            "rules": [
                {"host": "*.foo.com", "http": {"paths": [
                    {"path": "/a", "backend": backend},
                    {"path": "foo", "pathType": "Prefix", "backend": backend},
                    {"path": "/x", "pathType": "Regex", "backend": backend},
                    {"path": "/b//c", "pathType": "Exact", "backend": {}},
                    {"path": "/d", "pathType": "ImplementationSpecific", "backend": {"service": {"name": "web", "port": {}}}},
                    {"path": "/e", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"name": "http", "number": 80}}}},
                ]}},
                {"host": "a.*.com", "http": {"paths": []}},
            ],
        }});
        let got: Vec<(String, String)> = validate(ingresses, &ing, None)
            .into_iter()
            .map(|c| (c.field, c.message))
            .collect();
        let want = [
            (
                "spec.rules[0].http.paths[0].pathType",
                "Required value: pathType must be specified",
            ),
            (
                "spec.rules[0].http.paths[1].path",
                "Invalid value: \"foo\": must be an absolute path",
            ),
            (
                "spec.rules[0].http.paths[2].pathType",
                "Unsupported value: \"Regex\": supported values: \"Exact\", \"ImplementationSpecific\", \"Prefix\"",
            ),
            (
                "spec.rules[0].http.paths[3].path",
                "Invalid value: \"/b//c\": must not contain '//'",
            ),
            (
                "spec.rules[0].http.paths[3].backend",
                "Invalid value: \"\": resource or service backend is required",
            ),
            (
                "spec.rules[0].http.paths[4].backend",
                "Required value: port name or number is required",
            ),
            (
                "spec.rules[0].http.paths[5].backend",
                "Invalid value: \"\": cannot set both port name & port number",
            ),
            (
                "spec.rules[1].host",
                "Invalid value: \"a.*.com\": a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character (e.g. '*.example.com', regex used for validation is '\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
            ),
            ("spec.rules[1].http.paths", "Required value"),
            (
                "spec.tls[0].hosts[1]",
                "Invalid value: \"10.0.0.1\": must be a DNS name, not an IP address",
            ),
        ];
        let got_fields: Vec<(&str, &str)> = got
            .iter()
            .filter(|(f, _)| f != "spec.ingressClassName")
            .map(|(f, m)| (f.as_str(), m.as_str()))
            .collect();
        assert_eq!(got_fields, want);
        assert!(got.iter().any(|(f, _)| f == "spec.ingressClassName"));
        let empty = json!({"metadata": {"name": "i"}, "spec": {}});
        assert_eq!(validate(ingresses, &empty, None)[0].field, "spec.rules");

        let classes = find("networking.k8s.io", "v1", "ingressclasses").unwrap();
        let class = json!({"metadata": {"name": "c"}, "spec": {"controller": "nope"}});
        assert_eq!(
            validate(classes, &class, None)[0].message,
            "Invalid value: \"nope\": must be a domain-prefixed path (such as \"acme.io/foo\")"
        );
        let good = json!({"metadata": {"name": "c"}, "spec": {"controller": "acme.io/ingress"}});
        assert!(validate(classes, &good, None).is_empty());
        let mut changed = good.clone();
        changed["spec"]["controller"] = json!("acme.io/other");
        assert_eq!(
            validate(classes, &changed, Some(&good))[0].field,
            "spec.controller"
        );
    }

    #[test]
    fn exactly_one_default_ingress_class_is_the_default() {
        let class = |name: &str, default: Option<&str>| {
            let mut c = json!({"metadata": {"name": name}});
            if let Some(d) = default {
                c["metadata"]["annotations"] = json!({IS_DEFAULT_CLASS: d});
            }
            c
        };
        assert_eq!(default_ingress_class(&[]), Ok(None));
        let classes = [
            class("a", Some("true")),
            class("b", Some("false")),
            class("c", None),
        ];
        assert_eq!(default_ingress_class(&classes), Ok(Some("a".to_owned())));
        let more = [class("a", Some("true")), class("z", Some("true"))];
        assert_eq!(default_ingress_class(&more), Err(2));
    }
}
