//! App-layer rules: the process in each pod, as port-forward (its localhost) and the API server's
//! proxy (its pod IP) saw it.

use super::*;

impl Engine<'_> {
    /// Whether a pod is on the path: ready (traffic goes to ready pods only), or the pod the
    /// target names.
    pub(super) fn on_path(&self, pod: &str) -> bool {
        self.f.target.kind == TargetKind::Pod
            || self.f.pods.iter().any(|p| p.name == pod && p.ready)
    }

    /// The pod-IP probe of a pod.
    pub(super) fn pod_ip_probe(&self, pod: &str) -> Option<&PodIpProbe> {
        self.f.pod_ip_probes.iter().find(|p| p.pod == pod)
    }

    pub(super) fn port_forward_outcome(&self) -> PfOutcome {
        let probes: Vec<&PortForwardProbe> = self
            .f
            .portforward
            .iter()
            .filter(|p| self.on_path(&p.pod))
            .collect();
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
        let classified: Vec<(PfError, &PortForwardProbe)> = probes
            .into_iter()
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

    pub(super) fn process(&mut self) {
        let f = self.f;
        self.pf = self.port_forward_outcome();
        let label = match self.first_pod_port() {
            Some(p) => format!("process :{p}"),
            None => "process".to_string(),
        };
        let outcome = self.pf.clone();
        if !matches!(outcome, PfOutcome::Ok { .. }) {
            self.localhost_only_not_ready();
            if self.has(FindingKind::ListensOnLocalhostOnly) {
                return;
            }
        }
        match outcome {
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
                self.accepting(&pod, port, &refused);
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
                let ip_answer = self.pod_ip_probe(&pod).map(|p| p.answered);
                if ip_answer == Some(Tri::Yes) {
                    let ip_text = pod_ip.map(|ip| format!(" {ip}:{port}")).unwrap_or_default();
                    self.find(
                        FindingKind::ListensOnPodAddressOnly,
                        HopKind::Process,
                        Layer::App,
                        Severity::Broken,
                        format!(
                            "The app in pod {pod} refuses connections on localhost:{port} but accepts on its pod address{ip_text}: it listens on that address only, which port-forward never dials (Service traffic still reaches it)."
                        ),
                        vec![
                            Fix::say(format!(
                                "make the app listen on 0.0.0.0:{port} (all interfaces) instead of its pod address, e.g. --host 0.0.0.0"
                            )),
                            Fix::run(
                                "meanwhile, open it through the Service's direct way",
                                self.open_command(),
                            ),
                        ],
                        vec![WayKind::PortForward],
                        format!("the app listens on its pod address only, not on localhost:{port}"),
                    );
                } else if declared && ip_answer != Some(Tri::No) {
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

    /// At least one pod accepts on localhost: check the others, and the pod IPs (where
    /// Services, NodePorts and the kubelet's probes dial).
    pub(super) fn accepting(&mut self, pod: &str, port: u16, refused: &[String]) {
        let f = self.f;
        let accepted: Vec<&str> = f
            .portforward
            .iter()
            .filter(|p| p.ok && self.on_path(&p.pod))
            .map(|p| p.pod.as_str())
            .collect();
        let ip_refused: Vec<String> = accepted
            .iter()
            .filter(|p| self.pod_ip_probe(p).is_some_and(|i| i.answered == Tri::No))
            .map(|p| p.to_string())
            .collect();
        let ip_accepted = accepted
            .iter()
            .filter(|p| self.pod_ip_probe(p).is_some_and(|i| i.answered == Tri::Yes))
            .count();
        let checked = "accepts on localhost (port-forward) and on the pod IP (API server proxy)";
        let label = format!("process :{port}");
        if !ip_refused.is_empty() && ip_accepted == 0 && refused.is_empty() {
            let first = &ip_refused[0];
            let ip = f
                .pods
                .iter()
                .find(|p| &p.name == first)
                .and_then(|p| p.pod_ip.clone())
                .map(|ip| host_port(&ip, port))
                .unwrap_or_else(|| format!("its pod IP on port {port}"));
            let detail = self
                .pod_ip_probe(first)
                .and_then(|p| p.detail.clone())
                .map(|d| format!(" ({})", trim_period(&short_error(&d))))
                .unwrap_or_default();
            self.set(
                HopKind::Process,
                label,
                checked,
                format!("localhost:{port} accepts; pod IP {ip} refuses"),
                Status::Broken,
            );
            self.localhost_only_finding(
                first,
                port,
                &format!("refuses on its pod IP {ip}{detail}"),
            );
            return;
        }
        let mut bad: Vec<String> = refused.to_vec();
        bad.extend(ip_refused.iter().cloned());
        bad.sort();
        bad.dedup();
        if bad.is_empty() {
            let observed = if ip_accepted > 0 {
                format!(
                    "{} on localhost:{port} and on the pod IP",
                    accept_words(accepted.len())
                )
            } else {
                format!("{} on localhost:{port}", accept_words(accepted.len()))
            };
            self.set(HopKind::Process, label, checked, observed, Status::Ok);
            return;
        }
        let total = accepted.len() + refused.len();
        let good: Vec<String> = accepted
            .iter()
            .filter(|p| !bad.contains(&p.to_string()))
            .map(|p| p.to_string())
            .collect();
        let how: Vec<String> = bad
            .iter()
            .map(|p| {
                if refused.contains(p) {
                    let on_ip = match self.pod_ip_probe(p).map(|i| i.answered) {
                        Some(Tri::Yes) => " (its pod IP accepts: it listens there only)",
                        _ => "",
                    };
                    format!("{p} refuses on localhost:{port}{on_ip}")
                } else {
                    format!("{p} refuses on its pod IP (it listens on localhost only)")
                }
            })
            .collect();
        self.set(
            HopKind::Process,
            label,
            checked,
            format!("{} of {total} pods refuse: {}", bad.len(), join_and(&bad)),
            Status::Warning,
        );
        let who_good = if good.is_empty() {
            pod.to_string()
        } else {
            join_and(&good)
        };
        self.find(
            FindingKind::SomePodsRefuse,
            HopKind::Process,
            Layer::App,
            Severity::Broken,
            format!(
                "{} of the {total} ready pods refuse connections while {who_good} accepts: {}, so connections through the Service or a forward that land there fail.",
                bad.len(),
                join_and(&how)
            ),
            vec![
                Fix::run(
                    format!("compare pod {} with a working one", bad[0]),
                    format!("kubectl describe pod{} {}", self.ns, shell_word(&bad[0])),
                ),
                Fix::run(
                    "and its log",
                    format!("kubectl logs{} {}", self.ns, shell_word(&bad[0])),
                ),
            ],
            vec![],
            "some pods refuse connections".to_string(),
        );
    }

    fn localhost_only_finding(&mut self, pod: &str, port: u16, refusal: &str) {
        self.find(
            FindingKind::ListensOnLocalhostOnly,
            HopKind::Process,
            Layer::App,
            Severity::Broken,
            format!(
                "The app in pod {pod} accepts on localhost:{port} but {refusal}: it listens on 127.0.0.1 only, so port-forward reaches it while the Service, its NodePort and the kubelet's probes cannot."
            ),
            vec![
                Fix::say(format!(
                    "make the app listen on 0.0.0.0:{port} (all interfaces), e.g. --host 0.0.0.0 or --bind 0.0.0.0"
                )),
                Fix::run("meanwhile, reach it through a forward", self.forward_command()),
            ],
            vec![
                WayKind::NodePort,
                WayKind::LocalhostNodePort,
                WayKind::LoadBalancer,
            ],
            format!("the app listens on localhost:{port} only"),
        );
    }

    /// No pod is ready, and the readiness probe dials the pod IP: when port-forward (localhost)
    /// reaches the app and the pod IP refuses, the app listening on localhost only is why.
    pub(super) fn localhost_only_not_ready(&mut self) {
        let f = self.f;
        if !self.has(FindingKind::ReadinessFailing) {
            return;
        }
        let hit = f.pods.iter().filter(|p| !p.ready).find_map(|p| {
            let pf = f.portforward.iter().find(|x| x.pod == p.name && x.ok)?;
            let ip = self.pod_ip_probe(&p.name)?;
            (ip.answered == Tri::No).then(|| (p, pf.port, ip.detail.clone()))
        });
        let Some((pod, port, detail)) = hit else {
            return;
        };
        let probe = pod
            .containers
            .iter()
            .find_map(|c| c.readiness_probe.clone())
            .map(|p| format!("readiness probe ({} {})", p.kind, p.target))
            .unwrap_or_else(|| "readiness probe".to_string());
        let ip = pod
            .pod_ip
            .as_ref()
            .map(|ip| host_port(ip, port))
            .unwrap_or_else(|| format!("port {port}"));
        let detail = detail
            .map(|d| format!(" ({})", trim_period(&short_error(&d))))
            .unwrap_or_default();
        self.drafts
            .retain(|d| d.finding.kind != FindingKind::ReadinessFailing);
        self.set(
            HopKind::Process,
            format!("process :{port}"),
            "accepts on localhost (port-forward) and on the pod IP (API server proxy)",
            format!("localhost:{port} accepts; pod IP {ip} refuses"),
            Status::Broken,
        );
        let name = pod.name.clone();
        self.localhost_only_finding(
            &name,
            port,
            &format!(
                "refuses on its pod IP {ip}{detail}, where its {probe} dials, so it is never ready"
            ),
        );
    }
}

/// `1 pod accepts`, `3 pods accept`.
fn accept_words(n: usize) -> String {
    if n == 1 {
        "1 pod accepts".to_string()
    } else {
        format!("{n} pods accept")
    }
}
