//! Services as users use them, on real containers with the real kubectl: names through the
//! cluster's DNS, ClusterIPs spread over the ready pods by each node's kube-proxy (nftables),
//! NodePorts on every node's address, LoadBalancer addresses and Ingress (host, path and TLS)
//! from the host, a stopped kube-proxy leaving only its node stale, and nothing left after
//! `orrery down`. And on the simulated runtime: the rules computed and the DNS answers.

use crate::common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use common::registry::Registry;
use common::{Cluster, http_request, try_http_get};

/// A deployment of `replicas` hello pods named `name`, with its ClusterIP Service on port 80.
fn hello(name: &str, replicas: u32, service_type: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
      - name: hello
        image: orrery/hello
        ports: [{{name: http, containerPort: 8080}}]
        readinessProbe:
          httpGet: {{path: /, port: http}}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  type: {service_type}
  selector: {{app: {name}}}
  ports: [{{name: http, port: 80, targetPort: http}}]
"#
    )
}

/// A client pod, optionally pinned to a node: `orrery/hello`, whose `/orrery fetch` resolves
/// names as any glibc program does (the static busybox's wget cannot: it would need glibc's NSS
/// libraries in the image), or a busybox that sleeps, for `nslookup`.
fn client(name: &str, image: &str, node: Option<&str>) -> String {
    let pin = node
        .map(|n| format!("  nodeName: {n}\n"))
        .unwrap_or_default();
    let command = match image.starts_with("orrery/") {
        true => "",
        false => "    command: [sleep, \"3600\"]\n",
    };
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
{pin}  terminationGracePeriodSeconds: 1
  containers:
  - name: sh
    image: {image}
{command}"#
    )
}

fn available(c: &Cluster, deployment: &str, replicas: u32) {
    c.eventually(
        &[
            "get",
            "deploy",
            deployment,
            "-o",
            "jsonpath={.status.availableReplicas}",
        ],
        90,
        |n| n == replicas.to_string(),
    );
}

fn running(c: &Cluster, pod: &str) {
    c.eventually(
        &["get", "pod", pod, "-o", "jsonpath={.status.phase}"],
        90,
        |p| p == "Running",
    );
}

/// `kubectl exec pod -- sh -c script` (`/orrery ...` as it is, in a built-in image, which has
/// no shell): its exit status, stdout and stderr.
fn sh(c: &Cluster, pod: &str, script: &str) -> (bool, String, String) {
    let words: Vec<&str> = script.split_whitespace().collect();
    let command: Vec<&str> = match script.starts_with("/orrery ") {
        true => words,
        false => vec!["sh", "-c", script],
    };
    let args: Vec<&str> = ["exec", pod, "--"].into_iter().chain(command).collect();
    let out = c.kubectl(&args, None, &[]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `script` in `pod` until it succeeds with output satisfying `done` (at most `seconds`).
#[allow(clippy::disallowed_methods)] // a plain test thread, not a tokio worker
fn sh_eventually(
    c: &Cluster,
    pod: &str,
    script: &str,
    seconds: u64,
    done: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        let (ok, out, err) = sh(c, pod, script);
        if ok && done(&out) {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "{script:?} in {pod} did not get there within {seconds} s: {out}{err}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The pod names in hello's answers (`Hello from <pod> in ...`).
fn answered_by(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("Hello from "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

fn node_ips(c: &Cluster) -> Vec<(String, String)> {
    let out = c.ok(&[
        "get",
        "nodes",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.status.addresses[?(@.type==\"InternalIP\")].address}{\"\\n\"}{end}",
    ]);
    out.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(n, ip)| (n.to_owned(), ip.to_owned()))
        .collect()
}

/// A free TCP port on 127.0.0.1.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
#[allow(clippy::disallowed_methods)] // a plain test thread, not a tokio worker
fn services_route_by_name_spread_over_ready_pods_and_refuse_without_endpoints() {
    let Some(c) = Cluster::real("svc-route", 2, "10.241.0.0/16") else {
        return;
    };
    let registry = Registry::start();
    let busybox = registry.push_busybox("1");
    c.apply(&hello("web", 3, "ClusterIP"));
    c.apply(&client("client", "orrery/hello", None));
    c.apply(&client("toolbox", &busybox, None));
    c.apply(
        r#"apiVersion: v1
kind: Service
metadata: {name: empty}
spec:
  selector: {app: nothing}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{name: pg, port: 5432, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: db-0, labels: {app: db}}
spec:
  hostname: db-0
  subdomain: db
  containers:
  - name: hello
    image: orrery/hello
    ports: [{containerPort: 8080}]
"#,
    );
    available(&c, "web", 3);
    running(&c, "client");
    running(&c, "toolbox");
    running(&c, "db-0");

    // By name, short and fully qualified: resolv.conf searches the namespace, kube-dns
    // answers with the ClusterIP, and kube-proxy takes the connection to a pod.
    let resolv = sh(&c, "toolbox", "cat /etc/resolv.conf").1;
    assert!(resolv.contains("nameserver 10.96.0.10"), "{resolv}");
    assert!(
        resolv.contains("search default.svc.cluster.local svc.cluster.local cluster.local"),
        "{resolv}"
    );
    assert!(resolv.contains("options ndots:5"), "{resolv}");
    for name in ["web", "web.default", "web.default.svc.cluster.local"] {
        let out = sh_eventually(
            &c,
            "client",
            &format!("/orrery fetch http://{name}/"),
            30,
            |out| out.starts_with("Hello from web-"),
        );
        assert!(out.contains(" in default at 10.241."), "{out}");
    }

    // Spread over the ready pods.
    let many = sh(&c, "client", "/orrery fetch http://web/ 30");
    let pods = answered_by(&many.1);
    assert!(
        pods.len() >= 2,
        "30 requests reached only {pods:?}: {many:?}"
    );

    // A deleted pod stops receiving: once its endpoint is gone or not ready, it never answers.
    let victim = pods.iter().next().unwrap().clone();
    c.ok(&["delete", "pod", &victim, "--wait=false"]);
    c.eventually(
        &[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
            "-o",
            "jsonpath={range .items[*].endpoints[?(@.conditions.ready==true)]}{.targetRef.name} {end}",
        ],
        30,
        |out| !out.contains(&victim) && out.split_whitespace().count() >= 2,
    );
    // The rules follow within a moment; then 20 requests never reach it.
    std::thread::sleep(Duration::from_millis(500));
    let after = sh(&c, "client", "/orrery fetch http://web/ 20");
    let reached = answered_by(&after.1);
    assert!(
        !reached.contains(&victim),
        "{victim} still answers: {after:?}"
    );
    assert!(!reached.is_empty(), "{after:?}");

    // A Service without endpoints refuses at once, not after a timeout.
    let began = Instant::now();
    let (ok, _, err) = sh(&c, "client", "/orrery fetch http://empty/");
    assert!(!ok);
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "took {:?}",
        began.elapsed()
    );
    assert!(err.to_lowercase().contains("refused"), "{err}");

    // Headless: the name is the ready pods; the pod's hostname.subdomain record too.
    let db_ip = c.ok(&["get", "pod", "db-0", "-o", "jsonpath={.status.podIP}"]);
    let out = sh_eventually(
        &c,
        "toolbox",
        "nslookup db-0.db.default.svc.cluster.local",
        30,
        |out| out.contains(&db_ip),
    );
    assert!(out.contains("db-0.db.default.svc.cluster.local"), "{out}");
    sh_eventually(
        &c,
        "toolbox",
        "nslookup db.default.svc.cluster.local",
        30,
        |out| out.contains(&db_ip),
    );

    // From the host, dig through the kube-dns ClusterIP (the control-plane node's kube-proxy
    // handles the host's own connections): A and SRV for the named port.
    let web_ip = c.ok(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    let dig = |args: &[&str]| {
        let out = Command::new("dig")
            .args(["@10.96.0.10", "+short", "+time=2", "+tries=2"])
            .args(args)
            .output()
            .expect("dig (Debian package bind9-dnsutils)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(dig(&["web.default.svc.cluster.local"]).trim(), web_ip);
    assert_eq!(
        dig(&["SRV", "_http._tcp.web.default.svc.cluster.local"]).trim(),
        "0 100 80 web.default.svc.cluster.local."
    );
    // And over the host's connection to the ClusterIP itself.
    let answer = try_http_get(&format!("{web_ip}:80")).unwrap();
    assert!(answer.contains("Hello from web-"), "{answer}");
}

#[test]
#[allow(clippy::disallowed_methods)] // a plain test thread, not a tokio worker
fn nodeport_loadbalancer_and_ingress_reach_the_pods_from_the_host() {
    let (http, https) = (free_port(), free_port());
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: real containers need root");
        return;
    }
    let c = Cluster::start_in(
        tempfile::tempdir().unwrap(),
        &[
            "--no-kubeconfig-merge",
            "--name",
            "svc-edge",
            "--nodes",
            "2",
            "--runtime",
            "libcontainer",
            "--cluster-cidr",
            "10.242.0.0/16",
            "--ingress-port",
            &http.to_string(),
            "--ingress-https-port",
            &https.to_string(),
        ],
    );
    c.apply(&hello("web", 2, "NodePort"));
    c.apply(
        r#"apiVersion: v1
kind: Service
metadata: {name: web-lb}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{name: http, port: 8081, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: nobody}
spec:
  selector: {app: nobody}
  ports: [{port: 80}]
"#,
    );
    available(&c, "web", 2);

    // NodePort: every node's address, from the host.
    let node_port = c.ok(&[
        "get",
        "svc",
        "web",
        "-o",
        "jsonpath={.spec.ports[0].nodePort}",
    ]);
    let nodes = node_ips(&c);
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    let distinct: BTreeSet<&String> = nodes.iter().map(|(_, ip)| ip).collect();
    assert_eq!(
        distinct.len(),
        3,
        "each node has its own address: {nodes:?}"
    );
    let wide = c.ok(&["get", "nodes", "-o", "wide"]);
    for (_, ip) in &nodes {
        assert!(wide.contains(ip.as_str()), "{wide}");
    }
    for (node, ip) in &nodes {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let answer = try_http_get(&format!("{ip}:{node_port}")).unwrap_or_else(|e| e);
            if answer.contains("Hello from web-") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{node} {ip}:{node_port}: {answer}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    // LoadBalancer: an address within a second or so, reachable from the host.
    let lb = c.eventually(
        &[
            "get",
            "svc",
            "web-lb",
            "-o",
            "jsonpath={.status.loadBalancer.ingress[0].ip}",
        ],
        10,
        |ip| !ip.is_empty(),
    );
    let shown = c.ok(&["get", "svc", "web-lb"]);
    assert!(
        shown.contains(&lb) && !shown.contains("<pending>"),
        "{shown}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = try_http_get(&format!("{lb}:8081")).unwrap_or_else(|e| e);
        if answer.contains("Hello from web-") {
            break;
        }
        assert!(Instant::now() < deadline, "{lb}:8081: {answer}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // Ingress: host and path rules, TLS from a kubernetes.io/tls Secret.
    let cert = rcgen::generate_simple_self_signed(vec!["secure.example".to_owned()]).unwrap();
    let files = tempfile::tempdir().unwrap();
    let (crt, key) = (files.path().join("tls.crt"), files.path().join("tls.key"));
    std::fs::write(&crt, cert.cert.pem()).unwrap();
    std::fs::write(&key, cert.signing_key.serialize_pem()).unwrap();
    c.ok(&[
        "create",
        "secret",
        "tls",
        "secure",
        "--cert",
        crt.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    c.apply(
        r#"apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  tls: [{hosts: [secure.example], secretName: secure}]
  rules:
  - host: hello.example
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
  - host: secure.example
    http:
      paths:
      - {path: /api, pathType: Exact, backend: {service: {name: web, port: {name: http}}}}
      - {path: /none, pathType: Prefix, backend: {service: {name: nobody, port: {number: 80}}}}
"#,
    );
    let class = c.ok(&[
        "get",
        "ingress",
        "web",
        "-o",
        "jsonpath={.spec.ingressClassName}",
    ]);
    assert_eq!(class, "orrery", "the default IngressClass is filled in");
    c.eventually(
        &[
            "get",
            "ingress",
            "web",
            "-o",
            "jsonpath={.status.loadBalancer.ingress[0].ip}",
        ],
        10,
        |ip| ip == "127.0.0.1",
    );
    let ingress = format!("127.0.0.1:{http}");
    let get = |host: &str, path: &str| {
        http_request(
            &ingress,
            &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        )
        .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = get("hello.example", "/any/path");
        if answer.starts_with("HTTP/1.1 200") && answer.contains("Hello from web-") {
            break;
        }
        assert!(Instant::now() < deadline, "{answer}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(get("unknown.example", "/").starts_with("HTTP/1.1 404"));
    assert!(get("secure.example", "/api/more").starts_with("HTTP/1.1 404"));
    assert!(get("secure.example", "/none").starts_with("HTTP/1.1 503"));
    let curl = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(&crt)
        .arg("--resolve")
        .arg(format!("secure.example:{https}:127.0.0.1"))
        .arg(format!("https://secure.example:{https}/api"))
        .output()
        .expect("curl");
    let body = String::from_utf8_lossy(&curl.stdout);
    assert!(
        body.starts_with("Hello from web-"),
        "{body}{}",
        String::from_utf8_lossy(&curl.stderr)
    );

    // `kubectl port-forward svc/NAME` keeps working.
    let mut forward = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(c.kubeconfig())
        .args(["port-forward", "svc/web", ":80"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut output = std::io::BufReader::new(forward.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut output, &mut line).unwrap();
    std::thread::spawn(move || std::io::copy(&mut output, &mut std::io::sink()));
    let local = line
        .split_whitespace()
        .nth(2)
        .unwrap_or_default()
        .to_owned();
    let answer = try_http_get(&local).unwrap_or_else(|e| e);
    let _ = forward.kill();
    let _ = forward.wait();
    assert!(answer.contains("Hello from web-"), "{line}: {answer}");

    // Deleting the LoadBalancer Service releases its address.
    c.ok(&["delete", "svc", "web-lb"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while try_http_get(&format!("{lb}:8081")).is_ok() {
        assert!(Instant::now() < deadline, "{lb}:8081 still answers");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_stopped_kube_proxy_leaves_only_its_node_stale_and_down_leaves_nothing() {
    let Some(c) = Cluster::real("svc-stale", 2, "10.243.0.0/16") else {
        return;
    };
    c.apply(&client("client-1", "orrery/hello", Some("node-1")));
    c.apply(&client("client-2", "orrery/hello", Some("node-2")));
    running(&c, "client-1");
    running(&c, "client-2");
    c.orrery_ok(&["component", "stop", "kube-proxy/node-2"]);
    c.apply(&hello("late", 1, "ClusterIP"));
    available(&c, "late", 1);
    // node-1's kube-proxy follows; node-2's rules are stale: the new ClusterIP goes nowhere.
    sh_eventually(&c, "client-1", "/orrery fetch http://late/", 30, |out| {
        out.starts_with("Hello from late-")
    });
    let (ok, out, _) = sh(&c, "client-2", "/orrery fetch http://late/");
    assert!(!ok, "node-2's kube-proxy is stopped, yet: {out}");
    c.orrery_ok(&["component", "start", "kube-proxy/node-2"]);
    sh_eventually(&c, "client-2", "/orrery fetch http://late/", 30, |out| {
        out.starts_with("Hello from late-")
    });

    let tables = || {
        let out = Command::new("nft")
            .args(["list", "tables"])
            .output()
            .expect("nft (Debian package nftables)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(tables().contains("orrery_svc-stale_node-1"), "{}", tables());
    let _ = c.down();
    assert!(!tables().contains("orrery_svc-stale_"), "{}", tables());
    let links = Command::new("ip").args(["-o", "link"]).output().unwrap();
    let links = String::from_utf8_lossy(&links.stdout);
    assert!(!links.contains("orr-svc-stale"), "{links}");
    let addresses = Command::new("ip")
        .args(["-o", "-4", "addr"])
        .output()
        .unwrap();
    let addresses = String::from_utf8_lossy(&addresses.stdout);
    assert!(!addresses.contains("10.243."), "{addresses}");
}

#[test]
fn on_the_simulated_runtime_kube_proxy_computes_its_rules_and_dns_answers() {
    let c = Cluster::with_nodes(2);
    c.apply(&hello("web", 2, "ClusterIP"));
    available(&c, "web", 2);
    let web_ip = c.ok(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    // The DNS server's loopback port is its kube-dns endpoint.
    let endpoint = c.eventually(
        &[
            "get",
            "endpointslices",
            "-n",
            "kube-system",
            "-l",
            "kubernetes.io/service-name=kube-dns",
            "-o",
            "jsonpath={.items[0].endpoints[0].addresses[0]} {.items[0].ports[?(@.name==\"dns\")].port}",
        ],
        20,
        |out| out.split_whitespace().count() == 2,
    );
    let (ip, port) = endpoint.split_once(' ').unwrap();
    assert_eq!(ip, "127.0.0.1");
    let kube_dns = c.ok(&[
        "get",
        "svc",
        "-n",
        "kube-system",
        "kube-dns",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    assert_eq!(kube_dns, "10.96.0.10");
    for transport in ["+notcp", "+tcp"] {
        let out = Command::new("dig")
            .args(["@127.0.0.1", "-p", port, "+short", transport])
            .arg("web.default.svc.cluster.local")
            .output()
            .expect("dig (Debian package bind9-dnsutils)");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), web_ip);
    }
    let missing = Command::new("dig")
        .args(["@127.0.0.1", "-p", port])
        .arg("nope.default.svc.cluster.local")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&missing.stdout).contains("status: NXDOMAIN"),
        "{}",
        String::from_utf8_lossy(&missing.stdout)
    );
    // Every node's kube-proxy computed the Service's rules, and says it programs nothing.
    let flow = c.ok(&["get", "--raw", "/orrery/v1/flow?since=0&follow=false"]);
    for node in ["node-1", "node-2"] {
        let sync = flow
            .lines()
            .filter(|l| {
                l.contains(&format!("\"from\":\"kube-proxy/{node}\"")) && l.contains("\"SYNC\"")
            })
            .find(|l| l.contains(&web_ip))
            .unwrap_or_else(|| panic!("no sync of {node} with {web_ip}"));
        assert!(sync.contains("does not program the kernel"), "{sync}");
    }
}
