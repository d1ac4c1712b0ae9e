//! The kubelet: one per virtual node, an ordinary API client. It registers its Node, renews its
//! Lease in `kube-node-lease`, watches the pods bound to it, and runs each through the
//! [`crate::runtime::ContainerRuntime`]: sandbox, image pulls, containers, then status back to
//! the API server as the real kubelet writes it (phase, conditions, containerStatuses, podIP,
//! hostIP, startTime), with Events. It also serves `/containerLogs/...`, `/exec/...` and
//! `/portForward/...` on 127.0.0.1 for the API server's `pods/log`, `pods/exec` and
//! `pods/portforward` ([`server`]).
//!
//! Restarts follow `restartPolicy` with the real back-off. Stopping a kubelet (its task is
//! aborted) ends every task it started, but not its containers, which live in the runtime: a
//! kubelet started again on the same runtime adopts them. Probes come with real containers.

mod exec;
mod logs;
mod pod;
mod portforward;
mod server;
mod spdy;

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
    /// The node's `/24` of the cluster's pod network: `10.244.<index>.0/24` for the first 255
    /// nodes, continuing into `10.245.0.0/24` and on (the cluster network is `10.244.0.0/14`).
    pub fn pod_cidr(&self) -> String {
        format!("{}.0/24", self.pod_prefix())
    }

    /// The first three octets of [`NodeConfig::pod_cidr`].
    pub(crate) fn pod_prefix(&self) -> String {
        let n = u32::from(self.index);
        format!("10.{}.{}", 244 + n / 256, n % 256)
    }
}

/// How a virtual node presents itself.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// `node-1`, `node-2`, ...
    pub name: String,
    /// Its index, from 1: the pod CIDR is `10.244.<index>.0/24`.
    pub index: u16,
    /// CPU capacity, as a quantity (`4`).
    pub cpu: String,
    /// Memory capacity, as a quantity (`8Gi`).
    pub memory: String,
    /// The most pods it takes.
    pub max_pods: u32,
    /// The Lease's duration (`--node-lease-duration-seconds`, 40 by default); the kubelet renews
    /// it every quarter of that, as the real one does.
    pub lease_duration_seconds: u32,
}

/// One virtual node's kubelet.
pub struct Kubelet {
    config: NodeConfig,
    client: kube::Client,
    runtime: Arc<dyn ContainerRuntime>,
    flow: Flow,
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

impl Kubelet {
    /// A kubelet for `config`, talking to the API server through `client`.
    pub fn new(
        config: NodeConfig,
        client: kube::Client,
        runtime: Arc<dyn ContainerRuntime>,
        flow: Flow,
    ) -> Self {
        Kubelet {
            config,
            client,
            runtime,
            flow,
        }
    }

    fn node_object(&self, port: u16) -> serde_json::Value {
        let c = &self.config;
        let resources = json!({"cpu": c.cpu, "memory": c.memory, "pods": c.max_pods.to_string(), "ephemeral-storage": "100Gi"});
        let condition = |kind: &str, status: &str, reason: &str, message: &str| json!({"type": kind, "status": status, "reason": reason, "message": message, "lastHeartbeatTime": now(), "lastTransitionTime": now()});
        json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": c.name, "labels": {
                "kubernetes.io/hostname": c.name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": "amd64",
            }},
            "spec": {"podCIDR": c.pod_cidr(), "podCIDRs": [c.pod_cidr()]},
            "status": {
                "capacity": resources,
                "allocatable": resources,
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": c.name}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
                "nodeInfo": {
                    "machineID": c.name, "systemUUID": c.name, "bootID": c.name,
                    "kernelVersion": "orrery", "osImage": "Orrery virtual node", "containerRuntimeVersion": "sim://0.1",
                    "kubeletVersion": crate::apiserver::KUBERNETES_VERSION, "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64",
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
        let port = match server::serve(this.runtime.clone()).await {
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
        let pods: Api<Pod> = Api::all(this.client.clone());
        let config =
            watcher::Config::default().fields(&format!("spec.nodeName={}", this.config.name));
        let mut events = watcher(pods, config)
            .modify(|p: &mut Pod| p.metadata.managed_fields = None)
            .default_backoff()
            .boxed();
        let mut workers: HashMap<String, pod::Worker> = HashMap::new();
        while let Some(event) = events.next().await {
            let (pod, deleted) = match event {
                Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => (pod, false),
                Ok(watcher::Event::Delete(pod)) => (pod, true),
                _ => continue,
            };
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
