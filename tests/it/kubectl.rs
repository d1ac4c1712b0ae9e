//! The real kubectl against `orrery up`, checked on what it prints, as a user sees it.

use crate::common;

use common::{Cluster, rows};

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: orrery/hello:1
        ports: [{containerPort: 8080}]
"#;

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: p1, labels: {app: web, tier: front}}
spec:
  containers: [{name: c, image: busybox:1.36, command: [sleep, "3600"]}]
"#;

#[test]
fn discovery_and_namespaces() {
    let c = Cluster::start();
    let resources = c.ok(&["api-resources"]);
    for expected in [
        ["deployments", "deploy", "apps/v1", "true", "Deployment"],
        ["pods", "po", "v1", "true", "Pod"],
        ["namespaces", "ns", "v1", "false", "Namespace"],
        ["cronjobs", "cj", "batch/v1", "true", "CronJob"],
    ] {
        assert!(
            rows(&resources).iter().any(|r| r == &expected),
            "{expected:?} missing from:\n{resources}"
        );
    }
    let namespaces = c.ok(&["get", "ns", "-o", "name"]);
    assert_eq!(
        namespaces,
        "namespace/default\nnamespace/kube-node-lease\nnamespace/kube-public\nnamespace/kube-system\n"
    );
    let version = c.ok(&["version"]);
    assert!(version.contains("Server Version: v1.33.0"), "{version}");
}

#[test]
fn create_get_in_every_format() {
    let c = Cluster::start();
    assert_eq!(
        c.ok_with(&["create", "-f", "-"], Some(POD)),
        "pod/p1 created\n"
    );
    let wide = rows(&c.ok(&["get", "pods", "-o", "wide"]));
    assert_eq!(
        wide[0],
        [
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "NODE",
            "NOMINATED NODE",
            "READINESS GATES"
        ]
    );
    assert_eq!(wide[1][..4], ["p1", "0/1", "Pending", "0"]);
    let yaml = c.ok(&["get", "pod", "p1", "-o", "yaml"]);
    for line in [
        "restartPolicy: Always",
        "terminationGracePeriodSeconds: 30",
        "imagePullPolicy: IfNotPresent",
        "phase: Pending",
        "uid: ",
    ] {
        assert!(yaml.contains(line), "{line} missing in:\n{yaml}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&c.ok(&["get", "pods", "-o", "json"])).unwrap();
    assert_eq!(json["items"][0]["metadata"]["name"], "p1");
    assert_eq!(
        c.ok(&["get", "po", "-l", "tier=front", "-o", "name"]),
        "pod/p1\n"
    );
    assert_eq!(
        c.ok(&["get", "po", "-l", "tier in (back)", "-o", "name"]),
        ""
    );
    let all = rows(&c.ok(&[
        "get",
        "pods",
        "-A",
        "--field-selector",
        "status.phase=Pending",
    ]));
    assert_eq!(all[0][..2], ["NAMESPACE", "NAME"]);
    assert_eq!(all[1][..2], ["default", "p1"]);
    let described = c.ok(&["describe", "pod", "p1"]);
    assert!(
        described.contains("Labels:           app=web") && described.contains("Command:"),
        "{described}"
    );
}

#[test]
fn apply_client_side_and_server_side() {
    let c = Cluster::start();
    assert_eq!(
        c.ok_with(&["apply", "-f", "-"], Some(DEPLOYMENT)),
        "deployment.apps/web created\n"
    );
    assert_eq!(
        c.ok_with(&["apply", "-f", "-"], Some(DEPLOYMENT)),
        "deployment.apps/web unchanged\n"
    );
    let scaled = DEPLOYMENT.replace("replicas: 2", "replicas: 3");
    assert_eq!(
        c.ok_with(&["apply", "-f", "-"], Some(&scaled)),
        "deployment.apps/web configured\n"
    );
    let got = c.ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.replicas} {.metadata.generation}",
    ]);
    assert_eq!(got, "3 2");
    let table = rows(&c.ok(&["get", "deploy", "-o", "wide"]));
    assert_eq!(
        table[0],
        [
            "NAME",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ]
    );
    assert_eq!(table[1][5..], ["web", "orrery/hello:1", "app=web"]);

    // Server-side apply: a new object, then a conflict with another manager, then --force.
    let ssa = DEPLOYMENT.replace("name: web\n  labels", "name: api\n  labels");
    assert_eq!(
        c.ok_with(&["apply", "--server-side", "-f", "-"], Some(&ssa)),
        "deployment.apps/api serverside-applied\n"
    );
    c.ok(&["scale", "deploy", "api", "--replicas=5"]);
    let conflict = c.fails(&["apply", "--server-side", "-f", "-"], Some(&ssa));
    assert!(
        conflict.contains(
            "Apply failed with 1 conflict: conflict with \"kubectl\" using apps/v1: .spec.replicas"
        ),
        "{conflict}"
    );
    c.ok_with(
        &["apply", "--server-side", "--force-conflicts", "-f", "-"],
        Some(&ssa),
    );
    assert_eq!(
        c.ok(&["get", "deploy", "api", "-o", "jsonpath={.spec.replicas}"]),
        "2"
    );
}

#[test]
fn patch_label_annotate_scale_edit() {
    let c = Cluster::start();
    c.ok_with(&["apply", "-f", "-"], Some(DEPLOYMENT));
    c.ok(&["patch", "deploy", "web", "-p", r#"{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"orrery/hello:2"}]}}}}"#]);
    c.ok(&[
        "patch",
        "deploy",
        "web",
        "--type",
        "merge",
        "-p",
        r#"{"metadata":{"labels":{"m":"1"}}}"#,
    ]);
    c.ok(&[
        "patch",
        "deploy",
        "web",
        "--type",
        "json",
        "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":4}]"#,
    ]);
    assert_eq!(
        c.ok(&["label", "deploy", "web", "tier=front"]),
        "deployment.apps/web labeled\n"
    );
    assert_eq!(
        c.ok(&["annotate", "deploy", "web", "note=hi"]),
        "deployment.apps/web annotated\n"
    );
    let got = c.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].ports[0].containerPort} {.metadata.labels.m}{.metadata.labels.tier} {.metadata.annotations.note}"]);
    assert_eq!(got, "4 orrery/hello:2 8080 1front hi");
    assert_eq!(
        c.ok(&["scale", "deploy", "web", "--replicas=6"]),
        "deployment.apps/web scaled\n"
    );
    let out = c.kubectl(
        &["edit", "deploy", "web"],
        None,
        &[
            ("EDITOR", "sed -i s/replicas:.*/replicas:\\ 7/"),
            ("KUBE_EDITOR", ""),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        c.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]),
        "7"
    );
    let bad = c.fails(
        &[
            "patch",
            "deploy",
            "web",
            "--type",
            "json",
            "-p",
            r#"[{"op":"test","path":"/spec/replicas","value":1}]"#,
        ],
        None,
    );
    assert!(bad.contains("The request is invalid"), "{bad}");
}

#[test]
fn errors_read_like_kubernetes() {
    let c = Cluster::start();
    assert_eq!(
        c.fails(&["get", "pod", "nope"], None),
        "Error from server (NotFound): pods \"nope\" not found\n"
    );
    c.ok_with(&["create", "-f", "-"], Some(POD));
    let exists = c.fails(&["create", "-f", "-"], Some(POD));
    assert!(exists.contains("Error from server (AlreadyExists): error when creating \"STDIN\": pods \"p1\" already exists"), "{exists}");
    let invalid = c.fails(
        &["create", "-f", "-"],
        Some(
            &POD.replace("name: p1", "name: Bad_Pod")
                .replace("image: busybox:1.36", "image: ''"),
        ),
    );
    assert!(
        invalid.contains("The Pod \"Bad_Pod\" is invalid"),
        "{invalid}"
    );
    assert!(
        invalid.contains("spec.containers[0].image: Required value"),
        "{invalid}"
    );
    let unknown = c.fails(
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\nbogus: 1\n"),
    );
    assert!(
        unknown.contains("strict decoding error: unknown field \"bogus\""),
        "{unknown}"
    );
    // A stale resourceVersion is a 409 Conflict.
    let mut stale: serde_json::Value =
        serde_json::from_str(&c.ok(&["get", "pod", "p1", "-o", "json"])).unwrap();
    c.ok(&["label", "pod", "p1", "bump=1"]);
    stale["metadata"]["labels"]["x"] = "y".into();
    let conflict = c.fails(&["replace", "-f", "-"], Some(&stale.to_string()));
    assert!(conflict.contains("Error from server (Conflict): error when replacing \"STDIN\": Operation cannot be fulfilled on pods \"p1\": the object has been modified"), "{conflict}");
    let warned = c.kubectl(
        &["create", "--validate=warn", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: w}\nbogus: 1\n"),
        &[],
    );
    assert!(warned.status.success());
    assert!(
        String::from_utf8_lossy(&warned.stderr).contains("Warning: unknown field \"bogus\""),
        "{warned:?}"
    );
    let missing_ns = c.fails(&["create", "-n", "nowhere", "-f", "-"], Some(POD));
    assert!(
        missing_ns.contains("namespaces \"nowhere\" not found"),
        "{missing_ns}"
    );
}

#[test]
#[allow(clippy::disallowed_methods)] // a plain test thread, not a tokio worker
fn watch_and_delete() {
    let c = Cluster::start();
    c.ok_with(&["create", "-f", "-"], Some(POD));
    let mut watch = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(c.kubeconfig())
        .args([
            "get",
            "pods",
            "-w",
            "--output-watch-events",
            "-o",
            "json",
            "--request-timeout=20s",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = watch.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        serde_json::Deserializer::from_reader(stdout)
            .into_iter::<serde_json::Value>()
            .map_while(Result::ok)
            .take(3)
            .map(|e| {
                format!(
                    "{} {} {}",
                    e["type"].as_str().unwrap_or_default(),
                    e["object"]["metadata"]["name"].as_str().unwrap_or_default(),
                    e["object"]["metadata"]["labels"]["x"]
                        .as_str()
                        .unwrap_or("-")
                )
            })
            .collect::<Vec<String>>()
    });
    // Give the watch time to start before changing things.
    std::thread::sleep(std::time::Duration::from_millis(700));
    c.ok(&["label", "pod", "p1", "x=1"]);
    assert_eq!(c.ok(&["delete", "pod", "p1"]), "pod \"p1\" deleted\n");
    let events = reader.join().unwrap();
    let _ = watch.kill();
    let _ = watch.wait();
    assert_eq!(events, ["ADDED p1 -", "MODIFIED p1 1", "DELETED p1 1"]);
    // Foreground deletion is recorded for the garbage collector as a finalizer, which the
    // collector removes once the dependents are gone (a finalizer of our own holds the object).
    let held = DEPLOYMENT.replace(
        "  name: web\n",
        "  name: web\n  finalizers: [example.com/hold]\n",
    );
    c.ok_with(&["apply", "-f", "-"], Some(&held));
    c.ok(&[
        "delete",
        "deploy",
        "web",
        "--cascade=foreground",
        "--wait=false",
    ]);
    let finalizers = || {
        c.ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.metadata.finalizers}",
        ])
    };
    let first = finalizers();
    assert!(
        first == r#"["example.com/hold","foregroundDeletion"]"#
            || first == r#"["example.com/hold"]"#,
        "{first}"
    );
    for _ in 0..100 {
        if finalizers() == r#"["example.com/hold"]"# {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(finalizers(), r#"["example.com/hold"]"#);
    c.ok(&[
        "patch",
        "deploy",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    assert!(
        c.fails(&["get", "deploy", "web"], None)
            .contains("NotFound")
    );
}

#[test]
fn bad_credentials_get_401_and_no_credentials_are_anonymous() {
    let c = Cluster::start();
    let url = format!("https://127.0.0.1:{}/api/v1/namespaces", c.port);
    // A certificate the cluster's CA did not sign.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["intruder".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "kubernetes-admin");
    let cert = params.self_signed(&key).unwrap();
    let (cert_path, key_path) = (
        c.dir.path().join("intruder.crt"),
        c.dir.path().join("intruder.key"),
    );
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let anonymous = ["-sk".to_owned(), url.clone()];
    let untrusted = [
        "-sk".to_owned(),
        "--cert".into(),
        cert_path.display().to_string(),
        "--key".into(),
        key_path.display().to_string(),
        url.clone(),
    ];
    let junk_token = [
        "-sk".to_owned(),
        "-H".into(),
        "Authorization: Bearer not-a-token".into(),
        url.clone(),
    ];
    let version = [
        "-sk".to_owned(),
        format!("https://127.0.0.1:{}/version", c.port),
    ];
    let curl = |args: &[String]| -> serde_json::Value {
        let out = std::process::Command::new("curl")
            .args(args)
            .output()
            .expect("curl");
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{args:?}: {out:?}"))
    };
    // Bad credentials: 401, as kube-apiserver answers them.
    for args in [&untrusted[..], &junk_token[..]] {
        let body = curl(args);
        assert_eq!(
            (body["code"].as_i64(), body["reason"].as_str()),
            (Some(401), Some("Unauthorized")),
            "{args:?}"
        );
    }
    // None: `system:anonymous`, whom RBAC lets read /version and nothing of the API.
    let body = curl(&anonymous);
    assert_eq!(
        (body["code"].as_i64(), body["message"].as_str()),
        (
            Some(403),
            Some(
                "namespaces is forbidden: User \"system:anonymous\" cannot list resource \"namespaces\" in API group \"\" at the cluster scope"
            )
        ),
    );
    assert!(curl(&version)["gitVersion"].is_string());
}

#[test]
#[allow(clippy::disallowed_methods)] // a plain test thread, not a tokio worker
fn get_watch_prints_table_rows() {
    let c = Cluster::start();
    c.ok_with(&["apply", "-f", "-"], Some(DEPLOYMENT));
    let mut watch = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(c.kubeconfig())
        .args(["get", "deploy", "-w", "--request-timeout=20s"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = watch.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .take(10)
            // Until the scale shows (the controllers may write the status once more first).
            .scan(false, |done, line| {
                if *done {
                    return None;
                }
                *done = line.contains("0/4");
                Some(line)
            })
            .collect::<Vec<String>>()
    });
    std::thread::sleep(std::time::Duration::from_millis(700));
    c.ok(&["scale", "deploy", "web", "--replicas=4"]);
    let lines = reader.join().unwrap();
    let _ = watch.kill();
    let _ = watch.wait();
    let table = rows(&lines.join("\n"));
    assert_eq!(
        table[0],
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    );
    assert_eq!(table[1][..2], ["web", "0/2"]);
    assert_eq!(table.last().unwrap()[..2], ["web", "0/4"], "{table:?}");
}

#[test]
fn create_subcommands_send_protobuf() {
    let c = Cluster::start();
    for (args, printed) in [
        (
            vec!["create", "namespace", "team-a"],
            "namespace/team-a created\n",
        ),
        (
            vec![
                "create",
                "deployment",
                "web",
                "--image=nginx:1.25",
                "--replicas=0",
                "--port=80",
            ],
            "deployment.apps/web created\n",
        ),
        (
            vec!["create", "configmap", "cfg", "--from-literal=a=1"],
            "configmap/cfg created\n",
        ),
        (
            vec![
                "create",
                "secret",
                "generic",
                "s1",
                "--from-literal=p=hunter2",
            ],
            "secret/s1 created\n",
        ),
        (
            vec!["create", "service", "nodeport", "np", "--tcp=80:8080"],
            "service/np created\n",
        ),
        (
            vec!["create", "job", "j1", "--image=busybox", "--", "echo", "hi"],
            "job.batch/j1 created\n",
        ),
    ] {
        assert_eq!(c.ok(&args), printed, "{args:?}");
    }
    assert_eq!(
        c.ok(&["get", "ns", "team-a", "-o", "jsonpath={.status.phase}"]),
        "Active"
    );
    // An explicit zero survives; what Go writes as empty is left out and defaulted.
    let deployment = c.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas} {.spec.template.spec.restartPolicy} {.spec.template.spec.containers[0].ports[0].protocol}"]);
    assert_eq!(deployment, "0 Always TCP");
    assert_eq!(c.ok(&["get", "cm", "cfg", "-o", "jsonpath={.data.a}"]), "1");
    assert_eq!(
        c.ok(&["get", "secret", "s1", "-o", "jsonpath={.data.p}"]),
        "aHVudGVyMg=="
    );
    let service = c.ok(&[
        "get",
        "svc",
        "np",
        "-o",
        "jsonpath={.spec.type} {.spec.ports[0].nodePort} {.spec.ports[0].targetPort}",
    ]);
    assert_eq!(service, "NodePort 30000 8080");
    assert_eq!(c.ok(&["get", "job", "j1", "-o", "jsonpath={.spec.template.spec.restartPolicy} {.spec.template.spec.containers[0].command}"]), r#"Never ["echo","hi"]"#);
}

/// A stand-in for a kubelet's log endpoint, serving HTTPS with a certificate of the cluster's CA
/// and requiring a client certificate of it, as the kubelets do: answers every request with the
/// path and query it got and the client certificate's user.
#[allow(clippy::disallowed_methods)] // a plain test thread, not a tokio worker
fn fake_kubelet(c: &Cluster) -> u16 {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    use std::io::{BufRead, BufReader, Write};
    use std::sync::Arc;
    let pki = c.dir.path().join("pki");
    let ca_cert = std::fs::read_to_string(pki.join("ca.crt")).unwrap();
    let ca_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(pki.join("ca.key")).unwrap()).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_cert, ca_key).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    params.use_authority_key_identifier_extension = true;
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_cert.as_bytes()).unwrap())
        .unwrap();
    let clients = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(clients)
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap(),
            )
            .unwrap(),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(20) {
            let Ok(stream) = stream else { continue };
            let connection = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut tls = rustls::StreamOwned::new(connection, stream);
            let mut request_line = String::new();
            if BufReader::new(&mut tls)
                .read_line(&mut request_line)
                .is_err()
            {
                continue;
            }
            let target = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_owned();
            let user = tls
                .conn
                .peer_certificates()
                .and_then(|chain| chain.first().cloned())
                .and_then(|leaf| {
                    let (_, cert) = x509_parser::parse_x509_certificate(&leaf).ok()?;
                    let cn = cert
                        .subject()
                        .iter_common_name()
                        .next()?
                        .as_str()
                        .ok()?
                        .to_owned();
                    Some(cn)
                })
                .unwrap_or_default();
            let body = format!("first line\nserved {target} to {user}\n");
            let _ = write!(
                tls,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tls.flush();
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    port
}

#[test]
fn logs_come_from_the_pods_kubelet() {
    let c = Cluster::start();
    let port = fake_kubelet(&c);
    let node = format!(
        "apiVersion: v1\nkind: Node\nmetadata: {{name: node-1}}\nstatus:\n  addresses: [{{type: InternalIP, address: 127.0.0.1}}]\n  daemonEndpoints: {{kubeletEndpoint: {{Port: {port}}}}}\n"
    );
    c.ok_with(&["create", "-f", "-"], Some(&node));
    let unscheduled = c.fails(&["logs", "p1"], None);
    assert!(
        unscheduled.contains("pods \"p1\" not found"),
        "{unscheduled}"
    );
    // A pod left to a scheduler that does not run here stays unscheduled.
    c.ok_with(
        &["create", "-f", "-"],
        Some(&POD.replace("spec:\n", "spec:\n  schedulerName: elsewhere\n")),
    );
    let waiting = c.fails(&["logs", "p1"], None);
    assert!(
        waiting.contains("pod p1 does not have a host assigned"),
        "{waiting}"
    );
    c.ok_with(
        &["create", "-f", "-"],
        Some(
            &POD.replace("name: p1", "name: p2")
                .replace("spec:\n", "spec:\n  nodeName: node-1\n"),
        ),
    );
    assert_eq!(
        c.ok(&["logs", "p2"]),
        "first line\nserved /containerLogs/default/p2/c to kube-apiserver-kubelet-client\n"
    );
    assert_eq!(
        c.ok(&["logs", "p2", "-c", "c", "--tail=5", "--timestamps"]),
        "first line\nserved /containerLogs/default/p2/c?tailLines=5&timestamps=true to kube-apiserver-kubelet-client\n"
    );
    let wrong = c.fails(&["logs", "p2", "-c", "nope"], None);
    assert!(
        wrong.contains("container nope is not valid for pod p2"),
        "{wrong}"
    );
}

#[test]
fn restart_keeps_objects_and_the_users_kubeconfig_keeps_other_contexts() {
    let dir = tempfile::tempdir().unwrap();
    let user = dir.path().join("user-kubeconfig");
    std::fs::write(&user, "apiVersion: v1\nkind: Config\nclusters:\n- name: prod\n  cluster: {server: https://prod.example}\nusers:\n- name: prod\n  user: {token: t}\ncontexts:\n- name: prod\n  context: {cluster: prod, user: prod}\ncurrent-context: prod\n").unwrap();
    let c = Cluster::start_in(dir, &["--name", "lab", "--nodes", "0"]);
    c.ok_with(&["apply", "-f", "-"], Some(DEPLOYMENT));
    let merged = std::fs::read_to_string(c.dir.path().join("user-kubeconfig")).unwrap();
    assert!(
        merged.contains("name: prod")
            && merged.contains("name: lab")
            && merged.contains("current-context: lab"),
        "{merged}"
    );
    // The merged context works as kubectl's current context.
    let out = std::process::Command::new("kubectl")
        .args(["get", "deploy", "web", "-o", "name"])
        .env("KUBECONFIG", c.dir.path().join("user-kubeconfig"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "deployment.apps/web\n"
    );
    let rv = c.settled_rv("deploy", "web");

    let dir = c.down();
    assert!(
        !dir.path().join("orrery.pid").exists(),
        "down removes the pid file"
    );
    let c = Cluster::start_in(dir, &["--name", "lab", "--nodes", "0"]);
    assert_eq!(
        c.ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.metadata.resourceVersion}"
        ]),
        rv
    );
    assert_eq!(c.ok(&["get", "ns", "-o", "name"]).lines().count(), 4);
}

#[test]
#[allow(clippy::disallowed_methods)] // a plain test thread, not a tokio worker
fn server_side_dry_runs_and_diff_change_nothing() {
    let c = Cluster::start();
    c.ok_with(&["apply", "-f", "-"], Some(DEPLOYMENT));
    // Let the controllers finish their own writes to the Deployment (its status) first.
    for _ in 0..200 {
        let replicas = c.ok(&["get", "deploy", "web", "-o", "jsonpath={.status.replicas}"]);
        if replicas == "2" {
            break;
        }
        #[allow(clippy::disallowed_methods)] // a plain test thread, not a tokio worker
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let rv = c.ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.metadata.resourceVersion}",
    ]);
    // ...and any last write after that.
    let mut rv = rv;
    for _ in 0..20 {
        #[allow(clippy::disallowed_methods)] // a plain test thread, not a tokio worker
        std::thread::sleep(std::time::Duration::from_millis(300));
        let now = c.ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ]);
        if now == rv {
            break;
        }
        rv = now;
    }
    let scaled = DEPLOYMENT.replace("replicas: 2", "replicas: 9");
    // kubectl diff asks the server for a dry-run patch: it must show the change and make none.
    let diff = c.kubectl(&["diff", "-f", "-"], Some(&scaled), &[]);
    assert_eq!(
        diff.status.code(),
        Some(1),
        "diff exits 1 when there are differences: {diff:?}"
    );
    assert!(
        String::from_utf8_lossy(&diff.stdout).contains("+  replicas: 9"),
        "{diff:?}"
    );
    c.ok_with(&["apply", "--dry-run=server", "-f", "-"], Some(&scaled));
    c.ok_with(
        &["apply", "--server-side", "--dry-run=server", "-f", "-"],
        Some(&scaled.replace("name: web\n  labels", "name: new\n  labels")),
    );
    c.ok(&["delete", "deploy", "web", "--dry-run=server"]);
    c.ok(&["scale", "deploy", "web", "--replicas=7", "--dry-run=server"]);
    assert_eq!(
        c.ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.replicas} {.metadata.resourceVersion}"
        ]),
        format!("2 {rv}")
    );
    assert_eq!(
        c.ok(&["get", "deploy", "-o", "name"]),
        "deployment.apps/web\n"
    );
}

#[test]
fn replacing_a_service_keeps_its_cluster_ip_and_node_port() {
    let c = Cluster::start();
    let service = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  type: NodePort\n  selector: {app: web}\n  ports: [{port: 80, targetPort: 8080}]\n";
    c.ok_with(&["create", "-f", "-"], Some(service));
    let before = c.ok(&[
        "get",
        "svc",
        "web",
        "-o",
        "jsonpath={.spec.clusterIP} {.spec.ports[0].nodePort}",
    ]);
    // A random address of the service network 10.96.0.0/12, as kube-apiserver allocates.
    let ip: std::net::Ipv4Addr = before.split(' ').next().unwrap().parse().unwrap();
    assert_eq!(
        u32::from(ip) >> 20,
        u32::from(std::net::Ipv4Addr::new(10, 96, 0, 0)) >> 20
    );
    assert!(before.ends_with(" 30000"), "{before}");
    c.ok_with(
        &["replace", "-f", "-"],
        Some(&service.replace("app: web", "app: web2")),
    );
    let after = c.ok(&[
        "get",
        "svc",
        "web",
        "-o",
        "jsonpath={.spec.clusterIP} {.spec.ports[0].nodePort} {.spec.selector.app}",
    ]);
    assert_eq!(after, format!("{before} web2"));
    let changed = c.fails(
        &[
            "patch",
            "svc",
            "web",
            "-p",
            r#"{"spec":{"clusterIP":"10.96.9.9"}}"#,
        ],
        None,
    );
    assert!(changed.contains("may not change once set"), "{changed}");
}

fn node_manifest(name: &str, cpu: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Node\nmetadata: {{name: {name}}}\nspec: {{{extra}}}\nstatus:\n  allocatable: {{cpu: \"{cpu}\", memory: 8Gi, pods: \"110\"}}\n  capacity: {{cpu: \"{cpu}\", memory: 8Gi, pods: \"110\"}}\n"
    )
}

#[test]
#[allow(clippy::disallowed_methods)] // a plain test thread, not a tokio worker
fn the_scheduler_binds_pods_or_says_why_not() {
    let c = Cluster::start();
    c.ok_with(
        &["create", "-f", "-"],
        Some(&node_manifest("node-1", "2", "")),
    );
    c.ok_with(
        &["create", "-f", "-"],
        Some(&node_manifest("node-2", "4", "")),
    );
    c.ok_with(
        &["create", "-f", "-"],
        Some(&node_manifest(
            "node-3",
            "8",
            "taints: [{key: dedicated, value: gpu, effect: NoSchedule}]",
        )),
    );
    let pod = |name: &str, cpu: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  containers: [{{name: c, image: busybox, resources: {{requests: {{cpu: \"{cpu}\"}}}}}}]\n"
        )
    };
    c.ok_with(&["create", "-f", "-"], Some(&pod("fits", "1500m")));
    c.ok_with(&["create", "-f", "-"], Some(&pod("too-big", "6")));
    let wait = |name: &str, jsonpath: &str, want: &str| {
        for _ in 0..100 {
            if c.ok(&["get", "pod", name, "-o", &format!("jsonpath={jsonpath}")]) == want {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("{name}: {jsonpath} never became {want}");
    };
    // node-1 lacks cpu, node-3's taint is not tolerated: node-2 it is.
    wait("fits", "{.spec.nodeName}", "node-2");
    assert_eq!(
        c.ok(&[
            "get",
            "pod",
            "fits",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].status}"
        ]),
        "True"
    );
    let message = "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 2 Insufficient cpu. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.";
    wait("too-big", "{.status.conditions[0].message}", message);
    assert_eq!(
        c.ok(&[
            "get",
            "pod",
            "too-big",
            "-o",
            "jsonpath={.status.conditions[0].reason} {.spec.nodeName}"
        ]),
        "Unschedulable "
    );
    let described = c.ok(&["describe", "pod", "too-big"]);
    assert!(
        described.contains("FailedScheduling") && described.contains("2 Insufficient cpu"),
        "{described}"
    );
    let described = c.ok(&["describe", "pod", "fits"]);
    assert!(
        described.contains("Successfully assigned default/fits to node-2"),
        "{described}"
    );
    // A bigger node arrives: the pending pod is scheduled onto it.
    c.ok_with(
        &["create", "-f", "-"],
        Some(&node_manifest("node-4", "16", "")),
    );
    wait("too-big", "{.spec.nodeName}", "node-4");
}

#[test]
#[allow(clippy::disallowed_methods)] // a plain test thread, not a tokio worker
fn pods_run_on_virtual_nodes() {
    let c = Cluster::with_nodes(3);
    let wait_for = |args: &[&str], want: &str| {
        for _ in 0..100 {
            if c.kubectl(args, None, &[]).stdout == want.as_bytes() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!(
            "kubectl {args:?} never printed {want:?}: {}",
            String::from_utf8_lossy(&c.kubectl(args, None, &[]).stdout)
        );
    };
    wait_for(
        &[
            "get",
            "nodes",
            "-o",
            "jsonpath={.items[*].status.conditions[?(@.type==\"Ready\")].status}",
        ],
        // Three workers and the control-plane node.
        "True True True True",
    );
    assert_eq!(
        c.ok(&["get", "lease", "-n", "kube-node-lease", "-o", "name"])
            .lines()
            .count(),
        4
    );
    c.ok(&[
        "run",
        "hello",
        "--image=busybox",
        "--",
        "sh",
        "-c",
        "echo hello from orrery; sleep 3600",
    ]);
    c.ok(&[
        "run",
        "crash",
        "--image=busybox",
        "--restart=Never",
        "--",
        "sh",
        "-c",
        "echo boom; exit 3",
    ]);
    c.ok(&[
        "run",
        "done",
        "--image=busybox",
        "--restart=Never",
        "--",
        "echo",
        "finished",
    ]);
    wait_for(
        &[
            "get",
            "pod",
            "hello",
            "-o",
            "jsonpath={.status.phase} {.status.containerStatuses[0].ready}",
        ],
        "Running true",
    );
    wait_for(
        &[
            "get",
            "pod",
            "crash",
            "-o",
            "jsonpath={.status.phase} {.status.containerStatuses[0].state.terminated.exitCode}",
        ],
        "Failed 3",
    );
    wait_for(
        &[
            "get",
            "pod",
            "done",
            "-o",
            "jsonpath={.status.phase} {.status.containerStatuses[0].state.terminated.reason}",
        ],
        "Succeeded Completed",
    );
    let ip = c.ok(&[
        "get",
        "pod",
        "hello",
        "-o",
        "jsonpath={.status.podIP} {.spec.nodeName}",
    ]);
    let (ip, node) = ip.split_once(' ').unwrap();
    assert!(
        ip.starts_with(&format!("10.244.{}.", node.trim_start_matches("node-"))),
        "{ip} on {node}"
    );
    assert_eq!(c.ok(&["logs", "hello"]), "hello from orrery\n");
    assert_eq!(c.ok(&["logs", "crash"]), "boom\n");
    let table = rows(&c.ok(&["get", "pods"]));
    let status = |name: &str| {
        table
            .iter()
            .find(|r| r[0] == name)
            .map(|r| r[2].clone())
            .unwrap()
    };
    assert_eq!(
        (status("hello"), status("crash"), status("done")),
        ("Running".into(), "Error".into(), "Completed".into())
    );
    let described = c.ok(&["describe", "pod", "hello"]);
    for reason in ["Scheduled", "Pulling", "Pulled", "Created", "Started"] {
        assert!(
            described.contains(reason),
            "{reason} missing in:\n{described}"
        );
    }
    // Deleting waits for the kubelet to stop the container and remove the pod.
    assert_eq!(c.ok(&["delete", "pod", "hello"]), "pod \"hello\" deleted\n");
    assert!(c.fails(&["get", "pod", "hello"], None).contains("NotFound"));
}

#[test]
#[allow(clippy::disallowed_methods)] // a plain test thread, not a tokio worker
fn a_replicaset_keeps_its_pods_running() {
    let c = Cluster::with_nodes(3);
    let rs = "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {name: web}\nspec:\n  replicas: 4\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: web, image: orrery/hello:1}]\n";
    c.ok_with(&["apply", "-f", "-"], Some(rs));
    let wait = |jsonpath: &str, want: &str| {
        for _ in 0..150 {
            if c.ok(&["get", "rs", "web", "-o", &format!("jsonpath={jsonpath}")]) == want {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("{jsonpath} never became {want}");
    };
    wait("{.status.readyReplicas}", "4");
    let pods = c.ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[*].metadata.ownerReferences[0].name}",
    ]);
    assert_eq!(pods, "web web web web");
    c.ok(&["scale", "rs", "web", "--replicas=2"]);
    wait("{.status.replicas} {.status.readyReplicas}", "2 2");
    // A deleted pod is replaced.
    let victim = c.ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ]);
    c.ok(&["delete", "pod", &victim]);
    for _ in 0..150 {
        let names = c.ok(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ]);
        if names.split(' ').count() == 2 && !names.contains(&victim) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("the deleted pod was not replaced");
}

#[test]
fn deployments_roll_out_update_and_undo() {
    let c = Cluster::with_nodes(3);
    let six = DEPLOYMENT.replace("replicas: 2", "replicas: 6");
    c.ok_with(&["apply", "-f", "-"], Some(&six));
    let done = c.ok(&["rollout", "status", "deploy/web", "--timeout=60s"]);
    assert!(
        done.ends_with("deployment \"web\" successfully rolled out\n"),
        "{done}"
    );
    let nodes = c.ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[*].spec.nodeName}",
    ]);
    for node in ["node-1", "node-2", "node-3"] {
        assert!(nodes.contains(node), "pods spread over every node: {nodes}");
    }
    c.ok(&["set", "image", "deploy/web", "web=orrery/hello:2"]);
    c.ok(&["rollout", "status", "deploy/web", "--timeout=60s"]);
    let images = c.ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[*].spec.containers[0].image}",
    ]);
    assert_eq!(
        images.split(' ').filter(|i| *i == "orrery/hello:2").count(),
        6,
        "{images}"
    );
    let history = c.ok(&["rollout", "history", "deploy/web"]);
    assert!(
        history.contains("1 ") && history.contains("2 "),
        "{history}"
    );
    c.ok(&["rollout", "undo", "deploy/web"]);
    c.ok(&["rollout", "status", "deploy/web", "--timeout=60s"]);
    assert_eq!(
        c.ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image} {.status.availableReplicas}"
        ]),
        "orrery/hello:1 6"
    );
    let sets = rows(&c.ok(&["get", "rs"]));
    assert_eq!(sets.len(), 3, "two ReplicaSets, one per template: {sets:?}");
}

#[test]
#[allow(clippy::disallowed_methods)] // a plain test thread, not a tokio worker
fn deleting_a_namespace_removes_everything_in_it() {
    let c = Cluster::with_nodes(2);
    c.ok(&["create", "namespace", "team"]);
    c.ok(&[
        "-n",
        "team",
        "create",
        "configmap",
        "c1",
        "--from-literal=a=1",
    ]);
    c.ok_with(&["-n", "team", "apply", "-f", "-"], Some(DEPLOYMENT));
    c.ok(&[
        "-n",
        "team",
        "rollout",
        "status",
        "deploy/web",
        "--timeout=60s",
    ]);
    // kubectl waits until the namespace is gone.
    assert_eq!(
        c.ok(&["delete", "namespace", "team", "--timeout=60s"]),
        "namespace \"team\" deleted\n"
    );
    assert!(
        c.fails(&["get", "namespace", "team"], None)
            .contains("NotFound")
    );
    assert_eq!(
        c.ok(&["get", "pods,rs,deploy,cm", "-n", "team", "-o", "name"]),
        ""
    );
}

/// Deleting a pod follows kube-apiserver's `CheckGracefulDelete`: a negative grace period is one
/// second, a period past what a timestamp can say is clamped (never a crash), and a pod whose
/// containers have all ended goes at once.
#[test]
fn pod_grace_periods_are_checked_as_upstream_checks_them() {
    let c = Cluster::start();
    for name in ["negative", "huge", "done"] {
        let pod = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  nodeName: ghost\n  \
             containers: [{{name: c, image: orrery/hello}}]\n"
        );
        c.ok_with(&["create", "-f", "-"], Some(&pod));
    }
    let path = "/api/v1/namespaces/default/pods";
    c.ok(&[
        "delete",
        "--raw",
        &format!("{path}/negative?gracePeriodSeconds=-5"),
    ]);
    assert_eq!(
        c.ok(&[
            "get",
            "pod",
            "negative",
            "-o",
            "jsonpath={.metadata.deletionGracePeriodSeconds}"
        ]),
        "1"
    );
    let max = i64::MAX;
    c.ok(&[
        "delete",
        "--raw",
        &format!("{path}/huge?gracePeriodSeconds={max}"),
    ]);
    let deletion = c.ok(&[
        "get",
        "pod",
        "huge",
        "-o",
        "jsonpath={.metadata.deletionTimestamp} {.metadata.deletionGracePeriodSeconds}",
    ]);
    let (at, grace) = deletion.split_once(' ').unwrap();
    assert!(at.starts_with("9999-12-"), "{deletion}");
    assert_eq!(grace, max.to_string());
    c.ok(&[
        "patch",
        "pod",
        "done",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Succeeded"}}"#,
    ]);
    c.ok(&["delete", "pod", "done", "--wait=false"]);
    assert!(c.fails(&["get", "pod", "done"], None).contains("NotFound"));
}
