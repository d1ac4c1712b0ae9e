//! The data path: HTTP/1.1 and (over TLS, by ALPN) h2 listeners that route each request through
//! the current [`RouteTable`] and stream it to one of the backend's ready endpoints, and the
//! answer back. The routing decision passes the flow's gate (held in step mode) before the
//! request goes on; each request is one hop `client -> ingress-controller`.
//!
//! Answers of its own: 404 `default backend - 404` (no rule, no default backend), 503 (the
//! Service is missing or has no ready endpoint), 502 (the endpoint refused or broke off). The
//! proxied request carries `X-Forwarded-For`, `X-Real-IP` (the client's address; incoming
//! `X-Forwarded-*` are not trusted, as ingress-nginx's default `use-forwarded-headers: false`),
//! `X-Forwarded-Host` and `X-Forwarded-Proto`. Plain HTTP for a TLS host is served too: no
//! forced redirect to HTTPS.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};

use super::COMPONENT;
use super::routes::{Decision, RouteTable, request_host};
use crate::flow::{Flow, FlowEvent};

type Body = BoxBody<Bytes, hyper::Error>;

/// What the listeners share with the controller's loop.
pub(crate) struct Shared {
    table: RwLock<Arc<RouteTable>>,
    pub(crate) flow: Flow,
}

impl Shared {
    pub(crate) fn new(flow: Flow) -> Self {
        Shared {
            table: RwLock::new(Arc::new(RouteTable::default())),
            flow,
        }
    }

    pub(crate) fn set_table(&self, table: RouteTable) {
        *self.table.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(table);
    }

    fn table(&self) -> Arc<RouteTable> {
        self.table.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Serves plain HTTP on `listener` until the task is aborted.
pub(crate) async fn serve_http(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(serve_connection(TokioIo::new(stream), peer, "http", shared));
    }
}

/// Serves HTTPS on `listener` until the task is aborted.
pub(crate) async fn serve_https(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    shared: Arc<Shared>,
) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let (acceptor, shared) = (acceptor.clone(), shared.clone());
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream));
            if let Ok(Ok(tls)) = handshake.await {
                serve_connection(TokioIo::new(tls), peer, "https", shared).await;
            }
        });
    }
}

async fn serve_connection<I>(
    io: TokioIo<I>,
    peer: SocketAddr,
    scheme: &'static str,
    shared: Arc<Shared>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(handle(request, peer, scheme, &shared).await) }
    });
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection(io, service)
        .await;
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from_static(text.as_bytes()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The headers that belong to one connection, not to the request (RFC 9110 7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
];

fn strip_hop_by_hop(headers: &mut http::HeaderMap) {
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

async fn handle(
    request: Request<Incoming>,
    peer: SocketAddr,
    scheme: &'static str,
    shared: &Shared,
) -> Response<Body> {
    let authority = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let host = request_host(&authority);
    let path = request.uri().path().to_owned();
    let method = request.method().to_string();
    let table = shared.table();
    let asked = format!("{method} {host}{path}");
    let route = match table.decide(&host, &path) {
        Decision::NotFound => {
            shared.flow.emit(
                FlowEvent::new("client", COMPONENT, &method).detail(format!("{asked} → 404")),
            );
            return plain(StatusCode::NOT_FOUND, "default backend - 404");
        }
        Decision::Route(route) => route,
    };
    let hop = FlowEvent::new("client", COMPONENT, &method).object(
        "Ingress",
        &route.namespace,
        &route.ingress,
    );
    shared.flow.gate(&hop).await;
    let backend = &route.backend;
    let service = backend.describe();
    let Some(endpoint) = backend.pick().filter(|_| backend.service_exists) else {
        let why = if backend.service_exists {
            "no ready endpoints"
        } else {
            "no such service"
        };
        shared
            .flow
            .emit(hop.detail(format!("{asked} → {service} ({why}) 503")));
        return plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "503 Service Temporarily Unavailable",
        );
    };
    let response = forward(request, endpoint, &authority, peer, scheme).await;
    match response {
        Ok(mut response) => {
            shared.flow.emit(hop.detail(format!(
                "{asked} → {service} → {endpoint} {}",
                response.status().as_u16()
            )));
            strip_hop_by_hop(response.headers_mut());
            response.map(BodyExt::boxed)
        }
        Err(error) => {
            shared
                .flow
                .emit(hop.detail(format!("{asked} → {service} → {endpoint} 502 ({error})")));
            plain(StatusCode::BAD_GATEWAY, "502 Bad Gateway")
        }
    }
}

/// Sends `request` to `endpoint` over a new HTTP/1.1 connection, with the forwarding headers.
async fn forward(
    mut request: Request<Incoming>,
    endpoint: SocketAddr,
    authority: &str,
    peer: SocketAddr,
    scheme: &'static str,
) -> Result<Response<Incoming>, String> {
    let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(endpoint))
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let path = request
        .uri()
        .path_and_query()
        .map_or("/".to_owned(), |p| p.to_string());
    *request.uri_mut() = path
        .parse()
        .map_err(|e: http::uri::InvalidUri| e.to_string())?;
    *request.version_mut() = http::Version::HTTP_11;
    let headers = request.headers_mut();
    strip_hop_by_hop(headers);
    let client = peer.ip().to_string();
    let set = |headers: &mut http::HeaderMap, name: &'static str, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    };
    set(headers, "host", authority);
    set(headers, "x-forwarded-for", &client);
    set(headers, "x-real-ip", &client);
    set(headers, "x-forwarded-host", authority);
    set(headers, "x-forwarded-proto", scheme);
    sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())
}
