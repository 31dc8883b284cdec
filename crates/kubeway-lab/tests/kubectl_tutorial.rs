//! The kubectl commands of the first tutorials against the lab, with the machine's kubectl
//! (which sends protobuf for built-in kinds): create deployment|service|namespace|configmap|
//! secret, expose, run, scale, set image, rollout restart|undo|status|history, label, annotate,
//! wait, logs (deployment/NAME, --previous, -f), describe and events, delete. And Python's
//! kubernetes client creating the guide's Deployment through its typed API.

mod common;

use std::time::{Duration, Instant};

use common::{Fixture, require};
use kubeway_core::env::Provider;
use kubeway_lab::LabSpec;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

const DEADLINE: Duration = Duration::from_secs(60);

async fn kubectl_in(f: &Fixture, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut c = Command::new("kubectl");
    c.args(args)
        .env("KUBECONFIG", &f.kubeconfig)
        .env("HOME", f.dir.path())
        .stdin(if stdin.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = c.spawn().expect("kubectl runs");
    if let (Some(text), Some(mut w)) = (stdin, child.stdin.take()) {
        w.write_all(text.as_bytes()).await.expect("stdin");
    }
    let out = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("kubectl {args:?} did not finish"))
        .expect("kubectl output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `kubectl ARGS`, which must succeed; its stdout.
async fn ok(f: &Fixture, args: &str) -> String {
    let argv: Vec<&str> = args.split_whitespace().collect();
    let (good, out, err) = kubectl_in(f, &argv, None).await;
    assert!(good, "kubectl {args} failed:\n{out}{err}");
    out
}

/// Polls `kubectl ARGS` until its stdout satisfies `done`.
async fn until(f: &Fixture, args: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + DEADLINE;
    let argv: Vec<&str> = args.split_whitespace().collect();
    loop {
        let (_, out, err) = kubectl_in(f, &argv, None).await;
        if done(&out) {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "kubectl {args} never got there:\n{out}{err}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tutorial_kubectl_commands_work() {
    if !require("kubectl", &["version", "--client"]) {
        return;
    }
    let f = Fixture::start(LabSpec::new(Provider::Minikube)).await;
    let n = "-n tutorial";

    assert!(
        ok(&f, "create namespace tutorial")
            .await
            .contains("namespace/tutorial created")
    );
    ok(
        &f,
        &format!("{n} create deployment web --image=nginx:1.27 --replicas=2"),
    )
    .await;
    ok(
        &f,
        &format!("{n} create configmap settings --from-literal=greeting=hello"),
    )
    .await;
    ok(
        &f,
        &format!("{n} create secret generic creds --from-literal=password=s3cr3t"),
    )
    .await;
    let pw = ok(
        &f,
        &format!("{n} get secret creds -o jsonpath={{.data.password}}"),
    )
    .await;
    assert_eq!(pw, "czNjcjN0", "base64 of s3cr3t");
    assert!(
        ok(
            &f,
            &format!("{n} create service clusterip cache --tcp=6379:6379")
        )
        .await
        .contains("service/cache created")
    );
    assert!(
        ok(
            &f,
            &format!("{n} expose deployment web --port=80 --type=NodePort")
        )
        .await
        .contains("service/web exposed")
    );
    assert!(
        ok(
            &f,
            &format!("{n} wait --for=condition=Available deployment/web --timeout=60s")
        )
        .await
        .contains("condition met")
    );

    // The pods are nginx: the service answers with the welcome page, the logs say so.
    let logs = ok(&f, &format!("{n} logs deployment/web")).await;
    assert!(
        logs.contains("Configuration complete; ready for start up"),
        "{logs}"
    );

    ok(&f, &format!("{n} scale deployment web --replicas=3")).await;
    until(
        &f,
        &format!("{n} get deployment web -o jsonpath={{.status.readyReplicas}}"),
        |o| o == "3",
    )
    .await;

    ok(
        &f,
        &format!("{n} set image deployment/web nginx=nginx:1.25"),
    )
    .await;
    assert!(
        ok(
            &f,
            &format!("{n} rollout status deployment/web --timeout=60s")
        )
        .await
        .contains("successfully rolled out")
    );
    ok(&f, &format!("{n} rollout restart deployment/web")).await;
    ok(
        &f,
        &format!("{n} rollout status deployment/web --timeout=60s"),
    )
    .await;
    ok(&f, &format!("{n} rollout undo deployment/web")).await;
    ok(
        &f,
        &format!("{n} rollout status deployment/web --timeout=60s"),
    )
    .await;
    let history = ok(&f, &format!("{n} rollout history deployment/web")).await;
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.chars().all(|c| c.is_ascii_digit()))
        .collect();
    assert_eq!(
        revisions,
        ["1", "3", "4"],
        "undo makes revision 2 the new 4:\n{history}"
    );
    let image = ok(
        &f,
        &format!("{n} get deployment web -o jsonpath={{.spec.template.spec.containers[0].image}}"),
    )
    .await;
    assert_eq!(image, "nginx:1.25");

    ok(&f, &format!("{n} label deployment web tier=frontend")).await;
    ok(&f, &format!("{n} annotate deployment web owner=tutorial")).await;
    let meta = ok(&f, &format!("{n} get deployment web -o jsonpath={{.metadata.labels.tier}}/{{.metadata.annotations.owner}}")).await;
    assert_eq!(meta, "frontend/tutorial");

    // kubectl run: a shell image runs its script; -f follows it to its end; Never restarts.
    let (good, _, err) = kubectl_in(
        &f,
        &[
            "-n",
            "tutorial",
            "run",
            "hello",
            "--image=busybox",
            "--restart=Never",
            "--",
            "sh",
            "-c",
            "echo one; sleep 1; echo two",
        ],
        None,
    )
    .await;
    assert!(good, "{err}");
    until(
        &f,
        &format!("{n} get pod hello -o jsonpath={{.status.phase}}"),
        |p| p == "Running" || p == "Succeeded",
    )
    .await;
    let followed = ok(&f, &format!("{n} logs -f hello")).await;
    assert_eq!(followed, "one\ntwo\n");
    until(
        &f,
        &format!("{n} get pod hello -o jsonpath={{.status.phase}}"),
        |p| p == "Succeeded",
    )
    .await;

    // A crashing container: --previous shows the last run's output, events say BackOff.
    let (good, _, err) = kubectl_in(
        &f,
        &[
            "-n",
            "tutorial",
            "run",
            "crash",
            "--image=busybox",
            "--",
            "sh",
            "-c",
            "echo boom; exit 3",
        ],
        None,
    )
    .await;
    assert!(good, "{err}");
    until(
        &f,
        &format!("{n} get pod crash -o jsonpath={{.status.containerStatuses[0].restartCount}}"),
        |r| r.parse::<u32>().is_ok_and(|r| r >= 1),
    )
    .await;
    let prev = ok(&f, &format!("{n} logs crash --previous")).await;
    assert_eq!(prev, "boom\n");
    let code = ok(&f, &format!("{n} get pod crash -o jsonpath={{.status.containerStatuses[0].lastState.terminated.exitCode}}")).await;
    assert_eq!(code, "3");

    // A pod no node fits, and a readiness probe that fails: the events say why.
    ok(&f, &format!("{n} run picky --image=nginx --overrides={{\"spec\":{{\"nodeSelector\":{{\"disk\":\"ssd\"}}}}}}")).await;
    let probe = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: unready\n  namespace: tutorial\nspec:\n  containers:\n  - name: web\n    image: nginx\n    readinessProbe:\n      httpGet: {path: /ready, port: 80}\n      periodSeconds: 1\n";
    let (good, _, err) = kubectl_in(&f, &["apply", "-f", "-"], Some(probe)).await;
    assert!(good, "{err}");
    let events = until(&f, &format!("{n} get events"), |e| {
        e.contains("FailedScheduling") && e.contains("Unhealthy") && e.contains("BackOff")
    })
    .await;
    assert!(
        events.contains("didn't match Pod's node affinity/selector"),
        "{events}"
    );
    assert!(
        events.contains("Readiness probe failed: HTTP probe failed with statuscode: 404"),
        "{events}"
    );
    let described = ok(&f, &format!("{n} describe pod unready")).await;
    assert!(described.contains("Readiness probe failed"), "{described}");

    // An image the lab does not have: ImagePullBackOff, naming what it has.
    ok(
        &f,
        &format!("{n} run nope --image=quay.io/someone/unknown:1"),
    )
    .await;
    let why = until(
        &f,
        &format!(
            "{n} get pod nope -o jsonpath={{.status.containerStatuses[0].state.waiting.reason}}"
        ),
        |r| r == "ImagePullBackOff",
    )
    .await;
    assert_eq!(why, "ImagePullBackOff");
    let events = ok(
        &f,
        &format!("{n} get events --field-selector involvedObject.name=nope"),
    )
    .await;
    assert!(
        events.contains("kicbase/echo-server"),
        "names the built-in images: {events}"
    );

    assert!(
        ok(&f, &format!("{n} delete deployment web"))
            .await
            .contains("deleted")
    );
    ok(&f, &format!("{n} delete service web cache")).await;
    ok(&f, &format!("{n} delete configmap settings")).await;
    ok(&f, &format!("{n} delete secret creds")).await;
    until(
        &f,
        &format!("{n} get deployments,replicasets,services,configmaps,secrets -o name"),
        |o| o.trim().is_empty(),
    )
    .await;
    until(&f, &format!("{n} get pods -l app=web -o name"), |o| {
        o.trim().is_empty()
    })
    .await;
    ok(&f, "delete namespace tutorial").await;
    until(&f, "get namespaces -o name", |o| {
        !o.contains("namespace/tutorial")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_typed_client_creates_the_guide_deployment() {
    if !require("python3", &["-c", "import kubernetes"]) {
        return;
    }
    let f = Fixture::start(LabSpec::new(Provider::Minikube)).await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/typed_deployment.py"
    );
    let out = Command::new("python3")
        .arg(script)
        .env("KUBECONFIG", &f.kubeconfig)
        .output()
        .await
        .expect("python runs");
    assert!(
        out.status.success(),
        "the typed client check failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
