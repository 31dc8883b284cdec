//! Where the lab's sockets live: the current network namespace (loopback mode) or a network
//! namespace the lab created (namespace mode, Linux, root), and the namespace-mode topology itself.
//!
//! A socket belongs to the network namespace of the thread that created it, for its whole life.
//! So each namespace gets one worker thread that enters it once (`setns`) and creates sockets on
//! request; the sockets are then handed to tokio and used from any thread.
//!
//! Namespace mode builds a real boundary with documentation addresses only:
//!
//! | namespace | holds | addresses |
//! |---|---|---|
//! | `kwlab-PID-N-host` | the "host": kubeway under test runs here; **no default route** | `198.51.100.1/25` on `kw-host` (reachable topology only), `127.0.0.1` (published API port) |
//! | `kwlab-PID-N-node` | the node, its pods, its kube-proxy | node `198.51.100.2…`, pods `203.0.113.0/24`, ClusterIPs `198.51.100.128/25`, pod "localhost" `127.245.0.x` |
//!
//! *Reachable* (minikube kvm2, the docker driver on Linux): a veth joins the two namespaces and the
//! API server listens on the node address. *Published* (Docker Desktop, minikube's docker driver on
//! macOS): there is no link at all; the API server listens on `127.0.0.1:PORT` in the host namespace,
//! like a port Docker publishes, and the node address is unroutable from the host.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// The listen backlog of every lab listener (tokio's default of 128 drops bursts).
pub const BACKLOG: i32 = 4096;

fn std_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

fn std_udp(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    // No SO_REUSEADDR: for UDP it would let a second socket share the address and steal
    // datagrams, where a server must fail with "address in use".
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// The network namespace sockets are made in.
#[derive(Clone, Default)]
pub enum Place {
    /// The process's own namespace.
    #[default]
    Here,
    /// A namespace the lab created.
    #[cfg(target_os = "linux")]
    Netns(Arc<linux::Netns>),
}

impl std::fmt::Debug for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Here => f.write_str("Here"),
            #[cfg(target_os = "linux")]
            Place::Netns(n) => write!(f, "Netns({})", n.name()),
        }
    }
}

impl Place {
    /// Binds `addr` with a deep accept queue. Needs a tokio runtime.
    pub fn listen(&self, addr: SocketAddr) -> std::io::Result<TcpListener> {
        let std = match self {
            Place::Here => std_listener(addr)?,
            #[cfg(target_os = "linux")]
            Place::Netns(ns) => ns.run(move || std_listener(addr))??,
        };
        TcpListener::from_std(std)
    }

    /// Binds a UDP socket to `addr` (port 0: a free port). Needs a tokio runtime.
    pub fn udp(&self, addr: SocketAddr) -> std::io::Result<UdpSocket> {
        let std = match self {
            Place::Here => std_udp(addr)?,
            #[cfg(target_os = "linux")]
            Place::Netns(ns) => ns.run(move || std_udp(addr))??,
        };
        UdpSocket::from_std(std)
    }

    /// Connects to `addr` from this place.
    pub async fn connect(&self, addr: SocketAddr) -> std::io::Result<TcpStream> {
        match self {
            Place::Here => TcpStream::connect(addr).await,
            #[cfg(target_os = "linux")]
            Place::Netns(ns) => {
                let socket = ns.run(move || {
                    socket2::Socket::new(
                        socket2::Domain::for_address(addr),
                        socket2::Type::STREAM,
                        Some(socket2::Protocol::TCP),
                    )
                })??;
                socket.set_nonblocking(true)?;
                let socket = tokio::net::TcpSocket::from_std_stream(socket.into());
                socket.connect(addr).await
            }
        }
    }

    /// Whether sockets are made in a namespace the lab created.
    pub fn is_netns(&self) -> bool {
        !matches!(self, Place::Here)
    }
}

/// Which way the namespace-mode host reaches the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// A veth joins host and node; the API server listens on the node address.
    Reachable,
    /// No link; only the API server's port is published on the host's 127.0.0.1.
    Published,
}

impl std::str::FromStr for Topology {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "reachable" => Ok(Topology::Reachable),
            "published" => Ok(Topology::Published),
            other => Err(format!(
                "unknown topology {other:?}: use `reachable` (a veth to the node, like minikube kvm2) or `published` (only the API port on 127.0.0.1, like Docker Desktop)"
            )),
        }
    }
}

/// Addresses of namespace mode (documentation ranges only).
pub mod plan {
    use std::net::Ipv4Addr;

    /// The host's end of the veth.
    pub const HOST_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
    /// Node `i` is at `198.51.100.(2+i)`.
    pub fn node_ip(i: usize) -> Ipv4Addr {
        Ipv4Addr::new(198, 51, 100, 2 + i as u8)
    }
    /// The prefix length of the host–node link.
    pub const LINK_PREFIX: u8 = 25;
    /// Pods.
    pub const POD_CIDR: (Ipv4Addr, u8) = (Ipv4Addr::new(203, 0, 113, 0), 24);
    /// ClusterIPs.
    pub const SERVICE_CIDR: (Ipv4Addr, u8) = (Ipv4Addr::new(198, 51, 100, 128), 25);
    /// The API server's port at the node address (minikube's).
    pub const API_PORT: u16 = 8443;
}

/// Why namespace mode could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// Not Linux.
    #[error("namespace mode needs Linux network namespaces; use loopback mode on this system")]
    Unsupported,
    /// Not root.
    #[error(
        "namespace mode needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) to create network namespaces; run as root, or use loopback mode"
    )]
    NotRoot,
    /// Root, but the system refuses (a container without CAP_SYS_ADMIN, seccomp …).
    #[error(
        "this system refuses to create network namespaces even as root ({0}); use loopback mode"
    )]
    Refused(String),
    /// `ip` missing.
    #[error("namespace mode needs the `ip` command from iproute2 (apt-get install iproute2)")]
    NoIpCommand,
    /// A route of this machine overlaps the documentation ranges namespace mode uses.
    #[error(
        "namespace mode uses the documentation ranges {ranges}, and this machine routes part of them: `{route}`; \
         namespace mode guards those ranges with `unreachable` routes so that nothing meant for the lab leaves \
         by another way, and will not do so over a route of yours. Remove that route if it is stale, or use loopback mode"
    )]
    GuardOverlap {
        /// The ranges.
        ranges: String,
        /// The route in the way.
        route: String,
    },
    /// A command failed.
    #[error("`ip {args}` failed: {stderr}")]
    Command {
        /// The arguments.
        args: String,
        /// What it said.
        stderr: String,
    },
    /// Entering a namespace failed.
    #[error("entering network namespace {name}")]
    Enter {
        /// Which.
        name: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The two namespaces of namespace mode and the link between them; removed on drop.
pub struct Boundary {
    /// Where the host side lives (kubeway under test runs here).
    #[cfg(target_os = "linux")]
    pub host: Arc<linux::Netns>,
    /// Where the node, its pods and its proxy live.
    #[cfg(target_os = "linux")]
    pub node: Arc<linux::Netns>,
    /// The topology.
    pub topology: Topology,
    /// Node addresses.
    pub node_ips: Vec<Ipv4Addr>,
    torn_down: std::sync::atomic::AtomicBool,
}

impl Boundary {
    /// Creates the namespaces for `nodes` nodes in `topology`.
    pub fn create(topology: Topology, nodes: usize) -> Result<Self, NetnsError> {
        #[cfg(target_os = "linux")]
        {
            linux::create(topology, nodes)
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (topology, nodes);
            Err(NetnsError::Unsupported)
        }
    }

    /// Name of the host-side namespace (for `ip netns exec NAME …`).
    pub fn host_name(&self) -> &str {
        #[cfg(target_os = "linux")]
        {
            self.host.name()
        }
        #[cfg(not(target_os = "linux"))]
        {
            ""
        }
    }

    /// Name of the node namespace.
    pub fn node_name(&self) -> &str {
        #[cfg(target_os = "linux")]
        {
            self.node.name()
        }
        #[cfg(not(target_os = "linux"))]
        {
            ""
        }
    }

    /// Processes running in the host namespace (`ip netns pids`), e.g. a kubeway started there.
    pub fn host_pids(&self) -> Vec<u32> {
        #[cfg(target_os = "linux")]
        {
            linux::ip(&["netns", "pids", self.host.name()])
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        }
        #[cfg(not(target_os = "linux"))]
        {
            Vec::new()
        }
    }

    /// Removes the link and both namespaces now (also done on drop).
    pub fn teardown(&self) {
        if self
            .torn_down
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return;
        }
        #[cfg(target_os = "linux")]
        {
            // The veth goes first: a namespace still held by a closing socket lingers unnamed
            // until that socket is gone, but it no longer holds anything that routes.
            if self.topology == Topology::Reachable {
                let _ = linux::ip(&["-n", self.node.name(), "link", "del", linux::NODE_LINK]);
            }
            self.node.delete();
            self.host.delete();
            linux::guard::release();
        }
    }
}

impl Drop for Boundary {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Names of namespaces this machine has that a lab made (`kwlab-…`).
pub fn lab_namespaces() -> Vec<String> {
    #[cfg(target_os = "linux")]
    {
        linux::list()
            .into_iter()
            .filter(|n| n.starts_with(linux::PREFIX))
            .collect()
    }
    #[cfg(not(target_os = "linux"))]
    {
        Vec::new()
    }
}

/// Why namespace mode is not available here, or None when it is (Linux, root, `ip` present).
pub fn unavailable() -> Option<NetnsError> {
    #[cfg(target_os = "linux")]
    {
        linux::unavailable()
    }
    #[cfg(not(target_os = "linux"))]
    {
        Some(NetnsError::Unsupported)
    }
}

#[cfg(target_os = "linux")]
pub mod linux {
    //! Linux network namespaces through `ip netns` and `setns(2)`.

    use std::process::Command;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Arc, Mutex, mpsc};

    use super::{Boundary, NetnsError, Topology, plan};

    /// Every lab namespace is named `kwlab-PID-N-…`.
    pub const PREFIX: &str = "kwlab-";
    /// The host's end of the veth.
    pub const HOST_LINK: &str = "kw-host";
    /// The node's end of the veth.
    pub const NODE_LINK: &str = "kw-node";

    type Job = Box<dyn FnOnce() + Send>;

    /// A network namespace with a thread inside it that makes sockets.
    pub struct Netns {
        name: String,
        jobs: Mutex<Option<mpsc::Sender<Job>>>,
    }

    pub(super) fn ip(args: &[&str]) -> Result<String, NetnsError> {
        let out = Command::new("ip").args(args).output().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                NetnsError::NoIpCommand
            } else {
                NetnsError::Command {
                    args: args.join(" "),
                    stderr: e.to_string(),
                }
            }
        })?;
        if !out.status.success() {
            return Err(NetnsError::Command {
                args: args.join(" "),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub(super) fn list() -> Vec<String> {
        ip(&["netns", "list"])
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect()
    }

    pub(super) fn unavailable() -> Option<NetnsError> {
        if !rustix::process::geteuid().is_root() {
            return Some(NetnsError::NotRoot);
        }
        if let Err(e) = ip(&["netns", "list"]) {
            return Some(e);
        }
        // Root is not always enough (a container without CAP_SYS_ADMIN, a seccomp profile):
        // make and remove one namespace, once per process.
        static TRIAL: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
        TRIAL
            .get_or_init(|| {
                let name = format!("{PREFIX}{}-trial", std::process::id());
                match Netns::create(&name) {
                    Ok(ns) => {
                        ns.delete();
                        None
                    }
                    Err(e) => Some(e.to_string()),
                }
            })
            .clone()
            .map(NetnsError::Refused)
    }

    impl Netns {
        /// Creates namespace `name` (`ip netns add`), brings its loopback up and starts its
        /// socket thread.
        pub fn create(name: &str) -> Result<Arc<Self>, NetnsError> {
            ip(&["netns", "add", name])?;
            let ns = Self::enter(name).inspect_err(|_| {
                let _ = ip(&["netns", "del", name]);
            })?;
            ip(&["-n", name, "link", "set", "lo", "up"]).inspect_err(|_| ns.delete())?;
            Ok(ns)
        }

        fn enter(name: &str) -> Result<Arc<Self>, NetnsError> {
            let (tx, rx) = mpsc::channel::<Job>();
            let (ready_tx, ready_rx) = mpsc::sync_channel(1);
            let path = format!("/run/netns/{name}");
            let enter_err = |source| NetnsError::Enter {
                name: name.to_string(),
                source,
            };
            std::thread::Builder::new()
                .name(format!("netns-{name}"))
                .spawn(move || {
                    let entered = std::fs::File::open(&path).and_then(|f| {
                        rustix::thread::move_into_link_name_space(
                            std::os::fd::AsFd::as_fd(&f),
                            Some(rustix::thread::LinkNameSpaceType::Network),
                        )
                        .map_err(std::io::Error::from)
                    });
                    let ok = entered.is_ok();
                    let _ = ready_tx.send(entered);
                    if ok {
                        while let Ok(job) = rx.recv() {
                            job();
                        }
                    }
                })
                .map_err(enter_err)?;
            ready_rx
                .recv()
                .map_err(|_| enter_err(std::io::Error::other("the namespace thread died")))?
                .map_err(enter_err)?;
            Ok(Arc::new(Self {
                name: name.to_string(),
                jobs: Mutex::new(Some(tx)),
            }))
        }

        /// The namespace's name.
        pub fn name(&self) -> &str {
            &self.name
        }

        /// Runs `f` on the thread inside the namespace and returns its result.
        pub fn run<T: Send + 'static>(
            &self,
            f: impl FnOnce() -> T + Send + 'static,
        ) -> std::io::Result<T> {
            let gone = || std::io::Error::other(format!("network namespace {} is gone", self.name));
            let (tx, rx) = mpsc::sync_channel(1);
            {
                let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
                let jobs = jobs.as_ref().ok_or_else(gone)?;
                jobs.send(Box::new(move || {
                    let _ = tx.send(f());
                }))
                .map_err(|_| gone())?;
            }
            rx.recv().map_err(|_| gone())
        }

        /// Stops the socket thread and removes the namespace's name (`ip netns del`).
        pub fn delete(&self) {
            let had = self
                .jobs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .is_some();
            if had {
                let _ = ip(&["netns", "del", &self.name]);
            }
        }
    }

    impl Drop for Netns {
        fn drop(&mut self) {
            self.delete();
        }
    }

    /// The pid in a lab namespace's name (`kwlab-PID-N-…`).
    fn owner_pid(name: &str) -> Option<u32> {
        name.strip_prefix(PREFIX)?.split('-').next()?.parse().ok()
    }

    /// Removes lab namespaces whose process is gone (a lab killed with SIGKILL; a zombie counts
    /// as gone), and the guard routes of this namespace when no lab here needs them any more.
    pub fn remove_stale() {
        let _lock = guard::lock();
        remove_stale_locked();
        guard::release_locked();
    }

    fn remove_stale_locked() {
        for name in list() {
            let Some(pid) = owner_pid(&name) else {
                continue;
            };
            if !kubeway_host::process::is_alive(pid) {
                let _ = ip(&["-n", &name, "link", "del", NODE_LINK]);
                let _ = ip(&["netns", "del", &name]);
            }
        }
    }

    pub mod guard {
        //! The guard routes of namespace mode: while a lab runs, the network namespace the lab
        //! runs in (the machine's root namespace, usually) gets `unreachable` routes for the
        //! documentation ranges the lab uses, so a lab kubeconfig used outside the lab's host
        //! namespace fails at once instead of sending packets out by the default route. They
        //! carry kubeway's route marker ([`kubeway_host::ROUTE_PROTO`]), are added only where no
        //! other route overlaps, are shared by the labs running in that namespace, and are removed
        //! when the last of them stops or is found dead.

        use std::net::Ipv4Addr;

        use super::{NetnsError, PREFIX, ip, list, owner_pid};

        /// The ranges guarded: the host–node link and ClusterIPs, and the pods.
        pub const RANGES: [(Ipv4Addr, u8); 2] = [
            (Ipv4Addr::new(198, 51, 100, 0), 24),
            (Ipv4Addr::new(203, 0, 113, 0), 24),
        ];

        const LOCK: &str = "/run/kubeway-lab-guard.lock";

        fn cidr((ip, len): (Ipv4Addr, u8)) -> String {
            format!("{ip}/{len}")
        }

        /// Serialises guard changes between labs, in this process and others.
        pub(crate) fn lock() -> Option<std::fs::File> {
            let f = kubeway_host::files::open_lock(std::path::Path::new(LOCK), true)
                .ok()
                .flatten()?;
            f.lock().ok()?;
            Some(f)
        }

        fn contains(net: (Ipv4Addr, u8), ip: Ipv4Addr) -> bool {
            let mask = u32::MAX.checked_shl(32 - u32::from(net.1)).unwrap_or(0);
            u32::from(net.0) & mask == u32::from(ip) & mask
        }

        /// Whether route destination `dest` (`a.b.c.d/len`, `a.b.c.d` or `default`) overlaps `net`.
        fn overlaps(dest: &str, net: (Ipv4Addr, u8)) -> bool {
            let (addr, len) = match dest.split_once('/') {
                Some((a, l)) => (a, l.parse::<u8>().unwrap_or(32)),
                None => (dest, 32),
            };
            let Ok(addr) = addr.parse::<Ipv4Addr>() else {
                return false; // `default` never overlaps: every more specific route overrides it.
            };
            if len == 0 {
                return false;
            }
            contains(net, addr) || (len <= net.1 && contains((addr, len), net.0))
        }

        fn is_ours(line: &str) -> bool {
            let proto = kubeway_host::ROUTE_PROTO.to_string();
            line.split_whitespace().next() == Some("unreachable")
                && line
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .windows(2)
                    .any(|w| w[0] == "proto" && w[1] == proto)
        }

        fn destination(line: &str) -> Option<&str> {
            let mut words = line.split_whitespace();
            let first = words.next()?;
            if matches!(
                first,
                "unicast"
                    | "local"
                    | "broadcast"
                    | "unreachable"
                    | "prohibit"
                    | "blackhole"
                    | "throw"
            ) {
                words.next()
            } else {
                Some(first)
            }
        }

        /// Adds the guard routes here unless they are there; refuses when a route of someone
        /// else overlaps them. Call with [`lock`] held.
        pub(crate) fn ensure_locked() -> Result<(), NetnsError> {
            let routes = ip(&["-4", "route", "show"])?;
            let mut present = Vec::new();
            for line in routes.lines() {
                let Some(dest) = destination(line) else {
                    continue;
                };
                for net in RANGES {
                    if !overlaps(dest, net) {
                        continue;
                    }
                    if is_ours(line) && dest == cidr(net) {
                        present.push(net);
                    } else {
                        return Err(NetnsError::GuardOverlap {
                            ranges: RANGES.map(cidr).join(" and "),
                            route: line.trim().to_string(),
                        });
                    }
                }
            }
            let proto = kubeway_host::ROUTE_PROTO.to_string();
            for net in RANGES {
                if !present.contains(&net) {
                    ip(&["route", "add", "unreachable", &cidr(net), "proto", &proto])?;
                }
            }
            Ok(())
        }

        fn netns_of(pid: &str) -> Option<(u64, u64)> {
            use std::os::unix::fs::MetadataExt;
            let m = std::fs::metadata(format!("/proc/{pid}/ns/net")).ok()?;
            Some((m.dev(), m.ino()))
        }

        /// Whether a live lab runs in this network namespace.
        fn labs_here() -> bool {
            let here = netns_of("self");
            list()
                .iter()
                .filter(|n| n.starts_with(PREFIX))
                .filter_map(|n| owner_pid(n))
                .filter(|pid| kubeway_host::process::is_alive(*pid))
                .any(|pid| netns_of(&pid.to_string()) == here)
        }

        /// Removes the guard routes of this namespace if no live lab here still needs them. Call
        /// with [`lock`] held.
        pub(crate) fn release_locked() {
            if labs_here() {
                return;
            }
            let proto = kubeway_host::ROUTE_PROTO.to_string();
            let routes = ip(&["-4", "route", "show", "proto", &proto]).unwrap_or_default();
            for net in RANGES {
                let ours = routes.lines().any(|l| {
                    destination(l) == Some(cidr(net).as_str()) && l.starts_with("unreachable")
                });
                if ours {
                    let _ = ip(&["route", "del", "unreachable", &cidr(net), "proto", &proto]);
                }
            }
        }

        /// Removes the guard routes if no live lab here still needs them.
        pub fn release() {
            let _lock = lock();
            release_locked();
        }

        #[cfg(test)]
        mod tests {
            use super::*;

            #[test]
            fn overlap_is_containment_either_way_and_default_never_overlaps() {
                let net = (Ipv4Addr::new(198, 51, 100, 0), 24);
                assert!(overlaps("198.51.100.2", net));
                assert!(overlaps("198.51.100.128/25", net));
                assert!(overlaps("198.0.0.0/8", net));
                assert!(!overlaps("198.51.101.0/24", net));
                assert!(!overlaps("default", net));
                assert!(!overlaps("0.0.0.0/0", net));
                assert!(is_ours("unreachable 198.51.100.0/24 proto 77 "));
                assert!(!is_ours("unreachable 198.51.100.0/24 proto static"));
                assert!(!is_ours("198.51.100.0/24 via 10.0.0.1 dev eth0 proto 77"));
                assert_eq!(
                    destination("unreachable 203.0.113.0/24 proto 77"),
                    Some("203.0.113.0/24")
                );
            }
        }
    }

    static NEXT: AtomicU32 = AtomicU32::new(0);

    pub(super) fn create(topology: Topology, nodes: usize) -> Result<Boundary, NetnsError> {
        if let Some(e) = unavailable() {
            return Err(e);
        }
        let lock = guard::lock();
        remove_stale_locked();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let stem = format!("{PREFIX}{}-{n}", std::process::id());
        let host = Netns::create(&format!("{stem}-host"))?;
        let node = Netns::create(&format!("{stem}-node")).inspect_err(|_| host.delete())?;
        let node_ips: Vec<_> = (0..nodes.max(1)).map(plan::node_ip).collect();
        let boundary = Boundary {
            host,
            node,
            topology,
            node_ips,
            torn_down: false.into(),
        };
        // The namespaces exist now, so this lab counts as running here for the guard.
        if let Err(e) = guard::ensure_locked() {
            drop(lock);
            return Err(e);
        }
        drop(lock);
        // On error the boundary's drop removes what was made (and the guard, if unused).
        configure(&boundary)?;
        Ok(boundary)
    }

    fn configure(b: &Boundary) -> Result<(), NetnsError> {
        let (h, n) = (b.host.name(), b.node.name());
        let cidr = |(ip, len): (std::net::Ipv4Addr, u8)| format!("{ip}/{len}");
        match b.topology {
            Topology::Reachable => {
                ip(&[
                    "-n",
                    h,
                    "link",
                    "add",
                    super::linux::HOST_LINK,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    NODE_LINK,
                    "netns",
                    n,
                ])?;
                let host_addr = format!("{}/{}", plan::HOST_IP, plan::LINK_PREFIX);
                ip(&["-n", h, "addr", "add", &host_addr, "dev", HOST_LINK])?;
                ip(&["-n", h, "link", "set", HOST_LINK, "up"])?;
                for node_ip in &b.node_ips {
                    let a = format!("{node_ip}/{}", plan::LINK_PREFIX);
                    ip(&["-n", n, "addr", "add", &a, "dev", NODE_LINK])?;
                }
                ip(&["-n", n, "link", "set", NODE_LINK, "up"])?;
            }
            Topology::Published => {
                for node_ip in &b.node_ips {
                    let a = format!("{node_ip}/32");
                    ip(&["-n", n, "addr", "add", &a, "dev", "lo"])?;
                }
            }
        }
        // Pods and ClusterIPs are local to the node: any address in those ranges can be bound.
        for range in [plan::POD_CIDR, plan::SERVICE_CIDR] {
            ip(&["-n", n, "route", "add", "local", &cidr(range), "dev", "lo"])?;
        }
        Ok(())
    }
}
