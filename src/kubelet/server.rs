//! The kubelet's HTTPS server, which the API server proxies `pods/log`, `pods/exec`,
//! `pods/portforward` and `nodes/proxy` to, and scrapes for its metrics API (as the real API
//! server and metrics-server reach the real kubelet's port 10250): `/containerLogs/...`
//! ([`super::logs`]), `/exec/...` ([`super::exec`]), `/portForward/...`
//! ([`super::portforward`]), `/stats/summary` and `/metrics/resource` ([`super::stats`]). Served on 127.0.0.1, on a port written into the Node's
//! `status.daemonEndpoints.kubeletEndpoint.Port`, with a serving certificate signed by the
//! cluster's CA ([`crate::pki::Pki::kubelet_serving`]) and [`crate::https`]'s timeouts.
//!
//! Every request, on any path, is authenticated and authorized first, as the real kubelet's
//! filter does with anonymous access off (kubeadm's setting): no client certificate, or one the
//! cluster's CA did not sign, is `401 Unauthorized`; a certificate of the cluster naming anyone
//! but the API server ([`crate::pki::KUBELET_CLIENT_USER`]) is `403 Forbidden (user=..., verb=...,
//! resource=nodes, subresource=proxy)`. The real kubelet asks the API server
//! (SubjectAccessReview) whether the user may use `nodes/proxy`; Orrery has no authorization yet,
//! so its kubelets serve the API server's own identity and no one else.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Method, Response, StatusCode};
use tower::ServiceExt;

use crate::https::{self, Timeouts};
use crate::pki::{Identity, KUBELET_CLIENT_USER, ServerTls};
use crate::runtime::ContainerRuntime;

/// What the handlers need to put their hops on the flow: the bus and the node's name.
#[derive(Clone)]
pub(super) struct Hops {
    pub(super) flow: crate::flow::Flow,
    pub(super) node: String,
}

/// The server's upgraded sessions (exec, port-forward), which run on after the request that
/// opened them: each ends when the server does, as a stopped kubelet's streams end with it.
#[derive(Clone)]
pub(super) struct Sessions(tokio::sync::watch::Receiver<()>);

impl Sessions {
    /// Runs `session` until it ends or the server stops.
    pub(super) async fn run(mut self, session: impl Future<Output = ()>) {
        tokio::select! {
            () = session => {}
            // Nothing is ever sent: this is the server's end (its sender dropped).
            _ = self.0.changed() => {}
        }
    }
}

fn plain(status: StatusCode, message: String) -> Response<Body> {
    let mut response = Response::new(Body::from(message));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The kubelet's answer to a request it will not serve, or `None` if it is the API server's.
/// The verb and subresource are named as the kubelet's authorizer attributes name them.
fn refusal(identity: Option<&Identity>, method: &Method, path: &str) -> Option<Response<Body>> {
    let Some(identity) = identity else {
        return Some(plain(StatusCode::UNAUTHORIZED, "Unauthorized".into()));
    };
    if identity.user == KUBELET_CLIENT_USER {
        return None;
    }
    let verb = match *method {
        Method::POST => "create",
        Method::GET => "get",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "",
    };
    let under = |prefix: &str| {
        path == prefix
            || path
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/'))
    };
    let subresource = if under("/stats") {
        "stats"
    } else if under("/metrics") {
        "metrics"
    } else if under("/logs") {
        "log"
    } else {
        "proxy"
    };
    Some(plain(
        StatusCode::FORBIDDEN,
        format!(
            "Forbidden (user={}, verb={verb}, resource=nodes, subresource={subresource})",
            identity.user
        ),
    ))
}

/// Starts serving on a free port of the node's address; returns the port and the server to spawn.
pub(super) async fn serve(
    runtime: Arc<dyn ContainerRuntime>,
    hops: Hops,
    stats: Arc<super::stats::NodeStats>,
    tls: ServerTls,
    address: std::net::Ipv4Addr,
) -> std::io::Result<(u16, impl Future<Output = ()>)> {
    let listener = tokio::net::TcpListener::bind((address, 0)).await?;
    let port = listener.local_addr()?.port();
    let (alive, sessions) = tokio::sync::watch::channel(());
    let router = Router::new()
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(super::logs::serve),
        )
        .route(
            "/exec/{namespace}/{pod}/{container}",
            get(super::exec::serve).post(super::exec::serve),
        )
        .route(
            "/attach/{namespace}/{pod}/{container}",
            get(super::exec::serve_attach).post(super::exec::serve_attach),
        )
        .route(
            "/portForward/{namespace}/{pod}",
            get(super::portforward::serve).post(super::portforward::serve),
        )
        .route("/stats/summary", get(super::stats::serve_summary))
        .route(
            "/metrics/resource",
            get(super::stats::serve_resource_metrics),
        )
        .layer(axum::Extension(hops))
        .layer(axum::Extension(stats))
        .layer(axum::Extension(Sessions(sessions)))
        .with_state(runtime);
    let handler = move |identity: Option<Arc<Identity>>, request: http::Request<Body>| {
        let router = router.clone();
        Box::pin(async move {
            if let Some(refused) =
                refusal(identity.as_deref(), request.method(), request.uri().path())
            {
                return refused;
            }
            match router.oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            }
        }) as futures::future::BoxFuture<'static, _>
    };
    Ok((port, async move {
        // Held for as long as the server runs: dropping it ends the sessions.
        let _alive = alive;
        https::serve(
            listener,
            tls,
            Timeouts::default(),
            handler,
            std::future::pending(),
        )
        .await
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_api_server_is_served() {
        let who = |user: &str, groups: &[&str]| Identity {
            user: user.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        };
        let apiserver = who(KUBELET_CLIENT_USER, &["kubeadm:cluster-admins"]);
        let admin = who("kubernetes-admin", &["system:masters"]);
        let node = who("system:node:node-2", &["system:nodes"]);
        // Who asks, how, for what, and the refusal (none: served).
        type Case<'a> = (
            Option<&'a Identity>,
            Method,
            &'a str,
            Option<(u16, &'a str)>,
        );
        let cases: [Case<'_>; 9] = [
            (Some(&apiserver), Method::GET, "/containerLogs/ns/p/c", None),
            (Some(&apiserver), Method::POST, "/exec/ns/p/c", None),
            (Some(&apiserver), Method::GET, "/no/such/path", None),
            (
                None,
                Method::GET,
                "/containerLogs/ns/p/c",
                Some((401, "Unauthorized")),
            ),
            (
                None,
                Method::POST,
                "/portForward/ns/p",
                Some((401, "Unauthorized")),
            ),
            (
                Some(&admin),
                Method::POST,
                "/exec/ns/p/c",
                Some((
                    403,
                    "Forbidden (user=kubernetes-admin, verb=create, resource=nodes, subresource=proxy)",
                )),
            ),
            (
                Some(&node),
                Method::GET,
                "/containerLogs/ns/p/c",
                Some((
                    403,
                    "Forbidden (user=system:node:node-2, verb=get, resource=nodes, subresource=proxy)",
                )),
            ),
            (
                Some(&admin),
                Method::GET,
                "/stats/summary",
                Some((
                    403,
                    "Forbidden (user=kubernetes-admin, verb=get, resource=nodes, subresource=stats)",
                )),
            ),
            (
                Some(&admin),
                Method::GET,
                "/logsx",
                Some((
                    403,
                    "Forbidden (user=kubernetes-admin, verb=get, resource=nodes, subresource=proxy)",
                )),
            ),
        ];
        for (identity, method, path, expected) in cases {
            let got = refusal(identity, &method, path).map(|r| {
                let status = r.status().as_u16();
                let body =
                    futures::executor::block_on(http_body_util::BodyExt::collect(r.into_body()))
                        .unwrap()
                        .to_bytes();
                (status, String::from_utf8(body.to_vec()).unwrap())
            });
            assert_eq!(
                got,
                expected.map(|(s, m)| (s, m.to_owned())),
                "{method} {path}"
            );
        }
    }
}
