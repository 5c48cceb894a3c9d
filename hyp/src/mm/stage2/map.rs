//! Map: point an IPA range at a PA range, with the largest blocks alignment allows.

use crate::mm::descriptor::{Entry, LeafAttrs, Pte};
use crate::mm::phys::{PhysMem, TableAlloc};
use crate::mm::tlb::Tlb;

use super::Stage2Error;
use super::edit::Editor;
use super::walker::{Visit, VisitCtx, Visitor};

pub(crate) struct MapVisitor<'e, T: Tlb, A: TableAlloc + ?Sized> {
    pub ed: Editor<'e, T, A>,
    /// `pa - ipa` for the whole range (wrapping).
    pub delta: u64,
    pub attrs: LeafAttrs,
    pub pages_only: bool,
}

impl<M: PhysMem, T: Tlb, A: TableAlloc + ?Sized> Visitor<M> for MapVisitor<'_, T, A> {
    const TABLE_PRE: bool = true;

    fn visit(&mut self, ctx: &mut VisitCtx<'_, M>, _kind: Visit) -> Result<(), Stage2Error> {
        let level = ctx.level;
        let pa = ctx.ipa.wrapping_add(self.delta);
        if ctx.covered()
            && level.allows_leaf()
            && (level.next().is_none() || (!self.pages_only && pa.is_multiple_of(ctx.size())))
        {
            let new = Pte::leaf(crate::mm::addr::Pa::new(pa), level, self.attrs, self.ed.enc);
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
