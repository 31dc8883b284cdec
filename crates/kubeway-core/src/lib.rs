//! kubeway's pure model: no I/O, only data in and conclusions out.
//!
//! - [`target`]: kubectl-style targets (`svc/web:80`) and forward port specs (`8080:http`).
//! - [`env`](mod@env): environment detection from a snapshot of kubeconfig, nodes and host facts.
//! - [`persona`]: the canonical look of each environment, shared by the lab and by detection.
#![warn(missing_docs)]

pub mod env;
pub mod persona;
pub mod target;
