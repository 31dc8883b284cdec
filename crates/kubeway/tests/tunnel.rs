//! `kubeway tunnel` end to end against the lab, judged by the real kubectl: LoadBalancer
//! Services get an EXTERNAL-IP that serves pages (two on port 80 at once), listeners follow
//! port changes and deletions, Ctrl-C takes every ingress back, a kill -9 leaves an ingress that
//! `--cleanup` (or the next tunnel) removes and nothing else, a servicelb ingress is left alone,
//! a refused privileged port moves to port+8000 with the fix named, and on one shared address a
//! port conflict is reported.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Env;
use kubeway_core::env::Provider;
use kubeway_lab::LabSpec;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

const KUBECTL: &str = "/usr/bin/kubectl";
/// How long the functional waits may take before a test fails (the issue asks for about a
/// second; every wait prints what it measured).
const DEADLINE: Duration = Duration::from_secs(15);

fn state_dir(env: &Env) -> PathBuf {
    env.dir.path().join("state")
}

fn tunnel_cmd(env: &Env, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kubeway"));
    c.args(["tunnel", "-o", "json", "--kubeconfig"])
        .arg(&env.kubeconfig)
        .args(args)
        .env("KUBEWAY_STATE_DIR", state_dir(env))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

/// A running `kubeway tunnel -o json` and the events it printed.
struct Tunnel {
    child: Child,
    events: Arc<Mutex<Vec<Value>>>,
}

impl Tunnel {
    async fn start(env: &Env, args: &[&str]) -> Self {
        Self::spawn(tunnel_cmd(env, args)).await
    }

    async fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd.spawn().expect("kubeway tunnel starts");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let events = Arc::new(Mutex::new(Vec::new()));
        let ev = events.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not a JSON event ({e}): {line}"));
                ev.lock().expect("events").push(v);
            }
        });
        let t = Self { child, events };
        t.wait_event("watching", |_| true).await;
        t
    }

    fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// The first event named `name` that `f` accepts, waiting for it.
    async fn wait_event(&self, name: &str, f: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            if let Some(v) = self
                .events
                .lock()
                .expect("events")
                .iter()
                .find(|e| e["event"] == name && f(e))
            {
                return v.clone();
            }
            assert!(
                start.elapsed() < DEADLINE,
                "no {name} event in {DEADLINE:?}; events: {:#?}",
                self.events.lock().expect("events")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends SIGINT (what Ctrl-C sends) and waits for a clean exit.
    async fn interrupt(mut self) -> Vec<Value> {
        let ok = std::process::Command::new("kill")
            .args(["-INT", &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success());
        let status = tokio::time::timeout(DEADLINE, self.child.wait())
            .await
            .expect("exits after Ctrl-C")
            .expect("wait");
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err).await;
        }
        assert!(status.success(), "clean exit after Ctrl-C: {status}: {err}");
        // Let the reader drain the last lines.
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.events.lock().expect("events").clone()
    }
}

async fn kubectl(env: &Env, args: &[&str]) -> String {
    kubectl_stdin(env, args, None).await
}

async fn kubectl_stdin(env: &Env, args: &[&str], stdin: Option<&str>) -> String {
    let mut c = Command::new(KUBECTL);
    c.arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("kubectl runs");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).await.expect("write stdin");
    }
    drop(input);
    let out = child.wait_with_output().await.expect("kubectl");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A LoadBalancer Service in front of the sample app's `web` pods.
async fn apply_lb(env: &Env, name: &str, port: u16) {
    let yaml = format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  type: LoadBalancer\n  selector:\n    app: web\n  ports:\n  - port: {port}\n    targetPort: http\n"
    );
    kubectl_stdin(env, &["apply", "-f", "-"], Some(&yaml)).await;
}

/// Writes a Service's ingress as another load balancer implementation would.
async fn set_ingress_as_someone_else(env: &Env, name: &str, ip: &str) {
    let patch = format!(r#"{{"status":{{"loadBalancer":{{"ingress":[{{"ip":"{ip}"}}]}}}}}}"#);
    kubectl(
        env,
        &[
            "patch",
            "svc",
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch,
        ],
    )
    .await;
}

/// The EXTERNAL-IP column of `kubectl get svc NAME`.
async fn external_ip(env: &Env, name: &str) -> String {
    let out = kubectl(env, &["get", "svc", name]).await;
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    let col = header
        .iter()
        .position(|h| *h == "EXTERNAL-IP")
        .expect("an EXTERNAL-IP column");
    lines
        .next()
        .expect("a row")
        .split_whitespace()
        .nth(col)
        .expect("cell")
        .to_string()
}

/// Polls until `kubectl get svc NAME` shows an EXTERNAL-IP other than `<pending>`; returns it
/// and how long it took.
async fn wait_external_ip(env: &Env, name: &str, since: Instant) -> (String, Duration) {
    loop {
        let ip = external_ip(env, name).await;
        if ip != "<pending>" {
            return (ip, since.elapsed());
        }
        assert!(
            since.elapsed() < DEADLINE,
            "{name} has no EXTERNAL-IP after {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn get_page(addr: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
        .await
        .map_err(|_| "no answer in 10 s".to_string())?
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// Polls until `addr` serves a page of the web pods (or refuses, with `refused`); returns how
/// long it took.
async fn wait_until(addr: &str, refused: bool, since: Instant) -> Duration {
    loop {
        let now = match get_page(addr).await {
            Ok(page) => !refused && page.contains("Hello from web-"),
            Err(e) => refused && e.contains("refused"),
        };
        if now {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < DEADLINE,
            "{addr} still {} after {DEADLINE:?}",
            if refused { "answers" } else { "does not serve" }
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancers_get_working_external_ips_that_follow_changes_and_go_on_ctrl_c() {
    // minikube's node is behind a boundary: connections go through the port-forward transport.
    let env = Env::start(LabSpec::new(Provider::Minikube)).await;
    let tunnel = Tunnel::start(&env, &[]).await;
    let (sample_ip, took) = wait_external_ip(&env, "web-lb", Instant::now()).await;
    println!("sample web-lb: EXTERNAL-IP {sample_ip} (already there when checked: {took:?})");

    let t0 = Instant::now();
    apply_lb(&env, "shop-a", 80).await;
    apply_lb(&env, "shop-b", 80).await;
    let (ip_a, took_a) = wait_external_ip(&env, "shop-a", t0).await;
    let (ip_b, took_b) = wait_external_ip(&env, "shop-b", t0).await;
    println!(
        "kubectl apply → EXTERNAL-IP in kubectl get svc: shop-a {ip_a} after {took_a:?}, shop-b {ip_b} after {took_b:?}"
    );
    assert!(ip_a.starts_with("127.77.") && ip_b.starts_with("127.77."));
    assert!(
        ip_a != ip_b && ip_a != sample_ip,
        "each Service has its own address"
    );
    assert_eq!(
        kubectl(
            &env,
            &[
                "get",
                "svc",
                "shop-a",
                "-o",
                "jsonpath={.status.loadBalancer.ingress[0].ipMode}"
            ]
        )
        .await,
        "Proxy"
    );
    // Both on port 80, at the same time.
    let a = format!("{ip_a}:80");
    let b = format!("{ip_b}:80");
    let (pa, pb) = tokio::join!(get_page(&a), get_page(&b));
    for (addr, page) in [(&a, pa), (&b, pb)] {
        let page = page.unwrap_or_else(|e| panic!("{addr}: {e}"));
        assert!(page.contains("Hello from web-"), "{addr}: {page}");
    }
    let serving = tunnel
        .wait_event("serving", |e| e["service"] == "default/shop-a")
        .await;
    assert_eq!(serving["ports"][0]["via"], "forward", "{serving}");
    assert!(
        serving["ports"][0]["why"]
            .as_str()
            .is_some_and(|w| w.contains("minikube")),
        "names the boundary: {serving}"
    );

    // Changing the port moves the listener.
    let t1 = Instant::now();
    kubectl(
        &env,
        &[
            "patch",
            "svc",
            "shop-a",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/ports/0/port","value":8081}]"#,
        ],
    )
    .await;
    let moved = wait_until(&format!("{ip_a}:8081"), false, t1).await;
    let closed = wait_until(&a, true, t1).await;
    println!(
        "port 80 → 8081: new listener serves after {moved:?}, old one refuses after {closed:?}"
    );
    assert_eq!(
        external_ip(&env, "shop-a").await,
        ip_a,
        "the address stays with the Service"
    );

    // Deleting the Service closes its listener.
    let t2 = Instant::now();
    kubectl(&env, &["delete", "svc", "shop-b"]).await;
    let gone = wait_until(&b, true, t2).await;
    println!("delete shop-b: its listener refuses after {gone:?}");
    tunnel
        .wait_event("closed", |e| e["service"] == "default/shop-b")
        .await;

    // Ctrl-C takes back every ingress it wrote.
    let events = tunnel.interrupt().await;
    let stopped = events
        .iter()
        .find(|e| e["event"] == "stopped")
        .expect("a stopped event");
    assert_eq!(stopped["removed"], 2, "web-lb and shop-a: {stopped}");
    assert_eq!(stopped["not_undone"], 0);
    for svc in ["web-lb", "shop-a"] {
        assert_eq!(external_ip(&env, svc).await, "<pending>", "{svc}");
    }
    assert!(
        get_page(&format!("{ip_a}:8081")).await.is_err(),
        "nothing listens any more"
    );
    assert!(
        files_in(&state_dir(&env)).is_empty(),
        "no lock or journal left: {:?}",
        files_in(&state_dir(&env))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_cleanup_removes_its_stale_ingress_and_nothing_else() {
    let env = Env::start(LabSpec::new(Provider::Kind)).await;
    // Someone else's load balancer serves `theirs`.
    apply_lb(&env, "theirs", 80).await;
    apply_lb(&env, "stolen", 80).await;
    set_ingress_as_someone_else(&env, "theirs", "127.88.0.1").await;
    let tunnel = Tunnel::start(&env, &[]).await;
    let left = tunnel
        .wait_event("left_alone", |e| e["service"] == "default/theirs")
        .await;
    assert_eq!(left["ingress"][0], "127.88.0.1", "{left}");
    let (web_ip, _) = wait_external_ip(&env, "web-lb", Instant::now()).await;
    let (stolen_ip, _) = wait_external_ip(&env, "stolen", Instant::now()).await;
    assert!(web_ip.starts_with("127.77.") && stolen_ip.starts_with("127.77."));

    // One tunnel per cluster: a second one, or a cleanup, is refused while it runs.
    for args in [&[][..], &["--cleanup"][..]] {
        let out = tunnel_cmd(&env, args).output().await.expect("runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} refused");
        assert!(
            err.contains("already running") && err.contains(&format!("pid {}", tunnel.pid())),
            "{args:?}: {err}"
        );
    }

    // kill -9: nothing is undone, the journal says what was done.
    let pid = tunnel.pid();
    let mut child = tunnel.child;
    child.kill().await.expect("SIGKILL");
    assert_eq!(external_ip(&env, "web-lb").await, web_ip, "left behind");
    let journal: Vec<PathBuf> = std::fs::read_dir(state_dir(&env))
        .expect("state dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    let record: Value =
        serde_json::from_slice(&std::fs::read(&journal[0]).expect("journal")).expect("json");
    assert_eq!(record["owner"]["pid"], pid);
    assert!(
        record["owner"]["start_time"].is_string(),
        "pid and process start time: {record}"
    );
    // `kubeway env` tells the dead tunnel left changes and what to run.
    let out = Command::new(env!("CARGO_BIN_EXE_kubeway"))
        .args(["env", "--kubeconfig"])
        .arg(&env.kubeconfig)
        .env("KUBEWAY_STATE_DIR", state_dir(&env))
        .output()
        .await
        .expect("env");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "a kubeway tunnel (pid {pid}) ended without undoing"
        )) && text.contains("kubeway tunnel --cleanup"),
        "{text}"
    );
    // Meanwhile another load balancer takes `stolen` over.
    set_ingress_as_someone_else(&env, "stolen", "127.88.0.2").await;

    let out = tunnel_cmd(&env, &["--cleanup"])
        .output()
        .await
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let undo = |svc: &str| {
        events
            .iter()
            .find(|e| {
                e["event"] == "undo"
                    && e["service"] == format!("default/{svc}")
                    && e["change"]["kind"] == "ingress"
            })
            .unwrap_or_else(|| panic!("an undo event for {svc}: {events:#?}"))["result"]
            .clone()
    };
    assert_eq!(undo("web-lb"), "removed");
    assert_eq!(undo("stolen"), "changed_since");
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "stale" && e["owner"]["pid"] == pid)
    );
    assert_eq!(external_ip(&env, "web-lb").await, "<pending>");
    assert_eq!(external_ip(&env, "stolen").await, "127.88.0.2", "untouched");
    assert_eq!(external_ip(&env, "theirs").await, "127.88.0.1", "untouched");
    assert!(files_in(&state_dir(&env)).is_empty());
    let again = tunnel_cmd(&env, &["--cleanup"])
        .output()
        .await
        .expect("runs");
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains(r#""event":"clean""#));

    // The next tunnel cleans up after a killed one by itself.
    let tunnel = Tunnel::start(&env, &[]).await;
    wait_external_ip(&env, "web-lb", Instant::now()).await;
    let pid = tunnel.pid();
    let mut child = tunnel.child;
    child.kill().await.expect("SIGKILL");
    let tunnel = Tunnel::start(&env, &[]).await;
    let stale = tunnel.wait_event("stale", |_| true).await;
    assert_eq!(stale["owner"]["pid"], pid);
    let serving = tunnel
        .wait_event("serving", |e| e["service"] == "default/web-lb")
        .await;
    let ip = serving["external_ip"].as_str().expect("ip").to_string();
    let took = wait_until(&format!("{ip}:80"), false, Instant::now()).await;
    println!("after the restart web-lb serves again at {ip} ({took:?})");
    let events = tunnel.interrupt().await;
    assert!(
        events.iter().any(|e| e["event"] == "undo"
            && e["service"] == "default/web-lb"
            && e["result"] == "removed"),
        "{events:#?}"
    );
    assert_eq!(external_ip(&env, "web-lb").await, "<pending>");
    assert_eq!(external_ip(&env, "stolen").await, "127.88.0.2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_servicelb_ingress_is_left_alone_and_reported() {
    // k3s ships servicelb, which writes the node's address as the ingress.
    let env = Env::start(LabSpec::new(Provider::K3s)).await;
    let (node_ip, _) = wait_external_ip(&env, "web-lb", Instant::now()).await;
    assert!(node_ip.starts_with("127.49."), "servicelb's: {node_ip}");
    let tunnel = Tunnel::start(&env, &[]).await;
    let left = tunnel
        .wait_event("left_alone", |e| e["service"] == "default/web-lb")
        .await;
    assert!(
        left["reason"]
            .as_str()
            .is_some_and(|r| r.contains("another load balancer")),
        "{left}"
    );
    let events = tunnel.interrupt().await;
    assert!(
        !events
            .iter()
            .any(|e| e["event"] == "serving" || e["event"] == "ingress"),
        "{events:#?}"
    );
    assert_eq!(external_ip(&env, "web-lb").await, node_ip, "untouched");
}

/// Runs the tunnel without CAP_NET_BIND_SERVICE (as a non-root user would be), when this
/// machine can: root with `setpriv`, and a kernel that keeps ports below 1024 privileged.
fn unprivileged(env: &Env) -> Option<Command> {
    let setpriv = Path::new("/usr/bin/setpriv");
    let start: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    if !setpriv.exists() || start <= 80 || !root {
        return None;
    }
    let mut c = Command::new(setpriv);
    c.args([
        "--bounding-set=-net_bind_service",
        "--inh-caps=-net_bind_service",
        "--",
        env!("CARGO_BIN_EXE_kubeway"),
        "tunnel",
        "-o",
        "json",
        "--kubeconfig",
    ])
    .arg(&env.kubeconfig)
    .env("KUBEWAY_STATE_DIR", state_dir(env))
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    Some(c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_privilege_port_80_moves_to_8080_and_the_fix_is_named() {
    // kind with a reachable node: connections go straight to the NodePort.
    let env = Env::start(LabSpec::new(Provider::Kind).reachable(true)).await;
    let Some(cmd) = unprivileged(&env) else {
        // Written past the test harness's capture, so the skip shows in CI's log.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: needs root, /usr/bin/setpriv and net.ipv4.ip_unprivileged_port_start > 80 to drop the privilege for real"
        );
        return;
    };
    let tunnel = Tunnel::spawn(cmd).await;
    let serving = tunnel
        .wait_event("serving", |e| e["service"] == "default/web-lb")
        .await;
    let port = &serving["ports"][0];
    let ip = serving["external_ip"].as_str().expect("ip");
    assert_eq!(port["port"], 80);
    assert_eq!(port["listen"], format!("{ip}:8080"), "{serving}");
    assert_eq!(port["moved"], "privileged");
    let note = port["note"].as_str().expect("a note");
    assert!(
        note.contains("CAP_NET_BIND_SERVICE") && note.contains("setcap"),
        "{note}"
    );
    assert!(
        port["via"]
            .as_str()
            .is_some_and(|v| v.starts_with("NodePort")),
        "{serving}"
    );
    let (shown, _) = wait_external_ip(&env, "web-lb", Instant::now()).await;
    assert_eq!(shown, ip);
    let took = wait_until(&format!("{ip}:8080"), false, Instant::now()).await;
    println!(
        "80 → {ip}:8080 via {} serves ({took:?}): {note}",
        port["via"]
    );
    tunnel.interrupt().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_one_shared_address_a_port_conflict_is_reported_and_both_still_serve() {
    let env = Env::start(LabSpec::new(Provider::Minikube)).await;
    kubectl(&env, &["delete", "svc", "web-lb"]).await;
    apply_lb(&env, "first", 18080).await;
    let mut cmd = tunnel_cmd(&env, &[]);
    cmd.env("KUBEWAY_TUNNEL_ADDRESSING", "shared");
    let tunnel = Tunnel::spawn(cmd).await;
    let first = tunnel
        .wait_event("serving", |e| e["service"] == "default/first")
        .await;
    assert_eq!(first["ports"][0]["listen"], "127.0.0.1:18080", "{first}");
    apply_lb(&env, "second", 18080).await;
    let second = tunnel
        .wait_event("serving", |e| e["service"] == "default/second")
        .await;
    let port = &second["ports"][0];
    assert_eq!(port["moved"], "taken", "{second}");
    assert!(
        port["note"]
            .as_str()
            .is_some_and(|n| n.contains("taken by default/first")),
        "{second}"
    );
    let listen = port["listen"].as_str().expect("listen");
    assert_ne!(listen, "127.0.0.1:18080");
    for addr in ["127.0.0.1:18080", listen] {
        wait_until(addr, false, Instant::now()).await;
    }
    assert_eq!(external_ip(&env, "second").await, "127.0.0.1");
    tunnel.interrupt().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_status_write_is_said_once_and_leaves_nothing_to_undo() {
    let env = Env::start(LabSpec::new(Provider::Minikube)).await;
    env.lab
        .deny(kubeway_lab::Denial::new("patch", "services/status"));
    let tunnel = Tunnel::start(&env, &[]).await;
    let serving = tunnel
        .wait_event("serving", |e| e["service"] == "default/web-lb")
        .await;
    let err = tunnel
        .wait_event("error", |e| e["service"] == "default/web-lb")
        .await;
    let text = err["error"].as_str().expect("error");
    assert!(
        text.contains("services/status") && text.contains("403"),
        "names what is missing: {text}"
    );
    assert_eq!(external_ip(&env, "web-lb").await, "<pending>");
    // The listener works all the same.
    let ip = serving["external_ip"].as_str().expect("ip");
    wait_until(&format!("{ip}:80"), false, Instant::now()).await;
    // Retries do not repeat the report while nothing changes.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let events = tunnel.interrupt().await;
    let errors = events.iter().filter(|e| e["event"] == "error").count();
    assert_eq!(errors, 1, "{events:#?}");
    let stopped = events
        .iter()
        .find(|e| e["event"] == "stopped")
        .expect("stopped");
    assert_eq!(stopped["not_undone"], 0, "nothing was written: {stopped}");
    assert!(files_in(&state_dir(&env)).is_empty());
}

#[tokio::test]
async fn bad_input_fails_clearly_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_kubeway"))
            .arg("tunnel")
            .args(args)
            .env("KUBEWAY_STATE_DIR", &state)
            .output()
            .expect("runs")
    };
    let out = run(&["-n", "shop", "-A"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("exclude each other"));
    let missing = dir.path().join("nope");
    let out = run(&["--kubeconfig", missing.to_str().expect("utf8")]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("kubeconfig"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!state.exists(), "no state written for a failed start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_node_port_stops_answering_connections_go_through_a_forward() {
    // A reachable node: the tunnel carries to the NodePort.
    let env = Env::start(LabSpec::new(Provider::Generic).reachable(true)).await;
    let tunnel = Tunnel::start(&env, &[]).await;
    let serving = tunnel
        .wait_event("serving", |e| e["service"] == "default/web-lb")
        .await;
    let via = serving["ports"][0]["via"].as_str().unwrap_or_default();
    assert!(via.starts_with("NodePort "), "{serving:#}");
    let node_port = via.rsplit(' ').next().expect("address").to_string();
    let (ip, _) = wait_external_ip(&env, "web-lb", Instant::now()).await;
    let addr = format!("{ip}:80");
    assert!(
        get_page(&addr)
            .await
            .expect("via the NodePort")
            .contains("Hello from web-")
    );

    // The node's network goes away (a VM suspended, kube-proxy restarting): its NodePort
    // refuses, the API server still answers.
    env.lab.set_reachable(false);
    let t0 = Instant::now();
    wait_until(&node_port, true, t0).await;
    let took = wait_until(&addr, false, Instant::now()).await;
    println!("NodePort {node_port} refused; EXTERNAL-IP served again after {took:?}");
    // The switch is reported, naming the NodePort that failed.
    let note = tunnel
        .wait_event("carrier", |e| e["service"] == "default/web-lb")
        .await;
    assert_eq!(note["via"], "forward", "{note:#}");
    assert!(
        note["why"]
            .as_str()
            .unwrap_or_default()
            .contains(&node_port),
        "{note:#}"
    );
    // Every later connection works too (through the forward, without waiting on the NodePort).
    for _ in 0..20 {
        let page = get_page(&addr).await.expect("through the forward");
        assert!(page.contains("Hello from web-"), "{page}");
    }
    let events = tunnel.interrupt().await;
    assert!(
        events.iter().any(|e| e["event"] == "stopped"),
        "{events:#?}"
    );
}
