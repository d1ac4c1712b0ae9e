//! Watch: a chunked stream of `{"type": ..., "object": ...}` lines, one per change, from a store
//! watch. It resumes from any recent resourceVersion, sends the current objects first when asked
//! (`sendInitialEvents`, or no resourceVersion), ends the initial batch with an annotated
//! BOOKMARK, sends BOOKMARKs while idle, filters by label and field selectors (an object leaving
//! the selection is DELETED for this watcher), and reports a compacted resourceVersion as an
//! in-stream `ERROR` with a 410 `Expired` Status, as the real server does.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::errors::{ApiError, from_store};
use super::handlers::Params;
use super::resources::Resource;
use super::selectors::{self, FieldSelector, LabelSelector};
use super::{ApiServer, decode, tables};
use crate::apimachinery::params::flag;
use crate::flow::{Flow, FlowEvent};
use crate::store::{Event, RangeRequest, Revision};

/// How often an idle watch with bookmarks allowed says where it is.
const BOOKMARK_EVERY: Duration = Duration::from_secs(5);

/// One watch event as kube-apiserver writes it: `{"type":...,"object":...}` and a newline.
fn line(kind: &str, object: &Value) -> Bytes {
    let mut bytes = Vec::with_capacity(512);
    bytes.extend_from_slice(b"{\"type\":");
    crate::apimachinery::wire::string(kind, &mut bytes);
    bytes.extend_from_slice(b",\"object\":");
    crate::apimachinery::wire::write(object, &mut bytes);
    bytes.extend_from_slice(b"}\n");
    Bytes::from(bytes)
}

struct Watcher {
    resource: &'static Resource,
    labels: LabelSelector,
    fields: FieldSelector,
    table: bool,
    /// For a pod watch with `spec.nodeName=X` (every kubelet's), the bytes `"nodeName":"X"`: an
    /// event whose old and new object both lack them cannot match and is skipped before it is
    /// decoded, as the real API server's watch cache indexes pods by node name. Objects are
    /// stored as the compact JSON the API server writes, so a match always contains them.
    node_name: Option<Vec<u8>>,
    tx: mpsc::Sender<Result<Bytes, Infallible>>,
    /// Where each delivery is a hop `apiserver -> <client>`, unless the client is the
    /// dashboard (whose own watches would otherwise echo every change back to it).
    flow: Option<Flow>,
    /// The watching component, as the flow names it.
    client: String,
}

impl Watcher {
    fn matches(&self, object: &Value) -> bool {
        self.labels.matches_object(object) && self.fields.matches(object)
    }

    async fn send(&self, kind: &str, object: &Value) -> bool {
        let object = if self.table && kind != "BOOKMARK" && kind != "ERROR" {
            tables::table(
                self.resource,
                vec![object.clone()],
                json!({"resourceVersion": object["metadata"]["resourceVersion"]}),
            )
        } else {
            object.clone()
        };
        self.tx.send(Ok(line(kind, &object))).await.is_ok()
    }

    /// Puts a delivery on the flow: `apiserver -> <client>`, `WATCH <type>`, the object and its
    /// revision. Its story (`root`) comes from the object's earlier hops.
    fn delivered(&self, kind: &str, object: &Value) {
        let Some(flow) = &self.flow else { return };
        let meta = &object["metadata"];
        let mut hop = FlowEvent::new("apiserver", self.client.as_str(), format!("WATCH {kind}"))
            .object(
                self.resource.kind,
                meta["namespace"].as_str().unwrap_or_default(),
                meta["name"].as_str().unwrap_or_default(),
            )
            .detail(format!(
                "{} watch event to {}",
                kind.to_lowercase(),
                self.client
            ));
        hop.uid = meta["uid"].as_str().unwrap_or_default().to_owned();
        hop.revision = meta["resourceVersion"]
            .as_str()
            .and_then(|rv| rv.parse().ok());
        flow.record(hop);
    }

    async fn bookmark(&self, revision: Revision, initial_end: bool) -> bool {
        let mut metadata = json!({"resourceVersion": revision.to_string()});
        if initial_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let object = json!({"kind": self.resource.kind, "apiVersion": self.resource.api_version(), "metadata": metadata});
        self.send("BOOKMARK", &object).await
    }

    async fn expired(&self, message: String) {
        let status = ApiError::Expired(message).status();
        let _ = self.send("ERROR", &status).await;
    }
}

/// Turns one store event into what this watcher sees, if anything.
fn translate(event: &Event, watcher: &Watcher) -> Option<(&'static str, Value)> {
    if let Some(needle) = &watcher.node_name {
        let has = |value: &[u8]| memchr::memmem::find(value, needle).is_some();
        let relevant = match event {
            Event::Put { kv, prev } => {
                has(&kv.value) || prev.as_ref().is_some_and(|p| has(&p.value))
            }
            Event::Delete { prev, .. } => has(&prev.value),
        };
        if !relevant {
            return None;
        }
    }
    let with_rv = |value: &bytes::Bytes, revision: Revision| -> Option<Value> {
        let mut object: Value = serde_json::from_slice(value).ok()?;
        object["metadata"]["resourceVersion"] = json!(revision.to_string());
        Some(watcher.resource.served(object))
    };
    match event {
        Event::Put { kv, prev } => {
            let object = with_rv(&kv.value, kv.mod_revision)?;
            let before = prev
                .as_ref()
                .and_then(|p| with_rv(&p.value, p.mod_revision));
            let now_matches = watcher.matches(&object);
            let matched = before.as_ref().is_some_and(|b| watcher.matches(b));
            match (matched, now_matches) {
                (_, true) if before.is_none() => Some(("ADDED", object)),
                (true, true) => Some(("MODIFIED", object)),
                (false, true) => Some(("ADDED", object)),
                (true, false) => Some(("DELETED", object)),
                (false, false) => None,
            }
        }
        Event::Delete { revision, prev, .. } => {
            let object = with_rv(&prev.value, *revision)?;
            watcher.matches(&object).then_some(("DELETED", object))
        }
    }
}

/// The client whose watch deliveries are not put on the flow: the dashboard, which shows the
/// flow and would otherwise see its own reads of every change as more changes.
pub(crate) const UNFLOWED_WATCHER: &str = "dashboard";

/// Serves a watch request from `client` (named as in the flow).
pub(crate) async fn serve(
    api: Arc<ApiServer>,
    resource: &'static Resource,
    namespace: Option<String>,
    params: Params,
    accept: &str,
    client: String,
) -> Result<Response, ApiError> {
    let (labels, fields) = selectors::from_params(&params, resource.kind)?;
    let bookmarks = flag(&params, "allowWatchBookmarks");
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(30 * 60));
    let rv = params.get("resourceVersion").cloned().unwrap_or_default();
    let send_initial = match params.get("sendInitialEvents") {
        Some(_) => flag(&params, "sendInitialEvents"),
        None => rv.is_empty() || rv == "0",
    };
    let prefix = resource.key_prefix(namespace.as_deref());
    let start: Option<Revision> = if rv.is_empty() || rv == "0" {
        None
    } else {
        Some(
            rv.parse()
                .map_err(|_| ApiError::BadRequest(format!("invalid resourceVersion {rv:?}")))?,
        )
    };
    let (tx, rx) = mpsc::channel(256);
    let node_name = (resource.kind == "Pod")
        .then(|| fields.required("spec.nodeName"))
        .flatten()
        .filter(|n| !n.is_empty())
        .map(|n| format!("\"nodeName\":{}", json!(n)).into_bytes());
    let watcher = Watcher {
        resource,
        labels,
        fields,
        table: tables::wants_table(accept),
        node_name,
        tx,
        flow: (client != UNFLOWED_WATCHER).then(|| api.flow().clone()),
        client,
    };
    // The initial state and the stream that follows it start at one revision, so nothing is
    // missed or repeated between them.
    let (initial, from) = if send_initial {
        let snapshot = api
            .store()
            .range(&RangeRequest::prefix(prefix.clone()))
            .await
            .map_err(|e| from_store(e, &resource.qualified(), ""))?;
        let objects: Vec<Value> = snapshot
            .kvs
            .iter()
            .filter_map(|kv| decode(kv).ok().map(|o| resource.served(o)))
            .collect();
        (Some((objects, snapshot.revision)), snapshot.revision + 1)
    } else {
        let start = match start {
            Some(rv) => rv,
            None => api
                .store()
                .current_revision()
                .await
                .map_err(|e| from_store(e, &resource.qualified(), ""))?,
        };
        (None, start + 1)
    };
    let explicit_initial = flag(&params, "sendInitialEvents");
    let events = api.store().watch(&prefix, from).await;
    super::registry::store::emit_read(
        &api,
        "WATCH",
        resource,
        namespace.as_deref(),
        "",
        from,
        format!("watch {prefix} from revision {from}"),
    );
    tokio::spawn(async move {
        let mut last = from - 1;
        if let Some((objects, revision)) = initial {
            let mut sent = 0;
            for object in objects.iter().filter(|o| watcher.matches(o)) {
                if !watcher.send("ADDED", object).await {
                    return;
                }
                sent += 1;
            }
            // The replay is one hop, not one per object: a LIST's worth could be thousands.
            if let Some(flow) = &watcher.flow {
                let mut hop = FlowEvent::new("apiserver", watcher.client.as_str(), "WATCH SYNC")
                    .object(watcher.resource.kind, "", "")
                    .detail(format!(
                        "{sent} {} to {}",
                        if sent == 1 { "object" } else { "objects" },
                        watcher.client
                    ));
                hop.revision = Some(revision);
                flow.record(hop);
            }
            if explicit_initial && !watcher.bookmark(revision, true).await {
                return;
            }
        }
        let mut events = match events {
            Ok(events) => events,
            Err(crate::store::Error::Compacted {
                requested,
                compacted,
            }) => {
                let oldest = compacted.map(|c| format!(" ({c})")).unwrap_or_default();
                watcher
                    .expired(
                        format!(
                            "too old resource version: {} {oldest}",
                            requested.saturating_sub(1)
                        )
                        .replace("  ", " "),
                    )
                    .await;
                return;
            }
            Err(e) => {
                let _ = watcher
                    .send("ERROR", &ApiError::Internal(e.to_string()).status())
                    .await;
                return;
            }
        };
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        // A stopped API server's watches end (its clients list and watch again once it is back).
        let stopped = api.stopped();
        tokio::pin!(stopped);
        let mut ticker = tokio::time::interval(BOOKMARK_EVERY);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = &mut stopped => return,
                _ = ticker.tick(), if bookmarks => {
                    if !watcher.bookmark(last, false).await {
                        return;
                    }
                }
                event = events.next() => match event {
                    Some(Ok(event)) => {
                        last = event.revision();
                        if let Some((kind, object)) = translate(&event, &watcher) {
                            // On the flow after the write that made it and before it is on its
                            // way, so the hop precedes whatever the watcher does about it.
                            if watcher.flow.is_some() {
                                api.announced_by(event.revision()).await;
                            }
                            watcher.delivered(kind, &object);
                            if !watcher.send(kind, &object).await {
                                return;
                            }
                        }
                    }
                    Some(Err(crate::store::Error::Compacted { requested, .. })) => {
                        watcher.expired(format!("too old resource version: {requested}")).await;
                        return;
                    }
                    Some(Err(e)) => {
                        let _ = watcher.send("ERROR", &ApiError::Internal(e.to_string()).status()).await;
                        return;
                    }
                    None => return,
                },
                _ = watcher.tx.closed() => return,
            }
        }
    });
    let mut response = Response::new(Body::from_stream(
        tokio_stream::wrappers::ReceiverStream::new(rx),
    ));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-cache, private"),
    );
    Ok(response)
}
