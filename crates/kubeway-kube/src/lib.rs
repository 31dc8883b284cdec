//! The only kubeway crate that talks to an API server: connecting through a kubeconfig, resolving
//! targets to ready pods, opening port-forward streams ([`portforward`]), and LoadBalancer
//! status ([`loadbalancer`]) and the Service IP ranges ([`servicecidr`]).

pub mod apierror;
pub mod backends;
pub mod explain;
pub mod loadbalancer;
pub mod portforward;
pub mod servicecidr;
pub mod snapshot;

use std::path::PathBuf;

use kube::config::{KubeConfigOptions, Kubeconfig};

pub use portforward::{
    ConnectionError, ForwardError, ForwardOptions, ForwardStats, PfStream, PortForwarder, Transport,
};

/// Failures talking to a cluster, each naming what to do.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// The kubeconfig file could not be read or parsed.
    #[error("reading the kubeconfig {path}: check the path, or pass --kubeconfig")]
    ReadKubeconfig {
        /// Which file.
        path: String,
        /// Why.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// No kubeconfig was found at all.
    #[error(
        "no kubeconfig found: set KUBECONFIG, pass --kubeconfig, or start a lab with `kubeway lab up`"
    )]
    NoKubeconfig(#[source] kube::config::KubeconfigError),
    /// The named context is not in the kubeconfig.
    #[error(
        "context {context:?} is not in the kubeconfig (known: {known}); pick one with --context"
    )]
    UnknownContext {
        /// The asked-for context.
        context: String,
        /// The contexts that exist.
        known: String,
    },
    /// The kubeconfig could not be turned into a client configuration.
    #[error("building a client from the kubeconfig")]
    Config(#[source] kube::config::KubeconfigError),
    /// The HTTP client could not be built.
    #[error("building the HTTP client")]
    Client(#[source] kube::Error),
    /// An API call failed.
    #[error("{what}")]
    Api {
        /// The operation, in words.
        what: String,
        /// Why.
        #[source]
        source: kube::Error,
    },
    /// The Service has no port matching the request.
    #[error("service {service} has no port {port}; its ports are: {known}")]
    NoSuchPort {
        /// Service name.
        service: String,
        /// Requested port.
        port: String,
        /// Ports it has.
        known: String,
    },
    /// Opening a port-forward connection failed (see [`ForwardError`]).
    #[error(transparent)]
    Forward(#[from] ForwardError),
    /// The port-forward session opened without a stream for the port.
    #[error("the port-forward to pod {pod} opened no stream for port {port}")]
    NoStream {
        /// Pod.
        pod: String,
        /// Port.
        port: u16,
    },
    /// The target does not exist.
    #[error("{what} not found: {hint}")]
    TargetNotFound {
        /// What was looked for, and where.
        what: String,
        /// Near names, or what to check.
        hint: String,
    },
    /// The port is not TCP.
    #[error(
        "{what} is {protocol}: port-forward carries TCP only ({protocol} is not supported yet)"
    )]
    NotTcp {
        /// Which port.
        what: String,
        /// Its protocol.
        protocol: String,
    },
}

/// How to reach the cluster, as kubectl's global flags say.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// `--kubeconfig`.
    pub kubeconfig: Option<PathBuf>,
    /// `--context`.
    pub context: Option<String>,
    /// `-n/--namespace`.
    pub namespace: Option<String>,
}

/// A connected cluster.
#[derive(Clone)]
pub struct Cluster {
    /// The client.
    pub client: kube::Client,
    /// The namespace to use (flag, else context, else `default`).
    pub namespace: String,
    /// The context in use.
    pub context: String,
    /// The API server URL.
    pub server: String,
}

/// Connects with kubectl's rules: `--kubeconfig`, else `KUBECONFIG`, else `~/.kube/config`.
pub async fn connect(opts: &ConnectOptions) -> Result<Cluster, KubeError> {
    let kc = match &opts.kubeconfig {
        Some(p) => Kubeconfig::read_from(p).map_err(|source| KubeError::ReadKubeconfig {
            path: p.display().to_string(),
            source,
        })?,
        None => Kubeconfig::read().map_err(KubeError::NoKubeconfig)?,
    };
    let context = opts
        .context
        .clone()
        .or_else(|| kc.current_context.clone())
        .unwrap_or_default();
    if !kc.contexts.iter().any(|c| c.name == context) {
        return Err(KubeError::UnknownContext {
            context,
            known: kc
                .contexts
                .iter()
                .map(|c| c.name.clone())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let options = KubeConfigOptions {
        context: Some(context.clone()),
        ..Default::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kc, &options)
        .await
        .map_err(KubeError::Config)?;
    let namespace = opts
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let server = config.cluster_url.to_string();
    let client = kube::Client::try_from(config).map_err(KubeError::Client)?;
    Ok(Cluster {
        client,
        namespace,
        context,
        server,
    })
}
