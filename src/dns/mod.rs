//! Cluster DNS (`kube-dns`): a DNS server over UDP and TCP that answers for the cluster domain
//! by the Kubernetes DNS-Based Service Discovery specification, from an index of the Services,
//! EndpointSlices and Pods it watches as an ordinary API client ([`zone`]), and forwards every
//! other name to the host's resolvers ([`forward`]). It also keeps the `kube-system/kube-dns`
//! Service and its endpoints pointing at itself ([`service`]). Each query is one flow hop from
//! the asking pod (or address) to `kube-dns`, never gated.
//!
//! Messages are parsed and written by `hickory-proto`; the sockets, the index and the answers
//! are ours, so a query costs one hash lookup and one serialisation.

pub mod forward;
pub mod service;
pub mod zone;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use crate::flow::{Flow, FlowEvent};
pub use zone::{Outcome, Zone};

/// The component's name in the supervisor and in the flow.
pub const COMPONENT: &str = "kube-dns";
/// The default cluster domain.
pub const DEFAULT_DOMAIN: &str = "cluster.local";
/// UDP receivers sharing the socket.
const UDP_WORKERS: usize = 4;

/// Where and how the server runs.
#[derive(Clone, Debug)]
pub struct DnsConfig {
    /// Where it listens, UDP and TCP (`127.0.0.1:0` on `--runtime sim`, the control-plane
    /// node's address port 53 with real containers).
    pub listen: SocketAddr,
    /// The cluster domain (`cluster.local`).
    pub cluster_domain: String,
    /// Where names outside the cluster go: the host's resolvers by default.
    pub upstreams: Vec<SocketAddr>,
    /// The node the kube-dns endpoint is said to be on (the control-plane node's name).
    pub node_name: String,
    /// Whether to keep the `kube-system/kube-dns` Service and its endpoints (on by default).
    pub keep_service: bool,
}

impl DnsConfig {
    /// Listens on `listen`, for `cluster.local`, forwarding to the resolvers of the host's
    /// `/etc/resolv.conf`, its endpoint on `node_name`.
    pub fn new(listen: SocketAddr, node_name: &str) -> Self {
        DnsConfig {
            listen,
            cluster_domain: DEFAULT_DOMAIN.into(),
            upstreams: forward::host_upstreams(),
            node_name: node_name.into(),
            keep_service: true,
        }
    }
}

/// What can go wrong starting the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Its UDP or TCP socket could not be bound.
    #[error("cannot listen for DNS on {addr}: {source}")]
    Bind {
        /// Where.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A bound server, not answering yet: [`Dns::local_addr`] is where it listens.
pub struct Dns {
    config: DnsConfig,
    udp: Arc<UdpSocket>,
    tcp: Arc<TcpListener>,
    zone: Arc<RwLock<Arc<Zone>>>,
}

impl Dns {
    /// Binds UDP and TCP on `config.listen` (port 0: a free port, the same for both).
    pub async fn bind(config: DnsConfig) -> Result<Dns, Error> {
        let bind_error = |addr, source| Error::Bind { addr, source };
        let mut attempt = 0;
        let (udp, tcp) = loop {
            attempt += 1;
            // A server just aborted (a supervisor's restart) lets go of its sockets when its
            // tasks are dropped, a moment later: try again for up to 2 s. On port 0, another
            // free port if TCP's is taken.
            let retry =
                |e: &std::io::Error| e.kind() == std::io::ErrorKind::AddrInUse && attempt < 100;
            let udp = match UdpSocket::bind(config.listen).await {
                Ok(udp) => udp,
                Err(e) if retry(&e) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                Err(e) => return Err(bind_error(config.listen, e)),
            };
            let addr = udp.local_addr().map_err(|e| bind_error(config.listen, e))?;
            // tokio sets SO_REUSEADDR on listeners, so connections in TIME_WAIT do not hold
            // the port.
            match TcpListener::bind(addr).await {
                Ok(tcp) => break (udp, tcp),
                Err(e) if retry(&e) => {
                    drop(udp);
                    if config.listen.port() != 0 {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                Err(e) => return Err(bind_error(addr, e)),
            }
        };
        let zone = Arc::new(RwLock::new(Arc::new(Zone::empty(&config.cluster_domain))));
        Ok(Dns {
            config,
            udp: Arc::new(udp),
            tcp: Arc::new(tcp),
            zone,
        })
    }

    /// Where it listens (UDP and TCP).
    pub fn local_addr(&self) -> SocketAddr {
        self.udp.local_addr().unwrap_or(self.config.listen)
    }

    /// Watches Services, EndpointSlices and Pods through `client`, keeps the kube-dns Service,
    /// and answers queries, until aborted.
    pub async fn run(self, client: kube::Client, flow: Flow) {
        let (services, service_changes) =
            crate::informers::cache::<Service>(&client, watcher::Config::default());
        let (slices, slice_changes) =
            crate::informers::cache::<EndpointSlice>(&client, watcher::Config::default());
        let (pods, pod_changes) =
            crate::informers::compact(&client, watcher::Config::default(), zone::pod_address);
        let mut changes =
            futures::stream::select_all([service_changes, slice_changes, pod_changes]).boxed();
        crate::informers::prime(&mut changes, async {
            let _ = tokio::join!(
                services.wait_until_ready(),
                slices.wait_until_ready(),
                pods.wait_until_ready()
            );
        })
        .await;
        let domain = self.config.cluster_domain.clone();
        let rebuild = || {
            let zone = Zone::build(&domain, &services.state(), &slices.state(), &pods.state());
            *self.zone.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(zone);
        };
        rebuild();
        let mut tasks = tokio::task::JoinSet::new();
        let listen = self.local_addr();
        self.spawn_sockets(&mut tasks, flow.clone());
        // The kube-dns Service and its endpoints, made at start and again whenever the caches
        // show them changed or gone (no polling: a learner's timeline stays quiet).
        let keeper = self.config.keep_service.then(|| service::KubeDnsService {
            client: client.clone(),
            flow: flow.clone(),
            listen,
            node: self.config.node_name.clone(),
        });
        let mut keeping: Option<tokio::task::AbortHandle> = None;
        let keep = |keeping: &mut Option<tokio::task::AbortHandle>,
                    tasks: &mut tokio::task::JoinSet<()>| {
            if let Some(keeper) = &keeper
                && keeping.as_ref().is_none_or(|k| k.is_finished())
            {
                *keeping = Some(tasks.spawn(keeper.clone().run()));
            }
        };
        keep(&mut keeping, &mut tasks);
        let mut pace = crate::informers::Pace::default();
        loop {
            crate::informers::next_batch(&mut changes, Duration::from_secs(30), &mut pace).await;
            rebuild();
            if keeper
                .as_ref()
                .is_some_and(|k| k.drifted(&services.state(), &slices.state()))
            {
                keep(&mut keeping, &mut tasks);
            }
            while tasks.try_join_next().is_some() {}
        }
    }
}

impl Dns {
    /// Starts answering from the current zone on both sockets.
    fn spawn_sockets(&self, tasks: &mut tokio::task::JoinSet<()>, flow: Flow) {
        let listen = self.local_addr();
        let server = Arc::new(Server {
            zone: self.zone.clone(),
            upstreams: self
                .config
                .upstreams
                .iter()
                .copied()
                .filter(|u| *u != listen)
                .collect(),
            flow,
        });
        for _ in 0..UDP_WORKERS {
            tasks.spawn(serve_udp(server.clone(), self.udp.clone()));
        }
        tasks.spawn(serve_tcp(server, self.tcp.clone()));
    }
}

/// Binds and runs until aborted (what the supervisor starts).
pub async fn serve(config: DnsConfig, client: kube::Client, flow: Flow) -> Result<(), Error> {
    Dns::bind(config).await?.run(client, flow).await;
    Ok(())
}

/// What every socket task shares.
struct Server {
    zone: Arc<RwLock<Arc<Zone>>>,
    upstreams: Vec<SocketAddr>,
    flow: Flow,
}

/// The answer to one query's bytes, and the flow hop it makes.
enum Reply {
    Now(Vec<u8>),
    Forward,
    /// An ExternalName's CNAME to a name outside the cluster: ask the upstreams for the
    /// target's addresses and answer both (as CoreDNS does), within `max` bytes.
    Chase(Box<Message>, usize),
    Drop,
}

impl Server {
    fn zone(&self) -> Arc<Zone> {
        self.zone.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Answers a query from `peer`; `max` is the most bytes the transport takes (512 or the
    /// EDNS payload over UDP).
    fn handle(&self, bytes: &[u8], peer: SocketAddr, udp: bool) -> (Reply, Option<Hop>) {
        let Ok(request) = Message::from_vec(bytes) else {
            // Too broken to answer (or not a query): answer FORMERR when there is an id.
            if bytes.len() >= 12 && bytes[2] & 0x80 == 0 {
                let id = u16::from_be_bytes([bytes[0], bytes[1]]);
                let message = Message::error_msg(id, OpCode::Query, ResponseCode::FormErr);
                return (Reply::Now(message.to_vec().unwrap_or_default()), None);
            }
            return (Reply::Drop, None);
        };
        if request.metadata.message_type != MessageType::Query {
            return (Reply::Drop, None);
        }
        let zone = self.zone();
        let qtype = request
            .queries
            .first()
            .map(|q| q.query_type().to_string())
            .unwrap_or_default();
        let pod = zone.pod(peer.ip()).cloned();
        let hop = Hop {
            qtype,
            pod,
            peer: peer.ip(),
            detail: String::new(),
        };
        match zone.answer(&request) {
            Outcome::Answered(response, detail) => {
                let max = if udp {
                    request
                        .edns
                        .as_ref()
                        .map_or(512, |e| usize::from(e.max_payload().max(512)))
                } else {
                    usize::from(u16::MAX)
                };
                let outside_cname = match response.answers.as_slice() {
                    [answer]
                        if matches!(
                            request.queries[0].query_type(),
                            hickory_proto::rr::RecordType::A | hickory_proto::rr::RecordType::AAAA
                        ) =>
                    {
                        matches!(&answer.data, hickory_proto::rr::RData::CNAME(target) if !zone.owns(&target.0))
                    }
                    _ => false,
                };
                if outside_cname && !self.upstreams.is_empty() {
                    return (
                        Reply::Chase(Box::new(response), max),
                        Some(Hop { detail, ..hop }),
                    );
                }
                let mut bytes = response.to_vec().unwrap_or_default();
                if bytes.len() > max {
                    bytes = response.truncate().to_vec().unwrap_or_default();
                }
                (Reply::Now(bytes), Some(Hop { detail, ..hop }))
            }
            Outcome::Forward => {
                let name = request
                    .queries
                    .first()
                    .map(|q| q.name().to_string())
                    .unwrap_or_default();
                (
                    Reply::Forward,
                    Some(Hop {
                        detail: name,
                        ..hop
                    }),
                )
            }
        }
    }

    /// Completes an ExternalName's answer with its target's addresses from the upstreams.
    async fn chase(&self, mut response: Message, max: usize, tcp: bool, hop: &mut Hop) -> Vec<u8> {
        if let (Some(query), Some(hickory_proto::rr::RData::CNAME(target))) = (
            response.queries.first().cloned(),
            response.answers.first().map(|a| a.data.clone()),
        ) {
            let mut request = Message::new(response.metadata.id, MessageType::Query, OpCode::Query);
            request.metadata.recursion_desired = true;
            request.add_query(hickory_proto::op::Query::query(
                target.0.clone(),
                query.query_type(),
            ));
            if let Ok(bytes) = request.to_vec()
                && let Some((answer, upstream)) =
                    forward::forward(&self.upstreams, &bytes, tcp).await
                && let Ok(answer) = Message::from_vec(&answer)
            {
                for record in &answer.answers {
                    hop.detail.push_str(&format!(" {}", record.data));
                }
                hop.detail
                    .push_str(&format!(" (forwarded: {})", upstream.ip()));
                response.add_answers(answer.answers);
            }
        }
        let bytes = response.to_vec().unwrap_or_default();
        if bytes.len() > max {
            return response.truncate().to_vec().unwrap_or_default();
        }
        bytes
    }

    /// Forwards a query; the answer, or SERVFAIL.
    async fn forward(&self, bytes: &[u8], tcp: bool, hop: &mut Hop) -> Vec<u8> {
        match forward::forward(&self.upstreams, bytes, tcp).await {
            Some((answer, upstream)) => {
                hop.detail = format!("{} → forwarded: {}", hop.detail, upstream.ip());
                answer
            }
            None => {
                hop.detail = format!("{} → SERVFAIL (no upstream answered)", hop.detail);
                let id = u16::from_be_bytes([bytes[0], bytes[1]]);
                let mut message = Message::error_msg(id, OpCode::Query, ResponseCode::ServFail);
                if let Ok(request) = Message::from_vec(bytes) {
                    message.metadata.recursion_desired = request.metadata.recursion_desired;
                    message.metadata.recursion_available = true;
                    message.add_queries(request.queries);
                }
                message.to_vec().unwrap_or_default()
            }
        }
    }

    fn emit(&self, hop: Hop) {
        let from = match &hop.pod {
            Some(pod) => format!("pod/{}/{}", pod.namespace, pod.name),
            None => hop.peer.to_string(),
        };
        let mut event =
            FlowEvent::new(from, COMPONENT, format!("DNS {}", hop.qtype)).detail(hop.detail);
        if let Some(pod) = &hop.pod {
            event = event.object("Pod", &pod.namespace, &pod.name);
        }
        self.flow.emit(event);
    }
}

/// One query's flow hop, before it is emitted.
struct Hop {
    qtype: String,
    pod: Option<Arc<zone::PodRef>>,
    peer: IpAddr,
    detail: String,
}

async fn serve_udp(server: Arc<Server>, socket: Arc<UdpSocket>) {
    let mut buffer = vec![0u8; 4096];
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buffer).await else {
            continue;
        };
        let request = &buffer[..n];
        match server.handle(request, peer, true) {
            (Reply::Now(bytes), hop) => {
                let _ = socket.send_to(&bytes, peer).await;
                if let Some(hop) = hop {
                    server.emit(hop);
                }
            }
            (Reply::Chase(response, max), Some(mut hop)) => {
                let (server, socket) = (server.clone(), socket.clone());
                tokio::spawn(async move {
                    let bytes = server.chase(*response, max, false, &mut hop).await;
                    let _ = socket.send_to(&bytes, peer).await;
                    server.emit(hop);
                });
            }
            (Reply::Forward, Some(mut hop)) => {
                let request = request.to_vec();
                let (server, socket) = (server.clone(), socket.clone());
                tokio::spawn(async move {
                    let bytes = server.forward(&request, false, &mut hop).await;
                    let _ = socket.send_to(&bytes, peer).await;
                    server.emit(hop);
                });
            }
            _ => {}
        }
    }
}

async fn serve_tcp(server: Arc<Server>, listener: Arc<TcpListener>) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(serve_connection(server.clone(), stream, peer));
    }
}

/// Answers length-prefixed queries on one TCP connection until it closes or idles 10 s.
async fn serve_connection(server: Arc<Server>, mut stream: TcpStream, peer: SocketAddr) {
    loop {
        let read = async {
            let length = stream.read_u16().await.ok()?;
            let mut request = vec![0u8; usize::from(length)];
            stream.read_exact(&mut request).await.ok()?;
            Some(request)
        };
        let Ok(Some(request)) = tokio::time::timeout(Duration::from_secs(10), read).await else {
            return;
        };
        let (bytes, hop) = match server.handle(&request, peer, false) {
            (Reply::Now(bytes), hop) => (bytes, hop),
            (Reply::Chase(response, max), Some(mut hop)) => {
                let bytes = server.chase(*response, max, true, &mut hop).await;
                (bytes, Some(hop))
            }
            (Reply::Forward, Some(mut hop)) => {
                let bytes = server.forward(&request, true, &mut hop).await;
                (bytes, Some(hop))
            }
            _ => return,
        };
        let Ok(length) = u16::try_from(bytes.len()) else {
            return;
        };
        let mut framed = Vec::with_capacity(bytes.len() + 2);
        framed.extend_from_slice(&length.to_be_bytes());
        framed.extend_from_slice(&bytes);
        if stream.write_all(&framed).await.is_err() {
            return;
        }
        if let Some(hop) = hop {
            server.emit(hop);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::{Name, RecordType};

    fn query(id: u16, name: &str, qtype: RecordType) -> Vec<u8> {
        let mut request = Message::new(id, MessageType::Query, OpCode::Query);
        request.metadata.recursion_desired = true;
        request.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        request.to_vec().unwrap()
    }

    async fn over_udp(server: SocketAddr, request: &[u8]) -> Message {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.send_to(request, server).await.unwrap();
        let mut buffer = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), socket.recv(&mut buffer))
            .await
            .expect("an answer in time")
            .unwrap();
        Message::from_vec(&buffer[..n]).unwrap()
    }

    async fn over_tcp(server: SocketAddr, request: &[u8]) -> Message {
        let mut stream = TcpStream::connect(server).await.unwrap();
        let mut framed = (request.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(request);
        stream.write_all(&framed).await.unwrap();
        let length = stream.read_u16().await.unwrap();
        let mut answer = vec![0u8; usize::from(length)];
        stream.read_exact(&mut answer).await.unwrap();
        Message::from_vec(&answer).unwrap()
    }

    /// A resolver that answers every query with 192.0.2.1, over UDP.
    async fn fake_upstream() -> SocketAddr {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buffer = vec![0u8; 4096];
            while let Ok((n, peer)) = socket.recv_from(&mut buffer).await {
                let request = Message::from_vec(&buffer[..n]).unwrap();
                let mut response = Message::response(request.metadata.id, OpCode::Query);
                let q = request.queries[0].clone();
                response.add_answer(hickory_proto::rr::Record::from_rdata(
                    q.name().clone(),
                    60,
                    hickory_proto::rr::RData::A(hickory_proto::rr::rdata::A(
                        "192.0.2.1".parse().unwrap(),
                    )),
                ));
                response.add_query(q);
                let _ = socket.send_to(&response.to_vec().unwrap(), peer).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn answers_over_udp_and_tcp_and_forwards_the_rest() {
        let upstream = fake_upstream().await;
        let external: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "ext", "namespace": "default"},
            "spec": {"type": "ExternalName", "externalName": "example.net"}}))
        .unwrap();
        let mut config = DnsConfig::new("127.0.0.1:0".parse().unwrap(), "node-0");
        config.upstreams = vec![upstream];
        let dns = Dns::bind(config).await.unwrap();
        let addr = dns.local_addr();
        assert_ne!(addr.port(), 0);
        let service: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.12"}}))
        .unwrap();
        *dns.zone.write().unwrap() = Arc::new(Zone::build(
            "cluster.local",
            &[Arc::new(service), Arc::new(external)],
            &[],
            &[],
        ));
        let flow = Flow::new();
        let (_, mut hops) = flow.subscribe(0);
        let mut tasks = tokio::task::JoinSet::new();
        dns.spawn_sockets(&mut tasks, flow.clone());

        let a = query(1, "web.default.svc.cluster.local.", RecordType::A);
        for response in [over_udp(addr, &a).await, over_tcp(addr, &a).await] {
            assert_eq!(response.metadata.id, 1);
            assert_eq!(response.answers.len(), 1);
            assert_eq!(response.answers[0].data.to_string(), "10.96.0.12");
        }
        let hop = hops.recv().await.unwrap();
        assert_eq!(
            (hop.from.as_str(), hop.to.as_str(), hop.verb.as_str()),
            ("127.0.0.1", "kube-dns", "DNS A")
        );
        assert_eq!(hop.detail, "web.default.svc.cluster.local. → 10.96.0.12");
        let _tcp_hop = hops.recv().await.unwrap();

        let missing = query(2, "nope.default.svc.cluster.local.", RecordType::A);
        let response = over_udp(addr, &missing).await;
        assert_eq!(response.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(
            hops.recv().await.unwrap().detail,
            "nope.default.svc.cluster.local. → NXDOMAIN"
        );

        let ext = query(5, "ext.default.svc.cluster.local.", RecordType::A);
        let response = over_udp(addr, &ext).await;
        let answers: Vec<String> = response
            .answers
            .iter()
            .map(|r| r.data.to_string())
            .collect();
        assert_eq!(answers, ["example.net.", "192.0.2.1"]);
        assert_eq!(
            hops.recv().await.unwrap().detail,
            "ext.default.svc.cluster.local. → CNAME example.net. 192.0.2.1 (forwarded: 127.0.0.1)"
        );

        let outside = query(3, "example.com.", RecordType::A);
        let response = over_udp(addr, &outside).await;
        assert_eq!(response.metadata.id, 3);
        assert_eq!(response.answers[0].data.to_string(), "192.0.2.1");
        assert_eq!(
            hops.recv().await.unwrap().detail,
            "example.com. → forwarded: 127.0.0.1"
        );
        drop(tasks);
    }

    #[tokio::test]
    async fn servfail_when_no_upstream_answers() {
        // A port nobody answers on (bound, then closed).
        let dead = UdpSocket::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let mut config = DnsConfig::new("127.0.0.1:0".parse().unwrap(), "node-0");
        config.upstreams = vec![dead];
        let dns = Dns::bind(config).await.unwrap();
        let addr = dns.local_addr();
        let mut tasks = tokio::task::JoinSet::new();
        dns.spawn_sockets(&mut tasks, Flow::new());
        let response = over_udp(addr, &query(4, "example.com.", RecordType::A)).await;
        assert_eq!(response.metadata.id, 4);
        assert_eq!(response.metadata.response_code, ResponseCode::ServFail);
        // Rebinding the same address after the server stops works (a supervisor restart).
        drop(tasks);
        drop(dns);
        let again = Dns::bind(DnsConfig::new(addr, "node-0")).await.unwrap();
        assert_eq!(again.local_addr(), addr);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keeps_the_kube_dns_service_and_answers_for_it() {
        use crate::store::embedded::EmbeddedStore;
        use k8s_openapi::api::core::v1::Endpoints;
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn crate::store::Store> =
            Arc::new(EmbeddedStore::open(&dir.path().join("store.redb")).unwrap());
        let flow = Flow::new();
        let api = crate::apiserver::ApiServer::new(store, flow.clone());
        api.bootstrap().await.unwrap();
        let mut config = DnsConfig::new("127.0.0.1:0".parse().unwrap(), "orrery-control-plane");
        config.upstreams = Vec::new();
        let dns = Dns::bind(config).await.unwrap();
        let addr = dns.local_addr();
        let client = api.client("test");
        let running = tokio::spawn(dns.run(api.client(COMPONENT), flow));
        let request = query(9, "kube-dns.kube-system.svc.cluster.local.", RecordType::A);
        let started = std::time::Instant::now();
        loop {
            let response = over_udp(addr, &request).await;
            if let Some(answer) = response.answers.first() {
                assert_eq!(answer.data.to_string(), service::CLUSTER_IP);
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "never answered"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // A Service made later is answered too, once its ClusterIP is allocated.
        let web: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"ports": [{"port": 80}]}}))
        .unwrap();
        kube::Api::<Service>::namespaced(client.clone(), "default")
            .create(&Default::default(), &web)
            .await
            .unwrap();
        let request = query(10, "web.default.svc.cluster.local.", RecordType::A);
        while over_udp(addr, &request).await.answers.is_empty() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "web never answered"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The slice is written last.
        let slices = kube::Api::<EndpointSlice>::namespaced(client.clone(), "kube-system");
        let slice = loop {
            if let Some(slice) = slices.get_opt("kube-dns").await.unwrap() {
                break slice;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "no slice");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(slice.endpoints[0].addresses, ["127.0.0.1"]);
        assert_eq!(slice.ports.unwrap()[0].port, Some(i32::from(addr.port())));
        let endpoints = kube::Api::<Endpoints>::namespaced(client, "kube-system")
            .get("kube-dns")
            .await
            .unwrap();
        assert_eq!(
            endpoints.subsets.unwrap()[0].addresses.as_ref().unwrap()[0].ip,
            "127.0.0.1"
        );
        running.abort();
    }
}
