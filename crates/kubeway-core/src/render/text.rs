//! The terminal diagram: hops grouped by layer from the host to the process, each marked
//! ✔/✖/!, then the pods, the ways, and the verdict with its fix.

use std::fmt::Write as _;

use crate::path::{Health, Hop, Layer, PathReport, Severity, Status};

const RESET: &str = "\x1b[0m";
const BOLD: &str = "\x1b[1m";

/// The colour escape of a status.
fn status_color(status: Status) -> &'static str {
    match status {
        Status::Ok => "\x1b[32m",
        Status::Broken => "\x1b[31m",
        Status::Warning => "\x1b[33m",
        Status::Skipped | Status::Unknown => "\x1b[90m",
    }
}

/// The marker of a status.
pub(crate) fn marker(status: Status) -> &'static str {
    match status {
        Status::Ok => "✔",
        Status::Broken => "✖",
        Status::Warning => "!",
        Status::Skipped => "–",
        Status::Unknown => "?",
    }
}

fn health_status(health: Health) -> Status {
    match health {
        Health::Healthy => Status::Ok,
        Health::Degraded => Status::Warning,
        Health::Broken => Status::Broken,
        Health::Unknown => Status::Unknown,
    }
}

/// Text from the cluster or the user, made safe for a terminal: control characters (escape
/// sequences, newlines) become spaces.
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn pad(text: &str, width: usize) -> String {
    let len = text.chars().count();
    if len >= width {
        text.to_string()
    } else {
        format!("{text}{}", " ".repeat(width - len))
    }
}

struct Painter {
    color: bool,
}

impl Painter {
    fn paint(&self, status: Status, text: &str) -> String {
        if self.color {
            format!("{}{text}{RESET}", status_color(status))
        } else {
            text.to_string()
        }
    }

    fn bold(&self, text: &str) -> String {
        if self.color {
            format!("{BOLD}{text}{RESET}")
        } else {
            text.to_string()
        }
    }
}

fn layer_title(layer: Layer) -> &'static str {
    match layer {
        Layer::Host => "HOST",
        Layer::Api => "API",
        Layer::Driver => "DRIVER",
        Layer::Node => "NODE",
        Layer::Kubernetes => "KUBERNETES",
        Layer::App => "APP",
    }
}

/// Renders the report as a terminal diagram; ANSI colours only when `color` is true (the caller
/// decides, from whether stdout is a terminal).
pub fn text(report: &PathReport, color: bool) -> String {
    let p = Painter { color };
    let mut out = String::new();
    let title = format!(
        "kubeway explain {}  ·  namespace {}  ·  context {}",
        clean(&report.target_short()),
        clean(&report.namespace),
        clean(&report.context)
    );
    let _ = writeln!(out, "{}", p.bold(&title));
    let env = &report.environment;
    let mut env_line = format!("environment: {}", clean(&env.display));
    if let Some(b) = &env.boundary {
        env_line.push_str(&format!("  (between host and node: {})", clean(b)));
    }
    let _ = writeln!(out, "{env_line}");
    out.push('\n');

    let label_width = report
        .hops
        .iter()
        .map(|h| clean(&h.label).chars().count())
        .max()
        .unwrap_or(0)
        .min(34)
        + 2;
    let mut last_layer: Option<Layer> = None;
    for hop in &report.hops {
        let layer = if last_layer == Some(hop.layer) {
            String::new()
        } else {
            layer_title(hop.layer).to_string()
        };
        last_layer = Some(hop.layer);
        let _ = writeln!(out, "{}", hop_line(&p, hop, &layer, label_width));
    }

    if !report.pods.is_empty() {
        out.push('\n');
        let _ = writeln!(out, "{}", p.bold("pods"));
        let width = report
            .pods
            .iter()
            .map(|pod| clean(&pod.name).chars().count())
            .max()
            .unwrap_or(0)
            + 2;
        for pod in report.pods.iter().take(10) {
            let addr = match (&pod.ip, pod.port) {
                (Some(ip), Some(port)) => format!("{}:{port}", clean(ip)),
                (Some(ip), None) => clean(ip),
                (None, _) => "no address".to_string(),
            };
            let status = pod_status(pod);
            let mut detail = clean(&pod.detail);
            if !pod.process_detail.is_empty() {
                detail.push_str("; ");
                detail.push_str(&clean(&pod.process_detail));
            }
            let _ = writeln!(
                out,
                "  {} {}{}  {}",
                p.paint(status, marker(status)),
                pad(&clean(&pod.name), width),
                pad(&addr, 22),
                detail
            );
        }
        if report.pods.len() > 10 {
            let _ = writeln!(out, "  … {} more", report.pods.len() - 10);
        }
    }

    if !report.ways.is_empty() {
        out.push('\n');
        let _ = writeln!(out, "{}", p.bold("ways from this host"));
        let width = report
            .ways
            .iter()
            .map(|w| clean(&w.label).chars().count())
            .max()
            .unwrap_or(0)
            + 2;
        for way in &report.ways {
            let command = way.command.as_deref().map(clean).unwrap_or_default();
            let _ = writeln!(
                out,
                "  {} {}{}",
                p.paint(way.status, marker(way.status)),
                pad(&clean(&way.label), width),
                command
            );
        }
    }

    out.push('\n');
    let verdict = &report.verdict;
    let status = health_status(verdict.health);
    let head = format!("{} {}", marker(status), verdict_head(report));
    let _ = write!(out, "{}", p.paint(status, &p.bold(&head)));
    out.push('\n');
    let _ = writeln!(out, "{}", clean(&verdict.summary));
    if let Some(primary) = &verdict.primary {
        for fix in &primary.fixes {
            match &fix.command {
                Some(cmd) => {
                    let _ = writeln!(out, "  → {}: {}", clean(&fix.action), p.bold(&clean(cmd)));
                }
                None => {
                    let _ = writeln!(out, "  → {}", clean(&fix.action));
                }
            }
        }
    }
    for finding in &verdict.findings {
        if verdict.primary.as_ref() == Some(finding) {
            continue;
        }
        let (status, word) = match finding.severity {
            Severity::Broken => (Status::Broken, "also broken"),
            Severity::Warning => (Status::Warning, "also"),
            Severity::Info => (Status::Skipped, "note"),
        };
        let _ = writeln!(
            out,
            "{} {}",
            p.paint(status, &format!("{word}:")),
            clean(&finding.cause)
        );
    }
    out
}

/// A pod's mark: its own status, made worse by what its process showed.
fn pod_status(pod: &crate::path::PodView) -> Status {
    if pod.status == Status::Broken || pod.process == Status::Broken || pod.pod_ip == Status::Broken
    {
        Status::Broken
    } else {
        pod.status
    }
}

/// The verdict as a phrase: `broken at the selector (Kubernetes layer)`, `healthy, with a
/// warning about the driver boundary (driver layer)`.
pub(crate) fn verdict_head(report: &PathReport) -> String {
    let verdict = &report.verdict;
    let Some(primary) = &verdict.primary else {
        return verdict.health.as_str().to_string();
    };
    let hop = crate::path::HopKind::from_id(&primary.hop)
        .map(|k| k.human().to_string())
        .unwrap_or_else(|| primary.hop.replace('_', " "));
    let layer = primary.layer.human();
    match verdict.health {
        Health::Healthy => format!("healthy, with a warning about {hop} ({layer} layer)"),
        Health::Degraded => format!("degraded at {hop} ({layer} layer)"),
        Health::Broken => format!("broken at {hop} ({layer} layer)"),
        Health::Unknown => format!("unknown; a problem at {hop} ({layer} layer)"),
    }
}

fn hop_line(p: &Painter, hop: &Hop, layer: &str, label_width: usize) -> String {
    let observed = clean(&hop.observed);
    let mut label = pad(&clean(&hop.label), label_width);
    if !label.ends_with("  ") {
        label.push_str("  ");
    }
    let body = format!("{} {label}{observed}", marker(hop.status));
    format!("{}{}", pad(layer, 12), p.paint(hop.status, &body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::explain;
    use crate::explain::tests_support::{boundary_facts, healthy_facts};

    #[test]
    fn healthy_diagram_has_every_layer_and_no_escape_codes_without_color() {
        let report = explain(&healthy_facts());
        let out = text(&report, false);
        for word in [
            "HOST",
            "DRIVER",
            "NODE",
            "KUBERNETES",
            "APP",
            "API",
            "✔ healthy",
        ] {
            assert!(out.contains(word), "{word} missing:\n{out}");
        }
        assert!(!out.contains('\x1b'));
        assert!(!out.contains('✖'));
        assert!(out.contains("kubeway forward svc/web 8080:80"));
    }

    #[test]
    fn colors_only_on_request_and_warning_shown() {
        let report = explain(&boundary_facts());
        let plain = text(&report, false);
        assert!(plain.contains("! minikube (docker driver)"), "{plain}");
        assert!(plain.contains("reachable via port-forward; direct NodePort is blocked"));
        assert!(plain.contains("kubeway open svc/web"));
        let colored = text(&report, true);
        assert!(colored.contains("\x1b[33m"), "{colored}");
        assert!(colored.contains("\x1b[32m"));
    }

    #[test]
    fn control_characters_from_the_cluster_are_neutralised() {
        let mut facts = healthy_facts();
        facts.pods[0].name = "evil\x1b]0;pwned\x07".into();
        let out = text(&explain(&facts), false);
        assert!(!out.contains('\x1b') && !out.contains('\x07'));
    }
}
