//! `orrery store ...`: the cluster's store, read and written the way `etcdctl` reads and writes a
//! real cluster's etcd, and saved to or restored from a snapshot file.
//!
//! While a cluster runs with the state directory, `get`, `put`, `del`, `ls`, `status`,
//! `compact` and `snapshot save|restore` go through its API server process
//! (`/orrery/v1/store...`, with the cluster's admin kubeconfig; served even while the Kubernetes
//! API is stopped): the embedded store is open in that process only, and an etcd cluster's
//! members are its children. With no cluster running they open the store directly (for
//! `--store etcd-cluster=N`, starting its members for the command's length). `watch` and `fill`
//! always open it directly.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use clap::Subcommand;
use futures::StreamExt;
use serde_json::Value;

use super::CliError;
use crate::cluster::ClusterError;
use crate::store::snapshot::{self, Snapshot};
use crate::store::{
    self, Event, MemberStatus, RangeRequest, Restored, Revision, Store, StoreStatus, StoreUrl,
};

#[derive(Debug, Subcommand)]
pub(super) enum StoreCommand {
    /// Print a key's value (with --revisions, its create and mod revisions first).
    Get {
        /// The key, such as /registry/pods/default/web-1.
        key: String,
        /// Also print the key's revisions.
        #[arg(long)]
        revisions: bool,
    },
    /// Create a key or replace its value (compare-and-swap on its current revision).
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// Delete a key (with --prefix, every key under it).
    Del {
        /// The key.
        key: String,
        /// Delete every key that starts with KEY.
        #[arg(long)]
        prefix: bool,
    },
    /// List the keys under a prefix, with their mod revisions.
    Ls {
        /// The prefix (empty: every key).
        #[arg(default_value = "")]
        prefix: String,
        /// At most this many keys.
        #[arg(long)]
        limit: Option<usize>,
        /// Read the keys as they were at this revision.
        #[arg(long)]
        revision: Option<Revision>,
        /// Print the values too.
        #[arg(long)]
        values: bool,
    },
    /// Print changes under a prefix as they happen (or from a past revision).
    Watch {
        /// The prefix (empty: every key).
        #[arg(default_value = "")]
        prefix: String,
        /// Start from this revision (default: changes from now on).
        #[arg(long, default_value_t = 0)]
        from: Revision,
    },
    /// Discard the history before a revision.
    Compact {
        /// The revision.
        revision: Revision,
    },
    /// Print the store's current revision and key count, and for etcd each member's health and
    /// whether there is a quorum.
    Status,
    /// Write new keys from concurrent writers, printing `KEY REVISION` for each acknowledged
    /// write as soon as it is acknowledged (a load generator; the crash test uses it).
    Fill {
        /// The prefix of the keys to create.
        prefix: String,
        /// How many keys to write in all.
        #[arg(long, default_value_t = 1000)]
        count: usize,
        /// How many concurrent writers.
        #[arg(long, default_value_t = 8)]
        writers: usize,
        /// The size of each value in bytes.
        #[arg(long, default_value_t = 256)]
        value_size: usize,
    },
    /// Save every key at one revision to a file, or restore one (on either store).
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
}

#[derive(Debug, Subcommand)]
pub(super) enum SnapshotCommand {
    /// Save every key and value at one revision to FILE (owner-only: it holds every Secret).
    Save {
        /// The file to write.
        file: PathBuf,
    },
    /// Make FILE's keys the store's whole content at a new revision (as `etcdutl snapshot
    /// restore --bump-revision --mark-compacted`): keys not in it are deleted, history is
    /// compacted there, and every watch ends so that its client lists again. Objects keep their
    /// UIDs, so kubelets keep their pods' containers.
    Restore {
        /// The snapshot file.
        file: PathBuf,
    },
    /// Check FILE and print what it holds (revision, keys, checksum), changing nothing.
    Status {
        /// The snapshot file.
        file: PathBuf,
    },
}

/// Runs `command` on the store of `state_dir`: through the running cluster's API server when
/// there is one, else on the store `url` opened here.
pub(super) async fn run(
    url: &StoreUrl,
    state_dir: &Path,
    command: StoreCommand,
) -> Result<(), CliError> {
    if let StoreCommand::Snapshot(SnapshotCommand::Status { file }) = &command {
        return snapshot_status(file);
    }
    let remote = !matches!(
        command,
        StoreCommand::Watch { .. } | StoreCommand::Fill { .. }
    );
    if remote && crate::cluster::running(state_dir) {
        return Remote { state_dir }.run(command).await;
    }
    let (store, _members) = open(url, state_dir).await?;
    run_direct(store, command).await
}

/// What keeps a store opened here alive: an etcd cluster's members, started for the command.
type Keep = Option<Box<dyn std::any::Any + Send>>;

/// Opens the store `url` names, here (no cluster runs with `state_dir`).
async fn open(url: &StoreUrl, state_dir: &Path) -> Result<(Arc<dyn Store>, Keep), CliError> {
    match url {
        #[cfg(feature = "etcd")]
        StoreUrl::EtcdCluster(members) => {
            let cluster = store::etcd::cluster::EtcdCluster::open(state_dir, *members)?;
            let running = cluster.start_all().await?;
            let store = store::etcd::EtcdStore::connect(&cluster.endpoints()).await?;
            // The members go before the cluster (whose thread spawned them).
            Ok((Arc::new(store), Some(Box::new((running, cluster)))))
        }
        url => Ok((store::open(url, state_dir).await?, None)),
    }
}

/// Writes `bytes` to `path` as a new owner-only file, atomically (a temporary file renamed).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    use std::os::unix::fs::OpenOptionsExt;
    let failed = |e: std::io::Error| CliError::Usage(format!("{}: {e}", path.display()));
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".tmp");
    let temporary = path.with_file_name(name);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(failed)?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(failed)?;
    std::fs::rename(&temporary, path).map_err(failed)
}

/// Reads and checks a snapshot file.
fn read_snapshot(file: &Path) -> Result<(Vec<u8>, Snapshot), CliError> {
    let bytes =
        std::fs::read(file).map_err(|e| CliError::Usage(format!("{}: {e}", file.display())))?;
    let snapshot = Snapshot::decode(&bytes)
        .map_err(|e| CliError::Usage(format!("{}: {e}; nothing was changed", file.display())))?;
    Ok((bytes, snapshot))
}

fn snapshot_status(file: &Path) -> Result<(), CliError> {
    let (bytes, snapshot) = read_snapshot(file)?;
    println!(
        "{}: revision {}, {} keys, {} bytes, sha256 {}",
        file.display(),
        snapshot.revision,
        snapshot.kvs.len(),
        bytes.len(),
        Snapshot::checksum(&bytes).unwrap_or_default()
    );
    Ok(())
}

fn saved(file: &Path, snapshot: &Snapshot) {
    println!(
        "Snapshot saved at {}: {} keys at revision {}",
        file.display(),
        snapshot.kvs.len(),
        snapshot.revision
    );
}

fn restored(file: &Path, snapshot: &Snapshot, done: &Restored) {
    println!(
        "Restored {} keys from {} (a snapshot at revision {}): {} written, {} deleted, {} \
         unchanged; the store is at revision {}, its history compacted there (every watch \
         ended: clients list again)",
        snapshot.kvs.len(),
        file.display(),
        snapshot.revision,
        done.written,
        done.deleted,
        done.unchanged,
        done.revision
    );
}

/// `revision R, K keys`, then for etcd the quorum and a line per member.
fn print_status(status: &StoreStatus, keys: Option<usize>) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    let revision = status.revision.map_or_else(
        || "revision unknown".to_owned(),
        |r| format!("revision {r}"),
    );
    match keys {
        Some(keys) => writeln!(out, "{revision}, {keys} keys")?,
        None => writeln!(out, "{revision}")?,
    }
    if let Some(words) = status.quorum_words() {
        writeln!(out, "{words}")?;
        let rows: Vec<[String; 5]> = status
            .members
            .iter()
            .map(|m: &MemberStatus| {
                [
                    m.name.clone(),
                    m.endpoint.clone(),
                    if m.up { "up" } else { "down" }.to_owned(),
                    if m.up {
                        m.leader.to_string()
                    } else {
                        "-".into()
                    },
                    match (&m.revision, &m.error) {
                        (Some(r), _) => r.to_string(),
                        (None, Some(e)) => format!("- ({e})"),
                        (None, None) => "-".into(),
                    },
                ]
            })
            .collect();
        let header = ["MEMBER", "ENDPOINT", "STATUS", "LEADER", "REVISION"];
        write!(out, "{}", super::table(header, &rows))?;
    }
    Ok(())
}

/// The store commands on a store opened here.
async fn run_direct(store: Arc<dyn Store>, command: StoreCommand) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match command {
        StoreCommand::Get { key, revisions } => {
            let kv = store.get(&key).await?.ok_or(CliError::KeyNotFound(key))?;
            if revisions {
                writeln!(
                    out,
                    "create_revision={} mod_revision={}",
                    kv.create_revision, kv.mod_revision
                )?;
            }
            out.write_all(&kv.value)?;
            writeln!(out)?;
        }
        StoreCommand::Put { key, value } => {
            let value = Bytes::from(value);
            let revision = match store.get(&key).await? {
                Some(kv) => store.update(&key, value, kv.mod_revision).await?,
                None => store.create(&key, value).await?,
            };
            writeln!(out, "revision {revision}")?;
        }
        StoreCommand::Del { key, prefix: false } => {
            let kv = store
                .get(&key)
                .await?
                .ok_or_else(|| CliError::KeyNotFound(key.clone()))?;
            let revision = store.delete(&key, kv.mod_revision).await?;
            writeln!(out, "revision {revision}")?;
        }
        StoreCommand::Del { key, prefix: true } => {
            let mut deleted = Vec::new();
            let mut revision = None;
            for kv in store.range(&RangeRequest::prefix(key)).await?.kvs {
                match store.delete(&kv.key, kv.mod_revision).await {
                    Ok(at) => {
                        revision = Some(at);
                        deleted.push(kv.key);
                    }
                    Err(store::Error::NotFound { .. } | store::Error::Conflict { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            print_deleted(&mut out, &deleted, revision)?;
        }
        StoreCommand::Ls {
            prefix,
            limit,
            revision,
            values,
        } => {
            let request = RangeRequest {
                prefix,
                start_after: None,
                limit,
                at_revision: revision,
            };
            let result = store.range(&request).await?;
            let kvs: Vec<(String, Revision, Option<Vec<u8>>)> = result
                .kvs
                .into_iter()
                .map(|kv| (kv.key, kv.mod_revision, values.then(|| kv.value.to_vec())))
                .collect();
            print_keys(&mut out, &kvs, result.revision, result.more)?;
        }
        StoreCommand::Watch { prefix, from } => {
            drop(out);
            let mut events = store.watch(&prefix, from).await?;
            while let Some(event) = events.next().await {
                let line = match event? {
                    Event::Put { kv, prev } => format!(
                        "{} PUT {} {}{}",
                        kv.mod_revision,
                        kv.key,
                        String::from_utf8_lossy(&kv.value),
                        if prev.is_some() { "" } else { " (created)" }
                    ),
                    Event::Delete { key, revision, .. } => format!("{revision} DELETE {key}"),
                };
                let mut out = std::io::stdout().lock();
                writeln!(out, "{line}")?;
                out.flush()?;
            }
        }
        StoreCommand::Compact { revision } => {
            store.compact(revision).await?;
            writeln!(out, "compacted to revision {revision}")?;
        }
        StoreCommand::Status => {
            drop(out);
            let status = store.status().await?;
            let keys = if status.quorum() == Some(false) {
                None
            } else {
                Some(store.range(&RangeRequest::prefix("")).await?.kvs.len())
            };
            print_status(&status, keys)?;
        }
        StoreCommand::Fill {
            prefix,
            count,
            writers,
            value_size,
        } => {
            drop(out);
            fill(store, &prefix, count, writers.max(1), value_size).await?;
        }
        StoreCommand::Snapshot(SnapshotCommand::Save { file }) => {
            drop(out);
            let snapshot = snapshot::take(&*store).await?;
            write_private(&file, &snapshot.encode())?;
            saved(&file, &snapshot);
        }
        StoreCommand::Snapshot(SnapshotCommand::Restore { file }) => {
            drop(out);
            let (_, snapshot) = read_snapshot(&file)?;
            let done = store.restore(&snapshot.kvs).await?;
            restored(&file, &snapshot, &done);
        }
        StoreCommand::Snapshot(SnapshotCommand::Status { file }) => {
            drop(out);
            snapshot_status(&file)?;
        }
    }
    Ok(())
}

fn print_deleted(
    out: &mut impl Write,
    deleted: &[String],
    revision: Option<Revision>,
) -> std::io::Result<()> {
    for key in deleted {
        writeln!(out, "{key}")?;
    }
    match revision {
        Some(revision) => writeln!(out, "# {} keys deleted, revision {revision}", deleted.len()),
        None => writeln!(out, "# no keys deleted"),
    }
}

fn print_keys(
    out: &mut impl Write,
    kvs: &[(String, Revision, Option<Vec<u8>>)],
    revision: Revision,
    more: bool,
) -> std::io::Result<()> {
    for (key, mod_revision, value) in kvs {
        writeln!(out, "{key}\tmod_revision={mod_revision}")?;
        if let Some(value) = value {
            out.write_all(value)?;
            writeln!(out)?;
        }
    }
    let more = if more { " (more keys follow)" } else { "" };
    writeln!(out, "# {} keys at revision {revision}{more}", kvs.len())
}

/// Creates `count` keys from `writers` concurrent tasks, printing each acknowledged one.
async fn fill(
    store: Arc<dyn Store>,
    prefix: &str,
    count: usize,
    writers: usize,
    value_size: usize,
) -> Result<(), CliError> {
    let value = Bytes::from(vec![b'v'; value_size]);
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..writers {
        let (store, value) = (store.clone(), value.clone());
        let keys: Vec<String> = (writer..count)
            .step_by(writers)
            .map(|i| format!("{prefix}{i:08}"))
            .collect();
        tasks.spawn(async move {
            for key in keys {
                let revision = store.create(&key, value.clone()).await?;
                // One line per acknowledged write, flushed at once (stdout is line-buffered).
                println!("{key} {revision}");
            }
            Ok::<_, store::Error>(())
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.map_err(|e| CliError::Task(e.to_string()))??;
    }
    Ok(())
}

/// The store commands through a running cluster's API server process.
struct Remote<'a> {
    state_dir: &'a Path,
}

fn encoded(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn value_of(kv: &Value) -> Result<Vec<u8>, CliError> {
    base64::engine::general_purpose::STANDARD
        .decode(kv["value"].as_str().unwrap_or_default())
        .map_err(|e| CliError::Usage(format!("the cluster sent a value that is not base64: {e}")))
}

impl Remote<'_> {
    async fn call(
        &self,
        method: http::Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<Vec<u8>, CliError> {
        Ok(crate::cluster::request(self.state_dir, method, path, body).await?)
    }

    async fn json(
        &self,
        method: http::Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<Value, CliError> {
        let answer = self.call(method, path, body).await?;
        serde_json::from_slice(&answer)
            .map_err(|e| CliError::Usage(format!("the cluster's answer is not JSON: {e}")))
    }

    /// A key's JSON, or [`CliError::KeyNotFound`].
    async fn kv(&self, key: &str) -> Result<Value, CliError> {
        match self
            .json(
                http::Method::GET,
                &format!("store/kv?key={}", encoded(key)),
                Vec::new(),
            )
            .await
        {
            Err(CliError::Cluster(ClusterError::Refused { code: 404, .. })) => {
                Err(CliError::KeyNotFound(key.to_owned()))
            }
            other => other,
        }
    }

    async fn run(&self, command: StoreCommand) -> Result<(), CliError> {
        use http::Method;
        let number = |v: &Value| v.as_u64().unwrap_or_default();
        match command {
            StoreCommand::Get { key, revisions } => {
                let kv = self.kv(&key).await?;
                let value = value_of(&kv)?;
                let mut out = std::io::stdout().lock();
                if revisions {
                    writeln!(
                        out,
                        "create_revision={} mod_revision={}",
                        number(&kv["createRevision"]),
                        number(&kv["modRevision"])
                    )?;
                }
                out.write_all(&value)?;
                writeln!(out)?;
            }
            StoreCommand::Put { key, value } => {
                let path = format!("store/kv?key={}", encoded(&key));
                let answer = self.json(Method::PUT, &path, value.into_bytes()).await?;
                println!("revision {}", number(&answer["revision"]));
            }
            StoreCommand::Del { key, prefix } => {
                let path = format!("store/kv?key={}&prefix={prefix}", encoded(&key));
                let answer = match self.json(Method::DELETE, &path, Vec::new()).await {
                    Err(CliError::Cluster(ClusterError::Refused { code: 404, .. })) => {
                        return Err(CliError::KeyNotFound(key));
                    }
                    other => other?,
                };
                let revision = answer["revision"].as_u64();
                if prefix {
                    let deleted: Vec<String> = answer["deleted"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|k| k.as_str().map(str::to_owned))
                        .collect();
                    print_deleted(&mut std::io::stdout().lock(), &deleted, revision)?;
                } else {
                    match revision {
                        Some(revision) => println!("revision {revision}"),
                        // Changed or gone between the read and the delete.
                        None => return Err(CliError::KeyNotFound(key)),
                    }
                }
            }
            StoreCommand::Ls {
                prefix,
                limit,
                revision,
                values,
            } => {
                let mut path = format!("store/keys?prefix={}&values={values}", encoded(&prefix));
                if let Some(limit) = limit {
                    path.push_str(&format!("&limit={limit}"));
                }
                if let Some(revision) = revision {
                    path.push_str(&format!("&revision={revision}"));
                }
                let answer = self.json(Method::GET, &path, Vec::new()).await?;
                let mut kvs = Vec::new();
                for kv in answer["keys"].as_array().into_iter().flatten() {
                    let value = if values { Some(value_of(kv)?) } else { None };
                    kvs.push((
                        kv["key"].as_str().unwrap_or_default().to_owned(),
                        number(&kv["modRevision"]),
                        value,
                    ));
                }
                print_keys(
                    &mut std::io::stdout().lock(),
                    &kvs,
                    number(&answer["revision"]),
                    answer["more"].as_bool().unwrap_or(false),
                )?;
            }
            StoreCommand::Compact { revision } => {
                let path = format!("store/compact?revision={revision}");
                self.json(Method::POST, &path, Vec::new()).await?;
                println!("compacted to revision {revision}");
            }
            StoreCommand::Status => {
                let answer = self.json(Method::GET, "store", Vec::new()).await?;
                let status = StoreStatus {
                    backend: answer["backend"].as_str().unwrap_or_default().to_owned(),
                    revision: answer["revision"].as_u64(),
                    compacted: answer["compacted"].as_u64(),
                    members: serde_json::from_value(answer["members"].clone()).unwrap_or_default(),
                };
                let keys = answer["keys"].as_u64().map(|k| k as usize);
                print_status(&status, keys)?;
            }
            StoreCommand::Snapshot(SnapshotCommand::Save { file }) => {
                let bytes = self.call(Method::GET, "store/snapshot", Vec::new()).await?;
                let snapshot = Snapshot::decode(&bytes).map_err(|e| {
                    CliError::Usage(format!("the cluster sent a bad snapshot: {e}"))
                })?;
                write_private(&file, &bytes)?;
                saved(&file, &snapshot);
            }
            StoreCommand::Snapshot(SnapshotCommand::Restore { file }) => {
                let (bytes, snapshot) = read_snapshot(&file)?;
                let answer = self.json(Method::POST, "store/snapshot", bytes).await?;
                let done = Restored {
                    revision: number(&answer["revision"]),
                    written: number(&answer["written"]) as usize,
                    deleted: number(&answer["deleted"]) as usize,
                    unchanged: number(&answer["unchanged"]) as usize,
                };
                restored(&file, &snapshot, &done);
            }
            StoreCommand::Snapshot(SnapshotCommand::Status { file }) => snapshot_status(&file)?,
            StoreCommand::Watch { .. } | StoreCommand::Fill { .. } => {
                return Err(CliError::Usage(
                    "watch and fill open the store directly: stop the cluster first".into(),
                ));
            }
        }
        Ok(())
    }
}
