//! Driver-layer rules: the virtualization boundary between the host and the node, and the
//! LoadBalancer implementation and addresses the environment provides.

use super::*;

impl Engine<'_> {
    /// The driver boundary: does this host route to node addresses?
    pub(super) fn boundary_hop(
        &mut self,
        boundary: Option<&str>,
        node_port: Option<u16>,
        chain_ok: bool,
        reach: Tri,
        is_cluster_ip: bool,
    ) {
        let f = self.f;
        // The driver boundary.
        if let Some(b) = boundary {
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
                b.to_string(),
                "this host routes to node addresses",
                observed,
                status,
            );
        }
    }

    /// The LoadBalancer address answers from this host (the boundary or the LB implementation
    /// may be in between).
    pub(super) fn lb_reachability(&mut self, chain_ok: bool) {
        let f = self.f;
        let Some(svc) = &f.service else { return };
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

    pub(super) fn load_balancer(&mut self) {
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

    pub(super) fn boundary_finding(&mut self, np: u16) {
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
}
