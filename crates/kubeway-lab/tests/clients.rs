//! Real clients judge the lab: the `kubectl` on the machine, Python's `kubernetes` package and
//! kube-rs, each used unmodified against a lab on loopback.

mod common;

use std::time::Duration;

use common::{Fixture, eventually, require};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kubeway_lab::LabSpec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

async fn kubectl(f: &Fixture, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", &f.kubeconfig)
        .env_remove("KUBECTL_PORT_FORWARD_WEBSOCKETS")
        .output()
        .await
        .expect("kubectl runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn kubectl_ok(f: &Fixture, args: &[&str]) -> String {
    let (ok, out, err) = kubectl(f, args).await;
    assert!(ok, "kubectl {} failed: {err}{out}", args.join(" "));
    out
}

const MANIFEST: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: hello
spec:
  replicas: 2
  selector:
    matchLabels: {app: hello}
  template:
    metadata:
      labels: {app: hello}
    spec:
      containers:
      - name: hello
        image: kubeway.local/http
        ports:
        - {name: http, containerPort: 8080}
---
apiVersion: v1
kind: Service
metadata:
  name: hello
spec:
  selector: {app: hello}
  ports:
  - port: 80
    targetPort: http
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_accepts_the_lab() {
    if !require("kubectl", &["version", "--client"]) {
        return;
    }
    let f = Fixture::sample().await;

    let all = kubectl_ok(&f, &["get", "nodes,pods,svc,endpointslices", "-A"]).await;
    for want in [
        "node/",
        "pod/web-",
        "service/web ",
        "NodePort",
        "endpointslice.discovery.k8s.io/web-",
        "<pending>",
    ] {
        assert!(all.contains(want), "`get -A` lacks {want:?}:\n{all}");
    }
    let yaml = kubectl_ok(&f, &["get", "svc", "web", "-o", "yaml"]).await;
    assert!(
        yaml.contains("nodePort: 3") && yaml.contains("targetPort: http"),
        "{yaml}"
    );
    let described = kubectl_ok(&f, &["describe", "svc", "web"]).await;
    assert!(
        described.contains("Endpoints:") && described.contains("127.244."),
        "{described}"
    );
    let pod = kubectl_ok(&f, &["get", "pods", "-l", "app=web", "-o", "name"]).await;
    let pod = pod.lines().next().expect("a web pod").to_string();
    let described = kubectl_ok(&f, &["describe", &pod]).await;
    assert!(
        described.contains("Status:           Running") && described.contains("Started"),
        "{described}"
    );

    // get -w shows the replacement after a delete.
    let mut watcher = Command::new("kubectl")
        .args([
            "get",
            "pods",
            "-w",
            "-l",
            "app=web",
            "--output-watch-events",
        ])
        .env("KUBECONFIG", &f.kubeconfig)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("kubectl get -w");
    let mut stdout = watcher.stdout.take().expect("stdout");
    let short = pod.trim_start_matches("pod/").to_string();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    // Delete only once the watch has listed the victim, so the deletion happens under watch.
    let listed = tokio::time::timeout(Duration::from_secs(20), async {
        while !seen.contains(&short) {
            let n = stdout.read(&mut buf).await.expect("read watch");
            if n == 0 {
                return false;
            }
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        true
    })
    .await
    .unwrap_or(false);
    assert!(listed, "`get pods -w` never listed {short}:\n{seen}");
    let listed_names: Vec<String> = seen
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
        .collect();
    kubectl_ok(&f, &["delete", &pod]).await;
    let replaced = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let deleted = seen
                .lines()
                .any(|l| l.starts_with("DELETED") && l.contains(&short));
            let new_ready = seen.lines().any(|l| {
                let name = l.split_whitespace().nth(1).unwrap_or_default();
                !listed_names.iter().any(|n| n == name)
                    && name.starts_with("web-")
                    && l.contains("1/1")
                    && l.contains("Running")
            });
            if deleted && new_ready {
                return true;
            }
            let n = stdout.read(&mut buf).await.expect("read watch");
            if n == 0 {
                return false;
            }
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
    .await
    .unwrap_or(false);
    let _ = watcher.kill().await;
    assert!(
        replaced,
        "`get pods -w` did not show the replacement:\n{seen}"
    );

    // scale produces a third ready endpoint.
    kubectl_ok(&f, &["scale", "deploy/web", "--replicas=3"]).await;
    let three = eventually(Duration::from_secs(20), || async {
        let out = kubectl_ok(
            &f,
            &[
                "get",
                "endpointslices",
                "-l",
                "kubernetes.io/service-name=web",
                "-o",
                "jsonpath={.items[*].endpoints[?(@.conditions.ready==true)].addresses[0]}",
            ],
        )
        .await;
        (out.split_whitespace().count() == 3).then_some(out)
    })
    .await;
    assert!(three.is_some(), "scale to 3 did not give 3 ready endpoints");

    // apply of a Deployment + Service using the lab's images, twice (create, then unchanged).
    let manifest = f.dir.path().join("app.yaml");
    std::fs::write(&manifest, MANIFEST).expect("manifest");
    let m = manifest.to_str().expect("utf-8 path");
    let out = kubectl_ok(&f, &["apply", "-f", m]).await;
    assert!(
        out.contains("deployment.apps/hello created") && out.contains("service/hello created"),
        "{out}"
    );
    let out = kubectl_ok(&f, &["apply", "-f", m]).await;
    assert!(out.contains("unchanged"), "{out}");
    kubectl_ok(&f, &["rollout", "status", "deploy/hello", "--timeout=30s"]).await;

    // status subresource patch.
    kubectl_ok(
        &f,
        &[
            "patch",
            "svc",
            "web",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"loadBalancer":{"ingress":[{"ip":"127.0.0.9"}]}}}"#,
        ],
    )
    .await;
    let ip = kubectl_ok(
        &f,
        &[
            "get",
            "svc",
            "web",
            "-o",
            "jsonpath={.status.loadBalancer.ingress[0].ip}",
        ],
    )
    .await;
    assert_eq!(ip, "127.0.0.9");

    // auth can-i (kubectl sends this one as protobuf), allowed and then denied.
    let yes = kubectl_ok(
        &f,
        &[
            "auth",
            "can-i",
            "create",
            "pods",
            "--subresource=portforward",
        ],
    )
    .await;
    assert_eq!(yes.trim(), "yes");
    f.lab
        .deny(kubeway_lab::Denial::new("create", "pods/portforward"));
    let (ok, out, _) = kubectl(
        &f,
        &[
            "auth",
            "can-i",
            "create",
            "pods",
            "--subresource=portforward",
        ],
    )
    .await;
    assert!(!ok && out.trim().starts_with("no"), "denied can-i: {out}");
    f.lab.allow_all();

    // Errors come back Kubernetes-shaped.
    let (ok, _, err) = kubectl(&f, &["get", "pod", "no-such-pod"]).await;
    assert!(
        !ok && err.contains("NotFound") && err.contains("\"no-such-pod\" not found"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_lists_watches_and_forwards() {
    if !require("python3", &["-c", "import kubernetes"]) {
        return;
    }
    let f = Fixture::sample().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/client_check.py");
    let out = Command::new("python3")
        .arg(script)
        .env("KUBECONFIG", &f.kubeconfig)
        .output()
        .await
        .expect("python runs");
    assert!(
        out.status.success(),
        "python client check failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn echo_pod(f: &Fixture) -> String {
    let pods: Api<Pod> = Api::namespaced(f.client().await, "default");
    let list = pods
        .list(&ListParams::default().labels("app=echo"))
        .await
        .expect("list echo pods");
    list.items[0].metadata.name.clone().expect("named")
}

#[tokio::test]
async fn kube_rs_portforward_exchanges_bytes() {
    let f = Fixture::sample().await;
    let pods: Api<Pod> = Api::namespaced(f.client().await, "default");
    let name = echo_pod(&f).await;
    let mut pf = pods
        .portforward(&name, &[9000])
        .await
        .expect("port-forward opens");
    let mut s = pf.take_stream(9000).expect("stream for 9000");
    let payload: Vec<u8> = (0..1_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let (mut rd, mut wr) = tokio::io::split(&mut s);
    let send = payload.clone();
    let writer = async move {
        wr.write_all(&send).await.expect("write");
    };
    let reader = async move {
        let mut got = vec![0u8; 1_000_000];
        rd.read_exact(&mut got).await.expect("read back");
        got
    };
    let (_, got) = tokio::join!(writer, reader);
    assert!(got == payload, "echoed bytes differ");
    drop(s);
    let _ = pf.join().await;
}

#[tokio::test]
async fn a_pod_listening_on_its_pod_ip_only_cannot_be_port_forwarded() {
    let f = Fixture::start(LabSpec::default()).await;
    let pods: Api<Pod> = Api::namespaced(f.client().await, "default");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "podip-only"},
        "spec": {"containers": [{"name": "web", "image": "kubeway.local/http", "args": ["--listen=pod-ip"],
                                  "ports": [{"containerPort": 8080}]}]}
    }))
    .expect("pod");
    pods.create(&Default::default(), &pod)
        .await
        .expect("create");
    assert!(
        f.lab
            .wait_ready("default", "", 1, Duration::from_secs(20))
            .await
    );
    let mut pf = pods
        .portforward("podip-only", &[8080])
        .await
        .expect("upgrade works");
    let err = pf.take_error(8080).expect("error channel");
    let text = tokio::time::timeout(Duration::from_secs(10), err)
        .await
        .expect("an error arrives")
        .expect("error text");
    assert!(
        text.contains("error forwarding port 8080 to pod podip-only")
            && text.contains("localhost:8080"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_creates_then_merges_from_kubectl_and_kube_rs() {
    if !require("kubectl", &["version", "--client"]) {
        return;
    }
    let f = Fixture::sample().await;
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("shop.yaml");
    let manifest = MANIFEST.replace("hello", "shop");
    std::fs::write(&path, &manifest).expect("write");
    let file = path.to_string_lossy().to_string();
    let out = kubectl_ok(&f, &["apply", "--server-side", "-f", &file]).await;
    assert!(
        out.contains("deployment.apps/shop serverside-applied"),
        "{out}"
    );
    assert!(out.contains("service/shop serverside-applied"), "{out}");
    std::fs::write(&path, manifest.replace("replicas: 2", "replicas: 3")).expect("write");
    kubectl_ok(&f, &["apply", "--server-side", "-f", &file]).await;
    let got = kubectl_ok(
        &f,
        &[
            "get",
            "deploy",
            "shop",
            "-o",
            "jsonpath={.spec.replicas} {.metadata.managedFields[0].manager} {.metadata.managedFields[0].operation}",
        ],
    )
    .await;
    assert_eq!(got, "3 kubectl Apply");

    // kube-rs's Patch::Apply, the way controllers write.
    let svcs: Api<k8s_openapi::api::core::v1::Service> =
        Api::namespaced(f.client().await, "default");
    let applied = serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "shop", "labels": {"team": "a"}},
    });
    let params = kube::api::PatchParams::apply("kubeway-test");
    let svc = svcs
        .patch("shop", &params, &kube::api::Patch::Apply(&applied))
        .await
        .expect("apply merges");
    assert_eq!(
        svc.metadata
            .labels
            .unwrap_or_default()
            .get("team")
            .map(String::as_str),
        Some("a")
    );
    assert!(svc.spec.and_then(|s| s.ports).is_some(), "the rest is kept");
    // Without a field manager the API server refuses, as a real one does.
    let err = svcs
        .patch(
            "shop",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Apply(&applied),
        )
        .await
        .expect_err("fieldManager is required");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 400),
        "{err:?}"
    );
}
