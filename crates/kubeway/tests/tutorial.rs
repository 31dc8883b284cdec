//! The minikube Get Started guide, word for word, against the lab (minikube persona) with the
//! machine's kubectl, `kubeway open` in place of `minikube service` and `kubeway tunnel` in
//! place of `minikube tunnel`. The guide's port-forward uses the fixed local port 7080, so the
//! whole block runs in a network namespace of the test's own (only a loopback, no route out),
//! where that port is certainly free: `kubeway lab up`, kubectl, kubeway and curl all run there.
//! Needs root, iproute2, kubectl and curl; skipped with a message otherwise (kubectl is required
//! on CI).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The guide, as the issue prints it; comments name the minikube command each kubeway line
/// replaces.
const GUIDE: &str = "\
kubectl create deployment hello-minikube --image=kicbase/echo-server:1.0
kubectl expose deployment hello-minikube --type=NodePort --port=8080
kubectl get services hello-minikube
kubeway open hello-minikube                 # minikube service hello-minikube
kubectl port-forward service/hello-minikube 7080:8080
kubectl logs deployment/hello-minikube
kubectl create deployment balanced --image=kicbase/echo-server:1.0
kubectl expose deployment balanced --type=LoadBalancer --port=8080
kubeway tunnel                              # minikube tunnel, in a second terminal
kubectl get services balanced               # EXTERNAL-IP shown; http://EXTERNAL-IP:8080 answers
kubectl get events
kubectl delete service hello-minikube
kubectl delete deployment hello-minikube
";

const DEADLINE: Duration = Duration::from_secs(60);

/// A network namespace of this test's own, removed (with whatever still runs in it) on drop.
struct Sandbox {
    netns: String,
    dir: tempfile::TempDir,
    bin: PathBuf,
}

impl Sandbox {
    fn new() -> Self {
        let netns = format!("kwtut-{}-{}", std::process::id(), rand_suffix());
        let ok = std::process::Command::new("ip")
            .args(["netns", "add", &netns])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip netns add {netns}");
        let up = std::process::Command::new("ip")
            .args(["netns", "exec", &netns, "ip", "link", "set", "lo", "up"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(up, "bringing up lo in {netns}");
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).expect("bin dir");
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_kubeway"), bin.join("kubeway"))
            .expect("kubeway on PATH");
        Self { netns, dir, bin }
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// `argv` inside the namespace, with the sandbox's KUBECONFIG, HOME and state dir.
    fn command(&self, argv: &[&str]) -> Command {
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.netns])
            .args(argv)
            .env("PATH", path)
            .env("KUBECONFIG", self.kubeconfig())
            .env("HOME", self.dir.path())
            .env("KUBEWAY_STATE_DIR", self.dir.path().join("state"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        c
    }

    /// Runs one line of the guide to its end; its output, or a panic naming the line.
    async fn run(&self, line: &str) -> String {
        let argv: Vec<&str> = line.split_whitespace().collect();
        let out = tokio::time::timeout(DEADLINE, self.command(&argv).output())
            .await
            .unwrap_or_else(|_| panic!("`{line}` did not finish"))
            .unwrap_or_else(|e| panic!("`{line}`: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "`{line}` failed ({}):\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// Starts one line of the guide that keeps running (a forward, the tunnel).
    fn spawn(&self, line: &str) -> Child {
        let argv: Vec<&str> = line.split_whitespace().collect();
        self.command(&argv)
            .spawn()
            .unwrap_or_else(|e| panic!("`{line}`: {e}"))
    }

    /// `curl` inside the namespace, until it answers 200 with a body containing `want`.
    async fn page(&self, url: &str, want: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let out = self
                .command(&["curl", "-s", "--max-time", "5", url])
                .output()
                .await
                .expect("curl runs");
            let body = String::from_utf8_lossy(&out.stdout).into_owned();
            if out.status.success() && body.contains(want) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "{url} never answered with {want:?}; last answer: {body}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Polls `kubectl ARGS` until `done` says yes.
    async fn until(&self, args: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let argv: Vec<&str> = args.split_whitespace().collect();
            let out = self.command(&argv).output().await.expect("runs");
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if done(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "`{args}` never got there: {text}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // Whatever still runs in the namespace was started by this test.
        if let Ok(out) = std::process::Command::new("ip")
            .args(["netns", "pids", &self.netns])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", pid])
                    .status();
            }
        }
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
    }
}

fn rand_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    format!("{:x}", h.finish() & 0xffff_ffff)
}

fn have(tool: &str, probe: &[&str]) -> bool {
    std::process::Command::new(tool)
        .args(probe)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn skip(why: &str) -> bool {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: the guide test: {why}");
    true
}

fn cannot_run() -> bool {
    if !have("kubectl", &["version", "--client"]) {
        assert!(
            std::env::var_os("CI").is_none(),
            "kubectl is required on CI (.ci/run installs it)"
        );
        return skip("kubectl is not installed");
    }
    if let Some(why) = kubeway_lab::netns::unavailable() {
        return skip(&format!("no network namespaces here ({why})"));
    }
    if !have("curl", &["--version"]) {
        return skip("curl is not installed");
    }
    false
}

/// Sends SIGINT (Ctrl-C) to a child we started and waits for it to exit.
async fn interrupt(mut child: Child, what: &str) -> String {
    if let Some(pid) = child.id() {
        let _ = Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()
            .await;
    }
    tokio::time::timeout(DEADLINE, async {
        let mut err = String::new();
        if let Some(e) = child.stderr.as_mut() {
            use tokio::io::AsyncReadExt;
            let _ = e.read_to_string(&mut err).await;
        }
        let _ = child.wait().await;
        err
    })
    .await
    .unwrap_or_else(|_| panic!("{what} did not stop on Ctrl-C"))
}

/// Reads lines of a running child's stdout until one contains `want`.
async fn line_with(child: &mut Child, want: &str) -> String {
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let found = tokio::time::timeout(DEADLINE, async {
        while let Ok(Some(l)) = lines.next_line().await {
            if l.contains(want) {
                return Some(l);
            }
        }
        None
    })
    .await
    .ok()
    .flatten();
    // Keep draining so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    found.unwrap_or_else(|| panic!("no line with {want:?}"))
}

fn url_in(text: &str) -> String {
    text.split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {text:?}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minikube_get_started_guide_word_for_word() {
    if cannot_run() {
        return;
    }
    let sb = Sandbox::new();
    let mut lab = sb
        .command(&[
            "kubeway",
            "lab",
            "up",
            "--persona",
            "minikube",
            "--sample=false",
            "--kubeconfig-out",
            &sb.kubeconfig().display().to_string(),
        ])
        .spawn()
        .expect("kubeway lab up");
    line_with(&mut lab, "kubeway lab is ready").await;

    let lines: Vec<&str> = GUIDE
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .collect();
    let echo = "Request served by hello-minikube-";

    assert!(
        sb.run(lines[0])
            .await
            .contains("deployment.apps/hello-minikube created")
    );
    assert!(
        sb.run(lines[1])
            .await
            .contains("service/hello-minikube exposed")
    );
    let svc = sb.run(lines[2]).await;
    assert!(svc.contains("NodePort") && svc.contains("8080:3"), "{svc}");

    // kubeway open: minikube's docker driver keeps the node behind a boundary, so the way is a
    // forward kept in the foreground, as `minikube service` keeps its tunnel.
    let mut open = sb.spawn(lines[3]);
    let row = line_with(&mut open, "hello-minikube").await;
    let url = url_in(&row);
    let page = sb.page(&url, echo).await;
    assert!(page.contains("GET / HTTP/1.1"), "{page}");
    interrupt(open, "kubeway open").await;

    let pf = sb.spawn(lines[4]);
    let page = sb.page("http://127.0.0.1:7080/", echo).await;
    assert!(page.contains("Host: 127.0.0.1:7080"), "{page}");
    interrupt(pf, "kubectl port-forward").await;

    let logs = sb.run(lines[5]).await;
    assert!(
        logs.contains("Echo server listening on port 8080."),
        "{logs}"
    );
    assert!(logs.contains("| GET /"), "the access log: {logs}");

    assert!(
        sb.run(lines[6])
            .await
            .contains("deployment.apps/balanced created")
    );
    assert!(sb.run(lines[7]).await.contains("service/balanced exposed"));
    let tunnel = sb.spawn(lines[8]);
    let shown = sb
        .until(lines[9], |t| {
            t.contains("LoadBalancer") && !t.contains("<pending>") && t.contains("balanced")
        })
        .await;
    let external = shown
        .lines()
        .find(|l| l.starts_with("balanced"))
        .and_then(|l| l.split_whitespace().nth(3))
        .unwrap_or_else(|| panic!("no EXTERNAL-IP in {shown}"))
        .to_string();
    let page = sb
        .page(
            &format!("http://{external}:8080/"),
            "Request served by balanced-",
        )
        .await;
    assert!(page.contains("GET / HTTP/1.1"), "{page}");

    let events = sb.run(lines[10]).await;
    for reason in [
        "Scheduled",
        "Pulling",
        "Pulled",
        "Created",
        "Started",
        "ScalingReplicaSet",
    ] {
        assert!(events.contains(reason), "no {reason} event in:\n{events}");
    }

    assert!(
        sb.run(lines[11])
            .await
            .contains("service \"hello-minikube\" deleted")
    );
    assert!(
        sb.run(lines[12])
            .await
            .contains("deployment.apps \"hello-minikube\" deleted")
    );
    // Nothing of hello-minikube is left: pods drain, ReplicaSets, Endpoints and slices go.
    sb.until(
        "kubectl get pods,replicasets,endpoints,endpointslices -o name",
        |t| !t.contains("hello-minikube"),
    )
    .await;

    let said = interrupt(tunnel, "kubeway tunnel").await;
    // The tunnel takes its EXTERNAL-IP back when it stops.
    let after = sb.run("kubectl get services balanced").await;
    assert!(after.contains("<pending>"), "{after}\n{said}");
    interrupt(lab, "kubeway lab up").await;
    assert!(
        !Path::new(&sb.kubeconfig()).exists(),
        "lab up removes its kubeconfig"
    );
}

/// `kubeway demo --tutorial --pause`: every step of the guide printed, run and explained against
/// the tutorial's own lab (in this namespace, on loopback; the guide's port 7080 is used only if
/// free), waiting for Enter before each step.
#[test]
fn demo_tutorial_walks_the_guide_step_by_step() {
    if !have("kubectl", &["version", "--client"]) {
        assert!(
            std::env::var_os("CI").is_none(),
            "kubectl is required on CI (.ci/run installs it)"
        );
        skip("kubectl is not installed");
        return;
    }
    let home = tempfile::tempdir().expect("tempdir");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kubeway"))
        .args(["demo", "--tutorial", "--pause"])
        .env("HOME", home.path())
        .env("KUBEWAY_STATE_DIR", home.path().join("state"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubeway runs");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(&b"\n".repeat(12)).expect("Enter presses");
    }
    let out = child.wait_with_output().expect("finishes");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in GUIDE.lines().filter(|l| l.starts_with("kubectl")) {
        let cmd = line.split('#').next().unwrap_or_default().trim();
        let cmd = cmd.replace("7080:8080", "");
        assert!(
            stdout.contains(&format!("$ {}", cmd.trim())),
            "{cmd} not run:\n{stdout}"
        );
    }
    for want in [
        "── step 12 of 12",
        "press Enter for step 12",
        "$ kubeway open hello-minikube",
        "$ kubeway tunnel",
        "Request served by hello-minikube-",
        "Request served by balanced-",
        "Echo server listening on port 8080.",
        "layer: Kubernetes (Service → EndpointSlice → Pod, NodePort on the node)",
        "layer: the driver",
        "does not answer",
        "EXTERNAL-IP is taken back",
        "know your driver",
    ] {
        assert!(stdout.contains(want), "no {want:?} in:\n{stdout}");
    }
}

/// Without kubectl the tutorial says what it needs, before starting anything.
#[test]
fn demo_tutorial_says_it_needs_kubectl() {
    let empty = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubeway"))
        .args(["demo", "--tutorial"])
        .env("PATH", empty.path())
        .output()
        .expect("kubeway runs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("kubectl") && err.contains("install kubectl"),
        "{err}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubeway"))
        .args(["demo", "--pause"])
        .output()
        .expect("kubeway runs");
    assert_eq!(out.status.code(), Some(2), "--pause needs --tutorial");
}
