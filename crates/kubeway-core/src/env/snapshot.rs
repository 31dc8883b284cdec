//! The facts environment detection works from, as the kube crate collects them, and their mapping
//! from raw JSON.
//!
//! A snapshot holds no secrets: kubeconfig facts keep names, the server URL and extensions, never
//! credentials.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

/// Everything [`detect`](super::detect) looks at.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EnvSnapshot {
    /// The current (or chosen) context of the kubeconfig.
    pub kubeconfig: KubeconfigFacts,
    /// The cluster's nodes; empty when they could not be listed (see `nodes_error`).
    pub nodes: Vec<NodeFacts>,
    /// Why nodes could not be listed (e.g. RBAC forbids `list nodes`), if so.
    pub nodes_error: Option<String>,
    /// `gitVersion` from the API server's `/version`, when it answered.
    pub server_version: Option<String>,
    /// Facts about the machine kubeway runs on.
    pub host: HostFacts,
    /// The minikube profile's `config.json`, when the context looks like minikube and the file was
    /// readable.
    pub minikube_profile: Option<MinikubeProfileFacts>,
    /// LoadBalancer implementations seen in the cluster.
    pub lb_hints: Vec<LbHint>,
}

/// What the kubeconfig says about one context (names, server, extensions; never credentials).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct KubeconfigFacts {
    /// The context name.
    pub context: String,
    /// The cluster name the context points to.
    pub cluster: String,
    /// The user (AuthInfo) name the context points to.
    pub user: String,
    /// The cluster's `server:` URL.
    pub server: String,
    /// The cluster entry's `extensions`.
    pub cluster_extensions: Vec<KubeconfigExtension>,
    /// The context entry's `extensions`.
    pub context_extensions: Vec<KubeconfigExtension>,
}

/// One `extensions[]` entry of a kubeconfig cluster or context.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct KubeconfigExtension {
    /// The entry's `name` (minikube writes `cluster_info` and `context_info`).
    pub name: String,
    /// `extension.provider`, when it is a string (minikube writes `minikube.sigs.k8s.io`).
    pub provider: Option<String>,
    /// The whole `extension` value.
    pub raw: Value,
}

/// Why kubeconfig facts could not be extracted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KubeconfigFactsError {
    /// The document is not a mapping.
    #[error("the kubeconfig is not a mapping of clusters, contexts and users")]
    NotAMapping,
    /// No context was asked for and `current-context` is empty.
    #[error("the kubeconfig has no current-context: choose one with --context ({available})")]
    NoCurrentContext {
        /// The context names that exist, comma-separated.
        available: String,
    },
    /// The context is not in `contexts`.
    #[error("context {name:?} is not in the kubeconfig (contexts: {available})")]
    ContextNotFound {
        /// The context asked for.
        name: String,
        /// The context names that exist, comma-separated.
        available: String,
    },
    /// The context names a cluster that is not in `clusters`.
    #[error("context {context:?} refers to cluster {cluster:?}, which is not in the kubeconfig")]
    ClusterNotFound {
        /// The context.
        context: String,
        /// The missing cluster.
        cluster: String,
    },
}

fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = value;
    for key in path {
        cur = cur.get(key)?;
    }
    cur.as_str()
}

fn named_entry<'a>(list: Option<&'a Value>, name: &str) -> Option<&'a Value> {
    list?
        .as_array()?
        .iter()
        .find(|entry| entry.get("name").and_then(Value::as_str) == Some(name))
}

fn extensions(entry: Option<&Value>) -> Vec<KubeconfigExtension> {
    let Some(list) = entry
        .and_then(|e| e.get("extensions"))
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    list.iter()
        .map(|ext| {
            let raw = ext.get("extension").cloned().unwrap_or(Value::Null);
            KubeconfigExtension {
                name: ext
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                provider: raw
                    .get("provider")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                raw,
            }
        })
        .collect()
}

impl KubeconfigFacts {
    /// Extracts the facts of `context` (or of `current-context` when `None`) from a kubeconfig
    /// document.
    ///
    /// Takes the JSON form of a kubeconfig (`apiVersion: v1, kind: Config`): a parsed YAML file or
    /// a serialized `kube::config::Kubeconfig`. Credentials are never read.
    pub fn from_kubeconfig_json(
        doc: &Value,
        context: Option<&str>,
    ) -> Result<Self, KubeconfigFactsError> {
        if !doc.is_object() {
            return Err(KubeconfigFactsError::NotAMapping);
        }
        let contexts = doc.get("contexts");
        let available = || {
            let names: Vec<&str> = contexts
                .and_then(Value::as_array)
                .map(|list| {
                    list.iter()
                        .filter_map(|c| c.get("name").and_then(Value::as_str))
                        .collect()
                })
                .unwrap_or_default();
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        };
        let name = match context {
            Some(name) => name.to_string(),
            None => match str_at(doc, &["current-context"]) {
                Some(name) if !name.is_empty() => name.to_string(),
                _ => {
                    return Err(KubeconfigFactsError::NoCurrentContext {
                        available: available(),
                    });
                }
            },
        };
        let ctx_entry =
            named_entry(contexts, &name).ok_or_else(|| KubeconfigFactsError::ContextNotFound {
                name: name.clone(),
                available: available(),
            })?;
        let ctx = ctx_entry.get("context");
        let cluster = ctx
            .and_then(|c| c.get("cluster"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let user = ctx
            .and_then(|c| c.get("user"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let cluster_entry = named_entry(doc.get("clusters"), &cluster).ok_or_else(|| {
            KubeconfigFactsError::ClusterNotFound {
                context: name.clone(),
                cluster: cluster.clone(),
            }
        })?;
        let cluster_body = cluster_entry.get("cluster");
        Ok(KubeconfigFacts {
            context: name,
            cluster,
            user,
            server: cluster_body
                .and_then(|c| c.get("server"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            cluster_extensions: extensions(cluster_body),
            context_extensions: extensions(ctx),
        })
    }

    /// All extensions, cluster ones first.
    pub fn all_extensions(&self) -> impl Iterator<Item = &KubeconfigExtension> {
        self.cluster_extensions
            .iter()
            .chain(&self.context_extensions)
    }
}

/// One entry of a Node's `status.addresses`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeAddress {
    /// `InternalIP`, `ExternalIP`, `Hostname`, `InternalDNS` or `ExternalDNS`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The address.
    pub address: String,
}

/// The parts of a Node's `status.nodeInfo` detection uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeInfo {
    /// `osImage` (`Docker Desktop`, `OrbStack`, `Ubuntu 22.04.5 LTS`, …).
    pub os_image: String,
    /// `kernelVersion` (`6.10.14-linuxkit`, `5.15.146.1-microsoft-standard-WSL2`, …).
    pub kernel_version: String,
    /// `kubeletVersion` (`v1.31.4+k3s1`, `v1.33.5+orb1`, …).
    pub kubelet_version: String,
    /// `containerRuntimeVersion` (`docker://28.5.2`, `containerd://2.1.1`).
    pub container_runtime_version: String,
    /// `operatingSystem` (`linux`, `windows`).
    pub operating_system: String,
    /// `architecture` (`amd64`, `arm64`).
    pub architecture: String,
}

/// What detection needs from one Node object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeFacts {
    /// `metadata.name`.
    pub name: String,
    /// `spec.providerID`; `None` when empty or absent.
    pub provider_id: Option<String>,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `metadata.annotations`.
    pub annotations: BTreeMap<String, String>,
    /// `status.addresses`.
    pub addresses: Vec<NodeAddress>,
    /// `status.nodeInfo`.
    pub info: NodeInfo,
}

/// Why a Node document could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NodeFactsError {
    /// The document is not a JSON object.
    #[error("the node is not an object")]
    NotAnObject,
    /// `metadata.name` is missing or empty.
    #[error("the node has no metadata.name")]
    MissingName,
    /// A NodeList has no `items` array.
    #[error("the node list has no items array")]
    NotAList,
    /// One item of a NodeList is not a valid node.
    #[error("item {index} of the node list is not a valid node")]
    Item {
        /// 0-based index in `items`.
        index: usize,
        /// What is wrong with it.
        #[source]
        source: Box<NodeFactsError>,
    },
}

fn string_map(value: Option<&Value>) -> BTreeMap<String, String> {
    value
        .and_then(Value::as_object)
        .map(|map| {
            map.iter()
                .map(|(k, v)| {
                    let text = match v {
                        Value::String(s) => s.clone(),
                        Value::Null => String::new(),
                        other => other.to_string(),
                    };
                    (k.clone(), text)
                })
                .collect()
        })
        .unwrap_or_default()
}

impl NodeFacts {
    /// Reads a Node in its Kubernetes JSON shape (`metadata`, `spec.providerID`,
    /// `status.addresses`, `status.nodeInfo`), e.g. a serialized
    /// `k8s_openapi::api::core::v1::Node`.
    pub fn from_node_json(node: &Value) -> Result<Self, NodeFactsError> {
        if !node.is_object() {
            return Err(NodeFactsError::NotAnObject);
        }
        let name = str_at(node, &["metadata", "name"]).unwrap_or_default();
        if name.is_empty() {
            return Err(NodeFactsError::MissingName);
        }
        let metadata = node.get("metadata");
        let status = node.get("status");
        let addresses = status
            .and_then(|s| s.get("addresses"))
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .map(|a| NodeAddress {
                        kind: a
                            .get("type")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                        address: a
                            .get("address")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let info_field = |key: &str| {
            status
                .and_then(|s| s.get("nodeInfo"))
                .and_then(|i| i.get(key))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        Ok(NodeFacts {
            name: name.to_string(),
            provider_id: str_at(node, &["spec", "providerID"])
                .filter(|id| !id.is_empty())
                .map(str::to_string),
            labels: string_map(metadata.and_then(|m| m.get("labels"))),
            annotations: string_map(metadata.and_then(|m| m.get("annotations"))),
            addresses,
            info: NodeInfo {
                os_image: info_field("osImage"),
                kernel_version: info_field("kernelVersion"),
                kubelet_version: info_field("kubeletVersion"),
                container_runtime_version: info_field("containerRuntimeVersion"),
                operating_system: info_field("operatingSystem"),
                architecture: info_field("architecture"),
            },
        })
    }

    /// Reads every item of a NodeList (`{"kind": "NodeList", "items": [...]}`).
    pub fn from_node_list_json(list: &Value) -> Result<Vec<Self>, NodeFactsError> {
        let items = list
            .get("items")
            .and_then(Value::as_array)
            .ok_or(NodeFactsError::NotAList)?;
        items
            .iter()
            .enumerate()
            .map(|(index, item)| {
                Self::from_node_json(item).map_err(|e| NodeFactsError::Item {
                    index,
                    source: Box::new(e),
                })
            })
            .collect()
    }

    /// Writes the node back in Kubernetes JSON shape (what the lab serves);
    /// [`NodeFacts::from_node_json`] reads it back unchanged.
    pub fn to_node_json(&self) -> Value {
        let mut spec = serde_json::Map::new();
        if let Some(id) = &self.provider_id {
            spec.insert("providerID".into(), Value::String(id.clone()));
        }
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": self.labels,
                "annotations": self.annotations,
            },
            "spec": spec,
            "status": {
                "addresses": self.addresses.iter().map(|a| serde_json::json!({
                    "type": a.kind,
                    "address": a.address,
                })).collect::<Vec<_>>(),
                "nodeInfo": {
                    "osImage": self.info.os_image,
                    "kernelVersion": self.info.kernel_version,
                    "kubeletVersion": self.info.kubelet_version,
                    "containerRuntimeVersion": self.info.container_runtime_version,
                    "operatingSystem": self.info.operating_system,
                    "architecture": self.info.architecture,
                },
            },
        })
    }

    /// The first address of the given type (`InternalIP`, `ExternalIP`, …).
    pub fn address(&self, kind: &str) -> Option<&str> {
        self.addresses
            .iter()
            .find(|a| a.kind == kind)
            .map(|a| a.address.as_str())
    }

    /// The first `InternalIP`.
    pub fn internal_ip(&self) -> Option<&str> {
        self.address("InternalIP")
    }

    /// Whether the node carries a control-plane (or legacy master) role label.
    pub fn is_control_plane(&self) -> bool {
        self.labels
            .contains_key("node-role.kubernetes.io/control-plane")
            || self.labels.contains_key("node-role.kubernetes.io/master")
    }
}

/// The host operating system kubeway runs on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostOs {
    /// Linux (including WSL distributions and Lima guests).
    #[default]
    Linux,
    /// macOS.
    #[serde(rename = "macos")]
    MacOs,
    /// Windows (native, not inside WSL).
    Windows,
    /// Anything else (BSDs, …).
    Other,
}

impl HostOs {
    /// Maps `std::env::consts::OS` (`linux`, `macos`, `windows`, …).
    pub fn from_rust_os(os: &str) -> HostOs {
        match os {
            "linux" => HostOs::Linux,
            "macos" => HostOs::MacOs,
            "windows" => HostOs::Windows,
            _ => HostOs::Other,
        }
    }
}

/// What `docker info` (or `podman info`) reports about the container engine, when it was asked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DockerEngineFacts {
    /// `.OperatingSystem` (`Docker Desktop`, `Ubuntu 24.04.1 LTS`, …).
    pub operating_system: Option<String>,
    /// A `SecurityOptions` entry starts with `name=rootless` (podman: `host.security.rootless`).
    pub rootless: bool,
}

/// Facts about the machine kubeway runs on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HostFacts {
    /// The operating system kubeway was built for and runs on.
    pub os: HostOs,
    /// The environment variables of interest that are set (see [`HostFacts::is_env_of_interest`]).
    pub env: BTreeMap<String, String>,
    /// The text of `/proc/version` on Linux.
    pub proc_version: Option<String>,
    /// `/mnt/lima-cidata` exists: Lima mounts its cloud-init disk there in every guest.
    pub lima_cidata_mounted: bool,
    /// The local container engine, when `docker info` was asked.
    pub docker: Option<DockerEngineFacts>,
}

impl HostFacts {
    /// Variables the kube crate should copy into [`HostFacts::env`] when set.
    pub const ENV_OF_INTEREST: [&'static str; 5] = [
        "WSL_DISTRO_NAME",
        "WSLPATH",
        "DOCKER_HOST",
        "CONTAINER_HOST",
        "MINIKUBE_HOME",
    ];

    /// Prefix of the variables Lima's boot scripts see inside a guest (`LIMA_CIDATA_USER`, …).
    pub const LIMA_ENV_PREFIX: &'static str = "LIMA_CIDATA_";

    /// Host facts with only the OS set.
    pub fn new(os: HostOs) -> Self {
        HostFacts {
            os,
            ..HostFacts::default()
        }
    }

    /// Whether an environment variable belongs in [`HostFacts::env`].
    pub fn is_env_of_interest(name: &str) -> bool {
        Self::ENV_OF_INTEREST.contains(&name) || name.starts_with(Self::LIMA_ENV_PREFIX)
    }

    /// The value of a set, non-empty variable.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.env
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// Facts from a minikube profile's `config.json`
/// (`$MINIKUBE_HOME/.minikube/profiles/<name>/config.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MinikubeProfileFacts {
    /// `Name`.
    pub name: String,
    /// `Driver` (`docker`, `kvm2`, `qemu2`, …).
    pub driver: Option<String>,
    /// `Network` (`builtin`, `socket_vmnet`, a docker network name, …).
    pub network: Option<String>,
    /// `ListenAddress`.
    pub listen_address: Option<String>,
    /// `APIServerPort`.
    pub api_server_port: Option<u16>,
    /// `KubernetesConfig.ServiceCIDR`.
    pub service_cidr: Option<String>,
    /// `Nodes[].IP`, in order.
    pub node_ips: Vec<String>,
}

impl MinikubeProfileFacts {
    /// Reads a minikube `ClusterConfig` in JSON form; unknown or missing fields are left empty.
    pub fn from_config_json(config: &Value) -> Self {
        let text = |key: &str| {
            config
                .get(key)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        MinikubeProfileFacts {
            name: text("Name").unwrap_or_default(),
            driver: text("Driver"),
            network: text("Network"),
            listen_address: text("ListenAddress"),
            api_server_port: config
                .get("APIServerPort")
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p != 0),
            service_cidr: str_at(config, &["KubernetesConfig", "ServiceCIDR"])
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            node_ips: config
                .get("Nodes")
                .and_then(Value::as_array)
                .map(|nodes| {
                    nodes
                        .iter()
                        .filter_map(|n| n.get("IP").and_then(Value::as_str))
                        .filter(|ip| !ip.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// A LoadBalancer implementation the kube crate saw running in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LbHintKind {
    /// k3s ServiceLB (klipper-lb): `svclb-*` DaemonSets or pods in kube-system.
    K3sServiceLb,
    /// MetalLB: the `metallb-system` namespace or its controller.
    #[serde(rename = "metallb")]
    MetalLb,
    /// cloud-provider-kind: a LoadBalancer ingress with `ipMode: Proxy` on a kind cluster, or its
    /// containers.
    CloudProviderKind,
    /// Docker Desktop's vpnkit-controller pod in kube-system.
    DockerDesktopVpnkit,
}

/// One observation of a LoadBalancer implementation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LbHint {
    /// Which implementation it indicates.
    pub kind: LbHintKind,
    /// What was seen, e.g. `DaemonSet kube-system/svclb-traefik-1a2b3c4d`.
    pub observed: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kubeconfig_facts_follow_the_context() {
        let doc = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "minikube",
            "clusters": [
                {"name": "kind-kind", "cluster": {"server": "https://127.0.0.1:57420"}},
                {"name": "minikube", "cluster": {
                    "server": "https://127.0.0.1:49524",
                    "extensions": [{"name": "cluster_info", "extension": {"provider": "minikube.sigs.k8s.io", "version": "v1.29.0"}}]
                }}
            ],
            "contexts": [
                {"name": "kind-kind", "context": {"cluster": "kind-kind", "user": "kind-kind"}},
                {"name": "minikube", "context": {"cluster": "minikube", "user": "minikube",
                    "extensions": [{"name": "context_info", "extension": {"provider": "minikube.sigs.k8s.io"}}]}}
            ],
            "users": [{"name": "minikube", "user": {"client-key": "/secret"}}]
        });
        let facts = KubeconfigFacts::from_kubeconfig_json(&doc, None).unwrap();
        assert_eq!(facts.context, "minikube");
        assert_eq!(facts.server, "https://127.0.0.1:49524");
        assert_eq!(
            facts.cluster_extensions[0].provider.as_deref(),
            Some("minikube.sigs.k8s.io")
        );
        assert_eq!(facts.context_extensions[0].name, "context_info");
        let kind = KubeconfigFacts::from_kubeconfig_json(&doc, Some("kind-kind")).unwrap();
        assert_eq!(kind.cluster, "kind-kind");
        assert!(kind.cluster_extensions.is_empty());
        let err = KubeconfigFacts::from_kubeconfig_json(&doc, Some("nope")).unwrap_err();
        assert!(err.to_string().contains("kind-kind, minikube"), "{err}");
        assert_eq!(
            KubeconfigFacts::from_kubeconfig_json(&json!([]), None),
            Err(KubeconfigFactsError::NotAMapping)
        );
        let no_current = json!({"contexts": [], "clusters": []});
        assert!(matches!(
            KubeconfigFacts::from_kubeconfig_json(&no_current, None),
            Err(KubeconfigFactsError::NoCurrentContext { .. })
        ));
        let dangling = json!({"current-context": "a", "contexts": [{"name": "a", "context": {"cluster": "gone"}}]});
        assert!(matches!(
            KubeconfigFacts::from_kubeconfig_json(&dangling, None),
            Err(KubeconfigFactsError::ClusterNotFound { .. })
        ));
    }

    #[test]
    fn node_json_round_trips() {
        let node = json!({
            "metadata": {"name": "kind-control-plane",
                         "labels": {"node-role.kubernetes.io/control-plane": ""},
                         "annotations": {"x": 1}},
            "spec": {"providerID": "kind://docker/kind/kind-control-plane"},
            "status": {"addresses": [{"type": "InternalIP", "address": "172.18.0.2"}],
                       "nodeInfo": {"osImage": "Debian GNU/Linux 12 (bookworm)", "kubeletVersion": "v1.33.1"}}
        });
        let facts = NodeFacts::from_node_json(&node).unwrap();
        assert_eq!(
            facts.provider_id.as_deref(),
            Some("kind://docker/kind/kind-control-plane")
        );
        assert_eq!(facts.internal_ip(), Some("172.18.0.2"));
        assert_eq!(facts.annotations["x"], "1");
        assert!(facts.is_control_plane());
        assert_eq!(
            NodeFacts::from_node_json(&facts.to_node_json()).unwrap(),
            facts
        );
        assert_eq!(
            NodeFacts::from_node_json(&json!("x")),
            Err(NodeFactsError::NotAnObject)
        );
        assert_eq!(
            NodeFacts::from_node_json(&json!({})),
            Err(NodeFactsError::MissingName)
        );
        let list = json!({"items": [node, {"metadata": {}}]});
        assert!(matches!(
            NodeFacts::from_node_list_json(&list),
            Err(NodeFactsError::Item { index: 1, .. })
        ));
        // An empty providerID is the same as none.
        let empty = json!({"metadata": {"name": "n"}, "spec": {"providerID": ""}});
        assert_eq!(NodeFacts::from_node_json(&empty).unwrap().provider_id, None);
    }

    #[test]
    fn minikube_profile_config() {
        let config = json!({
            "Name": "minikube", "Driver": "qemu2", "Network": "builtin", "APIServerPort": 8443,
            "KubernetesConfig": {"ServiceCIDR": "10.96.0.0/12"},
            "Nodes": [{"Name": "", "IP": "10.0.2.15", "Port": 8443, "ControlPlane": true}]
        });
        let facts = MinikubeProfileFacts::from_config_json(&config);
        assert_eq!(facts.driver.as_deref(), Some("qemu2"));
        assert_eq!(facts.network.as_deref(), Some("builtin"));
        assert_eq!(facts.api_server_port, Some(8443));
        assert_eq!(facts.service_cidr.as_deref(), Some("10.96.0.0/12"));
        assert_eq!(facts.node_ips, vec!["10.0.2.15"]);
        assert_eq!(
            MinikubeProfileFacts::from_config_json(&json!(null)),
            MinikubeProfileFacts::default()
        );
    }

    #[test]
    fn env_of_interest() {
        assert!(HostFacts::is_env_of_interest("WSL_DISTRO_NAME"));
        assert!(HostFacts::is_env_of_interest("LIMA_CIDATA_USER"));
        assert!(!HostFacts::is_env_of_interest("HOME"));
    }
}
