//! What a `kubeway tunnel` changed, kept on disk: one tunnel per cluster (a lock file the OS
//! releases when the process dies, however it dies), and a journal of every change written
//! *before* the change is made, with the owner's pid and process start time, so that a later
//! run can tell a dead owner from a live one (pid reuse included) and undo what it left.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where kubeway keeps state: `$KUBEWAY_STATE_DIR`, else `$XDG_STATE_HOME/kubeway`, else
/// `~/.local/state/kubeway`.
pub fn state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("KUBEWAY_STATE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(std::env::temp_dir)
        .join("kubeway")
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The file stem of a cluster's tunnel files: readable context, plus a hash of server and
/// context (two kubeconfigs may name different clusters alike).
pub fn cluster_key(server: &str, context: &str) -> String {
    let slug: String = context
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect();
    format!(
        "tunnel-{slug}-{:016x}",
        fnv1a(&format!("{server}\n{context}"))
    )
}

/// A process, told apart from a later one that got the same pid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessId {
    /// The pid.
    pub pid: u32,
    /// When it started (Linux: field 22 of /proc/PID/stat, clock ticks since boot; elsewhere
    /// `ps -o lstart=`). `None` when it could not be read.
    pub start_time: Option<String>,
}

/// Field 22 (starttime) of a /proc/PID/stat line. The command name (field 2) is in parentheses
/// and may hold spaces and parentheses itself, so fields are counted after the last `)`.
pub fn stat_start_time(stat: &str) -> Option<String> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // `rest` starts at field 3 (state).
    rest.split_whitespace().nth(22 - 3).map(str::to_string)
}

fn start_time_of(pid: u32) -> Option<String> {
    if cfg!(target_os = "linux") {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat_start_time(&stat)
    } else {
        let out = std::process::Command::new("ps")
            .args(["-o", "lstart=", "-p", &pid.to_string()])
            .output()
            .ok()?;
        let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (out.status.success() && !s.is_empty()).then_some(s)
    }
}

impl ProcessId {
    /// This process.
    pub fn current() -> Self {
        let pid = std::process::id();
        Self {
            pid,
            start_time: start_time_of(pid),
        }
    }

    /// Whether this very process still runs: its pid exists and started at the same time.
    pub fn is_running(&self) -> bool {
        match (start_time_of(self.pid), &self.start_time) {
            (Some(now), Some(then)) => now == *then,
            // No start time recorded: the pid alone is all there is to go by.
            (Some(_), None) => true,
            (None, _) => false,
        }
    }
}

/// One change a tunnel made, with what undoing it needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// `status.loadBalancer.ingress` of a Service, exactly as written.
    Ingress {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// UID of the object written to.
        uid: String,
        /// The ingress as the API server stored it (or as sent, until the answer came).
        ingress: Vec<Value>,
    },
    /// A loopback address announced for a Service. Nothing is configured on the host for it
    /// (Linux routes all of 127.0.0.0/8 to `lo`), so undoing it only releases it.
    Address {
        /// The address.
        ip: IpAddr,
        /// `namespace/name`.
        service: String,
    },
    /// A kernel route (`tunnel --route`): the Service range via a node address.
    Route {
        /// The Service range.
        net: kubeway_net::route::Ipv4Net,
        /// The node address.
        via: std::net::Ipv4Addr,
    },
}

impl Change {
    /// `namespace/name` of the Service the change is for.
    pub fn service(&self) -> String {
        match self {
            Change::Ingress {
                namespace, name, ..
            } => format!("{namespace}/{name}"),
            Change::Address { service, .. } => service.clone(),
            Change::Route { net, via } => format!("route {net} via {via}"),
        }
    }
}

/// The journal's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// API server URL.
    pub server: String,
    /// Context.
    pub context: String,
    /// The tunnel process.
    pub owner: ProcessId,
    /// Changes in force, oldest first.
    pub changes: Vec<Change>,
}

/// What the journal on disk says about a cluster's tunnel, read without taking its lock.
#[derive(Debug, Clone, Serialize)]
pub struct TunnelStatus {
    /// The tunnel's pid.
    pub pid: u32,
    /// Whether that very process still runs (pid and start time).
    pub running: bool,
    /// Changes in force (EXTERNAL-IPs, addresses, routes).
    pub changes: usize,
    /// The journal file.
    pub journal: PathBuf,
}

/// The tunnel of `server`+`context` as its journal describes it; None when there is no journal
/// (no tunnel, or one with nothing in force).
pub fn peek(dir: &Path, server: &str, context: &str) -> Option<TunnelStatus> {
    let path = dir.join(format!("{}.json", cluster_key(server, context)));
    let record = read_record(&path).ok()??;
    Some(TunnelStatus {
        pid: record.owner.pid,
        running: record.owner.is_running(),
        changes: record.changes.len(),
        journal: path,
    })
}

/// Holds the cluster's tunnel lock and keeps the journal on disk.
pub struct Journal {
    path: PathBuf,
    lock_path: PathBuf,
    record: Record,
    _lock: File,
}

/// What [`Journal::open`] found.
pub enum Opened {
    /// The lock is ours; `stale` is what a dead tunnel left, if anything.
    Locked {
        /// The journal (nothing written yet).
        journal: Journal,
        /// A dead tunnel's record.
        stale: Option<Record>,
    },
    /// Another tunnel holds the lock.
    Busy {
        /// Its record, if readable.
        owner: Option<Record>,
    },
}

fn read_record(path: &Path) -> Result<Option<Record>> {
    match std::fs::read(path) {
        Ok(b) if b.is_empty() => Ok(None),
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .with_context(|| format!("reading the tunnel journal {}", path.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

#[cfg(unix)]
fn same_file(f: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (f.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_: &File, path: &Path) -> bool {
    path.exists()
}

impl Journal {
    /// Takes the lock for `server`+`context` in `dir` and reads what a previous tunnel left.
    pub fn open(dir: &Path, server: &str, context: &str) -> Result<Opened> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the state directory {}", dir.display()))?;
        let key = cluster_key(server, context);
        let lock_path = dir.join(format!("{key}.lock"));
        let path = dir.join(format!("{key}.json"));
        let lock = loop {
            let lock = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .with_context(|| format!("opening the lock file {}", lock_path.display()))?;
            match lock.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Ok(Opened::Busy {
                        owner: read_record(&path).ok().flatten(),
                    });
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(e).with_context(|| {
                        format!("locking {} (one tunnel per cluster)", lock_path.display())
                    });
                }
            }
            // A finishing tunnel removes the lock file while holding it: a lock taken on the
            // removed file is no lock at all, so take it again on the file now there.
            if same_file(&lock, &lock_path) {
                break lock;
            }
        };
        let stale = read_record(&path)?;
        if let Some(r) = &stale
            && r.owner.is_running()
            && r.owner.pid != std::process::id()
        {
            bail!(
                "the tunnel journal {} belongs to process {} which still runs, yet does not hold the lock {}: \
                 stop that process (it undoes its changes on Ctrl-C), then run `kubeway tunnel --cleanup`",
                path.display(),
                r.owner.pid,
                lock_path.display()
            );
        }
        Ok(Opened::Locked {
            journal: Journal {
                path,
                lock_path,
                record: Record {
                    server: server.to_string(),
                    context: context.to_string(),
                    owner: ProcessId::current(),
                    changes: Vec::new(),
                },
                _lock: lock,
            },
            stale,
        })
    }

    /// Where the journal is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The changes in force.
    pub fn changes(&self) -> &[Change] {
        &self.record.changes
    }

    fn save(&self) -> Result<()> {
        if self.record.changes.is_empty() {
            return match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    Err(e).with_context(|| format!("removing {}", self.path.display()))
                }
                _ => Ok(()),
            };
        }
        let tmp = self.path.with_extension("json.tmp");
        let mut f = File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(&serde_json::to_vec_pretty(&self.record)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("writing {}", self.path.display()))
    }

    /// Records `change` (on disk before it returns: call it before making the change).
    pub fn record(&mut self, change: Change) -> Result<()> {
        self.record.changes.push(change);
        self.save()
    }

    /// Replaces the ingress recorded for `namespace/name` with what the API server stored.
    pub fn update_ingress(&mut self, service: &str, stored: Vec<Value>) -> Result<()> {
        for c in &mut self.record.changes {
            let this = c.service() == service;
            if let Change::Ingress { ingress, .. } = c
                && this
            {
                *ingress = stored.clone();
            }
        }
        self.save()
    }

    /// Forgets the changes `done` says are undone or no longer in force.
    pub fn forget(&mut self, done: impl Fn(&Change) -> bool) -> Result<()> {
        let before = self.record.changes.len();
        self.record.changes.retain(|c| !done(c));
        if self.record.changes.len() != before {
            self.save()?;
        }
        Ok(())
    }

    /// Ends the journal: with every change undone, its files go (the lock file last, while
    /// still held); otherwise the journal stays for `--cleanup`.
    pub fn finish(self) -> Result<()> {
        self.save()?;
        if self.record.changes.is_empty() {
            let _ = std::fs::remove_file(&self.lock_path);
        }
        Ok(())
    }

    /// Takes over changes a dead tunnel left and that could not be undone yet, so they are
    /// retried later (by this tunnel on exit, or by `--cleanup`).
    pub fn adopt(&mut self, changes: Vec<Change>) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        self.record.changes.extend(changes);
        self.save()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_is_field_22_even_with_spaces_and_parens_in_the_name() {
        let line = "4242 (my (odd) cmd) S 1 4242 4242 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 987654 12345678 300 18446744073709551615";
        assert_eq!(stat_start_time(line).as_deref(), Some("987654"));
        assert_eq!(stat_start_time("garbage"), None);
    }

    #[test]
    fn this_process_is_running_and_a_reused_pid_is_not_the_same_process() {
        let me = ProcessId::current();
        if cfg!(target_os = "linux") {
            assert!(me.start_time.is_some());
        }
        assert!(me.is_running());
        let impostor = ProcessId {
            pid: me.pid,
            start_time: Some("1".into()),
        };
        assert!(
            !impostor.is_running(),
            "same pid, other start: another process"
        );
    }

    #[test]
    fn one_journal_per_cluster_and_what_a_dead_owner_left_is_handed_over() {
        let dir = tempfile::tempdir().expect("tempdir");
        let Opened::Locked { mut journal, stale } =
            Journal::open(dir.path(), "https://127.0.0.1:6443", "kind-kind").expect("open")
        else {
            panic!("first open locks")
        };
        assert!(stale.is_none());
        assert!(!journal.path().exists(), "nothing written before a change");
        journal
            .record(Change::Address {
                ip: "127.77.0.5".parse().expect("ip"),
                service: "default/web".into(),
            })
            .expect("record");
        let Opened::Busy { owner } =
            Journal::open(dir.path(), "https://127.0.0.1:6443", "kind-kind").expect("open")
        else {
            panic!("a second tunnel on the same cluster is refused")
        };
        assert_eq!(owner.expect("record").owner.pid, std::process::id());
        assert!(matches!(
            Journal::open(dir.path(), "https://127.0.0.1:6443", "other").expect("open"),
            Opened::Locked { .. }
        ));
        // The owner "dies": its lock goes, its journal stays, with a start time that no longer
        // matches the pid.
        let mut rec = journal.record.clone();
        rec.owner.start_time = Some("1".into());
        std::fs::write(journal.path(), serde_json::to_vec(&rec).expect("json")).expect("write");
        drop(journal);
        let Opened::Locked { stale, .. } =
            Journal::open(dir.path(), "https://127.0.0.1:6443", "kind-kind").expect("open")
        else {
            panic!("the dead owner's lock is free")
        };
        assert_eq!(stale.expect("left").changes.len(), 1);
    }
}
