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
    ApiFailure, ApiFailureKind, ConditionFacts, ExplainFacts, Intent, PodFacts, PodIpProbe,
    PortForwardProbe, ServicePortFacts, ServiceType, WorkloadSummary, pod_declares, pod_port,
    service_port,
};
mod api;
mod app;
mod driver;
mod host;
mod kubernetes;
mod node;

use super::words::{
    boundary_label, boundary_subject, environment_display, label_text, lb_commands, near_names,
    ns_flag, provider_from_context, refresh_commands, selector_near_misses, shell_word,
    start_commands,
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
                let pf = probes.iter().find(|pr| pr.pod == p.name);
                let process = match pf {
                    Some(pr) if pr.ok => Status::Ok,
                    Some(pr) => match pr.error.as_deref().map(classify_pf_error) {
                        Some(PfError::Refused) | Some(PfError::PodGone) => Status::Broken,
                        _ => Status::Unknown,
                    },
                    None => Status::Unknown,
                };
                let ip_probe = self.f.pod_ip_probes.iter().find(|pr| pr.pod == p.name);
                let pod_ip = match ip_probe.map(|i| i.answered) {
                    Some(Tri::Yes) => Status::Ok,
                    Some(Tri::No) => Status::Broken,
                    _ => Status::Unknown,
                };
                let mut said = Vec::new();
                if let Some(pr) = pf {
                    said.push(if pr.ok {
                        format!("localhost:{} accepts", pr.port)
                    } else {
                        format!(
                            "localhost:{}: {}",
                            pr.port,
                            short_error(pr.error.as_deref().unwrap_or("failed"))
                        )
                    });
                }
                if let Some(i) = ip_probe {
                    let at = p
                        .pod_ip
                        .as_deref()
                        .map(|ip| host_port(ip, i.port))
                        .unwrap_or_else(|| format!("pod IP:{}", i.port));
                    said.push(match i.answered {
                        Tri::Yes => format!("{at} accepts"),
                        Tri::No => format!(
                            "{at} refuses{}",
                            i.detail
                                .as_deref()
                                .map(|d| format!(" ({})", short_error(d)))
                                .unwrap_or_default()
                        ),
                        Tri::Unknown => format!(
                            "{at} not checked{}",
                            i.detail
                                .as_deref()
                                .map(|d| format!(" ({})", short_error(d)))
                                .unwrap_or_default()
                        ),
                    });
                }
                PodView {
                    name: p.name.clone(),
                    ip: p.pod_ip.clone(),
                    ready: p.ready,
                    port,
                    status,
                    detail: pod_detail(p),
                    process,
                    pod_ip,
                    process_detail: said.join("; "),
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
        let go = self.context()
            && self.api_server()
            && self.target_readable()
            && self.lookup()
            && (!self.is_svc() || self.service());
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
        self.api_request_warnings();
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
        // A way that a broken, non-environmental finding names is broken too, unless proven.
        for d in &self.drafts {
            if d.finding.severity == Severity::Broken && !d.environmental {
                for w in &mut self.ways {
                    if d.finding.ways.contains(&w.kind) && w.status != Status::Ok {
                        w.status = Status::Broken;
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
            intent: f.intent,
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
