//! LoadBalancer Services for `kubeway tunnel`: watching them (one namespace or all), writing
//! `status.loadBalancer.ingress` only onto the object version that was looked at, and removing
//! it only while it is still exactly what was written (JSON patch `test` operations, so the
//! API server decides atomically and an ingress someone else set is never touched).

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use kube::api::Api;
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use futures::StreamExt;
use kube::runtime::{WatchStreamExt, reflector};

use crate::{Cluster, KubeError};

/// Which Services to watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// One namespace.
    Namespace(String),
    /// Every namespace.
    All,
}

/// One port of a LoadBalancer Service.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LbPort {
    /// The port's name (needed to find its endpoints).
    pub name: Option<String>,
    /// The Service port, which the load balancer serves.
    pub port: u16,
    /// The NodePort, when one is allocated.
    pub node_port: Option<u16>,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
}

/// A LoadBalancer Service as the tunnel needs it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LbService {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID (a Service deleted and created again is another object).
    pub uid: String,
    /// The version looked at; a write applies only to this version.
    pub resource_version: String,
    /// Ports.
    pub ports: Vec<LbPort>,
    /// `status.loadBalancer.ingress` as the API server has it (empty when pending).
    pub ingress: Vec<Value>,
    /// `spec.loadBalancerClass`: set, the Service belongs to that implementation.
    pub class: Option<String>,
    /// `spec.clusterIP`, when it is an address (not `None` or empty).
    pub cluster_ip: Option<IpAddr>,
}

impl LbService {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The ingress addresses, as `kubectl get svc` shows them.
    pub fn ingress_addresses(&self) -> Vec<String> {
        self.ingress
            .iter()
            .filter_map(|i| i["ip"].as_str().or(i["hostname"].as_str()))
            .map(str::to_string)
            .collect()
    }
}

/// The LoadBalancer Services in scope, kept current by a watch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LbServices {
    /// False until the first list is in.
    pub synced: bool,
    /// Sorted by namespace and name.
    pub services: Vec<LbService>,
    /// The API server could not be watched: the error, while the outage lasts.
    pub api_error: Option<WatchFailure>,
}

/// Why listing or watching the Services failed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WatchFailure {
    /// `list` (the first list) or `watch`.
    pub verb: &'static str,
    /// The HTTP status when the API server answered with one (401, 403, 404 …).
    pub code: Option<u16>,
    /// The API server's words, or the transport's error.
    pub message: String,
}

impl WatchFailure {
    /// Whether the API server refused outright (401 Unauthorized, 403 Forbidden, 404 Not
    /// Found): retrying will not help until someone changes credentials, RBAC or the cluster.
    pub fn is_refusal(&self) -> bool {
        matches!(self.code, Some(401 | 403 | 404))
    }

    pub(crate) fn of(e: &watcher::Error) -> Self {
        let (verb, err) = match e {
            watcher::Error::InitialListFailed(e) => ("list", e),
            watcher::Error::WatchStartFailed(e) | watcher::Error::WatchFailed(e) => ("watch", e),
            watcher::Error::WatchError(status) => {
                return Self {
                    verb: "watch",
                    code: Some(status.code),
                    message: status.message.clone(),
                };
            }
            watcher::Error::NoResourceVersion => {
                return Self {
                    verb: "list",
                    code: None,
                    message: e.to_string(),
                };
            }
        };
        match err {
            kube::Error::Api(status) => Self {
                verb,
                code: Some(status.code),
                message: status.message.clone(),
            },
            other => Self {
                verb,
                code: None,
                message: other.to_string(),
            },
        }
    }
}

impl std::fmt::Display for WatchFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let reason = match self.code {
            Some(401) => " (401 Unauthorized)",
            Some(403) => " (403 Forbidden)",
            Some(404) => " (404 Not Found)",
            _ => "",
        };
        match self.code {
            Some(code) if reason.is_empty() => write!(
                f,
                "{} services: the API server answered {code}: {}",
                self.verb, self.message
            ),
            Some(_) => write!(
                f,
                "{} services: the API server refused{reason}: {}",
                self.verb, self.message
            ),
            None => write!(f, "{} services: {}", self.verb, self.message),
        }
    }
}

fn lb_service(s: &Service) -> Option<LbService> {
    let spec = s.spec.as_ref()?;
    if spec.type_.as_deref() != Some("LoadBalancer") {
        return None;
    }
    let ports = spec
        .ports
        .iter()
        .flatten()
        .map(|p| LbPort {
            name: p.name.clone().filter(|n| !n.is_empty()),
            port: u16::try_from(p.port).unwrap_or(0),
            node_port: p.node_port.and_then(|n| u16::try_from(n).ok()),
            protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
        })
        .collect();
    let ingress = s
        .status
        .as_ref()
        .and_then(|st| st.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|list| {
            list.iter()
                .filter_map(|i| serde_json::to_value(i).ok())
                .collect()
        })
        .unwrap_or_default();
    Some(LbService {
        namespace: s.metadata.namespace.clone().unwrap_or_default(),
        name: s.metadata.name.clone().unwrap_or_default(),
        uid: s.metadata.uid.clone().unwrap_or_default(),
        resource_version: s.metadata.resource_version.clone().unwrap_or_default(),
        ports,
        ingress,
        class: spec.load_balancer_class.clone().filter(|c| !c.is_empty()),
        cluster_ip: spec.cluster_ip.as_deref().and_then(|ip| ip.parse().ok()),
    })
}

/// Watches the LoadBalancer Services in `scope` until `cancel`. The first value has
/// `synced: false`; every later one is the whole current set.
pub fn watch_load_balancers(
    cluster: &Cluster,
    scope: &Scope,
    cancel: CancellationToken,
) -> watch::Receiver<LbServices> {
    let api: Api<Service> = match scope {
        Scope::Namespace(ns) => Api::namespaced(cluster.client.clone(), ns),
        Scope::All => Api::all(cluster.client.clone()),
    };
    let (tx, rx) = watch::channel(LbServices::default());
    spawn_services_reflector(
        api,
        cancel,
        move |state: Result<&Store<Service>, WatchFailure>| match state {
            Ok(store) => {
                let mut services: Vec<LbService> =
                    store.state().iter().filter_map(|s| lb_service(s)).collect();
                services.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
                let next = LbServices {
                    synced: true,
                    services,
                    api_error: None,
                };
                tx.send_if_modified(|cur| {
                    let changed = *cur != next;
                    *cur = next;
                    changed
                });
            }
            Err(failure) => {
                tx.send_if_modified(|cur| {
                    let changed = cur.api_error.as_ref() != Some(&failure);
                    cur.api_error = Some(failure);
                    changed
                });
            }
        },
    );
    rx
}

/// Runs a reflector over the Services until `cancel` (resuming after API outages with
/// back-off), calling `on_change` with the store after every change once the first list is in,
/// and with the failure, its verb and status code kept, whenever listing or watching fails.
fn spawn_services_reflector<F>(api: Api<Service>, cancel: CancellationToken, mut on_change: F)
where
    F: FnMut(Result<&Store<Service>, WatchFailure>) + Send + 'static,
{
    let (store, writer) = reflector::store();
    let stream = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default()).default_backoff(),
    );
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
                Err(e) => on_change(Err(WatchFailure::of(&e))),
            }
        }
    });
}

/// The ingress a host-side proxy announces: the address, with `ipMode: Proxy` so kube-proxy
/// does not short-circuit it inside the cluster.
pub fn proxy_ingress(ip: IpAddr) -> Vec<Value> {
    vec![json!({"ip": ip.to_string(), "ipMode": "Proxy"})]
}

/// The ingress of a routed ClusterIP (`tunnel --route`): traffic reaches the node with the
/// Service's own address as destination, which is what `ipMode: VIP` says.
pub fn vip_ingress(ip: IpAddr) -> Vec<Value> {
    vec![json!({"ip": ip.to_string(), "ipMode": "VIP"})]
}

/// What happened to an ingress kubeway wanted to remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    /// It was still exactly what kubeway wrote, and is gone now.
    Removed,
    /// Someone changed it since (or the Service was replaced): left as it is.
    ChangedSince,
    /// The Service no longer exists.
    ServiceGone,
}

/// What happened to an ingress kubeway wanted to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// Written; what the API server stored (it may drop fields it does not know, such as
    /// `ipMode` before Kubernetes 1.29).
    Stored(Vec<Value>),
    /// The Service changed since it was looked at (or was replaced or deleted): nothing written.
    Stale,
    /// The API server refused the write (RBAC, validation): nothing written. Why, in words.
    Refused(String),
}

fn status_path(ns: &str, name: &str) -> String {
    format!("/api/v1/namespaces/{ns}/services/{name}/status")
}

async fn json_patch_status(
    cluster: &Cluster,
    ns: &str,
    name: &str,
    ops: Value,
) -> Result<Value, kube::Error> {
    let body = serde_json::to_vec(&ops).map_err(kube::Error::SerdeError)?;
    let req = http::Request::patch(status_path(ns, name))
        .header(http::header::CONTENT_TYPE, "application/json-patch+json")
        .header(http::header::ACCEPT, "application/json")
        .body(body)
        .map_err(kube::Error::HttpError)?;
    cluster.client.request::<Value>(req).await
}

fn is_code(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// Sets `status.loadBalancer.ingress` of `svc` to `ingress`, if the Service is still the version
/// `svc` describes (same UID and resourceVersion).
pub async fn write_ingress(
    cluster: &Cluster,
    svc: &LbService,
    ingress: &[Value],
) -> Result<Written, KubeError> {
    let ops = json!([
        {"op": "test", "path": "/metadata/uid", "value": svc.uid},
        {"op": "test", "path": "/metadata/resourceVersion", "value": svc.resource_version},
        {"op": "add", "path": "/status/loadBalancer", "value": {"ingress": ingress}},
    ]);
    match json_patch_status(cluster, &svc.namespace, &svc.name, ops).await {
        Ok(obj) => Ok(Written::Stored(
            obj["status"]["loadBalancer"]["ingress"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        )),
        Err(e) if is_code(&e, 422) || is_code(&e, 404) || is_code(&e, 409) => Ok(Written::Stale),
        Err(kube::Error::Api(s)) if (400..500).contains(&s.code) => Ok(Written::Refused(format!(
            "writing the LoadBalancer ingress of service {}/{}: {} ({})",
            svc.namespace, svc.name, s.message, s.code
        ))),
        Err(source) => Err(KubeError::Api {
            what: format!(
                "writing the LoadBalancer ingress of service {}/{}",
                svc.namespace, svc.name
            ),
            source,
        }),
    }
}

/// Removes `status.loadBalancer.ingress` of the Service `ns/name` with UID `uid`, only if it is
/// still exactly `ingress`.
pub async fn remove_ingress(
    cluster: &Cluster,
    ns: &str,
    name: &str,
    uid: &str,
    ingress: &[Value],
) -> Result<Removed, KubeError> {
    let ops = json!([
        {"op": "test", "path": "/metadata/uid", "value": uid},
        {"op": "test", "path": "/status/loadBalancer/ingress", "value": ingress},
        {"op": "remove", "path": "/status/loadBalancer/ingress"},
    ]);
    match json_patch_status(cluster, ns, name, ops).await {
        Ok(_) => Ok(Removed::Removed),
        Err(e) if is_code(&e, 404) => Ok(Removed::ServiceGone),
        Err(e) if is_code(&e, 422) || is_code(&e, 409) => Ok(Removed::ChangedSince),
        Err(source) => Err(KubeError::Api {
            what: format!("removing the LoadBalancer ingress of service {ns}/{name}"),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_load_balancers_are_taken_with_their_ingress_as_served() {
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "u1", "resourceVersion": "7"},
            "spec": {"type": "LoadBalancer", "loadBalancerClass": "example.com/lb",
                     "ports": [{"name": "http", "port": 80, "nodePort": 31000}, {"port": 53, "protocol": "UDP"}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "127.77.0.9", "ipMode": "Proxy"}]}}
        }))
        .expect("service");
        let lb = lb_service(&svc).expect("a LoadBalancer");
        assert_eq!(lb.key(), "shop/web");
        assert_eq!(lb.class.as_deref(), Some("example.com/lb"));
        assert_eq!(lb.ports[0].node_port, Some(31000));
        assert_eq!(lb.ports[1].protocol, "UDP");
        assert_eq!(
            lb.ingress,
            proxy_ingress("127.77.0.9".parse().expect("ip")),
            "compares equal to what kubeway writes"
        );
        assert_eq!(lb.ingress_addresses(), ["127.77.0.9"]);
        let plain: Service = serde_json::from_value(
            json!({"metadata": {"name": "c"}, "spec": {"type": "ClusterIP"}}),
        )
        .expect("service");
        assert!(lb_service(&plain).is_none());
    }

    #[test]
    fn refusals_name_the_verb_and_the_status() {
        let status = |code: u16, message: &str| {
            Box::new(kube::core::Status {
                code,
                message: message.into(),
                ..Default::default()
            })
        };
        let f = WatchFailure::of(&watcher::Error::InitialListFailed(kube::Error::Api(
            status(401, "Unauthorized"),
        )));
        assert!(f.is_refusal());
        assert_eq!(
            f.to_string(),
            "list services: the API server refused (401 Unauthorized): Unauthorized"
        );
        let f = WatchFailure::of(&watcher::Error::WatchError(status(
            403,
            "services is forbidden",
        )));
        assert!(f.is_refusal());
        assert!(
            f.to_string()
                .starts_with("watch services: the API server refused (403 Forbidden)")
        );
        let f = WatchFailure::of(&watcher::Error::InitialListFailed(kube::Error::Api(
            status(500, "boom"),
        )));
        assert!(!f.is_refusal(), "a server error is worth retrying");
        assert!(f.to_string().contains("answered 500"));
    }
}
