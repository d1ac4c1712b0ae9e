//! Pod networking, as a CNI bridge plugin would do it, through netlink (`rtnetlink`): one host
//! bridge per cluster, a named network namespace per pod sandbox, a veth pair from the bridge
//! into it, and an address from the node's pod CIDR.
//!
//! The layout is CNI's `bridge` + `host-local` with `isGateway` and `isDefaultGateway`:
//!
//! - the bridge `orr-<cluster>` carries one gateway address per node, `<node CIDR>.1`, so the
//!   host reaches every pod over a connected route (no IP forwarding involved);
//! - a pod's namespace is a file `/run/netns/<name>` (made the way `ip netns add` makes it, so
//!   `ip netns` lists it) with `lo` up and `eth0`, the peer of a host veth `veth<8 hex>` that is
//!   a port of the bridge; `eth0` has the pod's address, a default route through its node's
//!   gateway and an on-link route for the whole cluster network [`CLUSTER_CIDR`], so pods on
//!   different virtual nodes talk directly over the bridge;
//! - the host veth's alias reads `<netns name> <pod ip>`: that is how addresses held by pods
//!   set up before this process started are found again (`ip link` shows it too).
//!
//! Namespace work never moves the caller's thread: the namespace is created and configured in
//! short-lived threads that are joined before the call returns, because the caller is a
//! single-threaded helper process that later clones containers.
//!
//! Two host settings matter. A pod's connection to a Service is DNATed by the host (kube-proxy)
//! to a pod behind the same bridge and routed back out: that is forwarding, so IPv4 forwarding
//! is turned on (as CNI's bridge plugin does for a gateway; it is left on). Forwarded traffic,
//! and with `br_netfilter` loaded (`net.bridge.bridge-nf-call-iptables = 1`) frames bridged from
//! pod to pod, traverse iptables' FORWARD chain, whose policy Docker sets to DROP. When (and only
//! when) the chain would drop them, an ACCEPT rule for traffic within the bridge is inserted, as
//! Docker does for its own bridge; [`Network::destroy`] removes it.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkMessage};
use rtnetlink::packet_route::route::RouteScope;
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};
use sha2::{Digest, Sha256};

/// Where named network namespaces live (`ip netns` reads this directory).
pub const NETNS_DIR: &str = "/run/netns";

/// The cluster's whole pod network: every node's pod CIDR is inside it, and pods reach it
/// on-link through their `eth0`.
pub const CLUSTER_CIDR: &str = "10.244.0.0/14";

/// The pod's end of the veth pair.
pub const POD_INTERFACE: &str = "eth0";

/// What went wrong setting up or tearing down a pod's network.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// A netlink request failed.
    #[error("{action}: {message}")]
    Netlink {
        /// What was being done (`create bridge orr-demo`, ...).
        action: String,
        /// The kernel's answer.
        message: String,
    },
    /// A namespace file could not be made, entered or removed.
    #[error("{action} {path}: {source}")]
    Namespace {
        /// What was being done.
        action: &'static str,
        /// The namespace's file.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// The node's pod CIDR has no free address left.
    #[error("no free address left in {0}")]
    Exhausted(String),
    /// A CIDR that does not parse.
    #[error("invalid pod CIDR {0:?}")]
    InvalidCidr(String),
    /// The host firewall could not be told to let bridged pod traffic through.
    #[error("{action}: {message}")]
    Firewall {
        /// The iptables command.
        action: String,
        /// What it said.
        message: String,
    },
}

type Result<T, E = NetworkError> = std::result::Result<T, E>;

impl NetworkError {
    /// Says which pod operation failed, in CNI's words: `failed to set up pod network: ...`.
    fn during(self, operation: &str) -> Self {
        match self {
            NetworkError::Netlink { action, message } => NetworkError::Netlink {
                action: format!("{operation}: {action}"),
                message,
            },
            NetworkError::Firewall { action, message } => NetworkError::Firewall {
                action: format!("{operation}: {action}"),
                message,
            },
            other => other,
        }
    }
}

const SETUP: &str = "failed to set up pod network";
const TEARDOWN: &str = "failed to tear down pod network";

/// One pod's network as set up: what tearing it down needs.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PodNetwork {
    /// The network namespace's file (`/run/netns/<name>`), which `ip netns` lists.
    pub netns: PathBuf,
    /// The host end of the veth pair, on the bridge.
    pub host_veth: String,
    /// The pod's address.
    pub ip: Ipv4Addr,
}

/// A cluster's pod network: its bridge and the addresses handed out.
pub struct Network {
    cluster: String,
    /// The whole pod network, routed on-link from every pod.
    cluster_cidr: Ipv4Net,
    /// Per node CIDR, the addresses in use (handed out here or found on existing pods).
    pools: HashMap<Ipv4Net, Pool>,
    /// Whether the host firewall was checked (once per bridge created or found).
    firewall_checked: bool,
}

/// The addresses of one node CIDR, handed out round-robin like CNI's `host-local` (a freed
/// address is not reused at once, so a stale endpoint does not reach a new pod).
#[derive(Debug, Default)]
struct Pool {
    used: BTreeSet<Ipv4Addr>,
    last: Option<Ipv4Addr>,
}

impl Pool {
    /// Takes the next free address after the last one handed out: the network address, the
    /// gateway (`.1`) and the broadcast address are never handed out.
    fn allocate(&mut self, cidr: Ipv4Net) -> Option<Ipv4Addr> {
        let first = u32::from(cidr.network()).checked_add(2)?;
        let last = u32::from(cidr.broadcast()).checked_sub(1)?;
        if first > last {
            return None;
        }
        let start = self
            .last
            .map(u32::from)
            .filter(|a| (first..=last).contains(a))
            .map_or(first, |a| if a == last { first } else { a + 1 });
        let candidates = (start..=last).chain(first..start);
        let ip = candidates
            .map(Ipv4Addr::from)
            .find(|ip| !self.used.contains(ip))?;
        self.used.insert(ip);
        self.last = Some(ip);
        Some(ip)
    }
}

impl Network {
    /// The network of cluster `cluster` (its bridge is named after it; nothing is created yet).
    pub fn new(cluster: &str) -> Self {
        Network {
            cluster: cluster.to_owned(),
            cluster_cidr: parse_cidr(CLUSTER_CIDR).expect("a valid default"),
            pools: HashMap::new(),
            firewall_checked: false,
        }
    }

    /// The same network with another cluster CIDR (`orrery up --cluster-cidr`) routed on-link
    /// from every pod, instead of [`CLUSTER_CIDR`].
    pub fn with_cluster_cidr(mut self, cidr: &str) -> Result<Self> {
        self.cluster_cidr = parse_cidr(cidr)?;
        Ok(self)
    }

    /// The bridge's name: `orr-<cluster>`, cut to the kernel's 15 bytes.
    pub fn bridge_name(&self) -> String {
        let mut name = format!("orr-{}", self.cluster);
        name.truncate(15);
        name
    }

    /// Creates the pod's network namespace (named `netns_name`, loopback up) and connects it to
    /// the bridge (created on first use, with the node's gateway `<cidr>.1` on it) with an
    /// address from `pod_cidr` and a default route through the gateway.
    pub async fn add_pod(&mut self, netns_name: &str, pod_cidr: &str) -> Result<PodNetwork> {
        self.set_up(netns_name, pod_cidr)
            .await
            .map_err(|e| e.during(SETUP))
    }

    /// Makes the node's place on the pod network before any pod: the bridge (created if
    /// needed) with the node's gateway `<cidr>.1` on it, which is also the node's address (its
    /// InternalIP: the kubelet and the node's NodePorts are reached there, from the host and
    /// from every pod). Returns that address.
    pub async fn prepare_node(&mut self, pod_cidr: &str) -> Result<Ipv4Addr> {
        let cidr = parse_cidr(pod_cidr).map_err(|e| e.during(SETUP))?;
        let gateway = gateway(cidr)
            .ok_or_else(|| NetworkError::InvalidCidr(pod_cidr.into()).during(SETUP))?;
        let bridge = self.bridge_name();
        with_netlink(|h| async move {
            ensure_bridge(&h, &bridge, bridge_mac(&bridge), gateway, cidr).await
        })
        .await
        .map_err(|e| e.during(SETUP))?;
        if !self.firewall_checked {
            allow_bridged_forwarding(&self.bridge_name()).map_err(|e| e.during(SETUP))?;
            self.firewall_checked = true;
        }
        enable_forwarding().map_err(|e| e.during(SETUP))?;
        Ok(gateway)
    }

    /// Removes a pod's veth and namespace and frees its address. Missing parts are not errors.
    pub async fn remove_pod(&mut self, pod: &PodNetwork) -> Result<()> {
        self.tear_down(pod).await.map_err(|e| e.during(TEARDOWN))
    }

    /// Removes everything this cluster's network has on the host: every pod namespace named
    /// with `netns_prefix`, their veths, and the bridge. Used at shutdown and at start (after a
    /// crash). Missing parts are not errors. The prefix should end with a separator
    /// (`orr-demo-`), or it also matches another cluster's namespaces (`orr-demo2-...`).
    pub async fn destroy(&mut self, netns_prefix: &str) -> Result<()> {
        self.remove_all(netns_prefix)
            .await
            .map_err(|e| e.during(TEARDOWN))
    }

    async fn set_up(&mut self, netns_name: &str, pod_cidr: &str) -> Result<PodNetwork> {
        let cidr = parse_cidr(pod_cidr)?;
        let gateway = gateway(cidr).ok_or_else(|| NetworkError::InvalidCidr(pod_cidr.into()))?;
        if netns_name.is_empty() || netns_name.contains('/') || netns_name.starts_with('.') {
            return Err(NetworkError::Namespace {
                action: "failed to create network namespace",
                path: netns_path(netns_name),
                source: std::io::Error::from(Errno::EINVAL),
            });
        }
        let bridge = self.bridge_name();

        // The bridge, its gateway for this node, and the addresses already held on it.
        let known = self.pools.contains_key(&cidr);
        let (bridge_index, found) = with_netlink(|h| async move {
            let index = ensure_bridge(&h, &bridge, bridge_mac(&bridge), gateway, cidr).await?;
            let found = if known {
                Vec::new()
            } else {
                pod_addresses(&h, index).await?
            };
            Ok((index, found))
        })
        .await?;
        if !self.firewall_checked {
            allow_bridged_forwarding(&self.bridge_name())?;
            self.firewall_checked = true;
        }
        let pool = self.pools.entry(cidr).or_default();
        pool.used
            .extend(found.into_iter().filter(|ip| cidr.contains(ip)));
        let ip = pool
            .allocate(cidr)
            .ok_or_else(|| NetworkError::Exhausted(pod_cidr.to_owned()))?;

        let pod = PodNetwork {
            netns: netns_path(netns_name),
            host_veth: host_veth_name(netns_name),
            ip,
        };
        let cluster = self.cluster_cidr;
        let Err(e) = connect(&pod, netns_name, bridge_index, cidr, cluster, gateway).await else {
            return Ok(pod);
        };
        // Undo what was made, but never touch a namespace that was there already (the same
        // name twice is the caller's mistake, and that pod is still running).
        let already_there = matches!(
            &e,
            NetworkError::Namespace { source, .. }
                if source.raw_os_error() == Some(Errno::EEXIST as i32)
        );
        if already_there {
            self.release(ip);
        } else {
            let _ = self.tear_down(&pod).await;
        }
        Err(e)
    }

    async fn tear_down(&mut self, pod: &PodNetwork) -> Result<()> {
        let veth = pod.host_veth.clone();
        with_netlink(|h| async move { delete_link(&h, &veth).await }).await?;
        remove_netns(&pod.netns)?;
        self.release(pod.ip);
        Ok(())
    }

    async fn remove_all(&mut self, netns_prefix: &str) -> Result<()> {
        let names = netns_names(netns_prefix)?;
        let bridge = self.bridge_name();
        let veths: Vec<String> = names.iter().map(|n| host_veth_name(n)).collect();
        with_netlink(|h| async move {
            for veth in &veths {
                delete_link(&h, veth).await?;
            }
            if let Some(index) = link_index(&h, &bridge).await? {
                // Ports of the bridge are this cluster's pods, whatever their namespace's name.
                for port in bridge_ports(&h, index).await? {
                    delete_link(&h, &port.name).await?;
                }
                delete_link(&h, &bridge).await?;
            }
            Ok(())
        })
        .await?;
        for name in &names {
            remove_netns(&netns_path(name))?;
        }
        remove_forwarding_rule(&self.bridge_name())?;
        self.firewall_checked = false;
        self.pools.clear();
        Ok(())
    }

    /// Frees a pod's address in whichever node CIDR holds it.
    fn release(&mut self, ip: Ipv4Addr) {
        for (cidr, pool) in &mut self.pools {
            if cidr.contains(&ip) {
                pool.used.remove(&ip);
            }
        }
    }
}

/// `/run/netns/<name>`.
pub fn netns_path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// The host end of a pod's veth pair: `veth` and 8 hex digits of a hash of the namespace's
/// name, so it is the same in every process and fits the kernel's 15 bytes.
pub fn host_veth_name(netns_name: &str) -> String {
    let digest = Sha256::digest(netns_name.as_bytes());
    let hex: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("veth{hex}")
}

/// A node's pod CIDR, as a network (`10.244.1.7/24` is taken as `10.244.1.0/24`).
fn parse_cidr(cidr: &str) -> Result<Ipv4Net> {
    cidr.parse::<Ipv4Net>()
        .map(|n| n.trunc())
        .map_err(|_| NetworkError::InvalidCidr(cidr.to_owned()))
}

/// The node's gateway, the first address of its CIDR; none for a CIDR too small for pods.
fn gateway(cidr: Ipv4Net) -> Option<Ipv4Addr> {
    (cidr.prefix_len() <= 30).then(|| Ipv4Addr::from(u32::from(cidr.network()) + 1))
}

/// A fixed, locally administered MAC for the bridge. Left alone, a bridge takes the lowest MAC
/// of its ports, so it would change as pods come and go and pods' ARP entries for the gateway
/// would go stale.
fn bridge_mac(bridge: &str) -> Vec<u8> {
    let digest = Sha256::digest(format!("bridge {bridge}").as_bytes());
    let mut mac = digest[..6].to_vec();
    mac[0] = (mac[0] & 0xfc) | 0x02;
    mac
}

fn netlink_error(action: impl Into<String>, e: &rtnetlink::Error) -> NetworkError {
    let message = match e {
        rtnetlink::Error::NetlinkError(m) => m.to_io().to_string(),
        other => other.to_string(),
    };
    NetworkError::Netlink {
        action: action.into(),
        message,
    }
}

/// The errno a netlink request failed with.
fn errno(e: &rtnetlink::Error) -> Option<Errno> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| Errno::from_raw(-c.get())),
        _ => None,
    }
}

/// Runs `work` with a netlink socket opened in the calling thread's network namespace, driving
/// the socket's connection alongside (no task is left behind, no multi-thread runtime needed).
async fn with_netlink<T, F, Fut>(work: F) -> Result<T>
where
    F: FnOnce(Handle) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let (connection, handle, _) =
        rtnetlink::new_connection().map_err(|e| NetworkError::Netlink {
            action: "failed to open a netlink socket".into(),
            message: e.to_string(),
        })?;
    let work = work(handle);
    tokio::pin!(work);
    tokio::select! {
        result = &mut work => result,
        () = connection => Err(NetworkError::Netlink {
            action: "netlink connection".into(),
            message: "closed before the requests were answered".into(),
        }),
    }
}

/// Runs `f` in a new thread that is joined before returning: for work that changes the
/// thread's network namespace.
async fn in_thread<T, F>(name: &str, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(|source| NetworkError::Namespace {
            action: "failed to start a thread for",
            path: PathBuf::from(NETNS_DIR),
            source,
        })?;
    let result = rx.await;
    match thread.join() {
        Ok(()) => {}
        Err(panic) => std::panic::resume_unwind(panic),
    }
    result.map_err(|_| NetworkError::Namespace {
        action: "network namespace thread ended without an answer for",
        path: PathBuf::from(NETNS_DIR),
        source: std::io::Error::from(Errno::EPIPE),
    })?
}

/// The index of link `name`, if there is one.
async fn link_index(h: &Handle, name: &str) -> Result<Option<u32>> {
    let mut links = h.link().get().match_name(name.to_owned()).execute();
    match links.try_next().await {
        Ok(link) => Ok(link.map(|l| l.header.index)),
        Err(e) if errno(&e) == Some(Errno::ENODEV) => Ok(None),
        Err(e) => Err(netlink_error(
            format!("failed to look up link {name:?}"),
            &e,
        )),
    }
}

/// Deletes link `name`; a missing link is not an error.
async fn delete_link(h: &Handle, name: &str) -> Result<()> {
    let Some(index) = link_index(h, name).await? else {
        return Ok(());
    };
    match h.link().del(index).execute().await {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(Errno::ENODEV) => Ok(()),
        Err(e) => Err(netlink_error(format!("failed to delete link {name:?}"), &e)),
    }
}

/// Creates the bridge if needed, brings it up and puts the node's gateway on it.
async fn ensure_bridge(
    h: &Handle,
    bridge: &str,
    mac: Vec<u8>,
    gateway: Ipv4Addr,
    cidr: Ipv4Net,
) -> Result<u32> {
    let index = match link_index(h, bridge).await? {
        Some(index) => index,
        None => {
            let created = h
                .link()
                .add(LinkBridge::new(bridge).address(mac).build())
                .execute()
                .await;
            match created {
                Ok(()) => {}
                // Another helper of the same cluster made it first.
                Err(e) if errno(&e) == Some(Errno::EEXIST) => {}
                Err(e) => {
                    return Err(netlink_error(
                        format!("failed to create bridge {bridge:?}"),
                        &e,
                    ));
                }
            }
            link_index(h, bridge)
                .await?
                .ok_or_else(|| NetworkError::Netlink {
                    action: format!("failed to create bridge {bridge:?}"),
                    message: "it is gone right after being made".into(),
                })?
        }
    };
    h.link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(|e| netlink_error(format!("failed to set bridge {bridge:?} up"), &e))?;

    let mut addresses = h.address().get().set_link_index_filter(index).execute();
    while let Some(address) = addresses
        .try_next()
        .await
        .map_err(|e| netlink_error(format!("failed to list addresses of {bridge:?}"), &e))?
    {
        let has = address.attributes.iter().any(|a| {
            matches!(
                a,
                AddressAttribute::Local(IpAddr::V4(ip)) | AddressAttribute::Address(IpAddr::V4(ip))
                    if *ip == gateway
            )
        });
        if has {
            return Ok(index);
        }
    }
    match h
        .address()
        .add(index, IpAddr::V4(gateway), cidr.prefix_len())
        .execute()
        .await
    {
        Ok(()) => Ok(index),
        Err(e) if errno(&e) == Some(Errno::EEXIST) => Ok(index),
        Err(e) => Err(netlink_error(
            format!(
                "failed to add gateway {gateway}/{} to bridge {bridge:?}",
                cidr.prefix_len()
            ),
            &e,
        )),
    }
}

/// A port of the bridge.
struct Port {
    name: String,
    alias: Option<String>,
}

/// The bridge's ports.
async fn bridge_ports(h: &Handle, bridge_index: u32) -> Result<Vec<Port>> {
    let links: Vec<LinkMessage> = h
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(|e| netlink_error("failed to list links", &e))?;
    Ok(links
        .into_iter()
        .filter(|l| {
            l.attributes
                .iter()
                .any(|a| matches!(a, LinkAttribute::Controller(i) if *i == bridge_index))
        })
        .filter_map(|l| {
            let mut name = None;
            let mut alias = None;
            for a in l.attributes {
                match a {
                    LinkAttribute::IfName(n) => name = Some(n),
                    LinkAttribute::IfAlias(s) => alias = Some(s),
                    _ => {}
                }
            }
            Some(Port { name: name?, alias })
        })
        .collect())
}

/// The addresses of the pods on the bridge, from their host veths' aliases.
async fn pod_addresses(h: &Handle, bridge_index: u32) -> Result<Vec<Ipv4Addr>> {
    Ok(bridge_ports(h, bridge_index)
        .await?
        .into_iter()
        .filter_map(|p| p.alias?.rsplit(' ').next()?.parse().ok())
        .collect())
}

/// Makes the namespace and wires it to the bridge.
async fn connect(
    pod: &PodNetwork,
    netns_name: &str,
    bridge_index: u32,
    cidr: Ipv4Net,
    cluster: Ipv4Net,
    gateway: Ipv4Addr,
) -> Result<()> {
    let path = pod.netns.clone();
    in_thread("netns-add", move || create_netns(&path)).await?;

    let ns = open_netns(&pod.netns)?;
    let veth = pod.host_veth.clone();
    let alias = format!("{netns_name} {}", pod.ip);
    let ns_fd = ns.as_raw_fd();
    with_netlink(|h| async move {
        // The peer is made inside the pod's namespace, already named eth0 (like `ip link add
        // vethX type veth peer name eth0 netns <ns>`): no temporary name on the host.
        let peer = LinkUnspec::new_with_name(POD_INTERFACE)
            .setns_by_fd(ns_fd)
            .build();
        let message = LinkVeth::new(&veth, POD_INTERFACE)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .controller(bridge_index)
            .up()
            .build();
        h.link().add(message).execute().await.map_err(|e| {
            netlink_error(
                format!("failed to create veth pair {veth:?} <-> {POD_INTERFACE:?}"),
                &e,
            )
        })?;
        // The kernel takes an alias only on a link that exists (RTM_NEWLINK ignores it).
        let index = link_index(&h, &veth)
            .await?
            .ok_or_else(|| NetworkError::Netlink {
                action: format!("failed to set up veth {veth:?}"),
                message: "gone right after being made".into(),
            })?;
        h.link()
            .set(LinkUnspec::new_with_index(index).alias(alias).build())
            .execute()
            .await
            .map_err(|e| netlink_error(format!("failed to set the alias of {veth:?}"), &e))
    })
    .await?;

    let ip = pod.ip;
    in_thread("netns-setup", move || {
        configure_pod_interfaces(ns, ip, cidr, cluster, gateway)
    })
    .await
}

/// Makes `/run/netns` a shared mount point, as `ip netns add` does, so namespaces mounted
/// under it show in every mount namespace that shares it.
fn prepare_netns_dir() -> Result<()> {
    let dir = Path::new(NETNS_DIR);
    let namespace_error = |action, source: Errno| NetworkError::Namespace {
        action,
        path: dir.to_owned(),
        source: source.into(),
    };
    std::fs::create_dir_all(dir).map_err(|source| NetworkError::Namespace {
        action: "failed to create",
        path: dir.to_owned(),
        source,
    })?;
    let make_shared = || {
        nix::mount::mount(
            Some("none"),
            dir,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match make_shared() {
        Ok(()) => Ok(()),
        // Not a mount point yet: bind it onto itself first.
        Err(Errno::EINVAL) => {
            nix::mount::mount(
                Some(dir),
                dir,
                Some("none"),
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(|e| namespace_error("failed to bind-mount", e))?;
            make_shared().map_err(|e| namespace_error("failed to make shared", e))
        }
        Err(e) => Err(namespace_error("failed to make shared", e)),
    }
}

/// Creates the namespace file and mounts a new network namespace on it (run in its own
/// thread: `unshare` moves that thread, which then ends).
fn create_netns(path: &Path) -> Result<()> {
    prepare_netns_dir()?;
    let namespace_error = |action, source: Errno| NetworkError::Namespace {
        action,
        path: path.to_owned(),
        source: source.into(),
    };
    let file = nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| namespace_error("failed to create network namespace", e))?;
    drop(file);
    let made = nix::sched::unshare(CloneFlags::CLONE_NEWNET)
        .map_err(|e| namespace_error("failed to create network namespace", e))
        .and_then(|()| {
            nix::mount::mount(
                Some("/proc/thread-self/ns/net"),
                path,
                Some("none"),
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| namespace_error("failed to bind-mount network namespace", e))
        });
    if made.is_err() {
        let _ = std::fs::remove_file(path);
    }
    made
}

fn open_netns(path: &Path) -> Result<OwnedFd> {
    nix::fcntl::open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).map_err(|e| {
        NetworkError::Namespace {
            action: "failed to open network namespace",
            path: path.to_owned(),
            source: e.into(),
        }
    })
}

/// Inside the pod's namespace (run in its own thread, which `setns` moves there and which then
/// ends): `lo` up, `eth0` addressed and up, the default route through the node's gateway and
/// the cluster network on-link.
fn configure_pod_interfaces(
    ns: OwnedFd,
    ip: Ipv4Addr,
    cidr: Ipv4Net,
    cluster: Ipv4Net,
    gateway: Ipv4Addr,
) -> Result<()> {
    nix::sched::setns(ns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| {
        NetworkError::Namespace {
            action: "failed to enter network namespace",
            path: PathBuf::from(NETNS_DIR),
            source: e.into(),
        }
    })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|source| NetworkError::Namespace {
            action: "failed to start an event loop in",
            path: PathBuf::from(NETNS_DIR),
            source,
        })?;
    runtime.block_on(with_netlink(|h| async move {
        let up = |name: &'static str| {
            let h = h.clone();
            async move {
                let index = link_index(&h, name)
                    .await?
                    .ok_or_else(|| NetworkError::Netlink {
                        action: format!("failed to set {name} up"),
                        message: "no such device in the pod's namespace".into(),
                    })?;
                h.link()
                    .set(LinkUnspec::new_with_index(index).up().build())
                    .execute()
                    .await
                    .map_err(|e| netlink_error(format!("failed to set {name} up"), &e))?;
                Ok::<_, NetworkError>(index)
            }
        };
        up("lo").await?;
        let eth0 = link_index(&h, POD_INTERFACE)
            .await?
            .ok_or_else(|| NetworkError::Netlink {
                action: format!("failed to address {POD_INTERFACE}"),
                message: "no such device in the pod's namespace".into(),
            })?;
        h.address()
            .add(eth0, IpAddr::V4(ip), cidr.prefix_len())
            .execute()
            .await
            .map_err(|e| {
                netlink_error(
                    format!(
                        "failed to add IP addr {ip}/{} to {POD_INTERFACE:?}",
                        cidr.prefix_len()
                    ),
                    &e,
                )
            })?;
        up(POD_INTERFACE).await?;
        let default = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(gateway)
            .output_interface(eth0)
            .build();
        h.route().add(default).execute().await.map_err(|e| {
            netlink_error(
                format!("failed to add route default via {gateway} dev {POD_INTERFACE}"),
                &e,
            )
        })?;
        if cluster != cidr {
            let on_link = RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(cluster.network(), cluster.prefix_len())
                .output_interface(eth0)
                .scope(RouteScope::Link)
                .build();
            h.route().add(on_link).execute().await.map_err(|e| {
                netlink_error(
                    format!("failed to add route {cluster} dev {POD_INTERFACE}"),
                    &e,
                )
            })?;
        }
        Ok(())
    }))
}

/// Unmounts and removes a namespace file; a missing one is not an error.
fn remove_netns(path: &Path) -> Result<()> {
    match nix::mount::umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
        Err(e) => {
            return Err(NetworkError::Namespace {
                action: "failed to unmount network namespace",
                path: path.to_owned(),
                source: e.into(),
            });
        }
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(NetworkError::Namespace {
            action: "failed to remove network namespace",
            path: path.to_owned(),
            source,
        }),
    }
}

/// The names under `/run/netns` that start with `prefix`.
fn netns_names(prefix: &str) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(NETNS_DIR) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(NetworkError::Namespace {
                action: "failed to list",
                path: PathBuf::from(NETNS_DIR),
                source,
            });
        }
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    Ok(names)
}

/// Turns on IPv4 forwarding (`net.ipv4.ip_forward`), as CNI's bridge plugin does for a gateway
/// and as Kubernetes requires: a pod's connection to a Service is DNATed on the host to a pod
/// behind the same bridge and routed back out, which is forwarding. Left on at the end, as CNI
/// and Docker leave it.
fn enable_forwarding() -> Result<()> {
    const SYSCTL: &str = "/proc/sys/net/ipv4/ip_forward";
    let firewall = |message: String| NetworkError::Firewall {
        action: format!("turn on {SYSCTL}"),
        message,
    };
    match std::fs::read_to_string(SYSCTL) {
        Ok(value) if value.trim() == "1" => Ok(()),
        Ok(_) => std::fs::write(SYSCTL, "1").map_err(|e| firewall(e.to_string())),
        Err(e) => Err(firewall(e.to_string())),
    }
}

/// The iptables rule that lets frames through from one port of the bridge to another.
fn forwarding_rule(bridge: &str) -> [&str; 8] {
    ["FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT", "-w"]
}

/// Runs `iptables args`; `None` when there is no iptables to run.
fn iptables(args: &[&str]) -> Option<std::process::Output> {
    Command::new("iptables").args(args).output().ok()
}

/// Whether the filter table's FORWARD chain, as `iptables -S FORWARD` prints it, would drop
/// traffic that no rule accepts: a DROP policy (Docker's) or a DROP or REJECT rule.
fn forward_chain_drops(listing: &str) -> bool {
    listing.lines().any(|line| {
        let line = line.trim();
        line == "-P FORWARD DROP" || line.ends_with("-j DROP") || line.contains("-j REJECT")
    })
}

/// Lets pod-to-pod traffic through the host firewall's FORWARD chain when it would not pass
/// (only when that chain drops): frames bridged from pod to pod when `br_netfilter` hands them
/// to iptables, and connections to a Service, which the host DNATs and routes back out of the
/// bridge.
fn allow_bridged_forwarding(bridge: &str) -> Result<()> {
    let Some(listing) = iptables(&["-w", "-S", "FORWARD"]) else {
        return Ok(());
    };
    if !listing.status.success() || !forward_chain_drops(&String::from_utf8_lossy(&listing.stdout))
    {
        return Ok(());
    }
    let rule = forwarding_rule(bridge);
    let present = iptables(&[&["-C"][..], &rule[..]].concat()).is_some_and(|o| o.status.success());
    if present {
        return Ok(());
    }
    let args = [&["-I"][..], &rule[..1], &["1"][..], &rule[1..]].concat();
    match iptables(&args) {
        Some(out) if out.status.success() => Ok(()),
        Some(out) => Err(NetworkError::Firewall {
            action: format!("iptables {}", args.join(" ")),
            message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        }),
        None => Ok(()),
    }
}

/// Removes the rule [`allow_bridged_forwarding`] may have added (every copy of it).
fn remove_forwarding_rule(bridge: &str) -> Result<()> {
    let rule = forwarding_rule(bridge);
    let args = [&["-D"][..], &rule[..]].concat();
    for _ in 0..16 {
        match iptables(&args) {
            Some(out) if out.status.success() => continue,
            _ => return Ok(()),
        }
    }
    Err(NetworkError::Firewall {
        action: format!("iptables {}", args.join(" ")),
        message: "the rule is still there after 16 deletions".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        parse_cidr(s).unwrap()
    }

    #[test]
    fn addresses_start_after_the_gateway_and_go_round_robin() {
        let cidr = net("10.244.7.0/24");
        assert_eq!(gateway(cidr), Some(Ipv4Addr::new(10, 244, 7, 1)));
        let mut pool = Pool::default();
        let a = pool.allocate(cidr).unwrap();
        let b = pool.allocate(cidr).unwrap();
        assert_eq!(
            (a, b),
            (Ipv4Addr::new(10, 244, 7, 2), Ipv4Addr::new(10, 244, 7, 3))
        );
        pool.used.remove(&a);
        // A freed address is not handed out again at once.
        assert_eq!(pool.allocate(cidr), Some(Ipv4Addr::new(10, 244, 7, 4)));
    }

    #[test]
    fn addresses_found_on_pods_are_skipped_and_a_full_cidr_is_exhausted() {
        let cidr = net("10.244.9.0/29"); // .2 to .6 for pods
        let mut pool = Pool::default();
        pool.used
            .extend([Ipv4Addr::new(10, 244, 9, 2), Ipv4Addr::new(10, 244, 9, 4)]);
        let got: Vec<_> = std::iter::from_fn(|| pool.allocate(cidr)).collect();
        assert_eq!(
            got,
            [3, 5, 6].map(|d| Ipv4Addr::new(10, 244, 9, d)),
            "never the network, gateway or broadcast address"
        );
        pool.used.remove(&Ipv4Addr::new(10, 244, 9, 2));
        assert_eq!(
            pool.allocate(cidr),
            Some(Ipv4Addr::new(10, 244, 9, 2)),
            "wraps around"
        );
    }

    #[test]
    fn cidrs_parse_to_their_network_and_bad_ones_are_refused() {
        assert_eq!(net("10.244.3.9/24"), net("10.244.3.0/24"));
        assert!(matches!(
            parse_cidr("10.244.3.0"),
            Err(NetworkError::InvalidCidr(_))
        ));
        assert!(matches!(
            parse_cidr("nonsense/24"),
            Err(NetworkError::InvalidCidr(_))
        ));
        assert_eq!(gateway(net("10.0.0.0/31")), None);
    }

    #[test]
    fn names_fit_the_kernel_and_are_stable() {
        let v = host_veth_name("orr-demo-0b3e4f1c-pod");
        assert_eq!(v.len(), 12);
        assert!(v.starts_with("veth"));
        assert_eq!(v, host_veth_name("orr-demo-0b3e4f1c-pod"));
        assert_ne!(v, host_veth_name("orr-demo-0b3e4f1c-poe"));
        assert_eq!(
            Network::new("a-rather-long-cluster").bridge_name(),
            "orr-a-rather-lo"
        );
        let mac = bridge_mac("orr-demo");
        assert_eq!(mac.len(), 6);
        assert_eq!(mac[0] & 0x03, 0x02, "locally administered unicast");
    }

    #[test]
    fn errors_say_which_pod_operation_failed() {
        let e = NetworkError::Netlink {
            action: "failed to create bridge \"orr-demo\"".into(),
            message: std::io::Error::from(Errno::EPERM).to_string(),
        };
        assert_eq!(
            e.during(SETUP).to_string(),
            "failed to set up pod network: failed to create bridge \"orr-demo\": \
             Operation not permitted (os error 1)"
        );
        let e = NetworkError::Exhausted("10.244.1.0/24".into()).during(SETUP);
        assert_eq!(e.to_string(), "no free address left in 10.244.1.0/24");
    }

    #[test]
    fn forward_chain_drops_reads_docker_and_plain_hosts() {
        let docker = "-P FORWARD DROP\n-A FORWARD -j DOCKER-USER\n-A FORWARD -j DOCKER-FORWARD\n";
        assert!(forward_chain_drops(docker));
        assert!(!forward_chain_drops("-P FORWARD ACCEPT\n"));
        assert!(forward_chain_drops(
            "-P FORWARD ACCEPT\n-A FORWARD -j REJECT --reject-with icmp-host-prohibited\n"
        ));
        assert!(!forward_chain_drops(
            "-P FORWARD ACCEPT\n-A FORWARD -i docker0 -o docker0 -j ACCEPT\n"
        ));
    }
}
