//! Access to the physical frames that hold stage-2 tables, and where table frames come from.
//!
//! Tables live in physical memory; the core never dereferences a [`Pa`] itself. On aarch64 the
//! [`PhysMem`] implementation goes through the hypervisor's identity map (in `arch`); on the host
//! `sim::SimMemory` (or `sim::Machine`'s handle) stands in for RAM. Every store of an entry is
//! one call, so a simulation can observe (and interleave other CPUs between) each primitive step.

use core::ops::Range;

use super::addr::Pa;
use super::descriptor::Pte;

/// Reads and writes stage-2 entries in physical memory.
///
/// `index` counts 8-byte entries from `table`; for a concatenated root table it can exceed 511
/// and then addresses the following frames of the root.
pub trait PhysMem {
    /// Load the entry at `table + 8 * index` (a single-copy-atomic 64-bit load on hardware).
    fn read_pte(&self, table: Pa, index: usize) -> Pte;
    /// Store `pte` at `table + 8 * index` (a single-copy-atomic 64-bit store on hardware).
    fn write_pte(&mut self, table: Pa, index: usize, pte: Pte);
    /// Zero the 4 KiB frame at `table` before it is linked into a table tree.
    fn zero_table(&mut self, table: Pa);
    /// Order every earlier table store before every later one, for another CPU's walker: a new
    /// table's contents before the entry that links it (a `DMB ISHST` on hardware, as Linux's
    /// `smp_wmb` before it publishes a table). Without it a walker on another CPU may follow
    /// the link and read what the frame held before, such as the stale leaves of a recycled
    /// table frame.
    fn publish_barrier(&mut self);
    /// Whether entries `indices` of `table` all equal `pte` (whether a table is left empty).
    /// Implementations over plain memory may scan faster than entry-by-entry loads.
    fn entries_equal(&self, table: Pa, indices: Range<usize>, pte: Pte) -> bool {
        indices.into_iter().all(|i| self.read_pte(table, i) == pte)
    }
}

impl<M: PhysMem + ?Sized> PhysMem for &mut M {
    fn read_pte(&self, table: Pa, index: usize) -> Pte {
        (**self).read_pte(table, index)
    }
    fn write_pte(&mut self, table: Pa, index: usize, pte: Pte) {
        (**self).write_pte(table, index, pte)
    }
    fn zero_table(&mut self, table: Pa) {
        (**self).zero_table(table)
    }
    fn publish_barrier(&mut self) {
        (**self).publish_barrier()
    }
    fn entries_equal(&self, table: Pa, indices: Range<usize>, pte: Pte) -> bool {
        (**self).entries_equal(table, indices, pte)
    }
}

/// Supplies and takes back the frames that hold page tables (the hypervisor's frame allocator,
/// or the ownership layer, which records them as owned by the hypervisor).
pub trait TableAlloc {
    /// One 4 KiB frame for a table, or `None` when out of memory. Contents need not be zero.
    fn alloc_table(&mut self) -> Option<Pa>;
    /// Take back a table frame. Stage-2 calls this only after the TLB invalidation that removed
    /// every translation walked through the frame has completed (invariant I4).
    fn free_table(&mut self, table: Pa);
    /// `frames` physically contiguous frames aligned to `frames * 4 KiB` for a concatenated root
    /// table (VTTBR_EL2.BADDR alignment). `frames` is a power of two between 1 and 16.
    fn alloc_root(&mut self, frames: usize) -> Option<Pa>;
    /// Take back a root obtained from [`TableAlloc::alloc_root`] (same I4 rule as tables).
    fn free_root(&mut self, root: Pa, frames: usize);
}

impl<A: TableAlloc + ?Sized> TableAlloc for &mut A {
    fn alloc_table(&mut self) -> Option<Pa> {
        (**self).alloc_table()
    }
    fn free_table(&mut self, table: Pa) {
        (**self).free_table(table)
    }
    fn alloc_root(&mut self, frames: usize) -> Option<Pa> {
        (**self).alloc_root(frames)
    }
    fn free_root(&mut self, root: Pa, frames: usize) {
        (**self).free_root(root, frames)
    }
}
