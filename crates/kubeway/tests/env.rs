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
