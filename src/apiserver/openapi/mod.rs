//! OpenAPI: `/openapi/v2` (Swagger 2.0) and `/openapi/v3` (an index, and one OpenAPI 3.0
//! document per group-version), what `kubectl explain`, kubectl's field validation check and
//! clients' generators read. The schemas are Kubernetes v1.33's own ([`definitions`], vendored in
//! `openapi/`); the paths are made from the served resources ([`paths`]); custom resources add
//! theirs at run time ([`crd`], [`Extra`]). A document holds only the definitions its paths reach.
//!
//! Documents are built on first request and kept gzipped with their ETag (a SHA-512 in hex
//! capitals, as upstream's, of what the document is written from: [`Plan::hash`]) and time of
//! building; they are served as kube-openapi's handlers
//! serve them: `If-None-Match` answered with 304, v3 documents with `?hash=` immutable (and
//! redirected when the hash is stale), v2 as JSON or gnostic's protobuf ([`proto`]) and gzipped
//! for clients that accept it, 406 for a media type not served (v3's protobuf).

pub(crate) mod crd;
mod definitions;
pub(crate) mod paths;
mod proto;

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::sync::{Arc, LazyLock, Mutex};

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha512};

use super::errors::ApiError;
use super::path::Route;
use super::resources::{RESOURCES, Resource};
use crate::apimachinery::{KUBERNETES_VERSION, wire};
use paths::Shape;

/// What can go wrong building a document.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum OpenApiError {
    #[error("the vendored OpenAPI definitions cannot be read: {0}")]
    Vendored(String),
    #[error("CustomResourceDefinition {crd} has no version {version}")]
    NoSuchVersion { crd: String, version: String },
    #[error(
        "CustomResourceDefinition {crd} version {version} has a schema that is not JSON: {error}"
    )]
    Schema {
        crd: String,
        version: String,
        error: String,
    },
}

/// A group, version and kind, as `x-kubernetes-group-version-kind` lists them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct Gvk {
    pub(crate) group: String,
    pub(crate) version: String,
    pub(crate) kind: String,
}

impl Gvk {
    pub(crate) fn new(group: &str, version: &str, kind: &str) -> Self {
        Gvk {
            group: group.to_owned(),
            version: version.to_owned(),
            kind: kind.to_owned(),
        }
    }
}

/// Which OpenAPI a document or schema is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    V2,
    V3,
}

impl Version {
    /// The `$ref` prefix of a definition.
    pub(crate) fn prefix(self) -> &'static str {
        match self {
            Version::V2 => definitions::V2_PREFIX,
            Version::V3 => definitions::V3_PREFIX,
        }
    }
}

/// What one served version of a custom resource adds to the documents ([`crd::openapi`]): its
/// definitions (named as upstream names them, `com.example.stable.v1.CronTab`, written in the
/// document's OpenAPI version) and the shape of its paths.
#[derive(Debug, Clone)]
pub(crate) struct Extra {
    pub(crate) definitions: Vec<(String, Value)>,
    pub(crate) shape: Shape,
}

/// A built document: its JSON gzipped, its ETag and when it was built.
#[derive(Debug)]
pub(crate) struct Document {
    gzipped: Bytes,
    /// Upstream's ETag value (unquoted): the SHA-512 of the JSON in hex capitals.
    pub(crate) etag: String,
    built: jiff::Timestamp,
}

impl Document {
    fn new(json: &[u8]) -> Self {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder
            .write_all(json)
            .expect("writing to a Vec does not fail");
        let gzipped = encoder.finish().expect("writing to a Vec does not fail");
        Document {
            gzipped: Bytes::from(gzipped),
            etag: format!("{:X}", Sha512::digest(json)),
            built: jiff::Timestamp::now(),
        }
    }

    /// A document whose ETag is another's (the protobuf form of a JSON document).
    fn with_etag(bytes: &[u8], etag: &str) -> Self {
        Document {
            etag: etag.to_owned(),
            ..Document::new(bytes)
        }
    }

    /// The document's JSON.
    pub(crate) fn json(&self) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&self.gzipped[..])
            .read_to_end(&mut out)
            .expect("a document gzipped here decompresses");
        out
    }
}

/// `api/v1` or `apis/apps/v1`: a group-version's `/openapi/v3/` path.
pub(crate) fn v3_path(group: &str, version: &str) -> String {
    paths::gv_root(group, version)
        .trim_start_matches('/')
        .to_owned()
}

/// The definition named for a kind: an extra's first, then a vendored one.
fn lookup<'a>(
    defs: &'a definitions::Definitions,
    extra: &'a [Extra],
) -> impl Fn(&Gvk) -> Option<String> + 'a {
    move |gvk: &Gvk| {
        extra
            .iter()
            .flat_map(|e| &e.definitions)
            .find(|(_, schema)| definitions::gvks(schema).contains(gvk))
            .map(|(name, _)| name.clone())
            .or_else(|| defs.by_gvk.get(gvk).cloned())
    }
}

/// What a document holds, before it is written: its paths (as JSON text) and the definitions
/// they reach.
struct Plan<'a> {
    version: Version,
    paths: Vec<u8>,
    reached: BTreeSet<String>,
    extras: HashMap<&'a str, &'a Value>,
    defs: &'static definitions::Definitions,
}

/// Plans a document: the paths of `shapes` (and the group-versions' resource lists) and every
/// definition they name, and every one those refer to.
fn plan<'a>(
    version: Version,
    shapes: &[Shape],
    resource_lists: &[(String, String)],
    extra: &'a [Extra],
) -> Result<Plan<'a>, OpenApiError> {
    let defs = definitions::get()?;
    let lookup = lookup(defs, extra);
    let mut items: Vec<paths::PathItem> = resource_lists
        .iter()
        .map(|(g, v)| paths::resource_list(g, v))
        .collect();
    for shape in shapes {
        items.extend(paths::for_resource(shape, defs, &lookup));
    }
    let extras: HashMap<&str, &Value> = extra
        .iter()
        .flat_map(|e| &e.definitions)
        .map(|(name, schema)| (name.as_str(), schema))
        .collect();
    let mut reached: BTreeSet<String> = BTreeSet::new();
    let mut queue: Vec<String> = items
        .iter()
        .flat_map(paths::named_definitions)
        .map(str::to_owned)
        .collect();
    while let Some(name) = queue.pop() {
        if reached.contains(&name) {
            continue;
        }
        let refs = if let Some(schema) = extras.get(name.as_str()) {
            definitions::refs(schema, version.prefix())
        } else if let Some(def) = defs.by_name.get(&name) {
            def.refs.clone()
        } else {
            continue;
        };
        reached.insert(name);
        queue.extend(refs.into_iter().filter(|r| !reached.contains(r)));
    }
    // Written as Go writes JSON: sorted keys, its escaping and number forms.
    let path_values: Map<String, Value> = items
        .iter()
        .map(|item| (item.path.clone(), item.value(version)))
        .collect();
    let mut paths = Vec::new();
    wire::generic(&Value::Object(path_values), &mut paths);
    Ok(Plan {
        version,
        paths,
        reached,
        extras,
        defs,
    })
}

impl Plan<'_> {
    /// The document's hash. Upstream's is the SHA-512 of the document's JSON; this is the
    /// SHA-512 of everything the JSON is written from (this build's vendored definitions and
    /// version, the paths, the definitions reached, the extras' text), which changes exactly when
    /// the JSON does, and lets `/openapi/v3` list every group-version's hash without writing
    /// every document.
    fn hash(&self) -> String {
        let mut hasher = Sha512::new();
        hasher.update(definitions::VENDORED);
        hasher.update(env!("CARGO_PKG_VERSION"));
        hasher.update([self.version as u8]);
        hasher.update(&self.paths);
        for name in &self.reached {
            hasher.update(name);
            if let Some(schema) = self.extras.get(name.as_str()) {
                let mut text = Vec::new();
                wire::generic(schema, &mut text);
                hasher.update(&text);
            }
            hasher.update([0]);
        }
        format!("{:X}", hasher.finalize())
    }

    /// The document's JSON, assembled from the definitions' own text.
    fn write(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 << 20);
        let (head, tail) = match self.version {
            Version::V2 => (
                json!({"swagger": "2.0", "info": {"title": "Kubernetes", "version": KUBERNETES_VERSION}}),
                "\"definitions\":",
            ),
            Version::V3 => (
                json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": KUBERNETES_VERSION}}),
                "\"components\":{\"schemas\":",
            ),
        };
        wire::generic(&head, &mut out);
        out.pop();
        out.extend_from_slice(b",\"paths\":");
        out.extend_from_slice(&self.paths);
        out.push(b',');
        out.extend_from_slice(tail.as_bytes());
        out.push(b'{');
        let (v2_ref, v3_ref) = (
            format!("\"{}", definitions::V2_PREFIX),
            format!("\"{}", definitions::V3_PREFIX),
        );
        for (i, name) in self.reached.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            wire::string(name, &mut out);
            out.push(b':');
            if let Some(schema) = self.extras.get(name.as_str()) {
                wire::generic(schema, &mut out);
            } else if let Some(def) = self.defs.by_name.get(name) {
                match self.version {
                    Version::V2 => out.extend_from_slice(def.raw.as_bytes()),
                    Version::V3 => {
                        out.extend_from_slice(def.raw.replace(&v2_ref, &v3_ref).as_bytes())
                    }
                }
            }
        }
        out.push(b'}');
        let security = r#"{"BearerToken":{"description":"Bearer Token authentication","in":"header","name":"authorization","type":"apiKey"}}"#;
        match self.version {
            Version::V2 => {
                out.extend_from_slice(b",\"securityDefinitions\":");
                out.extend_from_slice(security.as_bytes());
                out.extend_from_slice(br#","security":[{"BearerToken":[]}]}"#);
            }
            Version::V3 => {
                out.extend_from_slice(b",\"securitySchemes\":");
                out.extend_from_slice(security.as_bytes());
                out.extend_from_slice(b"}}");
            }
        }
        out
    }

    fn document(&self) -> Document {
        Document::with_etag(&self.write(), &self.hash())
    }
}

/// What one group-version's v3 document is made of: its resources' shapes (built-in, then
/// extras'), its resource list path (built-in group-versions only) and its extras. `None` when
/// nothing is served there.
type V3Parts = (Vec<Shape>, Vec<(String, String)>, Vec<Extra>);

fn v3_parts(path: &str, resources: &[&Resource], extra: &[Extra]) -> Option<V3Parts> {
    let mut shapes: Vec<Shape> = resources
        .iter()
        .filter(|r| v3_path(r.group, r.version) == path)
        .map(|r| Shape::of(r))
        .collect();
    let lists: Vec<(String, String)> = shapes
        .first()
        .map(|s| (s.group.clone(), s.version.clone()))
        .into_iter()
        .collect();
    let extra: Vec<Extra> = extra
        .iter()
        .filter(|e| v3_path(&e.shape.group, &e.shape.version) == path)
        .cloned()
        .collect();
    shapes.extend(extra.iter().map(|e| e.shape.clone()));
    (!shapes.is_empty()).then_some((shapes, lists, extra))
}

/// The OpenAPI v3 document of one group-version (`api/v1`, `apis/apps/v1`): the served
/// `resources` there and the extras of that group-version. `None` when nothing is served there.
pub(crate) fn v3_document(
    path: &str,
    resources: &[&Resource],
    extra: &[Extra],
) -> Result<Option<Document>, OpenApiError> {
    let Some((shapes, lists, extra)) = v3_parts(path, resources, extra) else {
        return Ok(None);
    };
    Ok(Some(plan(Version::V3, &shapes, &lists, &extra)?.document()))
}

/// The OpenAPI v2 document: every served resource and every extra.
pub(crate) fn v2_document(
    resources: &[&Resource],
    extra: &[Extra],
) -> Result<Document, OpenApiError> {
    let mut shapes: Vec<Shape> = resources.iter().map(|r| Shape::of(r)).collect();
    shapes.extend(extra.iter().map(|e| e.shape.clone()));
    let mut lists: Vec<(String, String)> = Vec::new();
    for r in resources {
        let gv = (r.group.to_owned(), r.version.to_owned());
        if !lists.contains(&gv) {
            lists.push(gv);
        }
    }
    Ok(plan(Version::V2, &shapes, &lists, extra)?.document())
}

/// The OpenAPI v2 document in gnostic's protobuf form, with the JSON document's ETag (as
/// kube-openapi gives both forms one).
pub(crate) fn v2_protobuf(json: &Document) -> Result<Document, OpenApiError> {
    let value: Value =
        serde_json::from_slice(&json.json()).map_err(|e| OpenApiError::Vendored(e.to_string()))?;
    Ok(Document::with_etag(&proto::document(&value), &json.etag))
}

/// The `/openapi/v3` index: every group-version the `resources` and the extras are served at
/// (core first, then groups in the order given), with its document's path and hash (the ETag
/// [`v3_document`] gives it), computed without writing the documents.
pub(crate) fn v3_index(resources: &[&Resource], extra: &[Extra]) -> Result<Vec<u8>, OpenApiError> {
    let mut group_versions: Vec<String> = Vec::new();
    let all = resources.iter().map(|r| (r.group, r.version)).chain(
        extra
            .iter()
            .map(|e| (e.shape.group.as_str(), e.shape.version.as_str())),
    );
    for (group, version) in all {
        let path = v3_path(group, version);
        if !group_versions.contains(&path) {
            group_versions.push(path);
        }
    }
    let mut paths = Map::new();
    for path in group_versions {
        let Some((shapes, lists, extra)) = v3_parts(&path, resources, extra) else {
            continue;
        };
        let hash = plan(Version::V3, &shapes, &lists, &extra)?.hash();
        let url = format!("/openapi/v3/{path}?hash={hash}");
        paths.insert(path, json!({"serverRelativeURL": url}));
    }
    let mut out = Vec::new();
    wire::generic(&json!({"paths": paths}), &mut out);
    Ok(out)
}

/// Documents built once and kept: the built-in resources' (custom resources' callers keep
/// theirs, rebuilding when their definitions change).
#[derive(Default)]
struct Cache {
    documents: Mutex<HashMap<String, Arc<Document>>>,
}

impl Cache {
    fn get_or_build(
        &self,
        key: &str,
        build: impl FnOnce() -> Result<Option<Document>, OpenApiError>,
    ) -> Result<Option<Arc<Document>>, OpenApiError> {
        let mut documents = self.documents.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(doc) = documents.get(key) {
            return Ok(Some(doc.clone()));
        }
        let Some(doc) = build()? else {
            return Ok(None);
        };
        let doc = Arc::new(doc);
        documents.insert(key.to_owned(), doc.clone());
        Ok(Some(doc))
    }
}

static BUILT_IN: LazyLock<Cache> = LazyLock::new(Cache::default);

fn served() -> Vec<&'static Resource> {
    RESOURCES.iter().collect()
}

fn built_in_v3(path: &str) -> Result<Option<Arc<Document>>, ApiError> {
    BUILT_IN
        .get_or_build(path, || v3_document(path, &served(), &[]))
        .map_err(|e| ApiError::Internal(e.to_string()))
}

const PROTOBUF_V2: &str = "com.github.proto-openapi.spec.v2.v1.0+protobuf";
const PROTOBUF_V2_DEPRECATED: &str = "com.github.proto-openapi.spec.v2@v1.0+protobuf";
const PROTOBUF_V3: &str = "com.github.proto-openapi.spec.v3.v1.0+protobuf";
const PROTOBUF_V3_DEPRECATED: &str = "com.github.proto-openapi.spec.v3@v1.0+protobuf";

/// What an `Accept` header picks among `offered` subtypes of `application/`: the first clause
/// (by quality, then order) an offered type matches, as goautoneg orders them.
fn negotiate<'a>(headers: &HeaderMap, offered: &[&'a str]) -> Option<&'a str> {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty())
        .unwrap_or("*/*");
    let mut clauses: Vec<(f32, &str, &str)> = accept
        .split(',')
        .filter_map(|clause| {
            let mut parts = clause.split(';');
            let media = parts.next()?.trim();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            let (ty, sub) = media.split_once('/').unwrap_or((media, "*"));
            Some((q, ty, sub))
        })
        .filter(|(q, _, _)| *q > 0.0)
        .collect();
    clauses.sort_by(|a, b| b.0.total_cmp(&a.0));
    clauses.iter().find_map(|(_, ty, sub)| {
        if *ty != "application" && *ty != "*" {
            return None;
        }
        offered.iter().find(|o| *sub == "*" || sub == *o).copied()
    })
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|e| e.split(';').next().is_some_and(|e| e.trim() == "gzip"))
}

/// Go's `http.ServeContent` check of `If-None-Match` (weak comparison, a list, or `*`).
fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
}

fn http_date(t: jiff::Timestamp) -> String {
    t.strftime("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A document as kube-openapi's handlers answer it.
fn document_response(
    doc: &Document,
    content_type: &str,
    headers: &HeaderMap,
    gzip: bool,
) -> Response {
    let quoted = format!("\"{}\"", doc.etag);
    let mut response = if not_modified(headers, &quoted) {
        StatusCode::NOT_MODIFIED.into_response()
    } else if gzip && accepts_gzip(headers) {
        let mut r = (StatusCode::OK, doc.gzipped.clone()).into_response();
        r.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        r
    } else {
        (StatusCode::OK, doc.json()).into_response()
    };
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, header_value(content_type));
    h.insert(header::ETAG, header_value(&quoted));
    h.insert(header::LAST_MODIFIED, header_value(&http_date(doc.built)));
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    response
}

fn not_acceptable() -> Response {
    let mut response = StatusCode::NOT_ACCEPTABLE.into_response();
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept"));
    response
}

fn hash_param(query: Option<&str>) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == "hash")
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
}

/// What the served custom resources add to the documents: each established CRD's served
/// versions as [`Extra`]s, for either OpenAPI version.
#[derive(Default)]
pub(crate) struct Custom {
    v2: Vec<Extra>,
    v3: Vec<Extra>,
    /// Their `/openapi/v3` paths (`apis/stable.example.com/v1`).
    paths: Vec<String>,
}

impl Custom {
    /// The extras of `resources` (custom resources being served), from their `crds`.
    pub(crate) fn of(
        crds: &[Arc<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>],
        resources: &[&'static Resource],
    ) -> Custom {
        let mut custom = Custom::default();
        for r in resources {
            let Some(crd) = crds
                .iter()
                .find(|c| c.spec.group == r.group && c.spec.names.plural == r.plural)
            else {
                continue;
            };
            if let (Ok(v2), Ok(v3)) = (
                crd::openapi(crd, r.version, Version::V2),
                crd::openapi(crd, r.version, Version::V3),
            ) {
                custom.v2.push(v2);
                custom.v3.push(v3);
                custom.paths.push(v3_path(r.group, r.version));
            }
        }
        custom
    }
}

/// Serves `/openapi/v2`, `/openapi/v3` and `/openapi/v3/<group-version>`. The built-in
/// documents are built once; with custom resources served, the documents that hold them are
/// built for each request from their CRDs as they are now.
pub(crate) fn serve(
    route: &Route,
    headers: &HeaderMap,
    query: Option<&str>,
    custom: &Custom,
) -> Result<Response, ApiError> {
    let internal = |e: OpenApiError| ApiError::Internal(e.to_string());
    match route {
        Route::OpenApiV2 if !custom.v2.is_empty() => {
            let Some(picked) = negotiate(headers, &["json", PROTOBUF_V2_DEPRECATED, PROTOBUF_V2])
            else {
                return Ok(not_acceptable());
            };
            let doc = v2_document(&served(), &custom.v2).map_err(internal)?;
            if picked == "json" {
                return Ok(document_response(&doc, "application/json", headers, true));
            }
            let doc = v2_protobuf(&doc).map_err(internal)?;
            return Ok(document_response(
                &doc,
                &format!("application/{PROTOBUF_V2}"),
                headers,
                true,
            ));
        }
        Route::OpenApiIndex if !custom.v3.is_empty() => {
            let index = Document::new(&v3_index(&served(), &custom.v3).map_err(internal)?);
            return Ok(document_response(
                &index,
                "application/json",
                headers,
                false,
            ));
        }
        _ => {}
    }
    match route {
        Route::OpenApiV2 => {
            let Some(picked) = negotiate(headers, &["json", PROTOBUF_V2_DEPRECATED, PROTOBUF_V2])
            else {
                return Ok(not_acceptable());
            };
            let json = || {
                BUILT_IN
                    .get_or_build("v2", || v2_document(&served(), &[]).map(Some))
                    .map_err(internal)?
                    .ok_or_else(|| ApiError::Internal("no OpenAPI v2 document".into()))
            };
            if picked == "json" {
                let doc = json()?;
                return Ok(document_response(&doc, "application/json", headers, true));
            }
            let json = json()?;
            let doc = BUILT_IN
                .get_or_build("v2.pb", || v2_protobuf(&json).map(Some))
                .map_err(internal)?
                .ok_or_else(|| ApiError::Internal("no OpenAPI v2 document".into()))?;
            Ok(document_response(
                &doc,
                &format!("application/{PROTOBUF_V2}"),
                headers,
                true,
            ))
        }
        Route::OpenApiIndex => {
            let index = BUILT_IN
                .get_or_build("", || {
                    v3_index(&served(), &[]).map(|body| Some(Document::new(&body)))
                })
                .map_err(|e| ApiError::Internal(e.to_string()))?
                .ok_or_else(|| ApiError::Internal("no OpenAPI v3 index".into()))?;
            Ok(document_response(
                &index,
                "application/json",
                headers,
                false,
            ))
        }
        Route::OpenApi(path) => {
            let doc = if custom.paths.contains(path) {
                v3_document(path, &served(), &custom.v3)
                    .map_err(internal)?
                    .map(Arc::new)
            } else {
                built_in_v3(path)?
            };
            let doc = doc.ok_or(ApiError::NoSuchPath)?;
            if negotiate(headers, &["json", PROTOBUF_V3, PROTOBUF_V3_DEPRECATED]) != Some("json") {
                return Ok(not_acceptable());
            }
            if let Some(hash) = hash_param(query) {
                if hash != doc.etag {
                    let mut response = StatusCode::MOVED_PERMANENTLY.into_response();
                    response.headers_mut().insert(
                        header::LOCATION,
                        header_value(&format!("/openapi/v3/{path}?hash={}", doc.etag)),
                    );
                    return Ok(response);
                }
                let mut response = document_response(&doc, "application/json", headers, false);
                let h = response.headers_mut();
                h.insert(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, immutable"),
                );
                let expires = jiff::Timestamp::now()
                    .checked_add(jiff::SignedDuration::from_hours(24 * 365))
                    .unwrap_or_else(|_| jiff::Timestamp::now());
                h.insert(header::EXPIRES, header_value(&http_date(expires)));
                return Ok(response);
            }
            Ok(document_response(&doc, "application/json", headers, false))
        }
        _ => Err(ApiError::NoSuchPath),
    }
}

#[cfg(test)]
mod tests;
