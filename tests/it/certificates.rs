//! CertificateSigningRequests end to end with the real kubectl and openssl: a request made
//! with openssl, approved with `kubectl certificate approve`, signed by the built-in
//! `kubernetes.io/kube-apiserver-client` signer for the hour it asked for, and the certificate
//! then used as a kubeconfig user; a denied request is never signed, one for other usages
//! fails, approving needs `approve` on the signer, and no one gets a `system:masters`
//! certificate this way.

use std::path::Path;
use std::process::Command;

use base64::Engine;

use crate::common::{Cluster, rows};

/// A new P-256 key and a request for `subject` in `dir`: (key path, request PEM).
fn request(dir: &Path, name: &str, subject: &str) -> (std::path::PathBuf, String) {
    let key = dir.join(format!("{name}.key"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            subject,
            "-keyout",
        ])
        .arg(&key)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl req: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (key, String::from_utf8(out.stdout).unwrap())
}

fn manifest(name: &str, pem: &str, usages: &str) -> String {
    let request = base64::engine::general_purpose::STANDARD.encode(pem);
    format!(
        "apiVersion: certificates.k8s.io/v1
kind: CertificateSigningRequest
metadata:
  name: {name}
spec:
  request: {request}
  signerName: kubernetes.io/kube-apiserver-client
  expirationSeconds: 3600
  usages: {usages}
"
    )
}

/// kubectl with another kubeconfig.
fn kubectl_as(kubeconfig: &Path, args: &[&str]) -> std::process::Output {
    Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .expect("run kubectl")
}

fn openssl_x509(cert: &Path, args: &[&str]) -> std::process::Output {
    Command::new("openssl")
        .args(["x509", "-noout", "-in"])
        .arg(cert)
        .args(args)
        .output()
        .expect("run openssl")
}

#[test]
fn an_approved_request_is_signed_and_its_certificate_authenticates() {
    let cluster = Cluster::with_nodes(0);
    let dir = tempfile::tempdir().unwrap();
    let (key, pem) = request(dir.path(), "carol", "/CN=carol/O=qa");
    let (_, dave) = request(dir.path(), "dave", "/CN=dave/O=qa");
    cluster.ok_with(
        &["create", "-f", "-"],
        Some(&manifest("carol", &pem, "[client auth]")),
    );
    cluster.ok_with(
        &["create", "-f", "-"],
        Some(&manifest("dave", &dave, "[digital signature, client auth]")),
    );

    // Pending, requested by whoever created it, for an hour.
    let table = rows(&cluster.ok(&["get", "csr", "carol"]));
    assert_eq!(
        table[0],
        [
            "NAME",
            "AGE",
            "SIGNERNAME",
            "REQUESTOR",
            "REQUESTEDDURATION",
            "CONDITION"
        ]
    );
    assert_eq!(table[1][0], "carol");
    assert_eq!(
        table[1][2..],
        [
            "kubernetes.io/kube-apiserver-client",
            "kubernetes-admin",
            "60m",
            "Pending"
        ]
    );

    // Denied before carol is approved: the signer's one worker sees it first, and never signs it.
    cluster.ok(&["certificate", "deny", "dave"]);
    cluster.ok(&["certificate", "approve", "carol"]);
    let issued = cluster.eventually(
        &[
            "get",
            "csr",
            "carol",
            "-o",
            "jsonpath={.status.certificate}",
        ],
        30,
        |c| !c.is_empty(),
    );
    let table = rows(&cluster.ok(&["get", "csr"]));
    let condition = |name: &str| {
        table
            .iter()
            .find(|r| r[0] == name)
            .map(|r| r[5].clone())
            .unwrap()
    };
    assert_eq!(condition("carol"), "Approved,Issued");
    assert_eq!(condition("dave"), "Denied");
    assert_eq!(
        cluster.ok(&["get", "csr", "dave", "-o", "jsonpath={.status.certificate}"]),
        ""
    );
    let reason = cluster.ok(&[
        "get",
        "csr",
        "carol",
        "-o",
        "jsonpath={.status.conditions[0].type}/{.status.conditions[0].reason}",
    ]);
    assert_eq!(reason, "Approved/KubectlApprove");

    // The certificate names carol in qa, and ends in about an hour.
    let cert = dir.path().join("carol.crt");
    std::fs::write(
        &cert,
        base64::engine::general_purpose::STANDARD
            .decode(issued.trim())
            .unwrap(),
    )
    .unwrap();
    let subject = openssl_x509(&cert, &["-subject", "-nameopt", "RFC2253"]);
    assert_eq!(
        String::from_utf8_lossy(&subject.stdout).trim(),
        "subject=O=qa,CN=carol"
    );
    let end = openssl_x509(&cert, &["-enddate"]);
    let end = String::from_utf8_lossy(&end.stdout).into_owned();
    assert!(
        openssl_x509(&cert, &["-checkend", "3300"]).status.success(),
        "valid for more than 55 minutes: {end}"
    );
    assert!(
        !openssl_x509(&cert, &["-checkend", "3900"]).status.success(),
        "valid for less than 65 minutes: {end}"
    );

    // A kubeconfig with it: the API server knows carol, in qa.
    let kubeconfig = dir.path().join("carol.kubeconfig");
    std::fs::copy(cluster.kubeconfig(), &kubeconfig).unwrap();
    let cert_arg = format!("--client-certificate={}", cert.display());
    let key_arg = format!("--client-key={}", key.display());
    for args in [
        &[
            "config",
            "set-credentials",
            "carol",
            &cert_arg,
            &key_arg,
            "--embed-certs",
        ][..],
        &["config", "set-context", "--current", "--user", "carol"][..],
    ] {
        let out = kubectl_as(&kubeconfig, args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let whoami = kubectl_as(
        &kubeconfig,
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username} {.status.userInfo.groups}",
        ],
    );
    assert!(
        whoami.status.success(),
        "{}",
        String::from_utf8_lossy(&whoami.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&whoami.stdout),
        r#"carol ["qa","system:authenticated"]"#
    );

    // A request the signer refuses fails, in its words.
    let (_, frank) = request(dir.path(), "frank", "/CN=frank");
    cluster.ok_with(
        &["create", "-f", "-"],
        Some(&manifest("frank", &frank, "[client auth, server auth]")),
    );
    cluster.ok(&["certificate", "approve", "frank"]);
    let failed = cluster.eventually(
        &[
            "get",
            "csr",
            "frank",
            "-o",
            "jsonpath={.status.conditions[1].type}/{.status.conditions[1].reason}: {.status.conditions[1].message}",
        ],
        30,
        |c| c.starts_with("Failed"),
    );
    assert_eq!(
        failed,
        "Failed/SignerValidationFailure: invalid usage for client certificate: server auth"
    );
    let table = rows(&cluster.ok(&["get", "csr", "frank"]));
    assert_eq!(table[1][5], "Approved,Failed");

    // Approving needs `approve` on the signer, not only the approval subresource.
    cluster.apply(
        "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: csr-approval
rules:
- apiGroups: [certificates.k8s.io]
  resources: [certificatesigningrequests]
  verbs: [get, list]
- apiGroups: [certificates.k8s.io]
  resources: [certificatesigningrequests/approval]
  verbs: [update]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: csr-approval
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: csr-approval}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: qa}
",
    );
    let (_, erin) = request(dir.path(), "erin", "/CN=erin");
    cluster.ok_with(
        &["create", "-f", "-"],
        Some(&manifest("erin", &erin, "[client auth]")),
    );
    let refused = kubectl_as(&kubeconfig, &["certificate", "approve", "erin"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains(
            r#"certificatesigningrequests.certificates.k8s.io "erin" is forbidden: user not permitted to approve requests with signerName "kubernetes.io/kube-apiserver-client""#
        ),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // No one is made a cluster administrator by the client signer.
    let (_, admin) = request(dir.path(), "root", "/CN=root/O=system:masters");
    let refused = cluster.fails(
        &["create", "-f", "-"],
        Some(&manifest("root", &admin, "[client auth]")),
    );
    assert!(
        refused.contains("use of kubernetes.io/kube-apiserver-client signer with system:masters group is not allowed"),
        "{refused}"
    );
}

#[test]
fn requests_are_validated_in_upstreams_words() {
    let cluster = Cluster::with_nodes(0);
    let bad = "apiVersion: certificates.k8s.io/v1
kind: CertificateSigningRequest
metadata:
  name: bad
spec:
  request: LS0=
  signerName: example
  expirationSeconds: 60
  usages: []
";
    let refused = cluster.fails(&["create", "-f", "-"], Some(bad));
    for expected in [
        "spec.request: Invalid value: []byte{0x2d, 0x2d}: PEM block type must be CERTIFICATE REQUEST",
        "spec.usages: Required value: usages must be provided",
        "spec.signerName: Invalid value: \"example\": must be a fully qualified domain and path of the form 'example.com/signer-name'",
        "spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 600 seconds (10 minutes)",
    ] {
        assert!(refused.contains(expected), "{expected}\nnot in {refused}");
    }
}
