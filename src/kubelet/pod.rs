//! One worker per pod: it runs the pod's init containers one at a time, in order, then its
//! containers, through the runtime; keeps its status current; restarts containers by
//! `restartPolicy` with the real back-off (the first restart at once, then 10 s doubling to 5 min,
//! forgotten after a container ran for 10 minutes); and acts on probes. On deletion it does what
//! upstream's pod worker does once a pod is terminating: runs preStop hooks, stops the containers
//! within the grace period and then the sandbox, writes the pod's final status (its containers
//! terminated, not ready, a terminal phase) until the API server has it, removes the pod's
//! directory, deletes the pod for good and removes its sandbox. A worker started for a pod whose
//! sandbox the runtime already has (the kubelet was stopped and started again) adopts that
//! sandbox and its containers.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Pod, PodSpec, Probe};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;

use super::env::{self, NodeFacts, Sources};
use super::probes::{self, Attempt, Probing, Target};
use super::status::StatusWriter;
use super::{Kubelet, config, now, phase, volumes};
use crate::flow::FlowEvent;
use crate::runtime::{ContainerConfig, ContainerState, ContainerStatus, Mount, SandboxConfig};

/// The first restart back-off, doubled per crash up to [`MAX_BACKOFF`]. As upstream's, the
/// first restart of a container (or the first after its back-off was forgotten) is immediate.
const FIRST_BACKOFF: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How often running containers are looked at.
const SYNC: Duration = Duration::from_secs(1);

/// How often a pod's volumes are set up again (ConfigMap and Secret files follow their objects).
const VOLUME_RESYNC: Duration = Duration::from_secs(10);
/// The same failure (a config error, a failed mount) is reported by an event at most this often
/// while it lasts.
const REPORT_EVERY: Duration = Duration::from_secs(10);
/// The least grace a container gets after its preStop hook, as upstream's.
const MIN_GRACE: Duration = Duration::from_secs(2);

/// A container that ran at least this long before it exited restarts with the first back-off
/// again (the real kubelet forgets a container's back-off after twice its maximum).
const BACKOFF_RESET: Duration = Duration::from_secs(600);

/// The handle to a pod's worker.
pub(super) struct Worker {
    latest: watch::Sender<Option<Arc<Kept>>>,
}

/// A pod as a worker keeps it between syncs: without its volumes, which are kept encoded and
/// decoded ([`Kept::whole`]) only where they are read, when volumes are set up and when a
/// container is made. k8s-openapi's `Volume` takes 3 KiB in memory whatever it holds (every
/// volume source is inline), and every pod has at least its service account's: a kubelet's
/// 100 pods would otherwise hold 300 KiB of mostly empty volume sources, 10,000 pods 30 MiB.
/// Everything else reads the pod through `Deref`.
pub(super) struct Kept {
    pod: Pod,
    /// `spec.volumes`, as JSON.
    volumes: Option<Box<[u8]>>,
}

impl Kept {
    pub(super) fn new(mut pod: Pod) -> Kept {
        let volumes = pod
            .spec
            .as_mut()
            .and_then(|s| s.volumes.take())
            .and_then(|v| serde_json::to_vec(&v).ok())
            .map(Vec::into_boxed_slice);
        Kept { pod, volumes }
    }

    /// The pod with its volumes.
    pub(super) fn whole(&self) -> Pod {
        let mut pod = self.pod.clone();
        if let (Some(spec), Some(volumes)) = (pod.spec.as_mut(), &self.volumes) {
            spec.volumes = serde_json::from_slice(volumes).ok();
        }
        pod
    }

    /// Whether `other` has the same spec, volumes included.
    fn same_spec(&self, other: &Kept) -> bool {
        self.pod.spec == other.pod.spec && self.volumes == other.volumes
    }
}

impl std::ops::Deref for Kept {
    type Target = Pod;

    fn deref(&self) -> &Pod {
        &self.pod
    }
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
        self.latest.send_replace(Some(Arc::new(Kept::new(pod))));
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
    /// `ephemeralContainers` (`kubectl debug`): started once each, never restarted, never
    /// probed, in the running pod.
    Ephemeral,
}

/// Whether a container that exited with `code` is started again, by `restartPolicy`.
fn restarts(kind: Kind, policy: &str, code: i32) -> bool {
    match kind {
        Kind::Init => code != 0 && policy != "Never",
        Kind::Regular => policy == "Always" || (policy == "OnFailure" && code != 0),
        Kind::Ephemeral => false,
    }
}

/// The pod's ephemeral containers as containers (they have the same fields, fewer allowed),
/// each with the name of the container whose process namespace it joins.
fn ephemeral_containers(pod: &Pod) -> Vec<(Container, Option<String>)> {
    spec_of(pod)
        .ephemeral_containers
        .iter()
        .flatten()
        .filter_map(|e| {
            let container = serde_json::to_value(e)
                .and_then(serde_json::from_value::<Container>)
                .ok()?;
            Some((container, e.target_container_name.clone()))
        })
        .collect()
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
    /// The exit before the current attempt (`lastState`).
    last_terminated: Option<Value>,
    /// The exit before `last_terminated`: a deleted pod's container in back-off shows its
    /// last exit as its state, and this one as its `lastState`.
    earlier_terminated: Option<Value>,
    waiting: Option<(String, String)>,
    /// An init container that has succeeded.
    done: bool,
    /// The probes of the running container.
    probing: Option<Probing>,
    /// The failure last reported by an event, and when.
    reported: Option<(String, Instant)>,
    /// The image event last reported (`already present`, `ErrImageNeverPull`), and when.
    image_reported: Option<(String, Instant)>,
    /// The termination message of an exited container (its id, the message).
    message: Option<(String, String)>,
    /// The image's id as the runtime resolved it (`imageID`).
    image_id: Option<String>,
}

/// The containers a worker tracks, by name, in the spec's order. A pod has a few, so a list
/// of exactly their number rather than a map, whose smallest table holds four.
struct Tracked(Vec<(String, Running)>);

impl Tracked {
    fn get_mut(&mut self, name: &str) -> Option<&mut Running> {
        self.0.iter_mut().find(|(n, _)| n == name).map(|(_, r)| r)
    }

    /// Whether `status` shows a container (init or regular) terminated whose exit this kubelet
    /// has not noted yet: the runtime reported it after this round looked at the container.
    fn unnoted_exit(&self, status: &Value) -> bool {
        ["initContainerStatuses", "containerStatuses"]
            .iter()
            .filter_map(|list| status[*list].as_array())
            .flatten()
            .filter(|entry| entry["state"]["terminated"].is_object())
            .any(|entry| {
                let shown = entry["containerID"].as_str().unwrap_or_default();
                self.0.iter().any(|(name, c)| {
                    entry["name"] == name.as_str()
                        && c.id.as_deref().is_some_and(|id| {
                            shown.ends_with(&format!("://{id}")) && c.handled.as_deref() != Some(id)
                        })
                })
            })
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

impl std::ops::Index<&String> for Tracked {
    type Output = Running;

    fn index(&self, name: &String) -> &Running {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, r)| r)
            .expect("a tracked container")
    }
}

impl FromIterator<(String, Running)> for Tracked {
    fn from_iter<I: IntoIterator<Item = (String, Running)>>(iter: I) -> Self {
        // Collected from a chain whose length the iterator does not tell, a list starts with
        // room for four (1.7 KiB).
        let mut list: Vec<_> = iter.into_iter().collect();
        list.shrink_to_fit();
        Tracked(list)
    }
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
            backoff: Duration::ZERO,
            handled: None,
            not_before: None,
            last_terminated: None,
            earlier_terminated: None,
            waiting: match newest {
                Some(_) => None,
                None => Some(("ContainerCreating".into(), String::new())),
            },
            done: false,
            probing: None,
            reported: None,
            image_reported: None,
            message: None,
            image_id: None,
        }
    }

    /// Whether `failure` should be reported by an event now (new, or not reported for a while).
    fn report(&mut self, failure: &str) -> bool {
        report_due(&mut self.reported, failure)
    }
}

/// Whether `failure` is new or was last reported more than [`REPORT_EVERY`] ago; notes it.
fn report_due(reported: &mut Option<(String, Instant)>, failure: &str) -> bool {
    let due = match reported {
        Some((last, at)) => last != failure || at.elapsed() >= REPORT_EVERY,
        None => true,
    };
    if due {
        *reported = Some((failure.to_owned(), Instant::now()));
    }
    due
}

/// Starts the pod's ephemeral containers that are new, tracking them, and follows the ones
/// that run (never restarted, never probed); each joins its target's processes, if it names
/// one that runs.
async fn sync_ephemeral(ctx: &Ctx<'_>, containers: &mut Tracked) {
    for (c, target) in ephemeral_containers(ctx.pod) {
        if containers.get_mut(&c.name).is_none() {
            containers
                .0
                .push((c.name.clone(), Running::adopt(&c.name, &[])));
        }
        let target_id = target.and_then(|t| containers.get_mut(&t).and_then(|r| r.id.clone()));
        let ctx = Ctx {
            target: target_id.as_deref(),
            ..*ctx
        };
        let state = containers.get_mut(&c.name).expect("tracked");
        Box::pin(sync_container(&ctx, &c, state, Kind::Ephemeral)).await;
    }
}

/// What a container's sync needs to know about its pod.
struct Ctx<'a> {
    kubelet: &'a Kubelet,
    /// The pod without its volumes ([`Kept`]); [`Ctx::whole`] has them.
    pod: &'a Kept,
    sandbox: &'a str,
    ip: &'a str,
    volumes: &'a HashMap<String, PathBuf>,
    policy: &'a str,
    /// For an ephemeral container: the id of the container whose process namespace it joins.
    target: Option<&'a str>,
}

impl Ctx<'_> {
    fn node(&self) -> NodeFacts {
        node_facts(self.kubelet, self.ip)
    }

    fn uid(&self) -> &str {
        self.pod.metadata.uid.as_deref().unwrap_or_default()
    }
}

fn node_facts(kubelet: &Kubelet, ip: &str) -> NodeFacts {
    NodeFacts {
        host_ip: kubelet.config.address.to_string(),
        pod_ip: ip.to_owned(),
        cpu: kubelet.config.cpu.clone(),
        memory: kubelet.config.memory.clone(),
    }
}

/// A hop between this kubelet and its runtime about `pod`: `kubelet/<node> -> runtime/<node>`
/// for a CRI call, or `runtime/<node> -> kubelet/<node>` (`back`) for the runtime's answer.
pub(super) fn runtime_hop(
    kubelet: &Kubelet,
    pod: &Pod,
    verb: &str,
    back: bool,
    detail: String,
) -> FlowEvent {
    let node = &kubelet.config.name;
    let (kubelet_side, runtime_side) = (format!("kubelet/{node}"), format!("runtime/{node}"));
    let (from, to) = if back {
        (runtime_side, kubelet_side)
    } else {
        (kubelet_side, runtime_side)
    };
    let mut hop = FlowEvent::new(from, to, verb)
        .object(
            "Pod",
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default(),
        )
        .detail(detail);
    hop.uid = pod.metadata.uid.clone().unwrap_or_default();
    hop
}

/// Emits a [`runtime_hop`].
fn emit_hop(kubelet: &Kubelet, pod: &Pod, verb: &str, back: bool, detail: String) {
    kubelet
        .flow
        .emit(runtime_hop(kubelet, pod, verb, back, detail));
}

/// A container id as people read it: its first 12 characters (after any `prefix-`).
fn short_id(id: &str) -> &str {
    let id = id.rsplit('-').next().unwrap_or(id);
    &id[..id.len().min(12)]
}

/// Stops the pod's sandbox (what still runs in it is killed), a hop.
async fn stop_sandbox(kubelet: &Kubelet, pod: &Pod, sandbox: &str) {
    emit_hop(
        kubelet,
        pod,
        "STOP SANDBOX",
        false,
        format!("sandbox {}", short_id(sandbox)),
    );
    let _ = kubelet.runtime.stop_pod_sandbox(sandbox).await;
}

/// Removes the pod's sandbox and with it its containers, a hop.
async fn remove_sandbox(kubelet: &Kubelet, pod: &Pod, sandbox: &str) {
    emit_hop(
        kubelet,
        pod,
        "REMOVE SANDBOX",
        false,
        format!("sandbox {}", short_id(sandbox)),
    );
    let _ = kubelet.runtime.remove_pod_sandbox(sandbox).await;
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
    // The kubelet's recorder writes it, in order; the worker goes on at once.
    let _ = kubelet.events.send(super::PodEvent {
        namespace,
        name,
        uid: pod.metadata.uid.clone().unwrap_or_default(),
        kind: if kind == "Warning" {
            "Warning"
        } else {
            "Normal"
        },
        reason: reason.to_owned(),
        message,
    });
}

/// Everything the runtime needs to create the container, or why it cannot be made (a
/// `CreateContainerConfigError`): env from its sources, `$(VAR)` in command and args, the
/// security context, resources, volume mounts, and the termination-message file.
async fn container_config(
    ctx: &Ctx<'_>,
    c: &Container,
    attempt: i32,
) -> Result<ContainerConfig, String> {
    let kubelet = ctx.kubelet;
    let pod = &ctx.pod.whole();
    let sources = Sources::fetch(&kubelet.client, pod, true)
        .await
        .map_err(|e| e.to_string())?;
    let env = env::resolve(pod, c, &sources, &ctx.node()).map_err(|e| e.to_string())?;
    config::host_namespaces(pod).map_err(|e| e.to_string())?;
    let security = config::security(pod, c, &kubelet.config.root_dir.join("seccomp"))
        .map_err(|e| e.to_string())?;
    let resources =
        config::resources(c, kubelet.config.pod_pids_limit).map_err(|e| e.to_string())?;
    let mut mounts = volumes::mounts(pod, c, ctx.volumes).map_err(|e| e.to_string())?;
    let attempt = attempt.max(0) as u32;
    if let Some(path) = c
        .termination_message_path
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        let host = volumes::termination_log(&kubelet.config.root_dir, ctx.uid(), &c.name, attempt);
        let made = host
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&host, b""));
        made.map_err(|e| {
            format!(
                "failed to create termination message file {}: {e}",
                host.display()
            )
        })?;
        mounts.push(Mount {
            host_path: host,
            container_path: path.to_owned(),
            read_only: false,
        });
    }
    Ok(ContainerConfig {
        name: c.name.clone(),
        image: c.image.clone().unwrap_or_default(),
        command: env::expand_all(c.command.as_deref().unwrap_or_default(), &env),
        args: env::expand_all(c.args.as_deref().unwrap_or_default(), &env),
        env,
        attempt,
        working_dir: c.working_dir.clone().filter(|d| !d.is_empty()),
        mounts,
        security,
        resources,
        tty: c.tty == Some(true),
        ports: config::tcp_ports(c),
        stdin: c.stdin == Some(true),
        target: ctx.target.map(str::to_owned),
    })
}

/// The termination message of a container that has exited: its file, or its logs' tail by
/// `terminationMessagePolicy`, or what the runtime says.
async fn read_message(ctx: &Ctx<'_>, c: &Container, status: &ContainerStatus) -> Option<String> {
    let file = volumes::termination_log(
        &ctx.kubelet.config.root_dir,
        ctx.uid(),
        &c.name,
        status.attempt,
    );
    let mut bytes = Vec::new();
    if let Ok(f) = std::fs::File::open(&file) {
        use std::io::Read;
        let _ = f
            .take(config::MAX_MESSAGE_BYTES as u64)
            .read_to_end(&mut bytes);
    }
    let code = status.exit_code.unwrap_or(0);
    let policy = c.termination_message_policy.as_deref();
    let logs = if bytes.is_empty() && code != 0 && policy == Some("FallbackToLogsOnError") {
        ctx.kubelet
            .runtime
            .container_logs(&status.id)
            .await
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    config::termination_message(&bytes, policy, code, &logs).or_else(|| status.message.clone())
}

fn rfc3339(t: Option<jiff::Timestamp>) -> Option<String> {
    t.map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
}

fn terminated(scheme: &str, s: &ContainerStatus, message: Option<&str>) -> Value {
    let mut t = json!({
        "exitCode": s.exit_code, "reason": s.reason, "containerID": format!("{scheme}://{}", s.id),
        "startedAt": rfc3339(s.started_at), "finishedAt": rfc3339(s.finished_at),
    });
    if let Some(m) = message.filter(|m| !m.is_empty()) {
        t["message"] = json!(m);
    }
    json!({ "terminated": t })
}

/// A pod's spec (an empty one for a pod without, which the API server never stores).
fn spec_of(pod: &Pod) -> &PodSpec {
    static EMPTY: std::sync::LazyLock<PodSpec> = std::sync::LazyLock::new(PodSpec::default);
    pod.spec.as_ref().unwrap_or(&EMPTY)
}

/// How a pod's syncing ended.
enum Outcome {
    /// The pod has a `deletionTimestamp`: it is terminated gracefully.
    Deleted,
    /// The pod is gone from the API server without waiting for this kubelet (a forced delete):
    /// its containers are stopped at once.
    Removed,
    /// The kubelet stopped: the containers stay with the runtime, for the next kubelet.
    KubeletStopped,
}

/// Which status a worker reports: while it syncs the pod, or the final one once every container
/// has stopped (upstream's `podIsTerminal`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Report {
    Syncing,
    Terminal,
}

/// A pod's worker. It goes through the stages upstream's pod workers name: syncing (runs the
/// pod's containers and reports them, [`PodWorker::sync`]), terminating (a deleted pod: every
/// container stopped within the grace period and the final status written,
/// [`PodWorker::terminate`]) and terminated (the pod's directory, the pod and its sandbox
/// removed, [`PodWorker::terminated`]).
struct PodWorker {
    kubelet: Arc<Kubelet>,
    /// The pod as the API server last had it (the same allocation the worker's channel holds).
    pod: Arc<Kept>,
    name: String,
    uid: String,
    /// The pod's sandbox; `None` for a pod deleted before it had one, or finished with its
    /// sandbox gone.
    sandbox: Option<String>,
    ip: String,
    start_time: String,
    /// The pod whose spec the containers were made from: the same allocation as `pod` while
    /// the spec is unchanged, so an idle worker holds one copy of its pod.
    made_from: Arc<Kept>,
    containers: Tracked,
    policy: String,
    status: StatusWriter,
    /// The pod's volumes, once set up.
    volumes: Option<HashMap<String, PathBuf>>,
}

async fn run(kubelet: Arc<Kubelet>, mut latest: watch::Receiver<Option<Arc<Kept>>>) {
    let Ok(first) = latest.wait_for(Option::is_some).await.map(|p| p.clone()) else {
        return;
    };
    let Some(pod) = first else { return };
    // The big futures are boxed so that an idle worker (most of them) stays small.
    let Some(mut worker) = Box::pin(PodWorker::start(kubelet, pod)).await else {
        return;
    };
    let outcome = if worker.deleting() {
        Outcome::Deleted
    } else {
        Box::pin(worker.sync(&mut latest)).await
    };
    match outcome {
        Outcome::Deleted => {
            let final_status = Box::pin(worker.terminate(&latest)).await;
            Box::pin(worker.terminated(final_status)).await;
        }
        Outcome::Removed => Box::pin(worker.remove()).await,
        Outcome::KubeletStopped => {}
    }
}

impl PodWorker {
    /// The worker for `pod`. It adopts the sandbox the runtime already has for the pod (this
    /// kubelet was stopped and started again) with its containers, as the real kubelet does
    /// after a restart, or runs a new one, unless the pod is being deleted or has finished.
    /// `None` when the sandbox could not be made.
    async fn start(kubelet: Arc<Kubelet>, pod: Arc<Kept>) -> Option<PodWorker> {
        let (namespace, name, uid) = (
            pod.metadata.namespace.clone().unwrap_or_default(),
            pod.metadata.name.clone().unwrap_or_default(),
            pod.metadata.uid.clone().unwrap_or_default(),
        );
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        let deleting = pod.metadata.deletion_timestamp.is_some();
        let runtime = kubelet.runtime.clone();
        let existing = runtime
            .list_pod_sandboxes()
            .await
            .into_iter()
            .find(|(_, config)| config.uid == uid)
            .map(|(id, _)| id);
        let finished = matches!(phase.as_str(), "Succeeded" | "Failed");
        let mut created_sandbox = false;
        let sandbox = match existing {
            Some(id) => Some(id),
            // Deleted before it ran: nothing to start, only its end to report. Finished, and
            // its sandbox gone (the runtime started afresh): nothing to run until it is deleted.
            None if deleting || finished => None,
            None => {
                let spec = pod.spec.as_ref();
                let dns = super::dns::pod_dns(
                    &pod,
                    &kubelet.config.cluster_dns,
                    &kubelet.config.cluster_domain,
                    &super::dns::DnsConfig::host(),
                );
                let config = SandboxConfig {
                    uid: uid.clone(),
                    namespace: namespace.clone(),
                    name: name.clone(),
                    hostname: spec
                        .and_then(|s| s.hostname.clone())
                        .unwrap_or_else(|| name.clone()),
                    node: kubelet.config.name.clone(),
                    pod_cidr: kubelet.config.pod_cidr(),
                    dns_search: dns.searches,
                    dns_servers: dns.servers,
                    dns_options: dns.options,
                };
                let hop = runtime_hop(
                    &kubelet,
                    &pod,
                    "RUN SANDBOX",
                    false,
                    format!("pod sandbox for {namespace}/{name}"),
                );
                let words = format!(
                    "kubelet/{} wants to RUN SANDBOX for {namespace}/{name}",
                    kubelet.config.name
                );
                kubelet.flow.gate_with(&hop, words).await;
                kubelet.flow.emit(hop);
                match runtime.run_pod_sandbox(&config).await {
                    Ok(id) => {
                        created_sandbox = true;
                        Some(id)
                    }
                    Err(error) => {
                        emit_hop(&kubelet, &pod, "SANDBOX FAILED", true, error.to_string());
                        return None;
                    }
                }
            }
        };
        let (adopted, ip) = match &sandbox {
            Some(id) => (
                runtime.list_containers(id).await.unwrap_or_default(),
                runtime
                    .pod_sandbox_status(id)
                    .await
                    .ok()
                    .and_then(|s| s.ip)
                    .unwrap_or_default(),
            ),
            None => (
                Vec::new(),
                pod.status
                    .as_ref()
                    .and_then(|s| s.pod_ip.clone())
                    .unwrap_or_default(),
            ),
        };
        if let Some(id) = sandbox.as_deref().filter(|_| created_sandbox) {
            emit_hop(
                &kubelet,
                &pod,
                "SANDBOX READY",
                true,
                format!("{ip} sandbox {}", short_id(id)),
            );
        }
        let start_time = pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map(|t| t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_else(now);
        let spec = spec_of(&pod);
        let containers = spec
            .init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
            .map(|c| (c.name.clone(), Running::adopt(&c.name, &adopted)))
            .collect();
        let policy = spec
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".into());
        let status = StatusWriter::new(&kubelet, &pod);
        Some(PodWorker {
            kubelet,
            made_from: pod.clone(),
            pod,
            name,
            uid,
            sandbox,
            ip,
            start_time,
            containers,
            policy,
            status,
            volumes: None,
        })
    }

    /// Takes in the pod as the API server has it now.
    fn take(&mut self, pod: Arc<Kept>) {
        if pod.same_spec(&self.made_from) {
            self.made_from = pod.clone();
        }
        self.pod = pod;
    }

    fn deleting(&self) -> bool {
        self.pod.metadata.deletion_timestamp.is_some()
    }

    /// The init containers, then the containers, as the spec lists them, then the ephemeral
    /// containers that were started.
    fn all_containers(&self) -> Vec<Container> {
        let spec = spec_of(&self.made_from);
        let init = spec.init_containers.iter().flatten();
        let mut all: Vec<Container> = init.chain(&spec.containers).cloned().collect();
        all.extend(
            ephemeral_containers(&self.pod)
                .into_iter()
                .map(|(c, _)| c)
                .filter(|c| self.containers.0.iter().any(|(n, _)| *n == c.name)),
        );
        all
    }

    /// The pod's status as it is now.
    async fn status_now(&self, report: Report) -> Value {
        Box::pin(status_of(
            &self.kubelet,
            &self.pod,
            &self.containers,
            &self.ip,
            &self.start_time,
            report,
        ))
        .await
    }

    /// Syncing (upstream's `SyncPod`): sets up the volumes, runs the init containers one at a
    /// time and then the containers, and writes the status when it changed; again after
    /// [`SYNC`] (the real kubelet's PLEG relists every second) or as soon as the pod changes,
    /// until it is deleted, gone or the kubelet stops.
    async fn sync(&mut self, latest: &mut watch::Receiver<Option<Arc<Kept>>>) -> Outcome {
        let Some(sandbox) = self.sandbox.clone() else {
            return Box::pin(self.wait_for_deletion(latest)).await;
        };
        let mut volumes_at: Option<Instant> = None;
        let mut mount_reported: Option<(String, Instant)> = None;
        let mut looked_again = false;
        loop {
            if self.deleting() {
                return Outcome::Deleted;
            }
            // Volumes: set up before any container starts, then again every VOLUME_RESYNC so
            // ConfigMap and Secret files follow their objects.
            if volumes_at.is_none_or(|t| t.elapsed() >= VOLUME_RESYNC) {
                let mounted = self.volumes.clone().unwrap_or_default();
                let whole = self.pod.whole();
                match Box::pin(set_up_volumes(&self.kubelet, &whole, &self.ip, &mounted)).await {
                    Ok(paths) => {
                        self.volumes = Some(paths);
                        volumes_at = Some(Instant::now());
                        mount_reported = None;
                    }
                    Err(message) => {
                        if report_due(&mut mount_reported, &message) {
                            let failed =
                                event(&self.kubelet, &self.pod, "Warning", "FailedMount", message);
                            Box::pin(failed).await;
                        }
                    }
                }
            }
            if let Some(paths) = &self.volumes {
                let ctx = Ctx {
                    kubelet: &self.kubelet,
                    pod: &self.pod,
                    sandbox: &sandbox,
                    ip: &self.ip,
                    volumes: paths,
                    policy: &self.policy,
                    target: None,
                };
                // Init containers one at a time, in order; then every container.
                let mut initializing = false;
                for c in spec_of(&self.made_from).init_containers.iter().flatten() {
                    let state = self.containers.get_mut(&c.name).expect("tracked");
                    if state.done {
                        continue;
                    }
                    Box::pin(sync_container(&ctx, c, state, Kind::Init)).await;
                    initializing = !state.done;
                    if initializing {
                        break;
                    }
                }
                if !initializing {
                    for c in &spec_of(&self.made_from).containers {
                        let state = self.containers.get_mut(&c.name).expect("tracked");
                        Box::pin(sync_container(&ctx, c, state, Kind::Regular)).await;
                    }
                    // Ephemeral containers, as the API server added them to the running pod
                    // (in a future of its own: what it holds is not part of every pod's).
                    if spec_of(&self.pod).ephemeral_containers.is_some() {
                        Box::pin(sync_ephemeral(&ctx, &mut self.containers)).await;
                    }
                }
            }
            let status = self.status_now(Report::Syncing).await;
            // A container that exited after this round looked at it (one that fails at once)
            // is noted first, its CONTAINER EXITED hop and its restart, then reported: the flow
            // shows the kubelet hearing of an exit before it writes the status that tells it.
            if !looked_again && self.containers.unnoted_exit(&status) {
                looked_again = true;
                continue;
            }
            looked_again = false;
            // A write the API server did not take is tried again at the next sync.
            let _ = Box::pin(self.status.write(&self.kubelet, &status)).await;
            // Finished, and the API server has it: nothing more to run until the pod changes.
            let finished = matches!(status["phase"].as_str(), Some("Succeeded" | "Failed"))
                && self.status.has(&status);
            // Not held while waiting: an idle worker keeps only its pod.
            drop(status);
            let woke = if finished {
                Ok(latest.changed().await)
            } else {
                tokio::time::timeout(SYNC, latest.changed()).await
            };
            match woke {
                Ok(Ok(())) => match latest.borrow_and_update().clone() {
                    Some(pod) => self.take(pod),
                    None => return Outcome::Removed,
                },
                Ok(Err(_)) => return Outcome::KubeletStopped,
                Err(_) => {}
            }
        }
    }

    /// A finished pod without a sandbox: nothing to run, only its deletion to wait for.
    async fn wait_for_deletion(
        &mut self,
        latest: &mut watch::Receiver<Option<Arc<Kept>>>,
    ) -> Outcome {
        loop {
            if self.deleting() {
                return Outcome::Deleted;
            }
            if latest.changed().await.is_err() {
                return Outcome::KubeletStopped;
            }
            match latest.borrow_and_update().clone() {
                Some(pod) => self.take(pod),
                None => return Outcome::Removed,
            }
        }
    }

    /// Terminating (upstream's `SyncTerminatingPod`): stops every running container at once,
    /// each after its preStop hook and within the pod's deletion grace period, notes each
    /// exit (a `CONTAINER EXITED` hop, its termination message), stops the sandbox, and writes
    /// the final status (containers terminated with the runtime's exit codes, `Ready` and
    /// `ContainersReady` false, a terminal phase) until the API server has it. False when the
    /// pod went first.
    async fn terminate(&mut self, latest: &watch::Receiver<Option<Arc<Kept>>>) -> bool {
        let mut grace = grace_of(Some(&*self.pod));
        let runtime = self.kubelet.runtime.clone();
        let all = self.all_containers();
        if let Some(sandbox) = self.sandbox.clone() {
            let no_volumes = HashMap::new();
            let ctx = Ctx {
                kubelet: &self.kubelet,
                pod: &self.pod,
                sandbox: &sandbox,
                ip: &self.ip,
                volumes: self.volumes.as_ref().unwrap_or(&no_volumes),
                policy: &self.policy,
                target: None,
            };
            let mut running = Vec::new();
            for c in &all {
                let Some(id) = &self.containers[&c.name].id else {
                    continue;
                };
                if runtime
                    .container_status(id)
                    .await
                    .is_ok_and(|s| s.state == ContainerState::Running)
                {
                    running.push((c, id.clone()));
                }
            }
            // Every container at once, as upstream kills them in parallel. A second deletion
            // with a shorter grace period (`--grace-period=0 --force`, or the pod gone from the
            // API) starts the kills again within it, as upstream's pod worker restarts a
            // termination when a shorter one is asked for.
            let kills = |grace: Duration| {
                futures::future::join_all(running.iter().map(|(c, id)| {
                    let why = format!("Stopping container {}", c.name);
                    Box::pin(kill(&ctx, c, id, grace, why))
                }))
            };
            let mut stopping = std::pin::pin!(kills(grace));
            let mut changes = latest.clone();
            loop {
                tokio::select! {
                    _ = &mut stopping => break,
                    changed = changes.changed() => {
                        if changed.is_err() {
                            (&mut stopping).await;
                            break;
                        }
                        let shorter = grace_of(changes.borrow_and_update().as_deref().map(|k| &**k));
                        if shorter < grace {
                            grace = shorter;
                            stopping.set(kills(grace));
                        }
                    }
                }
            }
            // The runtime's word on each: the exits not noted yet (those just stopped, and any
            // that ended on their own since the last sync).
            for c in &all {
                let state = self.containers.get_mut(&c.name).expect("tracked");
                state.probing = None;
                let Some(id) = state.id.clone() else { continue };
                if state.handled.as_deref() == Some(id.as_str()) {
                    continue;
                }
                if let Ok(status) = runtime.container_status(&id).await
                    && status.state == ContainerState::Exited
                {
                    Box::pin(note_exit(&ctx, c, state, &status)).await;
                }
            }
            Box::pin(stop_sandbox(&self.kubelet, &self.pod, &sandbox)).await;
        }
        let status = self.status_now(Report::Terminal).await;
        Box::pin(
            self.status
                .write_until_current(&self.kubelet, &status, latest),
        )
        .await
    }

    /// Terminated (upstream's `SyncTerminatedPod`, then its status manager's delete): the
    /// pod's directory goes; then, once the API server has the final status, the pod itself;
    /// then the sandbox with its containers (as upstream's garbage collection removes a deleted
    /// pod's sandbox after the pod).
    async fn terminated(&mut self, final_status: bool) {
        if let Err(error) = volumes::tear_down(&self.kubelet.config.root_dir, &self.uid) {
            tracing::warn!(%error, pod = %self.name, "cannot remove the pod's directory");
        }
        if final_status {
            Box::pin(self.status.delete()).await;
        }
        self.containers.clear();
        if let Some(sandbox) = &self.sandbox {
            Box::pin(remove_sandbox(&self.kubelet, &self.pod, sandbox)).await;
        }
    }

    /// The pod went from the API server before it was terminated (a forced delete): its
    /// sandbox is stopped and removed at once, and its directory goes.
    async fn remove(&mut self) {
        self.containers.clear();
        if let Some(sandbox) = &self.sandbox {
            Box::pin(stop_sandbox(&self.kubelet, &self.pod, sandbox)).await;
            Box::pin(remove_sandbox(&self.kubelet, &self.pod, sandbox)).await;
        }
        let _ = volumes::tear_down(&self.kubelet.config.root_dir, &self.uid);
    }
}

/// Sets up the pod's volumes (reading the ConfigMaps and Secrets they name); the error is the
/// `FailedMount` event's message.
async fn set_up_volumes(
    kubelet: &Kubelet,
    pod: &Pod,
    ip: &str,
    mounted: &HashMap<String, PathBuf>,
) -> Result<HashMap<String, PathBuf>, String> {
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_deref());
    let reads_objects = volumes
        .unwrap_or_default()
        .iter()
        .any(|v| v.config_map.is_some() || v.secret.is_some() || v.projected.is_some());
    let mut sources = if reads_objects {
        Sources::fetch(&kubelet.client, pod, false)
            .await
            .map_err(|e| format!("MountVolume.SetUp failed: {e}"))?
    } else {
        Sources::default()
    };
    let claims = volumes
        .unwrap_or_default()
        .iter()
        .any(|v| v.persistent_volume_claim.is_some());
    if claims {
        sources.claims = volumes::resolve_claims(&kubelet.client, pod, mounted).await?;
    }
    sources.tokens = volumes::tokens(&kubelet.client, &kubelet.config.root_dir, pod)
        .await
        .map_err(|e| format!("MountVolume.SetUp failed: {e}"))?;
    let root = kubelet.config.root_dir.clone();
    let node = node_facts(kubelet, ip);
    let pod = pod.clone();
    // File system work off the async workers.
    let done = tokio::task::spawn_blocking(move || volumes::set_up(&root, &pod, &sources, &node))
        .await
        .map_err(|e| e.to_string())?;
    done.map_err(|(volume, error)| {
        format!("MountVolume.SetUp failed for volume \"{volume}\" : {error}")
    })
}

/// Looks at one container and does what its state calls for: acts on its probes while it runs
/// (a failed liveness or startup probe kills it); notes an exit (its termination message, and
/// whether and when it restarts, with back-off); or pulls by `imagePullPolicy`, creates and
/// starts it.
async fn sync_container(ctx: &Ctx<'_>, c: &Container, state: &mut Running, kind: Kind) {
    let (kubelet, pod, policy) = (ctx.kubelet, ctx.pod, ctx.policy);
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
        if status.state == ContainerState::Running && kind == Kind::Regular {
            Box::pin(check_probes(ctx, c, state, status)).await;
            return;
        }
        if status.state != ContainerState::Exited {
            return;
        }
        if state.handled.as_deref() != Some(status.id.as_str()) {
            Box::pin(note_exit(ctx, c, state, status)).await;
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
                state.backoff = Duration::ZERO;
            }
            let exit = terminated(
                ctx.kubelet.runtime.version().0,
                status,
                message_of(state, &status.id),
            );
            state.earlier_terminated = state.last_terminated.replace(exit);
            state.not_before = Some(Instant::now() + state.backoff);
            if state.backoff.is_zero() {
                state.backoff = FIRST_BACKOFF;
                return Box::pin(restart_now(ctx, c, state, kind)).await;
            }
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
            state.backoff = next_backoff(state.backoff);
        }
        if state.not_before.is_none() {
            // Exited for good.
            return;
        }
    }
    let image = c.image.clone().unwrap_or_default();
    if let Some(t) = state.not_before
        && Instant::now() < t
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
        emit_hop(
            kubelet,
            pod,
            "REMOVE CONTAINER",
            false,
            format!("{} {}", c.name, short_id(&old)),
        );
        let _ = runtime.remove_container(&old).await;
        state.restarts += 1;
    }
    if !Box::pin(ensure_image(ctx, &image, c, state)).await {
        return;
    }
    let config = match Box::pin(container_config(ctx, c, state.restarts)).await {
        Ok(config) => config,
        Err(message) => {
            if state.report(&message) {
                event(
                    kubelet,
                    pod,
                    "Warning",
                    "Failed",
                    format!("Error: {message}"),
                )
                .await;
            }
            state.waiting = Some(("CreateContainerConfigError".into(), message));
            return;
        }
    };
    emit_hop(
        kubelet,
        pod,
        "CREATE CONTAINER",
        false,
        format!("{} image {image}", c.name),
    );
    let id = match runtime.create_container(ctx.sandbox, &config).await {
        Ok(id) => id,
        Err(error) => {
            Box::pin(failed_to_run(ctx, state, "CreateContainerError", error)).await;
            return;
        }
    };
    event(
        kubelet,
        pod,
        "Normal",
        "Created",
        format!("Created container: {}", c.name),
    )
    .await;
    let hop = runtime_hop(
        kubelet,
        pod,
        "START CONTAINER",
        false,
        format!("{} {} image {image}", c.name, short_id(&id)),
    );
    let words = format!(
        "kubelet/{} wants to START CONTAINER {} of {}/{}",
        kubelet.config.name, c.name, hop.namespace, hop.name
    );
    kubelet.flow.gate_with(&hop, words).await;
    kubelet.flow.emit(hop);
    state.id = Some(id.clone());
    state.not_before = None;
    state.reported = None;
    match runtime.start_container(&id).await {
        Ok(()) => {
            event(
                kubelet,
                pod,
                "Normal",
                "Started",
                format!("Started container {}", c.name),
            )
            .await;
            state.waiting = None;
        }
        Err(error) => {
            // The container exists but never ran: the next sync sees it and retries with a
            // new one after the back-off.
            state.handled = Some(id);
            Box::pin(failed_to_run(ctx, state, "RunContainerError", error)).await;
        }
    }
}

/// Notes that a container has exited: the runtime's answer as a hop, and its termination
/// message.
async fn note_exit(ctx: &Ctx<'_>, c: &Container, state: &mut Running, status: &ContainerStatus) {
    state.handled = Some(status.id.clone());
    emit_hop(
        ctx.kubelet,
        ctx.pod,
        "CONTAINER EXITED",
        true,
        format!(
            "{} code {} ({})",
            c.name,
            status.exit_code.unwrap_or(0),
            status.reason.as_deref().unwrap_or("Unknown")
        ),
    );
    state.probing = None;
    let message = read_message(ctx, c, status).await.unwrap_or_default();
    state.message = Some((status.id.clone(), message));
}

/// The back-off after `current`: the first, then doubling up to the most.
fn next_backoff(current: Duration) -> Duration {
    if current.is_zero() {
        FIRST_BACKOFF
    } else {
        (current * 2).min(MAX_BACKOFF)
    }
}

/// Starts an exited container again at once (its first restart).
async fn restart_now(ctx: &Ctx<'_>, c: &Container, state: &mut Running, kind: Kind) {
    Box::pin(sync_container(ctx, c, state, kind)).await;
}

/// A create or start the runtime refused: the waiting reason with the runtime's message, a
/// `Failed` event, and back-off before the next try, as upstream.
async fn failed_to_run(
    ctx: &Ctx<'_>,
    state: &mut Running,
    reason: &str,
    error: crate::runtime::RuntimeError,
) {
    let message = match &error {
        crate::runtime::RuntimeError::Failed { message, .. } => message.clone(),
        other => other.to_string(),
    };
    event(
        ctx.kubelet,
        ctx.pod,
        "Warning",
        "Failed",
        format!("Error: {message}"),
    )
    .await;
    state.waiting = Some((reason.into(), message));
    state.backoff = next_backoff(state.backoff);
    state.not_before = Some(Instant::now() + state.backoff);
}

/// Makes the image available by `imagePullPolicy`: `Always` pulls, `IfNotPresent` pulls when
/// the runtime lacks it, `Never` never pulls (`ErrImageNeverPull`). False when the container
/// cannot start yet.
async fn ensure_image(ctx: &Ctx<'_>, image: &str, c: &Container, state: &mut Running) -> bool {
    let (kubelet, pod) = (ctx.kubelet, ctx.pod);
    let runtime = &kubelet.runtime;
    let policy = c.image_pull_policy.as_deref().unwrap_or("IfNotPresent");
    if policy != "Always" {
        if let Some(id) = runtime.image_present(image).await {
            state.image_id = Some(id);
            if report_due(&mut state.image_reported, image) {
                event(
                    kubelet,
                    pod,
                    "Normal",
                    "Pulled",
                    format!("Container image \"{image}\" already present on machine"),
                )
                .await;
            }
            return true;
        }
        if policy == "Never" {
            let message =
                format!("Container image \"{image}\" is not present with pull policy of Never");
            if report_due(&mut state.image_reported, &message) {
                event(
                    kubelet,
                    pod,
                    "Warning",
                    "ErrImageNeverPull",
                    message.clone(),
                )
                .await;
            }
            state.waiting = Some(("ErrImageNeverPull".into(), message));
            return false;
        }
    }
    event(
        kubelet,
        pod,
        "Normal",
        "Pulling",
        format!("Pulling image \"{image}\""),
    )
    .await;
    let began = Instant::now();
    emit_hop(kubelet, pod, "PULL IMAGE", false, image.to_owned());
    let pulled = runtime.pull_image(image).await;
    if let Ok(id) = &pulled {
        state.image_id = Some(id.clone());
        emit_hop(kubelet, pod, "IMAGE PULLED", true, format!("{image} {id}"));
    }
    if let Err(error) = pulled {
        emit_hop(
            kubelet,
            pod,
            "PULL FAILED",
            true,
            format!("{image}: {error}"),
        );
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
        state.backoff = next_backoff(state.backoff);
        state.not_before = Some(Instant::now() + state.backoff);
        return false;
    }
    let took = began.elapsed();
    event(
        kubelet,
        pod,
        "Normal",
        "Pulled",
        format!(
            "Successfully pulled image \"{image}\" in {took:.3?} ({took:.3?} including waiting)"
        ),
    )
    .await;
    true
}

/// A running container's probes: started when missing (a new container, or one adopted after
/// a kubelet restart), their failures reported as `Unhealthy` events, and a failed liveness
/// or startup probe answered by killing the container with its grace period.
async fn check_probes(ctx: &Ctx<'_>, c: &Container, state: &mut Running, status: &ContainerStatus) {
    let (kubelet, pod) = (ctx.kubelet, ctx.pod);
    if state.probing.as_ref().is_none_or(|p| p.id != status.id) {
        state.probing = Some(Probing::start(
            kubelet.runtime.clone(),
            status.id.clone(),
            c,
            Target {
                sandbox: ctx.sandbox.to_owned(),
                pod_ip: ctx.ip.to_owned(),
            },
        ));
    }
    let Some(probing) = &state.probing else {
        return;
    };
    let (_, _, failed, reports) = probing.read();
    for message in reports {
        event(kubelet, pod, "Warning", "Unhealthy", message).await;
    }
    let Some(kind) = failed else { return };
    let probe = match kind {
        probes::ProbeKind::Startup => c.startup_probe.as_ref(),
        _ => c.liveness_probe.as_ref(),
    };
    let grace = probe
        .and_then(|p| p.termination_grace_period_seconds)
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30)
        .max(0) as u64;
    state.probing = None;
    let message = format!(
        "Container {} failed {} probe, will be restarted",
        c.name,
        kind.name().to_lowercase()
    );
    Box::pin(kill(
        ctx,
        c,
        &status.id,
        Duration::from_secs(grace),
        message,
    ))
    .await;
}

/// The termination message noted for container `id`.
fn message_of<'a>(state: &'a Running, id: &str) -> Option<&'a str> {
    state
        .message
        .as_ref()
        .filter(|(of, _)| of == id)
        .map(|(_, m)| m.as_str())
}

/// Runs a container's `preStop` hook (exec, httpGet, tcpSocket or sleep) within `grace`;
/// returns what it failed with.
async fn pre_stop(
    ctx: &Ctx<'_>,
    c: &Container,
    id: &str,
    hook: &LifecycleHandler,
    grace: Duration,
) -> Option<String> {
    if let Some(sleep) = &hook.sleep {
        let wanted = Duration::from_secs(sleep.seconds.max(0) as u64);
        tokio::time::sleep(wanted.min(grace)).await;
        return None;
    }
    let probe = Probe {
        exec: hook.exec.clone(),
        http_get: hook.http_get.clone(),
        tcp_socket: hook.tcp_socket.clone(),
        ..Probe::default()
    };
    let target = Target {
        sandbox: ctx.sandbox.to_owned(),
        pod_ip: ctx.ip.to_owned(),
    };
    let outcome = probes::attempt(&probe, &*ctx.kubelet.runtime, id, c, &target, grace).await;
    let pod = format!(
        "{}_{}({})",
        ctx.pod.metadata.name.as_deref().unwrap_or_default(),
        ctx.pod.metadata.namespace.as_deref().unwrap_or_default(),
        ctx.uid()
    );
    match outcome {
        Attempt::Success => None,
        Attempt::Failure(m) | Attempt::Error(m) => Some(match &hook.exec {
            Some(e) => format!(
                "Exec lifecycle hook ([{}]) for Container \"{}\" in Pod \"{pod}\" failed - error: {m}",
                e.command.clone().unwrap_or_default().join(" "),
                c.name
            ),
            None => format!(
                "HTTP lifecycle hook ({}) for Container \"{}\" in Pod \"{pod}\" failed - error: {m}",
                hook.http_get
                    .as_ref()
                    .and_then(|h| h.path.clone())
                    .unwrap_or_default(),
                c.name
            ),
        }),
    }
}

/// Stops one running container as upstream's `killContainer` (a `Killing` event saying why):
/// its `preStop` hook first,
/// then SIGTERM with what is left of the grace period (at least 2 s), then SIGKILL.
/// The grace period a deleted pod's containers get: its `deletionGracePeriodSeconds` (30 s if
/// unset); none for a pod gone from the API (force-deleted).
fn grace_of(pod: Option<&Pod>) -> Duration {
    let seconds = match pod {
        Some(pod) => pod.metadata.deletion_grace_period_seconds.unwrap_or(30),
        None => 0,
    };
    Duration::from_secs(seconds.max(0) as u64)
}

async fn kill(ctx: &Ctx<'_>, c: &Container, id: &str, grace: Duration, why: String) {
    let (kubelet, pod) = (ctx.kubelet, ctx.pod);
    event(kubelet, pod, "Normal", "Killing", why).await;
    let mut left = grace;
    if let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()) {
        let began = Instant::now();
        if let Some(message) = Box::pin(pre_stop(ctx, c, id, hook, grace)).await {
            event(kubelet, pod, "Warning", "FailedPreStopHook", message).await;
        }
        left = grace.saturating_sub(began.elapsed()).max(MIN_GRACE);
    }
    emit_hop(
        kubelet,
        pod,
        "STOP CONTAINER",
        false,
        format!("{} {} grace {}s", c.name, short_id(id), left.as_secs()),
    );
    let _ = kubelet.runtime.stop_container(id, left).await;
}

/// The reason and message upstream's status manager gives a container that has no state of its
/// own when its pod ends (`TerminatePod`).
const UNKNOWN_REASON: &str = "ContainerStatusUnknown";
const UNKNOWN_MESSAGE: &str = "The container could not be located when the pod was terminated";

/// One entry of `containerStatuses` or `initContainerStatuses`, with whether the container is
/// ready. `previous` is the container's entry in the status the API server has.
async fn container_entry(
    kubelet: &Kubelet,
    c: &Container,
    state: &Running,
    kind: Kind,
    report: Report,
    previous: Option<&Value>,
) -> (Value, bool) {
    let current = match &state.id {
        Some(id) => kubelet.runtime.container_status(id).await.ok(),
        None => None,
    };
    // The runtime no longer knows a container that had ended: its end stays as it was.
    if report == Report::Terminal
        && current.is_none()
        && let Some(previous) = previous.filter(|p| p["state"]["terminated"].is_object())
    {
        let mut entry = previous.clone();
        if kind == Kind::Regular {
            entry["ready"] = json!(false);
            entry["started"] = json!(false);
        }
        let ready = entry["ready"].as_bool() == Some(true);
        return (entry, ready);
    }
    let scheme = kubelet.runtime.version().0;
    // A deleted pod's containers are not started again: one that has exited shows its exit,
    // not the back-off before a restart that will not come (upstream's
    // `ShouldContainerBeRestarted` is false for a deleted pod).
    let exited_now = report == Report::Terminal
        && current
            .as_ref()
            .is_some_and(|s| s.state == ContainerState::Exited);
    let (state_json, running) = match (&state.waiting, &current) {
        (Some((reason, message)), _) if !exited_now => (
            json!({"waiting": {"reason": reason, "message": message}}),
            false,
        ),
        (_, Some(s)) if s.state == ContainerState::Running => (
            json!({"running": {"startedAt": rfc3339(s.started_at)}}),
            true,
        ),
        (_, Some(s)) if s.state == ContainerState::Exited => {
            (terminated(scheme, s, message_of(state, &s.id)), false)
        }
        _ => (json!({"waiting": {"reason": "PodInitializing"}}), false),
    };
    // An init container is ready once it has succeeded; others while they run, have
    // started (by their startup probe) and pass their readiness probe. Until the probes of
    // this very container (not the one before a restart) have run, it is as upstream's prober
    // has it: not started while it has a startup probe, not ready while it has a readiness
    // probe.
    let (started, probed_ready) = match (&state.probing, &current) {
        (Some(p), Some(s)) if p.id == s.id => p.peek(),
        _ => probes::Health::before_probing(c).says(),
    };
    let ready = match kind {
        Kind::Init => state.done,
        Kind::Regular => running && started && probed_ready,
        Kind::Ephemeral => false,
    };
    let mut entry = json!({
        "name": c.name, "image": c.image, "imageID": state.image_id.clone().unwrap_or_default(),
        "ready": ready, "started": running && started, "restartCount": state.restarts, "state": state_json,
    });
    if let Some(id) = &state.id {
        entry["containerID"] = json!(format!("{scheme}://{id}"));
    }
    // The exit shown as the state is not its own `lastState` too.
    let last = match (&state.last_terminated, &state.id) {
        (Some(last), Some(id))
            if exited_now
                && last["terminated"]["containerID"].as_str()
                    == Some(format!("{scheme}://{id}").as_str()) =>
        {
            state.earlier_terminated.as_ref()
        }
        (last, _) => last.as_ref(),
    };
    if let Some(last) = last {
        entry["lastState"] = last.clone();
    }
    (entry, ready)
}

/// The conditions the kubelet owns (upstream's `PodConditionsByKubelet`); it keeps every other
/// condition of the pod's status (a `DisruptionTarget` another component wrote, readiness
/// gates) as the API server has it.
const KUBELET_CONDITIONS: [&str; 7] = [
    "PodScheduled",
    "Ready",
    "Initialized",
    "ContainersReady",
    "PodReadyToStartContainers",
    "PodResizePending",
    "PodResizeInProgress",
];

/// The pod's status as upstream's `generateAPIPodStatus` makes it: phase (`phase::phase`),
/// conditions and container statuses. The `Terminal` report is the one written once every
/// container has stopped: a container without an end of its own is given one as upstream's
/// status manager does (`ContainerStatusUnknown`, 137), and the phase is terminal: `Succeeded`
/// when every container ended with 0, else `Failed` (since Kubernetes 1.27, a deleted pod is
/// never left `Running`).
async fn status_of(
    kubelet: &Kubelet,
    pod: &Pod,
    containers: &Tracked,
    ip: &str,
    start_time: &str,
    report: Report,
) -> Value {
    let spec = spec_of(pod);
    let init: &[Container] = spec.init_containers.as_deref().unwrap_or_default();
    let api = pod.status.clone().unwrap_or_default();
    let entries_of = |list: &Option<Vec<k8s_openapi::api::core::v1::ContainerStatus>>| {
        list.iter()
            .flatten()
            .filter_map(|s| Some((s.name.clone(), serde_json::to_value(s).ok()?)))
            .collect::<HashMap<String, Value>>()
    };
    let (previous_init, previous) = (
        entries_of(&api.init_container_statuses),
        entries_of(&api.container_statuses),
    );
    let mut init_statuses = Vec::new();
    let mut incomplete = Vec::new();
    for c in init {
        let state = &containers[&c.name];
        let (entry, done) = container_entry(
            kubelet,
            c,
            state,
            Kind::Init,
            report,
            previous_init.get(&c.name),
        )
        .await;
        if !done {
            incomplete.push(c.name.clone());
        }
        init_statuses.push(entry);
    }
    let mut statuses = Vec::new();
    let mut unready = Vec::new();
    for c in &spec.containers {
        let state = &containers[&c.name];
        let (mut entry, ready) = container_entry(
            kubelet,
            c,
            state,
            Kind::Regular,
            report,
            previous.get(&c.name),
        )
        .await;
        if !incomplete.is_empty() && state.id.is_none() {
            entry["state"] = json!({"waiting": {"reason": "PodInitializing"}});
        }
        if !ready {
            unready.push(c.name.clone());
        }
        statuses.push(entry);
    }
    let initialized = incomplete.is_empty();
    let all_ready = unready.is_empty() && !spec.containers.is_empty();
    // A regular container of this sandbox exists: the init containers have run.
    let has_initialized = spec
        .containers
        .iter()
        .any(|c| containers[&c.name].id.is_some());
    let api_phase = api.phase.as_deref().unwrap_or_default();
    let phase = if matches!(api_phase, "Succeeded" | "Failed") {
        // A pod never leaves a terminal phase.
        api_phase
    } else if report == Report::Terminal {
        terminate_statuses(init, &mut init_statuses, &mut statuses);
        // As upstream's status manager ends a pod (`TerminatePod`): one its containers leave
        // neither succeeded nor failed has failed.
        match phase::phase(spec, &init_statuses, &statuses, true, has_initialized) {
            "Succeeded" => "Succeeded",
            _ => "Failed",
        }
    } else {
        phase::phase(spec, &init_statuses, &statuses, false, has_initialized)
    };
    // A condition's lastTransitionTime moves only when its status changes.
    let previous_conditions = api.conditions.clone().unwrap_or_default();
    let now = now();
    let condition = |kind: &str, ok: bool, reason: &str, message: String| {
        let status = if ok { "True" } else { "False" };
        let since = previous_conditions
            .iter()
            .find(|c| c.type_ == kind && c.status == status)
            .and_then(|c| c.last_transition_time.as_ref())
            .map(|t| t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_else(|| now.clone());
        let mut c = json!({"type": kind, "status": status, "lastProbeTime": null, "lastTransitionTime": since});
        if !reason.is_empty() {
            c["reason"] = json!(reason);
        }
        if !message.is_empty() {
            c["message"] = json!(message);
        }
        c
    };
    let list = |names: &[String]| format!("[{}]", names.join(" "));
    // A finished pod is not ready, whatever its containers last said (upstream's
    // `generatePodReadyConditionForTerminalPhase`).
    let (ready_reason, ready_message) = match phase {
        "Succeeded" => ("PodCompleted", String::new()),
        "Failed" => ("PodFailed", String::new()),
        _ if all_ready => ("", String::new()),
        _ => (
            "ContainersNotReady",
            format!("containers with unready status: {}", list(&unready)),
        ),
    };
    let ready = all_ready && !matches!(phase, "Succeeded" | "Failed");
    let (initialized_reason, initialized_message) = if !initialized {
        (
            "ContainersNotInitialized",
            format!("containers with incomplete status: {}", list(&incomplete)),
        )
    } else if phase == "Succeeded" {
        ("PodCompleted", String::new())
    } else {
        ("", String::new())
    };
    // Once the pod has ended its sandbox is stopped (or it never had one).
    let sandbox_ready = report == Report::Syncing;
    let mut conditions: Vec<Value> = previous_conditions
        .iter()
        .filter(|c| !KUBELET_CONDITIONS.contains(&c.type_.as_str()))
        .filter_map(|c| serde_json::to_value(c).ok())
        .collect();
    conditions.extend([
        condition(
            "PodReadyToStartContainers",
            sandbox_ready,
            "",
            String::new(),
        ),
        condition(
            "Initialized",
            initialized,
            initialized_reason,
            initialized_message,
        ),
        condition("Ready", ready, ready_reason, ready_message.clone()),
        condition("ContainersReady", ready, ready_reason, ready_message),
        condition("PodScheduled", true, "", String::new()),
    ]);
    let mut status = json!({
        "phase": phase,
        "conditions": conditions,
        "hostIP": kubelet.config.address.to_string(),
        "hostIPs": [{"ip": kubelet.config.address.to_string()}],
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": start_time,
        "containerStatuses": statuses,
    });
    if !init.is_empty() {
        status["initContainerStatuses"] = json!(init_statuses);
    }
    let previous_ephemeral = entries_of(&api.ephemeral_container_statuses);
    let mut ephemeral_statuses = Vec::new();
    for (c, _) in ephemeral_containers(pod) {
        let Some((_, state)) = containers.0.iter().find(|(n, _)| *n == c.name) else {
            continue;
        };
        let (mut entry, ..) = container_entry(
            kubelet,
            &c,
            state,
            Kind::Ephemeral,
            report,
            previous_ephemeral.get(&c.name),
        )
        .await;
        if let Some(entry) = entry.as_object_mut() {
            // An ephemeral container has no startup probe to pass: upstream leaves it out.
            entry.remove("started");
        }
        ephemeral_statuses.push(entry);
    }
    if !ephemeral_statuses.is_empty() {
        status["ephemeralContainerStatuses"] = json!(ephemeral_statuses);
    }
    status
}

/// Gives every container of an ending pod that has no end of its own one, as upstream's
/// status manager does before the pod is deleted (`TerminatePod`): once the pod has
/// initialized, every container; and the init containers up to the last one that was started
/// (the first, if none was).
fn terminate_statuses(init: &[Container], init_statuses: &mut [Value], statuses: &mut [Value]) {
    let waiting = |s: &Value| s["state"]["waiting"].is_object();
    let ran_before = |s: &Value| s["lastState"]["terminated"].is_object();
    let succeeded = |t: &Value| t["terminated"]["exitCode"].as_i64() == Some(0);
    let initialized = init.is_empty()
        || statuses.iter().any(|s| !waiting(s) || ran_before(s))
        || init_statuses
            .last()
            .is_some_and(|s| succeeded(&s["state"]) || succeeded(&s["lastState"]));
    let unknown = json!({"terminated": {"exitCode": 137, "reason": UNKNOWN_REASON, "message": UNKNOWN_MESSAGE}});
    let end = |s: &mut Value| {
        if !s["state"]["terminated"].is_object() {
            s["state"] = unknown.clone();
        }
    };
    if initialized {
        statuses.iter_mut().for_each(end);
    }
    let started = init_statuses
        .iter()
        .rposition(|s| !waiting(s) || ran_before(s))
        .unwrap_or(0);
    if !init_statuses.is_empty() {
        init_statuses[..=started].iter_mut().for_each(end);
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn a_kept_pod_holds_its_volumes_encoded_and_gives_them_back_whole() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {
                "containers": [{"name": "c", "image": "i"}],
                "volumes": [
                    {"name": "kube-api-access-x", "projected": {"sources": [
                        {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}
                    ]}},
                    {"name": "data", "emptyDir": {}}
                ]
            }
        }))
        .unwrap();
        let kept = Kept::new(pod.clone());
        assert_eq!(kept.spec.as_ref().unwrap().volumes, None);
        assert_eq!(kept.whole(), pod);
        assert!(kept.same_spec(&Kept::new(pod.clone())));
        let mut other = pod;
        other.spec.as_mut().unwrap().volumes.as_mut().unwrap().pop();
        assert!(!kept.same_spec(&Kept::new(other)));
        let bare = Kept::new(Pod::default());
        assert_eq!(bare.whole(), Pod::default());
    }

    fn container(name: &str) -> Container {
        Container {
            name: name.into(),
            ..Container::default()
        }
    }

    fn waiting(name: &str) -> Value {
        json!({"name": name, "state": {"waiting": {"reason": "PodInitializing"}}})
    }

    fn ended(name: &str, code: i32) -> Value {
        json!({"name": name, "state": {"terminated": {"exitCode": code, "reason": "Error"}}})
    }

    fn unknown(name: &str) -> Value {
        json!({"name": name, "state": {"terminated": {"exitCode": 137, "reason": UNKNOWN_REASON, "message": UNKNOWN_MESSAGE}}})
    }

    #[test]
    fn an_ending_pods_containers_without_an_end_get_one_as_upstreams_terminate_pod() {
        let (a, b) = (container("a"), container("b"));
        struct Case {
            name: &'static str,
            init: Vec<Container>,
            init_statuses: Vec<Value>,
            statuses: Vec<Value>,
            want_init: Vec<Value>,
            want: Vec<Value>,
        }
        let cases = [
            Case {
                name: "no init containers: every container that never ran",
                init: vec![],
                init_statuses: vec![],
                statuses: vec![ended("x", 143), waiting("y")],
                want_init: vec![],
                want: vec![ended("x", 143), unknown("y")],
            },
            Case {
                name: "stopped while initializing: the started init containers, not the rest",
                init: vec![a.clone(), b.clone()],
                init_statuses: vec![ended("a", 143), waiting("b")],
                statuses: vec![waiting("x")],
                want_init: vec![ended("a", 143), waiting("b")],
                want: vec![waiting("x")],
            },
            Case {
                name: "no init container started: the first",
                init: vec![a.clone(), b.clone()],
                init_statuses: vec![waiting("a"), waiting("b")],
                statuses: vec![waiting("x")],
                want_init: vec![unknown("a"), waiting("b")],
                want: vec![waiting("x")],
            },
            Case {
                name: "initialized (the last init container succeeded): the containers too",
                init: vec![a.clone()],
                init_statuses: vec![ended("a", 0)],
                statuses: vec![waiting("x")],
                want_init: vec![ended("a", 0)],
                want: vec![unknown("x")],
            },
        ];
        for mut case in cases {
            terminate_statuses(&case.init, &mut case.init_statuses, &mut case.statuses);
            assert_eq!(case.init_statuses, case.want_init, "{}", case.name);
            assert_eq!(case.statuses, case.want, "{}", case.name);
        }
    }
}
