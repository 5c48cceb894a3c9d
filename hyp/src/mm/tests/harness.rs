//! A VM on the simulated machine: frame table over all of its RAM, a TLB wrapper that can drop
//! invalidations (for the teeth tests), and frame data that checks I4 when a frame is freed.

use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::Cell;

use crate::sync::Mutex;

use crate::mm::addr::{Ipa, PAGE_SIZE, Pa, Pfn};
use crate::mm::bugs::Bugs;
use crate::mm::descriptor::Level;
use crate::mm::fault::{Access, FaultOutcome};
use crate::mm::ownership::{FrameData, FrameTable, VmId};
use crate::mm::sim::{GuestFault, MachineConfig, MachineMem, MachineTlb, SharedMachine};
use crate::mm::stage2::{CpuFeatures, Stage2Config, Vmid};
use crate::mm::tlb::Tlb;
use crate::mm::vm::Vm;

pub const RAM_BASE: u64 = 0x4000_0000;
pub const RAM_FRAMES: u64 = 4096; // 16 MiB: room for two VMs' blocks, tables and migrations
/// Region 0: 4 MiB, 2 MiB aligned (two block-sized chunks).
pub const R0: (u64, u64) = (0x8000_0000, 4 << 20);
/// Region 1: 64 KiB at an address no block fits.
pub const R1: (u64, u64) = (0x1_0000_3000, 64 << 10);
/// Region 2: 32 MiB, populated on demand, touched one page per 2 MiB chunk: every first fault
/// in a chunk needs a new table, so a burst of faults there drains the table cache.
pub const R2: (u64, u64) = (0x2_0000_0000, 32 << 20);
pub const REGIONS: [(u64, u64); 3] = [R0, R1, R2];
/// VM 0's VMID; VM `i` has `vmid(i)`.
pub const VMID: Vmid = Vmid::new(5);

pub fn vmid(vm: usize) -> Vmid {
    Vmid::new(VMID.raw() + vm as u16)
}
/// Invalidations the TLB wrapper drops (deliberate bugs).
#[derive(Clone, Copy, Default, Debug)]
pub struct TlbBugs {
    /// Drop `TLBI IPAS2E1IS` (every leaf invalidation).
    pub drop_ipa: bool,
    /// Drop `TLBI VMALLS12E1IS` (the invalidation that must precede freeing a table).
    pub drop_vmid: bool,
}

#[derive(Clone)]
pub struct BugTlb {
    pub inner: MachineTlb,
    pub bugs: Rc<Cell<TlbBugs>>,
}

impl Tlb for BugTlb {
    fn invalidate_ipa(&mut self, vmid: Vmid, ipa: Ipa, level: Level) {
        if !self.bugs.get().drop_ipa {
            self.inner.invalidate_ipa(vmid, ipa, level)
        }
    }
    fn invalidate_vmid_all(&mut self, vmid: Vmid) {
        if !self.bugs.get().drop_vmid {
            self.inner.invalidate_vmid_all(vmid)
        }
    }
    fn table_retired(&mut self, table: Pa) {
        self.inner.table_retired(table)
    }
}

/// Frame contents on the machine; freeing (zeroing) a frame checks that no CPU still caches a
/// translation to it (I4).
pub struct SimData {
    pub machine: SharedMachine,
    /// Check I4 when a frame is freed (the teeth tests turn it off to see the consequences).
    pub check_freed: bool,
}

impl FrameData for SimData {
    fn zero_frame(&mut self, pfn: Pfn) {
        let mut m = self.machine.get();
        if self.check_freed {
            m.check_frame_unreferenced(pfn);
        }
        m.mem.zero_frame(pfn);
    }
    fn copy_frame(&mut self, from: Pfn, to: Pfn) {
        self.machine.get().mem.copy_frame(from, to);
    }
}

pub type SimVm = Vm<MachineMem, BugTlb>;

pub struct World {
    pub machine: SharedMachine,
    pub frames: Mutex<FrameTable>,
    pub data: SimData,
    /// VM `i` has VM id `i + 1` and VMID [`vmid`]`(i)`.
    pub vms: Vec<SimVm>,
    #[allow(dead_code)] // flipped by the teeth tests
    pub tlb_bugs: Rc<Cell<TlbBugs>>,
    pub root_tables: usize,
}

pub fn config() -> Stage2Config {
    // 40-bit IPA: a level-1 start with two concatenated root tables.
    let f = CpuFeatures {
        parange: 2,
        vmid_bits: 2,
        fwb: false,
    };
    Stage2Config::from_features(f, 40).expect("valid features")
}

impl World {
    /// One VM on `cpus` CPUs with `bugs` switched on (for this thread).
    pub fn new(cpus: usize, bugs: Bugs) -> Self {
        Self::with_vms(cpus, 1, bugs)
    }

    /// `vms` VMs sharing one frame table and machine.
    pub fn with_vms(cpus: usize, vms: usize, bugs: Bugs) -> Self {
        crate::mm::bugs::set(bugs);
        let machine = SharedMachine::new(MachineConfig {
            ram: (Pa::new(RAM_BASE), RAM_FRAMES * PAGE_SIZE),
            table_frames: (Pa::new(RAM_BASE), 0),
            cpus,
            tlb_capacity: 16,
        });
        let frames = FrameTable::new(Pfn::containing(Pa::new(RAM_BASE)), RAM_FRAMES);
        let data = SimData {
            machine: machine.clone(),
            check_freed: true,
        };
        let mut w = Self {
            machine,
            frames: Mutex::new(frames),
            data,
            vms: Vec::new(),
            tlb_bugs: Rc::new(Cell::new(TlbBugs::default())),
            root_tables: config().root_tables(),
        };
        for i in 0..vms {
            let vm = w.create_vm(i);
            w.vms.push(vm);
        }
        w
    }

    /// A new, empty VM `i` (VM id `i + 1`, VMID `vmid(i)`) registered with the machine.
    pub fn create_vm(&mut self, i: usize) -> SimVm {
        let tlb = BugTlb {
            inner: self.machine.tlb(),
            bugs: self.tlb_bugs.clone(),
        };
        let regions = REGIONS.map(|(b, s)| (Ipa::new(b), s));
        let id = VmId::new(i as u16 + 1).unwrap();
        let vm = Vm::new(
            id,
            &regions,
            config(),
            vmid(i),
            self.machine.mem(),
            tlb,
            &mut self.frames.lock(),
            &mut self.data,
        )
        .expect("VM fits");
        self.machine
            .get()
            .register_vm(vmid(i), vm.stage2_root(), config());
        vm
    }

    /// A guest access by VM 0; see [`World::access_on`].
    pub fn access(
        &mut self,
        cpu: usize,
        ipa: Ipa,
        write: Option<u64>,
    ) -> Result<u64, FaultOutcome> {
        self.access_on(0, cpu, ipa, write)
    }

    /// A guest access by VM `vm` on `cpu` like the hardware does it: through the TLB, faulting
    /// into the fault path and re-running until it completes. Returns the value read (or
    /// written), or the outcome that stopped it.
    pub fn access_on(
        &mut self,
        vm: usize,
        cpu: usize,
        ipa: Ipa,
        write: Option<u64>,
    ) -> Result<u64, FaultOutcome> {
        let id = vmid(vm);
        for _ in 0..8 {
            let r = {
                let mut m = self.machine.get();
                match write {
                    Some(v) => m.guest_write(cpu, id, ipa, v).map(|_| v),
                    None => m.guest_read(cpu, id, ipa).map(|(v, _)| v),
                }
            };
            let fault: GuestFault = match r {
                Ok(v) => return Ok(v),
                Err(f) => f,
            };
            assert_ne!(fault, GuestFault::UnknownVm);
            let kind = if write.is_some() {
                Access::Write
            } else {
                Access::Read
            };
            match self.vms[vm].handle_fault(&self.frames, &mut self.data, ipa, kind) {
                Ok(FaultOutcome::Mapped { .. } | FaultOutcome::Retry) => {}
                Ok(other) => return Err(other),
                Err(e) => panic!("fault path failed: {e}"),
            }
        }
        panic!("access to {ipa:?} by VM {vm} on CPU {cpu} did not complete after 8 faults");
    }

    /// Donates a 2 MiB-aligned run of frames to VM 0's 2 MiB chunk at `ipa` (block-backed);
    /// returns the run's first frame.
    pub fn donate_block(&mut self, ipa: Ipa) -> Result<Pfn, crate::mm::ownership::OwnershipError> {
        self.donate_block_to(0, ipa)
    }

    /// Donates a 2 MiB-aligned run of frames to VM `vm`'s 2 MiB chunk at `ipa`.
    pub fn donate_block_to(
        &mut self,
        vm: usize,
        ipa: Ipa,
    ) -> Result<Pfn, crate::mm::ownership::OwnershipError> {
        let pfn = self.frames.lock().hyp_alloc_run(512, &mut self.data)?;
        let r = self.vms[vm].donate(&self.frames, pfn.base(), ipa, 2 << 20);
        if r.is_err() {
            let mut f = self.frames.lock();
            for i in 0..512 {
                f.hyp_free(Pfn::new(pfn.raw() + i), &mut self.data).unwrap();
            }
        }
        r.map(|()| pfn)
    }

    pub fn check(&self) {
        let f = self.frames.lock();
        f.check_invariants();
        for vm in &self.vms {
            vm.check_invariants(&f);
        }
        let v = self.machine.get().take_violations();
        assert!(
            v.is_empty(),
            "sim violations: {}",
            v.iter()
                .map(|v| alloc::format!("{v}; "))
                .collect::<alloc::string::String>()
        );
    }
}
