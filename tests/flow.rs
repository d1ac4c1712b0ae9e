//! The flow as a learner sees it: every request and store write is an event, in order, and in
//! step mode a write waits at its gate until it is released (through `/orrery/v1/stepper`).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use orrery::apiserver::ApiServer;
use orrery::flow::Flow;
use orrery::store::Store;
use orrery::store::embedded::EmbeddedStore;

async fn cluster() -> (Arc<ApiServer>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(&dir.path().join("store.redb")).unwrap());
    let api = ApiServer::new(store, Flow::new());
    api.bootstrap().await.unwrap();
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

#[tokio::test]
async fn a_create_is_a_request_then_a_store_write() {
    let (api, _dir) = cluster().await;
    let (_, mut events) = api.flow().subscribe(u64::MAX);
    let cms: Api<ConfigMap> = Api::namespaced(api.client("controller/demo"), "default");
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
