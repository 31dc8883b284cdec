//! Collects what environment detection needs from the kubeconfig, the API server and the host:
//! an [`EnvSnapshot`] for `kubeway_core::env::detect`. Every API call may fail (RBAC, a dead
//! server); failures are recorded in the snapshot, not fatal.

use std::path::PathBuf;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use kube::api::{Api, ListParams};
use kube::config::Kubeconfig;
use kubeway_core::env::{
    EnvSnapshot, HostFacts, HostOs, KubeconfigFacts, LbHint, LbHintKind, MinikubeProfileFacts,
    NodeFacts,
};

use crate::{Cluster, ConnectOptions, KubeError, connect};

/// A NodePort the host can probe on node addresses.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodePortTarget {
    /// `namespace/name` of the Service.
    pub service: String,
    /// The node port.
    pub node_port: u16,
}

/// A snapshot and the live cluster it came from.
pub struct Collected {
    /// What detection reads.
    pub snapshot: EnvSnapshot,
    /// The connected cluster (None when the kubeconfig could not be turned into a client).
    pub cluster: Option<Cluster>,
    /// The `/version` failure, if the API server did not answer.
    pub api_error: Option<String>,
    /// The same failure classified (401, 403, unreachable, timed out), with the user the
    /// context authenticates as.
    pub api_failure: Option<(kubeway_core::explain::ApiFailure, Option<String>)>,
    /// A NodePort to probe node reachability with, if any Service has one.
    pub node_port: Option<NodePortTarget>,
}

fn read_kubeconfig(opts: &ConnectOptions) -> Result<Kubeconfig, KubeError> {
    match &opts.kubeconfig {
        Some(p) => Kubeconfig::read_from(p).map_err(|source| KubeError::ReadKubeconfig {
            path: p.display().to_string(),
            source,
        }),
        None => Kubeconfig::read().map_err(KubeError::NoKubeconfig),
    }
}

/// Host facts of the machine kubeway runs on.
pub fn host_facts() -> HostFacts {
    let mut host = HostFacts::new(HostOs::from_rust_os(std::env::consts::OS));
    for (k, v) in std::env::vars() {
        if HostFacts::is_env_of_interest(&k) {
            host.env.insert(k, v);
        }
    }
    host.proc_version = std::fs::read_to_string("/proc/version").ok();
    host.lima_cidata_mounted = std::path::Path::new("/mnt/lima-cidata").exists();
    host
}

fn minikube_home() -> Option<PathBuf> {
    let base = std::env::var_os("MINIKUBE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(PathBuf::from))?;
    Some(if base.ends_with(".minikube") {
        base
    } else {
        base.join(".minikube")
    })
}

fn minikube_profile(facts: &KubeconfigFacts) -> Option<MinikubeProfileFacts> {
    let is_minikube = facts
        .all_extensions()
        .any(|e| e.provider.as_deref() == Some("minikube.sigs.k8s.io"));
    if !is_minikube {
        return None;
    }
    let path = minikube_home()?
        .join("profiles")
        .join(&facts.cluster)
        .join("config.json");
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    Some(MinikubeProfileFacts::from_config_json(&json))
}

/// Collects a snapshot for the context the options select.
pub async fn collect(opts: &ConnectOptions) -> Result<Collected, KubeError> {
    let kc = read_kubeconfig(opts)?;
    let kc_for_user = kc.clone();
    let kc_json = serde_json::to_value(&kc).unwrap_or_default();
    let context = opts.context.clone().or_else(|| kc.current_context.clone());
    let facts =
        KubeconfigFacts::from_kubeconfig_json(&kc_json, context.as_deref()).map_err(|e| {
            KubeError::UnknownContext {
                context: context.clone().unwrap_or_default(),
                known: format!(
                    "{} ({e})",
                    kc.contexts
                        .iter()
                        .map(|c| c.name.clone())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        })?;
    let mut snapshot = EnvSnapshot {
        minikube_profile: minikube_profile(&facts),
        kubeconfig: facts,
        host: host_facts(),
        ..EnvSnapshot::default()
    };
    let cluster = connect(opts).await?;
    let mut api_error = None;
    let mut api_failure = None;
    match cluster.client.apiserver_version().await {
        Ok(v) => snapshot.server_version = Some(v.git_version),
        Err(e) => {
            api_error = Some(crate::apierror::error_chain(&e));
            let mut f = crate::apierror::classify(&e, "get", "/version", None);
            f.verb = None;
            f.resource = None;
            let user = crate::apierror::credentials(&kc_for_user, &cluster.context).0;
            api_failure = Some((f, user));
        }
    }
    if api_error.is_none() {
        match Api::<Node>::all(cluster.client.clone())
            .list(&ListParams::default())
            .await
        {
            Ok(list) => {
                for n in list.items {
                    let json = serde_json::to_value(&n).unwrap_or_default();
                    match NodeFacts::from_node_json(&json) {
                        Ok(f) => snapshot.nodes.push(f),
                        Err(e) => snapshot.nodes_error = Some(e.to_string()),
                    }
                }
            }
            Err(e) => {
                snapshot.nodes_error = Some(crate::apierror::error_chain(&e));
                let f = crate::apierror::classify(&e, "list", "nodes", None);
                // Credentials that are refused for everything are the API server's verdict;
                // RBAC that hides nodes only leaves them unprobed.
                if f.kind == kubeway_core::explain::ApiFailureKind::Unauthorized {
                    let user = crate::apierror::credentials(&kc_for_user, &cluster.context).0;
                    api_failure = Some((f, user));
                }
            }
        }
        snapshot.lb_hints = lb_hints(&cluster).await;
    }
    let node_port = if api_error.is_none() {
        first_node_port(&cluster).await
    } else {
        None
    };
    Ok(Collected {
        snapshot,
        cluster: Some(cluster),
        api_error,
        api_failure,
        node_port,
    })
}

async fn lb_hints(cluster: &Cluster) -> Vec<LbHint> {
    let mut hints = Vec::new();
    if let Ok(pods) = Api::<Pod>::namespaced(cluster.client.clone(), "kube-system")
        .list(&ListParams::default())
        .await
    {
        for p in pods.items {
            let name = p.metadata.name.unwrap_or_default();
            if name.starts_with("svclb-") {
                hints.push(LbHint {
                    kind: LbHintKind::K3sServiceLb,
                    observed: format!("Pod kube-system/{name}"),
                });
            } else if name.starts_with("vpnkit-controller") {
                hints.push(LbHint {
                    kind: LbHintKind::DockerDesktopVpnkit,
                    observed: format!("Pod kube-system/{name}"),
                });
            }
        }
    }
    if Api::<Namespace>::all(cluster.client.clone())
        .get_opt("metallb-system")
        .await
        .ok()
        .flatten()
        .is_some()
    {
        hints.push(LbHint {
            kind: LbHintKind::MetalLb,
            observed: "Namespace metallb-system".into(),
        });
    }
    hints
}

/// A NodePort of a Service with a ready endpoint: a Service without one is refused by
/// kube-proxy, which would say nothing about the way to the node.
async fn first_node_port(cluster: &Cluster) -> Option<NodePortTarget> {
    let svcs = Api::<Service>::all(cluster.client.clone())
        .list(&ListParams::default())
        .await
        .ok()?;
    let slices = Api::<k8s_openapi::api::discovery::v1::EndpointSlice>::all(cluster.client.clone())
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let ready: std::collections::BTreeSet<(String, String)> = slices
        .into_iter()
        .filter(|s| {
            s.endpoints
                .iter()
                .flatten()
                .any(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
        })
        .filter_map(|s| {
            let ns = s.metadata.namespace.clone()?;
            let svc = s
                .metadata
                .labels
                .as_ref()?
                .get("kubernetes.io/service-name")?
                .clone();
            Some((ns, svc))
        })
        .collect();
    svcs.items.into_iter().find_map(|s| {
        let key = (
            s.metadata.namespace.clone().unwrap_or_default(),
            s.metadata.name.clone().unwrap_or_default(),
        );
        if !ready.contains(&key) {
            return None;
        }
        let ns = s.metadata.namespace.clone().unwrap_or_default();
        let name = s.metadata.name.clone().unwrap_or_default();
        let np = s
            .spec?
            .ports?
            .into_iter()
            .find_map(|p| p.node_port)
            .and_then(|p| u16::try_from(p).ok())?;
        Some(NodePortTarget {
            service: format!("{ns}/{name}"),
            node_port: np,
        })
    })
}
