//! Parses request paths the way the real API server routes them: discovery paths, and
//! `/api/v1/...` or `/apis/<group>/<version>/...` resource paths, namespaced or not, with an
//! optional object name and subresource.

use super::resources::{self, Resource};

/// What a request path addresses.
#[derive(Debug, PartialEq)]
pub(crate) enum Route {
    Version,
    Healthz,
    /// `/api`
    CoreVersions,
    /// `/api/v1`
    CoreResources,
    /// `/apis`
    Groups,
    /// `/apis/<group>`
    Group(String),
    /// `/apis/<group>/<version>`
    GroupResources(String, String),
    /// `/openapi/v3`
    OpenApiIndex,
    /// `/openapi/v3/<api/v1 or apis/group/version>`
    OpenApi(String),
    /// `/openapi/v2`
    OpenApiV2,
    /// A resource, collection or object.
    Resource(Target),
    /// Something of `metrics.k8s.io/v1beta1`, which the metrics server's data serves.
    Metrics(super::metrics::Target),
    Unknown,
}

/// A resource request: which resource, where, and what part of it.
#[derive(Debug, PartialEq)]
pub(crate) struct Target {
    pub(crate) resource: &'static Resource,
    /// The namespace from the path (`None`: cluster-scoped, or all namespaces).
    pub(crate) namespace: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) subresource: Option<String>,
}

/// Routes one path.
pub(crate) fn route(path: &str) -> Route {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        ["version"] => Route::Version,
        ["healthz" | "livez" | "readyz", ..] => Route::Healthz,
        ["api"] => Route::CoreVersions,
        ["api", "v1"] => Route::CoreResources,
        ["api", "v1", rest @ ..] => resource_route("", "v1", rest),
        ["apis"] => Route::Groups,
        ["apis", group] => Route::Group((*group).to_owned()),
        ["apis", group, version] => {
            Route::GroupResources((*group).to_owned(), (*version).to_owned())
        }
        ["apis", "metrics.k8s.io", "v1beta1", rest @ ..] => {
            super::metrics::route(rest).map_or(Route::Unknown, Route::Metrics)
        }
        ["apis", group, version, rest @ ..] => resource_route(group, version, rest),
        ["openapi", "v3"] => Route::OpenApiIndex,
        ["openapi", "v3", rest @ ..] => Route::OpenApi(rest.join("/")),
        ["openapi", "v2"] => Route::OpenApiV2,
        _ => Route::Unknown,
    }
}

/// Routes a path of a custom resource (`/apis/<group>/<version>/...`), which [`route`] does
/// not know, among those `served`.
pub(crate) fn route_custom(
    path: &str,
    served: &crate::apiserver::apiextensions::served::Served,
) -> Route {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        ["apis", group, version, rest @ ..] if !rest.is_empty() => {
            let find = |plural: &str| served.find(group, version, plural).map(|v| v.resource);
            route_among(&find, rest)
        }
        _ => Route::Unknown,
    }
}

fn resource_route(group: &str, version: &str, rest: &[&str]) -> Route {
    let find = |plural: &str| resources::find(group, version, plural);
    route_among(&find, rest)
}

fn route_among(find: &dyn Fn(&str) -> Option<&'static Resource>, rest: &[&str]) -> Route {
    let target = |resource, namespace: Option<&str>, name: Option<&str>, sub: Option<&str>| {
        Route::Resource(Target {
            resource,
            namespace: namespace.map(str::to_owned),
            name: name.map(str::to_owned),
            subresource: sub.map(str::to_owned),
        })
    };
    match rest {
        // /namespaces/<ns>/<plural>[/<name>[/<sub>]] for namespaced resources.
        ["namespaces", ns, plural, tail @ ..] if find(plural).is_some_and(|r| r.namespaced) => {
            let resource = find(plural).expect("checked");
            match tail {
                [] => target(resource, Some(ns), None, None),
                [name] => target(resource, Some(ns), Some(name), None),
                [name, sub] if resource.subresources.contains(sub) => {
                    target(resource, Some(ns), Some(name), Some(sub))
                }
                _ => Route::Unknown,
            }
        }
        [plural, tail @ ..] => {
            let Some(resource) = find(plural) else {
                return Route::Unknown;
            };
            match tail {
                [] => target(resource, None, None, None),
                [name] if !resource.namespaced => target(resource, None, Some(name), None),
                [name, sub] if !resource.namespaced && resource.subresources.contains(sub) => {
                    target(resource, None, Some(name), Some(sub))
                }
                // `nodes/<name>/proxy/<path>`: the rest of the path is the kubelet's.
                [name, "proxy", ..] if resource.subresources.contains(&"proxy") => {
                    target(resource, None, Some(name), Some("proxy"))
                }
                _ => Route::Unknown,
            }
        }
        [] => Route::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(path: &str) -> (String, Option<String>, Option<String>, Option<String>) {
        match route(path) {
            Route::Resource(t) => (t.resource.qualified(), t.namespace, t.name, t.subresource),
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn routes() {
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(target("/api/v1/pods"), ("pods".into(), None, None, None));
        assert_eq!(
            target("/api/v1/nodes/node-1/proxy/stats/summary"),
            ("nodes".into(), None, s("node-1"), s("proxy"))
        );
        assert_eq!(
            target("/api/v1/namespaces/default/pods"),
            ("pods".into(), s("default"), None, None)
        );
        assert_eq!(
            target("/api/v1/namespaces/default/pods/web/status"),
            ("pods".into(), s("default"), s("web"), s("status"))
        );
        assert_eq!(
            target("/api/v1/namespaces"),
            ("namespaces".into(), None, None, None)
        );
        assert_eq!(
            target("/api/v1/namespaces/kube-system"),
            ("namespaces".into(), None, s("kube-system"), None)
        );
        assert_eq!(
            target("/api/v1/namespaces/x/finalize"),
            ("namespaces".into(), None, s("x"), s("finalize"))
        );
        assert_eq!(
            target("/api/v1/nodes/node-1/status"),
            ("nodes".into(), None, s("node-1"), s("status"))
        );
        assert_eq!(
            target("/apis/apps/v1/namespaces/ns/deployments/d/scale"),
            ("deployments.apps".into(), s("ns"), s("d"), s("scale"))
        );
        assert_eq!(
            route("/apis/apps/v1"),
            Route::GroupResources("apps".into(), "v1".into())
        );
        assert_eq!(
            route("/api/v1/namespaces/default/pods/web/nonsense"),
            Route::Unknown
        );
        assert_eq!(route("/api/v1/widgets"), Route::Unknown);
        assert_eq!(route("/apis/apps/v2/deployments"), Route::Unknown);
    }
}
