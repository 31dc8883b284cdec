//! Where Services get their host address: a loopback address of its own per Service where the
//! OS routes all of 127.0.0.0/8 to the loopback interface (Linux: 127.77.x.y, so two Services
//! can both use port 80), else 127.0.0.1 shared, a port two Services share moving to a free one,
//! reported. Used by `tunnel` (LoadBalancer Services) and `up` (every Service).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};

use kubeway_net::loopback::{self, BoundPort};
use tokio::net::TcpListener;

/// Why a Service could not be placed.
#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    /// Listening on one of its ports failed.
    #[error("listening for {key} on {ip}")]
    Listen {
        /// `namespace/name`.
        key: String,
        /// The address.
        ip: IpAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Claiming a per-Service address failed.
    #[error("claiming the loopback address {ip}")]
    Claim {
        /// The address.
        ip: IpAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Every per-Service address is taken.
    #[error("no free address left in 127.{}.0.0/16 for {key}", loopback::SERVICE_NET[1])]
    Exhausted {
        /// `namespace/name`.
        key: String,
    },
}

/// Where Services get their host address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Addressing {
    /// A distinct loopback address per Service from 127.77.0.0/16 (so two Services can both
    /// use port 80).
    PerService,
    /// 127.0.0.1 for every Service; a port two Services share goes to a free port instead,
    /// reported as a conflict.
    Shared,
}

impl Addressing {
    /// Per-Service addresses where the OS routes all of 127.0.0.0/8 to the loopback interface.
    /// `KUBEWAY_TUNNEL_ADDRESSING=shared` forces the shared address (how macOS and Windows
    /// behave, and how the tests reach that branch on Linux); `up` honours it too.
    pub fn detect() -> Self {
        let forced = std::env::var("KUBEWAY_TUNNEL_ADDRESSING").ok();
        if forced.as_deref() == Some("shared") || !loopback::whole_loopback_net_routed() {
            Addressing::Shared
        } else {
            Addressing::PerService
        }
    }

    /// Picks an address for the Service `key` (`namespace/name`; not one of `used`) and binds
    /// its TCP `ports` there.
    pub fn place(
        self,
        key: &str,
        ports: &[u16],
        used: &HashSet<IpAddr>,
    ) -> Result<Placement, PlaceError> {
        match self {
            Addressing::Shared => {
                let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
                let bound = bind_all(ip, ports, false).map_err(|source| PlaceError::Listen {
                    key: key.to_string(),
                    ip,
                    source,
                })?;
                Ok(Placement {
                    ip,
                    claim: None,
                    bound,
                })
            }
            Addressing::PerService => {
                for v4 in loopback::candidates(key) {
                    let ip = IpAddr::V4(v4);
                    if used.contains(&ip) {
                        continue;
                    }
                    let claim = if ports.contains(&loopback::CLAIM_PORT) {
                        None
                    } else {
                        match loopback::claim(ip)
                            .map_err(|source| PlaceError::Claim { ip, source })?
                        {
                            Some(l) => Some(l),
                            None => continue,
                        }
                    };
                    match bind_all(ip, ports, true) {
                        Ok(bound) => return Ok(Placement { ip, claim, bound }),
                        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
                        Err(source) => {
                            return Err(PlaceError::Listen {
                                key: key.to_string(),
                                ip,
                                source,
                            });
                        }
                    }
                }
                Err(PlaceError::Exhausted {
                    key: key.to_string(),
                })
            }
        }
    }

    /// Binds one more port at an address already placed (a Service gained a port).
    pub fn bind_more(self, ip: IpAddr, port: u16) -> std::io::Result<BoundPort> {
        loopback::bind_service_port(ip, port, false)
    }
}

fn bind_all(
    ip: IpAddr,
    ports: &[u16],
    other_address_possible: bool,
) -> std::io::Result<Vec<(u16, BoundPort)>> {
    ports
        .iter()
        .map(|&p| loopback::bind_service_port(ip, p, other_address_possible).map(|b| (p, b)))
        .collect()
}

/// A Service's place on the host.
pub struct Placement {
    /// Its address.
    pub ip: IpAddr,
    /// Holds the address against other kubeway processes while the Service is served.
    pub claim: Option<TcpListener>,
    /// Its TCP ports, bound.
    pub bound: Vec<(u16, BoundPort)>,
}
