//! The secondary-MMU memory core: stage-2 tables, ownership, invalidation, dirty log, fault path.
//! Portable: no aarch64 assembly lives here; TLB maintenance goes through a trait.
#![forbid(unsafe_code)]

pub mod addr;
mod bugs;
pub mod descriptor;
pub mod dirty;
pub mod ownership;
pub mod phys;
pub mod stage2;
pub mod tlb;
pub mod vm;
/// The fault path (part of the VM's implementation; named here as the layer it is).
pub use vm::fault;
pub mod vmid;
// On hosted targets always: benches and tools link the lib without its test cfg.
#[cfg(any(test, feature = "sim", not(target_os = "none")))]
pub mod sim;

#[cfg(test)]
mod tests;
