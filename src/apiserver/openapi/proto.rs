//! The OpenAPI v2 document in its protobuf form, gnostic's `openapi.v2.Document`
//! (`openapi/OpenAPIv2.proto`), which client-go's `OpenAPISchema` asks for
//! (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`) and kubectl's v2 paths read
//! (`kubectl explain --output plaintext-openapiv2`). kube-openapi makes it with gnostic's
//! `ParseDocument` and `proto.Marshal`; this writes the same messages from the JSON document
//! directly, fields in number order, vendor extensions and `default`/`enum`/`example` values as
//! gnostic's `Any` with their YAML. Written by hand: the document is a few dozen message types of
//! strings, and a generated or reflected message per node would cost far more than the bytes.

use serde_json::{Map, Value};

/// One message being written: its fields, each already encoded, put in field-number order at
/// the end (as Go's `proto.Marshal` writes them).
#[derive(Default)]
struct Message {
    fields: Vec<(u32, Vec<u8>)>,
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

impl Message {
    fn field(&mut self, number: u32, wire_type: u32, payload: impl FnOnce(&mut Vec<u8>)) {
        let mut out = Vec::new();
        varint(u64::from((number << 3) | wire_type), &mut out);
        payload(&mut out);
        self.fields.push((number, out));
    }

    fn bytes(&mut self, number: u32, bytes: &[u8]) {
        self.field(number, 2, |out| {
            varint(bytes.len() as u64, out);
            out.extend_from_slice(bytes);
        });
    }

    /// A proto3 string: left out when empty.
    fn string(&mut self, number: u32, s: &str) {
        if !s.is_empty() {
            self.bytes(number, s.as_bytes());
        }
    }

    fn strings(&mut self, number: u32, values: Option<&Value>) {
        for s in values.and_then(Value::as_array).into_iter().flatten() {
            if let Some(s) = s.as_str() {
                // A repeated string keeps its empty members.
                self.bytes(number, s.as_bytes());
            }
        }
    }

    fn boolean(&mut self, number: u32, b: bool) {
        if b {
            self.field(number, 0, |out| out.push(1));
        }
    }

    fn double(&mut self, number: u32, f: f64) {
        if f != 0.0 {
            self.field(number, 1, |out| out.extend_from_slice(&f.to_le_bytes()));
        }
    }

    fn int64(&mut self, number: u32, i: i64) {
        if i != 0 {
            self.field(number, 0, |out| varint(i as u64, out));
        }
    }

    fn message(&mut self, number: u32, message: Message) {
        self.bytes(number, &message.finish());
    }

    fn finish(mut self) -> Vec<u8> {
        self.fields.sort_by_key(|(number, _)| *number);
        self.fields
            .into_iter()
            .flat_map(|(_, bytes)| bytes)
            .collect()
    }
}

fn str_of<'a>(map: &'a Map<String, Value>, key: &str) -> &'a str {
    map.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn bool_of(map: &Map<String, Value>, key: &str) -> bool {
    map.get(key).and_then(Value::as_bool).unwrap_or_default()
}

/// gnostic's `Any`: the value as YAML.
fn any(value: &Value) -> Message {
    let mut m = Message::default();
    m.string(2, &serde_yaml::to_string(value).unwrap_or_default());
    m
}

/// The `x-` keys of a map as gnostic's `NamedAny`s, into field `number`.
fn extensions(map: &Map<String, Value>, number: u32, m: &mut Message) {
    for (key, value) in map.iter().filter(|(k, _)| k.starts_with("x-")) {
        let mut named = Message::default();
        named.string(1, key);
        named.message(2, any(value));
        m.message(number, named);
    }
}

/// `openapi.v2.Schema`.
fn schema(value: &Value) -> Message {
    let mut m = Message::default();
    let Some(map) = value.as_object() else {
        return m;
    };
    for (key, v) in map {
        match key.as_str() {
            "$ref" => m.string(1, v.as_str().unwrap_or_default()),
            "format" => m.string(2, v.as_str().unwrap_or_default()),
            "title" => m.string(3, v.as_str().unwrap_or_default()),
            "description" => m.string(4, v.as_str().unwrap_or_default()),
            "default" => m.message(5, any(v)),
            "multipleOf" => m.double(6, v.as_f64().unwrap_or_default()),
            "maximum" => m.double(7, v.as_f64().unwrap_or_default()),
            "exclusiveMaximum" => m.boolean(8, v.as_bool().unwrap_or_default()),
            "minimum" => m.double(9, v.as_f64().unwrap_or_default()),
            "exclusiveMinimum" => m.boolean(10, v.as_bool().unwrap_or_default()),
            "maxLength" => m.int64(11, v.as_i64().unwrap_or_default()),
            "minLength" => m.int64(12, v.as_i64().unwrap_or_default()),
            "pattern" => m.string(13, v.as_str().unwrap_or_default()),
            "maxItems" => m.int64(14, v.as_i64().unwrap_or_default()),
            "minItems" => m.int64(15, v.as_i64().unwrap_or_default()),
            "uniqueItems" => m.boolean(16, v.as_bool().unwrap_or_default()),
            "maxProperties" => m.int64(17, v.as_i64().unwrap_or_default()),
            "minProperties" => m.int64(18, v.as_i64().unwrap_or_default()),
            "required" => m.strings(19, Some(v)),
            "enum" => {
                for item in v.as_array().into_iter().flatten() {
                    m.message(20, any(item));
                }
            }
            "additionalProperties" => {
                let mut item = Message::default();
                match v {
                    Value::Bool(b) => item.field(2, 0, |out| out.push(u8::from(*b))),
                    other => item.message(1, schema(other)),
                }
                m.message(21, item);
            }
            "type" => {
                let mut item = Message::default();
                match v {
                    Value::String(t) => item.bytes(1, t.as_bytes()),
                    other => item.strings(1, Some(other)),
                }
                m.message(22, item);
            }
            "items" => {
                let mut item = Message::default();
                match v {
                    Value::Array(schemas) => {
                        schemas.iter().for_each(|s| item.message(1, schema(s)))
                    }
                    other => item.message(1, schema(other)),
                }
                m.message(23, item);
            }
            "allOf" => {
                for s in v.as_array().into_iter().flatten() {
                    m.message(24, schema(s));
                }
            }
            "properties" => {
                let mut properties = Message::default();
                for (name, s) in v.as_object().into_iter().flatten() {
                    properties.message(1, named_schema(name, s));
                }
                m.message(25, properties);
            }
            "discriminator" => m.string(26, v.as_str().unwrap_or_default()),
            "readOnly" => m.boolean(27, v.as_bool().unwrap_or_default()),
            "example" => m.message(30, any(v)),
            _ => {}
        }
    }
    extensions(map, 31, &mut m);
    m
}

fn named_schema(name: &str, value: &Value) -> Message {
    let mut m = Message::default();
    m.string(1, name);
    m.message(2, schema(value));
    m
}

/// `openapi.v2.ParametersItem`: a body parameter or a query or path one.
fn parameter(value: &Value) -> Message {
    let mut parameter = Message::default();
    let Some(map) = value.as_object() else {
        return parameter;
    };
    match str_of(map, "in") {
        "body" => {
            let mut body = Message::default();
            body.string(1, str_of(map, "description"));
            body.string(2, str_of(map, "name"));
            body.string(3, "body");
            body.boolean(4, bool_of(map, "required"));
            if let Some(s) = map.get("schema") {
                body.message(5, schema(s));
            }
            extensions(map, 6, &mut body);
            parameter.message(1, body);
        }
        place => {
            // QueryParameterSubSchema and PathParameterSubSchema: the same fields, numbered
            // apart by query's allowEmptyValue.
            let (which, shift) = if place == "path" { (4, 1) } else { (3, 0) };
            let mut sub = Message::default();
            sub.boolean(1, bool_of(map, "required"));
            sub.string(2, place);
            sub.string(3, str_of(map, "description"));
            sub.string(4, str_of(map, "name"));
            sub.string(6 - shift, str_of(map, "type"));
            sub.boolean(20 - shift, bool_of(map, "uniqueItems"));
            extensions(map, 23 - shift, &mut sub);
            let mut non_body = Message::default();
            non_body.message(which, sub);
            parameter.message(2, non_body);
        }
    }
    let mut item = Message::default();
    item.message(1, parameter);
    item
}

/// `openapi.v2.Operation`.
fn operation(value: &Value) -> Message {
    let mut m = Message::default();
    let Some(map) = value.as_object() else {
        return m;
    };
    m.strings(1, map.get("tags"));
    m.string(3, str_of(map, "description"));
    m.string(5, str_of(map, "operationId"));
    m.strings(6, map.get("produces"));
    m.strings(7, map.get("consumes"));
    for p in map
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        m.message(8, parameter(p));
    }
    let mut responses = Message::default();
    for (code, response) in map
        .get("responses")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let mut r = Message::default();
        if let Some(response) = response.as_object() {
            r.string(1, str_of(response, "description"));
            if let Some(s) = response.get("schema") {
                let mut item = Message::default();
                item.message(1, schema(s));
                r.message(2, item);
            }
        }
        let mut value = Message::default();
        value.message(1, r);
        let mut named = Message::default();
        named.string(1, code);
        named.message(2, value);
        responses.message(1, named);
    }
    m.message(9, responses);
    m.strings(10, map.get("schemes"));
    extensions(map, 13, &mut m);
    m
}

/// `openapi.v2.PathItem`.
fn path_item(value: &Value) -> Message {
    let mut m = Message::default();
    let Some(map) = value.as_object() else {
        return m;
    };
    for (method, number) in [
        ("get", 2),
        ("put", 3),
        ("post", 4),
        ("delete", 5),
        ("options", 6),
        ("head", 7),
        ("patch", 8),
    ] {
        if let Some(op) = map.get(method) {
            m.message(number, operation(op));
        }
    }
    for p in map
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        m.message(9, parameter(p));
    }
    extensions(map, 10, &mut m);
    m
}

/// The OpenAPI v2 document (JSON) as gnostic's `openapi.v2.Document`.
pub(crate) fn document(doc: &Value) -> Vec<u8> {
    let mut m = Message::default();
    let Some(map) = doc.as_object() else {
        return Vec::new();
    };
    m.string(1, str_of(map, "swagger"));
    if let Some(info) = map.get("info").and_then(Value::as_object) {
        let mut i = Message::default();
        i.string(1, str_of(info, "title"));
        i.string(2, str_of(info, "version"));
        m.message(2, i);
    }
    let mut paths = Message::default();
    for (path, item) in map
        .get("paths")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let mut named = Message::default();
        named.string(1, path);
        named.message(2, path_item(item));
        paths.message(2, named);
    }
    m.message(8, paths);
    let mut definitions = Message::default();
    for (name, s) in map
        .get("definitions")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        definitions.message(1, named_schema(name, s));
    }
    m.message(9, definitions);
    for requirement in map
        .get("security")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let mut r = Message::default();
        for (name, scopes) in requirement.as_object().into_iter().flatten() {
            let mut array = Message::default();
            array.strings(1, Some(scopes));
            let mut named = Message::default();
            named.string(1, name);
            named.message(2, array);
            r.message(1, named);
        }
        m.message(12, r);
    }
    if let Some(schemes) = map.get("securityDefinitions").and_then(Value::as_object) {
        let mut definitions = Message::default();
        for (name, scheme) in schemes {
            let Some(scheme) = scheme.as_object() else {
                continue;
            };
            let mut key = Message::default();
            key.string(1, str_of(scheme, "type"));
            key.string(2, str_of(scheme, "name"));
            key.string(3, str_of(scheme, "in"));
            key.string(4, str_of(scheme, "description"));
            let mut item = Message::default();
            item.message(2, key);
            let mut named = Message::default();
            named.string(1, name);
            named.message(2, item);
            definitions.message(1, named);
        }
        m.message(13, definitions);
    }
    extensions(map, 16, &mut m);
    m.finish()
}
