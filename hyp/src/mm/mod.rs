//! The secondary-MMU memory core: stage-2 tables, ownership, invalidation, dirty log, fault path.
//! Portable: no aarch64 assembly lives here; TLB maintenance goes through a trait.
#![forbid(unsafe_code)]

pub mod addr;
pub mod ownership;
pub mod descriptor;
pub mod phys;
pub mod stage2;
pub mod tlb;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
