//! Exceptions the hypervisor makes the guest take: a synchronous external abort for an access
//! nothing answers, UNDEFINED for an instruction or register we do not emulate.
//!
//! Portable: given the vCPU's PC, PSTATE and VBAR_EL1 this computes the EL1 registers the
//! exception entry would have produced (ESR_EL1, FAR_EL1, ELR_EL1, SPSR_EL1) and where the vCPU
//! continues, exactly as the Arm ARM's "AArch64.TakeException" does for a synchronous exception
//! taken to EL1. The arch layer writes the result into the (live) EL1 registers.
#![forbid(unsafe_code)]

/// What to inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Injection {
    /// Synchronous external abort on a data access at virtual address `far`.
    DataAbort { far: u64, write: bool },
    /// Synchronous external abort on an instruction fetch at `far`.
    InstructionAbort { far: u64 },
    /// The instruction at the PC is UNDEFINED (EC 0, "unknown reason").
    Undefined,
}

/// The EL1 state after the exception is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct El1Entry {
    pub esr: u64,
    /// `None` keeps FAR_EL1 unchanged (UNDEFINED does not set it).
    pub far: Option<u64>,
    pub elr: u64,
    pub spsr: u64,
    /// The new PC (VBAR_EL1 plus the vector offset) and PSTATE.
    pub pc: u64,
    pub pstate: u64,
}

/// PSTATE.M values (AArch64).
const M_EL0T: u64 = 0b0000;
const M_EL1T: u64 = 0b0100;
const M_EL1H: u64 = 0b0101;
/// PSTATE.nRW: the interrupted state was AArch32.
const M_AARCH32: u64 = 1 << 4;
/// D, A, I, F: all masked on exception entry.
const DAIF: u64 = 0b1111 << 6;
/// PSTATE.PAN: kept as it was (SCTLR_EL1.SPAN = 1 semantics, what Linux configures).
const PAN: u64 = 1 << 22;
/// ESR.IL: a 32-bit instruction.
const ESR_IL: u64 = 1 << 25;
/// DFSC/IFSC "synchronous external abort, not on a translation table walk".
const FSC_SEA: u64 = 0x10;
const ESR_WNR: u64 = 1 << 6;

/// The offset of the synchronous vector for an exception taken to EL1 from `pstate`'s mode:
/// current EL with SP_EL0 (0x000), current EL with SP_EL1 (0x200), lower EL AArch64 (0x400),
/// lower EL AArch32 (0x600).
pub const fn sync_vector_offset(pstate: u64) -> u64 {
    if pstate & M_AARCH32 != 0 {
        return 0x600;
    }
    match pstate & 0xf {
        M_EL1T => 0x000,
        M_EL1H => 0x200,
        _ => 0x400,
    }
}

/// The exception entry for `what` taken by a vCPU at `pc` with `pstate`, vectors at `vbar`.
pub const fn take(what: Injection, pc: u64, pstate: u64, vbar: u64) -> El1Entry {
    // Exception class: the "same EL" variant when the guest was at EL1, else "lower EL".
    let from_el0 = pstate & M_AARCH32 != 0 || pstate & 0xf == M_EL0T;
    let (esr, far) = match what {
        Injection::DataAbort { far, write } => {
            let ec: u64 = if from_el0 { 0x24 } else { 0x25 };
            let wnr = if write { ESR_WNR } else { 0 };
            (ec << 26 | ESR_IL | wnr | FSC_SEA, Some(far))
        }
        Injection::InstructionAbort { far } => {
            let ec: u64 = if from_el0 { 0x20 } else { 0x21 };
            (ec << 26 | ESR_IL | FSC_SEA, Some(far))
        }
        Injection::Undefined => (ESR_IL, None),
    };
    El1Entry {
        esr,
        far,
        elr: pc,
        spsr: pstate,
        pc: (vbar & !0x7ff) + sync_vector_offset(pstate),
        pstate: M_EL1H | DAIF | (pstate & PAN),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EL1H_UNMASKED: u64 = 0b0101;
    const VBAR: u64 = 0xffff_8000_1001_0800;

    #[test]
    fn vector_offset_follows_the_interrupted_mode() {
        assert_eq!(sync_vector_offset(0b0101), 0x200);
        assert_eq!(sync_vector_offset(0b0100), 0x000);
        assert_eq!(sync_vector_offset(0b0000), 0x400);
        assert_eq!(sync_vector_offset(0b1_0000), 0x600);
        // DAIF and flags do not change the choice.
        assert_eq!(sync_vector_offset(0xf000_03c5), 0x200);
    }

    #[test]
    fn data_abort_from_el1_is_same_el_with_far_and_wnr() {
        let e = take(
            Injection::DataAbort {
                far: 0xdead_b000,
                write: true,
            },
            0x4008_0000,
            EL1H_UNMASKED | 1 << 29,
            VBAR,
        );
        assert_eq!(e.esr >> 26, 0x25);
        assert_eq!(e.esr & 0x3f, 0x10);
        assert_ne!(e.esr & ESR_WNR, 0);
        assert_ne!(e.esr & ESR_IL, 0);
        assert_eq!(e.far, Some(0xdead_b000));
        assert_eq!(e.elr, 0x4008_0000);
        // SPSR_EL1 keeps the interrupted PSTATE, flags included.
        assert_eq!(e.spsr, EL1H_UNMASKED | 1 << 29);
        assert_eq!(e.pc, VBAR + 0x200);
        assert_eq!(e.pstate, 0x3c5);
    }

    #[test]
    fn aborts_from_el0_use_the_lower_el_class_and_vector() {
        let e = take(Injection::InstructionAbort { far: 0x1000 }, 0x1000, 0, VBAR);
        assert_eq!(e.esr >> 26, 0x20);
        assert_eq!(e.pc, VBAR + 0x400);
        let e = take(
            Injection::DataAbort {
                far: 8,
                write: false,
            },
            0x2000,
            0,
            VBAR,
        );
        assert_eq!(e.esr >> 26, 0x24);
        assert_eq!(e.esr & ESR_WNR, 0);
    }

    #[test]
    fn undefined_has_class_zero_and_leaves_far() {
        let e = take(Injection::Undefined, 0x4000_0000, 0x3c5 | PAN, VBAR);
        assert_eq!(e.esr, ESR_IL);
        assert_eq!(e.far, None);
        // PAN survives the entry; the rest of PSTATE is EL1h with everything masked.
        assert_eq!(e.pstate, 0x3c5 | PAN);
    }

    #[test]
    fn vbar_low_bits_are_ignored() {
        let e = take(Injection::Undefined, 0, EL1H_UNMASKED, 0x8000_07ff);
        assert_eq!(e.pc, 0x8000_0200);
    }
}
