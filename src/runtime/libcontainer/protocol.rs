//! The CRI-shaped protocol between the kubelets' runtime client and the runtime helper: typed
//! requests and responses (serde enums) as JSON frames on a Unix stream socket.
//!
//! A frame is a 4-byte big-endian length, a 2-byte big-endian count of file descriptors, and
//! that many bytes of JSON. The descriptors (exec stdio, a terminal's master) travel with the
//! frame's first byte as `SCM_RIGHTS` ancillary data, so the reader collects every descriptor
//! it receives in a queue and takes a frame's descriptors from it once the frame is whole.
//! Requests carry an id; the helper answers each with a response of the same id, in any order
//! (a `WaitExit` answers when the container ends).

use std::collections::VecDeque;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use serde::{Deserialize, Serialize};
use tokio::io::Interest;
use tokio::net::UnixStream;

/// The largest frame either side accepts (a container's whole spec fits many times over).
pub const MAX_FRAME: usize = 16 << 20;

/// The most descriptors one frame carries.
const MAX_FDS: usize = 8;

/// What went wrong on the wire.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The socket failed.
    #[error("runtime helper socket: {0}")]
    Io(#[from] std::io::Error),
    /// The other side closed the socket.
    #[error("runtime helper socket closed")]
    Closed,
    /// A frame larger than [`MAX_FRAME`].
    #[error("frame of {0} bytes is larger than the limit")]
    TooLarge(usize),
    /// A frame that is not the JSON of a message.
    #[error("malformed frame: {0}")]
    Malformed(#[from] serde_json::Error),
    /// A frame announced descriptors that did not arrive.
    #[error("frame announced {announced} descriptors, {received} arrived")]
    MissingFds {
        /// How many the frame said it carries.
        announced: usize,
        /// How many were queued.
        received: usize,
    },
}

/// The process a container runs, resolved by the client from the image and the pod.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// The pod's namespace, name and uid, for the log directory and cgroup path.
    pub name: String,
    /// The container's attempt (CRI's `attempt`).
    pub attempt: u32,
    /// The image's id.
    pub image_id: String,
    /// The image reference as asked.
    pub image: String,
    /// The image's layers, bottom first.
    pub layers: Vec<PathBuf>,
    /// The process's arguments (Entrypoint/Cmd with command/args applied).
    pub args: Vec<String>,
    /// `NAME=value`, the image's overridden by the pod's, with a default `PATH`.
    pub env: Vec<String>,
    /// The working directory.
    pub cwd: String,
    /// The uid, if known numerically; else `user` is looked up in the rootfs.
    pub uid: Option<u32>,
    /// The gid, if set.
    pub gid: Option<u32>,
    /// The image's `User` when no uid was given (a name, or `name:group`).
    pub user: Option<String>,
    /// Host paths made visible in the container.
    pub mounts: Vec<MountSpec>,
    /// Capabilities, privilege and the root filesystem's writability.
    pub security: SecuritySpec,
    /// Cgroup limits.
    pub resources: ResourceSpec,
    /// Whether stdout is a terminal.
    pub tty: bool,
    /// Whether it takes input (`stdin: true`): a client may attach and write to it.
    #[serde(default)]
    pub stdin: bool,
    /// The container (by id) whose process namespace it joins (an ephemeral container's
    /// `targetContainerName`).
    #[serde(default)]
    pub target: Option<String>,
}

/// A bind mount into a container.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    /// The host path.
    pub source: PathBuf,
    /// Where it appears.
    pub destination: String,
    /// Read-only.
    pub read_only: bool,
}

/// `runtime::Security` on the wire.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecuritySpec {
    /// Every capability, no masked or read-only paths.
    pub privileged: bool,
    /// Capabilities to add, without `CAP_`.
    pub add: Vec<String>,
    /// Capabilities to drop (`ALL`), without `CAP_`.
    pub drop: Vec<String>,
    /// `no_new_privs`.
    pub no_new_privileges: bool,
    /// A read-only root filesystem.
    pub read_only_root: bool,
    /// The OCI `linux.seccomp` profile, resolved by the client; `None`: unconfined.
    #[serde(default)]
    pub seccomp: Option<serde_json::Value>,
}

/// `runtime::Resources` on the wire.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceSpec {
    /// Bytes.
    pub memory_limit: Option<i64>,
    /// Millicores.
    pub cpu_limit_millis: Option<i64>,
    /// Millicores.
    pub cpu_request_millis: Option<i64>,
    /// Processes.
    pub pids_limit: Option<i64>,
}

/// A sandbox on the wire: the pod and its pause process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxSpec {
    /// The pod's uid.
    pub uid: String,
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// Its hostname.
    pub hostname: String,
    /// Its node.
    pub node: String,
    /// The node's pod CIDR.
    pub pod_cidr: String,
    /// resolv.conf search domains.
    pub dns_search: Vec<String>,
    /// resolv.conf nameservers (empty: the host's).
    pub dns_servers: Vec<String>,
    /// resolv.conf options.
    #[serde(default)]
    pub dns_options: Vec<String>,
    /// The pause container.
    pub pause: ContainerSpec,
}

/// What the client asks the helper.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Creates a sandbox: network, files, pause container started.
    RunPodSandbox(Box<SandboxSpec>),
    /// Kills every container of the sandbox and its pause container.
    StopPodSandbox {
        /// The sandbox.
        id: String,
    },
    /// Removes a stopped sandbox, its containers, network, files, logs and cgroups.
    RemovePodSandbox {
        /// The sandbox.
        id: String,
    },
    /// Every sandbox.
    ListPodSandboxes,
    /// Creates a container in a sandbox.
    CreateContainer {
        /// The sandbox.
        sandbox: String,
        /// What to run.
        spec: Box<ContainerSpec>,
    },
    /// Starts a created container.
    StartContainer {
        /// The container.
        id: String,
    },
    /// Sends a signal to a container's processes.
    Kill {
        /// The container.
        id: String,
        /// The signal's number.
        signal: i32,
    },
    /// Answers once the container has exited (and its output is written).
    WaitExit {
        /// The container.
        id: String,
    },
    /// Removes an exited or created container (its log stays).
    RemoveContainer {
        /// The container.
        id: String,
    },
    /// A container's status.
    ContainerStatus {
        /// The container.
        id: String,
    },
    /// Attaches to a running container's streams (and input, if it takes any).
    Attach {
        /// The container.
        id: String,
    },
    /// A running container's resource use, from its cgroup.
    ContainerStats {
        /// The container.
        id: String,
    },
    /// Every container of a sandbox, removed ones included when asked.
    ListContainers {
        /// The sandbox.
        sandbox: String,
        /// Include removed containers whose logs are kept.
        removed: bool,
    },
    /// Runs a process in a running container; the response carries its stdio descriptors
    /// (stdin when asked, stdout, stderr) or, with a terminal, the terminal's master.
    Exec {
        /// The container.
        id: String,
        /// The command.
        command: Vec<String>,
        /// Whether the caller writes stdin.
        stdin: bool,
        /// Whether it gets a terminal.
        tty: bool,
    },
    /// Answers with an exec's exit code once it has ended.
    WaitExec {
        /// The exec.
        exec: u64,
    },
    /// Puts a node on the pod network before its first pod (the bridge and the node's
    /// gateway, its address); answers `Address`, or `Ok` when pods get no network of their own.
    PrepareNode {
        /// The node's pod CIDR.
        pod_cidr: String,
    },
    /// Stops every container, removes everything, and exits.
    Shutdown,
}

/// A sandbox as the helper lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxInfo {
    /// Its id.
    pub id: String,
    /// Its config (without the pause process).
    pub spec: SandboxSpec,
    /// The pod's IP.
    pub ip: Option<String>,
    /// Up (pause running, network set).
    pub ready: bool,
}

/// A container's state as the helper has it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerInfo {
    /// Its id.
    pub id: String,
    /// Its sandbox.
    pub sandbox: String,
    /// Its name in the pod.
    pub name: String,
    /// Its attempt.
    pub attempt: u32,
    /// `created`, `running`, `exited`.
    pub state: String,
    /// Unix nanoseconds.
    pub created_at: i64,
    /// Unix nanoseconds.
    pub started_at: Option<i64>,
    /// Unix nanoseconds.
    pub finished_at: Option<i64>,
    /// Exit code (128 + signal when killed).
    pub exit_code: Option<i32>,
    /// `Completed`, `Error`, `OOMKilled`.
    pub reason: Option<String>,
    /// Its CRI log file.
    pub log_path: PathBuf,
    /// Removed (only its log is left).
    pub removed: bool,
}

/// A container's resource use as its cgroup counts it (see [`super::stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// CPU time, nanoseconds, cumulative.
    pub cpu_usage_core_nanos: u64,
    /// Memory in use, page cache included.
    pub memory_usage_bytes: u64,
    /// Usage less inactive file pages.
    pub memory_working_set_bytes: u64,
    /// Anonymous memory.
    pub memory_rss_bytes: u64,
    /// Page faults.
    pub page_faults: u64,
    /// Major page faults.
    pub major_page_faults: u64,
}

/// What the helper answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    /// Done.
    Ok,
    /// An address on the host (a node's, from `PrepareNode`).
    Address {
        /// The address.
        ip: std::net::Ipv4Addr,
    },
    /// A new id (sandbox or container).
    Id {
        /// The id.
        id: String,
    },
    /// A sandbox list.
    Sandboxes {
        /// The sandboxes.
        sandboxes: Vec<SandboxInfo>,
    },
    /// One container.
    Container(Box<ContainerInfo>),
    /// A container's resource use.
    Stats(Usage),
    /// Attached: the descriptors travel with this frame (the input if `stdin`, stdout, and
    /// stderr without a terminal).
    Attached {
        /// Whether the container has a terminal.
        tty: bool,
        /// Whether it takes input.
        stdin: bool,
    },
    /// Several containers.
    Containers {
        /// The containers.
        containers: Vec<ContainerInfo>,
    },
    /// An exec started; its descriptors travel with this frame.
    ExecStarted {
        /// Its id, for `WaitExec`.
        exec: u64,
    },
    /// An exit code.
    Exited {
        /// The code.
        code: i32,
    },
    /// Not found.
    NotFound {
        /// `sandbox`, `container` or `exec`.
        kind: String,
        /// The id.
        id: String,
    },
    /// The container's state does not allow it.
    InvalidState {
        /// The container.
        id: String,
        /// Its state.
        state: String,
        /// What was asked.
        action: String,
    },
    /// Failed, with the helper's words.
    Failed {
        /// What was being done.
        action: String,
        /// What went wrong.
        message: String,
    },
}

/// One frame: a request or response with its id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// The request id the response answers.
    pub id: u64,
    /// The message.
    pub body: T,
}

/// Encodes a frame's bytes: length, descriptor count, JSON.
pub fn encode<T: Serialize>(message: &T, fds: usize) -> Result<Vec<u8>, ProtocolError> {
    let json = serde_json::to_vec(message)?;
    if json.len() > MAX_FRAME {
        return Err(ProtocolError::TooLarge(json.len()));
    }
    let mut frame = Vec::with_capacity(json.len() + 6);
    frame.extend_from_slice(&(json.len() as u32).to_be_bytes());
    frame.extend_from_slice(&(fds as u16).to_be_bytes());
    frame.extend_from_slice(&json);
    Ok(frame)
}

/// Takes one whole frame off the front of `buffer`, if there is one: its JSON and descriptor
/// count.
pub fn decode(buffer: &mut Vec<u8>) -> Result<Option<(Vec<u8>, usize)>, ProtocolError> {
    if buffer.len() < 6 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buffer[0], buffer[1], buffer[2], buffer[3]]) as usize;
    if len > MAX_FRAME {
        return Err(ProtocolError::TooLarge(len));
    }
    let fds = u16::from_be_bytes([buffer[4], buffer[5]]) as usize;
    if buffer.len() < 6 + len {
        return Ok(None);
    }
    let json = buffer[6..6 + len].to_vec();
    buffer.drain(..6 + len);
    Ok(Some((json, fds)))
}

/// The reading half of a connection: frames and the descriptors that came with them.
pub struct Reader {
    stream: std::sync::Arc<UnixStream>,
    buffer: Vec<u8>,
    fds: VecDeque<OwnedFd>,
}

/// The writing half of a connection.
#[derive(Clone)]
pub struct Writer {
    stream: std::sync::Arc<UnixStream>,
    lock: std::sync::Arc<tokio::sync::Mutex<()>>,
}

/// Splits a connected socket into its reading and writing halves.
pub fn split(stream: UnixStream) -> (Reader, Writer) {
    let stream = std::sync::Arc::new(stream);
    (
        Reader {
            stream: stream.clone(),
            buffer: Vec::new(),
            fds: VecDeque::new(),
        },
        Writer {
            stream,
            lock: Default::default(),
        },
    )
}

impl Reader {
    /// The next message and its descriptors; [`ProtocolError::Closed`] at the end.
    pub async fn next<T: for<'de> Deserialize<'de>>(
        &mut self,
    ) -> Result<(T, Vec<OwnedFd>), ProtocolError> {
        loop {
            if let Some((json, count)) = decode(&mut self.buffer)? {
                if self.fds.len() < count {
                    return Err(ProtocolError::MissingFds {
                        announced: count,
                        received: self.fds.len(),
                    });
                }
                let fds = self.fds.drain(..count).collect();
                return Ok((serde_json::from_slice(&json)?, fds));
            }
            let mut chunk = [0u8; 64 * 1024];
            let (n, fds) = self
                .stream
                .async_io(Interest::READABLE, || {
                    recv_with_fds(self.stream.as_raw_fd(), &mut chunk)
                })
                .await?;
            self.fds.extend(fds);
            if n == 0 {
                return Err(ProtocolError::Closed);
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }
}

impl Writer {
    /// Sends a message with descriptors (which the other side receives as new descriptors;
    /// these are closed here once sent).
    pub async fn send<T: Serialize>(
        &self,
        message: &T,
        fds: Vec<OwnedFd>,
    ) -> Result<(), ProtocolError> {
        let frame = encode(message, fds.len())?;
        let _guard = self.lock.lock().await;
        let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
        let mut sent = 0;
        while sent < frame.len() {
            let with = if sent == 0 { &raw[..] } else { &[][..] };
            sent += self
                .stream
                .async_io(Interest::WRITABLE, || {
                    send_with_fds(self.stream.as_raw_fd(), &frame[sent..], with)
                })
                .await?;
        }
        Ok(())
    }
}

fn send_with_fds(socket: RawFd, bytes: &[u8], fds: &[RawFd]) -> std::io::Result<usize> {
    let iov = [IoSlice::new(bytes)];
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &rights };
    sendmsg::<()>(socket, &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None).map_err(std::io::Error::from)
}

fn recv_with_fds(socket: RawFd, buffer: &mut [u8]) -> std::io::Result<(usize, Vec<OwnedFd>)> {
    let mut iov = [IoSliceMut::new(buffer)];
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let message = recvmsg::<()>(
        socket,
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(std::io::Error::from)?;
    let mut fds = Vec::new();
    for cmsg in message.cmsgs().map_err(std::io::Error::from)? {
        if let ControlMessageOwned::ScmRights(received) = cmsg {
            // SAFETY: the kernel just installed these descriptors in this process for us; no
            // one else owns them.
            fds.extend(
                received
                    .into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    Ok((message.bytes, fds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_in_pieces() {
        let request = Envelope {
            id: 7,
            body: Request::Kill {
                id: "abc".into(),
                signal: 15,
            },
        };
        let frame = encode(&request, 2).unwrap();
        assert_eq!(&frame[..4], &((frame.len() - 6) as u32).to_be_bytes());
        assert_eq!(&frame[4..6], &[0, 2]);
        // Byte by byte: nothing until the frame is whole, then exactly it.
        let mut buffer = Vec::new();
        for (i, byte) in frame.iter().enumerate() {
            buffer.push(*byte);
            let decoded = decode(&mut buffer).unwrap();
            if i + 1 < frame.len() {
                assert!(decoded.is_none(), "decoded early at byte {i}");
            } else {
                let (json, fds) = decoded.unwrap();
                assert_eq!(fds, 2);
                let back: Envelope<Request> = serde_json::from_slice(&json).unwrap();
                assert_eq!(back, request);
            }
        }
        assert!(buffer.is_empty());
    }

    #[test]
    fn two_frames_in_one_read_come_apart() {
        let a = encode(
            &Envelope {
                id: 1,
                body: Response::Ok,
            },
            0,
        )
        .unwrap();
        let b = encode(
            &Envelope {
                id: 2,
                body: Response::Exited { code: 3 },
            },
            0,
        )
        .unwrap();
        let mut buffer = [a, b].concat();
        let (first, _) = decode(&mut buffer).unwrap().unwrap();
        let (second, _) = decode(&mut buffer).unwrap().unwrap();
        assert!(decode(&mut buffer).unwrap().is_none());
        let first: Envelope<Response> = serde_json::from_slice(&first).unwrap();
        let second: Envelope<Response> = serde_json::from_slice(&second).unwrap();
        assert_eq!((first.id, second.body), (1, Response::Exited { code: 3 }));
    }

    #[test]
    fn oversized_frames_are_refused() {
        let mut buffer = ((MAX_FRAME + 1) as u32).to_be_bytes().to_vec();
        buffer.extend_from_slice(&[0, 0]);
        assert!(matches!(
            decode(&mut buffer),
            Err(ProtocolError::TooLarge(_))
        ));
    }

    #[tokio::test]
    async fn descriptors_travel_with_their_frame() {
        use std::io::{Read, Write};
        let (a, b) = UnixStream::pair().unwrap();
        let (_, writer) = split(a);
        let (mut reader, _) = split(b);
        let (pipe_r, pipe_w) = nix::unistd::pipe().unwrap();
        writer
            .send(
                &Envelope {
                    id: 1,
                    body: Response::ExecStarted { exec: 9 },
                },
                vec![pipe_w],
            )
            .await
            .unwrap();
        writer
            .send(
                &Envelope {
                    id: 2,
                    body: Response::Ok,
                },
                vec![],
            )
            .await
            .unwrap();
        let (first, fds): (Envelope<Response>, _) = reader.next().await.unwrap();
        assert_eq!(first.body, Response::ExecStarted { exec: 9 });
        assert_eq!(fds.len(), 1);
        // The received descriptor is the pipe's write end.
        let mut write_end = std::fs::File::from(fds.into_iter().next().unwrap());
        write_end.write_all(b"hi").unwrap();
        drop(write_end);
        let mut text = String::new();
        std::fs::File::from(pipe_r)
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "hi");
        let (second, fds): (Envelope<Response>, _) = reader.next().await.unwrap();
        assert_eq!((second.id, fds.len()), (2, 0));
        drop(writer);
        assert!(matches!(
            reader.next::<Envelope<Response>>().await,
            Err(ProtocolError::Closed)
        ));
    }
}
