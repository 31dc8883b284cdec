//! UDP relayed to a NodePort the host reaches: datagrams to a local address go to the node's
//! UDP NodePort, one upstream socket per client (so answers find their way back, as conntrack
//! keeps a flow), flows forgotten after 30 s without traffic. The port-forward API carries TCP
//! only, so where only the API server is reachable UDP is not carried (the caller says so).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

/// How long a flow lives without traffic (conntrack's UDP timeout).
pub const FLOW_IDLE: Duration = Duration::from_secs(30);

/// Counters of one relay.
#[derive(Debug, Default)]
pub struct UdpStats {
    /// Datagrams from local clients.
    pub up: AtomicU64,
    /// Datagrams back to them.
    pub down: AtomicU64,
    /// Datagrams that could not be sent on.
    pub dropped: AtomicU64,
}

/// Binds UDP `port` at `ip`, else (a privileged port the process may not bind) port + 8000,
/// else a free port.
pub async fn bind(ip: IpAddr, port: u16) -> std::io::Result<UdpSocket> {
    match UdpSocket::bind(SocketAddr::new(ip, port)).await {
        Ok(s) => Ok(s),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            let alt = kubeway_net::loopback::unprivileged_alternative(port);
            match UdpSocket::bind(SocketAddr::new(ip, alt)).await {
                Ok(s) => Ok(s),
                Err(_) => UdpSocket::bind(SocketAddr::new(ip, 0)).await,
            }
        }
        Err(e) => Err(e),
    }
}

/// Relays datagrams arriving on `local` to `upstream` and the answers back, until `cancel`.
pub async fn relay(
    local: UdpSocket,
    upstream: SocketAddr,
    stats: Arc<UdpStats>,
    cancel: CancellationToken,
) {
    let local = Arc::new(local);
    let flows: Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>> = Arc::default();
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, client) = tokio::select! {
            r = local.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(_) => continue,
            },
            _ = cancel.cancelled() => return,
        };
        stats.up.fetch_add(1, Ordering::Relaxed);
        let flow = {
            let mut map = flows.lock().await;
            match map.get(&client) {
                Some(f) => f.clone(),
                None => {
                    let any: SocketAddr = if upstream.is_ipv4() {
                        SocketAddr::from(([0, 0, 0, 0], 0))
                    } else {
                        SocketAddr::from(([0u16; 8], 0))
                    };
                    let Ok(sock) = UdpSocket::bind(any).await else {
                        stats.dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    if sock.connect(upstream).await.is_err() {
                        stats.dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let sock = Arc::new(sock);
                    map.insert(client, sock.clone());
                    tokio::spawn(back(
                        sock.clone(),
                        local.clone(),
                        client,
                        flows.clone(),
                        stats.clone(),
                        cancel.clone(),
                    ));
                    sock
                }
            }
        };
        if flow.send(buf.get(..n).unwrap_or_default()).await.is_err() {
            stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Carries one flow's answers back to its client until it idles out.
async fn back(
    sock: Arc<UdpSocket>,
    local: Arc<UdpSocket>,
    client: SocketAddr,
    flows: Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>>,
    stats: Arc<UdpStats>,
    cancel: CancellationToken,
) {
    let mut buf = vec![0u8; 65536];
    loop {
        let got = tokio::select! {
            r = tokio::time::timeout(FLOW_IDLE, sock.recv(&mut buf)) => r,
            _ = cancel.cancelled() => break,
        };
        match got {
            Ok(Ok(n)) => {
                if local
                    .send_to(buf.get(..n).unwrap_or_default(), client)
                    .await
                    .is_ok()
                {
                    stats.down.fetch_add(1, Ordering::Relaxed);
                }
            }
            // ICMP port unreachable surfaces as an error on a connected socket: keep the flow.
            Ok(Err(_)) => {}
            Err(_) => break,
        }
    }
    flows.lock().await.remove(&client);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn datagrams_go_up_and_answers_find_their_client() {
        // An upstream UDP echo.
        let echo = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let echo_addr = echo.local_addr().expect("addr");
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = echo.recv_from(&mut buf).await {
                let _ = echo.send_to(&buf[..n], from).await;
            }
        });
        let local = bind("127.0.0.1".parse().expect("ip"), 0)
            .await
            .expect("bind");
        let at = local.local_addr().expect("addr");
        let stats = Arc::new(UdpStats::default());
        let cancel = CancellationToken::new();
        tokio::spawn(relay(local, echo_addr, stats.clone(), cancel.clone()));
        let mut clients = Vec::new();
        for i in 0..3u8 {
            let c = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
            c.connect(at).await.expect("connect");
            clients.push((i, c));
        }
        for (i, c) in &clients {
            c.send(&[*i; 10]).await.expect("send");
        }
        for (i, c) in &clients {
            let mut buf = [0u8; 64];
            let n = tokio::time::timeout(Duration::from_secs(10), c.recv(&mut buf))
                .await
                .expect("an answer")
                .expect("recv");
            assert_eq!(&buf[..n], &[*i; 10], "each client gets its own answer");
        }
        assert_eq!(stats.up.load(Ordering::Relaxed), 3);
        cancel.cancel();
    }
}
