//! The CustomResourceDefinition object itself, as apiextensions-apiserver's strategy treats
//! it: defaulting (`default_crd`: singular and list kind from the kind, the `None` conversion
//! strategy, a webhook service's port 443), what create and update set
//! (`prepare_crd_for_create` / `prepare_crd_for_update`: `status.storedVersions` gains the
//! storage version), and `ValidateCustomResourceDefinition` / `...Update` in upstream's words:
//! the name is `<plural>.<group>`, the group a dotted DNS subdomain, the names DNS-1035 labels,
//! one storage version among unique versions, every version's schema structural
//! ([`super::schema`]), its subresources' JSON paths and printer columns valid, and on update
//! the group and plural (and, once established, the scope and kind) unchanged and every stored
//! version still listed.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceDefinition, CustomResourceDefinitionNames,
    CustomResourceDefinitionVersion, CustomResourceSubresources,
};
use serde_json::{Value, json};

use super::schema::{child, compile_at, index};
use crate::apiserver::admission::{DNS1123_SUBDOMAIN, is_dns1123_subdomain};
use crate::apiserver::errors::Cause;

const DNS1035_LABEL: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

/// `printerColumnDatatypes` and `customResourceColumnDefinitionFormats`, sorted as
/// `sets.String.List()` gives them.
const COLUMN_TYPES: &str = "boolean,date,integer,number,string";
const COLUMN_FORMATS: &str = "byte,date,date-time,double,float,int32,int64,password";

/// `IsDNS1035Label`'s messages.
pub(crate) fn dns1035_label_errors(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > 63 {
        errors.push("must be no more than 63 characters".to_owned());
    }
    let b = value.as_bytes();
    let ok = !b.is_empty()
        && b[0].is_ascii_lowercase()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
    if !ok {
        errors.push(DNS1035_LABEL.to_owned());
    }
    errors
}

/// `IsDNS1123Subdomain`'s messages.
fn dns1123_subdomain_errors(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > 253 {
        errors.push("must be no more than 253 characters".to_owned());
    }
    if value.is_empty() || !is_dns1123_subdomain(&value[..value.len().min(253)]) {
        errors.push(DNS1123_SUBDOMAIN.to_owned());
    }
    errors
}

/// The CRD strategy's defaults (`SetDefaults_CustomResourceDefinition`), on the JSON object.
pub(crate) fn default_crd(object: &mut Value) {
    let spec = &mut object["spec"];
    if !spec.is_object() {
        return;
    }
    let kind = spec["names"]["kind"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let names = &mut spec["names"];
    if names.is_object() {
        if names["singular"].as_str().unwrap_or_default().is_empty() {
            names["singular"] = json!(kind.to_lowercase());
        }
        if names["listKind"].as_str().unwrap_or_default().is_empty() && !kind.is_empty() {
            names["listKind"] = json!(format!("{kind}List"));
        }
    }
    if spec["conversion"].is_null() {
        spec["conversion"] = json!({"strategy": "None"});
    }
    if let Some(service) = spec
        .pointer_mut("/conversion/webhook/clientConfig/service")
        .and_then(Value::as_object_mut)
        && service.get("port").is_none_or(Value::is_null)
    {
        service.insert("port".into(), json!(443));
    }
    if object["status"]["storedVersions"]
        .as_array()
        .is_none_or(Vec::is_empty)
        && let Some(storage) = storage_version(object)
        && (object["status"].is_object() || object["status"].is_null())
    {
        object["status"]["storedVersions"] = json!([storage]);
    }
}

fn storage_version(object: &Value) -> Option<String> {
    object["spec"]["versions"]
        .as_array()?
        .iter()
        .find(|v| v["storage"].as_bool() == Some(true))
        .and_then(|v| v["name"].as_str())
        .map(str::to_owned)
}

/// `PrepareForCreate`: a new CRD's status is empty but for its storage version.
pub(crate) fn prepare_crd_for_create(object: &mut Value) {
    object["status"] = json!({});
    if let Some(storage) = storage_version(object) {
        object["status"]["storedVersions"] = json!([storage]);
    }
}

/// `PrepareForUpdate`: the status is the stored one's, and the (new) storage version joins
/// `storedVersions`.
pub(crate) fn prepare_crd_for_update(object: &mut Value, old: &Value) {
    object["status"] = old["status"].clone();
    if let Some(storage) = storage_version(object) {
        let stored = &mut object["status"]["storedVersions"];
        let listed = stored
            .as_array()
            .is_some_and(|s| s.iter().any(|v| v.as_str() == Some(&storage)));
        if !listed {
            match stored.as_array_mut() {
                Some(list) => list.push(json!(storage)),
                None => *stored = json!([storage]),
            }
        }
    }
}

/// `ValidateCustomResourceDefinition`: every field error of a CRD being created.
pub(crate) fn validate_crd(crd: &CustomResourceDefinition) -> Vec<Cause> {
    let mut causes = metadata(crd);
    spec(crd, None, &mut causes);
    status(crd, &mut causes);
    causes
}

/// `ValidateCustomResourceDefinitionUpdate`: `crd` replacing the stored `old`.
pub(crate) fn validate_crd_update(
    crd: &CustomResourceDefinition,
    old: &CustomResourceDefinition,
) -> Vec<Cause> {
    let mut causes = Vec::new();
    spec(crd, Some(old), &mut causes);
    let established = old
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        });
    if established {
        immutable(&mut causes, "spec.scope", &crd.spec.scope, &old.spec.scope);
        immutable(
            &mut causes,
            "spec.names.kind",
            &crd.spec.names.kind,
            &old.spec.names.kind,
        );
    }
    immutable(&mut causes, "spec.group", &crd.spec.group, &old.spec.group);
    immutable(
        &mut causes,
        "spec.names.plural",
        &crd.spec.names.plural,
        &old.spec.names.plural,
    );
    status(crd, &mut causes);
    causes
}

fn immutable(causes: &mut Vec<Cause>, field: &str, new: &str, old: &str) {
    if new != old {
        causes.push(Cause::invalid(field, &json!(new), "field is immutable"));
    }
}

/// `ValidateObjectMeta` with the CRD's name rule.
fn metadata(crd: &CustomResourceDefinition) -> Vec<Cause> {
    let mut causes = Vec::new();
    let name = crd.metadata.name.as_deref().unwrap_or_default();
    if name.is_empty() {
        if crd
            .metadata
            .generate_name
            .as_deref()
            .unwrap_or_default()
            .is_empty()
        {
            causes.push(Cause::required_because(
                "metadata.name",
                "name or generateName is required",
            ));
        }
        return causes;
    }
    let mut errors = dns1123_subdomain_errors(name);
    if name != format!("{}.{}", crd.spec.names.plural, crd.spec.group) {
        errors.push("must be spec.names.plural+\".\"+spec.group".to_owned());
    }
    for e in errors {
        causes.push(Cause::invalid("metadata.name", &json!(name), e));
    }
    causes
}

/// `validateCustomResourceDefinitionSpec`; `old` on update (a version whose schema did not
/// change keeps the checks it was stored under).
fn spec(
    crd: &CustomResourceDefinition,
    old: Option<&CustomResourceDefinition>,
    causes: &mut Vec<Cause>,
) {
    let spec = &crd.spec;
    if spec.group.is_empty() {
        causes.push(Cause::required("spec.group"));
    } else {
        let errs = dns1123_subdomain_errors(&spec.group);
        if !errs.is_empty() {
            causes.push(Cause::invalid(
                "spec.group",
                &json!(spec.group),
                errs.join(","),
            ));
        } else if !spec.group.contains('.') {
            causes.push(Cause::invalid(
                "spec.group",
                &json!(spec.group),
                "should be a domain with at least one dot",
            ));
        }
    }
    match spec.scope.as_str() {
        "" => causes.push(Cause::required("spec.scope")),
        "Cluster" | "Namespaced" => {}
        other => causes.push(Cause::unsupported(
            "spec.scope",
            &json!(other),
            &["Cluster", "Namespaced"],
        )),
    }
    if spec.preserve_unknown_fields == Some(true) {
        causes.push(Cause::invalid(
            "spec.preserveUnknownFields",
            &json!(true),
            "cannot set to true, set x-kubernetes-preserve-unknown-fields to true in spec.versions[*].schema instead",
        ));
    }
    if spec.versions.is_empty() {
        causes.push(Cause::required_because(
            "spec.versions",
            "must have at least one version",
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut unique = true;
    for (i, version) in spec.versions.iter().enumerate() {
        let vpath = index("spec.versions", i);
        if !seen.insert(version.name.as_str()) {
            unique = false;
        }
        let errs = dns1035_label_errors(&version.name);
        if !errs.is_empty() {
            causes.push(Cause::invalid(
                child(&vpath, "name"),
                &json!(version.name),
                errs.join(","),
            ));
        }
        let old_version = old.and_then(|o| o.spec.versions.iter().find(|v| v.name == version.name));
        self::version(version, old_version, &vpath, causes);
    }
    if !unique {
        causes.push(Cause::invalid_shown(
            "spec.versions",
            &go_versions(&spec.versions),
            "must contain unique version names",
        ));
    }
    if spec.versions.iter().filter(|v| v.storage).count() != 1 {
        causes.push(Cause::invalid_shown(
            "spec.versions",
            &go_versions(&spec.versions),
            "must have exactly one version marked as storage version",
        ));
    }
    for (i, version) in spec.versions.iter().enumerate() {
        if version
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .is_none()
        {
            causes.push(Cause::required_because(
                child(
                    &child(&index("spec.versions", i), "schema"),
                    "openAPIV3Schema",
                ),
                "schemas are required",
            ));
        }
    }
    let names = &spec.names;
    if names.plural.is_empty() {
        causes.push(Cause::required("spec.names.plural"));
    }
    if names.singular.as_deref().unwrap_or_default().is_empty() {
        causes.push(Cause::required("spec.names.singular"));
    }
    if names.kind.is_empty() {
        causes.push(Cause::required("spec.names.kind"));
    }
    if names.list_kind.as_deref().unwrap_or_default().is_empty() {
        causes.push(Cause::required("spec.names.listKind"));
    }
    self::names(names, "spec.names", causes);
    if let Some(conversion) = &spec.conversion {
        match conversion.strategy.as_str() {
            "None" => {
                if conversion.webhook.is_some() {
                    causes.push(Cause::forbidden(
                        "spec.conversion.webhook",
                        "should not be set when strategy is not set to Webhook",
                    ));
                }
            }
            "Webhook" => match &conversion.webhook {
                None => causes.push(Cause::required_because(
                    "spec.conversion.webhook",
                    "required when strategy is set to Webhook",
                )),
                Some(webhook) => {
                    if webhook.conversion_review_versions.is_empty() {
                        causes.push(Cause::required_because(
                            "spec.conversion.webhook.conversionReviewVersions",
                            "must contain at least one version",
                        ));
                    }
                    if webhook.client_config.is_none() {
                        causes.push(Cause::required("spec.conversion.webhook.clientConfig"));
                    }
                }
            },
            "" => causes.push(Cause::required("spec.conversion.strategy")),
            other => causes.push(Cause::unsupported(
                "spec.conversion.strategy",
                &json!(other),
                &["None", "Webhook"],
            )),
        }
    }
}

/// `validateCustomResourceDefinitionVersion`: deprecation warning, schema, subresources,
/// printer columns.
fn version(
    version: &CustomResourceDefinitionVersion,
    old: Option<&CustomResourceDefinitionVersion>,
    vpath: &str,
    causes: &mut Vec<Cause>,
) {
    if let Some(warning) = version.deprecation_warning.as_deref() {
        let wpath = child(vpath, "deprecationWarning");
        if version.deprecated != Some(true) {
            causes.push(Cause::invalid(
                wpath,
                &json!(warning),
                "can only be set for deprecated versions",
            ));
        } else if warning.chars().count() > 256 {
            causes.push(Cause::too_long(wpath, 256));
        } else if warning.chars().any(char::is_control) {
            causes.push(Cause::invalid(
                wpath,
                &json!(warning),
                "must only contain printable UTF-8 characters",
            ));
        }
    }
    if let Some(schema) = version
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
    {
        let unchanged = old
            .and_then(|o| o.schema.as_ref())
            .and_then(|s| s.open_api_v3_schema.as_ref())
            == Some(schema);
        if !unchanged {
            let at = child(&child(vpath, "schema"), "openAPIV3Schema");
            if let Err(e) = compile_at(schema, &at) {
                causes.extend(e);
            }
        }
    }
    subresources(
        version.subresources.as_ref(),
        &child(vpath, "subresources"),
        causes,
    );
    for (i, col) in version
        .additional_printer_columns
        .iter()
        .flatten()
        .enumerate()
    {
        column(
            col,
            &index(&child(vpath, "additionalPrinterColumns"), i),
            causes,
        );
    }
}

/// `validateSimpleJSONPath`.
fn simple_json_path(path: &str, field: &str, causes: &mut Vec<Cause>) -> bool {
    let detail = if path.is_empty() {
        "must not be empty"
    } else if !path.starts_with('.') {
        "must be a simple json path starting with ."
    } else {
        return true;
    };
    causes.push(Cause::invalid(field, &json!(path), detail));
    false
}

/// `ValidateCustomResourceDefinitionSubresources`: the scale subresource's JSON paths.
fn subresources(sub: Option<&CustomResourceSubresources>, path: &str, causes: &mut Vec<Cause>) {
    let Some(scale) = sub.and_then(|s| s.scale.as_ref()) else {
        return;
    };
    let spec_path = child(path, "scale.specReplicasPath");
    if scale.spec_replicas_path.is_empty() {
        causes.push(Cause::required(spec_path));
    } else if simple_json_path(&scale.spec_replicas_path, &spec_path, causes)
        && !scale.spec_replicas_path.starts_with(".spec.")
    {
        causes.push(Cause::invalid(
            spec_path,
            &json!(scale.spec_replicas_path),
            "should be a json path under .spec",
        ));
    }
    let status_path = child(path, "scale.statusReplicasPath");
    if scale.status_replicas_path.is_empty() {
        causes.push(Cause::required(status_path));
    } else if simple_json_path(&scale.status_replicas_path, &status_path, causes)
        && !scale.status_replicas_path.starts_with(".status.")
    {
        causes.push(Cause::invalid(
            status_path,
            &json!(scale.status_replicas_path),
            "should be a json path under .status",
        ));
    }
    if let Some(selector) = scale
        .label_selector_path
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        let selector_path = child(path, "scale.labelSelectorPath");
        if simple_json_path(selector, &selector_path, causes)
            && !selector.starts_with(".spec.")
            && !selector.starts_with(".status.")
        {
            causes.push(Cause::invalid(
                selector_path,
                &json!(selector),
                "should be a json path under either .spec or .status",
            ));
        }
    }
}

/// `ValidateCustomResourceColumnDefinition`.
fn column(col: &CustomResourceColumnDefinition, path: &str, causes: &mut Vec<Cause>) {
    if col.name.is_empty() {
        causes.push(Cause::required(child(path, "name")));
    }
    let types_detail = format!("must be one of {COLUMN_TYPES}");
    if col.type_.is_empty() {
        causes.push(Cause::required_because(child(path, "type"), &types_detail));
    } else if !COLUMN_TYPES.split(',').any(|t| t == col.type_) {
        causes.push(Cause::invalid(
            child(path, "type"),
            &json!(col.type_),
            types_detail,
        ));
    }
    if let Some(format) = col.format.as_deref().filter(|f| !f.is_empty())
        && !COLUMN_FORMATS.split(',').any(|f| f == format)
    {
        causes.push(Cause::invalid(
            child(path, "format"),
            &json!(format),
            format!("must be one of {COLUMN_FORMATS}"),
        ));
    }
    if col.json_path.is_empty() {
        causes.push(Cause::required(child(path, "jsonPath")));
    } else {
        simple_json_path(&col.json_path, &child(path, "jsonPath"), causes);
    }
}

/// `ValidateCustomResourceDefinitionNames`.
fn names(names: &CustomResourceDefinitionNames, path: &str, causes: &mut Vec<Cause>) {
    let label = |causes: &mut Vec<Cause>, field: String, value: &str| {
        let errs = dns1035_label_errors(value);
        if !value.is_empty() && !errs.is_empty() {
            causes.push(Cause::invalid(field, &json!(value), errs.join(",")));
        }
    };
    label(causes, child(path, "plural"), &names.plural);
    label(
        causes,
        child(path, "singular"),
        names.singular.as_deref().unwrap_or_default(),
    );
    let mixed = |causes: &mut Vec<Cause>, field: String, value: &str| {
        let errs = dns1035_label_errors(&value.to_lowercase());
        if !value.is_empty() && !errs.is_empty() {
            causes.push(Cause::invalid(
                field,
                &json!(value),
                format!(
                    "may have mixed case, but should otherwise match: {}",
                    errs.join(",")
                ),
            ));
        }
    };
    mixed(causes, child(path, "kind"), &names.kind);
    let list_kind = names.list_kind.as_deref().unwrap_or_default();
    mixed(causes, child(path, "listKind"), list_kind);
    for (i, short) in names.short_names.iter().flatten().enumerate() {
        let errs = dns1035_label_errors(short);
        if !errs.is_empty() {
            causes.push(Cause::invalid(
                index(&child(path, "shortNames"), i),
                &json!(short),
                errs.join(","),
            ));
        }
    }
    if !names.kind.is_empty() && names.kind == list_kind {
        causes.push(Cause::invalid(
            child(path, "listKind"),
            &json!(list_kind),
            "kind and listKind may not be the same",
        ));
    }
    for (i, category) in names.categories.iter().flatten().enumerate() {
        let errs = dns1035_label_errors(category);
        if !errs.is_empty() {
            causes.push(Cause::invalid(
                index(&child(path, "categories"), i),
                &json!(category),
                errs.join(","),
            ));
        }
    }
}

/// `ValidateCustomResourceDefinitionStatus` and `...StoredVersions`.
fn status(crd: &CustomResourceDefinition, causes: &mut Vec<Cause>) {
    let status = crd.status.as_ref();
    if let Some(accepted) = status.and_then(|s| s.accepted_names.as_ref()) {
        names(accepted, "status.acceptedNames", causes);
    }
    let stored = status
        .and_then(|s| s.stored_versions.clone())
        .unwrap_or_default();
    if stored.is_empty() {
        causes.push(Cause::invalid_shown(
            "status.storedVersions",
            "[]string(nil)",
            "must have at least one stored version",
        ));
        return;
    }
    for v in &crd.spec.versions {
        if v.storage && !stored.contains(&v.name) {
            causes.push(Cause::invalid_shown(
                "status.storedVersions",
                &go_version(v),
                format!("must have the storage version {}", v.name),
            ));
        }
    }
    for (i, s) in stored.iter().enumerate() {
        if !crd.spec.versions.iter().any(|v| &v.name == s) {
            causes.push(Cause::invalid(
                index("status.storedVersions", i),
                &json!(s),
                "must appear in spec.versions",
            ));
        }
    }
}

/// A version as Go's `%#v` prints the internal type (pointers as addresses upstream; here a
/// set pointer shows as `(0x0)`).
fn go_version(v: &CustomResourceDefinitionVersion) -> String {
    let ptr = |set: bool, ty: &str| {
        if set {
            format!("(*{ty})(0x0)")
        } else {
            format!("(*{ty})(nil)")
        }
    };
    format!(
        "apiextensions.CustomResourceDefinitionVersion{{Name:{:?}, Served:{}, Storage:{}, Deprecated:{}, DeprecationWarning:{}, Schema:{}, Subresources:{}, AdditionalPrinterColumns:[]apiextensions.CustomResourceColumnDefinition{}, SelectableFields:[]apiextensions.SelectableField{}}}",
        v.name,
        v.served,
        v.storage,
        v.deprecated.unwrap_or(false),
        ptr(v.deprecation_warning.is_some(), "string"),
        ptr(v.schema.is_some(), "apiextensions.CustomResourceValidation"),
        ptr(
            v.subresources.is_some(),
            "apiextensions.CustomResourceSubresources"
        ),
        if v.additional_printer_columns.is_some() {
            "{...}"
        } else {
            "(nil)"
        },
        if v.selectable_fields.is_some() {
            "{...}"
        } else {
            "(nil)"
        },
    )
}

fn go_versions(versions: &[CustomResourceDefinitionVersion]) -> String {
    if versions.is_empty() {
        return "[]apiextensions.CustomResourceDefinitionVersion(nil)".into();
    }
    let items: Vec<String> = versions.iter().map(go_version).collect();
    format!(
        "[]apiextensions.CustomResourceDefinitionVersion{{{}}}",
        items.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd(value: Value) -> CustomResourceDefinition {
        let mut value = value;
        default_crd(&mut value);
        prepare_crd_for_create(&mut value);
        serde_json::from_value(value).expect("a CRD")
    }

    fn messages(causes: &[Cause]) -> Vec<String> {
        causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    fn crontab() -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "crontabs.stable.example.com"},
            "spec": {
                "group": "stable.example.com",
                "scope": "Namespaced",
                "names": {"plural": "crontabs", "kind": "CronTab", "shortNames": ["ct"]},
                "versions": [{
                    "name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object",
                        "properties": {"cronSpec": {"type": "string"}, "replicas": {"type": "integer"}}}}}},
                    "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}},
                    "additionalPrinterColumns": [{"name": "Spec", "type": "string", "jsonPath": ".spec.cronSpec"}],
                }],
            },
        })
    }

    #[test]
    fn defaults_fill_names_conversion_and_stored_versions() {
        let mut v = crontab();
        default_crd(&mut v);
        assert_eq!(v["spec"]["names"]["singular"], "crontab");
        assert_eq!(v["spec"]["names"]["listKind"], "CronTabList");
        assert_eq!(v["spec"]["conversion"], json!({"strategy": "None"}));
        assert_eq!(v["status"]["storedVersions"], json!(["v1"]));
        let mut hook = json!({"spec": {"conversion": {"strategy": "Webhook", "webhook": {"clientConfig": {"service": {"name": "s", "namespace": "n"}}}}}});
        default_crd(&mut hook);
        assert_eq!(
            hook["spec"]["conversion"]["webhook"]["clientConfig"]["service"]["port"],
            443
        );
    }

    #[test]
    fn a_good_crd_is_valid() {
        assert_eq!(
            messages(&validate_crd(&crd(crontab()))),
            Vec::<String>::new()
        );
    }

    #[test]
    fn bad_crds_are_refused_in_upstreams_words() {
        let mut v = crontab();
        v["metadata"]["name"] = json!("x.stable.example.com");
        v["spec"]["scope"] = json!("Galaxy");
        assert_eq!(
            messages(&validate_crd(&crd(v))),
            [
                "metadata.name: Invalid value: \"x.stable.example.com\": must be spec.names.plural+\".\"+spec.group",
                "spec.scope: Unsupported value: \"Galaxy\": supported values: \"Cluster\", \"Namespaced\"",
            ]
        );
        let mut v = crontab();
        v["metadata"]["name"] = json!("crontabs.example");
        v["spec"]["group"] = json!("example");
        v["spec"]["names"]["plural"] = json!("CronTabs");
        v["metadata"]["name"] = json!("CronTabs.example");
        let got = messages(&validate_crd(&crd(v)));
        assert_eq!(
            got,
            [
                format!("metadata.name: Invalid value: \"CronTabs.example\": {DNS1123_SUBDOMAIN}"),
                "spec.group: Invalid value: \"example\": should be a domain with at least one dot"
                    .to_owned(),
                format!("spec.names.plural: Invalid value: \"CronTabs\": {DNS1035_LABEL}"),
            ]
        );
        let mut v = crontab();
        v["spec"]["versions"][0]["storage"] = json!(false);
        let got = messages(&validate_crd(&crd(v)));
        assert!(
            got[0].starts_with("spec.versions: Invalid value: []apiextensions.CustomResourceDefinitionVersion{apiextensions.CustomResourceDefinitionVersion{Name:\"v1\", Served:true, Storage:false,"),
            "{got:?}"
        );
        assert!(got[0].ends_with(": must have exactly one version marked as storage version"));
        assert_eq!(
            got[1],
            "status.storedVersions: Invalid value: []string(nil): must have at least one stored version"
        );
        let mut v = crontab();
        v["spec"]["versions"][0]["schema"] = json!(null);
        assert_eq!(
            messages(&validate_crd(&crd(v))),
            ["spec.versions[0].schema.openAPIV3Schema: Required value: schemas are required"]
        );
    }

    #[test]
    fn schemas_subresources_and_columns_are_checked_under_their_version() {
        let mut v = crontab();
        v["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
            ["x"] = json!({});
        v["spec"]["versions"][0]["subresources"]["scale"]["specReplicasPath"] =
            json!(".status.replicas");
        v["spec"]["versions"][0]["subresources"]["scale"]["statusReplicasPath"] =
            json!("status.replicas");
        v["spec"]["versions"][0]["additionalPrinterColumns"] =
            json!([{"name": "", "type": "time", "jsonPath": "spec"}]);
        assert_eq!(
            messages(&validate_crd(&crd(v))),
            [
                "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[x].type: Required value: must not be empty for specified object fields",
                "spec.versions[0].subresources.scale.specReplicasPath: Invalid value: \".status.replicas\": should be a json path under .spec",
                "spec.versions[0].subresources.scale.statusReplicasPath: Invalid value: \"status.replicas\": must be a simple json path starting with .",
                "spec.versions[0].additionalPrinterColumns[0].name: Required value",
                "spec.versions[0].additionalPrinterColumns[0].type: Invalid value: \"time\": must be one of boolean,date,integer,number,string",
                "spec.versions[0].additionalPrinterColumns[0].jsonPath: Invalid value: \"spec\": must be a simple json path starting with .",
            ]
        );
    }

    #[test]
    fn names_and_versions_follow_dns_rules() {
        let mut v = crontab();
        v["spec"]["names"]["kind"] = json!("Cron_Tab");
        v["spec"]["names"]["listKind"] = json!("Cron_Tab");
        v["spec"]["names"]["singular"] = json!("crontab");
        v["spec"]["versions"][0]["name"] = json!("V1");
        let got = messages(&validate_crd(&crd(v)));
        assert_eq!(
            got,
            [
                format!("spec.versions[0].name: Invalid value: \"V1\": {DNS1035_LABEL}"),
                format!("spec.names.kind: Invalid value: \"Cron_Tab\": may have mixed case, but should otherwise match: {DNS1035_LABEL}"),
                format!("spec.names.listKind: Invalid value: \"Cron_Tab\": may have mixed case, but should otherwise match: {DNS1035_LABEL}"),
                "spec.names.listKind: Invalid value: \"Cron_Tab\": kind and listKind may not be the same".to_owned(),
            ]
        );
    }

    #[test]
    fn updates_keep_identity_and_stored_versions() {
        let mut old_value = crontab();
        default_crd(&mut old_value);
        prepare_crd_for_create(&mut old_value);
        old_value["status"]["conditions"] = json!([{"type": "Established", "status": "True"}]);
        let old: CustomResourceDefinition = serde_json::from_value(old_value.clone()).expect("crd");
        let mut new_value = crontab();
        new_value["spec"]["scope"] = json!("Cluster");
        new_value["spec"]["group"] = json!("other.example.com");
        new_value["spec"]["versions"][0]["name"] = json!("v2");
        default_crd(&mut new_value);
        prepare_crd_for_update(&mut new_value, &old_value);
        assert_eq!(new_value["status"]["storedVersions"], json!(["v1", "v2"]));
        let new: CustomResourceDefinition = serde_json::from_value(new_value).expect("crd");
        assert_eq!(
            messages(&validate_crd_update(&new, &old)),
            [
                "spec.scope: Invalid value: \"Cluster\": field is immutable",
                "spec.group: Invalid value: \"other.example.com\": field is immutable",
                "status.storedVersions[0]: Invalid value: \"v1\": must appear in spec.versions",
            ]
        );
    }
}
