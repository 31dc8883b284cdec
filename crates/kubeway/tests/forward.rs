//! `kubeway forward` end to end against the lab: spread over ready pods, rollouts under load,
//! per-connection isolation, an API-server outage, and clear errors.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Env;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kubeway_lab::LabSpec;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

struct Forward {
    child: Child,
    local: SocketAddr,
    events: Arc<Mutex<Vec<Value>>>,
}

impl Forward {
    fn events_matching(&self, f: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.events
            .lock()
            .expect("events")
            .iter()
            .filter(|e| f(e))
            .cloned()
            .collect()
    }
}

impl Env {
    async fn forward(&self, args: &[&str]) -> Forward {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kubeway"))
            .args([
                "forward",
                "-o",
                "json",
                "--address",
                "127.0.0.1",
                "--kubeconfig",
            ])
            .arg(&self.kubeconfig)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("kubeway forward starts");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let events = Arc::new(Mutex::new(Vec::new()));
        let local = loop {
            let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
                .await
                .expect("forward starts in time")
                .expect("read")
                .expect("a line before exit");
            let v: Value = serde_json::from_str(&line).expect("JSON event");
            events.lock().expect("events").push(v.clone());
            if v["event"] == "forwarding" {
                break v["local"].as_str().expect("local").parse().expect("addr");
            }
        };
        let ev = events.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    ev.lock().expect("events").push(v);
                }
            }
        });
        Forward {
            child,
            local,
            events,
        }
    }
}

/// One short HTTP request on a new connection; the pod that answered.
async fn get(addr: SocketAddr) -> Result<String, String> {
    let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut body = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut body))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
    body.lines()
        .find_map(|l| {
            l.strip_prefix("Hello from ")
                .map(|r| r.split_whitespace().next().unwrap_or("").to_string())
        })
        .ok_or_else(|| format!("unexpected answer: {body:?}"))
}

async fn wait_for<F: Fn(&Forward) -> bool>(fw: &Forward, what: &str, f: F) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f(fw) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {:?}",
            fw.events.lock().expect("e")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn scale(env: &Env, n: i32) {
    let d: Api<Deployment> = Api::namespaced(env.client().await, "default");
    d.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": n}})),
    )
    .await
    .expect("scale");
    assert!(
        env.lab
            .wait_ready("default", "app=web", n as usize, Duration::from_secs(30))
            .await
    );
}

fn ready_count(fw: &Forward) -> usize {
    fw.events_matching(|e| e["event"] == "endpoints")
        .last()
        .and_then(|e| e["ready"].as_array().map(Vec::len))
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_spread_over_three_ready_pods() {
    let env = Env::start(LabSpec::default()).await;
    scale(&env, 3).await;
    let mut fw = env.forward(&["svc/web", ":80"]).await;
    wait_for(&fw, "three endpoints", |f| ready_count(f) == 3).await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..300 {
        let pod = get(fw.local).await.expect("request succeeds");
        *counts.entry(pod).or_default() += 1;
    }
    let _ = fw.child.kill().await;
    println!("spread over pods: {counts:?}");
    assert_eq!(counts.len(), 3, "all three pods serve: {counts:?}");
    assert!(
        counts.values().all(|n| *n <= 150),
        "none serves more than half: {counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_under_load_loses_nothing() {
    let env = Env::start(LabSpec::default()).await;
    scale(&env, 3).await;
    let mut fw = env.forward(&["svc/web", ":80"]).await;
    wait_for(&fw, "three endpoints", |f| ready_count(f) == 3).await;
    let client = env.client().await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Replace the pods one by one while the requests run; record when each new pod is Ready.
    let ready_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let killer = {
        let (done, ready_at, lab_pods) = (done.clone(), ready_at.clone(), pods.clone());
        tokio::spawn(async move {
            let mut killed = Vec::new();
            // Replace exactly the pods that existed when the rollout started.
            let originals: Vec<String> = lab_pods
                .list(&ListParams::default().labels("app=web"))
                .await
                .expect("list")
                .items
                .into_iter()
                .filter_map(|p| p.metadata.name)
                .collect();
            for victim in originals {
                tokio::time::sleep(Duration::from_millis(300)).await;
                lab_pods
                    .delete(&victim, &DeleteParams::default())
                    .await
                    .expect("delete");
                killed.push(victim);
                // Wait for three ready pods again, noting when the replacement became Ready.
                loop {
                    let list = lab_pods
                        .list(&ListParams::default().labels("app=web"))
                        .await
                        .expect("list");
                    let ready: Vec<String> = list
                        .items
                        .iter()
                        .filter(|p| {
                            p.status
                                .as_ref()
                                .and_then(|s| s.conditions.as_ref())
                                .is_some_and(|c| {
                                    c.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                                })
                        })
                        .filter_map(|p| p.metadata.name.clone())
                        .collect();
                    {
                        let mut r = ready_at.lock().expect("ready_at");
                        for p in &ready {
                            r.entry(p.clone()).or_insert_with(Instant::now);
                        }
                    }
                    if ready.len() >= 3 && !ready.iter().any(|p| killed.contains(p)) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            killed
        })
    };
    let mut ok = 0usize;
    let mut failed = Vec::new();
    let mut first_seen: HashMap<String, Instant> = HashMap::new();
    let mut total = 0;
    while total < 2000 {
        total += 1;
        match get(fw.local).await {
            Ok(pod) => {
                ok += 1;
                first_seen.entry(pod).or_insert_with(Instant::now);
            }
            Err(e) => failed.push(e),
        }
    }
    let killed = killer.await.expect("killer");
    let _ = fw.child.kill().await;
    let rate = ok as f64 / total as f64;
    let ready_at = ready_at.lock().expect("ready_at").clone();
    let mut lags = Vec::new();
    for (pod, seen) in &first_seen {
        if let Some(r) = ready_at.get(pod)
            && !killed.contains(pod)
            && *seen > *r
        {
            lags.push((pod.clone(), seen.duration_since(*r)));
        }
    }
    println!(
        "rollout: {ok}/{total} requests succeeded ({:.2}%), pods replaced: {killed:?}, failures: {failed:?}",
        rate * 100.0
    );
    println!("first request on each new pod after its readiness: {lags:?}");
    assert!(
        done.load(std::sync::atomic::Ordering::SeqCst),
        "the rollout completed during the requests"
    );
    assert!(rate >= 0.999, "success rate {rate} below 99.9%: {failed:?}");
    let new_pods: Vec<_> = first_seen
        .keys()
        .filter(|p| !ready_at.is_empty() && !killed.contains(p))
        .collect();
    assert!(
        new_pods.len() >= 3,
        "requests reached the replacement pods: {first_seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_reset_connection_leaves_the_others_intact() {
    let env = Env::start(LabSpec::default()).await;
    let mut fw = env.forward(&["svc/echo", ":9000"]).await;
    wait_for(&fw, "an echo endpoint", |f| ready_count(f) == 1).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20u64 {
        let addr = fw.local;
        tasks
            .spawn(async move { kubeway_bench::workload::stream_echo(addr, i + 1, 2 << 20).await });
    }
    // The pod resets this one connection while the 20 stream.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut victim = TcpStream::connect(fw.local).await.expect("connect");
    victim.write_all(b"RESET").await.expect("write");
    let mut buf = [0u8; 16];
    let victim_result = tokio::time::timeout(Duration::from_secs(10), victim.read(&mut buf))
        .await
        .expect("victim ends");
    assert!(
        matches!(victim_result, Ok(0) | Err(_)),
        "the reset connection ends: {victim_result:?}"
    );
    let mut results = Vec::new();
    while let Some(r) = tasks.join_next().await {
        results.push(r.expect("task"));
    }
    let _ = fw.child.kill().await;
    let bad: Vec<_> = results.iter().filter(|r| r.is_err()).collect();
    assert!(
        bad.is_empty(),
        "the 20 other connections complete byte-exact: {bad:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_outage_is_reported_and_survived() {
    let env = Env::start(LabSpec::default()).await;
    let mut fw = env.forward(&["svc/web", ":80"]).await;
    wait_for(&fw, "two endpoints", |f| ready_count(f) == 2).await;
    get(fw.local).await.expect("works before the outage");
    env.lab.stop_api().await;
    wait_for(&fw, "the outage report", |f| {
        !f.events_matching(|e| e["event"] == "api_unreachable")
            .is_empty()
    })
    .await;
    // The outage lasts five seconds (the scenario), then the API server comes back with its state.
    tokio::time::sleep(Duration::from_secs(5)).await;
    env.lab.start_api().await.expect("restart");
    let back = Instant::now();
    loop {
        if get(fw.local).await.is_ok() {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(30),
            "connections never recovered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "first successful connection {:?} after the API server came back",
        back.elapsed()
    );
    // An endpoint change made after the restart is followed.
    scale(&env, 3).await;
    wait_for(&fw, "the third endpoint after the restart", |f| {
        ready_count(f) == 3
    })
    .await;
    wait_for(&fw, "the recovery report", |f| {
        !f.events_matching(|e| e["event"] == "api_back").is_empty()
    })
    .await;
    let _ = fw.child.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_targets_and_ports_fail_clearly_leaving_nothing_listening() {
    let env = Env::start(LabSpec::default()).await;
    let run = |args: Vec<String>| {
        let kc = env.kubeconfig.clone();
        async move {
            Command::new(env!("CARGO_BIN_EXE_kubeway"))
                .arg("forward")
                .arg("--kubeconfig")
                .arg(&kc)
                .args(&args)
                .output()
                .await
                .expect("runs")
        }
    };
    let out = run(vec!["svc/wbe".into(), "80".into()]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not found") && err.contains("\"web\""),
        "suggests the close name: {err}"
    );

    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let out = run(vec![
        "--address".into(),
        "127.0.0.1".into(),
        "svc/web".into(),
        format!("{port}:80"),
    ])
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already in use"));

    env.lab
        .deny(kubeway_lab::Denial::new("*", "pods/portforward"));
    let out = run(vec!["svc/web".into(), ":80".into()]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pods/portforward") && err.contains("get"),
        "{err}"
    );
    env.lab.allow_all();

    let out = run(vec!["svc/web".into(), ":9999".into()]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no port 9999"));

    let out = run(vec!["deployments.apps/web".into(), ":80".into()]).await;
    assert_eq!(out.status.code(), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transport_carries_requests_and_v4_never_hangs_on_half_close() {
    let env = Env::start(LabSpec::default()).await;
    for transport in ["ws-spdy", "spdy", "v4"] {
        let mut fw = env
            .forward(&["--transport", transport, "svc/web", ":80"])
            .await;
        wait_for(&fw, "two endpoints", |f| ready_count(f) == 2).await;
        let pod = get(fw.local)
            .await
            .unwrap_or_else(|e| panic!("{transport}: {e}"));
        assert!(pod.starts_with("web-"), "{transport}: {pod}");
        let _ = fw.child.kill().await;
    }
    // v4 cannot carry a half-close: the answer still in flight is delivered, then the
    // connection ends with a reset once the pod has been silent for --half-close-timeout
    // (instead of waiting forever), and the cut is reported.
    let mut fw = env
        .forward(&[
            "--transport",
            "v4",
            "--half-close-timeout",
            "2s",
            "svc/echo",
            ":9000",
        ])
        .await;
    wait_for(&fw, "an echo endpoint", |f| ready_count(f) == 1).await;
    let mut s = TcpStream::connect(fw.local).await.expect("connect");
    s.write_all(b"ping").await.expect("write");
    s.shutdown().await.expect("half-close");
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    let end = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => return Err(e),
            }
        }
    })
    .await
    .expect("a half-closed v4 connection ends");
    assert_eq!(got, b"ping", "the answer after the half-close arrives");
    assert_eq!(
        end.expect_err("ended by kubeway's limit: a reset, not a clean EOF")
            .kind(),
        std::io::ErrorKind::ConnectionReset
    );
    wait_for(&fw, "the cut is reported", |f| {
        !f.events_matching(|e| {
            e["event"] == "connection"
                && e["end"] == "cut"
                && e["error"]
                    .as_str()
                    .is_some_and(|t| t.contains("half-close"))
        })
        .is_empty()
    })
    .await;
    let _ = fw.child.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_pod_target_names_the_workload_that_would_have_survived() {
    let env = Env::start(LabSpec::default()).await;
    let pods: Api<Pod> = Api::namespaced(env.client().await, "default");
    let list = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("list");
    let pod = list.items[0].metadata.name.clone().expect("name");
    let mut fw = env.forward(&[&format!("pod/{pod}"), ":8080"]).await;
    assert_eq!(get(fw.local).await.expect("works"), pod);
    pods.delete(&pod, &DeleteParams::default())
        .await
        .expect("delete");
    let status = tokio::time::timeout(Duration::from_secs(30), fw.child.wait())
        .await
        .expect("kubeway forward ends when its pod is gone")
        .expect("exit status");
    assert_eq!(status.code(), Some(1));
    let mut err = String::new();
    if let Some(mut e) = fw.child.stderr.take() {
        let _ = e.read_to_string(&mut err).await;
    }
    assert!(err.contains(&pod) && err.contains("deploy/web"), "{err}");
    assert!(
        TcpStream::connect(fw.local).await.is_err(),
        "nothing left listening"
    );
}

async fn kubectl(env: &Env, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    let mut c = Command::new("kubectl");
    c.arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("kubectl runs");
    if let Some(text) = stdin {
        let mut i = child.stdin.take().expect("stdin");
        i.write_all(text.as_bytes()).await.expect("write");
    }
    drop(child.stdin.take());
    child.wait_with_output().await.expect("kubectl")
}

/// kubectl that must succeed; its stdout.
async fn kubectl_ok(env: &Env, args: &[&str], stdin: Option<&str>) -> String {
    let out = kubectl(env, args, stdin).await;
    assert!(
        out.status.success(),
        "kubectl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statefulset_target_spreads_and_follows_a_pod_recreated_under_its_name() {
    let env = Env::start(LabSpec::default()).await;
    let manifest = r#"
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 2
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers:
      - name: web
        image: kubeway.local/http
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /healthz, port: http}, periodSeconds: 1}
"#;
    kubectl_ok(&env, &["apply", "-f", "-"], Some(manifest)).await;
    // Real kubectl's rollout logic accepts the lab's StatefulSet status.
    kubectl_ok(
        &env,
        &["rollout", "status", "sts/db", "--timeout=60s"],
        None,
    )
    .await;
    let out = kubectl(&env, &["get", "sts", "db"], None).await;
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("db") && table.contains("2/2"), "{table}");
    let pods = kubectl(
        &env,
        &[
            "get",
            "pods",
            "-l",
            "app=db",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ],
        None,
    )
    .await;
    assert_eq!(String::from_utf8_lossy(&pods.stdout), "db-0 db-1");

    // kubeway forward sts/db spreads over both pods.
    let fw = env.forward(&["sts/db", ":http"]).await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..10 {
        seen.insert(get(fw.local).await.expect("GET"));
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["db-0", "db-1"],
        "both ordinals answer"
    );

    // db-0 deleted comes back under the same name, as a new pod; the forward follows.
    let uid = |out: std::process::Output| String::from_utf8_lossy(&out.stdout).to_string();
    let old = uid(kubectl(
        &env,
        &["get", "pod", "db-0", "-o", "jsonpath={.metadata.uid}"],
        None,
    )
    .await);
    kubectl_ok(&env, &["delete", "pod", "db-0", "--wait=true"], None).await;
    kubectl_ok(
        &env,
        &["rollout", "status", "sts/db", "--timeout=60s"],
        None,
    )
    .await;
    let new = uid(kubectl(
        &env,
        &["get", "pod", "db-0", "-o", "jsonpath={.metadata.uid}"],
        None,
    )
    .await);
    assert!(
        !new.is_empty() && new != old,
        "db-0 is a new pod: {old} → {new}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut answered = std::collections::BTreeSet::new();
    while answered.len() < 2 {
        if let Ok(pod) = get(fw.local).await {
            answered.insert(pod);
        }
        assert!(
            Instant::now() < deadline,
            "answers after the restart: {answered:?}"
        );
    }

    // Scaled down: the highest ordinal goes.
    kubectl_ok(&env, &["scale", "sts/db", "--replicas=1"], None).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let pods = kubectl(
            &env,
            &[
                "get",
                "pods",
                "-l",
                "app=db",
                "-o",
                "jsonpath={.items[*].metadata.name}",
            ],
            None,
        )
        .await;
        if String::from_utf8_lossy(&pods.stdout) == "db-0" {
            break;
        }
        assert!(Instant::now() < deadline, "db-1 still there");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(fw);
}
