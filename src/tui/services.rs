//! What the dashboard's Services view knows: Services as `kubectl get svc` prints them, their
//! EndpointSlices' endpoints, and what each node's kube-proxy last programmed (from its
//! `kube-proxy/<node> -> nftables SYNC` hops), and whether that is stale against the slices.
//! Pure data and functions; the model keeps them, the view draws them.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

/// One port of a Service.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortRow {
    /// Its name (may be empty).
    #[serde(default)]
    pub name: String,
    /// The Service port.
    #[serde(default)]
    pub port: i32,
    /// `TCP`, `UDP` or `SCTP`.
    #[serde(default)]
    pub protocol: String,
    /// The NodePort, if any.
    #[serde(default)]
    pub node_port: Option<i32>,
    /// The target port, as written (`8080`, `http`); empty in kube-proxy's data.
    #[serde(default, skip)]
    pub target_port: String,
}

/// A Service as the dashboard shows it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServiceRow {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// `spec.type`.
    pub type_: String,
    /// `spec.clusterIP` (`None` for a headless Service).
    pub cluster_ip: String,
    /// EXTERNAL-IP as kubectl prints it: external IPs and ingress addresses, `<pending>` for a
    /// LoadBalancer without one, `<none>` otherwise; an ExternalName's name.
    pub external: String,
    /// Its ports.
    pub ports: Vec<PortRow>,
    /// `metadata.creationTimestamp` (RFC 3339).
    pub created: String,
}

impl ServiceRow {
    /// PORT(S) as kubectl prints it: `80:31234/TCP,53/UDP`, `<none>`.
    pub fn ports_text(&self) -> String {
        if self.ports.is_empty() {
            return "<none>".to_owned();
        }
        self.ports
            .iter()
            .map(|p| {
                let proto = if p.protocol.is_empty() {
                    "TCP"
                } else {
                    &p.protocol
                };
                match p.node_port {
                    Some(np) if np != 0 => format!("{}:{np}/{proto}", p.port),
                    _ => format!("{}/{proto}", p.port),
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// One endpoint of an EndpointSlice (per address).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointRow {
    /// Its address.
    pub ip: String,
    /// `nodeName`.
    pub node: String,
    /// The pod, from `targetRef` (empty if none).
    pub pod: String,
    /// `conditions.ready` (absent = true).
    pub ready: bool,
    /// `conditions.serving` (absent = ready).
    pub serving: bool,
    /// `conditions.terminating` (absent = false).
    pub terminating: bool,
}

/// An EndpointSlice as the dashboard keeps it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SliceRow {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its Service (`kubernetes.io/service-name`).
    pub service: String,
    /// Its ports (name, port).
    pub ports: Vec<(String, i32)>,
    /// Its endpoints.
    pub endpoints: Vec<EndpointRow>,
}

/// An endpoint as kube-proxy programmed it.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub struct ProgrammedEndpoint {
    /// Its address.
    #[serde(default)]
    pub ip: String,
    /// Its port.
    #[serde(default)]
    pub port: i32,
    /// Its node.
    #[serde(default)]
    pub node: String,
    /// Ready.
    #[serde(default)]
    pub ready: bool,
    /// Serving.
    #[serde(default)]
    pub serving: bool,
    /// Terminating.
    #[serde(default)]
    pub terminating: bool,
}

/// A Service as kube-proxy programmed it.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProgrammedService {
    /// Its namespace.
    #[serde(default)]
    pub namespace: String,
    /// Its name.
    #[serde(default)]
    pub name: String,
    /// Its type.
    #[serde(default, rename = "type")]
    pub type_: String,
    /// Its ClusterIP.
    #[serde(default, rename = "clusterIP")]
    pub cluster_ip: String,
    /// Its ports.
    #[serde(default)]
    pub ports: Vec<PortRow>,
    /// Its endpoints.
    #[serde(default)]
    pub endpoints: Vec<ProgrammedEndpoint>,
    /// In an incremental sync: the Service is no longer programmed.
    #[serde(default)]
    pub removed: bool,
}

/// A `SYNC` hop's data.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct SyncData {
    /// The node.
    #[serde(default)]
    pub node: String,
    /// Whether the rules were applied.
    #[serde(default)]
    pub programmed: bool,
    /// Whether `services` is every Service (absent: it is).
    #[serde(default)]
    pub full: Option<bool>,
    /// The Services synced.
    #[serde(default)]
    pub services: Vec<ProgrammedService>,
}

/// What one node's kube-proxy last programmed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeProxy {
    /// Whether its last sync applied its rules.
    pub programmed: bool,
    /// When it last synced (the hop's time, RFC 3339).
    pub synced: String,
    /// The Services it has programmed, by `namespace/name`.
    pub services: BTreeMap<String, ProgrammedService>,
}

impl NodeProxy {
    /// Takes in one sync: a full one replaces what was known, an incremental one changes the
    /// Services it names.
    pub fn apply(&mut self, data: SyncData, time: &str) {
        self.programmed = data.programmed;
        self.synced = time.to_owned();
        if data.full.unwrap_or(true) {
            self.services.clear();
        }
        for s in data.services {
            let key = format!("{}/{}", s.namespace, s.name);
            if s.removed {
                self.services.remove(&key);
            } else {
                self.services.insert(key, s);
            }
        }
    }
}

/// The node of a kube-proxy SYNC hop and its data, if the event is one.
pub fn sync_of(e: &crate::flow::FlowEvent) -> Option<(String, SyncData)> {
    let node = e.from.strip_prefix("kube-proxy/")?;
    if e.to != "nftables" || e.verb != "SYNC" {
        return None;
    }
    let data: SyncData = serde_json::from_str(e.data.as_ref()?.get()).ok()?;
    let node = if data.node.is_empty() {
        node.to_owned()
    } else {
        data.node.clone()
    };
    Some((node, data))
}

/// The endpoints the slices of a Service say kube-proxy should program: (ip, port, ready,
/// serving, terminating), one per address and slice port.
pub fn expected(slices: &[&SliceRow]) -> BTreeSet<(String, i32, bool, bool, bool)> {
    let mut out = BTreeSet::new();
    for s in slices {
        for e in &s.endpoints {
            for (_, port) in &s.ports {
                out.insert((e.ip.clone(), *port, e.ready, e.serving, e.terminating));
            }
        }
    }
    out
}

/// What one node's kube-proxy shows for a Service, against its slices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProxyState {
    /// Programmed as the slices say, with this many endpoints.
    Current(usize),
    /// Programmed with other endpoints than the slices have.
    Stale,
    /// Not programmed at all.
    Missing,
    /// Its last sync failed to apply.
    Failed,
}

/// How a node's kube-proxy state compares with a Service's slices.
pub fn proxy_state(node: &NodeProxy, key: &str, slices: &[&SliceRow]) -> ProxyState {
    if !node.programmed {
        return ProxyState::Failed;
    }
    let Some(s) = node.services.get(key) else {
        return ProxyState::Missing;
    };
    let programmed: BTreeSet<(String, i32, bool, bool, bool)> = s
        .endpoints
        .iter()
        .map(|e| (e.ip.clone(), e.port, e.ready, e.serving, e.terminating))
        .collect();
    let want = expected(slices);
    if programmed == want {
        ProxyState::Current(programmed.len())
    } else {
        ProxyState::Stale
    }
}
