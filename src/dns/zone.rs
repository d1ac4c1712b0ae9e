//! The cluster zone as the Kubernetes DNS-Based Service Discovery specification lays it out,
//! built from the Services, EndpointSlices and Pods caches into one in-memory index (rebuilt on
//! every batch of changes), and the pure function that answers one query from it.
//!
//! Records (`<domain>` is `cluster.local` by default, TTL 30 s as kubeadm's CoreDNS):
//! - ClusterIP Service: `<svc>.<ns>.svc.<domain>` A/AAAA its ClusterIPs; `_<port>._<proto>.<svc>.
//!   <ns>.svc.<domain>` SRV per named port; PTR from each ClusterIP.
//! - Headless Service: `<svc>.<ns>.svc.<domain>` A its ready endpoints' IPs;
//!   `<host>.<svc>.<ns>.svc.<domain>` A per endpoint (`<host>` its `hostname`, else its IP with
//!   dashes, as CoreDNS); SRV per named port and endpoint, targeting `<host>...`; PTR from each
//!   endpoint IP to `<host>...`.
//! - ExternalName Service: `<svc>.<ns>.svc.<domain>` CNAME `externalName`.
//! - Pods: `a-b-c-d.<ns>.pod.<domain>` A `a.b.c.d` (CoreDNS's `pods insecure`, kubeadm's
//!   default), PTR from a pod IP that no Service or endpoint claims.
//! - `dns-version.<domain>` TXT `1.1.0`; the SOA at `<domain>`, also in the authority section
//!   of every NXDOMAIN and empty answer.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::apimachinery::labels::SERVICE_NAME as SERVICE_NAME_LABEL;
use crate::informers::Keyed;

/// The TTL of every record (kubeadm's Corefile says `ttl 30`).
pub const TTL: u32 = 30;
/// The schema version `dns-version.<domain>` answers.
const SCHEMA_VERSION: &str = "1.1.0";

/// The records of one name.
#[derive(Debug, Default)]
struct Node {
    records: Vec<Record>,
    /// What a SRV answer carries in its additional section (its targets' addresses).
    additionals: Vec<Record>,
}

/// Who a pod IP belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRef {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
}

/// The index one query is answered from.
#[derive(Debug)]
pub struct Zone {
    domain: Name,
    /// The `pod.<domain>` subtree.
    pod_domain: Name,
    names: HashMap<Name, Node>,
    pods: HashMap<IpAddr, Arc<PodRef>>,
    soa: Record,
}

/// What the server does with a query.
#[derive(Debug)]
pub enum Outcome {
    /// Answered from the zone: the response and a line for the flow (`→ 10.96.0.12`).
    Answered(Message, String),
    /// Not the cluster's: forward it to the host's resolvers.
    Forward,
}

fn name(text: &str) -> Option<Name> {
    let mut name = Name::from_ascii(text).ok()?;
    name.set_fqdn(true);
    Some(name)
}

fn record(name: &Name, data: RData) -> Record {
    Record::from_rdata(name.clone(), TTL, data)
}

fn address(name: &Name, ip: IpAddr) -> Record {
    match ip {
        IpAddr::V4(ip) => record(name, RData::A(A(ip))),
        IpAddr::V6(ip) => record(name, RData::AAAA(AAAA(ip))),
    }
}

/// The in-addr.arpa (or ip6.arpa) name of an address.
pub fn reverse_name(ip: IpAddr) -> Option<Name> {
    let text = match ip {
        IpAddr::V4(ip) => {
            let [a, b, c, d] = ip.octets();
            format!("{d}.{c}.{b}.{a}.in-addr.arpa.")
        }
        IpAddr::V6(ip) => {
            let mut text = String::new();
            for byte in ip.octets().iter().rev() {
                text.push_str(&format!("{:x}.{:x}.", byte & 0xf, byte >> 4));
            }
            text + "ip6.arpa."
        }
    };
    name(&text)
}

/// The address an in-addr.arpa (or ip6.arpa) name is the reverse of.
fn ip_of_reverse(name: &Name) -> Option<IpAddr> {
    let text = name.to_ascii().to_ascii_lowercase();
    let text = text.trim_end_matches('.');
    if let Some(v4) = text.strip_suffix(".in-addr.arpa") {
        let mut octets: Vec<u8> = v4
            .split('.')
            .map(|o| o.parse().ok())
            .collect::<Option<_>>()?;
        octets.reverse();
        let octets: [u8; 4] = octets.try_into().ok()?;
        return Some(IpAddr::from(octets));
    }
    let v6 = text.strip_suffix(".ip6.arpa")?;
    let nibbles: Vec<u8> = v6
        .split('.')
        .map(|n| u8::from_str_radix(n, 16).ok().filter(|_| n.len() == 1))
        .collect::<Option<_>>()?;
    if nibbles.len() != 32 {
        return None;
    }
    let mut octets = [0u8; 16];
    for (i, pair) in nibbles.rchunks(2).enumerate() {
        octets[i] = (pair[1] << 4) | pair[0];
    }
    Some(IpAddr::from(octets))
}

/// An IP with dashes for dots (`10-244-1-5`), as CoreDNS names an endpoint without a hostname.
fn dashed(ip: IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "-")
}

/// What the zone keeps of a pod: its namespace and name, and the address it answers on
/// (`None` before it has one, and for a pod on the host's network, whose address is its
/// node's). The DNS server watches every pod (to name the pod that asks, and for the pods' PTR
/// records) and keeps no more than this of each.
pub type PodAddress = Keyed<Pod, Option<IpAddr>>;

/// The address the zone keeps for `pod` (see [`PodAddress`]).
pub fn pod_address(pod: &Pod) -> Option<IpAddr> {
    let host_network = pod.spec.as_ref().and_then(|s| s.host_network) == Some(true);
    pod_ip(pod).filter(|_| !host_network)
}

fn pod_ip(pod: &Pod) -> Option<IpAddr> {
    let status = pod.status.as_ref()?;
    status
        .pod_ip
        .as_deref()
        .filter(|ip| !ip.is_empty())
        .or_else(|| Some(status.pod_ips.as_ref()?.first()?.ip.as_str()))?
        .parse()
        .ok()
}

impl Zone {
    /// An empty zone for `domain` (`cluster.local`).
    pub fn empty(domain: &str) -> Zone {
        Zone::build(domain, &[], &[], &[])
    }

    /// The zone of these objects.
    pub fn build(
        domain: &str,
        services: &[Arc<Service>],
        slices: &[Arc<EndpointSlice>],
        pods: &[Arc<PodAddress>],
    ) -> Zone {
        let domain_name = name(domain.trim_end_matches('.'))
            .unwrap_or_else(|| name("cluster.local").expect("a valid name"));
        let domain = domain_name.to_ascii();
        let domain = domain.trim_end_matches('.');
        let soa = record(
            &domain_name,
            RData::SOA(SOA::new(
                name(&format!("ns.dns.{domain}")).unwrap_or_else(|| domain_name.clone()),
                name(&format!("hostmaster.{domain}")).unwrap_or_else(|| domain_name.clone()),
                1,
                7200,
                1800,
                86400,
                TTL,
            )),
        );
        let mut zone = Zone {
            pod_domain: name(&format!("pod.{domain}")).unwrap_or_else(|| domain_name.clone()),
            domain: domain_name.clone(),
            names: HashMap::new(),
            pods: HashMap::new(),
            soa: soa.clone(),
        };
        zone.node(&domain_name).records.push(soa);
        for intermediate in [format!("svc.{domain}"), format!("pod.{domain}")] {
            if let Some(n) = name(&intermediate) {
                zone.node(&n);
            }
        }
        if let Some(n) = name(&format!("dns-version.{domain}")) {
            let txt = record(&n, RData::TXT(TXT::new(vec![SCHEMA_VERSION.into()])));
            zone.node(&n).records.push(txt);
        }

        // Endpoint slices by Service.
        let mut by_service: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
        for slice in slices {
            let service = slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL));
            if let (Some(namespace), Some(service)) = (slice.metadata.namespace.as_deref(), service)
            {
                by_service
                    .entry((namespace, service.as_str()))
                    .or_default()
                    .push(slice);
            }
        }
        for service in services {
            let (Some(namespace), Some(svc)) = (
                service.metadata.namespace.as_deref(),
                service.metadata.name.as_deref(),
            ) else {
                continue;
            };
            let Some(base) = name(&format!("{svc}.{namespace}.svc.{domain}")) else {
                continue;
            };
            if let Some(ns) = name(&format!("{namespace}.svc.{domain}")) {
                zone.node(&ns);
            }
            let spec = service.spec.clone().unwrap_or_default();
            if spec.type_.as_deref() == Some("ExternalName") {
                if let Some(target) = spec.external_name.as_deref().and_then(name) {
                    zone.node(&base)
                        .records
                        .push(record(&base, RData::CNAME(CNAME(target))));
                }
                continue;
            }
            let cluster_ips: Vec<IpAddr> = spec
                .cluster_ips
                .clone()
                .or_else(|| spec.cluster_ip.clone().map(|ip| vec![ip]))
                .unwrap_or_default()
                .iter()
                .filter_map(|ip| ip.parse().ok())
                .collect();
            let headless = spec.cluster_ip.as_deref() == Some("None");
            if !headless {
                // An ordinary Service, once it has its ClusterIP.
                zone.node(&base);
                for ip in &cluster_ips {
                    zone.node(&base).records.push(address(&base, *ip));
                    if let Some(reverse) = reverse_name(*ip) {
                        zone.node(&reverse)
                            .records
                            .push(record(&reverse, RData::PTR(PTR(base.clone()))));
                    }
                }
                for port in spec.ports.iter().flatten() {
                    let protocol = port.protocol.as_deref().unwrap_or("TCP");
                    zone.srv(
                        &base,
                        port.name.as_deref(),
                        protocol,
                        port.port,
                        &base,
                        &cluster_ips,
                    );
                }
                continue;
            }
            // A headless Service: its ready endpoints.
            zone.node(&base);
            let publish_not_ready = spec.publish_not_ready_addresses.unwrap_or(false);
            for slice in by_service.get(&(namespace, svc)).into_iter().flatten() {
                for endpoint in &slice.endpoints {
                    let ready = crate::apimachinery::services::endpoint_ready(endpoint);
                    if !ready && !publish_not_ready {
                        continue;
                    }
                    let ips: Vec<IpAddr> = endpoint
                        .addresses
                        .iter()
                        .filter_map(|ip| ip.parse().ok())
                        .collect();
                    let Some(first) = ips.first() else { continue };
                    let host = endpoint
                        .hostname
                        .clone()
                        .filter(|h| !h.is_empty())
                        .unwrap_or_else(|| dashed(*first));
                    let Ok(target) = base.prepend_label(host.as_str()) else {
                        continue;
                    };
                    for ip in &ips {
                        zone.node(&base).records.push(address(&base, *ip));
                        zone.node(&target).records.push(address(&target, *ip));
                        if let Some(reverse) = reverse_name(*ip) {
                            zone.node(&reverse)
                                .records
                                .push(record(&reverse, RData::PTR(PTR(target.clone()))));
                        }
                    }
                    for port in slice.ports.iter().flatten() {
                        if let Some(number) = port.port {
                            zone.srv(
                                &base,
                                port.name.as_deref(),
                                port.protocol.as_deref().unwrap_or("TCP"),
                                number,
                                &target,
                                &ips,
                            );
                        }
                    }
                }
            }
        }
        // A pod's PTR (from an IP no Service or endpoint claims) is made when asked for, from
        // this map: built here for every pod, it would be most of the zone.
        for pod in pods {
            let Some(ip) = pod.value else { continue };
            zone.pods.insert(
                ip,
                Arc::new(PodRef {
                    namespace: pod.namespace.clone().unwrap_or_default(),
                    name: pod.name.clone(),
                }),
            );
        }
        // Sort each name's records so answers are stable (and equal sets compare equal).
        for node in zone.names.values_mut() {
            node.records.sort_by_key(|r| r.data.to_string());
            node.records.dedup_by(|a, b| a.data == b.data);
            node.additionals.sort_by_key(|r| r.name.to_ascii());
            node.additionals
                .dedup_by(|a, b| a.name == b.name && a.data == b.data);
        }
        zone
    }

    fn node(&mut self, name: &Name) -> &mut Node {
        self.names.entry(name.clone()).or_default()
    }

    fn srv(
        &mut self,
        base: &Name,
        port_name: Option<&str>,
        protocol: &str,
        port: i32,
        target: &Name,
        target_ips: &[IpAddr],
    ) {
        let Some(port_name) = port_name.filter(|n| !n.is_empty()) else {
            return;
        };
        let (Ok(port), Ok(srv_name)) = (
            u16::try_from(port),
            base.prepend_label(format!("_{}", protocol.to_ascii_lowercase()).as_str())
                .and_then(|n| n.prepend_label(format!("_{port_name}").as_str())),
        ) else {
            return;
        };
        let node = self.node(&srv_name);
        node.records.push(record(
            &srv_name,
            RData::SRV(SRV::new(0, 100, port, target.clone())),
        ));
        for ip in target_ips {
            node.additionals.push(address(target, *ip));
        }
    }

    /// The pod whose IP this is, if any.
    pub fn pod(&self, ip: IpAddr) -> Option<&Arc<PodRef>> {
        self.pods.get(&ip)
    }

    /// Whether a name is this zone's to answer: under the cluster domain, or a reverse name
    /// the zone has a PTR for.
    pub fn owns(&self, name: &Name) -> bool {
        self.domain.zone_of(name)
            || self.names.contains_key(name)
            || ip_of_reverse(name).is_some_and(|ip| self.pods.contains_key(&ip))
    }

    /// Answers `request`, or says it is not the cluster's.
    pub fn answer(&self, request: &Message) -> Outcome {
        let mut response = Message::new(request.metadata.id, MessageType::Response, OpCode::Query);
        response.metadata.op_code = request.metadata.op_code;
        response.metadata.recursion_desired = request.metadata.recursion_desired;
        response.metadata.recursion_available = true;
        if request.edns.is_some() {
            let mut edns = Edns::new();
            edns.set_max_payload(1232);
            response.edns = Some(edns);
        }
        if request.metadata.message_type != MessageType::Query
            || request.metadata.op_code != OpCode::Query
        {
            response.metadata.response_code = ResponseCode::NotImp;
            return Outcome::Answered(response, "→ NOTIMP".into());
        }
        let [query] = request.queries.as_slice() else {
            response.metadata.response_code = ResponseCode::FormErr;
            return Outcome::Answered(response, "→ FORMERR".into());
        };
        let qname = query.name();
        if !self.owns(qname) {
            return Outcome::Forward;
        }
        response.add_query(query.clone());
        response.metadata.authoritative = true;
        if query.query_class() != DNSClass::IN {
            response.metadata.response_code = ResponseCode::Refused;
            return Outcome::Answered(response, "→ REFUSED".into());
        }
        let qtype = query.query_type();
        let pod_record;
        let node = match self.names.get(qname) {
            Some(node) => Some(node),
            None => {
                pod_record = self.pod_address(qname).or_else(|| self.pod_pointer(qname));
                pod_record.as_ref()
            }
        };
        let Some(node) = node else {
            response.metadata.response_code = ResponseCode::NXDomain;
            response.add_authority(self.soa.clone());
            return Outcome::Answered(response, format!("{qname} → NXDOMAIN"));
        };
        let matching: Vec<&Record> = node
            .records
            .iter()
            .filter(|r| qtype == RecordType::ANY || r.record_type() == qtype)
            .collect();
        if matching.is_empty() {
            // A CNAME answers every type; chase it inside the zone.
            if let Some(cname) = node
                .records
                .iter()
                .find(|r| r.record_type() == RecordType::CNAME)
            {
                response.add_answer(cname.clone());
                let mut detail = format!("{qname} → CNAME {}", cname.data);
                if let RData::CNAME(CNAME(target)) = &cname.data
                    && let Some(chased) = self.names.get(target)
                {
                    for r in chased.records.iter().filter(|r| r.record_type() == qtype) {
                        detail.push_str(&format!(" {}", r.data));
                        response.add_answer(r.clone());
                    }
                }
                return Outcome::Answered(response, detail);
            }
            response.add_authority(self.soa.clone());
            return Outcome::Answered(response, format!("{qname} → no {qtype} records"));
        }
        let mut detail = format!("{qname} →");
        for (i, r) in matching.iter().enumerate() {
            if i < 4 {
                detail.push_str(if i == 0 { " " } else { ", " });
                detail.push_str(&r.data.to_string());
            } else if i == 4 {
                detail.push_str(&format!(" (+{} more)", matching.len() - 4));
            }
        }
        response.add_answers(matching.into_iter().cloned());
        if qtype == RecordType::SRV || qtype == RecordType::ANY {
            response.add_additionals(node.additionals.iter().cloned());
        }
        Outcome::Answered(response, detail)
    }

    /// A pod IP's PTR record, to `a-b-c-d.<ns>.pod.<domain>`.
    fn pod_pointer(&self, qname: &Name) -> Option<Node> {
        let ip = ip_of_reverse(qname)?;
        let pod = self.pods.get(&ip)?;
        let target = name(&format!(
            "{}.{}.{}",
            dashed(ip),
            pod.namespace,
            self.pod_domain.to_ascii()
        ))?;
        Some(Node {
            records: vec![record(qname, RData::PTR(PTR(target)))],
            additionals: Vec::new(),
        })
    }

    /// `a-b-c-d.<ns>.pod.<domain>`'s A record.
    fn pod_address(&self, qname: &Name) -> Option<Node> {
        if !self.pod_domain.zone_of(qname) || qname.num_labels() != self.pod_domain.num_labels() + 2
        {
            return None;
        }
        let label = qname.iter().next()?;
        let ip: Ipv4Addr = std::str::from_utf8(label)
            .ok()?
            .replace('-', ".")
            .parse()
            .ok()?;
        Some(Node {
            records: vec![address(qname, IpAddr::V4(ip))],
            additionals: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use serde_json::json;

    fn zone() -> Zone {
        let services: Vec<Arc<Service>> = [
            json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {
                "clusterIP": "10.96.0.12", "clusterIPs": ["10.96.0.12"],
                "ports": [{"name": "http", "port": 80, "protocol": "TCP"}, {"port": 81}]}}),
            json!({"metadata": {"name": "db", "namespace": "shop"}, "spec": {
                "clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}}),
            json!({"metadata": {"name": "ext", "namespace": "default"}, "spec": {
                "type": "ExternalName", "externalName": "example.com"}}),
            json!({"metadata": {"name": "alias", "namespace": "default"}, "spec": {
                "type": "ExternalName", "externalName": "web.default.svc.cluster.local"}}),
        ]
        .into_iter()
        .map(|v| Arc::new(serde_json::from_value(v).unwrap()))
        .collect();
        let slices: Vec<Arc<EndpointSlice>> = [json!({
            "metadata": {"name": "db-abc", "namespace": "shop", "labels": {SERVICE_NAME_LABEL: "db"}},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.244.1.5"], "hostname": "db-0", "conditions": {"ready": true}},
                {"addresses": ["10.244.2.7"], "conditions": {"ready": true}},
                {"addresses": ["10.244.2.9"], "hostname": "db-2", "conditions": {"ready": false}},
            ],
            "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
        })]
        .into_iter()
        .map(|v| Arc::new(serde_json::from_value(v).unwrap()))
        .collect();
        let pods: Vec<Arc<PodAddress>> = [
            json!({"metadata": {"name": "client", "namespace": "default"}, "spec": {"containers": []},
                "status": {"podIP": "10.244.1.9"}}),
            json!({"metadata": {"name": "db-0", "namespace": "shop"}, "spec": {"containers": []},
                "status": {"podIP": "10.244.1.5"}}),
            json!({"metadata": {"name": "agent", "namespace": "default"},
                "spec": {"containers": [], "hostNetwork": true}, "status": {"podIP": "10.0.0.7"}}),
        ]
        .into_iter()
        .map(|v| {
            let pod: Pod = serde_json::from_value(v).unwrap();
            Arc::new(PodAddress::new(&pod, pod_address(&pod)))
        })
        .collect();
        Zone::build("cluster.local", &services, &slices, &pods)
    }

    /// The rcode, the answers and the additionals as text, and whether an SOA is in the
    /// authority section; `None` when forwarded.
    fn ask(
        zone: &Zone,
        name: &str,
        qtype: RecordType,
    ) -> Option<(ResponseCode, Vec<String>, Vec<String>, bool)> {
        let mut request = Message::new(7, MessageType::Query, OpCode::Query);
        request.metadata.recursion_desired = true;
        request.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        // Through the wire format, as a client sends it.
        let request = Message::from_vec(&request.to_vec().unwrap()).unwrap();
        let Outcome::Answered(response, _) = zone.answer(&request) else {
            return None;
        };
        let response = Message::from_vec(&response.to_vec().unwrap()).unwrap();
        assert_eq!(response.metadata.id, 7);
        assert!(response.metadata.authoritative);
        let text = |records: &[Record]| {
            records
                .iter()
                .map(|r| format!("{} {} {}", r.name, r.record_type(), r.data))
                .collect::<Vec<_>>()
        };
        Some((
            response.metadata.response_code,
            text(&response.answers),
            text(&response.additionals),
            response
                .authorities
                .iter()
                .any(|r| r.record_type() == RecordType::SOA),
        ))
    }

    fn answers(zone: &Zone, name: &str, qtype: RecordType) -> Vec<String> {
        let (code, answers, _, _) = ask(zone, name, qtype).expect("answered");
        assert_eq!(code, ResponseCode::NoError, "{name} {qtype}");
        answers
    }

    #[test]
    fn cluster_ip_services() {
        let z = zone();
        assert_eq!(
            answers(&z, "web.default.svc.cluster.local.", RecordType::A),
            ["web.default.svc.cluster.local. A 10.96.0.12"]
        );
        // Case does not matter.
        assert_eq!(
            answers(&z, "WEB.Default.svc.cluster.local.", RecordType::A).len(),
            1
        );
        // IPv4 only: AAAA is an empty NOERROR, with the SOA.
        let (code, none, _, soa) =
            ask(&z, "web.default.svc.cluster.local.", RecordType::AAAA).unwrap();
        assert_eq!((code, none.len(), soa), (ResponseCode::NoError, 0, true));
        // SRV for named ports only, with the target's address as additional.
        let (_, srv, extra, _) = ask(
            &z,
            "_http._tcp.web.default.svc.cluster.local.",
            RecordType::SRV,
        )
        .unwrap();
        assert_eq!(
            srv,
            [
                "_http._tcp.web.default.svc.cluster.local. SRV 0 100 80 web.default.svc.cluster.local."
            ]
        );
        assert_eq!(extra, ["web.default.svc.cluster.local. A 10.96.0.12"]);
        assert_eq!(
            answers(&z, "12.0.96.10.in-addr.arpa.", RecordType::PTR),
            ["12.0.96.10.in-addr.arpa. PTR web.default.svc.cluster.local."]
        );
    }

    #[test]
    fn headless_services_and_their_endpoints() {
        let z = zone();
        assert_eq!(
            answers(&z, "db.shop.svc.cluster.local.", RecordType::A),
            [
                "db.shop.svc.cluster.local. A 10.244.1.5",
                "db.shop.svc.cluster.local. A 10.244.2.7"
            ]
        );
        assert_eq!(
            answers(&z, "db-0.db.shop.svc.cluster.local.", RecordType::A),
            ["db-0.db.shop.svc.cluster.local. A 10.244.1.5"]
        );
        // Without a hostname: its dashed IP, as CoreDNS.
        assert_eq!(
            answers(&z, "10-244-2-7.db.shop.svc.cluster.local.", RecordType::A),
            ["10-244-2-7.db.shop.svc.cluster.local. A 10.244.2.7"]
        );
        // Not ready: not published.
        let (code, ..) = ask(&z, "db-2.db.shop.svc.cluster.local.", RecordType::A).unwrap();
        assert_eq!(code, ResponseCode::NXDomain);
        let (_, srv, extra, _) =
            ask(&z, "_pg._tcp.db.shop.svc.cluster.local.", RecordType::SRV).unwrap();
        assert_eq!(
            srv,
            [
                "_pg._tcp.db.shop.svc.cluster.local. SRV 0 100 5432 10-244-2-7.db.shop.svc.cluster.local.",
                "_pg._tcp.db.shop.svc.cluster.local. SRV 0 100 5432 db-0.db.shop.svc.cluster.local."
            ]
        );
        assert_eq!(
            extra,
            [
                "10-244-2-7.db.shop.svc.cluster.local. A 10.244.2.7",
                "db-0.db.shop.svc.cluster.local. A 10.244.1.5"
            ]
        );
        // An endpoint's PTR names its record, not the pod's.
        assert_eq!(
            answers(&z, "5.1.244.10.in-addr.arpa.", RecordType::PTR),
            ["5.1.244.10.in-addr.arpa. PTR db-0.db.shop.svc.cluster.local."]
        );
    }

    #[test]
    fn reverse_names_read_back_as_their_addresses() {
        for ip in ["10.244.1.9", "fd00:10:244::1:9", "::1"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_of_reverse(&reverse_name(ip).unwrap()), Some(ip), "{ip}");
        }
        for other in [
            "example.com.",
            "1.2.3.in-addr.arpa.",
            "x.2.3.4.in-addr.arpa.",
            "1.ip6.arpa.",
        ] {
            assert_eq!(
                ip_of_reverse(&Name::from_ascii(other).unwrap()),
                None,
                "{other}"
            );
        }
    }

    #[test]
    fn external_names_pods_and_the_rest() {
        let z = zone();
        assert_eq!(
            answers(&z, "ext.default.svc.cluster.local.", RecordType::A),
            ["ext.default.svc.cluster.local. CNAME example.com."]
        );
        assert_eq!(
            answers(&z, "ext.default.svc.cluster.local.", RecordType::CNAME),
            ["ext.default.svc.cluster.local. CNAME example.com."]
        );
        // A CNAME into the cluster is chased.
        assert_eq!(
            answers(&z, "alias.default.svc.cluster.local.", RecordType::A),
            [
                "alias.default.svc.cluster.local. CNAME web.default.svc.cluster.local.",
                "web.default.svc.cluster.local. A 10.96.0.12"
            ]
        );
        assert_eq!(
            answers(&z, "10-244-1-9.default.pod.cluster.local.", RecordType::A),
            ["10-244-1-9.default.pod.cluster.local. A 10.244.1.9"]
        );
        assert_eq!(
            answers(&z, "9.1.244.10.in-addr.arpa.", RecordType::PTR),
            ["9.1.244.10.in-addr.arpa. PTR 10-244-1-9.default.pod.cluster.local."]
        );
        assert_eq!(
            answers(&z, "dns-version.cluster.local.", RecordType::TXT),
            ["dns-version.cluster.local. TXT 1.1.0"]
        );
        assert_eq!(answers(&z, "cluster.local.", RecordType::SOA).len(), 1);
        // Missing names in the domain: NXDOMAIN with the SOA; intermediate names exist.
        for missing in [
            "nope.default.svc.cluster.local.",
            "web.nope.svc.cluster.local.",
            "x-y.default.pod.cluster.local.",
            "example.com.default.svc.cluster.local.",
        ] {
            let (code, answers, _, soa) = ask(&z, missing, RecordType::A).unwrap();
            assert_eq!(
                (code, answers.len(), soa),
                (ResponseCode::NXDomain, 0, true),
                "{missing}"
            );
        }
        let (code, ..) = ask(&z, "default.svc.cluster.local.", RecordType::A).unwrap();
        assert_eq!(code, ResponseCode::NoError);
        // Everything else is forwarded, unknown reverse names too.
        assert!(ask(&z, "example.com.", RecordType::A).is_none());
        assert!(ask(&z, "8.8.8.8.in-addr.arpa.", RecordType::PTR).is_none());
        // Who asked.
        assert_eq!(z.pod("10.244.1.9".parse().unwrap()).unwrap().name, "client");
        assert!(z.pod("10.244.3.3".parse().unwrap()).is_none());
        // A pod on the host's network has its node's address: neither a name nor a PTR.
        assert!(z.pod("10.0.0.7".parse().unwrap()).is_none());
        assert!(ask(&z, "7.0.0.10.in-addr.arpa.", RecordType::PTR).is_none());
    }

    #[test]
    fn another_cluster_domain() {
        let service: Service =
            serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.12"}}))
            .unwrap();
        let z = Zone::build("k8s.test", &[Arc::new(service)], &[], &[]);
        assert_eq!(
            answers(&z, "web.default.svc.k8s.test.", RecordType::A).len(),
            1
        );
        assert!(ask(&z, "web.default.svc.cluster.local.", RecordType::A).is_none());
    }
}
