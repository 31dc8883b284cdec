//! `kubeway env` against every lab persona reports that persona, and probes node reachability
//! live (a reachable node answers its NodePort, a node behind a boundary does not).

use std::process::Command;

use kubeway_core::env::Provider;
use kubeway_lab::{Lab, LabSpec};

async fn env_json(lab: &Lab) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let kc = dir.path().join("kubeconfig");
    lab.write_kubeconfig(&kc).expect("kubeconfig");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_kubeway"))
            .args(["env", "-o", "json", "--kubeconfig"])
            .arg(&kc)
            .output()
            .expect("kubeway runs")
    })
    .await
    .expect("join");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_reports_every_lab_persona() {
    let local = [
        Provider::Minikube,
        Provider::Kind,
        Provider::K3d,
        Provider::K3s,
        Provider::DockerDesktop,
        Provider::RancherDesktop,
        Provider::Colima,
        Provider::OrbStack,
        Provider::MicroK8s,
        Provider::Generic,
    ];
    for p in local {
        let lab = Lab::start(LabSpec::new(p)).await.expect("lab");
        let v = env_json(&lab).await;
        assert_eq!(
            v["detection"]["provider"],
            p.as_str(),
            "persona {p:?} detected as {}",
            v["detection"]["provider"]
        );
        assert!(
            v["detection"]["evidence"]
                .as_array()
                .is_some_and(|e| !e.is_empty()),
            "evidence for {p:?}"
        );
        lab.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_probes_nodes_live() {
    for reachable in [true, false] {
        let lab = Lab::start(
            LabSpec::new(Provider::Minikube)
                .reachable(reachable)
                .with_sample(),
        )
        .await
        .expect("lab");
        let v = env_json(&lab).await;
        let probe = &v["node_probes"][0];
        assert_eq!(probe["kind"], "InternalIP");
        assert!(
            probe["address"]
                .as_str()
                .is_some_and(|a| a.starts_with("127."))
        );
        let answered = probe["probe"]["result"] == "answered";
        assert_eq!(answered, reachable, "{probe}");
        lab.shutdown().await;
    }
}

async fn env_text(lab: &Lab, kubeconfig: Option<&str>) -> (String, String, Option<i32>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let kc = dir.path().join("kubeconfig");
    lab.write_kubeconfig(&kc).expect("kubeconfig");
    if let Some(text) = kubeconfig {
        std::fs::write(&kc, text).expect("write");
    }
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_kubeway"))
            .args(["env", "--kubeconfig"])
            .arg(&kc)
            .output()
            .expect("kubeway runs")
    })
    .await
    .expect("join");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_claims_what_it_probed_and_names_contradictions() {
    // kind on Linux usually makes the node reachable; this one is behind a boundary.
    let lab = Lab::start(LabSpec::new(Provider::Kind).reachable(false).with_sample())
        .await
        .expect("lab");
    assert!(
        lab.wait_ready("default", "app=web", 2, std::time::Duration::from_secs(30))
            .await
    );
    let v = env_json(&lab).await;
    assert_eq!(
        v["detection"]["node_reachable"]["value"], "yes",
        "the expectation"
    );
    assert_eq!(
        v["measured"]["node_reachable"], "no",
        "the probe: {}",
        v["measured"]
    );
    let (text, _, code) = env_text(&lab, None).await;
    assert_eq!(code, Some(0));
    assert!(
        text.contains("Node reachable from host:   no (probed: NodePort"),
        "the claim comes from the probe:\n{text}"
    );
    assert!(
        text.contains("expected yes"),
        "the expectation shown as one:\n{text}"
    );
    assert!(
        text.contains("Finding: kind usually makes the node reachable from Linux; here it refused"),
        "{text}"
    );
    for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        assert!(!word.contains('_'), "identifier {word:?} in:\n{text}");
    }

    // A rejected token: an API-layer error, exit 1, no Debug dump.
    let bad = lab.kubeconfig_yaml().replace(lab.token(), "rejected-token");
    let (text, err, code) = env_text(&lab, Some(&bad)).await;
    assert_eq!(code, Some(1), "{text}{err}");
    assert!(
        err.contains("rejected the credentials of user") && err.contains("(API layer)"),
        "{err}"
    );
    assert!(
        !text.contains("Status {") && !err.contains("Status {"),
        "{text}{err}"
    );
    lab.shutdown().await;
}
