//! A frame allocator for simulated table pages: a fixed PA range, first-fit reuse of freed
//! frames, aligned contiguous runs for concatenated roots. Counts live frames for leak checks.

use alloc::vec::Vec;

use crate::mm::addr::{PAGE_SIZE, Pa};
use crate::mm::phys::TableAlloc;

#[derive(Debug)]
pub struct SimFrameAlloc {
    next: u64,
    end: u64,
    free: Vec<Pa>,
    live: usize,
    /// Refuse allocations once this many more have succeeded (for out-of-memory tests).
    budget: Option<usize>,
}

impl SimFrameAlloc {
    /// Frames `[base, base + len)`.
    pub fn new(base: Pa, len: u64) -> Self {
        assert!(
            base.is_aligned(PAGE_SIZE) && len.is_multiple_of(PAGE_SIZE),
            "unaligned table range"
        );
        Self {
            next: base.raw(),
            end: base.raw() + len,
            free: Vec::new(),
            live: 0,
            budget: None,
        }
    }
    /// Frames handed out and not yet returned.
    pub fn live(&self) -> usize {
        self.live
    }
    /// Allow only `n` more allocations (`None`: unlimited).
    pub fn set_budget(&mut self, n: Option<usize>) {
        self.budget = n;
    }
    fn take_budget(&mut self) -> bool {
        match &mut self.budget {
            Some(0) => false,
            Some(n) => {
                *n -= 1;
                true
            }
            None => true,
        }
    }
}

impl TableAlloc for SimFrameAlloc {
    fn alloc_table(&mut self) -> Option<Pa> {
        if !self.take_budget() {
            return None;
        }
        let pa = match self.free.pop() {
            Some(pa) => pa,
            None if self.next < self.end => {
                self.next += PAGE_SIZE;
                Pa::new(self.next - PAGE_SIZE)
            }
            None => return None,
        };
        self.live += 1;
        Some(pa)
    }

    fn free_table(&mut self, table: Pa) {
        debug_assert!(
            !self.free.contains(&table),
            "double free of table {table:?}"
        );
        self.live -= 1;
        self.free.push(table);
    }

    fn alloc_root(&mut self, frames: usize) -> Option<Pa> {
        if frames == 1 {
            return self.alloc_table();
        }
        if !self.take_budget() {
            return None;
        }
        let size = frames as u64 * PAGE_SIZE;
        let start = self.next.div_ceil(size) * size;
        if start + size > self.end {
            return None;
        }
        // The alignment gap stays usable for single tables.
        let mut gap = self.next;
        while gap < start {
            self.free.push(Pa::new(gap));
            gap += PAGE_SIZE;
        }
        self.next = start + size;
        self.live += frames;
        Some(Pa::new(start))
    }

    fn free_root(&mut self, root: Pa, frames: usize) {
        for i in 0..frames {
            self.free_table(Pa::new(root.raw() + i as u64 * PAGE_SIZE));
        }
    }
}
