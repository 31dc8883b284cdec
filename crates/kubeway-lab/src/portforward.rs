//! `pods/{name}/portforward`: negotiates the transport and carries bytes to the pod, dialing
//! `localhost:port` inside the pod the way a container runtime does. Serves all four wire
//! variants: legacy SPDY/3.1 (`POST` + `Upgrade: SPDY/3.1`), SPDY tunnelled in WebSocket
//! (`SPDY/3.1+portforward.k8s.io`, KEP-4006), and `v4.channel.k8s.io` / `v4.base64.channel.k8s.io`.

use std::sync::Arc;

use base64::Engine;
use futures::{SinkExt, StreamExt};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, frame::coding::CloseCode};

use crate::Ctx;
use crate::api::{Body, Query, ResourceRequest};
use crate::status::ApiError;

/// The wire variants of port-forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `v4.channel.k8s.io`: binary messages, one channel byte.
    V4,
    /// `v4.base64.channel.k8s.io`: text messages, ASCII channel digit, base64 payload.
    V4Base64,
    /// `SPDY/3.1+portforward.k8s.io` tunnelled in WebSocket (KEP-4006).
    WsSpdy,
    /// Legacy `POST` + `Upgrade: SPDY/3.1`.
    Spdy,
}

/// Which transport a request asks for, or None when it is not an upgrade at all.
pub fn negotiate(req: &Request<Incoming>) -> Option<Transport> {
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if upgrade == "spdy/3.1" && req.method() == Method::POST {
        return Some(Transport::Spdy);
    }
    if upgrade != "websocket" {
        return None;
    }
    let offered: Vec<String> = req
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| {
            v.split(',')
                .map(|p| p.trim().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    if offered.is_empty() {
        return Some(Transport::V4);
    }
    for p in &offered {
        match p.as_str() {
            "SPDY/3.1+portforward.k8s.io" => return Some(Transport::WsSpdy),
            "v4.channel.k8s.io" => return Some(Transport::V4),
            "v4.base64.channel.k8s.io" => return Some(Transport::V4Base64),
            _ => {}
        }
    }
    None
}

fn protocol_name(t: Transport) -> &'static str {
    match t {
        Transport::V4 => "v4.channel.k8s.io",
        Transport::V4Base64 => "v4.base64.channel.k8s.io",
        Transport::WsSpdy => "SPDY/3.1+portforward.k8s.io",
        Transport::Spdy => "portforward.k8s.io",
    }
}

/// The error text a kubelet writes on a port's error channel.
pub fn forward_error(port: u16, pod: &str, uid: &str, cause: &str) -> String {
    format!("error forwarding port {port} to pod {pod}, uid {uid}: {cause}")
}

/// A pod as port-forward sees it.
#[derive(Clone)]
pub struct PodTarget {
    /// Namespace.
    pub ns: String,
    /// Name.
    pub name: String,
    /// UID (for error texts).
    pub uid: String,
}

impl PodTarget {
    fn from_object(pod: &Value) -> Self {
        let m = &pod["metadata"];
        Self {
            ns: m["namespace"].as_str().unwrap_or_default().into(),
            name: m["name"].as_str().unwrap_or_default().into(),
            uid: m["uid"].as_str().unwrap_or_default().into(),
        }
    }

    /// Dials `localhost:port` inside the pod; on failure, the kubelet's error text.
    pub async fn dial(&self, ctx: &Ctx, port: u16) -> Result<TcpStream, String> {
        ctx.kubelet
            .dial(&self.ns, &self.name, port)
            .await
            .map_err(|cause| forward_error(port, &self.name, &self.uid, &cause))
    }
}

fn parse_ports(q: &Query) -> Result<Vec<u16>, ApiError> {
    let raw = q.all("ports");
    if raw.is_empty() {
        return Err(ApiError::bad_request(
            "query parameter \"port\" is required: name the pod ports in ?ports=",
        ));
    }
    raw.iter()
        .map(|p| {
            p.parse::<u16>().ok().filter(|n| *n > 0).ok_or_else(|| {
                ApiError::bad_request(format!("invalid port {p:?}: ports must be 1-65535"))
            })
        })
        .collect()
}

/// Serves a port-forward request.
pub async fn handle(
    ctx: Arc<Ctx>,
    mut req: Request<Incoming>,
    rr: ResourceRequest,
    q: Query,
) -> Result<Response<Body>, ApiError> {
    let name = rr.name.clone().unwrap_or_default();
    let ns = rr.ns.clone().unwrap_or_default();
    let pod = ctx
        .store
        .get(rr.res, &ns, &name)
        .ok_or_else(|| ApiError::not_found("pods", &name))?;
    if pod["status"]["phase"].as_str() != Some("Running") {
        return Err(ApiError::bad_request(format!(
            "pod {name} is not running (phase {}): port-forward needs a running pod",
            pod["status"]["phase"].as_str().unwrap_or("Unknown")
        )));
    }
    let target = PodTarget::from_object(&pod);
    let Some(transport) = negotiate(&req) else {
        return Err(ApiError::bad_request(
            "port-forward needs a connection upgrade: WebSocket with v4.channel.k8s.io, v4.base64.channel.k8s.io or SPDY/3.1+portforward.k8s.io, or POST with Upgrade: SPDY/3.1",
        ));
    };
    let cancel = ctx.api_cancel();
    if transport == Transport::Spdy {
        let asked = req
            .headers()
            .get_all(HEADER_PROTOCOL_VERSION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(',').map(str::trim))
            .any(|p| p == SPDY_PROTOCOL);
        if !asked {
            let mut r = crate::api::error_response(&ApiError::forbidden_plain(format!(
                "unable to upgrade: no common stream protocol: the lab serves {SPDY_PROTOCOL}"
            )));
            r.headers_mut().insert(
                HEADER_ACCEPTED_PROTOCOLS,
                HeaderValue::from_static(SPDY_PROTOCOL),
            );
            return Ok(r);
        }
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(upgraded) = upgrade.await else { return };
            serve_spdy(ctx, TokioIo::new(upgraded), target, cancel).await;
        });
        let mut r = Response::new(crate::api::json_response(200, &Value::Null).into_body());
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = r.headers_mut();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        h.insert(
            HEADER_PROTOCOL_VERSION,
            HeaderValue::from_static(SPDY_PROTOCOL),
        );
        return Ok(r);
    }
    let key = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .map(|k| k.as_bytes().to_vec())
        .ok_or_else(|| ApiError::bad_request("missing Sec-WebSocket-Key"))?;
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key);
    if transport == Transport::WsSpdy {
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(upgraded) = upgrade.await else { return };
            let ws =
                WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
            serve_spdy(ctx, kubeway_spdy::MessageTunnel::new(ws), target, cancel).await;
        });
        return switching_websocket(&accept, transport);
    }
    let ports = parse_ports(&q)?;
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let upgraded = match upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "port-forward upgrade failed");
                return;
            }
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        tokio::select! {
            _ = serve_v4(ctx, ws, target, ports, transport == Transport::V4Base64) => {}
            _ = cancel.cancelled() => {}
        }
    });
    switching_websocket(&accept, transport)
}

fn switching_websocket(accept: &str, transport: Transport) -> Result<Response<Body>, ApiError> {
    let mut r = Response::new(crate::api::json_response(200, &Value::Null).into_body());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(accept).map_err(|e| ApiError::internal(e.to_string()))?,
    );
    h.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(protocol_name(transport)),
    );
    Ok(r)
}

const SPDY_PROTOCOL: &str = "portforward.k8s.io";
const HEADER_PROTOCOL_VERSION: &str = "x-stream-protocol-version";
const HEADER_ACCEPTED_PROTOCOLS: &str = "x-accepted-stream-protocol-versions";
/// How long the two streams of one forwarded connection may arrive apart, as the kubelet's
/// `streamCreationTimeout`.
const STREAM_PAIR_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Default)]
struct Pair {
    error: Option<kubeway_spdy::Stream>,
    data: Option<kubeway_spdy::Stream>,
    port: u16,
}

/// Serves one SPDY port-forward session, the way the kubelet's CRI streaming server does:
/// every stream is answered, the error and data streams of a connection are paired by
/// `requestid`, the pod is dialed, and a failure is written on that connection's error stream
/// only. No WINDOW_UPDATE is ever sent.
async fn serve_spdy<T>(
    ctx: Arc<Ctx>,
    io: T,
    pod: PodTarget,
    cancel: tokio_util::sync::CancellationToken,
) where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut config = kubeway_spdy::Config::default();
    // The kubelet answers every stream; never refuse a burst for want of backlog.
    config.accept_backlog = 65536;
    let (session, mut incoming) =
        kubeway_spdy::Session::new(io, kubeway_spdy::Role::Server, config);
    let mut forwards = tokio::task::JoinSet::new();
    let mut pairs: std::collections::HashMap<String, Pair> = std::collections::HashMap::new();
    let (expire_tx, mut expire_rx) = mpsc::unbounded_channel::<String>();
    loop {
        let inc = tokio::select! {
            i = incoming.next() => match i { Some(i) => i, None => break },
            _ = cancel.cancelled() => break,
            Some(_) = forwards.join_next(), if !forwards.is_empty() => continue,
            Some(key) = expire_rx.recv() => {
                if let Some(p) = pairs.remove(&key) {
                    tracing::debug!(%key, "timed out waiting for the other stream of a port-forward connection");
                    for s in [p.error, p.data].into_iter().flatten() {
                        s.reset(kubeway_spdy::RstStatus::CANCEL);
                    }
                }
                continue;
            }
        };
        let h = inc.headers();
        let stream_type = h.get("streamtype").unwrap_or_default().to_string();
        let port = h
            .get("port")
            .and_then(|p| p.parse::<u16>().ok())
            .filter(|p| *p > 0);
        let id = inc.id();
        let key = match h.get("requestid") {
            Some(r) => r.to_string(),
            None if stream_type == "error" => id.to_string(),
            None => id.saturating_sub(2).to_string(),
        };
        let (Some(port), "error" | "data") = (port, stream_type.as_str()) else {
            inc.reject(kubeway_spdy::RstStatus::PROTOCOL_ERROR);
            continue;
        };
        let Ok(stream) = inc.accept(Vec::new(), false) else {
            continue;
        };
        let pair = pairs.entry(key.clone()).or_insert_with(|| {
            let tx = expire_tx.clone();
            let k = key.clone();
            tokio::spawn(async move {
                tokio::time::sleep(STREAM_PAIR_TIMEOUT).await;
                let _ = tx.send(k);
            });
            Pair {
                port,
                ..Pair::default()
            }
        });
        if stream_type == "error" {
            pair.error = Some(stream);
        } else {
            pair.data = Some(stream);
        }
        if pair.error.is_some() && pair.data.is_some() {
            let Some(Pair {
                error: Some(error),
                data: Some(data),
                port,
            }) = pairs.remove(&key)
            else {
                continue;
            };
            let ctx = ctx.clone();
            let pod = pod.clone();
            forwards.spawn(forward_pair(ctx, pod, port, error, data));
        }
    }
    if cancel.is_cancelled() {
        // The API server is going away: every connection it carried is cut.
        forwards.abort_all();
        session.close().await;
    } else {
        while forwards.join_next().await.is_some() {}
    }
}

/// How long the runtime waits for the other direction once one has ended, as containerd's
/// `portForward` does ("give a chance to terminate gracefully or timeout after 1s").
const OTHER_DIRECTION_GRACE: std::time::Duration = std::time::Duration::from_secs(1);
/// The copy buffer of Go's `io.Copy`, so DATA frames have the upstream size.
const COPY_BUFFER: usize = 32 * 1024;

/// Copies `from` into `to` in `io.Copy`'s 32 KiB pieces until `from` ends; like `io.Copy`, it
/// does not shut `to` down.
async fn copy_plain<R, W>(from: &mut R, to: &mut W) -> std::io::Result<()>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; COPY_BUFFER];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        to.write_all(&buf[..n]).await?;
    }
}

/// Carries one connection the way containerd's CRI `portForward` does: copy both ways; when
/// the first direction ends, give the other at most a second, then close the pod connection
/// and the data stream. The client's half-close is not passed on to the app (containerd never
/// calls `CloseWrite`): the app sees the end only when the connection is closed, a second
/// after the client's. (One liberty: the app's own end reaches the client at once rather than
/// when the runtime returns.) An app that
/// closes (even one killed mid-transfer) ends the stream cleanly; a copy error (the app reset
/// the connection, the client reset the stream) is written on the error stream, as the kubelet
/// writes the runtime's error.
async fn forward_pair(
    ctx: Arc<Ctx>,
    pod: PodTarget,
    port: u16,
    mut error: kubeway_spdy::Stream,
    data: kubeway_spdy::Stream,
) {
    let tcp = match pod.dial(&ctx, port).await {
        Ok(tcp) => tcp,
        Err(text) => {
            let _ = error.write_all(text.as_bytes()).await;
            let _ = error.shutdown().await;
            let mut data = data;
            let _ = data.shutdown().await;
            return;
        }
    };
    let (mut pod_rd, mut pod_wr) = tcp.into_split();
    let (mut cli_rd, mut cli_wr) = tokio::io::split(data);
    let failure = {
        let up = copy_plain(&mut cli_rd, &mut pod_wr);
        // The app's end is passed on at once (containerd closes the stream only on return, up
        // to a second later; the lab spares clients that wait, which changes no outcome).
        let down = async {
            copy_plain(&mut pod_rd, &mut cli_wr).await?;
            cli_wr.shutdown().await
        };
        tokio::pin!(up, down);
        let (first, other) = tokio::select! {
            r = &mut up => (r, tokio::time::timeout(OTHER_DIRECTION_GRACE, &mut down).await),
            r = &mut down => (r, tokio::time::timeout(OTHER_DIRECTION_GRACE, &mut up).await),
        };
        match (first, other) {
            (Err(e), _) | (Ok(()), Ok(Err(e))) => Some(e),
            _ => None,
        }
    };
    drop((pod_rd, pod_wr));
    if let Some(e) = failure {
        let cause = format!(
            "failed to execute portforward for \"{}\" port {port}: {e}",
            pod.uid
        );
        let _ = error
            .write_all(forward_error(port, &pod.name, &pod.uid, &cause).as_bytes())
            .await;
    }
    let mut data = cli_rd.unsplit(cli_wr);
    let _ = data.shutdown().await;
    let _ = error.shutdown().await;
}

fn frame(base64: bool, ch: u8, payload: &[u8]) -> Message {
    if base64 {
        let mut s = String::with_capacity(1 + payload.len() * 4 / 3 + 4);
        s.push((b'0' + ch) as char);
        s.push_str(&base64::engine::general_purpose::STANDARD.encode(payload));
        Message::Text(s.into())
    } else {
        let mut v = Vec::with_capacity(payload.len() + 1);
        v.push(ch);
        v.extend_from_slice(payload);
        Message::Binary(v.into())
    }
}

async fn serve_v4<S>(
    ctx: Arc<Ctx>,
    ws: WebSocketStream<S>,
    pod: PodTarget,
    ports: Vec<u16>,
    base64: bool,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut stream) = ws.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(64);
    let writer = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            let close = matches!(m, Message::Close(_));
            if sink.send(m).await.is_err() || close {
                break;
            }
        }
        let _ = sink.close().await;
    });

    // Per port: the write half toward the pod, fed by the WebSocket reader.
    let mut to_pod: Vec<Option<mpsc::Sender<Vec<u8>>>> = Vec::new();
    let mut pumps = tokio::task::JoinSet::new();
    for (i, port) in ports.iter().enumerate() {
        let data_ch = (2 * i) as u8;
        let err_ch = data_ch + 1;
        let le = port.to_le_bytes();
        let _ = out_tx.send(frame(base64, data_ch, &le)).await;
        let _ = out_tx.send(frame(base64, err_ch, &le)).await;
        match pod.dial(&ctx, *port).await {
            Ok(tcp) => {
                let (mut rd, mut wr) = tcp.into_split();
                let (tx, mut rx) = mpsc::channel::<Vec<u8>>(64);
                to_pod.push(Some(tx));
                let out = out_tx.clone();
                pumps.spawn(async move {
                    let up = async move {
                        while let Some(buf) = rx.recv().await {
                            if wr.write_all(&buf).await.is_err() {
                                break;
                            }
                        }
                        let _ = wr.shutdown().await;
                    };
                    let down = async move {
                        let mut buf = vec![0u8; 32 * 1024];
                        loop {
                            match rd.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    if out.send(frame(base64, data_ch, &buf[..n])).await.is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                    };
                    // The pod closing its side ends this port; v4 has no half-close signal.
                    tokio::select! {
                        _ = down => {}
                        _ = async { up.await; std::future::pending::<()>().await } => {}
                    }
                });
            }
            Err(text) => {
                to_pod.push(None);
                let _ = out_tx.send(frame(base64, err_ch, text.as_bytes())).await;
            }
        }
    }

    let reader = async {
        while let Some(Ok(msg)) = stream.next().await {
            let (ch, payload) = match msg {
                Message::Binary(b) if !b.is_empty() => (b[0], b[1..].to_vec()),
                Message::Text(t) if !t.is_empty() => {
                    let bytes = t.as_bytes();
                    let ch = bytes[0].wrapping_sub(b'0');
                    match base64::engine::general_purpose::STANDARD.decode(&bytes[1..]) {
                        Ok(p) => (ch, p),
                        Err(_) => continue,
                    }
                }
                Message::Close(_) => break,
                _ => continue,
            };
            let idx = usize::from(ch / 2);
            if ch % 2 == 1 || idx >= to_pod.len() || payload.is_empty() {
                continue;
            }
            if let Some(tx) = &to_pod[idx]
                && tx.send(payload).await.is_err()
            {
                to_pod[idx] = None;
            }
        }
        to_pod.clear();
    };
    tokio::select! {
        _ = reader => {}
        _ = async { while pumps.join_next().await.is_some() {} } => {}
    }
    let _ = out_tx
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        })))
        .await;
    drop(out_tx);
    let _ = writer.await;
}
