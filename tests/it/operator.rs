//! The sample operator end to end: `manifests/website-crd.yaml` served, `orrery operator
//! website` (an ordinary API client, run from the host with the cluster's kubeconfig, or in a
//! pod from `manifests/website-operator.yaml`) turning `manifests/website.yaml` into an owned
//! ConfigMap, Deployment and Service, following scales, page changes and deleted children,
//! writing the Website's status and Events, and the garbage collector deleting the children
//! with the Website.

use crate::common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Cluster, rows, try_http_get};

fn manifest(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("manifests")
        .join(name)
        .display()
        .to_string()
}

/// `orrery operator website --kubeconfig <the cluster's>` as a child process, its output in a
/// file (printed if the test fails), stopped with SIGTERM as Ctrl-C would.
struct Operator {
    child: Child,
    log: PathBuf,
}

impl Operator {
    fn start(cluster: &Cluster) -> Operator {
        let log = cluster.dir.path().join("operator.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_orrery"))
            .args(["operator", "website", "--kubeconfig"])
            .arg(cluster.kubeconfig())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .expect("start orrery operator website");
        Operator { child, log }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then the exit status within 10 s (killed after that).
    #[allow(clippy::disallowed_methods)] // a plain test thread, not a tokio worker
    fn stop(&mut self) -> Option<std::process::ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status);
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("orrery operator website said:\n{}", self.output());
        }
    }
}

/// The CRD applied and Established.
fn install_crd(c: &Cluster) {
    c.ok(&["apply", "-f", &manifest("website-crd.yaml")]);
    c.ok(&[
        "wait",
        "--for",
        "condition=Established",
        "--timeout",
        "60s",
        "crd/websites.samples.orrery.dev",
    ]);
}

/// `kind/name`'s controller owner reference as `Kind/name/uid/controller`.
fn owner(c: &Cluster, kind: &str, name: &str) -> String {
    let out = c.kubectl(
        &[
            "get",
            kind,
            name,
            "-o",
            "jsonpath={range .metadata.ownerReferences[*]}{.kind}/{.name}/{.uid}/{.controller}{end}",
        ],
        None,
        &[],
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const READY: &str = "jsonpath={.status.conditions[?(@.type==\"Ready\")].status} {.status.readyReplicas}/{.status.replicas} {.status.observedGeneration}";

#[test]
fn the_operator_without_its_definition_says_what_to_apply() {
    let c = Cluster::start();
    let out = Command::new(env!("CARGO_BIN_EXE_orrery"))
        .args(["operator", "website", "--kubeconfig"])
        .arg(c.kubeconfig())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the API server does not serve websites.samples.orrery.dev")
            && stderr.contains("kubectl apply -f manifests/website-crd.yaml"),
        "{stderr}"
    );
    let missing = Command::new(env!("CARGO_BIN_EXE_orrery"))
        .args([
            "operator",
            "website",
            "--kubeconfig",
            "/nonexistent/kubeconfig",
        ])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains("kubeconfig /nonexistent/kubeconfig:"),
        "{stderr}"
    );
    // What the CRD manifest holds is what the operator's type generates.
    let printed = c.orrery_ok(&["operator", "website", "crd"]);
    assert!(
        printed.contains("name: websites.samples.orrery.dev"),
        "{printed}"
    );
}

#[test]
fn a_website_becomes_an_owned_configmap_deployment_and_service() {
    let c = Cluster::with_nodes(1);
    install_crd(&c);
    // The schema is enforced before any operator runs: the required page, the enum.
    let err = c.fails(
        &["apply", "-f", "-"],
        Some("apiVersion: samples.orrery.dev/v1\nkind: Website\nmetadata:\n  name: empty\nspec:\n  replicas: 1\n"),
    );
    assert!(err.contains("spec.page: Required value"), "{err}");
    let err = c.fails(
        &["apply", "-f", "-"],
        Some("apiVersion: samples.orrery.dev/v1\nkind: Website\nmetadata:\n  name: lb\nspec:\n  page: x\n  exposure: LoadBalancer\n"),
    );
    assert!(
        err.contains(
            "spec.exposure: Unsupported value: \"LoadBalancer\": supported values: \"ClusterIP\", \"NodePort\""
        ),
        "{err}"
    );

    let operator = Operator::start(&c);
    c.ok(&["apply", "-f", &manifest("website.yaml")]);
    // The schema's default is stored.
    assert_eq!(
        c.ok(&[
            "get",
            "website",
            "hello-site",
            "-o",
            "jsonpath={.spec.replicas} {.spec.exposure}"
        ]),
        "1 ClusterIP"
    );
    let uid = c.ok(&[
        "get",
        "website",
        "hello-site",
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    let owned = format!("Website/hello-site/{uid}/true");
    for (kind, name) in [
        ("configmap", "hello-site-page"),
        ("deployment", "hello-site"),
        ("service", "hello-site"),
    ] {
        c.eventually(&["get", kind, name, "-o", "name"], 30, |_| true);
        assert_eq!(owner(&c, kind, name), owned, "{kind}/{name}");
    }
    assert_eq!(
        c.ok(&[
            "get",
            "configmap",
            "hello-site-page",
            "-o",
            "jsonpath={.data.page\\.txt}"
        ]),
        "Welcome to hello-site, served by the website operator.\n"
    );
    // The status follows the Deployment: Ready once its one pod is.
    c.eventually(&["get", "website", "hello-site", "-o", READY], 60, |s| {
        s == "True 1/1 1"
    });
    // Its requests are named on the flow by its user agent, as the README's dashboard shows
    // them: the page's ConfigMap was written by `website-operator` alone (the kubelet and
    // kubectl only read it), and nothing asked as an unnamed `client`.
    let flow: Vec<serde_json::Value> = c
        .ok(&["get", "--raw", "/orrery/v1/flow?since=0&follow=false"])
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|hop: &serde_json::Value| hop["to"] == "apiserver")
        .collect();
    let page_writers: Vec<&str> = flow
        .iter()
        .filter(|hop| hop["kind"] == "ConfigMap" && hop["name"] == "hello-site-page")
        .filter(|hop| !matches!(hop["verb"].as_str(), Some("GET" | "LIST" | "WATCH")))
        .filter_map(|hop| hop["from"].as_str())
        .collect();
    assert!(
        !page_writers.is_empty(),
        "no request for the page's ConfigMap"
    );
    assert!(
        page_writers.iter().all(|from| *from == "website-operator"),
        "{page_writers:?}"
    );
    let unnamed = flow.iter().filter(|hop| hop["from"] == "client").count();
    assert_eq!(unnamed, 0, "requests without a user agent on the flow");
    // The printer columns, by name and short name.
    let table = rows(&c.ok(&["get", "websites"]));
    assert_eq!(table[0], ["NAME", "REPLICAS", "READY", "AGE"], "{table:?}");
    assert_eq!(table[1][..3], ["hello-site", "1", "1"], "{table:?}");
    let wide = rows(&c.ok(&["get", "web", "-o", "wide"]));
    assert_eq!(
        wide[0],
        ["NAME", "REPLICAS", "READY", "EXPOSURE", "AGE"],
        "{wide:?}"
    );

    // kubectl scale goes through the scale subresource to spec.replicas, and on to the
    // Deployment.
    c.ok(&["scale", "website/hello-site", "--replicas=2"]);
    c.eventually(
        &[
            "get",
            "deployment",
            "hello-site",
            "-o",
            "jsonpath={.spec.replicas}",
        ],
        30,
        |r| r == "2",
    );
    c.eventually(&["get", "website", "hello-site", "-o", READY], 60, |s| {
        s == "True 2/2 2"
    });
    assert_eq!(
        c.ok(&[
            "get",
            "website",
            "hello-site",
            "-o",
            "jsonpath={.status.selector}"
        ]),
        "app.kubernetes.io/instance=hello-site,app.kubernetes.io/name=website"
    );

    // A new page: the ConfigMap follows, and the pod template's hash rolls the Deployment.
    let hash = |c: &Cluster| {
        c.ok(&[
            "get",
            "deployment",
            "hello-site",
            "-o",
            "jsonpath={.spec.template.metadata.annotations.samples\\.orrery\\.dev/page-sha256}",
        ])
    };
    let first = hash(&c);
    assert_eq!(first.len(), 16, "{first}");
    c.ok(&[
        "patch",
        "website",
        "hello-site",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"page":"Back soon."}}"#,
    ]);
    c.eventually(
        &[
            "get",
            "configmap",
            "hello-site-page",
            "-o",
            "jsonpath={.data.page\\.txt}",
        ],
        30,
        |p| p == "Back soon.",
    );
    assert_ne!(hash(&c), first);
    c.eventually(&["get", "website", "hello-site", "-o", READY], 60, |s| {
        s == "True 2/2 3"
    });

    // A deleted child is made again.
    let service_uid = |c: &Cluster| {
        c.kubectl(
            &[
                "get",
                "service",
                "hello-site",
                "-o",
                "jsonpath={.metadata.uid}",
            ],
            None,
            &[],
        )
    };
    let before = String::from_utf8(service_uid(&c).stdout).unwrap();
    c.ok(&["delete", "service", "hello-site"]);
    c.ok(&["delete", "configmap", "hello-site-page"]);
    c.eventually(
        &[
            "get",
            "service",
            "hello-site",
            "-o",
            "jsonpath={.metadata.uid}",
        ],
        30,
        |now| !now.is_empty() && now != before,
    );
    assert_eq!(owner(&c, "service", "hello-site"), owned);
    c.eventually(
        &[
            "get",
            "configmap",
            "hello-site-page",
            "-o",
            "jsonpath={.data.page\\.txt}",
        ],
        30,
        |p| p == "Back soon.",
    );

    // The operator's Events on the Website.
    c.eventually(
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.kind=Website,involvedObject.name=hello-site",
            "-o",
            "jsonpath={.items[*].reason}",
        ],
        30,
        |reasons| reasons.contains("Applied") && reasons.contains("Ready"),
    );

    // Deleting the Website deletes its children: the garbage collector follows the owner
    // references.
    c.ok(&["delete", "website", "hello-site"]);
    c.eventually(
        &[
            "get",
            "configmap,deployment,service",
            "-l",
            "app.kubernetes.io/instance=hello-site",
            "-o",
            "name",
        ],
        60,
        |left| left.trim().is_empty(),
    );
    let log = operator.output();
    assert!(
        log.contains("website-operator: reconciled website default/hello-site"),
        "{log}"
    );
}

#[test]
#[allow(clippy::disallowed_methods)] // a plain test thread, not a tokio worker
fn the_operator_runs_in_cluster_with_only_its_role() {
    let Some(c) = Cluster::real("operator", 1, "10.219.0.0/16") else {
        return;
    };
    install_crd(&c);
    c.ok(&["apply", "-f", &manifest("website-operator.yaml")]);
    c.ok(&["apply", "-f", &manifest("website.yaml")]);
    c.eventually(&["get", "website", "hello-site", "-o", READY], 120, |s| {
        s == "True 1/1 1"
    });
    // It acted as its service account, allowed by its ClusterRole.
    let account = "system:serviceaccount:website-operator:website-operator";
    c.eventually(
        &[
            "get",
            "deployment",
            "hello-site",
            "-o",
            "jsonpath={.metadata.managedFields[?(@.manager==\"website-operator\")].operation}",
        ],
        10,
        |op| op == "Apply",
    );
    for (verb, resource, subresource, allowed) in [
        ("patch", "websites.samples.orrery.dev", "status", "yes"),
        ("patch", "websites.samples.orrery.dev", "", "no"),
        ("create", "deployments.apps", "", "yes"),
        ("delete", "deployments.apps", "", "no"),
        ("get", "secrets", "", "no"),
    ] {
        let out = c.kubectl(
            &[
                "auth",
                "can-i",
                verb,
                resource,
                &format!("--subresource={subresource}"),
                "-A",
                "--as",
                account,
            ],
            None,
            &[],
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            allowed,
            "{verb} {resource} {subresource}"
        );
    }
    let logs = c.ok(&["logs", "-n", "website-operator", "deploy/website-operator"]);
    assert!(
        logs.contains("website-operator: reconciled website default/hello-site"),
        "{logs}"
    );
    // The pods answer with the page, then their greeting.
    let ip = c.ok(&[
        "get",
        "pods",
        "-l",
        "app.kubernetes.io/instance=hello-site",
        "-o",
        "jsonpath={.items[0].status.podIP}",
    ]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = try_http_get(&format!("{ip}:8080")).unwrap_or_else(|e| e);
        if answer.contains("\r\n\r\nWelcome to hello-site, served by the website operator.\nHello from hello-site-") {
            break;
        }
        assert!(Instant::now() < deadline, "{answer}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
