//! A pod's status writes, as upstream's status manager makes them. A status goes to the API
//! server only when it changed, each write a `STATUS` hop (`kubelet/<node> -> apiserver`,
//! waiting at the stepper's gate when it changes the pod's phase). A write the API server did
//! not take is not dropped: the next write of the same status tries again, first reading the pod
//! back (as the status manager's `syncPod` does) so that a pod deleted or replaced under the same
//! name is never written to. A terminated pod's final status is written until the API server has
//! it, and only then is the pod deleted (grace period 0, with its UID as the precondition, as
//! `canBeDeleted` and the final `Delete` in `status_manager.go`).

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::Kubelet;
use crate::flow::FlowEvent;

/// The first wait before a failed write is tried again, doubled per failure up to
/// [`MAX_RETRY`] (upstream's status manager resyncs every 10 s).
const FIRST_RETRY: Duration = Duration::from_millis(200);
const MAX_RETRY: Duration = Duration::from_secs(10);

/// What became of a status write.
#[derive(Debug)]
pub(super) enum Written {
    /// The API server has this status now (it took the write, or already had it).
    Current,
    /// The API server did not take it (the error is logged); the next write tries again.
    Failed,
    /// The pod is gone from the API server, or a new pod has its name: nothing to write to.
    Gone,
}

/// The status writer of one pod (one per pod worker).
pub(super) struct StatusWriter {
    pods: Api<Pod>,
    namespace: String,
    name: String,
    uid: String,
    /// The phase the API server has, as far as this writer knows: a write that changes it is a
    /// step in step mode.
    phase: String,
    /// A digest of the status the API server last took from this writer (not the status
    /// itself: a worker per pod keeps it for as long as the pod runs).
    accepted: Option<u64>,
    /// The last write failed: read the pod back before the next one.
    failed: bool,
}

impl StatusWriter {
    /// A writer for `pod` as the API server has it now.
    pub(super) fn new(kubelet: &Kubelet, pod: &Pod) -> StatusWriter {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        StatusWriter {
            pods: Api::namespaced(kubelet.client.clone(), &namespace),
            namespace,
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            phase: phase_of(pod),
            accepted: None,
            failed: false,
        }
    }

    /// Whether the API server has `status` from this writer.
    pub(super) fn has(&self, status: &Value) -> bool {
        !self.failed && self.accepted == Some(digest(status))
    }

    /// Writes `status` unless the API server already has it from this writer.
    pub(super) async fn write(&mut self, kubelet: &Kubelet, status: &Value) -> Written {
        if self.has(status) {
            return Written::Current;
        }
        if self.failed {
            match self.pods.get_opt(&self.name).await {
                Ok(Some(pod)) if pod.metadata.uid.as_deref() == Some(self.uid.as_str()) => {
                    self.phase = phase_of(&pod);
                }
                Ok(_) => return Written::Gone,
                Err(error) => {
                    tracing::warn!(%error, pod = %self.name, "cannot read the pod back before writing its status");
                    return Written::Failed;
                }
            }
        }
        let phase = status["phase"].as_str().unwrap_or_default();
        Box::pin(announce(
            kubelet,
            (&self.namespace, &self.name, &self.uid),
            status,
            &self.phase,
        ))
        .await;
        let patch = Patch::Merge(json!({ "status": status }));
        match Box::pin(
            self.pods
                .patch_status(&self.name, &PatchParams::default(), &patch),
        )
        .await
        {
            Ok(_) => {
                self.accepted = Some(digest(status));
                self.phase = phase.to_owned();
                self.failed = false;
                Written::Current
            }
            Err(kube::Error::Api(e)) if e.code == 404 => Written::Gone,
            Err(error) => {
                tracing::warn!(%error, pod = %self.name, "pod status write failed; it will be retried");
                self.failed = true;
                Written::Failed
            }
        }
    }

    /// Writes `status` until the API server has it, waiting longer after each failure; false
    /// when the pod went first (from the API server, or from `latest`, the worker's view).
    pub(super) async fn write_until_current(
        &mut self,
        kubelet: &Kubelet,
        status: &Value,
        latest: &watch::Receiver<Option<std::sync::Arc<super::pod::Kept>>>,
    ) -> bool {
        let mut wait = FIRST_RETRY;
        loop {
            if latest.borrow().is_none() {
                return false;
            }
            match self.write(kubelet, status).await {
                Written::Current => return true,
                Written::Gone => return false,
                Written::Failed => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(MAX_RETRY);
                }
            }
        }
    }

    /// Deletes the terminated pod for good: grace period 0, and only the pod with this UID (not
    /// a new one by the same name). Tried until the pod is gone.
    pub(super) async fn delete(&self) {
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        let mut wait = FIRST_RETRY;
        loop {
            match Box::pin(self.pods.delete(&self.name, &params)).await {
                Ok(_) => return,
                // Gone already, or the name is another pod's now.
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => return,
                Err(error) => {
                    tracing::warn!(%error, pod = %self.name, "deleting the terminated pod failed; it will be retried");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(MAX_RETRY);
                }
            }
        }
    }
}

fn phase_of(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default()
}

/// The status hop's words: `Running, 1/1 ready`.
/// The `STATUS` hop of a write of `status` for the pod `(namespace, name, uid)`. A change of
/// phase from `phase_was` is a decision a learner steps through, so it waits at the stepper's
/// gate first; other status writes (a restart count, a probe's readiness) pass.
pub(super) async fn announce(
    kubelet: &Kubelet,
    (namespace, name, uid): (&str, &str, &str),
    status: &Value,
    phase_was: &str,
) {
    let summary = summary(status);
    let mut hop = FlowEvent::new(
        format!("kubelet/{}", kubelet.config.name),
        "apiserver",
        "STATUS",
    )
    .object("Pod", namespace, name)
    .detail(summary.clone());
    hop.uid = uid.to_owned();
    if status["phase"].as_str().unwrap_or_default() != phase_was {
        let words = format!(
            "kubelet/{} wants to write STATUS {summary} for {namespace}/{name}",
            kubelet.config.name
        );
        kubelet.flow.gate_with(&hop, words).await;
    }
    kubelet.flow.emit(hop);
}

fn summary(status: &Value) -> String {
    let statuses = status["containerStatuses"].as_array();
    let total = statuses.map_or(0, Vec::len);
    let ready = statuses.map_or(0, |s| {
        s.iter()
            .filter(|c| c["ready"].as_bool() == Some(true))
            .count()
    });
    format!(
        "{}, {ready}/{total} ready",
        status["phase"].as_str().unwrap_or("Unknown")
    )
}

/// A digest of a status, as compared by [`StatusWriter::has`]: 64 bits of SipHash over its
/// JSON, so two different statuses agree by accident with odds of 2^-64.
/// The JSON is streamed into the hasher, not built as a string: every worker asks once a second.
fn digest(status: &Value) -> u64 {
    use std::hash::Hasher;
    struct Sink(std::collections::hash_map::DefaultHasher);
    impl std::io::Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.write(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut sink = Sink(std::collections::hash_map::DefaultHasher::new());
    // Writing a `Value` into a sink that never fails cannot fail.
    let _ = serde_json::to_writer(&mut sink, status);
    sink.0.finish()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn equal_statuses_share_a_digest_and_different_ones_do_not() {
        let running =
            json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]});
        assert_eq!(super::digest(&running), super::digest(&running.clone()));
        let not_ready =
            json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]});
        assert_ne!(super::digest(&running), super::digest(&not_ready));
    }
}
