//! minikube specifics: the driver behind a profile and minikube's own `NeedsPortForward` rule
//! applied to this host.
//!
//! Sources (reference §1.3): `ControlPlaneEndpoint()` decides the kubeconfig `server:` form, so the
//! URL reveals the driver family; `NeedsPortForward(driver)` is true exactly for KIC drivers on
//! macOS, Windows, WSL, Docker Desktop, rootless or remote engines.

use super::address::{UrlHost, in_172_16_12, in_v4_24};
use super::detection::{
    Confidence, DriverName, Evidence, HostKind, MinikubeDriver, Tri, Verdict, Weight,
};
use super::snapshot::EnvSnapshot;

/// What minikube analysis concludes.
pub(crate) struct MinikubeAnalysis {
    pub driver: Option<MinikubeDriver>,
    pub node_reachable: Verdict,
    pub nodeports_on_localhost: Verdict,
    pub notes: Vec<String>,
}

/// The host part of `DOCKER_HOST`/`CONTAINER_HOST` when it names a remote daemon (`tcp://`,
/// `ssh://`), as minikube's `IsExternalDaemonHost` reads it.
fn external_daemon_host(value: Option<&str>) -> Option<String> {
    let url = UrlHost::parse(value?)?;
    (!url.host.is_empty()).then_some(url.host)
}

fn driver_from_server(
    snap: &EnvSnapshot,
    host: HostKind,
) -> Option<(DriverName, Option<String>, Confidence, Evidence)> {
    let server = &snap.kubeconfig.server;
    let url = UrlHost::parse(server)?;
    let ip = url.ip();
    let signal = "kubeconfig cluster server";
    let docker_host = external_daemon_host(snap.host.var("DOCKER_HOST"));
    let found = if docker_host.as_deref() == Some(url.host.as_str()) && !url.is_loopback() {
        (
            DriverName::Kic,
            None,
            "KIC driver published the API port on the remote DOCKER_HOST",
        )
    } else if url.host == "localhost" {
        (
            DriverName::Qemu2,
            Some("builtin".to_string()),
            "qemu2 with the builtin (user) network: only the API is forwarded to localhost",
        )
    } else if url.is_loopback() {
        (
            DriverName::Kic,
            None,
            "KIC driver (docker or podman) in port-forward mode: the API is a published port on loopback",
        )
    } else if in_v4_24(ip, 192, 168, 49) {
        (
            DriverName::Kic,
            None,
            "KIC driver (docker or podman) on the 'minikube' network, direct node IP (Linux, native engine)",
        )
    } else if in_v4_24(ip, 192, 168, 39) {
        (
            DriverName::Kvm2,
            None,
            "kvm2 (libvirt network 192.168.39.0/24)",
        )
    } else if in_v4_24(ip, 192, 168, 59) {
        (
            DriverName::Virtualbox,
            None,
            "virtualbox (host-only network 192.168.59.0/24)",
        )
    } else if in_v4_24(ip, 192, 168, 105) {
        (
            DriverName::Vm,
            Some("socket_vmnet".to_string()),
            "qemu2 or vfkit with socket_vmnet (192.168.105.0/24)",
        )
    } else if host == HostKind::Windows && in_172_16_12(ip) {
        (
            DriverName::Hyperv,
            None,
            "hyperv on the 'Default Switch' (172.16.0.0/12)",
        )
    } else if ip.is_some() {
        (
            DriverName::Vm,
            None,
            "a VM or remote driver with a routable node IP (network not recognised)",
        )
    } else {
        return None;
    };
    let (name, network, implies) = found;
    let confidence = match name {
        DriverName::Vm => Confidence::Low,
        _ => Confidence::Medium,
    };
    Some((
        name,
        network,
        confidence,
        Evidence::new(signal, server.clone(), implies, Weight::Strong),
    ))
}

/// The reasons `NeedsPortForward` holds for a KIC driver on this host.
fn port_forward_reasons(snap: &EnvSnapshot, host: HostKind, name: &DriverName) -> Vec<Evidence> {
    let mut reasons = Vec::new();
    let implies = "KIC node IP is not reachable from this host (minikube NeedsPortForward)";
    match host {
        HostKind::MacOs | HostKind::Windows => reasons.push(Evidence::new(
            "host os",
            if host == HostKind::MacOs {
                "macos"
            } else {
                "windows"
            },
            format!("{implies}: containers live in the Docker Desktop / podman machine VM"),
            Weight::Decisive,
        )),
        HostKind::Wsl2 => reasons.push(Evidence::new(
            "host kind",
            "wsl2",
            format!("{implies}: minikube treats WSL as port-forward only"),
            Weight::Decisive,
        )),
        HostKind::Linux | HostKind::LimaGuest => {}
    }
    let docker_like = matches!(name, DriverName::Docker | DriverName::Kic);
    let podman_like = matches!(name, DriverName::Podman | DriverName::Kic);
    if docker_like && let Some(remote) = external_daemon_host(snap.host.var("DOCKER_HOST")) {
        reasons.push(Evidence::new(
            "host env DOCKER_HOST",
            remote,
            format!("{implies}: the docker daemon is remote"),
            Weight::Decisive,
        ));
    }
    if podman_like && let Some(remote) = external_daemon_host(snap.host.var("CONTAINER_HOST")) {
        reasons.push(Evidence::new(
            "host env CONTAINER_HOST",
            remote,
            format!("{implies}: the podman service is remote"),
            Weight::Decisive,
        ));
    }
    if let Some(engine) = &snap.host.docker {
        if engine.operating_system.as_deref() == Some("Docker Desktop") {
            reasons.push(Evidence::new(
                "docker info OperatingSystem",
                "Docker Desktop",
                format!("{implies}: Docker Desktop runs containers in its VM"),
                Weight::Decisive,
            ));
        }
        if engine.rootless {
            reasons.push(Evidence::new(
                "docker info SecurityOptions",
                "name=rootless",
                format!("{implies}: rootless engine networks are not routed to the host"),
                Weight::Decisive,
            ));
        }
    }
    reasons
}

/// Works out the driver and the reachability verdicts for a minikube context.
pub(crate) fn analyse(
    snap: &EnvSnapshot,
    host: HostKind,
    evidence: &mut Vec<Evidence>,
) -> MinikubeAnalysis {
    let mut notes = Vec::new();
    let profile = snap.minikube_profile.as_ref();
    let from_server = driver_from_server(snap, host);
    let mut driver = None;
    if let Some(name) = profile.and_then(|p| p.driver.clone()) {
        evidence.push(Evidence::new(
            "minikube profile config.json Driver",
            name.clone(),
            format!("minikube driver {name}"),
            Weight::Decisive,
        ));
        let network = profile.and_then(|p| p.network.clone());
        driver = Some((DriverName::from(name), network, Confidence::High));
        // The server URL still tells whether minikube chose port-forward mode.
        if let Some((_, _, _, ev)) = from_server {
            evidence.push(ev);
        }
    } else if let Some((name, network, confidence, ev)) = from_server {
        evidence.push(ev);
        driver = Some((name, network, confidence));
    } else {
        evidence.push(Evidence::new(
            "kubeconfig cluster server",
            snap.kubeconfig.server.clone(),
            "does not match any minikube endpoint form; driver unknown",
            Weight::Hint,
        ));
    }
    // A loopback server with a KIC-looking node address corroborates KIC.
    if let Some(node_ip) = snap.nodes.first().and_then(|n| n.internal_ip())
        && in_v4_24(node_ip.parse().ok(), 192, 168, 49)
    {
        evidence.push(Evidence::new(
            "node InternalIP",
            node_ip,
            "node on minikube's KIC network 192.168.49.0/24",
            Weight::Strong,
        ));
    }

    let Some((name, network, confidence)) = driver else {
        let unknown = |what: &str| Verdict {
            value: Tri::Unknown,
            confidence: Confidence::Low,
            evidence: vec![Evidence::new(
                "minikube driver",
                "unknown",
                format!("{what} depends on the driver, which could not be determined"),
                Weight::Hint,
            )],
        };
        return MinikubeAnalysis {
            driver: None,
            node_reachable: unknown("node reachability"),
            nodeports_on_localhost: unknown("localhost NodePorts"),
            notes,
        };
    };

    let server_url = UrlHost::parse(&snap.kubeconfig.server);
    let server_loopback = server_url.as_ref().is_some_and(UrlHost::is_loopback);
    let builtin_network = matches!(network.as_deref(), Some("builtin" | "user"));

    let (needs_pf, node_reachable) = if name.is_kic() {
        let reasons = port_forward_reasons(snap, host, &name);
        if !reasons.is_empty() {
            (
                Tri::Yes,
                Verdict {
                    value: Tri::No,
                    confidence: Confidence::High,
                    evidence: reasons,
                },
            )
        } else if server_loopback {
            (
                Tri::Yes,
                Verdict {
                    value: Tri::No,
                    confidence: Confidence::Medium,
                    evidence: vec![Evidence::new(
                        "kubeconfig cluster server",
                        snap.kubeconfig.server.clone(),
                        "minikube wrote a published loopback port, so at start it found the node unreachable \
                         (rootless or Docker Desktop engine?)",
                        Weight::Strong,
                    )],
                },
            )
        } else if snap.host.docker.is_some() {
            (
                Tri::No,
                Verdict {
                    value: Tri::Yes,
                    confidence: Confidence::High,
                    evidence: vec![Evidence::new(
                        "docker info",
                        "rootful local engine on Linux",
                        "KIC node IP is routed on the docker bridge (NeedsPortForward is false)",
                        Weight::Decisive,
                    )],
                },
            )
        } else if server_url.is_some() {
            (
                Tri::No,
                Verdict {
                    value: Tri::Yes,
                    confidence: Confidence::Medium,
                    evidence: vec![Evidence::new(
                        "kubeconfig cluster server",
                        snap.kubeconfig.server.clone(),
                        "minikube wrote the node IP, so at start it found the node reachable (docker info not \
                         collected)",
                        Weight::Strong,
                    )],
                },
            )
        } else {
            (
                Tri::Unknown,
                Verdict {
                    value: Tri::Unknown,
                    confidence: Confidence::Low,
                    evidence: vec![Evidence::new(
                        "minikube driver",
                        name.as_str(),
                        "KIC reachability depends on the engine, which was not observed",
                        Weight::Hint,
                    )],
                },
            )
        }
    } else if name == DriverName::Qemu2 && builtin_network {
        notes.push(
            "minikube service and minikube tunnel are not implemented with QEMU's builtin network; only \
             port-forward through the API server reaches Services"
                .to_string(),
        );
        (
            Tri::No,
            Verdict {
                value: Tri::No,
                confidence: Confidence::High,
                evidence: vec![Evidence::new(
                    "minikube network",
                    network.clone().unwrap_or_default(),
                    "QEMU user-mode network: the VM has no address the host can route to",
                    Weight::Decisive,
                )],
            },
        )
    } else if name == DriverName::None {
        (
            Tri::No,
            Verdict {
                value: Tri::Yes,
                confidence: Confidence::High,
                evidence: vec![Evidence::new(
                    "minikube driver",
                    "none",
                    "the node is this host",
                    Weight::Decisive,
                )],
            },
        )
    } else {
        (
            Tri::No,
            Verdict {
                value: Tri::Yes,
                confidence,
                evidence: vec![Evidence::new(
                    "minikube driver",
                    name.as_str(),
                    "VM drivers give the node a host-only/bridged address the host routes to (NeedsPortForward is \
                     false)",
                    Weight::Strong,
                )],
            },
        )
    };

    let nodeports_on_localhost = if name == DriverName::None {
        Verdict {
            value: Tri::Yes,
            confidence: Confidence::Medium,
            evidence: vec![Evidence::new(
                "minikube driver",
                "none",
                "the node is this host: kube-proxy in iptables mode serves 127.0.0.1:<nodePort> (not in nftables mode)",
                Weight::Strong,
            )],
        }
    } else {
        Verdict {
            value: Tri::No,
            confidence: Confidence::High,
            evidence: vec![Evidence::new(
                "minikube driver",
                name.as_str(),
                "minikube publishes only the API, ssh and docker ports on the host; NodePorts live on the node IP",
                Weight::Strong,
            )],
        }
    };

    MinikubeAnalysis {
        driver: Some(MinikubeDriver {
            name,
            network,
            confidence,
            needs_port_forward: needs_pf,
        }),
        node_reachable,
        nodeports_on_localhost,
        notes,
    }
}
