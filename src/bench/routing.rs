//! `orrery bench services`, part (b): what a ClusterIP costs a request. It starts `orrery up
//! --headless` on real containers (this binary, one node, a temporary state directory and a
//! name of its own) as a child process, runs one `orrery/hello` pod behind a ClusterIP
//! Service, and then, from the host (whose own connections the control-plane node's kube-proxy
//! routes), alternates the same HTTP request on a new TCP connection to the pod's IP and to the
//! Service's ClusterIP: the latencies side by side and their ratio. Every wait is bounded.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::api::{Api, ListParams, PostParams};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::cluster::{Up, client};
use super::percentile;

/// The figures of part (b).
#[derive(Clone, Debug)]
pub struct RoutingFigures {
    /// Straight to the pod's IP.
    pub direct: Vec<Duration>,
    /// Through the Service's ClusterIP.
    pub service: Vec<Duration>,
}

impl RoutingFigures {
    /// `(p50, p99)` of `samples`.
    pub fn quantiles(samples: &[Duration]) -> (Duration, Duration) {
        let mut sorted = samples.to_vec();
        sorted.sort();
        (percentile(&sorted, 0.5), percentile(&sorted, 0.99))
    }

    /// The ClusterIP's p50 over the pod IP's.
    pub fn ratio(&self) -> f64 {
        let (direct, _) = Self::quantiles(&self.direct);
        let (service, _) = Self::quantiles(&self.service);
        service.as_secs_f64() / direct.as_secs_f64().max(1e-9)
    }
}

/// One `GET /` on a new connection, the whole answer read; its time.
async fn request(address: &str) -> Result<Duration, String> {
    let began = Instant::now();
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(address)
            .await
            .map_err(|e| format!("connect {address}: {e}"))?;
        stream
            .write_all(b"GET / HTTP/1.0\r\n\r\n")
            .await
            .map_err(|e| e.to_string())?;
        let mut answer = Vec::new();
        stream
            .read_to_end(&mut answer)
            .await
            .map_err(|e| e.to_string())?;
        if !answer.starts_with(b"HTTP/1.0 200") && !answer.starts_with(b"HTTP/1.1 200") {
            return Err(format!(
                "{address} answered {:?}",
                String::from_utf8_lossy(&answer)
            ));
        }
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| format!("{address}: no answer within 5 s"))??;
    Ok(began.elapsed())
}

async fn until<T, F, Fut>(what: &str, deadline: Instant, mut look: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    loop {
        if let Some(found) = look().await {
            return Ok(found);
        }
        if Instant::now() > deadline {
            return Err(format!("{what}: not within the time allowed"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs part (b): `requests` requests each way, alternating.
pub async fn routing(requests: usize, timeout: Duration) -> Result<RoutingFigures, String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("needs root: real containers and nftables".into());
    }
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let name = format!("bench-svc-{}", std::process::id());
    let child = Command::new(exe)
        .arg("--state-dir")
        .arg(dir.path())
        .args(["--name", &name])
        .args(["up", "--headless", "--port", "0", "--no-kubeconfig-merge"])
        .args(["--runtime", "libcontainer", "--nodes", "1"])
        .args(["--cluster-cidr", "10.240.0.0/16"])
        .args(["--ingress-port", "0", "--ingress-https-port", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start orrery up: {e}"))?;
    let _up = Up(child);
    let deadline = Instant::now() + timeout;
    until("orrery up", deadline, || async {
        crate::cluster::pid_file(dir.path()).exists().then_some(())
    })
    .await?;
    let client = client(dir.path()).await?;
    let nodes: Api<Node> = Api::all(client.clone());
    until("node-1 Ready", deadline, || async {
        let node = nodes.get_opt("node-1").await.ok().flatten()?;
        node.status?
            .conditions?
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
            .then_some(())
    })
    .await?;
    let deployment: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "hello"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "hello"}},
            "template": {
                "metadata": {"labels": {"app": "hello"}},
                "spec": {"containers": [{
                    "name": "hello", "image": "orrery/hello",
                    "ports": [{"containerPort": 8080}],
                    "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
                }]},
            },
        },
    }))
    .map_err(|e| e.to_string())?;
    let service: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "hello"},
        "spec": {"selector": {"app": "hello"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }))
    .map_err(|e| e.to_string())?;
    Api::<Deployment>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &deployment)
        .await
        .map_err(|e| e.to_string())?;
    let service = Api::<Service>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &service)
        .await
        .map_err(|e| e.to_string())?;
    let cluster_ip = service
        .spec
        .and_then(|s| s.cluster_ip)
        .ok_or("the Service got no ClusterIP")?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod_ip = until("the hello pod ready", deadline, || async {
        let list = pods.list(&ListParams::default().labels("app=hello")).await;
        let pod = list.ok()?.items.into_iter().next()?;
        let status = pod.status?;
        let ready = status
            .conditions?
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        ready.then_some(status.pod_ip?)
    })
    .await?;
    let direct = format!("{pod_ip}:8080");
    let through = format!("{cluster_ip}:80");
    // Once kube-proxy has the endpoint, the ClusterIP answers.
    until("the ClusterIP answering", deadline, || async {
        request(&through).await.ok()
    })
    .await?;
    // Warm both paths, then alternate so that both see the same machine.
    for _ in 0..20 {
        request(&direct).await?;
        request(&through).await?;
    }
    let mut figures = RoutingFigures {
        direct: Vec::with_capacity(requests),
        service: Vec::with_capacity(requests),
    };
    for _ in 0..requests {
        figures.direct.push(request(&direct).await?);
        figures.service.push(request(&through).await?);
        if Instant::now() > deadline {
            break;
        }
    }
    Ok(figures)
}
