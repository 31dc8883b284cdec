//! The SVG picture of a path (placeholder until the full drawing lands).

use crate::path::PathReport;

/// Renders the report as a self-contained SVG 1.1 document.
pub fn svg(_report: &PathReport) -> String {
    r#"<svg xmlns="http://www.w3.org/2000/svg" version="1.1" viewBox="0 0 10 10"></svg>"#
        .to_string()
}
