//! `orrery webhook`: a small admission webhook, the kind a cluster's users run in a pod behind a
//! Service and register with a `ValidatingWebhookConfiguration` or
//! `MutatingWebhookConfiguration`. It serves HTTPS from a certificate and key (mounted from a
//! Secret) and answers every `AdmissionReview` (v1 or v1beta1) on any path: it refuses an
//! object carrying `--deny-label` (`key` or `key=value`) with `--message` (403, `Forbidden`),
//! and otherwise allows it, adding `--add-label key=value` with a JSONPatch to reviews POSTed
//! to `/mutate` (a validating webhook may not answer with a patch); `--warning` is given with
//! every answer.

use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::{Value, json};

/// What the webhook decides.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// Refuse objects with this label (and value, when given).
    pub deny_label: Option<(String, Option<String>)>,
    /// Add this label to the objects it allows.
    pub add_label: Option<(String, String)>,
    /// The refusal's message.
    pub message: String,
    /// A warning given with every answer, which the API server passes on to its client.
    pub warning: Option<String>,
}

impl Policy {
    /// A policy from the command line's words (`team=red`, `checked=yes`).
    pub fn parse(deny: Option<&str>, add: Option<&str>, message: &str) -> Result<Policy, String> {
        let add_label = add
            .map(|a| {
                a.split_once('=')
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .ok_or_else(|| format!("--add-label {a:?} is not key=value"))
            })
            .transpose()?;
        Ok(Policy {
            deny_label: deny.map(|d| match d.split_once('=') {
                Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                None => (d.to_owned(), None),
            }),
            add_label,
            message: message.to_owned(),
            warning: None,
        })
    }
}

/// The answer to one `AdmissionReview` body POSTed to `path`: the review back, with
/// `response` filled in.
pub fn answer(policy: &Policy, path: &str, body: &[u8]) -> Result<Vec<u8>, String> {
    let review: Value =
        serde_json::from_slice(body).map_err(|e| format!("not an AdmissionReview: {e}"))?;
    let request = &review["request"];
    let object = match &request["object"] {
        Value::Null => &request["oldObject"],
        object => object,
    };
    let labels = &object["metadata"]["labels"];
    let denied = policy.deny_label.as_ref().is_some_and(|(key, value)| {
        labels[key.as_str()]
            .as_str()
            .is_some_and(|v| value.as_deref().is_none_or(|want| want == v))
    });
    let mut response = json!({"uid": request["uid"], "allowed": !denied});
    if let Some(warning) = &policy.warning {
        response["warnings"] = json!([warning]);
    }
    if denied {
        response["status"] = json!({"code": 403, "reason": "Forbidden", "message": policy.message});
    } else if let Some((key, value)) = &policy.add_label
        && path == "/mutate"
        && request["object"].is_object()
    {
        let patch = if labels.is_object() {
            let escaped = key.replace('~', "~0").replace('/', "~1");
            json!([{"op": "add", "path": format!("/metadata/labels/{escaped}"), "value": value}])
        } else {
            json!([{"op": "add", "path": "/metadata/labels", "value": {key.as_str(): value}}])
        };
        use base64::Engine;
        response["patchType"] = json!("JSONPatch");
        response["patch"] =
            json!(base64::engine::general_purpose::STANDARD.encode(patch.to_string()));
    }
    let api_version = review["apiVersion"]
        .as_str()
        .unwrap_or("admission.k8s.io/v1");
    Ok(serde_json::to_vec(
        &json!({"apiVersion": api_version, "kind": "AdmissionReview", "response": response}),
    )
    .expect("JSON values encode"))
}

/// The TLS a webhook serves with: its certificate chain and key (PEM).
pub fn tls(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("certificate: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("key: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves `policy` on `listener` until the future is dropped: HTTP/1.1 over TLS, every POST
/// answered with [`answer`] (400 for a body that is no review).
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    policy: Arc<Policy>,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (stream, _) = listener.accept().await?;
        let (acceptor, policy) = (acceptor.clone(), policy.clone());
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(stream).await else {
                return;
            };
            let service = hyper::service::service_fn(
                move |request: hyper::Request<hyper::body::Incoming>| {
                    let policy = policy.clone();
                    async move {
                        let path = request.uri().path().to_owned();
                        let body = request.into_body().collect().await?.to_bytes();
                        let (status, body) = match answer(&policy, &path, &body) {
                            Ok(review) => (200, review),
                            Err(e) => (400, e.into_bytes()),
                        };
                        let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
                        *response.status_mut() =
                            hyper::StatusCode::from_u16(status).expect("a status");
                        response.headers_mut().insert(
                            hyper::header::CONTENT_TYPE,
                            hyper::header::HeaderValue::from_static("application/json"),
                        );
                        Ok::<_, hyper::Error>(response)
                    }
                },
            );
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

/// `orrery webhook`: serves on `0.0.0.0:port` until SIGTERM.
pub fn main(
    cert: &std::path::Path,
    key: &std::path::Path,
    port: u16,
    policy: Policy,
) -> std::process::ExitCode {
    use std::process::ExitCode;
    let run = async {
        let read = |path: &std::path::Path| {
            std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
        };
        let tls = tls(&read(cert)?, &read(key)?)?;
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .map_err(|e| e.to_string())?;
        let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::UNSPECIFIED, port))
            .await
            .map_err(|e| e.to_string())?;
        println!(
            "webhook: listening on {}",
            listener.local_addr().map_err(|e| e.to_string())?
        );
        tokio::select! {
            served = serve(listener, tls, Arc::new(policy)) => served.map_err(|e| e.to_string()),
            _ = terminate.recv() => Ok(()),
        }
    };
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => match runtime.block_on(run) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("webhook: {error}");
                ExitCode::FAILURE
            }
        },
        Err(error) => {
            eprintln!("webhook: cannot start the async runtime: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review(labels: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "u1", "object": {"metadata": {"name": "x", "labels": labels}}, "oldObject": null}})).unwrap()
    }

    #[test]
    fn denies_labelled_objects_and_labels_the_others() {
        let policy = Policy::parse(
            Some("team=red"),
            Some("checked.example.com/by=webhook"),
            "red is refused",
        )
        .unwrap();
        let answer = |labels| -> Value {
            serde_json::from_slice(&answer(&policy, "/mutate", &review(labels)).unwrap()).unwrap()
        };
        let validating: Value = serde_json::from_slice(
            &super::answer(&policy, "/validate", &review(json!({}))).unwrap(),
        )
        .unwrap();
        assert_eq!(validating["response"]["allowed"], true);
        assert!(
            validating["response"].get("patch").is_none(),
            "no patch but to /mutate"
        );
        let denied = answer(json!({"team": "red"}));
        assert_eq!(denied["response"]["uid"], "u1");
        assert_eq!(denied["response"]["allowed"], false);
        assert_eq!(denied["response"]["status"]["message"], "red is refused");
        let allowed = answer(json!({"team": "blue"}));
        assert_eq!(allowed["response"]["allowed"], true);
        assert_eq!(allowed["response"]["patchType"], "JSONPatch");
        let patch =
            crate::apimachinery::bytes::decode(allowed["response"]["patch"].as_str().unwrap())
                .unwrap();
        let patch: Value = serde_json::from_slice(&patch).unwrap();
        assert_eq!(patch[0]["path"], "/metadata/labels/checked.example.com~1by");
        let bare = answer(Value::Null);
        let patch = crate::apimachinery::bytes::decode(bare["response"]["patch"].as_str().unwrap())
            .unwrap();
        let patch: Value = serde_json::from_slice(&patch).unwrap();
        assert_eq!(
            patch[0]["value"],
            json!({"checked.example.com/by": "webhook"})
        );
        assert!(Policy::parse(None, Some("novalue"), "").is_err());
    }
}
