//! Virtual machines: what the guest sees of the machine, decided portably; the world switch
//! that applies those decisions lives in `arch`.
#![forbid(unsafe_code)]

pub mod console;
pub mod cpu_id;
pub mod devices;
pub mod dirty_share;
pub mod exit;
pub mod inject;
pub mod pause;
pub mod power;
pub mod psci;
pub mod step;
