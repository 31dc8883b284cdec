//! The loopback contender's servers: the lab's own echo (port 9000 protocol) and blob
//! (`source N` / `sink`) images, run directly on 127.0.0.1:0 without a cluster in between, so
//! the limit row measures exactly the same server code as the pods do.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use kubeway_lab::images::{self, Identity, Image, Running, Switches};
use tokio::net::TcpListener;

/// Binds 127.0.0.1:0 with a deep accept queue (see [`kubeway_lab::images::listen`]).
pub fn bind_loopback() -> std::io::Result<TcpListener> {
    images::listen(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
}

/// Which protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Echo everything until EOF, then half-close.
    Echo,
    /// `source N` or `sink`.
    Blob,
}

/// A server; stops when dropped.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    _running: Running,
}

/// Starts a server for `protocol` on 127.0.0.1 and a free port.
pub async fn start(protocol: Protocol) -> std::io::Result<Server> {
    let image = match protocol {
        Protocol::Echo => Image::Echo,
        Protocol::Blob => Image::Blob,
    };
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let id = Identity {
        pod: "loopback".into(),
        namespace: "bench".into(),
        pod_ip: ip,
        node: "host".into(),
        container: "loopback".into(),
    };
    let running = images::start(
        &Default::default(),
        image,
        &Switches::default(),
        id,
        &[ip],
        &[0],
        &images::PodLife::default(),
    )
    .await?;
    let port = running.bound.first().map(|b| b.2).unwrap_or(0);
    Ok(Server {
        addr: SocketAddr::new(ip, port),
        _running: running,
    })
}
