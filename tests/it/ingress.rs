//! Ingress: the API (served to the real kubectl by `orrery up`, with the DefaultIngressClass
//! admission plugin and kubectl's columns) and the built-in ingress controller's data path
//! (in-process: an API server, the controller, and local HTTP servers standing in for pods).

use crate::common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{Cluster, rows};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::{Api, PostParams};
use serde_json::json;

const DEFAULT_CLASS: &str = "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: test-default\n  annotations: {ingressclass.kubernetes.io/is-default-class: \"true\"}\nspec: {controller: example.com/ingress}\n";

#[test]
fn kubectl_creates_lists_and_describes_ingresses() {
    let c = Cluster::start();
    let resources = rows(&c.ok(&["api-resources", "--api-group=networking.k8s.io"]));
    assert!(
        resources.iter().any(|r| r
            == &[
                "ingresses",
                "ing",
                "networking.k8s.io/v1",
                "true",
                "Ingress"
            ]),
        "{resources:?}"
    );
    assert!(
        resources.iter().any(|r| r
            == &[
                "ingressclasses",
                "networking.k8s.io/v1",
                "false",
                "IngressClass"
            ]),
        "{resources:?}"
    );
    // Whether or not `orrery up` runs the ingress controller (whose `orrery` class would be
    // the default), exactly one class is the default: ours.
    let orrery = "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: orrery}\nspec: {controller: orrery.dev/ingress-controller}\n";
    let _ = c.kubectl(&["create", "-f", "-"], Some(orrery), &[]);
    c.ok(&[
        "annotate",
        "ingressclass",
        "orrery",
        "ingressclass.kubernetes.io/is-default-class=false",
        "--overwrite",
    ]);
    c.ok_with(&["apply", "-f", "-"], Some(DEFAULT_CLASS));
    let classes = rows(&c.ok(&["get", "ingressclass"]));
    assert_eq!(classes[0], ["NAME", "CONTROLLER", "PARAMETERS", "AGE"]);
    let ours = classes
        .iter()
        .find(|r| r[0] == "test-default")
        .expect("listed");
    assert_eq!(ours[1..3], ["example.com/ingress", "<none>"]);

    // kubectl sends this one as protobuf.
    c.ok(&["create", "ingress", "web", "--rule=foo.com/bar*=svc:80"]);
    c.ok(&[
        "create",
        "ingress",
        "secure",
        "--class=test-default",
        "--rule=secure.com/=svc:http,tls=cert",
    ]);
    let listed = rows(&c.ok(&["get", "ing"]));
    assert_eq!(
        listed[0],
        ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"]
    );
    let web = listed.iter().find(|r| r[0] == "web").expect("web listed");
    // The default class was filled in.
    assert_eq!(web[1], "test-default");
    assert_eq!(web[2], "foo.com");
    assert!(web.contains(&"80".to_owned()), "{web:?}");
    let secure = listed.iter().find(|r| r[0] == "secure").expect("listed");
    assert!(secure.contains(&"80, 443".to_owned()), "{secure:?}");
    let path = c.ok(&[
        "get",
        "ing",
        "web",
        "-o",
        "jsonpath={.spec.rules[0].http.paths[0].path} {.spec.rules[0].http.paths[0].pathType} {.spec.rules[0].http.paths[0].backend.service.port.number} {.metadata.generation}",
    ]);
    assert_eq!(path, "/bar Prefix 80 1");
    let described = c.ok(&["describe", "ing", "web"]);
    assert!(described.contains("foo.com"), "{described}");
    assert!(described.contains("/bar"), "{described}");
    assert!(described.contains("svc:80"), "{described}");
    // Stored as Go writes it: the embedded rule value's `http` in place, no empty port name.
    let stored = c.ok(&["get", "ing", "web", "-o", "json"]);
    assert!(!stored.contains("ingressRuleValue"), "{stored}");
    assert!(!stored.contains("\"name\": \"\""), "{stored}");

    // Two default classes: the DefaultIngressClass plugin refuses, as upstream's.
    let second = DEFAULT_CLASS.replace("test-default", "test-second");
    c.ok_with(&["apply", "-f", "-"], Some(&second));
    let refused = c.fails(
        &["create", "ingress", "late", "--rule=late.com/=svc:80"],
        None,
    );
    assert!(
        refused.contains("ingresses.networking.k8s.io \"late\" is forbidden: Internal error occurred: 2 default IngressClasses were found, only 1 allowed"),
        "{refused}"
    );
    c.ok(&["delete", "ingressclass", "test-second"]);

    // Validation in upstream's words.
    let bad = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: bad}\nspec:\n  rules:\n  - http:\n      paths:\n      - {path: foo, pathType: Prefix, backend: {service: {name: svc, port: {number: 80}}}}\n      - {path: /x, backend: {service: {name: svc, port: {number: 80}}}}\n";
    let error = c.fails(&["apply", "-f", "-"], Some(bad));
    assert!(
        error.contains(
            "spec.rules[0].http.paths[0].path: Invalid value: \"foo\": must be an absolute path"
        ),
        "{error}"
    );
    assert!(
        error.contains(
            "spec.rules[0].http.paths[1].pathType: Required value: pathType must be specified"
        ),
        "{error}"
    );
    // Ingresses are not in `all`.
    let all = c.ok(&["get", "all"]);
    assert!(!all.contains("ingress"), "{all}");
}

/// A local HTTP server standing in for a pod: answers `<name> <path> <forwarding headers>`.
async fn backend(name: &'static str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |request: http::Request<hyper::body::Incoming>| async move {
                        let h = |n: &str| {
                            request
                                .headers()
                                .get(n)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("-")
                                .to_owned()
                        };
                        let text = format!(
                            "{name} {} host={} xff={} xri={} xfh={} xfp={}",
                            request.uri(),
                            h("host"),
                            h("x-forwarded-for"),
                            h("x-real-ip"),
                            h("x-forwarded-host"),
                            h("x-forwarded-proto"),
                        );
                        let body = request.into_body().collect().await?.to_bytes();
                        let text = if body.is_empty() {
                            text
                        } else {
                            format!("{text} body={}", String::from_utf8_lossy(&body))
                        };
                        Ok::<_, hyper::Error>(http::Response::new(Full::new(Bytes::from(text))))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    address
}

/// One request over a new connection (`io`): status and body.
async fn send<I>(io: I, method: &str, host: &str, path: &str, body: &str) -> (u16, String)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", host)
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn get(address: SocketAddr, host: &str, path: &str) -> (u16, String) {
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    send(stream, "GET", host, path, "").await
}

/// Accepts any server certificate (the test looks at which one it was given).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A GET over TLS with `sni`: status, body and the common name of the certificate shown.
async fn get_tls(address: SocketAddr, sni: &str, path: &str) -> (u16, String, String) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(sni.to_owned()).unwrap();
    let tls = connector.connect(name, stream).await.unwrap();
    let der = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_owned();
    let (status, body) = send(tls, "GET", sni, path, "").await;
    (status, body, cn)
}

/// A GET over TLS negotiated to h2 by ALPN: the status.
async fn h2(address: SocketAddr, sni: &str, path: &str) -> u16 {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(sni.to_owned()).unwrap();
    let tls = connector.connect(name, stream).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let request = http::Request::builder()
        .uri(format!("https://{sni}{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(
        String::from_utf8_lossy(&body).contains(&format!(" {path} host={sni}")),
        "{body:?}"
    );
    status
}

/// Polls `check` every 20 ms until it returns `Some`, for at most 10 s.
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    for _ in 0..500 {
        if let Some(t) = check().await {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: not within 10 s");
}

fn slice(service: &str, port_name: &str, endpoints: &[SocketAddr]) -> EndpointSlice {
    let port = endpoints.first().map_or(1, SocketAddr::port);
    serde_json::from_value(json!({
        "metadata": {"name": format!("{service}-x"), "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
        "endpoints": endpoints.iter().map(|e| json!({"addresses": [e.ip().to_string()], "conditions": {"ready": true}})).collect::<Vec<_>>(),
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_routes_by_host_and_path_and_terminates_tls() {
    // An in-process API server and the controller on ephemeral ports.
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn orrery::store::Store> = Arc::new(
        orrery::store::embedded::EmbeddedStore::open(&dir.path().join("store.redb")).unwrap(),
    );
    let flow = orrery::flow::Flow::new();
    let api = orrery::apiserver::ApiServer::new(store, flow.clone());
    api.bootstrap().await.unwrap();
    let client = api.client("test");
    let config = orrery::ingress::IngressConfig {
        http: "127.0.0.1:0".parse().unwrap(),
        https: Some("127.0.0.1:0".parse().unwrap()),
        status_address: None,
    };
    let controller = orrery::ingress::IngressController::bind(
        api.client(orrery::ingress::COMPONENT),
        flow.clone(),
        &config,
    )
    .await
    .unwrap();
    let http = controller.http_address();
    let https = controller.https_address().unwrap();
    let (_, mut hops) = flow.subscribe(0);
    let running = tokio::spawn(controller.run());

    // Two "pods" behind `web` (ports in the slices; one address, 127.0.0.1, so one slice per
    // pod), none behind `idle`, a refusing one behind `broken`.
    let (one, two) = (backend("one").await, backend("two").await);
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    for name in ["web", "idle", "broken"] {
        let service: Service = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        }))
        .unwrap();
        services
            .create(&PostParams::default(), &service)
            .await
            .unwrap();
    }
    let mut web_two = slice("web", "http", &[two]);
    web_two.metadata.name = Some("web-y".into());
    for s in [
        slice("web", "http", &[one]),
        web_two,
        slice("idle", "http", &[]),
        slice("broken", "http", &[refused]),
    ] {
        slices.create(&PostParams::default(), &s).await.unwrap();
    }
    // The controller made its class, the default: an Ingress without a class is given it.
    let classes: Api<IngressClass> = Api::all(client.clone());
    eventually("the orrery IngressClass", || {
        let classes = classes.clone();
        async move { classes.get_opt("orrery").await.unwrap() }
    })
    .await;
    let (cert, key) = {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["secure.com".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "secure.com");
        (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
    };
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "secure-tls"},
        "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": cert, "tls.key": key},
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let backend = |svc: &str| json!({"service": {"name": svc, "port": {"number": 80}}});
    let ingress: Ingress = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "tls": [{"hosts": ["secure.com"], "secretName": "secure-tls"}],
            "rules": [
                {"host": "foo.com", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": backend("web")},
                    {"path": "/idle", "pathType": "Prefix", "backend": backend("idle")},
                    {"path": "/gone", "pathType": "Exact", "backend": backend("missing")},
                    {"path": "/broken", "pathType": "Prefix", "backend": backend("broken")},
                ]}},
                {"host": "*.wild.com", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"name": "http"}}}},
                ]}},
                {"host": "secure.com", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": backend("web")},
                ]}},
            ],
        },
    }))
    .unwrap();
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), "default");
    let created = ingresses
        .create(&PostParams::default(), &ingress)
        .await
        .unwrap();
    assert_eq!(
        created.spec.unwrap().ingress_class_name.as_deref(),
        Some("orrery"),
        "DefaultIngressClass"
    );

    // Routed, round robin over both pods (once the controller has both endpoints: the route
    // can answer while it knows one), with the forwarding headers.
    let (first, second) = eventually("foo.com routed to both pods in turn", || async move {
        let (status, first) = get(http, "foo.com", "/a/b?x=1").await;
        if status != 200 {
            return None;
        }
        let (_, second) = get(http, "foo.com:8080", "/a/b?x=1").await;
        let mut names = [first.split(' ').next()?, second.split(' ').next()?];
        names.sort();
        (names == ["one", "two"]).then(|| (first.clone(), second.clone()))
    })
    .await;
    assert!(
        first.contains(" /a/b?x=1 host=foo.com xff=127.0.0.1 xri=127.0.0.1 xfh=foo.com xfp=http"),
        "{first}"
    );
    // The Host header as the client sent it, port and all.
    assert!(
        second.contains(" host=foo.com:8080 xff=127.0.0.1 xri=127.0.0.1 xfh=foo.com:8080 xfp=http"),
        "{second}"
    );
    // A body streams through.
    let stream = tokio::net::TcpStream::connect(http).await.unwrap();
    let (status, echoed) = send(stream, "POST", "foo.com", "/post", "hello").await;
    assert_eq!(status, 200);
    assert!(echoed.ends_with("body=hello"), "{echoed}");
    // A wildcard host, by port name.
    let (status, body) = get(http, "a.wild.com", "/").await;
    assert_eq!(status, 200, "{body}");
    let cases = [
        ("wild.com", "/", 404),
        ("b.a.wild.com", "/", 404),
        ("other.com", "/", 404),
        ("foo.com", "/idle/x", 503),
        ("foo.com", "/gone", 503),
        ("foo.com", "/broken", 502),
    ];
    for (host, path, want) in cases {
        let (status, body) = get(http, host, path).await;
        assert_eq!(status, want, "{host}{path}: {body}");
        if want == 404 {
            assert_eq!(body, "default backend - 404");
        }
    }
    // TLS by SNI: the Secret's certificate for its host, the fake one for others. Plain HTTP to
    // the TLS host is served too.
    let (status, body, cn) = eventually("the Secret's certificate", || async move {
        let answer = get_tls(https, "secure.com", "/s").await;
        (answer.2 == "secure.com").then_some(answer)
    })
    .await;
    assert_eq!(status, 200);
    assert!(
        body.contains(" /s host=secure.com") && body.contains("xfp=https"),
        "{body}"
    );
    assert_eq!(h2(https, "secure.com", "/h2").await, 200);
    let (status, _, cn_other) = get_tls(https, "foo.com", "/").await;
    assert_eq!(status, 200);
    assert_eq!(cn_other, "Kubernetes Ingress Controller Fake Certificate");
    assert_ne!(cn, cn_other);
    assert_eq!(get(http, "secure.com", "/").await.0, 200);

    // The status carries the listen address, without ports.
    let status = eventually("the Ingress status", || {
        let ingresses = ingresses.clone();
        async move {
            let i = ingresses.get("web").await.unwrap();
            let lb = i.status?.load_balancer?.ingress?;
            Some(serde_json::to_value(lb).unwrap())
        }
    })
    .await;
    assert_eq!(status, json!([{"ip": "127.0.0.1"}]));

    // The hops: a SYNC with the routes, each request with its decision.
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    while let Ok(hop) = hops.try_recv() {
        if hop.from == "ingress-controller" || hop.to == "ingress-controller" {
            seen.entry(hop.verb.clone()).or_default().push(hop.detail);
        }
    }
    let syncs = &seen["SYNC"];
    assert!(
        syncs.iter().any(|d| d == "1 ingresses, 3 hosts, 6 paths"),
        "{syncs:?}"
    );
    let requests = &seen["GET"];
    assert!(
        requests.iter().any(
            |d| d.starts_with("GET foo.com/a/b → default/web:80 → 127.0.0.1:")
                && d.ends_with(" 200")
        ),
        "{requests:?}"
    );
    assert!(
        requests.iter().any(|d| d == "GET other.com/ → 404"),
        "{requests:?}"
    );
    assert!(seen.contains_key("STATUS"), "{seen:?}");
    running.abort();
}
