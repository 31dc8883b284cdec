//! Property test: random command lines — subcommands, flags and hostile values mixed — go
//! through the CLI grammar and each command's validation without a panic, and every error they
//! produce stays short whatever the input's length.

use clap::Parser;
use proptest::prelude::*;

use crate::cli::{Cli, validate};

fn word() -> impl Strategy<Value = String> {
    let vocabulary = prop::sample::select(vec![
        "lab",
        "up",
        "env",
        "forward",
        "explain",
        "open",
        "tunnel",
        "demo",
        "--kubeconfig",
        "--context",
        "-n",
        "--namespace",
        "-o",
        "json",
        "text",
        "-v",
        "-A",
        "--all",
        "--all-namespaces",
        "--cleanup",
        "--route",
        "--service-cidr",
        "--state-dir",
        "--probe-timeout",
        "--pod-running-timeout",
        "--address",
        "--transport",
        "--via",
        "--svg",
        "--url",
        "--scheme",
        "--no-browser",
        "--persona",
        "--netns",
        "--node-reachable",
        "--api-port",
        "--kubeconfig-out",
        "--sample",
        "--port",
        "--once",
        "svc/web",
        "pod/x",
        "deploy/web",
        "web",
        "8080:80",
        ":80",
        "80",
        "65535:9000",
        "0:0",
        "8080:http",
        "0.0.0.0",
        "::",
        "localhost",
        "127.0.0.1,::1",
        "1m30s",
        "500ms",
        "0s",
        "-1s",
        "99999999999999999999s",
        "18446744073709551615",
        "1e308s",
        "10.96.0.0/12",
        "0.0.0.0/0",
        "reachable",
        "published",
        "true",
        "false",
        "--",
        "-",
        "",
    ])
    .prop_map(str::to_string);
    prop_oneof![
        6 => vocabulary,
        2 => any::<String>(),
        1 => "[0-9]{15,40}[smh]?",
        1 => "[a-z/:.0-9-]{0,12}",
        1 => (1usize..20_000).prop_map(|n| "x".repeat(n)),
        1 => (1usize..20_000).prop_map(|n| format!("svc/{}", "9".repeat(n))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn random_command_lines_never_panic_and_errors_stay_short(
        sub in prop::sample::select(vec!["lab up", "env", "forward", "explain", "open", "tunnel", "demo", ""]),
        words in prop::collection::vec(word(), 0..8),
    ) {
        let mut argv: Vec<String> = vec!["kubeway".into()];
        argv.extend(sub.split_whitespace().map(str::to_string));
        argv.extend(words);
        match Cli::try_parse_from(&argv) {
            Ok(cli) => {
                if let Err(e) = validate(&cli) {
                    let text = crate::render_error(&e);
                    prop_assert!(text.len() < 2_000, "{} characters: {}", text.len(), &text[..200.min(text.len())]);
                }
            }
            Err(e) => {
                let text = crate::cut_long_runs(&e.render().to_string(), 300);
                prop_assert!(text.len() < 8_000, "{} characters", text.len());
            }
        }
    }

    #[test]
    fn duration_flags_take_any_string_without_panic(s in any::<String>(), digits in "[0-9]{1,60}[a-z]{0,3}") {
        for input in [s.as_str(), digits.as_str()] {
            for parse in [crate::cli::parse_probe_timeout, crate::cli::parse_wait] {
                match parse(input) {
                    Ok(d) => prop_assert!(d <= crate::cli::MAX_WAIT && !d.is_zero()),
                    Err(e) => prop_assert!(e.len() < 600, "{}", e.len()),
                }
            }
        }
    }
}

#[test]
fn the_hostile_inputs_of_the_review_are_clear_errors() {
    let parse = |args: &[&str]| {
        let mut argv = vec!["kubeway"];
        argv.extend(args);
        Cli::try_parse_from(argv)
    };
    for sub in ["env", "explain web", "open web", "tunnel"] {
        let mut args: Vec<&str> = sub.split(' ').collect();
        args.extend(["--probe-timeout", "99999999999999999999s"]);
        let e = parse(&args).expect_err("refused");
        assert!(e.to_string().contains("--probe-timeout"), "{sub}: {e}");
    }
    let long = format!("svc/{}", "a".repeat(100_000));
    let cli = parse(&["forward", &long, "80"]).expect("parses");
    let e = crate::render_error(&validate(&cli).expect_err("invalid name"));
    assert!(e.len() < 600, "{} characters: {e}", e.len());
    assert!(e.contains("100000"), "says how long it was: {e}");
    assert_eq!(e.matches("\"aaaa").count(), 1, "the input once: {e}");
}
