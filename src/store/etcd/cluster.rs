//! A real etcd cluster on this machine (`--store etcd-cluster=N`): N members of Debian's `etcd`
//! as child processes on 127.0.0.1, named `etcd-1` .. `etcd-N`, for the lesson on quorum.
//!
//! [`EtcdCluster::open`] lays the cluster out in `<state-dir>/etcd`: `cluster.json` records
//! the members' client and peer ports (free ones, picked the first time) and the cluster token,
//! so a member started again, and the whole cluster at the next `orrery up`, comes back on the
//! same addresses that the others (and its own data) know it by. Each member's data is
//! `<state-dir>/etcd/<member>` (`--initial-cluster-state existing` once it has some), its log
//! `<state-dir>/etcd/<member>.log`.
//!
//! [`EtcdCluster::start`] starts one member and hands back a [`Member`] whose drop kills it
//! (SIGKILL, as a crash would; etcd has fsynced everything it acknowledged). Every member is
//! spawned by one long-lived thread with `PR_SET_PDEATHSIG`: when the process that started them
//! dies, even by SIGKILL, the kernel kills them too, so no member outlives its cluster. They run
//! in a process group of their own, so a terminal's Ctrl-C reaches `orrery up` (which stops them
//! in order) and not them. [`LocalEtcd`](super::LocalEtcd), the private etcd of the tests and
//! the benchmark, is a one-member [`MemberSpec`] too.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::store::{Error, Result};

/// The largest request a member accepts: room for a 1.5 MiB value and, for a restore (one
/// transaction), a lesson-sized store's worth of keys.
pub const MAX_REQUEST_BYTES: usize = 32 << 20;
/// The most operations one transaction may have: a restore writes a store's changed keys in one.
pub const MAX_TXN_OPS: usize = 100_000;
/// How long [`EtcdCluster::wait_until_serving`] waits for a leader.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// One member: its name, data directory and ports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberSpec {
    /// `etcd-1`.
    pub name: String,
    /// Its client port on 127.0.0.1.
    pub client_port: u16,
    /// Its peer port on 127.0.0.1.
    pub peer_port: u16,
    /// Its data directory (not recorded: always under the cluster's directory).
    #[serde(skip)]
    pub data_dir: PathBuf,
}

/// How a member joins: the first time (`new`) or with data of its own (`existing`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterState {
    /// `--initial-cluster-state new`.
    New,
    /// `--initial-cluster-state existing`.
    Existing,
}

impl MemberSpec {
    /// Its client URL, `http://127.0.0.1:<port>`.
    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// Its peer URL.
    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    /// Whether its data directory holds a member already.
    pub fn has_data(&self) -> bool {
        self.data_dir.join("member").is_dir()
    }

    /// The `etcd` command line that runs this member of `initial_cluster` (the members'
    /// `name=peer-url` list), as kubeadm's etcd manifest writes it, with Orrery's limits.
    pub fn command(&self, initial_cluster: &str, state: ClusterState, token: &str) -> Command {
        let mut command = Command::new("etcd");
        command
            .arg(format!("--name={}", self.name))
            .arg(format!("--data-dir={}", self.data_dir.display()));
        for arg in self.flags(initial_cluster, state, token) {
            command.arg(arg);
        }
        command
    }

    /// The member's flags after `--name` and `--data-dir`, as its static pod shows them.
    pub fn flags(&self, initial_cluster: &str, state: ClusterState, token: &str) -> Vec<String> {
        let (client, peer) = (self.client_url(), self.peer_url());
        vec![
            format!("--advertise-client-urls={client}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster={initial_cluster}"),
            format!(
                "--initial-cluster-state={}",
                match state {
                    ClusterState::New => "new",
                    ClusterState::Existing => "existing",
                }
            ),
            format!("--initial-cluster-token={token}"),
            format!("--listen-client-urls={client}"),
            format!("--listen-peer-urls={peer}"),
            "--logger=zap".to_owned(),
            format!("--max-request-bytes={MAX_REQUEST_BYTES}"),
            format!("--max-txn-ops={MAX_TXN_OPS}"),
        ]
    }
}

/// The `--initial-cluster` list of `members`: `etcd-1=http://127.0.0.1:P1,...`.
pub fn initial_cluster(members: &[MemberSpec]) -> String {
    members
        .iter()
        .map(|m| format!("{}={}", m.name, m.peer_url()))
        .collect::<Vec<_>>()
        .join(",")
}

/// What `<state-dir>/etcd/cluster.json` records.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Layout {
    token: String,
    members: Vec<MemberSpec>,
}

/// A request to the spawner thread.
type Spawn = (Command, oneshot::Sender<std::io::Result<Child>>);

/// An etcd cluster laid out in a state directory, whose members this process starts.
pub struct EtcdCluster {
    dir: PathBuf,
    token: String,
    members: Vec<MemberSpec>,
    spawner: mpsc::Sender<Spawn>,
}

/// A running member: killed (and reaped) when dropped.
pub struct Member {
    name: String,
    child: Child,
}

impl Member {
    /// The member's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its exit status, if it has exited on its own.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            tracing::debug!(member = %self.name, "etcd member stopped");
        }
    }
}

/// An error of the cluster in `dir`.
fn error_in(dir: &Path) -> impl Fn(String) -> Error + '_ {
    move |message| Error::EtcdCluster {
        dir: dir.to_owned(),
        message,
    }
}

/// The cluster's directory in a state directory.
pub fn cluster_dir(state_dir: &Path) -> PathBuf {
    crate::store::etcd_cluster_dir(state_dir)
}

/// Free ports on 127.0.0.1, `n` different ones (all bound at once, then released).
fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}

impl EtcdCluster {
    /// The cluster of `members` members in `state_dir`: as recorded there, or laid out now with
    /// free ports. A state directory whose cluster has another number of members is refused
    /// (etcd's membership is in the members' data).
    pub fn open(state_dir: &Path, members: usize) -> Result<EtcdCluster> {
        let dir = cluster_dir(state_dir);
        let failed = error_in(&dir);
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(&dir)
            .map_err(|e| failed(format!("cannot create {}: {e}", dir.display())))?;
        let file = dir.join("cluster.json");
        let layout = match std::fs::read(&file) {
            Ok(bytes) => {
                let layout: Layout = serde_json::from_slice(&bytes)
                    .map_err(|e| failed(format!("{}: {e}", file.display())))?;
                if layout.members.len() != members {
                    return Err(failed(format!(
                        "it has {} members (cluster.json), not {members}: start it with --store \
                         etcd-cluster={}, or use another state directory",
                        layout.members.len(),
                        layout.members.len()
                    )));
                }
                layout
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let ports =
                    free_ports(2 * members).map_err(|e| failed(format!("free ports: {e}")))?;
                let layout = Layout {
                    token: format!("orrery-{}", uuid::Uuid::new_v4().simple()),
                    members: (0..members)
                        .map(|i| MemberSpec {
                            name: format!("etcd-{}", i + 1),
                            client_port: ports[2 * i],
                            peer_port: ports[2 * i + 1],
                            data_dir: PathBuf::new(),
                        })
                        .collect(),
                };
                let text = serde_json::to_vec_pretty(&layout).expect("serializable");
                let temporary = dir.join(".cluster.json.tmp");
                std::fs::write(&temporary, text)
                    .and_then(|()| std::fs::rename(&temporary, &file))
                    .map_err(|e| failed(format!("{}: {e}", file.display())))?;
                layout
            }
            Err(e) => return Err(failed(format!("{}: {e}", file.display()))),
        };
        let members = layout
            .members
            .into_iter()
            .map(|m| MemberSpec {
                data_dir: dir.join(&m.name),
                ..m
            })
            .collect();
        let spawner = spawner().map_err(&failed)?;
        drop(failed);
        Ok(EtcdCluster {
            dir,
            token: layout.token,
            members,
            spawner,
        })
    }

    /// The members, `etcd-1` first.
    pub fn members(&self) -> &[MemberSpec] {
        &self.members
    }

    /// Every member's client URL.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(MemberSpec::client_url).collect()
    }

    /// The cluster token (`--initial-cluster-token`).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Member `name`'s log file.
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }

    /// The member named `name`.
    pub fn member(&self, name: &str) -> Option<&MemberSpec> {
        self.members.iter().find(|m| m.name == name)
    }

    /// How member `spec` joins the cluster now.
    pub fn state_of(&self, spec: &MemberSpec) -> ClusterState {
        if spec.has_data() {
            ClusterState::Existing
        } else {
            ClusterState::New
        }
    }

    /// Starts member `name` on its data and ports, its output appended to its log.
    pub async fn start(&self, name: &str) -> Result<Member> {
        let failed = error_in(&self.dir);
        let spec = self
            .member(name)
            .ok_or_else(|| failed(format!("no member named {name:?}")))?;
        let log_path = self.log_path(name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| failed(format!("{}: {e}", log_path.display())))?;
        let stderr = log
            .try_clone()
            .map_err(|e| failed(format!("{}: {e}", log_path.display())))?;
        let mut command = spec.command(
            &initial_cluster(&self.members),
            self.state_of(spec),
            &self.token,
        );
        command
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .process_group(0);
        let (reply, child) = oneshot::channel();
        self.spawner
            .send((command, reply))
            .map_err(|_| failed("the member spawner has stopped".into()))?;
        let child = child
            .await
            .map_err(|_| failed("the member spawner has stopped".into()))?
            .map_err(|e| {
                failed(format!(
                    "cannot start `etcd` for {name} (apt-get install etcd-server): {e}"
                ))
            })?;
        tracing::debug!(member = name, pid = child.id(), "etcd member started");
        Ok(Member {
            name: name.to_owned(),
            child,
        })
    }

    /// Waits until the cluster serves writes (a leader, and a quorum read answered), for at most
    /// 30 s; `running` are the members started, whose early exit is reported with their log.
    pub async fn wait_until_serving(&self, running: &mut [Member]) -> Result<()> {
        let failed = error_in(&self.dir);
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        let store = super::EtcdStore::connect_lazy(&self.endpoints()).await?;
        loop {
            for member in running.iter_mut() {
                if let Some(status) = member.exited() {
                    return Err(failed(format!(
                        "{} exited with {status}; its log is {}",
                        member.name,
                        self.log_path(&member.name).display()
                    )));
                }
            }
            let error = match store.quorum_read().await {
                Ok(()) => return Ok(()),
                Err(e) => e.to_string(),
            };
            if tokio::time::Instant::now() > deadline {
                return Err(failed(format!(
                    "the etcd cluster did not serve within {} s: {error} (logs in {})",
                    START_TIMEOUT.as_secs(),
                    self.dir.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Starts every member and waits until the cluster serves (for `orrery store` while no
    /// cluster runs); the members stop when the returned ones are dropped.
    pub async fn start_all(&self) -> Result<Vec<Member>> {
        let mut running = Vec::new();
        for spec in &self.members {
            running.push(self.start(&spec.name).await?);
        }
        self.wait_until_serving(&mut running).await?;
        Ok(running)
    }
}

/// The thread every member is spawned from: `PR_SET_PDEATHSIG` fires when the thread that
/// spawned a child ends, so it must be one that lives as long as the members may. It ends when
/// the last [`EtcdCluster`] holding it is dropped, after its members.
fn spawner() -> Result<mpsc::Sender<Spawn>, String> {
    let (tx, rx) = mpsc::channel::<Spawn>();
    std::thread::Builder::new()
        .name("etcd-spawner".into())
        .spawn(move || {
            let parent = nix::unistd::getpid();
            for (mut command, reply) in rx {
                // SAFETY: between fork and exec only async-signal-safe calls are made (prctl,
                // getppid, kill on itself).
                unsafe {
                    command.pre_exec(move || {
                        nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
                        // The parent died before the line above: nothing would kill us later.
                        if nix::unistd::getppid() != parent {
                            return Err(std::io::Error::other("orrery exited"));
                        }
                        Ok(())
                    });
                }
                let _ = reply.send(command.spawn());
            }
        })
        .map_err(|e| format!("cannot start the member spawner: {e}"))?;
    Ok(tx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_is_laid_out_once_and_found_again() {
        let dir = tempfile::tempdir().unwrap();
        let cluster = EtcdCluster::open(dir.path(), 3).unwrap();
        let names: Vec<&str> = cluster.members().iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["etcd-1", "etcd-2", "etcd-3"]);
        let mut ports: Vec<u16> = cluster
            .members()
            .iter()
            .flat_map(|m| [m.client_port, m.peer_port])
            .collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 6, "six different ports");
        assert_eq!(
            cluster.members()[1].data_dir,
            dir.path().join("etcd").join("etcd-2")
        );
        let spec = &cluster.members()[0];
        assert_eq!(cluster.state_of(spec), ClusterState::New);
        let command = spec.flags(&initial_cluster(cluster.members()), ClusterState::New, "t");
        assert!(command.contains(&format!(
            "--initial-cluster=etcd-1=http://127.0.0.1:{},etcd-2=http://127.0.0.1:{},etcd-3=http://127.0.0.1:{}",
            cluster.members()[0].peer_port,
            cluster.members()[1].peer_port,
            cluster.members()[2].peer_port
        )));
        assert!(command.contains(&"--initial-cluster-state=new".to_owned()));
        // Found again with the same ports and token.
        let again = EtcdCluster::open(dir.path(), 3).unwrap();
        assert_eq!(again.members(), cluster.members());
        assert_eq!(again.token(), cluster.token());
        // With data, a member joins as existing.
        std::fs::create_dir_all(spec.data_dir.join("member")).unwrap();
        assert_eq!(again.state_of(&again.members()[0]), ClusterState::Existing);
        // Another size is refused, saying what the directory holds.
        let error = EtcdCluster::open(dir.path(), 5).err().unwrap().to_string();
        assert!(
            error.contains("has 3 members") && error.contains("--store etcd-cluster=3"),
            "{error}"
        );
    }
}
