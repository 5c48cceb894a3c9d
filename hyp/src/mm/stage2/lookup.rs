//! Read-only walks: translate one IPA, list the leaves of a range.

use crate::mm::addr::{Ipa, Pa};
use crate::mm::descriptor::{Entry, LeafAttrs, Level};
use crate::mm::phys::PhysMem;

use super::Stage2Error;
use super::walker::{Visit, VisitCtx, Visitor};

/// A valid leaf found by a walk.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Leaf {
    /// First IPA the leaf maps.
    pub ipa: Ipa,
    /// First PA it maps to.
    pub pa: Pa,
    pub level: Level,
    pub attrs: LeafAttrs,
}

impl Leaf {
    pub const fn size(&self) -> u64 {
        self.level.entry_size()
    }
}

/// The translation of one IPA.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Translation {
    /// Where the IPA itself lands.
    pub pa: Pa,
    /// The leaf that maps it.
    pub leaf: Leaf,
}

pub(crate) struct LeafVisitor<F> {
    pub f: F,
}

impl<M: PhysMem, F: FnMut(Leaf)> Visitor<M> for LeafVisitor<F> {
    #[inline(always)]
    fn visit(&mut self, ctx: &mut VisitCtx<'_, M>, _kind: Visit) -> Result<(), Stage2Error> {
        if let Entry::Leaf { pa, attrs } = ctx.entry() {
            (self.f)(Leaf {
                ipa: ctx.ipa(),
                pa,
                level: ctx.level,
                attrs,
            });
        }
        Ok(())
    }
}
