//! The `kube-system/kube-dns` Service that pods' resolv.conf points at (ClusterIP 10.96.0.10,
//! labelled as upstream CoreDNS's), with its EndpointSlice and core/v1 Endpoints pointing at
//! where the DNS server listens: kept by the DNS component itself, checked every 10 s, as the
//! API server keeps the `kubernetes` Service.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::apimachinery::labels::{
    MANAGED_BY as MANAGED_BY_LABEL, SERVICE_NAME as SERVICE_NAME_LABEL,
};
use crate::flow::{Flow, FlowEvent};

/// The Service's (and its EndpointSlice's and Endpoints') name.
pub const NAME: &str = "kube-dns";
/// Its namespace.
pub const NAMESPACE: &str = "kube-system";
/// Its ClusterIP.
pub const CLUSTER_IP: &str = "10.96.0.10";
/// Who manages its EndpointSlice (so the EndpointSlice controller leaves it alone).
pub const MANAGED_BY: &str = "kube-dns.orrery.dev";

fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("k8s-app".to_owned(), NAME.to_owned()),
        (
            "kubernetes.io/cluster-service".to_owned(),
            "true".to_owned(),
        ),
        ("kubernetes.io/name".to_owned(), "CoreDNS".to_owned()),
    ])
}

fn ports_json(port: Option<u16>) -> serde_json::Value {
    // The Service's ports (port 53, 9153) or, given the listen port, its endpoints' ports.
    let dns = port.map_or(53, i32::from);
    let metrics = 9153;
    json!([
        {"name": "dns", "port": dns, "protocol": "UDP"},
        {"name": "dns-tcp", "port": dns, "protocol": "TCP"},
        {"name": "metrics", "port": metrics, "protocol": "TCP"},
    ])
}

/// The Service, as upstream's CoreDNS manifest has it.
pub fn service() -> Service {
    let mut ports = ports_json(None);
    for port in ports.as_array_mut().into_iter().flatten() {
        port["targetPort"] = port["port"].clone();
    }
    serde_json::from_value(json!({
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels()},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": CLUSTER_IP,
            "clusterIPs": [CLUSTER_IP],
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "sessionAffinity": "None",
            "internalTrafficPolicy": "Cluster",
            "ports": ports,
        },
    }))
    .expect("a valid Service")
}

/// Its EndpointSlice: the server at `listen`, on node `node`.
pub fn endpoint_slice(listen: SocketAddr, node: &str) -> EndpointSlice {
    let mut labels = labels();
    labels.insert(SERVICE_NAME_LABEL.into(), NAME.into());
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    serde_json::from_value(json!({
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels},
        "addressType": if listen.is_ipv4() { "IPv4" } else { "IPv6" },
        "endpoints": [{
            "addresses": [listen.ip().to_string()],
            "conditions": {"ready": true, "serving": true, "terminating": false},
            "nodeName": (!node.is_empty()).then_some(node),
        }],
        "ports": ports_json(Some(listen.port())),
    }))
    .expect("a valid EndpointSlice")
}

/// Its core/v1 Endpoints (not mirrored into another slice).
pub fn endpoints(listen: SocketAddr, node: &str) -> Endpoints {
    let mut labels = labels();
    labels.insert(
        "endpointslice.kubernetes.io/skip-mirror".into(),
        "true".into(),
    );
    serde_json::from_value(json!({
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels},
        "subsets": [{
            "addresses": [{"ip": listen.ip().to_string(), "nodeName": (!node.is_empty()).then_some(node)}],
            "ports": ports_json(Some(listen.port())),
        }],
    }))
    .expect("valid Endpoints")
}

/// Keeps the three objects as they should be.
#[derive(Clone)]
pub(crate) struct KubeDnsService {
    pub(crate) client: kube::Client,
    pub(crate) flow: Flow,
    pub(crate) listen: SocketAddr,
    pub(crate) node: String,
}

impl KubeDnsService {
    async fn gate(&self, verb: &str, kind: &str, detail: &str) {
        let mut e = FlowEvent::new(super::COMPONENT, "apiserver", verb)
            .object(kind, NAMESPACE, NAME)
            .detail(detail);
        e.root = "Service/kube-dns".into();
        self.flow.gate_emit(e).await;
    }

    /// Reconciles once, retrying every 10 s until it succeeds.
    pub(crate) async fn run(self) {
        while let Err(error) = self.reconcile().await {
            tracing::debug!(%error, "could not reconcile the kube-dns Service");
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
    }

    /// Whether the Service or its EndpointSlice, as the component's caches have them, differ
    /// from what they should be (missing, or changed by someone): then [`Self::run`] again.
    pub(crate) fn drifted(&self, services: &[Arc<Service>], slices: &[Arc<EndpointSlice>]) -> bool {
        let ours = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
            m.namespace.as_deref() == Some(NAMESPACE) && m.name.as_deref() == Some(NAME)
        };
        let wanted = service().spec.unwrap_or_default();
        let service_ok = services.iter().any(|s| {
            ours(&s.metadata)
                && s.spec
                    .as_ref()
                    .is_some_and(|spec| spec.ports == wanted.ports)
                && labels()
                    .iter()
                    .all(|(k, v)| s.metadata.labels.as_ref().and_then(|l| l.get(k)) == Some(v))
        });
        let wanted = endpoint_slice(self.listen, &self.node);
        let slice_ok = slices.iter().any(|s| {
            ours(&s.metadata)
                && s.endpoints == wanted.endpoints
                && s.ports == wanted.ports
                && s.metadata.labels == wanted.metadata.labels
        });
        !(service_ok && slice_ok)
    }

    pub(crate) async fn reconcile(&self) -> Result<(), kube::Error> {
        let services: Api<Service> = Api::namespaced(self.client.clone(), NAMESPACE);
        let wanted = service();
        match services.get_opt(NAME).await? {
            None => {
                self.gate("CREATE", "Service", "the cluster DNS Service")
                    .await;
                services.create(&PostParams::default(), &wanted).await?;
            }
            Some(current) => {
                let spec = current.spec.clone().unwrap_or_default();
                let wanted_spec = wanted.spec.clone().unwrap_or_default();
                let labels_ok = labels().iter().all(|(k, v)| {
                    current.metadata.labels.as_ref().and_then(|l| l.get(k)) == Some(v)
                });
                if spec.ports != wanted_spec.ports || !labels_ok {
                    self.gate("UPDATE", "Service", "the cluster DNS Service's ports")
                        .await;
                    services
                        .patch(
                            NAME,
                            &PatchParams::default(),
                            &Patch::Merge(json!({
                                "metadata": {"labels": labels()},
                                "spec": {"ports": wanted_spec.ports},
                            })),
                        )
                        .await?;
                }
            }
        }
        let api: Api<Endpoints> = Api::namespaced(self.client.clone(), NAMESPACE);
        let wanted = endpoints(self.listen, &self.node);
        match api.get_opt(NAME).await? {
            Some(current) if current.subsets == wanted.subsets => {}
            current => {
                self.gate("UPDATE", "Endpoints", "the cluster DNS server's address")
                    .await;
                let mut object = wanted;
                if let Some(current) = current {
                    object.metadata.resource_version = current.metadata.resource_version;
                    api.replace(NAME, &PostParams::default(), &object).await?;
                } else {
                    api.create(&PostParams::default(), &object).await?;
                }
            }
        }
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), NAMESPACE);
        let wanted = endpoint_slice(self.listen, &self.node);
        match api.get_opt(NAME).await? {
            Some(current)
                if current.endpoints == wanted.endpoints
                    && current.ports == wanted.ports
                    && current.metadata.labels == wanted.metadata.labels => {}
            current => {
                self.gate(
                    "UPDATE",
                    "EndpointSlice",
                    "the cluster DNS server's address",
                )
                .await;
                let mut object = wanted;
                if let Some(current) = current {
                    object.metadata.resource_version = current.metadata.resource_version;
                    api.replace(NAME, &PostParams::default(), &object).await?;
                } else {
                    api.create(&PostParams::default(), &object).await?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_is_coredns_kube_dns() {
        let s = serde_json::to_value(service()).unwrap();
        assert_eq!(s["metadata"]["labels"]["k8s-app"], "kube-dns");
        assert_eq!(
            s["metadata"]["labels"]["kubernetes.io/cluster-service"],
            "true"
        );
        assert_eq!(s["metadata"]["labels"]["kubernetes.io/name"], "CoreDNS");
        assert_eq!(s["spec"]["clusterIP"], "10.96.0.10");
        assert!(s["spec"].get("selector").is_none());
        assert_eq!(
            s["spec"]["ports"],
            json!([
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153},
            ])
        );
    }

    #[test]
    fn the_slice_and_endpoints_point_at_the_server() {
        let listen: SocketAddr = "127.0.0.1:5353".parse().unwrap();
        let slice = serde_json::to_value(endpoint_slice(listen, "orrery-control-plane")).unwrap();
        assert_eq!(slice["metadata"]["labels"][SERVICE_NAME_LABEL], "kube-dns");
        assert_eq!(slice["metadata"]["labels"][MANAGED_BY_LABEL], MANAGED_BY);
        assert_eq!(slice["addressType"], "IPv4");
        assert_eq!(slice["endpoints"][0]["addresses"], json!(["127.0.0.1"]));
        assert_eq!(slice["endpoints"][0]["nodeName"], "orrery-control-plane");
        assert_eq!(slice["endpoints"][0]["conditions"]["ready"], true);
        assert_eq!(
            slice["ports"][0],
            json!({"name": "dns", "port": 5353, "protocol": "UDP"})
        );
        assert_eq!(slice["ports"][1]["name"], "dns-tcp");
        assert_eq!(
            slice["ports"][2],
            json!({"name": "metrics", "port": 9153, "protocol": "TCP"})
        );
        let endpoints = serde_json::to_value(endpoints(listen, "orrery-control-plane")).unwrap();
        assert_eq!(
            endpoints["subsets"][0]["addresses"],
            json!([{"ip": "127.0.0.1", "nodeName": "orrery-control-plane"}])
        );
        assert_eq!(endpoints["subsets"][0]["ports"][1]["port"], 5353);
    }
}
