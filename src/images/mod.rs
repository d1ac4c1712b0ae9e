//! The image store. SKELETON: the API below is fixed; the bodies are being written.

use std::path::{Path, PathBuf};

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

/// The image store under the state dir.
pub struct ImageStore {
    root: PathBuf,
}

impl ImageStore {
    /// Opens (creating) the store at `root`.
    pub fn open(root: &Path) -> Result<Self, ImageError> {
        Ok(ImageStore {
            root: root.to_owned(),
        })
    }

    /// The image `reference` if present.
    pub fn get(&self, reference: &str) -> Option<Image> {
        let _ = (&self.root, reference);
        None
    }

    /// Pulls `reference` from its registry (or generates a built-in one) and returns it.
    pub async fn pull(&self, reference: &str) -> Result<Image, ImageError> {
        Err(ImageError::NotFound(reference.to_owned()))
    }
}
