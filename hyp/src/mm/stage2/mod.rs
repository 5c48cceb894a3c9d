//! A VM's stage-2 translation tables: map, unmap, change attributes, split, collapse, translate.
//!
//! Invariants (numbers from `docs/design.md`; checked by `Stage2::check_invariants` and the sim):
//! - I2: a valid entry's output address, size or memory type changes only through an invalid
//!   entry and a completed TLB invalidation (`edit::Editor::break_entry`).
//! - I4: a table frame goes back to the allocator only after the TLB invalidation that removed
//!   every translation walked through it completed (`edit::Editor::finish`).
//! - `table_pages` is exactly the number of frames in the tree (root frames included).
//! - No leaf at level 0; no table entry at level 3; every table frame is linked once.
//!
//! Locking: a `Stage2` is `&mut` for every change; the VM's MMU lock is what hands that out.
//! Every operation returns only after its TLB maintenance completed.
//!
//! Failure: only table allocation can fail in the middle of an operation; the part of the range
//! already done stays done (consistent, with its maintenance completed). Callers that must not
//! fail halfway reserve `max_tables_for_map` frames first.

pub mod config;

mod attrs;
mod edit;
mod lookup;
mod map;
mod resize;
mod unmap;
mod walker;

use alloc::vec::Vec;
use core::fmt;

use super::addr::{Ipa, PAGE_SIZE, Pa};
use super::descriptor::{Annotation, Entry, LeafAttrs, LeafEncoder, Level, Pte, S2Perms};
use super::phys::{PhysMem, TableAlloc};
use super::tlb::Tlb;

pub use config::{ConfigError, CpuFeatures, Stage2Config, Vmid};
pub use lookup::{Leaf, Translation};

use crate::mm::bugs::bug;
use edit::{Deferred, Editor};
use walker::{ReadOnly, Visit, VisitCtx, Visitor, walk};

/// How `map` may shape the mapping.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct MapFlags {
    /// Use only 4 KiB pages (no 2 MiB / 1 GiB blocks), e.g. while dirty logging.
    pub pages_only: bool,
}

impl MapFlags {
    /// Largest blocks alignment allows.
    pub const BLOCKS: Self = Self { pages_only: false };
    pub const PAGES_ONLY: Self = Self { pages_only: true };
}

/// Why a stage-2 operation was refused or stopped.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Stage2Error {
    /// The IPA is not 4 KiB aligned.
    MisalignedIpa { ipa: Ipa },
    /// The PA is not 4 KiB aligned.
    MisalignedPa { pa: Pa },
    /// The length is not a multiple of 4 KiB.
    MisalignedLength { len: u64 },
    /// The IPA range ends past the stage-2 input range (VTCR_EL2.T0SZ) or wraps.
    IpaOutOfRange { ipa: Ipa, len: u64, limit: u64 },
    /// The PA range ends past the output range (VTCR_EL2.PS) or wraps.
    PaOutOfRange { pa: Pa, len: u64, limit: u64 },
    /// The VMID does not fit in the CPU's VMID width.
    VmidOutOfRange { vmid: Vmid, max: u16 },
    /// The table allocator had no frame for a table needed below this entry.
    OutOfTableMemory { ipa: Ipa, level: Level },
}

impl fmt::Display for Stage2Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MisalignedIpa { ipa } => {
                write!(f, "cannot change stage 2 at IPA {ipa}: not 4 KiB aligned")
            }
            Self::MisalignedPa { pa } => write!(f, "cannot map PA {pa}: not 4 KiB aligned"),
            Self::MisalignedLength { len } => {
                write!(
                    f,
                    "cannot change stage 2 over {len:#x} bytes: not a multiple of 4 KiB"
                )
            }
            Self::IpaOutOfRange { ipa, len, limit } => write!(
                f,
                "cannot change stage 2 over IPA {ipa}+{len:#x}: the input range ends at {limit:#x}"
            ),
            Self::PaOutOfRange { pa, len, limit } => write!(
                f,
                "cannot map PA {pa}+{len:#x}: the output range ends at {limit:#x}"
            ),
            Self::VmidOutOfRange { vmid, max } => {
                write!(f, "cannot use VMID {vmid}: this CPU's VMIDs end at {max}")
            }
            Self::OutOfTableMemory { ipa, level } => write!(
                f,
                "cannot allocate a level-{level} table for IPA {ipa}: the table allocator is empty"
            ),
        }
    }
}

/// One VM's stage-2 tree, the memory it lives in (`M`) and the TLB it is cached in (`T`).
pub struct Stage2<M: PhysMem, T: Tlb> {
    mem: M,
    tlb: T,
    config: Stage2Config,
    vmid: Vmid,
    root: Pa,
    table_pages: usize,
}

impl<M: PhysMem, T: Tlb> fmt::Debug for Stage2<M, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stage2")
            .field("vmid", &self.vmid)
            .field("root", &self.root)
            .field("table_pages", &self.table_pages)
            .finish_non_exhaustive()
    }
}

impl<M: PhysMem, T: Tlb> Stage2<M, T> {
    /// An empty tree for `vmid`, its root allocated from `alloc` (concatenated per `config`).
    ///
    /// # Errors
    /// [`Stage2Error::VmidOutOfRange`] if `vmid` exceeds the CPU's VMID width;
    /// [`Stage2Error::OutOfTableMemory`] if `alloc` has no suitable root frames.
    pub fn new<A: TableAlloc + ?Sized>(
        mut mem: M,
        tlb: T,
        config: Stage2Config,
        vmid: Vmid,
        alloc: &mut A,
    ) -> Result<Self, Stage2Error> {
        if vmid.raw() > config.max_vmid() {
            return Err(Stage2Error::VmidOutOfRange {
                vmid,
                max: config.max_vmid(),
            });
        }
        let frames = config.root_tables();
        let root = alloc
            .alloc_root(frames)
            .ok_or(Stage2Error::OutOfTableMemory {
                ipa: Ipa::new(0),
                level: config.start_level(),
            })?;
        debug_assert!(
            root.is_aligned(frames as u64 * PAGE_SIZE),
            "misaligned root {root:?}"
        );
        for i in 0..frames {
            mem.zero_table(Pa::new(root.raw() + i as u64 * PAGE_SIZE));
        }
        Ok(Self {
            mem,
            tlb,
            config,
            vmid,
            root,
            table_pages: frames,
        })
    }

    pub fn config(&self) -> &Stage2Config {
        &self.config
    }
    pub fn vmid(&self) -> Vmid {
        self.vmid
    }
    /// Base of the (possibly concatenated) root table.
    pub fn root(&self) -> Pa {
        self.root
    }
    /// VTTBR_EL2 for this VM (root and VMID together).
    pub fn vttbr(&self) -> u64 {
        self.config
            .vttbr(self.root, self.vmid)
            .expect("root and VMID validated by new")
    }
    /// Frames the tree uses, root included.
    pub fn table_pages(&self) -> usize {
        self.table_pages
    }
    pub fn mem(&self) -> &M {
        &self.mem
    }
    pub fn mem_mut(&mut self) -> &mut M {
        &mut self.mem
    }
    pub fn tlb_mut(&mut self) -> &mut T {
        &mut self.tlb
    }

    /// Upper bound on the table frames one `map` of `len` bytes (or an unmap/protect that
    /// splits at both ends) can allocate, for callers that reserve frames first.
    pub fn max_tables_for_map(&self, len: u64) -> usize {
        let mut n = 0;
        let mut level = self.config.start_level();
        while let Some(next) = level.next() {
            // One table per parent entry the range touches (+1 for misalignment).
            n += len.div_ceil(level.entry_size()) as usize + 1;
            level = next;
        }
        n
    }

    fn check_ipa_range(&self, ipa: Ipa, len: u64) -> Result<u64, Stage2Error> {
        if !ipa.is_aligned(PAGE_SIZE) {
            return Err(Stage2Error::MisalignedIpa { ipa });
        }
        if !len.is_multiple_of(PAGE_SIZE) {
            return Err(Stage2Error::MisalignedLength { len });
        }
        let limit = self.config.ipa_limit();
        match ipa.raw().checked_add(len) {
            Some(end) if end <= limit => Ok(end),
            _ => Err(Stage2Error::IpaOutOfRange { ipa, len, limit }),
        }
    }

    fn editor<'e, A: TableAlloc + ?Sized>(
        tlb: &'e mut T,
        alloc: &'e mut A,
        vmid: Vmid,
        config: &Stage2Config,
        table_pages: &'e mut usize,
    ) -> Editor<'e, T, A> {
        Editor {
            tlb,
            alloc,
            vmid,
            enc: config.attr_encoding(),
            table_pages,
            deferred: Deferred::default(),
        }
    }

    /// Map `[ipa, ipa + len)` to `[pa, pa + len)` with `attrs`, using 1 GiB and 2 MiB blocks
    /// where both addresses are aligned and the range covers the block (unless
    /// `flags.pages_only`). Live entries that change address, size or type are replaced with
    /// break-before-make; permission-only changes are stored directly (restrictions followed by
    /// a completed TLBI); existing blocks that already map part of the range identically stay.
    ///
    /// # Errors
    /// Misaligned IPA, PA or length; IPA or PA range out of bounds; out of table memory (the
    /// range is then partly mapped).
    pub fn map<A: TableAlloc + ?Sized>(
        &mut self,
        alloc: &mut A,
        ipa: Ipa,
        pa: Pa,
        len: u64,
        attrs: LeafAttrs,
        flags: MapFlags,
    ) -> Result<(), Stage2Error> {
        let end = self.check_ipa_range(ipa, len)?;
        if !pa.is_aligned(PAGE_SIZE) {
            return Err(Stage2Error::MisalignedPa { pa });
        }
        let pa_limit = self.config.pa_limit();
        if pa.raw().checked_add(len).is_none_or(|e| e > pa_limit) {
            return Err(Stage2Error::PaOutOfRange {
                pa,
                len,
                limit: pa_limit,
            });
        }
        let ed = Self::editor(
            &mut self.tlb,
            alloc,
            self.vmid,
            &self.config,
            &mut self.table_pages,
        );
        let delta = pa.raw().wrapping_sub(ipa.raw());
        let encoder = LeafEncoder::new(attrs, self.config.attr_encoding());
        let pages_only = flags.pages_only;
        let mut v = map::MapVisitor {
            ed,
            delta,
            attrs,
            encoder,
            pages_only,
        };
        let (level, entries) = (self.config.start_level(), self.config.root_entries());
        let r = if len == 0 {
            Ok(())
        } else {
            walk(
                &mut self.mem,
                self.root,
                level,
                entries,
                ipa.raw(),
                end,
                &mut v,
            )
        };
        v.ed.finish();
        r
    }

    /// Make `[ipa, ipa + len)` invalid (blocks straddling an end are split first) and free the
    /// tables left empty. Returns after the TLB invalidation completed and the freed tables
    /// went back to `alloc`, so the unmapped frames may be reused.
    ///
    /// # Errors
    /// Misaligned IPA or length; IPA range out of bounds; out of table memory for a split (the
    /// range is then partly unmapped).
    pub fn unmap<A: TableAlloc + ?Sized>(
        &mut self,
        alloc: &mut A,
        ipa: Ipa,
        len: u64,
    ) -> Result<(), Stage2Error> {
        self.annotate(alloc, ipa, len, Annotation::NONE)
    }

    /// Like [`Stage2::unmap`], but the invalid entries carry `annotation` (e.g. an owner id),
    /// which keeps their tables allocated. Annotating with [`Annotation::NONE`] is unmapping.
    ///
    /// # Errors
    /// As for [`Stage2::unmap`].
    pub fn annotate<A: TableAlloc + ?Sized>(
        &mut self,
        alloc: &mut A,
        ipa: Ipa,
        len: u64,
        annotation: Annotation,
    ) -> Result<(), Stage2Error> {
        let mut end = self.check_ipa_range(ipa, len)?;
        if bug!(unmap_one_page_short) && len > PAGE_SIZE {
            end -= PAGE_SIZE;
        }
        let ed = Self::editor(
            &mut self.tlb,
            alloc,
            self.vmid,
            &self.config,
            &mut self.table_pages,
        );
        let mut u = unmap::Unmap {
            ed,
            target: Pte::invalid(annotation),
            start: ipa.raw(),
            end,
        };
        let r = if len == 0 {
            Ok(())
        } else {
            let (level, entries) = (self.config.start_level(), self.config.root_entries());
            u.table(&mut self.mem, self.root, level, 0, entries)
                .map(|_| ())
        };
        u.ed.finish();
        r
    }

    /// Apply `update` to the attributes of every valid leaf in `[ipa, ipa + len)`. Blocks that
    /// straddle an end of the range and would change are split first. Returns after the TLB
    /// invalidation for any removed permission completed; added permissions need none (see
    /// [`crate::mm::descriptor::Change::Relax`]); a memory-type change is done with BBM.
    ///
    /// # Errors
    /// Misaligned IPA or length; IPA range out of bounds; out of table memory for a split.
    pub fn update_leaves<A, F>(
        &mut self,
        alloc: &mut A,
        ipa: Ipa,
        len: u64,
        update: F,
    ) -> Result<(), Stage2Error>
    where
        A: TableAlloc + ?Sized,
        F: FnMut(LeafAttrs) -> LeafAttrs,
    {
        let end = self.check_ipa_range(ipa, len)?;
        let ed = Self::editor(
            &mut self.tlb,
            alloc,
            self.vmid,
            &self.config,
            &mut self.table_pages,
        );
        let mut v = attrs::UpdateVisitor {
            ed,
            update,
            memo: None,
        };
        let (level, entries) = (self.config.start_level(), self.config.root_entries());
        let r = if len == 0 {
            Ok(())
        } else {
            walk(
                &mut self.mem,
                self.root,
                level,
                entries,
                ipa.raw(),
                end,
                &mut v,
            )
        };
        v.ed.finish();
        r
    }

    /// Set the permissions of every valid leaf in the range to `perms`.
    ///
    /// # Errors
    /// As for [`Stage2::update_leaves`].
    pub fn set_perms<A: TableAlloc + ?Sized>(
        &mut self,
        alloc: &mut A,
        ipa: Ipa,
        len: u64,
        perms: S2Perms,
    ) -> Result<(), Stage2Error> {
        self.update_leaves(alloc, ipa, len, |a| a.with_perms(perms))
    }

    /// Remove write permission from every valid leaf in the range; returns after the TLB
    /// invalidation completed, so no CPU can write through an old entry afterwards.
    ///
    /// # Errors
    /// As for [`Stage2::update_leaves`].
    pub fn write_protect<A: TableAlloc + ?Sized>(
        &mut self,
        alloc: &mut A,
        ipa: Ipa,
        len: u64,
    ) -> Result<(), Stage2Error> {
        self.update_leaves(alloc, ipa, len, |a| {
            a.with_perms(a.perms.without(S2Perms::W))
        })
    }

    /// Split every block intersecting the range until its leaves sit at `target` or deeper
    /// (`Level::L3` for 4 KiB dirty tracking). Translations do not change.
    ///
    /// # Errors
    /// Misaligned IPA or length; IPA range out of bounds; out of table memory.
    pub fn split<A: TableAlloc + ?Sized>(
        &mut self,
        alloc: &mut A,
        ipa: Ipa,
        len: u64,
        target: Level,
    ) -> Result<(), Stage2Error> {
        let end = self.check_ipa_range(ipa, len)?;
        let ed = Self::editor(
            &mut self.tlb,
            alloc,
            self.vmid,
            &self.config,
            &mut self.table_pages,
        );
        let mut v = resize::SplitVisitor { ed, target };
        let (level, entries) = (self.config.start_level(), self.config.root_entries());
        let r = if len == 0 {
            Ok(())
        } else {
            walk(
                &mut self.mem,
                self.root,
                level,
                entries,
                ipa.raw(),
                end,
                &mut v,
            )
        };
        v.ed.finish();
        r
    }

    /// Replace every table intersecting the range whose entries are leaves mapping one
    /// contiguous, aligned PA range with equal attributes by one block (deepest first, so
    /// 4 KiB pages can become a 1 GiB block in one call). Translations do not change. Returns
    /// how many tables were collapsed (and freed, after their TLB invalidation).
    ///
    /// # Errors
    /// Misaligned IPA or length; IPA range out of bounds.
    pub fn collapse<A: TableAlloc + ?Sized>(
        &mut self,
        alloc: &mut A,
        ipa: Ipa,
        len: u64,
    ) -> Result<usize, Stage2Error> {
        let end = self.check_ipa_range(ipa, len)?;
        let ed = Self::editor(
            &mut self.tlb,
            alloc,
            self.vmid,
            &self.config,
            &mut self.table_pages,
        );
        let mut v = resize::CollapseVisitor { ed, collapsed: 0 };
        let (level, entries) = (self.config.start_level(), self.config.root_entries());
        let r = if len == 0 {
            Ok(())
        } else {
            walk(
                &mut self.mem,
                self.root,
                level,
                entries,
                ipa.raw(),
                end,
                &mut v,
            )
        };
        v.ed.finish();
        r.map(|()| v.collapsed)
    }

    /// The translation of `ipa`, or `None` if it is outside the input range or unmapped.
    pub fn translate(&self, ipa: Ipa) -> Option<Translation> {
        if ipa.raw() >= self.config.ipa_limit() {
            return None;
        }
        let (level, entries) = (self.config.start_level(), self.config.root_entries());
        let found = lookup::leaf_of(&self.mem, self.root, level, entries, ipa.raw());
        found.map(|leaf| Translation {
            pa: Pa::new(leaf.pa.raw() + (ipa.raw() - leaf.ipa.raw())),
            leaf,
        })
    }

    /// Call `f` for every valid leaf intersecting `[ipa, ipa + len)`, in IPA order (a block is
    /// reported whole even if the range covers part of it).
    ///
    /// # Errors
    /// Misaligned IPA or length; IPA range out of bounds.
    pub fn for_each_leaf<F: FnMut(Leaf)>(
        &self,
        ipa: Ipa,
        len: u64,
        f: F,
    ) -> Result<(), Stage2Error> {
        let end = self.check_ipa_range(ipa, len)?;
        if len == 0 {
            return Ok(());
        }
        let mut v = lookup::LeafVisitor { f };
        let (level, entries) = (self.config.start_level(), self.config.root_entries());
        let mut ro = ReadOnly(&self.mem);
        walk(&mut ro, self.root, level, entries, ipa.raw(), end, &mut v)
    }

    /// Unmap everything, free every table and the root (after a completed VMID-wide TLBI), and
    /// give back the memory and TLB handles.
    pub fn destroy<A: TableAlloc + ?Sized>(mut self, alloc: &mut A) -> (M, T) {
        let limit = self.config.ipa_limit();
        // Every root entry is covered, so every table goes and no split (no allocation) happens.
        self.unmap(alloc, Ipa::new(0), limit)
            .expect("unmapping everything needs no tables");
        self.tlb.invalidate_vmid_all(self.vmid);
        let frames = self.config.root_tables();
        debug_assert_eq!(
            self.table_pages, frames,
            "tables left after unmapping everything"
        );
        alloc.free_root(self.root, frames);
        (self.mem, self.tlb)
    }

    /// Check the tree's structural invariants (see the module docs); panics on a violation.
    /// Tests and the fuzzer call it after every operation.
    pub fn check_invariants(&self) {
        struct Check {
            tables: Vec<Pa>,
            pa_limit: u64,
        }
        impl<M: PhysMem> Visitor<M> for Check {
            const TABLE_PRE: bool = true;
            fn visit(&mut self, ctx: &mut VisitCtx<'_, M>, kind: Visit) -> Result<(), Stage2Error> {
                match (kind, ctx.entry()) {
                    (Visit::TablePre, Entry::Table(t)) => self.tables.push(t),
                    (_, Entry::Leaf { pa, .. }) => {
                        assert!(
                            ctx.level.allows_leaf(),
                            "leaf at level {} IPA {:#x}",
                            ctx.level,
                            ctx.ipa
                        );
                        assert!(
                            pa.raw() + ctx.size() <= self.pa_limit,
                            "leaf {pa:?} beyond PA range"
                        );
                    }
                    _ => {}
                }
                Ok(())
            }
        }
        let mut v = Check {
            tables: Vec::new(),
            pa_limit: self.config.pa_limit(),
        };
        let (level, entries) = (self.config.start_level(), self.config.root_entries());
        let mut ro = ReadOnly(&self.mem);
        walk(
            &mut ro,
            self.root,
            level,
            entries,
            0,
            self.config.ipa_limit(),
            &mut v,
        )
        .expect("read-only walks cannot fail");
        let mut tables = v.tables;
        let linked = tables.len();
        tables.sort_unstable();
        tables.dedup();
        assert_eq!(tables.len(), linked, "a table frame is linked twice");
        let root_end = self.root.raw() + self.config.root_tables() as u64 * PAGE_SIZE;
        assert!(
            tables
                .iter()
                .all(|t| t.raw() < self.root.raw() || t.raw() >= root_end),
            "a root frame is linked as a table"
        );
        assert_eq!(
            linked + self.config.root_tables(),
            self.table_pages,
            "table page count out of sync with the tree"
        );
    }
}

#[cfg(test)]
mod tests;
