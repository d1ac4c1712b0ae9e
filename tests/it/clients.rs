//! What real clients see on the wire, through the official Python client, kube-rs and kubectl:
//! boolean query parameters as kube-apiserver converts them, `[]byte` fields wrapped in lines,
//! Go's JSON (field order, `"status": {}`, omitted zeros, a `Status` byte for byte),
//! `stringData` merged into `data`, concurrent patches without a resourceVersion, and
//! server-side apply of an empty map.

use crate::common;

use common::Cluster;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};

/// A kube-rs client of `cluster`, from the kubeconfig `orrery up` wrote.
async fn client(cluster: &Cluster) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(cluster.kubeconfig()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

/// The raw answer to a GET: status and body bytes.
async fn raw_get(client: &kube::Client, path: &str) -> (u16, Vec<u8>) {
    let request = http::Request::get(path).body(Vec::new()).unwrap();
    let response = client
        .send(request.map(kube::client::Body::from))
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, body)
}

#[test]
fn the_python_client_watches_with_watch_true() {
    let cluster = Cluster::start();
    // The client sends `watch=True`; kube-apiserver takes any value but 0 and false as true.
    let out = cluster.python(
        r#"
from kubernetes import watch
api.create_namespaced_config_map("default", {"metadata": {"name": "first"}})
w = watch.Watch()
for event in w.stream(api.list_namespaced_config_map, "default", timeout_seconds=20):
    name = event["object"].metadata.name
    if name == "kube-root-ca.crt":
        continue  # every namespace has it, as on any cluster
    print(event["type"], name)
    if name == "first":
        api.create_namespaced_config_map("default", {"metadata": {"name": "second"}})
    if name == "second":
        w.stop()
"#,
    );
    // The first is in the watch's initial state; the second arrives while it streams.
    assert_eq!(out.trim(), "ADDED first\nADDED second", "{out}");
    // `watch=False` (or 0) is a list, and `watch=` (empty) a watch, as kube-apiserver reads them.
    let listed = cluster.ok(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/configmaps?watch=False",
    ]);
    assert!(listed.contains("\"kind\":\"ConfigMapList\""), "{listed}");
    let listed = cluster.ok(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/configmaps?watch=0",
    ]);
    assert!(listed.contains("\"kind\":\"ConfigMapList\""), "{listed}");
}

/// The TLS Secret of the Kubernetes documentation ("Secrets", TLS secrets), its `data` wrapped
/// at 76 columns as `base64` wraps it.
const DOCS_TLS_SECRET: &str = "apiVersion: v1
kind: Secret
metadata:
  name: secret-tls
type: kubernetes.io/tls
data:
  # values are base64 encoded, which obscures them but does NOT provide
  # any useful level of confidentiality
  tls.crt: |
    LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUNVakNDQWJzQ0FnMytNQTBHQ1NxR1NJYjNE
    UUVCQlFVQU1JR2JNUXN3Q1FZRFZRUUdFd0pLVURFT01Bd0dBMVVFQ0JNRlZHOXIKZVc4eEVEQU9C
    Z05WQkFjVEIwTm9kVzh0YTNVeEVUQVBCZ05WQkFvVENFWnlZVzVyTkVSRU1SZ3dGZ1lEVlFRTApF
    dzlYWldKRFpYSjBJRk4xY0hCdmNuUXhHREFXQmdOVkJBTVREMFp5WVc1ck5FUkVJRmRsWWlCRFFU
    RWpNQ0VHCkNTcUdTSWIzRFFFSkFSWVVjM1Z3Y0c5eWRFQm1jbUZ1YXpSa1pDNWpiMjB3SGhjTk1U
    TXdNVEV4TURRMU1UTTUKV2hjTk1UZ3dNVEV3TURRMU1UTTVXakJMTVFzd0NRWURWUVFHREFKS1VE
    RVBNQTBHQTFVRUNBd0dYRlJ2YTNsdgpNUkV3RHdZRFZRUUtEQWhHY21GdWF6UkVSREVZTUJZR0Ex
    VUVBd3dQZDNkM0xtVjRZVzF3YkdVdVkyOXRNSUdhCk1BMEdDU3FHU0liM0RRRUJBUVVBQTRHSUFE
    Q0JoQUo5WThFaUhmeHhNL25PbjJTbkkxWHhEd09kQkRUMUpQMEwKM0doQUo4cGhpYWlTUm5QM3RY
    TnJ0N0NNb2RvNENBRGhOMk9sSzA5eTRMUm1CVGFrbWhmOU1RNzhLSGsrQjJYMgpTVEZrMjBqNFN3
    UU5mWGZZTHdpR2FINy9wbE9JSWZ1aHdKSmZaRXVqbzFTSmIzM0E1VG9nYjhvUWtHZU5hNUR0CnZw
    SzhhdGdMQTBIdmxXOUJBd3JVcjNaZFJyc2hJbjV5QkZpSjNDUDc0emMxUXpvSzRJZlk4dE9aVGtR
    aFlXNUQKUlZ0K0x3M3BsUHQwRGczNnRqTjZZS2lkNk5QYmt1MGF2Uk5CR1dzbklYcUhwVlFDOWgw
    ZXZWdGpDSC9HVG9PWAo=
  # In this example, the key data is not a real PEM-encoded private key
  tls.key: |
    RXhhbXBsZSBkYXRhIGZvciB0aGUgVExTIGNydCBmaWVsZA==
";

/// The Python client asks for `follow=True`: the log streams until the container ends, instead
/// of stopping at what was written when it asked.
#[test]
fn the_python_client_follows_logs_with_follow_true() {
    let cluster = Cluster::with_nodes(1);
    cluster.ok_with(
        &["apply", "-f", "-"],
        Some(
            r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "talker"},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox",
              "command": ["sh", "-c", "echo first; sleep 5; echo last"]}]}}"#,
        ),
    );
    cluster.eventually(&["logs", "talker"], 30, |t| t.contains("first"));
    let out = cluster
        .python(r#"print(api.read_namespaced_pod_log("talker", "default", follow=True), end="")"#);
    assert_eq!(out, "first\nlast\n");
}

#[test]
fn line_wrapped_base64_is_accepted_and_bad_base64_refused_in_gos_words() {
    let cluster = Cluster::start();
    cluster.apply(DOCS_TLS_SECRET);
    let crt = cluster.ok(&[
        "get",
        "secret",
        "secret-tls",
        "-o",
        "jsonpath={.data.tls\\.crt}",
    ]);
    assert!(
        !crt.contains('\n') && crt.starts_with("LS0tLS1CRUdJTi"),
        "{crt}"
    );
    let key = cluster.ok(&[
        "get",
        "secret",
        "secret-tls",
        "-o",
        "jsonpath={.data.tls\\.key}",
    ]);
    assert_eq!(key, "RXhhbXBsZSBkYXRhIGZvciB0aGUgVExTIGNydCBmaWVsZA==");
    // binaryData is []byte too.
    cluster.apply(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bin}\nbinaryData:\n  b: |\n    aGVs\n    bG8=\n",
    );
    assert_eq!(
        cluster.ok(&["get", "cm", "bin", "-o", "jsonpath={.binaryData.b}"]),
        "aGVsbG8="
    );
    let err = cluster.fails(
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: Secret\nmetadata: {name: bad}\ndata: {x: 'ab*d'}\n"),
    );
    assert!(
        err.contains(
            "Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data at input byte 2"
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wire_is_gos() {
    let cluster = Cluster::start();
    let client = client(&cluster).await;
    // A Status, byte for byte as kube-apiserver writes it.
    let (code, body) = raw_get(&client, "/api/v1/namespaces/default/pods/nope").await;
    assert_eq!(code, 404);
    assert_eq!(
        String::from_utf8(body).unwrap(),
        "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\
         \"message\":\"pods \\\"nope\\\" not found\",\"reason\":\"NotFound\",\
         \"details\":{\"name\":\"nope\",\"kind\":\"pods\"},\"code\":404}\n"
    );
    // A fresh Deployment has `"status": {}`, in Go's field order.
    cluster.ok(&[
        "create",
        "deployment",
        "web",
        "--image=orrery/hello",
        "--replicas=0",
    ]);
    let (code, body) = raw_get(&client, "/apis/apps/v1/namespaces/default/deployments/web").await;
    assert_eq!(code, 200);
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.starts_with("{\"kind\":\"Deployment\",\"apiVersion\":\"apps/v1\",\"metadata\":{\"name\":\"web\",\"namespace\":\"default\",\"uid\":"),
        "{text}"
    );
    assert!(text.ends_with("\n"), "{text}");
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(value["status"].is_object(), "{text}");
    let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 5, "{keys:?}");
    // Zeros Go omits are omitted; an emptied ownerReferences goes.
    cluster.ok(&[
        "patch",
        "deployment",
        "web",
        "--type=merge",
        "-p",
        r#"{"metadata":{"ownerReferences":[]},"spec":{"minReadySeconds":0,"paused":false}}"#,
    ]);
    let (_, body) = raw_get(&client, "/apis/apps/v1/namespaces/default/deployments/web").await;
    let text = String::from_utf8(body).unwrap();
    for absent in [
        "ownerReferences",
        "minReadySeconds",
        "paused",
        "unavailableReplicas\":0",
    ] {
        assert!(!text.contains(absent), "{absent} in {text}");
    }
    assert!(
        text.contains("\"replicas\":0"),
        "a pointer's zero stays: {text}"
    );
    // The Python client reads `.status` of a fresh object.
    let out = cluster.python(
        r#"
d = client.AppsV1Api().read_namespaced_deployment("web", "default")
print(type(d.status).__name__)
"#,
    );
    assert_eq!(out.trim(), "V1DeploymentStatus");
    // List items carry no kind or apiVersion, and keep Go's order.
    let (_, body) = raw_get(&client, "/apis/apps/v1/namespaces/default/deployments").await;
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.starts_with("{\"kind\":\"DeploymentList\",\"apiVersion\":\"apps/v1\",\"metadata\":{\"resourceVersion\":"),
        "{text}"
    );
    assert!(
        text.contains("\"items\":[{\"metadata\":{\"name\":\"web\""),
        "{text}"
    );
    assert!(text.ends_with("]}\n"), "{text}");
    // A page's ListMeta in Go's order: resourceVersion, then continue.
    cluster.ok(&[
        "create",
        "deployment",
        "api",
        "--image=orrery/hello",
        "--replicas=0",
    ]);
    let (_, body) = raw_get(
        &client,
        "/apis/apps/v1/namespaces/default/deployments?limit=1",
    )
    .await;
    let text = String::from_utf8(body).unwrap();
    let meta = text
        .strip_prefix("{\"kind\":\"DeploymentList\",\"apiVersion\":\"apps/v1\",\"metadata\":{")
        .and_then(|t| t.split_once('}'))
        .map(|(meta, _)| meta)
        .unwrap_or_else(|| panic!("{text}"));
    let keys: Vec<&str> = meta
        .split(',')
        .map(|pair| pair.split(':').next().unwrap())
        .collect();
    assert_eq!(keys, ["\"resourceVersion\"", "\"continue\""], "{text}");
    // So do the items of a list filtered on other fields than metadata's.
    cluster.ok(&["run", "waiting", "--image=orrery/hello"]);
    let (_, body) = raw_get(
        &client,
        "/api/v1/namespaces/default/pods?fieldSelector=status.phase%3DPending",
    )
    .await;
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.contains("\"items\":[{\"metadata\":{\"name\":\"waiting\""),
        "{text}"
    );
    // Watch events are `{"type":...,"object":...}`.
    let (_, body) = raw_get(
        &client,
        "/apis/apps/v1/namespaces/default/deployments?watch=1&timeoutSeconds=1",
    )
    .await;
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.starts_with(
            "{\"type\":\"ADDED\",\"object\":{\"kind\":\"Deployment\",\"apiVersion\":\"apps/v1\","
        ),
        "{text}"
    );
}

#[test]
fn string_data_is_merged_into_data_and_reaches_a_pod() {
    let cluster = Cluster::with_nodes(1);
    cluster.apply(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: creds}\ndata: {user: b2xk, keep: a2VlcA==}\nstringData: {user: admin, password: s3cret}\n",
    );
    let secret: serde_json::Value =
        serde_json::from_str(&cluster.ok(&["get", "secret", "creds", "-o", "json"])).unwrap();
    assert!(secret.get("stringData").is_none(), "{secret}");
    assert_eq!(
        secret["data"]["user"], "YWRtaW4=",
        "stringData overwrites data"
    );
    assert_eq!(secret["data"]["password"], "czNjcmV0");
    assert_eq!(secret["data"]["keep"], "a2VlcA==");
    cluster.apply(
        "apiVersion: v1
kind: Pod
metadata: {name: reader}
spec:
  containers:
  - name: app
    image: orrery/hello
    command: [/orrery, sleep, infinity]
    env:
    - name: PASSWORD
      valueFrom: {secretKeyRef: {name: creds, key: password}}
",
    );
    cluster.eventually(
        &["get", "pod", "reader", "-o", "jsonpath={.status.phase}"],
        30,
        |phase| phase == "Running",
    );
    let env = cluster.ok(&["exec", "reader", "--", "env"]);
    assert!(env.lines().any(|l| l == "PASSWORD=s3cret"), "{env}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_patches_without_a_resource_version_all_succeed() {
    let cluster = Cluster::start();
    let client = client(&cluster).await;
    let maps: Api<ConfigMap> = Api::namespaced(client, "default");
    cluster.ok(&["create", "configmap", "hot"]);
    let mut tasks = Vec::new();
    for i in 0..50 {
        let merging = maps.clone();
        tasks.push(tokio::spawn(async move {
            let merge = serde_json::json!({"data": {format!("merge-{i}"): "x"}});
            merging
                .patch("hot", &PatchParams::default(), &Patch::Merge(&merge))
                .await
                .map(|_| ())
        }));
        let maps = maps.clone();
        tasks.push(tokio::spawn(async move {
            let strategic = serde_json::json!({"data": {format!("strategic-{i}"): "y"}});
            maps.patch(
                "hot",
                &PatchParams::default(),
                &Patch::Strategic(&strategic),
            )
            .await
            .map(|_| ())
        }));
    }
    let mut failures = Vec::new();
    for task in tasks {
        if let Err(e) = task.await.unwrap() {
            failures.push(e.to_string());
        }
    }
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}",
        failures.len()
    );
    let hot = maps.get("hot").await.unwrap();
    assert_eq!(hot.data.unwrap_or_default().len(), 100);
    // A patch that carries a resourceVersion may still conflict, as on kube-apiserver.
    let stale = serde_json::json!({"metadata": {"resourceVersion": "1"}, "data": {"late": "z"}});
    let err = maps
        .patch("hot", &PatchParams::default(), &Patch::Merge(&stale))
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409),
        "{err}"
    );
}

#[test]
fn server_side_apply_of_an_empty_map_gives_up_the_keys() {
    let cluster = Cluster::start();
    let apply = |data: &str| {
        cluster.ok_with(
            &["apply", "--server-side", "--field-manager=me", "-f", "-"],
            Some(&format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: owned}}\n{data}\n"
            )),
        );
    };
    let data = || cluster.ok(&["get", "cm", "owned", "-o", "jsonpath={.data}"]);
    apply("data: {a: '1', b: '2'}");
    apply("data: {b: '2'}");
    assert_eq!(data(), r#"{"b":"2"}"#);
    apply("data: {a: '1', b: '2'}");
    apply("data: {}");
    assert_eq!(data(), "", "data: {{}} removes the keys this manager owned");
    apply("data: {a: '1'}");
    apply("");
    assert_eq!(data(), "", "leaving data out removes them too");
}
