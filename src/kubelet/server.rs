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

/// What the handlers need to put their hops on the flow: the bus and the node's name.
#[derive(Clone)]
pub(super) struct Hops {
    pub(super) flow: crate::flow::Flow,
    pub(super) node: String,
}

/// Starts serving on a free port; returns the port and the server to spawn.
pub(super) async fn serve(
    runtime: Arc<dyn ContainerRuntime>,
    hops: Hops,
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
        .layer(axum::Extension(hops))
        .with_state(runtime);
    Ok((port, async move {
        let _ = axum::serve(listener, router).await;
    }))
}
