//! Command-line grammar (clap) and dispatch: kubectl's global flags, one subcommand per job.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};
use kubeway_core::env::Provider;

/// Opens, explains and keeps alive the way from your host to the Pods and Services of a
/// Kubernetes cluster — above all a local one (minikube, kind, k3d, k3s, Docker Desktop,
/// Rancher Desktop, colima, OrbStack, microk8s).
///
/// New here? Run `kubeway demo`: it starts a stand-in cluster on loopback (no real cluster
/// needed), deploys a sample app and opens the way to it.
#[derive(Debug, Parser)]
#[command(name = "kubeway", version, propagate_version = true)]
pub struct Cli {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: the current context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// Namespace (default: the context's namespace, else `default`).
    #[arg(short = 'n', long, global = true, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// More logs on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short = 'v', long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Output formats, as kubectl names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Human-readable text.
    Text,
    /// JSON (one document, or one event per line for long-running commands).
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a stand-in cluster for learning, demos and tests.
    #[command(subcommand)]
    Lab(LabCommand),
    /// Which environment is behind the context (minikube and its driver, kind, k3d, k3s, Docker
    /// Desktop, …), the evidence, whether the host can reach the nodes (probed live), LoadBalancer
    /// support, and the way kubeway will take to reach Services.
    Env(EnvArgs),
    /// Forward local ports to a pod, or to every ready pod of a Service or workload: like
    /// `kubectl port-forward`, but connections are spread over the ready endpoints, follow
    /// rollouts within a second, and one failing connection never ends the others.
    ///
    /// Examples:
    ///   kubeway forward svc/web 8080:80        # local 8080 -> the service's port 80
    ///   kubeway forward deploy/web :http       # a free local port -> each pod's `http` port
    ///   kubeway forward web-7d4b9c-x2x 9000    # a pod (a bare NAME is a pod, as in kubectl)
    #[command(verbatim_doc_comment)]
    Forward(ForwardArgs),
    /// Explain the way from this host to a Service's (or pod's, or workload's) pods: every hop
    /// from the host through the driver boundary, the node, the Service, the EndpointSlices and
    /// the pods to the process inside, checked live; the first broken hop is named with its
    /// layer (driver, Kubernetes, app, API) and the command that fixes or bypasses it.
    ///
    /// Exit codes:
    ///   0  healthy, or degraded (a way works, something else is broken or a warning stands)
    ///   1  an error: the question could not be asked or names nothing (no context, the API
    ///      server unreachable, credentials rejected (401), RBAC refused reading the target
    ///      (403), the target or namespace does not exist, bad input), or nothing could be
    ///      checked end to end
    ///   3  the path is broken: the verdict names the layer, the hop and the fix
    ///
    /// Examples:
    ///   kubeway explain web                     # a bare NAME is a Service
    ///   kubeway explain svc/web:80 --via node-port
    ///   kubeway explain deploy/web -o json
    ///   kubeway explain svc/web --svg path.svg  # a picture of the path
    #[command(verbatim_doc_comment)]
    Explain(ExplainArgs),
    /// The working URL of each port of a Service, like `minikube service` on any cluster: a
    /// LoadBalancer address or a NodePort when the host reaches it (checked live), otherwise a
    /// forward through the API server kept open in the foreground. Says which way and why.
    /// Before it answers it checks the pods' processes as `explain` does: a Service port whose
    /// way fails gets no URL, only the reason.
    ///
    /// Exit codes: 0 every URL works, 1 an error (API refused, not found, bad input), 3 a
    /// Service port has no working URL (with --all, the working ones are still printed).
    ///
    /// Examples:
    ///   kubeway open web                 # table, and the browser on a desktop
    ///   kubeway open web --url           # URLs only, for scripts
    ///   kubeway open --all -n shop       # every Service of a namespace
    #[command(verbatim_doc_comment)]
    Open(OpenArgs),
    /// Every LoadBalancer Service gets an EXTERNAL-IP that works from this host, like
    /// `minikube tunnel` on any cluster and without root: each Service gets a loopback address
    /// of its own (Linux; elsewhere 127.0.0.1, with port conflicts reported), kubeway listens on
    /// its ports there and carries connections through the NodePort when the host reaches the
    /// node, else through the API server's port-forward to ready pods. `kubectl get svc` shows
    /// the address; Services added, changed or deleted are followed within a second.
    ///
    /// Ports below 1024 need root or CAP_NET_BIND_SERVICE: without, port 80 listens on 8080
    /// (port + 8000) and the tunnel says so. Services with an EXTERNAL-IP from a real load
    /// balancer (servicelb, MetalLB, cloud-provider-kind) or a loadBalancerClass are left alone.
    ///
    /// Ctrl-C takes every EXTERNAL-IP back. After a crash (kill -9, reboot), the next
    /// `kubeway tunnel` or `kubeway tunnel --cleanup` removes what it left — only ingresses it
    /// wrote that are still exactly as written, and its route (--route). State: $KUBEWAY_STATE_DIR, else
    /// $XDG_STATE_HOME/kubeway, else ~/.local/state/kubeway. One tunnel per cluster.
    ///
    /// Examples:
    ///   kubeway tunnel                   # the LoadBalancers of the current namespace
    ///   kubeway tunnel -A                # of every namespace (what `minikube tunnel` does)
    ///   kubeway tunnel -o json           # one JSON event per line, for scripts
    ///   kubeway tunnel --cleanup         # undo what a crashed tunnel left, then exit
    ///   sudo kubeway tunnel --route      # minikube-style: route the Service range to the node
    ///   curl http://$(kubectl get svc web-lb -o jsonpath='{.status.loadBalancer.ingress[0].ip}')/
    #[command(verbatim_doc_comment)]
    Tunnel(TunnelArgs),
    /// Every Service of a namespace (or of several: `-n a,b`; or all: `-A`) at a local address
    /// of its own and its cluster names, followed live, like kubefwd but without root and on
    /// any cluster: each Service gets a loopback address (Linux: 127.77.x.y; elsewhere
    /// 127.0.0.1 with moved ports reported), kubeway listens on its TCP ports there and carries
    /// each connection through the NodePort when the host reaches the node, else through the
    /// API server's port-forward to ready pods. Headless Services get one address per ready pod
    /// (StatefulSet pods their `pod-0.svc` names); ExternalName Services are listed as aliases.
    /// UDP ports are relayed to their NodePort where the node is reachable; port-forward
    /// carries TCP only.
    ///
    /// Names: `--hosts` writes `SVC`, `SVC.NS`, `SVC.NS.svc` and `SVC.NS.svc.cluster.local`
    /// into /etc/hosts (root, or a writable file with `--hosts-file`), between marked lines,
    /// journaled first; Ctrl-C removes them, and after a crash `kubeway up --cleanup` does; the
    /// rest of the file is never touched. Without root, `--http-port N` serves every Service at
    /// `http://SVC.NS.localhost:N/` (browsers resolve *.localhost themselves), and
    /// `--exec -- CMD` runs CMD with the variables the kubelet gives a pod
    /// (`WEB_SERVICE_HOST`, `WEB_SERVICE_PORT`, `WEB_PORT_80_TCP`…) pointing here, then exits
    /// with its exit code.
    ///
    /// Examples:
    ///   kubeway up                                   # the Services of the current namespace
    ///   kubeway up -A --http-port 8000               # all; http://web.default.localhost:8000/
    ///   sudo kubeway up -n shop --hosts              # curl http://web.shop/
    ///   kubeway up -n default --exec -- sh -c 'curl http://$WEB_SERVICE_HOST:$WEB_SERVICE_PORT/'
    ///   kubeway up --cleanup                         # undo what a crashed `up` left in the hosts file
    #[command(verbatim_doc_comment)]
    Up(UpArgs),
    /// A first minute with kubeway: start a lab with a sample app, reach `web` through a
    /// port-forward, fetch its page, and keep the way open until Ctrl-C.
    Demo(DemoArgs),
}

/// `kubeway forward`.
#[derive(Debug, Args)]
pub struct ForwardArgs {
    /// pod/NAME, svc/NAME, deploy/NAME, sts/NAME, rs/NAME (a bare NAME is a pod).
    pub target: String,
    /// [LOCAL:]REMOTE ports: `8080:80`, `:80` (free local port), `80` (same), `8080:http` (named).
    pub ports: Vec<String>,
    /// Local addresses to listen on, comma-separated; `localhost` means 127.0.0.1 and ::1.
    #[arg(long, default_value = "localhost")]
    pub address: String,
    /// For a pod target: how long to wait for it to run (Go/kubectl forms: 90s, 1m30s; at most
    /// 24h).
    #[arg(long, default_value = "1m", value_parser = parse_wait)]
    pub pod_running_timeout: std::time::Duration,
    /// Port-forward transport: auto (SPDY in WebSocket, then legacy SPDY, then v4), ws-spdy,
    /// spdy, v4. v4 (v4.channel.k8s.io) opens one WebSocket per connection and cannot pass a
    /// half-close on: after your client half-closes, the pod never sees the EOF; kubeway keeps
    /// delivering its answer until it closes or is silent for --half-close-timeout.
    #[arg(long, default_value = "auto")]
    pub transport: String,
    /// With v4 only: how long the pod may stay silent after your client's half-close before
    /// the connection is ended (with a reset, and reported).
    #[arg(long, default_value = "30s", value_parser = parse_wait)]
    pub half_close_timeout: std::time::Duration,
}

/// Which way into the cluster a question is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Via {
    /// Any way that works (port-forward included).
    Any,
    /// A direct way: NodePort or LoadBalancer address.
    Direct,
    /// A NodePort on a node address or localhost.
    NodePort,
    /// The LoadBalancer address.
    LoadBalancer,
    /// A port-forward through the API server.
    PortForward,
}

impl From<Via> for kubeway_core::explain::Intent {
    fn from(v: Via) -> Self {
        use kubeway_core::explain::Intent;
        match v {
            Via::Any => Intent::Any,
            Via::Direct => Intent::Direct,
            Via::NodePort => Intent::NodePort,
            Via::LoadBalancer => Intent::LoadBalancer,
            Via::PortForward => Intent::PortForward,
        }
    }
}

/// `kubeway explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// svc/NAME[:PORT], pod/NAME[:PORT], deploy/NAME[:PORT] … (a bare NAME is a Service).
    pub target: String,
    /// Which way the question is about (default: any way that works).
    #[arg(long, value_enum, default_value_t = Via::Any)]
    pub via: Via,
    /// Also write the path as an SVG picture to this file.
    #[arg(long, value_name = "PATH")]
    pub svg: Option<PathBuf>,
    /// How long each live probe may take.
    #[arg(long, default_value = "1s", value_parser = parse_probe_timeout)]
    pub probe_timeout: std::time::Duration,
}

/// `kubeway open`.
#[derive(Debug, Args)]
pub struct OpenArgs {
    /// The Service (NAME or svc/NAME).
    pub service: Option<String>,
    /// Every Service of the namespace.
    #[arg(long, conflicts_with = "service")]
    pub all: bool,
    /// Print the URLs only, one per line.
    #[arg(long)]
    pub url: bool,
    /// URL scheme.
    #[arg(long, default_value = "http")]
    pub scheme: String,
    /// Do not open a browser.
    #[arg(long)]
    pub no_browser: bool,
    /// How long each reachability probe may take.
    #[arg(long, default_value = "1s", value_parser = parse_probe_timeout)]
    pub probe_timeout: std::time::Duration,
}

/// `kubeway tunnel`.
#[derive(Debug, Args)]
pub struct TunnelArgs {
    /// Serve the LoadBalancer Services of every namespace (default: the context's namespace,
    /// or -n).
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Undo what a tunnel that died without cleaning up left behind (EXTERNAL-IPs it wrote
    /// that are still exactly as written), then exit.
    #[arg(long)]
    pub cleanup: bool,
    /// How long each NodePort reachability probe may take.
    #[arg(long, default_value = "1s", value_parser = parse_probe_timeout)]
    pub probe_timeout: std::time::Duration,
    /// Linux, root: route the cluster's whole Service range to a node the host reaches (one
    /// kernel route, as `minikube tunnel` does) instead of listening on host addresses; each
    /// LoadBalancer's EXTERNAL-IP is then its ClusterIP, and every ClusterIP answers from this
    /// host. Refused when no node is reachable or another route overlaps the range. The route
    /// is removed on exit, or by `--cleanup` after a crash.
    #[arg(long)]
    pub route: bool,
    /// The Service range to route with --route (default: the API server's ServiceCIDR objects,
    /// Kubernetes 1.33+), e.g. 10.96.0.0/12.
    #[arg(long, value_name = "CIDR", requires = "route")]
    pub service_cidr: Option<kubeway_net::route::Ipv4Net>,
    /// Where the tunnel keeps its lock and journal (default: $KUBEWAY_STATE_DIR, else
    /// $XDG_STATE_HOME/kubeway, else ~/.local/state/kubeway). Root may name another user's
    /// directory with --cleanup to undo what that user's crashed tunnel left.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// `kubeway up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Only these Services (default: every Service in scope).
    pub services: Vec<String>,
    /// Serve the Services of every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Only Services with these labels (`app=web,tier!=db`).
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// Write the Services' names into /etc/hosts (needs root or a writable file).
    #[arg(long)]
    pub hosts: bool,
    /// Write the names into this hosts file instead of /etc/hosts.
    #[arg(long, value_name = "PATH")]
    pub hosts_file: Option<PathBuf>,
    /// The cluster's DNS domain, for the long names.
    #[arg(long, default_value = "cluster.local", value_name = "DOMAIN")]
    pub cluster_domain: String,
    /// Serve every Service's HTTP at http://SVC.NS.localhost:PORT/ from 127.0.0.1:PORT (0: a
    /// free port, reported).
    #[arg(long, value_name = "PORT")]
    pub http_port: Option<u16>,
    /// Write the Service variables a pod would get (pointing here) to this dotenv file.
    #[arg(long, value_name = "PATH")]
    pub env_file: Option<PathBuf>,
    /// Run the command after `--` with the Service variables a pod would get, then stop and
    /// exit with its exit code.
    #[arg(long, requires = "command")]
    pub exec: bool,
    /// The command for --exec.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
    /// Undo what an `up` that died without cleaning up left (its names in the hosts file),
    /// then exit.
    #[arg(long)]
    pub cleanup: bool,
    /// How long each NodePort reachability probe may take.
    #[arg(long, default_value = "1s", value_parser = parse_probe_timeout)]
    pub probe_timeout: std::time::Duration,
    /// Where `up` keeps its lock and journal (default: $KUBEWAY_STATE_DIR, else
    /// $XDG_STATE_HOME/kubeway, else ~/.local/state/kubeway).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// `kubeway env`.
#[derive(Debug, Args)]
pub struct EnvArgs {
    /// How long each reachability probe may take.
    #[arg(long, default_value = "1s", value_parser = parse_probe_timeout)]
    pub probe_timeout: std::time::Duration,
}

/// The longest probe timeout accepted: a probe that needs longer has failed.
pub const MAX_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);
/// The longest wait accepted (`--pod-running-timeout`).
pub const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Parses a duration as kubectl writes them (`500ms`, `2s`, `1m30s`, `1h`; humantime's forms)
/// or a bare number of seconds, within `(0, max]`.
pub fn parse_duration_within(
    s: &str,
    max: std::time::Duration,
) -> Result<std::time::Duration, String> {
    let q = kubeway_core::quote::quote(s);
    let d = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse::<u64>()
            .ok()
            .filter(|n| *n <= max.as_secs())
            .map(std::time::Duration::from_secs)
            .ok_or_else(|| {
                format!(
                    "{q} seconds is longer than the limit of {}",
                    humantime::format_duration(max)
                )
            })?
    } else {
        humantime::parse_duration(s)
            .map_err(|e| format!("{q} is not a duration ({e}): write e.g. 500ms, 2s, 1m30s"))?
    };
    if d.is_zero() {
        return Err(format!(
            "{q} is no time at all: give a duration above zero, e.g. 1s"
        ));
    }
    if d > max {
        return Err(format!(
            "{q} is longer than the limit of {}",
            humantime::format_duration(max)
        ));
    }
    Ok(d)
}

/// A probe timeout: at most [`MAX_PROBE_TIMEOUT`].
pub fn parse_probe_timeout(s: &str) -> Result<std::time::Duration, String> {
    parse_duration_within(s, MAX_PROBE_TIMEOUT)
}

/// A wait: at most [`MAX_WAIT`].
pub fn parse_wait(s: &str) -> Result<std::time::Duration, String> {
    parse_duration_within(s, MAX_WAIT)
}

/// `kubeway lab …`.
#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Run the lab in the foreground: a real HTTPS API server on 127.0.0.1 that kubectl and
    /// client libraries accept, whose pods are real local servers. Ctrl-C stops it and removes
    /// the kubeconfig it wrote.
    Up(LabUpArgs),
}

/// Environments the lab can present.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Persona {
    /// A plain cluster (no local-environment signals).
    Plain,
    /// minikube, docker driver in port-forward mode (macOS/Windows/WSL).
    Minikube,
    /// kind.
    Kind,
    /// k3d.
    K3d,
    /// k3s.
    K3s,
    /// Docker Desktop.
    DockerDesktop,
    /// Rancher Desktop.
    RancherDesktop,
    /// colima.
    Colima,
    /// OrbStack.
    Orbstack,
    /// microk8s.
    Microk8s,
}

impl Persona {
    /// The provider presented.
    pub fn provider(self) -> Provider {
        match self {
            Persona::Plain => Provider::Generic,
            Persona::Minikube => Provider::Minikube,
            Persona::Kind => Provider::Kind,
            Persona::K3d => Provider::K3d,
            Persona::K3s => Provider::K3s,
            Persona::DockerDesktop => Provider::DockerDesktop,
            Persona::RancherDesktop => Provider::RancherDesktop,
            Persona::Colima => Provider::Colima,
            Persona::Orbstack => Provider::OrbStack,
            Persona::Microk8s => Provider::MicroK8s,
        }
    }
}

/// Options shared by everything that starts a lab.
#[derive(Debug, Args)]
pub struct LabOptions {
    /// The environment the lab presents itself as (node names, labels, providerID, kubeconfig
    /// names as that environment writes them).
    #[arg(long, value_enum, default_value_t = Persona::Minikube)]
    pub persona: Persona,
    /// Whether the host can reach the node's address (its NodePorts answer there). Default: as
    /// the persona usually is (minikube's docker driver on a Mac: no).
    #[arg(long, value_name = "BOOL")]
    pub node_reachable: Option<bool>,
    /// API server port on 127.0.0.1 (0 = pick a free one).
    #[arg(long, default_value_t = 0)]
    pub api_port: u16,
    /// Namespace mode (Linux, root): put the node and its pods in their own network namespace,
    /// behind a real boundary, and a "host" namespace without a default route to run kubeway in
    /// (`sudo ip netns exec <host namespace> kubeway …`). `reachable`: a veth to the node, the
    /// API server on the node address (like minikube's kvm2 driver). `published`: no route to the
    /// node, only the API port on the host namespace's 127.0.0.1 (like Docker Desktop). Only
    /// documentation addresses are used (198.51.100.0/24, 203.0.113.0/24).
    #[arg(long, value_name = "TOPOLOGY", value_parser = parse_topology)]
    pub netns: Option<kubeway_lab::Topology>,
}

fn parse_topology(s: &str) -> Result<kubeway_lab::Topology, String> {
    s.parse()
}

/// `kubeway lab up`.
#[derive(Debug, Args)]
pub struct LabUpArgs {
    #[command(flatten)]
    pub lab: LabOptions,
    /// Where to write the kubeconfig, a new file (`--kubeconfig PATH` says the same). Default:
    /// one of its own per lab in the state directory (…/kubeway/lab/lab-PID.kubeconfig, or named
    /// after the host namespace in namespace mode). Removed when the lab stops.
    #[arg(long, value_name = "PATH")]
    pub kubeconfig_out: Option<PathBuf>,
    /// Deploy the sample app: `web` (HTTP, 2 replicas, NodePort), `echo` (TCP) and `web-lb`
    /// (LoadBalancer). This is the default for a newcomer; `--sample=false` starts empty.
    #[arg(long, value_name = "BOOL", default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub sample: bool,
}

/// `kubeway demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    #[command(flatten)]
    pub lab: LabOptions,
    /// Local port for the way to `web` (0 = pick a free one).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Exit after fetching the page once instead of keeping the way open.
    #[arg(long)]
    pub once: bool,
    /// The newcomer's first ten minutes instead: the minikube Get Started guide against a lab
    /// of its own, one command at a time (your kubectl runs the kubectl steps), each step's
    /// effect shown and its layer named (Kubernetes, the driver, the host).
    #[arg(long)]
    pub tutorial: bool,
    /// With --tutorial: wait for Enter before each step.
    #[arg(long, requires = "tutorial")]
    pub pause: bool,
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    validate(&cli)?;
    if let Command::Forward(a) = &cli.command
        && let Some(w) = crate::exposure::warning(
            &crate::forward::addresses(&a.address)?,
            &format!(
                "{} port(s) {}",
                kubeway_core::quote::cut(&a.target),
                kubeway_core::quote::cut(&a.ports.join(" "))
            ),
        )
    {
        eprintln!("warning: {w}");
    }
    match &cli.command {
        Command::Env(args) => return crate::env::run(&cli, args.probe_timeout).await,
        Command::Forward(args) => return crate::forward::run(&cli, args).await,
        Command::Open(args) => return crate::open::run(&cli, args).await,
        Command::Tunnel(args) => return crate::tunnel::run(&cli, args).await,
        Command::Up(args) => return crate::up::run(&cli, args).await,
        Command::Explain(args) => {
            let code = crate::explain::run(&cli, args).await?;
            if code != 0 {
                use std::io::Write;
                let _ = std::io::stdout().flush();
                std::process::exit(i32::from(code));
            }
            return Ok(());
        }
        _ => {}
    }
    match cli.command {
        Command::Env(_)
        | Command::Forward(_)
        | Command::Explain(_)
        | Command::Open(_)
        | Command::Up(_)
        | Command::Tunnel(_) => Ok(()),
        Command::Lab(LabCommand::Up(args)) => {
            crate::lab::up(args, cli.kubeconfig, cli.output).await
        }
        Command::Demo(args) => crate::demo::run(args, cli.output).await,
    }
}

/// Checks what can be checked before anything is started or dialed: each command's targets,
/// ports, addresses and flag combinations. Errors quote user input cut to a readable length.
pub fn validate(cli: &Cli) -> Result<()> {
    use anyhow::{Context, bail};
    use kubeway_core::quote::quote;
    use kubeway_core::target::{PortSpec, Target, TargetKind};
    match &cli.command {
        Command::Forward(a) => {
            Target::parse_without_port(&a.target, TargetKind::Pod).context("reading the target")?;
            if a.ports.is_empty() {
                bail!(
                    "name at least one port: `kubeway forward {} 8080:80` (LOCAL:REMOTE), `:80` for a free local port",
                    kubeway_core::quote::cut(&a.target)
                );
            }
            for p in &a.ports {
                p.parse::<PortSpec>().context("reading a port")?;
            }
            a.transport
                .parse::<kubeway_kube::Transport>()
                .map_err(|e| anyhow::anyhow!("--transport {}: {e}", quote(&a.transport)))?;
            crate::forward::addresses(&a.address)?;
        }
        Command::Explain(a) => {
            Target::parse(&a.target, TargetKind::Service).context("reading the target")?;
        }
        Command::Open(a) => {
            if let Some(name) = &a.service {
                Target::parse(name, TargetKind::Service).context("reading the service")?;
            }
            let scheme_ok = a.scheme.len() <= 32
                && a.scheme.starts_with(|c: char| c.is_ascii_lowercase())
                && a.scheme.chars().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.')
                });
            if !scheme_ok {
                bail!(
                    "--scheme {} is not a URL scheme: write e.g. http or https",
                    quote(&a.scheme)
                );
            }
        }
        Command::Tunnel(a) => {
            if a.all_namespaces && cli.namespace.is_some() {
                bail!("-n/--namespace and -A/--all-namespaces exclude each other: pick one");
            }
            if let Some(net) = a.service_cidr {
                kubeway_net::route::check_service_range(net).context("--service-cidr")?;
            }
        }
        Command::Up(a) => {
            if a.all_namespaces && cli.namespace.is_some() {
                bail!("-n/--namespace and -A/--all-namespaces exclude each other: pick one");
            }
            if a.exec && a.command.is_empty() {
                bail!("--exec needs a command after `--`: `kubeway up --exec -- CMD ARGS…`");
            }
            if !a.command.is_empty() && !a.exec {
                bail!(
                    "a command after `--` runs only with --exec: `kubeway up --exec -- {}`",
                    quote(&a.command.join(" "))
                );
            }
            for name in &a.services {
                Target::parse(name, TargetKind::Service).context("reading a service name")?;
            }
            if a.cluster_domain.is_empty()
                || !a
                    .cluster_domain
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
            {
                bail!(
                    "--cluster-domain {} is not a DNS domain (e.g. cluster.local)",
                    quote(&a.cluster_domain)
                );
            }
        }
        Command::Env(_) => {}
        Command::Lab(LabCommand::Up(a)) => {
            if let (Some(k), Some(o)) = (&cli.kubeconfig, &a.kubeconfig_out)
                && k != o
            {
                bail!(
                    "--kubeconfig {} and --kubeconfig-out {} name different files: `lab up` writes one kubeconfig; give one of them",
                    quote(&k.display().to_string()),
                    quote(&o.display().to_string())
                );
            }
            check_lab_options(&a.lab)?;
        }
        Command::Demo(a) => {
            if cli.kubeconfig.is_some() {
                bail!(
                    "the demo writes a kubeconfig of its own into a private temporary folder and prints it; \
                     --kubeconfig does not apply (to choose where a lab's kubeconfig goes, run `kubeway lab up --kubeconfig PATH`)"
                );
            }
            check_lab_options(&a.lab)?;
        }
    }
    Ok(())
}

fn check_lab_options(o: &LabOptions) -> Result<()> {
    if o.netns.is_some() && o.node_reachable.is_some() {
        anyhow::bail!(
            "--node-reachable does not apply with --netns: the topology decides (`reachable` or `published`)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn grammar_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_anywhere() {
        let c = Cli::try_parse_from(["kubeway", "lab", "up", "-o", "json", "--persona", "kind"])
            .expect("parses");
        assert_eq!(c.output, Output::Json);
        let Command::Lab(LabCommand::Up(up)) = c.command else {
            panic!("lab up")
        };
        assert_eq!(up.lab.persona, Persona::Kind);
        assert!(up.sample, "the sample app is the default");
        let c = Cli::try_parse_from(["kubeway", "lab", "up", "--sample=false"]).expect("parses");
        let Command::Lab(LabCommand::Up(up)) = c.command else {
            panic!("lab up")
        };
        assert!(!up.sample);
        assert!(Cli::try_parse_from(["kubeway", "lab", "up", "--persona", "moon"]).is_err());
    }

    #[test]
    fn durations_take_kubectl_forms_and_have_bounds() {
        use std::time::Duration;
        assert_eq!(parse_probe_timeout("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_probe_timeout("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_wait("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_wait("1h0m0s"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_wait("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_probe_timeout("2h").is_err(), "above the probe limit");
        assert!(parse_probe_timeout("0s").is_err());
        for hostile in [
            "99999999999999999999s",
            "99999999999999999999",
            "18446744073709551615s",
            "1e308s",
            "-1s",
            "",
            "NaNs",
        ] {
            let e = parse_probe_timeout(hostile).expect_err(hostile);
            assert!(e.len() < 400, "{e}");
        }
        let e = parse_wait(&"9".repeat(100_000)).expect_err("huge");
        assert!(e.len() < 400, "{}", e.len());
    }
}
