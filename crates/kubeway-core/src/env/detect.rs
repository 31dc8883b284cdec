//! The detection rules: from an [`EnvSnapshot`] to a [`Detection`], cluster facts first, kubeconfig
//! names last.
//!
//! Order of trust (reference §1.4): node facts and `/version` (they come from the cluster and
//! cannot be renamed) outrank kubeconfig extensions, which outrank context/cluster names and server
//! URL patterns. A conclusion drawn from the kubeconfig alone is never `High`. When signals
//! disagree the losing ones stay in the evidence, marked, and a sentence in `conflicts` says why
//! they lost.

use super::address::{UrlHost, is_unspecified};
use super::detection::{
    Confidence, Detection, DockerDesktopMode, Evidence, HostKind, Provider, Tri, Weight,
};
use super::minikube;
use super::reach::{load_balancer, reachability, strategy};
use super::snapshot::{EnvSnapshot, HostFacts, HostOs, NodeFacts};

/// Detects the environment behind a snapshot. Pure: the same snapshot always gives the same
/// detection.
pub fn detect(snap: &EnvSnapshot) -> Detection {
    let mut ctx = Ctx::new(snap);
    let host = host_kind(&snap.host, &mut ctx.evidence);
    ctx.collect_cluster_claims();
    ctx.collect_kubeconfig_claims();
    let decision = ctx.decide();
    let provider = decision.provider;

    let mut notes = Vec::new();
    let mut minikube_driver = None;
    let (node_reachable, nodeports_on_localhost) = if provider == Provider::Minikube {
        let analysis = minikube::analyse(snap, host, &mut ctx.evidence);
        notes.extend(analysis.notes);
        minikube_driver = analysis.driver;
        (analysis.node_reachable, analysis.nodeports_on_localhost)
    } else {
        reachability(provider, decision.docker_desktop_mode, host, snap)
    };
    let load_balancer = load_balancer(
        provider,
        decision.docker_desktop_mode,
        host,
        snap,
        &node_reachable,
    );
    if provider == Provider::DockerDesktop
        && decision.docker_desktop_mode == Some(DockerDesktopMode::Kind)
    {
        notes.push(
            "Docker Desktop's kind provisioner: NodePort and LoadBalancer behaviour on the host is not confirmed; \
             kubeway verifies paths live and falls back to port-forward"
                .to_string(),
        );
    }
    if provider == Provider::Kind && node_reachable.value == Tri::No {
        notes.push(
            "kind nodes are not reachable from this host: NodePorts need extraPortMappings at cluster creation, \
             or use kubeway forward"
                .to_string(),
        );
    }
    let strategy = strategy(&node_reachable, &nodeports_on_localhost, &load_balancer);
    Detection {
        provider,
        provider_confidence: decision.confidence,
        decided_by: decision.decided_by,
        minikube_driver,
        docker_desktop_mode: decision.docker_desktop_mode,
        kind_node_runtime: decision.kind_node_runtime,
        host,
        node_reachable,
        nodeports_on_localhost,
        load_balancer,
        evidence: ctx.evidence,
        conflicts: ctx.conflicts,
        notes,
        strategy,
    }
}

fn host_kind(host: &HostFacts, evidence: &mut Vec<Evidence>) -> HostKind {
    match host.os {
        HostOs::MacOs => {
            evidence.push(Evidence::new(
                "host os",
                "macos",
                "host is macOS",
                Weight::Decisive,
            ));
            return HostKind::MacOs;
        }
        HostOs::Windows => {
            evidence.push(Evidence::new(
                "host os",
                "windows",
                "host is Windows",
                Weight::Decisive,
            ));
            return HostKind::Windows;
        }
        HostOs::Linux | HostOs::Other => {}
    }
    for var in ["WSL_DISTRO_NAME", "WSLPATH"] {
        if let Some(value) = host.var(var) {
            evidence.push(Evidence::new(
                format!("host env {var}"),
                value,
                "kubeway runs inside a WSL distribution",
                Weight::Decisive,
            ));
            return HostKind::Wsl2;
        }
    }
    if let Some(version) = &host.proc_version {
        let lower = version.to_ascii_lowercase();
        if lower.contains("microsoft") || lower.contains("wsl") {
            evidence.push(Evidence::new(
                "host /proc/version",
                version.trim(),
                "kubeway runs inside a WSL distribution",
                Weight::Decisive,
            ));
            return HostKind::Wsl2;
        }
    }
    if host.lima_cidata_mounted {
        evidence.push(Evidence::new(
            "host /mnt/lima-cidata",
            "present",
            "kubeway runs inside a Lima guest VM",
            Weight::Strong,
        ));
        return HostKind::LimaGuest;
    }
    if let Some(var) = host
        .env
        .keys()
        .find(|k| k.starts_with(HostFacts::LIMA_ENV_PREFIX))
    {
        evidence.push(Evidence::new(
            format!("host env {var}"),
            "set",
            "kubeway runs inside a Lima guest VM",
            Weight::Strong,
        ));
        return HostKind::LimaGuest;
    }
    let value = if host.os == HostOs::Other {
        "other (treated as linux)"
    } else {
        "linux"
    };
    evidence.push(Evidence::new(
        "host os",
        value,
        "host is Linux",
        Weight::Decisive,
    ));
    HostKind::Linux
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// Node objects and `/version`: facts of the cluster itself.
    Cluster,
    /// The kubeconfig: names and URLs a user may have edited.
    Kubeconfig,
}

#[derive(Debug, Clone, Copy)]
struct Claim {
    provider: Provider,
    /// A k3s signal that any k3s-based provider would show.
    family: bool,
    weight: Weight,
    source: Source,
    /// Index into `Ctx::evidence`.
    evidence: usize,
}

/// Where one fact points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Points {
    /// To one provider.
    To(Provider),
    /// To k3s or any product built on it (k3d, colima, Rancher Desktop, OrbStack).
    K3sFamily,
    /// Nowhere: context for other conclusions (e.g. the node runs in a LinuxKit VM).
    Nowhere,
}

impl Points {
    /// The claim this fact makes: a provider, and whether it is a k3s-family claim.
    fn claim(self) -> Option<(Provider, bool)> {
        match self {
            Points::To(provider) => Some((provider, false)),
            Points::K3sFamily => Some((Provider::K3s, true)),
            Points::Nowhere => None,
        }
    }
}

/// One fact of one node.
struct NodeSignal {
    points: Points,
    weight: Weight,
    field: String,
    value: String,
    implies: String,
}

fn signal(
    points: Points,
    weight: Weight,
    field: impl Into<String>,
    value: &str,
    implies: impl Into<String>,
) -> NodeSignal {
    NodeSignal {
        points,
        weight,
        field: field.into(),
        value: value.to_string(),
        implies: implies.into(),
    }
}

struct Decision {
    provider: Provider,
    confidence: Confidence,
    decided_by: String,
    docker_desktop_mode: Option<DockerDesktopMode>,
    kind_node_runtime: Option<String>,
}

struct Ctx<'a> {
    snap: &'a EnvSnapshot,
    evidence: Vec<Evidence>,
    claims: Vec<Claim>,
    conflicts: Vec<String>,
}

fn score(weight: Weight) -> u32 {
    match weight {
        Weight::Decisive => 4,
        Weight::Strong => 2,
        Weight::Hint => 1,
    }
}

/// Build-suffix markers, found in `kubeletVersion` and in `/version` gitVersion.
const VERSION_MARKS: [(&str, Points, &str); 5] = [
    (
        "+orb",
        Points::To(Provider::OrbStack),
        "OrbStack builds (+orb)",
    ),
    ("+k3s", Points::K3sFamily, "k3s builds (+k3s)"),
    ("-gke.", Points::To(Provider::Gke), "GKE builds (-gke.)"),
    ("-eks-", Points::To(Provider::Eks), "EKS builds (-eks-)"),
    (
        "+rke2",
        Points::To(Provider::Generic),
        "RKE2 builds (+rke2)",
    ),
];

fn version_mark(version: &str) -> Option<(Points, &'static str)> {
    VERSION_MARKS
        .iter()
        .find(|(mark, _, _)| version.contains(mark))
        .map(|(_, points, implies)| (*points, *implies))
}

/// Node labels that name a provider: an exact key, or a prefix when the entry ends with '/'. The
/// first entry that matches for a provider wins, so exact keys come before their prefix.
const LABEL_MARKS: [(&str, Points, Weight, &str); 7] = [
    (
        "minikube.k8s.io/name",
        Points::To(Provider::Minikube),
        Weight::Decisive,
        "minikube labels its nodes minikube.k8s.io/*",
    ),
    (
        "minikube.k8s.io/",
        Points::To(Provider::Minikube),
        Weight::Decisive,
        "minikube labels its nodes minikube.k8s.io/*",
    ),
    (
        "microk8s.io/cluster",
        Points::To(Provider::MicroK8s),
        Weight::Decisive,
        "microk8s labels its nodes microk8s.io/cluster",
    ),
    (
        "node.kubernetes.io/microk8s-",
        Points::To(Provider::MicroK8s),
        Weight::Decisive,
        "microk8s labels its nodes microk8s-controlplane / microk8s-worker",
    ),
    (
        "cloud.google.com/gke-",
        Points::To(Provider::Gke),
        Weight::Strong,
        "GKE node pool labels",
    ),
    (
        "eks.amazonaws.com/",
        Points::To(Provider::Eks),
        Weight::Strong,
        "EKS node group labels",
    ),
    (
        "kubernetes.azure.com/",
        Points::To(Provider::Aks),
        Weight::Strong,
        "AKS agent pool labels",
    ),
];

/// Cloud providerID schemes.
///
/// A scheme alone proves the cloud, not the managed service (a self-managed cluster on EC2 has
/// `aws://` too), so it is `Strong`: a second fact (node pool labels, a `-gke.`/`-eks-` build)
/// makes the conclusion `High`.
const CLOUD_SCHEMES: [(&str, Provider, &str); 3] = [
    (
        "gce://",
        Provider::Gke,
        "a GCE node (GKE, or self-managed on GCE)",
    ),
    (
        "aws://",
        Provider::Eks,
        "an EC2 node (EKS, or self-managed on EC2)",
    ),
    (
        "azure://",
        Provider::Aks,
        "an Azure VM node (AKS, or self-managed on Azure)",
    ),
];

/// Parses `kind://<runtime>/<cluster>/<node>`.
fn kind_provider_id(id: &str) -> Option<(&str, &str)> {
    let rest = id.strip_prefix("kind://")?;
    let mut parts = rest.split('/');
    let runtime = parts.next()?;
    let cluster = parts.next()?;
    Some((runtime, cluster))
}

/// What the host part of a `k3s://<node>` providerID says.
fn k3s_provider(host: &str) -> (Points, &'static str) {
    if host == "orbstack" {
        (Points::To(Provider::OrbStack), "OrbStack's k3s node")
    } else if host.starts_with("k3d-") {
        (
            Points::To(Provider::K3d),
            "k3d names its nodes k3d-<cluster>-server-N / -agent-N",
        )
    } else if host == "lima-rancher-desktop" {
        (
            Points::To(Provider::RancherDesktop),
            "Rancher Desktop's Lima VM hostname",
        )
    } else if host == "colima" || host.starts_with("colima-") {
        (
            Points::To(Provider::Colima),
            "colima's VM hostname is its profile id",
        )
    } else {
        (
            Points::K3sFamily,
            "a k3s node (k3s's cloud provider sets k3s://<node>)",
        )
    }
}

fn provider_id_signal(id: &str) -> NodeSignal {
    const FIELD: &str = "spec.providerID";
    if let Some((runtime, cluster)) = kind_provider_id(id) {
        let implies = format!("a kind node (runtime {runtime}, cluster {cluster})");
        return signal(
            Points::To(Provider::Kind),
            Weight::Decisive,
            FIELD,
            id,
            implies,
        );
    }
    if let Some(host) = id.strip_prefix("k3s://") {
        let (points, implies) = k3s_provider(host);
        return signal(points, Weight::Decisive, FIELD, id, implies);
    }
    if let Some((_, provider, implies)) = CLOUD_SCHEMES.iter().find(|(s, _, _)| id.starts_with(s)) {
        return signal(Points::To(*provider), Weight::Strong, FIELD, id, *implies);
    }
    let scheme = id.split("://").next().unwrap_or(id);
    let implies = format!("a cluster with the {scheme:?} cloud provider integration");
    signal(
        Points::To(Provider::Generic),
        Weight::Strong,
        FIELD,
        id,
        implies,
    )
}

/// Every fact of one node that says something about the environment.
fn node_signals(node: &NodeFacts) -> Vec<NodeSignal> {
    use Points::{K3sFamily, Nowhere, To};
    use Weight::{Decisive, Strong};
    const OS_IMAGE: &str = "status.nodeInfo.osImage";
    const KERNEL: &str = "status.nodeInfo.kernelVersion";
    const KUBELET: &str = "status.nodeInfo.kubeletVersion";

    let mut found: Vec<NodeSignal> = node
        .provider_id
        .as_deref()
        .map(provider_id_signal)
        .into_iter()
        .collect();

    for (key, points, weight, implies) in LABEL_MARKS {
        if found
            .iter()
            .any(|s| s.points == points && s.field.starts_with("labels"))
        {
            continue;
        }
        let hit = if key.ends_with('/') || key.ends_with('-') {
            node.labels.iter().find(|(k, _)| k.starts_with(key))
        } else {
            node.labels.get_key_value(key)
        };
        if let Some((k, v)) = hit {
            found.push(signal(points, weight, format!("labels[{k}]"), v, implies));
        }
    }
    if let Some(v) = node
        .labels
        .get("node.kubernetes.io/instance-type")
        .filter(|v| *v == "k3s")
    {
        let implies = "k3s's cloud provider sets instance-type k3s";
        found.push(signal(
            K3sFamily,
            Strong,
            "labels[node.kubernetes.io/instance-type]",
            v,
            implies,
        ));
    }
    if let Some((k, v)) = node
        .annotations
        .iter()
        .find(|(k, _)| k.starts_with("k3s.io/"))
    {
        let shown = if v.len() > 80 { "…" } else { v.as_str() };
        let implies = "k3s annotates its nodes k3s.io/*";
        found.push(signal(
            K3sFamily,
            Strong,
            format!("annotations[{k}]"),
            shown,
            implies,
        ));
    }

    let info = &node.info;
    match info.os_image.as_str() {
        "Docker Desktop" => {
            let implies = "Docker Desktop's kubeadm node";
            found.push(signal(
                To(Provider::DockerDesktop),
                Decisive,
                OS_IMAGE,
                &info.os_image,
                implies,
            ));
        }
        "OrbStack" => {
            found.push(signal(
                To(Provider::OrbStack),
                Decisive,
                OS_IMAGE,
                &info.os_image,
                "OrbStack's node",
            ));
        }
        image if image.starts_with("K3s ") => {
            let implies = "the rancher/k3s container image (k3d and other k3s-in-docker setups)";
            found.push(signal(K3sFamily, Strong, OS_IMAGE, image, implies));
        }
        _ => {}
    }
    let kernel = info.kernel_version.as_str();
    if kernel.contains("-orbstack") {
        found.push(signal(
            To(Provider::OrbStack),
            Strong,
            KERNEL,
            kernel,
            "OrbStack's kernel",
        ));
    } else if kernel.contains("linuxkit") {
        let implies = "the node runs in Docker Desktop's LinuxKit VM";
        found.push(signal(Nowhere, Strong, KERNEL, kernel, implies));
    } else if kernel.contains("microsoft-standard-WSL2") {
        found.push(signal(
            Nowhere,
            Strong,
            KERNEL,
            kernel,
            "the node runs in the WSL2 VM",
        ));
    }
    if let Some((points, implies)) = version_mark(&info.kubelet_version) {
        found.push(signal(
            points,
            Strong,
            KUBELET,
            &info.kubelet_version,
            implies,
        ));
    }

    let name = node.name.as_str();
    let by_name = if name == "docker-desktop" {
        Some((
            Provider::DockerDesktop,
            "Docker Desktop's kubeadm node name",
        ))
    } else if name.starts_with("k3d-") && (name.contains("-server") || name.contains("-agent")) {
        Some((Provider::K3d, "k3d's node naming"))
    } else if name == "lima-rancher-desktop" {
        Some((Provider::RancherDesktop, "Rancher Desktop's VM hostname"))
    } else {
        None
    };
    if let Some((provider, implies)) = by_name {
        found.push(signal(To(provider), Strong, "metadata.name", name, implies));
    }
    found
}

/// What a context, cluster or user name suggests.
fn name_hint(name: &str) -> Option<(Provider, bool, &'static str)> {
    let hint = match name {
        "minikube" => (Provider::Minikube, false, "minikube's default profile name"),
        "docker-desktop" | "docker-for-desktop" => (
            Provider::DockerDesktop,
            false,
            "Docker Desktop's context name",
        ),
        "rancher-desktop" => (
            Provider::RancherDesktop,
            false,
            "Rancher Desktop's context name",
        ),
        "orbstack" => (Provider::OrbStack, false, "OrbStack's context name"),
        "microk8s" | "microk8s-cluster" => {
            (Provider::MicroK8s, false, "microk8s's kubeconfig names")
        }
        "default" => (
            Provider::K3s,
            true,
            "k3s's k3s.yaml names everything 'default'",
        ),
        n if n.starts_with("kind-") => {
            (Provider::Kind, false, "kind names contexts kind-<cluster>")
        }
        n if n.starts_with("k3d-") || n.starts_with("admin@k3d-") => {
            (Provider::K3d, false, "k3d names contexts k3d-<cluster>")
        }
        n if n == "colima" || n.starts_with("colima-") => {
            (Provider::Colima, false, "colima names contexts by profile")
        }
        n if n.starts_with("gke_") => (
            Provider::Gke,
            false,
            "gcloud names contexts gke_<project>_<zone>_<cluster>",
        ),
        n if n.starts_with("arn:aws:eks:") => (
            Provider::Eks,
            false,
            "aws eks names contexts by cluster ARN",
        ),
        _ => return None,
    };
    Some(hint)
}

/// What a `server:` URL suggests.
fn server_hint(url: &UrlHost) -> Option<(Provider, Weight, &'static str)> {
    let host = url.host.as_str();
    let hint = if host == "kubernetes.docker.internal" {
        (
            Provider::DockerDesktop,
            Weight::Strong,
            "Docker Desktop's kubeadm API name",
        )
    } else if host == "host.docker.internal" || is_unspecified(host) {
        (
            Provider::K3d,
            Weight::Hint,
            "k3d's default API host (0.0.0.0, or host.docker.internal on Docker Desktop)",
        )
    } else if host.ends_with("k8s.orb.local") || (url.is_loopback() && url.port == Some(26443)) {
        (
            Provider::OrbStack,
            Weight::Hint,
            "OrbStack's API endpoint (port 26443, k8s.orb.local)",
        )
    } else if url.port == Some(16443) {
        (
            Provider::MicroK8s,
            Weight::Hint,
            "microk8s's API port 16443",
        )
    } else if host.ends_with(".azmk8s.io") {
        (
            Provider::Aks,
            Weight::Strong,
            "an AKS API endpoint (*.azmk8s.io)",
        )
    } else if host.ends_with(".eks.amazonaws.com") {
        (
            Provider::Eks,
            Weight::Strong,
            "an EKS API endpoint (*.eks.amazonaws.com)",
        )
    } else {
        return None;
    };
    Some(hint)
}

impl<'a> Ctx<'a> {
    fn new(snap: &'a EnvSnapshot) -> Self {
        Ctx {
            snap,
            evidence: Vec::new(),
            claims: Vec::new(),
            conflicts: Vec::new(),
        }
    }

    fn add(&mut self, ev: Evidence, claim: Option<(Provider, bool, Source)>) {
        let weight = ev.weight;
        self.evidence.push(ev);
        if let Some((provider, family, source)) = claim {
            self.claims.push(Claim {
                provider,
                family,
                weight,
                source,
                evidence: self.evidence.len() - 1,
            });
        }
    }

    fn collect_cluster_claims(&mut self) {
        let snap = self.snap;
        if snap.nodes.is_empty() {
            let why = snap.nodes_error.as_deref().unwrap_or("no nodes listed");
            self.add(
                Evidence::new(
                    "nodes",
                    why,
                    "node facts unavailable: the kubeconfig alone decides",
                    Weight::Hint,
                ),
                None,
            );
        }
        // Merge what several nodes say alike, so a 100-node cluster gives one line per fact.
        let mut merged: Vec<(String, NodeSignal, usize)> = Vec::new();
        for node in &snap.nodes {
            for s in node_signals(node) {
                match merged
                    .iter_mut()
                    .find(|(_, m, _)| m.points == s.points && m.field == s.field)
                {
                    Some((_, _, count)) => *count += 1,
                    None => merged.push((node.name.clone(), s, 1)),
                }
            }
        }
        let total = snap.nodes.len();
        for (node, s, count) in merged {
            let value = if count > 1 {
                let plural = if count > 2 { "s" } else { "" };
                format!(
                    "{} (+{} more node{plural} alike, of {total})",
                    s.value,
                    count - 1
                )
            } else {
                s.value
            };
            let ev = Evidence::new(
                format!("node/{node} {}", s.field),
                value,
                s.implies,
                s.weight,
            );
            let claim = s
                .points
                .claim()
                .map(|(p, family)| (p, family, Source::Cluster));
            self.add(ev, claim);
        }
        if let Some(version) = snap.server_version.as_deref()
            && let Some((points, implies)) = version_mark(version)
        {
            let ev = Evidence::new(
                "server /version gitVersion",
                version,
                implies,
                Weight::Strong,
            );
            let claim = points
                .claim()
                .map(|(p, family)| (p, family, Source::Cluster));
            self.add(ev, claim);
        }
    }

    fn collect_kubeconfig_claims(&mut self) {
        let kc = &self.snap.kubeconfig;
        let minikube_ext = kc
            .all_extensions()
            .find(|e| e.provider.as_deref() == Some("minikube.sigs.k8s.io"));
        if let Some(ext) = minikube_ext {
            let ev = Evidence::new(
                format!("kubeconfig extension {}", ext.name),
                "provider: minikube.sigs.k8s.io",
                "written by minikube",
                Weight::Strong,
            );
            self.add(ev, Some((Provider::Minikube, false, Source::Kubeconfig)));
        }
        let mut seen: Vec<&str> = Vec::new();
        for (what, name) in [
            ("context", &kc.context),
            ("cluster", &kc.cluster),
            ("user", &kc.user),
        ] {
            if name.is_empty() || seen.contains(&name.as_str()) {
                continue;
            }
            seen.push(name);
            if let Some((provider, family, implies)) = name_hint(name) {
                let ev = Evidence::new(
                    format!("kubeconfig {what}"),
                    name.clone(),
                    implies,
                    Weight::Hint,
                );
                self.add(ev, Some((provider, family, Source::Kubeconfig)));
            }
        }
        if let Some(url) = UrlHost::parse(&kc.server)
            && let Some((provider, weight, implies)) = server_hint(&url)
        {
            let ev = Evidence::new(
                "kubeconfig cluster server",
                kc.server.clone(),
                implies,
                weight,
            );
            self.add(ev, Some((provider, false, Source::Kubeconfig)));
        }
    }

    /// Ranks providers among `claims`: highest score, then strongest single claim, then first seen.
    fn rank(&self, claims: &[Claim]) -> Vec<(Provider, u32, Weight, usize)> {
        let mut ranking: Vec<(Provider, u32, Weight, usize)> = Vec::new();
        for claim in claims {
            match ranking.iter_mut().find(|r| r.0 == claim.provider) {
                Some(entry) => {
                    entry.1 += score(claim.weight);
                    if claim.weight > entry.2 {
                        entry.2 = claim.weight;
                        entry.3 = claim.evidence;
                    }
                }
                None => ranking.push((
                    claim.provider,
                    score(claim.weight),
                    claim.weight,
                    claim.evidence,
                )),
            }
        }
        // Stable sort keeps first-seen order for ties.
        ranking.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.cmp(&a.2)));
        ranking
    }

    fn overrule(&mut self, loser: &Claim, winner: Provider, winner_evidence: usize, why: &str) {
        let lost = &self.evidence[loser.evidence];
        let won = &self.evidence[winner_evidence];
        self.conflicts.push(format!(
            "{} {:?} suggests {}, but {} {:?} says {}: {}",
            lost.signal,
            lost.value,
            loser.provider.display_name(),
            won.signal,
            won.value,
            winner.display_name(),
            why
        ));
        let ev = &mut self.evidence[loser.evidence];
        ev.implies = format!("{} (overruled: {})", ev.implies, winner.display_name());
    }

    fn decide(&mut self) -> Decision {
        let cluster_specific: Vec<Claim> = self
            .claims
            .iter()
            .filter(|c| c.source == Source::Cluster && !c.family)
            .copied()
            .collect();
        let cluster_family: Vec<Claim> = self
            .claims
            .iter()
            .filter(|c| c.source == Source::Cluster && c.family)
            .copied()
            .collect();
        let kubeconfig: Vec<Claim> = self
            .claims
            .iter()
            .filter(|c| c.source == Source::Kubeconfig)
            .copied()
            .collect();

        let (mut provider, mut confidence, mut decided) = if !cluster_specific.is_empty() {
            let ranking = self.rank(&cluster_specific);
            let (winner, _, best, idx) = ranking[0];
            // One decisive fact, or two independent strong ones, settle it.
            let strong = cluster_specific
                .iter()
                .filter(|c| c.provider == winner && c.weight >= Weight::Strong)
                .count();
            let mut confidence = if best == Weight::Decisive || strong >= 2 {
                Confidence::High
            } else {
                Confidence::Medium
            };
            let losers: Vec<Claim> = cluster_specific
                .iter()
                .filter(|c| c.provider != winner)
                .chain(cluster_family.iter().filter(|_| !winner.is_k3s_based()))
                .copied()
                .collect();
            for loser in &losers {
                self.overrule(
                    loser,
                    winner,
                    idx,
                    "the cluster's own facts disagree; the stronger ones win",
                );
                confidence = Confidence::Medium;
            }
            (winner, confidence, idx)
        } else if !cluster_family.is_empty() {
            let ranking = self.rank(&cluster_family);
            let (_, _, best, idx) = ranking[0];
            let members: Vec<Claim> = kubeconfig
                .iter()
                .filter(|c| c.provider.is_k3s_based() && c.provider != Provider::K3s)
                .copied()
                .collect();
            if members.is_empty() {
                let confidence = if best == Weight::Decisive {
                    Confidence::High
                } else {
                    Confidence::Medium
                };
                (Provider::K3s, confidence, idx)
            } else {
                let (member, _, _, member_idx) = self.rank(&members)[0];
                (member, Confidence::Medium, member_idx)
            }
        } else if !kubeconfig.is_empty() {
            let ranking = self.rank(&kubeconfig);
            let (winner, _, best, idx) = ranking[0];
            let agreeing = kubeconfig.iter().filter(|c| c.provider == winner).count();
            let confidence = if best >= Weight::Strong || agreeing >= 2 {
                Confidence::Medium
            } else {
                Confidence::Low
            };
            let losers: Vec<Claim> = kubeconfig
                .iter()
                .filter(|c| c.provider != winner && !(c.family && winner.is_k3s_based()))
                .copied()
                .collect();
            for loser in &losers {
                self.overrule(
                    loser,
                    winner,
                    idx,
                    "kubeconfig signals disagree; the stronger ones win",
                );
            }
            return self.finish(winner, confidence, idx);
        } else {
            let (value, confidence) = if self.snap.nodes.is_empty() {
                (
                    "no nodes and no recognised kubeconfig names",
                    Confidence::Low,
                )
            } else {
                (
                    "nodes carry no local-environment or cloud markers",
                    Confidence::Medium,
                )
            };
            self.add(
                Evidence::new(
                    "all signals",
                    value,
                    "a generic Kubernetes cluster",
                    Weight::Hint,
                ),
                None,
            );
            let idx = self.evidence.len() - 1;
            return self.finish(Provider::Generic, confidence, idx);
        };

        // Docker Desktop's kind provisioner names its kind cluster "desktop".
        let kind_desktop = self
            .snap
            .nodes
            .iter()
            .find_map(|n| {
                n.provider_id
                    .as_deref()
                    .and_then(kind_provider_id)
                    .map(|(_, c)| (n, c))
            })
            .filter(|(_, cluster)| *cluster == "desktop");
        let kc = &self.snap.kubeconfig;
        if provider == Provider::Kind
            && let Some((node, _)) = kind_desktop
            && kc.context != "kind-desktop"
            && kc.cluster != "kind-desktop"
        {
            let named = kc.context == "docker-desktop" || kc.cluster == "docker-desktop";
            self.add(
                Evidence::new(
                    format!("node/{} spec.providerID cluster", node.name),
                    "desktop",
                    "Docker Desktop's kind provisioner names its cluster 'desktop' (and its context docker-desktop)",
                    Weight::Strong,
                ),
                None,
            );
            provider = Provider::DockerDesktop;
            confidence = if named {
                confidence
            } else {
                Confidence::Medium
            };
            decided = self.evidence.len() - 1;
        }

        // Kubeconfig signals that disagree with the cluster's facts lose, visibly.
        let losers: Vec<Claim> = kubeconfig
            .iter()
            .filter(|c| c.provider != provider && !(c.family && provider.is_k3s_based()))
            .copied()
            .collect();
        for loser in &losers {
            self.overrule(
                loser,
                provider,
                decided,
                "node facts outrank kubeconfig names, which users can rename or copy",
            );
        }
        self.finish(provider, confidence, decided)
    }

    fn finish(&self, provider: Provider, confidence: Confidence, decided: usize) -> Decision {
        let kind_ids: Vec<(&str, &str)> = self
            .snap
            .nodes
            .iter()
            .filter_map(|n| n.provider_id.as_deref().and_then(kind_provider_id))
            .collect();
        let docker_desktop_mode = (provider == Provider::DockerDesktop).then(|| {
            if !kind_ids.is_empty() {
                Some(DockerDesktopMode::Kind)
            } else if !self.snap.nodes.is_empty() {
                Some(DockerDesktopMode::Kubeadm)
            } else {
                let url = UrlHost::parse(&self.snap.kubeconfig.server);
                url.filter(|u| u.host == "kubernetes.docker.internal")
                    .map(|_| DockerDesktopMode::Kubeadm)
            }
        });
        let kind_node_runtime = matches!(provider, Provider::Kind | Provider::DockerDesktop)
            .then(|| kind_ids.first().map(|(runtime, _)| runtime.to_string()))
            .flatten();
        Decision {
            provider,
            confidence,
            decided_by: self.evidence[decided].signal.clone(),
            docker_desktop_mode: docker_desktop_mode.flatten(),
            kind_node_runtime,
        }
    }
}
