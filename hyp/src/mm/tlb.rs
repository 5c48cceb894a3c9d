//! Stage-2 TLB maintenance as the core needs it: one trait method per architectural sequence.
//!
//! The aarch64 implementation (in `arch`) issues the instructions under the VM's VMID; the host
//! uses `sim::Machine`'s simulated per-CPU TLBs, or [`NoTlb`] for tables no CPU can walk.

use super::addr::{Ipa, Pa};
use super::descriptor::Level;
use super::stage2::config::Vmid;

/// TLB maintenance for stage-2 translations, broadcast to the inner-shareable domain.
///
/// **Every method returns only after the invalidation has completed** on all CPUs (that is what
/// the trailing `DSB ISH` gives): once it returns, no CPU holds or can use a translation the call
/// covers, so a removed table or unmapped frame may be reused (invariant I4).
pub trait Tlb {
    /// Drop every cached translation (any level, stage 2 and combined stage 1+2) of `ipa` for
    /// `vmid`. `level` is where the changed entry sat (usable as a TTL hint). Sequence:
    /// `DSB ISHST; TLBI IPAS2E1IS, ipa; DSB ISH; TLBI VMALLE1IS; DSB ISH; ISB`.
    /// The `DSB ISHST` orders the preceding entry store before the invalidation; the stage-1
    /// `VMALLE1IS` is needed because combined entries may be tagged by VA only.
    fn invalidate_ipa(&mut self, vmid: Vmid, ipa: Ipa, level: Level);

    /// Drop every stage-1 and stage-2 translation and walk-cache entry for `vmid`; required when
    /// a table entry is removed, since walk caches may hold it for any IPA below it. Sequence:
    /// `DSB ISHST; TLBI VMALLS12E1IS; DSB ISH; ISB`.
    fn invalidate_vmid_all(&mut self, vmid: Vmid);

    /// Stage 2 is about to hand table frame `table` back to its allocator: the invalidation
    /// that removed every walk through it has completed (I4). Nothing to do on hardware; a
    /// simulation checks here that no CPU's walk cache still holds the frame, since a table
    /// frame may next become a guest's data frame.
    fn table_retired(&mut self, _table: Pa) {}
}

impl<T: Tlb + ?Sized> Tlb for &mut T {
    fn invalidate_ipa(&mut self, vmid: Vmid, ipa: Ipa, level: Level) {
        (**self).invalidate_ipa(vmid, ipa, level)
    }
    fn invalidate_vmid_all(&mut self, vmid: Vmid) {
        (**self).invalidate_vmid_all(vmid)
    }
    fn table_retired(&mut self, table: Pa) {
        (**self).table_retired(table)
    }
}

/// For tables that no CPU has ever walked (not yet installed in VTTBR_EL2): nothing can be
/// cached, so there is nothing to invalidate. Also what the benchmarks use ("TLBI off").
#[derive(Clone, Copy, Debug, Default)]
pub struct NoTlb;

impl Tlb for NoTlb {
    fn invalidate_ipa(&mut self, _vmid: Vmid, _ipa: Ipa, _level: Level) {}
    fn invalidate_vmid_all(&mut self, _vmid: Vmid) {}
}
