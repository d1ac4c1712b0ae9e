//! The etcd store: a real etcd through the `etcd-client` crate (`--store etcd=URL`, or the
//! members of `--store etcd-cluster=N`, [`cluster`]).
//!
//! Keys and values go to etcd as they are, so `etcdctl get --prefix /registry` shows the objects
//! exactly as it would for a real API server. Compare-and-swap is an etcd transaction comparing
//! the key's `mod_revision` (the way the real API server writes); watches ask for the previous
//! value so delete events carry it. Reads are etcd's default, linearizable (quorum) reads, as
//! kube-apiserver's are; a watch stays open without a quorum (it simply hears nothing).
//!
//! With several endpoints the client balances over them; a request that finds its member's
//! port closed (the request never left) is sent again, to another member. Every request is
//! bounded ([`REQUEST_TIMEOUT`]): without a quorum etcd answers `etcdserver: request timed
//! out` after its own 7 s, and the error ([`Error::Unavailable`]) says why from the members'
//! states (`no quorum: 1 of 3 members up`), which [`EtcdStore::status`] reads from each member
//! on its own. [`LocalEtcd`] starts a private etcd on 127.0.0.1 for tests and for `orrery bench
//! store`.

pub mod cluster;

use std::collections::VecDeque;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType,
    GetOptions, KvClient, PutOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use futures::StreamExt;

use super::{
    Error, Event, KeyValue, MemberStatus, RangeRequest, RangeResult, Restored, Result, Revision,
    Store, StoreStatus, WatchStream, check_value_size, prefix_end,
};

/// Large enough for a page of 1.5 MiB values; tonic's default (4 MiB) is not.
const MAX_MESSAGE_BYTES: usize = 256 << 20;
/// The longest any one request may take. Without a quorum etcd answers a write after its own
/// request timeout (5 s + two election timeouts: 7 s by default) and a quorum read after one or
/// two of them (a read waits for the read batch before it), so this is only reached when a
/// member does not answer at all.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// How long each member gets to answer a health probe.
const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);
/// How long a health probe's answer is reused to explain failures (many requests fail at once
/// when the quorum is lost; one probe explains them all).
const PROBE_REUSE: Duration = Duration::from_secs(1);
/// How many times a restore reads and writes again when another writer got in between.
const RESTORE_ATTEMPTS: usize = 5;
/// gRPC's status codes that matter here (`tonic::Code` as numbers).
const GRPC_UNKNOWN: i32 = 2;
const GRPC_DEADLINE_EXCEEDED: i32 = 4;
const GRPC_UNAVAILABLE: i32 = 14;

/// A real etcd, reached through `etcd-client`.
pub struct EtcdStore {
    client: Client,
    kv: KvClient,
    endpoint: String,
    endpoints: Vec<String>,
    /// One client per configured endpoint, each reaching only its member: health probes.
    members: Vec<(String, Client)>,
    /// Bumped by a restore: every watch opened before ends.
    restores: tokio::sync::watch::Sender<u64>,
    /// The last health probe, to explain failures without probing for each.
    probed: Mutex<Option<(Instant, Vec<MemberStatus>)>>,
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

/// Whether the request failed before it was sent: its member's port is closed. It is then safe
/// to send it again, to another member.
fn never_sent(error: &etcd_client::Error) -> bool {
    match error {
        etcd_client::Error::GRpcStatus(status) => {
            i32::from(status.code()) == GRPC_UNAVAILABLE
                && (status.message().contains("tcp connect error")
                    || status.message().contains("error trying to connect"))
        }
        _ => false,
    }
}

/// An error in few words: what a member said, or that its port is closed.
fn short(error: &etcd_client::Error) -> String {
    match error {
        _ if never_sent(error) => "connection refused".to_owned(),
        etcd_client::Error::GRpcStatus(status) => status.message().to_owned(),
        other => other.to_string(),
    }
}

/// etcd's words when it cannot serve: no leader, no quorum, or a member gone.
fn unavailable(error: &etcd_client::Error) -> Option<String> {
    match error {
        etcd_client::Error::GRpcStatus(status) => match i32::from(status.code()) {
            GRPC_UNAVAILABLE | GRPC_DEADLINE_EXCEEDED => Some(status.message().to_owned()),
            // etcd 3.4 sends a proposal's expired context as Unknown.
            GRPC_UNKNOWN if status.message().contains("deadline exceeded") => {
                Some(status.message().to_owned())
            }
            _ => None,
        },
        etcd_client::Error::TransportError(e) => Some(e.to_string()),
        _ => None,
    }
}

fn connect_options() -> ConnectOptions {
    ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
}

impl EtcdStore {
    /// Connects to etcd at `endpoints` and checks that one of them answers.
    pub async fn connect(endpoints: &[String]) -> Result<Self> {
        let store = Self::connect_lazy(endpoints).await?;
        let mut answered = Err(String::new());
        for (endpoint, client) in &store.members {
            match tokio::time::timeout(REQUEST_TIMEOUT, client.maintenance_client().status()).await
            {
                Ok(Ok(_)) => {
                    answered = Ok(());
                    break;
                }
                Ok(Err(e)) => answered = Err(format!("{endpoint}: {e}")),
                Err(_) => answered = Err(format!("{endpoint}: no answer")),
            }
        }
        answered.map_err(|message| Error::Etcd {
            endpoint: store.endpoint.clone(),
            message,
        })?;
        Ok(store)
    }

    /// A store over `endpoints` that connects on its first request.
    pub(crate) async fn connect_lazy(endpoints: &[String]) -> Result<Self> {
        let endpoint = endpoints.join(",");
        let failed = |e: etcd_client::Error| Error::Etcd {
            endpoint: endpoint.clone(),
            message: e.to_string(),
        };
        // `connect` builds its channels without dialling (it only dials for a user's token).
        let client = Client::connect(endpoints, Some(connect_options()))
            .await
            .map_err(failed)?;
        let mut members = Vec::new();
        for e in endpoints {
            let member = Client::connect(std::slice::from_ref(e), Some(connect_options()))
                .await
                .map_err(failed)?;
            members.push((e.clone(), member));
        }
        let kv = client
            .kv_client()
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        Ok(EtcdStore {
            client,
            kv,
            endpoint: endpoint.clone(),
            endpoints: endpoints.to_vec(),
            members,
            restores: tokio::sync::watch::Sender::new(0),
            probed: Mutex::new(None),
        })
    }

    /// A quorum read of nothing: whether the cluster serves.
    pub(crate) async fn quorum_read(&self) -> Result<()> {
        self.current_revision().await.map(|_| ())
    }

    /// Runs `op` on the balanced client, bounded by [`REQUEST_TIMEOUT`], sending it again (to
    /// another member) while it fails before being sent; failures in our words.
    async fn call<T, F, Fut>(&self, key: &str, size: usize, op: F) -> Result<T>
    where
        F: Fn(KvClient) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let attempts = 3 * self.endpoints.len().max(1);
        let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
        let mut last = None;
        for _ in 0..attempts {
            match tokio::time::timeout_at(deadline, op(self.kv.clone())).await {
                Err(_) => {
                    let message =
                        format!("no answer from etcd within {} s", REQUEST_TIMEOUT.as_secs());
                    return Err(self.unavailable(message).await);
                }
                Ok(Ok(answer)) => return Ok(answer),
                Ok(Err(error)) if never_sent(&error) => last = Some(error),
                Ok(Err(error)) => return Err(self.error(key, size, error).await),
            }
        }
        match last {
            Some(error) => Err(self.error(key, size, error).await),
            None => Err(self.unavailable("no etcd endpoint".into()).await),
        }
    }

    /// [`Error::Unavailable`] with etcd's `message`, and why when the members' states say.
    async fn unavailable(&self, message: String) -> Error {
        let members = self.probe_cached().await;
        let status = StoreStatus {
            backend: "etcd".into(),
            members,
            ..StoreStatus::default()
        };
        let why = match status.quorum() {
            Some(false) => status.quorum_words(),
            _ => None,
        };
        Error::Unavailable {
            endpoint: self.endpoint.clone(),
            message,
            why,
        }
    }

    /// Turns etcd's errors into ours, recognising the ones the API server handles.
    async fn error(&self, key: &str, size: usize, error: etcd_client::Error) -> Error {
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
        if let Some(said) = unavailable(&error) {
            return self.unavailable(said).await;
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
            .call(key, size, |mut kv| {
                let txn = txn.clone();
                async move { kv.txn(txn).await }
            })
            .await?;
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

    /// Asks every member how it is, each on its own connection: the members etcd lists (names
    /// and client URLs from the first member that answers), else the configured endpoints.
    pub async fn probe(&self) -> Vec<MemberStatus> {
        let statuses = futures::future::join_all(self.members.iter().map(|(endpoint, client)| {
            let mut maintenance = client.maintenance_client();
            async move {
                let answer = tokio::time::timeout(PROBE_TIMEOUT, maintenance.status()).await;
                let answer = match answer {
                    Ok(Ok(status)) => Ok(status),
                    Ok(Err(e)) => Err(short(&e)),
                    Err(_) => Err(format!("no answer within {} ms", PROBE_TIMEOUT.as_millis())),
                };
                (endpoint.clone(), answer)
            }
        }))
        .await;
        // The membership, from a member that answered.
        let mut listed = Vec::new();
        for ((_, client), (_, answer)) in self.members.iter().zip(&statuses) {
            if answer.is_ok() {
                let mut cluster = client.cluster_client();
                if let Ok(Ok(list)) =
                    tokio::time::timeout(PROBE_TIMEOUT, cluster.member_list()).await
                {
                    listed = list
                        .members()
                        .iter()
                        .map(|m| {
                            (
                                m.id(),
                                m.name().to_owned(),
                                m.client_urls().first().cloned().unwrap_or_default(),
                            )
                        })
                        .collect();
                    break;
                }
            }
        }
        let mut members: Vec<MemberStatus> = statuses
            .iter()
            .map(|(endpoint, answer)| {
                let id = answer
                    .as_ref()
                    .ok()
                    .and_then(|s| s.header().map(|h| h.member_id()));
                let name = listed
                    .iter()
                    .find(|(listed_id, _, url)| Some(*listed_id) == id || url == endpoint)
                    .map_or_else(|| endpoint.clone(), |(_, name, _)| name.clone());
                match answer {
                    Ok(status) => MemberStatus {
                        name,
                        endpoint: endpoint.clone(),
                        up: true,
                        leader: id.is_some_and(|id| id == status.leader()),
                        revision: status.header().map(|h| rev(h.revision())),
                        error: None,
                    },
                    Err(error) => MemberStatus {
                        name,
                        endpoint: endpoint.clone(),
                        up: false,
                        leader: false,
                        revision: None,
                        error: Some(error.clone()),
                    },
                }
            })
            .collect();
        // Members etcd lists that no configured endpoint reaches are members too (down for all
        // this store can tell): a quorum is counted over the whole membership.
        for (_, name, url) in &listed {
            if !members
                .iter()
                .any(|m| &m.endpoint == url || &m.name == name)
            {
                members.push(MemberStatus {
                    name: name.clone(),
                    endpoint: url.clone(),
                    up: false,
                    leader: false,
                    revision: None,
                    error: Some("not among this store's endpoints".into()),
                });
            }
        }
        members.sort_by(|a, b| a.name.cmp(&b.name));
        *self.probed.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((Instant::now(), members.clone()));
        members
    }

    /// The last probe if it is recent, else a new one.
    async fn probe_cached(&self) -> Vec<MemberStatus> {
        if let Some((at, members)) = &*self.probed.lock().unwrap_or_else(|p| p.into_inner())
            && at.elapsed() < PROBE_REUSE
        {
            return members.clone();
        }
        self.probe().await
    }

    /// Every key at one revision, in pages: what a restore compares the snapshot with.
    async fn all_keys(&self) -> Result<(Revision, Vec<KeyValue>)> {
        let mut request = RangeRequest {
            limit: Some(1000),
            ..RangeRequest::default()
        };
        let mut kvs = Vec::new();
        loop {
            let page = self.range(&request).await?;
            request.at_revision = Some(page.revision);
            request.start_after = page.kvs.last().map(|kv| kv.key.clone());
            kvs.extend(page.kvs);
            if !page.more || request.start_after.is_none() {
                return Ok((request.at_revision.unwrap_or_default(), kvs));
            }
        }
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let response = self
            .call(key, 0, |mut kv| async move { kv.get(key, None).await })
            .await?;
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
        let response = self
            .call(&request.prefix, 0, |mut kv| {
                let (key, options) = (key.clone(), options.clone());
                async move { kv.get(key, Some(options)).await }
            })
            .await
            .map_err(|e| match e {
                Error::Compacted { .. } => Error::Compacted {
                    requested: request.at_revision.unwrap_or(0),
                    compacted: None,
                },
                other => other,
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
            .call(key, size, |mut kv| {
                let txn = txn.clone();
                async move { kv.txn(txn).await }
            })
            .await?;
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
        // Subscribed before the watch exists: a restore from now on ends it.
        let restored = self.restores.subscribe();
        let attempts = 3 * self.endpoints.len().max(1);
        let mut opened = None;
        for _ in 0..attempts {
            let mut client = self
                .client
                .watch_client()
                .max_decoding_message_size(MAX_MESSAGE_BYTES);
            let watch = client.watch(key.clone(), Some(options.clone()));
            match tokio::time::timeout(REQUEST_TIMEOUT, watch).await {
                Err(_) => {
                    return Err(self
                        .unavailable(format!(
                            "no answer from etcd within {} s",
                            REQUEST_TIMEOUT.as_secs()
                        ))
                        .await);
                }
                Ok(Ok(stream)) => {
                    opened = Some(Ok(stream));
                    break;
                }
                Ok(Err(error)) if never_sent(&error) => opened = Some(Err(error)),
                Ok(Err(error)) => return Err(self.error(prefix, 0, error).await),
            }
        }
        let mut stream = match opened {
            Some(Ok(stream)) => stream,
            Some(Err(error)) => return Err(self.error(prefix, 0, error).await),
            None => return Err(self.unavailable("no etcd endpoint".into()).await),
        };
        // The first answer says whether the watch was created or refused (compacted).
        let first = match tokio::time::timeout(REQUEST_TIMEOUT, stream.message()).await {
            Ok(Ok(first)) => first,
            Ok(Err(error)) => return Err(self.error(prefix, 0, error).await),
            Err(_) => {
                return Err(self
                    .unavailable("the watch was not confirmed in time".into())
                    .await);
            }
        };
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
        let next = pending
            .back()
            .map_or(from_revision, |e: &Event| e.revision() + 1);
        let state = (
            stream,
            pending.into_iter().map(Ok).collect::<VecDeque<_>>(),
            false,
            next,
        );
        Ok(futures::stream::unfold(
            state,
            move |(mut stream, mut pending, mut done, mut next)| {
                let endpoint = endpoint.clone();
                let mut restored = restored.clone();
                async move {
                    loop {
                        if let Some(item) = pending.pop_front() {
                            if let Ok(event) = &item {
                                next = event.revision() + 1;
                            }
                            return Some((item, (stream, pending, done, next)));
                        }
                        if done {
                            return None;
                        }
                        let message = tokio::select! {
                            biased;
                            _ = restored.changed() => {
                                // Restored since: what was in between is never delivered.
                                done = true;
                                pending.push_back(Err(Error::Compacted {
                                    requested: next,
                                    compacted: None,
                                }));
                                continue;
                            }
                            message = stream.message() => message,
                        };
                        match message {
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
            },
        )
        .boxed())
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let result = self
            .call("", 0, |mut kv| async move {
                let options = CompactionOptions::new().with_physical();
                kv.compact(etcd_rev(revision), Some(options)).await
            })
            .await;
        match result {
            Ok(_) => Ok(()),
            // Compacting to a revision already compacted does nothing, as in the trait.
            Err(Error::Compacted { .. }) => Ok(()),
            Err(Error::Etcd { message, .. }) if message.contains("future revision") => {
                let current = self.current_revision().await?;
                Err(Error::FutureRevision {
                    requested: revision,
                    current,
                })
            }
            Err(other) => Err(other),
        }
    }

    async fn current_revision(&self) -> Result<Revision> {
        let response = self
            .call("", 0, |mut kv| async move {
                kv.get("/", Some(GetOptions::new().with_count_only())).await
            })
            .await?;
        Ok(rev(response.header().map_or(0, |h| h.revision())))
    }

    /// One transaction: puts of the keys whose value differs and deletes of the keys not in
    /// `kvs`, guarded by a comparison over the whole key space that nothing was written since
    /// the keys were read (read and tried again otherwise, a few times); then history is
    /// compacted at the transaction's revision. The watches this store serves end first, before
    /// anything changes. One transaction is bounded by the members' `--max-txn-ops` and
    /// `--max-request-bytes` (which `etcd-cluster` members raise, see [`cluster`]); a restore
    /// that does not fit is refused whole.
    async fn restore(&self, kvs: &[(String, Bytes)]) -> Result<Restored> {
        for (key, value) in kvs {
            check_value_size(key, value)?;
        }
        self.restores.send_modify(|n| *n += 1);
        for _ in 0..RESTORE_ATTEMPTS {
            let (at, current) = self.all_keys().await?;
            let mut done = Restored::default();
            let mut ops = Vec::new();
            let wanted: std::collections::HashMap<&str, &Bytes> =
                kvs.iter().map(|(k, v)| (k.as_str(), v)).collect();
            for kv in &current {
                if !wanted.contains_key(kv.key.as_str()) {
                    ops.push(TxnOp::delete(kv.key.as_str(), None));
                    done.deleted += 1;
                }
            }
            let now: std::collections::HashMap<&str, &Bytes> = current
                .iter()
                .map(|kv| (kv.key.as_str(), &kv.value))
                .collect();
            for (key, value) in kvs {
                if now.get(key.as_str()) == Some(&value) {
                    done.unchanged += 1;
                } else {
                    ops.push(TxnOp::put(key.as_str(), value.to_vec(), None));
                    done.written += 1;
                }
            }
            let revision = if ops.is_empty() {
                at
            } else {
                let unchanged_since =
                    Compare::mod_revision(vec![0], CompareOp::Less, etcd_rev(at + 1))
                        .with_range(vec![0]);
                let txn = Txn::new().when([unchanged_since]).and_then(ops);
                let response = self
                    .call("", 0, |mut kv| {
                        let txn = txn.clone();
                        async move { kv.txn(txn).await }
                    })
                    .await
                    .map_err(|e| match e {
                        Error::Etcd { endpoint, message } if message.contains("too many operations") => Error::Etcd {
                            endpoint,
                            message: format!(
                                "{message}: the restore writes {} keys in one transaction, more \
                                 than the members' --max-txn-ops",
                                done.written + done.deleted
                            ),
                        },
                        other => other,
                    })?;
                if !response.succeeded() {
                    // Written in between: read again.
                    continue;
                }
                rev(response.header().map_or(0, |h| h.revision()))
            };
            self.compact(revision).await?;
            done.revision = revision;
            return Ok(done);
        }
        Err(Error::Etcd {
            endpoint: self.endpoint.clone(),
            message: format!(
                "the store kept changing while it was restored ({RESTORE_ATTEMPTS} attempts): \
                 stop what writes to it and try again"
            ),
        })
    }

    async fn status(&self) -> Result<StoreStatus> {
        let members = self.probe().await;
        let revision = members
            .iter()
            .find(|m| m.up && m.leader)
            .or_else(|| members.iter().find(|m| m.up))
            .and_then(|m| m.revision);
        Ok(StoreStatus {
            backend: "etcd".into(),
            revision,
            compacted: None,
            members,
        })
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
/// temporary data directory, and killed when dropped: a one-member [`cluster::MemberSpec`].
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
        std::process::Command::new("etcd")
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
        let spec = cluster::MemberSpec {
            name: "orrery-local".into(),
            client_port: free_port().map_err(|e| failed(e.to_string()))?,
            peer_port: free_port().map_err(|e| failed(e.to_string()))?,
            data_dir: data.path().to_owned(),
        };
        let child = spec
            .command(
                &cluster::initial_cluster(std::slice::from_ref(&spec)),
                cluster::ClusterState::New,
                "orrery-local",
            )
            .args(["--log-level", "error"])
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
            endpoint: spec.client_url(),
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
