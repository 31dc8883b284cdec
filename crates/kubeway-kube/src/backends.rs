//! Resolves a forward target (pod, Service, Deployment, StatefulSet, ReplicaSet) and its ports
//! to ready backends, and keeps them current with one watch per target whatever the number of
//! ports: EndpointSlices (and the selector's Pods) for Services, the selector's Pods for
//! workloads, the pod itself for pod targets. It also says each pod's fate (running,
//! terminating until a deadline, gone), so a connection that ends cleanly on a pod being killed
//! can be told from a complete one. API trouble is fatal before the watch first syncs (a 401,
//! 403 or 404 ends the command at once) and reported, then retried, after; the end of an outage
//! is noticed by asking the API server again, not by waiting for a change.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, ListParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kubeway_core::target::{PortRef, Target, TargetKind};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{Cluster, KubeError};

/// How long a watch that keeps failing before its first sync is waited for.
const FIRST_SYNC_PATIENCE: Duration = Duration::from_secs(15);
/// How often the API server is asked again while a watch is failing.
const RECHECK: Duration = Duration::from_secs(2);

/// One ready pod port to forward to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Endpoint {
    /// Pod name.
    pub pod: String,
    /// Port on the pod.
    pub port: u16,
}

/// The ready endpoints of one forwarded port, and why there are none.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PortBackends {
    /// Ready endpoints, sorted.
    pub ready: Vec<Endpoint>,
    /// When `ready` is empty: which layer is empty, in words.
    pub why_empty: Option<String>,
}

/// What is known of a pod's life, from the watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodFate {
    /// Not being deleted.
    Running,
    /// Deletion has begun; the kubelet kills what is left at `deadline`
    /// (`metadata.deletionTimestamp`).
    Terminating {
        /// When the grace period ends.
        deadline: SystemTime,
    },
    /// Deleted from the API: its containers are being or have been killed.
    Gone,
    /// The pods are not watched (a Service without a selector).
    Unknown,
}

impl PodFate {
    /// Whether a connection to this pod that ends now can have been cut by the pod being
    /// killed: its grace period is over (a pod that left the API before its deadline exited by
    /// itself, its connections finished), or it is gone with no deadline known.
    pub fn killed_by(&self, now: SystemTime) -> bool {
        match self {
            PodFate::Gone => true,
            PodFate::Terminating { deadline } => now >= *deadline,
            PodFate::Running | PodFate::Unknown => false,
        }
    }
}

/// The current backends of a target, per forwarded port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackendSet {
    /// Whether every watch has listed its objects once.
    pub synced: bool,
    /// One entry per port asked for, in the same order.
    pub ports: Vec<PortBackends>,
    /// Pods that exist, with their deletion deadline once deletion began (`None` while not
    /// being deleted); empty with `pods_watched` false when pods are not watched.
    pub pods: BTreeMap<String, Option<SystemTime>>,
    /// Whether `pods` is authoritative.
    pub pods_watched: bool,
    /// Pods deleted from the API lately, with the end of their grace period (their
    /// `deletionTimestamp`, else when the deletion was seen): the kubelet kills what is left
    /// of them at that time, not before.
    pub gone: BTreeMap<String, SystemTime>,
    /// The API server could not be watched: the error, while the trouble lasts.
    pub api_error: Option<String>,
    /// A single-pod target was deleted: what would have survived.
    pub pod_gone: Option<String>,
}

impl BackendSet {
    /// The backends of the `i`-th port (empty if out of range).
    pub fn port(&self, i: usize) -> &PortBackends {
        static EMPTY: PortBackends = PortBackends {
            ready: Vec::new(),
            why_empty: None,
        };
        self.ports.get(i).unwrap_or(&EMPTY)
    }

    /// What the watch knows of `pod`.
    pub fn fate(&self, pod: &str) -> PodFate {
        if !self.pods_watched {
            return PodFate::Unknown;
        }
        match self.pods.get(pod) {
            None => match self.gone.get(pod) {
                Some(deadline) => PodFate::Terminating {
                    deadline: *deadline,
                },
                None => PodFate::Gone,
            },
            Some(None) => PodFate::Running,
            Some(Some(deadline)) => PodFate::Terminating {
                deadline: *deadline,
            },
        }
    }
}

/// What a target's port resolved to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Resolved {
    /// `service/web`, `deployment/web`, `pod/web-1`.
    pub target: String,
    /// The port as forwarded: a Service's port number, or the container port (for a named
    /// port of a workload, the number its pod template gives; pods may differ during a
    /// roll-out, each is dialed on its own).
    pub remote_port: u16,
    /// The port's name, if it has one.
    pub port_name: Option<String>,
}

impl Resolved {
    /// `http (8080)` for a named port, `8080` otherwise.
    pub fn remote(&self) -> String {
        match &self.port_name {
            Some(name) if !name.is_empty() => format!("{name} ({})", self.remote_port),
            _ => self.remote_port.to_string(),
        }
    }
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

/// The pod selector and template of the workload `kind`/`name` in `ns`, or why there is none.
async fn workload<K>(
    client: &kube::Client,
    ns: &str,
    name: &str,
    kind: &str,
    parts: impl FnOnce(K) -> (LabelSelector, PodTemplateSpec),
) -> Result<(LabelSelector, PodTemplateSpec), KubeError>
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
        .map_err(api_err(format!("getting {kind} {name} in namespace {ns}")))?;
    match found {
        Some(obj) => Ok(parts(obj)),
        None => Err(not_found(kind, name, ns, names(&api).await)),
    }
}

fn api_err(what: String) -> impl FnOnce(kube::Error) -> KubeError {
    move |source| KubeError::Api { what, source }
}

fn named_ports(containers: &[k8s_openapi::api::core::v1::Container]) -> Vec<(String, u16)> {
    containers
        .iter()
        .flat_map(|c| c.ports.clone().unwrap_or_default())
        .filter_map(|p| Some((p.name?, u16::try_from(p.container_port).ok()?)))
        .collect()
}

fn container_port(pod: &Pod, port: &PortRef) -> Option<u16> {
    match port {
        PortRef::Number(n) => Some(*n),
        PortRef::Name(name) => {
            let spec = pod.spec.as_ref()?;
            named_ports(&spec.containers)
                .into_iter()
                .find(|(n, _)| n == name)
                .map(|(_, p)| p)
        }
    }
}

/// Resolves `port` against declared container ports: a number as is, a name to its number, an
/// unknown name to an error listing the names there are (as kubectl fails at once).
fn resolve_container_port(
    what: &str,
    containers: &[k8s_openapi::api::core::v1::Container],
    port: &PortRef,
) -> Result<(u16, Option<String>), KubeError> {
    match port {
        PortRef::Number(n) => Ok((*n, None)),
        PortRef::Name(name) => {
            let named = named_ports(containers);
            named
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, p)| (*p, Some(name.clone())))
                .ok_or_else(|| KubeError::NoSuchPort {
                    service: what.to_string(),
                    port: name.clone(),
                    known: if named.is_empty() {
                        "no named container ports (use a number)".into()
                    } else {
                        named
                            .iter()
                            .map(|(n, p)| format!("{n} ({p})"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    },
                })
        }
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

fn deadline(p: &Pod) -> Option<SystemTime> {
    let ts = p.metadata.deletion_timestamp.as_ref()?;
    Some(SystemTime::from(ts.0))
}

fn pod_fates(store: &Store<Pod>) -> BTreeMap<String, Option<SystemTime>> {
    store
        .state()
        .iter()
        .filter_map(|p| Some((p.metadata.name.clone()?, deadline(p))))
        .collect()
}

fn labels_of(selector: &BTreeMap<String, String>) -> String {
    selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// What one computation of the target's state gives.
struct Computed {
    ports: Vec<PortBackends>,
    pod_gone: Option<String>,
}

/// The readers the computation looks at.
#[derive(Clone)]
struct Stores {
    slices: Option<Store<EndpointSlice>>,
    pods: Option<Store<Pod>>,
}

type Compute = dyn Fn(&Stores) -> Computed + Send + Sync;

/// Resolves `target` and each of `ports`, starts one watch for the target, and returns once it
/// has listed its objects (or failed: a 401, 403 or 404 at once, other trouble after 15 s).
/// The receiver stays current until `cancel`.
pub async fn watch_target(
    cluster: &Cluster,
    target: &Target,
    ports: &[PortRef],
    cancel: CancellationToken,
) -> Result<(Vec<Resolved>, watch::Receiver<BackendSet>), KubeError> {
    let ns = cluster.namespace.clone();
    let client = cluster.client.clone();
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let (resolved, slice_watch, pod_watch, compute): (
        Vec<Resolved>,
        Option<String>,
        Option<watcher::Config>,
        Box<Compute>,
    ) = match target.kind {
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
            let svc_ports = spec.ports.clone().unwrap_or_default();
            let mut resolved = Vec::new();
            let mut port_names = Vec::new();
            for port in ports {
                let sp = svc_ports
                    .iter()
                    .find(|p| match port {
                        PortRef::Number(n) => p.port == i32::from(*n),
                        PortRef::Name(name) => p.name.as_deref() == Some(name.as_str()),
                    })
                    .ok_or_else(|| KubeError::NoSuchPort {
                        service: format!("service {}", target.name),
                        port: port.to_string(),
                        known: svc_ports
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
                resolved.push(Resolved {
                    target: format!("service/{}", target.name),
                    remote_port: u16::try_from(sp.port).unwrap_or(0),
                    port_name: sp.name.clone(),
                });
                port_names.push(sp.name.clone().unwrap_or_default());
            }
            let selector = spec.selector.clone().unwrap_or_default();
            let pod_watch = (!selector.is_empty())
                .then(|| watcher::Config::default().labels(&labels_of(&selector)));
            let compute = move |stores: &Stores| {
                let slices = stores
                    .slices
                    .as_ref()
                    .map(|s| s.state())
                    .unwrap_or_default();
                let ports = port_names
                    .iter()
                    .map(|port_name| service_port_backends(&slices, port_name, &selector))
                    .collect();
                Computed {
                    ports,
                    pod_gone: None,
                }
            };
            (
                resolved,
                Some(format!("kubernetes.io/service-name={}", target.name)),
                pod_watch,
                Box::new(compute),
            )
        }
        TargetKind::Pod => {
            let pod = match pods_api
                .get_opt(&target.name)
                .await
                .map_err(api_err(format!(
                    "getting pod {} in namespace {ns}",
                    target.name
                )))? {
                Some(p) => p,
                None => return Err(not_found("pod", &target.name, &ns, names(&pods_api).await)),
            };
            let containers = pod.spec.clone().unwrap_or_default().containers;
            let mut resolved = Vec::new();
            let mut numbers = Vec::new();
            for port in ports {
                let (n, name) =
                    resolve_container_port(&format!("pod {}", target.name), &containers, port)?;
                resolved.push(Resolved {
                    target: format!("pod/{}", target.name),
                    remote_port: n,
                    port_name: name,
                });
                numbers.push(n);
            }
            let owner = owner_of(&pod);
            let name = target.name.clone();
            let compute = move |stores: &Stores| {
                let state = stores.pods.as_ref().map(|s| s.state()).unwrap_or_default();
                let (ready, why, gone) = match state.first() {
                    None => {
                        let survive = owner
                            .as_ref()
                            .map(|o| {
                                format!("pod {name} was deleted; it belonged to {o}: `kubeway forward {o} ...` follows its replacements")
                            })
                            .unwrap_or_else(|| format!("pod {name} was deleted"));
                        (false, Some(format!("pod {name} is gone")), Some(survive))
                    }
                    Some(p)
                        if pod_ready(p)
                            || p.status.as_ref().and_then(|s| s.phase.as_deref())
                                == Some("Running") =>
                    {
                        (true, None, None)
                    }
                    Some(p) => {
                        let phase = p
                            .status
                            .as_ref()
                            .and_then(|s| s.phase.clone())
                            .unwrap_or_default();
                        (
                            false,
                            Some(format!("pod {name} is {phase}, not running yet")),
                            None,
                        )
                    }
                };
                Computed {
                    ports: numbers
                        .iter()
                        .map(|n| PortBackends {
                            ready: if ready {
                                vec![Endpoint {
                                    pod: name.clone(),
                                    port: *n,
                                }]
                            } else {
                                Vec::new()
                            },
                            why_empty: why.clone(),
                        })
                        .collect(),
                    pod_gone: gone,
                }
            };
            let field = format!("metadata.name={}", target.name);
            (
                resolved,
                None,
                Some(watcher::Config::default().fields(&field)),
                Box::new(compute),
            )
        }
        TargetKind::Deployment | TargetKind::StatefulSet | TargetKind::ReplicaSet => {
            let name = &target.name;
            let (kind, (selector, template)) = match target.kind {
                TargetKind::Deployment => (
                    "deployment",
                    workload::<Deployment>(&client, &ns, name, "deployment", |d| {
                        (d.spec.selector, d.spec.template)
                    })
                    .await?,
                ),
                TargetKind::StatefulSet => (
                    "statefulset",
                    workload::<StatefulSet>(&client, &ns, name, "statefulset", |d| {
                        (d.spec.selector, d.spec.template)
                    })
                    .await?,
                ),
                _ => (
                    "replicaset",
                    workload::<ReplicaSet>(&client, &ns, name, "replicaset", |d| {
                        (d.spec.selector, d.spec.template.unwrap_or_default())
                    })
                    .await?,
                ),
            };
            let containers = template.spec.unwrap_or_default().containers;
            let mut resolved = Vec::new();
            for port in ports {
                let (n, port_name) =
                    resolve_container_port(&format!("{kind} {name}"), &containers, port)?;
                resolved.push(Resolved {
                    target: format!("{kind}/{name}"),
                    remote_port: n,
                    port_name,
                });
            }
            let labels: BTreeMap<String, String> = selector.match_labels.unwrap_or_default();
            let label = labels_of(&labels);
            let ports = ports.to_vec();
            let sel_text = label.clone();
            let compute = move |stores: &Stores| {
                let state = stores.pods.as_ref().map(|s| s.state()).unwrap_or_default();
                let ports = ports
                    .iter()
                    .map(|port| {
                        let mut ready = Vec::new();
                        let mut missing_port = 0;
                        for p in state.iter().filter(|p| pod_ready(p)) {
                            match container_port(p, port) {
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
                        PortBackends {
                            ready,
                            why_empty: why,
                        }
                    })
                    .collect();
                Computed {
                    ports,
                    pod_gone: None,
                }
            };
            (
                resolved,
                None,
                Some(watcher::Config::default().labels(&label)),
                Box::new(compute),
            )
        }
    };

    let (tx, rx) = watch::channel(BackendSet {
        pods_watched: pod_watch.is_some(),
        ..BackendSet::default()
    });
    let tx = Arc::new(tx);
    let compute: Arc<Compute> = Arc::from(compute);
    let (slice_store, slice_writer) = reflector::store::<EndpointSlice>();
    let (pod_store, pod_writer) = reflector::store::<Pod>();
    let stores = Stores {
        slices: slice_watch.as_ref().map(|_| slice_store),
        pods: pod_watch.as_ref().map(|_| pod_store),
    };
    let gone_pods: Arc<std::sync::Mutex<BTreeMap<String, SystemTime>>> = Arc::default();
    let slices_synced = Arc::new(AtomicBool::new(slice_watch.is_none()));
    let pods_synced = Arc::new(AtomicBool::new(pod_watch.is_none()));
    let publish = {
        let (tx, stores, compute) = (tx.clone(), stores.clone(), compute.clone());
        let gone_pods = gone_pods.clone();
        let (slices_synced, pods_synced) = (slices_synced.clone(), pods_synced.clone());
        move || {
            let synced = slices_synced.load(Ordering::SeqCst) && pods_synced.load(Ordering::SeqCst);
            let Computed {
                mut ports,
                pod_gone,
            } = compute(&stores);
            for p in &mut ports {
                p.ready.sort();
                p.ready.dedup();
                if !p.ready.is_empty() {
                    p.why_empty = None;
                }
            }
            let pods = stores.pods.as_ref().map(pod_fates).unwrap_or_default();
            let gone = gone_pods
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            tx.send_if_modified(|cur| {
                let next = BackendSet {
                    synced,
                    ports,
                    pods,
                    pods_watched: stores.pods.is_some(),
                    gone,
                    api_error: cur.api_error.clone(),
                    pod_gone: if synced { pod_gone } else { None },
                };
                if *cur != next {
                    *cur = next;
                    true
                } else {
                    false
                }
            })
        }
    };
    let publish: Arc<dyn Fn() -> bool + Send + Sync> = Arc::new(publish);
    if let Some(label) = &slice_watch {
        let api: Api<EndpointSlice> = Api::namespaced(client.clone(), &ns);
        run_watch(
            api,
            watcher::Config::default().labels(label),
            slice_writer,
            slices_synced,
            format!(
                "EndpointSlices of service {} in namespace {ns}",
                target.name
            ),
            tx.clone(),
            publish.clone(),
            None,
            cancel.clone(),
        );
    }
    if let Some(config) = pod_watch {
        run_watch(
            pods_api,
            config,
            pod_writer,
            pods_synced,
            format!("pods of {} in namespace {ns}", target),
            tx.clone(),
            publish.clone(),
            Some(Arc::new(move |p: &Pod| {
                let Some(name) = p.metadata.name.clone() else {
                    return;
                };
                let deadline = deadline(p).unwrap_or_else(SystemTime::now);
                let mut gone = gone_pods
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                // Keep the last few hundred: enough for any roll-out in progress.
                if gone.len() >= 512
                    && let Some(oldest) =
                        gone.iter().min_by_key(|(_, t)| **t).map(|(n, _)| n.clone())
                {
                    gone.remove(&oldest);
                }
                gone.insert(name, deadline);
            })),
            cancel.clone(),
        );
    }
    wait_first_sync(rx.clone(), &cancel).await?;
    Ok((resolved, rx))
}

/// The ready endpoints of one Service port, from its EndpointSlices.
fn service_port_backends(
    slices: &[Arc<EndpointSlice>],
    port_name: &str,
    selector: &BTreeMap<String, String>,
) -> PortBackends {
    let mut ready = Vec::new();
    let mut not_ready = 0;
    for s in slices {
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
        Some(format!(
            "the selector {} matches no pod, or the pods lack the service's target port (Kubernetes layer: compare `kubectl get pods --show-labels`)",
            labels_of(selector)
        ))
    };
    PortBackends {
        ready,
        why_empty: why,
    }
}

/// The HTTP status behind a watch failure, if the API server answered one.
fn status_of(e: &watcher::Error) -> Option<u16> {
    match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => Some(s.code),
        watcher::Error::WatchError(s) => Some(s.code),
        _ => None,
    }
}

/// Words for a watch failure, naming the API layer and what to do.
pub fn describe_watch_failure(what: &str, status: Option<u16>, error: &str) -> String {
    match status {
        Some(401) => format!(
            "API layer: the API server rejected the credentials (401) watching {what}; refresh the kubeconfig's credentials (log in again): {error}"
        ),
        Some(403) => format!(
            "API layer: RBAC forbids listing and watching {what} (403); ask for the list and watch verbs on them: {error}"
        ),
        Some(404) => format!(
            "API layer: the API server has no {what} (404); does the namespace exist? {error}"
        ),
        Some(code) => format!("API layer: the API server answered {code} watching {what}: {error}"),
        None => format!("API layer: cannot watch {what}: {error}"),
    }
}

/// Called with each object a watch reports deleted.
type OnDelete<K> = Arc<dyn Fn(&K) + Send + Sync>;

#[allow(clippy::too_many_arguments)]
fn run_watch<K: Watched>(
    api: Api<K>,
    config: watcher::Config,
    writer: reflector::store::Writer<K>,
    synced: Arc<AtomicBool>,
    what: String,
    tx: Arc<watch::Sender<BackendSet>>,
    publish: Arc<dyn Fn() -> bool + Send + Sync>,
    on_delete: Option<OnDelete<K>>,
    cancel: CancellationToken,
) {
    let probe = api.clone();
    let stream = reflector::reflector(writer, watcher(api, config).default_backoff());
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        let mut failing = false;
        loop {
            let item = tokio::select! {
                i = stream.next() => i,
                _ = cancel.cancelled() => return,
                // While failing, ask the API server directly: a watch that resumes from its
                // last resourceVersion says nothing until something changes.
                _ = tokio::time::sleep(RECHECK), if failing => {
                    if probe.list_metadata(&ListParams::default().limit(1)).await.is_ok() {
                        failing = false;
                        tx.send_if_modified(|cur| cur.api_error.take().is_some());
                    }
                    continue;
                }
            };
            let Some(item) = item else { return };
            match item {
                Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
                Ok(event) => {
                    if let (watcher::Event::Delete(obj), Some(f)) = (&event, &on_delete) {
                        f(obj);
                    }
                    synced.store(true, Ordering::SeqCst);
                    if failing {
                        failing = false;
                        tx.send_if_modified(|cur| cur.api_error.take().is_some());
                    }
                    publish();
                }
                Err(e) if status_of(&e) == Some(410) => {
                    // Expired resourceVersion: the watcher lists again by itself.
                }
                Err(e) => {
                    failing = true;
                    let msg = describe_watch_failure(&what, status_of(&e), &e.to_string());
                    let code = status_of(&e);
                    tx.send_if_modified(|cur| {
                        let text = format!("{}{msg}", code_tag(code));
                        if cur.api_error.as_deref() != Some(text.as_str()) {
                            cur.api_error = Some(text);
                            true
                        } else {
                            false
                        }
                    });
                }
            }
        }
    });
}

/// The status code is kept at the front of the error text for [`wait_first_sync`]:
/// `[401] …`.
fn code_tag(code: Option<u16>) -> String {
    code.map(|c| format!("[{c}] ")).unwrap_or_default()
}

fn split_tag(text: &str) -> (Option<u16>, &str) {
    if let Some(rest) = text.strip_prefix('[')
        && let Some((code, msg)) = rest.split_once("] ")
        && let Ok(code) = code.parse()
    {
        return (Some(code), msg);
    }
    (None, text)
}

impl BackendSet {
    /// The API trouble, without its status tag, and the status.
    pub fn api_trouble(&self) -> Option<(Option<u16>, &str)> {
        self.api_error.as_deref().map(split_tag)
    }
}

async fn wait_first_sync(
    mut rx: watch::Receiver<BackendSet>,
    cancel: &CancellationToken,
) -> Result<(), KubeError> {
    let mut failing_since: Option<tokio::time::Instant> = None;
    loop {
        {
            let set = rx.borrow_and_update();
            if set.synced {
                return Ok(());
            }
            if let Some((code, msg)) = set.api_trouble() {
                let fatal = matches!(code, Some(401 | 403 | 404));
                let since = *failing_since.get_or_insert_with(tokio::time::Instant::now);
                if fatal || since.elapsed() >= FIRST_SYNC_PATIENCE {
                    cancel.cancel();
                    return Err(KubeError::Watch {
                        message: msg.to_string(),
                    });
                }
            }
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() {
                return Err(KubeError::Watch { message: "the watch ended before it listed anything".into() });
            },
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = cancel.cancelled() => return Err(KubeError::Watch { message: "cancelled".into() }),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_is_killed_only_once_its_grace_period_is_over() {
        let now = SystemTime::now();
        let later = now + std::time::Duration::from_secs(30);
        let earlier = now - std::time::Duration::from_secs(1);
        let mut set = BackendSet {
            pods_watched: true,
            ..BackendSet::default()
        };
        set.pods.insert("running".into(), None);
        set.pods.insert("draining".into(), Some(later));
        set.pods.insert("overdue".into(), Some(earlier));
        set.gone.insert("exited-early".into(), later);
        set.gone.insert("killed".into(), earlier);
        assert!(!set.fate("running").killed_by(now));
        assert!(
            !set.fate("draining").killed_by(now),
            "still within its grace"
        );
        assert!(set.fate("overdue").killed_by(now));
        assert!(
            !set.fate("exited-early").killed_by(now),
            "left the API before its deadline: it exited by itself"
        );
        assert!(set.fate("killed").killed_by(now));
        assert!(
            set.fate("never-seen").killed_by(now),
            "gone, no deadline known"
        );
        set.pods_watched = false;
        assert_eq!(set.fate("anything"), PodFate::Unknown);
    }

    #[test]
    fn closest_names() {
        let known = vec!["web".to_string(), "echo".to_string(), "web-lb".to_string()];
        assert_eq!(closest("wbe", &known).as_deref(), Some("web"));
        assert_eq!(closest("ecoh", &known).as_deref(), Some("echo"));
        assert_eq!(closest("database", &known), None);
    }
}
