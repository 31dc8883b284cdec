//! Environment detection: which local or remote Kubernetes is behind a context, and what the host
//! can reach.
//!
//! The kube crate fills an [`EnvSnapshot`] (kubeconfig facts, nodes, `/version`, host facts);
//! [`detect`] turns it into a [`Detection`] where every conclusion carries a confidence and the
//! evidence behind it.

mod address;
mod detect;
mod detection;
mod minikube;
mod reach;
mod snapshot;

pub use detect::detect;
pub use detection::{
    Confidence, Detection, DockerDesktopMode, DriverName, Evidence, HostKind, LbAccess, LbSupport,
    LbVerdict, MinikubeDriver, Provider, Tri, Verdict, Weight,
};
pub use snapshot::{
    DockerEngineFacts, EnvSnapshot, HostFacts, HostOs, KubeconfigExtension, KubeconfigFacts,
    KubeconfigFactsError, LbHint, LbHintKind, MinikubeProfileFacts, NodeAddress, NodeFacts,
    NodeFactsError, NodeInfo,
};
