//! Per-CPU simulated TLBs: each caches leaf translations (tagged by VMID, with the block size
//! they were walked at and the table frames the walk read) until an invalidation that matches
//! them completes or capacity evicts them. Nothing else removes an entry: tables changing under
//! a cached translation do not, exactly like hardware.

use alloc::vec::Vec;

use crate::mm::addr::{Ipa, Pfn};
use crate::mm::stage2::Vmid;

use super::walk::WalkHit;

/// One cached translation.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TlbEntry {
    pub vmid: Vmid,
    pub hit: WalkHit,
}

impl TlbEntry {
    pub fn covers(&self, vmid: Vmid, ipa: Ipa) -> bool {
        self.vmid == vmid
            && ipa >= self.hit.ipa
            && ipa.raw() - self.hit.ipa.raw() < self.hit.level.entry_size()
    }
    /// Whether the translation lands in `pfn` or was walked through table frame `pfn`.
    pub fn references(&self, pfn: Pfn) -> bool {
        let out = Pfn::containing(self.hit.pa);
        let frames = self.hit.level.entry_size() >> crate::mm::addr::PAGE_SHIFT;
        (pfn.raw() >= out.raw() && pfn.raw() - out.raw() < frames)
            || self.hit.path[..self.hit.path_len]
                .iter()
                .any(|t| Pfn::containing(*t) == pfn)
    }
}

/// The TLBs of all simulated CPUs.
#[derive(Debug)]
pub struct SimTlb {
    cpus: Vec<Vec<TlbEntry>>,
    capacity: usize,
}

impl SimTlb {
    /// `cpus` TLBs of `capacity` entries each (oldest evicted first).
    pub fn new(cpus: usize, capacity: usize) -> Self {
        assert!(cpus > 0 && capacity > 0);
        Self {
            cpus: (0..cpus).map(|_| Vec::new()).collect(),
            capacity,
        }
    }
    pub fn cpus(&self) -> usize {
        self.cpus.len()
    }
    /// The cached translation CPU `cpu` would use for `ipa`, if any.
    pub fn lookup(&self, cpu: usize, vmid: Vmid, ipa: Ipa) -> Option<TlbEntry> {
        self.cpus[cpu]
            .iter()
            .rev()
            .find(|e| e.covers(vmid, ipa))
            .copied()
    }
    /// Cache `hit` on `cpu` (replacing an entry for the same leaf).
    pub fn insert(&mut self, cpu: usize, vmid: Vmid, hit: WalkHit) {
        let tlb = &mut self.cpus[cpu];
        tlb.retain(|e| !(e.vmid == vmid && e.hit.ipa == hit.ipa && e.hit.level == hit.level));
        if tlb.len() == self.capacity {
            tlb.remove(0);
        }
        tlb.push(TlbEntry { vmid, hit });
    }
    /// TLBI IPAS2E1IS + VMALLE1IS for `ipa`: every CPU drops entries translating it.
    pub fn invalidate_ipa(&mut self, vmid: Vmid, ipa: Ipa) {
        for tlb in &mut self.cpus {
            tlb.retain(|e| !e.covers(vmid, ipa));
        }
    }
    /// TLBI VMALLS12E1IS: every CPU drops every entry of `vmid`.
    pub fn invalidate_vmid(&mut self, vmid: Vmid) {
        for tlb in &mut self.cpus {
            tlb.retain(|e| e.vmid != vmid);
        }
    }
    /// Every cached entry, with its CPU.
    pub fn entries(&self) -> impl Iterator<Item = (usize, &TlbEntry)> {
        self.cpus
            .iter()
            .enumerate()
            .flat_map(|(c, t)| t.iter().map(move |e| (c, e)))
    }
    /// The first cached entry that maps into or was walked through `pfn`.
    pub fn referencing(&self, pfn: Pfn) -> Option<(usize, TlbEntry)> {
        self.entries()
            .find(|(_, e)| e.references(pfn))
            .map(|(c, e)| (c, *e))
    }
}
