//! `kubeway demo`: the newcomer's first minute. A lab with the sample app, the way to `web`
//! explained hop by hop, then opened with `kubeway forward`, the page fetched once, the way kept
//! open until Ctrl-C.

use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use kubeway_core::target::{PortSpec, Target, TargetKind};
use kubeway_kube::{ConnectOptions, connect};
use serde_json::json;

use crate::cli::{DemoArgs, Output};
use crate::lab::{describe, shutdown_signal, start};

/// `GET /` on `addr`: the status and the page.
pub(crate) async fn fetch(addr: std::net::SocketAddr) -> Result<(u16, String)> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to the local end of the way at {addr}"))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .context("HTTP handshake through the way")?;
    tokio::spawn(conn);
    let req = http::Request::get("/")
        .header(http::header::HOST, addr.to_string())
        .header(http::header::USER_AGENT, "kubeway-demo")
        .body(Empty::<Bytes>::new())?;
    let resp = send
        .send_request(req)
        .await
        .context("sending the request through the way")?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .context("reading the page")?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Writes the picture into a private folder (0700), through a new file (0600) renamed into
/// place, so the path never follows a link someone planted.
/// Writes the demo's picture in the state directory (a private folder, the file replaced
/// through a new temporary file, never through a link).
fn write_picture(path: &std::path::Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        kubeway_host::files::create_private_dir_all(dir)?;
    }
    kubeway_host::files::replace(path, text.as_bytes())?;
    Ok(())
}

/// Runs the demo.
pub async fn run(args: DemoArgs, output: Output) -> Result<()> {
    if args.tutorial {
        return crate::tutorial::run(args, output).await;
    }
    if args.lab.netns.is_some() {
        bail!(
            "the demo runs in loopback mode; for namespace mode start `sudo kubeway lab up --netns reachable` and run kubeway in the host namespace it names"
        );
    }
    let text = output == Output::Text;
    let stop = shutdown_signal();
    // A private folder (0700, random name) for the kubeconfig and the picture; removed with
    // everything in it when the demo ends.
    let dir = tempfile::Builder::new()
        .prefix("kubeway-demo-")
        .tempdir()
        .context("making a private temporary folder for the demo's kubeconfig")?;
    let kubeconfig = dir.path().join("kubeconfig");
    let lab = start(&args.lab, true).await?;
    let result = demo(&lab, &args, &kubeconfig, text, stop).await;
    lab.shutdown().await;
    if let Err(e) = dir.close() {
        eprintln!("warning: could not remove the demo's temporary folder: {e}");
    }
    result
}

async fn demo(
    lab: &kubeway_lab::Lab,
    args: &DemoArgs,
    kubeconfig: &std::path::Path,
    text: bool,
    stop: impl std::future::Future<Output = ()>,
) -> Result<()> {
    lab.write_kubeconfig(kubeconfig)?;
    if text {
        println!("kubeway demo: a stand-in cluster on loopback (no real cluster needed)");
        println!("  cluster:    {} at {}", describe(lab), lab.api_url());
        println!(
            "  kubeconfig: export KUBECONFIG={}   (kubectl works against it while the demo runs)",
            kubeconfig.display()
        );
        println!(
            "  sample app: deployment/web (2 HTTP pods) behind service/web (NodePort), service/echo (TCP), service/web-lb (LoadBalancer)"
        );
        println!("  waiting for the web pods to be ready…");
    }
    if !lab
        .wait_ready("default", "app=web", 2, Duration::from_secs(30))
        .await
    {
        bail!(
            "the sample app's web pods did not become ready within 30s (Kubernetes layer: see `kubectl get pods` with the kubeconfig above)"
        );
    }
    let opts = ConnectOptions {
        kubeconfig: Some(kubeconfig.to_path_buf()),
        namespace: Some("default".into()),
        ..Default::default()
    };
    // What kubeway sees: the environment, then the path to `web` hop by hop.
    let env = crate::env::report(&opts, Duration::from_millis(500)).await?;
    // The picture outlives the demo (its temporary folder does not): the state directory.
    let svg = kubeway_host::state::state_dir()
        .map(|d| d.join("demo").join("web.svg"))
        .unwrap_or_else(|_| kubeconfig.with_file_name("web.svg"));
    let explain_args = crate::cli::ExplainArgs {
        target: "svc/web".into(),
        via: crate::cli::Via::Any,
        svg: None,
        probe_timeout: Duration::from_millis(500),
    };
    let path = crate::explain::report(&opts, &explain_args).await?;
    if text {
        println!();
        println!(
            "kubeway env: {} — {}",
            env.detection.provider.display_name(),
            env.detection.strategy
        );
        println!();
        print!(
            "{}",
            kubeway_core::render::text(&path, std::io::stdout().is_terminal())
        );
        match write_picture(&svg, &kubeway_core::render::svg(&path)) {
            Ok(()) => println!("  (the same path as a picture: {})", svg.display()),
            Err(e) => println!(
                "  (no picture of the path: writing {}: {e:#})",
                svg.display()
            ),
        }
        println!();
    }
    let cluster = connect(&opts).await?;
    let target = Target::parse("svc/web", TargetKind::Service)?;
    let spec: PortSpec = format!("{}:80", args.port).parse()?;
    let fwd = crate::forward::open_for_demo(&cluster, &target, &spec)
        .await
        .with_context(|| {
            format!(
                "opening the way to web on 127.0.0.1:{} (is the port in use? try --port 0)",
                args.port
            )
        })?;
    let local = fwd.locals[0];
    let (status, page) = fetch(local).await?;
    if text {
        println!(
            "  the way:    you → 127.0.0.1:{} → kubeway forward (port-forward through the API server, spread over the ready pods) → svc/web:80",
            local.port()
        );
        println!();
        println!("GET http://{local}/ → {status}");
        for line in page.lines() {
            println!("  │ {line}");
        }
        println!();
    } else {
        println!(
            "{}",
            json!({"event": "fetched", "url": format!("http://{local}/"), "status": status, "body": page, "environment": env.detection.provider.as_str(), "verdict": path.verdict.health})
        );
    }
    if !args.once {
        if text {
            println!(
                "Forwarding from 127.0.0.1:{} -> svc/web:80   (open http://{local}/ in a browser; Ctrl-C stops the demo)",
                local.port()
            );
        } else {
            println!(
                "{}",
                json!({"event": "forwarding", "local": local.to_string(), "target": "svc/web", "port": 80})
            );
        }
        stop.await;
    }
    let stats = fwd.stats.clone();
    fwd.stop().await;
    if text && !args.once {
        println!(
            "\nstopped: {} connection(s), {} bytes up, {} bytes down; the lab is gone and nothing is left listening",
            stats.accepted.load(Ordering::Relaxed),
            stats.bytes_up.load(Ordering::Relaxed),
            stats.bytes_down.load(Ordering::Relaxed)
        );
    }
    if !(200..300).contains(&status) {
        bail!("web answered {status} through the way");
    }
    Ok(())
}
