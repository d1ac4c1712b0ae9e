//! The Node authorizer's graph: which objects each node's pods use, followed from the store as
//! upstream's `graph_populator.go` follows pods and PersistentVolumes, so that a kubelet may
//! read only what its own pods need (`graph.go`).
//!
//! Upstream keeps a general directed graph whose edges all point at nodes:
//!
//! ```text
//! node <- pod <- secret, configmap, pvc, serviceaccount
//!               pvc <- pv <- secret
//! ```
//!
//! Here the same relations are kept in the shape the questions take. Every object a bound pod
//! uses (a Secret, ConfigMap, PersistentVolumeClaim or ServiceAccount in the pod's namespace)
//! has the nodes whose pods use it, each with how many do: upstream's destination-edge index,
//! kept for every object. A pod keeps only its node and the objects it uses (names shared with
//! the object's entry), so 10,000 pods cost a few hundred bytes each. A PersistentVolume with a
//! `claimRef` keeps its claim and the Secrets its source names for the kubelet; the way from a
//! volume to a node is then through its claim's pods.
//!
//! A pod's references are fixed once it is bound (its spec is immutable but for ephemeral
//! containers, which only add), so each write of a bound pod just replaces its entry. Mirror
//! pods use nothing: a node must not grant itself access by making one (NodeRestriction refuses
//! such mirror pods too). Nodes are never forgotten, as upstream keeps their vertices.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Deserializer};

use crate::apiserver::follow;
use crate::store::KeyValue;

/// What a pod may use, as the Node authorizer names the kinds it guards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Kind {
    Secret,
    ConfigMap,
    PersistentVolumeClaim,
    ServiceAccount,
}

/// The objects of one kind a node's questions start from: a PersistentVolume, or one of the
/// kinds a pod uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Start {
    Used(Kind),
    PersistentVolume,
}

/// How many pods of each node use one object: `(node, pods)` in node order.
#[derive(Debug, Default)]
struct Users(Vec<(u32, u32)>);

impl Users {
    fn has(&self, node: u32) -> bool {
        self.0.binary_search_by_key(&node, |(n, _)| *n).is_ok()
    }

    fn add(&mut self, node: u32) {
        match self.0.binary_search_by_key(&node, |(n, _)| *n) {
            Ok(i) => self.0[i].1 += 1,
            Err(i) => self.0.insert(i, (node, 1)),
        }
    }

    /// One pod fewer on `node`; whether none is left at all.
    fn remove(&mut self, node: u32) -> bool {
        if let Ok(i) = self.0.binary_search_by_key(&node, |(n, _)| *n) {
            self.0[i].1 -= 1;
            if self.0[i].1 == 0 {
                self.0.remove(i);
            }
        }
        self.0.is_empty()
    }
}

/// A bound pod: its node and what it uses (`<namespace>/<name>` of each object).
#[derive(Debug)]
struct PodEntry {
    node: u32,
    uses: Box<[(Kind, Arc<str>)]>,
}

/// A PersistentVolume bound to a claim: the claim and the Secrets the kubelet reads for it.
#[derive(Debug)]
struct VolumeEntry {
    claim: Arc<str>,
    secrets: Box<[Arc<str>]>,
}

/// What a pod uses, read from it: its node, then `(kind, "<namespace>/<name>")` of each object.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct BoundPod {
    pub(crate) node: String,
    pub(crate) uses: BTreeSet<(Kind, String)>,
}

/// What a PersistentVolume with a `claimRef` leads to: the claim and the kubelet-visible
/// Secrets, each as `<namespace>/<name>`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct BoundVolume {
    pub(crate) claim: String,
    pub(crate) secrets: BTreeSet<String>,
}

/// The relations, at one moment.
#[derive(Debug, Default)]
pub(crate) struct Graph {
    node_names: Vec<Arc<str>>,
    node_ids: HashMap<Arc<str>, u32>,
    /// Per kind, in [`Kind`]'s order: `<namespace>/<name>` → the nodes whose pods use it.
    used: [HashMap<Arc<str>, Users>; 4],
    /// `<namespace>/<name>` → the bound pod.
    pods: HashMap<Box<str>, PodEntry>,
    /// A PersistentVolume's name → its claim and Secrets.
    volumes: HashMap<Box<str>, VolumeEntry>,
    /// A Secret's `<namespace>/<name>` → the PersistentVolumes that name it.
    volume_secrets: HashMap<Arc<str>, Vec<Arc<str>>>,
}

fn slot(kind: Kind) -> usize {
    kind as usize
}

/// `name`, sharing the string of `map`'s key when it has one.
fn shared<V>(map: &HashMap<Arc<str>, V>, name: &str) -> Arc<str> {
    map.get_key_value(name)
        .map_or_else(|| Arc::from(name), |(k, _)| k.clone())
}

impl Graph {
    fn node_id(&mut self, node: &str) -> u32 {
        if let Some(id) = self.node_ids.get(node) {
            return *id;
        }
        let id = u32::try_from(self.node_names.len()).unwrap_or(u32::MAX);
        let name: Arc<str> = Arc::from(node);
        self.node_names.push(name.clone());
        self.node_ids.insert(name, id);
        id
    }

    /// Puts (`Some`) or removes the pod at `<namespace>/<name>`.
    pub(crate) fn set_pod(&mut self, key: &str, pod: Option<BoundPod>) {
        if let Some(old) = self.pods.remove(key) {
            for (kind, name) in old.uses.iter() {
                let users = &mut self.used[slot(*kind)];
                if users.get_mut(name).is_some_and(|u| u.remove(old.node)) {
                    users.remove(name);
                }
            }
        }
        let Some(pod) = pod else { return };
        let node = self.node_id(&pod.node);
        let uses: Box<[(Kind, Arc<str>)]> = pod
            .uses
            .into_iter()
            .map(|(kind, name)| {
                let users = &mut self.used[slot(kind)];
                let name = shared(users, &name);
                users.entry(name.clone()).or_default().add(node);
                (kind, name)
            })
            .collect();
        self.pods.insert(key.into(), PodEntry { node, uses });
    }

    /// Puts (`Some`: bound to a claim) or removes the PersistentVolume `name`.
    pub(crate) fn set_volume(&mut self, name: &str, volume: Option<BoundVolume>) {
        if let Some(old) = self.volumes.remove(name) {
            for secret in old.secrets.iter() {
                if let Some(volumes) = self.volume_secrets.get_mut(secret) {
                    volumes.retain(|v| &**v != name);
                    if volumes.is_empty() {
                        self.volume_secrets.remove(secret);
                    }
                }
            }
        }
        let Some(volume) = volume else { return };
        let own: Arc<str> = Arc::from(name);
        let secrets = volume
            .secrets
            .into_iter()
            .map(|secret| {
                let secret = shared(&self.volume_secrets, &secret);
                self.volume_secrets
                    .entry(secret.clone())
                    .or_default()
                    .push(own.clone());
                secret
            })
            .collect();
        let claim = shared(&self.used[slot(Kind::PersistentVolumeClaim)], &volume.claim);
        self.volumes
            .insert(name.into(), VolumeEntry { claim, secrets });
    }

    fn clear_pods(&mut self) {
        self.pods.clear();
        self.used = Default::default();
    }

    fn clear_volumes(&mut self) {
        self.volumes.clear();
        self.volume_secrets.clear();
    }

    fn volume_reaches(&self, volume: &str, node: u32) -> bool {
        self.volumes.get(volume).is_some_and(|v| {
            self.used[slot(Kind::PersistentVolumeClaim)]
                .get(&v.claim)
                .is_some_and(|users| users.has(node))
        })
    }

    /// Whether a path leads from the object to `node` (`hasPathFrom`): a pod on the node uses
    /// it, or (a Secret) a volume bound to a claim a pod on the node uses names it, or (a
    /// PersistentVolume) its claim is used by a pod on the node.
    pub(crate) fn has_path(&self, node: &str, start: Start, namespace: &str, name: &str) -> bool {
        let Some(&node) = self.node_ids.get(node) else {
            return false;
        };
        match start {
            Start::PersistentVolume => self.volume_reaches(name, node),
            Start::Used(kind) => {
                let key = format!("{namespace}/{name}");
                self.used[slot(kind)]
                    .get(key.as_str())
                    .is_some_and(|users| users.has(node))
                    || (kind == Kind::Secret
                        && self
                            .volume_secrets
                            .get(key.as_str())
                            .is_some_and(|volumes| {
                                volumes.iter().any(|v| self.volume_reaches(v, node))
                            }))
            }
        }
    }

    /// How many bound pods and bound volumes the graph holds.
    #[cfg(test)]
    fn counts(&self) -> (usize, usize, usize) {
        let objects = self.used.iter().map(HashMap::len).sum();
        (self.pods.len(), objects, self.volumes.len())
    }
}

/// A `null` as the type's default (Go's JSON writes `null` for an empty list or map).
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The few fields of a stored Pod the graph reads; everything else is skipped unread.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct PodJson {
    metadata: MetaJson,
    spec: PodSpecJson,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct MetaJson {
    #[serde(deserialize_with = "nullable")]
    name: String,
    #[serde(deserialize_with = "nullable")]
    annotations: HashMap<String, serde::de::IgnoredAny>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct PodSpecJson {
    #[serde(deserialize_with = "nullable")]
    node_name: String,
    #[serde(deserialize_with = "nullable")]
    service_account_name: String,
    #[serde(deserialize_with = "nullable")]
    image_pull_secrets: Vec<Named>,
    #[serde(deserialize_with = "nullable")]
    init_containers: Vec<ContainerJson>,
    #[serde(deserialize_with = "nullable")]
    containers: Vec<ContainerJson>,
    #[serde(deserialize_with = "nullable")]
    ephemeral_containers: Vec<ContainerJson>,
    #[serde(deserialize_with = "nullable")]
    volumes: Vec<VolumeJson>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Named {
    #[serde(deserialize_with = "nullable")]
    name: String,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct ContainerJson {
    #[serde(deserialize_with = "nullable")]
    env: Vec<EnvJson>,
    #[serde(deserialize_with = "nullable")]
    env_from: Vec<EnvFromJson>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct EnvJson {
    value_from: Option<ValueFromJson>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct ValueFromJson {
    secret_key_ref: Option<Named>,
    config_map_key_ref: Option<Named>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct EnvFromJson {
    secret_ref: Option<Named>,
    config_map_ref: Option<Named>,
}

/// A `secretRef` holder (CephFS, Cinder, FlexVolume, RBD, ScaleIO, iSCSI, StorageOS), in a pod
/// or a PersistentVolume.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct SecretRefJson {
    secret_ref: Option<NamespacedJson>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NamespacedJson {
    #[serde(deserialize_with = "nullable")]
    name: String,
    #[serde(deserialize_with = "nullable")]
    namespace: String,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct AzureFileJson {
    #[serde(deserialize_with = "nullable")]
    secret_name: String,
    #[serde(deserialize_with = "nullable")]
    secret_namespace: String,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct CsiJson {
    controller_publish_secret_ref: Option<NamespacedJson>,
    controller_expand_secret_ref: Option<NamespacedJson>,
    node_publish_secret_ref: Option<NamespacedJson>,
    node_stage_secret_ref: Option<NamespacedJson>,
    node_expand_secret_ref: Option<NamespacedJson>,
}

/// The sources of a pod's volume that name other objects.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct VolumeJson {
    #[serde(deserialize_with = "nullable")]
    name: String,
    secret: Option<SecretVolumeJson>,
    config_map: Option<Named>,
    projected: Option<ProjectedJson>,
    persistent_volume_claim: Option<ClaimJson>,
    ephemeral: Option<serde::de::IgnoredAny>,
    azure_file: Option<AzureFileJson>,
    cephfs: Option<SecretRefJson>,
    cinder: Option<SecretRefJson>,
    flex_volume: Option<SecretRefJson>,
    rbd: Option<SecretRefJson>,
    #[serde(rename = "scaleIO")]
    scale_io: Option<SecretRefJson>,
    iscsi: Option<SecretRefJson>,
    storageos: Option<SecretRefJson>,
    csi: Option<CsiJson>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct SecretVolumeJson {
    #[serde(deserialize_with = "nullable")]
    secret_name: String,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct ProjectedJson {
    #[serde(deserialize_with = "nullable")]
    sources: Vec<ProjectionJson>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct ProjectionJson {
    secret: Option<Named>,
    config_map: Option<Named>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct ClaimJson {
    #[serde(deserialize_with = "nullable")]
    claim_name: String,
}

/// The annotation of a static pod's mirror pod.
pub(crate) const MIRROR: &str = "kubernetes.io/config.mirror";

/// What a stored pod uses (`AddPod`), if it is bound to a node: its ServiceAccount, the
/// Secrets and ConfigMaps `VisitPodSecretNames` and `VisitPodConfigmapNames` visit (image pull
/// secrets, every container's `env` and `envFrom`, volumes and projected sources), and the
/// claims of its `persistentVolumeClaim` and `ephemeral` volumes (`<pod>-<volume>`, as
/// `ephemeral.VolumeClaimName` names them).
pub(crate) fn pod_uses(namespace: &str, stored: &[u8]) -> Option<BoundPod> {
    let pod: PodJson = serde_json::from_slice(stored).ok()?;
    if pod.spec.node_name.is_empty() {
        return None;
    }
    let uses = if pod.metadata.annotations.contains_key(MIRROR) {
        BTreeSet::new()
    } else {
        uses_of(namespace, &pod)
    };
    Some(BoundPod {
        node: pod.spec.node_name,
        uses,
    })
}

/// What a pod (bound or not, a mirror pod or not) refers to, as [`pod_uses`] reads it.
pub(crate) fn references(pod: &serde_json::Value) -> BTreeSet<(Kind, String)> {
    let namespace = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    serde_json::from_value::<PodJson>(pod.clone())
        .map(|p| uses_of(namespace, &p))
        .unwrap_or_default()
}

fn uses_of(namespace: &str, pod: &PodJson) -> BTreeSet<(Kind, String)> {
    let spec = &pod.spec;
    let mut uses = BTreeSet::new();
    let mut add = |kind: Kind, name: &str| {
        if !name.is_empty() {
            uses.insert((kind, format!("{namespace}/{name}")));
        }
    };
    add(Kind::ServiceAccount, &spec.service_account_name);
    for secret in &spec.image_pull_secrets {
        add(Kind::Secret, &secret.name);
    }
    let containers = spec
        .init_containers
        .iter()
        .chain(&spec.containers)
        .chain(&spec.ephemeral_containers);
    for container in containers {
        for from in &container.env_from {
            if let Some(r) = &from.secret_ref {
                add(Kind::Secret, &r.name);
            }
            if let Some(r) = &from.config_map_ref {
                add(Kind::ConfigMap, &r.name);
            }
        }
        for value in container.env.iter().filter_map(|e| e.value_from.as_ref()) {
            if let Some(r) = &value.secret_key_ref {
                add(Kind::Secret, &r.name);
            }
            if let Some(r) = &value.config_map_key_ref {
                add(Kind::ConfigMap, &r.name);
            }
        }
    }
    for volume in &spec.volumes {
        if let Some(s) = &volume.secret {
            add(Kind::Secret, &s.secret_name);
        }
        if let Some(c) = &volume.config_map {
            add(Kind::ConfigMap, &c.name);
        }
        for source in volume.projected.iter().flat_map(|p| &p.sources) {
            if let Some(s) = &source.secret {
                add(Kind::Secret, &s.name);
            }
            if let Some(c) = &source.config_map {
                add(Kind::ConfigMap, &c.name);
            }
        }
        if let Some(a) = &volume.azure_file {
            add(Kind::Secret, &a.secret_name);
        }
        let holders = [
            &volume.cephfs,
            &volume.cinder,
            &volume.flex_volume,
            &volume.rbd,
            &volume.scale_io,
            &volume.iscsi,
            &volume.storageos,
        ];
        for holder in holders.into_iter().flatten() {
            if let Some(r) = &holder.secret_ref {
                add(Kind::Secret, &r.name);
            }
        }
        if let Some(r) = volume
            .csi
            .as_ref()
            .and_then(|c| c.node_publish_secret_ref.as_ref())
        {
            add(Kind::Secret, &r.name);
        }
        if let Some(c) = &volume.persistent_volume_claim {
            add(Kind::PersistentVolumeClaim, &c.claim_name);
        } else if volume.ephemeral.is_some() {
            add(
                Kind::PersistentVolumeClaim,
                &format!("{}-{}", pod.metadata.name, volume.name),
            );
        }
    }
    uses
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct VolumeObjectJson {
    spec: VolumeSpecJson,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct VolumeSpecJson {
    claim_ref: Option<NamespacedJson>,
    azure_file: Option<AzureFileJson>,
    cephfs: Option<SecretRefJson>,
    cinder: Option<SecretRefJson>,
    flex_volume: Option<SecretRefJson>,
    rbd: Option<SecretRefJson>,
    #[serde(rename = "scaleIO")]
    scale_io: Option<SecretRefJson>,
    iscsi: Option<SecretRefJson>,
    storageos: Option<SecretRefJson>,
    csi: Option<CsiJson>,
}

/// What a stored PersistentVolume leads to (`AddPV`), if it has a `claimRef`: the claim, and
/// the Secrets `VisitPVSecretNames` finds visible to the kubelet (a CSI volume's controller
/// secrets are not). A source's secret without a namespace of its own is in the claim's
/// namespace, where upstream's sources default it (Cinder's and StorageOS's do not).
pub(crate) fn volume_leads_to(stored: &[u8]) -> Option<BoundVolume> {
    let volume: VolumeObjectJson = serde_json::from_slice(stored).ok()?;
    let spec = volume.spec;
    let claim = spec.claim_ref.as_ref()?;
    let mut secrets = BTreeSet::new();
    let mut add = |namespace: &str, name: &str| {
        if !name.is_empty() {
            secrets.insert(format!("{namespace}/{name}"));
        }
    };
    let or_claims = |namespace: &str| -> String {
        if namespace.is_empty() {
            claim.namespace.clone()
        } else {
            namespace.to_owned()
        }
    };
    if let Some(a) = &spec.azure_file {
        add(&or_claims(&a.secret_namespace), &a.secret_name);
    }
    let defaulted = [
        &spec.cephfs,
        &spec.flex_volume,
        &spec.rbd,
        &spec.scale_io,
        &spec.iscsi,
    ];
    for r in defaulted
        .into_iter()
        .flatten()
        .filter_map(|h| h.secret_ref.as_ref())
    {
        add(&or_claims(&r.namespace), &r.name);
    }
    for r in [&spec.cinder, &spec.storageos]
        .into_iter()
        .flatten()
        .filter_map(|h| h.secret_ref.as_ref())
    {
        add(&r.namespace, &r.name);
    }
    if let Some(csi) = &spec.csi {
        let visible = [
            &csi.node_publish_secret_ref,
            &csi.node_stage_secret_ref,
            &csi.node_expand_secret_ref,
        ];
        for r in visible.into_iter().flatten() {
            add(&r.namespace, &r.name);
        }
    }
    Some(BoundVolume {
        claim: format!("{}/{}", claim.namespace, claim.name),
        secrets,
    })
}

const PODS: &str = "/registry/pods/";
const VOLUMES: &str = "/registry/persistentvolumes/";

/// The graph as the followers keep it: written in place, one event at a time.
#[derive(Default)]
pub(crate) struct NodeGraph(RwLock<Graph>);

impl NodeGraph {
    /// Reads the graph.
    pub(crate) fn read(&self) -> std::sync::RwLockReadGuard<'_, Graph> {
        self.0.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Graph> {
        self.0.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// A pod's `<namespace>/<name>` from its store key.
fn pod_key(key: &str) -> Option<&str> {
    key.strip_prefix(PODS).filter(|k| k.contains('/'))
}

enum Change<'a> {
    Pod(&'a str, Option<BoundPod>),
    Volume(&'a str, Option<BoundVolume>),
}

/// What one stored object changes in the graph (decoded before the graph is locked).
fn change<'a>(kind: usize, key: &'a str, value: Option<&[u8]>) -> Option<Change<'a>> {
    if kind == 0 {
        let at = pod_key(key)?;
        let namespace = at.split_once('/').map_or("", |(ns, _)| ns);
        Some(Change::Pod(at, value.and_then(|v| pod_uses(namespace, v))))
    } else {
        let name = key.strip_prefix(VOLUMES)?;
        Some(Change::Volume(name, value.and_then(volume_leads_to)))
    }
}

impl Graph {
    fn change(&mut self, change: Change<'_>) {
        match change {
            Change::Pod(key, pod) => self.set_pod(key, pod),
            Change::Volume(name, volume) => self.set_volume(name, volume),
        }
    }
}

impl follow::State for NodeGraph {
    const KINDS: &'static [(&'static str, &'static str)] =
        &[("Pod", PODS), ("PersistentVolume", VOLUMES)];

    fn reset(&self, kind: usize, objects: &[KeyValue]) {
        let changes: Vec<Change<'_>> = objects
            .iter()
            .filter_map(|kv| change(kind, &kv.key, Some(&kv.value)))
            .collect();
        let mut graph = self.write();
        if kind == 0 {
            graph.clear_pods();
        } else {
            graph.clear_volumes();
        }
        for c in changes {
            graph.change(c);
        }
    }

    fn apply(&self, kind: usize, key: &str, value: Option<&[u8]>) {
        if let Some(c) = change(kind, key, value) {
            self.write().change(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn bytes(v: &Value) -> Vec<u8> {
        serde_json::to_vec(v).unwrap()
    }

    fn pod(name: &str, node: &str, spec: Value) -> Vec<u8> {
        let mut spec = spec;
        spec["nodeName"] = json!(node);
        bytes(&json!({"metadata": {"name": name, "namespace": "ns"}, "spec": spec}))
    }

    fn uses(p: &BoundPod) -> Vec<String> {
        p.uses.iter().map(|(k, n)| format!("{k:?} {n}")).collect()
    }

    #[test]
    fn a_pod_uses_what_upstream_visits() {
        let spec = json!({
            "serviceAccountName": "runner",
            "imagePullSecrets": [{"name": "registry"}],
            "initContainers": [{"name": "i", "envFrom": [{"secretRef": {"name": "init-env"}}]}],
            "containers": [{
                "name": "c",
                "env": [
                    {"name": "A", "valueFrom": {"secretKeyRef": {"name": "key", "key": "k"}}},
                    {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "k"}}},
                    {"name": "C", "value": "plain"},
                ],
                "envFrom": [{"configMapRef": {"name": "all-settings"}}],
            }],
            "ephemeralContainers": [{"name": "debug", "envFrom": [{"secretRef": {"name": "debug"}}]}],
            "volumes": [
                {"name": "s", "secret": {"secretName": "files"}},
                {"name": "m", "configMap": {"name": "conf"}},
                {"name": "p", "projected": {"sources": [
                    {"serviceAccountToken": {"path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt"}},
                    {"secret": {"name": "projected"}},
                ]}},
                {"name": "data", "persistentVolumeClaim": {"claimName": "claim"}},
                {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
                {"name": "csi", "csi": {"driver": "d", "nodePublishSecretRef": {"name": "csi-creds"}}},
                {"name": "rbd", "rbd": {"image": "i", "monitors": [], "secretRef": {"name": "ceph"}}},
                {"name": "empty", "emptyDir": {}},
            ],
        });
        let found = pod_uses("ns", &pod("web", "node-1", spec)).unwrap();
        assert_eq!(found.node, "node-1");
        assert_eq!(
            uses(&found),
            [
                "Secret ns/ceph",
                "Secret ns/csi-creds",
                "Secret ns/debug",
                "Secret ns/files",
                "Secret ns/init-env",
                "Secret ns/key",
                "Secret ns/projected",
                "Secret ns/registry",
                "ConfigMap ns/all-settings",
                "ConfigMap ns/conf",
                "ConfigMap ns/kube-root-ca.crt",
                "ConfigMap ns/settings",
                "PersistentVolumeClaim ns/claim",
                "PersistentVolumeClaim ns/web-scratch",
                "ServiceAccount ns/runner",
            ]
        );
        // Not bound yet: not in the graph.
        let pending =
            bytes(&json!({"metadata": {"name": "p"}, "spec": {"serviceAccountName": "a"}}));
        assert_eq!(pod_uses("ns", &pending), None);
        // A mirror pod is bound but uses nothing; Go's nulls are empty lists.
        let mirror = bytes(&json!({
            "metadata": {"name": "m", "annotations": {MIRROR: "hash"}},
            "spec": {"nodeName": "node-1", "serviceAccountName": "a", "volumes": null},
        }));
        assert!(pod_uses("ns", &mirror).unwrap().uses.is_empty());
    }

    #[test]
    fn a_volume_leads_to_its_claim_and_kubelet_visible_secrets() {
        let pv = json!({"spec": {
            "claimRef": {"namespace": "ns", "name": "claim"},
            "csi": {
                "driver": "d",
                "controllerPublishSecretRef": {"namespace": "ops", "name": "controller"},
                "nodeStageSecretRef": {"namespace": "ops", "name": "stage"},
            },
        }});
        let found = volume_leads_to(&bytes(&pv)).unwrap();
        assert_eq!(found.claim, "ns/claim");
        assert_eq!(found.secrets, BTreeSet::from(["ops/stage".to_owned()]));
        // A source's secret without a namespace is in the claim's.
        let pv = json!({"spec": {
            "claimRef": {"namespace": "ns", "name": "claim"},
            "cephfs": {"monitors": [], "secretRef": {"name": "ceph"}},
        }});
        let found = volume_leads_to(&bytes(&pv)).unwrap();
        assert_eq!(found.secrets, BTreeSet::from(["ns/ceph".to_owned()]));
        // Unbound: nothing.
        let pv = json!({"spec": {"hostPath": {"path": "/x"}}});
        assert_eq!(volume_leads_to(&bytes(&pv)), None);
    }

    fn bound(node: &str, uses: &[(Kind, &str)]) -> Option<BoundPod> {
        Some(BoundPod {
            node: node.into(),
            uses: uses.iter().map(|(k, n)| (*k, (*n).to_owned())).collect(),
        })
    }

    fn secret(g: &Graph, node: &str, name: &str) -> bool {
        g.has_path(node, Start::Used(Kind::Secret), "ns", name)
    }

    #[test]
    fn paths_lead_from_objects_to_the_nodes_of_the_pods_that_use_them() {
        let mut g = Graph::default();
        g.set_pod(
            "ns/a",
            bound(
                "node-1",
                &[(Kind::Secret, "ns/shared"), (Kind::Secret, "ns/only-a")],
            ),
        );
        g.set_pod(
            "ns/b",
            bound(
                "node-1",
                &[
                    (Kind::Secret, "ns/shared"),
                    (Kind::PersistentVolumeClaim, "ns/claim"),
                ],
            ),
        );
        g.set_pod("ns/c", bound("node-2", &[(Kind::Secret, "ns/shared")]));
        assert!(secret(&g, "node-1", "only-a"));
        assert!(!secret(&g, "node-2", "only-a"));
        assert!(secret(&g, "node-2", "shared"));
        assert!(
            !secret(&g, "node-3", "shared"),
            "an unknown node reaches nothing"
        );
        assert!(!g.has_path("node-1", Start::Used(Kind::ConfigMap), "ns", "only-a"));
        assert!(!g.has_path("node-1", Start::Used(Kind::Secret), "other", "only-a"));

        // node <- pod <- pvc <- pv <- secret
        g.set_volume(
            "pv-1",
            Some(BoundVolume {
                claim: "ns/claim".into(),
                secrets: BTreeSet::from(["ns/pv-creds".to_owned()]),
            }),
        );
        assert!(g.has_path("node-1", Start::PersistentVolume, "", "pv-1"));
        assert!(!g.has_path("node-2", Start::PersistentVolume, "", "pv-1"));
        assert!(secret(&g, "node-1", "pv-creds"));
        assert!(!secret(&g, "node-2", "pv-creds"));

        // One of two pods on node-1 goes: what the other uses stays reachable.
        g.set_pod("ns/a", None);
        assert!(!secret(&g, "node-1", "only-a"));
        assert!(secret(&g, "node-1", "shared"));
        g.set_pod("ns/b", None);
        assert!(!secret(&g, "node-1", "shared"));
        assert!(secret(&g, "node-2", "shared"));
        assert!(
            !secret(&g, "node-1", "pv-creds"),
            "no pod uses the claim now"
        );
        assert!(!g.has_path("node-1", Start::PersistentVolume, "", "pv-1"));

        // A pod written again (a new pod of the same name, elsewhere) replaces its entry.
        g.set_pod(
            "ns/c",
            bound("node-1", &[(Kind::ServiceAccount, "ns/default")]),
        );
        assert!(!secret(&g, "node-2", "shared"));
        assert!(g.has_path("node-1", Start::Used(Kind::ServiceAccount), "ns", "default"));
        g.set_pod("ns/c", None);
        g.set_volume("pv-1", None);
        assert_eq!(g.counts(), (0, 0, 0), "nothing is left behind");
        assert!(g.volume_secrets.is_empty());
    }

    #[test]
    fn the_follower_state_reads_store_keys() {
        use follow::State;
        let graph = NodeGraph::default();
        let kv = |key: &str, value: Vec<u8>| KeyValue {
            key: key.into(),
            value: value.into(),
            create_revision: 2,
            mod_revision: 2,
        };
        let spec = json!({"volumes": [{"name": "v", "secret": {"secretName": "s"}}]});
        graph.reset(0, &[kv("/registry/pods/ns/a", pod("a", "node-1", spec))]);
        let pv = json!({"spec": {"claimRef": {"namespace": "ns", "name": "c"}}});
        graph.reset(1, &[kv("/registry/persistentvolumes/pv", bytes(&pv))]);
        assert!(secret(&graph.read(), "node-1", "s"));
        assert_eq!(graph.read().counts(), (1, 1, 1));
        graph.apply(0, "/registry/pods/ns/a", None);
        assert!(!secret(&graph.read(), "node-1", "s"));
        graph.apply(1, "/registry/persistentvolumes/pv", None);
        assert_eq!(graph.read().counts(), (0, 0, 0));
    }
}
