//! What a `kubeway tunnel` or `kubeway up` changed, kept on disk: one of each per cluster (a
//! lock file the OS releases when the process dies, however it dies), and a journal of every
//! change written *before* the change is made, with the owner's uid, pid and process start time,
//! so that a later run can tell a dead owner from a live one (pid reuse and zombies included)
//! and undo what it left.
//!
//! The state directory belongs to the user and no one else can write to it; its files are made
//! 0600 from the start and never through a symbolic link (`kubeway_host::files`). A journal is
//! validated before anything it names is undone: it must belong to the uid it records, be for
//! this cluster, and name only what a tunnel writes (loopback addresses of the tunnel's ranges,
//! ingresses of those, Service routes with kubeway's marker). Root may clean up after another
//! user's crashed tunnel (`--cleanup --state-dir THEIR_DIR`), writing nothing into their
//! directory.

use std::fs::File;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use kubeway_host::files::{self, FileId};
use kubeway_net::loopback::SERVICE_NET;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Journals are small; anything larger was not written by kubeway.
const JOURNAL_LIMIT: u64 = 1 << 20;

/// Why the state directory or a journal could not be used.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The state directory or a journal file is not safe to use.
    #[error("{what}")]
    File {
        /// What was being done.
        what: String,
        /// Why.
        #[source]
        source: files::FileError,
    },
    /// Reading, writing or locking failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// There is no state directory.
    #[error(transparent)]
    StateDir(#[from] kubeway_host::state::StateDirError),
    /// A journal names what kubeway does not write, or a live process holds it.
    #[error("{0}")]
    Refused(String),
    /// The journal could not be encoded.
    #[error("encoding the journal")]
    Encode(#[from] serde_json::Error),
}

type Result<T, E = JournalError> = std::result::Result<T, E>;

fn file_err(what: &str) -> impl FnOnce(files::FileError) -> JournalError + '_ {
    move |source| JournalError::File {
        what: what.to_string(),
        source,
    }
}

/// A state directory, checked.
#[derive(Debug, Clone)]
pub struct StateDir {
    /// Where.
    pub path: PathBuf,
    /// Its owner.
    pub owner: u32,
    /// Root working in another user's directory (cleanup only; nothing is written there).
    pub foreign: bool,
}

/// The state directory: `dir` (`--state-dir`), else `$KUBEWAY_STATE_DIR`, else
/// `$XDG_STATE_HOME/kubeway`, else `~/.local/state/kubeway`; never a shared temp folder. Made
/// 0700 when missing; refused when it belongs to someone else (except to root, see
/// [`StateDir::foreign`]) or others can write to it.
pub fn open_state_dir(dir: Option<&Path>) -> Result<StateDir> {
    let path = match dir {
        Some(d) => d.to_path_buf(),
        None => kubeway_host::state::state_dir()?,
    };
    let me = kubeway_host::euid();
    if !path.exists() {
        files::ensure_own_dir(&path).map_err(file_err("the state directory"))?;
        return Ok(StateDir {
            path,
            owner: me,
            foreign: false,
        });
    }
    let owner = files::check_private_dir(&path).map_err(file_err("the state directory"))?;
    if owner == me || cfg!(not(unix)) {
        return Ok(StateDir {
            path,
            owner,
            foreign: false,
        });
    }
    if me == 0 {
        return Ok(StateDir {
            path,
            owner,
            foreign: true,
        });
    }
    Err(JournalError::File {
        what: "the state directory".into(),
        source: files::FileError::NotOwned {
            path: path.clone(),
            owner,
            me,
        },
    })
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Which command keeps the journal (one of each per cluster).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `kubeway tunnel`.
    Tunnel,
    /// `kubeway up`.
    Up,
}

impl Kind {
    /// The command's name, as in file names and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Tunnel => "tunnel",
            Kind::Up => "up",
        }
    }
}

/// The file stem of a cluster's files for `kind`: readable context, plus a hash of server and
/// context (two kubeconfigs may name different clusters alike).
pub fn cluster_key(kind: Kind, server: &str, context: &str) -> String {
    let slug: String = context
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect();
    format!(
        "{}-{slug}-{:016x}",
        kind.as_str(),
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

impl ProcessId {
    /// This process.
    pub fn current() -> Self {
        let pid = std::process::id();
        Self {
            pid,
            start_time: kubeway_host::process::stat(pid).map(|s| s.start_time),
        }
    }

    /// Whether this very process still runs: its pid exists, is not a zombie (killed, not yet
    /// reaped: it holds nothing any more) and started at the same time.
    pub fn is_running(&self) -> bool {
        match (kubeway_host::process::stat(self.pid), &self.start_time) {
            (Some(now), _) if now.is_zombie() => false,
            (Some(now), Some(then)) => now.start_time == *then,
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
    /// A block of names in a hosts file (`up --hosts`), between marker lines carrying `tag`.
    Hosts {
        /// The hosts file.
        file: PathBuf,
        /// The block's tag.
        tag: String,
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
            Change::Hosts { file, .. } => format!("names in {}", file.display()),
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
    /// The uid the tunnel ran as (the journal file must belong to it).
    pub uid: u32,
    /// The tunnel process.
    pub owner: ProcessId,
    /// Changes in force, oldest first.
    pub changes: Vec<Change>,
}

/// Whether `ip` is an address a tunnel places Services at: 127.0.0.1 (shared addressing) or
/// the per-Service range.
fn tunnel_address(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            *v4 == std::net::Ipv4Addr::LOCALHOST
                || (o[0] == SERVICE_NET[0] && o[1] == SERVICE_NET[1])
        }
        IpAddr::V6(_) => false,
    }
}

impl Record {
    /// Checks that this record names only what a tunnel of `server`+`context` writes, and that
    /// it belongs to `file_owner`. Nothing of a record that fails is undone.
    pub fn validate(&self, server: &str, context: &str, file_owner: u32) -> Result<(), String> {
        if self.server != server || self.context != context {
            return Err(format!(
                "it is for context {} at {}, not for this cluster",
                kubeway_core::quote::quote(&self.context),
                kubeway_core::quote::quote(&self.server)
            ));
        }
        if cfg!(unix) && self.uid != file_owner {
            return Err(format!(
                "it records uid {} as its owner but belongs to uid {file_owner}",
                self.uid
            ));
        }
        let routes: Vec<kubeway_net::route::Ipv4Net> = self
            .changes
            .iter()
            .filter_map(|c| match c {
                Change::Route { net, .. } => Some(*net),
                _ => None,
            })
            .collect();
        for c in &self.changes {
            match c {
                Change::Route { net, via } => {
                    kubeway_net::route::check_service_route(*net, *via)
                        .map_err(|e| e.to_string())?;
                }
                Change::Address { ip, .. } if !tunnel_address(ip) => {
                    return Err(format!(
                        "{ip} is not an address a tunnel places Services at"
                    ));
                }
                Change::Address { .. } => {}
                Change::Hosts { file, tag } => {
                    if !file.is_absolute() || tag.is_empty() || tag.len() > 100 {
                        return Err(format!(
                            "{} with tag {} is not a hosts block kubeway writes",
                            file.display(),
                            kubeway_core::quote::quote(tag)
                        ));
                    }
                }
                Change::Ingress { ingress, .. } => {
                    for i in ingress {
                        let ip = i["ip"].as_str().and_then(|s| s.parse::<IpAddr>().ok());
                        let ok = match (ip, i["ipMode"].as_str()) {
                            (Some(ip), Some("Proxy") | None) => tunnel_address(&ip),
                            (Some(IpAddr::V4(v4)), Some("VIP")) => {
                                routes.iter().any(|n| n.contains(&v4))
                            }
                            _ => false,
                        };
                        if !ok {
                            return Err(format!(
                                "the ingress {} of {} is not one a tunnel writes",
                                kubeway_core::quote::quote(&i.to_string()),
                                c.service()
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }
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

/// The tunnel of `server`+`context` as its journal in `dir` describes it; None when there is
/// no valid journal (no tunnel, or one with nothing in force).
pub fn peek(dir: &Path, kind: Kind, server: &str, context: &str) -> Option<TunnelStatus> {
    let path = dir.join(format!("{}.json", cluster_key(kind, server, context)));
    let record = read_record(&path, server, context).ok()??;
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
    /// Root in another user's directory: the journal there is removed once everything is undone,
    /// and otherwise left as it was; nothing is created there.
    foreign: bool,
    _lock: Option<File>,
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

/// Reads and validates the journal at `path`: None when there is none.
fn read_record(path: &Path, server: &str, context: &str) -> Result<Option<Record>> {
    let Some((bytes, owner)) =
        files::read_private(path, JOURNAL_LIMIT).map_err(file_err("reading the journal"))?
    else {
        return Ok(None);
    };
    if bytes.is_empty() {
        return Ok(None);
    }
    let refuse = |why: String| {
        JournalError::Refused(format!(
            "the journal {} was not written by kubeway for this cluster ({why}): nothing it names is undone; \
             look at it, and remove it if you do not know where it came from",
            path.display()
        ))
    };
    let record: Record =
        serde_json::from_slice(&bytes).map_err(|e| refuse(format!("it does not parse: {e}")))?;
    record.validate(server, context, owner).map_err(refuse)?;
    Ok(Some(record))
}

impl Journal {
    /// Takes the lock for `server`+`context` in `dir` and reads what a previous tunnel left.
    pub fn open(dir: &StateDir, kind: Kind, server: &str, context: &str) -> Result<Opened> {
        let kind_name = kind.as_str();
        let key = cluster_key(kind, server, context);
        let lock_path = dir.path.join(format!("{key}.lock"));
        let path = dir.path.join(format!("{key}.json"));
        let lock = loop {
            // Root in another user's directory takes their lock if there is one, and creates none.
            let Some(lock) = files::open_lock(&lock_path, !dir.foreign)
                .map_err(file_err("opening the lock file"))?
            else {
                break None;
            };
            match lock.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Ok(Opened::Busy {
                        owner: read_record(&path, server, context).ok().flatten(),
                    });
                }
                Err(std::fs::TryLockError::Error(source)) => {
                    return Err(JournalError::Io {
                        what: format!("locking {} (one per cluster)", lock_path.display()),
                        source,
                    });
                }
            }
            // A finishing tunnel removes the lock file while holding it: a lock taken on the
            // removed file is no lock at all, so take it again on the file now there.
            if FileId::of(&lock).ok() == FileId::at(&lock_path).ok() {
                break Some(lock);
            }
        };
        let stale = read_record(&path, server, context)?;
        if let Some(r) = &stale
            && r.owner.is_running()
            && r.owner.pid != std::process::id()
        {
            return Err(JournalError::Refused(format!(
                "the journal {} belongs to process {} which still runs, yet does not hold the lock {}: \
                 stop that process (it undoes its changes on Ctrl-C), then run `kubeway {kind_name} --cleanup`",
                path.display(),
                r.owner.pid,
                lock_path.display()
            )));
        }
        Ok(Opened::Locked {
            journal: Journal {
                path,
                lock_path,
                record: Record {
                    server: server.to_string(),
                    context: context.to_string(),
                    uid: kubeway_host::euid(),
                    owner: ProcessId::current(),
                    changes: Vec::new(),
                },
                foreign: dir.foreign,
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
                Err(source) if source.kind() != std::io::ErrorKind::NotFound => {
                    Err(JournalError::Io {
                        what: format!("removing {}", self.path.display()),
                        source,
                    })
                }
                _ => Ok(()),
            };
        }
        if self.foreign {
            // The other user's journal stays as it was: undoing what it names again is safe.
            return Ok(());
        }
        files::replace(&self.path, &serde_json::to_vec_pretty(&self.record)?)
            .map_err(file_err("saving the journal"))
    }

    /// Records `change` (on disk before it returns: call it before making the change).
    pub fn record(&mut self, change: Change) -> Result<()> {
        if self.foreign {
            return Err(JournalError::Refused(
                "working in another user's state directory, kubeway only cleans up".into(),
            ));
        }
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
        if self.record.changes.is_empty() && !self.foreign {
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

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const SERVER: &str = "https://127.0.0.1:6443";

    fn state(dir: &Path) -> StateDir {
        open_state_dir(Some(dir)).expect("state dir")
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

    #[cfg(target_os = "linux")]
    #[test]
    fn a_tunnel_killed_but_not_reaped_counts_as_dead() {
        let mut child = std::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .expect("sleep");
        let pid = ProcessId {
            pid: child.id(),
            start_time: kubeway_host::process::stat(child.id()).map(|s| s.start_time),
        };
        assert!(pid.is_running());
        child.kill().expect("kill -9");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while pid.is_running() {
            assert!(
                std::time::Instant::now() < deadline,
                "a zombie still counts as running"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(
            kubeway_host::process::stat(pid.pid).is_some_and(|s| s.is_zombie()),
            "dead while its pid is still there as a zombie"
        );
        child.wait().expect("reaped");
    }

    #[test]
    fn one_journal_per_cluster_and_what_a_dead_owner_left_is_handed_over() {
        let t = tempfile::tempdir().expect("tempdir");
        let dir = state(&t.path().join("state"));
        let Opened::Locked { mut journal, stale } =
            Journal::open(&dir, Kind::Tunnel, SERVER, "kind-kind").expect("open")
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
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(journal.path()).expect("journal");
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::metadata(&journal.lock_path).expect("lock").mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(&dir.path).expect("dir").mode() & 0o777,
            0o700
        );
        let Opened::Busy { owner } =
            Journal::open(&dir, Kind::Tunnel, SERVER, "kind-kind").expect("open")
        else {
            panic!("a second tunnel on the same cluster is refused")
        };
        assert_eq!(owner.expect("record").owner.pid, std::process::id());
        assert!(matches!(
            Journal::open(&dir, Kind::Tunnel, SERVER, "other").expect("open"),
            Opened::Locked { .. }
        ));
        // The owner "dies": its lock goes, its journal stays, with a start time that no longer
        // matches the pid.
        let mut rec = journal.record.clone();
        rec.owner.start_time = Some("1".into());
        files::replace(journal.path(), &serde_json::to_vec(&rec).expect("json")).expect("write");
        drop(journal);
        let Opened::Locked { stale, .. } =
            Journal::open(&dir, Kind::Tunnel, SERVER, "kind-kind").expect("open")
        else {
            panic!("the dead owner's lock is free")
        };
        assert_eq!(stale.expect("left").changes.len(), 1);
    }

    fn dead_record(changes: Vec<Change>) -> Record {
        Record {
            server: SERVER.into(),
            context: "kind-kind".into(),
            uid: kubeway_host::euid(),
            owner: ProcessId {
                pid: std::process::id(),
                start_time: Some("1".into()),
            },
            changes,
        }
    }

    #[test]
    fn a_forged_journal_is_refused_before_anything_is_undone() {
        let t = tempfile::tempdir().expect("tempdir");
        let dir = state(&t.path().join("state"));
        let path = dir.path.join(format!(
            "{}.json",
            cluster_key(Kind::Tunnel, SERVER, "kind-kind")
        ));
        let forged =
            |changes: Vec<Change>| serde_json::to_vec(&dead_record(changes)).expect("json");
        let default_route = Change::Route {
            net: "0.0.0.0/0".parse().expect("net"),
            via: "10.0.2.2".parse().expect("ip"),
        };
        let someone_elses_ingress = Change::Ingress {
            namespace: "default".into(),
            name: "web".into(),
            uid: "u".into(),
            ingress: vec![serde_json::json!({"ip": "203.0.113.7"})],
        };
        let not_ours = Change::Address {
            ip: "10.1.2.3".parse().expect("ip"),
            service: "default/web".into(),
        };
        for (what, bytes) in [
            ("the default route", forged(vec![default_route])),
            (
                "someone else's ingress",
                forged(vec![someone_elses_ingress]),
            ),
            ("an address outside the tunnel's", forged(vec![not_ours])),
            ("garbage", b"{\"kind\":\"route\"}".to_vec()),
        ] {
            files::replace(&path, &bytes).expect("plant");
            let e = Journal::open(&dir, Kind::Tunnel, SERVER, "kind-kind")
                .err()
                .unwrap_or_else(|| panic!("{what}: accepted"));
            assert!(
                format!("{e:#}").contains("was not written by a kubeway tunnel"),
                "{what}: {e:#}"
            );
        }
        // Another cluster's journal planted under this one's name is refused too.
        let mut other = dead_record(vec![]);
        other.server = "https://10.0.0.1:6443".into();
        files::replace(&path, &serde_json::to_vec(&other).expect("json")).expect("plant");
        assert!(Journal::open(&dir, Kind::Tunnel, SERVER, "kind-kind").is_err());
        // What a tunnel does write passes.
        let good = dead_record(vec![
            Change::Route {
                net: "10.96.0.0/12".parse().expect("net"),
                via: "192.168.49.2".parse().expect("ip"),
            },
            Change::Ingress {
                namespace: "default".into(),
                name: "web".into(),
                uid: "u".into(),
                ingress: vec![serde_json::json!({"ip": "10.96.0.10", "ipMode": "VIP"})],
            },
            Change::Address {
                ip: "127.77.3.4".parse().expect("ip"),
                service: "default/web-lb".into(),
            },
            Change::Ingress {
                namespace: "default".into(),
                name: "web-lb".into(),
                uid: "u2".into(),
                ingress: vec![serde_json::json!({"ip": "127.77.3.4", "ipMode": "Proxy"})],
            },
        ]);
        files::replace(&path, &serde_json::to_vec(&good).expect("json")).expect("write");
        let Opened::Locked { stale, .. } =
            Journal::open(&dir, Kind::Tunnel, SERVER, "kind-kind").expect("valid")
        else {
            panic!("locks")
        };
        assert_eq!(stale.expect("stale").changes.len(), 4);
    }

    #[test]
    fn a_journal_that_is_a_symlink_or_a_shared_state_dir_is_refused() {
        let t = tempfile::tempdir().expect("tempdir");
        let dir = state(&t.path().join("state"));
        let key = cluster_key(Kind::Tunnel, SERVER, "kind-kind");
        let elsewhere = t.path().join("elsewhere.json");
        std::fs::write(&elsewhere, b"{}").expect("write");
        std::os::unix::fs::symlink(&elsewhere, dir.path.join(format!("{key}.json")))
            .expect("symlink");
        let e = Journal::open(&dir, Kind::Tunnel, SERVER, "kind-kind")
            .err()
            .expect("refused");
        assert!(format!("{e:#}").contains("symbolic link"), "{e:#}");
        std::fs::remove_file(dir.path.join(format!("{key}.json"))).expect("rm");
        std::fs::remove_file(dir.path.join(format!("{key}.lock"))).expect("rm");
        std::os::unix::fs::symlink(&elsewhere, dir.path.join(format!("{key}.lock")))
            .expect("symlink");
        let e = Journal::open(&dir, Kind::Tunnel, SERVER, "kind-kind")
            .err()
            .expect("refused");
        assert!(format!("{e:#}").contains("symbolic link"), "{e:#}");

        let shared = t.path().join("shared");
        std::fs::create_dir(&shared).expect("mkdir");
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let e = open_state_dir(Some(&shared)).expect_err("world-writable");
        assert!(format!("{e:#}").contains("chmod go-w"), "{e:#}");
    }
}
