//! Reachability and LoadBalancer verdicts per provider and host, and the one-line strategy built
//! from them.
//!
//! Each verdict cites the reference rule it applies (local-environments.md §2); where the reference
//! marks behaviour UNCONFIRMED the verdict is `Unknown` or carries `Low` confidence, and kubeway
//! checks the path live.

use super::address::UrlHost;
use super::detection::{
    Confidence, DockerDesktopMode, Evidence, HostKind, LbAccess, LbSupport, LbVerdict, Provider,
    Tri, Verdict, Weight,
};
use super::snapshot::{EnvSnapshot, LbHintKind, NodeFacts};

/// k3s `--disable servicelb` (or `--no-deploy servicelb`) in a node's `k3s.io/node-args`.
fn servicelb_disabled(node: &NodeFacts) -> bool {
    let Some(text) = node.annotations.get("k3s.io/node-args") else {
        return false;
    };
    let args: Vec<String> = serde_json::from_str(text).unwrap_or_default();
    let names_servicelb = |list: &str| list.split(',').any(|item| item.trim() == "servicelb");
    args.iter().enumerate().any(|(i, arg)| {
        if let Some(list) = arg
            .strip_prefix("--disable=")
            .or_else(|| arg.strip_prefix("--no-deploy="))
        {
            return names_servicelb(list);
        }
        (arg == "--disable" || arg == "--no-deploy")
            && args.get(i + 1).is_some_and(|next| names_servicelb(next))
    })
}

fn verdict(
    value: Tri,
    confidence: Confidence,
    signal: &str,
    observed: &str,
    implies: &str,
) -> Verdict {
    Verdict {
        value,
        confidence,
        evidence: vec![Evidence::new(signal, observed, implies, Weight::Strong)],
    }
}

fn host_name(host: HostKind) -> &'static str {
    match host {
        HostKind::Linux => "linux",
        HostKind::MacOs => "macos",
        HostKind::Windows => "windows",
        HostKind::Wsl2 => "wsl2",
        HostKind::LimaGuest => "lima_guest",
    }
}

/// Whether the host routes to node containers on a docker/podman bridge (kind, k3d).
fn container_network_reachable(host: HostKind, snap: &EnvSnapshot) -> Verdict {
    let engine = snap.host.docker.as_ref();
    let engine_os = engine.and_then(|e| e.operating_system.as_deref());
    match host {
        HostKind::MacOs | HostKind::Windows => {
            return verdict(
                Tri::No,
                Confidence::High,
                "host kind",
                host_name(host),
                "node containers live inside the Docker Desktop / podman machine VM; container networks are not \
                 exposed to the host",
            );
        }
        HostKind::Wsl2 if engine.is_none() => {
            return verdict(
                Tri::Unknown,
                Confidence::Low,
                "host kind",
                "wsl2",
                "a native dockerd in this distro exposes the bridge, Docker Desktop's WSL integration does not; \
                 docker info was not collected",
            );
        }
        _ => {}
    }
    if let Some(remote) = snap
        .host
        .var("DOCKER_HOST")
        .and_then(UrlHost::parse)
        .filter(|u| !u.host.is_empty())
    {
        return verdict(
            Tri::No,
            Confidence::Medium,
            "host env DOCKER_HOST",
            &remote.host,
            "the container engine is remote; its bridge network is not routed here",
        );
    }
    if engine_os == Some("Docker Desktop") {
        return verdict(
            Tri::No,
            Confidence::High,
            "docker info OperatingSystem",
            "Docker Desktop",
            "Docker Desktop runs containers in its VM; container IPs are not reachable",
        );
    }
    if engine.is_some_and(|e| e.rootless) {
        return verdict(
            Tri::No,
            Confidence::Medium,
            "docker info SecurityOptions",
            "name=rootless",
            "a rootless engine's networks live in a user namespace the host does not route to",
        );
    }
    if let Some(node) = snap
        .nodes
        .iter()
        .find(|n| n.info.kernel_version.contains("linuxkit"))
    {
        return verdict(
            Tri::No,
            Confidence::Medium,
            &format!("node/{} status.nodeInfo.kernelVersion", node.name),
            &node.info.kernel_version,
            "the node containers run in Docker Desktop's LinuxKit VM (Docker Desktop for Linux)",
        );
    }
    if engine.is_some() {
        return verdict(
            Tri::Yes,
            Confidence::High,
            "docker info",
            "rootful local engine",
            "node containers sit on a local bridge the host routes to",
        );
    }
    verdict(
        Tri::Yes,
        Confidence::Medium,
        "host kind",
        host_name(host),
        "on Linux a rootful native engine's bridge is routed from the host (docker info not collected; rootless \
         engines are the exception)",
    )
}

/// Node reachability when the API server is on another machine: known only if the API is dialled at
/// a node's own address.
fn remote_node_verdict(snap: &EnvSnapshot) -> Verdict {
    let server = snap.kubeconfig.server.as_str();
    let host = UrlHost::parse(server).map(|u| u.host).unwrap_or_default();
    let node = snap.nodes.iter().find_map(|n| {
        n.addresses
            .iter()
            .find(|a| !host.is_empty() && a.address.eq_ignore_ascii_case(&host))
            .map(|a| (n, a))
    });
    match node {
        Some((node, address)) => verdict(
            Tri::Yes,
            Confidence::Medium,
            &format!("node/{} {}", node.name, address.kind),
            &address.address,
            "the kubeconfig dials the API at this node's own address, so the host routes to the node",
        ),
        None => verdict(
            Tri::Unknown,
            Confidence::Low,
            "kubeconfig cluster server",
            server,
            "the API is on another machine; whether its node addresses are routed here is unknown",
        ),
    }
}

fn remote_nodeports_verdict(server: &str) -> Verdict {
    verdict(
        Tri::No,
        Confidence::Medium,
        "kubeconfig cluster server",
        server,
        "the cluster runs on another machine: nothing listens on this host's localhost",
    )
}

fn server_is_loopback(snap: &EnvSnapshot) -> bool {
    UrlHost::parse(&snap.kubeconfig.server).is_some_and(|u| u.is_loopback())
}

/// Node reachability and localhost NodePorts for every provider but minikube.
pub(crate) fn reachability(
    provider: Provider,
    dd_mode: Option<DockerDesktopMode>,
    host: HostKind,
    snap: &EnvSnapshot,
) -> (Verdict, Verdict) {
    let linux_like = matches!(host, HostKind::Linux | HostKind::Wsl2 | HostKind::LimaGuest);
    let local_api = server_is_loopback(snap);
    let server = snap.kubeconfig.server.as_str();
    match provider {
        Provider::Kind | Provider::K3d => (
            container_network_reachable(host, snap),
            verdict(
                Tri::No,
                Confidence::Medium,
                "provider",
                provider.as_str(),
                "NodePorts reach localhost only through port mappings made at cluster creation (kind \
                 extraPortMappings, k3d -p)",
            ),
        ),
        Provider::DockerDesktop => {
            let node = verdict(
                Tri::No,
                Confidence::High,
                "provider",
                "docker_desktop",
                "the node runs inside Docker Desktop's VM; its address is not routed from the host",
            );
            let ports = match dd_mode {
                Some(DockerDesktopMode::Kubeadm) => verdict(
                    Tri::Yes,
                    if host == HostKind::Wsl2 {
                        Confidence::Medium
                    } else {
                        Confidence::High
                    },
                    "docker desktop mode",
                    "kubeadm",
                    "vpnkit-controller publishes every NodePort on the host's 0.0.0.0:<nodePort>",
                ),
                Some(DockerDesktopMode::Kind) => verdict(
                    Tri::Unknown,
                    Confidence::Low,
                    "docker desktop mode",
                    "kind",
                    "NodePort publishing of Docker Desktop's kind provisioner is unconfirmed",
                ),
                None => verdict(
                    Tri::Unknown,
                    Confidence::Low,
                    "docker desktop mode",
                    "unknown",
                    "kubeadm mode publishes NodePorts on the host, kind mode is unconfirmed",
                ),
            };
            (node, ports)
        }
        Provider::RancherDesktop => {
            let external = snap.nodes.iter().find_map(|n| n.address("ExternalIP"));
            let node = if host == HostKind::LimaGuest {
                verdict(
                    Tri::Yes,
                    Confidence::Medium,
                    "host kind",
                    "lima_guest",
                    "kubeway runs in the VM that is the node",
                )
            } else if let (HostKind::MacOs, Some(ip)) = (host, external) {
                verdict(
                    Tri::Yes,
                    Confidence::Medium,
                    "node ExternalIP",
                    ip,
                    "an rd0/rd1 (socket_vmnet) address, routable from the Mac",
                )
            } else {
                verdict(
                    Tri::No,
                    Confidence::Medium,
                    "host kind",
                    host_name(host),
                    "the node address is the Lima slirp / WSL eth0 address, not routed from the host",
                )
            };
            let ports = verdict(
                Tri::Yes,
                Confidence::Medium,
                "provider",
                "rancher_desktop",
                "Rancher Desktop's guest agent forwards NodePort and LoadBalancer ports to the host's localhost",
            );
            (node, ports)
        }
        Provider::Colima => {
            let node = if host == HostKind::LimaGuest {
                verdict(
                    Tri::Yes,
                    Confidence::Medium,
                    "host kind",
                    "lima_guest",
                    "kubeway runs in the VM that is the node",
                )
            } else if !local_api && !server.is_empty() {
                verdict(
                    Tri::Yes,
                    Confidence::Medium,
                    "kubeconfig cluster server",
                    server,
                    "colima rewrote the server to the VM's reachable col0 address (--network-address)",
                )
            } else {
                verdict(
                    Tri::No,
                    Confidence::Medium,
                    "kubeconfig cluster server",
                    server,
                    "API on loopback: no --network-address, the VM's eth0 (192.168.5.15) is not routed from the host",
                )
            };
            let ports = verdict(
                Tri::Yes,
                Confidence::Medium,
                "provider",
                "colima",
                "Lima's guest agent (v0.15+) forwards NodePort and LoadBalancer ports to the host's 127.0.0.1",
            );
            (node, ports)
        }
        Provider::OrbStack => {
            if host == HostKind::MacOs {
                (
                    verdict(
                        Tri::Yes,
                        Confidence::High,
                        "provider",
                        "orbstack",
                        "OrbStack routes every Service type, pod and node address directly from the Mac",
                    ),
                    verdict(
                        Tri::Yes,
                        Confidence::Medium,
                        "provider",
                        "orbstack",
                        "OrbStack exposes NodePorts on localhost (exact documentation wording unconfirmed)",
                    ),
                )
            } else {
                let unknown = || {
                    verdict(
                        Tri::Unknown,
                        Confidence::Low,
                        "host kind",
                        host_name(host),
                        "OrbStack's direct routing is documented for the Mac only",
                    )
                };
                (unknown(), unknown())
            }
        }
        Provider::K3s | Provider::MicroK8s => {
            if !local_api {
                (remote_node_verdict(snap), remote_nodeports_verdict(server))
            } else if linux_like {
                (
                    verdict(
                        Tri::Yes,
                        Confidence::Medium,
                        "kubeconfig cluster server",
                        server,
                        "API on loopback: the cluster runs on this machine, the node is this host",
                    ),
                    verdict(
                        Tri::Yes,
                        Confidence::Medium,
                        "provider",
                        provider.as_str(),
                        "the node is this host: kube-proxy in iptables mode serves 127.0.0.1:<nodePort> (not in \
                         nftables mode)",
                    ),
                )
            } else {
                let (node_value, ports_value, how) = if provider == Provider::K3s {
                    (
                        Tri::No,
                        Tri::Yes,
                        "k3s cannot run natively here: it is in a VM (e.g. Lima's k3s template) whose slirp address \
                         is not routed, and whose guest agent forwards NodePorts to localhost",
                    )
                } else {
                    (
                        Tri::Unknown,
                        Tri::No,
                        "microk8s runs in a multipass VM here; whether its address is routable is unconfirmed",
                    )
                };
                (
                    verdict(
                        node_value,
                        Confidence::Low,
                        "host kind",
                        host_name(host),
                        how,
                    ),
                    verdict(
                        ports_value,
                        Confidence::Low,
                        "host kind",
                        host_name(host),
                        how,
                    ),
                )
            }
        }
        Provider::Gke | Provider::Eks | Provider::Aks => (
            verdict(
                Tri::Unknown,
                Confidence::Low,
                "provider",
                provider.as_str(),
                "cloud node addresses are reachable only through VPC routes, VPNs or firewall rules kubeway cannot see",
            ),
            verdict(
                Tri::No,
                Confidence::High,
                "provider",
                provider.as_str(),
                "a cloud cluster's NodePorts are on cloud nodes, not on this host",
            ),
        ),
        Provider::Generic => {
            if local_api {
                let unknown = || {
                    verdict(
                        Tri::Unknown,
                        Confidence::Low,
                        "kubeconfig cluster server",
                        server,
                        "the API is on loopback, but the environment is not recognised: kubeway probes paths live",
                    )
                };
                (unknown(), unknown())
            } else {
                (remote_node_verdict(snap), remote_nodeports_verdict(server))
            }
        }
        // minikube has its own analysis; keep the match total without panicking.
        Provider::Minikube => (
            verdict(
                Tri::Unknown,
                Confidence::Low,
                "provider",
                "minikube",
                "see the minikube driver analysis",
            ),
            verdict(
                Tri::Unknown,
                Confidence::Low,
                "provider",
                "minikube",
                "see the minikube driver analysis",
            ),
        ),
    }
}

pub(crate) fn load_balancer(
    provider: Provider,
    dd_mode: Option<DockerDesktopMode>,
    host: HostKind,
    snap: &EnvSnapshot,
    node_reachable: &Verdict,
) -> LbVerdict {
    let mut evidence: Vec<Evidence> = snap
        .lb_hints
        .iter()
        .map(|h| {
            let implies = match h.kind {
                LbHintKind::K3sServiceLb => "k3s ServiceLB (klipper-lb) is serving LoadBalancers",
                LbHintKind::MetalLb => "MetalLB is installed",
                LbHintKind::CloudProviderKind => "cloud-provider-kind is serving LoadBalancers",
                LbHintKind::DockerDesktopVpnkit => {
                    "Docker Desktop's vpnkit-controller is serving LoadBalancers"
                }
            };
            Evidence::new(
                "cluster LoadBalancer implementation",
                h.observed.clone(),
                implies,
                Weight::Decisive,
            )
        })
        .collect();
    let hinted = [
        (LbHintKind::MetalLb, LbSupport::MetalLb),
        (LbHintKind::CloudProviderKind, LbSupport::CloudProviderKind),
        (LbHintKind::K3sServiceLb, LbSupport::K3sServiceLb),
        (LbHintKind::DockerDesktopVpnkit, LbSupport::DockerDesktop),
    ]
    .into_iter()
    .find(|(kind, _)| snap.lb_hints.iter().any(|h| h.kind == *kind))
    .map(|(_, support)| support);

    let disabled_on = snap.nodes.iter().find(|n| servicelb_disabled(n));
    let (support, confidence, why) = if let Some(support) = hinted {
        (support, Confidence::High, None)
    } else if provider.is_k3s_based() && provider != Provider::OrbStack && disabled_on.is_some() {
        let node = disabled_on.map(|n| n.name.as_str()).unwrap_or_default();
        evidence.push(Evidence::new(
            format!("node/{node} annotations[k3s.io/node-args]"),
            "--disable servicelb",
            "k3s ServiceLB is disabled and no other implementation was seen",
            Weight::Decisive,
        ));
        (LbSupport::None, Confidence::High, None)
    } else {
        match provider {
            Provider::K3s | Provider::K3d | Provider::Colima | Provider::RancherDesktop => (
                LbSupport::K3sServiceLb,
                Confidence::High,
                Some(
                    "k3s ships ServiceLB (klipper-lb): ingress = node addresses, hostPort on every node",
                ),
            ),
            Provider::OrbStack => (
                LbSupport::OrbStack,
                Confidence::High,
                Some("OrbStack serves LoadBalancers itself, at *.k8s.orb.local"),
            ),
            Provider::DockerDesktop => match dd_mode {
                Some(DockerDesktopMode::Kubeadm) => (
                    LbSupport::DockerDesktop,
                    Confidence::High,
                    Some(
                        "vpnkit-controller opens host 0.0.0.0:<port> and sets ingress hostname localhost",
                    ),
                ),
                _ => (
                    LbSupport::CloudProviderKind,
                    Confidence::Low,
                    Some(
                        "Docker Desktop's kind provisioner ships desktop-cloud-provider-kind (behaviour unconfirmed)",
                    ),
                ),
            },
            Provider::Minikube => (
                LbSupport::None,
                Confidence::High,
                Some(
                    "minikube has no LoadBalancer controller: Services stay <pending> without minikube tunnel",
                ),
            ),
            Provider::Kind => (
                LbSupport::None,
                Confidence::Medium,
                Some(
                    "kind has no LoadBalancer controller unless cloud-provider-kind runs on the host",
                ),
            ),
            Provider::MicroK8s => (
                LbSupport::None,
                Confidence::Medium,
                Some("microk8s needs the metallb addon for LoadBalancers"),
            ),
            Provider::Gke | Provider::Eks | Provider::Aks => (
                LbSupport::CloudProvider,
                Confidence::High,
                Some("managed clusters provision cloud load balancers"),
            ),
            Provider::Generic => (
                LbSupport::Unknown,
                Confidence::Low,
                Some("no LoadBalancer implementation was observed"),
            ),
        }
    };
    if let Some(why) = why {
        evidence.push(Evidence::new(
            "provider",
            provider.as_str(),
            why,
            Weight::Strong,
        ));
    }

    let reachable = node_reachable.value;
    let access = match support {
        LbSupport::DockerDesktop => LbAccess::LocalhostPort,
        // Docker Desktop's kind-mode LB is inferred, not observed: do not promise its address.
        LbSupport::CloudProviderKind if confidence == Confidence::Low => LbAccess::Unknown,
        LbSupport::OrbStack | LbSupport::CloudProvider | LbSupport::CloudProviderKind => {
            LbAccess::IngressAddress
        }
        LbSupport::None => LbAccess::NotReachable,
        LbSupport::Unknown => LbAccess::Unknown,
        LbSupport::MetalLb => match reachable {
            Tri::Yes => LbAccess::IngressAddress,
            _ => LbAccess::Unknown,
        },
        LbSupport::K3sServiceLb => match (provider, reachable) {
            (_, Tri::Yes) => LbAccess::IngressAddress,
            (Provider::Colima | Provider::RancherDesktop, _) => LbAccess::LocalhostPort,
            (Provider::K3s, _) if matches!(host, HostKind::MacOs | HostKind::Windows) => {
                LbAccess::LocalhostPort
            }
            (_, Tri::No) => LbAccess::NotReachable,
            (_, Tri::Unknown) => LbAccess::Unknown,
        },
    };
    LbVerdict {
        support,
        confidence,
        access,
        evidence,
    }
}

pub(crate) fn strategy(node: &Verdict, nodeports: &Verdict, lb: &LbVerdict) -> String {
    let mut parts = Vec::new();
    if nodeports.value == Tri::Yes {
        parts.push("NodePort Services at localhost:<nodePort>".to_string());
    } else if node.value == Tri::Yes {
        parts.push("NodePort Services at <node InternalIP>:<nodePort>".to_string());
    }
    match lb.access {
        LbAccess::LocalhostPort => {
            parts.push("LoadBalancer Services at localhost:<port>".to_string())
        }
        LbAccess::IngressAddress => {
            parts.push("LoadBalancer Services at their EXTERNAL-IP".to_string())
        }
        LbAccess::NotReachable => parts.push(
            "LoadBalancer Services through `kubeway tunnel` (no usable EXTERNAL-IP here)"
                .to_string(),
        ),
        LbAccess::Unknown => {}
    }
    if parts.is_empty() {
        "no direct way from this host to the nodes is known: kubeway opens every Service through a port-forward over \
         the API server, and checks direct paths live"
            .to_string()
    } else {
        parts.push("everything else through a port-forward over the API server".to_string());
        parts.join("; ")
    }
}
