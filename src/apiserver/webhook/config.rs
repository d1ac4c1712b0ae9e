//! The strategy of `ValidatingWebhookConfiguration` and `MutatingWebhookConfiguration`
//! (`admissionregistration.k8s.io/v1`): upstream's defaults (`SetDefaults_ValidatingWebhook`,
//! `SetDefaults_MutatingWebhook`, `SetDefaults_ServiceReference`, `SetDefaults_Rule`) and
//! `ValidateValidatingWebhookConfiguration` / `ValidateMutatingWebhookConfiguration` (and their
//! `Update` forms, which tolerate what the stored object already broke), in upstream's field
//! paths and words. `matchConditions` are checked for names and presence only: there is no CEL
//! compiler here.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::apiserver::admission::{DNS1123_SUBDOMAIN, is_dns1123_subdomain, qualified_name_causes};
use crate::apiserver::errors::Cause;
use crate::apiserver::resources::Resource;

/// The group both kinds are served in.
pub(crate) const GROUP: &str = "admissionregistration.k8s.io";

/// Whether `resource` is one of the two webhook configurations.
pub(crate) fn is_configuration(resource: &Resource) -> bool {
    resource.group == GROUP
        && matches!(
            resource.kind,
            "ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration"
        )
}

fn set_default(map: &mut Map<String, Value>, key: &str, value: Value) {
    if map.get(key).is_none_or(Value::is_null) {
        map.insert(key.to_owned(), value);
    }
}

/// Upstream's defaults for every webhook of a configuration: `failurePolicy: Fail`,
/// `matchPolicy: Equivalent`, empty selectors (which select everything), `timeoutSeconds: 10`,
/// a mutating webhook's `reinvocationPolicy: Never`, a service's port 443 and each rule's
/// `scope: "*"`.
pub(crate) fn default(resource: &Resource, object: &mut Value) {
    if !is_configuration(resource) {
        return;
    }
    let mutating = resource.kind == "MutatingWebhookConfiguration";
    let Some(hooks) = object["webhooks"].as_array_mut() else {
        return;
    };
    for hook in hooks {
        let Some(map) = hook.as_object_mut() else {
            continue;
        };
        set_default(map, "failurePolicy", json!("Fail"));
        set_default(map, "matchPolicy", json!("Equivalent"));
        set_default(map, "namespaceSelector", json!({}));
        set_default(map, "objectSelector", json!({}));
        set_default(map, "timeoutSeconds", json!(10));
        if mutating {
            set_default(map, "reinvocationPolicy", json!("Never"));
        }
        if let Some(service) = map
            .get_mut("clientConfig")
            .and_then(|c| c.get_mut("service"))
            .and_then(Value::as_object_mut)
        {
            set_default(service, "port", json!(443));
        }
        if let Some(rules) = map.get_mut("rules").and_then(Value::as_array_mut) {
            for rule in rules.iter_mut().filter_map(Value::as_object_mut) {
                set_default(rule, "scope", json!("*"));
            }
        }
    }
}

/// The AdmissionReview versions this server sends (`AcceptedAdmissionReviewVersions`).
pub(crate) const REVIEW_VERSIONS: &[&str] = &["v1", "v1beta1"];

const DNS1035_LABEL: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const URL_FORM: &str = "; desired format: https://host[/path]";

/// What an update tolerates because the stored object already had it
/// (`ValidateValidatingWebhookConfigurationUpdate`'s options).
struct Options {
    require_no_side_effects: bool,
    require_recognized_version: bool,
    require_unique_names: bool,
}

impl Options {
    fn of(old: Option<&Value>) -> Self {
        let Some(old) = old else {
            return Options {
                require_no_side_effects: true,
                require_recognized_version: true,
                require_unique_names: true,
            };
        };
        let hooks = old["webhooks"].as_array().cloned().unwrap_or_default();
        let mut names = BTreeSet::new();
        Options {
            require_no_side_effects: hooks
                .iter()
                .all(|h| matches!(h["sideEffects"].as_str(), Some("None" | "NoneOnDryRun"))),
            require_recognized_version: hooks.iter().all(|h| {
                let versions = strings(&h["admissionReviewVersions"]);
                versions.is_empty()
                    || versions
                        .iter()
                        .any(|v| REVIEW_VERSIONS.contains(&v.as_str()))
            }),
            require_unique_names: hooks
                .iter()
                .all(|h| names.insert(h["name"].as_str().unwrap_or_default().to_owned())),
        }
    }
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| v.as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Go's `%#v` of a string slice: `[]string{"a", "b"}` (of a named element type, `elem`).
fn go_strings(elem: &str, values: &[String]) -> String {
    let shown: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
    format!("[]{elem}{{{}}}", shown.join(", "))
}

/// `ValidateValidatingWebhookConfiguration` / `ValidateMutatingWebhookConfiguration` (with
/// `old`, their `Update` forms), after the object's metadata was checked.
pub(crate) fn validate(resource: &Resource, object: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    if !is_configuration(resource) {
        return causes;
    }
    let mutating = resource.kind == "MutatingWebhookConfiguration";
    let options = Options::of(old);
    let mut names = BTreeSet::new();
    for (i, hook) in object["webhooks"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let path = format!("webhooks[{i}]");
        validate_webhook(hook, mutating, &options, &path, &mut causes);
        validate_review_versions(
            &hook["admissionReviewVersions"],
            options.require_recognized_version,
            &format!("{path}.admissionReviewVersions"),
            &mut causes,
        );
        let name = hook["name"].as_str().unwrap_or_default();
        if options.require_unique_names && !name.is_empty() && !names.insert(name.to_owned()) {
            causes.push(Cause::duplicate(format!("{path}.name"), &json!(name)));
        }
    }
    causes
}

fn validate_webhook(
    hook: &Value,
    mutating: bool,
    options: &Options,
    path: &str,
    causes: &mut Vec<Cause>,
) {
    fully_qualified_name(
        &format!("{path}.name"),
        hook["name"].as_str().unwrap_or_default(),
        causes,
    );
    for (j, rule) in hook["rules"].as_array().into_iter().flatten().enumerate() {
        validate_rule(rule, &format!("{path}.rules[{j}]"), causes);
    }
    let one_of = |field: &str, supported: &[&str], causes: &mut Vec<Cause>| {
        if let Some(value) = hook[field].as_str()
            && !supported.contains(&value)
        {
            causes.push(Cause::unsupported(
                format!("{path}.{field}"),
                &json!(value),
                supported,
            ));
        }
    };
    one_of("failurePolicy", &["Fail", "Ignore"], causes);
    one_of("matchPolicy", &["Equivalent", "Exact"], causes);
    let side_effects: &[&str] = if options.require_no_side_effects {
        &["None", "NoneOnDryRun"]
    } else {
        &["None", "NoneOnDryRun", "Some", "Unknown"]
    };
    // The typed round trip makes a missing `sideEffects` an empty one.
    match hook["sideEffects"].as_str().filter(|s| !s.is_empty()) {
        None => causes.push(Cause::required_because(
            format!("{path}.sideEffects"),
            &format!("must specify one of {}", side_effects.join(", ")),
        )),
        Some(_) => one_of("sideEffects", side_effects, causes),
    }
    if let Some(timeout) = hook["timeoutSeconds"].as_i64()
        && !(1..=30).contains(&timeout)
    {
        causes.push(Cause::invalid(
            format!("{path}.timeoutSeconds"),
            &json!(timeout),
            "the timeout value must be between 1 and 30 seconds",
        ));
    }
    for selector in ["namespaceSelector", "objectSelector"] {
        if hook[selector].is_object() {
            crate::apiserver::validation::label_selector(
                &format!("{path}.{selector}"),
                &hook[selector],
                causes,
            );
        }
    }
    if mutating {
        one_of("reinvocationPolicy", &["IfNeeded", "Never"], causes);
    }
    let client = &hook["clientConfig"];
    let client_path = format!("{path}.clientConfig");
    match (client["url"].as_str(), client["service"].is_object()) {
        (Some(url), false) => validate_url(&format!("{client_path}.url"), url, causes),
        (None, true) => validate_service(
            &format!("{client_path}.service"),
            &client["service"],
            causes,
        ),
        _ => causes.push(Cause::required_because(
            client_path,
            "exactly one of url or service is required",
        )),
    }
    validate_match_conditions(&hook["matchConditions"], path, causes);
}

/// `IsFullyQualifiedName`: a DNS subdomain of at least three segments.
fn fully_qualified_name(path: &str, name: &str, causes: &mut Vec<Cause>) {
    if name.is_empty() {
        causes.push(Cause::required(path));
    } else if name.len() > 253 {
        causes.push(Cause::invalid(
            path,
            &json!(name),
            "must be no more than 253 characters",
        ));
    } else if !is_dns1123_subdomain(name) {
        causes.push(Cause::invalid(path, &json!(name), DNS1123_SUBDOMAIN));
    } else if name.split('.').count() < 3 {
        causes.push(Cause::invalid(
            path,
            &json!(name),
            "should be a domain with at least three segments separated by dots",
        ));
    }
}

/// `validateRuleWithOperations`, then `validateRule` with subresources allowed.
fn validate_rule(rule: &Value, path: &str, causes: &mut Vec<Cause>) {
    let operations = strings(&rule["operations"]);
    let at = |field: &str| format!("{path}.{field}");
    if operations.is_empty() {
        causes.push(Cause::required(at("operations")));
    }
    if operations.len() > 1 && operations.iter().any(|o| o == "*") {
        causes.push(Cause::invalid_shown(
            at("operations"),
            &go_strings("admissionregistration.OperationType", &operations),
            "if '*' is present, must not specify other operations",
        ));
    }
    for (i, operation) in operations.iter().enumerate() {
        const SUPPORTED: &[&str] = &["*", "CONNECT", "CREATE", "DELETE", "UPDATE"];
        if !SUPPORTED.contains(&operation.as_str()) {
            causes.push(Cause::unsupported(
                format!("{path}.operations[{i}]"),
                &json!(operation),
                SUPPORTED,
            ));
        }
    }
    let groups = strings(&rule["apiGroups"]);
    if groups.is_empty() {
        causes.push(Cause::required(at("apiGroups")));
    }
    if groups.len() > 1 && groups.iter().any(|g| g == "*") {
        causes.push(Cause::invalid_shown(
            at("apiGroups"),
            &go_strings("string", &groups),
            "if '*' is present, must not specify other API groups",
        ));
    }
    let versions = strings(&rule["apiVersions"]);
    if versions.is_empty() {
        causes.push(Cause::required(at("apiVersions")));
    }
    if versions.len() > 1 && versions.iter().any(|v| v == "*") {
        causes.push(Cause::invalid_shown(
            at("apiVersions"),
            &go_strings("string", &versions),
            "if '*' is present, must not specify other API versions",
        ));
    }
    for (i, version) in versions.iter().enumerate() {
        if version.is_empty() {
            causes.push(Cause::required(format!("{path}.apiVersions[{i}]")));
        }
    }
    validate_resources(&strings(&rule["resources"]), &at("resources"), causes);
    if let Some(scope) = rule["scope"].as_str()
        && !matches!(scope, "*" | "Cluster" | "Namespaced")
    {
        causes.push(Cause::unsupported(
            at("scope"),
            &json!(scope),
            &["*", "Cluster", "Namespaced"],
        ));
    }
}

/// `validateResources`: `resource`, `resource/subresource`, `*`, `*/*`, `x/*`, `*/x`, without
/// a wildcard making another entry redundant.
fn validate_resources(resources: &[String], path: &str, causes: &mut Vec<Cause>) {
    if resources.is_empty() {
        causes.push(Cause::required(path));
    }
    let mut with_wildcard_sub = BTreeSet::new();
    let mut sub_with_wildcard_res = BTreeSet::new();
    let (mut double, mut single, mut plain) = (false, false, false);
    for (i, entry) in resources.iter().enumerate() {
        let at = format!("{path}[{i}]");
        if entry.is_empty() {
            causes.push(Cause::required(at));
            continue;
        }
        double |= entry == "*/*";
        single |= entry == "*";
        let Some((res, sub)) = entry.split_once('/') else {
            plain = entry != "*";
            continue;
        };
        if with_wildcard_sub.contains(res) {
            causes.push(Cause::invalid(
                &at,
                &json!(entry),
                format!("if '{res}/*' is present, must not specify {entry}"),
            ));
        }
        if sub_with_wildcard_res.contains(sub) {
            causes.push(Cause::invalid(
                &at,
                &json!(entry),
                format!("if '*/{sub}' is present, must not specify {entry}"),
            ));
        }
        if sub == "*" {
            with_wildcard_sub.insert(res.to_owned());
        }
        if res == "*" {
            sub_with_wildcard_res.insert(sub.to_owned());
        }
    }
    if resources.len() > 1 && double {
        causes.push(Cause::invalid_shown(
            path,
            &go_strings("string", resources),
            "if '*/*' is present, must not specify other resources",
        ));
    }
    if single && plain {
        causes.push(Cause::invalid_shown(
            path,
            &go_strings("string", resources),
            "if '*' is present, must not specify other resources without subresources",
        ));
    }
}

/// `validateAdmissionReviewVersions`.
fn validate_review_versions(
    versions: &Value,
    require_recognized: bool,
    path: &str,
    causes: &mut Vec<Cause>,
) {
    let versions = strings(versions);
    if versions.is_empty() {
        causes.push(Cause::required_because(
            path,
            &format!("must specify one of {}", REVIEW_VERSIONS.join(", ")),
        ));
        return;
    }
    let mut seen = BTreeSet::new();
    let mut accepted = false;
    for (i, version) in versions.iter().enumerate() {
        let at = format!("{path}[{i}]");
        if !seen.insert(version.clone()) {
            causes.push(Cause::invalid(&at, &json!(version), "duplicate version"));
            continue;
        }
        if version.len() > 63 {
            causes.push(Cause::invalid(
                &at,
                &json!(version),
                "must be no more than 63 characters",
            ));
        }
        if !is_dns1035_label(version) {
            causes.push(Cause::invalid(&at, &json!(version), DNS1035_LABEL));
        }
        accepted |= REVIEW_VERSIONS.contains(&version.as_str());
    }
    if require_recognized && !accepted {
        causes.push(Cause::invalid_shown(
            path,
            &go_strings("string", &versions),
            format!(
                "must include at least one of {}",
                REVIEW_VERSIONS.join(", ")
            ),
        ));
    }
}

fn is_dns1035_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes[0].is_ascii_lowercase()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

/// `webhook.ValidateWebhookURL` with `forceHttps`.
fn validate_url(path: &str, url: &str, causes: &mut Vec<Cause>) {
    let (scheme, host, user, fragment, query) = match url::Url::parse(url) {
        Ok(u) => (
            u.scheme().to_owned(),
            u.host_str().unwrap_or_default().to_owned(),
            (!u.username().is_empty() || u.password().is_some()).then(|| match u.password() {
                Some(p) => format!("{}:{p}", u.username()),
                None => u.username().to_owned(),
            }),
            u.fragment().unwrap_or_default().to_owned(),
            u.query().unwrap_or_default().to_owned(),
        ),
        // Go's parser takes a text without a scheme as a path: no scheme, no host.
        Err(url::ParseError::RelativeUrlWithoutBase) => Default::default(),
        Err(e) => {
            causes.push(Cause::required_because(
                path,
                &format!("url must be a valid URL: parse {url:?}: {e}{URL_FORM}"),
            ));
            return;
        }
    };
    if scheme != "https" {
        causes.push(Cause::invalid(
            path,
            &json!(scheme),
            format!("'https' is the only allowed URL scheme{URL_FORM}"),
        ));
    }
    if host.is_empty() {
        causes.push(Cause::invalid(
            path,
            &json!(host),
            format!("host must be specified{URL_FORM}"),
        ));
    }
    if let Some(user) = user {
        causes.push(Cause::invalid(
            path,
            &json!(user),
            "user information is not permitted in the URL",
        ));
    }
    if !fragment.is_empty() {
        causes.push(Cause::invalid(
            path,
            &json!(fragment),
            "fragments are not permitted in the URL",
        ));
    }
    if !query.is_empty() {
        causes.push(Cause::invalid(
            path,
            &json!(query),
            "query parameters are not permitted in the URL",
        ));
    }
}

/// `webhook.ValidateWebhookService`.
fn validate_service(path: &str, service: &Value, causes: &mut Vec<Cause>) {
    if service["name"].as_str().is_none_or(str::is_empty) {
        causes.push(Cause::required_because(
            format!("{path}.name"),
            "service name is required",
        ));
    }
    if service["namespace"].as_str().is_none_or(str::is_empty) {
        causes.push(Cause::required_because(
            format!("{path}.namespace"),
            "service namespace is required",
        ));
    }
    let port = service["port"].as_i64().unwrap_or(443);
    if !(1..=65535).contains(&port) {
        causes.push(Cause::invalid(
            format!("{path}.port"),
            &json!(port),
            "port is not valid: must be between 1 and 65535, inclusive",
        ));
    }
    let Some(url_path) = service["path"].as_str() else {
        return;
    };
    let at = format!("{path}.path");
    if url_path.is_empty() || url_path == "/" {
        return;
    }
    if url_path == "//" {
        causes.push(Cause::invalid(
            at,
            &json!(url_path),
            "segment[0] may not be empty",
        ));
        return;
    }
    if !url_path.starts_with('/') {
        causes.push(Cause::invalid(
            &at,
            &json!(url_path),
            "must start with a '/'",
        ));
    }
    let rest = url_path.get(1..).unwrap_or_default();
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    for (i, step) in rest.split('/').enumerate() {
        if step.is_empty() {
            causes.push(Cause::invalid(
                &at,
                &json!(url_path),
                format!("segment[{i}] may not be empty"),
            ));
            continue;
        }
        if step.len() > 253 {
            causes.push(Cause::invalid(
                &at,
                &json!(url_path),
                format!("segment[{i}]: must be no more than 253 characters"),
            ));
        }
        if !is_dns1123_subdomain(step) {
            causes.push(Cause::invalid(
                &at,
                &json!(url_path),
                format!("segment[{i}]: {DNS1123_SUBDOMAIN}"),
            ));
        }
    }
}

/// `validateMatchConditions` without compiling the expressions: at most 64, each named with a
/// qualified name, unique, with an expression.
fn validate_match_conditions(conditions: &Value, path: &str, causes: &mut Vec<Cause>) {
    let Some(conditions) = conditions.as_array() else {
        return;
    };
    let at = format!("{path}.matchConditions");
    if conditions.len() > 64 {
        causes.push(Cause {
            reason: "FieldValueTooMany",
            field: at.clone(),
            message: format!("Too many: {}: must have at most 64 items", conditions.len()),
        });
    }
    let mut names = BTreeSet::new();
    for (i, condition) in conditions.iter().enumerate() {
        let name = condition["name"].as_str().unwrap_or_default();
        let name_path = format!("{at}[{i}].name");
        if name.is_empty() {
            causes.push(Cause::required(&name_path));
        } else {
            causes.extend(qualified_name_causes(&name_path, name));
        }
        if !name.is_empty() && !names.insert(name.to_owned()) {
            causes.push(Cause::duplicate(&name_path, &json!(name)));
        }
        if condition["expression"].as_str().is_none_or(str::is_empty) {
            causes.push(Cause::required(format!("{at}[{i}].expression")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::resources::find;

    fn validating() -> &'static Resource {
        find(GROUP, "v1", "validatingwebhookconfigurations").unwrap()
    }

    fn mutating() -> &'static Resource {
        find(GROUP, "v1", "mutatingwebhookconfigurations").unwrap()
    }

    fn messages(resource: &Resource, object: &Value, old: Option<&Value>) -> Vec<String> {
        validate(resource, object, old)
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    fn hook(extra: Value) -> Value {
        let mut hook = json!({
            "name": "deny.example.com",
            "clientConfig": {"url": "https://127.0.0.1:8443/validate"},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
        });
        for (k, v) in extra.as_object().unwrap() {
            hook[k] = v.clone();
        }
        hook
    }

    #[test]
    fn defaults_are_upstreams() {
        let mut object = json!({"webhooks": [hook(json!({"clientConfig": {"service": {"name": "s", "namespace": "n"}}}))]});
        default(mutating(), &mut object);
        let h = &object["webhooks"][0];
        assert_eq!(h["failurePolicy"], "Fail");
        assert_eq!(h["matchPolicy"], "Equivalent");
        assert_eq!(h["namespaceSelector"], json!({}));
        assert_eq!(h["objectSelector"], json!({}));
        assert_eq!(h["timeoutSeconds"], 10);
        assert_eq!(h["reinvocationPolicy"], "Never");
        assert_eq!(h["clientConfig"]["service"]["port"], 443);
        assert_eq!(h["rules"][0]["scope"], "*");
        let mut object = json!({"webhooks": [hook(json!({}))]});
        default(validating(), &mut object);
        assert!(object["webhooks"][0].get("reinvocationPolicy").is_none());
    }

    #[test]
    fn a_good_configuration_passes() {
        let object =
            json!({"webhooks": [hook(json!({})), hook(json!({"name": "other.example.com"}))]});
        assert_eq!(messages(validating(), &object, None), Vec::<String>::new());
    }

    #[test]
    fn validation_speaks_upstreams_words() {
        let cases: Vec<(Value, &str)> = vec![
            (
                json!({"name": "deny"}),
                "webhooks[0].name: Invalid value: \"deny\": should be a domain with at least three segments separated by dots",
            ),
            (
                json!({"sideEffects": null}),
                "webhooks[0].sideEffects: Required value: must specify one of None, NoneOnDryRun",
            ),
            (
                json!({"sideEffects": "Some"}),
                "webhooks[0].sideEffects: Unsupported value: \"Some\": supported values: \"None\", \"NoneOnDryRun\"",
            ),
            (
                json!({"admissionReviewVersions": ["v2"]}),
                "webhooks[0].admissionReviewVersions: Invalid value: []string{\"v2\"}: must include at least one of v1, v1beta1",
            ),
            (
                json!({"admissionReviewVersions": []}),
                "webhooks[0].admissionReviewVersions: Required value: must specify one of v1, v1beta1",
            ),
            (
                json!({"clientConfig": {}}),
                "webhooks[0].clientConfig: Required value: exactly one of url or service is required",
            ),
            (
                json!({"clientConfig": {"url": "http://example.com/x"}}),
                "webhooks[0].clientConfig.url: Invalid value: \"http\": 'https' is the only allowed URL scheme; desired format: https://host[/path]",
            ),
            (
                json!({"clientConfig": {"url": "https://example.com/x?a=b"}}),
                "webhooks[0].clientConfig.url: Invalid value: \"a=b\": query parameters are not permitted in the URL",
            ),
            (
                json!({"clientConfig": {"service": {"name": "s", "namespace": "n", "port": 0}}}),
                "webhooks[0].clientConfig.service.port: Invalid value: 0: port is not valid: must be between 1 and 65535, inclusive",
            ),
            (
                json!({"clientConfig": {"service": {"name": "s", "namespace": "n", "path": "x"}}}),
                "webhooks[0].clientConfig.service.path: Invalid value: \"x\": must start with a '/'",
            ),
            (
                json!({"timeoutSeconds": 31}),
                "webhooks[0].timeoutSeconds: Invalid value: 31: the timeout value must be between 1 and 30 seconds",
            ),
            (
                json!({"failurePolicy": "Maybe"}),
                "webhooks[0].failurePolicy: Unsupported value: \"Maybe\": supported values: \"Fail\", \"Ignore\"",
            ),
            (
                json!({"rules": [{"operations": ["PATCH"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]}),
                "webhooks[0].rules[0].operations[0]: Unsupported value: \"PATCH\": supported values: \"*\", \"CONNECT\", \"CREATE\", \"DELETE\", \"UPDATE\"",
            ),
            (
                json!({"rules": [{"operations": ["*", "CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]}),
                "webhooks[0].rules[0].operations: Invalid value: []admissionregistration.OperationType{\"*\", \"CREATE\"}: if '*' is present, must not specify other operations",
            ),
            (
                json!({"rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["*", "pods"]}]}),
                "webhooks[0].rules[0].resources: Invalid value: []string{\"*\", \"pods\"}: if '*' is present, must not specify other resources without subresources",
            ),
            (
                json!({"rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods/*", "pods/status"]}]}),
                "webhooks[0].rules[0].resources[1]: Invalid value: \"pods/status\": if 'pods/*' is present, must not specify pods/status",
            ),
            (
                json!({"rules": [{"operations": ["CREATE"], "apiGroups": [], "apiVersions": ["v1"], "resources": ["pods"], "scope": "Everywhere"}]}),
                "webhooks[0].rules[0].apiGroups: Required value",
            ),
        ];
        for (extra, expected) in cases {
            let object = json!({"webhooks": [hook(extra.clone())]});
            let got = messages(validating(), &object, None);
            assert!(
                got.iter().any(|m| m == expected),
                "{extra}: expected {expected:?}, got {got:?}"
            );
        }
        let twice = json!({"webhooks": [hook(json!({})), hook(json!({}))]});
        assert_eq!(
            messages(validating(), &twice, None),
            vec!["webhooks[1].name: Duplicate value: \"deny.example.com\""]
        );
        let bad_reinvocation = json!({"webhooks": [hook(json!({"reinvocationPolicy": "Always"}))]});
        assert_eq!(
            messages(mutating(), &bad_reinvocation, None),
            vec![
                "webhooks[0].reinvocationPolicy: Unsupported value: \"Always\": supported values: \"IfNeeded\", \"Never\""
            ]
        );
    }

    #[test]
    fn an_update_tolerates_what_the_stored_object_already_had() {
        let old = json!({"webhooks": [hook(json!({"sideEffects": "Some"}))]});
        let new = json!({"webhooks": [hook(json!({"sideEffects": "Unknown"}))]});
        assert_eq!(
            messages(validating(), &new, Some(&old)),
            Vec::<String>::new()
        );
        assert_eq!(messages(validating(), &new, None).len(), 1);
    }
}
