//! Host addresses for Services announced on this host: a distinct loopback address per Service
//! where the OS routes all of 127.0.0.0/8 to the loopback interface (Linux), else 127.0.0.1;
//! claiming an address so other kubeway processes skip it; and binding a Service port there,
//! moving to an unprivileged port when the process may not bind one below 1024.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use tokio::net::TcpListener;

/// Per-Service addresses come from 127.77.0.0/16, clear of the lab's ranges (127.0.0.1 API,
/// 127.49 nodes, 127.96 ClusterIPs, 127.244/127.245 pods).
pub const SERVICE_NET: [u8; 2] = [127, 77];

/// The port held on an address to claim it (as the lab claims its addresses).
pub const CLAIM_PORT: u16 = 65535;

/// Whether every address of 127.0.0.0/8 works without configuring it (Linux routes the whole
/// /8 to `lo`; macOS and Windows answer on 127.0.0.1 only unless aliases are added).
pub fn whole_loopback_net_routed() -> bool {
    cfg!(target_os = "linux")
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Candidate per-Service addresses for `key` (e.g. `namespace/name`), starting at a place
/// derived from it so a Service gets the same address again when it is free, then every other
/// address of [`SERVICE_NET`] once (host parts .0 and .255 are skipped).
pub fn candidates(key: &str) -> impl Iterator<Item = Ipv4Addr> {
    const USABLE: u32 = 256 * 254;
    let start = u32::try_from(fnv1a(key).checked_rem(u64::from(USABLE)).unwrap_or(0)).unwrap_or(0);
    (0..USABLE).map(move |i| {
        // start and i are below USABLE, so neither the sum nor the divisions can go wrong.
        let n = start.wrapping_add(i).checked_rem(USABLE).unwrap_or(0);
        let (hi, lo) = (
            n.checked_div(254).unwrap_or(0),
            n.checked_rem(254).unwrap_or(0).saturating_add(1),
        );
        Ipv4Addr::new(
            SERVICE_NET[0],
            SERVICE_NET[1],
            u8::try_from(hi).unwrap_or(0),
            u8::try_from(lo).unwrap_or(1),
        )
    })
}

/// Claims `ip` for this process by listening on [`CLAIM_PORT`] there; `None` when another
/// process holds it. Keep the listener as long as the address is in use.
pub fn claim(ip: IpAddr) -> io::Result<Option<TcpListener>> {
    match crate::listen(SocketAddr::new(ip, CLAIM_PORT)) {
        Ok(l) => Ok(Some(l)),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Ok(None),
        Err(e) => Err(e),
    }
}

/// Ports below this need privileges on most systems.
pub const FIRST_UNPRIVILEGED: u16 = 1024;

/// The port used instead of a privileged `port` the process may not bind: `port + 8000`
/// (80 → 8080, 443 → 8443), as people do by hand.
pub fn unprivileged_alternative(port: u16) -> u16 {
    if port < FIRST_UNPRIVILEGED {
        port.saturating_add(8000)
    } else {
        port
    }
}

/// Why a Service port listens on another local port than its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moved {
    /// The port is below 1024 and binding it was refused (no root, no CAP_NET_BIND_SERVICE).
    Privileged,
    /// Something else listens on the port at this address.
    Taken,
}

/// A bound Service port.
#[derive(Debug)]
pub struct BoundPort {
    /// The listener.
    pub listener: TcpListener,
    /// Where it listens.
    pub local: SocketAddr,
    /// Set when `local`'s port is not the Service's port.
    pub moved: Option<Moved>,
}

/// What binding a Service port should do next after `kind` went wrong on `tried`, given the
/// Service's own `port`: the next local port to try (0 = any free one) and why it moved, or
/// `None` to give up with the error. `AddrInUse` on the Service's own port gives up when
/// `other_address_possible` (the caller tries another address), and moves to a free port
/// otherwise.
pub fn next_port(
    port: u16,
    tried: u16,
    kind: io::ErrorKind,
    other_address_possible: bool,
) -> Option<(u16, Moved)> {
    match kind {
        io::ErrorKind::PermissionDenied if tried == port && port < FIRST_UNPRIVILEGED => {
            Some((unprivileged_alternative(port), Moved::Privileged))
        }
        io::ErrorKind::AddrInUse | io::ErrorKind::PermissionDenied
            if tried == unprivileged_alternative(port) && tried != port =>
        {
            Some((0, Moved::Privileged))
        }
        io::ErrorKind::AddrInUse if tried == port && !other_address_possible => {
            Some((0, Moved::Taken))
        }
        _ => None,
    }
}

/// Binds the Service `port` on `ip` as [`next_port`] decides.
pub fn bind_service_port(
    ip: IpAddr,
    port: u16,
    other_address_possible: bool,
) -> io::Result<BoundPort> {
    let mut tried = port;
    let mut moved = None;
    loop {
        match crate::listen(SocketAddr::new(ip, tried)) {
            Ok(listener) => {
                let local = listener.local_addr()?;
                return Ok(BoundPort {
                    listener,
                    local,
                    moved,
                });
            }
            Err(e) => match next_port(port, tried, e.kind(), other_address_possible) {
                Some((next, why)) if next != tried || next == 0 => {
                    tried = next;
                    moved = Some(why);
                }
                _ => return Err(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use io::ErrorKind::{AddrInUse, ConnectionRefused, PermissionDenied};

    #[test]
    fn candidates_are_stable_distinct_and_stay_in_the_service_net() {
        let a: Vec<_> = candidates("default/web").take(3).collect();
        assert_eq!(a, candidates("default/web").take(3).collect::<Vec<_>>());
        assert_ne!(a[0], candidates("default/api").next().expect("one"));
        let all: std::collections::HashSet<_> = candidates("x").collect();
        assert_eq!(all.len(), 256 * 254, "every address once");
        assert!(all.iter().all(|ip| {
            let o = ip.octets();
            o[0] == 127 && o[1] == 77 && o[3] != 0 && o[3] != 255
        }));
    }

    #[test]
    fn a_refused_privileged_port_moves_up_by_8000_then_anywhere() {
        assert_eq!(
            next_port(80, 80, PermissionDenied, true),
            Some((8080, Moved::Privileged))
        );
        assert_eq!(
            next_port(443, 443, PermissionDenied, false),
            Some((8443, Moved::Privileged))
        );
        assert_eq!(
            next_port(80, 8080, AddrInUse, true),
            Some((0, Moved::Privileged)),
            "8080 is taken too: any free port, still because of the privilege"
        );
        assert_eq!(
            next_port(8080, 8080, PermissionDenied, true),
            None,
            "an unprivileged port refused is an error to report, not to paper over"
        );
        assert_eq!(next_port(80, 80, ConnectionRefused, true), None);
    }

    #[test]
    fn a_taken_port_moves_only_where_no_other_address_can_be_tried() {
        assert_eq!(
            next_port(80, 80, AddrInUse, true),
            None,
            "per-Service addresses: the caller tries the next address"
        );
        assert_eq!(
            next_port(80, 80, AddrInUse, false),
            Some((0, Moved::Taken)),
            "one shared address: a free port, reported as a conflict"
        );
    }

    #[tokio::test]
    async fn binding_a_taken_port_on_the_shared_address_moves_it() {
        let held = crate::listen(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind");
        let port = held.local_addr().expect("addr").port();
        let ip = IpAddr::from([127, 0, 0, 1]);
        let b = bind_service_port(ip, port, false).expect("moves");
        assert_eq!(b.moved, Some(Moved::Taken));
        assert_ne!(b.local.port(), port);
        let e = bind_service_port(ip, port, true).expect_err("left to the caller");
        assert_eq!(e.kind(), AddrInUse);
    }
}
