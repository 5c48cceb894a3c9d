//! Unmap (and annotate): make an IPA range invalid, optionally carrying an [`Annotation`], and
//! free the tables that end up holding nothing.
//!
//! A direct recursive walk rather than a [`super::walker::Visitor`]: unmapping is dominated by
//! runs of covered entries (512 blocks of a 1 GiB range, say), and each of those is one load,
//! one store and a recorded invalidation here, with no per-entry visit dispatch or decode.
//!
//! Invalidation (rule 3, I2, I4): a covered leaf becomes invalid with one store and its TLBI is
//! deferred to [`Editor::finish`] (per IPA, or one VMID-wide TLBI once more than a few are
//! owed); a covered table entry, or a partly covered table left holding nothing, is unlinked
//! with one store, which forces the VMID-wide TLBI (walk caches may hold the table entry for any
//! IPA below it) and queues the subtree's frames to be freed after it completed. The store of an
//! invalid entry over a valid one is the "break" of break-before-make; nothing is ever made in
//! its place here, so no TLBI is needed between stores.

use core::ops::Range;

use crate::mm::addr::Pa;
use crate::mm::descriptor::{ENTRIES_PER_TABLE, Entry, Level, Pte};
use crate::mm::phys::{PhysMem, TableAlloc};
use crate::mm::tlb::Tlb;

use super::Stage2Error;
use super::edit::{Editor, subtree_tables};
use super::walker::VisitCtx;

pub(crate) struct Unmap<'e, T: Tlb, A: TableAlloc + ?Sized> {
    pub ed: Editor<'e, T, A>,
    /// What every entry of the range ends up as.
    pub target: Pte,
    /// The range, `[start, end)`, page aligned, `start < end`.
    pub start: u64,
    pub end: u64,
}

impl<T: Tlb, A: TableAlloc + ?Sized> Unmap<'_, T, A> {
    /// Unmap the part of the range under `table` (a table of `entries` entries at `level` whose
    /// entry 0 maps `base`). Returns whether every entry in range now holds `target`.
    pub fn table<M: PhysMem>(
        &mut self,
        mem: &mut M,
        table: Pa,
        level: Level,
        base: u64,
        entries: usize,
    ) -> Result<bool, Stage2Error> {
        let shift = level.shift();
        let from = self.start.max(base) - base;
        let to = self.end.min(base + ((entries as u64) << shift)) - base;
        // In-range entries are `first..=last`; `covered` are those wholly inside the range.
        let (first, last) = ((from >> shift) as usize, ((to - 1) >> shift) as usize);
        let covered = from.div_ceil(level.entry_size()) as usize..(to >> shift) as usize;
        let mut all_target = true;
        let head = first < covered.start;
        if head {
            all_target &= self.partial(mem, table, level, base, first)?;
        }
        self.covered(mem, table, level, base, covered.clone());
        if last >= covered.end && !(head && last == first) {
            all_target &= self.partial(mem, table, level, base, last)?;
        }
        Ok(all_target)
    }

    /// The hot loop: each entry wholly inside the range becomes `target` with one store.
    #[inline(always)]
    fn covered<M: PhysMem>(
        &mut self,
        mem: &mut M,
        table: Pa,
        level: Level,
        base: u64,
        indices: Range<usize>,
    ) {
        let target = self.target;
        for index in indices {
            let old = mem.read_pte(table, index);
            if old == target {
                continue;
            }
            mem.write_pte(table, index, target);
            if let Some(child) = old.next_table(level) {
                // The whole subtree goes with this one store.
                self.ed.deferred.all = true;
                subtree_tables(mem, child, level, &mut self.ed.deferred.tables);
            } else if old.is_valid() {
                self.ed
                    .defer_ipa(base + ((index as u64) << level.shift()), level);
            }
        }
    }

    /// An entry the range covers only part of: make it a table (a block is split with BBM, an
    /// invalid entry keeps its annotation outside the range), unmap inside it, and unlink it if
    /// it is left holding only `target`. Returns whether the entry now holds `target`.
    #[inline(never)]
    fn partial<M: PhysMem>(
        &mut self,
        mem: &mut M,
        table: Pa,
        level: Level,
        base: u64,
        index: usize,
    ) -> Result<bool, Stage2Error> {
        let ipa = base + ((index as u64) << level.shift());
        let old = mem.read_pte(table, index);
        if old == self.target {
            return Ok(true);
        }
        let mut ctx = VisitCtx {
            mem: &mut *mem,
            table,
            index,
            level,
            ipa,
            start: self.start,
            end: self.end,
            old,
        };
        match ctx.entry() {
            Entry::Table(_) => {}
            Entry::Leaf { .. } => self.ed.split_block(&mut ctx)?,
            Entry::Invalid(a) => self.ed.split_invalid(&mut ctx, a)?,
        }
        let child = ctx
            .old
            .next_table(level)
            .expect("a partly covered entry is a table by now");
        let next = level.next().expect("tables sit above level 3");
        let inside = self.table(mem, child, next, ipa, ENTRIES_PER_TABLE)?;
        // Only the children outside the range need reading. A table left holding only `target`
        // has no subtables (a table entry is never `target`), so it is the only frame to free.
        let shift = next.shift();
        let lo = ((self.start.max(ipa) - ipa) >> shift) as usize;
        let hi =
            (self.end.min(ipa + level.entry_size()) - ipa).div_ceil(next.entry_size()) as usize;
        if inside
            && mem.entries_equal(child, 0..lo, self.target)
            && mem.entries_equal(child, hi..ENTRIES_PER_TABLE, self.target)
        {
            mem.write_pte(table, index, self.target);
            self.ed.deferred.all = true;
            self.ed.deferred.tables.push(child);
            return Ok(true);
        }
        Ok(false)
    }
}
