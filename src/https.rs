//! HTTPS serving for the API server and the kubelets, with the limits kube-apiserver's secure
//! serving puts on its clients (Go's `http.Server` as `k8s.io/apiserver` configures it), so that
//! idle connections cannot hold the server's file descriptors forever:
//!
//! - the TLS handshake must finish within [`Timeouts::tls_handshake`];
//! - HTTP/1.1 (the protocol unless ALPN picked `h2`, as in Go) must send a request's headers
//!   within [`Timeouts::request_header`] (Go's `ReadHeaderTimeout`), which also bounds how long a
//!   kept-alive connection may wait for its next request;
//! - an HTTP/2 connection must open its first stream within [`Timeouts::request_header`] (Go
//!   bounds the preface by 10 s), and one with no open stream for [`Timeouts::idle`] is closed
//!   with a GOAWAY (`http2.Server.IdleTimeout`); one whose peer stops answering pings is dropped;
//! - a request's headers may hold 1 MB (Go's `MaxHeaderBytes`), more gets a 431
//!   ([`MAX_HEADER_BYTES`]);
//! - when `accept` fails (out of file descriptors: `EMFILE`), the loop backs off as Go's does
//!   (5 ms, doubling up to 1 s) and logs once per burst of failures, not once per attempt.
//!
//! Long-running requests are not cut off: a watch or `logs -f` is an open response (HTTP/1.1
//! reads no next request while it lasts; an HTTP/2 stream keeps its connection busy), and exec,
//! attach and port-forward leave HTTP behind once upgraded.
//!
//! The client's certificate, when the cluster's CA signed it, is handed to the handler as an
//! [`Identity`]; what to do with it (401, 403 or serve) is the handler's business.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::pki::{Identity, ServerTls};

/// How long clients may take, and how long idle connections live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// To finish the TLS handshake. kube-apiserver's Go server gives the handshake its
    /// `ReadHeaderTimeout`; client-go gives up on its own side after 10 s (its
    /// `TLSHandshakeTimeout`), so no client of record waits longer than the 10 s used here.
    pub tls_handshake: Duration,
    /// To send a request's headers, counted from when the server starts waiting for them: on a
    /// kept-alive HTTP/1.1 connection, from the end of the previous response.
    /// kube-apiserver's `ReadHeaderTimeout`: 32 s.
    pub request_header: Duration,
    /// How long an HTTP/2 connection may have no open stream. kube-apiserver's `IdleTimeout`:
    /// 90 s.
    pub idle: Duration,
    /// How often a quiet HTTP/2 connection is pinged.
    pub ping_interval: Duration,
    /// How long the answer to a ping may take before the connection is dropped.
    pub ping_timeout: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tls_handshake: Duration::from_secs(10),
            request_header: Duration::from_secs(32),
            idle: Duration::from_secs(90),
            // client-go's HTTP/2 health check: ReadIdleTimeout 30 s, PingTimeout 15 s.
            ping_interval: Duration::from_secs(30),
            ping_timeout: Duration::from_secs(15),
        }
    }
}

/// What answers each request, given the client's identity: any such function.
pub trait Handler:
    Fn(Option<Arc<Identity>>, http::Request<Body>) -> BoxFuture<'static, http::Response<Body>>
    + Send
    + Sync
    + 'static
{
}

impl<F> Handler for F where
    F: Fn(Option<Arc<Identity>>, http::Request<Body>) -> BoxFuture<'static, http::Response<Body>>
        + Send
        + Sync
        + 'static
{
}

/// Put on a request whose connection presented a client certificate the cluster's CA did not
/// sign (the handler gets no identity for it): bad credentials, unlike none at all.
#[derive(Clone, Copy, Debug)]
pub struct UntrustedCertificate;

fn mark(mut request: http::Request<Body>, untrusted: bool) -> http::Request<Body> {
    if untrusted {
        request.extensions_mut().insert(UntrustedCertificate);
    }
    request
}

/// The back-off after a failed `accept`, as Go's `http.Server.Serve` has it.
const FIRST_BACKOFF: Duration = Duration::from_millis(5);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Accepts connections until `shutdown` completes; the open connections end when it does (or
/// when this future is dropped), as a stopped server's connections end with it. Each request goes to `handler` with the client's identity (`None`: no
/// certificate, or one the cluster's CA did not sign).
pub async fn serve<H>(
    listener: TcpListener,
    tls: ServerTls,
    timeouts: Timeouts,
    handler: H,
    shutdown: impl Future<Output = ()>,
) where
    H: Handler,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config.clone());
    let handler = Arc::new(handler);
    tokio::pin!(shutdown);
    let (mut failures, mut backoff) = (0u64, Duration::ZERO);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let accepted = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, remote)) => {
                if failures > 0 {
                    tracing::warn!(failures, "accepting connections again");
                    (failures, backoff) = (0, Duration::ZERO);
                }
                connections.spawn(connection(
                    stream,
                    remote,
                    acceptor.clone(),
                    tls.clone(),
                    timeouts,
                    handler.clone(),
                ));
            }
            Err(error) => {
                failures += 1;
                backoff = if backoff.is_zero() {
                    FIRST_BACKOFF
                } else {
                    (backoff * 2).min(MAX_BACKOFF)
                };
                if failures == 1 {
                    tracing::warn!(
                        %error,
                        "accept failed; retrying with back-off (up to 1 s) until it succeeds"
                    );
                }
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
            }
        }
    }
}

/// The most a request's headers may hold, as Go's `http.Server` (whose default `MaxHeaderBytes`,
/// 1 MB, kube-apiserver keeps) reads them: 1 MB plus the 4 KiB of slack Go allows. Larger
/// headers get `431 Request Header Fields Too Large`, on HTTP/1.1 (hyper's read buffer) and on
/// HTTP/2 (`SETTINGS_MAX_HEADER_LIST_SIZE`; hyper's default there is 16 KiB, past which a
/// client got a GOAWAY instead of an answer). A header list far past the limit on HTTP/2 (more
/// than h2's allowance of CONTINUATION frames for it) ends its connection with a GOAWAY.
const MAX_HEADER_BYTES: usize = (1 << 20) + 4096;

/// One connection: the handshake, then HTTP/2 if ALPN chose it, else HTTP/1.1.
async fn connection<H>(
    stream: TcpStream,
    remote: SocketAddr,
    acceptor: tokio_rustls::TlsAcceptor,
    tls: ServerTls,
    timeouts: Timeouts,
    handler: Arc<H>,
) where
    H: Handler,
{
    let stream = match tokio::time::timeout(timeouts.tls_handshake, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            tracing::debug!(%error, %remote, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%remote, "TLS handshake timed out");
            return;
        }
    };
    let session = stream.get_ref().1;
    let chain = session.peer_certificates().filter(|c| !c.is_empty());
    let identity = chain.and_then(|chain| tls.identity(chain)).map(Arc::new);
    let untrusted = chain.is_some() && identity.is_none();
    let h2 = session.alpn_protocol() == Some(b"h2");
    let io = TokioIo::new(stream);
    let result = if h2 {
        http2(io, identity, untrusted, handler, timeouts).await
    } else {
        let service = hyper::service::service_fn(move |request: http::Request<_>| {
            let answer = handler(identity.clone(), mark(request.map(Body::new), untrusted));
            async move { Ok::<_, Infallible>(answer.await) }
        });
        hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .max_buf_size(MAX_HEADER_BYTES)
            .header_read_timeout(timeouts.request_header)
            .serve_connection(io, service)
            .with_upgrades()
            .await
    };
    if let Err(error) = result {
        tracing::debug!(%error, %remote, "connection ended with an error");
    }
}

/// An open HTTP/2 stream, counted while its response lives.
struct Open(Arc<watch::Sender<usize>>);

impl Open {
    fn new(streams: &Arc<watch::Sender<usize>>) -> Open {
        streams.send_modify(|n| *n += 1);
        Open(streams.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

/// Completes once the connection has had no open stream for `first` from its start (a client
/// that never sends its preface or a request), or for `idle` at any later time.
async fn quiet(mut streams: watch::Receiver<usize>, first: Duration, idle: Duration) {
    let mut wait = first;
    loop {
        if streams.wait_for(|n| *n == 0).await.is_err() {
            return std::future::pending().await;
        }
        if tokio::time::timeout(wait, streams.wait_for(|n| *n > 0))
            .await
            .is_err()
        {
            return;
        }
        wait = idle;
    }
}

async fn http2<H>(
    io: TokioIo<tokio_rustls::server::TlsStream<TcpStream>>,
    identity: Option<Arc<Identity>>,
    untrusted: bool,
    handler: Arc<H>,
    timeouts: Timeouts,
) -> hyper::Result<()>
where
    H: Handler,
{
    let (streams, watching) = watch::channel(0usize);
    let streams = Arc::new(streams);
    let service = hyper::service::service_fn(move |request: http::Request<_>| {
        let open = Open::new(&streams);
        let answer = handler(identity.clone(), mark(request.map(Body::new), untrusted));
        async move {
            let response = answer.await;
            // The stream stays open until its body is done (or dropped): a watch keeps it busy.
            Ok::<_, Infallible>(response.map(|body| {
                Body::new(body.map_frame(move |frame| {
                    let _open = &open;
                    frame
                }))
            }))
        }
    });
    let connection = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .keep_alive_interval(Some(timeouts.ping_interval))
        .keep_alive_timeout(timeouts.ping_timeout)
        .serve_connection(io, service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => return result,
        () = quiet(watching.clone(), timeouts.request_header, timeouts.idle) => {
            connection.as_mut().graceful_shutdown();
        }
    }
    // The GOAWAY is out; a client that still opens nothing (one that never finished its
    // preface, which the GOAWAY waits for) is dropped after another header timeout.
    tokio::select! {
        result = connection => result,
        () = quiet(watching, timeouts.request_header, timeouts.request_header) => Ok(()),
    }
}
