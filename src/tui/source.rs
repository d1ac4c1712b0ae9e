//! What the dashboard reads from the cluster, turned into [`Msg`]s on one channel: watches of
//! Pods (with ReplicaSets, to name each pod's story), Nodes, Deployments, the other workloads
//! (StatefulSets, ReplicationControllers, CronJobs, PodDisruptionBudgets), Events, Services and
//! EndpointSlices through a `kube::Client`, converted into the model's rows the way `kubectl get` prints them; the flow
//! stream (`GET /orrery/v1/flow`, reconnecting from the last sequence number it saw); the stepper
//! and the components, polled (`/orrery/v1/stepper`, `/orrery/v1/components`) and sent only
//! when they change; the metrics API (`metrics.k8s.io/v1beta1` nodes and pods), polled every
//! [`METRICS_POLL`] and sent only when its answer changes (a 503 or 404, the metrics server
//! stopped or not served, is sent once, as "no metrics"); and the manifests a learner can
//! apply, from a `manifests/` directory.
//!
//! The channel is bounded: a dashboard that draws too slowly slows its own readers, never the
//! cluster. The flow bus then drops events for this reader alone and says how many
//! (`{"lost":N}` → [`Msg::Lost`]).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::{AsyncBufReadExt, StreamExt};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Event, Node, Pod, ReplicationController, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde::Deserialize;
use tokio::sync::{Notify, mpsc};

use super::metrics::{MetricsRead, Resources, allocatable, read_list, resources};
use super::model::{
    ComponentRow, DeploymentRow, EventRow, Msg, NodeRow, PodRow, StepperView, WorkloadRow,
};
use super::services::{EndpointRow, PortRow, ServiceRow, SliceRow};
use crate::apimachinery::printers::print_pod;
use crate::flow::{Data, FlowEvent};

/// How often the stepper and the components are polled.
pub const POLL: Duration = Duration::from_millis(250);

/// How often the metrics API is read (the metrics server itself scrapes every
/// `--metrics-resolution`, 15 s by default, so most polls find nothing new and send nothing).
pub const METRICS_POLL: Duration = Duration::from_secs(5);

/// How long one read of the metrics API may take.
const METRICS_TIMEOUT: Duration = Duration::from_secs(4);

/// How often the manifests directory is looked at again.
const MANIFESTS_POLL: Duration = Duration::from_secs(5);

/// The running readers. Dropping it stops them.
pub struct Sources {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    poke: Arc<Notify>,
}

impl Sources {
    /// Polls the stepper and the components now rather than at the next tick (after an action
    /// that changes them).
    pub fn poke(&self) {
        self.poke.notify_one();
    }

    /// A handle that pokes the poller, for effects running on their own tasks.
    pub fn poker(&self) -> Arc<Notify> {
        self.poke.clone()
    }
}

impl Drop for Sources {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Starts every reader, each sending its [`Msg`]s on `tx`. `manifests` is the directory of
/// sample manifests, if one was found ([`find_manifests`]).
pub fn spawn(client: Client, tx: mpsc::Sender<Msg>, manifests: Option<PathBuf>) -> Sources {
    let poke = Arc::new(Notify::new());
    let tasks = vec![
        tokio::spawn(follow_flow(client.clone(), tx.clone())),
        tokio::spawn(watch_pods(client.clone(), tx.clone())),
        tokio::spawn(watch_rows(
            Api::<Node>::all(client.clone()),
            tx.clone(),
            |node: &Node| {
                vec![
                    Msg::Node(node_row(node)),
                    Msg::Allocatable(node.name_any(), allocatable(node)),
                ]
            },
            |node: &Node| Some(Msg::NodeGone(node.name_any())),
        )),
        tokio::spawn(watch_rows(
            Api::<Deployment>::all(client.clone()),
            tx.clone(),
            |d: &Deployment| vec![Msg::Deployment(deployment_row(d))],
            |d: &Deployment| {
                Some(Msg::DeploymentGone(
                    d.namespace().unwrap_or_default(),
                    d.name_any(),
                ))
            },
        )),
        tokio::spawn(watch_rows(
            Api::<StatefulSet>::all(client.clone()),
            tx.clone(),
            |o: &StatefulSet| vec![Msg::Workload(statefulset_row(o))],
            |o: &StatefulSet| Some(workload_gone("StatefulSet", &o.metadata)),
        )),
        tokio::spawn(watch_rows(
            Api::<ReplicationController>::all(client.clone()),
            tx.clone(),
            |o: &ReplicationController| vec![Msg::Workload(replication_controller_row(o))],
            |o: &ReplicationController| Some(workload_gone("ReplicationController", &o.metadata)),
        )),
        tokio::spawn(watch_rows(
            Api::<CronJob>::all(client.clone()),
            tx.clone(),
            |o: &CronJob| vec![Msg::Workload(cronjob_row(o))],
            |o: &CronJob| Some(workload_gone("CronJob", &o.metadata)),
        )),
        tokio::spawn(watch_rows(
            Api::<PodDisruptionBudget>::all(client.clone()),
            tx.clone(),
            |o: &PodDisruptionBudget| vec![Msg::Workload(budget_row(o))],
            |o: &PodDisruptionBudget| Some(workload_gone("PodDisruptionBudget", &o.metadata)),
        )),
        tokio::spawn(watch_rows(
            Api::<Event>::all(client.clone()),
            tx.clone(),
            |e: &Event| vec![Msg::Event(event_row(e))],
            // The model keeps Events by `namespace/name` and has no Gone for them: an Event
            // that expires simply stops changing.
            |_: &Event| None,
        )),
        tokio::spawn(watch_rows(
            Api::<Service>::all(client.clone()),
            tx.clone(),
            |s: &Service| vec![Msg::Service(service_row(s))],
            |s: &Service| {
                Some(Msg::ServiceGone(
                    s.namespace().unwrap_or_default(),
                    s.name_any(),
                ))
            },
        )),
        tokio::spawn(watch_rows(
            Api::<EndpointSlice>::all(client.clone()),
            tx.clone(),
            |s: &EndpointSlice| vec![Msg::Slice(slice_row(s))],
            |s: &EndpointSlice| {
                Some(Msg::SliceGone(
                    s.namespace().unwrap_or_default(),
                    s.name_any(),
                ))
            },
        )),
        tokio::spawn(poll_metrics(client.clone(), tx.clone())),
        tokio::spawn(poll(client, tx.clone(), poke.clone())),
        tokio::spawn(watch_manifests(manifests, tx)),
    ];
    Sources { tasks, poke }
}

// ---------------------------------------------------------------------------------------------
// Watches.

/// `namespace/name` (or `name`), the key rows are kept under.
fn key_of(meta: &ObjectMeta) -> String {
    match &meta.namespace {
        Some(ns) => format!("{ns}/{}", meta.name.as_deref().unwrap_or_default()),
        None => meta.name.clone().unwrap_or_default(),
    }
}

/// Watches one kind and sends its rows for every change, and a Gone for every deletion,
/// including objects that vanished while the watch was down (found when it lists again).
async fn watch_rows<K>(
    api: Api<K>,
    tx: mpsc::Sender<Msg>,
    row: impl Fn(&K) -> Vec<Msg>,
    gone: impl Fn(&K) -> Option<Msg>,
) where
    K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
    K: Send + 'static,
{
    let mut stream = std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
    let mut known: HashMap<String, K> = HashMap::new();
    let mut relisted: HashSet<String> = HashSet::new();
    while let Some(event) = stream.next().await {
        let Ok(event) = event else { continue };
        let msgs: Vec<Msg> = match event {
            watcher::Event::Init => {
                relisted.clear();
                Vec::new()
            }
            watcher::Event::InitApply(object) | watcher::Event::Apply(object) => {
                let key = key_of(object.meta());
                relisted.insert(key.clone());
                let msgs = row(&object);
                known.insert(key, object);
                msgs
            }
            watcher::Event::Delete(object) => {
                known.remove(&key_of(object.meta()));
                gone(&object).into_iter().collect()
            }
            watcher::Event::InitDone => {
                let stale: Vec<String> = known
                    .keys()
                    .filter(|k| !relisted.contains(*k))
                    .cloned()
                    .collect();
                stale
                    .iter()
                    .filter_map(|k| known.remove(k))
                    .filter_map(|o| gone(&o))
                    .collect()
            }
        };
        for msg in msgs {
            if tx.send(msg).await.is_err() {
                return;
            }
        }
    }
}

/// What the pod watch remembers of each pod: its row, the ReplicaSet or Job that owns it
/// (`Kind:namespace/name`), and its requests and limits as last sent.
struct KnownPod {
    row: PodRow,
    parent: Option<String>,
    resources: Resources,
}

/// Pods, named by their story: a pod's root owner is found through the ReplicaSets and Jobs
/// watched alongside, so when a ReplicaSet's or a Job's owner becomes known its pods are sent
/// again.
async fn watch_pods(client: Client, tx: mpsc::Sender<Msg>) {
    #[allow(clippy::large_enum_variant)] // short-lived, one at a time off the stream
    enum Change {
        Pod(watcher::Event<Pod>),
        Parent(&'static str, watcher::Event<ObjectMeta>),
    }
    let pods = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .filter_map(|e| async move { e.ok().map(Change::Pod) });
    let replicasets = watcher(
        Api::<ReplicaSet>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .filter_map(|e| async move { e.ok().map(|e| Change::Parent("ReplicaSet", meta_event(e))) });
    let jobs = watcher(Api::<Job>::all(client), watcher::Config::default())
        .default_backoff()
        .filter_map(|e| async move { e.ok().map(|e| Change::Parent("Job", meta_event(e))) });
    let mut changes = std::pin::pin!(futures::stream::select(
        pods,
        futures::stream::select(replicasets, jobs)
    ));
    // `Kind:namespace/name` of a ReplicaSet or Job → its controller owner (`Deployment/web`).
    let mut parent_owner: HashMap<String, Option<String>> = HashMap::new();
    let mut known: HashMap<String, KnownPod> = HashMap::new();
    let mut relisted: HashSet<String> = HashSet::new();
    while let Some(change) = changes.next().await {
        let mut msgs = Vec::new();
        match change {
            Change::Pod(watcher::Event::Init) => relisted.clear(),
            Change::Pod(watcher::Event::InitApply(pod) | watcher::Event::Apply(pod)) => {
                let key = key_of(&pod.metadata);
                let namespace = pod.metadata.namespace.clone().unwrap_or_default();
                let parent = controller(&pod.metadata)
                    .filter(|o| INTERMEDIATE.contains(&o.kind.as_str()))
                    .map(|o| format!("{}:{namespace}/{}", o.kind, o.name));
                let owner = root_owner(&pod.metadata, |p| parent_owner.get(p).cloned().flatten());
                let row = pod_row(&pod, owner);
                let resources = resources(&pod);
                relisted.insert(key.clone());
                let sent = known.get(&key).map(|k| k.resources);
                msgs.push(Msg::Pod(row.clone()));
                if sent != Some(resources) {
                    msgs.push(Msg::PodResources(
                        row.namespace.clone(),
                        row.name.clone(),
                        resources,
                    ));
                }
                known.insert(
                    key,
                    KnownPod {
                        row,
                        parent,
                        resources,
                    },
                );
            }
            Change::Pod(watcher::Event::Delete(pod)) => {
                known.remove(&key_of(&pod.metadata));
                msgs.push(Msg::PodGone(
                    pod.metadata.namespace.clone().unwrap_or_default(),
                    pod.name_any(),
                ));
            }
            Change::Pod(watcher::Event::InitDone) => {
                let stale: Vec<String> = known
                    .keys()
                    .filter(|k| !relisted.contains(*k))
                    .cloned()
                    .collect();
                for key in stale {
                    if let Some(pod) = known.remove(&key) {
                        msgs.push(Msg::PodGone(pod.row.namespace, pod.row.name));
                    }
                }
            }
            Change::Parent(kind, watcher::Event::InitApply(meta) | watcher::Event::Apply(meta)) => {
                let key = format!("{kind}:{}", key_of(&meta));
                let owner = controller(&meta).map(|o| format!("{}/{}", o.kind, o.name));
                if parent_owner.get(&key) != Some(&owner) {
                    // Its pods' story may change: send them again, named by the new owner.
                    let story = owner.clone().unwrap_or_else(|| {
                        format!("{kind}/{}", meta.name.as_deref().unwrap_or_default())
                    });
                    for pod in known.values_mut() {
                        if pod.parent.as_deref() == Some(key.as_str()) && pod.row.owner != story {
                            pod.row.owner = story.clone();
                            msgs.push(Msg::Pod(pod.row.clone()));
                        }
                    }
                    parent_owner.insert(key, owner);
                }
            }
            Change::Parent(kind, watcher::Event::Delete(meta)) => {
                parent_owner.remove(&format!("{kind}:{}", key_of(&meta)));
            }
            Change::Parent(_, watcher::Event::Init | watcher::Event::InitDone) => {}
        }
        for msg in msgs {
            if tx.send(msg).await.is_err() {
                return;
            }
        }
    }
}

/// A watch event of an object, carrying only its metadata.
fn meta_event<K: Resource>(event: watcher::Event<K>) -> watcher::Event<ObjectMeta> {
    match event {
        watcher::Event::Apply(o) => watcher::Event::Apply(o.meta().clone()),
        watcher::Event::Delete(o) => watcher::Event::Delete(o.meta().clone()),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitApply(o) => watcher::Event::InitApply(o.meta().clone()),
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

/// The owner reference with `controller: true`, or else the first one.
fn controller(meta: &ObjectMeta) -> Option<&OwnerReference> {
    let owners = meta.owner_references.as_deref().unwrap_or_default();
    owners
        .iter()
        .find(|o| o.controller == Some(true))
        .or_else(|| owners.first())
}

/// The root of a pod's ownerReferences as `Kind/name`: a ReplicaSet's pods belong to the
/// ReplicaSet's owner (`Deployment/web`), a Job's to the Job's (`CronJob/backup`), when
/// `parent_owner` (given `Kind:namespace/name`) knows it; an unowned pod is its own story
/// (`Pod/name`).
pub fn root_owner(meta: &ObjectMeta, parent_owner: impl Fn(&str) -> Option<String>) -> String {
    match controller(meta) {
        Some(owner) if INTERMEDIATE.contains(&owner.kind.as_str()) => {
            let parent = format!(
                "{}:{}/{}",
                owner.kind,
                meta.namespace.as_deref().unwrap_or_default(),
                owner.name
            );
            parent_owner(&parent).unwrap_or_else(|| format!("{}/{}", owner.kind, owner.name))
        }
        Some(owner) => format!("{}/{}", owner.kind, owner.name),
        None => format!("Pod/{}", meta.name.as_deref().unwrap_or_default()),
    }
}

/// The owners whose own owner names their pods' story: a Deployment's ReplicaSets, a
/// CronJob's Jobs.
const INTERMEDIATE: &[&str] = &["ReplicaSet", "Job"];

/// A pod as the dashboard shows it, with its story `owner`: READY, STATUS and RESTARTS as
/// kubectl's pod printer has them ([`print_pod`]).
pub fn pod_row(pod: &Pod, owner: String) -> PodRow {
    let printed = print_pod(pod);
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let phase = if pod.metadata.deletion_timestamp.is_some() {
        "Terminating".to_owned()
    } else {
        status
            .and_then(|s| s.phase.clone())
            .unwrap_or_else(|| "Pending".into())
    };
    PodRow {
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        name: pod.name_any(),
        uid: pod.metadata.uid.clone().unwrap_or_default(),
        node: spec.and_then(|s| s.node_name.clone()),
        phase,
        status: printed.status,
        ready: printed.ready,
        containers: printed.total,
        restarts: printed.restarts,
        last_restart: printed.last_restart,
        owner,
        created: pod
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.to_string())
            .unwrap_or_default(),
    }
}

/// A node as the dashboard shows it.
pub fn node_row(node: &Node) -> NodeRow {
    let status = node.status.as_ref();
    let spec = node.spec.as_ref();
    NodeRow {
        name: node.name_any(),
        ready: status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status.clone())
            .unwrap_or_else(|| "Unknown".into()),
        unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
        taints: spec
            .and_then(|s| s.taints.as_ref())
            .map(|taints| {
                taints
                    .iter()
                    .map(|t| format!("{}:{}", t.key, t.effect))
                    .collect()
            })
            .unwrap_or_default(),
        runtime: status
            .and_then(|s| s.node_info.as_ref())
            .map(|i| i.container_runtime_version.clone())
            .unwrap_or_default(),
    }
}

/// A Service as the dashboard shows it (`kubectl get svc`'s columns).
pub fn service_row(service: &Service) -> ServiceRow {
    let spec = service.spec.clone().unwrap_or_default();
    let type_ = spec.type_.clone().unwrap_or_else(|| "ClusterIP".into());
    let mut external: Vec<String> = spec.external_ips.clone().unwrap_or_default();
    if let Some(ingress) = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
    {
        external.extend(
            ingress
                .iter()
                .filter_map(|i| i.ip.clone().or_else(|| i.hostname.clone())),
        );
    }
    // kubectl's getServiceExternalIP.
    let external = match type_.as_str() {
        "ExternalName" => spec.external_name.clone().unwrap_or_default(),
        "LoadBalancer" if external.is_empty() => "<pending>".to_owned(),
        _ if external.is_empty() => "<none>".to_owned(),
        _ => external.join(","),
    };
    ServiceRow {
        namespace: service.namespace().unwrap_or_default(),
        name: service.name_any(),
        cluster_ip: spec
            .cluster_ip
            .clone()
            .filter(|ip| !ip.is_empty())
            .unwrap_or_else(|| "<none>".into()),
        type_,
        external,
        ports: spec
            .ports
            .iter()
            .flatten()
            .map(|p| PortRow {
                name: p.name.clone().unwrap_or_default(),
                port: p.port,
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                node_port: p.node_port,
                target_port: match &p.target_port {
                    Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n)) => {
                        n.to_string()
                    }
                    Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s)) => {
                        s.clone()
                    }
                    None => p.port.to_string(),
                },
            })
            .collect(),
        created: service
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.to_string())
            .unwrap_or_default(),
    }
}

/// An EndpointSlice as the dashboard keeps it: one endpoint per address, conditions defaulted
/// as kube-proxy reads them (ready absent = true, serving absent = ready).
pub fn slice_row(slice: &EndpointSlice) -> SliceRow {
    SliceRow {
        namespace: slice.namespace().unwrap_or_default(),
        name: slice.name_any(),
        service: slice
            .labels()
            .get(crate::apimachinery::labels::SERVICE_NAME)
            .cloned()
            .unwrap_or_default(),
        ports: slice
            .ports
            .iter()
            .flatten()
            .filter_map(|p| Some((p.name.clone().unwrap_or_default(), p.port?)))
            .collect(),
        endpoints: slice
            .endpoints
            .iter()
            .flat_map(|e| {
                let c = e.conditions.clone().unwrap_or_default();
                let ready = crate::apimachinery::services::endpoint_ready(e);
                let row = EndpointRow {
                    ip: String::new(),
                    node: e.node_name.clone().unwrap_or_default(),
                    pod: e
                        .target_ref
                        .as_ref()
                        .and_then(|r| r.name.clone())
                        .unwrap_or_default(),
                    ready,
                    serving: c.serving.unwrap_or(ready),
                    terminating: c.terminating.unwrap_or(false),
                };
                e.addresses.iter().map(move |ip| EndpointRow {
                    ip: ip.clone(),
                    ..row.clone()
                })
            })
            .collect(),
    }
}

fn workload_gone(kind: &str, meta: &ObjectMeta) -> Msg {
    Msg::WorkloadGone(
        kind.to_owned(),
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

fn workload(kind: &str, meta: &ObjectMeta, columns: Vec<String>, healthy: bool) -> WorkloadRow {
    WorkloadRow {
        kind: kind.to_owned(),
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        columns,
        healthy,
    }
}

/// A StatefulSet as `kubectl get sts` prints it: READY as ready/replicas.
pub fn statefulset_row(sts: &StatefulSet) -> WorkloadRow {
    let desired = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let ready = sts
        .status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    workload(
        "StatefulSet",
        &sts.metadata,
        vec![format!("{ready}/{desired}")],
        ready >= desired,
    )
}

/// A ReplicationController as `kubectl get rc` prints it: DESIRED, CURRENT, READY.
pub fn replication_controller_row(rc: &ReplicationController) -> WorkloadRow {
    let desired = rc.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status = rc.status.clone().unwrap_or_default();
    let ready = status.ready_replicas.unwrap_or(0);
    workload(
        "ReplicationController",
        &rc.metadata,
        vec![
            desired.to_string(),
            status.replicas.to_string(),
            ready.to_string(),
        ],
        ready >= desired,
    )
}

/// A CronJob as `kubectl get cronjob` prints it (the last schedule as a time, not an age: the
/// view has no clock).
pub fn cronjob_row(cj: &CronJob) -> WorkloadRow {
    let spec = cj.spec.clone().unwrap_or_default();
    let status = cj.status.clone().unwrap_or_default();
    let suspended = spec.suspend == Some(true);
    workload(
        "CronJob",
        &cj.metadata,
        vec![
            spec.schedule,
            spec.time_zone.unwrap_or_else(|| "<none>".into()),
            if suspended { "True" } else { "False" }.into(),
            status.active.map_or(0, |a| a.len()).to_string(),
            status
                .last_schedule_time
                .map_or_else(|| "<none>".into(), |t| t.0.strftime("%H:%M:%S").to_string()),
        ],
        !suspended,
    )
}

/// A PodDisruptionBudget as `kubectl get pdb` prints it.
pub fn budget_row(pdb: &PodDisruptionBudget) -> WorkloadRow {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let show = |v: Option<&IntOrString>| match v {
        Some(IntOrString::Int(n)) => n.to_string(),
        Some(IntOrString::String(s)) => s.clone(),
        None => "N/A".into(),
    };
    let spec = pdb.spec.clone().unwrap_or_default();
    let allowed = pdb.status.as_ref().map_or(0, |s| s.disruptions_allowed);
    workload(
        "PodDisruptionBudget",
        &pdb.metadata,
        vec![
            show(spec.min_available.as_ref()),
            show(spec.max_unavailable.as_ref()),
            allowed.to_string(),
        ],
        allowed > 0,
    )
}

/// A Deployment as the dashboard shows it.
pub fn deployment_row(deployment: &Deployment) -> DeploymentRow {
    let status = deployment.status.clone().unwrap_or_default();
    DeploymentRow {
        namespace: deployment.namespace().unwrap_or_default(),
        name: deployment.name_any(),
        desired: deployment
            .spec
            .as_ref()
            .and_then(|s| s.replicas)
            .unwrap_or(1),
        ready: status.ready_replicas.unwrap_or(0),
        updated: status.updated_replicas.unwrap_or(0),
        available: status.available_replicas.unwrap_or(0),
    }
}

/// An Event as the dashboard shows it (`last` as `kubectl get events` orders them: the last
/// timestamp, else the event time, else when it was created).
pub fn event_row(event: &Event) -> EventRow {
    let object = &event.involved_object;
    EventRow {
        namespace: event.namespace().unwrap_or_default(),
        name: event.name_any(),
        type_: event.type_.clone().unwrap_or_default(),
        reason: event.reason.clone().unwrap_or_default(),
        object: format!(
            "{}/{}",
            object.kind.as_deref().unwrap_or_default(),
            object.name.as_deref().unwrap_or_default()
        ),
        message: event.message.clone().unwrap_or_default(),
        count: event.count.unwrap_or(1),
        last: event
            .last_timestamp
            .as_ref()
            .map(|t| t.0.to_string())
            .or_else(|| event.event_time.as_ref().map(|t| t.0.to_string()))
            .or_else(|| {
                event
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0.to_string())
            })
            .unwrap_or_default(),
    }
}

// ---------------------------------------------------------------------------------------------
// The flow stream.

/// One line of `GET /orrery/v1/flow`.
#[derive(Debug, PartialEq)]
pub enum FlowLine {
    /// A flow event.
    Event(Box<FlowEvent>),
    /// The bus dropped this many events before this reader read them.
    Lost(u64),
}

/// A flow event as the stream carries it (`FlowEvent` is written, never read, by the server).
#[derive(Deserialize)]
struct WireEvent {
    seq: u64,
    #[serde(default)]
    time: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    verb: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    uid: String,
    #[serde(default)]
    revision: Option<u64>,
    #[serde(default)]
    root: String,
    #[serde(default)]
    detail: String,
    #[serde(default)]
    data: Option<Box<serde_json::value::RawValue>>,
}

#[derive(Deserialize)]
struct LostLine {
    lost: u64,
}

/// Reads one line of the flow stream; `None` for a blank or unreadable line.
pub fn parse_flow_line(line: &str) -> Option<FlowLine> {
    let line = line.trim();
    if line.is_empty() {
        return None;
    }
    if line.starts_with("{\"lost\"") {
        return serde_json::from_str::<LostLine>(line)
            .ok()
            .map(|l| FlowLine::Lost(l.lost));
    }
    let wire: WireEvent = serde_json::from_str(line).ok()?;
    Some(FlowLine::Event(Box::new(FlowEvent {
        seq: wire.seq,
        time: wire.time,
        from: wire.from,
        to: wire.to,
        verb: wire.verb,
        kind: wire.kind,
        namespace: wire.namespace,
        name: wire.name,
        uid: wire.uid,
        revision: wire.revision,
        root: wire.root,
        detail: wire.detail,
        data: wire.data.map(|raw| Data(Arc::from(raw))),
    })))
}

/// Follows `GET /orrery/v1/flow`, from the beginning of the bus's ring, and again from the last
/// event seen whenever the stream ends (the API server's connection closed, a timeout).
async fn follow_flow(client: Client, tx: mpsc::Sender<Msg>) {
    let mut since = 0u64;
    let mut pause = Duration::from_millis(100);
    loop {
        let request = http::Request::get(format!("/orrery/v1/flow?since={since}"))
            .body(Vec::new())
            .expect("a valid request");
        if let Ok(reader) = client.request_stream(request).await {
            pause = Duration::from_millis(100);
            let mut lines = reader.lines();
            while let Some(Ok(line)) = lines.next().await {
                let msg = match parse_flow_line(&line) {
                    Some(FlowLine::Event(event)) => {
                        since = event.seq;
                        Msg::Flow(*event)
                    }
                    Some(FlowLine::Lost(n)) => Msg::Lost(n),
                    None => continue,
                };
                if tx.send(msg).await.is_err() {
                    return;
                }
            }
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

// ---------------------------------------------------------------------------------------------
// The stepper and the components.

#[derive(Deserialize)]
struct ComponentList {
    #[serde(default)]
    components: Vec<ComponentRow>,
}

/// `GET /orrery/v1/stepper`.
pub async fn get_stepper(client: &Client) -> Result<StepperView, kube::Error> {
    let request = http::Request::get("/orrery/v1/stepper")
        .body(Vec::new())
        .expect("a valid request");
    client.request(request).await
}

/// `GET /orrery/v1/components`.
pub async fn get_components(client: &Client) -> Result<Vec<ComponentRow>, kube::Error> {
    let request = http::Request::get("/orrery/v1/components")
        .body(Vec::new())
        .expect("a valid request");
    Ok(client.request::<ComponentList>(request).await?.components)
}

/// Polls the stepper and the components every [`POLL`] (or when poked), sending each only when
/// it changed, so an idle cluster sends nothing.
async fn poll(client: Client, tx: mpsc::Sender<Msg>, poke: Arc<Notify>) {
    let mut interval = tokio::time::interval(POLL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stepper: Option<StepperView> = None;
    let mut components: Option<Vec<ComponentRow>> = None;
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = poke.notified() => {}
        }
        if let Ok(now) = get_stepper(&client).await
            && stepper.as_ref() != Some(&now)
        {
            stepper = Some(now.clone());
            if tx.send(Msg::Stepper(now)).await.is_err() {
                return;
            }
        }
        if let Ok(now) = get_components(&client).await
            && components.as_ref() != Some(&now)
        {
            components = Some(now.clone());
            if tx.send(Msg::Components(now)).await.is_err() {
                return;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The metrics API.

/// `GET` one metrics list (`nodes` or `pods`) of `metrics.k8s.io/v1beta1`, as samples.
async fn get_metrics_list(
    client: &Client,
    resource: &str,
) -> Result<Vec<crate::tui::metrics::Sample>, String> {
    let request = http::Request::get(format!("/apis/metrics.k8s.io/v1beta1/{resource}"))
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    let text = tokio::time::timeout(METRICS_TIMEOUT, client.request_text(request))
        .await
        .map_err(|_| format!("GET {resource} metrics timed out"))?
        .map_err(|e| metrics_error(&e))?;
    read_list(&text)
}

/// Why the metrics API gave no metrics, in words for the learner.
pub fn metrics_error(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) if status.code == 503 => {
            "503: no metrics yet (the metrics server is not running or has not scraped)".to_owned()
        }
        kube::Error::Api(status) if status.code == 404 => {
            "404: metrics.k8s.io is not served by this cluster".to_owned()
        }
        kube::Error::Api(status) => format!("{}: {}", status.code, status.message),
        other => other.to_string(),
    }
}

/// One read of the metrics API: nodes, then pods.
pub async fn read_metrics(client: &Client) -> MetricsRead {
    let nodes = match get_metrics_list(client, "nodes").await {
        Ok(nodes) => nodes,
        Err(why) => return MetricsRead::Unavailable(why),
    };
    match get_metrics_list(client, "pods").await {
        Ok(pods) => MetricsRead::Lists { nodes, pods },
        Err(why) => MetricsRead::Unavailable(why),
    }
}

/// Reads the metrics API every [`METRICS_POLL`], one read at a time, and sends what it
/// answered only when that changed: a stopped metrics server is one message, not one a poll.
async fn poll_metrics(client: Client, tx: mpsc::Sender<Msg>) {
    let mut interval = tokio::time::interval(METRICS_POLL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<MetricsRead> = None;
    loop {
        interval.tick().await;
        if tx.is_closed() {
            return;
        }
        let now = read_metrics(&client).await;
        if last.as_ref() != Some(&now) {
            last = Some(now.clone());
            if tx.send(Msg::Metrics(now)).await.is_err() {
                return;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Manifests.

/// The manifests directory: `manifests/` in the current directory, then the repository's
/// (`../../manifests` from the executable, as when it runs from `target/release`), then
/// `$ORRERY_MANIFESTS`.
pub fn find_manifests(
    cwd: Option<&Path>,
    exe: Option<&Path>,
    env: Option<&Path>,
) -> Option<PathBuf> {
    let candidates = [
        cwd.map(|d| d.join("manifests")),
        exe.and_then(Path::parent)
            .map(|d| d.join("../../manifests")),
        env.map(Path::to_path_buf),
    ];
    candidates.into_iter().flatten().find(|d| d.is_dir())
}

/// [`find_manifests`] for this process.
pub fn manifests_dir() -> Option<PathBuf> {
    let cwd = std::env::current_dir().ok();
    let exe = std::env::current_exe().ok();
    let env = std::env::var_os("ORRERY_MANIFESTS").map(PathBuf::from);
    find_manifests(cwd.as_deref(), exe.as_deref(), env.as_deref())
        .map(|d| d.canonicalize().unwrap_or(d))
}

/// The `*.yaml` and `*.yml` files under `dir` (one level of subdirectories too), relative to
/// it, sorted.
pub fn list_manifests(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, depth: u32, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if depth > 0 {
                    walk(root, &path, depth - 1, out);
                }
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            ) && let Ok(relative) = path.strip_prefix(root)
            {
                out.push(relative.to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, 1, &mut out);
    out.sort();
    out
}

/// Sends the manifests list, and again whenever it changes.
async fn watch_manifests(dir: Option<PathBuf>, tx: mpsc::Sender<Msg>) {
    let mut last: Option<Vec<String>> = None;
    loop {
        let now = dir.as_deref().map(list_manifests).unwrap_or_default();
        if last.as_ref() != Some(&now) {
            last = Some(now.clone());
            if tx.send(Msg::Manifests(now)).await.is_err() {
                return;
            }
        }
        if dir.is_none() {
            return;
        }
        tokio::time::sleep(MANIFESTS_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).expect("a pod")
    }

    fn running(name: &str, ready: bool, restarts: i32) -> serde_json::Value {
        json!({"name": name, "image": "orrery/hello", "imageID": "", "ready": ready,
               "restartCount": restarts, "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}})
    }

    #[test]
    fn pod_rows_are_printed_by_kubectls_pod_printer() {
        let object = pod(json!({
            "metadata": {"name": "crash", "namespace": "default"},
            "spec": {"initContainers": [{"name": "proxy", "restartPolicy": "Always"}],
                     "containers": [{"name": "app"}]},
            "status": {"phase": "Running",
                       "initContainerStatuses": [
                           {"name": "proxy", "image": "i", "imageID": "", "ready": true, "started": true,
                            "restartCount": 1, "state": {"running": {}}}],
                       "containerStatuses": [{
                           "name": "app", "image": "i", "imageID": "", "ready": false, "restartCount": 4,
                           "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                           "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2026-01-01T00:00:00Z"}}}]}
        }));
        let row = pod_row(&object, "Pod/crash".into());
        assert_eq!(
            (row.status.as_str(), row.ready, row.containers, row.restarts),
            ("CrashLoopBackOff", 1, 2, 5)
        );
        let now: jiff::Timestamp = "2026-01-01T00:05:00Z".parse().unwrap();
        assert_eq!(row.restarts_text(Some(now)), "5 (5m ago)");
        assert_eq!(row.restarts_text(None), "5");
    }

    #[test]
    fn pod_rows_carry_phase_node_and_owner() {
        let object = pod(json!({
            "metadata": {"name": "web-7d4b9-abcde", "namespace": "default", "uid": "u1",
                         "creationTimestamp": "2026-01-01T00:00:00Z",
                         "deletionTimestamp": "2026-01-01T00:01:00Z",
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                              "name": "web-7d4b9", "uid": "rs", "controller": true}]},
            "spec": {"nodeName": "node-1", "containers": [{"name": "app"}]},
            "status": {"phase": "Running", "containerStatuses": [running("app", true, 0)]}
        }));
        let row = pod_row(&object, "Deployment/web".into());
        assert_eq!(row.phase, "Terminating");
        assert_eq!(row.status, "Terminating");
        assert_eq!(row.node.as_deref(), Some("node-1"));
        assert_eq!(row.owner, "Deployment/web");
        assert_eq!(row.uid, "u1");
        assert_eq!(row.created, "2026-01-01T00:00:00Z");
    }

    #[test]
    fn a_pods_story_is_the_root_of_its_owners() {
        let meta = |owners: serde_json::Value| -> ObjectMeta {
            serde_json::from_value(
                json!({"name": "p", "namespace": "default", "ownerReferences": owners}),
            )
            .unwrap()
        };
        let replicasets =
            |rs: &str| (rs == "ReplicaSet:default/web-7d4b9").then(|| "Deployment/web".to_owned());
        let rs = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d4b9",
                         "uid": "1", "controller": true}]);
        assert_eq!(root_owner(&meta(rs), replicasets), "Deployment/web");
        let lone_rs = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "solo",
                              "uid": "1", "controller": true}]);
        assert_eq!(root_owner(&meta(lone_rs), replicasets), "ReplicaSet/solo");
        let job = json!([{"apiVersion": "batch/v1", "kind": "Job", "name": "pi", "uid": "2",
                          "controller": true}]);
        assert_eq!(root_owner(&meta(job), replicasets), "Job/pi");
        // A ReplicationController is its pods' story itself.
        let rc = json!([{"apiVersion": "v1", "kind": "ReplicationController", "name": "legacy",
                         "uid": "3", "controller": true}]);
        assert_eq!(
            root_owner(&meta(rc), replicasets),
            "ReplicationController/legacy"
        );
        assert_eq!(root_owner(&meta(json!(null)), replicasets), "Pod/p");
    }

    #[test]
    fn replication_controller_rows_read_like_kubectl_get_rc() {
        let rc: ReplicationController = serde_json::from_value(json!({
            "metadata": {"name": "legacy", "namespace": "default"},
            "spec": {"replicas": 3, "selector": {"app": "legacy"}},
            "status": {"replicas": 3, "readyReplicas": 2},
        }))
        .unwrap();
        let row = replication_controller_row(&rc);
        assert_eq!(
            (row.kind.as_str(), row.name.as_str(), row.columns.clone()),
            (
                "ReplicationController",
                "legacy",
                vec!["3".to_owned(), "3".to_owned(), "2".to_owned()]
            )
        );
        assert!(!row.healthy);
    }

    #[test]
    fn service_and_slice_rows_read_like_kubectl() {
        let service = |spec: serde_json::Value, status: serde_json::Value| -> Service {
            serde_json::from_value(json!({
                "metadata": {"name": "web", "namespace": "default",
                             "creationTimestamp": "2026-01-01T00:00:00Z"},
                "spec": spec, "status": status,
            }))
            .unwrap()
        };
        let lb = json!({"type": "LoadBalancer", "clusterIP": "10.96.0.20",
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "nodePort": 31234, "protocol": "TCP"},
                      {"name": "dns", "port": 53, "protocol": "UDP"}]});
        let pending = service_row(&service(lb.clone(), json!({})));
        assert_eq!(pending.external, "<pending>");
        assert_eq!(pending.ports_text(), "80:31234/TCP,53/UDP");
        assert_eq!(pending.ports[0].target_port, "http");
        assert_eq!(pending.ports[1].target_port, "53");
        let assigned = service_row(&service(
            lb,
            json!({"loadBalancer": {"ingress": [{"ip": "127.240.0.1", "ipMode": "VIP"}]}}),
        ));
        assert_eq!(assigned.external, "127.240.0.1");
        let plain = service_row(&service(
            json!({"clusterIP": "None", "ports": []}),
            json!({}),
        ));
        assert_eq!(
            (
                plain.type_.as_str(),
                plain.cluster_ip.as_str(),
                plain.external.as_str()
            ),
            ("ClusterIP", "None", "<none>")
        );
        assert_eq!(plain.ports_text(), "<none>");

        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "web-abc", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": [
                {"addresses": ["10.244.1.5"], "nodeName": "node-1",
                 "targetRef": {"kind": "Pod", "name": "web-1"}},
                {"addresses": ["10.244.2.7"], "nodeName": "node-2",
                 "conditions": {"ready": false, "serving": true, "terminating": true}},
            ],
        }))
        .unwrap();
        let row = slice_row(&slice);
        assert_eq!(row.service, "web");
        assert_eq!(row.ports, [("http".to_owned(), 8080)]);
        assert_eq!(
            row.endpoints,
            [
                EndpointRow {
                    ip: "10.244.1.5".into(),
                    node: "node-1".into(),
                    pod: "web-1".into(),
                    ready: true,
                    serving: true,
                    terminating: false,
                },
                EndpointRow {
                    ip: "10.244.2.7".into(),
                    node: "node-2".into(),
                    pod: String::new(),
                    ready: false,
                    serving: true,
                    terminating: true,
                },
            ]
        );
    }

    #[test]
    fn node_deployment_and_event_rows() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "node-1"},
            "spec": {"unschedulable": true, "taints": [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                       "nodeInfo": {"containerRuntimeVersion": "orrery-sim://0.1", "architecture": "", "bootID": "",
                                    "kernelVersion": "", "kubeProxyVersion": "", "kubeletVersion": "", "machineID": "",
                                    "operatingSystem": "", "osImage": "", "systemUUID": ""}}
        }))
        .unwrap();
        assert_eq!(
            node_row(&node),
            NodeRow {
                name: "node-1".into(),
                ready: "True".into(),
                unschedulable: true,
                taints: vec!["node.kubernetes.io/unschedulable:NoSchedule".into()],
                runtime: "orrery-sim://0.1".into(),
            }
        );
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": 3, "selector": {}, "template": {}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
        }))
        .unwrap();
        assert_eq!(
            deployment_row(&deployment),
            DeploymentRow {
                namespace: "default".into(),
                name: "web".into(),
                desired: 3,
                ready: 2,
                updated: 3,
                available: 2
            }
        );
        let event: Event = serde_json::from_value(json!({
            "metadata": {"name": "web-1.abc", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web-1"},
            "type": "Normal", "reason": "Scheduled", "message": "Successfully assigned default/web-1 to node-1",
            "count": 2, "lastTimestamp": "2026-01-01T00:00:05Z"
        }))
        .unwrap();
        let row = event_row(&event);
        assert_eq!(row.object, "Pod/web-1");
        assert_eq!(row.count, 2);
        assert_eq!(row.last, "2026-01-01T00:00:05Z");
        assert_eq!(row.reason, "Scheduled");
    }

    #[test]
    fn flow_lines_are_events_or_losses() {
        let line = r#"{"seq":7,"time":"2026-01-01T00:00:00.000001Z","from":"scheduler","to":"apiserver","verb":"BIND","kind":"Pod","namespace":"default","name":"web-1","revision":42,"root":"Deployment/web","detail":"to node-1","data":{"chosen":"node-1"}}"#;
        let Some(FlowLine::Event(event)) = parse_flow_line(line) else {
            panic!("an event");
        };
        assert_eq!(event.seq, 7);
        assert_eq!(event.from, "scheduler");
        assert_eq!(event.verb, "BIND");
        assert_eq!(event.revision, Some(42));
        assert_eq!(event.root, "Deployment/web");
        assert_eq!(event.uid, "");
        assert_eq!(
            event.data.as_ref().map(Data::get),
            Some(r#"{"chosen":"node-1"}"#)
        );
        // What the server writes, the dashboard reads back unchanged.
        let again = serde_json::to_string(&event).unwrap();
        assert_eq!(parse_flow_line(&again), Some(FlowLine::Event(event)));
        assert_eq!(parse_flow_line("{\"lost\":12}\n"), Some(FlowLine::Lost(12)));
        assert_eq!(parse_flow_line(""), None);
        assert_eq!(parse_flow_line("not json"), None);
    }

    #[test]
    fn manifests_are_found_in_order_and_listed() {
        let cwd = tempfile::tempdir().unwrap();
        let repo = tempfile::tempdir().unwrap();
        let env = tempfile::tempdir().unwrap();
        let exe_dir = repo.path().join("target/release");
        std::fs::create_dir_all(&exe_dir).unwrap();
        let exe = exe_dir.join("orrery");
        // Nothing anywhere.
        assert_eq!(find_manifests(Some(cwd.path()), Some(&exe), None), None);
        // $ORRERY_MANIFESTS when nothing else.
        assert_eq!(
            find_manifests(Some(cwd.path()), Some(&exe), Some(env.path())),
            Some(env.path().to_path_buf())
        );
        // The repository's, next to the executable, before the variable.
        std::fs::create_dir(repo.path().join("manifests")).unwrap();
        let found = find_manifests(Some(cwd.path()), Some(&exe), Some(env.path())).unwrap();
        assert_eq!(
            found.canonicalize().unwrap(),
            repo.path().join("manifests").canonicalize().unwrap()
        );
        // The current directory's first.
        let dir = cwd.path().join("manifests");
        std::fs::create_dir_all(dir.join("more")).unwrap();
        assert_eq!(
            find_manifests(Some(cwd.path()), Some(&exe), Some(env.path())),
            Some(dir.clone())
        );
        for file in [
            "service.yaml",
            "hello.yaml",
            "job.yml",
            "README.md",
            "more/pod.yaml",
        ] {
            std::fs::write(dir.join(file), "").unwrap();
        }
        assert_eq!(
            list_manifests(&dir),
            ["hello.yaml", "job.yml", "more/pod.yaml", "service.yaml"]
        );
    }
}
