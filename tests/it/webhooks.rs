//! Admission webhooks as users run them. In process (fast, no containers): an HTTPS webhook
//! (`orrery::apps::webhook`, the program the built-in image runs) on 127.0.0.1 with a test CA
//! made with `rcgen`, registered by `url` and by `service` (a Service whose EndpointSlice points
//! at it); a refusal in the webhook's words and code, its warning passed on, a JSONPatch
//! label, validation after mutation, `failurePolicy` against a closed port, a hanging server
//! and a stranger's certificate, the namespace and object selectors, the configurations'
//! validation, defaults and table, and the flow's hops. On real containers: the webhook served
//! by a pod from a Secret's certificate, reached through its Service, refusing and labelling
//! what kubectl creates.

use std::sync::Arc;

use base64::Engine;
use http_body_util::BodyExt;
use orrery::apiserver::ApiServer;
use orrery::apps::webhook::Policy;
use orrery::flow::Flow;
use serde_json::{Value, json};

use crate::common::Cluster;

/// A test CA and a serving certificate it signed for `hook.hooks.svc` and 127.0.0.1:
/// `(ca, cert, key)` as PEM.
fn certificates() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "webhook test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["hook.hooks.svc".to_owned()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let cert = params.signed_by(&key, &issuer).unwrap();
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

struct InProcess {
    api: Arc<ApiServer>,
    flow: Flow,
    client: kube::Client,
    _dir: tempfile::TempDir,
}

async fn in_process() -> InProcess {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn orrery::store::Store> = Arc::new(
        orrery::store::embedded::EmbeddedStore::open(&dir.path().join("store.redb")).unwrap(),
    );
    let flow = Flow::new();
    let api = ApiServer::new(store, flow.clone());
    api.bootstrap().await.unwrap();
    let client = api.client("test");
    InProcess {
        api,
        flow,
        client,
        _dir: dir,
    }
}

/// Serves `policy` over TLS with `cert` and `key` on a free loopback port: its address.
async fn webhook_server(policy: Policy, cert: &str, key: &str) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let tls = orrery::apps::webhook::tls(cert.as_bytes(), key.as_bytes()).unwrap();
    tokio::spawn(orrery::apps::webhook::serve(
        listener,
        tls,
        Arc::new(policy),
    ));
    address
}

/// One request through the in-process client: the status code, the body and the warnings.
async fn send(
    client: &kube::Client,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value, Vec<String>) {
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(kube::client::Body::from(
            body.map(|b| serde_json::to_vec(&b).unwrap())
                .unwrap_or_default(),
        ))
        .unwrap();
    let response = client.send(request).await.unwrap();
    let code = response.status().as_u16();
    let warnings = response
        .headers()
        .get_all("warning")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (code, body, warnings)
}

fn config_map(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}, "data": {"k": "v"}})
}

/// A webhook of a configuration: configmaps on CREATE and UPDATE, at `client`.
fn hook(name: &str, client: Value, extra: Value) -> Value {
    let mut hook = json!({
        "name": name,
        "clientConfig": client,
        "rules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}],
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
    });
    for (k, v) in extra.as_object().unwrap() {
        hook[k] = v.clone();
    }
    hook
}

fn url_client(address: std::net::SocketAddr, path: &str, ca: &str) -> Value {
    json!({"url": format!("https://{address}{path}"), "caBundle": base64::engine::general_purpose::STANDARD.encode(ca)})
}

async fn register(client: &kube::Client, kind: &str, name: &str, hooks: Vec<Value>) {
    let plural = format!("{}s", kind.to_lowercase());
    let (code, body, _) = send(
        client,
        "POST",
        &format!("/apis/admissionregistration.k8s.io/v1/{plural}"),
        Some(json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind, "metadata": {"name": name}, "webhooks": hooks})),
    )
    .await;
    assert_eq!(code, 201, "{body}");
}

async fn create_cm(
    client: &kube::Client,
    namespace: &str,
    object: Value,
) -> (u16, Value, Vec<String>) {
    send(
        client,
        "POST",
        &format!("/api/v1/namespaces/{namespace}/configmaps"),
        Some(object),
    )
    .await
}

/// The hops between the API server and `webhook`, as `(from, to, verb)`, from the flow's ring.
fn hops(flow: &Flow, webhook: &str) -> Vec<(String, String, String, String)> {
    flow.subscribe(0)
        .0
        .into_iter()
        .filter(|e| e.from == webhook || e.to == webhook)
        .map(|e| (e.from, e.to, e.verb, e.namespace))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validating_webhook_refuses_in_its_words_and_its_warning_reaches_the_client() {
    let c = in_process().await;
    let (ca, cert, key) = certificates();
    let policy = Policy {
        warning: Some("checked by deny.orrery.test".into()),
        ..Policy::parse(Some("team=red"), None, "red configmaps are refused").unwrap()
    };
    let address = webhook_server(policy, &cert, &key).await;
    register(
        &c.client,
        "ValidatingWebhookConfiguration",
        "deny",
        vec![hook(
            "deny.orrery.test",
            url_client(address, "/validate", &ca),
            json!({}),
        )],
    )
    .await;

    let (code, status, _) = create_cm(
        &c.client,
        "default",
        config_map("red", json!({"team": "red"})),
    )
    .await;
    assert_eq!(code, 403, "{status}");
    assert_eq!(
        status,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": "admission webhook \"deny.orrery.test\" denied the request: red configmaps are refused",
               "reason": "Forbidden", "code": 403})
    );
    let (code, created, warnings) = create_cm(
        &c.client,
        "default",
        config_map("blue", json!({"team": "blue"})),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(warnings, ["299 - \"checked by deny.orrery.test\""]);
    // An update is asked about too.
    let mut changed = created.clone();
    changed["metadata"]["labels"]["team"] = json!("red");
    let (code, status, _) = send(
        &c.client,
        "PUT",
        "/api/v1/namespaces/default/configmaps/blue",
        Some(changed),
    )
    .await;
    assert_eq!(code, 403, "{status}");
    // A dry run calls it as well (its side effects are None).
    let (code, _, _) = send(
        &c.client,
        "POST",
        "/api/v1/namespaces/default/configmaps?dryRun=All",
        Some(config_map("red", json!({"team": "red"}))),
    )
    .await;
    assert_eq!(code, 403);
    // Other kinds are not its business.
    let (code, body, _) = send(
        &c.client,
        "POST",
        "/api/v1/namespaces/default/secrets",
        Some(json!({"metadata": {"name": "red", "labels": {"team": "red"}}})),
    )
    .await;
    assert_eq!(code, 201, "{body}");

    let seen = hops(&c.flow, "deny.orrery.test");
    let verbs: Vec<&str> = seen.iter().map(|(_, _, v, _)| v.as_str()).collect();
    assert_eq!(
        verbs,
        [
            "ADMIT", "DENIED", "ADMIT", "ALLOWED", "ADMIT", "DENIED", "ADMIT", "DENIED"
        ],
        "{seen:?}"
    );
    assert_eq!(
        (seen[0].0.as_str(), seen[0].1.as_str()),
        ("apiserver", "deny.orrery.test")
    );
    assert_eq!(
        (seen[1].0.as_str(), seen[1].1.as_str()),
        ("deny.orrery.test", "apiserver")
    );

    // kubectl's columns, and the defaults as stored.
    let request = http::Request::builder()
        .uri("/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/deny")
        .header("accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
        .body(kube::client::Body::empty())
        .unwrap();
    let table: Value = serde_json::from_slice(
        &c.client
            .send(request)
            .await
            .unwrap()
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes(),
    )
    .unwrap();
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["Name", "Webhooks", "Age"]);
    assert_eq!(table["rows"][0]["cells"][1], 1);
    let (_, stored, _) = send(
        &c.client,
        "GET",
        "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/deny",
        None,
    )
    .await;
    let stored = &stored["webhooks"][0];
    assert_eq!(stored["failurePolicy"], "Fail");
    assert_eq!(stored["matchPolicy"], "Equivalent");
    assert_eq!(stored["namespaceSelector"], json!({}));
    assert_eq!(stored["timeoutSeconds"], 10);
    assert_eq!(stored["rules"][0]["scope"], "*");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mutating_webhook_behind_a_service_labels_what_the_validating_ones_then_judge() {
    let c = in_process().await;
    let (ca, cert, key) = certificates();
    let address = webhook_server(
        Policy::parse(None, Some("checked.orrery.test/by=webhook"), "").unwrap(),
        &cert,
        &key,
    )
    .await;
    // The Service `hooks/hook`, whose one endpoint is the server: reached at the endpoint,
    // its certificate checked for `hook.hooks.svc`.
    for (path, object) in [
        ("/api/v1/namespaces", json!({"metadata": {"name": "hooks"}})),
        (
            "/api/v1/namespaces/hooks/services",
            json!({"metadata": {"name": "hook"}, "spec": {"ports": [{"port": 443, "targetPort": address.port()}]}}),
        ),
        (
            "/apis/discovery.k8s.io/v1/namespaces/hooks/endpointslices",
            json!({"metadata": {"name": "hook-1", "labels": {"kubernetes.io/service-name": "hook"}},
                   "addressType": "IPv4", "ports": [{"port": address.port(), "protocol": "TCP", "name": ""}],
                   "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}]}),
        ),
    ] {
        let (code, body, _) = send(&c.client, "POST", path, Some(object)).await;
        assert_eq!(code, 201, "{path}: {body}");
    }
    let service = json!({"service": {"namespace": "hooks", "name": "hook", "path": "/mutate"},
                         "caBundle": base64::engine::general_purpose::STANDARD.encode(&ca)});
    register(
        &c.client,
        "MutatingWebhookConfiguration",
        "label",
        vec![hook("label.orrery.test", service, json!({}))],
    )
    .await;
    let (code, created, _) =
        create_cm(&c.client, "default", config_map("plain", Value::Null)).await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(
        created["metadata"]["labels"],
        json!({"checked.orrery.test/by": "webhook"})
    );
    assert!(
        created["metadata"]["uid"].is_string(),
        "the server's fields stay"
    );
    let (code, created, _) = create_cm(
        &c.client,
        "default",
        config_map("labelled", json!({"a": "b"})),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(
        created["metadata"]["labels"],
        json!({"a": "b", "checked.orrery.test/by": "webhook"})
    );
    let verbs: Vec<String> = hops(&c.flow, "label.orrery.test")
        .into_iter()
        .map(|(_, _, v, _)| v)
        .collect();
    assert_eq!(verbs, ["ADMIT", "PATCHED", "ADMIT", "PATCHED"]);

    // A validating webhook sees the object as mutated: it refuses the label the client never set.
    let deny = webhook_server(
        Policy::parse(
            Some("checked.orrery.test/by=webhook"),
            None,
            "no checked objects",
        )
        .unwrap(),
        &cert,
        &key,
    )
    .await;
    register(
        &c.client,
        "ValidatingWebhookConfiguration",
        "after",
        vec![hook(
            "after.orrery.test",
            url_client(deny, "/", &ca),
            json!({}),
        )],
    )
    .await;
    let (code, status, _) = create_cm(&c.client, "default", config_map("third", Value::Null)).await;
    assert_eq!(code, 403, "{status}");
    assert_eq!(
        status["message"],
        "admission webhook \"after.orrery.test\" denied the request: no checked objects"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_policy_decides_what_an_unreachable_slow_or_strange_webhook_does() {
    let c = in_process().await;
    let (ca, cert, key) = certificates();
    // A port nothing listens on.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    register(
        &c.client,
        "ValidatingWebhookConfiguration",
        "down-ignored",
        vec![hook(
            "down.orrery.test",
            url_client(closed, "/", &ca),
            json!({"failurePolicy": "Ignore"}),
        )],
    )
    .await;
    let (code, body, _) = create_cm(&c.client, "default", config_map("one", Value::Null)).await;
    assert_eq!(code, 201, "Ignore lets it through: {body}");
    let verbs: Vec<String> = hops(&c.flow, "down.orrery.test")
        .into_iter()
        .map(|h| h.2)
        .collect();
    assert_eq!(verbs, ["ADMIT", "IGNORED"]);

    register(
        &c.client,
        "ValidatingWebhookConfiguration",
        "down-failing",
        vec![hook(
            "fail.orrery.test",
            url_client(closed, "/", &ca),
            json!({}),
        )],
    )
    .await;
    let (code, status, _) = create_cm(&c.client, "default", config_map("two", Value::Null)).await;
    assert_eq!(code, 500, "{status}");
    let reason = format!(
        "failed calling webhook \"fail.orrery.test\": failed to call webhook: Post \"https://{closed}/?timeout=10s\": dial tcp {closed}: connect: connection refused"
    );
    assert_eq!(
        status,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": format!("Internal error occurred: {reason}"), "reason": "InternalError",
               "details": {"causes": [{"message": reason}]}, "code": 500})
    );
    let (code, _, _) = send(
        &c.client,
        "DELETE",
        "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/down-failing",
        None,
    )
    .await;
    assert_eq!(code, 200);

    // A server that takes the connection and never answers: cut at timeoutSeconds.
    let hanging = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let slow = hanging.local_addr().unwrap();
    register(
        &c.client,
        "ValidatingWebhookConfiguration",
        "slow",
        vec![hook(
            "slow.orrery.test",
            url_client(slow, "/hang", &ca),
            json!({"timeoutSeconds": 1}),
        )],
    )
    .await;
    let (code, status, _) = create_cm(&c.client, "default", config_map("three", Value::Null)).await;
    assert_eq!(code, 500, "{status}");
    assert_eq!(
        status["message"],
        format!(
            "Internal error occurred: failed calling webhook \"slow.orrery.test\": failed to call webhook: Post \"https://{slow}/hang?timeout=1s\": context deadline exceeded"
        )
    );
    drop(hanging);
    let (code, _, _) = send(
        &c.client,
        "DELETE",
        "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/slow",
        None,
    )
    .await;
    assert_eq!(code, 200);

    // A certificate the caBundle did not sign.
    let (other_ca, _, _) = certificates();
    let address = webhook_server(Policy::default(), &cert, &key).await;
    register(
        &c.client,
        "ValidatingWebhookConfiguration",
        "stranger",
        vec![hook(
            "stranger.orrery.test",
            url_client(address, "/", &other_ca),
            json!({}),
        )],
    )
    .await;
    let (code, status, _) = create_cm(&c.client, "default", config_map("four", Value::Null)).await;
    assert_eq!(code, 500, "{status}");
    assert!(
        status["message"].as_str().unwrap().contains(&format!(
            "Post \"https://{address}/?timeout=10s\": tls: failed to verify certificate: x509: certificate signed by unknown authority"
        )),
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_and_object_selectors_decide_who_is_asked() {
    let c = in_process().await;
    let (ca, cert, key) = certificates();
    let address = webhook_server(
        Policy::parse(Some("team=red"), None, "red is refused here").unwrap(),
        &cert,
        &key,
    )
    .await;
    for (name, labels) in [("quiet", json!({})), ("watched", json!({"webhooks": "on"}))] {
        let (code, body, _) = send(
            &c.client,
            "POST",
            "/api/v1/namespaces",
            Some(json!({"metadata": {"name": name, "labels": labels}})),
        )
        .await;
        assert_eq!(code, 201, "{body}");
    }
    register(
        &c.client,
        "ValidatingWebhookConfiguration",
        "selective",
        vec![hook(
            "selective.orrery.test",
            url_client(address, "/", &ca),
            json!({
                "namespaceSelector": {"matchLabels": {"webhooks": "on"}},
                "objectSelector": {"matchExpressions": [{"key": "exempt", "operator": "DoesNotExist"}]},
            }),
        )],
    )
    .await;
    let red = || config_map("red", json!({"team": "red"}));
    let (code, body, _) = create_cm(&c.client, "quiet", red()).await;
    assert_eq!(
        code, 201,
        "a namespace the selector does not pick is not asked: {body}"
    );
    let (code, _, _) = create_cm(&c.client, "watched", red()).await;
    assert_eq!(code, 403);
    let (code, body, _) = create_cm(
        &c.client,
        "watched",
        config_map("exempt", json!({"team": "red", "exempt": "yes"})),
    )
    .await;
    assert_eq!(code, 201, "the object selector leaves it out: {body}");
    let asked: Vec<String> = hops(&c.flow, "selective.orrery.test")
        .into_iter()
        .filter(|h| h.2 == "ADMIT")
        .map(|h| h.3)
        .collect();
    assert_eq!(asked, ["watched"]);
    let (code, status, _) = create_cm(&c.client, "nowhere", red()).await;
    assert_eq!(code, 404, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configurations_are_validated_in_upstreams_words() {
    let c = in_process().await;
    let (code, status, _) = send(
        &c.client,
        "POST",
        "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
        Some(json!({"metadata": {"name": "bad"}, "webhooks": [
            {"name": "bad", "clientConfig": {"url": "http://example.com/x"}, "admissionReviewVersions": ["v2"]}
        ]})),
    )
    .await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(
        status["message"],
        "ValidatingWebhookConfiguration.admissionregistration.k8s.io \"bad\" is invalid: [webhooks[0].name: Invalid value: \"bad\": should be a domain with at least three segments separated by dots, webhooks[0].sideEffects: Required value: must specify one of None, NoneOnDryRun, webhooks[0].clientConfig.url: Invalid value: \"http\": 'https' is the only allowed URL scheme; desired format: https://host[/path], webhooks[0].admissionReviewVersions: Invalid value: []string{\"v2\"}: must include at least one of v1, v1beta1]"
    );
    // The configurations themselves are never asked about: a webhook for everything that
    // cannot be reached does not lock its configuration in.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let everything = json!([{"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"]}]);
    register(
        &c.client,
        "ValidatingWebhookConfiguration",
        "wall",
        vec![hook(
            "wall.orrery.test",
            json!({"url": format!("https://{closed}/")}),
            json!({"rules": everything}),
        )],
    )
    .await;
    let (code, _, _) = create_cm(&c.client, "default", config_map("walled", Value::Null)).await;
    assert_eq!(code, 500);
    let (code, body, _) = send(
        &c.client,
        "DELETE",
        "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/wall",
        None,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let (code, body, _) = create_cm(&c.client, "default", config_map("free", Value::Null)).await;
    assert_eq!(code, 201, "{body}");
    assert!(
        c.api
            .flow()
            .subscribe(0)
            .0
            .iter()
            .any(|e| e.to == "wall.orrery.test")
    );
}

/// The webhook in a real pod: its certificate from a Secret, reached through its Service by
/// name, refusing and labelling what kubectl creates.
#[test]
fn a_webhook_in_a_pod_refuses_and_labels_what_kubectl_creates() {
    let Some(c) = Cluster::real("webhooks", 1, "10.207.0.0/16") else {
        return;
    };
    let (ca, cert, key) = certificates();
    let dir = tempfile::tempdir().unwrap();
    let (cert_file, key_file) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert_file, &cert).unwrap();
    std::fs::write(&key_file, &key).unwrap();
    c.ok(&["create", "namespace", "hooks"]);
    c.ok(&[
        "-n",
        "hooks",
        "create",
        "secret",
        "tls",
        "hook-tls",
        &format!("--cert={}", cert_file.display()),
        &format!("--key={}", key_file.display()),
    ]);
    c.apply(
        r#"apiVersion: v1
kind: Pod
metadata: {name: hook, namespace: hooks, labels: {app: hook}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: hook
    image: orrery/hello
    command: [/orrery, webhook, --cert, /tls/tls.crt, --key, /tls/tls.key, --port, "8443",
              --deny-label, team=red, --message, red pods are not welcome,
              --add-label, checked.orrery.test/by=webhook]
    volumeMounts:
    - {name: tls, mountPath: /tls, readOnly: true}
  volumes:
  - name: tls
    secret: {secretName: hook-tls}
---
apiVersion: v1
kind: Service
metadata: {name: hook, namespace: hooks}
spec:
  selector: {app: hook}
  ports:
  - port: 443
    targetPort: 8443
"#,
    );
    c.eventually(
        &[
            "-n",
            "hooks",
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=hook",
            "-o",
            "jsonpath={.items[*].endpoints[*].conditions.ready}",
        ],
        120,
        |ready| ready == "true",
    );
    let bundle = base64::engine::general_purpose::STANDARD.encode(&ca);
    let hook_yaml = |kind: &str, name: &str, extra: &str| {
        let path = if kind.starts_with("Mutating") {
            "mutate"
        } else {
            "validate"
        };
        format!(
            r#"apiVersion: admissionregistration.k8s.io/v1
kind: {kind}
metadata: {{name: {name}}}
webhooks:
- name: {name}.orrery.test
  clientConfig:
    service: {{namespace: hooks, name: hook, path: /{path}}}
    caBundle: {bundle}
  rules:
  - {{operations: [CREATE], apiGroups: [""], apiVersions: [v1], resources: [configmaps]}}
  sideEffects: None
  admissionReviewVersions: [v1]
{extra}"#
        )
    };
    c.apply(&hook_yaml(
        "ValidatingWebhookConfiguration",
        "deny",
        "  namespaceSelector:\n    matchExpressions: [{key: webhooks, operator: NotIn, values: [\"off\"]}]\n",
    ));
    let table = c.ok(&["get", "validatingwebhookconfigurations"]);
    assert_eq!(
        crate::common::rows(&table)[0],
        ["NAME", "WEBHOOKS", "AGE"],
        "{table}"
    );
    let red = |namespace: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: red, namespace: {namespace}, labels: {{team: red}}}}\ndata: {{a: b}}\n"
        )
    };
    // The endpoint is ready once the container runs; the server listens a moment later.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let denied = loop {
        let denied = c.fails(&["apply", "-f", "-"], Some(&red("default")));
        if denied.contains("denied the request") || std::time::Instant::now() > deadline {
            break denied;
        }
    };
    assert!(
        denied.contains(
            "admission webhook \"deny.orrery.test\" denied the request: red pods are not welcome"
        ),
        "{denied}"
    );
    // A namespace its selector leaves out is not asked about.
    c.apply(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: calm, labels: {webhooks: \"off\"}}\n",
    );
    c.apply(&red("calm"));

    c.apply(&hook_yaml("MutatingWebhookConfiguration", "label", ""));
    c.ok(&["create", "configmap", "blue", "--from-literal=a=b"]);
    let labels = c.ok(&[
        "get",
        "configmap",
        "blue",
        "-o",
        "jsonpath={.metadata.labels}",
    ]);
    assert_eq!(labels, r#"{"checked.orrery.test/by":"webhook"}"#);

    // Ignore to a URL nothing answers lets writes through; Fail refuses them in upstream's words.
    c.apply(&format!(
        r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {{name: nobody}}
webhooks:
- name: nobody.orrery.test
  clientConfig: {{url: "https://127.0.0.1:1/", caBundle: {bundle}}}
  rules:
  - {{operations: [CREATE], apiGroups: [""], apiVersions: [v1], resources: [secrets]}}
  sideEffects: None
  admissionReviewVersions: [v1]
  failurePolicy: Ignore
"#
    ));
    c.ok(&["create", "secret", "generic", "one", "--from-literal=a=b"]);
    c.ok(&[
        "patch",
        "validatingwebhookconfiguration",
        "nobody",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/webhooks/0/failurePolicy","value":"Fail"}]"#,
    ]);
    let failed = c.fails(
        &["create", "secret", "generic", "two", "--from-literal=a=b"],
        None,
    );
    assert!(
        failed.contains(
            "Internal error occurred: failed calling webhook \"nobody.orrery.test\": failed to call webhook: Post \"https://127.0.0.1:1/?timeout=10s\": dial tcp 127.0.0.1:1: connect: connection refused"
        ),
        "{failed}"
    );
}
