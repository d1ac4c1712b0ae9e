//! The routing table: which Service endpoint a request for `host` + `path` goes to, built from
//! the Ingresses the controller serves, their Services and the Services' EndpointSlices. Pure
//! (no I/O), so precedence is tested table by table.
//!
//! Hosts: an exact host (`foo.com`) before a wildcard (`*.foo.com`, which matches exactly one
//! more label: `a.foo.com`, not `foo.com` nor `a.b.foo.com`), before the rules without a host.
//! Within the chosen host: `Exact` paths first, then the longest `Prefix` (element-wise:
//! `/foo` matches `/foo` and `/foo/bar`, not `/foobar`; a trailing `/` is ignored);
//! `ImplementationSpecific` is treated as `Prefix`. On equal paths the older Ingress wins (by
//! creation time, then namespace/name), as ingress-nginx orders them. When no path of the host
//! matches, an Ingress's `spec.defaultBackend` answers (the oldest one's), else 404.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};

/// How a path of a rule matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathKind {
    /// The whole path, case-sensitively.
    Exact,
    /// Element-wise prefix (also `ImplementationSpecific`).
    Prefix,
}

/// A Service port as an Ingress backend names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendPort {
    /// `port.number`.
    Number(i32),
    /// `port.name`.
    Name(String),
}

impl std::fmt::Display for BackendPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackendPort::Number(n) => write!(f, "{n}"),
            BackendPort::Name(n) => f.write_str(n),
        }
    }
}

/// Where a route sends requests: a Service port and, resolved when the table was built, its
/// ready endpoints.
#[derive(Debug)]
pub struct Backend {
    /// The Service's namespace (the Ingress's).
    pub namespace: String,
    /// The Service's name.
    pub service: String,
    /// The Service port.
    pub port: BackendPort,
    /// Whether the Service exists (a missing one answers 503, as ingress-nginx does).
    pub service_exists: bool,
    /// The ready endpoints, from the Service's EndpointSlices (address, target port).
    pub endpoints: Vec<SocketAddr>,
    /// The round-robin position.
    next: AtomicUsize,
}

impl Backend {
    /// The next endpoint, round robin; `None` when there is no ready one.
    pub fn pick(&self) -> Option<SocketAddr> {
        if self.endpoints.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        Some(self.endpoints[i % self.endpoints.len()])
    }

    /// `default/web:80`.
    pub fn describe(&self) -> String {
        format!("{}/{}:{}", self.namespace, self.service, self.port)
    }
}

/// One route: the Ingress that asked for it and its backend.
#[derive(Debug)]
pub struct Route {
    /// The Ingress's namespace.
    pub namespace: String,
    /// The Ingress's name.
    pub ingress: String,
    /// The backend.
    pub backend: Backend,
}

#[derive(Debug)]
struct PathRule {
    path: String,
    kind: PathKind,
    route: Route,
}

/// The routing table of every served Ingress.
#[derive(Debug, Default)]
pub struct RouteTable {
    /// By host (`""` for rules without one, `*.foo.com` for wildcards), in precedence order.
    hosts: BTreeMap<String, Vec<PathRule>>,
    default: Option<Route>,
    ingresses: usize,
}

/// What the table says about a request.
#[derive(Debug)]
pub enum Decision<'a> {
    /// Send it to this route's backend.
    Route(&'a Route),
    /// No rule and no default backend: 404.
    NotFound,
}

/// Whether `request` (a URL path) matches `path` of `kind`.
pub fn path_matches(kind: PathKind, path: &str, request: &str) -> bool {
    match kind {
        PathKind::Exact => path == request,
        PathKind::Prefix => {
            let prefix = path.trim_end_matches('/');
            let request = request.trim_end_matches('/');
            prefix.is_empty()
                || request == prefix
                || request
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with('/'))
        }
    }
}

/// Whether a rule's `host` (exact or `*.` wildcard) matches a request's host.
pub fn host_matches(host: &str, request: &str) -> bool {
    match host.strip_prefix("*.") {
        Some(suffix) => request
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        None => host == request,
    }
}

/// The host of a `Host` header or authority: lower case, without the port.
pub fn request_host(authority: &str) -> String {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        rest.split_once(']').map_or(rest, |(h, _)| h)
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

fn resolve(
    namespace: &str,
    backend: &IngressBackend,
    services: &[&Service],
    slices: &[&EndpointSlice],
) -> Option<Backend> {
    let service = backend.service.as_ref()?;
    let port = service.port.as_ref()?;
    let port = match (&port.name, port.number) {
        (Some(name), _) if !name.is_empty() => BackendPort::Name(name.clone()),
        (_, Some(n)) => BackendPort::Number(n),
        _ => return None,
    };
    let found = services.iter().find(|s| {
        s.metadata.namespace.as_deref() == Some(namespace)
            && s.metadata.name.as_deref() == Some(&service.name)
    });
    let mut endpoints = Vec::new();
    if let Some(found) = found {
        let service_port = found
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .and_then(|ports| {
                ports.iter().find(|p| match &port {
                    BackendPort::Number(n) => p.port == *n,
                    BackendPort::Name(name) => p.name.as_deref() == Some(name),
                })
            });
        if let Some(service_port) = service_port {
            let port_name = service_port.name.clone().unwrap_or_default();
            for slice in slices.iter().filter(|s| {
                s.metadata.namespace.as_deref() == Some(namespace)
                    && s.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(crate::apimachinery::labels::SERVICE_NAME))
                        == Some(&service.name)
            }) {
                let Some(target) = slice.ports.iter().flatten().find_map(|p| {
                    (p.name.clone().unwrap_or_default() == port_name)
                        .then_some(p.port)
                        .flatten()
                }) else {
                    continue;
                };
                let Ok(target) = u16::try_from(target) else {
                    continue;
                };
                for endpoint in &slice.endpoints {
                    let ready = crate::apimachinery::services::endpoint_ready(endpoint);
                    if !ready {
                        continue;
                    }
                    if let Some(ip) = endpoint
                        .addresses
                        .first()
                        .and_then(|a| a.parse::<IpAddr>().ok())
                    {
                        endpoints.push(SocketAddr::new(ip, target));
                    }
                }
            }
        }
    }
    endpoints.sort();
    endpoints.dedup();
    Some(Backend {
        namespace: namespace.to_owned(),
        service: service.name.clone(),
        port,
        service_exists: found.is_some(),
        endpoints,
        next: AtomicUsize::new(0),
    })
}

impl RouteTable {
    /// The table for `ingresses` (those the controller serves), resolving backends against
    /// `services` and `slices`.
    pub fn build(
        ingresses: &[&Ingress],
        services: &[&Service],
        slices: &[&EndpointSlice],
    ) -> RouteTable {
        let mut ordered: Vec<&Ingress> = ingresses.to_vec();
        ordered.sort_by_key(|i| {
            (
                i.metadata.creation_timestamp.clone().map(|t| t.0),
                i.metadata.namespace.clone(),
                i.metadata.name.clone(),
            )
        });
        let mut table = RouteTable {
            ingresses: ordered.len(),
            ..RouteTable::default()
        };
        for ingress in ordered {
            let namespace = ingress.metadata.namespace.clone().unwrap_or_default();
            let name = ingress.metadata.name.clone().unwrap_or_default();
            let Some(spec) = &ingress.spec else { continue };
            let route = |backend: &IngressBackend| {
                resolve(&namespace, backend, services, slices).map(|backend| Route {
                    namespace: namespace.clone(),
                    ingress: name.clone(),
                    backend,
                })
            };
            if table.default.is_none()
                && let Some(backend) = &spec.default_backend
            {
                table.default = route(backend);
            }
            for rule in spec.rules.iter().flatten() {
                let host = rule.host.clone().unwrap_or_default().to_ascii_lowercase();
                let Some(http) = &rule.http else { continue };
                for path in &http.paths {
                    let kind = match path.path_type.as_str() {
                        "Exact" => PathKind::Exact,
                        _ => PathKind::Prefix,
                    };
                    let text = path.path.clone().unwrap_or_else(|| "/".into());
                    let Some(route) = route(&path.backend) else {
                        continue;
                    };
                    let rules = table.hosts.entry(host.clone()).or_default();
                    // The first (oldest) Ingress's claim on a path stands.
                    if rules.iter().any(|r| r.kind == kind && r.path == text) {
                        continue;
                    }
                    rules.push(PathRule {
                        path: text,
                        kind,
                        route,
                    });
                }
            }
        }
        table
    }

    /// Where a request for `host` (as [`request_host`] gives it) and `path` goes.
    pub fn decide(&self, host: &str, path: &str) -> Decision<'_> {
        let exact = self.hosts.get(host).filter(|_| !host.is_empty());
        let wildcard = || {
            self.hosts
                .iter()
                .find(|(h, _)| h.starts_with("*.") && host_matches(h, host))
                .map(|(_, rules)| rules)
        };
        let rules = exact.or_else(wildcard).or_else(|| self.hosts.get(""));
        if let Some(rules) = rules {
            let exact = rules
                .iter()
                .find(|r| r.kind == PathKind::Exact && r.path == path);
            // The longest prefix; on equal lengths the first (oldest Ingress's).
            let best = exact.or_else(|| {
                rules
                    .iter()
                    .filter(|r| r.kind == PathKind::Prefix && path_matches(r.kind, &r.path, path))
                    .fold(None, |best: Option<&PathRule>, r| match best {
                        Some(b)
                            if b.path.trim_end_matches('/').len()
                                >= r.path.trim_end_matches('/').len() =>
                        {
                            Some(b)
                        }
                        _ => Some(r),
                    })
            });
            if let Some(best) = best {
                return Decision::Route(&best.route);
            }
        }
        match &self.default {
            Some(route) => Decision::Route(route),
            None => Decision::NotFound,
        }
    }

    /// Every route as data (host, path, path type, Ingress, Service, endpoints), for the SYNC
    /// hop and a view of the routes.
    pub fn routes(&self) -> Vec<serde_json::Value> {
        let one = |host: &str, path: &str, kind: &str, route: &Route| {
            serde_json::json!({
                "host": host,
                "path": path,
                "pathType": kind,
                "ingress": format!("{}/{}", route.namespace, route.ingress),
                "service": route.backend.describe(),
                "endpoints": route.backend.endpoints.iter().map(ToString::to_string).collect::<Vec<_>>(),
            })
        };
        let mut out: Vec<serde_json::Value> = self
            .hosts
            .iter()
            .flat_map(|(host, rules)| {
                rules.iter().map(move |r| {
                    let kind = match r.kind {
                        PathKind::Exact => "Exact",
                        PathKind::Prefix => "Prefix",
                    };
                    one(host, &r.path, kind, &r.route)
                })
            })
            .collect();
        if let Some(route) = &self.default {
            out.push(one("*", "", "Default", route));
        }
        out
    }

    /// `2 ingresses, 3 hosts, 4 paths`, for the controller's SYNC hop.
    pub fn summary(&self) -> String {
        let hosts = self.hosts.keys().filter(|h| !h.is_empty()).count();
        let paths: usize = self.hosts.values().map(Vec::len).sum();
        format!("{} ingresses, {hosts} hosts, {paths} paths", self.ingresses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ingress(name: &str, created: &str, spec: serde_json::Value) -> Ingress {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "creationTimestamp": created},
            "spec": spec,
        }))
        .unwrap()
    }

    fn service(name: &str) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        }))
        .unwrap()
    }

    fn slice(service: &str, ips: &[&str]) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"name": format!("{service}-abc"), "namespace": "default", "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": ips.iter().map(|ip| json!({"addresses": [ip], "conditions": {"ready": true}})).collect::<Vec<_>>(),
        }))
        .unwrap()
    }

    fn path(p: &str, kind: &str, svc: &str) -> serde_json::Value {
        json!({"path": p, "pathType": kind, "backend": {"service": {"name": svc, "port": {"number": 80}}}})
    }

    #[test]
    fn prefixes_match_element_by_element() {
        let cases = [
            ("/foo", "/foo", true),
            ("/foo", "/foo/", true),
            ("/foo", "/foo/bar", true),
            ("/foo", "/foobar", false),
            ("/foo/", "/foo", true),
            ("/", "/anything", true),
            ("/aaa/bb", "/aaa/bbb", false),
            ("/aaa/bbb", "/aaa/bbb/ccc", true),
        ];
        for (prefix, request, want) in cases {
            assert_eq!(
                path_matches(PathKind::Prefix, prefix, request),
                want,
                "{prefix} {request}"
            );
        }
        assert!(!path_matches(PathKind::Exact, "/foo", "/foo/"));
    }

    #[test]
    fn wildcards_match_one_label() {
        assert!(host_matches("*.foo.com", "bar.foo.com"));
        assert!(!host_matches("*.foo.com", "foo.com"));
        assert!(!host_matches("*.foo.com", "baz.bar.foo.com"));
        assert_eq!(request_host("Foo.COM:8080"), "foo.com");
        assert_eq!(request_host("[::1]:80"), "::1");
    }

    fn routed<'a>(table: &'a RouteTable, host: &str, p: &str) -> Option<(&'a str, &'a str)> {
        match table.decide(host, p) {
            Decision::Route(r) => Some((r.ingress.as_str(), r.backend.service.as_str())),
            Decision::NotFound => None,
        }
    }

    #[test]
    fn precedence_exact_then_longest_prefix_then_default() {
        let a = ingress(
            "a",
            "2026-01-01T00:00:00Z",
            json!({"rules": [
                {"host": "foo.com", "http": {"paths": [path("/", "Prefix", "root"), path("/api", "Prefix", "api"), path("/api/v1", "ImplementationSpecific", "v1"), path("/api/exact", "Exact", "exact")]}},
                {"host": "*.foo.com", "http": {"paths": [path("/", "Prefix", "wild")]}},
                {"http": {"paths": [path("/any", "Prefix", "any")]}},
            ]}),
        );
        let b = ingress(
            "b",
            "2026-01-02T00:00:00Z",
            json!({"defaultBackend": {"service": {"name": "fallback", "port": {"name": "http"}}}, "rules": [
                {"host": "foo.com", "http": {"paths": [path("/api", "Prefix", "late")]}},
            ]}),
        );
        let table = RouteTable::build(&[&b, &a], &[], &[]);
        let cases = [
            ("foo.com", "/", Some(("a", "root"))),
            ("foo.com", "/api", Some(("a", "api"))),
            ("foo.com", "/apis", Some(("a", "root"))),
            ("foo.com", "/api/v1/pods", Some(("a", "v1"))),
            ("foo.com", "/api/exact", Some(("a", "exact"))),
            ("foo.com", "/api/exact/x", Some(("a", "api"))),
            ("x.foo.com", "/z", Some(("a", "wild"))),
            ("x.y.foo.com", "/any/1", Some(("a", "any"))),
            ("other.com", "/any", Some(("a", "any"))),
            ("other.com", "/nothing", Some(("b", "fallback"))),
        ];
        for (host, p, want) in cases {
            assert_eq!(routed(&table, host, p), want, "{host}{p}");
        }
        assert_eq!(table.summary(), "2 ingresses, 2 hosts, 6 paths");
        let no_default = RouteTable::build(&[&a], &[], &[]);
        assert_eq!(routed(&no_default, "other.com", "/nothing"), None);
    }

    #[test]
    fn backends_resolve_to_ready_endpoints_round_robin() {
        let a = ingress(
            "a",
            "2026-01-01T00:00:00Z",
            json!({"rules": [{"http": {"paths": [path("/", "Prefix", "web"), path("/gone", "Prefix", "missing")]}}]}),
        );
        let svc = service("web");
        let mut s = slice("web", &["10.244.1.5", "10.244.1.6"]);
        s.endpoints.push(
            serde_json::from_value(
                json!({"addresses": ["10.244.1.7"], "conditions": {"ready": false}}),
            )
            .unwrap(),
        );
        let table = RouteTable::build(&[&a], &[&svc], &[&s]);
        let Decision::Route(route) = table.decide("x", "/") else {
            panic!("routed")
        };
        assert_eq!(route.backend.describe(), "default/web:80");
        let picks: Vec<String> = (0..3)
            .map(|_| route.backend.pick().unwrap().to_string())
            .collect();
        assert_eq!(
            picks,
            ["10.244.1.5:8080", "10.244.1.6:8080", "10.244.1.5:8080"]
        );
        let Decision::Route(gone) = table.decide("x", "/gone") else {
            panic!("routed")
        };
        assert!(!gone.backend.service_exists);
        assert_eq!(gone.backend.pick(), None);
    }
}
