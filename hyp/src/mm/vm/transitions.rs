//! Ownership transitions on one VM: the frame table changes under the ownership lock, and
//! whatever takes access away runs the VM's notifier first.

use crate::sync::Mutex;

use super::{BLOCK_PAGES, Vm};
use crate::mm::addr::{Gfn, Ipa, PAGE_SHIFT, PAGE_SIZE, Pa, Pfn};
use crate::mm::ownership::{FrameData, FrameTable, GuestPage, Op, OwnershipError};
use crate::mm::phys::PhysMem;
use crate::mm::tlb::Tlb;

impl<M: PhysMem, T: Tlb> Vm<M, T> {
    /// Moves hypervisor frames `[pa, pa + len)` to this VM at `[ipa, ipa + len)`.
    ///
    /// # Errors
    /// See [`FrameTable::donate_to_guest`].
    pub fn donate(
        &self,
        frames: &Mutex<FrameTable>,
        pa: Pa,
        ipa: Ipa,
        len: u64,
    ) -> Result<(), OwnershipError> {
        let mut f = frames.lock();
        let n = pages_of(Op::Donate, ipa, len)?;
        f.donate_to_guest(
            &mut self.backing.lock(),
            Pfn::containing(pa),
            Gfn::containing(ipa),
            n,
        )
    }

    /// Backs the untouched 2 MiB block of guest memory around `ipa` with one aligned run of
    /// frames, so the fault path maps it with one block entry; returns the run's first frame.
    ///
    /// # Errors
    /// See [`FrameTable::populate_run`]: the block is not wholly inside one region, a page of
    /// it is backed already, or no free aligned run is left (the fault path then populates
    /// the single page).
    pub fn populate_block(
        &self,
        frames: &Mutex<FrameTable>,
        data: &mut dyn FrameData,
        ipa: Ipa,
    ) -> Result<Pfn, OwnershipError> {
        let page = Gfn::containing(ipa);
        // Most faults land on a page that is backed already (a write while dirty logging, a
        // migrated page): no block to populate, and no need for the ownership lock to say so.
        let found = self.backing.lock().get(page);
        if found != GuestPage::NoPage {
            return Err(OwnershipError::WrongGuestState {
                op: Op::Populate,
                vm: self.id(),
                gfn: page,
                found,
            });
        }
        let gfn = Gfn::new(page.raw() & !(BLOCK_PAGES - 1));
        let mut f = frames.lock();
        f.populate_run(&mut self.backing.lock(), gfn, BLOCK_PAGES, data)
    }

    /// Lets this VM access hypervisor frames `[pa, pa + len)` at `[ipa, ipa + len)`.
    ///
    /// # Errors
    /// See [`FrameTable::share_with_guest`].
    pub fn share(
        &self,
        frames: &Mutex<FrameTable>,
        pa: Pa,
        ipa: Ipa,
        len: u64,
        writable: bool,
    ) -> Result<(), OwnershipError> {
        let mut f = frames.lock();
        let n = pages_of(Op::Share, ipa, len)?;
        let g = Gfn::containing(ipa);
        f.share_with_guest(
            &mut self.backing.lock(),
            Pfn::containing(pa),
            g,
            n,
            writable,
        )
    }

    /// Takes back the shared frames at `[ipa, ipa + len)`.
    ///
    /// # Errors
    /// See [`FrameTable::unshare_from_guest`]; `OutOfMemory` if no table frame can be reserved.
    pub fn unshare(
        &self,
        frames: &Mutex<FrameTable>,
        data: &mut dyn FrameData,
        ipa: Ipa,
        len: u64,
    ) -> Result<(), OwnershipError> {
        let mut f = frames.lock();
        let n = pages_of(Op::Unshare, ipa, len)?;
        self.refill_tables(&mut f, data)?;
        let g = Gfn::containing(ipa);
        f.unshare_from_guest(&mut self.backing.lock(), g, n, &mut self.notifier())
    }

    /// Frees the pages at `[ipa, ipa + len)` (zeroed; the guest sees zero pages if it touches
    /// them again).
    ///
    /// # Errors
    /// See [`FrameTable::reclaim`]; `OutOfMemory` if no table frame can be reserved.
    pub fn reclaim(
        &self,
        frames: &Mutex<FrameTable>,
        data: &mut dyn FrameData,
        ipa: Ipa,
        len: u64,
    ) -> Result<(), OwnershipError> {
        let mut f = frames.lock();
        let n = pages_of(Op::Reclaim, ipa, len)?;
        self.refill_tables(&mut f, data)?;
        let g = Gfn::containing(ipa);
        f.reclaim(&mut self.backing.lock(), g, n, &mut self.notifier(), data)
    }

    /// Moves the page at `ipa` to another frame; returns the new frame's address.
    ///
    /// # Errors
    /// See [`FrameTable::migrate`]; `OutOfMemory` if no table frame can be reserved.
    pub fn migrate(
        &self,
        frames: &Mutex<FrameTable>,
        data: &mut dyn FrameData,
        ipa: Ipa,
    ) -> Result<Pa, OwnershipError> {
        let mut f = frames.lock();
        self.refill_tables(&mut f, data)?;
        let g = Gfn::containing(ipa);
        f.migrate(&mut self.backing.lock(), g, &mut self.notifier(), data)
            .map(Pfn::base)
    }

    /// Pins the page at `ipa` (long-term, e.g. for DMA); returns its frame's address.
    ///
    /// # Errors
    /// See [`FrameTable::pin`].
    pub fn pin(&self, frames: &Mutex<FrameTable>, ipa: Ipa) -> Result<Pa, OwnershipError> {
        let mut f = frames.lock();
        f.pin(&self.backing.lock(), Gfn::containing(ipa))
            .map(Pfn::base)
    }

    /// Drops a pin taken by [`Vm::pin`].
    ///
    /// # Errors
    /// See [`FrameTable::unpin`].
    pub fn unpin(&self, frames: &Mutex<FrameTable>, ipa: Ipa) -> Result<Pa, OwnershipError> {
        let mut f = frames.lock();
        f.unpin(&self.backing.lock(), Gfn::containing(ipa))
            .map(Pfn::base)
    }
}

fn pages_of(op: Op, ipa: Ipa, len: u64) -> Result<u64, OwnershipError> {
    if len == 0 || !ipa.is_aligned(PAGE_SIZE) || !len.is_multiple_of(PAGE_SIZE) {
        return Err(OwnershipError::BadRange { op });
    }
    Ok(len >> PAGE_SHIFT)
}
