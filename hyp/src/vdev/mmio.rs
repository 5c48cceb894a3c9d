//! Emulated MMIO: the access a trapped data abort describes, the trait every virtual device
//! implements, and the decoding of a data abort's syndrome into such an access.
//!
//! The syndrome's fields are read through [`Esr`] (the one place that knows their bit
//! positions); what they mean for an emulated access is decided here and pinned by host tests
//! against the Arm ARM (ESR_ELx, EC 0x24, "ISS encoding for an exception from a Data Abort").

use core::fmt;

use crate::esr::Esr;

/// Width of one MMIO access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AccessSize {
    Byte,
    Half,
    Word,
    Double,
}

impl AccessSize {
    /// Every width, narrowest first (for tests and fuzzers).
    pub const ALL: [Self; 4] = [Self::Byte, Self::Half, Self::Word, Self::Double];

    pub const fn bytes(self) -> u64 {
        match self {
            Self::Byte => 1,
            Self::Half => 2,
            Self::Word => 4,
            Self::Double => 8,
        }
    }

    /// The width a data abort's SAS field (log2 of the byte count) names.
    pub const fn from_sas(sas: u64) -> Self {
        match sas & 3 {
            0 => Self::Byte,
            1 => Self::Half,
            2 => Self::Word,
            _ => Self::Double,
        }
    }

    /// All-ones in the low `bytes()` bytes: the part of a register value this access carries.
    pub const fn mask(self) -> u64 {
        match self {
            Self::Double => u64::MAX,
            _ => (1u64 << (self.bytes() * 8)) - 1,
        }
    }

    /// Whether `offset` is naturally aligned for this width.
    pub const fn is_aligned(self, offset: u64) -> bool {
        offset.is_multiple_of(self.bytes())
    }
}

impl fmt::Display for AccessSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-bit", self.bytes() * 8)
    }
}

/// One access to a device window, relative to the window's base.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioAccess {
    pub offset: u64,
    pub size: AccessSize,
    /// The value stored (already truncated to `size`), or `None` for a load.
    pub write: Option<u64>,
}

/// Why a device refused an access. The arch layer turns every variant into a synchronous
/// external abort injected into the guest: real hardware would not answer these either.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmioError {
    /// The offset is not a multiple of the access width.
    Unaligned { offset: u64, size: AccessSize },
    /// The register exists but does not accept accesses of this width.
    BadWidth { offset: u64, size: AccessSize },
    /// The offset lies outside the device's window.
    OutOfWindow { offset: u64, size: AccessSize },
}

impl fmt::Display for MmioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unaligned { offset, size } => {
                write!(
                    f,
                    "cannot access offset {offset:#x} with a {size} access: it is not aligned"
                )
            }
            Self::BadWidth { offset, size } => write!(
                f,
                "cannot access the register at offset {offset:#x} with a {size} access: it does not support that width"
            ),
            Self::OutOfWindow { offset, size } => write!(
                f,
                "cannot access offset {offset:#x} with a {size} access: it is outside the device"
            ),
        }
    }
}

/// A trap-and-emulate device. `vcpu` is the index of the vCPU that made the access (banked
/// registers depend on it). Reserved offsets inside the window read as zero and ignore writes;
/// malformed accesses are errors.
pub trait MmioDevice {
    /// # Errors
    /// [`MmioError`]: unaligned access, a width the register does not support, or an offset
    /// outside the window.
    fn read(&mut self, vcpu: usize, offset: u64, size: AccessSize) -> Result<u64, MmioError>;

    /// `value` holds the stored bytes in its low `size.bytes()` bytes; higher bits are ignored.
    ///
    /// # Errors
    /// As for [`MmioDevice::read`].
    fn write(
        &mut self,
        vcpu: usize,
        offset: u64,
        size: AccessSize,
        value: u64,
    ) -> Result<(), MmioError>;

    /// Performs `access`, returning the loaded value for a read and 0 for a write.
    ///
    /// # Errors
    /// As for [`MmioDevice::read`].
    fn access(&mut self, vcpu: usize, access: MmioAccess) -> Result<u64, MmioError> {
        match access.write {
            Some(v) => self.write(vcpu, access.offset, access.size, v).map(|()| 0),
            None => self.read(vcpu, access.offset, access.size),
        }
    }
}

/// Checks the alignment and window bounds every device applies before decoding the offset.
///
/// # Errors
/// [`MmioError::Unaligned`] or [`MmioError::OutOfWindow`].
pub fn check_access(offset: u64, size: AccessSize, window: u64) -> Result<(), MmioError> {
    if !size.is_aligned(offset) {
        return Err(MmioError::Unaligned { offset, size });
    }
    match offset.checked_add(size.bytes()) {
        Some(end) if end <= window => Ok(()),
        _ => Err(MmioError::OutOfWindow { offset, size }),
    }
}

/// General-purpose register number as a data abort names it; 31 means XZR/WZR (not SP) in a
/// load/store's transfer register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Gpr(u8);

impl Gpr {
    pub const XZR: Self = Self(31);

    /// # Panics
    /// When `n > 31` (an ISS field is five bits wide, so decode cannot produce that).
    pub const fn new(n: u8) -> Self {
        assert!(n <= 31, "general-purpose register numbers are 0..=31");
        Self(n)
    }

    pub const fn index(self) -> u8 {
        self.0
    }

    pub const fn is_zero_register(self) -> bool {
        self.0 == 31
    }
}

/// The parts of a data abort's ISS that describe an emulatable load or store (ISV = 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataAbort {
    pub size: AccessSize,
    pub write: bool,
    /// The transfer register (SRT).
    pub reg: Gpr,
    /// SSE: a load sign-extends the value to the register width.
    pub sign_extend: bool,
    /// SF: the register is a 64-bit X register (otherwise a W register, upper half zeroed).
    pub reg64: bool,
    /// AR: acquire/release semantics (the emulation is sequentially consistent anyway).
    pub acquire_release: bool,
}

/// Why a data abort cannot be emulated as a single MMIO access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbortDecodeError {
    /// The exception class is not a data abort from a lower exception level.
    NotLowerElDataAbort { ec: u8 },
    /// ISV = 0: the syndrome does not describe the instruction (e.g. load pair, writeback).
    NoSyndrome,
    /// The abort came from a cache maintenance or address translation instruction (CM = 1).
    CacheMaintenance,
    /// The abort happened on a stage-1 table walk (S1PTW = 1), not on the access itself.
    Stage1Walk,
}

impl fmt::Display for AbortDecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotLowerElDataAbort { ec } => write!(
                f,
                "cannot emulate exception class {ec:#x} as MMIO: it is not a data abort from a lower exception level"
            ),
            Self::NoSyndrome => write!(
                f,
                "cannot emulate the access: the syndrome has no instruction details (ISV is 0)"
            ),
            Self::CacheMaintenance => {
                write!(
                    f,
                    "cannot emulate a cache maintenance instruction as an MMIO access"
                )
            }
            Self::Stage1Walk => write!(
                f,
                "cannot emulate the access: the fault was on the guest's stage-1 table walk"
            ),
        }
    }
}

impl DataAbort {
    /// Decodes ESR_EL2 for a data abort taken from EL1/EL0.
    ///
    /// # Errors
    /// [`AbortDecodeError`]: another exception class, no valid syndrome, a cache maintenance
    /// instruction or a stage-1 walk fault.
    pub fn decode(esr: Esr) -> Result<Self, AbortDecodeError> {
        let ec = esr.ec();
        if ec != crate::esr::ec::DABT_LOW {
            return Err(AbortDecodeError::NotLowerElDataAbort { ec });
        }
        if !esr.isv() {
            return Err(AbortDecodeError::NoSyndrome);
        }
        if esr.cm() {
            return Err(AbortDecodeError::CacheMaintenance);
        }
        if esr.s1ptw() {
            return Err(AbortDecodeError::Stage1Walk);
        }
        Ok(Self {
            size: AccessSize::from_sas(u64::from(esr.sas())),
            write: esr.wnr(),
            reg: Gpr::new(esr.srt()),
            sign_extend: esr.sse(),
            reg64: esr.sf(),
            acquire_release: esr.ar(),
        })
    }

    /// The device access, given the window offset (from FAR/HPFAR) and, for a store, the
    /// current value of the transfer register (`reg_value` is ignored for loads; the zero
    /// register stores 0 whatever is passed).
    pub fn access(&self, offset: u64, reg_value: u64) -> MmioAccess {
        let write = self.write.then(|| {
            if self.reg.is_zero_register() {
                0
            } else {
                reg_value & self.size.mask()
            }
        });
        MmioAccess {
            offset,
            size: self.size,
            write,
        }
    }

    /// The value a load leaves in the transfer register: sign- or zero-extended from the access
    /// width, then limited to 32 bits for a W register. `None` for a store or when the
    /// destination is the zero register (the load is performed but its value discarded).
    pub fn load_result(&self, loaded: u64) -> Option<u64> {
        if self.write || self.reg.is_zero_register() {
            return None;
        }
        let bits = self.size.bytes() * 8;
        let mut v = loaded & self.size.mask();
        if self.sign_extend && bits < 64 && v & (1 << (bits - 1)) != 0 {
            v |= !self.size.mask();
        }
        if !self.reg64 {
            v &= u64::from(u32::MAX);
        }
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The layout, spelled out from the Arm ARM independently of `Esr`'s accessors.
    const EC_DABT_LOW: u8 = 0x24;
    const ISS_ISV: u64 = 1 << 24;
    const ISS_SSE: u64 = 1 << 21;
    const ISS_SF: u64 = 1 << 15;
    const ISS_CM: u64 = 1 << 8;
    const ISS_S1PTW: u64 = 1 << 7;
    const ISS_WNR: u64 = 1 << 6;
    use proptest::prelude::*;

    fn esr(iss: u64) -> Esr {
        Esr((u64::from(EC_DABT_LOW) << 26) | (1 << 25) | iss)
    }

    #[test]
    fn decodes_a_word_store_from_w3() {
        // str w3, [x0]: ISV, SAS=2, SRT=3, WnR.
        let a = DataAbort::decode(esr(ISS_ISV | (2 << 22) | (3 << 16) | ISS_WNR)).unwrap();
        assert_eq!(a.size, AccessSize::Word);
        assert!(a.write && !a.reg64 && !a.sign_extend);
        assert_eq!(a.reg, Gpr::new(3));
        let acc = a.access(0x18, 0xdead_beef_cafe_f00d);
        assert_eq!(
            acc,
            MmioAccess {
                offset: 0x18,
                size: AccessSize::Word,
                write: Some(0xcafe_f00d)
            }
        );
        assert_eq!(a.load_result(5), None);
    }

    #[test]
    fn sign_extending_byte_load_into_x_register() {
        // ldrsb x7, [x1]
        let a = DataAbort::decode(esr(ISS_ISV | ISS_SSE | (7 << 16) | ISS_SF)).unwrap();
        assert_eq!(a.size, AccessSize::Byte);
        assert!(!a.write);
        assert_eq!(a.load_result(0x80), Some(0xffff_ffff_ffff_ff80));
        assert_eq!(a.load_result(0x7f), Some(0x7f));
        // Bytes above the access width never leak into the register.
        assert_eq!(a.load_result(0x1234_5601), Some(1));
    }

    #[test]
    fn sign_extending_half_load_into_w_register_clears_upper_word() {
        // ldrsh w2, [x1]
        let a = DataAbort::decode(esr(ISS_ISV | (1 << 22) | ISS_SSE | (2 << 16))).unwrap();
        assert_eq!(a.load_result(0x8001), Some(0xffff_8001));
    }

    #[test]
    fn zero_register_store_writes_zero_and_load_is_discarded() {
        let st =
            DataAbort::decode(esr(ISS_ISV | (3 << 22) | (31 << 16) | ISS_WNR | ISS_SF)).unwrap();
        assert_eq!(st.access(0, u64::MAX).write, Some(0));
        let ld = DataAbort::decode(esr(ISS_ISV | (3 << 22) | (31 << 16) | ISS_SF)).unwrap();
        assert_eq!(ld.load_result(7), None);
    }

    #[test]
    fn refuses_what_cannot_be_emulated() {
        assert_eq!(DataAbort::decode(esr(0)), Err(AbortDecodeError::NoSyndrome));
        assert_eq!(
            DataAbort::decode(esr(ISS_ISV | ISS_CM)),
            Err(AbortDecodeError::CacheMaintenance)
        );
        assert_eq!(
            DataAbort::decode(esr(ISS_ISV | ISS_S1PTW)),
            Err(AbortDecodeError::Stage1Walk)
        );
        let iabt = (0x20u64 << 26) | ISS_ISV;
        assert_eq!(
            DataAbort::decode(Esr(iabt)),
            Err(AbortDecodeError::NotLowerElDataAbort { ec: 0x20 })
        );
    }

    #[test]
    fn check_access_rejects_unaligned_and_out_of_window() {
        assert_eq!(check_access(0xffc, AccessSize::Word, 0x1000), Ok(()));
        assert_eq!(
            check_access(0xffe, AccessSize::Word, 0x1000),
            Err(MmioError::Unaligned {
                offset: 0xffe,
                size: AccessSize::Word
            })
        );
        assert_eq!(
            check_access(0x1000, AccessSize::Byte, 0x1000),
            Err(MmioError::OutOfWindow {
                offset: 0x1000,
                size: AccessSize::Byte
            })
        );
        assert!(check_access(u64::MAX - 7, AccessSize::Double, u64::MAX).is_err());
    }

    proptest! {
        #[test]
        fn decode_never_panics_and_keeps_fields(e in any::<u64>()) {
            if let Ok(a) = DataAbort::decode(Esr(e)) {
                prop_assert_eq!(a.size.bytes(), 1 << ((e >> 22) & 3));
                prop_assert_eq!(u64::from(a.reg.index()), (e >> 16) & 0x1f);
                prop_assert_eq!(a.write, e & ISS_WNR != 0);
                let v = a.access(0, e);
                if let Some(w) = v.write { prop_assert_eq!(w & !a.size.mask(), 0); }
                if let Some(r) = a.load_result(e) {
                    if !a.reg64 { prop_assert!(r <= u64::from(u32::MAX)); }
                    if a.reg64 || a.size != AccessSize::Double {
                        prop_assert_eq!(r & a.size.mask(), e & a.size.mask());
                    }
                }
            }
        }
    }
}
