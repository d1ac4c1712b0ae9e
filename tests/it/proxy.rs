//! kube-proxy's rules in a real kernel (root): a rendered table is applied with `nft` inside a
//! fresh network namespace, listed back, partially updated, and removed with `remove_tables`.
//! Without root the tests are skipped, unless `CI` or `ORRERY_REQUIRE_ROOT` is set, where they
//! fail: CI runs as root, so a skip there would hide a broken proxy.

use std::process::Command;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use orrery::proxy::{self, ProxyConfig, ProxyMode, rules};

fn is_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var_os("CI").is_some() || std::env::var_os("ORRERY_REQUIRE_ROOT").is_some() {
        panic!("kube-proxy's nftables tests need root (CI runs as root)");
    }
    eprintln!("skipped: kube-proxy's nftables tests need root (CI runs as root)");
    false
}

/// A network namespace of its own, deleted when dropped.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Self {
        let name = format!("orrproxy{tag}{}", std::process::id() % 100_000);
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Netns(name)
    }

    fn nft(&self, args: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.0, "nft"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "nft {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

fn config(node: &str, netns: &str) -> ProxyConfig {
    ProxyConfig {
        node: node.into(),
        node_ip: "10.244.1.1".parse().unwrap(),
        pod_cidr: "10.244.1.0/24".parse().unwrap(),
        cluster_cidr: "10.244.0.0/14".parse().unwrap(),
        host: true,
        table: ProxyConfig::table_name("ptest", node),
        mode: ProxyMode::Nftables,
        netns: Some(netns.into()),
    }
}

fn objects(endpoints: &[&str]) -> (Vec<Arc<Service>>, Vec<Arc<EndpointSlice>>) {
    let service = |name: &str, ip: &str, extra: serde_json::Value| -> Arc<Service> {
        let mut spec = serde_json::json!({
            "clusterIP": ip,
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080},
                      {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053}],
        });
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"namespace": "default", "name": name, "resourceVersion": "1"},
                "spec": spec,
            }))
            .unwrap(),
        )
    };
    let services = vec![
        service("web", "10.96.0.20", serde_json::json!({"type": "NodePort"})),
        service(
            "sticky",
            "10.96.0.21",
            serde_json::json!({"sessionAffinity": "ClientIP", "internalTrafficPolicy": "Local",
                "type": "LoadBalancer", "externalTrafficPolicy": "Local",
                "ports": [{"name": "http", "port": 80, "nodePort": 30081}]}),
        ),
        service("empty", "10.96.0.22", serde_json::json!({})),
    ];
    let slice = |service: &str, rv: &str, eps: &[&str]| -> Arc<EndpointSlice> {
        let endpoints: Vec<_> = eps
            .iter()
            .map(|ip| {
                serde_json::json!({"addresses": [ip], "nodeName": "node-1",
                "conditions": {"ready": true}})
            })
            .collect();
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"namespace": "default", "name": format!("{service}-x"),
                    "resourceVersion": rv, "labels": {"kubernetes.io/service-name": service}},
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"},
                          {"name": "dns", "port": 5353, "protocol": "UDP"}],
                "endpoints": endpoints,
            }))
            .unwrap(),
        )
    };
    let slices = vec![
        slice("web", &endpoints.len().to_string(), endpoints),
        slice("sticky", "1", &["10.244.1.9"]),
    ];
    (services, slices)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_rendered_table_loads_updates_in_place_and_is_removed() {
    if !is_root() {
        return;
    }
    proxy::check_nft().expect("nft is installed");
    let ns = Netns::new("a");
    let cfg = config("node-1", &ns.0);
    let nodes: [Arc<proxy::NodeIps>; 0] = [];
    let (services, slices) = objects(&["10.244.1.5", "10.244.2.3"]);
    let first = proxy::compute_model(&cfg, &services, &slices, &nodes);
    let script = rules::render_full(&cfg.table, None, &first, true);
    rt().block_on(proxy::nft::apply(&script, Some(&ns.0)))
        .unwrap_or_else(|e| panic!("{e}\n{script}"));
    let listed = ns.nft(&["list", "table", "ip", &cfg.table]);
    for chain in [
        "chain nat-prerouting",
        "chain nat-output",
        "chain nat-postrouting",
        "chain filter-forward",
        "chain filter-input",
        "chain filter-output",
        "chain mark-for-masquerade",
        "chain masquerading",
        "chain reject-chain",
        "map service-ips",
        "map service-nodeports",
        "map no-endpoint-services",
        "map no-endpoint-nodeports",
        "default/web/tcp/http",
        "default/web/udp/dns",
        // Without affinity the service chain DNATs through a numgen map of its own.
        "dnat ip to numgen random mod 2 map { 0 : 10.244.1.5 . 8080, 1 : 10.244.2.3 . 8080 }",
        "10.244.2.3 . 5353",
        "10.96.0.22 . tcp . 80 : goto reject-chain",
        "set affinity-",
    ] {
        assert!(listed.contains(chain), "{chain} missing from:\n{listed}");
    }

    // A partial sync: one endpoint replaced.
    let (services, slices) = objects(&["10.244.1.5", "10.244.1.6"]);
    let second = proxy::compute_model(&cfg, &services, &slices, &nodes);
    let diff = rules::render_diff(&cfg.table, &first, &second).expect("a partial sync");
    rt().block_on(proxy::nft::apply(&diff, Some(&ns.0)))
        .unwrap_or_else(|e| panic!("{e}\n{diff}"));
    let listed = ns.nft(&["list", "table", "ip", &cfg.table]);
    assert!(listed.contains("10.244.1.6 . 8080"), "{listed}");
    assert!(!listed.contains("10.244.2.3"), "{listed}");

    // A rewrite in place (the periodic resync) from the first state back again.
    let rewrite = rules::render_full(&cfg.table, Some(&second), &first, false);
    rt().block_on(proxy::nft::apply(&rewrite, Some(&ns.0)))
        .unwrap_or_else(|e| panic!("{e}\n{rewrite}"));
    let listed = ns.nft(&["list", "table", "ip", &cfg.table]);
    assert!(
        listed.contains("10.244.2.3 . 8080") && !listed.contains("10.244.1.6"),
        "{listed}"
    );

    // Everything with the cluster's prefix goes; another cluster's table stays.
    let other = config("node-1", &ns.0);
    let other_table = ProxyConfig::table_name("other", "node-1");
    let script = rules::render_full(&other_table, None, &first, true);
    rt().block_on(proxy::nft::apply(&script, Some(&ns.0)))
        .unwrap();
    let mut second_node = other.clone();
    second_node.table = ProxyConfig::table_name("ptest", "node-2");
    let script = rules::render_full(&second_node.table, None, &first, true);
    rt().block_on(proxy::nft::apply(&script, Some(&ns.0)))
        .unwrap();
    let mut removed = proxy::remove_tables_in(&proxy::table_prefix("ptest"), Some(&ns.0)).unwrap();
    removed.sort();
    assert_eq!(removed, ["orrery_ptest_node-1", "orrery_ptest_node-2"]);
    let tables = ns.nft(&["list", "tables", "ip"]);
    assert!(!tables.contains("orrery_ptest_"), "{tables}");
    assert!(tables.contains(&other_table), "{tables}");
}
