//! An HTTP front door on one local port that routes each connection by its `Host` header
//! (`SVC.NS.localhost`, `SVC.localhost`) to the local address where `kubeway up` serves that
//! Service, so a browser reaches every Service with no DNS set-up: browsers and curl resolve
//! `*.localhost` to the loopback address themselves.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use kubeway_net::{Accepted, CarryOptions, Outcome, Stats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Host name (lower case, no port) → where the Service listens.
pub type Routes = Arc<RwLock<BTreeMap<String, SocketAddr>>>;

/// The most a request head may take before the `Host` header is found.
const HEAD_LIMIT: usize = 64 * 1024;
/// How long a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// The `Host` header of a request head, lower case and without its port, once the head is
/// complete; `Ok(None)` while more bytes are needed.
fn host_of(head: &[u8]) -> Result<Option<String>, &'static str> {
    let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let text = std::str::from_utf8(head.get(..end).unwrap_or_default())
        .map_err(|_| "the request head is not text")?;
    for line in text.split("\r\n").skip(1) {
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("host")
        {
            let host = value.trim();
            let host = match host.rsplit_once(':') {
                Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
                _ => host,
            };
            return Ok(Some(host.trim_end_matches('.').to_ascii_lowercase()));
        }
    }
    Err("the request has no Host header")
}

async fn answer(mut tcp: TcpStream, status: &str, body: String) {
    let text = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tcp.write_all(text.as_bytes()).await;
    let _ = tcp.shutdown().await;
}

/// Serves the front door on `listener` until `cancel`.
pub async fn serve(
    listener: TcpListener,
    routes: Routes,
    stats: Arc<Stats>,
    cancel: CancellationToken,
) {
    let live = stats.clone();
    kubeway_net::serve(listener, cancel, stats, crate::DRAIN, move |a: Accepted| {
        let routes = routes.clone();
        let live = live.clone();
        async move { one(a, routes, &live).await }
    })
    .await
}

async fn one(a: Accepted, routes: Routes, live: &Stats) -> Outcome {
    let mut tcp = a.tcp;
    let mut head = Vec::with_capacity(4096);
    let host = tokio::time::timeout(HEAD_TIMEOUT, async {
        let mut buf = [0u8; 4096];
        loop {
            match host_of(&head) {
                Ok(Some(h)) => return Ok(h),
                Err(e) => return Err(e.to_string()),
                Ok(None) if head.len() >= HEAD_LIMIT => {
                    return Err("the request head is too large".to_string());
                }
                Ok(None) => {}
            }
            match tcp.read(&mut buf).await {
                Ok(0) => return Err("the client closed before sending a request".into()),
                Ok(n) => head.extend_from_slice(buf.get(..n).unwrap_or_default()),
                Err(e) => return Err(e.to_string()),
            }
        }
    })
    .await
    .unwrap_or_else(|_| Err("no request head within 30 s".into()));
    let host = match host {
        Ok(h) => h,
        Err(why) => {
            answer(tcp, "400 Bad Request", format!("kubeway up: {why}\n")).await;
            return Outcome::Failed;
        }
    };
    let target = routes
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(&host)
        .copied();
    let Some(addr) = target else {
        let known: Vec<String> = routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        answer(
            tcp,
            "404 Not Found",
            format!(
                "kubeway up serves no Service as {host}; known: {}\n",
                known.join(", ")
            ),
        )
        .await;
        return Outcome::Failed;
    };
    let mut upstream = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => {
            answer(
                tcp,
                "502 Bad Gateway",
                format!("kubeway up: {host} at {addr}: {e}\n"),
            )
            .await;
            return Outcome::Failed;
        }
    };
    let _ = upstream.set_nodelay(true);
    if upstream.write_all(&head).await.is_err() {
        kubeway_net::reset(tcp);
        return Outcome::Failed;
    }
    let kill = a.kill.clone();
    let stop = async move {
        kill.cancelled().await;
        "kubeway stopped".to_string()
    };
    let done = kubeway_net::carry(tcp, upstream, CarryOptions::default(), stop, Some(live)).await;
    Outcome::of(&done.ending)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_headers_are_read_as_browsers_send_them() {
        assert_eq!(host_of(b"GET / HTTP/1.1\r\nHost: x").expect("ok"), None);
        assert_eq!(
            host_of(b"GET / HTTP/1.1\r\nhost: Web.Shop.localhost:8080\r\n\r\n").expect("ok"),
            Some("web.shop.localhost".into())
        );
        assert_eq!(
            host_of(b"GET / HTTP/1.1\r\nUser-Agent: a\r\nHOST: web.localhost.\r\n\r\n")
                .expect("ok"),
            Some("web.localhost".into())
        );
        assert!(host_of(b"GET / HTTP/1.1\r\nUser-Agent: a\r\n\r\n").is_err());
    }

    #[tokio::test]
    async fn connections_go_where_their_host_says() {
        // Two upstreams answering with their name.
        let mut addrs = Vec::new();
        for name in ["one", "two"] {
            let l = kubeway_net::bind_loopback(0).await.expect("bind");
            addrs.push(l.local_addr().expect("addr"));
            tokio::spawn(async move {
                while let Ok((mut s, _)) = l.accept().await {
                    tokio::spawn(async move {
                        let mut buf = [0u8; 1024];
                        let _ = s.read(&mut buf).await;
                        let _ = s
                            .write_all(
                                format!("HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n{name}")
                                    .as_bytes(),
                            )
                            .await;
                    });
                }
            });
        }
        let routes: Routes = Arc::default();
        routes
            .write()
            .expect("w")
            .insert("one.default.localhost".into(), addrs[0]);
        routes
            .write()
            .expect("w")
            .insert("two.default.localhost".into(), addrs[1]);
        let front = kubeway_net::bind_loopback(0).await.expect("bind");
        let at = front.local_addr().expect("addr");
        let cancel = CancellationToken::new();
        tokio::spawn(serve(front, routes, Arc::default(), cancel.clone()));
        for (host, want) in [
            ("one.default.localhost", "one"),
            ("two.default.localhost", "two"),
        ] {
            let mut c = TcpStream::connect(at).await.expect("connect");
            c.write_all(format!("GET / HTTP/1.1\r\nHost: {host}:{}\r\n\r\n", at.port()).as_bytes())
                .await
                .expect("write");
            let mut got = [0u8; 64];
            let mut n = 0;
            while !String::from_utf8_lossy(&got[..n]).ends_with(want) {
                let k = c.read(&mut got[n..]).await.expect("read");
                assert!(
                    k > 0,
                    "answer for {host}: {:?}",
                    String::from_utf8_lossy(&got[..n])
                );
                n += k;
            }
        }
        let mut c = TcpStream::connect(at).await.expect("connect");
        c.write_all(b"GET / HTTP/1.1\r\nHost: nope.localhost\r\n\r\n")
            .await
            .expect("write");
        let mut text = String::new();
        c.read_to_string(&mut text).await.expect("read");
        assert!(text.starts_with("HTTP/1.1 404"), "{text}");
        assert!(
            text.contains("one.default.localhost"),
            "lists the known: {text}"
        );
        cancel.cancel();
    }
}
