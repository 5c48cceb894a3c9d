use super::*;

const PFR0: SysReg = SysReg::new(3, 0, 0, 4, 0);
const PFR1: SysReg = SysReg::new(3, 0, 0, 4, 1);
const ZFR0: SysReg = SysReg::new(3, 0, 0, 4, 4);
const SMFR0: SysReg = SysReg::new(3, 0, 0, 4, 5);
const DFR0: SysReg = SysReg::new(3, 0, 0, 5, 0);
const ISAR1: SysReg = SysReg::new(3, 0, 0, 6, 1);
const ISAR2: SysReg = SysReg::new(3, 0, 0, 6, 2);
const MMFR0: SysReg = SysReg::new(3, 0, 0, 7, 0);
const MMFR3: SysReg = SysReg::new(3, 0, 0, 7, 3);

fn field(v: u64, shift: u32) -> u64 {
    (v >> shift) & 0xf
}

/// ID registers of a host like QEMU's `-cpu max`: SVE, SME, MTE, BTI, pointer authentication,
/// a PMU and SPE, permission indirection.
fn qemu_max(crm: u8, op2: u8) -> u64 {
    match (crm, op2) {
        (1, 0) => 0x0000_0000_0000_0131, // ID_PFR0
        (4, 0) => 0x1201_0011_2111_2222, // PFR0: SVE 1, GIC 1, EL3..EL0 AArch64+32
        (4, 1) => 0x0000_0000_0100_0221, // PFR1: SME 1, MTE 2, SSBS 2, BT 1
        (4, 4) => 0x0110_0110_0000_0011, // ZFR0
        (4, 5) => 0x80f0_0000_0000_0000, // SMFR0
        (5, 0) => 0x0000_0001_1030_5106, // DFR0: PMSVer 1, PMUVer 5
        (6, 0) => 0x1021_1111_1021_2120,
        (6, 1) => 0x0011_1010_1021_1011, // ISAR1 with pointer authentication
        (6, 2) => 0x0000_0000_0001_0011, // ISAR2: MOPS 1, WFxT 1
        (7, 0) => 0x1000_0001_0010_1126, // MMFR0: PARange 48 bits
        (7, 1) => 0x0000_1100_1021_2122,
        (7, 2) => 0x1221_0110_1011_1011,
        (7, 3) => 0x0000_0000_0000_1111, // MMFR3: TCRX, SCTLRX, S1PIE, S2PIE
        _ => 0,
    }
}

#[test]
fn sve_and_sme_are_hidden() {
    let g = GuestIdRegs::new(qemu_max, 40);
    let pfr0 = g.read(PFR0).unwrap();
    let pfr1 = g.read(PFR1).unwrap();
    assert_eq!(field(pfr0, 32), 0, "SVE");
    assert_eq!(field(pfr1, 24), 0, "SME");
    assert_eq!(g.read(ZFR0), Some(0));
    assert_eq!(g.read(SMFR0), Some(0));
    // And neither is anything whose state a snapshot does not carry.
    assert_eq!(field(pfr1, 8), 0, "MTE");
    assert_eq!(
        g.read(MMFR3),
        Some(0),
        "TCR2, SCTLR2, permission indirection"
    );
    let isar2 = g.read(ISAR2).unwrap();
    assert_eq!(field(isar2, 0), 0, "WFxT");
    assert_eq!(field(isar2, 16), 0, "MOPS");
    let dfr0 = g.read(DFR0).unwrap();
    assert_eq!(field(dfr0, 8), 0, "PMU");
    assert_eq!(field(dfr0, 32), 0, "SPE");
}

#[test]
fn what_is_shown_is_the_hosts() {
    let g = GuestIdRegs::new(qemu_max, 40);
    let pfr0 = g.read(PFR0).unwrap();
    assert_eq!(field(pfr0, 0), 2, "EL0 AArch64 and AArch32");
    assert_eq!(field(pfr0, 4), 1, "EL1 AArch64 only");
    assert_eq!(field(pfr0, 8), 0, "no EL2: no nested virtualization");
    assert_eq!(field(pfr0, 12), 2, "EL3");
    assert_eq!(field(pfr0, 16), 1, "FP with FP16");
    assert_eq!(field(pfr0, 24), 1, "GICv3 system registers");
    let pfr1 = g.read(PFR1).unwrap();
    assert_eq!(field(pfr1, 0), 1, "BTI");
    assert_eq!(field(pfr1, 4), 2, "SSBS");
    // Pointer authentication: the keys are saved.
    assert_eq!(g.read(ISAR1), Some(qemu_max(6, 1)));
    assert_eq!(
        g.read(SysReg::new(3, 0, 0, 6, 0)),
        Some(qemu_max(6, 0) & !(0xf << 24))
    );
    // AArch32 EL0's registers as the host has them.
    assert_eq!(g.read(SysReg::new(3, 0, 0, 1, 0)), Some(0x131));
}

#[test]
fn fields_not_reviewed_read_as_not_implemented() {
    // A host with every field at its highest value: only the allowlisted fields come through.
    let g = GuestIdRegs::new(|_, _| u64::MAX, 48);
    let pfr0 = g.read(PFR0).unwrap();
    assert_eq!(field(pfr0, 4), 1, "EL1 capped");
    assert_eq!(field(pfr0, 24), 1, "GIC capped at v3");
    for shift in [8, 32, 36, 40, 44, 52] {
        assert_eq!(field(pfr0, shift), 0, "PFR0 [{}:{shift}]", shift + 3);
    }
    let pfr1 = g.read(PFR1).unwrap();
    assert_eq!(pfr1, 0xf_0000_f0ff, "BT, SSBS, RAS_frac, CSV2_frac only");
    for crm_op2 in [
        (4, 2),
        (4, 4),
        (4, 5),
        (4, 7),
        (5, 1),
        (6, 3),
        (7, 3),
        (7, 4),
    ] {
        let reg = SysReg::new(3, 0, 0, crm_op2.0, crm_op2.1);
        assert_eq!(g.read(reg), Some(0), "{reg}");
    }
    assert_eq!(field(g.read(MMFR0).unwrap(), 60), 1, "ECV capped at 1");
}

#[test]
fn signed_fields_hide_as_0xf() {
    // A host without FP, AdvSIMD, 4K or 64K granules, or DoubleLock says 0xF there; the guest
    // must see 0xF too (0 would claim them), and sees it for fields it may not have at all.
    let host = |crm, op2| match (crm, op2) {
        (4, 0) => 0xff << 16,
        (5, 0) => 0xf << 36,
        (7, 0) => 0xff << 24,
        _ => 0,
    };
    let g = GuestIdRegs::new(host, 40);
    assert_eq!(field(g.read(PFR0).unwrap(), 16), 0xf);
    assert_eq!(field(g.read(PFR0).unwrap(), 20), 0xf);
    assert_eq!(field(g.read(DFR0).unwrap(), 36), 0xf);
    assert_eq!(field(g.read(MMFR0).unwrap(), 24), 0xf);
    assert_eq!(field(g.read(MMFR0).unwrap(), 28), 0xf);
}

#[test]
fn parange_covers_the_guest_ipa_space() {
    // (IPA bits, host PARange) -> guest PARange
    for (ipa, host, want) in [
        (40, 5, 2),
        (39, 5, 2),
        (32, 5, 0),
        (33, 5, 1),
        (44, 5, 4),
        (48, 5, 5),
        (52, 5, 5),
        (40, 1, 1),
    ] {
        let g = GuestIdRegs::new(|crm, op2| if (crm, op2) == (7, 0) { host } else { 0 }, ipa);
        assert_eq!(
            field(g.read(MMFR0).unwrap(), 0),
            want,
            "ipa {ipa} host {host}"
        );
    }
}

#[test]
fn only_the_id_space_is_answered() {
    let g = GuestIdRegs::new(qemu_max, 40);
    // MIDR, MPIDR (CRm 0), the GIC's registers, another op1: not ours.
    for reg in [
        SysReg::new(3, 0, 0, 0, 0),
        SysReg::new(3, 0, 0, 0, 5),
        SysReg::ICC_SGI1R_EL1,
        SysReg::new(3, 1, 0, 4, 0),
        SysReg::new(2, 0, 0, 4, 0),
        SysReg::new(3, 0, 0, 8, 0),
    ] {
        assert_eq!(g.read(reg), None, "{reg}");
    }
    // Reserved encodings in the space read as zero.
    assert_eq!(g.read(SysReg::new(3, 0, 0, 4, 3)), Some(0));
    assert_eq!(g.read(SysReg::new(3, 0, 0, 7, 7)), Some(0));
}
