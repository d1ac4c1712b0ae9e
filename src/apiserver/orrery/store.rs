//! `/orrery/v1/store...`: the store itself, for `orrery store` while a cluster runs (the embedded
//! store is then open in the `orrery up` process only, and an etcd cluster's members are its
//! children), served even while the Kubernetes API is stopped. Every path is a non-resource URL
//! that only a cluster admin may reach (the default roles grant none of them).
//!
//! - `GET store`: the store's status (backend, revision, each etcd member's health, whether there
//!   is a quorum, how many keys).
//! - `GET store/keys?prefix=P&limit=N&revision=R&values=true`: the keys under a prefix.
//! - `GET|PUT|DELETE store/kv?key=K` (`DELETE ...&prefix=true`: every key under K): one key,
//!   values base64 in JSON and raw in a `PUT`'s body.
//! - `POST store/compact?revision=R`.
//! - `GET store/snapshot`: a snapshot file ([`crate::store::snapshot`]); `POST store/snapshot`
//!   with one as the body restores it, a `RESTORE` hop on the flow.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::super::errors::ApiError;
use super::super::handlers::{body_bytes, params};
use super::super::{ApiServer, json_response};
use crate::apimachinery::params::{Params, flag};
use crate::flow::FlowEvent;
use crate::store::snapshot::{self, Snapshot};
use crate::store::{Error as StoreError, KeyValue, RangeRequest};

/// The largest snapshot a restore takes.
const MAX_SNAPSHOT_BYTES: usize = 1 << 30;
/// How long the status waits for the key count (an etcd without quorum never gives it).
const COUNT_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Serves `store...` paths; `None` for any other.
pub(super) async fn serve(api: &Arc<ApiServer>, rest: &str, request: Request) -> Option<Response> {
    let method = request.method().clone();
    let query = params(&request);
    let answer = match (method, rest) {
        (Method::GET, "store") => status(api).await,
        (Method::GET, "store/keys") => keys(api, &query).await,
        (Method::GET, "store/kv") => get(api, &query).await,
        (Method::PUT, "store/kv") => put(api, &query, request).await,
        (Method::DELETE, "store/kv") => delete(api, &query).await,
        (Method::POST, "store/compact") => compact(api, &query).await,
        (Method::GET, "store/snapshot") => return Some(save(api).await),
        (Method::POST, "store/snapshot") => restore(api, request).await,
        (_, "store" | "store/keys" | "store/kv" | "store/compact" | "store/snapshot") => {
            Err(ApiError::MethodNotAllowed)
        }
        _ => return None,
    };
    Some(match answer {
        Ok(answer) => json_response(StatusCode::OK, &answer),
        Err(error) => error.into_response(),
    })
}

/// A store failure as the API answers it: a missing key 404, a compacted revision 410, etcd
/// without quorum in etcd's words (500), anything else 500.
fn failed(error: StoreError, key: &str) -> ApiError {
    match error {
        StoreError::NotFound { .. } => ApiError::NotFound {
            resource: "keys".into(),
            name: key.to_owned(),
        },
        other => super::super::errors::from_store(other, "keys", key),
    }
}

fn kv_json(kv: &KeyValue, values: bool) -> Value {
    let mut answer = json!({
        "key": kv.key,
        "createRevision": kv.create_revision,
        "modRevision": kv.mod_revision,
    });
    if values {
        answer["value"] = json!(base64::engine::general_purpose::STANDARD.encode(&kv.value));
    }
    answer
}

fn key_param(query: &Params) -> Result<String, ApiError> {
    query
        .get("key")
        .filter(|k| !k.is_empty())
        .cloned()
        .ok_or_else(|| {
            ApiError::BadRequest("the key parameter is required: ?key=/registry/...".into())
        })
}

fn number(query: &Params, name: &str) -> Result<Option<u64>, ApiError> {
    match query.get(name) {
        None => Ok(None),
        Some(value) => value
            .parse()
            .map(Some)
            .map_err(|_| ApiError::BadRequest(format!("{name} must be a number, not {value:?}"))),
    }
}

async fn status(api: &Arc<ApiServer>) -> Result<Value, ApiError> {
    let store = api.store();
    let status = store.status().await.map_err(|e| failed(e, ""))?;
    let mut answer =
        serde_json::to_value(&status).map_err(|e| ApiError::Internal(e.to_string()))?;
    if let Some(quorum) = status.quorum() {
        answer["quorum"] = json!(quorum);
        answer["quorumSummary"] = json!(status.quorum_words());
    }
    // Counting reads every key: only where the store can answer soon.
    if status.quorum() != Some(false)
        && let Ok(Ok(all)) =
            tokio::time::timeout(COUNT_WAIT, store.range(&RangeRequest::prefix(""))).await
    {
        answer["keys"] = json!(all.kvs.len());
        answer["revision"] = json!(all.revision);
    }
    Ok(answer)
}

async fn keys(api: &Arc<ApiServer>, query: &Params) -> Result<Value, ApiError> {
    let prefix = query.get("prefix").cloned().unwrap_or_default();
    let range = RangeRequest {
        prefix: prefix.clone(),
        start_after: None,
        limit: number(query, "limit")?.map(|n| n as usize),
        at_revision: number(query, "revision")?,
    };
    let result = api
        .store()
        .range(&range)
        .await
        .map_err(|e| failed(e, &prefix))?;
    let values = flag(query, "values");
    Ok(json!({
        "revision": result.revision,
        "more": result.more,
        "keys": result.kvs.iter().map(|kv| kv_json(kv, values)).collect::<Vec<_>>(),
    }))
}

/// The key as the store has it now, or NotFound.
async fn existing(api: &ApiServer, key: &str) -> Result<KeyValue, ApiError> {
    api.store()
        .get(key)
        .await
        .map_err(|e| failed(e, key))?
        .ok_or_else(|| ApiError::NotFound {
            resource: "keys".into(),
            name: key.to_owned(),
        })
}

async fn get(api: &Arc<ApiServer>, query: &Params) -> Result<Value, ApiError> {
    let key = key_param(query)?;
    Ok(kv_json(&existing(api, &key).await?, true))
}

/// Creates the key or replaces its value (compare-and-swap on the revision just read, as
/// `orrery store put` does on a store it opens itself).
async fn put(api: &Arc<ApiServer>, query: &Params, request: Request) -> Result<Value, ApiError> {
    let key = key_param(query)?;
    let value = body_bytes(request).await?;
    let store = api.store();
    let current = store.get(&key).await.map_err(|e| failed(e, &key))?;
    let revision = match current {
        Some(kv) => store.update(&key, value, kv.mod_revision).await,
        None => store.create(&key, value).await,
    }
    .map_err(|e| failed(e, &key))?;
    api.announced(revision);
    Ok(json!({"key": key, "revision": revision}))
}

/// Deletes the key, or with `prefix=true` every key under it, each on the revision read.
async fn delete(api: &Arc<ApiServer>, query: &Params) -> Result<Value, ApiError> {
    let key = key_param(query)?;
    let store = api.store();
    let targets: Vec<KeyValue> = if flag(query, "prefix") {
        store
            .range(&RangeRequest::prefix(key.clone()))
            .await
            .map_err(|e| failed(e, &key))?
            .kvs
    } else {
        vec![existing(api, &key).await?]
    };
    let mut revision = None;
    let mut deleted = Vec::new();
    for kv in &targets {
        match store.delete(&kv.key, kv.mod_revision).await {
            Ok(at) => {
                revision = Some(at);
                deleted.push(kv.key.clone());
            }
            // Changed or gone since it was read: someone else's write wins.
            Err(StoreError::NotFound { .. } | StoreError::Conflict { .. }) => {}
            Err(e) => return Err(failed(e, &kv.key)),
        }
    }
    if let Some(revision) = revision {
        api.announced(revision);
    }
    Ok(json!({"deleted": deleted, "revision": revision}))
}

async fn compact(api: &Arc<ApiServer>, query: &Params) -> Result<Value, ApiError> {
    let revision = number(query, "revision")?
        .ok_or_else(|| ApiError::BadRequest("the revision parameter is required".into()))?;
    api.store()
        .compact(revision)
        .await
        .map_err(|e| failed(e, ""))?;
    Ok(json!({"compacted": revision}))
}

/// The snapshot file, read at one revision while the cluster goes on.
async fn save(api: &Arc<ApiServer>) -> Response {
    let snapshot = match snapshot::take(api.store()).await {
        Ok(snapshot) => snapshot,
        Err(e) => return failed(e, "").into_response(),
    };
    let mut hop = FlowEvent::new("apiserver", "store", "RANGE").detail(format!(
        "snapshot: {} keys at revision {}",
        snapshot.kvs.len(),
        snapshot.revision
    ));
    hop.revision = Some(snapshot.revision);
    api.emit(hop);
    let bytes = snapshot.encode();
    let mut response = Response::new(Body::from(bytes));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/octet-stream"),
    );
    response
}

/// Restores the snapshot in the body: checked whole first (nothing changes if it is not a good
/// snapshot), then the store's [`restore`](crate::store::Store::restore).
async fn restore(api: &Arc<ApiServer>, request: Request) -> Result<Value, ApiError> {
    let bytes = axum::body::to_bytes(request.into_body(), MAX_SNAPSHOT_BYTES)
        .await
        .map_err(|e| ApiError::BadRequest(format!("cannot read the snapshot: {e}")))?;
    let snapshot = Snapshot::decode(&bytes).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let restored = api
        .store()
        .restore(&snapshot.kvs)
        .await
        .map_err(|e| failed(e, ""))?;
    let mut hop = FlowEvent::new("apiserver", "store", "RESTORE").detail(format!(
        "restore {} keys from a snapshot at revision {}: {} written, {} deleted, {} unchanged; \
         history compacted at {} (every watch ends: its client lists again)",
        snapshot.kvs.len(),
        snapshot.revision,
        restored.written,
        restored.deleted,
        restored.unchanged,
        restored.revision
    ));
    hop.revision = Some(restored.revision);
    api.emit(hop);
    api.announced(restored.revision);
    let mut answer =
        serde_json::to_value(&restored).map_err(|e| ApiError::Internal(e.to_string()))?;
    answer["keys"] = json!(snapshot.kvs.len());
    answer["snapshotRevision"] = json!(snapshot.revision);
    Ok(answer)
}
