//! Discovery: `/version`, `/api`, `/apis`, each group-version's resource list and aggregated
//! discovery (`apidiscovery.k8s.io/v2`). The OpenAPI documents are [`super::openapi`]'s.

use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use serde_json::{Value, json};

use super::errors::ApiError;
use super::json_response;
use super::metrics;
use super::path::Route;
use super::resources::{self, RESOURCES, Resource};
use crate::apimachinery::KUBERNETES_VERSION;

/// apimachinery's `version.Info`, in its Go field order.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct VersionInfo {
    major: &'static str,
    minor: &'static str,
    emulation_major: &'static str,
    emulation_minor: &'static str,
    min_compatibility_major: &'static str,
    min_compatibility_minor: &'static str,
    git_version: &'static str,
    git_commit: &'static str,
    git_tree_state: &'static str,
    build_date: &'static str,
    go_version: &'static str,
    compiler: &'static str,
    platform: &'static str,
}

/// `/version`, as kube-apiserver writes it: indented (Go's `json.MarshalIndent`), in Go's field
/// order, with no newline at the end.
pub(crate) fn version() -> Response {
    let info = VersionInfo {
        major: "1",
        minor: "33",
        emulation_major: "1",
        emulation_minor: "33",
        min_compatibility_major: "1",
        min_compatibility_minor: "32",
        git_version: KUBERNETES_VERSION,
        git_commit: "orrery",
        git_tree_state: "clean",
        build_date: "2026-01-01T00:00:00Z",
        go_version: "rust",
        compiler: "rustc",
        platform: "linux/amd64",
    };
    let body = serde_json::to_vec_pretty(&info).expect("plain strings serialise");
    (
        http::StatusCode::OK,
        [(http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

fn api_resource(r: &Resource) -> Vec<Value> {
    let mut out = vec![json!({
        "name": r.plural,
        "singularName": r.singular,
        "namespaced": r.namespaced,
        "kind": r.kind,
        "verbs": r.verbs(),
        "shortNames": r.short_names,
        "categories": r.categories,
    })];
    for sub in r.subresources {
        let (group, version, kind) = resources::subresource_kind(r, sub);
        let mut entry = json!({
            "name": format!("{}/{sub}", r.plural),
            "singularName": "",
            "namespaced": r.namespaced,
            "kind": kind,
            "verbs": resources::verbs(sub),
        });
        if *sub == "scale" || *sub == "eviction" {
            entry["group"] = json!(group);
            entry["version"] = json!(version);
        }
        out.push(entry);
    }
    out
}

/// The built-in resources, then the custom ones.
fn all(custom: &[&'static Resource]) -> impl Iterator<Item = &'static Resource> {
    RESOURCES.iter().chain(custom.iter().copied())
}

fn resource_list(group: &str, version: &str, custom: &[&'static Resource]) -> Option<Value> {
    let served: Vec<&Resource> = all(custom)
        .filter(|r| r.group == group && r.version == version)
        .collect();
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    let resources: Vec<Value> = if group_version == metrics::GROUP_VERSION {
        metrics::RESOURCES
            .iter()
            .map(|(plural, singular, kind, namespaced)| {
                json!({"name": plural, "singularName": singular, "namespaced": namespaced, "kind": kind, "verbs": metrics::VERBS})
            })
            .collect()
    } else if served.is_empty() {
        return None;
    } else {
        served.iter().flat_map(|r| api_resource(r)).collect()
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
}

/// The named groups with their versions, the preferred first: the served resources' groups,
/// then the aggregated `metrics.k8s.io` (listed last, as aggregated groups are).
fn groups(custom: &[&'static Resource]) -> Vec<(&'static str, Vec<&'static str>)> {
    let mut groups = resources::groups();
    // A CRD's group comes after the built-in ones, its versions in the CRD's order.
    for r in custom {
        match groups.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) if !versions.contains(&r.version) => versions.push(r.version),
            Some(_) => {}
            None => groups.push((r.group, vec![r.version])),
        }
    }
    let (group, version) = metrics::GROUP_VERSION
        .split_once('/')
        .expect("group/version");
    groups.push((group, vec![version]));
    groups
}

fn api_group(group: &str, versions: &[&str]) -> Value {
    let gv =
        |version: &str| json!({"groupVersion": format!("{group}/{version}"), "version": version});
    json!({
        "name": group,
        "versions": versions.iter().map(|v| gv(v)).collect::<Vec<_>>(),
        "preferredVersion": gv(versions[0]),
    })
}

fn aggregated_version(group: &str, version: &str, custom: &[&'static Resource]) -> Value {
    if format!("{group}/{version}") == metrics::GROUP_VERSION {
        let resources: Vec<Value> = metrics::RESOURCES
            .iter()
            .map(|(plural, _, kind, namespaced)| {
                json!({
                    "resource": plural,
                    "responseKind": {"group": group, "version": version, "kind": kind},
                    "scope": if *namespaced { "Namespaced" } else { "Cluster" },
                    "singularResource": plural.trim_end_matches('s'),
                    "verbs": metrics::VERBS,
                })
            })
            .collect();
        return json!({"version": version, "resources": resources, "freshness": "Current"});
    }
    let resources: Vec<Value> = all(custom)
        .filter(|r| r.group == group && r.version == version)
        .map(|r| {
            let subresources: Vec<Value> = r
                .subresources
                .iter()
                .map(|sub| {
                    let (g, v, k) = resources::subresource_kind(r, sub);
                    json!({"subresource": sub, "responseKind": {"group": g, "version": v, "kind": k}, "verbs": resources::verbs(sub)})
                })
                .collect();
            let mut entry = json!({
                "resource": r.plural,
                "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
                "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                "singularResource": r.singular,
                "verbs": r.verbs(),
                "subresources": subresources,
            });
            if !r.short_names.is_empty() {
                entry["shortNames"] = json!(r.short_names);
            }
            if !r.categories.is_empty() {
                entry["categories"] = json!(r.categories);
            }
            entry
        })
        .collect();
    json!({"version": version, "resources": resources, "freshness": "Current"})
}

/// The aggregated discovery document for the core group (`/api`) or the named groups (`/apis`).
fn aggregated(core: bool, custom: &[&'static Resource]) -> Value {
    let groups: Vec<(&str, Vec<&str>)> = if core {
        vec![("", vec!["v1"])]
    } else {
        groups(custom)
    };
    let items: Vec<Value> = groups
        .iter()
        .map(|(group, versions)| {
            let metadata = if group.is_empty() {
                json!({"creationTimestamp": null})
            } else {
                json!({"name": group, "creationTimestamp": null})
            };
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| aggregated_version(group, v, custom))
                .collect();
            json!({"metadata": metadata, "versions": versions})
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

fn wants_aggregated(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| {
            accept.contains("as=APIGroupDiscoveryList") && accept.contains("v=v2")
        })
}

/// Serves a discovery route.
pub(crate) fn serve(
    route: Route,
    headers: &HeaderMap,
    served: &super::apiextensions::served::Served,
) -> Result<Response, ApiError> {
    let custom = &served.resources();
    let ok = |body: Value| json_response(http::StatusCode::OK, &body);
    match route {
        Route::CoreVersions if wants_aggregated(headers) => {
            Ok(aggregated_response(aggregated(true, custom)))
        }
        Route::CoreVersions => Ok(ok(json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}],
        }))),
        Route::CoreResources => Ok(ok(resource_list("", "v1", custom).expect("core is served"))),
        Route::Groups if wants_aggregated(headers) => {
            Ok(aggregated_response(aggregated(false, custom)))
        }
        Route::Groups => Ok(ok(json!({
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": groups(custom).iter().map(|(g, v)| api_group(g, v)).collect::<Vec<_>>(),
        }))),
        Route::Group(group) => {
            let (g, v) = groups(custom)
                .into_iter()
                .find(|(g, _)| *g == group)
                .ok_or(ApiError::NoSuchPath)?;
            let mut body = api_group(g, &v);
            body["kind"] = json!("APIGroup");
            body["apiVersion"] = json!("v1");
            Ok(ok(body))
        }
        Route::GroupResources(group, version) => resource_list(&group, &version, custom)
            .map(ok)
            .ok_or(ApiError::NoSuchPath),
        _ => Err(ApiError::NoSuchPath),
    }
}

fn aggregated_response(body: Value) -> Response {
    let mut response = json_response(http::StatusCode::OK, &body);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(AGGREGATED),
    );
    response
}
