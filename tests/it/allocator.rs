//! Services' cluster IPs and node ports are reserved in the store (IPAddress objects and the
//! node port bitmap), so Services created at once never share one, an address asked for twice
//! is refused in upstream's words, and a deleted Service's addresses are free again.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, PostParams};
use orrery::apiserver::ApiServer;
use orrery::flow::Flow;
use orrery::store::Store;
use orrery::store::embedded::EmbeddedStore;
use serde_json::json;

async fn api() -> (Arc<ApiServer>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(&dir.path().join("store.redb")).unwrap());
    let api = ApiServer::new(store, Flow::new());
    api.bootstrap().await.unwrap();
    (api, dir)
}

fn service(name: &str, kind: &str, cluster_ip: Option<&str>, node_port: Option<i32>) -> Service {
    let mut port = json!({"port": 80});
    if let Some(n) = node_port {
        port["nodePort"] = json!(n);
    }
    let mut spec = json!({"type": kind, "selector": {"app": name}, "ports": [port]});
    if let Some(ip) = cluster_ip {
        spec["clusterIP"] = json!(ip);
    }
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

fn status_message(error: kube::Error) -> (u16, String) {
    match error {
        kube::Error::Api(status) => (status.code, status.message),
        other => panic!("not a Status: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn services_created_at_once_never_share_an_address_or_a_node_port() {
    let (api, _dir) = api().await;
    let services: Api<Service> = Api::namespaced(api.client("test"), "default");
    let creates = (0..40).map(|i| {
        let services = services.clone();
        async move {
            services
                .create(
                    &PostParams::default(),
                    &service(&format!("s{i}"), "NodePort", None, None),
                )
                .await
                .unwrap()
        }
    });
    let created = futures::future::join_all(creates).await;
    let ips: BTreeSet<String> = created
        .iter()
        .map(|s| s.spec.as_ref().unwrap().cluster_ip.clone().unwrap())
        .collect();
    let ports: BTreeSet<i32> = created
        .iter()
        .map(|s| {
            s.spec.as_ref().unwrap().ports.as_ref().unwrap()[0]
                .node_port
                .unwrap()
        })
        .collect();
    assert_eq!((ips.len(), ports.len()), (40, 40), "{ips:?} {ports:?}");

    // Each address is an IPAddress whose parent is its Service.
    let addresses: Api<k8s_openapi::api::networking::v1::IPAddress> = Api::all(api.client("test"));
    let first = created[0]
        .spec
        .as_ref()
        .unwrap()
        .cluster_ip
        .clone()
        .unwrap();
    let address = addresses.get(&first).await.unwrap();
    let parent = address.spec.unwrap().parent_ref;
    assert_eq!(
        (parent.resource.as_str(), parent.name.as_str()),
        ("services", "s0")
    );
}

#[tokio::test]
async fn an_address_or_port_asked_for_twice_is_refused_and_free_again_after_a_delete() {
    let (api, _dir) = api().await;
    let services: Api<Service> = Api::namespaced(api.client("test"), "default");
    let pp = PostParams::default();
    services
        .create(
            &pp,
            &service("a", "NodePort", Some("10.96.5.5"), Some(31000)),
        )
        .await
        .unwrap();
    let taken = services
        .create(&pp, &service("b", "ClusterIP", Some("10.96.5.5"), None))
        .await
        .unwrap_err();
    assert_eq!(
        status_message(taken),
        (
            422,
            "Service \"b\" is invalid: spec.clusterIPs: Invalid value: []string{\"10.96.5.5\"}: failed to allocate IP 10.96.5.5: provided IP is already allocated".into()
        )
    );
    let outside = services
        .create(&pp, &service("c", "ClusterIP", Some("10.200.0.1"), None))
        .await
        .unwrap_err();
    assert!(
        status_message(outside).1.contains("failed to allocate IP 10.200.0.1: the provided IP (10.200.0.1) is not in the valid range. The range of valid IPs is 10.96.0.0/12"),
    );
    let port_taken = services
        .create(&pp, &service("d", "NodePort", None, Some(31000)))
        .await
        .unwrap_err();
    assert_eq!(
        status_message(port_taken),
        (
            422,
            "Service \"d\" is invalid: spec.ports[0].nodePort: Invalid value: 31000: provided port is already allocated".into()
        )
    );
    // The refused creates reserved nothing they keep: d's free pick is free again.
    services
        .delete("a", &DeleteParams::default())
        .await
        .unwrap();
    let again = services
        .create(
            &pp,
            &service("e", "NodePort", Some("10.96.5.5"), Some(31000)),
        )
        .await
        .unwrap();
    assert_eq!(again.spec.unwrap().cluster_ip.as_deref(), Some("10.96.5.5"));
    // Changing to ExternalName gives up both.
    let mut e = services.get("e").await.unwrap();
    let spec = e.spec.as_mut().unwrap();
    spec.type_ = Some("ExternalName".into());
    spec.external_name = Some("example.com".into());
    spec.cluster_ip = None;
    spec.cluster_ips = None;
    spec.ports.as_mut().unwrap()[0].node_port = None;
    spec.selector = None;
    services.replace("e", &pp, &e).await.unwrap();
    services
        .create(
            &pp,
            &service("f", "NodePort", Some("10.96.5.5"), Some(31000)),
        )
        .await
        .unwrap();
}
