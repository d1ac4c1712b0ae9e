//! ResourceQuota and LimitRange through kubectl, as against kube-apiserver and
//! kube-controller-manager: a LimitRange fills a pod's missing requests and limits (and says so
//! in `kubernetes.io/limit-ranger`) and refuses one over its max in upstream's words; a quota of
//! two pods refuses the third with upstream's 403, wants every container to name the cpu it
//! limits, and the resource quota controller's counts show in `kubectl get quota` and
//! `kubectl describe quota`, given back when a pod ends.

use crate::common::{Cluster, rows};

const LIMITS: &str = r#"
apiVersion: v1
kind: LimitRange
metadata:
  name: limits
spec:
  limits:
  - type: Container
    default:
      cpu: 500m
      memory: 128Mi
    defaultRequest:
      cpu: 100m
    max:
      cpu: "1"
"#;

fn pod(name: &str, resources: &str, command: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: orrery/hello:1
    command: {command}
    resources: {resources}
"#
    )
}

const SLEEP: &str = r#"["/orrery", "sleep", "3600"]"#;

#[test]
fn quota_limit_range_defaults_and_bounds_a_pods_resources() {
    let c = Cluster::with_nodes(1);
    let resources = c.ok(&["api-resources"]);
    for expected in [
        ["limitranges", "limits", "v1", "true", "LimitRange"],
        ["resourcequotas", "quota", "v1", "true", "ResourceQuota"],
    ] {
        assert!(
            rows(&resources).iter().any(|r| r == &expected),
            "{expected:?} missing from:\n{resources}"
        );
    }
    c.ok(&["create", "namespace", "ranged"]);
    c.ok_with(&["-n", "ranged", "create", "-f", "-"], Some(LIMITS));
    // The defaults as stored: the item's default request of memory came from its default.
    let stored = c.ok(&[
        "-n",
        "ranged",
        "get",
        "limits",
        "limits",
        "-o",
        "jsonpath={.spec.limits[0].defaultRequest}",
    ]);
    assert_eq!(stored, r#"{"cpu":"100m","memory":"128Mi"}"#);
    let table = c.ok(&["-n", "ranged", "get", "limitranges"]);
    assert_eq!(rows(&table)[0], ["NAME", "CREATED AT"], "{table}");

    c.ok_with(
        &["-n", "ranged", "create", "-f", "-"],
        Some(&pod("bare", "{}", SLEEP)),
    );
    let resources = c.ok(&[
        "-n",
        "ranged",
        "get",
        "pod",
        "bare",
        "-o",
        "jsonpath={.spec.containers[0].resources}",
    ]);
    assert_eq!(
        resources,
        r#"{"limits":{"cpu":"500m","memory":"128Mi"},"requests":{"cpu":"100m","memory":"128Mi"}}"#
    );
    let qos = c.ok(&[
        "-n",
        "ranged",
        "get",
        "pod",
        "bare",
        "-o",
        "jsonpath={.status.qosClass}",
    ]);
    assert_eq!(qos, "Burstable");
    let note = c.ok(&[
        "-n",
        "ranged",
        "get",
        "pod",
        "bare",
        "-o",
        r#"jsonpath={.metadata.annotations.kubernetes\.io/limit-ranger}"#,
    ]);
    assert_eq!(
        note,
        "LimitRanger plugin set: cpu, memory request for container c; cpu, memory limit for container c"
    );

    let refused = c.fails(
        &["-n", "ranged", "create", "-f", "-"],
        Some(&pod("big", r#"{limits: {cpu: "2"}}"#, SLEEP)),
    );
    assert!(
        refused.contains(concat!(
            r#"Error from server (Forbidden): error when creating "STDIN": pods "big" is forbidden: "#,
            "maximum cpu usage per Container is 1, but limit is 2",
        )),
        "{refused}"
    );

    // A claim is held to the storage bounds.
    c.ok_with(
        &["-n", "ranged", "create", "-f", "-"],
        Some(
            r#"
apiVersion: v1
kind: LimitRange
metadata:
  name: storage
spec:
  limits:
  - type: PersistentVolumeClaim
    max: {storage: 10Gi}
"#,
        ),
    );
    let refused = c.fails(
        &["-n", "ranged", "create", "-f", "-"],
        Some(
            r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: huge
spec:
  accessModes: [ReadWriteOnce]
  resources:
    requests: {storage: 20Gi}
"#,
        ),
    );
    assert!(
        refused.contains(r#"persistentvolumeclaims "huge" is forbidden: maximum storage usage per PersistentVolumeClaim is 10Gi, but request is 20Gi"#),
        "{refused}"
    );

    // A LimitRange whose default is above its max is invalid, in upstream's words.
    let invalid = c.fails(
        &["-n", "ranged", "create", "-f", "-"],
        Some(
            r#"
apiVersion: v1
kind: LimitRange
metadata:
  name: upside-down
spec:
  limits:
  - type: Container
    default: {cpu: "2"}
    defaultRequest: {cpu: "1"}
    max: {cpu: "1"}
"#,
        ),
    );
    assert!(
        invalid.contains(r#"LimitRange "upside-down" is invalid: spec.limits[0].default[cpu]: Invalid value: resource.Quantity{"#),
        "{invalid}"
    );
    assert!(
        invalid.contains("default value 2 is greater than max value 1"),
        "{invalid}"
    );
}

#[test]
fn quota_refuses_past_hard_and_the_controller_counts() {
    let c = Cluster::with_nodes(1);
    c.ok(&["create", "namespace", "capped"]);
    root_ca_published(&c, "capped");
    c.ok_with(
        &["-n", "capped", "create", "-f", "-"],
        Some(
            r#"
apiVersion: v1
kind: ResourceQuota
metadata:
  name: q
spec:
  hard:
    pods: "2"
    configmaps: "5"
"#,
        ),
    );
    // Until the controller has counted, the quota has no status; then it shows used/hard.
    c.eventually(
        &[
            "-n",
            "capped",
            "get",
            "quota",
            "q",
            "-o",
            "jsonpath={.status.used.pods}",
        ],
        30,
        |used| used == "0",
    );
    let table = c.ok(&["-n", "capped", "get", "quota"]);
    let rows = rows(&table);
    assert_eq!(rows[0], ["NAME", "AGE", "REQUEST", "LIMIT"], "{table}");
    assert_eq!(rows[1][0], "q", "{table}");
    // The namespace's `kube-root-ca.crt` counts, as on any cluster.
    assert_eq!(rows[1][2], "configmaps: 1/5, pods: 0/2", "{table}");

    c.ok_with(
        &["-n", "capped", "create", "-f", "-"],
        Some(&pod("one", "{}", SLEEP)),
    );
    c.ok_with(
        &["-n", "capped", "create", "-f", "-"],
        Some(&pod("two", "{}", SLEEP)),
    );
    let refused = c.fails(
        &["-n", "capped", "create", "-f", "-"],
        Some(&pod("three", "{}", SLEEP)),
    );
    assert!(
        refused.contains(concat!(
            r#"Error from server (Forbidden): error when creating "STDIN": pods "three" is forbidden: "#,
            "exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2",
        )),
        "{refused}"
    );

    // A deleted pod and a pod that has ended no longer count: the controller gives their
    // units back.
    c.ok(&["-n", "capped", "delete", "pod", "two", "--wait=false"]);
    c.eventually(
        &[
            "-n",
            "capped",
            "get",
            "quota",
            "q",
            "-o",
            "jsonpath={.status.used.pods}",
        ],
        60,
        |used| used == "1",
    );
    c.ok_with(
        &["-n", "capped", "create", "-f", "-"],
        Some(&pod("done", "{}", r#"["/orrery", "exit", "0"]"#)),
    );
    c.eventually(
        &[
            "-n",
            "capped",
            "get",
            "pod",
            "done",
            "-o",
            "jsonpath={.status.phase}",
        ],
        60,
        |phase| phase == "Succeeded",
    );
    c.eventually(
        &[
            "-n",
            "capped",
            "get",
            "quota",
            "q",
            "-o",
            "jsonpath={.status.used.pods}",
        ],
        60,
        |used| used == "1",
    );
    c.ok_with(
        &["-n", "capped", "create", "-f", "-"],
        Some(&pod("three", "{}", SLEEP)),
    );
    let described = c.eventually(&["-n", "capped", "describe", "quota", "q"], 30, |out| {
        out.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["pods", "2", "2"])
    });
    assert!(described.contains("Namespace:"), "{described}");

    // A quota on cpu wants every container to name it.
    c.ok_with(
        &["-n", "capped", "create", "-f", "-"],
        Some(
            r#"
apiVersion: v1
kind: ResourceQuota
metadata:
  name: compute
spec:
  hard:
    requests.cpu: "1"
    limits.cpu: "2"
"#,
        ),
    );
    c.eventually(
        &[
            "-n",
            "capped",
            "get",
            "quota",
            "compute",
            "-o",
            "jsonpath={.status.used}",
        ],
        30,
        |used| used.contains("requests.cpu"),
    );
    let table = c.ok(&["-n", "capped", "get", "quota", "compute"]);
    assert!(
        table.contains("requests.cpu: 0/1") && table.contains("limits.cpu: 0/2"),
        "{table}"
    );
    c.ok(&["-n", "capped", "delete", "pod", "three", "--wait=false"]);
    c.eventually(
        &[
            "-n",
            "capped",
            "get",
            "quota",
            "q",
            "-o",
            "jsonpath={.status.used.pods}",
        ],
        60,
        |used| used == "1",
    );
    let refused = c.fails(
        &["-n", "capped", "create", "-f", "-"],
        Some(&pod("unnamed", "{}", SLEEP)),
    );
    assert!(
        refused.contains(
            r#"pods "unnamed" is forbidden: failed quota: compute: must specify limits.cpu for: c; requests.cpu for: c"#
        ),
        "{refused}"
    );
    let refused = c.fails(
        &["-n", "capped", "create", "-f", "-"],
        Some(&pod(
            "greedy",
            r#"{requests: {cpu: 1500m}, limits: {cpu: "2"}}"#,
            SLEEP,
        )),
    );
    assert!(
        refused.contains("exceeded quota: compute, requested: requests.cpu=1500m, used: requests.cpu=0, limited: requests.cpu=1"),
        "{refused}"
    );
}

#[test]
fn quota_concurrent_creates_never_share_the_last_unit() {
    let c = Cluster::start();
    c.ok(&["create", "namespace", "race"]);
    root_ca_published(&c, "race");
    // Four: the namespace's `kube-root-ca.crt` takes one.
    c.ok(&["-n", "race", "create", "quota", "q", "--hard=configmaps=4"]);
    c.eventually(
        &[
            "-n",
            "race",
            "get",
            "quota",
            "q",
            "-o",
            "jsonpath={.status.used.configmaps}",
        ],
        30,
        |used| used == "1",
    );
    // Eight creates at once: each charge is a compare-and-swap on the quota, so three win.
    let created: usize = std::thread::scope(|s| {
        let tries: Vec<_> = (0..8)
            .map(|i| {
                let c = &c;
                s.spawn(move || {
                    let name = format!("cm-{i}");
                    c.kubectl(&["-n", "race", "create", "configmap", &name], None, &[])
                })
            })
            .collect();
        tries
            .into_iter()
            .map(|t| t.join().unwrap())
            .filter(|out| {
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert!(
                    out.status.success() || stderr.contains("exceeded quota: q, requested: configmaps=1, used: configmaps=4, limited: configmaps=4"),
                    "{stderr}"
                );
                out.status.success()
            })
            .count()
    });
    assert_eq!(created, 3);
    let used = c.ok(&[
        "-n",
        "race",
        "get",
        "quota",
        "q",
        "-o",
        "jsonpath={.status.used.configmaps}",
    ]);
    assert_eq!(used, "4");
    let listed = c.ok(&["-n", "race", "get", "configmaps", "-o", "name"]);
    assert_eq!(listed.lines().count(), 4, "{listed}");
}

/// Waits until the root CA publisher has made the namespace's `kube-root-ca.crt`.
fn root_ca_published(c: &Cluster, namespace: &str) {
    c.eventually(
        &["-n", namespace, "get", "configmaps", "-o", "name"],
        30,
        |out| out.contains("configmap/kube-root-ca.crt"),
    );
}
