//! The election record kept in a coordination.k8s.io Lease (client-go's `resourcelock.LeaseLock`):
//! [`Record`] is what a candidate reads of the Lease's spec and writes back, [`LeaseLock`] gets,
//! creates and updates the one Lease through the API (an update carries the resourceVersion last
//! seen, so of two candidates updating the same record only one succeeds) and records the
//! `LeaderElection` Events about it.

use std::future::Future;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, PostParams};

/// The election record (`LeaderElectionRecord`), as a Lease's spec holds it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// Who holds the lease (`holderIdentity`); empty: no one, anyone may take it.
    pub holder_identity: String,
    /// How long the holder holds it without renewing (`leaseDurationSeconds`).
    pub lease_duration_seconds: i32,
    /// When the holder acquired it (`acquireTime`).
    pub acquire_time: Option<jiff::Timestamp>,
    /// When the holder last renewed it (`renewTime`).
    pub renew_time: Option<jiff::Timestamp>,
    /// How many times it changed hands (`leaseTransitions`).
    pub leader_transitions: i32,
}

/// What a candidate compares to see whether a record changed (client-go compares the JSON of
/// the record, whose times are `metav1.Time`: whole seconds).
pub(super) type Raw = (String, i32, Option<i64>, Option<i64>, i32);

impl Record {
    /// The record a Lease's spec holds (`LeaseSpecToLeaderElectionRecord`).
    pub fn of(spec: &LeaseSpec) -> Record {
        Record {
            holder_identity: spec.holder_identity.clone().unwrap_or_default(),
            lease_duration_seconds: spec.lease_duration_seconds.unwrap_or_default(),
            acquire_time: spec.acquire_time.as_ref().map(|t| t.0),
            renew_time: spec.renew_time.as_ref().map(|t| t.0),
            leader_transitions: spec.lease_transitions.unwrap_or_default(),
        }
    }

    /// The Lease spec holding this record (`LeaderElectionRecordToLeaseSpec`): every field
    /// set, the holder even when empty.
    pub fn spec(&self) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.holder_identity.clone()),
            lease_duration_seconds: Some(self.lease_duration_seconds),
            acquire_time: self.acquire_time.map(MicroTime),
            renew_time: self.renew_time.map(MicroTime),
            lease_transitions: Some(self.leader_transitions),
            ..LeaseSpec::default()
        }
    }

    pub(super) fn raw(&self) -> Raw {
        (
            self.holder_identity.clone(),
            self.lease_duration_seconds,
            self.acquire_time.map(|t| t.as_second()),
            self.renew_time.map(|t| t.as_second()),
            self.leader_transitions,
        )
    }
}

/// What went wrong with the Lease.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// The API server refused or failed the request.
    #[error(transparent)]
    Api(#[from] kube::Error),
    /// An update before any get or create.
    #[error("lease not initialized, call get or create first")]
    NotInitialized,
    /// The API server did not answer in time.
    #[error("the request timed out after {0:?}")]
    Timeout(std::time::Duration),
}

impl LockError {
    /// Whether the Lease does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, LockError::Api(kube::Error::Api(status)) if status.code == 404)
    }

    /// Whether the Lease changed since it was last seen (409).
    pub fn is_conflict(&self) -> bool {
        matches!(self, LockError::Api(kube::Error::Api(status)) if status.code == 409)
    }
}

/// One Lease as a lock (`resourcelock.LeaseLock`), with the Lease as last read or written.
pub struct LeaseLock {
    client: kube::Client,
    namespace: String,
    name: String,
    identity: String,
    /// The component the Events say recorded them (`default-scheduler`).
    event_source: String,
    /// How long one request may take.
    timeout: std::time::Duration,
    lease: Option<Lease>,
}

impl LeaseLock {
    /// The lock `namespace/name` for candidate `identity`, through `client`, each request
    /// given up after half the renew deadline (at least a second), as client-go's
    /// `NewFromKubeconfig` sets its client's timeout.
    pub fn new(
        client: kube::Client,
        (namespace, name): (&str, &str),
        identity: &str,
        event_source: &str,
        renew_deadline: std::time::Duration,
    ) -> Self {
        LeaseLock {
            client,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            identity: identity.to_owned(),
            event_source: event_source.to_owned(),
            timeout: (renew_deadline / 2).max(std::time::Duration::from_secs(1)),
            lease: None,
        }
    }

    fn api(&self) -> Api<Lease> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    async fn timed<T>(
        &self,
        request: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, LockError> {
        match tokio::time::timeout(self.timeout, request).await {
            Ok(answer) => Ok(answer?),
            Err(_) => Err(LockError::Timeout(self.timeout)),
        }
    }

    /// Reads the Lease's record.
    pub async fn get(&mut self) -> Result<Record, LockError> {
        let lease = self.timed(self.api().get(&self.name)).await?;
        let record = Record::of(&lease.spec.clone().unwrap_or_default());
        self.lease = Some(lease);
        Ok(record)
    }

    /// Creates the Lease holding `record`.
    pub async fn create(&mut self, record: &Record) -> Result<(), LockError> {
        let mut lease = Lease::default();
        lease.metadata.name = Some(self.name.clone());
        lease.metadata.namespace = Some(self.namespace.clone());
        lease.spec = Some(record.spec());
        let created = self
            .timed(self.api().create(&PostParams::default(), &lease))
            .await?;
        self.lease = Some(created);
        Ok(())
    }

    /// Writes `record` over the Lease as last seen (a PUT with its resourceVersion: refused
    /// with 409 if anyone wrote it since).
    pub async fn update(&mut self, record: &Record) -> Result<(), LockError> {
        let Some(mut lease) = self.lease.clone() else {
            return Err(LockError::NotInitialized);
        };
        lease.spec = Some(record.spec());
        let written = self
            .timed(
                self.api()
                    .replace(&self.name, &PostParams::default(), &lease),
            )
            .await?;
        self.lease = Some(written);
        Ok(())
    }

    /// Records a Normal `LeaderElection` Event about the Lease, `<identity> <what>`
    /// (`... became leader`), as client-go's `LeaseLock.RecordEvent` does; in the background, as
    /// an event recorder sends them (the task is returned, for a caller about to stop to wait).
    pub fn record_event(&self, what: &str) -> Option<tokio::task::JoinHandle<()>> {
        let Some(lease) = &self.lease else {
            return None;
        };
        let uid = lease.metadata.uid.clone().unwrap_or_default();
        let (client, namespace, name) = (
            self.client.clone(),
            self.namespace.clone(),
            self.name.clone(),
        );
        let (source, message) = (
            self.event_source.clone(),
            format!("{} {what}", self.identity),
        );
        Some(tokio::spawn(async move {
            let about = crate::events::Involved {
                kind: "Lease",
                namespace: &namespace,
                name: &name,
                uid: &uid,
            };
            let source = crate::events::Source {
                component: &source,
                host: None,
                instance: None,
            };
            crate::events::record(
                &client,
                &about,
                &source,
                "Normal",
                "LeaderElection",
                &message,
            )
            .await;
        }))
    }

    /// `namespace/name`.
    pub fn describe(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}
