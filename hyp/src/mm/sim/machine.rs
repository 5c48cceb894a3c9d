//! A simulated multi-CPU machine for one or more VMs' stage-2 tables: RAM, per-CPU TLBs, the
//! I2/I4 checker, and a hook that runs after every primitive step.
//!
//! Stage-2 code reaches the machine through handles ([`MachineMem`], [`MachineTlb`],
//! [`MachineAlloc`]) that share it (`Rc<RefCell<_>>`). Each handle call is one primitive step:
//! it is applied, checked, optionally traced, and then the installed hook runs with the whole
//! machine, so a fuzzer can let other CPUs fill their TLBs speculatively or access guest memory
//! (through their possibly stale TLBs) between any two steps of an operation.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::{RefCell, RefMut};

use crate::mm::addr::{Ipa, Pa, Pfn};
use crate::mm::descriptor::{Level, Pte};
use crate::mm::phys::{PhysMem, TableAlloc};
use crate::mm::stage2::{Stage2, Stage2Config, Stage2Error, Vmid};
use crate::mm::tlb::Tlb;

use super::alloc::SimFrameAlloc;
use super::checker::{BbmChecker, Slot, Violation};
use super::memory::SimMemory;
use super::tlb::SimTlb;
use super::walk::{WalkHit, hw_walk, hw_walk_with};

/// One primitive step, as passed to the hook and recorded in the trace.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Step {
    /// An entry store; `slot` is known when the table is linked into a registered VM's tree.
    WritePte {
        table: Pa,
        index: usize,
        old: Pte,
        new: Pte,
        slot: Option<Slot>,
    },
    ZeroTable {
        table: Pa,
    },
    /// A completed `invalidate_ipa`.
    InvalidateIpa {
        vmid: Vmid,
        ipa: Ipa,
        level: Level,
    },
    /// A completed `invalidate_vmid_all`.
    InvalidateVmid {
        vmid: Vmid,
    },
    AllocTable {
        table: Pa,
    },
    FreeTable {
        table: Pa,
    },
}

/// Why a simulated guest access did not complete.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum GuestFault {
    /// Stage-2 translation fault (no valid leaf) at `level`.
    Translation { level: Level },
    /// The translation used (cached or walked) does not allow the access.
    Permission { level: Level, from_tlb: bool },
    /// The VMID has no registered tables.
    UnknownVm,
}

/// Where a completed guest access went.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Access {
    pub pa: Pa,
    /// The translation came from the CPU's TLB (possibly stale) rather than a fresh walk.
    pub from_tlb: bool,
}

/// Called after every primitive step with the machine and the step.
pub type Hook = Box<dyn FnMut(&mut Machine, &Step)>;

struct VmTables {
    vmid: Vmid,
    root: Pa,
    config: Stage2Config,
}

/// The machine state. Reach it through [`SharedMachine`].
pub struct Machine {
    pub mem: SimMemory,
    pub tlb: SimTlb,
    pub checker: BbmChecker,
    /// Table frames for [`MachineAlloc`].
    pub tables: SimFrameAlloc,
    vms: Vec<VmTables>,
    violations: Vec<Violation>,
    panic_on_violation: bool,
    trace: Option<Vec<Step>>,
    hook: Option<Hook>,
    steps: u64,
    /// Table frames stored into since the last barrier (a publication barrier, or the DSB a
    /// TLB invalidation starts with), with what each changed entry held at that barrier:
    /// linking one of them is a violation (if `check_publication`), and a weakly ordered
    /// walker may still read the old values.
    unpublished: BTreeMap<u64, BTreeMap<u16, u64>>,
    /// Record a link to an unpublished table as a violation (on by default; the teeth test of
    /// the weak walker turns it off to show the walker alone catches the missing barrier).
    pub check_publication: bool,
    /// Weakly ordered walks: the state of the generator that picks, for each entry a CPU's
    /// walker reads, whether it sees a store not yet ordered by a barrier or the value from
    /// before it. `None`: every walker sees the latest store (sequential consistency).
    weak: Option<u64>,
}

impl core::fmt::Debug for Machine {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Machine")
            .field("mem", &self.mem)
            .field("tlb", &self.tlb)
            .field("steps", &self.steps)
            .field("violations", &self.violations)
            .finish_non_exhaustive()
    }
}

/// Layout of a simulated machine.
#[derive(Clone, Copy, Debug)]
pub struct MachineConfig {
    /// All of RAM (tables and guest data).
    pub ram: (Pa, u64),
    /// The part of RAM [`MachineAlloc`] hands out as table frames.
    pub table_frames: (Pa, u64),
    pub cpus: usize,
    /// TLB entries per CPU.
    pub tlb_capacity: usize,
}

impl Default for MachineConfig {
    /// 64 MiB of RAM at 1 GiB, the first 4 MiB for tables, 2 CPUs with 64-entry TLBs.
    fn default() -> Self {
        Self {
            ram: (Pa::new(0x4000_0000), 64 << 20),
            table_frames: (Pa::new(0x4000_0000), 4 << 20),
            cpus: 2,
            tlb_capacity: 64,
        }
    }
}

impl Machine {
    pub fn new(cfg: MachineConfig) -> Self {
        Self {
            mem: SimMemory::new(cfg.ram.0, cfg.ram.1),
            tlb: SimTlb::new(cfg.cpus, cfg.tlb_capacity),
            checker: BbmChecker::default(),
            tables: SimFrameAlloc::new(cfg.table_frames.0, cfg.table_frames.1),
            vms: Vec::new(),
            violations: Vec::new(),
            panic_on_violation: false,
            trace: None,
            hook: None,
            steps: 0,
            unpublished: BTreeMap::new(),
            check_publication: true,
            weak: None,
        }
    }

    /// Records a store of the 64-bit word at `pa` (which held `old`) not yet ordered before
    /// later stores.
    fn stored_into(&mut self, pa: Pa, old: u64) {
        let page = crate::mm::addr::PAGE_SIZE;
        let frame = pa.raw() & !(page - 1);
        let index = ((pa.raw() & (page - 1)) / 8) as u16;
        self.unpublished
            .entry(frame)
            .or_default()
            .entry(index)
            .or_insert(old);
    }

    /// Walks as seen by other CPUs become weakly ordered (`Some(seed)`) or sequentially
    /// consistent (`None`).
    pub fn set_weak_publication(&mut self, seed: Option<u64>) {
        self.weak = seed.map(|s| s | 1);
    }

    /// A walk by `cpu`'s walker: like [`Machine::walk`], except that with weak publication
    /// each entry read may return the value it held before stores not yet ordered by a
    /// barrier.
    fn walk_as_cpu(&mut self, vmid: Vmid, ipa: Ipa) -> Result<WalkHit, GuestFault> {
        let Some(mut x) = self.weak else {
            return self.walk(vmid, ipa);
        };
        let vm = self
            .vms
            .iter()
            .find(|v| v.vmid == vmid)
            .ok_or(GuestFault::UnknownVm)?;
        let (mem, unpublished) = (&self.mem, &self.unpublished);
        let page = crate::mm::addr::PAGE_SIZE;
        let mut read = |pa: Pa| {
            let old = unpublished
                .get(&(pa.raw() & !(page - 1)))
                .and_then(|olds| olds.get(&(((pa.raw() & (page - 1)) / 8) as u16)));
            // xorshift64: deterministic per seed, so a failing case replays.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            match old {
                Some(&v) if x & 1 == 0 => v,
                _ => mem.read_u64(pa),
            }
        };
        let r = hw_walk_with(&mut read, &vm.config, vm.root, ipa);
        self.weak = Some(x);
        r.map_err(|level| GuestFault::Translation { level })
    }

    /// A barrier: every earlier store is ordered before every later one.
    fn barrier(&mut self) {
        self.unpublished.clear();
    }

    /// Let walks and the checker see `vmid`'s tables (done by [`SharedMachine::new_stage2`]).
    pub fn register_vm(&mut self, vmid: Vmid, root: Pa, config: Stage2Config) {
        self.vms.retain(|v| v.vmid != vmid);
        self.vms.push(VmTables { vmid, root, config });
        self.checker.register_root(vmid, root, config.start_level());
    }

    /// Stop walking `vmid`'s tables (after `Stage2::destroy`).
    pub fn unregister_vm(&mut self, vmid: Vmid) {
        if let Some(i) = self.vms.iter().position(|v| v.vmid == vmid) {
            let v = self.vms.remove(i);
            self.checker.forget_root(v.root);
        }
    }

    /// Install (or remove) the between-steps hook.
    pub fn set_hook(&mut self, hook: Option<Hook>) {
        self.hook = hook;
    }
    /// Start (`true`) or stop recording steps; returns what was recorded so far.
    pub fn set_trace(&mut self, on: bool) -> Vec<Step> {
        let old = self.trace.take().unwrap_or_default();
        self.trace = on.then(Vec::new);
        old
    }
    /// Steps recorded since tracing started.
    pub fn trace(&self) -> &[Step] {
        self.trace.as_deref().unwrap_or(&[])
    }
    /// Panic at the first violation instead of recording it.
    pub fn set_panic_on_violation(&mut self, on: bool) {
        self.panic_on_violation = on;
    }
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }
    pub fn take_violations(&mut self) -> Vec<Violation> {
        core::mem::take(&mut self.violations)
    }
    /// Primitive steps so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    fn violation(&mut self, v: Violation) {
        if self.panic_on_violation {
            panic!("{v}");
        }
        self.violations.push(v);
    }

    fn step(&mut self, step: Step) {
        self.steps += 1;
        if let Some(t) = &mut self.trace {
            t.push(step);
        }
        if let Some(mut hook) = self.hook.take() {
            hook(self, &step);
            // The hook may have replaced itself; keep the newer one.
            if self.hook.is_none() {
                self.hook = Some(hook);
            }
        }
    }

    fn vm(&self, vmid: Vmid) -> Option<&VmTables> {
        self.vms.iter().find(|v| v.vmid == vmid)
    }

    /// Walk `vmid`'s current tables for `ipa` like the hardware would (no TLB involved).
    pub fn walk(&self, vmid: Vmid, ipa: Ipa) -> Result<WalkHit, GuestFault> {
        let vm = self.vm(vmid).ok_or(GuestFault::UnknownVm)?;
        hw_walk(&self.mem, &vm.config, vm.root, ipa)
            .map_err(|level| GuestFault::Translation { level })
    }

    /// A speculative TLB fill on `cpu`: if `ipa` currently has a valid leaf, cache it.
    /// Returns whether something was cached.
    pub fn fill(&mut self, cpu: usize, vmid: Vmid, ipa: Ipa) -> bool {
        match self.walk_as_cpu(vmid, ipa) {
            Ok(hit) => {
                self.tlb.insert(cpu, vmid, hit);
                true
            }
            Err(_) => false,
        }
    }

    /// The translation `cpu` uses for an access: its TLB first (stale or not), else a walk
    /// whose result it caches.
    fn translate_for_access(
        &mut self,
        cpu: usize,
        vmid: Vmid,
        ipa: Ipa,
    ) -> Result<(WalkHit, bool), GuestFault> {
        if let Some(e) = self.tlb.lookup(cpu, vmid, ipa) {
            return Ok((e.hit, true));
        }
        let hit = self.walk_as_cpu(vmid, ipa)?;
        self.tlb.insert(cpu, vmid, hit);
        Ok((hit, false))
    }

    fn access_pa(hit: &WalkHit, ipa: Ipa) -> Pa {
        Pa::new(hit.pa.raw() + (ipa.raw() - hit.ipa.raw()))
    }

    /// Guest on `cpu` reads the 64-bit word at `ipa` (8-byte aligned).
    pub fn guest_read(
        &mut self,
        cpu: usize,
        vmid: Vmid,
        ipa: Ipa,
    ) -> Result<(u64, Access), GuestFault> {
        let (hit, from_tlb) = self.translate_for_access(cpu, vmid, ipa)?;
        if !hit.attrs.perms.readable() {
            return Err(GuestFault::Permission {
                level: hit.level,
                from_tlb,
            });
        }
        let pa = Self::access_pa(&hit, ipa);
        Ok((self.mem.read_u64(pa), Access { pa, from_tlb }))
    }

    /// Guest on `cpu` writes the 64-bit word at `ipa` (8-byte aligned). A write through a
    /// stale cached translation lands in the stale frame: that is how a missing TLBI shows.
    pub fn guest_write(
        &mut self,
        cpu: usize,
        vmid: Vmid,
        ipa: Ipa,
        value: u64,
    ) -> Result<Access, GuestFault> {
        let (hit, from_tlb) = self.translate_for_access(cpu, vmid, ipa)?;
        if !hit.attrs.perms.writable() {
            return Err(GuestFault::Permission {
                level: hit.level,
                from_tlb,
            });
        }
        let pa = Self::access_pa(&hit, ipa);
        self.mem.write_u64(pa, value);
        Ok(Access { pa, from_tlb })
    }

    /// I4 check for frames freed outside [`MachineAlloc`] (e.g. guest frames reclaimed by the
    /// ownership layer): records a violation if any CPU still caches a translation into or
    /// through `frame`. Returns whether the frame was clean.
    pub fn check_frame_unreferenced(&mut self, frame: Pfn) -> bool {
        match self.tlb.referencing(frame) {
            Some((cpu, e)) => {
                self.violation(Violation::FreedWhileCached {
                    frame: frame.base(),
                    cpu,
                    vmid: e.vmid,
                    ipa: e.hit.ipa,
                });
                false
            }
            None => true,
        }
    }
}

/// A shared machine; clone to share.
#[derive(Clone)]
pub struct SharedMachine(Rc<RefCell<Machine>>);

impl SharedMachine {
    pub fn new(cfg: MachineConfig) -> Self {
        Self(Rc::new(RefCell::new(Machine::new(cfg))))
    }
    /// The machine itself (not while a stage-2 operation is running on it).
    pub fn get(&self) -> RefMut<'_, Machine> {
        self.0.borrow_mut()
    }
    pub fn mem(&self) -> MachineMem {
        MachineMem(self.0.clone())
    }
    pub fn tlb(&self) -> MachineTlb {
        MachineTlb(self.0.clone())
    }
    /// Table frames from `Machine::tables`, checked for I4 when freed.
    pub fn alloc(&self) -> MachineAlloc {
        MachineAlloc(self.0.clone())
    }
    /// A stage-2 tree on this machine, registered for walks and checks.
    ///
    /// # Errors
    /// As for [`Stage2::new`].
    pub fn new_stage2<A: TableAlloc + ?Sized>(
        &self,
        config: Stage2Config,
        vmid: Vmid,
        alloc: &mut A,
    ) -> Result<Stage2<MachineMem, MachineTlb>, Stage2Error> {
        let s2 = Stage2::new(self.mem(), self.tlb(), config, vmid, alloc)?;
        self.get().register_vm(vmid, s2.root(), config);
        Ok(s2)
    }
}

/// [`PhysMem`] on a shared machine: every store and zeroing is a step.
#[derive(Clone)]
pub struct MachineMem(Rc<RefCell<Machine>>);

impl PhysMem for MachineMem {
    fn read_pte(&self, table: Pa, index: usize) -> Pte {
        self.0.borrow().mem.read_pte(table, index)
    }
    fn write_pte(&mut self, table: Pa, index: usize, pte: Pte) {
        let mut m = self.0.borrow_mut();
        // A valid descriptor with the table/page type bit: a link if it points at a table
        // frame (guest pages are never table frames).
        if let Some(target) = pte.next_table(Level::L2)
            && m.check_publication
            && m.unpublished.contains_key(&target.raw())
        {
            m.violation(Violation::LinkBeforePublish {
                table: target,
                parent: table,
                index,
            });
        }
        let old = m.mem.read_pte(table, index);
        m.stored_into(Pa::new(table.raw() + 8 * index as u64), old.raw());
        let slot = m.checker.slot(table, index);
        m.mem.write_pte(table, index, pte);
        let m = &mut *m;
        let mem = &m.mem;
        if let Some(v) = m
            .checker
            .on_store(table, index, old, pte, &|t, i| mem.read_pte(t, i))
        {
            m.violation(v);
        }
        m.step(Step::WritePte {
            table,
            index,
            old,
            new: pte,
            slot,
        });
    }
    fn zero_table(&mut self, table: Pa) {
        let mut m = self.0.borrow_mut();
        let old = m.mem.frame_words(Pfn::containing(table));
        m.unpublished.entry(table.raw()).or_default();
        // Zero words read the same before and after: only the others need remembering.
        for (i, &w) in old.iter().enumerate().filter(|(_, w)| **w != 0) {
            m.stored_into(Pa::new(table.raw() + 8 * i as u64), w);
        }
        m.mem.zero_table(table);
        m.checker.on_zero(table);
        m.step(Step::ZeroTable { table });
    }
    fn publish_barrier(&mut self) {
        self.0.borrow_mut().barrier();
    }
}

/// [`Tlb`] on a shared machine: invalidation completes within the call, then the hook runs.
#[derive(Clone)]
pub struct MachineTlb(Rc<RefCell<Machine>>);

impl Tlb for MachineTlb {
    fn invalidate_ipa(&mut self, vmid: Vmid, ipa: Ipa, level: Level) {
        let mut m = self.0.borrow_mut();
        m.barrier();
        m.tlb.invalidate_ipa(vmid, ipa);
        m.checker.on_invalidate_ipa(vmid, ipa);
        m.step(Step::InvalidateIpa { vmid, ipa, level });
    }
    fn invalidate_vmid_all(&mut self, vmid: Vmid) {
        let mut m = self.0.borrow_mut();
        m.barrier();
        m.tlb.invalidate_vmid(vmid);
        m.checker.on_invalidate_vmid(vmid);
        m.step(Step::InvalidateVmid { vmid });
    }
    fn table_retired(&mut self, table: Pa) {
        self.0
            .borrow_mut()
            .check_frame_unreferenced(Pfn::containing(table));
    }
}

/// [`TableAlloc`] on a shared machine, from `Machine::tables`; frees check I4.
#[derive(Clone)]
pub struct MachineAlloc(Rc<RefCell<Machine>>);

impl TableAlloc for MachineAlloc {
    fn alloc_table(&mut self) -> Option<Pa> {
        let mut m = self.0.borrow_mut();
        let t = m.tables.alloc_table()?;
        m.step(Step::AllocTable { table: t });
        Some(t)
    }
    fn free_table(&mut self, table: Pa) {
        let mut m = self.0.borrow_mut();
        m.check_frame_unreferenced(Pfn::containing(table));
        m.tables.free_table(table);
        m.step(Step::FreeTable { table });
    }
    fn alloc_root(&mut self, frames: usize) -> Option<Pa> {
        let mut m = self.0.borrow_mut();
        let t = m.tables.alloc_root(frames)?;
        m.step(Step::AllocTable { table: t });
        Some(t)
    }
    fn free_root(&mut self, root: Pa, frames: usize) {
        let mut m = self.0.borrow_mut();
        for i in 0..frames {
            let t = Pa::new(root.raw() + i as u64 * crate::mm::addr::PAGE_SIZE);
            m.check_frame_unreferenced(Pfn::containing(t));
            m.step(Step::FreeTable { table: t });
        }
        m.tables.free_root(root, frames);
    }
}
