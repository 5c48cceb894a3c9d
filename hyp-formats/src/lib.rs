//! What the hypervisor and its host tools must agree on byte for byte and word for word, in
//! one place so neither side can drift: the hypervisor (`hyp`) writes and reads these at EL2,
//! and `xtask` checks and describes them on the host without linking the hypervisor.
//!
//! - [`snapshot`]: the snapshot file format, its streaming writer, validating reader and
//!   chains.
//! - [`dirty_log`]: the `hyp.dirty-log=` file of dirty-page harvests.
//! - [`monitor`]: the monitor's language: commands as typed at its prompt, and the `hyp.*`
//!   bootargs that schedule them for unattended runs.
//! - [`log_level`]: the `hyp.log=` bootarg.
//!
//! Only formats and parsers live here; what the hypervisor does with them (pausing VMs,
//! harvesting, running commands) stays in `hyp`.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod dirty_log;
pub mod log_level;
pub mod monitor;
pub mod snapshot;
