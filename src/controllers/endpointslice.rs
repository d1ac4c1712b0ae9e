//! The EndpointSlice controller and the Endpoints controller, as kube-controller-manager's: for
//! every Service with a selector, the pods it selects that have an IP become endpoints, in
//! `discovery.k8s.io/v1` EndpointSlices (`<service>-<random>`, labelled
//! `kubernetes.io/service-name` and managed by `endpointslice-controller.k8s.io`, owned by the
//! Service, at most 100 endpoints each, one group of slices per resolved port set, updated in
//! place) and in the legacy core/v1 Endpoints object of the same name (ready and not-ready
//! addresses per port set). Slices go when their Service goes or loses its selector; the
//! Endpoints object goes with its Service. [`KubernetesService`] is the API server's own
//! reconciler: the `kubernetes` Service in `default` and its endpoints, pointing at the API
//! server.
//!
//! Both controllers are built as kube-controller-manager's: the handlers of the shared Service,
//! Pod, EndpointSlice and Endpoints informers queue the keys of the Services a change concerns
//! (a pod's through the selectors matching its labels, old and new, when its labels or what its
//! endpoint shows changed; a slice's through its `kubernetes.io/service-name` label), each on the
//! controller's own queue, and a worker syncs one Service at a time from the caches. A Service
//! whose slice writes the cache does not show yet waits for them (upstream's stale-cache check,
//! forgotten after 30 s), so a lagging cache never doubles a slice.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort as CorePort, EndpointSubset, Endpoints, ObjectReference, Pod,
    Service, ServicePort,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::time::Instant;

use super::Context;
use super::workqueue::{self, Action, Key, WorkQueue};
use crate::apimachinery::pods;
use crate::flow::{Flow, FlowEvent};
use crate::informers::{Change, Informer};

const COMPONENT: &str = "controller/endpointslice";
const ENDPOINTS_COMPONENT: &str = "controller/endpoints";
pub use crate::apimachinery::labels::{
    MANAGED_BY as MANAGED_BY_LABEL, SERVICE_NAME as SERVICE_NAME_LABEL,
};
/// This controller's name in [`MANAGED_BY_LABEL`].
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// At most this many endpoints per slice (the controller's `--max-endpoints-per-slice` default).
const MAX_PER_SLICE: usize = 100;
/// Workers per controller (upstream's `--concurrent-service-endpoint-syncs` and
/// `--concurrent-endpoint-syncs`).
const WORKERS: usize = 5;
/// The slice informer's index of this controller's slices by their Service's key (`ns/name`).
const BY_SERVICE: &str = "endpointslice-controller/service";

/// The port a service port reaches on a pod (upstream's `FindPort`): a numeric `targetPort`
/// as is, a named one looked up among the pod's container ports with the same protocol.
fn find_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    match port.target_port.as_ref() {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            if let Ok(n) = name.parse::<i32>() {
                return Some(n);
            }
            let protocol = port.protocol.as_deref().unwrap_or("TCP");
            pod.spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name)
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port)
        }
    }
}

fn pod_ip(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    status
        .pod_ip
        .clone()
        .filter(|ip| !ip.is_empty())
        .or_else(|| status.pod_ips.as_ref()?.first().map(|p| p.ip.clone()))
        .filter(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok())
}

/// Whether a pod is an endpoint at all (upstream's `ShouldPodBeInEndpoints`): not finished, with
/// an IP, and, unless terminating pods are included, not terminating.
fn in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    !matches!(pods::phase(pod), "Succeeded" | "Failed")
        && pod_ip(pod).is_some()
        && (include_terminating || pod.metadata.deletion_timestamp.is_none())
}

fn selects(service: &Service, pod: &Pod) -> bool {
    let Some(selector) = service.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return false;
    };
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    pod.metadata.namespace == service.metadata.namespace
        && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Whether the controllers manage endpoints for this Service: it has a selector and is not an
/// ExternalName.
fn managed(service: &Service) -> bool {
    service
        .spec
        .as_ref()
        .is_some_and(|s| s.selector.is_some() && s.type_.as_deref() != Some("ExternalName"))
}

fn publish_not_ready(service: &Service) -> bool {
    service
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

fn headless(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

/// The pod's hostname when the Service publishes it: set, with the Service as its subdomain.
fn hostname(pod: &Pod, service: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let host = spec.hostname.clone().filter(|h| !h.is_empty())?;
    (spec.subdomain.as_deref() == service.metadata.name.as_deref()
        && pod.metadata.namespace == service.metadata.namespace)
        .then_some(host)
}

fn target_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

/// The slice endpoint for a pod (upstream's `podToEndpoint`).
fn endpoint(pod: &Pod, service: &Service) -> Endpoint {
    let serving = pods::is_ready(pod);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let ready = publish_not_ready(service) || (serving && !terminating);
    Endpoint {
        addresses: pod_ip(pod).into_iter().collect(),
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname: hostname(pod, service),
        node_name: pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty()),
        target_ref: Some(target_ref(pod)),
        ..Default::default()
    }
}

/// The slice ports a pod serves for the Service; service ports it cannot resolve are left out.
fn endpoint_ports(pod: &Pod, service: &Service) -> Vec<EndpointPort> {
    service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|port| {
            Some(EndpointPort {
                port: Some(find_port(pod, port)?),
                name: Some(port.name.clone().unwrap_or_default()),
                protocol: Some(port.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: port.app_protocol.clone(),
            })
        })
        .collect()
}

/// An endpoint's identity across passes: its pod and addresses.
fn endpoint_key(e: &Endpoint) -> (Option<String>, Vec<String>) {
    (
        e.target_ref.as_ref().and_then(|r| r.name.clone()),
        e.addresses.clone(),
    )
}

fn ports_key(ports: &[EndpointPort]) -> String {
    serde_json::to_string(ports).unwrap_or_default()
}

/// The endpoints the Service should have, grouped by port set (sorted by pod name).
fn desired(
    service: &Service,
    pods: &[&Pod],
) -> BTreeMap<String, (Vec<EndpointPort>, Vec<Endpoint>)> {
    let mut groups: BTreeMap<String, (Vec<EndpointPort>, Vec<Endpoint>)> = BTreeMap::new();
    let mut pods: Vec<&Pod> = pods
        .iter()
        .copied()
        .filter(|p| selects(service, p) && in_endpoints(p, true))
        .collect();
    pods.sort_by_key(|p| p.metadata.name.clone());
    for pod in pods {
        let ports = endpoint_ports(pod, service);
        let group = groups
            .entry(ports_key(&ports))
            .or_insert_with(|| (ports, Vec::new()));
        group.1.push(endpoint(pod, service));
    }
    groups
}

/// The labels a slice of the Service carries: the Service's own, then the controller's.
fn slice_labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels = service.metadata.labels.clone().unwrap_or_default();
    labels.retain(|k, _| k != SERVICE_NAME_LABEL && k != MANAGED_BY_LABEL && k != HEADLESS_LABEL);
    labels.insert(
        SERVICE_NAME_LABEL.into(),
        service.metadata.name.clone().unwrap_or_default(),
    );
    labels.insert(MANAGED_BY_LABEL.into(), CONTROLLER_NAME.into());
    if headless(service) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    labels
}

fn service_owner(service: &Service) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: service.metadata.name.clone().unwrap_or_default(),
        uid: service.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn new_slice(
    service: &Service,
    ports: Vec<EndpointPort>,
    endpoints: Vec<Endpoint>,
) -> EndpointSlice {
    let name = service.metadata.name.clone().unwrap_or_default();
    // generateName is cut so that the random suffix still fits in 63 characters.
    let prefix: String = name.chars().take(57).collect();
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!("{prefix}-")),
            namespace: service.metadata.namespace.clone(),
            labels: Some(slice_labels(service)),
            owner_references: Some(vec![service_owner(service)]),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints,
        ports: Some(ports),
    }
}

/// What to write to bring a Service's slices to what it should have.
#[derive(Debug, Default)]
struct SliceChanges {
    create: Vec<EndpointSlice>,
    update: Vec<EndpointSlice>,
    delete: Vec<String>,
}

/// Upstream's reconciler in small: per port set, existing slices keep (and refresh) the
/// endpoints that remain and lose the ones that went, new endpoints fill the room left in
/// existing slices and then new slices of at most [`MAX_PER_SLICE`]; emptied slices and slices
/// of port sets no longer served go, except that a Service without endpoints keeps one empty
/// placeholder slice.
fn arrange(service: &Service, pods: &[&Pod], existing: &[&EndpointSlice]) -> SliceChanges {
    let mut changes = SliceChanges::default();
    let groups = desired(service, pods);
    let labels = slice_labels(service);
    let mut kept: Vec<EndpointSlice> = Vec::new();
    for (key, (ports, endpoints)) in &groups {
        let mut wanted: BTreeMap<(Option<String>, Vec<String>), &Endpoint> =
            endpoints.iter().map(|e| (endpoint_key(e), e)).collect();
        let order: Vec<(Option<String>, Vec<String>)> =
            endpoints.iter().map(endpoint_key).collect();
        let mut slices: Vec<(EndpointSlice, bool)> = Vec::new();
        for slice in existing
            .iter()
            .filter(|s| ports_key(s.ports.as_deref().unwrap_or_default()) == *key)
        {
            let mut slice = (*slice).clone();
            let before = slice.endpoints.clone();
            slice.endpoints = before
                .iter()
                .filter_map(|e| wanted.remove(&endpoint_key(e)).cloned())
                .collect();
            let changed =
                slice.endpoints != before || slice.metadata.labels.as_ref() != Some(&labels);
            slices.push((slice, changed));
        }
        // New endpoints, in order: first into room in slices already changing, then any room.
        let mut fresh: Vec<Endpoint> = order
            .iter()
            .filter_map(|k| wanted.get(k).map(|e| (*e).clone()))
            .collect();
        slices.sort_by_key(|(_, changed)| !*changed);
        for (slice, changed) in &mut slices {
            while slice.endpoints.len() < MAX_PER_SLICE && !fresh.is_empty() {
                slice.endpoints.push(fresh.remove(0));
                *changed = true;
            }
        }
        for (mut slice, changed) in slices {
            if slice.endpoints.is_empty() {
                changes
                    .delete
                    .push(slice.metadata.name.clone().unwrap_or_default());
            } else {
                if changed {
                    slice.metadata.labels = Some(labels.clone());
                    changes.update.push(slice.clone());
                }
                kept.push(slice);
            }
        }
        for chunk in fresh.chunks(MAX_PER_SLICE) {
            changes
                .create
                .push(new_slice(service, ports.clone(), chunk.to_vec()));
        }
    }
    // Slices of port sets no longer served.
    for slice in existing
        .iter()
        .filter(|s| !groups.contains_key(&ports_key(s.ports.as_deref().unwrap_or_default())))
    {
        changes
            .delete
            .push(slice.metadata.name.clone().unwrap_or_default());
    }
    if groups.is_empty() {
        // The placeholder: keep one empty slice, or make one.
        let placeholder = existing
            .iter()
            .find(|s| s.endpoints.is_empty() && s.ports.as_deref().unwrap_or_default().is_empty());
        match placeholder {
            Some(p) => {
                let name = p.metadata.name.clone().unwrap_or_default();
                changes.delete.retain(|n| *n != name);
                if p.metadata.labels.as_ref() != Some(&labels) {
                    let mut p = (*p).clone();
                    p.metadata.labels = Some(labels);
                    changes.update.push(p);
                }
            }
            None => changes
                .create
                .push(new_slice(service, Vec::new(), Vec::new())),
        }
    }
    changes
}

/// One address of an Endpoints object, whether it is ready, and the ports it serves.
struct Address {
    address: EndpointAddress,
    ready: bool,
    ports: BTreeSet<String>,
}

/// The Endpoints object's subsets (upstream's Endpoints controller, then `RepackSubsets`): each
/// address with the ports it serves, grouped by port set; ready pods (or every pod with
/// `publishNotReadyAddresses`) as addresses, the others as notReadyAddresses.
fn subsets(service: &Service, pods: &[&Pod]) -> Vec<EndpointSubset> {
    let publish = publish_not_ready(service);
    let mut by_address: BTreeMap<(String, Option<String>), Address> = BTreeMap::new();
    let mut port_of: HashMap<String, CorePort> = HashMap::new();
    let spec_ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    for pod in pods
        .iter()
        .filter(|p| selects(service, p) && in_endpoints(p, publish))
    {
        let Some(ip) = pod_ip(pod) else { continue };
        let address = EndpointAddress {
            ip: ip.clone(),
            hostname: hostname(pod, service),
            node_name: pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .filter(|n| !n.is_empty()),
            target_ref: Some(target_ref(pod)),
        };
        let ready = publish || pods::is_ready(pod);
        let mut ports = BTreeSet::new();
        if spec_ports.is_empty() {
            if !headless(service) {
                continue;
            }
        } else {
            for port in &spec_ports {
                let Some(number) = find_port(pod, port) else {
                    continue;
                };
                let p = CorePort {
                    name: port.name.clone().filter(|n| !n.is_empty()),
                    port: number,
                    protocol: Some(port.protocol.clone().unwrap_or_else(|| "TCP".into())),
                    app_protocol: port.app_protocol.clone(),
                };
                let key = serde_json::to_string(&p).unwrap_or_default();
                port_of.insert(key.clone(), p);
                ports.insert(key);
            }
            if ports.is_empty() {
                continue;
            }
        }
        by_address.insert(
            (ip, pod.metadata.uid.clone()),
            Address {
                address,
                ready,
                ports,
            },
        );
    }
    let mut groups: BTreeMap<BTreeSet<String>, EndpointSubset> = BTreeMap::new();
    for Address {
        address,
        ready,
        ports,
    } in by_address.into_values()
    {
        let subset = groups
            .entry(ports.clone())
            .or_insert_with(|| EndpointSubset {
                ports: (!ports.is_empty())
                    .then(|| ports.iter().map(|k| port_of[k].clone()).collect()),
                ..Default::default()
            });
        let list = if ready {
            subset.addresses.get_or_insert_with(Vec::new)
        } else {
            subset.not_ready_addresses.get_or_insert_with(Vec::new)
        };
        list.push(address);
    }
    groups.into_values().collect()
}

/// The labels of the Service's Endpoints object: the Service's, with the headless label when
/// it has no cluster IP.
fn endpoints_labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels = service.metadata.labels.clone().unwrap_or_default();
    labels.remove(HEADLESS_LABEL);
    if headless(service) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    labels
}

/// Why a Service's sync did not finish; the Service is looked at again after a backoff.
#[derive(Debug, thiserror::Error)]
pub enum EndpointsError {
    /// The slice cache does not show every write made for the Service yet (upstream's
    /// `StaleInformerCache`).
    #[error("EndpointSlice informer cache is out of date for Service {0}")]
    Stale(Key),
    /// A write failed.
    #[error("{action} {kind} {name}: {source}")]
    Write {
        /// What was being done.
        action: &'static str,
        /// The object's kind.
        kind: &'static str,
        /// The object's name (empty for a slice being created).
        name: String,
        /// The API error.
        source: kube::Error,
    },
}

/// Writes the controller has made and not yet seen in its cache, per Service: slice name to the
/// resourceVersion it must reach (None: gone), and when they were made.
#[derive(Default)]
struct Pending {
    by_service: HashMap<Key, (Instant, HashMap<String, Option<u64>>)>,
}

impl Pending {
    /// Whether the cache shows every write made for the Service (forgotten after 30 s).
    fn settled(&mut self, key: &Key, slices: &[&EndpointSlice]) -> bool {
        let Some((since, expected)) = self.by_service.get(key) else {
            return true;
        };
        let version = |s: &EndpointSlice| {
            s.metadata
                .resource_version
                .as_deref()
                .and_then(|v| v.parse::<u64>().ok())
        };
        let seen = expected.iter().all(|(name, want)| {
            let have = slices
                .iter()
                .find(|s| s.metadata.name.as_deref() == Some(name.as_str()));
            match (want, have) {
                (None, None) => true,
                (Some(v), Some(s)) => version(s).is_some_and(|h| h >= *v),
                _ => false,
            }
        });
        if seen || since.elapsed() > Duration::from_secs(30) {
            self.by_service.remove(key);
            return true;
        }
        false
    }

    fn expect(&mut self, key: &Key, name: String, version: Option<u64>) {
        self.by_service
            .entry(key.clone())
            .or_insert_with(|| (Instant::now(), HashMap::new()))
            .1
            .insert(name, version);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The key of the Service a slice belongs to, if this controller manages the slice.
fn slice_service(slice: &EndpointSlice) -> Option<Key> {
    let labels = slice.metadata.labels.as_ref()?;
    if labels.get(MANAGED_BY_LABEL).map(String::as_str) != Some(CONTROLLER_NAME) {
        return None;
    }
    Some(Key::new(
        slice.metadata.namespace.clone().unwrap_or_default(),
        labels.get(SERVICE_NAME_LABEL).cloned().unwrap_or_default(),
    ))
}

/// Whether a pod change may move it into or out of a Service (upstream's `podEndpointsChanged`
/// "labels changed"): its labels, or the hostname and subdomain a headless Service publishes.
fn membership_changed(old: &Pod, new: &Pod) -> bool {
    let host = |p: &Pod| {
        p.spec
            .as_ref()
            .map(|s| (s.hostname.clone(), s.subdomain.clone()))
    };
    old.metadata.labels != new.metadata.labels || host(old) != host(new)
}

/// Whether a pod change shows in its endpoints (upstream's `podEndpointsChanged`): terminating,
/// readiness, addresses, node, finished.
fn endpoint_changed(old: &Pod, new: &Pod) -> bool {
    let look = |p: &Pod| {
        let status = p.status.as_ref();
        (
            p.metadata.deletion_timestamp.clone(),
            pods::is_ready(p),
            pod_ip(p),
            status.and_then(|s| s.pod_ips.clone()),
            p.spec.as_ref().and_then(|s| s.node_name.clone()),
            matches!(pods::phase(p), "Succeeded" | "Failed"),
        )
    };
    look(old) != look(new)
}

/// The Services among `services` (those of the pod's namespace) a pod change concerns
/// (upstream's `getPodServiceMemberships`, of the old pod too when its labels changed).
fn services_of(services: &[Arc<Service>], change: &Change<'_, Pod>) -> Vec<Key> {
    let mut pods = vec![change.object()];
    if let Change::Update { old, new } = change {
        if membership_changed(old, new) {
            pods.push(old);
        } else if !endpoint_changed(old, new) {
            return Vec::new();
        }
    }
    services
        .iter()
        .filter(|s| pods.iter().any(|p| selects(s, p)))
        .map(|s| Key::of(&**s))
        .collect()
}

/// The EndpointSlice and Endpoints controllers, each with its own queue of Service keys; run
/// until their task is aborted.
pub struct EndpointSliceController {
    client: kube::Client,
    flow: Flow,
    services: Informer<Service>,
    pods: Informer<Pod>,
    slices: Informer<EndpointSlice>,
    endpoints: Informer<Endpoints>,
    slice_queue: WorkQueue,
    endpoints_queue: WorkQueue,
    pending: Mutex<Pending>,
    /// Services seen with endpoints (and, at start, every Endpoints object's name): the
    /// Endpoints object of such a Service goes when the Service does.
    known: Mutex<HashSet<Key>>,
}

impl EndpointSliceController {
    /// The controllers on the shared Service, Pod, EndpointSlice and Endpoints informers,
    /// writing as `controller/endpointslice`.
    pub fn new(ctx: &Context) -> Self {
        let services = ctx.factory.informer::<Service>();
        let pods = ctx.factory.informer::<Pod>();
        let slices = ctx.factory.informer::<EndpointSlice>();
        let endpoints = ctx.factory.informer::<Endpoints>();
        let slice_queue = WorkQueue::new("endpointslice");
        let endpoints_queue = WorkQueue::new("endpoints");
        slices.add_index(BY_SERVICE, |s: &EndpointSlice| {
            slice_service(s)
                .map(|k| k.to_string())
                .into_iter()
                .collect()
        });
        let (sq, eq) = (slice_queue.clone(), endpoints_queue.clone());
        services.add_handler(move |change: Change<'_, Service>| {
            let key = Key::of(change.object());
            sq.add(key.clone());
            eq.add(key);
        });
        let (sq, eq, by_name) = (
            slice_queue.clone(),
            endpoints_queue.clone(),
            services.clone(),
        );
        pods.add_handler(move |change: Change<'_, Pod>| {
            let namespace = change.object().metadata.namespace.as_deref();
            let services = by_name.list_namespace(namespace.unwrap_or_default());
            for key in services_of(&services, &change) {
                sq.add(key.clone());
                eq.add(key);
            }
        });
        let sq = slice_queue.clone();
        slices.add_handler(move |change: Change<'_, EndpointSlice>| {
            if let Change::Update { old, .. } = &change
                && let Some(key) = slice_service(old)
            {
                sq.add(key);
            }
            if let Some(key) = slice_service(change.object()) {
                sq.add(key);
            }
        });
        let eq = endpoints_queue.clone();
        endpoints.add_handler(move |change: Change<'_, Endpoints>| {
            eq.add(Key::of(change.object()));
        });
        EndpointSliceController {
            client: ctx.client("endpointslice"),
            flow: ctx.flow.clone(),
            services,
            pods,
            slices,
            endpoints,
            slice_queue,
            endpoints_queue,
            pending: Mutex::default(),
            known: Mutex::default(),
        }
    }

    /// The flow event of a hop this controller takes.
    fn hop(
        &self,
        component: &str,
        verb: &str,
        kind: &str,
        key: &Key,
        name: &str,
        detail: String,
    ) -> FlowEvent {
        let mut e = FlowEvent::new(component, "apiserver", verb)
            .object(kind, &key.namespace, name)
            .detail(detail);
        e.root = format!("Service/{}", key.name);
        e
    }

    /// Waits for the caches, then reconciles Services' slices and Endpoints, forever. A
    /// leftover Endpoints object is checked once at start.
    pub async fn run(self) {
        self.services.synced().await;
        self.pods.synced().await;
        self.slices.synced().await;
        self.endpoints.synced().await;
        for e in self.endpoints.list() {
            let key = Key::of(&*e);
            lock(&self.known).insert(key.clone());
            self.endpoints_queue.add(key);
        }
        futures::join!(
            workqueue::run_workers(self.slice_queue.clone(), WORKERS, |key| self
                .sync_service_slices(key)),
            workqueue::run_workers(self.endpoints_queue.clone(), WORKERS, |key| self
                .sync_service_endpoints(key)),
        );
    }

    /// Brings one Service's slices to what it should have (upstream's EndpointSlice
    /// controller `syncService`); slices whose Service is gone or has no selector go.
    async fn sync_service_slices(&self, key: Key) -> Result<Action, EndpointsError> {
        let mut ours = self.slices.by_index(BY_SERVICE, &key.to_string());
        ours.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let ours: Vec<&EndpointSlice> = ours.iter().map(|s| &**s).collect();
        if !lock(&self.pending).settled(&key, &ours) {
            return Err(EndpointsError::Stale(key));
        }
        match self.services.get(&key.namespace, &key.name) {
            Some(service) if managed(&service) && service.metadata.deletion_timestamp.is_none() => {
                let uid = service.metadata.uid.clone().unwrap_or_default();
                let (current, stale): (Vec<&EndpointSlice>, Vec<&EndpointSlice>) =
                    ours.iter().partition(|s| {
                        s.metadata
                            .owner_references
                            .iter()
                            .flatten()
                            .any(|r| r.uid == uid)
                    });
                self.delete_slices(&key, &stale, "belongs to an earlier Service of this name")
                    .await?;
                let pods = self.pods.list_namespace(&key.namespace);
                let pods: Vec<&Pod> = pods.iter().map(|p| &**p).collect();
                self.sync_slices(&service, &pods, &current).await?;
            }
            Some(_) => {
                self.delete_slices(&key, &ours, "its Service has no selector")
                    .await?
            }
            None => {
                self.delete_slices(&key, &ours, "its Service is gone")
                    .await?
            }
        }
        Ok(Action::Done)
    }

    /// Brings one Service's Endpoints object to what it should have (upstream's Endpoints
    /// controller `syncService`); it goes with its Service.
    async fn sync_service_endpoints(&self, key: Key) -> Result<Action, EndpointsError> {
        let existing = self.endpoints.get(&key.namespace, &key.name);
        match self.services.get(&key.namespace, &key.name) {
            Some(service) => {
                if managed(&service) && service.metadata.deletion_timestamp.is_none() {
                    lock(&self.known).insert(key.clone());
                    let pods = self.pods.list_namespace(&key.namespace);
                    let pods: Vec<&Pod> = pods.iter().map(|p| &**p).collect();
                    self.sync_endpoints(&service, &pods, existing.as_deref())
                        .await?;
                }
            }
            None => {
                let known = lock(&self.known).remove(&key);
                let leader = |e: &Endpoints| {
                    e.metadata
                        .annotations
                        .as_ref()
                        .is_some_and(|a| a.contains_key("control-plane.alpha.kubernetes.io/leader"))
                };
                if known && existing.is_some_and(|e| !leader(&e)) {
                    self.gate_and_emit(
                        ENDPOINTS_COMPONENT,
                        "DELETE",
                        "Endpoints",
                        &key,
                        "its Service is gone",
                    )
                    .await;
                    let api: Api<Endpoints> = Api::namespaced(self.client.clone(), &key.namespace);
                    match api.delete(&key.name, &DeleteParams::default()).await {
                        Ok(_) => {}
                        Err(e) if not_found(&e) => {}
                        Err(source) => {
                            return Err(EndpointsError::Write {
                                action: "deleting",
                                kind: "Endpoints",
                                name: key.name.clone(),
                                source,
                            });
                        }
                    }
                }
            }
        }
        Ok(Action::Done)
    }

    async fn gate_and_emit(&self, component: &str, verb: &str, kind: &str, key: &Key, why: &str) {
        self.flow
            .gate_emit(self.hop(component, verb, kind, key, &key.name, why.to_owned()))
            .await;
    }

    async fn delete_slices(
        &self,
        key: &Key,
        slices: &[&EndpointSlice],
        why: &str,
    ) -> Result<(), EndpointsError> {
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), &key.namespace);
        for slice in slices {
            let name = slice.metadata.name.clone().unwrap_or_default();
            self.flow
                .gate_emit(self.hop(
                    COMPONENT,
                    "DELETE",
                    "EndpointSlice",
                    key,
                    &name,
                    why.to_owned(),
                ))
                .await;
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => lock(&self.pending).expect(key, name, None),
                Err(e) if not_found(&e) => {}
                Err(source) => {
                    return Err(EndpointsError::Write {
                        action: "deleting",
                        kind: "EndpointSlice",
                        name,
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    async fn sync_slices(
        &self,
        service: &Service,
        pods: &[&Pod],
        existing: &[&EndpointSlice],
    ) -> Result<(), EndpointsError> {
        let key = Key::of(service);
        let changes = arrange(service, pods, existing);
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), &key.namespace);
        let version = |s: &EndpointSlice| {
            s.metadata
                .resource_version
                .as_deref()
                .and_then(|v| v.parse::<u64>().ok())
        };
        for slice in &changes.create {
            self.flow
                .gate_emit(self.hop(
                    COMPONENT,
                    "CREATE",
                    "EndpointSlice",
                    &key,
                    "",
                    format!(
                        "slice of {} endpoints for Service {}",
                        slice.endpoints.len(),
                        key.name
                    ),
                ))
                .await;
            let created = api
                .create(&PostParams::default(), slice)
                .await
                .map_err(|source| EndpointsError::Write {
                    action: "creating",
                    kind: "EndpointSlice",
                    name: String::new(),
                    source,
                })?;
            let name = created.metadata.name.clone().unwrap_or_default();
            lock(&self.pending).expect(&key, name, version(&created));
        }
        for slice in &changes.update {
            let name = slice.metadata.name.clone().unwrap_or_default();
            self.flow
                .gate_emit(self.hop(
                    COMPONENT,
                    "UPDATE",
                    "EndpointSlice",
                    &key,
                    &name,
                    format!("now {} endpoints", slice.endpoints.len()),
                ))
                .await;
            let updated = api
                .replace(&name, &PostParams::default(), slice)
                .await
                .map_err(|source| EndpointsError::Write {
                    action: "updating",
                    kind: "EndpointSlice",
                    name: name.clone(),
                    source,
                })?;
            lock(&self.pending).expect(&key, name, version(&updated));
        }
        let gone: Vec<&EndpointSlice> = existing
            .iter()
            .copied()
            .filter(|s| {
                changes
                    .delete
                    .iter()
                    .any(|n| Some(n) == s.metadata.name.as_ref())
            })
            .collect();
        self.delete_slices(&key, &gone, "no endpoints left in it")
            .await
    }

    async fn sync_endpoints(
        &self,
        service: &Service,
        pods: &[&Pod],
        existing: Option<&Endpoints>,
    ) -> Result<(), EndpointsError> {
        let key = Key::of(service);
        let subsets = subsets(service, pods);
        let labels = endpoints_labels(service);
        let api: Api<Endpoints> = Api::namespaced(self.client.clone(), &key.namespace);
        let write_error = |action: &'static str| {
            let name = key.name.clone();
            move |source| EndpointsError::Write {
                action,
                kind: "Endpoints",
                name,
                source,
            }
        };
        match existing {
            Some(current)
                if current.subsets.clone().unwrap_or_default() == subsets
                    && current.metadata.labels.clone().unwrap_or_default() == labels => {}
            Some(current) => {
                let mut object = current.clone();
                object.subsets = Some(subsets);
                object.metadata.labels = Some(labels);
                self.gate_and_emit(
                    ENDPOINTS_COMPONENT,
                    "UPDATE",
                    "Endpoints",
                    &key,
                    "its pods changed",
                )
                .await;
                api.replace(&key.name, &PostParams::default(), &object)
                    .await
                    .map_err(write_error("updating"))?;
            }
            None => {
                let object = Endpoints {
                    metadata: ObjectMeta {
                        name: Some(key.name.clone()),
                        namespace: Some(key.namespace.clone()),
                        labels: Some(labels),
                        ..Default::default()
                    },
                    subsets: Some(subsets),
                };
                self.gate_and_emit(
                    ENDPOINTS_COMPONENT,
                    "CREATE",
                    "Endpoints",
                    &key,
                    "a Service with a selector",
                )
                .await;
                api.create(&PostParams::default(), &object)
                    .await
                    .map_err(write_error("creating"))?;
            }
        }
        Ok(())
    }
}

fn not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// The API server's endpoint reconciler: keeps the `kubernetes` Service in `default`
/// (ClusterIP 10.96.0.1, port 443 named `https` to the API server's port) and its Endpoints and
/// EndpointSlice (both named `kubernetes`, with the API server's advertise address), checking
/// every 10 s as kube-apiserver does.
pub struct KubernetesService {
    client: kube::Client,
    flow: Flow,
    address: std::net::Ipv4Addr,
    port: u16,
}

const KUBERNETES: &str = "kubernetes";
const RECONCILER: &str = "kube-apiserver/endpoint-reconciler";

impl KubernetesService {
    /// A reconciler for an API server that pods reach at `address`:`port` (its
    /// `--advertise-address`).
    pub fn new(client: kube::Client, flow: Flow, address: std::net::Ipv4Addr, port: u16) -> Self {
        KubernetesService {
            client,
            flow,
            address,
            port,
        }
    }

    async fn gate(&self, verb: &str, kind: &str, detail: &str) {
        let mut e = FlowEvent::new(RECONCILER, "apiserver", verb)
            .object(kind, "default", KUBERNETES)
            .detail(detail);
        e.root = "Service/kubernetes".into();
        self.flow.gate_emit(e).await;
    }

    /// Reconciles now and then every 10 s, forever.
    pub async fn run(self) {
        loop {
            if let Err(error) = self.reconcile().await {
                tracing::debug!(%error, "could not reconcile the kubernetes Service");
            }
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
    }

    async fn reconcile(&self) -> Result<(), kube::Error> {
        let port = i32::from(self.port);
        let services: Api<Service> = Api::namespaced(self.client.clone(), "default");
        let wanted_port =
            json!([{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]);
        match services.get_opt(KUBERNETES).await? {
            None => {
                let service: Service = serde_json::from_value(json!({
                    "metadata": {"name": KUBERNETES, "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
                    "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.1", "sessionAffinity": "None", "ports": wanted_port},
                }))
                .map_err(kube::Error::SerdeError)?;
                self.gate("CREATE", "Service", "the API server's Service")
                    .await;
                services.create(&PostParams::default(), &service).await?;
            }
            Some(current) => {
                let ports =
                    serde_json::to_value(current.spec.as_ref().and_then(|s| s.ports.as_ref()))
                        .unwrap_or_default();
                if ports != wanted_port {
                    self.gate("UPDATE", "Service", "the API server's port")
                        .await;
                    services
                        .patch(
                            KUBERNETES,
                            &PatchParams::default(),
                            &Patch::Merge(json!({"spec": {"ports": wanted_port}})),
                        )
                        .await?;
                }
            }
        }
        let endpoints: Api<Endpoints> = Api::namespaced(self.client.clone(), "default");
        let subsets = vec![EndpointSubset {
            addresses: Some(vec![EndpointAddress {
                ip: self.address.to_string(),
                ..Default::default()
            }]),
            ports: Some(vec![CorePort {
                name: Some("https".into()),
                port,
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }];
        let skip_mirror = BTreeMap::from([(
            "endpointslice.kubernetes.io/skip-mirror".to_owned(),
            "true".to_owned(),
        )]);
        match endpoints.get_opt(KUBERNETES).await? {
            Some(current) if current.subsets.as_ref() == Some(&subsets) => {}
            current => {
                let mut object = current.unwrap_or_default();
                object.metadata.name = Some(KUBERNETES.into());
                object.metadata.namespace = Some("default".into());
                object.metadata.labels = Some(skip_mirror);
                object.subsets = Some(subsets);
                self.gate("UPDATE", "Endpoints", "the API server's address")
                    .await;
                if object.metadata.resource_version.is_some() {
                    endpoints
                        .replace(KUBERNETES, &PostParams::default(), &object)
                        .await?;
                } else {
                    endpoints.create(&PostParams::default(), &object).await?;
                }
            }
        }
        let slices: Api<EndpointSlice> = Api::namespaced(self.client.clone(), "default");
        let wanted_endpoints = vec![Endpoint {
            addresses: vec![self.address.to_string()],
            conditions: Some(EndpointConditions {
                ready: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        }];
        let wanted_ports = vec![EndpointPort {
            name: Some("https".into()),
            port: Some(port),
            protocol: Some("TCP".into()),
            app_protocol: None,
        }];
        match slices.get_opt(KUBERNETES).await? {
            Some(current)
                if current.endpoints == wanted_endpoints
                    && current.ports.as_ref() == Some(&wanted_ports) => {}
            current => {
                let mut object = current.unwrap_or_else(|| EndpointSlice {
                    metadata: ObjectMeta::default(),
                    address_type: "IPv4".into(),
                    endpoints: Vec::new(),
                    ports: None,
                });
                object.metadata.name = Some(KUBERNETES.into());
                object.metadata.namespace = Some("default".into());
                object.metadata.labels = Some(BTreeMap::from([(
                    SERVICE_NAME_LABEL.to_owned(),
                    KUBERNETES.to_owned(),
                )]));
                object.endpoints = wanted_endpoints;
                object.ports = Some(wanted_ports);
                self.gate("UPDATE", "EndpointSlice", "the API server's address")
                    .await;
                if object.metadata.resource_version.is_some() {
                    slices
                        .replace(KUBERNETES, &PostParams::default(), &object)
                        .await?;
                } else {
                    slices.create(&PostParams::default(), &object).await?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(ports: serde_json::Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "svc-uid", "labels": {"tier": "front"}},
            "spec": {"selector": {"app": "web"}, "clusterIP": "10.96.0.10", "ports": ports},
        }))
        .unwrap()
    }

    fn pod(name: &str, ip: Option<&str>, ready: bool, terminating: bool) -> Pod {
        let mut pod = json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "labels": {"app": "web"}},
            "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "i", "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        });
        if let Some(ip) = ip {
            pod["status"]["podIP"] = json!(ip);
        }
        if terminating {
            pod["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        serde_json::from_value(pod).unwrap()
    }

    #[test]
    fn ports_resolve_by_number_and_name() {
        let p = pod("a", Some("10.244.1.2"), true, false);
        let cases = [
            (json!({"port": 80, "targetPort": 9376}), Some(9376)),
            (json!({"port": 80}), Some(80)),
            (json!({"port": 80, "targetPort": "http"}), Some(8080)),
            (
                json!({"port": 80, "targetPort": "http", "protocol": "UDP"}),
                None,
            ),
            (json!({"port": 80, "targetPort": "metrics"}), None),
        ];
        for (port, want) in cases {
            let port: ServicePort = serde_json::from_value(port.clone()).unwrap();
            assert_eq!(find_port(&p, &port), want, "{port:?}");
        }
    }

    #[test]
    fn endpoint_conditions_as_upstream() {
        let svc = service(json!([{"port": 80, "targetPort": "http", "protocol": "TCP"}]));
        // (ready pod, terminating) -> (ready, serving, terminating)
        let cases = [
            ((true, false), (true, true, false)),
            ((false, false), (false, false, false)),
            ((true, true), (false, true, true)),
            ((false, true), (false, false, true)),
        ];
        for ((ready, terminating), want) in cases {
            let e = endpoint(&pod("a", Some("10.244.1.2"), ready, terminating), &svc);
            let c = e.conditions.unwrap();
            assert_eq!(
                (c.ready.unwrap(), c.serving.unwrap(), c.terminating.unwrap()),
                want
            );
            assert_eq!(e.addresses, ["10.244.1.2"]);
            assert_eq!(e.node_name.as_deref(), Some("node-1"));
            assert_eq!(e.target_ref.unwrap().name.as_deref(), Some("a"));
        }
    }

    #[test]
    fn slices_fill_to_a_hundred_and_shrink_in_place() {
        let svc = service(json!([{"port": 80, "targetPort": "http", "protocol": "TCP"}]));
        let pods: Vec<Pod> = (0..250)
            .map(|i| {
                pod(
                    &format!("p{i:03}"),
                    Some(&format!("10.244.{}.{}", i / 200, i % 200 + 1)),
                    true,
                    false,
                )
            })
            .chain([pod("no-ip", None, true, false)])
            .collect();
        let refs: Vec<&Pod> = pods.iter().collect();
        let first = arrange(&svc, &refs, &[]);
        let sizes: Vec<usize> = first.create.iter().map(|s| s.endpoints.len()).collect();
        assert_eq!(sizes, [100, 100, 50]);
        let slice = &first.create[0];
        assert_eq!(slice.metadata.generate_name.as_deref(), Some("web-"));
        let labels = slice.metadata.labels.clone().unwrap();
        assert_eq!(labels[SERVICE_NAME_LABEL], "web");
        assert_eq!(labels[MANAGED_BY_LABEL], CONTROLLER_NAME);
        assert_eq!(labels["tier"], "front");
        assert_eq!(slice.address_type, "IPv4");
        assert_eq!(slice.ports.as_ref().unwrap()[0].port, Some(8080));
        assert_eq!(
            slice.metadata.owner_references.as_ref().unwrap()[0].uid,
            "svc-uid"
        );
        // Give them names, as the API server would.
        let existing: Vec<EndpointSlice> = first
            .create
            .into_iter()
            .enumerate()
            .map(|(i, mut s)| {
                s.metadata.name = Some(format!("web-{i}"));
                s
            })
            .collect();
        let existing_refs: Vec<&EndpointSlice> = existing.iter().collect();
        let same = arrange(&svc, &refs, &existing_refs);
        assert!(same.create.is_empty() && same.update.is_empty() && same.delete.is_empty());
        // Down to the first 120 pods: the third slice goes, the others stay as they are.
        let fewer = &refs[..120];
        let shrunk = arrange(&svc, fewer, &existing_refs);
        assert!(shrunk.create.is_empty());
        assert_eq!(shrunk.delete, ["web-2"]);
        let updated: Vec<(String, usize)> = shrunk
            .update
            .iter()
            .map(|s| (s.metadata.name.clone().unwrap(), s.endpoints.len()))
            .collect();
        assert_eq!(updated, [("web-1".to_owned(), 20)]);
        // No pods: one empty placeholder slice remains.
        let none = arrange(&svc, &[], &existing_refs);
        assert_eq!(none.delete, ["web-0", "web-1", "web-2"]);
        assert_eq!(none.create.len(), 1);
        assert!(none.create[0].endpoints.is_empty());
        assert_eq!(none.create[0].ports.as_deref(), Some(&[][..]));
    }

    #[test]
    fn pod_changes_queue_the_services_they_concern() {
        let web = service(json!([{"port": 80}]));
        let mut other = service(json!([{"port": 80}]));
        other.metadata.name = Some("api".into());
        other.spec.as_mut().unwrap().selector =
            Some(BTreeMap::from([("app".into(), "api".into())]));
        let mut plain = service(json!([{"port": 80}]));
        plain.metadata.name = Some("plain".into());
        plain.spec.as_mut().unwrap().selector = None;
        let services: Vec<Arc<Service>> = [web, other, plain].into_iter().map(Arc::new).collect();
        let names = |keys: Vec<Key>| -> Vec<String> { keys.iter().map(Key::to_string).collect() };
        let a = pod("a", Some("10.244.1.2"), false, false);
        assert_eq!(
            names(services_of(&services, &Change::Add(&a))),
            ["default/web"]
        );
        assert_eq!(
            names(services_of(&services, &Change::Delete(&a))),
            ["default/web"]
        );
        // Ready now: its endpoint changes.
        let ready = pod("a", Some("10.244.1.2"), true, false);
        let update = Change::Update {
            old: &a,
            new: &ready,
        };
        assert_eq!(names(services_of(&services, &update)), ["default/web"]);
        // Nothing its endpoint shows changed: no Service is looked at.
        let mut annotated = ready.clone();
        annotated.metadata.annotations = Some(BTreeMap::from([("x".into(), "y".into())]));
        let update = Change::Update {
            old: &ready,
            new: &annotated,
        };
        assert!(services_of(&services, &update).is_empty());
        // Relabelled: the Service it left and the one it joined.
        let mut moved = ready.clone();
        moved.metadata.labels = Some(BTreeMap::from([("app".into(), "api".into())]));
        let update = Change::Update {
            old: &ready,
            new: &moved,
        };
        assert_eq!(
            names(services_of(&services, &update)),
            ["default/web", "default/api"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_service_waits_until_the_cache_shows_its_writes() {
        let key = Key::new("default", "web");
        let mut slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "web-1", "namespace": "default", "resourceVersion": "7"},
            "addressType": "IPv4", "endpoints": [],
        }))
        .unwrap();
        let mut pending = Pending::default();
        assert!(pending.settled(&key, &[]));
        pending.expect(&key, "web-1".into(), Some(8));
        pending.expect(&key, "web-0".into(), None);
        assert!(!pending.settled(&key, &[&slice]), "an older version");
        slice.metadata.resource_version = Some("8".into());
        assert!(pending.settled(&key, &[&slice]));
        pending.expect(&key, "web-1".into(), None);
        assert!(!pending.settled(&key, &[&slice]), "not gone yet");
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(pending.settled(&key, &[&slice]), "forgotten after 30 s");
    }

    #[test]
    fn endpoints_split_ready_and_not_ready() {
        let svc = service(
            json!([{"name": "web", "port": 80, "targetPort": "http", "protocol": "TCP"}, {"name": "alt", "port": 81, "targetPort": 9000, "protocol": "TCP"}]),
        );
        let pods = [
            pod("a", Some("10.244.1.3"), true, false),
            pod("b", Some("10.244.1.2"), false, false),
            pod("c", Some("10.244.1.4"), true, true),
            pod("d", None, true, false),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let got = serde_json::to_value(subsets(&svc, &refs)).unwrap();
        assert_eq!(got.as_array().unwrap().len(), 1, "{got}");
        let ips = |field: &str| -> Vec<String> {
            got[0][field]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["ip"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(ips("addresses"), ["10.244.1.3"]);
        assert_eq!(ips("notReadyAddresses"), ["10.244.1.2"]);
        let mut ports: Vec<i64> = got[0]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["port"].as_i64().unwrap())
            .collect();
        ports.sort();
        assert_eq!(ports, [8080, 9000]);
        assert_eq!(got[0]["addresses"][0]["targetRef"]["name"], "a");
    }
}
