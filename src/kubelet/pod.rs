//! One worker per pod: it starts the pod's containers through the runtime, keeps its status
//! current, restarts containers by `restartPolicy` with the real back-off (10 s doubling to
//! 5 min), and on deletion stops them within the grace period and removes the pod.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::{Kubelet, now};
use crate::flow::FlowEvent;
use crate::runtime::{ContainerConfig, ContainerState, SandboxConfig};

/// The first restart back-off, doubled per crash up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How often running containers are looked at.
const SYNC: Duration = Duration::from_millis(500);

/// The handle to a pod's worker.
pub(super) struct Worker {
    latest: watch::Sender<Option<Pod>>,
}

impl Worker {
    pub(super) fn spawn(kubelet: Arc<Kubelet>) -> Worker {
        let (latest, rx) = watch::channel(None);
        tokio::spawn(run(kubelet, rx));
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

/// A container as the worker tracks it.
struct Running {
    id: Option<String>,
    restarts: i32,
    backoff: Duration,
    /// While crash-looping: when the next start may happen.
    not_before: Option<tokio::time::Instant>,
    last_terminated: Option<Value>,
    waiting: Option<(String, String)>,
}

fn ip_for(kubelet: &Kubelet, uid: &str) -> String {
    // A stable address in the node's pod CIDR, from the pod's uid.
    let n = uid
        .bytes()
        .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    format!("10.244.{}.{}", kubelet.config.index, 2 + n % 250)
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

fn container_config(c: &k8s_openapi::api::core::v1::Container) -> ContainerConfig {
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
    }
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
    if matches!(phase.as_str(), "Succeeded" | "Failed") && pod.metadata.deletion_timestamp.is_none()
    {
        return;
    }
    let runtime = kubelet.runtime.clone();
    let Ok(sandbox) = runtime
        .run_pod_sandbox(&SandboxConfig {
            uid: uid.clone(),
            namespace: namespace.clone(),
            name: name.clone(),
        })
        .await
    else {
        return;
    };
    let ip = ip_for(&kubelet, &uid);
    let start_time = now();
    let spec = pod.spec.clone().unwrap_or_default();
    let mut containers: HashMap<String, Running> = spec
        .containers
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                Running {
                    id: None,
                    restarts: 0,
                    backoff: FIRST_BACKOFF,
                    not_before: None,
                    last_terminated: None,
                    waiting: Some(("ContainerCreating".into(), String::new())),
                },
            )
        })
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
            for (cname, c) in &containers {
                let Some(id) = &c.id else { continue };
                let running = runtime
                    .container_status(id)
                    .await
                    .is_ok_and(|s| s.state == ContainerState::Running);
                if running {
                    event(
                        &kubelet,
                        &pod,
                        "Normal",
                        "Killing",
                        format!("Stopping container {cname}"),
                    )
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
            let _ = pods.delete(&name, &params).await;
            return;
        }
        // Start what should run.
        for c in &spec.containers {
            let state = containers
                .get_mut(&c.name)
                .expect("every container is tracked");
            let running = match &state.id {
                Some(id) => runtime.container_status(id).await.ok(),
                None => None,
            };
            if let Some(status) = &running {
                if status.state == ContainerState::Exited && state.not_before.is_none() {
                    let code = status.exit_code.unwrap_or(0);
                    state.last_terminated = Some(json!({"terminated": {
                        "exitCode": code, "reason": status.reason, "containerID": format!("sim://{}", status.id),
                        "startedAt": status.started_at.map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
                        "finishedAt": status.finished_at.map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
                    }}));
                    let restart = policy == "Always" || (policy == "OnFailure" && code != 0);
                    if restart {
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
                            &kubelet,
                            &pod,
                            "Warning",
                            "BackOff",
                            "Back-off restarting failed container".into(),
                        )
                        .await;
                        state.backoff = (state.backoff * 2).min(MAX_BACKOFF);
                    }
                }
                if status.state != ContainerState::Exited || state.not_before.is_none() {
                    continue;
                }
            }
            if state
                .not_before
                .is_some_and(|t| tokio::time::Instant::now() < t)
            {
                continue;
            }
            if let Some(old) = state.id.take() {
                let _ = runtime.remove_container(&old).await;
                state.restarts += 1;
            }
            let config = container_config(c);
            event(
                &kubelet,
                &pod,
                "Normal",
                "Pulling",
                format!("Pulling image \"{}\"", config.image),
            )
            .await;
            if let Err(error) = runtime.pull_image(&config.image).await {
                event(
                    &kubelet,
                    &pod,
                    "Warning",
                    "Failed",
                    format!("Failed to pull image \"{}\": {error}", config.image),
                )
                .await;
                state.waiting = Some(("ErrImagePull".into(), error.to_string()));
                state.not_before = Some(tokio::time::Instant::now() + state.backoff);
                state.backoff = (state.backoff * 2).min(MAX_BACKOFF);
                continue;
            }
            event(
                &kubelet,
                &pod,
                "Normal",
                "Pulled",
                format!("Successfully pulled image \"{}\"", config.image),
            )
            .await;
            let Ok(id) = runtime.create_container(&sandbox, &config).await else {
                continue;
            };
            event(
                &kubelet,
                &pod,
                "Normal",
                "Created",
                format!("Created container: {}", c.name),
            )
            .await;
            kubelet.flow.stepper().gate().await;
            if runtime.start_container(&id).await.is_ok() {
                event(
                    &kubelet,
                    &pod,
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
        // Report.
        let status = status_of(&kubelet, &pod, &containers, &ip, &start_time, &policy).await;
        if status != last_status {
            let _ = pods
                .patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": status})),
                )
                .await;
            last_status = status;
        }
        if matches!(last_status["phase"].as_str(), Some("Succeeded" | "Failed"))
            && pod.metadata.deletion_timestamp.is_none()
        {
            // Finished: nothing more to run until the pod is deleted.
            if latest.changed().await.is_err() {
                return;
            }
        } else {
            let _ = tokio::time::timeout(SYNC, latest.changed()).await;
        }
        let next = latest.borrow().clone();
        match next {
            Some(p) => pod = p,
            None => {
                let _ = runtime.remove_pod_sandbox(&sandbox).await;
                return;
            }
        }
    }
}

async fn status_of(
    kubelet: &Kubelet,
    pod: &Pod,
    containers: &HashMap<String, Running>,
    ip: &str,
    start_time: &str,
    policy: &str,
) -> Value {
    let spec = pod.spec.clone().unwrap_or_default();
    let mut statuses = Vec::new();
    let (mut ready, mut finished, mut failed) = (0, 0, 0);
    for c in &spec.containers {
        let state = &containers[&c.name];
        let current = match &state.id {
            Some(id) => kubelet.runtime.container_status(id).await.ok(),
            None => None,
        };
        let (state_json, is_ready) = match (&state.waiting, &current) {
            (Some((reason, message)), _) => (
                json!({"waiting": {"reason": reason, "message": message}}),
                false,
            ),
            (None, Some(s)) if s.state == ContainerState::Running => (
                json!({"running": {"startedAt": s.started_at.map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())}}),
                true,
            ),
            (None, Some(s)) if s.state == ContainerState::Exited => {
                finished += 1;
                if s.exit_code != Some(0) {
                    failed += 1;
                }
                (
                    json!({"terminated": {
                        "exitCode": s.exit_code, "reason": s.reason, "containerID": format!("sim://{}", s.id),
                        "startedAt": s.started_at.map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
                        "finishedAt": s.finished_at.map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
                    }}),
                    false,
                )
            }
            _ => (json!({"waiting": {"reason": "ContainerCreating"}}), false),
        };
        if is_ready {
            ready += 1;
        }
        let mut entry = json!({
            "name": c.name, "image": c.image, "imageID": format!("sim.local/{}", c.image.clone().unwrap_or_default()),
            "ready": is_ready, "started": is_ready, "restartCount": state.restarts, "state": state_json,
        });
        if let Some(id) = &state.id {
            entry["containerID"] = json!(format!("sim://{id}"));
        }
        if let Some(last) = &state.last_terminated {
            entry["lastState"] = last.clone();
        }
        statuses.push(entry);
    }
    let total = spec.containers.len();
    let all_ready = ready == total && total > 0;
    let phase = if finished == total
        && total > 0
        && (policy == "Never" || (policy == "OnFailure" && failed == 0))
    {
        if failed > 0 { "Failed" } else { "Succeeded" }
    } else if ready > 0 || finished > 0 {
        "Running"
    } else {
        "Pending"
    };
    let condition = |kind: &str, ok: bool| json!({"type": kind, "status": if ok { "True" } else { "False" }, "lastProbeTime": null, "lastTransitionTime": start_time});
    json!({
        "phase": phase,
        "conditions": [
            condition("PodReadyToStartContainers", true),
            condition("Initialized", true),
            condition("Ready", all_ready),
            condition("ContainersReady", all_ready),
            condition("PodScheduled", true),
        ],
        "hostIP": "127.0.0.1",
        "hostIPs": [{"ip": "127.0.0.1"}],
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": start_time,
        "containerStatuses": statuses,
    })
}
