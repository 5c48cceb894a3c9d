//! Map: point an IPA range at a PA range, with the largest blocks alignment allows.

use crate::mm::addr::Pa;
use crate::mm::descriptor::{Entry, LeafAttrs, LeafEncoder, Level};
use crate::mm::phys::{PhysMem, TableAlloc};
use crate::mm::tlb::Tlb;

use super::Stage2Error;
use super::edit::Editor;
use super::walker::{LeafRun, Visit, VisitCtx, Visitor};

pub(crate) struct MapVisitor<'e, T: Tlb, A: TableAlloc + ?Sized> {
    pub ed: Editor<'e, T, A>,
    /// `pa - ipa` for the whole range (wrapping).
    pub delta: u64,
    pub attrs: LeafAttrs,
    /// `attrs` pre-encoded.
    pub encoder: LeafEncoder,
    pub pages_only: bool,
}

impl<M: PhysMem, T: Tlb, A: TableAlloc + ?Sized> Visitor<M> for MapVisitor<'_, T, A> {
    const TABLE_PRE: bool = true;
    const LEAF_RUNS: bool = true;

    /// Level-3 pages: store straight into invalid slots (`Change::Install`, no maintenance);
    /// anything live goes through `visit` and thus `Editor::replace`.
    fn leaf_run(&mut self, mut run: LeafRun<'_, M>) -> Result<(), Stage2Error> {
        for index in run.first..=run.last {
            let ipa = run.ipa(index);
            let new = self
                .encoder
                .leaf(Pa::new(ipa.wrapping_add(self.delta)), Level::L3);
            let old = run.mem.read_pte(run.table, index);
            if !old.is_valid() {
                run.mem.write_pte(run.table, index, new);
            } else {
                self.visit(&mut run.ctx(index, old), Visit::Leaf)?;
            }
        }
        Ok(())
    }

    #[inline(always)]
    fn visit(&mut self, ctx: &mut VisitCtx<'_, M>, _kind: Visit) -> Result<(), Stage2Error> {
        let level = ctx.level;
        let pa = ctx.ipa.wrapping_add(self.delta);
        if ctx.covered()
            && level.allows_leaf()
            && (level.next().is_none() || (!self.pages_only && pa.is_multiple_of(ctx.size())))
        {
            let new = self.encoder.leaf(Pa::new(pa), level);
            self.ed.replace(ctx, new);
            return Ok(());
        }
        // The range needs finer entries here.
        match ctx.entry() {
            Entry::Table(_) => Ok(()),
            Entry::Invalid(annotation) => self.ed.split_invalid(ctx, annotation),
            Entry::Leaf { pa: block, attrs } => {
                // A block that already maps the range the same way stays (a fault on a page of
                // an existing block must not split it).
                if !self.pages_only
                    && attrs == self.attrs
                    && block.raw().wrapping_sub(ctx.ipa) == self.delta
                {
                    return Ok(());
                }
                self.ed.split_block(ctx)
            }
        }
    }
}
