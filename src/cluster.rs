//! `orrery up`: starts a cluster in this process and keeps it up until Ctrl-C, SIGTERM or
//! `orrery down`. It opens the store, generates or loads the certificates, starts the API server
//! on 127.0.0.1 with the store's compactor and the scheduler (an in-process API client), writes
//! the kubeconfig, and records its pid and port in the state directory so that `orrery down`
//! (and later `orrery tui`) can find it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};

use crate::apiserver::{ApiServer, kubeconfig, server};
use crate::complog::{Component, Instance};
use crate::control_plane;
use crate::controllers;
use crate::controllers::daemonset::DaemonSetController;
use crate::controllers::deployment::DeploymentController;
use crate::controllers::endpointslice::{EndpointSliceController, KubernetesService};
use crate::controllers::garbagecollector::GarbageCollector;
use crate::controllers::job::JobController;
use crate::controllers::namespace::NamespaceController;
use crate::controllers::nodelifecycle::NodeLifecycleController;
use crate::controllers::replicaset::ReplicaSetController;
use crate::controllers::serviceaccount::ServiceAccountController;
use crate::controllers::statefulset::StatefulSetController;
use crate::flow::Flow;
use crate::images::ImageStore;
use crate::kubelet::{ControlPlane, DEFAULT_POD_PIDS_LIMIT, Kubelet, NodeConfig};
use crate::leaderelection::{self, Candidate, LeaderElector};
use crate::pki::Pki;
use crate::proxy::{KubeProxy, ProxyConfig, ProxyError, ProxyMode};
use crate::runtime::ContainerRuntime;
use crate::runtime::libcontainer::{LibcontainerRuntime, RuntimeOptions};
use crate::runtime::sim::{SimOptions, SimRuntime};
use crate::scheduler::run::Scheduler;
use crate::store::compactor::{CompactionPolicy, Compactor};
use crate::store::{self, StoreUrl};
use crate::supervisor::{Role, Supervisor};
use futures::FutureExt;

/// What `orrery up` was asked for.
#[derive(Clone, Debug)]
pub struct UpOptions {
    /// The cluster's name: its kubeconfig context, and later its cgroup and network names.
    pub name: String,
    /// Where the cluster keeps its state.
    pub state_dir: PathBuf,
    /// The API server's port on 127.0.0.1 (0: any free port).
    pub port: u16,
    /// The store.
    pub store: StoreUrl,
    /// How much store history to keep.
    pub compaction: CompactionPolicy,
    /// Whether to merge the context into the user's kubeconfig.
    pub merge_kubeconfig: bool,
    /// How many virtual worker nodes (kubelets) to run; with any, the control-plane node too.
    pub nodes: u16,
    /// Each node's CPU capacity (`4`).
    pub node_cpu: String,
    /// Each node's memory capacity (`8Gi`).
    pub node_memory: String,
    /// The kubelets' `--node-lease-duration-seconds` (they renew every quarter of it).
    pub node_lease_duration_seconds: u32,
    /// The node lifecycle controller's `--node-monitor-grace-period`.
    pub node_monitor_grace_period: Duration,
    /// How often the metrics server reads the kubelets (`--metrics-resolution`).
    pub metrics_resolution: Duration,
    /// How often the HPA controller looks at every HPA
    /// (`--horizontal-pod-autoscaler-sync-period`).
    pub horizontal_pod_autoscaler_sync_period: Duration,
    /// The API server's `--default-not-ready-toleration-seconds`.
    pub default_not_ready_toleration_seconds: u32,
    /// The API server's `--default-unreachable-toleration-seconds`.
    pub default_unreachable_toleration_seconds: u32,
    /// The kubelets' container runtime.
    pub runtime: RuntimeChoice,
    /// The pod network, one `/24` per node (`--cluster-cidr`).
    pub cluster_cidr: crate::kubelet::ClusterCidr,
    /// The cluster's DNS domain (`--cluster-domain`, `cluster.local`).
    pub cluster_domain: String,
    /// The ingress controller's HTTP and HTTPS ports on 127.0.0.1 (`--ingress-port`,
    /// `--ingress-https-port`; 0: any free port).
    pub ingress_ports: (u16, u16),
    /// How many schedulers compete for the `kube-scheduler` Lease (`--schedulers`): one is
    /// `scheduler`, more are `scheduler-1` .. `scheduler-N`.
    pub schedulers: u16,
    /// How many controller managers compete for the `kube-controller-manager` Lease
    /// (`--controller-managers`), named as the schedulers are.
    pub controller_managers: u16,
    /// Their leader election's lease duration, renew deadline and retry period
    /// (`--leader-elect-lease-duration`, ...).
    pub leader_election: crate::leaderelection::Timings,
}

/// The replicas of a component that elects a leader, `n` of them: the only one
/// (`scheduler`, as before there were replicas), or `scheduler-1` .. `scheduler-N`.
pub fn replicas(component: Component, n: u16) -> Vec<Instance> {
    if n <= 1 {
        vec![Instance::from(component)]
    } else {
        (1..=n).map(|i| Instance::replica(component, i)).collect()
    }
}

/// The tasks a leader started, aborted when it stops leading.
struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Which container runtime the kubelets drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeChoice {
    /// Real containers through libcontainer, in the runtime helper process (needs root).
    Libcontainer,
    /// Simulated containers (`--runtime sim`).
    Sim,
}

impl RuntimeChoice {
    /// The runtime for `--runtime` as given (`None`: not given), for a user who is or is not
    /// root: real containers by default, and never a silent fallback to simulated ones. A
    /// cluster without nodes runs no containers and needs no root.
    pub fn resolve(flag: Option<&str>, root: bool, nodes: u16) -> Result<RuntimeChoice, String> {
        match flag {
            Some("sim") => Ok(RuntimeChoice::Sim),
            _ if nodes == 0 => Ok(RuntimeChoice::Libcontainer),
            _ if root => Ok(RuntimeChoice::Libcontainer),
            Some(_) | None => Err(
                "real containers (--runtime libcontainer, the default) need root: libcontainer \
                 creates namespaces, cgroups, mounts and the pod network. Run orrery up with \
                 sudo, or pass --runtime sim for simulated containers"
                    .into(),
            ),
        }
    }
}

/// What went wrong starting or stopping a cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// The certificates could not be made or read.
    #[error(transparent)]
    Pki(#[from] crate::pki::PkiError),
    /// A kubeconfig could not be written.
    #[error(transparent)]
    Kubeconfig(#[from] kubeconfig::KubeconfigError),
    /// The API server could not create the cluster's first objects.
    #[error(transparent)]
    Bootstrap(#[from] crate::apiserver::BootstrapError),
    /// The port could not be bound.
    #[error("cannot listen on 127.0.0.1:{port}: {source}")]
    Listen {
        /// The port.
        port: u16,
        /// The error.
        source: std::io::Error,
    },
    /// A state file could not be read or written.
    #[error("{path}: {source}")]
    StateFile {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// No cluster is running for this state directory.
    #[error("no cluster is running with state directory {0} (no orrery.pid there)")]
    NotRunning(PathBuf),
    /// The running cluster's control request could not be made.
    #[error("{0}")]
    Control(String),
    /// The running cluster answered a control request with an error Status.
    #[error("{message}")]
    Refused {
        /// The HTTP status code.
        code: u16,
        /// The Status's message.
        message: String,
    },
    /// The image store could not be opened.
    #[error(transparent)]
    Images(#[from] crate::images::ImageError),
    /// The container runtime could not be started.
    #[error("cannot start the container runtime: {0}")]
    Runtime(crate::runtime::RuntimeError),
    /// kube-proxy cannot program the kernel (no `nft`), or its tables cannot be removed.
    #[error("kube-proxy: {0}")]
    Proxy(#[from] crate::proxy::ProxyError),
    /// The cluster's DNS server cannot listen.
    #[error("cluster DNS: {0}")]
    Dns(#[from] crate::dns::Error),
    /// The ingress controller cannot listen.
    #[error(
        "ingress controller: {0} (--ingress-port and --ingress-https-port choose others; 0 picks free ones)"
    )]
    Ingress(#[from] crate::ingress::IngressError),
    /// Another cluster with real containers and the same name runs on this machine.
    #[error(
        "a cluster named {name:?} already runs on this machine (state directory {state_dir}); \
         its containers, cgroups and network are named after it: stop it (orrery down) or \
         pick another --name"
    )]
    NameInUse {
        /// The name.
        name: String,
        /// The running cluster's state directory.
        state_dir: String,
    },
    /// The cluster did not stop in time.
    #[error("the cluster (pid {0}) did not stop within 30 s")]
    DidNotStop(i32),
}

/// The file in which a running cluster records `pid port`.
pub fn pid_file(state_dir: &Path) -> PathBuf {
    state_dir.join("orrery.pid")
}

/// Starts the cluster and runs it until a shutdown signal.
pub async fn up(options: UpOptions) -> Result<(), ClusterError> {
    up_until(options, |_| shutdown_signal()).await
}

/// Starts the cluster and runs it until the future `until` makes (given the API server, once it
/// listens) ends: a shutdown signal, or the dashboard's end. Then stops it cleanly.
pub async fn up_until<F, Fut>(options: UpOptions, until: F) -> Result<(), ClusterError>
where
    F: FnOnce(Arc<ApiServer>) -> Fut,
    Fut: Future<Output = ()>,
{
    let state_dir = &options.state_dir;
    prepare_state_dir(state_dir)?;
    let flow = Flow::new();
    let logs = control_plane::logs_dir(state_dir);
    flow.logs()
        .write_to(&logs)
        .map_err(|source| ClusterError::StateFile { path: logs, source })?;
    // Every component runs under the supervisor, so that `orrery component|node stop|start` can
    // take it down and bring it back: an etcd cluster's members first.
    let supervisor = Arc::new(Supervisor::new(flow.clone()));
    let (store, etcd_members) = open_store(&options, &supervisor, &flow).await?;
    log_store_opened(&flow, &options.store, state_dir, &*store).await;
    let pki = Pki::load_or_create(&state_dir.join("pki"))?;
    let api = ApiServer::new(store.clone(), flow.clone());
    api.set_kubelet_client(pki.kubelet_client()?);
    api.set_service_account_key(&pki.sa_key, &pki.sa_public)
        .map_err(|e| crate::pki::PkiError::Certificate {
            name: "sa".into(),
            message: e.to_string(),
        })?;
    api.bootstrap().await?;
    api.set_default_toleration_seconds(
        options.default_not_ready_toleration_seconds,
        options.default_unreachable_toleration_seconds,
    );
    let compactor = Compactor::new(store.clone(), options.compaction.clone()).spawn();
    // Every other component is an API client like any other.
    api.set_supervisor(supervisor.clone());
    supervisor.add("apiserver", Role::Component, {
        let api = api.clone();
        move || {
            // Serving while this task lives; stopping it (dropping the guard) turns it off.
            let guard = Serving::on(api.clone());
            vec![tokio::spawn(async move {
                let _guard = guard;
                std::future::pending::<()>().await
            })]
        }
    });
    // The scheduler and the controller manager, each as many replicas as asked, competing for
    // their Lease: only the leader acts.
    let candidates = add_electing_components(&options, &supervisor, &api, &flow, &pki);
    // The add-ons a cluster ships with, each an API client of its own: the service load
    // balancer (what k3s's ServiceLB and kind's cloud-provider-kind are).
    supervisor.add(crate::servicelb::COMPONENT, Role::Component, {
        let (api, flow) = (api.clone(), flow.clone());
        move || {
            let lb = crate::servicelb::ServiceLb::new(
                api.client(crate::servicelb::COMPONENT),
                flow.clone(),
                crate::servicelb::ServiceLbConfig::default(),
            );
            vec![tokio::spawn(lb.run())]
        }
    });
    // The metrics server (what k3s ships), whose data the API server serves as
    // metrics.k8s.io.
    let scraped = Arc::new(crate::metrics_server::Scraped::default());
    api.set_metrics(scraped.clone());
    supervisor.add(crate::metrics_server::COMPONENT, Role::Component, {
        let (api, flow) = (api.clone(), flow.clone());
        let resolution = options.metrics_resolution;
        move || {
            let server = crate::metrics_server::MetricsServer::new(
                api.client(crate::metrics_server::COMPONENT),
                flow.clone(),
                resolution,
                scraped.clone(),
            );
            vec![tokio::spawn(server.run())]
        }
    });
    // The dynamic provisioner (what rancher's local-path provisioner is to kind), with the
    // default StorageClass.
    supervisor.add(crate::provisioner::COMPONENT, Role::Component, {
        let (api, flow) = (api.clone(), flow.clone());
        let root = crate::provisioner::storage_dir(state_dir);
        move || {
            let provisioner = crate::provisioner::LocalPathProvisioner::new(
                api.client(crate::provisioner::COMPONENT),
                flow.clone(),
                root.clone(),
            );
            vec![tokio::spawn(provisioner.run())]
        }
    });
    // One runtime for every node: the sim's containers, or the runtime helper that runs real
    // ones. It outlives the kubelets: a stopped kubelet's containers keep running.
    let mut name_lock = None;
    let real = match options.runtime {
        RuntimeChoice::Libcontainer if options.nodes > 0 => {
            // kube-proxy programs the kernel with nft: say what to install before anything starts.
            crate::proxy::check_nft()?;
            name_lock = Some(claim_name(&options.name, state_dir)?);
            // What a crashed run of this cluster left in the kernel goes first.
            remove_tables(&options.name).await?;
            let images = ImageStore::open(&state_dir.join("images"))?;
            let runtime = LibcontainerRuntime::start(
                RuntimeOptions {
                    cluster_cidr: options.cluster_cidr.to_string(),
                    ..RuntimeOptions::new(state_dir.join("runtime"), &options.name)
                },
                Arc::new(images),
            )
            .await
            .map_err(ClusterError::Runtime)?;
            Some(runtime)
        }
        _ => None,
    };
    // Before any kube-proxy programs the kernel, so that a port already taken stops `up` with
    // nothing left behind.
    let (dns, ingress) =
        add_listening_addons(&options, &supervisor, &api, &flow, real.as_ref()).await?;
    for index in 1..=options.nodes {
        let config = NodeConfig {
            name: format!("node-{index}"),
            index,
            cluster_cidr: options.cluster_cidr,
            address: node_address(real.as_ref(), &options.cluster_cidr, index).await?,
            cpu: options.node_cpu.clone(),
            memory: options.node_memory.clone(),
            max_pods: 110,
            lease_duration_seconds: options.node_lease_duration_seconds,
            root_dir: state_dir.join("kubelet").join(format!("node-{index}")),
            pod_pids_limit: Some(DEFAULT_POD_PIDS_LIMIT),
            cluster_dns: vec![crate::kubelet::DEFAULT_CLUSTER_DNS],
            cluster_domain: options.cluster_domain.clone(),
            control_plane: None,
        };
        add_node(
            config,
            &supervisor,
            &api,
            &flow,
            real.as_ref(),
            &pki,
            &options.name,
        )?;
    }

    let listen_error = |port| move |source| ClusterError::Listen { port, source };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", options.port))
        .await
        .map_err(listen_error(options.port))?;
    let port = listener
        .local_addr()
        .map_err(listen_error(options.port))?
        .port();
    // The API server's advertise address: where pods reach it, through the `kubernetes`
    // Service. With real containers that is the control-plane node's address on the pod
    // network (as kube-apiserver advertises its host's address), where it listens too; on the
    // simulated runtime (or pods on loopback) no pod sends a packet there, and 127.0.0.1 is the
    // only address.
    let advertise = match real.as_ref() {
        Some(real) if options.nodes > 0 => real
            .prepare_node(&options.cluster_cidr.node_cidr(0))
            .await
            .map_err(ClusterError::Runtime)?,
        _ => None,
    };
    let pod_listener = match advertise {
        Some(address) => Some(
            tokio::net::TcpListener::bind((address, port))
                .await
                .map_err(listen_error(port))?,
        ),
        None => None,
    };
    let advertise = advertise.unwrap_or(std::net::Ipv4Addr::LOCALHOST);
    if options.nodes > 0 {
        add_control_plane_node(
            &options,
            &supervisor,
            &api,
            &flow,
            real.as_ref(),
            &pki,
            std::net::SocketAddrV4::new(advertise, port),
            &etcd_members,
        )
        .await?;
    }
    let server_url = format!("https://127.0.0.1:{port}");
    // The API server's own `kubernetes` Service, now that its port is known.
    let kubernetes_service = tokio::spawn(
        KubernetesService::new(api.client("kube-apiserver"), flow.clone(), advertise, port).run(),
    );
    let config = kubeconfig::render(&options.name, &server_url, &pki);
    let own_kubeconfig = state_dir.join("kubeconfig");
    kubeconfig::write(&own_kubeconfig, &config)?;
    if options.merge_kubeconfig
        && let Some(user) = kubeconfig::user_kubeconfig_path()
    {
        kubeconfig::merge_into(&user, &config)?;
    }
    let pid_path = pid_file(state_dir);
    std::fs::write(&pid_path, format!("{} {port}\n", std::process::id())).map_err(|source| {
        ClusterError::StateFile {
            path: pid_path.clone(),
            source,
        }
    })?;

    println!(
        "orrery: cluster {:?} is up at {server_url} (store: {})",
        options.name, options.store
    );
    if !etcd_members.is_empty() {
        let members: Vec<String> = etcd_members
            .iter()
            .map(|m| format!("{} at {}", m.name, m.client_url))
            .collect();
        println!(
            "orrery: etcd members {} (data and logs in {}; orrery component stop|start etcd-N)",
            members.join(", "),
            store::etcd_cluster_dir(state_dir).display()
        );
    }
    println!(
        "orrery: kubectl --kubeconfig {} get namespaces",
        own_kubeconfig.display()
    );
    if options.merge_kubeconfig {
        println!(
            "orrery: or, with the merged context: kubectl --context {} get namespaces",
            options.name
        );
    }
    println!(
        "orrery: cluster DNS (the kube-dns Service, {}) answers on {dns}: dig @{} -p {} kubernetes.default.svc.{}",
        crate::dns::service::CLUSTER_IP,
        dns.ip(),
        dns.port(),
        options.cluster_domain
    );
    println!(
        "orrery: ingress controller (IngressClass {}) on http://{} and https://{}",
        crate::ingress::CLASS_NAME,
        ingress.0,
        ingress.1
    );

    let tls = pki.server_tls()?;
    // The pods' listener serves the same router; it stops when the host's does.
    let pods_serving = pod_listener.map(|listener| {
        tokio::spawn(server::serve(
            listener,
            tls.clone(),
            api.router(),
            std::future::pending(),
        ))
    });
    server::serve(listener, tls, api.router(), until(api.clone())).await;
    if let Some(serving) = pods_serving {
        serving.abort();
    }

    println!("orrery: stopping cluster {:?}", options.name);
    // The leaders stop their work and give their Leases up while the API still serves.
    futures::future::join_all(candidates.iter().map(|c| c.resign())).await;
    compactor.abort();
    kubernetes_service.abort();
    supervisor.stop_all().await;
    if let Some(real) = real {
        if let Err(error) = real.shutdown().await {
            eprintln!("orrery: stopping the containers failed: {error}");
        }
        // The kube-proxies' rules go with the cluster.
        if let Err(error) = remove_tables(&options.name).await {
            eprintln!("orrery: {error}");
        }
    }
    let _ = std::fs::remove_file(&pid_path);
    drop(name_lock);
    Ok(())
}

/// What an Orrery state directory holds: a directory with any of these is Orrery's own.
const STATE_ENTRIES: &[&str] = &[
    "store.redb",
    "pki",
    "kubeconfig",
    "orrery.pid",
    "orrery.log",
    "images",
    "kubelet",
    "runtime",
    "storage",
];

/// Makes `dir` the cluster's state directory, readable by its owner only: it holds the CA's key,
/// the admin kubeconfig, the store (every Secret) and the pods' volumes. A missing one is created
/// 0700, with any missing parent. An existing one that others may enter is tightened to 0700 if
/// it is the current user's and empty or Orrery's own (earlier versions made them 0755; then with
/// a note on stderr, since its contents were exposed); anything else (a shared directory such as `/tmp`) is left as it is, with a
/// warning: its store and keys are owner-only files, but the rest is not protected.
pub fn prepare_state_dir(dir: &Path) -> Result<(), ClusterError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let state_file = |source| ClusterError::StateFile {
        path: dir.to_owned(),
        source,
    };
    let meta = match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(state_file);
        }
        Err(e) => return Err(state_file(e)),
        Ok(meta) if !meta.is_dir() => {
            return Err(state_file(std::io::ErrorKind::NotADirectory.into()));
        }
        Ok(meta) => meta,
    };
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    let entries: Vec<std::ffi::OsString> = std::fs::read_dir(dir)
        .map_err(state_file)?
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    let mine = meta.uid() == nix::unistd::geteuid().as_raw() && mode & 0o1000 == 0;
    let orrerys =
        entries.is_empty() || entries.iter().any(|e| STATE_ENTRIES.iter().any(|s| e == s));
    if mine && orrerys {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(state_file)?;
        if entries.is_empty() {
            // Nothing was exposed: a directory made for the cluster (`mkdir`, `mktemp -d`).
            return Ok(());
        }
        eprintln!(
            "orrery: {} was open to other users (mode {mode:o}); it holds the cluster's keys and \
             Secrets, so it is now 0700",
            dir.display()
        );
    } else {
        eprintln!(
            "orrery: warning: the state directory {} is open to other users (mode {mode:o}) and \
             is not Orrery's own to change; the store and keys in it are owner-only, but pod \
             volumes and images are not: choose a private --state-dir",
            dir.display()
        );
    }
    Ok(())
}

/// Where clusters with real containers claim their names: their cgroups (`/orrery/<name>`),
/// network namespaces and bridge are named after them, host-wide.
const NAME_LOCKS: &str = "/run/orrery";

/// Claims `name` on this machine for as long as the returned lock lives, so that a second
/// cluster of the same name (whose runtime would sweep this one's containers and network as
/// leftovers) is refused rather than started.
fn claim_name(name: &str, state_dir: &Path) -> Result<Flock<std::fs::File>, ClusterError> {
    let path = Path::new(NAME_LOCKS).join(format!("{name}.lock"));
    let state_file = |source| ClusterError::StateFile {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(NAME_LOCKS).map_err(state_file)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(state_file)?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(mut lock) => {
            use std::io::{Seek, Write};
            let _ = lock.set_len(0);
            let _ = lock.seek(std::io::SeekFrom::Start(0));
            let _ = write!(lock, "{}", state_dir.display());
            Ok(lock)
        }
        Err((_, errno)) if errno == nix::errno::Errno::EWOULDBLOCK => {
            Err(ClusterError::NameInUse {
                name: name.to_owned(),
                state_dir: std::fs::read_to_string(&path).unwrap_or_default(),
            })
        }
        Err((_, errno)) => Err(state_file(errno.into())),
    }
}

/// Writes the store's first log line: what was opened.
async fn log_store_opened(
    flow: &Flow,
    url: &StoreUrl,
    state_dir: &Path,
    opened: &dyn store::Store,
) {
    let revision = opened
        .current_revision()
        .await
        .map_or(0, |r| i64::try_from(r).unwrap_or(i64::MAX));
    let (message, place) = match url {
        StoreUrl::Embedded => (
            "Opened the embedded store",
            (
                "path",
                store::embedded_path(state_dir).display().to_string(),
            ),
        ),
        StoreUrl::Etcd(endpoints) => ("Connected to etcd", ("endpoints", endpoints.join(","))),
        StoreUrl::EtcdCluster(members) => (
            "Started the etcd cluster and connected to it",
            ("members", members.to_string()),
        ),
    };
    flow.logs().info(
        Component::Store,
        message,
        &[(place.0, place.1.into()), ("revision", revision.into())],
    );
}

/// Opens the store `--store` names. For `etcd-cluster=N` that is first starting its members (each
/// a supervised component `etcd-N`, which `orrery component stop|start` kills and starts again
/// on its data and ports) and waiting until they serve; they are returned as the control-plane
/// node's static pods show them.
#[cfg_attr(not(feature = "etcd"), allow(unused_variables))]
async fn open_store(
    options: &UpOptions,
    supervisor: &Arc<Supervisor>,
    flow: &Flow,
) -> Result<(Arc<dyn store::Store>, Vec<control_plane::EtcdMember>), ClusterError> {
    match &options.store {
        #[cfg(feature = "etcd")]
        StoreUrl::EtcdCluster(members) => {
            use crate::store::etcd::cluster::{self as etcd_cluster, EtcdCluster};
            let cluster = Arc::new(EtcdCluster::open(&options.state_dir, *members)?);
            let mut running = Vec::new();
            for spec in cluster.members() {
                running.push(cluster.start(&spec.name).await?);
            }
            cluster.wait_until_serving(&mut running).await?;
            let initial = etcd_cluster::initial_cluster(cluster.members());
            let mut pods = Vec::new();
            for (spec, member) in cluster.members().iter().zip(running) {
                add_etcd_member(supervisor, flow, &cluster, &spec.name, member);
                let mut command = vec![
                    "etcd".to_owned(),
                    format!("--data-dir={}", spec.data_dir.display()),
                    format!("--name={}", spec.name),
                ];
                command.extend(spec.flags(
                    &initial,
                    etcd_cluster::ClusterState::Existing,
                    cluster.token(),
                ));
                command[1..].sort();
                pods.push(control_plane::EtcdMember {
                    name: spec.name.clone(),
                    client_url: spec.client_url(),
                    data_dir: spec.data_dir.clone(),
                    log: cluster.log_path(&spec.name),
                    command,
                });
            }
            let store = store::etcd::EtcdStore::connect(&cluster.endpoints()).await?;
            Ok((Arc::new(store), pods))
        }
        url => Ok((store::open(url, &options.state_dir).await?, Vec::new())),
    }
}

/// Member `name` of `cluster` under the supervisor: its first run is `first` (started already),
/// a later one starts the member again on its data and ports. Stopping it kills the process.
#[cfg(feature = "etcd")]
fn add_etcd_member(
    supervisor: &Supervisor,
    flow: &Flow,
    cluster: &Arc<crate::store::etcd::cluster::EtcdCluster>,
    name: &str,
    first: crate::store::etcd::cluster::Member,
) {
    let first = std::sync::Mutex::new(Some(first));
    let (cluster, flow, member_name) = (cluster.clone(), flow.clone(), name.to_owned());
    supervisor.add(name, Role::Component, move || {
        let started = first.lock().unwrap_or_else(|p| p.into_inner()).take();
        let (cluster, flow, name) = (cluster.clone(), flow.clone(), member_name.clone());
        vec![tokio::spawn(async move {
            let mut member = match started {
                Some(member) => member,
                None => match cluster.start(&name).await {
                    Ok(member) => member,
                    Err(error) => {
                        flow.logs().error(
                            Component::Store,
                            "Could not start the etcd member",
                            &error.to_string(),
                            &[("member", name.as_str().into())],
                        );
                        return;
                    }
                },
            };
            flow.logs().info(
                Component::Store,
                "Started the etcd member",
                &[
                    ("member", name.as_str().into()),
                    ("pid", i64::from(member.pid()).into()),
                ],
            );
            // Until it is stopped (the task aborted: dropping `member` kills it) or it exits.
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                if let Some(status) = member.exited() {
                    let log = cluster.log_path(&name);
                    flow.logs().error(
                        Component::Store,
                        "The etcd member exited",
                        &status.to_string(),
                        &[
                            ("member", name.as_str().into()),
                            ("log", log.display().to_string().as_str().into()),
                        ],
                    );
                    tracing::warn!(member = %name, %status, log = %log.display(), "an etcd member exited");
                    return;
                }
            }
        })]
    });
}

/// The control-plane node, as kubeadm sets one up: `orrery up` writes the static pod manifests
/// (kubeadm's part), and the node's kubelet shows them as mirror pods. Its kubelet runs pods
/// that tolerate its taint on the cluster's runtime, like any kubelet.
#[allow(clippy::too_many_arguments)]
async fn add_control_plane_node(
    options: &UpOptions,
    supervisor: &Supervisor,
    api: &Arc<ApiServer>,
    flow: &Flow,
    real: Option<&LibcontainerRuntime>,
    pki: &Pki,
    apiserver: std::net::SocketAddrV4,
    etcd_members: &[control_plane::EtcdMember],
) -> Result<(), ClusterError> {
    let state_dir = &options.state_dir;
    let manifests = control_plane::manifests_dir(state_dir);
    let layout = control_plane::Layout {
        state_dir,
        advertise: *apiserver.ip(),
        port: apiserver.port(),
        store: &options.store,
        etcd_members,
        cluster_cidr: options.cluster_cidr.to_string(),
        node_monitor_grace_period: options.node_monitor_grace_period,
        toleration_seconds: (
            options.default_not_ready_toleration_seconds,
            options.default_unreachable_toleration_seconds,
        ),
        replicas: (options.schedulers, options.controller_managers),
        leader_election: options.leader_election,
    };
    control_plane::write_manifests(&manifests, &layout).map_err(|source| {
        ClusterError::StateFile {
            path: manifests.clone(),
            source,
        }
    })?;
    let name = control_plane::node_name(&options.name);
    let config = NodeConfig {
        name: name.clone(),
        index: 0,
        cluster_cidr: options.cluster_cidr,
        address: node_address(real, &options.cluster_cidr, 0).await?,
        cpu: options.node_cpu.clone(),
        memory: options.node_memory.clone(),
        max_pods: 110,
        lease_duration_seconds: options.node_lease_duration_seconds,
        root_dir: state_dir.join("kubelet").join(&name),
        pod_pids_limit: Some(DEFAULT_POD_PIDS_LIMIT),
        cluster_dns: vec![crate::kubelet::DEFAULT_CLUSTER_DNS],
        cluster_domain: options.cluster_domain.clone(),
        control_plane: Some(ControlPlane {
            manifests,
            logs: control_plane::logs_dir(state_dir),
        }),
    };
    add_node(config, supervisor, api, flow, real, pki, &options.name)
}

/// The add-ons that listen on the host, each bound here first (so that `orrery up` knows and
/// prints where) and then run under the supervisor, which binds the same address again when it
/// restarts one: the cluster's DNS server (`kube-dns`: on the control-plane node's address, port
/// 53, with real containers, where the kube-dns Service's endpoint is; on a free loopback port
/// otherwise) and the ingress controller (`--ingress-port`, `--ingress-https-port`). Returns
/// their addresses.
async fn add_listening_addons(
    options: &UpOptions,
    supervisor: &Supervisor,
    api: &Arc<ApiServer>,
    flow: &Flow,
    real: Option<&LibcontainerRuntime>,
) -> Result<(SocketAddr, (SocketAddr, SocketAddr)), ClusterError> {
    use crate::dns::{Dns, DnsConfig};
    use crate::ingress::{IngressConfig, IngressController};
    let listen = match real {
        Some(_) => SocketAddr::from((node_address(real, &options.cluster_cidr, 0).await?, 53)),
        None => SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0)),
    };
    let node = if options.nodes > 0 {
        control_plane::node_name(&options.name)
    } else {
        String::new()
    };
    let mut dns_config = DnsConfig::new(listen, &node);
    dns_config.cluster_domain = options.cluster_domain.clone();
    let dns = Dns::bind(dns_config.clone()).await?;
    dns_config.listen = dns.local_addr();
    let dns_address = dns_config.listen;
    add_listener(supervisor, crate::dns::COMPONENT, dns, {
        let (api, flow) = (api.clone(), flow.clone());
        move |first| {
            let (api, flow, config) = (api.clone(), flow.clone(), dns_config.clone());
            async move {
                let dns = match first {
                    Some(dns) => dns,
                    None => Dns::bind(config).await.map_err(|e| e.to_string())?,
                };
                dns.run(api.client(crate::dns::COMPONENT), flow).await;
                Ok(())
            }
        }
    });

    let localhost = std::net::Ipv4Addr::LOCALHOST;
    let mut ingress_config = IngressConfig {
        http: SocketAddr::from((localhost, options.ingress_ports.0)),
        https: Some(SocketAddr::from((localhost, options.ingress_ports.1))),
        status_address: None,
    };
    let client = |api: &Arc<ApiServer>| api.client(crate::ingress::COMPONENT);
    let ingress = IngressController::bind(client(api), flow.clone(), &ingress_config).await?;
    let addresses = (
        ingress.http_address(),
        ingress.https_address().unwrap_or(ingress.http_address()),
    );
    ingress_config.http = addresses.0;
    ingress_config.https = Some(addresses.1);
    add_listener(supervisor, crate::ingress::COMPONENT, ingress, {
        let (api, flow) = (api.clone(), flow.clone());
        move |first| {
            let (api, flow, config) = (api.clone(), flow.clone(), ingress_config.clone());
            async move {
                let ingress = match first {
                    Some(ingress) => ingress,
                    None => IngressController::bind(client(&api), flow, &config)
                        .await
                        .map_err(|e| e.to_string())?,
                };
                ingress.run().await;
                Ok(())
            }
        }
    });
    Ok((dns_address, addresses))
}

/// Adds component `name`, which runs `run(Some(first))` the first time (`first` bound by the
/// caller) and `run(None)` after a restart (binding again); a failure to do so is logged.
fn add_listener<T, R, F>(supervisor: &Supervisor, name: &'static str, first: T, run: R)
where
    T: Send + 'static,
    R: Fn(Option<T>) -> F + Send + Sync + 'static,
    F: Future<Output = Result<(), String>> + Send + 'static,
{
    let first = std::sync::Mutex::new(Some(first));
    supervisor.add(name, Role::Component, move || {
        let bound = first.lock().unwrap_or_else(|p| p.into_inner()).take();
        let task = run(bound);
        vec![tokio::spawn(async move {
            if let Err(error) = task.await {
                tracing::warn!(component = name, %error, "cannot start");
            }
        })]
    });
}

/// Removes every nftables table of cluster `name`'s kube-proxies.
async fn remove_tables(name: &str) -> Result<(), ClusterError> {
    let prefix = crate::proxy::table_prefix(name);
    tokio::task::spawn_blocking(move || crate::proxy::remove_tables(&prefix))
        .await
        .map_err(|e| ClusterError::Proxy(ProxyError::Io(std::io::Error::other(e))))??;
    Ok(())
}

/// Node `index`'s address, its InternalIP: with real containers its gateway on the cluster's
/// bridge (made now, before its kubelet listens there), so the host and every pod reach it; on
/// the simulated runtime (or pods without a network of their own) a loopback address of its own.
async fn node_address(
    real: Option<&LibcontainerRuntime>,
    cidr: &crate::kubelet::ClusterCidr,
    index: u16,
) -> Result<std::net::Ipv4Addr, ClusterError> {
    let bridged = match real {
        Some(real) => real
            .prepare_node(&cidr.node_cidr(index))
            .await
            .map_err(ClusterError::Runtime)?,
        None => None,
    };
    Ok(bridged.unwrap_or_else(|| crate::kubelet::sim_address(index)))
}

/// Adds a node: its kubelet under the supervisor, on its view of the cluster's runtime (or a
/// simulated runtime of its own), serving with its own certificate; and its kube-proxy
/// (`kube-proxy/<node>`), which stops and starts with the node or on its own. The control-plane
/// node's kube-proxy also routes the host's own connections to ClusterIPs, as on a kubeadm
/// control plane. Only real containers have packets to route: on the simulated runtime
/// kube-proxy computes its rules and programs nothing.
fn add_node(
    config: NodeConfig,
    supervisor: &Supervisor,
    api: &Arc<ApiServer>,
    flow: &Flow,
    real: Option<&LibcontainerRuntime>,
    pki: &Pki,
    cluster: &str,
) -> Result<(), ClusterError> {
    let proxy = ProxyConfig {
        node: config.name.clone(),
        node_ip: config.address,
        pod_cidr: config
            .pod_cidr()
            .parse()
            .map_err(|_| ProxyError::Config(format!("pod CIDR {}", config.pod_cidr())))?,
        cluster_cidr: config
            .cluster_cidr
            .to_string()
            .parse()
            .map_err(|_| ProxyError::Config(format!("cluster CIDR {}", config.cluster_cidr)))?,
        host: config.index == 0,
        table: ProxyConfig::table_name(cluster, &config.name),
        mode: if real.is_some() {
            ProxyMode::Nftables
        } else {
            ProxyMode::Compute
        },
        netns: None,
    };
    let runtime: Arc<dyn ContainerRuntime> = match real {
        Some(real) => Arc::new(real.for_node(&config.name)),
        None => Arc::new(SimRuntime::new(SimOptions::default())),
    };
    // Its serving certificate, for the address in its Node's status.
    let tls = pki.kubelet_serving(
        &config.name,
        config.address.into(),
        &config.root_dir.join("pki"),
    )?;
    supervisor.add(&config.name.clone(), Role::Node, {
        let (api, flow) = (api.clone(), flow.clone());
        move || {
            let client = api.client(&format!("kubelet/{}", config.name));
            vec![tokio::spawn(
                Kubelet::new(
                    config.clone(),
                    client,
                    runtime.clone(),
                    flow.clone(),
                    tls.clone(),
                )
                .run(),
            )]
        }
    });
    let (api, flow) = (api.clone(), flow.clone());
    let proxy_name = format!("kube-proxy/{}", proxy.node);
    supervisor.add_to_node(&proxy.node.clone(), &proxy_name.clone(), move || {
        let client = api.client(&proxy_name);
        vec![tokio::spawn(
            KubeProxy::new(proxy.clone(), client, flow.clone()).run(),
        )]
    });
    Ok(())
}

/// Adds the scheduler's and the controller manager's replicas under the supervisor, each a
/// candidate for its Lease (`kube-system/kube-scheduler`, `kube-system/kube-controller-manager`)
/// as `<cluster>-control-plane_<replica>`, whose work starts when it leads and stops when it no
/// longer does. Returns the candidates, to resign as the cluster goes down.
fn add_electing_components(
    options: &UpOptions,
    supervisor: &Supervisor,
    api: &Arc<ApiServer>,
    flow: &Flow,
    pki: &Pki,
) -> Vec<Arc<Candidate>> {
    let host = control_plane::node_name(&options.name);
    let mut candidates = Vec::new();
    let mut elect = |instance: Instance, lease: &str, event_source: &str, release: bool| {
        let name = instance.supervised_as().unwrap_or_default();
        let candidate = Candidate::new(
            lease,
            &leaderelection::identity(&host, &name),
            &name,
            event_source,
            instance,
            options.leader_election,
            release,
        );
        candidates.push(candidate.clone());
        let election = crate::supervisor::Election {
            lease: candidate.lease(),
            leading: Box::new({
                let candidate = candidate.clone();
                move || candidate.leading()
            }),
            on_stop: Box::new({
                let candidate = candidate.clone();
                move || {
                    let candidate = candidate.clone();
                    async move { candidate.stop().await }.boxed()
                }
            }),
        };
        (name, candidate, election)
    };
    for instance in replicas(Component::Scheduler, options.schedulers) {
        // kube-scheduler releases its Lease when it is stopped (`ReleaseOnCancel: true`).
        let (name, candidate, election) = elect(
            instance,
            leaderelection::SCHEDULER_LEASE,
            crate::scheduler::run::SCHEDULER_NAME,
            true,
        );
        supervisor.add_electing(&name.clone(), election, {
            let (api, flow) = (api.clone(), flow.clone());
            move || {
                Scheduler::starting(instance, &flow);
                let client = api.client(&name);
                let elector = LeaderElector::new(candidate.clone(), client.clone(), flow.clone());
                let flow = flow.clone();
                vec![tokio::spawn(elector.run(move || {
                    Scheduler::replica(instance, client.clone(), flow.clone()).run()
                }))]
            }
        });
    }
    let pki = Arc::new(pki.clone());
    for instance in replicas(Component::ControllerManager, options.controller_managers) {
        // kube-controller-manager does not: its standby waits for the Lease to expire.
        let (name, candidate, election) = elect(
            instance,
            leaderelection::CONTROLLER_MANAGER_LEASE,
            "kube-controller-manager",
            false,
        );
        supervisor.add_electing(&name.clone(), election, {
            let (api, flow, options, pki) =
                (api.clone(), flow.clone(), options.clone(), pki.clone());
            move || {
                let elector =
                    LeaderElector::new(candidate.clone(), api.client(&name), flow.clone());
                let (api, flow, options, pki) =
                    (api.clone(), flow.clone(), options.clone(), pki.clone());
                vec![tokio::spawn(elector.run(move || {
                    let tasks = Tasks(controller_manager(&api, &flow, &options, &pki, instance));
                    async move {
                        let _tasks = tasks;
                        std::future::pending::<()>().await
                    }
                }))]
            }
        });
    }
    candidates
}

/// The controller manager (replica `instance`): the shared informers, then every controller,
/// each writing as an API client of its own.
fn controller_manager(
    api: &Arc<ApiServer>,
    flow: &Flow,
    options: &UpOptions,
    pki: &Arc<Pki>,
    instance: Instance,
) -> Vec<tokio::task::JoinHandle<()>> {
    let clients = api.clone();
    // The informers watch as the replica (`controller-manager-2`); each controller writes as
    // its own service account, whichever replica runs it.
    let informers = instance
        .supervised_as()
        .unwrap_or_else(|| controllers::INFORMERS_CLIENT.to_owned());
    let ctx = controllers::Context::new(flow.clone(), move |name| {
        if name == controllers::INFORMERS_CLIENT {
            clients.client(&informers)
        } else {
            clients.client(name)
        }
    });
    let controllers: Vec<futures::future::BoxFuture<'static, ()>> = vec![
        ReplicaSetController::new(&ctx).run().boxed(),
        controllers::replication::ReplicationManager::new(&ctx)
            .run()
            .boxed(),
        DeploymentController::new(&ctx).run().boxed(),
        NamespaceController::new(&ctx).run().boxed(),
        ServiceAccountController::new(&ctx).run().boxed(),
        JobController::new(&ctx).run().boxed(),
        GarbageCollector::new(&ctx).run().boxed(),
        DaemonSetController::new(&ctx).run().boxed(),
        EndpointSliceController::new(&ctx).run().boxed(),
        NodeLifecycleController::new(&ctx, options.node_monitor_grace_period)
            .run()
            .boxed(),
        StatefulSetController::new(&ctx).run().boxed(),
    ];
    let controllers = controllers
        .into_iter()
        .chain([
            controllers::cronjob::CronJobController::new(&ctx)
                .run()
                .boxed(),
            controllers::disruption::DisruptionController::new(&ctx)
                .run()
                .boxed(),
            controllers::podautoscaler::HorizontalController::new(
                &ctx,
                options.horizontal_pod_autoscaler_sync_period,
            )
            .run()
            .boxed(),
            controllers::persistentvolume::PersistentVolumeController::new(&ctx)
                .run()
                .boxed(),
            controllers::pvcprotection::PvcProtectionController::new(&ctx)
                .run()
                .boxed(),
            controllers::pvprotection::PvProtectionController::new(&ctx)
                .run()
                .boxed(),
            controllers::clusterroleaggregation::ClusterRoleAggregationController::new(&ctx)
                .run()
                .boxed(),
            controllers::rootcacertpublisher::RootCaCertPublisher::new(&ctx, pki.ca_cert.clone())
                .run()
                .boxed(),
            controllers::csrsigning::CsrSigningController::new(
                &ctx,
                pki.clone(),
                crate::apimachinery::certificates::DEFAULT_DURATION,
            )
            .run()
            .boxed(),
            controllers::resourcequota::ResourceQuotaController::new(
                &ctx,
                controllers::resourcequota::SYNC_PERIOD,
            )
            .run()
            .boxed(),
        ])
        .collect::<Vec<_>>();
    // The informers start once every controller has taken the ones it needs.
    let mut tasks = ctx.factory.start();
    tasks.extend(controllers.into_iter().map(tokio::spawn));
    for controller in [
        "replicaset-controller",
        "replicationcontroller-controller",
        "deployment-controller",
        "namespace-controller",
        "serviceaccount-controller",
        "job-controller",
        "cronjob-controller",
        "disruption-controller",
        "garbage-collector-controller",
        "daemonset-controller",
        "endpointslice-controller",
        "endpoints-controller",
        "node-lifecycle-controller",
        "statefulset-controller",
        "persistentvolume-binder-controller",
        "pvc-protection-controller",
        "pv-protection-controller",
        "clusterrole-aggregation-controller",
        "root-ca-cert-publisher-controller",
        "certificatesigningrequest-signing-controller",
        "resourcequota-controller",
    ] {
        flow.logs().info(
            instance,
            "Started controller",
            &[("controller", controller.into())],
        );
    }
    tasks
}

/// Keeps the Kubernetes API serving while it lives.
struct Serving(Arc<ApiServer>);

impl Serving {
    fn on(api: Arc<ApiServer>) -> Self {
        api.set_serving(true);
        Serving(api)
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.set_serving(false);
    }
}

/// Ctrl-C (SIGINT) or SIGTERM (`orrery down`).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    let terminated = async {
        match term.as_mut() {
            Some(term) => {
                term.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminated => {}
    }
}

/// Whether a cluster runs with `state_dir`: its pid file names a live process.
pub fn running(state_dir: &Path) -> bool {
    std::fs::read_to_string(pid_file(state_dir))
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .is_some_and(alive)
}

/// Sends `POST /orrery/v1/<path>` (say `nodes/node-2/stop`) to the cluster running with
/// `state_dir`, authenticated with its admin kubeconfig, and returns the answer.
pub async fn control(state_dir: &Path, path: &str) -> Result<serde_json::Value, ClusterError> {
    let answer = request(state_dir, http::Method::POST, path, Vec::new()).await?;
    serde_json::from_slice(&answer).map_err(|e| ClusterError::Control(e.to_string()))
}

/// Sends `<method> /orrery/v1/<path>` with `body` to the cluster running with `state_dir`,
/// authenticated with its admin kubeconfig, and returns the answer's body; a refusal is its
/// Status's message.
pub async fn request(
    state_dir: &Path,
    method: http::Method,
    path: &str,
    body: Vec<u8>,
) -> Result<Vec<u8>, ClusterError> {
    use futures::AsyncReadExt;
    if !pid_file(state_dir).exists() {
        return Err(ClusterError::NotRunning(state_dir.to_owned()));
    }
    let file = state_dir.join("kubeconfig");
    let kubeconfig = kube::config::Kubeconfig::read_from(&file)
        .map_err(|e| ClusterError::Control(format!("{}: {e}", file.display())))?;
    let mut config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .map_err(|e| ClusterError::Control(format!("{}: {e}", file.display())))?;
    // A snapshot of a large store takes a while; an etcd without quorum answers in 7 s.
    config.read_timeout = Some(Duration::from_secs(300));
    let client =
        kube::Client::try_from(config).map_err(|e| ClusterError::Control(e.to_string()))?;
    let request = http::Request::builder()
        .method(method)
        .uri(format!("/orrery/v1/{path}"))
        .body(body)
        .map_err(|e| ClusterError::Control(e.to_string()))?;
    let failed = |e: kube::Error| match e {
        kube::Error::Api(status) => ClusterError::Refused {
            code: status.code,
            message: status.message,
        },
        other => ClusterError::Control(other.to_string()),
    };
    let mut stream = client.request_stream(request).await.map_err(failed)?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .await
        .map_err(|e| ClusterError::Control(e.to_string()))?;
    Ok(answer)
}

/// Stops the cluster running with `state_dir`: SIGTERM, then waits for it to exit.
pub async fn down(state_dir: &Path) -> Result<i32, ClusterError> {
    let path = pid_file(state_dir);
    let text = std::fs::read_to_string(&path)
        .map_err(|_| ClusterError::NotRunning(state_dir.to_owned()))?;
    let pid: i32 = text
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| ClusterError::NotRunning(state_dir.to_owned()))?;
    let pid = nix::unistd::Pid::from_raw(pid);
    if nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).is_err() {
        // The process is gone: a stale pid file.
        let _ = std::fs::remove_file(&path);
        return Err(ClusterError::NotRunning(state_dir.to_owned()));
    }
    for _ in 0..300 {
        if !alive(pid.as_raw()) {
            return Ok(pid.as_raw());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(ClusterError::DidNotStop(pid.as_raw()))
}

/// Whether a process is still running: it exists and is not a zombie waiting for its parent.
fn alive(pid: i32) -> bool {
    if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err() {
        return false;
    }
    // /proc/<pid>/stat is "pid (comm) state ...": the state follows the last ')'.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                != Some("Z")
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::RuntimeChoice;

    #[test]
    fn real_containers_by_default_and_never_a_silent_fallback() {
        let cases = [
            // (flag, root, nodes, expected)
            (None, true, 3, Ok(RuntimeChoice::Libcontainer)),
            (
                Some("libcontainer"),
                true,
                3,
                Ok(RuntimeChoice::Libcontainer),
            ),
            (Some("sim"), true, 3, Ok(RuntimeChoice::Sim)),
            (Some("sim"), false, 3, Ok(RuntimeChoice::Sim)),
            (None, false, 0, Ok(RuntimeChoice::Libcontainer)),
            (None, false, 3, Err("sudo")),
            (Some("libcontainer"), false, 1, Err("--runtime sim")),
        ];
        for (flag, root, nodes, expected) in cases {
            let got = RuntimeChoice::resolve(flag, root, nodes);
            match expected {
                Ok(choice) => assert_eq!(got, Ok(choice), "{flag:?} root={root}"),
                Err(words) => {
                    let message = got.expect_err("must refuse");
                    assert!(message.contains(words), "{message}");
                }
            }
        }
    }
}
