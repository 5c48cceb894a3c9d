//! Physical GICv3 driver at EL2: distributor (boot CPU), this CPU's redistributor and the
//! system-register CPU interface (every CPU), per-INTID enable/priority/route, physical SGIs.
//!
//! Interrupts end in two steps (ICC_CTLR_EL1.EOImode = 1): `eoi` drops the running priority,
//! `deactivate` (ICC_DIR_EL1) deactivates. A physical interrupt forwarded to a guest through a
//! hardware-linked list register gets only `eoi` here; the guest's virtual EOI deactivates it.
//! The GIC frames are identity-mapped as device memory by `mmu`, so a PA is a usable pointer.

use crate::irq_table::sgi1r;
use crate::platform::Gic;

const GICD_CTLR: usize = 0x0;
const GICD_TYPER: usize = 0x4;
const GICD_IGROUPR: usize = 0x80;
const GICD_ISENABLER: usize = 0x100;
const GICD_ICENABLER: usize = 0x180;
const GICD_ICACTIVER: usize = 0x380;
const GICD_IPRIORITYR: usize = 0x400;
const GICD_IROUTER: usize = 0x6000;
/// GICD_CTLR (non-secure view): EnableGrp1A, ARE_NS; RWP is bit 31.
const GICD_CTLR_GRP1: u32 = 1 << 1;
const GICD_CTLR_ARE_NS: u32 = 1 << 4;
const CTLR_RWP: u32 = 1 << 31;

const GICR_CTLR: usize = 0x0;
const GICR_TYPER: usize = 0x8;
const GICR_WAKER: usize = 0x14;
const WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
const WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;
/// Each redistributor is an RD frame plus an SGI frame, 64 KiB each (no VLPI frames).
const GICR_FRAME: usize = 0x1_0000;
const GICR_STRIDE: usize = 2 * GICR_FRAME;
const TYPER_LAST: u64 = 1 << 4;

/// Priority given to every interrupt the hypervisor enables (lower is more urgent).
pub const DEFAULT_PRIORITY: u8 = 0xa0;

fn r32(addr: usize) -> u32 {
    // SAFETY: `addr` is a GIC register inside a frame the DTB described and `mmu` maps as
    // device memory; a 32-bit read of it has no memory side effects the compiler sees.
    unsafe { core::ptr::read_volatile(addr as *const u32) }
}
fn w32(addr: usize, v: u32) {
    // SAFETY: as for `r32`; GIC register writes change interrupt state, not memory.
    unsafe { core::ptr::write_volatile(addr as *mut u32, v) }
}
fn r64(addr: usize) -> u64 {
    // SAFETY: as for `r32`, for the 64-bit GICR_TYPER / GICD_IROUTER registers.
    unsafe { core::ptr::read_volatile(addr as *const u64) }
}
fn w64(addr: usize, v: u64) {
    // SAFETY: as for `w32`.
    unsafe { core::ptr::write_volatile(addr as *mut u64, v) }
}

/// The distributor at `base`.
#[derive(Clone, Copy, Debug)]
pub struct Distributor {
    base: usize,
}

impl Distributor {
    pub fn new(gic: &Gic) -> Self {
        Self {
            base: gic.distributor.base.raw() as usize,
        }
    }

    /// Number of INTIDs the distributor handles (SGIs + PPIs + SPIs).
    pub fn lines(&self) -> u32 {
        32 * ((r32(self.base + GICD_TYPER) & 0x1f) + 1)
    }

    fn wait_rwp(&self) {
        while r32(self.base + GICD_CTLR) & CTLR_RWP != 0 {
            core::hint::spin_loop();
        }
    }

    /// Boot-CPU init: every SPI group 1, disabled, default priority, routed to `boot_mpidr`;
    /// then affinity routing and group 1 on.
    pub fn init(&self, boot_mpidr: u64) {
        w32(self.base + GICD_CTLR, 0);
        self.wait_rwp();
        let lines = self.lines().min(1020);
        for reg in 1..lines.div_ceil(32) as usize {
            w32(self.base + GICD_ICENABLER + 4 * reg, !0);
            w32(self.base + GICD_IGROUPR + 4 * reg, !0);
        }
        for intid in 32..lines as usize {
            self.set_priority(intid as u32, DEFAULT_PRIORITY);
            w64(
                self.base + GICD_IROUTER + 8 * intid,
                boot_mpidr & 0xff_00ff_ffff,
            );
        }
        self.wait_rwp();
        w32(self.base + GICD_CTLR, GICD_CTLR_ARE_NS | GICD_CTLR_GRP1);
        self.wait_rwp();
    }

    fn set_priority(&self, intid: u32, prio: u8) {
        let a = self.base + GICD_IPRIORITYR + intid as usize;
        // SAFETY: GICD_IPRIORITYR is byte-accessible; same mapping argument as `r32`.
        unsafe { core::ptr::write_volatile(a as *mut u8, prio) }
    }

    /// Enables (or disables) SPI `intid`.
    pub fn set_enabled(&self, intid: u32, on: bool) {
        debug_assert!((32..1020).contains(&intid));
        let off = if on { GICD_ISENABLER } else { GICD_ICENABLER };
        w32(
            self.base + off + 4 * (intid / 32) as usize,
            1 << (intid % 32),
        );
        self.wait_rwp();
    }

    /// Routes SPI `intid` to the CPU with affinity `mpidr`.
    pub fn route(&self, intid: u32, mpidr: u64) {
        debug_assert!((32..1020).contains(&intid));
        w64(
            self.base + GICD_IROUTER + 8 * intid as usize,
            mpidr & 0xff_00ff_ffff,
        );
    }
}

/// This CPU's redistributor (RD frame base).
#[derive(Clone, Copy, Debug)]
pub struct Redistributor {
    rd: usize,
}

impl Redistributor {
    /// Finds the frame whose GICR_TYPER affinity is `mpidr`.
    pub fn find(gic: &Gic, mpidr: u64) -> Option<Self> {
        let aff = ((mpidr >> 32) & 0xff) << 24 | (mpidr & 0xff_ffff);
        for region in &gic.redistributors {
            let mut rd = region.base.raw() as usize;
            let end = region.end().raw() as usize;
            while rd + GICR_STRIDE <= end {
                let typer = r64(rd + GICR_TYPER);
                if typer >> 32 == aff {
                    return Some(Self { rd });
                }
                if typer & TYPER_LAST != 0 {
                    break;
                }
                rd += GICR_STRIDE;
            }
        }
        None
    }

    fn sgi(&self) -> usize {
        self.rd + GICR_FRAME
    }

    /// Wakes the redistributor and makes SGIs/PPIs group 1, disabled, default priority.
    pub fn init(&self) {
        let w = r32(self.rd + GICR_WAKER);
        w32(self.rd + GICR_WAKER, w & !WAKER_PROCESSOR_SLEEP);
        while r32(self.rd + GICR_WAKER) & WAKER_CHILDREN_ASLEEP != 0 {
            core::hint::spin_loop();
        }
        w32(self.sgi() + GICD_ICENABLER, !0);
        self.wait_rwp();
        w32(self.sgi() + GICD_IGROUPR, !0);
        for intid in 0..32 {
            self.set_priority(intid, DEFAULT_PRIORITY);
        }
    }

    fn wait_rwp(&self) {
        while r32(self.rd + GICR_CTLR) & (1 << 3) != 0 {
            core::hint::spin_loop();
        }
    }

    fn set_priority(&self, intid: u32, prio: u8) {
        let a = self.sgi() + GICD_IPRIORITYR + intid as usize;
        // SAFETY: GICR_IPRIORITYR is byte-accessible; same mapping argument as `r32`.
        unsafe { core::ptr::write_volatile(a as *mut u8, prio) }
    }

    /// Clears the active state of SGI/PPI `intid`: a hardware-linked interrupt whose guest
    /// stopped before deactivating it would otherwise never fire again on this CPU.
    pub fn clear_active(&self, intid: u32) {
        debug_assert!(intid < 32);
        w32(self.sgi() + GICD_ICACTIVER, 1 << intid);
        self.wait_rwp();
    }

    /// Enables (or disables) SGI/PPI `intid` on this CPU.
    pub fn set_enabled(&self, intid: u32, on: bool) {
        debug_assert!(intid < 32);
        let off = if on { GICD_ISENABLER } else { GICD_ICENABLER };
        w32(self.sgi() + off, 1 << intid);
        self.wait_rwp();
    }
}

/// CPU-interface init at EL2 (ICC_SRE_EL2 is set by `el2`): all priorities unmasked, binary
/// point 0, EOImode = 1 (split drop/deactivate), group 1 on.
pub fn cpu_interface_init() {
    // SAFETY: ICC_* writes configure only this CPU's interrupt delivery; IRQs stay masked in
    // PSTATE until a caller unmasks them.
    unsafe {
        core::arch::asm!(
            "msr icc_pmr_el1, {pmr}",
            "msr icc_bpr1_el1, xzr",
            "msr icc_ctlr_el1, {ctlr}",
            "msr icc_igrpen1_el1, {one}",
            "isb",
            pmr = in(reg) 0xffu64, ctlr = in(reg) 1u64 << 1, one = in(reg) 1u64,
            options(nomem, nostack, preserves_flags));
    }
}

/// Acknowledges the highest-priority pending group-1 interrupt (1023 = none).
pub fn ack() -> u32 {
    let v: u64;
    // SAFETY: reading ICC_IAR1_EL1 activates the interrupt; the caller ends it with `eoi`.
    unsafe {
        core::arch::asm!("mrs {}, icc_iar1_el1", out(reg) v, options(nomem, nostack, preserves_flags));
    }
    (v & 0xff_ffff) as u32
}

/// Priority drop for an acknowledged interrupt (it stays active until `deactivate`).
pub fn eoi(intid: u32) {
    // SAFETY: ICC_EOIR1_EL1 with an INTID this CPU acknowledged only drops its running priority.
    unsafe {
        core::arch::asm!("msr icc_eoir1_el1, {}", in(reg) u64::from(intid), options(nomem, nostack, preserves_flags));
    }
}

/// Deactivates `intid` (ICC_DIR_EL1), after `eoi`.
pub fn deactivate(intid: u32) {
    // SAFETY: deactivating an interrupt the hypervisor handled itself lets it fire again.
    unsafe {
        core::arch::asm!("msr icc_dir_el1, {}", "isb", in(reg) u64::from(intid), options(nomem, nostack, preserves_flags));
    }
}

/// Sends SGI `intid` to the CPU with affinity `mpidr` (e.g. to kick its vCPU out of a guest).
pub fn send_sgi(mpidr: u64, intid: u8) {
    let v = sgi1r(mpidr, intid);
    // SAFETY: the DSB makes earlier memory writes (the reason for the kick) visible to the
    // target before the SGI; raising an SGI touches no memory.
    unsafe {
        core::arch::asm!("dsb ishst", "msr icc_sgi1r_el1, {}", "isb", in(reg) v, options(nostack, preserves_flags));
    }
}
