//! The `kube` crate as a client of record: typed CRUD, lists, watches, watch resume, and
//! kube-runtime's watcher running through a compaction (410, relist) to the right state.

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::watcher;
use orrery::apiserver::ApiServer;
use orrery::flow::Flow;
use orrery::store::Store;
use orrery::store::embedded::EmbeddedStore;

struct InProcess {
    api: Arc<ApiServer>,
    store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
}

async fn in_process() -> InProcess {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(&dir.path().join("store.redb")).unwrap());
    let api = ApiServer::new(store.clone(), Flow::new());
    api.bootstrap().await.unwrap();
    crate::common::default_account(&api, "default").await;
    InProcess {
        api,
        store,
        _dir: dir,
    }
}

fn config_map(name: &str, value: &str) -> ConfigMap {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"app": "demo"}},
        "data": {"value": value},
    }))
    .unwrap()
}

#[tokio::test]
async fn typed_crud_and_lists() {
    let cluster = in_process().await;
    let client = cluster.api.client("test");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let created = cms
        .create(&PostParams::default(), &config_map("a", "1"))
        .await
        .unwrap();
    assert!(created.metadata.uid.is_some() && created.metadata.resource_version.is_some());
    for i in 0..5 {
        cms.create(&PostParams::default(), &config_map(&format!("b{i}"), "x"))
            .await
            .unwrap();
    }
    let page = cms.list(&ListParams::default().limit(4)).await.unwrap();
    assert_eq!(page.items.len(), 4);
    let token = page.metadata.continue_.clone().expect("a continue token");
    let rest = cms
        .list(&ListParams::default().limit(4).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 2);
    assert!(rest.metadata.continue_.is_none());
    let patched = cms
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"data": {"value": "2"}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.data.unwrap()["value"], "2");
    let applied = cms
        .patch(
            "c",
            &PatchParams::apply("tester"),
            &Patch::Apply(config_map("c", "applied")),
        )
        .await
        .unwrap();
    assert_eq!(
        applied.metadata.managed_fields.unwrap()[0]
            .manager
            .as_deref(),
        Some("tester")
    );
    let err = cms.get("missing").await.unwrap_err();
    match err {
        kube::Error::Api(status) => {
            assert_eq!((status.code, status.reason.as_str()), (404, "NotFound"))
        }
        other => panic!("{other}"),
    }
    let selected = cms
        .list(
            &ListParams::default()
                .labels("app=demo")
                .fields("metadata.name=b3"),
        )
        .await
        .unwrap();
    assert_eq!(selected.items.len(), 1);
}

/// A LIST without a limit longer than one store page (500) is read page by page while its body
/// flows: every object is in it once, in key order, at the revision of its first page, so
/// objects written meanwhile are not; label selectors apply across the pages.
#[tokio::test]
async fn a_long_list_is_whole_and_at_one_revision() {
    let cluster = in_process().await;
    let client = cluster.api.client("test");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for i in 0..1203 {
        let mut cm = config_map(&format!("cm-{i:04}"), "x");
        if i % 2 == 1 {
            cm.metadata.labels = None;
        }
        cms.create(&PostParams::default(), &cm).await.unwrap();
    }
    let all = cms.list(&ListParams::default()).await.unwrap();
    let names: Vec<String> = all
        .items
        .iter()
        .filter_map(|c| c.metadata.name.clone())
        .filter(|name| name.starts_with("cm-"))
        .collect();
    let expected: Vec<String> = (0..1203).map(|i| format!("cm-{i:04}")).collect();
    assert_eq!(names, expected);
    let at: u64 = all.metadata.resource_version.unwrap().parse().unwrap();
    assert!(all.items.iter().all(|c| {
        c.metadata
            .resource_version
            .as_deref()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            <= at
    }));
    let labelled = cms
        .list(&ListParams::default().labels("app=demo"))
        .await
        .unwrap();
    assert_eq!(labelled.items.len(), 602);

    // Writes racing a list: the list holds the objects as of its revision, whatever the writes.
    let writer = {
        let cms = cms.clone();
        tokio::spawn(async move {
            for i in 0..50 {
                cms.create(
                    &PostParams::default(),
                    &config_map(&format!("new-{i:02}"), "x"),
                )
                .await
                .unwrap();
            }
        })
    };
    for _ in 0..5 {
        let list = cms.list(&ListParams::default()).await.unwrap();
        let at: u64 = list.metadata.resource_version.unwrap().parse().unwrap();
        let racing = list
            .items
            .iter()
            .filter(|c| c.metadata.name.as_deref().unwrap().starts_with("new-"))
            .count();
        let at_revision = |prefix: &str| orrery::store::RangeRequest {
            at_revision: Some(at),
            ..orrery::store::RangeRequest::prefix(prefix)
        };
        let store = &cluster.store;
        let new = store
            .range(&at_revision("/registry/configmaps/default/new-"))
            .await
            .unwrap();
        assert_eq!(racing, new.kvs.len());
        let stored = store
            .range(&at_revision("/registry/configmaps/default/"))
            .await
            .unwrap();
        assert_eq!(list.items.len(), stored.kvs.len());
    }
    writer.await.unwrap();
}

#[tokio::test]
async fn watch_resumes_from_a_resource_version() {
    let cluster = in_process().await;
    let cms: Api<ConfigMap> = Api::namespaced(cluster.api.client("test"), "default");
    let listed = cms.list(&ListParams::default()).await.unwrap();
    let rv = listed.metadata.resource_version.unwrap();
    cms.create(&PostParams::default(), &config_map("a", "1"))
        .await
        .unwrap();
    cms.create(&PostParams::default(), &config_map("b", "1"))
        .await
        .unwrap();
    let mut stream = cms
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    let mut names = Vec::new();
    while names.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(5), stream.try_next())
            .await
            .unwrap()
            .unwrap()
        {
            Some(WatchEvent::Added(cm)) => names.push(cm.metadata.name.unwrap()),
            Some(WatchEvent::Bookmark(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(names, ["a", "b"]);
}

#[tokio::test]
async fn kube_runtime_watcher_relists_through_a_compaction() {
    let cluster = in_process().await;
    let client = cluster.api.client("test");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    cms.create(&PostParams::default(), &config_map("before", "1"))
        .await
        .unwrap();

    // Watch requests that end after a second, so the watcher re-watches from its last version.
    let config = watcher::Config::default().timeout(1);
    let (reader, writer) = kube::runtime::reflector::store::<ConfigMap>();
    let stream = kube::runtime::reflector(writer, watcher(cms.clone(), config));
    let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
    let task = tokio::spawn({
        let errors = errors.clone();
        async move {
            let mut stream = stream.boxed();
            while let Some(item) = stream.next().await {
                if let Err(e) = item {
                    errors.lock().unwrap().push(e.to_string());
                }
            }
        }
    });
    reader.wait_until_ready().await.unwrap();

    // While nothing happens to configmaps, other writes move the store on; then compact it all,
    // so the watcher's next watch (its last one ends after a second) asks for a compacted
    // revision and gets 410 Expired.
    for i in 0..20 {
        let s: Secret =
            serde_json::from_value(serde_json::json!({"metadata": {"name": format!("s{i}")}}))
                .unwrap();
        secrets.create(&PostParams::default(), &s).await.unwrap();
    }
    let current = cluster.store.current_revision().await.unwrap();
    cluster.store.compact(current).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while errors.lock().unwrap().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the watcher never hit the compaction"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cms.create(&PostParams::default(), &config_map("during", "1"))
        .await
        .unwrap();
    cms.create(&PostParams::default(), &config_map("after", "1"))
        .await
        .unwrap();

    // The watcher converges on every configmap, relisting where it had to.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut names: Vec<String> = reader
            .state()
            .iter()
            .filter_map(|cm| cm.metadata.name.clone())
            .collect();
        names.sort();
        if names == ["after", "before", "during"] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "watcher state: {names:?}, errors: {:?}",
            errors.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!task.is_finished(), "the watcher keeps running");
    // The only errors it may have seen are 410s that it answered with a relist.
    for e in errors.lock().unwrap().iter() {
        assert!(
            e.contains("410") || e.to_lowercase().contains("expired") || e.contains("too old"),
            "unexpected watcher error: {e}"
        );
    }
    task.abort();
}

#[tokio::test]
async fn the_kubeconfig_client_speaks_https_with_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(&dir.path().join("store.redb")).unwrap());
    let api = ApiServer::new(store, Flow::new());
    api.bootstrap().await.unwrap();
    let pki = orrery::pki::Pki::load_or_create(&dir.path().join("pki")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let tls = pki.server_tls().unwrap();
    tokio::spawn(orrery::apiserver::server::serve(
        listener,
        tls,
        api.router(),
        std::future::pending(),
    ));
    let yaml =
        orrery::apiserver::kubeconfig::render("t", &format!("https://127.0.0.1:{port}"), &pki);
    let kubeconfig: kube::config::Kubeconfig = serde_yaml::from_str(&yaml).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client);
    let names: Vec<String> = namespaces
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert_eq!(
        names,
        ["default", "kube-node-lease", "kube-public", "kube-system"]
    );
}

#[tokio::test]
async fn streaming_lists_end_with_an_annotated_bookmark() {
    let cluster = in_process().await;
    let cms: Api<ConfigMap> = Api::namespaced(cluster.api.client("test"), "default");
    for name in ["a", "b"] {
        cms.create(&PostParams::default(), &config_map(name, "1"))
            .await
            .unwrap();
    }
    // kube-runtime's streaming list: sendInitialEvents=true, then the watch goes on.
    let config = watcher::Config::default().streaming_lists();
    let mut events = watcher(cms.clone(), config).boxed();
    let mut initial = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), events.try_next())
            .await
            .unwrap()
            .unwrap()
        {
            Some(watcher::Event::Init) => {}
            Some(watcher::Event::InitApply(cm)) => initial.push(cm.metadata.name.unwrap()),
            Some(watcher::Event::InitDone) => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(initial, ["a", "b"]);
    cms.create(&PostParams::default(), &config_map("c", "1"))
        .await
        .unwrap();
    match tokio::time::timeout(Duration::from_secs(5), events.try_next())
        .await
        .unwrap()
        .unwrap()
    {
        Some(watcher::Event::Apply(cm)) => assert_eq!(cm.metadata.name.as_deref(), Some("c")),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn malformed_bodies_get_a_400_not_a_crash() {
    let cluster = in_process().await;
    let client = cluster.api.client("test");
    for body in [
        "[1, 2]",
        "not json",
        "42",
        r#"{"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "x"}}"#,
    ] {
        let request = http::Request::post("/api/v1/namespaces/default/configmaps")
            .header("Content-Type", "application/json")
            .body(body.as_bytes().to_vec())
            .unwrap();
        match client.request_text(request).await {
            Err(kube::Error::Api(status)) => assert_eq!(status.code, 400, "{body}: {status:?}"),
            other => panic!("{body}: expected a 400, got {other:?}"),
        }
    }
    // The server is still there.
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    cms.create(&PostParams::default(), &config_map("after", "1"))
        .await
        .unwrap();
}

#[tokio::test]
async fn events_k8s_io_and_core_events_are_the_same_objects() {
    use k8s_openapi::api::core::v1::Event as CoreEvent;
    use k8s_openapi::api::events::v1::Event as NewEvent;
    let cluster = in_process().await;
    let client = cluster.api.client("test");
    let new_events: Api<NewEvent> = Api::namespaced(client.clone(), "default");
    let core_events: Api<CoreEvent> = Api::namespaced(client, "default");
    let event: NewEvent = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "scheduled"},
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "reportingController": "default-scheduler",
        "reportingInstance": "default-scheduler-orrery",
        "action": "Binding",
        "reason": "Scheduled",
        "type": "Normal",
        "note": "Successfully assigned default/web to node-1",
        "regarding": {"kind": "Pod", "namespace": "default", "name": "web"},
    }))
    .unwrap();
    new_events
        .create(&PostParams::default(), &event)
        .await
        .unwrap();
    let core = core_events.get("scheduled").await.unwrap();
    assert_eq!(
        core.message.as_deref(),
        Some("Successfully assigned default/web to node-1")
    );
    assert_eq!(core.involved_object.name.as_deref(), Some("web"));
    assert_eq!(
        core.reporting_component.as_deref(),
        Some("default-scheduler")
    );
    let listed = new_events.list(&ListParams::default()).await.unwrap();
    assert_eq!(
        listed.items[0].note.as_deref(),
        Some("Successfully assigned default/web to node-1")
    );
    let selected = core_events
        .list(&ListParams::default().fields("involvedObject.name=web"))
        .await
        .unwrap();
    assert_eq!(selected.items.len(), 1);
}

/// A pod bound to a node, with `finalizers`.
fn bound_pod(name: &str, finalizers: &[&str]) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "finalizers": finalizers},
        "spec": {"nodeName": "node-1", "containers": [{"name": "app", "image": "nginx"}]},
    }))
    .unwrap()
}

#[tokio::test]
async fn a_pod_in_its_grace_period_stays_until_its_kubelet_deletes_it() {
    let cluster = in_process().await;
    let pods: Api<Pod> = Api::namespaced(cluster.api.client("test"), "default");
    let ended = Patch::Merge(serde_json::json!({"status": {"phase": "Failed"}}));
    let grace = |pod: &Pod| pod.metadata.deletion_grace_period_seconds;
    for (name, finalizers) in [("plain", &[][..]), ("held", &["example.com/hold"][..])] {
        pods.create(&PostParams::default(), &bound_pod(name, finalizers))
            .await
            .unwrap();
        // A graceful delete marks it; the kubelet's status writes in the grace period keep it.
        pods.delete(name, &DeleteParams::default()).await.unwrap();
        let marked = pods.get(name).await.unwrap();
        assert_eq!(grace(&marked), Some(30));
        let since = marked.metadata.deletion_timestamp.clone().unwrap();
        // Deleting it again with the same grace changes nothing.
        pods.delete(name, &DeleteParams::default()).await.unwrap();
        let again = pods.get(name).await.unwrap();
        assert_eq!(
            (grace(&again), again.metadata.deletion_timestamp),
            (Some(30), Some(since))
        );
        pods.patch_status(name, &PatchParams::default(), &ended)
            .await
            .unwrap();
        assert_eq!(
            pods.get(name)
                .await
                .unwrap()
                .status
                .unwrap()
                .phase
                .as_deref(),
            Some("Failed")
        );
    }
    // The kubelet's final delete (grace 0): gone, unless a finalizer holds it, which then
    // keeps it only until the finalizer goes.
    pods.delete("plain", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    assert!(pods.get_opt("plain").await.unwrap().is_none());
    pods.delete("held", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    assert_eq!(grace(&pods.get("held").await.unwrap()), Some(0));
    pods.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(pods.get_opt("held").await.unwrap().is_none());
}
