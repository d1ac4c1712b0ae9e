//! Leader election end to end: `orrery up --schedulers 2 --controller-managers 2` on the
//! simulated runtime with short leases (4 s, renew deadline 3 s, retry 1 s), seen as a user sees
//! it: `kubectl get lease -n kube-system`, the Events, `/orrery/v1/components` and the flow.
//! Only the leaders act; ending them hands their Leases over to the standbys, which then act:
//! a stopped kube-scheduler gives its Lease up (the standby takes it at its next try), a killed
//! kube-controller-manager leaves its Lease to expire; the old leaders, started again, stay
//! standby; `orrery down` gives the Leases up.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{Cluster, rows};

/// The flags: two replicas each, short leases.
const FLAGS: [&str; 10] = [
    "--schedulers",
    "2",
    "--controller-managers",
    "2",
    "--leader-elect-lease-duration",
    "4s",
    "--leader-elect-renew-deadline",
    "3s",
    "--leader-elect-retry-period",
    "1s",
];

/// How long a handover may take after the leader dies: the standby saw the leader's last
/// renewal (at most a retry period before the kill) at its next try, takes over a lease
/// duration after that, at its first try since; each try comes at most 2.2 retry periods after
/// the last (upstream's jitter). With three seconds for the kill and kubectl on a loaded
/// machine.
const HANDOVER: Duration = Duration::from_millis(4000 + 2 * 2200 + 3000);

/// How long a handover may take after the leader stops cleanly and gives its Lease up: the
/// standby's next try (at most 2.2 retry periods), with the same three seconds.
const RELEASED_HANDOVER: Duration = Duration::from_millis(2200 + 3000);

/// The replica an identity (`orrery-control-plane_scheduler-2`) names.
fn replica(identity: &str) -> &str {
    identity.rsplit_once('_').map_or(identity, |(_, r)| r)
}

fn holder(c: &Cluster, lease: &str) -> String {
    c.ok(&[
        "get",
        "lease",
        "-n",
        "kube-system",
        lease,
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ])
}

/// The other replica of two.
fn other(name: &str) -> String {
    match name.rsplit_once('-') {
        Some((base, "1")) => format!("{base}-2"),
        Some((base, _)) => format!("{base}-1"),
        None => panic!("{name} is not a replica"),
    }
}

fn flow(c: &Cluster) -> Vec<Value> {
    c.ok(&["get", "--raw", "/orrery/v1/flow?since=0&follow=false"])
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn field<'a>(hop: &'a Value, name: &str) -> &'a str {
    hop[name].as_str().unwrap_or_default()
}

fn components(c: &Cluster) -> Vec<Value> {
    let text = c.ok(&["get", "--raw", "/orrery/v1/components"]);
    let all: Value = serde_json::from_str(&text).unwrap();
    all["components"].as_array().cloned().unwrap_or_default()
}

fn component(c: &Cluster, name: &str) -> Value {
    components(c)
        .into_iter()
        .find(|x| x["name"] == name)
        .unwrap_or_else(|| panic!("no component {name}"))
}

/// Creates a Deployment of `replicas` pods and waits until they are all available.
fn deploy(c: &Cluster, name: &str, replicas: u32) {
    c.ok(&[
        "create",
        "deployment",
        name,
        "--image=nginx",
        &format!("--replicas={replicas}"),
    ]);
    c.eventually(
        &[
            "rollout",
            "status",
            &format!("deployment/{name}"),
            "--timeout=1s",
        ],
        40,
        |_| true,
    );
}

#[test]
fn only_the_leader_acts_and_the_standby_takes_over_when_it_stops() {
    let c = Cluster::with_nodes_and(1, &FLAGS);
    // Both Leases are held, each by one replica; kubectl shows the holder.
    let table = c.eventually(&["get", "lease", "-n", "kube-system"], 30, |t| {
        let rows = rows(t);
        ["kube-scheduler", "kube-controller-manager"]
            .iter()
            .all(|lease| rows.iter().any(|r| r[0] == *lease && r.len() == 3))
    });
    assert_eq!(rows(&table)[0], ["NAME", "HOLDER", "AGE"], "{table}");
    let scheduler = replica(&holder(&c, "kube-scheduler")).to_owned();
    let manager = replica(&holder(&c, "kube-controller-manager")).to_owned();
    assert!(scheduler.starts_with("scheduler-"), "{scheduler}");
    assert!(manager.starts_with("controller-manager-"), "{manager}");
    let (standby_scheduler, standby_manager) = (other(&scheduler), other(&manager));
    assert_eq!(
        holder(&c, "kube-scheduler"),
        format!("orrery-control-plane_{scheduler}")
    );
    // The components say which Lease each replica competes for and whether it leads.
    for (name, lease, leads) in [
        (&scheduler, "kube-system/kube-scheduler", true),
        (&standby_scheduler, "kube-system/kube-scheduler", false),
        (&manager, "kube-system/kube-controller-manager", true),
        (
            &standby_manager,
            "kube-system/kube-controller-manager",
            false,
        ),
    ] {
        let shown = component(&c, name);
        assert_eq!(shown["lease"], lease, "{shown}");
        assert_eq!(shown["leading"], leads, "{shown}");
        assert_eq!(shown["running"], true, "{shown}");
    }
    assert!(component(&c, "apiserver").get("leading").is_none());
    // One static pod per replica on the control-plane node.
    c.eventually(
        &[
            "get",
            "pods",
            "-n",
            "kube-system",
            "-l",
            "component=kube-scheduler",
            "-o",
            "name",
        ],
        20,
        |t| {
            t == "pod/kube-scheduler-1-orrery-control-plane\npod/kube-scheduler-2-orrery-control-plane\n"
        },
    );

    // Only the leaders act: the leader schedules every pod, the standbys only look at their
    // Leases (no informers, no scheduling).
    deploy(&c, "before", 3);
    let hops = flow(&c);
    let binds: Vec<&str> = hops
        .iter()
        .filter(|h| field(h, "verb") == "BIND" && field(h, "name").starts_with("before-"))
        .map(|h| field(h, "from"))
        .collect();
    assert_eq!(binds, [scheduler.as_str(); 3]);
    for standby in [&standby_scheduler, &standby_manager] {
        let acted: Vec<String> = hops
            .iter()
            .filter(|h| field(h, "from") == standby.as_str() && field(h, "kind") != "Lease")
            .map(|h| {
                format!(
                    "{} {} {}",
                    field(h, "verb"),
                    field(h, "kind"),
                    field(h, "name")
                )
            })
            .collect();
        assert!(acted.is_empty(), "{standby} acted: {acted:?}");
        assert!(
            hops.iter()
                .any(|h| field(h, "from") == standby.as_str() && field(h, "verb") == "STANDBY"),
            "{standby} said it stands by"
        );
    }
    let leader_hop = hops
        .iter()
        .find(|h| field(h, "verb") == "LEADER" && field(h, "from") == scheduler)
        .expect("the leader's LEADER hop");
    assert_eq!(field(leader_hop, "kind"), "Lease");
    assert_eq!(field(leader_hop, "name"), "kube-scheduler");
    // The leading controller manager's informers watch as it.
    assert!(
        hops.iter()
            .any(|h| field(h, "from") == manager && field(h, "verb") == "WATCH"),
        "the leading controller manager's informers"
    );

    // The scheduler is stopped cleanly: it gives its Lease up on its way out (upstream's
    // kube-scheduler runs with ReleaseOnCancel), so the standby need not wait for it to expire.
    let lease_holder = |lease: &str| {
        [
            "get",
            "lease",
            "-n",
            "kube-system",
            lease,
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ]
        .map(str::to_owned)
    };
    let stopped = Instant::now();
    let said = c.orrery_ok(&["component", "stop", &scheduler]);
    assert_eq!(
        said.trim(),
        format!("orrery: component {scheduler} stopped")
    );
    let args = lease_holder("kube-scheduler");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    c.eventually(&args, RELEASED_HANDOVER.as_secs() + 1, |h| {
        replica(h) == standby_scheduler
    });
    let handed_over = stopped.elapsed();
    assert!(
        handed_over <= RELEASED_HANDOVER,
        "handover took {handed_over:?}"
    );
    // The controller manager is killed, as a process dies: nothing is given back, and the
    // standby takes the Lease once it has seen no renewal for a lease duration.
    let killed = Instant::now();
    let said = c.orrery_ok(&["component", "kill", &manager]);
    assert_eq!(said.trim(), format!("orrery: component {manager} killed"));
    let args = lease_holder("kube-controller-manager");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(
        replica(&c.ok(&args)),
        manager,
        "a killed leader keeps its Lease"
    );
    c.eventually(&args, HANDOVER.as_secs() + 1, |h| {
        replica(h) == standby_manager
    });
    let handed_over = killed.elapsed();
    assert!(handed_over <= HANDOVER, "handover took {handed_over:?}");
    assert!(
        handed_over >= Duration::from_secs(2),
        "a killed leader's Lease is taken only once it expires: {handed_over:?}"
    );
    for lease in ["kube-scheduler", "kube-controller-manager"] {
        let transitions = c.ok(&[
            "get",
            "lease",
            "-n",
            "kube-system",
            lease,
            "-o",
            "jsonpath={.spec.leaseTransitions}",
        ]);
        assert_eq!(transitions, "1", "{lease}");
    }
    assert_eq!(component(&c, &scheduler)["leading"], false);
    assert_eq!(component(&c, &standby_scheduler)["leading"], true);

    // The new leaders act: a new Deployment's pods are created and scheduled, by them.
    deploy(&c, "after", 2);
    let hops = flow(&c);
    let binds: Vec<&str> = hops
        .iter()
        .filter(|h| field(h, "verb") == "BIND" && field(h, "name").starts_with("after-"))
        .map(|h| field(h, "from"))
        .collect();
    assert_eq!(binds, [standby_scheduler.as_str(); 2]);
    let resigned = hops
        .iter()
        .find(|h| field(h, "verb") == "RESIGN" && field(h, "from") == scheduler)
        .expect("the stopped scheduler's RESIGN hop");
    assert!(
        field(resigned, "detail").contains("as it was stopped (ReleaseOnCancel)"),
        "{resigned}"
    );
    assert!(
        !hops
            .iter()
            .any(|h| field(h, "verb") == "RESIGN" && field(h, "from") == manager),
        "a killed controller manager gives nothing up"
    );
    let took_over = hops
        .iter()
        .find(|h| field(h, "verb") == "LEADER" && field(h, "from") == standby_scheduler)
        .expect("the new leader's LEADER hop");
    assert_eq!(
        field(took_over, "detail"),
        format!(
            "{standby_scheduler} became leader of kube-system/kube-scheduler, which no one held"
        )
    );
    let took_over = hops
        .iter()
        .find(|h| field(h, "verb") == "LEADER" && field(h, "from") == standby_manager)
        .expect("the new controller manager's LEADER hop");
    assert_eq!(
        field(took_over, "detail"),
        format!(
            "{standby_manager} became leader of kube-system/kube-controller-manager after {manager}'s lease expired (no renewal seen for 4s)"
        )
    );
    // The Events on the Leases, as upstream's recorder writes them.
    let events = c.ok(&[
        "get",
        "events",
        "-n",
        "kube-system",
        "--field-selector",
        "reason=LeaderElection",
        "-o",
        "jsonpath={range .items[*]}{.involvedObject.kind}/{.involvedObject.name} {.source.component}: {.message}{\"\\n\"}{end}",
    ]);
    for line in [
        format!(
            "Lease/kube-scheduler default-scheduler: orrery-control-plane_{standby_scheduler} became leader"
        ),
        format!(
            "Lease/kube-controller-manager kube-controller-manager: orrery-control-plane_{standby_manager} became leader"
        ),
    ] {
        assert!(events.lines().any(|l| l == line), "{line} in\n{events}");
    }

    // The old leaders come back, and stay standby: the Leases are renewed by the new ones.
    c.orrery_ok(&["component", "start", &scheduler]);
    c.orrery_ok(&["component", "start", &manager]);
    c.eventually(
        &["get", "--raw", "/orrery/v1/flow?since=0&follow=false"],
        10,
        |t| {
            t.lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|h| field(h, "verb") == "STANDBY" && field(h, "from") == scheduler)
                .count()
                == 1
        },
    );
    let watch_until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < watch_until {
        assert_eq!(
            replica(&holder(&c, "kube-scheduler")),
            standby_scheduler,
            "the new leader keeps its Lease"
        );
        assert_eq!(
            replica(&holder(&c, "kube-controller-manager")),
            standby_manager
        );
        assert_eq!(component(&c, &scheduler)["leading"], false);
    }
    let running = component(&c, &scheduler);
    assert_eq!(running["running"], true, "{running}");

    // A clean `orrery down` gives the Leases up (no holder, a second's duration), so the next
    // `orrery up` takes them at once.
    let dir = c.down();
    let stored = std::process::Command::new(env!("CARGO_BIN_EXE_orrery"))
        .arg("--state-dir")
        .arg(dir.path())
        .args([
            "store",
            "get",
            "/registry/leases/kube-system/kube-scheduler",
        ])
        .output()
        .unwrap();
    assert!(stored.status.success(), "{stored:?}");
    let lease: Value = serde_json::from_slice(&stored.stdout).unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "", "{lease}");
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 1, "{lease}");
}

#[test]
fn leader_election_timings_are_checked_as_upstream_checks_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_orrery"))
        .arg("--state-dir")
        .arg(dir.path())
        .args(["up", "--headless", "--nodes", "0", "--no-kubeconfig-merge"])
        .args(["--leader-elect-lease-duration", "10s"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "leaderElection.leaseDuration: Invalid value: 10s: must be greater than `RenewDeadline`"
        ),
        "{stderr}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_orrery"))
        .arg("--state-dir")
        .arg(dir.path())
        .args(["up", "--headless", "--nodes", "0", "--no-kubeconfig-merge"])
        .args(["--leader-elect-retry-period", "ten"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("time: invalid duration \"ten\""),
        "{stderr}"
    );
}
