//! The programs inside the built-in images: `orrery hello`, a small HTTP server that says which
//! pod answered, and `orrery pause`, what a pod sandbox's pause container does; and the few
//! tools the sample manifests run in them, since the images hold no shell: `sleep`, `exit`,
//! `write`, `hog`, `burn`, `fetch`, `whoami` (an in-cluster API client), and `webhook` (an
//! HTTPS admission webhook, [`webhook`]).
//!
//! Both run as the container's process (the `orrery` binary at `/orrery`), so they start before
//! and without the command line's multi-threaded runtime: `hello` uses a current-thread tokio
//! runtime, `pause` no runtime at all.

pub mod webhook;

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use http_body_util::Full;
use hyper::body::Bytes;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// The port `hello` listens on unless `PORT` says otherwise.
pub const HELLO_PORT: u16 = 8080;

/// Who is answering: the pod's name, namespace and IP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The pod's name (the hostname).
    pub pod: String,
    /// Its namespace.
    pub namespace: String,
    /// Its IP.
    pub ip: String,
}

impl Identity {
    /// The pod as seen from inside it: `POD_NAMESPACE` or the first `<ns>.svc.cluster.local`
    /// search domain of `/etc/resolv.conf` (which the kubelet writes), `POD_IP` or the first
    /// non-loopback IPv4 address, and the hostname.
    pub fn discover() -> Identity {
        let pod = nix::unistd::gethostname()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "unknown".to_owned());
        let namespace = std::env::var("POD_NAMESPACE")
            .ok()
            .filter(|ns| !ns.is_empty())
            .or_else(|| {
                std::fs::read_to_string("/etc/resolv.conf")
                    .ok()
                    .and_then(|text| namespace_from_resolv_conf(&text))
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let ip = std::env::var("POD_IP")
            .ok()
            .filter(|ip| !ip.is_empty())
            .or_else(|| first_ipv4().map(|ip| ip.to_string()))
            .unwrap_or_else(|| "unknown".to_owned());
        Identity { pod, namespace, ip }
    }

    /// The line `hello` answers with.
    pub fn greeting(&self) -> String {
        format!(
            "Hello from {} in {} at {}\n",
            self.pod, self.namespace, self.ip
        )
    }
}

/// The namespace in a pod's `/etc/resolv.conf`: the first search domain
/// `<namespace>.svc.<cluster domain>`.
pub fn namespace_from_resolv_conf(text: &str) -> Option<String> {
    namespace_from_search(
        text.lines()
            .filter_map(|line| line.trim().strip_prefix("search"))
            .flat_map(str::split_whitespace),
    )
}

/// The namespace among a pod's DNS search domains: the first `<namespace>.svc.<cluster
/// domain>`.
pub fn namespace_from_search<'a>(domains: impl IntoIterator<Item = &'a str>) -> Option<String> {
    domains.into_iter().find_map(|domain| {
        let (namespace, rest) = domain.split_once('.')?;
        rest.starts_with("svc.").then(|| namespace.to_owned())
    })
}

fn first_ipv4() -> Option<Ipv4Addr> {
    nix::ifaddrs::getifaddrs()
        .ok()?
        .filter_map(|interface| interface.address?.as_sockaddr_in().map(|a| a.ip()))
        .find(|ip| !ip.is_loopback())
}

/// `orrery hello`: serves `Hello from <pod> in <namespace> at <ip>` on 0.0.0.0:$PORT (8080)
/// until SIGTERM or SIGINT, logging one line per request to stdout.
pub fn hello() -> ExitCode {
    on_current_thread("hello", async {
        match serve_hello().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("hello: {error}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Runs a tool's `work` on a current-thread tokio runtime (the tools are a container's one
/// process, started without the command line's multi-threaded runtime).
fn on_current_thread(tool: &str, work: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(work),
        Err(error) => {
            eprintln!("{tool}: cannot start the async runtime: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve_hello() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let port = match std::env::var("PORT") {
        Ok(port) => port
            .parse()
            .map_err(|_| std::io::Error::other(format!("PORT={port:?} is not a port number")))?,
        Err(_) => HELLO_PORT,
    };
    // Signals first: once the port answers, SIGTERM ends the server cleanly.
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).await?;
    println!("hello: listening on {}", listener.local_addr()?);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        eprintln!("hello: accept: {error}");
                        continue;
                    }
                };
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| answer(request, peer));
                    let io = hyper_util::rt::TokioIo::new(stream);
                    if let Err(error) = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await
                    {
                        eprintln!("hello: connection from {peer}: {error}");
                    }
                });
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    println!("hello: shutting down");
    Ok(())
}

async fn answer(
    request: hyper::Request<hyper::body::Incoming>,
    peer: SocketAddr,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let identity = Identity::discover();
    println!(
        "{} {} from {peer}: {}",
        request.method(),
        request.uri(),
        identity.greeting().trim_end()
    );
    // `HELLO_FILE`: a file (written by an init container, say) answered before the greeting.
    let file = std::env::var_os("HELLO_FILE").and_then(|f| std::fs::read_to_string(f).ok());
    let mut response = hello_response(&identity, file.as_deref());
    // `HELLO_BACKEND`: the tier behind this one, asked on every request (by name, through the
    // cluster's DNS and its Service), its answer passed on after the greeting.
    if let Ok(backend) = std::env::var("HELLO_BACKEND")
        && !backend.is_empty()
    {
        let (status, line) = match ask_backend(&backend).await {
            Ok(text) => (200, format!("  -> {backend}: {}", text.trim_end())),
            Err(error) => (502, format!("  -> {backend}: unreachable: {error}")),
        };
        let mut body = String::from_utf8_lossy(
            &http_body_util::BodyExt::collect(response.into_body())
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default(),
        )
        .into_owned();
        body.push_str(&line);
        body.push('\n');
        response = hyper::Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    Ok(response)
}

/// `orrery fetch <url> [count]`: `count` GETs of an `http://` URL, one after the other, each
/// answer's body printed; the first failure is written to stderr and ends it with 1 (a client
/// for Services and cluster DNS inside the built-in images, which have no shell or wget).
pub fn fetch(url: &str, count: u32) -> ExitCode {
    on_current_thread("fetch", async {
        for _ in 0..count {
            match ask_backend(url).await {
                Ok(body) => print!("{body}"),
                Err(error) => {
                    eprintln!("fetch {url}: {error}");
                    return ExitCode::FAILURE;
                }
            }
        }
        ExitCode::SUCCESS
    })
}

/// `orrery whoami`: an ordinary in-cluster client, the `kube` crate with its in-cluster
/// configuration (`KUBERNETES_SERVICE_HOST` and `_PORT`, and the service account's token, CA
/// and namespace under `/var/run/secrets/kubernetes.io/serviceaccount`), as any client library
/// in a pod is configured. It asks the API server who it is (a SelfSubjectReview, what
/// `kubectl auth whoami` sends) and prints `user: <name>` and `groups: <g>,...`, then lists the
/// pods of its namespace and prints `pods in <ns>: <count>`, or the API's refusal as
/// `pods in <ns>: <status message>`. Exits 1 when it cannot reach the API or is not who it
/// says.
pub fn whoami() -> ExitCode {
    on_current_thread("whoami", async {
        match ask_whoami().await {
            Ok(lines) => {
                print!("{lines}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("whoami: {error}");
                ExitCode::FAILURE
            }
        }
    })
}

async fn ask_whoami() -> Result<String, String> {
    use k8s_openapi::api::authentication::v1::SelfSubjectReview;
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, ListParams, PostParams};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = kube::Config::incluster().map_err(|e| format!("in-cluster configuration: {e}"))?;
    let namespace = config.default_namespace.clone();
    let client = kube::Client::try_from(config).map_err(|e| e.to_string())?;
    let reviews: Api<SelfSubjectReview> = Api::all(client.clone());
    let review = reviews
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .map_err(|e| format!("SelfSubjectReview: {e}"))?;
    let user = review
        .status
        .and_then(|s| s.user_info)
        .ok_or("the SelfSubjectReview has no status.userInfo")?;
    let mut lines = format!(
        "user: {}\ngroups: {}\n",
        user.username.unwrap_or_default(),
        user.groups.unwrap_or_default().join(",")
    );
    let pods: Api<Pod> = Api::namespaced(client, &namespace);
    let listed = match pods.list(&ListParams::default()).await {
        Ok(list) => list.items.len().to_string(),
        Err(kube::Error::Api(status)) => status.message,
        Err(error) => return Err(format!("listing pods: {error}")),
    };
    lines.push_str(&format!("pods in {namespace}: {listed}\n"));
    Ok(lines)
}

/// One `GET` of `url` (`http://host[:port][/path]`, the host a name resolved by the system's
/// resolver, so by the pod's `/etc/resolv.conf`): the body, within 5 seconds.
async fn ask_backend(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url:?} is not an http:// URL"))?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let address = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let fetch = async {
        let stream = tokio::net::TcpStream::connect(&address)
            .await
            .map_err(|e| e.to_string())?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let request = hyper::Request::get(format!("/{path}"))
            .header(hyper::header::HOST, authority)
            .body(http_body_util::Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let text = String::from_utf8_lossy(&body).into_owned();
        if status.is_success() {
            Ok(text)
        } else {
            Err(format!("{status}: {}", text.trim_end()))
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), fetch)
        .await
        .unwrap_or_else(|_| Err("no answer within 5s".into()))
}

/// What `hello` answers every request with: 200, `text/plain`, the text of `HELLO_FILE` (when
/// given) and then the identity's greeting. The simulated runtime's `hello` answers with it
/// too.
pub fn hello_response(identity: &Identity, file: Option<&str>) -> hyper::Response<Full<Bytes>> {
    let mut body = identity.greeting();
    if let Some(text) = file {
        body = format!(
            "{text}{}{body}",
            if text.ends_with('\n') { "" } else { "\n" }
        );
    }
    let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// `orrery sleep <seconds>`: waits, then exits 0 (a Job's work, in the built-in image, which
/// has no shell).
#[allow(clippy::disallowed_methods)] // the container's only thread, not a tokio worker
pub fn sleep(seconds: f64) -> ExitCode {
    std::thread::sleep(std::time::Duration::from_secs_f64(seconds.max(0.0)));
    ExitCode::SUCCESS
}

/// `orrery exit <code> [message]`: writes the message to stderr and exits with `code` (a
/// crashing program, for showing restarts and `CrashLoopBackOff`).
pub fn exit(code: u8, message: &[String]) -> ExitCode {
    if !message.is_empty() {
        eprintln!("{}", message.join(" "));
    }
    ExitCode::from(code)
}

/// `orrery write <path> <text...>`: writes the text and a newline to the file, making its
/// directory (an init container preparing a volume).
pub fn write(path: &std::path::Path, text: &[String]) -> ExitCode {
    let made = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(path, format!("{}\n", text.join(" "))));
    match made {
        Ok(()) => {
            println!("wrote {}", path.display());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("write {}: {error}", path.display());
            ExitCode::FAILURE
        }
    }
}

/// `orrery hog <MiB>`: allocates and touches that much memory, one MiB at a time, then waits
/// until stopped (a container that outgrows its memory limit and is OOM-killed).
pub fn hog(mib: usize) -> ExitCode {
    let mut held: Vec<Vec<u8>> = Vec::with_capacity(mib);
    for i in 0..mib {
        // Non-zero bytes, so every page is really touched.
        held.push(vec![1u8; 1 << 20]);
        if (i + 1) % 16 == 0 {
            println!("hog: holding {} MiB", i + 1);
        }
    }
    println!("hog: holding {mib} MiB; waiting");
    std::hint::black_box(&held);
    pause()
}

/// How `burn` spreads `millicores` of CPU: how many threads, and how long each is busy in
/// every [`BURN_PERIOD`] (the CFS period, so a CPU limit throttles it as it would any program).
/// `1500m` is two threads each busy 75 ms of every 100 ms.
pub fn burn_plan(millicores: u64) -> (u64, std::time::Duration) {
    let threads = millicores.div_ceil(1000);
    if threads == 0 {
        return (0, std::time::Duration::ZERO);
    }
    let per_thread = millicores as f64 / threads as f64 / 1000.0;
    (threads, BURN_PERIOD.mul_f64(per_thread))
}

/// `burn`'s argument as millicores: a CPU quantity from 0 to [`BURN_MAX_MILLICORES`].
pub fn burn_millicores(cpu: &str) -> Option<u64> {
    crate::apimachinery::quantity::cpu_millis(cpu)
        .ok()
        .filter(|m| (0..=BURN_MAX_MILLICORES as i64).contains(m))
        .map(|m| m as u64)
}

/// The period `burn` works and rests in.
pub const BURN_PERIOD: std::time::Duration = std::time::Duration::from_millis(100);

/// The most CPU `burn` takes on (1,024 cores).
pub const BURN_MAX_MILLICORES: u64 = 1_024_000;

/// `orrery burn <cpu>` (the quantity read as millicores by `cli`): uses that much CPU (`400m`:
/// 40% of one core), busy and resting in turn in every [`BURN_PERIOD`], until stopped (load for
/// `kubectl top` and a HorizontalPodAutoscaler).
#[allow(clippy::disallowed_methods)] // plain threads of a program of its own, no tokio runtime
pub fn burn(millicores: u64) -> ExitCode {
    let (threads, busy) = burn_plan(millicores);
    for _ in 0..threads {
        std::thread::spawn(move || {
            loop {
                let began = std::time::Instant::now();
                let mut spins = 0u64;
                while began.elapsed() < busy {
                    spins = std::hint::black_box(spins.wrapping_add(1));
                }
                std::thread::sleep(BURN_PERIOD.saturating_sub(began.elapsed()));
            }
        });
    }
    println!("burn: using {millicores}m of CPU in {threads} thread(s); waiting");
    pause()
}

/// `orrery pause`: what the pause container does. Sleeps until SIGINT or SIGTERM (then exits
/// 0), reaping every child that ends meanwhile (in a shared PID namespace it is init).
pub fn pause() -> ExitCode {
    if nix::unistd::getpid() != Pid::from_raw(1) {
        eprintln!("Warning: pause should be the first process");
    }
    let mut signals = SigSet::empty();
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGCHLD] {
        signals.add(signal);
    }
    // Blocked signals are queued for sigwait, even for PID 1 (which ignores unhandled ones).
    if let Err(error) = signals.thread_block() {
        eprintln!("pause: cannot block signals: {error}");
        return ExitCode::FAILURE;
    }
    loop {
        match signals.wait() {
            Ok(Signal::SIGCHLD) => reap_children(),
            Ok(signal) => {
                eprintln!("Shutting down, got signal: {signal}");
                return ExitCode::SUCCESS;
            }
            Err(error) => {
                eprintln!("pause: sigwait: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
}

fn reap_children() {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burn_spreads_its_share_over_one_thread_per_started_core() {
        let ms = std::time::Duration::from_millis;
        assert_eq!(burn_plan(0), (0, ms(0)));
        assert_eq!(burn_plan(400), (1, ms(40)));
        assert_eq!(burn_plan(1000), (1, ms(100)));
        assert_eq!(burn_plan(1500), (2, ms(75)));
        assert_eq!(burn_plan(2000), (2, ms(100)));
        let (threads, busy) = burn_plan(250);
        assert_eq!((threads, busy), (1, ms(25)));
    }

    #[test]
    fn write_makes_the_directory_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("work/message.txt");
        let _ = write(&file, &["Prepared".into(), "here.".into()]);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "Prepared here.\n");
    }

    #[test]
    fn the_namespace_comes_from_the_first_svc_search_domain() {
        let cases = [
            (
                "search shop.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\n",
                Some("shop"),
            ),
            (
                "nameserver 1.1.1.1\nsearch example.com default.svc.cluster.local\n",
                Some("default"),
            ),
            ("search svc.cluster.local cluster.local\n", None),
            ("nameserver 1.1.1.1\n", None),
        ];
        for (text, want) in cases {
            assert_eq!(
                namespace_from_resolv_conf(text).as_deref(),
                want,
                "{text:?}"
            );
        }
    }

    #[test]
    fn the_greeting_is_one_line() {
        let identity = Identity {
            pod: "web-1".to_owned(),
            namespace: "default".to_owned(),
            ip: "10.244.1.2".to_owned(),
        };
        assert_eq!(
            identity.greeting(),
            "Hello from web-1 in default at 10.244.1.2\n"
        );
    }
}
