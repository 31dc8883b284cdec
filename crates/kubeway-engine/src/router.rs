//! The router: the ready endpoints of one port of a target, followed by its watch, and a pooled
//! port-forwarder per pod shared by every port of the target; new connections go round-robin
//! over the ready endpoints, and an endpoint whose streams cannot be opened is skipped.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use kubeway_core::target::{PortRef, Target};
use kubeway_kube::backends::{BackendSet, Endpoint, Resolved, watch_target};
use kubeway_kube::{Cluster, ForwardOptions, KubeError, PfStream, PortForwarder};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::event::{Event, Events};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How long a new connection waits for a ready endpoint before it fails.
pub const WAIT_FOR_ENDPOINT: Duration = Duration::from_secs(30);
/// How long a connection every ready endpoint refused waits for the endpoints to change.
const CATCH_UP: Duration = Duration::from_secs(2);

/// How a router dials and carries.
#[derive(Debug, Clone)]
pub struct RouterOptions {
    /// How the port-forward dials (transport, pool sizes, keepalive).
    pub forward: ForwardOptions,
    /// After the local client half-closes a connection the transport cannot half-close (v4),
    /// the pod's answer is still delivered until it has been silent this long; then the
    /// connection is reset and reported (default 30 s).
    pub half_close_idle: Duration,
}

impl Default for RouterOptions {
    fn default() -> Self {
        Self {
            forward: ForwardOptions::default(),
            half_close_idle: Duration::from_secs(30),
        }
    }
}

impl From<ForwardOptions> for RouterOptions {
    fn from(forward: ForwardOptions) -> Self {
        Self {
            forward,
            ..Self::default()
        }
    }
}

/// Why no connection could be opened to any endpoint.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DialError {
    /// No endpoint became ready in time.
    #[error("no ready endpoint within {}s: {why}", WAIT_FOR_ENDPOINT.as_secs())]
    NoEndpoint {
        /// Why the set is empty, in words.
        why: String,
    },
    /// Every endpoint tried refused to open the streams.
    #[error("pod {pod}: {error}")]
    Open {
        /// The last pod tried.
        pod: String,
        /// Why.
        error: String,
    },
}

/// The per-pod forwarders of one target, shared by its ports (one pool of sessions per pod
/// carries every port).
pub(crate) struct Pods {
    base: PortForwarder,
    by_pod: Mutex<HashMap<String, PortForwarder>>,
}

impl Pods {
    fn get(&self, pod: &str) -> PortForwarder {
        lock(&self.by_pod)
            .entry(pod.to_string())
            .or_insert_with(|| self.base.for_pod(pod))
            .clone()
    }

    /// Drops the pools of pods that are gone (open connections keep their sessions).
    pub(crate) fn prune(&self, set: &BackendSet) {
        lock(&self.by_pod).retain(|pod, _| {
            set.ports
                .iter()
                .any(|p| p.ready.iter().any(|e| e.pod == *pod))
        });
    }
}

/// Routes the connections of one port of a target over its ready endpoints.
pub struct Router {
    pods: Arc<Pods>,
    pub(crate) backends: watch::Receiver<BackendSet>,
    index: usize,
    resolved: Resolved,
    next: AtomicUsize,
    per_pod: Mutex<BTreeMap<String, u64>>,
    pub(crate) events: Events,
    pub(crate) half_close_idle: Duration,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("resolved", &self.resolved)
            .finish_non_exhaustive()
    }
}

impl Router {
    /// Resolves `ports` of `target`, starts one watch for the target (until `cancel`) and
    /// returns one router per port, in order. Fails at once when the target or a port does not
    /// exist, or the API server refuses the watch.
    pub async fn start(
        cluster: &Cluster,
        target: &Target,
        ports: &[PortRef],
        options: impl Into<RouterOptions>,
        events: Events,
        cancel: CancellationToken,
    ) -> Result<Vec<Arc<Router>>, KubeError> {
        let options = options.into();
        let (resolved, rx) = watch_target(cluster, target, ports, cancel.clone()).await?;
        let first_pod = rx
            .borrow()
            .ports
            .iter()
            .flat_map(|p| p.ready.first())
            .map(|e| e.pod.clone())
            .next()
            .unwrap_or_else(|| "pending".into());
        let pods = Arc::new(Pods {
            base: PortForwarder::new(cluster, &cluster.namespace, &first_pod, options.forward),
            by_pod: Mutex::new(HashMap::new()),
        });
        let routers: Vec<Arc<Router>> = resolved
            .into_iter()
            .enumerate()
            .map(|(index, resolved)| {
                Arc::new(Router {
                    pods: pods.clone(),
                    backends: rx.clone(),
                    index,
                    resolved,
                    next: AtomicUsize::new(0),
                    per_pod: Mutex::new(BTreeMap::new()),
                    events: events.clone(),
                    half_close_idle: options.half_close_idle,
                })
            })
            .collect();
        crate::report::spawn(rx, pods, routers.clone(), events, cancel);
        Ok(routers)
    }

    /// What the port resolved to.
    pub fn resolved(&self) -> &Resolved {
        &self.resolved
    }

    /// The target's backends, as the watch sees them now.
    pub fn backends(&self) -> watch::Receiver<BackendSet> {
        self.backends.clone()
    }

    /// Ready endpoints of this port now.
    pub fn ready(&self) -> Vec<Endpoint> {
        self.backends.borrow().port(self.index).ready.clone()
    }

    /// Connections carried so far, per pod.
    pub fn per_pod(&self) -> BTreeMap<String, u64> {
        lock(&self.per_pod).clone()
    }

    pub(crate) fn counted(&self, pod: &str) {
        *lock(&self.per_pod).entry(pod.to_string()).or_default() += 1;
    }

    pub(crate) fn emit(&self, event: Event) {
        (self.events)(event);
    }

    /// Opens a routed connection to the next ready endpoint (waiting up to
    /// [`WAIT_FOR_ENDPOINT`] for one).
    pub async fn connect(self: &Arc<Self>) -> Result<crate::RoutedConn, DialError> {
        crate::RoutedConn::open(self.clone()).await
    }

    /// Waits up to `timeout` for a ready endpoint.
    pub async fn wait_ready(&self, timeout: Duration) -> Option<Vec<Endpoint>> {
        let mut rx = self.backends.clone();
        let index = self.index;
        let wait = async {
            loop {
                let ready = rx.borrow_and_update().port(index).ready.clone();
                if !ready.is_empty() {
                    return ready;
                }
                if rx.changed().await.is_err() {
                    return Vec::new();
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .ok()
            .filter(|r| !r.is_empty())
    }

    /// Opens a connection to the next ready endpoint, avoiding the pods in `avoid` while
    /// others are ready; tries up to three endpoints when streams cannot be opened.
    pub(crate) async fn open(&self, avoid: &[String]) -> Result<(Endpoint, PfStream), DialError> {
        let mut last = None;
        let mut skipped: Vec<String> = avoid.to_vec();
        for _ in 0..3 {
            let Some(ready) = self.wait_ready(WAIT_FOR_ENDPOINT).await else {
                let why = self
                    .backends
                    .borrow()
                    .port(self.index)
                    .why_empty
                    .clone()
                    .unwrap_or_else(|| "no ready endpoint".into());
                return Err(DialError::NoEndpoint { why });
            };
            let mut ready = ready;
            if !skipped.is_empty() && ready.iter().all(|e| skipped.contains(&e.pod)) {
                // Every ready endpoint has refused: the watch may lag behind a roll-out (the
                // endpoints stopping are still listed). Give it a moment to catch up.
                let mut rx = self.backends.clone();
                let index = self.index;
                let _ = tokio::time::timeout(CATCH_UP, async {
                    while rx.changed().await.is_ok() {
                        let now = rx.borrow_and_update().port(index).ready.clone();
                        if now.iter().any(|e| !skipped.contains(&e.pod)) {
                            return;
                        }
                    }
                })
                .await;
                let now = self.ready();
                if !now.is_empty() {
                    ready = now;
                }
            }
            let fresh: Vec<&Endpoint> =
                ready.iter().filter(|e| !skipped.contains(&e.pod)).collect();
            let pick: Vec<&Endpoint> = if fresh.is_empty() {
                ready.iter().collect()
            } else {
                fresh
            };
            let ep = pick[self.next.fetch_add(1, Ordering::Relaxed) % pick.len()].clone();
            match self.pods.get(&ep.pod).connect(ep.port).await {
                Ok(s) => return Ok((ep, s)),
                Err(e) => {
                    // A pod that just went away: try another endpoint.
                    tracing::debug!(pod = %ep.pod, error = %e, "opening streams failed");
                    skipped.push(ep.pod.clone());
                    last = Some(DialError::Open {
                        pod: ep.pod,
                        error: error_chain(&e),
                    });
                }
            }
        }
        Err(last.unwrap_or(DialError::NoEndpoint {
            why: "no ready endpoint".into(),
        }))
    }
}

/// An error and its causes, each once, joined by `: `.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = err.source();
    }
    parts.join(": ")
}
