//! Objects on the wire as kube-apiserver writes them: Go's `encoding/json` applied to the Go
//! types. Fields come in Go struct order (`kind`, `apiVersion`, `metadata`, `spec`, `status`;
//! a `Status` is `kind, apiVersion, metadata, status, message, reason, details, code`), map keys
//! sorted, and each field is written or left out as its declaration says ([`gotypes::Decl`]):
//! a struct that is not a pointer is always there (`"status": {}`, `"resources": {}`), a zero
//! that Go omits is omitted (`unavailableReplicas: 0`, `ownerReferences: []`), a pointer's
//! explicit zero stays (`replicas: 0`), and a field without `omitempty` is written even when
//! zero (`restartCount: 0`, `lastProbeTime: null`). Strings are escaped as Go escapes them
//! (`<`, `>`, `&` as `\u003c`, `\u003e`, `\u0026`), and an HTTP body ends with a newline, as
//! Go's `json.Encoder` ends it.
//!
//! A value with no known type (a `Table`, discovery documents without a message) is written
//! with the same escaping and sorted keys.

use serde_json::{Map, Number, Value};

use super::gotypes::{Decl, Field, Kind, Message, schema};

/// An HTTP body: the value as Go writes it, and a newline.
pub fn body(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write(value, &mut out);
    out.push(b'\n');
    out
}

/// The value as Go writes it (no newline): an object of a known `apiVersion` and `kind` as its
/// Go type, anything else in sorted order.
pub fn write(value: &Value, out: &mut Vec<u8>) {
    match message_of(value) {
        Some(m) => message(value, m, out),
        None => generic(value, out),
    }
}

/// `value` written as the message `full_name` (`api.core.v1.Pod`).
pub fn write_as(value: &Value, full_name: &str, out: &mut Vec<u8>) {
    match schema().message(full_name) {
        Some(m) => message(value, m, out),
        None => generic(value, out),
    }
}

/// The value in the shape Go gives it (what it would read back from Go's JSON): zeros Go
/// omits gone, structs Go always writes present. Keys keep serde's order.
pub fn shape(value: Value) -> Value {
    if message_of(&value).is_none() {
        return value;
    }
    let mut out = Vec::new();
    write(&value, &mut out);
    serde_json::from_slice(&out).unwrap_or(value)
}

/// The message of an object with `apiVersion` and `kind`.
fn message_of(value: &Value) -> Option<&'static Message> {
    let kind = value.get("kind")?.as_str()?;
    match value.get("apiVersion").and_then(Value::as_str) {
        Some(api_version) => schema().for_object(api_version, kind),
        // `/api`'s `APIVersions` is served without an apiVersion.
        None => schema().message(&format!("apimachinery.pkg.apis.meta.v1.{kind}")),
    }
}

fn message(value: &Value, m: &Message, out: &mut Vec<u8>) {
    if let Some(special) = m.special {
        if value.is_null() {
            out.extend_from_slice(special.zero().as_bytes());
        } else {
            generic(value, out);
        }
        return;
    }
    let empty = Map::new();
    let map = match value {
        Value::Object(map) => map,
        Value::Null => &empty,
        other => return generic(other, out),
    };
    out.push(b'{');
    let mut first = true;
    let mut known = 0;
    for (i, f) in m.fields.iter().enumerate() {
        if m.type_meta == Some(i) {
            type_meta(map, out, &mut first);
        }
        for f in flattened(f) {
            let value = map.get(&f.name);
            known += usize::from(value.is_some());
            field(value, f, out, &mut first);
        }
    }
    if m.type_meta.is_some_and(|i| i >= m.fields.len()) {
        type_meta(map, out, &mut first);
    }
    if m.type_meta.is_some() {
        known +=
            usize::from(map.contains_key("kind")) + usize::from(map.contains_key("apiVersion"));
    }
    // Whatever the type does not declare (a newer field) is kept, after the rest.
    if known < map.len() {
        for (k, v) in map {
            let typed = m.fields.iter().flat_map(flattened).any(|f| &f.name == k)
                || (m.type_meta.is_some() && (k == "kind" || k == "apiVersion"));
            if !typed {
                key(k, out, &mut first);
                generic(v, out);
            }
        }
    }
    out.push(b'}');
}

/// A field, or for an embedded struct with `json:",inline"` the fields it promotes (Go's JSON
/// writes them in the outer object, in its place).
fn flattened(f: &Field) -> Vec<&Field> {
    match (&f.kind, f.inline) {
        (Kind::Message(name), true) => match schema().message(name) {
            Some(inner) => inner.fields.iter().flat_map(flattened).collect(),
            None => vec![f],
        },
        _ => vec![f],
    }
}

/// `kind` and `apiVersion`, each left out when empty (`metav1.TypeMeta`'s tags).
fn type_meta(map: &Map<String, Value>, out: &mut Vec<u8>, first: &mut bool) {
    for name in ["kind", "apiVersion"] {
        if let Some(v) = map.get(name).filter(|v| !is_empty(v)) {
            key(name, out, first);
            generic(v, out);
        }
    }
}

fn field(value: Option<&Value>, f: &Field, out: &mut Vec<u8>, first: &mut bool) {
    let value = value.filter(|v| !v.is_null());
    match (value, f.decl) {
        (None, Decl::Pointer) => {}
        (None, Decl::PointerNoOmit) => {
            key(&f.name, out, first);
            out.extend_from_slice(b"null");
        }
        (None, decl) => {
            // The zero value: a struct is written, a scalar only without omitempty.
            let zero: &[u8] = match (&f.kind, decl) {
                (Kind::Message(name), _) => {
                    key(&f.name, out, first);
                    match schema().message(name) {
                        Some(m) => message(&Value::Null, m, out),
                        None => out.extend_from_slice(b"{}"),
                    }
                    return;
                }
                (_, Decl::OmitEmpty) => return,
                (Kind::String, _) => b"\"\"",
                (Kind::Number, _) => b"0",
                (Kind::Bool, _) => b"false",
                (Kind::Bytes | Kind::List(_) | Kind::Map(_), _) => b"null",
            };
            key(&f.name, out, first);
            out.extend_from_slice(zero);
        }
        (Some(v), Decl::OmitEmpty) if !matches!(f.kind, Kind::Message(_)) && is_empty(v) => {}
        (Some(v), _) => {
            key(&f.name, out, first);
            typed(v, &f.kind, out);
        }
    }
}

fn typed(value: &Value, kind: &Kind, out: &mut Vec<u8>) {
    match (kind, value) {
        (Kind::Message(name), _) => match schema().message(name) {
            Some(m) => message(value, m, out),
            None => generic(value, out),
        },
        (Kind::List(inner), Value::Array(items)) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                typed(item, inner, out);
            }
            out.push(b']');
        }
        (Kind::Map(inner), Value::Object(map)) => {
            out.push(b'{');
            let mut first = true;
            for (k, v) in map {
                key(k, out, &mut first);
                typed(v, inner, out);
            }
            out.push(b'}');
        }
        _ => generic(value, out),
    }
}

/// Go's `isEmptyValue` for what JSON can hold: `false`, `0`, `""`, an empty list or map.
fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
    }
}

fn key(name: &str, out: &mut Vec<u8>, first: &mut bool) {
    if !*first {
        out.push(b',');
    }
    *first = false;
    string(name, out);
    out.push(b':');
}

/// Any JSON value, with Go's escaping and number forms, map keys sorted.
pub fn generic(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => number(n, out),
        Value::String(s) => string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                generic(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            out.push(b'{');
            let mut first = true;
            for (k, v) in map {
                key(k, out, &mut first);
                generic(v, out);
            }
            out.push(b'}');
        }
    }
}

/// A number as Go writes it: integers as they are; floats in the shortest form that reads back,
/// with an exponent (`1e+21`, `1e-07`) only outside `[1e-6, 1e21)`.
fn number(n: &Number, out: &mut Vec<u8>) {
    if n.is_i64() || n.is_u64() {
        out.extend_from_slice(n.to_string().as_bytes());
        return;
    }
    let f = n.as_f64().unwrap_or_default();
    let abs = f.abs();
    let text = if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let e = format!("{f:e}");
        match e.split_once('e') {
            Some((mantissa, exponent)) => {
                let (sign, digits) = match exponent.strip_prefix('-') {
                    Some(d) => ('-', d),
                    None => ('+', exponent),
                };
                format!("{mantissa}e{sign}{digits:0>2}")
            }
            None => e,
        }
    } else {
        format!("{f}")
    };
    out.extend_from_slice(text.as_bytes());
}

/// A string as Go's `encoding/json` escapes it (HTML-safe, as `json.Encoder` does by default).
pub fn string(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let escape: Option<&[u8]> = match c {
            '"' => Some(b"\\\""),
            '\\' => Some(b"\\\\"),
            '\n' => Some(b"\\n"),
            '\r' => Some(b"\\r"),
            '\t' => Some(b"\\t"),
            '\u{8}' => Some(b"\\b"),
            '\u{c}' => Some(b"\\f"),
            _ => None,
        };
        let unicode = matches!(
            c,
            '\u{0}'..='\u{1f}' | '<' | '>' | '&' | '\u{2028}' | '\u{2029}'
        );
        if escape.is_none() && !unicode {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        start = i + c.len_utf8();
        match escape {
            Some(e) => out.extend_from_slice(e),
            None => {
                let code = c as u32;
                out.extend_from_slice(b"\\u");
                for shift in [12, 8, 4, 0] {
                    out.push(HEX[((code >> shift) & 0xf) as usize]);
                }
            }
        }
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn text(value: &Value) -> String {
        String::from_utf8(body(value)).unwrap()
    }

    #[test]
    fn a_status_reads_byte_for_byte_as_kube_apiservers() {
        let status = json!({
            "apiVersion": "v1", "code": 404,
            "details": {"kind": "pods", "name": "nope"},
            "kind": "Status", "message": "pods \"nope\" not found",
            "metadata": {}, "reason": "NotFound", "status": "Failure",
        });
        assert_eq!(
            text(&status),
            "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\
             \"message\":\"pods \\\"nope\\\" not found\",\"reason\":\"NotFound\",\
             \"details\":{\"name\":\"nope\",\"kind\":\"pods\"},\"code\":404}\n"
        );
    }

    #[test]
    fn embedded_inline_structs_write_their_fields_in_place() {
        let ingress = json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "web"},
            "spec": {"rules": [{"http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "svc", "port": {"name": "", "number": 80}}}}]}, "host": "foo.com"}]},
        });
        assert_eq!(
            shape(ingress)["spec"]["rules"][0],
            json!({"host": "foo.com", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "svc", "port": {"number": 80}}}}]}})
        );
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "i", "readinessProbe": {"httpGet": {"port": 80}, "periodSeconds": 3}}]},
        });
        let probe = &shape(pod)["spec"]["containers"][0]["readinessProbe"];
        assert_eq!(probe["httpGet"]["port"], 80);
        assert!(probe.get("handler").is_none(), "{probe}");
    }

    #[test]
    fn objects_take_go_order_and_go_zeros() {
        let deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "ownerReferences": [], "namespace": "default"},
            "spec": {"replicas": 0, "minReadySeconds": 0, "paused": false,
                     "selector": {"matchLabels": {"b": "2", "a": "1"}},
                     "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}},
        });
        let written = text(&deployment);
        assert!(
            written.starts_with(
                "{\"kind\":\"Deployment\",\"apiVersion\":\"apps/v1\",\"metadata\":{\"name\":\"web\",\"namespace\":\"default\",\"creationTimestamp\":null},\"spec\":{\"replicas\":0,\"selector\":{\"matchLabels\":{\"a\":\"1\",\"b\":\"2\"}},\"template\":{\"metadata\":{\"creationTimestamp\":null},\"spec\":{\"containers\":[{\"name\":\"c\",\"image\":\"i\",\"resources\":{}}]}},\"strategy\":{}},\"status\":{}}"
            ),
            "{written}"
        );
        let status = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "status": {"unavailableReplicas": 0, "replicas": 3, "observedGeneration": 2}});
        let shaped = shape(status);
        assert_eq!(
            shaped["status"],
            json!({"observedGeneration": 2, "replicas": 3})
        );
        // Required fields without omitempty are written even when zero.
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "status": {"containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 0}],
                       "conditions": [{"type": "Ready", "status": "True"}]}});
        let shaped = shape(pod);
        assert_eq!(shaped["status"]["containerStatuses"][0]["restartCount"], 0);
        assert_eq!(shaped["status"]["containerStatuses"][0]["ready"], false);
        assert_eq!(
            shaped["status"]["conditions"][0],
            json!({"type": "Ready", "status": "True", "lastProbeTime": null, "lastTransitionTime": null})
        );
        assert_eq!(shaped["spec"], json!({"containers": null}));
    }

    #[test]
    fn strings_and_numbers_as_go_writes_them() {
        let mut out = Vec::new();
        string("a<b>&c\"d\\e\nf\u{1}\u{2028}é", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\"a\\u003cb\\u003e\\u0026c\\\"d\\\\e\\nf\\u0001\\u2028é\""
        );
        let cases = [
            (json!(1.5), "1.5"),
            (json!(2.0), "2"),
            (json!(1e21), "1e+21"),
            (json!(1e-7), "1e-07"),
            (json!(0.000001), "0.000001"),
            (json!(-3), "-3"),
            (json!(u64::MAX), "18446744073709551615"),
        ];
        for (value, expected) in cases {
            let mut out = Vec::new();
            generic(&value, &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), expected);
        }
    }

    #[test]
    fn unknown_values_keep_sorted_keys() {
        let table = json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "rows": [], "columnDefinitions": []});
        assert_eq!(
            text(&table),
            "{\"apiVersion\":\"meta.k8s.io/v1\",\"columnDefinitions\":[],\"kind\":\"Table\",\"rows\":[]}\n"
        );
    }
}
