//! The cluster's doors, tried as a stranger on the same machine would try them: its certificates
//! against strict TLS clients (the official Python client, Python's `VERIFY_X509_STRICT`,
//! `openssl verify -x509_strict`), the kubelets' endpoints without the API server's certificate,
//! the state directory's permissions, a thousand idle connections, and the probes' hostile
//! requests (huge headers, bad options, deep bodies).

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Cluster, run_python};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};

fn read(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn mode(path: impl AsRef<Path>) -> u32 {
    std::fs::metadata(path.as_ref())
        .unwrap_or_else(|e| panic!("{}: {e}", path.as_ref().display()))
        .permissions()
        .mode()
        & 0o777
}

/// `openssl verify -x509_strict` of `cert` against `ca`: `Ok` or openssl's words.
fn openssl_strict(ca: &Path, cert: &Path) -> Result<(), String> {
    let out = Command::new("openssl")
        .args(["verify", "-x509_strict", "-CAfile"])
        .arg(ca)
        .arg(cert)
        .output()
        .expect("openssl is needed for this test (apt-get install openssl)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && said.contains(": OK") {
        Ok(())
    } else {
        Err(said)
    }
}

/// A TLS client trusting `ca`, showing `identity` (certificate and key PEM) if given.
fn client_config(
    ca: &str,
    identity: Option<(&str, &str)>,
    alpn: &[&[u8]],
) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.as_bytes()).unwrap())
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

fn localhost() -> ServerName<'static> {
    ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into())
}

/// One HTTPS request to `to` (the server's certificate checked against the CA in `config`, for
/// its IP address); the status and the body.
fn https_request(
    to: std::net::SocketAddr,
    config: &Arc<rustls::ClientConfig>,
    method: &str,
    path: &str,
) -> (u16, String) {
    let tcp = TcpStream::connect(to).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let name = ServerName::IpAddress(to.ip().into());
    let connection = rustls::ClientConnection::new(config.clone(), name).unwrap();
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    write!(
        tls,
        "{method} {path} HTTP/1.1\r\nHost: {to}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let mut answer = Vec::new();
    // The server may close without a close_notify: what arrived is the answer.
    let _ = tls.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: no HTTP answer: {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A certificate and key for `cn`/`o`, signed by the CA `ca_cert`/`ca_key` (PEM).
fn certificate(ca_cert: &str, ca_key: &str, cn: &str, o: &str) -> (String, String) {
    let issuer =
        rcgen::Issuer::from_ca_cert_pem(ca_cert, rcgen::KeyPair::from_pem(ca_key).unwrap())
            .unwrap();
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, o);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// A certificate authority of someone else's.
fn foreign_ca() -> (String, String) {
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "orrery-ca");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// Python's own TLS with `ssl.VERIFY_X509_STRICT` (on by default from Python 3.13): the status
/// line of `GET path` from `host`:`port`, showing `cert`/`key`, trusting `ca`.
const STRICT_GET: &str = r#"
import socket, ssl, sys
host, port, ca, cert, key, path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
ctx = ssl.create_default_context(cafile=ca)
ctx.verify_flags |= ssl.VERIFY_X509_STRICT
ctx.load_cert_chain(cert, key)
with socket.create_connection((host, port), timeout=10) as raw:
    with ctx.wrap_socket(raw, server_hostname=host) as tls:
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
print(data.split(b"\r\n", 1)[0].decode())
"#;

/// The official client, with the kubeconfig `orrery up` writes and verification on: the
/// namespaces' names.
const OFFICIAL_CLIENT: &str = r#"
import sys, urllib3
from kubernetes import client, config
assert int(urllib3.__version__.split(".")[0]) >= 2, f"urllib3 {urllib3.__version__} is not 2"
config.load_kube_config(sys.argv[1])
assert client.Configuration.get_default_copy().verify_ssl, "certificate verification is on"
print(" ".join(sorted(n.metadata.name for n in client.CoreV1Api().list_namespace().items)))
"#;

/// Where the kubelet of `node` serves: its InternalIP and the port in its Node's status.
fn kubelet_address(c: &Cluster, node: &str) -> std::net::SocketAddr {
    let found = c.eventually(
        &[
            "get",
            "node",
            node,
            "-o",
            "jsonpath={.status.addresses[?(@.type==\"InternalIP\")].address} {.status.daemonEndpoints.kubeletEndpoint.Port}",
        ],
        30,
        |out| {
            out.split_once(' ')
                .is_some_and(|(_, port)| port.parse::<u16>().is_ok_and(|p| p > 0))
        },
    );
    let (ip, port) = found.split_once(' ').unwrap();
    std::net::SocketAddr::new(ip.parse().unwrap(), port.parse().unwrap())
}

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  containers: [{name: app, image: orrery/hello}]
"#;

#[test]
fn strict_tls_clients_trust_the_certificates() {
    let c = Cluster::with_nodes(1);
    let pki = c.dir.path().join("pki");
    let kubelet_pki = c.dir.path().join("kubelet/node-1/pki");
    let kubelet = kubelet_address(&c, "node-1");
    for cert in [
        pki.join("apiserver.crt"),
        pki.join("admin.crt"),
        pki.join("apiserver-kubelet-client.crt"),
        kubelet_pki.join("kubelet.crt"),
    ] {
        openssl_strict(&pki.join("ca.crt"), &cert)
            .unwrap_or_else(|e| panic!("{}: {e}", cert.display()));
    }
    let kubeconfig = c.kubeconfig();
    assert_eq!(
        run_python(OFFICIAL_CLIENT, &[kubeconfig.to_str().unwrap()]).trim(),
        "default kube-node-lease kube-public kube-system"
    );
    let ca = pki.join("ca.crt");
    let strict = |to: std::net::SocketAddr, who: &str, path: &str| {
        run_python(
            STRICT_GET,
            &[
                &to.ip().to_string(),
                &to.port().to_string(),
                ca.to_str().unwrap(),
                pki.join(format!("{who}.crt")).to_str().unwrap(),
                pki.join(format!("{who}.key")).to_str().unwrap(),
                path,
            ],
        )
        .trim()
        .to_owned()
    };
    let apiserver = std::net::SocketAddr::from(([127, 0, 0, 1], c.port));
    assert_eq!(strict(apiserver, "admin", "/version"), "HTTP/1.1 200 OK");
    // The kubelet's serving certificate too, from the API server's side.
    c.apply(POD);
    c.eventually(
        &["get", "pod", "p", "-o", "jsonpath={.status.phase}"],
        30,
        |phase| phase == "Running",
    );
    assert_eq!(
        strict(
            kubelet,
            "apiserver-kubelet-client",
            "/containerLogs/default/p/app"
        ),
        "HTTP/1.1 200 OK"
    );
}

/// The files an earlier Orrery wrote: a state directory open to all, a store file readable by
/// all, and leaf certificates without an Authority Key Identifier.
fn earlier_version(dir: &Path) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose, SanType,
    };
    let pki = dir.join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    let write = |name: &str, text: &str, mode: u32| {
        std::fs::write(pki.join(name), text).unwrap();
        std::fs::set_permissions(pki.join(name), std::fs::Permissions::from_mode(mode)).unwrap();
    };
    let ca_params = || {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "orrery-ca");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params
    };
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params().self_signed(&ca_key).unwrap();
    write("ca.crt", &ca.pem(), 0o644);
    write("ca.key", &ca_key.serialize_pem(), 0o600);
    let issuer = Issuer::new(ca_params(), ca_key);
    let leaf = |file: &str, cn: &str, o: Option<&str>, server: bool| {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, cn);
        if let Some(o) = o {
            params.distinguished_name.push(DnType::OrganizationName, o);
        }
        if server {
            params.subject_alt_names = vec![
                SanType::DnsName("localhost".try_into().unwrap()),
                SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
            ];
        }
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        write(&format!("{file}.crt"), &cert.pem(), 0o644);
        write(&format!("{file}.key"), &key.serialize_pem(), 0o600);
    };
    leaf("apiserver", "kube-apiserver", None, true);
    leaf("admin", "kubernetes-admin", Some("system:masters"), false);
    // A store as an earlier version left it (a new one: an empty file is refused now).
    drop(orrery::store::embedded::EmbeddedStore::open(&dir.join("store.redb")).unwrap());
    for (path, mode) in [
        (dir.join("store.redb"), 0o644),
        (dir.join("pki"), 0o755),
        (dir.to_owned(), 0o755),
    ] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
}

#[test]
fn an_earlier_versions_state_is_brought_up_to_the_rules() {
    let dir = tempfile::tempdir().unwrap();
    earlier_version(dir.path());
    let pki = dir.path().join("pki");
    let weak = openssl_strict(&pki.join("ca.crt"), &pki.join("apiserver.crt"))
        .expect_err("strict clients refuse the old leaves");
    assert!(weak.contains("Missing Authority Key Identifier"), "{weak}");
    let (ca, old_server, old_admin, old_admin_key) = (
        read(pki.join("ca.crt")),
        read(pki.join("apiserver.crt")),
        read(pki.join("admin.crt")),
        read(pki.join("admin.key")),
    );

    let c = Cluster::start_logged(dir, &["--no-kubeconfig-merge", "--nodes", "0"]);
    let (state, pki) = (c.dir.path(), c.dir.path().join("pki"));
    assert_eq!(mode(state), 0o700, "the state directory is tightened");
    assert_eq!(mode(state.join("store.redb")), 0o600);
    assert_eq!(mode(&pki), 0o700, "and its pki directory");
    assert!(
        c.log().contains("it is now 0700"),
        "orrery up says so: {}",
        c.log()
    );
    assert_eq!(read(pki.join("ca.crt")), ca, "the CA is kept");
    assert_ne!(read(pki.join("apiserver.crt")), old_server);
    assert_ne!(read(pki.join("admin.crt")), old_admin);
    for cert in ["apiserver", "admin", "apiserver-kubelet-client"] {
        openssl_strict(&pki.join("ca.crt"), &pki.join(format!("{cert}.crt")))
            .unwrap_or_else(|e| panic!("{cert}: {e}"));
    }
    // The rewritten kubeconfig works for the official client.
    let kubeconfig = c.kubeconfig();
    assert_eq!(
        run_python(OFFICIAL_CLIENT, &[kubeconfig.to_str().unwrap()]).trim(),
        "default kube-node-lease kube-public kube-system"
    );
    // A kubeconfig made before, with the old admin certificate, still works: the CA is the same.
    let b64 = |pem: &str| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(pem)
    };
    let old_kubeconfig = state.join("old-kubeconfig");
    std::fs::write(
        &old_kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: o\n  cluster:\n    server: https://127.0.0.1:{}\n    certificate-authority-data: {}\nusers:\n- name: o\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: o\n  context: {{cluster: o, user: o}}\ncurrent-context: o\n",
            c.port,
            b64(&ca),
            b64(&old_admin),
            b64(&old_admin_key)
        ),
    )
    .unwrap();
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&old_kubeconfig)
        .args(["get", "ns", "default", "-o", "name"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "namespace/default\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_local_user_without_the_api_servers_certificate_is_refused_by_every_kubelet_endpoint() {
    let c = Cluster::with_nodes(1);
    let kubelet = kubelet_address(&c, "node-1");
    c.apply(POD);
    c.eventually(
        &["get", "pod", "p", "-o", "jsonpath={.status.phase}"],
        30,
        |phase| phase == "Running",
    );
    let pki = c.dir.path().join("pki");
    let (ca, ca_key) = (read(pki.join("ca.crt")), read(pki.join("ca.key")));
    let alpn: &[&[u8]] = &[b"http/1.1"];

    // Plain HTTP gets no HTTP answer at all.
    let plain = common::http_get(&kubelet.to_string());
    assert!(!plain.starts_with("HTTP/"), "{plain:?}");

    let (foreign_cert, foreign_key) = foreign_ca();
    let impostor = certificate(
        &foreign_cert,
        &foreign_key,
        "kube-apiserver-kubelet-client",
        "kubeadm:cluster-admins",
    );
    let mallory = certificate(&ca, &ca_key, "mallory", "kubeadm:cluster-admins");
    let (admin_cert, admin_key) = (read(pki.join("admin.crt")), read(pki.join("admin.key")));
    let node_pki = c.dir.path().join("kubelet/node-1/pki");
    let (node_cert, node_key) = (
        read(node_pki.join("kubelet.crt")),
        read(node_pki.join("kubelet.key")),
    );
    // Who knocks, and the user a 403 names (None: 401).
    let strangers: Vec<(&str, Arc<rustls::ClientConfig>, Option<&str>)> = vec![
        ("no certificate", client_config(&ca, None, alpn), None),
        (
            "another CA's kube-apiserver-kubelet-client",
            client_config(&ca, Some((&impostor.0, &impostor.1)), alpn),
            None,
        ),
        (
            // Signed by the cluster's CA, but for serving, not for clients.
            "the node's serving certificate",
            client_config(&ca, Some((&node_cert, &node_key)), alpn),
            None,
        ),
        (
            "the cluster admin",
            client_config(&ca, Some((&admin_cert, &admin_key)), alpn),
            Some("kubernetes-admin"),
        ),
        (
            "another user of the cluster's CA",
            client_config(&ca, Some((&mallory.0, &mallory.1)), alpn),
            Some("mallory"),
        ),
    ];
    let routes = [
        ("GET", "/containerLogs/default/p/app", "get", "proxy"),
        (
            "GET",
            "/containerLogs/default/p/app?follow=true",
            "get",
            "proxy",
        ),
        (
            "POST",
            "/exec/default/p/app?command=id&stdout=true",
            "create",
            "proxy",
        ),
        (
            "GET",
            "/exec/default/p/app?command=id&stdout=true",
            "get",
            "proxy",
        ),
        (
            "POST",
            "/attach/default/p/app?stdout=true",
            "create",
            "proxy",
        ),
        (
            "POST",
            "/portForward/default/p?ports=8080",
            "create",
            "proxy",
        ),
        ("GET", "/portForward/default/p", "get", "proxy"),
        ("POST", "/run/default/p/app?cmd=id", "create", "proxy"),
        ("GET", "/pods", "get", "proxy"),
        ("GET", "/runningpods/", "get", "proxy"),
        ("GET", "/healthz", "get", "proxy"),
        ("GET", "/configz", "get", "proxy"),
        ("GET", "/stats/summary", "get", "stats"),
        ("GET", "/metrics", "get", "metrics"),
        ("GET", "/logs/", "get", "log"),
        ("DELETE", "/no/such/path", "delete", "proxy"),
    ];
    for (who, config, user) in &strangers {
        for (method, path, verb, subresource) in routes {
            let (status, body) = https_request(kubelet, config, method, path);
            match user {
                None => assert_eq!(
                    (status, body.as_str()),
                    (401, "Unauthorized"),
                    "{who}: {method} {path}"
                ),
                Some(user) => assert_eq!(
                    (status, body),
                    (
                        403,
                        format!(
                            "Forbidden (user={user}, verb={verb}, resource=nodes, subresource={subresource})"
                        )
                    ),
                    "{who}: {method} {path}"
                ),
            }
        }
    }
    // The API server's own certificate is served, directly and through the API server.
    let apiserver = client_config(
        &ca,
        Some((
            &read(pki.join("apiserver-kubelet-client.crt")),
            &read(pki.join("apiserver-kubelet-client.key")),
        )),
        alpn,
    );
    let (status, body) = https_request(kubelet, &apiserver, "GET", "/containerLogs/default/p/app");
    assert_eq!(status, 200, "{body}");
    c.ok(&["logs", "p"]);
}

/// `orrery up` on `state_dir` (no nodes); its stderr goes to `log`.
#[allow(clippy::disallowed_methods)] // a plain test thread, not a tokio worker
fn up(state_dir: &Path, log: &Path) -> Child {
    let child = Command::new(env!("CARGO_BIN_EXE_orrery"))
        .arg("--state-dir")
        .arg(state_dir)
        .args([
            "up",
            "--headless",
            "--port",
            "0",
            "--nodes",
            "0",
            "--no-kubeconfig-merge",
            "--ingress-port",
            "0",
            "--ingress-https-port",
            "0",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !state_dir.join("orrery.pid").exists() {
        assert!(Instant::now() < deadline, "orrery up did not start in 20 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn down(state_dir: &Path, mut child: Child) {
    let out = Command::new(env!("CARGO_BIN_EXE_orrery"))
        .arg("--state-dir")
        .arg(state_dir)
        .arg("down")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    child.wait().unwrap();
}

#[test]
fn a_new_state_directory_and_its_store_are_readable_by_their_owner_only() {
    let root = tempfile::tempdir().unwrap();
    // A new nested path: every directory made for it is owner-only.
    let nested = root.path().join("a/b/state");
    let log = root.path().join("nested.log");
    let child = up(&nested, &log);
    for dir in [
        root.path().join("a"),
        root.path().join("a/b"),
        nested.clone(),
        nested.join("pki"),
    ] {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    }
    for file in ["store.redb", "kubeconfig", "pki/ca.key", "pki/admin.key"] {
        assert_eq!(mode(nested.join(file)), 0o600, "{file}");
    }
    down(&nested, child);
    assert!(
        !read(&log).contains("0700"),
        "nothing to tighten: {}",
        read(&log)
    );

    // An existing empty directory open to others is the user's to give: it is tightened, without
    // a word since nothing in it was exposed.
    let empty = root.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    std::fs::set_permissions(&empty, std::fs::Permissions::from_mode(0o755)).unwrap();
    let log = root.path().join("empty.log");
    let child = up(&empty, &log);
    assert_eq!(mode(&empty), 0o700);
    assert_eq!(mode(empty.join("store.redb")), 0o600);
    down(&empty, child);
    assert!(!read(&log).contains("0700"), "{}", read(&log));

    // A directory with someone else's files in it is not Orrery's to change: a warning, and
    // still owner-only files.
    let shared = root.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::write(shared.join("notes.txt"), "mine").unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
    let log = root.path().join("shared.log");
    let child = up(&shared, &log);
    assert_eq!(mode(&shared), 0o755);
    assert_eq!(mode(shared.join("store.redb")), 0o600);
    assert_eq!(mode(shared.join("pki")), 0o700);
    down(&shared, child);
    assert!(
        read(&log).contains("warning: the state directory"),
        "{}",
        read(&log)
    );
}

/// A process's CPU time so far, in seconds, from `/proc/<pid>/stat`.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = read(format!("/proc/{pid}/stat"));
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    // utime and stime: fields 14 and 15 of the line, 12th and 13th after the command's name.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .unwrap()
        .unwrap_or(100);
    ticks as f64 / hz as f64
}

/// The share of one core `pid` used over the next `seconds`.
#[allow(clippy::disallowed_methods)] // a plain test thread, not a tokio worker
fn cpu_share(pid: u32, seconds: u64) -> f64 {
    let before = cpu_seconds(pid);
    std::thread::sleep(Duration::from_secs(seconds));
    (cpu_seconds(pid) - before) / seconds as f64
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Waits (at most `seconds`) until `done` holds.
#[allow(clippy::disallowed_methods)] // a plain test thread, not a tokio worker
fn wait_until(seconds: u64, what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !done() {
        assert!(Instant::now() < deadline, "not within {seconds} s: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_thousand_idle_connections_neither_stop_the_api_nor_spin_the_cpu() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    // This process holds a thousand sockets: raise its own soft limit if it is lower.
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    assert!(
        hard >= 2048,
        "the hard limit on open files ({hard}) is too low for this test"
    );
    if soft < 2048 {
        setrlimit(Resource::RLIMIT_NOFILE, hard.min(4096), hard).unwrap();
    }
    let c = Cluster::start_logged(
        tempfile::tempdir().unwrap(),
        &["--no-kubeconfig-merge", "--nodes", "0"],
    );
    let pid = c.pid();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let kube = runtime.block_on(async {
        let kubeconfig = kube::config::Kubeconfig::read_from(c.kubeconfig()).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(config).unwrap()
    });
    let namespaces = || {
        runtime.block_on(async {
            let api: kube::Api<k8s_openapi::api::core::v1::Namespace> =
                kube::Api::all(kube.clone());
            tokio::time::timeout(Duration::from_secs(10), api.list(&Default::default()))
                .await
                .expect("kube-rs got an answer within 10 s")
                .map(|list| list.items.len())
        })
    };
    assert_eq!(namespaces().unwrap(), 4);
    let base = open_fds(pid);
    let ca = read(c.dir.path().join("pki/ca.crt"));
    let anonymous = client_config(&ca, None, &[b"http/1.1"]);

    // 500 connections that finish the TLS handshake and never send a request, then 500 that
    // never start it.
    let mut silent = Vec::new();
    for _ in 0..500 {
        let mut tcp = TcpStream::connect(("127.0.0.1", c.port)).unwrap();
        let mut tls = rustls::ClientConnection::new(anonymous.clone(), localhost()).unwrap();
        while tls.is_handshaking() {
            tls.complete_io(&mut tcp).unwrap();
        }
        silent.push((tcp, tls));
    }
    let raw: Vec<TcpStream> = (0..500)
        .map(|_| TcpStream::connect(("127.0.0.1", c.port)).unwrap())
        .collect();
    // (A little margin: a connection of the server's own may come and go meanwhile.)
    wait_until(10, "the server holds the thousand connections", || {
        open_fds(pid) >= base + 950
    });
    // The API answers, to a new connection (kubectl) and to an open one (kube-rs).
    assert_eq!(
        c.ok(&["get", "ns", "-o", "name"]).lines().count(),
        4,
        "kubectl"
    );
    assert_eq!(namespaces().unwrap(), 4, "kube-rs");
    let share = cpu_share(pid, 3);
    assert!(
        share < 0.3,
        "orrery up used {share:.2} of a core while they idled"
    );
    drop(silent);
    drop(raw);
    wait_until(10, "the server lets go of the closed connections", || {
        open_fds(pid) < base + 50
    });

    // Out of file descriptors: the accept loop backs off and says so once, the server does not
    // spin, and it serves again once descriptors are free.
    let limit = open_fds(pid) + 100;
    let prlimit = Command::new("prlimit")
        .arg("--pid")
        .arg(pid.to_string())
        .arg(format!("--nofile={limit}:{hard}"))
        .output()
        .expect("prlimit (util-linux) is needed for this test");
    assert!(
        prlimit.status.success(),
        "{}",
        String::from_utf8_lossy(&prlimit.stderr)
    );
    // A hundred more than it may hold, and as many again waiting in the listen backlog (128:
    // beyond it, connect() itself would wait).
    let flood: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(("127.0.0.1", c.port)).unwrap())
        .collect();
    wait_until(10, "accept fails", || c.log().contains("accept failed"));
    let share = cpu_share(pid, 3);
    assert!(
        share < 0.3,
        "orrery up used {share:.2} of a core out of file descriptors"
    );
    let failures = c.log().matches("accept failed").count();
    assert_eq!(failures, 1, "one warning per burst: {}", c.log());
    drop(flood);
    wait_until(20, "kubectl is answered again", || {
        c.kubectl(&["get", "ns", "-o", "name"], None, &[])
            .status
            .success()
    });
    assert!(
        c.log().contains("accepting connections again"),
        "{}",
        c.log()
    );
}

/// Reads until the server closes the connection; how long that took.
async fn closed_after(mut stream: impl tokio::io::AsyncRead + Unpin) -> Duration {
    use tokio::io::AsyncReadExt;
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return start.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("the connection was still open after 10 s"),
        }
    }
}

/// Reads from `stream` until what arrived contains `needle` (at most 5 s).
async fn read_until(stream: &mut (impl tokio::io::AsyncRead + Unpin), needle: &str) {
    use tokio::io::AsyncReadExt;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    while !String::from_utf8_lossy(&seen).contains(needle) {
        let left = deadline.saturating_duration_since(Instant::now());
        let n = tokio::time::timeout(left, stream.read(&mut buf))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no {needle:?} within 5 s: {}",
                    String::from_utf8_lossy(&seen)
                )
            })
            .unwrap();
        assert!(
            n > 0,
            "closed before {needle:?}: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_after_the_timeouts_and_long_requests_are_not() {
    use http_body_util::BodyExt;
    use k8s_openapi::api::core::v1::Namespace;
    use orrery::https::Timeouts;
    use tokio::io::AsyncWriteExt;

    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn orrery::store::Store> = Arc::new(
        orrery::store::embedded::EmbeddedStore::open(&dir.path().join("store.redb")).unwrap(),
    );
    let api = orrery::apiserver::ApiServer::new(store, orrery::flow::Flow::new());
    api.bootstrap().await.unwrap();
    let pki = orrery::pki::Pki::load_or_create(&dir.path().join("pki")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let second = Duration::from_secs(1);
    let timeouts = Timeouts {
        tls_handshake: second,
        request_header: second,
        idle: second,
        ping_interval: second,
        ping_timeout: second,
    };
    tokio::spawn(orrery::apiserver::server::serve_with(
        listener,
        pki.server_tls().unwrap(),
        timeouts,
        api.router(),
        std::future::pending(),
    ));
    let admin = Some((pki.admin_cert.as_str(), pki.admin_key.as_str()));
    let connect = |alpn: &'static [u8]| {
        let config = client_config(&pki.ca_cert, admin, &[alpn]);
        async move {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            tokio_rustls::TlsConnector::from(config)
                .connect(localhost(), tcp)
                .await
                .unwrap()
        }
    };
    let within = |took: Duration, what: &str| {
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(6),
            "{what} closed after {took:?}"
        );
    };

    // Never starts the handshake; finishes it and sends nothing (HTTP/1.1, then HTTP/2).
    let raw = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (h1, h2) = (connect(b"http/1.1").await, connect(b"h2").await);
    let (raw, h1, h2) = tokio::join!(closed_after(raw), closed_after(h1), closed_after(h2));
    within(raw, "a connection without a TLS handshake");
    within(h1, "a silent HTTP/1.1 connection");
    // HTTP/2: no stream within the header timeout, a GOAWAY, and another timeout to go.
    within(h2, "a silent HTTP/2 connection");

    // A kept-alive HTTP/1.1 connection is closed once it has waited that long for a request.
    let mut kept = connect(b"http/1.1").await;
    kept.write_all(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    read_until(&mut kept, "gitVersion").await;
    within(closed_after(kept).await, "a kept-alive HTTP/1.1 connection");

    // Watches outlive every timeout, on HTTP/1.1 and on HTTP/2.
    let namespaces: kube::Api<Namespace> = kube::Api::all(api.client("test"));
    let create = |name: &'static str| {
        let namespaces = namespaces.clone();
        async move {
            let ns: Namespace =
                serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
            namespaces.create(&Default::default(), &ns).await.unwrap();
        }
    };
    let mut watch = connect(b"http/1.1").await;
    watch
        .write_all(b"GET /api/v1/namespaces?watch=true HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    read_until(&mut watch, "kube-system").await;
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(connect(b"h2").await),
    )
    .await
    .unwrap();
    let h2_connection = tokio::spawn(connection);
    let response = sender
        .send_request(
            http::Request::get(format!(
                "https://127.0.0.1:{port}/api/v1/namespaces?watch=true"
            ))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut h2_watch = response.into_body();
    tokio::time::sleep(3 * second).await;
    create("late").await;
    read_until(&mut watch, "\"late\"").await;
    let mut seen = String::new();
    while !seen.contains("\"late\"") {
        let frame = tokio::time::timeout(Duration::from_secs(5), h2_watch.frame())
            .await
            .expect("the HTTP/2 watch hears of it within 5 s")
            .expect("the HTTP/2 watch is still open")
            .unwrap();
        if let Ok(data) = frame.into_data() {
            seen.push_str(&String::from_utf8_lossy(&data));
        }
    }
    // Once its last stream ends, the HTTP/2 connection is idle, and closed.
    drop(h2_watch);
    let start = Instant::now();
    let _ended = tokio::time::timeout(Duration::from_secs(10), h2_connection)
        .await
        .expect("the idle HTTP/2 connection is closed within 10 s")
        .unwrap();
    within(start.elapsed(), "an idle HTTP/2 connection");
    drop(sender);
}

/// An API server over TLS in this process (embedded store, the cluster's certificates): its port
/// and the admin's TLS config for `alpn`.
async fn tls_api_server(
    dir: &Path,
) -> (
    u16,
    impl Fn(&'static [u8]) -> Arc<rustls::ClientConfig>,
    Arc<orrery::apiserver::ApiServer>,
) {
    let store: Arc<dyn orrery::store::Store> =
        Arc::new(orrery::store::embedded::EmbeddedStore::open(&dir.join("store.redb")).unwrap());
    let api = orrery::apiserver::ApiServer::new(store, orrery::flow::Flow::new());
    api.bootstrap().await.unwrap();
    let pki = orrery::pki::Pki::load_or_create(&dir.join("pki")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(orrery::apiserver::server::serve_with(
        listener,
        pki.server_tls().unwrap(),
        orrery::https::Timeouts::default(),
        api.router(),
        std::future::pending(),
    ));
    let config = move |alpn: &'static [u8]| {
        client_config(
            &pki.ca_cert,
            Some((pki.admin_cert.as_str(), pki.admin_key.as_str())),
            &[alpn],
        )
    };
    (port, config, api)
}

/// One HTTP/1.1 exchange (`Connection: close`) of raw bytes: the status and the body (at most
/// 10 s).
async fn h1_exchange(
    port: u16,
    config: Arc<rustls::ClientConfig>,
    request: &[u8],
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(localhost(), tcp)
        .await
        .unwrap();
    let exchange = async {
        // The server may answer (431) before it has read everything: a failed write is fine.
        let _ = tls.write_all(request).await;
        let mut answer = Vec::new();
        let _ = tls.read_to_end(&mut answer).await;
        answer
    };
    let answer = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("an answer within 10 s");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// What the security probes sent, and what kube-apiserver answers them: headers up to Go's
/// 1 MB `MaxHeaderBytes` served and larger ones a 431 (HTTP/1.1 and HTTP/2; a 200 kB header
/// over HTTP/2 used to end in a GOAWAY), `dryRun=Bogus` a 422 that writes nothing, a body of
/// 200,000 brackets a 400 at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_upstreams_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (port, config, _api) = tls_api_server(dir.path()).await;
    let get_with_header = |size: usize| {
        format!(
            "GET /version HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: {}\r\n\r\n",
            "a".repeat(size)
        )
        .into_bytes()
    };
    let (status, body) = h1_exchange(port, config(b"http/1.1"), &get_with_header(200_000)).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = h1_exchange(port, config(b"http/1.1"), &get_with_header(2 << 20)).await;
    assert_eq!(status, 431);

    // HTTP/2: the same limit on the header list.
    let h2 = |size: usize| {
        let config = config(b"h2");
        async move {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(localhost(), tcp)
                .await
                .unwrap();
            let (mut sender, connection) =
                hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .max_header_list_size(16 << 20)
                    .handshake(hyper_util::rt::TokioIo::new(tls))
                    .await
                    .unwrap();
            tokio::spawn(connection);
            let request = http::Request::get(format!("https://127.0.0.1:{port}/version"))
                .header("x-big", "a".repeat(size))
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap();
            tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
                .await
                .expect("an answer within 10 s")
                .map(|r| r.status().as_u16())
                .map_err(|e| format!("{e:?}"))
        }
    };
    assert_eq!(h2(200_000).await, Ok(200));
    assert_eq!(h2(1_100_000).await, Ok(431));

    let request = |method: &str, path: &str, content_type: &str, body: &[u8]| {
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        request
    };
    let configmaps = "/api/v1/namespaces/default/configmaps";
    let cm = br#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "probe"}}"#;
    let (status, body) = h1_exchange(
        port,
        config(b"http/1.1"),
        &request(
            "POST",
            &format!("{configmaps}?dryRun=Bogus"),
            "application/json",
            cm,
        ),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body.contains(r#"CreateOptions.meta.k8s.io \"\" is invalid: dryRun: Unsupported value: []string{\"Bogus\"}: supported values: \"All\""#),
        "{body}"
    );
    let (status, _) = h1_exchange(
        port,
        config(b"http/1.1"),
        &request(
            "GET",
            &format!("{configmaps}/probe"),
            "application/json",
            b"",
        ),
    )
    .await;
    assert_eq!(status, 404, "dryRun=Bogus wrote nothing");

    // 200,000 brackets as YAML (what cost libyaml 27 CPU-seconds) and as JSON.
    let deep = "[".repeat(200_000);
    for content_type in [
        "application/apply-patch+yaml",
        "application/merge-patch+json",
    ] {
        let (status, body) = h1_exchange(
            port,
            config(b"http/1.1"),
            &request(
                "PATCH",
                &format!("{configmaps}/probe?fieldManager=probe"),
                content_type,
                deep.as_bytes(),
            ),
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("exceeded max depth"), "{body}");
    }

    // Too large: a ConfigMap's data over 1 MiB (422, as ValidateConfigMap), a body over 3 MiB
    // (413, as limitedReadBody).
    let big = |size: usize| {
        format!(
            r#"{{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {{"name": "big"}}, "data": {{"k": "{}"}}}}"#,
            "x".repeat(size)
        )
    };
    let (status, body) = h1_exchange(
        port,
        config(b"http/1.1"),
        &request(
            "POST",
            configmaps,
            "application/json",
            big(2_900_000).as_bytes(),
        ),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body.contains(
            r#"ConfigMap \"big\" is invalid: []: Too long: may not be more than 1048576 bytes"#
        ),
        "{body}"
    );
    let (status, body) = h1_exchange(
        port,
        config(b"http/1.1"),
        &request(
            "POST",
            configmaps,
            "application/json",
            big(3_200_000).as_bytes(),
        ),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert!(
        body.contains("Request entity too large: limit is 3145728"),
        "{body}"
    );
}
