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
//! `etcd=http://127.0.0.1:2379`; `etcd-cluster=3` is a real etcd cluster whose members `orrery
//! up` runs as child processes ([`etcd::cluster`]). [`compactor::Compactor`] trims history on
//! either, and [`snapshot`] saves every key at one revision to a file and restores it.
//!
//! Only the API server may import this module (see ARCHITECTURE.md).

pub mod compactor;
pub mod embedded;
#[cfg(feature = "etcd")]
pub mod etcd;
mod history;
pub mod snapshot;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use serde::Serialize;

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
    /// The store cannot serve the request now: etcd has no leader or no quorum, or no member
    /// answers. `message` is what etcd (or the connection) said, such as `etcdserver: request
    /// timed out`; `why` is what the members' states explain, such as `no quorum: 1 of 3
    /// members up`.
    #[error(
        "etcd at {endpoint}: {message}{}",
        why.as_deref().map(|w| format!(" ({w})")).unwrap_or_default()
    )]
    Unavailable {
        /// The etcd endpoints.
        endpoint: String,
        /// What etcd said.
        message: String,
        /// Why, from the members' states, when they explain it.
        why: Option<String>,
    },
    /// An etcd cluster of `--store etcd-cluster=N` could not be laid out or started.
    #[error("the etcd cluster in {dir}: {message}")]
    EtcdCluster {
        /// Its directory.
        dir: PathBuf,
        /// What went wrong.
        message: String,
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

    /// Makes `kvs` (keys in ascending order, each once) the whole content of the store, as
    /// `etcdutl snapshot restore --bump-revision --mark-compacted` would: keys whose value
    /// differs are written and keys not in `kvs` deleted, all in one transaction at revisions
    /// above the current one; then history is compacted at the new revision, so that every
    /// watch open before the restore ends with [`Error::Compacted`] (its client lists again)
    /// and nothing in between is ever delivered.
    async fn restore(&self, kvs: &[(String, Bytes)]) -> Result<Restored>;

    /// What the store says of itself: which backend, its revision, and for etcd each member's
    /// health and whether there is a quorum.
    async fn status(&self) -> Result<StoreStatus>;
}

/// What [`Store::restore`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Restored {
    /// The store's revision after the restore, at which history was compacted.
    pub revision: Revision,
    /// Keys written: absent before, or with another value.
    pub written: usize,
    /// Keys deleted: present before, absent from the snapshot.
    pub deleted: usize,
    /// Keys that already held the snapshot's value, left as they were.
    pub unchanged: usize,
}

/// One etcd member as [`Store::status`] found it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MemberStatus {
    /// Its name (`etcd-2`), or its endpoint when it could not be asked.
    pub name: String,
    /// Its client URL.
    pub endpoint: String,
    /// Whether it answered.
    pub up: bool,
    /// Whether it is the leader.
    pub leader: bool,
    /// Its own (serializable) revision, when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<Revision>,
    /// Why it did not answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a store says of itself ([`Store::status`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreStatus {
    /// `embedded` or `etcd`.
    pub backend: String,
    /// The current revision, when the store can say it (an etcd without quorum cannot).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<Revision>,
    /// The revision history was compacted at, where the backend says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compacted: Option<Revision>,
    /// etcd's members (empty for the embedded store).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberStatus>,
}

impl StoreStatus {
    /// For etcd: whether a majority of the members is up and they have a leader, so that
    /// writes (and quorum reads) can be served. `None` for the embedded store.
    pub fn quorum(&self) -> Option<bool> {
        if self.members.is_empty() {
            return None;
        }
        let up = self.members.iter().filter(|m| m.up).count();
        Some(up * 2 > self.members.len() && self.members.iter().any(|m| m.up && m.leader))
    }

    /// The quorum in words: `quorum: 3 of 3 members up, leader etcd-1` or `no quorum: 1 of 3
    /// members up` (`None` for the embedded store).
    pub fn quorum_words(&self) -> Option<String> {
        let quorum = self.quorum()?;
        let up = self.members.iter().filter(|m| m.up).count();
        let total = self.members.len();
        let leader = self.members.iter().find(|m| m.up && m.leader);
        Some(match (quorum, leader) {
            (true, Some(leader)) => {
                format!("quorum: {up} of {total} members up, leader {}", leader.name)
            }
            (true, None) => format!("quorum: {up} of {total} members up"),
            (false, _) if up * 2 > total => {
                format!("no quorum: {up} of {total} members up but no leader elected yet")
            }
            (false, _) => format!("no quorum: {up} of {total} members up"),
        })
    }
}

/// Which store to use, as given by `--store`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreUrl {
    /// The embedded store, in a file under the cluster's state directory.
    Embedded,
    /// A real etcd at these comma-separated endpoints.
    Etcd(Vec<String>),
    /// A real etcd cluster of this many members (odd, 1 to 7) that `orrery up` runs as child
    /// processes on 127.0.0.1, with their data under the state directory
    /// ([`etcd::cluster`]).
    EtcdCluster(usize),
}

/// The most members `--store etcd-cluster=N` starts.
pub const MAX_CLUSTER_MEMBERS: usize = 7;

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
        if let Some(members) = s.strip_prefix("etcd-cluster=") {
            let members: usize = members
                .parse()
                .map_err(|_| invalid("etcd-cluster=N needs a number of members: 1, 3, 5 or 7"))?;
            if members == 0 || members > MAX_CLUSTER_MEMBERS {
                return Err(invalid(&format!(
                    "etcd-cluster=N needs an odd number of members from 1 to \
                     {MAX_CLUSTER_MEMBERS}, not {members}"
                )));
            }
            if members.is_multiple_of(2) {
                return Err(invalid(&format!(
                    "etcd-cluster=N needs an odd number of members from 1 to \
                     {MAX_CLUSTER_MEMBERS}: {members} members tolerate no more failures than {} \
                     do (a majority of either is lost with {} down)",
                    members - 1,
                    members / 2
                )));
            }
            return Ok(StoreUrl::EtcdCluster(members));
        }
        let Some(endpoints) = s.strip_prefix("etcd=") else {
            return Err(invalid(
                "expected `embedded`, `etcd=http://HOST:PORT[,http://HOST:PORT...]` or \
                 `etcd-cluster=N` (N = 1, 3, 5 or 7)",
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
            StoreUrl::EtcdCluster(members) => write!(f, "etcd-cluster={members}"),
        }
    }
}

/// The embedded store's file inside a cluster's state directory.
pub fn embedded_path(state_dir: &Path) -> PathBuf {
    state_dir.join("store.redb")
}

/// Where `--store etcd-cluster=N` keeps its members' data and logs in a state directory.
pub fn etcd_cluster_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("etcd")
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
        #[cfg(feature = "etcd")]
        StoreUrl::EtcdCluster(_) => Err(Error::InvalidUrl {
            url: url.to_string(),
            reason: "an etcd cluster's members must run first: `orrery up` starts them (and \
                     `orrery store` while no cluster runs), see store::etcd::cluster"
                .to_owned(),
        }),
        #[cfg(not(feature = "etcd"))]
        StoreUrl::Etcd(_) | StoreUrl::EtcdCluster(_) => Err(Error::InvalidUrl {
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
        for (members, good) in [(1, true), (3, true), (5, true), (7, true), (2, false)] {
            let url = format!("etcd-cluster={members}");
            let parsed = url.parse::<StoreUrl>();
            assert_eq!(parsed.is_ok(), good, "{url}");
            if good {
                assert_eq!(parsed.unwrap().to_string(), url);
            }
        }
        for (bad, words) in [
            ("etcd-cluster=2", "odd number of members from 1 to 7"),
            (
                "etcd-cluster=4",
                "4 members tolerate no more failures than 3 do (a majority of either is lost \
                 with 2 down)",
            ),
            ("etcd-cluster=9", "not 9"),
            ("etcd-cluster=0", "not 0"),
            ("etcd-cluster=three", "needs a number of members"),
            ("etcd-cluster=", "needs a number of members"),
        ] {
            let error = bad.parse::<StoreUrl>().unwrap_err().to_string();
            assert!(error.contains(words), "{bad}: {error}");
        }
    }

    #[test]
    fn quorum_in_words() {
        let member = |name: &str, up: bool, leader: bool| MemberStatus {
            name: name.into(),
            up,
            leader,
            ..MemberStatus::default()
        };
        let status = |members| StoreStatus {
            backend: "etcd".into(),
            members,
            ..StoreStatus::default()
        };
        let all = status(vec![
            member("etcd-1", true, false),
            member("etcd-2", true, true),
            member("etcd-3", true, false),
        ]);
        assert_eq!(all.quorum(), Some(true));
        assert_eq!(
            all.quorum_words().unwrap(),
            "quorum: 3 of 3 members up, leader etcd-2"
        );
        let two = status(vec![
            member("etcd-1", true, true),
            member("etcd-2", true, false),
            member("etcd-3", false, false),
        ]);
        assert_eq!(two.quorum(), Some(true));
        let electing = status(vec![
            member("etcd-1", true, false),
            member("etcd-2", true, false),
            member("etcd-3", false, false),
        ]);
        assert_eq!(electing.quorum(), Some(false));
        assert_eq!(
            electing.quorum_words().unwrap(),
            "no quorum: 2 of 3 members up but no leader elected yet"
        );
        let one = status(vec![
            member("etcd-1", true, false),
            member("etcd-2", false, false),
            member("etcd-3", false, false),
        ]);
        assert_eq!(one.quorum_words().unwrap(), "no quorum: 1 of 3 members up");
        assert_eq!(status(Vec::new()).quorum(), None);
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
