//! The MMU-notifier side of a VM, which ownership transitions call around every change that
//! takes access away: `begin` marks the range in progress, bumps the invalidate sequence,
//! marks the pages dirty and removes their stage-2 entries (with the TLB invalidation
//! completed); `end` bumps the sequence again and closes the range.

use core::sync::atomic::Ordering;

use super::{Invalidations, Vm, gfn_ipa};
use crate::mm::addr::Gfn;
use crate::mm::bugs::bug;
use crate::mm::ownership::Invalidate;
use crate::mm::phys::PhysMem;
use crate::mm::tlb::Tlb;

/// The MMU-notifier side of a VM, handed to ownership transitions.
pub struct Notifier<'a, M: PhysMem, T: Tlb> {
    pub(super) vm: &'a Vm<M, T>,
}

impl<M: PhysMem, T: Tlb> Invalidate for Notifier<'_, M, T> {
    fn begin(&mut self, gfn: Gfn, pages: u64) {
        let vm = self.vm;
        let mut mmu = vm.mmu.lock();
        let inv = &mut mmu.inval;
        let (start, end) = (gfn.raw(), gfn.raw() + pages);
        if inv.active == 0 {
            (inv.start, inv.end) = (start, end);
        } else {
            (inv.start, inv.end) = (inv.start.min(start), inv.end.max(end));
        }
        inv.active += 1;
        vm.seq.fetch_add(1, Ordering::AcqRel);
        // The primary side is about to change these pages (reclaim zeroes them): a snapshot
        // must copy them again.
        for g in start..end {
            mmu.dirty.mark(Gfn::new(g));
        }
        if !bug!(skip_invalidate_unmap) {
            let (ipa, len) = gfn_ipa(gfn, pages);
            mmu.s2
                .unmap(&mut vm.table_alloc(), ipa, len)
                .expect("table frames are reserved before an invalidation");
        }
    }

    fn end(&mut self, _gfn: Gfn, _pages: u64) {
        let mut mmu = self.vm.mmu.lock();
        self.vm.seq.fetch_add(1, Ordering::AcqRel);
        debug_assert!(mmu.inval.active > 0, "invalidate end without begin");
        mmu.inval.active -= 1;
        if mmu.inval.active == 0 {
            mmu.inval = Invalidations::default();
        }
    }
}
