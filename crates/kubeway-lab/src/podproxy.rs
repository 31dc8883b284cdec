//! `pods/{name}[:port]/proxy/{path}`: the API server's proxy to a pod, as `kubectl get --raw`
//! and kubeway's pod-IP probe use it. The lab dials the pod's IP (where Services and the
//! kubelet's probes dial, not the pod's localhost), sends the request as HTTP/1.1 and relays the
//! answer; a dial that fails is a 503 whose message carries the dial error, as the real
//! apiserver's `error trying to reach service: dial tcp …` does.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::Ctx;
use crate::api::{Body, ResourceRequest};
use crate::resources::core;
use crate::status::ApiError;

/// Answers one proxied request.
pub async fn handle(
    ctx: Arc<Ctx>,
    req: Request<Incoming>,
    rr: ResourceRequest,
) -> Result<Response<Body>, ApiError> {
    let ns = rr.ns.clone().unwrap_or_default();
    let raw = rr.name.clone().unwrap_or_default();
    let (name, port) = match raw.split_once(':') {
        Some((n, p)) => (n.to_string(), Some(p.to_string())),
        None => (raw.clone(), None),
    };
    let pod = ctx
        .store
        .get(core("pods"), &ns, &name)
        .ok_or_else(|| ApiError::not_found("pods", &name))?;
    let ip: IpAddr = pod["status"]["podIP"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ApiError::unavailable(format!("pod {name} has no IP address yet")))?;
    let declared = |want: Option<&str>| {
        pod["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["ports"].as_array().into_iter().flatten())
            .find(|p| want.is_none_or(|w| p["name"].as_str() == Some(w)))
            .and_then(|p| p["containerPort"].as_u64())
            .and_then(|p| u16::try_from(p).ok())
    };
    let port = match port.as_deref() {
        Some(p) => match p.parse::<u16>() {
            Ok(n) => n,
            Err(_) => declared(Some(p)).ok_or_else(|| {
                ApiError::unavailable(format!("pod {name} has no port named {p}"))
            })?,
        },
        None => declared(None).unwrap_or(80),
    };
    let path = req.uri().path();
    let rest = path
        .split_once("/proxy")
        .map(|(_, r)| r)
        .filter(|r| !r.is_empty())
        .unwrap_or("/")
        .to_string();
    let unreachable = |what: String| {
        ApiError::unavailable(format!(
            "error trying to reach service: dial tcp {ip}:{port}: {what}"
        ))
    };
    let stream =
        match tokio::time::timeout(Duration::from_secs(5), ctx.kubelet.dial_pod_ip(ip, port)).await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Err(unreachable("connect: connection refused".into()));
            }
            Ok(Err(e)) => return Err(unreachable(format!("connect: {e}"))),
            Err(_) => return Err(unreachable("i/o timeout".into())),
        };
    let failed = |e: String| ApiError::unavailable(format!("error trying to reach service: {e}"));
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| failed(e.to_string()))?;
    tokio::spawn(conn);
    let upstream = Request::get(rest)
        .header(header::HOST, format!("{ip}:{port}"))
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let resp = tokio::time::timeout(Duration::from_secs(10), send.send_request(upstream))
        .await
        .map_err(|_| failed("timed out waiting for the answer".into()))?
        .map_err(|e| failed(format!("malformed HTTP response: {e}")))?;
    let status = resp.status();
    let content_type = resp.headers().get(header::CONTENT_TYPE).cloned();
    let body = tokio::time::timeout(Duration::from_secs(10), resp.into_body().collect())
        .await
        .map_err(|_| failed("timed out reading the answer".into()))?
        .map_err(|e| failed(e.to_string()))?
        .to_bytes();
    let mut out = Response::new(
        Full::new(body)
            .map_err(|never: std::convert::Infallible| match never {})
            .boxed(),
    );
    *out.status_mut() = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    if let Some(ct) = content_type {
        out.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    Ok(out)
}
