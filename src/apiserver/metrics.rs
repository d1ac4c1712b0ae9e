//! `metrics.k8s.io/v1beta1`: NodeMetrics and PodMetrics, served from what the metrics server
//! keeps ([`crate::metrics_server::Scraped`]), as kube-apiserver's aggregation layer serves
//! metrics-server's API: `get` and `list` only (a watch is `405 Method Not Allowed`), `503`
//! while the metrics server is stopped, label and field selectors read against the nodes and
//! pods themselves, and objects written as metrics-server writes them (`timestamp`, `window`
//! as a Go duration, CPU in its canonical decimal form, memory as the working set in its
//! canonical binary form, `creationTimestamp` the time of the answer). A pod appears once every
//! container it has running has been measured; a node once it has been read twice.

use std::collections::BTreeMap;

use axum::response::{IntoResponse, Response};
use http::Method;
use serde::Serialize;
use serde_json::Value;

use super::ApiServer;
use super::errors::ApiError;
use super::registry::store::get_object;
use super::resources;
use super::selectors;
use crate::apimachinery::gotypes::go_duration;
use crate::apimachinery::params::Params;
use crate::apimachinery::quantity::{format_binary, format_nano};
use crate::metrics_server::Usage;
use crate::store::RangeRequest;

/// The group and version served.
pub(crate) const GROUP_VERSION: &str = "metrics.k8s.io/v1beta1";

/// What a metrics path addresses.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// `/nodes[/<name>]`.
    Nodes(Option<String>),
    /// `[/namespaces/<ns>]/pods[/<name>]`.
    Pods(Option<String>, Option<String>),
}

/// Routes the part of a path after `/apis/metrics.k8s.io/v1beta1`.
pub(crate) fn route(rest: &[&str]) -> Option<Target> {
    let s = |v: &&str| Some((*v).to_owned());
    match rest {
        ["nodes"] => Some(Target::Nodes(None)),
        ["nodes", name] => Some(Target::Nodes(s(name))),
        ["pods"] => Some(Target::Pods(None, None)),
        ["namespaces", ns, "pods"] => Some(Target::Pods(s(ns), None)),
        ["namespaces", ns, "pods", name] => Some(Target::Pods(s(ns), s(name))),
        _ => None,
    }
}

/// The resources as discovery lists them: (plural, singular, kind, namespaced).
pub(crate) const RESOURCES: [(&str, &str, &str, bool); 2] = [
    ("nodes", "", "NodeMetrics", false),
    ("pods", "", "PodMetrics", true),
];

/// The verbs metrics resources have.
pub(crate) const VERBS: [&str; 2] = ["get", "list"];

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Meta {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<String>,
    creation_timestamp: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct Resources {
    cpu: String,
    memory: String,
}

impl From<&Usage> for Resources {
    fn from(u: &Usage) -> Self {
        Resources {
            cpu: format_nano(u.cpu_nanocores),
            memory: format_binary(u.memory_bytes),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NodeMetrics {
    kind: &'static str,
    api_version: &'static str,
    metadata: Meta,
    timestamp: String,
    window: String,
    usage: Resources,
}

#[derive(Serialize)]
struct ContainerMetrics {
    name: String,
    usage: Resources,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PodMetrics {
    kind: &'static str,
    api_version: &'static str,
    metadata: Meta,
    timestamp: String,
    window: String,
    containers: Vec<ContainerMetrics>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct List<T> {
    kind: &'static str,
    api_version: &'static str,
    metadata: serde_json::Map<String, Value>,
    items: Vec<T>,
}

fn time(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn json<T: Serialize>(body: &T) -> Response {
    (
        [(http::header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(body).unwrap_or_default(),
    )
        .into_response()
}

/// Every stored object of a resource (in one namespace, if given).
async fn stored(
    api: &ApiServer,
    plural: &str,
    namespace: Option<&str>,
) -> Result<Vec<Value>, ApiError> {
    let resource = resources::find("", "v1", plural).expect("served");
    let page = api
        .store()
        .range(&RangeRequest::prefix(resource.key_prefix(namespace)))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    page.kvs.iter().map(super::decode).collect()
}

fn meta(object: &Value, namespaced: bool, now: &str) -> Meta {
    Meta {
        name: object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        namespace: namespaced.then(|| {
            object["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        }),
        creation_timestamp: now.to_owned(),
        labels: selectors::labels_of(object),
    }
}

fn node_metrics(node: &Value, usage: &Usage, now: &str) -> NodeMetrics {
    NodeMetrics {
        kind: "NodeMetrics",
        api_version: GROUP_VERSION,
        metadata: meta(node, false, now),
        timestamp: time(usage.timestamp),
        window: go_duration(usage.window),
        usage: usage.into(),
    }
}

fn pod_metrics(pod: &Value, usage: &crate::metrics_server::PodUsage, now: &str) -> PodMetrics {
    // In the pod's order of containers, as the kubelet lists them.
    let order: Vec<&str> = pod["spec"]["containers"]
        .as_array()
        .map(|c| c.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default();
    let mut containers: Vec<(&String, &Usage)> = usage.containers.iter().collect();
    containers.sort_by_key(|(name, _)| order.iter().position(|o| o == name).unwrap_or(usize::MAX));
    PodMetrics {
        kind: "PodMetrics",
        api_version: GROUP_VERSION,
        metadata: meta(pod, true, now),
        timestamp: time(usage.timestamp),
        window: go_duration(usage.window),
        containers: containers
            .into_iter()
            .map(|(name, u)| ContainerMetrics {
                name: name.clone(),
                usage: u.into(),
            })
            .collect(),
    }
}

fn not_found(plural: &str, name: &str) -> ApiError {
    ApiError::NotFound {
        resource: format!("{plural}.metrics.k8s.io"),
        name: name.to_owned(),
    }
}

/// Serves one metrics request.
pub(crate) async fn serve(
    api: &ApiServer,
    target: Target,
    method: &Method,
    params: &Params,
) -> Result<Response, ApiError> {
    if method != Method::GET || crate::apimachinery::params::flag(params, "watch") {
        return Err(ApiError::MethodNotAllowed);
    }
    let Some(scraped) = api.metrics().filter(|m| m.available()) else {
        return Err(ApiError::Unavailable(
            "the server is currently unable to handle the request".into(),
        ));
    };
    let now = time(jiff::Timestamp::now());
    match target {
        Target::Nodes(Some(name)) => {
            let nodes = resources::find("", "v1", "nodes").expect("served");
            let node = get_object(api, nodes, None, &name)
                .await
                .map_err(|_| not_found("nodes", &name))?;
            let usage = scraped.nodes();
            let usage = usage.get(&name).ok_or_else(|| not_found("nodes", &name))?;
            Ok(json(&node_metrics(&node, usage, &now)))
        }
        Target::Nodes(None) => {
            let (labels, fields) = selectors::from_params(params, "Node")?;
            let usage = scraped.nodes();
            let items = stored(api, "nodes", None)
                .await?
                .iter()
                .filter(|n| labels.matches_object(n) && fields.matches(n))
                .filter_map(|n| {
                    let name = n["metadata"]["name"].as_str()?;
                    Some(node_metrics(n, usage.get(name)?, &now))
                })
                .collect();
            Ok(json(&List {
                kind: "NodeMetricsList",
                api_version: GROUP_VERSION,
                metadata: Default::default(),
                items,
            }))
        }
        Target::Pods(namespace, Some(name)) => {
            let namespace = namespace.unwrap_or_else(|| "default".into());
            let pods = resources::find("", "v1", "pods").expect("served");
            let pod = get_object(api, pods, Some(&namespace), &name)
                .await
                .map_err(|_| not_found("pods", &name))?;
            let usage = scraped.pods(Some(&namespace));
            let usage = usage
                .get(&(namespace, name.clone()))
                .ok_or_else(|| not_found("pods", &name))?;
            Ok(json(&pod_metrics(&pod, usage, &now)))
        }
        Target::Pods(namespace, None) => {
            let (labels, fields) = selectors::from_params(params, "Pod")?;
            let usage = scraped.pods(namespace.as_deref());
            let items = stored(api, "pods", namespace.as_deref())
                .await?
                .iter()
                .filter(|p| labels.matches_object(p) && fields.matches(p))
                .filter_map(|p| {
                    let key = (
                        p["metadata"]["namespace"].as_str()?.to_owned(),
                        p["metadata"]["name"].as_str()?.to_owned(),
                    );
                    Some(pod_metrics(p, usage.get(&key)?, &now))
                })
                .collect();
            Ok(json(&List {
                kind: "PodMetricsList",
                api_version: GROUP_VERSION,
                metadata: Default::default(),
                items,
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_route_as_metrics_servers() {
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(route(&["nodes"]), Some(Target::Nodes(None)));
        assert_eq!(
            route(&["nodes", "node-1"]),
            Some(Target::Nodes(s("node-1")))
        );
        assert_eq!(route(&["pods"]), Some(Target::Pods(None, None)));
        assert_eq!(
            route(&["namespaces", "default", "pods", "web"]),
            Some(Target::Pods(s("default"), s("web")))
        );
        assert_eq!(route(&["namespaces", "default", "services"]), None);
        assert_eq!(route(&["nodes", "a", "status"]), None);
    }
}
