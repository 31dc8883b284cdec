//! `kubeway demo`: the newcomer's first minute. A lab with the sample app, the way to `web`
//! opened through a port-forward, the page fetched once, the way kept open until Ctrl-C.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use kubeway_core::target::PortRef;
use kubeway_kube::{ConnectOptions, connect, portforward_v4, service_backends};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::cli::{DemoArgs, Output};
use crate::lab::{describe, remove_written, shutdown_signal, start};

async fn fetch(addr: std::net::SocketAddr) -> Result<(u16, String)> {
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

/// Runs the demo.
pub async fn run(args: DemoArgs, output: Output) -> Result<()> {
    let text = output == Output::Text;
    let dir = std::env::temp_dir().join(format!("kubeway-demo-{}", std::process::id()));
    let kubeconfig = dir.join("kubeconfig");
    let lab = start(&args.lab, true).await?;
    let result = demo(&lab, &args, &kubeconfig, text).await;
    lab.shutdown().await;
    remove_written(&kubeconfig);
    let _ = std::fs::remove_dir(&dir);
    result
}

async fn demo(
    lab: &kubeway_lab::Lab,
    args: &DemoArgs,
    kubeconfig: &std::path::Path,
    text: bool,
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
    let cluster = connect(&ConnectOptions {
        kubeconfig: Some(kubeconfig.to_path_buf()),
        namespace: Some("default".into()),
        ..Default::default()
    })
    .await?;
    let (svc_port, backends) = service_backends(&cluster, "web", &PortRef::Number(80)).await?;
    let listener = kubeway_net::bind_loopback(args.port)
        .await
        .with_context(|| {
            format!(
                "binding 127.0.0.1:{} for the way to web (is the port in use? try --port 0)",
                args.port
            )
        })?;
    let local = listener.local_addr()?;
    let cancel = CancellationToken::new();
    let stats = Arc::new(kubeway_net::Stats::default());
    let next = Arc::new(AtomicUsize::new(0));
    let backends = Arc::new(backends);
    let serve = {
        let cluster = cluster.clone();
        let backends = backends.clone();
        tokio::spawn(kubeway_net::serve(
            listener,
            cancel.clone(),
            stats.clone(),
            move |_| {
                let cluster = cluster.clone();
                let b = backends[next.fetch_add(1, Ordering::Relaxed) % backends.len()].clone();
                async move { portforward_v4(&cluster, &b.pod, b.port).await }
            },
        ))
    };
    let pods: Vec<String> = backends
        .iter()
        .map(|b| format!("{}:{}", b.pod, b.port))
        .collect();
    let (status, page) = fetch(local).await?;
    if text {
        println!(
            "  the way:    you → 127.0.0.1:{} → port-forward through the API server → svc/web:{svc_port} → pod {}",
            local.port(),
            pods.join(" | ")
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
            json!({"event": "fetched", "url": format!("http://{local}/"), "status": status, "body": page, "backends": pods})
        );
    }
    if !args.once {
        if text {
            println!(
                "Forwarding from 127.0.0.1:{} -> svc/web:{svc_port}   (open http://{local}/ in a browser; Ctrl-C stops the demo)",
                local.port()
            );
        } else {
            println!(
                "{}",
                json!({"event": "forwarding", "local": local.to_string(), "target": "svc/web", "port": svc_port})
            );
        }
        shutdown_signal().await;
    }
    cancel.cancel();
    let _ = serve.await;
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
