//! What kubeway keeps on the host and how: private files and directories created safely (mode
//! 0600/0700 from the start, never through a symbolic link, never overwriting what another
//! program put there) in [`files`], the state directory without any shared-temp-folder fallback
//! in [`state`], whether a process still lives (a zombie does not) in [`process`], and
//! kubeway's block of names in a hosts file in [`hosts`].
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::arithmetic_side_effects
    )
)]

pub mod files;
pub mod hosts;
pub mod process;
pub mod state;

/// The `proto` number that marks the kernel routes kubeway adds (`ip route … proto 77`): the
/// tunnel's `--route` and the lab's namespace-mode guard routes. Only routes carrying it are
/// ever removed. 77 is not among iproute2's registered protocols (`/etc/iproute2/rt_protos`).
pub const ROUTE_PROTO: u8 = 77;

/// The effective user id of this process (0 for root); 0 where there are no uids.
pub fn euid() -> u32 {
    #[cfg(unix)]
    {
        rustix::process::geteuid().as_raw()
    }
    #[cfg(not(unix))]
    {
        0
    }
}
