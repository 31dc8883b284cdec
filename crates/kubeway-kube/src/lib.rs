//! The only kubeway crate that talks to an API server: connecting through a kubeconfig, resolving
//! targets to ready pods, opening port-forward streams ([`portforward`]), and LoadBalancer
//! status ([`loadbalancer`]) and the Service IP ranges ([`servicecidr`]).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

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
    /// The target has no port matching the request.
    #[error("{service} has no port {port}; its ports are: {known}")]
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
    /// A namespace-mode lab's kubeconfig, used from another network namespace.
    #[error(
        "this kubeconfig is for the kubeway lab behind network namespace {netns}, and kubeway runs in another network namespace, \
         where the lab's addresses would go out by this namespace's own routes: run kubeway in the lab's host namespace, \
         `sudo ip netns exec {netns} kubeway …`"
    )]
    OtherNetns {
        /// The namespace the kubeconfig is for.
        netns: String,
    },
    /// A namespace-mode lab's kubeconfig whose namespace is gone.
    #[error(
        "this kubeconfig is for the kubeway lab behind network namespace {netns}, which does not exist (any more): \
         the lab has stopped; start it again (`sudo kubeway lab up --netns …`) and use the kubeconfig it writes"
    )]
    NetnsGone {
        /// The namespace the kubeconfig is for.
        netns: String,
    },
    /// A watch failed before it listed anything (the text names the API layer, the status
    /// and what to do).
    #[error("{message}")]
    Watch {
        /// What happened.
        message: String,
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

/// The network namespace a namespace-mode lab's kubeconfig names for `context`, if any.
pub fn lab_netns(kc: &Kubeconfig, context: &str) -> Option<String> {
    let cluster = kc
        .contexts
        .iter()
        .find(|c| c.name == context)?
        .context
        .as_ref()?
        .cluster
        .clone();
    kc.clusters
        .iter()
        .find(|c| c.name == cluster)?
        .cluster
        .as_ref()?
        .extensions
        .iter()
        .flatten()
        .find(|e| e.name == kubeway_core::persona::LAB_NETNS_EXTENSION)?
        .extension
        .get("netns")?
        .as_str()
        .map(str::to_string)
}

/// Whether this thread runs in the network namespace named `name` (`ip netns` names, under
/// /run/netns): Some(true/false), or None when there is no such namespace.
pub fn in_netns(name: &str) -> Option<bool> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::MetadataExt;
        let plain = !name.is_empty()
            && name != "."
            && name != ".."
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !plain {
            return None;
        }
        let theirs = std::fs::metadata(format!("/run/netns/{name}")).ok()?;
        let ours = std::fs::metadata("/proc/thread-self/ns/net")
            .or_else(|_| std::fs::metadata("/proc/self/ns/net"))
            .ok()?;
        Some(theirs.dev() == ours.dev() && theirs.ino() == ours.ino())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = name;
        None
    }
}

/// Refuses a namespace-mode lab's kubeconfig outside the namespace it names: there its
/// documentation addresses would be routed by this namespace's routes (out of the machine, by a
/// default route).
fn check_netns(kc: &Kubeconfig, context: &str) -> Result<(), KubeError> {
    let Some(netns) = lab_netns(kc, context) else {
        return Ok(());
    };
    match in_netns(&netns) {
        Some(true) => Ok(()),
        Some(false) => Err(KubeError::OtherNetns { netns }),
        None => Err(KubeError::NetnsGone { netns }),
    }
}

/// `kubeway/VERSION (os/arch)`, sent as the User-Agent of every request, as kubectl sends
/// `kubectl/vX (os/arch)`.
pub fn user_agent() -> String {
    format!(
        "kubeway/{} ({}/{})",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

/// Rewrites a request path's query as an API server expects it: kube-rs starts every query with
/// `?&` (`?&ports=80`, `?&resourceVersion=0`), which servers accept but logs and audits show as
/// odd; kubeway sends `?ports=80`.
fn tidy_query(mut req: http::Request<kube::client::Body>) -> http::Request<kube::client::Body> {
    let uri = req.uri();
    if let Some(query) = uri.query()
        && (query.starts_with('&') || query.is_empty())
    {
        let tidy = query.trim_start_matches('&');
        let path = uri.path();
        let text = if tidy.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{tidy}")
        };
        let mut parts = uri.clone().into_parts();
        if let Ok(pq) = http::uri::PathAndQuery::try_from(text) {
            parts.path_and_query = Some(pq);
            if let Ok(fixed) = http::Uri::from_parts(parts) {
                *req.uri_mut() = fixed;
            }
        }
    }
    req
}

/// A kube client for `config` that names itself ([`user_agent`]) and tidies query strings.
pub fn build_client(mut config: kube::Config) -> Result<kube::Client, KubeError> {
    if let Ok(agent) = http::HeaderValue::from_str(&user_agent()) {
        config.headers.push((http::header::USER_AGENT, agent));
    }
    let builder = kube::client::ClientBuilder::try_from(config).map_err(KubeError::Client)?;
    Ok(builder
        .with_layer(&tower::util::MapRequestLayer::new(tidy_query))
        .build())
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
    check_netns(&kc, &context)?;
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
    let client = build_client(config)?;
    Ok(Cluster {
        client,
        namespace,
        context,
        server,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tidy(path: &str) -> String {
        let req = http::Request::get(path)
            .body(kube::client::Body::empty())
            .expect("request");
        tidy_query(req).uri().to_string()
    }

    #[test]
    fn queries_lose_kube_rs_leading_ampersand() {
        assert_eq!(
            tidy("/api/v1/namespaces/a/pods/p/portforward?&ports=80"),
            "/api/v1/namespaces/a/pods/p/portforward?ports=80"
        );
        assert_eq!(tidy("/api/v1/pods?&"), "/api/v1/pods");
        assert_eq!(tidy("/api/v1/pods?watch=1&x=2"), "/api/v1/pods?watch=1&x=2");
        assert_eq!(tidy("/version"), "/version");
    }

    #[test]
    fn the_user_agent_names_version_and_platform() {
        let ua = user_agent();
        assert!(ua.starts_with(&format!("kubeway/{} (", env!("CARGO_PKG_VERSION"))));
        assert!(ua.contains(std::env::consts::OS), "{ua}");
    }
}
