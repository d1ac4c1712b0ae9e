//! Carrying out the model's [`Effect`]s: every action goes through the Kubernetes API (server-side
//! apply, the scale subresource, delete, cordon, evictions) or a `/orrery/v1` control endpoint
//! (the stepper, stopping and starting components and kubelets), so the cluster's flow shows the
//! action itself. Each answer comes back as a [`Msg`]; every failure as [`Msg::Done`] in
//! Kubernetes' words (the `Status` message). A lesson's actions and checks run here too, as
//! `learn::check` runs them headless (its commands in the cluster's environment), and its
//! progress is saved here.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{
    Api, DeleteParams, DynamicObject, EvictParams, ListParams, LogParams, Patch, PatchParams,
};
use kube::discovery::{ApiCapabilities, ApiResource, Discovery, Scope};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tokio::sync::{Mutex, Notify, mpsc};

use super::model::{Detail, Effect, Msg, StepperView, StoreInfo};
use super::source::event_row;

/// The field manager the dashboard's server-side applies use.
pub const FIELD_MANAGER: &str = "orrery-dashboard";

/// What went wrong carrying out an effect.
#[derive(Debug, thiserror::Error)]
pub enum EffectError {
    /// The API answered with a `Status` (its message, in Kubernetes' words) or failed.
    #[error("{}", api_words(.0))]
    Api(#[from] kube::Error),
    /// A manifest could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A manifest is not YAML, or an object in it is incomplete.
    #[error("{0}")]
    Manifest(String),
    /// No served resource has this kind.
    #[error("the server doesn't have a resource type for {0}")]
    UnknownKind(String),
    /// A lesson's action, check or progress could not be carried out.
    #[error("lesson: {0}")]
    Lesson(String),
    /// No manifests directory was found.
    #[error(
        "no manifests directory (looked in ./manifests, next to the executable, and $ORRERY_MANIFESTS)"
    )]
    NoManifests,
}

/// The message of an API error as kubectl prints it: the `Status` message.
fn api_words(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) if !status.message.is_empty() => status.message.clone(),
        other => other.to_string(),
    }
}

/// Whether an error is the API's 404.
fn not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}

/// Carries out effects against one cluster.
#[derive(Clone)]
pub struct Effects {
    client: Client,
    tx: mpsc::Sender<Msg>,
    manifests: Option<PathBuf>,
    poke: Arc<Notify>,
    discovery: Arc<Mutex<Option<Arc<Discovery>>>>,
    lessons: Option<Arc<LessonPlace>>,
}

/// Where a lesson's commands run and its progress is kept.
#[derive(Clone, Debug)]
pub struct LessonPlace {
    /// The cluster's state directory (its kubeconfig; `ORRERY_STATE_DIR` for its commands).
    pub state_dir: PathBuf,
    /// The cluster's name.
    pub name: String,
    /// A directory of the lessons' own (`${tmp}`).
    pub tmp: PathBuf,
    /// The progress file.
    pub progress: PathBuf,
}

/// How long one of a lesson's actions may run from the dashboard (in step mode, it may wait
/// at gates for the learner's `n`).
const LESSON_ACTION_LIMIT: std::time::Duration = std::time::Duration::from_secs(600);

impl Effects {
    /// Effects through `client`, answering on `tx`; manifests are read from `manifests`, and
    /// `poke` asks the poller to look at the stepper and components at once.
    pub fn new(
        client: Client,
        tx: mpsc::Sender<Msg>,
        manifests: Option<PathBuf>,
        poke: Arc<Notify>,
    ) -> Self {
        Effects {
            client,
            tx,
            manifests,
            poke,
            discovery: Arc::new(Mutex::new(None)),
            lessons: None,
        }
    }

    /// These effects with lessons: their commands run against the cluster in `place`.
    pub fn with_lessons(mut self, place: LessonPlace) -> Self {
        self.lessons = Some(Arc::new(place));
        self
    }

    /// A lesson session on this cluster with `vars` known, or why there is none.
    fn session(
        &self,
        vars: &std::collections::BTreeMap<String, String>,
    ) -> Result<(crate::learn::check::Session, Arc<LessonPlace>), String> {
        let place = self
            .lessons
            .clone()
            .ok_or("this dashboard does not know the cluster's state directory")?;
        let mut session = crate::learn::check::Session::new(
            self.client.clone(),
            &place.state_dir,
            &place.name,
            &place.tmp,
        );
        for (name, value) in vars {
            session.set(name, value);
        }
        Ok((session, place))
    }

    /// Carries out `effect` on a task of its own (the dashboard keeps drawing meanwhile).
    /// `Quit` and `QuitAndStop` are the shell's, not this.
    pub fn spawn(&self, effect: Effect) {
        let this = self.clone();
        tokio::spawn(async move { this.perform(effect).await });
    }

    /// Carries out `effect` and sends what came of it.
    pub async fn perform(&self, effect: Effect) {
        let pokes = matches!(
            effect,
            Effect::Stepper(_)
                | Effect::Kubelet(..)
                | Effect::Component(..)
                | Effect::LessonDo { .. }
        );
        let msg = match self.run(effect).await {
            Ok(Some(msg)) => Some(msg),
            Ok(None) => None,
            Err(error) => Some(Msg::Done(error.to_string(), true)),
        };
        if pokes {
            self.poke.notify_one();
        }
        if let Some(msg) = msg {
            let _ = self.tx.send(msg).await;
        }
    }

    async fn run(&self, effect: Effect) -> Result<Option<Msg>, EffectError> {
        Ok(Some(match effect {
            Effect::Stepper(body) => {
                let state: StepperView = self.control("stepper", Some(body)).await?;
                Msg::Stepper(state)
            }
            Effect::Describe(kind, namespace, name) => {
                Msg::Detail(self.describe(&kind, &namespace, &name).await?)
            }
            Effect::Logs(namespace, name) => {
                let pods: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
                let params = LogParams {
                    tail_lines: Some(500),
                    ..LogParams::default()
                };
                let text = pods.logs(&name, &params).await?;
                Msg::Logs(namespace, name, text)
            }
            Effect::Apply(path) => Msg::Done(self.apply(&path).await?, false),
            Effect::Scale(namespace, name, replicas) => {
                let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), &namespace);
                deployments
                    .patch_scale(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"spec": {"replicas": replicas}})),
                    )
                    .await?;
                Msg::Done(
                    format!("deployment.apps/{name} scaled to {replicas}"),
                    false,
                )
            }
            Effect::DeletePod(namespace, name) => {
                let pods: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
                pods.delete(&name, &DeleteParams::default()).await?;
                Msg::Done(format!("pod \"{name}\" deleted"), false)
            }
            Effect::Cordon(node, on) => {
                self.cordon(&node, on).await?;
                let word = if on { "cordoned" } else { "uncordoned" };
                Msg::Done(format!("node/{node} {word}"), false)
            }
            Effect::Drain(node) => {
                let (text, failed) = self.drain(&node).await?;
                Msg::Done(text, failed)
            }
            Effect::Kubelet(node, start) => {
                let action = if start { "start" } else { "stop" };
                let answer: Value = self
                    .control(&format!("nodes/{node}/{action}"), None)
                    .await?;
                Msg::Done(said("kubelet", &node, &answer, action), false)
            }
            Effect::Component(name, operation) => {
                let action = operation.action();
                let answer: Value = self
                    .control(&format!("components/{name}/{action}"), None)
                    .await?;
                Msg::Done(said("component", &name, &answer, action), false)
            }
            Effect::LessonDo {
                lesson,
                step,
                actions,
                vars,
            } => {
                let (session, place) = self.session(&vars).map_err(EffectError::Lesson)?;
                std::fs::create_dir_all(&place.tmp).map_err(|source| EffectError::Read {
                    path: place.tmp.clone(),
                    source,
                })?;
                for action in &actions {
                    let outcome =
                        crate::learn::check::perform(action, &session, LESSON_ACTION_LIMIT).await;
                    let held = outcome.held;
                    // The poller looks again: a stepper action changes the step bar.
                    self.poke.notify_one();
                    let _ = self
                        .tx
                        .send(Msg::LessonAction(lesson, step, Some(outcome)))
                        .await;
                    if !held {
                        break;
                    }
                }
                Msg::LessonAction(lesson, step, None)
            }
            Effect::LessonCheck {
                lesson,
                step,
                checks,
                vars,
                since,
            } => {
                let (mut session, _) = self.session(&vars).map_err(EffectError::Lesson)?;
                let mut log = crate::learn::check::FlowLog::after(since);
                let mut outcomes = Vec::new();
                for check in &checks {
                    let outcome =
                        crate::learn::check::check_once(check, &mut session, &mut log, since).await;
                    let held = outcome.held;
                    outcomes.push(outcome);
                    if !held {
                        break;
                    }
                }
                Msg::LessonChecked(lesson, step, outcomes, session.vars().clone())
            }
            Effect::SaveProgress {
                lesson,
                step,
                steps,
            } => {
                let place = self
                    .lessons
                    .clone()
                    .ok_or_else(|| EffectError::Lesson("no progress file".into()))?;
                let mut progress = crate::learn::progress::Progress::load(&place.progress)
                    .map_err(|e| EffectError::Lesson(e.to_string()))?;
                progress.pass(&lesson, step, steps);
                progress
                    .save(&place.progress)
                    .map_err(|e| EffectError::Lesson(e.to_string()))?;
                Msg::Progress(progress)
            }
            Effect::Quit | Effect::QuitAndStop => return Ok(None),
        }))
    }

    /// A `/orrery/v1/<path>` request: POST with `body`, or GET without.
    async fn control<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: Option<Value>,
    ) -> Result<T, kube::Error> {
        let uri = format!("/orrery/v1/{path}");
        let request = match body {
            Some(body) => http::Request::post(uri)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(serde_json::to_vec(&body).unwrap_or_default()),
            None if ["/stop", "/kill", "/start"]
                .iter()
                .any(|action| path.ends_with(action)) =>
            {
                http::Request::post(uri).body(Vec::new())
            }
            None => http::Request::get(uri).body(Vec::new()),
        }
        .map_err(kube::Error::HttpError)?;
        self.client.request(request).await
    }

    /// The cluster's resources, discovered once and again when a kind is not found.
    async fn discovery(&self, refresh: bool) -> Result<Arc<Discovery>, kube::Error> {
        let mut cached = self.discovery.lock().await;
        if let Some(discovery) = cached.as_ref()
            && !refresh
        {
            return Ok(discovery.clone());
        }
        let discovery = Arc::new(Discovery::new(self.client.clone()).run().await?);
        *cached = Some(discovery.clone());
        Ok(discovery)
    }

    /// The served resource for `apiVersion` (or any group, when empty) and `kind`; the core
    /// group and `apps` win when only a kind is given.
    async fn resource(
        &self,
        api_version: &str,
        kind: &str,
    ) -> Result<(ApiResource, ApiCapabilities), EffectError> {
        for refresh in [false, true] {
            let discovery = self.discovery(refresh).await?;
            let mut found = None;
            for group in discovery.groups() {
                for (resource, caps) in group.recommended_resources() {
                    let version_fits =
                        api_version.is_empty() || resource.api_version == api_version;
                    if resource.kind == kind && version_fits {
                        let preferred = matches!(group.name(), "" | "apps");
                        if found.is_none() || preferred {
                            found = Some((resource, caps));
                        }
                    }
                }
            }
            if let Some(found) = found {
                return Ok(found);
            }
        }
        Err(EffectError::UnknownKind(if api_version.is_empty() {
            kind.to_owned()
        } else {
            format!("{api_version}, Kind={kind}")
        }))
    }

    /// The detail of one object: its YAML, its store record, its Events and, for a pod, the
    /// scheduler's decision.
    async fn describe(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Detail, EffectError> {
        let (resource, caps) = self.resource("", kind).await?;
        let api: Api<DynamicObject> = match caps.scope {
            Scope::Namespaced => Api::namespaced_with(self.client.clone(), namespace, &resource),
            Scope::Cluster => Api::all_with(self.client.clone(), &resource),
        };
        let object = api.get(name).await?;
        let uid = object.uid().unwrap_or_default();
        let value = serde_json::to_value(&object)
            .map_err(|e| EffectError::Manifest(format!("{kind} {name}: {e}")))?;
        let yaml = object_yaml(value);
        let decision = if kind == "Pod" {
            self.optional(&format!("scheduling/{namespace}/{name}"))
                .await?
        } else {
            None
        };
        let scope = if namespace.is_empty() { "-" } else { namespace };
        let store = self
            .optional::<StoreInfo>(&format!("store/{}/{scope}/{name}", resource.plural))
            .await
            .ok()
            .flatten();
        let events = self.events(kind, namespace, name, &uid).await?;
        Ok(Detail {
            kind: kind.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            yaml,
            decision,
            store,
            events,
        })
    }

    /// A `/orrery/v1` GET whose 404 means "nothing".
    async fn optional<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<Option<T>, kube::Error> {
        match self.control(path, None).await {
            Ok(value) => Ok(Some(value)),
            Err(error) if not_found(&error) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// The object's Events, oldest first, by `involvedObject` field selectors (as `kubectl
    /// describe` finds them).
    async fn events(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        uid: &str,
    ) -> Result<Vec<super::model::EventRow>, kube::Error> {
        let mut selector = format!("involvedObject.kind={kind},involvedObject.name={name}");
        if !namespace.is_empty() {
            selector.push_str(&format!(",involvedObject.namespace={namespace}"));
        }
        if !uid.is_empty() {
            selector.push_str(&format!(",involvedObject.uid={uid}"));
        }
        let api: Api<Event> = if namespace.is_empty() {
            Api::all(self.client.clone())
        } else {
            Api::namespaced(self.client.clone(), namespace)
        };
        let list = api.list(&ListParams::default().fields(&selector)).await?;
        let mut rows: Vec<_> = list.items.iter().map(event_row).collect();
        rows.sort_by(|a, b| a.last.cmp(&b.last));
        Ok(rows)
    }

    /// Server-side applies every object in the manifest at `path` (relative to the manifests
    /// directory, or absolute).
    async fn apply(&self, path: &str) -> Result<String, EffectError> {
        let file = match (&self.manifests, Path::new(path).is_absolute()) {
            (_, true) => PathBuf::from(path),
            (Some(dir), false) => dir.join(path),
            (None, false) => return Err(EffectError::NoManifests),
        };
        let text = std::fs::read_to_string(&file).map_err(|source| EffectError::Read {
            path: file.clone(),
            source,
        })?;
        let objects = split_manifest(&text)?;
        let mut applied = Vec::new();
        for object in objects {
            let api_version = object["apiVersion"].as_str().unwrap_or_default().to_owned();
            let kind = object["kind"].as_str().unwrap_or_default().to_owned();
            let name = object["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if api_version.is_empty() || kind.is_empty() || name.is_empty() {
                return Err(EffectError::Manifest(format!(
                    "{}: every object needs apiVersion, kind and metadata.name",
                    file.display()
                )));
            }
            let (resource, caps) = self.resource(&api_version, &kind).await?;
            let api: Api<DynamicObject> = match caps.scope {
                Scope::Namespaced => {
                    let namespace = object["metadata"]["namespace"]
                        .as_str()
                        .unwrap_or("default");
                    Api::namespaced_with(self.client.clone(), namespace, &resource)
                }
                Scope::Cluster => Api::all_with(self.client.clone(), &resource),
            };
            api.patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER),
                &Patch::Apply(&object),
            )
            .await?;
            let group = if resource.group.is_empty() {
                String::new()
            } else {
                format!(".{}", resource.group)
            };
            applied.push(format!("{}{group}/{name}", kind.to_lowercase()));
        }
        let file_name = Path::new(path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.to_owned());
        let count = applied.len();
        let noun = if count == 1 { "object" } else { "objects" };
        Ok(format!(
            "applied {count} {noun} from {file_name}: {}",
            applied.join(", ")
        ))
    }

    /// `kubectl cordon` / `uncordon`: `spec.unschedulable` by strategic merge patch.
    async fn cordon(&self, node: &str, on: bool) -> Result<(), kube::Error> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let value = if on { json!(true) } else { Value::Null };
        nodes
            .patch(
                node,
                &PatchParams::default(),
                &Patch::Strategic(json!({"spec": {"unschedulable": value}})),
            )
            .await?;
        Ok(())
    }

    /// `kubectl drain --ignore-daemonsets`: cordon, then evict every pod on the node except
    /// DaemonSet pods and mirror pods. An eviction a PodDisruptionBudget refuses (429) is retried
    /// every 5 s as kubectl drain retries it, for at most [`DRAIN_PATIENCE`]; then reported.
    async fn drain(&self, node: &str) -> Result<(String, bool), kube::Error> {
        self.cordon(node, true).await?;
        let pods: Api<Pod> = Api::all(self.client.clone());
        let on_node = pods
            .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
            .await?;
        let mut evicted = Vec::new();
        let mut refused = Vec::new();
        let mut ignored = 0;
        for pod in &on_node.items {
            let daemonset = pod
                .owner_references()
                .iter()
                .any(|o| o.kind == "DaemonSet" && o.controller == Some(true));
            let mirror = pod
                .annotations()
                .contains_key("kubernetes.io/config.mirror");
            if daemonset || mirror {
                ignored += 1;
                continue;
            }
            let namespace = pod.namespace().unwrap_or_default();
            let name = pod.name_any();
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
            // As kubectl drain: a 429 (a disruption budget says not now) is retried every 5 s,
            // here for at most DRAIN_PATIENCE, after which the refusal is reported.
            let patience = tokio::time::Instant::now() + DRAIN_PATIENCE;
            loop {
                match api.evict(&name, &EvictParams::default()).await {
                    Ok(_) => evicted.push(format!("{namespace}/{name}")),
                    Err(error) if not_found(&error) => {}
                    Err(kube::Error::Api(status))
                        if status.code == 429 && tokio::time::Instant::now() < patience =>
                    {
                        tokio::time::sleep(DRAIN_RETRY).await;
                        continue;
                    }
                    Err(error) => {
                        refused.push(format!("{namespace}/{name}: {}", api_words(&error)))
                    }
                }
                break;
            }
        }
        let mut text = format!("node/{node} cordoned; evicted {} pods", evicted.len());
        if ignored > 0 {
            text.push_str(&format!(" (ignored {ignored} DaemonSet-managed pods)"));
        }
        if !refused.is_empty() {
            text.push_str(&format!("; refused: {}", refused.join("; ")));
        }
        Ok((text, !refused.is_empty()))
    }
}

/// How often a drain retries an eviction a disruption budget refused (kubectl drain's 5 s).
const DRAIN_RETRY: std::time::Duration = std::time::Duration::from_secs(5);
/// How long a drain from the dashboard waits for disruption budgets before it reports them.
const DRAIN_PATIENCE: std::time::Duration = std::time::Duration::from_secs(120);

/// What a component or kubelet control request did, in the words `orrery node|component` prints.
fn said(role: &str, name: &str, answer: &Value, action: &str) -> String {
    let running = answer["running"].as_bool().unwrap_or(false);
    let changed = answer["changed"].as_bool().unwrap_or(false);
    // Killed only now: one that was already down is just stopped.
    let state = match (running, changed && action == "kill") {
        (true, _) => "started",
        (false, true) => "killed",
        (false, false) => "stopped",
    };
    if changed {
        format!("{role} {name} {state}")
    } else {
        format!("{role} {name} was already {state}")
    }
}

/// The objects of a (multi-document) YAML manifest, as JSON; empty documents are skipped and a
/// `List` is unpacked into its items.
pub fn split_manifest(text: &str) -> Result<Vec<Value>, EffectError> {
    use serde::Deserialize;
    let mut objects = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        let value = Value::deserialize(document)
            .map_err(|e| EffectError::Manifest(format!("not a YAML manifest: {e}")))?;
        match value {
            Value::Null => {}
            Value::Object(ref map) if map.get("kind").and_then(Value::as_str) == Some("List") => {
                if let Some(items) = map.get("items").and_then(Value::as_array) {
                    objects.extend(items.iter().cloned());
                }
            }
            Value::Object(_) => objects.push(value),
            _ => {
                return Err(EffectError::Manifest(
                    "not a YAML manifest: a document is not an object".into(),
                ));
            }
        }
    }
    Ok(objects)
}

/// An object as `kubectl get -o yaml` shows it: without `metadata.managedFields` (kubectl shows
/// them only with `--show-managed-fields`), keys in alphabetical order.
pub fn object_yaml(mut object: Value) -> String {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    serde_yaml::to_string(&sorted(object)).unwrap_or_default()
}

/// `value` with every object's keys in alphabetical order (as Go's YAML printer writes maps).
fn sorted(value: Value) -> serde_yaml::Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            serde_yaml::Value::Mapping(
                entries
                    .into_iter()
                    .map(|(k, v)| (serde_yaml::Value::String(k), sorted(v)))
                    .collect(),
            )
        }
        Value::Array(items) => serde_yaml::Value::Sequence(items.into_iter().map(sorted).collect()),
        other => serde_yaml::to_value(other).unwrap_or(serde_yaml::Value::Null),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_detail_leaves_out_managed_fields_and_sorts_keys() {
        let object = json!({
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": {
                "name": "web-1",
                "namespace": "default",
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
                "labels": {"b": "2", "a": "1"}
            },
            "spec": {"containers": [{"name": "app", "image": "orrery/hello"}]}
        });
        let yaml = object_yaml(object);
        assert!(!yaml.contains("managedFields"), "{yaml}");
        assert!(!yaml.contains("manager"), "{yaml}");
        assert_eq!(
            yaml,
            "apiVersion: v1\nkind: Pod\nmetadata:\n  labels:\n    a: '1'\n    b: '2'\n  name: web-1\n  \
             namespace: default\nspec:\n  containers:\n  - image: orrery/hello\n    name: app\n"
        );
    }

    #[test]
    fn manifests_split_into_objects() {
        let text = "# a comment\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: hello\n---\n\n---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata:\n    name: hello\n";
        let objects = split_manifest(text).unwrap();
        let kinds: Vec<&str> = objects
            .iter()
            .map(|o| o["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["Deployment", "Service"]);
        assert!(split_manifest("- just\n- a list\n").is_err());
        assert!(split_manifest("kind: [unclosed").is_err());
    }
}
