//! The canonical look of each environment (kubeconfig names, node names, labels, providerID,
//! nodeInfo), as data.
//!
//! The lab presents itself with a persona and `kubeway env` must recognise it: both read this one
//! table, and a test checks that [`detect`](crate::env::detect) maps every persona back to its
//! provider. Values follow `shared/reference/local-environments.md` §1 and §4; where the reference
//! has no observed value (cloud image names, Rancher Desktop's OS image) the value is a plausible
//! illustration, marked as such below.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::env::{
    EnvSnapshot, HostFacts, HostOs, KubeconfigExtension, KubeconfigFacts, NodeAddress, NodeFacts,
    NodeInfo, Provider,
};

/// The name of the kubeconfig cluster extension by which a namespace-mode lab names the network
/// namespace its kubeconfig is for (`extension: {netns: NAME}`); kubeway refuses to dial such a
/// kubeconfig from any other network namespace.
pub const LAB_NETNS_EXTENSION: &str = "kubeway-lab";

/// How one environment looks from the API and the kubeconfig.
///
/// Strings in `provider_id_pattern`, `labels*` and `annotations` may hold `{node}` (the node name),
/// `{index}` (0-based node index) and `{address}` (the node's InternalIP); [`PersonaSpec::node`]
/// fills them in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersonaSpec {
    /// The provider this persona stands for.
    pub provider: Provider,
    /// Context name.
    pub context: String,
    /// Cluster name.
    pub cluster: String,
    /// User (AuthInfo) name.
    pub user: String,
    /// Extensions on the kubeconfig cluster entry.
    pub cluster_extensions: Vec<KubeconfigExtension>,
    /// Extensions on the kubeconfig context entry.
    pub context_extensions: Vec<KubeconfigExtension>,
    /// The `server:` URL the real environment writes (the lab uses its own loopback URL instead).
    pub server_example: String,
    /// Node names in creation order: the control plane first, then workers. Single-node
    /// environments list one.
    pub node_names: Vec<String>,
    /// `spec.providerID`, or `None` when the environment leaves it empty.
    pub provider_id_pattern: Option<String>,
    /// Labels on every node.
    pub labels: BTreeMap<String, String>,
    /// Extra labels on the control-plane node (index 0).
    pub control_plane_labels: BTreeMap<String, String>,
    /// Extra labels on worker nodes (index ≥ 1).
    pub worker_labels: BTreeMap<String, String>,
    /// Annotations on every node.
    pub annotations: BTreeMap<String, String>,
    /// `status.nodeInfo.osImage`.
    pub os_image: String,
    /// `status.nodeInfo.kernelVersion`.
    pub kernel_version: String,
    /// Suffix of the kubelet and server versions (`+k3s1`, `+orb1`, `-gke.1023000`, or empty).
    pub version_suffix: String,
    /// The Kubernetes version the persona reports by default (`v1.33.5`), without suffix.
    pub kubernetes_version: String,
    /// `status.nodeInfo.containerRuntimeVersion`.
    pub container_runtime_version: String,
    /// Whether the environment ships a LoadBalancer implementation.
    pub builtin_load_balancer: bool,
    /// Whether NodePorts answer on the host's localhost out of the box (on `typical_host`).
    pub nodeports_on_localhost: bool,
    /// The host OS the environment is usually met on; the reachability flags above hold there.
    pub typical_host: HostOs,
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn fill(template: &str, node: &str, index: usize, address: &str) -> String {
    template
        .replace("{node}", node)
        .replace("{index}", &index.to_string())
        .replace("{address}", address)
}

impl PersonaSpec {
    /// The kubelet and `/version` gitVersion for a base version (`v1.33.5` → `v1.33.5+k3s1`).
    pub fn git_version(&self, base: &str) -> String {
        format!("{base}{}", self.version_suffix)
    }

    /// The node at `index` (0 = control plane) with the given InternalIP, or `None` beyond
    /// `node_names`.
    pub fn node(&self, index: usize, internal_ip: &str) -> Option<NodeFacts> {
        let name = self.node_names.get(index)?;
        let expand = |m: &BTreeMap<String, String>| -> BTreeMap<String, String> {
            m.iter()
                .map(|(k, v)| (k.clone(), fill(v, name, index, internal_ip)))
                .collect()
        };
        let mut labels = expand(&self.labels);
        labels.extend(expand(if index == 0 {
            &self.control_plane_labels
        } else {
            &self.worker_labels
        }));
        Some(NodeFacts {
            name: name.clone(),
            provider_id: self
                .provider_id_pattern
                .as_deref()
                .map(|p| fill(p, name, index, internal_ip)),
            labels,
            annotations: expand(&self.annotations),
            addresses: vec![
                NodeAddress {
                    kind: "InternalIP".into(),
                    address: internal_ip.to_string(),
                },
                NodeAddress {
                    kind: "Hostname".into(),
                    address: name.clone(),
                },
            ],
            info: NodeInfo {
                os_image: self.os_image.clone(),
                kernel_version: self.kernel_version.clone(),
                kubelet_version: self.git_version(&self.kubernetes_version),
                container_runtime_version: self.container_runtime_version.clone(),
                operating_system: "linux".into(),
                architecture: "amd64".into(),
            },
        })
    }

    /// The kubeconfig facts of this persona with the given `server:` URL.
    pub fn kubeconfig_facts(&self, server: &str) -> KubeconfigFacts {
        KubeconfigFacts {
            context: self.context.clone(),
            cluster: self.cluster.clone(),
            user: self.user.clone(),
            server: server.to_string(),
            cluster_extensions: self.cluster_extensions.clone(),
            context_extensions: self.context_extensions.clone(),
        }
    }

    /// A snapshot as kubeway would collect it from a lab presenting this persona: one node per
    /// InternalIP (at most `node_names.len()`), `/version` with the persona's suffix, and the given
    /// host.
    pub fn snapshot(&self, server: &str, internal_ips: &[&str], host: HostFacts) -> EnvSnapshot {
        EnvSnapshot {
            kubeconfig: self.kubeconfig_facts(server),
            nodes: internal_ips
                .iter()
                .enumerate()
                .filter_map(|(i, ip)| self.node(i, ip))
                .collect(),
            server_version: Some(self.git_version(&self.kubernetes_version)),
            host,
            ..EnvSnapshot::default()
        }
    }
}

/// Every persona, one per [`Provider`].
pub fn personas() -> Vec<PersonaSpec> {
    Provider::ALL.into_iter().map(persona).collect()
}

fn minikube_extension(name: &str) -> KubeconfigExtension {
    let raw = json!({
        "last-update": "Wed, 18 Jun 2025 15:29:11 UTC",
        "provider": "minikube.sigs.k8s.io",
        "version": "v1.36.0",
    });
    KubeconfigExtension {
        name: name.to_string(),
        provider: Some("minikube.sigs.k8s.io".to_string()),
        raw,
    }
}

const KUBEADM_CP: [(&str, &str); 2] = [
    ("node-role.kubernetes.io/control-plane", ""),
    (
        "node.kubernetes.io/exclude-from-external-load-balancers",
        "",
    ),
];
const K3S_CP: [(&str, &str); 2] = [
    ("node-role.kubernetes.io/control-plane", "true"),
    ("node-role.kubernetes.io/master", "true"),
];
const BASE_LABELS: [(&str, &str); 5] = [
    ("beta.kubernetes.io/arch", "amd64"),
    ("beta.kubernetes.io/os", "linux"),
    ("kubernetes.io/arch", "amd64"),
    ("kubernetes.io/hostname", "{node}"),
    ("kubernetes.io/os", "linux"),
];

fn with_base(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut labels = map(&BASE_LABELS);
    labels.extend(map(extra));
    labels
}

fn k3s_annotations(node_args: &str) -> BTreeMap<String, String> {
    map(&[
        ("flannel.alpha.coreos.com/backend-type", "vxlan"),
        ("flannel.alpha.coreos.com/public-ip", "{address}"),
        ("k3s.io/hostname", "{node}"),
        ("k3s.io/internal-ip", "{address}"),
        ("k3s.io/node-args", node_args),
        ("node.alpha.kubernetes.io/ttl", "0"),
    ])
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// The canonical persona of `provider`.
pub fn persona(provider: Provider) -> PersonaSpec {
    let k3s_labels = with_base(&[
        ("beta.kubernetes.io/instance-type", "k3s"),
        ("node.kubernetes.io/instance-type", "k3s"),
    ]);
    let same = |name: &str| (name.to_string(), name.to_string(), name.to_string());
    let base = PersonaSpec {
        provider,
        context: String::new(),
        cluster: String::new(),
        user: String::new(),
        cluster_extensions: Vec::new(),
        context_extensions: Vec::new(),
        server_example: String::new(),
        node_names: Vec::new(),
        provider_id_pattern: None,
        labels: with_base(&[]),
        control_plane_labels: map(&KUBEADM_CP),
        worker_labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
        os_image: "Ubuntu 24.04.1 LTS".into(),
        kernel_version: "6.8.0-48-generic".into(),
        version_suffix: String::new(),
        kubernetes_version: "v1.33.5".into(),
        container_runtime_version: "containerd://1.7.24".into(),
        builtin_load_balancer: false,
        nodeports_on_localhost: false,
        typical_host: HostOs::Linux,
    };
    match provider {
        Provider::Minikube => {
            let (context, cluster, user) = same("minikube");
            PersonaSpec {
                context,
                cluster,
                user,
                cluster_extensions: vec![minikube_extension("cluster_info")],
                context_extensions: vec![minikube_extension("context_info")],
                server_example: "https://192.168.49.2:8443".into(),
                node_names: names(&["minikube", "minikube-m02", "minikube-m03"]),
                labels: with_base(&[
                    ("minikube.k8s.io/commit", "f8f52f5de11fc6ad8244afac475e1d0f96841df1"),
                    ("minikube.k8s.io/name", "minikube"),
                    ("minikube.k8s.io/updated_at", "2025_06_18T15_29_11_0700"),
                    ("minikube.k8s.io/version", "v1.36.0"),
                ]),
                control_plane_labels: {
                    let mut m = map(&KUBEADM_CP);
                    m.insert("minikube.k8s.io/primary".into(), "true".into());
                    m
                },
                worker_labels: map(&[("minikube.k8s.io/primary", "false")]),
                annotations: map(&[
                    ("kubeadm.alpha.kubernetes.io/cri-socket", "unix:///var/run/cri-dockerd.sock"),
                    ("node.alpha.kubernetes.io/ttl", "0"),
                ]),
                os_image: "Ubuntu 22.04.5 LTS".into(),
                container_runtime_version: "docker://28.1.1".into(),
                ..base
            }
        }
        Provider::Kind => PersonaSpec {
            context: "kind-kind".into(),
            cluster: "kind-kind".into(),
            user: "kind-kind".into(),
            server_example: "https://127.0.0.1:57420".into(),
            node_names: names(&["kind-control-plane", "kind-worker", "kind-worker2"]),
            provider_id_pattern: Some("kind://docker/kind/{node}".into()),
            annotations: map(&[
                ("kubeadm.alpha.kubernetes.io/cri-socket", "unix:///run/containerd/containerd.sock"),
                ("node.alpha.kubernetes.io/ttl", "0"),
            ]),
            os_image: "Debian GNU/Linux 12 (bookworm)".into(),
            container_runtime_version: "containerd://2.1.3".into(),
            ..base
        },
        Provider::K3d => PersonaSpec {
            context: "k3d-k3s-default".into(),
            cluster: "k3d-k3s-default".into(),
            user: "admin@k3d-k3s-default".into(),
            server_example: "https://0.0.0.0:6550".into(),
            node_names: names(&[
                "k3d-k3s-default-server-0",
                "k3d-k3s-default-agent-0",
                "k3d-k3s-default-agent-1",
            ]),
            provider_id_pattern: Some("k3s://{node}".into()),
            labels: k3s_labels,
            control_plane_labels: map(&K3S_CP),
            annotations: k3s_annotations(r#"["server","--tls-san","0.0.0.0"]"#),
            os_image: "K3s v1.33.5+k3s1".into(),
            version_suffix: "+k3s1".into(),
            container_runtime_version: "containerd://2.1.4-k3s1".into(),
            builtin_load_balancer: true,
            ..base
        },
        Provider::K3s => {
            let (context, cluster, user) = same("default");
            PersonaSpec {
                context,
                cluster,
                user,
                server_example: "https://127.0.0.1:6443".into(),
                node_names: names(&["devbox", "worker-1", "worker-2"]),
                provider_id_pattern: Some("k3s://{node}".into()),
                labels: k3s_labels,
                control_plane_labels: map(&K3S_CP),
                annotations: k3s_annotations(r#"["server","--write-kubeconfig-mode","644"]"#),
                version_suffix: "+k3s1".into(),
                container_runtime_version: "containerd://2.1.4-k3s1".into(),
                builtin_load_balancer: true,
                nodeports_on_localhost: true,
                ..base
            }
        }
        Provider::DockerDesktop => {
            let (context, cluster, user) = same("docker-desktop");
            PersonaSpec {
                context,
                cluster,
                user,
                server_example: "https://kubernetes.docker.internal:6443".into(),
                node_names: names(&["docker-desktop"]),
                annotations: map(&[
                    ("kubeadm.alpha.kubernetes.io/cri-socket", "unix:///var/run/cri-dockerd.sock"),
                    ("node.alpha.kubernetes.io/ttl", "0"),
                ]),
                os_image: "Docker Desktop".into(),
                kernel_version: "6.10.14-linuxkit".into(),
                container_runtime_version: "docker://27.4.0".into(),
                builtin_load_balancer: true,
                nodeports_on_localhost: true,
                typical_host: HostOs::MacOs,
                ..base
            }
        }
        Provider::RancherDesktop => {
            let (context, cluster, user) = same("rancher-desktop");
            PersonaSpec {
                context,
                cluster,
                user,
                server_example: "https://127.0.0.1:6443".into(),
                node_names: names(&["lima-rancher-desktop"]),
                provider_id_pattern: Some("k3s://{node}".into()),
                labels: k3s_labels,
                control_plane_labels: map(&K3S_CP),
                annotations: k3s_annotations(r#"["server","--node-ip","192.168.5.15"]"#),
                // Illustrative: the reference records no osImage/kernel for Rancher Desktop's VM.
                os_image: "Alpine Linux v3.20".into(),
                kernel_version: "6.6.58-0-virt".into(),
                version_suffix: "+k3s1".into(),
                container_runtime_version: "docker://27.3.1".into(),
                builtin_load_balancer: true,
                nodeports_on_localhost: true,
                typical_host: HostOs::MacOs,
                ..base
            }
        }
        Provider::Colima => {
            let (context, cluster, user) = same("colima");
            PersonaSpec {
                context,
                cluster,
                user,
                server_example: "https://127.0.0.1:6443".into(),
                node_names: names(&["colima"]),
                provider_id_pattern: Some("k3s://{node}".into()),
                labels: k3s_labels,
                control_plane_labels: map(&K3S_CP),
                annotations: k3s_annotations(r#"["server","--disable","traefik","--flannel-iface","eth0"]"#),
                version_suffix: "+k3s1".into(),
                container_runtime_version: "docker://27.4.0".into(),
                builtin_load_balancer: true,
                nodeports_on_localhost: true,
                typical_host: HostOs::MacOs,
                ..base
            }
        }
        Provider::OrbStack => {
            let (context, cluster, user) = same("orbstack");
            let mut annotations = k3s_annotations(
                r#"["server","--disable","metrics-server,traefik,coredns","--https-listen-port","26443","--docker","--flannel-backend","host-gw","--cluster-cidr","192.168.194.0/25,fd07:b51a:cc66:a::/72","--service-cidr","192.168.194.128/25,fd07:b51a:cc66:a:8000::/112"]"#,
            );
            annotations.insert("flannel.alpha.coreos.com/backend-type".into(), "host-gw".into());
            PersonaSpec {
                context,
                cluster,
                user,
                server_example: "https://127.0.0.1:26443".into(),
                node_names: names(&["orbstack"]),
                provider_id_pattern: Some("k3s://orbstack".into()),
                labels: k3s_labels,
                control_plane_labels: map(&[("node-role.kubernetes.io/control-plane", "true")]),
                annotations,
                os_image: "OrbStack".into(),
                kernel_version: "6.17.8-orbstack-00308-g8f9c941121b1".into(),
                version_suffix: "+orb1".into(),
                container_runtime_version: "docker://28.5.2".into(),
                builtin_load_balancer: true,
                nodeports_on_localhost: true,
                typical_host: HostOs::MacOs,
                ..base
            }
        }
        Provider::MicroK8s => PersonaSpec {
            context: "microk8s".into(),
            cluster: "microk8s-cluster".into(),
            user: "admin".into(),
            server_example: "https://127.0.0.1:16443".into(),
            node_names: names(&["devbox", "worker-1", "worker-2"]),
            labels: with_base(&[("microk8s.io/cluster", "true")]),
            control_plane_labels: map(&[("node.kubernetes.io/microk8s-controlplane", "microk8s-controlplane")]),
            worker_labels: map(&[("node.kubernetes.io/microk8s-worker", "microk8s-worker")]),
            annotations: map(&[("node.alpha.kubernetes.io/ttl", "0")]),
            container_runtime_version: "containerd://1.6.28".into(),
            nodeports_on_localhost: true,
            ..base
        },
        // Cloud personas are illustrative: shapes follow each vendor's conventions, values are made
        // up.
        Provider::Gke => {
            let (context, cluster, user) = same("gke_demo-project_us-central1-a_demo");
            PersonaSpec {
                context,
                cluster,
                user,
                server_example: "https://203.0.113.10".into(),
                node_names: names(&[
                    "gke-demo-default-pool-1a2b3c4d-x7k2",
                    "gke-demo-default-pool-1a2b3c4d-p9q4",
                    "gke-demo-default-pool-1a2b3c4d-m3n8",
                ]),
                provider_id_pattern: Some("gce://demo-project/us-central1-a/{node}".into()),
                labels: with_base(&[
                    ("cloud.google.com/gke-nodepool", "default-pool"),
                    ("topology.kubernetes.io/zone", "us-central1-a"),
                ]),
                control_plane_labels: BTreeMap::new(),
                os_image: "Container-Optimized OS from Google".into(),
                kernel_version: "6.6.56+".into(),
                version_suffix: "-gke.1023000".into(),
                builtin_load_balancer: true,
                ..base
            }
        }
        Provider::Eks => {
            let (context, cluster, user) = same("arn:aws:eks:us-west-2:111122223333:cluster/demo");
            PersonaSpec {
                context,
                cluster,
                user,
                server_example: "https://0123456789ABCDEF0123456789ABCDEF.gr7.us-west-2.eks.amazonaws.com".into(),
                node_names: names(&[
                    "ip-10-0-1-23.us-west-2.compute.internal",
                    "ip-10-0-2-45.us-west-2.compute.internal",
                    "ip-10-0-3-67.us-west-2.compute.internal",
                ]),
                provider_id_pattern: Some("aws:///us-west-2a/i-0abc123def456789{index}".into()),
                labels: with_base(&[
                    ("eks.amazonaws.com/nodegroup", "default"),
                    ("topology.kubernetes.io/zone", "us-west-2a"),
                ]),
                control_plane_labels: BTreeMap::new(),
                os_image: "Amazon Linux 2023.6.20241212".into(),
                kernel_version: "6.1.119-129.201.amzn2023.x86_64".into(),
                version_suffix: "-eks-7f9249a".into(),
                builtin_load_balancer: true,
                ..base
            }
        }
        Provider::Aks => PersonaSpec {
            context: "demo".into(),
            cluster: "demo".into(),
            user: "clusterUser_demo-rg_demo".into(),
            server_example: "https://demo-dns-12345678.hcp.eastus.azmk8s.io:443".into(),
            node_names: names(&[
                "aks-nodepool1-12345678-vmss000000",
                "aks-nodepool1-12345678-vmss000001",
                "aks-nodepool1-12345678-vmss000002",
            ]),
            provider_id_pattern: Some(
                "azure:///subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/mc_demo-rg_demo_eastus/providers/Microsoft.Compute/virtualMachineScaleSets/aks-nodepool1-12345678-vmss/virtualMachines/{index}"
                    .into(),
            ),
            labels: with_base(&[
                ("agentpool", "nodepool1"),
                ("kubernetes.azure.com/cluster", "MC_demo-rg_demo_eastus"),
            ]),
            control_plane_labels: BTreeMap::new(),
            os_image: "Ubuntu 22.04.5 LTS".into(),
            kernel_version: "5.15.0-1079-azure".into(),
            container_runtime_version: "containerd://1.7.25-1".into(),
            builtin_load_balancer: true,
            ..base
        },
        Provider::Generic => PersonaSpec {
            context: "kubernetes-admin@kubernetes".into(),
            cluster: "kubernetes".into(),
            user: "kubernetes-admin".into(),
            server_example: "https://10.0.0.10:6443".into(),
            node_names: names(&["cp-1", "worker-1", "worker-2"]),
            annotations: map(&[
                ("kubeadm.alpha.kubernetes.io/cri-socket", "unix:///run/containerd/containerd.sock"),
                ("node.alpha.kubernetes.io/ttl", "0"),
            ]),
            ..base
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::{LbSupport, Tri, detect};

    #[test]
    fn every_persona_is_detected_as_itself_over_loopback() {
        for spec in personas() {
            let host = HostFacts::new(spec.typical_host);
            // Loopback lab: a random API port and 127.x node addresses.
            let snap = spec.snapshot("https://127.0.0.1:41234", &["127.0.0.2", "127.0.0.3"], host);
            assert!(!snap.nodes.is_empty(), "{:?}", spec.provider);
            let d = detect(&snap);
            assert_eq!(
                d.provider, spec.provider,
                "persona {:?}: {:#?}",
                spec.provider, d.evidence
            );
            assert!(!d.evidence.is_empty());
            assert!(
                d.evidence.iter().any(|e| e.signal == d.decided_by),
                "{:?}: decided_by {} not in evidence",
                spec.provider,
                d.decided_by
            );
            let lb_builtin = !matches!(
                d.load_balancer.support,
                LbSupport::None | LbSupport::Unknown
            );
            assert_eq!(
                lb_builtin, spec.builtin_load_balancer,
                "{:?} LB: {:?}",
                spec.provider, d.load_balancer
            );
            assert_eq!(
                d.nodeports_on_localhost.value == Tri::Yes,
                spec.nodeports_on_localhost,
                "{:?} nodeports: {:?}",
                spec.provider,
                d.nodeports_on_localhost
            );
        }
    }

    #[test]
    fn persona_provider_does_not_depend_on_the_host() {
        for spec in personas() {
            for os in [HostOs::Linux, HostOs::MacOs, HostOs::Windows] {
                let snap =
                    spec.snapshot("https://127.0.0.1:6443", &["127.0.0.2"], HostFacts::new(os));
                let d = detect(&snap);
                assert_eq!(d.provider, spec.provider, "{:?} on {os:?}", spec.provider);
                assert!(
                    d.conflicts.is_empty(),
                    "{:?}: {:?}",
                    spec.provider,
                    d.conflicts
                );
            }
        }
    }

    #[test]
    fn personas_round_trip_through_node_json() {
        for spec in personas() {
            let node = spec.node(0, "127.0.0.2").unwrap();
            assert_eq!(
                NodeFacts::from_node_json(&node.to_node_json()).unwrap(),
                node
            );
            assert!(
                !node.labels.values().any(|v| v.contains('{')),
                "{:?} unfilled placeholder",
                spec.provider
            );
            assert!(spec.node(spec.node_names.len(), "127.0.0.9").is_none());
        }
    }

    #[test]
    fn multi_node_personas_label_workers() {
        let kind = persona(Provider::Kind);
        let worker = kind.node(1, "127.0.0.3").unwrap();
        assert_eq!(worker.name, "kind-worker");
        assert_eq!(
            worker.provider_id.as_deref(),
            Some("kind://docker/kind/kind-worker")
        );
        assert!(!worker.is_control_plane());
        let mk = persona(Provider::Minikube).node(1, "127.0.0.3").unwrap();
        assert_eq!(mk.labels["minikube.k8s.io/primary"], "false");
        assert_eq!(mk.labels["kubernetes.io/hostname"], "minikube-m02");
    }
}
