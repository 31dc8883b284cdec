//! The `kubeway` command: flags in kubectl's style, output formats, exit codes.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::arithmetic_side_effects
    )
)]

mod cli;
mod demo;
mod env;
mod explain;
mod exposure;
// The forward engine is another engineer's module for now; the lints follow it there later.
#[cfg_attr(
    not(test),
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::arithmetic_side_effects
    )
)]
mod forward;
mod lab;
mod open;
mod tunnel;
mod tutorial;

use std::process::ExitCode;

use clap::Parser;

#[cfg(test)]
mod props;

/// Cuts every run of more than `max` non-blank characters in `text` (a hostile argument quoted
/// by clap, a path …) to `max` characters, saying how long it was.
fn cut_long_runs(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(4096));
    let mut run = 0usize;
    let mut skipped = 0usize;
    for c in text.chars() {
        if c.is_whitespace() {
            if skipped > 0 {
                out.push_str(&format!("… ({} more characters)", skipped));
                skipped = 0;
            }
            run = 0;
            out.push(c);
        } else if run < max {
            run = run.saturating_add(1);
            out.push(c);
        } else {
            skipped = skipped.saturating_add(1);
        }
    }
    if skipped > 0 {
        out.push_str(&format!("… ({} more characters)", skipped));
    }
    out
}

/// The error and its causes, each printed once: a cause whose text an outer message already
/// holds (an error that names its source, a context repeating it) is not printed again.
fn render_error(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    cut_long_runs(&out, 300)
}

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                e.exit();
            }
            // clap quotes the offending argument in full; a hostile one is cut.
            eprint!("{}", cut_long_runs(&e.render().to_string(), 300));
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    let filter = match cli.verbose {
        // kubeway reports watch failures and API errors itself (once, with the status and
        // what to do); kube's client logs every 5xx at error level (the pod-IP probe expects
        // 503s).
        0 => "warn,kube_runtime::watcher=error,kube_client::client::builder=off",
        1 => "info,kubeway=info",
        2 => "debug,hyper=info,rustls=info",
        _ => "trace",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {}", render_error(&e));
            ExitCode::from(1)
        }
    }
}
