//! Serves the router over HTTPS on 127.0.0.1: TLS with client certificates (rustls), HTTP/1.1
//! and HTTP/2 (hyper), and the client's certificate subject passed to the router as a [`Peer`].

use std::future::Future;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tower::ServiceExt;

use super::Peer;
use super::pki::ServerTls;

/// Accepts connections until `shutdown` completes, then stops accepting (open connections end
/// with the process).
pub async fn serve(
    listener: TcpListener,
    tls: ServerTls,
    router: Router,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config.clone());
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    continue;
                }
            },
        };
        let (acceptor, router, tls_check) = (acceptor.clone(), router.clone(), tls.clone());
        tokio::spawn(async move {
            let tls = match acceptor.accept(stream).await {
                Ok(tls) => tls,
                Err(error) => {
                    tracing::debug!(%error, %remote, "TLS handshake failed");
                    return;
                }
            };
            // Trusted only if signed by the cluster's CA; anything else is anonymous, and 401.
            let peer = tls
                .get_ref()
                .1
                .peer_certificates()
                .filter(|chain| tls_check.authenticate(chain))
                .map(|_| "client-certificate".to_owned());
            let service = hyper::service::service_fn(
                move |mut request: http::Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(Peer(peer.clone()));
                    router.clone().oneshot(request.map(axum::body::Body::new))
                },
            );
            if let Err(error) = auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(%error, %remote, "connection ended with an error");
            }
        });
    }
}
