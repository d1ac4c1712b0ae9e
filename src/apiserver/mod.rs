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
pub(crate) mod apiextensions;
mod apply;
pub mod auth;
mod body;
mod certificates;
mod constraints;
pub mod decisions;
mod discovery;
pub(crate) mod errors;
mod eviction;
pub(crate) mod follow;
mod handlers;
mod inflight;
pub mod kubeconfig;
mod kubelet_client;
mod limitranger;
mod logs;
mod metrics;
mod noderestriction;
mod openapi;
mod orrery;
mod owners;
mod patch;
mod path;
mod podsecurity;
mod protobuf;
mod proxy;
mod quota;
mod registry;
mod reported;
pub(crate) mod resources;
mod selectors;
pub mod server;
pub(crate) mod serviceaccount;
pub(crate) mod storage;
mod tables;
mod validation;
mod watch;
pub(crate) mod webhook;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::flow::{Flow, FlowEvent};
use crate::store::{KeyValue, Store};
use errors::ApiError;

/// The namespaces a new cluster starts with.
pub const SYSTEM_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

pub use auth::Peer;

/// Who a request is from and why it was allowed, put on the request once authorized: the
/// handlers name the user in the flow and check what the user may grant.
#[derive(Clone, Debug)]
pub(crate) struct Authorized {
    pub(crate) user: Arc<auth::UserInfo>,
    pub(crate) reason: String,
}

/// What stopped the API server from creating a new cluster's first objects.
#[derive(Debug, thiserror::Error)]
#[error("cannot create {object}: {message}")]
pub struct BootstrapError {
    object: String,
    message: String,
}

/// Recently listed objects, encoded: what makes repeated LISTs of many objects cheap, as the real
/// API server's watch cache does. Entries are keyed by store key and valid for one revision; the
/// whole cache is dropped when it grows past its budget.
#[derive(Default)]
pub(crate) struct ListCache {
    entries: std::collections::HashMap<String, (crate::store::Revision, Arc<RawObject>)>,
    bytes: usize,
}

const LIST_CACHE_BYTES: usize = 64 << 20;

impl ListCache {
    pub(crate) fn get(&self, kv: &KeyValue) -> Option<Arc<RawObject>> {
        self.entries
            .get(&kv.key)
            .filter(|(rev, _)| *rev == kv.mod_revision)
            .map(|(_, o)| o.clone())
    }

    pub(crate) fn put(&mut self, kv: &KeyValue, object: Arc<RawObject>) {
        self.bytes += object.json.len() + kv.key.len();
        if self.bytes > LIST_CACHE_BYTES {
            self.entries.clear();
            self.bytes = object.json.len() + kv.key.len();
        }
        self.entries
            .insert(kv.key.clone(), (kv.mod_revision, object));
    }
}

/// The API server's shared state.
pub struct ApiServer {
    list_cache: std::sync::Mutex<ListCache>,
    store: Arc<dyn Store>,
    flow: Flow,
    /// Whether the Kubernetes API answers (`orrery component stop apiserver` turns it off);
    /// open watches end when it goes off, as a stopped kube-apiserver's connections do.
    serving: tokio::sync::watch::Sender<bool>,
    /// The cluster's components, for `/orrery/v1/components` and `/orrery/v1/nodes`.
    supervisor: std::sync::OnceLock<Arc<crate::supervisor::Supervisor>>,
    /// Its TLS towards the kubelets (`--kubelet-client-certificate`).
    kubelet_client: std::sync::OnceLock<Arc<rustls::ClientConfig>>,
    /// What the metrics server keeps, which `metrics.k8s.io` is served from (the aggregated
    /// API's backend, in-process).
    metrics: std::sync::OnceLock<Arc<crate::metrics_server::Scraped>>,
    /// What the DefaultTolerationSeconds admission plugin gives new pods: seconds for the
    /// `not-ready` and `unreachable` NoExecute taints.
    toleration_seconds: std::sync::atomic::AtomicU64,
    /// The scheduler's latest decision per pod, followed from the flow.
    decisions: Arc<decisions::Decisions>,
    /// The highest revision whose store write is on the flow: a watch delivery of a revision
    /// waits for it, so the flow shows the write before the watchers hear of it.
    announced: tokio::sync::watch::Sender<crate::store::Revision>,
    /// Who may do what.
    authorizer: auth::Authorizer,
    /// Which namespaces have ResourceQuotas and LimitRanges.
    constraints: constraints::Constraints,
    /// The service account token keys (`--service-account-signing-key-file`).
    tokens: std::sync::OnceLock<auth::tokens::Tokens>,
    /// The places for requests served at once ([`inflight`]).
    in_flight: inflight::InFlight,
    /// The admission webhook configurations ([`webhook`]).
    webhooks: webhook::Webhooks,
    /// The CustomResourceDefinitions, and what they serve.
    crds: apiextensions::served::Crds,
    /// The workload objects' owners, which name each write's story ([`owners`]).
    owners: owners::Owners,
}

impl ApiServer {
    /// An API server over `store`, reporting to `flow`.
    pub fn new(store: Arc<dyn Store>, flow: Flow) -> Arc<Self> {
        let decisions = Arc::new(decisions::Decisions::default());
        decisions.follow(&flow);
        Arc::new(ApiServer {
            list_cache: Default::default(),
            store: Arc::new(reported::Reported::new(store, flow.clone())),
            flow,
            serving: tokio::sync::watch::Sender::new(true),
            supervisor: std::sync::OnceLock::new(),
            kubelet_client: std::sync::OnceLock::new(),
            metrics: std::sync::OnceLock::new(),
            toleration_seconds: std::sync::atomic::AtomicU64::new(pack_toleration_seconds(
                300, 300,
            )),
            decisions,
            announced: tokio::sync::watch::Sender::new(0),
            authorizer: auth::Authorizer::new(),
            constraints: constraints::Constraints::default(),
            tokens: std::sync::OnceLock::new(),
            in_flight: inflight::InFlight::default(),
            webhooks: webhook::Webhooks::default(),
            crds: Default::default(),
            owners: Default::default(),
        })
    }

    /// Hands the API server its service account key (a PKCS#8 EC private key and its public
    /// key, PEM), without which it neither issues nor accepts service account tokens. Only the
    /// first call counts.
    pub fn set_service_account_key(
        &self,
        private_pem: &str,
        public_pem: &str,
    ) -> Result<(), auth::tokens::KeyError> {
        let tokens = auth::tokens::Tokens::new(private_pem, public_pem)?;
        let _ = self.tokens.set(tokens);
        Ok(())
    }

    pub(crate) fn tokens(&self) -> Option<&auth::tokens::Tokens> {
        self.tokens.get()
    }

    /// Who may do what: the authorizer every request passes.
    pub fn authorizer(&self) -> &auth::Authorizer {
        &self.authorizer
    }

    /// Notes that this API server wrote an object of `kind` at `revision`, for what follows
    /// objects from the store (the authorizers, [`constraints`]) to wait for when it must.
    pub(crate) fn written(&self, kind: &str, revision: crate::store::Revision) {
        self.authorizer.written(kind, revision);
        self.constraints.written(kind, revision);
        self.webhooks.written(kind, revision);
        self.crds.written(kind, revision);
        self.owners.written(kind, revision);
    }

    /// The object at the root of `object`'s owner references, which names its story in the
    /// flow (`Deployment/web` for a pod of that Deployment's ReplicaSet).
    pub(crate) async fn root_owner(&self, object: &Value) -> String {
        self.owners.root(&self.store, object).await
    }

    /// The CustomResourceDefinitions followed from the store.
    pub(crate) fn crds(&self) -> &apiextensions::served::Crds {
        &self.crds
    }

    /// What the established CRDs serve now (nothing until they are first listed, which
    /// [`ApiServer::bootstrap`] does).
    pub(crate) async fn custom_resources(&self) -> std::sync::Arc<apiextensions::served::Served> {
        self.crds.definitions(&self.store).await.served()
    }

    /// The admission webhooks' configurations.
    pub(crate) fn webhooks(&self) -> &webhook::Webhooks {
        &self.webhooks
    }

    /// Whether `namespace` has an object of `kind` (a ResourceQuota, a LimitRange).
    pub(crate) async fn constrained(&self, kind: constraints::Constraint, namespace: &str) -> bool {
        self.constraints.any(&self.store, kind, namespace).await
    }

    pub(crate) fn store_arc(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// Notes that the store write at `revision` is on the flow.
    pub(crate) fn announced(&self, revision: crate::store::Revision) {
        self.announced.send_if_modified(|r| {
            let later = revision > *r;
            if later {
                *r = revision;
            }
            later
        });
    }

    /// Waits (briefly, at most [`ANNOUNCE_WAIT`]) until the store write at `revision` is on the
    /// flow.
    pub(crate) async fn announced_by(&self, revision: crate::store::Revision) {
        if *self.announced.borrow() >= revision {
            return;
        }
        let mut announced = self.announced.subscribe();
        let _ = tokio::time::timeout(ANNOUNCE_WAIT, announced.wait_for(|r| *r >= revision)).await;
    }

    /// The scheduler's latest decisions.
    pub fn decisions(&self) -> &decisions::Decisions {
        &self.decisions
    }

    /// Creates what a new cluster has from the start: the system namespaces.
    pub async fn bootstrap(self: &Arc<Self>) -> Result<(), BootstrapError> {
        // Writes from before this start (a restart on the same store) were never announced on
        // this flow: watches replaying them need not wait for them.
        if let Ok(revision) = self.store.current_revision().await {
            self.announced(revision);
        }
        let namespaces = resources::find("", "v1", "namespaces").expect("namespaces are served");
        for ns in SYSTEM_NAMESPACES {
            let object = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            match registry::store::create_object(
                self,
                namespaces,
                None,
                object,
                Some("kube-apiserver"),
                false,
                &mut Vec::new(),
            )
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
        // The CRDs are listed before the first request, and their controllers start.
        self.crds.definitions(&self.store).await;
        tokio::spawn(apiextensions::controller::run(Arc::downgrade(self)));
        self.bootstrap_policy().await
    }

    /// The `rbac/bootstrap-roles` post-start hook: every default ClusterRole and
    /// ClusterRoleBinding made, or given back what it lost ([`auth::policy::reconcile`]).
    async fn bootstrap_policy(self: &Arc<Self>) -> Result<(), BootstrapError> {
        let group = "rbac.authorization.k8s.io";
        let roles = resources::find(group, "v1", "clusterroles").expect("served");
        let bindings = resources::find(group, "v1", "clusterrolebindings").expect("served");
        let defaults = auth::policy::cluster_roles()
            .into_iter()
            .map(|r| (roles, r))
            .chain(
                auth::policy::cluster_role_bindings()
                    .into_iter()
                    .map(|b| (bindings, b)),
            );
        for (resource, default) in defaults {
            let name = default["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let failed = |e: ApiError| BootstrapError {
                object: format!("{} {name}", resource.singular),
                message: e.to_string(),
            };
            let existing = self
                .store
                .get(&resource.key(None, &name))
                .await
                .map_err(|e| failed(errors::from_store(e, &resource.qualified(), &name)))?;
            let Some(existing) = existing else {
                match registry::store::create_object(
                    self,
                    resource,
                    None,
                    default,
                    Some("kube-apiserver"),
                    false,
                    &mut Vec::new(),
                )
                .await
                {
                    Ok(_) | Err(ApiError::AlreadyExists { .. }) => continue,
                    Err(e) => return Err(failed(e)),
                }
            };
            let existing = decode(&existing).map_err(failed)?;
            if auth::policy::reconcile(&default, &existing).is_none() {
                continue;
            }
            let write = registry::store::Write {
                kind: registry::store::UpdateKind::Main,
                precondition: None,
                allow_create: false,
                manager: Some("kube-apiserver"),
                dry_run: false,
            };
            registry::store::update_object(self, resource, None, &name, write, |current| {
                Ok(auth::policy::reconcile(&default, current).unwrap_or_else(|| current.clone()))
            })
            .await
            .map_err(failed)?;
        }
        Ok(())
    }

    /// Hands the API server the cluster's components, so the control endpoints can stop and
    /// start them. Only the first call counts.
    pub fn set_supervisor(&self, supervisor: Arc<crate::supervisor::Supervisor>) {
        let _ = self.supervisor.set(supervisor);
    }

    pub(crate) fn supervisor(&self) -> Option<&Arc<crate::supervisor::Supervisor>> {
        self.supervisor.get()
    }

    /// Registers the metrics server's data as the backend of `metrics.k8s.io` (as the
    /// aggregation layer registers an APIService). Only the first call counts.
    pub fn set_metrics(&self, scraped: Arc<crate::metrics_server::Scraped>) {
        let _ = self.metrics.set(scraped);
    }

    pub(crate) fn metrics(&self) -> Option<&Arc<crate::metrics_server::Scraped>> {
        self.metrics.get()
    }

    /// Hands the API server its TLS towards the kubelets
    /// ([`crate::pki::Pki::kubelet_client`]), without which `pods/log`, `pods/exec` and
    /// `pods/portforward` cannot reach them. Only the first call counts.
    pub fn set_kubelet_client(&self, config: Arc<rustls::ClientConfig>) {
        let _ = self.kubelet_client.set(config);
    }

    pub(crate) fn kubelet_client(&self) -> Option<Arc<rustls::ClientConfig>> {
        self.kubelet_client.get().cloned()
    }

    /// Sets kube-apiserver's `--default-not-ready-toleration-seconds` and
    /// `--default-unreachable-toleration-seconds`: the `tolerationSeconds` the
    /// DefaultTolerationSeconds admission plugin gives new pods for those NoExecute taints.
    pub fn set_default_toleration_seconds(&self, not_ready: u32, unreachable: u32) {
        self.toleration_seconds.store(
            pack_toleration_seconds(not_ready, unreachable),
            Ordering::SeqCst,
        );
    }

    /// `(not_ready, unreachable)` toleration seconds for new pods.
    pub(crate) fn default_toleration_seconds(&self) -> (u32, u32) {
        let packed = self.toleration_seconds.load(Ordering::SeqCst);
        ((packed >> 32) as u32, packed as u32)
    }

    /// Turns the Kubernetes API on or off (off: every API request gets 503, and every open
    /// watch ends, as the connections of a kube-apiserver that stopped do).
    pub fn set_serving(&self, serving: bool) {
        self.serving.send_replace(serving);
    }

    /// Resolves once the Kubernetes API is off (at once if it is off now).
    pub(crate) fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut serving = self.serving.subscribe();
        async move {
            let _ = serving.wait_for(|on| !*on).await;
        }
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
        self.client_as(component, auth::component_user(component))
    }

    /// [`ApiServer::client`] authenticated as `user`.
    pub fn client_as(self: &Arc<Self>, component: &str, user: auth::UserInfo) -> kube::Client {
        let router = self.router();
        let agent = http::HeaderValue::from_str(&format!("orrery/{component}")).expect("ascii");
        let peer = Peer::User(Arc::new(user));
        let service = tower::ServiceBuilder::new()
            .map_request(move |mut request: http::Request<kube::client::Body>| {
                request
                    .headers_mut()
                    .insert(http::header::USER_AGENT, agent.clone());
                request.extensions_mut().insert(peer.clone());
                request.extensions_mut().insert(auth::InProcess);
                request.map(Body::new)
            })
            .service(router);
        kube::Client::new(service, "default")
    }

    pub(crate) fn store(&self) -> &dyn Store {
        &*self.store
    }

    /// A list item for `kv`, from the cache or freshly encoded.
    /// A stored object as list items need it, from the list cache when it has this revision
    /// (shared, so a hit allocates nothing).
    pub(crate) fn list_item(&self, kv: &KeyValue) -> Result<Arc<RawObject>, ApiError> {
        if let Some(hit) = self
            .list_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(kv)
        {
            return Ok(hit);
        }
        let object = Arc::new(decode_raw(kv)?);
        self.list_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .put(kv, object.clone());
        Ok(object)
    }

    pub(crate) fn emit(&self, event: FlowEvent) {
        self.flow.record(event);
    }
}

/// The longest a watch delivery waits for its write to be on the flow (a write this API server
/// did not make is never announced). The wait is what keeps the flow in true order: without it
/// a watcher (a kubelet) can act on a new object before the write that made it is on the flow.
/// It costs watch latency (debug `bench apiserver`, 100 watchers: p50 ~35 -> ~48 ms).
const ANNOUNCE_WAIT: std::time::Duration = std::time::Duration::from_millis(200);

/// The component a request came from, for the flow: `kubectl`, `controller/x`, or the agent.
fn client_name(request: &Request) -> String {
    agent_name(request.headers())
}

fn agent_name(headers: &http::HeaderMap) -> String {
    let agent = headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("client");
    if let Some(component) = agent.strip_prefix("orrery/") {
        return component.to_owned();
    }
    agent.split('/').next().unwrap_or("client").to_owned()
}

async fn handle(State(api): State<Arc<ApiServer>>, mut request: Request) -> Response {
    let path = request.uri().path().to_owned();
    // A stopped API server serves nothing of the Kubernetes API, and asks no one who they are
    // first (a stopped kube-apiserver refuses the connection); `/orrery/v1` stays up.
    if !*api.serving.borrow() && !path.starts_with("/orrery/v1/") {
        let stopped = ApiError::Unavailable(
            "the API server is stopped (orrery component start apiserver)".into(),
        );
        return refuse(request, stopped.into_response()).await;
    }
    let mut route = path::route(&path);
    if route == path::Route::Unknown && path.starts_with("/apis/") {
        route = path::route_custom(&path, &*api.custom_resources().await);
        if route == path::Route::Unknown {
            // A CRD this server just established may not be followed yet.
            api.crds.caught_up(&api.store).await;
            route = path::route_custom(&path, &*api.custom_resources().await);
        }
    }
    let peer = request.extensions().get::<Peer>().cloned();
    let bearer = auth::bearer(request.headers());
    let user = match auth::authenticate(&api, peer, bearer).await {
        Ok(user) => user,
        Err(e) => return refuse(request, e.into_response()).await,
    };
    let (method, uri) = (request.method().clone(), request.uri().clone());
    let user = match authorize(&api, user, &method, &uri, request.headers(), &route).await {
        Ok(authorized) => authorized,
        Err(refusal) => return refuse(request, refusal).await,
    };
    let rbac_write = matches!(&route, path::Route::Resource(t) if t.resource.group == "rbac.authorization.k8s.io")
        && request.method() != http::Method::GET;
    let requester = user.user.clone();
    request.extensions_mut().insert(user);
    let response = auth::serve_as(requester, serve(&api, path, route, request)).await;
    if rbac_write {
        // The next request is decided by what this one wrote.
        api.authorizer.rbac().caught_up(&api.store).await;
    }
    response
}

/// The most of a refused request's body [`refuse`] reads, and how long it waits for it.
const REFUSED_BODY_LIMIT: usize = 256 << 10;
const REFUSED_BODY_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Answers a request refused before its body was read (503, 401, 403, 404, 429), once the body
/// (up to [`REFUSED_BODY_LIMIT`]) has arrived. Answering first makes HTTP/2 end the client's
/// still-open stream with RST_STREAM(NO_ERROR), which RFC 9113 allows but which some clients
/// (curl 7.88 among them) report as a stream error instead of the answer; Go's HTTP/1 server
/// reads an unread body the same way before it answers.
async fn refuse(request: Request, response: Response) -> Response {
    let body = axum::body::to_bytes(request.into_body(), REFUSED_BODY_LIMIT);
    let _unread = tokio::time::timeout(REFUSED_BODY_WAIT, body).await;
    response
}

/// Impersonation and authorization: as whom does the authenticated `user` ask, and may they.
async fn authorize(
    api: &Arc<ApiServer>,
    user: auth::UserInfo,
    method: &http::Method,
    uri: &http::Uri,
    headers: &http::HeaderMap,
    route: &path::Route,
) -> Result<Authorized, Response> {
    let user = auth::impersonate(api, user, headers)
        .await
        .map_err(IntoResponse::into_response)?;
    let mut attributes =
        auth::Attributes::of(method, uri.path(), uri.query().unwrap_or_default(), route);
    // A websocket GET of exec, attach or port-forward needs `create` too, as upstream checks.
    let connect = attributes.resource_request
        && matches!(
            attributes.subresource.as_str(),
            "exec" | "attach" | "portforward"
        )
        && attributes.verb == "get";
    let mut decision = api
        .authorizer
        .authorize(&api.store, &user, &attributes)
        .await;
    if decision.allowed && connect {
        attributes.verb = "create".into();
        decision = api
            .authorizer
            .authorize(&api.store, &user, &attributes)
            .await;
    }
    if !decision.allowed {
        let refusal = attributes.forbidden(&user, &decision.reason);
        let mut event = FlowEvent::new(agent_name(headers), "apiserver", "FORBIDDEN")
            .object("", &attributes.namespace, &attributes.name)
            .detail(refusal.to_string())
            .data(json!({"user": user, "allowed": false, "reason": decision.reason}));
        if let path::Route::Resource(target) = route {
            event.kind = target.resource.kind.to_owned();
        }
        api.emit(event);
        if headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.starts_with("orrery/"))
        {
            tracing::warn!(user = %user.name, "{refusal}");
        }
        return Err(refusal.into_response());
    }
    Ok(Authorized {
        user: Arc::new(user),
        reason: decision.reason,
    })
}

async fn serve(
    api: &Arc<ApiServer>,
    path: String,
    route: path::Route,
    request: Request,
) -> Response {
    let api = api.clone();
    if let Some(rest) = path.strip_prefix("/orrery/v1/") {
        return orrery::control(&api, rest, request).await;
    }
    let _in_flight = match api.in_flight.admit(&request) {
        Ok(slot) => slot,
        Err(too_many) => return refuse(request, too_many.into_response()).await,
    };
    let started = std::time::Instant::now();
    // What the client asked for (the request line's target), not the absolute URI HTTP/2 gives.
    let uri = request
        .uri()
        .path_and_query()
        .map_or_else(|| path.clone(), ToString::to_string);
    let agent = request
        .headers()
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut verb = request.method().to_string();
    let result = match route {
        path::Route::Version => Ok(discovery::version()),
        path::Route::Healthz => Ok((http::StatusCode::OK, "ok").into_response()),
        path::Route::Resource(target) => {
            if request.method() == http::Method::GET && target.name.is_none() {
                let params =
                    crate::apimachinery::params::parse(request.uri().query().unwrap_or_default());
                let watching = crate::apimachinery::params::flag(&params, "watch");
                verb = if watching { "WATCH" } else { "LIST" }.to_owned();
            }
            let client = client_name(&request);
            handlers::resource(&api, target, request, client).await
        }
        path::Route::Metrics(target) => {
            let params =
                crate::apimachinery::params::parse(request.uri().query().unwrap_or_default());
            if target_is_collection(&target) {
                verb = "LIST".to_owned();
            }
            metrics::serve(&api, target, request.method(), &params).await
        }
        path::Route::Unknown => Ok(refuse(request, ApiError::NoSuchPath.into_response()).await),
        route @ (path::Route::OpenApiIndex | path::Route::OpenApi(_) | path::Route::OpenApiV2) => {
            let definitions = api.crds.definitions(&api.store).await;
            let custom =
                openapi::Custom::of(&definitions.crds(), &definitions.served().resources());
            openapi::serve(&route, request.headers(), request.uri().query(), &custom)
        }
        route => discovery::serve(route, request.headers(), &*api.custom_resources().await),
    };
    let response = result.unwrap_or_else(IntoResponse::into_response);
    // kube-apiserver's request log (httplog, at --v=3), written once the answer's head is
    // known (a streamed answer, `logs -f` say, is logged as it starts). A watch is left out:
    // the real one logs it when it ends, and these end only with their client.
    if verb != "WATCH" {
        api.flow.logs().info(
            crate::complog::Component::ApiServer,
            "HTTP",
            &[
                ("verb", verb.into()),
                ("URI", uri.into()),
                ("latency", format!("{:?}", started.elapsed()).into()),
                ("userAgent", agent.into()),
                ("resp", i64::from(response.status().as_u16()).into()),
            ],
        );
    }
    response
}

fn target_is_collection(target: &metrics::Target) -> bool {
    matches!(
        target,
        metrics::Target::Nodes(None) | metrics::Target::Pods(_, None)
    )
}

fn pack_toleration_seconds(not_ready: u32, unreachable: u32) -> u64 {
    (u64::from(not_ready) << 32) | u64::from(unreachable)
}

/// A JSON response, written as kube-apiserver writes it ([`crate::apimachinery::wire`]).
pub(crate) fn json_response(status: http::StatusCode, body: &Value) -> Response {
    let bytes = crate::apimachinery::wire::body(body);
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

/// A stored object as list items need it: its JSON text with `resourceVersion` set, and the few
/// metadata fields selectors look at. Only the metadata's top level is looked into; every other
/// field is copied as it is, which keeps LISTs of many objects cheap. Stored objects are in Go's
/// field order already; the order is kept, `resourceVersion` goes where `ObjectMeta` has it, and
/// `kind` and `apiVersion` are left out, as kube-apiserver leaves them out of list items.
pub(crate) struct RawObject {
    pub(crate) json: Bytes,
    pub(crate) name: String,
    pub(crate) namespace: String,
    pub(crate) labels: std::collections::BTreeMap<String, String>,
}

/// `ObjectMeta`'s fields that come after `resourceVersion` in Go's order.
const AFTER_RESOURCE_VERSION: &[&str] = &[
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

/// A JSON object's members in the order they are written.
struct Ordered<'a>(Vec<(String, &'a serde_json::value::RawValue)>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for Ordered<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = Ordered<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut members = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    members.push(entry);
                }
                Ok(Ordered(members))
            }
        }
        deserializer.deserialize_map(Members)
    }
}

pub(crate) fn decode_raw(kv: &KeyValue) -> Result<RawObject, ApiError> {
    let bad = |e: serde_json::Error| {
        ApiError::Internal(format!("stored object {} is not JSON: {e}", kv.key))
    };
    let top: Ordered<'_> = serde_json::from_slice(&kv.value).map_err(bad)?;
    let mut json = Vec::with_capacity(kv.value.len() + 32);
    let (mut name, mut namespace, mut labels) = (
        String::new(),
        String::new(),
        std::collections::BTreeMap::new(),
    );
    let mut rv = Vec::new();
    crate::apimachinery::wire::string(&kv.mod_revision.to_string(), &mut rv);
    let mut first = true;
    let member = |json: &mut Vec<u8>, key: &str, first: &mut bool| {
        if !*first {
            json.push(b',');
        }
        *first = false;
        crate::apimachinery::wire::string(key, json);
        json.push(b':');
    };
    json.push(b'{');
    for (key, raw) in &top.0 {
        if key == "kind" || key == "apiVersion" {
            continue;
        }
        member(&mut json, key, &mut first);
        if key != "metadata" {
            json.extend_from_slice(raw.get().as_bytes());
            continue;
        }
        let meta: Ordered<'_> = serde_json::from_str(raw.get()).map_err(bad)?;
        json.push(b'{');
        let mut first_meta = true;
        let mut rv_written = false;
        for (k, v) in &meta.0 {
            match k.as_str() {
                "name" => name = serde_json::from_str(v.get()).map_err(bad)?,
                "namespace" => namespace = serde_json::from_str(v.get()).map_err(bad)?,
                "labels" => labels = serde_json::from_str(v.get()).map_err(bad)?,
                "resourceVersion" => continue,
                _ => {}
            }
            if !rv_written && AFTER_RESOURCE_VERSION.contains(&k.as_str()) {
                member(&mut json, "resourceVersion", &mut first_meta);
                json.extend_from_slice(&rv);
                rv_written = true;
            }
            member(&mut json, k, &mut first_meta);
            json.extend_from_slice(v.get().as_bytes());
        }
        if !rv_written {
            member(&mut json, "resourceVersion", &mut first_meta);
            json.extend_from_slice(&rv);
        }
        json.push(b'}');
    }
    json.push(b'}');
    Ok(RawObject {
        json: Bytes::from(json),
        name,
        namespace,
        labels,
    })
}

/// An object as it is stored: without `resourceVersion`, which is the store's to say, in Go's
/// JSON form (as kube-apiserver would store a JSON object), so list items can be copied out as
/// they are.
/// The object is taken, not copied: a large object's copies are what a write costs.
pub(crate) fn encode(mut object: Value) -> Bytes {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    let mut out = Vec::with_capacity(512);
    crate::apimachinery::wire::write(&object, &mut out);
    Bytes::from(out)
}
