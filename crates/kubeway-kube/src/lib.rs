//! The only kubeway crate that talks to an API server: connecting through a kubeconfig, resolving
//! targets to ready pods, and opening port-forward streams ([`portforward`]).

pub mod backends;
pub mod explain;
pub mod portforward;
pub mod snapshot;

use std::path::PathBuf;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kubeway_core::target::PortRef;
use tokio::io::{AsyncRead, AsyncWrite};

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
    /// No ready endpoint backs the Service.
    #[error("service {service} has no ready endpoint for port {port}: {why}")]
    NoReadyEndpoint {
        /// Service name.
        service: String,
        /// Port.
        port: String,
        /// Which layer is empty.
        why: String,
    },
    /// Opening the port-forward stream failed.
    #[error("opening a port-forward to pod {pod} port {port}")]
    PortForward {
        /// Pod.
        pod: String,
        /// Port.
        port: u16,
        /// Why.
        #[source]
        source: kube::Error,
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

/// A ready pod behind a Service port, and the pod port to forward to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// Pod name.
    pub pod: String,
    /// Pod IP.
    pub ip: String,
    /// Port on the pod.
    pub port: u16,
}

/// Resolves `svc/NAME:port` to its ready backends, through the EndpointSlices.
pub async fn service_backends(
    cluster: &Cluster,
    service: &str,
    port: &PortRef,
) -> Result<(u16, Vec<Backend>), KubeError> {
    let ns = &cluster.namespace;
    let svc = Api::<Service>::namespaced(cluster.client.clone(), ns)
        .get(service)
        .await
        .map_err(|source| KubeError::Api {
            what: format!("getting service {service} in namespace {ns}"),
            source,
        })?;
    let ports = svc.spec.and_then(|s| s.ports).unwrap_or_default();
    let sp = ports
        .iter()
        .find(|p| match port {
            PortRef::Number(n) => p.port == i32::from(*n),
            PortRef::Name(name) => p.name.as_deref() == Some(name.as_str()),
        })
        .ok_or_else(|| KubeError::NoSuchPort {
            service: service.into(),
            port: port.to_string(),
            known: ports
                .iter()
                .map(|p| match &p.name {
                    Some(n) => format!("{} ({n})", p.port),
                    None => p.port.to_string(),
                })
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    let svc_port = u16::try_from(sp.port).unwrap_or(0);
    let port_name = sp.name.clone().unwrap_or_default();
    let slices = Api::<EndpointSlice>::namespaced(cluster.client.clone(), ns)
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={service}")))
        .await
        .map_err(|source| KubeError::Api {
            what: format!("listing the endpoint slices of service {service}"),
            source,
        })?;
    let mut out = Vec::new();
    let mut not_ready = 0;
    for s in slices.items {
        let Some(p) = s
            .ports
            .unwrap_or_default()
            .into_iter()
            .find(|p| p.name.clone().unwrap_or_default() == port_name)
            .and_then(|p| p.port)
        else {
            continue;
        };
        for e in s.endpoints.unwrap_or_default() {
            let ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false);
            if !ready {
                not_ready += 1;
                continue;
            }
            if let Some(pod) = e.target_ref.and_then(|t| t.name) {
                out.push(Backend {
                    pod,
                    ip: e.addresses.first().cloned().unwrap_or_default(),
                    port: u16::try_from(p).unwrap_or(0),
                });
            }
        }
    }
    if out.is_empty() {
        let why = if not_ready > 0 {
            format!(
                "{not_ready} pod(s) match the selector but none is ready (Kubernetes layer: check `kubectl get pods` and the readiness probe)"
            )
        } else {
            "no pod matches the service's selector (Kubernetes layer: compare `kubectl get svc -o wide` with the pod labels)".to_string()
        };
        return Err(KubeError::NoReadyEndpoint {
            service: service.into(),
            port: port.to_string(),
            why,
        });
    }
    Ok((svc_port, out))
}

/// Opens one `v4.channel.k8s.io` port-forward stream to `pod:port` (kube-rs' transport).
pub async fn portforward_v4(
    cluster: &Cluster,
    pod: &str,
    port: u16,
) -> Result<impl AsyncRead + AsyncWrite + Unpin + Send + use<>, KubeError> {
    let api = Api::<Pod>::namespaced(cluster.client.clone(), &cluster.namespace);
    let err = |source| KubeError::PortForward {
        pod: pod.to_string(),
        port,
        source,
    };
    let mut pf = api.portforward(pod, &[port]).await.map_err(err)?;
    let stream = pf.take_stream(port).ok_or_else(|| KubeError::NoStream {
        pod: pod.to_string(),
        port,
    })?;
    tokio::spawn(async move {
        if let Err(e) = pf.join().await {
            tracing::debug!(error = %e, "port-forward session ended");
        }
    });
    Ok(stream)
}
