//! `kubeway up`: every Service in scope at a local address of its own and its cluster names,
//! followed live. Each Service is placed by the engine's addressing, each TCP port carried by
//! the engine's carrier (NodePort, else the forward router), UDP relayed to a reachable
//! NodePort; names go into a hosts file through a journaled block, into an HTTP front door that
//! routes by `Host`, and into the environment of a local process (`--exec`).

use std::collections::{BTreeMap, HashSet};
use std::io::IsTerminal;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use kubeway_core::target::{PortRef, Target, TargetKind};
use kubeway_engine::addressing::Addressing;
use kubeway_engine::carrier::{Carrier, ServicePort};
use kubeway_engine::journal::{self, Change, Journal, Kind, Opened, ProcessId};
use kubeway_engine::reach::Direct;
use kubeway_engine::{Event, Events, Router, RouterOptions, hostproxy, serve_routed, svcenv, udp};
use kubeway_host::hosts::{self, Entry};
use kubeway_kube::services::{Namespaces, Services, Svc, SvcKind, SvcPort, watch_services};
use kubeway_kube::{Cluster, ConnectOptions, connect};
use kubeway_net::Stats;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::cli::{Cli, Output, UpArgs};
use crate::lab::shutdown_signal;

/// One port as served locally.
struct PortServed {
    port: u16,
    protocol: String,
    name: Option<String>,
    /// Where it listens (None: not carried).
    local: Option<SocketAddr>,
    /// How connections go, or why the port is not carried.
    way: String,
    stats: Arc<Stats>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl PortServed {
    fn json(&self) -> Value {
        use std::sync::atomic::Ordering::Relaxed;
        json!({
            "port": self.port, "protocol": self.protocol, "name": self.name,
            "local": self.local.map(|l| l.to_string()), "way": self.way,
            "open": self.stats.open.load(Relaxed), "connections": self.stats.accepted.load(Relaxed),
        })
    }
}

/// One address of a Service: the Service's own, or a headless Service's pod's.
struct Place {
    /// The pod, for a headless Service.
    pod: Option<String>,
    /// DNS names of this address.
    names: Vec<String>,
    ip: IpAddr,
    _claim: Option<tokio::net::TcpListener>,
    ports: Vec<PortServed>,
}

/// A Service as served.
struct Served {
    svc: Svc,
    places: Vec<Place>,
    cancel: CancellationToken,
}

impl Served {
    fn json(&self) -> Value {
        let addresses: Vec<Value> = self
            .places
            .iter()
            .map(|p| {
                json!({
                    "pod": p.pod, "address": p.ip.to_string(), "names": p.names,
                    "ports": p.ports.iter().map(PortServed::json).collect::<Vec<_>>(),
                })
            })
            .collect();
        let first = self.places.first();
        json!({
            "event": "service", "namespace": self.svc.namespace, "name": self.svc.name,
            "type": self.svc.type_,
            "address": first.map(|p| p.ip.to_string()),
            "names": first.map(|p| p.names.clone()).unwrap_or_default(),
            "ports": first.map(|p| p.ports.iter().map(PortServed::json).collect::<Vec<_>>()).unwrap_or_default(),
            "way": first.and_then(|p| p.ports.iter().find(|s| s.local.is_some())).map(|s| s.way.clone()),
            "addresses": addresses,
        })
    }

    fn text(&self) -> String {
        let mut out = format!("{}/{}", self.svc.namespace, self.svc.name);
        for p in &self.places {
            out.push_str(&format!(
                "\n  {}{}  {}",
                p.ip,
                p.pod
                    .as_deref()
                    .map(|pod| format!(" (pod {pod})"))
                    .unwrap_or_default(),
                p.names.join(" ")
            ));
            for s in &p.ports {
                match s.local {
                    Some(l) if l.port() == s.port => {
                        out.push_str(&format!("\n    {}/{}: {}", s.port, s.protocol, s.way))
                    }
                    Some(l) => out.push_str(&format!(
                        "\n    {}/{} on {} (moved): {}",
                        s.port,
                        s.protocol,
                        l.port(),
                        s.way
                    )),
                    None => out.push_str(&format!(
                        "\n    {}/{}: not carried: {}",
                        s.port, s.protocol, s.way
                    )),
                }
            }
        }
        out
    }

    async fn stop(self) {
        self.cancel.cancel();
        for p in self.places {
            for s in p.ports {
                if let Some(t) = s.task {
                    let _ = t.await;
                }
            }
        }
    }
}

/// What `up` runs with.
struct Up {
    cluster: Cluster,
    direct: Direct,
    addressing: Addressing,
    probe_timeout: Duration,
    /// A node address that answered a NodePort probe (UDP goes there).
    reachable_node: Option<IpAddr>,
    domain: String,
    /// Namespaces in the order given (the short name goes to the first).
    order: Vec<String>,
    served: BTreeMap<String, Served>,
    events: Events,
    out: Out,
    cancel: CancellationToken,
}

#[derive(Clone, Copy)]
struct Out {
    json: bool,
}

impl Out {
    fn event(&self, text: impl AsRef<str>, v: Value) {
        if self.json {
            println!("{v}");
        } else {
            eprintln!("{}", text.as_ref());
        }
    }
}

/// Whether a Service port is carried over TCP.
fn is_tcp(p: &SvcPort) -> bool {
    p.protocol.eq_ignore_ascii_case("TCP")
}

impl Up {
    /// The namespaces that get short names first: the order given, then the rest by name.
    fn short_owner(&self, name: &str) -> Option<String> {
        let mut holders: Vec<&Served> = self
            .served
            .values()
            .filter(|s| s.svc.name == name)
            .collect();
        holders.sort_by_key(|s| {
            (
                self.order
                    .iter()
                    .position(|n| *n == s.svc.namespace)
                    .unwrap_or(usize::MAX),
                s.svc.namespace.clone(),
            )
        });
        holders.first().map(|s| s.svc.namespace.clone())
    }

    async fn place_service(&mut self, svc: &Svc) -> Result<Served> {
        let cancel = self.cancel.child_token();
        let used: HashSet<IpAddr> = self
            .served
            .values()
            .flat_map(|s| s.places.iter().map(|p| p.ip))
            .collect();
        let mut places = Vec::new();
        match &svc.kind {
            SvcKind::ExternalName { .. } => {}
            SvcKind::ClusterIp { .. } => {
                let key = svc.key();
                let place = self
                    .place_address(&key, svc, None, &used, &cancel)
                    .await
                    .inspect_err(|_| cancel.cancel())?;
                places.push(place);
            }
            SvcKind::Headless { pods } => {
                let mut used = used;
                for pod in pods {
                    let key = format!("{}/{}", svc.key(), pod.pod);
                    let place = self
                        .place_address(&key, svc, Some(pod), &used, &cancel)
                        .await
                        .inspect_err(|_| cancel.cancel())?;
                    used.insert(place.ip);
                    places.push(place);
                }
            }
        }
        Ok(Served {
            svc: svc.clone(),
            places,
            cancel,
        })
    }

    async fn place_address(
        &self,
        key: &str,
        svc: &Svc,
        pod: Option<&kubeway_kube::services::HeadlessPod>,
        used: &HashSet<IpAddr>,
        cancel: &CancellationToken,
    ) -> Result<Place> {
        let tcp: Vec<&SvcPort> = svc.ports.iter().filter(|p| is_tcp(p)).collect();
        let numbers: Vec<u16> = tcp.iter().map(|p| p.port).collect();
        let placement = self.addressing.place(key, &numbers, used)?;
        let ip = placement.ip;
        let mut ports = Vec::new();
        for (port, bound) in placement.bound {
            let Some(sp) = tcp.iter().find(|p| p.port == port) else {
                continue;
            };
            let stats = Arc::new(Stats::default());
            let local = bound.local;
            let (way, task) = match pod {
                None => {
                    let carrier = Carrier::choose(
                        &self.cluster,
                        &self.direct,
                        &ServicePort {
                            namespace: svc.namespace.clone(),
                            service: svc.name.clone(),
                            port,
                            node_port: sp.node_port,
                        },
                        self.probe_timeout,
                        cancel.clone(),
                        self.events.clone(),
                    )
                    .await?;
                    let way = match carrier.why() {
                        Some(why) => format!("{} ({why})", carrier.describe()),
                        None => carrier.describe(),
                    };
                    let task = carrier.serve(bound.listener, stats.clone(), cancel.clone());
                    (way, task)
                }
                Some(pod) => {
                    let pod_port = pod
                        .ports
                        .get(sp.name.as_deref().unwrap_or_default())
                        .copied()
                        .unwrap_or(port);
                    let mut cluster = self.cluster.clone();
                    cluster.namespace = svc.namespace.clone();
                    let target = Target::parse(&format!("pod/{}", pod.pod), TargetKind::Pod)?;
                    let router = Router::start(
                        &cluster,
                        &target,
                        &[PortRef::Number(pod_port)],
                        RouterOptions::default(),
                        self.events.clone(),
                        cancel.clone(),
                    )
                    .await?
                    .into_iter()
                    .next()
                    .context("no router for the pod's port")?;
                    let task = serve_routed(bound.listener, router, stats.clone(), cancel.clone());
                    (format!("forward to pod {}:{pod_port}", pod.pod), task)
                }
            };
            ports.push(PortServed {
                port,
                protocol: "TCP".into(),
                name: sp.name.clone(),
                local: Some(local),
                way,
                stats,
                task: Some(task),
            });
        }
        for sp in svc.ports.iter().filter(|p| !is_tcp(p)) {
            let served = self.udp(ip, sp, pod.is_some(), cancel).await;
            ports.push(served);
        }
        Ok(Place {
            pod: pod.map(|p| p.pod.clone()),
            names: Vec::new(),
            ip,
            _claim: placement.claim,
            ports,
        })
    }

    /// A UDP port: relayed to its NodePort where the host reaches a node, else not carried.
    async fn udp(
        &self,
        ip: IpAddr,
        sp: &SvcPort,
        headless: bool,
        cancel: &CancellationToken,
    ) -> PortServed {
        let not = |why: String| PortServed {
            port: sp.port,
            protocol: sp.protocol.clone(),
            name: sp.name.clone(),
            local: None,
            way: why,
            stats: Arc::default(),
            task: None,
        };
        if !sp.protocol.eq_ignore_ascii_case("UDP") {
            return not(format!(
                "{} is not carried (kubeway carries TCP, and UDP through a reachable NodePort)",
                sp.protocol
            ));
        }
        let (Some(node), Some(np), false) = (self.reachable_node, sp.node_port, headless) else {
            return not(
                "only the API server is reachable from this host, and port-forward carries TCP only"
                    .into(),
            );
        };
        let socket = match udp::bind(ip, sp.port).await {
            Ok(s) => s,
            Err(e) => return not(format!("binding UDP {ip}:{}: {e}", sp.port)),
        };
        let local = socket.local_addr().ok();
        let upstream = SocketAddr::new(node, np);
        let task = tokio::spawn(udp::relay(socket, upstream, Arc::default(), cancel.clone()));
        PortServed {
            port: sp.port,
            protocol: "UDP".into(),
            name: sp.name.clone(),
            local,
            way: format!("UDP NodePort {upstream}"),
            stats: Arc::default(),
            task: Some(task),
        }
    }

    /// Names every address: `SVC.NS…` (and `SVC` for the first namespace), pods of headless
    /// Services `HOST.SVC.NS…`.
    fn name_all(&mut self) {
        let keys: Vec<String> = self.served.keys().cloned().collect();
        for key in keys {
            let (name, ns) = match self.served.get(&key) {
                Some(s) => (s.svc.name.clone(), s.svc.namespace.clone()),
                None => continue,
            };
            let short = self.short_owner(&name).as_deref() == Some(ns.as_str());
            let domain = self.domain.clone();
            let Some(s) = self.served.get_mut(&key) else {
                continue;
            };
            let headless = matches!(s.svc.kind, SvcKind::Headless { .. });
            let service_names = hosts::service_names(&name, &ns, &domain, short);
            for (i, p) in s.places.iter_mut().enumerate() {
                let mut names = Vec::new();
                if let Some(pod) = &p.pod {
                    let host = match &s.svc.kind {
                        SvcKind::Headless { pods } => pods
                            .iter()
                            .find(|h| h.pod == *pod)
                            .and_then(|h| h.hostname.clone())
                            .unwrap_or_else(|| pod.clone()),
                        _ => pod.clone(),
                    };
                    names.push(format!("{host}.{name}.{ns}"));
                    names.push(format!("{host}.{name}.{ns}.svc"));
                    names.push(format!("{host}.{name}.{ns}.svc.{domain}"));
                }
                // A headless Service's own names go to its first pod.
                if !headless || i == 0 {
                    names.extend(service_names.iter().cloned());
                }
                p.names = names;
            }
        }
    }

    fn host_entries(&self) -> Vec<Entry> {
        self.served
            .values()
            .flat_map(|s| s.places.iter())
            .filter(|p| !p.names.is_empty())
            .map(|p| Entry {
                ip: p.ip,
                names: p.names.clone(),
            })
            .collect()
    }

    /// `svc.ns.localhost` (and `svc.localhost` for short names) → the Service's port 80, else
    /// its first TCP port.
    fn http_routes(&self) -> BTreeMap<String, SocketAddr> {
        let mut routes = BTreeMap::new();
        for s in self.served.values() {
            let Some(p) = s.places.first() else { continue };
            let tcp: Vec<&PortServed> = p
                .ports
                .iter()
                .filter(|x| x.protocol == "TCP" && x.local.is_some())
                .collect();
            let Some(target) = tcp
                .iter()
                .find(|x| x.port == 80)
                .or_else(|| tcp.first())
                .and_then(|x| x.local)
            else {
                continue;
            };
            routes.insert(
                format!("{}.{}.localhost", s.svc.name, s.svc.namespace),
                target,
            );
            if p.names.contains(&s.svc.name) {
                routes.insert(format!("{}.localhost", s.svc.name), target);
            }
        }
        routes
    }

    /// The Service variables a pod of the first namespace would get, pointing here.
    fn variables(&self) -> Vec<(String, String)> {
        let first = self.order.first().cloned().unwrap_or_default();
        let services: Vec<svcenv::LocalService> = self
            .served
            .values()
            .filter(|s| s.svc.namespace == first)
            .filter(|s| matches!(s.svc.kind, SvcKind::ClusterIp { .. }))
            .filter_map(|s| {
                let p = s.places.first()?;
                Some(svcenv::LocalService {
                    name: s.svc.name.clone(),
                    ip: p.ip,
                    ports: p
                        .ports
                        .iter()
                        .filter_map(|x| {
                            Some(svcenv::LocalPort {
                                name: x.name.clone(),
                                port: x.local?.port(),
                                protocol: x.protocol.clone(),
                            })
                        })
                        .collect(),
                })
            })
            .collect();
        svcenv::variables(&services)
    }

    /// Brings what is served in line with `set`. Returns whether anything changed.
    async fn reconcile(&mut self, set: &Services, wanted: &[String]) -> bool {
        // `default/kubernetes` is the API server itself, which the kubeconfig already reaches.
        let desired: Vec<&Svc> = set
            .services
            .iter()
            .filter(|s| !(s.namespace == "default" && s.name == "kubernetes"))
            .filter(|s| wanted.is_empty() || wanted.contains(&s.name))
            .collect();
        let mut changed = false;
        let stale: Vec<String> = self
            .served
            .iter()
            .filter(|(k, s)| !desired.iter().any(|d| d.key() == **k && **d == s.svc))
            .map(|(k, _)| k.clone())
            .collect();
        for key in stale {
            if let Some(s) = self.served.remove(&key) {
                let still = desired.iter().any(|d| d.key() == key);
                if !still {
                    self.out.event(
                        format!("{key}: removed"),
                        json!({"event": "removed", "namespace": s.svc.namespace, "name": s.svc.name}),
                    );
                }
                s.stop().await;
                changed = true;
            }
        }
        for svc in desired {
            if self.served.contains_key(&svc.key()) {
                continue;
            }
            match self.place_service(svc).await {
                Ok(s) => {
                    self.served.insert(svc.key(), s);
                    changed = true;
                }
                Err(e) => self.out.event(
                    format!("{}: not served: {e:#}", svc.key()),
                    json!({"event": "error", "namespace": svc.namespace, "name": svc.name, "error": format!("{e:#}")}),
                ),
            }
        }
        if changed {
            self.name_all();
        }
        changed
    }
}

/// Keeps the hosts file's block and the journal in step.
struct HostsFile {
    path: PathBuf,
    tag: String,
    journal: Journal,
    recorded: bool,
}

impl HostsFile {
    fn update(&mut self, entries: &[Entry]) -> Result<()> {
        if !self.recorded {
            self.journal.record(Change::Hosts {
                file: self.path.clone(),
                tag: self.tag.clone(),
            })?;
            self.recorded = true;
        }
        hosts::update(&self.path, &self.tag, entries)
            .with_context(|| format!("writing names into {}", self.path.display()))
    }

    fn finish(mut self) -> Result<()> {
        hosts::remove(&self.path, &self.tag)
            .with_context(|| format!("removing kubeway's names from {}", self.path.display()))?;
        self.journal.forget(|_| true)?;
        self.journal.finish()?;
        Ok(())
    }
}

/// Undoes what a dead `up` recorded: its names in hosts files.
fn undo_stale(record: journal::Record, out: Out) -> Vec<Change> {
    let mut left = Vec::new();
    for change in record.changes {
        // Addresses need nothing undone; an `up` writes nothing else.
        if let Change::Hosts { file, tag } = &change {
            match hosts::remove(file, tag) {
                Ok(()) => out.event(
                    format!(
                        "a previous `up` (pid {}) ended without cleaning up: its names in {} removed",
                        record.owner.pid,
                        file.display()
                    ),
                    json!({"event": "undo", "change": change, "result": "removed"}),
                ),
                Err(e) => {
                    out.event(
                        format!("could not remove names from {}: {e}", file.display()),
                        json!({"event": "undo", "change": change, "result": "error", "error": e.to_string()}),
                    );
                    left.push(change);
                }
            }
        }
    }
    left
}

fn scope(cli: &Cli, args: &UpArgs, cluster: &Cluster) -> (Namespaces, Vec<String>) {
    if args.all_namespaces {
        return (Namespaces::All, vec![cluster.namespace.clone()]);
    }
    let list: Vec<String> = cli
        .namespace
        .as_deref()
        .map(|n| {
            n.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_else(|| vec![cluster.namespace.clone()]);
    (Namespaces::Some(list.clone()), list)
}

/// Runs `kubeway up`.
pub async fn run(cli: &Cli, args: &UpArgs) -> Result<()> {
    let out = Out {
        json: cli.output == Output::Json,
    };
    let stop = shutdown_signal();
    let opts = ConnectOptions {
        kubeconfig: cli.kubeconfig.clone(),
        context: cli.context.clone(),
        namespace: cli
            .namespace
            .as_deref()
            .and_then(|n| n.split(',').next())
            .map(str::to_string),
    };
    let cluster = connect(&opts).await?;
    let hosts_path = match (&args.hosts_file, args.hosts) {
        (Some(p), _) => Some(
            std::path::absolute(p).with_context(|| format!("the hosts file {}", p.display()))?,
        ),
        (None, true) => Some(PathBuf::from("/etc/hosts")),
        (None, false) => None,
    };
    // The journal: one `up` per cluster that writes names; what a dead one left is undone.
    let mut journal_slot = None;
    if hosts_path.is_some() || args.cleanup {
        let dir = journal::open_state_dir(args.state_dir.as_deref())?;
        match Journal::open(&dir, Kind::Up, &cluster.server, &cluster.context)? {
            Opened::Busy { owner } => bail!(
                "another `kubeway up` (pid {}) writes names for this cluster; stop it first",
                owner
                    .map(|o| o.owner.pid.to_string())
                    .unwrap_or_else(|| "unknown".into())
            ),
            Opened::Locked { mut journal, stale } => {
                if let Some(record) = stale {
                    let left = undo_stale(record, out);
                    journal.adopt(left)?;
                }
                if args.cleanup {
                    let left = journal.changes().len();
                    journal.finish()?;
                    out.event(
                        if left == 0 {
                            "nothing left to clean up".to_string()
                        } else {
                            format!("{left} change(s) could not be undone; see above")
                        },
                        json!({"event": "cleanup", "left": left}),
                    );
                    return Ok(());
                }
                journal_slot = Some(journal);
            }
        }
    }
    let mut hosts_file = match (hosts_path, journal_slot) {
        (Some(path), Some(journal)) => {
            // Fail before serving anything when the file cannot be written.
            hosts::update(&path, "kubeway-check", &[]).with_context(|| {
                format!(
                    "kubeway up --hosts needs to write {} (run as root, or give --hosts-file PATH)",
                    path.display()
                )
            })?;
            let me = ProcessId::current();
            let tag = format!("{}.{}", me.pid, me.start_time.unwrap_or_else(|| "0".into()));
            Some(HostsFile {
                path,
                tag,
                journal,
                recorded: false,
            })
        }
        _ => None,
    };

    let cancel = CancellationToken::new();
    let (scope, order) = scope(cli, args, &cluster);
    let mut rx = watch_services(&cluster, &scope, args.selector.as_deref(), cancel.clone());
    let direct = Direct::learn(&opts).await;
    let printer_out = out;
    let events: Events = Arc::new(move |e: Event| match &e {
        Event::Connection(c)
            if c.end != kubeway_engine::End::Completed && c.end != kubeway_engine::End::Aborted =>
        {
            printer_out.event(
                format!(
                    "connection {}: {} -> {} port {}{}: {}",
                    if c.end == kubeway_engine::End::Failed {
                        "failed"
                    } else {
                        "cut, the client was reset"
                    },
                    c.local,
                    c.target,
                    c.remote,
                    c.pod
                        .as_deref()
                        .map(|p| format!(" (pod {p})"))
                        .unwrap_or_default(),
                    c.error.as_deref().unwrap_or("unknown")
                ),
                serde_json::to_value(&e).unwrap_or_default(),
            )
        }
        Event::Carrier {
            service,
            port,
            via,
            why,
            ..
        } => printer_out.event(
            format!("{service} port {port}: now via {via}: {why}"),
            serde_json::to_value(&e).unwrap_or_default(),
        ),
        _ => {}
    });
    let mut up = Up {
        cluster: cluster.clone(),
        direct,
        addressing: Addressing::detect(),
        probe_timeout: args.probe_timeout,
        reachable_node: None,
        domain: args.cluster_domain.clone(),
        order,
        served: BTreeMap::new(),
        events,
        out,
        cancel: cancel.clone(),
    };

    // The first list: a refusal ends `up` at once, naming the status.
    let first = loop {
        {
            let set = rx.borrow_and_update().clone();
            if set.synced {
                break set;
            }
            if let Some(f) = &set.api_error
                && f.is_refusal()
            {
                cancel.cancel();
                bail!("API layer: {f}");
            }
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() { bail!("the Service watch ended before it listed anything") },
            _ = tokio::time::sleep(Duration::from_secs(15)) => {
                let f = rx.borrow().api_error.clone();
                if let Some(f) = f {
                    cancel.cancel();
                    bail!("API layer: {f}");
                }
            }
        }
    };
    up.reachable_node = reachable_node(&up.direct, &first, args.probe_timeout).await;
    let wanted = args.services.clone();
    let mut front = None;
    let mut front_addr = None;
    let routes: hostproxy::Routes = Arc::default();
    if let Some(port) = args.http_port {
        let listener = kubeway_net::listen(SocketAddr::from(([127, 0, 0, 1], port)))
            .with_context(|| format!("listening on 127.0.0.1:{port} for --http-port"))?;
        front_addr = listener.local_addr().ok();
        front = Some(tokio::spawn(hostproxy::serve(
            listener,
            routes.clone(),
            Arc::default(),
            cancel.clone(),
        )));
    }
    let mut child: Option<tokio::process::Child> = None;
    let mut set = first;
    let mut first_round = true;
    let mut api_down = false;
    let result: Result<Option<i32>> = async {
        let mut stop = std::pin::pin!(stop);
        loop {
            if let Some(f) = &set.api_error {
                if !api_down {
                    out.event(
                        format!(
                            "API server trouble, retrying (the Services keep being served): {f}"
                        ),
                        json!({"event": "api", "state": "unreachable", "error": f.to_string()}),
                    );
                }
                api_down = true;
            } else if api_down {
                api_down = false;
                out.event(
                    "API server answers again; following Services again",
                    json!({"event": "api", "state": "ok"}),
                );
            }
            let changed = up.reconcile(&set, &wanted).await;
            if changed || first_round {
                for s in up.served.values() {
                    if first_round {
                        out.event(s.text(), s.json());
                    }
                }
                if let Some(h) = hosts_file.as_mut() {
                    h.update(&up.host_entries())?;
                }
                *routes.write().unwrap_or_else(|e| e.into_inner()) = up.http_routes();
                if let Some(path) = &args.env_file {
                    let text = svcenv::dotenv(&up.variables());
                    kubeway_host::files::replace(path, text.as_bytes())
                        .with_context(|| format!("writing {}", path.display()))?;
                }
            }
            if first_round {
                first_round = false;
                if !out.json {
                    let mut ready = format!("{} Service(s) up", up.served.len());
                    if let Some(a) = front_addr {
                        ready.push_str(&format!(
                            "; http://SVC.NS.localhost:{}/ reaches each one",
                            a.port()
                        ));
                    }
                    if let Some(h) = &hosts_file {
                        ready.push_str(&format!("; names in {}", h.path.display()));
                    }
                    ready.push_str(if args.exec { "" } else { "; Ctrl-C stops" });
                    eprintln!("{ready}");
                } else {
                    println!(
                        "{}",
                        json!({"event": "ready", "services": up.served.len(),
                               "http": front_addr.map(|a| a.to_string())})
                    );
                }
                if args.exec {
                    let vars = up.variables();
                    let (program, rest) = args
                        .command
                        .split_first()
                        .context("--exec needs a command after `--`")?;
                    let mut cmd = tokio::process::Command::new(program);
                    cmd.args(rest).envs(vars);
                    if std::io::stdin().is_terminal() {
                        cmd.stdin(std::process::Stdio::inherit());
                    }
                    child = Some(cmd.spawn().with_context(|| {
                        format!("starting {}", kubeway_core::quote::quote(program))
                    })?);
                }
            } else if changed {
                let now: Vec<String> = up.served.keys().cloned().collect();
                for key in now {
                    if let Some(s) = up.served.get(&key) {
                        out.event(s.text(), s.json());
                    }
                }
            }
            let exited = async {
                match child.as_mut() {
                    Some(c) => c.wait().await.ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut stop => return Ok(None),
                status = exited => {
                    let code = status.and_then(|s| s.code()).unwrap_or(1);
                    return Ok(Some(code));
                }
                r = rx.changed() => {
                    if r.is_err() {
                        return Ok(None);
                    }
                    // Let a burst of changes settle into one round.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    set = rx.borrow_and_update().clone();
                }
            }
        }
    }
    .await;
    // Take everything back: listeners, the front door, the names.
    cancel.cancel();
    let served = std::mem::take(&mut up.served);
    for (_, s) in served {
        s.stop().await;
    }
    if let Some(f) = front {
        let _ = f.await;
    }
    if let Some(h) = hosts_file {
        let path = h.path.clone();
        match h.finish() {
            Ok(()) => out.event(
                format!("names removed from {}", path.display()),
                json!({"event": "hosts", "state": "removed", "file": path}),
            ),
            Err(e) => out.event(
                format!("error: {e:#} (run `kubeway up --cleanup`)"),
                json!({"event": "error", "error": format!("{e:#}")}),
            ),
        }
    }
    match result? {
        Some(code) if code != 0 => std::process::exit(code),
        _ => Ok(()),
    }
}

/// A node address the host reaches: the first that answers one of the TCP NodePorts in `set`.
async fn reachable_node(direct: &Direct, set: &Services, timeout: Duration) -> Option<IpAddr> {
    let node_ports: Vec<u16> = set
        .services
        .iter()
        .flat_map(|s| s.ports.iter())
        .filter(|p| is_tcp(p))
        .filter_map(|p| p.node_port)
        .take(3)
        .collect();
    for np in node_ports {
        if let Ok(found) = direct.node_port(np, timeout).await
            && found.via == "NodePort"
        {
            return Some(found.addr.ip());
        }
    }
    None
}
