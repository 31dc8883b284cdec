//! What the engine tells its user while it runs: endpoint changes, API-server trouble and the
//! end of every connection that did not complete, as plain data for text or JSON output.

use std::net::SocketAddr;
use std::sync::Arc;

use kubeway_kube::backends::Endpoint;
use serde::Serialize;

/// How a carried connection ended, for reports and counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum End {
    /// Both sides ended cleanly.
    Completed,
    /// It never reached the app: no ready endpoint, the streams could not be opened, or the
    /// kubelet could not connect to the port in the pod.
    Failed,
    /// It reached the app and ended abnormally; the local client was reset.
    Cut,
    /// The local client reset it or went away.
    Aborted,
}

impl End {
    /// The counter it goes to.
    pub fn outcome(self) -> kubeway_net::Outcome {
        match self {
            End::Completed => kubeway_net::Outcome::Completed,
            End::Failed => kubeway_net::Outcome::Failed,
            End::Cut => kubeway_net::Outcome::Cut,
            End::Aborted => kubeway_net::Outcome::Aborted,
        }
    }
}

/// One connection's end.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionReport {
    /// The local address it was accepted on.
    pub local: SocketAddr,
    /// The local client.
    pub peer: SocketAddr,
    /// `service/web`…
    pub target: String,
    /// The remote port, as the user sees it (`80`, `http (8080)`).
    pub remote: String,
    /// The pod that carried it last, if one was reached.
    pub pod: Option<String>,
    /// Pods tried before, whose app refused the connection.
    pub retried: Vec<String>,
    /// How it ended.
    pub end: End,
    /// Bytes from the client.
    pub up: u64,
    /// Bytes to the client.
    pub down: u64,
    /// Why, for anything but a completed connection.
    pub error: Option<String>,
}

/// What the engine reports.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The ready endpoints of a port changed (the first report lists them all).
    Endpoints {
        /// `service/web`…
        target: String,
        /// The remote port as the user sees it.
        remote: String,
        /// Ready endpoints now.
        ready: Vec<Endpoint>,
        /// Added since the last report.
        added: Vec<Endpoint>,
        /// Removed since the last report.
        removed: Vec<Endpoint>,
        /// Why there are none, when there are none.
        why_empty: Option<String>,
        /// Whether this is the first report.
        first: bool,
    },
    /// The API server could not be asked (watches fail).
    ApiUnreachable {
        /// The target whose watch failed.
        target: String,
        /// What failed, naming the API layer.
        error: String,
    },
    /// The API server answers again.
    ApiBack {
        /// The target whose watch recovered.
        target: String,
    },
    /// A connection ended other than completed, or any connection when asked for all.
    Connection(ConnectionReport),
    /// A NodePort carrier switched way: to the forward when its NodePort stopped answering,
    /// back when it answers again.
    Carrier {
        /// `namespace/name`.
        service: String,
        /// The Service port.
        port: u16,
        /// The NodePort address.
        node_port: SocketAddr,
        /// The way connections take now.
        via: String,
        /// Why.
        why: String,
    },
}

/// Where events go: a function called from the engine's tasks (it must not block).
pub type Events = Arc<dyn Fn(Event) + Send + Sync>;

/// A sink that drops every event.
pub fn quiet() -> Events {
    Arc::new(|_| {})
}
