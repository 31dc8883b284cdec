//! Shared by the binary's end-to-end tests: a lab with the sample app ready and its kubeconfig
//! on disk, and a kube client for arranging scenarios.

#![allow(dead_code)]

use std::time::Duration;

use kubeway_lab::{Lab, LabSpec};

/// A lab with the sample app, and where its kubeconfig is.
pub struct Env {
    pub lab: Lab,
    pub dir: tempfile::TempDir,
    pub kubeconfig: std::path::PathBuf,
}

impl Env {
    /// Starts `spec` with the sample app and waits for the web and echo pods.
    pub async fn start(spec: LabSpec) -> Self {
        let lab = Lab::start(spec.with_sample()).await.expect("lab");
        assert!(
            lab.wait_ready("default", "app=web", 2, Duration::from_secs(30))
                .await
        );
        assert!(
            lab.wait_ready("default", "app=echo", 1, Duration::from_secs(30))
                .await
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = dir.path().join("kubeconfig");
        lab.write_kubeconfig(&kubeconfig).expect("kubeconfig");
        Self {
            lab,
            dir,
            kubeconfig,
        }
    }

    /// A kube client through the lab's kubeconfig. Loopback mode only: in namespace mode the
    /// API server's address exists only inside the lab's host namespace, and a client in the
    /// test process would dial it from the root namespace (by its default route).
    pub async fn client(&self) -> kube::Client {
        assert!(
            self.lab.host_netns().is_none(),
            "namespace mode: run kubectl/kubeway with `ip netns exec`, or use lab.store()"
        );
        let kc = kube::config::Kubeconfig::read_from(&self.kubeconfig).expect("read");
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .expect("cfg");
        kube::Client::try_from(cfg).expect("client")
    }
}

/// The root namespace's routes and links, to compare before and after a namespace-mode test.
pub fn root_net() -> String {
    let run = |args: &[&str]| {
        std::process::Command::new("ip")
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    // Link names only: counters and flags change on their own.
    let links: Vec<String> = run(&["-o", "link", "show"])
        .lines()
        .filter_map(|l| l.split(':').nth(1).map(|n| n.trim().to_string()))
        .collect();
    // Namespace mode's guard routes (kubeway's marker, `proto 77`) come and go with the labs
    // of parallel tests; the guard test checks them on its own.
    let routes: Vec<String> = run(&["route", "show", "table", "all"])
        .lines()
        .filter(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let marker = kubeway_host::ROUTE_PROTO.to_string();
            !words.windows(2).any(|w| w[0] == "proto" && w[1] == marker)
        })
        .map(str::to_string)
        .collect();
    format!("{}\n{}", routes.join("\n"), links.join(" "))
}

/// Stops a namespace-mode lab and checks nothing is left: no process in its host namespace (the
/// caller has killed what it started), no namespace, and the root namespace's routes and links as
/// they were before (`root_before` from [`root_net`]).
pub async fn shutdown_netns(env: Env, root_before: &str) {
    let host = env.lab.host_netns().expect("namespace mode").to_string();
    let node = env.lab.node_netns().expect("namespace mode").to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let out = tokio::process::Command::new("ip")
            .args(["netns", "pids", &host])
            .output()
            .await
            .expect("ip netns pids");
        let pids = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if pids.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "processes left in {host}: {pids}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    env.lab.shutdown().await;
    let left = kubeway_lab::netns::lab_namespaces();
    assert!(
        !left.contains(&host) && !left.contains(&node),
        "namespaces left behind: {left:?}"
    );
    assert_eq!(
        root_net(),
        root_before,
        "the root namespace's routes or links changed"
    );
}

/// True (and says so) when namespace-mode tests cannot run here (not root, no `ip`, not Linux).
pub fn skip_without_netns() -> bool {
    if let Some(why) = kubeway_lab::netns::unavailable() {
        // Written past the test harness's capture, so the skip shows in CI's log.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: namespace-mode test not run: {why}"
        );
        return true;
    }
    false
}

impl Env {
    /// `kubeway --kubeconfig … ARGS` where kubeway runs: the lab's host namespace in namespace
    /// mode (`ip netns exec`), this one otherwise. Output piped, killed on drop.
    pub fn kubeway(&self, args: &[&str]) -> tokio::process::Command {
        let mut c = match self.lab.host_netns() {
            Some(host) => {
                let mut c = tokio::process::Command::new("ip");
                c.args(["netns", "exec", host])
                    .arg(env!("CARGO_BIN_EXE_kubeway"));
                c
            }
            None => tokio::process::Command::new(env!("CARGO_BIN_EXE_kubeway")),
        };
        c.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        c
    }

    /// `GET /` on `url` (`http://ADDR:PORT/`) from where kubeway runs; the whole answer.
    pub async fn page(&self, url: &str) -> String {
        let addr: std::net::SocketAddr = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .unwrap_or_else(|e| panic!("{url} is not an http://ADDR:PORT URL: {e}"));
        http_get(&self.lab.host_place(), addr).await
    }
}

/// `GET /` on `addr`, dialed from `place`; the whole answer.
pub async fn http_get(place: &kubeway_lab::Place, addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = place
        .connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
        .await
        .expect("answer in time")
        .expect("read");
    out
}
