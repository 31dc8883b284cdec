//! What `kubeway tunnel` shows: a live table of Services, addresses and connection counts with
//! the latest events under it when stdout is a terminal; one line per event when it is not;
//! one JSON object per event with `-o json`.

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::sync::Mutex;

use serde_json::Value;

use crate::cli::Output;

/// How events are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A table redrawn in place, events under it.
    Table,
    /// One text line per event.
    Lines,
    /// One JSON object per event.
    Json,
}

/// One row of the table.
pub struct Row {
    /// `namespace/name`.
    pub service: String,
    /// The EXTERNAL-IP.
    pub external_ip: String,
    /// `80→127.77.0.4:80 forward`, one per port.
    pub ports: String,
    /// Connections accepted.
    pub connections: u64,
    /// Connections open now.
    pub open: u64,
    /// Connections that could not be carried.
    pub failed: u64,
}

/// The tunnel's output.
pub struct View {
    mode: Mode,
    recent: Mutex<VecDeque<String>>,
}

const RECENT: usize = 8;

impl View {
    /// As `-o` and the terminal say.
    pub fn new(output: Output) -> Self {
        let mode = match output {
            Output::Json => Mode::Json,
            Output::Text if std::io::stdout().is_terminal() => Mode::Table,
            Output::Text => Mode::Lines,
        };
        Self {
            mode,
            recent: Mutex::new(VecDeque::new()),
        }
    }

    /// Reports one event.
    pub fn event(&self, text: impl Into<String>, v: Value) {
        match self.mode {
            Mode::Json => println!("{v}"),
            Mode::Lines => println!("{}", text.into()),
            Mode::Table => {
                let mut r = self.recent.lock().unwrap_or_else(|e| e.into_inner());
                r.push_back(text.into());
                while r.len() > RECENT {
                    r.pop_front();
                }
            }
        }
    }

    /// Reports the last event, under the table in a terminal (nothing redraws after it).
    pub fn last(&self, text: impl Into<String>, v: Value) {
        match self.mode {
            Mode::Table => println!("{}", text.into()),
            _ => self.event(text, v),
        }
    }

    /// Redraws the table (terminal only).
    pub fn draw(&self, header: &str, rows: &[Row]) {
        if self.mode != Mode::Table {
            return;
        }
        let cells: Vec<[String; 4]> = rows
            .iter()
            .map(|r| {
                [
                    r.service.clone(),
                    r.external_ip.clone(),
                    r.ports.clone(),
                    if r.failed > 0 {
                        format!(
                            "{} open, {} in all ({} failed)",
                            r.open, r.connections, r.failed
                        )
                    } else {
                        format!("{} open, {} in all", r.open, r.connections)
                    },
                ]
            })
            .collect();
        let titles = ["SERVICE", "EXTERNAL-IP", "PORTS", "CONNECTIONS"];
        let width = |i: usize| {
            cells
                .iter()
                .map(|c| c[i].chars().count())
                .chain([titles[i].len()])
                .max()
                .unwrap_or(0)
        };
        let (w0, w1, w2) = (width(0), width(1), width(2));
        let mut out = String::from("\x1b[H\x1b[2J");
        out.push_str(header);
        out.push_str("\n\n");
        out.push_str(&format!(
            "{:w0$}  {:w1$}  {:w2$}  {}\n",
            titles[0], titles[1], titles[2], titles[3]
        ));
        for c in &cells {
            out.push_str(&format!(
                "{:w0$}  {:w1$}  {:w2$}  {}\n",
                c[0], c[1], c[2], c[3]
            ));
        }
        if cells.is_empty() {
            out.push_str("(no LoadBalancer Service yet)\n");
        }
        out.push('\n');
        for e in self.recent.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            out.push_str(e);
            out.push('\n');
        }
        print!("{out}");
        use std::io::Write;
        let _ = std::io::stdout().flush();
    }
}
