//! App-layer rules: the process in each pod, as port-forward (its localhost) and the API server's
//! proxy (its pod IP) saw it.

use super::*;

impl Engine<'_> {
    pub(super) fn port_forward_outcome(&self) -> PfOutcome {
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
        let classified: Vec<(PfError, &crate::explain::PortForwardProbe)> = probes
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

    pub(super) fn process(&mut self) {
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
}
