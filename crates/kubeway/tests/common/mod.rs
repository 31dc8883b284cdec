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

    /// A kube client through the lab's kubeconfig.
    pub async fn client(&self) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(&self.kubeconfig).expect("read");
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .expect("cfg");
        kube::Client::try_from(cfg).expect("client")
    }
}
