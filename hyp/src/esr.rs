//! ESR_ELx, the exception syndrome: the one place that knows its bit layout (Arm ARM, "ESR_EL2,
//! Exception Syndrome Register (EL2)"). The exit decoder (`vm::exit`), the MMIO emulation
//! (`vdev::mmio`) and the report of an unexpected exception read fields through [`Esr`].
//! Portable: pure bit decoding, tested on the host.
#![forbid(unsafe_code)]

use core::fmt;

/// Exception classes (ESR[31:26]) the hypervisor tells apart.
pub mod ec {
    pub const UNKNOWN: u8 = 0x00;
    pub const WFX: u8 = 0x01;
    pub const HVC64: u8 = 0x16;
    pub const SMC64: u8 = 0x17;
    pub const SYSREG: u8 = 0x18;
    pub const IABT_LOW: u8 = 0x20;
    pub const IABT_CUR: u8 = 0x21;
    pub const DABT_LOW: u8 = 0x24;
    pub const DABT_CUR: u8 = 0x25;
}

/// An exception syndrome register value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Esr(pub u64);

impl Esr {
    const fn bit(self, n: u32) -> bool {
        self.0 & (1 << n) != 0
    }
    const fn field(self, shift: u32, bits: u32) -> u64 {
        (self.0 >> shift) & ((1 << bits) - 1)
    }

    /// Exception class, ESR[31:26].
    pub const fn ec(self) -> u8 {
        self.field(26, 6) as u8
    }

    /// Instruction-specific syndrome, ESR[24:0].
    pub const fn iss(self) -> u32 {
        self.field(0, 25) as u32
    }

    /// HVC/SMC: the instruction's 16-bit immediate, ISS[15:0].
    pub const fn imm16(self) -> u16 {
        self.field(0, 16) as u16
    }

    /// WFx: TI, ISS[1:0] (0 = WFI, otherwise WFE, WFIT or WFET).
    pub const fn wfx_ti(self) -> u8 {
        self.field(0, 2) as u8
    }

    /// Trapped MSR/MRS: `(op0, op1, CRn, CRm, op2)`.
    pub const fn sysreg(self) -> (u8, u8, u8, u8, u8) {
        (
            self.field(20, 2) as u8,
            self.field(14, 3) as u8,
            self.field(10, 4) as u8,
            self.field(1, 4) as u8,
            self.field(17, 3) as u8,
        )
    }

    /// Trapped MSR/MRS: Rt, ISS[9:5].
    pub const fn sysreg_rt(self) -> u8 {
        self.field(5, 5) as u8
    }

    /// Trapped MSR/MRS: the guest reads the register (MRS), ISS[0].
    pub const fn sysreg_read(self) -> bool {
        self.bit(0)
    }

    /// Whether the exception is an instruction or data abort (ISS carries a fault status code).
    pub const fn is_abort(self) -> bool {
        matches!(
            self.ec(),
            ec::IABT_LOW | ec::IABT_CUR | ec::DABT_LOW | ec::DABT_CUR
        )
    }

    /// Whether the exception is a data abort (from a lower EL or EL2).
    pub const fn is_data_abort(self) -> bool {
        matches!(self.ec(), ec::DABT_LOW | ec::DABT_CUR)
    }

    /// Data/instruction fault status code, ISS[5:0], for aborts.
    pub const fn fsc(self) -> Option<u8> {
        if self.is_abort() {
            Some(self.status())
        } else {
            None
        }
    }

    /// For data aborts: whether the access was a write (WnR, ISS[6]).
    pub const fn is_write(self) -> Option<bool> {
        if self.is_data_abort() {
            Some(self.wnr())
        } else {
            None
        }
    }

    /// For aborts: whether FAR holds the faulting address (FnV, ISS[10], clear when valid).
    pub const fn far_valid(self) -> bool {
        !self.is_abort() || !self.bit(10)
    }

    /// Aborts: the fault status code field, ISS[5:0], read without checking the class.
    pub const fn status(self) -> u8 {
        self.field(0, 6) as u8
    }
    /// Data aborts: WnR, ISS[6], read without checking the class.
    pub const fn wnr(self) -> bool {
        self.bit(6)
    }
    /// Aborts: the fault happened on the stage-1 table walk (S1PTW, ISS[7]).
    pub const fn s1ptw(self) -> bool {
        self.bit(7)
    }

    /// Data aborts: ISV, ISS[24]: the fields below describe the instruction.
    pub const fn isv(self) -> bool {
        self.bit(24)
    }
    /// Data aborts: SAS, ISS[23:22]: log2 of the access size in bytes.
    pub const fn sas(self) -> u8 {
        self.field(22, 2) as u8
    }
    /// Data aborts: SSE, ISS[21]: a load sign-extends.
    pub const fn sse(self) -> bool {
        self.bit(21)
    }
    /// Data aborts: SRT, ISS[20:16]: the transfer register.
    pub const fn srt(self) -> u8 {
        self.field(16, 5) as u8
    }
    /// Data aborts: SF, ISS[15]: the transfer register is 64 bits wide.
    pub const fn sf(self) -> bool {
        self.bit(15)
    }
    /// Data aborts: AR, ISS[14]: acquire/release semantics.
    pub const fn ar(self) -> bool {
        self.bit(14)
    }
    /// Data aborts: CM, ISS[8]: a cache maintenance or address translation instruction.
    pub const fn cm(self) -> bool {
        self.bit(8)
    }
}

/// A system register encoding (op0, op1, CRn, CRm, op2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SysReg {
    pub op0: u8,
    pub op1: u8,
    pub crn: u8,
    pub crm: u8,
    pub op2: u8,
}

impl SysReg {
    /// ICC_SGI1R_EL1: trapped whenever HCR_EL2.IMO is set; the vGIC sends the SGI.
    pub const ICC_SGI1R_EL1: Self = Self::new(3, 0, 12, 11, 5);
    /// ICC_ASGI1R_EL1 and ICC_SGI0R_EL1, trapped alongside.
    pub const ICC_ASGI1R_EL1: Self = Self::new(3, 0, 12, 11, 6);
    pub const ICC_SGI0R_EL1: Self = Self::new(3, 0, 12, 11, 7);

    pub const fn new(op0: u8, op1: u8, crn: u8, crm: u8, op2: u8) -> Self {
        Self {
            op0,
            op1,
            crn,
            crm,
            op2,
        }
    }
}

impl fmt::Display for SysReg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "S{}_{}_C{}_C{}_{}",
            self.op0, self.op1, self.crn, self.crm, self.op2
        )
    }
}

/// A readable name for an exception class, from the EL2 point of view.
pub fn ec_name(ec: u8) -> &'static str {
    match ec {
        0x00 => "unknown reason (undefined instruction)",
        0x01 => "WFI/WFE trapped",
        0x07 => "SVE/SIMD/FP access trapped",
        0x0e => "illegal execution state",
        0x11 | 0x15 => "SVC",
        0x12 | 0x16 => "HVC",
        0x13 | 0x17 => "SMC",
        0x18 => "MSR/MRS/system instruction trapped",
        0x19 => "SVE access trapped",
        0x1c => "pointer authentication failure",
        0x20 => "instruction abort from a lower EL",
        0x21 => "instruction abort from EL2",
        0x22 => "PC alignment fault",
        0x24 => "data abort from a lower EL",
        0x25 => "data abort from EL2",
        0x26 => "SP alignment fault",
        0x2c => "floating-point exception",
        0x2f => "SError",
        0x30 | 0x31 => "breakpoint",
        0x32 | 0x33 => "software step",
        0x34 | 0x35 => "watchpoint",
        0x3c => "BRK instruction",
        _ => "reserved or unhandled class",
    }
}

/// A readable name for an abort's fault status code (DFSC/IFSC).
pub fn fsc_name(fsc: u8) -> &'static str {
    match fsc {
        0x00..=0x03 | 0x29 => "address size fault",
        0x04..=0x07 | 0x2b => "translation fault",
        0x09..=0x0b => "access flag fault",
        0x0d..=0x0f => "permission fault",
        0x10 => "synchronous external abort",
        0x11 => "synchronous tag check fault",
        0x13..=0x17 => "synchronous external abort on table walk",
        0x18 => "synchronous parity/ECC error",
        0x21 => "alignment fault",
        0x30 => "TLB conflict abort",
        0x31 => "unsupported atomic hardware update",
        _ => "other fault",
    }
}

/// The translation level a fault status code refers to, when it names one (-1 with
/// FEAT_LPA2's five-level walks).
pub fn fsc_level(fsc: u8) -> Option<i8> {
    match fsc {
        0x00..=0x0f | 0x14..=0x17 => Some((fsc & 3) as i8),
        0x13 | 0x29 | 0x2b => Some(-1),
        _ => None,
    }
}

/// The decoded syndrome: `EC=0x25 (data abort from EL2) ISS=0x... DFSC=0x07 (...)`.
impl fmt::Display for Esr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ec = self.ec();
        write!(f, "EC={ec:#04x} ({}) ISS={:#x}", ec_name(ec), self.iss())?;
        if let Some(fsc) = self.fsc() {
            let kind = if matches!(ec, 0x24 | 0x25) {
                "DFSC"
            } else {
                "IFSC"
            };
            write!(f, " {kind}={fsc:#04x} ({}", fsc_name(fsc))?;
            if let Some(level) = fsc_level(fsc) {
                write!(f, ", level {level}")?;
            }
            f.write_str(")")?;
            if let Some(write) = self.is_write() {
                f.write_str(if write { " on write" } else { " on read" })?;
            }
            if !self.far_valid() {
                f.write_str(" (FAR not valid)")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn el2_read_translation_fault_names_class_status_and_level() {
        // EC=0x25, IL, DFSC=0x07 (translation fault level 3), read.
        let esr = Esr((0x25 << 26) | (1 << 25) | 0x07);
        assert_eq!(esr.ec(), 0x25);
        assert_eq!(esr.fsc(), Some(0x07));
        assert_eq!(esr.is_write(), Some(false));
        assert_eq!(
            esr.to_string(),
            "EC=0x25 (data abort from EL2) ISS=0x7 DFSC=0x07 (translation fault, level 3) on read"
        );
    }

    #[test]
    fn write_permission_fault_is_reported_as_write() {
        let esr = Esr((0x25 << 26) | (1 << 6) | 0x0f);
        assert_eq!(esr.is_write(), Some(true));
        assert!(
            esr.to_string()
                .contains("DFSC=0x0f (permission fault, level 3) on write")
        );
    }

    #[test]
    fn lpa2_level_minus_one_is_named() {
        // Instruction abort from EL1 on a stage-1 walk, IFSC 0x2b.
        let shown = format!("{}", Esr(0x8200_00ab));
        assert!(
            shown.contains("IFSC=0x2b (translation fault, level -1)"),
            "{shown}"
        );
    }

    #[test]
    fn instruction_abort_uses_ifsc() {
        let esr = Esr((0x21 << 26) | 0x0e);
        assert!(
            esr.to_string()
                .starts_with("EC=0x21 (instruction abort from EL2)")
        );
        assert!(
            esr.to_string()
                .contains("IFSC=0x0e (permission fault, level 2)")
        );
        assert_eq!(esr.is_write(), None);
    }

    #[test]
    fn non_abort_has_no_fault_status() {
        let esr = Esr(0x3c << 26 | 0x1234);
        assert_eq!(esr.fsc(), None);
        assert_eq!(esr.to_string(), "EC=0x3c (BRK instruction) ISS=0x1234");
        assert_eq!(
            Esr(0).to_string(),
            "EC=0x00 (unknown reason (undefined instruction)) ISS=0x0"
        );
    }

    #[test]
    fn invalid_far_is_flagged() {
        let esr = Esr((0x24 << 26) | (1 << 10) | 0x10);
        assert!(!esr.far_valid());
        assert!(esr.to_string().ends_with("(FAR not valid)"));
    }
}
