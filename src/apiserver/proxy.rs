//! `pods/exec`, `pods/portforward` and `nodes/proxy`: as kube-apiserver does, the API server checks the request
//! against the pod (the container, like `pods/log`; a node assigned), finds the node's kubelet
//! endpoint, and proxies the connection upgrade: it sends the same request to the kubelet's
//! `/exec/<namespace>/<pod>/<container>` or `/portForward/<namespace>/<pod>` with the client's
//! `Connection`, `Upgrade`, `Sec-WebSocket-*` and `X-Stream-Protocol-Version` headers, and when
//! the kubelet answers `101 Switching Protocols` it answers the client the same, then copies
//! bytes both ways between the two upgraded connections (kube-apiserver's
//! `UpgradeAwareHandler`). Any other answer from the kubelet is passed back as it is, which is
//! how kubectl shows the kubelet's words (`unable to upgrade connection: container not found
//! ("x")`). The proxy knows no protocol: WebSocket channels and SPDY pass through untouched.
//! It reaches the kubelet over TLS with its kubelet client certificate ([`super::kubelet_client`]).

use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use http::header::{
    CONNECTION, HOST, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{HeaderName, StatusCode};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;

use super::ApiServer;
use super::errors::ApiError;
use super::logs::{kubelet_of, kubelet_of_node, pick_container};
use super::registry::store::get_object;
use super::resources;

/// The request headers an upgrade needs, passed to the kubelet.
const PASSED: [HeaderName; 5] = [
    CONNECTION,
    UPGRADE,
    SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_VERSION,
    SEC_WEBSOCKET_PROTOCOL,
];

/// The kubelet path and query for an exec or an attach (`endpoint`): the container moves from
/// the query into the path.
fn exec_path(
    endpoint: &str,
    namespace: &str,
    name: &str,
    query: &str,
    pod: &serde_json::Value,
) -> Result<String, ApiError> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let asked = pairs
        .iter()
        .find(|(k, _)| k == "container")
        .map(|(_, v)| v.clone());
    let container = pick_container(pod, name, asked.as_ref())?;
    // As kube-apiserver's `streamLocation`: the streams read as `PodExecOptions` reads them,
    // passed on under the kubelet's names (`input`, `output`, `error`, `tty`) as `1` when set;
    // the command words in order.
    let params = crate::apimachinery::params::parse(query);
    let mut rest = form_urlencoded::Serializer::new(String::new());
    for (option, kubelet) in [
        ("stdin", "input"),
        ("stdout", "output"),
        ("stderr", "error"),
        ("tty", "tty"),
    ] {
        if crate::apimachinery::params::flag(&params, option) {
            rest.append_pair(kubelet, "1");
        }
    }
    for (_, v) in pairs.iter().filter(|(k, _)| k == "command") {
        rest.append_pair("command", v);
    }
    Ok(format!(
        "/{endpoint}/{namespace}/{name}/{container}?{}",
        rest.finish()
    ))
}

/// Serves `pods/exec`, `pods/attach` and `pods/portforward` (GET or POST, with an upgrade).
pub(crate) async fn serve(
    api: &ApiServer,
    namespace: &str,
    name: &str,
    subresource: &str,
    request: Request,
) -> Result<Response, ApiError> {
    let pods = resources::find("", "v1", "pods").expect("served");
    let pod = get_object(api, pods, Some(namespace), name).await?;
    let query = request.uri().query().unwrap_or_default().to_owned();
    let path = match subresource {
        "exec" => exec_path("exec", namespace, name, &query, &pod)?,
        "attach" => exec_path("attach", namespace, name, &query, &pod)?,
        _ => format!("/portForward/{namespace}/{name}?{query}"),
    };
    let (kubelet, node_name) = kubelet_of(api, &pod, name).await?;
    forward(api, &kubelet, &node_name, &path, request, Bytes::new()).await
}

/// The most of a request's body `nodes/proxy` passes on.
const MAX_PROXIED_BODY: usize = 3 << 20;

/// Serves `nodes/<name>/proxy/<path>`, any method: the kubelet's own endpoints
/// (`/stats/summary`, `/metrics/resource`, `/containerLogs/...`), reached as kube-apiserver's
/// node proxy reaches them, with the path after `proxy` and the query passed on.
pub(crate) async fn serve_node(
    api: &ApiServer,
    node_name: &str,
    request: Request,
) -> Result<Response, ApiError> {
    let prefix = format!("/api/v1/nodes/{node_name}/proxy");
    let rest = request
        .uri()
        .path()
        .strip_prefix(&prefix)
        .unwrap_or_default();
    let mut path = if rest.starts_with('/') {
        rest.to_owned()
    } else {
        format!("/{rest}")
    };
    if let Some(query) = request.uri().query() {
        path = format!("{path}?{query}");
    }
    let kubelet = kubelet_of_node(api, node_name).await?;
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, MAX_PROXIED_BODY)
        .await
        .map_err(|e| ApiError::BadRequest(format!("reading the request body: {e}")))?;
    let request = Request::from_parts(parts, Body::empty());
    forward(api, &kubelet, node_name, &path, request, body).await
}

/// Sends `request` (its method, upgrade headers and `body`) to `path` on the kubelet at
/// `kubelet`: an upgrade answered `101` joins the two connections, any other answer comes back
/// as it is.
async fn forward(
    api: &ApiServer,
    kubelet: &str,
    node_name: &str,
    path: &str,
    mut request: Request,
    body: Bytes,
) -> Result<Response, ApiError> {
    let dial = |e: String| ApiError::Internal(format!("error dialing backend: {e}"));
    let stream = super::kubelet_client::dial(api, kubelet)
        .await
        .map_err(dial)?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(stream)
        .await
        .map_err(|e| dial(e.to_string()))?;
    tokio::spawn(connection.with_upgrades());
    let mut upstream = http::Request::builder()
        .method(request.method())
        .uri(path)
        .header(HOST, kubelet);
    for (header, value) in request.headers() {
        if PASSED.contains(header)
            || header.as_str() == "x-stream-protocol-version"
            || (header == http::header::CONTENT_TYPE && !body.is_empty())
        {
            upstream = upstream.header(header, value);
        }
    }
    let upstream = upstream
        .body(http_body_util::Full::new(body))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(upstream))
        .await
        .map_err(|_| ApiError::Timeout(format!("the kubelet on {node_name} did not answer")))?
        .map_err(|e| dial(e.to_string()))?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        let status = response.status();
        let content_type = response.headers().get(http::header::CONTENT_TYPE).cloned();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let mut answer = Response::new(Body::from(body));
        *answer.status_mut() = status;
        if let Some(content_type) = content_type {
            answer
                .headers_mut()
                .insert(http::header::CONTENT_TYPE, content_type);
        }
        return Ok(answer);
    }
    let client = hyper::upgrade::on(&mut request);
    let backend = hyper::upgrade::on(&mut response);
    tokio::spawn(async move {
        let (client, backend) = tokio::join!(client, backend);
        match (client, backend) {
            (Ok(client), Ok(backend)) => {
                let (mut client, mut backend) = (TokioIo::new(client), TokioIo::new(backend));
                let _ = tokio::io::copy_bidirectional(&mut client, &mut backend).await;
            }
            (client, backend) => tracing::debug!(
                client = ?client.err(),
                backend = ?backend.err(),
                "upgrade to the kubelet failed"
            ),
        }
    });
    let mut answer = Response::new(Body::empty());
    *answer.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    for (header, value) in response.headers() {
        answer.headers_mut().append(header, value.clone());
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn exec_paths_name_the_container() {
        let pod = json!({"spec": {"containers": [{"name": "app"}, {"name": "side"}]}});
        assert_eq!(
            exec_path(
                "exec",
                "ns",
                "p",
                "command=sh&command=-c&command=exit+3&container=side&stdout=true&stdin=True&tty=0&stderr=false",
                &pod
            )
            .unwrap(),
            "/exec/ns/p/side?input=1&output=1&command=sh&command=-c&command=exit+3"
        );
        assert_eq!(
            exec_path("exec", "ns", "p", "command=ls&container=nope", &pod)
                .unwrap_err()
                .to_string(),
            ApiError::BadRequest("container nope is not valid for pod p".into()).to_string()
        );
        let single = json!({"spec": {"containers": [{"name": "app"}]}});
        assert_eq!(
            exec_path("exec", "ns", "p", "command=ls", &single).unwrap(),
            "/exec/ns/p/app?command=ls"
        );
        // An attach names no command; an ephemeral container is a container of the pod.
        let debugged = json!({"spec": {"containers": [{"name": "app"}], "ephemeralContainers": [{"name": "debugger"}]}});
        assert_eq!(
            exec_path(
                "attach",
                "ns",
                "p",
                "container=debugger&stdin=true&stdout=true&tty=true",
                &debugged
            )
            .unwrap(),
            "/attach/ns/p/debugger?input=1&output=1&tty=1"
        );
    }
}
