//! The frame table: one record per RAM frame, the free list threaded through the records, and
//! the hypervisor's own allocations.

use alloc::vec::Vec;

use super::record::NO_NEXT;
use super::{FrameData, FrameRecord, FrameState, Op, Owner, OwnershipError, expect_movable};
use crate::mm::addr::Pfn;

/// The frame table: one [`FrameRecord`] per RAM frame in `[base, base + len)`, with the free
/// frames threaded into a list through their records.
///
/// A table made by [`FrameTable::new_unzeroed`] also has a *fresh tail*: frames from index
/// `fresh` on are free but on no list and not zeroed yet. They are zeroed as they are handed
/// out, so creating a VM costs nothing per frame of memory it never touches (zeroing a whole
/// pool up front cost seconds of boot time for a 512 MiB guest), and whole aligned runs are cut
/// from the tail without scanning the table.
pub struct FrameTable {
    pub(super) base: Pfn,
    pub(super) records: Vec<FrameRecord>,
    pub(super) free_head: u32,
    /// Free frames, on the list and in the fresh tail.
    pub(super) free_count: u64,
    /// First frame of the fresh tail (`records.len()` when there is none).
    pub(super) fresh: usize,
}

impl FrameTable {
    /// A table for `frames` RAM frames starting at `base`, all free (their contents must be zero).
    ///
    /// # Panics
    /// If `frames` does not fit the 32-bit free-list link.
    pub fn new(base: Pfn, frames: u64) -> Self {
        assert!(
            frames < u64::from(NO_NEXT),
            "frame table too large for its free-list links"
        );
        let records = (0..frames)
            .map(|i| {
                FrameRecord::free(if i + 1 < frames {
                    i as u32 + 1
                } else {
                    NO_NEXT
                })
            })
            .collect();
        Self {
            base,
            records,
            free_head: if frames > 0 { 0 } else { NO_NEXT },
            free_count: frames,
            fresh: frames as usize,
        }
    }

    /// A table for `frames` RAM frames starting at `base`, all free, whose contents are not
    /// zero yet: they are zeroed through [`FrameData::zero_frames`] as they are first handed
    /// out.
    ///
    /// # Panics
    /// If `frames` does not fit the 32-bit free-list link.
    pub fn new_unzeroed(base: Pfn, frames: u64) -> Self {
        assert!(
            frames < u64::from(NO_NEXT),
            "frame table too large for its free-list links"
        );
        Self {
            base,
            records: alloc::vec![FrameRecord::free(NO_NEXT); frames as usize],
            free_head: NO_NEXT,
            free_count: frames,
            fresh: 0,
        }
    }

    /// Takes `n` frames from the front of the fresh tail for `owner`, zeroed.
    pub(super) fn take_fresh(&mut self, n: usize, owner: Owner, data: &mut dyn FrameData) -> Pfn {
        let first = self.fresh;
        debug_assert!(first + n <= self.records.len());
        let pfn = Pfn::new(self.base.raw() + first as u64);
        data.zero_frames(pfn, n as u64);
        for r in &mut self.records[first..first + n] {
            *r = FrameRecord(0).with_state(FrameState::Owned(owner));
        }
        self.fresh += n;
        self.free_count -= n as u64;
        pfn
    }

    /// Moves the front of the fresh tail up to frame index `to` onto the free list, zeroed.
    pub(super) fn retire_fresh(&mut self, to: usize, data: &mut dyn FrameData) {
        let from = self.fresh;
        if to <= from {
            return;
        }
        data.zero_frames(Pfn::new(self.base.raw() + from as u64), (to - from) as u64);
        for i in from..to {
            self.records[i] = FrameRecord::free(self.free_head);
            self.free_head = i as u32;
        }
        self.fresh = to;
    }

    pub fn base(&self) -> Pfn {
        self.base
    }
    pub fn frames(&self) -> u64 {
        self.records.len() as u64
    }
    pub fn free_frames(&self) -> u64 {
        self.free_count
    }
    /// Bytes of ownership metadata per 4 KiB frame.
    pub const fn bytes_per_frame() -> usize {
        core::mem::size_of::<FrameRecord>()
    }

    pub(super) fn index(&self, pfn: Pfn) -> Option<usize> {
        let i = pfn.raw().checked_sub(self.base.raw())?;
        (i < self.records.len() as u64).then_some(i as usize)
    }

    pub(super) fn idx(&self, pfn: Pfn) -> Result<usize, OwnershipError> {
        self.index(pfn).ok_or(OwnershipError::NotRam { pfn })
    }

    /// The record of `pfn`, or `None` if it is not RAM.
    pub fn record(&self, pfn: Pfn) -> Option<FrameRecord> {
        self.index(pfn).map(|i| self.records[i])
    }

    pub fn state(&self, pfn: Pfn) -> Option<FrameState> {
        self.record(pfn).map(FrameRecord::state)
    }

    /// Takes a free frame off the list and gives it to `owner`.
    pub(super) fn take_free(
        &mut self,
        op: Op,
        owner: Owner,
        data: &mut dyn FrameData,
    ) -> Result<Pfn, OwnershipError> {
        if self.free_head == NO_NEXT {
            if self.fresh < self.records.len() {
                return Ok(self.take_fresh(1, owner, data));
            }
            return Err(OwnershipError::OutOfMemory { op });
        }
        let i = self.free_head as usize;
        self.free_head = self.records[i].next_free();
        self.free_count -= 1;
        self.records[i] = FrameRecord(0).with_state(FrameState::Owned(owner));
        Ok(Pfn::new(self.base.raw() + i as u64))
    }

    /// The frame `take_free` would return next, without taking it.
    pub(super) fn peek_free(&self, op: Op) -> Result<Pfn, OwnershipError> {
        if self.free_head == NO_NEXT {
            if self.fresh < self.records.len() {
                return Ok(Pfn::new(self.base.raw() + self.fresh as u64));
            }
            return Err(OwnershipError::OutOfMemory { op });
        }
        Ok(Pfn::new(self.base.raw() + u64::from(self.free_head)))
    }

    /// Zeroes `pfn` and puts it back on the free list. Callers have removed every translation to
    /// it (I4) and checked that it has no pins or references.
    pub(super) fn release(&mut self, pfn: Pfn, data: &mut dyn FrameData) {
        let i = self.index(pfn).expect("released frame is RAM");
        debug_assert!(
            self.records[i].state() != FrameState::Free,
            "{pfn:?} freed twice"
        );
        debug_assert!(self.records[i].pins() == 0 && self.records[i].refs() == 0);
        data.zero_frame(pfn);
        self.records[i] = FrameRecord::free(self.free_head);
        self.free_head = i as u32;
        self.free_count += 1;
    }

    pub(super) fn set_state(&mut self, pfn: Pfn, s: FrameState) {
        let i = self.index(pfn).expect("checked frame is RAM");
        self.records[i] = self.records[i].with_state(s);
    }

    /// Checks that every frame of `[pfn, pfn + n)` is RAM in state `want` with no pins (and, if
    /// `idle`, no references).
    pub(super) fn expect_frames(
        &self,
        op: Op,
        pfn: Pfn,
        n: u64,
        want: FrameState,
        idle: bool,
    ) -> Result<(), OwnershipError> {
        if n == 0 || pfn.raw().checked_add(n).is_none() {
            return Err(OwnershipError::BadRange { op });
        }
        for p in (pfn.raw()..pfn.raw() + n).map(Pfn::new) {
            let r = self.records[self.idx(p)?];
            if r.state() != want {
                return Err(OwnershipError::WrongFrameState {
                    op,
                    pfn: p,
                    found: r.state(),
                });
            }
            expect_movable(op, p, r, idle)?;
        }
        Ok(())
    }

    /// Allocates a zeroed frame for the hypervisor (stage-2 tables, donations).
    ///
    /// # Errors
    /// `OutOfMemory` if no frame is free.
    pub fn hyp_alloc(&mut self, data: &mut dyn FrameData) -> Result<Pfn, OwnershipError> {
        self.take_free(Op::HypAlloc, Owner::Hyp, data)
    }

    /// Allocates `n` contiguous free frames aligned to `n` frames for the hypervisor (a
    /// concatenated stage-2 root). Slow (scans the table): for VM creation only.
    ///
    /// # Errors
    /// `BadRange` if `n` is not a power of two; `OutOfMemory` if no aligned free run exists.
    pub fn hyp_alloc_run(
        &mut self,
        n: u64,
        data: &mut dyn FrameData,
    ) -> Result<Pfn, OwnershipError> {
        let op = Op::HypAlloc;
        if !n.is_power_of_two() {
            return Err(OwnershipError::BadRange { op });
        }
        let base = self.base.raw();
        // The fresh tail first: an aligned run cut from it costs no scan.
        let start = (base + self.fresh as u64).div_ceil(n) * n;
        if start + n <= base + self.frames() {
            self.retire_fresh((start - base) as usize, data);
            return Ok(self.take_fresh(n as usize, Owner::Hyp, data));
        }
        let first = base.div_ceil(n) * n;
        let found = (first..base + self.frames())
            .step_by(n as usize)
            .find(|&p| {
                p + n <= base + self.fresh as u64
                    && (p..p + n)
                        .all(|q| self.records[(q - base) as usize].state() == FrameState::Free)
            })
            .ok_or(OwnershipError::OutOfMemory { op })?;
        // Unlink the run: rebuild the free list without it, keeping the others' order.
        let mut prev: Option<usize> = None;
        let mut cur = self.free_head;
        while cur != NO_NEXT {
            let i = cur as usize;
            let next = self.records[i].next_free();
            let p = base + i as u64;
            if p >= found && p < found + n {
                match prev {
                    None => self.free_head = next,
                    Some(j) => self.records[j] = FrameRecord::free(next),
                }
                self.records[i] = FrameRecord(0).with_state(FrameState::Owned(Owner::Hyp));
                self.free_count -= 1;
            } else {
                prev = Some(i);
            }
            cur = next;
        }
        Ok(Pfn::new(found))
    }

    /// Returns a hypervisor frame to the free list, zeroed.
    ///
    /// # Errors
    /// `NotRam`, `WrongFrameState` (not `Owned(Hyp)`), `Pinned`, `Busy`.
    pub fn hyp_free(&mut self, pfn: Pfn, data: &mut dyn FrameData) -> Result<(), OwnershipError> {
        self.expect_frames(Op::HypFree, pfn, 1, FrameState::Owned(Owner::Hyp), true)?;
        self.release(pfn, data);
        Ok(())
    }

    /// Panics if the frame table is inconsistent: the free list holds exactly the free frames,
    /// once each, and free frames carry no counts.
    pub fn check_invariants(&self) {
        let mut on_list = alloc::vec![false; self.records.len()];
        let mut n = 0u64;
        let mut cur = self.free_head;
        while cur != NO_NEXT {
            let i = cur as usize;
            assert!(i < self.records.len(), "free list points outside the table");
            assert!(!on_list[i], "I4: frame index {i} is on the free list twice");
            assert_eq!(
                self.records[i].state(),
                FrameState::Free,
                "non-free frame on free list"
            );
            on_list[i] = true;
            n += 1;
            cur = self.records[i].next_free();
        }
        let fresh = self.records.len() - self.fresh;
        assert_eq!(
            n + fresh as u64,
            self.free_count,
            "free count disagrees with the free list and the fresh tail"
        );
        for (i, r) in self.records.iter().enumerate() {
            if i >= self.fresh {
                assert_eq!(r.state(), FrameState::Free, "fresh frame {i} is in use");
            } else if r.state() == FrameState::Free {
                assert!(
                    on_list[i],
                    "I4: free frame index {i} is not on the free list"
                );
            } else if r.state() == FrameState::Owned(Owner::Hyp) {
                assert!(
                    r.pins() == 0 && r.refs() == 0,
                    "hypervisor frame {i} has counts: {r:?}"
                );
            }
        }
    }
}
