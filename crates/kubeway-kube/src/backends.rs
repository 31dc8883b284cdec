//! Resolves a forward target (pod, Service, Deployment, StatefulSet, ReplicaSet) to its ready
//! backends and keeps them current with watches: EndpointSlices for Services, the selector's
//! Pods for workloads. Watches resume after API outages (with back-off), and the outage itself
//! is reported.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, ListParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kubeway_core::target::{PortRef, Target, TargetKind};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{Cluster, KubeError};

/// One ready pod port to forward to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Endpoint {
    /// Pod name.
    pub pod: String,
    /// Port on the pod.
    pub port: u16,
}

/// The current backends of a target, and why there are none.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct BackendSet {
    /// Ready endpoints, sorted.
    pub ready: Vec<Endpoint>,
    /// When `ready` is empty: which layer is empty, in words.
    pub why_empty: Option<String>,
    /// The API server could not be watched: the error, while the outage lasts.
    pub api_error: Option<String>,
    /// A single-pod target was deleted: what would have survived.
    pub pod_gone: Option<String>,
}

/// What a target resolved to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Resolved {
    /// `service/web`, `deployment/web`, `pod/web-1`.
    pub target: String,
    /// The port as the user named it, resolved to a number where the target defines it
    /// (a Service port); for pods and workloads the container port.
    pub remote_port: u16,
    /// The port's name, if it has one.
    pub port_name: Option<String>,
}

fn not_found(kind: &str, name: &str, ns: &str, known: Vec<String>) -> KubeError {
    let near = closest(name, &known);
    KubeError::TargetNotFound {
        what: format!("{kind} {name:?} in namespace {ns}"),
        hint: match near {
            Some(n) => format!("did you mean {n:?}?"),
            None if known.is_empty() => format!("there is no {kind} in namespace {ns}; check -n"),
            None => format!("known: {}", known.join(", ")),
        },
    }
}

/// The closest name by edit distance (at most a third of the length away).
pub fn closest(name: &str, known: &[String]) -> Option<String> {
    fn dist(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                let sub = prev[j] + usize::from(ca != *cb);
                cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
            }
            prev = cur;
        }
        prev[b.len()]
    }
    known
        .iter()
        .map(|k| (dist(name, k), k))
        .filter(|(d, k)| *d <= k.len().max(name.len()).div_ceil(2).min(3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.clone())
}

async fn names<K>(api: &Api<K>) -> Vec<String>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.list_metadata(&ListParams::default())
        .await
        .map(|l| {
            l.items
                .into_iter()
                .filter_map(|m| m.metadata.name)
                .collect()
        })
        .unwrap_or_default()
}

/// The pod selector of the workload `kind`/`name` in `ns`, or why there is none.
async fn workload_selector<K>(
    client: &kube::Client,
    ns: &str,
    name: &str,
    kind: &str,
    selector: impl FnOnce(K) -> LabelSelector,
) -> Result<LabelSelector, KubeError>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let found = api
        .get_opt(name)
        .await
        .map_err(api_err(format!("getting {kind} {name}")))?;
    match found {
        Some(obj) => Ok(selector(obj)),
        None => Err(not_found(kind, name, ns, names(&api).await)),
    }
}

fn api_err(what: String) -> impl FnOnce(kube::Error) -> KubeError {
    move |source| KubeError::Api { what, source }
}

fn container_port(pod: &Pod, port: &PortRef) -> Option<u16> {
    match port {
        PortRef::Number(n) => Some(*n),
        PortRef::Name(name) => pod
            .spec
            .as_ref()?
            .containers
            .iter()
            .flat_map(|c| c.ports.clone().unwrap_or_default())
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok()),
    }
}

fn pod_ready(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn owner_of(pod: &Pod) -> Option<String> {
    let r = pod
        .metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))?;
    Some(match r.kind.as_str() {
        // A ReplicaSet named <deploy>-<hash> almost always belongs to that Deployment.
        "ReplicaSet" => match r.name.rsplit_once('-') {
            Some((deploy, _)) => format!("deploy/{deploy}"),
            None => format!("rs/{}", r.name),
        },
        "StatefulSet" => format!("sts/{}", r.name),
        other => format!("{}/{}", other.to_lowercase(), r.name),
    })
}

/// Resolves `target` and starts watching its backends until `cancel`.
pub async fn watch_backends(
    cluster: &Cluster,
    target: &Target,
    port: &PortRef,
    cancel: CancellationToken,
) -> Result<(Resolved, watch::Receiver<BackendSet>), KubeError> {
    let ns = cluster.namespace.clone();
    let client = cluster.client.clone();
    let (tx, rx) = watch::channel(BackendSet::default());
    let tx = Arc::new(tx);
    match target.kind {
        TargetKind::Service => {
            let svcs: Api<Service> = Api::namespaced(client.clone(), &ns);
            let svc = match svcs.get_opt(&target.name).await.map_err(api_err(format!(
                "getting service {} in namespace {ns}",
                target.name
            )))? {
                Some(s) => s,
                None => return Err(not_found("service", &target.name, &ns, names(&svcs).await)),
            };
            let spec = svc.spec.clone().unwrap_or_default();
            let ports = spec.ports.clone().unwrap_or_default();
            let sp = ports
                .iter()
                .find(|p| match port {
                    PortRef::Number(n) => p.port == i32::from(*n),
                    PortRef::Name(name) => p.name.as_deref() == Some(name.as_str()),
                })
                .ok_or_else(|| KubeError::NoSuchPort {
                    service: target.name.clone(),
                    port: port.to_string(),
                    known: ports
                        .iter()
                        .map(|p| match &p.name {
                            Some(n) => format!("{} ({n})", p.port),
                            None => p.port.to_string(),
                        })
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
            if sp.protocol.as_deref().unwrap_or("TCP") != "TCP" {
                return Err(KubeError::NotTcp {
                    what: format!("port {} of service {}", sp.port, target.name),
                    protocol: sp.protocol.clone().unwrap_or_default(),
                });
            }
            let resolved = Resolved {
                target: format!("service/{}", target.name),
                remote_port: u16::try_from(sp.port).unwrap_or(0),
                port_name: sp.name.clone(),
            };
            let port_name = sp.name.clone().unwrap_or_default();
            let selector = spec.selector.clone().unwrap_or_default();
            let slices: Api<EndpointSlice> = Api::namespaced(client, &ns);
            let label = format!("kubernetes.io/service-name={}", target.name);
            spawn_watch(
                slices,
                watcher::Config::default().labels(&label),
                tx,
                cancel,
                move |store: &Store<EndpointSlice>| {
                    let mut ready = Vec::new();
                    let mut not_ready = 0;
                    for s in store.state() {
                        let Some(p) = s
                            .ports
                            .clone()
                            .unwrap_or_default()
                            .into_iter()
                            .find(|p| p.name.clone().unwrap_or_default() == port_name)
                            .and_then(|p| p.port)
                        else {
                            continue;
                        };
                        for e in s.endpoints.clone().unwrap_or_default() {
                            let ok = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false);
                            match (ok, e.target_ref.and_then(|t| t.name)) {
                                (true, Some(pod)) => ready.push(Endpoint {
                                    pod,
                                    port: u16::try_from(p).unwrap_or(0),
                                }),
                                _ => not_ready += 1,
                            }
                        }
                    }
                    let why = if !ready.is_empty() {
                        None
                    } else if not_ready > 0 {
                        Some(format!(
                            "{not_ready} pod(s) match the selector of the service but none is ready (Kubernetes layer: see `kubectl get pods` and the readiness probe)"
                        ))
                    } else if selector.is_empty() {
                        Some("the service has no selector and no endpoints (Kubernetes layer: it needs a selector or manual EndpointSlices)".to_string())
                    } else {
                        let sel: Vec<String> =
                            selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
                        Some(format!(
                            "the selector {} matches no pod, or the pods lack the service's target port (Kubernetes layer: compare `kubectl get pods --show-labels`)",
                            sel.join(",")
                        ))
                    };
                    (ready, why, None)
                },
            );
            Ok((resolved, rx))
        }
        TargetKind::Pod => {
            let pods: Api<Pod> = Api::namespaced(client, &ns);
            let pod = match pods.get_opt(&target.name).await.map_err(api_err(format!(
                "getting pod {} in namespace {ns}",
                target.name
            )))? {
                Some(p) => p,
                None => return Err(not_found("pod", &target.name, &ns, names(&pods).await)),
            };
            let remote = container_port(&pod, port).ok_or_else(|| KubeError::NoSuchPort {
                service: format!("pod {}", target.name),
                port: port.to_string(),
                known: "the pod's named container ports".into(),
            })?;
            let owner = owner_of(&pod);
            let resolved = Resolved {
                target: format!("pod/{}", target.name),
                remote_port: remote,
                port_name: match port {
                    PortRef::Name(n) => Some(n.clone()),
                    PortRef::Number(_) => None,
                },
            };
            let name = target.name.clone();
            let field = format!("metadata.name={name}");
            spawn_watch(
                pods,
                watcher::Config::default().fields(&field),
                tx,
                cancel,
                move |store: &Store<Pod>| {
                    let state = store.state();
                    match state.first() {
                        None => {
                            let survive = owner.as_ref().map(|o| {
                                format!("pod {name} was deleted; it belonged to {o}: `kubeway forward {o} ...` follows its replacements")
                            }).unwrap_or_else(|| format!("pod {name} was deleted"));
                            (
                                Vec::new(),
                                Some(format!("pod {name} is gone")),
                                Some(survive),
                            )
                        }
                        Some(p)
                            if pod_ready(p)
                                || p.status.as_ref().and_then(|s| s.phase.as_deref())
                                    == Some("Running") =>
                        {
                            (
                                vec![Endpoint {
                                    pod: name.clone(),
                                    port: remote,
                                }],
                                None,
                                None,
                            )
                        }
                        Some(p) => {
                            let phase = p
                                .status
                                .as_ref()
                                .and_then(|s| s.phase.clone())
                                .unwrap_or_default();
                            (
                                Vec::new(),
                                Some(format!("pod {name} is {phase}, not running yet")),
                                None,
                            )
                        }
                    }
                },
            );
            Ok((resolved, rx))
        }
        TargetKind::Deployment | TargetKind::StatefulSet | TargetKind::ReplicaSet => {
            let (kind, selector) = match target.kind {
                TargetKind::Deployment => (
                    "deployment",
                    workload_selector::<Deployment>(
                        &client,
                        &ns,
                        &target.name,
                        "deployment",
                        |d| d.spec.selector,
                    )
                    .await?,
                ),
                TargetKind::StatefulSet => (
                    "statefulset",
                    workload_selector::<StatefulSet>(
                        &client,
                        &ns,
                        &target.name,
                        "statefulset",
                        |d| d.spec.selector,
                    )
                    .await?,
                ),
                _ => (
                    "replicaset",
                    workload_selector::<ReplicaSet>(
                        &client,
                        &ns,
                        &target.name,
                        "replicaset",
                        |d| d.spec.selector,
                    )
                    .await?,
                ),
            };
            let labels: BTreeMap<String, String> = selector.match_labels.unwrap_or_default();
            let label = labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            let resolved = Resolved {
                target: format!("{kind}/{}", target.name),
                remote_port: port.number().unwrap_or(0),
                port_name: match port {
                    PortRef::Name(n) => Some(n.clone()),
                    PortRef::Number(_) => None,
                },
            };
            let pods: Api<Pod> = Api::namespaced(client, &ns);
            let port = port.clone();
            let sel_text = label.clone();
            spawn_watch(
                pods,
                watcher::Config::default().labels(&label),
                tx,
                cancel,
                move |store: &Store<Pod>| {
                    let state = store.state();
                    let mut ready = Vec::new();
                    let mut missing_port = 0;
                    for p in state.iter().filter(|p| pod_ready(p)) {
                        match container_port(p, &port) {
                            Some(n) => ready.push(Endpoint {
                                pod: p.metadata.name.clone().unwrap_or_default(),
                                port: n,
                            }),
                            None => missing_port += 1,
                        }
                    }
                    let why = if !ready.is_empty() {
                        None
                    } else if state.is_empty() {
                        Some(format!(
                            "the selector {sel_text} matches no pod (Kubernetes layer: is the workload scaled to 0?)"
                        ))
                    } else if missing_port > 0 {
                        Some(format!(
                            "{missing_port} ready pod(s) have no container port named {port}"
                        ))
                    } else {
                        Some(format!(
                            "{} pod(s) match but none is ready (Kubernetes layer: see `kubectl get pods -l {sel_text}`)",
                            state.len()
                        ))
                    };
                    (ready, why, None)
                },
            );
            Ok((resolved, rx))
        }
    }
}

/// What a reflector can watch.
pub(crate) trait Watched:
    kube::Resource<DynamicType = ()>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
}

impl<K> Watched for K where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static
{
}

type Compute<K> =
    dyn Fn(&Store<K>) -> (Vec<Endpoint>, Option<String>, Option<String>) + Send + Sync;

fn spawn_watch<K, F>(
    api: Api<K>,
    config: watcher::Config,
    tx: Arc<watch::Sender<BackendSet>>,
    cancel: CancellationToken,
    compute: F,
) where
    K: Watched,
    F: Fn(&Store<K>) -> (Vec<Endpoint>, Option<String>, Option<String>) + Send + Sync + 'static,
{
    let compute: Box<Compute<K>> = Box::new(compute);
    spawn_reflector(api, config, cancel, move |state| match state {
        Ok(store) => {
            let (mut ready, why, gone) = compute(store);
            ready.sort();
            ready.dedup();
            let set = BackendSet {
                why_empty: if ready.is_empty() { why } else { None },
                ready,
                api_error: None,
                pod_gone: gone,
            };
            tx.send_if_modified(|cur| {
                if *cur != set {
                    *cur = set;
                    true
                } else {
                    false
                }
            });
        }
        Err(msg) => {
            tx.send_if_modified(|cur| {
                if cur.api_error.as_deref() != Some(msg.as_str()) {
                    cur.api_error = Some(msg);
                    true
                } else {
                    false
                }
            });
        }
    });
}

/// Runs a reflector over `api` until `cancel` (resuming after API outages with back-off) and
/// calls `on_change` with the store after every change once the first list is in, and with the
/// error whenever the watch fails.
pub(crate) fn spawn_reflector<K, F>(
    api: Api<K>,
    config: watcher::Config,
    cancel: CancellationToken,
    mut on_change: F,
) where
    K: Watched,
    F: FnMut(Result<&Store<K>, String>) + Send + 'static,
{
    let (store, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, config).default_backoff());
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        loop {
            let item = tokio::select! {
                i = stream.next() => i,
                _ = cancel.cancelled() => return,
            };
            let Some(item) = item else { return };
            match item {
                Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
                Ok(_) => on_change(Ok(&store)),
                Err(e) => on_change(Err(e.to_string())),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_names() {
        let known = vec!["web".to_string(), "echo".to_string(), "web-lb".to_string()];
        assert_eq!(closest("wbe", &known).as_deref(), Some("web"));
        assert_eq!(closest("ecoh", &known).as_deref(), Some("echo"));
        assert_eq!(closest("database", &known), None);
    }
}
