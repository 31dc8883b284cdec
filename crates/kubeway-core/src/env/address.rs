//! Small pure helpers for the URLs and addresses detection reads (no resolution, no I/O).

use std::net::IpAddr;

/// The host and port of a URL such as `https://127.0.0.1:6443` or `tcp://[::1]:2376`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UrlHost {
    /// The host, without brackets; empty for `unix:///…`.
    pub host: String,
    /// The explicit port, if any.
    pub port: Option<u16>,
}

impl UrlHost {
    /// Splits `scheme://[user@]host[:port][/path]`; `None` without `://`.
    pub fn parse(url: &str) -> Option<UrlHost> {
        let (_, rest) = url.trim().split_once("://")?;
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let authority = authority
            .rsplit_once('@')
            .map_or(authority, |(_, host)| host);
        let (host, port_text) = if let Some(stripped) = authority.strip_prefix('[') {
            match stripped.split_once(']') {
                Some((host, tail)) => (host, tail.strip_prefix(':')),
                None => (stripped, None),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) if !host.contains(':') => (host, Some(port)),
                _ => (authority, None),
            }
        };
        Some(UrlHost {
            host: host.to_ascii_lowercase(),
            port: port_text.and_then(|p| p.parse().ok()),
        })
    }

    /// The host as an IP address, when it is one.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }

    /// Whether the host is a loopback address or `localhost`.
    pub fn is_loopback(&self) -> bool {
        self.host == "localhost" || self.ip().is_some_and(|ip| ip.is_loopback())
    }
}

/// Whether `ip` is inside `a.b.c.0/24`.
pub(crate) fn in_v4_24(ip: Option<IpAddr>, a: u8, b: u8, c: u8) -> bool {
    matches!(ip, Some(IpAddr::V4(v4)) if { let o = v4.octets(); o[0] == a && o[1] == b && o[2] == c })
}

/// Whether `ip` is inside 172.16.0.0/12.
pub(crate) fn in_172_16_12(ip: Option<IpAddr>) -> bool {
    matches!(ip, Some(IpAddr::V4(v4)) if v4.octets()[0] == 172 && (16..32).contains(&v4.octets()[1]))
}

/// Whether `text` is an unspecified address (`0.0.0.0`, `::`).
pub(crate) fn is_unspecified(host: &str) -> bool {
    host.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hosts_and_ports() {
        let u = UrlHost::parse("https://127.0.0.1:49524").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", Some(49524)));
        assert!(u.is_loopback());
        let u = UrlHost::parse("https://[::1]:6443/api").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", Some(6443)));
        assert!(u.is_loopback());
        let u = UrlHost::parse("https://kubernetes.docker.internal:6443").unwrap();
        assert_eq!(u.host, "kubernetes.docker.internal");
        assert!(!u.is_loopback());
        let u = UrlHost::parse("unix:///var/run/docker.sock").unwrap();
        assert_eq!(u.host, "");
        let u = UrlHost::parse("ssh://me@build-box").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("build-box", None));
        assert_eq!(UrlHost::parse("no scheme"), None);
        assert_eq!(
            UrlHost::parse("https://[::1"),
            Some(UrlHost {
                host: "::1".into(),
                port: None
            })
        );
        assert!(in_v4_24(
            UrlHost::parse("https://192.168.49.2:8443").unwrap().ip(),
            192,
            168,
            49
        ));
        assert!(in_172_16_12("172.18.57.156".parse().ok()));
        assert!(!in_172_16_12("172.32.0.1".parse().ok()));
        assert!(is_unspecified("0.0.0.0"));
    }
}
