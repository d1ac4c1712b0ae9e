//! One worker per pod: it runs the pod's init containers one at a time, in order, then its
//! containers, through the runtime; keeps its status current; restarts containers by
//! `restartPolicy` with the real back-off (10 s doubling to 5 min, back to 10 s after a container
//! ran for 10 minutes); and on deletion stops them within the grace period and removes the pod.
//! A worker started for a pod whose sandbox the runtime already has (the kubelet was stopped and
//! started again) adopts that sandbox and its containers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::{Kubelet, now};
use crate::flow::FlowEvent;
use crate::runtime::{ContainerConfig, ContainerState, ContainerStatus, SandboxConfig};

/// The first restart back-off, doubled per crash up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How often running containers are looked at.
const SYNC: Duration = Duration::from_secs(1);

/// A container that ran at least this long before it exited restarts with the first back-off
/// again (the real kubelet forgets a container's back-off after twice its maximum).
const BACKOFF_RESET: Duration = Duration::from_secs(600);

/// The handle to a pod's worker.
pub(super) struct Worker {
    latest: watch::Sender<Option<Pod>>,
}

impl Worker {
    /// Starts a worker in `tasks` (the kubelet's: they end when the kubelet stops).
    pub(super) fn spawn(kubelet: Arc<Kubelet>, tasks: &mut tokio::task::JoinSet<()>) -> Worker {
        let (latest, rx) = watch::channel(None);
        tasks.spawn(run(kubelet, rx));
        Worker { latest }
    }

    /// Hands the worker the pod as the API server has it now.
    pub(super) fn update(&self, pod: Pod) {
        self.latest.send_replace(Some(pod));
    }

    /// The pod is gone from the API server: its containers go too.
    pub(super) fn deleted(&self) {
        self.latest.send_replace(None);
    }
}

/// Which of a pod's lists a container is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `initContainers`: run one at a time, in order, each to successful completion.
    Init,
    /// `containers`: run together once every init container has succeeded.
    Regular,
}

/// Whether a container that exited with `code` is started again, by `restartPolicy`.
fn restarts(kind: Kind, policy: &str, code: i32) -> bool {
    match kind {
        Kind::Init => code != 0 && policy != "Never",
        Kind::Regular => policy == "Always" || (policy == "OnFailure" && code != 0),
    }
}

/// A container as the worker tracks it.
struct Running {
    id: Option<String>,
    restarts: i32,
    backoff: Duration,
    /// The exited container whose exit has been dealt with.
    handled: Option<String>,
    /// While backing off: when the next start may happen.
    not_before: Option<tokio::time::Instant>,
    last_terminated: Option<Value>,
    waiting: Option<(String, String)>,
    /// An init container that has succeeded.
    done: bool,
}

impl Running {
    /// The container called `name` as the runtime has it (the newest attempt), or a fresh one.
    fn adopt(name: &str, existing: &[ContainerStatus]) -> Running {
        let newest = existing
            .iter()
            .filter(|c| c.name == name)
            .max_by_key(|c| c.attempt);
        Running {
            id: newest.map(|c| c.id.clone()),
            restarts: newest.map_or(0, |c| c.attempt as i32),
            backoff: FIRST_BACKOFF,
            handled: None,
            not_before: None,
            last_terminated: None,
            waiting: match newest {
                Some(_) => None,
                None => Some(("ContainerCreating".into(), String::new())),
            },
            done: false,
        }
    }
}

async fn event(kubelet: &Kubelet, pod: &Pod, kind: &str, reason: &str, message: String) {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let mut flow = FlowEvent::new(
        format!("kubelet/{}", kubelet.config.name),
        "apiserver",
        reason.to_uppercase(),
    )
    .object("Pod", &namespace, &name)
    .detail(message.clone());
    flow.uid = pod.metadata.uid.clone().unwrap_or_default();
    kubelet.flow.emit(flow);
    let about = crate::events::Involved {
        kind: "Pod",
        namespace: &namespace,
        name: &name,
        uid: pod.metadata.uid.as_deref().unwrap_or_default(),
    };
    let node = kubelet.config.name.as_str();
    let source = crate::events::Source {
        component: "kubelet",
        host: Some(node),
        instance: Some(node),
    };
    crate::events::record(&kubelet.client, &about, &source, kind, reason, &message).await;
}

fn container_config(c: &k8s_openapi::api::core::v1::Container, attempt: i32) -> ContainerConfig {
    ContainerConfig {
        name: c.name.clone(),
        image: c.image.clone().unwrap_or_default(),
        command: c.command.clone().unwrap_or_default(),
        args: c.args.clone().unwrap_or_default(),
        env: c
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
            .collect(),
        attempt: attempt.max(0) as u32,
        ..ContainerConfig::default()
    }
}

fn rfc3339(t: Option<jiff::Timestamp>) -> Option<String> {
    t.map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
}

fn terminated(s: &ContainerStatus) -> Value {
    json!({"terminated": {
        "exitCode": s.exit_code, "reason": s.reason, "containerID": format!("sim://{}", s.id),
        "startedAt": rfc3339(s.started_at), "finishedAt": rfc3339(s.finished_at),
    }})
}

async fn run(kubelet: Arc<Kubelet>, mut latest: watch::Receiver<Option<Pod>>) {
    let Ok(first) = latest.wait_for(Option::is_some).await.map(|p| p.clone()) else {
        return;
    };
    let Some(mut pod) = first else { return };
    let (namespace, name, uid) = (
        pod.metadata.namespace.clone().unwrap_or_default(),
        pod.metadata.name.clone().unwrap_or_default(),
        pod.metadata.uid.clone().unwrap_or_default(),
    );
    let pods: Api<Pod> = Api::namespaced(kubelet.client.clone(), &namespace);
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    let runtime = kubelet.runtime.clone();
    // A sandbox the runtime already has for this pod (this kubelet was stopped and started
    // again) is adopted with its containers, as the real kubelet does after a restart.
    let existing = runtime
        .list_pod_sandboxes()
        .await
        .into_iter()
        .find(|(_, config)| config.uid == uid)
        .map(|(id, _)| id);
    if matches!(phase.as_str(), "Succeeded" | "Failed")
        && pod.metadata.deletion_timestamp.is_none()
        && existing.is_none()
    {
        return;
    }
    let sandbox = match existing {
        Some(id) => id,
        None => {
            let spec = pod.spec.as_ref();
            let config = SandboxConfig {
                uid: uid.clone(),
                namespace: namespace.clone(),
                name: name.clone(),
                hostname: spec
                    .and_then(|s| s.hostname.clone())
                    .unwrap_or_else(|| name.clone()),
                node: kubelet.config.name.clone(),
                pod_cidr: kubelet.config.pod_cidr(),
                dns_search: vec![
                    format!("{namespace}.svc.cluster.local"),
                    "svc.cluster.local".into(),
                    "cluster.local".into(),
                ],
                dns_servers: Vec::new(),
            };
            match runtime.run_pod_sandbox(&config).await {
                Ok(id) => id,
                Err(_) => return,
            }
        }
    };
    let adopted = runtime.list_containers(&sandbox).await.unwrap_or_default();
    let ip = runtime
        .pod_sandbox_status(&sandbox)
        .await
        .ok()
        .and_then(|s| s.ip)
        .unwrap_or_default();
    let start_time = pod
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map(|t| t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(now);
    let spec = pod.spec.clone().unwrap_or_default();
    let init = spec.init_containers.clone().unwrap_or_default();
    let mut containers: HashMap<String, Running> = init
        .iter()
        .chain(&spec.containers)
        .map(|c| (c.name.clone(), Running::adopt(&c.name, &adopted)))
        .collect();
    let policy = spec
        .restart_policy
        .clone()
        .unwrap_or_else(|| "Always".into());
    let mut last_status = Value::Null;
    loop {
        // Deletion: stop everything within the grace period, then let the pod go.
        if pod.metadata.deletion_timestamp.is_some() {
            let grace = Duration::from_secs(
                pod.metadata
                    .deletion_grace_period_seconds
                    .unwrap_or(30)
                    .max(0) as u64,
            );
            for c in init.iter().chain(&spec.containers) {
                let Some(id) = &containers[&c.name].id else {
                    continue;
                };
                let running = runtime
                    .container_status(id)
                    .await
                    .is_ok_and(|s| s.state == ContainerState::Running);
                if running {
                    Box::pin(event(
                        &kubelet,
                        &pod,
                        "Normal",
                        "Killing",
                        format!("Stopping container {}", c.name),
                    ))
                    .await;
                    let _ = runtime.stop_container(id, grace).await;
                }
            }
            let _ = runtime.remove_pod_sandbox(&sandbox).await;
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(uid.clone()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            let _ = Box::pin(pods.delete(&name, &params)).await;
            return;
        }
        // Init containers one at a time, in order; then every container.
        let mut initializing = false;
        for c in &init {
            let state = containers.get_mut(&c.name).expect("tracked");
            if state.done {
                continue;
            }
            Box::pin(sync_container(
                &kubelet,
                &pod,
                &sandbox,
                c,
                state,
                Kind::Init,
                &policy,
            ))
            .await;
            initializing = !state.done;
            if initializing {
                break;
            }
        }
        if !initializing {
            for c in &spec.containers {
                let state = containers.get_mut(&c.name).expect("tracked");
                Box::pin(sync_container(
                    &kubelet,
                    &pod,
                    &sandbox,
                    c,
                    state,
                    Kind::Regular,
                    &policy,
                ))
                .await;
            }
        }
        // Report.
        // The big futures are boxed so that an idle worker (most of them) stays small.
        let status = Box::pin(status_of(
            &kubelet,
            &pod,
            &containers,
            &ip,
            &start_time,
            &policy,
        ))
        .await;
        if status != last_status {
            let _ = Box::pin(pods.patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": status})),
            ))
            .await;
            last_status = status;
        }
        let finished = matches!(last_status["phase"].as_str(), Some("Succeeded" | "Failed"))
            && pod.metadata.deletion_timestamp.is_none();
        // Finished: nothing more to run until the pod changes. Otherwise look again after SYNC
        // (the real kubelet's PLEG relists every second), or as soon as the pod changes.
        let woke = if finished {
            Ok(latest.changed().await)
        } else {
            tokio::time::timeout(SYNC, latest.changed()).await
        };
        match woke {
            Ok(Ok(())) => {
                let next = latest.borrow_and_update().clone();
                match next {
                    Some(p) => pod = p,
                    None => {
                        let _ = runtime.remove_pod_sandbox(&sandbox).await;
                        return;
                    }
                }
            }
            // The kubelet is gone.
            Ok(Err(_)) => return,
            Err(_) => {}
        }
    }
}

/// Looks at one container and does what its state calls for: notes an exit (and whether and
/// when it restarts, with back-off), or pulls, creates and starts it.
async fn sync_container(
    kubelet: &Kubelet,
    pod: &Pod,
    sandbox: &str,
    c: &k8s_openapi::api::core::v1::Container,
    state: &mut Running,
    kind: Kind,
    policy: &str,
) {
    let runtime = &kubelet.runtime;
    let (namespace, name, uid) = (
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.uid.as_deref().unwrap_or_default(),
    );
    let current = match &state.id {
        Some(id) => runtime.container_status(id).await.ok(),
        None => None,
    };
    if let Some(status) = &current {
        if status.state != ContainerState::Exited {
            return;
        }
        if state.handled.as_deref() != Some(status.id.as_str()) {
            state.handled = Some(status.id.clone());
            let code = status.exit_code.unwrap_or(0);
            if kind == Kind::Init && code == 0 {
                state.done = true;
                return;
            }
            if !restarts(kind, policy, code) {
                return;
            }
            let ran = match (status.started_at, status.finished_at) {
                (Some(a), Some(b)) => b.duration_since(a).unsigned_abs(),
                _ => Duration::ZERO,
            };
            if ran >= BACKOFF_RESET {
                state.backoff = FIRST_BACKOFF;
            }
            state.last_terminated = Some(terminated(status));
            state.not_before = Some(tokio::time::Instant::now() + state.backoff);
            state.waiting = Some((
                "CrashLoopBackOff".into(),
                format!(
                    "back-off {}s restarting failed container={} pod={name}_{namespace}({uid})",
                    state.backoff.as_secs(),
                    c.name
                ),
            ));
            event(
                kubelet,
                pod,
                "Warning",
                "BackOff",
                "Back-off restarting failed container".into(),
            )
            .await;
            state.backoff = (state.backoff * 2).min(MAX_BACKOFF);
        }
        if state.not_before.is_none() {
            // Exited for good.
            return;
        }
    }
    let image = c.image.clone().unwrap_or_default();
    if let Some(t) = state.not_before
        && tokio::time::Instant::now() < t
    {
        if state
            .waiting
            .as_ref()
            .is_some_and(|(r, _)| r == "ErrImagePull")
        {
            state.waiting = Some((
                "ImagePullBackOff".into(),
                format!("Back-off pulling image \"{image}\""),
            ));
            event(
                kubelet,
                pod,
                "Normal",
                "BackOff",
                format!("Back-off pulling image \"{image}\""),
            )
            .await;
        }
        return;
    }
    if let Some(old) = state.id.take() {
        let _ = runtime.remove_container(&old).await;
        state.restarts += 1;
    }
    let config = container_config(c, state.restarts);
    event(
        kubelet,
        pod,
        "Normal",
        "Pulling",
        format!("Pulling image \"{image}\""),
    )
    .await;
    if let Err(error) = runtime.pull_image(&image).await {
        event(
            kubelet,
            pod,
            "Warning",
            "Failed",
            format!("Failed to pull image \"{image}\": {error}"),
        )
        .await;
        event(
            kubelet,
            pod,
            "Warning",
            "Failed",
            "Error: ErrImagePull".into(),
        )
        .await;
        state.waiting = Some(("ErrImagePull".into(), error.to_string()));
        state.not_before = Some(tokio::time::Instant::now() + state.backoff);
        state.backoff = (state.backoff * 2).min(MAX_BACKOFF);
        return;
    }
    event(
        kubelet,
        pod,
        "Normal",
        "Pulled",
        format!("Successfully pulled image \"{image}\""),
    )
    .await;
    let Ok(id) = runtime.create_container(sandbox, &config).await else {
        return;
    };
    event(
        kubelet,
        pod,
        "Normal",
        "Created",
        format!("Created container: {}", c.name),
    )
    .await;
    kubelet.flow.stepper().gate().await;
    if runtime.start_container(&id).await.is_ok() {
        event(
            kubelet,
            pod,
            "Normal",
            "Started",
            format!("Started container {}", c.name),
        )
        .await;
    }
    state.id = Some(id);
    state.waiting = None;
    state.not_before = None;
}

/// One entry of `containerStatuses` or `initContainerStatuses`; with whether the container is
/// ready, and its exit code if it has exited for good.
async fn container_entry(
    kubelet: &Kubelet,
    c: &k8s_openapi::api::core::v1::Container,
    state: &Running,
    kind: Kind,
) -> (Value, bool, Option<i32>) {
    let current = match &state.id {
        Some(id) => kubelet.runtime.container_status(id).await.ok(),
        None => None,
    };
    let mut exited = None;
    let (state_json, running) = match (&state.waiting, &current) {
        (Some((reason, message)), _) => (
            json!({"waiting": {"reason": reason, "message": message}}),
            false,
        ),
        (None, Some(s)) if s.state == ContainerState::Running => (
            json!({"running": {"startedAt": rfc3339(s.started_at)}}),
            true,
        ),
        (None, Some(s)) if s.state == ContainerState::Exited => {
            exited = s.exit_code;
            (terminated(s), false)
        }
        _ => (json!({"waiting": {"reason": "PodInitializing"}}), false),
    };
    // An init container is ready once it has succeeded; others while they run.
    let ready = match kind {
        Kind::Init => state.done,
        Kind::Regular => running,
    };
    let mut entry = json!({
        "name": c.name, "image": c.image, "imageID": format!("sim.local/{}", c.image.clone().unwrap_or_default()),
        "ready": ready, "started": running, "restartCount": state.restarts, "state": state_json,
    });
    if let Some(id) = &state.id {
        entry["containerID"] = json!(format!("sim://{id}"));
    }
    if let Some(last) = &state.last_terminated {
        entry["lastState"] = last.clone();
    }
    (entry, ready, exited)
}

async fn status_of(
    kubelet: &Kubelet,
    pod: &Pod,
    containers: &HashMap<String, Running>,
    ip: &str,
    start_time: &str,
    policy: &str,
) -> Value {
    let empty = k8s_openapi::api::core::v1::PodSpec::default();
    let spec = pod.spec.as_ref().unwrap_or(&empty);
    let init: &[k8s_openapi::api::core::v1::Container] =
        spec.init_containers.as_deref().unwrap_or_default();
    let mut init_statuses = Vec::new();
    let mut incomplete = Vec::new();
    let mut init_failed = false;
    for c in init {
        let state = &containers[&c.name];
        let (entry, done, exited) = container_entry(kubelet, c, state, Kind::Init).await;
        if !done {
            incomplete.push(c.name.clone());
            init_failed |= exited.is_some_and(|code| !restarts(Kind::Init, policy, code))
                && state.not_before.is_none();
        }
        init_statuses.push(entry);
    }
    let mut statuses = Vec::new();
    let mut unready = Vec::new();
    let (mut running, mut finished, mut failed) = (0, 0, 0);
    for c in &spec.containers {
        let state = &containers[&c.name];
        let (mut entry, ready, exited) = container_entry(kubelet, c, state, Kind::Regular).await;
        if !incomplete.is_empty() && state.id.is_none() {
            entry["state"] = json!({"waiting": {"reason": "PodInitializing"}});
        }
        if ready {
            running += 1;
        } else {
            unready.push(c.name.clone());
        }
        if let Some(code) = exited {
            finished += 1;
            if code != 0 {
                failed += 1;
            }
        }
        statuses.push(entry);
    }
    let total = spec.containers.len();
    let initialized = incomplete.is_empty();
    let all_ready = unready.is_empty() && total > 0;
    let phase = if init_failed {
        "Failed"
    } else if !initialized {
        "Pending"
    } else if finished == total
        && total > 0
        && (policy == "Never" || (policy == "OnFailure" && failed == 0))
    {
        if failed > 0 { "Failed" } else { "Succeeded" }
    } else if running > 0 || finished > 0 {
        "Running"
    } else {
        "Pending"
    };
    // A condition's lastTransitionTime moves only when its status changes.
    let previous = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let now = now();
    let condition = |kind: &str, ok: bool, reason: &str, message: String| {
        let status = if ok { "True" } else { "False" };
        let since = previous
            .iter()
            .find(|c| c.type_ == kind && c.status == status)
            .and_then(|c| c.last_transition_time.as_ref())
            .map(|t| t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_else(|| now.clone());
        let mut c = json!({"type": kind, "status": status, "lastProbeTime": null, "lastTransitionTime": since});
        if !ok && !reason.is_empty() {
            c["reason"] = json!(reason);
            c["message"] = json!(message);
        }
        c
    };
    let list = |names: &[String]| format!("[{}]", names.join(" "));
    let finished_pod = matches!(phase, "Succeeded" | "Failed");
    let (not_ready_reason, not_ready_message) = if finished_pod {
        ("PodCompleted", String::new())
    } else {
        (
            "ContainersNotReady",
            format!("containers with unready status: {}", list(&unready)),
        )
    };
    let mut status = json!({
        "phase": phase,
        "conditions": [
            condition("PodReadyToStartContainers", true, "", String::new()),
            condition("Initialized", initialized, "ContainersNotInitialized",
                format!("containers with incomplete status: {}", list(&incomplete))),
            condition("Ready", all_ready, not_ready_reason, not_ready_message.clone()),
            condition("ContainersReady", all_ready, not_ready_reason, not_ready_message),
            condition("PodScheduled", true, "", String::new()),
        ],
        "hostIP": "127.0.0.1",
        "hostIPs": [{"ip": "127.0.0.1"}],
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": start_time,
        "containerStatuses": statuses,
    });
    if !init.is_empty() {
        status["initContainerStatuses"] = json!(init_statuses);
    }
    status
}
