//! A VM's memory: its guest map (the ownership side), its stage-2 tables (the secondary MMU that
//! caches the guest map), the invalidation state that keeps the two coherent, and its dirty log.
//!
//! The ownership transitions that take access away (unshare, reclaim, migrate) run this VM's
//! [`Notifier`] first, which works like KVM's MMU-notifier callbacks: `begin` marks the range in
//! progress, bumps the invalidate sequence and removes the stage-2 entries (break-before-make,
//! completed TLB invalidation) before the frame table changes; `end` bumps the sequence again and
//! closes the range. A fault that read the sequence before, or that overlaps a range in progress,
//! retries instead of installing a translation to a frame that is being taken away.
//!
//! # Invariants (numbers from `docs/design.md`; all checked by [`Vm::check_invariants`])
//! - I1: every valid stage-2 leaf lies in a memory region and maps, page for page, the frame the
//!   guest map records for that page, which the frame table says this VM owns or borrows; a
//!   writable leaf maps only pages the guest may write.
//! - I2: stage-2 changes go through `Stage2`, which does break-before-make (checked there).
//! - I3: in a logged region, a writable leaf's pages have their dirty bit set (`dirty.rs`).
//! - I4: a frame leaves this VM only after [`Notifier::begin`] removed its translations and
//!   completed the TLB invalidation; table frames return to the cache only after theirs.
//! - No valid leaf overlaps an invalidation in progress.
//!
//! Locking, in this order (never the reverse): the ownership lock (`Mutex<FrameTable>`, which
//! also guards every VM's `backing`) → `backing` → `mmu` → `tables`. The fault path never holds
//! the ownership lock and the MMU lock together: it reads the sequence, looks the page up under
//! the ownership lock, drops it, then takes the MMU lock and re-checks the sequence.

use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::sync::Mutex;

use crate::mm::addr::{Gfn, Ipa, PAGE_SHIFT, PAGE_SIZE, Pa, Pfn};
use crate::mm::dirty::{DirtyLog, DirtyObserver};
use crate::mm::ownership::{FrameData, FrameTable, GuestMap, GuestPage, OwnershipError, VmId};
use crate::mm::phys::{PhysMem, TableAlloc};
use crate::mm::stage2::{Stage2, Stage2Config, Stage2Error, Vmid};
use crate::mm::tlb::Tlb;

mod dirty_log;
pub mod fault;
mod maintenance;
mod notifier;
mod transitions;

pub use notifier::Notifier;

/// Pages in a 2 MiB block.
pub const BLOCK_PAGES: u64 = 512;
/// Table frames kept ready in the cache so the fault path never allocates under the MMU lock:
/// enough for one 4 KiB map from a level-0 root (three tables) plus splitting one block at each
/// end of an invalidated range.
const TABLE_RESERVE: usize = 8;
/// The most table frames one fault's install can take: a page mapped below a 1 GiB block splits
/// it into a level-2 and a level-3 table, and a page in an empty level-0 entry needs tables at
/// levels 1 to 3.
const FAULT_TABLES_MAX: usize = 3;
/// More cached table frames than this go back to the frame table.
const TABLE_CACHE_MAX: usize = 64;

/// Why a stage-2 maintenance request on a VM was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MmuError {
    /// The range is empty, unaligned or wraps.
    BadRange { ipa: Ipa, len: u64 },
    /// The range is not inside one memory region.
    NotGuestMemory { ipa: Ipa, len: u64 },
    /// No frame was left for a stage-2 table.
    OutOfMemory,
    /// Stage 2 refused the change.
    Stage2(Stage2Error),
}

impl fmt::Display for MmuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadRange { ipa, len } => {
                write!(
                    f,
                    "cannot use IPA range {ipa}+{len:#x}: empty, unaligned or wrapping"
                )
            }
            Self::NotGuestMemory { ipa, len } => {
                write!(
                    f,
                    "IPA range {ipa}+{len:#x} is not inside one memory region"
                )
            }
            Self::OutOfMemory => f.write_str("no frame is left for a stage-2 table"),
            Self::Stage2(e) => write!(f, "stage 2 refused the change: {e}"),
        }
    }
}

impl From<Stage2Error> for MmuError {
    fn from(e: Stage2Error) -> Self {
        Self::Stage2(e)
    }
}

/// Ranges being invalidated, as KVM keeps them: a count and the union of their page ranges.
#[derive(Clone, Copy, Debug, Default)]
struct Invalidations {
    pub active: u32,
    pub start: u64,
    pub end: u64,
}

impl Invalidations {
    /// Whether pages `[start, end)` overlap a range in progress.
    pub fn overlaps(&self, start: u64, end: u64) -> bool {
        self.active > 0 && start < self.end && self.start < end
    }
}

/// The state behind the MMU lock.
struct Mmu<M: PhysMem, T: Tlb> {
    pub s2: Stage2<M, T>,
    pub dirty: DirtyLog,
    pub inval: Invalidations,
}

/// One VM's memory.
pub struct Vm<M: PhysMem, T: Tlb> {
    id: VmId,
    regions: Vec<(Gfn, u64)>,
    /// Bumped at the start and end of every invalidation (under the MMU lock).
    seq: AtomicU64,
    /// Frames for stage-2 tables, filled under the ownership lock so that code holding the MMU
    /// lock never needs it. Frames freed by stage 2 come back here (after their TLBI).
    tables: Mutex<Vec<Pa>>,
    pub(crate) backing: Mutex<GuestMap>,
    mmu: Mutex<Mmu<M, T>>,
    /// The dirty log's flags and bits, readable without the MMU lock (a hint for the fault
    /// path's lookup; decisions are taken under the lock).
    dirty_view: DirtyObserver,
}

/// [`TableAlloc`] over a VM's table cache. Roots are not allocated through it.
pub(crate) struct CacheAlloc<'a>(pub &'a Mutex<Vec<Pa>>);

impl TableAlloc for CacheAlloc<'_> {
    fn alloc_table(&mut self) -> Option<Pa> {
        self.0.lock().pop()
    }
    fn free_table(&mut self, table: Pa) {
        self.0.lock().push(table);
    }
    fn alloc_root(&mut self, _frames: usize) -> Option<Pa> {
        None
    }
    fn free_root(&mut self, _root: Pa, _frames: usize) {
        unreachable!("roots are freed by Vm::destroy")
    }
}

/// [`TableAlloc`] straight from the frame table, for creating and destroying a VM.
struct FrameAlloc<'a> {
    frames: &'a mut FrameTable,
    data: &'a mut dyn FrameData,
}

impl TableAlloc for FrameAlloc<'_> {
    fn alloc_table(&mut self) -> Option<Pa> {
        self.frames.hyp_alloc(self.data).ok().map(Pfn::base)
    }
    fn free_table(&mut self, table: Pa) {
        self.frames
            .hyp_free(Pfn::containing(table), self.data)
            .expect("table frames are hyp-owned");
    }
    fn alloc_root(&mut self, frames: usize) -> Option<Pa> {
        self.frames
            .hyp_alloc_run(frames as u64, self.data)
            .ok()
            .map(Pfn::base)
    }
    fn free_root(&mut self, root: Pa, frames: usize) {
        for i in 0..frames as u64 {
            self.free_table(Pa::new(root.raw() + i * PAGE_SIZE));
        }
    }
}

fn gfn_ipa(gfn: Gfn, pages: u64) -> (Ipa, u64) {
    (gfn.base(), pages << PAGE_SHIFT)
}

impl<M: PhysMem, T: Tlb> Vm<M, T> {
    /// A VM with memory regions `(first IPA, bytes)` (page aligned, non-overlapping), none of it
    /// backed yet, and an empty stage 2 whose root comes from `frames`.
    ///
    /// # Errors
    /// `MmuError::BadRange` for an unaligned or empty region, `Stage2` if the VMID does not fit,
    /// `OutOfMemory` if no frames are left for the root and the table reserve.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: VmId,
        regions: &[(Ipa, u64)],
        config: Stage2Config,
        vmid: Vmid,
        mem: M,
        tlb: T,
        frames: &mut FrameTable,
        data: &mut dyn FrameData,
    ) -> Result<Self, MmuError> {
        let mut pages = Vec::with_capacity(regions.len());
        for &(ipa, len) in regions {
            if len == 0
                || !ipa.is_aligned(PAGE_SIZE)
                || !len.is_multiple_of(PAGE_SIZE)
                || ipa
                    .raw()
                    .checked_add(len)
                    .is_none_or(|e| e > config.ipa_limit())
            {
                return Err(MmuError::BadRange { ipa, len });
            }
            pages.push((Gfn::containing(ipa), len >> PAGE_SHIFT));
        }
        let s2 =
            Stage2::new(mem, tlb, config, vmid, &mut FrameAlloc { frames, data }).map_err(|e| {
                match e {
                    Stage2Error::OutOfTableMemory { .. } => MmuError::OutOfMemory,
                    e => MmuError::Stage2(e),
                }
            })?;
        let dirty = DirtyLog::new(pages.iter().copied());
        let vm = Self {
            id,
            backing: Mutex::new(GuestMap::new(id, &pages)),
            dirty_view: dirty.observer(),
            mmu: Mutex::new(Mmu {
                s2,
                dirty,
                inval: Invalidations::default(),
            }),
            regions: pages,
            seq: AtomicU64::new(0),
            tables: Mutex::new(Vec::with_capacity(TABLE_CACHE_MAX + TABLE_RESERVE)),
        };
        vm.refill_tables(frames, data)
            .map_err(|_| MmuError::OutOfMemory)?;
        Ok(vm)
    }

    pub fn id(&self) -> VmId {
        self.id
    }

    /// The memory regions as `(first page, pages)`; region numbers index this list.
    pub fn regions(&self) -> &[(Gfn, u64)] {
        &self.regions
    }

    /// Whether `ipa` lies in one of the VM's memory regions (what the fault path would not
    /// answer with `OutsideGuestMemory`); needs no lock.
    pub fn is_guest_memory(&self, ipa: Ipa) -> bool {
        let g = Gfn::containing(ipa);
        self.regions
            .iter()
            .any(|&(b, n)| g >= b && g.raw() - b.raw() < n)
    }

    /// VTTBR_EL2 for this VM.
    pub fn vttbr(&self) -> u64 {
        self.mmu.lock().s2.vttbr()
    }

    /// Base of the stage-2 root table.
    pub fn stage2_root(&self) -> Pa {
        self.mmu.lock().s2.root()
    }

    /// The stage-2 configuration this VM's tables use.
    pub fn stage2_config(&self) -> Stage2Config {
        *self.mmu.lock().s2.config()
    }

    /// A view of the dirty-log flags and bits readable at any instant (for checkers).
    pub fn dirty_observer(&self) -> crate::mm::dirty::DirtyObserver {
        self.mmu.lock().dirty.observer()
    }

    /// The current translation of `ipa` in stage 2 (what a fresh hardware walk would find).
    pub fn translate(&self, ipa: Ipa) -> Option<crate::mm::stage2::Translation> {
        self.mmu.lock().s2.translate(ipa)
    }

    /// What backs the page at `ipa`.
    pub fn backing(&self, ipa: Ipa) -> GuestPage {
        self.backing.lock().get(Gfn::containing(ipa))
    }

    /// The invalidate sequence (for tests and the fault path).
    pub fn invalidate_seq(&self) -> u64 {
        self.seq.load(Ordering::Acquire)
    }

    fn seq(&self) -> &AtomicU64 {
        &self.seq
    }

    /// Table frames the stage-2 tree uses, root included.
    pub fn table_pages(&self) -> usize {
        self.mmu.lock().s2.table_pages()
    }

    /// Table frames reserved in the cache.
    pub fn cached_tables(&self) -> usize {
        self.tables.lock().len()
    }

    pub(crate) fn table_alloc(&self) -> CacheAlloc<'_> {
        CacheAlloc(&self.tables)
    }

    /// Top the table cache up to [`TABLE_RESERVE`] and trim it to `TABLE_CACHE_MAX`. Called with
    /// the ownership lock held (`frames`), never the MMU lock.
    fn refill_tables(
        &self,
        frames: &mut FrameTable,
        data: &mut dyn FrameData,
    ) -> Result<(), OwnershipError> {
        let mut cache = self.tables.lock();
        while cache.len() < TABLE_RESERVE {
            cache.push(frames.hyp_alloc(data)?.base());
        }
        while cache.len() > TABLE_CACHE_MAX {
            let t = cache.pop().expect("longer than the maximum");
            frames
                .hyp_free(Pfn::containing(t), data)
                .expect("table frames are hyp-owned");
        }
        Ok(())
    }

    /// Whether the cache needs a refill before a fault may map (read without the ownership lock).
    fn tables_low(&self) -> bool {
        self.tables.lock().len() < TABLE_RESERVE
    }

    /// `(region, first page, pages)` if `[ipa, ipa + len)` is page aligned and inside one region.
    fn region_range(&self, ipa: Ipa, len: u64) -> Result<(usize, Gfn, u64), MmuError> {
        if len == 0 || !ipa.is_aligned(PAGE_SIZE) || !len.is_multiple_of(PAGE_SIZE) {
            return Err(MmuError::BadRange { ipa, len });
        }
        let (gfn, n) = (Gfn::containing(ipa), len >> PAGE_SHIFT);
        self.regions
            .iter()
            .position(|&(b, p)| gfn >= b && gfn.raw() - b.raw() + n <= p)
            .map(|r| (r, gfn, n))
            .ok_or(MmuError::NotGuestMemory { ipa, len })
    }

    /// The notifier to hand to ownership transitions on this VM.
    pub fn notifier(&self) -> Notifier<'_, M, T> {
        Notifier { vm: self }
    }

    /// Gives back every page: reclaims owned pages (a whole 2 MiB block in one transition where
    /// one is owned), unshares borrowed ones. Used to reset and to destroy a VM.
    ///
    /// # Errors
    /// As [`Vm::reclaim`] and [`Vm::unshare`] (`Pinned` or `Busy` for a page still pinned or
    /// referenced); the pages before it are given back.
    pub fn release_all(
        &self,
        frames: &Mutex<FrameTable>,
        data: &mut dyn FrameData,
    ) -> Result<(), OwnershipError> {
        let backed: Vec<(Gfn, GuestPage)> = self.backing.lock().backed().collect();
        let mut i = 0;
        while i < backed.len() {
            let (gfn, page) = backed[i];
            let block = BLOCK_PAGES as usize;
            let whole_block = gfn.raw().is_multiple_of(BLOCK_PAGES)
                && backed.get(i..i + block).is_some_and(|run| {
                    run.iter()
                        .zip(gfn.raw()..)
                        .all(|(&(g, p), want)| g.raw() == want && matches!(p, GuestPage::Owned(_)))
                });
            if whole_block {
                self.reclaim(frames, data, gfn.base(), BLOCK_PAGES * PAGE_SIZE)?;
                i += block;
                continue;
            }
            match page {
                GuestPage::Owned(_) => self.reclaim(frames, data, gfn.base(), PAGE_SIZE)?,
                _ => self.unshare(frames, data, gfn.base(), PAGE_SIZE)?,
            }
            i += 1;
        }
        Ok(())
    }

    /// Panics unless every invariant in the module docs holds. `frames` is the locked frame
    /// table (the caller holds the ownership lock).
    pub fn check_invariants(&self, frames: &FrameTable) {
        let backing = self.backing.lock();
        backing.check_against(frames);
        let mmu = self.mmu.lock();
        mmu.s2.check_invariants();
        let limit = mmu.s2.config().ipa_limit();
        mmu.s2
            .for_each_leaf(Ipa::new(0), limit, |leaf| {
                let first = Gfn::containing(leaf.ipa).raw();
                let pages = leaf.size() >> PAGE_SHIFT;
                assert!(
                    !mmu.inval.overlaps(first, first + pages),
                    "leaf {leaf:?} of {} inside an invalidation in progress",
                    self.id
                );
                for i in 0..pages {
                    let gfn = Gfn::new(first + i);
                    let pfn = Pfn::new(Pfn::containing(leaf.pa).raw() + i);
                    let page = backing.get(gfn);
                    assert!(
                        backing.locate(gfn).is_some(),
                        "I1: leaf {leaf:?} of {} maps {gfn:?} outside guest memory",
                        self.id
                    );
                    assert_eq!(
                        page.pfn(),
                        Some(pfn),
                        "I1: {gfn:?} of {} maps {pfn:?} but is {page}",
                        self.id
                    );
                    let st = frames.state(pfn).expect("leaf maps RAM");
                    assert!(
                        st.reachable_by(self.id),
                        "I1: {gfn:?} of {} maps {pfn:?}, {st}",
                        self.id
                    );
                    if leaf.attrs.perms.writable() {
                        assert!(
                            page.writable(),
                            "I1: {gfn:?} of {} writable but {page}",
                            self.id
                        );
                        assert!(
                            !mmu.dirty.is_logging(gfn) || mmu.dirty.is_dirty(gfn),
                            "I3: {gfn:?} of {} writable in stage 2 but not dirty",
                            self.id
                        );
                    }
                }
            })
            .expect("the whole input range is walkable");
        for &t in self.tables.lock().iter() {
            assert_eq!(
                frames.state(Pfn::containing(t)),
                Some(crate::mm::ownership::FrameState::Owned(
                    crate::mm::ownership::Owner::Hyp
                )),
                "cached table frame {t:?} is not hypervisor-owned"
            );
        }
    }

    /// Reclaims every page, unmaps everything and frees the table cache and the root. Returns the
    /// stage-2 memory and TLB handles.
    ///
    /// # Errors
    /// `Pinned`/`Busy` if a page is still pinned or referenced (nothing is freed then); shared
    /// pages are unshared.
    pub fn destroy(
        self,
        frames: &Mutex<FrameTable>,
        data: &mut dyn FrameData,
    ) -> Result<(M, T), (alloc::boxed::Box<Self>, OwnershipError)> {
        if let Err(e) = self.release_all(frames, data) {
            return Err((alloc::boxed::Box::new(self), e));
        }
        let mut f = frames.lock();
        let Mmu { s2, .. } = self.mmu.into_inner();
        let mut cache = self.tables.into_inner();
        let mut alloc = FrameAlloc {
            frames: &mut f,
            data,
        };
        let handles = s2.destroy(&mut alloc);
        for t in cache.drain(..) {
            alloc.free_table(t);
        }
        Ok(handles)
    }
}

/// The first frame of a 2 MiB block that may map the aligned block around `gfn`: every page of
/// it owned by the VM, in one region, backed by physically contiguous frames starting 2 MiB
/// aligned. Checked under the ownership lock; a later change to those pages goes through an
/// invalidation, which the fault path notices by the sequence.
fn block_backing(backing: &GuestMap, gfn: Gfn) -> Option<Pfn> {
    let start = Gfn::new(gfn.raw() & !(BLOCK_PAGES - 1));
    if !backing.contains(start, BLOCK_PAGES) {
        return None;
    }
    let GuestPage::Owned(base) = backing.get(start) else {
        return None;
    };
    if base.raw() % BLOCK_PAGES != 0 {
        return None;
    }
    (1..BLOCK_PAGES)
        .all(|i| {
            backing.get(Gfn::new(start.raw() + i)) == GuestPage::Owned(Pfn::new(base.raw() + i))
        })
        .then_some(base)
}
