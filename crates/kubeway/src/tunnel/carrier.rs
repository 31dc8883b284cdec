//! The tunnel's side of the engine's addressing and carriers (`kubeway_engine::addressing`,
//! `kubeway_engine::carrier`): what they report becomes lines of the tunnel's report.

use std::sync::Arc;

pub use kubeway_engine::addressing::Addressing;
pub use kubeway_engine::carrier::{Carrier, ServicePort};
use kubeway_engine::{End, Event, Events};

/// Events from connection handling, for the tunnel's report: text and JSON.
pub type Notes = tokio::sync::mpsc::UnboundedSender<(String, serde_json::Value)>;

/// The engine's events a tunnel shows: every connection that failed or was cut, and carrier
/// switches (endpoint changes are the tunnel's own table's business).
pub fn events(notes: Notes) -> Events {
    Arc::new(move |e: Event| {
        let text = match &e {
            Event::Connection(c) if c.end != End::Aborted && c.end != End::Completed => {
                let via = c
                    .pod
                    .as_deref()
                    .map(|p| format!(" (pod {p})"))
                    .unwrap_or_default();
                format!(
                    "connection {}: {} -> {} port {}{via}: {}",
                    if c.end == End::Failed {
                        "failed"
                    } else {
                        "cut, the client was reset"
                    },
                    c.local,
                    c.target,
                    c.remote,
                    c.error.as_deref().unwrap_or("unknown")
                )
            }
            Event::Carrier {
                service,
                port,
                via,
                why,
                ..
            } => format!("{service} port {port}: now via {via}: {why}"),
            _ => return,
        };
        let _ = notes.send((text, serde_json::to_value(&e).unwrap_or_default()));
    })
}
