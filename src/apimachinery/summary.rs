//! The kubelet's Summary API types (`stats/v1alpha1`: the node, its pods and their
//! containers, with CPU and memory), as the kubelet writes them and the metrics server reads
//! them. Times are RFC 3339 strings, as `metav1.Time` writes them; fields the kubelet leaves out
//! read as their zero.

use serde::{Deserialize, Serialize};

/// `CPUStats`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct CpuStats {
    /// When it was sampled.
    pub time: String,
    /// The rate, in billionths of a core.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_nano_cores: Option<u64>,
    /// CPU time so far, in nanoseconds.
    pub usage_core_nano_seconds: u64,
}

/// `MemoryStats`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct MemoryStats {
    /// When it was sampled.
    pub time: String,
    /// Capacity less working set (the node only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_bytes: Option<u64>,
    /// Usage, page cache included.
    pub usage_bytes: u64,
    /// Usage less inactive file pages.
    pub working_set_bytes: u64,
    /// Anonymous memory.
    pub rss_bytes: u64,
    /// Page faults.
    pub page_faults: u64,
    /// Major page faults.
    pub major_page_faults: u64,
}

/// `ContainerStats`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct ContainerSummary {
    /// Its name in the pod.
    pub name: String,
    /// When it started.
    pub start_time: String,
    /// Its CPU.
    pub cpu: CpuStats,
    /// Its memory.
    pub memory: MemoryStats,
}

/// `PodReference`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct PodReference {
    /// The pod's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// Its uid.
    pub uid: String,
}

/// `PodStats`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct PodSummary {
    /// Which pod.
    pub pod_ref: PodReference,
    /// When its first container started.
    pub start_time: String,
    /// Its running containers.
    pub containers: Vec<ContainerSummary>,
    /// Its containers' CPU summed.
    pub cpu: CpuStats,
    /// Its containers' memory summed.
    pub memory: MemoryStats,
}

/// `NodeStats`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct NodeSummary {
    /// The node.
    pub node_name: String,
    /// When its kubelet started.
    pub start_time: String,
    /// Its pods' CPU summed.
    pub cpu: CpuStats,
    /// Its pods' memory summed, and what is left of its capacity.
    pub memory: MemoryStats,
}

/// The Summary API's answer.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Summary {
    /// The node.
    pub node: NodeSummary,
    /// Its pods.
    pub pods: Vec<PodSummary>,
}
