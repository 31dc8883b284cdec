//! `kubeway forward` tells the truth, end to end against the lab: every abnormal end reaches the
//! local client as a reset (ECONNRESET), never as a clean EOF; every failed or cut connection
//! gets a line and a count; a reader that pauses loses nothing; a roll-out under load loses
//! (almost) nothing, and what it loses is a reset.

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Env;
use kubeway_lab::LabSpec;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// A `kubeway forward -o json` child and the events it printed.
struct Forward {
    child: Child,
    local: SocketAddr,
    events: Arc<Mutex<Vec<Value>>>,
    stderr: Arc<Mutex<String>>,
}

impl Forward {
    async fn start(env: &Env, json: bool, args: &[&str]) -> Forward {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kubeway"));
        cmd.arg("forward");
        if json {
            cmd.args(["-o", "json"]);
        }
        let mut child = cmd
            .args(["--address", "127.0.0.1", "--kubeconfig"])
            .arg(&env.kubeconfig)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("kubeway forward starts");
        let events = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut out = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut err = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<SocketAddr>();
        let (ev, se) = (events.clone(), stderr.clone());
        let tx2 = tx.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = out.next_line().await {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if v["event"] == "forwarding"
                        && let Some(a) = v["local"].as_str().and_then(|a| a.parse().ok())
                    {
                        let _ = tx.send(a);
                    }
                    ev.lock().expect("events").push(v);
                }
            }
        });
        tokio::spawn(async move {
            while let Ok(Some(line)) = err.next_line().await {
                if let Some(a) = line
                    .strip_prefix("Forwarding from ")
                    .and_then(|r| r.split(" -> ").next())
                    .and_then(|a| a.parse().ok())
                {
                    let _ = tx2.send(a);
                }
                let mut s = se.lock().expect("stderr");
                s.push_str(&line);
                s.push('\n');
            }
        });
        let local = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .expect("forward starts in time")
            .expect("a Forwarding line before exit");
        Forward {
            child,
            local,
            events,
            stderr,
        }
    }

    fn events(&self, f: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.events
            .lock()
            .expect("events")
            .iter()
            .filter(|e| f(e))
            .cloned()
            .collect()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr").clone()
    }

    async fn wait(&self, what: &str, f: impl Fn(&Forward) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !f(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; events {:?}; stderr {}",
                self.events.lock().expect("e"),
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Ctrl-C, then waits for the exit (and so the summary).
    async fn interrupt(mut self) -> Self {
        let pid = self.child.id().expect("running");
        let _ = Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()
            .await;
        let _ = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
        // Let the readers drain the last lines.
        tokio::time::sleep(Duration::from_millis(200)).await;
        self
    }
}

const BLOB: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: blob, namespace: default, labels: {app: blob}}
spec:
  replicas: REPLICAS
  selector: {matchLabels: {app: blob}}
  template:
    metadata: {labels: {app: blob}}
    spec:
      containers:
      - name: blob
        image: kubeway.local/blob
        ports: [{name: blob, containerPort: 9001}]
---
apiVersion: v1
kind: Service
metadata: {name: blob, namespace: default}
spec:
  selector: {app: blob}
  ports: [{name: blob, port: 9001, targetPort: blob}]
"#;

async fn kubectl(env: &Env, args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new("kubectl")
        .env("KUBECONFIG", &env.kubeconfig)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .await
            .expect("stdin");
    }
    let out = child.wait_with_output().await.expect("kubectl");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn blob_app(env: &Env, replicas: usize) {
    kubectl(
        env,
        &["apply", "-f", "-"],
        Some(&BLOB.replace("REPLICAS", &replicas.to_string())),
    )
    .await;
    assert!(
        env.lab
            .wait_ready("default", "app=blob", replicas, Duration::from_secs(60))
            .await
    );
}

/// Byte `offset` of the blob's `source` stream.
fn pattern(offset: u64) -> u8 {
    kubeway_bench::workload::pattern_byte(offset)
}

/// How a download ended (the byte counts are read through `Debug` in failure messages).
#[derive(Debug)]
#[allow(dead_code)]
enum Got {
    /// A clean EOF after this many bytes, all of them right.
    Eof(u64),
    /// An error after this many bytes.
    Error(u64, std::io::Error),
}

/// Asks the blob for `n` bytes and reads until the end, checking every byte; `pause` stops
/// reading for a while after `pause.0` bytes.
async fn download(addr: SocketAddr, n: u64, pause: Option<(u64, Duration)>) -> Got {
    let mut s = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => return Got::Error(0, e),
    };
    if let Err(e) = s.write_all(format!("source {n}\n").as_bytes()).await {
        return Got::Error(0, e);
    }
    let mut got = 0u64;
    let mut paused = pause.is_none();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if !paused
            && let Some((at, how_long)) = pause
            && got >= at
        {
            paused = true;
            tokio::time::sleep(how_long).await;
        }
        match s.read(&mut buf).await {
            Ok(0) => return Got::Eof(got),
            Ok(k) => {
                for (i, b) in buf[..k].iter().enumerate() {
                    assert_eq!(*b, pattern(got + i as u64), "byte {}", got + i as u64);
                }
                got += k as u64;
            }
            Err(e) => return Got::Error(got, e),
        }
    }
}

fn is_reset(got: &Got) -> bool {
    matches!(got, Got::Error(_, e) if e.kind() == std::io::ErrorKind::ConnectionReset)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_abnormal_end_is_a_reset_with_a_line_and_a_count() {
    let env = Env::start(LabSpec::default()).await;
    blob_app(&env, 1).await;

    // 1. The app resets the connection (stream reset on the pod side, then the kubelet's
    //    message on the error stream).
    let fw = Forward::start(&env, true, &["svc/echo", ":9000"]).await;
    let mut s = TcpStream::connect(fw.local).await.expect("connect");
    s.write_all(b"RESET").await.expect("write");
    let mut buf = [0u8; 16];
    let end = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf))
        .await
        .expect("ends");
    assert_eq!(
        end.expect_err("a reset, not EOF").kind(),
        std::io::ErrorKind::ConnectionReset
    );
    fw.wait("the cut connection's event", |f| {
        !f.events(|e| e["event"] == "connection" && e["end"] == "cut")
            .is_empty()
    })
    .await;

    // 2. Nothing listens on the port in the pod: the kubelet cannot connect. The client is
    //    reset, the line names the pod, the port and the kubelet's words, the count says
    //    "failed" (it never reached an app).
    let echo_pod = kubectl(
        &env,
        &[
            "get",
            "pods",
            "-l",
            "app=echo",
            "-o",
            "jsonpath={.items[0].metadata.name}",
        ],
        None,
    )
    .await;
    let nothing = Forward::start(&env, false, &[&format!("pod/{echo_pod}"), ":9999"]).await;
    let mut s = TcpStream::connect(nothing.local).await.expect("connect");
    let _ = s.write_all(b"hello").await;
    let end = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf))
        .await
        .expect("ends");
    assert_eq!(
        end.expect_err("a reset, not an empty reply").kind(),
        std::io::ErrorKind::ConnectionReset
    );
    nothing
        .wait("the failure line", |f| {
            f.stderr().contains("connection failed")
        })
        .await;
    let nothing = nothing.interrupt().await;
    let text = nothing.stderr();
    let line = text
        .lines()
        .find(|l| l.starts_with("connection failed"))
        .expect("a failure line");
    assert!(
        line.contains(&echo_pod) && line.contains("9999") && line.contains("connection refused"),
        "names the pod, the port and the in-pod error: {line}"
    );
    let summary = text
        .lines()
        .find(|l| l.starts_with("stopped:"))
        .unwrap_or_else(|| panic!("a summary: {text}"));
    assert!(
        summary.contains("1 failed") && summary.contains("0 completed"),
        "{summary}"
    );

    // 3. The session is lost (the API server goes away mid-download).
    let dl = Forward::start(&env, true, &["svc/blob", ":9001"]).await;
    let addr = dl.local;
    let task = tokio::spawn(async move {
        download(addr, 4 << 30, Some((1 << 20, Duration::from_secs(2)))).await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    env.lab.stop_api().await;
    let got = tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the download ends")
        .expect("task");
    assert!(is_reset(&got), "a lost session resets the client: {got:?}");
    env.lab.start_api().await.expect("restart");
    dl.wait("the cut is counted", |f| {
        !f.events(|e| e["event"] == "connection" && e["end"] == "cut")
            .is_empty()
    })
    .await;

    // 4. The pod is force-deleted mid-download: its side ends cleanly (the app's socket is
    //    closed as a killed process's), but the pod is gone, so the client is reset.
    let pod = kubectl(
        &env,
        &[
            "get",
            "pods",
            "-l",
            "app=blob",
            "-o",
            "jsonpath={.items[0].metadata.name}",
        ],
        None,
    )
    .await;
    let fw = Forward::start(&env, true, &["svc/blob", ":9001"]).await;
    let addr = fw.local;
    let task = tokio::spawn(async move {
        download(addr, 4 << 30, Some((1 << 20, Duration::from_secs(5)))).await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    kubectl(
        &env,
        &["delete", "pod", &pod, "--grace-period=0", "--force"],
        None,
    )
    .await;
    let got = tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the download ends")
        .expect("task");
    assert!(is_reset(&got), "a killed pod resets the client: {got:?}");
    let fw = fw.interrupt().await;
    let summary = fw.events(|e| e["event"] == "summary");
    assert_eq!(summary.len(), 1, "{:?}", fw.events(|_| true));
    assert!(summary[0]["cut"].as_u64() >= Some(1), "{summary:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_reader_loses_nothing_and_others_go_on() {
    let env = Env::start(LabSpec::default()).await;
    blob_app(&env, 1).await;
    let fw = Forward::start(&env, true, &["svc/blob", ":9001"]).await;
    let addr = fw.local;
    let total = 64u64 << 20;
    // Paused for 15 s after 4 MiB: longer than any stall limit a session used to have.
    let paused = tokio::spawn(async move {
        download(addr, total, Some((4 << 20, Duration::from_secs(15)))).await
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Meanwhile other connections of the same forward download in full.
    let mut others = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        match download(addr, 8 << 20, None).await {
            Got::Eof(n) if n == 8 << 20 => others += 1,
            other => panic!("another connection failed during the pause: {other:?}"),
        }
    }
    let got = paused.await.expect("task");
    assert!(
        matches!(got, Got::Eof(n) if n == total),
        "the paused reader gets every byte, then a clean end: {got:?}"
    );
    assert!(others >= 1, "connections went on during the pause");
    let fw = fw.interrupt().await;
    assert!(
        fw.events(|e| e["event"] == "connection").is_empty(),
        "no connection failed or was cut: {:?}",
        fw.events(|e| e["event"] == "connection")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_rollouts_under_500_streams_lose_almost_nothing_and_what_they_lose_is_a_reset() {
    let env = Env::start(LabSpec::default()).await;
    blob_app(&env, 3).await;
    let fw = Forward::start(&env, true, &["svc/blob", ":9001"]).await;
    let addr = fw.local;
    // 500 streams, sizes log-spread over 1 B – 8 MiB, started over ~8 s so the two roll-outs
    // happen while they run.
    let mut x = 0x5eed_u64;
    let mut tasks = tokio::task::JoinSet::new();
    let starter = tokio::spawn(async move {
        let mut sizes = Vec::new();
        for i in 0..500u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let bits = x % 24;
            let n = (1u64 << bits) + x % (1u64 << bits).max(1);
            let n = n.clamp(1, 8 << 20);
            sizes.push((i, n));
        }
        sizes
    });
    let sizes = starter.await.expect("sizes");
    let env_ref = &env;
    let restarts = async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        kubectl(env_ref, &["rollout", "restart", "deployment/blob"], None).await;
        kubectl(
            env_ref,
            &["rollout", "status", "deployment/blob", "--timeout=120s"],
            None,
        )
        .await;
        // kubectl refuses a second restart within the second of the first (its annotation
        // has a one-second resolution).
        tokio::time::sleep(Duration::from_millis(1500)).await;
        kubectl(env_ref, &["rollout", "restart", "deployment/blob"], None).await;
        kubectl(
            env_ref,
            &["rollout", "status", "deployment/blob", "--timeout=120s"],
            None,
        )
        .await;
    };
    let streams = async {
        for (i, n) in sizes {
            tasks.spawn(async move { (n, download(addr, n, None).await) });
            if i % 25 == 24 {
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
        }
        let mut results = Vec::new();
        while let Some(r) = tasks.join_next().await {
            results.push(r.expect("task"));
        }
        results
    };
    let ((), results) = tokio::join!(restarts, streams);
    let complete = results
        .iter()
        .filter(|(n, g)| matches!(g, Got::Eof(k) if k == n))
        .count();
    let short_eof: Vec<_> = results
        .iter()
        .filter(|(n, g)| matches!(g, Got::Eof(k) if k != n))
        .collect();
    let not_reset: Vec<_> = results
        .iter()
        .filter(|(_, g)| matches!(g, Got::Error(..)) && !is_reset(g))
        .collect();
    println!(
        "rollouts under load: {complete}/500 streams complete; others: {:?}",
        results
            .iter()
            .filter(|(n, g)| !matches!(g, Got::Eof(k) if k == n))
            .collect::<Vec<_>>()
    );
    assert!(short_eof.is_empty(), "no short clean EOF: {short_eof:?}");
    assert!(
        not_reset.is_empty(),
        "every failure is a reset: {not_reset:?}"
    );
    assert!(
        complete * 1000 >= 500 * 999,
        "at least 99.9% complete: {complete}/500"
    );
    // The streams really ran across the roll-outs: the original pods and both generations of
    // replacements carried some of them.
    let fw = fw.interrupt().await;
    let summary = fw.events(|e| e["event"] == "summary");
    let pods = summary
        .first()
        .and_then(|s| s["per_pod"].as_array())
        .map(Vec::len)
        .unwrap_or(0);
    assert!(
        pods >= 7,
        "streams reached three generations of pods: {summary:?}"
    );
}
