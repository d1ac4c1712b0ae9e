//! The API server: real Kubernetes REST over the store, the only component that touches it.
//!
//! A request is routed by its path ([`path`]) to a resource ([`resources`]), then read from or
//! written to the [`crate::store`] as JSON under `/registry/<resource>/<namespace>/<name>`, the
//! way the real API server keeps etcd. On the way in, objects are normalised through their
//! `k8s-openapi` type, defaulted and validated ([`admission`]); on the way out they carry
//! `resourceVersion` = the store revision, or become a server-side printed Table ([`tables`]).
//! Errors are `metav1.Status` objects ([`errors`]). Every request and store operation is a
//! [`crate::flow::FlowEvent`], and every write waits at the stepper's gate before it commits.
//!
//! [`server`] serves it over HTTPS with client certificates ([`pki`], [`kubeconfig`]);
//! [`ApiServer::client`] is the same router as an in-process `kube::Client`.

pub mod admission;
mod apply;
mod discovery;
pub(crate) mod errors;
mod handlers;
pub mod kubeconfig;
mod patch;
mod path;
pub mod pki;
pub(crate) mod resources;
mod selectors;
pub mod server;
mod tables;
mod watch;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::flow::{Flow, FlowEvent};
use crate::store::{KeyValue, Store};
use errors::ApiError;

/// The Kubernetes version Orrery reports (its types are `k8s-openapi`'s for this version).
pub const KUBERNETES_VERSION: &str = "v1.33.0";

/// The namespaces a new cluster starts with.
pub const SYSTEM_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Who made a request, as the TLS layer saw it. Requests without this extension come from the
/// in-process client and are trusted; requests with `None` had no client certificate.
#[derive(Clone, Debug)]
pub struct Peer(pub Option<String>);

/// What stopped the API server from creating a new cluster's first objects.
#[derive(Debug, thiserror::Error)]
#[error("cannot create {object}: {message}")]
pub struct BootstrapError {
    object: String,
    message: String,
}

/// The API server's shared state.
pub struct ApiServer {
    store: Arc<dyn Store>,
    flow: Flow,
    /// Whether the Kubernetes API answers (`orrery component stop apiserver` turns it off).
    serving: AtomicBool,
}

impl ApiServer {
    /// An API server over `store`, reporting to `flow`.
    pub fn new(store: Arc<dyn Store>, flow: Flow) -> Arc<Self> {
        Arc::new(ApiServer {
            store,
            flow,
            serving: AtomicBool::new(true),
        })
    }

    /// Creates what a new cluster has from the start: the system namespaces.
    pub async fn bootstrap(self: &Arc<Self>) -> Result<(), BootstrapError> {
        let namespaces = resources::find("", "v1", "namespaces").expect("namespaces are served");
        for ns in SYSTEM_NAMESPACES {
            let object = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            match handlers::create_object(self, namespaces, None, object, Some("kube-apiserver"))
                .await
            {
                Ok(_) | Err(ApiError::AlreadyExists { .. }) => {}
                Err(e) => {
                    return Err(BootstrapError {
                        object: format!("namespace {ns}"),
                        message: e.to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Turns the Kubernetes API on or off (off: every API request gets 503).
    pub fn set_serving(&self, serving: bool) {
        self.serving.store(serving, Ordering::SeqCst);
    }

    /// The flow bus.
    pub fn flow(&self) -> &Flow {
        &self.flow
    }

    /// The router: every Kubernetes path, plus `/orrery/v1` control endpoints.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new().fallback(handle).with_state(self.clone())
    }

    /// An in-process `kube::Client` over this server's router: no TCP, no TLS, the same code
    /// path as any other client. `component` names it in the flow (as its user agent).
    pub fn client(self: &Arc<Self>, component: &str) -> kube::Client {
        let router = self.router();
        let agent = http::HeaderValue::from_str(&format!("orrery/{component}")).expect("ascii");
        let service = tower::ServiceBuilder::new()
            .map_request(move |mut request: http::Request<kube::client::Body>| {
                request
                    .headers_mut()
                    .insert(http::header::USER_AGENT, agent.clone());
                request.map(Body::new)
            })
            .service(router);
        kube::Client::new(service, "default")
    }

    pub(crate) fn store(&self) -> &dyn Store {
        &*self.store
    }

    pub(crate) fn emit(&self, event: FlowEvent) {
        self.flow.emit(event);
    }
}

/// The component a request came from, for the flow: `kubectl`, `controller/x`, or the agent.
fn client_name(request: &Request) -> String {
    let agent = request
        .headers()
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("client");
    if let Some(component) = agent.strip_prefix("orrery/") {
        return component.to_owned();
    }
    agent.split('/').next().unwrap_or("client").to_owned()
}

async fn handle(State(api): State<Arc<ApiServer>>, request: Request) -> Response {
    if let Some(Peer(None)) = request.extensions().get::<Peer>() {
        return ApiError::Unauthorized.into_response();
    }
    let path = request.uri().path().to_owned();
    if let Some(rest) = path.strip_prefix("/orrery/v1/") {
        return handlers::control(&api, rest, request).await;
    }
    if !api.serving.load(Ordering::SeqCst) {
        return ApiError::Unavailable(
            "the API server is stopped (orrery component start apiserver)".into(),
        )
        .into_response();
    }
    let result = match path::route(&path) {
        path::Route::Version => Ok(json_response(http::StatusCode::OK, &discovery::version())),
        path::Route::Healthz => Ok((http::StatusCode::OK, "ok").into_response()),
        path::Route::Resource(target) => {
            let client = client_name(&request);
            handlers::resource(&api, target, request, client).await
        }
        path::Route::Unknown => Err(ApiError::NoSuchPath),
        route => discovery::serve(route, request.headers()),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// A JSON response.
pub(crate) fn json_response(status: http::StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    (
        status,
        [(http::header::CONTENT_TYPE, "application/json")],
        Bytes::from(bytes),
    )
        .into_response()
}

/// An object as stored, with `resourceVersion` set from the store.
pub(crate) fn decode(kv: &KeyValue) -> Result<Value, ApiError> {
    let mut object: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::Internal(format!("stored object {} is not JSON: {e}", kv.key)))?;
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
    }
    Ok(object)
}

/// An object as it is stored: without `resourceVersion`, which is the store's to say.
pub(crate) fn encode(object: &Value) -> Bytes {
    let mut object = object.clone();
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    Bytes::from(serde_json::to_vec(&object).unwrap_or_default())
}
