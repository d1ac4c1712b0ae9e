//! A pod's phase from its container statuses, as upstream's kubelet decides it (`getPhase` in
//! `pkg/kubelet/kubelet_pods.go`, Kubernetes 1.33): pure, over the statuses the worker is
//! about to write.
//!
//! Regular init containers hold the pod `Pending` until each has succeeded, and a failed one
//! makes it `Failed` under `restartPolicy: Never`. Restartable init containers (sidecars,
//! `restartPolicy: Always` on an init container) count with the containers, and hold the pod
//! `Pending` while one is not started, until a regular container has run. A waiting container
//! that ran before (it has a `lastState.terminated`: a crash loop, a container in back-off) is
//! a stopped one, not one that never started: with `restartPolicy: Always` a pod whose
//! containers all crash-loop is `Running`, as upstream shows it.

use k8s_openapi::api::core::v1::{Container, PodSpec};
use serde_json::Value;

/// One container's status as `getPhase` reads it.
#[derive(Debug, PartialEq)]
enum Seen {
    /// The pod's status has no entry for it.
    Missing,
    Running {
        started: bool,
    },
    Terminated {
        code: i64,
    },
    /// Waiting; with the exit code of its last run when it ran before.
    Waiting {
        last_exit: Option<i64>,
    },
    /// An entry with no state at all.
    Unknown,
}

fn seen(status: Option<&Value>) -> Seen {
    let Some(status) = status else {
        return Seen::Missing;
    };
    let (state, last) = (&status["state"], &status["lastState"]["terminated"]);
    let code = |t: &Value| t["exitCode"].as_i64().unwrap_or(0);
    if state["running"].is_object() {
        Seen::Running {
            started: status["started"].as_bool() == Some(true),
        }
    } else if state["terminated"].is_object() {
        Seen::Terminated {
            code: code(&state["terminated"]),
        }
    } else if state["waiting"].is_object() {
        Seen::Waiting {
            last_exit: last.is_object().then(|| code(last)),
        }
    } else {
        Seen::Unknown
    }
}

/// An init container that keeps running beside the containers (a sidecar).
fn restartable(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// The phase of a pod with `spec` whose init containers' and containers' statuses are
/// `init_statuses` and `statuses` (entries of `initContainerStatuses` and
/// `containerStatuses`, found by name). `terminal`: the pod's containers will not run again
/// (it was deleted), whatever its `restartPolicy`. `has_initialized`: a regular container of
/// the pod's sandbox exists (upstream's `HasAnyActiveRegularContainerStarted`), so a sidecar
/// restarting does not put the pod back to `Pending`.
pub(super) fn phase(
    spec: &PodSpec,
    init_statuses: &[Value],
    statuses: &[Value],
    terminal: bool,
    has_initialized: bool,
) -> &'static str {
    let of = |c: &Container| {
        seen(
            init_statuses
                .iter()
                .chain(statuses)
                .find(|s| s["name"].as_str() == Some(c.name.as_str())),
        )
    };
    let init: &[Container] = spec.init_containers.as_deref().unwrap_or_default();
    let (mut pending_init, mut failed_init) = (0, 0);
    for c in init.iter().filter(|c| !restartable(c)) {
        match of(c) {
            Seen::Terminated { code }
            | Seen::Waiting {
                last_exit: Some(code),
            } => {
                if code != 0 {
                    failed_init += 1;
                }
            }
            Seen::Missing
            | Seen::Running { .. }
            | Seen::Waiting { last_exit: None }
            | Seen::Unknown => pending_init += 1,
        }
    }
    let (mut pending_sidecars, mut unknown, mut running, mut waiting) = (0, 0, 0, 0);
    let (mut stopped, mut succeeded) = (0, 0);
    for c in init.iter().filter(|c| restartable(c)) {
        match of(c) {
            Seen::Missing => unknown += 1,
            Seen::Running { started } => {
                if !started {
                    pending_sidecars += 1;
                }
                running += 1;
            }
            // A stopped sidecar does not count for the phase.
            Seen::Terminated { .. } | Seen::Waiting { last_exit: Some(_) } => {}
            Seen::Waiting { last_exit: None } => {
                pending_sidecars += 1;
                waiting += 1;
            }
            Seen::Unknown => {
                pending_sidecars += 1;
                unknown += 1;
            }
        }
    }
    for c in &spec.containers {
        match of(c) {
            Seen::Missing | Seen::Unknown => unknown += 1,
            Seen::Running { .. } => running += 1,
            Seen::Terminated { code } => {
                stopped += 1;
                if code == 0 {
                    succeeded += 1;
                }
            }
            Seen::Waiting { last_exit: Some(_) } => stopped += 1,
            Seen::Waiting { last_exit: None } => waiting += 1,
        }
    }
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    if failed_init > 0 && policy == "Never" {
        return "Failed";
    }
    if pending_init > 0 || (pending_sidecars > 0 && !has_initialized) || waiting > 0 {
        // A container has not started yet.
        return "Pending";
    }
    if running > 0 && unknown == 0 {
        return "Running";
    }
    if running > 0 || stopped == 0 || unknown > 0 {
        return "Pending";
    }
    // Every container has stopped.
    if terminal {
        // Upstream leaves a static pod's phase to its restartPolicy here; a static pod's
        // status is not made here (`static_pods`).
        return if stopped == succeeded {
            "Succeeded"
        } else {
            "Failed"
        };
    }
    match policy {
        // Restarting, or about to.
        "Always" => "Running",
        _ if stopped == succeeded => "Succeeded",
        "Never" => "Failed",
        // OnFailure: a failed one restarts.
        _ => "Running",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn container(name: &str, policy: Option<&str>) -> Container {
        Container {
            name: name.into(),
            restart_policy: policy.map(Into::into),
            ..Container::default()
        }
    }

    fn running(name: &str) -> Value {
        json!({"name": name, "started": true, "state": {"running": {}}})
    }

    fn running_unstarted(name: &str) -> Value {
        json!({"name": name, "started": false, "state": {"running": {}}})
    }

    fn exited(name: &str, code: i64) -> Value {
        json!({"name": name, "state": {"terminated": {"exitCode": code}}})
    }

    fn waiting(name: &str) -> Value {
        json!({"name": name, "state": {"waiting": {"reason": "ContainerCreating"}}})
    }

    /// Waiting after a run that ended with `code` (CrashLoopBackOff).
    fn crash_looping(name: &str, code: i64) -> Value {
        json!({"name": name, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
               "lastState": {"terminated": {"exitCode": code}}})
    }

    fn no_state(name: &str) -> Value {
        json!({"name": name, "state": {}})
    }

    struct Case {
        name: &'static str,
        policy: &'static str,
        init: Vec<Container>,
        containers: Vec<&'static str>,
        init_statuses: Vec<Value>,
        statuses: Vec<Value>,
        terminal: bool,
        has_initialized: bool,
        want: &'static str,
    }

    impl Default for Case {
        fn default() -> Case {
            Case {
                name: "",
                policy: "Always",
                init: vec![],
                containers: vec!["a", "b"],
                init_statuses: vec![],
                statuses: vec![],
                terminal: false,
                has_initialized: true,
                want: "",
            }
        }
    }

    #[test]
    fn the_phase_follows_upstreams_get_phase() {
        let (setup, sidecar) = (container("setup", None), container("side", Some("Always")));
        let cases = [
            Case {
                name: "every container waiting to start",
                statuses: vec![waiting("a"), waiting("b")],
                want: "Pending",
                ..Case::default()
            },
            Case {
                name: "one running, one not started yet",
                statuses: vec![running("a"), waiting("b")],
                want: "Pending",
                ..Case::default()
            },
            Case {
                name: "all running",
                statuses: vec![running("a"), running("b")],
                want: "Running",
                ..Case::default()
            },
            Case {
                name: "a crash loop with restartPolicy Always is Running",
                containers: vec!["a"],
                statuses: vec![crash_looping("a", 1)],
                want: "Running",
                ..Case::default()
            },
            Case {
                name: "one running, one crash-looping",
                statuses: vec![running("a"), crash_looping("b", 2)],
                want: "Running",
                ..Case::default()
            },
            Case {
                name: "a container with no entry is unknown: Pending",
                statuses: vec![running("a")],
                want: "Pending",
                ..Case::default()
            },
            Case {
                name: "an entry without a state is unknown: Pending",
                statuses: vec![running("a"), no_state("b")],
                want: "Pending",
                ..Case::default()
            },
            Case {
                name: "Always: all exited, restarting",
                statuses: vec![exited("a", 0), exited("b", 1)],
                want: "Running",
                ..Case::default()
            },
            Case {
                name: "OnFailure: all succeeded",
                policy: "OnFailure",
                statuses: vec![exited("a", 0), exited("b", 0)],
                want: "Succeeded",
                ..Case::default()
            },
            Case {
                name: "OnFailure: one failed and restarts",
                policy: "OnFailure",
                statuses: vec![exited("a", 0), crash_looping("b", 1)],
                want: "Running",
                ..Case::default()
            },
            Case {
                name: "OnFailure: a waiting container that ran is not a success",
                policy: "OnFailure",
                statuses: vec![exited("a", 0), crash_looping("b", 0)],
                want: "Running",
                ..Case::default()
            },
            Case {
                name: "Never: one failed",
                policy: "Never",
                statuses: vec![exited("a", 0), exited("b", 1)],
                want: "Failed",
                ..Case::default()
            },
            Case {
                name: "Never: all succeeded",
                policy: "Never",
                statuses: vec![exited("a", 0), exited("b", 0)],
                want: "Succeeded",
                ..Case::default()
            },
            Case {
                name: "Never: one still running",
                policy: "Never",
                statuses: vec![exited("a", 1), running("b")],
                want: "Running",
                ..Case::default()
            },
            Case {
                name: "terminal: all exited 0 is Succeeded whatever the policy",
                statuses: vec![exited("a", 0), exited("b", 0)],
                terminal: true,
                want: "Succeeded",
                ..Case::default()
            },
            Case {
                name: "terminal: one failed",
                statuses: vec![exited("a", 0), exited("b", 143)],
                terminal: true,
                want: "Failed",
                ..Case::default()
            },
            Case {
                name: "init container running",
                init: vec![setup.clone()],
                init_statuses: vec![running("setup")],
                statuses: vec![waiting("a"), waiting("b")],
                has_initialized: false,
                want: "Pending",
                ..Case::default()
            },
            Case {
                name: "init container without an entry",
                init: vec![setup.clone()],
                statuses: vec![waiting("a"), waiting("b")],
                has_initialized: false,
                want: "Pending",
                ..Case::default()
            },
            Case {
                name: "init container failed, Never",
                policy: "Never",
                init: vec![setup.clone()],
                init_statuses: vec![exited("setup", 1)],
                statuses: vec![waiting("a"), waiting("b")],
                has_initialized: false,
                want: "Failed",
                ..Case::default()
            },
            Case {
                name: "init container crash-looping, Never counts its last exit",
                policy: "Never",
                init: vec![setup.clone()],
                init_statuses: vec![crash_looping("setup", 1)],
                statuses: vec![waiting("a"), waiting("b")],
                has_initialized: false,
                want: "Failed",
                ..Case::default()
            },
            Case {
                name: "init container crash-looping, OnFailure: Pending",
                policy: "OnFailure",
                init: vec![setup.clone()],
                init_statuses: vec![crash_looping("setup", 1)],
                statuses: vec![waiting("a"), waiting("b")],
                has_initialized: false,
                want: "Pending",
                ..Case::default()
            },
            Case {
                name: "init container done, containers running",
                init: vec![setup.clone()],
                init_statuses: vec![exited("setup", 0)],
                statuses: vec![running("a"), running("b")],
                want: "Running",
                ..Case::default()
            },
            Case {
                name: "init container done, containers crash-looping",
                init: vec![setup.clone()],
                init_statuses: vec![exited("setup", 0)],
                statuses: vec![crash_looping("a", 1), crash_looping("b", 1)],
                want: "Running",
                ..Case::default()
            },
            Case {
                name: "sidecar running but not started: Pending before initialization",
                init: vec![sidecar.clone()],
                init_statuses: vec![running_unstarted("side")],
                statuses: vec![running("a"), running("b")],
                has_initialized: false,
                want: "Pending",
                ..Case::default()
            },
            Case {
                name: "sidecar running but not started after initialization: Running",
                init: vec![sidecar.clone()],
                init_statuses: vec![running_unstarted("side")],
                statuses: vec![running("a"), running("b")],
                want: "Running",
                ..Case::default()
            },
            Case {
                name: "sidecar waiting for its first start",
                init: vec![sidecar.clone()],
                init_statuses: vec![waiting("side")],
                statuses: vec![running("a"), running("b")],
                want: "Pending",
                ..Case::default()
            },
            Case {
                name: "sidecar restarting (it ran before) is not counted",
                init: vec![sidecar.clone()],
                init_statuses: vec![crash_looping("side", 1)],
                statuses: vec![running("a"), running("b")],
                want: "Running",
                ..Case::default()
            },
            Case {
                name: "sidecar running, containers done, Never: not a stopped pod",
                policy: "Never",
                init: vec![sidecar.clone()],
                init_statuses: vec![running("side")],
                statuses: vec![exited("a", 0), exited("b", 0)],
                want: "Running",
                ..Case::default()
            },
            Case {
                name: "sidecar stopped, containers succeeded, Never",
                policy: "Never",
                init: vec![sidecar.clone()],
                init_statuses: vec![exited("side", 137)],
                statuses: vec![exited("a", 0), exited("b", 0)],
                want: "Succeeded",
                ..Case::default()
            },
            Case {
                name: "sidecar without an entry is unknown",
                init: vec![sidecar.clone()],
                statuses: vec![running("a"), running("b")],
                want: "Pending",
                ..Case::default()
            },
        ];
        for case in cases {
            let spec = PodSpec {
                restart_policy: Some(case.policy.into()),
                init_containers: (!case.init.is_empty()).then_some(case.init),
                containers: case.containers.iter().map(|n| container(n, None)).collect(),
                ..PodSpec::default()
            };
            let got = phase(
                &spec,
                &case.init_statuses,
                &case.statuses,
                case.terminal,
                case.has_initialized,
            );
            assert_eq!(got, case.want, "{}", case.name);
        }
    }
}
