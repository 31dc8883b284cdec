//! Node-layer rules: NodePorts on node addresses and localhost.

use super::*;

#[test]
fn node_port_unanswered_on_a_reachable_node_is_the_node_layer() {
    let mut f = healthy();
    f.node_probes[0].answered = Tri::No;
    f.node_probes[0].detail = Some("connection refused".into());
    let report = assert_verdict(
        &f,
        FindingKind::NodePortUnanswered,
        HopKind::NodePort,
        Layer::Node,
    );
    assert!(
        report.verdict.primary.unwrap().cause.contains("30080"),
        "names the NodePort"
    );
}
