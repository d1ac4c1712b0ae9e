//! Container probes, as upstream's prober: `exec` (the runtime's ExecSync), `httpGet` and
//! `tcpSocket` (the kubelet connects to the pod itself, through [`ContainerRuntime::dial`]:
//! the pod network is the runtime's, so a simulated pod is probed in memory and nothing
//! leaves the machine), for startup, liveness and readiness.
//!
//! Each probe of a running container is its own small task ([`Probing::start`]), so a slow
//! probe never holds up the pod's worker. Every `periodSeconds` it probes (skipping while
//! within `initialDelaySeconds` of the container's start, and, for liveness and readiness,
//! until the startup probe has succeeded), counts consecutive results against
//! `successThreshold`/`failureThreshold` ([`ProbeState`]) and publishes the result in
//! [`Health`], which the worker reads: `started`, `ready`, and whether a liveness or startup
//! probe has failed (the worker then kills the container and restarts it by `restartPolicy`).
//! Each failed attempt is reported for an `Unhealthy` event, as upstream records one.
//! Dropping a [`Probing`] ends its tasks.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, HTTPGetAction, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::runtime::{ContainerRuntime, PodConnection, RuntimeError};

/// Which probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProbeKind {
    /// `livenessProbe`: failing kills the container.
    Liveness,
    /// `readinessProbe`: gates `ready`.
    Readiness,
    /// `startupProbe`: gates the other two and sets `started`; failing kills the container.
    Startup,
}

impl ProbeKind {
    /// As upstream names it in events.
    pub(crate) fn name(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        }
    }
}

/// A probe's published result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProbeResult {
    /// Not known yet (a startup probe before its first success).
    Unknown,
    /// Passing.
    Success,
    /// Failing (past `failureThreshold`).
    Failure,
}

/// The counting of one probe: consecutive results against the thresholds, as upstream's worker.
#[derive(Clone, Debug)]
pub(crate) struct ProbeState {
    kind: ProbeKind,
    success_threshold: u32,
    failure_threshold: u32,
    last: Option<bool>,
    run: u32,
    /// The result published now.
    pub(crate) result: ProbeResult,
}

impl ProbeState {
    /// A fresh probe: readiness starts failing, liveness passing, startup unknown (upstream's
    /// initial values).
    pub(crate) fn new(kind: ProbeKind, success_threshold: u32, failure_threshold: u32) -> Self {
        ProbeState {
            kind,
            success_threshold: success_threshold.max(1),
            failure_threshold: failure_threshold.max(1),
            last: None,
            run: 0,
            result: match kind {
                ProbeKind::Readiness => ProbeResult::Failure,
                ProbeKind::Liveness => ProbeResult::Success,
                ProbeKind::Startup => ProbeResult::Unknown,
            },
        }
    }

    /// Counts one attempt; the result flips once enough agree in a row.
    pub(crate) fn record(&mut self, ok: bool) -> ProbeResult {
        if self.last == Some(ok) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = Some(ok);
            self.run = 1;
        }
        let (threshold, flip) = if ok {
            (self.success_threshold, ProbeResult::Success)
        } else {
            (self.failure_threshold, ProbeResult::Failure)
        };
        if self.run >= threshold {
            self.result = flip;
        }
        let _ = self.kind;
        self.result
    }
}

/// What the probes of one container say, read by the pod's worker.
#[derive(Debug, Default)]
pub(crate) struct Health {
    /// The startup probe has succeeded (or there is none).
    pub(crate) started: bool,
    /// The readiness probe passes (or there is none and the container has started).
    pub(crate) ready: bool,
    /// A liveness or startup probe has failed for good: the container must be killed.
    pub(crate) failed: Option<ProbeKind>,
    /// Messages of failed attempts not yet turned into `Unhealthy` events.
    pub(crate) unhealthy: Vec<String>,
}

impl Health {
    /// What a container's probes say before any has run: started unless it has a startup
    /// probe, ready unless it has a readiness probe (upstream's prober keeps a probed container
    /// not started, or not ready, until its first success).
    pub(crate) fn before_probing(container: &Container) -> Health {
        Health {
            started: container.startup_probe.is_none(),
            ready: container.readiness_probe.is_none(),
            failed: None,
            unhealthy: Vec::new(),
        }
    }

    /// `(started, ready)`: ready only once started.
    pub(crate) fn says(&self) -> (bool, bool) {
        (self.started, self.started && self.ready)
    }
}

/// How one attempt went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// The probe passed.
    Success,
    /// The probe failed, with its output.
    Failure(String),
    /// The probe could not be run (upstream's "probe errored"): the result is thrown away.
    Error(String),
}

/// The settings of a probe, with upstream's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Timing {
    /// `initialDelaySeconds` (0).
    pub(crate) initial_delay: Duration,
    /// `periodSeconds` (10).
    pub(crate) period: Duration,
    /// `timeoutSeconds` (1).
    pub(crate) timeout: Duration,
    /// `successThreshold` (1).
    pub(crate) success: u32,
    /// `failureThreshold` (3).
    pub(crate) failure: u32,
}

impl Timing {
    /// A probe's timing, defaults filled in.
    pub(crate) fn of(probe: &Probe) -> Timing {
        let secs = |v: Option<i32>, default: u64| {
            Duration::from_secs(v.map_or(default, |v| v.max(0) as u64))
        };
        Timing {
            initial_delay: secs(probe.initial_delay_seconds, 0),
            period: secs(probe.period_seconds, 10).max(Duration::from_secs(1)),
            timeout: secs(probe.timeout_seconds, 1).max(Duration::from_secs(1)),
            success: probe.success_threshold.map_or(1, |v| v.max(1) as u32),
            failure: probe.failure_threshold.map_or(3, |v| v.max(1) as u32),
        }
    }
}

/// Runs one probe until its container's probing is dropped (or, for liveness and startup,
/// until it has failed for good: upstream's worker holds off until the container restarts).
/// `started` is when the container started; `check` makes one attempt.
pub(crate) async fn run<F, Fut>(
    kind: ProbeKind,
    timing: Timing,
    started: tokio::time::Instant,
    has_startup: bool,
    health: Arc<Mutex<Health>>,
    check: F,
) where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Attempt>,
{
    let mut state = ProbeState::new(kind, timing.success, timing.failure);
    let mut ticker = tokio::time::interval(timing.period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        {
            let h = health.lock().expect("health lock");
            if kind == ProbeKind::Startup && h.started {
                return;
            }
            if kind != ProbeKind::Startup && has_startup && !h.started {
                continue;
            }
        }
        if tokio::time::Instant::now() < started + timing.initial_delay {
            continue;
        }
        let attempt = tokio::time::timeout(timing.timeout, check())
            .await
            .unwrap_or_else(|_| Attempt::Failure("probe timed out".into()));
        let ok = match attempt {
            Attempt::Success => true,
            Attempt::Failure(output) => {
                health
                    .lock()
                    .expect("health lock")
                    .unhealthy
                    .push(format!("{} probe failed: {output}", kind.name()));
                false
            }
            Attempt::Error(error) => {
                health
                    .lock()
                    .expect("health lock")
                    .unhealthy
                    .push(format!("{} probe errored: {error}", kind.name()));
                continue;
            }
        };
        let result = state.record(ok);
        let mut h = health.lock().expect("health lock");
        match (kind, result) {
            (ProbeKind::Readiness, r) => h.ready = r == ProbeResult::Success,
            (ProbeKind::Startup, ProbeResult::Success) => {
                h.started = true;
                return;
            }
            (_, ProbeResult::Failure) => {
                h.failed = Some(kind);
                return;
            }
            _ => {}
        }
    }
}

/// Where probes connect: the pod's IP unless the probe names a host, in the network of the
/// pod's sandbox.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    /// The pod's sandbox.
    pub(crate) sandbox: String,
    /// The pod's IP.
    pub(crate) pod_ip: String,
}

/// One connection a probe makes: `host:port` in the network of `sandbox`.
#[derive(Clone, Copy)]
pub(crate) struct Dial<'a> {
    /// The runtime whose network the pod is in.
    pub(crate) runtime: &'a dyn ContainerRuntime,
    /// The pod's sandbox.
    pub(crate) sandbox: &'a str,
    /// The host: the pod's IP, or the probe's own `host`.
    pub(crate) host: &'a str,
    /// The port.
    pub(crate) port: u16,
}

impl Dial<'_> {
    /// `host:port`, as Go writes an address.
    pub(crate) fn address(&self) -> String {
        host_port(self.host, self.port)
    }

    /// Connects, or says why not in Go's words (`dial tcp <address>: connect: <why>`).
    async fn connect(&self) -> Result<PodConnection, String> {
        self.runtime
            .dial(self.sandbox, self.host, self.port)
            .await
            .map_err(|e| format!("dial tcp {}: connect: {}", self.address(), io_text(&e)))
    }
}

/// A port given by number or by the name of one of the container's ports.
fn port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("invalid port number: {n}")),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| format!("couldn't find port: {name} in {}", container.name)),
    }
}

/// `host:port` as Go writes an address (`[::1]:80`).
pub(crate) fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// One `tcpSocket` attempt: success when the connection is made.
pub(crate) async fn tcp(dial: Dial<'_>, timeout: Duration) -> Attempt {
    match tokio::time::timeout(timeout, dial.connect()).await {
        Ok(Ok(_)) => Attempt::Success,
        Ok(Err(e)) => Attempt::Failure(e),
        Err(_) => Attempt::Failure(format!("dial tcp {}: i/o timeout", dial.address())),
    }
}

/// An I/O error as Go's net package words the common ones.
pub(crate) fn io_text(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        std::io::ErrorKind::ConnectionReset => "connection reset by peer".into(),
        _ => e.to_string(),
    }
}

/// A failed HTTP exchange in Go's words: a server that hangs up without answering is `EOF`.
fn hyper_text(e: &hyper::Error) -> String {
    if e.is_incomplete_message() {
        "EOF".into()
    } else {
        e.to_string()
    }
}

/// One `httpGet` attempt (HTTP/1.1 or HTTPS, `User-Agent: kube-probe/1.33`): success for a
/// status in
/// 200..400, as upstream. Redirects are not followed; a 3xx counts as success, as upstream
/// counts a redirect it does not follow.
pub(crate) async fn http(action: &HTTPGetAction, dial: Dial<'_>, timeout: Duration) -> Attempt {
    let host = dial.host;
    let scheme = action.scheme.as_deref().unwrap_or("HTTP").to_lowercase();
    let path = action.path.as_deref().unwrap_or("/");
    let path = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    let address = dial.address();
    let url = format!("{scheme}://{address}{path}");
    if scheme != "http" && scheme != "https" {
        return Attempt::Error(format!("unsupported scheme: {scheme:?}"));
    }
    let run = async {
        let stream = dial.connect().await?;
        let (mut sender, driver) = if scheme == "https" {
            let stream = tls_connect(stream, host).await?;
            let (sender, connection) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .map_err(|e| e.to_string())?;
            (
                sender,
                tokio::spawn(async move { connection.await.map(|_| ()) }),
            )
        } else {
            let (sender, connection) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .map_err(|e| e.to_string())?;
            (
                sender,
                tokio::spawn(async move { connection.await.map(|_| ()) }),
            )
        };
        let mut request = http::Request::get(&path)
            .header("Host", &address)
            .header(
                "User-Agent",
                format!(
                    "kube-probe/{}",
                    crate::apimachinery::KUBERNETES_VERSION
                        .trim_start_matches('v')
                        .split('.')
                        .take(2)
                        .collect::<Vec<_>>()
                        .join(".")
                ),
            )
            .header("Accept", "*/*");
        for h in action.http_headers.iter().flatten() {
            request = request.header(h.name.as_str(), h.value.as_str());
        }
        let request = request
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| hyper_text(&e));
        driver.abort();
        response
    };
    match tokio::time::timeout(timeout, run).await {
        Err(_) => Attempt::Failure(format!(
            "Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        )),
        Ok(Err(e)) => Attempt::Failure(format!("Get \"{url}\": {e}")),
        Ok(Ok(response)) => {
            let code = response.status().as_u16();
            if (200..400).contains(&code) {
                Attempt::Success
            } else {
                Attempt::Failure(format!("HTTP probe failed with statuscode: {code}"))
            }
        }
    }
}

/// A TLS connection for an HTTPS probe. As upstream's prober, the server's certificate is not
/// verified (`InsecureSkipVerify`): a probe asks whether the server answers, not who it is.
/// The handshake's signatures are still checked.
async fn tls_connect(
    stream: PodConnection,
    host: &str,
) -> Result<tokio_rustls::client::TlsStream<PodConnection>, String> {
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, SignatureScheme};

    #[derive(Debug)]
    struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

    impl ServerCertVerifier for AnyCertificate {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
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
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await
        .map_err(|e| e.to_string())
}

/// One `exec` attempt: the command's exit code decides; its output is the failure message.
pub(crate) async fn exec(
    runtime: &dyn ContainerRuntime,
    id: &str,
    command: &[String],
    timeout: Duration,
) -> Attempt {
    match runtime.exec_sync(id, command.to_vec(), timeout).await {
        Ok((0, _)) => Attempt::Success,
        Ok((_, output)) => Attempt::Failure(String::from_utf8_lossy(&output).trim_end().to_owned()),
        Err(RuntimeError::Failed { action: "exec", .. }) => {
            Attempt::Failure(format!("command {command:?} timed out"))
        }
        Err(e) => Attempt::Error(e.to_string()),
    }
}

/// One attempt of any kind of probe (or preStop/postStart handler with the same actions).
pub(crate) async fn attempt<'a>(
    probe: &'a Probe,
    runtime: &'a dyn ContainerRuntime,
    id: &str,
    container: &Container,
    target: &'a Target,
    timeout: Duration,
) -> Attempt {
    if let Some(e) = &probe.exec {
        return exec(
            runtime,
            id,
            e.command.as_deref().unwrap_or_default(),
            timeout,
        )
        .await;
    }
    // Where an httpGet or tcpSocket probe connects: its own host, or the pod's IP.
    let dial = |host: &'a Option<String>, p: &IntOrString| {
        port(p, container).map(|port| Dial {
            runtime,
            sandbox: &target.sandbox,
            host: host
                .as_deref()
                .filter(|h| !h.is_empty())
                .unwrap_or(&target.pod_ip),
            port,
        })
    };
    if let Some(h) = &probe.http_get {
        return match dial(&h.host, &h.port) {
            Ok(dial) => http(h, dial, timeout).await,
            Err(e) => Attempt::Error(e),
        };
    }
    if let Some(t) = &probe.tcp_socket {
        return match dial(&t.host, &t.port) {
            Ok(dial) => tcp(dial, timeout).await,
            Err(e) => Attempt::Error(e),
        };
    }
    Attempt::Error("unknown probe handler (gRPC probes are not supported)".into())
}

/// The probes of one running container: their tasks and what they say.
pub(crate) struct Probing {
    /// The container they probe.
    pub(crate) id: String,
    /// What they say.
    pub(crate) health: Arc<Mutex<Health>>,
    tasks: Vec<tokio::task::AbortHandle>,
}

impl Drop for Probing {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Probing {
    /// Starts the container's probes (none when it has none: then it is started and ready at
    /// once).
    pub(crate) fn start(
        runtime: Arc<dyn ContainerRuntime>,
        id: String,
        container: &Container,
        target: Target,
    ) -> Probing {
        let started = tokio::time::Instant::now();
        let has_startup = container.startup_probe.is_some();
        let health = Arc::new(Mutex::new(Health::before_probing(container)));
        let mut tasks = Vec::new();
        for (kind, probe) in [
            (ProbeKind::Startup, &container.startup_probe),
            (ProbeKind::Liveness, &container.liveness_probe),
            (ProbeKind::Readiness, &container.readiness_probe),
        ] {
            let Some(probe) = probe.clone() else { continue };
            let timing = Timing::of(&probe);
            let (runtime, id, container, target) = (
                runtime.clone(),
                id.clone(),
                Arc::new(container.clone()),
                target.clone(),
            );
            let check = move || {
                let (runtime, id, container, target, probe) = (
                    runtime.clone(),
                    id.clone(),
                    container.clone(),
                    target.clone(),
                    probe.clone(),
                );
                async move { attempt(&probe, &*runtime, &id, &container, &target, timing.timeout).await }
            };
            let task = tokio::spawn(run(
                kind,
                timing,
                started,
                has_startup,
                health.clone(),
                check,
            ));
            tasks.push(task.abort_handle());
        }
        Probing { id, health, tasks }
    }

    /// `(started, ready)` now.
    pub(crate) fn peek(&self) -> (bool, bool) {
        self.health.lock().expect("health lock").says()
    }

    /// `(started, ready, failed probe)`, and the failures to report.
    pub(crate) fn read(&self) -> (bool, bool, Option<ProbeKind>, Vec<String>) {
        let mut h = self.health.lock().expect("health lock");
        let reports = std::mem::take(&mut h.unhealthy);
        let (started, ready) = h.says();
        (started, ready, h.failed, reports)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::ContainerConfig;
    use crate::runtime::sim::{SimOptions, SimRuntime};
    use std::collections::VecDeque;

    fn timing(initial: u64, period: u64, success: u32, failure: u32) -> Timing {
        Timing {
            initial_delay: Duration::from_secs(initial),
            period: Duration::from_secs(period),
            timeout: Duration::from_secs(1),
            success,
            failure,
        }
    }

    #[test]
    fn before_its_first_probe_a_probed_container_is_neither_started_nor_ready() {
        let probe = || Some(Probe::default());
        for (readiness, startup, want) in [
            (None, None, (true, true)),
            (probe(), None, (true, false)),
            (None, probe(), (false, false)),
            (probe(), probe(), (false, false)),
        ] {
            let c = Container {
                readiness_probe: readiness.clone(),
                startup_probe: startup.clone(),
                ..Container::default()
            };
            assert_eq!(
                Health::before_probing(&c).says(),
                want,
                "readiness {} startup {}",
                readiness.is_some(),
                startup.is_some()
            );
        }
    }

    #[test]
    fn thresholds_count_consecutive_results() {
        let mut s = ProbeState::new(ProbeKind::Readiness, 2, 3);
        assert_eq!(s.result, ProbeResult::Failure);
        let seen: Vec<_> = [
            true, false, true, true, false, false, true, false, false, false,
        ]
        .into_iter()
        .map(|ok| s.record(ok))
        .collect();
        use ProbeResult::*;
        assert_eq!(
            seen,
            [
                Failure, Failure, Failure, Success, Success, Success, Success, Success, Success,
                Failure
            ]
        );
        assert_eq!(ProbeState::new(ProbeKind::Liveness, 1, 3).result, Success);
        assert_eq!(ProbeState::new(ProbeKind::Startup, 1, 3).result, Unknown);
    }

    /// Runs a probe task on the paused clock against scripted attempts; returns the health after
    /// `secs` seconds and how many attempts were made.
    async fn scripted(
        kind: ProbeKind,
        timing: Timing,
        has_startup: bool,
        health: Arc<Mutex<Health>>,
        script: Vec<bool>,
        secs: u64,
    ) -> usize {
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let calls = Arc::new(Mutex::new(0usize));
        let check = {
            let (script, calls) = (script.clone(), calls.clone());
            move || {
                *calls.lock().unwrap() += 1;
                let ok = script.lock().unwrap().pop_front().unwrap_or(true);
                async move {
                    if ok {
                        Attempt::Success
                    } else {
                        Attempt::Failure("nope".into())
                    }
                }
            }
        };
        let start = tokio::time::Instant::now();
        let task = tokio::spawn(run(kind, timing, start, has_startup, health, check));
        tokio::time::sleep(Duration::from_secs(secs) + Duration::from_millis(1)).await;
        task.abort();
        *calls.lock().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn initial_delay_and_period() {
        let health = Arc::new(Mutex::new(Health {
            started: true,
            ..Health::default()
        }));
        // Ticks at 0, 10, 20, 30: the delay of 15 s skips the first two.
        let calls = scripted(
            ProbeKind::Readiness,
            timing(15, 10, 1, 3),
            false,
            health.clone(),
            vec![true],
            30,
        )
        .await;
        assert_eq!(calls, 2);
        assert!(health.lock().unwrap().ready);
    }

    #[tokio::test(start_paused = true)]
    async fn liveness_fails_after_threshold_and_stops() {
        let health = Arc::new(Mutex::new(Health {
            started: true,
            ..Health::default()
        }));
        let calls = scripted(
            ProbeKind::Liveness,
            timing(0, 1, 1, 3),
            false,
            health.clone(),
            vec![false, true, false, false, false, false],
            20,
        )
        .await;
        let h = health.lock().unwrap();
        assert_eq!(h.failed, Some(ProbeKind::Liveness));
        // Failure at attempt 5 (false, true, false, false, false); nothing after.
        assert_eq!(calls, 5);
        assert_eq!(h.unhealthy.len(), 4);
        assert_eq!(h.unhealthy[0], "Liveness probe failed: nope");
    }

    #[tokio::test(start_paused = true)]
    async fn startup_gates_liveness_and_readiness() {
        let health = Arc::new(Mutex::new(Health::default()));
        // Readiness does not probe until started.
        let calls = scripted(
            ProbeKind::Readiness,
            timing(0, 1, 1, 1),
            true,
            health.clone(),
            vec![],
            5,
        )
        .await;
        assert_eq!(calls, 0);
        assert!(!health.lock().unwrap().ready);
        // Startup: two failures, then success sets started and ends its task.
        let calls = scripted(
            ProbeKind::Startup,
            timing(0, 1, 1, 5),
            true,
            health.clone(),
            vec![false, false, true],
            10,
        )
        .await;
        assert_eq!(calls, 3);
        assert!(health.lock().unwrap().started);
        assert_eq!(health.lock().unwrap().failed, None);
        let calls = scripted(
            ProbeKind::Readiness,
            timing(0, 1, 1, 1),
            true,
            health.clone(),
            vec![],
            2,
        )
        .await;
        assert_eq!(calls, 3);
        assert!(health.lock().unwrap().ready);
    }

    #[tokio::test(start_paused = true)]
    async fn startup_failure_kills() {
        let health = Arc::new(Mutex::new(Health::default()));
        scripted(
            ProbeKind::Startup,
            timing(0, 1, 1, 2),
            true,
            health.clone(),
            vec![false, false],
            5,
        )
        .await;
        assert_eq!(health.lock().unwrap().failed, Some(ProbeKind::Startup));
        assert!(!health.lock().unwrap().started);
    }

    /// A simulated pod on `node-1` and, with `command`, a container running it (the image
    /// `orrery/hello` when the command is empty) that declares `ports`; the runtime, the
    /// pod's sandbox and its IP.
    async fn sim_pod(command: Option<&[&str]>, ports: &[u16]) -> (SimRuntime, String, String) {
        let rt = SimRuntime::new(SimOptions::default());
        let sandbox = rt.test_sandbox().await;
        if let Some(command) = command {
            let id = rt
                .create_container(
                    &sandbox,
                    &ContainerConfig {
                        name: "app".into(),
                        image: "orrery/hello".into(),
                        command: command.iter().map(|s| (*s).to_owned()).collect(),
                        ports: ports.to_vec(),
                        ..ContainerConfig::default()
                    },
                )
                .await
                .unwrap();
            rt.start_container(&id).await.unwrap();
            // Its program reaches its server step.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let ip = rt.pod_sandbox_status(&sandbox).await.unwrap().ip.unwrap();
        (rt, sandbox, ip)
    }

    /// Probes of a simulated pod go to its simulated programs, in memory: the built-in hello
    /// answers, a declared port of an unknown program takes the connection and hangs up, and
    /// anything else is refused; a host off the machine is unreachable.
    #[tokio::test(start_paused = true)]
    async fn probes_of_a_simulated_pod_stay_in_memory() {
        let t = Duration::from_secs(1);
        let root: HTTPGetAction = serde_json::from_value(serde_json::json!({"port": 1})).unwrap();
        let (hello, sandbox, ip) = sim_pod(Some(&[]), &[]).await;
        let dial = |rt, host, port| Dial {
            runtime: rt,
            sandbox: &sandbox,
            host,
            port,
        };
        assert_eq!(
            http(&root, dial(&hello, &ip, 8080), t).await,
            Attempt::Success
        );
        assert_eq!(tcp(dial(&hello, &ip, 8080), t).await, Attempt::Success);
        assert_eq!(
            http(&root, dial(&hello, &ip, 9999), t).await,
            Attempt::Failure(format!(
                "Get \"http://{ip}:9999/\": dial tcp {ip}:9999: connect: connection refused"
            ))
        );
        assert_eq!(
            tcp(dial(&hello, "192.0.2.1", 8080), t).await,
            Attempt::Failure(
                "dial tcp 192.0.2.1:8080: connect: network is unreachable (a simulated node reaches only its simulated pods and loopback)".into()
            )
        );
        let (nginx, sandbox2, ip) = sim_pod(Some(&["nginx"]), &[80]).await;
        let dial = |host, port| Dial {
            runtime: &nginx,
            sandbox: &sandbox2,
            host,
            port,
        };
        assert_eq!(tcp(dial(&ip, 80), t).await, Attempt::Success);
        assert_eq!(
            http(&root, dial(&ip, 80), t).await,
            Attempt::Failure(format!("Get \"http://{ip}:80/\": EOF"))
        );
        assert_eq!(
            tcp(dial(&ip, 81), t).await,
            Attempt::Failure(format!("dial tcp {ip}:81: connect: connection refused"))
        );
    }

    #[tokio::test]
    async fn tcp_and_http_attempts() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            // The tcpSocket probe only connects.
            drop(listener.accept().await.unwrap());
            for status in ["200 OK", "302 Found", "503 Service Unavailable"] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = vec![0; 4096];
                let n = s.read(&mut buf).await.unwrap();
                let request = String::from_utf8_lossy(&buf[..n]).to_string();
                assert!(request.starts_with("GET /healthz HTTP/1.1"), "{request}");
                assert!(request.contains("x-probe: yes"), "{request}");
                assert!(
                    request.to_lowercase().contains("user-agent: kube-probe/1."),
                    "{request}"
                );
                let reply = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
                s.write_all(reply.as_bytes()).await.unwrap();
            }
        });
        let action: HTTPGetAction = serde_json::from_value(serde_json::json!({
            "port": port, "path": "healthz", "httpHeaders": [{"name": "x-probe", "value": "yes"}]
        }))
        .unwrap();
        let t = Duration::from_secs(2);
        // A probe naming 127.0.0.1 as its host reaches this machine's loopback.
        let (rt, sandbox, _) = sim_pod(None, &[]).await;
        let to = |port| Dial {
            runtime: &rt,
            sandbox: &sandbox,
            host: "127.0.0.1",
            port,
        };
        assert_eq!(tcp(to(port), t).await, Attempt::Success);
        assert_eq!(http(&action, to(port), t).await, Attempt::Success);
        assert_eq!(http(&action, to(port), t).await, Attempt::Success);
        assert_eq!(
            http(&action, to(port), t).await,
            Attempt::Failure("HTTP probe failed with statuscode: 503".into())
        );
        server.await.unwrap();
        // Nothing listens there any more.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead = closed.local_addr().unwrap().port();
        drop(closed);
        assert_eq!(
            tcp(to(dead), t).await,
            Attempt::Failure(format!(
                "dial tcp 127.0.0.1:{dead}: connect: connection refused"
            ))
        );
        assert_eq!(
            http(&action, to(dead), t).await,
            Attempt::Failure(format!(
                "Get \"http://127.0.0.1:{dead}/healthz\": dial tcp 127.0.0.1:{dead}: connect: connection refused"
            ))
        );
    }

    #[tokio::test]
    async fn https_probes_skip_certificate_checks() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let cert = rcgen::generate_simple_self_signed(vec!["somewhere.example".into()]).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let mut s = acceptor.accept(s).await.unwrap();
            let mut buf = vec![0; 4096];
            let n = s.read(&mut buf).await.unwrap();
            assert!(buf[..n].starts_with(b"GET / HTTP/1.1"));
            s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
                .await
                .unwrap();
            s.flush().await.unwrap();
        });
        let action: HTTPGetAction =
            serde_json::from_value(serde_json::json!({"port": port, "scheme": "HTTPS"})).unwrap();
        let (rt, sandbox, _) = sim_pod(None, &[]).await;
        let dial = Dial {
            runtime: &rt,
            sandbox: &sandbox,
            host: "127.0.0.1",
            port,
        };
        assert_eq!(
            http(&action, dial, Duration::from_secs(5)).await,
            Attempt::Success
        );
        server.await.unwrap();
    }
}
