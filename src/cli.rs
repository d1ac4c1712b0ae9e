//! The `orrery` command line: parses arguments with clap, sets up `tracing` from `RUST_LOG`, and
//! runs the chosen command.
//!
//! The `store` commands read and write a cluster's store the way `etcdctl` does for a real
//! cluster ([`store_cmd`]): for learning what the API server keeps, for backups, and for
//! debugging.

mod store_cmd;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use crate::bench;
use crate::store::{self, StoreUrl};

/// Orrery: a see-through Kubernetes on one machine.
#[derive(Debug, Parser)]
#[command(name = "orrery", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(subcommand)]
    command: Command,
}

/// Which cluster a command works on.
#[derive(Debug, Args)]
struct ClusterArgs {
    /// The cluster's name: its default state directory, its kubeconfig context, and the names
    /// of its cgroups, network namespaces and bridge (lowercase letters, digits and `-`).
    #[arg(long, global = true, default_value = "orrery", env = "ORRERY_NAME", value_parser = parse_name)]
    name: String,
    /// Where the cluster keeps its state [default: ~/.local/state/orrery/<name>].
    #[arg(long, global = true, env = "ORRERY_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// The store: `embedded` (a file in the state directory) or `etcd=http://HOST:PORT`.
    #[arg(long, global = true, default_value = "embedded", env = "ORRERY_STORE")]
    store: StoreUrl,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the cluster in the foreground (until Ctrl-C or `orrery down`).
    Up(UpArgs),
    /// Stop the cluster started with this state directory.
    Down,
    /// Open the dashboard on the cluster running with this state directory (quitting it leaves
    /// the cluster running).
    Tui,
    /// Print a kubeconfig for a new user of the cluster: a client certificate the cluster's CA
    /// signs, naming the user (CN) and groups (O), as kube-apiserver reads them. The user can
    /// do nothing until RBAC lets them (`kubectl create rolebinding ... --user NAME`).
    Kubeconfig(KubeconfigArgs),
    /// Stop or start a virtual node's kubelet (its containers keep running, as on a real node
    /// whose kubelet died).
    #[command(subcommand)]
    Node(NodeCommand),
    /// Stop or start a control-plane component of the running cluster.
    #[command(subcommand)]
    Component(ComponentCommand),
    /// Read and write the cluster's store, like etcdctl; save and restore snapshots.
    #[command(subcommand)]
    Store(store_cmd::StoreCommand),
    /// Lessons: each claim the architecture guides make, run on a live cluster and checked
    /// there. `orrery learn NAME` starts the lesson's cluster and opens the dashboard in it.
    Learn(LearnArgs),
    /// Measure Orrery's parts.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// The container runtime helper a cluster starts (not for direct use).
    #[command(hide = true)]
    RuntimeHelper(RuntimeHelperArgs),
    /// List, pull, load and remove container images in the state directory's image store.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Run a sample operator: an ordinary API client that reconciles a custom resource, from
    /// the host against any cluster or in a pod of the built-in image.
    #[command(subcommand)]
    Operator(OperatorCommand),
    /// The built-in `orrery/hello` image's program: an HTTP server on $PORT (8080).
    #[command(hide = true)]
    Hello,
    /// The built-in `orrery/pause` image's program: the pod sandbox's pause process.
    #[command(hide = true)]
    Pause,
    /// In the built-in images: wait this many seconds, then exit 0.
    #[command(hide = true)]
    Sleep { seconds: f64 },
    /// In the built-in images: print the message to stderr and exit with the code.
    #[command(hide = true)]
    Exit {
        code: u8,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        message: Vec<String>,
    },
    /// In the built-in images: write the text to the file.
    #[command(hide = true)]
    Write {
        path: PathBuf,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        text: Vec<String>,
    },
    /// In the built-in images: allocate and hold this many MiB.
    #[command(hide = true)]
    Hog { mib: usize },
    /// In the built-in images: use this much CPU (`400m`, `1.5`) until stopped.
    #[command(hide = true)]
    Burn {
        #[arg(allow_hyphen_values = true)]
        cpu: String,
    },
    /// In the built-in images: GET an http:// URL (by name, through the pod's DNS) and print
    /// the answer, `count` times.
    #[command(hide = true)]
    Fetch {
        url: String,
        #[arg(default_value_t = 1)]
        count: u32,
    },
    /// In the built-in images: an in-cluster API client that prints who the API server says it
    /// is (its service account) and how many pods its namespace has, or why it may not list them.
    #[command(hide = true)]
    Whoami,
    /// In the built-in images: an HTTPS admission webhook that refuses objects with a label
    /// and labels the others.
    #[command(hide = true)]
    Webhook(WebhookArgs),
}

#[derive(Debug, Args)]
struct WebhookArgs {
    /// The serving certificate (PEM).
    #[arg(long)]
    cert: PathBuf,
    /// Its private key (PEM).
    #[arg(long)]
    key: PathBuf,
    /// The port to listen on, on every address.
    #[arg(long, default_value_t = 8443)]
    port: u16,
    /// Refuse objects with this label: `key` or `key=value`.
    #[arg(long)]
    deny_label: Option<String>,
    /// Add this label (`key=value`) to the objects allowed.
    #[arg(long)]
    add_label: Option<String>,
    /// The refusal's message.
    #[arg(
        long,
        default_value = "the object carries a label this webhook refuses"
    )]
    message: String,
    /// A warning to give with every answer.
    #[arg(long)]
    warning: Option<String>,
}

#[derive(Debug, Args)]
struct RuntimeHelperArgs {
    /// The helper's root directory.
    #[arg(long)]
    root: PathBuf,
    /// The cluster's name.
    #[arg(long)]
    cluster: String,
    /// The inherited socket to the cluster.
    #[arg(long)]
    fd: i32,
    /// How pods get their network: `bridge` or `loopback`.
    #[arg(long, default_value = "bridge", value_parser = ["bridge", "loopback"])]
    pod_network: String,
    /// The cluster's pod network, routed on-link from every pod.
    #[arg(long, default_value = "10.244.0.0/14")]
    cluster_cidr: String,
}

#[derive(Debug, Subcommand)]
enum ImageCommand {
    /// List the images (IMAGE, TAG, IMAGE ID, SIZE, as `crictl images`).
    Ls,
    /// Pull an image from its registry (plain HTTP for localhost and 127.0.0.1).
    Pull {
        /// The reference, such as busybox:1.36 or 127.0.0.1:5000/app:v1.
        reference: String,
    },
    /// Remove an image reference, and the blobs and layers nothing refers to any more.
    Rm {
        /// The reference.
        reference: String,
    },
    /// Load images from a `docker save` archive or an OCI layout archive (tar, maybe gzipped).
    Load {
        /// The archive.
        file: PathBuf,
        /// The repository for images an OCI archive names only by tag (`--repository
        /// 127.0.0.1:5000/app` with `ref.name: v1` loads `127.0.0.1:5000/app:v1`).
        #[arg(long)]
        repository: Option<String>,
    },
}

#[derive(Debug, Args)]
struct UpArgs {
    /// Run without the dashboard.
    #[arg(long)]
    headless: bool,
    /// The API server's port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 6443)]
    port: u16,
    /// Keep store history for at least this long, for watches to resume from.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    history: std::time::Duration,
    /// ...but at most this many revisions.
    #[arg(long, default_value_t = 10_000)]
    history_revisions: u64,
    /// Do not merge the cluster's context into $KUBECONFIG or ~/.kube/config.
    #[arg(long)]
    no_kubeconfig_merge: bool,
    /// How many virtual worker nodes to run (`node-1` .. `node-N`); with any, a control-plane
    /// node (`<name>-control-plane`) shows the control plane as pods in `kube-system`.
    #[arg(long, default_value_t = 3)]
    nodes: u16,
    /// Each node's CPU capacity.
    #[arg(long, default_value = "4")]
    node_cpu: String,
    /// Each node's memory capacity.
    #[arg(long, default_value = "8Gi")]
    node_memory: String,
    /// The kubelets' lease duration; they renew their Lease every quarter of it.
    #[arg(long, default_value_t = 40)]
    node_lease_duration_seconds: u32,
    /// How long a node may go without renewing its Lease before the node lifecycle controller
    /// marks it Ready=Unknown and taints it `node.kubernetes.io/unreachable`.
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    node_monitor_grace_period: std::time::Duration,
    /// How often the metrics server reads the kubelets (metrics-server's
    /// `--metric-resolution`): the freshness of `kubectl top` and of what autoscalers see.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    metrics_resolution: std::time::Duration,
    /// How often the HorizontalPodAutoscaler controller looks at every HPA
    /// (kube-controller-manager's flag of the same name).
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    horizontal_pod_autoscaler_sync_period: std::time::Duration,
    /// How long new pods tolerate the `node.kubernetes.io/not-ready` NoExecute taint.
    #[arg(long, default_value_t = 300)]
    default_not_ready_toleration_seconds: u32,
    /// How long new pods tolerate the `node.kubernetes.io/unreachable` NoExecute taint before
    /// they are evicted.
    #[arg(long, default_value_t = 300)]
    default_unreachable_toleration_seconds: u32,
    /// The pod network, cut into one /24 per node (kube-controller-manager's --cluster-cidr).
    #[arg(long, default_value = "10.244.0.0/14")]
    cluster_cidr: crate::kubelet::ClusterCidr,
    /// The container runtime: `libcontainer` (real containers; the default, needs root) or
    /// `sim` (simulated containers, for thousands of pods or machines without root).
    #[arg(long, value_parser = ["libcontainer", "sim"])]
    runtime: Option<String>,
    /// The cluster's DNS domain (the kubelet's --cluster-domain): Services are
    /// `<name>.<namespace>.svc.<domain>`.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// The ingress controller's HTTP port on 127.0.0.1 (0: any free port; `orrery up` prints it).
    #[arg(long, default_value_t = 8080)]
    ingress_port: u16,
    /// The ingress controller's HTTPS port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 8443)]
    ingress_https_port: u16,
    /// How many schedulers to run, competing for the `kube-system/kube-scheduler` Lease (only
    /// the leader schedules): one is `scheduler`, more are `scheduler-1` .. `scheduler-N`.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=9))]
    schedulers: u16,
    /// How many controller managers to run, competing for the
    /// `kube-system/kube-controller-manager` Lease: `controller-manager` or
    /// `controller-manager-1` .. `controller-manager-N`.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=9))]
    controller_managers: u16,
    /// How long a standby waits, from the last change it saw to its Lease, before it takes the
    /// Lease over (kube-scheduler's and kube-controller-manager's flag; a Go duration).
    #[arg(long, default_value = "15s", value_parser = parse_go_duration)]
    leader_elect_lease_duration: std::time::Duration,
    /// How long a leader tries to renew its Lease before it stops leading.
    #[arg(long, default_value = "10s", value_parser = parse_go_duration)]
    leader_elect_renew_deadline: std::time::Duration,
    /// How long the candidates wait between tries (a standby: 1 to 2.2 times it).
    #[arg(long, default_value = "2s", value_parser = parse_go_duration)]
    leader_elect_retry_period: std::time::Duration,
}

/// A Go duration (`15s`, `1m30s`, `500ms`), as Kubernetes components take them.
fn parse_go_duration(text: &str) -> Result<std::time::Duration, String> {
    let nanos = crate::apimachinery::gotypes::parse_go_duration(text)?;
    u64::try_from(nanos)
        .map(std::time::Duration::from_nanos)
        .map_err(|_| format!("{text}: must be greater than zero"))
}

#[derive(Debug, Subcommand)]
enum NodeCommand {
    /// Stop a node's kubelet.
    Stop {
        /// The node, such as node-2.
        name: String,
    },
    /// Start a stopped node's kubelet again.
    Start {
        /// The node, such as node-2.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum ComponentCommand {
    /// Stop a component as its process is stopped (SIGTERM): a stopped API server answers 503,
    /// a stopped kube-proxy leaves its node's rules as they were, a leading kube-scheduler gives
    /// its Lease up first (a kube-controller-manager does not, as upstream's).
    Stop {
        /// apiserver, scheduler, controller-manager (scheduler-2 and so on with `up
        /// --schedulers`), kube-dns, ingress-controller, service-lb-controller, or a node's
        /// kube-proxy/<node>.
        name: String,
    },
    /// Stop a component as if its process died (SIGKILL): nothing is given back, so a leader's
    /// standby waits for its Lease to expire.
    Kill {
        /// As for `stop`.
        name: String,
    },
    /// Start a stopped component again.
    Start {
        /// apiserver, scheduler, controller-manager (scheduler-2 and so on with `up
        /// --schedulers`), kube-dns, ingress-controller, service-lb-controller, or a node's
        /// kube-proxy/<node>.
        name: String,
    },
}

pub(crate) fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: use e.g. 30s, 5m, 1h"))?;
    let seconds = match unit {
        "s" | "" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("invalid duration {s:?}: use e.g. 30s, 5m, 1h")),
    };
    Ok(std::time::Duration::from_secs(seconds))
}

#[derive(Debug, Subcommand)]
enum OperatorCommand {
    /// The website operator: each Website (samples.orrery.dev/v1) gets a ConfigMap with its
    /// page, a Deployment of orrery/hello serving it and a Service, and a status. Runs until
    /// Ctrl-C or SIGTERM.
    Website(WebsiteArgs),
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
struct WebsiteArgs {
    /// The kubeconfig to use [default: $KUBECONFIG, ~/.kube/config, else the pod's in-cluster
    /// configuration].
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<WebsiteCommand>,
}

#[derive(Debug, Subcommand)]
enum WebsiteCommand {
    /// Print the Website CustomResourceDefinition the operator's Rust type generates (what
    /// manifests/website-crd.yaml holds).
    Crd,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
struct LearnArgs {
    /// A directory of lesson files (NN-name.yaml) to add to the built-in ones; one named as a
    /// built-in lesson replaces it.
    #[arg(long, global = true, env = "ORRERY_LESSONS")]
    lessons: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<LearnCommand>,
    /// The lesson to open: its name, number or file stem [default: the first one not done].
    #[arg(id = "lesson", value_name = "LESSON")]
    lesson: Option<String>,
    /// The API server's port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 6443)]
    port: u16,
    /// The ingress controller's HTTP port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 8080)]
    ingress_port: u16,
    /// The ingress controller's HTTPS port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 8443)]
    ingress_https_port: u16,
    /// The pod network of a lesson on real containers.
    #[arg(long, default_value = "10.244.0.0/14")]
    cluster_cidr: crate::kubelet::ClusterCidr,
}

#[derive(Debug, Subcommand)]
enum LearnCommand {
    /// List the lessons: NAME, RUNTIME, PROGRESS (this cluster's state directory's) and TITLE.
    List,
    /// Run lessons headless, each on a cluster of its own, printing every action and check.
    Run(LearnRunArgs),
}

#[derive(Debug, Args)]
struct LearnRunArgs {
    /// The lesson: its name, number or file stem.
    #[arg(
        id = "lesson",
        value_name = "LESSON",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    lesson: Option<String>,
    /// Every lesson, in order.
    #[arg(long)]
    all: bool,
    /// Exit 1, naming them, if any check did not hold.
    #[arg(long)]
    check: bool,
    /// With --all: only the lessons on this runtime.
    #[arg(long, value_parser = ["sim", "real"])]
    runtime: Option<String>,
    /// The pod network of a lesson on real containers (a /16 no other cluster here uses).
    #[arg(long)]
    cluster_cidr: Option<crate::kubelet::ClusterCidr>,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Run one workload against the embedded store and a real etcd, and print both.
    Store(bench::StoreBenchOptions),
    /// Measure the Kubernetes API over HTTPS: writes, reads, LISTs and watches.
    Apiserver(bench::ApiBenchOptions),
    /// Measure a whole cluster from outside: start-up, and memory idle and with N pods.
    Cluster(bench::ClusterBenchOptions),
    /// Measure the scheduler: pods scheduled per second over many nodes.
    Scheduler(bench::SchedulerBenchOptions),
    /// Measure the metrics pipeline (CPU and memory of scraping and serving with many pods)
    /// and the time from a load change to the HPA's scale.
    Metrics(bench::MetricsBenchOptions),
    /// Measure pod start latency (p50, p99) next to a raw libcontainer start, and a
    /// Deployment's time to all Running.
    Pods(bench::PodBenchOptions),
    /// Measure the dashboard: frame time and key latency under 1,000 flow events a second,
    /// the flow bus with slow readers, and an attached dashboard's CPU.
    Tui(bench::TuiBenchOptions),
    /// The data plane of Services: kube-proxy's programming latency, HTTP through a ClusterIP
    /// next to the pod IP (real containers, root), cluster DNS queries per second.
    Services(bench::ServicesBenchOptions),
    /// Measure leader election: how long after the leader of each Lease stops (`orrery
    /// component stop`) its standby holds the Lease and acts, next to the goal (the lease
    /// duration), with upstream's timings and short ones.
    Leader(bench::LeaderBenchOptions),
    /// Run each lesson's check (or those named) and print the seconds each took, and the total
    /// next to the goal (the whole catalogue in CI in a few minutes).
    Lessons(bench::LessonBenchOptions),
    /// Create and start one image's container directly through libcontainer, N times, and
    /// print the p50 and p99 in microseconds (the image must be in the state dir's store).
    RawContainer(RawContainerArgs),
}

#[derive(Debug, Args)]
struct RawContainerArgs {
    /// The image.
    #[arg(long)]
    image: String,
    /// How many containers.
    #[arg(long, default_value_t = 50)]
    runs: u32,
}

/// The errors a command reports before exiting with status 1.
/// `orrery kubeconfig`.
#[derive(Debug, clap::Args)]
struct KubeconfigArgs {
    /// The user's name (the certificate's CN).
    #[arg(long)]
    user: String,
    /// A group the user is in (the certificate's O); may be given more than once.
    #[arg(long = "group")]
    groups: Vec<String>,
    /// How long the certificate is valid, in seconds (default: one year, as kubeadm's).
    #[arg(long, default_value_t = 365 * 24 * 3600)]
    expiration_seconds: u64,
    /// Write the kubeconfig to this file (owner-only) instead of standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    #[error("no state directory: pass --state-dir (neither $XDG_STATE_HOME nor $HOME is set)")]
    NoStateDir,
    #[error("key {0:?} not found")]
    KeyNotFound(String),
    #[error("cannot write to stdout: {0}")]
    Stdout(#[from] std::io::Error),
    #[error("benchmark failed: {0}")]
    Bench(String),
    #[error("a writer task failed: {0}")]
    Task(String),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Image(#[from] crate::images::ImageError),
    #[error(transparent)]
    Tui(#[from] crate::tui::app::TuiError),
    #[error(transparent)]
    Operator(#[from] crate::operator::OperatorError),
    #[error(transparent)]
    Lesson(#[from] crate::learn::LessonError),
    #[error(transparent)]
    LessonRun(#[from] crate::learn::run::RunError),
    #[error(transparent)]
    Progress(#[from] crate::learn::progress::ProgressError),
    #[error("{0}")]
    LessonFailed(String),
}

/// A cluster name: 1 to 32 lowercase letters, digits and `-`, starting and ending with a letter
/// or digit (a DNS label, as kind's cluster names), since it becomes part of cgroup paths,
/// network namespace and bridge names.
fn parse_name(text: &str) -> Result<String, String> {
    let fits = (1..=32).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-');
    if fits {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "invalid cluster name {text:?}: use 1 to 32 lowercase letters, digits and '-', starting and ending with a letter or digit"
        ))
    }
}

/// Runs the `orrery` command with the process's arguments.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The runtime helper must stay single-threaded (libcontainer clones without exec): it
    // runs its own current-thread runtime, never this multi-threaded one.
    // Likewise `bench raw-container`, which drives libcontainer directly.
    if let Command::Bench(BenchCommand::RawContainer(args)) = &cli.command {
        let state_dir = match cli.cluster.state_dir() {
            Ok(dir) => dir,
            Err(error) => {
                eprintln!("orrery: {error}");
                return ExitCode::FAILURE;
            }
        };
        return match crate::runtime::libcontainer::raw::measure(&state_dir, &args.image, args.runs)
        {
            Ok(mut samples) => {
                samples.sort();
                let p = |q| bench::percentile(&samples, q).as_micros();
                println!("{} {}", p(0.5), p(0.99));
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("orrery bench raw-container: {error}");
                ExitCode::FAILURE
            }
        };
    }
    if let Command::RuntimeHelper(args) = cli.command {
        use crate::runtime::libcontainer::helper;
        return helper::main(helper::HelperArgs {
            root: args.root,
            cluster: args.cluster,
            cluster_cidr: args.cluster_cidr,
            fd: args.fd,
            network: if args.pod_network == "loopback" {
                helper::PodNetworkMode::Loopback
            } else {
                helper::PodNetworkMode::Bridge
            },
        });
    }
    init_tracing();
    // The built-in images' programs run as containers: no multi-threaded runtime for them.
    match cli.command {
        Command::Hello => return crate::apps::hello(),
        Command::Pause => return crate::apps::pause(),
        Command::Sleep { seconds } => return crate::apps::sleep(seconds),
        Command::Exit { code, message } => return crate::apps::exit(code, &message),
        Command::Write { path, text } => return crate::apps::write(&path, &text),
        Command::Hog { mib } => return crate::apps::hog(mib),
        Command::Burn { cpu } => {
            return match crate::apps::burn_millicores(&cpu) {
                Some(m) => crate::apps::burn(m),
                None => {
                    eprintln!(
                        "burn: {cpu:?} is not a CPU quantity from 0 to 1024 cores (such as 400m or 1.5)"
                    );
                    ExitCode::from(2)
                }
            };
        }
        Command::Fetch { url, count } => return crate::apps::fetch(&url, count),
        Command::Whoami => return crate::apps::whoami(),
        Command::Webhook(args) => {
            let policy = crate::apps::webhook::Policy::parse(
                args.deny_label.as_deref(),
                args.add_label.as_deref(),
                &args.message,
            )
            .map(|policy| crate::apps::webhook::Policy {
                warning: args.warning,
                ..policy
            });
            return match policy {
                Ok(policy) => crate::apps::webhook::main(&args.cert, &args.key, args.port, policy),
                Err(error) => {
                    eprintln!("webhook: {error}");
                    ExitCode::from(2)
                }
            };
        }
        _ => {}
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("orrery: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, None)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("orrery: {error}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

impl ClusterArgs {
    fn state_dir(&self) -> Result<PathBuf, CliError> {
        if let Some(dir) = &self.state_dir {
            return Ok(dir.clone());
        }
        let base = dirs::state_dir()
            .or_else(|| dirs::home_dir().map(|home| home.join(".local/state")))
            .ok_or(CliError::NoStateDir)?;
        Ok(base.join("orrery").join(&self.name))
    }
}

/// The service network (kube-apiserver's `--service-cluster-ip-range` default), which the pod
/// network must not overlap.
const SERVICE_CIDR: (std::net::Ipv4Addr, u8) = (std::net::Ipv4Addr::new(10, 96, 0, 0), 12);

async fn run(cli: Cli, learn: Option<crate::tui::app::LearnOptions>) -> Result<(), CliError> {
    match cli.command {
        Command::Up(args) => {
            use std::io::IsTerminal;
            let dashboard = !args.headless && std::io::stdout().is_terminal();
            if !args.headless && !dashboard {
                eprintln!(
                    "orrery: standard output is not a terminal, so there is no dashboard: \
                     running headless (pass --headless to say so; attach one later with orrery tui)"
                );
            }
            let options = crate::cluster::UpOptions {
                name: cli.cluster.name.clone(),
                state_dir: cli.cluster.state_dir()?,
                port: args.port,
                store: cli.cluster.store.clone(),
                compaction: crate::store::compactor::CompactionPolicy {
                    keep_for: args.history,
                    keep_revisions: args.history_revisions,
                    ..Default::default()
                },
                merge_kubeconfig: !args.no_kubeconfig_merge,
                nodes: args.nodes,
                node_cpu: args.node_cpu,
                node_memory: args.node_memory,
                node_lease_duration_seconds: args.node_lease_duration_seconds,
                node_monitor_grace_period: args.node_monitor_grace_period,
                metrics_resolution: args.metrics_resolution,
                horizontal_pod_autoscaler_sync_period: args.horizontal_pod_autoscaler_sync_period,
                default_not_ready_toleration_seconds: args.default_not_ready_toleration_seconds,
                default_unreachable_toleration_seconds: args.default_unreachable_toleration_seconds,
                runtime: crate::cluster::RuntimeChoice::resolve(
                    args.runtime.as_deref(),
                    nix::unistd::geteuid().is_root(),
                    args.nodes,
                )
                .map_err(CliError::Usage)?,
                cluster_cidr: args.cluster_cidr,
                cluster_domain: args.cluster_domain,
                ingress_ports: (args.ingress_port, args.ingress_https_port),
                schedulers: args.schedulers,
                controller_managers: args.controller_managers,
                leader_election: crate::leaderelection::Timings {
                    lease_duration: args.leader_elect_lease_duration,
                    renew_deadline: args.leader_elect_renew_deadline,
                    retry_period: args.leader_elect_retry_period,
                },
            };
            options
                .leader_election
                .validate()
                .map_err(|e| CliError::Usage(e.to_string()))?;
            if u32::from(options.nodes) > options.cluster_cidr.capacity() {
                return Err(CliError::Usage(format!(
                    "--cluster-cidr {} has room for {} nodes' /24s, not {}",
                    options.cluster_cidr,
                    options.cluster_cidr.capacity(),
                    options.nodes
                )));
            }
            if options
                .cluster_cidr
                .overlaps(SERVICE_CIDR.0, SERVICE_CIDR.1)
            {
                return Err(CliError::Usage(format!(
                    "--cluster-cidr {} overlaps the service network {}: a pod's on-link route \
                     would swallow the ClusterIPs (kubeadm refuses this too); choose another, \
                     such as 10.244.0.0/16",
                    options.cluster_cidr, "10.96.0.0/12"
                )));
            }
            let renew =
                std::time::Duration::from_secs(u64::from(options.node_lease_duration_seconds)) / 4;
            if options.node_monitor_grace_period <= renew {
                return Err(CliError::Usage(format!(
                    "--node-monitor-grace-period ({}s) must be longer than the kubelets' lease \
                     renew interval ({}s, a quarter of --node-lease-duration-seconds {}); \
                     lower --node-lease-duration-seconds too",
                    options.node_monitor_grace_period.as_secs(),
                    renew.as_secs_f64(),
                    options.node_lease_duration_seconds
                )));
            }
            if !dashboard {
                crate::cluster::up(options).await?;
                return Ok(());
            }
            // Whatever would be written to the terminal (tracing, the runtime helper) goes to
            // the log while the dashboard has the screen.
            let state_dir = options.state_dir.clone();
            crate::cluster::prepare_state_dir(&state_dir)?;
            let log = state_dir.join("orrery.log");
            let _stderr = crate::tui::app::redirect_stderr(&log)?;
            let name = options.name.clone();
            let learn =
                learn.unwrap_or_else(|| crate::tui::app::LearnOptions::for_cluster(&state_dir));
            crate::cluster::up_until(options, move |api| up_dashboard(api, name, log, learn))
                .await?;
            Ok(())
        }
        Command::Tui => {
            let state_dir = cli.cluster.state_dir()?;
            crate::tui::app::attach(&state_dir, &cli.cluster.name).await?;
            Ok(())
        }
        Command::Kubeconfig(args) => {
            let state_dir = cli.cluster.state_dir()?;
            let usage = |m: String| CliError::Usage(m);
            if args.user.is_empty() || args.expiration_seconds < 600 {
                return Err(usage(
                    "--user must not be empty and --expiration-seconds must be at least 600".into(),
                ));
            }
            let own = std::fs::read_to_string(state_dir.join("kubeconfig")).map_err(|e| {
                usage(format!(
                    "no cluster in {}: start one with `orrery up` first ({e})",
                    state_dir.display()
                ))
            })?;
            let server = crate::apiserver::kubeconfig::server_of(&own).ok_or_else(|| {
                usage(format!(
                    "{}/kubeconfig names no server",
                    state_dir.display()
                ))
            })?;
            let pki = crate::pki::Pki::load_or_create(&state_dir.join("pki"))
                .map_err(|e| usage(e.to_string()))?;
            let (cert, key) = pki
                .issue_client(
                    &args.user,
                    &args.groups,
                    std::time::Duration::from_secs(args.expiration_seconds),
                )
                .map_err(|e| usage(e.to_string()))?;
            let text = crate::apiserver::kubeconfig::render_user(
                &cli.cluster.name,
                &server,
                &pki.ca_cert,
                &args.user,
                &cert,
                &key,
            );
            match &args.output {
                Some(path) => crate::apiserver::kubeconfig::write(path, &text)
                    .map_err(|e| usage(e.to_string()))?,
                None => print!("{text}"),
            }
            Ok(())
        }
        Command::Down => {
            let pid = crate::cluster::down(&cli.cluster.state_dir()?).await?;
            println!("orrery: stopped cluster (pid {pid})");
            Ok(())
        }
        Command::Node(command) => {
            let (action, name) = match command {
                NodeCommand::Stop { name } => ("stop", name),
                NodeCommand::Start { name } => ("start", name),
            };
            control(
                &cli.cluster,
                &format!("nodes/{name}/{action}"),
                "node",
                &name,
            )
            .await
        }
        Command::Component(command) => {
            let (action, name) = match command {
                ComponentCommand::Stop { name } => ("stop", name),
                ComponentCommand::Kill { name } => ("kill", name),
                ComponentCommand::Start { name } => ("start", name),
            };
            control(
                &cli.cluster,
                &format!("components/{name}/{action}"),
                "component",
                &name,
            )
            .await
        }
        Command::Store(command) => {
            let state_dir = cli.cluster.state_dir()?;
            crate::cluster::prepare_state_dir(&state_dir)?;
            store_cmd::run(&cli.cluster.store, &state_dir, command).await
        }
        Command::Image(command) => {
            let state_dir = cli.cluster.state_dir()?;
            crate::cluster::prepare_state_dir(&state_dir)?;
            let store = crate::images::ImageStore::open(&crate::images::store_dir(&state_dir))?;
            run_image(store, command).await
        }
        Command::Operator(OperatorCommand::Website(args)) => match args.command {
            Some(WebsiteCommand::Crd) => {
                print!("{}", crate::operator::website::crd_yaml());
                Ok(())
            }
            None => {
                let client = crate::operator::client(args.kubeconfig.as_deref()).await?;
                crate::operator::reconcile::run(client).await?;
                Ok(())
            }
        },
        Command::Hello
        | Command::Pause
        | Command::Sleep { .. }
        | Command::Exit { .. }
        | Command::Write { .. }
        | Command::Hog { .. }
        | Command::Burn { .. }
        | Command::Fetch { .. }
        | Command::Whoami
        | Command::Webhook(_) => Ok(()),
        Command::Bench(BenchCommand::Store(options)) => {
            let report = bench::run_store_bench(&options)
                .await
                .map_err(CliError::Bench)?;
            print!("{report}");
            Ok(())
        }
        Command::Bench(BenchCommand::Metrics(options)) => {
            let report = bench::run_metrics_bench(&options)
                .await
                .map_err(CliError::Bench)?;
            print!("{report}");
            Ok(())
        }
        Command::Bench(BenchCommand::Cluster(options)) => {
            let report = bench::run_cluster_bench(&options)
                .await
                .map_err(CliError::Bench)?;
            print!("{report}");
            Ok(())
        }
        Command::Bench(BenchCommand::Apiserver(options)) => {
            let report = bench::run_apiserver_bench(&options)
                .await
                .map_err(CliError::Bench)?;
            print!("{report}");
            Ok(())
        }
        Command::Bench(BenchCommand::Pods(options)) => {
            let report = bench::run_pod_bench(&options)
                .await
                .map_err(CliError::Bench)?;
            print!("{report}");
            Ok(())
        }
        Command::Bench(BenchCommand::Services(options)) => {
            let report = bench::run_services_bench(&options).await;
            print!("{report}");
            if report.complete() {
                Ok(())
            } else {
                Err(CliError::Bench(
                    "a part could not be measured (see above)".into(),
                ))
            }
        }
        Command::Bench(BenchCommand::Tui(options)) => {
            let report = bench::run_tui_bench(&options)
                .await
                .map_err(CliError::Bench)?;
            print!("{report}");
            Ok(())
        }
        Command::Bench(BenchCommand::Leader(options)) => {
            let report = bench::run_leader_bench(&options)
                .await
                .map_err(CliError::Bench)?;
            print!("{report}");
            if report.complete() {
                Ok(())
            } else {
                Err(CliError::Bench(
                    "a round could not be measured (see above)".into(),
                ))
            }
        }
        Command::Learn(args) => learn_command(&cli.cluster, args).await,
        Command::Bench(BenchCommand::Lessons(options)) => {
            let report = bench::run_lesson_bench(&options)
                .await
                .map_err(CliError::Bench)?;
            print!("{report}");
            if report.passed() {
                Ok(())
            } else {
                Err(CliError::Bench("a lesson did not hold (see above)".into()))
            }
        }
        Command::Bench(BenchCommand::Scheduler(options)) => {
            let report = bench::run_scheduler_bench(&options)
                .await
                .map_err(CliError::Bench)?;
            print!("{report}");
            Ok(())
        }
        Command::Bench(BenchCommand::RawContainer(_)) | Command::RuntimeHelper(_) => Err(
            CliError::Usage("runtime-helper runs before the async runtime starts".into()),
        ),
    }
}

/// `orrery learn`: list the lessons, run them headless, or open one in the dashboard.
async fn learn_command(cluster: &ClusterArgs, args: LearnArgs) -> Result<(), CliError> {
    use crate::learn::progress::{self, Progress};
    let catalogue = crate::learn::Catalogue::load(args.lessons.as_deref())?;
    match args.command {
        Some(LearnCommand::List) => {
            let progress = Progress::load(&progress::path(&cluster.state_dir()?))?;
            let rows: Vec<[String; 4]> = catalogue
                .lessons()
                .iter()
                .map(|l| {
                    [
                        l.name.clone(),
                        l.cluster.runtime.word().to_owned(),
                        progress.summary(&l.name, l.steps.len()),
                        l.title.clone(),
                    ]
                })
                .collect();
            print!("{}", table(["NAME", "RUNTIME", "PROGRESS", "TITLE"], &rows));
            Ok(())
        }
        Some(LearnCommand::Run(run)) => {
            let lessons: Vec<&crate::learn::Lesson> = match &run.lesson {
                Some(name) => vec![catalogue.get(name)?],
                None => catalogue
                    .lessons()
                    .iter()
                    .filter(|l| {
                        run.runtime
                            .as_deref()
                            .is_none_or(|r| r == l.cluster.runtime.word())
                    })
                    .collect(),
            };
            let options = crate::learn::run::RunOptions {
                cluster_cidr: run.cluster_cidr.map(|c| c.to_string()),
                quiet: false,
            };
            let mut reports = Vec::new();
            for lesson in lessons {
                let report = match crate::learn::run::run(lesson, &options).await {
                    Ok(report) => report,
                    Err(error) => {
                        println!("lesson {}: FAILED: {error}", lesson.name);
                        crate::learn::run::LessonReport {
                            name: lesson.name.clone(),
                            runtime: lesson.cluster.runtime,
                            took: std::time::Duration::ZERO,
                            startup: std::time::Duration::ZERO,
                            passed: 0,
                            steps: lesson.steps.len(),
                            failures: vec![error.to_string()],
                        }
                    }
                };
                if run.all {
                    println!();
                }
                reports.push(report);
            }
            if run.all {
                print!("{}", bench::LessonReports(reports.clone()));
            }
            let failed: Vec<String> = reports
                .iter()
                .filter(|r| !r.passed())
                .map(|r| format!("lesson {}: {}", r.name, r.failures.join("; ")))
                .collect();
            if run.check && !failed.is_empty() {
                return Err(CliError::LessonFailed(failed.join("\n")));
            }
            Ok(())
        }
        None => {
            use std::io::IsTerminal;
            if !std::io::stdout().is_terminal() {
                return Err(CliError::Usage(
                    "orrery learn opens the lesson in the dashboard, which needs a terminal \
                     (orrery learn run NAME runs a lesson headless)"
                        .into(),
                ));
            }
            let base = cluster.state_dir()?;
            let progress_file = progress::path(&base);
            let progress = Progress::load(&progress_file)?;
            let lesson = match &args.lesson {
                Some(name) => catalogue.get(name)?,
                None => catalogue
                    .lessons()
                    .iter()
                    .find(|l| progress.summary(&l.name, l.steps.len()) != "done")
                    .or_else(|| catalogue.lessons().first())
                    .ok_or_else(|| CliError::Usage("there are no lessons".into()))?,
            };
            // The lesson's own cluster, fresh each time, beside the progress it adds to.
            let dir = base.join("learn").join("cluster");
            fresh_lesson_dir(&dir)?;
            let mut argv: Vec<std::ffi::OsString> = vec![
                "orrery".into(),
                "--name".into(),
                cluster.name.clone().into(),
                "--state-dir".into(),
                dir.clone().into(),
            ];
            if let Some(store) = &lesson.cluster.store {
                argv.extend(["--store".into(), store.into()]);
            }
            let real = lesson.cluster.runtime == crate::learn::lesson::Runtime::Real;
            let words = [
                "up".to_owned(),
                "--no-kubeconfig-merge".to_owned(),
                "--runtime".to_owned(),
                if real { "libcontainer" } else { "sim" }.to_owned(),
                "--nodes".to_owned(),
                lesson.cluster.nodes.to_string(),
                "--port".to_owned(),
                args.port.to_string(),
                "--ingress-port".to_owned(),
                args.ingress_port.to_string(),
                "--ingress-https-port".to_owned(),
                args.ingress_https_port.to_string(),
                "--cluster-cidr".to_owned(),
                args.cluster_cidr.to_string(),
            ];
            argv.extend(words.into_iter().map(Into::into));
            argv.extend(lesson.cluster.args.iter().map(Into::into));
            let up = Cli::try_parse_from(argv).map_err(|e| {
                CliError::Usage(format!("lesson {}: its cluster's flags: {e}", lesson.name))
            })?;
            let learn = crate::tui::app::LearnOptions {
                catalogue: Ok(catalogue.clone()),
                state_dir: dir,
                progress: progress_file,
                open: Some(lesson.name.clone()),
            };
            Box::pin(run(up, Some(learn))).await
        }
    }
}

/// Makes `dir` an empty directory for a lesson's cluster: what an earlier lesson left there
/// goes, unless a cluster still runs there.
fn fresh_lesson_dir(dir: &std::path::Path) -> Result<(), CliError> {
    if let Ok(text) = std::fs::read_to_string(crate::cluster::pid_file(dir))
        && let Some(pid) = text.split_whitespace().next().and_then(|p| p.parse().ok())
        && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
    {
        return Err(CliError::Usage(format!(
            "a lesson's cluster still runs in {} (pid {pid}): quit its dashboard, or orrery \
             --state-dir {} down",
            dir.display(),
            dir.display()
        )));
    }
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CliError::Usage(format!(
            "cannot clear the last lesson's cluster in {}: {e}",
            dir.display()
        ))),
    }
}

/// Rows under a header, columns padded as kubectl pads them (three spaces apart), each line
/// without trailing spaces.
pub(crate) fn table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let header = header.map(str::to_owned);
    let mut widths = [0usize; N];
    for row in std::iter::once(&header).chain(rows) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}   ", w = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The dashboard of `orrery up`, on the API server's in-process client; returns when the
/// cluster should stop. Quitting without stopping (or a dashboard that fails) leaves the cluster
/// running headless until Ctrl-C or `orrery down`.
async fn up_dashboard(
    api: Arc<crate::apiserver::ApiServer>,
    name: String,
    log: PathBuf,
    learn: crate::tui::app::LearnOptions,
) {
    use crate::tui::app::{self, Exit};
    let options = app::Options {
        host: crate::tui::model::Host::Up,
        cluster: name,
        client: api.client("dashboard"),
        manifests: crate::tui::source::manifests_dir(),
        learn: Some(learn),
    };
    let ended = tokio::spawn(app::run(options)).await;
    // The terminal is the cluster's again: what it says while stopping is seen.
    app::restore_stderr();
    let headless = match ended {
        Ok(Ok(Exit::QuitAndStop | Exit::Signal)) => return,
        Ok(Ok(Exit::Quit)) => "the dashboard is closed".to_owned(),
        Ok(Err(error)) => format!("the dashboard failed: {error}"),
        Err(error) => format!("the dashboard failed: {error}"),
    };
    println!(
        "orrery: {headless}; the cluster keeps running (Ctrl-C or orrery down stops it; \
         orrery tui opens a dashboard again; the dashboard's log is in {})",
        log.display()
    );
    crate::cluster::shutdown_signal().await;
}

async fn run_image(
    store: crate::images::ImageStore,
    command: ImageCommand,
) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match command {
        ImageCommand::Ls => {
            let rows: Vec<[String; 4]> = store
                .list()?
                .iter()
                .map(|image| {
                    let (repository, tag) = image.repository_and_tag();
                    let id = image.id.trim_start_matches("sha256:");
                    [
                        repository.to_owned(),
                        tag.to_owned(),
                        id[..id.len().min(12)].to_owned(),
                        human_size(image.size),
                    ]
                })
                .collect();
            write!(
                out,
                "{}",
                table(["IMAGE", "TAG", "IMAGE ID", "SIZE"], &rows)
            )?;
        }
        ImageCommand::Pull { reference } => {
            drop(out);
            let image = store.pull(&reference).await?;
            println!("Image is up to date for {} ({})", image.reference, image.id);
        }
        ImageCommand::Rm { reference } => {
            let removed = store.remove(&reference)?;
            writeln!(out, "Deleted: {removed}")?;
        }
        ImageCommand::Load { file, repository } => {
            for reference in store.load(&file, repository.as_deref())? {
                writeln!(out, "Loaded image: {reference}")?;
            }
        }
    }
    Ok(())
}

/// A size as Docker and crictl print it (decimal units, four significant digits: `4.27MB`).
fn human_size(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1000.0 && unit + 1 < units.len() {
        size /= 1000.0;
        unit += 1;
    }
    let decimals = match size {
        s if s >= 100.0 => 1,
        s if s >= 10.0 => 2,
        _ => 3,
    };
    let text = format!("{size:.decimals$}");
    let trimmed = text.trim_end_matches('0').trim_end_matches('.');
    format!("{trimmed}{}", units[unit])
}

/// Sends a control request to the running cluster and says what it did.
async fn control(
    cluster: &ClusterArgs,
    path: &str,
    role: &str,
    name: &str,
) -> Result<(), CliError> {
    let answer = crate::cluster::control(&cluster.state_dir()?, path).await?;
    let running = answer["running"].as_bool().unwrap_or(false);
    let changed = answer["changed"].as_bool().unwrap_or(false);
    // Killed only now: one that was already down is just stopped.
    let state = match (running, changed && path.ends_with("/kill")) {
        (true, _) => "started",
        (false, false) => "stopped",
        (false, true) => "killed",
    };
    if changed {
        println!("orrery: {role} {name} {state}");
    } else {
        println!("orrery: {role} {name} was already {state}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_print_like_crictl() {
        for (bytes, want) in [
            (0, "0B"),
            (512, "512B"),
            (1_500, "1.5kB"),
            (4_270_000, "4.27MB"),
            (338_372_824, "338.4MB"),
            (1_000_000_000, "1GB"),
        ] {
            assert_eq!(super::human_size(bytes), want, "{bytes}");
        }
    }
}
