//! A CustomResourceDefinition version's `openAPIV3Schema` compiled once into a structural form
//! ([`Structural`]), the way apiextensions-apiserver's `schema.NewStructural` and
//! `ValidateStructural` do: the schema is refused unless every node names its `type` (or is
//! `x-kubernetes-int-or-string` / `x-kubernetes-preserve-unknown-fields`), the logical junctors
//! (`allOf`, `anyOf`, `oneOf`, `not`) only restrict what the skeleton already specifies, and
//! `metadata` is left to the API server. The compiled tree ([`Schema`]) is what pruning
//! (`prune.rs`), defaulting (`defaulting.rs`), validation (`validate.rs`) and the
//! `x-kubernetes-validations` rules (`cel.rs`) walk, many times, without reading the typed
//! `JSONSchemaProps` again.

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use serde_json::{Value, json};

use super::cel::{self, Rule};
use crate::apiserver::errors::Cause;

/// One node of a compiled schema: the skeleton (type, properties, items, additional
/// properties), the Kubernetes extensions, and what kube-openapi checks of a value there.
/// Junctor members (`allOf`, ...) are nodes too, usually without a type.
#[derive(Debug, Default)]
pub(crate) struct Schema {
    /// `object`, `array`, `string`, `integer`, `number`, `boolean`, or empty.
    pub(crate) type_: String,
    pub(crate) format: String,
    pub(crate) nullable: bool,
    pub(crate) default: Option<Value>,
    pub(crate) properties: BTreeMap<String, Schema>,
    pub(crate) items: Option<Box<Schema>>,
    pub(crate) additional: Option<Additional>,
    pub(crate) preserve_unknown: bool,
    pub(crate) embedded: bool,
    pub(crate) int_or_string: bool,
    pub(crate) list_type: Option<String>,
    pub(crate) list_map_keys: Vec<String>,
    pub(crate) maximum: Option<f64>,
    pub(crate) exclusive_maximum: bool,
    pub(crate) minimum: Option<f64>,
    pub(crate) exclusive_minimum: bool,
    pub(crate) multiple_of: Option<f64>,
    pub(crate) max_length: Option<i64>,
    pub(crate) min_length: Option<i64>,
    pub(crate) pattern: Option<(String, regex::Regex)>,
    pub(crate) max_items: Option<i64>,
    pub(crate) min_items: Option<i64>,
    pub(crate) unique_items: bool,
    pub(crate) max_properties: Option<i64>,
    pub(crate) min_properties: Option<i64>,
    pub(crate) required: Vec<String>,
    pub(crate) enum_: Vec<Value>,
    pub(crate) all_of: Vec<Schema>,
    pub(crate) any_of: Vec<Schema>,
    pub(crate) one_of: Vec<Schema>,
    pub(crate) not: Option<Box<Schema>>,
    /// The compiled `x-kubernetes-validations` rules of this node.
    pub(crate) rules: Vec<Rule>,
}

/// `additionalProperties`: a schema for every other key, or a bare boolean.
#[derive(Debug)]
pub(crate) enum Additional {
    Allows(bool),
    Schema(Box<Schema>),
}

impl Schema {
    /// The schema of the values of an `additionalProperties` map, if it has one.
    pub(crate) fn additional_schema(&self) -> Option<&Schema> {
        match &self.additional {
            Some(Additional::Schema(s)) => Some(s),
            _ => None,
        }
    }

    /// Whether this node or any under it has `x-kubernetes-validations` rules (else there is
    /// no CEL validator at all, as upstream's `cel.NewValidator` gives none).
    pub(crate) fn has_rules(&self) -> bool {
        !self.rules.is_empty()
            || self.properties.values().any(Schema::has_rules)
            || self.items.as_deref().is_some_and(Schema::has_rules)
            || self.additional_schema().is_some_and(Schema::has_rules)
    }

    /// The schema of a child key: its property, else the `additionalProperties` schema.
    /// `Err(())` when the key is unknown to this node.
    pub(crate) fn child(&self, key: &str) -> Result<Option<&Schema>, ()> {
        if let Some(p) = self.properties.get(key) {
            return Ok(Some(p));
        }
        match &self.additional {
            Some(Additional::Schema(s)) => Ok(Some(s)),
            Some(Additional::Allows(true)) => Ok(None),
            _ => Err(()),
        }
    }
}

/// A version's schema, compiled: build it once per CRD version with [`Structural::new`], then
/// prune, default and validate any number of objects with it.
#[derive(Debug)]
pub(crate) struct Structural {
    root: Schema,
}

impl Structural {
    /// Compiles `openAPIV3Schema`, refusing it as apiextensions-apiserver refuses a
    /// non-structural or otherwise invalid schema. Field paths are relative to the schema
    /// (`properties[spec].type`); [`super::validation`] puts
    /// `spec.versions[i].schema.openAPIV3Schema` in front.
    pub(crate) fn new(schema: &JSONSchemaProps) -> Result<Structural, Vec<Cause>> {
        compile_at(schema, "")
    }

    /// The root node.
    pub(crate) fn root(&self) -> &Schema {
        &self.root
    }
}

/// [`Structural::new`] with every field path under `at`.
pub(crate) fn compile_at(schema: &JSONSchemaProps, at: &str) -> Result<Structural, Vec<Cause>> {
    let mut causes = Vec::new();
    let unsupported = unsupported_field(schema).is_some();
    if !unsupported {
        let mut structural = Vec::new();
        invariants(schema, Level::Root, at, &mut structural);
        completeness(schema, at, &mut structural);
        // `ValidateStructural` sorts its errors by their text.
        structural.sort_by_key(|c| format!("{}: {}", c.field, c.message));
        causes.extend(structural);
    }
    let mut rule_causes = Vec::new();
    let root = convert(schema, at, &mut rule_causes);
    if causes.is_empty() && !unsupported {
        let root = Structural { root };
        root.validate_defaults(at, &mut causes);
        openapi_checks(schema, at, &mut causes);
        causes.extend(rule_causes);
        if causes.is_empty() {
            return Ok(root);
        }
        return Err(causes);
    }
    openapi_checks(schema, at, &mut causes);
    if causes.is_empty()
        && let Some(what) = unsupported_field(schema)
    {
        // `NewStructural`'s own error, shown only when nothing else explains it.
        causes.push(Cause::invalid(
            at,
            &json!(""),
            format!("OpenAPIV3Schema '{what}' is not supported"),
        ));
    }
    Err(causes)
}

/// A field path's child (`spec` + `type`), as `field.Path.Child` writes it.
pub(crate) fn child(base: &str, name: &str) -> String {
    if base.is_empty() {
        name.to_owned()
    } else {
        format!("{base}.{name}")
    }
}

/// `field.Path.Key`: `properties[spec]`.
pub(crate) fn key(base: &str, k: &str) -> String {
    format!("{base}[{k}]")
}

/// `field.Path.Index`: `versions[0]`.
pub(crate) fn index(base: &str, i: usize) -> String {
    format!("{base}[{i}]")
}

/// A value as upstream's `field.Error` prints it: strings quoted, numbers and booleans bare,
/// `null`, and lists and maps in Go's `%#v` (`map[string]interface {}{"a":1}`).
pub(crate) fn go_value(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Array(_) | Value::Object(_) => go_sharp(value),
        other => go_sharp(other),
    }
}

/// Go's `%#v` of a decoded JSON value (an `interface{}`).
fn go_sharp(value: &Value) -> String {
    match value {
        Value::Null => "interface {}(nil)".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => go_number(n),
        Value::String(s) => format!("{s:?}"),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(go_sharp).collect();
            format!("[]interface {{}}{{{}}}", items.join(", "))
        }
        Value::Object(map) => {
            let entries: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{k:?}:{}", go_sharp(v)))
                .collect();
            format!("map[string]interface {{}}{{{}}}", entries.join(", "))
        }
    }
}

/// A JSON number as Go's `%v` prints the `int64` or `float64` it decodes to.
pub(crate) fn go_number(n: &serde_json::Number) -> String {
    if n.is_i64() || n.is_u64() {
        return n.to_string();
    }
    go_float(n.as_f64().unwrap_or_default())
}

/// Go's `%v` of a `float64`: the shortest form, with an exponent below 1e-4 or from 1e21.
pub(crate) fn go_float(f: f64) -> String {
    if f == 0.0 {
        return "0".into();
    }
    let abs = f.abs();
    if !(1e-4..1e21).contains(&abs) {
        let e = format!("{f:e}");
        return match e.split_once('e') {
            Some((mantissa, exponent)) => {
                let (sign, digits) = match exponent.strip_prefix('-') {
                    Some(d) => ('-', d),
                    None => ('+', exponent),
                };
                format!("{mantissa}e{sign}{digits:0>2}")
            }
            None => e,
        };
    }
    format!("{f}")
}

/// The first field `NewStructural` cannot represent, as its error names it.
fn unsupported_field(s: &JSONSchemaProps) -> Option<&'static str> {
    let nested = |s: &JSONSchemaProps| unsupported_field(s);
    if s.id.as_deref().is_some_and(|v| !v.is_empty()) {
        return Some("id");
    }
    if s.schema.as_deref().is_some_and(|v| !v.is_empty()) {
        return Some("schema");
    }
    if s.ref_path.as_deref().is_some_and(|v| !v.is_empty()) {
        return Some("$ref");
    }
    if s.pattern_properties.as_ref().is_some_and(|m| !m.is_empty()) {
        return Some("patternProperties");
    }
    if s.dependencies.as_ref().is_some_and(|m| !m.is_empty()) {
        return Some("dependencies");
    }
    if s.additional_items.is_some() {
        return Some("additionalItems");
    }
    if s.definitions.as_ref().is_some_and(|m| !m.is_empty()) {
        return Some("definitions");
    }
    if let Some(JSONSchemaPropsOrArray::Schemas(_)) = &s.items {
        return Some("items");
    }
    let mut found = None;
    visit_children(s, &mut |c| {
        if found.is_none() {
            found = nested(c);
        }
    });
    found
}

/// Every direct subschema of a node (properties, items, additionalProperties, junctors).
fn visit_children<'a>(s: &'a JSONSchemaProps, f: &mut dyn FnMut(&'a JSONSchemaProps)) {
    for p in s.properties.iter().flat_map(|m| m.values()) {
        f(p);
    }
    if let Some(JSONSchemaPropsOrArray::Schema(i)) = &s.items {
        f(i);
    }
    if let Some(JSONSchemaPropsOrBool::Schema(a)) = &s.additional_properties {
        f(a);
    }
    for j in [&s.all_of, &s.any_of, &s.one_of] {
        for x in j.iter().flatten() {
            f(x);
        }
    }
    if let Some(n) = &s.not {
        f(n);
    }
}

/// Where a node sits, for `ValidateStructural`'s messages.
#[derive(Clone, Copy, PartialEq)]
enum Level {
    Root,
    Item,
    Field,
}

fn items_schema(s: &JSONSchemaProps) -> Option<&JSONSchemaProps> {
    match &s.items {
        Some(JSONSchemaPropsOrArray::Schema(i)) => Some(i),
        _ => None,
    }
}

fn additional_schema(s: &JSONSchemaProps) -> Option<&JSONSchemaProps> {
    match &s.additional_properties {
        Some(JSONSchemaPropsOrBool::Schema(a)) => Some(a),
        _ => None,
    }
}

fn type_of(s: &JSONSchemaProps) -> &str {
    s.type_.as_deref().unwrap_or_default()
}

fn flag(b: Option<bool>) -> bool {
    b.unwrap_or(false)
}

/// `validateStructuralInvariants`, on the skeleton.
fn invariants(s: &JSONSchemaProps, lvl: Level, path: &str, out: &mut Vec<Cause>) {
    let ty = type_of(s);
    if ty == "array" && s.items.is_none() {
        out.push(Cause::required_because(
            child(path, "items"),
            "must be specified",
        ));
    }
    if let Some(items) = items_schema(s) {
        invariants(items, Level::Item, &child(path, "items"), out);
    }
    for (k, v) in s.properties.iter().flatten() {
        invariants(v, Level::Field, &key(&child(path, "properties"), k), out);
    }
    if s.additional_properties.is_some() {
        if lvl == Level::Root {
            out.push(Cause::forbidden(
                child(path, "additionalProperties"),
                "must not be used at the root",
            ));
        }
        if let Some(a) = additional_schema(s) {
            invariants(a, Level::Field, &child(path, "additionalProperties"), out);
        }
    }
    let int_or_string = flag(s.x_kubernetes_int_or_string);
    let preserve = flag(s.x_kubernetes_preserve_unknown_fields);
    let embedded = flag(s.x_kubernetes_embedded_resource);
    if int_or_string && preserve {
        out.push(Cause::invalid(
            child(path, "x-kubernetes-preserve-unknown-fields"),
            &json!(true),
            "must be false if x-kubernetes-int-or-string is true",
        ));
    }
    if int_or_string && embedded {
        out.push(Cause::invalid(
            child(path, "x-kubernetes-embedded-resource"),
            &json!(true),
            "must be false if x-kubernetes-int-or-string is true",
        ));
    }
    let skip_any_of = int_or_string_any_of(s.any_of.as_deref());
    let skip_first_all_of_any_of = s
        .all_of
        .as_deref()
        .and_then(|a| a.first())
        .is_some_and(|first| int_or_string_any_of(first.any_of.as_deref()));
    value_validation(s, skip_any_of, skip_first_all_of_any_of, lvl, path, out);

    let check_metadata = lvl == Level::Root || embedded;
    if embedded && ty != "object" {
        if ty.is_empty() {
            out.push(Cause::required_because(
                child(path, "type"),
                "must be object if x-kubernetes-embedded-resource is true",
            ));
        } else {
            out.push(Cause::invalid(
                child(path, "type"),
                &json!(ty),
                "must be object if x-kubernetes-embedded-resource is true",
            ));
        }
    } else if ty.is_empty() && !int_or_string && !preserve {
        let detail = match lvl {
            Level::Root => "must not be empty at the root",
            Level::Item => "must not be empty for specified array items",
            Level::Field => "must not be empty for specified object fields",
        };
        out.push(Cause::required_because(child(path, "type"), detail));
    }
    if embedded && s.additional_properties.is_some() {
        out.push(Cause::forbidden(
            child(path, "additionalProperties"),
            "must not be used if x-kubernetes-embedded-resource is set",
        ));
    }
    if lvl == Level::Root && !ty.is_empty() && ty != "object" {
        out.push(Cause::invalid(
            child(path, "type"),
            &json!(ty),
            "must be object at the root",
        ));
    }
    let props = s.properties.as_ref();
    for name in ["kind", "apiVersion"] {
        if let Some(p) = props.and_then(|m| m.get(name))
            && check_metadata
            && type_of(p) != "string"
        {
            out.push(Cause::invalid(
                child(&key(&child(path, "properties"), name), "type"),
                &json!(type_of(p)),
                "must be string",
            ));
        }
    }
    if let Some(metadata) = props.and_then(|m| m.get("metadata")) {
        let mpath = key(&child(path, "properties"), "metadata");
        if check_metadata && type_of(metadata) != "object" {
            out.push(Cause::invalid(
                child(&mpath, "type"),
                &json!(type_of(metadata)),
                "must be object",
            ));
        }
        if lvl == Level::Root && !metadata_only_restricts_names(metadata) {
            out.push(Cause::forbidden(
                mpath,
                "must not specify anything other than name and generateName, but metadata is implicitly specified",
            ));
        }
    }
    if embedded && !preserve && props.is_none_or(|m| m.is_empty()) {
        out.push(Cause::required_because(
            child(path, "properties"),
            "must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields",
        ));
    }
}

/// The root's `metadata` may say `type: object` and restrict `name` and `generateName`, and
/// nothing else (`validateStructuralMetadataInvariants`).
fn metadata_only_restricts_names(m: &JSONSchemaProps) -> bool {
    let names_only = m
        .properties
        .as_ref()
        .is_none_or(|p| p.keys().all(|k| k == "name" || k == "generateName"));
    let rest = JSONSchemaProps {
        properties: None,
        type_: None,
        default: None,
        ..m.clone()
    };
    names_only && rest == JSONSchemaProps::default()
}

/// `anyOf: [{type: integer}, {type: string}]`, the one place a junctor may name a type.
fn int_or_string_any_of(any_of: Option<&[JSONSchemaProps]>) -> bool {
    let only_type = |s: &JSONSchemaProps, t: &str| {
        *s == JSONSchemaProps {
            type_: Some(t.to_owned()),
            ..Default::default()
        }
    };
    match any_of {
        Some([a, b]) => only_type(a, "integer") && only_type(b, "string"),
        _ => false,
    }
}

/// `validateValueValidation`: the junctors of a skeleton node, and its pattern.
fn value_validation(
    s: &JSONSchemaProps,
    skip_any_of: bool,
    skip_first_all_of_any_of: bool,
    lvl: Level,
    path: &str,
    out: &mut Vec<Cause>,
) {
    if !skip_any_of {
        for (i, x) in s.any_of.iter().flatten().enumerate() {
            nested(x, false, lvl, &index(&child(path, "anyOf"), i), out);
        }
    }
    for (i, x) in s.all_of.iter().flatten().enumerate() {
        let skip = skip_first_all_of_any_of && i == 0;
        nested(x, skip, lvl, &index(&child(path, "allOf"), i), out);
    }
    for (i, x) in s.one_of.iter().flatten().enumerate() {
        nested(x, false, lvl, &index(&child(path, "oneOf"), i), out);
    }
    if let Some(not) = &s.not {
        nested(not, false, lvl, &child(path, "not"), out);
    }
    if let Some(pattern) = s.pattern.as_deref().filter(|p| !p.is_empty())
        && let Err(e) = regex::Regex::new(pattern)
    {
        out.push(Cause::invalid(
            child(path, "pattern"),
            &json!(pattern),
            format!("must be a valid regular expression, but isn't: {e}"),
        ));
    }
}

/// `validateNestedValueValidation`: what a junctor member may not say.
fn nested(s: &JSONSchemaProps, skip_any_of: bool, lvl: Level, path: &str, out: &mut Vec<Cause>) {
    value_validation(s, skip_any_of, false, lvl, path, out);
    if let Some(items) = items_schema(s) {
        nested(items, false, lvl, &child(path, "items"), out);
    }
    for (k, v) in s.properties.iter().flatten() {
        nested(
            v,
            false,
            Level::Field,
            &key(&child(path, "properties"), k),
            out,
        );
    }
    let forbid = |out: &mut Vec<Cause>, name: &str, detail: &str| {
        out.push(Cause::forbidden(child(path, name), detail));
    };
    if !type_of(s).is_empty() {
        forbid(out, "type", "must be empty to be structural");
    }
    if s.additional_properties.is_some() {
        forbid(
            out,
            "additionalProperties",
            "must be undefined to be structural",
        );
    }
    if s.default.is_some() {
        forbid(out, "default", "must be undefined to be structural");
    }
    if s.title.as_deref().is_some_and(|t| !t.is_empty()) {
        forbid(out, "title", "must be empty to be structural");
    }
    if s.description.as_deref().is_some_and(|t| !t.is_empty()) {
        forbid(out, "description", "must be empty to be structural");
    }
    if flag(s.nullable) {
        forbid(out, "nullable", "must be false to be structural");
    }
    if s.external_docs.is_some() {
        forbid(out, "externalDocs", "must be undefined to be structural");
    }
    if flag(s.x_kubernetes_preserve_unknown_fields) {
        forbid(
            out,
            "x-kubernetes-preserve-unknown-fields",
            "must be false to be structural",
        );
    }
    if flag(s.x_kubernetes_embedded_resource) {
        forbid(
            out,
            "x-kubernetes-embedded-resource",
            "must be false to be structural",
        );
    }
    if flag(s.x_kubernetes_int_or_string) {
        forbid(
            out,
            "x-kubernetes-int-or-string",
            "must be false to be structural",
        );
    }
    if s.x_kubernetes_list_map_keys
        .as_ref()
        .is_some_and(|k| !k.is_empty())
    {
        forbid(
            out,
            "x-kubernetes-list-map-keys",
            "must be empty to be structural",
        );
    }
    if s.x_kubernetes_list_type.is_some() {
        forbid(
            out,
            "x-kubernetes-list-type",
            "must be undefined to be structural",
        );
    }
    if s.x_kubernetes_map_type.is_some() {
        forbid(
            out,
            "x-kubernetes-map-type",
            "must be undefined to be structural",
        );
    }
    if s.x_kubernetes_validations
        .as_ref()
        .is_some_and(|v| !v.is_empty())
    {
        forbid(
            out,
            "x-kubernetes-validations",
            "must be empty to be structural",
        );
    }
    if s.properties
        .as_ref()
        .is_some_and(|p| p.contains_key("metadata"))
    {
        out.push(Cause::forbidden(
            key(&child(path, "properties"), "metadata"),
            "must not be specified in a nested context",
        ));
    }
}

/// `validateStructuralCompleteness`: every field or item a junctor talks about is in the
/// skeleton too.
fn completeness(s: &JSONSchemaProps, path: &str, out: &mut Vec<Cause>) {
    junctors_complete(s, Some(s), path, path, out);
}

fn junctors_complete(
    v: &JSONSchemaProps,
    s: Option<&JSONSchemaProps>,
    s_path: &str,
    v_path: &str,
    out: &mut Vec<Cause>,
) {
    if let Some(not) = &v.not {
        nested_complete(not, s, s_path, &child(v_path, "not"), out);
    }
    for (name, list) in [
        ("allOf", &v.all_of),
        ("anyOf", &v.any_of),
        ("oneOf", &v.one_of),
    ] {
        for (i, x) in list.iter().flatten().enumerate() {
            nested_complete(x, s, s_path, &index(&child(v_path, name), i), out);
        }
    }
}

fn nested_complete(
    v: &JSONSchemaProps,
    s: Option<&JSONSchemaProps>,
    s_path: &str,
    v_path: &str,
    out: &mut Vec<Cause>,
) {
    let Some(s) = s else {
        out.push(Cause::required_because(
            s_path,
            &format!("because it is defined in {v_path}"),
        ));
        return;
    };
    junctors_complete(v, Some(s), s_path, v_path, out);
    if let Some(items) = items_schema(v) {
        nested_complete(
            items,
            items_schema(s),
            &child(s_path, "items"),
            &child(v_path, "items"),
            out,
        );
    }
    for (k, vf) in v.properties.iter().flatten() {
        let sf = s.properties.as_ref().and_then(|p| p.get(k));
        let sp = key(&child(s_path, "properties"), k);
        let vp = key(&child(v_path, "properties"), k);
        match sf {
            None => out.push(Cause::required_because(
                sp,
                &format!("because it is defined in {vp}"),
            )),
            Some(sf) => nested_complete(vf, Some(sf), &sp, &vp, out),
        }
    }
}

const OPENAPI_TYPES: [&str; 6] = ["array", "boolean", "integer", "number", "object", "string"];

/// `ValidateCustomResourceDefinitionOpenAPISchema` with the v1 rules, on every node.
fn openapi_checks(s: &JSONSchemaProps, path: &str, out: &mut Vec<Cause>) {
    let ty = type_of(s);
    if !ty.is_empty() && !OPENAPI_TYPES.contains(&ty) {
        if ty == "null" {
            out.push(Cause::forbidden(
                child(path, "type"),
                "type cannot be set to null, use nullable as an alternative",
            ));
        } else {
            out.push(Cause::unsupported(
                child(path, "type"),
                &json!(ty),
                &OPENAPI_TYPES,
            ));
        }
    }
    let forbid = |out: &mut Vec<Cause>, name: &str, detail: &str| {
        out.push(Cause::forbidden(child(path, name), detail));
    };
    if s.id.as_deref().is_some_and(|v| !v.is_empty()) {
        forbid(out, "id", "id is not supported");
    }
    if s.additional_items.is_some() {
        forbid(out, "additionalItems", "additionalItems is not supported");
    }
    if s.pattern_properties.as_ref().is_some_and(|m| !m.is_empty()) {
        forbid(
            out,
            "patternProperties",
            "patternProperties is not supported",
        );
    }
    if s.definitions.as_ref().is_some_and(|m| !m.is_empty()) {
        forbid(out, "definitions", "definitions is not supported");
    }
    if s.dependencies.is_some() {
        forbid(out, "dependencies", "dependencies is not supported");
    }
    if s.ref_path.is_some() {
        forbid(out, "$ref", "$ref is not supported");
    }
    if let Some(JSONSchemaPropsOrArray::Schemas(_)) = &s.items {
        forbid(
            out,
            "items",
            "items must be a schema object and not an array",
        );
    }
    if s.x_kubernetes_preserve_unknown_fields == Some(false) {
        out.push(Cause::invalid(
            child(path, "x-kubernetes-preserve-unknown-fields"),
            &json!(false),
            "must be true or undefined",
        ));
    }
    if let Some(map_type) = s.x_kubernetes_map_type.as_deref() {
        if ty != "object" {
            type_must_be(out, path, ty, "object", "x-kubernetes-map-type");
        }
        if map_type != "atomic" && map_type != "granular" {
            out.push(Cause::unsupported(
                child(path, "x-kubernetes-map-type"),
                &json!(map_type),
                &["atomic", "granular"],
            ));
        }
    }
    list_type_checks(s, path, out);
    if flag(s.unique_items) {
        forbid(
            out,
            "uniqueItems",
            "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
        );
    }
    match &s.additional_properties {
        Some(JSONSchemaPropsOrBool::Bool(false)) => forbid(
            out,
            "additionalProperties",
            "additionalProperties cannot be set to false",
        ),
        Some(JSONSchemaPropsOrBool::Schema(a)) => {
            if s.properties.as_ref().is_some_and(|p| !p.is_empty()) {
                forbid(
                    out,
                    "additionalProperties",
                    "additionalProperties and properties are mutual exclusive",
                );
            }
            openapi_checks(a, &child(path, "additionalProperties"), out);
        }
        _ => {}
    }
    for (k, v) in s.properties.iter().flatten() {
        openapi_checks(v, &key(&child(path, "properties"), k), out);
    }
    if let Some(not) = &s.not {
        openapi_checks(not, &child(path, "not"), out);
    }
    for (name, list) in [
        ("allOf", &s.all_of),
        ("oneOf", &s.one_of),
        ("anyOf", &s.any_of),
    ] {
        for (i, x) in list.iter().flatten().enumerate() {
            openapi_checks(x, &index(&child(path, name), i), out);
        }
    }
    if let Some(items) = items_schema(s) {
        openapi_checks(items, &child(path, "items"), out);
    }
}

fn type_must_be(out: &mut Vec<Cause>, path: &str, ty: &str, want: &str, because: &str) {
    let detail = format!("must be {want} if {because} is specified");
    if ty.is_empty() {
        out.push(Cause::required_because(child(path, "type"), &detail));
    } else {
        out.push(Cause::invalid(child(path, "type"), &json!(ty), detail));
    }
}

/// The `x-kubernetes-list-type` / `x-kubernetes-list-map-keys` rules.
fn list_type_checks(s: &JSONSchemaProps, path: &str, out: &mut Vec<Cause>) {
    let ty = type_of(s);
    let list_type = s.x_kubernetes_list_type.as_deref();
    let keys = s.x_kubernetes_list_map_keys.as_deref().unwrap_or_default();
    if let Some(lt) = list_type {
        if !["atomic", "set", "map"].contains(&lt) {
            out.push(Cause::unsupported(
                child(path, "x-kubernetes-list-type"),
                &json!(lt),
                &["atomic", "set", "map"],
            ));
        }
        if ty != "array" {
            type_must_be(out, path, ty, "array", "x-kubernetes-list-type");
        } else if lt == "map" && keys.is_empty() {
            out.push(Cause::required_because(
                child(path, "x-kubernetes-list-map-keys"),
                "must not be empty if x-kubernetes-list-type is map",
            ));
        }
    }
    if !keys.is_empty() && list_type != Some("map") {
        out.push(Cause::forbidden(
            child(path, "x-kubernetes-list-map-keys"),
            "must not be set if x-kubernetes-list-type is not map",
        ));
    }
    let item = items_schema(s);
    if list_type == Some("map") && !keys.is_empty() {
        let mut seen = std::collections::BTreeSet::new();
        if keys.iter().any(|k| !seen.insert(k)) {
            out.push(Cause::invalid(
                child(path, "x-kubernetes-list-map-keys"),
                &json!(keys),
                "must not contain duplicate entries",
            ));
        }
        match item {
            Some(item) if type_of(item) == "object" => {
                for k in keys {
                    let kp = key(&child(&child(path, "items"), "properties"), k);
                    match item.properties.as_ref().and_then(|p| p.get(k)) {
                        None => out.push(Cause::required_because(
                            kp,
                            "entries in x-kubernetes-list-map-keys must correspond to existing properties",
                        )),
                        Some(p) if !["string", "integer", "number", "boolean"].contains(&type_of(p)) => {
                            out.push(Cause::invalid(
                                child(&kp, "type"),
                                &json!(type_of(p)),
                                "must be a scalar type if parent array's x-kubernetes-list-type is map",
                            ));
                        }
                        Some(_) => {}
                    }
                }
            }
            _ => out.push(Cause::invalid(
                child(&child(path, "items"), "type"),
                &json!(item.map(type_of).unwrap_or_default()),
                "must be object if parent array's x-kubernetes-list-type is map",
            )),
        }
    }
    // `validateMapListKeysMapSet`
    if let (Some(lt @ ("set" | "map")), Some(item)) = (list_type, item) {
        if flag(item.nullable) {
            out.push(Cause::forbidden(
                child(&child(path, "items"), "nullable"),
                format!("cannot be nullable when x-kubernetes-list-type is {lt}"),
            ));
        }
        if lt == "map" {
            let required = item.required.as_deref().unwrap_or_default();
            for k in keys {
                let Some(p) = item.properties.as_ref().and_then(|p| p.get(k)) else {
                    continue;
                };
                let kp = key(&child(&child(path, "items"), "properties"), k);
                if !required.contains(k) && p.default.is_none() {
                    out.push(Cause::required_because(
                        child(&kp, "default"),
                        "this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property",
                    ));
                }
                if flag(p.nullable) {
                    out.push(Cause::forbidden(
                        child(&kp, "nullable"),
                        "this property is in x-kubernetes-list-map-keys, so it cannot be nullable",
                    ));
                }
            }
        }
    }
}

/// The typed schema into the tree the algorithms walk; rule compilation errors are collected.
fn convert(s: &JSONSchemaProps, path: &str, causes: &mut Vec<Cause>) -> Schema {
    let int_or_string = flag(s.x_kubernetes_int_or_string);
    let mut out = Schema {
        type_: type_of(s).to_owned(),
        format: s.format.clone().unwrap_or_default(),
        nullable: flag(s.nullable),
        default: s.default.as_ref().map(|d| d.0.clone()),
        preserve_unknown: flag(s.x_kubernetes_preserve_unknown_fields),
        embedded: flag(s.x_kubernetes_embedded_resource),
        int_or_string,
        list_type: s.x_kubernetes_list_type.clone(),
        list_map_keys: s.x_kubernetes_list_map_keys.clone().unwrap_or_default(),
        maximum: s.maximum,
        exclusive_maximum: flag(s.exclusive_maximum),
        minimum: s.minimum,
        exclusive_minimum: flag(s.exclusive_minimum),
        multiple_of: s.multiple_of,
        max_length: s.max_length,
        min_length: s.min_length,
        pattern: s
            .pattern
            .as_deref()
            .filter(|p| !p.is_empty())
            .and_then(|p| regex::Regex::new(p).ok().map(|r| (p.to_owned(), r))),
        max_items: s.max_items,
        min_items: s.min_items,
        unique_items: flag(s.unique_items),
        max_properties: s.max_properties,
        min_properties: s.min_properties,
        required: s.required.clone().unwrap_or_default(),
        enum_: s.enum_.iter().flatten().map(|e| e.0.clone()).collect(),
        ..Default::default()
    };
    for (k, v) in s.properties.iter().flatten() {
        let p = convert(v, &key(&child(path, "properties"), k), causes);
        out.properties.insert(k.clone(), p);
    }
    if let Some(items) = items_schema(s) {
        out.items = Some(Box::new(convert(items, &child(path, "items"), causes)));
    }
    out.additional = match &s.additional_properties {
        None => None,
        Some(JSONSchemaPropsOrBool::Bool(b)) => Some(Additional::Allows(*b)),
        Some(JSONSchemaPropsOrBool::Schema(a)) => Some(Additional::Schema(Box::new(convert(
            a,
            &child(path, "additionalProperties"),
            causes,
        )))),
    };
    let list = |name: &str, l: &Option<Vec<JSONSchemaProps>>, causes: &mut Vec<Cause>| {
        l.iter()
            .flatten()
            .enumerate()
            .map(|(i, x)| convert(x, &index(&child(path, name), i), causes))
            .collect::<Vec<_>>()
    };
    out.all_of = list("allOf", &s.all_of, causes);
    out.any_of = list("anyOf", &s.any_of, causes);
    out.one_of = list("oneOf", &s.one_of, causes);
    out.not = s
        .not
        .as_ref()
        .map(|n| Box::new(convert(n, &child(path, "not"), causes)));
    if let Some(rules) = &s.x_kubernetes_validations {
        out.rules = cel::compile_rules(
            rules,
            &out,
            &child(path, "x-kubernetes-validations"),
            causes,
        );
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn props(value: Value) -> JSONSchemaProps {
        serde_json::from_value(value).expect("a JSONSchemaProps")
    }

    fn refused(value: Value) -> Vec<String> {
        match Structural::new(&props(value)) {
            Ok(_) => Vec::new(),
            Err(causes) => causes
                .iter()
                .map(|c| format!("{}: {}", c.field, c.message))
                .collect(),
        }
    }

    #[test]
    fn a_structural_schema_compiles() {
        let s = Structural::new(&props(json!({
            "type": "object",
            "properties": {
                "metadata": {"type": "object"},
                "spec": {
                    "type": "object",
                    "required": ["cronSpec"],
                    "properties": {
                        "cronSpec": {"type": "string", "pattern": "^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){4}$"},
                        "replicas": {"type": "integer", "minimum": 1, "maximum": 10},
                        "port": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "raw": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    },
                },
            },
        })))
        .expect("structural");
        assert_eq!(s.root().properties["spec"].required, vec!["cronSpec"]);
        assert!(s.root().properties["spec"].properties["port"].int_or_string);
    }

    #[test]
    fn non_structural_schemas_are_refused_in_upstreams_words() {
        assert_eq!(
            refused(json!({"properties": {"spec": {"properties": {"x": {"type": "string"}}}}})),
            [
                "properties[spec].type: Required value: must not be empty for specified object fields",
                "type: Required value: must not be empty at the root",
            ]
        );
        assert_eq!(
            refused(
                json!({"type": "object", "properties": {"list": {"type": "array", "items": {}}}})
            ),
            [
                "properties[list].items.type: Required value: must not be empty for specified array items"
            ]
        );
        assert_eq!(
            refused(json!({"type": "object", "properties": {"list": {"type": "array"}}})),
            ["properties[list].items: Required value: must be specified"]
        );
        assert_eq!(
            refused(json!({"type": "string"})),
            ["type: Invalid value: \"string\": must be object at the root"]
        );
        assert_eq!(
            refused(json!({"type": "object", "additionalProperties": {"type": "string"}})),
            ["additionalProperties: Forbidden: must not be used at the root"]
        );
        assert_eq!(
            refused(
                json!({"type": "object", "properties": {"e": {"x-kubernetes-embedded-resource": true, "type": "string"}}})
            ),
            [
                "properties[e].properties: Required value: must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields",
                "properties[e].type: Invalid value: \"string\": must be object if x-kubernetes-embedded-resource is true",
            ]
        );
        assert_eq!(
            refused(
                json!({"type": "object", "properties": {"e": {"x-kubernetes-embedded-resource": true, "type": "object"}}})
            ),
            [
                "properties[e].properties: Required value: must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields",
            ]
        );
        assert_eq!(
            refused(json!({"type": "object", "properties": {"p": {
                "x-kubernetes-int-or-string": true, "x-kubernetes-preserve-unknown-fields": true}}})),
            [
                "properties[p].x-kubernetes-preserve-unknown-fields: Invalid value: true: must be false if x-kubernetes-int-or-string is true"
            ]
        );
        assert_eq!(
            refused(
                json!({"type": "object", "properties": {"p": {"type": "object", "anyOf": [{"type": "object"}]}}})
            ),
            ["properties[p].anyOf[0].type: Forbidden: must be empty to be structural"]
        );
        assert_eq!(
            refused(
                json!({"type": "object", "properties": {"p": {"type": "object", "oneOf": [{"properties": {"q": {"description": "d"}}}]}}})
            ),
            [
                "properties[p].oneOf[0].properties[q].description: Forbidden: must be empty to be structural",
            ]
        );
        assert_eq!(
            refused(
                json!({"type": "object", "anyOf": [{"properties": {"spec": {"required": ["a"]}}}]})
            ),
            [
                "properties[spec]: Required value: because it is defined in anyOf[0].properties[spec]"
            ]
        );
        assert_eq!(
            refused(
                json!({"type": "object", "properties": {"metadata": {"type": "object", "properties": {"labels": {"type": "object"}}}}})
            ),
            [
                "properties[metadata]: Forbidden: must not specify anything other than name and generateName, but metadata is implicitly specified"
            ]
        );
        assert_eq!(
            refused(
                json!({"type": "object", "properties": {"metadata": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 10}}}}})
            ),
            Vec::<String>::new()
        );
        assert_eq!(
            refused(json!({"type": "object", "properties": {"kind": {"type": "integer"}}})),
            ["properties[kind].type: Invalid value: \"integer\": must be string"]
        );
        assert_eq!(
            refused(
                json!({"type": "object", "properties": {"s": {"type": "string", "pattern": "("}}})
            ),
            [
                "properties[s].pattern: Invalid value: \"(\": must be a valid regular expression, but isn't: regex parse error:\n    (\n    ^\nerror: unclosed group"
            ]
        );
    }

    #[test]
    fn openapi_rules_refuse_what_crds_never_allow() {
        assert_eq!(
            refused(
                json!({"type": "object", "properties": {"p": {"type": "object",
                "properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "string"}}}})
            ),
            [
                "properties[p].additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive"
            ]
        );
        assert_eq!(
            refused(
                json!({"type": "object", "properties": {"l": {"type": "array", "uniqueItems": true, "items": {"type": "string"}}}})
            ),
            [
                "properties[l].uniqueItems: Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic"
            ]
        );
        assert_eq!(
            refused(json!({"type": "object", "properties": {"r": {"$ref": "#/definitions/x"}}})),
            ["properties[r].$ref: Forbidden: $ref is not supported",]
        );
        assert_eq!(
            refused(json!({"type": "object", "properties": {"n": {"type": "null"}}})),
            [
                "properties[n].type: Forbidden: type cannot be set to null, use nullable as an alternative"
            ]
        );
        assert_eq!(
            refused(json!({"type": "object", "properties": {"n": {"type": "float"}}})),
            [
                "properties[n].type: Unsupported value: \"float\": supported values: \"array\", \"boolean\", \"integer\", \"number\", \"object\", \"string\""
            ]
        );
        assert_eq!(
            refused(
                json!({"type": "object", "properties": {"l": {"type": "array", "x-kubernetes-list-type": "map",
                "items": {"type": "object", "properties": {"name": {"type": "string"}}}}}})
            ),
            [
                "properties[l].x-kubernetes-list-map-keys: Required value: must not be empty if x-kubernetes-list-type is map"
            ]
        );
        assert_eq!(
            refused(
                json!({"type": "object", "properties": {"l": {"type": "array", "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
                "items": {"type": "object", "properties": {"name": {"type": "string"}}}}}})
            ),
            [
                "properties[l].items.properties[name].default: Required value: this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property"
            ]
        );
    }

    #[test]
    fn go_prints_values_as_field_errors_show_them() {
        assert_eq!(go_value(&json!("a")), "\"a\"");
        assert_eq!(go_value(&json!(1.5)), "1.5");
        assert_eq!(go_value(&json!(3)), "3");
        assert_eq!(go_value(&json!(1e21)), "1e+21");
        assert_eq!(go_value(&json!(0.00001)), "1e-05");
        assert_eq!(go_value(&Value::Null), "null");
        assert_eq!(
            go_value(&json!({"b": [1, "x"], "a": null})),
            "map[string]interface {}{\"a\":interface {}(nil), \"b\":[]interface {}{1, \"x\"}}"
        );
    }
}
