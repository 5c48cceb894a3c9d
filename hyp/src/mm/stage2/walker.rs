//! The one table walker. It owns recursion, indexing and range clipping; operations are
//! [`Visitor`]s that see one entry at a time with its context and may rewrite it.
//!
//! Order for each entry in range: a table gets a `TablePre` visit, anything else a `Leaf` visit
//! (invalid entries included). The walker then looks at the entry as the visitor left it: if it
//! is (now) a table, the walk descends into it and afterwards gives it a `TablePost` visit. So a
//! visitor that splits a block or installs a table sees the new table walked too, and one that
//! replaces a table by a block stops the descent.

use crate::mm::addr::{Ipa, Pa};
use crate::mm::descriptor::{ENTRIES_PER_TABLE, Entry, Level, Pte};
use crate::mm::phys::PhysMem;

use super::Stage2Error;

/// Which visit a visitor is getting.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Visit {
    TablePre,
    Leaf,
    TablePost,
}

/// An operation over a range. The associated consts say which visits it wants (so the walker
/// compiles the others away).
pub(crate) trait Visitor<M: PhysMem> {
    const TABLE_PRE: bool = false;
    const LEAF: bool = true;
    const TABLE_POST: bool = false;
    /// Take the entries of each level-3 table in range as one [`LeafRun`] (a batched fast path;
    /// the visitor must still give every entry `visit`'s semantics).
    const LEAF_RUNS: bool = false;
    fn visit(&mut self, ctx: &mut VisitCtx<'_, M>, kind: Visit) -> Result<(), Stage2Error>;
    fn leaf_run(&mut self, _run: LeafRun<'_, M>) -> Result<(), Stage2Error> {
        unreachable!("LEAF_RUNS not requested")
    }
}

/// The in-range entries `first..=last` of one level-3 table (all covered by the walk's range,
/// which is page aligned).
pub(crate) struct LeafRun<'a, M: PhysMem> {
    pub mem: &'a mut M,
    pub table: Pa,
    /// IPA of entry 0 of the table.
    pub base: u64,
    pub first: usize,
    pub last: usize,
    pub start: u64,
    pub end: u64,
}

impl<M: PhysMem> LeafRun<'_, M> {
    /// IPA of entry `index`.
    #[inline(always)]
    pub fn ipa(&self, index: usize) -> u64 {
        self.base + ((index as u64) << Level::L3.shift())
    }
    /// The general per-entry context for `index` (the slow path).
    pub fn ctx(&mut self, index: usize, old: Pte) -> VisitCtx<'_, M> {
        VisitCtx {
            mem: &mut *self.mem,
            table: self.table,
            index,
            level: Level::L3,
            ipa: self.base + ((index as u64) << Level::L3.shift()),
            start: self.start,
            end: self.end,
            old,
        }
    }
}

/// One entry and where it sits.
pub(crate) struct VisitCtx<'a, M: PhysMem> {
    pub mem: &'a mut M,
    pub table: Pa,
    pub index: usize,
    pub level: Level,
    /// First IPA the entry translates.
    pub ipa: u64,
    /// The walk's range, `[start, end)`.
    pub start: u64,
    pub end: u64,
    /// The entry's current value (kept up to date by [`VisitCtx::set`]).
    pub old: Pte,
}

impl<M: PhysMem> VisitCtx<'_, M> {
    #[inline(always)]
    pub fn entry(&self) -> Entry {
        self.old.decode(self.level)
    }
    #[inline(always)]
    pub fn size(&self) -> u64 {
        self.level.entry_size()
    }
    #[inline(always)]
    pub fn ipa(&self) -> Ipa {
        Ipa::new(self.ipa)
    }
    /// Whether the walk's range covers all of this entry.
    #[inline(always)]
    pub fn covered(&self) -> bool {
        self.ipa >= self.start && self.ipa + self.size() <= self.end
    }
    /// Store `new` in this slot (one primitive step).
    #[inline(always)]
    pub fn set(&mut self, new: Pte) {
        self.mem.write_pte(self.table, self.index, new);
        self.old = new;
    }
}

/// Walk `[start, end)` of the tree rooted at `root` (a table of `root_entries` entries at
/// `level`). `end` must be at most the IPA limit and `start < end`.
pub(crate) fn walk<M: PhysMem, V: Visitor<M>>(
    mem: &mut M,
    root: Pa,
    level: Level,
    root_entries: usize,
    start: u64,
    end: u64,
    visitor: &mut V,
) -> Result<(), Stage2Error> {
    debug_assert!(start < end);
    walk_table(mem, root, level, 0, root_entries, start, end, visitor)
}

#[allow(clippy::too_many_arguments)]
fn walk_table<M: PhysMem, V: Visitor<M>>(
    mem: &mut M,
    table: Pa,
    level: Level,
    base: u64,
    entries: usize,
    start: u64,
    end: u64,
    v: &mut V,
) -> Result<(), Stage2Error> {
    let shift = level.shift();
    let span_last = base + ((entries as u64) << shift) - 1;
    let first = ((start.max(base) - base) >> shift) as usize;
    let last = (((end - 1).min(span_last) - base) >> shift) as usize;
    if V::LEAF_RUNS && level == Level::L3 {
        return v.leaf_run(LeafRun {
            mem,
            table,
            base,
            first,
            last,
            start,
            end,
        });
    }
    for index in first..=last {
        let ipa = base + ((index as u64) << shift);
        let old = mem.read_pte(table, index);
        let mut ctx = VisitCtx {
            mem: &mut *mem,
            table,
            index,
            level,
            ipa,
            start,
            end,
            old,
        };
        if old.is_table(level) {
            if V::TABLE_PRE {
                v.visit(&mut ctx, Visit::TablePre)?;
            }
        } else if V::LEAF {
            v.visit(&mut ctx, Visit::Leaf)?;
        }
        if let Some(child) = ctx.old.next_table(level) {
            let next = level
                .next()
                .expect("table entries exist above level 3 only");
            walk_table(mem, child, next, ipa, ENTRIES_PER_TABLE, start, end, v)?;
            if V::TABLE_POST {
                let old = mem.read_pte(table, index);
                let mut ctx = VisitCtx {
                    mem: &mut *mem,
                    table,
                    index,
                    level,
                    ipa,
                    start,
                    end,
                    old,
                };
                v.visit(&mut ctx, Visit::TablePost)?;
            }
        }
    }
    Ok(())
}

/// A [`PhysMem`] view for walks that must not write (translate, leaf listings).
pub(crate) struct ReadOnly<'a, M: PhysMem>(pub &'a M);

impl<M: PhysMem> PhysMem for ReadOnly<'_, M> {
    fn read_pte(&self, table: Pa, index: usize) -> Pte {
        self.0.read_pte(table, index)
    }
    fn write_pte(&mut self, table: Pa, index: usize, _pte: Pte) {
        unreachable!("read-only walk wrote entry {index} of table {table:?}")
    }
    fn zero_table(&mut self, table: Pa) {
        unreachable!("read-only walk zeroed table {table:?}")
    }
    fn publish_barrier(&mut self) {
        unreachable!("read-only walk published a table")
    }
}
