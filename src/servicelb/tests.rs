//! The load balancer against an in-process API server: a LoadBalancer Service whose NodePort is a
//! local echo server gets an address, a connection through it is echoed, deleting the Service
//! releases it.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Service};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::apiserver::ApiServer;
use crate::store::Store;
use crate::store::embedded::EmbeddedStore;

async fn api_server() -> (Arc<ApiServer>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(&dir.path().join("store.redb")).unwrap());
    let api = ApiServer::new(store, Flow::new());
    api.bootstrap().await.unwrap();
    (api, dir)
}

/// An echo server on 127.0.0.1 at a port in the NodePort range.
async fn echo_server() -> (u16, tokio::task::JoinHandle<()>) {
    let mut found = None;
    for port in (30000..32767).rev() {
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port)).await {
            found = Some((port, l));
            break;
        }
    }
    let (port, listener) = found.expect("a free port in the NodePort range");
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    (port, task)
}

/// Polls `check` every 20 ms for at most 10 s.
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    for _ in 0..500 {
        if let Some(t) = check().await {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

fn ingress(service: &Service) -> Option<(String, String)> {
    let i = service
        .status
        .as_ref()?
        .load_balancer
        .as_ref()?
        .ingress
        .as_ref()?
        .first()?
        .clone();
    Some((i.ip?, i.ip_mode?))
}

#[tokio::test]
async fn a_load_balancer_routes_to_a_node_port_and_is_released() {
    let (api, _dir) = api_server().await;
    let client = api.client("test");
    let (node_port, echo) = echo_server().await;

    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({"metadata": {"name": "node-1"}})).unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    let status = json!({"status": {
        "conditions": [{"type": "Ready", "status": "True"}],
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                      {"type": "Hostname", "address": "node-1"}],
    }});
    nodes
        .patch_status("node-1", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();

    // The pool's first address is held by someone else on the port: the Service gets the next.
    let pool: Ipv4Net = "127.241.7.0/24".parse().unwrap();
    let port = 18080;
    let squatter = TcpListener::bind(("127.241.7.1", port)).await.unwrap();

    let flow = api.flow().clone();
    let lb = ServiceLb::new(
        api.client(COMPONENT),
        flow.clone(),
        ServiceLbConfig { pool },
    );
    let running = tokio::spawn(lb.run());

    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"type": "LoadBalancer", "selector": {"app": "web"},
                 "ports": [{"name": "http", "port": port, "targetPort": 8080, "nodePort": node_port}]},
    }))
    .unwrap();
    services
        .create(&PostParams::default(), &service)
        .await
        .unwrap();

    let (ip, mode) = eventually("an ingress address", || async {
        ingress(&services.get("web").await.ok()?)
    })
    .await;
    assert_eq!((ip.as_str(), mode.as_str()), ("127.241.7.2", "VIP"));

    // A connection through the address reaches the echo server.
    let mut conn = TcpStream::connect((ip.as_str(), port)).await.unwrap();
    conn.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), conn.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"ping");
    drop(conn);

    let (recent, _) = flow.subscribe(0);
    let assign = recent
        .iter()
        .find(|e| e.verb == "ASSIGN")
        .expect("an ASSIGN hop");
    assert_eq!(assign.from, COMPONENT);
    assert_eq!(assign.to, "service/default/web");
    assert_eq!(
        assign.detail,
        format!("127.241.7.2:{port} → node-1:{node_port}")
    );
    let connect = recent
        .iter()
        .find(|e| e.verb == "CONNECT")
        .expect("a CONNECT hop");
    assert_eq!(
        (connect.from.as_str(), connect.to.as_str()),
        ("client", COMPONENT)
    );
    assert_eq!(
        connect.detail,
        format!("127.241.7.2:{port} → node-1 127.0.0.1:{node_port}")
    );
    assert_eq!(connect.name, "web");

    // Deleting the Service releases the address: the listener closes.
    services
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the listener to close", || async {
        TcpStream::connect((ip.as_str(), port))
            .await
            .is_err()
            .then_some(())
    })
    .await;
    eventually("a RELEASE hop", || async {
        flow.subscribe(0)
            .0
            .iter()
            .any(|e| e.verb == "RELEASE")
            .then_some(())
    })
    .await;

    running.abort();
    echo.abort();
    drop(squatter);
}

#[tokio::test]
async fn a_service_that_stops_being_a_load_balancer_loses_its_status() {
    let (api, _dir) = api_server().await;
    let client = api.client("test");
    let pool: Ipv4Net = "127.241.8.0/24".parse().unwrap();
    let lb = ServiceLb::new(
        api.client(COMPONENT),
        api.flow().clone(),
        ServiceLbConfig { pool },
    );
    let running = tokio::spawn(lb.run());
    let services: Api<Service> = Api::namespaced(client, "default");
    let port = 18081;
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "two"},
        "spec": {"type": "LoadBalancer", "loadBalancerIP": "127.241.8.9",
                 "ports": [{"port": port}]},
    }))
    .unwrap();
    services
        .create(&PostParams::default(), &service)
        .await
        .unwrap();
    let (ip, _) = eventually("an ingress address", || async {
        ingress(&services.get("two").await.ok()?)
    })
    .await;
    assert_eq!(ip, "127.241.8.9", "spec.loadBalancerIP is honoured");
    // No ready node: the connection is accepted, then closed.
    let mut conn = TcpStream::connect((ip.as_str(), port)).await.unwrap();
    let mut buf = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0);

    let to_cluster_ip = json!({"spec": {"type": "ClusterIP", "loadBalancerIP": null,
        "ports": [{"port": port, "nodePort": null}]}});
    services
        .patch(
            "two",
            &PatchParams::default(),
            &Patch::Merge(&to_cluster_ip),
        )
        .await
        .unwrap();
    eventually("the status to be cleared", || async {
        ingress(&services.get("two").await.ok()?)
            .is_none()
            .then_some(())
    })
    .await;
    eventually("the listener to close", || async {
        TcpStream::connect((ip.as_str(), port))
            .await
            .is_err()
            .then_some(())
    })
    .await;
    running.abort();
}
