//! Namespace mode's guards, tested from a network namespace the test makes itself: empty but for
//! a veth into a second namespace of the test's (with no routes at all, so it drops whatever
//! arrives) and a default route through it, so that the danger is real (without the guard, `ip route get 198.51.100.2` takes that default route) and
//! nothing can leave the machine. The lab runs inside it (through nsenter) (as a user runs `kubeway lab up` in the
//! root namespace): while it runs that namespace gets `unreachable` routes for the lab's
//! documentation ranges, marked as kubeway's; the kubeconfig's file name names the lab's host
//! namespace; kubeway refuses to dial that kubeconfig from anywhere but the host namespace and
//! says where to run; the routes go when the lab stops, and after a kill -9 when the next lab has
//! come and gone. Needs root and iproute2; skipped with a message otherwise.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{root_net, skip_without_netns};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const KUBEWAY: &str = env!("CARGO_BIN_EXE_kubeway");

fn ip(args: &[&str]) -> std::process::Output {
    std::process::Command::new("ip")
        .args(args)
        .output()
        .expect("ip")
}

/// A network namespace whose default route leads into a sink namespace that drops everything;
/// both removed on drop.
struct Empty(String, String);

impl Empty {
    fn make() -> Self {
        let name = format!("kwtest-guard-{}", std::process::id());
        let sink = format!("{name}-sink");
        let _ = ip(&["netns", "del", &name]);
        let _ = ip(&["netns", "del", &sink]);
        let ns = Self(name, sink);
        for args in [
            &["netns", "add", ns.0.as_str()][..],
            &["netns", "add", ns.1.as_str()],
            &["-n", &ns.0, "link", "set", "lo", "up"],
            &[
                "-n", &ns.0, "link", "add", "sink0", "type", "veth", "peer", "name", "sink1",
                "netns", &ns.1,
            ],
            &["-n", &ns.0, "addr", "add", "192.0.2.1/24", "dev", "sink0"],
            &["-n", &ns.0, "link", "set", "sink0", "up"],
            &["-n", &ns.1, "link", "set", "sink1", "up"],
            &["-n", &ns.0, "route", "add", "default", "via", "192.0.2.254"],
        ] {
            let out = ip(args);
            assert!(
                out.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        ns
    }

    fn routes(&self) -> String {
        String::from_utf8_lossy(&ip(&["-n", &self.0, "-4", "route", "show"]).stdout).into_owned()
    }

    /// `ip route get ADDR` in this namespace: the route it would take, or None (unreachable).
    fn route_to(&self, addr: &str) -> Option<String> {
        let out = ip(&["-n", &self.0, "-4", "route", "get", addr]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// `program` run in this namespace. nsenter, not `ip netns exec`: the latter also gives the
    /// program a mount namespace of its own, where the namespaces a lab makes (bind mounts under
    /// /run/netns) would stay invisible to everyone else.
    fn exec(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.0)).arg(program);
        c
    }
}

impl Drop for Empty {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.0]);
        let _ = ip(&["netns", "del", &self.1]);
    }
}

fn guarded(routes: &str) -> bool {
    ["198.51.100.0/24", "203.0.113.0/24"].iter().all(|net| {
        routes
            .lines()
            .any(|l| l.starts_with(&format!("unreachable {net} proto 77")))
    })
}

/// `kubeway lab up --netns reachable` inside `ns`, up to its ready event.
async fn lab_up(ns: &Empty, state: &std::path::Path) -> (Child, Value) {
    let mut cmd = ns.exec(KUBEWAY);
    cmd.args([
        "lab",
        "up",
        "--netns",
        "reachable",
        "--sample=false",
        "-o",
        "json",
    ])
    .env("KUBEWAY_STATE_DIR", state)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit())
    .kill_on_drop(true);
    let mut child = cmd.spawn().expect("lab up");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let ready = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.expect("read") {
            let v: Value = serde_json::from_str(&line).expect("json");
            if v["event"] == "ready" {
                return v;
            }
        }
        panic!("lab up ended before it was ready")
    })
    .await
    .expect("ready in time");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, ready)
}

async fn stop(mut child: Child) {
    let pid = child.id().expect("running").to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("stops")
        .expect("wait");
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_mode_guards_the_documentation_ranges_and_refuses_the_wrong_namespace() {
    if skip_without_netns() {
        return;
    }
    let root_before = root_net();
    let ns = Empty::make();
    let state = tempfile::tempdir().expect("state");
    // Without the guard, the lab's node address would take the default route.
    let unguarded = ns.route_to("198.51.100.2").expect("a route");
    assert!(unguarded.contains("via 192.0.2.254"), "{unguarded}");
    assert!(!guarded(&ns.routes()));

    let (lab, ready) = lab_up(&ns, state.path()).await;
    let host = ready["hostNetns"]
        .as_str()
        .expect("host namespace")
        .to_string();
    let kubeconfig = ready["kubeconfig"].as_str().expect("path").to_string();
    assert!(
        kubeconfig.ends_with(&format!("{host}.kubeconfig")),
        "the path names the namespace: {kubeconfig}"
    );
    let routes = ns.routes();
    assert!(guarded(&routes), "{routes}");
    for addr in ["198.51.100.2", "198.51.100.130", "203.0.113.5"] {
        assert_eq!(ns.route_to(addr), None, "{addr} must be unreachable here");
    }

    // The kubeconfig, used outside the lab's host namespace: refused, naming where to run.
    let started = Instant::now();
    let out = ns
        .exec(KUBEWAY)
        .args(["env", "--kubeconfig", &kubeconfig])
        .output()
        .await
        .expect("env");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("network namespace {host}"))
            && err.contains(&format!("sudo ip netns exec {host} kubeway")),
        "{err}"
    );
    eprintln!("refused in {:?}: {err}", started.elapsed());
    // In the host namespace the same kubeconfig works.
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &host,
            KUBEWAY,
            "env",
            "--kubeconfig",
            &kubeconfig,
        ])
        .output()
        .await
        .expect("env");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    stop(lab).await;
    assert!(!guarded(&ns.routes()), "removed on exit: {}", ns.routes());
    assert!(!std::path::Path::new(&kubeconfig).exists());

    // kill -9: the guard stays (the ranges stay unreachable) until the next lab here cleans up.
    let (mut lab, ready) = lab_up(&ns, state.path()).await;
    let killed_kubeconfig = ready["kubeconfig"].as_str().expect("path").to_string();
    let killed_host = ready["hostNetns"].as_str().expect("host").to_string();
    lab.kill().await.expect("SIGKILL");
    assert!(guarded(&ns.routes()), "still guarded after the crash");
    let (lab, _) = lab_up(&ns, state.path()).await;
    assert!(
        !kubeway_lab::netns::lab_namespaces().contains(&killed_host),
        "the dead lab's namespaces are gone"
    );
    assert!(
        !std::path::Path::new(&killed_kubeconfig).exists(),
        "and its kubeconfig"
    );
    stop(lab).await;
    assert!(!guarded(&ns.routes()), "{}", ns.routes());
    assert_eq!(
        root_net(),
        root_before,
        "the root namespace was not touched"
    );
}
