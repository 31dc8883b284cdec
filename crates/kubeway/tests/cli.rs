//! The `kubeway` binary end to end: `lab up` runs and leaves nothing behind on SIGTERM, the demo
//! fetches the sample page, bad input fails with a clear message and a non-zero code.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

fn kubeway() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kubeway"))
}

#[test]
fn lab_up_serves_and_sigterm_leaves_nothing_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("nested/kubeconfig");
    let mut child = kubeway()
        .args([
            "lab",
            "up",
            "-o",
            "json",
            "--persona",
            "kind",
            "--kubeconfig-out",
        ])
        .arg(&kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubeway starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("a ready line").expect("utf-8");
    let ready: serde_json::Value = serde_json::from_str(&first).expect("the ready line is JSON");
    assert_eq!(ready["event"], "ready");
    assert_eq!(ready["persona"], "kind");
    assert_eq!(ready["context"], "kind-kind");
    let api = ready["api"]
        .as_str()
        .expect("api url")
        .trim_start_matches("https://")
        .to_string();
    let addr: std::net::SocketAddr = api.parse().expect("api address");
    assert!(addr.ip().is_loopback(), "the lab listens on loopback only");
    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("API answers");
    let text = std::fs::read_to_string(&kubeconfig).expect("kubeconfig written");
    assert!(text.contains("current-context: kind-kind") && text.contains("token:"));

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let exit = child.wait().expect("kubeway exits");
    assert!(exit.success(), "SIGTERM is a clean stop, got {exit:?}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l.contains("\"stopped\"")), "{rest:?}");
    assert!(!kubeconfig.exists(), "the kubeconfig is removed on exit");
    assert!(
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err(),
        "nothing is left listening on {addr}"
    );
}

#[test]
fn demo_once_fetches_the_sample_page() {
    let state = tempfile::tempdir().expect("tempdir");
    let out = kubeway()
        .args(["demo", "--once"])
        .env("KUBEWAY_STATE_DIR", state.path())
        .output()
        .expect("kubeway runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Hello from web-"), "{stdout}");
    assert!(
        stdout.contains("port-forward through the API server"),
        "{stdout}"
    );
    assert!(stdout.contains("minikube persona"), "{stdout}");
    // The picture the demo mentions is still there when the user looks.
    let picture = stdout
        .lines()
        .find_map(|l| l.split("the same path as a picture: ").nth(1))
        .map(|p| p.trim_end_matches(')').to_string())
        .unwrap_or_else(|| panic!("the demo names its picture: {stdout}"));
    let svg = std::fs::read_to_string(&picture).expect("the picture exists after the demo");
    assert!(svg.contains("<svg"), "{picture}");
}

#[test]
fn bad_input_fails_clearly() {
    let out = kubeway()
        .args(["lab", "up", "--persona", "moon"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("moon") && err.contains("minikube"), "{err}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let out = kubeway()
        .args(["lab", "up", "--api-port", &port])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use") && err.contains(&port), "{err}");
}
