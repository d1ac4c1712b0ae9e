//! The sample manifests in `manifests/`: each applies cleanly with the real kubectl and reaches
//! the state its comments promise: on the simulated runtime where it can show it, and on real
//! containers for what only they can show (an exit that restarts, an init container's file, the
//! OOM killer).

use crate::common;

use std::path::PathBuf;

use common::{Cluster, http_get, try_http_get};

fn manifest(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("manifests")
        .join(name)
        .display()
        .to_string()
}

/// The samples that run on their own, each applied once in any order.
const SAMPLES: &[&str] = &[
    "hello-deployment.yaml",
    "hello-service.yaml",
    "job.yaml",
    "crashloop.yaml",
    "unschedulable.yaml",
    "init-container.yaml",
    "oom.yaml",
    "two-tier.yaml",
    "autoscale.yaml",
    "quota.yaml",
    "restricted-team.yaml",
];

/// The website operator's samples, which need each other and an operator running:
/// `tests/it/operator.rs` runs them.
const OPERATOR: &[&str] = &["website-crd.yaml", "website.yaml", "website-operator.yaml"];

#[test]
fn every_manifest_is_commented_with_what_to_watch_and_the_command() {
    let all = [SAMPLES, OPERATOR].concat();
    for name in &all {
        let text = std::fs::read_to_string(manifest(name)).unwrap();
        let header: Vec<&str> = text.lines().take_while(|l| l.starts_with('#')).collect();
        assert!(header.len() >= 5, "{name}: a comment header first");
        let header = header.join("\n");
        assert!(header.contains("What it shows"), "{name}");
        assert!(header.contains("dashboard"), "{name}");
        assert!(
            header.contains(&format!("kubectl apply -f manifests/{name}")),
            "{name}"
        );
    }
    let listed: Vec<String> =
        std::fs::read_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("manifests"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
    assert_eq!(listed.len(), all.len(), "{listed:?}");
}

#[test]
fn the_samples_run_on_the_simulated_runtime() {
    let c = Cluster::with_nodes(2);
    for name in SAMPLES {
        let out = c.ok(&["apply", "-f", &manifest(name)]);
        assert!(out.contains("created"), "{name}: {out}");
    }
    // The autoscaled burn: 150m of a 100m request is 150%, three times the 50% target, at
    // every size, so the HPA climbs to its maximum (default resolution and sync period).
    c.eventually(
        &[
            "get",
            "hpa",
            "burn",
            "-o",
            "jsonpath={.status.desiredReplicas}",
        ],
        150,
        |r| r == "5",
    );
    // Three hello pods run and turn ready: the simulated hello answers their readiness probe.
    c.eventually(
        &[
            "get",
            "pods",
            "-l",
            "app=hello",
            "-o",
            "jsonpath={range .items[*]}{.status.phase}/{.status.conditions[?(@.type==\"Ready\")].status} {end}",
        ],
        60,
        |out| out.split_whitespace().filter(|p| *p == "Running/True").count() == 3,
    );
    c.eventually(
        &[
            "get",
            "deployment",
            "hello",
            "-o",
            "jsonpath={.status.readyReplicas}",
        ],
        30,
        |out| out == "3",
    );
    // The Service lists the three as ready endpoints.
    c.eventually(
        &[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=hello",
            "-o",
            "jsonpath={.items[*].endpoints[?(@.conditions.ready==true)].addresses[0]}",
        ],
        30,
        |out| out.split_whitespace().count() == 3,
    );
    c.eventually(
        &[
            "get",
            "job",
            "countdown",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Complete\")].status}",
        ],
        60,
        |out| out == "True",
    );
    c.eventually(
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=unschedulable",
            "-o",
            "jsonpath={.items[*].reason}",
        ],
        30,
        |out| out.contains("FailedScheduling"),
    );
    let pending = c.ok(&[
        "get",
        "pod",
        "unschedulable",
        "-o",
        "jsonpath={.status.phase}",
    ]);
    assert_eq!(pending, "Pending");
    // The sim exits `/orrery exit 1` at once: restarts, then back-off.
    c.eventually(
        &["get", "pod", "crashloop", "-o", "jsonpath={.status.containerStatuses[0].restartCount} {.status.containerStatuses[0].state.waiting.reason}"],
        60,
        |out| out.ends_with("CrashLoopBackOff") && !out.starts_with('0'),
    );
    c.eventually(
        &[
            "get",
            "pod",
            "init-container",
            "-o",
            "jsonpath={.status.phase} {.status.initContainerStatuses[0].state.terminated.reason}",
        ],
        60,
        |out| out == "Running Completed",
    );
    // The quota: counted by its controller, then a Deployment of three gets two pods, each
    // with the LimitRange's request, and a FailedCreate for the third.
    c.eventually(
        &[
            "-n",
            "quota-demo",
            "get",
            "quota",
            "compute",
            "-o",
            "jsonpath={.status.used.pods}",
        ],
        30,
        |used| used == "0",
    );
    c.ok(&[
        "-n",
        "quota-demo",
        "create",
        "deployment",
        "capped",
        "--image=orrery/hello",
        "--replicas=3",
    ]);
    c.eventually(
        &[
            "-n",
            "quota-demo",
            "get",
            "events",
            "--field-selector",
            "reason=FailedCreate",
            "-o",
            "jsonpath={.items[*].message}",
        ],
        60,
        |out| {
            out.contains(
                "exceeded quota: compute, requested: pods=1, used: pods=2, limited: pods=2",
            )
        },
    );
    let quota = c.ok(&["-n", "quota-demo", "get", "quota", "compute"]);
    assert!(
        quota.contains("pods: 2/2, requests.cpu: 200m/1, requests.memory: 64Mi/256Mi"),
        "{quota}"
    );
}

#[test]
#[allow(clippy::disallowed_methods)] // a plain test thread, not a tokio worker
fn crashloop_init_container_oom_and_hello_on_real_containers() {
    let Some(c) = Cluster::real("manifests", 1, "10.226.0.0/16") else {
        return;
    };
    for name in [
        "crashloop.yaml",
        "init-container.yaml",
        "oom.yaml",
        "hello-deployment.yaml",
        "two-tier.yaml",
    ] {
        c.ok(&["apply", "-f", &manifest(name)]);
    }
    c.eventually(
        &["get", "pod", "crashloop", "-o", "jsonpath={.status.containerStatuses[0].state.waiting.reason} {.status.containerStatuses[0].lastState.terminated.exitCode}"],
        90,
        |out| out == "CrashLoopBackOff 1",
    );
    let logs = c.ok(&["logs", "crashloop", "--previous"]);
    assert!(logs.contains("cannot find my configuration"), "{logs}");
    c.eventually(
        &[
            "get",
            "pod",
            "init-container",
            "-o",
            "jsonpath={.status.phase} {.status.containerStatuses[0].ready}",
        ],
        90,
        |out| out == "Running true",
    );
    // The app serves what the init container wrote, before its greeting (over the pod's IP).
    let ip = c.ok(&[
        "get",
        "pod",
        "init-container",
        "-o",
        "jsonpath={.status.podIP}",
    ]);
    let answer = http_get(&format!("{ip}:8080"));
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    assert!(
        body.starts_with("Prepared by the init container.\nHello from init-container"),
        "{answer}"
    );
    // Real servers answer the readiness probe: the Deployment becomes available.
    c.eventually(
        &[
            "get",
            "deploy",
            "hello",
            "-o",
            "jsonpath={.status.availableReplicas}",
        ],
        90,
        |out| out == "3",
    );
    c.eventually(
        &["get", "pod", "oom", "-o", "jsonpath={.status.containerStatuses[0].lastState.terminated.reason} {.status.containerStatuses[0].lastState.terminated.exitCode}"],
        90,
        |out| out == "OOMKilled 137",
    );
    // The two tiers meet only through a Service name: web asks `http://api/` on every request,
    // and answers on the node port of the node's address.
    c.eventually(
        &[
            "get",
            "deploy",
            "web",
            "api",
            "-o",
            "jsonpath={.items[*].status.availableReplicas}",
        ],
        90,
        |out| out == "2 2",
    );
    let node_ip = c.ok(&[
        "get",
        "node",
        "node-1",
        "-o",
        "jsonpath={.status.addresses[?(@.type==\"InternalIP\")].address}",
    ]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let answer = try_http_get(&format!("{node_ip}:30080")).unwrap_or_else(|e| e);
        if answer.contains("Hello from web-") && answer.contains("-> http://api/: Hello from api-")
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{answer}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn the_restricted_team_sample_admits_only_what_its_rules_allow() {
    let c = Cluster::with_nodes(1);
    c.ok(&["apply", "-f", &manifest("restricted-team.yaml")]);
    c.eventually(
        &[
            "-n",
            "team-a",
            "get",
            "pod",
            "compliant",
            "-o",
            "jsonpath={.status.phase}",
        ],
        60,
        |p| p == "Running",
    );
    let err = c.fails(
        &["-n", "team-a", "run", "root", "--image=orrery/hello"],
        None,
    );
    assert!(
        err.contains("violates PodSecurity \"restricted:latest\""),
        "{err}"
    );
    let ci = "system:serviceaccount:team-a:ci";
    assert_eq!(
        c.ok(&["auth", "can-i", "list", "pods", "-n", "team-a", "--as", ci])
            .trim(),
        "yes"
    );
    let out = c.kubectl(
        &[
            "auth", "can-i", "delete", "pods", "-n", "team-a", "--as", ci,
        ],
        None,
        &[],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no");
}
