//! Decoding of ESR_ELx (exception syndrome) for the report of an unexpected exception.
//! Portable: pure bit decoding, tested on the host.
#![forbid(unsafe_code)]

use core::fmt;

/// An exception syndrome register value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Esr(pub u64);

impl Esr {
    /// Exception class, ESR[31:26].
    pub const fn ec(self) -> u8 {
        ((self.0 >> 26) & 0x3f) as u8
    }

    /// Instruction-specific syndrome, ESR[24:0].
    pub const fn iss(self) -> u32 {
        (self.0 & 0x1ff_ffff) as u32
    }

    /// Whether the exception is an instruction or data abort (ISS carries a fault status code).
    pub const fn is_abort(self) -> bool {
        matches!(self.ec(), 0x20 | 0x21 | 0x24 | 0x25)
    }

    /// Data/instruction fault status code, ISS[5:0], for aborts.
    pub const fn fsc(self) -> Option<u8> {
        if self.is_abort() {
            Some((self.0 & 0x3f) as u8)
        } else {
            None
        }
    }

    /// For data aborts: whether the access was a write (WnR, ISS[6]).
    pub const fn is_write(self) -> Option<bool> {
        if matches!(self.ec(), 0x24 | 0x25) {
            Some(self.0 & (1 << 6) != 0)
        } else {
            None
        }
    }

    /// For aborts: whether FAR holds the faulting address (FnV, ISS[10], clear when valid).
    pub const fn far_valid(self) -> bool {
        !self.is_abort() || self.0 & (1 << 10) == 0
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
