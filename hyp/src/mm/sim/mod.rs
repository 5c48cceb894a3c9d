//! Host simulation of what stage-2 runs on: physical memory ([`SimMemory`]), a table-frame
//! allocator ([`SimFrameAlloc`]), and a multi-CPU machine ([`Machine`]) whose per-CPU TLBs keep
//! translations until an invalidation covering them completes, with a hook that runs between
//! any two primitive steps (entry stores, TLB maintenance, table alloc/free) and a checker for
//! invariants I2 and I4.

mod alloc;
mod memory;

pub use self::alloc::SimFrameAlloc;
pub use memory::{FrameWords, SimMemory};
