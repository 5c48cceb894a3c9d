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

/// The valid leaf translating `ipa` in the tree at `root` (a table of `root_entries` entries at
/// `level` mapping from IPA 0), by a direct walk: one load per level, as the hardware walks.
/// `ipa` must be below the tree's input range.
#[inline]
pub(crate) fn leaf_of<M: PhysMem>(
    mem: &M,
    root: Pa,
    mut level: Level,
    root_entries: usize,
    ipa: u64,
) -> Option<Leaf> {
    let mut table = root;
    // The root may be concatenated: its index takes every bit above the level's shift.
    let mut index = (ipa >> level.shift()) as usize;
    debug_assert!(index < root_entries, "IPA {ipa:#x} beyond the root");
    loop {
        let pte = mem.read_pte(table, index);
        if let Some(next_table) = pte.next_table(level) {
            table = next_table;
            level = level
                .next()
                .expect("table entries exist above level 3 only");
            index = level.index(Ipa::new(ipa));
            continue;
        }
        return match pte.decode(level) {
            Entry::Leaf { pa, attrs } => Some(Leaf {
                ipa: Ipa::new(ipa & !(level.entry_size() - 1)),
                pa,
                level,
                attrs,
            }),
            _ => None,
        };
    }
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
