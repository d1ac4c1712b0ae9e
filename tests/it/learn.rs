//! Lessons from outside, as CI and a teacher run them: `orrery learn run NAME --check` runs each
//! lesson headless on a cluster of its own and must hold (one test per lesson, so CI shows
//! each); a broken lesson file is refused naming its file, step and field; a check that cannot
//! hold makes `--check` exit 1 naming it; `orrery learn list` lists the lessons with the
//! learner's progress.

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// `orrery <args>` with a state directory of the test's own.
fn orrery(state_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orrery"))
        .arg("--state-dir")
        .arg(state_dir)
        .args(args)
        .env_remove("ORRERY_LESSONS")
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("run orrery")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `orrery learn run NAME --check` and fails with its report unless every check held.
fn check(name: &str) {
    check_with(name, &[]);
}

/// [`check`] with more `learn run` flags: a lesson on real containers gives its own pod
/// network (`--cluster-cidr 10.25x.0.0/16`).
fn check_with(name: &str, flags: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["learn", "run", name, "--check"];
    args.extend_from_slice(flags);
    let out = orrery(dir.path(), &args);
    let report = text(&out);
    assert!(
        out.status.success(),
        "lesson {name} did not hold:\n{report}"
    );
    assert!(
        report.contains(&format!("lesson {name}: passed")),
        "{report}"
    );
    assert!(!report.contains('✗'), "{report}");
}

#[test]
fn lesson_deployment_holds() {
    let dir = tempfile::tempdir().unwrap();
    let out = orrery(dir.path(), &["learn", "run", "deployment", "--check"]);
    let report = text(&out);
    assert!(out.status.success(), "{report}");
    assert!(!report.contains('✗'), "{report}");
    // A flow check's hops are printed with why each happens, as the dashboard explains them.
    assert!(
        report.lines().any(
            |l| l.contains("scheduler -> apiserver BIND Pod default/web-")
                && l.contains("The scheduler binds the pod to the node it chose with a Binding")
        ),
        "{report}"
    );
}

#[test]
fn lesson_store_access_holds() {
    check("store-access");
}

#[test]
fn lesson_self_healing_holds() {
    check("self-healing");
}

#[test]
fn lesson_apiserver_down_holds() {
    check_with("apiserver-down", &["--cluster-cidr", "10.248.0.0/16"]);
}

#[test]
fn lesson_ready_endpoints_holds() {
    check_with("ready-endpoints", &["--cluster-cidr", "10.249.0.0/16"]);
}

#[test]
fn lesson_pod_network_holds() {
    check_with("pod-network", &["--cluster-cidr", "10.250.0.0/16"]);
}

#[test]
fn lesson_config_holds() {
    check_with("config", &["--cluster-cidr", "10.251.0.0/16"]);
}

#[test]
fn lesson_dns_ingress_holds() {
    check_with("dns-ingress", &["--cluster-cidr", "10.252.0.0/16"]);
}

#[test]
fn lesson_scheduling_holds() {
    check("scheduling");
}

#[test]
fn lesson_node_failure_holds() {
    check("node-failure");
}

#[test]
fn lesson_restarts_and_probes_holds() {
    check("restarts-and-probes");
}

#[test]
fn lesson_tenancy_holds() {
    check("tenancy");
}

#[test]
fn lesson_autoscaling_holds() {
    check("autoscaling");
}

#[test]
fn lesson_rolling_update_holds() {
    check("rolling-update");
}

#[test]
fn lesson_jobs_holds() {
    check("jobs");
}

#[test]
fn lesson_controllers_holds() {
    check("controllers");
}

#[test]
fn lesson_operator_holds() {
    check("operator");
}

/// A lesson on a cluster without nodes whose second check cannot hold.
const IMPOSSIBLE: &str = r#"
title: A claim that is false
claim: The default namespace is called nope.
cluster: {runtime: sim, nodes: 0}
steps:
  - title: Look at the default namespace
    check:
      - run: kubectl get namespace default -o jsonpath={.metadata.name}
        expect: default
      - run: kubectl get namespace default -o jsonpath={.metadata.name}
        expect: nope
        within: 1s
    explain: never shown
  - title: Never reached
    check:
      - run: "true"
"#;

#[test]
fn a_check_that_does_not_hold_fails_the_run_and_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let lessons = tempfile::tempdir().unwrap();
    std::fs::write(lessons.path().join("50-impossible.yaml"), IMPOSSIBLE).unwrap();
    let lessons_dir = lessons.path().to_str().unwrap();
    let out = orrery(
        dir.path(),
        &[
            "learn",
            "run",
            "impossible",
            "--check",
            "--lessons",
            lessons_dir,
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    // The first check held, the second did not: both said, with what was seen.
    assert!(
        stdout
            .contains("✓ kubectl get namespace default -o jsonpath={.metadata.name} = \"default\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("✗ kubectl get namespace default -o jsonpath={.metadata.name} = \"nope\""),
        "{stdout}"
    );
    assert!(stdout.contains("seen: after 1.0s: \"default\""), "{stdout}");
    assert!(stdout.contains("(steps 2..2 not run"), "{stdout}");
    assert!(!stdout.contains("never shown"), "{stdout}");
    assert!(
        stderr.contains(
            "lesson impossible: step 1 \"Look at the default namespace\", check 2: kubectl get namespace default"
        ),
        "{stderr}"
    );
    // Without --check the same run reports and exits 0.
    let out = orrery(
        dir.path(),
        &["learn", "run", "impossible", "--lessons", lessons_dir],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("lesson impossible: FAILED"));
}

#[test]
fn a_broken_lesson_is_refused_with_its_file_step_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let lessons = tempfile::tempdir().unwrap();
    let file = lessons.path().join("51-broken.yaml");
    let lessons_dir = lessons.path().to_str().unwrap();
    for (broken, said) in [
        (
            IMPOSSIBLE.replace("within: 1s", "within: soon"),
            "51-broken.yaml: steps[0].check[1].within: \"soon\" is not a duration (write 500ms, 30s or 2m)",
        ),
        (
            IMPOSSIBLE.replace("expect: nope", "expectt: nope"),
            "51-broken.yaml: steps[0].check[1]: unknown field `expectt`",
        ),
        (
            IMPOSSIBLE.replace("expect: nope", "expect: ${nope}"),
            "51-broken.yaml: steps[0].check[1].expect: ${nope} is not a variable here",
        ),
        (
            IMPOSSIBLE.replace("  - title: Never reached\n", "  - title: \"\"\n"),
            "51-broken.yaml: steps[1].title: must be one line, not empty",
        ),
    ] {
        std::fs::write(&file, broken).unwrap();
        for args in [
            &["learn", "list", "--lessons", lessons_dir][..],
            &[
                "learn",
                "run",
                "impossible",
                "--check",
                "--lessons",
                lessons_dir,
            ][..],
        ] {
            let out = orrery(dir.path(), args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
            assert!(
                stderr.contains(&format!("{}/{said}", lessons.path().display())),
                "{args:?}: {stderr}"
            );
            assert!(out.stdout.is_empty(), "nothing ran: {}", text(&out));
        }
    }
    // Not named NN-name.yaml.
    std::fs::remove_file(&file).unwrap();
    std::fs::write(lessons.path().join("broken.yaml"), IMPOSSIBLE).unwrap();
    let out = orrery(dir.path(), &["learn", "list", "--lessons", lessons_dir]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("broken.yaml: a lesson file is named NN-name.yaml"),
        "{}",
        text(&out)
    );
}

#[test]
fn learn_list_shows_every_lesson_with_its_progress() {
    let dir = tempfile::tempdir().unwrap();
    let lessons = tempfile::tempdir().unwrap();
    std::fs::write(lessons.path().join("50-impossible.yaml"), IMPOSSIBLE).unwrap();
    std::fs::create_dir_all(dir.path().join("learn")).unwrap();
    std::fs::write(
        dir.path().join("learn/progress.json"),
        r#"{"lessons": {"impossible": {"passed": [0], "steps": 2}, "deployment": {"passed": [0, 1], "steps": 2}}}"#,
    )
    .unwrap();
    let out = orrery(
        dir.path(),
        &[
            "learn",
            "list",
            "--lessons",
            lessons.path().to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let listed = String::from_utf8_lossy(&out.stdout);
    let rows = crate::common::rows(&listed);
    assert_eq!(
        rows[0],
        ["NAME", "RUNTIME", "PROGRESS", "TITLE"],
        "{listed}"
    );
    let row = |name: &str| {
        rows.iter()
            .find(|r| r[0] == name)
            .unwrap_or_else(|| panic!("no {name} in:\n{listed}"))
            .clone()
    };
    assert_eq!(row("deployment")[1..3], ["sim", "done"], "{listed}");
    assert_eq!(
        row("impossible")[1..],
        ["sim", "1/2", "A claim that is false"]
    );
    // In catalogue order: the built-in 01 before the directory's 50.
    let names: Vec<&str> = rows[1..].iter().map(|r| r[0].as_str()).collect();
    assert!(
        names.iter().position(|n| *n == "deployment")
            < names.iter().position(|n| *n == "impossible"),
        "{listed}"
    );
}

/// Whether the pane's lesson line says this step and, with `held`, that it held.
fn pane_says(screen: &str, step: &str, held: bool) -> bool {
    screen.lines().any(|l| {
        l.contains(&format!("lesson deployment · step {step}"))
            && (!held || l.contains(&format!("step {step} ✓")))
    })
}

/// Presses `key` every 2 s (at most `seconds`) until the screen satisfies `done`.
#[allow(clippy::disallowed_methods)] // a plain test thread, not a tokio worker
fn press_until(
    tmux: &crate::dashboard::Tmux,
    key: &str,
    what: &str,
    seconds: u64,
    done: impl Fn(&str) -> bool,
) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    loop {
        tmux.keys(&[key]);
        let waited = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while std::time::Instant::now() < waited {
            let screen = tmux.capture();
            if done(&screen) {
                return screen;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what} not seen within {seconds} s of pressing {key}; the pane shows:\n{}",
            tmux.capture()
        );
    }
}

#[test]
fn a_lesson_is_walked_in_the_dashboard_with_keys_only() {
    use crate::dashboard::{Tmux, orrery_then_report, wait_ready};
    let dir = tempfile::tempdir().unwrap();
    let tmux = Tmux::start(
        "learn",
        120,
        40,
        &orrery_then_report(
            dir.path(),
            "up --runtime sim --nodes 2 --port 0 --no-kubeconfig-merge --ingress-port 0 --ingress-https-port 0",
        ),
    );
    wait_ready(dir.path(), 2);
    tmux.wait_for("the dashboard", 20, |s| {
        s.contains("node-2") && s.contains("RUN")
    });
    // :learn lists the lessons; the first is selected; enter opens it at its first step.
    tmux.keys(&[":", "l", "e", "a", "r", "n", "Enter"]);
    tmux.wait_for("the lesson list", 10, |s| {
        s.contains(":learn") && s.contains("deployment") && s.contains("self-healing")
    });
    tmux.keys(&["Enter"]);
    tmux.wait_for("step 1 in the lesson pane", 10, |s| {
        pane_says(s, "1/2", false)
    });
    // x applies the Deployment; c checks until every check held and the explanation shows.
    tmux.keys(&["x"]);
    tmux.wait_for("the action done", 30, |s| {
        s.contains("✓ do: kubectl apply -f -")
    });
    let held = press_until(&tmux, "c", "step 1 held", 60, |s| pane_says(s, "1/2", true));
    assert!(held.contains("why:"), "{held}");
    // ] goes to step 2, which puts the cluster in step mode.
    tmux.keys(&["]"]);
    tmux.wait_for("step 2 in step mode", 10, |s| {
        pane_says(s, "2/2", false) && s.lines().any(|l| l.trim_start().starts_with("STEP"))
    });
    // x scales the Deployment: its write waits at its gate until n lets it through.
    tmux.keys(&["x"]);
    press_until(&tmux, "n", "kubectl scale done", 60, |s| {
        s.contains("✓ do: kubectl scale deployment web --replicas=4")
    });
    // Back in run mode, the rest of the story runs; c until the lesson is complete.
    tmux.keys(&["Space"]);
    tmux.wait_for("run mode", 10, |s| {
        s.lines().any(|l| l.trim_start().starts_with("RUN"))
    });
    let done = press_until(&tmux, "c", "the lesson complete", 90, |s| {
        s.contains("lesson deployment complete")
    });
    assert!(pane_says(&done, "2/2", true), "{done}");
    // The progress is in the state directory: learn list says so.
    let out = orrery(dir.path(), &["learn", "list"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    let row = crate::common::rows(&listed)
        .into_iter()
        .find(|r| r[0] == "deployment")
        .unwrap();
    assert_eq!(row[2], "done", "{listed}");
    // esc closes the lesson (back to the list); q and y stop the cluster.
    tmux.keys(&["Escape"]);
    tmux.wait_for("the lesson list again", 10, |s| {
        s.contains(":learn") && !pane_says(s, "2/2", false)
    });
    tmux.keys(&["q"]);
    tmux.wait_for("the question", 10, |s| s.contains("y/n"));
    tmux.keys(&["y"]);
    let end = tmux.wait_for("orrery up's exit", 60, |s| s.contains("ORRERY-EXIT="));
    assert!(end.contains("ORRERY-EXIT=0"), "{end}");
}

#[test]
fn orrery_learn_starts_the_lessons_cluster_in_the_lesson() {
    use crate::dashboard::{Tmux, orrery_then_report};
    let dir = tempfile::tempdir().unwrap();
    // Lesson 01 done: `orrery learn` opens the next one not done, store-access.
    std::fs::create_dir_all(dir.path().join("learn")).unwrap();
    std::fs::write(
        dir.path().join("learn/progress.json"),
        r#"{"lessons": {"deployment": {"passed": [0, 1], "steps": 2}}}"#,
    )
    .unwrap();
    let tmux = Tmux::start(
        "learn-cli",
        100,
        30,
        &orrery_then_report(
            dir.path(),
            "learn --port 0 --ingress-port 0 --ingress-https-port 0",
        ),
    );
    let screen = tmux.wait_for("the lesson pane", 30, |s| {
        s.contains("lesson store-access · step 1/3") && s.contains("node-2")
    });
    // Its cluster is the lesson's own (2 sim nodes), in the state directory's learn/cluster.
    let cluster = dir.path().join("learn/cluster");
    assert!(cluster.join("orrery.pid").exists(), "{screen}");
    assert!(!screen.contains("node-3"), "{screen}");
    tmux.keys(&["q"]);
    tmux.wait_for("the question", 10, |s| s.contains("y/n"));
    tmux.keys(&["y"]);
    let end = tmux.wait_for("orrery learn's exit", 60, |s| s.contains("ORRERY-EXIT="));
    assert!(end.contains("ORRERY-EXIT=0"), "{end}");
    assert!(!cluster.join("orrery.pid").exists());
    // Without a terminal, it says what to do instead.
    let out = orrery(dir.path(), &["learn", "deployment"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("orrery learn run NAME runs a lesson headless"),
        "{}",
        text(&out)
    );
}

/// A lesson on real containers: a pod reached over its IP from the host, with and without the
/// API server.
const REAL: &str = r#"
title: Pods answer while the API server is down
claim: >
  The API server keeps the cluster's state; it does not carry the pods' traffic. With it
  stopped, kubectl gets 503, and the pods already running keep answering.
cluster: {runtime: real, nodes: 1}
steps:
  - title: Run a hello pod and reach it
    do:
      - run: kubectl run hello --image=orrery/hello --port=8080
    check:
      - run: kubectl get pod hello -o jsonpath={.status.phase}
        expect: Running
        within: 90s
      - capture: ip
        run: kubectl get pod hello -o jsonpath={.status.podIP}
      - run: echo ${ip}
        matches: ^10\.208\.
      - http: http://${ip}:8080/
        contains: Hello from hello
  - title: Stop the API server
    do:
      - run: orrery component stop apiserver
    check:
      - run: kubectl get pods
        fails-with: ServiceUnavailable
      - http: http://${ip}:8080/
        contains: Hello from hello
        for: 2s
  - title: Start it again
    do:
      - run: orrery component start apiserver
    check:
      - run: kubectl get pod hello -o jsonpath={.status.phase}
        expect: Running
"#;

/// Needs root (real containers), as CI runs: without it the run fails, and so does the test.
#[test]
fn a_lesson_on_real_containers_runs_on_the_pod_network_it_is_given() {
    let lessons = tempfile::tempdir().unwrap();
    std::fs::write(lessons.path().join("90-apiserver-down.yaml"), REAL).unwrap();
    check_with(
        "apiserver-down",
        &[
            "--lessons",
            lessons.path().to_str().unwrap(),
            "--cluster-cidr",
            "10.208.0.0/16",
        ],
    );
}

#[test]
fn lesson_backup_holds() {
    check_with("backup", &["--cluster-cidr", "10.253.0.0/16"]);
}

#[test]
fn lesson_quorum_holds() {
    check("quorum");
}

#[test]
fn lesson_leader_election_holds() {
    check("leader-election");
}
