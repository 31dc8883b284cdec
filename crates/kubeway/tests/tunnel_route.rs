//! `kubeway tunnel --route` in the lab's namespace mode, run in the host namespace: the route to
//! the Service range exists while the tunnel runs, a LoadBalancer's EXTERNAL-IP is its ClusterIP
//! and answers from the host, and the route and ingress are gone after Ctrl-C and after a crash
//! plus `--cleanup`. Refused, changing nothing, when the node is unreachable or a route overlaps.
//! Needs root and iproute2; skipped with a message otherwise.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::{Env, http_get, root_net, shutdown_netns, skip_without_netns};
use kubeway_core::env::Provider;
use kubeway_lab::resources::core;
use kubeway_lab::{LabSpec, Topology};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

const RANGE: &str = "198.51.100.128/25";

fn kubeway(env: &Env, state: &std::path::Path, args: &[&str]) -> Command {
    let mut c = env.kubeway(args);
    c.env("KUBEWAY_STATE_DIR", state);
    c
}

async fn host_routes(env: &Env) -> String {
    let out = Command::new("ip")
        .args(["-n", env.lab.host_netns().expect("host"), "route", "show"])
        .output()
        .await
        .expect("ip route");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn web_lb(env: &Env) -> (IpAddr, serde_json::Value) {
    let svc = env
        .lab
        .store()
        .get(core("services"), "default", "web-lb")
        .expect("web-lb");
    let ip = svc["spec"]["clusterIP"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("cluster ip");
    (ip, svc["status"]["loadBalancer"]["ingress"].clone())
}

/// Waits until web-lb's ingress is its ClusterIP (VIP); returns how long it took.
async fn wait_ingress(env: &Env, child: &mut Child) -> Duration {
    let started = Instant::now();
    loop {
        let (ip, ingress) = web_lb(env);
        if ingress[0]["ip"] == ip.to_string() {
            assert_eq!(ingress[0]["ipMode"], "VIP", "{ingress}");
            return started.elapsed();
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err).await;
            }
            panic!("the tunnel exited ({status}): {err}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no ingress after 20 s: {ingress}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn state_files(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".json"))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_lives_with_the_tunnel_and_goes_after_exit_and_after_a_crash() {
    if skip_without_netns() {
        return;
    }
    let root = root_net();
    let env = Env::start(LabSpec::new(Provider::Minikube).netns(Topology::Reachable)).await;
    let state = tempfile::tempdir().expect("state dir");
    assert!(!host_routes(&env).await.contains(RANGE));

    // Runs, routes, serves the ClusterIP from the host; Ctrl-C undoes it all.
    let mut tunnel = kubeway(&env, state.path(), &["tunnel", "--route"])
        .spawn()
        .expect("tunnel");
    let took = wait_ingress(&env, &mut tunnel).await;
    eprintln!("EXTERNAL-IP = ClusterIP after {took:?}");
    let routes = host_routes(&env).await;
    assert!(
        routes.contains(&format!("{RANGE} via 198.51.100.2")) && routes.contains("proto 77"),
        "the route carries kubeway's marker: {routes}"
    );
    let (ip, _) = web_lb(&env);
    assert!(
        http_get(&env.lab.host_place(), SocketAddr::new(ip, 80))
            .await
            .contains("Hello from web-")
    );
    // Any ClusterIP answers now, not only LoadBalancers: the route is the range's.
    let web_ip: IpAddr = env
        .lab
        .store()
        .get(core("services"), "default", "web")
        .and_then(|s| s["spec"]["clusterIP"].as_str()?.parse().ok())
        .expect("web");
    assert!(
        http_get(&env.lab.host_place(), SocketAddr::new(web_ip, 80))
            .await
            .contains("Hello from web-")
    );

    let pid = tunnel.id().expect("pid");
    Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .await
        .expect("kill");
    let status = tokio::time::timeout(Duration::from_secs(20), tunnel.wait())
        .await
        .expect("exits after Ctrl-C")
        .expect("wait");
    assert!(status.success(), "{status}");
    assert!(!host_routes(&env).await.contains(RANGE), "route removed");
    assert!(web_lb(&env).1.is_null(), "ingress removed");
    assert!(state_files(state.path()).is_empty(), "no journal left");

    // kill -9 leaves the route and the ingress; --cleanup removes them.
    let mut tunnel = kubeway(&env, state.path(), &["tunnel", "--route"])
        .spawn()
        .expect("tunnel");
    wait_ingress(&env, &mut tunnel).await;
    tunnel.kill().await.expect("kill -9");
    assert!(
        host_routes(&env).await.contains(RANGE),
        "a crash leaves the route"
    );
    let out = kubeway(&env, state.path(), &["tunnel", "--cleanup"])
        .output()
        .await
        .expect("cleanup");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("stale route removed"), "{said}");
    assert!(
        !host_routes(&env).await.contains(RANGE),
        "route gone after cleanup"
    );
    assert!(web_lb(&env).1.is_null(), "ingress gone after cleanup");
    assert!(state_files(state.path()).is_empty(), "no journal left");

    // Only a route with kubeway's marker is removed: after a crash, someone replaces the route
    // with the same one of their own (no marker); --cleanup leaves it.
    let mut tunnel = kubeway(&env, state.path(), &["tunnel", "--route"])
        .spawn()
        .expect("tunnel");
    wait_ingress(&env, &mut tunnel).await;
    tunnel.kill().await.expect("kill -9");
    let host = env.lab.host_netns().expect("host").to_string();
    for args in [
        &["-n", host.as_str(), "route", "del", RANGE][..],
        &[
            "-n",
            host.as_str(),
            "route",
            "add",
            RANGE,
            "via",
            "198.51.100.2",
        ],
    ] {
        let out = Command::new("ip").args(args).output().await.expect("ip");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = kubeway(&env, state.path(), &["tunnel", "--cleanup", "-o", "json"])
        .output()
        .await
        .expect("cleanup");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains(r#""result":"already_gone""#),
        "the unmarked route is not kubeway's: {said}"
    );
    let routes = host_routes(&env).await;
    assert!(
        routes.contains(&format!("{RANGE} via 198.51.100.2")) && !routes.contains("proto 77"),
        "someone else's route stays: {routes}"
    );
    assert!(web_lb(&env).1.is_null(), "the ingress was still undone");
    let out = Command::new("ip")
        .args(["-n", &host, "route", "del", RANGE])
        .output()
        .await
        .expect("ip");
    assert!(out.status.success());

    shutdown_netns(env, &root).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_is_refused_when_a_route_overlaps_or_the_node_is_out_of_reach() {
    if skip_without_netns() {
        return;
    }
    let root = root_net();
    // A route in the way: refused, named, and left as it was.
    let env = Env::start(LabSpec::new(Provider::Minikube).netns(Topology::Reachable)).await;
    let state = tempfile::tempdir().expect("state dir");
    let host = env.lab.host_netns().expect("host").to_string();

    // Without CAP_NET_ADMIN (as a user without sudo): refused, naming the privilege.
    if std::path::Path::new("/usr/bin/setpriv").exists() {
        let out = Command::new("ip")
            .args(["netns", "exec", &host, "/usr/bin/setpriv"])
            .args(["--bounding-set=-net_admin", "--inh-caps=-net_admin", "--"])
            .arg(env!("CARGO_BIN_EXE_kubeway"))
            .arg("--kubeconfig")
            .arg(&env.kubeconfig)
            .args(["tunnel", "--route"])
            .env("KUBEWAY_STATE_DIR", state.path())
            .output()
            .await
            .expect("runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains("CAP_NET_ADMIN"), "{err}");
        assert!(!host_routes(&env).await.contains(RANGE));
        assert!(state_files(state.path()).is_empty(), "nothing recorded");
        assert!(web_lb(&env).1.is_null(), "no ingress written");
    } else {
        // Written past the test harness's capture, so the skip shows in CI's log.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED (part): no /usr/bin/setpriv to drop CAP_NET_ADMIN with"
        );
    }

    let theirs = "198.51.100.192/26";
    let added = Command::new("ip")
        .args(["-n", &host, "route", "add", theirs, "via", "198.51.100.2"])
        .status()
        .await
        .expect("ip");
    assert!(added.success());
    let out = kubeway(&env, state.path(), &["tunnel", "--route"])
        .output()
        .await
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("overlaps") && err.contains(theirs), "{err}");
    let routes = host_routes(&env).await;
    assert!(
        routes.contains(theirs) && !routes.contains(RANGE),
        "{routes}"
    );
    assert!(state_files(state.path()).is_empty(), "nothing recorded");
    assert!(web_lb(&env).1.is_null(), "no ingress written");
    shutdown_netns(env, &root).await;

    // The node behind the boundary: refused before anything is changed.
    let env = Env::start(LabSpec::new(Provider::Minikube).netns(Topology::Published)).await;
    let out = kubeway(&env, state.path(), &["tunnel", "--route"])
        .output()
        .await
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("no node is reachable") && err.contains("198.51.100.2"),
        "{err}"
    );
    assert!(
        err.contains("without --route"),
        "offers the way that works: {err}"
    );
    assert!(!host_routes(&env).await.contains(RANGE));
    assert!(state_files(state.path()).is_empty(), "nothing recorded");
    shutdown_netns(env, &root).await;
}
