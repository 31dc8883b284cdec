//! Kernel routes for `kubeway tunnel --route` (Linux): find the routes a new one would collide
//! with, add a route to a Service range via a node, and remove exactly that route again — through
//! iproute2's `ip`, the tool a user would run by hand to check what kubeway did.
//!
//! Every route kubeway adds carries its marker (`proto 77`, [`kubeway_host::ROUTE_PROTO`]), and
//! only a route with that marker, that destination and that gateway is ever removed. Ranges are
//! checked before anything is added or removed ([`check_service_route`]): only what a Service
//! range can be, never a default route, loopback, multicast or the like.

use std::net::Ipv4Addr;
use std::process::Command;

pub use ipnet::Ipv4Net;

/// Why a route could not be read, added or removed.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// Not Linux.
    #[error("kernel routes are managed on Linux only; run without --route")]
    Unsupported,
    /// No `ip`.
    #[error("managing routes needs the `ip` command from iproute2 (apt-get install iproute2)")]
    NoIpCommand,
    /// The kernel refused: not root / no CAP_NET_ADMIN.
    #[error(
        "adding a route needs root or CAP_NET_ADMIN (`sudo kubeway tunnel --route`); without --route the tunnel needs no privileges"
    )]
    NotPermitted,
    /// Another route covers or overlaps the range.
    #[error(
        "a route that overlaps {net} already exists: `{existing}`; another tunnel (minikube tunnel?) or a VPN may own it — remove it (`sudo ip route del {existing_dest}`) if it is stale, or run without --route"
    )]
    Conflict {
        /// The range asked for.
        net: Ipv4Net,
        /// The route found, as `ip route` prints it.
        existing: String,
        /// Its destination.
        existing_dest: String,
    },
    /// Not a range kubeway routes.
    #[error("{net} is not a Service range kubeway routes: {why}")]
    NotAServiceRange {
        /// The range.
        net: Ipv4Net,
        /// Why not.
        why: &'static str,
    },
    /// Not a gateway kubeway routes through.
    #[error("{via} is not a node address kubeway routes {net} through: {why}")]
    NotAGateway {
        /// The range.
        net: Ipv4Net,
        /// The gateway.
        via: Ipv4Addr,
        /// Why not.
        why: &'static str,
    },
    /// `ip` failed otherwise.
    #[error("`ip {args}` failed: {stderr}")]
    Command {
        /// Arguments.
        args: String,
        /// What it said.
        stderr: String,
    },
}

fn ip(args: &[&str]) -> Result<String, RouteError> {
    if !cfg!(target_os = "linux") {
        return Err(RouteError::Unsupported);
    }
    let out = Command::new("ip").args(args).output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            RouteError::NoIpCommand
        } else {
            RouteError::Command {
                args: args.join(" "),
                stderr: e.to_string(),
            }
        }
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if stderr.contains("Operation not permitted") {
            return Err(RouteError::NotPermitted);
        }
        return Err(RouteError::Command {
            args: args.join(" "),
            stderr,
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One line of `ip -4 route show`: its destination and the whole line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteLine {
    /// Destination range (`default` is 0.0.0.0/0).
    pub dest: Ipv4Net,
    /// Gateway, if any.
    pub via: Option<Ipv4Addr>,
    /// The `proto` word, as printed (`kernel`, `static`, `77` …).
    pub proto: Option<String>,
    /// The line as printed.
    pub line: String,
}

/// Parses `ip -4 route show` output.
pub fn parse_routes(text: &str) -> Vec<RouteLine> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let first = words.next()?;
            // Route types (`local`, `unreachable` …) come before the destination.
            let dest_word = if matches!(
                first,
                "unicast" | "local" | "broadcast" | "unreachable" | "prohibit" | "blackhole"
            ) {
                words.next()?
            } else {
                first
            };
            let dest: Ipv4Net = match dest_word {
                "default" => Ipv4Net::default(),
                d if d.contains('/') => d.parse().ok()?,
                d => Ipv4Net::new(d.parse().ok()?, 32).ok()?,
            };
            let mut via = None;
            let mut proto = None;
            let all: Vec<&str> = line.split_whitespace().collect();
            for w in all.windows(2) {
                match w {
                    ["via", v] => via = v.parse().ok(),
                    ["proto", p] => proto = Some((*p).to_string()),
                    _ => {}
                }
            }
            Some(RouteLine {
                dest,
                via,
                proto,
                line: line.trim().to_string(),
            })
        })
        .collect()
}

fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Routes of the main table that overlap `net`, except the default route (which every more
/// specific route legitimately overrides).
pub fn overlapping(net: Ipv4Net) -> Result<Vec<RouteLine>, RouteError> {
    Ok(parse_routes(&ip(&["-4", "route", "show"])?)
        .into_iter()
        .filter(|r| r.dest.prefix_len() != 0 && overlaps(&r.dest, &net))
        .collect())
}

fn marker() -> String {
    kubeway_host::ROUTE_PROTO.to_string()
}

impl RouteLine {
    /// Whether the route carries kubeway's marker (`proto 77`).
    pub fn is_marked(&self) -> bool {
        self.proto.as_deref() == Some(marker().as_str())
    }
}

/// Checks that `net via via` is a route kubeway could add for a Service range: a unicast range
/// of at most 2^20 addresses (kube-apiserver's limit for an IPv4 Service range) outside loopback,
/// link-local, multicast and the reserved blocks, through a unicast gateway outside the range.
/// A journal naming anything else was not written by kubeway and is refused.
pub fn check_service_route(net: Ipv4Net, via: Ipv4Addr) -> Result<(), RouteError> {
    check_service_range(net)?;
    let refuse = |why| Err(RouteError::NotAGateway { net, via, why });
    if via.is_loopback()
        || via.is_multicast()
        || via.is_broadcast()
        || via.is_unspecified()
        || via.is_link_local()
    {
        return refuse("not a unicast address");
    }
    if net.contains(&via) {
        return refuse("it is inside the range it would route");
    }
    Ok(())
}

/// Checks that `net` is what a Service range can be: unicast, at most 2^20 addresses (a /12 or
/// longer prefix, kube-apiserver's limit for IPv4), outside loopback, link-local, multicast and
/// the reserved blocks.
pub fn check_service_range(net: Ipv4Net) -> Result<(), RouteError> {
    let refuse = |why| Err(RouteError::NotAServiceRange { net, why });
    let first = net.network();
    if net.prefix_len() < 12 {
        return refuse("a Service range holds at most 2^20 addresses (a /12 or longer prefix)");
    }
    if first.is_loopback()
        || first.is_link_local()
        || first.is_multicast()
        || first.is_broadcast()
        || first.is_unspecified()
        || first.octets()[0] == 0
        || first.octets()[0] >= 240
    {
        return refuse("it is not a range unicast traffic is routed to");
    }
    Ok(())
}

/// Whether the route `net via gateway` with kubeway's marker is in the main table.
pub fn exists(net: Ipv4Net, via: Ipv4Addr) -> Result<bool, RouteError> {
    Ok(overlapping(net)?
        .iter()
        .any(|r| r.dest == net && r.via == Some(via) && r.is_marked()))
}

/// Adds `net via gateway` with kubeway's marker, refusing when any route overlaps it.
pub fn add(net: Ipv4Net, via: Ipv4Addr) -> Result<(), RouteError> {
    check_service_route(net, via)?;
    if let Some(r) = overlapping(net)?.into_iter().next() {
        return Err(RouteError::Conflict {
            net,
            existing_dest: r.dest.to_string(),
            existing: r.line,
        });
    }
    ip(&[
        "route",
        "add",
        &net.to_string(),
        "via",
        &via.to_string(),
        "proto",
        &marker(),
    ])
    .map(|_| ())
}

/// Removes `net via gateway` if it is there with kubeway's marker (and only that route: the
/// kernel matches destination, gateway and marker). True if one was removed. A route to the same
/// range without the marker is someone else's and stays.
pub fn remove(net: Ipv4Net, via: Ipv4Addr) -> Result<bool, RouteError> {
    check_service_route(net, via)?;
    if !exists(net, via)? {
        return Ok(false);
    }
    ip(&[
        "route",
        "del",
        &net.to_string(),
        "via",
        &via.to_string(),
        "proto",
        &marker(),
    ])
    .map(|_| true)
}

/// Whether the kernel has a route to `addr` (`ip route get`): None when it would answer
/// "Network is unreachable", else the route line it would use.
pub fn route_to(addr: Ipv4Addr) -> Result<Option<String>, RouteError> {
    match ip(&["-4", "route", "get", &addr.to_string()]) {
        Ok(out) => Ok(Some(
            out.lines().next().unwrap_or_default().trim().to_string(),
        )),
        Err(RouteError::Command { stderr, .. }) if stderr.contains("unreachable") => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_ip_route_prints() {
        let text = "default via 10.0.2.2 dev eth0 proto dhcp src 10.0.2.15 metric 100\n\
                    10.96.0.0/12 via 192.168.49.2 dev br-1234\n\
                    192.168.49.0/24 dev br-1234 proto kernel scope link src 192.168.49.1\n\
                    unreachable 198.18.0.0/15\n\
                    172.17.0.1 dev docker0 scope link\n";
        let r = parse_routes(text);
        assert_eq!(r.len(), 5);
        assert_eq!(r[0].dest.prefix_len(), 0);
        assert_eq!(r[1].dest, "10.96.0.0/12".parse::<Ipv4Net>().unwrap());
        assert_eq!(r[1].via, Some(Ipv4Addr::new(192, 168, 49, 2)));
        assert_eq!(r[2].via, None);
        assert_eq!(r[3].dest, "198.18.0.0/15".parse::<Ipv4Net>().unwrap());
        assert_eq!(r[4].dest, "172.17.0.1/32".parse::<Ipv4Net>().unwrap());
        assert_eq!(r[0].proto.as_deref(), Some("dhcp"));
        assert!(!r[1].is_marked());
        let ours = parse_routes("10.96.0.0/12 via 192.168.49.2 dev br-1 proto 77 \n");
        assert!(ours[0].is_marked());
    }

    #[test]
    fn only_service_ranges_pass_as_routes_kubeway_adds() {
        let n = |s: &str| s.parse::<Ipv4Net>().unwrap();
        let node = Ipv4Addr::new(192, 168, 49, 2);
        assert!(check_service_route(n("10.96.0.0/12"), node).is_ok());
        assert!(
            check_service_route(n("198.51.100.128/25"), Ipv4Addr::new(198, 51, 100, 2)).is_ok()
        );
        for (net, via) in [
            ("0.0.0.0/0", node),
            ("10.0.0.0/8", node),
            ("127.0.0.0/16", node),
            ("224.0.0.0/16", node),
            ("169.254.0.0/16", node),
            ("255.255.255.255/32", node),
            ("10.96.0.0/12", Ipv4Addr::new(10, 96, 0, 1)),
            ("10.96.0.0/12", Ipv4Addr::LOCALHOST),
        ] {
            assert!(
                check_service_route(n(net), via).is_err(),
                "{net} via {via} must be refused"
            );
        }
    }

    #[test]
    fn overlap_is_containment_either_way() {
        let n = |s: &str| s.parse::<Ipv4Net>().unwrap();
        assert!(overlaps(&n("10.96.0.0/12"), &n("10.100.0.0/16")));
        assert!(overlaps(&n("10.100.0.0/16"), &n("10.96.0.0/12")));
        assert!(overlaps(&n("10.96.0.0/12"), &n("10.96.0.0/12")));
        assert!(!overlaps(&n("10.96.0.0/12"), &n("10.112.0.0/12")));
        assert!(!overlaps(&n("198.51.100.128/25"), &n("198.51.100.0/25")));
    }
}
