//! `pods/{name}/portforward`: negotiates the transport and carries bytes to the pod, dialing
//! `localhost:port` inside the pod the way a container runtime does. Serves `v4.channel.k8s.io`
//! and `v4.base64.channel.k8s.io` over WebSocket; the SPDY transports plug in at [`Transport`].

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
    // Verb by transport: WebSocket upgrades are GETs, legacy SPDY is a POST (create).
    match transport {
        Transport::V4 | Transport::V4Base64 => {}
        Transport::WsSpdy | Transport::Spdy => {
            return Err(ApiError::bad_request(
                "the kubeway lab does not serve the SPDY port-forward transports yet; use a v4.channel.k8s.io WebSocket client",
            ));
        }
    }
    let ports = parse_ports(&q)?;
    let key = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .map(|k| k.as_bytes().to_vec())
        .ok_or_else(|| ApiError::bad_request("missing Sec-WebSocket-Key"))?;
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key);
    let upgrade = hyper::upgrade::on(&mut req);
    let cancel = ctx.api_cancel();
    let ctx2 = ctx.clone();
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
            _ = serve_v4(ctx2, ws, target, ports, transport == Transport::V4Base64) => {}
            _ = cancel.cancelled() => {}
        }
    });
    let mut r = Response::new(crate::api::json_response(200, &Value::Null).into_body());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).map_err(|e| ApiError::internal(e.to_string()))?,
    );
    h.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(protocol_name(transport)),
    );
    Ok(r)
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
