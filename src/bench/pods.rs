//! `orrery bench pods`: how fast a pod starts, measured from outside as a user would. It starts
//! `orrery up --headless` (this binary, one node, the chosen runtime, a temporary state
//! directory) as a child process, runs one pod first so the image is present, then creates
//! `--pods` pods one at a time through the API and times each from the create call to the watch
//! event that shows it `Running` (p50 and p99). Next to that it prints the raw cost of the same
//! container created and started directly through libcontainer (`orrery bench raw-container`,
//! run as a child process because libcontainer must run single-threaded), and the time for a
//! `--replicas` Deployment to be all Running. Every wait is bounded by `--timeout`.

use std::fmt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};

use super::cluster::{Up, client};
use super::percentile;

/// Options of `orrery bench pods`.
#[derive(Clone, Debug, clap::Args)]
pub struct PodBenchOptions {
    /// The runtime: `libcontainer` (needs root) or `sim`.
    #[arg(long, default_value = "libcontainer", value_parser = ["libcontainer", "sim"])]
    pub runtime: String,
    /// Pods started one at a time.
    #[arg(long, default_value_t = 50)]
    pub pods: u32,
    /// Replicas of the Deployment timed until all are Running (0: skip).
    #[arg(long, default_value_t = 100)]
    pub replicas: u32,
    /// The image.
    #[arg(long, default_value = "orrery/hello:bench")]
    pub image: String,
    /// Give up waiting after this long, per step.
    #[arg(long, default_value = "120s", value_parser = crate::cli::parse_duration)]
    pub timeout: Duration,
}

/// The figures.
#[derive(Clone, Debug, Default)]
pub struct PodReport {
    runtime: String,
    image: String,
    samples: Vec<Duration>,
    raw: Option<Result<(Duration, Duration), String>>,
    replicas: u32,
    deployment: Option<Duration>,
}

impl fmt::Display for PodReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
        writeln!(
            f,
            "runtime {} · image {} · one node",
            self.runtime, self.image
        )?;
        let mut sorted = self.samples.clone();
        sorted.sort();
        writeln!(
            f,
            "pod create -> Running ({} pods, one at a time, image present): p50 {} · p99 {} · max {}",
            sorted.len(),
            ms(percentile(&sorted, 0.5)),
            ms(percentile(&sorted, 0.99)),
            ms(sorted.last().copied().unwrap_or_default()),
        )?;
        match &self.raw {
            Some(Ok((p50, p99))) => writeln!(
                f,
                "raw libcontainer create+start of the same container, those pods running: p50 {} · p99 {} (pod p50 is {:.1}x)",
                ms(*p50),
                ms(*p99),
                percentile(&sorted, 0.5).as_secs_f64() / p50.as_secs_f64().max(1e-9)
            )?,
            Some(Err(e)) => writeln!(f, "raw libcontainer create+start: not measured ({e})")?,
            None => {}
        }
        if self.replicas > 0 {
            match self.deployment {
                Some(d) => writeln!(
                    f,
                    "Deployment of {} replicas: all Running after {:.2} s",
                    self.replicas,
                    d.as_secs_f64()
                )?,
                None => writeln!(
                    f,
                    "Deployment of {} replicas: not all Running in time",
                    self.replicas
                )?,
            }
        }
        Ok(())
    }
}

fn pod(name: &str, image: &str, labels: serde_json::Value) -> Result<Pod, String> {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "app", "image": image, "imagePullPolicy": "IfNotPresent"}],
        },
    }))
    .map_err(|e| e.to_string())
}

/// Creates `pod` and waits for the watch to show it Running: the time between the two.
async fn time_to_running(
    pods: &Api<Pod>,
    pod: &Pod,
    timeout: Duration,
) -> Result<Duration, String> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    // Watch from the list's revision so that no event is missed, then create.
    let list = pods
        .list(&ListParams::default().fields(&format!("metadata.name={name}")))
        .await
        .map_err(|e| e.to_string())?;
    let rv = list.metadata.resource_version.unwrap_or_default();
    let mut events = pods
        .watch(
            &WatchParams::default().fields(&format!("metadata.name={name}")),
            &rv,
        )
        .await
        .map_err(|e| e.to_string())?
        .boxed();
    let started = Instant::now();
    pods.create(&PostParams::default(), pod)
        .await
        .map_err(|e| format!("cannot create pod {name}: {e}"))?;
    let wait = async {
        while let Some(event) = events.try_next().await.map_err(|e| e.to_string())? {
            if let WatchEvent::Added(p) | WatchEvent::Modified(p) = event
                && p.status.and_then(|s| s.phase).as_deref() == Some("Running")
            {
                return Ok(started.elapsed());
            }
        }
        Err(format!("the watch on pod {name} ended"))
    };
    tokio::time::timeout(timeout, wait)
        .await
        .map_err(|_| format!("pod {name} not Running after {timeout:?}"))?
}

/// Runs the benchmark.
pub async fn run_pod_bench(options: &PodBenchOptions) -> Result<PodReport, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let child = Command::new(&exe)
        .arg("--state-dir")
        .arg(dir.path())
        .args(["--name", "bench"])
        .args(["up", "--headless", "--port", "0", "--no-kubeconfig-merge"])
        .args(["--ingress-port", "0", "--ingress-https-port", "0"])
        .args(["--runtime", &options.runtime, "--nodes", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start orrery up: {e}"))?;
    let _up = Up(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !crate::cluster::pid_file(dir.path()).exists() {
        if Instant::now() > deadline {
            return Err("orrery up did not start within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let client = client(dir.path()).await?;
    let nodes: Api<Node> = Api::all(client.clone());
    while nodes
        .get_opt("node-1")
        .await
        .ok()
        .flatten()
        .and_then(|n| n.status?.conditions)
        .is_none_or(|c| !c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    {
        if Instant::now() > deadline {
            return Err("node-1 not Ready within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut report = PodReport {
        runtime: options.runtime.clone(),
        image: options.image.clone(),
        replicas: options.replicas,
        ..Default::default()
    };
    // The first pod pulls (or generates) the image; it is not counted.
    let warm = pod(
        "warm-up",
        &options.image,
        serde_json::json!({"bench": "warm"}),
    )?;
    time_to_running(&pods, &warm, options.timeout).await?;
    // Graceful deletion (the pods' 1 s grace; hello exits on SIGTERM at once): the kubelet
    // removes the pod only once its containers and sandbox are gone, so "gone" means the
    // node is idle again.
    let gone = DeleteParams::default();
    for i in 0..options.pods {
        let p = pod(
            &format!("start-{i}"),
            &options.image,
            serde_json::json!({"bench": "start"}),
        )?;
        report
            .samples
            .push(time_to_running(&pods, &p, options.timeout).await?);
    }
    // The raw start under the same conditions as the last pods: with them all running.
    if options.runtime == "libcontainer" {
        report.raw = Some(raw_container(&exe, &options.image, dir.path()));
    }
    let _ = pods
        .delete_collection(&gone, &ListParams::default().labels("bench"))
        .await;
    if options.replicas > 0 {
        // Wait for the single pods to be gone so that the node has room.
        let wait_gone = Instant::now() + options.timeout;
        while pods
            .list(&ListParams::default().labels("bench"))
            .await
            .map(|l| !l.items.is_empty())
            .unwrap_or(false)
            && Instant::now() < wait_gone
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
        let deployment: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "bench"},
            "spec": {
                "replicas": options.replicas,
                "selector": {"matchLabels": {"app": "bench"}},
                "template": {
                    "metadata": {"labels": {"app": "bench"}},
                    "spec": {
                        "terminationGracePeriodSeconds": 1,
                        "containers": [{"name": "app", "image": options.image, "imagePullPolicy": "IfNotPresent"}],
                    },
                },
            },
        }))
        .map_err(|e| e.to_string())?;
        let created = Instant::now();
        deployments
            .create(&PostParams::default(), &deployment)
            .await
            .map_err(|e| format!("cannot create the Deployment: {e}"))?;
        let deadline = created + options.timeout;
        while Instant::now() < deadline {
            let running = pods
                .list(&ListParams::default().labels("app=bench"))
                .await
                .map(|l| {
                    l.items
                        .iter()
                        .filter(|p| {
                            p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                        })
                        .count()
                })
                .unwrap_or(0);
            if running >= options.replicas as usize {
                report.deployment = Some(created.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(report)
}

/// Runs `orrery bench raw-container` and reads its `p50_us p99_us` line.
fn raw_container(
    exe: &std::path::Path,
    image: &str,
    state_dir: &std::path::Path,
) -> Result<(Duration, Duration), String> {
    let out = Command::new(exe)
        .arg("--state-dir")
        .arg(state_dir)
        .args(["bench", "raw-container", "--image", image])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run orrery bench raw-container: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "orrery bench raw-container failed ({})",
            out.status
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut numbers = text
        .split_whitespace()
        .filter_map(|w| w.parse::<u64>().ok());
    match (numbers.next(), numbers.next()) {
        (Some(p50), Some(p99)) => Ok((Duration::from_micros(p50), Duration::from_micros(p99))),
        _ => Err(format!("unexpected output {text:?}")),
    }
}
