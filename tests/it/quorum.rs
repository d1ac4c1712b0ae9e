//! An etcd quorum (`--store etcd-cluster=3`): the API server's writes go on with 2 of 3 members
//! up, fail within a bounded time with etcd's own words (and the reason on the flow) with 1 of
//! 3, and go on by themselves once a member is back; the members are components `orrery
//! component stop|start` kills and starts, and none outlives its cluster, even when `orrery up`
//! is killed.
#![cfg(feature = "etcd")]

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::Cluster;

/// The etcd processes whose command line names `dir` (a cluster's state directory).
fn etcd_processes(dir: &Path) -> Vec<u32> {
    let needle = format!("--data-dir={}", dir.join("etcd").display());
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| {
            let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            // A zombie has no command line: it is no longer running.
            cmdline.contains(&needle).then_some(pid)
        })
        .collect()
}

/// Waits (10 s at most) until no etcd process of `dir` is left.
#[allow(clippy::disallowed_methods)] // a plain test thread, not a tokio worker
fn none_left(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = etcd_processes(dir);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "etcd members of {} still run: {left:?}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[allow(clippy::disallowed_methods)] // a plain test thread, not a tokio worker
fn writes_need_a_majority_of_the_members() {
    assert!(
        orrery::store::etcd::LocalEtcd::available(),
        "this test needs an `etcd` binary (apt-get install etcd-server)"
    );
    let flags = ["--store", "etcd-cluster=3"];
    let cluster = Cluster::with_nodes_and(1, &flags);
    assert_eq!(
        etcd_processes(cluster.dir.path()).len(),
        3,
        "three members run"
    );
    cluster.ok(&["create", "configmap", "before", "--from-literal=a=1"]);
    let status = cluster.orrery_ok(&["store", "status"]);
    assert!(status.contains("quorum: 3 of 3 members up"), "{status}");

    // 2 of 3: a majority, writes go on.
    let stopped = cluster.orrery_ok(&["component", "stop", "etcd-3"]);
    assert_eq!(stopped.trim(), "orrery: component etcd-3 stopped");
    let status = cluster.orrery_ok(&["store", "status"]);
    assert!(status.contains("quorum: 2 of 3 members up"), "{status}");
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("etcd-3") && l.contains(" down ")),
        "{status}"
    );
    cluster.ok(&["create", "configmap", "two-of-three", "--from-literal=a=2"]);

    // 1 of 3: no quorum. A write fails, within a bounded time, in etcd's words: `etcdserver:
    // request timed out` (its request timeout), or `context deadline exceeded` when etcd has
    // no leader to propose to at all; kube-apiserver passes either on as a 500 without reason.
    cluster.orrery_ok(&["component", "stop", "etcd-2"]);
    let started = Instant::now();
    let refused = cluster.fails(
        &["create", "configmap", "one-of-three", "--from-literal=a=3"],
        None,
    );
    let took = started.elapsed();
    // kubectl's `create configmap` says `error: failed to create configmap: <the Status's
    // message>` (`create -f` would say `Error from server: ...`).
    assert!(
        refused.starts_with("error: failed to create configmap: etcdserver: request timed out")
            || refused.starts_with("error: failed to create configmap: context deadline exceeded"),
        "{refused}"
    );
    assert!(took < Duration::from_secs(30), "the write took {took:?}");
    let status = cluster.orrery_ok(&["store", "status"]);
    assert!(status.contains("no quorum: 1 of 3 members up"), "{status}");
    // The store hop says that it failed, and why.
    let flow = cluster.ok(&["get", "--raw", "/orrery/v1/flow?follow=false"]);
    let failed = flow
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|hop| {
            hop["verb"] == "FAILED"
                && hop["to"] == "store"
                && hop["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("no quorum: 1 of 3 members up"))
        });
    assert!(
        failed.is_some(),
        "no FAILED store hop saying why in the flow:\n{}",
        flow.lines()
            .filter(|l| l.contains("FAILED"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // A member back: a majority again, and writes go on by themselves.
    let started = cluster.orrery_ok(&["component", "start", "etcd-2"]);
    assert_eq!(started.trim(), "orrery: component etcd-2 started");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = cluster.kubectl(
            &["create", "configmap", "back", "--from-literal=a=4"],
            None,
            &[],
        );
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "writes did not come back within 30 s: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let names = cluster.ok(&[
        "get",
        "configmaps",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ]);
    for name in ["before", "two-of-three", "back"] {
        assert!(names.split(' ').any(|n| n == name), "{name} in {names}");
    }
    assert_eq!(etcd_processes(cluster.dir.path()).len(), 2);

    // `orrery down` stops every member.
    let dir = cluster.down();
    none_left(dir.path());

    // Started again on the same data (the members join as `existing`), then killed outright:
    // the kernel stops the members with it.
    let again = Cluster::start_in(
        dir,
        &[
            "--no-kubeconfig-merge",
            "--nodes",
            "1",
            "--runtime",
            "sim",
            "--store",
            "etcd-cluster=3",
        ],
    );
    assert_eq!(etcd_processes(again.dir.path()).len(), 3);
    let before = again.ok(&["get", "configmap", "before", "-o", "jsonpath={.data.a}"]);
    assert_eq!(before, "1", "the data outlives the processes");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(again.pid() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    none_left(again.dir.path());
}

#[test]
fn an_even_or_too_large_cluster_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (members, words) in [
        ("2", "2 members tolerate no more failures than 1 do"),
        ("9", "from 1 to 7, not 9"),
        ("x", "needs a number of members"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_orrery"))
            .arg("--state-dir")
            .arg(dir.path())
            .args(["up", "--headless", "--nodes", "0", "--port", "0"])
            .args(["--store", &format!("etcd-cluster={members}")])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(words), "{members}: {stderr}");
    }
}
