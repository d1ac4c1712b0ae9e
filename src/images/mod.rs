//! The image store: container images on disk under the state dir, from registries, from
//! `docker save` and OCI archives, or built into the `orrery` binary itself.
//!
//! The layout is an OCI image layout, as containerd's content store keeps images: `oci-layout`,
//! `blobs/sha256/<hex>` (manifests, configs, layer blobs, each checked against its digest), and
//! `index.json`, whose entries name their image with containerd's `io.containerd.image.name`
//! annotation (the normalised reference) and the OCI `org.opencontainers.image.ref.name` (its
//! tag). Next to it, `layers/<diff-id hex>` holds each layer unpacked once, read-only, with
//! overlayfs whiteouts: what the runtime stacks as overlay lowerdirs. The index is replaced
//! atomically (write, fsync, rename) under a lock file, so `orrery image ls` in another process
//! always reads a whole one; a layer is unpacked into `tmp/` and renamed into place. A pull or
//! load holds the store's lock shared and garbage collection (after `image rm`) holds it
//! exclusively, so collection never takes blobs from a pull in flight.
//!
//! Built-in images (`orrery/hello:<any tag>`, `orrery/pause:<any tag>`, also spelt with
//! `docker.io/`) are never pulled: `get` and `pull` generate them from the running `orrery`
//! binary on first use, and again whenever the binary changes (see [`builtin`]), so they are
//! always present, as images preloaded on a node are.

pub mod builtin;
mod reference;
mod registry;
pub mod unpack;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use reference::{Builtin, normalize};

/// What went wrong with an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The registry refused or failed, with its words (`manifest unknown`, ...).
    #[error("{0}")]
    Pull(String),
    /// Not in the store.
    #[error("image {0:?} not found")]
    NotFound(String),
    /// Reading or writing the store failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// The reference is not a valid image reference.
    #[error("invalid reference format {reference:?}: {message}")]
    InvalidReference {
        /// What was given.
        reference: String,
        /// Why it is not one.
        message: String,
    },
    /// Content did not match its digest.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    Digest {
        /// The digest it was named by.
        expected: String,
        /// The digest of what arrived.
        actual: String,
    },
    /// A layer could not be unpacked.
    #[error("layer {digest}: {source}")]
    Layer {
        /// The layer blob's digest.
        digest: String,
        /// What went wrong.
        source: unpack::UnpackError,
    },
    /// A manifest, config, index or archive is not what it should be.
    #[error("{0}")]
    Invalid(String),
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.to_owned(),
        source,
    }
}

/// An image's runtime configuration (the OCI image config's `config`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageConfig {
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    pub cmd: Vec<String>,
    /// `Env`, as `NAME=value`.
    pub env: Vec<String>,
    /// `WorkingDir`.
    pub working_dir: Option<String>,
    /// `User` (`uid`, `uid:gid`, or a name).
    pub user: Option<String>,
}

/// An image present in the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// Its id: the config's digest (`sha256:...`).
    pub id: String,
    /// The normalised reference it was found by (`docker.io/library/busybox:latest`).
    pub reference: String,
    /// Its unpacked layers, read-only, bottom first (overlay lowerdirs in reverse).
    pub layers: Vec<PathBuf>,
    /// Its runtime configuration.
    pub config: ImageConfig,
}

/// One image in the store, as `orrery image ls` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSummary {
    /// The normalised reference (`docker.io/library/busybox:latest`).
    pub reference: String,
    /// The config's digest (`sha256:...`).
    pub id: String,
    /// The manifest's digest.
    pub digest: String,
    /// The size of its blobs (layers as stored, and the config), in bytes.
    pub size: u64,
}

impl ImageSummary {
    /// The repository and the tag (`<none>` for a digest reference), as `crictl images` splits
    /// a reference.
    pub fn repository_and_tag(&self) -> (&str, &str) {
        if let Some((repository, _)) = self.reference.split_once('@') {
            return (repository, "<none>");
        }
        let slash = self.reference.rfind('/').unwrap_or(0);
        match self.reference[slash..].rfind(':') {
            Some(colon) => (
                &self.reference[..slash + colon],
                &self.reference[slash + colon + 1..],
            ),
            None => (&self.reference, "<none>"),
        }
    }
}

/// The built-in pause image, for pod sandboxes (upstream's kubelet uses
/// `registry.k8s.io/pause:3.10`); always present, never pulled.
pub const PAUSE_IMAGE: &str = "docker.io/orrery/pause:3.10";

/// The entrypoint of the built-in image `reference` names (`orrery/hello` runs `/orrery
/// hello`), or `None` for any other image: what the simulated runtime runs for a container
/// with no command of its own.
pub fn builtin_entrypoint(reference: &str) -> Option<[&'static str; 2]> {
    let normalized = normalize(reference).ok()?;
    Builtin::of(&normalized).map(Builtin::entrypoint)
}

/// Where `orrery up` and `orrery image` keep images under a cluster's state directory.
pub fn store_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("images")
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// containerd's annotation with an image's whole name.
const NAME_ANNOTATION: &str = "io.containerd.image.name";
/// The OCI annotation with an image's tag (or name).
const REF_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// Marks a built-in image with the binary it was generated from.
const BUILTIN_ANNOTATION: &str = "dev.orrery.builtin.source";

/// An OCI content descriptor.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default)]
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    platform: Option<Platform>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Platform {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    variant: Option<String>,
}

/// An OCI image index (and `index.json`), or a Docker manifest list.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Index {
    schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

impl Default for Index {
    fn default() -> Self {
        Index {
            schema_version: 2,
            media_type: Some(OCI_INDEX.to_owned()),
            manifests: Vec::new(),
        }
    }
}

/// An image manifest (OCI or Docker schema 2).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

/// What the store reads from an image config.
#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    config: Option<RuntimeConfig>,
    rootfs: RootFs,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RuntimeConfig {
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    user: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

/// Whether `media_type` (or, without one, the JSON's shape) is an index or manifest list.
fn is_index(bytes: &[u8]) -> bool {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Shape {
        #[serde(default)]
        media_type: Option<String>,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
    }
    match serde_json::from_slice::<Shape>(bytes) {
        Ok(shape) => match shape.media_type.as_deref() {
            Some(OCI_INDEX | DOCKER_LIST) => true,
            Some(_) => false,
            None => shape.manifests.is_some(),
        },
        Err(_) => false,
    }
}

/// The Go name of this machine's architecture, as image platforms spell it.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// The manifest for this machine (linux and its architecture) in an index, as Docker picks it.
fn pick_platform(index: &Index) -> Result<&Descriptor, ImageError> {
    index
        .manifests
        .iter()
        .find(|entry| {
            entry
                .platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == go_arch())
        })
        .ok_or_else(|| {
            ImageError::Pull(format!(
                "no matching manifest for linux/{} in the manifest list entries",
                go_arch()
            ))
        })
}

/// `sha256:<hex>` of `bytes`.
fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// The hex part of a `sha256:` digest, refusing anything else (digests become file names).
fn digest_hex(digest: &str) -> Result<&str, ImageError> {
    match digest.strip_prefix("sha256:") {
        Some(hex)
            if hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Ok(hex)
        }
        _ => Err(ImageError::Invalid(format!(
            "unsupported digest {digest:?} (only sha256 is)"
        ))),
    }
}

/// The image store under the state dir.
#[derive(Clone, Debug)]
pub struct ImageStore {
    root: PathBuf,
    /// The binary built-in images are generated from.
    builtin_binary: PathBuf,
}

impl ImageStore {
    /// Opens (creating) the store at `root`.
    pub fn open(root: &Path) -> Result<Self, ImageError> {
        for dir in ["blobs/sha256", "layers", "tmp"] {
            let path = root.join(dir);
            fs::create_dir_all(&path).map_err(io_error(&path))?;
        }
        let layout = root.join("oci-layout");
        if !layout.exists() {
            write_atomically(root, &layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        Ok(ImageStore {
            root: root.to_owned(),
            builtin_binary: PathBuf::from("/proc/self/exe"),
        })
    }

    /// Generates built-in images from `binary` rather than from the running executable (for
    /// tests, whose executable is the test harness). Its shared libraries are still read from
    /// this process's mappings, so `binary` must be linked like this process (the `orrery`
    /// binary of the same build).
    pub fn with_builtin_binary(mut self, binary: &Path) -> Self {
        self.builtin_binary = binary.to_owned();
        self
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The image `reference` if present. A built-in image is always present: it is generated
    /// here if it was not yet, or if the binary changed (which takes a moment).
    pub fn get(&self, reference: &str) -> Option<Image> {
        let normalized = normalize(reference).ok()?;
        if let Some(builtin) = Builtin::of(&normalized) {
            return match self.ensure_builtin(builtin, &normalized.whole) {
                Ok(image) => Some(image),
                Err(error) => {
                    tracing::warn!(%reference, %error, "cannot generate the built-in image");
                    None
                }
            };
        }
        match self.lookup(&normalized.whole) {
            Ok(image) => image,
            Err(error) => {
                tracing::warn!(%reference, %error, "image store entry unreadable");
                None
            }
        }
    }

    /// Pulls `reference` from its registry (or generates a built-in one) and returns it.
    pub async fn pull(&self, reference: &str) -> Result<Image, ImageError> {
        let normalized = normalize(reference)?;
        let store = self.clone();
        if let Some(builtin) = Builtin::of(&normalized) {
            return blocking(move || store.ensure_builtin(builtin, &normalized.whole)).await;
        }
        let _shared = self.lock_blocking("lock", FlockArg::LockShared).await?;
        let manifest = registry::fetch(self, &normalized).await?;
        let whole = normalized.whole.clone();
        blocking(move || {
            store.commit(&whole, &manifest, BTreeMap::new())?;
            store
                .lookup(&whole)?
                .ok_or_else(|| ImageError::NotFound(whole.clone()))
        })
        .await
    }

    /// Every image in the store, sorted by reference.
    pub fn list(&self) -> Result<Vec<ImageSummary>, ImageError> {
        let index = self.read_index()?;
        let mut images = Vec::new();
        for entry in &index.manifests {
            let Some(reference) = entry.annotations.get(NAME_ANNOTATION) else {
                continue;
            };
            let manifest: Manifest = match self.read_json(&entry.digest) {
                Ok(manifest) => manifest,
                Err(error) => {
                    tracing::warn!(%reference, %error, "image manifest unreadable");
                    continue;
                }
            };
            images.push(ImageSummary {
                reference: reference.clone(),
                id: manifest.config.digest.clone(),
                digest: entry.digest.clone(),
                size: manifest.config.size + manifest.layers.iter().map(|l| l.size).sum::<u64>(),
            });
        }
        images.sort_by(|a, b| a.reference.cmp(&b.reference));
        Ok(images)
    }

    /// Removes the reference `reference` and then every blob and unpacked layer no image
    /// refers to any more. Returns the normalised reference removed.
    pub fn remove(&self, reference: &str) -> Result<String, ImageError> {
        let normalized = normalize(reference)?;
        {
            let _index = self.lock("index.lock", FlockArg::LockExclusive)?;
            let mut index = self.read_index()?;
            let before = index.manifests.len();
            index
                .manifests
                .retain(|entry| entry.annotations.get(NAME_ANNOTATION) != Some(&normalized.whole));
            if index.manifests.len() == before {
                return Err(ImageError::NotFound(normalized.whole));
            }
            self.write_index(&index)?;
        }
        self.collect_garbage()?;
        Ok(normalized.whole)
    }

    /// Loads a `docker save` archive or an OCI image layout archive (a tar, possibly gzipped)
    /// and returns the references it added. An OCI archive whose entries name only a tag
    /// (`org.opencontainers.image.ref.name: v1`, as `skopeo` and `umoci` write) needs `name`,
    /// the repository to put that tag on (`orrery image load --repository`).
    pub fn load(&self, archive: &Path, name: Option<&str>) -> Result<Vec<String>, ImageError> {
        let _shared = self.lock("lock", FlockArg::LockShared)?;
        let scratch = tempfile::tempdir_in(self.root.join("tmp"))
            .map_err(io_error(&self.root.join("tmp")))?;
        let file = File::open(archive).map_err(io_error(archive))?;
        extract_archive(file, scratch.path())?;
        let dir = scratch.path();
        let mut loaded = Vec::new();
        if dir.join("manifest.json").is_file() {
            for (reference, manifest) in self.import_docker(dir)? {
                self.commit(&reference, &manifest, BTreeMap::new())?;
                loaded.push(reference);
            }
        } else if dir.join("index.json").is_file() {
            for (reference, manifest) in self.import_oci(dir, name)? {
                self.commit(&reference, &manifest, BTreeMap::new())?;
                loaded.push(reference);
            }
        } else {
            return Err(ImageError::Invalid(format!(
                "{}: neither a docker save archive (manifest.json) nor an OCI layout (index.json)",
                archive.display()
            )));
        }
        if loaded.is_empty() {
            return Err(ImageError::Invalid(format!(
                "{}: the archive names no image",
                archive.display()
            )));
        }
        Ok(loaded)
    }

    // --- paths, locks, blobs ---

    fn blob_path(&self, digest: &str) -> Result<PathBuf, ImageError> {
        Ok(self.root.join("blobs/sha256").join(digest_hex(digest)?))
    }

    fn layer_path(&self, diff_id: &str) -> Result<PathBuf, ImageError> {
        Ok(self.root.join("layers").join(digest_hex(diff_id)?))
    }

    fn tmp_path(&self) -> PathBuf {
        self.root
            .join("tmp")
            .join(uuid::Uuid::new_v4().simple().to_string())
    }

    fn lock(&self, name: &str, mode: FlockArg) -> Result<Flock<File>, ImageError> {
        let path = self.root.join(name);
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_error(&path))?;
        Flock::lock(file, mode).map_err(|(_, errno)| ImageError::Io {
            path,
            source: errno.into(),
        })
    }

    async fn lock_blocking(&self, name: &str, mode: FlockArg) -> Result<Flock<File>, ImageError> {
        let (store, name) = (self.clone(), name.to_owned());
        blocking(move || store.lock(&name, mode)).await
    }

    fn has_blob(&self, digest: &str) -> Result<bool, ImageError> {
        Ok(self.blob_path(digest)?.is_file())
    }

    fn read_blob(&self, digest: &str) -> Result<Vec<u8>, ImageError> {
        let path = self.blob_path(digest)?;
        fs::read(&path).map_err(io_error(&path))
    }

    fn read_json<T: serde::de::DeserializeOwned>(&self, digest: &str) -> Result<T, ImageError> {
        let bytes = self.read_blob(digest)?;
        serde_json::from_slice(&bytes)
            .map_err(|error| ImageError::Invalid(format!("blob {digest}: {error}")))
    }

    /// Stores `bytes` as a blob, checking it against `expected` when given; returns its digest.
    fn put_blob_bytes(&self, bytes: &[u8], expected: Option<&str>) -> Result<String, ImageError> {
        let digest = sha256(bytes);
        if let Some(expected) = expected
            && expected != digest
        {
            return Err(ImageError::Digest {
                expected: expected.to_owned(),
                actual: digest,
            });
        }
        let path = self.blob_path(&digest)?;
        if !path.is_file() {
            write_atomically(&self.root, &path, bytes)?;
        }
        Ok(digest)
    }

    /// Moves the file `source` into the blobs (checking it against `expected` when given) and
    /// returns its digest.
    fn put_blob_file(&self, source: &Path, expected: Option<&str>) -> Result<String, ImageError> {
        let mut file = File::open(source).map_err(io_error(source))?;
        let mut hasher = Sha256::new();
        io::copy(&mut file, &mut hasher).map_err(io_error(source))?;
        let digest = format!("sha256:{:x}", hasher.finalize());
        if let Some(expected) = expected
            && expected != digest
        {
            let _ = fs::remove_file(source);
            return Err(ImageError::Digest {
                expected: expected.to_owned(),
                actual: digest,
            });
        }
        let path = self.blob_path(&digest)?;
        file.sync_all().map_err(io_error(source))?;
        fs::rename(source, &path).map_err(io_error(&path))?;
        Ok(digest)
    }

    /// Copies the file `source` into the store's tmp directory, then into the blobs.
    fn copy_blob_file(&self, source: &Path, expected: Option<&str>) -> Result<String, ImageError> {
        if let Some(expected) = expected
            && self.has_blob(expected)?
        {
            return Ok(expected.to_owned());
        }
        let tmp = self.tmp_path();
        fs::copy(source, &tmp).map_err(io_error(source))?;
        self.put_blob_file(&tmp, expected)
    }

    /// Makes sure the layer blob `digest` is unpacked under `layers/<diff-id>`.
    fn ensure_layer(&self, digest: &str, diff_id: &str) -> Result<PathBuf, ImageError> {
        let dir = self.layer_path(diff_id)?;
        if dir.is_dir() {
            return Ok(dir);
        }
        let tmp = self.tmp_path();
        fs::create_dir(&tmp).map_err(io_error(&tmp))?;
        let blob = self.blob_path(digest)?;
        let file = File::open(&blob).map_err(io_error(&blob))?;
        let unpacked = unpack::unpack(io::BufReader::new(file), &tmp, unpack::Options::current());
        let result = match unpacked {
            Err(source) => Err(ImageError::Layer {
                digest: digest.to_owned(),
                source,
            }),
            Ok(actual) if actual != diff_id => Err(ImageError::Digest {
                expected: diff_id.to_owned(),
                actual,
            }),
            Ok(_) => match fs::rename(&tmp, &dir) {
                Ok(()) => Ok(()),
                // Another pull unpacked the same layer meanwhile: keep theirs.
                Err(_) if dir.is_dir() => Ok(()),
                Err(error) => Err(io_error(&dir)(error)),
            },
        };
        if tmp.exists() {
            let _ = fs::remove_dir_all(&tmp);
        }
        result.map(|()| dir)
    }

    // --- the index ---

    fn read_index(&self) -> Result<Index, ImageError> {
        let path = self.root.join("index.json");
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|error| ImageError::Invalid(format!("{}: {error}", path.display()))),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(Index::default()),
            Err(error) => Err(io_error(&path)(error)),
        }
    }

    fn write_index(&self, index: &Index) -> Result<(), ImageError> {
        let bytes = serde_json::to_vec_pretty(index)
            .map_err(|error| ImageError::Invalid(error.to_string()))?;
        write_atomically(&self.root, &self.root.join("index.json"), &bytes)
    }

    /// Points `reference` at `descriptor` in the index (replacing what it pointed at).
    fn set_reference(&self, reference: &str, mut descriptor: Descriptor) -> Result<(), ImageError> {
        descriptor
            .annotations
            .insert(NAME_ANNOTATION.to_owned(), reference.to_owned());
        if let Some((_, tag)) = reference
            .rsplit_once(':')
            .filter(|_| !reference.contains('@'))
        {
            descriptor
                .annotations
                .insert(REF_ANNOTATION.to_owned(), tag.to_owned());
        }
        let _index = self.lock("index.lock", FlockArg::LockExclusive)?;
        let mut index = self.read_index()?;
        index.manifests.retain(|entry| {
            entry.annotations.get(NAME_ANNOTATION).map(String::as_str) != Some(reference)
        });
        index.manifests.push(descriptor);
        self.write_index(&index)
    }

    /// Stores `manifest` (whose config and layer blobs are in the store), unpacks its layers,
    /// and points `reference` at it.
    fn commit(
        &self,
        reference: &str,
        manifest_bytes: &[u8],
        annotations: BTreeMap<String, String>,
    ) -> Result<(), ImageError> {
        let manifest: Manifest = serde_json::from_slice(manifest_bytes)
            .map_err(|error| ImageError::Invalid(format!("image manifest: {error}")))?;
        let config: ConfigFile = self.read_json(&manifest.config.digest)?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(ImageError::Invalid(format!(
                "the manifest has {} layers but the config {} diff_ids",
                manifest.layers.len(),
                config.rootfs.diff_ids.len()
            )));
        }
        for (layer, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
            self.ensure_layer(&layer.digest, diff_id)?;
        }
        let digest = self.put_blob_bytes(manifest_bytes, None)?;
        self.set_reference(
            reference,
            Descriptor {
                media_type: manifest
                    .media_type
                    .clone()
                    .unwrap_or_else(|| OCI_MANIFEST.to_owned()),
                digest,
                size: manifest_bytes.len() as u64,
                annotations,
                platform: None,
            },
        )
    }

    /// The image `reference` (normalised) points at, if it and all its layers are there.
    fn lookup(&self, reference: &str) -> Result<Option<Image>, ImageError> {
        let index = self.read_index()?;
        let Some(entry) = index.manifests.iter().find(|entry| {
            entry.annotations.get(NAME_ANNOTATION).map(String::as_str) == Some(reference)
        }) else {
            return Ok(None);
        };
        self.image(reference, &entry.digest)
    }

    fn image(&self, reference: &str, manifest_digest: &str) -> Result<Option<Image>, ImageError> {
        let manifest: Manifest = self.read_json(manifest_digest)?;
        let config: ConfigFile = self.read_json(&manifest.config.digest)?;
        let mut layers = Vec::new();
        for diff_id in &config.rootfs.diff_ids {
            let dir = self.layer_path(diff_id)?;
            if !dir.is_dir() {
                return Ok(None);
            }
            layers.push(dir);
        }
        let runtime = config.config.unwrap_or_default();
        Ok(Some(Image {
            id: manifest.config.digest,
            reference: reference.to_owned(),
            layers,
            config: ImageConfig {
                entrypoint: runtime.entrypoint.unwrap_or_default(),
                cmd: runtime.cmd.unwrap_or_default(),
                env: runtime.env.unwrap_or_default(),
                working_dir: runtime.working_dir.filter(|dir| !dir.is_empty()),
                user: runtime.user.filter(|user| !user.is_empty()),
            },
        }))
    }

    /// Removes every blob and unpacked layer no index entry refers to, and leftovers in `tmp`.
    fn collect_garbage(&self) -> Result<(), ImageError> {
        let _exclusive = self.lock("lock", FlockArg::LockExclusive)?;
        let index = self.read_index()?;
        let mut blobs = BTreeSet::new();
        let mut layers = BTreeSet::new();
        for entry in &index.manifests {
            blobs.insert(digest_hex(&entry.digest)?.to_owned());
            let Ok(manifest) = self.read_json::<Manifest>(&entry.digest) else {
                continue;
            };
            blobs.insert(digest_hex(&manifest.config.digest)?.to_owned());
            for layer in &manifest.layers {
                blobs.insert(digest_hex(&layer.digest)?.to_owned());
            }
            if let Ok(config) = self.read_json::<ConfigFile>(&manifest.config.digest) {
                for diff_id in &config.rootfs.diff_ids {
                    layers.insert(digest_hex(diff_id)?.to_owned());
                }
            }
        }
        for (dir, live) in [
            ("blobs/sha256", &blobs),
            ("layers", &layers),
            ("tmp", &BTreeSet::new()),
        ] {
            let dir = self.root.join(dir);
            for entry in fs::read_dir(&dir).map_err(io_error(&dir))?.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                // `.partial` files are index writes in flight (under the index lock only).
                if live.contains(&name) || name.ends_with(".partial") {
                    continue;
                }
                let path = entry.path();
                let removed = if path.is_dir() && !path.is_symlink() {
                    fs::remove_dir_all(&path)
                } else {
                    fs::remove_file(&path)
                };
                removed.map_err(io_error(&path))?;
            }
        }
        Ok(())
    }

    // --- built-in images ---

    /// The built-in image `reference`, generated (for every built-in reference in the index)
    /// if missing or made from another binary.
    fn ensure_builtin(&self, builtin: Builtin, reference: &str) -> Result<Image, ImageError> {
        let source =
            builtin::source_key(&self.builtin_binary).map_err(io_error(&self.builtin_binary))?;
        let current = |store: &ImageStore| -> Result<Option<Image>, ImageError> {
            let index = store.read_index()?;
            let entry = index.manifests.iter().find(|entry| {
                entry.annotations.get(NAME_ANNOTATION).map(String::as_str) == Some(reference)
                    && entry.annotations.get(BUILTIN_ANNOTATION) == Some(&source)
            });
            match entry {
                Some(entry) => store.image(reference, &entry.digest),
                None => Ok(None),
            }
        };
        if let Some(image) = current(self)? {
            return Ok(image);
        }
        let _generating = self.lock("builtin.lock", FlockArg::LockExclusive)?;
        if let Some(image) = current(self)? {
            return Ok(image);
        }
        let stale = {
            let _shared = self.lock("lock", FlockArg::LockShared)?;
            let index = self.read_index()?;
            let builtins: Vec<(Builtin, &Descriptor)> = index
                .manifests
                .iter()
                .filter(|entry| entry.annotations.contains_key(BUILTIN_ANNOTATION))
                .filter_map(|entry| {
                    let name = normalize(entry.annotations.get(NAME_ANNOTATION)?).ok()?;
                    Some((Builtin::of(&name)?, entry))
                })
                .collect();
            // This binary's layer, if another built-in reference has it already.
            let layer = builtins
                .iter()
                .filter(|(_, entry)| entry.annotations.get(BUILTIN_ANNOTATION) == Some(&source))
                .find_map(|(_, entry)| {
                    let manifest: Manifest = self.read_json(&entry.digest).ok()?;
                    let layer = manifest.layers.first()?;
                    self.has_blob(&layer.digest)
                        .ok()?
                        .then(|| (layer.digest.clone(), layer.size))
                });
            let manifests = self.generate_builtins(layer)?;
            let annotations = BTreeMap::from([(BUILTIN_ANNOTATION.to_owned(), source.clone())]);
            // Every built-in reference made from another binary moves to this binary's images.
            let mut references: Vec<(Builtin, String)> = builtins
                .iter()
                .filter(|(_, entry)| entry.annotations.get(BUILTIN_ANNOTATION) != Some(&source))
                .filter_map(|(kind, entry)| {
                    Some((*kind, entry.annotations.get(NAME_ANNOTATION)?.clone()))
                })
                .collect();
            let stale = !references.is_empty();
            references.push((builtin, reference.to_owned()));
            for (kind, name) in references {
                self.commit(&name, &manifests[&kind], annotations.clone())?;
            }
            stale
        };
        if stale {
            self.collect_garbage()?;
        }
        current(self)?.ok_or_else(|| ImageError::NotFound(reference.to_owned()))
    }

    /// Writes the built-in layer (unless `layer`, its digest and size, is stored already) and
    /// the configs as blobs; returns each image's manifest.
    fn generate_builtins(
        &self,
        layer: Option<(String, u64)>,
    ) -> Result<BTreeMap<Builtin, Vec<u8>>, ImageError> {
        let created =
            builtin::created(&self.builtin_binary).map_err(io_error(&self.builtin_binary))?;
        let (layer, layer_size) = match layer {
            Some(layer) => layer,
            None => {
                let tmp = self.tmp_path();
                builtin::write_layer(&self.builtin_binary, &tmp).map_err(|error| {
                    let _ = fs::remove_file(&tmp);
                    ImageError::Invalid(format!("generating the built-in layer: {error}"))
                })?;
                let size = fs::metadata(&tmp).map_err(io_error(&tmp))?.len();
                (self.put_blob_file(&tmp, None)?, size)
            }
        };
        let mut manifests = BTreeMap::new();
        for kind in Builtin::ALL {
            let config = builtin::config(kind, &layer, created);
            let config_digest = self.put_blob_bytes(&config, None)?;
            let manifest = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
                "layers": [{
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer,
                    "size": layer_size,
                }],
            });
            manifests.insert(kind, manifest.to_string().into_bytes());
        }
        Ok(manifests)
    }

    // --- archives ---

    /// The images of an unpacked `docker save` archive: `(reference, OCI manifest)` each, with
    /// their config and layers stored as blobs.
    fn import_docker(&self, dir: &Path) -> Result<Vec<(String, Vec<u8>)>, ImageError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Item {
            config: String,
            #[serde(default)]
            repo_tags: Option<Vec<String>>,
            layers: Vec<String>,
        }
        let path = dir.join("manifest.json");
        let bytes = fs::read(&path).map_err(io_error(&path))?;
        let items: Vec<Item> = serde_json::from_slice(&bytes)
            .map_err(|error| ImageError::Invalid(format!("manifest.json: {error}")))?;
        let mut images = Vec::new();
        for item in items {
            let member = |name: &str| -> Result<PathBuf, ImageError> {
                let relative =
                    unpack::safe_relative(Path::new(name)).map_err(|source| ImageError::Layer {
                        digest: name.to_owned(),
                        source,
                    })?;
                Ok(dir.join(relative))
            };
            let config_path = member(&item.config)?;
            let config = fs::read(&config_path).map_err(io_error(&config_path))?;
            let config_digest = self.put_blob_bytes(&config, None)?;
            let mut layers = Vec::new();
            for layer in &item.layers {
                let path = member(layer)?;
                let gzipped = {
                    let mut magic = [0u8; 2];
                    let mut file = File::open(&path).map_err(io_error(&path))?;
                    file.read(&mut magic).map_err(io_error(&path))? == 2 && magic == [0x1f, 0x8b]
                };
                let size = fs::metadata(&path).map_err(io_error(&path))?.len();
                let digest = self.copy_blob_file(&path, None)?;
                layers.push(serde_json::json!({
                    "mediaType": if gzipped {
                        "application/vnd.oci.image.layer.v1.tar+gzip"
                    } else {
                        "application/vnd.oci.image.layer.v1.tar"
                    },
                    "digest": digest,
                    "size": size,
                }));
            }
            let manifest = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
                "layers": layers,
            })
            .to_string()
            .into_bytes();
            for tag in item.repo_tags.unwrap_or_default() {
                images.push((normalize(&tag)?.whole, manifest.clone()));
            }
        }
        Ok(images)
    }

    /// The images of an unpacked OCI layout: `(reference, manifest)` each, their blobs stored.
    fn import_oci(
        &self,
        dir: &Path,
        name: Option<&str>,
    ) -> Result<Vec<(String, Vec<u8>)>, ImageError> {
        let path = dir.join("index.json");
        let bytes = fs::read(&path).map_err(io_error(&path))?;
        let index: Index = serde_json::from_slice(&bytes)
            .map_err(|error| ImageError::Invalid(format!("index.json: {error}")))?;
        let blob = |digest: &str| -> Result<PathBuf, ImageError> {
            Ok(dir.join("blobs/sha256").join(digest_hex(digest)?))
        };
        let read = |digest: &str| -> Result<Vec<u8>, ImageError> {
            let path = blob(digest)?;
            let bytes = fs::read(&path).map_err(io_error(&path))?;
            let actual = sha256(&bytes);
            if actual != digest {
                return Err(ImageError::Digest {
                    expected: digest.to_owned(),
                    actual,
                });
            }
            Ok(bytes)
        };
        let mut images = Vec::new();
        for entry in &index.manifests {
            let reference = match (
                entry.annotations.get(NAME_ANNOTATION),
                entry.annotations.get(REF_ANNOTATION),
            ) {
                (Some(full), _) => normalize(full)?.whole,
                (None, Some(tag)) if tag.contains('/') || tag.contains(':') => {
                    normalize(tag)?.whole
                }
                (None, Some(tag)) => match name {
                    Some(name) => normalize(&format!("{name}:{tag}"))?.whole,
                    None => {
                        return Err(ImageError::Invalid(format!(
                            "the archive names its image only by the tag {tag:?}: pass \
                             --repository REPOSITORY"
                        )));
                    }
                },
                (None, None) => continue,
            };
            let mut manifest = read(&entry.digest)?;
            if is_index(&manifest) {
                let nested: Index = serde_json::from_slice(&manifest)
                    .map_err(|error| ImageError::Invalid(format!("image index: {error}")))?;
                let chosen = pick_platform(&nested)?;
                manifest = read(&chosen.digest)?;
            }
            let parsed: Manifest = serde_json::from_slice(&manifest)
                .map_err(|error| ImageError::Invalid(format!("image manifest: {error}")))?;
            self.put_blob_bytes(&read(&parsed.config.digest)?, Some(&parsed.config.digest))?;
            for layer in &parsed.layers {
                self.copy_blob_file(&blob(&layer.digest)?, Some(&layer.digest))?;
            }
            images.push((reference, manifest));
        }
        Ok(images)
    }
}

/// Runs `work` on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ImageError> + Send + 'static,
) -> Result<T, ImageError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| ImageError::Invalid(format!("image store task failed: {error}")))?
}

/// Writes `bytes` to `path` so readers see the old file or the whole new one: a temporary
/// file in the store's `tmp`, fsynced, renamed over it.
fn write_atomically(root: &Path, path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    let tmp = root
        .join("tmp")
        .join(format!("{}.partial", uuid::Uuid::new_v4().simple()));
    let write = || -> io::Result<()> {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|error| {
        let _ = fs::remove_file(&tmp);
        io_error(path)(error)
    })
}

/// Extracts an archive (a tar, possibly gzipped) of plain files and directories into `dest`.
fn extract_archive(file: File, dest: &Path) -> Result<(), ImageError> {
    let mut reader = io::BufReader::new(file);
    let gzipped = io::BufRead::fill_buf(&mut reader)
        .map_err(io_error(dest))?
        .starts_with(&[0x1f, 0x8b]);
    let stream: Box<dyn Read> = if gzipped {
        Box::new(flate2::bufread::MultiGzDecoder::new(reader))
    } else {
        Box::new(reader)
    };
    let mut archive = tar::Archive::new(stream);
    let invalid = |error: io::Error| ImageError::Invalid(format!("reading the archive: {error}"));
    for entry in archive.entries().map_err(invalid)? {
        let mut entry = entry.map_err(invalid)?;
        let name = entry.path().map_err(invalid)?.into_owned();
        let relative = unpack::safe_relative(&name).map_err(|source| ImageError::Layer {
            digest: "archive".to_owned(),
            source,
        })?;
        let kind = entry.header().entry_type();
        if relative.as_os_str().is_empty() || !(kind.is_file() || kind.is_dir()) {
            // Archives of images hold files and directories; links are not followed.
            continue;
        }
        let parent = if kind.is_dir() {
            relative.as_path()
        } else {
            relative.parent().unwrap_or(Path::new(""))
        };
        unpack::ensure_dirs(dest, parent, &name).map_err(|source| ImageError::Layer {
            digest: "archive".to_owned(),
            source,
        })?;
        if kind.is_file() {
            let path = dest.join(&relative);
            let mut out = File::create(&path).map_err(io_error(&path))?;
            io::copy(&mut entry, &mut out).map_err(io_error(&path))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_updates_are_atomic_and_keep_other_references() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let descriptor = |digest: &str| Descriptor {
            media_type: OCI_MANIFEST.to_owned(),
            digest: digest.to_owned(),
            size: 1,
            ..Default::default()
        };
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        store
            .set_reference("docker.io/library/one:1", descriptor(&a))
            .unwrap();
        store
            .set_reference("docker.io/library/two:2", descriptor(&a))
            .unwrap();
        store
            .set_reference("docker.io/library/one:1", descriptor(&b))
            .unwrap();
        let index = store.read_index().unwrap();
        let names: Vec<(&str, &str)> = index
            .manifests
            .iter()
            .map(|e| (e.annotations[NAME_ANNOTATION].as_str(), e.digest.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("docker.io/library/two:2", a.as_str()),
                ("docker.io/library/one:1", b.as_str())
            ]
        );
        assert_eq!(index.manifests[1].annotations[REF_ANNOTATION], "1");
        // No temporary file is left behind, and a reader always parses a whole index: many
        // writers and a reader racing.
        std::thread::scope(|scope| {
            for writer in 0..4 {
                let store = store.clone();
                let a = a.clone();
                scope.spawn(move || {
                    for i in 0..25 {
                        store
                            .set_reference(
                                &format!("docker.io/library/w{writer}:{i}"),
                                descriptor(&a),
                            )
                            .unwrap();
                    }
                });
            }
            for _ in 0..200 {
                store.read_index().unwrap();
            }
        });
        assert_eq!(store.read_index().unwrap().manifests.len(), 2 + 100);
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn the_platform_manifest_is_picked_from_an_index() {
        let entry = |digest: char, os: &str, architecture: &str| Descriptor {
            media_type: OCI_MANIFEST.to_owned(),
            digest: format!("sha256:{}", digest.to_string().repeat(64)),
            size: 1,
            platform: Some(Platform {
                architecture: architecture.to_owned(),
                os: os.to_owned(),
                variant: None,
            }),
            ..Default::default()
        };
        let index = Index {
            manifests: vec![
                entry('a', "windows", go_arch()),
                entry('b', "linux", "s390x"),
                entry('c', "linux", go_arch()),
            ],
            ..Default::default()
        };
        assert!(pick_platform(&index).unwrap().digest.ends_with('c'));
        let other = Index {
            manifests: vec![entry('b', "linux", "s390x")],
            ..Default::default()
        };
        let error = pick_platform(&other).unwrap_err().to_string();
        assert!(
            error.starts_with("no matching manifest for linux/"),
            "{error}"
        );

        assert!(is_index(br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#));
        assert!(is_index(br#"{"schemaVersion":2,"manifests":[]}"#));
        assert!(!is_index(br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{}}"#));
    }

    #[test]
    fn digests_must_be_sha256_hex() {
        assert!(digest_hex(&format!("sha256:{}", "0f".repeat(32))).is_ok());
        for bad in ["sha256:../../etc", "sha512:00", "sha256:ABC", "", "sha256:"] {
            assert!(digest_hex(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn summaries_split_repository_and_tag() {
        let summary = |reference: &str| ImageSummary {
            reference: reference.to_owned(),
            id: String::new(),
            digest: String::new(),
            size: 0,
        };
        assert_eq!(
            summary("docker.io/library/busybox:1.36").repository_and_tag(),
            ("docker.io/library/busybox", "1.36")
        );
        assert_eq!(
            summary("127.0.0.1:5000/busybox:v1").repository_and_tag(),
            ("127.0.0.1:5000/busybox", "v1")
        );
        assert_eq!(
            summary("127.0.0.1:5000/busybox@sha256:00").repository_and_tag(),
            ("127.0.0.1:5000/busybox", "<none>")
        );
    }
}
