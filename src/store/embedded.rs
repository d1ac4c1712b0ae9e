//! The embedded store: etcd's data model on `redb`, durable when a write returns.
//!
//! Layout, in one `redb` file (`<state-dir>/store.redb`):
//! - `kv`: key -> (`create_revision`, `mod_revision`, value), the current state of every key;
//! - `log`: revision -> (key, new value or none for a delete, previous state), the change log
//!   that watches resume from and that past-revision ranges are rebuilt from, trimmed by
//!   compaction;
//! - `meta`: the current and the compacted revision.
//!
//! All writes go through one writer thread that applies whatever requests are waiting in a
//! single transaction and commits it with one fsync (group commit): under load, many writers share
//! each fsync, and every write is on disk before it is acknowledged. After a commit the writer
//! appends the batch's events to the in-memory [`History`], from which watches are served.
//! Reads use `redb`'s MVCC snapshots and never wait for the writer.
//!
//! A restore ([`Store::restore`]) is one transaction of its own on the writer: the changed keys
//! written and the others deleted, the whole change log dropped and the compacted revision set
//! to the new one; then the history starts a new epoch, which ends every watch opened before.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{oneshot, watch};

use super::history::{History, Next};
use super::{
    Error, Event, KeyValue, RangeRequest, RangeResult, Restored, Result, Revision, Store,
    StoreStatus, WatchStream, check_value_size, prefix_end,
};

/// key -> (create_revision, mod_revision, value)
const KV: TableDefinition<'_, &str, (u64, u64, &[u8])> = TableDefinition::new("kv");
/// revision -> (key, value after the write or `None` for a delete, state before the write)
type LogEntry<'a> = (&'a str, Option<&'a [u8]>, Option<(u64, u64, &'a [u8])>);
const LOG: TableDefinition<'_, u64, LogEntry<'static>> = TableDefinition::new("log");
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
const META_REVISION: &str = "revision";
const META_COMPACTED: &str = "compacted";

/// The revision of an empty store, as in etcd.
const INITIAL_REVISION: Revision = 1;
/// The most requests one group commit takes.
const MAX_BATCH: usize = 1024;
/// How long a group commit waits for writers the previous commit answered.
const GATHER_WAIT: std::time::Duration = std::time::Duration::from_micros(200);
/// The most events a watch delivers per wake-up, to bound its memory.
const WATCH_CHUNK: usize = 512;

/// Tuning for the embedded store.
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// The most bytes of recent history kept in memory for watches; older history is read back
    /// from disk when a watcher needs it.
    pub history_memory_bytes: usize,
    /// The most bytes of file pages `redb` keeps in memory (its own default is 1 GiB, which a
    /// busy cluster's change log would fill).
    pub page_cache_bytes: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            history_memory_bytes: 8 << 20,
            page_cache_bytes: 64 << 20,
        }
    }
}

/// The embedded, durable store. Dropping it finishes pending writes and closes the file.
pub struct EmbeddedStore {
    db: Arc<Database>,
    path: PathBuf,
    history: Arc<Mutex<History>>,
    revisions: watch::Receiver<Revision>,
    requests: Option<mpsc::Sender<Message>>,
    writer: Option<JoinHandle<()>>,
    commits: Arc<AtomicU64>,
}

enum Op {
    Create {
        key: String,
        value: Bytes,
    },
    Update {
        key: String,
        value: Bytes,
        expected: Revision,
    },
    Delete {
        key: String,
        expected: Revision,
    },
    Compact {
        revision: Revision,
    },
}

struct Request {
    op: Op,
    reply: oneshot::Sender<Result<Revision>>,
}

/// What the writer thread is asked: a write (grouped with others into one commit), or a
/// restore (a commit of its own).
enum Message {
    Write(Request),
    Restore {
        kvs: Vec<(String, Bytes)>,
        reply: oneshot::Sender<Result<Restored>>,
    },
}

fn db_error(path: &Path) -> impl Fn(redb::Error) -> Error + '_ {
    move |e| Error::Embedded {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// Converts any of redb's error types into ours.
macro_rules! try_db {
    ($path:expr, $e:expr) => {
        $e.map_err(|e| db_error($path)(redb::Error::from(e)))?
    };
}

fn lock(history: &Mutex<History>) -> MutexGuard<'_, History> {
    // A panic while holding the lock cannot leave the history half-updated in a way readers
    // would misread (every mutation keeps it contiguous), so poisoning is ignored.
    history
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Creates `path` as an empty file with mode 0600 if it is missing, and takes group and other
/// permissions away from an existing one.
fn private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
}

impl EmbeddedStore {
    /// Opens (or creates) the store at `path` with default options. This blocks on disk I/O and,
    /// after an unclean shutdown, on `redb`'s repair.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, EmbeddedOptions::default())
    }

    /// Opens (or creates) the store at `path`, readable by its owner only (it holds every
    /// Secret), whatever mode an existing file had.
    ///
    /// A missing file is a new store, made under a temporary name and renamed into place once
    /// its tables are committed, so a crash never leaves an empty file behind. An existing empty
    /// file is refused ([`Error::EmptyFile`]): redb would take it for a new store, and the
    /// cluster would start with every object gone.
    pub fn open_with(path: &Path, options: EmbeddedOptions) -> Result<Self> {
        let failed = |e: std::io::Error| Error::Embedded {
            path: path.to_owned(),
            message: e.to_string(),
        };
        let fresh = match std::fs::metadata(path) {
            Ok(meta) if meta.len() == 0 => {
                return Err(Error::EmptyFile {
                    path: path.to_owned(),
                });
            }
            Ok(_) => None,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut name = path.as_os_str().to_owned();
                name.push(".new");
                let new = std::path::PathBuf::from(name);
                // A crash's half-made store: nothing in it was ever acknowledged.
                let _ = std::fs::remove_file(&new);
                Some(new)
            }
            Err(e) => return Err(failed(e)),
        };
        let open_path = fresh.as_deref().unwrap_or(path);
        private_file(open_path).map_err(failed)?;
        let db = Database::builder()
            .set_cache_size(options.page_cache_bytes)
            .create(open_path)
            .map_err(|e| Error::Embedded {
                path: path.to_owned(),
                message: match e {
                    redb::DatabaseError::DatabaseAlreadyOpen => {
                        "already open in another process (is a cluster or another orrery command \
                     using this state directory?)"
                            .to_owned()
                    }
                    other => other.to_string(),
                },
            })?;
        let txn = try_db!(path, db.begin_write());
        {
            // Create the tables so that readers never find them missing.
            try_db!(path, txn.open_table(KV));
            try_db!(path, txn.open_table(LOG));
            try_db!(path, txn.open_table(META));
        }
        try_db!(path, txn.commit());
        if let Some(new) = &fresh {
            std::fs::rename(new, path).map_err(failed)?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(failed)?;
            }
        }

        let read = try_db!(path, db.begin_read());
        let (current, compacted) = read_meta(path, &read)?;
        let mut history = History::new(current, compacted, options.history_memory_bytes);
        {
            let log = try_db!(path, read.open_table(LOG));
            for entry in try_db!(path, log.range(compacted..)) {
                let (revision, entry) = try_db!(path, entry);
                history.load(decode_event(revision.value(), entry.value()));
            }
        }
        drop(read);
        let history = Arc::new(Mutex::new(history));

        let db = Arc::new(db);
        let (revision_tx, revisions) = watch::channel(current);
        let (requests, queue) = mpsc::channel();
        let commits = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            commits: commits.clone(),
            db: db.clone(),
            path: path.to_owned(),
            history: history.clone(),
            revisions: revision_tx,
            current,
            compacted,
        };
        let writer = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer.run(queue))
            .map_err(|e| Error::Embedded {
                path: path.to_owned(),
                message: format!("cannot start the writer thread: {e}"),
            })?;
        tracing::debug!(path = %path.display(), current, compacted, "opened embedded store");
        Ok(EmbeddedStore {
            db,
            path: path.to_owned(),
            history,
            revisions,
            requests: Some(requests),
            writer: Some(writer),
            commits,
        })
    }

    /// The revision before which history has been compacted.
    pub fn compacted_revision(&self) -> Revision {
        lock(&self.history).compacted()
    }

    /// How many transactions the writer has committed (each one fsync) since the store opened:
    /// fewer than the writes when concurrent writers share group commits.
    pub fn commit_count(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    async fn write(&self, op: Op) -> Result<Revision> {
        let (reply, answer) = oneshot::channel();
        let requests = self.requests.as_ref().ok_or(Error::Closed)?;
        requests
            .send(Message::Write(Request { op, reply }))
            .map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Path, &ReadTransaction) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let db = self.db.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let txn = try_db!(&path, db.begin_read());
            f(&path, &txn)
        })
        .await
        .map_err(|_| Error::Closed)?
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        // Closing the queue lets the writer finish what is queued and exit; then the file closes.
        self.requests.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

fn read_meta(path: &Path, txn: &ReadTransaction) -> Result<(Revision, Revision)> {
    let meta = try_db!(path, txn.open_table(META));
    let current = try_db!(path, meta.get(META_REVISION)).map_or(INITIAL_REVISION, |v| v.value());
    let compacted = try_db!(path, meta.get(META_COMPACTED)).map_or(INITIAL_REVISION, |v| v.value());
    Ok((current, compacted))
}

fn to_kv(key: &str, (create_revision, mod_revision, value): (u64, u64, &[u8])) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Bytes::copy_from_slice(value),
        create_revision,
        mod_revision,
    }
}

fn decode_event(revision: Revision, (key, value, prev): LogEntry<'_>) -> Event {
    let prev = prev.map(|p| to_kv(key, p));
    match value {
        Some(value) => Event::Put {
            kv: KeyValue {
                key: key.to_owned(),
                value: Bytes::copy_from_slice(value),
                create_revision: prev.as_ref().map_or(revision, |p| p.create_revision),
                mod_revision: revision,
            },
            prev,
        },
        None => Event::Delete {
            key: key.to_owned(),
            revision,
            prev: prev.unwrap_or_else(|| KeyValue {
                key: key.to_owned(),
                value: Bytes::new(),
                create_revision: 0,
                mod_revision: 0,
            }),
        },
    }
}

/// The single writer: owns every write transaction and publishes committed events.
struct Writer {
    db: Arc<Database>,
    path: PathBuf,
    history: Arc<Mutex<History>>,
    revisions: watch::Sender<Revision>,
    current: Revision,
    compacted: Revision,
    commits: Arc<AtomicU64>,
}

/// What one request did inside a batch, before the batch commits.
enum Outcome {
    Done(Revision),
    Failed(Error),
}

impl Writer {
    fn run(mut self, queue: mpsc::Receiver<Message>) {
        let mut last_batch = 1;
        // A restore that arrived while a batch was gathered: it goes after that batch.
        let mut next = None;
        loop {
            let first = match next.take() {
                Some(message) => message,
                None => match queue.recv() {
                    Ok(message) => message,
                    Err(_) => return,
                },
            };
            let first = match first {
                Message::Write(request) => request,
                Message::Restore { kvs, reply } => {
                    let _ = reply.send(self.restore(&kvs));
                    continue;
                }
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH && next.is_none() {
                match queue.try_recv() {
                    Ok(Message::Write(request)) => batch.push(request),
                    Ok(restore) => next = Some(restore),
                    Err(_) => break,
                }
            }
            // Writers that were all answered by the last commit come back one by one; without a
            // short wait the first of them would be committed alone and the rest would queue up
            // behind it. Wait briefly for as many writers as the last batch had.
            let deadline = std::time::Instant::now() + GATHER_WAIT;
            while batch.len() < last_batch.min(MAX_BATCH) && next.is_none() {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                match queue.recv_timeout(left) {
                    Ok(Message::Write(request)) => batch.push(request),
                    Ok(restore) => next = Some(restore),
                    Err(_) => break,
                }
            }
            last_batch = batch.len();
            tracing::trace!(requests = batch.len(), "group commit");
            self.commit(batch);
        }
    }

    /// Makes `kvs` the whole content in one transaction: keys whose value differs written (a
    /// key that existed keeps its create revision), keys not in `kvs` deleted, each change a
    /// revision of its own above the current one (at least one: a restore is a write), the
    /// change log dropped and history compacted at the new revision. Then the history starts a
    /// new epoch, which ends every watch opened before it.
    fn restore(&mut self, kvs: &[(String, Bytes)]) -> Result<Restored> {
        let path = self.path.clone();
        let path = path.as_path();
        let mut done = Restored::default();
        let txn = try_db!(path, self.db.begin_write());
        let mut revision = self.current;
        {
            let mut kv = try_db!(path, txn.open_table(KV));
            let mut log = try_db!(path, txn.open_table(LOG));
            let mut meta = try_db!(path, txn.open_table(META));
            let wanted: std::collections::HashSet<&str> =
                kvs.iter().map(|(key, _)| key.as_str()).collect();
            let mut gone = Vec::new();
            for entry in try_db!(path, kv.iter()) {
                let (key, _) = try_db!(path, entry);
                if !wanted.contains(key.value()) {
                    gone.push(key.value().to_owned());
                }
            }
            for key in &gone {
                revision += 1;
                try_db!(path, kv.remove(key.as_str()));
                done.deleted += 1;
            }
            for (key, value) in kvs {
                check_value_size(key, value)?;
                let before = try_db!(path, kv.get(key.as_str())).map(|v| {
                    let (create, _, old) = v.value();
                    (create, old == &value[..])
                });
                match before {
                    Some((_, true)) => done.unchanged += 1,
                    Some((create, false)) => {
                        revision += 1;
                        try_db!(
                            path,
                            kv.insert(key.as_str(), (create, revision, &value[..]))
                        );
                        done.written += 1;
                    }
                    None => {
                        revision += 1;
                        try_db!(
                            path,
                            kv.insert(key.as_str(), (revision, revision, &value[..]))
                        );
                        done.written += 1;
                    }
                }
            }
            if revision == self.current {
                revision += 1;
            }
            try_db!(path, log.retain_in::<u64, _>(.., |_, _| false));
            try_db!(path, meta.insert(META_REVISION, revision));
            try_db!(path, meta.insert(META_COMPACTED, revision));
        }
        try_db!(path, txn.commit());
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.current = revision;
        self.compacted = revision;
        lock(&self.history).restart(revision);
        self.revisions.send_replace(revision);
        done.revision = revision;
        tracing::info!(
            revision,
            written = done.written,
            deleted = done.deleted,
            "embedded store restored"
        );
        Ok(done)
    }

    fn commit(&mut self, batch: Vec<Request>) {
        let mut events = Vec::new();
        let mut compact_to = None;
        let applied = self.apply(&batch, &mut events, &mut compact_to);
        match applied {
            Ok((outcomes, current)) => {
                self.commits.fetch_add(1, Ordering::Relaxed);
                self.current = current;
                {
                    let mut history = lock(&self.history);
                    history.push(events);
                    if let Some(revision) = compact_to {
                        self.compacted = revision;
                        history.compact(revision);
                    }
                }
                self.revisions.send_replace(current);
                for (request, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = request.reply.send(match outcome {
                        Outcome::Done(revision) => Ok(revision),
                        Outcome::Failed(error) => Err(error),
                    });
                }
            }
            Err(error) => {
                tracing::error!(%error, "embedded store commit failed");
                for request in batch {
                    let _ = request.reply.send(Err(Error::Embedded {
                        path: self.path.clone(),
                        message: error.to_string(),
                    }));
                }
            }
        }
    }

    /// Applies a batch in one transaction and commits it. Returns each request's outcome and the
    /// new current revision; on error nothing was committed.
    fn apply(
        &self,
        batch: &[Request],
        events: &mut Vec<Event>,
        compact_to: &mut Option<Revision>,
    ) -> Result<(Vec<Outcome>, Revision)> {
        let path = self.path.as_path();
        let txn = try_db!(path, self.db.begin_write());
        let mut revision = self.current;
        let mut compacted = self.compacted;
        let mut outcomes = Vec::with_capacity(batch.len());
        {
            let mut kv = try_db!(path, txn.open_table(KV));
            let mut log = try_db!(path, txn.open_table(LOG));
            let mut meta = try_db!(path, txn.open_table(META));
            for request in batch {
                let outcome = match &request.op {
                    Op::Create { key, value } => {
                        if try_db!(path, kv.get(key.as_str())).is_some() {
                            Outcome::Failed(Error::AlreadyExists { key: key.clone() })
                        } else {
                            revision += 1;
                            try_db!(
                                path,
                                kv.insert(key.as_str(), (revision, revision, &value[..]))
                            );
                            try_db!(
                                path,
                                log.insert(revision, (key.as_str(), Some(&value[..]), None))
                            );
                            events.push(Event::Put {
                                kv: KeyValue {
                                    key: key.clone(),
                                    value: value.clone(),
                                    create_revision: revision,
                                    mod_revision: revision,
                                },
                                prev: None,
                            });
                            Outcome::Done(revision)
                        }
                    }
                    Op::Update {
                        key,
                        value,
                        expected,
                    } => {
                        let prev =
                            try_db!(path, kv.get(key.as_str())).map(|v| to_kv(key, v.value()));
                        match check_cas(key, prev, *expected) {
                            Err(error) => Outcome::Failed(error),
                            Ok(prev) => {
                                revision += 1;
                                let create = prev.create_revision;
                                try_db!(
                                    path,
                                    kv.insert(key.as_str(), (create, revision, &value[..]))
                                );
                                let before = (create, prev.mod_revision, &prev.value[..]);
                                try_db!(
                                    path,
                                    log.insert(
                                        revision,
                                        (key.as_str(), Some(&value[..]), Some(before))
                                    )
                                );
                                events.push(Event::Put {
                                    kv: KeyValue {
                                        key: key.clone(),
                                        value: value.clone(),
                                        create_revision: create,
                                        mod_revision: revision,
                                    },
                                    prev: Some(prev),
                                });
                                Outcome::Done(revision)
                            }
                        }
                    }
                    Op::Delete { key, expected } => {
                        let prev =
                            try_db!(path, kv.get(key.as_str())).map(|v| to_kv(key, v.value()));
                        match check_cas(key, prev, *expected) {
                            Err(error) => Outcome::Failed(error),
                            Ok(prev) => {
                                revision += 1;
                                try_db!(path, kv.remove(key.as_str()));
                                let before =
                                    (prev.create_revision, prev.mod_revision, &prev.value[..]);
                                try_db!(
                                    path,
                                    log.insert(revision, (key.as_str(), None, Some(before)))
                                );
                                events.push(Event::Delete {
                                    key: key.clone(),
                                    revision,
                                    prev,
                                });
                                Outcome::Done(revision)
                            }
                        }
                    }
                    Op::Compact { revision: to } => {
                        if *to > revision {
                            Outcome::Failed(Error::FutureRevision {
                                requested: *to,
                                current: revision,
                            })
                        } else {
                            if *to > compacted {
                                try_db!(path, log.retain_in(..*to, |_, _| false));
                                compacted = *to;
                                try_db!(path, meta.insert(META_COMPACTED, compacted));
                                *compact_to = Some(compacted);
                            }
                            Outcome::Done(revision)
                        }
                    }
                };
                outcomes.push(outcome);
            }
            try_db!(path, meta.insert(META_REVISION, revision));
        }
        try_db!(path, txn.commit());
        Ok((outcomes, revision))
    }
}

/// The compare-and-swap rule: the key must exist at exactly `expected`.
fn check_cas(key: &str, current: Option<KeyValue>, expected: Revision) -> Result<KeyValue> {
    match current {
        None => Err(Error::NotFound {
            key: key.to_owned(),
        }),
        Some(kv) if kv.mod_revision != expected => Err(Error::Conflict {
            key: key.to_owned(),
            expected,
            actual: kv.mod_revision,
        }),
        Some(kv) => Ok(kv),
    }
}

/// The range `[from, to)` of keys a request covers, as redb bounds.
fn key_bounds(request: &RangeRequest) -> (Bound<String>, Bound<String>) {
    let lower = match &request.start_after {
        Some(after) if after.as_str() >= request.prefix.as_str() => Bound::Excluded(after.clone()),
        _ => Bound::Included(request.prefix.clone()),
    };
    let upper = match prefix_end(request.prefix.as_bytes()) {
        // A prefix ending inside a multi-byte character has an end that is not UTF-8: read on
        // without an upper bound and stop at the first key outside the prefix.
        Some(end) => match String::from_utf8(end) {
            Ok(end) => Bound::Excluded(end),
            Err(_) => Bound::Unbounded,
        },
        None => Bound::Unbounded,
    };
    (lower, upper)
}

fn in_range(request: &RangeRequest, key: &str) -> bool {
    key.starts_with(&request.prefix)
        && request
            .start_after
            .as_deref()
            .is_none_or(|after| key > after)
}

fn range_snapshot(
    path: &Path,
    txn: &ReadTransaction,
    request: &RangeRequest,
) -> Result<RangeResult> {
    let (current, compacted) = read_meta(path, txn)?;
    let at = request.at_revision.unwrap_or(current);
    if at > current {
        return Err(Error::FutureRevision {
            requested: at,
            current,
        });
    }
    if at < compacted {
        return Err(Error::Compacted {
            requested: at,
            compacted: Some(compacted),
        });
    }
    // Keys changed after `at`: their state at `at` is the previous state recorded by their first
    // change after it (None: the key did not exist then).
    let mut then: BTreeMap<String, Option<KeyValue>> = BTreeMap::new();
    if at < current {
        let log = try_db!(path, txn.open_table(LOG));
        for entry in try_db!(path, log.range(at + 1..=current)) {
            let (_, entry) = try_db!(path, entry);
            let (key, _, prev) = entry.value();
            if in_range(request, key) && !then.contains_key(key) {
                then.insert(key.to_owned(), prev.map(|p| to_kv(key, p)));
            }
        }
    }

    let kv = try_db!(path, txn.open_table(KV));
    let mut now = try_db!(path, kv.range::<&str>(borrow_bounds(&key_bounds(request))));
    let mut next_now = || -> Result<Option<KeyValue>> {
        match now.next() {
            None => Ok(None),
            Some(entry) => {
                let (k, v) = try_db!(path, entry);
                // Keys are sorted, so the first one outside the prefix ends the range.
                Ok(k.value()
                    .starts_with(&request.prefix)
                    .then(|| to_kv(k.value(), v.value())))
            }
        }
    };
    let limit = request.limit.unwrap_or(usize::MAX);
    let mut kvs = Vec::new();
    let mut more = false;
    let mut past = then.into_iter().peekable();
    let mut current_kv = next_now()?;
    loop {
        // Merge the two sorted sequences; a key changed since `at` takes its state from `past`.
        let take_past = match (&current_kv, past.peek()) {
            (None, None) => break,
            (None, Some(_)) => true,
            (Some(_), None) => false,
            (Some(now_kv), Some((key, _))) => key.as_str() <= now_kv.key.as_str(),
        };
        let item = if take_past {
            let (key, state) = past.next().expect("peeked");
            if current_kv.as_ref().is_some_and(|now_kv| now_kv.key == key) {
                current_kv = next_now()?;
            }
            state
        } else {
            std::mem::replace(&mut current_kv, next_now()?)
        };
        let Some(item) = item else { continue };
        if kvs.len() == limit {
            more = true;
            break;
        }
        kvs.push(item);
    }
    Ok(RangeResult {
        kvs,
        more,
        revision: at,
    })
}

fn borrow_bounds(bounds: &(Bound<String>, Bound<String>)) -> (Bound<&str>, Bound<&str>) {
    (
        bounds.0.as_ref().map(String::as_str),
        bounds.1.as_ref().map(String::as_str),
    )
}

/// Reads logged events under `prefix` from `from` on, up to `max` of them, from disk.
fn read_log(
    db: &Database,
    path: &Path,
    prefix: &str,
    from: Revision,
    max: usize,
) -> Result<(Vec<Event>, Revision)> {
    let txn = try_db!(path, db.begin_read());
    let (current, compacted) = read_meta(path, &txn)?;
    if from < compacted {
        return Err(Error::Compacted {
            requested: from,
            compacted: Some(compacted),
        });
    }
    let log = try_db!(path, txn.open_table(LOG));
    let mut events = Vec::new();
    let mut next = from;
    for entry in try_db!(path, log.range(from..=current)) {
        let (revision, entry) = try_db!(path, entry);
        next = revision.value() + 1;
        if entry.value().0.starts_with(prefix) {
            events.push(decode_event(revision.value(), entry.value()));
            if events.len() >= max {
                break;
            }
        }
    }
    Ok((events, next))
}

/// A watcher's position and what it has fetched but not yet delivered.
struct Cursor {
    db: Weak<Database>,
    path: PathBuf,
    history: Arc<Mutex<History>>,
    revisions: watch::Receiver<Revision>,
    prefix: String,
    next: Revision,
    /// The history's epoch when the watch began: a restore starts another, and ends it.
    epoch: u64,
    pending: std::collections::VecDeque<Event>,
    finished: bool,
}

impl Cursor {
    async fn next_event(&mut self) -> Option<Result<Event>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(Ok(event));
            }
            if self.finished {
                return None;
            }
            // Mark the current revision seen before looking, so a write published after the look
            // wakes the wait below.
            self.revisions.borrow_and_update();
            let next = {
                let history = lock(&self.history);
                if history.epoch() == self.epoch {
                    history.next(&self.prefix, self.next, WATCH_CHUNK)
                } else {
                    // Restored since: what was in between is never delivered.
                    Err(Error::Compacted {
                        requested: self.next,
                        compacted: Some(history.compacted()),
                    })
                }
            };
            let fetched = match next {
                Ok(Next::Events(events, next)) => Ok((events, next)),
                Ok(Next::FromDisk) => self.read_disk().await,
                Err(error) => Err(error),
            };
            match fetched {
                Ok((events, next)) => {
                    self.next = next;
                    if events.is_empty() {
                        if self.revisions.changed().await.is_err() {
                            self.finished = true;
                            return Some(Err(Error::Closed));
                        }
                    } else {
                        // Sized to this batch, not kept at the largest catch-up's size.
                        self.pending = events.into_iter().collect();
                    }
                }
                Err(error) => {
                    self.finished = true;
                    return Some(Err(error));
                }
            }
        }
    }

    async fn read_disk(&self) -> Result<(Vec<Event>, Revision)> {
        let db = self.db.upgrade().ok_or(Error::Closed)?;
        let (path, prefix, from) = (self.path.clone(), self.prefix.clone(), self.next);
        tokio::task::spawn_blocking(move || read_log(&db, &path, &prefix, from, WATCH_CHUNK))
            .await
            .map_err(|_| Error::Closed)?
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        // A point read is a few pages of one B-tree, from redb's cache or the kernel's page
        // cache: done here, it is shorter than the hop to the blocking pool and back that a
        // range takes (every GET and most admission checks make one). MVCC: no writer holds
        // it up.
        let path = &self.path;
        let txn = try_db!(path, self.db.begin_read());
        let kv = try_db!(path, txn.open_table(KV));
        Ok(try_db!(path, kv.get(key)).map(|v| to_kv(key, v.value())))
    }

    async fn range(&self, request: &RangeRequest) -> Result<RangeResult> {
        let request = request.clone();
        self.read(move |path, txn| range_snapshot(path, txn, &request))
            .await
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<Revision> {
        check_value_size(key, &value)?;
        self.write(Op::Create {
            key: key.to_owned(),
            value,
        })
        .await
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<Revision> {
        check_value_size(key, &value)?;
        self.write(Op::Update {
            key: key.to_owned(),
            value,
            expected,
        })
        .await
    }

    async fn delete(&self, key: &str, expected: Revision) -> Result<Revision> {
        self.write(Op::Delete {
            key: key.to_owned(),
            expected,
        })
        .await
    }

    async fn watch(&self, prefix: &str, from_revision: Revision) -> Result<WatchStream> {
        let (next, epoch) = {
            let history = lock(&self.history);
            let next = if from_revision == 0 {
                history.current() + 1
            } else {
                history.check_available(from_revision)?;
                from_revision
            };
            (next, history.epoch())
        };
        let cursor = Cursor {
            db: Arc::downgrade(&self.db),
            path: self.path.clone(),
            history: self.history.clone(),
            revisions: self.revisions.clone(),
            prefix: prefix.to_owned(),
            next,
            epoch,
            pending: Default::default(),
            finished: false,
        };
        Ok(futures::stream::unfold(cursor, |mut cursor| async move {
            cursor.next_event().await.map(|event| (event, cursor))
        })
        .boxed())
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.write(Op::Compact { revision }).await.map(|_| ())
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(*self.revisions.borrow())
    }

    async fn restore(&self, kvs: &[(String, Bytes)]) -> Result<Restored> {
        for (key, value) in kvs {
            check_value_size(key, value)?;
        }
        let (reply, answer) = oneshot::channel();
        let requests = self.requests.as_ref().ok_or(Error::Closed)?;
        requests
            .send(Message::Restore {
                kvs: kvs.to_vec(),
                reply,
            })
            .map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }

    async fn status(&self) -> Result<StoreStatus> {
        Ok(StoreStatus {
            backend: "embedded".into(),
            revision: Some(*self.revisions.borrow()),
            compacted: Some(self.compacted_revision()),
            members: Vec::new(),
        })
    }
}
