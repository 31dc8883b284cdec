//! The SVG picture of a path, in the spirit of the classic local-cluster networking diagrams: the
//! host on the left, the driver boundary as a dashed box around the node, the Service,
//! EndpointSlice and pods inside, the API server above, an arrow per way, every hop coloured by
//! its status, a legend and the verdict.
//!
//! The document is self-contained SVG 1.1: a fixed viewBox, no scripts, no external fonts or
//! images, every string from the cluster XML-escaped.

use std::fmt::Write as _;

use crate::explain::Intent;
use crate::path::{Health, HopKind, PathReport, Status, WayKind};

const WIDTH: u32 = 1000;
/// Where the verdict starts; the picture is as tall as the verdict needs below it.
const VERDICT_Y: f64 = 690.0;
const FONT: &str = "sans-serif";
const MONO: &str = "monospace";
const INK: &str = "#212121";
const MUTED: &str = "#616161";

/// The stroke colour of a status.
pub(crate) fn stroke(status: Status) -> &'static str {
    match status {
        Status::Ok => "#2e7d32",
        Status::Broken => "#c62828",
        Status::Warning => "#e69500",
        Status::Skipped => "#9e9e9e",
        Status::Unknown => "#78909c",
    }
}

fn fill(status: Status) -> &'static str {
    match status {
        Status::Ok => "#e8f5e9",
        Status::Broken => "#ffebee",
        Status::Warning => "#fff8e1",
        Status::Skipped => "#f5f5f5",
        Status::Unknown => "#eceff1",
    }
}

const ALL_STATUSES: [Status; 5] = [
    Status::Ok,
    Status::Broken,
    Status::Warning,
    Status::Skipped,
    Status::Unknown,
];

/// XML-escapes text for element content and attribute values; characters XML 1.0 forbids
/// (most control characters) become spaces.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(' '),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// At most `max` characters, with an ellipsis when cut.
fn clip(text: &str, max: usize) -> String {
    let count = text.chars().count();
    if count <= max {
        text.to_string()
    } else {
        let keep: String = text.chars().take(max.saturating_sub(1)).collect();
        format!("{keep}…")
    }
}

/// How many characters of a proportional font fit in `width` pixels.
fn fits(width: f64, size: f64) -> usize {
    ((width / (size * 0.56)).floor() as usize).max(4)
}

/// Word wrap to lines of at most `max` characters (textwrap; long words are broken, nothing
/// is cut).
fn wrap(text: &str, max: usize) -> Vec<String> {
    textwrap::wrap(text, max.max(1))
        .into_iter()
        .map(|l| l.into_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

struct Canvas {
    out: String,
}

impl Canvas {
    #[allow(clippy::too_many_arguments)]
    fn text(
        &mut self,
        x: f64,
        y: f64,
        size: f64,
        weight: &str,
        color: &str,
        anchor: &str,
        text: &str,
    ) {
        let _ = writeln!(
            self.out,
            r#"<text x="{x:.1}" y="{y:.1}" font-family="{FONT}" font-size="{size}" font-weight="{weight}" fill="{color}" text-anchor="{anchor}">{}</text>"#,
            escape(text)
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, rx: f64, status: Status, dashed: bool) {
        let dash = if dashed {
            r#" stroke-dasharray="8 6""#
        } else {
            ""
        };
        let fill = if dashed { "none" } else { fill(status) };
        let _ = writeln!(
            self.out,
            r#"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" rx="{rx}" fill="{fill}" stroke="{}" stroke-width="2"{dash}/>"#,
            stroke(status)
        );
    }

    fn open_group(&mut self, id: &str, status: Status) {
        let _ = writeln!(
            self.out,
            r#"<g id="{}" class="status-{}">"#,
            escape(id),
            status.as_str()
        );
    }

    fn close_group(&mut self) {
        self.out.push_str("</g>\n");
    }

    /// A polyline arrow coloured by status.
    fn arrow(
        &mut self,
        id: &str,
        points: &[(f64, f64)],
        status: Status,
        label: Option<(f64, f64, &str)>,
    ) {
        let pts = points
            .iter()
            .map(|(x, y)| format!("{x:.1},{y:.1}"))
            .collect::<Vec<_>>()
            .join(" ");
        let dash = match status {
            Status::Broken => r#" stroke-dasharray="6 4""#,
            Status::Skipped | Status::Unknown => r#" stroke-dasharray="2 4""#,
            _ => "",
        };
        self.open_group(id, status);
        let _ = writeln!(
            self.out,
            r#"<polyline points="{pts}" fill="none" stroke="{}" stroke-width="3"{dash} marker-end="url(#arrow-{})"/>"#,
            stroke(status),
            status.as_str()
        );
        if let Some((x, y, text)) = label {
            self.text(x, y, 11.0, "normal", stroke(status), "start", text);
        }
        self.close_group();
    }
}

/// A box for one hop (or a neutral one when the report has no such hop): the title and the
/// detail wrapped to the box's width, the box as tall as its text needs (at least `h`).
/// Returns the height drawn.
#[allow(clippy::too_many_arguments)]
fn hop_box(
    c: &mut Canvas,
    report: &PathReport,
    kind: HopKind,
    (x, y, w, h): (f64, f64, f64, f64),
    title: &str,
    detail: Option<&str>,
    title_size: f64,
) -> f64 {
    let hop = report.hop(kind);
    let status = hop.map(|h| h.status).unwrap_or(Status::Skipped);
    let id = format!("hop-{}", kind.id());
    let titles = wrap(title, fits(w - 12.0, title_size));
    let details = detail
        .filter(|d| !d.is_empty())
        .map(|d| wrap(d, fits(w - 12.0, 11.0)))
        .unwrap_or_default();
    let title_step = title_size + 3.0;
    let needed = 10.0 + titles.len() as f64 * title_step + details.len() as f64 * 13.0 + 4.0;
    let h = h.max(needed);
    c.open_group(&id, status);
    c.rect(x, y, w, h, 6.0, status, false);
    let block = titles.len() as f64 * title_step + details.len() as f64 * 13.0;
    let mut ty = y + (h - block) / 2.0 + title_size - 2.0;
    for line in &titles {
        c.text(x + w / 2.0, ty, title_size, "bold", INK, "middle", line);
        ty += title_step;
    }
    ty -= 2.0;
    for line in &details {
        c.text(x + w / 2.0, ty + 9.0, 11.0, "normal", MUTED, "middle", line);
        ty += 13.0;
    }
    c.close_group();
    h
}

fn health_status(health: Health) -> Status {
    match health {
        Health::Healthy => Status::Ok,
        Health::Degraded => Status::Warning,
        Health::Broken => Status::Broken,
        Health::Unknown => Status::Unknown,
    }
}

fn observed(report: &PathReport, kind: HopKind) -> Option<String> {
    report.hop(kind).map(|h| h.observed.clone())
}

/// `--via node-port` for a report about one kind of way; nothing for "any way".
fn via_flag(intent: Intent) -> &'static str {
    match intent {
        Intent::Any => "",
        Intent::Direct => " --via direct",
        Intent::NodePort => " --via node-port",
        Intent::LoadBalancer => " --via load-balancer",
        Intent::PortForward => " --via port-forward",
    }
}

/// The verdict's lines (bold head first) and its fix lines.
fn verdict_lines(report: &PathReport) -> (Vec<String>, Vec<String>) {
    let v = &report.verdict;
    let head = super::text::verdict_head(report);
    let lines = wrap(&format!("{head}: {}", v.summary), 112);
    let fix = v
        .primary
        .as_ref()
        .and_then(|p| p.fixes.iter().find_map(|f| f.command.clone()))
        .map(|cmd| wrap(&format!("fix: {cmd}"), 120))
        .unwrap_or_default();
    (lines, fix)
}

/// Renders the report as a self-contained SVG 1.1 document; the viewBox is as tall as the
/// verdict needs.
pub fn svg(report: &PathReport) -> String {
    let mut c = Canvas { out: String::new() };
    let (lines, fix) = verdict_lines(report);
    let height =
        (VERDICT_Y + lines.len() as f64 * 18.0 + fix.len() as f64 * 17.0 + 24.0).ceil() as u32;
    let _ = writeln!(
        c.out,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}">"#
    );
    let title = format!(
        "kubeway explain {}{}",
        report.target_short(),
        via_flag(report.intent)
    );
    let _ = writeln!(c.out, "<title>{}</title>", escape(&title));
    c.out.push_str("<defs>\n");
    for status in ALL_STATUSES {
        let _ = writeln!(
            c.out,
            r#"<marker id="arrow-{}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" markerHeight="6" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="{}"/></marker>"#,
            status.as_str(),
            stroke(status)
        );
    }
    c.out.push_str("</defs>\n");
    let _ = writeln!(
        c.out,
        r##"<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="#ffffff"/>"##
    );

    // Title.
    for (i, line) in wrap(&title, 80).iter().enumerate() {
        c.text(
            20.0,
            34.0 + i as f64 * 22.0,
            20.0,
            "bold",
            INK,
            "start",
            line,
        );
    }
    let sub = format!(
        "namespace {} · context {} · {}",
        report.namespace, report.context, report.environment.display
    );
    c.text(20.0, 56.0, 13.0, "normal", MUTED, "start", &clip(&sub, 140));

    draw_api(&mut c, report);
    draw_host(&mut c, report);
    draw_boundary_and_node(&mut c, report);
    draw_kubernetes(&mut c, report);
    draw_pods(&mut c, report);
    draw_ways(&mut c, report);
    draw_legend(&mut c);
    draw_verdict(&mut c, report, &lines, &fix);

    c.out.push_str("</svg>\n");
    c.out
}

fn draw_host(c: &mut Canvas, report: &PathReport) {
    let host = report
        .hop(HopKind::Host)
        .map(|h| h.status)
        .unwrap_or(Status::Ok);
    c.open_group("hop-host", host);
    c.rect(20.0, 240.0, 150.0, 140.0, 8.0, host, false);
    c.text(95.0, 266.0, 16.0, "bold", INK, "middle", "Host");
    c.text(
        95.0,
        284.0,
        11.0,
        "normal",
        MUTED,
        "middle",
        "your browser, curl",
    );
    if let Some(h) = report.environment.host {
        let words = match h {
            crate::env::HostKind::Linux => "Linux",
            crate::env::HostKind::MacOs => "macOS",
            crate::env::HostKind::Windows => "Windows",
            crate::env::HostKind::Wsl2 => "WSL2",
            crate::env::HostKind::LimaGuest => "Lima guest",
        };
        c.text(95.0, 300.0, 11.0, "normal", MUTED, "middle", words);
    }
    c.close_group();
    let ctx = format!("context {}", report.context);
    hop_box(
        c,
        report,
        HopKind::Context,
        (30.0, 340.0, 130.0, 28.0),
        &ctx,
        None,
        11.0,
    );
}

fn draw_api(c: &mut Canvas, report: &PathReport) {
    let server = report
        .hop(HopKind::ApiServer)
        .map(|h| h.checked.trim_end_matches(" answers").to_string())
        .unwrap_or_default();
    hop_box(
        c,
        report,
        HopKind::ApiServer,
        (230.0, 82.0, 230.0, 56.0),
        "API server",
        Some(&server),
        14.0,
    );
    let rbac = observed(report, HopKind::Rbac).unwrap_or_default();
    hop_box(
        c,
        report,
        HopKind::Rbac,
        (490.0, 86.0, 220.0, 48.0),
        "RBAC pods/portforward",
        Some(&rbac),
        12.0,
    );
}

fn draw_boundary_and_node(c: &mut Canvas, report: &PathReport) {
    match (
        &report.environment.boundary,
        report.hop(HopKind::DriverBoundary),
    ) {
        (Some(label), hop) => {
            let status = hop.map(|h| h.status).unwrap_or(Status::Skipped);
            c.open_group("hop-driver_boundary", status);
            c.rect(200.0, 168.0, 780.0, 464.0, 14.0, status, true);
            c.text(
                216.0,
                188.0,
                13.0,
                "bold",
                stroke(status),
                "start",
                &clip(label, 70),
            );
            if let Some(h) = hop {
                for (i, line) in wrap(&h.observed, 56).iter().enumerate() {
                    c.text(
                        965.0,
                        184.0 + i as f64 * 12.0,
                        11.0,
                        "normal",
                        stroke(status),
                        "end",
                        line,
                    );
                }
            }
            c.close_group();
        }
        (None, _) => {
            c.open_group("boundary-none", Status::Skipped);
            c.text(
                216.0,
                188.0,
                12.0,
                "normal",
                MUTED,
                "start",
                "no driver boundary: the node is this machine, or a remote cluster",
            );
            c.close_group();
        }
    }
    // The node.
    let node_addr = report
        .ways
        .iter()
        .find(|w| w.kind == WayKind::NodePort)
        .and_then(|w| w.address.clone())
        .map(|a| a.rsplit_once(':').map(|(h, _)| h.to_string()).unwrap_or(a))
        .unwrap_or_default();
    let _ = writeln!(
        c.out,
        r##"<g id="node"><rect x="240" y="206" width="720" height="410" rx="10" fill="#fafafa" stroke="#757575" stroke-width="1.5"/>"##
    );
    c.text(
        256.0,
        226.0,
        13.0,
        "bold",
        INK,
        "start",
        &clip(&format!("Node {node_addr}"), 40),
    );
    c.out.push_str("</g>\n");

    // Entry points on the node's edge.
    if let Some(h) = report.hop(HopKind::NodePort) {
        let label = h.label.clone();
        let detail = h.observed.clone();
        hop_box(
            c,
            report,
            HopKind::NodePort,
            (222.0, 262.0, 130.0, 44.0),
            &label,
            Some(&detail),
            12.0,
        );
    }
    if let Some(h) = report.hop(HopKind::LbIngress) {
        let label = h.label.clone();
        let detail = h.observed.clone();
        hop_box(
            c,
            report,
            HopKind::LbIngress,
            (222.0, 322.0, 130.0, 44.0),
            &label,
            Some(&detail),
            12.0,
        );
    }
    if let Some(h) = report.hop(HopKind::LocalhostNodePort) {
        let label = h.label.clone();
        let detail = h.observed.clone();
        hop_box(
            c,
            report,
            HopKind::LocalhostNodePort,
            (182.0, 440.0, 130.0, 44.0),
            &label,
            Some(&detail),
            12.0,
        );
    }
}

fn draw_kubernetes(c: &mut Canvas, report: &PathReport) {
    let x = 400.0;
    let w = 190.0;
    // Connectors first, so boxes sit on top.
    let seg =
        |c: &mut Canvas, id: &str, from: (f64, f64), to: (f64, f64), kinds: (HopKind, HopKind)| {
            let status = arrow_status(report, Some(kinds.0), kinds.1);
            c.arrow(id, &[from, to], status, None);
        };
    if report.hop(HopKind::Service).is_some() {
        seg(
            c,
            "link-service-endpoints",
            (x + w / 2.0, 306.0),
            (x + w / 2.0, 356.0),
            (HopKind::Service, HopKind::Endpoints),
        );
        seg(
            c,
            "link-endpoints-pods",
            (x + w, 383.0),
            (610.0, 383.0),
            (HopKind::Endpoints, HopKind::Pods),
        );
        seg(
            c,
            "link-endpoints-pods-2",
            (610.0, 383.0),
            (628.0, 300.0),
            (HopKind::Endpoints, HopKind::Pods),
        );
        if report.hop(HopKind::NodePort).is_some() {
            seg(
                c,
                "link-nodeport-service",
                (352.0, 284.0),
                (x - 2.0, 280.0),
                (HopKind::NodePort, HopKind::Service),
            );
        }
        if report.hop(HopKind::LbIngress).is_some() {
            seg(
                c,
                "link-lb-service",
                (352.0, 344.0),
                (x - 2.0, 292.0),
                (HopKind::LbIngress, HopKind::Service),
            );
        }
        if report.hop(HopKind::LocalhostNodePort).is_some() {
            seg(
                c,
                "link-localhost-service",
                (312.0, 462.0),
                (x - 2.0, 298.0),
                (HopKind::LocalhostNodePort, HopKind::Service),
            );
        }
        let svc = report.hop(HopKind::Service);
        let title = svc.map(|h| h.label.clone()).unwrap_or_default();
        let detail = svc.map(|h| service_detail(&h.observed)).unwrap_or_default();
        hop_box(
            c,
            report,
            HopKind::Service,
            (x, 252.0, w, 54.0),
            &title,
            Some(&detail),
            14.0,
        );
        if let Some(sel) = report.hop(HopKind::Selector) {
            let label = sel.label.clone();
            hop_box(
                c,
                report,
                HopKind::Selector,
                (x + 10.0, 316.0, w - 20.0, 26.0),
                &label,
                None,
                11.0,
            );
        }
        let eps = observed(report, HopKind::Endpoints).unwrap_or_default();
        let eps = eps.split(" (").next().unwrap_or_default().to_string();
        hop_box(
            c,
            report,
            HopKind::Endpoints,
            (x, 356.0, w, 54.0),
            "EndpointSlice",
            Some(&eps),
            14.0,
        );
    } else if let Some(sel) = report.hop(HopKind::Selector) {
        // A workload target: its selector leads to the pods.
        let label = sel.label.clone();
        let detail = sel.observed.clone();
        seg(
            c,
            "link-selector-pods",
            (x + w, 284.0),
            (628.0, 284.0),
            (HopKind::Selector, HopKind::Pods),
        );
        hop_box(
            c,
            report,
            HopKind::Selector,
            (x, 258.0, w, 54.0),
            &label,
            Some(&detail),
            13.0,
        );
    }
    if let Some(tp) = report.hop(HopKind::TargetPort) {
        // The target port sits between the EndpointSlice (or a workload's selector) and the
        // pods: connected both ways, never floating.
        let (from, top) = if report.hop(HopKind::Service).is_some() {
            (HopKind::Endpoints, 410.0)
        } else {
            (HopKind::Selector, 312.0)
        };
        c.arrow(
            "link-targetport-in",
            &[(x + w / 2.0, top), (x + w / 2.0, 424.0)],
            arrow_status(report, Some(from), HopKind::TargetPort),
            None,
        );
        let label = tp.label.clone();
        let detail = tp.observed.clone();
        hop_box(
            c,
            report,
            HopKind::TargetPort,
            (x, 426.0, w, 44.0),
            &label,
            Some(&detail),
            12.0,
        );
    }
}

/// The Service hop's observation, shortened for a box: type and ports.
fn service_detail(observed: &str) -> String {
    let head = observed.split(", nodePort").next().unwrap_or(observed);
    let head = head.split(", clusterIP").next().unwrap_or(head);
    head.replacen(", port ", " · ", 1)
        .replacen("targetPort ", "", 1)
}

fn draw_pods(c: &mut Canvas, report: &PathReport) {
    let (x, y, w) = (630.0, 240.0, 320.0);
    let pods_status = report
        .hop(HopKind::Pods)
        .map(|h| h.status)
        .unwrap_or(Status::Skipped);
    c.open_group("hop-pods", pods_status);
    // Each pod's row: its name, then its address and state, wrapped (nothing is cut).
    let rows: Vec<(Vec<String>, Vec<String>)> = report
        .pods
        .iter()
        .take(5)
        .map(|pod| {
            let addr = match (&pod.ip, pod.port) {
                (Some(ip), Some(port)) => format!("{ip}:{port}"),
                (Some(ip), None) => ip.clone(),
                (None, _) => "no address".to_string(),
            };
            (
                wrap(&pod.name, 30),
                wrap(&format!("{addr} · {}", pod.detail), 42),
            )
        })
        .collect();
    let row_h =
        |r: &(Vec<String>, Vec<String>)| 10.0 + r.0.len() as f64 * 14.0 + r.1.len() as f64 * 12.0;
    let more = if report.pods.len() > 5 { 20.0 } else { 0.0 };
    let rows_h: f64 = rows.iter().map(|r| row_h(r) + 6.0).sum::<f64>().max(52.0);
    let h = 36.0 + rows_h + more;
    c.rect(x, y, w, h, 8.0, pods_status, false);
    let title = match report.hop(HopKind::Pods) {
        Some(h) => format!("{} · {}", h.label, h.observed),
        None => "Pods".to_string(),
    };
    c.text(x + 12.0, y + 20.0, 13.0, "bold", INK, "start", &title);
    c.close_group();
    if report.pods.is_empty() {
        let _ = writeln!(
            c.out,
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="48" rx="6" fill="none" stroke="#9e9e9e" stroke-dasharray="4 4"/>"##,
            x + 12.0,
            y + 34.0,
            w - 24.0
        );
        c.text(
            x + w / 2.0,
            y + 63.0,
            12.0,
            "normal",
            MUTED,
            "middle",
            "no pods",
        );
    }
    let mut py = y + 32.0;
    for (i, (pod, row)) in report.pods.iter().zip(&rows).enumerate() {
        let rh = row_h(row);
        c.open_group(&format!("pod-{i}"), pod.status);
        c.rect(x + 12.0, py, w - 24.0, rh, 6.0, pod.status, false);
        let mut ty = py + 16.0;
        for line in &row.0 {
            c.text(x + 22.0, ty, 12.0, "bold", INK, "start", line);
            ty += 14.0;
        }
        for line in &row.1 {
            c.text(x + 22.0, ty - 1.0, 10.5, "normal", MUTED, "start", line);
            ty += 12.0;
        }
        c.close_group();
        // The process inside, as port-forward (localhost) and the pod-IP probe saw it.
        let process = if pod.process == Status::Broken || pod.pod_ip == Status::Broken {
            Status::Broken
        } else {
            pod.process
        };
        c.open_group(&format!("process-{i}"), process);
        c.rect(x + w - 84.0, py + 8.0, 62.0, 22.0, 4.0, process, false);
        let label = match pod.port {
            Some(p) => format!("app :{p}"),
            None => "app".to_string(),
        };
        c.text(
            x + w - 53.0,
            py + 23.0,
            11.0,
            "normal",
            INK,
            "middle",
            &label,
        );
        c.close_group();
        py += rh + 6.0;
    }
    if report.pods.len() > 5 {
        c.text(
            x + w / 2.0,
            py + 12.0,
            12.0,
            "normal",
            MUTED,
            "middle",
            &format!("+{} more", report.pods.len() - 5),
        );
    }
    if let Some(p) = report.hop(HopKind::Process) {
        // The target port leads to the process listening on it.
        if report.hop(HopKind::TargetPort).is_some() {
            c.arrow(
                "link-targetport-pods",
                &[
                    (590.0, 448.0),
                    (610.0, 448.0),
                    (610.0, y + h + 32.0),
                    (628.0, y + h + 32.0),
                ],
                arrow_status(report, Some(HopKind::TargetPort), HopKind::Process),
                None,
            );
        }
        let label = p.label.clone();
        let detail = p.observed.clone();
        hop_box(
            c,
            report,
            HopKind::Process,
            (x, y + h + 12.0, w, 40.0),
            &label,
            Some(&detail),
            12.0,
        );
    }
}

/// The colour of an arrow: the status of the hop it leads to. When nothing can leave the hop
/// it comes from (broken, skipped, absent), the arrow is grey and dotted: no traffic flows there.
fn arrow_status(report: &PathReport, from: Option<HopKind>, to: HopKind) -> Status {
    let of = |k: HopKind| report.hop(k).map(|h| h.status);
    if let Some(f) = from
        && matches!(of(f), None | Some(Status::Broken | Status::Skipped))
    {
        return Status::Skipped;
    }
    of(to).unwrap_or(Status::Skipped)
}

fn draw_ways(c: &mut Canvas, report: &PathReport) {
    for way in &report.ways {
        let id = format!("way-{}", way_id(way.kind));
        match way.kind {
            WayKind::NodePort => {
                // From the host across the boundary (when there is one) into the NodePort.
                let boundary = report.hop(HopKind::DriverBoundary).map(|h| h.status);
                let status = match boundary {
                    Some(s @ (Status::Broken | Status::Warning)) => s,
                    _ => arrow_status(report, None, HopKind::NodePort),
                };
                c.arrow(
                    &id,
                    &[(170.0, 284.0), (220.0, 284.0)],
                    status,
                    Some((172.0, 276.0, "NodePort")),
                )
            }
            WayKind::LoadBalancer => c.arrow(
                &id,
                &[(170.0, 344.0), (220.0, 344.0)],
                arrow_status(report, None, HopKind::LbIngress),
                Some((172.0, 336.0, "LB")),
            ),
            WayKind::LocalhostNodePort => c.arrow(
                &id,
                &[(95.0, 380.0), (95.0, 462.0), (180.0, 462.0)],
                arrow_status(report, None, HopKind::LocalhostNodePort),
                Some((100.0, 455.0, "localhost")),
            ),
            WayKind::PortForward => {
                c.arrow(
                    &id,
                    &[(95.0, 240.0), (95.0, 110.0), (228.0, 110.0)],
                    arrow_status(report, Some(HopKind::Context), HopKind::ApiServer),
                    Some((102.0, 104.0, "port-forward")),
                );
                c.arrow(
                    &format!("{id}-api"),
                    &[(460.0, 110.0), (488.0, 110.0)],
                    arrow_status(report, Some(HopKind::ApiServer), HopKind::Rbac),
                    None,
                );
                c.arrow(
                    &format!("{id}-kubelet"),
                    &[(710.0, 110.0), (930.0, 110.0), (930.0, 238.0)],
                    arrow_status(report, Some(HopKind::Rbac), HopKind::Process),
                    Some((720.0, 104.0, "via kubelet to localhost in the pod")),
                );
            }
        }
    }
}

fn way_id(kind: WayKind) -> &'static str {
    match kind {
        WayKind::NodePort => "node_port",
        WayKind::LocalhostNodePort => "localhost_node_port",
        WayKind::LoadBalancer => "load_balancer",
        WayKind::PortForward => "port_forward",
    }
}

fn draw_legend(c: &mut Canvas) {
    c.out.push_str("<g id=\"legend\">\n");
    c.text(20.0, 658.0, 12.0, "bold", INK, "start", "Legend");
    let mut x = 80.0;
    for status in ALL_STATUSES {
        c.rect(x, 647.0, 16.0, 14.0, 3.0, status, false);
        c.text(
            x + 22.0,
            658.0,
            12.0,
            "normal",
            INK,
            "start",
            status.as_str(),
        );
        x += 100.0;
    }
    let _ = writeln!(
        c.out,
        r##"<line x1="{x:.1}" y1="654" x2="{:.1}" y2="654" stroke="#616161" stroke-width="2" stroke-dasharray="8 6"/>"##,
        x + 30.0
    );
    c.text(
        x + 38.0,
        658.0,
        12.0,
        "normal",
        INK,
        "start",
        "driver boundary (VM / node container)",
    );
    c.out.push_str("</g>\n");
}

fn draw_verdict(c: &mut Canvas, report: &PathReport, lines: &[String], fix: &[String]) {
    let status = health_status(report.verdict.health);
    c.open_group("verdict", status);
    for (i, line) in lines.iter().enumerate() {
        let weight = if i == 0 { "bold" } else { "normal" };
        c.text(
            20.0,
            VERDICT_Y + i as f64 * 18.0,
            14.0,
            weight,
            stroke(status),
            "start",
            line,
        );
    }
    for (i, line) in fix.iter().enumerate() {
        let _ = writeln!(
            c.out,
            r#"<text x="20" y="{:.1}" font-family="{MONO}" font-size="13" fill="{INK}">{}</text>"#,
            VERDICT_Y + lines.len() as f64 * 18.0 + 4.0 + i as f64 * 17.0,
            escape(line)
        );
    }
    c.close_group();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::explain;
    use crate::explain::tests_support::{boundary_facts, healthy_facts};

    /// One element of a parsed document.
    #[derive(Debug)]
    struct Element {
        name: String,
        attrs: Vec<(String, String)>,
        parent: Option<usize>,
    }

    impl Element {
        fn attr(&self, name: &str) -> Option<&str> {
            self.attrs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        }
    }

    /// A small well-formedness checker: balanced and properly nested tags, quoted attributes,
    /// no raw `<` or `&` outside markup and entities. Returns the elements in document order.
    fn parse(doc: &str) -> Result<Vec<Element>, String> {
        let mut elements: Vec<Element> = Vec::new();
        let mut stack: Vec<usize> = Vec::new();
        let mut rest = doc;
        let mut roots = 0;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix("<?") {
                let end = after.find("?>").ok_or("unterminated declaration")?;
                rest = &after[end + 2..];
            } else if let Some(after) = rest.strip_prefix("<!--") {
                let end = after.find("-->").ok_or("unterminated comment")?;
                rest = &after[end + 3..];
            } else if let Some(after) = rest.strip_prefix("</") {
                let end = after.find('>').ok_or("unterminated end tag")?;
                let name = after[..end].trim();
                let open = stack
                    .pop()
                    .ok_or(format!("</{name}> without a start tag"))?;
                if elements[open].name != name {
                    return Err(format!("</{name}> closes <{}>", elements[open].name));
                }
                rest = &after[end + 1..];
            } else if let Some(after) = rest.strip_prefix('<') {
                let end = find_tag_end(after).ok_or("unterminated tag")?;
                let mut inner = &after[..end];
                let self_closing = inner.ends_with('/');
                if self_closing {
                    inner = &inner[..inner.len() - 1];
                }
                let (name, attrs) = parse_tag(inner)?;
                if stack.is_empty() {
                    roots += 1;
                }
                elements.push(Element {
                    name,
                    attrs,
                    parent: stack.last().copied(),
                });
                if !self_closing {
                    stack.push(elements.len() - 1);
                }
                rest = &after[end + 1..];
            } else {
                let end = rest.find('<').unwrap_or(rest.len());
                check_text(&rest[..end])?;
                if stack.is_empty() && !rest[..end].trim().is_empty() {
                    return Err("text outside the root element".into());
                }
                rest = &rest[end..];
            }
        }
        if let Some(open) = stack.pop() {
            return Err(format!("<{}> is never closed", elements[open].name));
        }
        if roots != 1 {
            return Err(format!("{roots} root elements"));
        }
        Ok(elements)
    }

    fn find_tag_end(s: &str) -> Option<usize> {
        let mut quote: Option<char> = None;
        for (i, ch) in s.char_indices() {
            match (quote, ch) {
                (None, '"') | (None, '\'') => quote = Some(ch),
                (Some(q), c) if c == q => quote = None,
                (None, '>') => return Some(i),
                (None, '<') => return None,
                _ => {}
            }
        }
        None
    }

    fn parse_tag(inner: &str) -> Result<(String, Vec<(String, String)>), String> {
        let inner = inner.trim();
        let name_end = inner.find(char::is_whitespace).unwrap_or(inner.len());
        let name = inner[..name_end].to_string();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_:".contains(c))
        {
            return Err(format!("bad tag name {name:?}"));
        }
        let mut attrs = Vec::new();
        let mut rest = inner[name_end..].trim_start();
        while !rest.is_empty() {
            let eq = rest
                .find('=')
                .ok_or(format!("attribute without value in <{name}>"))?;
            let key = rest[..eq].trim().to_string();
            let after = rest[eq + 1..].trim_start();
            let q = after.chars().next().ok_or("missing attribute value")?;
            if q != '"' && q != '\'' {
                return Err(format!("unquoted attribute {key} in <{name}>"));
            }
            let close = after[1..].find(q).ok_or("unterminated attribute")?;
            let value = &after[1..1 + close];
            check_text(value)?;
            if value.contains('<') {
                return Err(format!("'<' in attribute {key}"));
            }
            if attrs.iter().any(|(k, _): &(String, String)| *k == key) {
                return Err(format!("duplicate attribute {key} in <{name}>"));
            }
            attrs.push((key, value.to_string()));
            rest = after[close + 2..].trim_start();
        }
        Ok((name, attrs))
    }

    fn check_text(text: &str) -> Result<(), String> {
        let mut rest = text;
        while let Some(pos) = rest.find('&') {
            let after = &rest[pos + 1..];
            let end = after.find(';').ok_or("bare '&'")?;
            let entity = &after[..end];
            let known = ["amp", "lt", "gt", "quot", "apos"].contains(&entity)
                || entity
                    .strip_prefix('#')
                    .is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()));
            if !known {
                return Err(format!("unknown entity &{entity};"));
            }
            rest = &after[end + 1..];
        }
        if text
            .chars()
            .any(|c| (c as u32) < 0x20 && !"\t\n\r".contains(c))
        {
            return Err("control character".into());
        }
        Ok(())
    }

    fn first_rect_stroke<'a>(elements: &'a [Element], id: &str) -> Option<&'a str> {
        let group = elements.iter().position(|e| e.attr("id") == Some(id))?;
        elements
            .iter()
            .find(|e| e.name == "rect" && e.parent == Some(group))
            .and_then(|e| e.attr("stroke"))
    }

    #[test]
    fn checker_rejects_broken_documents() {
        assert!(parse("<a><b></a></b>").is_err());
        assert!(parse("<a>x & y</a>").is_err());
        assert!(parse("<a x=1/>").is_err());
        assert!(parse("<a/><b/>").is_err());
        assert!(parse("<a>").is_err());
        assert!(parse(r#"<a x="1"><b/>text &amp; more</a>"#).is_ok());
    }

    #[test]
    fn healthy_picture_is_well_formed_and_green() {
        let doc = svg(&explain(&healthy_facts()));
        let elements = parse(&doc).unwrap_or_else(|e| panic!("{e}\n{doc}"));
        let root = &elements[0];
        assert_eq!(root.name, "svg");
        assert_eq!(root.attr("xmlns"), Some("http://www.w3.org/2000/svg"));
        assert!(
            root.attr("viewBox")
                .is_some_and(|v| v.starts_with("0 0 1000 ")),
            "{:?}",
            root.attr("viewBox")
        );
        assert!(elements.iter().any(|e| e.attr("id") == Some("legend")));
        for id in [
            "hop-service",
            "hop-endpoints",
            "hop-node_port",
            "hop-driver_boundary",
            "hop-process",
        ] {
            assert_eq!(
                first_rect_stroke(&elements, id),
                Some(stroke(Status::Ok)),
                "{id}"
            );
        }
        assert!(
            !doc.contains(stroke(Status::Broken))
                || doc.matches(stroke(Status::Broken)).count() <= 2,
            "only the legend and its marker are red"
        );
        assert!(
            !doc.contains("http://") || !doc.contains("href"),
            "no external resources"
        );
        assert!(!doc.contains("<script"));
        assert!(doc.contains("font-family=\"sans-serif\""));
    }

    #[test]
    fn broken_hop_is_red_and_boundary_warning_amber() {
        let mut facts = healthy_facts();
        facts.pods.clear();
        facts.endpoints.clear();
        facts.portforward.clear();
        facts.node_probes.clear();
        let report = explain(&facts);
        let doc = svg(&report);
        let elements = parse(&doc).unwrap_or_else(|e| panic!("{e}\n{doc}"));
        assert_eq!(
            first_rect_stroke(&elements, "hop-selector"),
            Some(stroke(Status::Broken))
        );
        assert_eq!(
            first_rect_stroke(&elements, "hop-endpoints"),
            Some(stroke(Status::Broken))
        );
        assert!(doc.contains("no pods"));
        assert!(doc.contains("broken at the selector (Kubernetes layer)"));

        let doc = svg(&explain(&boundary_facts()));
        let elements = parse(&doc).unwrap_or_else(|e| panic!("{e}\n{doc}"));
        assert_eq!(
            first_rect_stroke(&elements, "hop-driver_boundary"),
            Some(stroke(Status::Warning))
        );
        assert!(doc.contains("minikube (docker driver) — KIC container in a VM"));
        let legend = elements
            .iter()
            .position(|e| e.attr("id") == Some("legend"))
            .unwrap();
        let swatches: Vec<&str> = elements
            .iter()
            .filter(|e| e.name == "rect" && e.parent == Some(legend))
            .filter_map(|e| e.attr("stroke"))
            .collect();
        assert_eq!(swatches, ALL_STATUSES.map(stroke));
    }

    #[test]
    fn user_strings_are_escaped() {
        let mut facts = healthy_facts();
        facts.namespace = "<script>&\"'\u{1}".into();
        facts.pods[0].name = "a<b>&c".into();
        facts.context.name = "]]><evil/>".into();
        let doc = svg(&explain(&facts));
        parse(&doc).unwrap_or_else(|e| panic!("{e}\n{doc}"));
        assert!(!doc.contains("<script>"));
        assert!(!doc.contains("<evil/>"));
        assert!(doc.contains("a&lt;b&gt;&amp;c"));
    }

    #[test]
    fn many_pods_are_summarised() {
        let mut facts = healthy_facts();
        let template = facts.pods[0].clone();
        facts.pods = (0..9)
            .map(|i| {
                let mut p = template.clone();
                p.name = format!("web-{i}");
                p
            })
            .collect();
        let doc = svg(&explain(&facts));
        parse(&doc).unwrap();
        assert!(doc.contains("+4 more"));
        assert!(doc.contains("id=\"pod-4\""));
        assert!(!doc.contains("id=\"pod-5\""));
    }

    #[test]
    fn wrapping_keeps_every_word() {
        assert_eq!(clip("héllo wörld", 5), "héll…");
        assert!(wrap("", 10).is_empty());
        let text = "not reachable: behind the boundary of minikube's docker driver";
        let lines = wrap(text, 12);
        assert!(lines.iter().all(|l| l.chars().count() <= 12), "{lines:?}");
        assert_eq!(
            lines.join(" ").split_whitespace().collect::<Vec<_>>(),
            text.split_whitespace().collect::<Vec<_>>(),
            "nothing is cut"
        );
        let long = "x".repeat(500);
        assert_eq!(wrap(&long, 10).concat(), long);
    }

    /// The stroke of the first polyline inside the group with `id`.
    fn arrow_stroke<'a>(elements: &'a [Element], id: &str) -> Option<&'a str> {
        let group = elements.iter().position(|e| e.attr("id") == Some(id))?;
        elements
            .iter()
            .find(|e| e.name == "polyline" && e.parent == Some(group))
            .and_then(|e| e.attr("stroke"))
    }

    #[test]
    fn arrows_take_the_colour_of_the_hop_they_lead_to() {
        // The NodePort is behind the boundary (minikube on macOS), asked for directly.
        let mut facts = boundary_facts();
        facts.intent = crate::explain::Intent::NodePort;
        let report = explain(&facts);
        let doc = svg(&report);
        let elements = parse(&doc).unwrap_or_else(|e| panic!("{e}\n{doc}"));
        assert_eq!(
            arrow_stroke(&elements, "way-node_port"),
            Some(stroke(Status::Broken)),
            "the arrow into the unreachable NodePort is red"
        );
        assert_ne!(
            arrow_stroke(&elements, "link-nodeport-service"),
            Some(stroke(Status::Ok)),
            "nothing flows out of an unreachable NodePort"
        );
        assert!(
            doc.contains("<title>kubeway explain svc/web --via node-port</title>"),
            "the question asked is in the title"
        );
        // The target port is connected on both sides.
        assert!(
            elements
                .iter()
                .any(|e| e.attr("id") == Some("link-targetport-in"))
        );
        assert!(
            elements
                .iter()
                .any(|e| e.attr("id") == Some("link-targetport-pods"))
        );
        // Every hop's words are in the picture whole.
        let drawn = [
            HopKind::DriverBoundary,
            HopKind::NodePort,
            HopKind::TargetPort,
            HopKind::Process,
        ];
        for hop in report.hops.iter().filter(|h| drawn.contains(&h.kind)) {
            for word in hop.observed.split_whitespace() {
                assert!(
                    doc.contains(&escape(word)),
                    "{word:?} of {} is missing",
                    hop.id
                );
            }
        }
    }
}
