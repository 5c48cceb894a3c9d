//! The stage-2 fault path, in the seed's order:
//!
//! 1. read the VM's invalidate sequence;
//! 2. look up (or allocate) the frame backing the page under the ownership lock and take a
//!    reference ("gup"); 3. drop the reference and the ownership lock;
//! 4. take the VM's MMU lock; 5. if an invalidation ran since step 1 (the sequence moved) or is
//!    running over the range to map, or the table cache holds fewer frames than one fault may
//!    take (other faults' installs drained it since their lookups), unlock and report
//!    [`FaultOutcome::Retry`] (the vCPU re-runs the access and faults again); if another CPU
//!    already installed what this fault wanted, drop this CPU's stale stricter TLB entry and
//!    report the mapping;
//! 6. if the access is a write in a logged region, set the page's dirty bit;
//! 7. install the entry: writable only for write faults while logging, otherwise writable if the
//!    guest may write the page; a 2 MiB block when backing and alignment allow and the region is
//!    not logged; 8. unlock.
//!
//! Steps 1-3 are [`Vm::fault_lookup`] and 4-8 [`Vm::fault_install`], so tests can run an
//! invalidation between them, as another CPU could.
//!
//! # Invariants (numbers from `docs/design.md`)
//! - I1: the frame installed is the one the guest map held when the sequence was read; step 5
//!   guarantees no invalidation changed it since (every change that takes a frame away runs one).
//! - I3: step 6 comes before step 7.
//!
//! Nothing is allocated under the MMU lock: table frames come from the VM's cache, refilled in
//! step 2.

use core::fmt;
use core::sync::atomic::Ordering;

use crate::sync::Mutex;

use super::{BLOCK_PAGES, FAULT_TABLES_MAX, Vm, block_backing, gfn_ipa};
use crate::mm::addr::{Gfn, Ipa, PAGE_SIZE, Pa, Pfn};
use crate::mm::bugs::bug;
use crate::mm::descriptor::{LeafAttrs, S2Perms};
use crate::mm::ownership::{FrameData, FrameTable, GuestPage, OwnershipError};
use crate::mm::phys::PhysMem;
use crate::mm::stage2::{MapFlags, Stage2Error};
use crate::mm::tlb::Tlb;

/// The kind of guest access that faulted.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Access {
    Read,
    Write,
}

/// What the fault handler did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FaultOutcome {
    /// A translation for the access is installed (or already was): re-run the access.
    Mapped { pa: Pa, block: bool, writable: bool },
    /// An invalidation raced with the fault: re-run the access, which faults again.
    Retry,
    /// The IPA is in no memory region: MMIO emulation, or an abort injected into the guest.
    OutsideGuestMemory,
    /// The guest may not make this access to this page (a write to a read-only shared page).
    PermissionDenied,
}

/// Why the fault handler could not proceed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FaultError {
    /// No frame was left to back the page or to hold a stage-2 table.
    OutOfMemory { ipa: Ipa },
    /// Stage 2 refused the mapping (a bug in the caller's configuration, e.g. PA range).
    Stage2(Stage2Error),
}

impl fmt::Display for FaultError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfMemory { ipa } => {
                write!(
                    f,
                    "cannot handle the fault at IPA {ipa}: no free frame is left"
                )
            }
            Self::Stage2(e) => write!(f, "cannot map the faulting page: {e}"),
        }
    }
}

/// What steps 1-3 found, carried to steps 4-8.
#[derive(Clone, Copy, Debug)]
pub struct Lookup {
    gfn: Gfn,
    access: Access,
    seq: u64,
    page: GuestPage,
    /// The first frame of a block that could map the aligned 2 MiB around the page.
    block: Option<Pfn>,
}

impl<M: PhysMem, T: Tlb> Vm<M, T> {
    /// Handles a stage-2 fault at `ipa`: steps 1-8 of the module docs.
    ///
    /// # Errors
    /// [`FaultError::OutOfMemory`] if the page has no backing and no frame is free, or no table
    /// frame can be reserved.
    pub fn handle_fault(
        &self,
        frames: &Mutex<FrameTable>,
        data: &mut dyn FrameData,
        ipa: Ipa,
        access: Access,
    ) -> Result<FaultOutcome, FaultError> {
        match self.fault_lookup(frames, data, ipa, access)? {
            Ok(lookup) => self.fault_install(lookup),
            Err(outcome) => Ok(outcome),
        }
    }

    /// Steps 1-3: read the sequence, find or allocate the backing frame, take and drop a
    /// reference, refill the table cache. `Err(outcome)` when the fault ends here.
    ///
    /// # Errors
    /// As [`Vm::handle_fault`].
    pub fn fault_lookup(
        &self,
        frames: &Mutex<FrameTable>,
        data: &mut dyn FrameData,
        ipa: Ipa,
        access: Access,
    ) -> Result<Result<Lookup, FaultOutcome>, FaultError> {
        let oom = |_: OwnershipError| FaultError::OutOfMemory { ipa };
        let gfn = Gfn::containing(ipa);
        // Acquire pairs with the notifier's bump: everything the invalidation changed in the
        // guest map is visible to the lookup below if the sequence still matches later.
        let seq = self.seq().load(Ordering::Acquire);
        let mut f = frames.lock();
        let mut backing = self.backing.lock();
        if backing.locate(gfn).is_none() {
            return Ok(Err(FaultOutcome::OutsideGuestMemory));
        }
        let mut page = backing.get(gfn);
        if page == GuestPage::NoPage {
            page = GuestPage::Owned(f.populate(&mut backing, gfn, data).map_err(oom)?);
        }
        if access == Access::Write && !page.writable() {
            return Ok(Err(FaultOutcome::PermissionDenied));
        }
        // gup + put_page: the reference only pins the frame for the lookup itself; what keeps
        // the mapping coherent afterwards is the sequence check under the MMU lock.
        f.get_page(&backing, gfn).expect("backed page");
        f.put_page(&backing, gfn).expect("reference just taken");
        // Logged pages are mapped page by page, so skip the block check (a scan of 512 guest
        // pages) for them. The flag is read without the MMU lock: `fault_install` decides
        // under the lock, and only ever narrows a block to a page.
        let block = if self.dirty_view.logged_bit(gfn).is_some() {
            None
        } else {
            block_backing(&backing, gfn)
        };
        drop(backing);
        if self.tables_low() {
            self.refill_tables(&mut f, data).map_err(oom)?;
        }
        Ok(Ok(Lookup {
            gfn,
            access,
            seq,
            page,
            block,
        }))
    }

    /// Steps 4-8: under the MMU lock, retry if an invalidation raced, mark dirty, install.
    ///
    /// Each lookup tops the table cache up, but several lookups may run before any install
    /// (many vCPUs faulting at once, e.g. writes right after dirty logging starts, each
    /// splitting a block), and their installs then share one refill. An install that finds
    /// fewer frames than one fault may take retries instead: the retried fault's lookup
    /// refills from the pool, so a fault fails only when the pool itself is empty.
    ///
    /// # Errors
    /// [`FaultError::OutOfMemory`] only if the map still runs out (a bug: the check above
    /// covers every map one fault makes).
    pub fn fault_install(&self, l: Lookup) -> Result<FaultOutcome, FaultError> {
        let ipa = l.gfn.base();
        let mut guard = self.mmu.lock();
        let mmu = &mut *guard;
        let logging = mmu.dirty.is_logging(l.gfn);
        let block = if logging { None } else { l.block };
        let (first, pages, pa) = match block {
            Some(base) => (
                Gfn::new(l.gfn.raw() & !(BLOCK_PAGES - 1)),
                BLOCK_PAGES,
                base,
            ),
            None => (l.gfn, 1, l.page.pfn().expect("looked-up page is backed")),
        };
        let raced = self.seq().load(Ordering::Acquire) != l.seq
            || mmu.inval.overlaps(first.raw(), first.raw() + pages);
        if raced && !bug!(skip_retry_check) {
            return Ok(FaultOutcome::Retry);
        }
        if self.cached_tables() < FAULT_TABLES_MAX && !bug!(no_table_reserve_retry) {
            return Ok(FaultOutcome::Retry);
        }
        let write = l.access == Access::Write;
        let writable = if logging {
            (write || bug!(writable_read_fault)) && l.page.writable()
        } else {
            l.page.writable()
        };
        let want_pa = Pa::new(l.page.pfn().expect("backed").base().raw());
        // Another CPU may have resolved the same fault while this one waited for the lock.
        if let Some(t) = mmu.s2.translate(ipa) {
            let ok = if write {
                t.leaf.attrs.perms.writable()
            } else {
                t.leaf.attrs.perms.readable()
            };
            if ok && t.pa == want_pa {
                // The CPU faulted on a stale, stricter TLB entry (permissions are relaxed
                // without maintenance, see `Change::Relax`): drop it so the retry walks.
                let vmid = mmu.s2.vmid();
                mmu.s2.tlb_mut().invalidate_ipa(vmid, ipa, t.leaf.level);
                return Ok(FaultOutcome::Mapped {
                    pa: t.pa,
                    block: t.leaf.size() > PAGE_SIZE,
                    writable: t.leaf.attrs.perms.writable(),
                });
            }
        }
        let dirty_after = bug!(dirty_after_install);
        if write && logging && !dirty_after {
            mmu.dirty.mark(l.gfn);
        }
        let perms = if writable { S2Perms::RWX } else { S2Perms::RX };
        let flags = if block.is_some() {
            MapFlags::BLOCKS
        } else {
            MapFlags::PAGES_ONLY
        };
        let (map_ipa, len) = gfn_ipa(first, pages);
        mmu.s2
            .map(
                &mut self.table_alloc(),
                map_ipa,
                pa.base(),
                len,
                LeafAttrs::normal(perms),
                flags,
            )
            .map_err(|e| match e {
                Stage2Error::OutOfTableMemory { .. } => FaultError::OutOfMemory { ipa },
                e => FaultError::Stage2(e),
            })?;
        if write && logging && dirty_after {
            mmu.dirty.mark(l.gfn);
        }
        Ok(FaultOutcome::Mapped {
            pa: want_pa,
            block: block.is_some(),
            writable,
        })
    }
}
