//! A VM's dirty log on the stage-2 side: enabling write-protects the region, a harvest
//! write-protects each dirty page (with its TLB invalidation completed) before clearing its
//! bit, disabling restores blocks and writable entries. The bitmap itself and the protocol's
//! rules are in `mm::dirty`.

use crate::sync::Mutex;

use super::{BLOCK_PAGES, Vm, block_backing, gfn_ipa};
use crate::mm::addr::Gfn;
use crate::mm::bugs::bug;
use crate::mm::descriptor::{LeafAttrs, S2Perms};
use crate::mm::dirty::DirtyLogError;
use crate::mm::ownership::{FrameData, FrameTable};
use crate::mm::phys::PhysMem;
use crate::mm::stage2::MapFlags;
use crate::mm::tlb::Tlb;

impl<M: PhysMem, T: Tlb> Vm<M, T> {
    fn logged_region(&self, region: usize) -> Result<(), DirtyLogError> {
        if region >= self.regions().len() {
            return Err(DirtyLogError::NoSuchRegion { region });
        }
        Ok(())
    }

    /// Starts dirty logging on `region`: every page counts as dirty until the first harvest,
    /// and the region is write-protected (blocks stay blocks, read-only; they are split on the
    /// first write fault).
    ///
    /// # Errors
    /// `NoSuchRegion`, `AlreadyLogging`, `OutOfMemory`.
    pub fn enable_dirty_log(
        &self,
        frames: &Mutex<FrameTable>,
        data: &mut dyn FrameData,
        region: usize,
    ) -> Result<(), DirtyLogError> {
        self.logged_region(region)?;
        self.refill_tables(&mut frames.lock(), data)
            .map_err(|_| DirtyLogError::OutOfMemory)?;
        let mut guard = self.mmu.lock();
        let mmu = &mut *guard;
        // Bits first: pages writable in stage 2 right now must count as dirty (I3).
        if !mmu.dirty.start(region) {
            return Err(DirtyLogError::AlreadyLogging { region });
        }
        let (gfn, pages) = mmu.dirty.region(region);
        let (ipa, len) = gfn_ipa(gfn, pages);
        mmu.s2
            .write_protect(&mut self.table_alloc(), ipa, len)
            .map_err(|_| DirtyLogError::OutOfMemory)
    }

    /// Reports the pages of `region` written since the last harvest as bits of `out` (bit `i`
    /// of word `w` is page `64 * w + i` of the region; bits are ORed in) and returns how many.
    /// Each page is write-protected, with its TLB invalidation completed, before its bit is
    /// cleared: a write after that faults and lands in the next harvest.
    ///
    /// # Errors
    /// `NoSuchRegion`, `NotLogging`, `BitmapTooSmall`, `OutOfMemory`.
    pub fn harvest_dirty_log(&self, region: usize, out: &mut [u64]) -> Result<u64, DirtyLogError> {
        self.logged_region(region)?;
        let mut guard = self.mmu.lock();
        let mmu = &mut *guard;
        if !mmu.dirty.region_logging(region) {
            return Err(DirtyLogError::NotLogging { region });
        }
        let needed = mmu.dirty.bitmap_words(region);
        if out.len() < needed {
            return Err(DirtyLogError::BitmapTooSmall {
                words: out.len(),
                needed,
            });
        }
        let base = mmu.dirty.region(region).0;
        let mut from = 0;
        let mut count = 0;
        while let Some((gfn, n)) = mmu.dirty.next_run(region, from) {
            let (ipa, len) = gfn_ipa(gfn, n);
            if bug!(clear_before_protect) {
                mmu.dirty.take(region, gfn, n, out);
            }
            if !bug!(skip_harvest_protect) {
                // Returns after the TLB invalidation completed on every CPU.
                mmu.s2
                    .write_protect(&mut self.table_alloc(), ipa, len)
                    .map_err(|_| DirtyLogError::OutOfMemory)?;
            }
            mmu.dirty.take(region, gfn, n, out);
            count += n;
            from = gfn.raw() - base.raw() + n;
        }
        Ok(count)
    }

    /// Stops dirty logging on `region` and restores what logging took away: 2 MiB blocks
    /// where the backing allows, writable entries for pages the guest may write.
    ///
    /// # Errors
    /// `NoSuchRegion`, `NotLogging`, `OutOfMemory`.
    pub fn disable_dirty_log(
        &self,
        frames: &Mutex<FrameTable>,
        data: &mut dyn FrameData,
        region: usize,
    ) -> Result<(), DirtyLogError> {
        self.logged_region(region)?;
        let oom = |_| DirtyLogError::OutOfMemory;
        let mut f = frames.lock();
        self.refill_tables(&mut f, data).map_err(oom)?;
        let backing = self.backing.lock();
        let mut guard = self.mmu.lock();
        let mmu = &mut *guard;
        if !mmu.dirty.stop(region) {
            return Err(DirtyLogError::NotLogging { region });
        }
        let (first, pages) = self.regions()[region];
        let end = first.raw() + pages;
        let mut g = first.raw();
        while g < end {
            let chunk_end = ((g / BLOCK_PAGES) + 1) * BLOCK_PAGES;
            if let Some(base) = block_backing(&backing, Gfn::new(g)) {
                let start = g & !(BLOCK_PAGES - 1);
                if !mmu.inval.overlaps(start, chunk_end) {
                    let (ipa, len) = gfn_ipa(Gfn::new(start), BLOCK_PAGES);
                    let attrs = LeafAttrs::normal(S2Perms::RWX);
                    mmu.s2
                        .map(
                            &mut self.table_alloc(),
                            ipa,
                            base.base(),
                            len,
                            attrs,
                            MapFlags::BLOCKS,
                        )
                        .map_err(|_| DirtyLogError::OutOfMemory)?;
                }
                g = chunk_end;
                continue;
            }
            // No block can cover a chunk the backing does not allow one in: pages only.
            for p in g..chunk_end.min(end) {
                let gfn = Gfn::new(p);
                if backing.get(gfn).writable() {
                    let (ipa, len) = gfn_ipa(gfn, 1);
                    mmu.s2
                        .update_leaves(&mut self.table_alloc(), ipa, len, |a| {
                            a.with_perms(a.perms.union(S2Perms::W))
                        })
                        .map_err(|_| DirtyLogError::OutOfMemory)?;
                }
            }
            g = chunk_end;
        }
        drop(f);
        Ok(())
    }
}
