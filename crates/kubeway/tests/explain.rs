//! `kubeway explain` scenarios in the lab: each breaks one hop and checks that the JSON names
//! that hop, its layer and a fix, and that the text says it in one plain sentence. A healthy
//! Service is reported healthy with no false alarm.

mod common;

use std::process::Output;
use std::time::Duration;

use common::Env;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, PostParams};
use kubeway_core::env::Provider;
use kubeway_lab::{Denial, LabSpec};
use serde_json::{Value, json};

impl Env {
    async fn run(&self, args: &[&str]) -> Output {
        let kc = self.kubeconfig.clone();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_kubeway"))
                .arg("explain")
                .arg("--kubeconfig")
                .arg(&kc)
                .args(&args)
                .output()
                .expect("kubeway runs")
        })
        .await
        .expect("join")
    }

    /// The JSON report and the text report of one question.
    async fn explain(&self, args: &[&str]) -> (Value, String, Option<i32>) {
        let mut with_json = vec!["-o", "json"];
        with_json.extend_from_slice(args);
        let out = self.run(&with_json).await;
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "JSON for {args:?}: {e}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let text = self.run(args).await;
        (
            v,
            String::from_utf8_lossy(&text.stdout).into_owned(),
            out.status.code(),
        )
    }

    async fn apply_deployment(&self, name: &str, args: &[&str], probe: bool) {
        let mut c = json!({"name": name, "image": "kubeway.local/http", "args": args,
                           "ports": [{"name": "http", "containerPort": 8080}]});
        if probe {
            c["readinessProbe"] =
                json!({"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1});
        }
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [c]}}}
        }))
        .expect("deployment");
        Api::<Deployment>::namespaced(self.client().await, "default")
            .create(&PostParams::default(), &d)
            .await
            .expect("create deployment");
    }

    async fn apply_service(&self, name: &str, app: &str, target_port: Value) {
        let s: Service = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"type": "NodePort", "selector": {"app": app}, "ports": [{"name": "http", "port": 80, "targetPort": target_port}]}
        }))
        .expect("service");
        Api::<Service>::namespaced(self.client().await, "default")
            .create(&PostParams::default(), &s)
            .await
            .expect("create service");
    }
}

/// The primary finding: (hop, layer, has a fix command).
fn primary(v: &Value) -> (String, String, bool) {
    let p = &v["verdict"]["primary"];
    let fix = p["fixes"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x["command"].is_string()));
    (
        p["hop"].as_str().unwrap_or_default().to_string(),
        p["layer"].as_str().unwrap_or_default().to_string(),
        fix,
    )
}

fn assert_scenario(name: &str, v: &Value, text: &str, hop: &str, layer: &str) {
    let (h, l, fix) = primary(v);
    assert_eq!(
        (h.as_str(), l.as_str()),
        (hop, layer),
        "{name}: wrong hop/layer: {}",
        v["verdict"]
    );
    assert!(fix, "{name}: a fix command is given: {}", v["verdict"]);
    let cause = v["verdict"]["primary"]["cause"]
        .as_str()
        .unwrap_or_default();
    let cause = cause.trim_end_matches('.');
    assert!(
        !cause.is_empty() && text.contains(cause),
        "{name}: the text says the cause in a sentence {cause:?}:\n{text}"
    );
    assert!(
        !v["verdict"]["summary"]
            .as_str()
            .unwrap_or_default()
            .is_empty(),
        "{name}: a summary sentence"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_and_app_layer_scenarios() {
    let env = Env::start(LabSpec::new(Provider::Generic)).await;

    // A healthy Service on a reachable node: healthy, nothing broken, no warning.
    let (v, text, code) = env.explain(&["svc/web"]).await;
    assert_eq!(v["verdict"]["health"], "healthy", "{}", v["verdict"]);
    assert_eq!(code, Some(0));
    let bad: Vec<_> = v["hops"]
        .as_array()
        .expect("hops")
        .iter()
        .filter(|h| h["status"] == "broken")
        .collect();
    assert!(
        bad.is_empty(),
        "no false alarm on a healthy service: {bad:?}\n{text}"
    );

    // The selector matches no pods.
    env.apply_service("orphan", "nothing-has-this", json!("http"))
        .await;
    let (v, text, code) = env.explain(&["svc/orphan"]).await;
    assert_scenario("selector", &v, &text, "selector", "kubernetes");
    assert_eq!(code, Some(3), "a broken path exits 3");

    // Pods exist but none is ready.
    env.apply_deployment("never", &["--ready-after=never"], true)
        .await;
    env.apply_service("never", "never", json!("http")).await;
    let found = common_wait(|| async {
        env.explain(&["svc/never"]).await.0["pods"]
            .as_array()
            .is_some_and(|p| !p.is_empty())
    })
    .await;
    assert!(found);
    let (v, text, _) = env.explain(&["svc/never"]).await;
    assert_scenario("not ready", &v, &text, "pods", "kubernetes");

    // targetPort name missing on the pods.
    env.apply_service("badname", "web", json!("metrics")).await;
    let (v, text, _) = env.explain(&["svc/badname"]).await;
    assert_scenario("targetPort name", &v, &text, "target_port", "kubernetes");

    // targetPort number not served.
    env.apply_service("badnum", "web", json!(9999)).await;
    let (v, text, _) = env.explain(&["svc/badnum"]).await;
    assert_scenario("targetPort number", &v, &text, "target_port", "kubernetes");

    // The app listens on its pod address only.
    env.apply_deployment("podip", &["--listen=pod-ip"], false)
        .await;
    env.apply_service("podip", "podip", json!("http")).await;
    assert!(
        env.lab
            .wait_ready("default", "app=podip", 1, Duration::from_secs(30))
            .await
    );
    let (v, text, _) = env.explain(&["svc/podip"]).await;
    assert_scenario("pod address only", &v, &text, "process", "app");

    // A ClusterIP Service asked about as if it were a NodePort.
    let (v, text, _) = env.explain(&["svc/echo", "--via", "node-port"]).await;
    assert_scenario(
        "ClusterIP as NodePort",
        &v,
        &text,
        "node_port",
        "kubernetes",
    );

    // RBAC denies port-forward.
    env.lab.deny(Denial::new("*", "pods/portforward"));
    let (v, text, _) = env.explain(&["svc/web", "--via", "port-forward"]).await;
    assert_scenario("rbac", &v, &text, "rbac", "api");
    env.lab.allow_all();

    // The context does not exist.
    let (v, text, _) = env.explain(&["svc/web", "--context", "nope"]).await;
    assert_scenario("context", &v, &text, "context", "host");

    // The API server is down.
    env.lab.stop_api().await;
    let (v, text, _) = env.explain(&["svc/web"]).await;
    assert_scenario("api", &v, &text, "api_server", "api");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_layer_scenarios() {
    let env = Env::start(LabSpec::new(Provider::Minikube)).await;
    // Node behind a boundary while port-forward works: healthy for "any way", broken for NodePort.
    let (v, _, code) = env.explain(&["svc/web"]).await;
    assert_eq!(v["verdict"]["health"], "healthy", "{}", v["verdict"]);
    assert_eq!(code, Some(0));
    assert_eq!(
        v["verdict"]["primary"]["hop"], "driver_boundary",
        "the boundary is reported as a warning"
    );
    let (v, text, _) = env.explain(&["svc/web", "--via", "node-port"]).await;
    assert_scenario("boundary", &v, &text, "driver_boundary", "driver");
    assert!(
        v["verdict"]["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("minikube"),
        "names the environment"
    );

    // LoadBalancer pending with no implementation.
    let (v, text, _) = env.explain(&["svc/web-lb", "--via", "load-balancer"]).await;
    assert_scenario("lb pending", &v, &text, "lb_ingress", "driver");

    // The SVG picture is written and is well-formed enough to open.
    let svg = env.dir.path().join("web.svg");
    let out = env
        .run(&["svc/web", "--svg", svg.to_str().expect("utf-8")])
        .await;
    assert!(out.status.success());
    let pic = std::fs::read_to_string(&svg).expect("svg written");
    assert!(pic.starts_with("<?xml") && pic.contains("<svg") && pic.trim_end().ends_with("</svg>"));
}

async fn common_wait<F, Fut>(f: F) -> bool
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}
