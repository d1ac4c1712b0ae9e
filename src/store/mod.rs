//! The store: where the API server keeps every object, as the real API server keeps them in etcd.
//!
//! One trait, [`Store`], shaped by what the API server needs from etcd and nothing more: point
//! reads, prefix ranges at a fixed revision (for paginated LISTs), create-if-absent, compare-and-swap
//! update and delete on a key's `mod_revision`, prefix watches that resume from any revision still
//! in history, and compaction of that history.
//!
//! Revisions work as in etcd: one global counter, starting at 1 for an empty store, that every
//! successful write increases by exactly one, across all keys. A key remembers the revision that
//! created it (`create_revision`) and the one that last changed it (`mod_revision`); the API server
//! shows the latter to clients as `metadata.resourceVersion`.
//!
//! Two implementations pass one conformance suite (`tests/store_conformance.rs`):
//! [`embedded::EmbeddedStore`] (the default: `redb` on disk, group-committed, watches served from
//! memory) and, with the `etcd` cargo feature, [`etcd::EtcdStore`] (a real etcd through the
//! `etcd-client` crate). [`open`] picks one from a store URL such as `embedded` or
//! `etcd=http://127.0.0.1:2379`. [`compactor::Compactor`] trims history on either.
//!
//! Only the API server may import this module (see ARCHITECTURE.md).

pub mod compactor;
pub mod embedded;
#[cfg(feature = "etcd")]
pub mod etcd;
mod history;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

/// A store revision: etcd's global, monotonically increasing write counter.
pub type Revision = u64;

/// The largest value the store accepts: 1.5 MiB, etcd's default request limit, which is also
/// the practical limit on the size of one Kubernetes object.
pub const MAX_VALUE_BYTES: usize = 1536 * 1024;

/// One key and the value it holds at some revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    /// The key, such as `/registry/pods/default/web-1`.
    pub key: String,
    /// The value, exactly as written.
    pub value: Bytes,
    /// The revision of the write that created the key.
    pub create_revision: Revision,
    /// The revision of the write that last changed the key.
    pub mod_revision: Revision,
}

/// A change to one key, as a watch delivers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The key was created or updated; `kv.mod_revision` is the event's revision.
    Put {
        /// The key's new state.
        kv: KeyValue,
        /// The key's state just before, if it existed.
        prev: Option<KeyValue>,
    },
    /// The key was deleted at `revision`.
    Delete {
        /// The deleted key.
        key: String,
        /// The revision of the delete.
        revision: Revision,
        /// The key's last state before the delete.
        prev: KeyValue,
    },
}

impl Event {
    /// The revision at which this change happened.
    pub fn revision(&self) -> Revision {
        match self {
            Event::Put { kv, .. } => kv.mod_revision,
            Event::Delete { revision, .. } => *revision,
        }
    }

    /// The key this change touched.
    pub fn key(&self) -> &str {
        match self {
            Event::Put { kv, .. } => &kv.key,
            Event::Delete { key, .. } => key,
        }
    }
}

/// A prefix range, read as one consistent snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeRequest {
    /// Only keys that start with this prefix (empty: every key).
    pub prefix: String,
    /// Only keys strictly after this one: the continuation of a paginated read.
    pub start_after: Option<String>,
    /// At most this many keys (`None`: all of them).
    pub limit: Option<usize>,
    /// Read the range as it was at this revision (`None`: the current revision). Paginated LISTs
    /// read every page at the revision of their first page.
    pub at_revision: Option<Revision>,
}

impl RangeRequest {
    /// Every key under `prefix`, at the current revision.
    pub fn prefix(prefix: impl Into<String>) -> Self {
        RangeRequest {
            prefix: prefix.into(),
            ..RangeRequest::default()
        }
    }
}

/// The answer to a [`RangeRequest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeResult {
    /// The keys in the range, in key order.
    pub kvs: Vec<KeyValue>,
    /// Whether more keys follow the last one returned.
    pub more: bool,
    /// The revision the snapshot reflects: `at_revision` if one was asked for, else the store's
    /// current revision when the range was read. A paginated LIST asks for later pages at it.
    pub revision: Revision,
}

/// The events of a watch, in revision order. The stream ends with an error if the watch can no
/// longer continue, for instance [`Error::Compacted`] when the watcher fell behind compaction.
pub type WatchStream = BoxStream<'static, Result<Event>>;

/// What went wrong in a store operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `create` found the key already present.
    #[error("key {key:?} already exists")]
    AlreadyExists {
        /// The key.
        key: String,
    },
    /// `update` or `delete` found no such key.
    #[error("key {key:?} not found")]
    NotFound {
        /// The key.
        key: String,
    },
    /// A compare-and-swap found the key at another `mod_revision` than expected.
    #[error("conflict on key {key:?}: expected mod revision {expected}, found {actual}")]
    Conflict {
        /// The key.
        key: String,
        /// The revision the caller expected.
        expected: Revision,
        /// The key's current `mod_revision`.
        actual: Revision,
    },
    /// The revision asked for has been compacted away (the API server answers `410 Expired`).
    #[error("revision {requested} has been compacted")]
    Compacted {
        /// The revision asked for.
        requested: Revision,
        /// The oldest revision still available, where the backend says.
        compacted: Option<Revision>,
    },
    /// The revision asked for has not happened yet.
    #[error("revision {requested} is in the future (current revision is {current})")]
    FutureRevision {
        /// The revision asked for.
        requested: Revision,
        /// The store's current revision.
        current: Revision,
    },
    /// The value is over [`MAX_VALUE_BYTES`].
    #[error("value for key {key:?} is {size} bytes, over the {limit}-byte limit")]
    ValueTooLarge {
        /// The key.
        key: String,
        /// The value's size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The store URL could not be understood.
    #[error("invalid store {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The embedded database failed.
    #[error("embedded store {path}: {message}")]
    Embedded {
        /// The database file.
        path: PathBuf,
        /// What the database reported.
        message: String,
    },
    /// The embedded store's file exists but is empty: not a store (a new one would silently
    /// start a cluster with none of its objects).
    #[error(
        "embedded store {path}: the file is empty (0 bytes), not a store; refusing to start a \
         new cluster over it (restore it from a backup, or remove it to start afresh)"
    )]
    EmptyFile {
        /// The database file.
        path: PathBuf,
    },
    /// etcd failed or could not be reached.
    #[error("etcd at {endpoint}: {message}")]
    Etcd {
        /// The etcd endpoint.
        endpoint: String,
        /// What etcd or the client reported.
        message: String,
    },
    /// The store was shut down while the operation was in flight.
    #[error("the store is closed")]
    Closed,
}

/// The result of a store operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The store seam: what the API server needs from etcd.
///
/// Every write that succeeds returns the new global revision. Writes are durable when they return.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The key's current value, if it exists.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// The keys of a prefix, in key order, as one consistent snapshot.
    async fn range(&self, request: &RangeRequest) -> Result<RangeResult>;

    /// Creates `key`; fails with [`Error::AlreadyExists`] if it exists.
    async fn create(&self, key: &str, value: Bytes) -> Result<Revision>;

    /// Replaces `key`'s value if its `mod_revision` is `expected_mod_revision`; otherwise fails
    /// with [`Error::Conflict`] (or [`Error::NotFound`] if the key does not exist).
    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_mod_revision: Revision,
    ) -> Result<Revision>;

    /// Deletes `key` if its `mod_revision` is `expected_mod_revision`; otherwise fails with
    /// [`Error::Conflict`] (or [`Error::NotFound`]).
    async fn delete(&self, key: &str, expected_mod_revision: Revision) -> Result<Revision>;

    /// Watches the keys under `prefix`, delivering every change with a revision of at least
    /// `from_revision` in revision order (`0`: only changes after now). Fails with
    /// [`Error::Compacted`] if `from_revision` is older than the history kept.
    async fn watch(&self, prefix: &str, from_revision: Revision) -> Result<WatchStream>;

    /// Discards the history before `revision`: later reads and watches at older revisions fail
    /// with [`Error::Compacted`]. Compacting to a revision already compacted does nothing.
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// The store's current revision: that of the latest write (1 for an empty store).
    async fn current_revision(&self) -> Result<Revision>;
}

/// Which store to use, as given by `--store`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreUrl {
    /// The embedded store, in a file under the cluster's state directory.
    Embedded,
    /// A real etcd at these comma-separated endpoints.
    Etcd(Vec<String>),
}

impl FromStr for StoreUrl {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidUrl {
            url: s.to_owned(),
            reason: reason.to_owned(),
        };
        if s == "embedded" {
            return Ok(StoreUrl::Embedded);
        }
        let Some(endpoints) = s.strip_prefix("etcd=") else {
            return Err(invalid(
                "expected `embedded` or `etcd=http://HOST:PORT[,http://HOST:PORT...]`",
            ));
        };
        let endpoints: Vec<String> = endpoints.split(',').map(str::to_owned).collect();
        if endpoints
            .iter()
            .any(|e| !(e.starts_with("http://") || e.starts_with("https://")))
        {
            return Err(invalid(
                "each etcd endpoint must start with http:// or https://",
            ));
        }
        Ok(StoreUrl::Etcd(endpoints))
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::Embedded => f.write_str("embedded"),
            StoreUrl::Etcd(endpoints) => write!(f, "etcd={}", endpoints.join(",")),
        }
    }
}

/// The embedded store's file inside a cluster's state directory.
pub fn embedded_path(state_dir: &Path) -> PathBuf {
    state_dir.join("store.redb")
}

/// Opens the store `url` names; the embedded one lives in `state_dir`.
pub async fn open(url: &StoreUrl, state_dir: &Path) -> Result<Arc<dyn Store>> {
    match url {
        StoreUrl::Embedded => {
            let path = embedded_path(state_dir);
            if let Some(dir) = path.parent() {
                // Owner-only, like the file: the store holds every Secret.
                std::os::unix::fs::DirBuilderExt::mode(
                    std::fs::DirBuilder::new().recursive(true),
                    0o700,
                )
                .create(dir)
                .map_err(|e| Error::Embedded {
                    path: path.clone(),
                    message: format!("cannot create state directory: {e}"),
                })?;
            }
            let store = tokio::task::spawn_blocking(move || embedded::EmbeddedStore::open(&path))
                .await
                .map_err(|_| Error::Closed)??;
            Ok(Arc::new(store))
        }
        #[cfg(feature = "etcd")]
        StoreUrl::Etcd(endpoints) => Ok(Arc::new(etcd::EtcdStore::connect(endpoints).await?)),
        #[cfg(not(feature = "etcd"))]
        StoreUrl::Etcd(_) => Err(Error::InvalidUrl {
            url: url.to_string(),
            reason: "this orrery was built without the `etcd` feature; rebuild with \
                     `cargo build --release --features etcd` (needs protoc: apt-get install \
                     protobuf-compiler)"
                .to_owned(),
        }),
    }
}

/// The end of the key range that holds every key starting with `prefix`, as etcd computes it:
/// the prefix with its last byte below 0xff increased by one (`None`: no end, every key after).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Checks a value against [`MAX_VALUE_BYTES`] before it goes anywhere.
pub(crate) fn check_value_size(key: &str, value: &[u8]) -> Result<()> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(Error::ValueTooLarge {
            key: key.to_owned(),
            size: value.len(),
            limit: MAX_VALUE_BYTES,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls() {
        assert_eq!("embedded".parse::<StoreUrl>().unwrap(), StoreUrl::Embedded);
        assert_eq!(
            "etcd=http://127.0.0.1:2379,http://127.0.0.1:22379"
                .parse::<StoreUrl>()
                .unwrap(),
            StoreUrl::Etcd(vec![
                "http://127.0.0.1:2379".into(),
                "http://127.0.0.1:22379".into()
            ])
        );
        for bad in ["", "etcd", "etcd=127.0.0.1:2379", "redis://x"] {
            assert!(
                matches!(bad.parse::<StoreUrl>(), Err(Error::InvalidUrl { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(
            prefix_end(b"/registry/pods/"),
            Some(b"/registry/pods0".to_vec())
        );
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }
}
