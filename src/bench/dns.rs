//! The cluster DNS server's figures (part of `orrery bench services`): A queries per second and
//! their latency, from several concurrent UDP senders against the server on 127.0.0.1 over an
//! in-process API server on a temporary store with one Service, flow hops included.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, PostParams};
use tokio::net::UdpSocket;

use super::percentile;
use crate::dns::{Dns, DnsConfig};

/// No run takes longer than this.
const TIME_LIMIT: Duration = Duration::from_secs(60);
/// How long one query may wait for its answer before it counts as lost.
const QUERY_TIMEOUT: Duration = Duration::from_secs(1);

/// The figures.
#[derive(Clone, Debug, Default)]
pub struct DnsReport {
    /// Queries answered.
    pub answered: usize,
    /// Queries with no (or a wrong) answer in time.
    pub lost: usize,
    /// Concurrent senders.
    pub senders: usize,
    /// Answered queries per second.
    pub per_second: f64,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
}

impl fmt::Display for DnsReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "DNS A queries ({} UDP senders): {:.0}/s, p50 {:.3} ms, p99 {:.3} ms ({} answered, {} lost)",
            self.senders,
            self.per_second,
            self.p50.as_secs_f64() * 1000.0,
            self.p99.as_secs_f64() * 1000.0,
            self.answered,
            self.lost
        )
    }
}

/// Sends `queries` A queries for one Service's name from `senders` concurrent UDP sockets
/// (each one query in flight at a time) to a DNS server on 127.0.0.1:0, stopping after 60 s.
pub async fn queries(queries: usize, senders: usize) -> Result<DnsReport, String> {
    let senders = senders.max(1);
    let (_dir, api, flow) = super::in_process_api(None).await?;
    let client = api.client("bench");
    let service: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"ports": [{"name": "http", "port": 80}]},
    }))
    .map_err(|e| e.to_string())?;
    Api::<Service>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &service)
        .await
        .map_err(|e| format!("cannot create the Service: {e}"))?;

    let mut config = DnsConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)), "bench");
    config.keep_service = false;
    config.upstreams = Vec::new();
    let dns = Dns::bind(config).await.map_err(|e| e.to_string())?;
    let server = dns.local_addr();
    let running = tokio::spawn(dns.run(api.client("kube-dns"), flow));
    let name = Name::from_ascii("web.default.svc.cluster.local.").map_err(|e| e.to_string())?;

    // Wait until the Service is in the zone.
    let probe = UdpSocket::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    loop {
        if let Some(Ok(true)) = ask(&probe, server, &name, 0).await {
            break;
        }
        if started.elapsed() > Duration::from_secs(20) {
            running.abort();
            return Err("the DNS server never answered for the Service".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let deadline = Instant::now() + TIME_LIMIT;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for sender in 0..senders {
        let count = queries / senders + usize::from(sender < queries % senders);
        let name = name.clone();
        tasks.spawn(async move {
            let socket = UdpSocket::bind("127.0.0.1:0").await.ok()?;
            let mut latencies = Vec::with_capacity(count);
            let mut lost = 0;
            for i in 0..count {
                if Instant::now() > deadline {
                    break;
                }
                let sent = Instant::now();
                match ask(&socket, server, &name, i as u16).await {
                    Some(Ok(true)) => latencies.push(sent.elapsed()),
                    _ => lost += 1,
                }
            }
            Some((latencies, lost))
        });
    }
    let mut all = Vec::with_capacity(queries);
    let mut lost = 0;
    while let Some(result) = tasks.join_next().await {
        if let Ok(Some((latencies, l))) = result {
            all.extend(latencies);
            lost += l;
        }
    }
    let elapsed = started.elapsed();
    running.abort();
    all.sort();
    Ok(DnsReport {
        answered: all.len(),
        lost,
        senders,
        per_second: all.len() as f64 / elapsed.as_secs_f64(),
        p50: percentile(&all, 0.50),
        p99: percentile(&all, 0.99),
    })
}

/// One A query: `Some(Ok(true))` when answered with an address, `None` when no answer came in
/// time.
async fn ask(
    socket: &UdpSocket,
    server: SocketAddr,
    name: &Name,
    id: u16,
) -> Option<Result<bool, String>> {
    let mut request = Message::new(id, MessageType::Query, OpCode::Query);
    request.metadata.recursion_desired = true;
    request.add_query(Query::query(name.clone(), RecordType::A));
    let bytes = request.to_vec().ok()?;
    socket.send_to(&bytes, server).await.ok()?;
    let mut buffer = [0u8; 1024];
    let receive = async {
        loop {
            let n = socket.recv(&mut buffer).await.ok()?;
            // A late answer to an earlier query: not this one's.
            if n >= 2 && u16::from_be_bytes([buffer[0], buffer[1]]) == id {
                return Some(n);
            }
        }
    };
    let n = tokio::time::timeout(QUERY_TIMEOUT, receive).await.ok()??;
    let response = Message::from_vec(&buffer[..n]).map_err(|e| e.to_string());
    Some(
        response
            .map(|r| r.metadata.response_code == ResponseCode::NoError && !r.answers.is_empty()),
    )
}

#[cfg(test)]
mod tests {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_short_run_answers_every_query() {
        let report = super::queries(2_000, 4).await.unwrap();
        assert_eq!(report.answered, 2_000, "{report}");
        assert_eq!(report.lost, 0);
        assert!(report.p50 <= report.p99);
    }
}
