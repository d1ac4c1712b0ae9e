//! The service load balancer's decisions, as pure functions of the caches: which pool addresses
//! a Service may take and in what order, which nodes a cloud load balancer's health check would
//! pass, and where each port's connections go.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::{Node, Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::apimachinery::labels::SERVICE_NAME as SERVICE_NAME_LABEL;
use crate::apimachinery::services::endpoint_ready;

/// A node with this label is never a load balancer's backend (upstream's service controller).
pub const EXCLUDE_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";

/// Where one connection may go: a node's NodePort, or an endpoint itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The node's name (an endpoint's `nodeName`; may be empty for an endpoint).
    pub node: String,
    /// The address and port to dial.
    pub addr: SocketAddr,
    /// Whether `addr` is a node's NodePort (else an endpoint).
    pub node_port: bool,
}

/// One TCP port a Service's load balancer listens on, and where its connections go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortPlan {
    /// The Service port (what the load balancer listens on).
    pub port: u16,
    /// The backends, in round-robin order.
    pub targets: Vec<Target>,
}

/// Whether a Service wants a load balancer.
pub fn is_load_balancer(service: &Service) -> bool {
    service.metadata.deletion_timestamp.is_none()
        && service.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")
}

/// The Service's TCP ports with a usable port number (UDP and SCTP are not balanced).
pub fn tcp_ports(service: &Service) -> Vec<&ServicePort> {
    service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .into_iter()
        .flatten()
        .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
        .filter(|p| (1..=65535).contains(&p.port))
        .collect()
}

/// The addresses to try for a Service, best first: the address its status already shows (kept
/// across restarts), then `spec.loadBalancerIP`, then the pool's in order; only addresses in
/// `pool` that `taken` does not hold.
pub fn candidates<'a>(
    pool: Ipv4Net,
    service: &Service,
    taken: &'a HashSet<Ipv4Addr>,
) -> impl Iterator<Item = Ipv4Addr> + 'a {
    // A requested address comes first; an address from an earlier run before a fresh one.
    let wanted: Vec<Ipv4Addr> = requested(service)
        .into_iter()
        .chain(status_ips(service))
        .collect();
    wanted
        .into_iter()
        .filter(move |ip| pool.contains(ip))
        .chain(pool.hosts())
        .scan(HashSet::new(), |seen, ip| Some((seen.insert(ip), ip)))
        .filter(|(fresh, _)| *fresh)
        .map(|(_, ip)| ip)
        .filter(move |ip| !taken.contains(ip))
}

/// `spec.loadBalancerIP`, when set and an IPv4 address.
pub fn requested(service: &Service) -> Option<Ipv4Addr> {
    service
        .spec
        .as_ref()
        .and_then(|s| s.load_balancer_ip.as_deref())
        .and_then(|ip| ip.parse().ok())
}

/// The IPv4 addresses in the Service's `status.loadBalancer.ingress`.
pub use crate::apimachinery::services::load_balancer_ips as status_ips;

fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// A node's InternalIP.
pub fn internal_ip(node: &Node) -> Option<Ipv4Addr> {
    node.status
        .as_ref()?
        .addresses
        .as_ref()?
        .iter()
        .find(|a| a.type_ == "InternalIP")?
        .address
        .parse()
        .ok()
}

fn local_policy(service: &Service) -> bool {
    service
        .spec
        .as_ref()
        .and_then(|s| s.external_traffic_policy.as_deref())
        == Some("Local")
}

/// The EndpointSlices of a Service.
pub fn slices_of<'a>(
    service: &Service,
    slices: &'a [&'a EndpointSlice],
) -> impl Iterator<Item = &'a EndpointSlice> + 'a {
    let namespace = service.metadata.namespace.clone();
    let name = service.metadata.name.clone();
    slices.iter().copied().filter(move |s| {
        s.metadata.namespace == namespace
            && s.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
                == name.as_ref()
            && s.address_type == "IPv4"
    })
}

/// The nodes a cloud load balancer would send this Service's traffic to, sorted by name, with
/// their InternalIP: Ready nodes with an address not labelled [`EXCLUDE_LABEL`]; with
/// `externalTrafficPolicy: Local`, only those with a ready endpoint of the Service (what the
/// health check on `healthCheckNodePort` reports).
pub fn eligible_nodes(
    service: &Service,
    nodes: &[&Node],
    slices: &[&EndpointSlice],
) -> Vec<(String, Ipv4Addr)> {
    let local: Option<HashSet<String>> = local_policy(service).then(|| {
        slices_of(service, slices)
            .flat_map(|s| s.endpoints.iter())
            .filter(|e| endpoint_ready(e))
            .filter_map(|e| e.node_name.clone())
            .collect()
    });
    let mut out: Vec<(String, Ipv4Addr)> = nodes
        .iter()
        .filter(|n| node_ready(n))
        .filter(|n| {
            !n.metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.contains_key(EXCLUDE_LABEL))
        })
        .filter_map(|n| {
            let name = n.metadata.name.clone()?;
            let ip = internal_ip(n)?;
            Some((name, ip))
        })
        .filter(|(name, _)| local.as_ref().is_none_or(|l| l.contains(name)))
        .collect();
    out.sort();
    out
}

/// Where each TCP port's connections go: every eligible node's NodePort, or, for a port
/// without one (`allocateLoadBalancerNodePorts: false`), the Service's ready endpoints.
pub fn plan(service: &Service, nodes: &[&Node], slices: &[&EndpointSlice]) -> Vec<PortPlan> {
    let eligible = eligible_nodes(service, nodes, slices);
    let no_node_ports = service
        .spec
        .as_ref()
        .and_then(|s| s.allocate_load_balancer_node_ports)
        == Some(false);
    tcp_ports(service)
        .into_iter()
        .map(|p| {
            let node_port = p
                .node_port
                .filter(|n| (1..=65535).contains(n) && !no_node_ports);
            let targets = match node_port {
                Some(np) => eligible
                    .iter()
                    .map(|(node, ip)| Target {
                        node: node.clone(),
                        addr: SocketAddr::from((*ip, np as u16)),
                        node_port: true,
                    })
                    .collect(),
                None => endpoints(service, p, slices),
            };
            PortPlan {
                port: p.port as u16,
                targets,
            }
        })
        .collect()
}

/// The ready endpoints of one Service port (matched by port name, as kube-proxy does).
fn endpoints(service: &Service, port: &ServicePort, slices: &[&EndpointSlice]) -> Vec<Target> {
    let mut out = Vec::new();
    for slice in slices_of(service, slices) {
        let Some(number) = slice
            .ports
            .iter()
            .flatten()
            .find(|sp| {
                sp.name.as_deref().unwrap_or("") == port.name.as_deref().unwrap_or("")
                    && sp.protocol.as_deref().unwrap_or("TCP") == "TCP"
            })
            .and_then(|sp| sp.port)
            .filter(|n| (1..=65535).contains(n))
        else {
            continue;
        };
        for e in &slice.endpoints {
            if !endpoint_ready(e) {
                continue;
            }
            for a in &e.addresses {
                if let Ok(ip) = a.parse::<Ipv4Addr>() {
                    out.push(Target {
                        node: e.node_name.clone().unwrap_or_default(),
                        addr: SocketAddr::from((ip, number as u16)),
                        node_port: false,
                    });
                }
            }
        }
    }
    out.sort_by(|a, b| (&a.node, a.addr).cmp(&(&b.node, b.addr)));
    out.dedup();
    out
}

/// The ASSIGN hop's words: `127.240.0.1:80 → node-1:31234, node-2:31234`, one clause per port.
pub fn describe(addr: Ipv4Addr, plans: &[PortPlan]) -> String {
    plans
        .iter()
        .map(|p| {
            let targets: Vec<String> = p
                .targets
                .iter()
                .map(|t| {
                    if t.node.is_empty() {
                        t.addr.to_string()
                    } else if t.node_port {
                        format!("{}:{}", t.node, t.addr.port())
                    } else {
                        format!("{} {}", t.node, t.addr)
                    }
                })
                .collect();
            let to = if targets.is_empty() {
                "no eligible backend".to_owned()
            } else {
                targets.join(", ")
            };
            format!("{addr}:{} → {to}", p.port)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(spec: serde_json::Value, status: serde_json::Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": spec,
            "status": status,
        }))
        .unwrap()
    }

    fn node(name: &str, ip: &str, ready: &str, labels: serde_json::Value) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "status": {
                "conditions": [{"type": "Ready", "status": ready}],
                "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
            },
        }))
        .unwrap()
    }

    fn slice(endpoints: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"name": "web-abc", "namespace": "default",
                         "labels": {SERVICE_NAME_LABEL: "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": endpoints,
        }))
        .unwrap()
    }

    fn lb(extra: serde_json::Value) -> Service {
        let mut spec = json!({
            "type": "LoadBalancer",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 31234},
                      {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 31235}],
        });
        spec.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        service(spec, json!({}))
    }

    #[test]
    fn addresses_come_from_the_pool_skipping_taken_ones() {
        let pool: Ipv4Net = "127.240.0.0/16".parse().unwrap();
        let svc = lb(json!({}));
        let taken: HashSet<Ipv4Addr> = ["127.240.0.1".parse().unwrap()].into();
        let first: Vec<Ipv4Addr> = candidates(pool, &svc, &taken).take(2).collect();
        assert_eq!(
            first,
            [
                "127.240.0.2".parse::<Ipv4Addr>().unwrap(),
                "127.240.0.3".parse().unwrap()
            ]
        );
    }

    #[test]
    fn requested_and_earlier_addresses_come_first_when_in_the_pool() {
        let pool: Ipv4Net = "127.240.0.0/16".parse().unwrap();
        let none = HashSet::new();
        let mut svc = lb(json!({"loadBalancerIP": "127.240.3.4"}));
        svc.status = serde_json::from_value(
            json!({"loadBalancer": {"ingress": [{"ip": "127.240.0.9", "ipMode": "VIP"}]}}),
        )
        .unwrap();
        let first: Vec<String> = candidates(pool, &svc, &none)
            .take(3)
            .map(|ip| ip.to_string())
            .collect();
        assert_eq!(first, ["127.240.3.4", "127.240.0.9", "127.240.0.1"]);
        // Outside the pool: ignored.
        let svc = lb(json!({"loadBalancerIP": "10.0.0.1"}));
        assert_eq!(
            candidates(pool, &svc, &none).next().unwrap().to_string(),
            "127.240.0.1"
        );
        // A taken requested address is not offered.
        let svc = lb(json!({"loadBalancerIP": "127.240.0.1"}));
        let taken: HashSet<Ipv4Addr> = ["127.240.0.1".parse().unwrap()].into();
        assert_eq!(
            candidates(pool, &svc, &taken).next().unwrap().to_string(),
            "127.240.0.2"
        );
    }

    #[test]
    fn ready_unexcluded_nodes_are_eligible() {
        let svc = lb(json!({}));
        let n1 = node("node-1", "10.244.1.1", "True", json!({}));
        let n2 = node("node-2", "10.244.2.1", "False", json!({}));
        let n3 = node("node-3", "10.244.3.1", "True", json!({EXCLUDE_LABEL: ""}));
        let n0 = node("control-plane", "10.244.0.1", "True", json!({}));
        let got = eligible_nodes(&svc, &[&n1, &n2, &n3, &n0], &[]);
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["control-plane", "node-1"]);
    }

    #[test]
    fn local_policy_keeps_nodes_with_a_ready_endpoint() {
        let svc = lb(json!({"externalTrafficPolicy": "Local"}));
        let n1 = node("node-1", "10.244.1.1", "True", json!({}));
        let n2 = node("node-2", "10.244.2.1", "True", json!({}));
        let n3 = node("node-3", "10.244.3.1", "True", json!({}));
        let s = slice(json!([
            {"addresses": ["10.244.2.5"], "nodeName": "node-2", "conditions": {"ready": true}},
            {"addresses": ["10.244.3.5"], "nodeName": "node-3", "conditions": {"ready": false, "terminating": true}},
        ]));
        let got = eligible_nodes(&svc, &[&n1, &n2, &n3], &[&s]);
        assert_eq!(got, [("node-2".to_owned(), "10.244.2.1".parse().unwrap())]);
        // Cluster policy: every ready node.
        let svc = lb(json!({}));
        assert_eq!(eligible_nodes(&svc, &[&n1, &n2, &n3], &[&s]).len(), 3);
    }

    #[test]
    fn ports_go_to_node_ports_or_straight_to_endpoints() {
        let n1 = node("node-1", "10.244.1.1", "True", json!({}));
        let n2 = node("node-2", "10.244.2.1", "True", json!({}));
        let s = slice(json!([
            {"addresses": ["10.244.2.5"], "nodeName": "node-2", "conditions": {"ready": true}},
            {"addresses": ["10.244.1.7"], "nodeName": "node-1", "conditions": {"ready": false}},
        ]));
        let svc = lb(json!({}));
        let plans = plan(&svc, &[&n1, &n2], &[&s]);
        assert_eq!(plans.len(), 1, "UDP is not balanced");
        assert_eq!(plans[0].port, 80);
        let addrs: Vec<String> = plans[0]
            .targets
            .iter()
            .map(|t| t.addr.to_string())
            .collect();
        assert_eq!(addrs, ["10.244.1.1:31234", "10.244.2.1:31234"]);
        assert_eq!(
            describe("127.240.0.1".parse().unwrap(), &plans),
            "127.240.0.1:80 → node-1:31234, node-2:31234"
        );

        let svc = lb(json!({"allocateLoadBalancerNodePorts": false}));
        let plans = plan(&svc, &[&n1, &n2], &[&s]);
        let addrs: Vec<String> = plans[0]
            .targets
            .iter()
            .map(|t| t.addr.to_string())
            .collect();
        assert_eq!(addrs, ["10.244.2.5:8080"]);
        assert_eq!(
            describe("127.240.0.1".parse().unwrap(), &plans),
            "127.240.0.1:80 → node-2 10.244.2.5:8080"
        );
    }

    #[test]
    fn only_live_load_balancers_count() {
        assert!(is_load_balancer(&lb(json!({}))));
        let svc = service(json!({"type": "NodePort"}), json!({}));
        assert!(!is_load_balancer(&svc));
        let mut svc = lb(json!({}));
        svc.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2026-01-01T00:00:00Z".parse().unwrap(),
            ));
        assert!(!is_load_balancer(&svc));
    }
}
