//! `forward-scenarios`: issue 4's resilience scenarios (rollout under load, spread, isolation, API
//! outage) run against `kubeway forward` and `kubectl port-forward` (WebSocket and SPDY modes)
//! through one lab, printing the success rates side by side. A program, not a test: it never
//! passes or fails on the numbers. A forward that dies is not restarted: that is what users get.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kubeway_lab::{Lab, LabSpec};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// Runs issue 4's scenarios against `kubeway forward` and `kubectl port-forward` in one lab and
/// prints both success rates side by side.
#[derive(Debug, Parser)]
#[command(name = "forward-scenarios", version)]
struct Args {
    /// Sequential short HTTP requests during the rollout.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    requests: u32,
    /// Minimum milliseconds between the starts of two rollout requests (2,000 x 5 ms = 10 s, so
    /// the rollout happens during the requests).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=1000))]
    interval_ms: u64,
    /// The kubeway binary (default: `kubeway` next to this program).
    #[arg(long)]
    kubeway: Option<PathBuf>,
    /// The kubectl program.
    #[arg(long, default_value = "kubectl")]
    kubectl: String,
    /// Write every number as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

const NS: &str = "default";
const WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Contender {
    Kubeway,
    KubectlWs,
    KubectlSpdy,
}

impl Contender {
    const ALL: [Contender; 3] = [
        Contender::Kubeway,
        Contender::KubectlWs,
        Contender::KubectlSpdy,
    ];

    fn name(self) -> &'static str {
        match self {
            Contender::Kubeway => "kubeway",
            Contender::KubectlWs => "kubectl-ws",
            Contender::KubectlSpdy => "kubectl-spdy",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Scenario {
    Rollout,
    Spread,
    Isolation,
    ApiOutage,
}

impl Scenario {
    const ALL: [Scenario; 4] = [
        Scenario::Rollout,
        Scenario::Spread,
        Scenario::Isolation,
        Scenario::ApiOutage,
    ];

    fn label(self, requests: u32) -> String {
        match self {
            Scenario::Rollout => format!("rollout: {requests} requests, 3 pods replaced"),
            Scenario::Spread => "spread: 300 requests, 3 ready pods".into(),
            Scenario::Isolation => "isolation: 20 x 2 MiB echo + 1 RESET".into(),
            Scenario::ApiOutage => "API down 5 s: 50 requests after".into(),
        }
    }
}

/// One scenario's numbers for one contender.
#[derive(Debug, Default, Serialize)]
struct Cell {
    /// Requests (or streams) that succeeded.
    ok: usize,
    /// Requests (or streams) attempted.
    total: usize,
    /// Spread: answers per pod.
    #[serde(skip_serializing_if = "Option::is_none")]
    pods: Option<BTreeMap<String, usize>>,
    /// Spread: the busiest pod's share of the answered requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    max_share: Option<f64>,
    /// Rollout: whether the three replacements were done before the requests ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    rollout_completed_during_requests: Option<bool>,
    /// Rollout: seconds from its start to the third replacement being ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    rollout_s: Option<f64>,
    /// Rollout: seconds the requests took.
    #[serde(skip_serializing_if = "Option::is_none")]
    requests_s: Option<f64>,
    /// API outage: seconds from the restart to the first successful request (none within 30 s).
    #[serde(skip_serializing_if = "Option::is_none")]
    first_success_after_restart_s: Option<f64>,
    /// How the forward process ended, if it did during the scenario.
    #[serde(skip_serializing_if = "Option::is_none")]
    forward_exited: Option<String>,
    /// The first few failures.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    first_failures: Vec<String>,
    /// Why the scenario could not run.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl Cell {
    fn fail(&mut self, e: String) {
        if self.first_failures.len() < 3 {
            self.first_failures.push(e);
        }
    }

    fn rate(&self) -> String {
        if self.total == 0 {
            return "n/a".into();
        }
        format!(
            "{:.2}% ({}/{})",
            self.ok as f64 * 100.0 / self.total as f64,
            self.ok,
            self.total
        )
    }

    fn render(&self, s: Scenario) -> String {
        if let Some(e) = &self.error {
            return format!("error: {}", e.chars().take(40).collect::<String>());
        }
        match s {
            Scenario::Rollout => self.rate(),
            Scenario::Spread => {
                let n = self.pods.as_ref().map_or(0, BTreeMap::len);
                format!(
                    "{n} pod{}, max {:.0}% ({} ok)",
                    if n == 1 { "" } else { "s" },
                    self.max_share.unwrap_or(0.0) * 100.0,
                    self.ok
                )
            }
            Scenario::Isolation => format!("{}/{} byte-exact", self.ok, self.total),
            Scenario::ApiOutage => match self.first_success_after_restart_s {
                Some(t) => format!("{}, 1st ok {t:.2} s", self.rate()),
                None => format!("{}, no ok in 30 s", self.rate()),
            },
        }
    }
}

#[derive(Debug, Serialize)]
struct Report {
    requests: u32,
    kubectl: Option<String>,
    scenarios: Vec<ScenarioResult>,
}

#[derive(Debug, Serialize)]
struct ScenarioResult {
    scenario: Scenario,
    label: String,
    /// Contender name → numbers.
    results: BTreeMap<&'static str, Cell>,
}

/// What every scenario needs.
struct Ctx {
    lab: Lab,
    kubeconfig: PathBuf,
    client: kube::Client,
    kubeway: PathBuf,
    kubectl: String,
    requests: u32,
    interval: Duration,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let kubeway = match a.kubeway.clone() {
        Some(p) => p,
        None => std::env::current_exe()
            .context("finding this program's path")?
            .parent()
            .context("this program's directory")?
            .join("kubeway"),
    };
    if !kubeway.is_file() {
        bail!(
            "no kubeway binary at {}; run `cargo build --release -p kubeway` first, or pass --kubeway PATH",
            kubeway.display()
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the runtime")?;
    let report = rt.block_on(async {
        tokio::select! {
            r = run(&a, kubeway) => r,
            _ = tokio::signal::ctrl_c() => bail!("interrupted; forwards and the lab stopped"),
        }
    })?;
    rt.shutdown_timeout(Duration::from_secs(2));
    print!("{}", render(&report));
    if let Some(path) = &a.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn progress(msg: &str) {
    eprintln!("[forward-scenarios] {msg}");
}

async fn run(a: &Args, kubeway: PathBuf) -> anyhow::Result<Report> {
    let kubectl = kubectl_version(&a.kubectl).await;
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    progress("starting the lab");
    let lab = Lab::start(LabSpec::default().with_sample())
        .await
        .context("starting the lab")?;
    let kubeconfig = dir.path().join("kubeconfig");
    let prepared = async {
        lab.write_kubeconfig(&kubeconfig)
            .context("writing the lab's kubeconfig")?;
        let kc = kube::config::Kubeconfig::read_from(&kubeconfig)
            .context("reading the lab's kubeconfig")?;
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .context("the lab's kubeconfig")?;
        kube::Client::try_from(cfg).context("a client for the lab")
    }
    .await;
    let client = match prepared {
        Ok(c) => c,
        Err(e) => {
            let _ = tokio::time::timeout(Duration::from_secs(10), lab.shutdown()).await;
            return Err(e);
        }
    };
    let ctx = Ctx {
        lab,
        kubeconfig,
        client,
        kubeway,
        kubectl: a.kubectl.clone(),
        requests: a.requests,
        interval: Duration::from_millis(a.interval_ms),
    };
    let mut scenarios = Vec::new();
    for s in Scenario::ALL {
        let mut row = BTreeMap::new();
        for c in Contender::ALL {
            let cell = match (&kubectl, c) {
                (Err(e), Contender::KubectlWs | Contender::KubectlSpdy) => Cell {
                    error: Some(e.clone()),
                    ..Cell::default()
                },
                _ => {
                    progress(&format!("{}: {}", s.label(a.requests), c.name()));
                    let cell = run_one(&ctx, s, c).await.unwrap_or_else(|e| Cell {
                        error: Some(format!("{e:#}")),
                        ..Cell::default()
                    });
                    progress(&format!("  -> {}", cell.render(s)));
                    if let (Some(r), Some(q)) = (cell.rollout_s, cell.requests_s) {
                        progress(&format!("  rollout took {r:.1} s, the requests {q:.1} s"));
                    }
                    cell
                }
            };
            row.insert(c.name(), cell);
        }
        scenarios.push(ScenarioResult {
            scenario: s,
            label: s.label(a.requests),
            results: row,
        });
    }
    progress("stopping the lab");
    if tokio::time::timeout(Duration::from_secs(10), ctx.lab.shutdown())
        .await
        .is_err()
    {
        progress("the lab did not stop within 10 s; abandoning it");
    }
    Ok(Report {
        requests: a.requests,
        kubectl: kubectl.ok(),
        scenarios,
    })
}

async fn kubectl_version(kubectl: &str) -> Result<String, String> {
    let out = Command::new(kubectl)
        .args(["version", "--client", "-o", "json"])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("{kubectl} cannot be started ({e}); pass --kubectl PATH"))?;
    if !out.status.success() {
        return Err(format!("{kubectl} version --client failed"));
    }
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    Ok(v["clientVersion"]["gitVersion"]
        .as_str()
        .unwrap_or("unknown")
        .to_string())
}

/// One scenario for one contender, from 3 ready web pods and a running API server.
async fn run_one(ctx: &Ctx, s: Scenario, c: Contender) -> anyhow::Result<Cell> {
    restore(ctx).await?;
    let (target, port, ready) = match s {
        Scenario::Isolation => ("svc/echo", 9000, 1),
        _ => ("svc/web", 80, 3),
    };
    let mut fw = Forward::start(ctx, c, target, port, ready).await?;
    let mut cell = match s {
        Scenario::Rollout => rollout(ctx, &fw).await?,
        Scenario::Spread => spread(&fw).await,
        Scenario::Isolation => isolation(&fw).await?,
        Scenario::ApiOutage => match outage(ctx, &fw).await {
            Ok(cell) => cell,
            Err(e) => {
                // The next scenario needs the API server; it may be up already (then this fails).
                let _ = ctx.lab.start_api().await;
                return Err(e);
            }
        },
    };
    cell.forward_exited = fw.exited();
    fw.stop().await;
    Ok(cell)
}

/// Back to 3 ready web pods.
async fn restore(ctx: &Ctx) -> anyhow::Result<()> {
    let d: Api<Deployment> = Api::namespaced(ctx.client.clone(), NS);
    d.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 3}})),
    )
    .await
    .context("scaling deployment/web to 3")?;
    anyhow::ensure!(
        ctx.lab.wait_ready(NS, "app=web", 3, WAIT).await,
        "3 web pods were not ready within 30 s"
    );
    anyhow::ensure!(
        ctx.lab.wait_ready(NS, "app=echo", 1, WAIT).await,
        "the echo pod was not ready within 30 s"
    );
    Ok(())
}

/// A running `kubeway forward` or `kubectl port-forward`.
struct Forward {
    child: Child,
    local: SocketAddr,
    stderr: Arc<Mutex<VecDeque<String>>>,
}

impl Forward {
    /// Starts `c` forwarding `target` `:port` on 127.0.0.1 and waits until it forwards (for
    /// kubeway, also until it uses `ready` endpoints).
    async fn start(
        ctx: &Ctx,
        c: Contender,
        target: &str,
        port: u16,
        ready: usize,
    ) -> anyhow::Result<Self> {
        let mut cmd = match c {
            Contender::Kubeway => {
                let mut cmd = Command::new(&ctx.kubeway);
                cmd.args(["forward", "-o", "json", "--address", "127.0.0.1"])
                    .arg("--kubeconfig")
                    .arg(&ctx.kubeconfig);
                cmd
            }
            Contender::KubectlWs | Contender::KubectlSpdy => {
                let mut cmd = Command::new(&ctx.kubectl);
                cmd.args(["port-forward", "-n", NS, "--address", "127.0.0.1"])
                    .env("KUBECONFIG", &ctx.kubeconfig)
                    .env(
                        "KUBECTL_PORT_FORWARD_WEBSOCKETS",
                        if c == Contender::KubectlWs {
                            "true"
                        } else {
                            "false"
                        },
                    );
                cmd
            }
        };
        let mut child = cmd
            .args([target, &format!(":{port}")])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} for {target}", c.name()))?;
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(err) = child.stderr.take() {
            let tail = stderr.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(err).lines();
                while let Ok(Some(l)) = lines.next_line().await {
                    let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
                    if t.len() == 5 {
                        t.pop_front();
                    }
                    t.push_back(l);
                }
            });
        }
        let mut lines =
            BufReader::new(child.stdout.take().context("the forward's stdout")?).lines();
        let mut fw = Self {
            child,
            local: SocketAddr::from(([127, 0, 0, 1], 0)),
            stderr,
        };
        // kubeway: the "forwarding" event, then "endpoints" events; kubectl: "Forwarding from
        // 127.0.0.1:PORT -> REMOTE".
        let ready_now = Arc::new(AtomicBool::new(c != Contender::Kubeway));
        let found = tokio::time::timeout(WAIT, async {
            while let Some(line) = lines.next_line().await? {
                let addr = if c == Contender::Kubeway {
                    serde_json::from_str::<Value>(&line)
                        .ok()
                        .filter(|v| v["event"] == "forwarding")
                        .and_then(|v| v["local"].as_str().and_then(|a| a.parse().ok()))
                } else {
                    line.strip_prefix("Forwarding from ")
                        .and_then(|r| r.split_whitespace().next())
                        .and_then(|a| a.parse::<SocketAddr>().ok())
                };
                if addr.is_some() {
                    return std::io::Result::Ok(addr);
                }
            }
            Ok(None)
        })
        .await;
        let local = match found {
            Ok(Ok(Some(a))) => a,
            Ok(_) => bail!(
                "{} for {target} ended before forwarding: {}",
                c.name(),
                fw.stderr_tail()
            ),
            Err(_) => bail!(
                "{} for {target} did not forward within 30 s: {}",
                c.name(),
                fw.stderr_tail()
            ),
        };
        // Only loopback, as asked with --address.
        if !local.ip().is_loopback() {
            bail!(
                "{} reported a non-loopback address {local}; refusing to use it",
                c.name()
            );
        }
        fw.local = local;
        let flag = ready_now.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && v["event"] == "endpoints"
                {
                    let n = v["ready"].as_array().map_or(0, Vec::len);
                    flag.store(n == ready, Ordering::SeqCst);
                }
            }
        });
        let deadline = Instant::now() + WAIT;
        while !ready_now.load(Ordering::SeqCst) {
            if Instant::now() > deadline {
                bail!(
                    "{} for {target} did not see {ready} ready endpoints within 30 s",
                    c.name()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(fw)
    }

    /// How the process ended, if it has.
    fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!("{status}; stderr: {}", self.stderr_tail())),
            _ => None,
        }
    }

    fn stderr_tail(&self) -> String {
        let t = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        if t.is_empty() {
            "(nothing)".into()
        } else {
            t.iter().cloned().collect::<Vec<_>>().join(" | ")
        }
    }

    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}

/// One short HTTP request on a new connection; the pod that answered.
///
/// Like a keep-alive client (curl, a browser), it reads the response by its Content-Length and
/// then closes the connection itself. Letting the pod close first (`Connection: close`) would
/// measure a lab artifact instead of kubectl: the lab's kubelet reports kubectl's routine reset
/// of a finished data stream as a forwarding error, and kubectl exits on it, where a real kubelet
/// (whose SPDY reads a reset as EOF) reports nothing.
async fn get(addr: SocketAddr) -> Result<String, String> {
    let answer = tokio::time::timeout(Duration::from_secs(10), async {
        let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .map_err(|e| e.to_string())?;
        read_response(&mut s).await
    })
    .await
    .map_err(|_| "timed out after 10 s".to_string())??;
    answer
        .lines()
        .find_map(|l| {
            l.strip_prefix("Hello from ")
                .map(|r| r.split_whitespace().next().unwrap_or("").to_string())
        })
        .ok_or_else(|| {
            format!(
                "unexpected answer: {:?}",
                answer.chars().take(80).collect::<String>()
            )
        })
}

/// Reads one HTTP/1.1 response with a Content-Length; returns its body.
async fn read_response(s: &mut TcpStream) -> Result<String, String> {
    const LIMIT: usize = 64 << 10;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())
                        .flatten()
                })
                .filter(|n| *n <= LIMIT)
                .ok_or_else(|| format!("no usable Content-Length in {head:?}"))?;
            let start = end + 4;
            while buf.len() < start + len {
                let n = s.read(&mut chunk).await.map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err(format!(
                        "connection ended after {} of {len} body bytes",
                        buf.len() - start
                    ));
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Ok(String::from_utf8_lossy(&buf[start..start + len]).to_string());
        }
        if buf.len() > LIMIT {
            return Err("response head over 64 KiB".into());
        }
        let n = s.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(if buf.is_empty() {
                "connection closed without an answer".into()
            } else {
                format!(
                    "connection ended inside the response head: {:?}",
                    String::from_utf8_lossy(&buf)
                )
            });
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Deletes the web pods one by one, each time waiting for 3 ready pods none of them deleted.
/// Returns the pods deleted and how long the whole rollout took.
async fn replace_pods(pods: Api<Pod>) -> anyhow::Result<(Vec<String>, Duration)> {
    let started = Instant::now();
    // Every pod there at the start, so the pod a kubectl is pinned to is always among them
    // (picking "any pod not deleted yet" from a fresh list can pick a replacement instead).
    let originals: Vec<String> = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .context("listing web pods")?
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    let mut killed = Vec::new();
    for victim in originals {
        tokio::time::sleep(Duration::from_millis(300)).await;
        pods.delete(&victim, &DeleteParams::default())
            .await
            .with_context(|| format!("deleting pod {victim}"))?;
        killed.push(victim);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let list = pods
                .list(&ListParams::default().labels("app=web"))
                .await
                .context("listing web pods")?;
            let ready: Vec<_> = list
                .items
                .iter()
                .filter(|p| is_ready(p))
                .filter_map(|p| p.metadata.name.clone())
                .collect();
            if ready.len() >= 3 && !ready.iter().any(|p| killed.contains(p)) {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "no replacement pod was ready within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    Ok((killed, started.elapsed()))
}

async fn rollout(ctx: &Ctx, fw: &Forward) -> anyhow::Result<Cell> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), NS);
    let started = Instant::now();
    let killer = tokio::spawn(replace_pods(pods));
    let mut cell = Cell::default();
    for i in 0..ctx.requests {
        // Paced, so the requests span the rollout and a dead forward's instant failures weigh
        // what the same time would have cost any client.
        tokio::time::sleep_until((started + ctx.interval * i).into()).await;
        cell.total += 1;
        match get(fw.local).await {
            Ok(_) => cell.ok += 1,
            Err(e) => cell.fail(e),
        }
    }
    cell.rollout_completed_during_requests = Some(killer.is_finished());
    cell.requests_s = Some(started.elapsed().as_secs_f64());
    let (killed, took) = tokio::time::timeout(Duration::from_secs(600), killer)
        .await
        .context("the rollout did not finish")?
        .context("the rollout task")??;
    anyhow::ensure!(
        killed.len() >= 3,
        "only {} pods were replaced",
        killed.len()
    );
    cell.rollout_s = Some(took.as_secs_f64());
    Ok(cell)
}

async fn spread(fw: &Forward) -> Cell {
    let mut cell = Cell::default();
    let mut pods: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..300 {
        cell.total += 1;
        match get(fw.local).await {
            Ok(pod) => {
                cell.ok += 1;
                *pods.entry(pod).or_default() += 1;
            }
            Err(e) => cell.fail(e),
        }
    }
    cell.max_share = Some(pods.values().max().copied().unwrap_or(0) as f64 / cell.ok.max(1) as f64);
    cell.pods = Some(pods);
    cell
}

async fn isolation(fw: &Forward) -> anyhow::Result<Cell> {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20u64 {
        let addr = fw.local;
        tasks.spawn(async move {
            tokio::time::timeout(
                Duration::from_secs(60),
                kubeway_bench::workload::stream_echo(addr, i + 1, 2 << 20),
            )
            .await
            .unwrap_or_else(|_| Err("timed out after 60 s".into()))
        });
    }
    // The pod resets this one connection while the 20 stream.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let victim = async {
        let mut v = TcpStream::connect(fw.local).await?;
        v.write_all(b"RESET").await?;
        let mut buf = [0u8; 16];
        let _ = tokio::time::timeout(Duration::from_secs(10), v.read(&mut buf)).await;
        std::io::Result::Ok(())
    };
    let _ = victim.await;
    let mut cell = Cell::default();
    while let Some(r) = tasks.join_next().await {
        cell.total += 1;
        match r.context("an echo stream task")? {
            Ok(()) => cell.ok += 1,
            Err(e) => cell.fail(e),
        }
    }
    Ok(cell)
}

async fn outage(ctx: &Ctx, fw: &Forward) -> anyhow::Result<Cell> {
    get(fw.local)
        .await
        .map_err(|e| anyhow::anyhow!("the forward did not work before the outage: {e}"))?;
    progress("  stopping the API server for 5 s");
    ctx.lab.stop_api().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    ctx.lab
        .start_api()
        .await
        .context("restarting the API server")?;
    let back = Instant::now();
    let mut cell = Cell::default();
    while back.elapsed() < WAIT {
        if get(fw.local).await.is_ok() {
            cell.first_success_after_restart_s = Some(back.elapsed().as_secs_f64());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..50 {
        cell.total += 1;
        match get(fw.local).await {
            Ok(_) => cell.ok += 1,
            Err(e) => cell.fail(e),
        }
    }
    Ok(cell)
}

fn render(r: &Report) -> String {
    let mut rows: Vec<Vec<String>> = vec![
        std::iter::once("scenario".to_string())
            .chain(Contender::ALL.map(|c| c.name().to_string()))
            .collect(),
    ];
    for sr in &r.scenarios {
        rows.push(
            std::iter::once(sr.label.clone())
                .chain(Contender::ALL.map(|c| {
                    sr.results
                        .get(c.name())
                        .map_or("-".into(), |cell| cell.render(sr.scenario))
                }))
                .collect(),
        );
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    let mut notes = Vec::new();
    for sr in &r.scenarios {
        for c in Contender::ALL {
            let Some(cell) = sr.results.get(c.name()) else {
                continue;
            };
            let what = format!("{:?} / {}", sr.scenario, c.name());
            if let Some(e) = &cell.error {
                notes.push(format!("{what}: error: {e}"));
            }
            if let Some(x) = &cell.forward_exited {
                notes.push(format!("{what}: the forward exited ({x})"));
            }
            if cell.rollout_completed_during_requests == Some(false) {
                notes.push(format!(
                    "{what}: the rollout was still going when the requests ended"
                ));
            }
            if let Some(f) = cell.first_failures.first() {
                notes.push(format!("{what}: first failure: {f}"));
            }
        }
    }
    if !notes.is_empty() {
        out.push('\n');
        for n in notes {
            out.push_str(&format!("- {n}\n"));
        }
    }
    out
}
