//! Pod networking, as a CNI bridge plugin would do it, through netlink (`rtnetlink`): one host
//! bridge per cluster, a named network namespace per pod sandbox, a veth pair from the bridge
//! into it, and an address from the node's pod CIDR.
//!
//! SKELETON: the API below is fixed; the bodies are being written.

use std::net::Ipv4Addr;
use std::path::PathBuf;

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
}

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
}

impl Network {
    /// The network of cluster `cluster` (its bridge is named after it; nothing is created yet).
    pub fn new(cluster: &str) -> Self {
        Network {
            cluster: cluster.to_owned(),
        }
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
    pub async fn add_pod(
        &mut self,
        netns_name: &str,
        pod_cidr: &str,
    ) -> Result<PodNetwork, NetworkError> {
        let _ = (netns_name, pod_cidr);
        Err(NetworkError::Exhausted("skeleton".into()))
    }

    /// Removes a pod's veth and namespace and frees its address. Missing parts are not errors.
    pub async fn remove_pod(&mut self, pod: &PodNetwork) -> Result<(), NetworkError> {
        let _ = pod;
        Ok(())
    }

    /// Removes everything this cluster's network has on the host: every pod namespace named
    /// with `netns_prefix`, their veths, and the bridge. Used at shutdown and at start (after a
    /// crash). Missing parts are not errors.
    pub async fn destroy(&mut self, netns_prefix: &str) -> Result<(), NetworkError> {
        let _ = netns_prefix;
        Ok(())
    }
}
