//! Storage as a user meets it through the real kubectl: the default StorageClass, claims that
//! wait for their first consumer and then get a provisioned volume on its node, static volumes,
//! reclaim policies, claim protection, expansion, the scheduler's and the kubelet's words for
//! claims that are not bound, bad input refused in upstream's words (on the simulated runtime),
//! and a claim's data outliving its pods and an `orrery down`/`up` (real containers).

use crate::common;

use std::path::Path;

use common::registry::Registry;
use common::{Cluster, rows};

fn jsonpath(c: &Cluster, what: &[&str], path: &str) -> String {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    let format = format!("jsonpath={path}");
    args.extend_from_slice(&["-o", &format]);
    c.ok(&args)
}

/// The events about `name`, as `kubectl get events` prints them.
fn events_of(c: &Cluster, name: &str, seconds: u64, wanted: &str) -> String {
    c.eventually(
        &[
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name={name}"),
        ],
        seconds,
        |e| e.contains(wanted),
    )
}

const CLAIM: &str = r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
"#;

/// A pod that mounts claim `claim` at /data.
fn pod(name: &str, claim: &str, extra: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  {extra}
  containers:
  - name: main
    image: orrery/hello:v1
    volumeMounts: [{{name: data, mountPath: /data}}]
  volumes:
  - name: data
    persistentVolumeClaim: {{claimName: {claim}}}
"#
    )
}

#[test]
fn a_claim_waits_for_its_consumer_then_gets_a_volume_on_its_node() {
    let c = Cluster::with_nodes(2);
    let classes = c.eventually(&["get", "sc"], 20, |o| o.contains("standard (default)"));
    let table = rows(&classes);
    assert_eq!(
        table[0],
        [
            "NAME",
            "PROVISIONER",
            "RECLAIMPOLICY",
            "VOLUMEBINDINGMODE",
            "ALLOWVOLUMEEXPANSION",
            "AGE"
        ]
    );
    assert_eq!(
        table[1][..5],
        [
            "standard (default)",
            "rancher.io/local-path",
            "Delete",
            "WaitForFirstConsumer",
            "false"
        ]
    );

    // No class named: the default one; no consumer yet: Pending, and the PV controller says why.
    c.apply(CLAIM);
    assert_eq!(
        jsonpath(&c, &["pvc", "data"], "{.spec.storageClassName}"),
        "standard"
    );
    let pending = rows(&c.ok(&["get", "pvc", "data"]));
    assert_eq!(
        pending[0],
        [
            "NAME",
            "STATUS",
            "VOLUME",
            "CAPACITY",
            "ACCESS MODES",
            "STORAGECLASS",
            "VOLUMEATTRIBUTESCLASS",
            "AGE"
        ]
    );
    assert_eq!(pending[1][..4], ["data", "Pending", "standard", "<unset>"]);
    events_of(
        &c,
        "data",
        20,
        "waiting for first consumer to be created before binding",
    );

    // The consumer: scheduled, the claim provisioned on its node and bound, then it runs.
    c.apply(&pod("writer", "data", ""));
    c.eventually(
        &["get", "pod", "writer", "-o", "jsonpath={.status.phase}"],
        30,
        |p| p == "Running",
    );
    let uid = jsonpath(&c, &["pvc", "data"], "{.metadata.uid}");
    let volume = format!("pvc-{uid}");
    assert_eq!(jsonpath(&c, &["pvc", "data"], "{.status.phase}"), "Bound");
    assert_eq!(jsonpath(&c, &["pvc", "data"], "{.spec.volumeName}"), volume);
    let node = jsonpath(&c, &["pod", "writer"], "{.spec.nodeName}");
    assert_eq!(
        jsonpath(
            &c,
            &["pvc", "data"],
            "{.metadata.annotations.volume\\.kubernetes\\.io/selected-node}"
        ),
        node
    );
    assert_eq!(
        jsonpath(
            &c,
            &["pv", &volume],
            "{.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values[0]}"
        ),
        node
    );
    assert_eq!(
        jsonpath(
            &c,
            &["pv", &volume],
            "{.metadata.annotations.pv\\.kubernetes\\.io/provisioned-by}"
        ),
        "rancher.io/local-path"
    );
    let pvs = rows(&c.ok(&["get", "pv", "-o", "wide"]));
    assert_eq!(
        pvs[0],
        [
            "NAME",
            "CAPACITY",
            "ACCESS MODES",
            "RECLAIM POLICY",
            "STATUS",
            "CLAIM",
            "STORAGECLASS",
            "VOLUMEATTRIBUTESCLASS",
            "REASON",
            "AGE",
            "VOLUMEMODE"
        ]
    );
    assert_eq!(
        pvs[1][..8],
        [
            volume.as_str(),
            "1Gi",
            "RWO",
            "Delete",
            "Bound",
            "default/data",
            "standard",
            "<unset>"
        ]
    );
    let bound = rows(&c.ok(&["get", "pvc", "data"]));
    assert_eq!(
        bound[1][..7],
        [
            "data",
            "Bound",
            volume.as_str(),
            "1Gi",
            "RWO",
            "standard",
            "<unset>"
        ]
    );
    let dir = c
        .dir
        .path()
        .join("storage")
        .join(format!("{volume}_default_data"));
    assert!(dir.is_dir(), "{} was made", dir.display());
    events_of(&c, "data", 10, "Successfully provisioned volume");

    // In use: a deleted claim stays Terminating until its pod is gone.
    c.ok(&["delete", "pvc", "data", "--wait=false"]);
    let terminating = rows(&c.ok(&["get", "pvc", "data"]));
    assert_eq!(terminating[1][1], "Terminating");
    assert_eq!(
        jsonpath(&c, &["pvc", "data"], "{.metadata.finalizers}"),
        "[\"kubernetes.io/pvc-protection\"]"
    );
    c.ok(&["delete", "pod", "writer"]);
    // Then the claim goes, its volume is Released, and Delete removes volume and directory.
    c.eventually(&["get", "pvc,pv", "-o", "name"], 30, |o| {
        o.trim().is_empty()
    });
    assert!(!dir.exists(), "{} was removed", dir.display());
}

const STATIC: &str = r#"
apiVersion: v1
kind: PersistentVolume
metadata: {name: static-1, labels: {tier: db}}
spec:
  capacity: {storage: 5Gi}
  accessModes: [ReadWriteOnce]
  storageClassName: manual
  hostPath: {path: HOST}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: db}
spec:
  storageClassName: manual
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 2Gi}}
  selector: {matchLabels: {tier: db}}
"#;

#[test]
fn static_volumes_bind_and_are_retained() {
    let c = Cluster::with_nodes(1);
    let host = c.dir.path().join("static");
    std::fs::create_dir_all(&host).unwrap();
    c.apply(&STATIC.replace("HOST", host.to_str().unwrap()));
    let bound = c.eventually(&["get", "pvc", "db"], 20, |o| o.contains("Bound"));
    assert_eq!(
        rows(&bound)[1][..7],
        ["db", "Bound", "static-1", "5Gi", "RWO", "manual", "<unset>"]
    );
    assert_eq!(
        jsonpath(
            &c,
            &["pv", "static-1"],
            "{.spec.persistentVolumeReclaimPolicy}"
        ),
        "Retain",
        "a volume's default policy"
    );
    assert_eq!(
        jsonpath(
            &c,
            &["pvc", "db"],
            "{.metadata.annotations.pv\\.kubernetes\\.io/bind-completed}"
        ),
        "yes"
    );
    // The claim goes; the volume stays Released with its data and its claim reference.
    std::fs::write(host.join("keep"), "kept").unwrap();
    c.ok(&["delete", "pvc", "db"]);
    let released = c.eventually(&["get", "pv", "static-1"], 20, |o| o.contains("Released"));
    assert_eq!(
        rows(&released)[1][..6],
        ["static-1", "5Gi", "RWO", "Retain", "Released", "default/db"]
    );
    assert_eq!(std::fs::read_to_string(host.join("keep")).unwrap(), "kept");
}

const IMMEDIATE: &str = r#"
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: fast}
provisioner: example.com/fast
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: quick}
spec:
  storageClassName: fast
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
"#;

#[test]
fn unbound_claims_hold_pods_in_the_scheduler_and_kubelet_words() {
    let c = Cluster::with_nodes(2);
    c.apply(IMMEDIATE);
    events_of(&c, "quick", 20, "external provisioner 'example.com/fast'");
    c.apply(&pod("waits", "quick", ""));
    events_of(
        &c,
        "waits",
        20,
        "0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.",
    );
    // A pod put on a node by hand: its kubelet waits for the claim.
    c.apply(&pod("pinned", "quick", "nodeName: node-2"));
    events_of(
        &c,
        "pinned",
        20,
        "Unable to attach or mount volumes: unmounted volumes=[data], unattached volumes=[], failed to process volumes=[data]: error processing PVC default/quick: PVC is not bound",
    );
    // A volume for the claim: both pods start.
    let host = c.dir.path().join("fast");
    std::fs::create_dir_all(&host).unwrap();
    c.apply(&format!(
        r#"
apiVersion: v1
kind: PersistentVolume
metadata: {{name: fast-1}}
spec:
  capacity: {{storage: 1Gi}}
  accessModes: [ReadWriteOnce]
  storageClassName: fast
  hostPath: {{path: {}}}
"#,
        host.display()
    ));
    for name in ["waits", "pinned"] {
        c.eventually(
            &["get", "pod", name, "-o", "jsonpath={.status.phase}"],
            30,
            |p| p == "Running",
        );
    }
    assert_eq!(
        jsonpath(&c, &["pvc", "quick"], "{.spec.volumeName}"),
        "fast-1"
    );
    // Growth needs a class that allows it.
    let refused = c.fails(
        &[
            "patch",
            "pvc",
            "quick",
            "-p",
            r#"{"spec":{"resources":{"requests":{"storage":"2Gi"}}}}"#,
        ],
        None,
    );
    assert!(
        refused.contains("persistentvolumeclaims \"quick\" is forbidden: only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize"),
        "{refused}"
    );
}

#[test]
fn a_claim_of_an_expandable_class_grows() {
    let c = Cluster::with_nodes(1);
    c.apply(
        r#"
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: growable}
provisioner: rancher.io/local-path
volumeBindingMode: WaitForFirstConsumer
allowVolumeExpansion: true
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  storageClassName: growable
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
"#,
    );
    c.apply(&pod("user", "data", ""));
    c.eventually(&["get", "pvc", "data"], 30, |o| o.contains("Bound"));
    let volume = jsonpath(&c, &["pvc", "data"], "{.spec.volumeName}");
    c.ok(&[
        "patch",
        "pvc",
        "data",
        "-p",
        r#"{"spec":{"resources":{"requests":{"storage":"3Gi"}}}}"#,
    ]);
    c.eventually(
        &[
            "get",
            "pvc",
            "data",
            "-o",
            "jsonpath={.status.capacity.storage}",
        ],
        20,
        |s| s == "3Gi",
    );
    assert_eq!(
        jsonpath(&c, &["pv", &volume], "{.spec.capacity.storage}"),
        "3Gi"
    );
    events_of(&c, "data", 10, "VolumeResizeSuccessful");
    // Back below what it has: refused.
    let shrink = c.fails(
        &[
            "patch",
            "pvc",
            "data",
            "-p",
            r#"{"spec":{"resources":{"requests":{"storage":"1Gi"}}}}"#,
        ],
        None,
    );
    assert!(
        shrink.contains(
            "spec.resources.requests.storage: Forbidden: field can not be less than status.capacity"
        ),
        "{shrink}"
    );
}

#[test]
fn bad_storage_input_is_refused_in_upstreams_words() {
    let c = Cluster::start();
    let cases = [
        (
            "apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: bad}\nspec: {}\n",
            vec![
                "The PersistentVolume \"bad\" is invalid",
                "spec.accessModes: Required value",
                "spec.capacity: Required value",
                "spec: Required value: must specify a volume type",
            ],
        ),
        (
            "apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: bad}\nspec: {capacity: {storage: 1Gi}, accessModes: [ReadWriteOnce], local: {path: /mnt}}\n",
            vec!["spec.nodeAffinity: Required value: Local volume requires node affinity"],
        ),
        (
            "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: bad}\nspec: {accessModes: [ReadWriteSometimes]}\n",
            vec![
                "The PersistentVolumeClaim \"bad\" is invalid",
                "spec.accessModes: Unsupported value: \"ReadWriteSometimes\": supported values: \"ReadOnlyMany\", \"ReadWriteMany\", \"ReadWriteOnce\", \"ReadWriteOncePod\"",
                "spec.resources[storage]: Required value",
            ],
        ),
        (
            "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: bad}\nprovisioner: example.com/x\nreclaimPolicy: Recycle\n",
            vec![
                "The StorageClass \"bad\" is invalid",
                "reclaimPolicy: Unsupported value: \"Recycle\": supported values: \"Delete\", \"Retain\"",
            ],
        ),
    ];
    for (manifest, wanted) in cases {
        let error = c.fails(&["create", "-f", "-"], Some(manifest));
        for words in wanted {
            assert!(error.contains(words), "{words:?} not in {error}");
        }
    }
    // What may not change.
    c.eventually(&["get", "sc", "standard"], 20, |o| o.contains("standard"));
    let class = c.fails(
        &[
            "patch",
            "sc",
            "standard",
            "-p",
            r#"{"provisioner":"example.com/other"}"#,
        ],
        None,
    );
    assert!(
        class.contains("provisioner: Forbidden: updates to provisioner are forbidden."),
        "{class}"
    );
    c.apply(CLAIM);
    let modes = c.fails(
        &[
            "patch",
            "pvc",
            "data",
            "-p",
            r#"{"spec":{"accessModes":["ReadWriteMany"]}}"#,
        ],
        None,
    );
    assert!(
        modes.contains("spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"),
        "{modes}"
    );
    let grow = c.fails(
        &[
            "patch",
            "pvc",
            "data",
            "-p",
            r#"{"spec":{"resources":{"requests":{"storage":"2Gi"}}}}"#,
        ],
        None,
    );
    // An unbound claim's request is part of its immutable spec (validation speaks first).
    assert!(grow.contains("spec is immutable after creation"), "{grow}");
}

/// Whether a path has anything in it.
fn holds(dir: &Path, file: &str) -> bool {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .any(|e| e.path().join(file).exists())
}

#[test]
fn a_claims_data_outlives_its_pods_and_the_cluster() {
    let Some(c) = Cluster::real("ctr-storage", 1, "10.231.0.0/16") else {
        return;
    };
    let registry = Registry::start();
    let image = registry.push_busybox("1");
    let busybox = |name: &str, script: &str, read_only: bool| {
        format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  containers:
  - name: main
    image: {image}
    command: ["sh", "-c", "{script}"]
    volumeMounts: [{{name: data, mountPath: /data}}]
  volumes:
  - name: data
    persistentVolumeClaim: {{claimName: data, readOnly: {read_only}}}
"#
        )
    };
    c.apply(CLAIM);
    c.apply(&busybox(
        "writer",
        "echo kept across pods > /data/note; exec sleep 3600",
        false,
    ));
    c.eventually(
        &["get", "pod", "writer", "-o", "jsonpath={.status.phase}"],
        90,
        |p| p == "Running",
    );
    let storage = c.dir.path().join("storage");
    c.eventually(&["get", "pvc", "data"], 10, |_| holds(&storage, "note"));
    c.ok(&["delete", "pod", "writer", "--grace-period=1"]);

    // A new pod reads what the first wrote; mounted read-only, it cannot write.
    c.apply(&busybox("reader", "cat /data/note; exec sleep 3600", true));
    c.eventually(&["logs", "reader"], 90, |l| l.contains("kept across pods"));
    let write = c.kubectl(
        &["exec", "reader", "--", "sh", "-c", "echo x > /data/other"],
        None,
        &[],
    );
    assert!(!write.status.success());
    assert!(
        String::from_utf8_lossy(&write.stderr).contains("Read-only file system"),
        "{write:?}"
    );

    // Down and up again on the same state directory: the data is still there.
    let dir = c.down();
    let c = Cluster::start_in(
        dir,
        &[
            "--no-kubeconfig-merge",
            "--name",
            "ctr-storage",
            "--nodes",
            "1",
            "--runtime",
            "libcontainer",
            "--cluster-cidr",
            "10.231.0.0/16",
        ],
    );
    c.apply(&busybox("again", "cat /data/note; exec sleep 3600", false));
    c.eventually(&["logs", "again"], 90, |l| l.contains("kept across pods"));
    assert_eq!(jsonpath(&c, &["pvc", "data"], "{.status.phase}"), "Bound");
}
