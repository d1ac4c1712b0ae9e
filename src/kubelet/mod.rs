//! The kubelet: one per virtual node, an ordinary API client. It registers its Node, renews its
//! Lease in `kube-node-lease`, watches the pods bound to it, and runs each through the
//! [`crate::runtime::ContainerRuntime`]: sandbox, image pulls, containers, then status back to
//! the API server as the real kubelet writes it (phase, conditions, containerStatuses, podIP,
//! hostIP, startTime), with Events. It also serves `/containerLogs/...`, `/exec/...` and
//! `/portForward/...` over HTTPS on 127.0.0.1 for the API server's `pods/log`, `pods/exec` and
//! `pods/portforward`, to the API server alone ([`server`]; its serving certificate and the CA
//! come from `orrery up`, like the other shared handles).
//!
//! Restarts follow `restartPolicy` with the real back-off. Stopping a kubelet (its task is
//! aborted) ends every task it started, but not its containers, which live in the runtime: a
//! kubelet started again on the same runtime adopts them. Each container gets its environment
//! (`env`), security and resources (`config`) and volumes (`volumes`, kept under
//! [`NodeConfig::root_dir`]), and is probed (`probes`), as upstream's kubelet does.

mod config;
pub mod dns;
mod env;
mod exec;
mod logs;
mod phase;
mod pod;
mod portforward;
mod probes;
mod server;
mod spdy;
mod static_pods;
pub mod stats;
mod status;
mod volumes;

pub use static_pods::ControlPlane;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

use crate::flow::Flow;
use crate::runtime::ContainerRuntime;

impl NodeConfig {
    /// The node's `/24` of the cluster's pod network (`--cluster-cidr`): with the default
    /// `10.244.0.0/14`, `10.244.<index>.0/24` for the first 255 nodes, continuing into
    /// `10.245.0.0/24` and on.
    pub fn pod_cidr(&self) -> String {
        self.cluster_cidr.node_cidr(self.index)
    }
}

/// The cluster's pod network (kube-controller-manager's `--cluster-cidr`), cut into one `/24`
/// per node as its node IPAM does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClusterCidr {
    base: std::net::Ipv4Addr,
    prefix: u8,
}

impl Default for ClusterCidr {
    fn default() -> Self {
        ClusterCidr {
            base: std::net::Ipv4Addr::new(10, 244, 0, 0),
            prefix: 14,
        }
    }
}

impl std::fmt::Display for ClusterCidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

impl std::str::FromStr for ClusterCidr {
    type Err = String;

    /// An IPv4 CIDR with room for at least two `/24`s (`10.244.0.0/14`).
    fn from_str(text: &str) -> Result<Self, String> {
        let invalid = || {
            format!(
                "invalid cluster CIDR {text:?}: want an IPv4 network such as 10.244.0.0/16, no longer than /23"
            )
        };
        let (address, prefix) = text.split_once('/').ok_or_else(invalid)?;
        let address: std::net::Ipv4Addr = address.parse().map_err(|_| invalid())?;
        let prefix: u8 = prefix.parse().map_err(|_| invalid())?;
        if !(8..=23).contains(&prefix) {
            return Err(invalid());
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(ClusterCidr {
            base: std::net::Ipv4Addr::from(u32::from(address) & mask),
            prefix,
        })
    }
}

impl ClusterCidr {
    /// How many worker nodes' `/24`s it holds (index 0 is the control-plane node's; workers
    /// count from 1).
    pub fn capacity(&self) -> u32 {
        (1u32 << (24 - self.prefix)) - 1
    }

    /// Whether it shares any address with the network `base/prefix`.
    pub fn overlaps(&self, base: std::net::Ipv4Addr, prefix: u8) -> bool {
        let shorter = self.prefix.min(prefix);
        let mask = u32::MAX.checked_shl(32 - u32::from(shorter)).unwrap_or(0);
        u32::from(self.base) & mask == u32::from(base) & mask
    }

    /// Node `index`'s `/24`.
    pub fn node_cidr(&self, index: u16) -> String {
        let base = u32::from(self.base) + (u32::from(index) << 8);
        format!("{}/24", std::net::Ipv4Addr::from(base))
    }
}

/// Node `index`'s address on the simulated runtime, where nothing of it is on a network:
/// `127.0.0.<10 + index>` (carrying on into `127.0.1.x` past 245 nodes), distinct for every node
/// and reachable from the host without root.
pub fn sim_address(index: u16) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(127, 0, 0, 10)) + u32::from(index))
}

/// The pids limit a kubelet gives each container unless told otherwise: generous for any real
/// workload, small enough that a fork bomb in one pod cannot take the machine's pid space.
pub const DEFAULT_POD_PIDS_LIMIT: i64 = 4096;

/// How a virtual node presents itself.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// `node-1`, `node-2`, ...
    pub name: String,
    /// Its index (0 for the control-plane node, workers from 1): its pod CIDR is the index-th
    /// `/24` of the cluster CIDR.
    pub index: u16,
    /// The cluster's pod network.
    pub cluster_cidr: ClusterCidr,
    /// The node's own address, its InternalIP: where its kubelet serves and its NodePorts are
    /// reached (with real containers the node's gateway on the cluster's bridge, `<pod
    /// CIDR>.1`; on the simulated runtime a loopback address, [`sim_address`]).
    pub address: std::net::Ipv4Addr,
    /// CPU capacity, as a quantity (`4`).
    pub cpu: String,
    /// Memory capacity, as a quantity (`8Gi`).
    pub memory: String,
    /// The most pods it takes.
    pub max_pods: u32,
    /// The Lease's duration (`--node-lease-duration-seconds`, 40 by default); the kubelet renews
    /// it every quarter of that, as the real one does.
    pub lease_duration_seconds: u32,
    /// Where the kubelet keeps its pods' directories (volumes, termination-message files):
    /// `<state-dir>/kubelet/<node>`, laid out as upstream's `/var/lib/kubelet`.
    pub root_dir: std::path::PathBuf,
    /// The most processes one container may have (`--pod-max-pids`); `None` for no limit.
    pub pod_pids_limit: Option<i64>,
    /// Set for a control-plane node, as kubeadm makes one: labelled and tainted
    /// `node-role.kubernetes.io/control-plane`, running the control plane's static pods.
    pub control_plane: Option<ControlPlane>,
    /// The cluster DNS servers pods with `dnsPolicy: ClusterFirst` use (`--cluster-dns`,
    /// [`DEFAULT_CLUSTER_DNS`]); empty: they get the host's, as upstream's kubelet.
    pub cluster_dns: Vec<std::net::IpAddr>,
    /// The cluster domain of pods' search domains (`--cluster-domain`, `cluster.local`).
    pub cluster_domain: String,
}

/// The `kube-dns` Service's ClusterIP, the kubelet's `--cluster-dns` by default.
pub const DEFAULT_CLUSTER_DNS: std::net::IpAddr =
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 96, 0, 10));

/// The label and taint key of a control-plane node (kubeadm's).
pub const CONTROL_PLANE_ROLE: &str = "node-role.kubernetes.io/control-plane";

/// One virtual node's kubelet.
pub struct Kubelet {
    config: NodeConfig,
    client: kube::Client,
    runtime: Arc<dyn ContainerRuntime>,
    /// A control-plane node's static pods, shared with its runtime view.
    pictures: Option<Arc<static_pods::Pictures>>,
    flow: Flow,
    /// The serving certificate of its HTTPS server, and the CA its clients must be signed by.
    tls: crate::pki::ServerTls,
    /// Events to record, in order, by the kubelet's recorder task (as the real kubelet's event
    /// broadcaster does), so that no pod worker waits for an Event's write.
    events: tokio::sync::mpsc::UnboundedSender<PodEvent>,
    recorder: std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<PodEvent>>>,
}

/// An Event about a pod, queued for the recorder.
pub(crate) struct PodEvent {
    namespace: String,
    name: String,
    uid: String,
    kind: &'static str,
    reason: String,
    message: String,
}

/// The host's kernel release (`uname -r`): every virtual node runs on it.
fn kernel_version() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

impl Kubelet {
    /// A kubelet for `config`, talking to the API server through `client`, serving its HTTPS
    /// endpoints with `tls` ([`crate::pki::Pki::kubelet_serving`]).
    pub fn new(
        config: NodeConfig,
        client: kube::Client,
        runtime: Arc<dyn ContainerRuntime>,
        flow: Flow,
        tls: crate::pki::ServerTls,
    ) -> Self {
        let (events, recorder) = tokio::sync::mpsc::unbounded_channel();
        // A control-plane node's runtime shows its static pods' in-process containers too.
        let (runtime, pictures): (Arc<dyn ContainerRuntime>, _) = match &config.control_plane {
            Some(control_plane) => {
                let pictures = Arc::new(static_pods::Pictures::default());
                let view = static_pods::InProcess::new(
                    runtime,
                    pictures.clone(),
                    control_plane.logs.clone(),
                );
                (Arc::new(view), Some(pictures))
            }
            None => (runtime, None),
        };
        Kubelet {
            config,
            client,
            runtime,
            pictures,
            flow,
            tls,
            events,
            recorder: std::sync::Mutex::new(Some(recorder)),
        }
    }

    /// Records queued Events one at a time, in the order they were queued.
    async fn record_events(self: Arc<Self>) {
        let Some(mut queue) = self
            .recorder
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            return;
        };
        let node = self.config.name.as_str();
        let source = crate::events::Source {
            component: "kubelet",
            host: Some(node),
            instance: Some(node),
        };
        while let Some(e) = queue.recv().await {
            let about = crate::events::Involved {
                kind: "Pod",
                namespace: &e.namespace,
                name: &e.name,
                uid: &e.uid,
            };
            crate::events::record(&self.client, &about, &source, e.kind, &e.reason, &e.message)
                .await;
        }
    }

    fn node_object(&self, port: u16) -> serde_json::Value {
        let c = &self.config;
        let runtime = self.runtime.version();
        let resources = json!({"cpu": c.cpu, "memory": c.memory, "pods": c.max_pods.to_string(), "ephemeral-storage": "100Gi"});
        let condition = |kind: &str, status: &str, reason: &str, message: &str| json!({"type": kind, "status": status, "reason": reason, "message": message, "lastHeartbeatTime": now(), "lastTransitionTime": now()});
        let mut labels = json!({
            "kubernetes.io/hostname": c.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "beta.kubernetes.io/os": "linux",
            "beta.kubernetes.io/arch": "amd64",
        });
        let mut spec = json!({"podCIDR": c.pod_cidr(), "podCIDRs": [c.pod_cidr()]});
        if c.control_plane.is_some() {
            // What kubeadm's mark-control-plane phase gives the node.
            labels[CONTROL_PLANE_ROLE] = json!("");
            labels["node.kubernetes.io/exclude-from-external-load-balancers"] = json!("");
            spec["taints"] = json!([{"key": CONTROL_PLANE_ROLE, "effect": "NoSchedule"}]);
        }
        json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": c.name, "labels": labels},
            "spec": spec,
            "status": {
                "capacity": resources,
                "allocatable": resources,
                "addresses": [{"type": "InternalIP", "address": c.address.to_string()}, {"type": "Hostname", "address": c.name}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
                "nodeInfo": {
                    "machineID": c.name, "systemUUID": c.name, "bootID": c.name,
                    "kernelVersion": kernel_version(), "osImage": "Orrery virtual node", "containerRuntimeVersion": format!("{}://{}", runtime.0, runtime.1),
                    "kubeletVersion": crate::apimachinery::KUBERNETES_VERSION, "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64",
                },
                "conditions": [
                    condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                    condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                    condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                    condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
                ],
            },
        })
    }

    /// Registers the Node (or refreshes it) and its status.
    async fn register(&self, port: u16) -> kube::Result<()> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let object = self.node_object(port);
        match nodes.get_opt(&self.config.name).await? {
            None => {
                let node: Node = serde_json::from_value(object).map_err(kube::Error::SerdeError)?;
                nodes.create(&PostParams::default(), &node).await?;
            }
            Some(_) => {
                nodes
                    .patch_status(
                        &self.config.name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"status": object["status"]})),
                    )
                    .await?;
            }
        }
        Ok(())
    }

    /// Whether the Node's `Ready` condition is `True` (an unreadable Node counts as ready, so a
    /// failed read never causes a write).
    async fn posted_ready(&self) -> bool {
        let nodes: Api<Node> = Api::all(self.client.clone());
        match nodes.get_opt(&self.config.name).await {
            Ok(Some(node)) => node
                .status
                .and_then(|s| s.conditions)
                .and_then(|c| c.into_iter().find(|c| c.type_ == "Ready"))
                .is_some_and(|c| c.status == "True"),
            Ok(None) => false,
            Err(_) => true,
        }
    }

    /// Renews the node's Lease (never gated: heartbeats are not steps).
    async fn renew_lease(&self) -> kube::Result<()> {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), "kube-node-lease");
        let now = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
            .to_string();
        let spec = json!({"holderIdentity": self.config.name, "leaseDurationSeconds": self.config.lease_duration_seconds, "renewTime": now});
        match leases.get_opt(&self.config.name).await? {
            None => {
                let lease: Lease = serde_json::from_value(
                    json!({"metadata": {"name": self.config.name}, "spec": spec}),
                )
                .map_err(kube::Error::SerdeError)?;
                leases.create(&PostParams::default(), &lease).await?;
            }
            Some(_) => {
                leases
                    .patch(
                        &self.config.name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"spec": spec})),
                    )
                    .await?;
            }
        }
        Ok(())
    }

    /// Runs the kubelet until its task is aborted, which ends every task it started.
    pub async fn run(self) {
        let this = Arc::new(self);
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(this.clone().record_events());
        let memory = crate::apimachinery::quantity::bytes(&this.config.memory).unwrap_or(0);
        let port = match server::serve(
            this.runtime.clone(),
            server::Hops {
                flow: this.flow.clone(),
                node: this.config.name.clone(),
            },
            Arc::new(stats::NodeStats::new(
                &this.config.name,
                u64::try_from(memory).unwrap_or(0),
                jiff::Timestamp::now(),
            )),
            this.tls.clone(),
            this.config.address,
        )
        .await
        {
            Ok((port, server)) => {
                tasks.spawn(server);
                port
            }
            Err(error) => {
                tracing::error!(%error, node = %this.config.name, "cannot serve container logs, exec and port-forward");
                0
            }
        };
        while let Err(error) = this.register(port).await {
            tracing::warn!(%error, node = %this.config.name, "node registration failed; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        tasks.spawn({
            let this = this.clone();
            async move {
                let renew = Duration::from_secs(u64::from(this.config.lease_duration_seconds)) / 4;
                let mut ticker = tokio::time::interval(renew.max(Duration::from_millis(250)));
                loop {
                    ticker.tick().await;
                    if let Err(error) = this.renew_lease().await {
                        tracing::warn!(%error, node = %this.config.name, "lease renewal failed");
                    }
                    // Someone else (the node lifecycle controller) said this node is not
                    // ready: post the true status again.
                    if !this.posted_ready().await
                        && let Err(error) = this.register(port).await
                    {
                        tracing::warn!(%error, node = %this.config.name, "node status update failed");
                    }
                }
            }
        });
        // A control-plane node's static pods, shown as mirror pods.
        let mirrors = match (&this.config.control_plane, &this.pictures) {
            (Some(control_plane), Some(pictures)) => {
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                tasks.spawn(static_pods::run(
                    this.clone(),
                    control_plane.clone(),
                    pictures.clone(),
                    rx,
                ));
                Some(tx)
            }
            _ => None,
        };
        let pods: Api<Pod> = Api::all(this.client.clone());
        let config =
            watcher::Config::default().fields(&format!("spec.nodeName={}", this.config.name));
        let mut events = watcher(pods, config)
            .modify(|p: &mut Pod| {
                p.metadata.managed_fields = None;
                crate::apimachinery::pods::shrink(p);
            })
            .default_backoff()
            .boxed();
        let mut workers: HashMap<String, pod::Worker> = HashMap::new();
        while let Some(event) = events.next().await {
            let (pod, deleted) = match event {
                Ok(watcher::Event::InitDone) => {
                    // Directories of pods deleted while this kubelet was away.
                    let (root, known) = (
                        this.config.root_dir.clone(),
                        workers.keys().cloned().collect(),
                    );
                    tasks.spawn(async move {
                        let removed = tokio::task::spawn_blocking(move || {
                            volumes::remove_orphans(&root, &known)
                        })
                        .await;
                        if let Ok(Err(error)) = removed {
                            tracing::warn!(%error, "cannot remove orphaned pod directories");
                        }
                    });
                    continue;
                }
                Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => (pod, false),
                Ok(watcher::Event::Delete(pod)) => (pod, true),
                _ => continue,
            };
            // A mirror pod is never run: its static pod is (or, bound here without one, it is
            // an orphan, and goes).
            if static_pods::is_mirror(&pod) {
                match &mirrors {
                    Some(mirrors) => {
                        let _ = mirrors.send(if deleted {
                            static_pods::MirrorEvent::Deleted(pod)
                        } else {
                            static_pods::MirrorEvent::Seen(pod)
                        });
                    }
                    None if !deleted => {
                        let client = this.client.clone();
                        tasks.spawn(async move { static_pods::delete_orphan(&client, &pod).await });
                    }
                    None => {}
                }
                continue;
            }
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            if deleted {
                if let Some(worker) = workers.remove(&uid) {
                    worker.deleted();
                }
                continue;
            }
            workers
                .entry(uid)
                .or_insert_with(|| pod::Worker::spawn(this.clone(), &mut tasks))
                .update(pod);
            // Forget the workers that have finished.
            while tasks.try_join_next().is_some() {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ClusterCidr;

    #[test]
    fn the_cluster_cidr_is_cut_into_one_slash_24_per_node() {
        let default = ClusterCidr::default();
        assert_eq!(default.to_string(), "10.244.0.0/14");
        assert_eq!(default.node_cidr(1), "10.244.1.0/24");
        assert_eq!(default.node_cidr(255), "10.244.255.0/24");
        assert_eq!(default.node_cidr(256), "10.245.0.0/24");
        assert_eq!(default.capacity(), 1023);
        let small: ClusterCidr = "10.101.7.9/16".parse().unwrap();
        assert_eq!(small.to_string(), "10.101.0.0/16");
        let service = std::net::Ipv4Addr::new(10, 96, 0, 0);
        assert!(small.overlaps(service, 12), "10.101/16 is inside 10.96/12");
        assert!(!default.overlaps(service, 12));
        assert!(
            "10.0.0.0/8"
                .parse::<ClusterCidr>()
                .unwrap()
                .overlaps(service, 12)
        );
        assert_eq!(small.node_cidr(2), "10.101.2.0/24");
        assert_eq!(small.capacity(), 255);
        for bad in [
            "10.0.0.0",
            "10.0.0.0/24",
            "10.0.0.0/7",
            "fd00::/64",
            "ten/16",
        ] {
            let error = bad.parse::<ClusterCidr>().unwrap_err();
            assert!(error.contains("invalid cluster CIDR"), "{bad}: {error}");
        }
    }
}
