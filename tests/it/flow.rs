//! The flow as a learner sees it: every request and store write is an event, in order, and in
//! step mode a write waits at its gate until it is released (through `/orrery/v1/stepper`).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, PostParams};
use orrery::apiserver::ApiServer;
use orrery::flow::{Flow, FlowEvent};
use orrery::store::Store;
use orrery::store::embedded::EmbeddedStore;
use serde_json::Value;

async fn cluster() -> (Arc<ApiServer>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(&dir.path().join("store.redb")).unwrap());
    let api = ApiServer::new(store, Flow::new());
    api.bootstrap().await.unwrap();
    crate::common::default_account(&api, "default").await;
    (api, dir)
}

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap()
}

async fn control(api: &Arc<ApiServer>, method: &str, path: &str, body: &str) -> String {
    let client = api.client("test");
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .body(body.as_bytes().to_vec())
        .unwrap();
    client.request_text(request).await.unwrap()
}

/// A test's in-process client, named as a controller in the flow, with the administrator's
/// rights (no role is bootstrapped for a made-up controller).
fn admin() -> orrery::apiserver::auth::UserInfo {
    orrery::apiserver::auth::UserInfo::new("kubernetes-admin", &["system:masters"])
}

#[tokio::test]
async fn a_create_is_a_request_then_a_store_write() {
    let (api, _dir) = cluster().await;
    let (_, mut events) = api.flow().subscribe(u64::MAX);
    let cms: Api<ConfigMap> = Api::namespaced(api.client_as("controller/demo", admin()), "default");
    let created = cms
        .create(&PostParams::default(), &cm("hello"))
        .await
        .unwrap();
    let request = events.recv().await.unwrap();
    assert_eq!(
        (
            request.from.as_str(),
            request.to.as_str(),
            request.verb.as_str()
        ),
        ("controller/demo", "apiserver", "POST")
    );
    assert_eq!(request.kind, "ConfigMap");
    let write = events.recv().await.unwrap();
    assert_eq!(
        (write.from.as_str(), write.to.as_str(), write.verb.as_str()),
        ("apiserver", "store", "CREATE")
    );
    assert_eq!(
        (write.namespace.as_str(), write.name.as_str()),
        ("default", "hello")
    );
    assert_eq!(
        write.revision.map(|r| r.to_string()),
        created.metadata.resource_version
    );
    assert_eq!(write.root, "ConfigMap/hello");
    assert!(write.seq > request.seq);
}

/// A write's story is the root of its owner references, read from the API server's owner
/// index: a pod of a Deployment's ReplicaSet is the Deployment's, even when the ReplicaSet was
/// written just before it.
#[tokio::test]
async fn a_writes_story_is_the_root_of_its_owners() {
    let (api, _dir) = cluster().await;
    let client = api.client_as("controller/demo", admin());
    let create = |kind: &str, body: Value| {
        let client = client.clone();
        let (group, plural) = match kind {
            "Deployment" => ("apis/apps/v1", "deployments"),
            "ReplicaSet" => ("apis/apps/v1", "replicasets"),
            _ => ("api/v1", "pods"),
        };
        let uri = format!("/{group}/namespaces/default/{plural}");
        async move {
            let request = http::Request::post(uri)
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&body).unwrap())
                .unwrap();
            client.request::<Value>(request).await.unwrap()
        }
    };
    let labels = serde_json::json!({"app": "web"});
    let template = serde_json::json!({"metadata": {"labels": labels},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
    let deployment = create(
        "Deployment",
        serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {"selector": {"matchLabels": labels}, "template": template}}),
    )
    .await;
    let owner = |value: &Value, kind: &str| {
        serde_json::json!([{"apiVersion": "apps/v1", "kind": kind,
            "name": value["metadata"]["name"], "uid": value["metadata"]["uid"],
            "controller": true}])
    };
    let rs = create(
        "ReplicaSet",
        serde_json::json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web-1", "ownerReferences": owner(&deployment, "Deployment")},
            "spec": {"selector": {"matchLabels": labels}, "template": template}}),
    )
    .await;
    let pod = |name: &str| {
        serde_json::json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels,
                "ownerReferences": owner(&rs, "ReplicaSet")},
            "spec": template["spec"]})
    };
    // The story of the last store write creating `name`.
    let story_of = |name: &str| {
        let (recent, _) = api.flow().subscribe(0);
        recent
            .into_iter()
            .rev()
            .find(|hop| hop.to == "store" && hop.verb == "CREATE" && hop.name == name)
            .map(|hop| hop.root)
            .unwrap()
    };
    create("Pod", pod("web-1-a")).await;
    assert_eq!(story_of("web-1-a"), "Deployment/web");
}

#[tokio::test]
async fn the_flow_endpoint_streams_json_lines() {
    let (api, _dir) = cluster().await;
    let client = api.client("test");
    let request = http::Request::get("/orrery/v1/flow?since=0")
        .body(Vec::new())
        .unwrap();
    let mut lines = client.request_stream(request).await.unwrap();
    // The bootstrap already wrote four namespaces: the backlog replays them first.
    let mut buffer = Vec::new();
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let mut chunk = vec![0u8; 4096];
        let n = tokio::time::timeout(
            Duration::from_secs(5),
            futures::AsyncReadExt::read(&mut lines, &mut chunk),
        )
        .await
        .unwrap()
        .unwrap();
        buffer.extend_from_slice(&chunk[..n]);
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            let event: serde_json::Value = serde_json::from_slice(&line).unwrap();
            if event["verb"] == "CREATE" {
                seen.push(event["name"].as_str().unwrap().to_owned());
            }
        }
    }
    assert_eq!(
        seen,
        ["default", "kube-system", "kube-public", "kube-node-lease"]
    );
}

#[tokio::test]
async fn step_mode_holds_a_write_until_released() {
    let (api, _dir) = cluster().await;
    let answer = control(&api, "POST", "/orrery/v1/stepper", r#"{"mode":"step"}"#).await;
    assert!(answer.contains(r#""mode":"step""#), "{answer}");
    let cms: Api<ConfigMap> = Api::namespaced(api.client("test"), "default");
    let create = tokio::spawn({
        let cms = cms.clone();
        async move { cms.create(&PostParams::default(), &cm("held")).await }
    });
    let mut waited = 0;
    while api.flow().stepper().waiting() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 1;
        assert!(waited < 500, "the write never reached its gate");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!create.is_finished(), "the write must wait for a step");
    assert!(
        cms.get_opt("held").await.unwrap().is_none(),
        "nothing is stored before the gate opens"
    );
    let answer = control(&api, "POST", "/orrery/v1/stepper", r#"{"release":1}"#).await;
    assert!(answer.contains(r#""mode":"step""#), "{answer}");
    let created = tokio::time::timeout(Duration::from_secs(5), create)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(created.metadata.name.as_deref(), Some("held"));
    control(&api, "POST", "/orrery/v1/stepper", r#"{"mode":"run"}"#).await;
    cms.create(&PostParams::default(), &cm("free"))
        .await
        .unwrap();
}

#[tokio::test]
async fn reads_are_store_operations_too() {
    let (api, _dir) = cluster().await;
    let cms: Api<ConfigMap> = Api::namespaced(api.client("test"), "default");
    cms.create(&PostParams::default(), &cm("read-me"))
        .await
        .unwrap();
    let (_, mut events) = api.flow().subscribe(u64::MAX);
    cms.get("read-me").await.unwrap();
    cms.list(&Default::default()).await.unwrap();
    let verbs: Vec<(String, String)> = (0..4)
        .map(|_| {
            events
                .try_recv()
                .map(|e| (format!("{}->{}", e.from, e.to), e.verb))
                .unwrap()
        })
        .collect();
    assert_eq!(
        verbs,
        [
            ("test->apiserver".into(), "GET".into()),
            ("apiserver->store".into(), "GET".into()),
            ("test->apiserver".into(), "LIST".into()),
            ("apiserver->store".into(), "RANGE".into()),
        ]
    );
}

/// A `/orrery/v1` request's status code and JSON answer.
async fn answer(api: &Arc<ApiServer>, method: &str, path: &str, body: &str) -> (u16, Value) {
    let client = api.client("test");
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .body(kube::client::Body::from(body.as_bytes().to_vec()))
        .unwrap();
    let response = client.send(request).await.unwrap();
    let code = response.status().as_u16();
    let bytes = response.into_body().collect_bytes().await.unwrap();
    (code, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn the_store_endpoint_shows_an_objects_key_and_revisions() {
    let (api, _dir) = cluster().await;
    let cms: Api<ConfigMap> = Api::namespaced(api.client("test"), "default");
    let created = cms
        .create(&PostParams::default(), &cm("kept"))
        .await
        .unwrap();
    let mut changed = created.clone();
    for value in ["one", "two"] {
        changed.data = Some([("k".to_owned(), value.to_owned())].into());
        changed = cms
            .replace("kept", &PostParams::default(), &changed)
            .await
            .unwrap();
    }
    let (code, info) = answer(&api, "GET", "/orrery/v1/store/configmaps/default/kept", "").await;
    assert_eq!(code, 200, "{info}");
    assert_eq!(info["key"], "/registry/configmaps/default/kept");
    assert_eq!(
        info["createRevision"].to_string(),
        created.metadata.resource_version.unwrap()
    );
    assert_eq!(
        info["modRevision"].to_string(),
        changed.metadata.resource_version.unwrap()
    );
    assert_eq!(info["version"], 3, "created, then written twice: {info}");
    // Cluster-scoped objects use `-` for the namespace; a group may be named.
    let (code, info) = answer(&api, "GET", "/orrery/v1/store/namespaces/-/default", "").await;
    assert_eq!(
        (code, info["key"].as_str()),
        (200, Some("/registry/namespaces/default"))
    );
    let (code, _) = answer(
        &api,
        "GET",
        "/orrery/v1/store/deployments.apps/default/none",
        "",
    )
    .await;
    assert_eq!(code, 404);
    // Missing: Kubernetes' NotFound, naming the resource and the object.
    let (code, status) = answer(&api, "GET", "/orrery/v1/store/configmaps/default/nope", "").await;
    assert_eq!(code, 404);
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "NotFound");
    assert_eq!(status["message"], r#"configmaps "nope" not found"#);
    assert_eq!(status["details"]["name"], "nope");
    let (code, status) = answer(&api, "GET", "/orrery/v1/store/widgets/default/x", "").await;
    assert_eq!((code, status["reason"].as_str()), (404, Some("NotFound")));
}

#[tokio::test]
async fn the_stepper_api_focuses_releases_one_gate_and_refuses_bad_commands() {
    let (api, _dir) = cluster().await;
    let (code, state) = answer(
        &api,
        "POST",
        "/orrery/v1/stepper",
        r#"{"mode":"step","focus":{"namespace":"default"}}"#,
    )
    .await;
    assert_eq!(code, 200, "{state}");
    assert_eq!(state["focus"], serde_json::json!({"namespace": "default"}));
    // Outside the focus nothing is held.
    let other: Api<ConfigMap> = Api::namespaced(api.client("test"), "kube-system");
    tokio::time::timeout(
        Duration::from_secs(5),
        other.create(&PostParams::default(), &cm("free")),
    )
    .await
    .expect("another namespace is not held")
    .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(api.client("test"), "default");
    let create = tokio::spawn({
        let cms = cms.clone();
        async move { cms.create(&PostParams::default(), &cm("held")).await }
    });
    let mut pending = Value::Null;
    for _ in 0..500 {
        let (_, state) = answer(&api, "GET", "/orrery/v1/stepper", "").await;
        if state["waiting"] == 1 {
            pending = state["pending"][0].clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(pending["namespace"], "default", "{pending}");
    assert_eq!(pending["name"], "held");
    assert!(
        pending["words"].as_str().unwrap().contains("held"),
        "{pending}"
    );
    let id = pending["id"].as_u64().unwrap();
    // A gate that is not waiting: 404.
    let (code, status) = answer(
        &api,
        "POST",
        "/orrery/v1/stepper",
        &format!(r#"{{"releaseGate":{}}}"#, id + 1000),
    )
    .await;
    assert_eq!((code, status["reason"].as_str()), (404, Some("NotFound")));
    assert!(!create.is_finished());
    let (code, state) = answer(
        &api,
        "POST",
        "/orrery/v1/stepper",
        &format!(r#"{{"releaseGate":{id}}}"#),
    )
    .await;
    assert_eq!(code, 200, "{state}");
    tokio::time::timeout(Duration::from_secs(5), create)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    // A mode the stepper does not have: 422 Invalid, with the field named.
    let (code, status) = answer(&api, "POST", "/orrery/v1/stepper", r#"{"mode":"walk"}"#).await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(status["details"]["causes"][0]["field"], "mode");
    let (code, status) = answer(&api, "POST", "/orrery/v1/stepper", "mode=run").await;
    assert_eq!((code, status["reason"].as_str()), (400, Some("BadRequest")));
    let (_, state) = answer(
        &api,
        "POST",
        "/orrery/v1/stepper",
        r#"{"mode":"run","focus":null}"#,
    )
    .await;
    assert_eq!(state["mode"], "run");
    assert!(state.get("focus").is_none(), "{state}");
}

/// A kubelet on the simulated runtime, in the same process as `api`.
fn kubelet(api: &Arc<ApiServer>, dir: &tempfile::TempDir) -> tokio::task::JoinHandle<()> {
    use orrery::kubelet::{Kubelet, NodeConfig};
    use orrery::runtime::sim::{SimOptions, SimRuntime};
    let config = NodeConfig {
        name: "node-1".into(),
        index: 1,
        cluster_cidr: Default::default(),
        address: orrery::kubelet::sim_address(1),
        cpu: "4".into(),
        memory: "8Gi".into(),
        max_pods: 110,
        lease_duration_seconds: 40,
        root_dir: dir.path().join("kubelet/node-1"),
        pod_pids_limit: None,
        cluster_dns: vec![orrery::kubelet::DEFAULT_CLUSTER_DNS],
        cluster_domain: orrery::dns::DEFAULT_DOMAIN.into(),
        control_plane: None,
    };
    let runtime = Arc::new(SimRuntime::new(SimOptions::default()));
    let pki = orrery::pki::Pki::load_or_create(&dir.path().join("pki")).unwrap();
    let tls = pki
        .kubelet_serving(
            "node-1",
            orrery::kubelet::sim_address(1).into(),
            &config.root_dir.join("pki"),
        )
        .unwrap();
    tokio::spawn(
        Kubelet::new(
            config,
            api.client("kubelet/node-1"),
            runtime,
            api.flow().clone(),
            tls,
        )
        .run(),
    )
}

fn bound_pod(namespace: &str, name: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": namespace},
        // No service account token: no controller manager runs here to publish the CA.
        "spec": {"nodeName": "node-1", "automountServiceAccountToken": false,
                 "containers": [{"name": "app", "image": "orrery/hello"}]},
    }))
    .unwrap()
}

/// The events so far about pod `name`, as `from -> to VERB`, and the events themselves.
fn hops_of(api: &ApiServer, name: &str) -> Vec<FlowEvent> {
    api.flow()
        .subscribe(0)
        .0
        .into_iter()
        .filter(|e| e.kind == "Pod" && e.name == name)
        .collect()
}

fn line(e: &FlowEvent) -> String {
    format!("{} -> {} {}", e.from, e.to, e.verb)
}

async fn wait_for_running(pods: &Api<Pod>, name: &str) {
    for _ in 0..500 {
        let pod = pods.get(name).await.unwrap();
        if pod.status.and_then(|s| s.phase).as_deref() == Some("Running") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{name} never ran");
}

#[tokio::test]
async fn a_pod_travels_kubelet_to_runtime_and_its_status_back() {
    let (api, dir) = cluster().await;
    let node = kubelet(&api, &dir);
    // Once the kubelet watches its pods, a new pod reaches it as a watch event.
    let mut watching = false;
    for _ in 0..500 {
        watching = api
            .flow()
            .subscribe(0)
            .0
            .iter()
            .any(|e| e.from == "kubelet/node-1" && e.verb == "WATCH" && e.kind == "Pod");
        if watching {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(watching, "the kubelet never watched its pods");
    let pods: Api<Pod> = Api::namespaced(api.client("test"), "default");
    pods.create(&PostParams::default(), &bound_pod("default", "web-1"))
        .await
        .unwrap();
    wait_for_running(&pods, "web-1").await;
    let hops = hops_of(&api, "web-1");
    let lines: Vec<String> = hops.iter().map(line).collect();
    let position = |wanted: &str| {
        lines
            .iter()
            .position(|l| l == wanted)
            .unwrap_or_else(|| panic!("no {wanted:?} in {lines:#?}"))
    };
    let order = [
        "apiserver -> store CREATE",
        "apiserver -> kubelet/node-1 WATCH ADDED",
        "kubelet/node-1 -> runtime/node-1 RUN SANDBOX",
        "runtime/node-1 -> kubelet/node-1 SANDBOX READY",
        "kubelet/node-1 -> runtime/node-1 PULL IMAGE",
        "runtime/node-1 -> kubelet/node-1 IMAGE PULLED",
        "kubelet/node-1 -> runtime/node-1 CREATE CONTAINER",
        "kubelet/node-1 -> runtime/node-1 START CONTAINER",
    ];
    let at: Vec<usize> = order.iter().map(|w| position(w)).collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{lines:#?}");
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.ends_with("START CONTAINER"))
            .count(),
        1
    );
    let running = hops
        .iter()
        .find(|e| e.verb == "STATUS" && e.detail.starts_with("Running"))
        .unwrap_or_else(|| panic!("no Running STATUS in {lines:#?}"));
    assert_eq!(running.detail, "Running, 1/1 ready");
    assert_eq!(running.from, "kubelet/node-1");
    assert!(running.seq > hops[at[7]].seq);
    let sandbox = &hops[at[3]];
    assert!(sandbox.detail.starts_with("10.244."), "{}", sandbox.detail);
    // The hops are in the pod's story, and carry its uid.
    assert!(
        hops[at[3]].root.starts_with("Pod/web-1"),
        "{}",
        hops[at[3]].root
    );
    assert!(!hops[at[3]].uid.is_empty());
    // Nothing changes: no more status writes for it, however many syncs pass.
    let statuses = hops.iter().filter(|e| e.verb == "STATUS").count();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let later = hops_of(&api, "web-1");
    assert_eq!(
        later.iter().filter(|e| e.verb == "STATUS").count(),
        statuses
    );
    // Deletion: the container stops, then the sandbox; the kubelet writes the pod's end (its
    // own hop), and only then deletes the pod for good; the sandbox goes last.
    pods.delete("web-1", &Default::default()).await.unwrap();
    for _ in 0..500 {
        if pods.get_opt("web-1").await.unwrap().is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let hops = hops_of(&api, "web-1");
    let lines: Vec<String> = hops.iter().map(line).collect();
    let mut at = 0;
    let mut ending = Vec::new();
    for wanted in [
        "test -> apiserver DELETE",
        "kubelet/node-1 -> runtime/node-1 STOP CONTAINER",
        "runtime/node-1 -> kubelet/node-1 CONTAINER EXITED",
        "kubelet/node-1 -> runtime/node-1 STOP SANDBOX",
        "kubelet/node-1 -> apiserver STATUS",
        "kubelet/node-1 -> apiserver PATCH",
        "kubelet/node-1 -> apiserver DELETE",
        "apiserver -> store DELETE",
        "kubelet/node-1 -> runtime/node-1 REMOVE SANDBOX",
    ] {
        at += lines[at..]
            .iter()
            .position(|l| l == wanted)
            .unwrap_or_else(|| panic!("no {wanted:?} after hop {at} in {lines:#?}"));
        ending.push(&hops[at]);
    }
    assert_eq!(ending[2].detail, "app code 143 (Error)");
    assert_eq!(ending[4].detail, "Failed, 0/1 ready");
    node.abort();
}

#[tokio::test]
async fn in_step_mode_the_kubelet_waits_at_its_gates() {
    let (api, dir) = cluster().await;
    let node = kubelet(&api, &dir);
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(api.client("test"));
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": "demo"}})).unwrap(),
        )
        .await
        .unwrap();
    // Its account first: in step mode its create would wait at a gate of its own.
    crate::common::default_account(&api, "demo").await;
    // Step only the demo namespace: the node's own registration and heartbeats keep going.
    answer(
        &api,
        "POST",
        "/orrery/v1/stepper",
        r#"{"mode":"step","focus":{"namespace":"demo"}}"#,
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(api.client("test"), "demo");
    let create = tokio::spawn({
        let pods = pods.clone();
        async move {
            pods.create(&PostParams::default(), &bound_pod("demo", "p"))
                .await
        }
    });
    // Release one gate at a time, noting what each was and that its hop came only after.
    let mut words = Vec::new();
    for _ in 0..3000 {
        let state = api.flow().stepper().state();
        if let Some(gate) = state.pending.first() {
            let hop_verb = gate.verb.clone();
            if gate.from == "kubelet/node-1" {
                let before = hops_of(&api, "p");
                assert!(
                    !before
                        .iter()
                        .any(|e| e.from == gate.from && e.verb == hop_verb && e.seq > gate.id),
                    "{hop_verb} went before its gate opened"
                );
            }
            words.push(gate.words.clone());
            assert!(api.flow().stepper().release_gate(gate.id));
            if gate.words.contains("STATUS Running") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let find = |prefix: &str| {
        words
            .iter()
            .position(|w| w.starts_with(prefix))
            .unwrap_or_else(|| panic!("no gate {prefix:?} in {words:#?}"))
    };
    let sandbox = find("kubelet/node-1 wants to RUN SANDBOX for demo/p");
    let start = find("kubelet/node-1 wants to START CONTAINER app of demo/p");
    let status = find("kubelet/node-1 wants to write STATUS Running, 1/1 ready for demo/p");
    assert!(sandbox < start && start < status, "{words:#?}");
    create.await.unwrap().unwrap();
    answer(&api, "POST", "/orrery/v1/stepper", r#"{"mode":"run"}"#).await;
    wait_for_running(&pods, "p").await;

    // Deleting it in step mode: the kubelet's write of the pod's end is a step of its own,
    // before the pod leaves the store.
    answer(
        &api,
        "POST",
        "/orrery/v1/stepper",
        r#"{"mode":"step","focus":{"namespace":"demo"}}"#,
    )
    .await;
    let delete = tokio::spawn({
        let pods = pods.clone();
        async move { pods.delete("p", &Default::default()).await }
    });
    let mut words: Vec<String> = Vec::new();
    for _ in 0..3000 {
        let state = api.flow().stepper().state();
        if let Some(gate) = state.pending.first() {
            words.push(gate.words.clone());
            assert!(api.flow().stepper().release_gate(gate.id));
            if gate.words.starts_with("apiserver wants to DELETE") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ended = words
        .iter()
        .position(|w| w == "kubelet/node-1 wants to write STATUS Failed, 0/1 ready for demo/p")
        .unwrap_or_else(|| panic!("the pod's end was no step: {words:#?}"));
    let removed = words
        .iter()
        .position(|w| w.starts_with("apiserver wants to DELETE") && w.contains("demo/p"))
        .unwrap_or_else(|| panic!("the pod never left the store: {words:#?}"));
    assert!(ended < removed, "{words:#?}");
    delete.await.unwrap().unwrap();
    answer(&api, "POST", "/orrery/v1/stepper", r#"{"mode":"run"}"#).await;
    node.abort();
}

#[tokio::test]
async fn watch_deliveries_are_hops_and_a_replay_is_one() {
    let (api, _dir) = cluster().await;
    let cms: Api<ConfigMap> = Api::namespaced(api.client_as("controller/demo", admin()), "default");
    cms.create(&PostParams::default(), &cm("before"))
        .await
        .unwrap();
    let before = cms.get("before").await.unwrap();
    // From a resourceVersion: no replay, only what changes after it.
    let stream = cms
        .watch(
            &Default::default(),
            before.metadata.resource_version.as_deref().unwrap(),
        )
        .await
        .unwrap();
    let mut stream = Box::pin(stream);
    let (_, mut events) = api.flow().subscribe(u64::MAX);
    let created = cms
        .create(&PostParams::default(), &cm("after"))
        .await
        .unwrap();
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        futures::StreamExt::next(&mut stream),
    )
    .await
    .unwrap();
    let mut delivered = None;
    while let Ok(Ok(e)) = tokio::time::timeout(Duration::from_secs(5), events.recv()).await {
        if e.verb.starts_with("WATCH ") && e.name == "after" {
            delivered = Some(e);
            break;
        }
    }
    let delivered = delivered.expect("the delivery is on the flow");
    assert_eq!(
        (
            delivered.from.as_str(),
            delivered.to.as_str(),
            delivered.verb.as_str()
        ),
        ("apiserver", "controller/demo", "WATCH ADDED")
    );
    assert_eq!(
        delivered.revision.map(|r| r.to_string()),
        created.metadata.resource_version
    );
    assert_eq!(delivered.root, "ConfigMap/after");
    let replay = api
        .flow()
        .subscribe(0)
        .0
        .into_iter()
        .filter(|e| e.to == "controller/demo" && e.verb.starts_with("WATCH"))
        .collect::<Vec<_>>();
    // A watch that asks for the current objects gets one SYNC hop for all of them.
    assert!(replay.iter().all(|e| e.name != "before"), "{replay:#?}");
    let raw = api.client_as("controller/sync", admin());
    let request = http::Request::get("/api/v1/namespaces/default/configmaps?watch=true")
        .body(Vec::new())
        .unwrap();
    let _lines = raw.request_stream(request).await.unwrap();
    let mut sync = None;
    for _ in 0..200 {
        sync = api
            .flow()
            .subscribe(0)
            .0
            .into_iter()
            .find(|e| e.to == "controller/sync" && e.verb == "WATCH SYNC");
        if sync.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let sync = sync.expect("one SYNC hop for the replay");
    assert_eq!(sync.detail, "2 objects to controller/sync");
    assert!(
        !api.flow()
            .subscribe(0)
            .0
            .iter()
            .any(|e| e.to == "controller/sync" && e.verb == "WATCH ADDED")
    );
}
