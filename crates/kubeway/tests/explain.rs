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

/// `kubectl apply -f -` with the lab's kubeconfig: the real kubectl builds the scenario.
fn kubectl_apply(env: &Env, manifest: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .args(["apply", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(manifest.as_bytes())
        .expect("manifest written");
    let out = child.wait_with_output().expect("kubectl ends");
    assert!(
        out.status.success(),
        "kubectl apply: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A Deployment of `kubeway.local/http` with `args`, labelled `app: LABEL`, in `ns`.
fn deployment(
    ns: &str,
    name: &str,
    label: &str,
    image: &str,
    args: &[&str],
    extra: &str,
) -> String {
    let args = args
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  replicas: 1\n  selector: {{matchLabels: {{app: {label}}}}}\n  template:\n    metadata: {{labels: {{app: {label}}}}}\n    spec:\n      containers:\n      - name: web\n        image: \"{image}\"\n        args: [{args}]\n        ports: [{{name: http, containerPort: 8080}}]\n{extra}"
    )
}

/// A NodePort Service selecting `app: LABEL`, port 80 to `http`.
fn service(ns: &str, name: &str, label: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  type: NodePort\n  selector: {{app: {label}}}\n  ports: [{{port: 80, targetPort: http}}]\n"
    )
}

/// No snake_case identifier in text meant for people (JSON keeps them).
fn assert_words(text: &str) {
    for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        let snake = word.contains('_')
            && word.chars().any(|c| c.is_ascii_lowercase())
            && !word.starts_with('_');
        assert!(!snake, "identifier {word:?} in the text:\n{text}");
    }
}

impl Env {
    async fn run(&self, args: &[&str]) -> Output {
        self.run_with(&self.kubeconfig, args).await
    }

    async fn run_with(&self, kc: &std::path::Path, args: &[&str]) -> Output {
        let kc = kc.to_path_buf();
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
        self.explain_with(&self.kubeconfig, args).await
    }

    async fn explain_with(
        &self,
        kc: &std::path::Path,
        args: &[&str],
    ) -> (Value, String, Option<i32>) {
        let mut with_json = vec!["-o", "json"];
        with_json.extend_from_slice(args);
        let out = self.run_with(kc, &with_json).await;
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "JSON for {args:?}: {e}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let text = self.run_with(kc, args).await;
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

/// One class: the layer, the hop, words of the verdict and the exit code.
struct Class<'a> {
    name: &'a str,
    hop: &'a str,
    layer: &'a str,
    health: &'a str,
    words: &'a [&'a str],
    code: i32,
}

fn assert_class(c: &Class, (v, text, code): &(Value, String, Option<i32>)) {
    let (h, l, fix) = primary(v);
    assert_eq!(
        (h.as_str(), l.as_str()),
        (c.hop, c.layer),
        "{}: wrong hop/layer: {}",
        c.name,
        v["verdict"]
    );
    assert_eq!(
        v["verdict"]["health"], c.health,
        "{}: {}",
        c.name, v["verdict"]
    );
    assert!(fix, "{}: a fix command is given: {}", c.name, v["verdict"]);
    let cause = v["verdict"]["primary"]["cause"]
        .as_str()
        .unwrap_or_default();
    // The JSON and the text come from two runs: an event count ("(3 times)") may have grown
    // in between, so the comparison stops before it.
    let stable = cause
        .split(" (")
        .next()
        .unwrap_or(cause)
        .trim_end_matches('.');
    assert!(
        !cause.is_empty() && text.contains(stable),
        "{}: the text says the cause {cause:?}:\n{text}",
        c.name
    );
    for w in c.words {
        assert!(
            cause.contains(w),
            "{}: {w:?} in the verdict {cause:?}",
            c.name
        );
    }
    assert_eq!(*code, Some(c.code), "{}: exit code\n{text}", c.name);
    assert_words(text);
}

async fn wait_for<F, Fut>(what: &str, f: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !f().await {
        assert!(std::time::Instant::now() < deadline, "waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_and_app_layer_scenarios() {
    let env = Env::start(LabSpec::new(Provider::Generic)).await;

    // A healthy Service on a reachable node: healthy, nothing broken, no warning.
    let (v, text, code) = env.explain(&["svc/web"]).await;
    assert_eq!(v["verdict"]["health"], "healthy", "{}", v["verdict"]);
    assert_eq!(code, Some(0));
    assert_words(&text);
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
    // Every ready pod's process was probed, per pod, in text and JSON.
    let pods = v["pods"].as_array().expect("pods");
    assert_eq!(pods.len(), 2);
    for p in pods {
        assert_eq!(p["process"], "ok", "{p}");
        assert_eq!(p["pod_ip"], "ok", "{p}");
        assert!(
            text.contains(p["process_detail"].as_str().unwrap_or("?")),
            "{text}"
        );
    }

    // Targets without a port use the declared container ports.
    let pod = pods[0]["name"].as_str().expect("name").to_string();
    for target in [format!("pod/{pod}"), "deploy/web".to_string()] {
        let (v, text, code) = env.explain(&[&target]).await;
        assert_eq!(
            v["verdict"]["health"], "healthy",
            "{target}: {}",
            v["verdict"]
        );
        assert_eq!(code, Some(0), "{text}");
        let process = v["hops"]
            .as_array()
            .and_then(|h| h.iter().find(|h| h["id"] == "process"))
            .expect("process hop");
        assert_eq!(process["status"], "ok", "{target}: {process}");
        assert_eq!(process["label"], "process :8080");
    }

    // One pod of two refuses (its app listens on the pod address only): degraded.
    kubectl_apply(
        &env,
        &deployment("default", "mixed-a", "mixed", "kubeway.local/http", &[], ""),
    );
    kubectl_apply(
        &env,
        &deployment(
            "default",
            "mixed-b",
            "mixed",
            "kubeway.local/http",
            &["--listen=pod-ip"],
            "",
        ),
    );
    kubectl_apply(&env, &service("default", "mixed", "mixed"));
    assert!(
        env.lab
            .wait_ready("default", "app=mixed", 2, Duration::from_secs(30))
            .await
    );
    let r = env.explain(&["svc/mixed"]).await;
    assert_class(
        &Class {
            name: "some pods refuse",
            hop: "process",
            layer: "app",
            health: "degraded",
            words: &["1 of the 2 ready pods refuse", "localhost:8080"],
            code: 0,
        },
        &r,
    );

    // The app listens on localhost only: the app layer, not the node.
    kubectl_apply(
        &env,
        &deployment(
            "default",
            "loc",
            "loc",
            "kubeway.local/http",
            &["--listen=localhost"],
            "",
        ),
    );
    kubectl_apply(&env, &service("default", "loc", "loc"));
    assert!(
        env.lab
            .wait_ready("default", "app=loc", 1, Duration::from_secs(30))
            .await
    );
    let class = Class {
        name: "localhost only",
        hop: "process",
        layer: "app",
        health: "degraded",
        words: &[
            "accepts on localhost:8080 but refuses on its pod IP",
            "127.0.0.1 only",
        ],
        code: 0,
    };
    let r = env.explain(&["svc/loc"]).await;
    assert_class(&class, &r);
    assert!(
        !r.0["verdict"]["findings"]
            .to_string()
            .contains("node_port_unanswered"),
        "the node is not blamed: {}",
        r.0["verdict"]
    );
    let r = env.explain(&["svc/loc", "--via", "node-port"]).await;
    assert_class(
        &Class {
            health: "broken",
            code: 3,
            ..class
        },
        &r,
    );

    // The app listens on its pod address only: port-forward cannot reach it.
    env.apply_deployment("podip", &["--listen=pod-ip"], false)
        .await;
    env.apply_service("podip", "podip", json!("http")).await;
    assert!(
        env.lab
            .wait_ready("default", "app=podip", 1, Duration::from_secs(30))
            .await
    );
    let r = env.explain(&["svc/podip", "--via", "port-forward"]).await;
    assert_class(
        &Class {
            name: "pod address only",
            hop: "process",
            layer: "app",
            health: "broken",
            words: &["refuses connections on localhost:8080 but accepts on its pod address"],
            code: 3,
        },
        &r,
    );

    // A selector typo on ReplicaSet-owned pods: the nearest pods named, the Service's selector
    // changed, the pods never relabelled.
    kubectl_apply(
        &env,
        "apiVersion: v1\nkind: Service\nmetadata: {name: typo}\nspec:\n  selector: {app: wbe}\n  ports: [{port: 80, targetPort: http}]\n",
    );
    let r = env.explain(&["svc/typo"]).await;
    assert_class(
        &Class {
            name: "selector typo",
            hop: "selector",
            layer: "kubernetes",
            health: "broken",
            words: &["of deployment/web has app=web, 1 edit from app=wbe"],
            code: 3,
        },
        &r,
    );
    let fixes = r.0["verdict"]["primary"]["fixes"].to_string();
    assert!(
        fixes.contains(r#"{\"spec\":{\"selector\":{\"app\":\"web\"}}}"#),
        "{fixes}"
    );
    assert!(!fixes.contains("kubectl label"), "{fixes}");

    // A selector with no near miss at all.
    env.apply_service("orphan", "nothing-has-this", json!("http"))
        .await;
    let r = env.explain(&["svc/orphan"]).await;
    assert_class(
        &Class {
            name: "selector",
            hop: "selector",
            layer: "kubernetes",
            health: "broken",
            words: &["app=nothing-has-this"],
            code: 3,
        },
        &r,
    );

    // The Deployment behind the Service is scaled to 0.
    kubectl_apply(
        &env,
        &deployment("default", "zero", "zero", "kubeway.local/http", &[], ""),
    );
    kubectl_apply(&env, &service("default", "zero", "zero"));
    assert!(
        env.lab
            .wait_ready("default", "app=zero", 1, Duration::from_secs(30))
            .await
    );
    Api::<Deployment>::namespaced(env.client().await, "default")
        .patch(
            "zero",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"replicas": 0}})),
        )
        .await
        .expect("scaled to 0");
    wait_for("the pods of zero to go", || async {
        env.explain(&["svc/zero"]).await.0["pods"]
            .as_array()
            .is_some_and(|p| p.is_empty())
    })
    .await;
    let r = env.explain(&["svc/zero"]).await;
    assert_class(
        &Class {
            name: "scaled to 0",
            hop: "selector",
            layer: "kubernetes",
            health: "broken",
            words: &["deployment/zero is scaled to 0 replicas"],
            code: 3,
        },
        &r,
    );
    assert!(
        r.0["verdict"]["primary"]["fixes"]
            .to_string()
            .contains("kubectl scale deployment/zero --replicas=1")
    );

    // The pods run in another namespace.
    kubectl_apply(
        &env,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n",
    );
    kubectl_apply(
        &env,
        &deployment("shop", "shopweb", "shopweb", "kubeway.local/http", &[], ""),
    );
    kubectl_apply(&env, &service("default", "shopweb", "shopweb"));
    assert!(
        env.lab
            .wait_ready("shop", "app=shopweb", 1, Duration::from_secs(30))
            .await
    );
    let r = env.explain(&["svc/shopweb"]).await;
    assert_class(
        &Class {
            name: "other namespace",
            hop: "selector",
            layer: "kubernetes",
            health: "broken",
            words: &["run in namespace shop", "its own namespace only"],
            code: 3,
        },
        &r,
    );

    // The image cannot be pulled: the image named, no log advised.
    kubectl_apply(
        &env,
        &deployment(
            "default",
            "pull",
            "pull",
            "registry.example/no-such-app:1.999",
            &[],
            "",
        ),
    );
    kubectl_apply(&env, &service("default", "pull", "pull"));
    wait_for("ImagePullBackOff", || async {
        env.explain(&["svc/pull"]).await.0["verdict"]["primary"]["kind"] == "image_pull_failing"
    })
    .await;
    let r = env.explain(&["svc/pull"]).await;
    assert_class(
        &Class {
            name: "image pull",
            hop: "pods",
            layer: "kubernetes",
            health: "broken",
            words: &[
                "image \"registry.example/no-such-app:1.999\"",
                "cannot be pulled",
            ],
            code: 3,
        },
        &r,
    );
    assert!(
        !r.0["verdict"]["primary"]["fixes"]
            .to_string()
            .contains("kubectl logs")
    );

    // A crash loop: exit code and reason from lastState.terminated.
    kubectl_apply(
        &env,
        &deployment(
            "default",
            "crash",
            "crash",
            "kubeway.local/http",
            &["--crash-after=1s", "--exit-code=3"],
            "",
        ),
    );
    kubectl_apply(&env, &service("default", "crash", "crash"));
    wait_for("a crash", || async {
        env.explain(&["svc/crash"]).await.0["verdict"]["primary"]["kind"] == "crash_looping"
    })
    .await;
    let r = env.explain(&["svc/crash"]).await;
    assert_class(
        &Class {
            name: "crash loop",
            hop: "pods",
            layer: "app",
            health: "broken",
            words: &["keeps crashing", "exited with code 3 (Error)"],
            code: 3,
        },
        &r,
    );

    // Never ready: the probe's type and target, and its last failure.
    env.apply_deployment("never", &["--ready-after=never"], true)
        .await;
    env.apply_service("never", "never", json!("http")).await;
    wait_for("an Unhealthy event", || async {
        env.explain(&["svc/never"]).await.0["verdict"]["primary"]["kind"] == "readiness_failing"
    })
    .await;
    let r = env.explain(&["svc/never"]).await;
    assert_class(
        &Class {
            name: "never ready",
            hop: "pods",
            layer: "kubernetes",
            health: "broken",
            words: &[
                "never ready",
                "httpGet GET :8080/healthz",
                "its last failure",
            ],
            code: 3,
        },
        &r,
    );

    // targetPort name missing on the pods, and a number nothing serves.
    env.apply_service("badname", "web", json!("metrics")).await;
    let r = env.explain(&["svc/badname"]).await;
    assert_class(
        &Class {
            name: "targetPort name",
            hop: "target_port",
            layer: "kubernetes",
            health: "broken",
            words: &["metrics"],
            code: 3,
        },
        &r,
    );
    env.apply_service("badnum", "web", json!(9999)).await;
    let r = env.explain(&["svc/badnum"]).await;
    assert_class(
        &Class {
            name: "targetPort number",
            hop: "target_port",
            layer: "kubernetes",
            health: "broken",
            words: &["port 9999"],
            code: 3,
        },
        &r,
    );

    // A ClusterIP Service asked about as if it were a NodePort.
    let r = env.explain(&["svc/echo", "--via", "node-port"]).await;
    assert_class(
        &Class {
            name: "ClusterIP as NodePort",
            hop: "node_port",
            layer: "kubernetes",
            health: "broken",
            words: &["ClusterIP"],
            code: 3,
        },
        &r,
    );

    // Not found and a missing namespace are errors (1), named as what they are.
    let r = env.explain(&["svc/wbe"]).await;
    assert_class(
        &Class {
            name: "not found",
            hop: "service",
            layer: "kubernetes",
            health: "broken",
            words: &["no Service named \"wbe\"", "did you mean web"],
            code: 1,
        },
        &r,
    );
    let r = env.explain(&["svc/web", "-n", "nosuch"]).await;
    assert_class(
        &Class {
            name: "missing namespace",
            hop: "service",
            layer: "kubernetes",
            health: "broken",
            words: &["Namespace nosuch does not exist"],
            code: 1,
        },
        &r,
    );

    // RBAC denies port-forward.
    env.lab.deny(Denial::new("*", "pods/portforward"));
    let r = env.explain(&["svc/web", "--via", "port-forward"]).await;
    assert_class(
        &Class {
            name: "rbac",
            hop: "rbac",
            layer: "api",
            health: "broken",
            words: &["pods/portforward"],
            code: 3,
        },
        &r,
    );
    env.lab.allow_all();

    // RBAC denies reading the Service: which verb, an API-layer error.
    env.lab.deny(Denial::new("get", "services"));
    let r = env.explain(&["svc/web"]).await;
    assert_class(
        &Class {
            name: "403",
            hop: "service",
            layer: "api",
            health: "broken",
            words: &["get services in namespace default (403 Forbidden)"],
            code: 1,
        },
        &r,
    );
    env.lab.allow_all();

    // A rejected token: the API server's verdict, with the user, not "Service not found".
    let yaml = std::fs::read_to_string(&env.kubeconfig).expect("kubeconfig");
    let bad = env.dir.path().join("rejected");
    std::fs::write(&bad, yaml.replace(env.lab.token(), "rejected-token")).expect("write");
    let r = env.explain_with(&bad, &["svc/web"]).await;
    assert_class(
        &Class {
            name: "401",
            hop: "api_server",
            layer: "api",
            health: "broken",
            words: &["rejected the credentials of user", "401 Unauthorized"],
            code: 1,
        },
        &r,
    );

    // The context does not exist.
    let r = env.explain(&["svc/web", "--context", "nope"]).await;
    assert_class(
        &Class {
            name: "context",
            hop: "context",
            layer: "host",
            health: "broken",
            words: &["nope"],
            code: 1,
        },
        &r,
    );

    // The API server is down: which URL.
    env.lab.stop_api().await;
    let url = env.lab.api_url();
    let r = env.explain(&["svc/web"]).await;
    assert_class(
        &Class {
            name: "api",
            hop: "api_server",
            layer: "api",
            health: "broken",
            words: &[url.trim_end_matches('/'), "cannot be reached"],
            code: 1,
        },
        &r,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_layer_scenarios() {
    let env = Env::start(LabSpec::new(Provider::Minikube)).await;
    // Node behind a boundary while port-forward works: healthy for "any way", broken for NodePort.
    let (v, text, code) = env.explain(&["svc/web"]).await;
    assert_eq!(v["verdict"]["health"], "healthy", "{}", v["verdict"]);
    assert_eq!(code, Some(0));
    assert_words(&text);
    assert_eq!(
        v["verdict"]["primary"]["hop"], "driver_boundary",
        "the boundary is reported as a warning"
    );
    assert!(
        text.contains("healthy, with a warning about the driver boundary (driver layer)"),
        "{text}"
    );
    let r = env.explain(&["svc/web", "--via", "node-port"]).await;
    assert_class(
        &Class {
            name: "boundary",
            hop: "driver_boundary",
            layer: "driver",
            health: "broken",
            words: &["minikube"],
            code: 3,
        },
        &r,
    );

    // LoadBalancer pending with no implementation.
    let r = env.explain(&["svc/web-lb", "--via", "load-balancer"]).await;
    assert_class(
        &Class {
            name: "lb pending",
            hop: "lb_ingress",
            layer: "driver",
            health: "broken",
            words: &["<pending>"],
            code: 3,
        },
        &r,
    );

    // The SVG picture is written, well-formed enough to open, and asks the question asked.
    let svg = env.dir.path().join("web.svg");
    let out = env
        .run(&[
            "svc/web",
            "--via",
            "node-port",
            "--svg",
            svg.to_str().expect("utf-8"),
        ])
        .await;
    assert_eq!(out.status.code(), Some(3));
    let pic = std::fs::read_to_string(&svg).expect("svg written");
    assert!(pic.starts_with("<?xml") && pic.contains("<svg") && pic.trim_end().ends_with("</svg>"));
    assert!(pic.contains("<title>kubeway explain svc/web --via node-port</title>"));
}
