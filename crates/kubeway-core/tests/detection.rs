//! Environment detection against fixtures built from real kubeconfigs and Node objects (reference
//! local-environments.md §1 and §4), plus the rules the fixtures do not cover.
//!
//! Each `tests/fixtures/<env>/` holds `kubeconfig.yaml` (a whole kubeconfig), `nodes.yaml` (a
//! NodeList as `kubectl get nodes -o yaml` prints it), `host.yaml` ([`HostFacts`]),
//! `expected.yaml`, and optionally `minikube-profile.json`, `version.yaml` (`/version`) and
//! `lb-hints.yaml`. Addresses in them are data only: nothing here dials anything.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use kubeway_core::env::{
    Confidence, Detection, DockerDesktopMode, DockerEngineFacts, EnvSnapshot, HostFacts, HostKind,
    HostOs, KubeconfigFacts, LbAccess, LbHint, LbSupport, MinikubeProfileFacts, NodeFacts,
    Provider, Tri, Weight, detect,
};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expected {
    provider: Provider,
    provider_confidence: Confidence,
    /// Substring of the deciding evidence's signal.
    decided_by: String,
    /// Substring of the deciding evidence's value.
    deciding_value: Option<String>,
    minikube_driver: Option<String>,
    docker_desktop_mode: Option<DockerDesktopMode>,
    kind_node_runtime: Option<String>,
    host: HostKind,
    node_reachable: Tri,
    nodeports_on_localhost: Tri,
    load_balancer: LbSupport,
    lb_access: Option<LbAccess>,
    /// Substring expected in `conflicts`; when absent, there must be no conflicts.
    conflict: Option<String>,
    /// Substring expected in `notes`.
    note: Option<String>,
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn read(dir: &Path, name: &str) -> Option<String> {
    fs::read_to_string(dir.join(name)).ok()
}

fn yaml_value(dir: &Path, name: &str) -> Value {
    let text = read(dir, name).unwrap_or_else(|| panic!("{}/{name} missing", dir.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}/{name}: {e}", dir.display()))
}

fn load_snapshot(dir: &Path) -> EnvSnapshot {
    let kubeconfig =
        KubeconfigFacts::from_kubeconfig_json(&yaml_value(dir, "kubeconfig.yaml"), None)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let nodes = NodeFacts::from_node_list_json(&yaml_value(dir, "nodes.yaml"))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let host: HostFacts = serde_saphyr::from_str(&read(dir, "host.yaml").expect("host.yaml"))
        .unwrap_or_else(|e| panic!("{}/host.yaml: {e}", dir.display()));
    let minikube_profile = read(dir, "minikube-profile.json").map(|text| {
        let value: Value = serde_json::from_str(&text).expect("minikube-profile.json");
        MinikubeProfileFacts::from_config_json(&value)
    });
    let server_version = read(dir, "version.yaml").map(|_| {
        let version = yaml_value(dir, "version.yaml");
        version["gitVersion"]
            .as_str()
            .expect("gitVersion")
            .to_string()
    });
    let lb_hints: Vec<LbHint> = read(dir, "lb-hints.yaml")
        .map(|text| serde_saphyr::from_str(&text).expect("lb-hints.yaml"))
        .unwrap_or_default();
    EnvSnapshot {
        kubeconfig,
        nodes,
        nodes_error: None,
        server_version,
        host,
        minikube_profile,
        lb_hints,
    }
}

/// Compares one fixture; returns the mismatches.
fn check(name: &str, d: &Detection, want: &Expected) -> Vec<String> {
    let mut errors = Vec::new();
    let mut eq = |what: &str, got: String, expected: String| {
        if got != expected {
            errors.push(format!("{name}: {what} = {got}, expected {expected}"));
        }
    };
    eq(
        "provider",
        format!("{:?}", d.provider),
        format!("{:?}", want.provider),
    );
    eq(
        "provider_confidence",
        format!("{:?}", d.provider_confidence),
        format!("{:?}", want.provider_confidence),
    );
    eq("host", format!("{:?}", d.host), format!("{:?}", want.host));
    eq(
        "node_reachable",
        format!("{:?}", d.node_reachable.value),
        format!("{:?}", want.node_reachable),
    );
    eq(
        "nodeports_on_localhost",
        format!("{:?}", d.nodeports_on_localhost.value),
        format!("{:?}", want.nodeports_on_localhost),
    );
    eq(
        "load_balancer",
        format!("{:?}", d.load_balancer.support),
        format!("{:?}", want.load_balancer),
    );
    if let Some(access) = want.lb_access {
        eq(
            "lb_access",
            format!("{:?}", d.load_balancer.access),
            format!("{access:?}"),
        );
    }
    eq(
        "minikube_driver",
        format!(
            "{:?}",
            d.minikube_driver.as_ref().map(|m| m.name.to_string())
        ),
        format!("{:?}", want.minikube_driver),
    );
    eq(
        "docker_desktop_mode",
        format!("{:?}", d.docker_desktop_mode),
        format!("{:?}", want.docker_desktop_mode),
    );
    if want.kind_node_runtime.is_some() {
        eq(
            "kind_node_runtime",
            format!("{:?}", d.kind_node_runtime),
            format!("{:?}", want.kind_node_runtime),
        );
    }

    // The deciding signal is named and present in the evidence, with the value that decided.
    if !d.decided_by.contains(&want.decided_by) {
        errors.push(format!(
            "{name}: decided_by {:?} lacks {:?}",
            d.decided_by, want.decided_by
        ));
    }
    match d.evidence.iter().find(|e| e.signal == d.decided_by) {
        None => errors.push(format!(
            "{name}: deciding signal {:?} not in evidence",
            d.decided_by
        )),
        Some(ev) => {
            if let Some(value) = &want.deciding_value
                && !ev.value.contains(value.as_str())
            {
                errors.push(format!(
                    "{name}: deciding value {:?} lacks {value:?}",
                    ev.value
                ));
            }
            if ev.implies.contains("overruled") {
                errors.push(format!("{name}: the deciding evidence is marked overruled"));
            }
        }
    }
    if d.node_reachable.evidence.is_empty() || d.nodeports_on_localhost.evidence.is_empty() {
        errors.push(format!("{name}: a reachability verdict has no evidence"));
    }
    if d.load_balancer.evidence.is_empty() {
        errors.push(format!("{name}: the LB verdict has no evidence"));
    }
    if d.strategy.is_empty() || d.strategy.contains('\n') {
        errors.push(format!(
            "{name}: strategy must be one non-empty line: {:?}",
            d.strategy
        ));
    }
    match &want.conflict {
        Some(text) if !d.conflicts.iter().any(|c| c.contains(text.as_str())) => {
            errors.push(format!(
                "{name}: no conflict mentions {text:?}: {:?}",
                d.conflicts
            ));
        }
        None if !d.conflicts.is_empty() => {
            errors.push(format!("{name}: unexpected conflicts {:?}", d.conflicts))
        }
        _ => {}
    }
    if let Some(text) = &want.note
        && !d.notes.iter().any(|n| n.contains(text.as_str()))
    {
        errors.push(format!("{name}: no note mentions {text:?}: {:?}", d.notes));
    }
    errors
}

#[test]
fn every_fixture_is_detected_as_expected() {
    let mut dirs: Vec<PathBuf> = fs::read_dir(fixtures_dir())
        .expect("fixtures dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 13, "only {} fixtures", dirs.len());
    let mut errors = Vec::new();
    for dir in &dirs {
        let name = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let snap = load_snapshot(dir);
        assert!(!snap.nodes.is_empty(), "{name}: no nodes parsed");
        let want: Expected =
            serde_saphyr::from_str(&read(dir, "expected.yaml").expect("expected.yaml"))
                .unwrap_or_else(|e| panic!("{name}/expected.yaml: {e}"));
        let d = detect(&snap);
        errors.extend(check(&name, &d, &want));
        // Detection is a pure function of the snapshot, and the snapshot survives a JSON round
        // trip.
        let json = serde_json::to_value(&snap).expect("snapshot serializes");
        let back: EnvSnapshot = serde_json::from_value(json).expect("snapshot deserializes");
        assert_eq!(
            detect(&back),
            d,
            "{name}: detection changed after a snapshot round trip"
        );
    }
    assert!(errors.is_empty(), "\n{}", errors.join("\n"));
}

#[test]
fn every_provider_has_a_fixture_or_is_cloud() {
    let mut seen = BTreeMap::new();
    for entry in fs::read_dir(fixtures_dir())
        .expect("fixtures dir")
        .flatten()
    {
        if let Some(text) = read(&entry.path(), "expected.yaml") {
            let want: Expected = serde_saphyr::from_str(&text).expect("expected.yaml");
            seen.insert(want.provider, ());
        }
    }
    for provider in Provider::ALL {
        if matches!(provider, Provider::Eks | Provider::Aks | Provider::Generic) {
            continue; // covered by the inline tests below
        }
        assert!(seen.contains_key(&provider), "no fixture for {provider:?}");
    }
}

fn fixture(name: &str) -> EnvSnapshot {
    load_snapshot(&fixtures_dir().join(name))
}

#[test]
fn renamed_context_loses_to_node_facts_and_says_so() {
    let d = detect(&fixture("renamed-minikube-is-kind"));
    assert_eq!(d.provider, Provider::Kind);
    assert_eq!(d.provider_confidence, Confidence::High);
    let conflict = d.conflicts.first().expect("a conflict is reported");
    assert!(conflict.contains("kubeconfig context"), "{conflict}");
    assert!(conflict.contains("\"minikube\""), "{conflict}");
    assert!(
        conflict.contains("kind://docker/kind/kind-control-plane"),
        "{conflict}"
    );
    // The losing hint stays in the evidence, marked.
    let hint = d
        .evidence
        .iter()
        .find(|e| e.signal == "kubeconfig context")
        .expect("context evidence kept");
    assert_eq!(hint.weight, Weight::Hint);
    assert!(hint.implies.contains("overruled"), "{}", hint.implies);
    // No minikube analysis runs for what is not minikube.
    assert_eq!(d.minikube_driver, None);
}

#[test]
fn minikube_extension_loses_to_kind_nodes_too() {
    let mut snap = fixture("renamed-minikube-is-kind");
    snap.kubeconfig = fixture("minikube-docker-macos").kubeconfig;
    let d = detect(&snap);
    assert_eq!(d.provider, Provider::Kind);
    assert!(
        d.conflicts
            .iter()
            .any(|c| c.contains("kubeconfig extension")),
        "{:?}",
        d.conflicts
    );
}

#[test]
fn kubeconfig_alone_is_never_high_confidence() {
    // RBAC forbids listing nodes: only the kubeconfig speaks.
    let mut snap = fixture("minikube-docker-macos");
    snap.nodes.clear();
    snap.nodes_error =
        Some("nodes is forbidden: User \"dev\" cannot list resource \"nodes\"".into());
    let d = detect(&snap);
    assert_eq!(d.provider, Provider::Minikube);
    assert_eq!(d.provider_confidence, Confidence::Medium);
    assert!(
        d.decided_by.contains("kubeconfig extension"),
        "{}",
        d.decided_by
    );
    assert!(d.evidence.iter().any(|e| e.value.contains("forbidden")));
    // The driver still follows from the server URL, reachability from minikube's rule.
    assert_eq!(
        d.minikube_driver.as_ref().map(|m| m.name.to_string()),
        Some("kic".into())
    );
    assert_eq!(d.node_reachable.value, Tri::No);

    // A bare context name is a weak hint.
    let mut snap = fixture("kind-linux");
    snap.nodes.clear();
    let d = detect(&snap);
    assert_eq!(d.provider, Provider::Kind);
    assert_eq!(d.provider_confidence, Confidence::Low);
}

#[test]
fn version_suffix_identifies_clouds_without_nodes() {
    let snap = EnvSnapshot {
        kubeconfig: KubeconfigFacts {
            context: "arn:aws:eks:us-west-2:111122223333:cluster/demo".into(),
            cluster: "arn:aws:eks:us-west-2:111122223333:cluster/demo".into(),
            user: "arn:aws:eks:us-west-2:111122223333:cluster/demo".into(),
            server: "https://0123456789ABCDEF.gr7.us-west-2.eks.amazonaws.com".into(),
            ..KubeconfigFacts::default()
        },
        server_version: Some("v1.31.2-eks-7f9249a".into()),
        host: HostFacts::new(HostOs::Linux),
        ..EnvSnapshot::default()
    };
    let d = detect(&snap);
    assert_eq!(d.provider, Provider::Eks);
    assert_eq!(d.decided_by, "server /version gitVersion");
    assert_eq!(d.provider_confidence, Confidence::Medium);
    assert_eq!(d.load_balancer.support, LbSupport::CloudProvider);
    assert_eq!(d.nodeports_on_localhost.value, Tri::No);
}

#[test]
fn aks_from_provider_id() {
    let node: Value = serde_json::json!({
        "metadata": {"name": "aks-nodepool1-12345678-vmss000000",
                     "labels": {"kubernetes.azure.com/cluster": "MC_rg_demo_eastus"}},
        "spec": {"providerID": "azure:///subscriptions/0/resourceGroups/mc/providers/Microsoft.Compute/virtualMachineScaleSets/aks-nodepool1-12345678-vmss/virtualMachines/0"},
        "status": {"nodeInfo": {"kubeletVersion": "v1.30.6"}}
    });
    let snap = EnvSnapshot {
        kubeconfig: KubeconfigFacts {
            context: "demo".into(),
            cluster: "demo".into(),
            server: "https://demo-dns-1.hcp.eastus.azmk8s.io:443".into(),
            ..KubeconfigFacts::default()
        },
        nodes: vec![NodeFacts::from_node_json(&node).expect("node")],
        ..EnvSnapshot::default()
    };
    let d = detect(&snap);
    assert_eq!(d.provider, Provider::Aks);
    assert_eq!(d.provider_confidence, Confidence::High);
    assert!(d.decided_by.ends_with("spec.providerID"));
}

#[test]
fn unknown_cluster_is_generic_and_says_why() {
    let d = detect(&EnvSnapshot::default());
    assert_eq!(d.provider, Provider::Generic);
    assert_eq!(d.provider_confidence, Confidence::Low);
    assert!(!d.evidence.is_empty());
    assert!(d.evidence.iter().any(|e| e.signal == d.decided_by));
    assert_eq!(d.node_reachable.value, Tri::Unknown);
    assert!(d.strategy.contains("port-forward"), "{}", d.strategy);

    let kubeadm: Value = serde_json::json!({
        "metadata": {"name": "cp-1", "labels": {"node-role.kubernetes.io/control-plane": ""}},
        "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.10"}],
                   "nodeInfo": {"kubeletVersion": "v1.33.1", "osImage": "Ubuntu 24.04.2 LTS"}}
    });
    let snap = EnvSnapshot {
        kubeconfig: KubeconfigFacts {
            context: "kubernetes-admin@kubernetes".into(),
            cluster: "kubernetes".into(),
            server: "https://10.0.0.10:6443".into(),
            ..KubeconfigFacts::default()
        },
        nodes: vec![NodeFacts::from_node_json(&kubeadm).expect("node")],
        ..EnvSnapshot::default()
    };
    let d = detect(&snap);
    assert_eq!(d.provider, Provider::Generic);
    assert_eq!(d.provider_confidence, Confidence::Medium);
    // The API is dialled at the node's own address: the node is reachable.
    assert_eq!(d.node_reachable.value, Tri::Yes);
    assert_eq!(d.nodeports_on_localhost.value, Tri::No);
}

#[test]
fn minikube_needs_port_forward_follows_the_host() {
    // Linux docker driver, direct URL, but the engine is rootless: minikube's rule says
    // port-forward.
    let mut snap = fixture("minikube-docker-linux");
    snap.host.docker = Some(DockerEngineFacts {
        operating_system: Some("Ubuntu 24.04.2 LTS".into()),
        rootless: true,
    });
    let d = detect(&snap);
    assert_eq!(d.node_reachable.value, Tri::No);
    assert!(
        d.node_reachable
            .evidence
            .iter()
            .any(|e| e.value == "name=rootless")
    );
    assert_eq!(
        d.minikube_driver.as_ref().map(|m| m.needs_port_forward),
        Some(Tri::Yes)
    );

    // Docker Desktop for Linux.
    snap.host.docker = Some(DockerEngineFacts {
        operating_system: Some("Docker Desktop".into()),
        rootless: false,
    });
    assert_eq!(detect(&snap).node_reachable.value, Tri::No);

    // A remote DOCKER_HOST counts; a unix socket does not.
    snap.host.docker = Some(DockerEngineFacts::default());
    snap.host
        .env
        .insert("DOCKER_HOST".into(), "unix:///var/run/docker.sock".into());
    assert_eq!(detect(&snap).node_reachable.value, Tri::Yes);
    snap.host
        .env
        .insert("DOCKER_HOST".into(), "tcp://10.1.2.3:2376".into());
    let d = detect(&snap);
    assert_eq!(d.node_reachable.value, Tri::No);
    assert!(
        d.node_reachable
            .evidence
            .iter()
            .any(|e| e.signal == "host env DOCKER_HOST")
    );

    // WSL detected from /proc/version alone.
    let mut snap = fixture("minikube-docker-linux");
    snap.host.docker = None;
    snap.host.proc_version = Some("Linux version 5.15.167.4-microsoft-standard-WSL2".into());
    let d = detect(&snap);
    assert_eq!(d.host, HostKind::Wsl2);
    assert_eq!(d.node_reachable.value, Tri::No);

    // Without docker info, the direct URL minikube wrote is the witness.
    let mut snap = fixture("minikube-docker-linux");
    snap.host.docker = None;
    let d = detect(&snap);
    assert_eq!(d.node_reachable.value, Tri::Yes);
    assert_eq!(d.node_reachable.confidence, Confidence::Medium);
}

#[test]
fn minikube_driver_from_server_url_table() {
    let cases = [
        ("https://127.0.0.1:49524", HostOs::MacOs, "kic", Tri::No),
        ("https://192.168.49.2:8443", HostOs::Linux, "kic", Tri::Yes),
        (
            "https://192.168.39.12:8443",
            HostOs::Linux,
            "kvm2",
            Tri::Yes,
        ),
        (
            "https://192.168.59.100:8443",
            HostOs::MacOs,
            "virtualbox",
            Tri::Yes,
        ),
        ("https://192.168.105.2:8443", HostOs::MacOs, "vm", Tri::Yes),
        (
            "https://172.18.57.156:8443",
            HostOs::Windows,
            "hyperv",
            Tri::Yes,
        ),
        ("https://localhost:8443", HostOs::MacOs, "qemu2", Tri::No),
    ];
    for (server, os, driver, reachable) in cases {
        let mut snap = fixture("minikube-kvm2");
        snap.kubeconfig.server = server.into();
        snap.host = HostFacts::new(os);
        let d = detect(&snap);
        assert_eq!(d.provider, Provider::Minikube, "{server}");
        let got = d.minikube_driver.as_ref().map(|m| m.name.to_string());
        assert_eq!(got.as_deref(), Some(driver), "{server}");
        assert_eq!(
            d.node_reachable.value, reachable,
            "{server}: {:?}",
            d.node_reachable
        );
    }
}

#[test]
fn kind_reachability_depends_on_the_engine() {
    let mut snap = fixture("kind-linux");
    // Docker Desktop for Linux shows up as a LinuxKit kernel on the nodes.
    for node in &mut snap.nodes {
        node.info.kernel_version = "6.10.14-linuxkit".into();
    }
    let d = detect(&snap);
    assert_eq!(d.node_reachable.value, Tri::No);
    assert!(d.notes.iter().any(|n| n.contains("extraPortMappings")));

    let mut snap = fixture("kind-linux");
    snap.host
        .env
        .insert("WSL_DISTRO_NAME".into(), "Ubuntu".into());
    assert_eq!(detect(&snap).node_reachable.value, Tri::Unknown);
    snap.host.docker = Some(DockerEngineFacts {
        operating_system: Some("Ubuntu 24.04.2 LTS".into()),
        rootless: false,
    });
    let d = detect(&snap);
    assert_eq!(d.host, HostKind::Wsl2);
    assert_eq!(d.node_reachable.value, Tri::Yes);
    assert_eq!(d.node_reachable.confidence, Confidence::High);
}

#[test]
fn lima_guest_host_sees_its_own_node() {
    let mut snap = fixture("colima");
    snap.host = HostFacts::new(HostOs::Linux);
    snap.host.lima_cidata_mounted = true;
    let d = detect(&snap);
    assert_eq!(d.host, HostKind::LimaGuest);
    assert_eq!(d.provider, Provider::Colima);
    assert_eq!(d.node_reachable.value, Tri::Yes);
    assert_eq!(d.load_balancer.access, LbAccess::IngressAddress);

    let mut host = HostFacts::new(HostOs::Linux);
    host.env.insert("LIMA_CIDATA_USER".into(), "dev".into());
    snap.host = host;
    assert_eq!(detect(&snap).host, HostKind::LimaGuest);
}

#[test]
fn colima_with_network_address_is_routable() {
    let mut snap = fixture("colima");
    snap.kubeconfig.server = "https://192.168.106.2:62345".into();
    let d = detect(&snap);
    assert_eq!(d.provider, Provider::Colima);
    assert_eq!(d.node_reachable.value, Tri::Yes);
}

#[test]
fn k3s_family_refined_by_kubeconfig_names() {
    // A k3s node whose providerID names no product: the context picks the family member, at medium
    // confidence.
    let mut snap = fixture("k3s-native-linux");
    snap.kubeconfig.context = "colima-work".into();
    snap.kubeconfig.cluster = "colima-work".into();
    snap.kubeconfig.user = "colima-work".into();
    let d = detect(&snap);
    assert_eq!(d.provider, Provider::Colima);
    assert_eq!(d.provider_confidence, Confidence::Medium);
    assert!(d.conflicts.is_empty(), "{:?}", d.conflicts);
}

#[test]
fn detection_json_uses_stable_snake_case_names() {
    let d = detect(&fixture("docker-desktop-kubeadm-macos"));
    let json = serde_json::to_value(&d).expect("detection serializes");
    assert_eq!(json["provider"], "docker_desktop");
    assert_eq!(json["provider_confidence"], "high");
    assert_eq!(json["docker_desktop_mode"], "kubeadm");
    assert_eq!(json["host"], "macos");
    assert_eq!(json["node_reachable"]["value"], "no");
    assert_eq!(json["nodeports_on_localhost"]["value"], "yes");
    assert_eq!(json["load_balancer"]["support"], "docker_desktop");
    assert_eq!(json["load_balancer"]["access"], "localhost_port");
    assert!(json["evidence"][0]["weight"].is_string());
    let d = detect(&fixture("minikube-docker-linux"));
    let json = serde_json::to_value(&d).expect("detection serializes");
    assert_eq!(json["minikube_driver"]["name"], "docker");
    assert_eq!(json["minikube_driver"]["needs_port_forward"], "no");
    let back: Detection = serde_json::from_value(json).expect("detection deserializes");
    assert_eq!(back, d);
    let d = detect(&fixture("k3s-native-linux"));
    assert_eq!(
        serde_json::to_value(&d).expect("json")["load_balancer"]["support"],
        "k3s_service_lb"
    );
    let d = detect(&fixture("k3s-metallb"));
    assert_eq!(
        serde_json::to_value(&d).expect("json")["load_balancer"]["support"],
        "metallb"
    );
}

#[test]
fn odd_inputs_never_panic() {
    let odd_ids = [
        "",
        "kind://",
        "kind:///",
        "k3s://",
        "://",
        "gce:",
        "weird",
        "kind://docker",
        "k3s://k3d-",
    ];
    let odd_servers = [
        "",
        "https://",
        "https://[::1",
        "not a url",
        "https://:0",
        "https://[fe80::1%25eth0]:6443",
    ];
    for id in odd_ids {
        for server in odd_servers {
            let node = NodeFacts {
                name: "n".into(),
                provider_id: Some(id.into()),
                ..NodeFacts::default()
            };
            let mut snap = EnvSnapshot::default();
            snap.kubeconfig.server = server.into();
            snap.nodes.push(node);
            snap.host.env.insert("DOCKER_HOST".into(), "tcp://".into());
            snap.minikube_profile = Some(MinikubeProfileFacts::default());
            let d = detect(&snap);
            assert!(!d.evidence.is_empty());
            assert!(!d.strategy.is_empty());
        }
    }
}
