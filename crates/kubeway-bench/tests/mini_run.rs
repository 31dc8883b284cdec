//! The benchmark program works end to end in a mini run (4 MiB, 20 connections) against loopback
//! and kubeway's three transports: every workload completes and every byte checks out. No timing is
//! asserted; the numbers are only required to exist.

use kubeway_bench::contenders::Contender;
use kubeway_bench::{Config, report};

#[test]
fn mini_run_measures_loopback_and_kubeway() {
    let cfg = Config {
        bytes: 4 << 20,
        latency_connections: 20,
        warmup_connections: 2,
        concurrent_connections: 20,
        concurrent_bytes: 16 << 10,
        contenders: vec![
            Contender::Loopback,
            Contender::KubewayWsSpdy,
            Contender::KubewaySpdy,
            Contender::KubewayV4,
        ],
        ..Config::quick()
    };
    let rep = kubeway_bench::run(&cfg, &|m| eprintln!("{m}")).expect("the benchmark runs");
    let text = report::render(&rep);
    eprintln!("{text}");
    assert_eq!(rep.contenders.len(), 4, "{text}");
    for r in &rep.contenders {
        let c = r.contender;
        assert!(r.failures.is_empty(), "{c}: {:?}\n{text}", r.failures);
        assert_eq!(r.download.as_ref().map(|t| t.bytes), Some(4 << 20), "{c}");
        if c.half_close() {
            assert_eq!(r.upload.as_ref().map(|t| t.bytes), Some(4 << 20), "{c}");
        }
        let lat = r.latency.as_ref().expect("latency measured");
        assert_eq!((lat.connections, lat.errors), (20, 0), "{c}: {lat:?}");
        let conc = r.concurrency.as_ref().expect("concurrency measured");
        assert_eq!((conc.connections, conc.errors), (20, 0), "{c}: {conc:?}");
    }
    for k in [
        Contender::KubewayWsSpdy,
        Contender::KubewaySpdy,
        Contender::KubewayV4,
    ] {
        assert!(
            rep.ratios
                .iter()
                .any(|r| r.kubeway == k && r.baseline == Contender::Loopback),
            "{k}: {text}"
        );
    }
    let json = serde_json::to_value(&rep).expect("serializes");
    assert!(json["contenders"][1]["download"]["mib_per_s"].is_number());
}
