//! The CSR signing controller, kube-controller-manager's `csrsigning` (service account
//! `certificate-controller`): the built-in `kubernetes.io/kube-apiserver-client` signer. An
//! approved CertificateSigningRequest for it, neither denied nor failed nor issued yet, is
//! checked as upstream's signer checks it (client auth required, digital signature and key
//! encipherment allowed) and signed with the cluster's CA, with the usages it names, for
//! `expirationSeconds` (10 minutes at least, the signer's duration, a year, at most); the
//! certificate is written through the `status` subresource. A request the signer refuses gets a `Failed` condition
//! (`SignerValidationFailure`). Requests for other signers are left alone: the kubelet signers
//! are not run, and `kubernetes.io/legacy-unknown` is never signed.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, PostParams};

use super::Context;
use super::workqueue::{Action, Key, WorkQueue, run_workers};
use crate::apimachinery::certificates::{self as certs, KUBE_APISERVER_CLIENT, Standing};
use crate::flow::{Flow, FlowEvent};
use crate::informers::{Change, Informer};
use crate::pki::Pki;

/// The controller's name (its client is `controller/certificate`, the service account
/// `certificate-controller`).
pub const NAME: &str = "certificate";

/// What went wrong signing a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The status write failed.
    #[error("write the status of certificatesigningrequest {name}: {source}")]
    Write {
        /// The request.
        name: String,
        /// The API server's error.
        source: kube::Error,
    },
    /// The CA could not sign.
    #[error("error auto signing csr: {0}")]
    Sign(String),
}

/// What the signer does with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing: not approved, already done, or another signer's.
    Ignore,
    /// Refuse it with a `Failed` condition saying why.
    Fail(String),
    /// Sign the request (PEM) for this long.
    Sign(String, Duration),
}

/// Upstream's `signer.handle` as a decision: approved and not failed, issued, or another
/// signer's; the request parses and its usages are a client certificate's.
pub fn decide(csr: &CertificateSigningRequest, max: Duration) -> Verdict {
    let status = csr.status.as_ref();
    let conditions: Vec<(String, String)> = status
        .and_then(|s| s.conditions.as_ref())
        .map(|c| {
            c.iter()
                .map(|c| (c.type_.clone(), c.status.clone()))
                .collect()
        })
        .unwrap_or_default();
    let issued = status
        .and_then(|s| s.certificate.as_ref())
        .is_some_and(|c| !c.0.is_empty());
    if !Standing::of(&conditions, issued).to_sign() || csr.spec.signer_name != KUBE_APISERVER_CLIENT
    {
        return Verdict::Ignore;
    }
    let pem = String::from_utf8_lossy(&csr.spec.request.0).into_owned();
    if let Err(e) = certs::parse_request(pem.as_bytes()) {
        // Upstream returns the error and retries; a request that passed validation parses.
        return Verdict::Fail(format!("unable to parse csr: {e}"));
    }
    let usages = csr.spec.usages.clone().unwrap_or_default();
    if let Err(why) = certs::check_client_usages(&usages) {
        return Verdict::Fail(why);
    }
    Verdict::Sign(pem, certs::duration(csr.spec.expiration_seconds, max))
}

/// The signer.
pub struct CsrSigningController {
    client: kube::Client,
    flow: Flow,
    pki: Arc<Pki>,
    max: Duration,
    requests: Informer<CertificateSigningRequest>,
    queue: WorkQueue<Key>,
}

impl CsrSigningController {
    /// Takes the CertificateSigningRequest informer from `ctx`; every change queues the request.
    /// Signs with `pki`'s CA for at most `max` (`--cluster-signing-duration`).
    pub fn new(ctx: &Context, pki: Arc<Pki>, max: Duration) -> Self {
        let requests = ctx.factory.informer::<CertificateSigningRequest>();
        let queue = WorkQueue::new("csrsigning");
        {
            let queue = queue.clone();
            requests.add_handler(move |change| {
                if !matches!(change, Change::Delete(_)) {
                    queue.add(Key::of(change.object()));
                }
            });
        }
        CsrSigningController {
            client: ctx.client(NAME),
            flow: ctx.flow.clone(),
            pki,
            max,
            requests,
            queue,
        }
    }

    /// Waits for the cache, then handles requests one at a time.
    pub async fn run(self) {
        self.requests.synced().await;
        let this = Arc::new(self);
        run_workers(this.queue.clone(), 1, |key| {
            let this = this.clone();
            async move { this.sync(key).await }
        })
        .await;
    }

    async fn sync(&self, key: Key) -> Result<Action, Error> {
        let Some(csr) = self.requests.get("", &key.name) else {
            return Ok(Action::Done);
        };
        let mut updated = (*csr).clone();
        let status = updated.status.get_or_insert_with(Default::default);
        let (verb, detail) = match decide(&csr, self.max) {
            Verdict::Ignore => return Ok(Action::Done),
            Verdict::Fail(message) => {
                status.conditions.get_or_insert_with(Vec::new).push(
                    CertificateSigningRequestCondition {
                        type_: certs::FAILED.into(),
                        status: "True".into(),
                        reason: Some("SignerValidationFailure".into()),
                        message: Some(message.clone()),
                        last_update_time: Some(Time(jiff::Timestamp::now())),
                        last_transition_time: None,
                    },
                );
                ("FAIL", message)
            }
            Verdict::Sign(pem, duration) => {
                let usages = csr.spec.usages.clone().unwrap_or_default();
                let usages: Vec<&str> = usages.iter().map(String::as_str).collect();
                let certificate = self
                    .pki
                    .sign_client_request_for(&pem, duration, &usages)
                    .map_err(|e| Error::Sign(e.to_string()))?;
                status.certificate = Some(ByteString(certificate.into_bytes()));
                (
                    "SIGN",
                    format!(
                        "sign with the cluster CA for {}",
                        crate::apimachinery::gotypes::go_duration(duration)
                    ),
                )
            }
        };
        self.flow
            .gate_emit(
                FlowEvent::new(format!("controller/{NAME}"), "apiserver", verb)
                    .object("CertificateSigningRequest", "", &key.name)
                    .detail(detail),
            )
            .await;
        let requests: Api<CertificateSigningRequest> = Api::all(self.client.clone());
        match requests
            .replace_status(&key.name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => Ok(Action::Done),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(Action::Done),
            Err(source) => Err(Error::Write {
                name: key.name,
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use serde_json::json;

    fn encode_request(pem: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(pem)
    }

    const REQUEST: &str = "-----BEGIN CERTIFICATE REQUEST-----
MIHmMIGOAgEAMCwxDjAMBgNVBAMMBWNhcm9sMQswCQYDVQQKDAJxYTENMAsGA1UE
CgwEZGV2czBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABBs6TwlMk72pYD4a4r6f
5eOAJdtzCXnODGKk6eKzKtrT59va6Af0/dkQvWFepfSst107T/KlkBtP8WhzpJJe
p9SgADAKBggqhkjOPQQDAgNHADBEAiAeg+sv+XbnjaM40kpLc/F+SoOjADkEbvMg
jwPyRu3U1wIgDYLMQPv8pJjzc+96jjk0ppMNQrZzh0QjoodJcutQTu4=
-----END CERTIFICATE REQUEST-----
";

    fn csr(
        signer: &str,
        usages: &[&str],
        conditions: &[&str],
        issued: bool,
    ) -> CertificateSigningRequest {
        let conditions: Vec<_> = conditions
            .iter()
            .map(|t| json!({"type": t, "status": "True"}))
            .collect();
        let mut status = json!({"conditions": conditions});
        if issued {
            status["certificate"] = json!(encode_request("cert"));
        }
        serde_json::from_value(json!({
            "metadata": {"name": "carol"},
            "spec": {
                "request": encode_request(REQUEST),
                "signerName": signer,
                "usages": usages,
                "expirationSeconds": 3600,
            },
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn signs_only_approved_client_requests() {
        let year = certs::DEFAULT_DURATION;
        let client = ["digital signature", "client auth"];
        assert_eq!(
            decide(
                &csr(KUBE_APISERVER_CLIENT, &client, &["Approved"], false),
                year
            ),
            Verdict::Sign(REQUEST.into(), Duration::from_secs(3600))
        );
        for (request, why) in [
            (csr(KUBE_APISERVER_CLIENT, &client, &[], false), "pending"),
            (
                csr(KUBE_APISERVER_CLIENT, &client, &["Denied"], false),
                "denied",
            ),
            (
                csr(KUBE_APISERVER_CLIENT, &client, &["Approved"], true),
                "issued",
            ),
            (
                csr(
                    KUBE_APISERVER_CLIENT,
                    &client,
                    &["Approved", "Failed"],
                    false,
                ),
                "failed",
            ),
            (
                csr(certs::LEGACY_UNKNOWN, &client, &["Approved"], false),
                "legacy",
            ),
            (
                csr("example.com/x", &client, &["Approved"], false),
                "another signer",
            ),
        ] {
            assert_eq!(decide(&request, year), Verdict::Ignore, "{why}");
        }
        assert_eq!(
            decide(
                &csr(
                    KUBE_APISERVER_CLIENT,
                    &["server auth", "client auth"],
                    &["Approved"],
                    false
                ),
                year
            ),
            Verdict::Fail("invalid usage for client certificate: server auth".into())
        );
        assert_eq!(
            decide(
                &csr(
                    KUBE_APISERVER_CLIENT,
                    &["digital signature"],
                    &["Approved"],
                    false
                ),
                year
            ),
            Verdict::Fail("missing required usage for client certificate: client auth".into())
        );
    }
}
