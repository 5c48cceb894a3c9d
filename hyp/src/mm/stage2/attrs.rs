//! Change the attributes of the leaves in a range (write-protect, relax, software bits).

use crate::mm::descriptor::{Change, Entry, LeafAttrs, Level, Pte, classify_change};
use crate::mm::phys::{PhysMem, TableAlloc};
use crate::mm::tlb::Tlb;

use super::Stage2Error;
use super::edit::Editor;
use super::walker::{LeafRun, Visit, VisitCtx, Visitor};

pub(crate) struct UpdateVisitor<'e, T: Tlb, A: TableAlloc + ?Sized, F> {
    pub ed: Editor<'e, T, A>,
    pub update: F,
    /// Last (old attribute bits -> new attribute bits, change) for a covered leaf: ranges
    /// mostly hold leaves with equal attributes, so most leaves skip decode and `update`.
    /// Sound because `update` sees only attributes (not the address) and is applied to equal
    /// inputs; impure closures would get one call per distinct input.
    pub memo: Option<(u64, u64, Change)>,
}

impl<M, T, A, F> Visitor<M> for UpdateVisitor<'_, T, A, F>
where
    M: PhysMem,
    T: Tlb,
    A: TableAlloc + ?Sized,
    F: FnMut(LeafAttrs) -> LeafAttrs,
{
    const LEAF_RUNS: bool = true;

    /// Level-3 pages whose attribute bits match the memoised input get the memoised output
    /// directly; all others go through `visit`.
    fn leaf_run(&mut self, mut run: LeafRun<'_, M>) -> Result<(), Stage2Error> {
        for index in run.first..=run.last {
            let old = run.mem.read_pte(run.table, index);
            if !old.is_valid() {
                continue;
            }
            match self.memo {
                Some((from, to, Change::Restrict)) if old.attr_bits() == from => {
                    run.mem.write_pte(run.table, index, old.with_attr_bits(to));
                    self.ed.defer_ipa(run.ipa(index), Level::L3);
                }
                _ => self.visit(&mut run.ctx(index, old), Visit::Leaf)?,
            }
        }
        Ok(())
    }

    #[inline(always)]
    fn visit(&mut self, ctx: &mut VisitCtx<'_, M>, _kind: Visit) -> Result<(), Stage2Error> {
        if !ctx.old.is_valid() {
            return Ok(());
        }
        if let Some((from, to, change)) = self.memo
            && ctx.old.attr_bits() == from
            && ctx.covered()
        {
            match change {
                Change::Unchanged => {}
                Change::Relax => ctx.set(ctx.old.with_attr_bits(to)),
                Change::Restrict => {
                    ctx.set(ctx.old.with_attr_bits(to));
                    self.ed.defer_ipa(ctx.ipa, ctx.level);
                }
                _ => self.ed.replace_deferred(ctx, ctx.old.with_attr_bits(to)),
            }
            return Ok(());
        }
        let Entry::Leaf { pa, attrs } = ctx.entry() else {
            return Ok(());
        };
        let new_attrs = (self.update)(attrs);
        if !ctx.covered() {
            if new_attrs == attrs {
                return Ok(());
            }
            // Only part of this block changes: split it, the walk continues into the table.
            return self.ed.split_block(ctx);
        }
        // Restrictions store and defer one TLBI to the end of the operation; relaxations skip
        // maintenance; a memory-type change goes through BBM (see `Editor::replace`).
        let new = Pte::leaf(pa, ctx.level, new_attrs, self.ed.enc);
        let change = classify_change(ctx.entry(), new.decode(ctx.level));
        self.memo = Some((ctx.old.attr_bits(), new.attr_bits(), change));
        if new != ctx.old {
            self.ed.replace_deferred(ctx, new);
        }
        Ok(())
    }
}
