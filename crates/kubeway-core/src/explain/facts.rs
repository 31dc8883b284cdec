//! The facts `kubeway explain` judges: what the live collector saw of the context, the API server,
//! the target's Service, pods and EndpointSlices, and what the probes from the host answered.
//!
//! Every field has a serde default, so a test or a fixture writes only what it needs, and the
//! collector fills each struct straight from the Kubernetes object it read.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::env::{Detection, Tri};
use crate::target::{PortRef, Target};

fn tri_unknown() -> Tri {
    Tri::Unknown
}

fn yes() -> bool {
    true
}

fn tcp() -> String {
    "TCP".to_string()
}

/// Which way to the target the user asks about.
///
/// `Any` (the default) asks "can I reach it at all": an environment boundary that blocks a direct
/// way is then only a warning when another way works. The other values ask about one kind of way,
/// and a failure of that way is the verdict even when another way works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    /// Any way from the host to the pods.
    #[default]
    Any,
    /// A direct way without the API server: NodePort (on a node address or localhost) or a
    /// LoadBalancer address.
    Direct,
    /// A NodePort, on a node address or on localhost.
    NodePort,
    /// A LoadBalancer ingress address.
    LoadBalancer,
    /// A port-forward through the API server.
    PortForward,
}

/// The kubeconfig context the facts were collected through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContextFacts {
    /// The context name asked for (`--context`) or the current context.
    pub name: String,
    /// Whether the kubeconfig has a context of that name.
    pub exists: bool,
    /// Every context name in the kubeconfig (for "did you mean").
    pub known_contexts: Vec<String>,
}

impl Default for ContextFacts {
    fn default() -> Self {
        ContextFacts {
            name: String::new(),
            exists: true,
            known_contexts: Vec::new(),
        }
    }
}

/// Whether the API server answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ApiFacts {
    /// The `server:` URL of the context's cluster.
    pub server: String,
    /// Whether it answered (e.g. `/version`).
    pub reachable: Tri,
    /// The error when it did not (`connection refused`, a TLS error, a timeout).
    pub error: Option<String>,
    /// `gitVersion` from `/version`, when it answered.
    pub version: Option<String>,
    /// How the API server refused or failed, when it did (401, 403, a dial error, a timeout).
    pub failure: Option<ApiFailure>,
    /// The kubeconfig user the context authenticates as (for "which user" in a 401).
    pub user: Option<String>,
    /// How that user authenticates: `token`, `client certificate`, `exec plugin NAME`,
    /// `auth provider NAME`, `basic auth`, or `none`.
    pub credentials: Option<String>,
}

impl Default for ApiFacts {
    fn default() -> Self {
        ApiFacts {
            server: String::new(),
            reachable: Tri::Unknown,
            error: None,
            version: None,
            failure: None,
            user: None,
            credentials: None,
        }
    }
}

/// What went wrong when asking the API server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiFailureKind {
    /// 401: the credentials were rejected.
    Unauthorized,
    /// 403: RBAC (or another authorizer) denied the request.
    Forbidden,
    /// The server could not be dialled (refused, no route, DNS, TLS).
    Unreachable,
    /// The server did not answer in time.
    TimedOut,
    /// Any other error status.
    Other,
}

/// One failed request to the API server, with what was asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiFailure {
    /// The kind of failure.
    pub kind: ApiFailureKind,
    /// The HTTP status, when there was an answer.
    #[serde(default)]
    pub status: Option<u16>,
    /// The verb asked (`get`, `list`, `create`).
    #[serde(default)]
    pub verb: Option<String>,
    /// The resource asked about (`services`, `pods/portforward`).
    #[serde(default)]
    pub resource: Option<String>,
    /// The namespace asked in, for namespaced resources.
    #[serde(default)]
    pub namespace: Option<String>,
    /// The server's (or the dialler's) message, verbatim.
    #[serde(default)]
    pub message: String,
}

/// A Service's `spec.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceType {
    /// `ClusterIP`: reachable only inside the cluster.
    ClusterIp,
    /// `NodePort`: a ClusterIP plus a port on every node.
    NodePort,
    /// `LoadBalancer`: a NodePort plus an external address from a LoadBalancer implementation.
    LoadBalancer,
    /// `ExternalName`: a DNS alias, with no pods behind it.
    ExternalName,
}

impl ServiceType {
    /// The spelling Kubernetes uses (`ClusterIP`, `NodePort`, …).
    pub fn as_k8s(self) -> &'static str {
        match self {
            ServiceType::ClusterIp => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
            ServiceType::ExternalName => "ExternalName",
        }
    }

    /// Whether the Service has node ports (NodePort and LoadBalancer, unless allocation is off).
    pub fn has_node_ports(self) -> bool {
        matches!(self, ServiceType::NodePort | ServiceType::LoadBalancer)
    }
}

impl fmt::Display for ServiceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_k8s())
    }
}

/// A `spec.type` that is not one of the four Kubernetes knows.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown Service type {0:?}: expected ClusterIP, NodePort, LoadBalancer or ExternalName")]
pub struct UnknownServiceType(pub String);

impl FromStr for ServiceType {
    type Err = UnknownServiceType;

    /// Parses the Kubernetes spelling; an empty string is `ClusterIP`, the API default.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "" | "ClusterIP" => Ok(ServiceType::ClusterIp),
            "NodePort" => Ok(ServiceType::NodePort),
            "LoadBalancer" => Ok(ServiceType::LoadBalancer),
            "ExternalName" => Ok(ServiceType::ExternalName),
            other => Err(UnknownServiceType(other.to_string())),
        }
    }
}

/// One entry of a Service's `spec.ports`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicePortFacts {
    /// `name` (required by Kubernetes when there are several ports).
    #[serde(default)]
    pub name: Option<String>,
    /// `port`: the Service's own port.
    pub port: u16,
    /// `protocol` (`TCP`, `UDP`, `SCTP`).
    #[serde(default = "tcp")]
    pub protocol: String,
    /// `targetPort`, a number or a container port name; when the object leaves it unset, the
    /// collector writes `port` here, as the API server does.
    pub target_port: PortRef,
    /// `nodePort`, for NodePort and LoadBalancer Services.
    #[serde(default)]
    pub node_port: Option<u16>,
}

/// The Service the target names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceFacts {
    /// `metadata.name`.
    pub name: String,
    /// `spec.type`.
    #[serde(rename = "type")]
    pub type_: ServiceType,
    /// `spec.clusterIP` (`None` for headless).
    #[serde(default)]
    pub cluster_ip: Option<String>,
    /// `spec.selector`; empty for a Service whose endpoints are managed by hand.
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
    /// `spec.ports`.
    #[serde(default)]
    pub ports: Vec<ServicePortFacts>,
    /// `status.loadBalancer.ingress[]`, each its `ip` or else its `hostname`.
    #[serde(default)]
    pub lb_ingress: Vec<String>,
    /// `spec.externalName`, for ExternalName Services.
    #[serde(default)]
    pub external_name: Option<String>,
}

/// A workload target (Deployment, StatefulSet, ReplicaSet).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkloadFacts {
    /// `spec.replicas` (`None` when unset, which means 1).
    pub replicas: Option<u32>,
    /// `spec.selector.matchLabels`.
    pub selector: BTreeMap<String, String>,
    /// `status.readyReplicas`.
    pub ready_replicas: Option<u32>,
    /// `status.conditions` that are not as they should be (`ReplicaFailure=True`,
    /// `Progressing=False`, `Available=False`).
    pub problems: Vec<ConditionFacts>,
}

/// A status condition, as the object reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ConditionFacts {
    /// `type`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `status` (`True`, `False`, `Unknown`).
    pub status: String,
    /// `reason`.
    pub reason: Option<String>,
    /// `message`.
    pub message: Option<String>,
}

/// A workload in the namespace (Deployment, StatefulSet, ReplicaSet without an owner), with the
/// labels its pod template gives: to look one level up when a selector matches no pods.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkloadSummary {
    /// `deployment`, `statefulset` or `replicaset`.
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// `spec.replicas` (`None`: unset, which means 1).
    pub replicas: Option<u32>,
    /// `status.readyReplicas`.
    pub ready_replicas: Option<u32>,
    /// `spec.template.metadata.labels`.
    pub template_labels: BTreeMap<String, String>,
    /// Conditions that are not as they should be.
    pub problems: Vec<ConditionFacts>,
}

/// A pod in another namespace whose labels match the selector.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NamespacedName {
    /// The namespace.
    pub namespace: String,
    /// The name.
    pub name: String,
}

/// How a container reports its readiness probe.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ReadinessProbeFacts {
    /// `httpGet`, `tcpSocket`, `exec` or `grpc`.
    pub kind: String,
    /// What it checks, in words (`GET :8080/healthz`, `TCP :9000`, `exec cat /tmp/ready`).
    pub target: String,
    /// The port it dials, when it dials one (resolved from a port name).
    pub port: Option<u16>,
}

/// One container of a pod, as its status and spec report it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerFacts {
    /// The container's name.
    pub name: String,
    /// `image` from the spec.
    pub image: String,
    /// `ready` from its status.
    pub ready: bool,
    /// `restartCount`.
    pub restarts: u32,
    /// `state.waiting.reason`.
    pub waiting_reason: Option<String>,
    /// `state.waiting.message`.
    pub waiting_message: Option<String>,
    /// `lastState.terminated.exitCode` (or `state.terminated` for a container that stays down).
    pub exit_code: Option<i32>,
    /// `lastState.terminated.reason` (`Error`, `OOMKilled`, `Completed`).
    pub exit_reason: Option<String>,
    /// `lastState.terminated.message`.
    pub exit_message: Option<String>,
    /// The readiness probe from the spec.
    pub readiness_probe: Option<ReadinessProbeFacts>,
    /// The last lines of the previous run's log, when the API server serves logs.
    pub last_log: Vec<String>,
}

/// An Event about a pod (Warnings only: Failed, BackOff, Unhealthy, FailedScheduling).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct EventFacts {
    /// `reason`.
    pub reason: String,
    /// `message`.
    pub message: String,
    /// `count` (1 when the event series has no count).
    pub count: u32,
}

/// One entry of a container's `ports`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerPortFacts {
    /// The container's name.
    #[serde(default)]
    pub container: String,
    /// The port's `name`, if any.
    #[serde(default)]
    pub name: Option<String>,
    /// `containerPort`.
    pub port: u16,
    /// `protocol`.
    #[serde(default = "tcp")]
    pub protocol: String,
}

/// One pod behind the target: selected by the Service, owned by the workload, or the pod itself.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PodFacts {
    /// `metadata.name`.
    pub name: String,
    /// `status.phase` (`Pending`, `Running`, `Succeeded`, `Failed`, `Unknown`).
    pub phase: String,
    /// The `Ready` condition is `True`.
    pub ready: bool,
    /// `status.podIP`.
    pub pod_ip: Option<String>,
    /// `spec.nodeName`.
    pub node: Option<String>,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// Every container's declared ports.
    pub container_ports: Vec<ContainerPortFacts>,
    /// The sum of the containers' `restartCount`.
    pub restarts: u32,
    /// The first container `state.waiting.reason` (`CrashLoopBackOff`, `ImagePullBackOff`, …).
    pub waiting_reason: Option<String>,
    /// Why the pod is not ready, when known: the `Ready` condition's message, or the last
    /// readiness-probe failure event.
    pub not_ready_message: Option<String>,
    /// The controlling owner, as `kind/name` (`replicaset/web-5d8f9`, `deployment/web`).
    pub owner: Option<String>,
    /// `metadata.deletionTimestamp` is set.
    pub terminating: bool,
    /// Each container's image, state, last termination, readiness probe and log tail.
    pub containers: Vec<ContainerFacts>,
    /// The pod's Warning events, newest last.
    pub events: Vec<EventFacts>,
}

/// A pod in the namespace with its labels, to say what a selector almost matched.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PodLabels {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// The workload that owns it through its controllers, as `kind/name` (`deployment/web`);
    /// `None` for a pod no controller owns.
    pub workload: Option<String>,
}

/// One port of an EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointPortFacts {
    /// The port's name: the Service port's name (`None` for an unnamed single port).
    #[serde(default)]
    pub name: Option<String>,
    /// The resolved port number on the pod.
    pub port: u16,
}

/// One endpoint of the Service's EndpointSlices, with its slice's ports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointFacts {
    /// `targetRef.name` when it refers to a pod.
    #[serde(default)]
    pub pod: Option<String>,
    /// The first of `addresses`.
    pub ip: String,
    /// `conditions.ready` (an absent condition counts as ready, as Kubernetes says).
    #[serde(default = "yes")]
    pub ready: bool,
    /// The slice's `ports`.
    #[serde(default)]
    pub ports: Vec<EndpointPortFacts>,
}

/// A TCP connect from the host to a node, LoadBalancer or localhost address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeFacts {
    /// The node's name, for node probes.
    #[serde(default)]
    pub node: Option<String>,
    /// The address dialled (an IP or a host name such as `localhost`).
    pub address: String,
    /// The port dialled.
    pub port: u16,
    /// Whether it accepted the connection (`Unknown`: not dialled).
    #[serde(default = "tri_unknown")]
    pub answered: Tri,
    /// What happened (`connection refused`, `timed out after 1s`, …).
    #[serde(default)]
    pub detail: Option<String>,
}

/// A port-forward through the API server to one pod and port: the kubelet (container runtime)
/// dials `localhost:port` inside the pod's network namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortForwardProbe {
    /// The pod.
    pub pod: String,
    /// The pod port dialled.
    pub port: u16,
    /// A connection was accepted.
    pub ok: bool,
    /// The error otherwise, verbatim (the kubelet's text, or the API server's status).
    #[serde(default)]
    pub error: Option<String>,
}

/// A dial of a pod's IP and port from inside the cluster, through the API server's proxy
/// (`pods/NAME:PORT/proxy`): the address Services and the kubelet's probes use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodIpProbe {
    /// The pod.
    pub pod: String,
    /// The port dialled.
    pub port: u16,
    /// Whether the app accepted (`Unknown`: the proxy could not be used, e.g. RBAC).
    #[serde(default = "tri_unknown")]
    pub answered: Tri,
    /// What the API server said.
    #[serde(default)]
    pub detail: Option<String>,
}

/// What a SelfSubjectAccessReview said about `pods/portforward` in the namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RbacFacts {
    /// `get pods/portforward` (checked for the WebSocket transports).
    pub get_portforward: Tri,
    /// `create pods/portforward` (checked for legacy SPDY, and for WebSockets from 1.35 on).
    pub create_portforward: Tri,
    /// The review's `status.reason`, if any.
    pub reason: Option<String>,
}

impl Default for RbacFacts {
    fn default() -> Self {
        RbacFacts {
            get_portforward: Tri::Unknown,
            create_portforward: Tri::Unknown,
            reason: None,
        }
    }
}

/// Everything `kubeway explain TARGET` judges.
///
/// The collector fills what it could read; a missing fact makes its hop `unknown`, never a
/// failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExplainFacts {
    /// The target as the user gave it.
    pub target: Target,
    /// The namespace it was looked up in.
    pub namespace: String,
    /// Which way the user asks about.
    #[serde(default)]
    pub intent: Intent,
    /// The kubeconfig context.
    #[serde(default)]
    pub context: ContextFacts,
    /// The API server.
    #[serde(default)]
    pub api: ApiFacts,
    /// The environment behind the context, when detection ran.
    #[serde(default)]
    pub environment: Option<Detection>,
    /// Whether the target object exists (`Unknown`: not looked up; then the presence of
    /// `service`/`pods`/`workload` decides).
    #[serde(default = "tri_unknown")]
    pub target_found: Tri,
    /// The names of objects of the target's kind in the namespace, for "did you mean".
    #[serde(default)]
    pub names_in_namespace: Vec<String>,
    /// Whether the namespace exists (`Unknown`: not asked, or not allowed to ask).
    #[serde(default = "tri_unknown")]
    pub namespace_found: Tri,
    /// The namespaces that exist, for "did you mean" when it does not.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// The Service, for Service targets.
    #[serde(default)]
    pub service: Option<ServiceFacts>,
    /// The workload, for Deployment/StatefulSet/ReplicaSet targets.
    #[serde(default)]
    pub workload: Option<WorkloadFacts>,
    /// The pods behind the target: selected by the Service, owned by the workload, or the pod.
    #[serde(default)]
    pub pods: Vec<PodFacts>,
    /// Every pod in the namespace with its labels, to say what a selector almost matched.
    #[serde(default)]
    pub namespace_pods: Vec<PodLabels>,
    /// The workloads of the namespace, to look one level up from a selector.
    #[serde(default)]
    pub workloads: Vec<WorkloadSummary>,
    /// Pods in other namespaces that the Service's selector would match.
    #[serde(default)]
    pub other_namespace_pods: Vec<NamespacedName>,
    /// The endpoints of the Service's EndpointSlices.
    #[serde(default)]
    pub endpoints: Vec<EndpointFacts>,
    /// `InternalIP:nodePort` (and `ExternalIP:nodePort`) of each node, dialled from the host.
    #[serde(default)]
    pub node_probes: Vec<ProbeFacts>,
    /// Each LoadBalancer ingress address on the Service port, dialled from the host.
    #[serde(default)]
    pub lb_probes: Vec<ProbeFacts>,
    /// `localhost:nodePort`, dialled from the host.
    #[serde(default)]
    pub localhost_probe: Option<ProbeFacts>,
    /// Port-forwards to the target port of the pods: every ready pod (and the not-ready ones,
    /// to tell why they are not ready).
    #[serde(default)]
    pub portforward: Vec<PortForwardProbe>,
    /// Dials of the pods' IPs on the target port through the API server's proxy.
    #[serde(default)]
    pub pod_ip_probes: Vec<PodIpProbe>,
    /// API requests that failed on the way (403 listing pods, …), besides the target lookup.
    #[serde(default)]
    pub api_failures: Vec<ApiFailure>,
    /// What the user may do with `pods/portforward`.
    #[serde(default)]
    pub rbac: RbacFacts,
}

impl ExplainFacts {
    /// Facts with nothing collected yet: the context exists, everything else is unknown.
    pub fn new(target: Target, namespace: impl Into<String>) -> Self {
        ExplainFacts {
            target,
            namespace: namespace.into(),
            intent: Intent::Any,
            context: ContextFacts::default(),
            api: ApiFacts::default(),
            environment: None,
            target_found: Tri::Unknown,
            names_in_namespace: Vec::new(),
            namespace_found: Tri::Unknown,
            namespaces: Vec::new(),
            service: None,
            workload: None,
            pods: Vec::new(),
            namespace_pods: Vec::new(),
            workloads: Vec::new(),
            other_namespace_pods: Vec::new(),
            endpoints: Vec::new(),
            node_probes: Vec::new(),
            lb_probes: Vec::new(),
            localhost_probe: None,
            portforward: Vec::new(),
            pod_ip_probes: Vec::new(),
            api_failures: Vec::new(),
            rbac: RbacFacts::default(),
        }
    }
}

/// The Service port a target refers to: by name or number when the target has a port, else the
/// first port. A number that is one of the Service's node ports also selects that port (people
/// write the NodePort they were shown).
pub fn service_port<'a>(
    service: &'a ServiceFacts,
    port: Option<&PortRef>,
) -> Option<&'a ServicePortFacts> {
    match port {
        None => service.ports.first(),
        Some(PortRef::Name(name)) => service
            .ports
            .iter()
            .find(|p| p.name.as_deref() == Some(name.as_str())),
        Some(PortRef::Number(n)) => service
            .ports
            .iter()
            .find(|p| p.port == *n)
            .or_else(|| service.ports.iter().find(|p| p.node_port == Some(*n))),
    }
}

/// The pod port a target port refers to on one pod: a number as is, a name through the pod's
/// declared container ports (TCP first, as the EndpointSlice controller resolves it).
pub fn pod_port(pod: &PodFacts, target: &PortRef) -> Option<u16> {
    match target {
        PortRef::Number(n) => Some(*n),
        PortRef::Name(name) => {
            let named = |p: &&ContainerPortFacts| p.name.as_deref() == Some(name.as_str());
            pod.container_ports
                .iter()
                .filter(named)
                .find(|p| p.protocol.eq_ignore_ascii_case("TCP"))
                .or_else(|| pod.container_ports.iter().find(named))
                .map(|p| p.port)
        }
    }
}

/// Whether the pod declares `port` as a containerPort.
pub fn pod_declares(pod: &PodFacts, port: u16) -> bool {
    pod.container_ports.iter().any(|p| p.port == port)
}
