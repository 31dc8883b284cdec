//! The path model: the hops from the host to a target's pods, grouped by layer, the ways that use
//! them, and the verdict on which hop is broken and why.
//!
//! [`explain`](crate::explain::explain) builds a [`PathReport`]; the renderers in
//! [`render`](crate::render) draw it; `-o json` serializes it as is.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::env::{HostKind, LbSupport, Provider, Tri};
use crate::explain::Intent;
use crate::target::Target;

/// The layer a hop belongs to, or the layer a finding blames.
///
/// In path order from the host to the process: `host`, `driver`, `node`, `kubernetes`, `app`;
/// `api` is the side path through the API server that port-forward uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    /// Your machine: kubeconfig, the browser or curl.
    Host,
    /// The API server and RBAC: the way port-forward takes.
    Api,
    /// The virtualization boundary: the VM, node container, WSL2 or Lima guest around the node.
    Driver,
    /// The node: its address, NodePorts, LoadBalancer ingress.
    Node,
    /// Kubernetes objects: Service, EndpointSlice, pods and their ports.
    Kubernetes,
    /// The application process inside the pod.
    App,
}

impl Layer {
    /// The stable snake_case name (as in JSON).
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::Host => "host",
            Layer::Api => "api",
            Layer::Driver => "driver",
            Layer::Node => "node",
            Layer::Kubernetes => "kubernetes",
            Layer::App => "app",
        }
    }
}

impl Layer {
    /// The layer's name in a sentence (`Kubernetes`, `API`).
    pub fn human(self) -> &'static str {
        match self {
            Layer::Host => "host",
            Layer::Api => "API",
            Layer::Driver => "driver",
            Layer::Node => "node",
            Layer::Kubernetes => "Kubernetes",
            Layer::App => "app",
        }
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state of a hop or a way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Checked and working.
    Ok,
    /// Working, or not needed, but worth knowing about.
    Warning,
    /// Checked and not working.
    Broken,
    /// Not on this path (e.g. a NodePort hop for a ClusterIP Service).
    Skipped,
    /// Could not be checked.
    Unknown,
}

impl Status {
    /// The stable snake_case name (as in JSON).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warning => "warning",
            Status::Broken => "broken",
            Status::Skipped => "skipped",
            Status::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a hop is. Each kind appears at most once in a report; its [`HopKind::id`] is the hop's id.
///
/// The declaration order is the report order: the path from the host to the process, then the
/// API server side path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HopKind {
    /// The machine kubeway runs on.
    Host,
    /// The kubeconfig context.
    Context,
    /// The VM/container/WSL boundary around the node: does the host route to node addresses?
    DriverBoundary,
    /// `nodeAddress:nodePort` answers from the host.
    NodePort,
    /// `localhost:nodePort` answers from the host (published by the environment's forwarder).
    LocalhostNodePort,
    /// The Service has a LoadBalancer ingress address and it answers from the host.
    LbIngress,
    /// The Service exists, its type and the port asked for.
    Service,
    /// The Service's (or workload's) selector matches pods.
    Selector,
    /// The EndpointSlices list ready endpoints for the port.
    Endpoints,
    /// The pods are ready.
    Pods,
    /// The target port exists on the pods (named ports resolved per pod).
    TargetPort,
    /// The process in the pod accepts on `localhost:port` (dialled by port-forward).
    Process,
    /// The API server answers (the side path port-forward takes).
    ApiServer,
    /// The user may `get`/`create` `pods/portforward`.
    Rbac,
}

impl HopKind {
    /// The stable id (snake_case, as in JSON).
    pub fn id(self) -> &'static str {
        match self {
            HopKind::Host => "host",
            HopKind::Context => "context",
            HopKind::ApiServer => "api_server",
            HopKind::Rbac => "rbac",
            HopKind::DriverBoundary => "driver_boundary",
            HopKind::NodePort => "node_port",
            HopKind::LocalhostNodePort => "localhost_node_port",
            HopKind::LbIngress => "lb_ingress",
            HopKind::Service => "service",
            HopKind::Selector => "selector",
            HopKind::Endpoints => "endpoints",
            HopKind::Pods => "pods",
            HopKind::TargetPort => "target_port",
            HopKind::Process => "process",
        }
    }

    /// The hop in a sentence (`the driver boundary`, `the target port`).
    pub fn human(self) -> &'static str {
        match self {
            HopKind::Host => "your machine",
            HopKind::Context => "the kubeconfig context",
            HopKind::ApiServer => "the API server",
            HopKind::Rbac => "RBAC",
            HopKind::DriverBoundary => "the driver boundary",
            HopKind::NodePort => "the NodePort",
            HopKind::LocalhostNodePort => "the NodePort on localhost",
            HopKind::LbIngress => "the LoadBalancer address",
            HopKind::Service => "the Service",
            HopKind::Selector => "the selector",
            HopKind::Endpoints => "the EndpointSlices",
            HopKind::Pods => "the pods",
            HopKind::TargetPort => "the target port",
            HopKind::Process => "the process",
        }
    }

    /// The kind whose [`HopKind::id`] is `id`.
    pub fn from_id(id: &str) -> Option<HopKind> {
        ALL_HOPS.into_iter().find(|k| k.id() == id)
    }

    /// The layer the hop is drawn in.
    pub fn layer(self) -> Layer {
        match self {
            HopKind::Host | HopKind::Context => Layer::Host,
            HopKind::ApiServer | HopKind::Rbac => Layer::Api,
            HopKind::DriverBoundary => Layer::Driver,
            HopKind::NodePort | HopKind::LocalhostNodePort | HopKind::LbIngress => Layer::Node,
            HopKind::Service
            | HopKind::Selector
            | HopKind::Endpoints
            | HopKind::Pods
            | HopKind::TargetPort => Layer::Kubernetes,
            HopKind::Process => Layer::App,
        }
    }
}

/// Every hop kind, in report order.
pub const ALL_HOPS: [HopKind; 14] = [
    HopKind::Host,
    HopKind::Context,
    HopKind::DriverBoundary,
    HopKind::NodePort,
    HopKind::LocalhostNodePort,
    HopKind::LbIngress,
    HopKind::Service,
    HopKind::Selector,
    HopKind::Endpoints,
    HopKind::Pods,
    HopKind::TargetPort,
    HopKind::Process,
    HopKind::ApiServer,
    HopKind::Rbac,
];

impl fmt::Display for HopKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// One hop on the path, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hop {
    /// Stable id, [`HopKind::id`].
    pub id: String,
    /// What the hop is.
    pub kind: HopKind,
    /// The layer it is drawn in.
    pub layer: Layer,
    /// A short label (`Service web`, `NodePort 30080`).
    pub label: String,
    /// What was checked.
    pub checked: String,
    /// What was observed.
    pub observed: String,
    /// The result.
    pub status: Status,
}

/// A kind of route from the host to the pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WayKind {
    /// Dial a node address on the NodePort.
    NodePort,
    /// Dial `localhost` on the NodePort (an environment forwarder publishes it).
    LocalhostNodePort,
    /// Dial the LoadBalancer ingress address on the Service port.
    LoadBalancer,
    /// Port-forward through the API server and the kubelet to a pod.
    PortForward,
}

impl WayKind {
    /// A short human name (`port-forward`, `NodePort`).
    pub fn human(self) -> &'static str {
        match self {
            WayKind::NodePort => "NodePort",
            WayKind::LocalhostNodePort => "NodePort on localhost",
            WayKind::LoadBalancer => "LoadBalancer",
            WayKind::PortForward => "port-forward",
        }
    }

    /// Whether the way goes around the API server (straight from the host to the cluster network).
    pub fn is_direct(self) -> bool {
        !matches!(self, WayKind::PortForward)
    }
}

/// One route from the host to the pods, with the hops it uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Way {
    /// Which kind of route.
    pub kind: WayKind,
    /// A label (`NodePort 192.168.49.2:30080`, `port-forward via the API server`).
    pub label: String,
    /// The address to dial from the host, for direct ways.
    pub address: Option<String>,
    /// The ids of the hops it uses, from the host to the pod.
    pub hops: Vec<String>,
    /// Whether it works: `ok` when proven end to end; `warning` when only the environment
    /// blocks it and another way works; otherwise the worst of its hops (`broken` before
    /// `unknown`).
    pub status: Status,
    /// The command that uses it (`curl http://…`, `kubeway forward …`).
    pub command: Option<String>,
}

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Background the user should know (e.g. a ClusterIP Service is only reachable in-cluster).
    Info,
    /// A way is blocked, or something is off, but what the user asked for works.
    Warning,
    /// What the user asked for does not work because of this.
    Broken,
}

/// What a finding is about. The declaration order is the precedence order of the rules: when
/// several findings are broken, the earliest names the verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// The kubeconfig has no context of that name.
    ContextMissing,
    /// The API server does not answer.
    ApiUnreachable,
    /// The API server rejected the credentials (401).
    ApiUnauthorized,
    /// RBAC denies reading the target (403).
    ApiForbidden,
    /// The namespace does not exist.
    NamespaceNotFound,
    /// No Service of that name in the namespace.
    ServiceNotFound,
    /// No pod of that name in the namespace.
    PodNotFound,
    /// No workload of that name in the namespace.
    WorkloadNotFound,
    /// The Service is an ExternalName alias, with no pods behind it.
    ExternalNameService,
    /// The Service has no port matching the one asked for (or no ports at all).
    ServicePortMissing,
    /// A ClusterIP Service was asked for as if it had a NodePort.
    ClusterIpNotNodePort,
    /// A LoadBalancer was asked for on a Service of another type.
    NotLoadBalancer,
    /// A LoadBalancer Service has no ingress address.
    LoadBalancerPending,
    /// The workload whose template the selector matches is scaled to 0.
    WorkloadScaledToZero,
    /// The workload whose template the selector matches cannot create or roll out its pods.
    WorkloadRolloutFailing,
    /// The selector matches pods in other namespaces only.
    PodsInOtherNamespace,
    /// The selector almost matches pods: a label value a few edits away, or a label missing.
    SelectorNearMiss,
    /// The Service's selector matches no pods.
    SelectorMatchesNothing,
    /// The workload has no pods.
    WorkloadHasNoPods,
    /// The image cannot be pulled.
    ImagePullFailing,
    /// The container keeps exiting and is restarted with back-off.
    CrashLooping,
    /// The readiness probe keeps failing.
    ReadinessFailing,
    /// No pod is ready.
    PodsNotReady,
    /// The named targetPort is declared by no pod.
    TargetPortNameMissing,
    /// Nothing serves the numeric targetPort (port-forward refused, pods declare other ports).
    TargetPortNotServed,
    /// Pods are ready but the EndpointSlices list no ready endpoint for the port.
    NoReadyEndpoints,
    /// The app refuses on localhost although it is ready: it listens on its pod address only.
    ListensOnPodAddressOnly,
    /// The app accepts on localhost but refuses on its pod IP: Services, NodePorts and probes
    /// cannot reach it, only port-forward can.
    ListensOnLocalhostOnly,
    /// Nothing accepts on `localhost:port` in the pod, and no port is declared to tell why.
    NothingListens,
    /// RBAC denies `pods/portforward`.
    PortForwardForbidden,
    /// Port-forward failed for another reason.
    PortForwardFailed,
    /// The host cannot reach node addresses: the environment's boundary is in between.
    BoundaryBlocksNodePort,
    /// The node address is reachable but the NodePort does not answer.
    NodePortUnanswered,
    /// `localhost:nodePort` does not answer although the environment publishes NodePorts there.
    LocalhostNodePortUnanswered,
    /// The LoadBalancer ingress address does not answer from the host.
    LoadBalancerUnreachable,
    /// Some pods are not ready (others are).
    SomePodsNotReady,
    /// Some pods do not declare the named targetPort (others do).
    TargetPortNameMissingOnSome,
    /// RBAC allows one port-forward verb but not the other.
    PortForwardVerbMissing,
    /// Some pods refuse on localhost (others accept).
    SomePodsRefuse,
    /// An API request kubeway needed was refused, so a hop could not be checked.
    ApiRequestFailed,
    /// A ClusterIP Service is reachable from the host only through a forward.
    ClusterIpInClusterOnly,
    /// The Service port is not TCP; port-forward carries TCP only.
    NotTcp,
}

/// One thing to do about a finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fix {
    /// What to do, in words.
    pub action: String,
    /// The command that does it or bypasses the problem, when there is one.
    pub command: Option<String>,
}

impl Fix {
    /// A fix with a command.
    pub fn run(action: impl Into<String>, command: impl Into<String>) -> Fix {
        Fix {
            action: action.into(),
            command: Some(command.into()),
        }
    }

    /// A fix in words only.
    pub fn say(action: impl Into<String>) -> Fix {
        Fix {
            action: action.into(),
            command: None,
        }
    }
}

/// One conclusion of the rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Which rule.
    pub kind: FindingKind,
    /// The id of the hop where the path breaks.
    pub hop: String,
    /// The layer at fault. It can differ from the hop's drawing layer: a ClusterIP Service breaks
    /// the path at the `node_port` hop, and the fault is the Service's type (`kubernetes`).
    pub layer: Layer,
    /// How serious it is.
    pub severity: Severity,
    /// The likely cause, in one plain sentence.
    pub cause: String,
    /// What to do, the first being the best.
    pub fixes: Vec<Fix>,
    /// The ways it blocks (empty: every way).
    pub ways: Vec<WayKind>,
}

/// The overall answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// A way that matters works; anything else is a warning.
    Healthy,
    /// A way works, but a Kubernetes, app or API problem breaks another.
    Degraded,
    /// No way that matters works.
    Broken,
    /// Not enough could be checked to tell.
    Unknown,
}

impl FindingKind {
    /// Whether the finding means the question could not be asked or names nothing: the
    /// context, the API server, credentials, RBAC on reading the target, or a target or
    /// namespace that does not exist. `kubeway explain` exits 1 for these, 3 for a broken path.
    pub fn is_error(self) -> bool {
        matches!(
            self,
            FindingKind::ContextMissing
                | FindingKind::ApiUnreachable
                | FindingKind::ApiUnauthorized
                | FindingKind::ApiForbidden
                | FindingKind::NamespaceNotFound
                | FindingKind::ServiceNotFound
                | FindingKind::PodNotFound
                | FindingKind::WorkloadNotFound
        )
    }
}

impl Health {
    /// The stable snake_case name (as in JSON).
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Degraded => "degraded",
            Health::Broken => "broken",
            Health::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The verdict: health, the finding that decides it, and the others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnosis {
    /// The overall answer.
    pub health: Health,
    /// One plain sentence.
    pub summary: String,
    /// The finding that names the verdict: the first broken one in precedence order, else the
    /// first warning; `None` when all is well.
    pub primary: Option<Finding>,
    /// Every finding, in precedence order (the primary among them).
    pub findings: Vec<Finding>,
    /// The ways proven to work.
    pub works_via: Vec<WayKind>,
}

/// The environment as the path sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvironmentSummary {
    /// The provider, when detection ran (or the context name suggests one).
    pub provider: Option<Provider>,
    /// How to call it (`minikube (docker driver) on macOS`).
    pub display: String,
    /// The boundary between the host and the node, when there is one (`Docker Desktop VM`).
    pub boundary: Option<String>,
    /// Where kubeway runs, when known.
    pub host: Option<HostKind>,
    /// Whether node addresses are routable from the host (detection's verdict).
    pub node_reachable: Tri,
    /// Whether NodePorts are published on localhost (detection's verdict).
    pub nodeports_on_localhost: Tri,
    /// The LoadBalancer implementation.
    pub load_balancer: Option<LbSupport>,
    /// Detection's one-line strategy.
    pub strategy: Option<String>,
}

/// One pod as drawn in the path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodView {
    /// The pod's name.
    pub name: String,
    /// Its address.
    pub ip: Option<String>,
    /// Whether it is ready.
    pub ready: bool,
    /// The target port resolved on this pod.
    pub port: Option<u16>,
    /// Its status on the path (`broken` when not ready or the port does not resolve).
    pub status: Status,
    /// Phase, waiting reason, restarts.
    pub detail: String,
    /// What port-forward saw of its process on `localhost` (`unknown` when not probed).
    pub process: Status,
    /// What the API server's proxy saw of its process on the pod IP (`unknown` when not
    /// probed).
    #[serde(default = "unknown_status")]
    pub pod_ip: Status,
    /// Both probes in words (`localhost:8080 accepts; 10.244.0.5:8080 refuses`).
    #[serde(default)]
    pub process_detail: String,
}

fn unknown_status() -> Status {
    Status::Unknown
}

/// Everything `kubeway explain` says about a target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathReport {
    /// The target.
    pub target: Target,
    /// The namespace.
    pub namespace: String,
    /// The kubeconfig context.
    pub context: String,
    /// Which way the question was about (`--via`).
    #[serde(default)]
    pub intent: Intent,
    /// The environment.
    pub environment: EnvironmentSummary,
    /// The hops, in path order from the host to the process, then the API side path.
    pub hops: Vec<Hop>,
    /// The routes from the host to the pods.
    pub ways: Vec<Way>,
    /// The pods behind the target.
    pub pods: Vec<PodView>,
    /// The verdict.
    pub verdict: Diagnosis,
}

impl PathReport {
    /// The hop of a kind, if the path has one.
    pub fn hop(&self, kind: HopKind) -> Option<&Hop> {
        self.hops.iter().find(|h| h.kind == kind)
    }

    /// The way of a kind, if the path has one.
    pub fn way(&self, kind: WayKind) -> Option<&Way> {
        self.ways.iter().find(|w| w.kind == kind)
    }

    /// The exit code `kubeway explain` gives this report: 0 healthy or degraded, 1 when the
    /// question could not be answered (no context, API server, credentials or permission; a
    /// target or namespace that does not exist; nothing could be checked), 3 when the path is
    /// broken.
    pub fn exit_code(&self) -> u8 {
        match self.verdict.health {
            Health::Healthy | Health::Degraded => 0,
            Health::Unknown => 1,
            Health::Broken => match &self.verdict.primary {
                Some(p) if p.kind.is_error() => 1,
                _ => 3,
            },
        }
    }

    /// The target as kubectl would write it (`svc/web:80`).
    pub fn target_short(&self) -> String {
        let mut text = format!("{}/{}", self.target.kind.short(), self.target.name);
        if let Some(port) = &self.target.port {
            text.push(':');
            text.push_str(&port.to_string());
        }
        text
    }
}
