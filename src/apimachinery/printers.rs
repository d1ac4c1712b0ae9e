//! kubectl's printers, as kube-apiserver runs them for `kubectl get` (upstream's
//! `pkg/printers/internalversion/printers.go`), for what more than one component prints: the
//! pod's row (`printPod`: READY, STATUS, RESTARTS, AGE, and the wide IP, NODE, NOMINATED NODE
//! and READINESS GATES, plus the row's `Completed` condition) and the ages every row is written
//! in (`duration.HumanDuration`). The API server's Tables and the dashboard's pod list both
//! print pods through [`PodView::print`], so they say the same thing.
//!
//! The printer reads a [`PodView`]: what `printPod` looks at, borrowed either from a typed
//! k8s-openapi `Pod` (the dashboard's watch) or straight from a pod's JSON (the API server's
//! stored objects). Decoding each stored pod into the typed `Pod` first costs four to five
//! times the printing itself (about 20 µs more a pod: a 10,000-pod Table 200 ms slower); the
//! view costs a few small lists.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ContainerState, ContainerStatus, Pod};
use serde_json::Value;

/// `duration.HumanDuration`: how kubectl writes a duration of `seconds` (`45s`, `2m30s`,
/// `3h1m`, `5d`, `2y70d`), `<invalid>` for one more than a second negative (clock skew up to
/// that reads as `0s`).
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    let s = seconds.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        if s % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", s % 60)
        }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        if h % 24 == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{}h", h % 24)
        }
    } else if d < 365 * 2 {
        format!("{d}d")
    } else if d < 365 * 8 {
        let y = d / 365;
        if d % 365 == 0 {
            format!("{y}y")
        } else {
            format!("{y}y{}d", d % 365)
        }
    } else {
        format!("{}y", d / 365)
    }
}

/// `translateTimestampSince`: how long before `now` `time` was, or `<unknown>` without one.
pub fn since(time: Option<Timestamp>, now: Timestamp) -> String {
    match time {
        // Go's `int(d.Seconds())`: whole seconds, towards zero.
        Some(t) => human_duration(now.duration_since(t).as_secs()),
        None => "<unknown>".into(),
    }
}

/// What `printPod` works out of a pod's containers: the READY and STATUS columns and what the
/// RESTARTS column is made of.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrintedPod {
    /// Ready containers (and started, ready sidecars).
    pub ready: u32,
    /// Containers, and restartable init containers (sidecars).
    pub total: u32,
    /// STATUS: the phase, or the reason a container or the pod gives (`CrashLoopBackOff`,
    /// `Init:0/1`, `Completed`, `Terminating`, ...).
    pub status: String,
    /// Restarts of the containers counted (all init containers' while initializing; the
    /// sidecars' and the app containers' after).
    pub restarts: i64,
    /// When the latest of those containers last finished (`lastState.terminated.finishedAt`).
    pub last_restart: Option<Timestamp>,
}

impl PrintedPod {
    /// READY: `ready/total`.
    pub fn ready_text(&self) -> String {
        format!("{}/{}", self.ready, self.total)
    }

    /// RESTARTS at `now`: the count, with how long ago the last restart was when there is one
    /// (`3 (5m ago)`).
    pub fn restarts_text(&self, now: Timestamp) -> String {
        restarts_text(self.restarts, self.last_restart, now)
    }
}

/// RESTARTS at `now` of `restarts` restarts, the last at `last_restart`: `3 (5m ago)`, or the
/// bare count when there were none or no container says when.
pub fn restarts_text(restarts: i64, last_restart: Option<Timestamp>, now: Timestamp) -> String {
    match last_restart {
        Some(last) if restarts != 0 => format!("{restarts} ({} ago)", since(Some(last), now)),
        _ => restarts.to_string(),
    }
}

/// The reason a pod is evicted with when its node is lost (`node.NodeUnreachablePodReason`).
const NODE_UNREACHABLE: &str = "NodeLost";

/// A pod as `printPod` reads it, borrowed from a typed pod ([`PodView::of`]) or its JSON
/// ([`PodView::from_json`]); an absent field reads as Go's zero value (`""`, `0`, `false`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodView<'a> {
    name: &'a str,
    created: Option<Timestamp>,
    deleting: bool,
    containers: usize,
    /// `spec.initContainers`: each one's name and whether it is a sidecar
    /// (`podutil.IsRestartableInitContainer`: `restartPolicy: Always`).
    init_containers: Vec<(&'a str, bool)>,
    /// `spec.readinessGates`' condition types.
    readiness_gates: Vec<&'a str>,
    node_name: &'a str,
    phase: &'a str,
    reason: &'a str,
    nominated_node_name: &'a str,
    /// The first of `status.podIPs`.
    pod_ip: &'a str,
    conditions: Vec<ConditionView<'a>>,
    init_container_statuses: Vec<StatusView<'a>>,
    container_statuses: Vec<StatusView<'a>>,
}

/// A pod condition's type, status and reason.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct ConditionView<'a> {
    type_: &'a str,
    status: &'a str,
    reason: &'a str,
}

/// A container status as the printer reads it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct StatusView<'a> {
    name: &'a str,
    ready: bool,
    restart_count: i64,
    started: Option<bool>,
    running: bool,
    /// `state.waiting.reason` (`""` when not waiting or waiting without one).
    waiting_reason: &'a str,
    terminated: Option<TerminatedView<'a>>,
    /// `lastState.terminated.finishedAt`.
    last_finished: Option<Timestamp>,
}

/// `state.terminated`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct TerminatedView<'a> {
    reason: &'a str,
    signal: i64,
    exit_code: i64,
}

impl<'a> StatusView<'a> {
    fn of(status: &'a ContainerStatus) -> Self {
        let state = status.state.as_ref();
        let terminated = state.and_then(|s| s.terminated.as_ref());
        let last = |s: &'a ContainerState| s.terminated.as_ref()?.finished_at.as_ref();
        StatusView {
            name: &status.name,
            ready: status.ready,
            restart_count: i64::from(status.restart_count),
            started: status.started,
            running: state.is_some_and(|s| s.running.is_some()),
            waiting_reason: state
                .and_then(|s| s.waiting.as_ref())
                .and_then(|w| w.reason.as_deref())
                .unwrap_or_default(),
            terminated: terminated.map(|t| TerminatedView {
                reason: t.reason.as_deref().unwrap_or_default(),
                signal: t.signal.map_or(0, i64::from),
                exit_code: i64::from(t.exit_code),
            }),
            last_finished: status.last_state.as_ref().and_then(last).map(|t| t.0),
        }
    }

    fn from_json(status: &'a Value) -> Self {
        let state = &status["state"];
        let terminated = &state["terminated"];
        StatusView {
            name: str_at(&status["name"]),
            ready: status["ready"].as_bool().unwrap_or_default(),
            restart_count: status["restartCount"].as_i64().unwrap_or_default(),
            started: status["started"].as_bool(),
            running: state["running"].is_object(),
            waiting_reason: str_at(&state["waiting"]["reason"]),
            terminated: terminated.is_object().then(|| TerminatedView {
                reason: str_at(&terminated["reason"]),
                signal: terminated["signal"].as_i64().unwrap_or_default(),
                exit_code: terminated["exitCode"].as_i64().unwrap_or_default(),
            }),
            last_finished: time_at(&status["lastState"]["terminated"]["finishedAt"]),
        }
    }
}

/// A JSON string, or `""`.
fn str_at(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

/// A JSON timestamp (RFC 3339), if it is one.
fn time_at(v: &Value) -> Option<Timestamp> {
    v.as_str()?.parse().ok()
}

/// The items of a JSON array (none when it is not one).
fn items(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

impl<'a> PodView<'a> {
    /// What the printer reads of a typed pod.
    pub fn of(pod: &'a Pod) -> Self {
        let meta = &pod.metadata;
        let spec = pod.spec.as_ref();
        let status = pod.status.as_ref();
        let statuses = |list: Option<&'a Vec<ContainerStatus>>| {
            list.into_iter().flatten().map(StatusView::of).collect()
        };
        PodView {
            name: meta.name.as_deref().unwrap_or_default(),
            created: meta.creation_timestamp.as_ref().map(|t| t.0),
            deleting: meta.deletion_timestamp.is_some(),
            containers: spec.map_or(0, |s| s.containers.len()),
            init_containers: spec
                .and_then(|s| s.init_containers.as_ref())
                .into_iter()
                .flatten()
                .map(|c| {
                    (
                        c.name.as_str(),
                        c.restart_policy.as_deref() == Some("Always"),
                    )
                })
                .collect(),
            readiness_gates: spec
                .and_then(|s| s.readiness_gates.as_ref())
                .into_iter()
                .flatten()
                .map(|g| g.condition_type.as_str())
                .collect(),
            node_name: spec
                .and_then(|s| s.node_name.as_deref())
                .unwrap_or_default(),
            phase: status.and_then(|s| s.phase.as_deref()).unwrap_or_default(),
            reason: status.and_then(|s| s.reason.as_deref()).unwrap_or_default(),
            nominated_node_name: status
                .and_then(|s| s.nominated_node_name.as_deref())
                .unwrap_or_default(),
            pod_ip: status
                .and_then(|s| s.pod_ips.as_ref())
                .and_then(|ips| ips.first())
                .map_or("", |ip| ip.ip.as_str()),
            conditions: status
                .and_then(|s| s.conditions.as_ref())
                .into_iter()
                .flatten()
                .map(|c| ConditionView {
                    type_: &c.type_,
                    status: &c.status,
                    reason: c.reason.as_deref().unwrap_or_default(),
                })
                .collect(),
            init_container_statuses: statuses(
                status.and_then(|s| s.init_container_statuses.as_ref()),
            ),
            container_statuses: statuses(status.and_then(|s| s.container_statuses.as_ref())),
        }
    }

    /// What the printer reads of a pod's JSON, as the API server stores it.
    pub fn from_json(pod: &'a Value) -> Self {
        let (meta, spec, status) = (&pod["metadata"], &pod["spec"], &pod["status"]);
        let statuses = |list: &'a Value| items(list).iter().map(StatusView::from_json).collect();
        PodView {
            name: str_at(&meta["name"]),
            created: time_at(&meta["creationTimestamp"]),
            deleting: meta["deletionTimestamp"].is_string(),
            containers: items(&spec["containers"]).len(),
            init_containers: items(&spec["initContainers"])
                .iter()
                .map(|c| (str_at(&c["name"]), c["restartPolicy"] == "Always"))
                .collect(),
            readiness_gates: items(&spec["readinessGates"])
                .iter()
                .map(|g| str_at(&g["conditionType"]))
                .collect(),
            node_name: str_at(&spec["nodeName"]),
            phase: str_at(&status["phase"]),
            reason: str_at(&status["reason"]),
            nominated_node_name: str_at(&status["nominatedNodeName"]),
            pod_ip: str_at(&status["podIPs"][0]["ip"]),
            conditions: items(&status["conditions"])
                .iter()
                .map(|c| ConditionView {
                    type_: str_at(&c["type"]),
                    status: str_at(&c["status"]),
                    reason: str_at(&c["reason"]),
                })
                .collect(),
            init_container_statuses: statuses(&status["initContainerStatuses"]),
            container_statuses: statuses(&status["containerStatuses"]),
        }
    }

    /// `podutil.IsRestartableInitContainer` of the init container named `name` (upstream keeps
    /// them in a map by name: the last of a name wins; none, no).
    fn is_sidecar(&self, name: &str) -> bool {
        self.init_containers
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .is_some_and(|(_, sidecar)| *sidecar)
    }

    /// `printPod`'s READY, STATUS and RESTARTS, line by line as upstream works them out:
    ///
    /// 1. STATUS starts as `status.reason`, else the phase; `SchedulingGated` while a
    ///    `PodScheduled` condition says so.
    /// 2. The init containers in order: one that exited 0 is passed over, as is a started
    ///    sidecar (counted in READY when ready); the first other one decides STATUS,
    ///    `Init:<reason>` of its termination (or `Init:Signal:N`, `Init:ExitCode:N`) or of its
    ///    waiting (except `PodInitializing`), else `Init:i/n`, and the pod is initializing.
    /// 3. Unless initializing (or the `Initialized` condition is true anyway), the app
    ///    containers from last to first: a waiting reason, then a terminated one (`Signal:N`,
    ///    `ExitCode:N`), decides STATUS, and each running ready container counts in READY.
    ///    `Completed` with one still running reads `Running` when the pod is Ready, else
    ///    `NotReady`.
    /// 4. A deleted pod reads `Unknown` when its node was lost, else `Terminating` unless it
    ///    has finished (Succeeded or Failed).
    ///
    /// RESTARTS counts every init container's restarts while initializing; after, the
    /// sidecars' and the app containers'.
    pub fn print(&self) -> PrintedPod {
        let mut reason = if self.reason.is_empty() {
            self.phase
        } else {
            self.reason
        }
        .to_owned();
        if self
            .conditions
            .iter()
            .any(|c| c.type_ == "PodScheduled" && c.reason == "SchedulingGated")
        {
            reason = "SchedulingGated".into();
        }
        let sidecars = self.init_containers.iter().filter(|(_, s)| *s).count();
        let mut printed = PrintedPod {
            total: (self.containers + sidecars) as u32,
            ..PrintedPod::default()
        };
        let mut sidecar_restarts = 0;
        let mut sidecar_last_restart = None;

        let mut initializing = false;
        for (i, container) in self.init_container_statuses.iter().enumerate() {
            printed.restarts += container.restart_count;
            keep_later(&mut printed.last_restart, container.last_finished);
            let sidecar = self.is_sidecar(container.name);
            if sidecar {
                sidecar_restarts += container.restart_count;
                keep_later(&mut sidecar_last_restart, container.last_finished);
            }
            if container.terminated.is_some_and(|t| t.exit_code == 0) {
                continue;
            }
            if sidecar && container.started == Some(true) {
                if container.ready {
                    printed.ready += 1;
                }
                continue;
            }
            let waiting = container.waiting_reason;
            reason = if let Some(t) = container.terminated {
                if t.reason.is_empty() {
                    format!("Init:{}", ended_without_reason(t))
                } else {
                    format!("Init:{}", t.reason)
                }
            } else if !waiting.is_empty() && waiting != "PodInitializing" {
                format!("Init:{waiting}")
            } else {
                format!("Init:{i}/{}", self.init_containers.len())
            };
            initializing = true;
            break;
        }

        // `isPodInitializedConditionTrue`: the first `Initialized` condition decides.
        let initialized = self
            .conditions
            .iter()
            .find(|c| c.type_ == "Initialized")
            .is_some_and(|c| c.status == "True");
        if !initializing || initialized {
            printed.restarts = sidecar_restarts;
            printed.last_restart = sidecar_last_restart;
            let mut has_running = false;
            for container in self.container_statuses.iter().rev() {
                printed.restarts += container.restart_count;
                keep_later(&mut printed.last_restart, container.last_finished);
                if !container.waiting_reason.is_empty() {
                    reason = container.waiting_reason.to_owned();
                } else if let Some(t) = container.terminated {
                    reason = if t.reason.is_empty() {
                        ended_without_reason(t)
                    } else {
                        t.reason.to_owned()
                    };
                } else if container.ready && container.running {
                    has_running = true;
                    printed.ready += 1;
                }
            }
            // Back to Running while a container still runs (`hasPodReadyCondition`).
            if reason == "Completed" && has_running {
                let pod_ready = self
                    .conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
                reason = if pod_ready { "Running" } else { "NotReady" }.into();
            }
        }

        if self.deleting {
            if self.reason == NODE_UNREACHABLE {
                reason = "Unknown".into();
            } else if !matches!(self.phase, "Succeeded" | "Failed") {
                reason = "Terminating".into();
            }
        }
        printed.status = reason;
        printed
    }

    /// READINESS GATES: how many of the pod's readiness gates have a `True` condition (the
    /// first condition of the gate's type decides), of how many (`1/3`); `<none>` without
    /// gates.
    pub fn readiness_gates(&self) -> String {
        if self.readiness_gates.is_empty() {
            return "<none>".into();
        }
        let true_gates = self
            .readiness_gates
            .iter()
            .filter(|gate| {
                self.conditions
                    .iter()
                    .find(|c| c.type_ == **gate)
                    .is_some_and(|c| c.status == "True")
            })
            .count();
        format!("{true_gates}/{}", self.readiness_gates.len())
    }

    /// The cells of `printPod`'s wide row at `now`, every one a string as upstream's are: NAME,
    /// READY, STATUS, RESTARTS, AGE, IP (the first of `status.podIPs`), NODE, NOMINATED NODE,
    /// READINESS GATES.
    pub fn cells(&self, now: Timestamp) -> [String; POD_CELLS] {
        let printed = self.print();
        let (ready, restarts) = (printed.ready_text(), printed.restarts_text(now));
        [
            self.name.to_owned(),
            ready,
            printed.status,
            restarts,
            since(self.created, now),
            or_none(self.pod_ip),
            or_none(self.node_name),
            or_none(self.nominated_node_name),
            self.readiness_gates(),
        ]
    }
}

/// Keeps the later of `latest` and `time` in `latest` (`metav1.Time.Before`).
fn keep_later(latest: &mut Option<Timestamp>, time: Option<Timestamp>) {
    if let Some(t) = time
        && latest.is_none_or(|l| l < t)
    {
        *latest = Some(t);
    }
}

/// `Signal:N` or `ExitCode:N`, what a container that ended without a reason says.
fn ended_without_reason(t: TerminatedView<'_>) -> String {
    if t.signal != 0 {
        format!("Signal:{}", t.signal)
    } else {
        format!("ExitCode:{}", t.exit_code)
    }
}

/// `printPod`'s READY, STATUS and RESTARTS of a typed pod ([`PodView::print`]).
pub fn print_pod(pod: &Pod) -> PrintedPod {
    PodView::of(pod).print()
}

/// `<none>` for an empty cell, as the wide columns say.
fn or_none(text: &str) -> String {
    if text.is_empty() {
        "<none>".into()
    } else {
        text.to_owned()
    }
}

/// How many cells a pod's row has (the Table's columns): NAME, READY, STATUS, RESTARTS, AGE, IP,
/// NODE, NOMINATED NODE, READINESS GATES.
pub const POD_CELLS: usize = 9;

/// The cells of `printPod`'s wide row of a typed pod at `now` ([`PodView::cells`]).
pub fn pod_cells(pod: &Pod, now: Timestamp) -> [String; POD_CELLS] {
    PodView::of(pod).cells(now)
}

/// A Table row's condition (`metav1.TableRowCondition`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowCondition {
    /// Its type: `Completed` (`metav1.RowCompleted`) for pods.
    pub type_: &'static str,
    /// `True`.
    pub status: &'static str,
    /// The pod's phase.
    pub reason: &'static str,
    /// What it means.
    pub message: &'static str,
}

/// The condition the row of a pod in `phase` carries (`podSuccessConditions`,
/// `podFailedConditions`): `Completed` when it is Succeeded or Failed.
pub fn pod_row_condition(phase: &str) -> Option<RowCondition> {
    let (reason, message) = match phase {
        "Succeeded" => ("Succeeded", "The pod has completed successfully."),
        "Failed" => ("Failed", "The pod failed."),
        _ => return None,
    };
    Some(RowCondition {
        type_: "Completed",
        status: "True",
        reason,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// The clock every case is printed at.
    const NOW: &str = "2026-01-01T00:00:00Z";

    fn now() -> Timestamp {
        NOW.parse().unwrap()
    }

    /// `seconds` before [`NOW`], as the API writes times.
    fn ago(seconds: i64) -> String {
        (now() - jiff::SignedDuration::from_secs(seconds)).to_string()
    }

    /// A pod from upstream's test structs written as JSON: containers and container statuses get
    /// the fields Go leaves at their zero values and k8s-openapi requires; `containers: N` is N
    /// unnamed containers (`make([]api.Container, N)`).
    fn pod_json(mut v: Value) -> Value {
        for list in ["containers", "initContainers"] {
            if let Some(n) = v["spec"][list].as_u64() {
                v["spec"][list] = json!(vec![json!({"name": ""}); n as usize]);
            }
        }
        for list in ["containerStatuses", "initContainerStatuses"] {
            for status in v["status"][list].as_array_mut().into_iter().flatten() {
                for (field, zero) in [
                    ("name", json!("")),
                    ("image", json!("")),
                    ("imageID", json!("")),
                    ("ready", json!(false)),
                    ("restartCount", json!(0)),
                ] {
                    if status.get(field).is_none() {
                        status[field] = zero;
                    }
                }
            }
        }
        if v.get("metadata").is_none() {
            v["metadata"] = json!({"name": "p"});
        }
        v
    }

    /// The pod of [`pod_json`], typed; the view of its JSON must be the view of the typed pod,
    /// so both readers print alike.
    fn pod(v: Value) -> Pod {
        let json = pod_json(v);
        let pod: Pod = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(PodView::from_json(&json), PodView::of(&pod), "{json}");
        pod
    }

    fn running(ready: bool, restarts: i32) -> Value {
        json!({"ready": ready, "restartCount": restarts, "state": {"running": {}}})
    }

    /// A container that restarted `restarts` times, the last `seconds` ago, running now.
    fn restarted(ready: bool, restarts: i32, seconds: i64) -> Value {
        json!({"ready": ready, "restartCount": restarts, "state": {"running": {}},
               "lastState": {"terminated": {"exitCode": 0, "finishedAt": ago(seconds)}}})
    }

    fn waiting(reason: &str, restarts: i32) -> Value {
        json!({"restartCount": restarts, "state": {"waiting": {"reason": reason}}})
    }

    fn terminated(reason: &str, exit_code: i32) -> Value {
        json!({"state": {"terminated": {"reason": reason, "exitCode": exit_code}}})
    }

    /// One case: the pod, then READY, STATUS and RESTARTS as upstream prints them.
    fn check(name: &str, object: Value, want: [&str; 3]) {
        let printed = print_pod(&pod(object));
        assert_eq!(
            [
                printed.ready_text(),
                printed.status.clone(),
                printed.restarts_text(now())
            ],
            want,
            "{name}: {printed:?}"
        );
    }

    /// `TestPrintPod`, upstream's cases in its order.
    #[test]
    fn upstreams_print_pod_cases() {
        let two = json!({"containers": 2});
        let cases = [
            (
                "test1: ready count and restarts",
                json!({"spec": two, "status": {"phase": "podPhase",
                    "containerStatuses": [running(true, 3), {"restartCount": 3}]}}),
                ["1/2", "podPhase", "6"],
            ),
            (
                "test2: a waiting container overrides the phase",
                json!({"spec": two, "status": {"phase": "podPhase",
                    "containerStatuses": [running(true, 3), waiting("ContainerWaitingReason", 3)]}}),
                ["1/2", "ContainerWaitingReason", "6"],
            ),
            (
                "test3: the first container overrides the rest",
                json!({"spec": two, "status": {"phase": "podPhase", "containerStatuses": [
                    waiting("ContainerWaitingReason", 3),
                    {"restartCount": 3, "state": {"terminated": {"reason": "ContainerTerminatedReason", "exitCode": 0}}}]}}),
                ["0/2", "ContainerWaitingReason", "6"],
            ),
            (
                "test4: ready is not enough for running",
                json!({"spec": two, "status": {"phase": "podPhase",
                    "containerStatuses": [running(true, 3), {"ready": true, "restartCount": 3}]}}),
                ["1/2", "podPhase", "6"],
            ),
            (
                "test5: the pod's reason over its phase",
                json!({"spec": two, "status": {"phase": "podPhase", "reason": "podReason",
                    "containerStatuses": [running(true, 3), {"ready": true, "restartCount": 3}]}}),
                ["1/2", "podReason", "6"],
            ),
            (
                "test6: one running and one completed, without the Ready condition",
                json!({"spec": two, "status": {"phase": "Running", "containerStatuses": [
                    {"ready": true, "restartCount": 3, "state": {"terminated": {"reason": "Completed", "exitCode": 0}}},
                    running(true, 3)]}}),
                ["1/2", "NotReady", "6"],
            ),
            (
                "test6: one running and one completed, with the Ready condition",
                json!({"spec": two, "status": {"phase": "Running",
                    "conditions": [{"type": "Ready", "status": "True"}],
                    "containerStatuses": [
                    {"ready": true, "restartCount": 3, "state": {"terminated": {"reason": "Completed", "exitCode": 0}}},
                    running(true, 3)]}}),
                ["1/2", "Running", "6"],
            ),
            (
                "test7: an init container restarting",
                json!({"spec": {"initContainers": 1, "containers": 1}, "status": {"phase": "podPhase",
                    "initContainerStatuses": [restarted(false, 3, 10)],
                    "containerStatuses": [{"state": {"waiting": {}}}]}}),
                ["0/1", "Init:0/1", "3 (10s ago)"],
            ),
            (
                "test8: two init containers, the first restarting",
                json!({"spec": {"initContainers": 2, "containers": 1}, "status": {"phase": "podPhase",
                    "initContainerStatuses": [restarted(false, 3, 10), {"state": {"waiting": {}}}],
                    "containerStatuses": [{"state": {"waiting": {}}}]}}),
                ["0/1", "Init:0/2", "3 (10s ago)"],
            ),
            (
                "test9: the first init container done, the second restarting",
                json!({"spec": {"initContainers": 2, "containers": 1}, "status": {"phase": "podPhase",
                    "initContainerStatuses": [{"state": {"terminated": {"exitCode": 0}}}, restarted(false, 3, 10)],
                    "containerStatuses": [{"state": {"waiting": {}}}]}}),
                ["0/1", "Init:1/2", "3 (10s ago)"],
            ),
            (
                "test10: the first init container done after restarts, the second restarting",
                json!({"spec": {"initContainers": 2, "containers": 1}, "status": {"phase": "podPhase",
                    "initContainerStatuses": [
                        {"restartCount": 2, "state": {"terminated": {"exitCode": 0}},
                         "lastState": {"terminated": {"exitCode": 0, "finishedAt": ago(120)}}},
                        restarted(false, 3, 10)],
                    "containerStatuses": [{"state": {"waiting": {}}}]}}),
                ["0/1", "Init:1/2", "5 (10s ago)"],
            ),
            (
                "test11: initialized; only the app container's restarts count",
                json!({"spec": {"initContainers": 1, "containers": 1}, "status": {"phase": "Running",
                    "initContainerStatuses": [
                        {"restartCount": 2, "state": {"terminated": {"exitCode": 0}},
                         "lastState": {"terminated": {"exitCode": 0, "finishedAt": ago(120)}}}],
                    "containerStatuses": [restarted(false, 4, 20)]}}),
                ["0/1", "Running", "4 (20s ago)"],
            ),
            (
                "test12: restarted five days ago",
                json!({"spec": {"containers": 1}, "status": {"phase": "Running",
                    "containerStatuses": [restarted(true, 3, 5 * 86400)]}}),
                ["1/1", "Running", "3 (5d ago)"],
            ),
            (
                "test13: one never restarted, one ten days ago",
                json!({"spec": two, "status": {"phase": "Running",
                    "containerStatuses": [running(true, 0), restarted(true, 3, 10 * 86400)]}}),
                ["2/2", "Running", "3 (10d ago)"],
            ),
            (
                "test14: the latest restart of two",
                json!({"spec": two, "status": {"phase": "Running", "containerStatuses": [
                    restarted(true, 6, 5 * 86400), restarted(true, 3, 20 * 86400)]}}),
                ["2/2", "Running", "9 (5d ago)"],
            ),
            (
                "test15: scheduling gates",
                json!({"spec": two, "status": {"phase": "podPhase", "conditions": [
                    {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}}),
                ["0/2", "SchedulingGated", "0"],
            ),
            (
                "test16: succeeded",
                json!({"spec": {"containers": 1}, "status": {"phase": "Succeeded",
                    "containerStatuses": [terminated("Completed", 0)]}}),
                ["0/1", "Completed", "0"],
            ),
            (
                "test17: failed",
                json!({"spec": {"containers": 1}, "status": {"phase": "Failed",
                    "containerStatuses": [terminated("Error", 1)]}}),
                ["0/1", "Error", "0"],
            ),
            (
                "test18: succeeded and deleted keeps how it ended",
                json!({"metadata": {"name": "p", "deletionTimestamp": ago(10)},
                    "spec": {"containers": 1}, "status": {"phase": "Succeeded",
                    "containerStatuses": [terminated("Completed", 0)]}}),
                ["0/1", "Completed", "0"],
            ),
            (
                "test19: running and deleted",
                json!({"metadata": {"name": "p", "deletionTimestamp": ago(10)},
                    "spec": {"containers": 1}, "status": {"phase": "Running",
                    "containerStatuses": [running(false, 0)]}}),
                ["0/1", "Terminating", "0"],
            ),
            (
                "test20: pending and deleted",
                json!({"metadata": {"name": "p", "deletionTimestamp": ago(10)},
                    "spec": {"containers": 1}, "status": {"phase": "Pending"}}),
                ["0/1", "Terminating", "0"],
            ),
        ];
        for (name, object, want) in cases {
            check(name, object, want);
        }
    }

    /// `TestPrintPodWithRestartableInitContainer`: sidecars count in READY once started, and
    /// keep their restarts after initialization.
    #[test]
    fn upstreams_sidecar_cases() {
        let spec = json!({"initContainers": [
            {"name": "restartable-init-1", "restartPolicy": "Always"},
            {"name": "restartable-init-2", "restartPolicy": "Always"}], "containers": 1});
        let sidecar = |name: &str, state: Value, started: bool| json!({"name": name, "state": state, "started": started});
        let first = |started: bool, state: Value| {
            json!({"name": "restartable-init-1", "restartCount": 3, "state": state, "started": started,
                   "lastState": {"terminated": {"exitCode": 0, "finishedAt": ago(10)}}})
        };
        let (run, wait) = (json!({"running": {}}), json!({"waiting": {}}));
        let error = json!({"terminated": {"reason": "Error", "exitCode": 137}});
        let initialized = |status: &str| json!([{"type": "Initialized", "status": status}]);
        let cases = [
            (
                "test1: the first sidecar running but not started",
                json!({"spec": spec, "status": {"phase": "Pending", "conditions": initialized("False"),
                    "initContainerStatuses": [first(false, run.clone()),
                                              sidecar("restartable-init-2", wait.clone(), false)],
                    "containerStatuses": [{"state": {"waiting": {}}}]}}),
                ["0/3", "Init:0/2", "3 (10s ago)"],
            ),
            (
                "test1: the first sidecar started, the second not",
                json!({"spec": spec, "status": {"phase": "Pending", "conditions": initialized("False"),
                    "initContainerStatuses": [first(true, run.clone()),
                                              sidecar("restartable-init-2", run.clone(), false)],
                    "containerStatuses": [{"state": {"waiting": {}}}]}}),
                ["0/3", "Init:1/2", "3 (10s ago)"],
            ),
            (
                "test2: both sidecars started and the container running",
                json!({"spec": spec, "status": {"phase": "Running", "conditions": initialized("True"),
                    "initContainerStatuses": [first(true, run.clone()),
                                              sidecar("restartable-init-2", run.clone(), true)],
                    "containerStatuses": [restarted(true, 4, 20)]}}),
                ["1/3", "Running", "7 (10s ago)"],
            ),
            (
                "test3: sidecars ended with an error, the container completed",
                json!({"spec": spec, "status": {"phase": "Succeeded", "conditions": initialized("True"),
                    "initContainerStatuses": [first(false, error.clone()),
                                              sidecar("restartable-init-2", error.clone(), false)],
                    "containerStatuses": [{"restartCount": 4,
                        "state": {"terminated": {"reason": "Completed", "exitCode": 0}},
                        "lastState": {"terminated": {"exitCode": 0, "finishedAt": ago(20)}}}]}}),
                ["0/3", "Completed", "7 (10s ago)"],
            ),
            (
                "test4: statuses of containers the spec does not have",
                json!({"spec": {"initContainers": [
                        {"name": "init1", "image": "initimage"},
                        {"name": "sidecar1", "image": "sidecarimage", "restartPolicy": "Always"}],
                      "containers": [{"name": "container1", "image": "containerimage"}]},
                    "status": {"phase": "Running",
                      "initContainerStatuses": [{"name": "initinvalid"}, {"name": "init1"}, {"name": "sidecar1"}],
                      "containerStatuses": [{"name": "containerinvalid"}, {"name": "container1"}]}}),
                ["0/2", "Init:0/2", "0"],
            ),
        ];
        for (name, object, want) in cases {
            check(name, object, want);
        }
    }

    /// The branches of `printPod` upstream's tables leave out: an init container's waiting
    /// reason, signal and exit code; a container's signal and exit code; a lost node.
    #[test]
    fn every_other_branch_of_print_pod() {
        let init = |state: Value| {
            json!({"spec": {"initContainers": 2, "containers": 1}, "status": {"phase": "Pending",
                "initContainerStatuses": [{"restartCount": 2, "state": state}],
                "containerStatuses": [waiting("PodInitializing", 0)]}})
        };
        let app = |state: Value| {
            json!({"spec": {"containers": 1}, "status": {"phase": "Running",
                "containerStatuses": [{"restartCount": 1, "state": state}]}})
        };
        let cases = [
            (
                "an init container backing off",
                init(json!({"waiting": {"reason": "CrashLoopBackOff"}})),
                ["0/1", "Init:CrashLoopBackOff", "2"],
            ),
            (
                "an init container waiting for the pod",
                init(json!({"waiting": {"reason": "PodInitializing"}})),
                ["0/1", "Init:0/2", "2"],
            ),
            (
                "an init container that failed",
                init(json!({"terminated": {"reason": "Error", "exitCode": 1}})),
                ["0/1", "Init:Error", "2"],
            ),
            (
                "an init container killed without a reason",
                init(json!({"terminated": {"exitCode": 137, "signal": 9}})),
                ["0/1", "Init:Signal:9", "2"],
            ),
            (
                "an init container exited without a reason",
                init(json!({"terminated": {"exitCode": 3}})),
                ["0/1", "Init:ExitCode:3", "2"],
            ),
            (
                "a container killed without a reason",
                app(json!({"terminated": {"exitCode": 137, "signal": 9}})),
                ["0/1", "Signal:9", "1"],
            ),
            (
                "a container exited without a reason",
                app(json!({"terminated": {"exitCode": 2}})),
                ["0/1", "ExitCode:2", "1"],
            ),
            (
                "a container pulling its image",
                app(json!({"waiting": {"reason": "ErrImagePull"}})),
                ["0/1", "ErrImagePull", "1"],
            ),
            (
                "a deleted pod on a lost node",
                json!({"metadata": {"name": "p", "deletionTimestamp": ago(10)},
                    "spec": {"containers": 1}, "status": {"phase": "Running", "reason": "NodeLost",
                    "containerStatuses": [running(true, 0)]}}),
                ["1/1", "Unknown", "0"],
            ),
            (
                "a pod without a status",
                json!({"spec": {"containers": 1}}),
                ["0/1", "", "0"],
            ),
        ];
        for (name, object, want) in cases {
            check(name, object, want);
        }
        // JSON of the wrong shape reads as absent, never a panic.
        let odd = json!({"metadata": {"name": 7}, "spec": 5,
            "status": {"phase": ["Running"], "conditions": [1], "containerStatuses": "x",
                       "initContainerStatuses": [{"state": {"terminated": "no"}}]}});
        assert_eq!(
            PodView::from_json(&odd).cells(now()),
            [
                "",
                "0/0",
                "Init:0/0",
                "0",
                "<unknown>",
                "<none>",
                "<none>",
                "<none>",
                "<none>"
            ]
        );
    }

    /// `TestPrintPodwide`: every cell, IP the first of `podIPs`.
    #[test]
    fn upstreams_wide_cases() {
        let gated = |ips: Value| {
            json!({"metadata": {"name": "test1"},
                "spec": {"containers": 2, "nodeName": "test1", "readinessGates": [
                    {"conditionType": "condition1"}, {"conditionType": "condition2"},
                    {"conditionType": "condition3"}]},
                "status": {"phase": "podPhase", "podIPs": ips, "nominatedNodeName": "node1",
                    "conditions": [{"type": "condition1", "status": "False"},
                                   {"type": "condition2", "status": "True"}],
                    "containerStatuses": [running(true, 3), {"restartCount": 3}]}})
        };
        let cases = [
            (
                gated(json!([{"ip": "1.1.1.1"}])),
                [
                    "test1",
                    "1/2",
                    "podPhase",
                    "6",
                    "<unknown>",
                    "1.1.1.1",
                    "test1",
                    "node1",
                    "1/3",
                ],
            ),
            (
                gated(json!([{"ip": "1.1.1.1"}, {"ip": "2001:db8::"}])),
                [
                    "test1",
                    "1/2",
                    "podPhase",
                    "6",
                    "<unknown>",
                    "1.1.1.1",
                    "test1",
                    "node1",
                    "1/3",
                ],
            ),
            (
                json!({"metadata": {"name": "test2", "creationTimestamp": ago(150)},
                    "spec": {"containers": 2},
                    "status": {"phase": "podPhase", "containerStatuses": [
                        running(true, 3), waiting("ContainerWaitingReason", 3)]}}),
                [
                    "test2",
                    "1/2",
                    "ContainerWaitingReason",
                    "6",
                    "2m30s",
                    "<none>",
                    "<none>",
                    "<none>",
                    "<none>",
                ],
            ),
        ];
        for (object, want) in cases {
            assert_eq!(pod_cells(&pod(object), now()), want);
        }
    }

    /// `TestPrintPodConditions`: only a finished pod's row carries `Completed`.
    #[test]
    fn upstreams_row_condition_cases() {
        for (phase, status, condition) in [
            ("Running", "Running", None),
            (
                "Succeeded",
                "Succeeded",
                Some(("Succeeded", "The pod has completed successfully.")),
            ),
            ("Failed", "Failed", Some(("Failed", "The pod failed."))),
        ] {
            let object = json!({"spec": {"containers": 2}, "status": {"phase": phase,
                "containerStatuses": [running(true, 3), {"restartCount": 3}]}});
            check(phase, object, ["1/2", status, "6"]);
            assert_eq!(
                pod_row_condition(phase),
                condition.map(|(reason, message)| RowCondition {
                    type_: "Completed",
                    status: "True",
                    reason,
                    message
                })
            );
        }
    }

    #[test]
    fn human_durations() {
        for (seconds, text) in [
            (-2, "<invalid>"),
            (-1, "0s"),
            (5, "5s"),
            (119, "119s"),
            (120, "2m"),
            (150, "2m30s"),
            (600, "10m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 60, "3h1m"),
            (9 * 3600, "9h"),
            (2 * 86400, "2d"),
            (3 * 86400 + 3600, "3d1h"),
            (30 * 86400, "30d"),
            (730 * 86400, "2y"),
            (800 * 86400, "2y70d"),
            (9 * 365 * 86400, "9y"),
        ] {
            assert_eq!(human_duration(seconds), text, "{seconds}");
        }
        assert_eq!(since(None, now()), "<unknown>");
        // Whole seconds, towards zero, as Go's `int(d.Seconds())`.
        let t: Timestamp = "2025-12-31T23:57:29.5Z".parse().unwrap();
        assert_eq!(since(Some(t), now()), "2m30s");
    }
}
