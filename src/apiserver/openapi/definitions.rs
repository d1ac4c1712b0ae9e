//! The vendored definitions: Kubernetes v1.33's OpenAPI v2 schemas (`openapi/`, see its README),
//! embedded gzipped and read once, on first use, into one raw JSON text per definition with the
//! names it refers to and the kinds it is, so documents are assembled from text, never from a tree
//! kept per request.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::sync::LazyLock;

use serde_json::Value;
use serde_json::value::RawValue;

use super::{Gvk, OpenApiError};

/// The vendored definitions, gzipped.
pub(super) static VENDORED: &[u8] = include_bytes!("../../../openapi/definitions-v1.33.json.gz");

/// The prefix of an OpenAPI v2 `$ref`.
pub(super) const V2_PREFIX: &str = "#/definitions/";
/// The prefix of an OpenAPI v3 `$ref`.
pub(super) const V3_PREFIX: &str = "#/components/schemas/";

/// One definition: its OpenAPI v2 text (as Go's `encoding/json` writes it) and what it refers to.
pub(super) struct Definition {
    pub(super) raw: Box<str>,
    pub(super) refs: Vec<String>,
}

/// Every vendored definition, by name, and the definition of each kind.
pub(super) struct Definitions {
    pub(super) by_name: BTreeMap<String, Definition>,
    pub(super) by_gvk: HashMap<Gvk, String>,
}

static DEFINITIONS: LazyLock<Result<Definitions, OpenApiError>> = LazyLock::new(load);

/// The vendored definitions, read on first use.
pub(super) fn get() -> Result<&'static Definitions, OpenApiError> {
    DEFINITIONS.as_ref().map_err(Clone::clone)
}

fn load() -> Result<Definitions, OpenApiError> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(VENDORED)
        .read_to_string(&mut text)
        .map_err(|e| OpenApiError::Vendored(e.to_string()))?;
    let raw: BTreeMap<String, Box<RawValue>> =
        serde_json::from_str(&text).map_err(|e| OpenApiError::Vendored(e.to_string()))?;
    let mut by_gvk = HashMap::new();
    let mut by_name = BTreeMap::new();
    for (name, raw) in raw {
        let value: Value =
            serde_json::from_str(raw.get()).map_err(|e| OpenApiError::Vendored(e.to_string()))?;
        for gvk in gvks(&value) {
            by_gvk.entry(gvk).or_insert_with(|| name.clone());
        }
        let refs = refs(&value, V2_PREFIX);
        let mut text = Vec::with_capacity(raw.get().len());
        crate::apimachinery::wire::generic(&value, &mut text);
        let raw = String::from_utf8(text)
            .map_err(|e| OpenApiError::Vendored(e.to_string()))?
            .into_boxed_str();
        by_name.insert(name, Definition { raw, refs });
    }
    Ok(Definitions { by_name, by_gvk })
}

/// The kinds a schema says it is (`x-kubernetes-group-version-kind`).
pub(super) fn gvks(schema: &Value) -> Vec<Gvk> {
    schema
        .get("x-kubernetes-group-version-kind")
        .and_then(|v| serde_json::from_value::<Vec<Gvk>>(v.clone()).ok())
        .unwrap_or_default()
}

/// The definition names a schema refers to (`$ref`s with the prefix), each once.
pub(super) fn refs(schema: &Value, prefix: &str) -> Vec<String> {
    fn walk(value: &Value, prefix: &str, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, v) in map {
                    match (key.as_str(), v) {
                        // A property may be named `$ref` (JSONSchemaProps has one): only a
                        // string is a reference.
                        ("$ref", Value::String(target)) => {
                            if let Some(name) = target.strip_prefix(prefix)
                                && !out.iter().any(|n| n == name)
                            {
                                out.push(name.to_owned());
                            }
                        }
                        _ => walk(v, prefix, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, prefix, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(schema, prefix, &mut out);
    out
}

impl Definitions {
    /// A definition as a value (for the few places that read one, such as a parameter's
    /// description from `DeleteOptions`).
    pub(super) fn value(&self, name: &str) -> Option<Value> {
        self.by_name
            .get(name)
            .and_then(|d| serde_json::from_str(&d.raw).ok())
    }

    /// The description of a property of a definition.
    pub(super) fn property_description(&self, name: &str, property: &str) -> Option<String> {
        self.value(name)?
            .pointer(&format!("/properties/{property}/description"))?
            .as_str()
            .map(str::to_owned)
    }
}
