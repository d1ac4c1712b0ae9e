//! Bounded in-flight requests: kube-apiserver's max-in-flight filter (`WithMaxInFlightLimit`,
//! what API Priority and Fairness replaced, in its smallest form). At most
//! [`MAX_READ_ONLY`] reads (`--max-requests-inflight`) and [`MAX_MUTATING`] writes
//! (`--max-mutating-requests-inflight`) are served at once; one more is answered at once with
//! a 429 and `Retry-After: 1`, in upstream's words and form (`http.Error`: plain text, not a
//! `Status`), so a flood of requests queues nowhere and costs no memory.
//!
//! Not counted, as upstream's long-running check and APF's exempt and system levels keep them
//! going: long-running requests (watches, and the `log`, `exec`, `attach`, `portforward` and
//! `proxy` subresources), the health checks (`/healthz`, `/livez`, `/readyz`), and the
//! cluster's own components, which are in this process (`ApiServer::client`: requests marked
//! [`InProcess`], which no remote client can fake, unlike a user agent). Unlike
//! upstream, `system:masters` is not exempt: the admin's kubeconfig is the only user most
//! Orrery clusters have, and the in-process components already play upstream's loopback
//! client.

use std::sync::Arc;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::auth::InProcess;
use super::path::{self, Route};

/// `--max-requests-inflight`'s default: reads (GET, LIST) served at once.
pub(crate) const MAX_READ_ONLY: usize = 400;
/// `--max-mutating-requests-inflight`'s default: writes served at once.
pub(crate) const MAX_MUTATING: usize = 200;

/// What upstream's `tooManyRequests` writes.
const TOO_MANY: &str = "Too many requests, please try again later.\n";

/// The two pools of places.
pub(crate) struct InFlight {
    read_only: Arc<Semaphore>,
    mutating: Arc<Semaphore>,
}

/// A request's place, held while it is served (none for an exempt request).
pub(crate) struct Slot(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

impl Default for InFlight {
    fn default() -> Self {
        InFlight::new(MAX_READ_ONLY, MAX_MUTATING)
    }
}

impl InFlight {
    /// Pools of `read_only` and `mutating` places.
    pub(crate) fn new(read_only: usize, mutating: usize) -> Self {
        InFlight {
            read_only: Arc::new(Semaphore::new(read_only)),
            mutating: Arc::new(Semaphore::new(mutating)),
        }
    }

    /// A place for `request`, or the refusal to answer it with.
    pub(crate) fn admit(&self, request: &Request) -> Result<Slot, TooMany> {
        if exempt(request) {
            return Ok(Slot(None));
        }
        let pool = match *request.method() {
            http::Method::GET | http::Method::HEAD | http::Method::OPTIONS => &self.read_only,
            _ => &self.mutating,
        };
        pool.clone()
            .try_acquire_owned()
            .map(|permit| Slot(Some(permit)))
            .map_err(|_| TooMany)
    }
}

/// A refused request: upstream's `tooManyRequests`, `http.Error`'s plain text and
/// `Retry-After: 1`.
#[derive(Debug)]
pub(crate) struct TooMany;

impl IntoResponse for TooMany {
    fn into_response(self) -> Response {
        (
            http::StatusCode::TOO_MANY_REQUESTS,
            [
                (http::header::RETRY_AFTER, "1"),
                (http::header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            TOO_MANY,
        )
            .into_response()
    }
}

/// Whether `request` is never counted (see the module's documentation).
fn exempt(request: &Request) -> bool {
    if request.extensions().get::<InProcess>().is_some() {
        return true;
    }
    match path::route(request.uri().path()) {
        Route::Healthz => true,
        Route::Resource(target) => {
            let long_running_sub = target
                .subresource
                .as_deref()
                .is_some_and(|s| matches!(s, "log" | "exec" | "attach" | "portforward" | "proxy"));
            let watch = request.method() == http::Method::GET
                && target.name.is_none()
                && crate::apimachinery::params::flag(
                    &crate::apimachinery::params::parse(request.uri().query().unwrap_or_default()),
                    "watch",
                );
            long_running_sub || watch
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, uri: &str, remote: bool) -> Request {
        let mut request = http::Request::builder()
            .method(method)
            .uri(uri)
            .body(axum::body::Body::empty())
            .unwrap();
        // The administrator, over TLS or in-process.
        let admin = super::super::auth::UserInfo::new("kubernetes-admin", &["system:masters"]);
        request
            .extensions_mut()
            .insert(super::super::Peer::User(Arc::new(admin)));
        if !remote {
            request.extensions_mut().insert(InProcess);
        }
        request
    }

    #[tokio::test]
    async fn a_full_pool_answers_429_and_exempt_requests_pass() {
        let limits = InFlight::new(1, 1);
        let pods = "/api/v1/namespaces/default/pods";
        let held = limits.admit(&request("GET", pods, true)).ok().unwrap();
        let refused = limits
            .admit(&request("GET", pods, true))
            .err()
            .unwrap()
            .into_response();
        assert_eq!(refused.status(), 429);
        assert_eq!(refused.headers()[http::header::RETRY_AFTER], "1");
        let body = axum::body::to_bytes(refused.into_body(), 1024)
            .await
            .unwrap();
        assert_eq!(&body[..], b"Too many requests, please try again later.\n");
        // Writes have a pool of their own.
        let write = limits.admit(&request("POST", pods, true)).ok().unwrap();
        assert!(limits.admit(&request("PATCH", pods, true)).is_err());
        // Never counted: the cluster's own components, health checks, long-running requests.
        for (method, uri, remote) in [
            ("GET", pods, false),
            ("POST", pods, false),
            ("GET", "/healthz", true),
            ("GET", "/readyz?verbose", true),
            ("GET", "/livez", true),
            ("GET", "/api/v1/namespaces/default/pods?watch=true", true),
            (
                "GET",
                "/api/v1/namespaces/default/pods/p/log?follow=true",
                true,
            ),
            (
                "POST",
                "/api/v1/namespaces/default/pods/p/exec?command=sh",
                true,
            ),
            ("GET", "/api/v1/namespaces/default/pods/p/attach", true),
            (
                "POST",
                "/api/v1/namespaces/default/pods/p/portforward",
                true,
            ),
            ("GET", "/api/v1/nodes/n/proxy/stats/summary", true),
        ] {
            assert!(
                limits.admit(&request(method, uri, remote)).is_ok(),
                "{method} {uri}"
            );
        }
        // A served request gives its place back.
        drop((held, write));
        assert!(limits.admit(&request("GET", pods, true)).is_ok());
        assert!(limits.admit(&request("DELETE", pods, true)).is_ok());
    }

    /// The filter in the API server's entry point: with every read place taken, a client's
    /// LIST gets the 429, while the in-process components and the health checks are served.
    #[tokio::test]
    async fn the_api_server_refuses_a_client_once_its_places_are_taken() {
        use tower::ServiceExt;
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn crate::store::Store> = Arc::new(
            crate::store::embedded::EmbeddedStore::open(&dir.path().join("store.redb")).unwrap(),
        );
        let api = super::super::ApiServer::new(store, crate::flow::Flow::new());
        api.bootstrap().await.unwrap();
        let taken = api
            .in_flight
            .read_only
            .clone()
            .try_acquire_many_owned(MAX_READ_ONLY as u32)
            .unwrap();
        let status = |request: Request| {
            let router = api.router();
            async move { router.oneshot(request).await.unwrap().status().as_u16() }
        };
        let namespaces = "/api/v1/namespaces";
        assert_eq!(status(request("GET", namespaces, true)).await, 429);
        assert_eq!(status(request("GET", namespaces, false)).await, 200);
        assert_eq!(status(request("GET", "/readyz", true)).await, 200);
        drop(taken);
        assert_eq!(status(request("GET", namespaces, true)).await, 200);
    }
}
