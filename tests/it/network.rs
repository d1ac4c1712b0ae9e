//! Pod networking on the real host (root): namespaces, veths and the cluster bridge made through
//! netlink, checked with the tools an operator would use (`ip`, `ping`, `iptables`) and with
//! real TCP connections between namespaces.
//!
//! Every test uses its own cluster name and node CIDRs (tests run in parallel and share the
//! host's routing table), and a guard that destroys what it made even when an assertion fails.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use nix::sched::CloneFlags;
use orrery::runtime::libcontainer::network::{Network, PodNetwork, host_veth_name, netns_path};

fn is_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("skipped: pod networking needs root (CI runs as root)");
    false
}

/// A cluster name unique to this test and this run, short enough for the 15-byte bridge name.
fn cluster(tag: &str) -> String {
    format!("n{tag}{}", std::process::id() % 100_000)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} {args:?}: {e}"))
}

fn stdout(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Pings `ip` (from namespace `netns`, or from the caller's), a few tries at most: the first
/// packet waits for ARP.
fn pings(netns: Option<&str>, ip: Ipv4Addr) -> bool {
    let ip = ip.to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    for _ in 0..3 {
        let out = match netns {
            Some(ns) => run("ip", &["netns", "exec", ns, "ping", "-c1", "-W1", &ip]),
            None => run("ping", &["-c1", "-W1", &ip]),
        };
        if out.status.success() {
            return true;
        }
        if Instant::now() > deadline {
            break;
        }
    }
    false
}

/// Runs `f` in a thread that has entered namespace `name`; the caller's thread never moves.
fn in_netns<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let file = std::fs::File::open(netns_path(name)).unwrap();
    std::thread::spawn(move || {
        nix::sched::setns(file.as_fd(), CloneFlags::CLONE_NEWNET).unwrap();
        f()
    })
    .join()
    .unwrap()
}

/// Destroys a cluster's network when dropped, on a thread of its own (the test may be inside a
/// runtime, or unwinding).
struct Cleanup {
    cluster: String,
    prefix: String,
}

impl Cleanup {
    fn new(cluster: &str) -> Self {
        Cleanup {
            cluster: cluster.to_owned(),
            prefix: format!("{cluster}-"),
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (cluster, prefix) = (self.cluster.clone(), self.prefix.clone());
        let _ = std::thread::spawn(move || {
            runtime().block_on(async { Network::new(&cluster).destroy(&prefix).await })
        })
        .join();
    }
}

fn assert_gone(network: &Network, prefix: &str, pods: &[&PodNetwork]) {
    let leftover: Vec<_> = std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect();
    assert!(leftover.is_empty(), "namespaces left: {leftover:?}");
    let links = stdout("ip", &["-o", "link", "show"]);
    assert!(
        !links.contains(&format!(" {}:", network.bridge_name())),
        "bridge left: {links}"
    );
    for pod in pods {
        assert!(!pod.netns.exists(), "{} left", pod.netns.display());
        assert!(
            !links.contains(&format!(" {}@", pod.host_veth)),
            "veth {} left: {links}",
            pod.host_veth
        );
    }
}

#[test]
fn pods_get_addresses_from_their_node_and_reach_the_host_and_each_other() {
    if !is_root() {
        return;
    }
    let name = cluster("a");
    let cleanup = Cleanup::new(&name);
    let prefix = cleanup.prefix.clone();
    let rt = runtime();
    let mut network = Network::new(&name);
    let started = Instant::now();
    let (a, b, c) = rt.block_on(async {
        let a = network
            .add_pod(&format!("{prefix}a"), "10.244.201.0/24")
            .await
            .unwrap();
        let b = network
            .add_pod(&format!("{prefix}b"), "10.244.201.0/24")
            .await
            .unwrap();
        let c = network
            .add_pod(&format!("{prefix}c"), "10.244.202.0/24")
            .await
            .unwrap();
        (a, b, c)
    });
    eprintln!("three pod networks set up in {:?}", started.elapsed());
    assert_eq!(a.ip, Ipv4Addr::new(10, 244, 201, 2));
    assert_eq!(b.ip, Ipv4Addr::new(10, 244, 201, 3));
    assert_eq!(c.ip, Ipv4Addr::new(10, 244, 202, 2));
    assert_eq!(a.netns, Path::new("/run/netns").join(format!("{prefix}a")));
    assert_eq!(a.host_veth, host_veth_name(&format!("{prefix}a")));

    // What an operator sees.
    let listed = stdout("ip", &["netns", "list"]);
    for n in ["a", "b", "c"] {
        assert!(listed.contains(&format!("{prefix}{n}")), "{listed}");
    }
    let addr = stdout("ip", &["-n", &format!("{prefix}a"), "addr", "show"]);
    assert!(addr.contains("inet 10.244.201.2/24"), "{addr}");
    assert!(addr.contains(": eth0@"), "{addr}");
    let lo = stdout("ip", &["-n", &format!("{prefix}a"), "link", "show", "lo"]);
    assert!(lo.contains(",UP,"), "lo is not up: {lo}");
    let routes = stdout("ip", &["-n", &format!("{prefix}c"), "route", "show"]);
    let route = |start: &str| routes.lines().find(|l| l.starts_with(start)).unwrap_or("");
    assert_ne!(route("default via 10.244.202.1 dev eth0"), "", "{routes}");
    assert!(
        route("10.244.0.0/14 dev eth0").ends_with("scope link "),
        "{routes}"
    );
    let bridge = stdout("ip", &["addr", "show", "dev", &network.bridge_name()]);
    assert!(bridge.contains("inet 10.244.201.1/24"), "{bridge}");
    assert!(bridge.contains("inet 10.244.202.1/24"), "{bridge}");
    // A MAC set on the bridge (NET_ADDR_SET) stays; otherwise it follows the lowest port MAC and
    // pods' ARP entries for their gateway go stale as pods come and go.
    let assign = std::fs::read_to_string(format!(
        "/sys/class/net/{}/addr_assign_type",
        network.bridge_name()
    ))
    .unwrap();
    assert_eq!(assign.trim(), "3", "the bridge's MAC is not fixed");
    let port = stdout("ip", &["-d", "link", "show", "dev", &a.host_veth]);
    assert!(
        port.contains(&format!("master {}", network.bridge_name())),
        "{port}"
    );

    // The host reaches every pod; pods reach each other, within a node and across nodes.
    for pod in [&a, &b, &c] {
        assert!(pings(None, pod.ip), "the host cannot reach {}", pod.ip);
    }
    assert!(pings(Some(&format!("{prefix}a")), b.ip), "a cannot reach b");
    assert!(
        pings(Some(&format!("{prefix}a")), c.ip),
        "a cannot reach c on another node"
    );
    assert!(
        pings(Some(&format!("{prefix}c")), a.ip),
        "c cannot reach a on another node"
    );

    // TCP: a listener in pod a is reached from pod c (across nodes) and, on localhost, from
    // pod a itself (containers of one pod share it); pod c's localhost is its own.
    let listener = in_netns(&format!("{prefix}a"), || {
        (
            TcpListener::bind("0.0.0.0:7070").unwrap(),
            TcpListener::bind("127.0.0.1:7071").unwrap(),
        )
    });
    let server = std::thread::spawn(move || {
        for l in [&listener.0, &listener.1] {
            let (mut s, peer) = l.accept().unwrap();
            s.write_all(peer.ip().to_string().as_bytes()).unwrap();
        }
    });
    let read_from = |addr: SocketAddr| {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text
    };
    let a_ip = a.ip;
    let seen = in_netns(&format!("{prefix}c"), move || {
        read_from(SocketAddr::from((a_ip, 7070)))
    });
    assert_eq!(
        seen, "10.244.202.2",
        "a sees c's own address: no NAT between pods"
    );
    let seen = in_netns(&format!("{prefix}a"), move || {
        read_from("127.0.0.1:7071".parse().unwrap())
    });
    assert_eq!(seen, "127.0.0.1");
    server.join().unwrap();
    let refused = in_netns(&format!("{prefix}c"), || {
        TcpStream::connect("127.0.0.1:7071").is_err()
    });
    assert!(refused, "pod c's localhost must not be pod a's");

    rt.block_on(network.destroy(&prefix)).unwrap();
    assert_gone(&network, &prefix, &[&a, &b, &c]);
    drop(cleanup);
}

#[test]
fn remove_pod_frees_everything_and_missing_parts_are_not_errors() {
    if !is_root() {
        return;
    }
    let name = cluster("r");
    let cleanup = Cleanup::new(&name);
    let prefix = cleanup.prefix.clone();
    let rt = runtime();
    let mut network = Network::new(&name);
    rt.block_on(async {
        let p = network
            .add_pod(&format!("{prefix}p"), "10.244.203.0/24")
            .await
            .unwrap();
        assert!(p.netns.exists());
        network.remove_pod(&p).await.unwrap();
        assert!(!p.netns.exists());
        let links = stdout("ip", &["-o", "link", "show"]);
        assert!(!links.contains(&p.host_veth), "{links}");
        // Twice, and a pod that never existed.
        network.remove_pod(&p).await.unwrap();
        network
            .remove_pod(&PodNetwork {
                netns: netns_path(&format!("{prefix}never")),
                host_veth: host_veth_name(&format!("{prefix}never")),
                ip: Ipv4Addr::new(10, 244, 203, 77),
            })
            .await
            .unwrap();

        // The same pod again: a fresh namespace, and the next address (not the one just freed).
        let again = network
            .add_pod(&format!("{prefix}p"), "10.244.203.0/24")
            .await
            .unwrap();
        assert_eq!(again.ip, Ipv4Addr::new(10, 244, 203, 3));
        assert!(pings(None, again.ip));

        // A name that is already taken is refused, and the existing pod is left alone.
        let err = network
            .add_pod(&format!("{prefix}p"), "10.244.203.0/24")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("File exists"), "{err}");
        assert!(pings(None, again.ip), "the existing pod was disturbed");

        let err = network
            .add_pod(&format!("{prefix}q"), "10.244.300.0/24")
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "invalid pod CIDR \"10.244.300.0/24\"");

        network.destroy(&prefix).await.unwrap();
        assert_gone(&network, &prefix, &[&p, &again]);
        // Destroying what is already gone is fine.
        network.destroy(&prefix).await.unwrap();
    });
    drop(cleanup);
}

#[test]
fn addresses_held_by_existing_pods_are_not_handed_out_after_a_restart() {
    if !is_root() {
        return;
    }
    let name = cluster("s");
    let cleanup = Cleanup::new(&name);
    let prefix = cleanup.prefix.clone();
    let rt = runtime();
    rt.block_on(async {
        let first = Network::new(&name)
            .add_pod(&format!("{prefix}old"), "10.244.204.0/24")
            .await
            .unwrap();
        assert_eq!(first.ip, Ipv4Addr::new(10, 244, 204, 2));
        // A new helper process: nothing in memory, the pod still there.
        let mut restarted = Network::new(&name);
        let second = restarted
            .add_pod(&format!("{prefix}new"), "10.244.204.0/24")
            .await
            .unwrap();
        assert_eq!(second.ip, Ipv4Addr::new(10, 244, 204, 3));
        let alias = stdout("ip", &["link", "show", "dev", &first.host_veth]);
        assert!(
            alias.contains(&format!("alias {prefix}old 10.244.204.2")),
            "{alias}"
        );
        // destroy finds the pods by their prefix, made by whichever process.
        restarted.destroy(&prefix).await.unwrap();
        assert_gone(&restarted, &prefix, &[&first, &second]);
    });
    drop(cleanup);
}

#[test]
fn two_clusters_do_not_collide() {
    if !is_root() {
        return;
    }
    let (x_name, y_name) = (cluster("x"), cluster("y"));
    let (x_cleanup, y_cleanup) = (Cleanup::new(&x_name), Cleanup::new(&y_name));
    let rt = runtime();
    let (mut x, mut y) = (Network::new(&x_name), Network::new(&y_name));
    assert_ne!(x.bridge_name(), y.bridge_name());
    rt.block_on(async {
        let px = x
            .add_pod(&format!("{}web", x_cleanup.prefix), "10.244.205.0/24")
            .await
            .unwrap();
        let py = y
            .add_pod(&format!("{}web", y_cleanup.prefix), "10.244.206.0/24")
            .await
            .unwrap();
        assert_ne!(px.host_veth, py.host_veth);
        assert!(pings(None, px.ip) && pings(None, py.ip));

        x.destroy(&x_cleanup.prefix).await.unwrap();
        assert_gone(&x, &x_cleanup.prefix, &[&px]);
        assert!(
            py.netns.exists(),
            "destroying one cluster removed the other's pod"
        );
        assert!(
            pings(None, py.ip),
            "destroying one cluster cut the other's pod off"
        );

        y.destroy(&y_cleanup.prefix).await.unwrap();
        assert_gone(&y, &y_cleanup.prefix, &[&py]);
    });
    drop((x_cleanup, y_cleanup));
}

/// A private network namespace standing in for a host, mounted as `/run/netns/<name>`; removed
/// when dropped.
struct PrivateHost(String);

impl Drop for PrivateHost {
    fn drop(&mut self) {
        let path = netns_path(&self.0);
        let _ = nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_file(path);
    }
}

/// Docker sets iptables' FORWARD policy to DROP; with `br_netfilter` on, that drops frames
/// bridged from pod to pod. The network lets its own bridge's traffic through, and takes the
/// rule away again. Shown in a private namespace standing for the host, so the real host's
/// firewall is never touched.
#[test]
fn bridged_pod_traffic_passes_a_docker_style_forward_drop() {
    if !is_root() {
        return;
    }
    let name = cluster("d");
    let host_name = format!("orrtest-host-{name}");
    let host_path = netns_path(&host_name);
    std::thread::spawn(move || {
        // This thread, and every thread and process it starts, is in the private "host".
        nix::sched::unshare(CloneFlags::CLONE_NEWNET).unwrap();
        std::fs::create_dir_all("/run/netns").unwrap();
        std::fs::File::create(&host_path).unwrap();
        let host = PrivateHost(host_name);
        nix::mount::mount(
            Some("/proc/thread-self/ns/net"),
            &host_path,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .unwrap();
        let cleanup = Cleanup::new(&name);
        let prefix = cleanup.prefix.clone();
        stdout("ip", &["link", "set", "lo", "up"]);
        let bridged_to_iptables =
            std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-iptables")
                .is_ok_and(|v| v.trim() == "1");
        stdout("iptables", &["-w", "-P", "FORWARD", "DROP"]);

        let rt = runtime();
        let mut network = Network::new(&name);
        let bridge = network.bridge_name();
        let (a, b) = rt.block_on(async {
            let a = network
                .add_pod(&format!("{prefix}a"), "10.244.207.0/24")
                .await
                .unwrap();
            let b = network
                .add_pod(&format!("{prefix}b"), "10.244.208.0/24")
                .await
                .unwrap();
            (a, b)
        });
        let rule = format!("-A FORWARD -i {bridge} -o {bridge} -j ACCEPT");
        let forward = stdout("iptables", &["-w", "-S", "FORWARD"]);
        // Forwarded traffic (a pod's connection to a Service, DNATed back onto the bridge)
        // meets the chain whether or not bridged frames do: the rule is always there.
        assert!(forward.contains(&rule), "{forward}");
        if bridged_to_iptables {
            assert!(
                pings(Some(&format!("{prefix}a")), b.ip),
                "bridged traffic dropped"
            );
            // Without the rule the firewall really does drop it: the rule is what lets it pass.
            let spec = [
                "FORWARD", "-i", &bridge, "-o", &bridge, "-j", "ACCEPT", "-w",
            ];
            stdout("iptables", &[&["-D"][..], &spec[..]].concat());
            assert!(
                !pings(Some(&format!("{prefix}a")), b.ip),
                "nothing was dropped"
            );
            // Put back, for destroy to take away.
            stdout("iptables", &[&["-A"][..], &spec[..]].concat());
        } else {
            eprintln!("br_netfilter is not loaded: bridged frames skip iptables");
            assert!(pings(Some(&format!("{prefix}a")), b.ip));
        }
        assert!(pings(None, a.ip), "host to pod is not forwarded traffic");

        rt.block_on(network.destroy(&prefix)).unwrap();
        let forward = stdout("iptables", &["-w", "-S", "FORWARD"]);
        assert!(!forward.contains(&bridge), "rule left: {forward}");
        assert_gone(&network, &prefix, &[&a, &b]);
        drop(cleanup);
        drop(host);
    })
    .join()
    .unwrap();
}
