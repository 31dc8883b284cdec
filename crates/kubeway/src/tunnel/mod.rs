//! `kubeway tunnel`: every LoadBalancer Service gets an EXTERNAL-IP that works from this host.
//! It watches the Services, places each on a host address ([`carrier::Addressing`]), listens on
//! its ports there, carries connections the best way the environment allows
//! ([`carrier::Carrier`]), writes `status.loadBalancer.ingress`, follows changes, and undoes it
//! all on Ctrl-C — or, after a crash, on the next run or `--cleanup` ([`state`]).

mod carrier;
mod route;

mod view;

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use kubeway_kube::loadbalancer::{
    LbPort, LbService, LbServices, Removed, Scope, Written, proxy_ingress, remove_ingress,
    vip_ingress, watch_load_balancers, write_ingress,
};
use kubeway_kube::{Cluster, ConnectOptions, connect};
use kubeway_net::Stats;
use kubeway_net::loopback::{BoundPort, Moved};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cli::{Cli, TunnelArgs};
use crate::lab::shutdown_signal;
use carrier::{Addressing, Carrier};
use kubeway_engine::journal::{Change, Journal, Kind, Opened, Record, open_state_dir};
use kubeway_engine::reach::Direct;
use view::{Row, View};

/// One Service port listening on the host.
struct Listening {
    local: SocketAddr,
    moved: Option<Moved>,
    node_port: Option<u16>,
    carrier: Carrier,
    stats: Arc<Stats>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Listening {
    async fn stop(self) {
        self.cancel.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.task).await;
    }
}

/// A Service the tunnel serves.
struct Served {
    svc: LbService,
    ip: IpAddr,
    _claim: Option<TcpListener>,
    ports: BTreeMap<u16, Listening>,
    /// The ingress as the API server stored it, once written.
    written: Option<Vec<Value>>,
    /// The resourceVersion the last write was made against: a snapshot of that version is
    /// from before the write, not news (watch events may still be queued behind it).
    written_against: Option<String>,
    /// The resourceVersion a write was refused for (RBAC…): tried again when the Service
    /// changes, not every second.
    refused_at: Option<String>,
}

struct Tunnel<'a> {
    cluster: Cluster,
    direct: Direct,
    addressing: Addressing,
    /// `--route`: the kernel route in place; Services are served at their ClusterIPs.
    route: Option<route::RoutePlan>,
    journal: Journal,
    view: &'a View,
    probe_timeout: Duration,
    served: BTreeMap<String, Served>,
    left_alone: BTreeMap<String, (String, Vec<String>)>,
    api_error: Option<String>,
    /// Where connection handling reports carrier changes (drained by the main loop).
    notes: carrier::Notes,
    /// The last error reported per Service, so a retry that fails alike is not reported again.
    errors: std::sync::Mutex<BTreeMap<String, String>>,
    cancel: CancellationToken,
}

fn privileged_hint(port: u16) -> String {
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "kubeway".into());
    if cfg!(target_os = "linux") {
        format!(
            "binding {port} needs root or CAP_NET_BIND_SERVICE; run `sudo setcap cap_net_bind_service=+ep {exe}` \
             or `sudo sysctl -w net.ipv4.ip_unprivileged_port_start={port}`, then restart the tunnel"
        )
    } else {
        format!("binding {port} needs root; run the tunnel with sudo to use the port itself")
    }
}

fn tcp_ports(svc: &LbService) -> Vec<&LbPort> {
    svc.ports.iter().filter(|p| p.protocol == "TCP").collect()
}

impl Tunnel<'_> {
    /// The ingress this tunnel writes for a Service at `ip`.
    fn ingress_for(&self, ip: IpAddr) -> Vec<Value> {
        if self.route.is_some() {
            vip_ingress(ip)
        } else {
            proxy_ingress(ip)
        }
    }

    /// Who listens on `addr` among the Services served (for conflict reports).
    fn holder_of(&self, addr: SocketAddr) -> Option<String> {
        self.served
            .iter()
            .find_map(|(k, s)| s.ports.values().any(|l| l.local == addr).then(|| k.clone()))
    }

    fn port_note(&self, port: u16, l: &Listening) -> Option<String> {
        match l.moved {
            Some(Moved::Privileged) => Some(privileged_hint(port)),
            Some(Moved::Taken) => {
                let wanted = SocketAddr::new(l.local.ip(), port);
                Some(match self.holder_of(wanted) {
                    Some(other) => format!(
                        "port {port} on {} is taken by {other} (only Linux gives every Service its own address)",
                        l.local.ip()
                    ),
                    None => format!(
                        "port {port} on {} is taken by another program",
                        l.local.ip()
                    ),
                })
            }
            None => None,
        }
    }

    fn report_serving(&self, key: &str) {
        let Some(s) = self.served.get(key) else {
            return;
        };
        let mut text = format!("{key}: EXTERNAL-IP {}", s.ip);
        let mut ports = Vec::new();
        if let Some(plan) = &self.route {
            for p in tcp_ports(&s.svc) {
                text.push_str(&format!(
                    "\n  {}: routed to ClusterIP {}:{} via node {} ({}); the node's kube-proxy serves it",
                    p.port, s.ip, p.port, plan.node, plan.via
                ));
                ports.push(json!({"port": p.port, "protocol": "TCP", "listen": SocketAddr::new(s.ip, p.port).to_string(),
                    "via": format!("route {} via {}", plan.net, plan.via)}));
            }
        }
        for (port, l) in &s.ports {
            let note = self.port_note(*port, l);
            let moved = l.moved.map(|m| match m {
                Moved::Privileged => "privileged",
                Moved::Taken => "taken",
            });
            let arrow = if l.local.port() == *port {
                format!("{port}")
            } else {
                format!("{port} → {}", l.local.port())
            };
            text.push_str(&format!(
                "\n  {arrow}: listening on {} via {}",
                l.local,
                l.carrier.describe()
            ));
            if let Some(why) = l.carrier.why() {
                text.push_str(&format!(" ({why})"));
            }
            if let Some(n) = &note {
                text.push_str(&format!("\n    port {arrow} because {n}"));
            }
            ports.push(
                json!({"port": port, "protocol": "TCP", "listen": l.local.to_string(),
                "via": l.carrier.describe(), "why": l.carrier.why(), "moved": moved, "note": note}),
            );
        }
        let skipped: Vec<Value> = s
            .svc
            .ports
            .iter()
            .filter(|p| p.protocol != "TCP")
            .map(|p| {
                text.push_str(&format!(
                    "\n  {}/{}: not carried (kubeway carries TCP only)",
                    p.port, p.protocol
                ));
                json!({"port": p.port, "protocol": p.protocol})
            })
            .collect();
        self.view.event(
            text,
            json!({"event": "serving", "service": key, "external_ip": s.ip.to_string(),
                   "ports": ports, "not_carried": skipped}),
        );
    }

    fn leave_alone(&mut self, svc: &LbService, reason: String) {
        let key = svc.key();
        let ingress = svc.ingress_addresses();
        if self.left_alone.get(&key) == Some(&(reason.clone(), ingress.clone())) {
            return;
        }
        self.view.event(
            format!("{key}: left alone: {reason}"),
            json!({"event": "left_alone", "service": key, "reason": reason, "ingress": ingress}),
        );
        self.left_alone.insert(key, (reason, ingress));
    }

    async fn listen(&self, svc: &LbService, port: &LbPort, bound: BoundPort) -> Result<Listening> {
        let cancel = self.cancel.child_token();
        let carrier = Carrier::choose(
            &self.cluster,
            &self.direct,
            &carrier::ServicePort {
                namespace: svc.namespace.clone(),
                service: svc.name.clone(),
                port: port.port,
                node_port: port.node_port,
            },
            self.probe_timeout,
            cancel.clone(),
            carrier::events(self.notes.clone()),
        )
        .await
        .inspect_err(|_| cancel.cancel())?;
        let stats = Arc::new(Stats::default());
        let task = carrier.serve(bound.listener, stats.clone(), cancel.clone());
        Ok(Listening {
            local: bound.local,
            moved: bound.moved,
            node_port: port.node_port,
            carrier,
            stats,
            cancel,
            task,
        })
    }

    fn error(&self, key: &str, e: &anyhow::Error) {
        let text = format!("{e:#}");
        let mut last = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        if last.get(key) == Some(&text) {
            return;
        }
        last.insert(key.to_string(), text);
        self.view.event(
            format!("{key}: {e:#}"),
            json!({"event": "error", "service": key, "error": format!("{e:#}")}),
        );
    }

    /// Reports a change in the API server's health once: a failure to list or watch the
    /// Services (a refusal named with its status), and the recovery.
    fn note_api(&mut self, set: &LbServices) {
        let now = set.api_error.as_ref().map(|f| f.to_string());
        if now == self.api_error {
            return;
        }
        match (&set.api_error, &self.api_error) {
            (Some(f), _) => {
                let what = if f.is_refusal() {
                    "the API server refuses"
                } else {
                    "API server unreachable"
                };
                self.view.event(
                    format!("{what}, retrying (listeners keep serving): {f}"),
                    json!({"event": "api", "state": if f.is_refusal() { "refused" } else { "unreachable" },
                           "error": f.to_string(), "code": f.code, "verb": f.verb}),
                );
            }
            (None, Some(_)) => self.view.event(
                "API server is back; following Services again",
                json!({"event": "api", "state": "ok"}),
            ),
            (None, None) => {}
        }
        self.api_error = now;
    }

    /// Brings everything in line with the Services as the watch sees them.
    async fn reconcile(&mut self, set: &LbServices) -> Result<()> {
        self.note_api(set);
        let gone: Vec<String> = self
            .served
            .iter()
            .filter(|(k, s)| {
                !set.services
                    .iter()
                    .any(|n| n.key() == **k && n.uid == s.svc.uid)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in gone {
            if let Some(s) = self.served.remove(&key) {
                self.close(s, "deleted, or no longer a LoadBalancer", true)
                    .await?;
            }
        }
        self.left_alone
            .retain(|k, _| set.services.iter().any(|s| s.key() == *k));
        for svc in &set.services {
            self.sync(svc).await?;
        }
        Ok(())
    }

    /// Stops serving a Service; takes back the ingress written (if still exactly ours) when
    /// `take_back` says so, else just forgets it.
    async fn close(&mut self, s: Served, reason: &str, take_back: bool) -> Result<()> {
        let key = s.svc.key();
        for (_, l) in s.ports {
            l.stop().await;
        }
        if take_back {
            // The Service may still exist (its type changed).
            self.take_back(Some(&key)).await?;
        }
        self.journal.forget(|c| {
            c.service() == key && (!take_back || matches!(c, Change::Address { .. }))
        })?;
        self.report_closed(&key, reason);
        Ok(())
    }

    /// Undoes the recorded ingress changes (of `only` that Service, or all) and forgets those
    /// done; returns how many ingresses were removed. One that cannot be undone now (API
    /// error) stays recorded.
    async fn take_back(&mut self, only: Option<&str>) -> Result<usize> {
        let todo: Vec<Change> = self
            .journal
            .changes()
            .iter()
            .filter(|c| matches!(c, Change::Ingress { .. }))
            .filter(|c| only.is_none_or(|k| c.service() == k))
            .cloned()
            .collect();
        let cluster = self.cluster.clone();
        let results = futures::future::join_all(todo.iter().map(|c| undo(&cluster, c))).await;
        let mut removed: usize = 0;
        for (change, r) in todo.into_iter().zip(results) {
            let key = change.service();
            match r {
                Ok(result) => {
                    if result == "removed" {
                        removed = removed.saturating_add(1);
                    } else if result == "changed_since" {
                        self.view.event(
                            format!("{key}: its ingress was changed by someone else; left as it is"),
                            json!({"event": "undo", "service": key, "change": change, "result": result}),
                        );
                    }
                    self.journal.forget(|c| *c == change)?;
                }
                Err(e) => self.error(&key, &e),
            }
        }
        Ok(removed)
    }

    fn report_closed(&self, key: &str, reason: &str) {
        self.view.event(
            format!("{key}: closed ({reason})"),
            json!({"event": "closed", "service": key, "reason": reason}),
        );
    }

    async fn sync(&mut self, svc: &LbService) -> Result<()> {
        let key = svc.key();
        let our_ingress = self.served.get(&key).map(|s| self.ingress_for(s.ip));
        if let Some(s) = self.served.get_mut(&key) {
            let ours = Some(&svc.ingress) == our_ingress.as_ref()
                || Some(&svc.ingress) == s.written.as_ref();
            let before_our_write =
                s.written_against.as_deref() == Some(svc.resource_version.as_str());
            if ours && s.written.is_none() {
                // Written, though the answer was lost or came as a conflict.
                s.written = Some(svc.ingress.clone());
            }
            let theirs = !svc.ingress.is_empty() && !ours && !before_our_write;
            if theirs || svc.class.is_some() {
                let Some(s) = self.served.remove(&key) else {
                    return Ok(());
                };
                let reason = if theirs {
                    format!(
                        "its EXTERNAL-IP was set to {} by someone else; it is theirs now",
                        svc.ingress_addresses().join(",")
                    )
                } else {
                    format!(
                        "it now names loadBalancerClass {}",
                        svc.class.clone().unwrap_or_default()
                    )
                };
                self.close(s, &reason, !theirs).await?;
                self.leave_alone(svc, reason);
                return Ok(());
            }
            if svc.ingress.is_empty() && !before_our_write {
                // Someone cleared it: write it again.
                s.written = None;
            }
            self.sync_ports(svc).await?;
        } else {
            if let Some(class) = &svc.class {
                self.leave_alone(
                    svc,
                    format!("loadBalancerClass {class} belongs to another implementation"),
                );
                return Ok(());
            }
            if !svc.ingress.is_empty() {
                let reason = if looks_like_a_tunnels(&svc.ingress) {
                    format!(
                        "already has EXTERNAL-IP {}, as a kubeway tunnel writes it: another tunnel serves it, or one that \
                         crashed left it; its user cleans up with `kubeway tunnel --cleanup`, root with \
                         `kubeway tunnel --cleanup --state-dir ~USER/.local/state/kubeway`",
                        svc.ingress_addresses().join(",")
                    )
                } else {
                    format!(
                        "already has EXTERNAL-IP {} from another load balancer (e.g. servicelb, MetalLB, cloud-provider-kind)",
                        svc.ingress_addresses().join(",")
                    )
                };
                self.leave_alone(svc, reason);
                return Ok(());
            }
            if tcp_ports(svc).is_empty() {
                self.leave_alone(svc, "no TCP port (kubeway carries TCP only)".to_string());
                return Ok(());
            }
            self.left_alone.remove(&key);
            if !self.open(svc).await? {
                return Ok(());
            }
        }
        if let Some(s) = self.served.get_mut(&key) {
            s.svc = svc.clone();
        }
        if self.served.get(&key).is_some_and(|s| {
            s.written.is_none() && s.refused_at.as_deref() != Some(svc.resource_version.as_str())
        }) {
            self.write(&key).await?;
        }
        Ok(())
    }

    /// Places a new Service and starts its listeners. False when it could not be placed.
    async fn open(&mut self, svc: &LbService) -> Result<bool> {
        let key = svc.key();
        if let Some(plan) = &self.route {
            // Routed: the Service's address is its ClusterIP; nothing listens on the host.
            let ip = match svc.cluster_ip {
                Some(IpAddr::V4(v4)) if plan.net.contains(&v4) => IpAddr::V4(v4),
                other => {
                    self.error(
                        &key,
                        &anyhow::anyhow!(
                            "its ClusterIP {} is outside the routed range {}; not served",
                            other.map_or("(none)".to_string(), |ip| ip.to_string()),
                            plan.net
                        ),
                    );
                    return Ok(false);
                }
            };
            self.served.insert(
                key.clone(),
                Served {
                    svc: svc.clone(),
                    ip,
                    _claim: None,
                    ports: BTreeMap::new(),
                    written: None,
                    written_against: None,
                    refused_at: None,
                },
            );
            self.report_serving(&key);
            return Ok(true);
        }
        let tcp = tcp_ports(svc);
        let used: HashSet<IpAddr> = self.served.values().map(|s| s.ip).collect();
        let numbers: Vec<u16> = tcp.iter().map(|p| p.port).collect();
        let placement = match self.addressing.place(&key, &numbers, &used) {
            Ok(p) => p,
            Err(e) => {
                self.error(&key, &anyhow::Error::new(e));
                return Ok(false);
            }
        };
        self.journal.record(Change::Address {
            ip: placement.ip,
            service: key.clone(),
        })?;
        let mut ports = BTreeMap::new();
        for (port, bound) in placement.bound {
            let Some(lp) = tcp.iter().find(|p| p.port == port) else {
                continue;
            };
            match self.listen(svc, lp, bound).await {
                Ok(l) => {
                    ports.insert(port, l);
                }
                Err(e) => self.error(&key, &e.context(format!("port {port}"))),
            }
        }
        self.served.insert(
            key.clone(),
            Served {
                svc: svc.clone(),
                ip: placement.ip,
                _claim: placement.claim,
                ports,
                written: None,
                written_against: None,
                refused_at: None,
            },
        );
        self.report_serving(&key);
        Ok(true)
    }

    /// Moves listeners to match the Service's ports now.
    async fn sync_ports(&mut self, svc: &LbService) -> Result<()> {
        if self.route.is_some() {
            // The route carries every port; the node's kube-proxy follows port changes.
            return Ok(());
        }
        let key = svc.key();
        let Some(s) = self.served.get_mut(&key) else {
            return Ok(());
        };
        let want: Vec<LbPort> = tcp_ports(svc).into_iter().cloned().collect();
        let stale: Vec<u16> = s
            .ports
            .iter()
            .filter(|(port, l)| {
                !want
                    .iter()
                    .any(|w| w.port == **port && w.node_port == l.node_port)
            })
            .map(|(p, _)| *p)
            .collect();
        let mut changed = !stale.is_empty();
        for p in stale {
            if let Some(l) = s.ports.remove(&p) {
                l.stop().await;
            }
        }
        let ip = s.ip;
        let missing: Vec<LbPort> = want
            .into_iter()
            .filter(|w| !s.ports.contains_key(&w.port))
            .collect();
        for p in missing {
            changed = true;
            let bound = match self.addressing.bind_more(ip, p.port) {
                Ok(b) => b,
                Err(e) => {
                    self.error(
                        &key,
                        &anyhow::Error::from(e).context(format!("listening on {ip}:{}", p.port)),
                    );
                    continue;
                }
            };
            match self.listen(svc, &p, bound).await {
                Ok(l) => {
                    if let Some(s) = self.served.get_mut(&key) {
                        s.ports.insert(p.port, l);
                    }
                }
                Err(e) => self.error(&key, &e.context(format!("port {}", p.port))),
            }
        }
        if changed {
            self.report_serving(&key);
        }
        Ok(())
    }

    /// Writes the ingress of a served Service, journaled first.
    async fn write(&mut self, key: &str) -> Result<()> {
        let Some(s) = self.served.get(key) else {
            return Ok(());
        };
        let (svc, ip) = (s.svc.clone(), s.ip);
        let want = self.ingress_for(ip);
        if let Some(s) = self.served.get_mut(key) {
            s.written_against = Some(svc.resource_version.clone());
        }
        self.journal
            .forget(|c| c.service() == key && matches!(c, Change::Ingress { .. }))?;
        self.journal.record(Change::Ingress {
            namespace: svc.namespace.clone(),
            name: svc.name.clone(),
            uid: svc.uid.clone(),
            ingress: want.clone(),
        })?;
        match write_ingress(&self.cluster, &svc, &want).await {
            Ok(Written::Stored(stored)) => {
                if stored != want {
                    self.journal.update_ingress(key, stored.clone())?;
                }
                if let Some(s) = self.served.get_mut(key) {
                    s.written = Some(stored);
                }
                self.view.event(
                    format!("{key}: EXTERNAL-IP {ip} written to status.loadBalancer.ingress"),
                    json!({"event": "ingress", "service": key, "ip": ip.to_string(), "state": "written"}),
                );
            }
            Ok(Written::Stale) => {
                // Changed under us: the watch brings the new version, and we try again then.
                // The record stays: undoing it removes only an ingress exactly like ours.
            }
            Ok(Written::Refused(why)) => {
                // Not written, so nothing to undo.
                self.journal
                    .forget(|c| c.service() == key && matches!(c, Change::Ingress { .. }))?;
                if let Some(s) = self.served.get_mut(key) {
                    s.refused_at = Some(svc.resource_version.clone());
                }
                self.error(
                    key,
                    &anyhow::anyhow!(
                        "{why}; the listener works, but `kubectl get svc` cannot show its address \
                         (API layer: kubeway needs `patch` on services/status)"
                    ),
                );
            }
            // Perhaps written: the record stays, and undoing it is safe either way.
            Err(e) => self.error(key, &e.into()),
        }
        Ok(())
    }

    fn rows(&self) -> Vec<Row> {
        let mut rows: Vec<Row> = self
            .served
            .iter()
            .map(|(k, s)| Row {
                service: k.clone(),
                external_ip: if s.written.is_some() {
                    s.ip.to_string()
                } else {
                    format!("{} (writing)", s.ip)
                },
                ports: if let Some(plan) = &self.route {
                    let ports: Vec<String> = tcp_ports(&s.svc)
                        .iter()
                        .map(|p| p.port.to_string())
                        .collect();
                    format!("{} routed via {}", ports.join(", "), plan.via)
                } else {
                    s.ports
                        .iter()
                        .map(|(p, l)| {
                            if l.local.port() == *p {
                                format!("{p} {}", l.carrier.describe())
                            } else {
                                format!("{p}→{} {}", l.local.port(), l.carrier.describe())
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                },
                connections: s
                    .ports
                    .values()
                    .map(|l| l.stats.accepted.load(Ordering::Relaxed))
                    .sum(),
                open: s
                    .ports
                    .values()
                    .map(|l| l.stats.open.load(Ordering::Relaxed))
                    .sum(),
                failed: s
                    .ports
                    .values()
                    .map(|l| l.stats.failed.load(Ordering::Relaxed))
                    .sum(),
            })
            .collect();
        for (k, (reason, ingress)) in &self.left_alone {
            rows.push(Row {
                service: k.clone(),
                external_ip: if ingress.is_empty() {
                    "-".into()
                } else {
                    ingress.join(",")
                },
                ports: format!("left alone: {reason}"),
                connections: 0,
                open: 0,
                failed: 0,
            });
        }
        rows
    }

    /// Stops everything and takes back every ingress written. Returns how many changes could
    /// not be undone (left in the journal for `--cleanup`).
    async fn shutdown(mut self) -> Result<usize> {
        self.cancel.cancel();
        let served = std::mem::take(&mut self.served);
        let mut connections: u64 = 0;
        for (_, s) in served {
            for (_, l) in s.ports {
                connections = connections.saturating_add(l.stats.accepted.load(Ordering::Relaxed));
                l.stop().await;
            }
        }
        let removed = self.take_back(None).await?;
        // Addresses need nothing undone; what is left are ingresses we could not remove.
        self.journal
            .forget(|c| matches!(c, Change::Address { .. }))?;
        // The route goes last: the EXTERNAL-IPs pointing at it are gone now.
        let routes: Vec<Change> = self
            .journal
            .changes()
            .iter()
            .filter(|c| matches!(c, Change::Route { .. }))
            .cloned()
            .collect();
        for change in routes {
            match undo(&self.cluster, &change).await {
                Ok(result) => {
                    self.view.event(
                        format!("{}: {}", change.service(), result.replace('_', " ")),
                        json!({"event": "undo", "change": change, "result": result}),
                    );
                    self.journal.forget(|c| *c == change)?;
                }
                Err(e) => self.error(&change.service(), &e),
            }
        }
        let left = self.journal.changes().len();
        self.view.last(
            format!(
                "stopped: {removed} EXTERNAL-IP(s) removed, {connections} connection(s) carried{}",
                if left > 0 {
                    format!(
                        "; {left} change(s) could not be undone (API server unreachable?): run `kubeway tunnel --cleanup` later"
                    )
                } else {
                    String::new()
                }
            ),
            json!({"event": "stopped", "removed": removed, "connections": connections, "not_undone": left}),
        );
        self.journal.finish()?;
        Ok(left)
    }
}

/// Whether an ingress looks like one a kubeway tunnel writes: a loopback address of the tunnel's
/// with `ipMode: Proxy`.
fn looks_like_a_tunnels(ingress: &[Value]) -> bool {
    !ingress.is_empty()
        && ingress.iter().all(|i| {
            i["ipMode"] == "Proxy"
                && i["ip"]
                    .as_str()
                    .and_then(|ip| ip.parse::<IpAddr>().ok())
                    .is_some_and(|ip| ip.is_loopback())
        })
}

/// What to do about a refused list or watch of the Services, by status.
fn refusal_hint(f: &kubeway_kube::loadbalancer::WatchFailure, scope: &str) -> String {
    match f.code {
        Some(401) => "API layer: the API server does not accept the kubeconfig's credentials; log in again or refresh the token, \
             and check with `kubectl get svc`"
            .to_string(),
        Some(403) => format!(
            "API layer: RBAC forbids it; kubeway tunnel needs list and watch on services in {scope} \
             (check with `kubectl auth can-i list services` and `kubectl auth can-i watch services`)"
        ),
        _ => "API layer: the API server has no Services API at this path; is the kubeconfig's server a Kubernetes API server?"
            .to_string(),
    }
}

/// Undoes one recorded change: the outcome, as a word for reports.
async fn undo(cluster: &Cluster, change: &Change) -> Result<&'static str> {
    Ok(match change {
        Change::Address { .. } => "released",
        Change::Hosts { file, tag } => {
            kubeway_host::hosts::remove(file, tag)?;
            "removed"
        }
        Change::Route { net, via } => {
            if route::remove(*net, *via).await? {
                "removed"
            } else {
                "already_gone"
            }
        }
        Change::Ingress {
            namespace,
            name,
            uid,
            ingress,
        } => match remove_ingress(cluster, namespace, name, uid, ingress).await? {
            Removed::Removed => "removed",
            Removed::ChangedSince => "changed_since",
            Removed::ServiceGone => "service_gone",
        },
    })
}

/// Undoes what a dead tunnel recorded. Returns the changes that could not be undone.
async fn undo_stale(cluster: &Cluster, view: &View, stale: Record) -> Vec<Change> {
    view.event(
        format!(
            "a previous tunnel (pid {}) ended without cleaning up; undoing its {} change(s)",
            stale.owner.pid,
            stale.changes.len()
        ),
        json!({"event": "stale", "owner": stale.owner, "changes": stale.changes.len()}),
    );
    let mut left = Vec::new();
    for change in stale.changes {
        let key = change.service();
        let text = match (&change, undo(cluster, &change).await) {
            (_, Err(e)) => {
                view.event(
                    format!("{key}: could not undo: {e:#}"),
                    json!({"event": "undo", "service": key, "change": change, "result": "error", "error": format!("{e:#}")}),
                );
                left.push(change);
                continue;
            }
            (Change::Address { ip, .. }, Ok(r)) => (r, format!("{key}: address {ip} released")),
            (Change::Hosts { .. }, Ok(r)) => (r, format!("{key}: kubeway's names removed")),
            (Change::Route { .. }, Ok(r)) => (
                r,
                if r == "removed" {
                    format!("{key}: stale route removed")
                } else {
                    format!("{key}: already gone")
                },
            ),
            (Change::Ingress { .. }, Ok(r)) => (
                r,
                match r {
                    "removed" => format!("{key}: stale EXTERNAL-IP removed"),
                    "changed_since" => format!(
                        "{key}: its ingress changed since (someone else set it); left as it is"
                    ),
                    _ => format!("{key}: the Service is gone; nothing to undo"),
                },
            ),
        };
        view.event(
            text.1,
            json!({"event": "undo", "service": key, "change": change, "result": text.0}),
        );
    }
    left
}

/// Runs `kubeway tunnel`.
pub async fn run(cli: &Cli, args: &TunnelArgs) -> Result<()> {
    let view = View::new(cli.output);
    let stop = shutdown_signal();
    let opts = ConnectOptions {
        kubeconfig: cli.kubeconfig.clone(),
        context: cli.context.clone(),
        namespace: cli.namespace.clone(),
    };
    let cluster = connect(&opts).await?;
    cluster.client.apiserver_version().await.with_context(|| {
        format!(
            "cannot reach the API server at {} (API layer: is the cluster running? check `kubectl cluster-info`)",
            cluster.server
        )
    })?;
    let dir = open_state_dir(args.state_dir.as_deref())?;
    if dir.foreign && !args.cleanup {
        bail!(
            "the state directory {} belongs to uid {}: root may clean up after that user's crashed tunnel \
             (`kubeway tunnel --cleanup --state-dir {}`), but runs a tunnel of its own with its own state directory",
            dir.path.display(),
            dir.owner,
            dir.path.display()
        );
    }
    let (mut journal, stale) =
        match Journal::open(&dir, Kind::Tunnel, &cluster.server, &cluster.context)? {
            Opened::Busy { owner } => bail!(
                "a tunnel for context {} ({}) is already running{}: one tunnel per cluster. \
             Use that one, or stop it with Ctrl-C (it takes its EXTERNAL-IPs back) and start again",
                cluster.context,
                cluster.server,
                owner
                    .map(|r| format!(" (pid {})", r.owner.pid))
                    .unwrap_or_default()
            ),
            Opened::Locked { journal, stale } => (journal, stale),
        };
    if let Some(stale) = stale {
        let left = undo_stale(&cluster, &view, stale).await;
        journal.adopt(left)?;
    }
    if args.cleanup {
        let left = journal.changes().len();
        if left > 0 {
            bail!(
                "{left} change(s) could not be undone; they stay recorded in {} for the next `kubeway tunnel --cleanup`",
                journal.path().display()
            );
        }
        view.event(
            "nothing (more) to clean up",
            json!({"event": "clean", "state_dir": dir.path.display().to_string()}),
        );
        journal.finish()?;
        return Ok(());
    }
    let scope = if args.all_namespaces {
        Scope::All
    } else {
        Scope::Namespace(cluster.namespace.clone())
    };
    let addressing = Addressing::detect();
    let direct = Direct::learn(&opts).await;
    let route = if args.route {
        let plan = match route::plan(&cluster, &direct, args.service_cidr, args.probe_timeout).await
        {
            Ok(p) => p,
            Err(e) => {
                journal.finish()?;
                return Err(e.context("--route"));
            }
        };
        let change = Change::Route {
            net: plan.net,
            via: plan.via,
        };
        journal.record(change.clone())?;
        if let Err(e) = route::add(&plan).await {
            journal.forget(|c| *c == change)?;
            journal.finish()?;
            return Err(e.context(format!(
                "--route: adding the route {} via {}",
                plan.net, plan.via
            )));
        }
        view.event(
            format!(
                "route {} via node {} ({}) added: every ClusterIP answers from this host",
                plan.net, plan.node, plan.via
            ),
            json!({"event": "route", "net": plan.net.to_string(), "via": plan.via.to_string(), "node": plan.node, "state": "added"}),
        );
        Some(plan)
    } else {
        None
    };
    let scope_text = match &scope {
        Scope::All => "all namespaces".to_string(),
        Scope::Namespace(ns) => format!("namespace {ns}"),
    };
    let header = format!(
        "kubeway tunnel: LoadBalancer Services of {scope_text} in context {} ({}); Ctrl-C takes the EXTERNAL-IPs back",
        cluster.context, cluster.server
    );
    view.event(
        header.clone(),
        json!({"event": "started", "context": cluster.context, "server": cluster.server,
               "scope": scope_text, "addressing": addressing, "state_dir": dir.path.display().to_string()}),
    );
    let cancel = CancellationToken::new();
    let mut rx = watch_load_balancers(&cluster, &scope, cancel.child_token());
    let (notes, mut notes_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut tunnel = Tunnel {
        cluster,
        direct,
        addressing,
        route,
        journal,
        view: &view,
        probe_timeout: args.probe_timeout,
        served: BTreeMap::new(),
        left_alone: BTreeMap::new(),
        api_error: None,
        errors: Default::default(),
        notes,
        cancel,
    };
    let mut stop = std::pin::pin!(stop);
    // Retries what failed (an API error writing an ingress) and redraws the table.
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut synced = false;
    let result = loop {
        tokio::select! {
            _ = &mut stop => break Ok(()),
            r = rx.changed() => if r.is_err() { break Ok(()) },
            Some((text, v)) = notes_rx.recv() => {
                tunnel.view.event(text, v);
                continue;
            }
            _ = tick.tick() => {
                tunnel.view.draw(&header, &tunnel.rows());
                let pending = tunnel.served.values().any(|s| {
                    s.written.is_none()
                        && s.refused_at.as_deref() != Some(s.svc.resource_version.as_str())
                });
                if !pending {
                    continue;
                }
            }
        }
        let set = rx.borrow_and_update().clone();
        if !set.synced {
            match &set.api_error {
                // Refused before the first list: nothing was served yet, and waiting will not
                // change credentials or RBAC. Say so and end.
                Some(f) if f.is_refusal() => {
                    break Err(anyhow::anyhow!(
                        "kubeway tunnel cannot follow the LoadBalancer Services of {scope_text}: {f} ({})",
                        refusal_hint(f, &scope_text)
                    ));
                }
                // Unreachable: say so at once, and keep trying.
                Some(_) => tunnel.note_api(&set),
                None => {}
            }
            continue;
        }
        if let Err(e) = tunnel.reconcile(&set).await {
            break Err(e);
        }
        if !synced {
            synced = true;
            view.event(
                format!(
                    "watching: {} LoadBalancer Service(s) served, {} left alone",
                    tunnel.served.len(),
                    tunnel.left_alone.len()
                ),
                json!({"event": "watching", "served": tunnel.served.len(), "left_alone": tunnel.left_alone.len()}),
            );
        }
        tunnel.view.draw(&header, &tunnel.rows());
    };
    let left = tunnel.shutdown().await?;
    result?;
    if left > 0 {
        bail!(
            "{left} change(s) could not be undone: run `kubeway tunnel --cleanup` when the API server answers"
        );
    }
    Ok(())
}
