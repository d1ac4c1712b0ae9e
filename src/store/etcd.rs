//! The etcd store: a real etcd through the `etcd-client` crate (`--store etcd=URL`).
//!
//! Keys and values go to etcd as they are, so `etcdctl get --prefix /registry` shows the objects
//! exactly as it would for a real API server. Compare-and-swap is an etcd transaction comparing
//! the key's `mod_revision` (the way the real API server writes); watches ask for the previous
//! value so delete events carry it. [`LocalEtcd`] starts a private etcd on 127.0.0.1 for tests and
//! for `orrery bench store`.

use std::collections::VecDeque;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType,
    GetOptions, KvClient, PutOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use futures::StreamExt;

use super::{
    Error, Event, KeyValue, RangeRequest, RangeResult, Result, Revision, Store, WatchStream,
    check_value_size, prefix_end,
};

/// Large enough for a page of 1.5 MiB values; tonic's default (4 MiB) is not.
const MAX_MESSAGE_BYTES: usize = 256 << 20;

/// A real etcd, reached through `etcd-client`.
pub struct EtcdStore {
    client: Client,
    kv: KvClient,
    endpoint: String,
}

fn rev(revision: i64) -> Revision {
    u64::try_from(revision).unwrap_or(0)
}

fn etcd_rev(revision: Revision) -> i64 {
    i64::try_from(revision).unwrap_or(i64::MAX)
}

fn to_kv(kv: &etcd_client::KeyValue) -> KeyValue {
    KeyValue {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: Bytes::copy_from_slice(kv.value()),
        create_revision: rev(kv.create_revision()),
        mod_revision: rev(kv.mod_revision()),
    }
}

/// The `[key, range_end)` etcd range for every key under `prefix`.
fn prefix_range(prefix: &str) -> (Vec<u8>, Vec<u8>) {
    let key = if prefix.is_empty() {
        vec![0]
    } else {
        prefix.as_bytes().to_vec()
    };
    // "\0" as the range end means "every key from `key` on" in etcd.
    (
        key,
        prefix_end(prefix.as_bytes()).unwrap_or_else(|| vec![0]),
    )
}

impl EtcdStore {
    /// Connects to etcd at `endpoints` and checks that it answers.
    pub async fn connect(endpoints: &[String]) -> Result<Self> {
        let endpoint = endpoints.join(",");
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        let mut client = Client::connect(endpoints, Some(options))
            .await
            .map_err(|e| Error::Etcd {
                endpoint: endpoint.clone(),
                message: e.to_string(),
            })?;
        client.status().await.map_err(|e| Error::Etcd {
            endpoint: endpoint.clone(),
            message: e.to_string(),
        })?;
        let kv = client
            .kv_client()
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        Ok(EtcdStore {
            client,
            kv,
            endpoint,
        })
    }

    /// Turns etcd's errors into ours, recognising the ones the API server handles.
    fn error(&self, key: &str, size: usize, error: etcd_client::Error) -> Error {
        let message = error.to_string();
        if message.contains("required revision has been compacted") {
            return Error::Compacted {
                requested: 0,
                compacted: None,
            };
        }
        if message.contains("request is too large") {
            return Error::ValueTooLarge {
                key: key.to_owned(),
                size,
                limit: super::MAX_VALUE_BYTES,
            };
        }
        Error::Etcd {
            endpoint: self.endpoint.clone(),
            message,
        }
    }

    /// Runs a compare-and-swap transaction on `key`: `then` if its mod revision is `expected`,
    /// otherwise reads the key to say why not.
    async fn cas(
        &self,
        key: &str,
        size: usize,
        expected: Revision,
        then: TxnOp,
    ) -> Result<Revision> {
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key,
                CompareOp::Equal,
                etcd_rev(expected),
            )])
            .and_then([then])
            .or_else([TxnOp::get(key, None)]);
        let response = self
            .kv
            .clone()
            .txn(txn)
            .await
            .map_err(|e| self.error(key, size, e))?;
        let revision = rev(response.header().map_or(0, |h| h.revision()));
        if response.succeeded() {
            return Ok(revision);
        }
        let actual = response.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Get(get) => get.kvs().first().map(|kv| rev(kv.mod_revision())),
            _ => None,
        });
        Err(match actual {
            None => Error::NotFound {
                key: key.to_owned(),
            },
            Some(actual) => Error::Conflict {
                key: key.to_owned(),
                expected,
                actual,
            },
        })
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let response = self
            .kv
            .clone()
            .get(key, None)
            .await
            .map_err(|e| self.error(key, 0, e))?;
        Ok(response.kvs().first().map(to_kv))
    }

    async fn range(&self, request: &RangeRequest) -> Result<RangeResult> {
        let (mut key, end) = prefix_range(&request.prefix);
        if let Some(after) = &request.start_after
            && after.as_bytes() >= key.as_slice()
        {
            key = after.as_bytes().to_vec();
            key.push(0);
        }
        let mut options = GetOptions::new().with_range(end);
        if let Some(limit) = request.limit {
            // etcd treats 0 as "no limit".
            options = options.with_limit(i64::try_from(limit.max(1)).unwrap_or(i64::MAX));
        }
        if let Some(at) = request.at_revision {
            options = options.with_revision(etcd_rev(at));
        }
        let response = self.kv.clone().get(key, Some(options)).await.map_err(|e| {
            match self.error(&request.prefix, 0, e) {
                Error::Compacted { .. } => Error::Compacted {
                    requested: request.at_revision.unwrap_or(0),
                    compacted: None,
                },
                other => other,
            }
        })?;
        let current = rev(response.header().map_or(0, |h| h.revision()));
        let mut kvs: Vec<KeyValue> = response.kvs().iter().map(to_kv).collect();
        if request.limit == Some(0) {
            kvs.clear();
        }
        let more = response.more() || (request.limit == Some(0) && response.count() > 0);
        Ok(RangeResult {
            kvs,
            more,
            revision: request.at_revision.unwrap_or(current),
        })
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<Revision> {
        check_value_size(key, &value)?;
        let size = value.len();
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value.to_vec(), None)]);
        let response = self
            .kv
            .clone()
            .txn(txn)
            .await
            .map_err(|e| self.error(key, size, e))?;
        if !response.succeeded() {
            return Err(Error::AlreadyExists {
                key: key.to_owned(),
            });
        }
        Ok(rev(response.header().map_or(0, |h| h.revision())))
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<Revision> {
        check_value_size(key, &value)?;
        let size = value.len();
        self.cas(
            key,
            size,
            expected,
            TxnOp::put(key, value.to_vec(), Some(PutOptions::new())),
        )
        .await
    }

    async fn delete(&self, key: &str, expected: Revision) -> Result<Revision> {
        self.cas(
            key,
            0,
            expected,
            TxnOp::delete(key, Some(DeleteOptions::new())),
        )
        .await
    }

    async fn watch(&self, prefix: &str, from_revision: Revision) -> Result<WatchStream> {
        let (key, end) = prefix_range(prefix);
        let mut options = WatchOptions::new().with_range(end).with_prev_key();
        if from_revision > 0 {
            options = options.with_start_revision(etcd_rev(from_revision));
        }
        let mut stream = self
            .client
            .watch_client()
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .watch(key, Some(options))
            .await
            .map_err(|e| self.error(prefix, 0, e))?;
        // The first answer says whether the watch was created or refused (compacted).
        let first = stream
            .message()
            .await
            .map_err(|e| self.error(prefix, 0, e))?;
        let compacted = move |r: &etcd_client::WatchResponse| Error::Compacted {
            requested: from_revision,
            compacted: Some(rev(r.compact_revision())),
        };
        let mut pending = VecDeque::new();
        match first {
            None => {
                return Err(Error::Etcd {
                    endpoint: self.endpoint.clone(),
                    message: "watch stream closed".into(),
                });
            }
            Some(r) if r.compact_revision() > 0 => return Err(compacted(&r)),
            Some(r) if r.canceled() => {
                return Err(Error::Etcd {
                    endpoint: self.endpoint.clone(),
                    message: format!("watch canceled: {}", r.cancel_reason()),
                });
            }
            Some(r) => pending.extend(r.events().iter().map(to_event)),
        }
        let endpoint = self.endpoint.clone();
        let state = (
            stream,
            pending.into_iter().map(Ok).collect::<VecDeque<_>>(),
            false,
        );
        Ok(
            futures::stream::unfold(state, move |(mut stream, mut pending, mut done)| {
                let endpoint = endpoint.clone();
                async move {
                    loop {
                        if let Some(item) = pending.pop_front() {
                            return Some((item, (stream, pending, done)));
                        }
                        if done {
                            return None;
                        }
                        match stream.message().await {
                            Ok(Some(r)) if r.compact_revision() > 0 => {
                                done = true;
                                pending.push_back(Err(compacted(&r)));
                            }
                            Ok(Some(r)) if r.canceled() => {
                                done = true;
                                let message = format!("watch canceled: {}", r.cancel_reason());
                                pending.push_back(Err(Error::Etcd {
                                    endpoint: endpoint.clone(),
                                    message,
                                }));
                            }
                            Ok(Some(r)) => {
                                pending.extend(r.events().iter().map(|e| Ok(to_event(e))))
                            }
                            Ok(None) => {
                                done = true;
                                pending.push_back(Err(Error::Closed));
                            }
                            Err(e) => {
                                done = true;
                                let message = e.to_string();
                                pending.push_back(Err(Error::Etcd {
                                    endpoint: endpoint.clone(),
                                    message,
                                }));
                            }
                        }
                    }
                }
            })
            .boxed(),
        )
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let options = CompactionOptions::new().with_physical();
        match self
            .kv
            .clone()
            .compact(etcd_rev(revision), Some(options))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match self.error("", 0, e) {
                // Compacting to a revision already compacted does nothing, as in the trait.
                Error::Compacted { .. } => Ok(()),
                Error::Etcd { message, .. } if message.contains("future revision") => {
                    let current = self.current_revision().await?;
                    Err(Error::FutureRevision {
                        requested: revision,
                        current,
                    })
                }
                other => Err(other),
            },
        }
    }

    async fn current_revision(&self) -> Result<Revision> {
        let options = GetOptions::new().with_count_only();
        let response = self
            .kv
            .clone()
            .get("/", Some(options))
            .await
            .map_err(|e| self.error("", 0, e))?;
        Ok(rev(response.header().map_or(0, |h| h.revision())))
    }
}

fn to_event(event: &etcd_client::Event) -> Event {
    let kv = event.kv().map(to_kv).unwrap_or_else(|| KeyValue {
        key: String::new(),
        value: Bytes::new(),
        create_revision: 0,
        mod_revision: 0,
    });
    let prev = event.prev_kv().map(to_kv);
    match event.event_type() {
        EventType::Put => Event::Put { kv, prev },
        EventType::Delete => Event::Delete {
            revision: kv.mod_revision,
            prev: prev.unwrap_or_else(|| KeyValue {
                value: Bytes::new(),
                ..kv.clone()
            }),
            key: kv.key,
        },
    }
}

/// A private etcd on 127.0.0.1, started from the `etcd` binary (Debian's `etcd-server`) in a
/// temporary data directory, and killed when dropped.
pub struct LocalEtcd {
    child: Child,
    /// The client URL, such as `http://127.0.0.1:40123`.
    pub endpoint: String,
    _data: tempfile::TempDir,
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl LocalEtcd {
    /// Whether an `etcd` binary is on the PATH.
    pub fn available() -> bool {
        Command::new("etcd")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Starts etcd with its data under `parent` (a temporary directory inside it) and waits until
    /// it answers. It fsyncs every commit, as etcd always does.
    pub async fn start(parent: Option<&Path>) -> Result<Self> {
        let mut last_error = String::new();
        // A port picked as free can be taken before etcd binds it: try a few times.
        for _ in 0..5 {
            match Self::try_start(parent).await {
                Ok(local) => return Ok(local),
                Err(e) => last_error = e.to_string(),
            }
        }
        Err(Error::Etcd {
            endpoint: "local etcd".into(),
            message: last_error,
        })
    }

    async fn try_start(parent: Option<&Path>) -> Result<Self> {
        let failed = |message: String| Error::Etcd {
            endpoint: "local etcd".into(),
            message,
        };
        let data = match parent {
            Some(parent) => tempfile::tempdir_in(parent),
            None => tempfile::tempdir(),
        }
        .map_err(|e| failed(format!("cannot create a data directory: {e}")))?;
        let client = free_port().map_err(|e| failed(e.to_string()))?;
        let peer = free_port().map_err(|e| failed(e.to_string()))?;
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = Command::new("etcd")
            .args(["--name", "orrery-local", "--data-dir"])
            .arg(data.path())
            .args([
                "--listen-client-urls",
                &client_url,
                "--advertise-client-urls",
                &client_url,
            ])
            .args([
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
            ])
            .args(["--initial-cluster", &format!("orrery-local={peer_url}")])
            // Room for a 1.5 MiB value plus its key and the request's framing.
            .args(["--max-request-bytes", "2097152"])
            .args(["--logger", "zap", "--log-level", "error"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                failed(format!(
                    "cannot start `etcd` (apt-get install etcd-server): {e}"
                ))
            })?;
        // From here on, dropping `local` kills etcd.
        let mut local = LocalEtcd {
            child,
            endpoint: client_url,
            _data: data,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let error = match EtcdStore::connect(std::slice::from_ref(&local.endpoint)).await {
                Ok(_) => return Ok(local),
                Err(e) => e.to_string(),
            };
            if let Ok(Some(status)) = local.child.try_wait() {
                return Err(failed(format!("etcd exited with {status}")));
            }
            if tokio::time::Instant::now() > deadline {
                return Err(failed(format!("etcd did not answer within 15 s: {error}")));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for LocalEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
