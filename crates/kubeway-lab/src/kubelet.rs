//! The lab's kubelet: runs each scheduled Pod's containers as real local servers on the pod's own
//! loopback addresses, reports Pod status (phase, conditions, IPs, restarts), runs readiness probes,
//! restarts crashed containers with back-off, and dials `localhost:port` inside a pod for port-forward.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::apps::{self, APP_IMAGES, ContainerSpec};
use crate::controllers::record_event;
use crate::images::{self, IMAGE_NAMES, Identity, Image, Listen, Switches};
use crate::logs::{LogBuf, LogSink};
use crate::netns::Place;
use crate::resources::core;
use crate::status::ApiError;
use crate::store::{Store, now_rfc3339};

/// An IPv4 range: base address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// First address.
    pub base: Ipv4Addr,
    /// Prefix length.
    pub prefix: u8,
}

impl Cidr {
    /// `base/prefix`.
    pub const fn new(base: Ipv4Addr, prefix: u8) -> Self {
        Self { base, prefix }
    }

    /// Number of addresses.
    pub fn size(&self) -> u32 {
        1u32.checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(u32::MAX)
    }

    /// The `n`th address, if inside.
    pub fn nth(&self, n: u32) -> Option<Ipv4Addr> {
        (n < self.size()).then(|| Ipv4Addr::from(u32::from(self.base).wrapping_add(n)))
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

/// Address plan of a lab, and where its pods' sockets live.
#[derive(Debug, Clone)]
pub struct LabNet {
    /// Pod addresses (127.244.0.0/16 in loopback mode, 203.0.113.0/24 in namespace mode).
    pub pods: Cidr,
    /// Each pod's "localhost": the same offset in this range (127.245.0.0/16).
    pub locals: Cidr,
    /// ClusterIPs; the first usable one is the `kubernetes` Service's.
    pub services: Cidr,
    /// The network namespace of the node and its pods.
    pub place: Place,
    next: Arc<AtomicU32>,
}

impl Default for LabNet {
    fn default() -> Self {
        Self {
            pods: Cidr::new(Ipv4Addr::new(127, 244, 0, 0), 16),
            locals: Cidr::new(Ipv4Addr::new(127, 245, 0, 0), 16),
            services: Cidr::new(Ipv4Addr::new(127, 96, 0, 0), 16),
            place: Place::Here,
            next: Arc::new(AtomicU32::new(2)),
        }
    }
}

/// The port a lab holds on each address it uses, so that labs running side by side (tests,
/// several `kubeway lab up`) never hand out the same address: whoever binds it owns it.
pub const CLAIM_PORT: u16 = 65535;

/// Claims `ip` for this lab, or None if another lab holds it.
pub fn claim(ip: Ipv4Addr) -> Option<std::net::TcpListener> {
    std::net::TcpListener::bind((ip, CLAIM_PORT)).ok()
}

impl LabNet {
    /// The plan of namespace mode: documentation ranges inside the node's own namespace.
    pub fn in_namespace(place: Place) -> Self {
        let (pods, pods_len) = crate::netns::plan::POD_CIDR;
        let (svcs, svcs_len) = crate::netns::plan::SERVICE_CIDR;
        Self {
            pods: Cidr::new(pods, pods_len),
            services: Cidr::new(svcs, svcs_len),
            place,
            ..Self::default()
        }
    }

    /// The `kubernetes` Service's ClusterIP.
    pub fn api_service_ip(&self) -> Ipv4Addr {
        self.services.nth(1).unwrap_or(self.services.base)
    }

    /// A fresh (pod IP, pod localhost) pair, never reused within one lab and, in loopback mode,
    /// not held by another lab, with the claim that keeps it ours.
    fn allocate(&self) -> (Ipv4Addr, Ipv4Addr, Option<std::net::TcpListener>) {
        let mut fallback = None;
        for _ in 0..65536 {
            let n = self.next.fetch_add(1, Ordering::Relaxed) % self.pods.size().max(1);
            let (Some(pod), Some(local)) = (self.pods.nth(n), self.locals.nth(n)) else {
                continue;
            };
            if matches!(pod.octets()[3], 0 | 255) {
                continue;
            }
            if self.place.is_netns() {
                // The node's namespace is the lab's own: nobody else can hold its addresses.
                return (pod, local, None);
            }
            fallback.get_or_insert((pod, local));
            if let Some(c) = claim(pod) {
                return (pod, local, Some(c));
            }
        }
        let (a, b) = fallback.unwrap_or((self.pods.base, self.locals.base));
        (a, b, None)
    }
}

struct ContainerState {
    name: String,
    image: String,
    ready: bool,
    restarts: i64,
    state: Value,
    last_state: Value,
    started: bool,
    /// Exited for good (the restart policy does not restart it).
    done: Option<i32>,
}

/// One pod the kubelet runs.
pub struct PodHandle {
    ns: String,
    name: String,
    uid: String,
    node: String,
    pod_ip: Ipv4Addr,
    local_ip: Ipv4Addr,
    bound: Mutex<Vec<(IpAddr, u16, u16)>>,
    /// The same for UDP sockets.
    bound_udp: Mutex<Vec<(IpAddr, u16, u16)>>,
    containers: Mutex<Vec<ContainerState>>,
    /// Each container's log: the running instance's and the previous one's.
    logs: Mutex<HashMap<String, (LogSink, Option<LogSink>)>>,
    started_at: String,
    cancel: CancellationToken,
    terminating: std::sync::atomic::AtomicBool,
    /// The pod's connections: counted, and killed when the grace period is over.
    life: images::PodLife,
    _claim: Option<std::net::TcpListener>,
}

/// How long the lab's apps keep serving after SIGTERM before they stop accepting (so endpoint
/// removal reaches clients first, as a preStop hook arranges on real clusters).
pub const TERMINATION_DRAIN: Duration = Duration::from_secs(1);

/// The shortest grace a kubelet gives containers it kills, even when the pod was force-deleted
/// (`minimumGracePeriodInSeconds` in the kubelet's runtime manager).
pub const MINIMUM_GRACE: Duration = Duration::from_secs(2);

/// The kubelet of every lab node.
pub struct Kubelet {
    store: Arc<Store>,
    net: LabNet,
    nodes: Vec<String>,
    pods: Mutex<HashMap<String, Arc<PodHandle>>>,
    /// Images already pulled onto the node (the next container finds them present).
    pulled: Mutex<std::collections::HashSet<String>>,
    cancel: CancellationToken,
}

/// When a pod's grace period ends: its `deletionTimestamp` (the API server sets it to the
/// deletion time plus the grace period), else 30 s from now.
fn grace_deadline(pod: &Value) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    let left = pod["metadata"]["deletionTimestamp"]
        .as_str()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map(|t| {
            let ms = t.duration_since(jiff::Timestamp::now()).as_millis();
            Duration::from_millis(u64::try_from(ms).unwrap_or(0))
        })
        .unwrap_or(Duration::from_secs(30));
    now + left.max(MINIMUM_GRACE)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Kubelet {
    /// A kubelet for `nodes`.
    pub fn new(
        store: Arc<Store>,
        net: LabNet,
        nodes: Vec<String>,
        cancel: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            net,
            nodes,
            pods: Mutex::new(HashMap::new()),
            pulled: Mutex::new(std::collections::HashSet::new()),
            cancel,
        })
    }

    /// Starts pods newly bound to our nodes and stops pods that are gone.
    pub fn sync(self: &Arc<Self>) {
        let (pods, _) = self.store.list(core("pods"), None);
        let mut live = std::collections::HashSet::new();
        for pod in &pods {
            let uid = pod["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let node = pod["spec"]["nodeName"].as_str().unwrap_or_default();
            if !self.nodes.iter().any(|n| n == node) {
                continue;
            }
            live.insert(uid.clone());
            let existing = lock(&self.pods).get(&uid).cloned();
            if let Some(h) = existing {
                if pod["metadata"]["deletionTimestamp"].is_string()
                    && !h.terminating.swap(true, Ordering::SeqCst)
                {
                    let me = self.clone();
                    let deadline = grace_deadline(pod);
                    tokio::spawn(async move { me.terminate(h, deadline, true).await });
                }
                continue;
            }
            if pod["metadata"]["deletionTimestamp"].is_string() {
                let _ = self.store.delete(
                    core("pods"),
                    pod["metadata"]["namespace"].as_str().unwrap_or_default(),
                    pod["metadata"]["name"].as_str().unwrap_or_default(),
                );
                continue;
            }
            let (pod_ip, local_ip, claim) = self.net.allocate();
            let handle = Arc::new(PodHandle {
                ns: pod["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or_default()
                    .into(),
                name: pod["metadata"]["name"].as_str().unwrap_or_default().into(),
                uid: uid.clone(),
                node: node.into(),
                pod_ip,
                local_ip,
                bound: Mutex::new(Vec::new()),
                bound_udp: Mutex::new(Vec::new()),
                containers: Mutex::new(Vec::new()),
                logs: Mutex::new(HashMap::new()),
                started_at: now_rfc3339(),
                cancel: self.cancel.child_token(),
                terminating: std::sync::atomic::AtomicBool::new(false),
                life: images::PodLife::new(self.cancel.child_token()),
                _claim: claim,
            });
            lock(&self.pods).insert(uid, handle.clone());
            let me = self.clone();
            let pod = (**pod).clone();
            tokio::spawn(async move { me.run_pod(handle, pod).await });
        }
        let mut pods = lock(&self.pods);
        pods.retain(|uid, h| {
            let keep = live.contains(uid);
            if !keep && !h.terminating.swap(true, Ordering::SeqCst) {
                // Removed from the API at once (force-deleted): the kubelet still stops the
                // containers with its minimum grace.
                let me = self.clone();
                let h = h.clone();
                let deadline = tokio::time::Instant::now() + MINIMUM_GRACE;
                tokio::spawn(async move { me.terminate(h, deadline, false).await });
            }
            keep
        });
    }

    fn find(&self, ns: &str, name: &str) -> Option<Arc<PodHandle>> {
        lock(&self.pods)
            .values()
            .find(|h| h.ns == ns && h.name == name)
            .cloned()
    }

    /// Stops a pod as the kubelet does: SIGTERM (the app keeps serving for
    /// [`TERMINATION_DRAIN`], as a preStop hook arranges, then stops accepting and lets open
    /// connections finish), SIGKILL at `deadline` for whatever is still open (its sockets close
    /// as the kernel closes a killed process's), then, if asked, removes the object. A pod whose
    /// connections all finished exits before its deadline.
    async fn terminate(
        self: Arc<Self>,
        h: Arc<PodHandle>,
        deadline: tokio::time::Instant,
        remove: bool,
    ) {
        self.event(&h, "Normal", "Killing", "Stopping container");
        tokio::select! {
            _ = tokio::time::sleep(TERMINATION_DRAIN.min(deadline.saturating_duration_since(tokio::time::Instant::now()))) => {}
            _ = self.cancel.cancelled() => return,
        }
        // The containers stop accepting (their supervisors see the cancel).
        h.cancel.cancel();
        tokio::select! {
            _ = h.life.drained() => {}
            _ = tokio::time::sleep_until(deadline) => {
                tracing::debug!(pod = %h.name, open = h.life.open(), "grace period over; killing what is left");
            }
            _ = self.cancel.cancelled() => return,
        }
        h.life.kill.cancel();
        if !remove {
            return;
        }
        let same = self
            .store
            .get(core("pods"), &h.ns, &h.name)
            .is_some_and(|p| p["metadata"]["uid"] == h.uid.as_str());
        if same {
            let _ = self.store.delete(core("pods"), &h.ns, &h.name);
        }
    }

    /// Dials `localhost:port` inside a pod, as a container runtime does for port-forward.
    /// The error text follows containerd's.
    pub async fn dial(&self, ns: &str, name: &str, port: u16) -> Result<TcpStream, String> {
        let h = self
            .find(ns, name)
            .ok_or_else(|| format!("pod {ns}/{name} has no running sandbox on this node"))?;
        let ip = IpAddr::V4(h.local_ip);
        let actual = h.actual_port(ip, port);
        match tokio::time::timeout(
            Duration::from_secs(5),
            self.net.place.connect(SocketAddr::new(ip, actual)),
        )
        .await
        {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                Ok(s)
            }
            Ok(Err(e)) => Err(format!(
                "failed to connect to localhost:{port} inside namespace \"{}\", IPv4: dial tcp4 127.0.0.1:{port}: connect: {e} IPv6 dial tcp6 [::1]:{port}: connect: connection refused",
                h.uid
            )),
            Err(_) => Err(format!(
                "timed out connecting to localhost:{port} inside the pod"
            )),
        }
    }

    /// Dials a pod by its pod IP (for the NodePort proxy and probes).
    pub async fn dial_pod_ip(&self, ip: IpAddr, port: u16) -> std::io::Result<TcpStream> {
        let h = lock(&self.pods)
            .values()
            .find(|h| IpAddr::V4(h.pod_ip) == ip)
            .cloned();
        let actual = h.map(|h| h.actual_port(ip, port)).unwrap_or(port);
        let s = self.net.place.connect(SocketAddr::new(ip, actual)).await?;
        let _ = s.set_nodelay(true);
        Ok(s)
    }

    /// Where a datagram for pod IP `ip`, container port `port`/UDP goes (the port the pod's
    /// socket actually has when a privileged port was remapped).
    pub fn pod_udp_addr(&self, ip: IpAddr, port: u16) -> SocketAddr {
        let actual = lock(&self.pods)
            .values()
            .find(|h| IpAddr::V4(h.pod_ip) == ip)
            .and_then(|h| {
                lock(&h.bound_udp)
                    .iter()
                    .find(|(i, p, _)| *i == ip && *p == port)
                    .map(|(_, _, a)| *a)
            })
            .unwrap_or(port);
        SocketAddr::new(ip, actual)
    }

    async fn run_pod(self: Arc<Self>, h: Arc<PodHandle>, pod: Value) {
        let spec = &pod["spec"];
        let containers: Vec<Value> = spec["containers"].as_array().cloned().unwrap_or_default();
        {
            let mut cs = lock(&h.containers);
            for c in &containers {
                cs.push(ContainerState {
                    name: c["name"].as_str().unwrap_or_default().into(),
                    image: c["image"].as_str().unwrap_or_default().into(),
                    ready: false,
                    restarts: 0,
                    state: json!({"waiting": {"reason": "ContainerCreating"}}),
                    last_state: json!({}),
                    started: false,
                    done: None,
                });
            }
        }
        self.publish(&h);
        let mut tasks = Vec::new();
        for (i, c) in containers.into_iter().enumerate() {
            let me = self.clone();
            let h2 = h.clone();
            tasks.push(tokio::spawn(
                async move { me.run_container(h2, i, c).await },
            ));
        }
        h.cancel.cancelled().await;
        for t in tasks {
            let _ = t.await;
        }
    }

    fn set_state(&self, h: &PodHandle, i: usize, f: impl FnOnce(&mut ContainerState)) {
        {
            let mut cs = lock(&h.containers);
            if let Some(c) = cs.get_mut(i) {
                f(c);
            }
        }
        self.publish(h);
    }

    /// Writes the pod's status from the container states.
    fn publish(&self, h: &PodHandle) {
        if h.cancel.is_cancelled() {
            return;
        }
        let (statuses, all_ready, any_running, all_started, finished) = {
            let cs = lock(&h.containers);
            let statuses: Vec<Value> = cs
                .iter()
                .map(|c| {
                    json!({
                        "name": c.name, "image": c.image, "imageID": format!("{}@sha256:lab", c.image),
                        "containerID": format!("containerd://{}-{}", h.uid, c.name),
                        "ready": c.ready, "started": c.started, "restartCount": c.restarts,
                        "state": c.state, "lastState": c.last_state,
                    })
                })
                .collect();
            (
                statuses,
                !cs.is_empty() && cs.iter().all(|c| c.ready),
                cs.iter().any(|c| c.state.get("running").is_some()),
                cs.iter().all(|c| c.started),
                (!cs.is_empty() && cs.iter().all(|c| c.done.is_some()))
                    .then(|| cs.iter().all(|c| c.done == Some(0))),
            )
        };
        let now = now_rfc3339();
        let cond = |t: &str, ok: bool| json!({"type": t, "status": if ok { "True" } else { "False" }, "lastProbeTime": null, "lastTransitionTime": now});
        let phase = match finished {
            Some(true) => "Succeeded",
            Some(false) => "Failed",
            None if any_running || all_started => "Running",
            None => "Pending",
        };
        let pod_ip = h.pod_ip.to_string();
        let host_ip = self.node_ip(&h.node);
        let start = h.started_at.clone();
        let _ = self.store.mutate_retry(core("pods"), &h.ns, &h.name, |p| {
            if p["metadata"]["uid"].as_str() != Some(h.uid.as_str()) {
                return Err(crate::status::ApiError::conflict("pods", &h.name));
            }
            let old_conditions = p["status"]["conditions"].clone();
            let mut conditions = vec![
                cond("PodReadyToStartContainers", true),
                cond("Initialized", true),
                cond("Ready", all_ready),
                cond("ContainersReady", all_ready),
                cond("PodScheduled", true),
            ];
            // Keep transition times of conditions whose status did not change.
            for c in conditions.iter_mut() {
                if let Some(old) = old_conditions
                    .as_array()
                    .and_then(|a| a.iter().find(|o| o["type"] == c["type"]))
                    && old["status"] == c["status"]
                {
                    c["lastTransitionTime"] = old["lastTransitionTime"].clone();
                }
            }
            p["status"] = json!({
                "phase": phase, "conditions": conditions, "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
                "podIP": pod_ip, "podIPs": [{"ip": pod_ip}], "startTime": start,
                "containerStatuses": statuses, "qosClass": "BestEffort",
            });
            Ok(())
        });
    }

    fn node_ip(&self, node: &str) -> String {
        self.store
            .get(core("nodes"), "", node)
            .and_then(|n| {
                n["status"]["addresses"]
                    .as_array()?
                    .iter()
                    .find(|a| a["type"] == "InternalIP")
                    .and_then(|a| a["address"].as_str().map(str::to_string))
            })
            .unwrap_or_default()
    }

    fn event(&self, h: &PodHandle, ty: &str, reason: &str, msg: &str) {
        self.container_event(h, None, ty, reason, msg);
    }

    /// An event about the pod, or about one of its containers (`fieldPath`), from this node's
    /// kubelet.
    fn container_event(
        &self,
        h: &PodHandle,
        container: Option<&str>,
        ty: &str,
        reason: &str,
        msg: &str,
    ) {
        let mut involved = json!({"kind": "Pod", "namespace": h.ns, "name": h.name, "uid": h.uid, "apiVersion": "v1"});
        if let Some(c) = container {
            involved["fieldPath"] = json!(format!("spec.containers{{{c}}}"));
        }
        record_event(
            &self.store,
            &involved,
            ty,
            reason,
            msg,
            &format!("kubelet/{}", h.node),
        );
    }

    /// The log of a container of a pod on this kubelet: the running (or last) instance's, or
    /// with `previous` the one before. Errors are phrased as the kubelet phrases them.
    pub fn logs(
        &self,
        ns: &str,
        pod: &str,
        container: Option<&str>,
        previous: bool,
    ) -> Result<LogSink, ApiError> {
        let Some(h) = self.find(ns, pod) else {
            // Not running on a node yet.
            let first = self
                .store
                .get(core("pods"), ns, pod)
                .and_then(|p| {
                    p["spec"]["containers"][0]["name"]
                        .as_str()
                        .map(str::to_string)
                })
                .ok_or_else(|| ApiError::not_found("pods", pod))?;
            let name = container.unwrap_or(&first);
            return Err(ApiError::bad_request(format!(
                "container \"{name}\" in pod \"{pod}\" is waiting to start: ContainerCreating"
            )));
        };
        let names: Vec<String> = lock(&h.containers).iter().map(|c| c.name.clone()).collect();
        let name = match container {
            Some(c) => c.to_string(),
            None if names.len() == 1 => names[0].clone(),
            None => {
                return Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {pod}, choose one of: [{}]",
                    names.join(" ")
                )));
            }
        };
        if !names.contains(&name) {
            return Err(ApiError::bad_request(format!(
                "container {name} is not valid for pod {pod}"
            )));
        }
        let logs = lock(&h.logs).get(&name).cloned();
        if previous {
            return logs.and_then(|(_, prev)| prev).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "previous terminated container \"{name}\" in pod \"{pod}\" not found"
                ))
            });
        }
        match logs {
            Some((cur, _)) => Ok(cur),
            None => {
                let reason = lock(&h.containers)
                    .iter()
                    .find(|c| c.name == name)
                    .and_then(|c| c.state["waiting"]["reason"].as_str().map(str::to_string))
                    .unwrap_or_else(|| "ContainerCreating".into());
                let why = match reason.as_str() {
                    "ErrImagePull" | "ImagePullBackOff" => {
                        "trying and failing to pull image".into()
                    }
                    other => other.to_string(),
                };
                Err(ApiError::bad_request(format!(
                    "container \"{name}\" in pod \"{pod}\" is waiting to start: {why}"
                )))
            }
        }
    }

    /// A new log for the instance about to start; the last one becomes the previous.
    fn new_log(&self, h: &PodHandle, container: &str) -> LogSink {
        let log = LogBuf::new();
        let mut logs = lock(&h.logs);
        let prev = logs.remove(container).map(|(cur, _)| cur);
        logs.insert(container.to_string(), (log.clone(), prev));
        log
    }

    /// Pulls an image as the kubelet would: present already, or Pulling then Pulled.
    fn pull(&self, h: &PodHandle, cname: &str, image_ref: &str, policy: &str) {
        let present = lock(&self.pulled).contains(image_ref);
        if present && policy != "Always" {
            self.container_event(
                h,
                Some(cname),
                "Normal",
                "Pulled",
                &format!("Container image {image_ref:?} already present on machine"),
            );
            return;
        }
        self.container_event(
            h,
            Some(cname),
            "Normal",
            "Pulling",
            &format!("Pulling image {image_ref:?}"),
        );
        lock(&self.pulled).insert(image_ref.to_string());
        self.container_event(
            h,
            Some(cname),
            "Normal",
            "Pulled",
            &format!(
                "Successfully pulled image {image_ref:?} in 0s (0s including waiting). Image size: 0 bytes (a built-in of the kubeway lab)."
            ),
        );
    }

    async fn run_container(self: Arc<Self>, h: Arc<PodHandle>, i: usize, c: Value) {
        let cname = c["name"].as_str().unwrap_or_default().to_string();
        let image_ref = c["image"].as_str().unwrap_or_default().to_string();
        let strings = |k: &str| -> Vec<String> {
            c[k].as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str().map(str::to_string))
                .collect()
        };
        let args = strings("args");
        let policy = c["imagePullPolicy"]
            .as_str()
            .unwrap_or("IfNotPresent")
            .to_string();
        let restart_policy = self
            .store
            .get(core("pods"), &h.ns, &h.name)
            .and_then(|p| p["spec"]["restartPolicy"].as_str().map(str::to_string))
            .unwrap_or_else(|| "Always".into());
        let lab_image = Image::from_ref(&image_ref);
        let spec = ContainerSpec {
            image: image_ref.clone(),
            command: strings("command"),
            args: args.clone(),
            env: self.container_env(&h, &c),
        };
        let app = if lab_image.is_none() {
            apps::configure(&spec)
        } else {
            None
        };
        if lab_image.is_none() && app.is_none() {
            let msg = format!(
                "image {image_ref:?} is not one of the lab's built-in images ({}, {}); the lab runs no container engine",
                IMAGE_NAMES.join(", "),
                APP_IMAGES.join(", ")
            );
            self.container_event(
                &h,
                Some(&cname),
                "Normal",
                "Pulling",
                &format!("Pulling image {image_ref:?}"),
            );
            self.container_event(
                &h,
                Some(&cname),
                "Warning",
                "Failed",
                &format!("Failed to pull image {image_ref:?}: {msg}"),
            );
            self.container_event(&h, Some(&cname), "Warning", "Failed", "Error: ErrImagePull");
            self.set_state(&h, i, |s| {
                s.state = json!({"waiting": {"reason": "ErrImagePull", "message": msg}})
            });
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = h.cancel.cancelled() => return,
            }
            self.container_event(
                &h,
                Some(&cname),
                "Normal",
                "BackOff",
                &format!("Back-off pulling image {image_ref:?}"),
            );
            self.container_event(
                &h,
                Some(&cname),
                "Warning",
                "Failed",
                "Error: ImagePullBackOff",
            );
            self.set_state(&h, i, |s| {
                s.state = json!({"waiting": {"reason": "ImagePullBackOff", "message": format!("Back-off pulling image {image_ref:?}")}})
            });
            return;
        }
        // The lab's own images take their switches from args; a tutorial image its config.
        let sw = if lab_image.is_some() {
            match Switches::parse(&args) {
                Ok(sw) => sw,
                Err(msg) => {
                    self.container_event(
                        &h,
                        Some(&cname),
                        "Warning",
                        "Failed",
                        &format!("Error: {msg}"),
                    );
                    self.set_state(&h, i, |s| {
                        s.state =
                            json!({"waiting": {"reason": "CreateContainerError", "message": msg}})
                    });
                    return;
                }
            }
        } else {
            Switches::default()
        };
        let mut ports = container_ports(&c, "TCP");
        let udp_ports = container_ports(&c, "UDP");
        if let Some(p) = sw.port.filter(|p| !ports.contains(p)) {
            ports.push(p);
        }
        if let (true, Some(image)) = (ports.is_empty(), lab_image) {
            ports.push(image.default_port());
        }
        let addrs: Vec<IpAddr> = match sw.listen {
            Listen::All => vec![IpAddr::V4(h.pod_ip), IpAddr::V4(h.local_ip)],
            Listen::PodIp => vec![IpAddr::V4(h.pod_ip)],
            Listen::Localhost => vec![IpAddr::V4(h.local_ip)],
        };
        let id = Identity {
            pod: h.name.clone(),
            namespace: h.ns.clone(),
            pod_ip: IpAddr::V4(h.pod_ip),
            node: h.node.clone(),
            container: cname.clone(),
        };
        self.pull(&h, &cname, &image_ref, &policy);
        let mut backoff = Duration::from_secs(1);
        loop {
            let log = self.new_log(&h, &cname);
            type Main = std::pin::Pin<Box<dyn std::future::Future<Output = i32> + Send>>;
            let started: Result<(images::Running, Option<Main>), String> = match (&lab_image, &app)
            {
                (Some(image), _) => images::start(
                    &self.net.place,
                    *image,
                    &sw,
                    id.clone(),
                    &addrs,
                    &ports,
                    &h.life,
                )
                .await
                .and_then(|mut r| {
                    r.serve_udp(&self.net.place, *image, &sw, &addrs, &udp_ports)?;
                    Ok(r)
                })
                .map(|r| {
                    let udp = r.bound_udp.iter().map(|&(_, p, _)| format!("{p}/udp"));
                    let mut served: Vec<String> = ports.iter().map(u16::to_string).collect();
                    for p in udp {
                        if !served.contains(&p) {
                            served.push(p);
                        }
                    }
                    log.line(format!(
                        "{image_ref}: serving on port(s) {} as pod {}",
                        served.join(", "),
                        h.name
                    ));
                    let main: Option<Main> = sw.crash_after.map(|d| {
                        let code = sw.exit_code;
                        Box::pin(async move {
                            tokio::time::sleep(d).await;
                            code
                        }) as Main
                    });
                    (r, main)
                })
                .map_err(|e| format!("starting the server failed: {e}")),
                (None, Some(Ok(a))) => apps::start(
                    &self.net.place,
                    a.clone(),
                    id.clone(),
                    log.clone(),
                    &addrs,
                    &h.life,
                )
                .await
                .map(|st| (st.running, st.main))
                .map_err(|e| format!("starting the server failed: {e}")),
                (None, Some(Err(f))) => {
                    // The process starts and fails at once, as the real image does.
                    log.line(f.message.clone());
                    let code = f.exit_code;
                    if code == 128 {
                        // The runtime could not start the process at all.
                        Err(f.message.clone())
                    } else {
                        let running = images::Running::from_parts(
                            tokio_util::sync::CancellationToken::new(),
                            tokio_util::sync::CancellationToken::new(),
                            Vec::new(),
                        );
                        Ok((running, Some(Box::pin(async move { code }) as Main)))
                    }
                }
                (None, None) => return,
            };
            let (running, main) = match started {
                Ok(r) => r,
                Err(msg) => {
                    log.close();
                    self.container_event(
                        &h,
                        Some(&cname),
                        "Warning",
                        "Failed",
                        &format!("Error: {msg}"),
                    );
                    self.set_state(&h, i, |s| {
                        s.state =
                            json!({"waiting": {"reason": "CreateContainerError", "message": msg}})
                    });
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => { backoff = (backoff * 2).min(Duration::from_secs(10)); continue; }
                        _ = h.cancel.cancelled() => return,
                    }
                }
            };
            {
                let mut b = lock(&h.bound);
                b.retain(|(ip, p, _)| !running.bound.iter().any(|(i2, p2, _)| i2 == ip && p2 == p));
                b.extend(running.bound.iter().copied());
                let mut u = lock(&h.bound_udp);
                u.retain(|(ip, p, _)| {
                    !running
                        .bound_udp
                        .iter()
                        .any(|(i2, p2, _)| i2 == ip && p2 == p)
                });
                u.extend(running.bound_udp.iter().copied());
            }
            self.container_event(
                &h,
                Some(&cname),
                "Normal",
                "Created",
                &format!("Created container: {cname}"),
            );
            self.container_event(
                &h,
                Some(&cname),
                "Normal",
                "Started",
                &format!("Started container {cname}"),
            );
            let probe = c.get("readinessProbe").cloned().filter(Value::is_object);
            let started = now_rfc3339();
            self.set_state(&h, i, |s| {
                s.state = json!({"running": {"startedAt": started}});
                s.started = true;
                s.ready = probe.is_none();
            });
            let exit = self.supervise(&h, i, &c, probe.as_ref(), main).await;
            match exit {
                Some(_) => running.kill(),
                None => running.stop(),
            }
            drop(running);
            log.close();
            let Some(code) = exit else {
                return;
            };
            let finished = now_rfc3339();
            let reason = if code == 0 { "Completed" } else { "Error" };
            let restart = match restart_policy.as_str() {
                "Never" => false,
                "OnFailure" => code != 0,
                _ => true,
            };
            let terminated = json!({"exitCode": code, "reason": reason, "startedAt": started, "finishedAt": finished, "containerID": format!("containerd://{}-{}", h.uid, cname)});
            if !restart {
                self.set_state(&h, i, |s| {
                    s.ready = false;
                    s.state = json!({"terminated": terminated});
                    s.done = Some(code);
                });
                return;
            }
            // Until it runs again, the crashed instance is both the latest and the previous one
            // (`kubectl logs` and `kubectl logs --previous` both show it), as with the kubelet.
            if let Some(entry) = lock(&h.logs).get_mut(&cname) {
                entry.1 = Some(entry.0.clone());
            }
            self.set_state(&h, i, |s| {
                s.last_state = json!({"terminated": terminated});
                s.restarts += 1;
                s.ready = false;
                s.state = json!({"waiting": {"reason": "CrashLoopBackOff", "message": format!("back-off {}s restarting failed container={} pod={}_{}({})", backoff.as_secs(), s.name, h.name, h.ns, h.uid)}});
            });
            self.container_event(
                &h,
                Some(&cname),
                "Warning",
                "BackOff",
                &format!(
                    "Back-off restarting failed container {cname} in pod {}_{}({})",
                    h.name, h.ns, h.uid
                ),
            );
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = h.cancel.cancelled() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
            // The image is present now.
            self.container_event(
                &h,
                Some(&cname),
                "Normal",
                "Pulled",
                &format!("Container image {image_ref:?} already present on machine"),
            );
        }
    }

    /// A container's environment as the kubelet builds it: HOSTNAME, `env` values, the pod
    /// fields `fieldRef` names, and ConfigMap/Secret keys the lab has.
    fn container_env(
        &self,
        h: &PodHandle,
        c: &Value,
    ) -> std::collections::BTreeMap<String, String> {
        use base64::Engine;
        let mut env = std::collections::BTreeMap::new();
        env.insert("HOSTNAME".to_string(), h.name.clone());
        let pod = self.store.get(core("pods"), &h.ns, &h.name);
        for e in c["env"].as_array().into_iter().flatten() {
            let Some(name) = e["name"].as_str() else {
                continue;
            };
            let value = if let Some(v) = e["value"].as_str() {
                Some(v.to_string())
            } else if let Some(path) = e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                match path {
                    "metadata.name" => Some(h.name.clone()),
                    "metadata.namespace" => Some(h.ns.clone()),
                    "metadata.uid" => Some(h.uid.clone()),
                    "spec.nodeName" => Some(h.node.clone()),
                    "status.podIP" => Some(h.pod_ip.to_string()),
                    "status.hostIP" => Some(self.node_ip(&h.node)),
                    other => pod.as_ref().and_then(|p| {
                        other
                            .split('.')
                            .try_fold(&**p, |v, k| v.get(k))
                            .and_then(|v| v.as_str().map(str::to_string))
                    }),
                }
            } else if let Some(r) = e["valueFrom"]["configMapKeyRef"].as_object() {
                let (n, k) = (
                    r["name"].as_str().unwrap_or_default(),
                    r["key"].as_str().unwrap_or_default(),
                );
                self.store
                    .get(core("configmaps"), &h.ns, n)
                    .and_then(|cm| cm["data"][k].as_str().map(str::to_string))
            } else if let Some(r) = e["valueFrom"]["secretKeyRef"].as_object() {
                let (n, k) = (
                    r["name"].as_str().unwrap_or_default(),
                    r["key"].as_str().unwrap_or_default(),
                );
                self.store
                    .get(core("secrets"), &h.ns, n)
                    .and_then(|s| s["data"][k].as_str().map(str::to_string))
                    .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
            } else {
                None
            };
            if let Some(v) = value {
                env.insert(name.to_string(), v);
            }
        }
        env
    }

    /// Runs probes until the pod is stopped (None) or the container's main process ends
    /// (Some(exit code)).
    async fn supervise(
        &self,
        h: &PodHandle,
        i: usize,
        c: &Value,
        probe: Option<&Value>,
        main: Option<std::pin::Pin<Box<dyn std::future::Future<Output = i32> + Send>>>,
    ) -> Option<i32> {
        let exit = async {
            match main {
                Some(m) => m.await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(exit);
        let cname = c["name"].as_str().unwrap_or_default();
        let Some(probe) = probe else {
            tokio::select! {
                code = &mut exit => return Some(code),
                _ = h.cancel.cancelled() => return None,
            }
        };
        let secs = |k: &str, d: u64| probe[k].as_u64().unwrap_or(d);
        let period = Duration::from_secs(secs("periodSeconds", 10).max(1));
        let initial = Duration::from_secs(secs("initialDelaySeconds", 0));
        let failure_threshold = secs("failureThreshold", 3).max(1);
        let success_threshold = secs("successThreshold", 1).max(1);
        tokio::select! {
            _ = tokio::time::sleep(initial) => {}
            code = &mut exit => return Some(code),
            _ = h.cancel.cancelled() => return None,
        }
        let (mut ok_run, mut fail_run, mut ready) = (0u64, 0u64, false);
        loop {
            let outcome = self.probe_once(h, c, probe).await;
            let ok = outcome.is_ok();
            if ok {
                ok_run += 1;
                fail_run = 0;
            } else {
                fail_run += 1;
                ok_run = 0;
            }
            let next = if ok_run >= success_threshold {
                true
            } else if fail_run >= failure_threshold || !ready {
                false
            } else {
                ready
            };
            if let Err(output) = outcome {
                self.container_event(
                    h,
                    Some(cname),
                    "Warning",
                    "Unhealthy",
                    &format!("Readiness probe failed: {output}"),
                );
            }
            if next != ready {
                ready = next;
                self.set_state(h, i, |s| s.ready = next);
            }
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                code = &mut exit => return Some(code),
                _ = h.cancel.cancelled() => return None,
            }
        }
    }

    /// One probe; the failure's output as the kubelet reports it.
    async fn probe_once(&self, h: &PodHandle, c: &Value, probe: &Value) -> Result<(), String> {
        let port_of = |p: &Value| -> Option<u16> {
            match p {
                Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
                Value::String(s) => s.parse().ok().or_else(|| {
                    c["ports"].as_array()?.iter().find(|cp| cp["name"] == *s)?["containerPort"]
                        .as_u64()
                        .and_then(|n| u16::try_from(n).ok())
                }),
                _ => None,
            }
        };
        let timeout = Duration::from_secs(probe["timeoutSeconds"].as_u64().unwrap_or(1).max(1));
        let ip = IpAddr::V4(h.pod_ip);
        if let Some(get) = probe.get("httpGet") {
            let Some(port) = port_of(&get["port"]) else {
                return Err(format!(
                    "port {} not found in the container's ports",
                    get["port"]
                ));
            };
            let path = get["path"].as_str().unwrap_or("/").to_string();
            let url = format!("http://{ip}:{port}{path}");
            let fut = async {
                let s = self.dial_pod_ip(ip, port).await.map_err(|e| {
                    format!(
                        "Get {url:?}: dial tcp {ip}:{port}: connect: {}",
                        connect_error(&e)
                    )
                })?;
                let (mut send, conn) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(s))
                        .await
                        .map_err(|e| format!("Get {url:?}: {e}"))?;
                tokio::spawn(conn);
                let req = http::Request::get(path.clone())
                    .header(http::header::HOST, format!("{ip}:{port}"))
                    .header(http::header::USER_AGENT, "kube-probe/1.34")
                    .body(http_body_util::Empty::<bytes::Bytes>::new())
                    .map_err(|e| e.to_string())?;
                let resp = send
                    .send_request(req)
                    .await
                    .map_err(|e| format!("Get {url:?}: {e}"))?;
                let code = resp.status().as_u16();
                if (200..400).contains(&code) {
                    Ok(())
                } else {
                    Err(format!("HTTP probe failed with statuscode: {code}"))
                }
            };
            return tokio::time::timeout(timeout, fut).await.unwrap_or_else(|_| {
                Err(format!(
                    "Get {url:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
                ))
            });
        }
        if let Some(tcp) = probe.get("tcpSocket") {
            let Some(port) = port_of(&tcp["port"]) else {
                return Err(format!(
                    "port {} not found in the container's ports",
                    tcp["port"]
                ));
            };
            return match tokio::time::timeout(timeout, self.dial_pod_ip(ip, port)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(format!(
                    "dial tcp {ip}:{port}: connect: {}",
                    connect_error(&e)
                )),
                Err(_) => Err(format!("dial tcp {ip}:{port}: i/o timeout")),
            };
        }
        // exec and grpc probes: the lab has no processes to exec into; report success.
        Ok(())
    }
}

/// A container's declared ports of `protocol` (TCP when unset), in order, without repeats.
fn container_ports(c: &Value, protocol: &str) -> Vec<u16> {
    let mut out: Vec<u16> = Vec::new();
    for p in c["ports"].as_array().into_iter().flatten() {
        if p["protocol"].as_str().unwrap_or("TCP") != protocol {
            continue;
        }
        let port = p["containerPort"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok());
        if let Some(port) = port.filter(|p| !out.contains(p)) {
            out.push(port);
        }
    }
    out
}

/// How Go phrases a failed connect.
fn connect_error(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        _ => e.to_string(),
    }
}

impl PodHandle {
    fn actual_port(&self, ip: IpAddr, port: u16) -> u16 {
        lock(&self.bound)
            .iter()
            .find(|(i, p, _)| *i == ip && *p == port)
            .map(|(_, _, a)| *a)
            .unwrap_or(port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ports_are_split_by_protocol() {
        let c = json!({"ports": [
            {"containerPort": 9000},
            {"containerPort": 9000, "protocol": "UDP"},
            {"containerPort": 53, "protocol": "UDP"},
            {"containerPort": 9000, "protocol": "TCP"},
            {"containerPort": 7, "protocol": "SCTP"},
        ]});
        assert_eq!(container_ports(&c, "TCP"), vec![9000]);
        assert_eq!(container_ports(&c, "UDP"), vec![9000, 53]);
        assert!(container_ports(&json!({}), "UDP").is_empty());
    }

    #[test]
    fn addresses_are_loopback_and_never_reused() {
        let net = LabNet::default();
        let mut seen = std::collections::HashSet::new();
        let mut claims = Vec::new();
        for _ in 0..600 {
            let (p, l, c) = net.allocate();
            claims.push(c);
            assert!(p.is_loopback() && l.is_loopback());
            assert_ne!(p.octets()[3], 0);
            assert_eq!(p.octets()[2..], l.octets()[2..]);
            assert!(seen.insert(p), "{p} reused");
        }
        // A second lab side by side skips every address the first one holds.
        let other = LabNet::default();
        let (p, _, _) = other.allocate();
        assert!(!seen.contains(&p), "{p} is held by the first lab");
    }
}
