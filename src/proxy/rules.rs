//! The pure half of kube-proxy: from Services, EndpointSlices and a node's [`ProxyConfig`] to a
//! structured model of the node's nftables table ([`Model`]: chains, verdict maps, affinity
//! sets), rendered as `nft -f` script text, either whole ([`render_full`]) or as the partial
//! transaction between two models ([`render_diff`]), with a human summary of what changed
//! ([`summarize`]). Nothing here touches the kernel.
//!
//! The table follows upstream kube-proxy's nftables mode (KEP-3866, `pkg/proxy/nftables`): a
//! `service-ips` verdict map sends `clusterIP . protocol . port` to a service chain, which picks
//! an endpoint chain with `numgen random mod N vmap`; the endpoint chain marks the connection for
//! masquerade where needed and `dnat`s. Unlike upstream, a Service without session affinity
//! (whose endpoints agree on masquerading) has no endpoint chains: its service chain marks and
//! DNATs by itself through `numgen random mod N map { i : ip . port }`, because `nft` reads every
//! chain of the table before each transaction and ten times fewer chains keep a sync quick;
//! `service-nodeports` sends `protocol . nodePort` to an
//! external chain; a Service port without usable endpoints sits in `no-endpoint-services` /
//! `no-endpoint-nodeports`, which the filter hooks turn into a reject (or a drop when only a
//! `Local` policy leaves it without endpoints). Unlike upstream, every virtual node's table
//! shares one kernel with the others, so each hook only catches its own node's traffic: from its
//! pod CIDR, to its node address, and from the host itself only on the control-plane node.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::ProxyConfig;

/// The mark bit that asks `masquerading` to masquerade a connection (upstream's 0x4000).
pub const MASQUERADE_MARK: &str = "0x00004000";
/// `sessionAffinityConfig.clientIP.timeoutSeconds` when unset (three hours, as upstream).
pub const DEFAULT_AFFINITY_TIMEOUT: i32 = 10_800;

/// A Service as kube-proxy programs it (also what the dashboard is shown).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServiceView {
    /// The Service's namespace.
    pub namespace: String,
    /// The Service's name.
    pub name: String,
    /// `ClusterIP`, `NodePort` or `LoadBalancer`.
    #[serde(rename = "type")]
    pub type_: String,
    /// The ClusterIP.
    #[serde(rename = "clusterIP")]
    pub cluster_ip: Ipv4Addr,
    /// `status.loadBalancer.ingress[].ip`.
    #[serde(rename = "loadBalancerIPs", skip_serializing_if = "Vec::is_empty")]
    pub load_balancer_ips: Vec<Ipv4Addr>,
    /// The ports, each with the endpoints the EndpointSlices give it.
    pub ports: Vec<PortView>,
    /// Every endpoint of every port, once.
    pub endpoints: Vec<EndpointView>,
    /// `internalTrafficPolicy: Local`.
    #[serde(skip)]
    pub internal_local: bool,
    /// `externalTrafficPolicy: Local` (only for NodePort and LoadBalancer Services).
    #[serde(skip)]
    pub external_local: bool,
    /// `sessionAffinity: ClientIP`: its timeout in seconds.
    #[serde(rename = "affinitySeconds", skip_serializing_if = "Option::is_none")]
    pub affinity: Option<i32>,
}

/// One port of a Service.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PortView {
    /// The port's name (may be empty for a single-port Service).
    pub name: String,
    /// The Service port.
    pub port: u16,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
    /// The node port, for NodePort and LoadBalancer Services.
    #[serde(rename = "nodePort", skip_serializing_if = "Option::is_none")]
    pub node_port: Option<u16>,
    /// This port's endpoints (target port resolved through the EndpointSlices' ports).
    #[serde(skip)]
    pub endpoints: Vec<EndpointView>,
}

/// One endpoint address and port, with its conditions.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct EndpointView {
    /// The address.
    pub ip: Ipv4Addr,
    /// The (target) port.
    pub port: u16,
    /// The endpoint's `nodeName`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub node: String,
    /// `conditions.ready` (unset means true).
    pub ready: bool,
    /// `conditions.serving` (unset means as ready).
    pub serving: bool,
    /// `conditions.terminating` (unset means false).
    pub terminating: bool,
}

impl ServiceView {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Whether traffic from outside reaches it (node ports, load-balancer IPs).
    fn external(&self) -> bool {
        self.type_ == "NodePort" || self.type_ == "LoadBalancer"
    }
}

/// What kube-proxy makes of `service` and its EndpointSlices: `None` for what it ignores
/// (`type: ExternalName`, headless Services, no IPv4 ClusterIP).
pub fn service_view(service: &Service, slices: &[&EndpointSlice]) -> Option<ServiceView> {
    let spec = service.spec.as_ref()?;
    let type_ = spec.type_.clone().unwrap_or_else(|| "ClusterIP".to_owned());
    if type_ == "ExternalName" {
        return None;
    }
    let cluster_ip: Ipv4Addr = spec.cluster_ip.as_deref()?.parse().ok()?;
    let external = type_ == "NodePort" || type_ == "LoadBalancer";
    let load_balancer_ips = if type_ == "LoadBalancer" {
        crate::apimachinery::services::load_balancer_ips(service)
            .into_iter()
            // The built-in service load balancer's addresses are loopback ones, served by its
            // own proxy on the host (which goes on to a node port): a pod cannot reach them,
            // and a host connection DNATed from loopback to a pod would be dropped.
            .filter(|ip: &Ipv4Addr| !ip.is_loopback())
            .collect()
    } else {
        Vec::new()
    };
    let affinity = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .filter(|t| *t > 0)
            .unwrap_or(DEFAULT_AFFINITY_TIMEOUT)
    });
    let mut ports = Vec::new();
    let mut all = BTreeSet::new();
    for p in spec.ports.iter().flatten() {
        let Ok(port) = u16::try_from(p.port) else {
            continue;
        };
        if port == 0 {
            continue;
        }
        let protocol = p.protocol.clone().unwrap_or_else(|| "TCP".to_owned());
        if !matches!(protocol.as_str(), "TCP" | "UDP" | "SCTP") {
            continue;
        }
        let name = p.name.clone().unwrap_or_default();
        let node_port = p
            .node_port
            .filter(|_| external)
            .and_then(|n| u16::try_from(n).ok())
            .filter(|n| *n != 0);
        let mut endpoints = BTreeSet::new();
        for slice in slices {
            if slice.address_type != "IPv4" {
                continue;
            }
            // The slice port carrying this Service port: same name and protocol (the
            // EndpointSlice controller has resolved a named target port to its number).
            let Some(target) = slice.ports.iter().flatten().find(|sp| {
                sp.name.as_deref().unwrap_or("") == name
                    && sp.protocol.as_deref().unwrap_or("TCP") == protocol
            }) else {
                continue;
            };
            let Some(target) = target.port.and_then(|p| u16::try_from(p).ok()) else {
                continue;
            };
            for e in &slice.endpoints {
                let c = e.conditions.as_ref();
                let ready = crate::apimachinery::services::endpoint_ready(e);
                let serving = c.and_then(|c| c.serving).unwrap_or(ready);
                let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
                // One address per endpoint (the first, as upstream uses).
                let Some(ip) = e.addresses.first().and_then(|a| a.parse().ok()) else {
                    continue;
                };
                endpoints.insert(EndpointView {
                    ip,
                    port: target,
                    node: e.node_name.clone().unwrap_or_default(),
                    ready,
                    serving,
                    terminating,
                });
            }
        }
        // The same address and port from two slices (a slice being replaced) counts once.
        let mut seen = HashSet::new();
        let endpoints: Vec<EndpointView> = endpoints
            .into_iter()
            .filter(|e| seen.insert((e.ip, e.port)))
            .collect();
        all.extend(endpoints.iter().cloned());
        ports.push(PortView {
            name,
            port,
            protocol,
            node_port,
            endpoints,
        });
    }
    let mut seen = HashSet::new();
    let endpoints = all
        .into_iter()
        .filter(|e| seen.insert((e.ip, e.port)))
        .collect();
    Some(ServiceView {
        namespace: service.metadata.namespace.clone().unwrap_or_default(),
        name: service.metadata.name.clone().unwrap_or_default(),
        type_,
        cluster_ip,
        load_balancer_ips,
        ports,
        endpoints,
        internal_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
        external_local: external && spec.external_traffic_policy.as_deref() == Some("Local"),
        affinity,
    })
}

/// Upstream's `CategorizeEndpoints` for one set: the ready endpoints, or when none is ready
/// the serving and terminating ones.
pub fn usable(endpoints: &[&EndpointView]) -> Vec<EndpointView> {
    let ready: Vec<EndpointView> = endpoints
        .iter()
        .filter(|e| e.ready)
        .map(|e| (*e).clone())
        .collect();
    if !ready.is_empty() {
        return ready;
    }
    endpoints
        .iter()
        .filter(|e| e.serving && e.terminating)
        .map(|e| (*e).clone())
        .collect()
}

/// One chain: a base chain's hook line (`type nat hook prerouting priority -100; policy
/// accept;`) if it is one, and its rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chain {
    /// The hook definition, for a base chain.
    pub hook: Option<String>,
    /// The rules, in order.
    pub rules: Vec<String>,
}

/// A part of the table: the base part, or everything one Service owns. Names never collide
/// between parts (every Service's chains and sets carry its namespace and name).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fragment {
    /// Sets by name, with their definitions (`type ipv4_addr; flags dynamic,timeout; ...`).
    pub sets: BTreeMap<String, String>,
    /// Verdict maps by name, with their definitions (only the base part has maps).
    pub maps: BTreeMap<String, String>,
    /// Chains by name.
    pub chains: BTreeMap<String, Chain>,
    /// Map elements: (map, key) -> verdict.
    pub elements: BTreeMap<(String, String), String>,
}

/// One programmed Service: what it is and what it owns in the table.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceRules {
    /// The Service as programmed.
    pub view: ServiceView,
    /// Its chains, sets and map elements.
    pub fragment: Fragment,
}

/// The whole table of one node.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Model {
    /// The hooks, the maps and the shared chains.
    pub base: Fragment,
    /// Every Service, by `namespace/name`.
    pub services: BTreeMap<String, Arc<ServiceRules>>,
}

impl Model {
    /// Every part: the base, then the Services.
    fn parts(&self) -> impl Iterator<Item = &Fragment> {
        std::iter::once(&self.base).chain(self.services.values().map(|s| &s.fragment))
    }

    /// How many endpoints its Services have in all.
    pub fn endpoint_count(&self) -> usize {
        self.services.values().map(|s| s.view.endpoints.len()).sum()
    }
}

/// What a Service's rules depend on besides the Service and its slices.
#[derive(Clone, Debug)]
pub struct Context {
    /// This node's configuration.
    pub config: ProxyConfig,
    /// Every node's address: endpoints there are the host, never masqueraded.
    pub node_ips: BTreeSet<Ipv4Addr>,
}

const SERVICE_IPS: &str = "service-ips";
const SERVICE_NODEPORTS: &str = "service-nodeports";
const NO_ENDPOINT_SERVICES: &str = "no-endpoint-services";
const NO_ENDPOINT_NODEPORTS: &str = "no-endpoint-nodeports";
const MARK_FOR_MASQUERADE: &str = "mark-for-masquerade";
const MASQUERADING: &str = "masquerading";
const REJECT_CHAIN: &str = "reject-chain";

/// The part of the table every node has whatever its Services: hooks scoped to the node, maps,
/// the masquerade and reject chains.
pub fn base(config: &ProxyConfig) -> Fragment {
    let (pods, node) = (config.pod_cidr, config.node_ip);
    let mut f = Fragment::default();
    let ip_map = "type ipv4_addr . inet_proto . inet_service : verdict;";
    let port_map = "type inet_proto . inet_service : verdict;";
    f.maps.insert(SERVICE_IPS.into(), ip_map.into());
    f.maps.insert(NO_ENDPOINT_SERVICES.into(), ip_map.into());
    f.maps.insert(SERVICE_NODEPORTS.into(), port_map.into());
    f.maps.insert(NO_ENDPOINT_NODEPORTS.into(), port_map.into());
    let mut chain = |name: &str, hook: Option<&str>, rules: Vec<String>| {
        f.chains.insert(
            name.to_owned(),
            Chain {
                hook: hook.map(|h| format!("{h} policy accept;")),
                rules,
            },
        );
    };
    let to_services = format!("ip daddr . meta l4proto . th dport vmap @{SERVICE_IPS}");
    let to_nodeports = format!("ip daddr {node} meta l4proto . th dport vmap @{SERVICE_NODEPORTS}");
    chain(
        "nat-prerouting",
        Some("type nat hook prerouting priority -100;"),
        vec![
            format!("ip saddr {pods} {to_services}"),
            to_nodeports.clone(),
        ],
    );
    let mut output = vec![to_nodeports];
    if config.host {
        output.push(to_services);
    }
    chain(
        "nat-output",
        Some("type nat hook output priority -100;"),
        output,
    );
    chain(
        "nat-postrouting",
        Some("type nat hook postrouting priority 100;"),
        vec![format!("jump {MASQUERADING}")],
    );
    chain(
        MASQUERADING,
        None,
        vec![
            format!("meta mark & {MASQUERADE_MARK} == 0 return"),
            format!("meta mark set meta mark ^ {MASQUERADE_MARK}"),
            "masquerade fully-random".into(),
        ],
    );
    chain(
        MARK_FOR_MASQUERADE,
        None,
        vec![format!("meta mark set meta mark | {MASQUERADE_MARK}")],
    );
    let no_services = format!("ip daddr . meta l4proto . th dport vmap @{NO_ENDPOINT_SERVICES}");
    let no_nodeports = format!(
        "ct state new ip daddr {node} meta l4proto . th dport vmap @{NO_ENDPOINT_NODEPORTS}"
    );
    chain(
        "filter-forward",
        Some("type filter hook forward priority -110;"),
        vec![format!("ct state new ip saddr {pods} {no_services}")],
    );
    chain(
        "filter-input",
        Some("type filter hook input priority -110;"),
        vec![
            format!("ct state new ip saddr {pods} {no_services}"),
            no_nodeports.clone(),
        ],
    );
    let mut output = vec![no_nodeports];
    if config.host {
        output.push(format!("ct state new {no_services}"));
    }
    chain(
        "filter-output",
        Some("type filter hook output priority -110;"),
        output,
    );
    chain(REJECT_CHAIN, None, vec!["reject".into()]);
    f
}

/// The first eight hex digits of the SHA-256 of `s` (upstream names chains the same way, so
/// names stay unique however they are cut).
fn hash(s: &str) -> String {
    let digest = Sha256::digest(s.as_bytes());
    digest[..4].iter().map(|b| format!("{b:02X}")).collect()
}

fn l4(protocol: &str) -> &'static str {
    match protocol {
        "UDP" => "udp",
        "SCTP" => "sctp",
        _ => "tcp",
    }
}

/// The chains, sets and map elements one Service owns on this node.
pub fn service_rules(view: &ServiceView, ctx: &Context) -> Fragment {
    let cfg = &ctx.config;
    let mut f = Fragment::default();
    for port in &view.ports {
        let proto = l4(&port.protocol);
        let port_name = if port.name.is_empty() {
            format!("p{}", port.port)
        } else {
            port.name.clone()
        };
        let id = format!("{}/{}/{proto}/{port_name}", view.namespace, view.name);
        let h = hash(&id);
        let cluster_chain = format!("service-{h}-{id}");
        let local_chain = format!("local-{h}-{id}");
        let external_chain = format!("external-{h}-{id}");
        let all: Vec<&EndpointView> = port.endpoints.iter().collect();
        let local: Vec<&EndpointView> = port
            .endpoints
            .iter()
            .filter(|e| e.node == cfg.node)
            .collect();
        let cluster_eps = usable(&all);
        let local_eps = if view.internal_local || view.external_local {
            usable(&local)
        } else {
            Vec::new()
        };
        let has_endpoints = !cluster_eps.is_empty() || !local_eps.is_empty();
        let has_internal = if view.internal_local {
            !local_eps.is_empty()
        } else {
            !cluster_eps.is_empty()
        };
        let has_external = if view.external_local {
            !local_eps.is_empty()
        } else {
            !cluster_eps.is_empty()
        };

        // Endpoint chains (and affinity sets) for every endpoint either chain may pick.
        // The cluster-wide chain is only needed when some traffic may use any endpoint.
        let uses_cluster = !view.internal_local || view.external();
        let cluster_eps = if uses_cluster {
            cluster_eps
        } else {
            Vec::new()
        };
        let mut picked: BTreeSet<&EndpointView> = BTreeSet::new();
        picked.extend(cluster_eps.iter());
        picked.extend(local_eps.iter());
        let ep_name = |e: &EndpointView| {
            let long = format!("{id}__{}/{}", e.ip, e.port);
            (
                format!("endpoint-{}-{long}", hash(&long)),
                format!("affinity-{}-{long}", hash(&long)),
            )
        };
        // A pod's connection DNATed to a pod is masqueraded; to a host endpoint (the DNS
        // server on a node's address) never.
        let masquerades =
            |e: &EndpointView| cfg.cluster_cidr.contains(&e.ip) && !ctx.node_ips.contains(&e.ip);
        // Without affinity, and when the endpoints agree on masquerading (they all do but for
        // host endpoints), the service chain DNATs by itself through a `numgen` map: one chain
        // per Service port instead of one more per endpoint. nft reads the table's chains
        // before every transaction, so ten times fewer chains keep each sync quick.
        let inline = view.affinity.is_none()
            && (picked.iter().all(|e| masquerades(e)) || !picked.iter().any(|e| masquerades(e)));
        for e in picked.iter().filter(|_| !inline) {
            let (chain, set) = ep_name(e);
            let mut rules = Vec::new();
            if masquerades(e) {
                rules.push(format!(
                    "ip saddr {} jump {MARK_FOR_MASQUERADE}",
                    cfg.cluster_cidr
                ));
            }
            if let Some(timeout) = view.affinity {
                f.sets.insert(
                    set.clone(),
                    format!("type ipv4_addr; flags dynamic,timeout; timeout {timeout}s;"),
                );
                rules.push(format!("update @{set} {{ ip saddr }}"));
            }
            rules.push(format!("meta l4proto {proto} dnat to {}:{}", e.ip, e.port));
            f.chains.insert(chain, Chain { hook: None, rules });
        }
        let pick = |eps: &[EndpointView]| {
            let mut rules = Vec::new();
            if inline {
                if eps.iter().any(&masquerades) {
                    rules.push(format!(
                        "ip saddr {} jump {MARK_FOR_MASQUERADE}",
                        cfg.cluster_cidr
                    ));
                }
                rules.push(match eps {
                    [e] => format!("meta l4proto {proto} dnat to {}:{}", e.ip, e.port),
                    _ => {
                        let arms: Vec<String> = eps
                            .iter()
                            .enumerate()
                            .map(|(i, e)| format!("{i} : {} . {}", e.ip, e.port))
                            .collect();
                        format!(
                            "meta l4proto {proto} dnat to numgen random mod {} map {{ {} }}",
                            eps.len(),
                            arms.join(", ")
                        )
                    }
                });
                return Chain { hook: None, rules };
            }
            if view.affinity.is_some() {
                for e in eps {
                    let (chain, set) = ep_name(e);
                    rules.push(format!("ip saddr @{set} goto {chain}"));
                }
            }
            let arms: Vec<String> = eps
                .iter()
                .enumerate()
                .map(|(i, e)| format!("{i} : goto {}", ep_name(e).0))
                .collect();
            rules.push(format!(
                "numgen random mod {} vmap {{ {} }}",
                eps.len(),
                arms.join(", ")
            ));
            Chain { hook: None, rules }
        };
        if !cluster_eps.is_empty() {
            f.chains.insert(cluster_chain.clone(), pick(&cluster_eps));
        }
        if !local_eps.is_empty() {
            f.chains.insert(local_chain.clone(), pick(&local_eps));
        }
        let filter_verdict = |has: bool| {
            if has_endpoints {
                (!has).then(|| "drop".to_owned())
            } else {
                Some(format!("goto {REJECT_CHAIN}"))
            }
        };
        let mut element = |map: &str, key: String, verdict: String| {
            f.elements.insert((map.to_owned(), key), verdict);
        };

        // The ClusterIP.
        let key = format!("{} . {proto} . {}", view.cluster_ip, port.port);
        let internal_chain = if view.internal_local {
            &local_chain
        } else {
            &cluster_chain
        };
        if has_internal {
            element(SERVICE_IPS, key, format!("goto {internal_chain}"));
        } else if let Some(v) = filter_verdict(false) {
            element(NO_ENDPOINT_SERVICES, key, v);
        }

        if !view.external() {
            continue;
        }
        // Node port and load-balancer IPs go through the external chain.
        let external_verdict = filter_verdict(has_external);
        if has_external {
            let mut rules = Vec::new();
            if view.external_local {
                if !cluster_eps.is_empty() {
                    // Pods and the host itself may use any endpoint (upstream's short-circuit).
                    rules.push(format!(
                        "ip saddr {} goto {cluster_chain}",
                        cfg.cluster_cidr
                    ));
                    rules.push(format!("fib saddr type local jump {MARK_FOR_MASQUERADE}"));
                    rules.push(format!("fib saddr type local goto {cluster_chain}"));
                }
                rules.push(format!("goto {local_chain}"));
            } else {
                rules.push(format!("jump {MARK_FOR_MASQUERADE}"));
                rules.push(format!("goto {cluster_chain}"));
            }
            f.chains
                .insert(external_chain.clone(), Chain { hook: None, rules });
        }
        let mut keys = Vec::new();
        if let Some(node_port) = port.node_port {
            keys.push((
                SERVICE_NODEPORTS,
                NO_ENDPOINT_NODEPORTS,
                format!("{proto} . {node_port}"),
            ));
        }
        for ip in &view.load_balancer_ips {
            keys.push((
                SERVICE_IPS,
                NO_ENDPOINT_SERVICES,
                format!("{ip} . {proto} . {}", port.port),
            ));
        }
        for (map, no_map, key) in keys {
            if has_external {
                element(map, key, format!("goto {external_chain}"));
            } else if let Some(v) = &external_verdict {
                element(no_map, key, v.clone());
            }
        }
    }
    f
}

/// Writes the commands that create `f`'s sets, maps and chains (declarations only).
fn declare(out: &mut String, table: &str, f: &Fragment) {
    for (name, def) in &f.sets {
        let _ = writeln!(out, "add set ip {table} {name} {{ {def} }}");
    }
    for (name, def) in &f.maps {
        let _ = writeln!(out, "add map ip {table} {name} {{ {def} }}");
    }
    for (name, chain) in &f.chains {
        declare_chain(out, table, name, chain);
    }
}

fn declare_chain(out: &mut String, table: &str, name: &str, chain: &Chain) {
    match &chain.hook {
        Some(hook) => {
            let _ = writeln!(out, "add chain ip {table} {name} {{ {hook} }}");
        }
        None => {
            let _ = writeln!(out, "add chain ip {table} {name}");
        }
    }
}

fn add_rules(out: &mut String, table: &str, name: &str, chain: &Chain) {
    for rule in &chain.rules {
        let _ = writeln!(out, "add rule ip {table} {name} {rule}");
    }
}

fn add_element(out: &mut String, table: &str, (map, key): &(String, String), verdict: &str) {
    let _ = writeln!(out, "add element ip {table} {map} {{ {key} : {verdict} }}");
}

fn delete_element(out: &mut String, table: &str, (map, key): &(String, String)) {
    let _ = writeln!(out, "delete element ip {table} {map} {{ {key} }}");
}

/// The whole table as one transaction. With `recreate`, the table is deleted first (at start,
/// and after a failed apply: whatever is there goes); without, it is rewritten in place
/// (chains and maps flushed and refilled, affinity sets kept) and chains and sets `old` had
/// that `new` lacks are deleted.
pub fn render_full(table: &str, old: Option<&Model>, new: &Model, recreate: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "add table ip {table}");
    if recreate {
        let _ = writeln!(out, "delete table ip {table}");
        let _ = writeln!(out, "add table ip {table}");
    }
    for f in new.parts() {
        declare(&mut out, table, f);
    }
    if !recreate {
        for f in new.parts() {
            for name in f.chains.keys() {
                let _ = writeln!(out, "flush chain ip {table} {name}");
            }
            for name in f.maps.keys() {
                let _ = writeln!(out, "flush map ip {table} {name}");
            }
        }
    }
    for f in new.parts() {
        for (name, chain) in &f.chains {
            add_rules(&mut out, table, name, chain);
        }
    }
    for f in new.parts() {
        for (key, verdict) in &f.elements {
            add_element(&mut out, table, key, verdict);
        }
    }
    if let (false, Some(old)) = (recreate, old) {
        let (mut chains, mut sets) = (BTreeSet::new(), BTreeSet::new());
        for f in new.parts() {
            chains.extend(f.chains.keys());
            sets.extend(f.sets.keys());
        }
        let mut stale_sets = Vec::new();
        for f in old.parts() {
            for name in f.chains.keys().filter(|n| !chains.contains(n)) {
                let _ = writeln!(out, "flush chain ip {table} {name}");
                let _ = writeln!(out, "delete chain ip {table} {name}");
            }
            stale_sets.extend(f.sets.keys().filter(|n| !sets.contains(n)));
        }
        for name in stale_sets {
            let _ = writeln!(out, "delete set ip {table} {name}");
        }
    }
    out
}

/// The partial transaction from `old` to `new` (what upstream's partial syncs do): only the
/// chains, map elements and sets of changed Services. `None` when a change cannot be made in
/// place (a set or map redefined, a base chain changed): the caller rewrites the whole table.
/// An empty string when nothing changed.
pub fn render_diff(table: &str, old: &Model, new: &Model) -> Option<String> {
    if old.base != new.base {
        return None;
    }
    let empty = Fragment::default();
    let mut changed: Vec<(&Fragment, &Fragment)> = Vec::new();
    let keys: BTreeSet<&String> = old.services.keys().chain(new.services.keys()).collect();
    for key in keys {
        let (o, n) = (old.services.get(key), new.services.get(key));
        match (o, n) {
            (Some(o), Some(n)) if Arc::ptr_eq(o, n) || o.fragment == n.fragment => {}
            _ => changed.push((
                o.map_or(&empty, |o| &o.fragment),
                n.map_or(&empty, |n| &n.fragment),
            )),
        }
    }
    let mut out = String::new();
    // 1. New sets, new chains declared.
    for (o, n) in &changed {
        for (name, def) in &n.sets {
            match o.sets.get(name) {
                None => {
                    let _ = writeln!(out, "add set ip {table} {name} {{ {def} }}");
                }
                Some(old_def) if old_def != def => return None,
                Some(_) => {}
            }
        }
        for (name, chain) in &n.chains {
            match o.chains.get(name) {
                None => declare_chain(&mut out, table, name, chain),
                Some(old_chain) if old_chain.hook != chain.hook => return None,
                Some(_) => {}
            }
        }
    }
    // 2. Changed and stale chains flushed.
    for (o, n) in &changed {
        for (name, chain) in &o.chains {
            if n.chains.get(name) != Some(chain) {
                let _ = writeln!(out, "flush chain ip {table} {name}");
            }
        }
    }
    // 3. Stale and changed map elements removed.
    for (o, n) in &changed {
        for (key, verdict) in &o.elements {
            if n.elements.get(key) != Some(verdict) {
                delete_element(&mut out, table, key);
            }
        }
    }
    // 4. New and changed chains filled.
    for (o, n) in &changed {
        for (name, chain) in &n.chains {
            if o.chains.get(name) != Some(chain) {
                add_rules(&mut out, table, name, chain);
            }
        }
    }
    // 5. New and changed map elements added.
    for (o, n) in &changed {
        for (key, verdict) in &n.elements {
            if o.elements.get(key) != Some(verdict) {
                add_element(&mut out, table, key, verdict);
            }
        }
    }
    // 6. Stale chains and sets deleted, now nothing refers to them.
    for (o, n) in &changed {
        for name in o.chains.keys().filter(|k| !n.chains.contains_key(*k)) {
            let _ = writeln!(out, "delete chain ip {table} {name}");
        }
        for name in o.sets.keys().filter(|k| !n.sets.contains_key(*k)) {
            let _ = writeln!(out, "delete set ip {table} {name}");
        }
    }
    Some(out)
}

/// How many changes a summary names before it says how many more there are.
const SUMMARY_ITEMS: usize = 8;

/// The Services that differ between `old` and `new` (by key: added or changed, and removed).
pub fn changed_services<'a>(old: &'a Model, new: &'a Model) -> (Vec<&'a ServiceView>, Vec<String>) {
    let changed = new
        .services
        .iter()
        .filter(|(k, n)| {
            old.services
                .get(*k)
                .is_none_or(|o| !Arc::ptr_eq(o, n) && o.view != n.view)
        })
        .map(|(_, n)| &n.view)
        .collect();
    let removed = old
        .services
        .keys()
        .filter(|k| !new.services.contains_key(*k))
        .cloned()
        .collect();
    (changed, removed)
}

/// One line for a human: the totals, then what changed ("3 services, 7 endpoints;
/// default/web +10.244.1.5:8080 -10.244.2.3:8080").
pub fn summarize(old: &Model, new: &Model) -> String {
    let mut line = format!(
        "{} services, {} endpoints",
        new.services.len(),
        new.endpoint_count()
    );
    let mut items = Vec::new();
    let (changed, removed) = changed_services(old, new);
    for view in changed {
        let key = view.key();
        let Some(o) = old.services.get(&key) else {
            items.push(format!("+{key}"));
            continue;
        };
        let addr = |e: &EndpointView| format!("{}:{}", e.ip, e.port);
        let before: BTreeMap<String, &EndpointView> =
            o.view.endpoints.iter().map(|e| (addr(e), e)).collect();
        let after: BTreeMap<String, &EndpointView> =
            view.endpoints.iter().map(|e| (addr(e), e)).collect();
        let mut words = vec![key];
        for (a, e) in &after {
            match before.get(a) {
                None => words.push(format!("+{a}")),
                Some(b) if b != e => {
                    let state = if e.ready {
                        "ready"
                    } else if e.terminating {
                        "terminating"
                    } else {
                        "not ready"
                    };
                    words.push(format!("~{a} {state}"));
                }
                Some(_) => {}
            }
        }
        for a in before.keys().filter(|a| !after.contains_key(*a)) {
            words.push(format!("-{a}"));
        }
        if words.len() == 1 {
            words.push("spec changed".into());
        }
        items.push(words.join(" "));
    }
    items.extend(removed.into_iter().map(|k| format!("-{k}")));
    if !items.is_empty() {
        let more = items.len().saturating_sub(SUMMARY_ITEMS);
        items.truncate(SUMMARY_ITEMS);
        if more > 0 {
            items.push(format!("and {more} more"));
        }
        line.push_str("; ");
        line.push_str(&items.join("; "));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::{NodeIps, ProxyConfig, ProxyMode, compute_model, node_ips};
    use k8s_openapi::api::core::v1::Node;

    pub(crate) fn config(node: &str, host: bool) -> ProxyConfig {
        ProxyConfig {
            node: node.into(),
            node_ip: "10.244.1.1".parse().unwrap(),
            pod_cidr: "10.244.1.0/24".parse().unwrap(),
            cluster_cidr: "10.244.0.0/14".parse().unwrap(),
            host,
            table: format!("orrery_t_{node}"),
            mode: ProxyMode::Compute,
            netns: None,
        }
    }

    fn service(name: &str, extra: serde_json::Value) -> Arc<Service> {
        let mut spec = serde_json::json!({
            "clusterIP": "10.96.0.20",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "web"}],
        });
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                spec.insert(k.clone(), v.clone());
            }
        }
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"namespace": "default", "name": name, "resourceVersion": "1"},
                "spec": spec,
            }))
            .unwrap(),
        )
    }

    /// An endpoint: (ip, node, ready, serving, terminating).
    type Ep<'a> = (&'a str, &'a str, bool, bool, bool);

    fn slice(service: &str, endpoints: &[Ep<'_>]) -> Arc<EndpointSlice> {
        let endpoints: Vec<_> = endpoints
            .iter()
            .map(|(ip, node, ready, serving, terminating)| {
                serde_json::json!({
                    "addresses": [ip],
                    "nodeName": node,
                    "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
                })
            })
            .collect();
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"namespace": "default", "name": format!("{service}-abc"),
                    "resourceVersion": "1", "labels": {crate::apimachinery::labels::SERVICE_NAME: service}},
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                "endpoints": endpoints,
            }))
            .unwrap(),
        )
    }

    fn model(cfg: &ProxyConfig, services: &[Arc<Service>], slices: &[Arc<EndpointSlice>]) -> Model {
        compute_model(cfg, services, slices, &[])
    }

    fn rules_of(m: &Model) -> String {
        render_full("t", None, m, true)
    }

    const READY: (bool, bool, bool) = (true, true, false);

    fn ep<'a>(ip: &'a str, node: &'a str, c: (bool, bool, bool)) -> Ep<'a> {
        (ip, node, c.0, c.1, c.2)
    }

    #[test]
    fn ready_endpoints_are_picked_at_random_and_dnat_with_the_target_port() {
        let cfg = config("node-1", false);
        let m = model(
            &cfg,
            &[service("web", serde_json::json!({}))],
            &[slice(
                "web",
                &[
                    ep("10.244.1.5", "node-1", READY),
                    ep("10.244.2.3", "node-2", READY),
                ],
            )],
        );
        let text = rules_of(&m);
        // No affinity: the service chain picks and DNATs by itself, no endpoint chains.
        assert!(
            text.contains("meta l4proto tcp dnat to numgen random mod 2 map { 0 : 10.244.1.5 . 8080, 1 : 10.244.2.3 . 8080 }"),
            "{text}"
        );
        assert!(!text.contains("chain ip t endpoint-"), "{text}");
        assert!(
            text.contains("add element ip t service-ips { 10.96.0.20 . tcp . 80 : goto service-"),
            "{text}"
        );
        // Pod-to-pod through a Service is masqueraded (one bridge).
        assert!(text.contains("ip saddr 10.244.0.0/14 jump mark-for-masquerade"));
        assert!(
            !text.contains("add element ip t no-endpoint-services"),
            "{text}"
        );
        // Scoped to this node's pods and address.
        assert!(text.contains(
            "add rule ip t nat-prerouting ip saddr 10.244.1.0/24 ip daddr . meta l4proto . th dport vmap @service-ips"
        ));
        assert!(
            !text.contains("add rule ip t nat-output ip daddr . meta"),
            "not the host"
        );
    }

    #[test]
    fn terminating_endpoints_serve_only_when_none_is_ready() {
        let cfg = config("node-1", false);
        let services = [service("web", serde_json::json!({}))];
        let m = model(
            &cfg,
            &services,
            &[slice(
                "web",
                &[
                    ep("10.244.1.5", "node-1", READY),
                    ep("10.244.1.6", "node-1", (false, true, true)),
                ],
            )],
        );
        let text = rules_of(&m);
        assert!(text.contains("dnat to 10.244.1.5:8080"), "{text}");
        assert!(!text.contains("10.244.1.6"), "{text}");
        let m = model(
            &cfg,
            &services,
            &[slice(
                "web",
                &[
                    ep("10.244.1.6", "node-1", (false, true, true)),
                    ep("10.244.1.7", "node-1", (false, false, true)),
                ],
            )],
        );
        let text = rules_of(&m);
        assert!(text.contains("dnat to 10.244.1.6:8080"));
        assert!(!text.contains("dnat to 10.244.1.7"));
    }

    #[test]
    fn no_endpoints_rejects_and_local_policy_without_local_endpoints_drops() {
        let cfg = config("node-1", false);
        let m = model(&cfg, &[service("web", serde_json::json!({}))], &[]);
        let text = rules_of(&m);
        assert!(
            text.contains("add element ip t no-endpoint-services { 10.96.0.20 . tcp . 80 : goto reject-chain }"),
            "{text}"
        );
        assert!(!text.contains("service-ips { 10.96"));

        let local = service("web", serde_json::json!({"internalTrafficPolicy": "Local"}));
        let m = model(
            &cfg,
            std::slice::from_ref(&local),
            &[slice("web", &[ep("10.244.2.3", "node-2", READY)])],
        );
        let text = rules_of(&m);
        assert!(
            text.contains("no-endpoint-services { 10.96.0.20 . tcp . 80 : drop }"),
            "{text}"
        );
        let m = model(
            &cfg,
            &[local],
            &[slice(
                "web",
                &[
                    ep("10.244.2.3", "node-2", READY),
                    ep("10.244.1.5", "node-1", READY),
                ],
            )],
        );
        let text = rules_of(&m);
        assert!(
            text.contains("service-ips { 10.96.0.20 . tcp . 80 : goto local-"),
            "{text}"
        );
        assert!(
            !text.contains("dnat to 10.244.2.3"),
            "only local endpoints: {text}"
        );
    }

    #[test]
    fn node_ports_go_through_the_external_chain_with_either_policy() {
        let cfg = config("node-1", false);
        let np = |policy: &str| {
            service(
                "web",
                serde_json::json!({"type": "NodePort", "externalTrafficPolicy": policy,
                    "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}),
            )
        };
        let remote = [slice("web", &[ep("10.244.2.3", "node-2", READY)])];
        let text = rules_of(&model(&cfg, &[np("Cluster")], &remote));
        assert!(
            text.contains("service-nodeports { tcp . 30080 : goto external-"),
            "{text}"
        );
        assert!(
            text.contains("ip daddr 10.244.1.1 meta l4proto . th dport vmap @service-nodeports")
        );
        let external: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("rule ip t external-"))
            .collect();
        assert!(
            external[0].ends_with("jump mark-for-masquerade"),
            "{external:?}"
        );

        let text = rules_of(&model(&cfg, &[np("Local")], &remote));
        assert!(
            text.contains("no-endpoint-nodeports { tcp . 30080 : drop }"),
            "{text}"
        );
        // The ClusterIP still works from pods.
        assert!(text.contains("service-ips { 10.96.0.20 . tcp . 80 : goto service-"));

        let both = [slice(
            "web",
            &[
                ep("10.244.2.3", "node-2", READY),
                ep("10.244.1.5", "node-1", READY),
            ],
        )];
        let text = rules_of(&model(&cfg, &[np("Local")], &both));
        assert!(
            text.contains("service-nodeports { tcp . 30080 : goto external-"),
            "{text}"
        );
        assert!(text.contains("fib saddr type local jump mark-for-masquerade"));
        let local: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("rule ip t local-") && l.contains("dnat"))
            .collect();
        assert_eq!(local.len(), 1, "{local:?}");
        // Only node-1's own endpoint, DNATed by the chain itself.
        assert!(local[0].contains("dnat to 10.244.1.5:8080"), "{local:?}");
    }

    #[test]
    fn load_balancer_ips_are_caught_like_cluster_ips() {
        let cfg = config("node-1", false);
        let mut lb = (*service(
            "web",
            serde_json::json!({"type": "LoadBalancer", "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}),
        ))
        .clone();
        lb.status = Some(
            serde_json::from_value(
                serde_json::json!({"loadBalancer": {"ingress": [{"ip": "172.18.0.5"}]}}),
            )
            .unwrap(),
        );
        let text = rules_of(&model(
            &cfg,
            &[Arc::new(lb)],
            &[slice("web", &[ep("10.244.2.3", "node-2", READY)])],
        ));
        assert!(
            text.contains("service-ips { 172.18.0.5 . tcp . 80 : goto external-"),
            "{text}"
        );
    }

    #[test]
    fn client_ip_affinity_keeps_a_set_per_endpoint() {
        let cfg = config("node-1", false);
        let svc = service(
            "web",
            serde_json::json!({"sessionAffinity": "ClientIP",
                "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}),
        );
        let text = rules_of(&model(
            &cfg,
            &[svc],
            &[slice("web", &[ep("10.244.2.3", "node-2", READY)])],
        ));
        assert!(
            text.contains("flags dynamic,timeout; timeout 60s;"),
            "{text}"
        );
        assert!(text.contains("update @affinity-"), "{text}");
        let service_rules: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("rule ip t service-"))
            .collect();
        assert!(
            service_rules[0].contains("ip saddr @affinity-"),
            "{service_rules:?}"
        );
        let svc = service("web", serde_json::json!({"sessionAffinity": "ClientIP"}));
        let text = rules_of(&model(
            &cfg,
            &[svc],
            &[slice("web", &[ep("10.244.2.3", "node-2", READY)])],
        ));
        assert!(text.contains("timeout 10800s;"));
    }

    #[test]
    fn host_endpoints_are_not_masqueraded_and_the_host_node_catches_its_own_traffic() {
        let cfg = config("node-0", true);
        let node: Node = serde_json::from_value(serde_json::json!({"metadata": {"name": "cp"},
            "status": {"addresses": [{"type": "InternalIP", "address": "10.244.0.1"}]}}))
        .unwrap();
        let node = Arc::new(NodeIps::new(&node, node_ips(&node)));
        let dns = service(
            "kube-dns",
            serde_json::json!({"clusterIP": "10.96.0.10",
            "ports": [{"name": "http", "port": 53, "protocol": "UDP"}]}),
        );
        let mut s = (*slice("kube-dns", &[ep("10.244.0.1", "cp", READY)])).clone();
        s.ports = Some(vec![
            serde_json::from_value(
                serde_json::json!({"name": "http", "port": 53, "protocol": "UDP"}),
            )
            .unwrap(),
        ]);
        let m = compute_model(&cfg, &[dns], &[Arc::new(s)], &[node]);
        let text = rules_of(&m);
        assert!(
            text.contains("meta l4proto udp dnat to 10.244.0.1:53"),
            "{text}"
        );
        assert!(!text.contains("jump mark-for-masquerade\n"), "{text}");
        assert!(text.contains(
            "add rule ip t nat-output ip daddr . meta l4proto . th dport vmap @service-ips"
        ));
    }

    #[test]
    fn headless_and_external_name_services_are_ignored() {
        let cfg = config("node-1", false);
        let m = model(
            &cfg,
            &[
                service("headless", serde_json::json!({"clusterIP": "None"})),
                service(
                    "ext",
                    serde_json::json!({"type": "ExternalName", "externalName": "example.com"}),
                ),
            ],
            &[],
        );
        assert!(m.services.is_empty());
    }

    #[test]
    fn a_partial_sync_touches_only_the_changed_service_and_says_what_changed() {
        let cfg = config("node-1", false);
        let services = [
            service("web", serde_json::json!({})),
            service("api", serde_json::json!({"clusterIP": "10.96.0.21"})),
        ];
        let before = model(
            &cfg,
            &services,
            &[
                slice("web", &[ep("10.244.2.3", "node-2", READY)]),
                slice("api", &[ep("10.244.2.9", "node-2", READY)]),
            ],
        );
        let after = model(
            &cfg,
            &services,
            &[
                slice("web", &[ep("10.244.1.5", "node-1", READY)]),
                slice("api", &[ep("10.244.2.9", "node-2", READY)]),
            ],
        );
        let diff = render_diff("t", &before, &after).unwrap();
        assert!(!diff.contains("default/api"), "{diff}");
        assert!(diff.contains("flush chain ip t service-"), "{diff}");
        assert!(diff.contains("dnat to 10.244.1.5:8080"));
        // Without affinity the service chain DNATs by itself: no endpoint chains to make or drop.
        assert!(!diff.contains("chain ip t endpoint-"), "{diff}");
        assert!(
            !diff.contains("service-ips"),
            "the ClusterIP's element is unchanged: {diff}"
        );
        assert_eq!(
            summarize(&before, &after),
            "2 services, 2 endpoints; default/web +10.244.1.5:8080 -10.244.2.3:8080"
        );
        assert_eq!(render_diff("t", &after, &after).unwrap(), "");

        let gone = model(
            &cfg,
            &services,
            &[slice("api", &[ep("10.244.2.9", "node-2", READY)])],
        );
        let diff = render_diff("t", &after, &gone).unwrap();
        assert!(
            diff.contains("delete element ip t service-ips { 10.96.0.20 . tcp . 80 }"),
            "{diff}"
        );
        assert!(diff.contains(
            "add element ip t no-endpoint-services { 10.96.0.20 . tcp . 80 : goto reject-chain }"
        ));
        assert_eq!(
            summarize(&after, &gone),
            "2 services, 1 endpoints; default/web -10.244.1.5:8080"
        );
        let removed = model(
            &cfg,
            &services[1..],
            &[slice("api", &[ep("10.244.2.9", "node-2", READY)])],
        );
        assert_eq!(
            summarize(&gone, &removed),
            "1 services, 1 endpoints; -default/web"
        );
        assert_eq!(
            summarize(&Model::default(), &removed),
            "1 services, 1 endpoints; +default/api"
        );
    }
}
