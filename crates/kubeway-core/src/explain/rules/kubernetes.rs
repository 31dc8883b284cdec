//! Kubernetes-layer rules: the target object exists, the Service's type and port, the selector
//! and the workloads one level up, the pods' readiness (with the details of why not), the target
//! port on the pods, and the EndpointSlices.

use super::*;

impl Engine<'_> {
    pub(super) fn lookup(&mut self) -> bool {
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
        if f.namespace_found == Tri::No {
            return self.namespace_missing();
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
    pub(super) fn service(&mut self) -> bool {
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

    pub(super) fn cluster_ip_not_node_port(&mut self, asked: Option<&str>) {
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

    pub(super) fn selector_and_pods(&mut self) {
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
                self.selector_matches_nothing(&sel);
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
                let problem = f
                    .workload
                    .as_ref()
                    .and_then(|w| w.problems.first())
                    .map(condition_words);
                let (cause, fix) = if replicas == Some(0) {
                    (
                        format!("{} is scaled to 0 replicas, so it has no pods.", self.who),
                        Fix::run(
                            "scale it up",
                            format!("kubectl scale{} {} --replicas=1", self.ns, self.who_plain()),
                        ),
                    )
                } else {
                    let why = match problem {
                        Some(p) => format!("its controller reports {p}"),
                        None => "its controller could not create them".to_string(),
                    };
                    (
                        format!(
                            "{} should run {} with {sel_text} but has none: {why}.",
                            self.who,
                            plural(replicas.unwrap_or(1) as usize, "pod", "pods")
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
            self.no_pod_ready(&not_ready);
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

    pub(super) fn target_port(&mut self) {
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

    pub(super) fn endpoints(&mut self) {
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
        let explained = self.has(FindingKind::TargetPortNameMissing)
            || self.drafts.iter().any(|d| {
                d.finding.severity == Severity::Broken
                    && (d.finding.hop == HopKind::Selector.id()
                        || d.finding.hop == HopKind::Pods.id())
            });
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

    /// The namespace does not exist: say so, rather than "no Service named … in it".
    fn namespace_missing(&mut self) -> bool {
        let f = self.f;
        let near = near_names(&f.namespace, &f.namespaces);
        let mut cause = format!("Namespace {} does not exist", f.namespace);
        if !near.is_empty() {
            cause.push_str(&format!(" (did you mean {}?)", join_and(&near)));
        }
        cause.push('.');
        let mut fixes = vec![Fix::run(
            "list the namespaces that exist",
            "kubectl get namespaces".to_string(),
        )];
        if let Some(best) = near.first() {
            fixes.push(Fix::run(
                "explain in the namespace you probably meant",
                format!(
                    "kubeway explain -n {} {}",
                    shell_word(best),
                    shell_word(&f.target.to_string())
                ),
            ));
        }
        let hop = match f.target.kind {
            TargetKind::Service => HopKind::Service,
            TargetKind::Pod => HopKind::Pods,
            _ => HopKind::Selector,
        };
        self.set(
            hop,
            format!("namespace {}", f.namespace),
            "the namespace exists",
            "no such namespace",
            Status::Broken,
        );
        self.find(
            FindingKind::NamespaceNotFound,
            hop,
            Layer::Kubernetes,
            Severity::Broken,
            cause,
            fixes,
            vec![],
            format!("namespace {} does not exist", f.namespace),
        );
        self.fill_unknown("the namespace does not exist");
        false
    }

    /// A Service's selector matches no pod. Look one level up before blaming labels: a
    /// workload that would make such pods (scaled to 0, or failing to create them), pods with
    /// those labels in another namespace, then pods whose labels are a near miss. A fix never
    /// relabels a pod a controller owns (the controller would replace or orphan it): it changes
    /// the Service's selector or the workload's template.
    pub(super) fn selector_matches_nothing(&mut self, sel: &BTreeMap<String, String>) {
        let f = self.f;
        let svc = f.target.name.clone();
        let svc_word = shell_word(&svc);
        let sel_text = label_text(sel);
        self.set(
            HopKind::Selector,
            format!("selector {sel_text}"),
            "the selector matches pods",
            "matches no pods",
            Status::Broken,
        );
        let owners: Vec<&WorkloadSummary> = f
            .workloads
            .iter()
            .filter(|w| selects(sel, &w.template_labels))
            .collect();
        if let Some(w) = owners.iter().find(|w| w.replicas == Some(0)) {
            let who = format!("{}/{}", w.kind, w.name);
            self.find(
                FindingKind::WorkloadScaledToZero,
                HopKind::Selector,
                Layer::Kubernetes,
                Severity::Broken,
                format!(
                    "Service {svc} selects {sel_text}, the pods of {who}, but {who} is scaled to 0 replicas, so no pod runs to serve it."
                ),
                vec![
                    Fix::run(
                        format!("scale {who} up"),
                        format!("kubectl scale{} {} --replicas=1", self.ns, shell_word(&who)),
                    ),
                    Fix::run(
                        "then watch its pods become ready",
                        format!("kubectl rollout status{} {}", self.ns, shell_word(&who)),
                    ),
                ],
                vec![],
                format!("{who} is scaled to 0"),
            );
            return;
        }
        if let Some(w) = owners.first() {
            let who = format!("{}/{}", w.kind, w.name);
            let why = match w.problems.first() {
                Some(p) => format!("its controller reports {}", condition_words(p)),
                None => {
                    "its controller has not created any (quota, admission or a failing rollout)"
                        .to_string()
                }
            };
            self.find(
                FindingKind::WorkloadRolloutFailing,
                HopKind::Selector,
                Layer::Kubernetes,
                Severity::Broken,
                format!(
                    "Service {svc} selects {sel_text}, the pods of {who}, which should run {} but has none: {why}.",
                    plural(w.replicas.unwrap_or(1) as usize, "pod", "pods")
                ),
                vec![
                    Fix::run(
                        format!("read {who}'s conditions and events"),
                        format!("kubectl describe{} {}", self.ns, shell_word(&who)),
                    ),
                    Fix::run(
                        "and the namespace's recent warnings",
                        format!(
                            "kubectl get events{} --field-selector type=Warning",
                            self.ns
                        ),
                    ),
                ],
                vec![],
                format!("{who} has no pods"),
            );
            return;
        }
        if !f.other_namespace_pods.is_empty() {
            let mut namespaces: Vec<String> = f
                .other_namespace_pods
                .iter()
                .map(|p| p.namespace.clone())
                .collect();
            namespaces.sort();
            namespaces.dedup();
            let first = &f.other_namespace_pods[0];
            let names: Vec<String> = f
                .other_namespace_pods
                .iter()
                .take(3)
                .map(|p| format!("{}/{}", p.namespace, p.name))
                .collect();
            let selector_arg = shell_word(&sel_text);
            self.find(
                FindingKind::PodsInOtherNamespace,
                HopKind::Selector,
                Layer::Kubernetes,
                Severity::Broken,
                format!(
                    "Service {svc} in namespace {} selects {sel_text}, but the pods with those labels run in namespace {} ({}), and a Service selects pods of its own namespace only.",
                    f.namespace,
                    join_and(&namespaces),
                    join_and(&names)
                ),
                vec![
                    Fix::run(
                        format!(
                            "create the Service in namespace {} next to its pods (or run the pods in namespace {})",
                            first.namespace, f.namespace
                        ),
                        format!(
                            "kubectl get svc{} {svc_word} -o yaml | sed 's/namespace: .*/namespace: {}/' | kubectl apply -f -",
                            self.ns,
                            shell_word(&first.namespace)
                        ),
                    ),
                    Fix::run(
                        "see the pods there",
                        format!(
                            "kubectl get pods -n {} -l {selector_arg}",
                            shell_word(&first.namespace)
                        ),
                    ),
                ],
                vec![],
                format!("the pods run in namespace {}", first.namespace),
            );
            return;
        }
        let mut misses = selector_near_misses(sel, &f.namespace_pods);
        // One pod per workload: its replicas all say the same.
        let mut seen = std::collections::BTreeSet::new();
        misses.retain(|m| match &m.workload {
            Some(w) => seen.insert(w.clone()),
            None => true,
        });
        if let Some(best) = misses.first() {
            let shown: Vec<String> = misses
                .iter()
                .take(3)
                .map(|m| {
                    let edits: Vec<String> = m
                        .other_values
                        .iter()
                        .map(|(k, wanted, have)| {
                            let d = super::super::words::edit_distance(wanted, have);
                            format!(
                                "{k}={have}, {} from {k}={wanted}",
                                plural(d, "edit", "edits")
                            )
                        })
                        .chain(m.missing.iter().map(|(k, _)| format!("no {k} label")))
                        .collect();
                    let owner = m
                        .workload
                        .as_ref()
                        .map(|w| format!(" of {w}"))
                        .unwrap_or_default();
                    format!("{}{owner} has {}", m.pod, edits.join(", "))
                })
                .collect();
            let mut fixes = Vec::new();
            if !best.other_values.is_empty() {
                let mut new_sel = sel.clone();
                for (k, _, have) in &best.other_values {
                    new_sel.insert(k.clone(), have.clone());
                }
                let patch = serde_json::json!({"spec": {"selector": new_sel}}).to_string();
                fixes.push(Fix::run(
                    format!(
                        "point the Service's selector at the labels {} has",
                        best.pod
                    ),
                    format!(
                        "kubectl patch svc{} {svc_word} -p {}",
                        self.ns,
                        shell_word(&patch)
                    ),
                ));
                match &best.workload {
                    Some(w) => fixes.push(Fix::say(format!(
                        "or, if the Service is right, change the labels in {w}'s pod template (and its selector with them); relabelling its pods would only take them away from their controller"
                    ))),
                    None => {
                        let labels: Vec<String> = best
                            .other_values
                            .iter()
                            .map(|(k, v, _)| shell_word(&format!("{k}={v}")))
                            .collect();
                        fixes.push(Fix::run(
                            "or relabel the pod (no controller owns it)",
                            format!(
                                "kubectl label pod{} {} {} --overwrite",
                                self.ns,
                                shell_word(&best.pod),
                                labels.join(" ")
                            ),
                        ));
                    }
                }
            }
            if !best.missing.is_empty() {
                let add: BTreeMap<String, String> = best.missing.iter().cloned().collect();
                match &best.workload {
                    Some(w) => {
                        let patch = serde_json::json!({"spec": {"template": {"metadata": {"labels": add}}}})
                            .to_string();
                        fixes.push(Fix::run(
                            format!("add the missing labels to {w}'s pod template"),
                            format!(
                                "kubectl patch{} {} -p {}",
                                self.ns,
                                shell_word(w),
                                shell_word(&patch)
                            ),
                        ));
                    }
                    None => {
                        let labels: Vec<String> = add
                            .iter()
                            .map(|(k, v)| shell_word(&format!("{k}={v}")))
                            .collect();
                        fixes.push(Fix::run(
                            "add the missing labels to the pod (no controller owns it)",
                            format!(
                                "kubectl label pod{} {} {}",
                                self.ns,
                                shell_word(&best.pod),
                                labels.join(" ")
                            ),
                        ));
                    }
                }
                let drop: serde_json::Map<String, serde_json::Value> = best
                    .missing
                    .iter()
                    .map(|(k, _)| (k.clone(), serde_json::Value::Null))
                    .collect();
                let patch = serde_json::json!({"spec": {"selector": drop}}).to_string();
                fixes.push(Fix::run(
                    "or drop those labels from the Service's selector",
                    format!(
                        "kubectl patch svc{} {svc_word} -p {}",
                        self.ns,
                        shell_word(&patch)
                    ),
                ));
            }
            self.find(
                FindingKind::SelectorNearMiss,
                HopKind::Selector,
                Layer::Kubernetes,
                Severity::Broken,
                format!(
                    "Service {svc} selects {sel_text}, which no pod in namespace {} has; the nearest: {}.",
                    f.namespace,
                    shown.join("; ")
                ),
                fixes,
                vec![],
                "the selector almost matches".to_string(),
            );
            return;
        }
        self.find(
            FindingKind::SelectorMatchesNothing,
            HopKind::Selector,
            Layer::Kubernetes,
            Severity::Broken,
            format!(
                "Service {svc} selects pods with {sel_text}, but no pod in namespace {} has those labels or anything close, and no workload there makes such pods.",
                f.namespace
            ),
            vec![
                Fix::run(
                    "compare the pods' labels with the selector",
                    format!("kubectl get pods{} --show-labels", self.ns),
                ),
                Fix::run(
                    "and the workloads' selectors",
                    format!("kubectl get deploy,sts{} -o wide", self.ns),
                ),
            ],
            vec![],
            "the selector matches no pods".to_string(),
        );
    }

    /// No pod on the path is ready: say why, from the containers' status and the pod's events.
    pub(super) fn no_pod_ready(&mut self, not_ready: &[&PodFacts]) {
        let f = self.f;
        let n = f.pods.len();
        let Some(worst) = not_ready
            .iter()
            .max_by_key(|p| (p.waiting_reason.is_some(), p.restarts))
            .copied()
        else {
            return;
        };
        let pod_word = shell_word(&worst.name);
        let subject = if n == 1 {
            format!("Pod {}", worst.name)
        } else {
            format!(
                "None of the {n} pods of {} is ready: pod {}",
                self.who, worst.name
            )
        };
        let workload = f
            .namespace_pods
            .iter()
            .find(|p| p.name == worst.name)
            .and_then(|p| p.workload.clone());
        let describe = Fix::run(
            "read the pod's events and conditions",
            format!("kubectl describe pod{} {pod_word}", self.ns),
        );
        let pulling = worst.containers.iter().find(|c| {
            matches!(
                c.waiting_reason.as_deref(),
                Some(
                    "ImagePullBackOff"
                        | "ErrImagePull"
                        | "InvalidImageName"
                        | "ErrImageNeverPull"
                        | "RegistryUnavailable"
                )
            )
        });
        if let Some(c) = pulling {
            let reason = c.waiting_reason.clone().unwrap_or_default();
            let detail = worst
                .events
                .iter()
                .rev()
                .find(|e| e.reason == "Failed" && e.message.contains("pull"))
                .map(|e| e.message.clone())
                .or_else(|| c.waiting_message.clone())
                .map(|m| format!(": {}", trim_period(&one_line(&m))))
                .unwrap_or_default();
            let mut fixes = vec![Fix::say(
                "check the image's name and tag, and that this cluster can pull it (registry reachable, logged in, or the image loaded into the node)",
            )];
            if let Some(w) = &workload {
                fixes.push(Fix::run(
                    format!("point {w} at an image that exists"),
                    format!(
                        "kubectl set image{} {} {}=IMAGE:TAG",
                        self.ns,
                        shell_word(w),
                        shell_word(&c.name)
                    ),
                ));
            }
            fixes.push(describe);
            self.find(
                FindingKind::ImagePullFailing,
                HopKind::Pods,
                Layer::Kubernetes,
                Severity::Broken,
                format!(
                    "{subject} cannot start: image {:?} of container {} cannot be pulled ({reason}{detail}).",
                    c.image, c.name
                ),
                fixes,
                vec![],
                format!("image {} cannot be pulled", c.image),
            );
            return;
        }
        let crashing = worst.containers.iter().find(|c| {
            c.waiting_reason.as_deref() == Some("CrashLoopBackOff")
                || (c.restarts > 0 && c.exit_code.is_some() && !c.ready)
        });
        if let Some(c) = crashing {
            let code = match (c.exit_code, c.exit_reason.as_deref()) {
                (Some(code), Some(reason)) => format!(
                    "exited with code {code}{} ({reason})",
                    exit_code_words(code)
                ),
                (Some(code), None) => format!("exited with code {code}{}", exit_code_words(code)),
                (None, Some(reason)) => format!("ended ({reason})"),
                (None, None) => "keeps exiting".to_string(),
            };
            let message = c
                .exit_message
                .as_deref()
                .filter(|m| !m.trim().is_empty())
                .map(|m| format!(", saying {:?}", trim_period(&one_line(m))))
                .unwrap_or_default();
            let log = match c.last_log.iter().rev().find(|l| !l.trim().is_empty()) {
                Some(line) => format!("; its last log line: {:?}", one_line(line)),
                None => String::new(),
            };
            let waiting = c
                .waiting_reason
                .as_deref()
                .map(|r| format!(" and waits in {r}"))
                .unwrap_or_default();
            let fixes = vec![
                Fix::run(
                    "read the log of the run that crashed",
                    format!(
                        "kubectl logs{} {pod_word} -c {} --previous",
                        self.ns,
                        shell_word(&c.name)
                    ),
                ),
                describe,
            ];
            self.find(
                FindingKind::CrashLooping,
                HopKind::Pods,
                Layer::App,
                Severity::Broken,
                format!(
                    "{subject} keeps crashing: container {} {code}{message} after {}{waiting}{log}.",
                    c.name,
                    plural(c.restarts as usize, "restart", "restarts")
                ),
                fixes,
                vec![],
                format!("container {} keeps crashing", c.name),
            );
            return;
        }
        let unready_probe = worst
            .containers
            .iter()
            .find(|c| !c.ready && c.readiness_probe.is_some() && c.waiting_reason.is_none());
        if let (Some(c), true) = (unready_probe, worst.phase == "Running") {
            let probe = c.readiness_probe.clone().unwrap_or_default();
            let last = worst
                .events
                .iter()
                .rev()
                .find(|e| e.reason == "Unhealthy")
                .map(|e| {
                    let m = e.message.trim();
                    let m = m
                        .strip_prefix("Readiness probe failed:")
                        .unwrap_or(m)
                        .trim();
                    let times = if e.count > 1 {
                        format!(" ({} times)", e.count)
                    } else {
                        String::new()
                    };
                    format!("; its last failure: {:?}{times}", trim_period(&one_line(m)))
                })
                .unwrap_or_default();
            self.find(
                FindingKind::ReadinessFailing,
                HopKind::Pods,
                Layer::Kubernetes,
                Severity::Broken,
                format!(
                    "{subject} runs but is never ready: the readiness probe of container {} ({} {}) fails{last}.",
                    c.name, probe.kind, probe.target
                ),
                vec![
                    describe,
                    Fix::say(format!(
                        "check that the app answers {} (path and port) once it has started, or fix the probe in the pod template",
                        probe.target
                    )),
                    Fix::run("read its log", format!("kubectl logs{} {pod_word}", self.ns)),
                ],
                vec![],
                format!("the readiness probe of {} fails", worst.name),
            );
            return;
        }
        let why = not_ready_words(worst);
        let cause = if n == 1 {
            format!("{subject} is not ready: {why}.")
        } else {
            format!("{subject} {why}.")
        };
        let mut fixes = vec![describe];
        if worst.restarts > 0 {
            fixes.push(Fix::run(
                "read the log of the last crash",
                format!("kubectl logs{} {pod_word} --previous", self.ns),
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
    }
}

/// Whether every label of the selector is among `labels`.
pub(super) fn selects(sel: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// A condition in words (`ReplicaFailure: exceeded quota: …`).
pub(super) fn condition_words(c: &ConditionFacts) -> String {
    let head = match &c.reason {
        Some(r) => format!("{} {} ({r})", c.type_, c.status),
        None => format!("{} {}", c.type_, c.status),
    };
    match &c.message {
        Some(m) if !m.trim().is_empty() => format!("{head}: {}", trim_period(&one_line(m))),
        _ => head,
    }
}

/// What an exit code usually means, as a parenthesis to follow it (empty when plain).
pub(super) fn exit_code_words(code: i32) -> &'static str {
    match code {
        137 => ", killed by SIGKILL (often out of memory)",
        143 => ", ended by SIGTERM",
        139 => ", a segmentation fault",
        126 => ", the command cannot be executed",
        127 => ", the command was not found",
        _ => "",
    }
}
