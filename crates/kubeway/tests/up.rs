//! `kubeway up` end to end against the lab, with real kubectl: five Services over two
//! namespaces (one headless StatefulSet, one multi-port Service) under `up -A --hosts-file F`,
//! every name in F leading to an address whose ports answer; Services added and deleted
//! followed; F restored byte for byte on Ctrl-C and, after kill -9, by `up --cleanup`;
//! `--exec` with the kubelet's variables; the HTTP front door routing by Host.

mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Env;
use kubeway_lab::LabSpec;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

const SHOP: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: multi, namespace: shop}
spec:
  replicas: 1
  selector: {matchLabels: {app: multi}}
  template:
    metadata: {labels: {app: multi}}
    spec:
      containers:
      - name: http
        image: kubeway.local/http
        ports: [{name: http, containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: multi, namespace: shop}
spec:
  selector: {app: multi}
  ports:
  - {name: http, port: 80, targetPort: http}
  - {name: alt, port: 8081, targetPort: http}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{name: echo, port: 9000, targetPort: 9000}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: shop}
spec:
  serviceName: db
  replicas: 2
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers:
      - name: echo
        image: kubeway.local/echo
        ports: [{name: echo, containerPort: 9000}]
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
        let mut i = child.stdin.take().expect("stdin");
        i.write_all(text.as_bytes()).await.expect("stdin");
    }
    let out = child.wait_with_output().await.expect("kubectl");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A running `kubeway up -o json` and its events.
struct Up {
    child: Child,
    events: Arc<Mutex<Vec<Value>>>,
}

impl Up {
    async fn start(env: &Env, state: &Path, args: &[&str]) -> Up {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kubeway"))
            .args(["up", "-o", "json", "--kubeconfig"])
            .arg(&env.kubeconfig)
            .args(args)
            .env("KUBEWAY_STATE_DIR", state)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("kubeway up starts");
        let events = Arc::new(Mutex::new(Vec::new()));
        let ev = events.clone();
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    ev.lock().expect("events").push(v);
                }
            }
        });
        let up = Up { child, events };
        up.wait("the ready event", |e| e["event"] == "ready").await;
        up
    }

    fn find(&self, f: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.events
            .lock()
            .expect("events")
            .iter()
            .filter(|e| f(e))
            .cloned()
            .collect()
    }

    async fn wait(&self, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(v) = self.find(&f).pop() {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {:?}",
                self.events.lock().expect("e")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn signal(&mut self, sig: &str) {
        let pid = self.child.id().expect("running");
        let _ = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .await;
        let _ = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("up ends");
    }
}

/// The name → address lines of kubeway's block in a hosts file.
fn names_in(file: &Path) -> BTreeMap<String, IpAddr> {
    let text = std::fs::read_to_string(file).expect("hosts file");
    let mut names = BTreeMap::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with("# BEGIN kubeway up") {
            inside = true;
        } else if line.starts_with("# END kubeway up") {
            inside = false;
        } else if inside {
            let mut parts = line.split_whitespace();
            let ip: IpAddr = parts.next().expect("ip").parse().expect("an address");
            for n in parts {
                names.insert(n.to_string(), ip);
            }
        }
    }
    names
}

/// Whether something answers on `addr`: an HTTP GET gets a status line, an echo its bytes.
async fn answers(addr: SocketAddr, http: bool) -> bool {
    let Ok(Ok(mut s)) =
        tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await
    else {
        return false;
    };
    let probe: &[u8] = if http {
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    } else {
        b"ping"
    };
    if s.write_all(probe).await.is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => {
            if http {
                buf.starts_with(b"HTTP/1.1 200")
            } else {
                &buf[..n] == b"ping"
            }
        }
        _ => false,
    }
}

/// The local TCP addresses of every Service event, by `namespace/name`, with whether they
/// speak HTTP (their image does in this test).
fn served(events: &[Value]) -> BTreeMap<String, Vec<(IpAddr, SocketAddr)>> {
    let mut out = BTreeMap::new();
    for e in events {
        let key = format!(
            "{}/{}",
            e["namespace"].as_str().unwrap_or_default(),
            e["name"].as_str().unwrap_or_default()
        );
        let mut locals = Vec::new();
        for a in e["addresses"].as_array().into_iter().flatten() {
            let ip: IpAddr = a["address"].as_str().expect("address").parse().expect("ip");
            for p in a["ports"].as_array().into_iter().flatten() {
                if let Some(l) = p["local"].as_str() {
                    locals.push((ip, l.parse().expect("local")));
                }
            }
        }
        out.insert(key, locals);
    }
    out
}

fn private_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

fn hosts_file(dir: &Path) -> (PathBuf, Vec<u8>) {
    let f = dir.join("hosts");
    // No final newline: the block must still come off byte for byte.
    let original =
        b"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n# the user's own line".to_vec();
    std::fs::write(&f, &original).expect("write");
    (f, original)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_name_leads_to_an_address_whose_ports_answer_and_changes_are_followed() {
    let env = Env::start(LabSpec::default()).await;
    kubectl(&env, &["apply", "-f", "-"], Some(SHOP)).await;
    assert!(
        env.lab
            .wait_ready("shop", "app=db", 2, Duration::from_secs(60))
            .await
    );
    assert!(
        env.lab
            .wait_ready("shop", "app=multi", 1, Duration::from_secs(60))
            .await
    );
    let dir = private_dir();
    let (file, original) = hosts_file(dir.path());
    let file_arg = file.display().to_string();
    let mut up = Up::start(
        &env,
        &dir.path().join("state"),
        &["-A", "--hosts-file", &file_arg],
    )
    .await;

    let events = up.find(|e| e["event"] == "service");
    let by_service = served(&events);
    for key in [
        "default/web",
        "default/echo",
        "default/web-lb",
        "shop/multi",
        "shop/db",
    ] {
        assert!(
            by_service.contains_key(key),
            "{key} is served: {by_service:?}"
        );
    }
    let multi = &by_service["shop/multi"];
    assert_eq!(
        multi.len(),
        2,
        "both ports of the multi-port Service: {multi:?}"
    );
    let db = &by_service["shop/db"];
    let db_ips: std::collections::BTreeSet<IpAddr> = db.iter().map(|(ip, _)| *ip).collect();
    assert_eq!(
        db_ips.len(),
        2,
        "one address per ready pod of the headless Service: {db:?}"
    );

    // Every name in the file leads to an address of a Service whose ports answer.
    let names = names_in(&file);
    for name in [
        "web",
        "web.default",
        "web.default.svc",
        "web.default.svc.cluster.local",
        "multi.shop",
        "db-0.db.shop",
        "db-1.db.shop.svc.cluster.local",
        "db.shop",
    ] {
        assert!(
            names.contains_key(name),
            "{name} in the hosts file: {names:?}"
        );
    }
    for (name, ip) in &names {
        let (key, locals) = by_service
            .iter()
            .find(|(_, l)| l.iter().any(|(i, _)| i == ip))
            .unwrap_or_else(|| panic!("{name} -> {ip}: no Service there"));
        let http = !key.ends_with("/echo") && !key.ends_with("/db");
        for (i, local) in locals.iter().filter(|(i, _)| i == ip) {
            assert!(
                answers(*local, http).await,
                "{name} ({i}) port {local} of {key} answers"
            );
        }
    }

    // A new Service is followed.
    let added = Instant::now();
    kubectl(
        &env,
        &[
            "-n",
            "shop",
            "expose",
            "deployment/multi",
            "--name=late",
            "--port=80",
            "--target-port=8080",
        ],
        None,
    )
    .await;
    let late = up
        .wait("the new Service", |e| {
            e["event"] == "service" && e["name"] == "late"
        })
        .await;
    let late_addr: SocketAddr = late["ports"][0]["local"]
        .as_str()
        .expect("local")
        .parse()
        .expect("addr");
    assert!(answers(late_addr, true).await, "the new Service answers");
    println!(
        "a new Service answered {:?} after `kubectl expose`",
        added.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !names_in(&file).contains_key("late.shop") {
        assert!(Instant::now() < deadline, "late.shop joins the hosts file");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A deleted one is dropped: its address refuses.
    let deleted = Instant::now();
    kubectl(&env, &["-n", "shop", "delete", "service", "late"], None).await;
    up.wait("the removal", |e| {
        e["event"] == "removed" && e["name"] == "late"
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(late_addr).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "the deleted Service's address refuses"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "a deleted Service's address refused {:?} after the delete",
        deleted.elapsed()
    );
    assert!(!names_in(&file).contains_key("late.shop"));

    // Ctrl-C takes the names back: the file is byte for byte what it was.
    up.signal("-INT").await;
    assert_eq!(std::fs::read(&file).expect("read"), original);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_cleanup_restores_the_hosts_file_and_exec_gets_the_variables() {
    let env = Env::start(LabSpec::default()).await;
    let dir = private_dir();
    let state = dir.path().join("state");
    let (file, original) = hosts_file(dir.path());
    let file_arg = file.display().to_string();
    let mut up = Up::start(&env, &state, &["-n", "default", "--hosts-file", &file_arg]).await;
    assert!(names_in(&file).contains_key("web.default"));
    up.signal("-KILL").await;
    assert_ne!(
        std::fs::read(&file).expect("read"),
        original,
        "a killed up leaves its names"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_kubeway"))
        .args(["up", "--cleanup", "--kubeconfig"])
        .arg(&env.kubeconfig)
        .env("KUBEWAY_STATE_DIR", &state)
        .output()
        .await
        .expect("cleanup runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(&file).expect("read"),
        original,
        "restored byte for byte"
    );

    // --exec: the kubelet's variables, pointing at the local addresses; the exit code passes.
    let run = |script: &str| {
        let script = script.to_string();
        let kc = env.kubeconfig.clone();
        let state = state.clone();
        async move {
            Command::new(env!("CARGO_BIN_EXE_kubeway"))
                .args(["up", "-n", "default", "--kubeconfig"])
                .arg(&kc)
                .args(["--exec", "--", "sh", "-c", &script])
                .env("KUBEWAY_STATE_DIR", &state)
                .output()
                .await
                .expect("up --exec runs")
        }
    };
    let out = run("curl -sf http://$WEB_SERVICE_HOST:$WEB_SERVICE_PORT/").await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Hello from web-"));
    let out = run("test -n \"$ECHO_PORT_9000_TCP_ADDR\" && exit 7").await;
    assert_eq!(
        out.status.code(),
        Some(7),
        "the command's exit code passes through"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_front_door_routes_by_host() {
    let env = Env::start(LabSpec::default()).await;
    let dir = private_dir();
    let mut up = Up::start(
        &env,
        &dir.path().join("state"),
        &["-n", "default", "--http-port", "0"],
    )
    .await;
    let ready = up.wait("ready", |e| e["event"] == "ready").await;
    let front: SocketAddr = ready["http"].as_str().expect("http").parse().expect("addr");
    for (host, want) in [
        ("web.default.localhost", "Hello from web-"),
        ("web-lb.localhost", "Hello from web-"),
    ] {
        let mut s = TcpStream::connect(front).await.expect("connect");
        s.write_all(
            format!(
                "GET / HTTP/1.1\r\nHost: {host}:{}\r\nConnection: close\r\n\r\n",
                front.port()
            )
            .as_bytes(),
        )
        .await
        .expect("write");
        let mut text = String::new();
        s.read_to_string(&mut text).await.expect("read");
        assert!(text.contains(want), "{host}: {text}");
    }
    let mut s = TcpStream::connect(front).await.expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nHost: nope.default.localhost\r\n\r\n")
        .await
        .expect("write");
    let mut text = String::new();
    s.read_to_string(&mut text).await.expect("read");
    assert!(text.starts_with("HTTP/1.1 404"), "{text}");
    up.signal("-INT").await;
}
