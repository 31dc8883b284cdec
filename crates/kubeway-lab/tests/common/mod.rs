//! Shared helpers for the lab's integration tests: a running lab with its kubeconfig on disk,
//! polling without bare sleeps, and locating the external clients (kubectl, python).

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use kubeway_lab::{Lab, LabSpec};

/// A lab plus the temporary directory holding its kubeconfig.
pub struct Fixture {
    pub lab: Lab,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
}

impl Fixture {
    pub async fn start(spec: LabSpec) -> Self {
        let lab = Lab::start(spec).await.expect("lab starts");
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = dir.path().join("kubeconfig");
        lab.write_kubeconfig(&kubeconfig)
            .expect("kubeconfig written");
        Self {
            lab,
            dir,
            kubeconfig,
        }
    }

    /// With the sample app, waiting until both web pods and the echo pod are ready.
    pub async fn sample() -> Self {
        Self::sample_with(LabSpec::default().with_sample()).await
    }

    pub async fn sample_with(spec: LabSpec) -> Self {
        let f = Self::start(spec.with_sample()).await;
        assert!(
            f.lab
                .wait_ready("default", "app=web", 2, Duration::from_secs(30))
                .await,
            "web pods ready"
        );
        assert!(
            f.lab
                .wait_ready("default", "app=echo", 1, Duration::from_secs(30))
                .await,
            "echo pod ready"
        );
        f
    }

    pub async fn client(&self) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(&self.kubeconfig).expect("kubeconfig parses");
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .expect("config");
        kube::Client::try_from(cfg).expect("client")
    }
}

/// Polls `f` every 50 ms until it returns Some or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether an external client is installed. On CI a missing client is a failure, elsewhere the
/// test is skipped with a visible message.
pub fn require(tool: &str, probe: &[&str]) -> bool {
    let ok = std::process::Command::new(tool)
        .args(probe)
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} is required on CI (.ci/run installs it)"
        );
        // Written past the test harness's capture, so the skip shows in the log.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: {tool} {} is not available on this machine",
            probe.join(" ")
        );
    }
    ok
}
