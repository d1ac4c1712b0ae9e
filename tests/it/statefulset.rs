//! The StatefulSet controller as a user sees it: the real `kubectl` against `orrery up` with
//! virtual nodes on the simulated runtime. Ordered creation (each pod once the one before is
//! Running and Ready) with a claim per pod, stable hostnames resolved through the cluster DNS,
//! scale-down from the highest ordinal, rolling updates down to a partition, `rollout
//! status|history|undo`, `OnDelete`, `Parallel`, and the claims' retention policy.

use crate::common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Cluster, rows};
use serde_json::Value;

const SERVICE: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{name: http, port: 8080}]
"#;

/// A StatefulSet `web` of `replicas` hello pods, `extra` spec lines appended (two-space
/// indented under `spec`).
fn statefulset(replicas: u32, extra: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: web
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: web
        image: orrery/hello:1
        ports: [{{name: http, containerPort: 8080}}]
{extra}"#
    )
}

/// A `www` claim template (1Gi, ReadWriteOnce) for [`statefulset`]'s `extra`.
const CLAIMS: &str = "  volumeClaimTemplates:
  - metadata: {name: www, labels: {tier: data}}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
";

/// Polls `check` until it gives a value (at most 60 s, every 100 ms).
#[allow(clippy::disallowed_methods)] // a plain test thread, not a tokio worker
fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Some(value) = check() {
            return value;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

/// `name image revision` of every pod of `web` not being deleted, by name.
fn pods(c: &Cluster) -> Vec<String> {
    let out = c.ok(&["get", "pods", "-l", "app=web", "-o", "json"]);
    let list: Value = serde_json::from_str(&out).unwrap();
    let mut pods: Vec<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            format!(
                "{} {} {}",
                p["metadata"]["name"].as_str().unwrap(),
                p["spec"]["containers"][0]["image"].as_str().unwrap(),
                p["metadata"]["labels"]["controller-revision-hash"]
                    .as_str()
                    .unwrap_or("-"),
            )
        })
        .collect();
    pods.sort();
    pods
}

/// The images of `web-0..` in order, once every pod exists and none is being deleted.
fn images(c: &Cluster) -> Vec<String> {
    pods(c)
        .iter()
        .map(|p| p.split(' ').nth(1).unwrap().to_owned())
        .collect()
}

/// `kubectl rollout history`'s table, without the object's name above it and blank lines.
fn history_rows(text: &str) -> Vec<Vec<String>> {
    rows(text)
        .into_iter()
        .skip(1)
        .filter(|r| !r.is_empty())
        .collect()
}

/// The flow so far, one JSON event a line.
fn flow(c: &Cluster) -> Vec<Value> {
    c.ok(&["get", "--raw", "/orrery/v1/flow?since=0&follow=false"])
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The sequence numbers of the controller's `verb` decisions on pods (not the requests that
/// follow them, `DELETE /api/v1/...`), with the pods' names.
fn hops(events: &[Value], verb: &str) -> Vec<(u64, String)> {
    let request = format!("{verb} /");
    events
        .iter()
        .filter(|e| {
            e["from"] == "controller/statefulset"
                && e["verb"] == verb
                && e["kind"] == "Pod"
                && !e["detail"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with(&request)
        })
        .map(|e| {
            (
                e["seq"].as_u64().unwrap(),
                e["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The sequence number of the first kubelet status write that reports `pod` Running and ready.
fn ready_at(events: &[Value], pod: &str) -> u64 {
    events
        .iter()
        .find(|e| {
            e["verb"] == "STATUS"
                && e["name"] == pod
                && e["detail"].as_str().unwrap_or_default() == "Running, 1/1 ready"
        })
        .and_then(|e| e["seq"].as_u64())
        .unwrap_or_else(|| panic!("{pod} never reported ready"))
}

#[test]
fn ordered_pods_come_up_one_by_one_with_stable_names_and_dns_and_go_in_reverse() {
    let c = Cluster::with_nodes(2);
    c.apply(SERVICE);
    c.apply(&statefulset(3, ""));
    let done = c.ok(&["rollout", "status", "sts/web", "--timeout=60s"]);
    assert!(
        done.ends_with("partitioned roll out complete: 3 new pods have been updated...\n"),
        "{done}"
    );

    // web-1 was created only after web-0 was ready, web-2 after web-1.
    let events = flow(&c);
    let created = hops(&events, "CREATE");
    let names: Vec<&str> = created.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names, ["web-0", "web-1", "web-2"], "{created:?}");
    assert!(ready_at(&events, "web-0") < created[1].0);
    assert!(ready_at(&events, "web-1") < created[2].0);

    // `kubectl get sts`, plain and wide.
    let table = rows(&c.ok(&["get", "sts"]));
    assert_eq!(table[0], ["NAME", "READY", "AGE"]);
    assert_eq!(table[1][..2], ["web", "3/3"]);
    let wide = rows(&c.ok(&["get", "sts", "-o", "wide"]));
    assert_eq!(wide[0], ["NAME", "READY", "AGE", "CONTAINERS", "IMAGES"]);
    assert_eq!(wide[1][3..], ["web", "orrery/hello:1"]);

    // Each pod: its identity labels, hostname and subdomain, and its own claim.
    let status: Value =
        serde_json::from_str(&c.ok(&["get", "sts", "web", "-o", "jsonpath={.status}"])).unwrap();
    let revision = status["updateRevision"].as_str().unwrap().to_owned();
    assert!(revision.starts_with("web-"), "{status}");
    assert_eq!(status["currentRevision"], revision.as_str());
    for (key, want) in [
        ("replicas", 3),
        ("readyReplicas", 3),
        ("availableReplicas", 3),
        ("currentReplicas", 3),
        ("updatedReplicas", 3),
        ("observedGeneration", 1),
        ("collisionCount", 0),
    ] {
        assert_eq!(status[key], want, "{key} in {status}");
    }
    for i in 0..3 {
        let name = format!("web-{i}");
        let pod: Value = serde_json::from_str(&c.ok(&["get", "pod", &name, "-o", "json"])).unwrap();
        let labels = &pod["metadata"]["labels"];
        assert_eq!(labels["statefulset.kubernetes.io/pod-name"], name.as_str());
        assert_eq!(labels["apps.kubernetes.io/pod-index"], i.to_string());
        assert_eq!(labels["controller-revision-hash"], revision.as_str());
        assert_eq!(pod["metadata"]["generateName"], "web-");
        assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "StatefulSet");
        assert_eq!(pod["spec"]["hostname"], name.as_str());
        assert_eq!(pod["spec"]["subdomain"], "web");
        // No claim templates: only the service account's token volume.
        let volumes = pod["spec"]["volumes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            volumes.iter().all(|v| v["projected"].is_object()),
            "no claim templates: {pod}"
        );
    }
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.kind=StatefulSet",
    ]);
    assert!(
        events.contains("create Pod web-0 in StatefulSet web successful"),
        "{events}"
    );

    // The headless Service gives each pod its name: `web-0.web.default.svc.cluster.local`.
    let port = c.eventually(
        &[
            "get",
            "endpointslices",
            "-n",
            "kube-system",
            "-l",
            "kubernetes.io/service-name=kube-dns",
            "-o",
            "jsonpath={.items[0].ports[?(@.name==\"dns\")].port}",
        ],
        20,
        |out| !out.is_empty(),
    );
    let ip = c.ok(&["get", "pod", "web-0", "-o", "jsonpath={.status.podIP}"]);
    let answer = wait_for("web-0.web in the cluster DNS", || {
        let out = Command::new("dig")
            .args(["@127.0.0.1", "-p", &port, "+short"])
            .arg("web-0.web.default.svc.cluster.local")
            .output()
            .expect("dig (Debian package bind9-dnsutils)");
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        (!text.is_empty()).then_some(text)
    });
    assert_eq!(answer, ip);

    // Scale down: web-2 goes first, and web-1 only once web-2 is gone.
    c.ok(&["scale", "sts", "web", "--replicas=1"]);
    wait_for("one pod left", || (pods(&c).len() == 1).then_some(()));
    c.ok(&["rollout", "status", "sts/web", "--timeout=60s"]);
    let events = flow(&c);
    let deleted = hops(&events, "DELETE");
    let names: Vec<&str> = deleted.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names, ["web-2", "web-1"], "{deleted:?}");
    let web2_gone = events
        .iter()
        .filter(|e| e["verb"] == "DELETE" && e["name"] == "web-2" && e["kind"] == "Pod")
        .filter(|e| e["from"] != "controller/statefulset")
        .map(|e| e["seq"].as_u64().unwrap())
        .max()
        .expect("web-2 removed from the store");
    assert!(
        web2_gone < deleted[1].0,
        "web-1 deleted before web-2 was gone"
    );
}

#[test]
fn rolling_update_honours_the_partition_and_rollout_history_and_undo_work() {
    let c = Cluster::with_nodes(2);
    c.apply(SERVICE);
    c.apply(&statefulset(
        3,
        "  updateStrategy:\n    type: RollingUpdate\n    rollingUpdate: {partition: 2}\n",
    ));
    c.ok(&["rollout", "status", "sts/web", "--timeout=60s"]);
    let first = c.ok(&[
        "get",
        "sts",
        "web",
        "-o",
        "jsonpath={.status.updateRevision}",
    ]);

    // Only ordinals at or above the partition take the new image.
    c.ok(&["set", "image", "sts/web", "web=orrery/hello:2"]);
    let status = c.ok(&["rollout", "status", "sts/web", "--timeout=60s"]);
    assert!(
        status.ends_with("partitioned roll out complete: 1 new pods have been updated...\n"),
        "{status}"
    );
    let second = c.ok(&[
        "get",
        "sts",
        "web",
        "-o",
        "jsonpath={.status.updateRevision}",
    ]);
    assert_ne!(first, second);
    wait_for("web-2 on the new image", || {
        (images(&c) == ["orrery/hello:1", "orrery/hello:1", "orrery/hello:2"]).then_some(())
    });
    let revisions = pods(&c);
    assert!(
        revisions[0].ends_with(&first) && revisions[2].ends_with(&second),
        "{revisions:?}"
    );
    assert_eq!(
        c.ok(&[
            "get",
            "sts",
            "web",
            "-o",
            "jsonpath={.status.currentReplicas} {.status.updatedReplicas} {.status.currentRevision}"
        ]),
        format!("2 1 {first}")
    );

    // The partition down to 0: the rest follow, highest first.
    c.ok(&[
        "patch",
        "sts",
        "web",
        "-p",
        r#"{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}"#,
    ]);
    let status = c.ok(&["rollout", "status", "sts/web", "--timeout=60s"]);
    assert!(
        status.ends_with("partitioned roll out complete: 3 new pods have been updated...\n"),
        "{status}"
    );
    wait_for("every pod on the new image", || {
        (images(&c) == ["orrery/hello:2"; 3]).then_some(())
    });
    let updates: Vec<String> = hops(&flow(&c), "DELETE")
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    assert_eq!(updates, ["web-2", "web-1", "web-0"]);
    assert_eq!(
        c.ok(&[
            "get",
            "sts",
            "web",
            "-o",
            "jsonpath={.status.currentRevision}"
        ]),
        second,
        "a finished rolling update makes the update revision current"
    );

    // History: two revisions owned by the set; the first shows the first image.
    let history = c.ok(&["rollout", "history", "sts/web"]);
    assert_eq!(
        history_rows(&history),
        [
            vec!["REVISION", "CHANGE-CAUSE"],
            vec!["1", "<none>"],
            vec!["2", "<none>"]
        ],
        "{history}"
    );
    let one = c.ok(&["rollout", "history", "sts/web", "--revision=1"]);
    assert!(one.contains("Image:\torrery/hello:1"), "{one}");
    let table = rows(&c.ok(&["get", "controllerrevisions"]));
    assert_eq!(table[0], ["NAME", "CONTROLLER", "REVISION", "AGE"]);
    assert!(
        table
            .iter()
            .any(|r| r[0] == first && r[1] == "statefulset.apps/web" && r[2] == "1")
    );

    // Undo: back to the first template, which becomes revision 3.
    assert_eq!(
        c.ok(&["rollout", "undo", "sts/web"]),
        "statefulset.apps/web rolled back\n"
    );
    c.ok(&["rollout", "status", "sts/web", "--timeout=60s"]);
    wait_for("every pod back on the first image", || {
        (images(&c) == ["orrery/hello:1"; 3]).then_some(())
    });
    assert_eq!(
        c.ok(&[
            "get",
            "sts",
            "web",
            "-o",
            "jsonpath={.status.updateRevision}"
        ]),
        first,
        "the first revision is reused, not copied"
    );
    let history = c.ok(&["rollout", "history", "sts/web"]);
    assert_eq!(
        history_rows(&history)[1..],
        [vec!["2", "<none>"], vec!["3", "<none>"]],
        "{history}"
    );
    // kubectl compares the revision's bytes with the set's template: they are Go's.
    assert_eq!(
        c.ok(&["rollout", "undo", "sts/web", "--to-revision=3"]),
        "statefulset.apps/web skipped rollback (current template already matches revision 3)\n"
    );
}

#[test]
fn parallel_creates_every_pod_and_claim_at_once_on_delete_waits_and_scaled_claims_go() {
    let c = Cluster::with_nodes(2);
    c.apply(SERVICE);
    // Pods that never become ready: Parallel creates them all the same.
    let extra = format!(
        "  podManagementPolicy: Parallel\n  updateStrategy: {{type: OnDelete}}\n  persistentVolumeClaimRetentionPolicy: {{whenScaled: Delete}}\n{CLAIMS}"
    );
    let never_ready = statefulset(3, &extra).replace(
        "        ports:",
        "        readinessProbe: {tcpSocket: {port: 9999}, periodSeconds: 1}\n        volumeMounts: [{name: www, mountPath: /data}]\n        ports:",
    );
    c.apply(&never_ready);
    wait_for("three pods without waiting for readiness", || {
        (pods(&c).len() == 3).then_some(())
    });
    assert_eq!(
        c.ok(&[
            "get",
            "sts",
            "web",
            "-o",
            "jsonpath={.status.readyReplicas}"
        ]),
        ""
    );
    // One claim per pod, named after template, set and ordinal, made before the pod.
    for i in 0..3 {
        let claim = format!("www-web-{i}");
        let pod: Value =
            serde_json::from_str(&c.ok(&["get", "pod", &format!("web-{i}"), "-o", "json"]))
                .unwrap();
        assert_eq!(
            pod["spec"]["volumes"][0],
            serde_json::json!({"name": "www", "persistentVolumeClaim": {"claimName": claim}})
        );
        let pvc: Value =
            serde_json::from_str(&c.ok(&["get", "pvc", &claim, "-o", "json"])).unwrap();
        assert_eq!(
            pvc["metadata"]["labels"],
            serde_json::json!({"app": "web", "tier": "data"})
        );
        assert_eq!(pvc["spec"]["resources"]["requests"]["storage"], "1Gi");
        assert!(
            pvc["metadata"]["ownerReferences"].is_null(),
            "in range: {pvc}"
        );
    }
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.kind=StatefulSet",
    ]);
    assert!(
        events.contains("create Claim www-web-1 Pod web-1 in StatefulSet web success"),
        "{events}"
    );
    let refused = c.fails(&["rollout", "status", "sts/web"], None);
    assert!(
        refused.contains("rollout status is only available for RollingUpdate strategy type"),
        "{refused}"
    );

    // OnDelete: a new template changes no pod until one is deleted.
    c.ok(&["set", "image", "sts/web", "web=orrery/hello:2"]);
    wait_for("the new revision recorded", || {
        let s = c.ok(&[
            "get",
            "sts",
            "web",
            "-o",
            "jsonpath={.status.observedGeneration} {.status.updatedReplicas}",
        ]);
        (s == "2 ").then_some(())
    });
    assert_eq!(images(&c), ["orrery/hello:1"; 3]);
    c.ok(&["delete", "pod", "web-1", "--wait=false"]);
    wait_for("web-1 back on the new image", || {
        (images(&c) == ["orrery/hello:1", "orrery/hello:2", "orrery/hello:1"]).then_some(())
    });

    // whenScaled: Delete: a scaled-away pod owns its claim, which goes with it.
    c.ok(&["scale", "sts", "web", "--replicas=1"]);
    wait_for("the claims of web-1 and web-2 gone", || {
        (c.ok(&["get", "pvc", "-o", "name"]) == "persistentvolumeclaim/www-web-0\n").then_some(())
    });
    assert_eq!(pods(&c).len(), 1);
}

#[test]
fn a_pod_that_lost_its_identity_label_gets_it_back_whole() {
    let c = Cluster::with_nodes(1);
    c.apply(SERVICE);
    let with_env = statefulset(1, CLAIMS).replace(
        "        ports:",
        "        env: [{name: GREETING, value: hi}]\n        volumeMounts: [{name: www, mountPath: /data}]\n        ports:",
    );
    c.apply(&with_env);
    wait_for("web-0", || (pods(&c).len() == 1).then_some(()));
    c.ok(&[
        "label",
        "pod",
        "web-0",
        "statefulset.kubernetes.io/pod-name-",
    ]);
    // The controller manager caches pods slimmed (no env, no other volumes): the repair goes
    // onto the pod as the API server has it, so nothing else of it is lost.
    let pod: Value = wait_for("the identity label back", || {
        let pod: Value =
            serde_json::from_str(&c.ok(&["get", "pod", "web-0", "-o", "json"])).unwrap();
        (pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] == "web-0").then_some(pod)
    });
    assert_eq!(
        pod["spec"]["containers"][0]["env"],
        serde_json::json!([{"name": "GREETING", "value": "hi"}])
    );
    assert_eq!(
        pod["spec"]["containers"][0]["volumeMounts"][0]["name"],
        "www"
    );
    assert_eq!(pod["spec"]["containers"][0]["image"], "orrery/hello:1");
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "reason=SuccessfulUpdate",
    ]);
    assert!(
        events.contains("update Pod web-0 in StatefulSet web successful"),
        "{events}"
    );
}
