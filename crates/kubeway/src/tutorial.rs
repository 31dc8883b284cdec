//! `kubeway demo --tutorial`: the newcomer's first ten minutes. The minikube Get Started guide,
//! one command at a time, against a lab of its own: each command printed, run (kubectl is the
//! machine's own; `kubeway open` and `kubeway tunnel` stand for `minikube service` and
//! `minikube tunnel`), what it did shown from the cluster and from live probes, and the layer it
//! opened or crossed named: Kubernetes (Deployment, Service, NodePort, EndpointSlice), the driver
//! (the VM or container boundary around the node), or the host.

use std::io::{BufRead, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams};
use kubeway_kube::{ConnectOptions, connect};
use kubeway_lab::Lab;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::cli::{DemoArgs, Output};
use crate::lab::{describe, start};

/// How long one step may take before the tutorial says it is stuck.
const STEP_DEADLINE: Duration = Duration::from_secs(60);

/// The guide's port-forward asks for this local port.
const GUIDE_PORT: u16 = 7080;

/// Finds a program on PATH.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    })
}

struct Tutorial<'a> {
    lab: &'a Lab,
    dir: tempfile::TempDir,
    kubectl: PathBuf,
    me: PathBuf,
    pause: bool,
    color: bool,
    step: usize,
    client: kube::Client,
}

const STEPS: usize = 12;

impl Tutorial<'_> {
    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    fn bold(&self, s: &str) -> String {
        if self.color {
            format!("\x1b[1m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }

    /// Starts a step: waits for Enter first with `--pause`, then prints its title.
    fn begin(&mut self, title: &str) {
        self.step = self.step.saturating_add(1);
        if self.pause && self.step > 1 {
            print!("  (press Enter for step {})", self.step);
            let _ = std::io::stdout().flush();
            let mut line = String::new();
            let _ = std::io::stdin().lock().read_line(&mut line);
        }
        println!();
        println!(
            "{}",
            self.bold(&format!("── step {} of {STEPS}: {title}", self.step))
        );
    }

    fn command(&self, program: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(program);
        c.args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .env("KUBECACHEDIR", self.dir.path().join("cache"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        c
    }

    fn program(&self, line: &str) -> (PathBuf, Vec<String>) {
        let mut words = line.split_whitespace().map(str::to_string);
        let first = words.next().unwrap_or_default();
        let program = if first == "kubeway" {
            self.me.clone()
        } else {
            self.kubectl.clone()
        };
        (program, words.collect())
    }

    /// Prints `$ line`, runs it to its end, prints its output; fails the tutorial if it fails.
    async fn run(&self, line: &str) -> Result<String> {
        println!("{}", self.bold(&format!("$ {line}")));
        let (program, args) = self.program(line);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = tokio::time::timeout(STEP_DEADLINE, self.command(&program, &args).output())
            .await
            .with_context(|| format!("`{line}` did not finish within {STEP_DEADLINE:?}"))?
            .with_context(|| format!("running `{line}`"))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        for l in stdout.lines().chain(stderr.lines()) {
            println!("  │ {l}");
        }
        if !out.status.success() {
            bail!("`{line}` failed ({}): {}", out.status, stderr.trim());
        }
        Ok(stdout)
    }

    /// Prints `$ line` and starts it; it keeps running (a forward, the tunnel).
    fn spawn(&self, line: &str) -> Result<Running> {
        println!("{}", self.bold(&format!("$ {line}")));
        let (program, args) = self.program(line);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Running::new(
            self.command(&program, &args)
                .spawn()
                .with_context(|| format!("starting `{line}`"))?,
        )
    }

    fn explain(&self, what: &str, layer: &str) {
        for l in what.lines() {
            println!("  {l}");
        }
        println!("  {} {layer}", self.bold("layer:"));
    }

    async fn service(&self, name: &str) -> Result<Service> {
        Api::<Service>::namespaced(self.client.clone(), "default")
            .get(name)
            .await
            .with_context(|| format!("reading service {name} (an API error)"))
    }

    /// The first ingress address of a LoadBalancer Service, if someone wrote one.
    async fn ingress(&self, name: &str) -> Result<Option<String>> {
        Ok(self
            .service(name)
            .await?
            .status
            .and_then(|s| s.load_balancer)
            .and_then(|lb| lb.ingress)
            .and_then(|i| i.into_iter().next())
            .and_then(|i| i.ip.or(i.hostname)))
    }

    async fn pods(&self, app: &str) -> Result<Vec<Pod>> {
        Ok(Api::<Pod>::namespaced(self.client.clone(), "default")
            .list(&ListParams::default().labels(&format!("app={app}")))
            .await
            .with_context(|| format!("listing the pods of {app} (an API error)"))?
            .items)
    }
}

/// A command of the guide that keeps running (a forward, the tunnel), and its stdout.
struct Running {
    child: Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Running {
    fn new(mut child: Child) -> Result<Self> {
        let stdout = child.stdout.take().context("the command's output")?;
        Ok(Self {
            child,
            lines: BufReader::new(stdout).lines(),
        })
    }

    /// Reads (and with `echo` shows) its output until a line contains `want`.
    async fn until(&mut self, want: &str, echo: bool) -> Result<String> {
        let lines = &mut self.lines;
        tokio::time::timeout(STEP_DEADLINE, async {
            while let Ok(Some(l)) = lines.next_line().await {
                if echo {
                    println!("  │ {l}");
                }
                if l.contains(want) {
                    return Some(l);
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .with_context(|| format!("the command never printed a line with {want:?}"))
    }

    /// Stops it the way Ctrl-C would, and waits for it.
    async fn interrupt(mut self) {
        #[cfg(unix)]
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok())
            && let Some(pid) = rustix::process::Pid::from_raw(pid)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::INT);
            let lines = &mut self.lines;
            let drained = tokio::time::timeout(Duration::from_secs(10), async {
                while let Ok(Some(_)) = lines.next_line().await {}
            });
            if drained.await.is_ok()
                && tokio::time::timeout(Duration::from_secs(10), self.child.wait())
                    .await
                    .is_ok()
            {
                return;
            }
        }
        let _ = self.child.kill().await;
    }
}

async fn fetch(url: &str) -> Result<String> {
    let addr: SocketAddr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .with_context(|| format!("{url} is not an http://ADDRESS:PORT URL"))?;
    let deadline = deadline_in(STEP_DEADLINE);
    loop {
        match crate::demo::fetch(addr).await {
            Ok((200, body)) => return Ok(body),
            Ok((status, body)) if Instant::now() >= deadline => {
                bail!("{url} answered {status}: {body}")
            }
            Err(e) if Instant::now() >= deadline => return Err(e),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

fn show_page(url: &str, page: &str) {
    println!("  GET {url} →");
    for l in page.lines().take(8) {
        println!("  │ {l}");
    }
}

/// Whether the host reaches `addr` (a TCP connect within a second).
async fn reaches(addr: SocketAddr) -> std::result::Result<(), String> {
    match tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 1s".into()),
    }
}

/// A local port for the guide's port-forward: 7080 when it is free, else a free one.
fn guide_port() -> u16 {
    if std::net::TcpListener::bind(("127.0.0.1", GUIDE_PORT)).is_ok() {
        return GUIDE_PORT;
    }
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(GUIDE_PORT)
}

/// Runs the tutorial.
pub async fn run(args: DemoArgs, output: Output) -> Result<()> {
    if output != Output::Text {
        bail!("the tutorial prints text for the terminal; run it without -o json");
    }
    if args.lab.netns.is_some() {
        bail!(
            "the tutorial runs in loopback mode; for namespace mode start `sudo kubeway lab up --netns reachable` and follow the guide in the host namespace it names"
        );
    }
    let Some(kubectl) = on_path("kubectl") else {
        bail!(
            "the tutorial runs the guide's kubectl commands with your kubectl, and there is none on PATH: install kubectl (https://kubernetes.io/docs/tasks/tools/) and run `kubeway demo --tutorial` again"
        );
    };
    let me = std::env::current_exe().context("finding the kubeway binary to run its commands")?;
    let dir = tempfile::Builder::new()
        .prefix("kubeway-tutorial-")
        .tempdir()
        .context("making a private directory for the tutorial's kubeconfig")?;
    let lab = start(&args.lab, false).await?;
    let result = async {
        lab.write_kubeconfig(&dir.path().join("kubeconfig"))?;
        let opts = ConnectOptions {
            kubeconfig: Some(dir.path().join("kubeconfig")),
            namespace: Some("default".into()),
            ..Default::default()
        };
        let client = connect(&opts).await?.client;
        let mut t = Tutorial {
            lab: &lab,
            dir,
            kubectl,
            me,
            pause: args.pause,
            color: std::io::stdout().is_terminal(),
            step: 0,
            client,
        };
        guide(&mut t).await
    }
    .await;
    lab.shutdown().await;
    result
}

async fn guide(t: &mut Tutorial<'_>) -> Result<()> {
    let lab = t.lab;
    println!(
        "{}",
        t.bold("kubeway demo --tutorial: the minikube Get Started guide, one step at a time")
    );
    println!("  cluster:    {} at {}", describe(lab), lab.api_url());
    println!(
        "  kubeconfig: export KUBECONFIG={}   (kubectl works against it while the tutorial runs)",
        t.kubeconfig().display()
    );
    println!(
        "  runs:       your kubectl ({}), and this kubeway for `kubeway open` and `kubeway tunnel`",
        t.kubectl.display()
    );
    let (node_name, node_ip, _) = lab
        .nodes()
        .into_iter()
        .next()
        .context("the lab has no node")?;

    t.begin("a Deployment");
    t.run("kubectl create deployment hello-minikube --image=kicbase/echo-server:1.0")
        .await?;
    if !lab
        .wait_ready("default", "app=hello-minikube", 1, STEP_DEADLINE)
        .await
    {
        bail!(
            "the hello-minikube pod did not become ready (see `kubectl describe pod -l app=hello-minikube`)"
        );
    }
    let pods = t.pods("hello-minikube").await?;
    let pod = pods.first().context("no hello-minikube pod")?;
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let pod_ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .unwrap_or_default();
    t.explain(
        &format!(
            "The Deployment made a ReplicaSet, which made pod {pod_name}; the scheduler put it on node\n\
             {node_name}, the kubelet pulled kicbase/echo-server and started it. It is Ready at {pod_ip}:8080,\n\
             an address inside the cluster's network: nothing outside the node can reach it yet."
        ),
        "Kubernetes (Deployment → ReplicaSet → Pod)",
    );

    t.begin("a Service of type NodePort");
    t.run("kubectl expose deployment hello-minikube --type=NodePort --port=8080")
        .await?;
    let svc = t.service("hello-minikube").await?;
    let spec = svc.spec.clone().unwrap_or_default();
    let cluster_ip = spec.cluster_ip.clone().unwrap_or_default();
    let node_port = spec
        .ports
        .as_ref()
        .and_then(|p| p.first())
        .and_then(|p| p.node_port)
        .unwrap_or(0);
    let deadline = deadline_in(STEP_DEADLINE);
    let slice_endpoints = loop {
        let slices = Api::<EndpointSlice>::namespaced(t.client.clone(), "default")
            .list(&ListParams::default().labels("kubernetes.io/service-name=hello-minikube"))
            .await
            .context("listing EndpointSlices (an API error)")?;
        let ready: Vec<String> = slices
            .items
            .iter()
            .flat_map(|s| s.endpoints.clone().unwrap_or_default())
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
            .flat_map(|e| e.addresses)
            .map(|a| format!("{a}:8080"))
            .collect();
        if !ready.is_empty() || Instant::now() >= deadline {
            break ready;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    t.explain(
        &format!(
            "The Service got ClusterIP {cluster_ip} (a virtual address the node's kube-proxy answers) and\n\
             NodePort {node_port}, opened on every node. Its EndpointSlice lists the ready pods: {}.",
            if slice_endpoints.is_empty() {
                "none yet".to_string()
            } else {
                slice_endpoints.join(", ")
            }
        ),
        "Kubernetes (Service → EndpointSlice → Pod, NodePort on the node)",
    );

    t.begin("where is it?");
    t.run("kubectl get services hello-minikube").await?;
    let node_addr = SocketAddr::from((node_ip, u16::try_from(node_port).unwrap_or(0)));
    let probe = reaches(node_addr).await;
    match &probe {
        Ok(()) => t.explain(
            &format!(
                "From here, the host, {node_addr} (node {node_name}'s NodePort) answers: this driver lets\n\
                 the host reach the node, so http://{node_addr}/ works as it is."
            ),
            "the driver: no boundary between the host and the node here",
        ),
        Err(e) => t.explain(
            &format!(
                "kubectl shows no way in from your machine. Probed from the host just now, the node's NodePort\n\
                 {node_addr} does not answer ({e}): the node sits behind the driver's boundary\n\
                 (this lab plays {}: the node is a container or VM the host has no route into).\n\
                 This is not Kubernetes failing: everything inside the cluster is ready.",
                lab.persona().provider.display_name()
            ),
            "the driver (the VM or container around the node) stands between the host and the NodePort",
        ),
    }

    t.begin("kubeway open (for `minikube service hello-minikube`)");
    let mut open = t.spawn("kubeway open hello-minikube --no-browser")?;
    let row = open.until("http://", true).await?;
    let url = row
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .map(str::to_string)
        .with_context(|| format!("no URL in {row:?}"))?;
    let forwarded = row.trim_end().ends_with("forward");
    if forwarded {
        open.until("forwarding because", true).await?;
    }
    let page = fetch(&url).await?;
    show_page(&url, &page);
    open.interrupt().await;
    if forwarded {
        t.explain(
            &format!(
                "kubeway probed the same NodePort, found it out of reach, and opened a forward instead: {url}\n\
                 on this host → the API server → the kubelet → the pod. The echo server answered.\n\
                 (`minikube service` does the same on the docker driver and keeps its terminal open.)"
            ),
            "the host (a local port) crossing the driver through the API server, not the NodePort",
        );
    } else {
        t.explain(
            &format!(
                "kubeway probed the NodePort, the host reaches it, so the URL is the node's own: {url}.\n\
                 The echo server answered, through the node's kube-proxy."
            ),
            "the host → the node (NodePort) → Service → EndpointSlice → Pod",
        );
    }

    t.begin("kubectl port-forward");
    let port = guide_port();
    if port != GUIDE_PORT {
        println!("  (local port {GUIDE_PORT} is in use here; the tutorial uses {port} instead)");
    }
    let mut pf = t.spawn(&format!(
        "kubectl port-forward service/hello-minikube {port}:8080"
    ))?;
    pf.until("Forwarding from 127.0.0.1", true).await?;
    let url = format!("http://127.0.0.1:{port}/");
    let page = fetch(&url).await?;
    show_page(&url, &page);
    pf.interrupt().await;
    t.explain(
        "kubectl resolved the Service to one of its pods and tunnelled 127.0.0.1 to it through the API\n\
         server. It skips the Service itself: no load balancing, and it ends when that pod goes.",
        "the host → the API server → the pod (the Service is only used to pick the pod)",
    );

    t.begin("the app's own story");
    t.run("kubectl logs deployment/hello-minikube").await?;
    t.explain(
        "The echo server's stdout, kept by the kubelet: its start-up line and one line per request,\n\
         from kubeway open and from kubectl port-forward.",
        "inside the pod",
    );

    t.begin("a second Deployment");
    t.run("kubectl create deployment balanced --image=kicbase/echo-server:1.0")
        .await?;
    t.explain(
        "The same again, to put behind a LoadBalancer.",
        "Kubernetes",
    );

    t.begin("a Service of type LoadBalancer");
    t.run("kubectl expose deployment balanced --type=LoadBalancer --port=8080")
        .await?;
    // A platform with a load balancer of its own (k3s's servicelb) answers within moments.
    if lab.persona().builtin_load_balancer {
        let deadline = deadline_in(Duration::from_secs(10));
        while t.ingress("balanced").await?.is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    t.run("kubectl get services balanced").await?;
    match t.ingress("balanced").await? {
        None => t.explain(
            "A LoadBalancer Service asks the platform for an external address. A cloud provides one;\n\
             this cluster has nobody to ask, so EXTERNAL-IP is <pending>.",
            "Kubernetes asks; the platform (here: nobody) answers",
        ),
        Some(ip) => t.explain(
            &format!(
                "A LoadBalancer Service asks the platform for an external address, and this platform's own\n\
                 load balancer answered: {ip}."
            ),
            "Kubernetes asks; the platform's load balancer answers",
        ),
    }

    t.begin("kubeway tunnel (for `minikube tunnel`, in a second terminal)");
    let platform = t.ingress("balanced").await?;
    let mut tunnel = t.spawn("kubeway tunnel")?;
    if platform.is_some() {
        tunnel.until("left alone", true).await?;
    } else {
        tunnel
            .until("written to status.loadBalancer.ingress", true)
            .await?;
    }
    let deadline = deadline_in(STEP_DEADLINE);
    let external = loop {
        if let Some(ip) = t.ingress("balanced").await? {
            break ip;
        }
        if Instant::now() >= deadline {
            tunnel.interrupt().await;
            bail!("kubeway tunnel gave balanced no EXTERNAL-IP within {STEP_DEADLINE:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    match platform {
        None => t.explain(
            &format!(
                "The tunnel played the platform's part: it gave balanced the address {external} on this\n\
                 host and carries what arrives there to the ready pods."
            ),
            "the host (an address of its own) crossing the driver to the pods",
        ),
        Some(_) => t.explain(
            &format!(
                "The platform's load balancer had already given balanced {external}; kubeway tunnel\n\
                 leaves a real load balancer's address alone."
            ),
            "the platform's load balancer, not the tunnel",
        ),
    }

    t.begin("EXTERNAL-IP shown");
    t.run("kubectl get services balanced").await?;
    let url = format!("http://{external}:8080/");
    let page = fetch(&url).await?;
    show_page(&url, &page);
    t.explain(
        &format!("http://{external}:8080 answers, from a pod of balanced."),
        "the host",
    );

    t.begin("what happened, as the cluster tells it");
    t.run("kubectl get events").await?;
    t.explain(
        "The scheduler placed the pods, the kubelet pulled, created and started the containers, the\n\
         deployment controller scaled the ReplicaSets: the cluster's side of the story.",
        "Kubernetes",
    );

    t.begin("clean up");
    t.run("kubectl delete service hello-minikube").await?;
    t.run("kubectl delete deployment hello-minikube").await?;
    // Checked, not assumed: the pods drain, then nothing of hello-minikube is left.
    let deadline = deadline_in(STEP_DEADLINE);
    while !t.pods("hello-minikube").await?.is_empty() {
        if Instant::now() >= deadline {
            bail!("the hello-minikube pods were still there {STEP_DEADLINE:?} after the delete");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tunnel.interrupt().await;
    let left = t.ingress("balanced").await?;
    println!(
        "  kubeway tunnel stopped (Ctrl-C): balanced's EXTERNAL-IP is {}",
        match (&left, &platform) {
            (None, _) => "taken back, <pending> again".to_string(),
            (Some(ip), Some(_)) => format!("{ip}, the platform's, as it was"),
            (Some(ip), None) => format!("still {ip}: the tunnel did not take it back"),
        }
    );
    t.explain(
        "hello-minikube's Service, Deployment, ReplicaSet and pod are gone (balanced goes with the\n\
         tutorial's lab, now).",
        "Kubernetes and the host, as they were",
    );

    println!();
    println!("{}", t.bold("The lesson"));
    let boundary = match probe {
        Ok(()) => format!(
            "  Here the driver let the host reach node {node_name}: the NodePort answered directly."
        ),
        Err(_) => format!(
            "  Here the driver kept node {node_name} out of the host's reach: the NodePort did not answer, and\n\
             \x20 every way that worked crossed the boundary another way (through the API server, or an address\n\
             \x20 on this host)."
        ),
    };
    println!(
        "  Kubernetes built the way inside the cluster: Deployment → Pod, Service → EndpointSlice → Pod,\n\
         \x20 a NodePort on the node. Whether your host can reach that node is not Kubernetes' business: it is\n\
         \x20 the driver's (a VM, a container, WSL2)."
    );
    println!("{boundary}");
    println!(
        "  Know which part is Kubernetes and which part is the driver, and know your driver.\n\
         \x20 (`kubeway env` names yours; `kubeway explain svc/NAME` checks every hop.)"
    );
    Ok(())
}

/// `now + d`, or a far deadline if that would overflow.
fn deadline_in(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .unwrap_or_else(|| now.checked_add(Duration::from_secs(86_400)).unwrap_or(now))
}
