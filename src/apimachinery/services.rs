//! What the `Service` and `EndpointSlice` API say that every reader of them needs in the same
//! words (the endpointslice controller writes them; kube-proxy, cluster DNS, the load balancer,
//! the ingress controller and the dashboard read them): an endpoint's readiness and a
//! LoadBalancer Service's ingress addresses.

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::Endpoint;

/// Whether the endpoint is ready: `conditions.ready`, where unset means ready, as the
/// EndpointConditions field is documented ("nil ... should be interpreted as ready").
pub fn endpoint_ready(endpoint: &Endpoint) -> bool {
    endpoint
        .conditions
        .as_ref()
        .and_then(|c| c.ready)
        .unwrap_or(true)
}

/// The IPv4 addresses in the Service's `status.loadBalancer.ingress`.
pub fn load_balancer_ips(service: &Service) -> Vec<Ipv4Addr> {
    service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.as_deref()?.parse().ok())
        .collect()
}
