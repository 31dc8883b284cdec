//! The binary under hostile conditions, end to end against the lab: a symbolic link planted where
//! kubeway writes is not followed and files are private from creation on; two labs get a
//! kubeconfig each and `lab up --kubeconfig` is honoured; there is no /tmp fallback for state; a
//! tunnel whose token or RBAC is refused ends at once naming the status, and after a good start
//! shows a retry line instead; root cleans up after another user's crashed tunnel; a
//! non-loopback `--address` is warned about; a taken port 65535 is a clear error, not a panic.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Env;
use kubeway_core::env::Provider;
use kubeway_lab::{Denial, LabSpec};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

const KUBEWAY: &str = env!("CARGO_BIN_EXE_kubeway");
/// A generous bound for everything that should take about a second.
const DEADLINE: Duration = Duration::from_secs(20);

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).expect("meta").mode() & 0o777
}

/// A running kubeway printing JSON events, and the events so far.
struct Events {
    child: Child,
    events: Arc<Mutex<Vec<Value>>>,
    stderr: Arc<Mutex<String>>,
}

impl Events {
    fn spawn(mut cmd: Command) -> Self {
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("kubeway starts");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let events = Arc::new(Mutex::new(Vec::new()));
        let ev = events.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    ev.lock().expect("events").push(v);
                }
            }
        });
        let mut err = child.stderr.take().expect("stderr");
        let stderr = Arc::new(Mutex::new(String::new()));
        let se = stderr.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                se.lock()
                    .expect("stderr")
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Self {
            child,
            events,
            stderr,
        }
    }

    async fn wait_event(&mut self, f: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            if let Some(v) = self.events.lock().expect("events").iter().find(|e| f(e)) {
                return v.clone();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                panic!(
                    "exited ({status}) first; events {:#?}; stderr {}",
                    self.events.lock().expect("events"),
                    self.stderr.lock().expect("stderr")
                );
            }
            assert!(
                start.elapsed() < DEADLINE,
                "no such event in {DEADLINE:?}: {:#?}; stderr: {}",
                self.events.lock().expect("events"),
                self.stderr.lock().expect("stderr")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn signal_and_wait(mut self, sig: &str) -> std::process::ExitStatus {
        let pid = self.child.id().expect("running").to_string();
        let ok = std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .expect("kill");
        assert!(ok.success());
        tokio::time::timeout(DEADLINE, self.child.wait())
            .await
            .expect("exits")
            .expect("wait")
    }
}

fn lab_up(state: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(KUBEWAY);
    c.args([
        "lab",
        "up",
        "-o",
        "json",
        "--sample=false",
        "--persona",
        "kind",
    ])
    .args(args)
    .env("KUBEWAY_STATE_DIR", state);
    c
}

#[tokio::test]
async fn two_labs_get_a_private_kubeconfig_each_and_stopping_one_leaves_the_other() {
    let t = tempfile::tempdir().expect("tempdir");
    let state = t.path().join("state");
    let mut a = Events::spawn(lab_up(&state, &[]));
    let mut b = Events::spawn(lab_up(&state, &[]));
    let ready_a = a.wait_event(|e| e["event"] == "ready").await;
    let ready_b = b.wait_event(|e| e["event"] == "ready").await;
    let path_a = PathBuf::from(ready_a["kubeconfig"].as_str().expect("path"));
    let path_b = PathBuf::from(ready_b["kubeconfig"].as_str().expect("path"));
    assert_ne!(path_a, path_b, "each lab has a kubeconfig of its own");
    for p in [&path_a, &path_b] {
        assert!(p.starts_with(state.join("lab")), "{}", p.display());
        assert_eq!(mode(p), 0o600, "{}", p.display());
    }
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&state.join("lab")), 0o700);
    let status = a.signal_and_wait("-TERM").await;
    assert!(status.success(), "{status}");
    assert!(!path_a.exists(), "the stopped lab's kubeconfig is removed");
    assert!(path_b.exists(), "the other lab's stays");
    assert!(b.signal_and_wait("-TERM").await.success());
    assert!(!path_b.exists());
}

#[tokio::test]
async fn lab_up_honours_kubeconfig_and_never_writes_through_a_symlink() {
    let t = tempfile::tempdir().expect("tempdir");
    let state = t.path().join("state");
    let victim = t.path().join("victim");
    std::fs::write(&victim, b"precious").expect("victim");
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let link = t.path().join("planted");
    std::os::unix::fs::symlink(&victim, &link).expect("symlink");

    // A link where the kubeconfig goes: refused, named, nothing followed, the lab gone.
    let out = lab_up(&state, &[])
        .arg("--kubeconfig")
        .arg(&link)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "refused");
    assert!(
        err.contains("already exists") && err.contains(&link.display().to_string()),
        "{err}"
    );
    assert_eq!(std::fs::read(&victim).expect("victim"), b"precious");
    assert_eq!(
        mode(&victim),
        0o644,
        "the link's target is not chmod'ed either"
    );

    // `--kubeconfig PATH` is where the kubeconfig goes (new folders 0700, the file 0600).
    let chosen = t.path().join("new/dir/kc");
    let mut lab = Events::spawn({
        let mut c = lab_up(&state, &[]);
        c.arg("--kubeconfig").arg(&chosen);
        c
    });
    let ready = lab.wait_event(|e| e["event"] == "ready").await;
    assert_eq!(ready["kubeconfig"], chosen.display().to_string());
    assert_eq!(mode(&chosen), 0o600);
    assert_eq!(mode(&t.path().join("new")), 0o700);
    let kubectl = Command::new("/usr/bin/kubectl")
        .arg("--kubeconfig")
        .arg(&chosen)
        .args(["get", "nodes"])
        .output()
        .await
        .expect("kubectl");
    assert!(kubectl.status.success(), "the kubeconfig works");
    assert!(lab.signal_and_wait("-INT").await.success());
    assert!(!chosen.exists());

    // --kubeconfig and --kubeconfig-out naming two files: refused before anything starts.
    let out = lab_up(&state, &["--kubeconfig", "/a", "--kubeconfig-out", "/b"])
        .output()
        .await
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("name different files"));
}

#[tokio::test]
async fn explain_svg_replaces_a_planted_link_instead_of_following_it() {
    let env = Env::start(LabSpec::new(Provider::Kind)).await;
    let victim = env.dir.path().join("victim");
    std::fs::write(&victim, b"precious").expect("victim");
    let link = env.dir.path().join("path.svg");
    std::os::unix::fs::symlink(&victim, &link).expect("symlink");
    let out = Command::new(KUBEWAY)
        .arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .args(["explain", "svc/web", "--svg"])
        .arg(&link)
        .output()
        .await
        .expect("explain");
    assert_ne!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&victim).expect("victim"), b"precious");
    let meta = std::fs::symlink_metadata(&link).expect("svg");
    assert!(meta.is_file(), "a new file replaced the link");
    assert_eq!(meta.mode() & 0o777, 0o600);
    assert!(
        std::fs::read_to_string(&link)
            .expect("svg")
            .contains("<svg")
    );
}

#[tokio::test]
async fn state_never_falls_back_to_a_shared_temp_folder() {
    let env = Env::start(LabSpec::new(Provider::Kind)).await;
    // No usable HOME, no XDG_STATE_HOME, no KUBEWAY_STATE_DIR: kubeway says so.
    for args in [
        &[
            "--kubeconfig",
            env.kubeconfig.to_str().expect("utf-8"),
            "tunnel",
            "--cleanup",
        ][..],
        &["lab", "up"][..],
    ] {
        let out = Command::new(KUBEWAY)
            .args(args)
            .env_remove("KUBEWAY_STATE_DIR")
            .env_remove("XDG_STATE_HOME")
            .env("HOME", "not/an/absolute/home")
            .stdin(Stdio::null())
            .output()
            .await
            .expect("runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("not an absolute path") && err.contains("HOME"),
            "{args:?}: {err}"
        );
    }
    // A state directory others can write to is refused, with the fix.
    let shared = env.dir.path().join("shared");
    std::fs::create_dir(&shared).expect("mkdir");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let out = Command::new(KUBEWAY)
        .arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .args(["tunnel", "--cleanup"])
        .env("KUBEWAY_STATE_DIR", &shared)
        .output()
        .await
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("chmod go-w"), "{err}");
    assert_eq!(
        std::fs::read_dir(&shared).expect("dir").count(),
        0,
        "nothing written there"
    );
}

/// A copy of the lab's kubeconfig with a token the API server does not know.
fn wrong_token_kubeconfig(env: &Env) -> PathBuf {
    let text = std::fs::read_to_string(&env.kubeconfig).expect("kubeconfig");
    let forged = text.replace(env.lab.token(), "not-the-token");
    assert_ne!(forged, text);
    let path = env.dir.path().join("wrong-token");
    std::fs::write(&path, forged).expect("write");
    path
}

/// Runs `kubeway tunnel` to its end within [`DEADLINE`]: its exit status and stderr.
async fn tunnel_until_exit(
    env: &Env,
    kubeconfig: &Path,
    state: &Path,
) -> (std::process::ExitStatus, String, Duration) {
    let started = Instant::now();
    let out = tokio::time::timeout(
        DEADLINE,
        Command::new(KUBEWAY)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("tunnel")
            .env("KUBEWAY_STATE_DIR", state)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("the tunnel did not end within {DEADLINE:?}"))
    .expect("tunnel");
    let _ = env;
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn a_tunnel_with_a_rejected_token_or_rbac_ends_at_once_naming_the_status() {
    let env = Env::start(LabSpec::new(Provider::Minikube)).await;
    let state = env.dir.path().join("state");
    let (status, err, took) = tunnel_until_exit(&env, &wrong_token_kubeconfig(&env), &state).await;
    eprintln!("rejected token: exited after {took:?}: {err}");
    assert!(
        took < Duration::from_secs(10),
        "the issue's bar: under 10 s ({took:?})"
    );
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("list services") && err.contains("401 Unauthorized"),
        "{err}"
    );
    assert_eq!(err.matches("401").count(), 1, "said once: {err}");

    env.lab.deny(Denial::new("list", "services"));
    let (status, err, took) = tunnel_until_exit(&env, &env.kubeconfig, &state).await;
    eprintln!("RBAC denies list: exited after {took:?}: {err}");
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("403 Forbidden") && err.contains("kubectl auth can-i list services"),
        "{err}"
    );
    assert_eq!(err.matches("403").count(), 1, "said once: {err}");
    env.lab.allow_all();
    // Nothing is left of either attempt.
    let left: Vec<_> = std::fs::read_dir(&state)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn after_a_good_start_a_refused_watch_shows_a_retry_line_and_then_the_recovery() {
    let env = Env::start(LabSpec::new(Provider::Minikube)).await;
    let state = env.dir.path().join("state");
    let mut cmd = Command::new(KUBEWAY);
    cmd.arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .args(["tunnel", "-o", "json"])
        .env("KUBEWAY_STATE_DIR", &state);
    let mut tunnel = Events::spawn(cmd);
    tunnel.wait_event(|e| e["event"] == "watching").await;
    // The API server goes away and comes back refusing to list Services.
    env.lab.stop_api().await;
    env.lab.deny(Denial::new("list", "services"));
    env.lab.deny(Denial::new("watch", "services"));
    env.lab.start_api().await.expect("api back");
    let refused = tunnel
        .wait_event(|e| e["event"] == "api" && e["state"] == "refused")
        .await;
    assert_eq!(refused["code"], 403, "{refused}");
    env.lab.allow_all();
    // The watch resumes from where it was; the next change of a Service shows it is back.
    let out = Command::new("/usr/bin/kubectl")
        .arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .args([
            "annotate",
            "svc",
            "web",
            "--overwrite",
            "example.com/touched=1",
        ])
        .output()
        .await
        .expect("kubectl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tunnel
        .wait_event(|e| e["event"] == "api" && e["state"] == "ok")
        .await;
    assert!(tunnel.signal_and_wait("-INT").await.success());
}

#[tokio::test]
async fn root_cleans_up_after_another_users_crashed_tunnel() {
    if kubeway_host::euid() != 0 || !Path::new("/usr/bin/setpriv").exists() {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: needs root and setpriv to run a tunnel as another user"
        );
        return;
    }
    let env = Env::start(LabSpec::new(Provider::Minikube)).await;
    // The other user's home: their state directory and a kubeconfig they can read.
    let home = env.dir.path().join("nobody");
    std::fs::create_dir(&home).expect("home");
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o711))
        .expect("traversable");
    let state = home.join("state");
    std::fs::create_dir(&state).expect("state");
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let kc = home.join("kubeconfig");
    std::fs::copy(&env.kubeconfig, &kc).expect("copy");
    for p in [&home, &state, &kc] {
        std::os::unix::fs::chown(p, Some(65534), Some(65534)).expect("chown");
    }
    let mut cmd = Command::new("/usr/bin/setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", KUBEWAY])
        .arg("--kubeconfig")
        .arg(&kc)
        .args(["tunnel", "-o", "json"])
        .env("HOME", &home)
        .env("KUBEWAY_STATE_DIR", &state);
    let mut theirs = Events::spawn(cmd);
    let written = theirs
        .wait_event(|e| e["event"] == "ingress" && e["service"] == "default/web-lb")
        .await;
    let ip = written["ip"].as_str().expect("ip").to_string();
    assert!(ip.starts_with("127.77."), "{written}");
    // Crash: kill -9.
    assert!(!theirs.signal_and_wait("-KILL").await.success());
    let ingress = |env: &Env| {
        env.lab
            .store()
            .get(
                kubeway_lab::resources::core("services"),
                "default",
                "web-lb",
            )
            .expect("web-lb")["status"]["loadBalancer"]["ingress"]
            .clone()
    };
    assert_eq!(ingress(&env)[0]["ip"], ip, "left behind by the crash");
    let journal: Vec<PathBuf> = std::fs::read_dir(&state)
        .expect("state")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    assert_eq!(journal.len(), 1);
    assert_eq!(
        std::fs::metadata(&journal[0]).expect("journal").uid(),
        65534
    );

    // Root's own tunnel (own state) sees a tunnel's ingress and says whose it looks like.
    let root_state = env.dir.path().join("root-state");
    let mut cmd = Command::new(KUBEWAY);
    cmd.arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .args(["tunnel", "-o", "json"])
        .env("KUBEWAY_STATE_DIR", &root_state);
    let mut mine = Events::spawn(cmd);
    let left = mine
        .wait_event(|e| e["event"] == "left_alone" && e["service"] == "default/web-lb")
        .await;
    assert!(
        left["reason"]
            .as_str()
            .is_some_and(|r| r.contains("--cleanup --state-dir")),
        "{left}"
    );
    assert!(mine.signal_and_wait("-INT").await.success());

    // Root in the other user's state directory: only --cleanup, and that works.
    let out = Command::new(KUBEWAY)
        .arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .args(["tunnel", "--state-dir"])
        .arg(&state)
        .output()
        .await
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("belongs to uid 65534"));
    let out = Command::new(KUBEWAY)
        .arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .args(["tunnel", "--cleanup", "-o", "json", "--state-dir"])
        .arg(&state)
        .output()
        .await
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(r#""result":"removed""#), "{stdout}");
    assert!(ingress(&env).is_null(), "{}", ingress(&env));
    assert!(!journal[0].exists(), "the journal is done with");
    // Nothing of root's was written into the other user's directory.
    for e in std::fs::read_dir(&state).expect("state").flatten() {
        assert_eq!(e.metadata().expect("meta").uid(), 65534, "{:?}", e.path());
    }
}

#[tokio::test]
async fn a_non_loopback_address_is_warned_about_once_and_loopback_is_not() {
    // No cluster is needed: the warning comes before anything is dialed or bound, and the
    // missing kubeconfig ends the command before anything listens.
    let missing = tempfile::tempdir().expect("tempdir");
    let run = |address: &'static str| {
        let kc = missing.path().join("no-kubeconfig");
        async move {
            Command::new(KUBEWAY)
                .arg("--kubeconfig")
                .arg(kc)
                .args(["forward", "svc/web", "8080:80", "--address", address])
                .output()
                .await
                .expect("runs")
        }
    };
    let out = run("0.0.0.0").await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.matches("warning:").count(), 1, "{err}");
    assert!(
        err.contains("--address 0.0.0.0 is not loopback")
            && err.contains("svc/web port(s) 8080:80")
            && err.contains("no authentication"),
        "{err}"
    );
    let out = run("localhost").await;
    assert!(!String::from_utf8_lossy(&out.stderr).contains("warning:"));
}

#[tokio::test]
async fn a_taken_port_65535_is_a_clear_error_not_a_panic() {
    let env = Env::start(LabSpec::new(Provider::Kind)).await;
    // Port 65535 on 127.0.0.1 taken (by this test, or already by someone else: either way).
    let _held = std::net::TcpListener::bind("127.0.0.1:65535");
    let out = tokio::time::timeout(
        DEADLINE,
        Command::new(KUBEWAY)
            .arg("--kubeconfig")
            .arg(&env.kubeconfig)
            .args(["forward", "svc/web", "65535:80", "--address", "127.0.0.1"])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("ends")
    .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "no panic (101): {err}");
    assert!(
        err.contains("already in use") && err.contains("65535"),
        "{err}"
    );
}
