//! A fake API server on 127.0.0.1 (plain HTTP) that serves only `pods/{name}/portforward`, with
//! each transport served, refused with a status, or "upgraded" without selecting the protocol;
//! it records every upgrade and every SPDY stream it sees. Streams of port 9000 echo; port 9999
//! fails with a kubelet-style error report. [`FakeApi::cut_all`] closes every upgraded TCP
//! connection at once, as an API server restart does; [`FakeApi::freeze_all`] stops carrying
//! their bytes but keeps them open, as a dead network path does.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures::{SinkExt, StreamExt};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use kubeway_kube::Cluster;
use kubeway_spdy::{Config, Role, Session};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_util::sync::CancellationToken;

/// The port whose connections fail with an error report.
pub const FAILING_PORT: u16 = 9999;

/// How the fake answers one transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 101 and a working port-forward.
    Serve,
    /// This status, with a `metav1.Status` body.
    Refuse(u16),
    /// 101 without selecting the protocol (no subprotocol / no X-Stream-Protocol-Version).
    NoProtocol,
}

/// Answers per transport.
#[derive(Debug, Clone, Copy)]
pub struct Behaviour {
    pub ws_spdy: Answer,
    pub spdy: Answer,
    pub v4: Answer,
}

/// A SPDY stream the fake accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenStream {
    pub session: usize,
    pub stream_id: u32,
    pub stream_type: String,
    pub port: String,
    pub request_id: String,
    /// Whether the SYN_STREAM carried FIN (the client will never write).
    pub fin: bool,
}

#[derive(Default)]
struct Log {
    /// Every request: (path and query, User-Agent).
    requests: Vec<(String, String)>,
    upgrades: Vec<(String, u16)>,
    streams: Vec<SeenStream>,
    sessions: usize,
}

/// The running fake.
pub struct FakeApi {
    pub addr: SocketAddr,
    log: Arc<Mutex<Log>>,
    cancel: CancellationToken,
    /// Cancelled (and replaced) by [`FakeApi::cut_all`].
    cut: Arc<Mutex<CancellationToken>>,
    /// Cancelled (and replaced) by [`FakeApi::freeze_all`].
    freeze: Arc<Mutex<CancellationToken>>,
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl FakeApi {
    pub async fn start(behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let log = Arc::new(Mutex::new(Log::default()));
        let cancel = CancellationToken::new();
        let cut = Arc::new(Mutex::new(cancel.child_token()));
        let freeze = Arc::new(Mutex::new(CancellationToken::new()));
        let (log2, cut2, freeze2, cancel2) = (
            Arc::clone(&log),
            Arc::clone(&cut),
            Arc::clone(&freeze),
            cancel.clone(),
        );
        tokio::spawn(async move {
            loop {
                let tcp = tokio::select! {
                    r = listener.accept() => match r { Ok((t, _)) => t, Err(_) => continue },
                    () = cancel2.cancelled() => return,
                };
                let (log, cut, freeze) =
                    (Arc::clone(&log2), Arc::clone(&cut2), Arc::clone(&freeze2));
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let log = Arc::clone(&log);
                        let cut = cut.lock().expect("cut").clone();
                        let freeze = freeze.lock().expect("freeze").clone();
                        async move { Ok::<_, Infallible>(answer(req, behaviour, log, cut, freeze)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Self {
            addr,
            log,
            cancel,
            cut,
            freeze,
        }
    }

    /// Stops carrying bytes on every upgraded connection, keeping them open (later ones are
    /// served normally).
    pub fn freeze_all(&self) {
        let mut freeze = self.freeze.lock().expect("freeze");
        freeze.cancel();
        *freeze = CancellationToken::new();
    }

    /// Closes every upgraded connection now (later ones are served normally).
    pub fn cut_all(&self) {
        let mut cut = self.cut.lock().expect("cut");
        cut.cancel();
        *cut = self.cancel.child_token();
    }

    /// A cluster whose client talks to this fake.
    pub fn cluster(&self) -> Cluster {
        let url = format!("http://{}", self.addr).parse().expect("url");
        let client = kubeway_kube::build_client(kube::Config::new(url)).expect("client");
        Cluster {
            client,
            namespace: "default".into(),
            context: "fake".into(),
            server: format!("http://{}", self.addr),
        }
    }

    /// The upgrades seen, as (transport, status answered).
    pub fn upgrades(&self) -> Vec<(String, u16)> {
        self.log.lock().expect("log").upgrades.clone()
    }

    /// Every request seen: (path and query, User-Agent).
    pub fn requests(&self) -> Vec<(String, String)> {
        self.log.lock().expect("log").requests.clone()
    }

    /// The SPDY streams seen.
    pub fn streams(&self) -> Vec<SeenStream> {
        self.log.lock().expect("log").streams.clone()
    }
}

fn status_body(code: u16, message: &str) -> Full<Bytes> {
    let v = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "code": code,
    });
    Full::new(Bytes::from(v.to_string()))
}

fn respond(code: u16, message: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(status_body(code, message));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn answer(
    mut req: Request<Incoming>,
    behaviour: Behaviour,
    log: Arc<Mutex<Log>>,
    cancel: CancellationToken,
    freeze: CancellationToken,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    log.lock().expect("log").requests.push((
        req.uri()
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        req.headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
    ));
    let Some(pod) = path
        .strip_prefix("/api/v1/namespaces/default/pods/")
        .and_then(|p| p.strip_suffix("/portforward"))
        .map(str::to_string)
    else {
        return respond(404, "the fake serves only pods/{name}/portforward");
    };
    let h = req.headers();
    let text = |name: header::HeaderName| {
        h.get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(",")
    };
    let upgrade = text(header::UPGRADE).to_ascii_lowercase();
    let protocols = text(header::SEC_WEBSOCKET_PROTOCOL);
    let (kind, how) = if req.method() == Method::POST && upgrade == "spdy/3.1" {
        ("spdy", behaviour.spdy)
    } else if upgrade == "websocket" && protocols.contains("SPDY/3.1+portforward.k8s.io") {
        ("ws-spdy", behaviour.ws_spdy)
    } else if upgrade == "websocket" && protocols.contains("v4.channel.k8s.io") {
        ("v4", behaviour.v4)
    } else {
        log.lock().expect("log").upgrades.push(("none".into(), 400));
        return respond(400, "not an upgrade the fake knows");
    };
    let status = match how {
        _ if pod == "missing" => 404,
        Answer::Refuse(code) => code,
        Answer::Serve | Answer::NoProtocol => 101,
    };
    log.lock()
        .expect("log")
        .upgrades
        .push((kind.into(), status));
    if status == 404 {
        return respond(404, &format!("pods \"{pod}\" not found"));
    }
    if status != 101 {
        return respond(status, &format!("the fake refuses {kind}"));
    }
    let key = h
        .get(header::SEC_WEBSOCKET_KEY)
        .map(|k| derive_accept_key(k.as_bytes()));
    let on_upgrade = hyper::upgrade::on(&mut req);
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let rh = r.headers_mut();
    rh.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if kind == "spdy" {
        rh.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        if how == Answer::Serve {
            rh.insert(
                "x-stream-protocol-version",
                HeaderValue::from_static("portforward.k8s.io"),
            );
        }
    } else {
        rh.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if let Some(accept) = key.and_then(|k| HeaderValue::from_str(&k).ok()) {
            rh.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        }
        if how == Answer::Serve {
            let chosen = if kind == "v4" {
                "v4.channel.k8s.io"
            } else {
                "SPDY/3.1+portforward.k8s.io"
            };
            rh.insert(
                header::SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_static(chosen),
            );
        }
    }
    if how == Answer::Serve {
        let port = req
            .uri()
            .query()
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("ports=")))
            .and_then(|p| p.parse::<u16>().ok())
            .unwrap_or(0);
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            // The session runs on one end of a pipe; the pump to the socket stops at the cut,
            // which closes the TCP connection whatever the session's streams are doing.
            let (inner, mut outer) = tokio::io::duplex(256 * 1024);
            let mut socket = TokioIo::new(upgraded);
            let cut = cancel.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut socket, &mut outer) => {}
                    () = cut.cancelled() => {}
                    // Frozen: hold the socket open, carry nothing, until the cut.
                    () = freeze.cancelled() => cut.cancelled().await,
                }
            });
            let io = inner;
            let serve = async move {
                match kind {
                    "spdy" => serve_spdy(io, log).await,
                    "ws-spdy" => {
                        let ws = WebSocketStream::from_raw_socket(
                            io,
                            tokio_tungstenite::tungstenite::protocol::Role::Server,
                            None,
                        )
                        .await;
                        serve_spdy(kubeway_spdy::MessageTunnel::new(ws), log).await;
                    }
                    _ => serve_v4(io, port).await,
                }
            };
            tokio::select! {
                () = serve => {}
                () = cancel.cancelled() => {}
            }
        });
    }
    r
}

/// Pairs streams by `requestid`; port 9999 fails, any other port echoes.
async fn serve_spdy<T>(io: T, log: Arc<Mutex<Log>>)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (session, mut incoming) = Session::new(io, Role::Server, Config::default());
    let session_no = {
        let mut l = log.lock().expect("log");
        l.sessions += 1;
        l.sessions
    };
    let mut halves: HashMap<String, (String, kubeway_spdy::Stream)> = HashMap::new();
    while let Some(inc) = incoming.next().await {
        let h = inc.headers();
        let seen = SeenStream {
            session: session_no,
            stream_id: inc.id(),
            stream_type: h.get("streamtype").unwrap_or_default().to_string(),
            port: h.get("port").unwrap_or_default().to_string(),
            request_id: h.get("requestid").unwrap_or_default().to_string(),
            fin: inc.is_fin(),
        };
        log.lock().expect("log").streams.push(seen.clone());
        let Ok(stream) = inc.accept(Vec::new(), false) else {
            continue;
        };
        let Some((other_type, other)) = halves.remove(&seen.request_id) else {
            halves.insert(seen.request_id.clone(), (seen.stream_type.clone(), stream));
            continue;
        };
        let (error, data) = if other_type == "error" {
            (other, stream)
        } else {
            (stream, other)
        };
        let port: u16 = seen.port.parse().unwrap_or(0);
        tokio::spawn(forward_pair(error, data, port));
    }
    drop(session);
}

/// As the kubelet: on failure the error text, then the error stream's end, then the data
/// stream's; on success an echo, then both ends.
async fn forward_pair(mut error: kubeway_spdy::Stream, mut data: kubeway_spdy::Stream, port: u16) {
    if port == FAILING_PORT {
        let text = format!(
            "error forwarding port {port} to pod fake, uid 0: failed to connect to localhost:{port} inside namespace \"fake\": connection refused"
        );
        let _ = error.write_all(text.as_bytes()).await;
        let _ = error.shutdown().await;
        let _ = data.shutdown().await;
        return;
    }
    let (mut rd, mut wr) = tokio::io::split(data);
    let _ = tokio::io::copy(&mut rd, &mut wr).await;
    let _ = wr.shutdown().await;
    let _ = error.shutdown().await;
}

/// `v4.channel.k8s.io` for one port: the port frames, then an echo on channel 0.
async fn serve_v4<T>(io: T, port: u16)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ws = WebSocketStream::from_raw_socket(
        io,
        tokio_tungstenite::tungstenite::protocol::Role::Server,
        None,
    )
    .await;
    let (mut tx, mut rx) = ws.split();
    let le = port.to_le_bytes();
    for ch in [0u8, 1] {
        if tx
            .send(Message::Binary(Bytes::from(vec![ch, le[0], le[1]])))
            .await
            .is_err()
        {
            return;
        }
    }
    while let Some(Ok(msg)) = rx.next().await {
        let echo = match msg {
            Message::Binary(b) if b.first() == Some(&0) && b.len() > 1 => b,
            Message::Close(_) => break,
            _ => continue,
        };
        if tx.send(Message::Binary(echo)).await.is_err() {
            return;
        }
    }
    let _ = tx.close().await;
}
