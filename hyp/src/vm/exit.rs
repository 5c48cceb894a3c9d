//! Why a vCPU left the guest: the vector it came through plus ESR_EL2, decoded into one
//! [`ExitReason`], and per-VM counters of those reasons.
//!
//! Portable: the world switch only hands over the vector kind and the syndrome, so every
//! decoding rule here is tested on the host against the Arm ARM layouts (ESR_EL2 "ISS encoding
//! for an exception from ...").
#![forbid(unsafe_code)]

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

pub use crate::esr::SysReg;
use crate::esr::{Esr, ec};

/// Which EL2 vector a guest exit came through (lower EL, AArch64).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitKind {
    Sync,
    Irq,
    Fiq,
    SError,
}

impl ExitKind {
    /// From the number the vector stub passes (0..=3 in vector order); `None` otherwise.
    pub const fn from_raw(raw: u64) -> Option<Self> {
        match raw {
            0 => Some(Self::Sync),
            1 => Some(Self::Irq),
            2 => Some(Self::Fiq),
            3 => Some(Self::SError),
            _ => None,
        }
    }
}

/// A trapped MSR/MRS (EC 0x18), ISS fields named as in the Arm ARM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SysRegAccess {
    pub reg: SysReg,
    /// The general-purpose register transferred (31 = XZR).
    pub rt: u8,
    /// MRS (the guest reads the register) rather than MSR.
    pub read: bool,
}

/// A data or instruction abort taken to EL2 from the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Abort {
    /// Data abort (EC 0x24) rather than instruction abort (EC 0x20).
    pub data: bool,
    /// WnR: the access was a write (data aborts only; a stage-1 walk that wanted to update a
    /// descriptor also sets it).
    pub write: bool,
    /// Fault status code, ISS[5:0].
    pub fsc: u8,
    /// The fault happened on the guest's stage-1 table walk.
    pub s1ptw: bool,
    /// FAR_EL2 is not valid (FnV).
    pub far_invalid: bool,
    /// The whole syndrome, for what only some aborts need (an emulated MMIO access's
    /// instruction details).
    pub esr: Esr,
}

impl Abort {
    /// A stage-2 translation, access-flag or permission fault at any level: HPFAR_EL2 holds
    /// the IPA and the memory core may resolve it. Anything else (external aborts, TLB
    /// conflicts, alignment) is not about our tables.
    ///
    /// Level -1 counts (0x2b, FEAT_LPA2): a fault on the guest's stage-1 walk may carry the
    /// walk's level, and a 52-bit-VA guest (5 levels, as Debian's 6.12 kernel) walks from
    /// level -1. Missing it, a restored 6.12 guest, whose stage 2 is mapped lazily, took an
    /// external abort for its own page-table root at its first instruction and hung.
    pub const fn is_stage2_fault(&self) -> bool {
        matches!(self.fsc, 0x04..=0x0f | 0x2b)
    }
    /// A stage-2 permission fault (the page is mapped, the access is not allowed).
    pub const fn is_permission_fault(&self) -> bool {
        matches!(self.fsc, 0x0c..=0x0f)
    }
}

/// The decoded reason of one guest exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitReason {
    /// HVC from AArch64 (EC 0x16): ELR_EL2 already points past the instruction.
    Hvc {
        imm: u16,
    },
    /// SMC from AArch64 trapped by HCR_EL2.TSC (EC 0x17): ELR_EL2 points at the instruction.
    Smc {
        imm: u16,
    },
    /// WFI (EC 0x01, TI = 0b00).
    Wfi,
    /// WFE, WFIT or WFET (EC 0x01, TI != 0).
    Wfe,
    SysReg(SysRegAccess),
    Abort(Abort),
    /// A physical IRQ arrived while the guest ran (HCR_EL2.IMO).
    Irq,
    Fiq,
    /// An SError (asynchronous external abort) while the guest ran (HCR_EL2.AMO).
    SError {
        esr: u64,
    },
    /// Any other synchronous exception class; the guest gets UNDEFINED.
    Other {
        ec: u8,
    },
}

/// Decodes one exit.
pub const fn decode(kind: ExitKind, esr: u64) -> ExitReason {
    match kind {
        ExitKind::Irq => return ExitReason::Irq,
        ExitKind::Fiq => return ExitReason::Fiq,
        ExitKind::SError => return ExitReason::SError { esr },
        ExitKind::Sync => {}
    }
    let e = Esr(esr);
    match e.ec() {
        ec::HVC64 => ExitReason::Hvc { imm: e.imm16() },
        ec::SMC64 => ExitReason::Smc { imm: e.imm16() },
        ec::WFX => {
            if e.wfx_ti() == 0 {
                ExitReason::Wfi
            } else {
                ExitReason::Wfe
            }
        }
        ec::SYSREG => {
            let (op0, op1, crn, crm, op2) = e.sysreg();
            ExitReason::SysReg(SysRegAccess {
                reg: SysReg::new(op0, op1, crn, crm, op2),
                rt: e.sysreg_rt(),
                read: e.sysreg_read(),
            })
        }
        ec::IABT_LOW | ec::DABT_LOW => {
            let data = e.ec() == ec::DABT_LOW;
            ExitReason::Abort(Abort {
                data,
                write: data && e.wnr(),
                fsc: e.status(),
                s1ptw: e.s1ptw(),
                far_invalid: !e.far_valid(),
                esr: e,
            })
        }
        ec => ExitReason::Other { ec },
    }
}

/// The IPA of a stage-2 fault: HPFAR_EL2.FIPA (IPA[51:12] at bits [43:4]) plus the page offset
/// from FAR_EL2.
pub const fn fault_ipa(hpfar: u64, far: u64) -> u64 {
    ((hpfar >> 4) & 0xff_ffff_ffff) << 12 | (far & 0xfff)
}

/// What the exit counters count; one per decoded reason, stage-2 faults split by outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Counter {
    Hvc,
    Smc,
    Wfi,
    Wfe,
    SysReg,
    /// Stage-2 faults on guest RAM resolved by the memory core (mapped).
    Stage2Mapped,
    /// Stage-2 faults that raced an invalidation and re-ran the access.
    Stage2Retry,
    /// Data aborts emulated by a virtual device.
    Mmio,
    /// Aborts injected into the guest (outside RAM and devices, ISV = 0, device errors).
    AbortInjected,
    /// UNDEFINED injected (unknown exception class or trapped register).
    UndefInjected,
    Irq,
    /// Virtual-timer interrupts forwarded (an event, not an exit of its own).
    VtimerIrq,
    /// VM reboots (PSCI SYSTEM_RESET).
    Reset,
    /// Guest pages moved to new frames.
    Migrated,
    /// Pages reported by dirty-log harvests.
    DirtyHarvested,
    /// Dirty-log harvests.
    Harvests,
    Fiq,
    SError,
}

impl Counter {
    pub const ALL: [Counter; 18] = [
        Counter::Hvc,
        Counter::Smc,
        Counter::Wfi,
        Counter::Wfe,
        Counter::SysReg,
        Counter::Stage2Mapped,
        Counter::Stage2Retry,
        Counter::Mmio,
        Counter::AbortInjected,
        Counter::UndefInjected,
        Counter::Irq,
        Counter::VtimerIrq,
        Counter::Reset,
        Counter::Migrated,
        Counter::DirtyHarvested,
        Counter::Harvests,
        Counter::Fiq,
        Counter::SError,
    ];

    /// Whether the counter counts guest exits (rather than events during them).
    pub const fn is_exit(self) -> bool {
        !matches!(
            self,
            Counter::VtimerIrq
                | Counter::Reset
                | Counter::Migrated
                | Counter::DirtyHarvested
                | Counter::Harvests
        )
    }

    pub const fn name(self) -> &'static str {
        match self {
            Counter::Hvc => "hvc",
            Counter::Smc => "smc",
            Counter::Wfi => "wfi",
            Counter::Wfe => "wfe",
            Counter::SysReg => "sysreg",
            Counter::Stage2Mapped => "s2-fault-mapped",
            Counter::Stage2Retry => "s2-fault-retry",
            Counter::Mmio => "mmio",
            Counter::AbortInjected => "abort-injected",
            Counter::UndefInjected => "undef-injected",
            Counter::Irq => "irq",
            Counter::VtimerIrq => "vtimer-irq",
            Counter::Reset => "reset",
            Counter::Migrated => "migrated",
            Counter::DirtyHarvested => "dirty-harvested",
            Counter::Harvests => "harvests",
            Counter::Fiq => "fiq",
            Counter::SError => "serror",
        }
    }
}

/// Exit counters of one VM, updated by every vCPU (relaxed: they are statistics).
pub struct ExitStats {
    counts: [AtomicU64; Counter::ALL.len()],
}

impl Default for ExitStats {
    fn default() -> Self {
        Self::new()
    }
}

impl ExitStats {
    pub const fn new() -> Self {
        Self {
            counts: [const { AtomicU64::new(0) }; Counter::ALL.len()],
        }
    }
    pub fn count(&self, c: Counter) {
        self.add(c, 1);
    }
    pub fn add(&self, c: Counter, n: u64) {
        self.counts[c as usize].fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self, c: Counter) -> u64 {
        self.counts[c as usize].load(Ordering::Relaxed)
    }
    /// Guest exits (events such as forwarded timer interrupts or migrations not included).
    pub fn total(&self) -> u64 {
        Counter::ALL
            .iter()
            .filter(|c| c.is_exit())
            .map(|&c| self.get(c))
            .sum()
    }
}

/// `name=count` for every non-zero counter, space separated ("no exits" when all are zero).
impl fmt::Display for ExitStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut any = false;
        for c in Counter::ALL {
            let n = self.get(c);
            if n != 0 {
                if any {
                    f.write_str(" ")?;
                }
                write!(f, "{}={n}", c.name())?;
                any = true;
            }
        }
        if !any {
            f.write_str("no exits")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn esr(ec: u64, iss: u64) -> u64 {
        ec << 26 | 1 << 25 | iss
    }

    #[test]
    fn hvc_smc_and_wfx() {
        assert_eq!(
            decode(ExitKind::Sync, esr(0x16, 0x1234)),
            ExitReason::Hvc { imm: 0x1234 }
        );
        assert_eq!(
            decode(ExitKind::Sync, esr(0x17, 0)),
            ExitReason::Smc { imm: 0 }
        );
        assert_eq!(decode(ExitKind::Sync, esr(0x01, 0)), ExitReason::Wfi);
        assert_eq!(decode(ExitKind::Sync, esr(0x01, 1)), ExitReason::Wfe);
        // WFIT (TI = 0b10) is a wait with a timeout: treated like WFE (a yield).
        assert_eq!(decode(ExitKind::Sync, esr(0x01, 2)), ExitReason::Wfe);
    }

    #[test]
    fn vector_kind_wins_over_the_syndrome() {
        assert_eq!(decode(ExitKind::Irq, esr(0x16, 0)), ExitReason::Irq);
        assert_eq!(decode(ExitKind::Fiq, 0), ExitReason::Fiq);
        assert_eq!(
            decode(ExitKind::SError, 0xbf00_0000),
            ExitReason::SError { esr: 0xbf00_0000 }
        );
        assert_eq!(ExitKind::from_raw(4), None);
        assert_eq!(ExitKind::from_raw(1), Some(ExitKind::Irq));
    }

    #[test]
    fn msr_icc_sgi1r_el1_decodes_to_its_encoding() {
        // MSR ICC_SGI1R_EL1, x5: Op0=3 Op2=5 Op1=0 CRn=12 Rt=5 CRm=11 Dir=0.
        let iss = 3 << 20 | 5 << 17 | 12 << 10 | 5 << 5 | 11 << 1;
        let ExitReason::SysReg(a) = decode(ExitKind::Sync, esr(0x18, iss)) else {
            panic!("not a sysreg exit");
        };
        assert_eq!(a.reg, SysReg::ICC_SGI1R_EL1);
        assert_eq!(a.rt, 5);
        assert!(!a.read);
        // MRS CNTP_CTL_EL0 (3, 3, c14, c2, 1) into x0.
        let iss = 3 << 20 | 1 << 17 | 3 << 14 | 14 << 10 | 2 << 1 | 1;
        let ExitReason::SysReg(a) = decode(ExitKind::Sync, esr(0x18, iss)) else {
            panic!("not a sysreg exit");
        };
        assert_eq!(a.reg, SysReg::new(3, 3, 14, 2, 1));
        assert!(a.read);
        assert_eq!(a.reg.to_string(), "S3_3_C14_C2_1");
    }

    #[test]
    fn aborts_keep_direction_status_and_walk_bits() {
        // Data abort, write, level-2 translation fault, on a stage-1 walk.
        let ExitReason::Abort(a) = decode(ExitKind::Sync, esr(0x24, 1 << 6 | 1 << 7 | 0x06)) else {
            panic!("not an abort");
        };
        assert!(a.data && a.write && a.s1ptw && a.is_stage2_fault());
        assert!(!a.is_permission_fault());
        // Instruction abort: WnR is not a field there, even if bit 6 were set.
        let ExitReason::Abort(a) = decode(ExitKind::Sync, esr(0x20, 1 << 6 | 0x0f)) else {
            panic!("not an abort");
        };
        assert!(!a.data && !a.write && a.is_permission_fault());
        // Synchronous external abort: not something stage 2 resolves.
        let ExitReason::Abort(a) = decode(ExitKind::Sync, esr(0x24, 0x10 | 1 << 10)) else {
            panic!("not an abort");
        };
        assert!(!a.is_stage2_fault() && a.far_invalid);
    }

    #[test]
    fn lpa2_level_minus_one_translation_fault_is_a_stage2_fault() {
        // What QEMU gave when a restored 52-bit-VA (FEAT_LPA2, 5-level) Linux first fetched an
        // instruction: instruction abort, S1PTW, IFSC 0x2b (translation fault, level -1).
        let ExitReason::Abort(a) = decode(ExitKind::Sync, 0x8200_00ab) else {
            panic!("not an abort");
        };
        assert!(!a.data && a.s1ptw && a.fsc == 0x2b);
        assert!(a.is_stage2_fault());
        assert!(!a.is_permission_fault());
    }

    #[test]
    fn unknown_classes_are_other() {
        assert_eq!(
            decode(ExitKind::Sync, esr(0x00, 0)),
            ExitReason::Other { ec: 0 }
        );
        assert_eq!(
            decode(ExitKind::Sync, esr(0x07, 0)),
            ExitReason::Other { ec: 7 }
        );
    }

    #[test]
    fn fault_ipa_combines_hpfar_and_far() {
        // IPA 0x4123_4567: FIPA = 0x41234 at bits [43:4].
        assert_eq!(fault_ipa(0x41234 << 4, 0xffff_0000_dead_0567), 0x4123_4567);
        // Bits above FIPA in HPFAR (NS, bit 63) are ignored.
        assert_eq!(fault_ipa(1 << 63 | 0x9000 << 4, 0x10), 0x900_0010);
    }

    #[test]
    fn stats_count_and_print_only_non_zero() {
        let s = ExitStats::new();
        assert_eq!(s.to_string(), "no exits");
        s.count(Counter::Hvc);
        s.count(Counter::Hvc);
        s.count(Counter::Stage2Mapped);
        assert_eq!(s.get(Counter::Hvc), 2);
        assert_eq!(s.total(), 3);
        assert_eq!(s.to_string(), "hvc=2 s2-fault-mapped=1");
    }
}
