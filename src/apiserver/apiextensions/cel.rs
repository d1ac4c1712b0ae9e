//! `x-kubernetes-validations`: CEL rules on schema nodes, compiled with the schema and run
//! against each custom resource after its OpenAPI validation, as apiextensions-apiserver's
//! `schema/cel` package does. `self` is the node's value (properties with names CEL cannot
//! spell escaped: `foo-bar` is `self.foo__dash__bar`), `oldSelf` the stored value on update
//! (transition rules run only where the old value correlates: object keys, `map` list keys;
//! with `optionalOldSelf` also on create, as an optional). A failing rule is a field error at
//! the node (or its `fieldPath`) with the value's schema type: `spec: Invalid value: "object":
//! <message>`, its `reason` choosing Forbidden, Required or Duplicate.
//!
//! The interpreter is the `cel` crate (cel-rust), with its strings and lists extensions and
//! Kubernetes' list functions `isSorted`, `sum`, `min` and `max` (not its list `indexOf` /
//! `lastIndexOf`, whose names the strings extension already holds).
//! Differences from kube-apiserver's cel-go: rules are not type-checked when the CRD is
//! written (a rule that does not evaluate to a bool fails when it runs), there is no cost
//! budget, compile and runtime errors are cel-rust's words, and `format: date-time` /
//! `duration` values stay strings (no timestamp or duration types).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use cel::objects::{Key, OptionalValue};
use cel::{Context, Env, ExecutionError, Program};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::ValidationRule;
use serde_json::{Value, json};

use super::schema::{Schema, child, index, key};
use crate::apiserver::errors::Cause;

/// The reasons a rule may give its failures.
const REASONS: [&str; 4] = [
    "FieldValueInvalid",
    "FieldValueForbidden",
    "FieldValueRequired",
    "FieldValueDuplicate",
];

/// The most characters a rule's `message` may have.
const MAX_MESSAGE: usize = 2048;

/// A compiled `x-kubernetes-validations` rule.
pub(crate) struct Rule {
    source: ValidationRule,
    program: Program,
    message_expression: Option<Program>,
    /// Whether the rule reads `oldSelf` (a transition rule).
    transition: bool,
}

impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rule")
            .field("rule", &self.source.rule)
            .finish()
    }
}

/// CEL's environment: the standard library, the strings and lists extensions.
static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    // Both are cel-rust's own, declared once here; neither can fail on a fresh stdlib.
    let _ = env.add_extension(cel::extensions::strings);
    let _ = env.add_extension(cel::extensions::lists);
    Arc::new(env)
});

/// `ValidationRule` as Go's `%#v` prints it, the value of a rule's compile errors.
fn shown(rule: &ValidationRule) -> String {
    let reason = match &rule.reason {
        None => "(*apiextensions.FieldValueErrorReason)(nil)".to_owned(),
        Some(r) => format!("(*apiextensions.FieldValueErrorReason)({r:?})"),
    };
    let optional = match rule.optional_old_self {
        None => "(*bool)(nil)".to_owned(),
        Some(b) => format!("(*bool)({b})"),
    };
    format!(
        "apiextensions.ValidationRule{{Rule:{:?}, Message:{:?}, MessageExpression:{:?}, Reason:{reason}, FieldPath:{:?}, OptionalOldSelf:{optional}}}",
        rule.rule,
        rule.message.as_deref().unwrap_or_default(),
        rule.message_expression.as_deref().unwrap_or_default(),
        rule.field_path.as_deref().unwrap_or_default(),
    )
}

/// Compiles a node's rules; what the CRD's validation refuses goes to `causes` under `path`
/// (`...x-kubernetes-validations`), and such rules are left out.
pub(crate) fn compile_rules(
    rules: &[ValidationRule],
    node: &Schema,
    path: &str,
    causes: &mut Vec<Cause>,
) -> Vec<Rule> {
    let mut out = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let at = index(path, i);
        let before = causes.len();
        if let Some(message) = rule.message.as_deref() {
            let mpath = child(&at, "message");
            if !message.is_empty() && message.trim().is_empty() {
                causes.push(Cause::invalid(
                    mpath,
                    &json!(message),
                    "message must be non-empty if specified",
                ));
            } else if message.chars().count() > MAX_MESSAGE {
                causes.push(Cause::invalid(
                    mpath,
                    &json!(message),
                    format!("message must have a maximum length of {MAX_MESSAGE} characters"),
                ));
            } else if message.contains(['\n', '\r']) {
                causes.push(Cause::invalid(
                    mpath,
                    &json!(message),
                    "message must not contain line breaks",
                ));
            }
        }
        if let Some(reason) = rule.reason.as_deref()
            && !REASONS.contains(&reason)
        {
            causes.push(Cause::unsupported(
                child(&at, "reason"),
                &json!(reason),
                &REASONS,
            ));
        }
        if let Some(field_path) = rule.field_path.as_deref()
            && let Err(e) = resolve_field_path(node, field_path)
        {
            causes.push(Cause::invalid(
                child(&at, "fieldPath"),
                &json!(field_path),
                e,
            ));
        }
        if rule.rule.trim().is_empty() {
            causes.push(Cause::required_because(
                child(&at, "rule"),
                "rule is not specified",
            ));
            continue;
        }
        let program = match ENV.compile(&rule.rule) {
            Ok(p) => p,
            Err(e) => {
                causes.push(Cause::invalid_shown(
                    child(&at, "rule"),
                    &shown(rule),
                    format!("compilation failed: {e}"),
                ));
                continue;
            }
        };
        let message_expression = match rule.message_expression.as_deref() {
            None | Some("") => None,
            Some(expr) => match ENV.compile(expr) {
                Ok(p) => Some(p),
                Err(e) => {
                    causes.push(Cause::invalid_shown(
                        child(&at, "messageExpression"),
                        &shown(rule),
                        format!("messageExpression compilation failed: {e}"),
                    ));
                    None
                }
            },
        };
        if causes.len() > before {
            continue;
        }
        let transition = program.references().has_variable("oldSelf");
        out.push(Rule {
            source: rule.clone(),
            program,
            message_expression,
            transition,
        });
    }
    out
}

/// `ValidFieldPath`: a rule's `fieldPath` (`.spec.foo`, `['a.b']`, `.list[0]`) must name a
/// field the node's schema has; the field path segments it adds to errors.
fn resolve_field_path(node: &Schema, field_path: &str) -> Result<Vec<Segment>, String> {
    let mut segments = Vec::new();
    let mut s = Some(node);
    let mut rest = field_path;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            let name = &after[..end];
            if name.is_empty() {
                return Err("fieldPath must be a valid path: empty field name".into());
            }
            s = descend(s, name, field_path)?;
            segments.push(Segment::Child(name.to_owned()));
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix("['") {
            let end = after.find("']").ok_or_else(|| {
                format!("fieldPath must be a valid path: unterminated bracket in {field_path}")
            })?;
            let name = &after[..end];
            s = descend(s, name, field_path)?;
            segments.push(Segment::Key(name.to_owned()));
            rest = &after[end + 2..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']').ok_or_else(|| {
                format!("fieldPath must be a valid path: unterminated bracket in {field_path}")
            })?;
            let i: usize = after[..end].parse().map_err(|_| {
                format!("fieldPath must be a valid path: invalid index in {field_path}")
            })?;
            s = s.and_then(|s| s.items.as_deref());
            segments.push(Segment::Index(i));
            rest = &after[end + 1..];
        } else {
            return Err(format!(
                "fieldPath must be a valid path: expected [ or . at the start of {rest}"
            ));
        }
    }
    Ok(segments)
}

fn descend<'a>(
    s: Option<&'a Schema>,
    name: &str,
    whole: &str,
) -> Result<Option<&'a Schema>, String> {
    let Some(s) = s else { return Ok(None) };
    match s.child(name) {
        Ok(next) => Ok(next),
        Err(()) if s.preserve_unknown => Ok(None),
        Err(()) => Err(format!(
            "fieldPath must be a valid path: does not refer to a valid field {whole}"
        )),
    }
}

enum Segment {
    Child(String),
    Key(String),
    Index(usize),
}

/// Runs every rule of the tree under `s` against `value` (`old` the correlated stored value),
/// `path` the value's field path (empty at the root, which errors call `<nil>`).
pub(crate) fn validate(
    s: &Schema,
    value: &Value,
    old: Option<&Value>,
    path: &str,
    causes: &mut Vec<Cause>,
) {
    if value.is_null() {
        return;
    }
    let unchanged = old == Some(value);
    for rule in &s.rules {
        if let Some(cause) = run(rule, s, value, old, path)
            && !unchanged
        {
            causes.push(cause);
        }
    }
    match value {
        Value::Object(map) => {
            let old_map = old.and_then(Value::as_object);
            for (k, v) in map {
                let old_v = old_map.and_then(|o| o.get(k));
                if let Some(p) = s.properties.get(k) {
                    validate(p, v, old_v, &child(path, k), causes);
                } else if let Some(a) = s.additional_schema() {
                    validate(a, v, old_v, &key(path, k), causes);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = &s.items {
                let old_items = old.and_then(Value::as_array);
                for (i, v) in items.iter().enumerate() {
                    let old_v = old_items.and_then(|o| correlate(s, v, o));
                    validate(item, v, old_v, &index(path, i), causes);
                }
            }
        }
        _ => {}
    }
}

/// The stored item of a `map` list with the same keys as `item`.
fn correlate<'a>(s: &Schema, item: &Value, old: &'a [Value]) -> Option<&'a Value> {
    if s.list_type.as_deref() != Some("map") || s.list_map_keys.is_empty() {
        return None;
    }
    let keys = |v: &'_ Value| -> Option<Vec<Value>> {
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

/// The type a failing rule's error shows for the value: the node's schema type.
fn schema_type(s: &Schema) -> &str {
    if s.int_or_string && s.type_.is_empty() {
        return "";
    }
    &s.type_
}

/// Evaluates one rule; the field error if it fails.
fn run(rule: &Rule, s: &Schema, value: &Value, old: Option<&Value>, path: &str) -> Option<Cause> {
    let optional = rule.source.optional_old_self == Some(true);
    if rule.transition && old.is_none() && !optional {
        return None;
    }
    let mut context = Context::with_env(Arc::clone(&ENV));
    add_list_functions(&mut context);
    context.add_variable_from_value("self", to_cel(value, Some(s)));
    if rule.transition {
        let old = old.map(|o| to_cel(o, Some(s)));
        let old = if optional {
            let opt = match old {
                Some(v) => OptionalValue::of(v),
                None => OptionalValue::none(),
            };
            cel::Value::Opaque(Arc::new(opt))
        } else {
            old.unwrap_or(cel::Value::Null)
        };
        context.add_variable_from_value("oldSelf", old);
    }
    let field = error_path(path, rule.source.field_path.as_deref(), s);
    let ty = json!(schema_type(s));
    let source = rule_text(&rule.source);
    match rule.program.execute(&context) {
        Ok(cel::Value::Bool(true)) => None,
        Ok(cel::Value::Bool(false)) => {
            let detail = message_of(rule, &context);
            Some(field_error(
                &field,
                &ty,
                &detail,
                rule.source.reason.as_deref(),
            ))
        }
        Ok(other) => Some(Cause::invalid(
            field,
            &ty,
            format!(
                "rule did not evaluate to a bool but to {:?} evaluating rule: {source}",
                other.type_of().to_string()
            ),
        )),
        Err(e) => {
            let detail = match &e {
                ExecutionError::NoSuchOverload(_) => format!(
                    "'no such overload': call arguments did not match a supported operator, function or macro signature for rule: {source}"
                ),
                other => format!("{} evaluating rule: {source}", runtime_error(other)),
            };
            Some(Cause::invalid(field, &ty, detail))
        }
    }
}

/// A runtime error in cel-go's words where they are known.
fn runtime_error(e: &ExecutionError) -> String {
    match e {
        ExecutionError::NoSuchKey(k) => format!("no such key: {k}"),
        ExecutionError::DivisionByZero(_) => "division by zero".into(),
        ExecutionError::RemainderByZero(_) => "modulus by zero".into(),
        ExecutionError::IndexOutOfBounds(i) => format!("index out of bounds: {i:?}"),
        ExecutionError::Overflow(..) => "integer overflow".into(),
        other => other.to_string(),
    }
}

/// `ruleErrorString`: the message, else the rule, trimmed.
fn rule_text(rule: &ValidationRule) -> String {
    match rule.message.as_deref().map(str::trim) {
        Some(m) if !m.is_empty() => m.to_owned(),
        _ => rule.rule.trim().to_owned(),
    }
}

/// The failure's detail: the `messageExpression`'s string if it gives a usable one, else the
/// `message`, else `failed rule: <rule>`.
fn message_of(rule: &Rule, context: &Context<'_, '_>) -> String {
    if let Some(expr) = &rule.message_expression
        && let Ok(cel::Value::String(m)) = expr.execute(context)
    {
        let m = m.trim();
        if !m.is_empty() && !m.contains(['\n', '\r']) {
            return m.to_owned();
        }
    }
    match rule.source.message.as_deref().map(str::trim) {
        Some(m) if !m.is_empty() => m.to_owned(),
        _ => format!("failed rule: {}", rule.source.rule.trim()),
    }
}

/// `fieldErrorForReason`.
fn field_error(field: &str, ty: &Value, detail: &str, reason: Option<&str>) -> Cause {
    match reason {
        Some("FieldValueForbidden") => Cause::forbidden(field, detail),
        Some("FieldValueRequired") => Cause::required_because(field, detail),
        Some("FieldValueDuplicate") => Cause::duplicate(field, ty),
        _ => Cause::invalid(field, ty, detail),
    }
}

/// The node's path with the rule's `fieldPath` appended (`<nil>` for the root itself).
fn error_path(path: &str, field_path: Option<&str>, s: &Schema) -> String {
    let mut out = path.to_owned();
    if let Some(fp) = field_path
        && let Ok(segments) = resolve_field_path(s, fp)
    {
        for seg in segments {
            out = match seg {
                Segment::Child(n) => child(&out, &n),
                Segment::Key(k) => {
                    if out.is_empty() {
                        format!("[{k}]")
                    } else {
                        key(&out, &k)
                    }
                }
                Segment::Index(i) => index(&out, i),
            };
        }
    }
    if out.is_empty() {
        "<nil>".to_owned()
    } else {
        out
    }
}

/// CEL's reserved words, which property names escape as `__word__`.
const RESERVED: [&str; 21] = [
    "true",
    "false",
    "null",
    "in",
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
];

/// `model.Escape`: a property name as a CEL identifier, or `None` when it cannot be one.
pub(crate) fn escape(name: &str) -> Option<String> {
    let first = name.chars().next()?;
    if first.is_ascii_digit() {
        return None;
    }
    if RESERVED.contains(&name) {
        return Some(format!("__{name}__"));
    }
    let mut out = String::new();
    let mut rest = name;
    while let Some(c) = rest.chars().next() {
        if rest.starts_with("__") {
            out.push_str("__underscores__");
            rest = &rest[2..];
            continue;
        }
        match c {
            '.' => out.push_str("__dot__"),
            '-' => out.push_str("__dash__"),
            '/' => out.push_str("__slash__"),
            c if c.is_ascii_alphanumeric() || c == '_' => out.push(c),
            _ => return None,
        }
        rest = &rest[c.len_utf8()..];
    }
    Some(out)
}

/// A JSON value as CEL sees it under its schema: integers as `int`, `number`s as `double`,
/// `format: byte` strings as bytes, objects' properties under their escaped names.
fn to_cel(value: &Value, s: Option<&Schema>) -> cel::Value {
    match value {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => {
            let as_double = s.is_some_and(|s| s.type_ == "number");
            match (n.as_i64(), as_double) {
                (Some(i), false) => cel::Value::Int(i),
                _ => match n.as_u64() {
                    Some(u) if !as_double && n.as_i64().is_none() => cel::Value::UInt(u),
                    _ => cel::Value::Float(n.as_f64().unwrap_or_default()),
                },
            }
        }
        Value::String(text) => {
            if s.is_some_and(|s| s.format == "byte") {
                use base64::Engine;
                if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(text) {
                    return cel::Value::Bytes(Arc::new(bytes));
                }
            }
            cel::Value::String(Arc::new(text.clone()))
        }
        Value::Array(items) => {
            let item = s.and_then(|s| s.items.as_deref());
            cel::Value::List(Arc::new(items.iter().map(|v| to_cel(v, item)).collect()))
        }
        Value::Object(map) => {
            let mut out: HashMap<Key, cel::Value> = HashMap::new();
            for (k, v) in map {
                match s.and_then(|s| s.properties.get(k)) {
                    Some(p) => {
                        if let Some(name) = escape(k) {
                            out.insert(Key::from(name), to_cel(v, Some(p)));
                        }
                    }
                    None => {
                        let a = s.and_then(Schema::additional_schema);
                        out.insert(Key::from(k.clone()), to_cel(v, a));
                    }
                }
            }
            cel::Value::Map(cel::objects::Map { map: Arc::new(out) })
        }
    }
}

/// Kubernetes' CEL list library: `isSorted`, `sum`, `min`, `max`.
fn add_list_functions(context: &mut Context<'_, '_>) {
    use cel::extractors::This;
    let list_of = |this: &Arc<Vec<cel::Value>>| this.iter().cloned().collect::<Vec<_>>();
    let _ = context.add_function("isSorted", move |This(this): This<Arc<Vec<cel::Value>>>| {
        let items = list_of(&this);
        items.windows(2).all(|w| w[0] <= w[1])
    });
    let _ = context.add_function(
        "sum",
        |This(this): This<Arc<Vec<cel::Value>>>| -> Result<cel::Value, ExecutionError> {
            let mut ints: i64 = 0;
            let mut floats: f64 = 0.0;
            let mut any_float = false;
            for v in this.iter() {
                match v {
                    cel::Value::Int(i) => {
                        ints = ints.checked_add(*i).ok_or_else(|| {
                            ExecutionError::function_error("sum", "integer overflow")
                        })?;
                    }
                    cel::Value::Float(f) => {
                        any_float = true;
                        floats += f;
                    }
                    other => {
                        return Err(ExecutionError::function_error(
                            "sum",
                            format!("cannot sum {other:?}"),
                        ));
                    }
                }
            }
            Ok(if any_float {
                cel::Value::Float(floats + ints as f64)
            } else {
                cel::Value::Int(ints)
            })
        },
    );
    for (name, want_max) in [("max", true), ("min", false)] {
        let _ = context.add_function(
            name,
            move |This(this): This<Arc<Vec<cel::Value>>>| -> Result<cel::Value, ExecutionError> {
                let mut best: Option<&cel::Value> = None;
                for v in this.iter() {
                    best = match best {
                        None => Some(v),
                        Some(b) if (want_max && v > b) || (!want_max && v < b) => Some(v),
                        keep => keep,
                    };
                }
                best.cloned().ok_or_else(|| {
                    ExecutionError::function_error(
                        if want_max { "max" } else { "min" },
                        "list is empty",
                    )
                })
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::apiextensions::schema::Structural;
    use crate::apiserver::apiextensions::schema::tests::props;

    fn messages(causes: &[Cause]) -> Vec<String> {
        causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    fn schema() -> Structural {
        Structural::new(&props(json!({
            "type": "object",
            "x-kubernetes-validations": [{"rule": "has(self.spec)", "message": "spec is required"}],
            "properties": {"spec": {
                "type": "object",
                "x-kubernetes-validations": [
                    {"rule": "self.minReplicas <= self.replicas", "message": "replicas should be greater than or equal to minReplicas"},
                    {"rule": "self.replicas <= self.maxReplicas", "messageExpression": "'replicas ' + string(self.replicas) + ' is over ' + string(self.maxReplicas)"},
                    {"rule": "!has(self.image) || self.image.startsWith('registry/')", "fieldPath": ".image", "reason": "FieldValueForbidden", "message": "image must come from registry/"},
                    {"rule": "self.replicas >= oldSelf.replicas", "message": "replicas may not shrink"},
                    {"rule": "self.x__dash__y != 'no'"},
                ],
                "properties": {
                    "replicas": {"type": "integer"},
                    "minReplicas": {"type": "integer"},
                    "maxReplicas": {"type": "integer"},
                    "image": {"type": "string"},
                    "x-y": {"type": "string"},
                    "tags": {"type": "array", "items": {"type": "string", "x-kubernetes-validations": [{"rule": "self.size() < 4"}]}},
                },
            }},
        })))
        .expect("structural")
    }

    fn spec(v: Value) -> Value {
        json!({"metadata": {"name": "x"}, "spec": v})
    }

    #[test]
    fn rules_pass_and_fail_in_upstreams_words() {
        let s = schema();
        let ok = spec(
            json!({"replicas": 2, "minReplicas": 1, "maxReplicas": 3, "x-y": "ok", "tags": ["abc"]}),
        );
        assert_eq!(messages(&s.validate(&ok, None)), Vec::<String>::new());
        let bad = spec(
            json!({"replicas": 5, "minReplicas": 6, "maxReplicas": 3, "image": "docker.io/x",
            "x-y": "no", "tags": ["a", "long"]}),
        );
        assert_eq!(
            messages(&s.validate(&bad, None)),
            [
                "spec: Invalid value: \"object\": replicas should be greater than or equal to minReplicas",
                "spec: Invalid value: \"object\": replicas 5 is over 3",
                "spec.image: Forbidden: image must come from registry/",
                "spec: Invalid value: \"object\": failed rule: self.x__dash__y != 'no'",
                "spec.tags[1]: Invalid value: \"string\": failed rule: self.size() < 4",
            ]
        );
        assert_eq!(
            messages(&s.validate(&json!({"metadata": {"name": "x"}}), None)),
            ["<nil>: Invalid value: \"object\": spec is required"]
        );
        let missing = spec(json!({"replicas": 1, "x-y": "a"}));
        assert_eq!(
            messages(&s.validate(&missing, None)),
            [
                "spec: Invalid value: \"object\": no such key: minReplicas evaluating rule: replicas should be greater than or equal to minReplicas",
                "spec: Invalid value: \"object\": no such key: maxReplicas evaluating rule: self.replicas <= self.maxReplicas",
            ]
        );
    }

    #[test]
    fn transition_rules_need_the_old_object() {
        let s = schema();
        let old = spec(json!({"replicas": 3, "minReplicas": 1, "maxReplicas": 9, "x-y": "a"}));
        let new = spec(json!({"replicas": 2, "minReplicas": 1, "maxReplicas": 9, "x-y": "a"}));
        assert_eq!(messages(&s.validate(&new, None)), Vec::<String>::new());
        assert_eq!(
            messages(&s.validate(&new, Some(&old))),
            ["spec: Invalid value: \"object\": replicas may not shrink"]
        );
        // Ratcheting: an unchanged value keeps its stored (failing) state.
        let stuck = spec(json!({"replicas": 5, "minReplicas": 6, "maxReplicas": 9, "x-y": "a"}));
        assert_eq!(
            messages(&s.validate(&stuck, Some(&stuck))),
            Vec::<String>::new()
        );
    }

    #[test]
    fn bad_rules_are_refused_with_the_crd() {
        let causes = Structural::new(&props(json!({
            "type": "object",
            "x-kubernetes-validations": [
                {"rule": ""},
                {"rule": "self.a ==", "message": "m"},
                {"rule": "true", "message": "two\nlines", "reason": "Nope"},
                {"rule": "true", "fieldPath": ".missing"},
            ],
            "properties": {"a": {"type": "string"}},
        })))
        .expect_err("refused");
        let got = messages(&causes);
        assert_eq!(
            got[0],
            "x-kubernetes-validations[0].rule: Required value: rule is not specified"
        );
        assert!(
            got[1].starts_with("x-kubernetes-validations[1].rule: Invalid value: apiextensions.ValidationRule{Rule:\"self.a ==\", Message:\"m\", MessageExpression:\"\", Reason:(*apiextensions.FieldValueErrorReason)(nil), FieldPath:\"\", OptionalOldSelf:(*bool)(nil)}: compilation failed: "),
            "{}",
            got[1]
        );
        assert_eq!(
            &got[2..],
            [
                "x-kubernetes-validations[2].message: Invalid value: \"two\\nlines\": message must not contain line breaks",
                "x-kubernetes-validations[2].reason: Unsupported value: \"Nope\": supported values: \"FieldValueInvalid\", \"FieldValueForbidden\", \"FieldValueRequired\", \"FieldValueDuplicate\"",
                "x-kubernetes-validations[3].fieldPath: Invalid value: \".missing\": fieldPath must be a valid path: does not refer to a valid field .missing",
            ]
        );
    }

    #[test]
    fn names_cel_cannot_spell_are_escaped() {
        assert_eq!(escape("foo-bar").as_deref(), Some("foo__dash__bar"));
        assert_eq!(escape("a.b/c").as_deref(), Some("a__dot__b__slash__c"));
        assert_eq!(escape("a__b").as_deref(), Some("a__underscores__b"));
        assert_eq!(escape("namespace").as_deref(), Some("__namespace__"));
        assert_eq!(escape("1abc"), None);
        assert_eq!(escape("a b"), None);
    }

    #[test]
    fn kubernetes_list_functions_and_optional_old_self() {
        let s = Structural::new(&props(json!({
            "type": "object",
            "properties": {"spec": {
                "type": "object",
                "x-kubernetes-validations": [
                    {"rule": "self.nums.isSorted() && self.nums.sum() == 6 && self.nums.max() == 3 && self.nums.min() == 1"},
                    {"rule": "!oldSelf.hasValue() || oldSelf.value().nums.size() <= self.nums.size()", "optionalOldSelf": true, "message": "may only grow"},
                ],
                "properties": {"nums": {"type": "array", "items": {"type": "integer"}}},
            }},
        })))
        .expect("structural");
        let ok = json!({"metadata": {"name": "x"}, "spec": {"nums": [1, 2, 3]}});
        assert_eq!(messages(&s.validate(&ok, None)), Vec::<String>::new());
        let unsorted = json!({"metadata": {"name": "x"}, "spec": {"nums": [3, 2, 1]}});
        let old = json!({"metadata": {"name": "x"}, "spec": {"nums": [1, 2, 3, 4]}});
        assert_eq!(
            messages(&s.validate(&unsorted, Some(&old))),
            [
                "spec: Invalid value: \"object\": failed rule: self.nums.isSorted() && self.nums.sum() == 6 && self.nums.max() == 3 && self.nums.min() == 1",
                "spec: Invalid value: \"object\": may only grow",
            ]
        );
    }
}
