//! The benchmark's results: per-contender numbers, the ratios kubeway/kubectl and
//! kubeway/loopback computed from the same run, the bar, the printed table and the JSON.

use std::fmt::Write as _;

use serde::Serialize;

use crate::contenders::Contender;
use crate::workload::{Concurrency, Latency, Throughput};

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// What was asked.
    pub config: ConfigSummary,
    /// Where it ran.
    pub environment: Environment,
    /// One entry per contender, in run order.
    pub contenders: Vec<ContenderResult>,
    /// kubeway against the best kubectl mode and against loopback, per metric.
    pub ratios: Vec<Ratio>,
    /// The acceptance bar and aims, per kubeway transport.
    pub bar: Vec<BarCheck>,
}

/// The run's parameters.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigSummary {
    /// Bytes per throughput transfer.
    pub bytes: u64,
    /// Whether uploads were measured.
    pub upload: bool,
    /// Sequential short connections.
    pub latency_connections: usize,
    /// Untimed connections before them.
    pub warmup_connections: usize,
    /// Concurrent connections.
    pub concurrent_connections: usize,
    /// Bytes each concurrent connection echoes.
    pub concurrent_bytes: usize,
}

/// The machine and tools.
#[derive(Debug, Clone, Serialize)]
pub struct Environment {
    /// CPUs available to this process.
    pub cpus: usize,
    /// `kubectl version --client`, when kubectl ran.
    pub kubectl: Option<String>,
    /// This program's version.
    pub bench_version: String,
}

/// One contender's numbers. A metric is `None` when it failed (see `failures`) or does not
/// apply (see `notes`).
#[derive(Debug, Clone, Serialize)]
pub struct ContenderResult {
    /// Which contender.
    pub contender: Contender,
    /// What it is.
    pub description: String,
    /// One connection, pod → client.
    pub download: Option<Throughput>,
    /// One connection, client → pod.
    pub upload: Option<Throughput>,
    /// Sequential short connections.
    pub latency: Option<Latency>,
    /// Concurrent echoes.
    pub concurrency: Option<Concurrency>,
    /// Why the contender could not run at all in this build or on this machine.
    pub unavailable: Option<String>,
    /// Workloads that failed outright.
    pub failures: Vec<String>,
    /// Anything else worth knowing (not applicable metrics, restarts, forwarder errors).
    pub notes: Vec<String>,
}

impl ContenderResult {
    /// An empty result.
    pub fn new(c: Contender) -> Self {
        Self {
            contender: c,
            description: c.describe().into(),
            download: None,
            upload: None,
            latency: None,
            concurrency: None,
            unavailable: None,
            failures: Vec::new(),
            notes: Vec::new(),
        }
    }
}

/// A compared quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Download MiB/s.
    DownloadMibPerS,
    /// Upload MiB/s.
    UploadMibPerS,
    /// Median connection latency.
    LatencyP50Ms,
    /// 99th percentile connection latency.
    LatencyP99Ms,
    /// Wall time of the concurrent echoes.
    ConcurrencySeconds,
}

impl Metric {
    /// In table order.
    pub const ALL: [Metric; 5] = [
        Metric::DownloadMibPerS,
        Metric::UploadMibPerS,
        Metric::LatencyP50Ms,
        Metric::LatencyP99Ms,
        Metric::ConcurrencySeconds,
    ];

    /// Whether a bigger number is better.
    pub fn higher_is_better(self) -> bool {
        matches!(self, Metric::DownloadMibPerS | Metric::UploadMibPerS)
    }

    fn short(self) -> &'static str {
        match self {
            Metric::DownloadMibPerS => "download",
            Metric::UploadMibPerS => "upload",
            Metric::LatencyP50Ms => "conn p50",
            Metric::LatencyP99Ms => "conn p99",
            Metric::ConcurrencySeconds => "conc time",
        }
    }

    /// The value for one contender, if measured.
    pub fn of(self, r: &ContenderResult) -> Option<f64> {
        match self {
            Metric::DownloadMibPerS => r.download.as_ref().map(|t| t.mib_per_s),
            Metric::UploadMibPerS => r.upload.as_ref().map(|t| t.mib_per_s),
            Metric::LatencyP50Ms => r.latency.as_ref().map(|l| l.p50_ms),
            Metric::LatencyP99Ms => r.latency.as_ref().map(|l| l.p99_ms),
            Metric::ConcurrencySeconds => r.concurrency.as_ref().map(|c| c.seconds),
        }
        .filter(|v| v.is_finite())
    }
}

/// kubeway's value divided by a baseline's.
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    /// The kubeway transport.
    pub kubeway: Contender,
    /// The baseline: the best kubectl mode for this metric, or loopback.
    pub baseline: Contender,
    /// What is compared.
    pub metric: Metric,
    /// kubeway's value.
    pub kubeway_value: f64,
    /// The baseline's value.
    pub baseline_value: f64,
    /// kubeway / baseline.
    pub ratio: f64,
    /// `higher` or `lower`: which way is better.
    pub better: &'static str,
}

/// One line of the bar for one kubeway transport.
#[derive(Debug, Clone, Serialize)]
pub struct BarCheck {
    /// The kubeway transport.
    pub kubeway: Contender,
    /// `bar` (must) or `aim` (should).
    pub kind: &'static str,
    /// What is checked.
    pub check: String,
    /// Met, missed, or `None` when a number is missing.
    pub met: Option<bool>,
}

/// The best kubectl mode for `m` (highest or lowest value).
fn best_kubectl(results: &[ContenderResult], m: Metric) -> Option<(Contender, f64)> {
    results
        .iter()
        .filter(|r| r.contender.is_kubectl())
        .filter_map(|r| m.of(r).map(|v| (r.contender, v)))
        .reduce(|a, b| {
            let b_better = if m.higher_is_better() {
                b.1 > a.1
            } else {
                b.1 < a.1
            };
            if b_better { b } else { a }
        })
}

/// Ratios of every kubeway transport against the best kubectl mode and against loopback.
pub fn ratios(results: &[ContenderResult]) -> Vec<Ratio> {
    let mut out = Vec::new();
    let loopback = results.iter().find(|r| r.contender == Contender::Loopback);
    for k in results.iter().filter(|r| r.contender.is_kubeway()) {
        for m in Metric::ALL {
            let Some(kv) = m.of(k) else { continue };
            let baselines = [
                best_kubectl(results, m),
                loopback.and_then(|l| m.of(l).map(|v| (l.contender, v))),
            ];
            for (b, bv) in baselines.into_iter().flatten() {
                out.push(Ratio {
                    kubeway: k.contender,
                    baseline: b,
                    metric: m,
                    kubeway_value: kv,
                    baseline_value: bv,
                    ratio: kv / bv,
                    better: if m.higher_is_better() {
                        "higher"
                    } else {
                        "lower"
                    },
                });
            }
        }
    }
    out
}

fn ratio_of(ratios: &[Ratio], k: Contender, kubectl: bool, m: Metric) -> Option<f64> {
    ratios
        .iter()
        .find(|r| r.kubeway == k && r.metric == m && r.baseline.is_kubectl() == kubectl)
        .map(|r| r.ratio)
}

/// The bar: kubeway at least matches kubectl on throughput and p50 latency and has no
/// errors at the concurrent connections; aims: 1.5× kubectl's throughput, within 2× of loopback.
pub fn bar(results: &[ContenderResult], ratios: &[Ratio], concurrent: usize) -> Vec<BarCheck> {
    let mut out = Vec::new();
    for k in results
        .iter()
        .filter(|r| r.contender.is_kubeway() && r.unavailable.is_none())
    {
        let c = k.contender;
        let dl_kubectl = ratio_of(ratios, c, true, Metric::DownloadMibPerS);
        let p50_kubectl = ratio_of(ratios, c, true, Metric::LatencyP50Ms);
        let dl_loop = ratio_of(ratios, c, false, Metric::DownloadMibPerS);
        let conc = k.concurrency.as_ref();
        let mut push = |kind, check: String, met| {
            out.push(BarCheck {
                kubeway: c,
                kind,
                check,
                met,
            })
        };
        push(
            "bar",
            "download throughput ≥ best kubectl".into(),
            dl_kubectl.map(|r| r >= 1.0),
        );
        push(
            "bar",
            "p50 connection latency ≤ best kubectl".into(),
            p50_kubectl.map(|r| r <= 1.0),
        );
        push(
            "bar",
            format!("zero errors at {concurrent} concurrent connections"),
            conc.map(|c| c.errors == 0),
        );
        push(
            "aim",
            "download throughput ≥ 1.5× best kubectl".into(),
            dl_kubectl.map(|r| r >= 1.5),
        );
        push(
            "aim",
            "download throughput within 2× of loopback".into(),
            dl_loop.map(|r| r >= 0.5),
        );
    }
    out
}

fn cell(v: Option<f64>, decimals: usize, missing: &str) -> String {
    match v {
        Some(v) => format!("{v:.decimals$}"),
        None => missing.into(),
    }
}

/// Why a metric is missing: `-` when the contender is unavailable, `FAIL` when it or its
/// workload failed, `n/a` when the metric does not apply or was not run.
fn missing(r: &ContenderResult, workload: &str) -> &'static str {
    if r.unavailable.is_some() {
        "-"
    } else if r
        .failures
        .iter()
        .any(|f| f.starts_with(workload) || f.starts_with("start"))
    {
        "FAIL"
    } else {
        "n/a"
    }
}

fn human_bytes(n: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (u, size) in UNITS {
        if n >= size && n.is_multiple_of(size) {
            return format!("{} {u}", n / size);
        }
    }
    format!("{n} B")
}

/// The printed report: table, ratios, bar, notes.
pub fn render(report: &Report) -> String {
    let cfg = &report.config;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "port-forward benchmark: {} per transfer, {} sequential connections, {} concurrent × {}; {} CPUs{}",
        human_bytes(cfg.bytes),
        cfg.latency_connections,
        cfg.concurrent_connections,
        human_bytes(cfg.concurrent_bytes as u64),
        report.environment.cpus,
        report
            .environment
            .kubectl
            .as_ref()
            .map(|v| format!(", kubectl {v}"))
            .unwrap_or_default()
    );
    let _ = writeln!(s);
    let conc_hdr = format!("{} conc", cfg.concurrent_connections);
    let _ = writeln!(
        s,
        "{:<16} {:>10} {:>10} {:>9} {:>9} {:>9} {:>10} {:>9}",
        "contender", "download", "upload", "conn p50", "conn p99", "conn", conc_hdr, conc_hdr
    );
    let _ = writeln!(
        s,
        "{:<16} {:>10} {:>10} {:>9} {:>9} {:>9} {:>10} {:>9}",
        "", "MiB/s", "MiB/s", "ms", "ms", "errors", "errors", "seconds"
    );
    for r in &report.contenders {
        let lat = r.latency.as_ref();
        let conc = r.concurrency.as_ref();
        let _ = writeln!(
            s,
            "{:<16} {:>10} {:>10} {:>9} {:>9} {:>9} {:>10} {:>9}",
            r.contender.name(),
            cell(Metric::DownloadMibPerS.of(r), 1, missing(r, "download")),
            cell(Metric::UploadMibPerS.of(r), 1, missing(r, "upload")),
            cell(Metric::LatencyP50Ms.of(r), 3, missing(r, "latency")),
            cell(Metric::LatencyP99Ms.of(r), 3, missing(r, "latency")),
            lat.map_or(missing(r, "latency").into(), |l| l.errors.to_string()),
            conc.map_or(missing(r, "concurrency").into(), |c| c.errors.to_string()),
            cell(conc.map(|c| c.seconds), 3, missing(r, "concurrency")),
        );
    }

    let kubeways: Vec<Contender> = report
        .contenders
        .iter()
        .map(|r| r.contender)
        .filter(|c| c.is_kubeway())
        .collect();
    if !report.ratios.is_empty() {
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "ratios kubeway / baseline (download, upload: higher is better; latency, time: lower is better)"
        );
        let _ = write!(s, "{:<34}", "");
        for m in Metric::ALL {
            let _ = write!(s, " {:>10}", m.short());
        }
        let _ = writeln!(s);
        for &k in &kubeways {
            for (kubectl, label) in [(true, "best kubectl"), (false, "loopback")] {
                if !report
                    .ratios
                    .iter()
                    .any(|r| r.kubeway == k && r.baseline.is_kubectl() == kubectl)
                {
                    continue;
                }
                let _ = write!(s, "{:<34}", format!("{} / {label}", k.name()));
                for m in Metric::ALL {
                    let _ = write!(
                        s,
                        " {:>10}",
                        ratio_of(&report.ratios, k, kubectl, m)
                            .map_or("-".into(), |r| format!("{r:.2}x"))
                    );
                }
                let _ = writeln!(s);
            }
        }
        let bests: Vec<String> = Metric::ALL
            .into_iter()
            .filter_map(|m| best_kubectl(&report.contenders, m).map(|(c, _)| (m, c)))
            .map(|(m, c)| format!("{} {}", m.short(), c.name()))
            .collect();
        if !bests.is_empty() {
            let _ = writeln!(s, "(best kubectl: {})", bests.join(", "));
        }
    }

    if !report.bar.is_empty() {
        let _ = writeln!(s);
        let _ = writeln!(s, "issue 3 bar (must) and aims (should)");
        for b in &report.bar {
            let mark = match b.met {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "unknown",
            };
            let _ = writeln!(
                s,
                "  {:<16} {:<4} {:<46} {mark}",
                b.kubeway.name(),
                b.kind,
                b.check
            );
        }
    }

    let mut extra = String::new();
    for r in &report.contenders {
        if let Some(why) = &r.unavailable {
            let _ = writeln!(extra, "  {}: not run: {why}", r.contender.name());
        }
        for f in &r.failures {
            let _ = writeln!(extra, "  {}: FAILED {f}", r.contender.name());
        }
        for n in &r.notes {
            let _ = writeln!(extra, "  {}: {n}", r.contender.name());
        }
        for (what, samples) in [
            ("latency", r.latency.as_ref().map(|l| &l.error_samples)),
            (
                "concurrency",
                r.concurrency.as_ref().map(|c| &c.error_samples),
            ),
        ] {
            for e in samples.into_iter().flatten() {
                let _ = writeln!(extra, "  {}: {what} error: {e}", r.contender.name());
            }
        }
    }
    if !extra.is_empty() {
        let _ = writeln!(s);
        let _ = writeln!(s, "notes");
        s.push_str(&extra);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(c: Contender, dl: f64, p50: f64) -> ContenderResult {
        let mut r = ContenderResult::new(c);
        r.download = Some(Throughput {
            bytes: 1,
            seconds: 1.0,
            mib_per_s: dl,
        });
        r.latency = Some(Latency {
            connections: 1,
            errors: 0,
            p50_ms: p50,
            p99_ms: p50,
            mean_ms: p50,
            max_ms: p50,
            error_samples: Vec::new(),
        });
        r
    }

    #[test]
    fn ratios_pick_the_best_kubectl_per_metric() {
        let rs = vec![
            result(Contender::Loopback, 1000.0, 0.1),
            result(Contender::KubewayV4, 300.0, 2.0),
            result(Contender::KubectlWs, 200.0, 1.0),
            result(Contender::KubectlSpdy, 250.0, 4.0),
        ];
        let r = ratios(&rs);
        let dl = r
            .iter()
            .find(|r| r.metric == Metric::DownloadMibPerS && r.baseline.is_kubectl())
            .expect("download ratio");
        assert_eq!(dl.baseline, Contender::KubectlSpdy);
        assert!((dl.ratio - 1.2).abs() < 1e-9);
        let p50 = r
            .iter()
            .find(|r| r.metric == Metric::LatencyP50Ms && r.baseline.is_kubectl())
            .expect("p50 ratio");
        assert_eq!(p50.baseline, Contender::KubectlWs);
        assert!((p50.ratio - 2.0).abs() < 1e-9);
        let b = bar(&rs, &r, 200);
        let met: Vec<Option<bool>> = b.iter().map(|b| b.met).collect();
        // throughput ≥ kubectl, p50 not, no concurrency run, not 1.5×, not within 2× of loopback
        assert_eq!(
            met,
            [Some(true), Some(false), None, Some(false), Some(false)]
        );
        let text = render(&Report {
            config: ConfigSummary {
                bytes: 1 << 30,
                upload: false,
                latency_connections: 1,
                warmup_connections: 0,
                concurrent_connections: 200,
                concurrent_bytes: 64 << 10,
            },
            environment: Environment {
                cpus: 2,
                kubectl: None,
                bench_version: "0".into(),
            },
            contenders: rs,
            ratios: r,
            bar: b,
        });
        assert!(text.contains("kubeway-v4 / best kubectl"), "{text}");
        assert!(text.contains("1.20x"), "{text}");
        assert!(text.contains("1 GiB per transfer"), "{text}");
    }
}
