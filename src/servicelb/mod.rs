//! The built-in service load balancer (what k3s's ServiceLB and kind's cloud-provider-kind are):
//! `service-lb-controller`, an API client that gives every `type: LoadBalancer` Service an
//! address from a loopback pool (default 127.240.0.0/16, one per Service, so two Services on
//! port 80 coexist), listens there on each TCP port, and proxies each connection to an eligible
//! node's NodePort (round robin; Ready nodes, or with `externalTrafficPolicy: Local` only those
//! with a ready endpoint, as a cloud health check would find), or straight to ready endpoints
//! when `allocateLoadBalancerNodePorts: false`. The address goes into
//! `status.loadBalancer.ingress` (`ipMode: VIP`) through the status subresource; it is kept
//! across restarts when it can be bound again, and `spec.loadBalancerIP` is honoured when in the
//! pool. A Service that goes or stops being a LoadBalancer loses its listeners and its status.
//! Everything it holds is a socket: nothing is left behind when the process ends. UDP and SCTP
//! ports are not balanced.
//!
//! The decisions are pure ([`plan`]); [`ServiceLb::run`] applies them.

pub mod plan;

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use crate::flow::{Flow, FlowEvent};
use plan::{PortPlan, Target};

/// The controller's name: its client's name and the `from` of its hops.
pub const COMPONENT: &str = "service-lb-controller";
/// How many pool addresses one Service tries in one pass before giving up until the next.
const MAX_TRIES: usize = 256;
/// How long a backend has to accept a connection before the next one is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// What went wrong giving a Service its load balancer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Every address tried was taken or could not be bound.
    #[error("no address of the pool {pool} can be bound for ports {ports:?} (last: {last})")]
    PoolExhausted {
        /// The pool.
        pool: Ipv4Net,
        /// The ports wanted.
        ports: Vec<u16>,
        /// The last bind error.
        last: String,
    },
    /// A port could not be added to a Service's address.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address and port.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The Service's status could not be written.
    #[error("cannot write the status of Service {namespace}/{name}: {source}")]
    Status {
        /// The Service's namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// Why.
        source: kube::Error,
    },
}

/// The load balancer's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceLbConfig {
    /// The addresses Services get, one each (loopback, so the host reaches them without routes).
    pub pool: Ipv4Net,
}

impl Default for ServiceLbConfig {
    fn default() -> Self {
        ServiceLbConfig {
            pool: Ipv4Net::new(Ipv4Addr::new(127, 240, 0, 0), 16).expect("valid prefix"),
        }
    }
}

/// The service load balancer; runs until its task is aborted.
pub struct ServiceLb {
    client: kube::Client,
    flow: Flow,
    config: ServiceLbConfig,
}

/// Where one port's connections go, and whose turn is next.
#[derive(Default)]
struct Route {
    targets: Vec<Target>,
    next: usize,
}

impl Route {
    /// The targets to try for the next connection: round robin, then the others in turn.
    fn order(&mut self) -> Vec<Target> {
        let n = self.targets.len();
        if n == 0 {
            return Vec::new();
        }
        let start = self.next % n;
        self.next = (start + 1) % n;
        (0..n)
            .map(|i| self.targets[(start + i) % n].clone())
            .collect()
    }
}

type Routes = Arc<Mutex<HashMap<u16, Route>>>;

/// One Service's load balancer: its address, a listener task per port, their routes.
struct Balancer {
    addr: Ipv4Addr,
    listeners: HashMap<u16, JoinHandle<()>>,
    routes: Routes,
    /// The last ASSIGN hop's words.
    described: String,
    /// The Service's resourceVersion when this controller last wrote its status: while the
    /// cache still shows that version, it has not seen the write yet and is not written again.
    written_over: Option<String>,
}

impl Drop for Balancer {
    fn drop(&mut self) {
        for task in self.listeners.values() {
            task.abort();
        }
    }
}

fn key_of(service: &Service) -> (String, String) {
    (
        service.metadata.namespace.clone().unwrap_or_default(),
        service.metadata.name.clone().unwrap_or_default(),
    )
}

fn ingress_status(addr: Ipv4Addr) -> serde_json::Value {
    json!({"status": {"loadBalancer": {"ingress": [{"ip": addr.to_string(), "ipMode": "VIP"}]}}})
}

/// Whether the Service's status shows exactly this address, as a VIP.
fn status_shows(service: &Service, addr: Ipv4Addr) -> bool {
    let ingress = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_deref())
        .unwrap_or_default();
    ingress.len() == 1
        && ingress[0].ip.as_deref() == Some(addr.to_string().as_str())
        && ingress[0].ip_mode.as_deref() == Some("VIP")
}

impl ServiceLb {
    /// A load balancer talking to the API server through `client` (name it [`COMPONENT`]).
    pub fn new(client: kube::Client, flow: Flow, config: ServiceLbConfig) -> Self {
        ServiceLb {
            client,
            flow,
            config,
        }
    }

    fn hop(&self, verb: &str, key: &(String, String), detail: String) -> FlowEvent {
        let mut e = FlowEvent::new(COMPONENT, format!("service/{}/{}", key.0, key.1), verb)
            .object("Service", &key.0, &key.1)
            .detail(detail);
        e.root = format!("Service/{}", key.1);
        e
    }

    /// Watches Services, Nodes and EndpointSlices and keeps the load balancers, forever.
    pub async fn run(self) {
        let (services, service_events) =
            crate::informers::cache::<Service>(&self.client, watcher::Config::default());
        let (nodes, node_events) =
            crate::informers::cache::<Node>(&self.client, watcher::Config::default());
        let (slices, slice_events) =
            crate::informers::cache::<EndpointSlice>(&self.client, watcher::Config::default());
        let mut changes =
            futures::stream::select_all([service_events, node_events, slice_events]).boxed();
        crate::informers::prime(&mut changes, async {
            let _ = services.wait_until_ready().await;
            let _ = nodes.wait_until_ready().await;
            let _ = slices.wait_until_ready().await;
        })
        .await;
        let mut balancers: HashMap<(String, String), Balancer> = HashMap::new();
        let mut pace = crate::informers::Pace::default();
        loop {
            let all_services = services.state();
            let all_nodes = nodes.state();
            let all_slices = slices.state();
            let node_refs: Vec<&Node> = all_nodes.iter().map(|n| &**n).collect();
            let slice_refs: Vec<&EndpointSlice> = all_slices.iter().map(|s| &**s).collect();
            let mut live = HashSet::new();
            for service in all_services.iter().filter(|s| plan::is_load_balancer(s)) {
                let key = key_of(service);
                live.insert(key.clone());
                let plans = plan::plan(service, &node_refs, &slice_refs);
                if let Err(e) = self.sync(service, &key, &plans, &mut balancers).await {
                    tracing::warn!(component = COMPONENT, "{e}");
                }
            }
            let gone: Vec<(String, String)> = balancers
                .keys()
                .filter(|k| !live.contains(*k))
                .cloned()
                .collect();
            for key in gone {
                let Some(balancer) = balancers.remove(&key) else {
                    continue;
                };
                let addr = balancer.addr;
                drop(balancer);
                let service = all_services.iter().find(|s| key_of(s) == key);
                let why = if service.is_some() {
                    "no longer a LoadBalancer"
                } else {
                    "the Service is gone"
                };
                self.flow
                    .emit(self.hop("RELEASE", &key, format!("{addr} released: {why}")));
            }
            // A Service that stopped being a LoadBalancer (perhaps while this controller was
            // down) loses the pool address in its status.
            for service in all_services.iter().filter(|s| !plan::is_load_balancer(s)) {
                let ours = plan::status_ips(service)
                    .iter()
                    .any(|ip| self.config.pool.contains(ip));
                if ours && service.metadata.deletion_timestamp.is_none() {
                    let key = key_of(service);
                    let api: Api<Service> = Api::namespaced(self.client.clone(), &key.0);
                    let clear = json!({"status": {"loadBalancer": {"ingress": null}}});
                    if let Err(e) = api
                        .patch_status(&key.1, &PatchParams::default(), &Patch::Merge(&clear))
                        .await
                    {
                        tracing::warn!(component = COMPONENT, "clearing {}/{}: {e}", key.0, key.1);
                    }
                }
            }
            crate::informers::next_batch(&mut changes, Duration::from_secs(5), &mut pace).await;
        }
    }

    /// Gives one LoadBalancer Service its address, listeners, routes and status.
    async fn sync(
        &self,
        service: &Service,
        key: &(String, String),
        plans: &[PortPlan],
        balancers: &mut HashMap<(String, String), Balancer>,
    ) -> Result<(), Error> {
        let ports: Vec<u16> = plans.iter().map(|p| p.port).collect();
        if !balancers.contains_key(key) {
            let taken: HashSet<Ipv4Addr> = balancers.values().map(|b| b.addr).collect();
            let (addr, bound) = self.open(service, &ports, &taken).await?;
            let routes: Routes = Arc::default();
            let listeners = bound
                .into_iter()
                .map(|(port, listener)| (port, self.listen(listener, key, port, &routes)))
                .collect();
            balancers.insert(
                key.clone(),
                Balancer {
                    addr,
                    listeners,
                    routes,
                    described: String::new(),
                    written_over: None,
                },
            );
        }
        let balancer = balancers.get_mut(key).expect("inserted above");
        let addr = balancer.addr;
        // Ports added or removed since.
        balancer.listeners.retain(|port, task| {
            let keep = ports.contains(port);
            if !keep {
                task.abort();
            }
            keep
        });
        let mut result = Ok(());
        for &port in &ports {
            if balancer.listeners.contains_key(&port) {
                continue;
            }
            let at = SocketAddr::from((addr, port));
            match TcpListener::bind(at).await {
                Ok(listener) => {
                    let task = self.listen(listener, key, port, &balancer.routes);
                    balancer.listeners.insert(port, task);
                }
                Err(source) => result = Err(Error::Listen { addr: at, source }),
            }
        }
        {
            let mut routes = balancer.routes.lock().unwrap_or_else(|p| p.into_inner());
            routes.retain(|port, _| ports.contains(port));
            for p in plans {
                let route = routes.entry(p.port).or_default();
                if route.targets != p.targets {
                    route.targets = p.targets.clone();
                }
            }
        }
        let version = service.metadata.resource_version.clone();
        if !status_shows(service, addr) && balancer.written_over != version {
            let api: Api<Service> = Api::namespaced(self.client.clone(), &key.0);
            api.patch_status(
                &key.1,
                &PatchParams::default(),
                &Patch::Merge(&ingress_status(addr)),
            )
            .await
            .map_err(|source| Error::Status {
                namespace: key.0.clone(),
                name: key.1.clone(),
                source,
            })?;
            balancer.written_over = version;
        }
        let described = plan::describe(addr, plans);
        if described != balancer.described {
            self.flow.emit(self.hop("ASSIGN", key, described.clone()));
            balancer.described = described;
        }
        result
    }

    /// Binds every port on the first candidate address that takes them all.
    async fn open(
        &self,
        service: &Service,
        ports: &[u16],
        taken: &HashSet<Ipv4Addr>,
    ) -> Result<(Ipv4Addr, Vec<(u16, TcpListener)>), Error> {
        let mut last = String::from("none tried");
        'addresses: for addr in plan::candidates(self.config.pool, service, taken).take(MAX_TRIES) {
            let mut bound = Vec::new();
            for &port in ports {
                match TcpListener::bind(SocketAddr::from((addr, port))).await {
                    Ok(listener) => bound.push((port, listener)),
                    // Taken (another cluster on this machine, say): the next address.
                    Err(e) => {
                        last = format!("{addr}:{port}: {e}");
                        continue 'addresses;
                    }
                }
            }
            return Ok((addr, bound));
        }
        Err(Error::PoolExhausted {
            pool: self.config.pool,
            ports: ports.to_vec(),
            last,
        })
    }

    /// Accepts connections on one port until aborted; each is proxied to the route's next
    /// target (the others in turn if it does not answer). Aborting it closes its connections.
    fn listen(
        &self,
        listener: TcpListener,
        key: &(String, String),
        port: u16,
        routes: &Routes,
    ) -> JoinHandle<()> {
        let routes = routes.clone();
        let flow = self.flow.clone();
        let key = key.clone();
        let front = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    Some(_) = connections.join_next() => continue,
                };
                let Ok((inbound, _peer)) = accepted else {
                    // Out of file descriptors, say: give it a moment.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let order = routes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_mut(&port)
                    .map(Route::order)
                    .unwrap_or_default();
                let flow = flow.clone();
                let key = key.clone();
                let front = front.clone();
                connections.spawn(proxy(inbound, order, flow, key, front));
            }
        })
    }
}

/// One connection: the first target that answers gets it, bytes both ways until either closes.
async fn proxy(
    mut inbound: TcpStream,
    order: Vec<Target>,
    flow: Flow,
    key: (String, String),
    front: String,
) {
    let hop = |detail: String| {
        let mut e = FlowEvent::new("client", COMPONENT, "CONNECT")
            .object("Service", &key.0, &key.1)
            .detail(detail);
        e.root = format!("Service/{}", key.1);
        e
    };
    for target in order {
        let Ok(Ok(mut outbound)) =
            tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target.addr)).await
        else {
            continue;
        };
        let to = if target.node.is_empty() {
            target.addr.to_string()
        } else {
            format!("{} {}", target.node, target.addr)
        };
        flow.emit(hop(format!("{front} → {to}")));
        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
        return;
    }
    flow.emit(hop(format!("{front} → no backend answered")));
}

#[cfg(test)]
mod tests;
