//! `orrery bench services`: the data plane of Services in one run, each figure next to its
//! goal. (a) kube-proxy's network programming latency, from an EndpointSlice change to the
//! rules in place, with 1,000 Services of 10 endpoints ([`super::services`]); (b) an HTTP
//! request through a ClusterIP next to the same request to the pod's IP, on real containers
//! ([`super::routing`]); (c) the cluster DNS server's queries per second and latency for a
//! Service name ([`super::dns`]). A part that cannot run here (no root for (b)) says why.

use std::fmt;
use std::time::Duration;

use super::dns::DnsReport;
use super::routing::RoutingFigures;
use super::services::{ProgrammingOptions, ProgrammingReport};

/// Options of `orrery bench services`.
#[derive(Clone, Debug, clap::Args)]
pub struct ServicesBenchOptions {
    /// (a): Services, endpoints per Service and changes timed.
    #[command(flatten)]
    pub programming: ProgrammingOptions,
    /// (b): requests made each way (to the pod's IP, through the ClusterIP).
    #[arg(long, default_value_t = 500)]
    pub requests: usize,
    /// (c): DNS queries sent...
    #[arg(long, default_value_t = 100_000)]
    pub queries: usize,
    /// ...from this many concurrent UDP senders.
    #[arg(long, default_value_t = 8)]
    pub senders: usize,
    /// Give up on part (b) after this long.
    #[arg(long, default_value = "180s", value_parser = crate::cli::parse_duration)]
    pub timeout: Duration,
}

/// The figures of the three parts.
#[derive(Debug)]
pub struct ServicesReport {
    programming: Result<ProgrammingReport, String>,
    routing: Result<RoutingFigures, String>,
    dns: Result<DnsReport, String>,
}

/// Runs the three parts, one after the other.
pub async fn run_services_bench(options: &ServicesBenchOptions) -> ServicesReport {
    let programming = super::services::programming(&options.programming).await;
    let routing = super::routing::routing(options.requests, options.timeout).await;
    let dns = super::dns::queries(options.queries, options.senders).await;
    ServicesReport {
        programming,
        routing,
        dns,
    }
}

impl ServicesReport {
    /// Whether every part ran.
    pub fn complete(&self) -> bool {
        self.programming.is_ok() && self.routing.is_ok() && self.dns.is_ok()
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

impl fmt::Display for ServicesReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "(a) network programming (EndpointSlice change -> rules in place)"
        )?;
        match &self.programming {
            Ok(r) => {
                write!(f, "{r}")?;
                writeln!(
                    f,
                    "    p99 {} (goal < 100 ms; Kubernetes' SLO: p99 < 30 s)",
                    ms(r.p99)
                )?;
            }
            Err(e) => writeln!(f, "    not measured: {e}")?,
        }
        writeln!(f, "(b) HTTP through a ClusterIP vs. straight to the pod IP")?;
        match &self.routing {
            Ok(r) => {
                let (d50, d99) = RoutingFigures::quantiles(&r.direct);
                let (s50, s99) = RoutingFigures::quantiles(&r.service);
                writeln!(
                    f,
                    "    {} requests each way, a new connection each: pod IP p50 {} p99 {} · ClusterIP p50 {} p99 {}",
                    r.direct.len(),
                    ms(d50),
                    ms(d99),
                    ms(s50),
                    ms(s99)
                )?;
                writeln!(
                    f,
                    "    ClusterIP/pod IP (p50): {:.2}x (goal within 1.1x)",
                    r.ratio()
                )?;
            }
            Err(e) => writeln!(f, "    not measured: {e}")?,
        }
        writeln!(f, "(c) cluster DNS, A queries for a Service name")?;
        match &self.dns {
            Ok(r) => {
                write!(f, "    {r}")?;
                writeln!(f, "    goal: at least 20,000/s, p99 < 2 ms")?;
            }
            Err(e) => writeln!(f, "    not measured: {e}")?,
        }
        Ok(())
    }
}
