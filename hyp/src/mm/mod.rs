//! The secondary-MMU memory core: stage-2 tables, ownership, invalidation, dirty log, fault path.
//! Portable: no aarch64 assembly lives here; TLB maintenance goes through a trait.
#![forbid(unsafe_code)]

pub mod addr;
mod bugs;
pub mod descriptor;
pub mod dirty;
pub mod fault;
pub mod ownership;
pub mod phys;
pub mod stage2;
pub mod tlb;
pub mod vm;
pub mod vmid;
// On hosted targets always: benches and tools link the lib without its test cfg.
#[cfg(any(test, feature = "sim", not(target_os = "none")))]
pub mod sim;

#[cfg(test)]
mod tests;
