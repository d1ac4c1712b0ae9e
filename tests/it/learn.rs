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
    check("deployment");
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
