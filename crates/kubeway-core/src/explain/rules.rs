//! The diagnosis rules: facts in, checked hops, ways and a verdict out.
//!
//! The stages run in path order and each records its hops and findings; the verdict is chosen
//! at the end by the precedence documented on [`explain`](super::explain).

use std::collections::BTreeMap;

use crate::env::{Detection, LbSupport, Provider, Tri};
use crate::path::{
    Diagnosis, EnvironmentSummary, Finding, FindingKind, Fix, Health, Hop, HopKind, Layer,
    PathReport, PodView, Severity, Status, Way, WayKind,
};
use crate::target::{PortRef, TargetKind};

use super::facts::{
    ExplainFacts, Intent, PodFacts, ServicePortFacts, ServiceType, pod_declares, pod_port,
    service_port,
};
use super::words::{
    boundary_label, boundary_subject, environment_display, label_text, lb_commands, near_names,
    ns_flag, provider_from_context, selector_near_misses, shell_word, start_commands,
};

/// What port-forward to the pods showed.
#[derive(Debug, Clone)]
enum PfOutcome {
    NotProbed,
    Ok {
        pod: String,
        port: u16,
        refused: Vec<String>,
    },
    Refused {
        pod: String,
        port: u16,
        error: String,
    },
    Forbidden {
        error: String,
    },
    PodGone {
        pod: String,
        error: String,
    },
    Other {
        error: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PfError {
    Forbidden,
    Refused,
    PodGone,
    Other,
}

fn classify_pf_error(error: &str) -> PfError {
    let e = error.to_ascii_lowercase();
    if e.contains("forbidden") || e.contains(" 403") || e.starts_with("403") {
        PfError::Forbidden
    } else if e.contains("refused")
        || e.contains("failed to connect to localhost")
        || e.contains("connect(5")
    {
        PfError::Refused
    } else if e.contains("not found")
        || e.contains("does not exist")
        || e.contains("not running")
        || e.contains("no such container")
    {
        PfError::PodGone
    } else {
        PfError::Other
    }
}

/// A finding being built, with the short phrase the summary uses for it.
#[derive(Debug, Clone)]
struct Draft {
    finding: Finding,
    /// A short clause for the summary sentence ("direct NodePort is blocked by Docker Desktop's VM").
    aside: String,
    /// Whether the finding describes the environment (then it is only a warning while a way
    /// that matters works).
    environmental: bool,
}

/// A subject at the start of a sentence: "the …" becomes "The …"; names such as minikube keep
/// their lower case.
fn sentence(text: &str) -> String {
    match text.strip_prefix("the ") {
        Some(rest) => format!("The {rest}"),
        None => text.to_string(),
    }
}

fn trim_period(text: &str) -> &str {
    text.strip_suffix('.').unwrap_or(text)
}

/// `a, b and c`.
fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}

fn host_port(address: &str, port: u16) -> String {
    if address.contains(':') && !address.starts_with('[') {
        format!("[{address}]:{port}")
    } else {
        format!("{address}:{port}")
    }
}

/// A local port for forward commands: the remote one unless it is privileged.
fn local_port(remote: u16) -> u16 {
    if remote >= 1024 { remote } else { 8080 }
}

fn pod_detail(pod: &PodFacts) -> String {
    let mut parts = Vec::new();
    if !pod.phase.is_empty() {
        parts.push(pod.phase.clone());
    }
    if let Some(reason) = &pod.waiting_reason {
        parts.push(format!("waiting: {reason}"));
    }
    if pod.restarts > 0 {
        parts.push(plural(pod.restarts as usize, "restart", "restarts"));
    }
    if pod.terminating {
        parts.push("terminating".to_string());
    }
    parts.push(if pod.ready { "ready" } else { "not ready" }.to_string());
    parts.join(", ")
}

struct Engine<'a> {
    f: &'a ExplainFacts,
    det: Option<&'a Detection>,
    provider: Option<Provider>,
    hops: BTreeMap<HopKind, Hop>,
    drafts: Vec<Draft>,
    ways: Vec<Way>,
    /// `svc/web` as written in sentences.
    who: String,
    /// `-n ns` or empty.
    ns: String,
    /// The Service port in play.
    svc_port: Option<ServicePortFacts>,
    /// The port reference to resolve on the pods.
    port_ref: Option<PortRef>,
    /// Per pod (aligned with `f.pods`), the resolved pod port.
    pod_ports: Vec<Option<u16>>,
    ready_endpoints: usize,
    pf: PfOutcome,
}

impl<'a> Engine<'a> {
    fn new(f: &'a ExplainFacts) -> Self {
        let det = f.environment.as_ref();
        let provider = det
            .map(|d| d.provider)
            .or_else(|| provider_from_context(&f.context.name));
        Engine {
            f,
            det,
            provider,
            hops: BTreeMap::new(),
            drafts: Vec::new(),
            ways: Vec::new(),
            who: format!("{}/{}", f.target.kind.short(), f.target.name),
            ns: ns_flag(&f.namespace),
            svc_port: None,
            port_ref: None,
            pod_ports: Vec::new(),
            ready_endpoints: 0,
            pf: PfOutcome::NotProbed,
        }
    }

    fn is_svc(&self) -> bool {
        self.f.target.kind == TargetKind::Service
    }

    fn set(
        &mut self,
        kind: HopKind,
        label: impl Into<String>,
        checked: impl Into<String>,
        observed: impl Into<String>,
        status: Status,
    ) {
        self.hops.insert(
            kind,
            Hop {
                id: kind.id().to_string(),
                kind,
                layer: kind.layer(),
                label: label.into(),
                checked: checked.into(),
                observed: observed.into(),
                status,
            },
        );
    }

    fn status_of(&self, kind: HopKind) -> Option<Status> {
        self.hops.get(&kind).map(|h| h.status)
    }

    fn set_status(&mut self, kind: HopKind, status: Status) {
        if let Some(hop) = self.hops.get_mut(&kind) {
            hop.status = status;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn find(
        &mut self,
        kind: FindingKind,
        hop: HopKind,
        layer: Layer,
        severity: Severity,
        cause: String,
        fixes: Vec<Fix>,
        ways: Vec<WayKind>,
        aside: String,
    ) {
        self.drafts.push(Draft {
            finding: Finding {
                kind,
                hop: hop.id().to_string(),
                layer,
                severity,
                cause,
                fixes,
                ways,
            },
            aside,
            environmental: false,
        });
    }

    fn has(&self, kind: FindingKind) -> bool {
        self.drafts.iter().any(|d| d.finding.kind == kind)
    }

    fn forward_command(&self) -> String {
        let remote = match (&self.svc_port, self.is_svc()) {
            (Some(p), true) => Some(p.port),
            _ => self.first_pod_port(),
        };
        match remote {
            Some(r) => format!(
                "kubeway forward{} {} {}:{r}",
                self.ns,
                self.who_plain(),
                local_port(r)
            ),
            None => format!("kubeway forward{} {} 8080:PORT", self.ns, self.who_plain()),
        }
    }

    /// The target without its `:port` suffix (`svc/web`).
    fn who_plain(&self) -> String {
        format!(
            "{}/{}",
            self.f.target.kind.short(),
            shell_word(&self.f.target.name)
        )
    }

    fn open_command(&self) -> String {
        format!("kubeway open{} {}", self.ns, self.who_plain())
    }

    fn first_pod_port(&self) -> Option<u16> {
        self.pod_ports.iter().flatten().next().copied()
    }

    /// Every hop still missing becomes `unknown` with the reason.
    fn fill_unknown(&mut self, reason: &str) {
        let mut kinds = vec![
            HopKind::Pods,
            HopKind::Process,
            HopKind::ApiServer,
            HopKind::Rbac,
        ];
        if self.f.target.kind != TargetKind::Pod {
            kinds.push(HopKind::Selector);
        }
        if self.is_svc() {
            kinds.extend([HopKind::Service, HopKind::Endpoints, HopKind::TargetPort]);
        }
        if self.f.target.port.is_some() {
            kinds.push(HopKind::TargetPort);
        }
        for kind in kinds {
            if !self.hops.contains_key(&kind) {
                let label = default_label(kind);
                self.set(
                    kind,
                    label,
                    "",
                    format!("not checked: {reason}"),
                    Status::Unknown,
                );
            }
        }
    }

    // ----- stages -------------------------------------------------------------------------------

    fn host(&mut self) {
        let observed = match self.det {
            Some(d) => format!("kubeway runs on {}", super::words::host_words(d.host)),
            None => "kubeway runs here".to_string(),
        };
        self.set(
            HopKind::Host,
            "your machine",
            "where the browser or curl runs",
            observed,
            Status::Ok,
        );
    }

    /// Context and API server; `false` stops the path there.
    fn api(&mut self) -> bool {
        let f = self.f;
        let ctx = &f.context;
        if !ctx.exists {
            let near = near_names(&ctx.name, &ctx.known_contexts);
            let mut cause = format!("The kubeconfig has no context named {:?}", ctx.name);
            if !near.is_empty() {
                cause.push_str(&format!(" (did you mean {}?)", join_and(&near)));
            } else if !ctx.known_contexts.is_empty() {
                cause.push_str(&format!(
                    "; it has {}",
                    join_and(
                        &ctx.known_contexts
                            .iter()
                            .take(5)
                            .cloned()
                            .collect::<Vec<_>>()
                    )
                ));
            }
            cause.push('.');
            let mut fixes = vec![Fix::run(
                "list the contexts your kubeconfig has",
                "kubectl config get-contexts",
            )];
            if let Some(best) = near.first() {
                fixes.push(Fix::run(
                    "explain through the context you probably meant",
                    format!(
                        "kubeway explain --context {} {}",
                        shell_word(best),
                        self.who_plain()
                    ),
                ));
                fixes.push(Fix::run(
                    "or make it the current context",
                    format!("kubectl config use-context {}", shell_word(best)),
                ));
            }
            self.set(
                HopKind::Context,
                format!("context {}", ctx.name),
                "the kubeconfig has this context",
                "no such context",
                Status::Broken,
            );
            self.find(
                FindingKind::ContextMissing,
                HopKind::Context,
                Layer::Host,
                Severity::Broken,
                cause,
                fixes,
                vec![],
                "the context does not exist".to_string(),
            );
            self.fill_unknown("the context does not exist");
            return false;
        }
        self.set(
            HopKind::Context,
            format!("context {}", ctx.name),
            "the kubeconfig has this context",
            format!(
                "cluster at {}",
                if f.api.server.is_empty() {
                    "?"
                } else {
                    &f.api.server
                }
            ),
            Status::Ok,
        );
        let server = if f.api.server.is_empty() {
            "the API server".to_string()
        } else {
            f.api.server.clone()
        };
        match f.api.reachable {
            Tri::No => {
                let error = f
                    .api
                    .error
                    .clone()
                    .unwrap_or_else(|| "no answer".to_string());
                let cause = format!(
                    "The API server at {server} does not answer ({}): is the cluster running?",
                    one_line(&error)
                );
                let fixes = start_commands(self.provider, &ctx.name)
                    .into_iter()
                    .map(|(a, c)| Fix::run(a, c))
                    .collect();
                self.set(
                    HopKind::ApiServer,
                    "API server",
                    format!("{server} answers"),
                    one_line(&error),
                    Status::Broken,
                );
                self.find(
                    FindingKind::ApiUnreachable,
                    HopKind::ApiServer,
                    Layer::Api,
                    Severity::Broken,
                    cause,
                    fixes,
                    vec![],
                    "the API server does not answer".to_string(),
                );
                self.fill_unknown("the API server does not answer");
                false
            }
            Tri::Yes => {
                let observed = match &f.api.version {
                    Some(v) => format!("answers ({v})"),
                    None => "answers".to_string(),
                };
                self.set(
                    HopKind::ApiServer,
                    "API server",
                    format!("{server} answers"),
                    observed,
                    Status::Ok,
                );
                true
            }
            Tri::Unknown => {
                self.set(
                    HopKind::ApiServer,
                    "API server",
                    format!("{server} answers"),
                    "not checked",
                    Status::Unknown,
                );
                true
            }
        }
    }

    /// The target object exists; `false` stops the path there.
    fn lookup(&mut self) -> bool {
        let f = self.f;
        let kind = f.target.kind;
        let present = match kind {
            TargetKind::Service => f.service.is_some(),
            TargetKind::Pod => !f.pods.is_empty(),
            _ => f.workload.is_some() || !f.pods.is_empty(),
        };
        let found = match f.target_found {
            Tri::No => false,
            Tri::Yes => true,
            Tri::Unknown => present || f.api.reachable != Tri::Yes,
        };
        if found {
            return true;
        }
        let near = near_names(&f.target.name, &f.names_in_namespace);
        let what = match kind {
            TargetKind::Service => "Service",
            TargetKind::Pod => "pod",
            TargetKind::Deployment => "Deployment",
            TargetKind::StatefulSet => "StatefulSet",
            TargetKind::ReplicaSet => "ReplicaSet",
        };
        let mut cause = format!(
            "There is no {what} named {:?} in namespace {}",
            f.target.name, f.namespace
        );
        if !near.is_empty() {
            cause.push_str(&format!(": did you mean {}?", join_and(&near)));
        } else {
            cause.push('.');
        }
        let mut fixes = vec![Fix::run(
            format!("list the {}s in the namespace", what.to_ascii_lowercase()),
            format!("kubectl get {}{}", kind.plural(), self.ns),
        )];
        if let Some(best) = near.first() {
            fixes.push(Fix::run(
                "explain the one you probably meant",
                format!(
                    "kubeway explain{} {}/{}",
                    self.ns,
                    kind.short(),
                    shell_word(best)
                ),
            ));
        } else {
            fixes.push(Fix::run(
                "look for it in every namespace",
                format!(
                    "kubectl get {} -A --field-selector metadata.name={}",
                    kind.plural(),
                    shell_word(&f.target.name)
                ),
            ));
        }
        let (hop, finding) = match kind {
            TargetKind::Service => (HopKind::Service, FindingKind::ServiceNotFound),
            TargetKind::Pod => (HopKind::Pods, FindingKind::PodNotFound),
            _ => (HopKind::Selector, FindingKind::WorkloadNotFound),
        };
        self.set(
            hop,
            format!("{what} {}", f.target.name),
            format!("{what} exists in namespace {}", f.namespace),
            "not found",
            Status::Broken,
        );
        self.find(
            finding,
            hop,
            Layer::Kubernetes,
            Severity::Broken,
            cause,
            fixes,
            vec![],
            format!("{what} {} does not exist", f.target.name),
        );
        self.fill_unknown(&format!("{} does not exist", self.who));
        false
    }

    /// The Service's type and port; `false` stops the path there.
    fn service(&mut self) -> bool {
        let f = self.f;
        let Some(svc) = &f.service else {
            self.set(
                HopKind::Service,
                format!("Service {}", f.target.name),
                "",
                "not read",
                Status::Unknown,
            );
            return true;
        };
        let label = format!("Service {}", svc.name);
        if svc.type_ == ServiceType::ExternalName {
            let alias = svc.external_name.clone().unwrap_or_default();
            self.set(
                HopKind::Service,
                label,
                "type and ports",
                format!("ExternalName → {alias}"),
                Status::Broken,
            );
            self.find(
                FindingKind::ExternalNameService,
                HopKind::Service,
                Layer::Kubernetes,
                Severity::Broken,
                format!(
                    "Service {} is an ExternalName alias for {alias:?}, so no pods stand behind it to reach.",
                    svc.name
                ),
                vec![Fix::run(
                    "see what it points at",
                    format!("kubectl get svc{} {} -o yaml", self.ns, shell_word(&svc.name)),
                )],
                vec![],
                "the Service is an ExternalName alias".to_string(),
            );
            self.fill_unknown("an ExternalName Service has no pods");
            return false;
        }
        let ports_text = svc
            .ports
            .iter()
            .map(|p| match &p.name {
                Some(n) => format!("{}/{} ({n})", p.port, p.protocol),
                None => format!("{}/{}", p.port, p.protocol),
            })
            .collect::<Vec<_>>();
        let chosen = service_port(svc, f.target.port.as_ref()).cloned();
        let Some(port) = chosen else {
            // No such port: perhaps a NodePort-style number on a ClusterIP Service.
            let asked = f
                .target
                .port
                .as_ref()
                .map(|p| p.to_string())
                .unwrap_or_default();
            let nodeport_like =
                matches!(f.target.port, Some(PortRef::Number(n)) if (30000..=32767).contains(&n));
            if svc.ports.is_empty() {
                self.set(
                    HopKind::Service,
                    label,
                    "type and ports",
                    "no ports",
                    Status::Broken,
                );
                self.find(
                    FindingKind::ServicePortMissing,
                    HopKind::Service,
                    Layer::Kubernetes,
                    Severity::Broken,
                    format!(
                        "Service {} has no ports, so nothing can be reached through it.",
                        svc.name
                    ),
                    vec![Fix::run(
                        "add a port to the Service",
                        format!("kubectl edit svc{} {}", self.ns, shell_word(&svc.name)),
                    )],
                    vec![],
                    "the Service has no ports".to_string(),
                );
            } else if nodeport_like && svc.type_ == ServiceType::ClusterIp {
                self.set(
                    HopKind::Service,
                    label,
                    format!("port {asked}"),
                    format!("type ClusterIP, ports {}", ports_text.join(", ")),
                    Status::Ok,
                );
                self.cluster_ip_not_node_port(Some(&asked));
                self.port_ref = svc.ports.first().map(|p| p.target_port.clone());
                self.svc_port = svc.ports.first().cloned();
                return true;
            } else {
                self.set(
                    HopKind::Service,
                    label,
                    format!("the Service has port {asked}"),
                    format!("ports are {}", ports_text.join(", ")),
                    Status::Broken,
                );
                let first = &svc.ports[0];
                self.find(
                    FindingKind::ServicePortMissing,
                    HopKind::Service,
                    Layer::Kubernetes,
                    Severity::Broken,
                    format!(
                        "Service {} has no port {asked}; its ports are {}.",
                        svc.name,
                        join_and(&ports_text)
                    ),
                    vec![Fix::run(
                        "ask for one of its ports",
                        format!(
                            "kubeway explain{} svc/{}:{}",
                            self.ns,
                            shell_word(&svc.name),
                            first.port
                        ),
                    )],
                    vec![],
                    format!("the Service has no port {asked}"),
                );
            }
            self.fill_unknown("the port is not on the Service");
            return false;
        };
        let mut observed = format!(
            "{}, port {}/{} → targetPort {}",
            svc.type_, port.port, port.protocol, port.target_port
        );
        if let Some(np) = port.node_port {
            observed.push_str(&format!(", nodePort {np}"));
        }
        if let Some(ip) = &svc.cluster_ip {
            observed.push_str(&format!(", clusterIP {ip}"));
        }
        if f.target.port.is_none() && svc.ports.len() > 1 {
            observed.push_str(&format!(" (first of {} ports)", svc.ports.len()));
        }
        self.set(
            HopKind::Service,
            label,
            "type and port",
            observed,
            Status::Ok,
        );
        if !port.protocol.eq_ignore_ascii_case("TCP") {
            self.find(
                FindingKind::NotTcp,
                HopKind::Service,
                Layer::Kubernetes,
                Severity::Warning,
                format!(
                    "Service port {} is {}, and port-forward carries TCP only.",
                    port.port, port.protocol
                ),
                vec![Fix::say(
                    "reach it through a NodePort or LoadBalancer address instead",
                )],
                vec![WayKind::PortForward],
                format!("port {} is {}", port.port, port.protocol),
            );
        }
        if f.intent == Intent::LoadBalancer && svc.type_ != ServiceType::LoadBalancer {
            let patch = serde_json::json!({"spec": {"type": "LoadBalancer"}}).to_string();
            self.set(
                HopKind::LbIngress,
                "LoadBalancer",
                "the Service has a LoadBalancer address",
                format!("type {}: no LoadBalancer", svc.type_),
                Status::Broken,
            );
            self.find(
                FindingKind::NotLoadBalancer,
                HopKind::LbIngress,
                Layer::Kubernetes,
                Severity::Broken,
                format!(
                    "Service {} is type {}, so it never gets a LoadBalancer address.",
                    svc.name, svc.type_
                ),
                vec![
                    Fix::run(
                        "get a working URL without changing the Service",
                        self.open_command(),
                    ),
                    Fix::run(
                        "or make it a LoadBalancer",
                        format!(
                            "kubectl patch svc{} {} -p {}",
                            self.ns,
                            shell_word(&svc.name),
                            shell_word(&patch)
                        ),
                    ),
                ],
                vec![WayKind::LoadBalancer],
                format!("the Service is {}", svc.type_),
            );
        }
        self.port_ref = Some(port.target_port.clone());
        self.svc_port = Some(port);
        let wants_node = matches!(f.intent, Intent::NodePort | Intent::Direct);
        if svc.type_ == ServiceType::ClusterIp && wants_node {
            self.cluster_ip_not_node_port(None);
        } else if svc.type_ == ServiceType::ClusterIp && f.intent == Intent::Any {
            self.find(
                FindingKind::ClusterIpInClusterOnly,
                HopKind::Service,
                Layer::Kubernetes,
                Severity::Info,
                format!(
                    "Service {} is type ClusterIP, so from this host it is reached only through a forward.",
                    svc.name
                ),
                vec![Fix::run("open it through a forward", self.open_command())],
                vec![],
                "ClusterIP: in-cluster only".to_string(),
            );
        }
        true
    }

    fn cluster_ip_not_node_port(&mut self, asked: Option<&str>) {
        let f = self.f;
        let name = f
            .service
            .as_ref()
            .map(|s| s.name.as_str())
            .unwrap_or(&f.target.name);
        let patch = serde_json::json!({"spec": {"type": "NodePort"}}).to_string();
        let asked_text = match asked {
            Some(p) => format!(" (port {p} looks like a NodePort)"),
            None => String::new(),
        };
        self.set(
            HopKind::NodePort,
            "NodePort",
            "the Service has a NodePort",
            "none: the Service is ClusterIP",
            Status::Broken,
        );
        let fixes = vec![
            Fix::run(
                "open it from this host without changing the Service",
                self.open_command(),
            ),
            Fix::run("or forward a local port to it", self.forward_command()),
            Fix::run(
                "or give it a NodePort",
                format!(
                    "kubectl patch svc{} {} -p {}",
                    self.ns,
                    shell_word(name),
                    shell_word(&patch)
                ),
            ),
        ];
        self.find(
            FindingKind::ClusterIpNotNodePort,
            HopKind::NodePort,
            Layer::Kubernetes,
            Severity::Broken,
            format!(
                "Service {name} is type ClusterIP{asked_text}, so it has no NodePort and is reachable only inside the cluster."
            ),
            fixes,
            vec![WayKind::NodePort, WayKind::LocalhostNodePort],
            "the Service is ClusterIP and has no NodePort".to_string(),
        );
    }

    fn load_balancer(&mut self) {
        let f = self.f;
        let Some(svc) = &f.service else { return };
        if svc.type_ != ServiceType::LoadBalancer {
            return;
        }
        let port = self.svc_port.as_ref().map(|p| p.port).unwrap_or(0);
        let lb = self.det.map(|d| d.load_balancer.support);
        if svc.lb_ingress.is_empty() {
            let has_impl = matches!(
                lb,
                Some(
                    LbSupport::K3sServiceLb
                        | LbSupport::DockerDesktop
                        | LbSupport::CloudProviderKind
                        | LbSupport::MetalLb
                        | LbSupport::OrbStack
                        | LbSupport::CloudProvider
                )
            );
            self.set(
                HopKind::LbIngress,
                "LoadBalancer",
                "status.loadBalancer.ingress has an address",
                "<pending>: no address",
                Status::Broken,
            );
            let env = self
                .det
                .map(|d| d.provider.display_name().to_string())
                .unwrap_or_else(|| "this cluster".to_string());
            let (cause, layer, mut fixes) = if has_impl {
                (
                    format!(
                        "Service {} is type LoadBalancer but still has no external address, although {env} has a LoadBalancer implementation.",
                        svc.name
                    ),
                    Layer::Kubernetes,
                    vec![Fix::run(
                        "read the Service's events (a port already taken by another LoadBalancer is the usual cause)",
                        format!("kubectl describe svc{} {}", self.ns, shell_word(&svc.name)),
                    )],
                )
            } else {
                (
                    format!(
                        "Service {} is type LoadBalancer but stays <pending>: {env} has no LoadBalancer implementation to give it an address.",
                        svc.name
                    ),
                    Layer::Driver,
                    Vec::new(),
                )
            };
            fixes.extend(
                lb_commands(self.provider, lb)
                    .into_iter()
                    .map(|(a, c)| Fix::run(a, c)),
            );
            fixes.push(Fix::run(
                "or get a working URL right now",
                self.open_command(),
            ));
            self.find(
                FindingKind::LoadBalancerPending,
                HopKind::LbIngress,
                layer,
                Severity::Broken,
                cause,
                fixes,
                vec![WayKind::LoadBalancer],
                "the LoadBalancer is <pending>".to_string(),
            );
            return;
        }
        let ingress = svc.lb_ingress.join(", ");
        let answered: Vec<_> = f
            .lb_probes
            .iter()
            .filter(|p| p.answered == Tri::Yes)
            .collect();
        let refused: Vec<_> = f
            .lb_probes
            .iter()
            .filter(|p| p.answered == Tri::No)
            .collect();
        let address = host_port(&svc.lb_ingress[0], port);
        if let Some(p) = answered.first() {
            let at = host_port(&p.address, p.port);
            self.set(
                HopKind::LbIngress,
                format!("LoadBalancer {ingress}"),
                format!("{address} answers from this host"),
                format!("{at} answered"),
                Status::Ok,
            );
        } else if !refused.is_empty() {
            let detail = refused[0]
                .detail
                .clone()
                .unwrap_or_else(|| "no answer".to_string());
            self.set(
                HopKind::LbIngress,
                format!("LoadBalancer {ingress}"),
                format!("{address} answers from this host"),
                one_line(&detail),
                Status::Broken,
            );
        } else {
            self.set(
                HopKind::LbIngress,
                format!("LoadBalancer {ingress}"),
                format!("{address} answers from this host"),
                "not probed",
                Status::Unknown,
            );
        }
    }

    fn selector_and_pods(&mut self) {
        let f = self.f;
        let kind = f.target.kind;
        let selector = match kind {
            TargetKind::Service => f.service.as_ref().map(|s| s.selector.clone()),
            TargetKind::Pod => None,
            _ => f.workload.as_ref().map(|w| w.selector.clone()),
        };
        let n = f.pods.len();
        if kind == TargetKind::Service {
            let sel = selector.unwrap_or_default();
            if sel.is_empty() {
                self.set(
                    HopKind::Selector,
                    "selector",
                    "the Service selects pods",
                    "no selector: endpoints are managed by hand",
                    if f.service.is_some() {
                        Status::Skipped
                    } else {
                        Status::Unknown
                    },
                );
            } else if n == 0 {
                let misses = selector_near_misses(&sel, &f.namespace_pods);
                let sel_text = label_text(&sel);
                let mut cause = format!(
                    "Service {} selects pods with {sel_text}, but no pod in namespace {} has those labels",
                    f.target.name, f.namespace
                );
                if !misses.is_empty() {
                    let shown: Vec<String> = misses
                        .iter()
                        .take(3)
                        .map(|m| format!("{} has {}", m.pod, m.has))
                        .collect();
                    cause.push_str(&format!(" ({})", shown.join("; ")));
                }
                cause.push('.');
                let mut fixes = vec![Fix::run(
                    "compare the pods' labels with the selector",
                    format!("kubectl get pods{} --show-labels", self.ns),
                )];
                if let Some((k, v)) = misses.iter().find_map(|m| m.other_value.clone()) {
                    let mut new_sel = sel.clone();
                    new_sel.insert(k, v);
                    let patch = serde_json::json!({"spec": {"selector": new_sel}}).to_string();
                    fixes.push(Fix::run(
                        "point the selector at the pods that exist",
                        format!(
                            "kubectl patch svc{} {} -p {}",
                            self.ns,
                            shell_word(&f.target.name),
                            shell_word(&patch)
                        ),
                    ));
                }
                let pod = misses
                    .first()
                    .map(|m| m.pod.clone())
                    .unwrap_or_else(|| "POD".to_string());
                let labels: Vec<String> = sel
                    .iter()
                    .map(|(k, v)| shell_word(&format!("{k}={v}")))
                    .collect();
                fixes.push(Fix::run(
                    "or label the pods (better: fix the labels in their Deployment's template)",
                    format!(
                        "kubectl label pod{} {} {} --overwrite",
                        self.ns,
                        shell_word(&pod),
                        labels.join(" ")
                    ),
                ));
                self.set(
                    HopKind::Selector,
                    format!("selector {sel_text}"),
                    "the selector matches pods",
                    "matches no pods",
                    Status::Broken,
                );
                self.find(
                    FindingKind::SelectorMatchesNothing,
                    HopKind::Selector,
                    Layer::Kubernetes,
                    Severity::Broken,
                    cause,
                    fixes,
                    vec![],
                    "the selector matches no pods".to_string(),
                );
            } else {
                self.set(
                    HopKind::Selector,
                    format!("selector {}", label_text(&sel)),
                    "the selector matches pods",
                    format!("matches {}", plural(n, "pod", "pods")),
                    Status::Ok,
                );
            }
        } else if kind != TargetKind::Pod {
            let label = format!("{}/{}", kind.short(), f.target.name);
            let sel_text = selector
                .as_ref()
                .map(label_text)
                .unwrap_or_else(|| "?".to_string());
            if n == 0 {
                let replicas = f.workload.as_ref().and_then(|w| w.replicas);
                let (cause, fix) = if replicas == Some(0) {
                    (
                        format!("{} is scaled to 0 replicas, so it has no pods.", self.who),
                        Fix::run(
                            "scale it up",
                            format!("kubectl scale{} {} --replicas=1", self.ns, self.who_plain()),
                        ),
                    )
                } else {
                    (
                        format!(
                            "{} has no pods with {sel_text}: its controller could not create them.",
                            self.who
                        ),
                        Fix::run(
                            "read its events (quota, admission, image or scheduling errors)",
                            format!("kubectl describe{} {}", self.ns, self.who_plain()),
                        ),
                    )
                };
                self.set(
                    HopKind::Selector,
                    label,
                    format!("the workload has pods ({sel_text})"),
                    "no pods",
                    Status::Broken,
                );
                self.find(
                    FindingKind::WorkloadHasNoPods,
                    HopKind::Selector,
                    Layer::Kubernetes,
                    Severity::Broken,
                    cause,
                    vec![fix],
                    vec![],
                    "the workload has no pods".to_string(),
                );
            } else {
                self.set(
                    HopKind::Selector,
                    label,
                    format!("the workload has pods ({sel_text})"),
                    plural(n, "pod", "pods"),
                    Status::Ok,
                );
            }
        }

        // Readiness.
        let pods_label = if kind == TargetKind::Pod {
            format!("Pod {}", f.target.name)
        } else {
            "Pods".to_string()
        };
        if n == 0 {
            if !self.hops.contains_key(&HopKind::Pods) {
                self.set(
                    HopKind::Pods,
                    pods_label,
                    "the pods are ready",
                    "no pods",
                    Status::Skipped,
                );
            }
            return;
        }
        let ready: Vec<&PodFacts> = f.pods.iter().filter(|p| p.ready).collect();
        let not_ready: Vec<&PodFacts> = f.pods.iter().filter(|p| !p.ready).collect();
        let observed = format!("{}/{} ready", ready.len(), n);
        if ready.is_empty() {
            self.set(
                HopKind::Pods,
                pods_label,
                "the pods are ready",
                observed,
                Status::Broken,
            );
            let worst = not_ready
                .iter()
                .max_by_key(|p| (p.waiting_reason.is_some(), p.restarts))
                .copied();
            let Some(worst) = worst else { return };
            let why = not_ready_words(worst);
            let who_pods = if n == 1 {
                format!("Pod {}", worst.name)
            } else {
                format!(
                    "None of the {n} pods of {} is ready: {}",
                    self.who, worst.name
                )
            };
            let cause = if n == 1 {
                format!("{who_pods} is not ready: {why}.")
            } else {
                format!("{who_pods} {why}.")
            };
            let mut fixes = vec![Fix::run(
                "read the pod's events and conditions",
                format!(
                    "kubectl describe pod{} {}",
                    self.ns,
                    shell_word(&worst.name)
                ),
            )];
            if worst.restarts > 0 || worst.waiting_reason.as_deref() == Some("CrashLoopBackOff") {
                fixes.push(Fix::run(
                    "read the log of the last crash",
                    format!(
                        "kubectl logs{} {} --previous",
                        self.ns,
                        shell_word(&worst.name)
                    ),
                ));
            } else {
                fixes.push(Fix::run(
                    "read its log",
                    format!("kubectl logs{} {}", self.ns, shell_word(&worst.name)),
                ));
            }
            self.find(
                FindingKind::PodsNotReady,
                HopKind::Pods,
                Layer::Kubernetes,
                Severity::Broken,
                cause,
                fixes,
                vec![],
                "no pod is ready".to_string(),
            );
        } else if !not_ready.is_empty() {
            self.set(
                HopKind::Pods,
                pods_label,
                "the pods are ready",
                observed,
                Status::Warning,
            );
            let names: Vec<String> = not_ready.iter().take(3).map(|p| p.name.clone()).collect();
            let first = not_ready[0];
            self.find(
                FindingKind::SomePodsNotReady,
                HopKind::Pods,
                Layer::Kubernetes,
                Severity::Warning,
                format!(
                    "{} of {n} pods are not ready ({}: {}), so traffic goes to the others only.",
                    not_ready.len(),
                    join_and(&names),
                    not_ready_words(first)
                ),
                vec![Fix::run(
                    "see why",
                    format!(
                        "kubectl describe pod{} {}",
                        self.ns,
                        shell_word(&first.name)
                    ),
                )],
                vec![],
                format!("{} of {n} pods are not ready", not_ready.len()),
            );
        } else {
            self.set(
                HopKind::Pods,
                pods_label,
                "the pods are ready",
                observed,
                Status::Ok,
            );
        }
    }

    fn target_port(&mut self) {
        let f = self.f;
        if self.port_ref.is_none() && !self.is_svc() {
            self.port_ref = f
                .target
                .port
                .clone()
                .or_else(|| f.portforward.first().map(|p| PortRef::Number(p.port)))
                .or_else(|| {
                    f.pods
                        .iter()
                        .find_map(|p| p.container_ports.first())
                        .map(|c| PortRef::Number(c.port))
                });
        }
        let Some(port_ref) = self.port_ref.clone() else {
            self.pod_ports = vec![None; f.pods.len()];
            if !self.hops.contains_key(&HopKind::TargetPort) {
                let status = if self.is_svc() {
                    Status::Unknown
                } else {
                    Status::Skipped
                };
                self.set(
                    HopKind::TargetPort,
                    "target port",
                    "the port exists on the pods",
                    "no port given or declared",
                    status,
                );
            }
            return;
        };
        self.pod_ports = f.pods.iter().map(|p| pod_port(p, &port_ref)).collect();
        let label = format!("targetPort {port_ref}");
        let n = f.pods.len();
        if n == 0 {
            self.set(
                HopKind::TargetPort,
                label,
                "the port exists on the pods",
                "no pods to check",
                Status::Skipped,
            );
            return;
        }
        match &port_ref {
            PortRef::Name(name) => {
                let resolved: Vec<u16> = self.pod_ports.iter().flatten().copied().collect();
                let missing: Vec<String> = f
                    .pods
                    .iter()
                    .zip(&self.pod_ports)
                    .filter(|(_, p)| p.is_none())
                    .map(|(pod, _)| pod.name.clone())
                    .collect();
                let mut numbers = resolved.clone();
                numbers.sort_unstable();
                numbers.dedup();
                let nums = numbers
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(", ");
                if resolved.is_empty() {
                    let declared: Vec<u16> = {
                        let mut d: Vec<u16> = f
                            .pods
                            .iter()
                            .flat_map(|p| p.container_ports.iter().map(|c| c.port))
                            .collect();
                        d.sort_unstable();
                        d.dedup();
                        d
                    };
                    let declared_text = if declared.is_empty() {
                        "they declare no ports at all".to_string()
                    } else {
                        format!(
                            "they declare {}",
                            f.pods
                                .iter()
                                .flat_map(|p| p.container_ports.iter())
                                .map(|c| match &c.name {
                                    Some(n) => format!("{} ({n})", c.port),
                                    None => c.port.to_string(),
                                })
                                .collect::<std::collections::BTreeSet<_>>()
                                .into_iter()
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    };
                    let number = declared
                        .first()
                        .map(u16::to_string)
                        .unwrap_or_else(|| "PORT".to_string());
                    let svc_name = f
                        .service
                        .as_ref()
                        .map(|s| s.name.clone())
                        .unwrap_or_else(|| f.target.name.clone());
                    let svc_port = self.svc_port.as_ref().map(|p| p.port).unwrap_or(0);
                    let patch = serde_json::json!({"spec": {"ports": [{"port": svc_port, "targetPort": declared.first().copied().unwrap_or(0)}]}}).to_string();
                    let who = if self.is_svc() {
                        format!("Service port {svc_port} targets the container port named {name:?}")
                    } else {
                        format!("The port named {name:?} was asked for")
                    };
                    let cause = format!(
                        "{who}, but no container in the pods declares a port with that name ({declared_text})."
                    );
                    let mut fixes = vec![Fix::say(format!(
                        "add `- name: {name}` with `containerPort: {number}` to the container's ports in the pod template"
                    ))];
                    if self.is_svc() && !declared.is_empty() {
                        fixes.push(Fix::run(
                            "or point targetPort at the number",
                            format!(
                                "kubectl patch svc{} {} -p {}",
                                self.ns,
                                shell_word(&svc_name),
                                shell_word(&patch)
                            ),
                        ));
                    }
                    fixes.push(Fix::run(
                        "see the ports the pods declare",
                        format!(
                            "kubectl get pod{} {} -o jsonpath='{{.spec.containers[*].ports}}'",
                            self.ns,
                            shell_word(&f.pods[0].name)
                        ),
                    ));
                    self.set(
                        HopKind::TargetPort,
                        label,
                        format!("a container port named {name} on each pod"),
                        "no pod declares it",
                        Status::Broken,
                    );
                    self.find(
                        FindingKind::TargetPortNameMissing,
                        HopKind::TargetPort,
                        Layer::Kubernetes,
                        Severity::Broken,
                        cause,
                        fixes,
                        vec![],
                        format!("no pod declares a port named {name}"),
                    );
                } else if !missing.is_empty() {
                    self.set(
                        HopKind::TargetPort,
                        label,
                        format!("a container port named {name} on each pod"),
                        format!("{name} → {nums}; missing on {}", join_and(&missing)),
                        Status::Warning,
                    );
                    self.find(
                        FindingKind::TargetPortNameMissingOnSome,
                        HopKind::TargetPort,
                        Layer::Kubernetes,
                        Severity::Warning,
                        format!(
                            "Pods {} declare no port named {name:?}, so they get no endpoint for it.",
                            join_and(&missing)
                        ),
                        vec![Fix::run(
                            "compare their pod templates (an old ReplicaSet?)",
                            format!("kubectl get pods{} -o wide --show-labels", self.ns),
                        )],
                        vec![],
                        format!("some pods lack the port named {name}"),
                    );
                } else {
                    self.set(
                        HopKind::TargetPort,
                        label,
                        format!("a container port named {name} on each pod"),
                        format!("{name} → {nums} on all {}", plural(n, "pod", "pods")),
                        Status::Ok,
                    );
                }
            }
            PortRef::Number(number) => {
                let number = *number;
                let declared_on = f.pods.iter().filter(|p| pod_declares(p, number)).count();
                if declared_on == n {
                    self.set(
                        HopKind::TargetPort,
                        label,
                        format!("containerPort {number} on the pods"),
                        format!("declared on all {}", plural(n, "pod", "pods")),
                        Status::Ok,
                    );
                } else if declared_on > 0 {
                    self.set(
                        HopKind::TargetPort,
                        label,
                        format!("containerPort {number} on the pods"),
                        format!("declared on {declared_on} of {n} pods"),
                        Status::Ok,
                    );
                } else {
                    // Decided with the port-forward result in `process`.
                    self.set(
                        HopKind::TargetPort,
                        label,
                        format!("containerPort {number} on the pods"),
                        "not declared as a containerPort (undeclared ports still work when the app listens on them)",
                        Status::Warning,
                    );
                }
            }
        }
    }

    fn endpoints(&mut self) {
        let f = self.f;
        if !self.is_svc() {
            return;
        }
        if f.service.is_none() {
            self.set(
                HopKind::Endpoints,
                "EndpointSlice",
                "ready endpoints",
                "not read",
                Status::Unknown,
            );
            return;
        }
        let port_name = self
            .svc_port
            .as_ref()
            .and_then(|p| p.name.clone())
            .filter(|n| !n.is_empty());
        let any_ports = f.endpoints.iter().any(|e| !e.ports.is_empty());
        let for_port: Vec<_> = f
            .endpoints
            .iter()
            .filter(|e| {
                !any_ports
                    || e.ports
                        .iter()
                        .any(|p| p.name.clone().filter(|n| !n.is_empty()) == port_name)
            })
            .collect();
        let ready: Vec<_> = for_port.iter().filter(|e| e.ready).collect();
        self.ready_endpoints = ready.len();
        let shown: Vec<String> = ready
            .iter()
            .take(3)
            .map(|e| {
                match e
                    .ports
                    .iter()
                    .find(|p| p.name.clone().filter(|n| !n.is_empty()) == port_name)
                {
                    Some(p) => host_port(&e.ip, p.port),
                    None => e.ip.clone(),
                }
            })
            .collect();
        let mut observed = format!("{}/{} ready", ready.len(), for_port.len());
        if !shown.is_empty() {
            observed.push_str(&format!(
                " ({}{})",
                shown.join(", "),
                if ready.len() > 3 { ", …" } else { "" }
            ));
        }
        if !ready.is_empty() {
            self.set(
                HopKind::Endpoints,
                "EndpointSlice",
                "ready endpoints for the port",
                observed,
                Status::Ok,
            );
            return;
        }
        self.set(
            HopKind::Endpoints,
            "EndpointSlice",
            "ready endpoints for the port",
            observed,
            Status::Broken,
        );
        let explained = self.has(FindingKind::SelectorMatchesNothing)
            || self.has(FindingKind::PodsNotReady)
            || self.has(FindingKind::TargetPortNameMissing);
        if explained
            || f.pods.is_empty() && !f.service.as_ref().is_some_and(|s| s.selector.is_empty())
        {
            return;
        }
        let svc_name = f
            .service
            .as_ref()
            .map(|s| s.name.clone())
            .unwrap_or_default();
        let cause = if f.service.as_ref().is_some_and(|s| s.selector.is_empty()) {
            format!(
                "Service {svc_name} has no selector and no ready endpoints: nobody has added any by hand."
            )
        } else {
            format!(
                "{} ready pods match Service {svc_name}, but its EndpointSlices list no ready endpoint for the port.",
                f.pods.iter().filter(|p| p.ready).count()
            )
        };
        self.find(
            FindingKind::NoReadyEndpoints,
            HopKind::Endpoints,
            Layer::Kubernetes,
            Severity::Broken,
            cause,
            vec![Fix::run(
                "see the EndpointSlices",
                format!(
                    "kubectl get endpointslices{} -l kubernetes.io/service-name={} -o yaml",
                    self.ns,
                    shell_word(&svc_name)
                ),
            )],
            vec![
                WayKind::NodePort,
                WayKind::LocalhostNodePort,
                WayKind::LoadBalancer,
            ],
            "the EndpointSlices have no ready endpoint".to_string(),
        );
    }

    fn port_forward_outcome(&self) -> PfOutcome {
        let probes = &self.f.portforward;
        if probes.is_empty() {
            return PfOutcome::NotProbed;
        }
        let refused: Vec<String> = probes
            .iter()
            .filter(|p| {
                !p.ok && p.error.as_deref().map(classify_pf_error) == Some(PfError::Refused)
            })
            .map(|p| p.pod.clone())
            .collect();
        if let Some(ok) = probes.iter().find(|p| p.ok) {
            return PfOutcome::Ok {
                pod: ok.pod.clone(),
                port: ok.port,
                refused,
            };
        }
        let classified: Vec<(PfError, &super::facts::PortForwardProbe)> = probes
            .iter()
            .map(|p| {
                (
                    p.error
                        .as_deref()
                        .map(classify_pf_error)
                        .unwrap_or(PfError::Other),
                    p,
                )
            })
            .collect();
        for wanted in [
            PfError::Forbidden,
            PfError::Refused,
            PfError::PodGone,
            PfError::Other,
        ] {
            if let Some((_, p)) = classified.iter().find(|(c, _)| *c == wanted) {
                let error = p.error.clone().unwrap_or_else(|| "failed".to_string());
                return match wanted {
                    PfError::Forbidden => PfOutcome::Forbidden { error },
                    PfError::Refused => PfOutcome::Refused {
                        pod: p.pod.clone(),
                        port: p.port,
                        error,
                    },
                    PfError::PodGone => PfOutcome::PodGone {
                        pod: p.pod.clone(),
                        error,
                    },
                    PfError::Other => PfOutcome::Other { error },
                };
            }
        }
        PfOutcome::NotProbed
    }

    fn process(&mut self) {
        let f = self.f;
        self.pf = self.port_forward_outcome();
        let label = match self.first_pod_port() {
            Some(p) => format!("process :{p}"),
            None => "process".to_string(),
        };
        match self.pf.clone() {
            PfOutcome::NotProbed => {
                self.set(
                    HopKind::Process,
                    label,
                    "accepts on localhost inside the pod (port-forward)",
                    "not probed",
                    Status::Unknown,
                );
            }
            PfOutcome::Ok { pod, port, refused } => {
                // An undeclared numeric port that answers is fine.
                if self.status_of(HopKind::TargetPort) == Some(Status::Warning)
                    && matches!(self.port_ref, Some(PortRef::Number(_)))
                    && let Some(hop) = self.hops.get_mut(&HopKind::TargetPort)
                {
                    hop.status = Status::Ok;
                    hop.observed =
                        format!("not declared as a containerPort, but the app answers on {port}");
                }
                if refused.is_empty() {
                    self.set(
                        HopKind::Process,
                        format!("process :{port}"),
                        "accepts on localhost inside the pod (port-forward)",
                        format!("pod {pod} accepted on localhost:{port}"),
                        Status::Ok,
                    );
                } else {
                    self.set(
                        HopKind::Process,
                        format!("process :{port}"),
                        "accepts on localhost inside the pod (port-forward)",
                        format!("pod {pod} accepted; {} refused", join_and(&refused)),
                        Status::Warning,
                    );
                    self.find(
                        FindingKind::SomePodsRefuse,
                        HopKind::Process,
                        Layer::App,
                        Severity::Warning,
                        format!(
                            "Pods {} refuse connections on localhost:{port} while {pod} accepts, so a forward to them fails.",
                            join_and(&refused)
                        ),
                        vec![Fix::run(
                            "compare their logs",
                            format!("kubectl logs{} {}", self.ns, shell_word(&refused[0])),
                        )],
                        vec![WayKind::PortForward],
                        "some pods refuse on localhost".to_string(),
                    );
                }
            }
            PfOutcome::Refused { pod, port, error } => {
                self.set(
                    HopKind::Process,
                    format!("process :{port}"),
                    "accepts on localhost inside the pod (port-forward)",
                    format!("pod {pod}: {}", short_error(&error)),
                    Status::Broken,
                );
                let pod_facts = f.pods.iter().find(|p| p.name == pod);
                let declared = pod_facts.is_some_and(|p| {
                    pod_declares(p, port)
                        || matches!(&self.port_ref, Some(r @ PortRef::Name(_)) if pod_port(p, r) == Some(port))
                });
                let others: Vec<u16> = pod_facts
                    .map(|p| {
                        p.container_ports
                            .iter()
                            .map(|c| c.port)
                            .filter(|c| *c != port)
                            .collect()
                    })
                    .unwrap_or_default();
                let pod_ip = pod_facts.and_then(|p| p.pod_ip.clone());
                if declared {
                    let ip_text = pod_ip.map(|ip| format!(" ({ip})")).unwrap_or_default();
                    self.find(
                        FindingKind::ListensOnPodAddressOnly,
                        HopKind::Process,
                        Layer::App,
                        Severity::Broken,
                        format!(
                            "The app in pod {pod} refuses connections on localhost:{port}, so it most likely listens only on its pod address{ip_text}, which port-forward never dials (Service traffic may still reach it)."
                        ),
                        vec![
                            Fix::say(format!(
                                "make the app listen on 0.0.0.0:{port} (all interfaces) instead of its pod address, e.g. --host 0.0.0.0"
                            )),
                            Fix::run(
                                "see which address it listens on",
                                format!(
                                    "kubectl exec{} {} -- sh -c 'ss -ltn || netstat -ltn'",
                                    self.ns,
                                    shell_word(&pod)
                                ),
                            ),
                        ],
                        vec![WayKind::PortForward],
                        format!("the app listens on its pod address only, not on localhost:{port}"),
                    );
                } else if !others.is_empty() {
                    let others_text = others
                        .iter()
                        .map(u16::to_string)
                        .collect::<Vec<_>>()
                        .join(", ");
                    let best = others[0];
                    self.set_status(HopKind::TargetPort, Status::Broken);
                    if let Some(hop) = self.hops.get_mut(&HopKind::TargetPort) {
                        hop.observed =
                            format!("nothing serves {port}; the pods declare {others_text}");
                    }
                    let mut fixes = Vec::new();
                    if self.is_svc() {
                        let svc_name = f
                            .service
                            .as_ref()
                            .map(|s| s.name.clone())
                            .unwrap_or_default();
                        let svc_port = self.svc_port.as_ref().map(|p| p.port).unwrap_or(0);
                        let patch = serde_json::json!({"spec": {"ports": [{"port": svc_port, "targetPort": best}]}}).to_string();
                        fixes.push(Fix::run(
                            format!("point the Service's targetPort at {best}"),
                            format!(
                                "kubectl patch svc{} {} -p {}",
                                self.ns,
                                shell_word(&svc_name),
                                shell_word(&patch)
                            ),
                        ));
                        fixes.push(Fix::say(format!(
                            "or, if the app really listens on {port}, fix its containerPort and the app's configuration"
                        )));
                    } else {
                        fixes.push(Fix::run(
                            format!("use the port the pod declares ({best})"),
                            format!("kubeway explain{} {}:{best}", self.ns, self.who_plain()),
                        ));
                    }
                    self.find(
                        FindingKind::TargetPortNotServed,
                        HopKind::TargetPort,
                        Layer::Kubernetes,
                        Severity::Broken,
                        format!(
                            "Nothing accepts connections on port {port} in pod {pod}, which declares {others_text}: the target port is wrong."
                        ),
                        fixes,
                        vec![],
                        format!("nothing serves port {port}"),
                    );
                } else {
                    self.find(
                        FindingKind::NothingListens,
                        HopKind::Process,
                        Layer::App,
                        Severity::Broken,
                        format!(
                            "Nothing accepts connections on localhost:{port} inside pod {pod}: the app listens on another port, or only on its pod address."
                        ),
                        vec![
                            Fix::run(
                                "see which ports and addresses the app listens on",
                                format!(
                                    "kubectl exec{} {} -- sh -c 'ss -ltn || netstat -ltn'",
                                    self.ns,
                                    shell_word(&pod)
                                ),
                            ),
                            Fix::say(format!(
                                "make the app listen on 0.0.0.0:{port}, or point the target port at the port it listens on"
                            )),
                        ],
                        vec![WayKind::PortForward],
                        format!("nothing accepts on localhost:{port}"),
                    );
                }
            }
            PfOutcome::Forbidden { error } => {
                self.set(
                    HopKind::Process,
                    label,
                    "accepts on localhost inside the pod (port-forward)",
                    "not reached: port-forward was refused by RBAC",
                    Status::Unknown,
                );
                self.rbac_forbidden(Some(&error));
            }
            PfOutcome::PodGone { pod, error } => {
                self.set(
                    HopKind::Process,
                    label,
                    "accepts on localhost inside the pod (port-forward)",
                    format!("pod {pod}: {}", short_error(&error)),
                    Status::Broken,
                );
                if !self.has(FindingKind::PodsNotReady) {
                    self.find(
                        FindingKind::PortForwardFailed,
                        HopKind::Process,
                        Layer::Kubernetes,
                        Severity::Broken,
                        format!("Port-forward to pod {pod} failed because the pod or its container is gone or not running ({}).", short_error(&error)),
                        vec![Fix::run("see the pod's state", format!("kubectl describe pod{} {}", self.ns, shell_word(&pod)))],
                        vec![WayKind::PortForward],
                        "the pod went away".to_string(),
                    );
                }
            }
            PfOutcome::Other { error } => {
                self.set(
                    HopKind::Process,
                    label,
                    "accepts on localhost inside the pod (port-forward)",
                    format!("not reached: {}", short_error(&error)),
                    Status::Unknown,
                );
                self.set_status(HopKind::ApiServer, Status::Broken);
                if let Some(hop) = self.hops.get_mut(&HopKind::ApiServer) {
                    hop.observed = format!("port-forward failed: {}", short_error(&error));
                }
                self.find(
                    FindingKind::PortForwardFailed,
                    HopKind::ApiServer,
                    Layer::Api,
                    Severity::Broken,
                    format!(
                        "Port-forward through the API server failed: {}.",
                        trim_period(&short_error(&error))
                    ),
                    vec![Fix::run(
                        "retry with kubectl to see its view",
                        format!(
                            "kubectl port-forward{} {} {}",
                            self.ns,
                            self.who_plain(),
                            self.first_pod_port()
                                .map(|p| format!("{}:{p}", local_port(p)))
                                .unwrap_or_else(|| "8080:PORT".to_string())
                        ),
                    )],
                    vec![WayKind::PortForward],
                    "port-forward failed".to_string(),
                );
            }
        }
    }

    fn rbac(&mut self) {
        let r = &self.f.rbac;
        if self.has(FindingKind::PortForwardForbidden) {
            return;
        }
        let observed = format!(
            "get: {}, create: {}",
            r.get_portforward, r.create_portforward
        );
        let checked = "may get and create pods/portforward";
        let pf_ok = matches!(self.pf, PfOutcome::Ok { .. });
        match (r.get_portforward, r.create_portforward) {
            (Tri::No, Tri::No) if !pf_ok => {
                self.rbac_forbidden(None);
            }
            (Tri::Yes, Tri::Yes) => self.set(
                HopKind::Rbac,
                "RBAC pods/portforward",
                checked,
                observed,
                Status::Ok,
            ),
            (Tri::No, _) | (_, Tri::No) => {
                self.set(
                    HopKind::Rbac,
                    "RBAC pods/portforward",
                    checked,
                    observed,
                    Status::Warning,
                );
                let (cause, verb) = if r.get_portforward == Tri::No {
                    (
                        format!(
                            "You may not get pods/portforward in namespace {}, which the WebSocket transports (kubectl 1.31+'s default) need; legacy SPDY (create) still works.",
                            self.f.namespace
                        ),
                        "get",
                    )
                } else {
                    (
                        format!(
                            "You may not create pods/portforward in namespace {}, which legacy SPDY needs, and API servers from 1.35 on check for WebSockets too.",
                            self.f.namespace
                        ),
                        "create",
                    )
                };
                self.find(
                    FindingKind::PortForwardVerbMissing,
                    HopKind::Rbac,
                    Layer::Api,
                    Severity::Warning,
                    cause,
                    vec![Fix::run(
                        format!("ask for a Role that grants {verb} as well"),
                        format!(
                            "kubectl create role portforward{} --verb=get,create --resource=pods/portforward",
                            self.ns
                        ),
                    )],
                    vec![WayKind::PortForward],
                    format!("RBAC lacks {verb} on pods/portforward"),
                );
            }
            _ => {
                let status = if pf_ok { Status::Ok } else { Status::Unknown };
                let observed = if pf_ok {
                    "port-forward worked".to_string()
                } else {
                    "not checked".to_string()
                };
                self.set(
                    HopKind::Rbac,
                    "RBAC pods/portforward",
                    checked,
                    observed,
                    status,
                );
            }
        }
    }

    fn rbac_forbidden(&mut self, error: Option<&str>) {
        let r = &self.f.rbac;
        let ns = &self.f.namespace;
        let verbs = match (r.get_portforward, r.create_portforward) {
            (Tri::No, Tri::No) => "neither get nor create".to_string(),
            (Tri::No, _) => "not get".to_string(),
            (_, Tri::No) => "not create".to_string(),
            _ => "not get or create".to_string(),
        };
        let mut cause = format!(
            "RBAC lets you {verbs} pods/portforward in namespace {ns}: WebSocket port-forward (kubectl 1.31+) needs get, legacy SPDY needs create, and API servers from 1.35 on check both."
        );
        if let Some(e) = error {
            cause = format!(
                "The API server refused the port-forward ({}): RBAC lets you {verbs} pods/portforward in namespace {ns}, and WebSocket port-forward needs get while legacy SPDY needs create.",
                short_error(e)
            );
        }
        self.set(
            HopKind::Rbac,
            "RBAC pods/portforward",
            "may get and create pods/portforward",
            format!(
                "get: {}, create: {}",
                r.get_portforward, r.create_portforward
            ),
            Status::Broken,
        );
        let ns_flag = self.ns.clone();
        self.find(
            FindingKind::PortForwardForbidden,
            HopKind::Rbac,
            Layer::Api,
            Severity::Broken,
            cause,
            vec![
                Fix::run(
                    "check what you may do",
                    format!("kubectl auth can-i create pods/portforward{ns_flag} && kubectl auth can-i get pods/portforward{ns_flag}"),
                ),
                Fix::run(
                    "have an admin grant it with a Role",
                    format!("kubectl create role portforward{ns_flag} --verb=get,create --resource=pods/portforward"),
                ),
                Fix::run(
                    "and bind it to you",
                    format!("kubectl create rolebinding portforward{ns_flag} --role=portforward --user=YOU"),
                ),
            ],
            vec![WayKind::PortForward],
            "RBAC denies pods/portforward".to_string(),
        );
    }

    /// Whether the Kubernetes side of a direct way is healthy (so a failed probe is the host's or
    /// the node's doing).
    fn chain_ok(&self) -> bool {
        self.ready_endpoints > 0
            && self.status_of(HopKind::TargetPort) != Some(Status::Broken)
            && self.status_of(HopKind::Service) == Some(Status::Ok)
    }

    fn direct(&mut self) {
        let f = self.f;
        let Some(svc) = &f.service else { return };
        let boundary = self.det.and_then(boundary_label);
        let node_port = self.svc_port.as_ref().and_then(|p| p.node_port);
        let chain_ok = self.chain_ok();
        let reach = self
            .det
            .map(|d| d.node_reachable.value)
            .unwrap_or(Tri::Unknown);
        let is_cluster_ip = svc.type_ == ServiceType::ClusterIp;

        // The driver boundary.
        if let Some(b) = &boundary {
            let answered = f.node_probes.iter().find(|p| p.answered == Tri::Yes);
            let tried = f.node_probes.iter().any(|p| p.answered == Tri::No);
            let first_addr = f.node_probes.first().map(|p| p.address.clone());
            let (status, observed) = if let Some(p) = answered {
                (Status::Ok, format!("this host reaches node {}", p.address))
            } else if is_cluster_ip && node_port.is_none() {
                (
                    Status::Skipped,
                    format!(
                        "not crossed by a ClusterIP Service (node addresses routable from this host: {reach})"
                    ),
                )
            } else if reach == Tri::No || (tried && chain_ok && reach != Tri::Yes) {
                let at = first_addr.map(|a| format!(" {a}")).unwrap_or_default();
                (
                    Status::Broken,
                    format!("no route from this host to node{at}"),
                )
            } else if reach == Tri::Yes {
                (
                    Status::Ok,
                    "node addresses are routable from this host".to_string(),
                )
            } else {
                (
                    Status::Unknown,
                    "not known whether this host routes to node addresses".to_string(),
                )
            };
            self.set(
                HopKind::DriverBoundary,
                b.clone(),
                "this host routes to node addresses",
                observed,
                status,
            );
        }

        // NodePort on node addresses.
        if let Some(np) = node_port {
            let answered = f.node_probes.iter().find(|p| p.answered == Tri::Yes);
            let failed = f.node_probes.iter().find(|p| p.answered == Tri::No);
            let boundary_broken = self.status_of(HopKind::DriverBoundary) == Some(Status::Broken);
            let label = format!("NodePort {np}");
            if let Some(p) = answered {
                self.set(
                    HopKind::NodePort,
                    label,
                    "node:nodePort answers from this host",
                    format!("{} answered", host_port(&p.address, p.port)),
                    Status::Ok,
                );
            } else if boundary_broken {
                self.set(
                    HopKind::NodePort,
                    label,
                    "node:nodePort answers from this host",
                    "not reachable: behind the boundary",
                    Status::Skipped,
                );
                self.boundary_finding(np);
            } else if let Some(p) = failed {
                let detail = p.detail.clone().unwrap_or_else(|| "no answer".to_string());
                let at = host_port(&p.address, p.port);
                if chain_ok {
                    self.set(
                        HopKind::NodePort,
                        label,
                        "node:nodePort answers from this host",
                        format!("{at}: {}", one_line(&detail)),
                        Status::Broken,
                    );
                    if boundary.is_none() && reach != Tri::Yes {
                        self.boundary_finding(np);
                    } else {
                        self.push_env(
                            FindingKind::NodePortUnanswered,
                            HopKind::NodePort,
                            Layer::Node,
                            format!(
                                "Node address {} is reachable but NodePort {np} does not answer there ({}), although the Service has ready endpoints.",
                                p.address,
                                one_line(&detail)
                            ),
                            vec![
                                Fix::run("use a forward instead", self.open_command()),
                                Fix::say("check the node's firewall and kube-proxy (its logs and --nodeport-addresses)"),
                            ],
                            vec![WayKind::NodePort],
                            format!("NodePort {np} does not answer on the node"),
                        );
                    }
                } else {
                    self.set(
                        HopKind::NodePort,
                        label,
                        "node:nodePort answers from this host",
                        format!("{at}: {} (no ready endpoint behind it)", one_line(&detail)),
                        Status::Unknown,
                    );
                }
            } else {
                self.set(
                    HopKind::NodePort,
                    label,
                    "node:nodePort answers from this host",
                    "not probed",
                    Status::Unknown,
                );
            }
            let address = f
                .node_probes
                .iter()
                .find(|p| p.answered == Tri::Yes)
                .or(f.node_probes.first())
                .map(|p| host_port(&p.address, np));
            let mut hops = vec![HopKind::Host];
            if boundary.is_some() {
                hops.push(HopKind::DriverBoundary);
            }
            hops.extend([
                HopKind::NodePort,
                HopKind::Service,
                HopKind::Selector,
                HopKind::Endpoints,
                HopKind::Pods,
                HopKind::TargetPort,
            ]);
            let proven = answered.is_some();
            self.add_way(
                WayKind::NodePort,
                match &address {
                    Some(a) => format!("NodePort {a}"),
                    None => format!("NodePort {np} on a node address"),
                },
                address.clone(),
                &hops,
                proven,
                address.map(|a| format!("curl http://{a}/")),
            );

            // localhost:nodePort.
            let localhost = self
                .det
                .map(|d| d.nodeports_on_localhost.value)
                .unwrap_or(Tri::Unknown);
            if f.localhost_probe.is_some() || localhost == Tri::Yes {
                let label = format!("localhost:{np}");
                let probe = f.localhost_probe.as_ref();
                let proven = probe.is_some_and(|p| p.answered == Tri::Yes);
                match probe.map(|p| p.answered) {
                    Some(Tri::Yes) => self.set(
                        HopKind::LocalhostNodePort,
                        label.clone(),
                        "localhost:nodePort answers",
                        "answered",
                        Status::Ok,
                    ),
                    Some(Tri::No) if chain_ok => {
                        let detail = probe
                            .and_then(|p| p.detail.clone())
                            .unwrap_or_else(|| "no answer".to_string());
                        self.set(
                            HopKind::LocalhostNodePort,
                            label.clone(),
                            "localhost:nodePort answers",
                            one_line(&detail),
                            Status::Broken,
                        );
                        if localhost == Tri::Yes {
                            let env = self
                                .det
                                .map(|d| d.provider.display_name())
                                .unwrap_or("the environment");
                            self.push_env(
                                FindingKind::LocalhostNodePortUnanswered,
                                HopKind::LocalhostNodePort,
                                Layer::Driver,
                                format!(
                                    "{env} normally publishes NodePorts on localhost, but localhost:{np} does not answer ({}).",
                                    one_line(&detail)
                                ),
                                vec![Fix::run("use a forward instead", self.open_command())],
                                vec![WayKind::LocalhostNodePort],
                                format!("localhost:{np} does not answer"),
                            );
                        }
                    }
                    Some(Tri::No) => self.set(
                        HopKind::LocalhostNodePort,
                        label.clone(),
                        "localhost:nodePort answers",
                        "no answer (no ready endpoint behind it)",
                        Status::Unknown,
                    ),
                    _ => self.set(
                        HopKind::LocalhostNodePort,
                        label.clone(),
                        "localhost:nodePort answers",
                        "expected by the environment; not probed",
                        Status::Unknown,
                    ),
                }
                self.add_way(
                    WayKind::LocalhostNodePort,
                    label.clone(),
                    Some(label.clone()),
                    &[
                        HopKind::Host,
                        HopKind::LocalhostNodePort,
                        HopKind::Service,
                        HopKind::Selector,
                        HopKind::Endpoints,
                        HopKind::Pods,
                        HopKind::TargetPort,
                    ],
                    proven,
                    Some(format!("curl http://{label}/")),
                );
            }
        } else if self.has(FindingKind::ClusterIpNotNodePort) {
            let mut hops = vec![HopKind::Host];
            if boundary.is_some() {
                hops.push(HopKind::DriverBoundary);
            }
            hops.extend([HopKind::NodePort, HopKind::Service]);
            self.add_way(
                WayKind::NodePort,
                "NodePort (none: ClusterIP)".to_string(),
                None,
                &hops,
                false,
                None,
            );
        }

        // LoadBalancer.
        if svc.type_ == ServiceType::LoadBalancer || self.has(FindingKind::NotLoadBalancer) {
            let port = self.svc_port.as_ref().map(|p| p.port).unwrap_or(0);
            let answered = f.lb_probes.iter().any(|p| p.answered == Tri::Yes);
            if !svc.lb_ingress.is_empty()
                && !answered
                && f.lb_probes.iter().any(|p| p.answered == Tri::No)
                && chain_ok
            {
                let addr = host_port(&svc.lb_ingress[0], port);
                let env = self
                    .det
                    .map(boundary_subject)
                    .unwrap_or_else(|| "the network".to_string());
                self.push_env(
                    FindingKind::LoadBalancerUnreachable,
                    HopKind::LbIngress,
                    Layer::Driver,
                    format!("LoadBalancer address {addr} does not answer from this host: {env} is in between."),
                    vec![
                        Fix::run("make LoadBalancer addresses work from this host", "kubeway tunnel"),
                        Fix::run("or get a working URL through a forward", self.open_command()),
                    ],
                    vec![WayKind::LoadBalancer],
                    format!("LoadBalancer {addr} is not reachable from this host"),
                );
            }
            let address = svc.lb_ingress.first().map(|a| host_port(a, port));
            self.add_way(
                WayKind::LoadBalancer,
                match &address {
                    Some(a) => format!("LoadBalancer {a}"),
                    None => "LoadBalancer (no address)".to_string(),
                },
                address.clone(),
                &[
                    HopKind::Host,
                    HopKind::LbIngress,
                    HopKind::Service,
                    HopKind::Selector,
                    HopKind::Endpoints,
                    HopKind::Pods,
                    HopKind::TargetPort,
                ],
                answered,
                address.map(|a| format!("curl http://{a}/")),
            );
        }
    }

    fn boundary_finding(&mut self, np: u16) {
        if self.has(FindingKind::BoundaryBlocksNodePort) {
            return;
        }
        let subject = self
            .det
            .map(boundary_subject)
            .unwrap_or_else(|| "the network between this host and the node".to_string());
        let node = self
            .f
            .node_probes
            .first()
            .map(|p| format!("node address {}", p.address))
            .unwrap_or_else(|| "node addresses".to_string());
        let mut fixes = vec![
            Fix::run(
                "open it through a forward that goes around the boundary",
                self.open_command(),
            ),
            Fix::run("or forward a local port", self.forward_command()),
        ];
        if self.provider == Some(Provider::Minikube) && self.is_svc() {
            fixes.push(Fix::run(
                "or let minikube tunnel it",
                format!(
                    "minikube service{} {} --url",
                    self.ns,
                    shell_word(&self.f.target.name)
                ),
            ));
        }
        let cause = format!(
            "{} is in between: this host has no route to {node}, so NodePort {np} cannot be dialled directly.",
            sentence(&subject)
        );
        let short = self
            .det
            .map(boundary_subject_short)
            .unwrap_or_else(|| "the network".to_string());
        self.push_env(
            FindingKind::BoundaryBlocksNodePort,
            HopKind::DriverBoundary,
            Layer::Driver,
            cause,
            fixes,
            vec![WayKind::NodePort],
            format!("direct NodePort is blocked by {short}"),
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn push_env(
        &mut self,
        kind: FindingKind,
        hop: HopKind,
        layer: Layer,
        cause: String,
        fixes: Vec<Fix>,
        ways: Vec<WayKind>,
        aside: String,
    ) {
        self.find(
            kind,
            hop,
            layer,
            Severity::Broken,
            cause,
            fixes,
            ways,
            aside,
        );
        if let Some(d) = self.drafts.last_mut() {
            d.environmental = true;
        }
    }

    fn add_way(
        &mut self,
        kind: WayKind,
        label: String,
        address: Option<String>,
        hops: &[HopKind],
        proven: bool,
        command: Option<String>,
    ) {
        let present: Vec<HopKind> = hops
            .iter()
            .copied()
            .filter(|h| self.hops.contains_key(h))
            .collect();
        let status = if proven {
            Status::Ok
        } else {
            way_status(present.iter().filter_map(|h| self.status_of(*h)))
        };
        self.ways.push(Way {
            kind,
            label,
            address,
            hops: present.iter().map(|h| h.id().to_string()).collect(),
            status,
            command,
        });
    }

    fn port_forward_way(&mut self) {
        let mut hops = vec![
            HopKind::Host,
            HopKind::Context,
            HopKind::ApiServer,
            HopKind::Rbac,
        ];
        if self.f.target.kind != TargetKind::Pod {
            hops.push(HopKind::Selector);
        }
        hops.extend([HopKind::Pods, HopKind::TargetPort, HopKind::Process]);
        let proven = matches!(self.pf, PfOutcome::Ok { .. });
        let command = Some(self.forward_command());
        self.add_way(
            WayKind::PortForward,
            "port-forward via the API server".to_string(),
            None,
            &hops,
            proven,
            command,
        );
    }

    fn pods_view(&self) -> Vec<PodView> {
        let probes = &self.f.portforward;
        self.f
            .pods
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let port = self.pod_ports.get(i).copied().flatten();
                let named_missing =
                    matches!(self.port_ref, Some(PortRef::Name(_))) && port.is_none();
                let status = if !p.ready || named_missing {
                    Status::Broken
                } else {
                    Status::Ok
                };
                let process = match probes.iter().find(|pr| pr.pod == p.name) {
                    Some(pr) if pr.ok => Status::Ok,
                    Some(pr) => match pr.error.as_deref().map(classify_pf_error) {
                        Some(PfError::Refused) | Some(PfError::PodGone) => Status::Broken,
                        _ => Status::Unknown,
                    },
                    None => Status::Unknown,
                };
                PodView {
                    name: p.name.clone(),
                    ip: p.pod_ip.clone(),
                    ready: p.ready,
                    port,
                    status,
                    detail: pod_detail(p),
                    process,
                }
            })
            .collect()
    }

    fn environment(&self) -> EnvironmentSummary {
        match self.det {
            Some(d) => EnvironmentSummary {
                provider: Some(d.provider),
                display: environment_display(d),
                boundary: boundary_label(d),
                host: Some(d.host),
                node_reachable: d.node_reachable.value,
                nodeports_on_localhost: d.nodeports_on_localhost.value,
                load_balancer: Some(d.load_balancer.support),
                strategy: Some(d.strategy.clone()),
            },
            None => EnvironmentSummary {
                provider: self.provider,
                display: match self.provider {
                    Some(p) => format!("{} (guessed from the context name)", p.display_name()),
                    None => "not detected".to_string(),
                },
                boundary: None,
                host: None,
                node_reachable: Tri::Unknown,
                nodeports_on_localhost: Tri::Unknown,
                load_balancer: None,
                strategy: None,
            },
        }
    }

    fn run(mut self) -> PathReport {
        self.host();
        let go = self.api() && self.lookup() && (!self.is_svc() || self.service());
        if go {
            self.load_balancer();
            self.selector_and_pods();
            self.target_port();
            self.endpoints();
            self.process();
            self.rbac();
            if self.is_svc() {
                self.direct();
            }
        }
        if !self.hops.contains_key(&HopKind::Rbac) {
            let observed = format!(
                "get: {}, create: {}",
                self.f.rbac.get_portforward, self.f.rbac.create_portforward
            );
            self.set(
                HopKind::Rbac,
                "RBAC pods/portforward",
                "may get and create pods/portforward",
                observed,
                Status::Unknown,
            );
        }
        self.port_forward_way();
        self.finish()
    }

    fn matters(&self, way: WayKind) -> bool {
        let applicable = self.ways.iter().any(|w| self.intent_matches(w.kind));
        !applicable || self.intent_matches(way)
    }

    fn intent_matches(&self, way: WayKind) -> bool {
        match self.f.intent {
            Intent::Any => true,
            Intent::Direct => way.is_direct(),
            Intent::NodePort => matches!(way, WayKind::NodePort | WayKind::LocalhostNodePort),
            Intent::LoadBalancer => way == WayKind::LoadBalancer,
            Intent::PortForward => way == WayKind::PortForward,
        }
    }

    fn finish(mut self) -> PathReport {
        // Severity: environmental findings are warnings while another way that matters works or
        // may work; findings about ways that do not matter are warnings.
        let ways = self.ways.clone();
        for i in 0..self.drafts.len() {
            let d = &self.drafts[i];
            if d.finding.severity != Severity::Broken {
                continue;
            }
            let own = d.finding.ways.clone();
            let touches_matter = own.is_empty() || own.iter().any(|w| self.matters(*w));
            let other_alive = ways.iter().any(|w| {
                !own.contains(&w.kind)
                    && self.matters(w.kind)
                    && matches!(w.status, Status::Ok | Status::Unknown)
            });
            let demote = !touches_matter || (d.environmental && other_alive);
            if demote {
                self.drafts[i].finding.severity = Severity::Warning;
                let hop = self.drafts[i].finding.hop.clone();
                if self.drafts[i].environmental
                    && let Some(h) = self
                        .hops
                        .values_mut()
                        .find(|h| h.id == hop && h.status == Status::Broken)
                {
                    h.status = Status::Warning;
                }
            }
        }
        // A way blocked only by the environment while another way works is a warning, not a
        // failure: it is expected here, and the verdict says which way to use instead.
        for d in &self.drafts {
            if d.environmental && d.finding.severity == Severity::Warning {
                for w in &mut self.ways {
                    if d.finding.ways.contains(&w.kind) && w.status == Status::Broken {
                        w.status = Status::Warning;
                    }
                }
            }
        }
        let mut drafts = self.drafts.clone();
        drafts.sort_by(|a, b| {
            b.finding
                .severity
                .cmp(&a.finding.severity)
                .then(a.finding.kind.cmp(&b.finding.kind))
        });
        let works_via: Vec<WayKind> = self
            .ways
            .iter()
            .filter(|w| w.status == Status::Ok)
            .map(|w| w.kind)
            .collect();
        let working_matter: Vec<&Way> = self
            .ways
            .iter()
            .filter(|w| w.status == Status::Ok && self.matters(w.kind))
            .collect();
        let any_broken = drafts
            .iter()
            .any(|d| d.finding.severity == Severity::Broken);
        let health = if any_broken {
            if working_matter.is_empty() {
                Health::Broken
            } else {
                Health::Degraded
            }
        } else if !working_matter.is_empty() {
            Health::Healthy
        } else if self
            .ways
            .iter()
            .any(|w| self.matters(w.kind) && w.status == Status::Broken)
        {
            Health::Broken
        } else {
            Health::Unknown
        };
        let primary = drafts
            .iter()
            .find(|d| d.finding.severity == Severity::Broken)
            .or_else(|| {
                drafts
                    .iter()
                    .find(|d| d.finding.severity == Severity::Warning)
            })
            .cloned();
        let via = join_and(
            &working_matter
                .iter()
                .map(|w| match w.kind {
                    WayKind::PortForward => "port-forward".to_string(),
                    _ => w.label.clone(),
                })
                .collect::<Vec<_>>(),
        );
        let who = self.who.clone();
        let summary = match (health, &primary) {
            (Health::Broken, Some(p)) => p.finding.cause.clone(),
            (Health::Broken, None) => format!("No way to {who} works."),
            (Health::Degraded, Some(p)) => {
                format!(
                    "{}; {who} is still reachable via {via}.",
                    trim_period(&p.finding.cause)
                )
            }
            (Health::Healthy, Some(p)) => format!("{who} is reachable via {via}; {}.", p.aside),
            (Health::Healthy | Health::Degraded, None) => format!("{who} is reachable via {via}."),
            (Health::Unknown, Some(p)) => {
                format!("No way to {who} could be checked end to end; {}.", p.aside)
            }
            (Health::Unknown, None) => format!("No way to {who} could be checked end to end."),
        };
        let environment = self.environment();
        let pods = self.pods_view();
        let f = self.f;
        PathReport {
            target: f.target.clone(),
            namespace: f.namespace.clone(),
            context: f.context.name.clone(),
            environment,
            hops: self.hops.into_values().collect(),
            ways: self.ways,
            pods,
            verdict: Diagnosis {
                health,
                summary,
                primary: primary.map(|d| d.finding),
                findings: drafts.into_iter().map(|d| d.finding).collect(),
                works_via,
            },
        }
    }
}

fn boundary_subject_short(det: &Detection) -> String {
    match boundary_label(det) {
        Some(label) => label,
        None => "the network".to_string(),
    }
}

/// The worst status among hops: broken > unknown > ok; warnings and skipped hops do not block.
fn way_status(statuses: impl Iterator<Item = Status>) -> Status {
    let mut worst = Status::Ok;
    let mut any = false;
    for s in statuses {
        any = true;
        match s {
            Status::Broken => return Status::Broken,
            Status::Unknown => worst = Status::Unknown,
            Status::Ok | Status::Warning | Status::Skipped => {}
        }
    }
    if any { worst } else { Status::Unknown }
}

fn default_label(kind: HopKind) -> &'static str {
    match kind {
        HopKind::Host => "your machine",
        HopKind::Context => "context",
        HopKind::DriverBoundary => "driver boundary",
        HopKind::NodePort => "NodePort",
        HopKind::LocalhostNodePort => "localhost NodePort",
        HopKind::LbIngress => "LoadBalancer",
        HopKind::Service => "Service",
        HopKind::Selector => "selector",
        HopKind::Endpoints => "EndpointSlice",
        HopKind::Pods => "Pods",
        HopKind::TargetPort => "target port",
        HopKind::Process => "process",
        HopKind::ApiServer => "API server",
        HopKind::Rbac => "RBAC pods/portforward",
    }
}

/// Why a pod is not ready, in words.
fn not_ready_words(pod: &PodFacts) -> String {
    let mut parts = Vec::new();
    if let Some(reason) = &pod.waiting_reason {
        parts.push(format!("it is waiting in {reason}"));
    } else if !pod.phase.is_empty() && pod.phase != "Running" {
        parts.push(format!("it is {}", pod.phase));
    } else {
        parts.push("its readiness check fails".to_string());
    }
    if pod.restarts > 0 {
        parts.push(format!(
            "after {}",
            plural(pod.restarts as usize, "restart", "restarts")
        ));
    }
    let mut text = parts.join(" ");
    if let Some(msg) = &pod.not_ready_message {
        text.push_str(&format!(" ({})", trim_period(&one_line(msg))));
    }
    text
}

/// An error on one line, without the noisy parts.
fn one_line(text: &str) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let clipped: String = joined.chars().take(200).collect();
    if clipped.chars().count() < joined.chars().count() {
        format!("{clipped}…")
    } else {
        clipped
    }
}

/// The informative tail of a port-forward error (`connection refused`), whole when short.
fn short_error(text: &str) -> String {
    let line = one_line(text);
    let lower = line.to_ascii_lowercase();
    if lower.contains("connection refused") {
        if let Some(pos) = lower.find("failed to connect to localhost") {
            // "failed to connect to localhost:8080 inside namespace …: connection refused"
            let tail = line.get(pos..).unwrap_or(&line);
            let head = tail.split(" inside namespace").next().unwrap_or(tail);
            return format!("{head}: connection refused");
        }
        return "connection refused".to_string();
    }
    line
}

/// See [`super::explain`].
pub(super) fn explain(facts: &ExplainFacts) -> PathReport {
    Engine::new(facts).run()
}
