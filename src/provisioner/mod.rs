//! The built-in dynamic provisioner, `local-path-provisioner`: what rancher's local-path
//! provisioner is to kind, an ordinary API client with watches of its own (claims, volumes,
//! classes, nodes). It keeps the default StorageClass `standard` (kind's: provisioner
//! `rancher.io/local-path`, `WaitForFirstConsumer`, `Delete`) in place, created at start when
//! missing. A claim the PV controller hands to it (`volume.kubernetes.io/storage-provisioner:
//! rancher.io/local-path`), once the scheduler has chosen its node
//! (`volume.kubernetes.io/selected-node`), gets a directory `<state-dir>/storage/pvc-<uid>_<ns>_<claim>`
//! and a volume `pvc-<uid>` pre-bound to it: a `hostPath` of that directory, the request as its
//! capacity, node affinity to the chosen node, the class's reclaim policy, and
//! `pv.kubernetes.io/provisioned-by`; the PV controller then binds them. A volume of its own that
//! is Released with the `Delete` policy loses its directory, then its object. A bound claim of a
//! class that allows expansion and asks for more than its volume has grows it (a directory has no
//! size to change): the volume's capacity, then the claim's status.
//!
//! All virtual nodes share the host's file system, so a volume's node affinity is a rule the
//! scheduler keeps, as it would for a real local disk. The decisions are pure ([`plan`]).

pub mod plan;

use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

use self::plan::{ClaimPlan, PROVISIONER};
use crate::controllers::workqueue::{Action, Key, WorkQueue, run_workers};
use crate::flow::{Flow, FlowEvent};
use crate::informers::{Change, Informer, SharedInformerFactory};

/// The component's name: its client, its hops and the supervisor's entry.
pub const COMPONENT: &str = "local-path-provisioner";
/// The default StorageClass `orrery up` has, as kind's.
pub const DEFAULT_CLASS: &str = "standard";
/// Who its events say they are from (the provisioner's name and instance, as upstream's).
const EVENT_SOURCE: &str = "rancher.io/local-path_local-path-provisioner";

/// Where the provisioner keeps its volumes: `<state-dir>/storage`.
pub fn storage_dir(state_dir: &std::path::Path) -> PathBuf {
    state_dir.join("storage")
}

/// What went wrong provisioning, deleting or growing a volume.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a request.
    #[error("{what}: {source}")]
    Api {
        /// What was being done.
        what: String,
        /// The error.
        source: kube::Error,
    },
    /// The host's file system refused.
    #[error("{path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

fn api(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| Error::Api { what, source }
}

/// The default StorageClass, as kind installs it.
pub fn default_class() -> StorageClass {
    serde_json::from_value(json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": DEFAULT_CLASS,
            "annotations": {crate::apimachinery::storage::IS_DEFAULT_CLASS: "true"},
        },
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
    }))
    .expect("a valid StorageClass")
}

/// The provisioner; runs until its task is aborted.
pub struct LocalPathProvisioner {
    client: kube::Client,
    flow: Flow,
    root: PathBuf,
    factory: SharedInformerFactory,
    claims: Informer<PersistentVolumeClaim>,
    volumes: Informer<PersistentVolume>,
    classes: Informer<StorageClass>,
    nodes: Informer<Node>,
    claim_queue: WorkQueue<Key>,
    volume_queue: WorkQueue<Key>,
}

impl LocalPathProvisioner {
    /// A provisioner talking to the API server through `client`, keeping its volumes under
    /// `root` (see [`storage_dir`]).
    pub fn new(client: kube::Client, flow: Flow, root: PathBuf) -> Self {
        let factory = SharedInformerFactory::new(client.clone());
        let claims = factory.informer::<PersistentVolumeClaim>();
        let volumes = factory.informer::<PersistentVolume>();
        let classes = factory.informer::<StorageClass>();
        let nodes = factory.informer::<Node>();
        let claim_queue = WorkQueue::new("provisioner-claims");
        let volume_queue = WorkQueue::new("provisioner-volumes");
        {
            let queue = claim_queue.clone();
            claims.add_handler(move |change| {
                if !matches!(change, Change::Delete(_)) {
                    queue.add(Key::of(change.object()));
                }
            });
        }
        {
            let (claim_queue, volume_queue) = (claim_queue.clone(), volume_queue.clone());
            volumes.add_handler(move |change| match change {
                Change::Add(v) | Change::Update { new: v, .. } => volume_queue.add(Key::of(v)),
                // A volume deleted by hand is made again for its claim, if still wanted.
                Change::Delete(v) => {
                    if let Some(r) = v.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) {
                        claim_queue.add(Key::new(
                            r.namespace.clone().unwrap_or_default(),
                            r.name.clone().unwrap_or_default(),
                        ));
                    }
                }
            });
        }
        LocalPathProvisioner {
            client,
            flow,
            root,
            factory,
            claims,
            volumes,
            classes,
            nodes,
            claim_queue,
            volume_queue,
        }
    }

    /// Ensures the default class, then provisions, deletes and grows volumes, forever.
    pub async fn run(self) {
        let _informers = AbortOnDrop(self.factory.start());
        let this = Arc::new(self);
        this.ensure_default_class().await;
        this.claims.synced().await;
        this.volumes.synced().await;
        this.classes.synced().await;
        this.nodes.synced().await;
        let claims = run_workers(this.claim_queue.clone(), 1, |key| {
            let this = this.clone();
            async move { this.sync_claim(key).await }
        });
        let volumes = run_workers(this.volume_queue.clone(), 1, |key| {
            let this = this.clone();
            async move { this.sync_volume(key).await }
        });
        // A class that comes later lets the claims waiting for it on.
        let resync = {
            let this = this.clone();
            async move {
                loop {
                    tokio::time::sleep(std::time::Duration::from_secs(15)).await;
                    for claim in this.claims.list() {
                        this.claim_queue.add(Key::of(&*claim));
                    }
                    for volume in this.volumes.list() {
                        this.volume_queue.add(Key::of(&*volume));
                    }
                }
            }
        };
        tokio::join!(claims, volumes, resync);
    }

    fn hop(
        &self,
        verb: &str,
        kind: &str,
        namespace: &str,
        name: &str,
        detail: String,
    ) -> FlowEvent {
        FlowEvent::new(COMPONENT, "apiserver", verb)
            .object(kind, namespace, name)
            .detail(detail)
    }

    /// Creates the class `standard` unless it exists (a retry until the API server answers).
    async fn ensure_default_class(&self) {
        let classes: Api<StorageClass> = Api::all(self.client.clone());
        let mut delay = std::time::Duration::from_millis(100);
        loop {
            match classes.get_opt(DEFAULT_CLASS).await {
                Ok(Some(_)) => return,
                Ok(None) => {
                    self.flow
                        .gate_emit(self.hop(
                            "CREATE",
                            "StorageClass",
                            "",
                            DEFAULT_CLASS,
                            format!("the default StorageClass, provisioner {PROVISIONER}"),
                        ))
                        .await;
                    match classes
                        .create(&PostParams::default(), &default_class())
                        .await
                    {
                        Ok(_) => return,
                        Err(kube::Error::Api(s)) if s.code == 409 => return,
                        Err(error) => {
                            tracing::debug!(%error, "cannot create the default StorageClass")
                        }
                    }
                }
                Err(error) => tracing::debug!(%error, "cannot read the default StorageClass"),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(std::time::Duration::from_secs(5));
        }
    }

    async fn event(&self, claim: &PersistentVolumeClaim, type_: &str, reason: &str, message: &str) {
        crate::controllers::event(&self.client, claim, EVENT_SOURCE, type_, reason, message).await;
    }

    async fn sync_claim(&self, key: Key) -> Result<Action, Error> {
        let Some(claim) = self.claims.get(&key.namespace, &key.name) else {
            return Ok(Action::Done);
        };
        let decision = plan::plan_claim(
            &claim,
            &self.classes.list(),
            &self.nodes.list(),
            &self.volumes.list(),
            &self.root,
        );
        match decision {
            ClaimPlan::Skip => Ok(Action::Done),
            ClaimPlan::Fail(message) => {
                self.event(&claim, "Warning", "ProvisioningFailed", &message)
                    .await;
                // Tried again later, as the provisioner library retries.
                Ok(Action::RequeueAfter(std::time::Duration::from_secs(15)))
            }
            ClaimPlan::Provision(provision) => {
                self.provision(&claim, *provision).await?;
                Ok(Action::Done)
            }
            ClaimPlan::Expand(size) => {
                self.expand(&claim, size).await?;
                Ok(Action::Done)
            }
        }
    }

    async fn provision(
        &self,
        claim: &PersistentVolumeClaim,
        provision: plan::Provision,
    ) -> Result<(), Error> {
        let key = Key::of(claim);
        let name = provision.volume.metadata.name.clone().unwrap_or_default();
        self.event(
            claim,
            "Normal",
            "Provisioning",
            &format!("External provisioner is provisioning volume for claim \"{key}\""),
        )
        .await;
        let path = provision.path.clone();
        tokio::task::spawn_blocking(move || make_directory(&path))
            .await
            .map_err(|e| Error::Io {
                path: provision.path.clone(),
                source: std::io::Error::other(e),
            })??;
        self.flow
            .gate_emit(self.hop(
                "PROVISION",
                "PersistentVolume",
                "",
                &name,
                format!("{} for claim {key}", provision.path.display()),
            ))
            .await;
        let volumes: Api<PersistentVolume> = Api::all(self.client.clone());
        match volumes
            .create(&PostParams::default(), &provision.volume)
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => return Ok(()),
            Err(source) => {
                self.event(
                    claim,
                    "Warning",
                    "ProvisioningFailed",
                    &format!(
                        "failed to provision volume with StorageClass {:?}: {source}",
                        crate::apimachinery::storage::claim_class(claim)
                    ),
                )
                .await;
                return Err(Error::Api {
                    what: format!("create volume {name}"),
                    source,
                });
            }
        }
        self.event(
            claim,
            "Normal",
            "ProvisioningSucceeded",
            &format!("Successfully provisioned volume {name}"),
        )
        .await;
        Ok(())
    }

    /// Grows the claim's volume to `size`: the volume's capacity, then the claim's status (a
    /// directory has no file system to resize), as the external resizer does for a volume that
    /// needs no node expansion.
    async fn expand(
        &self,
        claim: &PersistentVolumeClaim,
        size: k8s_openapi::apimachinery::pkg::api::resource::Quantity,
    ) -> Result<(), Error> {
        let key = Key::of(claim);
        let name = claim
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .unwrap_or_default();
        let Some(volume) = self.volumes.get("", &name) else {
            return Ok(());
        };
        self.event(
            claim,
            "Normal",
            "Resizing",
            &format!("External resizer is resizing volume {name}"),
        )
        .await;
        let mut grown = (*volume).clone();
        grown
            .spec
            .get_or_insert_default()
            .capacity
            .get_or_insert_default()
            .insert("storage".into(), size.clone());
        self.flow
            .gate_emit(self.hop(
                "RESIZE",
                "PersistentVolume",
                "",
                &name,
                format!("to {} for claim {key}", size.0),
            ))
            .await;
        let volumes: Api<PersistentVolume> = Api::all(self.client.clone());
        volumes
            .replace(&name, &PostParams::default(), &grown)
            .await
            .map_err(api(format!("resize volume {name}")))?;
        let mut status = claim.clone();
        status
            .status
            .get_or_insert_default()
            .capacity
            .get_or_insert_default()
            .insert("storage".into(), size);
        let claims: Api<PersistentVolumeClaim> =
            Api::namespaced(self.client.clone(), &key.namespace);
        claims
            .replace_status(&key.name, &PostParams::default(), &status)
            .await
            .map_err(api(format!("write the capacity of claim {key}")))?;
        self.event(
            claim,
            "Normal",
            "VolumeResizeSuccessful",
            "Resize volume succeeded",
        )
        .await;
        Ok(())
    }

    async fn sync_volume(&self, key: Key) -> Result<Action, Error> {
        let Some(volume) = self.volumes.get("", &key.name) else {
            return Ok(Action::Done);
        };
        let Some(path) = plan::to_delete(&volume, &self.root) else {
            return Ok(Action::Done);
        };
        self.flow
            .gate_emit(self.hop(
                "DELETE",
                "PersistentVolume",
                "",
                &key.name,
                format!("released, policy Delete: removing {}", path.display()),
            ))
            .await;
        let dir = path.clone();
        tokio::task::spawn_blocking(move || remove_directory(&dir))
            .await
            .map_err(|e| Error::Io {
                path: path.clone(),
                source: std::io::Error::other(e),
            })??;
        let volumes: Api<PersistentVolume> = Api::all(self.client.clone());
        match volumes.delete(&key.name, &DeleteParams::default()).await {
            Ok(_) => Ok(Action::Done),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(Action::Done),
            Err(source) => Err(Error::Api {
                what: format!("delete volume {}", key.name),
                source,
            }),
        }
    }
}

/// Makes a volume's directory, writable by any user in any container, as rancher's provisioner
/// makes it (mode 0777).
fn make_directory(path: &std::path::Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    let io = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    std::fs::create_dir_all(path).map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777)).map_err(io)
}

/// Removes a volume's directory and everything in it (gone already is fine).
fn remove_directory(path: &std::path::Path) -> Result<(), Error> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::Io {
            path: path.to_owned(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// The informers' tasks, ended with the provisioner.
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}
