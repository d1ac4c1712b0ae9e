//! The kubelet's log endpoint, `GET /containerLogs/<namespace>/<pod>/<container>`, which the API
//! server's `pods/log` proxies to (as the real API server proxies to the real kubelet's port
//! 10250). Served over plain HTTP on 127.0.0.1, on a port written into the Node's
//! `status.daemonEndpoints.kubeletEndpoint.Port`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;

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
            axum::routing::get(logs),
        )
        .with_state(runtime);
    Ok((port, async move {
        let _ = axum::serve(listener, router).await;
    }))
}

async fn logs(
    State(runtime): State<Arc<dyn ContainerRuntime>>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let Some(id) = runtime
        .find_container(
            &namespace,
            &pod,
            &container,
            params.get("previous").is_some_and(|p| p == "true"),
        )
        .await
    else {
        return (
            StatusCode::NOT_FOUND,
            format!(
                "container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating"
            ),
        )
            .into_response();
    };
    let Ok(mut lines) = runtime.container_logs(&id).await else {
        return (
            StatusCode::NOT_FOUND,
            format!("container {container} is not valid for pod {pod}"),
        )
            .into_response();
    };
    if let Some(tail) = params
        .get("tailLines")
        .and_then(|t| t.parse::<usize>().ok())
    {
        let skip = lines.len().saturating_sub(tail);
        lines.drain(..skip);
    }
    let timestamps = params.get("timestamps").is_some_and(|t| t == "true");
    let mut body = String::new();
    for line in lines {
        if timestamps {
            body.push_str(&line.time.strftime("%Y-%m-%dT%H:%M:%S%.9fZ ").to_string());
        }
        body.push_str(&line.text);
        body.push('\n');
    }
    (
        StatusCode::OK,
        [(http::header::CONTENT_TYPE, "text/plain")],
        body,
    )
        .into_response()
}
