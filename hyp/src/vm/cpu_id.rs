//! The CPU a guest is shown: its ID registers, curated from the host's.
//!
//! With HCR_EL2.TID3 every EL1 read of the ID register space (op0 3, op1 0, CRn 0, CRm 1 to
//! 7) traps, and the guest reads the values computed here. The rule: a feature the guest is
//! shown must work in full, through pause, snapshot, restore and migration; anything else is
//! hidden, so a guest never discovers a feature and then has its first use refused (SME traps
//! at EL2, and a kernel that saw it in ID_AA64PFR1 hung at its first SMSTOP) or loses its state
//! in a snapshot (SVE's Z, P and FFR registers are not saved).
//!
//! The AArch64 registers are built from an allowlist of 4-bit fields: a field that is not
//! listed reads as "not implemented" (0, or 0xF for the few signed fields whose 0 means
//! "implemented"). So a feature a newer CPU adds stays hidden until it is reviewed and listed
//! here, with whatever state it needs saved in snapshots. What is shown, and why the rest is
//! not, is in README.md ("The CPU a guest sees").
#![forbid(unsafe_code)]

use super::exit::SysReg;

/// How one 4-bit field of a host register reaches the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    /// As the host has it.
    Keep(u8),
    /// The host's value, but at most `max` (an unsigned field).
    Cap(u8, u8),
}

impl Field {
    const fn shift(self) -> u8 {
        match self {
            Self::Keep(s) | Self::Cap(s, _) => s,
        }
    }
}

/// An AArch64 ID register: its CRm/op2 within the ID space, its fields shown to the guest,
/// and the signed fields whose "not implemented" is 0xF.
struct IdRegSpec {
    crm: u8,
    op2: u8,
    shown: &'static [Field],
    signed_hidden: &'static [u8],
}

use Field::{Cap, Keep};

/// The AArch64 ID registers with anything to show. Every other encoding of CRm 4 to 7 reads as
/// zero (reserved, or a register none of whose features is shown: ID_AA64PFR2, ZFR0 (SVE),
/// SMFR0 (SME), FPFR0 (FP8), DFR1, AFR0/1, ISAR3, MMFR3 (TCR2, SCTLR2, permission indirection
/// and overlays: EL1 state a snapshot does not carry), MMFR4).
const AARCH64: &[IdRegSpec] = &[
    // ID_AA64PFR0_EL1. EL0/EL1 AArch64 (and AArch32 EL0 as the host has it), no EL2 (no
    // nested virtualization); EL3 as the host (PSCI over SMC traps to us). FP and AdvSIMD
    // (q0-q31, FPCR, FPSR are saved), GICv3 system registers (ICH-backed), RAS (its
    // architected state is virtualized at EL2), DIT, CSV2, CSV3. Hidden: SVE [35:32], SEL2,
    // MPAM, AMU (counters not saved), RME.
    IdRegSpec {
        crm: 4,
        op2: 0,
        shown: &[
            Keep(0),
            Cap(4, 1),
            Keep(12),
            Keep(16),
            Keep(20),
            Cap(24, 1),
            Keep(28),
            Keep(48),
            Keep(56),
            Keep(60),
        ],
        signed_hidden: &[16, 20],
    },
    // ID_AA64PFR1_EL1. BTI (PSTATE.BTYPE and SCTLR_EL1 bits are saved), SSBS (PSTATE),
    // RAS_frac, CSV2_frac. Hidden: MTE (allocation tags are not saved), SME [27:24] (traps at
    // EL2), RNDR_trap, NMI (ALLINT not saved), GCS (its registers are not saved), THE, MPAM,
    // DF2, PFAR.
    IdRegSpec {
        crm: 4,
        op2: 1,
        shown: &[Keep(0), Keep(4), Keep(12), Keep(32)],
        signed_hidden: &[],
    },
    // ID_AA64DFR0_EL1. The debug architecture with its breakpoint and watchpoint counts, and
    // DoubleLock as the host has it. Hidden: PMU (the guest gets no PMU: not described in its
    // DT, its counters not saved), trace, SPE, TRBE, BRBE.
    IdRegSpec {
        crm: 5,
        op2: 0,
        shown: &[Keep(0), Keep(12), Keep(20), Keep(28), Keep(36)],
        signed_hidden: &[36],
    },
    // ID_AA64ISAR0_EL1: instructions with no state of their own (crypto, CRC32, atomics, RDM,
    // dot product, FHM, flag manipulation, TLB range/outer-shareable maintenance, RNDR).
    // Hidden: TME [27:24] (transactional memory).
    IdRegSpec {
        crm: 6,
        op2: 0,
        shown: &[
            Keep(4),
            Keep(8),
            Keep(12),
            Keep(16),
            Keep(20),
            Keep(28),
            Keep(32),
            Keep(36),
            Keep(40),
            Keep(44),
            Keep(48),
            Keep(52),
            Keep(56),
            Keep(60),
        ],
        signed_hidden: &[],
    },
    // ID_AA64ISAR1_EL1: DPB, pointer authentication (the keys are saved), JSCVT, FCMA, LRCPC,
    // FRINTTS, SB, SPECRES, BF16, DGH, I8MM, XS. Hidden: LS64 [63:60] (ACCDATA_EL1 not saved,
    // gated by HCRX_EL2).
    IdRegSpec {
        crm: 6,
        op2: 1,
        shown: &[
            Keep(0),
            Keep(4),
            Keep(8),
            Keep(12),
            Keep(16),
            Keep(20),
            Keep(24),
            Keep(28),
            Keep(32),
            Keep(36),
            Keep(40),
            Keep(44),
            Keep(48),
            Keep(52),
            Keep(56),
        ],
        signed_hidden: &[],
    },
    // ID_AA64ISAR2_EL1: RPRES, pointer authentication QARMA3, BC, PAC_frac, CLRBHB, PRFMSLC,
    // PCDPHINT, RPRFM, CSSC. Hidden: WFxT [3:0] (a WFIT's timeout is not emulated), MOPS [19:16]
    // (needs HCRX_EL2.MSCEn), the 128-bit system registers and instructions, ATS1A.
    IdRegSpec {
        crm: 6,
        op2: 2,
        shown: &[
            Keep(4),
            Keep(8),
            Keep(12),
            Keep(20),
            Keep(24),
            Keep(28),
            Keep(40),
            Keep(44),
            Keep(48),
            Keep(52),
        ],
        signed_hidden: &[],
    },
    // ID_AA64MMFR0_EL1. PARange covers the guest's IPA size (set per VM), ASID bits, endianness,
    // the stage-1 granules (TGran16 [23:20] unsigned; TGran64 [27:24] and TGran4 [31:28] are
    // signed), the stage-2 granule fields as "see the stage-1 field" (0), ExS, and ECV at most
    // 1 (self-synchronized counter views; not the EL2 offset controls). Hidden: FGT.
    IdRegSpec {
        crm: 7,
        op2: 0,
        shown: &[
            Keep(4),
            Keep(8),
            Keep(12),
            Keep(16),
            Keep(20),
            Keep(24),
            Keep(28),
            Keep(44),
            Cap(60, 1),
        ],
        signed_hidden: &[24, 28],
    },
    // ID_AA64MMFR1_EL1: hardware access flag and dirty state for stage 1 (at most 2: HAFT
    // needs TCR2_EL1), HPDS, PAN (PSTATE.PAN is saved), XNX, ETS, AFP (FPCR is saved), nTLBPA,
    // CMOW (an SCTLR_EL1 bit), ECBHB. Hidden: LO (the LOR registers are not saved), and the EL2
    // features VMIDBits, VH, SpecSEI, TWED, HCX, TIDCP1.
    IdRegSpec {
        crm: 7,
        op2: 1,
        shown: &[
            Cap(0, 2),
            Keep(12),
            Keep(20),
            Keep(28),
            Keep(36),
            Keep(44),
            Keep(48),
            Keep(56),
            Keep(60),
        ],
        signed_hidden: &[],
    },
    // ID_AA64MMFR2_EL1: CnP, UAO, LSM, IESB, VARange, CCIDX, ST, AT, IDS, TTL, BBM, E0PD.
    // Hidden: NV, FWB, EVT (EL2 features).
    IdRegSpec {
        crm: 7,
        op2: 2,
        shown: &[
            Keep(0),
            Keep(4),
            Keep(8),
            Keep(12),
            Keep(16),
            Keep(20),
            Keep(28),
            Keep(32),
            Keep(36),
            Keep(48),
            Keep(52),
            Keep(60),
        ],
        signed_hidden: &[],
    },
];

/// PARange encodings: 32, 36, 40, 42, 44, 48, 52 bits.
const PA_RANGES: [u8; 7] = [32, 36, 40, 42, 44, 48, 52];

/// The values of the ID register space a guest reads: CRm 1 to 7, op2 0 to 7.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestIdRegs {
    values: [u64; 7 * 8],
}

impl GuestIdRegs {
    /// The guest's view of a host whose ID register (CRm, op2) holds `host(crm, op2)`, for a
    /// guest whose IPA space is `ipa_bits` wide. The AArch32 registers (CRm 1 to 3) are the
    /// host's: they describe AArch32 EL0, whose state is the general-purpose registers a
    /// snapshot saves.
    pub fn new(host: impl Fn(u8, u8) -> u64, ipa_bits: u8) -> Self {
        let mut values = [0u64; 7 * 8];
        for crm in 1..=3u8 {
            for op2 in 0..8u8 {
                values[index(crm, op2)] = host(crm, op2);
            }
        }
        for spec in AARCH64 {
            values[index(spec.crm, spec.op2)] = curate(spec, host(spec.crm, spec.op2));
        }
        // The smallest PARange that covers every IPA the guest can use (its DT describes
        // nothing above), at most the host's.
        let mmfr0 = &mut values[index(7, 0)];
        let host_range = (host(7, 0) & 0xf) as u8;
        let guest_range = PA_RANGES
            .iter()
            .position(|&bits| bits >= ipa_bits)
            .unwrap_or(PA_RANGES.len() - 1) as u8;
        *mmfr0 = (*mmfr0 & !0xf) | u64::from(guest_range.min(host_range));
        Self { values }
    }

    /// What the guest reads from `reg`, if it lies in the trapped ID register space.
    pub fn read(&self, reg: SysReg) -> Option<u64> {
        let in_space = reg.op0 == 3 && reg.op1 == 0 && reg.crn == 0 && (1..=7).contains(&reg.crm);
        in_space.then(|| self.values[index(reg.crm, reg.op2 & 7)])
    }
}

fn index(crm: u8, op2: u8) -> usize {
    usize::from(crm - 1) * 8 + usize::from(op2)
}

fn curate(spec: &IdRegSpec, host: u64) -> u64 {
    let field = |shift: u8| (host >> shift) & 0xf;
    let mut value = 0;
    for &shift in spec.signed_hidden {
        value |= 0xf << shift;
    }
    for &f in spec.shown {
        let shown = match f {
            Keep(s) => field(s),
            Cap(s, max) => field(s).min(u64::from(max)),
        };
        value = (value & !(0xf << f.shift())) | (shown << f.shift());
    }
    value
}

#[cfg(test)]
mod tests;
