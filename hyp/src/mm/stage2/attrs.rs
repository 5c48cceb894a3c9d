//! Change the attributes of the leaves in a range (write-protect, relax, software bits).

use crate::mm::descriptor::{Entry, LeafAttrs, Pte};
use crate::mm::phys::{PhysMem, TableAlloc};
use crate::mm::tlb::Tlb;

use super::Stage2Error;
use super::edit::Editor;
use super::walker::{Visit, VisitCtx, Visitor};

pub(crate) struct UpdateVisitor<'e, T: Tlb, A: TableAlloc + ?Sized, F> {
    pub ed: Editor<'e, T, A>,
    pub update: F,
}

impl<M, T, A, F> Visitor<M> for UpdateVisitor<'_, T, A, F>
where
    M: PhysMem,
    T: Tlb,
    A: TableAlloc + ?Sized,
    F: FnMut(LeafAttrs) -> LeafAttrs,
{
    fn visit(&mut self, ctx: &mut VisitCtx<'_, M>, _kind: Visit) -> Result<(), Stage2Error> {
        let Entry::Leaf { pa, attrs } = ctx.entry() else {
            return Ok(());
        };
        let new_attrs = (self.update)(attrs);
        if new_attrs == attrs {
            return Ok(());
        }
        if !ctx.covered() {
            // Only part of this block changes: split it, the walk continues into the table.
            return self.ed.split_block(ctx);
        }
        // Restrictions store and defer one TLBI to the end of the operation; relaxations skip
        // maintenance; a memory-type change goes through BBM (see `Editor::replace`).
        self.ed
            .replace_deferred(ctx, Pte::leaf(pa, ctx.level, new_attrs, self.ed.enc));
        Ok(())
    }
}
