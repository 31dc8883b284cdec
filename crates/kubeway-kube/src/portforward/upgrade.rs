//! The HTTP upgrades that start a SPDY port-forward session, sent through kube's client stack
//! (so TLS and credentials come from the kubeconfig), and the reading of refusals.

use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper_util::rt::TokioIo;
use kube::client::Body;
use kubeway_spdy::MessageTunnel;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

/// The subprotocol of WebSocket-tunnelled SPDY (KEP-4006).
pub(crate) const WS_SPDY_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
/// The stream protocol of legacy SPDY port-forward.
pub(crate) const SPDY_PROTOCOL: &str = "portforward.k8s.io";
const HEADER_PROTOCOL_VERSION: &str = "x-stream-protocol-version";
const HEADER_ACCEPTED_PROTOCOLS: &str = "x-accepted-stream-protocol-versions";
/// Refusal bodies are read up to this size.
const MAX_REFUSAL_BODY: usize = 64 * 1024;

/// An upgraded connection.
pub(crate) type Upgraded = TokioIo<hyper::upgrade::Upgraded>;

/// Why an upgrade did not produce a connection.
#[derive(Debug)]
pub(crate) enum UpgradeError {
    /// A status other than 101/401/403/404: the server does not offer this transport here.
    Refused {
        status: u16,
        message: String,
    },
    /// 101, but the server did not select the protocol.
    NotSelected {
        detail: String,
    },
    Unauthorized {
        message: String,
    },
    Forbidden {
        message: String,
    },
    NotFound,
    InvalidName {
        what: &'static str,
        name: String,
    },
    Request(kube::Error),
    TakeOver(hyper::Error),
    Handshake {
        detail: String,
    },
}

impl UpgradeError {
    /// Whether [`super::Transport::Auto`] moves on to the next transport.
    pub(crate) fn falls_back(&self) -> bool {
        matches!(
            self,
            // Like kubectl, any refused upgrade moves on, 403 included: on API servers up to
            // 1.34 a role with only `create` cannot use the WebSocket transports (GET) but can
            // use legacy SPDY (POST).
            UpgradeError::Refused { .. }
                | UpgradeError::NotSelected { .. }
                | UpgradeError::Forbidden { .. }
        )
    }
}

/// Whether `name` can be put in a request path as is: what Kubernetes allows in object names
/// (DNS subdomains), loosely.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// `/api/v1/namespaces/{ns}/pods/{pod}/portforward`.
pub(crate) fn portforward_path(namespace: &str, pod: &str) -> Result<String, UpgradeError> {
    for (what, name) in [("namespace", namespace), ("pod", pod)] {
        if !valid_name(name) {
            return Err(UpgradeError::InvalidName {
                what,
                name: name.to_string(),
            });
        }
    }
    Ok(format!(
        "/api/v1/namespaces/{namespace}/pods/{pod}/portforward"
    ))
}

/// Opens WebSocket-tunnelled SPDY: `GET` with `Sec-WebSocket-Protocol: SPDY/3.1+portforward.k8s.io`.
pub(crate) async fn ws_spdy(
    client: &kube::Client,
    namespace: &str,
    pod: &str,
) -> Result<MessageTunnel<Upgraded>, UpgradeError> {
    let path = portforward_path(namespace, pod)?;
    let ws = websocket(client, path, WS_SPDY_PROTOCOL).await?;
    Ok(MessageTunnel::new(ws))
}

/// The subprotocol of the v4 channel transport.
pub(crate) const V4_PROTOCOL: &str = "v4.channel.k8s.io";

/// Opens a `v4.channel.k8s.io` WebSocket for one `port` of the pod (`?ports=PORT`).
pub(crate) async fn v4(
    client: &kube::Client,
    namespace: &str,
    pod: &str,
    port: u16,
) -> Result<WebSocketStream<Upgraded>, UpgradeError> {
    let path = format!("{}?ports={port}", portforward_path(namespace, pod)?);
    websocket(client, path, V4_PROTOCOL).await
}

/// Upgrades `GET path` to a WebSocket speaking `protocol`.
async fn websocket(
    client: &kube::Client,
    path: String,
    protocol: &'static str,
) -> Result<WebSocketStream<Upgraded>, UpgradeError> {
    let key = generate_key();
    let request = Request::get(path)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_VERSION, "13")
        .header(header::SEC_WEBSOCKET_KEY, key.as_str())
        .header(header::SEC_WEBSOCKET_PROTOCOL, protocol)
        .body(Body::from(Vec::new()))
        .map_err(|e| UpgradeError::Handshake {
            detail: format!("building the request: {e}"),
        })?;
    let response = client.send(request).await.map_err(UpgradeError::Request)?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(refusal(response, false).await);
    }
    check_websocket_answer(response.headers(), &key, protocol)?;
    let upgraded = hyper::upgrade::on(response)
        .await
        .map_err(UpgradeError::TakeOver)?;
    Ok(WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await)
}

/// Checks a WebSocket 101 answer: the accept key, the upgrade token and the chosen subprotocol.
fn check_websocket_answer(
    headers: &HeaderMap,
    key: &str,
    wanted: &str,
) -> Result<(), UpgradeError> {
    let text = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    if !text(header::UPGRADE).eq_ignore_ascii_case("websocket") {
        return Err(UpgradeError::Handshake {
            detail: "the 101 answer does not say `Upgrade: websocket`".into(),
        });
    }
    if text(header::SEC_WEBSOCKET_ACCEPT) != derive_accept_key(key.as_bytes()) {
        return Err(UpgradeError::Handshake {
            detail: "Sec-WebSocket-Accept does not match the key sent".into(),
        });
    }
    let protocol = text(header::SEC_WEBSOCKET_PROTOCOL);
    if protocol != wanted {
        return Err(UpgradeError::NotSelected {
            detail: if protocol.is_empty() {
                format!("no Sec-WebSocket-Protocol in the answer; {wanted} was offered")
            } else {
                format!("the server chose {protocol:?}; {wanted} was offered")
            },
        });
    }
    Ok(())
}

/// Opens legacy SPDY: `POST` with `Upgrade: SPDY/3.1`.
pub(crate) async fn spdy(
    client: &kube::Client,
    namespace: &str,
    pod: &str,
) -> Result<Upgraded, UpgradeError> {
    let path = portforward_path(namespace, pod)?;
    let request = Request::post(path)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "SPDY/3.1")
        .header(HEADER_PROTOCOL_VERSION, SPDY_PROTOCOL)
        .body(Body::from(Vec::new()))
        .map_err(|e| UpgradeError::Handshake {
            detail: format!("building the request: {e}"),
        })?;
    let response = client.send(request).await.map_err(UpgradeError::Request)?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(refusal(response, true).await);
    }
    let chosen = response
        .headers()
        .get(HEADER_PROTOCOL_VERSION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .trim()
        .to_string();
    if chosen != SPDY_PROTOCOL {
        return Err(UpgradeError::NotSelected {
            detail: if chosen.is_empty() {
                format!("no X-Stream-Protocol-Version in the answer; {SPDY_PROTOCOL} was offered")
            } else {
                format!("the server chose {chosen:?}; {SPDY_PROTOCOL} was offered")
            },
        });
    }
    let upgraded = hyper::upgrade::on(response)
        .await
        .map_err(UpgradeError::TakeOver)?;
    Ok(TokioIo::new(upgraded))
}

/// Classifies a non-101 answer, reading the Status message from its body.
async fn refusal(response: Response<Body>, legacy_spdy: bool) -> UpgradeError {
    let status = response.status();
    // A legacy SPDY 403 that lists accepted protocols is a failed negotiation, not RBAC.
    let negotiation = legacy_spdy && response.headers().contains_key(HEADER_ACCEPTED_PROTOCOLS);
    let message = status_message(status, response.into_body()).await;
    match status {
        StatusCode::UNAUTHORIZED => UpgradeError::Unauthorized { message },
        StatusCode::FORBIDDEN if !negotiation => UpgradeError::Forbidden { message },
        StatusCode::NOT_FOUND => UpgradeError::NotFound,
        _ => UpgradeError::Refused {
            status: status.as_u16(),
            message,
        },
    }
}

/// The `message` of a `metav1.Status` body, else the body text, else the status reason.
async fn status_message(status: StatusCode, body: Body) -> String {
    let bytes = match Limited::new(body, MAX_REFUSAL_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            tracing::debug!(error = %e, "reading a port-forward refusal body");
            Default::default()
        }
    };
    message_from_body(status, &bytes)
}

fn message_from_body(status: StatusCode, bytes: &[u8]) -> String {
    if let Ok(s) = serde_json::from_slice::<kube::core::Status>(bytes)
        && !s.message.trim().is_empty()
    {
        return s.message.trim().to_string();
    }
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    if text.is_empty() {
        return status
            .canonical_reason()
            .unwrap_or("no reason given")
            .to_string();
    }
    const MAX: usize = 1000;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_built_only_from_valid_names() {
        assert_eq!(
            portforward_path("default", "echo-1").expect("valid"),
            "/api/v1/namespaces/default/pods/echo-1/portforward"
        );
        for (ns, pod) in [
            ("default", ""),
            ("", "p"),
            ("default", "a/b"),
            ("default", ".."),
            ("default", "p?x=1"),
            ("default", "p q"),
            ("default", "ü"),
        ] {
            assert!(
                matches!(
                    portforward_path(ns, pod),
                    Err(UpgradeError::InvalidName { .. })
                ),
                "{ns:?}/{pod:?} must be refused"
            );
        }
    }

    #[test]
    fn refusal_messages_come_from_the_status_body() {
        let body = br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"pods \"x\" is forbidden: nope","reason":"Forbidden","code":403}"#;
        assert_eq!(
            message_from_body(StatusCode::FORBIDDEN, body),
            "pods \"x\" is forbidden: nope"
        );
        assert_eq!(
            message_from_body(StatusCode::BAD_GATEWAY, b"  upstream down \n"),
            "upstream down"
        );
        assert_eq!(
            message_from_body(StatusCode::BAD_REQUEST, b""),
            "Bad Request"
        );
        let long = "x".repeat(5000);
        assert!(
            message_from_body(StatusCode::BAD_REQUEST, long.as_bytes())
                .chars()
                .count()
                <= 1001
        );
        // Bytes that are neither JSON nor UTF-8 do not panic.
        assert!(!message_from_body(StatusCode::BAD_REQUEST, &[0xff, 0xfe, b'{']).is_empty());
    }

    #[test]
    fn websocket_answers_are_checked() {
        let key = generate_key();
        let good = || {
            let mut h = HeaderMap::new();
            h.insert(header::UPGRADE, "websocket".parse().expect("value"));
            h.insert(
                header::SEC_WEBSOCKET_ACCEPT,
                derive_accept_key(key.as_bytes()).parse().expect("value"),
            );
            h.insert(
                header::SEC_WEBSOCKET_PROTOCOL,
                WS_SPDY_PROTOCOL.parse().expect("value"),
            );
            h
        };
        assert!(check_websocket_answer(&good(), &key, WS_SPDY_PROTOCOL).is_ok());
        let mut no_proto = good();
        no_proto.remove(header::SEC_WEBSOCKET_PROTOCOL);
        let e =
            check_websocket_answer(&no_proto, &key, WS_SPDY_PROTOCOL).expect_err("not selected");
        assert!(e.falls_back(), "{e:?}");
        let mut v4 = good();
        v4.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            "v4.channel.k8s.io".parse().expect("value"),
        );
        assert!(
            check_websocket_answer(&v4, &key, WS_SPDY_PROTOCOL)
                .expect_err("v4")
                .falls_back()
        );
        let mut bad_key = good();
        bad_key.insert(header::SEC_WEBSOCKET_ACCEPT, "AAAA".parse().expect("value"));
        let e = check_websocket_answer(&bad_key, &key, WS_SPDY_PROTOCOL).expect_err("bad key");
        assert!(!e.falls_back(), "{e:?}");
    }
}
