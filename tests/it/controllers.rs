//! The workload controllers (Deployment, ReplicaSet, Job) and the garbage collector, end to end
//! through the real kubectl against `orrery up` with virtual nodes on the simulated runtime.

use crate::common;

use std::time::Duration;

use common::{Cluster, rows};

const DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: web, image: orrery/hello:1}]\n";

/// Polls `check` every 100 ms until it holds, for at most `seconds`.
#[allow(clippy::disallowed_methods)] // a plain test thread, not a tokio worker
fn eventually(seconds: u64, what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..seconds * 10 {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what}: not within {seconds} s");
}

fn pod_names(c: &Cluster, selector: &str) -> Vec<String> {
    c.ok(&[
        "get",
        "pods",
        "-l",
        selector,
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ])
    .split_whitespace()
    .map(str::to_owned)
    .collect()
}

#[test]
fn a_job_runs_its_completions_in_parallel() {
    let c = Cluster::with_nodes(2);
    let job = "apiVersion: batch/v1\nkind: Job\nmetadata: {name: count}\nspec:\n  completions: 3\n  parallelism: 2\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: count, image: busybox, command: [sh, -c, sleep 1]}]\n";
    c.ok_with(&["apply", "-f", "-"], Some(job));
    // The API server generated the selector and the template labels from the Job's uid.
    let uid = c.ok(&["get", "job", "count", "-o", "jsonpath={.metadata.uid}"]);
    let selector = c.ok(&[
        "get",
        "job",
        "count",
        "-o",
        "jsonpath={.spec.selector.matchLabels.batch\\.kubernetes\\.io/controller-uid}",
    ]);
    assert_eq!(selector, uid);
    // Never more than two at once.
    eventually(10, "the first pods", || {
        let active = c.ok(&["get", "job", "count", "-o", "jsonpath={.status.active}"]);
        assert!(
            active.is_empty() || active.parse::<i32>().unwrap() <= 2,
            "{active}"
        );
        !pod_names(&c, "job-name=count").is_empty()
    });
    let waited = c.ok(&[
        "wait",
        "--for=condition=complete",
        "job/count",
        "--timeout=25s",
    ]);
    assert_eq!(waited, "job.batch/count condition met\n");
    let table = rows(&c.ok(&["get", "jobs"]));
    assert_eq!(
        table[0],
        ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    );
    assert_eq!(table[1][..3], ["count", "Complete", "3/3"]);
    let conditions = c.ok(&[
        "get",
        "job",
        "count",
        "-o",
        "jsonpath={range .status.conditions[*]}{.type}={.status}/{.reason} {end}",
    ]);
    assert_eq!(
        conditions,
        "SuccessCriteriaMet=True/CompletionsReached Complete=True/CompletionsReached "
    );
    let pods = c.ok(&[
        "get",
        "pods",
        "-l",
        &format!("batch.kubernetes.io/controller-uid={uid}"),
        "-o",
        "jsonpath={range .items[*]}{.status.phase} {.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name} {.metadata.labels.job-name}\n{end}",
    ]);
    assert_eq!(pods, "Succeeded Job/count count\n".repeat(3), "{pods}");
    let described = c.ok(&["describe", "job", "count"]);
    for line in [
        "0 Active (0 Ready) / 3 Succeeded / 0 Failed",
        "SuccessfulCreate",
        "Created pod: count-",
        "Completed",
        "Job completed",
    ] {
        assert!(described.contains(line), "{line} missing in:\n{described}");
    }
    // Deleting the Job (kubectl's default propagation is background) removes its pods.
    assert_eq!(
        c.ok(&["delete", "job", "count"]),
        "job.batch \"count\" deleted\n"
    );
    eventually(20, "the job's pods deleted", || {
        pod_names(&c, "job-name=count").is_empty()
    });
}

#[test]
fn a_failing_job_stops_at_its_backoff_limit() {
    let c = Cluster::with_nodes(2);
    // Three at once, so that the limit is reached without waiting out the back-off
    // (10 s, then 20 s) between replacements.
    let job = "apiVersion: batch/v1\nkind: Job\nmetadata: {name: broken}\nspec:\n  completions: 3\n  parallelism: 3\n  backoffLimit: 2\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: broken, image: busybox, command: [sh, -c, exit 1]}]\n";
    c.ok_with(&["apply", "-f", "-"], Some(job));
    let waited = c.ok(&[
        "wait",
        "--for=condition=failed",
        "job/broken",
        "--timeout=25s",
    ]);
    assert_eq!(waited, "job.batch/broken condition met\n");
    let conditions = c.ok(&[
        "get",
        "job",
        "broken",
        "-o",
        "jsonpath={range .status.conditions[*]}{.type}/{.reason}/{.message};{end}",
    ]);
    assert_eq!(
        conditions,
        "FailureTarget/BackoffLimitExceeded/Job has reached the specified backoff limit;\
         Failed/BackoffLimitExceeded/Job has reached the specified backoff limit;"
    );
    let table = rows(&c.ok(&["get", "job", "broken"]));
    assert_eq!(table[1][..3], ["broken", "Failed", "0/3"]);
    assert_eq!(
        c.ok(&["get", "job", "broken", "-o", "jsonpath={.status.failed}"]),
        "3"
    );
    let phases = c.ok(&[
        "get",
        "pods",
        "-l",
        "job-name=broken",
        "-o",
        "jsonpath={.items[*].status.phase}",
    ]);
    assert_eq!(phases, "Failed Failed Failed");
    let described = c.ok(&["describe", "job", "broken"]);
    assert!(
        described.contains("BackoffLimitExceeded"),
        "no BackoffLimitExceeded event:\n{described}"
    );
}

#[test]
fn an_indexed_job_runs_each_index_once() {
    let c = Cluster::with_nodes(2);
    let job = "apiVersion: batch/v1\nkind: Job\nmetadata: {name: shards}\nspec:\n  completions: 3\n  parallelism: 3\n  completionMode: Indexed\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: shard, image: busybox, command: [sh, -c, echo done]}]\n";
    c.ok_with(&["apply", "-f", "-"], Some(job));
    c.ok(&[
        "wait",
        "--for=condition=complete",
        "job/shards",
        "--timeout=25s",
    ]);
    assert_eq!(
        c.ok(&[
            "get",
            "job",
            "shards",
            "-o",
            "jsonpath={.status.completedIndexes} {.status.succeeded}"
        ]),
        "0-2 3"
    );
    let indexes = c.ok(&[
        "get",
        "pods",
        "-l",
        "job-name=shards",
        "-o",
        "jsonpath={range .items[*]}{.metadata.annotations.batch\\.kubernetes\\.io/job-completion-index}:{.spec.hostname}:{.spec.containers[0].env[0].name}\n{end}",
    ]);
    let mut lines: Vec<&str> = indexes.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "0:shards-0:JOB_COMPLETION_INDEX",
            "1:shards-1:JOB_COMPLETION_INDEX",
            "2:shards-2:JOB_COMPLETION_INDEX"
        ]
    );
}

#[test]
fn deleting_a_deployment_collects_its_replicasets_and_pods() {
    let c = Cluster::with_nodes(2);
    c.ok_with(&["apply", "-f", "-"], Some(DEPLOYMENT));
    c.ok(&["rollout", "status", "deploy/web", "--timeout=20s"]);
    assert_eq!(pod_names(&c, "app=web").len(), 2);
    c.ok(&["delete", "deployment", "web"]);
    eventually(20, "the ReplicaSets and pods collected", || {
        c.ok(&["get", "rs", "-o", "name"]).is_empty() && pod_names(&c, "app=web").is_empty()
    });
}

#[test]
fn an_orphaned_replicasets_pods_keep_running() {
    let c = Cluster::with_nodes(2);
    let rs = "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {name: solo}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: solo}}\n  template:\n    metadata: {labels: {app: solo}}\n    spec:\n      containers: [{name: solo, image: orrery/hello:1}]\n";
    c.ok_with(&["apply", "-f", "-"], Some(rs));
    eventually(20, "two ready pods", || {
        c.ok(&[
            "get",
            "rs",
            "solo",
            "-o",
            "jsonpath={.status.readyReplicas}",
        ]) == "2"
    });
    let before = pod_names(&c, "app=solo");
    c.ok(&["delete", "rs", "solo", "--cascade=orphan"]);
    eventually(20, "the ReplicaSet gone", || {
        c.ok(&["get", "rs", "-o", "name"]).is_empty()
    });
    let after = c.ok(&[
        "get",
        "pods",
        "-l",
        "app=solo",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.status.phase} {.metadata.ownerReferences}\n{end}",
    ]);
    let mut names = Vec::new();
    for line in after.lines() {
        let parts: Vec<&str> = line.split(' ').collect();
        assert_eq!(parts[1..], ["Running", ""], "{after}");
        names.push(parts[0].to_owned());
    }
    assert_eq!(names, before);
}

#[test]
fn a_foreground_delete_waits_for_the_dependents() {
    let c = Cluster::with_nodes(2);
    c.ok_with(&["apply", "-f", "-"], Some(DEPLOYMENT));
    c.ok(&["rollout", "status", "deploy/web", "--timeout=20s"]);
    // kubectl waits for the deletion to finish, which is when the dependents are gone.
    let deleted = c.ok(&[
        "delete",
        "deployment",
        "web",
        "--cascade=foreground",
        "--wait=true",
        "--timeout=25s",
    ]);
    assert_eq!(deleted, "deployment.apps \"web\" deleted\n");
    assert!(pod_names(&c, "app=web").is_empty());
    assert!(c.ok(&["get", "rs", "-o", "name"]).is_empty());
    assert!(
        c.fails(&["get", "deploy", "web"], None)
            .contains("NotFound")
    );
}

const ROLLING: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: roll}\nspec:\n  replicas: 4\n  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}\n  selector: {matchLabels: {app: roll}}\n  template:\n    metadata: {labels: {app: roll}}\n    spec:\n      containers: [{name: app, image: orrery/hello:1}]\n";

/// Pods of `selector` that are not being deleted.
fn live_pods(c: &Cluster, selector: &str) -> usize {
    c.ok(&[
        "get",
        "pods",
        "-l",
        selector,
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}={.metadata.deletionTimestamp}{\"\\n\"}{end}",
    ])
    .lines()
    .filter(|l| l.ends_with('='))
    .count()
}

#[test]
fn deployments_scale_roll_within_their_limits_pause_and_resume() {
    let c = Cluster::with_nodes(3);
    c.ok_with(&["apply", "-f", "-"], Some(ROLLING));
    c.ok(&["rollout", "status", "deploy/roll", "--timeout=60s"]);
    // Scale to 20 and back.
    c.ok(&["scale", "deploy/roll", "--replicas=20"]);
    c.ok(&["rollout", "status", "deploy/roll", "--timeout=60s"]);
    eventually(30, "20 pods", || live_pods(&c, "app=roll") == 20);
    c.ok(&["scale", "deploy/roll", "--replicas=4"]);
    c.ok(&["rollout", "status", "deploy/roll", "--timeout=60s"]);
    eventually(30, "back to 4 pods", || live_pods(&c, "app=roll") == 4);

    // A new image rolls one pod at a time: never more than 4 + maxSurge 1 pods asked for, never
    // fewer than 4 - maxUnavailable 0, as the controller's own ScalingReplicaSet events show.
    c.ok(&["set", "image", "deploy/roll", "app=orrery/hello:2"]);
    c.ok(&["rollout", "status", "deploy/roll", "--timeout=60s"]);
    let events: serde_json::Value = serde_json::from_str(&c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=roll,reason=ScalingReplicaSet",
        "-o",
        "json",
    ]))
    .unwrap();
    let mut scaled: Vec<(u64, String)> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap(),
                e["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    scaled.sort();
    let mut sizes: std::collections::BTreeMap<String, i64> = Default::default();
    let mut first_rs = None;
    let mut rolling_steps = 0;
    for (_, message) in &scaled {
        // "Scaled up replica set roll-abc from 0 to 4"
        let words: Vec<&str> = message.split_whitespace().collect();
        let (rs, to) = (words[4].to_owned(), words[8].parse::<i64>().unwrap());
        let first = first_rs.get_or_insert_with(|| rs.clone()).clone();
        sizes.insert(rs.clone(), to);
        if rs != first || sizes.len() > 1 {
            rolling_steps += 1;
            let total: i64 = sizes.values().sum();
            assert!(
                (4..=5).contains(&total),
                "{total} pods asked for after {message:?}: {scaled:?}"
            );
        }
    }
    assert!(rolling_steps >= 8, "one pod at a time: {scaled:?}");
    assert_eq!(sizes.values().filter(|n| **n > 0).count(), 1, "{sizes:?}");

    // Paused: a template change makes no new ReplicaSet until resumed.
    c.ok(&["rollout", "pause", "deploy/roll"]);
    c.ok(&["set", "image", "deploy/roll", "app=orrery/hello:3"]);
    #[allow(clippy::disallowed_methods)] // a plain test thread, not a tokio worker
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(rows(&c.ok(&["get", "rs", "--no-headers"])).len(), 2);
    assert_eq!(
        c.ok(&[
            "get",
            "deploy",
            "roll",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Progressing\")].reason}"
        ]),
        "DeploymentPaused"
    );
    c.ok(&["rollout", "resume", "deploy/roll"]);
    c.ok(&["rollout", "status", "deploy/roll", "--timeout=60s"]);
    assert_eq!(rows(&c.ok(&["get", "rs", "--no-headers"])).len(), 3);
    c.ok(&["rollout", "undo", "deploy/roll"]);
    c.ok(&["rollout", "status", "deploy/roll", "--timeout=60s"]);
    assert_eq!(
        c.ok(&[
            "get",
            "deploy",
            "roll",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}"
        ]),
        "orrery/hello:2"
    );
    // `rollout restart` rolls the pods again under a new ReplicaSet.
    c.ok(&["rollout", "restart", "deploy/roll"]);
    c.ok(&["rollout", "status", "deploy/roll", "--timeout=60s"]);
    assert_eq!(rows(&c.ok(&["get", "rs", "--no-headers"])).len(), 4);
}

#[test]
fn a_replicaset_releases_a_pod_whose_labels_no_longer_match() {
    let c = Cluster::with_nodes(1);
    c.ok_with(&["apply", "-f", "-"], Some(DEPLOYMENT));
    c.ok(&["rollout", "status", "deploy/web", "--timeout=60s"]);
    let names = pod_names(&c, "app=web");
    let pod = &names[0];
    c.ok(&["label", "pod", pod, "app=debug", "--overwrite"]);
    eventually(20, "released and replaced", || {
        matches!(
            c.ok(&[
                "get",
                "pod",
                pod,
                "-o",
                "jsonpath={.metadata.ownerReferences}"
            ])
            .as_str(),
            "" | "[]"
        ) && pod_names(&c, "app=web").len() == 2
    });
    assert!(!pod_names(&c, "app=web").contains(pod));
}
