//! Host simulation of what stage-2 runs on: physical memory ([`SimMemory`]), a table-frame
//! allocator ([`SimFrameAlloc`]), and a multi-CPU machine ([`SharedMachine`]) whose per-CPU
//! TLBs keep translations until an invalidation covering them completes, with a hook that runs
//! between any two primitive steps (entry stores, TLB maintenance, table alloc/free) and a
//! checker for invariants I2 and I4 ([`BbmChecker`]).

mod alloc;
mod checker;
mod machine;
mod memory;
mod tlb;
mod walk;

pub use self::alloc::SimFrameAlloc;
pub use checker::{BbmChecker, Slot, Violation};
pub use machine::{
    Access, GuestFault, Hook, Machine, MachineAlloc, MachineConfig, MachineMem, MachineTlb,
    SharedMachine, Step,
};
pub use memory::{FrameWords, SimMemory};
pub use tlb::{SimTlb, TlbEntry};
pub use walk::{MAX_PATH, WalkHit, hw_walk, hw_walk_with};
