//! kubeway's pure model: no I/O, only data in and conclusions out.
//!
//! - [`target`]: kubectl-style targets (`svc/web:80`) and forward port specs (`8080:http`).
//! - [`env`](mod@env): environment detection from a snapshot of kubeconfig, nodes and host facts.
//! - [`persona`]: the canonical look of each environment, shared by the lab and by detection.
//! - [`path`]: the path model: hops by layer, ways, findings and the verdict.
//! - [`explain`](mod@explain): the diagnosis rules, from collected facts to a [`path::PathReport`].
//! - [`render`]: the report as a terminal diagram, JSON and SVG.
#![warn(missing_docs)]

pub mod env;
pub mod explain;
pub mod path;
pub mod persona;
pub mod render;
pub mod target;
