//! kube-proxy, one per virtual node: an ordinary API client (`kube-proxy/<node>`) that watches
//! Services, EndpointSlices and Nodes and programs the node's own nftables table
//! (`orrery_<cluster>_<node>`) the way upstream kube-proxy's nftables mode does, so that
//! ClusterIPs, node ports and load-balancer IPs reach endpoints.
//!
//! [`rules`] is pure (Services and slices in, a table model and nft script text out); [`nft`]
//! runs the `nft` tool. [`KubeProxy::run`] ties them: after every batch of changes (a few
//! milliseconds) it recomputes only the Services whose objects changed, applies the partial
//! transaction between the last programmed model and the new one, and rewrites the whole table
//! every [`FULL_RESYNC`] or after a failed apply. Stopping the task leaves the rules in place (a
//! stopped kube-proxy's node keeps stale rules, as a real one does); [`remove_tables`] deletes a
//! cluster's tables. Each sync is one `SYNC` hop `kube-proxy/<node>` -> `nftables`, held at the
//! gate in step mode. With [`ProxyMode::Compute`] (`--runtime sim`) nothing touches the kernel.

pub mod nft;
pub mod rules;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher;
use serde::Serialize;

pub use nft::{check_nft, remove_tables, remove_tables_in};
use rules::{Context, Model, ServiceRules, ServiceView};

use crate::flow::{Flow, FlowEvent};
use crate::informers::Keyed;

/// How often the whole table is rewritten even without changes (upstream's periodic sync).
pub const FULL_RESYNC: Duration = Duration::from_secs(30);
/// How long changes are gathered after the first before syncing.
pub const BATCH: Duration = Duration::from_millis(3);
/// How soon a failed apply is tried again (as a full rewrite).
pub const RETRY: Duration = Duration::from_secs(1);

/// What can go wrong programming the kernel.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The `nft` tool is not installed.
    #[error(
        "nft not found: kube-proxy programs nftables with the nft tool; install Debian's nftables package (apt-get install nftables)"
    )]
    NftMissing,
    /// `nft` refused a transaction.
    #[error("nft refused the transaction: {0}")]
    Apply(String),
    /// Running `nft` failed.
    #[error("cannot run nft: {0}")]
    Io(#[from] std::io::Error),
    /// A configuration that cannot work.
    #[error("bad kube-proxy configuration: {0}")]
    Config(String),
}

/// Whether kube-proxy programs the kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProxyMode {
    /// Programs nftables (real containers).
    #[default]
    Nftables,
    /// Computes the rules and shows them, touching nothing (`--runtime sim`).
    Compute,
}

/// What kube-proxy keeps of a node: its InternalIPs (where node ports are caught). Every node
/// runs one kube-proxy watching every node, so the rest of each node (images, conditions,
/// capacity) would be kept once per pair of nodes.
pub type NodeIps = Keyed<Node, Vec<Ipv4Addr>>;

/// The InternalIPs kube-proxy keeps of `node`.
pub fn node_ips(node: &Node) -> Vec<Ipv4Addr> {
    node.status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .into_iter()
        .flatten()
        .filter(|a| a.type_ == "InternalIP")
        .filter_map(|a| a.address.parse().ok())
        .collect()
}

/// One node's kube-proxy configuration.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// The node's name.
    pub node: String,
    /// The node's InternalIP: node ports are caught on it.
    pub node_ip: Ipv4Addr,
    /// The node's pod CIDR: only connections from there are this node's to catch.
    pub pod_cidr: Ipv4Net,
    /// The cluster's pod CIDR: connections from there DNATed to a pod are masqueraded.
    pub cluster_cidr: Ipv4Net,
    /// Whether the host's own connections to ClusterIPs are this node's (the control-plane node).
    pub host: bool,
    /// The nftables table (`orrery_<cluster>_<node>`, family `ip`).
    pub table: String,
    /// Whether to program the kernel.
    pub mode: ProxyMode,
    /// Run `nft` inside this named network namespace (`ip netns exec`): tests and benchmarks.
    pub netns: Option<String>,
}

impl ProxyConfig {
    /// The table name of `node` in `cluster`: `orrery_<cluster>_<node>`.
    pub fn table_name(cluster: &str, node: &str) -> String {
        format!("{}{node}", table_prefix(cluster))
    }
}

/// The prefix every table of `cluster` shares (what [`remove_tables`] takes).
pub fn table_prefix(cluster: &str) -> String {
    format!("orrery_{cluster}_")
}

/// The programmed state as the dashboard gets it in a `SYNC` hop's data. The first sync (and
/// every full rewrite) carries every Service, later ones only the Services that changed and the
/// keys of those removed.
#[derive(Debug, Serialize)]
pub struct SyncData<'a> {
    /// The node.
    pub node: &'a str,
    /// Whether the rules are in the kernel (false in Compute mode and when nft failed).
    pub programmed: bool,
    /// Whether `services` is every Service (else only the changed ones).
    pub full: bool,
    /// The Services (all, or the changed ones).
    pub services: Vec<&'a ServiceView>,
    /// `namespace/name` of the Services removed since the last hop.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
}

/// What a Service's rules were computed from: recomputed only when one of these changes.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Fingerprint {
    service: Option<String>,
    slices: Vec<(String, Option<String>)>,
}

/// The state kept between syncs.
struct Syncer {
    ctx: Context,
    /// The model last applied (or computed, in Compute mode).
    programmed: Model,
    /// Every Service's rules and what they came from.
    cache: HashMap<String, (Fingerprint, Arc<ServiceRules>)>,
    /// The next apply recreates the table (at start, and after a failure).
    recreate: bool,
    /// Whether a hop has been emitted yet.
    shown: bool,
}

impl Syncer {
    fn new(config: ProxyConfig) -> Self {
        let mut node_ips = BTreeSet::new();
        node_ips.insert(config.node_ip);
        Syncer {
            ctx: Context { config, node_ips },
            programmed: Model::default(),
            cache: HashMap::new(),
            recreate: true,
            shown: false,
        }
    }

    /// The model for the objects now in the caches, reusing every unchanged Service's rules.
    fn compute(
        &mut self,
        services: &[Arc<Service>],
        slices: &[Arc<EndpointSlice>],
        nodes: &[Arc<NodeIps>],
    ) -> Model {
        let mut node_ips: BTreeSet<Ipv4Addr> =
            nodes.iter().flat_map(|n| n.value.iter().copied()).collect();
        node_ips.insert(self.ctx.config.node_ip);
        if node_ips != self.ctx.node_ips {
            self.ctx.node_ips = node_ips;
            self.cache.clear();
        }
        let mut by_service: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
        for slice in slices {
            let ns = slice.metadata.namespace.as_deref().unwrap_or("");
            if let Some(name) = slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(crate::apimachinery::labels::SERVICE_NAME))
            {
                by_service.entry((ns, name)).or_default().push(slice);
            }
        }
        let mut model = Model {
            base: rules::base(&self.ctx.config),
            services: BTreeMap::new(),
        };
        let mut cache = HashMap::with_capacity(services.len());
        let mut claimed: std::collections::HashSet<(String, String)> = Default::default();
        for service in services {
            let ns = service.metadata.namespace.as_deref().unwrap_or("");
            let name = service.metadata.name.as_deref().unwrap_or("");
            let mut slices = by_service.remove(&(ns, name)).unwrap_or_default();
            slices.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
            let fingerprint = Fingerprint {
                service: service.metadata.resource_version.clone(),
                slices: slices
                    .iter()
                    .map(|s| {
                        (
                            s.metadata.name.clone().unwrap_or_default(),
                            s.metadata.resource_version.clone(),
                        )
                    })
                    .collect(),
            };
            let key = format!("{ns}/{name}");
            let mut entry = match self.cache.remove(&key) {
                Some((f, rules)) if f == fingerprint => rules,
                _ => {
                    let Some(view) = rules::service_view(service, &slices) else {
                        continue;
                    };
                    let fragment = rules::service_rules(&view, &self.ctx);
                    Arc::new(ServiceRules { view, fragment })
                }
            };
            // Two Services claiming one map key (the same ClusterIP or node port, which the
            // API server should never allow) would fail every transaction: the first keeps it,
            // and the other is recomputed on every sync until the conflict is gone.
            let conflict = entry.fragment.elements.keys().any(|k| claimed.contains(k));
            if conflict {
                let mut rules = (*entry).clone();
                rules.fragment.elements.retain(|k, _| !claimed.contains(k));
                tracing::warn!(service = %key, "kube-proxy: a ClusterIP or node port taken by another Service");
                entry = Arc::new(rules);
            }
            claimed.extend(entry.fragment.elements.keys().cloned());
            model.services.insert(key.clone(), entry.clone());
            if !conflict {
                cache.insert(key, (fingerprint, entry));
            }
        }
        self.cache = cache;
        model
    }
}

/// Computes the model of `config`'s table for these objects (what a sync programs).
pub fn compute_model(
    config: &ProxyConfig,
    services: &[Arc<Service>],
    slices: &[Arc<EndpointSlice>],
    nodes: &[Arc<NodeIps>],
) -> Model {
    Syncer::new(config.clone()).compute(services, slices, nodes)
}

/// One node's kube-proxy.
pub struct KubeProxy {
    config: ProxyConfig,
    client: kube::Client,
    flow: Flow,
}

impl KubeProxy {
    /// A kube-proxy for `config.node`, talking to the API server through `client` (named
    /// `kube-proxy/<node>`).
    pub fn new(config: ProxyConfig, client: kube::Client, flow: Flow) -> Self {
        KubeProxy {
            config,
            client,
            flow,
        }
    }

    /// The component's name in the flow: `kube-proxy/<node>`.
    pub fn component(&self) -> String {
        format!("kube-proxy/{}", self.config.node)
    }

    /// Runs until aborted. Aborting leaves the table as last programmed.
    pub async fn run(self) {
        let client = &self.client;
        let (services, s) = crate::informers::cache::<Service>(client, watcher::Config::default());
        let (slices, e) =
            crate::informers::cache::<EndpointSlice>(client, watcher::Config::default());
        let (nodes, n) = crate::informers::compact(client, watcher::Config::default(), node_ips);
        let mut changes = futures::stream::select_all([s, e, n]).boxed();
        crate::informers::prime(&mut changes, async {
            let _ = services.wait_until_ready().await;
            let _ = slices.wait_until_ready().await;
            let _ = nodes.wait_until_ready().await;
        })
        .await;
        let mut syncer = Syncer::new(self.config.clone());
        let mut next_full = tokio::time::Instant::now() + FULL_RESYNC;
        loop {
            let full_due = tokio::time::Instant::now() >= next_full;
            let model = syncer.compute(&services.state(), &slices.state(), &nodes.state());
            let ok = self.sync(&mut syncer, model, full_due).await;
            if full_due && ok {
                next_full = tokio::time::Instant::now() + FULL_RESYNC;
            }
            let wait = if ok {
                next_full
            } else {
                tokio::time::Instant::now() + RETRY
            };
            tokio::select! {
                change = changes.next() => {
                    if change.is_none() {
                        tokio::time::sleep_until(wait).await;
                    }
                }
                _ = tokio::time::sleep_until(wait) => {}
            }
            let deadline = tokio::time::Instant::now() + BATCH;
            while let Ok(Some(_)) = tokio::time::timeout_at(deadline, changes.next()).await {}
        }
    }

    /// Programs `new` (or only computes it); emits the `SYNC` hop when anything changed or the
    /// table was rewritten from scratch. Returns false when the apply failed.
    async fn sync(&self, syncer: &mut Syncer, new: Model, full_due: bool) -> bool {
        let table = &self.config.table;
        let old = &syncer.programmed;
        let recreate = syncer.recreate;
        let script = if recreate {
            rules::render_full(table, None, &new, true)
        } else if full_due {
            rules::render_full(table, Some(old), &new, false)
        } else {
            match rules::render_diff(table, old, &new) {
                Some(s) => s,
                None => rules::render_full(table, Some(old), &new, false),
            }
        };
        let full = recreate || !syncer.shown;
        let (changed, removed) = rules::changed_services(old, &new);
        if !full && changed.is_empty() && removed.is_empty() && script.is_empty() {
            return true;
        }
        let summary = rules::summarize(old, &new);
        let show = full || !changed.is_empty() || !removed.is_empty();
        let mut hop = FlowEvent::new(self.component(), "nftables", "SYNC");
        let (result, detail) = match self.config.mode {
            ProxyMode::Compute => (
                Ok(()),
                format!("computed; --runtime sim does not program the kernel: {summary}"),
            ),
            ProxyMode::Nftables => {
                if show {
                    hop.detail = summary.clone();
                    self.flow.gate(&hop).await;
                }
                let result = if script.is_empty() {
                    Ok(())
                } else {
                    nft::apply(&script, self.config.netns.as_deref()).await
                };
                let detail = match &result {
                    Ok(()) if full => format!("table {table} written: {summary}"),
                    Ok(()) => summary,
                    Err(e) => format!("{summary}; not programmed: {e}"),
                };
                (result, detail)
            }
        };
        let ok = result.is_ok();
        if let Err(e) = &result {
            tracing::warn!(node = %self.config.node, "kube-proxy: {e}; rewriting the table");
        }
        if show || !ok {
            let data = SyncData {
                node: &self.config.node,
                programmed: ok && self.config.mode == ProxyMode::Nftables,
                full,
                services: if full {
                    new.services.values().map(|s| &s.view).collect()
                } else {
                    changed
                },
                removed: if full { Vec::new() } else { removed },
            };
            let hop = hop.detail(detail).data(&data);
            if self.config.mode == ProxyMode::Compute {
                self.flow.gate_emit(hop).await;
            } else {
                self.flow.emit(hop);
            }
        }
        syncer.shown = true;
        syncer.recreate = !ok;
        syncer.programmed = new;
        ok
    }
}
