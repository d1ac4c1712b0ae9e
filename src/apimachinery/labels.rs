//! The well-known labels components agree on, as upstream's `k8s.io/api/discovery/v1`
//! `well_known_labels.go` declares them: every component that reads EndpointSlices (the
//! endpointslice controller, kube-proxy, cluster DNS, the load balancer, the ingress
//! controller, the dashboard) names them from here.

/// The label naming a slice's Service.
pub const SERVICE_NAME: &str = "kubernetes.io/service-name";
/// The label naming who manages a slice.
pub const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
