//! `pods/log`: as the real API server does, it checks the request against the pod, finds the
//! pod's node and that node's kubelet endpoint (`status.addresses` InternalIP and
//! `status.daemonEndpoints.kubeletEndpoint.Port`), and streams the kubelet's
//! `/containerLogs/<namespace>/<pod>/<container>` answer back as `text/plain`, `follow=true`
//! included, over the API server's TLS connection to the kubelet ([`super::kubelet_client`]).

use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use http_body_util::BodyExt;
use serde_json::Value;

use super::ApiServer;
use super::errors::ApiError;
use super::handlers::{Params, get_object};
use super::resources;

/// The boolean query parameters the kubelet understands: read as the API server reads
/// `PodLogOptions`, and passed on as `true` when set (as kube-apiserver's `LogLocation` does).
const FLAGS: &[&str] = &["follow", "previous", "timestamps"];

/// The other query parameters the kubelet understands, passed through as they are.
const PASSED: &[&str] = &["tailLines", "limitBytes", "sinceSeconds", "sinceTime"];

fn container_names(pod: &Value) -> Vec<String> {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|list| pod["spec"][list].as_array().cloned().unwrap_or_default())
        .filter_map(|c| c["name"].as_str().map(str::to_owned))
        .collect()
}

/// The container a `pods/log` or `pods/exec` request is for, as the real API server picks it:
/// the named one if the pod has it, else the only regular container.
pub(super) fn pick_container(
    pod: &Value,
    name: &str,
    asked: Option<&String>,
) -> Result<String, ApiError> {
    let regular: Vec<String> = pod["spec"]["containers"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    match asked.filter(|c| !c.is_empty()) {
        Some(c) if container_names(pod).contains(c) => Ok(c.clone()),
        Some(c) => Err(ApiError::BadRequest(format!(
            "container {c} is not valid for pod {name}"
        ))),
        None if regular.len() == 1 => Ok(regular[0].clone()),
        None => Err(ApiError::BadRequest(format!(
            "a container name must be specified for pod {name}, choose one of: [{}]",
            container_names(pod).join(" ")
        ))),
    }
}

/// The `host:port` of the kubelet running `pod`, and its node's name.
pub(super) async fn kubelet_of(
    api: &ApiServer,
    pod: &Value,
    name: &str,
) -> Result<(String, String), ApiError> {
    let Some(node_name) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) else {
        return Err(ApiError::BadRequest(format!(
            "pod {name} does not have a host assigned"
        )));
    };
    Ok((kubelet_of_node(api, node_name).await?, node_name.to_owned()))
}

/// The `address:port` of a node's kubelet, from its status (InternalIP and
/// `daemonEndpoints.kubeletEndpoint.Port`).
pub(super) async fn kubelet_of_node(api: &ApiServer, node_name: &str) -> Result<String, ApiError> {
    let nodes = resources::find("", "v1", "nodes").expect("served");
    let node = get_object(api, nodes, None, node_name).await?;
    let address = node["status"]["addresses"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["type"] == "InternalIP"))
        .and_then(|a| a["address"].as_str())
        .unwrap_or("127.0.0.1")
        .to_owned();
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_i64()
        .unwrap_or(0);
    if port == 0 {
        return Err(ApiError::BadRequest(format!(
            "the kubelet on node {node_name} serves nothing yet (no kubelet endpoint in its status)"
        )));
    }
    Ok(format!("{address}:{port}"))
}

/// Serves `GET .../pods/<name>/log`.
pub(crate) async fn serve(
    api: &ApiServer,
    namespace: &str,
    name: &str,
    params: &Params,
) -> Result<Response, ApiError> {
    let pods = resources::find("", "v1", "pods").expect("served");
    let pod = get_object(api, pods, Some(namespace), name).await?;
    let container = pick_container(&pod, name, params.get("container"))?;
    let (kubelet, node_name) = kubelet_of(api, &pod, name).await?;
    let mut query: Vec<String> = FLAGS
        .iter()
        .filter(|k| crate::apimachinery::params::flag(params, k))
        .map(|k| format!("{k}=true"))
        .chain(PASSED.iter().filter_map(|k| {
            params.get(*k).map(|v| {
                format!(
                    "{k}={}",
                    form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
                )
            })
        }))
        .collect();
    query.sort();
    let path = format!(
        "/containerLogs/{namespace}/{name}/{container}{}{}",
        if query.is_empty() { "" } else { "?" },
        query.join("&")
    );
    let url = format!("https://{kubelet}{path}");
    let failed = |e: String| ApiError::Internal(format!("Get \"{url}\": {e}"));
    let request = http::Request::get(&path)
        .header(http::header::HOST, &kubelet)
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let response = tokio::time::timeout(Duration::from_secs(10), async {
        let io = super::kubelet_client::dial(api, &kubelet).await?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|_| ApiError::Timeout(format!("the kubelet on {node_name} did not answer")))?
    .map_err(failed)?;
    let status = response.status();
    if !status.is_success() {
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Err(ApiError::BadRequest(
            String::from_utf8_lossy(&body).trim().to_owned(),
        ));
    }
    let mut answer = Response::new(Body::new(response.into_body()));
    answer.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    Ok(answer)
}
