//! kubeway's lab: a stand-in Kubernetes cluster on loopback that real clients accept unmodified.
//!
//! A [`Lab`] is an HTTPS API server with a generated CA and bearer-token auth, an object store
//! with watches, the controllers of a control plane, a kubelet whose pods are real local servers,
//! a kube-proxy for NodePorts, and `pods/portforward`. It presents itself as one of the
//! environments of [`kubeway_core::persona`]. All addresses are in 127.0.0.0/8:
//!
//! | what | addresses |
//! |---|---|
//! | API server | `127.0.0.1:<port>` (random by default) |
//! | nodes | `127.49.0.2`, `127.49.0.3` … (answer NodePorts only when reachable) |
//! | pods | `127.244.x.y`; each pod's own "localhost" is `127.245.x.y` |
//! | ClusterIPs | `127.96.x.y` (nothing answers there, as from a real host) |

pub mod admit;
pub mod api;
pub mod apps;
pub mod authz;
pub mod controllers;
pub mod images;
pub mod kubelet;
pub mod logs;
pub mod netns;
pub mod openapi;
pub mod patch;
pub mod podproxy;
pub mod portforward;
pub mod protobuf;
pub mod proxy;
pub mod resources;
pub mod sample;
pub mod selectors;
pub mod status;
pub mod store;
pub mod table;
pub mod tls;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use kubeway_core::env::Provider;
use kubeway_core::persona::{PersonaSpec, persona};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use authz::Denial;
pub use kubelet::LabNet;
pub use netns::{Place, Topology};
use resources::core;
use store::Store;

/// Why a lab could not start or change.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// Certificates could not be made.
    #[error("making the lab's certificates")]
    Tls(#[from] tls::TlsError),
    /// The API port could not be bound.
    #[error("binding the API server to {addr}")]
    Bind {
        /// The address tried.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The kubeconfig could not be written (the source names the path).
    #[error("writing the lab's kubeconfig")]
    WriteKubeconfig(#[source] kubeway_host::files::FileError),
    /// Namespace mode could not be set up.
    #[error(transparent)]
    Netns(#[from] netns::NetnsError),
    /// A built-in object was refused (a bug).
    #[error("creating the lab's {what}")]
    Bootstrap {
        /// Which object.
        what: String,
        /// Why.
        #[source]
        source: Box<status::ApiError>,
    },
}

/// One node of the lab.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Whether its address answers NodePorts from the host (no boundary in between).
    pub reachable: bool,
}

/// What to start.
#[derive(Debug, Clone)]
pub struct LabSpec {
    /// The environment to present.
    pub persona: Provider,
    /// Nodes; the persona names them (at least one).
    pub nodes: Vec<NodeSpec>,
    /// API port on 127.0.0.1; 0 picks a free one.
    pub api_port: u16,
    /// Deploy the sample app (`web`, `echo`, `web-lb`).
    pub sample: bool,
    /// Watch history length; older resourceVersions get 410 Gone.
    pub history: usize,
    /// Verbs refused with 403 from the start.
    pub denials: Vec<Denial>,
    /// Namespace mode (Linux, root): the node behind a real network boundary in this topology.
    /// None is loopback mode.
    pub netns: Option<Topology>,
}

/// Whether a persona's node sits behind a boundary the host cannot route through by default
/// (minikube's docker driver in port-forward mode, Docker Desktop, kind on Docker Desktop …).
pub fn default_reachable(p: Provider) -> bool {
    matches!(
        p,
        Provider::K3s | Provider::MicroK8s | Provider::OrbStack | Provider::Generic
    )
}

impl LabSpec {
    /// One node, the persona's default reachability, no sample app.
    pub fn new(persona: Provider) -> Self {
        Self {
            persona,
            nodes: vec![NodeSpec {
                reachable: default_reachable(persona),
            }],
            api_port: 0,
            sample: false,
            history: 10_000,
            denials: Vec::new(),
            netns: None,
        }
    }

    /// In namespace mode with `topology`; the nodes' reachability follows from it.
    pub fn netns(mut self, topology: Topology) -> Self {
        self.netns = Some(topology);
        self.reachable(topology == Topology::Reachable)
    }

    /// With the sample app.
    pub fn with_sample(mut self) -> Self {
        self.sample = true;
        self
    }

    /// With every node reachable or not.
    pub fn reachable(mut self, yes: bool) -> Self {
        for n in &mut self.nodes {
            n.reachable = yes;
        }
        self
    }
}

impl Default for LabSpec {
    fn default() -> Self {
        Self::new(Provider::Generic)
    }
}

struct NodeNet {
    name: String,
    ip: Ipv4Addr,
    /// Loopback mode: whether the node answers from the host (changeable while running).
    reachable: AtomicBool,
}

/// State shared by the API server, controllers, kubelet and proxy.
pub struct Ctx {
    store: Arc<Store>,
    token: String,
    denials: Mutex<Vec<Denial>>,
    kubelet: Arc<kubelet::Kubelet>,
    net: LabNet,
    nodes: Vec<NodeNet>,
    persona: PersonaSpec,
    api_addr: Mutex<SocketAddr>,
    api_cancel: Mutex<CancellationToken>,
    paused: AtomicBool,
    root: CancellationToken,
    /// Where the API server listens (the host's or the node's namespace in namespace mode).
    api_place: Place,
    _node_claims: Vec<std::net::TcpListener>,
}

impl Ctx {
    fn is_denied(&self, verb: &str, resource: &str, ns: Option<&str>) -> bool {
        self.denials
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|d| d.covers(verb, resource, ns))
    }

    /// 403 when a denial covers the request.
    fn authorize(
        &self,
        verb: &str,
        res: &resources::ResourceDef,
        sub: Option<&str>,
        ns: Option<&str>,
    ) -> Result<(), status::ApiError> {
        // The apiserver checks the verb of the HTTP method on subresources too (get for a
        // WebSocket port-forward, create for SPDY's POST).
        let resource = match sub {
            Some(s) => format!("{}/{s}", res.plural),
            None => res.plural.to_string(),
        };
        if self.is_denied(verb, &resource, ns) {
            return Err(status::ApiError::forbidden(verb, &res.qualified(), sub, ns));
        }
        Ok(())
    }

    fn api_paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }

    fn api_addr(&self) -> SocketAddr {
        *self.api_addr.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn api_cancel(&self) -> CancellationToken {
        self.api_cancel
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn root_cancel(&self) -> CancellationToken {
        self.root.clone()
    }

    fn version_info(&self) -> Value {
        let git = self.persona.git_version(&self.persona.kubernetes_version);
        let minor = self
            .persona
            .kubernetes_version
            .split('.')
            .nth(1)
            .unwrap_or("34")
            .to_string();
        json!({
            "major": "1", "minor": minor, "gitVersion": git,
            "gitCommit": "kubeway-lab", "gitTreeState": "clean",
            "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24 (kubeway lab)",
            "compiler": "gc", "platform": "linux/amd64",
        })
    }

    fn node_names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    /// Node addresses the proxy answers on: in loopback mode only reachable nodes listen (that
    /// is the boundary); in namespace mode every node does and the boundary is real.
    fn proxied_node_ips(&self) -> Vec<IpAddr> {
        let ns = self.net.place.is_netns();
        self.nodes
            .iter()
            .filter(|n| ns || n.reachable.load(Ordering::Relaxed))
            .map(|n| IpAddr::V4(n.ip))
            .collect()
    }

    /// Whether NodePorts are also published on the host's 127.0.0.1, as Docker Desktop's vpnkit
    /// (and colima, Rancher Desktop, OrbStack) do: only in the published namespace topology,
    /// where the host namespace's loopback is the lab's own.
    fn nodeports_on_host_localhost(&self) -> bool {
        self.api_place.is_netns()
            && self.api_addr().ip().is_loopback()
            && self.persona.nodeports_on_localhost
    }

    /// The LoadBalancer ingress the persona's built-in load balancer writes, if it has one the
    /// lab can play: servicelb (k3s family) announces the node address; Docker Desktop's vpnkit
    /// announces `localhost` (namespace mode's published topology only, where the host
    /// namespace's loopback is the lab's own).
    fn lb_ingress(&self) -> Option<Value> {
        let k3s_family = matches!(
            self.persona.provider,
            Provider::K3s | Provider::K3d | Provider::RancherDesktop | Provider::Colima
        );
        if k3s_family && self.persona.builtin_load_balancer {
            let ip = self.nodes.first()?.ip;
            return Some(json!({"ip": ip.to_string(), "ipMode": "VIP"}));
        }
        (self.persona.provider == Provider::DockerDesktop && self.nodeports_on_host_localhost())
            .then(|| json!({"hostname": "localhost"}))
    }
}

/// A running lab. Dropping it without [`Lab::shutdown`] still stops everything, less gracefully.
pub struct Lab {
    ctx: Arc<Ctx>,
    pki: tls::LabPki,
    tracker: TaskTracker,
    api_tracker: Mutex<TaskTracker>,
    /// Namespace mode's namespaces; dropped (removed) after everything else.
    boundary: Option<netns::Boundary>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.ctx.root.cancel();
    }
}

fn node_object(spec: &PersonaSpec, index: usize, ip: Ipv4Addr, pod_cidr: &str) -> Value {
    let facts = spec.node(index, &ip.to_string()).unwrap_or_else(|| {
        let mut f = spec
            .node(0, &ip.to_string())
            .expect("personas name at least one node");
        f.name = format!("{}-worker{index}", f.name);
        f
    });
    let now = store::now_rfc3339();
    let mut labels = json!(facts.labels);
    labels["kubernetes.io/hostname"] = json!(facts.name);
    labels["kubernetes.io/os"] = json!("linux");
    labels["kubernetes.io/arch"] = json!("amd64");
    labels["beta.kubernetes.io/os"] = json!("linux");
    labels["beta.kubernetes.io/arch"] = json!("amd64");
    let cond = |t: &str, st: &str, reason: &str, msg: &str| json!({"type": t, "status": st, "reason": reason, "message": msg, "lastHeartbeatTime": now, "lastTransitionTime": now});
    let mut node = json!({
        "metadata": {"name": facts.name, "labels": labels, "annotations": facts.annotations},
        "spec": {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]},
        "status": {
            "addresses": facts.addresses.iter().map(|a| json!({"type": a.kind, "address": a.address})).collect::<Vec<_>>(),
            "capacity": {"cpu": "2", "memory": "8Gi", "pods": "110", "ephemeral-storage": "100Gi"},
            "allocatable": {"cpu": "2", "memory": "8Gi", "pods": "110", "ephemeral-storage": "100Gi"},
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": "kubeway-lab", "systemUUID": "kubeway-lab", "bootID": "kubeway-lab",
                "kernelVersion": facts.info.kernel_version, "osImage": facts.info.os_image,
                "containerRuntimeVersion": facts.info.container_runtime_version,
                "kubeletVersion": facts.info.kubelet_version, "kubeProxyVersion": facts.info.kubelet_version,
                "operatingSystem": facts.info.operating_system, "architecture": facts.info.architecture,
            },
        },
    });
    if let Some(pid) = facts.provider_id {
        node["spec"]["providerID"] = json!(pid);
    }
    node
}

fn bootstrap(ctx: &Ctx) -> Result<(), LabError> {
    let create = |plural: &str, v: Value| {
        ctx.store
            .create(core(plural), v)
            .map(|_| ())
            .map_err(|source| LabError::Bootstrap {
                what: plural.to_string(),
                source: Box::new(source),
            })
    };
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let mut obj = json!({"metadata": {"name": ns}});
        admit::admit_create(ctx, core("namespaces"), &mut obj).map_err(|source| {
            LabError::Bootstrap {
                what: "namespace".into(),
                source: Box::new(source),
            }
        })?;
        create("namespaces", obj)?;
    }
    for (i, n) in ctx.nodes.iter().enumerate() {
        let pod_cidr = if ctx.net.place.is_netns() {
            ctx.net.pods.to_string()
        } else {
            format!("127.244.{i}.0/24")
        };
        create("nodes", node_object(&ctx.persona, i, n.ip, &pod_cidr))?;
    }
    let mut k = json!({"metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"clusterIP": ctx.net.api_service_ip().to_string(), "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": ctx.api_addr().port()}]}});
    admit::admit_create(ctx, core("services"), &mut k).map_err(|source| LabError::Bootstrap {
        what: "kubernetes service".into(),
        source: Box::new(source),
    })?;
    create("services", k)?;
    // The Service IP range, as kube-apiserver ≥1.33 publishes it (networking.k8s.io/v1).
    let now = store::now_rfc3339();
    let cidr = json!({"metadata": {"name": "kubernetes"},
        "spec": {"cidrs": [ctx.net.services.to_string()]},
        "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "",
            "message": "Kubernetes Service CIDR is ready", "lastTransitionTime": now}]}});
    ctx.store
        .create(core("servicecidrs"), cidr)
        .map_err(|source| LabError::Bootstrap {
            what: "servicecidr".into(),
            source: Box::new(source),
        })?;
    Ok(())
}

impl Lab {
    /// Starts a lab and waits until its API server accepts connections.
    pub async fn start(spec: LabSpec) -> Result<Self, LabError> {
        let persona = persona(spec.persona);
        let boundary = match spec.netns {
            Some(t) => Some(netns::Boundary::create(t, spec.nodes.len())?),
            None => None,
        };
        let mut node_claims = Vec::new();
        let node_ips: Vec<Ipv4Addr> = match &boundary {
            Some(b) => b.node_ips.clone(),
            None => {
                // Node addresses 127.49.N.2…: N is the first block no other lab holds.
                let mut block = 0u8;
                for n in 0..=255u8 {
                    let ips: Vec<Ipv4Addr> = (0..spec.nodes.len())
                        .map(|i| Ipv4Addr::new(127, 49, n, 2 + i as u8))
                        .collect();
                    let claims: Vec<_> = ips.iter().filter_map(|ip| kubelet::claim(*ip)).collect();
                    if claims.len() == ips.len() {
                        block = n;
                        node_claims = claims;
                        break;
                    }
                }
                (0..spec.nodes.len())
                    .map(|i| Ipv4Addr::new(127, 49, block, 2 + i as u8))
                    .collect()
            }
        };
        let nodes: Vec<NodeNet> = spec
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let ip = node_ips[i];
                let name = persona
                    .node_names
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| format!("{}-worker{i}", persona.node_names[0]));
                NodeNet {
                    name,
                    ip,
                    reachable: AtomicBool::new(n.reachable),
                }
            })
            .collect();
        let mut sans = vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
            "kubernetes".to_string(),
            "kubernetes.default.svc".to_string(),
        ];
        sans.extend(nodes.iter().map(|n| n.ip.to_string()));
        let pki = tls::LabPki::generate(&sans)?;
        // Where the API server listens, and where the node's sockets live.
        let (api_place, addr, net) = match &boundary {
            #[cfg(target_os = "linux")]
            Some(b) => {
                let node = Place::Netns(b.node.clone());
                let net = LabNet::in_namespace(node.clone());
                match b.topology {
                    Topology::Reachable => {
                        let port = if spec.api_port == 0 {
                            netns::plan::API_PORT
                        } else {
                            spec.api_port
                        };
                        (node, SocketAddr::new(IpAddr::V4(node_ips[0]), port), net)
                    }
                    Topology::Published => (
                        Place::Netns(b.host.clone()),
                        SocketAddr::from(([127, 0, 0, 1], spec.api_port)),
                        net,
                    ),
                }
            }
            _ => (
                Place::Here,
                SocketAddr::from(([127, 0, 0, 1], spec.api_port)),
                LabNet::default(),
            ),
        };
        let listener = api_place
            .listen(addr)
            .map_err(|source| LabError::Bind { addr, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| LabError::Bind { addr, source })?;
        let root = CancellationToken::new();
        let store = Store::new(spec.history.max(1));
        let kubelet = kubelet::Kubelet::new(
            store.clone(),
            net.clone(),
            nodes.iter().map(|n| n.name.clone()).collect(),
            root.child_token(),
        );
        let token: String = (0..32)
            .map(|_| {
                let b: u8 = rand::random_range(0..36);
                if b < 10 {
                    (b'0' + b) as char
                } else {
                    (b'a' + b - 10) as char
                }
            })
            .collect();
        let ctx = Arc::new(Ctx {
            store,
            token,
            denials: Mutex::new(spec.denials.clone()),
            kubelet,
            net,
            nodes,
            persona,
            api_addr: Mutex::new(bound),
            api_cancel: Mutex::new(root.child_token()),
            paused: AtomicBool::new(false),
            root,
            api_place,
            _node_claims: node_claims,
        });
        bootstrap(&ctx)?;
        let lab = Self {
            ctx: ctx.clone(),
            pki,
            tracker: TaskTracker::new(),
            api_tracker: Mutex::new(TaskTracker::new()),
            boundary,
        };
        lab.spawn_api(listener);
        lab.spawn_controllers();
        if spec.sample {
            sample::deploy(&ctx).map_err(|source| LabError::Bootstrap {
                what: "sample app".into(),
                source: Box::new(source),
            })?;
        }
        Ok(lab)
    }

    fn spawn_controllers(&self) {
        let ctx = self.ctx.clone();
        let proxy = proxy::Proxy::default();
        self.tracker.spawn(async move {
            loop {
                controllers::reconcile(&ctx);
                ctx.kubelet.sync();
                proxy.sync(&ctx).await;
                tokio::select! {
                    _ = ctx.store.changed() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = ctx.root.cancelled() => return,
                }
            }
        });
    }

    fn spawn_api(&self, listener: TcpListener) {
        let cancel = self.ctx.root.child_token();
        *self
            .ctx
            .api_cancel
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = cancel.clone();
        let acceptor = TlsAcceptor::from(self.pki.server_config.clone());
        let ctx = self.ctx.clone();
        let tracker = self
            .api_tracker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let conns = tracker.clone();
        tracker.spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    c = listener.accept() => match c { Ok(c) => c, Err(_) => continue },
                    _ = cancel.cancelled() => return,
                };
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let ctx = ctx.clone();
                let cancel = cancel.clone();
                conns.spawn(async move {
                    let tls = tokio::select! {
                        t = acceptor.accept(tcp) => match t { Ok(t) => t, Err(_) => return },
                        _ = cancel.cancelled() => return,
                    };
                    let svc = service_fn(move |req| {
                        let ctx = ctx.clone();
                        async move { Ok::<_, std::convert::Infallible>(api::handle(ctx, req).await) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .with_upgrades();
                    tokio::select! {
                        _ = conn => {}
                        _ = cancel.cancelled() => {}
                    }
                });
            }
        });
    }

    /// In namespace mode, the namespace where the host side runs: run kubeway and kubectl there
    /// (`ip netns exec NAME …`) to be behind the boundary.
    pub fn host_netns(&self) -> Option<&str> {
        self.boundary.as_ref().map(|b| b.host_name())
    }

    /// Where the host side's sockets are made: the lab's host namespace in namespace mode, the
    /// process's own otherwise. Tests dial through it to stand where kubeway stands.
    pub fn host_place(&self) -> Place {
        match &self.boundary {
            #[cfg(target_os = "linux")]
            Some(b) => Place::Netns(b.host.clone()),
            _ => Place::Here,
        }
    }

    /// In namespace mode, the processes running in the host namespace (empty otherwise).
    pub fn host_pids(&self) -> Vec<u32> {
        self.boundary
            .as_ref()
            .map(netns::Boundary::host_pids)
            .unwrap_or_default()
    }

    /// In namespace mode, the node's namespace.
    pub fn node_netns(&self) -> Option<&str> {
        self.boundary.as_ref().map(|b| b.node_name())
    }

    /// In namespace mode, the topology.
    pub fn topology(&self) -> Option<Topology> {
        self.boundary.as_ref().map(|b| b.topology)
    }

    /// The lab's address plan.
    pub fn net(&self) -> &LabNet {
        &self.ctx.net
    }

    /// The API server's URL (`https://127.0.0.1:PORT`, or the node address in namespace mode).
    pub fn api_url(&self) -> String {
        format!("https://{}", self.ctx.api_addr())
    }

    /// The API server's address.
    pub fn api_addr(&self) -> SocketAddr {
        self.ctx.api_addr()
    }

    /// The bearer token.
    pub fn token(&self) -> &str {
        &self.ctx.token
    }

    /// PEM of the lab's CA.
    pub fn ca_pem(&self) -> &str {
        &self.pki.ca_pem
    }

    /// The persona presented.
    pub fn persona(&self) -> &PersonaSpec {
        &self.ctx.persona
    }

    /// Name of the kubeconfig context the lab writes.
    pub fn context_name(&self) -> &str {
        &self.ctx.persona.context
    }

    /// Node names and addresses, with reachability.
    pub fn nodes(&self) -> Vec<(String, Ipv4Addr, bool)> {
        self.ctx
            .nodes
            .iter()
            .map(|n| (n.name.clone(), n.ip, n.reachable.load(Ordering::Relaxed)))
            .collect()
    }

    /// A kubeconfig (YAML) for this lab, with the persona's names.
    pub fn kubeconfig_yaml(&self) -> String {
        use base64::Engine;
        let p = &self.ctx.persona;
        let ca = base64::engine::general_purpose::STANDARD.encode(self.pki.ca_pem.as_bytes());
        let ext = |list: &[kubeway_core::env::KubeconfigExtension], indent: &str| -> String {
            if list.is_empty() {
                return String::new();
            }
            let mut s = format!("{indent}extensions:\n");
            for e in list {
                s.push_str(&format!(
                    "{indent}- name: {}\n{indent}  extension:\n",
                    e.name
                ));
                if let Some(obj) = e.raw.as_object() {
                    for (k, v) in obj {
                        s.push_str(&format!("{indent}    {k}: {v}\n"));
                    }
                }
            }
            s
        };
        let mut cext = ext(&p.cluster_extensions, "    ");
        if let Some(ns) = self.host_netns() {
            // Namespace mode: the kubeconfig names the namespace it is for.
            if cext.is_empty() {
                cext.push_str("    extensions:\n");
            }
            cext.push_str(&format!(
                "    - name: {}\n      extension:\n        netns: {}\n",
                kubeway_core::persona::LAB_NETNS_EXTENSION,
                yaml_str(ns)
            ));
        }
        format!(
            "# kubeway lab ({provider} persona). Written by `kubeway lab`; removed when the lab stops.\n\
             apiVersion: v1\nkind: Config\npreferences: {{}}\n\
             clusters:\n- name: {cluster}\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\n{cext}\
             users:\n- name: {user}\n  user:\n    token: {token}\n\
             contexts:\n- name: {context}\n  context:\n    cluster: {cluster}\n    user: {user}\n    namespace: default\n{xext}\
             current-context: {context}\n",
            provider = p.provider.display_name(),
            cluster = yaml_str(&p.cluster),
            user = yaml_str(&p.user),
            context = yaml_str(&p.context),
            server = self.api_url(),
            token = self.ctx.token,
            cext = cext,
            xext = ext(&p.context_extensions, "    "),
        )
    }

    /// Writes the kubeconfig to a new file at `path`, mode 0600 from creation on (missing parent
    /// directories are made 0700). Refuses when anything is at `path` already, a symbolic link
    /// included. Returns the file's identity, so that only this very file is removed later
    /// ([`kubeway_host::files::remove_if_same`]).
    pub fn write_kubeconfig(&self, path: &Path) -> Result<kubeway_host::files::FileId, LabError> {
        kubeway_host::files::write_new(path, self.kubeconfig_yaml().as_bytes())
            .map_err(LabError::WriteKubeconfig)
    }

    /// Refuses `verb` on `resource` (`pods/portforward`) from now on.
    pub fn deny(&self, d: Denial) {
        self.ctx
            .denials
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(d);
    }

    /// Loopback mode: makes every node reachable from the host or not from now on, as when a
    /// VM's network comes or goes: NodePort listeners open or close within a second, and
    /// connections through them are cut.
    pub fn set_reachable(&self, yes: bool) {
        for n in &self.ctx.nodes {
            n.reachable.store(yes, Ordering::Relaxed);
        }
        self.ctx.store.poke();
    }

    /// Lifts every denial.
    pub fn allow_all(&self) {
        self.ctx
            .denials
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Stops the API server (listener and every connection, watches and port-forwards included),
    /// keeping all state; controllers and pods keep running.
    pub async fn stop_api(&self) {
        self.ctx.api_cancel().cancel();
        let tracker =
            std::mem::take(&mut *self.api_tracker.lock().unwrap_or_else(|e| e.into_inner()));
        tracker.close();
        tracker.wait().await;
    }

    /// Starts the API server again on the same port after [`Lab::stop_api`].
    pub async fn start_api(&self) -> Result<(), LabError> {
        let addr = self.ctx.api_addr();
        let listener = self
            .ctx
            .api_place
            .listen(addr)
            .map_err(|source| LabError::Bind { addr, source })?;
        self.spawn_api(listener);
        Ok(())
    }

    /// Drops the watch history: watches from any earlier resourceVersion get 410 Gone.
    pub fn compact_history(&self) {
        self.ctx.store.compact();
    }

    /// Direct access to the store, for tests that arrange state without going through HTTP.
    pub fn store(&self) -> &Arc<Store> {
        &self.ctx.store
    }

    /// Waits until `n` pods matching `selector` in `ns` are Ready, or the timeout passes.
    pub async fn wait_ready(&self, ns: &str, selector: &str, n: usize, timeout: Duration) -> bool {
        let sel = match selectors::LabelSelector::parse(selector) {
            Ok(s) => s,
            Err(_) => return false,
        };
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rx = self.ctx.store.subscribe();
        loop {
            let (pods, _) = self.ctx.store.list(core("pods"), Some(ns));
            let ready = pods
                .iter()
                .filter(|p| sel.matches(&p["metadata"]["labels"]))
                .filter(|p| {
                    p["status"]["conditions"].as_array().is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    })
                })
                .count();
            if ready >= n {
                return true;
            }
            tokio::select! {
                _ = rx.recv() => {}
                _ = tokio::time::sleep_until(deadline) => return false,
            }
        }
    }

    /// Stops everything and waits until every listener is closed.
    pub async fn shutdown(self) {
        self.ctx.root.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        let api = std::mem::take(&mut *self.api_tracker.lock().unwrap_or_else(|e| e.into_inner()));
        api.close();
        api.wait().await;
        if let Some(b) = &self.boundary {
            // A socket still closing keeps its namespace alive unnamed, but the veth goes first,
            // so nothing routes through it meanwhile.
            b.teardown();
        }
    }
}

fn yaml_str(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
        && !s.is_empty()
    {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_default()
    }
}
