//! Every Service in scope (one or several namespaces, or all), with what `kubeway up` needs of
//! each: its ports with their NodePorts and protocols, whether it is headless or an
//! ExternalName, and for headless Services the ready pods behind it (from its EndpointSlices),
//! kept current by two watches. Failures keep their HTTP status, as the tunnel's watch does.

use std::collections::BTreeMap;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::reflector;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::Cluster;
use crate::loadbalancer::WatchFailure;

/// One port of a Service.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SvcPort {
    /// The port's name.
    pub name: Option<String>,
    /// The Service port.
    pub port: u16,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
    /// The NodePort, when one is allocated.
    pub node_port: Option<u16>,
}

/// A ready pod behind a headless Service.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HeadlessPod {
    /// The pod's name.
    pub pod: String,
    /// Its DNS hostname (a StatefulSet pod's `pod-0`), when the endpoint has one.
    pub hostname: Option<String>,
    /// Port numbers on the pod, by the Service port's name (`""` for an unnamed port).
    pub ports: BTreeMap<String, u16>,
}

/// What kind of Service it is, for `up`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SvcKind {
    /// A ClusterIP (NodePort and LoadBalancer Services have one too).
    ClusterIp {
        /// The address.
        ip: String,
    },
    /// `clusterIP: None`: one address per ready pod.
    Headless {
        /// The ready pods, sorted.
        pods: Vec<HeadlessPod>,
    },
    /// `type: ExternalName`: a name alias.
    ExternalName {
        /// The name it stands for.
        name: String,
    },
}

/// A Service as `up` needs it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Svc {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
    /// `ClusterIP`, `NodePort`, `LoadBalancer` or `ExternalName`.
    pub type_: String,
    /// Ports, in the Service's order.
    pub ports: Vec<SvcPort>,
    /// Its labels (for `-l`).
    pub labels: BTreeMap<String, String>,
    /// Kind.
    pub kind: SvcKind,
}

impl Svc {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// The Services in scope, kept current.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Services {
    /// False until both watches listed once.
    pub synced: bool,
    /// Sorted by namespace and name.
    pub services: Vec<Svc>,
    /// The API server could not be watched: the failure, while it lasts.
    pub api_error: Option<WatchFailure>,
}

/// Which namespaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Namespaces {
    /// These.
    Some(Vec<String>),
    /// Every namespace.
    All,
}

fn svc_of(s: &Service, slices: &[std::sync::Arc<EndpointSlice>]) -> Option<Svc> {
    let spec = s.spec.as_ref()?;
    let namespace = s.metadata.namespace.clone().unwrap_or_default();
    let name = s.metadata.name.clone().unwrap_or_default();
    let type_ = spec.type_.clone().unwrap_or_else(|| "ClusterIP".into());
    let ports: Vec<SvcPort> = spec
        .ports
        .iter()
        .flatten()
        .map(|p| SvcPort {
            name: p.name.clone().filter(|n| !n.is_empty()),
            port: u16::try_from(p.port).unwrap_or(0),
            protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
            node_port: p.node_port.and_then(|n| u16::try_from(n).ok()),
        })
        .collect();
    let kind = if type_ == "ExternalName" {
        SvcKind::ExternalName {
            name: spec.external_name.clone().unwrap_or_default(),
        }
    } else if spec.cluster_ip.as_deref() == Some("None") {
        let mut pods: BTreeMap<String, HeadlessPod> = BTreeMap::new();
        for slice in slices.iter().filter(|sl| {
            sl.metadata.namespace.as_deref() == Some(namespace.as_str())
                && sl
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("kubernetes.io/service-name"))
                    == Some(&name)
        }) {
            let slice_ports: Vec<(String, u16)> = slice
                .ports
                .iter()
                .flatten()
                .filter_map(|p| {
                    Some((
                        p.name.clone().unwrap_or_default(),
                        u16::try_from(p.port?).ok()?,
                    ))
                })
                .collect();
            for e in slice.endpoints.iter().flatten() {
                let ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false);
                let Some(pod) = e.target_ref.as_ref().and_then(|t| t.name.clone()) else {
                    continue;
                };
                if !ready {
                    continue;
                }
                let entry = pods.entry(pod.clone()).or_insert_with(|| HeadlessPod {
                    pod,
                    hostname: e.hostname.clone(),
                    ports: BTreeMap::new(),
                });
                entry.ports.extend(slice_ports.iter().cloned());
            }
        }
        SvcKind::Headless {
            pods: pods.into_values().collect(),
        }
    } else {
        SvcKind::ClusterIp {
            ip: spec.cluster_ip.clone().unwrap_or_default(),
        }
    };
    Some(Svc {
        uid: s.metadata.uid.clone().unwrap_or_default(),
        labels: s.metadata.labels.clone().unwrap_or_default(),
        namespace,
        name,
        type_,
        ports,
        kind,
    })
}

/// Watches the Services (and, for headless ones, their EndpointSlices) in `scope` until
/// `cancel`. The first value has `synced: false`; every later one is the whole current set.
pub fn watch_services(
    cluster: &Cluster,
    scope: &Namespaces,
    cancel: CancellationToken,
) -> watch::Receiver<Services> {
    let (tx, rx) = watch::channel(Services::default());
    let tx = std::sync::Arc::new(tx);
    let (svc_store, svc_writer) = reflector::store::<Service>();
    let (slice_store, slice_writer) = reflector::store::<EndpointSlice>();
    let scope = scope.clone();
    let in_scope = {
        let scope = scope.clone();
        move |ns: &str| match &scope {
            Namespaces::All => true,
            Namespaces::Some(list) => list.iter().any(|n| n == ns),
        }
    };
    let synced = std::sync::Arc::new([
        std::sync::atomic::AtomicBool::new(false),
        std::sync::atomic::AtomicBool::new(false),
    ]);
    let publish = {
        let (tx, svc_store, slice_store, synced) = (
            tx.clone(),
            svc_store.clone(),
            slice_store.clone(),
            synced.clone(),
        );
        move || {
            let slices = slice_store.state();
            let mut services: Vec<Svc> = svc_store
                .state()
                .iter()
                .filter(|s| in_scope(s.metadata.namespace.as_deref().unwrap_or_default()))
                .filter_map(|s| svc_of(s, &slices))
                .collect();
            services.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
            let all = synced
                .iter()
                .all(|s| s.load(std::sync::atomic::Ordering::SeqCst));
            tx.send_if_modified(|cur| {
                let next = Services {
                    synced: all,
                    services,
                    api_error: None,
                };
                let changed = *cur != next;
                *cur = next;
                changed
            });
        }
    };
    let publish: std::sync::Arc<dyn Fn() + Send + Sync> = std::sync::Arc::new(publish);
    // One namespace: namespaced watches; several or all: cluster-wide, filtered.
    let (svc_api, slice_api): (Api<Service>, Api<EndpointSlice>) = match &scope {
        Namespaces::Some(list) if list.len() == 1 => (
            Api::namespaced(cluster.client.clone(), &list[0]),
            Api::namespaced(cluster.client.clone(), &list[0]),
        ),
        _ => (
            Api::all(cluster.client.clone()),
            Api::all(cluster.client.clone()),
        ),
    };
    spawn(
        svc_api,
        watcher::Config::default(),
        svc_writer,
        0,
        synced.clone(),
        tx.clone(),
        publish.clone(),
        cancel.clone(),
    );
    spawn(
        slice_api,
        watcher::Config::default().labels("kubernetes.io/service-name"),
        slice_writer,
        1,
        synced,
        tx,
        publish,
        cancel,
    );
    rx
}

#[allow(clippy::too_many_arguments)]
fn spawn<K>(
    api: Api<K>,
    config: watcher::Config,
    writer: reflector::store::Writer<K>,
    index: usize,
    synced: std::sync::Arc<[std::sync::atomic::AtomicBool; 2]>,
    tx: std::sync::Arc<watch::Sender<Services>>,
    publish: std::sync::Arc<dyn Fn() + Send + Sync>,
    cancel: CancellationToken,
) where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
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
                Ok(_) => {
                    if let Some(s) = synced.get(index) {
                        s.store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                    publish();
                }
                Err(e) => {
                    let failure = WatchFailure::of(&e);
                    tx.send_if_modified(|cur| {
                        let changed = cur.api_error.as_ref() != Some(&failure);
                        cur.api_error = Some(failure);
                        changed
                    });
                }
            }
        }
    });
}
