//! Host-layer rules: the kubeconfig context.

use super::*;

#[test]
fn context_does_not_exist() {
    let mut f = healthy();
    f.context.name = "kind-knid".into();
    f.context.exists = false;
    f.api.reachable = Tri::Unknown;
    let report = assert_verdict(
        &f,
        FindingKind::ContextMissing,
        HopKind::Context,
        Layer::Host,
    );
    assert_eq!(report.verdict.health, Health::Broken);
    let cmds = commands(&report);
    assert!(cmds.contains("kubectl config get-contexts"), "{cmds}");
    assert!(cmds.contains("--context kind-kind"), "{cmds}");
    assert!(report.verdict.summary.contains("kind-kind"));
    // Nothing past the context is claimed broken.
    assert_eq!(
        report.hop(HopKind::Service).unwrap().status,
        Status::Unknown
    );
}
