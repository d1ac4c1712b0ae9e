//! The scheduling loop: an ordinary API client that watches nodes and pods into its
//! [`Cache`], queues pending pods in the [`SchedulingQueue`], and for each pod it pops runs the
//! scheduling cycle ([`decide`]: filters over a sample of the nodes, scores over the feasible
//! ones) and then the binding cycle in a task of its own: the pod is assumed on the chosen node at
//! once, the task waits at the stepper's gate and binds it through `pods/binding`, and a failed
//! binding forgets the pod and sends it back to the queue. A pod that fits nowhere gets
//! `PodScheduled=False` and a `FailedScheduling` event in kube-scheduler's words, and waits in
//! the queue for a cluster event that may help.
//!
//! Every attempt's [`Decision`] (per node: the plugin that rejected it and why; per plugin: raw
//! and normalised scores; the chosen node) goes out on the flow as a `DECIDE` event's `data`, which
//! the API server keeps for `GET /orrery/v1/scheduling/<namespace>/<pod>`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{
    Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod, ReplicationController, Service,
};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use serde::Serialize;
use serde_json::json;

use super::cache::{Cache, Change, PodInfo};
use super::filters::{self, Filter, NodeInfo};
use super::interpod::{self, NamespaceLabels};
use super::queue::{ClusterEvent, Failure, SchedulingQueue, key};
use super::volumebinding::{self, Bindings, Storage};
use super::{affinity, scores, topology};
use crate::complog::{Component, Instance};
use crate::flow::{Flow, FlowEvent};

/// The scheduler's name, in `spec.schedulerName` and in its events.
pub const SCHEDULER_NAME: &str = "default-scheduler";

/// How many of the best-scored nodes a decision records scores for (the rest only count).
pub const SCORED_NODES_RECORDED: usize = 10;

/// Why a node was rejected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// The filter plugin that rejected it (the first that did; later ones did not run).
    pub plugin: String,
    /// Its reasons, in kube-scheduler's words.
    pub reasons: Vec<String>,
}

/// One plugin's score for one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct PluginScore {
    /// The plugin's own score.
    pub raw: i64,
    /// After the plugin's normalisation (0..100).
    pub normalized: i64,
    /// The plugin's weight in the total.
    pub weight: i64,
}

/// One scheduling attempt, as the flow, the dashboard and `/orrery/v1/scheduling` show it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// `namespace/name`.
    pub pod: String,
    /// When the attempt ran (RFC 3339).
    pub time: String,
    /// The pod's attempt number, from 1.
    pub attempt: u32,
    /// Nodes in the cluster.
    pub nodes: usize,
    /// Nodes the filters ran on (a sample, in large clusters).
    pub evaluated: usize,
    /// Nodes that passed every filter.
    pub feasible: usize,
    /// Per rejected node: which plugin and why.
    pub rejected: BTreeMap<String, Rejection>,
    /// Per scored node (the best [`SCORED_NODES_RECORDED`]): per plugin, its score.
    pub scores: BTreeMap<String, BTreeMap<String, PluginScore>>,
    /// The weighted totals of the same nodes.
    pub totals: BTreeMap<String, i64>,
    /// The chosen node, if any.
    pub chosen: Option<String>,
    /// The `FailedScheduling` message, if no node fits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Decision {
    /// The plugins that rejected nodes (what a cluster event must help).
    pub fn rejecting_plugins(&self) -> BTreeSet<String> {
        self.rejected.values().map(|r| r.plugin.clone()).collect()
    }
}

/// What the scheduling cycle sees of the cluster besides the pod.
pub struct View<'a> {
    /// Every node, with its pods.
    pub nodes: &'a [NodeInfo],
    /// How many nodes have an image.
    pub nodes_with_image: &'a dyn Fn(&str) -> usize,
    /// Namespace labels, for pod affinity `namespaceSelector`s.
    pub namespace_labels: NamespaceLabels<'a>,
    /// The selector of the Services, ReplicationControllers, ReplicaSets and StatefulSets
    /// selecting the pod (for the default topology spread constraints).
    pub default_selector: k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    /// The claims, volumes and classes (for VolumeBinding).
    pub storage: Storage<'a>,
}

/// How many feasible nodes to find before scoring (kube-scheduler's adaptive
/// `percentageOfNodesToScore`): every node under 100, else `50 - nodes/125` percent (at least
/// 5%), and at least 100.
pub fn nodes_to_find(nodes: usize) -> usize {
    const MIN_FEASIBLE: usize = 100;
    if nodes < MIN_FEASIBLE {
        return nodes;
    }
    let percentage = (50i64 - nodes as i64 / 125).max(5) as usize;
    (nodes * percentage / 100).max(MIN_FEASIBLE)
}

/// Whether `pod` is this scheduler's to place: no node yet, not deleted or finished, and (the
/// `SchedulingGates` PreEnqueue plugin) no scheduling gate left; removing the last gate is a
/// pod update, which queues it.
fn needs_scheduling(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    spec.is_some_and(|s| s.node_name.as_deref().is_none_or(str::is_empty))
        && spec
            .and_then(|s| s.scheduling_gates.as_ref())
            .is_none_or(Vec::is_empty)
        && spec
            .and_then(|s| s.scheduler_name.as_deref())
            .is_none_or(|n| n == SCHEDULER_NAME)
        && pod.metadata.deletion_timestamp.is_none()
        && !matches!(phase, Some("Succeeded" | "Failed"))
}

/// Whether the scheduler has `pod` to schedule.
fn waits(pod: &PodInfo) -> bool {
    pod.pod().is_some_and(|p| needs_scheduling(p))
}

/// The Filter plugins, in kube-scheduler's order: a node passes them all to be feasible, and the
/// first that rejects it ends its checks (a [`Rejection`] names that one).
pub const FILTERS: [&str; 8] = [
    "NodeUnschedulable",
    "NodeName",
    "TaintToleration",
    "NodeAffinity",
    "NodeResourcesFit",
    volumebinding::NAME,
    topology::NAME,
    interpod::NAME,
];

/// Filters and scores `pod` against the view's nodes, starting at node `start` (round robin, as
/// upstream, so samples move over the cluster). Returns the decision and where the next pod
/// starts.
pub fn decide(pod: &Pod, view: &View<'_>, start: usize) -> (Decision, usize) {
    let all = view.nodes;
    let mut decision = Decision {
        pod: key(pod),
        nodes: all.len(),
        ..Decision::default()
    };
    if all.is_empty() {
        decision.message = Some("no nodes available to schedule pods".to_owned());
        return (decision, 0);
    }
    // PreFilter: VolumeBinding may reject the pod for every node at once.
    let pod_volumes = match volumebinding::pre_filter(pod, &view.storage) {
        Ok(volumes) => volumes,
        Err(message) => {
            for node in all {
                decision.rejected.insert(
                    node.name().to_owned(),
                    Rejection {
                        plugin: volumebinding::NAME.to_owned(),
                        reasons: vec![message.clone()],
                    },
                );
            }
            decision.message = Some(filters::failed_pre_filter(all.len(), &message));
            return (decision, start % all.len());
        }
    };
    let wanted = filters::requests(pod);
    let non_zero = filters::non_zero_of(&wanted);
    let (constraints, system_defaulted) = topology::constraints(pod, &view.default_selector);
    let spread = topology::FilterState::new(pod, &constraints, all);
    let inter = interpod::FilterState::new(pod, all, view.namespace_labels);
    let to_find = nodes_to_find(all.len());
    let mut feasible: Vec<&NodeInfo> = Vec::new();
    let mut processed = 0;
    for i in 0..all.len() {
        if feasible.len() >= to_find {
            break;
        }
        processed += 1;
        let node = &all[(start + i) % all.len()];
        // In the order of [`FILTERS`]; the first plugin that rejects a node ends its checks.
        let filters: [&dyn Fn() -> Filter; 8] = [
            &|| filters::node_unschedulable(pod, node),
            &|| filters::node_name(pod, node),
            &|| filters::taint_toleration(pod, node),
            &|| affinity::filter(pod, node),
            &|| filters::fits(&wanted, node),
            &|| {
                pod_volumes.as_ref().map_or(Filter::Ok, |v| {
                    volumebinding::filter(v, node, &view.storage)
                })
            },
            &|| spread.as_ref().map_or(Filter::Ok, |s| s.filter(node)),
            &|| inter.as_ref().map_or(Filter::Ok, |s| s.filter(node)),
        ];
        let rejection = FILTERS
            .iter()
            .zip(filters)
            .find_map(|(plugin, filter)| match filter() {
                Filter::Ok => None,
                Filter::Unschedulable(reasons) => Some(Rejection {
                    plugin: (*plugin).to_owned(),
                    reasons,
                }),
            });
        match rejection {
            Some(r) => {
                decision.rejected.insert(node.name().to_owned(), r);
            }
            None => feasible.push(node),
        }
    }
    decision.evaluated = processed;
    decision.feasible = feasible.len();
    let next = (start + processed) % all.len();
    if feasible.is_empty() {
        let reasons: Vec<Vec<String>> = decision
            .rejected
            .values()
            .map(|r| r.reasons.clone())
            .collect();
        decision.message = Some(filters::failed_scheduling(all.len(), &reasons));
        return (decision, next);
    }
    let raw = |f: &dyn Fn(&NodeInfo) -> i64| feasible.iter().map(|n| f(n)).collect::<Vec<i64>>();
    let names: Vec<&str> = feasible.iter().map(|n| n.name()).collect();
    let mut plugins: Vec<(&str, Vec<i64>, Vec<i64>)> = Vec::new();
    let least = raw(&|n| scores::least_allocated_with(non_zero, n));
    plugins.push(("NodeResourcesFit", least.clone(), least));
    let balanced = raw(&|n| scores::balanced_allocation_with(non_zero, n));
    plugins.push((
        "NodeResourcesBalancedAllocation",
        balanced.clone(),
        balanced,
    ));
    let taints = raw(&|n| scores::intolerable_taints(pod, n));
    let mut normalized = taints.clone();
    scores::normalize_reverse(&mut normalized);
    plugins.push(("TaintToleration", taints, normalized));
    let node_affinity = raw(&|n| affinity::score(pod, n));
    let mut normalized = node_affinity.clone();
    scores::normalize(&mut normalized);
    plugins.push(("NodeAffinity", node_affinity, normalized));
    let (spread_raw, spread_normalized) =
        match topology::ScoreState::new(pod, &constraints, system_defaulted, &feasible, all) {
            Some(state) => {
                let raw = raw(&|n| state.score(n));
                let mut normalized = raw.clone();
                state.normalize(&names, &mut normalized);
                (raw, normalized)
            }
            None => (vec![0; feasible.len()], vec![0; feasible.len()]),
        };
    plugins.push((topology::NAME, spread_raw, spread_normalized));
    let (inter_raw, inter_normalized) =
        match interpod::ScoreState::new(pod, all, view.namespace_labels) {
            Some(state) => {
                let raw = raw(&|n| state.score(n));
                let mut normalized = raw.clone();
                interpod::normalize(&mut normalized);
                (raw, normalized)
            }
            None => (vec![0; feasible.len()], vec![0; feasible.len()]),
        };
    plugins.push((interpod::NAME, inter_raw, inter_normalized));
    let images = raw(&|n| scores::image_locality(pod, n, view.nodes_with_image, all.len()));
    plugins.push(("ImageLocality", images.clone(), images));
    let weights: Vec<i64> = plugins.iter().map(|(p, _, _)| scores::weight(p)).collect();
    let totals: Vec<i64> = (0..feasible.len())
        .map(|i| {
            plugins
                .iter()
                .zip(&weights)
                .map(|((_, _, normalized), w)| normalized[i] * w)
                .sum()
        })
        .collect();
    // The highest total wins; ties go to the first name, so decisions are reproducible.
    let mut order: Vec<usize> = (0..feasible.len()).collect();
    order.sort_by(|&a, &b| {
        totals[b]
            .cmp(&totals[a])
            .then_with(|| names[a].cmp(names[b]))
    });
    decision.chosen = Some(names[order[0]].to_owned());
    for &i in order.iter().take(SCORED_NODES_RECORDED) {
        let per_plugin = plugins
            .iter()
            .zip(&weights)
            .map(|((plugin, raw, normalized), &weight)| {
                (
                    (*plugin).to_owned(),
                    PluginScore {
                        raw: raw[i],
                        normalized: normalized[i],
                        weight,
                    },
                )
            })
            .collect();
        decision.scores.insert(names[i].to_owned(), per_plugin);
        decision.totals.insert(names[i].to_owned(), totals[i]);
    }
    (decision, next)
}

/// What a binding task reports back.
struct Bound {
    pod: Arc<PodInfo>,
    ok: bool,
}

/// The scheduler: runs until its task is aborted.
pub struct Scheduler {
    client: kube::Client,
    flow: Flow,
    log: Instance,
}

/// The loop's state.
struct Loop {
    client: kube::Client,
    flow: Flow,
    /// Its name on the flow: `scheduler`, or the replica's (`scheduler-2`).
    name: String,
    /// Its log: kube-scheduler's, or the replica's.
    log: Instance,
    cache: Cache,
    queue: SchedulingQueue,
    next_start: usize,
    /// The last message reported for each unschedulable pod, so events are not repeated.
    reported: HashMap<String, String>,
    bound: tokio::sync::mpsc::UnboundedSender<Bound>,
    services: Store<Service>,
    replication_controllers: Store<ReplicationController>,
    replica_sets: Store<ReplicaSet>,
    stateful_sets: Store<StatefulSet>,
    namespaces: Store<Namespace>,
    claims: Store<PersistentVolumeClaim>,
    volumes: Store<PersistentVolume>,
    classes: Store<StorageClass>,
    pods: Store<PodInfo>,
}

impl Scheduler {
    /// A scheduler talking to the API server through `client`.
    pub fn new(client: kube::Client, flow: Flow) -> Self {
        Self::replica(Instance::from(Component::Scheduler), client, flow)
    }

    /// Replica `log` of the scheduler (`orrery up --schedulers N`): its hops are from its own
    /// name (`scheduler-2`), its lines in its own log.
    pub fn replica(log: Instance, client: kube::Client, flow: Flow) -> Self {
        Scheduler { client, flow, log }
    }

    /// Says in its log that replica `log` starts, as kube-scheduler does first thing (before it
    /// competes for its Lease, and so before it [`Scheduler::run`]s).
    pub fn starting(log: Instance, flow: &Flow) {
        flow.logs().info(
            log,
            "Starting Kubernetes Scheduler",
            &[("version", crate::apimachinery::KUBERNETES_VERSION.into())],
        );
    }

    /// Watches nodes and pods and schedules pending pods, forever.
    pub async fn run(self) {
        let config = watcher::Config::default;
        let (nodes, mut node_events) = crate::informers::changes::<Node>(&self.client, config());
        let (pods, mut pod_events) =
            crate::informers::changes_as(&self.client, config(), PodInfo::new);
        let (services, service_changes) =
            crate::informers::cache::<Service>(&self.client, config());
        let (replication_controllers, rc_changes) =
            crate::informers::cache::<ReplicationController>(&self.client, config());
        let (replica_sets, rs_changes) =
            crate::informers::cache::<ReplicaSet>(&self.client, config());
        let (stateful_sets, ss_changes) =
            crate::informers::cache::<StatefulSet>(&self.client, config());
        let (namespaces, ns_changes) = crate::informers::cache::<Namespace>(&self.client, config());
        let mut others = futures::stream::select_all([
            service_changes,
            rc_changes,
            rs_changes,
            ss_changes,
            ns_changes,
        ]);
        let (claims, claim_changes) =
            crate::informers::cache::<PersistentVolumeClaim>(&self.client, config());
        let (volumes, volume_changes) =
            crate::informers::cache::<PersistentVolume>(&self.client, config());
        let (classes, class_changes) =
            crate::informers::cache::<StorageClass>(&self.client, config());
        let mut storage_changes =
            futures::stream::select_all([claim_changes, volume_changes, class_changes]);
        let (bound, mut bound_results) = tokio::sync::mpsc::unbounded_channel();
        let mut state = Loop {
            client: self.client,
            flow: self.flow,
            name: self
                .log
                .supervised_as()
                .unwrap_or_else(|| "scheduler".to_owned()),
            log: self.log,
            cache: Cache::new(),
            queue: SchedulingQueue::new(),
            next_start: 0,
            reported: HashMap::new(),
            bound,
            services,
            replication_controllers,
            replica_sets,
            stateful_sets,
            namespaces,
            claims,
            volumes,
            classes,
            pods: pods.clone(),
        };
        loop {
            let wake = state
                .queue
                .next_backoff()
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(1))
                .min(tokio::time::Instant::now() + Duration::from_secs(1));
            let ready = state.queue.has_active();
            tokio::select! {
                Some(event) = node_events.next() => state.on_node(event, &nodes),
                Some(event) = pod_events.next() => state.on_pod(event, &pods),
                Some(result) = bound_results.recv() => state.on_bound(result),
                Some(()) = others.next() => {}
                Some(()) = storage_changes.next() => state.queue.on_event(ClusterEvent::StorageChange),
                () = async {}, if ready => state.schedule_one(),
                () = tokio::time::sleep_until(wake) => state.queue.flush(),
            }
        }
    }
}

impl Loop {
    fn on_node(&mut self, event: watcher::Event<Node>, store: &Store<Node>) {
        let change = match event {
            watcher::Event::Apply(node) => self.cache.apply_node(node),
            watcher::Event::Delete(node) => {
                self.cache
                    .delete_node(node.metadata.name.as_deref().unwrap_or_default());
                Change::None
            }
            watcher::Event::InitDone => {
                let all = store.state();
                let names: Vec<String> = all
                    .iter()
                    .map(|n| n.metadata.name.clone().unwrap_or_default())
                    .collect();
                self.cache.retain_nodes(&names);
                for node in all {
                    self.cache.apply_node((*node).clone());
                }
                Change::NodeAdded
            }
            watcher::Event::Init | watcher::Event::InitApply(_) => Change::None,
        };
        self.changed(change);
    }

    fn on_pod(&mut self, event: watcher::Event<PodInfo>, store: &Store<PodInfo>) {
        match event {
            watcher::Event::Apply(pod) => {
                // The reflector's copy, not a second one.
                let pod = store
                    .get(&ObjectRef::from_obj(&pod))
                    .unwrap_or_else(|| Arc::new(pod));
                let k = key(&*pod);
                if waits(&pod) {
                    if !self.cache.is_assumed(&k) {
                        self.queue.add(pod.clone());
                    }
                } else {
                    self.queue.delete(&k);
                }
                let change = self.cache.apply_pod(pod);
                self.changed(change);
            }
            watcher::Event::Delete(pod) => {
                let k = key(&pod);
                self.queue.delete(&k);
                self.reported.remove(&k);
                let change = self.cache.delete_pod(&pod.metadata);
                self.changed(change);
            }
            watcher::Event::InitDone => {
                let all = store.state();
                self.cache.reset_pods(&all);
                for pod in all {
                    let k = key(&*pod);
                    if waits(&pod) && !self.cache.is_assumed(&k) {
                        self.queue.add(pod);
                    }
                }
                self.changed(Change::PodRemoved);
            }
            watcher::Event::Init | watcher::Event::InitApply(_) => {}
        }
    }

    fn changed(&mut self, change: Change) {
        let event = match change {
            Change::None => return,
            Change::NodeAdded => ClusterEvent::NodeAdd,
            Change::NodeChanged => ClusterEvent::NodeUpdate,
            Change::PodAdded => ClusterEvent::AssignedPodAdd,
            Change::PodChanged => ClusterEvent::AssignedPodUpdate,
            Change::PodRemoved => ClusterEvent::AssignedPodDelete,
        };
        self.queue.on_event(event);
    }

    fn on_bound(&mut self, result: Bound) {
        let k = key(&*result.pod);
        if result.ok {
            self.queue.done(&k);
            self.reported.remove(&k);
        } else {
            self.cache.forget(&result.pod.metadata);
            self.queue.requeue(&k, Failure::Error);
        }
    }

    fn default_selector(
        &self,
        pod: &Pod,
    ) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
        let has_own = pod
            .spec
            .as_ref()
            .and_then(|s| s.topology_spread_constraints.as_ref())
            .is_some_and(|c| !c.is_empty());
        if has_own {
            return Default::default();
        }
        let services = self.services.state();
        let replication_controllers = self.replication_controllers.state();
        let replica_sets = self.replica_sets.state();
        let stateful_sets = self.stateful_sets.state();
        topology::default_selector(
            pod,
            &services.iter().map(|s| &**s).collect::<Vec<_>>(),
            &replication_controllers
                .iter()
                .map(|s| &**s)
                .collect::<Vec<_>>(),
            &replica_sets.iter().map(|s| &**s).collect::<Vec<_>>(),
            &stateful_sets.iter().map(|s| &**s).collect::<Vec<_>>(),
        )
    }

    fn binder(&self) -> Binder {
        Binder {
            client: self.client.clone(),
            flow: self.flow.clone(),
            name: self.name.clone(),
            log: self.log,
            claims: self.claims.clone(),
            pods: self.pods.clone(),
        }
    }

    /// One scheduling cycle: pop, decide, publish the decision, and assume and bind (in a task)
    /// or record why not.
    fn schedule_one(&mut self) {
        let Some(queued) = self.queue.pop() else {
            return;
        };
        let info = queued.pod.clone();
        let k = key(&*info);
        let Some(pod) = info.pod().filter(|p| needs_scheduling(p)).cloned() else {
            self.queue.done(&k);
            return;
        };
        let namespaces = self.namespaces.clone();
        let namespace_labels = move |name: &str| {
            namespaces
                .get(&ObjectRef::new(name))
                .and_then(|n| n.metadata.labels.clone())
                .unwrap_or_default()
        };
        let claims = self.claims.clone();
        let claim =
            move |namespace: &str, name: &str| claims.get(&ObjectRef::new(name).within(namespace));
        let (volumes, classes) = (self.volumes.state(), self.classes.state());
        let storage = Storage {
            claim: &claim,
            volumes: &volumes,
            classes: &classes,
        };
        let cache = &self.cache;
        let images = |image: &str| cache.nodes_with_image(image);
        let view = View {
            nodes: cache.nodes(),
            nodes_with_image: &images,
            namespace_labels: &namespace_labels,
            default_selector: self.default_selector(&pod),
            storage,
        };
        let (mut decision, next) = decide(&pod, &view, self.next_start);
        // What VolumeBinding's PreBind must do for the chosen node.
        let bindings = decision.chosen.as_deref().and_then(|chosen| {
            let volumes = volumebinding::pre_filter(&pod, &storage).ok().flatten()?;
            let node = cache.nodes().iter().find(|n| n.name() == chosen)?;
            Some(volumebinding::bindings(&volumes, node, &storage))
        });
        self.next_start = next;
        decision.attempt = queued.attempts;
        decision.time = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
            .to_string();
        let summary = match &decision.chosen {
            Some(node) => format!(
                "filter: {} of {} nodes evaluated, {} feasible; best {node} ({})",
                decision.evaluated, decision.nodes, decision.feasible, decision.totals[node]
            ),
            None => decision.message.clone().unwrap_or_default(),
        };
        let event = flow_event(&self.name, "DECIDE", &self.name, &pod, summary).data(&decision);
        self.flow.emit(event);
        match decision.chosen.clone() {
            Some(node) => {
                self.cache.assume(&info, &node);
                let binder = self.binder();
                let bound = self.bound.clone();
                let detail = format!(
                    "bind to {node} (score {} of {} feasible nodes)",
                    decision.totals[&node], decision.feasible
                );
                let counts = (decision.evaluated, decision.feasible);
                tokio::spawn(async move {
                    let ok = match binder.pre_bind(&pod, &node, bindings).await {
                        Ok(()) => binder.bind(&pod, &node, detail, counts).await,
                        Err(error) => {
                            binder.pre_bind_failed(&pod, &error);
                            false
                        }
                    };
                    let _ = bound.send(Bound { pod: info, ok });
                });
            }
            None => {
                self.queue
                    .requeue(&k, Failure::Unschedulable(decision.rejecting_plugins()));
                let message = decision.message.unwrap_or_default();
                if self.reported.get(&k) != Some(&message) {
                    self.reported.insert(k, message.clone());
                    let binder = self.binder();
                    tokio::spawn(async move { binder.unschedulable(&pod, &message).await });
                }
            }
        }
    }
}

/// An API error as its Status message says it.
fn api_error_words(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

fn flow_event(from: &str, verb: &str, to: &str, pod: &Pod, detail: String) -> FlowEvent {
    let mut event = FlowEvent::new(from, to, verb)
        .object(
            "Pod",
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default(),
        )
        .detail(detail);
    event.uid = pod.metadata.uid.clone().unwrap_or_default();
    event
}

/// The writes of the binding cycle, each after the stepper's gate.
struct Binder {
    client: kube::Client,
    flow: Flow,
    name: String,
    log: Instance,
    /// The claims, for PreBind's wait.
    claims: Store<PersistentVolumeClaim>,
    /// The pods, so PreBind stops waiting for a pod that is gone.
    pods: Store<PodInfo>,
}

/// How long PreBind waits for a pod's claims to be bound (kube-scheduler's `bindTimeoutSeconds`).
const BIND_TIMEOUT: Duration = Duration::from_secs(600);
/// How often it looks.
const BIND_POLL: Duration = Duration::from_millis(100);

/// Why VolumeBinding's PreBind gave up.
#[derive(Debug, thiserror::Error)]
pub enum PreBindError {
    /// A write was refused.
    #[error("binding volumes: {0}")]
    Api(String),
    /// A claim's provisioning gave the chosen node up.
    #[error("binding volumes: provisioning failed for PVC {0:?}")]
    Rescheduled(String),
    /// The claims were not bound in time.
    #[error("binding volumes: context deadline exceeded")]
    Timeout,
    /// The pod went while its claims were being bound.
    #[error("binding volumes: pod {0} is gone")]
    PodGone(String),
}

impl Binder {
    /// VolumeBinding's PreBind: gives static volumes their claimRef, asks for the rest to be
    /// provisioned on `node` (`volume.kubernetes.io/selected-node`), then waits until the PV
    /// controller has bound every claim of the pod.
    async fn pre_bind(
        &self,
        pod: &Pod,
        node: &str,
        bindings: Option<Bindings>,
    ) -> Result<(), PreBindError> {
        let Some(bindings) = bindings else {
            return Ok(());
        };
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let api_error = |e: kube::Error| PreBindError::Api(api_error_words(&e));
        for (claim, volume) in &bindings.volumes {
            let name = volume.metadata.name.clone().unwrap_or_default();
            let claim_name = claim.metadata.name.clone().unwrap_or_default();
            let mut updated = (**volume).clone();
            updated.spec.get_or_insert_default().claim_ref =
                Some(crate::apimachinery::storage::claim_ref(claim));
            updated
                .metadata
                .annotations
                .get_or_insert_default()
                .entry(crate::apimachinery::storage::BOUND_BY_CONTROLLER.into())
                .or_insert_with(|| "yes".into());
            self.flow
                .gate_emit(flow_event(
                    &self.name,
                    "BIND VOLUME",
                    "apiserver",
                    pod,
                    format!("volume {name} to claim {namespace}/{claim_name} on {node}"),
                ))
                .await;
            Api::<PersistentVolume>::all(self.client.clone())
                .replace(&name, &PostParams::default(), &updated)
                .await
                .map_err(api_error)?;
        }
        for claim in &bindings.provision {
            let claim_name = claim.metadata.name.clone().unwrap_or_default();
            let selected = crate::apimachinery::storage::annotation_value(
                &claim.metadata,
                crate::apimachinery::storage::SELECTED_NODE,
            );
            if selected == Some(node) {
                continue;
            }
            self.flow
                .gate_emit(flow_event(
                    &self.name,
                    "SELECT NODE",
                    "apiserver",
                    pod,
                    format!("claim {namespace}/{claim_name} to be provisioned on {node}"),
                ))
                .await;
            let patch = json!({"metadata": {"annotations": {crate::apimachinery::storage::SELECTED_NODE: node}}});
            Api::<PersistentVolumeClaim>::namespaced(self.client.clone(), &namespace)
                .patch(&claim_name, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .map_err(api_error)?;
        }
        let names = volumebinding::claim_names(pod);
        let provisioned: Vec<String> = bindings
            .provision
            .iter()
            .filter_map(|c| c.metadata.name.clone())
            .collect();
        let deadline = tokio::time::Instant::now() + BIND_TIMEOUT;
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        loop {
            let current = self.pods.get(&ObjectRef::new(&pod_name).within(&namespace));
            if current.is_none_or(|p| p.metadata.uid != pod.metadata.uid) {
                return Err(PreBindError::PodGone(format!("{namespace}/{pod_name}")));
            }
            let mut all_bound = true;
            for name in &names {
                let claim = self.claims.get(&ObjectRef::new(name).within(&namespace));
                match claim {
                    Some(c) if volumebinding::fully_bound(&c) => {}
                    Some(c)
                        if provisioned.contains(name) && volumebinding::rescheduled(&c, node) =>
                    {
                        return Err(PreBindError::Rescheduled(format!("{namespace}/{name}")));
                    }
                    _ => all_bound = false,
                }
            }
            if all_bound {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(PreBindError::Timeout);
            }
            tokio::time::sleep(BIND_POLL).await;
        }
    }

    /// Logs a PreBind failure as kube-scheduler does; the pod goes back to the queue.
    fn pre_bind_failed(&self, pod: &Pod, error: &PreBindError) {
        let (namespace, name) = (
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default(),
        );
        self.flow.logs().error(
            self.log,
            "Error scheduling pod; retrying",
            &error.to_string(),
            &[("pod", format!("{namespace}/{name}").into())],
        );
    }

    /// Binds `pod` to `node`, chosen among `(evaluated, feasible)` nodes.
    async fn bind(&self, pod: &Pod, node: &str, detail: String, counts: (usize, usize)) -> bool {
        let (namespace, name) = (
            pod.metadata.namespace.clone().unwrap_or_default(),
            pod.metadata.name.clone().unwrap_or_default(),
        );
        let hop = flow_event(&self.name, "BIND", "apiserver", pod, detail);
        let words = format!("{} wants to BIND {namespace}/{name} to {node}", self.name);
        self.flow.gate_with(&hop, words).await;
        self.flow.emit(hop);
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, "namespace": namespace, "uid": pod.metadata.uid}, "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
        match pods
            .create_subresource::<_, serde_json::Value>(
                "binding",
                &name,
                &PostParams::default(),
                &binding,
            )
            .await
        {
            Ok(_) => {
                self.flow.logs().info(
                    self.log,
                    "Successfully bound pod to node",
                    &[
                        ("pod", format!("{namespace}/{name}").into()),
                        ("node", node.into()),
                        ("evaluatedNodes", counts.0.into()),
                        ("feasibleNodes", counts.1.into()),
                    ],
                );
                self.record_event(
                    pod,
                    "Normal",
                    "Scheduled",
                    &format!("Successfully assigned {namespace}/{name} to {node}"),
                )
                .await;
                true
            }
            Err(error) => {
                tracing::debug!(%error, pod = %name, "binding failed");
                self.flow.logs().error(
                    self.log,
                    "Error scheduling pod; retrying",
                    &format!("binding rejected: {}", api_error_words(&error)),
                    &[("pod", format!("{namespace}/{name}").into())],
                );
                false
            }
        }
    }

    async fn unschedulable(&self, pod: &Pod, message: &str) {
        let (namespace, name) = (
            pod.metadata.namespace.clone().unwrap_or_default(),
            pod.metadata.name.clone().unwrap_or_default(),
        );
        self.flow
            .gate_emit(flow_event(
                &self.name,
                "UNSCHEDULABLE",
                "apiserver",
                pod,
                message.to_owned(),
            ))
            .await;
        self.flow.logs().info(
            self.log,
            "Unable to schedule pod; no fit; waiting",
            &[
                ("pod", format!("{namespace}/{name}").into()),
                ("err", message.into()),
            ],
        );
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let now = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let status = json!({"status": {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message, "lastProbeTime": null, "lastTransitionTime": now}]}});
        if let Err(error) = pods
            .patch_status(&name, &PatchParams::default(), &Patch::Strategic(status))
            .await
        {
            tracing::debug!(%error, pod = %name, "could not record PodScheduled=False");
        }
        self.record_event(pod, "Warning", "FailedScheduling", message)
            .await;
    }

    async fn record_event(&self, pod: &Pod, kind: &str, reason: &str, message: &str) {
        let about = crate::events::Involved {
            kind: "Pod",
            namespace: pod.metadata.namespace.as_deref().unwrap_or_default(),
            name: pod.metadata.name.as_deref().unwrap_or_default(),
            uid: pod.metadata.uid.as_deref().unwrap_or_default(),
        };
        let instance = format!("{SCHEDULER_NAME}-orrery");
        let source = crate::events::Source {
            component: SCHEDULER_NAME,
            host: None,
            instance: Some(&instance),
        };
        crate::events::record(&self.client, &about, &source, kind, reason, message).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cpu: &str, taint: Option<&str>) -> NodeInfo {
        let taints = taint.map(|t| json!([{"key": t, "value": "", "effect": "NoSchedule"}]));
        NodeInfo::new(
            serde_json::from_value(json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}, "spec": {"taints": taints}, "status": {"allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"}}})).unwrap(),
            Vec::new(),
        )
    }

    fn pod(cpu: &str) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}})).unwrap()
    }

    fn view(nodes: &[NodeInfo]) -> View<'_> {
        View {
            nodes,
            nodes_with_image: &|_| 0,
            namespace_labels: &|_| BTreeMap::new(),
            default_selector: Default::default(),
            storage: Storage::none(),
        }
    }

    #[test]
    fn decisions() {
        let nodes = vec![
            node("node-1", "2", None),
            node("node-2", "4", None),
            node("node-3", "1", None),
            node("node-4", "8", Some("node-role.kubernetes.io/control-plane")),
        ];
        let (d, next) = decide(&pod("1500m"), &view(&nodes), 0);
        assert_eq!(next, 0, "every node evaluated");
        assert_eq!(
            d.rejected,
            BTreeMap::from([
                (
                    "node-3".to_owned(),
                    Rejection {
                        plugin: "NodeResourcesFit".into(),
                        reasons: vec!["Insufficient cpu".into()]
                    }
                ),
                (
                    "node-4".to_owned(),
                    Rejection {
                        plugin: "TaintToleration".into(),
                        reasons: vec![
                            "node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }".into()
                        ]
                    }
                ),
            ])
        );
        assert_eq!(
            d.chosen.as_deref(),
            Some("node-2"),
            "the emptiest node wins"
        );
        assert_eq!((d.evaluated, d.feasible), (4, 2));
        let fit = |n: &str| d.scores[n]["NodeResourcesFit"];
        assert!(fit("node-2").normalized > fit("node-1").normalized);
        assert_eq!(d.scores["node-2"]["TaintToleration"].weight, 3);
        let total: i64 = d.scores["node-2"]
            .values()
            .map(|s| s.normalized * s.weight)
            .sum();
        assert_eq!(d.totals["node-2"], total);
        let (d, _) = decide(&pod("5"), &view(&nodes), 0);
        assert_eq!(d.chosen, None);
        assert_eq!(
            d.message.as_deref(),
            Some(
                "0/4 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 3 Insufficient cpu. preemption: 0/4 nodes are available: 4 Preemption is not helpful for scheduling."
            )
        );
        assert_eq!(
            d.rejecting_plugins(),
            BTreeSet::from(["NodeResourcesFit".to_owned(), "TaintToleration".to_owned()])
        );
        let (d, _) = decide(&pod("1"), &view(&[]), 0);
        assert_eq!(
            d.message.as_deref(),
            Some("no nodes available to schedule pods")
        );
    }

    #[test]
    fn a_pod_with_an_unbound_immediate_claim_fits_nowhere() {
        let nodes = vec![node("node-1", "2", None), node("node-2", "2", None)];
        let claim: Arc<PersistentVolumeClaim> = Arc::new(
            serde_json::from_value(json!({"metadata": {"name": "data", "namespace": "default"},
                "spec": {"storageClassName": "fast"}}))
            .unwrap(),
        );
        let lookup = move |_: &str, _: &str| Some(claim.clone());
        let mut v = view(&nodes);
        v.storage = Storage {
            claim: &lookup,
            volumes: &[],
            classes: &[],
        };
        let mut with_claim = pod("100m");
        with_claim.spec.as_mut().unwrap().volumes = Some(vec![
            serde_json::from_value(
                json!({"name": "d", "persistentVolumeClaim": {"claimName": "data"}}),
            )
            .unwrap(),
        ]);
        let (d, _) = decide(&with_claim, &v, 0);
        assert_eq!(d.chosen, None);
        assert_eq!(
            d.message.as_deref(),
            Some(
                "0/2 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
            )
        );
        assert_eq!(
            d.rejecting_plugins(),
            BTreeSet::from(["VolumeBinding".to_owned()])
        );
    }

    #[test]
    fn sampling() {
        for (nodes, expected) in [
            (5, 5),
            (99, 99),
            (100, 100),
            (150, 100),
            (1000, 420),
            (5000, 500),
            (6250, 312),
            (10_000, 500),
        ] {
            assert_eq!(nodes_to_find(nodes), expected, "{nodes}");
        }
        // 1000 nodes: 420 feasible found, then the next pod starts where this one stopped.
        let many: Vec<NodeInfo> = (0..1000)
            .map(|i| node(&format!("node-{i:04}"), "4", None))
            .collect();
        let (d, next) = decide(&pod("100m"), &view(&many), 900);
        assert_eq!((d.evaluated, d.feasible, next), (420, 420, 320));
        assert_eq!(d.scores.len(), SCORED_NODES_RECORDED);
    }
}
