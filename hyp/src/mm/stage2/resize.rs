//! Split blocks into tables of smaller leaves, and collapse tables of uniform leaves back into
//! blocks. Both keep every IPA's translation; both change a live entry's size, so both are BBM.

use crate::mm::addr::Pa;
use crate::mm::descriptor::{ENTRIES_PER_TABLE, Entry, Level, Pte};
use crate::mm::phys::{PhysMem, TableAlloc};
use crate::mm::tlb::Tlb;

use super::Stage2Error;
use super::edit::Editor;
use super::walker::{LeafRun, Visit, VisitCtx, Visitor};
use crate::mm::bugs::bug;

pub(crate) struct SplitVisitor<'e, T: Tlb, A: TableAlloc + ?Sized> {
    pub ed: Editor<'e, T, A>,
    /// Split until every leaf in range is at this level or deeper.
    pub target: Level,
}

impl<M: PhysMem, T: Tlb, A: TableAlloc + ?Sized> Visitor<M> for SplitVisitor<'_, T, A> {
    const LEAF_RUNS: bool = true;

    /// Level-3 entries cannot be split and are at every target already: nothing to visit
    /// (this keeps a split of 2 MiB blocks from reading back the 512 pages it just wrote).
    fn leaf_run(&mut self, _run: LeafRun<'_, M>) -> Result<(), Stage2Error> {
        Ok(())
    }

    #[inline(always)]
    fn visit(&mut self, ctx: &mut VisitCtx<'_, M>, _kind: Visit) -> Result<(), Stage2Error> {
        match ctx.entry() {
            Entry::Leaf { .. } if ctx.level < self.target => self.ed.split_block(ctx),
            _ => Ok(()),
        }
    }
}

pub(crate) struct CollapseVisitor<'e, T: Tlb, A: TableAlloc + ?Sized> {
    pub ed: Editor<'e, T, A>,
    pub collapsed: usize,
}

impl<M: PhysMem, T: Tlb, A: TableAlloc + ?Sized> Visitor<M> for CollapseVisitor<'_, T, A> {
    const LEAF: bool = false;
    const TABLE_POST: bool = true;

    #[inline(always)]
    fn visit(&mut self, ctx: &mut VisitCtx<'_, M>, _kind: Visit) -> Result<(), Stage2Error> {
        let Entry::Table(t) = ctx.entry() else {
            return Ok(());
        };
        if !ctx.level.allows_leaf() {
            return Ok(());
        }
        if let Some(block) = uniform_block(ctx.mem, t, ctx.level) {
            let new = Pte::leaf(block.0, ctx.level, block.1, self.ed.enc);
            self.ed.replace(ctx, new);
            self.collapsed += 1;
        }
        Ok(())
    }
}

/// If table `t` (below an entry at `level`) holds leaves mapping one contiguous, `level`-aligned
/// PA range with equal attributes, that range's base and the attributes.
fn uniform_block<M: PhysMem>(
    mem: &M,
    t: Pa,
    level: Level,
) -> Option<(Pa, crate::mm::descriptor::LeafAttrs)> {
    let child = level.next()?;
    let Entry::Leaf { pa: base, attrs } = mem.read_pte(t, 0).decode(child) else {
        return None;
    };
    if !base.is_aligned(level.entry_size()) {
        return None;
    }
    let step = child.entry_size();
    let uniform = (1..ENTRIES_PER_TABLE).all(|i| {
        matches!(mem.read_pte(t, i).decode(child),
            Entry::Leaf { pa, attrs: a } if a == attrs
                && (pa.raw() == base.raw() + i as u64 * step || bug!(collapse_ignores_contiguity)))
    });
    uniform.then_some((base, attrs))
}
