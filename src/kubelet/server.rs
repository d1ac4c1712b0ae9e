//! The kubelet's HTTP server, which the API server proxies `pods/log`, `pods/exec` and
//! `pods/portforward` to (as the real API server proxies to the real kubelet's port 10250):
//! `/containerLogs/...` ([`super::logs`]), `/exec/...` ([`super::exec`]) and `/portForward/...`
//! ([`super::portforward`]). Served over plain HTTP on 127.0.0.1, on a port written into the
//! Node's `status.daemonEndpoints.kubeletEndpoint.Port`.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;

use crate::runtime::ContainerRuntime;

/// Starts serving on a free port; returns the port and the server to spawn.
pub(super) async fn serve(
    runtime: Arc<dyn ContainerRuntime>,
) -> std::io::Result<(u16, impl Future<Output = ()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
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
            "/portForward/{namespace}/{pod}",
            get(super::portforward::serve).post(super::portforward::serve),
        )
        .with_state(runtime);
    Ok((port, async move {
        let _ = axum::serve(listener, router).await;
    }))
}
