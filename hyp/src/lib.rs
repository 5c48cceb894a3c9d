//! The hypervisor as a library: the portable memory core and platform description (host-tested),
//! and the aarch64 EL2 code that only builds for the hypervisor target.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod esr;
pub mod frames;
pub mod idmap;
pub mod irq_table;
pub mod log;
pub mod mm;
pub mod monitor;
pub mod platform;
pub mod snapshot;
pub mod sync;
pub mod vdev;
pub mod vm;

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub mod arch;
