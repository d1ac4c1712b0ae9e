//! The `orrery` command as a user runs it: help, version, the store commands and their errors.

use std::path::Path;
use std::process::{Command, Output};

fn orrery(state_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orrery"))
        .arg("--state-dir")
        .arg(state_dir)
        .args(args)
        .output()
        .expect("run orrery")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn help_and_version() {
    let dir = tempfile::tempdir().unwrap();
    assert!(stdout(&orrery(dir.path(), &["--help"])).contains("see-through Kubernetes"));
    assert_eq!(
        stdout(&orrery(dir.path(), &["--version"])),
        format!("orrery {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn store_commands_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert_eq!(
        stdout(&orrery(
            d,
            &["store", "put", "/registry/configmaps/default/a", "one"]
        )),
        "revision 2\n"
    );
    assert_eq!(
        stdout(&orrery(
            d,
            &["store", "put", "/registry/configmaps/default/a", "two"]
        )),
        "revision 3\n"
    );
    assert_eq!(
        stdout(&orrery(
            d,
            &["store", "put", "/registry/configmaps/default/b", "x"]
        )),
        "revision 4\n"
    );
    assert_eq!(
        stdout(&orrery(
            d,
            &[
                "store",
                "get",
                "--revisions",
                "/registry/configmaps/default/a"
            ]
        )),
        "create_revision=2 mod_revision=3\ntwo\n"
    );
    assert_eq!(
        stdout(&orrery(d, &["store", "ls", "/registry/"])),
        "/registry/configmaps/default/a\tmod_revision=3\n/registry/configmaps/default/b\tmod_revision=4\n# 2 keys at revision 4\n"
    );
    assert_eq!(
        stdout(&orrery(
            d,
            &["store", "ls", "/registry/", "--revision", "2", "--values"]
        )),
        "/registry/configmaps/default/a\tmod_revision=2\none\n# 1 keys at revision 2\n"
    );
    assert_eq!(
        stdout(&orrery(
            d,
            &["store", "del", "/registry/configmaps/default/b"]
        )),
        "revision 5\n"
    );
    assert_eq!(
        stdout(&orrery(d, &["store", "status"])),
        "revision 5, 1 keys\n"
    );
    // History survives between commands: replay it, then stop (the watch would go on forever).
    let mut watch = Command::new(env!("CARGO_BIN_EXE_orrery"))
        .arg("--state-dir")
        .arg(d)
        .args(["store", "watch", "/registry/", "--from", "3"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(watch.stdout.take().unwrap()));
    let got: Vec<String> = (0..3).map(|_| lines.next().unwrap().unwrap()).collect();
    watch.kill().unwrap();
    watch.wait().unwrap();
    assert_eq!(
        got,
        [
            "3 PUT /registry/configmaps/default/a two",
            "4 PUT /registry/configmaps/default/b x (created)",
            "5 DELETE /registry/configmaps/default/b",
        ]
    );
    assert_eq!(
        stdout(&orrery(d, &["store", "compact", "4"])),
        "compacted to revision 4\n"
    );
    let old = orrery(d, &["store", "ls", "/registry/", "--revision", "3"]);
    assert!(!old.status.success());
    assert_eq!(
        String::from_utf8_lossy(&old.stderr),
        "orrery: revision 3 has been compacted\n"
    );
}

#[test]
fn bad_input_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = orrery(dir.path(), &["store", "get", "/nope"]);
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&missing.stderr),
        "orrery: key \"/nope\" not found\n"
    );
    let bad_url = orrery(dir.path(), &["--store", "redis://x", "store", "status"]);
    assert_eq!(bad_url.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&bad_url.stderr).contains(
        "expected `embedded`, `etcd=http://HOST:PORT[,http://HOST:PORT...]` or `etcd-cluster=N`"
    ));
    // The built-in images' `burn` takes a CPU quantity, and says what it wants otherwise.
    for bad in ["lots", "-1", "2000"] {
        let out = orrery(dir.path(), &["burn", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad:?} is a usage error");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("is not a CPU quantity"),
            "{bad:?}"
        );
    }
    // A cluster's name becomes part of cgroup paths and interface names: no path tricks.
    for bad in ["../..", "Big", "x-", "a/b", ""] {
        let out = orrery(
            dir.path(),
            &["--name", bad, "up", "--headless", "--nodes", "0"],
        );
        assert_eq!(out.status.code(), Some(2), "{bad:?} is a usage error");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("invalid cluster name"),
            "{bad:?}"
        );
    }
}

/// Not root, `orrery up` refuses real containers with a message that says what to do, and never
/// falls back to simulated ones (`setpriv` from util-linux drops to `nobody`).
#[test]
fn up_without_root_says_to_use_sudo_or_the_simulated_runtime() {
    use std::os::unix::fs::PermissionsExt;
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: dropping to another user needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let binary = dir.path().join("orrery");
    std::fs::copy(env!("CARGO_BIN_EXE_orrery"), &binary).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .arg(&binary)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .args(["up", "--headless", "--port", "0", "--no-kubeconfig-merge"])
        .args(["--ingress-port", "0", "--ingress-https-port", "0"])
        .env("HOME", dir.path())
        .output()
        .expect("run setpriv");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("need root"), "{stderr}");
    assert!(
        stderr.contains("sudo") && stderr.contains("--runtime sim"),
        "{stderr}"
    );
}
