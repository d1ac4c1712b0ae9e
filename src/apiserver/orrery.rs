//! Orrery's own API, `/orrery/v1/...`: the flow stream, the stepper, the components and nodes,
//! the store's keys and history, and the scheduler's decisions. Served next to the Kubernetes
//! API by the same server, for the dashboard and `orrery` subcommands. The store itself (status,
//! keys, snapshots) is [`store`].

mod store;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::errors::{ApiError, from_store};
use super::handlers::{body_bytes, params};
use super::{ApiServer, json_response};
use crate::apimachinery::params::flag;
use crate::flow::StepMode;

/// `/orrery/v1/...`: the flow stream, the stepper, and the scheduler's decisions.
pub(crate) async fn control(api: &Arc<ApiServer>, rest: &str, request: Request) -> Response {
    let request = match rest {
        "store" | "store/keys" | "store/kv" | "store/compact" | "store/snapshot" => {
            if let Some(response) = store::serve(api, rest, request).await {
                return response;
            }
            return ApiError::NoSuchPath.into_response();
        }
        _ => request,
    };
    match (request.method().clone(), rest) {
        (Method::GET, path) if path.starts_with("scheduling/") => {
            let mut parts = path["scheduling/".len()..].split('/');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(namespace), Some(name), None)
                    if !namespace.is_empty() && !name.is_empty() =>
                {
                    match api.decisions().get(namespace, name) {
                        Some(decision) => json_response(StatusCode::OK, &decision),
                        None => ApiError::NotFound {
                            resource: "schedulingdecisions".into(),
                            name: format!("{namespace}/{name}"),
                        }
                        .into_response(),
                    }
                }
                _ => ApiError::NoSuchPath.into_response(),
            }
        }
        (Method::GET, path) if path.starts_with("store/") => {
            match store_info(api, &path["store/".len()..]).await {
                Ok(answer) => json_response(StatusCode::OK, &answer),
                Err(e) => e.into_response(),
            }
        }
        (Method::GET, "flow") => {
            let query = params(&request);
            let since = query.get("since").and_then(|s| s.parse().ok()).unwrap_or(0);
            // `follow=false`: the events kept so far, then the end (a script's look).
            let follow = !query.contains_key("follow") || flag(&query, "follow");
            let (backlog, mut live) = api.flow().subscribe(since);
            let (tx, rx) =
                tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::convert::Infallible>>(256);
            tokio::spawn(async move {
                let line = |e: &crate::flow::FlowEvent| {
                    let mut line = serde_json::to_vec(e).unwrap_or_default();
                    line.push(b'\n');
                    bytes::Bytes::from(line)
                };
                let mut last = since;
                for e in &backlog {
                    last = e.seq;
                    if tx.send(Ok(line(e))).await.is_err() {
                        return;
                    }
                }
                if !follow {
                    return;
                }
                loop {
                    match live.recv().await {
                        Ok(e) if e.seq <= last => {}
                        Ok(e) => {
                            last = e.seq;
                            if tx.send(Ok(line(&e))).await.is_err() {
                                return;
                            }
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(lost)) => {
                            // A reader too slow for the bus loses events, and is told how many.
                            let line = format!("{{\"lost\":{lost}}}\n");
                            if tx.send(Ok(bytes::Bytes::from(line))).await.is_err() {
                                return;
                            }
                        }
                        Err(_) => return,
                    }
                }
            });
            let mut response = Response::new(Body::from_stream(
                tokio_stream::wrappers::ReceiverStream::new(rx),
            ));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/x-ndjson"),
            );
            response
        }
        (Method::GET, "stepper") => {
            json_response(StatusCode::OK, &json!(api.flow().stepper().state()))
        }
        (Method::POST, "stepper") => {
            let body = match body_bytes(request).await {
                Ok(b) => b,
                Err(e) => return e.into_response(),
            };
            match step(api.flow().stepper(), &body) {
                Ok(state) => json_response(StatusCode::OK, &json!(state)),
                Err(e) => e.into_response(),
            }
        }
        (Method::GET, "components") => match api.supervisor() {
            Some(supervisor) => {
                json_response(StatusCode::OK, &json!({"components": supervisor.list()}))
            }
            None => json_response(StatusCode::OK, &json!({"components": []})),
        },
        (Method::POST, rest) => match operate(api, rest).await {
            Ok(answer) => json_response(StatusCode::OK, &answer),
            Err(e) => e.into_response(),
        },
        _ => ApiError::NoSuchPath.into_response(),
    }
}

/// `GET /orrery/v1/store/<resource>/<namespace or ->/<name>`: what the store holds for one
/// object, as etcd would say it: its key, the revisions that created and last changed it, and
/// its version (how many writes since it was created, counted from the store's history; absent
/// once that history is compacted away). `<resource>` is a plural, optionally with its group
/// (`deployments.apps`).
async fn store_info(api: &Arc<ApiServer>, rest: &str) -> Result<Value, ApiError> {
    let parts: Vec<&str> = rest.split('/').collect();
    let [plural, namespace, name] = parts[..] else {
        return Err(ApiError::NoSuchPath);
    };
    let (plural, group) = plural.split_once('.').unwrap_or((plural, ""));
    let resource = crate::apiserver::resources::RESOURCES
        .iter()
        .find(|r| r.plural == plural && (group.is_empty() || r.group == group))
        .ok_or(ApiError::NoSuchPath)?;
    let namespace = (resource.namespaced && namespace != "-").then_some(namespace);
    if name.is_empty() || (resource.namespaced && namespace.is_none()) {
        return Err(ApiError::NoSuchPath);
    }
    let key = resource.key(namespace, name);
    let not_found = || ApiError::NotFound {
        resource: resource.qualified(),
        name: name.to_owned(),
    };
    let kv = api
        .store()
        .get(&key)
        .await
        .map_err(|e| from_store(e, &resource.qualified(), name))?
        .ok_or_else(not_found)?;
    let mut answer = json!({
        "key": kv.key,
        "createRevision": kv.create_revision,
        "modRevision": kv.mod_revision,
    });
    if let Some(version) = version_of(api, &kv).await {
        answer["version"] = json!(version);
    }
    Ok(answer)
}

/// How many times `kv` was written since it was created (etcd's `version`), by reading the
/// store's history of its key from its creation to its latest change; `None` if that history is
/// gone (compacted) or cannot be read in time.
async fn version_of(api: &ApiServer, kv: &crate::store::KeyValue) -> Option<u64> {
    use futures::StreamExt;
    let mut events = api.store().watch(&kv.key, kv.create_revision).await.ok()?;
    let count = async {
        let mut version = 0u64;
        while let Some(event) = events.next().await {
            let event = event.ok()?;
            if event.revision() > kv.mod_revision {
                break;
            }
            if matches!(&event, crate::store::Event::Put { kv: put, .. } if put.key == kv.key) {
                version += 1;
            }
            if event.revision() == kv.mod_revision {
                break;
            }
        }
        Some(version)
    };
    tokio::time::timeout(std::time::Duration::from_secs(2), count)
        .await
        .ok()
        .flatten()
        .filter(|v| *v > 0)
}

/// `POST /orrery/v1/stepper`: `{"mode": "run"|"step"}`, `{"release": n}` (the n oldest gates),
/// `{"releaseGate": id}` (exactly that hop), `{"focus": {"namespace": .., "root": ..}}` or
/// `{"focus": null}`; any together. Answers the stepper's state.
fn step(
    stepper: &crate::flow::Stepper,
    body: &[u8],
) -> Result<crate::flow::StepperState, ApiError> {
    let command: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("the stepper command is not JSON: {e}")))?
    };
    let Some(command) = command.as_object() else {
        return Err(ApiError::BadRequest(
            "the stepper command must be a JSON object".into(),
        ));
    };
    let mode = match command.get("mode") {
        None | Some(Value::Null) => None,
        Some(Value::String(m)) if m == "step" => Some(StepMode::Step),
        Some(Value::String(m)) if m == "run" => Some(StepMode::Run),
        Some(other) => {
            return Err(ApiError::Invalid {
                group: "orrery.dev".into(),
                kind: "Stepper".into(),
                name: "stepper".into(),
                causes: vec![crate::apiserver::errors::Cause::unsupported(
                    "mode",
                    other,
                    &["run", "step"],
                )],
            });
        }
    };
    let focus = match command.get("focus") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(f) => Some(Some(
            serde_json::from_value::<crate::flow::Focus>(f.clone())
                .map_err(|e| ApiError::BadRequest(format!("focus: {e}")))?,
        )),
    };
    let release = match command.get("release") {
        None => None,
        Some(n) => Some(
            n.as_u64()
                .ok_or_else(|| ApiError::BadRequest("release must be a number of gates".into()))?,
        ),
    };
    let gate = match command.get("releaseGate") {
        None => None,
        Some(n) => Some(
            n.as_u64()
                .ok_or_else(|| ApiError::BadRequest("releaseGate must be a gate's id".into()))?,
        ),
    };
    if let Some(mode) = mode {
        stepper.set_mode(mode);
    }
    if let Some(focus) = focus {
        stepper.set_focus(focus);
    }
    if let Some(n) = release {
        stepper.release(n as usize);
    }
    if let Some(id) = gate
        && !stepper.release_gate(id)
    {
        return Err(ApiError::NotFound {
            resource: "gates".into(),
            name: id.to_string(),
        });
    }
    Ok(stepper.state())
}

/// `POST /orrery/v1/components/<name>/{stop,kill,start}` and
/// `/orrery/v1/nodes/<name>/{stop,kill,start}`.
async fn operate(api: &ApiServer, rest: &str) -> Result<Value, ApiError> {
    use crate::supervisor::{Role, Stop};
    // A node's component has a slash in its name (`kube-proxy/node-1`).
    let Some((group, (name, action))) = rest
        .split_once('/')
        .and_then(|(group, rest)| Some((group, rest.rsplit_once('/')?)))
    else {
        return Err(ApiError::NoSuchPath);
    };
    let role = match group {
        "components" => Role::Component,
        "nodes" => Role::Node,
        _ => return Err(ApiError::NoSuchPath),
    };
    let supervisor = api
        .supervisor()
        .ok_or_else(|| ApiError::Unavailable("this API server runs no components".into()))?;
    let changed = match action {
        "stop" => supervisor.stop(role, name, Stop::Clean).await,
        "kill" => supervisor.stop(role, name, Stop::Kill).await,
        "start" => supervisor.start(role, name),
        _ => return Err(ApiError::NoSuchPath),
    }
    .map_err(|_| ApiError::NotFound {
        resource: group.to_owned(),
        name: name.to_owned(),
    })?;
    Ok(json!({"name": name, "running": action == "start", "changed": changed}))
}
