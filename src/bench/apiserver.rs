//! `orrery bench apiserver`: the Kubernetes API as clients see it, over HTTPS with client
//! certificates, on the embedded store (durable on acknowledgement). Creates and gets per second
//! with 1 and 32 clients (each its own `kube::Client`, like 32 kubectls), single-object write
//! latency, LIST latency over 10,000 pods (as JSON, and as the Table `kubectl get` asks for),
//! and 100 concurrent watchers receiving every event.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;

use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams, WatchEvent, WatchParams};

use super::percentile;
use crate::apiserver::{kubeconfig, server};
use crate::pki::Pki;

/// Options of `orrery bench apiserver`.
#[derive(Clone, Debug, clap::Args)]
pub struct ApiBenchOptions {
    /// Keep the cluster's data under this directory [default: the system's temp directory].
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Operations per row with one client.
    #[arg(long, default_value_t = 1000)]
    pub single: usize,
    /// Operations per row with 32 clients.
    #[arg(long, default_value_t = 6400)]
    pub concurrent: usize,
    /// Pods to LIST.
    #[arg(long, default_value_t = 10_000)]
    pub pods: usize,
    /// Concurrent watchers.
    #[arg(long, default_value_t = 100)]
    pub watchers: usize,
    /// Events each watcher must receive.
    #[arg(long, default_value_t = 100)]
    pub events: usize,
}

/// No row runs longer than this.
const ROW_TIME_LIMIT: Duration = Duration::from_secs(120);

/// The figures.
#[derive(Clone, Debug, Default)]
pub struct ApiReport {
    options: Option<ApiBenchOptions>,
    creates_1: f64,
    creates_32: f64,
    custom_creates_1: f64,
    custom_creates_32: f64,
    gets_1: f64,
    gets_32: f64,
    write_p50: Duration,
    write_p99: Duration,
    list_all: Duration,
    list_paged: Duration,
    list_table: Duration,
    list_in_process: Duration,
    listed: usize,
    watch_p50: Duration,
    watch_p99: Duration,
    delivered: usize,
    expected: usize,
}

fn config_map(name: &str) -> ConfigMap {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"bench": "orrery"}},
        "data": {"payload": "x".repeat(512)},
    }))
    .expect("a valid ConfigMap")
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "c", "image": "orrery/hello:1", "ports": [{"containerPort": 8080}]}]},
    }))
    .expect("a valid Pod")
}

/// The bench's custom resource: `benchmarks.bench.orrery.dev`, a schema with a default, an
/// enum and a bound, so each create is pruned, defaulted and validated.
fn bench_resource() -> ApiResource {
    ApiResource {
        group: "bench.orrery.dev".into(),
        version: "v1".into(),
        api_version: "bench.orrery.dev/v1".into(),
        kind: "Benchmark".into(),
        plural: "benchmarks".into(),
    }
}

fn bench_object(name: &str) -> DynamicObject {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "bench.orrery.dev/v1",
        "kind": "Benchmark",
        "metadata": {"name": name},
        "spec": {"size": 3, "mode": "fast", "note": "x".repeat(64)},
    }))
    .expect("a valid object")
}

/// Creates the bench's CRD and waits until it is established (20 s at most).
async fn establish_bench_crd(api: &Arc<crate::apiserver::ApiServer>) -> Result<(), String> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crds: Api<CustomResourceDefinition> = Api::all(api.client("bench"));
    let crd = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "benchmarks.bench.orrery.dev"},
        "spec": {
            "group": "bench.orrery.dev",
            "scope": "Namespaced",
            "names": {"plural": "benchmarks", "singular": "benchmark", "kind": "Benchmark"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {"spec": {"type": "object", "required": ["size"], "properties": {
                    "size": {"type": "integer", "minimum": 1, "maximum": 100},
                    "mode": {"type": "string", "enum": ["fast", "slow"]},
                    "note": {"type": "string", "maxLength": 256},
                    "replicas": {"type": "integer", "default": 1},
                }}},
            }}}],
        },
    }))
    .map_err(|e| e.to_string())?;
    crds.create(&PostParams::default(), &crd)
        .await
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let crd = crds
            .get("benchmarks.bench.orrery.dev")
            .await
            .map_err(|e| e.to_string())?;
        let established = crd.status.and_then(|s| s.conditions).is_some_and(|c| {
            c.iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        });
        if established {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("the bench's CRD was not established within 20 s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn https_client(yaml: &str) -> Result<kube::Client, String> {
    let kubeconfig: kube::config::Kubeconfig =
        serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .map_err(|e| e.to_string())?;
    kube::Client::try_from(config).map_err(|e| e.to_string())
}

/// Runs `count` operations from `clients.len()` concurrent clients; returns ops/s and, per
/// operation, its latency.
async fn run<F, Fut>(
    clients: &[kube::Client],
    count: usize,
    op: F,
) -> Result<(f64, Vec<Duration>), String>
where
    F: Fn(kube::Client, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), kube::Error>> + Send,
{
    let started = Instant::now();
    let deadline = started + ROW_TIME_LIMIT;
    let mut tasks = tokio::task::JoinSet::new();
    let n = clients.len();
    for (c, client) in clients.iter().enumerate() {
        let (client, op) = (client.clone(), op.clone());
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            for i in (c..count).step_by(n) {
                if Instant::now() > deadline {
                    break;
                }
                let t = Instant::now();
                op(client.clone(), i).await?;
                latencies.push(t.elapsed());
            }
            Ok::<_, kube::Error>(latencies)
        });
    }
    let mut all = Vec::new();
    while let Some(result) = tasks.join_next().await {
        all.extend(
            result
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?,
        );
    }
    let rate = all.len() as f64 / started.elapsed().as_secs_f64();
    all.sort();
    Ok((rate, all))
}

/// Runs `orrery bench apiserver`.
pub async fn run_apiserver_bench(options: &ApiBenchOptions) -> Result<ApiReport, String> {
    let (dir, api, _flow) = super::in_process_api(options.dir.as_deref()).await?;
    let pki = Pki::load_or_create(&dir.path().join("pki")).map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let tls = pki.server_tls().map_err(|e| e.to_string())?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server::serve(listener, tls, api.router(), async {
        let _ = stopped.await;
    }));
    // The clients are a user RBAC judges (not `system:masters`, which is allowed before RBAC
    // looks): `bench` in group `orrery:bench`, bound to cluster-admin by a ClusterRoleBinding
    // among the defaults, so every request pays the authorizer's walk of the bindings.
    let bindings: Api<ClusterRoleBinding> = Api::all(api.client("bench"));
    bindings
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({
                "metadata": {"name": "orrery-bench"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "orrery:bench"}],
            }))
            .map_err(|e| e.to_string())?,
        )
        .await
        .map_err(|e| e.to_string())?;
    let (cert, key) = pki
        .issue_client(
            "bench",
            &["orrery:bench".to_owned()],
            Duration::from_secs(3600),
        )
        .map_err(|e| e.to_string())?;
    let yaml = kubeconfig::render_user(
        "bench",
        &format!("https://127.0.0.1:{port}"),
        &pki.ca_cert,
        "bench",
        &cert,
        &key,
    );
    let mut clients = Vec::new();
    for _ in 0..32 {
        clients.push(https_client(&yaml).await?);
    }
    let one = &clients[..1];
    let mut report = ApiReport {
        options: Some(options.clone()),
        ..ApiReport::default()
    };

    let create = |client: kube::Client, i: usize| async move {
        let api: Api<ConfigMap> = Api::namespaced(client, "default");
        api.create(&PostParams::default(), &config_map(&format!("cm-{i}")))
            .await
            .map(drop)
    };
    let (rate, latencies) = run(one, options.single, create).await?;
    report.creates_1 = rate;
    report.write_p50 = percentile(&latencies, 0.50);
    report.write_p99 = percentile(&latencies, 0.99);
    let create_many = |client: kube::Client, i: usize| async move {
        let api: Api<ConfigMap> = Api::namespaced(client, "default");
        api.create(&PostParams::default(), &config_map(&format!("many-{i}")))
            .await
            .map(drop)
    };
    report.creates_32 = run(&clients, options.concurrent, create_many).await?.0;
    let single = options.single;
    let get = move |client: kube::Client, i: usize| async move {
        let api: Api<ConfigMap> = Api::namespaced(client, "default");
        api.get(&format!("cm-{}", i % single.max(1)))
            .await
            .map(drop)
    };
    report.gets_1 = run(one, options.single, get).await?.0;
    report.gets_32 = run(&clients, options.concurrent, get).await?.0;

    // A custom resource's creates, next to a ConfigMap's: the same path, plus its CRD's
    // schema (pruning, defaulting, validation).
    establish_bench_crd(&api).await?;
    let custom = |client: kube::Client, i: usize| async move {
        let api: Api<DynamicObject> = Api::namespaced_with(client, "default", &bench_resource());
        api.create(&PostParams::default(), &bench_object(&format!("one-{i}")))
            .await
            .map(drop)
    };
    report.custom_creates_1 = run(one, options.single, custom).await?.0;
    let custom_many = |client: kube::Client, i: usize| async move {
        let api: Api<DynamicObject> = Api::namespaced_with(client, "default", &bench_resource());
        api.create(&PostParams::default(), &bench_object(&format!("many-{i}")))
            .await
            .map(drop)
    };
    report.custom_creates_32 = run(&clients, options.concurrent, custom_many).await?.0;

    // LIST over many pods.
    let create_pod = |client: kube::Client, i: usize| async move {
        let api: Api<Pod> = Api::namespaced(client, "default");
        api.create(&PostParams::default(), &pod(&format!("pod-{i:05}")))
            .await
            .map(drop)
    };
    run(&clients, options.pods, create_pod).await?;
    // Timed until the whole response has arrived, without the client's typed decoding.
    #[derive(serde::Deserialize)]
    struct Page {
        metadata: PageMeta,
        items: Vec<serde::de::IgnoredAny>,
    }
    #[derive(serde::Deserialize)]
    struct PageMeta {
        #[serde(rename = "continue", default)]
        continue_: Option<String>,
    }
    // A Table's rows are its items; kubectl asks for one with this Accept header.
    #[derive(serde::Deserialize)]
    struct TablePage {
        metadata: PageMeta,
        #[allow(dead_code)] // read to be sure the body is a Table
        rows: Vec<serde::de::IgnoredAny>,
    }
    const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
    let get = |query: String, accept: Option<&'static str>| {
        let client = clients[0].clone();
        async move {
            let mut request = http::Request::get(format!("/api/v1/namespaces/default/pods{query}"));
            if let Some(accept) = accept {
                request = request.header(http::header::ACCEPT, accept);
            }
            let request = request.body(Vec::new()).map_err(|e| e.to_string())?;
            client
                .request_text(request)
                .await
                .map_err(|e| e.to_string())
        }
    };
    let list = |query: String| {
        let text = get(query, None);
        async move { serde_json::from_str::<Page>(&text.await?).map_err(|e| e.to_string()) }
    };
    let list_table = |query: String| {
        let text = get(query, Some(TABLE));
        async move { serde_json::from_str::<TablePage>(&text.await?).map_err(|e| e.to_string()) }
    };
    let mut all_times = Vec::new();
    let mut paged_times = Vec::new();
    let mut table_times = Vec::new();
    let mut in_process_times = Vec::new();
    let in_process = api.client("bench");
    for _ in 0..5 {
        let t = Instant::now();
        let request = http::Request::get("/api/v1/namespaces/default/pods")
            .body(Vec::new())
            .map_err(|e| e.to_string())?;
        let text = in_process
            .request_text(request)
            .await
            .map_err(|e| e.to_string())?;
        in_process_times.push(t.elapsed());
        drop(text);
        let t = Instant::now();
        let page = list(String::new()).await?;
        all_times.push(t.elapsed());
        report.listed = page.items.len();
        let t = Instant::now();
        let mut query = "?limit=500".to_owned();
        loop {
            let page = list(query.clone()).await?;
            match page.metadata.continue_ {
                Some(token) if !token.is_empty() => query = format!("?limit=500&continue={token}"),
                _ => break,
            }
        }
        paged_times.push(t.elapsed());
        let t = Instant::now();
        let mut query = "?limit=500".to_owned();
        loop {
            let page = list_table(query.clone()).await?;
            match page.metadata.continue_ {
                Some(token) if !token.is_empty() => query = format!("?limit=500&continue={token}"),
                _ => break,
            }
        }
        table_times.push(t.elapsed());
    }
    all_times.sort();
    paged_times.sort();
    table_times.sort();
    in_process_times.sort();
    report.list_in_process = percentile(&in_process_times, 0.5);
    report.list_all = percentile(&all_times, 0.5);
    report.list_paged = percentile(&paged_times, 0.5);
    report.list_table = percentile(&table_times, 0.5);

    // Watchers: each must see every event; latency from the create's start to each delivery.
    let cms: Api<ConfigMap> = Api::namespaced(clients[0].clone(), "default");
    let rv = cms
        .list(&ListParams::default().limit(1))
        .await
        .map_err(|e| e.to_string())?
        .metadata
        .resource_version
        .unwrap_or_default();
    let started_at = Arc::new(std::sync::Mutex::new(std::collections::HashMap::<
        String,
        Instant,
    >::new()));
    let mut watchers = tokio::task::JoinSet::new();
    for w in 0..options.watchers {
        let client = clients[w % clients.len()].clone();
        let (rv, started_at, events) = (rv.clone(), started_at.clone(), options.events);
        watchers.spawn(async move {
            let api: Api<ConfigMap> = Api::namespaced(client, "default");
            let params = WatchParams::default().labels("bench=watch");
            let mut stream = api.watch(&params, &rv).await?.boxed();
            let mut latencies = Vec::new();
            let deadline = Instant::now() + ROW_TIME_LIMIT;
            while latencies.len() < events && Instant::now() < deadline {
                match tokio::time::timeout(Duration::from_secs(30), stream.try_next()).await {
                    Ok(Ok(Some(WatchEvent::Added(cm)))) => {
                        let name = cm.metadata.name.unwrap_or_default();
                        if let Some(t) = started_at.lock().expect("lock").get(&name) {
                            latencies.push(t.elapsed());
                        }
                    }
                    Ok(Ok(Some(_))) => {}
                    _ => break,
                }
            }
            Ok::<_, kube::Error>(latencies)
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..options.events {
        let name = format!("watched-{i}");
        let mut cm = config_map(&name);
        cm.metadata.labels = Some([("bench".to_owned(), "watch".to_owned())].into());
        started_at
            .lock()
            .expect("lock")
            .insert(name, Instant::now());
        cms.create(&PostParams::default(), &cm)
            .await
            .map_err(|e| e.to_string())?;
    }
    let mut latencies = Vec::new();
    while let Some(result) = watchers.join_next().await {
        latencies.extend(
            result
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?,
        );
    }
    latencies.sort();
    report.delivered = latencies.len();
    report.expected = options.watchers * options.events;
    report.watch_p50 = percentile(&latencies, 0.5);
    report.watch_p99 = percentile(&latencies, 0.99);

    let _ = stop.send(());
    let _ = serving.await;
    Ok(report)
}

impl fmt::Display for ApiReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let o = self.options.clone().unwrap_or(ApiBenchOptions {
            dir: None,
            single: 0,
            concurrent: 0,
            pods: 0,
            watchers: 0,
            events: 0,
        });
        writeln!(
            f,
            "orrery bench apiserver: HTTPS with client certificates, embedded store (fsync per commit);\n\
             the clients are user `bench`, authorized by RBAC through a ClusterRoleBinding"
        )?;
        writeln!(f)?;
        writeln!(f, "| {:<52} | {:>12} |", "", "measured")?;
        writeln!(f, "|{:-<54}|{:->14}|", "", "")?;
        let mut row = |name: String, value: String| writeln!(f, "| {name:<52} | {value:>12} |");
        row(
            format!("creates/s, 1 client ({} ConfigMaps)", o.single),
            format!("{:.0}", self.creates_1),
        )?;
        row(
            format!("creates/s, 32 clients ({} ConfigMaps)", o.concurrent),
            format!("{:.0}", self.creates_32),
        )?;
        row(
            format!("custom resource creates/s, 1 client ({})", o.single),
            format!("{:.0}", self.custom_creates_1),
        )?;
        row(
            format!("custom resource creates/s, 32 clients ({})", o.concurrent),
            format!("{:.0}", self.custom_creates_32),
        )?;
        row("gets/s, 1 client".into(), format!("{:.0}", self.gets_1))?;
        row("gets/s, 32 clients".into(), format!("{:.0}", self.gets_32))?;
        row(
            "single-object write p50 (ms)".into(),
            format!("{:.2}", ms(self.write_p50)),
        )?;
        row(
            "single-object write p99 (ms, goal < 5)".into(),
            format!("{:.2}", ms(self.write_p99)),
        )?;
        row(
            format!("LIST {} pods, one request (ms, goal < 100)", self.listed),
            format!("{:.1}", ms(self.list_all)),
        )?;
        row(
            format!("LIST {} pods, pages of 500 like kubectl (ms)", self.listed),
            format!("{:.1}", ms(self.list_paged)),
        )?;
        row(
            format!("LIST {} pods as Tables (kubectl get, ms)", self.listed),
            format!("{:.1}", ms(self.list_table)),
        )?;
        row(
            format!("LIST {} pods, in-process client, no TLS (ms)", self.listed),
            format!("{:.1}", ms(self.list_in_process)),
        )?;
        row(
            format!("{} watchers: events delivered / expected", o.watchers),
            format!("{}/{}", self.delivered, self.expected),
        )?;
        row(
            "watch create->event p50 (ms)".into(),
            format!("{:.2}", ms(self.watch_p50)),
        )?;
        row(
            "watch create->event p99 (ms)".into(),
            format!("{:.2}", ms(self.watch_p99)),
        )?;
        Ok(())
    }
}
