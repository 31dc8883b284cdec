//! The environment the kubelet gives a pod for the Services of its namespace (the
//! `{SVC}_SERVICE_HOST` family and the Docker-link `{SVC}_PORT…` family), pointing at the local
//! addresses where `kubeway up` serves them, and the same as a dotenv file.

use std::net::IpAddr;

/// One Service port as served locally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPort {
    /// The Service port's name, if any.
    pub name: Option<String>,
    /// The local port (the Service's own unless it had to move).
    pub port: u16,
    /// `TCP` or `UDP`.
    pub protocol: String,
}

/// One Service as served locally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalService {
    /// The Service's name.
    pub name: String,
    /// Its local address.
    pub ip: IpAddr,
    /// Its ports, in the Service's order (the first is the default, as for the kubelet).
    pub ports: Vec<LocalPort>,
}

/// The variable-name form of a Service or port name: upper case, `-` and `.` as `_`.
fn var(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '-' | '.' => '_',
            c => c.to_ascii_uppercase(),
        })
        .collect()
}

/// The variables for `services`, as the kubelet sets them, sorted by name.
pub fn variables(services: &[LocalService]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for s in services {
        let Some(first) = s.ports.first() else {
            continue;
        };
        let svc = var(&s.name);
        let host = s.ip.to_string();
        let url_host = match s.ip {
            IpAddr::V6(_) => format!("[{host}]"),
            IpAddr::V4(_) => host.clone(),
        };
        out.push((format!("{svc}_SERVICE_HOST"), host.clone()));
        out.push((format!("{svc}_SERVICE_PORT"), first.port.to_string()));
        for p in &s.ports {
            if let Some(name) = p.name.as_deref().filter(|n| !n.is_empty()) {
                out.push((
                    format!("{svc}_SERVICE_PORT_{}", var(name)),
                    p.port.to_string(),
                ));
            }
        }
        let proto = first.protocol.to_ascii_lowercase();
        out.push((
            format!("{svc}_PORT"),
            format!("{proto}://{url_host}:{}", first.port),
        ));
        for p in &s.ports {
            let upper = p.protocol.to_ascii_uppercase();
            let lower = p.protocol.to_ascii_lowercase();
            let prefix = format!("{svc}_PORT_{}_{upper}", p.port);
            out.push((prefix.clone(), format!("{lower}://{url_host}:{}", p.port)));
            out.push((format!("{prefix}_PROTO"), lower));
            out.push((format!("{prefix}_PORT"), p.port.to_string()));
            out.push((format!("{prefix}_ADDR"), host.clone()));
        }
    }
    out.sort();
    out.dedup_by(|a, b| a.0 == b.0);
    out
}

/// The variables as a dotenv file: `NAME=value` lines, values quoted when they need it.
pub fn dotenv(vars: &[(String, String)]) -> String {
    let mut out = String::from(
        "# The Service variables a pod would get, pointing at kubeway up's local addresses.\n",
    );
    for (k, v) in vars {
        if v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:/-[]".contains(&b))
        {
            out.push_str(&format!("{k}={v}\n"));
        } else {
            out.push_str(&format!(
                "{k}=\"{}\"\n",
                v.replace('\\', "\\\\").replace('"', "\\\"")
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_follow_the_kubelet() {
        let svc = LocalService {
            name: "redis-primary".into(),
            ip: "127.77.1.2".parse().expect("ip"),
            ports: vec![
                LocalPort {
                    name: Some("redis".into()),
                    port: 6379,
                    protocol: "TCP".into(),
                },
                LocalPort {
                    name: None,
                    port: 53,
                    protocol: "UDP".into(),
                },
            ],
        };
        let vars = variables(&[svc]);
        let get = |k: &str| {
            vars.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
                .unwrap_or_else(|| panic!("{k} missing from {vars:?}"))
        };
        assert_eq!(get("REDIS_PRIMARY_SERVICE_HOST"), "127.77.1.2");
        assert_eq!(get("REDIS_PRIMARY_SERVICE_PORT"), "6379");
        assert_eq!(get("REDIS_PRIMARY_SERVICE_PORT_REDIS"), "6379");
        assert_eq!(get("REDIS_PRIMARY_PORT"), "tcp://127.77.1.2:6379");
        assert_eq!(get("REDIS_PRIMARY_PORT_6379_TCP"), "tcp://127.77.1.2:6379");
        assert_eq!(get("REDIS_PRIMARY_PORT_6379_TCP_PROTO"), "tcp");
        assert_eq!(get("REDIS_PRIMARY_PORT_6379_TCP_PORT"), "6379");
        assert_eq!(get("REDIS_PRIMARY_PORT_6379_TCP_ADDR"), "127.77.1.2");
        assert_eq!(get("REDIS_PRIMARY_PORT_53_UDP"), "udp://127.77.1.2:53");
        let file = dotenv(&vars);
        assert!(
            file.contains("REDIS_PRIMARY_SERVICE_HOST=127.77.1.2\n"),
            "{file}"
        );
    }
}
