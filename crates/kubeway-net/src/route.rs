//! Kernel routes for `kubeway tunnel --route` (Linux): find the routes a new one would collide
//! with, add a route to a Service range via a node, and remove exactly that route again — through
//! iproute2's `ip`, the tool a user would run by hand to check what kubeway did.

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
            let all: Vec<&str> = line.split_whitespace().collect();
            for w in all.windows(2) {
                if w[0] == "via" {
                    via = w[1].parse().ok();
                }
            }
            Some(RouteLine {
                dest,
                via,
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

/// Whether the route `net via gateway` is in the main table.
pub fn exists(net: Ipv4Net, via: Ipv4Addr) -> Result<bool, RouteError> {
    Ok(overlapping(net)?
        .iter()
        .any(|r| r.dest == net && r.via == Some(via)))
}

/// Adds `net via gateway`, refusing when any route overlaps it.
pub fn add(net: Ipv4Net, via: Ipv4Addr) -> Result<(), RouteError> {
    if let Some(r) = overlapping(net)?.into_iter().next() {
        return Err(RouteError::Conflict {
            net,
            existing_dest: r.dest.to_string(),
            existing: r.line,
        });
    }
    ip(&["route", "add", &net.to_string(), "via", &via.to_string()]).map(|_| ())
}

/// Removes `net via gateway` if it is there (and only that route). True if one was removed.
pub fn remove(net: Ipv4Net, via: Ipv4Addr) -> Result<bool, RouteError> {
    if !exists(net, via)? {
        return Ok(false);
    }
    ip(&["route", "del", &net.to_string(), "via", &via.to_string()]).map(|_| true)
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
