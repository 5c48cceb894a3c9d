//! The primitive ways an operation changes a live tree, shared by every visitor: install,
//! break-before-make, split, and invalidation deferred to the end of an operation.
//!
//! Break-before-make (rule 3 of the memory core, invariant I2): a valid entry whose output
//! address, size or memory type changes is first replaced by an invalid one, the TLB is
//! invalidated for it (by IPA for a leaf, the whole VMID for a table, since walk caches may hold
//! a table entry for any IPA under it), and only after that invalidation completed is the new
//! entry stored. Tables unlinked this way are handed back to the allocator only after the
//! invalidation (I4).

use alloc::vec::Vec;

use crate::mm::addr::{Ipa, Pa};
use crate::mm::descriptor::{
    Annotation, AttrEncoding, Change, ENTRIES_PER_TABLE, Entry, LeafEncoder, Level, Pte,
    classify_change,
};
use crate::mm::phys::{PhysMem, TableAlloc};
use crate::mm::tlb::Tlb;

use super::Stage2Error;
use super::config::Vmid;
use super::walker::VisitCtx;
use crate::mm::bugs::bug;

/// Per-IPA invalidations remembered before falling back to invalidating the whole VMID.
const MAX_DEFERRED_IPAS: usize = 16;

/// Invalidation an operation owes before it returns.
#[derive(Default)]
pub(crate) struct Deferred {
    ipas: [(u64, u8); MAX_DEFERRED_IPAS],
    len: usize,
    /// A VMID-wide invalidation is owed (required once a table entry was removed).
    pub all: bool,
    /// Unlinked tables, freed once `all`'s invalidation completed.
    pub tables: Vec<Pa>,
}

/// What a visitor needs to change entries: the TLB, the table allocator and bookkeeping.
pub(crate) struct Editor<'e, T: Tlb, A: TableAlloc + ?Sized> {
    pub tlb: &'e mut T,
    pub alloc: &'e mut A,
    pub vmid: Vmid,
    pub enc: AttrEncoding,
    /// The tree's table-page count (root frames included), kept exact.
    pub table_pages: &'e mut usize,
    pub deferred: Deferred,
}

impl<T: Tlb, A: TableAlloc + ?Sized> Editor<'_, T, A> {
    /// Replace the entry with `new`, doing whatever maintenance the change needs right away:
    /// BBM, or a store followed by a completed TLBI for a restriction or removal.
    #[inline(always)]
    pub fn replace<M: PhysMem>(&mut self, ctx: &mut VisitCtx<'_, M>, new: Pte) {
        if !ctx.old.is_valid() {
            // Change::Install without decoding: nothing can be cached for an invalid entry.
            ctx.set(new);
            return;
        }
        self.replace_live(ctx, new);
    }

    fn replace_live<M: PhysMem>(&mut self, ctx: &mut VisitCtx<'_, M>, new: Pte) {
        let old = ctx.entry();
        match classify_change(old, new.decode(ctx.level)) {
            Change::Unchanged => {
                if ctx.old != new {
                    ctx.set(new); // software bits only: the hardware ignores them
                }
            }
            // Install: nothing can be cached for an invalid entry. Relax: see `Change::Relax`.
            Change::Install | Change::Relax => ctx.set(new),
            Change::Restrict => {
                ctx.set(new);
                self.tlb.invalidate_ipa(self.vmid, ctx.ipa(), ctx.level);
            }
            Change::Remove | Change::BreakBeforeMake => {
                self.break_entry(ctx);
                if new != ctx.old {
                    ctx.set(new);
                }
            }
        }
    }

    /// Like [`Editor::replace`], but a restriction or leaf removal only records the
    /// invalidation, to be done once by [`Editor::finish`] before the operation returns.
    /// Changes that need BBM still invalidate before the new entry is made.
    #[inline]
    pub fn replace_deferred<M: PhysMem>(&mut self, ctx: &mut VisitCtx<'_, M>, new: Pte) {
        if !new.is_valid() && ctx.old.is_valid() && !ctx.old.is_table(ctx.level) {
            // Change::Remove of a leaf without decoding.
            ctx.set(new);
            self.defer_ipa(ctx.ipa, ctx.level);
            return;
        }
        let old = ctx.entry();
        match classify_change(old, new.decode(ctx.level)) {
            Change::Restrict => {
                ctx.set(new);
                self.defer_ipa(ctx.ipa, ctx.level);
            }
            Change::Remove => {
                ctx.set(new);
                match old {
                    Entry::Table(t) => {
                        self.deferred.all = true;
                        self.collect_subtree(ctx.mem, t, ctx.level);
                    }
                    _ => self.defer_ipa(ctx.ipa, ctx.level),
                }
            }
            _ => self.replace(ctx, new),
        }
    }

    /// Break: make the entry invalid and complete the TLB invalidation that covers it. Tables
    /// that were below it are freed after that invalidation.
    pub fn break_entry<M: PhysMem>(&mut self, ctx: &mut VisitCtx<'_, M>) {
        let old = ctx.entry();
        ctx.set(Pte::INVALID);
        match old {
            Entry::Invalid(_) => {}
            Entry::Leaf { .. } => self.tlb.invalidate_ipa(self.vmid, ctx.ipa(), ctx.level),
            Entry::Table(t) => {
                self.tlb.invalidate_vmid_all(self.vmid);
                let mut freed = Vec::new();
                subtree_tables(ctx.mem, t, ctx.level, &mut freed);
                for t in freed {
                    self.free_table(t);
                }
            }
        }
    }

    /// A fresh zeroed table frame, not yet linked.
    pub fn new_table<M: PhysMem>(
        &mut self,
        mem: &mut M,
        ipa: u64,
        level: Level,
    ) -> Result<Pa, Stage2Error> {
        let t = self
            .alloc
            .alloc_table()
            .ok_or(Stage2Error::OutOfTableMemory {
                ipa: Ipa::new(ipa),
                level,
            })?;
        mem.zero_table(t);
        *self.table_pages += 1;
        Ok(t)
    }

    pub fn free_table(&mut self, t: Pa) {
        *self.table_pages -= 1;
        self.tlb.table_retired(t);
        self.alloc.free_table(t);
    }

    /// Replace the block at `ctx` by a table of next-level leaves mapping the same memory with
    /// the same attributes (BBM: the size of the live entry changes). The new table is filled
    /// before the break, so the entry is invalid only for the TLBI.
    pub fn split_block<M: PhysMem>(
        &mut self,
        ctx: &mut VisitCtx<'_, M>,
    ) -> Result<(), Stage2Error> {
        let Entry::Leaf { pa, attrs } = ctx.entry() else {
            unreachable!("split_block on a non-leaf at IPA {:#x}", ctx.ipa)
        };
        let child = ctx.level.next().expect("level-3 pages cannot be split");
        let t = self.new_table(ctx.mem, ctx.ipa, child)?;
        let step = child.entry_size();
        let encoder = LeafEncoder::new(attrs, self.enc);
        for i in 0..ENTRIES_PER_TABLE {
            let child_pa = Pa::new(pa.raw() + i as u64 * step);
            ctx.mem.write_pte(t, i, encoder.leaf(child_pa, child));
        }
        if !bug!(split_without_break) {
            self.break_entry(ctx);
        }
        // The break's TLBI already began with a DSB; the barrier keeps the rule in one place.
        if !bug!(skip_publish_barrier) {
            ctx.mem.publish_barrier();
        }
        ctx.set(Pte::table(t));
        Ok(())
    }

    /// Replace an invalid entry by a table whose entries all carry its annotation, so part of
    /// its range can change.
    pub fn split_invalid<M: PhysMem>(
        &mut self,
        ctx: &mut VisitCtx<'_, M>,
        annotation: Annotation,
    ) -> Result<(), Stage2Error> {
        let child = ctx.level.next().expect("level-3 entries cannot be split");
        let t = self.new_table(ctx.mem, ctx.ipa, child)?;
        if !annotation.is_none() {
            for i in 0..ENTRIES_PER_TABLE {
                ctx.mem.write_pte(t, i, Pte::invalid(annotation));
            }
        }
        // The zeroes (a recycled frame held a dead subtree's leaves) and annotations first.
        if !bug!(skip_publish_barrier) {
            ctx.mem.publish_barrier();
        }
        ctx.set(Pte::table(t));
        Ok(())
    }

    #[inline]
    pub fn defer_ipa(&mut self, ipa: u64, level: Level) {
        let d = &mut self.deferred;
        if d.all {
            return;
        }
        if d.len == MAX_DEFERRED_IPAS {
            d.all = !bug!(deferred_overflow_dropped);
        } else {
            d.ipas[d.len] = (ipa, level.raw());
            d.len += 1;
        }
    }

    fn collect_subtree<M: PhysMem>(&mut self, mem: &M, t: Pa, level: Level) {
        subtree_tables(mem, t, level, &mut self.deferred.tables);
    }

    /// Do the invalidation the operation owes, then free the tables it unlinked. Must run
    /// before the operation returns, on success and on error alike.
    pub fn finish(&mut self) {
        let mut d = core::mem::take(&mut self.deferred);
        if bug!(free_tables_before_tlbi) {
            for t in d.tables.drain(..) {
                self.free_table(t);
            }
        }
        if d.all {
            self.tlb.invalidate_vmid_all(self.vmid);
        } else {
            for &(ipa, level) in &d.ipas[..d.len] {
                let level = Level::new(level).expect("recorded from a Level");
                self.tlb.invalidate_ipa(self.vmid, Ipa::new(ipa), level);
            }
        }
        debug_assert!(
            d.all || d.tables.is_empty(),
            "tables unlinked without a VMID-wide TLBI"
        );
        for t in d.tables {
            self.free_table(t);
        }
    }
}

/// Every table frame of the subtree rooted at table `t` (whose entry sits at `level`), deepest
/// first, `t` last.
pub(crate) fn subtree_tables<M: PhysMem>(mem: &M, t: Pa, level: Level, out: &mut Vec<Pa>) {
    let child = level.next().expect("a table entry sits above level 3");
    // Level-3 entries are never tables: no need to read them.
    for i in 0..if child == Level::L3 {
        0
    } else {
        ENTRIES_PER_TABLE
    } {
        if let Entry::Table(sub) = mem.read_pte(t, i).decode(child) {
            subtree_tables(mem, sub, child, out);
        }
    }
    out.push(t);
}
