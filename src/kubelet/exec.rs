//! `kubectl exec` at the kubelet: `/exec/<namespace>/<pod>/<container>?command=...&stdin=&
//! stdout=&stderr=&tty=`, a WebSocket speaking Kubernetes' channel protocol
//! (`v5.channel.k8s.io`, or `v4.channel.k8s.io` for older clients such as kube-rs's first
//! choice being refused). Every message starts with its channel: 0 stdin, 1 stdout,
//! 2 stderr, 3 the error channel (one JSON `metav1.Status` at the end: `Success`, or `Failure`
//! with reason `NonZeroExitCode` and the exit code as the `ExitCode` cause, which is how
//! kubectl learns it), 4 terminal resizes (`{"Width":w,"Height":h}`), and, in v5 only, 255: a
//! client's `[255, 0]` closes the command's stdin. The kubelet sends binary messages; it reads
//! text messages as well, with the same bytes (the official Python client writes stdin and
//! resizes as text): upstream's `wsstream` reads both kinds into one buffer and takes its first
//! byte as the channel. The command runs through [`ContainerRuntime::exec`].

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{
    Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
};
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use http::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::runtime::{ContainerRuntime, ContainerState, ExecRequest, RuntimeError};

/// The WebSocket subprotocols served, most preferred first.
pub(super) const PROTOCOLS: [&str; 2] = [V5, V4];
const V5: &str = "v5.channel.k8s.io";
const V4: &str = "v4.channel.k8s.io";

/// The channels of the protocol.
pub(super) mod channel {
    /// The command's stdin.
    pub(crate) const STDIN: u8 = 0;
    /// The command's stdout.
    pub(crate) const STDOUT: u8 = 1;
    /// The command's stderr.
    pub(crate) const STDERR: u8 = 2;
    /// The final `Status`.
    pub(crate) const ERROR: u8 = 3;
    /// Terminal size changes.
    pub(crate) const RESIZE: u8 = 4;
    /// v5: the payload names a channel the sender closes.
    pub(crate) const CLOSE: u8 = 255;
}

/// One message of the channel protocol: the channel byte, then the data.
pub(super) fn frame(channel: u8, data: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(data.len() + 1);
    message.push(channel);
    message.extend_from_slice(data);
    message
}

/// A message's channel and data; `None` for an empty message.
pub(super) fn unframe(message: &[u8]) -> Option<(u8, &[u8])> {
    message.split_first().map(|(c, data)| (*c, data))
}

/// A message's bytes when it carries data: binary and text messages alike, as upstream's
/// `wsstream` reads them (a text message's first byte is its channel too); `None` for control
/// messages (ping, pong, close).
pub(super) fn data_of(message: &Message) -> Option<&[u8]> {
    match message {
        Message::Binary(data) => Some(data),
        Message::Text(text) => Some(text.as_str().as_bytes()),
        _ => None,
    }
}

/// What the query asks for (`PodExecOptions`).
#[derive(Debug, PartialEq, Eq)]
struct Options {
    command: Vec<String>,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

impl Options {
    /// The kubelet's names (`input`, `output`, `error`, `tty`, as the API server forwards them)
    /// or `PodExecOptions`' (`stdin`, ...); the first value of each counts, as `FormValue` reads
    /// it, and every `command` in order.
    fn parse(query: &str) -> Result<Self, String> {
        let options = Options::streams(query);
        if options.command.is_empty() {
            return Err("you must specify at least 1 command".into());
        }
        if !(options.stdin || options.stdout || options.stderr) {
            return Err("you must specify at least 1 of stdin, stdout, stderr".into());
        }
        Ok(options)
    }

    /// The streams asked for (and the command words, for an exec), unchecked.
    fn streams(query: &str) -> Self {
        use crate::apimachinery::params;
        let given = params::parse(query);
        let flag = |kubelet: &str, api: &str| {
            params::truth(
                given
                    .get(kubelet)
                    .or_else(|| given.get(api))
                    .map(String::as_str),
            )
        };
        Options {
            command: form_urlencoded::parse(query.as_bytes())
                .filter(|(key, _)| key == "command")
                .map(|(_, value)| value.into_owned())
                .collect(),
            stdin: flag("input", "stdin"),
            stdout: flag("output", "stdout"),
            stderr: flag("error", "stderr"),
            tty: flag("tty", "tty"),
        }
    }
}

/// The Status ending an exec on the error channel, as the kubelet writes it.
pub(super) fn exit_status(command: &[String], result: &Result<i32, RuntimeError>) -> Value {
    match result {
        Ok(0) => json!({"metadata": {}, "status": "Success"}),
        Ok(code) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!(
                "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
                command.join(" ")
            ),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Err(error) => {
            let message = format!("error executing command in container: {error}");
            json!({
                "metadata": {},
                "status": "Failure",
                "message": format!("Internal error occurred: {message}"),
                "reason": "InternalError",
                "details": {"causes": [{"message": message}]},
                "code": 500,
            })
        }
    }
}

/// Serves `/attach/{namespace}/{pod}/{container}` (`kubectl attach`, `kubectl debug -it`):
/// the same channels as an exec, joined to the container's own process through
/// [`ContainerRuntime::attach`]; the session ends when the container does (or the client
/// leaves, which leaves the container running).
pub(super) async fn serve_attach(
    State(runtime): State<Arc<dyn ContainerRuntime>>,
    axum::Extension(hops): axum::Extension<super::server::Hops>,
    axum::Extension(sessions): axum::Extension<super::server::Sessions>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let options = Options::streams(query.as_deref().unwrap_or_default());
    if !(options.stdin || options.stdout || options.stderr) {
        return (
            StatusCode::BAD_REQUEST,
            "you must specify at least 1 of stdin, stdout, stderr",
        )
            .into_response();
    }
    let id = match running(runtime.as_ref(), &namespace, &pod, &container).await {
        Ok(id) => id,
        Err(response) => return response,
    };
    let upgrade = match websocket(upgrade, "attach") {
        Ok(upgrade) => upgrade,
        Err(message) => return (StatusCode::BAD_REQUEST, message).into_response(),
    };
    let hop = crate::flow::FlowEvent::new(
        format!("kubelet/{}", hops.node),
        format!("runtime/{}", hops.node),
        "ATTACH",
    )
    .object("Pod", &namespace, &pod)
    .detail(format!("{container}: attach"));
    hops.flow.emit(hop);
    upgrade.protocols(PROTOCOLS).on_upgrade(move |socket| {
        sessions.run(async move {
            let started = runtime.attach(&id).await;
            session(socket, started, options).await;
        })
    })
}

/// The WebSocket upgrade an exec or attach (`what`) needs, or the kubelet's 400 words.
fn websocket(
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    what: &str,
) -> Result<WebSocketUpgrade, String> {
    upgrade.map_err(|rejection| {
        format!(
            "unable to upgrade: {what} needs a WebSocket ({V5} or {V4}); {}",
            rejection.body_text()
        )
    })
}

/// The running container called `container` in the pod, or the kubelet's 404.
async fn running(
    runtime: &dyn ContainerRuntime,
    namespace: &str,
    pod: &str,
    container: &str,
) -> Result<String, Response> {
    // Like the real kubelet, only running containers are found.
    if let Some(id) = runtime
        .find_container(namespace, pod, container, false)
        .await
        && let Ok(status) = runtime.container_status(&id).await
        && status.state == ContainerState::Running
    {
        return Ok(id);
    }
    Err((
        StatusCode::NOT_FOUND,
        format!("container not found ({container:?})"),
    )
        .into_response())
}

/// Serves `/exec/{namespace}/{pod}/{container}`.
pub(super) async fn serve(
    State(runtime): State<Arc<dyn ContainerRuntime>>,
    axum::Extension(hops): axum::Extension<super::server::Hops>,
    axum::Extension(sessions): axum::Extension<super::server::Sessions>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let options = match Options::parse(query.as_deref().unwrap_or_default()) {
        Ok(options) => options,
        Err(message) => return (StatusCode::BAD_REQUEST, message).into_response(),
    };
    let id = match running(runtime.as_ref(), &namespace, &pod, &container).await {
        Ok(id) => id,
        Err(response) => return response,
    };
    let upgrade = match websocket(upgrade, "exec") {
        Ok(upgrade) => upgrade,
        Err(message) => return (StatusCode::BAD_REQUEST, message).into_response(),
    };
    // One hop per exec a person (or a hook) asks for; probes exec through the runtime directly
    // and are not hops, or they would flood the flow.
    let hop = crate::flow::FlowEvent::new(
        format!("kubelet/{}", hops.node),
        format!("runtime/{}", hops.node),
        "EXEC",
    )
    .object("Pod", &namespace, &pod)
    .detail(format!("{container}: {}", options.command.join(" ")));
    hops.flow.emit(hop);
    upgrade.protocols(PROTOCOLS).on_upgrade(move |socket| {
        sessions.run(async move {
            let started = runtime
                .exec(
                    &id,
                    ExecRequest {
                        command: options.command.clone(),
                        stdin: options.stdin,
                        tty: options.tty,
                    },
                )
                .await;
            session(socket, started, options).await;
        })
    })
}

/// Copies one of the command's outputs to its channel until it ends.
async fn pump(mut from: Box<dyn AsyncRead + Send + Unpin>, channel: u8, to: mpsc::Sender<Message>) {
    let mut buffer = vec![0; 32 * 1024];
    loop {
        match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let message = Message::Binary(frame(channel, &buffer[..n]).into());
                if to.send(message).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The close message ending a session: status 1000, normal closure.
pub(super) fn normal_close() -> Message {
    Message::Close(Some(axum::extract::ws::CloseFrame {
        code: axum::extract::ws::close_code::NORMAL,
        reason: "".into(),
    }))
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Size {
    width: u16,
    height: u16,
}

async fn session(
    socket: WebSocket,
    started: Result<crate::runtime::ExecSession, RuntimeError>,
    options: Options,
) {
    let v5 = socket.protocol().is_some_and(|p| p == V5);
    let (mut sink, mut incoming) = socket.split();
    let (tx, mut rx) = mpsc::channel::<Message>(16);
    let writer = tokio::spawn(async move {
        while let Some(message) = rx.recv().await {
            if sink.send(message).await.is_err() {
                return;
            }
        }
        // A normal closure (1000) is how the client's channels see their end; a close
        // without a status (1005) is an error to client-go.
        let _ = sink.send(normal_close()).await;
        let _ = sink.close().await;
    });
    let command = options.command.clone();
    let session = match started {
        Ok(session) => session,
        Err(error) => {
            let status = exit_status(&command, &Err(error));
            let _ = tx
                .send(Message::Binary(
                    frame(channel::ERROR, status.to_string().as_bytes()).into(),
                ))
                .await;
            drop(tx);
            let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
            return;
        }
    };
    let mut stdin = session.stdin;
    let resize = session.resize;
    let input = async {
        while let Some(Ok(message)) = incoming.next().await {
            if let Message::Close(_) = message {
                break;
            }
            let Some(data) = data_of(&message) else {
                continue;
            };
            match unframe(data) {
                Some((channel::STDIN, data)) => {
                    if let Some(writer) = stdin.as_mut()
                        && !data.is_empty()
                        && writer.write_all(data).await.is_err()
                    {
                        stdin = None;
                    }
                }
                Some((channel::RESIZE, data)) => {
                    if let (Some(resize), Ok(size)) =
                        (resize.as_ref(), serde_json::from_slice::<Size>(data))
                    {
                        resize(size.width, size.height);
                    }
                }
                Some((channel::CLOSE, [channel::STDIN, ..])) if v5 => {
                    if let Some(mut writer) = stdin.take() {
                        let _ = writer.shutdown().await;
                    }
                }
                _ => {}
            }
        }
    };
    let output = async {
        let out = pump(session.stdout, channel::STDOUT, tx.clone());
        let err = async {
            if let Some(stderr) = session.stderr {
                pump(stderr, channel::STDERR, tx.clone()).await;
            }
        };
        tokio::join!(out, err);
        let result = session.exit.await;
        let status = exit_status(&command, &result);
        let _ = tx
            .send(Message::Binary(
                frame(channel::ERROR, status.to_string().as_bytes()).into(),
            ))
            .await;
    };
    tokio::select! {
        _ = output => {}
        _ = input => {}
    }
    drop(tx);
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_their_channel() {
        assert_eq!(frame(channel::STDOUT, b"hi"), b"\x01hi");
        assert_eq!(unframe(b"\x00data"), Some((channel::STDIN, &b"data"[..])));
        assert_eq!(unframe(b"\xff\x00"), Some((channel::CLOSE, &[0u8][..])));
        assert_eq!(unframe(b""), None);
        assert_eq!(frame(channel::RESIZE, b""), vec![4]);
        // Text messages carry their channel and data the same way.
        let text = Message::Text("\u{0}hello\n".into());
        assert_eq!(
            data_of(&text).and_then(unframe),
            Some((channel::STDIN, &b"hello\n"[..]))
        );
        let resize = Message::Text("\u{4}{\"Width\":80,\"Height\":24}".into());
        assert_eq!(
            data_of(&resize).and_then(unframe).map(|(c, _)| c),
            Some(channel::RESIZE)
        );
        assert_eq!(data_of(&Message::Ping(Default::default())), None);
    }

    #[test]
    fn options_from_the_query() {
        assert_eq!(
            Options::parse("command=sh&command=-c&command=exit+3&stdout=true&stderr=1&tty=false"),
            Ok(Options {
                command: vec!["sh".into(), "-c".into(), "exit 3".into()],
                stdin: false,
                stdout: true,
                stderr: true,
                tty: false,
            })
        );
        assert_eq!(
            Options::parse("stdout=true"),
            Err("you must specify at least 1 command".into())
        );
        assert_eq!(
            Options::parse("command=ls"),
            Err("you must specify at least 1 of stdin, stdout, stderr".into())
        );
    }

    #[test]
    fn exit_codes_become_statuses() {
        let command = vec!["sh".to_owned(), "-c".to_owned(), "exit 3".to_owned()];
        assert_eq!(
            exit_status(&command, &Ok(0)),
            json!({"metadata": {}, "status": "Success"})
        );
        let failed = exit_status(&command, &Ok(3));
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(
            failed["details"]["causes"],
            json!([{"reason": "ExitCode", "message": "3"}])
        );
        assert_eq!(
            failed["message"],
            "command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3"
        );
        let broken = exit_status(
            &command,
            &Err(RuntimeError::InvalidState {
                id: "c1".into(),
                state: "exited",
                action: "exec",
            }),
        );
        assert_eq!(broken["reason"], "InternalError");
        assert_eq!(
            broken["message"],
            "Internal error occurred: error executing command in container: container \"c1\" is exited: cannot exec"
        );
    }
}
