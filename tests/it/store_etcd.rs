//! What only the etcd backend promises: keys and values are etcd's own, readable with `etcdctl`.
#![cfg(feature = "etcd")]

use crate::common;

use std::process::Command;

use orrery::store::etcd::{EtcdStore, LocalEtcd};
use orrery::store::{Store, StoreUrl};

#[tokio::test]
async fn etcdctl_sees_the_keys_as_written() {
    if !common::etcd_available() {
        return;
    }
    let local = LocalEtcd::start(None).await.unwrap();
    // Through the store URL, as `--store etcd=URL` opens it.
    let url: StoreUrl = format!("etcd={}", local.endpoint).parse().unwrap();
    let store = orrery::store::open(&url, std::path::Path::new("/nonexistent"))
        .await
        .unwrap();
    let value = r#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"web-1"}}"#;
    let revision = store
        .create("/registry/pods/default/web-1", value.into())
        .await
        .unwrap();

    let output = Command::new("etcdctl")
        .args([
            "--endpoints",
            &local.endpoint,
            "get",
            "--prefix",
            "/registry",
        ])
        .env("ETCDCTL_API", "3")
        .output()
        .expect("run etcdctl (apt-get install etcd-client)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        format!("/registry/pods/default/web-1\n{value}\n")
    );

    // And a write made with etcdctl shows up through the store with etcd's revision.
    let status = Command::new("etcdctl")
        .args([
            "--endpoints",
            &local.endpoint,
            "put",
            "/registry/configmaps/default/c",
            "x",
        ])
        .env("ETCDCTL_API", "3")
        .status()
        .unwrap();
    assert!(status.success());
    let direct = EtcdStore::connect(std::slice::from_ref(&local.endpoint))
        .await
        .unwrap();
    let kv = direct
        .get("/registry/configmaps/default/c")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (kv.value.as_ref(), kv.mod_revision),
        (b"x".as_ref(), revision + 1)
    );
}

/// etcd's own backup tools work on an `etcd-cluster`'s members: `etcdctl snapshot save` from one
/// member, `etcdctl snapshot status` reads it (the revision and keys the store wrote); and the
/// cluster's layout survives its processes (started again, the members find their data).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_snapshots_an_etcd_cluster() {
    use orrery::store::etcd::cluster::EtcdCluster;
    assert!(
        LocalEtcd::available(),
        "this test needs an `etcd` binary (apt-get install etcd-server)"
    );
    let dir = tempfile::tempdir().unwrap();
    let cluster = EtcdCluster::open(dir.path(), 3).unwrap();
    let members = cluster.start_all().await.unwrap();
    let store = EtcdStore::connect(&cluster.endpoints()).await.unwrap();
    for i in 0..10 {
        store
            .create(&format!("/registry/configmaps/default/c{i}"), "{}".into())
            .await
            .unwrap();
    }
    let revision = store.current_revision().await.unwrap();
    let file = dir.path().join("etcd.db");
    let save = Command::new("etcdctl")
        .args(["--endpoints", &cluster.endpoints()[1], "snapshot", "save"])
        .arg(&file)
        .env("ETCDCTL_API", "3")
        .output()
        .expect("run etcdctl (apt-get install etcd-client)");
    assert!(
        save.status.success(),
        "{}",
        String::from_utf8_lossy(&save.stderr)
    );
    let status = Command::new("etcdctl")
        .args(["snapshot", "status", "-w", "json"])
        .arg(&file)
        .env("ETCDCTL_API", "3")
        .output()
        .unwrap();
    assert!(status.status.success());
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["revision"], revision);
    assert!(status["totalKey"].as_u64().unwrap() >= 10, "{status}");
    // An Orrery restore refuses the file, pointing to etcd's tool.
    let refused = orrery::store::snapshot::Snapshot::decode(&std::fs::read(&file).unwrap())
        .unwrap_err()
        .to_string();
    assert!(refused.contains("etcdctl snapshot restore"), "{refused}");

    // Stopped and started again: the same members on their data.
    drop(store);
    drop(members);
    let again = EtcdCluster::open(dir.path(), 3).unwrap();
    let _members = again.start_all().await.unwrap();
    let store = EtcdStore::connect(&again.endpoints()).await.unwrap();
    assert!(
        store
            .get("/registry/configmaps/default/c9")
            .await
            .unwrap()
            .is_some()
    );
    let status = store.status().await.unwrap();
    assert_eq!(status.quorum(), Some(true), "{status:?}");
    let names: Vec<&str> = status.members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["etcd-1", "etcd-2", "etcd-3"]);
}
