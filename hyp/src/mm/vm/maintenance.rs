//! Stage-2 maintenance on one VM that keeps its guest map unchanged: pre-faulting, unmapping,
//! write-protecting, splitting and collapsing ranges.

use crate::sync::Mutex;

use super::{BLOCK_PAGES, MmuError, TABLE_RESERVE, Vm, block_backing, gfn_ipa};
use crate::mm::addr::{Gfn, Ipa, PAGE_SHIFT};
use crate::mm::descriptor::{LeafAttrs, Level, S2Perms};
use crate::mm::ownership::{FrameData, FrameTable};
use crate::mm::phys::PhysMem;
use crate::mm::stage2::MapFlags;
use crate::mm::tlb::Tlb;

impl<M: PhysMem, T: Tlb> Vm<M, T> {
    /// Maps every backed page of `[ipa, ipa + len)` (pre-faulting): 2 MiB blocks where the
    /// backing and alignment allow and the region is not logged; read-only in logged regions;
    /// ranges being invalidated are skipped.
    ///
    /// # Errors
    /// `BadRange`, `NotGuestMemory`, `OutOfMemory`.
    pub fn map_range(
        &self,
        frames: &Mutex<FrameTable>,
        data: &mut dyn FrameData,
        ipa: Ipa,
        len: u64,
    ) -> Result<(), MmuError> {
        let (_, gfn, n) = self.region_range(ipa, len)?;
        let f = &mut *frames.lock();
        let backing = self.backing.lock();
        let mut mmu = self.mmu.lock();
        let mut g = gfn.raw();
        while g < gfn.raw() + n {
            self.refill_tables(f, data)
                .map_err(|_| MmuError::OutOfMemory)?;
            let page = backing.get(Gfn::new(g));
            let Some(pfn) = page.pfn() else {
                g += 1;
                continue;
            };
            let logging = mmu.dirty.is_logging(Gfn::new(g));
            let block = if logging {
                None
            } else {
                block_backing(&backing, Gfn::new(g))
            };
            let (start, pages, pa) = match block {
                Some(base) => (g & !(BLOCK_PAGES - 1), BLOCK_PAGES, base),
                None => (g, 1, pfn),
            };
            if !mmu.inval.overlaps(start, start + pages) {
                let perms = if page.writable() && !logging {
                    S2Perms::RWX
                } else {
                    S2Perms::RX
                };
                let flags = if block.is_some() {
                    MapFlags::BLOCKS
                } else {
                    MapFlags::PAGES_ONLY
                };
                let (ipa, len) = gfn_ipa(Gfn::new(start), pages);
                mmu.s2.map(
                    &mut self.table_alloc(),
                    ipa,
                    pa.base(),
                    len,
                    LeafAttrs::normal(perms),
                    flags,
                )?;
            }
            g = start + pages;
        }
        Ok(())
    }

    /// Removes the translations of `[ipa, ipa + len)` (they fault back in). Ownership is unchanged.
    ///
    /// # Errors
    /// `BadRange`, `NotGuestMemory`, `OutOfMemory` (splitting a block at an end).
    pub fn unmap_range(
        &self,
        frames: &Mutex<FrameTable>,
        data: &mut dyn FrameData,
        ipa: Ipa,
        len: u64,
    ) -> Result<(), MmuError> {
        self.region_range(ipa, len)?;
        self.refill_tables(&mut frames.lock(), data)
            .map_err(|_| MmuError::OutOfMemory)?;
        let mut mmu = self.mmu.lock();
        Ok(mmu.s2.unmap(&mut self.table_alloc(), ipa, len)?)
    }

    /// Removes write permission from `[ipa, ipa + len)`.
    ///
    /// # Errors
    /// As [`Vm::unmap_range`].
    pub fn write_protect_range(
        &self,
        frames: &Mutex<FrameTable>,
        data: &mut dyn FrameData,
        ipa: Ipa,
        len: u64,
    ) -> Result<(), MmuError> {
        self.region_range(ipa, len)?;
        self.refill_tables(&mut frames.lock(), data)
            .map_err(|_| MmuError::OutOfMemory)?;
        let mut mmu = self.mmu.lock();
        Ok(mmu.s2.write_protect(&mut self.table_alloc(), ipa, len)?)
    }

    /// Splits blocks in `[ipa, ipa + len)` into 4 KiB pages.
    ///
    /// # Errors
    /// As [`Vm::unmap_range`].
    pub fn split_range(
        &self,
        frames: &Mutex<FrameTable>,
        data: &mut dyn FrameData,
        ipa: Ipa,
        len: u64,
    ) -> Result<(), MmuError> {
        self.region_range(ipa, len)?;
        let mut f = frames.lock();
        let pages = len >> PAGE_SHIFT;
        // One table per 2 MiB block split, plus one per 1 GiB block.
        let need = (pages.div_ceil(BLOCK_PAGES) + 2) as usize;
        {
            let mut cache = self.tables.lock();
            while cache.len() < need + TABLE_RESERVE {
                cache.push(f.hyp_alloc(data).map_err(|_| MmuError::OutOfMemory)?.base());
            }
        }
        drop(f);
        let mut mmu = self.mmu.lock();
        Ok(mmu.s2.split(&mut self.table_alloc(), ipa, len, Level::L3)?)
    }

    /// Collapses tables of uniform pages in `[ipa, ipa + len)` into blocks; logged regions are
    /// left alone (they are tracked per 4 KiB page). Returns how many tables went.
    ///
    /// # Errors
    /// `BadRange`, `NotGuestMemory`.
    pub fn collapse_range(&self, ipa: Ipa, len: u64) -> Result<usize, MmuError> {
        let (region, ..) = self.region_range(ipa, len)?;
        let mut mmu = self.mmu.lock();
        if mmu.dirty.region_logging(region) {
            return Ok(0);
        }
        Ok(mmu.s2.collapse(&mut self.table_alloc(), ipa, len)?)
    }
}
