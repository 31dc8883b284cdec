//! kubeway's pure model: no I/O, only data in and conclusions out.
//!
//! - [`target`]: kubectl-style targets (`svc/web:80`) and forward port specs (`8080:http`).
//! - [`env`](mod@env): environment detection from a snapshot of kubeconfig, nodes and host facts.
//! - [`persona`]: the canonical look of each environment, shared by the lab and by detection.
//! - [`path`]: the path model: hops by layer, ways, findings and the verdict.
//! - [`explain`](mod@explain): the diagnosis rules, from collected facts to a [`path::PathReport`].
//! - [`render`]: the report as a terminal diagram, JSON and SVG.
//! - [`quote`]: user input quoted for error messages, cut to a readable length.
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod env;
pub mod explain;
pub mod path;
pub mod persona;
#[cfg_attr(not(test), deny(clippy::arithmetic_side_effects))]
pub mod quote;
pub mod render;
// User input is parsed here: no arithmetic that can overflow or panic.
#[cfg_attr(not(test), deny(clippy::arithmetic_side_effects))]
pub mod target;
