//! The ownership transitions between the hypervisor and the guests (the table in the module
//! docs): each validates both sides before it writes anything.

use super::{
    FrameData, FrameState, FrameTable, GuestMap, GuestPage, Invalidate, MAX_PINS, Op, Owner,
    OwnershipError, expect_movable, gfns,
};
use crate::mm::addr::{Gfn, Pfn};
use crate::mm::bugs::bug;

impl FrameTable {
    /// Gives a free frame to `guest` at `gfn` (the fault path's "allocate the backing frame").
    ///
    /// # Errors
    /// `NotGuestMemory`, `WrongGuestState` (already backed), `OutOfMemory`.
    pub fn populate(
        &mut self,
        guest: &mut GuestMap,
        gfn: Gfn,
        data: &mut dyn FrameData,
    ) -> Result<Pfn, OwnershipError> {
        let op = Op::Populate;
        guest.expect_pages(op, gfn, 1, |p| p == GuestPage::NoPage)?;
        let pfn = self.take_free(op, Owner::Vm(guest.vm), data)?;
        guest.set(gfn, GuestPage::Owned(pfn));
        Ok(pfn)
    }

    /// Backs the `n` unbacked pages of `guest` from `gfn` (`n` a power of two, `gfn` aligned
    /// to it, all in one region) with one fresh `n`-aligned run of frames, so that one block
    /// entry can map them: a first touch of a whole block of guest RAM. All or nothing in one
    /// transition under the lock the caller holds: if any page is already backed (another vCPU
    /// populated it), nothing is allocated.
    ///
    /// # Errors
    /// `BadRange` (not a power of two or not aligned), `NotGuestMemory` (not inside one
    /// region), `WrongGuestState` (a page is backed), `OutOfMemory` (no free aligned run).
    pub fn populate_run(
        &mut self,
        guest: &mut GuestMap,
        gfn: Gfn,
        n: u64,
        data: &mut dyn FrameData,
    ) -> Result<Pfn, OwnershipError> {
        let op = Op::Populate;
        if !n.is_power_of_two() || !gfn.raw().is_multiple_of(n) {
            return Err(OwnershipError::BadRange { op });
        }
        if !guest.contains(gfn, n) {
            return Err(OwnershipError::NotGuestMemory { vm: guest.vm, gfn });
        }
        guest.expect_pages(op, gfn, n, |p| p == GuestPage::NoPage)?;
        let run = self.hyp_alloc_run(n, data).map_err(|e| match e {
            OwnershipError::OutOfMemory { .. } => OwnershipError::OutOfMemory { op },
            e => e,
        })?;
        let to = FrameState::Owned(Owner::Vm(guest.vm));
        for i in 0..n {
            let p = Pfn::new(run.raw() + i);
            self.set_state(p, to);
            guest.set(Gfn::new(gfn.raw() + i), GuestPage::Owned(p));
        }
        Ok(run)
    }

    /// Moves `[pfn, pfn + n)` from the hypervisor to `guest` at `[gfn, gfn + n)`.
    ///
    /// # Errors
    /// `BadRange`, `NotRam`, `NotGuestMemory`, `WrongFrameState`, `WrongGuestState`, `Pinned`,
    /// `Busy`.
    pub fn donate_to_guest(
        &mut self,
        guest: &mut GuestMap,
        pfn: Pfn,
        gfn: Gfn,
        n: u64,
    ) -> Result<(), OwnershipError> {
        let op = Op::Donate;
        if !bug!(skip_owner_check) {
            self.expect_frames(op, pfn, n, FrameState::Owned(Owner::Hyp), true)?;
        }
        guest.expect_pages(op, gfn, n, |p| p == GuestPage::NoPage)?;
        let to = FrameState::Owned(Owner::Vm(guest.vm));
        for i in 0..n {
            let p = Pfn::new(pfn.raw() + i);
            self.set_state(p, to);
            guest.set(Gfn::new(gfn.raw() + i), GuestPage::Owned(p));
        }
        Ok(())
    }

    /// Lets `guest` access hypervisor frames `[pfn, pfn + n)` at `[gfn, gfn + n)`.
    ///
    /// # Errors
    /// As [`FrameTable::donate_to_guest`].
    pub fn share_with_guest(
        &mut self,
        guest: &mut GuestMap,
        pfn: Pfn,
        gfn: Gfn,
        n: u64,
        writable: bool,
    ) -> Result<(), OwnershipError> {
        let op = Op::Share;
        if !bug!(skip_owner_check) {
            self.expect_frames(op, pfn, n, FrameState::Owned(Owner::Hyp), true)?;
        }
        guest.expect_pages(op, gfn, n, |p| p == GuestPage::NoPage)?;
        let to = FrameState::Shared {
            owner: Owner::Hyp,
            borrower: Owner::Vm(guest.vm),
        };
        for i in 0..n {
            let p = Pfn::new(pfn.raw() + i);
            self.set_state(p, to);
            guest.set(
                Gfn::new(gfn.raw() + i),
                GuestPage::Borrowed { pfn: p, writable },
            );
        }
        Ok(())
    }

    /// Takes back from `guest` the frames it borrows at `[gfn, gfn + n)`; they return to the
    /// hypervisor alone once `inv` has removed the guest's translations.
    ///
    /// # Errors
    /// `BadRange`, `NotGuestMemory`, `WrongGuestState` (not borrowed), `Pinned`, `Busy`.
    pub fn unshare_from_guest(
        &mut self,
        guest: &mut GuestMap,
        gfn: Gfn,
        n: u64,
        inv: &mut dyn Invalidate,
    ) -> Result<(), OwnershipError> {
        let op = Op::Unshare;
        guest.expect_pages(op, gfn, n, |p| matches!(p, GuestPage::Borrowed { .. }))?;
        for g in gfns(gfn, n) {
            let pfn = guest.get(g).pfn().expect("checked borrowed");
            let r = self.records[self.idx(pfn)?];
            debug_assert_eq!(
                r.state(),
                FrameState::Shared {
                    owner: Owner::Hyp,
                    borrower: Owner::Vm(guest.vm)
                },
                "I1: guest map and frame table disagree on {pfn:?}"
            );
            expect_movable(op, pfn, r, true)?;
        }
        inv.begin(gfn, n);
        for g in gfns(gfn, n) {
            let pfn = guest.get(g).pfn().expect("checked borrowed");
            self.set_state(pfn, FrameState::Owned(Owner::Hyp));
            guest.set(g, GuestPage::NoPage);
        }
        inv.end(gfn, n);
        Ok(())
    }

    /// Takes `[gfn, gfn + n)` away from `guest` (every page must be owned and backed); the frames
    /// are zeroed and freed after `inv` removed every translation to them.
    ///
    /// # Errors
    /// `BadRange`, `NotGuestMemory`, `WrongGuestState` (not owned), `Pinned`, `Busy`.
    pub fn reclaim(
        &mut self,
        guest: &mut GuestMap,
        gfn: Gfn,
        n: u64,
        inv: &mut dyn Invalidate,
        data: &mut dyn FrameData,
    ) -> Result<(), OwnershipError> {
        let op = Op::Reclaim;
        guest.expect_pages(op, gfn, n, |p| matches!(p, GuestPage::Owned(_)))?;
        for g in gfns(gfn, n) {
            let pfn = guest.get(g).pfn().expect("checked owned");
            let r = self.records[self.idx(pfn)?];
            debug_assert_eq!(
                r.state(),
                FrameState::Owned(Owner::Vm(guest.vm)),
                "I1 at {pfn:?}"
            );
            expect_movable(op, pfn, r, true)?;
        }
        inv.begin(gfn, n);
        for g in gfns(gfn, n) {
            let pfn = guest.get(g).pfn().expect("checked owned");
            guest.set(g, GuestPage::NoPage);
            self.release(pfn, data);
        }
        inv.end(gfn, n);
        Ok(())
    }

    /// Moves guest page `gfn` to a fresh frame holding a copy of its contents; the old frame is
    /// zeroed and freed. Returns the new frame.
    ///
    /// # Errors
    /// `NotGuestMemory`, `WrongGuestState` (not owned), `Pinned`, `Busy`, `OutOfMemory`.
    pub fn migrate(
        &mut self,
        guest: &mut GuestMap,
        gfn: Gfn,
        inv: &mut dyn Invalidate,
        data: &mut dyn FrameData,
    ) -> Result<Pfn, OwnershipError> {
        let op = Op::Migrate;
        guest.expect_pages(op, gfn, 1, |p| matches!(p, GuestPage::Owned(_)))?;
        let old = guest.get(gfn).pfn().expect("checked owned");
        let r = self.records[self.idx(old)?];
        debug_assert_eq!(
            r.state(),
            FrameState::Owned(Owner::Vm(guest.vm)),
            "I1 at {old:?}"
        );
        expect_movable(op, old, r, true)?;
        self.peek_free(op)?;
        inv.begin(gfn, 1);
        let new = self
            .take_free(op, Owner::Vm(guest.vm), data)
            .expect("peeked a free frame");
        data.copy_frame(old, new);
        guest.set(gfn, GuestPage::Owned(new));
        self.release(old, data);
        inv.end(gfn, 1);
        Ok(new)
    }

    /// Adds a long-term pin to the frame backing `gfn`: until unpinned it cannot move or be freed.
    ///
    /// # Errors
    /// `NotGuestMemory`, `WrongGuestState` (not backed), `CountOverflow`.
    pub fn pin(&mut self, guest: &GuestMap, gfn: Gfn) -> Result<Pfn, OwnershipError> {
        self.adjust(guest, gfn, Op::Pin, 1)
    }

    /// Drops a long-term pin.
    ///
    /// # Errors
    /// `NotGuestMemory`, `WrongGuestState` (not backed), `CountUnderflow`.
    pub fn unpin(&mut self, guest: &GuestMap, gfn: Gfn) -> Result<Pfn, OwnershipError> {
        self.adjust(guest, gfn, Op::Unpin, -1)
    }

    /// `gup`: a short-term reference to the frame backing `gfn`, which must be dropped with
    /// [`FrameTable::put_page`].
    ///
    /// # Errors
    /// `NotGuestMemory`, `WrongGuestState` (not backed), `CountOverflow`.
    pub fn get_page(&mut self, guest: &GuestMap, gfn: Gfn) -> Result<Pfn, OwnershipError> {
        self.adjust(guest, gfn, Op::GetPage, 1)
    }

    /// Drops a reference taken by [`FrameTable::get_page`].
    ///
    /// # Errors
    /// `NotGuestMemory`, `WrongGuestState` (not backed), `CountUnderflow`.
    pub fn put_page(&mut self, guest: &GuestMap, gfn: Gfn) -> Result<Pfn, OwnershipError> {
        self.adjust(guest, gfn, Op::PutPage, -1)
    }

    pub(super) fn adjust(
        &mut self,
        guest: &GuestMap,
        gfn: Gfn,
        op: Op,
        d: i32,
    ) -> Result<Pfn, OwnershipError> {
        guest.expect_pages(op, gfn, 1, |p| p != GuestPage::NoPage)?;
        let pfn = guest.get(gfn).pfn().expect("checked backed");
        let i = self.idx(pfn)?;
        let r = self.records[i];
        debug_assert!(r.state().reachable_by(guest.vm), "I1 at {pfn:?}");
        let pins = matches!(op, Op::Pin | Op::Unpin);
        let cur = if pins { r.pins() } else { r.refs() };
        let new = match (d > 0, cur) {
            (true, MAX_PINS) => return Err(OwnershipError::CountOverflow { op, pfn }),
            (false, 0) => return Err(OwnershipError::CountUnderflow { op, pfn }),
            (true, c) => c + 1,
            (false, c) => c - 1,
        };
        self.records[i] = if pins {
            r.with_pins(new)
        } else {
            r.with_refs(new)
        };
        Ok(pfn)
    }
}
