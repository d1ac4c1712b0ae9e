//! `kubectl port-forward` at the kubelet: `/portForward/<namespace>/<pod>`. Each forwarded
//! connection is a connection from the kubelet to `<pod IP>:<port>` (the IP from
//! [`ContainerRuntime::pod_sandbox_status`]), opened through [`ContainerRuntime::dial`] (the
//! pod network is the runtime's: a simulated pod is reached in memory), copied both ways.
//! Three framings reach it:
//! - SPDY/3.1 after `Upgrade: SPDY/3.1` with `X-Stream-Protocol-Version: portforward.k8s.io`
//!   (kubectl's fallback). The client opens a pair of streams per connection, both with
//!   headers `port` and `requestID`, one `streamType: error` and one `streamType: data`.
//! - The same SPDY inside binary WebSocket messages, subprotocol
//!   `SPDY/3.1+portforward.k8s.io` (kubectl 1.32's first choice: client-go's tunnelling).
//! - The WebSocket channel protocol (`v4.channel.k8s.io`, `portforward.k8s.io`; kube-rs's
//!   `Api::portforward`): for the i-th port of `?ports=`, channel 2i carries data and 2i+1
//!   errors, and the kubelet's first message on each is the port, two bytes little-endian.
//!   Text messages are read as binary ones, as upstream's `wsstream` does.
//!
//! A connection that fails is reported on its error stream in the kubelet's words:
//! `error forwarding port <port> to pod <sandbox>, uid : <why>`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use http::StatusCode;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::probes::{host_port, io_text};
use super::spdy::{Codec, FLAG_FIN, Frame, status};
use crate::runtime::{ContainerRuntime, PodConnection};

/// The SPDY subprotocol of port-forward.
const PORT_FORWARD: &str = "portforward.k8s.io";
/// client-go's WebSocket tunnel for SPDY port-forward.
const TUNNELED: &str = "SPDY/3.1+portforward.k8s.io";
/// The WebSocket channel protocols served for port-forward.
const CHANNELS: [&str; 3] = ["v4.channel.k8s.io", "v5.channel.k8s.io", PORT_FORWARD];
/// How long a connection to the pod may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a pod's ports are, and what to call it in errors.
#[derive(Clone)]
struct Target {
    runtime: Arc<dyn ContainerRuntime>,
    sandbox: String,
    ip: Option<String>,
}

impl Target {
    /// Connects to `port` on the pod, or says why not in the kubelet's words.
    async fn connect(&self, port: u16) -> Result<PodConnection, String> {
        let why = match &self.ip {
            None => "the pod has no IP address".to_owned(),
            Some(ip) => {
                let dial = self.runtime.dial(&self.sandbox, ip, port);
                let address = host_port(ip, port);
                match tokio::time::timeout(CONNECT_TIMEOUT, dial).await {
                    Ok(Ok(stream)) => return Ok(stream),
                    Ok(Err(e)) => format!("dial tcp {address}: connect: {}", io_text(&e)),
                    Err(_) => format!("dial tcp {address}: i/o timeout"),
                }
            }
        };
        Err(format!(
            "error forwarding port {port} to pod {}, uid : {why}",
            self.sandbox
        ))
    }
}

/// Serves `/portForward/{namespace}/{pod}`, choosing the framing by the upgrade asked for.
pub(super) async fn serve(
    State(runtime): State<Arc<dyn ContainerRuntime>>,
    axum::Extension(sessions): axum::Extension<super::server::Sessions>,
    Path((namespace, pod)): Path<(String, String)>,
    request: Request,
) -> Response {
    // An upgrade has no body; only the head is kept (the body is not `Sync`).
    let (mut parts, _) = request.into_parts();
    let mut found = None;
    for (id, config) in runtime.list_pod_sandboxes().await {
        if config.namespace == namespace
            && config.name == pod
            && let Ok(status) = runtime.pod_sandbox_status(&id).await
        {
            found = Some(Target {
                runtime: runtime.clone(),
                sandbox: id,
                ip: status.ip,
            });
            if status.ready {
                break;
            }
        }
    }
    let Some(target) = found else {
        return (StatusCode::NOT_FOUND, "pod does not exist").into_response();
    };
    let upgrade = header_values(&parts.headers, "upgrade");
    if upgrade.iter().any(|u| u.eq_ignore_ascii_case("websocket")) {
        let ports = ports_of(parts.uri.query().unwrap_or_default());
        let ws = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            Ok(ws) => ws,
            Err(rejection) => return rejection.into_response(),
        };
        let offered = header_values(&parts.headers, "sec-websocket-protocol");
        if offered.iter().any(|p| p == TUNNELED) {
            return ws.protocols([TUNNELED]).on_upgrade(move |socket| {
                sessions.run(async move {
                    let (stream, pump) = tunnel(socket);
                    tokio::join!(pump, spdy_session(stream, target));
                })
            });
        }
        let ports = match ports {
            Ok(ports) if !ports.is_empty() => ports,
            Ok(_) => {
                return (
                    StatusCode::BAD_REQUEST,
                    "at least one port must be specified",
                )
                    .into_response();
            }
            Err(message) => return (StatusCode::BAD_REQUEST, message).into_response(),
        };
        return ws
            .protocols(CHANNELS)
            .on_upgrade(move |socket| sessions.run(channel_session(socket, target, ports)));
    }
    if upgrade.iter().any(|u| u.eq_ignore_ascii_case("SPDY/3.1")) {
        let versions = header_values(&parts.headers, "x-stream-protocol-version");
        if !versions.iter().any(|v| v == PORT_FORWARD) {
            return (
                StatusCode::FORBIDDEN,
                format!("unable to upgrade: unable to negotiate protocol: client supports {versions:?}, server supports [{PORT_FORWARD:?}]"),
            )
                .into_response();
        }
        let Some(upgraded) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() else {
            return (
                StatusCode::BAD_REQUEST,
                "unable to upgrade: the connection cannot be upgraded",
            )
                .into_response();
        };
        tokio::spawn(sessions.run(async move {
            match upgraded.await {
                Ok(upgraded) => spdy_session(TokioIo::new(upgraded), target).await,
                Err(error) => tracing::debug!(%error, "port-forward upgrade failed"),
            }
        }));
        return Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(http::header::CONNECTION, "Upgrade")
            .header(http::header::UPGRADE, "SPDY/3.1")
            .header("X-Stream-Protocol-Version", PORT_FORWARD)
            .body(Body::empty())
            .unwrap_or_default();
    }
    (
        StatusCode::BAD_REQUEST,
        "unable to upgrade: port-forward needs Upgrade: SPDY/3.1 or a WebSocket",
    )
        .into_response()
}

fn header_values(headers: &http::HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_owned())
        .collect()
}

/// The `ports` of a query: repeated, or comma-separated as kube-rs sends them.
fn ports_of(query: &str) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if key == "ports" {
            for port in value.split(',').filter(|p| !p.is_empty()) {
                match port.trim().parse::<u16>() {
                    Ok(p) if p > 0 => ports.push(p),
                    _ => return Err(format!("invalid port {port:?}")),
                }
            }
        }
    }
    Ok(ports)
}

/// A WebSocket carrying a byte stream in its binary messages (client-go's tunnelling
/// connection), as a byte stream, and the task that moves the bytes.
fn tunnel(
    socket: WebSocket,
) -> (
    tokio::io::DuplexStream,
    impl std::future::Future<Output = ()> + Send,
) {
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    let pump = async move {
        let (mut sink, mut incoming) = socket.split();
        let (mut read, mut write) = tokio::io::split(theirs);
        let inbound = async {
            while let Some(Ok(message)) = incoming.next().await {
                match message {
                    Message::Binary(data) if write.write_all(&data).await.is_err() => break,
                    Message::Close(_) => break,
                    _ => {}
                }
            }
            let _ = write.shutdown().await;
        };
        let outbound = async {
            let mut buffer = vec![0; 32 * 1024];
            loop {
                match read.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let data = Bytes::copy_from_slice(&buffer[..n]);
                        if sink.send(Message::Binary(data)).await.is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = sink.send(super::exec::normal_close()).await;
            let _ = sink.close().await;
        };
        tokio::select! {
            _ = outbound => {}
            _ = inbound => {}
        }
    };
    (ours, pump)
}

/// One side of a forwarded connection's stream pair, as the session sees it.
struct Pair {
    port: u16,
    error: Option<u32>,
    data: Option<(u32, mpsc::Receiver<Bytes>)>,
}

/// Serves SPDY port-forward on an upgraded connection until either side ends it.
async fn spdy_session(stream: impl AsyncRead + AsyncWrite + Send + 'static, target: Target) {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (frames, mut outgoing) = mpsc::channel::<Frame>(64);
    let Ok(mut encoder) = Codec::new() else {
        return;
    };
    let Ok(mut decoder) = Codec::new() else {
        return;
    };
    let write = async move {
        let mut out = BytesMut::new();
        while let Some(frame) = outgoing.recv().await {
            out.clear();
            if encoder.encode(&frame, &mut out).is_err() || writer.write_all(&out).await.is_err() {
                break;
            }
        }
        let _ = writer.shutdown().await;
    };
    let read = async move {
        // Each stream's incoming data, until its FIN.
        let mut streams: HashMap<u32, mpsc::Sender<Bytes>> = HashMap::new();
        let mut pairs: HashMap<String, Pair> = HashMap::new();
        let mut forwards = tokio::task::JoinSet::new();
        let mut buffer = BytesMut::with_capacity(64 * 1024);
        loop {
            let frame = match decoder.decode(&mut buffer) {
                Ok(Some(frame)) => frame,
                Ok(None) => match reader.read_buf(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => continue,
                },
                Err(error) => {
                    tracing::debug!(%error, "port-forward: bad SPDY frame");
                    let _ = frames
                        .send(Frame::GoAway {
                            last_good: 0,
                            status: status::PROTOCOL_ERROR,
                        })
                        .await;
                    break;
                }
            };
            match frame {
                Frame::SynStream {
                    stream,
                    flags,
                    headers,
                    ..
                } => {
                    let get = |name: &str| {
                        headers
                            .iter()
                            .find(|(k, _)| k.eq_ignore_ascii_case(name))
                            .map(|(_, v)| v.clone())
                    };
                    let port = get("port").and_then(|p| p.parse::<u16>().ok());
                    let (Some(kind), Some(port)) = (get("streamType"), port) else {
                        let _ = frames
                            .send(Frame::RstStream {
                                stream,
                                status: status::REFUSED_STREAM,
                            })
                            .await;
                        continue;
                    };
                    let request = get("requestID").unwrap_or_else(|| port.to_string());
                    let _ = frames
                        .send(Frame::SynReply {
                            stream,
                            flags: 0,
                            headers: Vec::new(),
                        })
                        .await;
                    let pair = pairs.entry(request.clone()).or_insert(Pair {
                        port,
                        error: None,
                        data: None,
                    });
                    match kind.as_str() {
                        "error" => pair.error = Some(stream),
                        "data" => {
                            let (tx, rx) = mpsc::channel(64);
                            if flags & FLAG_FIN == 0 {
                                streams.insert(stream, tx);
                            }
                            pair.data = Some((stream, rx));
                        }
                        _ => {
                            let _ = frames
                                .send(Frame::RstStream {
                                    stream,
                                    status: status::PROTOCOL_ERROR,
                                })
                                .await;
                        }
                    }
                    if pair.error.is_some() && pair.data.is_some() {
                        let Some(Pair {
                            port,
                            error: Some(error),
                            data: Some((data, incoming)),
                        }) = pairs.remove(&request)
                        else {
                            continue;
                        };
                        forwards.spawn(forward_spdy(
                            target.clone(),
                            port,
                            error,
                            data,
                            incoming,
                            frames.clone(),
                        ));
                    }
                }
                Frame::Data {
                    stream,
                    flags,
                    data,
                } => {
                    let length = data.len() as u32;
                    if let Some(tx) = streams.get(&stream)
                        && !data.is_empty()
                        && tx.send(data).await.is_err()
                    {
                        streams.remove(&stream);
                    }
                    if flags & FLAG_FIN != 0 {
                        streams.remove(&stream);
                    }
                    if length > 0 {
                        // What was taken in may be sent again: the stream's and the session's
                        // windows.
                        for id in [stream, 0] {
                            let _ = frames
                                .send(Frame::WindowUpdate {
                                    stream: id,
                                    delta: length,
                                })
                                .await;
                        }
                    }
                }
                Frame::RstStream { stream, .. } => {
                    streams.remove(&stream);
                }
                Frame::Ping { id } => {
                    let _ = frames.send(Frame::Ping { id }).await;
                }
                Frame::GoAway { .. } => break,
                _ => {}
            }
            while forwards.try_join_next().is_some() {}
        }
        drop(streams);
        drop(frames);
        forwards.shutdown().await;
    };
    tokio::join!(read, write);
}

/// One forwarded connection over SPDY: the pod's port copied to and from the data stream;
/// a failure written to the error stream.
async fn forward_spdy(
    target: Target,
    port: u16,
    error: u32,
    data: u32,
    mut incoming: mpsc::Receiver<Bytes>,
    frames: mpsc::Sender<Frame>,
) {
    let fin = |stream: u32| Frame::Data {
        stream,
        flags: FLAG_FIN,
        data: Bytes::new(),
    };
    match target.connect(port).await {
        Err(message) => {
            tracing::debug!(%message, "port-forward");
            let _ = frames
                .send(Frame::Data {
                    stream: error,
                    flags: 0,
                    data: Bytes::from(message),
                })
                .await;
        }
        Ok(connection) => {
            copy(connection, &mut incoming, |chunk| {
                let frames = frames.clone();
                async move {
                    frames
                        .send(Frame::Data {
                            stream: data,
                            flags: 0,
                            data: chunk,
                        })
                        .await
                        .is_ok()
                }
            })
            .await;
        }
    }
    let _ = frames.send(fin(data)).await;
    let _ = frames.send(fin(error)).await;
}

/// Copies a connection to the pod both ways: what arrives on `incoming` is written to it (its
/// end shuts the connection's write side), and what it sends goes to `send`; done when the
/// pod's side ends.
pub(super) async fn copy<F, Fut>(
    connection: impl AsyncRead + AsyncWrite,
    incoming: &mut mpsc::Receiver<Bytes>,
    send: F,
) where
    F: Fn(Bytes) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let (mut from_pod, mut to_pod) = tokio::io::split(connection);
    let up = async {
        while let Some(chunk) = incoming.recv().await {
            if to_pod.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to_pod.shutdown().await;
    };
    let down = async {
        let mut buffer = vec![0; 32 * 1024];
        loop {
            match from_pod.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if !send(Bytes::copy_from_slice(&buffer[..n])).await {
                        return;
                    }
                }
            }
        }
    };
    // The connection is done when the pod side ends; the client's end only half-closes it.
    tokio::select! {
        _ = down => {}
        _ = async {
            up.await;
            std::future::pending::<()>().await
        } => {}
    }
}

/// The WebSocket channel protocol: every port at once, two channels each.
async fn channel_session(socket: WebSocket, target: Target, ports: Vec<u16>) {
    let (mut sink, mut incoming) = socket.split();
    let (out, mut outgoing) = mpsc::channel::<Message>(64);
    let writer = tokio::spawn(async move {
        while let Some(message) = outgoing.recv().await {
            if sink.send(message).await.is_err() {
                return;
            }
        }
        let _ = sink.send(super::exec::normal_close()).await;
        let _ = sink.close().await;
    });
    let binary =
        |channel: u8, data: &[u8]| Message::Binary(super::exec::frame(channel, data).into());
    let mut inputs = Vec::new();
    let mut forwards = tokio::task::JoinSet::new();
    for (i, port) in ports.iter().copied().enumerate() {
        let data = (2 * i) as u8;
        let error = data + 1;
        for channel in [data, error] {
            let _ = out.send(binary(channel, &port.to_le_bytes())).await;
        }
        let (tx, mut rx) = mpsc::channel::<Bytes>(64);
        inputs.push(Some(tx));
        let (target, out) = (target.clone(), out.clone());
        forwards.spawn(async move {
            match target.connect(port).await {
                Err(message) => {
                    let _ = out.send(binary(error, message.as_bytes())).await;
                }
                Ok(connection) => {
                    copy(connection, &mut rx, |chunk| {
                        let out = out.clone();
                        async move { out.send(binary(data, &chunk)).await.is_ok() }
                    })
                    .await;
                }
            }
        });
    }
    let read = async {
        while let Some(Ok(message)) = incoming.next().await {
            if let Message::Close(_) = message {
                break;
            }
            let Some((channel, payload)) =
                super::exec::data_of(&message).and_then(super::exec::unframe)
            else {
                continue;
            };
            let index = usize::from(channel / 2);
            if channel % 2 != 0 || index >= inputs.len() {
                continue;
            }
            if let Some(tx) = &inputs[index]
                && tx.send(Bytes::copy_from_slice(payload)).await.is_err()
            {
                inputs[index] = None;
            }
        }
    };
    tokio::select! {
        _ = read => {}
        _ = async { while forwards.join_next().await.is_some() {} } => {}
    }
    drop(out);
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_from_the_query() {
        assert_eq!(ports_of("ports=80%2C1234"), Ok(vec![80, 1234]));
        assert_eq!(ports_of("ports=80&ports=8080"), Ok(vec![80, 8080]));
        assert_eq!(ports_of(""), Ok(vec![]));
        assert!(ports_of("ports=0").is_err());
        assert!(ports_of("ports=http").is_err());
    }

    /// A simulated pod (`web` in `shop`) and, with `hello`, its running built-in hello
    /// container: the target port-forward dials, at the pod's IP or at `ip`.
    async fn sim_target(hello: bool, ip: Option<&str>) -> Target {
        use crate::runtime::ContainerConfig;
        use crate::runtime::sim::{SimOptions, SimRuntime};
        let runtime = SimRuntime::new(SimOptions::default());
        let sandbox = runtime.test_sandbox().await;
        if hello {
            let config = ContainerConfig {
                name: "hello".into(),
                image: "orrery/hello".into(),
                ..ContainerConfig::default()
            };
            let id = runtime.create_container(&sandbox, &config).await.unwrap();
            runtime.start_container(&id).await.unwrap();
        }
        let pod_ip = runtime.pod_sandbox_status(&sandbox).await.unwrap().ip;
        Target {
            runtime: Arc::new(runtime),
            sandbox,
            ip: ip.map(str::to_owned).or(pod_ip),
        }
    }

    /// The copy between a forwarded stream and a real TCP listener (a simulated node's
    /// loopback is this machine's), both ways, with the client's end half-closing the
    /// connection.
    #[tokio::test]
    async fn streams_copy_to_and_from_a_listener() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            socket.read_to_end(&mut request).await.unwrap();
            socket.write_all(b"echo: ").await.unwrap();
            socket.write_all(&request).await.unwrap();
        });
        let target = sim_target(false, Some("127.0.0.1")).await;
        let Ok(connection) = target.connect(address.port()).await else {
            panic!("the loopback listener takes the connection")
        };
        let (tx, mut rx) = mpsc::channel(4);
        tx.send(Bytes::from_static(b"hello ")).await.unwrap();
        tx.send(Bytes::from_static(b"pod")).await.unwrap();
        drop(tx);
        let received = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = received.clone();
        copy(connection, &mut rx, move |chunk| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().extend_from_slice(&chunk);
                true
            }
        })
        .await;
        server.await.unwrap();
        assert_eq!(&received.lock().unwrap()[..], b"echo: hello pod");
    }

    #[tokio::test]
    async fn failures_are_told_in_the_kubelets_words() {
        // A simulated pod where nothing listens.
        let target = sim_target(false, None).await;
        let (sandbox, ip) = (target.sandbox.clone(), target.ip.clone().unwrap());
        let Err(error) = target.connect(8080).await else {
            panic!("nothing listens in the pod")
        };
        assert_eq!(
            error,
            format!(
                "error forwarding port 8080 to pod {sandbox}, uid : dial tcp {ip}:8080: connect: connection refused"
            )
        );
        let mut nowhere = target;
        nowhere.ip = None;
        let Err(error) = nowhere.connect(80).await else {
            panic!("no IP, no connection")
        };
        assert_eq!(
            error,
            format!("error forwarding port 80 to pod {sandbox}, uid : the pod has no IP address")
        );
    }

    /// A whole SPDY session over an in-memory connection, the way kubectl drives it: an
    /// error stream and a data stream for one request, data both ways, FIN, and the simulated
    /// hello's answer on the data stream.
    #[tokio::test]
    async fn a_spdy_session_forwards_a_connection() {
        let target = sim_target(true, None).await;
        let ip = target.ip.clone().unwrap();
        let (client, server) = tokio::io::duplex(64 * 1024);
        let session = tokio::spawn(spdy_session(server, target));
        let (mut read, mut write) = tokio::io::split(client);
        let mut codec = Codec::new().unwrap();
        let port = "8080".to_owned();
        let headers = |kind: &str| {
            vec![
                ("streamtype".to_owned(), kind.to_owned()),
                ("port".to_owned(), port.clone()),
                ("requestid".to_owned(), "0".to_owned()),
            ]
        };
        let mut wire = BytesMut::new();
        for frame in [
            Frame::SynStream {
                stream: 1,
                associated: 0,
                priority: 0,
                flags: 0,
                headers: headers("error"),
            },
            Frame::SynStream {
                stream: 3,
                associated: 0,
                priority: 0,
                flags: 0,
                headers: headers("data"),
            },
            Frame::Ping { id: 9 },
            Frame::Data {
                stream: 3,
                flags: FLAG_FIN,
                data: Bytes::from_static(b"GET / HTTP/1.0\r\n\r\n"),
            },
        ] {
            codec.encode(&frame, &mut wire).unwrap();
        }
        write.write_all(&wire).await.unwrap();
        let mut decoder = Codec::new().unwrap();
        let mut buffer = BytesMut::new();
        let (mut replies, mut pong, mut answer, mut fins) = (0, false, Vec::new(), 0);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while fins < 2 {
            let frame = match decoder.decode(&mut buffer).unwrap() {
                Some(frame) => frame,
                None => {
                    let n = tokio::time::timeout_at(deadline, read.read_buf(&mut buffer))
                        .await
                        .expect("the session answers in time")
                        .unwrap();
                    assert!(n > 0, "the session ended early");
                    continue;
                }
            };
            match frame {
                Frame::SynReply { .. } => replies += 1,
                Frame::Ping { id: 9 } => pong = true,
                Frame::Data {
                    stream: 3,
                    data,
                    flags,
                } => {
                    answer.extend_from_slice(&data);
                    fins += usize::from(flags & FLAG_FIN != 0);
                }
                Frame::Data {
                    stream: 1,
                    data,
                    flags,
                } => {
                    assert!(data.is_empty(), "no error: {data:?}");
                    fins += usize::from(flags & FLAG_FIN != 0);
                }
                _ => {}
            }
        }
        let answer = String::from_utf8_lossy(&answer);
        assert_eq!((replies, pong), (2, true));
        assert!(answer.starts_with("HTTP/1.0 200 OK\r\n"), "{answer}");
        assert!(
            answer.ends_with(&format!("\r\n\r\nHello from web in shop at {ip}\n")),
            "{answer}"
        );
        drop(write);
        drop(read);
        tokio::time::timeout(Duration::from_secs(5), session)
            .await
            .unwrap()
            .unwrap();
    }
}
