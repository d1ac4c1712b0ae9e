//! A pod's volumes on the node, laid out as upstream's kubelet lays out `/var/lib/kubelet`:
//! `<root>/pods/<uid>/volumes/kubernetes.io~empty-dir/<name>`, `kubernetes.io~configmap/<name>`,
//! `kubernetes.io~secret/<name>`, `kubernetes.io~downward-api/<name>`; a `hostPath` volume is
//! the host path itself, after upstream's `type` checks; a `persistentVolumeClaim` volume is its
//! bound PersistentVolume's directory (`hostPath` or `local`), found through the API as
//! upstream's desired-state populator finds it ([`resolve_claims`]): while the claim is not bound
//! the pod waits with upstream's `FailedMount` words. Files of ConfigMap, Secret and
//! downward API volumes are rewritten when their content changes (each pod sync) and files no
//! longer projected are removed. `volumeMounts` become [`crate::runtime::Mount`]s.
//!
//! The kubelet's root, `pods`, each pod's directory and its `volumes` are 0750, as upstream's
//! kubelet makes them ([`private_pod_dir`]): the files keep the pod's modes (a Secret's
//! `defaultMode`, 0644) for the container's users, and no other user on the host can reach
//! them.
//!
//! Differences from upstream, on purpose: `emptyDir` with `medium: Memory` and Secret volumes
//! are plain directories rather than tmpfs mounts (nothing to unmount if the kubelet dies), and
//! files are replaced one by one by rename rather than through the `..data` symlink swap.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, DownwardAPIVolumeFile, KeyToPath, PersistentVolume,
    PersistentVolumeClaim, Pod, Secret, Volume,
};

use super::env::{NodeFacts, Sources, field_value, resource_value};
use crate::runtime::Mount;

/// Why a volume could not be set up (what `FailedMount` events say after
/// `MountVolume.SetUp failed for volume "x" : `).
#[derive(Debug, thiserror::Error)]
pub(crate) enum VolumeError {
    /// A ConfigMap that is not optional does not exist.
    #[error("configmap \"{0}\" not found")]
    ConfigMapNotFound(String),
    /// A Secret that is not optional does not exist.
    #[error("secret \"{0}\" not found")]
    SecretNotFound(String),
    /// An `items` key missing from its ConfigMap.
    #[error("configmap references non-existent config key: {0}")]
    ConfigMapKey(String),
    /// An `items` key missing from its Secret.
    #[error("references non-existent secret key: {0}")]
    SecretKey(String),
    /// A hostPath whose type is not what `type` asks for.
    #[error("hostPath type check failed: {path} is not a {what}")]
    HostPathType {
        /// The host path.
        path: String,
        /// What it should have been (`directory`, `file`, `socket file`, ...).
        what: &'static str,
    },
    /// A downward API item the kubelet cannot read.
    #[error("{0}")]
    Downward(#[from] super::env::EnvError),
    /// A kind of volume this kubelet does not set up.
    #[error("unsupported volume type for volume {0:?}")]
    Unsupported(String),
    /// A claim's volume was not resolved before setting up (a bug: the caller resolves first).
    #[error("persistentvolumeclaim {0:?} has no volume to mount")]
    ClaimNotResolved(String),
    /// A projected service account token could not be had.
    #[error("failed to fetch token: {0}")]
    Token(String),
    /// A volume a `volumeMounts` entry names is not in the pod.
    #[error("cannot find volume {0:?} to mount into container")]
    NoVolume(String),
    /// The file system refused.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> VolumeError + '_ {
    move |source| VolumeError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A pod's directory under the kubelet's root.
pub(crate) fn pod_dir(root: &Path, uid: &str) -> PathBuf {
    root.join("pods").join(uid)
}

/// The mode of the kubelet's own directories: its root, `pods`, each pod's directory and its
/// `volumes`, as upstream's kubelet makes them (`setupDataDirs`, `makePodDataDirs`: 0750). Other
/// users on the host cannot reach the files under them (Secret volumes' included), whose modes
/// are the pod's (`defaultMode`, 0644 unless it says otherwise) for the container's users to
/// read; containers see their volumes through bind mounts, which these modes do not affect.
const PRIVATE_DIR_MODE: u32 = 0o750;

/// Makes (or tightens) the kubelet's root, `pods`, the pod's directory and its `volumes`
/// [`PRIVATE_DIR_MODE`]; returns the pod's directory.
pub(crate) fn private_pod_dir(root: &Path, uid: &str) -> Result<PathBuf, VolumeError> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = pod_dir(root, uid);
    if let Some(parent) = root.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    for path in [
        root.to_owned(),
        root.join("pods"),
        dir.clone(),
        dir.join("volumes"),
    ] {
        match std::fs::metadata(&path) {
            Ok(meta) if meta.permissions().mode() & 0o7777 == PRIVATE_DIR_MODE => {}
            Ok(_) => {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(PRIVATE_DIR_MODE))
                    .map_err(io(&path))?
            }
            Err(_) => {
                std::fs::DirBuilder::new()
                    .mode(PRIVATE_DIR_MODE)
                    .create(&path)
                    .map_err(io(&path))?;
                // The umask may have taken bits away; the mode is exactly this.
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(PRIVATE_DIR_MODE))
                    .map_err(io(&path))?;
            }
        }
    }
    Ok(dir)
}

/// The host file a container's termination message is written to: one per start attempt, as
/// upstream's `containers/<name>/<id>`.
pub(crate) fn termination_log(root: &Path, uid: &str, container: &str, attempt: u32) -> PathBuf {
    pod_dir(root, uid)
        .join("containers")
        .join(container)
        .join(format!("{attempt:08x}"))
}

/// A file of a projected volume: its bytes and mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct File {
    /// The content.
    pub(crate) data: Vec<u8>,
    /// The permission bits.
    pub(crate) mode: u32,
}

/// Files by path relative to the volume's directory.
pub(crate) type Payload = BTreeMap<String, File>;

/// The files `items` (or every key, without items) make of `data`, upstream's
/// `MakePayload`. `missing` says how a missing key is reported.
fn payload(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: u32,
    optional: bool,
    missing: impl Fn(&str) -> VolumeError,
) -> Result<Payload, VolumeError> {
    let mut out = Payload::new();
    match items {
        Some(items) if !items.is_empty() => {
            for item in items {
                let Some(content) = data.get(&item.key) else {
                    if optional {
                        continue;
                    }
                    return Err(missing(&item.key));
                };
                let mode = item.mode.map_or(default_mode, |m| m as u32);
                out.insert(
                    item.path.clone(),
                    File {
                        data: content.clone(),
                        mode,
                    },
                );
            }
        }
        _ => {
            for (k, v) in data {
                out.insert(
                    k.clone(),
                    File {
                        data: v.clone(),
                        mode: default_mode,
                    },
                );
            }
        }
    }
    Ok(out)
}

/// Where a volume lives on the host and what it holds.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Planned {
    /// A directory the kubelet makes (emptyDir) at this path.
    Dir(PathBuf),
    /// A directory of files the kubelet writes (configMap, secret, downwardAPI).
    Files(PathBuf, Payload),
    /// A host path, checked (and perhaps created) by its type.
    Host(PathBuf, String),
}

const DEFAULT_MODE: u32 = 0o644;

/// What one volume is, from the pod and what the API server has: pure.
pub(crate) fn plan(
    dir: &Path,
    pod: &Pod,
    volume: &Volume,
    sources: &Sources,
    node: &NodeFacts,
) -> Result<Planned, VolumeError> {
    let volumes = dir.join("volumes");
    let name = &volume.name;
    if volume.empty_dir.is_some() {
        return Ok(Planned::Dir(
            volumes.join("kubernetes.io~empty-dir").join(name),
        ));
    }
    if let Some(source) = &volume.persistent_volume_claim {
        return match sources.claims.get(&source.claim_name) {
            Some(claim) => Ok(Planned::Host(claim.path.clone(), claim.kind.clone())),
            None => Err(VolumeError::ClaimNotResolved(source.claim_name.clone())),
        };
    }
    if let Some(source) = &volume.host_path {
        return Ok(Planned::Host(
            PathBuf::from(&source.path),
            source.type_.clone().unwrap_or_default(),
        ));
    }
    if let Some(source) = &volume.config_map {
        let name_of = source.name.clone();
        let optional = source.optional == Some(true);
        let mode = source.default_mode.map_or(DEFAULT_MODE, |m| m as u32);
        let path = volumes.join("kubernetes.io~configmap").join(name);
        let files = match sources.config_maps.get(&name_of).and_then(Option::as_ref) {
            None if optional => Payload::new(),
            None => return Err(VolumeError::ConfigMapNotFound(name_of)),
            Some(map) => payload(
                &config_map_data(map),
                source.items.as_deref(),
                mode,
                optional,
                |k| VolumeError::ConfigMapKey(k.to_owned()),
            )?,
        };
        return Ok(Planned::Files(path, files));
    }
    if let Some(source) = &volume.secret {
        let name_of = source.secret_name.clone().unwrap_or_default();
        let optional = source.optional == Some(true);
        let mode = source.default_mode.map_or(DEFAULT_MODE, |m| m as u32);
        let path = volumes.join("kubernetes.io~secret").join(name);
        let files = match sources.secrets.get(&name_of).and_then(Option::as_ref) {
            None if optional => Payload::new(),
            None => return Err(VolumeError::SecretNotFound(name_of)),
            Some(secret) => payload(
                &secret_data(secret),
                source.items.as_deref(),
                mode,
                optional,
                |k| VolumeError::SecretKey(k.to_owned()),
            )?,
        };
        return Ok(Planned::Files(path, files));
    }
    if let Some(source) = &volume.downward_api {
        let default_mode = source.default_mode.map_or(DEFAULT_MODE, |m| m as u32);
        let files = downward_files(pod, source.items.as_deref(), default_mode, node)?;
        let path = volumes.join("kubernetes.io~downward-api").join(name);
        return Ok(Planned::Files(path, files));
    }
    if let Some(source) = &volume.projected {
        let mode = source.default_mode.map_or(DEFAULT_MODE, |m| m as u32);
        let mut files = Payload::new();
        for projection in source.sources.iter().flatten() {
            if let Some(c) = &projection.config_map {
                let optional = c.optional == Some(true);
                match sources.config_maps.get(&c.name).and_then(Option::as_ref) {
                    None if optional => {}
                    None => return Err(VolumeError::ConfigMapNotFound(c.name.clone())),
                    Some(map) => files.extend(payload(
                        &config_map_data(map),
                        c.items.as_deref(),
                        mode,
                        optional,
                        |k| VolumeError::ConfigMapKey(k.to_owned()),
                    )?),
                }
            }
            if let Some(s) = &projection.secret {
                let optional = s.optional == Some(true);
                match sources.secrets.get(&s.name).and_then(Option::as_ref) {
                    None if optional => {}
                    None => return Err(VolumeError::SecretNotFound(s.name.clone())),
                    Some(secret) => files.extend(payload(
                        &secret_data(secret),
                        s.items.as_deref(),
                        mode,
                        optional,
                        |k| VolumeError::SecretKey(k.to_owned()),
                    )?),
                }
            }
            if let Some(d) = &projection.downward_api {
                files.extend(downward_files(pod, d.items.as_deref(), mode, node)?);
            }
            if let Some(t) = &projection.service_account_token {
                let key = format!("{name}/{}", t.path);
                let data = sources
                    .tokens
                    .get(&key)
                    .cloned()
                    .ok_or_else(|| VolumeError::Token(format!("no token for {key}")))?;
                files.insert(t.path.clone(), File { data, mode });
            }
        }
        let path = volumes.join("kubernetes.io~projected").join(name);
        return Ok(Planned::Files(path, files));
    }
    Err(VolumeError::Unsupported(name.clone()))
}

fn config_map_data(map: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = map
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    data.extend(
        map.binary_data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.0.clone())),
    );
    data
}

fn secret_data(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect()
}

/// The files of downward API items.
fn downward_files(
    pod: &Pod,
    items: Option<&[DownwardAPIVolumeFile]>,
    default_mode: u32,
    node: &NodeFacts,
) -> Result<Payload, VolumeError> {
    let mut files = Payload::new();
    {
        for item in items.unwrap_or_default() {
            let text = if let Some(r) = &item.field_ref {
                field_value(pod, &r.field_path, node)?
            } else if let Some(r) = &item.resource_field_ref {
                let containers = pod.spec.as_ref().map(|s| s.containers.as_slice());
                let wanted = r.container_name.as_deref().unwrap_or_default();
                let Some(c) = containers
                    .unwrap_or_default()
                    .iter()
                    .find(|c| c.name == wanted)
                else {
                    return Err(super::env::EnvError::Resource(r.resource.clone()).into());
                };
                let divisor = r.divisor.as_ref().map_or("1", |d| d.0.as_str());
                resource_value(c, &r.resource, divisor, node)?
            } else {
                String::new()
            };
            files.insert(
                item.path.clone(),
                File {
                    data: text.into_bytes(),
                    mode: item.mode.map_or(default_mode, |m| m as u32),
                },
            );
        }
    }
    Ok(files)
}

/// Whether a token written at `iat` to expire at `exp` should be asked for again: past 80% of
/// its life or older than a day, as the kubelet's token manager decides.
fn needs_refresh(iat: i64, exp: i64, now: i64) -> bool {
    now >= iat + (exp - iat) * 8 / 10 || now >= iat + 24 * 3600
}

/// The tokens of the pod's projected `serviceAccountToken` sources, by `<volume>/<path>`: the
/// one already written while it is fresh, else a new one from the TokenRequest API, bound to
/// the pod (so deleting the pod invalidates it).
pub(crate) async fn tokens(
    client: &kube::Client,
    root: &Path,
    pod: &Pod,
) -> Result<HashMap<String, Vec<u8>>, VolumeError> {
    let mut out = HashMap::new();
    let Some(spec) = pod.spec.as_ref() else {
        return Ok(out);
    };
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let account = spec
        .service_account_name
        .as_deref()
        .filter(|a| !a.is_empty())
        .unwrap_or("default");
    let dir = pod_dir(root, uid)
        .join("volumes")
        .join("kubernetes.io~projected");
    let now = jiff::Timestamp::now().as_second();
    for volume in spec.volumes.iter().flatten() {
        let sources = volume
            .projected
            .iter()
            .flat_map(|p| p.sources.iter().flatten());
        for token in sources.filter_map(|s| s.service_account_token.as_ref()) {
            let key = format!("{}/{}", volume.name, token.path);
            let path = dir.join(&volume.name).join(&token.path);
            if let Ok(existing) = std::fs::read(&path)
                && let Some((iat, exp)) =
                    crate::apiserver::auth::tokens::unverified_times(&existing)
                && !needs_refresh(iat, exp, now)
            {
                out.insert(key, existing);
                continue;
            }
            let mut spec = serde_json::json!({
                "expirationSeconds": token.expiration_seconds.unwrap_or(3600),
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": name, "uid": uid},
            });
            if let Some(audience) = token.audience.as_deref().filter(|a| !a.is_empty()) {
                spec["audiences"] = serde_json::json!([audience]);
            }
            let body = serde_json::json!({
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": spec,
            });
            let request = http::Request::post(format!(
                "/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token"
            ))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(&body).unwrap_or_default())
            .map_err(|e| VolumeError::Token(e.to_string()))?;
            let answer: serde_json::Value = client.request(request).await.map_err(|e| match e {
                kube::Error::Api(status) => VolumeError::Token(status.message),
                other => VolumeError::Token(other.to_string()),
            })?;
            let token = answer["status"]["token"]
                .as_str()
                .ok_or_else(|| VolumeError::Token("the answer holds no token".into()))?;
            out.insert(key, token.as_bytes().to_vec());
        }
    }
    Ok(out)
}

/// Checks (and for `...OrCreate`, creates) a hostPath by its `type`, as upstream.
pub(crate) fn check_host_path(path: &Path, kind: &str) -> Result<(), VolumeError> {
    let shown = path.display().to_string();
    let fail = |what| VolumeError::HostPathType {
        path: shown.clone(),
        what,
    };
    let meta = std::fs::metadata(path);
    match kind {
        "" => Ok(()),
        "DirectoryOrCreate" => match meta {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(fail("directory")),
            Err(_) => {
                std::fs::create_dir_all(path).map_err(io(path))?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
                    .map_err(io(path))
            }
        },
        "FileOrCreate" => match meta {
            Ok(m) if m.is_file() => Ok(()),
            Ok(_) => Err(fail("file")),
            Err(_) => {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(io(path))?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
                    .map_err(io(path))
            }
        },
        _ => {
            let (ok, what): (fn(&std::fs::Metadata) -> bool, &'static str) = match kind {
                "Directory" => (|m| m.is_dir(), "directory"),
                "File" => (|m| m.is_file(), "file"),
                "Socket" => (|m| m.file_type().is_socket(), "socket file"),
                "CharDevice" => (|m| m.file_type().is_char_device(), "character device"),
                "BlockDevice" => (|m| m.file_type().is_block_device(), "block device"),
                _ => return Err(VolumeError::Unsupported(format!("hostPath type {kind}"))),
            };
            match meta {
                Ok(m) if ok(&m) => Ok(()),
                _ => Err(fail(what)),
            }
        }
    }
}

/// Writes a volume's files: each changed one by rename, so a reader never sees half a file;
/// files no longer in the payload go. Returns whether anything changed.
pub(crate) fn write_payload(dir: &Path, files: &Payload) -> Result<bool, VolumeError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut changed = false;
    for (relative, file) in files {
        let path = dir.join(relative);
        let same = std::fs::read(&path).is_ok_and(|old| old == file.data)
            && std::fs::metadata(&path).is_ok_and(|m| m.permissions().mode() & 0o7777 == file.mode);
        if same {
            continue;
        }
        let parent = path.parent().unwrap_or(dir);
        std::fs::create_dir_all(parent).map_err(io(parent))?;
        let temp = parent.join(format!(
            ".{}.tmp",
            path.file_name().unwrap_or_default().to_string_lossy()
        ));
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            // Owner-only until its mode is set: never readable by anyone else meanwhile.
            let _ = std::fs::remove_file(&temp);
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temp)
                .and_then(|mut f| f.write_all(&file.data))
                .map_err(io(&temp))?;
        }
        std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(file.mode))
            .map_err(io(&temp))?;
        std::fs::rename(&temp, &path).map_err(io(&path))?;
        changed = true;
    }
    // Remove what is no longer projected (walk the tree; empty directories go too).
    fn sweep(base: &Path, dir: &Path, keep: &Payload, changed: &mut bool) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                sweep(base, &path, keep, changed)?;
                if std::fs::read_dir(&path)?.next().is_none() {
                    std::fs::remove_dir(&path)?;
                }
            } else {
                let relative = path.strip_prefix(base).unwrap_or(&path);
                if !keep.contains_key(&relative.to_string_lossy().into_owned()) {
                    std::fs::remove_file(&path)?;
                    *changed = true;
                }
            }
        }
        Ok(())
    }
    sweep(dir, dir, files, &mut changed).map_err(io(dir))?;
    Ok(changed)
}

/// Sets up every volume of the pod (again: cheap when nothing changed) and returns where each
/// is on the host; the first failure names its volume.
pub(crate) fn set_up(
    root: &Path,
    pod: &Pod,
    sources: &Sources,
    node: &NodeFacts,
) -> Result<HashMap<String, PathBuf>, (String, VolumeError)> {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let dir = private_pod_dir(root, uid).map_err(|e| (String::new(), e))?;
    let mut out = HashMap::new();
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_deref());
    for volume in volumes.unwrap_or_default() {
        let failed = |e| (volume.name.clone(), e);
        let path = match plan(&dir, pod, volume, sources, node).map_err(failed)? {
            Planned::Dir(path) => {
                if !path.is_dir() {
                    std::fs::create_dir_all(&path)
                        .map_err(io(&path))
                        .map_err(failed)?;
                    // An emptyDir is writable by any user, as upstream's.
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777))
                        .map_err(io(&path))
                        .map_err(failed)?;
                }
                path
            }
            Planned::Files(path, files) => {
                write_payload(&path, &files).map_err(failed)?;
                path
            }
            Planned::Host(path, kind) => {
                check_host_path(&path, &kind).map_err(failed)?;
                path
            }
        };
        out.insert(volume.name.clone(), path);
    }
    Ok(out)
}

/// The container's `volumeMounts` as runtime mounts. ConfigMap, Secret and downward API
/// volumes are always read-only, as upstream mounts them; a `subPath` directory is made in
/// its volume when missing.
pub(crate) fn mounts(
    pod: &Pod,
    container: &Container,
    volumes: &HashMap<String, PathBuf>,
) -> Result<Vec<Mount>, VolumeError> {
    let specs: HashMap<&str, &Volume> = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or_default()
        .iter()
        .map(|v| (v.name.as_str(), v))
        .collect();
    let mut out = Vec::new();
    for m in container.volume_mounts.iter().flatten() {
        let (Some(host), Some(spec)) = (volumes.get(&m.name), specs.get(m.name.as_str())) else {
            return Err(VolumeError::NoVolume(m.name.clone()));
        };
        let projected =
            spec.config_map.is_some() || spec.secret.is_some() || spec.downward_api.is_some();
        // A claim mounted `readOnly: true` is read-only in every container.
        let claim_read_only = spec
            .persistent_volume_claim
            .as_ref()
            .is_some_and(|c| c.read_only == Some(true));
        let mut host_path = host.clone();
        if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            host_path = host.join(sub);
            if !projected && !host_path.exists() {
                std::fs::create_dir_all(&host_path).map_err(io(&host_path))?;
            }
        }
        out.push(Mount {
            host_path,
            container_path: m.mount_path.clone(),
            read_only: m.read_only == Some(true) || projected || claim_read_only,
        });
    }
    Ok(out)
}

/// Where a claim's volume is on the host: its PersistentVolume's directory and, for a
/// `hostPath` volume, its `type` (checked, and `DirectoryOrCreate` made, as for any hostPath).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ClaimVolume {
    /// The directory.
    pub(crate) path: PathBuf,
    /// The hostPath type (`""` for a `local` volume: it must exist).
    pub(crate) kind: String,
}

/// A claim's volume from the claim and its PersistentVolume as the API server has them, in
/// upstream's words when it cannot be used yet (`getPVCExtractPV`, `getPVSpec`): `pvc` and `pv`
/// are the reads' outcomes (`Err`: the API error's message).
pub(crate) fn claim_volume(
    pvc: Result<&PersistentVolumeClaim, String>,
    pv: impl FnOnce(&str) -> Result<PersistentVolume, String>,
) -> Result<ClaimVolume, String> {
    let claim = pvc.map_err(|e| format!("failed to fetch PVC from API server: {e}"))?;
    if claim.metadata.deletion_timestamp.is_some() {
        return Err("PVC is being deleted".into());
    }
    if claim.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Bound") {
        return Err("PVC is not bound".into());
    }
    let volume_name = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .unwrap_or_default();
    if volume_name.is_empty() {
        return Err("PVC has empty pvc.Spec.VolumeName".into());
    }
    let volume = pv(&volume_name)
        .map_err(|e| format!("failed to fetch PV {volume_name} from API server: {e}"))?;
    let spec = volume.spec.clone().unwrap_or_default();
    let Some(reference) = spec.claim_ref.as_ref() else {
        return Err(format!(
            "found PV object {volume_name} but it has a nil pv.Spec.ClaimRef indicating it is not yet bound to the claim"
        ));
    };
    if reference.uid != claim.metadata.uid {
        return Err(format!(
            "found PV object {volume_name} but its pv.Spec.ClaimRef.UID {} does not point to claim.UID {}",
            reference.uid.as_deref().unwrap_or_default(),
            claim.metadata.uid.as_deref().unwrap_or_default()
        ));
    }
    if let Some(host) = &spec.host_path {
        return Ok(ClaimVolume {
            path: PathBuf::from(&host.path),
            kind: host.type_.clone().unwrap_or_default(),
        });
    }
    if let Some(local) = &spec.local {
        return Ok(ClaimVolume {
            path: PathBuf::from(&local.path),
            kind: "Directory".into(),
        });
    }
    // Upstream would find no plugin for the volume; the mount fails with that.
    Err(format!("no volume plugin matched PV {volume_name}"))
}

/// Finds the volumes of the claims `pod` uses (those `mounted` already keep their directory: a
/// running pod's claim that is being deleted stays mounted); on failure, the `FailedMount` event's message
/// as upstream's volume manager words it (`Unable to attach or mount volumes: unmounted
/// volumes=[...], unattached volumes=[], failed to process volumes=[...]: error processing PVC
/// <ns>/<claim>: <why>`).
pub(crate) async fn resolve_claims(
    client: &kube::Client,
    pod: &Pod,
    mounted: &HashMap<String, PathBuf>,
) -> Result<HashMap<String, ClaimVolume>, String> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let claims: kube::Api<PersistentVolumeClaim> = kube::Api::namespaced(client.clone(), namespace);
    let volumes: kube::Api<PersistentVolume> = kube::Api::all(client.clone());
    let words = |e: kube::Error| match e {
        kube::Error::Api(status) => status.message,
        other => other.to_string(),
    };
    let mut out = HashMap::new();
    let mut failed: Vec<String> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    let pod_volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_deref());
    for volume in pod_volumes.unwrap_or_default() {
        let Some(source) = &volume.persistent_volume_claim else {
            continue;
        };
        let name = &source.claim_name;
        if let Some(path) = mounted.get(&volume.name) {
            let known = ClaimVolume {
                path: path.clone(),
                kind: String::new(),
            };
            out.insert(name.clone(), known);
            continue;
        }
        let claim = claims.get(name).await.map_err(words);
        let pv = match claim
            .as_ref()
            .ok()
            .and_then(|c| c.spec.as_ref())
            .and_then(|s| s.volume_name.clone())
        {
            Some(pv_name) if !pv_name.is_empty() => {
                Some(volumes.get(&pv_name).await.map_err(words))
            }
            _ => None,
        };
        let resolved = claim_volume(claim.as_ref().map_err(Clone::clone), |_| {
            pv.unwrap_or_else(|| Err("no volume name".into()))
        });
        match resolved {
            Ok(found) => {
                out.insert(name.clone(), found);
            }
            Err(why) => {
                failed.push(volume.name.clone());
                errors.push(format!("error processing PVC {namespace}/{name}: {why}"));
            }
        }
    }
    if failed.is_empty() {
        return Ok(out);
    }
    let listed = failed.join(" ");
    Err(format!(
        "Unable to attach or mount volumes: unmounted volumes=[{listed}], unattached volumes=[], failed to process volumes=[{listed}]: {}",
        errors.join("; ")
    ))
}

/// Removes the pod's directory (its emptyDirs, projected files and termination logs); host
/// paths are never touched.
pub(crate) fn tear_down(root: &Path, uid: &str) -> std::io::Result<()> {
    if uid.is_empty() {
        return Ok(());
    }
    match std::fs::remove_dir_all(pod_dir(root, uid)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Removes the directories of pods not in `known` (pods deleted while the kubelet was away),
/// as upstream's kubelet cleans up orphaned pod directories.
pub(crate) fn remove_orphans(
    root: &Path,
    known: &std::collections::HashSet<String>,
) -> std::io::Result<()> {
    let pods = root.join("pods");
    let entries = match std::fs::read_dir(&pods) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let uid = entry.file_name().to_string_lossy().into_owned();
        if !known.contains(&uid) {
            tear_down(root, &uid)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node() -> NodeFacts {
        NodeFacts {
            host_ip: "127.0.0.1".into(),
            pod_ip: "10.244.1.9".into(),
            cpu: "2".into(),
            memory: "1Gi".into(),
        }
    }

    fn pod(volumes: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "uid-1", "labels": {"a": "1", "b": "2"}},
            "spec": {"containers": [{"name": "c", "image": "busybox",
                "resources": {"limits": {"memory": "32Mi"}},
                "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"},
                                 {"name": "scratch", "mountPath": "/tmp/s", "subPath": "deep/er"}]}],
                "volumes": volumes},
        }))
        .unwrap()
    }

    fn sources() -> Sources {
        let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "app"},
            "data": {"a.conf": "alpha", "b.conf": "beta"}, "binaryData": {"bin": "AAEC"}}))
        .unwrap();
        let secret: Secret = serde_json::from_value(
            json!({"metadata": {"name": "tls"}, "data": {"key": "c2VjcmV0"}}),
        )
        .unwrap();
        Sources {
            config_maps: [("app".into(), Some(cm)), ("absent".into(), None)].into(),
            secrets: [("tls".into(), Some(secret))].into(),
            services: Vec::new(),
            claims: HashMap::new(),
            tokens: HashMap::from([("api/token".to_owned(), b"t0ken".to_vec())]),
        }
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn projected_volumes_are_written_with_their_modes() {
        let root = tempfile::tempdir().unwrap();
        let p = pod(json!([
            {"name": "cfg", "configMap": {"name": "app"}},
            {"name": "picked", "configMap": {"name": "app", "defaultMode": 0o600,
                "items": [{"key": "a.conf", "path": "sub/a"}, {"key": "b.conf", "path": "b", "mode": 0o444}]}},
            {"name": "sec", "secret": {"secretName": "tls"}},
            {"name": "info", "downwardAPI": {"items": [
                {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
                {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory", "divisor": "1Mi"}}]}},
            {"name": "scratch", "emptyDir": {}},
            {"name": "api", "projected": {"defaultMode": 0o640, "sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                {"configMap": {"name": "app", "items": [{"key": "a.conf", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}]}},
        ]));
        let got = set_up(root.path(), &p, &sources(), &node()).unwrap();
        let vols = root.path().join("pods/uid-1/volumes");
        let api = vols.join("kubernetes.io~projected/api");
        assert_eq!(got["api"], api);
        assert_eq!(std::fs::read_to_string(api.join("token")).unwrap(), "t0ken");
        assert_eq!(
            std::fs::read_to_string(api.join("ca.crt")).unwrap(),
            "alpha"
        );
        assert_eq!(mode(&api.join("token")), 0o640);
        assert!(needs_refresh(0, 1000, 800) && !needs_refresh(0, 1000, 799));
        let cfg = vols.join("kubernetes.io~configmap/cfg");
        assert_eq!(got["cfg"], cfg);
        assert_eq!(
            std::fs::read_to_string(cfg.join("a.conf")).unwrap(),
            "alpha"
        );
        assert_eq!(std::fs::read(cfg.join("bin")).unwrap(), vec![0, 1, 2]);
        assert_eq!(mode(&cfg.join("a.conf")), 0o644);
        let picked = vols.join("kubernetes.io~configmap/picked");
        assert_eq!(
            std::fs::read_to_string(picked.join("sub/a")).unwrap(),
            "alpha"
        );
        assert_eq!(mode(&picked.join("sub/a")), 0o600);
        assert_eq!(mode(&picked.join("b")), 0o444);
        assert!(!picked.join("a.conf").exists());
        let sec = vols.join("kubernetes.io~secret/sec/key");
        assert_eq!(std::fs::read_to_string(&sec).unwrap(), "secret");
        assert_eq!(mode(&sec), 0o644);
        let info = vols.join("kubernetes.io~downward-api/info");
        assert_eq!(std::fs::read_to_string(info.join("name")).unwrap(), "p");
        assert_eq!(
            std::fs::read_to_string(info.join("labels")).unwrap(),
            "a=\"1\"\nb=\"2\""
        );
        assert_eq!(std::fs::read_to_string(info.join("mem")).unwrap(), "32");
        let scratch = vols.join("kubernetes.io~empty-dir/scratch");
        assert!(scratch.is_dir());
        assert_eq!(mode(&scratch), 0o777);
        // The files keep the pod's modes for the container's users; other users on the host
        // cannot reach them: the kubelet's directories are 0750, as upstream's.
        for dir in [
            root.path().to_owned(),
            root.path().join("pods"),
            root.path().join("pods/uid-1"),
            vols.clone(),
        ] {
            assert_eq!(mode(&dir), 0o750, "{}", dir.display());
        }
        // An earlier version's 0755 directories are tightened at the next sync.
        std::fs::set_permissions(
            root.path().join("pods/uid-1"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        set_up(root.path(), &p, &sources(), &node()).unwrap();
        assert_eq!(mode(&root.path().join("pods/uid-1")), 0o750);

        // Mounts: projected volumes read-only; a subPath is made.
        let c = &p.spec.as_ref().unwrap().containers[0];
        let m = mounts(&p, c, &got).unwrap();
        assert_eq!(
            m,
            vec![
                Mount {
                    host_path: cfg.clone(),
                    container_path: "/etc/cfg".into(),
                    read_only: true
                },
                Mount {
                    host_path: scratch.join("deep/er"),
                    container_path: "/tmp/s".into(),
                    read_only: false
                },
            ]
        );
        assert!(scratch.join("deep/er").is_dir());

        // A changed ConfigMap: files follow, stale ones go; an unchanged one writes nothing.
        let mut changed = sources();
        if let Some(Some(cm)) = changed.config_maps.get_mut("app") {
            cm.data = Some(
                [
                    ("a.conf".to_owned(), "ALPHA".to_owned()),
                    ("b.conf".to_owned(), "beta".to_owned()),
                ]
                .into(),
            );
            cm.binary_data = None;
        }
        set_up(root.path(), &p, &changed, &node()).unwrap();
        assert_eq!(
            std::fs::read_to_string(cfg.join("a.conf")).unwrap(),
            "ALPHA"
        );
        assert!(!cfg.join("bin").exists());
        let Planned::Files(_, files) = plan(
            &root.path().join("pods/uid-1"),
            &p,
            &p.spec.as_ref().unwrap().volumes.as_ref().unwrap()[0],
            &changed,
            &node(),
        )
        .unwrap() else {
            panic!("a configMap volume is files")
        };
        assert!(!write_payload(&cfg, &files).unwrap());

        std::fs::create_dir_all(root.path().join("pods/gone-uid/volumes")).unwrap();
        remove_orphans(root.path(), &["uid-1".to_owned()].into()).unwrap();
        assert!(!root.path().join("pods/gone-uid").exists());
        assert!(root.path().join("pods/uid-1").exists());
        tear_down(root.path(), "uid-1").unwrap();
        assert!(!root.path().join("pods/uid-1").exists());
    }

    #[test]
    fn missing_sources_fail_as_upstream() {
        let root = tempfile::tempdir().unwrap();
        let cases = [
            (
                json!([{"name": "cfg", "configMap": {"name": "absent"}}]),
                Some("configmap \"absent\" not found"),
            ),
            (
                json!([{"name": "cfg", "configMap": {"name": "absent", "optional": true}}]),
                None,
            ),
            (
                json!([{"name": "cfg", "configMap": {"name": "app", "items": [{"key": "nope", "path": "x"}]}}]),
                Some("configmap references non-existent config key: nope"),
            ),
            (
                json!([{"name": "cfg", "secret": {"secretName": "nothere"}}]),
                Some("secret \"nothere\" not found"),
            ),
            (
                json!([{"name": "cfg", "persistentVolumeClaim": {"claimName": "x"}}]),
                Some("persistentvolumeclaim \"x\" has no volume to mount"),
            ),
            (
                json!([{"name": "cfg", "gitRepo": {"repository": "x"}}]),
                Some("unsupported volume type for volume \"cfg\""),
            ),
        ];
        for (volumes, want) in cases {
            let got = set_up(root.path(), &pod(volumes.clone()), &sources(), &node());
            match (got, want) {
                (Ok(_), None) => {}
                (Err((volume, e)), Some(want)) => {
                    assert_eq!(volume, "cfg");
                    assert_eq!(e.to_string(), want, "{volumes}");
                }
                (got, want) => panic!("{volumes}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn claims_resolve_to_their_bound_volume_or_say_why_not() {
        let claim = |extra: serde_json::Value| -> PersistentVolumeClaim {
            let mut c = json!({"metadata": {"name": "data", "namespace": "ns", "uid": "c1"},
                "spec": {"volumeName": "pv1"}, "status": {"phase": "Bound"}});
            for (k, v) in extra.as_object().unwrap() {
                for (kk, vv) in v.as_object().unwrap() {
                    c[k][kk] = vv.clone();
                }
            }
            serde_json::from_value(c).unwrap()
        };
        let pv = |source: serde_json::Value| -> Result<PersistentVolume, String> {
            let mut v = json!({"metadata": {"name": "pv1"}, "spec": {"claimRef": {"namespace": "ns", "name": "data", "uid": "c1"}}});
            for (k, val) in source.as_object().unwrap() {
                v["spec"][k] = val.clone();
            }
            Ok(serde_json::from_value(v).unwrap())
        };
        let host = json!({"hostPath": {"path": "/state/storage/pvc-c1_ns_data", "type": "DirectoryOrCreate"}});
        assert_eq!(
            claim_volume(Ok(&claim(json!({}))), |_| pv(host.clone())),
            Ok(ClaimVolume {
                path: "/state/storage/pvc-c1_ns_data".into(),
                kind: "DirectoryOrCreate".into()
            })
        );
        assert_eq!(
            claim_volume(Ok(&claim(json!({}))), |_| pv(
                json!({"local": {"path": "/mnt/disk"}})
            )),
            Ok(ClaimVolume {
                path: "/mnt/disk".into(),
                kind: "Directory".into()
            })
        );
        let cases = [
            (
                Err("persistentvolumeclaims \"data\" not found".to_owned()),
                "failed to fetch PVC from API server: persistentvolumeclaims \"data\" not found"
                    .to_owned(),
            ),
            (
                Ok(claim(json!({"status": {"phase": "Pending"}}))),
                "PVC is not bound".to_owned(),
            ),
            (
                Ok(claim(
                    json!({"metadata": {"deletionTimestamp": "2020-01-01T00:00:00Z"}}),
                )),
                "PVC is being deleted".to_owned(),
            ),
            (
                Ok(claim(json!({"spec": {"volumeName": ""}}))),
                "PVC has empty pvc.Spec.VolumeName".to_owned(),
            ),
        ];
        for (c, want) in cases {
            assert_eq!(
                claim_volume(c.as_ref().map_err(Clone::clone), |_| pv(host.clone())),
                Err(want)
            );
        }
        let other = |_: &str| {
            Ok(serde_json::from_value(
                json!({"metadata": {"name": "pv1"}, "spec": {"claimRef": {"uid": "c0"}}}),
            )
            .unwrap())
        };
        assert_eq!(
            claim_volume(Ok(&claim(json!({}))), other),
            Err("found PV object pv1 but its pv.Spec.ClaimRef.UID c0 does not point to claim.UID c1".into())
        );
    }

    #[test]
    fn host_path_types() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let socket_path = dir.path().join("s.sock");
        let _socket = std::os::unix::net::UnixListener::bind(&socket_path).unwrap();
        let d = dir.path().to_path_buf();
        let missing = dir.path().join("missing");
        let cases: Vec<(&Path, &str, Option<String>)> = vec![
            (&d, "", None),
            (&missing, "", None),
            (&d, "Directory", None),
            (
                &file,
                "Directory",
                Some(format!(
                    "hostPath type check failed: {} is not a directory",
                    file.display()
                )),
            ),
            (&file, "File", None),
            (
                &d,
                "File",
                Some(format!(
                    "hostPath type check failed: {} is not a file",
                    d.display()
                )),
            ),
            (&socket_path, "Socket", None),
            (
                &file,
                "Socket",
                Some(format!(
                    "hostPath type check failed: {} is not a socket file",
                    file.display()
                )),
            ),
            (
                &missing,
                "Directory",
                Some(format!(
                    "hostPath type check failed: {} is not a directory",
                    missing.display()
                )),
            ),
            (
                &file,
                "DirectoryOrCreate",
                Some(format!(
                    "hostPath type check failed: {} is not a directory",
                    file.display()
                )),
            ),
            (
                &file,
                "CharDevice",
                Some(format!(
                    "hostPath type check failed: {} is not a character device",
                    file.display()
                )),
            ),
        ];
        for (path, kind, want) in cases {
            let got = check_host_path(path, kind).err().map(|e| e.to_string());
            assert_eq!(got, want, "{} {kind}", path.display());
        }
        let made = dir.path().join("made/here");
        check_host_path(&made, "DirectoryOrCreate").unwrap();
        assert!(made.is_dir());
        let made_file = dir.path().join("new-file");
        check_host_path(&made_file, "FileOrCreate").unwrap();
        assert!(made_file.is_file());
        assert!(check_host_path(Path::new("/dev/null"), "CharDevice").is_ok());
    }
}
