//! The images Kubernetes tutorials use, as built-in behaviours: real local servers that answer
//! the way those images answer (kicbase/echo-server, registry.k8s.io/echoserver, nginx, httpd,
//! hashicorp/http-echo, hello-app, traefik/whoami, agnhost, redis) and the shell images
//! (busybox, alpine, ubuntu) running `sleep` or a small `sh -c` script. Each follows its
//! command, args and env as far as tutorials use them and writes the log lines the real image
//! writes (a start-up line, an access log).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::images::{Identity, PodLife, Running};
use crate::logs::LogSink;
use crate::netns::Place;

/// The tutorial images, by repository (any registry prefix of these, any tag).
pub const APP_IMAGES: &[&str] = &[
    "kicbase/echo-server",
    "registry.k8s.io/echoserver",
    "nginx",
    "httpd",
    "hashicorp/http-echo",
    "gcr.io/google-samples/hello-app",
    "traefik/whoami",
    "registry.k8s.io/e2e-test-images/agnhost",
    "busybox",
    "alpine",
    "ubuntu",
    "redis",
];

/// What a container asks of its image.
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    /// The image reference.
    pub image: String,
    /// `command` (replaces the image's entrypoint).
    pub command: Vec<String>,
    /// `args` (replaces the image's default arguments).
    pub args: Vec<String>,
    /// `env` with plain values and the pod fields the lab resolves.
    pub env: BTreeMap<String, String>,
}

/// One configured tutorial app.
#[derive(Debug, Clone, PartialEq)]
pub enum App {
    /// kicbase/echo-server (jmalloc's echo-server): the request echoed, on `PORT` (8080).
    EchoServer {
        /// Port.
        port: u16,
    },
    /// registry.k8s.io/echoserver (nginx + lua): the request described in blocks, on 8080.
    K8sEchoServer {
        /// 1.10 and later print the newer layout.
        newer: bool,
    },
    /// nginx's welcome page on 80.
    Nginx {
        /// Version shown in `Server:` and error pages.
        version: String,
    },
    /// httpd's "It works!" on 80.
    Httpd,
    /// hashicorp/http-echo: `-text` on `-listen` (:5678).
    HttpEcho {
        /// What it answers.
        text: String,
        /// Port.
        port: u16,
        /// Status code (`-status-code`).
        status: u16,
    },
    /// gcr.io/google-samples/hello-app: "Hello, world!", its version and hostname on `PORT`.
    HelloApp {
        /// Port.
        port: u16,
        /// Version from the tag (`1.0` → `1.0.0`).
        version: String,
    },
    /// traefik/whoami: who answered and the request, on `--port` / `WHOAMI_PORT_NUMBER` (80).
    Whoami {
        /// Port.
        port: u16,
        /// `--name` / `WHOAMI_NAME`.
        name: Option<String>,
    },
    /// agnhost netexec: `/hostname`, `/echo?msg=`, `/clientip` on `--http-port` (8080).
    Netexec {
        /// Port.
        port: u16,
    },
    /// agnhost serve-hostname: the pod name on `--port` (9376).
    ServeHostname {
        /// Port.
        port: u16,
    },
    /// agnhost pause, or a shell image's program: runs, listens nowhere.
    Process {
        /// What it runs.
        steps: Vec<Step>,
    },
    /// redis: RESP on `--port` (6379).
    Redis {
        /// Port.
        port: u16,
    },
}

/// One step of a shell image's program.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Writes a line.
    Echo(String),
    /// Waits (None: forever).
    Sleep(Option<Duration>),
    /// Writes the time, as `date` does.
    Date,
    /// Runs the steps again and again.
    Forever(Vec<Step>),
    /// Ends with this exit code.
    Exit(i32),
}

/// Why a container of a tutorial image cannot start, as the runtime says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartFailure {
    /// The message.
    pub message: String,
    /// Exit code the container reports.
    pub exit_code: i32,
}

/// The repository of an image reference, without registry defaults, tag or digest:
/// `docker.io/library/nginx:1.27` → `nginx`.
pub fn repository(image: &str) -> (String, String) {
    let no_digest = image.split('@').next().unwrap_or(image);
    let (repo, tag) = match no_digest.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r, t),
        _ => (no_digest, "latest"),
    };
    let repo = repo
        .strip_prefix("docker.io/")
        .or_else(|| repo.strip_prefix("index.docker.io/"))
        .unwrap_or(repo);
    let repo = repo.strip_prefix("library/").unwrap_or(repo);
    let repo = repo
        .strip_prefix("k8s.gcr.io/")
        .map(|r| format!("registry.k8s.io/{r}"))
        .unwrap_or_else(|| repo.to_string());
    (repo, tag.to_string())
}

/// Whether the lab has this image as a built-in behaviour.
pub fn known(image: &str) -> bool {
    APP_IMAGES.contains(&repository(image).0.as_str())
}

fn arg_value<'a>(args: &'a [String], names: &[&str]) -> Option<&'a str> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        for n in names {
            if let Some(v) = a.strip_prefix(&format!("{n}=")) {
                return Some(v);
            }
            if a == n {
                return it.next().map(String::as_str);
            }
        }
    }
    None
}

fn port_of(s: &str) -> Option<u16> {
    s.rsplit(':').next()?.parse().ok()
}

fn env_port(spec: &ContainerSpec, key: &str, default: u16) -> Result<u16, StartFailure> {
    match spec.env.get(key) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| StartFailure {
            message: format!("{key}={v:?} is not a port number"),
            exit_code: 1,
        }),
    }
}

/// The app an image runs with this command, args and env; None for an image the lab does not
/// have.
pub fn configure(spec: &ContainerSpec) -> Option<Result<App, StartFailure>> {
    let (repo, tag) = repository(&spec.image);
    let argv: Vec<String> = spec.command.iter().chain(&spec.args).cloned().collect();
    let app = match repo.as_str() {
        "kicbase/echo-server" => env_port(spec, "PORT", 8080).map(|port| App::EchoServer { port }),
        "registry.k8s.io/echoserver" => {
            let newer = tag
                .split('.')
                .nth(1)
                .and_then(|m| m.parse::<u32>().ok())
                .is_some_and(|m| m >= 10);
            Ok(App::K8sEchoServer { newer })
        }
        "nginx" => Ok(App::Nginx {
            version: tag
                .split('-')
                .next()
                .filter(|t| t.chars().next().is_some_and(|c| c.is_ascii_digit()))
                .map(|t| {
                    if t.matches('.').count() >= 2 {
                        t.to_string()
                    } else {
                        format!("{t}.0")
                    }
                })
                .unwrap_or_else(|| "1.27.3".into()),
        }),
        "httpd" => Ok(App::Httpd),
        "hashicorp/http-echo" => http_echo(spec),
        "gcr.io/google-samples/hello-app" => env_port(spec, "PORT", 8080).map(|port| {
            let mut version = tag.clone();
            while version.matches('.').count() < 2 {
                version.push_str(".0");
            }
            App::HelloApp { port, version }
        }),
        "traefik/whoami" => {
            let default = env_port(spec, "WHOAMI_PORT_NUMBER", 80);
            default.and_then(|d| {
                let port = match arg_value(&spec.args, &["--port", "-port"]) {
                    Some(p) => p.parse().map_err(|_| StartFailure {
                        message: format!("invalid value {p:?} for flag -port: parse error"),
                        exit_code: 2,
                    })?,
                    None => d,
                };
                let name = arg_value(&spec.args, &["--name", "-name"])
                    .map(str::to_string)
                    .or_else(|| spec.env.get("WHOAMI_NAME").cloned());
                Ok(App::Whoami { port, name })
            })
        }
        "registry.k8s.io/e2e-test-images/agnhost" => agnhost(&argv),
        "redis" => {
            let port = arg_value(&argv, &["--port"]).and_then(|p| p.parse().ok());
            Ok(App::Redis {
                port: port.unwrap_or(6379),
            })
        }
        "busybox" | "alpine" | "ubuntu" => {
            let default_shell = if repo == "ubuntu" { "/bin/bash" } else { "sh" };
            let argv = if argv.is_empty() {
                vec![default_shell.to_string()]
            } else {
                argv
            };
            shell_program(&argv, spec).map(|steps| App::Process { steps })
        }
        _ => return None,
    };
    Some(app)
}

fn http_echo(spec: &ContainerSpec) -> Result<App, StartFailure> {
    let argv: Vec<String> = spec.command.iter().chain(&spec.args).cloned().collect();
    let text = arg_value(&argv, &["-text", "--text"])
        .map(str::to_string)
        .or_else(|| spec.env.get("ECHO_TEXT").cloned());
    let Some(text) = text else {
        return Err(StartFailure {
            message: "Missing -text option!".into(),
            exit_code: 127,
        });
    };
    let port = match arg_value(&argv, &["-listen", "--listen"]) {
        Some(l) => port_of(l).ok_or_else(|| StartFailure {
            message: format!(
                "[ERR] Error listening: listen tcp: address {l}: missing port in address"
            ),
            exit_code: 1,
        })?,
        None => 5678,
    };
    let status = arg_value(&argv, &["-status-code", "--status-code"])
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    Ok(App::HttpEcho { text, port, status })
}

fn agnhost(argv: &[String]) -> Result<App, StartFailure> {
    let sub = argv.first().map(String::as_str).unwrap_or_default();
    let rest = argv.get(1..).unwrap_or_default();
    match sub {
        "netexec" => {
            let port = arg_value(rest, &["--http-port", "-http-port"])
                .map(|p| {
                    p.parse().map_err(|_| StartFailure {
                        message: format!("Error: invalid argument {p:?} for \"--http-port\" flag"),
                        exit_code: 1,
                    })
                })
                .transpose()?
                .unwrap_or(8080);
            Ok(App::Netexec { port })
        }
        "serve-hostname" => {
            let port = arg_value(rest, &["--port", "-port"])
                .and_then(|p| p.parse().ok())
                .unwrap_or(9376);
            Ok(App::ServeHostname { port })
        }
        "pause" => Ok(App::Process {
            steps: vec![Step::Sleep(None)],
        }),
        "" => Err(StartFailure {
            message: "agnhost needs a subcommand; the lab runs netexec, serve-hostname and pause"
                .into(),
            exit_code: 1,
        }),
        other => Err(StartFailure {
            message: format!(
                "Error: unknown command {other:?} for \"agnhost\" (the lab runs netexec, serve-hostname and pause)"
            ),
            exit_code: 1,
        }),
    }
}

fn expand(word: &str, env: &BTreeMap<String, String>, hostname: &str) -> String {
    let mut out = word
        .replace("$(hostname)", hostname)
        .replace("`hostname`", hostname);
    for (k, v) in env.iter().rev() {
        out = out
            .replace(&format!("${{{k}}}"), v)
            .replace(&format!("${k}"), v);
    }
    out = out
        .replace("$HOSTNAME", hostname)
        .replace("${HOSTNAME}", hostname);
    out
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    let mut out = String::new();
    let mut quote: Option<char> = None;
    for c in s.chars() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            _ => out.push(c),
        }
    }
    out
}

fn parse_sleep(arg: &str) -> Result<Option<Duration>, String> {
    let a = arg.trim();
    if a == "infinity" || a == "inf" {
        return Ok(None);
    }
    let (n, mult) = match a.char_indices().last() {
        Some((i, 's')) => (&a[..i], 1.0),
        Some((i, 'm')) => (&a[..i], 60.0),
        Some((i, 'h')) => (&a[..i], 3600.0),
        Some((i, 'd')) => (&a[..i], 86400.0),
        _ => (a, 1.0),
    };
    n.parse::<f64>()
        .ok()
        .filter(|v| *v >= 0.0)
        .map(|v| Some(Duration::from_secs_f64((v * mult).min(1e9))))
        .ok_or_else(|| format!("sleep: invalid number '{a}'"))
}

/// Splits a script into statements on `;`, `&&` and newlines, outside quotes.
fn statements(script: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let chars: Vec<char> = script.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match (quote, c) {
            (None, '"' | '\'') => {
                quote = Some(c);
                cur.push(c);
            }
            (Some(q), c) if c == q => {
                quote = None;
                cur.push(c);
            }
            (None, ';' | '\n') => out.push(std::mem::take(&mut cur)),
            (None, '&') if chars.get(i + 1) == Some(&'&') => {
                out.push(std::mem::take(&mut cur));
                i += 1;
            }
            _ => cur.push(c),
        }
        i += 1;
    }
    out.push(cur);
    out.into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Compiles a shell script's common tutorial forms: `echo`, `sleep`, `while true; do …; done`,
/// `exit N`, `true`, `date`, `hostname`; other commands are reported as not found, as a shell
/// without that program would.
fn compile(stmts: &[String], env: &BTreeMap<String, String>, host: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut i = 0;
    while i < stmts.len() {
        let s = stmts[i].as_str();
        let (head, rest) = s.split_once(char::is_whitespace).unwrap_or((s, ""));
        match head {
            "while" | "until" => {
                // `while true; do A; B; done` (the condition is taken as true).
                let mut body = Vec::new();
                let mut j = i + 1;
                let mut depth = 1;
                while j < stmts.len() {
                    let t = stmts[j].as_str();
                    if t.starts_with("while ") || t.starts_with("for ") {
                        depth += 1;
                    }
                    if t == "done" || t.starts_with("done ") {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    body.push(t.strip_prefix("do ").unwrap_or(t).to_string());
                    j += 1;
                }
                let inner = compile(&body, env, host);
                steps.push(Step::Forever(inner));
                i = j + 1;
                continue;
            }
            "do" => steps.extend(compile(&[rest.to_string()], env, host)),
            "echo" | "printf" => {
                let text = expand(&unquote(rest), env, host);
                let text = if head == "printf" {
                    text.trim_end_matches("\\n").to_string()
                } else {
                    text.strip_prefix("-n ").map(str::to_string).unwrap_or(text)
                };
                steps.push(Step::Echo(text));
            }
            "sleep" => match parse_sleep(rest) {
                Ok(d) => steps.push(Step::Sleep(d)),
                Err(e) => steps.push(Step::Echo(e)),
            },
            "exit" => steps.push(Step::Exit(rest.trim().parse().unwrap_or(0))),
            "true" | ":" | "trap" | "set" | "export" | "cd" => {}
            "date" => steps.push(Step::Date),
            "hostname" => steps.push(Step::Echo(host.to_string())),
            "tail" if rest.contains("-f") => steps.push(Step::Sleep(None)),
            "env" | "printenv" => {
                for (k, v) in env {
                    steps.push(Step::Echo(format!("{k}={v}")));
                }
            }
            other => steps.push(Step::Echo(format!("sh: {other}: not found"))),
        }
        i += 1;
    }
    steps
}

fn shell_program(argv: &[String], spec: &ContainerSpec) -> Result<Vec<Step>, StartFailure> {
    let prog = argv[0].rsplit('/').next().unwrap_or_default();
    let host = spec.env.get("HOSTNAME").cloned().unwrap_or_default();
    match prog {
        "sh" | "bash" | "ash" => match argv.get(1).map(String::as_str) {
            Some("-c") => {
                let script = argv.get(2).cloned().unwrap_or_default();
                Ok(compile(&statements(&script), &spec.env, &host))
            }
            // A shell without a script and without a terminal reads EOF and exits.
            None => Ok(Vec::new()),
            Some(_) => Ok(vec![
                Step::Echo(format!(
                    "{prog}: can't open '{}': No such file or directory",
                    argv[1]
                )),
                Step::Exit(2),
            ]),
        },
        "sleep" => {
            let arg = argv.get(1).map(String::as_str).unwrap_or_default();
            match parse_sleep(arg) {
                Ok(d) => Ok(vec![Step::Sleep(d)]),
                Err(e) => Ok(vec![Step::Echo(e), Step::Exit(1)]),
            }
        }
        "echo" => Ok(vec![Step::Echo(expand(
            &argv[1..].join(" "),
            &spec.env,
            &host,
        ))]),
        "tail" if argv.iter().any(|a| a == "-f") => Ok(vec![Step::Sleep(None)]),
        "true" => Ok(Vec::new()),
        "env" | "printenv" => Ok(spec
            .env
            .iter()
            .map(|(k, v)| Step::Echo(format!("{k}={v}")))
            .collect()),
        other => Err(StartFailure {
            message: format!(
                "failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: exec: \"{other}\": executable file not found in $PATH: unknown"
            ),
            exit_code: 128,
        }),
    }
}

impl App {
    /// The TCP ports the app listens on.
    pub fn ports(&self) -> Vec<u16> {
        match self {
            App::EchoServer { port }
            | App::HttpEcho { port, .. }
            | App::HelloApp { port, .. }
            | App::Whoami { port, .. }
            | App::Netexec { port }
            | App::ServeHostname { port }
            | App::Redis { port } => vec![*port],
            App::K8sEchoServer { .. } => vec![8080],
            App::Nginx { .. } | App::Httpd => vec![80],
            App::Process { .. } => Vec::new(),
        }
    }
}

/// A started app: its listeners, and its main process when it can end by itself.
pub struct Started {
    /// The listeners (stop/kill them like a lab image's).
    pub running: Running,
    /// Resolves with the exit code when the main process ends.
    pub main: Option<Pin<Box<dyn std::future::Future<Output = i32> + Send>>>,
}

struct Ctx {
    app: App,
    id: Identity,
    log: LogSink,
    redis: Mutex<HashMap<String, Vec<u8>>>,
}

fn go_log_time() -> String {
    jiff::Zoned::now()
        .with_time_zone(jiff::tz::TimeZone::UTC)
        .strftime("%Y/%m/%d %H:%M:%S")
        .to_string()
}

fn clf_time() -> String {
    jiff::Zoned::now()
        .with_time_zone(jiff::tz::TimeZone::UTC)
        .strftime("%d/%b/%Y:%H:%M:%S +0000")
        .to_string()
}

fn startup_lines(app: &App, log: &LogSink) {
    let t = go_log_time;
    match app {
        App::EchoServer { port } => log.line(format!("Echo server listening on port {port}.")),
        App::K8sEchoServer { .. } => {
            log.line("Generating self-signed cert");
            log.line("Starting nginx");
        }
        App::Nginx { version } => {
            for l in [
                "/docker-entrypoint.sh: /docker-entrypoint.d/ is not empty, will attempt to perform configuration",
                "/docker-entrypoint.sh: Looking for shell scripts in /docker-entrypoint.d/",
                "/docker-entrypoint.sh: Launching /docker-entrypoint.d/10-listen-on-ipv6-by-default.sh",
                "/docker-entrypoint.sh: Configuration complete; ready for start up",
            ] {
                log.line(l);
            }
            log.line(format!("{} [notice] 1#1: nginx/{version}", t()));
            log.line(format!("{} [notice] 1#1: start worker processes", t()));
        }
        App::Httpd => {
            let now = jiff::Zoned::now()
                .with_time_zone(jiff::tz::TimeZone::UTC)
                .strftime("%a %b %d %H:%M:%S.%6f %Y")
                .to_string();
            log.line("AH00558: httpd: Could not reliably determine the server's fully qualified domain name, using 127.0.0.1. Set the 'ServerName' directive globally to suppress this message");
            log.line(format!("[{now}] [mpm_event:notice] [pid 1:tid 1] AH00489: Apache/2.4.62 (Unix) configured -- resuming normal operations"));
            log.line(format!(
                "[{now}] [core:notice] [pid 1:tid 1] AH00094: Command line: 'httpd -D FOREGROUND'"
            ));
        }
        App::HttpEcho { port, .. } => {
            log.line(format!("{} [INFO] server is listening on :{port}", t()))
        }
        App::HelloApp { port, .. } => log.line(format!("{} Server listening on port {port}", t())),
        App::Whoami { port, .. } => log.line(format!("{} Starting up on port {port}", t())),
        App::Netexec { port } => log.line(format!("Started HTTP server on port {port}")),
        App::ServeHostname { port } => log.line(format!("Serving on port {port}.")),
        App::Redis { port } => {
            let now = jiff::Zoned::now()
                .with_time_zone(jiff::tz::TimeZone::UTC)
                .strftime("%d %b %Y %H:%M:%S%.3f")
                .to_string();
            log.line(format!(
                "1:C {now} * oO0OoO0OoO0Oo Redis is starting oO0OoO0OoO0Oo"
            ));
            log.line(format!("1:C {now} * Redis version=7.4.1, bits=64, commit=00000000, modified=0, pid=1, just started"));
            log.line(format!("1:M {now} * Running mode=standalone, port={port}."));
            log.line(format!("1:M {now} * Server initialized"));
            log.line(format!("1:M {now} * Ready to accept connections tcp"));
        }
        App::Process { .. } => {}
    }
}

/// Starts `app` on `addrs` (its own ports, whatever the manifest's containerPort says, as a
/// real process binds what it binds), writing its output to `log`; its connections count in
/// `life` and end when `life.kill` fires.
pub async fn start(
    place: &Place,
    app: App,
    id: Identity,
    log: LogSink,
    addrs: &[IpAddr],
    life: &PodLife,
) -> std::io::Result<Started> {
    let accept = CancellationToken::new();
    let conns = life.kill.child_token();
    let mut bound = Vec::new();
    let ports = app.ports();
    let ctx = Arc::new(Ctx {
        app: app.clone(),
        id,
        log: log.clone(),
        redis: Mutex::new(HashMap::new()),
    });
    for &ip in addrs {
        for &port in &ports {
            let (listener, actual) = crate::images::bind(place, ip, port)?;
            bound.push((ip, port, actual));
            let cancel = accept.clone();
            let conns = conns.clone();
            let ctx = ctx.clone();
            let life = life.clone();
            tokio::spawn(async move {
                loop {
                    let conn = tokio::select! {
                        c = listener.accept() => c,
                        _ = cancel.cancelled() => break,
                    };
                    let Ok((tcp, peer)) = conn else { continue };
                    let _ = tcp.set_nodelay(true);
                    let ctx = ctx.clone();
                    let conns = conns.clone();
                    let open = life.open_guard();
                    tokio::spawn(async move {
                        let _open = open;
                        tokio::select! {
                            _ = serve(ctx, tcp, peer) => {}
                            _ = conns.cancelled() => {}
                        }
                    });
                }
            });
        }
    }
    startup_lines(&app, &log);
    let main: Option<Pin<Box<dyn std::future::Future<Output = i32> + Send>>> = match app {
        App::Process { steps } => {
            let log = log.clone();
            Some(Box::pin(async move {
                run_steps(&steps, &log).await.unwrap_or(0)
            }))
        }
        _ => None,
    };
    Ok(Started {
        running: Running::from_parts(accept, conns, bound),
        main,
    })
}

/// Runs a shell program; Some(code) when it exits early.
fn run_steps<'a>(
    steps: &'a [Step],
    log: &'a LogSink,
) -> Pin<Box<dyn std::future::Future<Output = Option<i32>> + Send + 'a>> {
    Box::pin(async move {
        for s in steps {
            match s {
                Step::Date => log.line(
                    jiff::Zoned::now()
                        .with_time_zone(jiff::tz::TimeZone::UTC)
                        .strftime("%a %b %e %H:%M:%S UTC %Y")
                        .to_string(),
                ),
                Step::Echo(t) => log.line(t.clone()),
                Step::Sleep(Some(d)) => tokio::time::sleep(*d).await,
                Step::Sleep(None) => std::future::pending::<()>().await,
                Step::Exit(c) => return Some(*c),
                Step::Forever(body) => {
                    if body.iter().all(|b| matches!(b, Step::Echo(_) | Step::Date)) {
                        // A loop that never waits would spin; a real one would flood the log.
                        // Pace it at one round a second.
                        loop {
                            if let Some(c) = run_steps(body, log).await {
                                return Some(c);
                            }
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                    loop {
                        if let Some(c) = run_steps(body, log).await {
                            return Some(c);
                        }
                        tokio::task::yield_now().await;
                    }
                }
            }
        }
        None
    })
}

async fn serve(ctx: Arc<Ctx>, tcp: TcpStream, peer: SocketAddr) {
    if let App::Redis { .. } = ctx.app {
        return serve_redis(ctx, tcp).await;
    }
    let svc = service_fn(move |req: Request<Incoming>| {
        let ctx = ctx.clone();
        async move { Ok::<_, std::convert::Infallible>(answer(&ctx, req, peer).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(tcp), svc)
        .await;
}

type HttpBody = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

fn reply(code: u16, ct: &str, body: impl Into<Bytes>) -> Response<HttpBody> {
    let mut r = Response::new(Full::new(body.into()).map_err(|n| match n {}).boxed());
    *r.status_mut() = hyper::StatusCode::from_u16(code).unwrap_or(hyper::StatusCode::OK);
    if let Ok(v) = hyper::header::HeaderValue::from_str(ct) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

/// `user-agent` → `User-Agent`, as Go's net/http shows header names.
fn canonical(name: &str) -> String {
    name.split('-')
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + &c.as_str().to_ascii_lowercase())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("-")
}

fn proto(v: hyper::Version) -> &'static str {
    match v {
        hyper::Version::HTTP_10 => "HTTP/1.0",
        hyper::Version::HTTP_2 => "HTTP/2.0",
        _ => "HTTP/1.1",
    }
}

const NGINX_WELCOME: &str = "<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to nginx!</title>\n<style>\nhtml { color-scheme: light dark; }\nbody { width: 35em; margin: 0 auto;\nfont-family: Tahoma, Verdana, Arial, sans-serif; }\n</style>\n</head>\n<body>\n<h1>Welcome to nginx!</h1>\n<p>If you see this page, the nginx web server is successfully installed and\nworking. Further configuration is required.</p>\n\n<p>For online documentation and support please refer to\n<a href=\"http://nginx.org/\">nginx.org</a>.<br/>\nCommercial support is available at\n<a href=\"http://nginx.com/\">nginx.com</a>.</p>\n\n<p><em>Thank you for using nginx.</em></p>\n</body>\n</html>\n";

const HTTPD_WORKS: &str = "<html><body><h1>It works!</h1></body></html>\n";

async fn answer(ctx: &Ctx, req: Request<Incoming>, peer: SocketAddr) -> Response<HttpBody> {
    let method = req.method().to_string();
    let target = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let version = proto(req.version());
    let host = req
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let ua = req
        .headers()
        .get(hyper::header::USER_AGENT)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("-")
        .to_string();
    let mut headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .filter(|(k, _)| *k != hyper::header::HOST)
        .map(|(k, v)| {
            (
                canonical(k.as_str()),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let pod = ctx.id.pod.clone();
    let log = &ctx.log;
    let access = |code: u16, len: usize| {
        format!(
            "{} - - [{}] \"{method} {target} {version}\" {code} {len} \"-\" \"{ua}\"",
            peer.ip(),
            clf_time()
        )
    };
    match &ctx.app {
        App::EchoServer { .. } => {
            log.line(format!("{peer} | {method} {target}"));
            headers.sort();
            let mut out =
                format!("Request served by {pod}\n\n{method} {target} {version}\n\nHost: {host}\n");
            for (k, v) in &headers {
                out.push_str(&format!("{k}: {v}\n"));
            }
            if !body.is_empty() {
                out.push('\n');
                out.push_str(&String::from_utf8_lossy(&body));
            }
            reply(200, "text/plain", out)
        }
        App::K8sEchoServer { newer } => {
            let mut hs: Vec<(String, String)> = headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .chain(std::iter::once(("host".to_string(), host.clone())))
                .collect();
            hs.sort();
            let header_lines: String = hs.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
            let body_text = if body.is_empty() {
                "-no body in request-".to_string()
            } else {
                String::from_utf8_lossy(&body).into_owned()
            };
            let uri = format!("http://{host}:8080{target}");
            let out = if *newer {
                let tab = |s: &str| s.lines().map(|l| format!("\t{l}\n")).collect::<String>();
                format!(
                    "\n\nHostname: {pod}\n\nPod Information:\n\t-no pod information available-\n\nServer values:\n\tserver_version=nginx: 1.13.3 - lua: 10008\n\nRequest Information:\n\tclient_address={}\n\tmethod={method}\n\treal path={path}\n\tquery={query}\n\trequest_version=1.1\n\trequest_scheme=http\n\trequest_uri={uri}\n\nRequest Headers:\n{}\nRequest Body:\n\t{body_text}\n\n",
                    peer.ip(),
                    tab(&header_lines)
                )
            } else {
                let q = if query.is_empty() {
                    "nil".to_string()
                } else {
                    query.clone()
                };
                format!(
                    "CLIENT VALUES:\nclient_address={}\ncommand={method}\nreal path={path}\nquery={q}\nrequest_version=1.1\nrequest_uri={uri}\n\nSERVER VALUES:\nserver_version=nginx: 1.10.0 - lua: 10001\n\nHEADERS RECEIVED:\n{header_lines}BODY:\n{body_text}",
                    peer.ip()
                )
            };
            log.line(access(200, out.len()));
            reply(200, "text/plain", out)
        }
        App::Nginx { version } => {
            let (code, page) = if path == "/" || path == "/index.html" {
                (200, NGINX_WELCOME.to_string())
            } else {
                (
                    404,
                    format!(
                        "<html>\n<head><title>404 Not Found</title></head>\n<body>\n<center><h1>404 Not Found</h1></center>\n<hr><center>nginx/{version}</center>\n</body>\n</html>\n"
                    ),
                )
            };
            log.line(format!("{} \"-\"", access(code, page.len())));
            let mut r = reply(code, "text/html", page);
            if let Ok(v) = hyper::header::HeaderValue::from_str(&format!("nginx/{version}")) {
                r.headers_mut().insert(hyper::header::SERVER, v);
            }
            r
        }
        App::Httpd => {
            let (code, page) = if path == "/" || path == "/index.html" {
                (200, HTTPD_WORKS.to_string())
            } else {
                (
                    404,
                    "<!DOCTYPE HTML PUBLIC \"-//IETF//DTD HTML 2.0//EN\">\n<html><head>\n<title>404 Not Found</title>\n</head><body>\n<h1>Not Found</h1>\n<p>The requested URL was not found on this server.</p>\n</body></html>\n".to_string(),
                )
            };
            log.line(format!(
                "{} - - [{}] \"{method} {target} {version}\" {code} {}",
                peer.ip(),
                clf_time(),
                page.len()
            ));
            let mut r = reply(code, "text/html", page);
            r.headers_mut().insert(
                hyper::header::SERVER,
                hyper::header::HeaderValue::from_static("Apache/2.4.62 (Unix)"),
            );
            r
        }
        App::HttpEcho { text, port, status } => {
            let (code, out) = if path == "/health" {
                (200, "{\"status\":\"ok\"}\n".to_string())
            } else {
                (*status, format!("{text}\n"))
            };
            log.line(format!(
                "{} localhost:{port} {peer} \"{method} {target} {version}\" {code} {} \"{ua}\" 42.1µs",
                go_log_time(),
                out.len()
            ));
            reply(code, "text/plain; charset=utf-8", out)
        }
        App::HelloApp { version, .. } => {
            log.line(format!("{} Serving request: {path}", go_log_time()));
            reply(
                200,
                "text/plain; charset=utf-8",
                format!("Hello, world!\nVersion: {version}\nHostname: {pod}\n"),
            )
        }
        App::Whoami { name, .. } => {
            if path == "/health" {
                return reply(200, "text/plain", "");
            }
            let mut out = String::new();
            if let Some(n) = name {
                out.push_str(&format!("Name: {n}\n"));
            }
            out.push_str(&format!("Hostname: {pod}\nIP: 127.0.0.1\nIP: {}\nRemoteAddr: {peer}\n{method} {target} {version}\nHost: {host}\n", ctx.id.pod_ip));
            for (k, v) in &headers {
                out.push_str(&format!("{k}: {v}\n"));
            }
            out.push('\n');
            reply(200, "text/plain; charset=utf-8", out)
        }
        App::Netexec { .. } => {
            log.line(format!("GET {path}"));
            let param = |k: &str| {
                query
                    .split('&')
                    .find_map(|p| p.strip_prefix(&format!("{k}=")))
                    .map(crate::api::percent_decode)
                    .unwrap_or_default()
            };
            match path.as_str() {
                "/hostname" => reply(200, "text/plain; charset=utf-8", pod),
                "/echo" => reply(200, "text/plain; charset=utf-8", param("msg")),
                "/clientip" => reply(200, "text/plain; charset=utf-8", peer.to_string()),
                "/healthz" => reply(200, "text/plain; charset=utf-8", ""),
                "/" => reply(
                    200,
                    "text/plain; charset=utf-8",
                    format!(
                        "NOW: {}",
                        jiff::Zoned::now()
                            .with_time_zone(jiff::tz::TimeZone::UTC)
                            .strftime("%Y-%m-%d %H:%M:%S%.f +0000 UTC")
                    ),
                ),
                _ => reply(404, "text/plain; charset=utf-8", "404 page not found\n"),
            }
        }
        App::ServeHostname { .. } => reply(200, "text/plain; charset=utf-8", pod),
        App::Redis { .. } | App::Process { .. } => reply(500, "text/plain", ""),
    }
}

/// Reads one command: a RESP array of bulk strings, or an inline command line.
async fn read_command(rd: &mut BufReader<TcpStream>) -> Option<Vec<Vec<u8>>> {
    let mut line = Vec::new();
    if rd.read_until(b'\n', &mut line).await.ok()? == 0 {
        return None;
    }
    let text = String::from_utf8_lossy(&line).trim_end().to_string();
    let Some(n) = text.strip_prefix('*') else {
        return Some(
            text.split_whitespace()
                .map(|w| w.as_bytes().to_vec())
                .collect(),
        );
    };
    let n: usize = n.parse().ok()?;
    let mut args = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        let mut len = Vec::new();
        rd.read_until(b'\n', &mut len).await.ok()?;
        let l: usize = String::from_utf8_lossy(&len)
            .trim()
            .strip_prefix('$')?
            .parse()
            .ok()?;
        if l > 64 << 20 {
            return None;
        }
        let mut buf = vec![0u8; l + 2];
        rd.read_exact(&mut buf).await.ok()?;
        buf.truncate(l);
        args.push(buf);
    }
    Some(args)
}

fn bulk(v: &[u8]) -> Vec<u8> {
    let mut out = format!("${}\r\n", v.len()).into_bytes();
    out.extend_from_slice(v);
    out.extend_from_slice(b"\r\n");
    out
}

/// Answers one Redis command against the app's keyspace.
fn redis_answer(ctx: &Ctx, args: &[Vec<u8>]) -> (Vec<u8>, bool) {
    let Some(cmd) = args.first() else {
        return (Vec::new(), false);
    };
    let name = String::from_utf8_lossy(cmd).to_ascii_uppercase();
    let mut db = ctx.redis.lock().unwrap_or_else(|e| e.into_inner());
    let key = |i: usize| String::from_utf8_lossy(&args[i]).into_owned();
    let wrong = |n: &str| {
        format!(
            "-ERR wrong number of arguments for '{}' command\r\n",
            n.to_ascii_lowercase()
        )
        .into_bytes()
    };
    let out = match name.as_str() {
        "PING" if args.len() == 1 => b"+PONG\r\n".to_vec(),
        "PING" if args.len() == 2 => bulk(&args[1]),
        "ECHO" if args.len() == 2 => bulk(&args[1]),
        "SET" if args.len() >= 3 => {
            db.insert(key(1), args[2].clone());
            b"+OK\r\n".to_vec()
        }
        "GET" if args.len() == 2 => match db.get(&key(1)) {
            Some(v) => bulk(v),
            None => b"$-1\r\n".to_vec(),
        },
        "DEL" if args.len() >= 2 => {
            let n = (1..args.len())
                .filter(|i| db.remove(&key(*i)).is_some())
                .count();
            format!(":{n}\r\n").into_bytes()
        }
        "EXISTS" if args.len() >= 2 => {
            let n = (1..args.len())
                .filter(|i| db.contains_key(&key(*i)))
                .count();
            format!(":{n}\r\n").into_bytes()
        }
        "INCR" if args.len() == 2 => {
            let cur = db
                .get(&key(1))
                .map(|v| String::from_utf8_lossy(v).parse::<i64>())
                .unwrap_or(Ok(0));
            match cur {
                Ok(n) => {
                    let n = n + 1;
                    db.insert(key(1), n.to_string().into_bytes());
                    format!(":{n}\r\n").into_bytes()
                }
                Err(_) => b"-ERR value is not an integer or out of range\r\n".to_vec(),
            }
        }
        "DBSIZE" => format!(":{}\r\n", db.len()).into_bytes(),
        "KEYS" => {
            let mut out = format!("*{}\r\n", db.len()).into_bytes();
            for k in db.keys() {
                out.extend(bulk(k.as_bytes()));
            }
            out
        }
        "COMMAND" => b"*0\r\n".to_vec(),
        "INFO" => bulk(b"# Server\r\nredis_version:7.4.1\r\nredis_mode:standalone\r\n"),
        "QUIT" => return (b"+OK\r\n".to_vec(), true),
        "PING" | "ECHO" | "SET" | "GET" | "DEL" | "EXISTS" | "INCR" => wrong(&name),
        _ => {
            let rest: String = args[1..]
                .iter()
                .map(|a| format!("'{}' ", String::from_utf8_lossy(a)))
                .collect();
            format!(
                "-ERR unknown command '{}', with args beginning with: {rest}\r\n",
                String::from_utf8_lossy(cmd)
            )
            .into_bytes()
        }
    };
    (out, false)
}

async fn serve_redis(ctx: Arc<Ctx>, tcp: TcpStream) {
    let mut rd = BufReader::new(tcp);
    while let Some(args) = read_command(&mut rd).await {
        if args.is_empty() {
            continue;
        }
        let (out, quit) = redis_answer(&ctx, &args);
        if rd.get_mut().write_all(&out).await.is_err() || quit {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(image: &str, command: &[&str], args: &[&str], env: &[(&str, &str)]) -> ContainerSpec {
        ContainerSpec {
            image: image.into(),
            command: command.iter().map(|s| s.to_string()).collect(),
            args: args.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn app(s: ContainerSpec) -> App {
        configure(&s).expect("known image").expect("configures")
    }

    #[test]
    fn image_references_reduce_to_repositories() {
        assert_eq!(repository("nginx").0, "nginx");
        assert_eq!(repository("docker.io/library/nginx:1.27").0, "nginx");
        assert_eq!(
            repository("k8s.gcr.io/echoserver:1.4"),
            ("registry.k8s.io/echoserver".into(), "1.4".into())
        );
        assert_eq!(repository("localhost:5000/app").0, "localhost:5000/app");
        assert!(known("kicbase/echo-server:1.0"));
        assert!(!known("quay.io/unknown/thing"));
    }

    #[test]
    fn args_and_env_configure_the_apps() {
        assert_eq!(
            app(spec("kicbase/echo-server:1.0", &[], &[], &[])),
            App::EchoServer { port: 8080 }
        );
        assert_eq!(
            app(spec(
                "kicbase/echo-server:1.0",
                &[],
                &[],
                &[("PORT", "9090")]
            )),
            App::EchoServer { port: 9090 }
        );
        assert_eq!(
            app(spec(
                "hashicorp/http-echo",
                &[],
                &["-text=apple", "-listen=:8080"],
                &[]
            )),
            App::HttpEcho {
                text: "apple".into(),
                port: 8080,
                status: 200
            }
        );
        let missing = configure(&spec("hashicorp/http-echo:1.0", &[], &[], &[]))
            .expect("known")
            .expect_err("no text");
        assert_eq!(missing.exit_code, 127);
        assert_eq!(
            app(spec("gcr.io/google-samples/hello-app:2.0", &[], &[], &[])),
            App::HelloApp {
                port: 8080,
                version: "2.0.0".into()
            }
        );
        assert_eq!(
            app(spec("traefik/whoami", &[], &["--port", "8081"], &[])),
            App::Whoami {
                port: 8081,
                name: None
            }
        );
        assert_eq!(
            app(spec(
                "registry.k8s.io/e2e-test-images/agnhost:2.39",
                &[],
                &["netexec", "--http-port=8080", "--udp-port=8081"],
                &[]
            )),
            App::Netexec { port: 8080 }
        );
        assert_eq!(
            app(spec(
                "registry.k8s.io/e2e-test-images/agnhost:2.39",
                &[],
                &["serve-hostname"],
                &[]
            )),
            App::ServeHostname { port: 9376 }
        );
        assert_eq!(
            app(spec("nginx:1.25", &[], &[], &[])),
            App::Nginx {
                version: "1.25.0".into()
            }
        );
        assert_eq!(
            app(spec("redis:7", &[], &[], &[])),
            App::Redis { port: 6379 }
        );
    }

    #[test]
    fn shell_images_run_sleep_and_simple_scripts() {
        assert_eq!(
            app(spec("busybox", &["sleep", "3600"], &[], &[])),
            App::Process {
                steps: vec![Step::Sleep(Some(Duration::from_secs(3600)))]
            }
        );
        assert_eq!(
            app(spec("busybox", &[], &[], &[])),
            App::Process { steps: vec![] },
            "a bare sh exits at once"
        );
        let App::Process { steps } = app(spec(
            "alpine",
            &["sh", "-c"],
            &["echo \"hello from $POD\"; while true; do date; sleep 5; done"],
            &[("POD", "p")],
        )) else {
            panic!("a process")
        };
        assert_eq!(steps[0], Step::Echo("hello from p".into()));
        assert!(matches!(&steps[1], Step::Forever(b) if b.len() == 2));
        let e = configure(&spec("ubuntu", &["nginx"], &[], &[]))
            .expect("known")
            .expect_err("no such program");
        assert!(e.message.contains("executable file not found"), "{e:?}");
    }

    #[test]
    fn redis_commands() {
        let ctx = Ctx {
            app: App::Redis { port: 6379 },
            id: Identity {
                pod: "r".into(),
                namespace: "default".into(),
                pod_ip: "127.0.0.1".parse().expect("ip"),
                node: "n".into(),
                container: "redis".into(),
            },
            log: crate::logs::LogBuf::new(),
            redis: Mutex::new(HashMap::new()),
        };
        let a = |parts: &[&str]| {
            let args: Vec<Vec<u8>> = parts.iter().map(|p| p.as_bytes().to_vec()).collect();
            String::from_utf8(redis_answer(&ctx, &args).0).expect("utf8")
        };
        assert_eq!(a(&["PING"]), "+PONG\r\n");
        assert_eq!(a(&["SET", "k", "v"]), "+OK\r\n");
        assert_eq!(a(&["GET", "k"]), "$1\r\nv\r\n");
        assert_eq!(a(&["GET", "nope"]), "$-1\r\n");
        assert_eq!(a(&["INCR", "n"]), ":1\r\n");
        assert_eq!(
            a(&["INCR", "k"]),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert!(
            a(&["FLY", "x"])
                .starts_with("-ERR unknown command 'FLY', with args beginning with: 'x'")
        );
    }
}
