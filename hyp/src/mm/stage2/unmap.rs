//! Unmap (and annotate): make an IPA range invalid, optionally carrying an [`Annotation`], and
//! free the tables that end up holding nothing.

use crate::mm::descriptor::{Annotation, ENTRIES_PER_TABLE, Entry, Pte};
use crate::mm::phys::{PhysMem, TableAlloc};
use crate::mm::tlb::Tlb;

use super::Stage2Error;
use super::edit::Editor;
use super::walker::{Visit, VisitCtx, Visitor};

pub(crate) struct UnmapVisitor<'e, T: Tlb, A: TableAlloc + ?Sized> {
    pub ed: Editor<'e, T, A>,
    pub annotation: Annotation,
}

impl<M: PhysMem, T: Tlb, A: TableAlloc + ?Sized> Visitor<M> for UnmapVisitor<'_, T, A> {
    const TABLE_PRE: bool = true;
    const TABLE_POST: bool = true;

    #[inline(always)]
    fn visit(&mut self, ctx: &mut VisitCtx<'_, M>, kind: Visit) -> Result<(), Stage2Error> {
        let target = Pte::invalid(self.annotation);
        match kind {
            Visit::Leaf => match ctx.entry() {
                _ if ctx.old == target => Ok(()),
                // Valid-to-invalid needs a TLBI, which the operation batches (`finish`).
                Entry::Leaf { .. } if ctx.covered() => {
                    self.ed.replace_deferred(ctx, target);
                    Ok(())
                }
                Entry::Invalid(_) if ctx.covered() => {
                    ctx.set(target);
                    Ok(())
                }
                Entry::Leaf { .. } => self.ed.split_block(ctx),
                Entry::Invalid(a) => self.ed.split_invalid(ctx, a),
                Entry::Table(_) => unreachable!("leaf visit of a table"),
            },
            Visit::TablePost => {
                let Entry::Table(t) = ctx.entry() else {
                    return Ok(());
                };
                // A covered table now holds only `target`; a partly covered one may too.
                let child = ctx.level.next().expect("tables sit above level 3");
                // Children fully inside the range hold `target` already: only the others need
                // reading.
                let csize = child.entry_size();
                let lo = (ctx.start.max(ctx.ipa) - ctx.ipa).div_ceil(csize) as usize;
                let hi = ((ctx.end.min(ctx.ipa + ctx.size()) - ctx.ipa) / csize) as usize;
                let uniform = ctx.covered()
                    || if lo < hi {
                        let mem = &*ctx.mem;
                        (0..lo)
                            .chain(hi..ENTRIES_PER_TABLE)
                            .all(|i| mem.read_pte(t, i) == target)
                    } else {
                        let first = ctx.mem.read_pte(t, 0);
                        !first.is_table(child)
                            && !first.is_valid()
                            && (1..ENTRIES_PER_TABLE).all(|i| ctx.mem.read_pte(t, i) == first)
                    };
                if uniform {
                    let value = ctx.mem.read_pte(t, 0);
                    debug_assert!(!value.is_valid());
                    self.ed.replace_deferred(ctx, value);
                }
                Ok(())
            }
            // A table whose whole range goes: unlink it in one store instead of clearing its
            // entries one by one. The VMID-wide TLBI this needs covers every leaf below, and
            // the subtree's frames are freed after it (a reused frame is zeroed first).
            Visit::TablePre if ctx.covered() => {
                self.ed.replace_deferred(ctx, target);
                Ok(())
            }
            Visit::TablePre => Ok(()),
        }
    }
}
