//! The result of environment detection: provider, driver, host kind, reachability verdicts, each
//! with evidence.
//!
//! Every type serializes with stable snake_case names, for `kubeway env -o json`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The software that runs the cluster behind the context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Provider {
    /// minikube, any driver.
    #[serde(rename = "minikube")]
    Minikube,
    /// kind (kubernetes-sigs/kind) outside Docker Desktop.
    #[serde(rename = "kind")]
    Kind,
    /// k3d (k3s in Docker containers).
    #[serde(rename = "k3d")]
    K3d,
    /// k3s: native, or a Lima k3s template.
    #[serde(rename = "k3s")]
    K3s,
    /// Docker Desktop's built-in Kubernetes (kubeadm or kind provisioner).
    #[serde(rename = "docker_desktop")]
    DockerDesktop,
    /// Rancher Desktop (k3s in a Lima VM or WSL2).
    #[serde(rename = "rancher_desktop")]
    RancherDesktop,
    /// colima's k3s (in a Lima VM).
    #[serde(rename = "colima")]
    Colima,
    /// OrbStack's Kubernetes (k3s-derived, `+orb`).
    #[serde(rename = "orbstack")]
    OrbStack,
    /// Canonical microk8s.
    #[serde(rename = "microk8s")]
    MicroK8s,
    /// Google Kubernetes Engine.
    #[serde(rename = "gke")]
    Gke,
    /// Amazon Elastic Kubernetes Service.
    #[serde(rename = "eks")]
    Eks,
    /// Azure Kubernetes Service.
    #[serde(rename = "aks")]
    Aks,
    /// Any other cluster: kubeadm, a remote distribution, something unrecognised.
    #[serde(rename = "generic")]
    Generic,
}

impl Provider {
    /// Every provider.
    pub const ALL: [Provider; 13] = [
        Provider::Minikube,
        Provider::Kind,
        Provider::K3d,
        Provider::K3s,
        Provider::DockerDesktop,
        Provider::RancherDesktop,
        Provider::Colima,
        Provider::OrbStack,
        Provider::MicroK8s,
        Provider::Gke,
        Provider::Eks,
        Provider::Aks,
        Provider::Generic,
    ];

    /// The stable snake_case identifier (as in JSON output).
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Minikube => "minikube",
            Provider::Kind => "kind",
            Provider::K3d => "k3d",
            Provider::K3s => "k3s",
            Provider::DockerDesktop => "docker_desktop",
            Provider::RancherDesktop => "rancher_desktop",
            Provider::Colima => "colima",
            Provider::OrbStack => "orbstack",
            Provider::MicroK8s => "microk8s",
            Provider::Gke => "gke",
            Provider::Eks => "eks",
            Provider::Aks => "aks",
            Provider::Generic => "generic",
        }
    }

    /// The name people use for it (`Docker Desktop`, `OrbStack`).
    pub fn display_name(self) -> &'static str {
        match self {
            Provider::Minikube => "minikube",
            Provider::Kind => "kind",
            Provider::K3d => "k3d",
            Provider::K3s => "k3s",
            Provider::DockerDesktop => "Docker Desktop",
            Provider::RancherDesktop => "Rancher Desktop",
            Provider::Colima => "colima",
            Provider::OrbStack => "OrbStack",
            Provider::MicroK8s => "MicroK8s",
            Provider::Gke => "GKE",
            Provider::Eks => "EKS",
            Provider::Aks => "AKS",
            Provider::Generic => "generic Kubernetes",
        }
    }

    /// Whether the cluster normally runs on the developer's machine.
    pub fn is_local(self) -> bool {
        !matches!(
            self,
            Provider::Gke | Provider::Eks | Provider::Aks | Provider::Generic
        )
    }

    /// Whether it is k3s underneath (and so shares k3s's node facts and ServiceLB).
    pub fn is_k3s_based(self) -> bool {
        matches!(
            self,
            Provider::K3s
                | Provider::K3d
                | Provider::RancherDesktop
                | Provider::Colima
                | Provider::OrbStack
        )
    }

    /// Whether it is a managed cloud service.
    pub fn is_cloud(self) -> bool {
        matches!(self, Provider::Gke | Provider::Eks | Provider::Aks)
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.display_name())
    }
}

/// How sure a conclusion is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Confidence {
    /// One weak hint, or an inference the reference marks UNCONFIRMED.
    Low,
    /// Several hints agree, or a documented default that a user could have changed.
    Medium,
    /// Facts from the cluster itself, or confirmed source code.
    High,
}

/// A three-valued answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tri {
    /// Yes.
    Yes,
    /// No.
    No,
    /// Not known from the facts at hand.
    Unknown,
}

impl fmt::Display for Tri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Tri::Yes => "yes",
            Tri::No => "no",
            Tri::Unknown => "unknown",
        })
    }
}

/// How much one piece of evidence counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Weight {
    /// A name or URL pattern; users can rename these.
    Hint,
    /// A fact that strongly suggests the conclusion.
    Strong,
    /// A fact that settles it (a node's providerID scheme, vendor labels).
    Decisive,
}

/// One observed fact and what it implies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// What was looked at, e.g. `node/kind-control-plane spec.providerID` or `kubeconfig context`.
    pub signal: String,
    /// What it said.
    pub value: String,
    /// What kubeway concludes from it.
    pub implies: String,
    /// How much it counts.
    pub weight: Weight,
}

impl Evidence {
    /// Builds one piece of evidence.
    pub fn new(
        signal: impl Into<String>,
        value: impl Into<String>,
        implies: impl Into<String>,
        weight: Weight,
    ) -> Self {
        Evidence {
            signal: signal.into(),
            value: value.into(),
            implies: implies.into(),
            weight,
        }
    }
}

/// A yes/no/unknown conclusion with its confidence and reasons.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// The answer.
    pub value: Tri,
    /// How sure it is.
    pub confidence: Confidence,
    /// Why.
    pub evidence: Vec<Evidence>,
}

/// Where kubeway itself runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostKind {
    /// Linux, on the metal or in a VM that is not one of the below.
    Linux,
    /// macOS.
    #[serde(rename = "macos")]
    MacOs,
    /// Windows, native.
    Windows,
    /// A WSL distribution (WSL2; WSL1 is reported the same way).
    Wsl2,
    /// Inside a Lima guest VM.
    LimaGuest,
}

/// Which provisioner Docker Desktop's Kubernetes uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DockerDesktopMode {
    /// The single-node kubeadm cluster (`docker-desktop` node, vpnkit-controller).
    Kubeadm,
    /// The kind provisioner (4.38+, `desktop-control-plane`).
    Kind,
}

/// A minikube driver name (`docker`, `kvm2`, …) or a group when only the group is known.
///
/// Serializes as its string form; unknown names round-trip through [`DriverName::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum DriverName {
    /// `docker` (KIC).
    Docker,
    /// `podman` (KIC).
    Podman,
    /// docker or podman, not known which: `kic`.
    Kic,
    /// `kvm2`.
    Kvm2,
    /// `qemu2` (`qemu`).
    Qemu2,
    /// `virtualbox`.
    Virtualbox,
    /// `hyperkit`.
    Hyperkit,
    /// `vfkit`.
    Vfkit,
    /// `krunkit`.
    Krunkit,
    /// `vmware`.
    Vmware,
    /// `parallels`.
    Parallels,
    /// `hyperv`.
    Hyperv,
    /// `none` (bare metal: the node is the host).
    None,
    /// `ssh` (an existing machine).
    Ssh,
    /// Some VM driver, not known which: `vm`.
    Vm,
    /// A driver name kubeway does not know.
    Other(String),
}

impl DriverName {
    /// Whether minikube's `IsKIC` holds (docker or podman).
    pub fn is_kic(&self) -> bool {
        matches!(
            self,
            DriverName::Docker | DriverName::Podman | DriverName::Kic
        )
    }

    /// The string form (`docker`, `kic`, `vm`, or the unknown name).
    pub fn as_str(&self) -> &str {
        match self {
            DriverName::Docker => "docker",
            DriverName::Podman => "podman",
            DriverName::Kic => "kic",
            DriverName::Kvm2 => "kvm2",
            DriverName::Qemu2 => "qemu2",
            DriverName::Virtualbox => "virtualbox",
            DriverName::Hyperkit => "hyperkit",
            DriverName::Vfkit => "vfkit",
            DriverName::Krunkit => "krunkit",
            DriverName::Vmware => "vmware",
            DriverName::Parallels => "parallels",
            DriverName::Hyperv => "hyperv",
            DriverName::None => "none",
            DriverName::Ssh => "ssh",
            DriverName::Vm => "vm",
            DriverName::Other(name) => name,
        }
    }
}

impl From<String> for DriverName {
    fn from(name: String) -> Self {
        match name.to_ascii_lowercase().as_str() {
            "docker" => DriverName::Docker,
            "podman" => DriverName::Podman,
            "kic" => DriverName::Kic,
            "kvm2" | "kvm" => DriverName::Kvm2,
            "qemu2" | "qemu" => DriverName::Qemu2,
            "virtualbox" => DriverName::Virtualbox,
            "hyperkit" => DriverName::Hyperkit,
            "vfkit" => DriverName::Vfkit,
            "krunkit" => DriverName::Krunkit,
            "vmware" | "vmwarefusion" => DriverName::Vmware,
            "parallels" => DriverName::Parallels,
            "hyperv" => DriverName::Hyperv,
            "none" => DriverName::None,
            "ssh" => DriverName::Ssh,
            "vm" => DriverName::Vm,
            _ => DriverName::Other(name),
        }
    }
}

impl From<DriverName> for String {
    fn from(name: DriverName) -> Self {
        name.as_str().to_string()
    }
}

impl fmt::Display for DriverName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kubeway concluded about a minikube profile's driver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinikubeDriver {
    /// The driver.
    pub name: DriverName,
    /// The profile's `Network` (`builtin`, `socket_vmnet`, …), when known.
    pub network: Option<String>,
    /// How sure the driver name is.
    pub confidence: Confidence,
    /// minikube's `NeedsPortForward(driver)` evaluated for this host: yes means the node IP is not
    /// reachable and minikube itself would tunnel over ssh.
    pub needs_port_forward: Tri,
}

/// The LoadBalancer implementation a cluster has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LbSupport {
    /// k3s ServiceLB (klipper-lb): a DaemonSet per Service, hostPorts on nodes.
    K3sServiceLb,
    /// Docker Desktop's vpnkit-controller: host `0.0.0.0:port`, ingress `localhost`.
    DockerDesktop,
    /// cloud-provider-kind: an Envoy container per Service.
    CloudProviderKind,
    /// MetalLB.
    #[serde(rename = "metallb")]
    MetalLb,
    /// OrbStack's built-in LoadBalancer (`*.k8s.orb.local`).
    #[serde(rename = "orbstack")]
    OrbStack,
    /// A cloud provider's load balancer (GKE, EKS, AKS).
    CloudProvider,
    /// No implementation: LoadBalancer Services stay `<pending>`.
    None,
    /// Not known.
    Unknown,
}

/// How the host reaches a LoadBalancer Service, once it has an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LbAccess {
    /// Dial the address in `status.loadBalancer.ingress` (IP or hostname) on the Service port.
    IngressAddress,
    /// Dial `localhost:<service port>`: a forwarder publishes LB ports on the host's loopback.
    LocalhostPort,
    /// The ingress address is not reachable from this host (or there is none).
    NotReachable,
    /// Not known.
    Unknown,
}

/// The LoadBalancer conclusion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LbVerdict {
    /// Which implementation.
    pub support: LbSupport,
    /// How sure.
    pub confidence: Confidence,
    /// How the host gets to an LB Service.
    pub access: LbAccess,
    /// Why.
    pub evidence: Vec<Evidence>,
}

/// Everything `kubeway env` concludes about the environment behind a context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Detection {
    /// The provider.
    pub provider: Provider,
    /// How sure the provider is.
    pub provider_confidence: Confidence,
    /// The signal that decided the provider (an [`Evidence::signal`] in `evidence`).
    pub decided_by: String,
    /// The minikube driver, for minikube.
    pub minikube_driver: Option<MinikubeDriver>,
    /// The Docker Desktop provisioner, for Docker Desktop.
    pub docker_desktop_mode: Option<DockerDesktopMode>,
    /// The container runtime segment of a kind providerID (`docker`, `podman`, `nerdctl`), for kind
    /// clusters.
    pub kind_node_runtime: Option<String>,
    /// Where kubeway runs.
    pub host: HostKind,
    /// Whether node InternalIPs are routable from the host.
    pub node_reachable: Verdict,
    /// Whether `localhost:<nodePort>` works with no extra setup.
    pub nodeports_on_localhost: Verdict,
    /// LoadBalancer support and access.
    pub load_balancer: LbVerdict,
    /// The facts behind the provider, driver and host conclusions.
    pub evidence: Vec<Evidence>,
    /// Signals that disagreed with the conclusion, and why they lost.
    pub conflicts: Vec<String>,
    /// Caveats worth telling the user (unsupported paths, unconfirmed behaviour).
    pub notes: Vec<String>,
    /// One line: what kubeway will do to reach Services here.
    pub strategy: String,
}
