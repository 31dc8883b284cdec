//! kubeway's routing engine, what `forward`, `open`, `tunnel` and `up` share: a [`Router`] over
//! the ready endpoints of one port of a target (one watch and one pool of port-forward sessions
//! per pod for all the target's ports), routed connections that move to another pod when the
//! app refused them ([`RoutedConn`]), and accept-and-carry that tells the truth about every
//! connection's end ([`serve_routed`]): only a clean end on the pod's side reaches the local
//! client as a FIN, anything else as a reset, counted and reported as an [`Event`].
//!
//! Embedding the resilient forward in a kube-rs program:
//!
//! ```no_run
//! # async fn demo(cluster: kubeway_kube::Cluster) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use kubeway_core::target::{PortRef, Target, TargetKind};
//! use kubeway_engine::{Router, RouterOptions, event, serve_routed};
//! use tokio_util::sync::CancellationToken;
//!
//! let cancel = CancellationToken::new();
//! let target = Target::parse("svc/web", TargetKind::Service)?;
//! let routers = Router::start(
//!     &cluster,
//!     &target,
//!     &[PortRef::Number(80)],
//!     RouterOptions::default(),
//!     Arc::new(|e: event::Event| eprintln!("{e:?}")),
//!     cancel.clone(),
//! )
//! .await?;
//! let listener = kubeway_net::bind_loopback(8080).await?;
//! let stats = Arc::new(kubeway_net::Stats::default());
//! serve_routed(listener, routers[0].clone(), stats, cancel.clone()).await?;
//! # Ok(())
//! # }
//! ```

pub mod addressing;
pub mod carrier;
mod conn;
pub mod event;
pub mod journal;
pub mod reach;
mod report;
mod router;
mod serve;
pub mod svcenv;

pub use conn::{Killed, REPLAY_LIMIT, RoutedConn};
pub use event::{ConnectionReport, End, Event, Events};
pub use router::{DialError, Router, RouterOptions, WAIT_FOR_ENDPOINT, error_chain};
pub use serve::{DRAIN, carry_one, serve_routed};
