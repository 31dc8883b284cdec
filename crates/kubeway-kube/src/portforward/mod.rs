//! The port-forward dialer: byte streams to `localhost:PORT` inside a pod, through the API server.
//!
//! Three wire transports reach `pods/{name}/portforward` (see
//! `shared/reference/portforward-protocols.md`):
//!
//! - [`Transport::WsSpdy`]: SPDY/3.1 `portforward.k8s.io` tunnelled in a WebSocket
//!   (`SPDY/3.1+portforward.k8s.io`, KEP-4006, what kubectl ≥ 1.31 speaks);
//! - [`Transport::Spdy`]: the legacy `POST` + `Upgrade: SPDY/3.1`;
//! - [`Transport::V4`]: `v4.channel.k8s.io`, one WebSocket per connection, no half-close.
//!
//! A [`PortForwarder`] serves one pod. With a SPDY transport it keeps a small pool of sessions
//! (each one upgraded HTTP connection), pings them, and carries every local connection as a pair
//! of streams (`error` + `data`, paired by `requestid`) on the least busy live session, so a new
//! connection costs one round trip instead of a TLS handshake and an upgrade. A failure the
//! server reports on one connection's error stream fails that connection only; the session and
//! its other connections carry on (unlike kubectl, kubernetes#111825).
//!
//! [`Transport::Auto`] tries WebSocket-tunnelled SPDY, falls back to legacy SPDY when the upgrade
//! is refused, and to `v4.channel.k8s.io` last; the transport that worked is remembered, so later
//! connections do not retry the ones that failed.

mod conn;
mod pool;
mod upgrade;
mod v4;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

pub use conn::{ConnectionError, PfStream};
pub use pool::{ForwardStats, PortForwarder};

/// Which port-forward wire transport to use (the `--transport` flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Transport {
    /// WebSocket-tunnelled SPDY, then legacy SPDY, then `v4.channel.k8s.io`.
    #[default]
    Auto,
    /// SPDY/3.1 tunnelled in a WebSocket (`SPDY/3.1+portforward.k8s.io`).
    WsSpdy,
    /// Legacy SPDY/3.1 (`POST` + `Upgrade: SPDY/3.1`).
    Spdy,
    /// `v4.channel.k8s.io` WebSocket, one per connection.
    V4,
}

impl Transport {
    /// Every value, in the order `--help` lists them.
    pub const ALL: [Transport; 4] = [
        Transport::Auto,
        Transport::WsSpdy,
        Transport::Spdy,
        Transport::V4,
    ];

    /// The flag spelling: `auto`, `ws-spdy`, `spdy` or `v4`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Auto => "auto",
            Transport::WsSpdy => "ws-spdy",
            Transport::Spdy => "spdy",
            Transport::V4 => "v4",
        }
    }

    /// A description for messages, naming the wire protocol.
    pub fn describe(self) -> &'static str {
        match self {
            Transport::Auto => "automatic transport choice",
            Transport::WsSpdy => "WebSocket-tunnelled SPDY (SPDY/3.1+portforward.k8s.io)",
            Transport::Spdy => "legacy SPDY (POST, Upgrade: SPDY/3.1)",
            Transport::V4 => "v4.channel.k8s.io WebSocket",
        }
    }

    /// The RBAC verb(s) on `pods/portforward` this transport needs.
    pub fn required_verbs(self) -> &'static str {
        match self {
            Transport::Spdy => "create",
            Transport::WsSpdy | Transport::V4 => {
                "get (and, on API servers 1.35 and later, also create)"
            }
            Transport::Auto => "get or create (get and create on API servers 1.35 and later)",
        }
    }

    /// Whether connections share multiplexed sessions (and can half-close).
    pub fn is_multiplexed(self) -> bool {
        matches!(self, Transport::WsSpdy | Transport::Spdy)
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `--transport` value that is not one of `auto`, `ws-spdy`, `spdy`, `v4`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown port-forward transport {0:?}: use auto, ws-spdy, spdy or v4")]
pub struct ParseTransportError(pub String);

impl FromStr for Transport {
    type Err = ParseTransportError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Transport::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| ParseTransportError(s.to_string()))
    }
}

/// How a [`PortForwarder`] dials. Start from [`ForwardOptions::default`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ForwardOptions {
    /// The transport (default [`Transport::Auto`]).
    pub transport: Transport,
    /// SPDY sessions kept per pod (default 2, at least 1).
    pub sessions: usize,
    /// The most SPDY sessions per pod (default 8): more are dialed when every session is full
    /// or held up by a slow reader.
    pub max_sessions: usize,
    /// Connections one session carries before another session is preferred (default 32).
    pub connections_per_session: usize,
    /// A session whose reader has been paused this long (a local reader that stopped reading,
    /// with the session's buffer full) takes no new connections (default 1 s).
    pub stalled_after: Duration,
    /// Time between keepalive PINGs on each session (default 10 s, as client-go's tunnel).
    pub keepalive_interval: Duration,
    /// How long a PING may go unanswered, with nothing else heard, before the session is
    /// declared dead and replaced (default 20 s).
    pub keepalive_timeout: Duration,
    /// How long opening a connection's streams may wait for the server (default 30 s, as
    /// client-go).
    pub open_timeout: Duration,
}

impl Default for ForwardOptions {
    fn default() -> Self {
        Self {
            transport: Transport::Auto,
            sessions: 2,
            max_sessions: 8,
            connections_per_session: 32,
            stalled_after: Duration::from_secs(1),
            keepalive_interval: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(20),
            open_timeout: Duration::from_secs(30),
        }
    }
}

impl ForwardOptions {
    /// Sets [`ForwardOptions::transport`].
    pub fn with_transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    /// Sets [`ForwardOptions::sessions`] (0 is taken as 1); the maximum grows to match.
    pub fn with_sessions(mut self, sessions: usize) -> Self {
        self.sessions = sessions.max(1);
        self.max_sessions = self.max_sessions.max(self.sessions);
        self
    }

    /// Sets the keepalive interval and timeout.
    pub fn with_keepalive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.keepalive_interval = interval;
        self.keepalive_timeout = timeout;
        self
    }

    /// Sets [`ForwardOptions::open_timeout`].
    pub fn with_open_timeout(mut self, timeout: Duration) -> Self {
        self.open_timeout = timeout;
        self
    }
}

/// Why opening a port-forward connection failed. Cheap to clone: one failed session dial is
/// reported to every connection that waited for it.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ForwardError {
    /// The pod or namespace name cannot appear in a request path.
    #[error("{what} name {name:?} is not a valid Kubernetes name; check the spelling")]
    InvalidName {
        /// `pod` or `namespace`.
        what: &'static str,
        /// The name given.
        name: String,
    },
    /// Port 0 was asked for.
    #[error("port 0 cannot be forwarded; name a pod port from 1 to 65535")]
    InvalidPort,
    /// The API server answered 404.
    #[error(
        "pod {pod} was not found in namespace {namespace}: check the name with `kubectl get pods -n {namespace}`"
    )]
    PodNotFound {
        /// Namespace.
        namespace: String,
        /// Pod.
        pod: String,
    },
    /// The API server answered 403: RBAC does not allow this transport's verb.
    #[error(
        "the API server forbids the {transport} port-forward to pod {namespace}/{pod}: {message}. \
         This transport needs the `{verb}` verb on pods/portforward{note}; ask an admin for it, or \
         choose another transport with --transport"
    )]
    Forbidden {
        /// Namespace.
        namespace: String,
        /// Pod.
        pod: String,
        /// The transport that was refused.
        transport: Transport,
        /// The verb that transport needs: `get` (WebSocket) or `create` (legacy SPDY).
        verb: &'static str,
        /// The server's Status message.
        message: String,
        /// What newer API servers need on top (WebSocket transports on 1.35 and later also
        /// need `create`), or empty.
        note: &'static str,
    },
    /// The API server answered 401.
    #[error(
        "the API server rejected the credentials for the {transport} port-forward upgrade: {message}; \
         refresh the kubeconfig's credentials (log in again) and retry"
    )]
    Unauthorized {
        /// The transport tried.
        transport: Transport,
        /// The server's Status message.
        message: String,
    },
    /// The API server answered the upgrade with another status.
    #[error(
        "the API server answered {status} to the {transport} port-forward upgrade for pod {namespace}/{pod}: {message}"
    )]
    UpgradeRefused {
        /// Namespace.
        namespace: String,
        /// Pod.
        pod: String,
        /// The transport tried.
        transport: Transport,
        /// HTTP status.
        status: u16,
        /// The server's Status message (or body text).
        message: String,
    },
    /// The server switched protocols without selecting the requested one.
    #[error(
        "the API server upgraded the {transport} port-forward without agreeing to the protocol ({detail}); \
         try --transport auto or another transport"
    )]
    ProtocolNotSelected {
        /// The transport tried.
        transport: Transport,
        /// What was missing.
        detail: String,
    },
    /// The upgrade answer broke the handshake rules.
    #[error("the {transport} port-forward handshake is invalid: {detail}")]
    Handshake {
        /// The transport tried.
        transport: Transport,
        /// What was wrong.
        detail: String,
    },
    /// The upgrade request could not be sent or answered.
    #[error(
        "sending the {transport} port-forward request for pod {pod} failed; check that the API server is reachable"
    )]
    Request {
        /// Pod.
        pod: String,
        /// The transport tried.
        transport: Transport,
        /// Why.
        #[source]
        source: Arc<kube::Error>,
    },
    /// The connection could not be taken over after `101 Switching Protocols`.
    #[error("taking over the upgraded {transport} connection failed")]
    TakeOver {
        /// The transport tried.
        transport: Transport,
        /// Why.
        #[source]
        source: Arc<hyper::Error>,
    },
    /// Opening the error and data streams of one connection failed.
    #[error("opening the port-forward streams to pod {pod} port {port} failed")]
    OpenStreams {
        /// Pod.
        pod: String,
        /// Port.
        port: u16,
        /// Why.
        #[source]
        source: Arc<kubeway_spdy::SessionError>,
    },
    /// The `v4.channel.k8s.io` WebSocket failed to open for another reason than a status.
    #[error("opening the v4.channel.k8s.io port-forward to pod {pod} port {port} failed")]
    V4 {
        /// Pod.
        pod: String,
        /// Port.
        port: u16,
        /// Why.
        #[source]
        source: Arc<kube::Error>,
    },
    /// The task dialing a session went away (the runtime is shutting down).
    #[error("the port-forward session dial to pod {pod} was abandoned; retry")]
    DialAbandoned {
        /// Pod.
        pod: String,
    },
}

impl ForwardError {
    /// For [`ForwardError::Forbidden`], the verb the transport needs.
    pub fn forbidden_verb(&self) -> Option<&'static str> {
        match self {
            ForwardError::Forbidden { verb, .. } => Some(verb),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transports_parse_and_print_as_the_flag_spells_them() {
        for t in Transport::ALL {
            assert_eq!(t.to_string().parse::<Transport>(), Ok(t));
        }
        assert_eq!("WS-SPDY".parse::<Transport>(), Ok(Transport::WsSpdy));
        assert_eq!(" v4 ".parse::<Transport>(), Ok(Transport::V4));
        let err = "spdy3".parse::<Transport>().expect_err("unknown");
        assert!(err.to_string().contains("auto, ws-spdy, spdy or v4"));
        assert_eq!(Transport::default(), Transport::Auto);
        assert!(Transport::Spdy.is_multiplexed() && !Transport::V4.is_multiplexed());
    }

    #[test]
    fn options_never_ask_for_an_empty_pool() {
        assert_eq!(ForwardOptions::default().with_sessions(0).sessions, 1);
        assert_eq!(ForwardOptions::default().sessions, 2);
    }
}
