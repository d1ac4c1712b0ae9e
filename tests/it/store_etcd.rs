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
