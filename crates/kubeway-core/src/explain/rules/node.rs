//! Node-layer rules: NodePorts on node addresses and on localhost, dialled from the host; the
//! direct ways that use them.

use super::*;

impl Engine<'_> {
    pub(super) fn direct(&mut self) {
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

        self.boundary_hop(
            boundary.as_deref(),
            node_port,
            chain_ok,
            reach,
            is_cluster_ip,
        );

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
                        format!("{at}: {} ({})", one_line(&detail), self.chain_reason()),
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
                        format!("no answer ({})", self.chain_reason()),
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

        self.lb_reachability(chain_ok);
    }

    /// Whether the Kubernetes side of a direct way is healthy (so a failed probe is the host's or
    /// the node's doing).
    pub(super) fn chain_ok(&self) -> bool {
        self.ready_endpoints > 0
            && !self.has(FindingKind::ListensOnLocalhostOnly)
            && self.status_of(HopKind::TargetPort) != Some(Status::Broken)
            && self.status_of(HopKind::Service) == Some(Status::Ok)
    }

    /// Why the Kubernetes side of a direct way is not known to work, for a failed probe's words.
    pub(super) fn chain_reason(&self) -> &'static str {
        if self.has(FindingKind::ListensOnLocalhostOnly) {
            "the app refuses on its pod IP"
        } else if self.ready_endpoints == 0 {
            "no ready endpoint behind it"
        } else if self.status_of(HopKind::TargetPort) == Some(Status::Broken) {
            "the target port is wrong"
        } else {
            "the Service is not right"
        }
    }
}
