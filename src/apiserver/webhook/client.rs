//! Calling a webhook, as upstream's `webhookutil.ClientManager` and its REST client do: an HTTPS
//! POST of the review to the configured `url`, or to a `service` reference, with the
//! configuration's `caBundle` as the only trusted root (the host's roots when it has none) and
//! the server name checked against the certificate's names (`<service>.<namespace>.svc` for a
//! service reference), `?timeout=<n>s` on the URL, within `timeoutSeconds`.
//!
//! A service reference is resolved to one ready endpoint of the Service, read from the store
//! (its EndpointSlices), and dialled at the endpoint's address and target port: what
//! kube-apiserver does with `--enable-aggregator-routing`, which reaches pods from the host
//! without kube-proxy. Failures are worded as Go's HTTP client words them
//! (`Post "https://...": dial tcp 10.0.0.1:443: connect: connection refused`,
//! `context deadline exceeded`, `tls: failed to verify certificate: x509: certificate signed by
//! unknown authority`), because the API server's error message quotes them.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::admissionregistration::v1::WebhookClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::net::TcpStream;

use crate::store::{RangeRequest, Store};

/// The most of an answer read (a review with a patch of a large object fits many times over).
const MAX_ANSWER: usize = 16 << 20;

/// Where a webhook is reached.
#[derive(Debug)]
pub(crate) enum Target {
    /// `clientConfig.url`: dialled as given.
    Url {
        /// `https://host[:port]`, as the configuration wrote it.
        base: String,
        host: String,
        port: u16,
        path: String,
    },
    /// `clientConfig.service`: one ready endpoint of the Service.
    Service {
        namespace: String,
        name: String,
        port: u16,
        path: String,
    },
}

/// A webhook's client: where it is and the TLS to reach it with.
pub(crate) struct Endpoint {
    pub(crate) target: Target,
    /// The TLS configuration, or why the `caBundle` gives none.
    tls: Result<Arc<rustls::ClientConfig>, String>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// The host's trusted roots, read once: what a webhook without a `caBundle` is checked against.
fn system_roots() -> &'static rustls::RootCertStore {
    static ROOTS: OnceLock<rustls::RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        let _ = roots.add_parsable_certificates(found.certs);
        roots
    })
}

/// The TLS configuration trusting `ca_bundle` alone (PEM), or the host's roots when empty.
fn tls_config(ca_bundle: &[u8]) -> Result<Arc<rustls::ClientConfig>, String> {
    let roots = if ca_bundle.is_empty() {
        system_roots().clone()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        let certs: Vec<_> = CertificateDer::pem_slice_iter(ca_bundle)
            .filter_map(Result::ok)
            .collect();
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            // client-go's words for a bundle without one certificate.
            return Err(
                "unable to load root certificates: unable to parse bytes as PEM block".into(),
            );
        }
        roots
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

impl Endpoint {
    /// The endpoint a (validated) `clientConfig` names.
    pub(crate) fn new(config: &WebhookClientConfig) -> Self {
        let tls = tls_config(config.ca_bundle.as_ref().map_or(&[][..], |b| &b.0));
        let target = match (&config.url, &config.service) {
            (Some(url), _) => {
                let parsed = url::Url::parse(url).ok();
                let host = parsed
                    .as_ref()
                    .and_then(|u| u.host_str().map(|h| h.trim_matches(['[', ']']).to_owned()))
                    .unwrap_or_default();
                let port = parsed
                    .as_ref()
                    .and_then(url::Url::port_or_known_default)
                    .unwrap_or(443);
                let base = parsed.as_ref().map_or_else(String::new, |u| {
                    let mut base = format!("{}://{}", u.scheme(), u.host_str().unwrap_or_default());
                    if let Some(port) = u.port() {
                        base.push_str(&format!(":{port}"));
                    }
                    base
                });
                let path = parsed
                    .as_ref()
                    .map(|u| u.path().to_owned())
                    .unwrap_or_default();
                Target::Url {
                    base,
                    host,
                    port,
                    path,
                }
            }
            (None, Some(service)) => Target::Service {
                namespace: service.namespace.clone(),
                name: service.name.clone(),
                port: service
                    .port
                    .and_then(|p| u16::try_from(p).ok())
                    .unwrap_or(443),
                path: service.path.clone().unwrap_or_default(),
            },
            (None, None) => Target::Url {
                base: String::new(),
                host: String::new(),
                port: 443,
                path: String::new(),
            },
        };
        Endpoint { target, tls }
    }

    /// The name the certificate must carry: the URL's host, or `<service>.<namespace>.svc`.
    fn server_name(&self) -> String {
        match &self.target {
            Target::Url { host, .. } => host.clone(),
            Target::Service {
                namespace, name, ..
            } => format!("{name}.{namespace}.svc"),
        }
    }

    /// `host:port` as the request's `Host` says it.
    fn authority(&self) -> String {
        match &self.target {
            Target::Url { base, .. } => base
                .split_once("://")
                .map_or(base.as_str(), |(_, a)| a)
                .to_owned(),
            Target::Service { port, .. } => format!("{}:{port}", self.server_name()),
        }
    }

    fn path(&self) -> &str {
        let path = match &self.target {
            Target::Url { path, .. } | Target::Service { path, .. } => path.as_str(),
        };
        if path.is_empty() { "/" } else { path }
    }

    /// The URL called, as Go's error messages quote it (`https://web.ns.svc:443/validate?timeout=10s`).
    pub(crate) fn url(&self, timeout: Duration) -> String {
        format!(
            "https://{}{}?timeout={}s",
            self.authority(),
            self.path(),
            timeout.as_secs().max(1)
        )
    }

    /// POSTs `body` and returns the answer's body, or the reason the call failed, in the words
    /// upstream's client gives after `failed to call webhook: `.
    pub(crate) async fn call(
        &self,
        store: &dyn Store,
        timeout: Duration,
        body: Vec<u8>,
    ) -> Result<Vec<u8>, String> {
        let url = self.url(timeout);
        let post = |reason: String| format!("Post {url:?}: {reason}");
        let tls = self
            .tls
            .clone()
            .map_err(|e| format!("could not get REST client: {e}"))?;
        let attempt = async {
            let address = match &self.target {
                Target::Url { host, port, .. } => {
                    if host.contains(':') {
                        format!("[{host}]:{port}")
                    } else {
                        format!("{host}:{port}")
                    }
                }
                Target::Service {
                    namespace,
                    name,
                    port,
                    ..
                } => resolve(store, namespace, name, *port).await.map_err(post)?,
            };
            let tcp = TcpStream::connect(&address)
                .await
                .map_err(|e| post(format!("dial tcp {address}: {}", go_dial_error(&e))))?;
            let server_name = ServerName::try_from(self.server_name())
                .map_err(|e| post(format!("invalid server name: {e}")))?;
            let stream = tokio_rustls::TlsConnector::from(tls)
                .connect(server_name, tcp)
                .await
                .map_err(|e| post(go_tls_error(&e)))?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(|e| post(e.to_string()))?;
            tokio::spawn(connection);
            let path_and_query = format!("{}?timeout={}s", self.path(), timeout.as_secs().max(1));
            let request = http::Request::post(path_and_query)
                .header(http::header::HOST, self.authority())
                .header(http::header::CONTENT_TYPE, "application/json")
                .header(http::header::ACCEPT, "application/json, */*")
                .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                .map_err(|e| post(e.to_string()))?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| post(e.to_string()))?;
            let status = response.status();
            let answer = http_body_util::Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| post(e.to_string()))?
                .to_bytes();
            if !status.is_success() {
                return Err(server_error(status, &answer));
            }
            Ok(answer.to_vec())
        };
        tokio::time::timeout(timeout, attempt)
            .await
            .map_err(|_| post("context deadline exceeded".into()))?
    }
}

/// A ready endpoint of the Service at `port`, as `host:port` (upstream's `ResolveEndpoint`
/// through its listers, in its words).
async fn resolve(
    store: &dyn Store,
    namespace: &str,
    name: &str,
    port: u16,
) -> Result<String, String> {
    let key = format!("/registry/services/{namespace}/{name}");
    let service: Value = match store.get(&key).await {
        Ok(Some(kv)) => serde_json::from_slice(&kv.value).map_err(|e| e.to_string())?,
        Ok(None) => return Err(format!("service {name:?} not found")),
        Err(e) => return Err(e.to_string()),
    };
    let kind = service["spec"]["type"].as_str().unwrap_or("ClusterIP");
    if !matches!(kind, "ClusterIP" | "NodePort" | "LoadBalancer") {
        return Err(format!("unsupported service type {kind:?}"));
    }
    let service_port = service["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["port"].as_u64() == Some(u64::from(port)))
        .ok_or_else(|| format!("no service port {port} found for service {name:?}"))?;
    let port_name = service_port["name"].as_str().unwrap_or_default();
    let slices = store
        .range(&RangeRequest::prefix(format!(
            "/registry/endpointslices/{namespace}/"
        )))
        .await
        .map_err(|e| e.to_string())?;
    let mut ready = Vec::new();
    for kv in &slices.kvs {
        let Ok(slice) = serde_json::from_slice::<Value>(&kv.value) else {
            continue;
        };
        if slice["metadata"]["labels"][crate::apimachinery::labels::SERVICE_NAME] != name {
            continue;
        }
        let Some(target) = slice["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|p| {
                (p["name"].as_str().unwrap_or_default() == port_name
                    && p["protocol"].as_str().unwrap_or("TCP") == "TCP")
                    .then(|| p["port"].as_u64())
                    .flatten()
            })
        else {
            continue;
        };
        for endpoint in slice["endpoints"].as_array().into_iter().flatten() {
            if endpoint["conditions"]["ready"] == false {
                continue;
            }
            if let Some(address) = endpoint["addresses"][0].as_str() {
                ready.push(if address.contains(':') {
                    format!("[{address}]:{target}")
                } else {
                    format!("{address}:{target}")
                });
            }
        }
    }
    if ready.is_empty() {
        return Err(format!("no endpoints available for service {name:?}"));
    }
    let pick = uuid::Uuid::new_v4().as_u128() as usize % ready.len();
    Ok(ready.swap_remove(pick))
}

/// A dial failure as Go's `net` package words it after `dial tcp <addr>: `.
fn go_dial_error(e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::ConnectionRefused => "connect: connection refused".into(),
        ErrorKind::TimedOut => "i/o timeout".into(),
        ErrorKind::HostUnreachable => "connect: no route to host".into(),
        ErrorKind::NetworkUnreachable => "connect: network is unreachable".into(),
        _ => e.to_string(),
    }
}

/// A failed handshake as Go's `crypto/tls` words it.
fn go_tls_error(e: &std::io::Error) -> String {
    use rustls::CertificateError as C;
    let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return format!("remote error: {e}");
    };
    let verify = |detail: String| format!("tls: failed to verify certificate: x509: {detail}");
    match tls {
        // A CA of the same name but another key is unknown too (Go adds why in parentheses).
        rustls::Error::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => {
            verify("certificate signed by unknown authority".into())
        }
        rustls::Error::InvalidCertificate(C::NotValidForNameContext {
            expected,
            presented,
        }) => verify(format!(
            "certificate is valid for {}, not {}",
            presented.join(", "),
            expected.to_str()
        )),
        rustls::Error::InvalidCertificate(C::NotValidForName) => {
            verify("certificate is not valid for the requested name".into())
        }
        rustls::Error::InvalidCertificate(
            C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. },
        ) => verify("certificate has expired or is not yet valid".into()),
        other => format!("tls: {other}"),
    }
}

/// What Go's REST client makes of an answer that is not a 2xx: the Status it carries, else
/// `NewGenericServerResponse`'s words for the code.
fn server_error(status: http::StatusCode, body: &[u8]) -> String {
    if let Ok(answer) = serde_json::from_slice::<Value>(body)
        && answer["kind"] == "Status"
        && let Some(message) = answer["message"].as_str()
    {
        return message.to_owned();
    }
    let text = String::from_utf8_lossy(body).trim().to_owned();
    match status.as_u16() {
        400 => "the server rejected our request for an unknown reason".into(),
        401 => "the server has asked for the client to provide credentials".into(),
        403 => text,
        404 => "the server could not find the requested resource".into(),
        405 => "the server does not allow this method on the requested resource".into(),
        409 => "the server reported a conflict".into(),
        429 => "the server has received too many requests and has asked us to try again later".into(),
        503 => "the server is currently unable to handle the request".into(),
        504 => "the server was unable to return a response in the time allotted, but may still be processing the request".into(),
        code if code >= 500 => format!(
            "an error on the server ({text:?}) has prevented the request from succeeding"
        ),
        _ => format!("the server responded with the status code {} but did not return more information", status.as_u16()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(config: serde_json::Value) -> Endpoint {
        Endpoint::new(&serde_json::from_value(config).unwrap())
    }

    #[test]
    fn urls_and_names_are_upstreams() {
        let service = endpoint(
            serde_json::json!({"service": {"namespace": "hooks", "name": "deny", "path": "/validate", "port": 8443}}),
        );
        assert_eq!(
            service.url(Duration::from_secs(10)),
            "https://deny.hooks.svc:8443/validate?timeout=10s"
        );
        assert_eq!(service.server_name(), "deny.hooks.svc");
        let url = endpoint(serde_json::json!({"url": "https://127.0.0.1:9443/mutate"}));
        assert_eq!(
            url.url(Duration::from_secs(3)),
            "https://127.0.0.1:9443/mutate?timeout=3s"
        );
        assert_eq!(url.server_name(), "127.0.0.1");
        assert_eq!(url.authority(), "127.0.0.1:9443");
        let bad = endpoint(
            serde_json::json!({"url": "https://x.example.com/", "caBundle": "bm90IGEgY2VydA=="}),
        );
        assert_eq!(
            bad.tls.unwrap_err(),
            "unable to load root certificates: unable to parse bytes as PEM block"
        );
    }

    #[test]
    fn error_answers_read_as_gos_client_reads_them() {
        let status = br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"nope","code":500}"#;
        assert_eq!(
            server_error(http::StatusCode::INTERNAL_SERVER_ERROR, status),
            "nope"
        );
        assert_eq!(
            server_error(http::StatusCode::INTERNAL_SERVER_ERROR, b"boom\n"),
            "an error on the server (\"boom\") has prevented the request from succeeding"
        );
        assert_eq!(
            server_error(http::StatusCode::NOT_FOUND, b"404 page not found"),
            "the server could not find the requested resource"
        );
    }
}
