//! The API server's connections to the kubelets, as kube-apiserver makes them with
//! `--kubelet-client-certificate` and `--kubelet-certificate-authority`: TCP to the node's
//! address and kubelet port, then TLS showing the API server's kubelet client certificate
//! ([`crate::pki::Pki::kubelet_client`]) and checking the kubelet's serving certificate against
//! the cluster's CA, then HTTP/1.1 (exec, attach and port-forward upgrade the connection).

use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::ApiServer;

/// How long dialing, and then the TLS handshake, may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// A TLS connection to the kubelet at `host:port`, or why there is none, in Go's words
/// (`dial tcp 127.0.0.1:10250: connect: connection refused`).
pub(super) async fn dial(
    api: &ApiServer,
    kubelet: &str,
) -> Result<TokioIo<TlsStream<TcpStream>>, String> {
    let Some(config) = api.kubelet_client() else {
        return Err("the API server has no kubelet client certificate".into());
    };
    let tcp = tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(kubelet))
        .await
        .map_err(|_| format!("dial tcp {kubelet}: i/o timeout"))?
        .map_err(|e| format!("dial tcp {kubelet}: {e}"))?;
    let host = kubelet
        .rsplit_once(':')
        .map_or(kubelet, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| format!("invalid kubelet host {host:?}: {e}"))?;
    let tls = tokio::time::timeout(
        DIAL_TIMEOUT,
        tokio_rustls::TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .map_err(|_| "tls: handshake timeout".to_owned())?
    .map_err(|e| format!("tls: {e}"))?;
    Ok(TokioIo::new(tls))
}
