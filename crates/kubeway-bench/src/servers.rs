//! The loopback contender's servers: the echo (port 9000) and blob (`source N` / `sink`, port
//! 9001) protocols of the lab's images, served on 127.0.0.1:0 with a listen backlog as deep as
//! the kernel allows, so the limit row measures the machine, not a short accept queue.

use std::net::{Ipv4Addr, SocketAddr};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;

/// Linux's default `net.core.somaxconn`, which Go (and so kubectl) passes to `listen`.
/// tokio's `TcpListener::bind` uses 128, and 200 simultaneous connects then overflow the
/// accept queue: dropped SYNs are retried after a second.
pub const BACKLOG: u32 = 4096;

/// Binds 127.0.0.1:0 with [`BACKLOG`].
pub fn bind_loopback() -> std::io::Result<TcpListener> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    sock.listen(BACKLOG)
}

/// Which protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Echo everything until EOF, then half-close.
    Echo,
    /// `source N` or `sink`.
    Blob,
}

/// A server; stops accepting when dropped.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    accept: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Starts a server on the current runtime.
pub fn start(protocol: Protocol) -> std::io::Result<Server> {
    let listener = bind_loopback()?;
    let addr = listener.local_addr()?;
    let accept = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            };
            let _ = tcp.set_nodelay(true);
            tokio::spawn(async move {
                match protocol {
                    Protocol::Echo => echo(tcp).await,
                    Protocol::Blob => blob(tcp).await,
                }
            });
        }
    });
    Ok(Server { addr, accept })
}

async fn echo(tcp: TcpStream) {
    let (mut rd, mut wr) = tcp.into_split();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if wr.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
    let _ = wr.shutdown().await;
}

/// The lab's blob protocol, byte for byte (`kubeway_lab::images`).
async fn blob(tcp: TcpStream) {
    let mut rd = BufReader::new(tcp);
    let mut line = String::new();
    if rd.read_line(&mut line).await.is_err() {
        return;
    }
    let cmd = line.trim();
    if let Some(n) = cmd.strip_prefix("source ") {
        let Ok(total) = n.trim().parse::<u64>() else {
            let _ = rd
                .get_mut()
                .write_all(b"error: source needs a byte count\n")
                .await;
            return;
        };
        let mut sent = 0u64;
        let chunk = 256 * 1024;
        while sent < total {
            let n = chunk.min((total - sent) as usize);
            let bytes = kubeway_lab::images::pattern(sent, n);
            if rd.get_mut().write_all(&bytes).await.is_err() {
                return;
            }
            sent += n as u64;
        }
        let _ = rd.get_mut().shutdown().await;
    } else if cmd == "sink" {
        let mut hasher = Sha256::new();
        let mut total = 0u64;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    hasher.update(&buf[..n]);
                    total += n as u64;
                }
            }
        }
        let hex: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let _ = rd
            .get_mut()
            .write_all(format!("{total} {hex}\n").as_bytes())
            .await;
        let _ = rd.get_mut().shutdown().await;
    } else {
        let _ = rd
            .get_mut()
            .write_all(b"error: send \"source N\\n\" or \"sink\\n\"\n")
            .await;
    }
}
