//! `pods/log`: as the real API server does, it checks the request against the pod, finds the
//! pod's node and that node's kubelet endpoint (`status.addresses` InternalIP and
//! `status.daemonEndpoints.kubeletEndpoint.Port`), and streams the kubelet's
//! `/containerLogs/<namespace>/<pod>/<container>` answer back as `text/plain`, `follow=true`
//! included, over the API server's TLS connection to the kubelet ([`super::kubelet_client`]).

use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use http_body_util::BodyExt;
use serde_json::{Value, json};

use super::ApiServer;
use super::errors::{ApiError, Cause};
use super::handlers::Params;
use super::registry::store::get_object;
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

/// `PodLogOptions` as kube-apiserver decodes them from the query (a number that does not parse
/// is a 400 in `strconv`'s words) and validates them (`ValidatePodLogOptions`: a 422 about
/// `PodLogOptions "<pod>"`), before the kubelet is asked anything.
fn validate(name: &str, params: &Params) -> Result<(), ApiError> {
    let number = |k: &str| -> Result<Option<i64>, ApiError> {
        let Some(v) = params.get(k) else {
            return Ok(None);
        };
        v.parse::<i64>().map(Some).map_err(|e| {
            let why = match e.kind() {
                std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                    "value out of range"
                }
                _ => "invalid syntax",
            };
            ApiError::BadRequest(format!("strconv.ParseInt: parsing {v:?}: {why}"))
        })
    };
    let mut causes = Vec::new();
    if let Some(lines) = number("tailLines")?
        && lines < 0
    {
        causes.push(Cause::invalid(
            "tailLines",
            &json!(lines),
            "must be greater than or equal to 0",
        ));
    }
    if let Some(bytes) = number("limitBytes")?
        && bytes < 1
    {
        causes.push(Cause::invalid(
            "limitBytes",
            &json!(bytes),
            "must be greater than 0",
        ));
    }
    let since_time = params.get("sinceTime");
    if let Some(time) = since_time
        && time.parse::<jiff::Timestamp>().is_err()
    {
        return Err(ApiError::BadRequest(format!(
            "parsing time {time:?} as \"2006-01-02T15:04:05Z07:00\": cannot parse {time:?} as \"2006\""
        )));
    }
    match (number("sinceSeconds")?, since_time) {
        (Some(_), Some(_)) => causes.push(Cause::forbidden(
            "",
            "at most one of `sinceTime` or `sinceSeconds` may be specified",
        )),
        (Some(seconds), None) if seconds < 1 => causes.push(Cause::invalid(
            "sinceSeconds",
            &json!(seconds),
            "must be greater than 0",
        )),
        _ => {}
    }
    if causes.is_empty() {
        return Ok(());
    }
    Err(ApiError::Invalid {
        group: String::new(),
        kind: "PodLogOptions".into(),
        name: name.into(),
        causes,
    })
}

/// A path segment as a URL carries it (`%2F` for `/`, `%20` for a space).
fn segment(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
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
    validate(name, params)?;
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
        "/containerLogs/{}/{}/{}{}{}",
        segment(namespace),
        segment(name),
        segment(&container),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_options_are_validated_as_upstreams() {
        let check = |query: &str| {
            validate("p", &crate::apimachinery::params::parse(query))
                .err()
                .map(|e| (e.code().as_u16(), e.to_string()))
        };
        assert_eq!(check("sinceSeconds=10&tailLines=0&limitBytes=1"), None);
        assert_eq!(check(&format!("sinceSeconds={}", i64::MAX)), None);
        assert_eq!(
            check(&format!("sinceSeconds={}", i64::MIN)),
            Some((
                422,
                format!(
                    "PodLogOptions \"p\" is invalid: sinceSeconds: Invalid value: {}: must be greater than 0",
                    i64::MIN
                )
            ))
        );
        assert_eq!(
            check("sinceSeconds=99999999999999999999"),
            Some((
                400,
                "strconv.ParseInt: parsing \"99999999999999999999\": value out of range".into()
            ))
        );
        assert_eq!(
            check("tailLines=-1&limitBytes=0"),
            Some((
                422,
                "PodLogOptions \"p\" is invalid: [tailLines: Invalid value: -1: must be greater than or equal to 0, limitBytes: Invalid value: 0: must be greater than 0]".into()
            ))
        );
        assert_eq!(check("sinceTime=a%20b").unwrap().0, 400);
        assert_eq!(
            check("sinceSeconds=1&sinceTime=2023-11-14T22:13:24Z")
                .unwrap()
                .1,
            "PodLogOptions \"p\" is invalid: : Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified"
        );
        assert_eq!(segment("a b&c/d"), "a%20b%26c%2Fd");
    }
}
