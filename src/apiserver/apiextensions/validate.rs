//! Validating a custom resource against its version's schema, as the custom resource strategy
//! does (`registry/customresource/strategy.go` and `validator.go`): `metadata` as every object's
//! (the name a DNS subdomain), the OpenAPI schema as kube-openapi's `SchemaValidator` checks it
//! and apiextensions-apiserver words its results (`kubeOpenAPIResultToFieldErrors`), embedded
//! resources' `apiVersion`/`kind`/`metadata`, `x-kubernetes-list-type` sets and maps, then the
//! `x-kubernetes-validations` rules unless an earlier error blocks them. On update, errors in
//! values the update did not change are ratcheted away (`CRDValidationRatcheting`).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::cel;
use super::schema::{Additional, Schema, Structural, child, go_float, go_value, index, key};
use crate::apiserver::admission::{DNS1123_SUBDOMAIN, is_dns1123_subdomain, qualified_name_causes};
use crate::apiserver::errors::Cause;

/// Where an error's field path starts: upstream validates custom resources with a nil
/// `field.Path`, which prints as `<nil>` when an error is about the whole object.
const NIL: &str = "<nil>";

impl Structural {
    /// Validates a custom resource (`old` is the stored object on update) and returns every
    /// field error, in upstream's order and words: `metadata`, the schema, embedded resources,
    /// list sets and maps, then the CEL rules.
    pub(crate) fn validate(&self, object: &Value, old: Option<&Value>) -> Vec<Cause> {
        let mut causes = validate_metadata(object);
        causes.extend(self.validate_schema(object, old));
        embedded_meta(self.root(), object, "", false, &mut causes);
        list_sets_and_maps(self.root(), object, "", &mut causes);
        if !self.root().has_rules() {
            return causes;
        }
        if causes.iter().any(blocks_rules) {
            causes.push(Cause::invalid(
                NIL,
                &Value::Null,
                "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
            ));
        } else {
            cel::validate(self.root(), object, old, "", &mut causes);
        }
        causes
    }

    /// Only the OpenAPI schema's checks (type, required, enum, bounds, junctors), with
    /// ratcheting against `old`; what [`Structural::validate`] runs after `metadata`.
    pub(crate) fn validate_schema(&self, object: &Value, old: Option<&Value>) -> Vec<Cause> {
        let mut v = Validator { base: None };
        let res = v.node(self.root(), object, old, "");
        res.causes
    }

    /// `structuraldefaulting.ValidateDefaults`: every `default` must validate against its own
    /// node and carry no field pruning would drop. Paths under `at` (the schema's path).
    pub(crate) fn validate_defaults(&self, at: &str, causes: &mut Vec<Cause>) {
        defaults(self.root(), at, false, causes);
    }
}

fn defaults(s: &Schema, path: &str, inside_meta: bool, causes: &mut Vec<Cause>) {
    if let Some(default) = &s.default
        && !inside_meta
    {
        let dpath = child(path, "default");
        let mut pruned = default.clone();
        let mut removed = Vec::new();
        super::prune::prune_node(
            &mut pruned,
            Some(s),
            s.embedded,
            &mut Vec::new(),
            &mut removed,
        );
        if pruned != *default {
            causes.push(Cause::invalid_shown(
                &dpath,
                &go_value(default),
                "must not have unknown fields",
            ));
        } else {
            let mut v = Validator {
                base: Some(dpath.clone()),
            };
            let res = v.node(s, default, None, "");
            if !res.causes.is_empty() {
                causes.extend(res.causes);
            } else {
                let mut more = Vec::new();
                embedded_meta(s, default, &dpath, s.embedded, &mut more);
                list_sets_and_maps(s, default, &dpath, &mut more);
                causes.extend(more);
            }
        }
    }
    for (k, p) in &s.properties {
        let meta = inside_meta || k == "metadata";
        defaults(p, &key(&child(path, "properties"), k), meta, causes);
    }
    if let Some(items) = &s.items {
        defaults(items, &child(path, "items"), inside_meta, causes);
    }
    if let Some(Additional::Schema(a)) = &s.additional {
        defaults(a, &child(path, "additionalProperties"), inside_meta, causes);
    }
}

/// OpenAPI type, required, enum, length and count violations keep the rules from running
/// (`hasBlockingErr`).
fn blocks_rules(c: &Cause) -> bool {
    matches!(
        c.reason,
        "FieldValueNotSupported"
            | "FieldValueRequired"
            | "FieldValueTooLong"
            | "FieldValueTooMany"
            | "FieldValueTypeInvalid"
    )
}

/// `ValidateObjectMetaAccessor` with `NameIsDNSSubdomain`, as the custom resource strategy
/// calls it: name or generateName, both DNS subdomains, and well-formed labels and annotations.
pub(crate) fn validate_metadata(object: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let meta = &object["metadata"];
    let name = meta["name"].as_str().unwrap_or_default();
    let generate = meta["generateName"].as_str().unwrap_or_default();
    if name.is_empty() && generate.is_empty() {
        causes.push(Cause::required_because(
            "metadata.name",
            "name or generateName is required",
        ));
    }
    if !generate.is_empty() {
        // Checked as a prefix: the random suffix follows a trailing dash.
        let prefix = generate.strip_suffix('-').unwrap_or(generate);
        for e in subdomain_errors(prefix) {
            causes.push(Cause::invalid("metadata.generateName", &json!(generate), e));
        }
    }
    if !name.is_empty() {
        for e in subdomain_errors(name) {
            causes.push(Cause::invalid("metadata.name", &json!(name), e));
        }
    }
    if let Some(labels) = meta["labels"].as_object() {
        for (k, v) in labels {
            causes.extend(qualified_name_causes("metadata.labels", k));
            if let Some(v) = v.as_str()
                && !is_label_value(v)
            {
                causes.push(Cause::invalid("metadata.labels", &json!(v), LABEL_VALUE));
            }
        }
    }
    if let Some(annotations) = meta["annotations"].as_object() {
        for k in annotations.keys() {
            causes.extend(qualified_name_causes(
                "metadata.annotations",
                &k.to_lowercase(),
            ));
        }
    }
    causes
}

const LABEL_VALUE: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

fn is_label_value(s: &str) -> bool {
    s.is_empty()
        || (s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && s.as_bytes()[0].is_ascii_alphanumeric()
            && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric())
}

/// `IsDNS1123Subdomain`'s messages.
fn subdomain_errors(name: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if name.len() > 253 {
        errors.push("must be no more than 253 characters".to_owned());
    }
    if !is_dns1123_subdomain(&name[..name.len().min(253)]) || name.is_empty() {
        errors.push(DNS1123_SUBDOMAIN.to_owned());
    }
    errors
}

/// `ValidateTypeMeta` of the custom resource validator: the object's `kind` and `apiVersion`
/// must be the served version's.
pub(crate) fn validate_type_meta(
    object: &Value,
    group: &str,
    version: &str,
    kind: &str,
) -> Vec<Cause> {
    let mut causes = Vec::new();
    let got_kind = object["kind"].as_str().unwrap_or_default();
    if got_kind != kind {
        causes.push(Cause::invalid(
            "kind",
            &json!(got_kind),
            format!("must be {kind}"),
        ));
    }
    let api_version = format!("{group}/{version}");
    let got = object["apiVersion"].as_str().unwrap_or_default();
    if got != api_version {
        causes.push(Cause::invalid(
            "apiVersion",
            &json!(got),
            format!("must be {api_version}"),
        ));
    }
    causes
}

/// One kube-openapi result: its errors and its `MatchCount` (how many checks applied), which
/// picks the failure `anyOf` and `oneOf` report.
#[derive(Default)]
struct Res {
    causes: Vec<Cause>,
    matches: usize,
}

impl Res {
    fn merge(&mut self, other: Res) {
        self.causes.extend(other.causes);
        self.matches += other.matches;
    }
}

/// kube-openapi's `SchemaValidator`, rooted at a field path.
struct Validator {
    /// The `field.Path` errors hang off (`None`: upstream's nil path).
    base: Option<String>,
}

/// The JSON type kube-openapi infers for a decoded value.
fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

impl Validator {
    /// The field path of a kube-openapi error name (`.spec` or `spec.replicas`).
    fn path(&self, name: &str) -> String {
        let name = name.strip_prefix('.').unwrap_or(name);
        match (&self.base, name) {
            (None, "") => NIL.to_owned(),
            (Some(base), "") => base.clone(),
            (None, n) => n.to_owned(),
            (Some(base), n) => child(base, n),
        }
    }

    fn root_path(&self) -> String {
        self.base.clone().unwrap_or_else(|| NIL.to_owned())
    }

    /// `errors.InvalidType` as `kubeOpenAPIResultToFieldErrors` words it.
    fn type_invalid(&self, name: &str, type_name: &str, shown: &str) -> Cause {
        Cause::type_invalid(
            self.path(name),
            &format!("{shown:?}"),
            &format!("{name} in body must be of type {type_name}: {shown:?}"),
        )
    }

    /// Any other kube-openapi validation error: `field.Invalid(path, value, message)`.
    fn invalid(&self, name: &str, value: &Value, message: String) -> Cause {
        Cause::invalid_shown(self.path(name), &go_value(value), message)
    }

    /// Validates `data` against `s`, `old` the correlated stored value when ratcheting.
    fn node(&mut self, s: &Schema, data: &Value, old: Option<&Value>, name: &str) -> Res {
        let mut res = self.node_unratcheted(s, data, old, name);
        if !res.causes.is_empty() && old == Some(data) {
            res.causes.clear();
        }
        res
    }

    fn node_unratcheted(
        &mut self,
        s: &Schema,
        data: &Value,
        old: Option<&Value>,
        name: &str,
    ) -> Res {
        let mut res = Res::default();
        if data.is_null() {
            res.causes.extend(self.type_check(s, data, name));
            res.causes.extend(self.enum_check(s, data, name));
            res.matches += 1;
            return res;
        }
        if !s.type_.is_empty() || s.int_or_string || !s.format.is_empty() {
            res.causes.extend(self.type_check(s, data, name));
            res.matches += 1;
        }
        let junctors = self.junctors(s, data, old, name);
        res.merge(junctors);
        res.matches += 1;
        if let Value::String(text) = data {
            res.causes.extend(self.string_checks(s, text, name));
            res.matches += 1;
            if let Some(c) = self.format_check(s, text, name) {
                res.causes.push(c);
            }
        }
        if let Value::Number(n) = data {
            res.causes.extend(self.number_checks(s, n, name));
            res.matches += 1;
        }
        if let Value::Array(items) = data {
            let slice = self.slice(s, items, old, name);
            res.merge(slice);
            res.matches += 1;
        }
        res.causes.extend(self.enum_check(s, data, name));
        res.matches += 1;
        if let Value::Object(map) = data {
            let object = self.object(s, map, old, name);
            res.merge(object);
            res.matches += 1;
        }
        res.matches += 1;
        res
    }

    /// `typeValidator`: `x-kubernetes-int-or-string` is `integer,string`; an integral float
    /// is an integer and an integer a number.
    fn type_check(&self, s: &Schema, data: &Value, name: &str) -> Option<Cause> {
        let types: Vec<&str> = if s.int_or_string {
            vec!["integer", "string"]
        } else if s.type_.is_empty() {
            Vec::new()
        } else {
            vec![s.type_.as_str()]
        };
        if data.is_null() {
            if !types.is_empty() && !s.nullable {
                return Some(self.type_invalid(name, &types.join(","), "null"));
            }
            return None;
        }
        if types.is_empty() {
            return None;
        }
        let actual = json_type(data);
        let float_int = actual == "number"
            && data
                .as_f64()
                .is_some_and(|f| f.fract() == 0.0 && f.is_finite())
            && types.contains(&"integer");
        let int_float = actual == "integer" && types.contains(&"number");
        if types.contains(&actual) || float_int || int_float {
            return None;
        }
        Some(self.type_invalid(name, &types.join(","), actual))
    }

    /// `stringValidator`: maxLength, minLength (in characters), pattern; the first failure.
    fn string_checks(&self, s: &Schema, text: &str, name: &str) -> Option<Cause> {
        let len = text.chars().count() as i64;
        if let Some(max) = s.max_length
            && len > max
        {
            return Some(Cause::too_long(self.path(name), max));
        }
        if let Some(min) = s.min_length
            && len < min
        {
            return Some(self.invalid(
                name,
                &json!(text),
                format!("{name} in body should be at least {min} chars long"),
            ));
        }
        if let Some((source, re)) = &s.pattern
            && !re.is_match(text)
        {
            return Some(self.invalid(
                name,
                &json!(text),
                format!("{name} in body should match '{source}'"),
            ));
        }
        None
    }

    /// `formatValidator` for the string formats custom resources are checked against.
    fn format_check(&self, s: &Schema, text: &str, name: &str) -> Option<Cause> {
        let ok = super::formats::check(&s.format, text)?;
        if ok {
            return None;
        }
        Some(self.type_invalid(name, &s.format, text))
    }

    /// `numberValidator`: multipleOf, maximum, minimum (all that fail).
    fn number_checks(&self, s: &Schema, n: &serde_json::Number, name: &str) -> Vec<Cause> {
        let mut out = Vec::new();
        let value = n.as_f64().unwrap_or_default();
        let shown = Value::Number(n.clone());
        if let Some(factor) = s.multiple_of
            && factor > 0.0
            && (value / factor).fract() != 0.0
        {
            out.push(self.invalid(
                name,
                &shown,
                format!(
                    "{name} in body should be a multiple of {}",
                    go_float(factor)
                ),
            ));
        }
        if let Some(max) = s.maximum {
            let over = if s.exclusive_maximum {
                value >= max
            } else {
                value > max
            };
            if over {
                let how = if s.exclusive_maximum {
                    "less than"
                } else {
                    "less than or equal to"
                };
                out.push(self.invalid(
                    name,
                    &shown,
                    format!("{name} in body should be {how} {}", go_float(max)),
                ));
            }
        }
        if let Some(min) = s.minimum {
            let under = if s.exclusive_minimum {
                value <= min
            } else {
                value < min
            };
            if under {
                let how = if s.exclusive_minimum {
                    "greater than"
                } else {
                    "greater than or equal to"
                };
                out.push(self.invalid(
                    name,
                    &shown,
                    format!("{name} in body should be {how} {}", go_float(min)),
                ));
            }
        }
        out
    }

    /// `schemaSliceValidator`: each item, then minItems, maxItems, uniqueItems.
    fn slice(&mut self, s: &Schema, items: &[Value], old: Option<&Value>, name: &str) -> Res {
        let mut res = Res::default();
        if let Some(item_schema) = &s.items {
            let old_items = old.and_then(Value::as_array);
            for (i, item) in items.iter().enumerate() {
                let old_item = old_items.and_then(|o| correlate_item(s, item, o));
                let r = self.node(item_schema, item, old_item, &format!("{name}[{i}]"));
                res.merge(r);
            }
        }
        let size = items.len() as i64;
        if let Some(min) = s.min_items
            && size < min
        {
            res.causes.push(self.invalid(
                name,
                &json!(size),
                format!("{name} in body should have at least {min} items"),
            ));
        }
        if let Some(max) = s.max_items
            && size > max
        {
            res.causes.push(Cause::too_many(self.path(name), size, max));
        }
        if s.unique_items {
            let mut seen = BTreeSet::new();
            if items.iter().any(|i| !seen.insert(i.to_string())) {
                res.causes.push(Cause::invalid(
                    self.path(name),
                    &json!(""),
                    format!("{name} in body shouldn't contain duplicates"),
                ));
            }
        }
        res
    }

    /// `basicCommonValidator`: the value must equal one of `enum`, compared after converting
    /// it to each candidate's Go type.
    fn enum_check(&self, s: &Schema, data: &Value, name: &str) -> Option<Cause> {
        if s.enum_.is_empty() || s.enum_.iter().any(|e| enum_matches(e, data)) {
            return None;
        }
        let values: Vec<String> = s
            .enum_
            .iter()
            .map(|e| match e {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
        Some(Cause::not_supported_shown(
            self.path(name),
            &go_value(data),
            &values,
        ))
    }

    /// `objectValidator`: minProperties and maxProperties first (and alone), then each
    /// property, `additionalProperties` values, and `required`.
    fn object(
        &mut self,
        s: &Schema,
        map: &Map<String, Value>,
        old: Option<&Value>,
        name: &str,
    ) -> Res {
        let mut res = Res::default();
        let size = map.len() as i64;
        if let Some(min) = s.min_properties
            && size < min
        {
            res.causes.push(self.invalid(
                name,
                &json!(size),
                format!("{name} in body should have at least {min} properties"),
            ));
            return res;
        }
        if let Some(max) = s.max_properties
            && size > max
        {
            res.causes.push(Cause::too_many(self.path(name), size, max));
            return res;
        }
        let old_map = old.and_then(Value::as_object);
        if let Some(Additional::Schema(a)) = &s.additional {
            for (k, v) in map {
                if !s.properties.contains_key(k) {
                    let r = self.node(a, v, old_map.and_then(|o| o.get(k)), &format!("{name}.{k}"));
                    res.merge(r);
                }
            }
        }
        for (k, p) in &s.properties {
            if let Some(v) = map.get(k) {
                let child_name = if name.is_empty() {
                    k.clone()
                } else {
                    format!("{name}.{k}")
                };
                let r = self.node(p, v, old_map.and_then(|o| o.get(k)), &child_name);
                res.merge(r);
            }
        }
        for k in &s.required {
            if !map.contains_key(k) {
                res.causes
                    .push(Cause::required(self.path(&format!("{name}.{k}"))));
            }
        }
        res
    }

    /// `schemaPropsValidator`: anyOf, oneOf, allOf, not, with their composite messages.
    fn junctors(&mut self, s: &Schema, data: &Value, old: Option<&Value>, name: &str) -> Res {
        let mut main = Res::default();
        if !s.any_of.is_empty() {
            let mut best: Option<Res> = None;
            let mut succeeded = None;
            for alt in &s.any_of {
                let r = self.node(alt, data, old, name);
                if r.causes.is_empty() {
                    succeeded = Some(r);
                    best = None;
                    break;
                }
                if best.as_ref().is_none_or(|b| r.matches > b.matches) {
                    best = Some(r);
                }
            }
            if succeeded.is_none() {
                main.causes.push(Cause::invalid(
                    self.root_path(),
                    &json!(""),
                    format!("{name:?} must validate at least one schema (anyOf)"),
                ));
            }
            if let Some(b) = best {
                main.merge(b);
            } else if let Some(ok) = succeeded {
                main.merge(ok);
            }
        }
        if !s.one_of.is_empty() {
            let mut best: Option<Res> = None;
            let mut first_success = None;
            let mut validated = 0;
            for alt in &s.one_of {
                let r = self.node(alt, data, old, name);
                if r.causes.is_empty() {
                    validated += 1;
                    best = None;
                    if first_success.is_none() {
                        first_success = Some(r);
                    }
                    continue;
                }
                if validated == 0 && best.as_ref().is_none_or(|b| r.matches > b.matches) {
                    best = Some(r);
                }
            }
            if validated != 1 {
                let more = if validated == 0 {
                    "Found none valid".to_owned()
                } else {
                    format!("Found {validated} valid alternatives")
                };
                main.causes.push(Cause::invalid(
                    self.root_path(),
                    &json!(""),
                    format!("{name:?} must validate one and only one schema (oneOf). {more}"),
                ));
                if let Some(b) = best {
                    main.merge(b);
                }
            } else if let Some(ok) = first_success {
                main.merge(ok);
            }
        }
        if !s.all_of.is_empty() {
            let mut validated = 0;
            for alt in &s.all_of {
                let r = self.node(alt, data, old, name);
                if r.causes.is_empty() {
                    validated += 1;
                }
                main.merge(r);
            }
            if validated != s.all_of.len() {
                let more = if validated == 0 {
                    ". None validated"
                } else {
                    ""
                };
                main.causes.push(Cause::invalid(
                    self.root_path(),
                    &json!(""),
                    format!("{name:?} must validate all the schemas (allOf){more}"),
                ));
            }
        }
        if let Some(not) = &s.not {
            let r = self.node(not, data, old, name);
            if r.causes.is_empty() {
                main.causes.push(Cause::invalid(
                    self.root_path(),
                    &json!(""),
                    format!("{name:?} must not validate the schema (not)"),
                ));
            }
        }
        main
    }
}

/// Go's enum comparison: the value converted to the candidate's type, then `DeepEqual`.
fn enum_matches(candidate: &Value, data: &Value) -> bool {
    match (candidate, data) {
        (Value::Null, Value::Null) => true,
        (Value::Number(c), Value::Number(d)) => {
            if c.is_i64() || c.is_u64() {
                let d = d.as_f64().unwrap_or_default();
                c.as_f64() == Some(d.trunc())
            } else {
                c.as_f64() == d.as_f64()
            }
        }
        (c, d) => c == d,
    }
}

/// The stored item a new item of a list corresponds to: only `x-kubernetes-list-type: map`
/// lists correlate, by their keys.
fn correlate_item<'a>(s: &Schema, item: &Value, old: &'a [Value]) -> Option<&'a Value> {
    if s.list_type.as_deref() != Some("map") || s.list_map_keys.is_empty() {
        return None;
    }
    let keys = |v: &Value| -> Option<Vec<Value>> {
        let o = v.as_object()?;
        Some(
            s.list_map_keys
                .iter()
                .map(|k| o.get(k).cloned().unwrap_or(Value::Null))
                .collect(),
        )
    };
    let want = keys(item)?;
    old.iter().find(|o| keys(o).as_ref() == Some(&want))
}

/// `objectmeta.Validate`: every `x-kubernetes-embedded-resource` object needs a string
/// `apiVersion` and `kind`, and a valid `metadata`.
pub(crate) fn embedded_meta(
    s: &Schema,
    value: &Value,
    path: &str,
    is_root: bool,
    causes: &mut Vec<Cause>,
) {
    match value {
        Value::Object(map) => {
            if s.embedded && !is_root {
                embedded_resource(map, path, causes);
            }
            for (k, v) in map {
                if let Some(p) = s.properties.get(k) {
                    embedded_meta(p, v, &child(path, k), false, causes);
                } else if let Some(Additional::Schema(a)) = &s.additional {
                    embedded_meta(a, v, &key(path, k), false, causes);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = &s.items {
                for (i, v) in items.iter().enumerate() {
                    embedded_meta(item, v, &index(path, i), false, causes);
                }
            }
        }
        _ => {}
    }
}

fn embedded_resource(map: &Map<String, Value>, path: &str, causes: &mut Vec<Cause>) {
    if !map.contains_key("apiVersion") {
        causes.push(Cause::required_because(
            child(path, "apiVersion"),
            "must not be empty",
        ));
    }
    if !map.contains_key("kind") {
        causes.push(Cause::required_because(
            child(path, "kind"),
            "must not be empty",
        ));
    }
    for (k, v) in map {
        match k.as_str() {
            "apiVersion" => match v.as_str() {
                None => causes.push(Cause::invalid_shown(
                    child(path, "apiVersion"),
                    &go_value(v),
                    "must be a string",
                )),
                Some("") => causes.push(Cause::invalid(
                    child(path, "apiVersion"),
                    v,
                    "must not be empty",
                )),
                Some(av) => {
                    if let Some(e) = group_version_error(av) {
                        causes.push(Cause::invalid(child(path, "apiVersion"), v, e));
                    }
                }
            },
            "kind" => match v.as_str() {
                None => causes.push(Cause::invalid_shown(
                    child(path, "kind"),
                    &go_value(v),
                    "must be a string",
                )),
                Some("") => {
                    causes.push(Cause::invalid(child(path, "kind"), v, "must not be empty"))
                }
                Some(kind) => {
                    let errs = super::validation::dns1035_label_errors(&kind.to_lowercase());
                    if !errs.is_empty() {
                        causes.push(Cause::invalid(
                            child(path, "kind"),
                            v,
                            format!(
                                "may have mixed case, but should otherwise match: {}",
                                errs.join(",")
                            ),
                        ));
                    }
                }
            },
            "metadata" => {
                let mpath = child(path, "metadata");
                let Some(meta) = v.as_object() else {
                    causes.push(Cause::invalid_shown(mpath, &go_value(v), "expected a map"));
                    continue;
                };
                // `ValidateObjectMeta` with `ValidatePathSegmentName`; a missing name is fine.
                if let Some(name) = meta.get("name").and_then(Value::as_str) {
                    for bad in [".", ".."] {
                        if name == bad {
                            causes.push(Cause::invalid(
                                child(&mpath, "name"),
                                &json!(name),
                                format!("may not be '{bad}'"),
                            ));
                        }
                    }
                    for bad in ["/", "%"] {
                        if name.contains(bad) {
                            causes.push(Cause::invalid(
                                child(&mpath, "name"),
                                &json!(name),
                                format!("may not contain '{bad}'"),
                            ));
                        }
                    }
                }
                if let Some(labels) = meta.get("labels").and_then(Value::as_object) {
                    for (lk, lv) in labels {
                        causes.extend(qualified_name_causes(&child(&mpath, "labels"), lk));
                        if let Some(lv) = lv.as_str()
                            && !is_label_value(lv)
                        {
                            causes.push(Cause::invalid(
                                child(&mpath, "labels"),
                                &json!(lv),
                                LABEL_VALUE,
                            ));
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// `schema.ParseGroupVersion`'s error, if any.
fn group_version_error(gv: &str) -> Option<String> {
    if gv == "v1" || !gv.contains('/') {
        return None;
    }
    let parts: Vec<&str> = gv.split('/').collect();
    if parts.len() == 2 {
        return None;
    }
    Some(format!("unexpected GroupVersion string: {gv}"))
}

/// `listtype.ValidateListSetsAndMaps`: no duplicate in a `set`, no two items with the same
/// keys in a `map` (whose items must be objects).
pub(crate) fn list_sets_and_maps(s: &Schema, value: &Value, path: &str, causes: &mut Vec<Cause>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if let Some(p) = s.properties.get(k) {
                    list_sets_and_maps(p, v, &child(path, k), causes);
                } else if let Some(Additional::Schema(a)) = &s.additional {
                    list_sets_and_maps(a, v, &key(path, k), causes);
                }
            }
        }
        Value::Array(items) => {
            match s.list_type.as_deref() {
                Some("set") => {
                    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
                    for (i, x) in items.iter().enumerate() {
                        let times = seen.entry(x.to_string()).or_insert(0);
                        *times += 1;
                        if *times == 2 {
                            causes.push(Cause::duplicate_shown(index(path, i), &go_value(x)));
                        }
                    }
                }
                Some("map") => list_map(s, items, path, causes),
                _ => {}
            }
            if let Some(item) = &s.items {
                for (i, v) in items.iter().enumerate() {
                    list_sets_and_maps(item, v, &index(path, i), causes);
                }
            }
        }
        _ => {}
    }
}

fn list_map(s: &Schema, items: &[Value], path: &str, causes: &mut Vec<Cause>) {
    for (i, x) in items.iter().enumerate() {
        if !x.is_null() && !x.is_object() {
            causes.push(Cause::invalid_shown(
                index(path, i),
                &go_value(x),
                "must be an object for an array of list-type map",
            ));
            return;
        }
    }
    let mut seen = BTreeSet::new();
    for (i, x) in items.iter().enumerate() {
        let Some(o) = x.as_object() else { continue };
        let keys: Vec<String> = s
            .list_map_keys
            .iter()
            .map(|k| {
                o.get(k)
                    .map_or_else(|| "\u{0}unspecified".to_owned(), Value::to_string)
            })
            .collect();
        if !seen.insert(keys) {
            causes.push(Cause::duplicate_shown(index(path, i), &go_value(x)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::apiextensions::schema::tests::props;

    fn compile(schema: Value) -> Structural {
        Structural::new(&props(schema)).expect("structural")
    }

    fn messages(causes: &[Cause]) -> Vec<String> {
        causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    fn crontab() -> Structural {
        compile(json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["cronSpec"],
                    "properties": {
                        "cronSpec": {"type": "string", "pattern": "^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){4}$"},
                        "image": {"type": "string", "maxLength": 5, "minLength": 2},
                        "replicas": {"type": "integer", "minimum": 1, "maximum": 10},
                        "ratio": {"type": "number", "exclusiveMaximum": true, "maximum": 1.5, "multipleOf": 0.5},
                        "mode": {"type": "string", "enum": ["a", "b"]},
                        "size": {"type": "integer", "enum": [1, 2]},
                        "port": {"x-kubernetes-int-or-string": true},
                        "tags": {"type": "array", "maxItems": 2, "minItems": 1, "items": {"type": "string"}},
                        "labels": {"type": "object", "maxProperties": 1, "additionalProperties": {"type": "string"}},
                        "maybe": {"type": "string", "nullable": true},
                        "when": {"type": "string", "format": "date-time"},
                    },
                },
            },
        }))
    }

    fn cr(spec: Value) -> Value {
        json!({"apiVersion": "stable.example.com/v1", "kind": "CronTab", "metadata": {"name": "c"}, "spec": spec})
    }

    #[test]
    fn a_valid_object_has_no_errors() {
        let object = cr(
            json!({"cronSpec": "* * * * */5", "replicas": 3, "port": "http", "tags": ["x"],
            "labels": {"a": "b"}, "maybe": null, "mode": "a", "size": 2, "ratio": 1.0, "when": "2024-01-02T03:04:05Z"}),
        );
        assert_eq!(
            messages(&crontab().validate(&object, None)),
            Vec::<String>::new()
        );
    }

    #[test]
    fn schema_violations_read_as_kube_apiservers() {
        let s = crontab();
        let cases: &[(Value, &[&str])] = &[
            (json!({}), &["spec.cronSpec: Required value"]),
            (
                json!({"cronSpec": "* * * * *", "replicas": "string"}),
                &[
                    "spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\"",
                ],
            ),
            (
                json!({"cronSpec": "* * * * *", "replicas": 0}),
                &[
                    "spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1",
                ],
            ),
            (
                json!({"cronSpec": "* * * * *", "replicas": 11}),
                &[
                    "spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal to 10",
                ],
            ),
            (
                json!({"cronSpec": "* * * * *", "ratio": 1.5}),
                &["spec.ratio: Invalid value: 1.5: spec.ratio in body should be less than 1.5"],
            ),
            (
                json!({"cronSpec": "* * * * *", "ratio": 0.7}),
                &["spec.ratio: Invalid value: 0.7: spec.ratio in body should be a multiple of 0.5"],
            ),
            (
                json!({"cronSpec": "x"}),
                &[
                    "spec.cronSpec: Invalid value: \"x\": spec.cronSpec in body should match '^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){4}$'",
                ],
            ),
            (
                json!({"cronSpec": "* * * * *", "image": "toolong"}),
                &["spec.image: Too long: may not be more than 5 bytes"],
            ),
            (
                json!({"cronSpec": "* * * * *", "image": "x"}),
                &[
                    "spec.image: Invalid value: \"x\": spec.image in body should be at least 2 chars long",
                ],
            ),
            (
                json!({"cronSpec": "* * * * *", "mode": "x"}),
                &["spec.mode: Unsupported value: \"x\": supported values: \"a\", \"b\""],
            ),
            (
                json!({"cronSpec": "* * * * *", "size": 3}),
                &["spec.size: Unsupported value: 3: supported values: \"1\", \"2\""],
            ),
            (
                json!({"cronSpec": "* * * * *", "port": true}),
                &[
                    "spec.port: Invalid value: \"boolean\": spec.port in body must be of type integer,string: \"boolean\"",
                ],
            ),
            (
                json!({"cronSpec": "* * * * *", "tags": []}),
                &["spec.tags: Invalid value: 0: spec.tags in body should have at least 1 items"],
            ),
            (
                json!({"cronSpec": "* * * * *", "tags": ["a", "b", 3]}),
                &[
                    "spec.tags[2]: Invalid value: \"integer\": spec.tags[2] in body must be of type string: \"integer\"",
                    "spec.tags: Too many: 3: must have at most 2 items",
                ],
            ),
            (
                json!({"cronSpec": "* * * * *", "labels": {"a": "1", "b": "2"}}),
                &["spec.labels: Too many: 2: must have at most 1 item"],
            ),
            (
                json!({"cronSpec": "* * * * *", "labels": {"a": 1}}),
                &[
                    "spec.labels.a: Invalid value: \"integer\": spec.labels.a in body must be of type string: \"integer\"",
                ],
            ),
            (
                json!({"cronSpec": null}),
                &[
                    "spec.cronSpec: Invalid value: \"null\": spec.cronSpec in body must be of type string: \"null\"",
                ],
            ),
            (
                json!({"cronSpec": "* * * * *", "when": "yesterday"}),
                &[
                    "spec.when: Invalid value: \"yesterday\": spec.when in body must be of type date-time: \"yesterday\"",
                ],
            ),
        ];
        for (spec, want) in cases {
            let mut got = messages(&s.validate_schema(&cr(spec.clone()), None));
            got.retain(|m| !m.starts_with("<nil>"));
            assert_eq!(got, *want, "{spec}");
        }
        assert_eq!(
            messages(&s.validate_schema(&json!({"metadata": {"name": "c"}}), None)),
            Vec::<String>::new()
        );
        let required = compile(
            json!({"type": "object", "required": ["spec"], "properties": {"spec": {"type": "object"}}}),
        );
        assert_eq!(
            messages(&required.validate_schema(&json!({}), None)),
            ["spec: Required value"]
        );
    }

    #[test]
    fn junctors_add_upstreams_composite_errors() {
        let s = compile(json!({"type": "object", "properties": {"spec": {
            "type": "object",
            "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
            "oneOf": [{"required": ["a"]}, {"required": ["b"]}],
            "not": {"required": ["a", "b"]},
        }}}));
        assert_eq!(
            messages(&s.validate_schema(&json!({"spec": {"a": "x"}}), None)),
            Vec::<String>::new()
        );
        assert_eq!(
            messages(&s.validate_schema(&json!({"spec": {}}), None)),
            [
                "<nil>: Invalid value: \"\": \"spec\" must validate one and only one schema (oneOf). Found none valid",
                "spec.a: Required value",
            ]
        );
        assert_eq!(
            messages(&s.validate_schema(&json!({"spec": {"a": "x", "b": "y"}}), None)),
            [
                "<nil>: Invalid value: \"\": \"spec\" must validate one and only one schema (oneOf). Found 2 valid alternatives",
                "<nil>: Invalid value: \"\": \"spec\" must not validate the schema (not)",
            ]
        );
        let any = compile(json!({"type": "object", "properties": {"spec": {
            "type": "object", "properties": {"a": {"type": "string"}},
            "anyOf": [{"required": ["a"]}], "allOf": [{"properties": {"a": {"minLength": 2}}}],
        }}}));
        assert_eq!(
            messages(&any.validate_schema(&json!({"spec": {"a": "x"}}), None)),
            [
                "spec.a: Invalid value: \"x\": spec.a in body should be at least 2 chars long",
                "<nil>: Invalid value: \"\": \"spec\" must validate all the schemas (allOf). None validated",
            ]
        );
        assert_eq!(
            messages(&any.validate_schema(&json!({"spec": {}}), None)),
            [
                "<nil>: Invalid value: \"\": \"spec\" must validate at least one schema (anyOf)",
                "spec.a: Required value",
            ]
        );
    }

    #[test]
    fn metadata_names_are_dns_subdomains() {
        let s = compile(json!({"type": "object"}));
        assert_eq!(
            messages(&s.validate(&json!({"metadata": {"name": "Bad_Name"}}), None)),
            [format!(
                "metadata.name: Invalid value: \"Bad_Name\": {DNS1123_SUBDOMAIN}"
            )]
        );
        assert_eq!(
            messages(&s.validate(&json!({"metadata": {}}), None)),
            ["metadata.name: Required value: name or generateName is required",]
        );
        assert!(
            s.validate(&json!({"metadata": {"generateName": "web-"}}), None)
                .is_empty()
        );
        assert_eq!(
            messages(&validate_type_meta(
                &json!({"kind": "X", "apiVersion": "a/v1"}),
                "stable.example.com",
                "v1",
                "CronTab"
            )),
            [
                "kind: Invalid value: \"X\": must be CronTab",
                "apiVersion: Invalid value: \"a/v1\": must be stable.example.com/v1",
            ]
        );
    }

    #[test]
    fn list_sets_and_maps_refuse_duplicates() {
        let s = compile(json!({"type": "object", "properties": {
            "set": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            "map": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}, "v": {"type": "integer"}}}},
        }}));
        let object = json!({"metadata": {"name": "x"}, "set": ["a", "b", "a", "a"],
            "map": [{"name": "a", "v": 1}, {"name": "a", "v": 2}]});
        assert_eq!(
            messages(&s.validate(&object, None)),
            [
                "map[1]: Duplicate value: map[string]interface {}{\"name\":\"a\", \"v\":2}",
                "set[2]: Duplicate value: \"a\"",
            ]
        );
    }

    #[test]
    fn embedded_resources_need_type_meta() {
        let s = compile(json!({"type": "object", "properties": {"template": {
            "type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true}}}));
        assert_eq!(
            messages(&s.validate(&json!({"metadata": {"name": "x"}, "template": {"kind": "pod", "metadata": {"name": "a/b"}}}), None)),
            [
                "template.apiVersion: Required value: must not be empty",
                "template.metadata.name: Invalid value: \"a/b\": may not contain '/'",
            ]
        );
    }

    #[test]
    fn unchanged_values_ratchet_on_update() {
        let s = crontab();
        let old = cr(json!({"cronSpec": "bad", "replicas": 50}));
        let same = cr(json!({"cronSpec": "bad", "replicas": 50, "image": "ok"}));
        assert_eq!(
            messages(&s.validate(&same, Some(&old))),
            Vec::<String>::new()
        );
        let changed = cr(json!({"cronSpec": "bad", "replicas": 60}));
        assert_eq!(
            messages(&s.validate(&changed, Some(&old))),
            [
                "spec.replicas: Invalid value: 60: spec.replicas in body should be less than or equal to 10"
            ]
        );
    }

    #[test]
    fn defaults_must_validate_and_be_pruned() {
        let causes = Structural::new(&props(json!({"type": "object", "properties": {
            "spec": {"type": "object", "properties": {
                "replicas": {"type": "integer", "default": "one"},
                "nested": {"type": "object", "properties": {"a": {"type": "string"}}, "default": {"b": 1}},
            }},
        }})))
        .expect_err("bad defaults");
        assert_eq!(
            messages(&causes),
            [
                "properties[spec].properties[nested].default: Invalid value: map[string]interface {}{\"b\":1}: must not have unknown fields",
                "properties[spec].properties[replicas].default: Invalid value: \"string\":  in body must be of type integer: \"string\"",
            ]
        );
    }
}
