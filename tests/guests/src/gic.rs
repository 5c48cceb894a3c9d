//! GICv3 at QEMU virt's addresses: distributor, this vCPU's redistributor, and the CPU
//! interface through the ICC_* system registers (Arm IHI 0069).
//!
//! Only what SGIs and PPIs need: affinity routing and Group 1 on in the distributor, the
//! redistributor awake with the wanted INTIDs in Group 1 and enabled, and the CPU interface
//! accepting every priority.

use crate::cpu;
use crate::mmio::Mmio;
use crate::timer;

pub const GICD_BASE: usize = 0x0800_0000;
pub const GICR_BASE: usize = 0x080a_0000;
/// One redistributor: RD_base frame then SGI_base frame, 64 KiB each.
pub const GICR_STRIDE: usize = 0x2_0000;
const SGI_FRAME: usize = 0x1_0000;
/// Give up looking for our redistributor after this many frames.
const MAX_REDISTRIBUTORS: usize = 64;

const GICD_CTLR: usize = 0x0;
const CTLR_ENABLE_GRP1: u32 = 1 << 1;
const CTLR_ARE: u32 = 1 << 4;
const CTLR_RWP: u32 = 1 << 31;

const GICR_TYPER: usize = 0x8;
const TYPER_LAST: u64 = 1 << 4;
const GICR_WAKER: usize = 0x14;
const WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
const WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;

const GICR_IGROUPR0: usize = 0x80;
const GICR_ISENABLER0: usize = 0x100;
const GICR_ICENABLER0: usize = 0x180;
const GICR_ISPENDR0: usize = 0x200;
const GICR_IPRIORITYR: usize = 0x400;

/// INTIDs 1020..1023 are special (spurious) and must not be EOIed.
pub fn is_spurious(intid: u32) -> bool {
    (1020..1024).contains(&intid)
}

/// Why GIC setup failed.
#[derive(Clone, Copy, Debug)]
pub enum Error {
    /// No redistributor's GICR_TYPER names this vCPU's affinity.
    NoRedistributor { mpidr: u64 },
    /// GICR_WAKER.ChildrenAsleep stayed set after clearing ProcessorSleep.
    StillAsleep,
    /// GICD_CTLR.RWP stayed set.
    DistributorBusy,
}

/// Enables affinity routing and Group 1 interrupts in the distributor (once, by any vCPU).
pub fn init_distributor() -> Result<(), Error> {
    let gicd = Mmio::new(GICD_BASE);
    gicd.write32(GICD_CTLR, CTLR_ARE | CTLR_ENABLE_GRP1);
    if timer::wait_until(100, || gicd.read32(GICD_CTLR) & CTLR_RWP == 0) {
        Ok(())
    } else {
        Err(Error::DistributorBusy)
    }
}

/// One vCPU's redistributor.
#[derive(Clone, Copy)]
pub struct Redistributor {
    rd: Mmio,
    sgi: Mmio,
}

impl Redistributor {
    /// Finds the redistributor whose GICR_TYPER affinity is this vCPU's MPIDR and wakes it.
    pub fn this_cpu() -> Result<Self, Error> {
        let mpidr = cpu::mpidr();
        let want = cpu::affinity_compact(mpidr);
        for i in 0..MAX_REDISTRIBUTORS {
            let rd = Mmio::new(GICR_BASE + i * GICR_STRIDE);
            let typer = rd.read64(GICR_TYPER);
            if typer >> 32 == want {
                let this = Self {
                    rd,
                    sgi: rd.offset(SGI_FRAME),
                };
                this.wake()?;
                return Ok(this);
            }
            if typer & TYPER_LAST != 0 {
                break;
            }
        }
        Err(Error::NoRedistributor { mpidr })
    }

    fn wake(self) -> Result<(), Error> {
        let waker = self.rd.read32(GICR_WAKER);
        self.rd.write32(GICR_WAKER, waker & !WAKER_PROCESSOR_SLEEP);
        if timer::wait_until(100, || {
            self.rd.read32(GICR_WAKER) & WAKER_CHILDREN_ASLEEP == 0
        }) {
            Ok(())
        } else {
            Err(Error::StillAsleep)
        }
    }

    /// Puts SGI/PPI `intid` (< 32) in Group 1 at `priority` and enables it.
    pub fn enable(self, intid: u32, priority: u8) {
        assert!(intid < 32, "INTID {intid} is not an SGI or PPI");
        let bit = 1 << intid;
        self.sgi
            .write32(GICR_IGROUPR0, self.sgi.read32(GICR_IGROUPR0) | bit);
        let word = GICR_IPRIORITYR + (intid as usize / 4) * 4;
        let shift = (intid % 4) * 8;
        let prio = self.sgi.read32(word) & !(0xff << shift);
        self.sgi
            .write32(word, prio | (u32::from(priority) << shift));
        self.sgi.write32(GICR_ISENABLER0, bit);
    }

    pub fn disable(self, intid: u32) {
        assert!(intid < 32, "INTID {intid} is not an SGI or PPI");
        self.sgi.write32(GICR_ICENABLER0, 1 << intid);
    }

    /// Whether SGI/PPI `intid` (< 32) is pending, as GICR_ISPENDR0 shows it.
    pub fn pending(self, intid: u32) -> bool {
        assert!(intid < 32, "INTID {intid} is not an SGI or PPI");
        self.sgi.read32(GICR_ISPENDR0) & 1 << intid != 0
    }
}

/// The boot vCPU's usual setup: the distributor, this vCPU's redistributor and its CPU
/// interface. A failure ends the test with `Test result: ERROR` naming the step.
pub fn setup_boot_cpu() -> Redistributor {
    if let Err(e) = init_distributor() {
        crate::report::error(format_args!("GIC distributor setup failed: {e:?}"));
    }
    let rd = match Redistributor::this_cpu() {
        Ok(rd) => rd,
        Err(e) => crate::report::error(format_args!("GIC redistributor setup failed: {e:?}")),
    };
    init_cpu_interface();
    rd
}

/// Turns on the system-register CPU interface for Group 1 at every priority.
pub fn init_cpu_interface() {
    // SAFETY: configures this vCPU's GIC CPU interface only; interrupts stay masked in PSTATE
    // until the test unmasks them.
    unsafe {
        core::arch::asm!(
            "mrs {t}, icc_sre_el1",
            "orr {t}, {t}, #1",
            "msr icc_sre_el1, {t}",
            "isb",
            "mov {t}, #0xff",
            "msr icc_pmr_el1, {t}",
            "msr icc_bpr1_el1, xzr",
            "mov {t}, #1",
            "msr icc_igrpen1_el1, {t}",
            "isb",
            t = out(reg) _,
            options(nostack),
        );
    }
}

/// Acknowledges the highest-priority pending Group 1 interrupt.
pub fn acknowledge() -> u32 {
    let v: u64;
    // SAFETY: ICC_IAR1_EL1 reads change only GIC state (the interrupt becomes active).
    unsafe { core::arch::asm!("mrs {}, icc_iar1_el1", out(reg) v, options(nostack)) };
    (v & 0xff_ffff) as u32
}

/// Drops priority and deactivates `intid` (EOImode 0).
pub fn end_of_interrupt(intid: u32) {
    // SAFETY: ends an interrupt this vCPU acknowledged; GIC state only.
    unsafe {
        core::arch::asm!("msr icc_eoir1_el1, {}", "isb", in(reg) u64::from(intid), options(nostack))
    };
}

/// Sends SGI `intid` (< 16) to the single vCPU with affinity `mpidr`.
pub fn send_sgi(intid: u32, mpidr: u64) {
    assert!(intid < 16, "INTID {intid} is not an SGI");
    let aff0 = mpidr & 0xf;
    let aff1 = (mpidr >> 8) & 0xff;
    let aff2 = (mpidr >> 16) & 0xff;
    let aff3 = (mpidr >> 32) & 0xff;
    // Range selector (bits 47:44) picks the 16-CPU block of Aff0; target list is one bit in it.
    let rs = (mpidr & 0xf0) >> 4;
    let value = (aff3 << 48)
        | (rs << 44)
        | (aff2 << 32)
        | (u64::from(intid) << 24)
        | (aff1 << 16)
        | (1 << aff0);
    // SAFETY: generating an SGI changes GIC state only.
    unsafe {
        core::arch::asm!("dsb ishst", "msr icc_sgi1r_el1, {}", "isb", in(reg) value, options(nostack))
    };
}
