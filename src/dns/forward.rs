//! Forwarding: a query for a name outside the cluster goes, as its client sent it, to the
//! host's resolvers (the `nameserver` lines of its `/etc/resolv.conf`), one after another until
//! one answers: over UDP (then TCP if the answer was truncated) for a UDP query, over TCP for a
//! TCP one. As CoreDNS's `forward . /etc/resolv.conf`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// How long one resolver has to answer.
const TIMEOUT: Duration = Duration::from_secs(2);

/// The resolvers in a resolv.conf's text (port 53), in order.
pub fn resolv_conf_upstreams(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "nameserver").then(|| words.next())?
        })
        .filter_map(|server| server.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// The host's resolvers, from `/etc/resolv.conf`.
pub fn host_upstreams() -> Vec<SocketAddr> {
    resolv_conf_upstreams(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default())
}

/// Sends `request` (a whole DNS message) to each upstream in turn; the first answer and who gave
/// it, or `None` if none did.
pub async fn forward(
    upstreams: &[SocketAddr],
    request: &[u8],
    tcp: bool,
) -> Option<(Vec<u8>, SocketAddr)> {
    for upstream in upstreams {
        let answer = if tcp {
            over_tcp(*upstream, request).await
        } else {
            match over_udp(*upstream, request).await {
                // Truncated: ask again over TCP.
                Some(answer) if answer.len() > 2 && answer[2] & 0x02 != 0 => {
                    over_tcp(*upstream, request).await.or(Some(answer))
                }
                other => other,
            }
        };
        if let Some(answer) = answer {
            return Some((answer, *upstream));
        }
    }
    None
}

async fn over_udp(upstream: SocketAddr, request: &[u8]) -> Option<Vec<u8>> {
    let local = match upstream {
        SocketAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        SocketAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    };
    let socket = UdpSocket::bind(local).await.ok()?;
    socket.connect(upstream).await.ok()?;
    socket.send(request).await.ok()?;
    let mut buffer = vec![0u8; 65535];
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let n = tokio::time::timeout_at(deadline, socket.recv(&mut buffer))
            .await
            .ok()?
            .ok()?;
        // Only the answer to this query (same id).
        if n >= 12 && buffer[..2] == request[..2] {
            buffer.truncate(n);
            return Some(buffer);
        }
    }
}

async fn over_tcp(upstream: SocketAddr, request: &[u8]) -> Option<Vec<u8>> {
    let exchange = async {
        let mut stream = TcpStream::connect(upstream).await.ok()?;
        let length = u16::try_from(request.len()).ok()?;
        let mut framed = Vec::with_capacity(request.len() + 2);
        framed.extend_from_slice(&length.to_be_bytes());
        framed.extend_from_slice(request);
        stream.write_all(&framed).await.ok()?;
        let length = stream.read_u16().await.ok()?;
        let mut answer = vec![0u8; usize::from(length)];
        stream.read_exact(&mut answer).await.ok()?;
        Some(answer)
    };
    tokio::time::timeout(TIMEOUT, exchange).await.ok()?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_are_the_nameserver_lines() {
        let text = "# comment\nsearch example.com\nnameserver 10.0.0.2\nnameserver  ::1\noptions ndots:1\nnameserver bogus\n";
        assert_eq!(
            resolv_conf_upstreams(text),
            vec![
                "10.0.0.2:53".parse::<SocketAddr>().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
    }
}
