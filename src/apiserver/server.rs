//! Serves the router over HTTPS on 127.0.0.1 ([`crate::https`]: TLS with client certificates,
//! HTTP/1.1 and HTTP/2, kube-apiserver's timeouts and accept back-off), with the client's
//! certificate's user passed to the router as a [`Peer`].

use std::future::Future;

use axum::Router;
use tokio::net::TcpListener;
use tower::ServiceExt;

use super::Peer;
use crate::https::{self, Timeouts};
use crate::pki::ServerTls;

/// Accepts connections until `shutdown` completes, then stops accepting (open connections end
/// with the process), with kube-apiserver's timeouts.
pub async fn serve(
    listener: TcpListener,
    tls: ServerTls,
    router: Router,
    shutdown: impl Future<Output = ()>,
) {
    serve_with(listener, tls, Timeouts::default(), router, shutdown).await
}

/// [`serve`] with the given timeouts.
pub async fn serve_with(
    listener: TcpListener,
    tls: ServerTls,
    timeouts: Timeouts,
    router: Router,
    shutdown: impl Future<Output = ()>,
) {
    let handler = move |identity: Option<std::sync::Arc<crate::pki::Identity>>,
                        mut request: http::Request<axum::body::Body>| {
        // Trusted only if signed by the cluster's CA; another certificate is bad credentials
        // (401), and none at all is `system:anonymous`.
        let untrusted = request
            .extensions()
            .get::<https::UntrustedCertificate>()
            .is_some();
        let peer = match identity {
            Some(identity) => Peer::User(std::sync::Arc::new(super::auth::certificate_user(
                &identity,
            ))),
            None if untrusted => Peer::Untrusted,
            None => Peer::Anonymous,
        };
        request.extensions_mut().insert(peer);
        let router = router.clone();
        Box::pin(async move {
            match router.oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            }
        }) as futures::future::BoxFuture<'static, _>
    };
    https::serve(listener, tls, timeouts, handler, shutdown).await
}
