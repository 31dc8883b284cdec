//! Renderers of a [`PathReport`]: a text diagram for terminals, JSON for scripts, SVG for docs.

mod svg;
mod text;

use thiserror::Error;

use crate::path::PathReport;

pub use svg::svg;
pub use text::text;

/// Why a report could not be rendered.
#[derive(Debug, Error)]
pub enum RenderError {
    /// Serializing to JSON failed.
    #[error("could not serialize the path report as JSON")]
    Json(#[from] serde_json::Error),
}

/// The report as pretty-printed JSON (the `-o json` output).
pub fn json(report: &PathReport) -> Result<String, RenderError> {
    Ok(serde_json::to_string_pretty(report)?)
}
