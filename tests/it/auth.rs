//! Who may do what, as a user sees it with the real kubectl: users from `orrery kubeconfig`,
//! RBAC refusals in upstream's words, `kubectl auth can-i` and `whoami`, impersonation, the
//! escalation check, service account tokens (TokenRequest, the pod's projected token used
//! from the host, and its end when the pod goes), and what a kubelet's credentials reach (the
//! Node authorizer's graph, NodeRestriction).

use std::path::{Path, PathBuf};

use crate::common::Cluster;

/// kubectl as the user whose kubeconfig is `config`.
fn as_user(c: &Cluster, config: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(config)
        .arg("--cache-dir")
        .arg(c.dir.path().join("kubectl-cache"))
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .expect("run kubectl")
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn user(c: &Cluster, name: &str, groups: &[&str]) -> PathBuf {
    let path = c.dir.path().join(format!("{name}.kubeconfig"));
    let mut args = vec!["kubeconfig", "--user", name, "--output"];
    let shown = path.display().to_string();
    args.push(&shown);
    for g in groups {
        args.extend(["--group", g]);
    }
    c.orrery_ok(&args);
    path
}

#[test]
fn a_new_user_is_refused_until_a_binding_lets_their_group_in_one_namespace() {
    let c = Cluster::start();
    let alice = user(&c, "alice", &["dev"]);
    let out = as_user(&c, &alice, &["auth", "whoami"]);
    assert!(stdout(&out).contains("alice"), "{out:?}");
    assert!(
        stdout(&out).contains("[dev system:authenticated]"),
        "{out:?}"
    );

    let out = as_user(&c, &alice, &["get", "pods"]);
    assert_eq!(
        stderr(&out).trim(),
        "Error from server (Forbidden): pods is forbidden: User \"alice\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
    );
    assert_eq!(
        stdout(&as_user(
            &c,
            &alice,
            &["auth", "can-i", "create", "pods", "-n", "team"]
        ))
        .trim(),
        "no"
    );

    c.ok(&["create", "namespace", "team"]);
    c.ok(&[
        "create",
        "rolebinding",
        "dev-edit",
        "--clusterrole=edit",
        "--group=dev",
        "-n",
        "team",
    ]);
    // Allowed at once: the binding is in the rules before its create answers.
    let out = as_user(
        &c,
        &alice,
        &["auth", "can-i", "create", "pods", "-n", "team"],
    );
    assert_eq!(stdout(&out).trim(), "yes", "{out:?}");
    let out = as_user(&c, &alice, &["create", "configmap", "notes", "-n", "team"]);
    assert!(out.status.success(), "{out:?}");
    // ...and only there.
    let out = as_user(&c, &alice, &["create", "configmap", "notes"]);
    assert!(stderr(&out).contains("configmaps is forbidden: User \"alice\" cannot create resource \"configmaps\" in API group \"\" in the namespace \"default\""), "{out:?}");
    let list = stdout(&as_user(
        &c,
        &alice,
        &["auth", "can-i", "--list", "-n", "team"],
    ));
    assert!(list.contains("deployments.apps"), "{list}");
    assert!(
        list.contains("selfsubjectreviews.authentication.k8s.io"),
        "{list}"
    );

    // Edit grants no RBAC: alice cannot bind roles, even to herself.
    let out = as_user(
        &c,
        &alice,
        &[
            "create",
            "rolebinding",
            "me",
            "--clusterrole=admin",
            "--user=alice",
            "-n",
            "team",
        ],
    );
    assert!(stderr(&out).contains("rolebindings.rbac.authorization.k8s.io is forbidden: User \"alice\" cannot create resource \"rolebindings\""), "{out:?}");
    // With admin she can bind what she holds, but not cluster-admin (the escalation check).
    c.ok(&[
        "create",
        "rolebinding",
        "alice-admin",
        "--clusterrole=admin",
        "--user=alice",
        "-n",
        "team",
    ]);
    let out = as_user(
        &c,
        &alice,
        &[
            "create",
            "rolebinding",
            "bob-view",
            "--clusterrole=view",
            "--user=bob",
            "-n",
            "team",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let out = as_user(
        &c,
        &alice,
        &[
            "create",
            "rolebinding",
            "bob-root",
            "--clusterrole=cluster-admin",
            "--user=bob",
            "-n",
            "team",
        ],
    );
    let err = stderr(&out);
    assert!(
        err.contains("rolebindings.rbac.authorization.k8s.io \"bob-root\" is forbidden: user \"alice\" (groups=[\"dev\" \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:"),
        "{err}"
    );

    // Impersonation: the administrator may, alice may not.
    let err = c.fails(&["get", "pods", "-n", "team", "--as", "dave"], None);
    assert!(
        err.contains("User \"dave\" cannot list resource \"pods\""),
        "{err}"
    );
    c.ok(&[
        "get",
        "pods",
        "-n",
        "team",
        "--as",
        "dave",
        "--as-group",
        "dev",
    ]);
    let out = as_user(&c, &alice, &["get", "pods", "-n", "team", "--as", "carol"]);
    assert!(stderr(&out).contains("users \"carol\" is forbidden: User \"alice\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"), "{out:?}");

    // The defaults are there from the first start.
    let roles = c.ok(&["get", "clusterroles", "-o", "name"]);
    for role in [
        "cluster-admin",
        "admin",
        "edit",
        "view",
        "system:node",
        "system:kube-scheduler",
    ] {
        assert!(
            roles.contains(&format!("clusterrole.rbac.authorization.k8s.io/{role}\n")),
            "{role}: {roles}"
        );
    }
    // view is aggregated from the roles labelled for it.
    c.eventually(
        &[
            "get",
            "clusterrole",
            "view",
            "-o",
            "jsonpath={.rules[*].resources}",
        ],
        20,
        |r| r.contains("pods"),
    );
}

/// A pod pinned to `node` whose container reads `secret` into its environment.
fn pod_using(name: &str, node: &str, secret: &str) -> String {
    format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "{name}"}},
        "spec": {{"nodeName": "{node}", "containers": [{{"name": "c", "image": "nginx:1",
          "env": [{{"name": "PASSWORD", "valueFrom": {{"secretKeyRef": {{"name": "{secret}", "key": "password"}}}}}}]}}]}}}}"#
    )
}

#[test]
fn a_kubelet_reads_only_the_secrets_its_own_pods_use() {
    let c = Cluster::with_nodes(2);
    for secret in ["mine", "theirs", "nobodys"] {
        c.ok(&[
            "create",
            "secret",
            "generic",
            secret,
            "--from-literal=password=p",
        ]);
    }
    c.apply(&pod_using("here", "node-1", "mine"));
    c.apply(&pod_using("there", "node-2", "theirs"));
    // Each kubelet read its pod's secret through the graph.
    for pod in ["here", "there"] {
        c.eventually(
            &["get", "pod", pod, "-o", "jsonpath={.status.phase}"],
            20,
            |p| p == "Running",
        );
    }

    let node = user(&c, "system:node:node-1", &["system:nodes"]);
    let out = as_user(&c, &node, &["get", "secret", "mine", "-o", "name"]);
    assert_eq!(stdout(&out), "secret/mine\n", "{out:?}");
    // A list of that one object (what a watch of it asks) is allowed too.
    let out = as_user(
        &c,
        &node,
        &[
            "get",
            "secrets",
            "--field-selector",
            "metadata.name=mine",
            "-o",
            "name",
        ],
    );
    assert_eq!(stdout(&out), "secret/mine\n", "{out:?}");
    let refused = |secret: &str| {
        format!(
            "Error from server (Forbidden): secrets \"{secret}\" is forbidden: User \"system:node:node-1\" cannot get resource \"secrets\" in API group \"\" in the namespace \"default\": no relationship found between node 'node-1' and this object"
        )
    };
    for secret in ["theirs", "nobodys"] {
        let out = as_user(&c, &node, &["get", "secret", secret]);
        assert_eq!(stderr(&out).trim(), refused(secret), "{out:?}");
    }
    let out = as_user(&c, &node, &["get", "secrets"]);
    assert_eq!(
        stderr(&out).trim(),
        "Error from server (Forbidden): secrets is forbidden: User \"system:node:node-1\" cannot list resource \"secrets\" in API group \"\" in the namespace \"default\": No Object name found",
        "{out:?}"
    );

    // NodeRestriction: a token only for a pod of its own, only its own Node, only mirror pods.
    let uid = |pod: &str| c.ok(&["get", "pod", pod, "-o", "jsonpath={.metadata.uid}"]);
    let token = |pod: &str| {
        let uid = uid(pod);
        as_user(
            &c,
            &node,
            &[
                "create",
                "token",
                "default",
                "--bound-object-kind",
                "Pod",
                "--bound-object-name",
                pod,
                "--bound-object-uid",
                &uid,
            ],
        )
    };
    let out = token("here");
    assert!(
        out.status.success() && stdout(&out).starts_with("ey"),
        "{out:?}"
    );
    let out = token("there");
    assert!(
        stderr(&out).contains("serviceaccounts \"default\" is forbidden: node requested token bound to a pod scheduled on a different node"),
        "{out:?}"
    );
    let out = as_user(&c, &node, &["create", "token", "default"]);
    assert!(
        stderr(&out).contains(
            "serviceaccounts \"default\" is forbidden: node requested token not bound to a pod"
        ),
        "{out:?}"
    );
    let out = as_user(&c, &node, &["label", "node", "node-2", "taken=yes"]);
    assert!(
        stderr(&out).contains("nodes \"node-2\" is forbidden: node \"node-1\" is not allowed to modify node \"node-2\""),
        "{out:?}"
    );
    let out = as_user(&c, &node, &["run", "sneaky", "--image=nginx:1"]);
    assert!(
        stderr(&out).contains("pods \"sneaky\" is forbidden: pod does not have \"kubernetes.io/config.mirror\" annotation, node \"node-1\" can only create mirror pods"),
        "{out:?}"
    );

    // Once the pod is gone, so is the way to its secret.
    c.ok(&["delete", "pod", "here", "--wait=true"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let out = as_user(&c, &node, &["get", "secret", "mine"]);
        if stderr(&out).trim() == refused("mine") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{out:?}");
    }
}

/// The files under `dir` named `name`.
fn find(dir: &Path, name: &str, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() && !path.is_symlink() {
            find(&path, name, found);
        } else if path.file_name().is_some_and(|n| n == name) {
            found.push(path);
        }
    }
}

fn curl_whoami(c: &Cluster, token: &str) -> serde_json::Value {
    let out = std::process::Command::new("curl")
        .args([
            "-sk",
            "-X",
            "POST",
            "-H",
            &format!("Authorization: Bearer {token}"),
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#,
            &format!(
                "https://127.0.0.1:{}/apis/authentication.k8s.io/v1/selfsubjectreviews",
                c.port
            ),
        ])
        .output()
        .expect("curl");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{out:?}"))
}

#[test]
fn service_account_tokens_authenticate_as_the_account_until_their_pod_goes() {
    let c = Cluster::with_nodes(1);
    // kubectl create token: a token for the account, which RBAC then judges.
    let token = c.ok(&["create", "token", "default", "--duration=10m"]);
    let token = token.trim();
    let me = curl_whoami(&c, token);
    assert_eq!(
        me["status"]["userInfo"]["username"], "system:serviceaccount:default:default",
        "{me}"
    );
    let out = c.kubectl(
        &[
            "--token",
            token,
            "--kubeconfig",
            "/dev/null",
            "--server",
            &format!("https://127.0.0.1:{}", c.port),
            "--insecure-skip-tls-verify",
            "get",
            "pods",
        ],
        None,
        &[],
    );
    assert!(stderr(&out).contains("pods is forbidden: User \"system:serviceaccount:default:default\" cannot list resource \"pods\""), "{out:?}");
    // A token too short-lived is refused in upstream's words.
    let err = c.fails(&["create", "token", "default", "--duration=1m"], None);
    assert!(
        err.contains("may not specify a duration less than 10 minutes"),
        "{err}"
    );
    // TokenReview says the same.
    let review = c.ok_with(
        &["create", "-o", "json", "-f", "-"],
        Some(&format!(
            r#"{{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{{"token":"{token}"}}}}"#
        )),
    );
    let review: serde_json::Value = serde_json::from_str(&review).unwrap();
    assert_eq!(review["status"]["authenticated"], true, "{review}");
    assert_eq!(
        review["status"]["user"]["username"],
        "system:serviceaccount:default:default"
    );

    // A pod gets the projected token, CA and namespace.
    c.ok(&["run", "p", "--image=orrery/hello"]);
    c.eventually(
        &["get", "pod", "p", "-o", "jsonpath={.status.phase}"],
        30,
        |p| p == "Running",
    );
    let volumes = c.ok(&["get", "pod", "p", "-o", "jsonpath={.spec.volumes[*].name} {.spec.containers[0].volumeMounts[*].mountPath} {.spec.serviceAccountName}"]);
    assert!(volumes.starts_with("kube-api-access-"), "{volumes}");
    assert!(
        volumes.contains("/var/run/secrets/kubernetes.io/serviceaccount default"),
        "{volumes}"
    );
    let uid = c.ok(&["get", "pod", "p", "-o", "jsonpath={.metadata.uid}"]);
    let mut tokens = Vec::new();
    find(c.dir.path(), "token", &mut tokens);
    let file = tokens
        .iter()
        .find(|p| {
            p.to_string_lossy().contains(&uid)
                && p.to_string_lossy().contains("kubernetes.io~projected")
        })
        .unwrap_or_else(|| panic!("no token of pod {uid} in {tokens:?}"));
    let dir = file.parent().unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.join("namespace")).unwrap(),
        "default"
    );
    assert!(
        std::fs::read_to_string(dir.join("ca.crt"))
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );
    let pod_token = std::fs::read_to_string(file).unwrap();
    let me = curl_whoami(&c, &pod_token);
    assert_eq!(
        me["status"]["userInfo"]["username"], "system:serviceaccount:default:default",
        "{me}"
    );
    assert_eq!(
        me["status"]["userInfo"]["extra"]["authentication.kubernetes.io/pod-name"][0], "p",
        "{me}"
    );
    // Bound to the pod: once it is gone, the token is refused.
    c.ok(&["delete", "pod", "p", "--wait=true"]);
    let gone = curl_whoami(&c, &pod_token);
    assert_eq!(
        (gone["code"].as_i64(), gone["reason"].as_str()),
        (Some(401), Some("Unauthorized")),
        "{gone}"
    );
}

/// A POST refused before its body is read is answered, not reset: curl (7.88) reports an
/// HTTP/2 stream ended with RST_STREAM(NO_ERROR) before it sent its body as error 92, which
/// made a 401 about one time in sixteen a failed request.
#[test]
fn a_refused_post_is_answered_over_http2_every_time() {
    let c = Cluster::with_nodes(1);
    for attempt in 0..200 {
        let me = curl_whoami(&c, "not.a.token");
        assert_eq!(
            (me["code"].as_i64(), me["reason"].as_str()),
            (Some(401), Some("Unauthorized")),
            "attempt {attempt}: {me}"
        );
    }
}

/// A pod that runs `/orrery whoami` (the `kube` crate's in-cluster client) once.
fn whoami_pod(name: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: whoami
    image: orrery/hello
    command: [/orrery, whoami]
"#
    )
}

/// Waits for `pod` to finish and returns its log; fails with the log if it failed.
fn finished_log(c: &Cluster, pod: &str) -> String {
    let phase = c.eventually(
        &["get", "pod", pod, "-o", "jsonpath={.status.phase}"],
        90,
        |p| p == "Succeeded" || p == "Failed",
    );
    let log = c.ok(&["logs", pod]);
    assert_eq!(phase, "Succeeded", "{pod} failed; its log:\n{log}");
    log
}

/// An ordinary client library in a real container (the `kube` crate's in-cluster configuration:
/// `KUBERNETES_SERVICE_HOST`, the projected token and CA) reaches the API server through the
/// `kubernetes` Service, whose endpoint is the control-plane node's address on the pod network;
/// it is its service account, and RBAC judges it as one.
#[test]
fn an_in_cluster_client_in_a_real_container_reaches_the_api_as_its_service_account() {
    let Some(c) = Cluster::real("auth-incluster", 1, "10.206.0.0/16") else {
        return;
    };
    c.eventually(
        &[
            "get",
            "endpoints",
            "kubernetes",
            "-o",
            "jsonpath={.subsets[0].addresses[0].ip}:{.subsets[0].ports[0].port}",
        ],
        30,
        |endpoint| endpoint == format!("10.206.0.1:{}", c.port),
    );
    c.apply(&whoami_pod("whoami-1"));
    let log = finished_log(&c, "whoami-1");
    let account = "system:serviceaccount:default:default";
    assert!(log.contains(&format!("user: {account}\n")), "{log}");
    assert!(
        log.contains(
            "groups: system:serviceaccounts,system:serviceaccounts:default,system:authenticated\n"
        ),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "pods in default: pods is forbidden: User \"{account}\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\"\n"
        )),
        "{log}"
    );
    // Once a binding lets the account view the namespace, the same client lists its pods.
    c.ok(&[
        "create",
        "rolebinding",
        "default-view",
        "--clusterrole=view",
        "--serviceaccount=default:default",
    ]);
    c.apply(&whoami_pod("whoami-2"));
    let log = finished_log(&c, "whoami-2");
    assert!(log.contains("pods in default: 2\n"), "{log}");
}
