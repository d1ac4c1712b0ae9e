//! Store snapshots (`orrery store snapshot save|restore FILE`): on a running cluster, objects
//! deleted after a save come back with their UIDs, objects made after it go, every watch open
//! before ends with 410 so its client lists again, and the pods the kubelets run are the same
//! pods, never restarted. Offline on a stopped cluster too; and a bad file is refused, saying
//! what is wrong, with nothing changed.

use std::time::{Duration, Instant};

use crate::common::Cluster;

const WEB: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: hello
        image: orrery/hello
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  greeting: hello
";

fn uid(cluster: &Cluster, kind: &str, name: &str) -> String {
    cluster.ok(&["get", kind, name, "-o", "jsonpath={.metadata.uid}"])
}

/// Each pod of the Deployment: `name uid containerID restartCount`, sorted.
fn pods(cluster: &Cluster) -> Vec<String> {
    let out = cluster.ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.metadata.uid} {.status.containerStatuses[0].containerID} {.status.containerStatuses[0].restartCount}{\"\\n\"}{end}",
    ]);
    let mut lines: Vec<String> = out.lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

/// A kube-rs watch of ConfigMaps from `version`, in a thread: every event it gets until the
/// stream ends (60 s at most), as `(type, detail)`.
fn watch_configmaps(
    kubeconfig: std::path::PathBuf,
    version: String,
) -> std::thread::JoinHandle<Vec<(String, String)>> {
    std::thread::spawn(move || {
        use futures::StreamExt;
        use k8s_openapi::api::core::v1::ConfigMap;
        use kube::api::{Api, WatchEvent, WatchParams};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let api: Api<ConfigMap> =
                Api::namespaced(crate::common::kube_client(&kubeconfig).await, "default");
            let mut stream = api
                .watch(&WatchParams::default().timeout(60), &version)
                .await
                .unwrap()
                .boxed();
            let mut seen = Vec::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while let Ok(Some(event)) = tokio::time::timeout_at(deadline, stream.next()).await {
                seen.push(match event {
                    Ok(WatchEvent::Added(c)) => {
                        ("ADDED".into(), c.metadata.name.unwrap_or_default())
                    }
                    Ok(WatchEvent::Modified(c)) => {
                        ("MODIFIED".into(), c.metadata.name.unwrap_or_default())
                    }
                    Ok(WatchEvent::Deleted(c)) => {
                        ("DELETED".into(), c.metadata.name.unwrap_or_default())
                    }
                    Ok(WatchEvent::Bookmark(_)) => continue,
                    Ok(WatchEvent::Error(e)) => {
                        ("ERROR".into(), format!("{} {}", e.code, e.reason))
                    }
                    Err(e) => ("FAILED".into(), e.to_string()),
                });
            }
            seen
        })
    })
}

#[test]
#[allow(clippy::disallowed_methods)] // a plain test thread, not a tokio worker
fn a_restore_brings_objects_back_and_keeps_the_pods() {
    let cluster = Cluster::with_nodes(1);
    cluster.apply(WEB);
    cluster.eventually(
        &[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[*].status.phase}",
        ],
        60,
        |phases| phases == "Running Running",
    );
    let deployment = uid(&cluster, "deployment", "web");
    let settings = uid(&cluster, "configmap", "settings");
    let running = pods(&cluster);
    assert_eq!(running.len(), 2, "{running:?}");
    let file = cluster.dir.path().join("backup.snapshot");
    let file_arg = file.to_str().unwrap();

    let saved = cluster.orrery_ok(&["store", "snapshot", "save", file_arg]);
    assert!(
        saved.starts_with(&format!("Snapshot saved at {file_arg}: ")),
        "{saved}"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600,
        "a snapshot holds every Secret"
    );
    let status = cluster.orrery_ok(&["store", "snapshot", "status", file_arg]);
    assert!(
        status.contains("keys") && status.contains("sha256 "),
        "{status}"
    );

    // After the save: the Deployment (its pods kept: orphaned) and the ConfigMap deleted, a new
    // ConfigMap made.
    cluster.ok(&["delete", "deployment", "web", "--cascade=orphan", "--wait"]);
    cluster.ok(&["delete", "configmap", "settings"]);
    cluster.ok(&["create", "configmap", "newer", "--from-literal=a=1"]);
    assert_eq!(pods(&cluster), running, "orphaned, not deleted");
    let version = cluster.ok(&[
        "get",
        "configmaps",
        "-o",
        "jsonpath={.metadata.resourceVersion}",
    ]);
    let watch = watch_configmaps(cluster.kubeconfig(), version);
    // The watch is open (its first bookmark or nothing): give it a moment to be established.
    std::thread::sleep(Duration::from_millis(500));

    let restored = cluster.orrery_ok(&["store", "snapshot", "restore", file_arg]);
    assert!(
        restored.starts_with("Restored ") && restored.contains("history compacted"),
        "{restored}"
    );

    // Back, with their UIDs; the newer one gone.
    assert_eq!(uid(&cluster, "deployment", "web"), deployment);
    assert_eq!(uid(&cluster, "configmap", "settings"), settings);
    let gone = cluster.fails(&["get", "configmap", "newer"], None);
    assert!(gone.contains("configmaps \"newer\" not found"), "{gone}");
    // The watch opened before ended with 410 Expired, delivering nothing of the restore.
    let seen = watch.join().unwrap();
    assert_eq!(
        seen.last()
            .map(|(kind, detail)| (kind.as_str(), detail.as_str())),
        Some(("ERROR", "410 Expired")),
        "{seen:?}"
    );
    assert!(
        !seen
            .iter()
            .any(|(kind, name)| kind == "ADDED" && name == "settings"),
        "the watch replayed the restore: {seen:?}"
    );
    // The same pods, never restarted, and no more of them: a few seconds of the controllers
    // and the kubelet on the restored objects change nothing.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        assert_eq!(pods(&cluster), running);
        std::thread::sleep(Duration::from_millis(500));
    }
    let ready = cluster.ok(&[
        "get",
        "deployment",
        "web",
        "-o",
        "jsonpath={.status.readyReplicas}",
    ]);
    assert_eq!(ready, "2");
    // The restore is a hop on the flow.
    let flow = cluster.ok(&["get", "--raw", "/orrery/v1/flow?follow=false"]);
    assert!(
        flow.lines().any(|l| l.contains("\"verb\":\"RESTORE\"")),
        "no RESTORE hop"
    );

    // A bad file sent to the API server is refused whole (400), whatever the CLI checks.
    let garbage = cluster.dir.path().join("garbage");
    std::fs::write(&garbage, b"not a snapshot at all").unwrap();
    let refused = cluster.fails(
        &[
            "create",
            "--raw",
            "/orrery/v1/store/snapshot",
            "-f",
            garbage.to_str().unwrap(),
        ],
        None,
    );
    assert!(
        refused.contains("not an Orrery store snapshot"),
        "{refused}"
    );
    assert_eq!(uid(&cluster, "configmap", "settings"), settings);

    // Offline, on the stopped cluster: save, change, restore.
    cluster.ok(&["create", "configmap", "later", "--from-literal=a=2"]);
    let key = "/registry/configmaps/default/later";
    let running_value = cluster.orrery_ok(&["store", "get", key]);
    let dir = cluster.down();
    let offline = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_orrery"))
            .arg("--state-dir")
            .arg(dir.path())
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let second = dir.path().join("offline.snapshot");
    let second_arg = second.to_str().unwrap();
    let (ok, out, err) = offline(&["store", "snapshot", "save", second_arg]);
    assert!(ok, "{err}");
    assert!(out.starts_with("Snapshot saved at"), "{out}");
    let (ok, _, err) = offline(&["store", "del", key]);
    assert!(ok, "{err}");
    let (ok, _, err) = offline(&["store", "get", key]);
    assert!(!ok && err.contains("not found"), "{err}");
    let (_, status_before, _) = offline(&["store", "status"]);

    // Bad files: refused, saying what is wrong, and nothing changed.
    let good = std::fs::read(&second).unwrap();
    // The last byte of the last value (the checksum is the last 32).
    let mut damaged = good.clone();
    damaged[good.len() - 33] ^= 0x20;
    for (name, bytes, words) in [
        ("truncated", good[..good.len() / 2].to_vec(), "truncated"),
        ("damaged", damaged, "damaged"),
        ("text", b"hello".to_vec(), "not an Orrery store snapshot"),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let (ok, _, err) = offline(&["store", "snapshot", "restore", path.to_str().unwrap()]);
        assert!(!ok, "{name} restored");
        assert!(
            err.contains(words) && err.contains("nothing was changed"),
            "{name}: {err}"
        );
    }
    let (_, status_after, _) = offline(&["store", "status"]);
    assert_eq!(
        status_after, status_before,
        "a refused file changed the store"
    );

    let (ok, out, err) = offline(&["store", "snapshot", "restore", second_arg]);
    assert!(ok, "{err}");
    assert!(out.starts_with("Restored "), "{out}");
    let (ok, value, err) = offline(&["store", "get", key]);
    assert!(ok, "{err}");
    assert_eq!(value, running_value);
}
