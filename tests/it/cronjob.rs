//! CronJobs end to end through the real kubectl against `orrery up` on the simulated runtime:
//! Jobs on schedule (the one test that waits for a minute to turn), missed times run at once
//! and held back by `suspend`, `Forbid`, history limits, `kubectl create job --from`, the
//! schedule's validation and `kubectl get cronjob`'s columns.

use crate::common;

use common::{Cluster, rows};

fn cronjob(name: &str, schedule: &str, extra: &str, command: &str) -> String {
    format!(
        "apiVersion: batch/v1\nkind: CronJob\nmetadata: {{name: {name}}}\nspec:\n  schedule: \"{schedule}\"\n{extra}  jobTemplate:\n    metadata: {{labels: {{cron: {name}}}}}\n    spec:\n      template:\n        spec:\n          restartPolicy: Never\n          containers: [{{name: work, image: busybox, command: [sh, -c, \"{command}\"]}}]\n"
    )
}

/// Sets `status.lastScheduleTime` `minutes` ago, as if the controller had last run then.
fn last_scheduled_minutes_ago(c: &Cluster, name: &str, minutes: i64) {
    let then = jiff::Timestamp::now() - jiff::SignedDuration::from_mins(minutes);
    let stamp = then.strftime("%Y-%m-%dT%H:%M:00Z").to_string();
    c.ok(&[
        "patch",
        "cronjob",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        &format!("{{\"status\":{{\"lastScheduleTime\":\"{stamp}\"}}}}"),
    ]);
}

fn jobs_of(c: &Cluster, name: &str) -> Vec<String> {
    c.ok(&[
        "get",
        "jobs",
        "-l",
        &format!("cron={name}"),
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ])
    .split_whitespace()
    .map(str::to_owned)
    .collect()
}

#[test]
fn a_cronjob_creates_its_jobs_on_schedule() {
    let c = Cluster::with_nodes(1);
    c.ok_with(
        &["apply", "-f", "-"],
        Some(&cronjob("tick", "* * * * *", "", "sleep 1")),
    );
    let header = c.ok(&["get", "cronjob", "tick"]);
    assert_eq!(
        rows(&header)[0],
        [
            "NAME",
            "SCHEDULE",
            "TIMEZONE",
            "SUSPEND",
            "ACTIVE",
            "LAST SCHEDULE",
            "AGE"
        ]
    );
    let row = &rows(&header)[1];
    assert_eq!(&row[..5], ["tick", "* * * * *", "<none>", "False", "0"]);
    // The next minute turns within 60 s; its Job is named after it in minutes since the epoch.
    let name = c.eventually(
        &[
            "get",
            "jobs",
            "-l",
            "cron=tick",
            "-o",
            "jsonpath={.items[0].metadata.name}",
        ],
        75,
        |out| !out.is_empty(),
    );
    let minutes: i64 = name.strip_prefix("tick-").unwrap().parse().unwrap();
    let scheduled = c.ok(&[
        "get",
        "job",
        &name,
        "-o",
        "jsonpath={.metadata.annotations.batch\\.kubernetes\\.io/cronjob-scheduled-timestamp}",
    ]);
    let at: jiff::Timestamp = scheduled.parse().unwrap();
    assert_eq!(at.as_second(), minutes * 60, "{scheduled}");
    let owner = c.ok(&[
        "get",
        "job",
        &name,
        "-o",
        "jsonpath={.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}/{.metadata.ownerReferences[0].controller}",
    ]);
    assert_eq!(owner, "CronJob/tick/true");
    // The status follows: the run is recorded, then seen completed.
    c.eventually(
        &[
            "get",
            "cronjob",
            "tick",
            "-o",
            "jsonpath={.status.lastScheduleTime}",
        ],
        10,
        |out| out.parse::<jiff::Timestamp>().ok() == Some(at),
    );
    c.eventually(
        &[
            "get",
            "cronjob",
            "tick",
            "-o",
            "jsonpath={.status.lastSuccessfulTime}|{.status.active}",
        ],
        30,
        |out| out.ends_with('|') && !out.starts_with('|'),
    );
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=tick",
        "-o",
        "jsonpath={.items[*].reason}",
    ]);
    assert!(events.contains("SuccessfulCreate"), "{events}");
    assert!(events.contains("SawCompletedJob"), "{events}");
}

#[test]
#[allow(clippy::disallowed_methods)] // a plain test thread: time for a suspended CronJob not to act
fn missed_times_run_at_once_unless_suspended_and_forbid_waits_for_the_active_job() {
    let c = Cluster::with_nodes(1);
    // Suspended: a missed time stays missed.
    c.ok_with(
        &["apply", "-f", "-"],
        Some(&cronjob(
            "nightly",
            "*/5 * * * *",
            "  suspend: true\n",
            "sleep 1",
        )),
    );
    last_scheduled_minutes_ago(&c, "nightly", 30);
    assert_eq!(rows(&c.ok(&["get", "cronjob", "nightly"]))[1][3], "True");
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(jobs_of(&c, "nightly").is_empty());
    // Resumed: the most recent missed time runs now, once.
    c.ok(&[
        "patch",
        "cronjob",
        "nightly",
        "--type=merge",
        "-p",
        "{\"spec\":{\"suspend\":false}}",
    ]);
    c.eventually(
        &[
            "get",
            "jobs",
            "-l",
            "cron=nightly",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ],
        15,
        |out| out.split_whitespace().count() == 1,
    );

    // Forbid: a Job still running keeps the one now due from starting.
    c.ok_with(
        &["apply", "-f", "-"],
        Some(&cronjob(
            "exclusive",
            "* * * * *",
            "  concurrencyPolicy: Forbid\n  suspend: true\n",
            "sleep 3600",
        )),
    );
    let uid = c.ok(&[
        "get",
        "cronjob",
        "exclusive",
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    let running = format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: exclusive-earlier\n  labels: {{cron: exclusive}}\n  ownerReferences: [{{apiVersion: batch/v1, kind: CronJob, name: exclusive, uid: {uid}, controller: true}}]\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{{name: work, image: busybox, command: [sh, -c, \"sleep 3600\"]}}]\n"
    );
    c.ok_with(&["apply", "-f", "-"], Some(&running));
    let job_uid = c.ok(&[
        "get",
        "job",
        "exclusive-earlier",
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    let then = (jiff::Timestamp::now() - jiff::SignedDuration::from_mins(10))
        .strftime("%Y-%m-%dT%H:%M:00Z")
        .to_string();
    c.ok(&[
        "patch",
        "cronjob",
        "exclusive",
        "--subresource=status",
        "--type=merge",
        "-p",
        &format!(
            "{{\"status\":{{\"lastScheduleTime\":\"{then}\",\"active\":[{{\"apiVersion\":\"batch/v1\",\"kind\":\"Job\",\"namespace\":\"default\",\"name\":\"exclusive-earlier\",\"uid\":\"{job_uid}\"}}]}}}}"
        ),
    ]);
    c.ok(&[
        "patch",
        "cronjob",
        "exclusive",
        "--type=merge",
        "-p",
        "{\"spec\":{\"suspend\":false}}",
    ]);
    c.eventually(
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=exclusive,reason=JobAlreadyActive",
            "-o",
            "jsonpath={.items[*].message}",
        ],
        15,
        |out| out.contains("Not starting job because prior execution is running and concurrency policy is Forbid"),
    );
    assert_eq!(jobs_of(&c, "exclusive"), ["exclusive-earlier"]);
}

#[test]
fn finished_jobs_past_the_history_limits_are_deleted_oldest_first() {
    let c = Cluster::with_nodes(1);
    c.ok_with(
        &["apply", "-f", "-"],
        Some(&cronjob(
            "keep",
            "0 0 1 1 *",
            "  successfulJobsHistoryLimit: 1\n  failedJobsHistoryLimit: 0\n",
            "sleep 0",
        )),
    );
    let uid = c.ok(&["get", "cronjob", "keep", "-o", "jsonpath={.metadata.uid}"]);
    // Jobs the CronJob controls, started one after another (one of them fails).
    for (name, command) in [
        ("keep-1", "sleep 0"),
        ("keep-2", "exit 1"),
        ("keep-3", "sleep 0"),
    ] {
        let job = format!(
            "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {name}\n  labels: {{cron: keep}}\n  ownerReferences: [{{apiVersion: batch/v1, kind: CronJob, name: keep, uid: {uid}, controller: true}}]\nspec:\n  backoffLimit: 0\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{{name: work, image: busybox, command: [sh, -c, \"{command}\"]}}]\n"
        );
        c.ok_with(&["apply", "-f", "-"], Some(&job));
    }
    // One successful Job is kept (the newest), no failed one.
    c.eventually(
        &[
            "get",
            "jobs",
            "-l",
            "cron=keep",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ],
        20,
        |out| out == "keep-3",
    );
    let reasons = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=keep,reason=SuccessfulDelete",
        "-o",
        "jsonpath={.items[*].message}",
    ]);
    assert!(reasons.contains("Deleted job keep-1"), "{reasons}");
    assert!(reasons.contains("Deleted job keep-2"), "{reasons}");
}

#[test]
fn kubectl_creates_a_job_from_a_cronjob_and_bad_schedules_are_refused() {
    let c = Cluster::with_nodes(1);
    c.ok_with(
        &["apply", "-f", "-"],
        Some(&cronjob(
            "report",
            "@daily",
            "  timeZone: Europe/Paris\n",
            "sleep 0",
        )),
    );
    assert_eq!(
        rows(&c.ok(&["get", "cronjob", "report"]))[1][..4],
        ["report", "@daily", "Europe/Paris", "False"]
    );
    let out = c.ok(&["create", "job", "by-hand", "--from=cronjob/report"]);
    assert_eq!(out.trim(), "job.batch/by-hand created");
    let job = c.ok(&[
        "get",
        "job",
        "by-hand",
        "-o",
        "jsonpath={.metadata.annotations.cronjob\\.kubernetes\\.io/instantiate}/{.metadata.ownerReferences[0].kind}/{.metadata.labels.cron}",
    ]);
    assert_eq!(job, "manual/CronJob/report");
    c.eventually(
        &[
            "get",
            "job",
            "by-hand",
            "-o",
            "jsonpath={.status.succeeded}",
        ],
        20,
        |out| out == "1",
    );
    // Upstream's words for a bad schedule, zone and TZ prefix.
    for (schedule, extra, message) in [
        (
            "61 * * * *",
            "",
            "spec.schedule: Invalid value: \"61 * * * *\": end of range (61) above maximum (59): 61",
        ),
        (
            "* * * * *",
            "  timeZone: Europe/Pariss\n",
            "spec.timeZone: Invalid value: \"Europe/Pariss\": unknown time zone Europe/Pariss",
        ),
        (
            "CRON_TZ=UTC * * * * *",
            "",
            "spec.schedule: Invalid value: \"CRON_TZ=UTC * * * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
        ),
    ] {
        let err = c.fails(
            &["apply", "-f", "-"],
            Some(&cronjob("bad", schedule, extra, "sleep 0")),
        );
        assert!(
            err.contains(&format!("The CronJob \"bad\" is invalid: {message}")),
            "{err}"
        );
    }
}
