//! Score plugins, with kube-scheduler's formulas, default weights and normalisation: each
//! scores a feasible node from 0 to 100 (after normalising), and the weighted sum picks the node.

use k8s_openapi::api::core::v1::Pod;

use super::filters::{NodeInfo, non_zero_requests, tolerates};

/// The largest node score.
pub const MAX_SCORE: i64 = 100;

/// Default weights of kube-scheduler's default profile (`getDefaultPlugins` in
/// `pkg/scheduler/apis/config/v1/default_plugins.go`).
pub const WEIGHTS: &[(&str, i64)] = &[
    ("TaintToleration", 3),
    ("NodeAffinity", 2),
    ("PodTopologySpread", 2),
    ("InterPodAffinity", 2),
    ("NodeResourcesFit", 1),
    ("NodeResourcesBalancedAllocation", 1),
    ("ImageLocality", 1),
];

/// A plugin's weight in the default profile.
pub fn weight(plugin: &str) -> i64 {
    WEIGHTS
        .iter()
        .find(|(p, _)| *p == plugin)
        .map_or(1, |(_, w)| *w)
}

/// (requested, allocatable) for cpu and memory, the incoming pod included.
fn usage_with((cpu, memory): (i64, i64), node: &NodeInfo) -> [(i64, i64); 2] {
    [
        (
            cpu + node.non_zero.0,
            node.allocatable.get("cpu").copied().unwrap_or(0),
        ),
        (
            memory + node.non_zero.1,
            node.allocatable.get("memory").copied().unwrap_or(0),
        ),
    ]
}

/// NodeResourcesFit with the LeastAllocated strategy: the free share of cpu and memory, averaged.
pub fn least_allocated(pod: &Pod, node: &NodeInfo) -> i64 {
    least_allocated_with(non_zero_requests(pod), node)
}

/// LeastAllocated with the pod's scoring requests already summed.
pub fn least_allocated_with(pod: (i64, i64), node: &NodeInfo) -> i64 {
    let scores: Vec<i64> = usage_with(pod, node)
        .iter()
        .map(|&(requested, capacity)| {
            if capacity == 0 || requested > capacity {
                0
            } else {
                (capacity - requested) * MAX_SCORE / capacity
            }
        })
        .collect();
    scores.iter().sum::<i64>() / scores.len() as i64
}

/// NodeResourcesBalancedAllocation: nodes whose cpu and memory fill alike score higher
/// (`(1 - standard deviation of the fractions) * 100`).
pub fn balanced_allocation(pod: &Pod, node: &NodeInfo) -> i64 {
    balanced_allocation_with(non_zero_requests(pod), node)
}

/// BalancedAllocation with the pod's scoring requests already summed.
pub fn balanced_allocation_with(pod: (i64, i64), node: &NodeInfo) -> i64 {
    let fractions: Vec<f64> = usage_with(pod, node)
        .iter()
        .map(|&(requested, capacity)| {
            if capacity == 0 {
                1.0
            } else {
                (requested as f64 / capacity as f64).min(1.0)
            }
        })
        .collect();
    let mean = fractions.iter().sum::<f64>() / fractions.len() as f64;
    let variance =
        fractions.iter().map(|f| (f - mean).powi(2)).sum::<f64>() / fractions.len() as f64;
    ((1.0 - variance.sqrt()) * MAX_SCORE as f64) as i64
}

/// TaintToleration before normalisation: how many PreferNoSchedule taints the pod does not
/// tolerate (fewer is better; [`normalize_reverse`] turns it around).
pub fn intolerable_taints(pod: &Pod, node: &NodeInfo) -> i64 {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default();
    node.node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default()
        .iter()
        .filter(|t| {
            t.effect == "PreferNoSchedule" && !tolerations.iter().any(|tol| tolerates(tol, t))
        })
        .count() as i64
}

/// ImageLocality: how much of the pod's images the node already has, spread by how many nodes
/// have them, between 23 MB and 1000 MB per container (kube-scheduler's thresholds).
pub fn image_locality(
    pod: &Pod,
    node: &NodeInfo,
    nodes_with_image: &dyn Fn(&str) -> usize,
    total_nodes: usize,
) -> i64 {
    const MIN: f64 = 23.0 * 1024.0 * 1024.0;
    const MAX_PER_CONTAINER: f64 = 1000.0 * 1024.0 * 1024.0;
    let Some(spec) = pod.spec.as_ref() else {
        return 0;
    };
    let images = node
        .node
        .status
        .as_ref()
        .and_then(|s| s.images.as_deref())
        .unwrap_or_default();
    if images.is_empty() {
        return 0;
    }
    let mut sum = 0.0;
    for c in &spec.containers {
        let Some(image) = c.image.as_deref() else {
            continue;
        };
        let normalized = if image.contains(':') {
            image.to_owned()
        } else {
            format!("{image}:latest")
        };
        if let Some(found) = images.iter().find(|i| {
            i.names
                .iter()
                .flatten()
                .any(|n| *n == normalized || n.ends_with(&format!("/{normalized}")))
        }) {
            let spread = nodes_with_image(&normalized) as f64 / total_nodes.max(1) as f64;
            sum += found.size_bytes.unwrap_or(0) as f64 * spread;
        }
    }
    let max = MAX_PER_CONTAINER * spec.containers.len().max(1) as f64;
    let clamped = sum.clamp(MIN, max);
    (MAX_SCORE as f64 * (clamped - MIN) / (max - MIN)) as i64
}

/// Scales raw scores so the best node gets 100 (NodeAffinity's normalisation).
pub fn normalize(scores: &mut [i64]) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max > 0 {
        for s in scores.iter_mut() {
            *s = *s * MAX_SCORE / max;
        }
    }
}

/// Scales raw "badness" so the least bad node gets 100 (TaintToleration's normalisation).
pub fn normalize_reverse(scores: &mut [i64]) {
    let max = scores.iter().copied().max().unwrap_or(0);
    for s in scores.iter_mut() {
        *s = if max == 0 {
            MAX_SCORE
        } else {
            MAX_SCORE - *s * MAX_SCORE / max
        };
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Node;
    use serde_json::json;

    use super::*;

    fn node(cpu: &str, memory: &str, pods: Vec<Pod>) -> NodeInfo {
        let node: Node = serde_json::from_value(json!({"metadata": {"name": "n"}, "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "110"}, "images": [{"names": ["docker.io/library/nginx:1.25", "nginx:1.25"], "sizeBytes": 500 * 1024 * 1024}]}})).unwrap();
        NodeInfo::new(node, pods)
    }

    fn pod(cpu: &str, memory: &str) -> Pod {
        serde_json::from_value(json!({"spec": {"containers": [{"name": "c", "image": "nginx:1.25", "resources": {"requests": {"cpu": cpu, "memory": memory}}}]}})).unwrap()
    }

    #[test]
    fn scores() {
        let empty = node("4", "8Gi", vec![]);
        let busy = node("4", "8Gi", vec![pod("2", "1Gi")]);
        let p = pod("1", "2Gi");
        // cpu: (4000-1000)/4000 = 75, memory: (8-2)/8 = 75.
        assert_eq!(least_allocated(&p, &empty), 75);
        // cpu 3000/4000 free 25, memory 3Gi/8Gi free 62.
        assert_eq!(least_allocated(&p, &busy), (25 + 62) / 2);
        assert_eq!(
            balanced_allocation(&p, &empty),
            100,
            "1/4 cpu and 2/8 memory are balanced"
        );
        assert!(balanced_allocation(&p, &busy) < 100);
        // A pod without requests counts as 100m and 200Mi.
        let none: Pod =
            serde_json::from_value(json!({"spec": {"containers": [{"name": "c"}]}})).unwrap();
        assert_eq!(
            least_allocated(&none, &empty),
            ((4000 - 100) * 100 / 4000 + (8192 - 200) * 100 / 8192) / 2
        );
        let all = |_: &str| 1usize;
        assert!(
            image_locality(&p, &empty, &all, 3) > 0,
            "the node has the image"
        );
        let mut raw = vec![0, 40, 80];
        normalize(&mut raw);
        assert_eq!(raw, [0, 50, 100]);
        let mut bad = vec![0, 1, 2];
        normalize_reverse(&mut bad);
        assert_eq!(bad, [100, 50, 0]);
    }
}
