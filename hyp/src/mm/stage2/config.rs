//! Stage-2 translation regime parameters: IPA size, start level and concatenated root tables
//! (VTCR_EL2.T0SZ/SL0), output size (VTCR_EL2.PS), VMID width (VTCR_EL2.VS), and the
//! VTCR_EL2/VTTBR_EL2 values built from them.

use core::fmt;

use crate::mm::addr::{PAGE_SHIFT, PAGE_SIZE, Pa};
use crate::mm::descriptor::{AttrEncoding, ENTRIES_PER_TABLE, Level};

/// Smallest IPA size we configure (PARange `0b0000`).
pub const MIN_IPA_BITS: u8 = 32;
/// Largest IPA size with a 4 KiB granule without FEAT_LPA2.
pub const MAX_IPA_BITS: u8 = 48;
/// Most root tables VTCR_EL2 allows to be concatenated at the start level.
pub const MAX_ROOT_TABLES: usize = 16;

/// A VM's stage-2 tag in the TLB (VTTBR_EL2.VMID).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Vmid(u16);

impl Vmid {
    pub const fn new(raw: u16) -> Self {
        Self(raw)
    }
    pub const fn raw(self) -> u16 {
        self.0
    }
}

impl fmt::Display for Vmid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The ID register fields stage-2 configuration depends on, as read by `arch`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct CpuFeatures {
    /// ID_AA64MMFR0_EL1.PARange (bits[3:0]).
    pub parange: u8,
    /// ID_AA64MMFR1_EL1.VMIDBits (bits[7:4]): `0` = 8-bit VMIDs, `2` = 16-bit.
    pub vmid_bits: u8,
    /// ID_AA64MMFR2_EL1.FWB (bits[43:40]) is non-zero: FEAT_S2FWB, and HCR_EL2.FWB will be set.
    pub fwb: bool,
}

impl CpuFeatures {
    /// Extract the fields from the raw ID register values.
    pub const fn from_id_regs(mmfr0: u64, mmfr1: u64, mmfr2: u64) -> Self {
        Self {
            parange: (mmfr0 & 0xf) as u8,
            vmid_bits: ((mmfr1 >> 4) & 0xf) as u8,
            fwb: (mmfr2 >> 40) & 0xf != 0,
        }
    }
}

/// Why a stage-2 configuration cannot be built.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ConfigError {
    /// PARange holds a value this code does not know.
    UnknownPaRange { parange: u8 },
    /// VMIDBits holds a reserved value.
    UnknownVmidBits { vmid_bits: u8 },
    /// The requested IPA cap is outside what a 4 KiB granule supports.
    IpaCapOutOfRange { cap: u8 },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownPaRange { parange } => {
                write!(
                    f,
                    "cannot size stage 2: ID_AA64MMFR0_EL1.PARange value {parange:#x} is unknown"
                )
            }
            Self::UnknownVmidBits { vmid_bits } => write!(
                f,
                "cannot size VMIDs: ID_AA64MMFR1_EL1.VMIDBits value {vmid_bits:#x} is reserved"
            ),
            Self::IpaCapOutOfRange { cap } => write!(
                f,
                "cannot cap the IPA size at {cap} bits: a 4 KiB granule supports \
                 {MIN_IPA_BITS} to {MAX_IPA_BITS}"
            ),
        }
    }
}

/// Geometry and encoding of every stage-2 table of this system (one per boot, shared by VMs).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Stage2Config {
    ipa_bits: u8,
    pa_bits: u8,
    /// VTCR_EL2.PS encoding of `pa_bits`.
    ps: u8,
    start_level: Level,
    root_tables: usize,
    vmid_bits: u8,
    enc: AttrEncoding,
}

/// PARange / VTCR_EL2.PS encoding to bits. 52-bit needs FEAT_LPA(2) descriptors: use 48.
const fn pa_bits_of(parange: u8) -> Option<(u8, u8)> {
    match parange {
        0 => Some((32, 0)),
        1 => Some((36, 1)),
        2 => Some((40, 2)),
        3 => Some((42, 3)),
        4 => Some((44, 4)),
        5 | 6 => Some((48, 5)),
        _ => None,
    }
}

impl Stage2Config {
    /// The configuration for this CPU with the IPA size limited to `ipa_cap_bits`.
    ///
    /// The IPA size is `min(PA size, cap)`. The start level is the deepest one that can
    /// resolve it with at most 16 concatenated root tables (as Linux's `kvm_get_vtcr` does):
    /// e.g. 39 bits start at level 1 with one table, 40 bits at level 1 with two, 44 at level 0.
    ///
    /// # Errors
    /// [`ConfigError::UnknownPaRange`], [`ConfigError::UnknownVmidBits`] for values the ID
    /// registers should not hold, [`ConfigError::IpaCapOutOfRange`] for a cap outside 32..=48.
    pub fn from_features(f: CpuFeatures, ipa_cap_bits: u8) -> Result<Self, ConfigError> {
        if !(MIN_IPA_BITS..=MAX_IPA_BITS).contains(&ipa_cap_bits) {
            return Err(ConfigError::IpaCapOutOfRange { cap: ipa_cap_bits });
        }
        let (pa_bits, ps) =
            pa_bits_of(f.parange).ok_or(ConfigError::UnknownPaRange { parange: f.parange })?;
        let vmid_bits = match f.vmid_bits {
            0 => 8,
            2 => 16,
            v => return Err(ConfigError::UnknownVmidBits { vmid_bits: v }),
        };
        let ipa_bits = pa_bits.min(ipa_cap_bits);
        // Bits above the page offset; the root may resolve up to 9 + 4 of them (16 tables).
        let above_page = u32::from(ipa_bits) - PAGE_SHIFT;
        let levels = (above_page - 4).div_ceil(9);
        let start_level = Level::new((4 - levels) as u8).expect("1..=4 levels");
        let root_bits = above_page - 9 * (levels - 1);
        let root_tables = 1usize << root_bits.saturating_sub(9);
        debug_assert!(root_tables <= MAX_ROOT_TABLES);
        Ok(Self {
            ipa_bits,
            pa_bits,
            ps,
            start_level,
            root_tables,
            vmid_bits,
            enc: AttrEncoding { fwb: f.fwb },
        })
    }

    pub const fn ipa_bits(&self) -> u8 {
        self.ipa_bits
    }
    pub const fn pa_bits(&self) -> u8 {
        self.pa_bits
    }
    /// One past the highest IPA stage 2 translates.
    pub const fn ipa_limit(&self) -> u64 {
        1 << self.ipa_bits
    }
    /// One past the highest PA a leaf may point to.
    pub const fn pa_limit(&self) -> u64 {
        1 << self.pa_bits
    }
    pub const fn start_level(&self) -> Level {
        self.start_level
    }
    /// Number of concatenated 4 KiB tables forming the root (1, 2, 4, 8 or 16).
    pub const fn root_tables(&self) -> usize {
        self.root_tables
    }
    /// Entries in the (possibly concatenated) root that the IPA size uses.
    pub const fn root_entries(&self) -> usize {
        let per = self.ipa_limit() >> self.start_level.shift();
        let full = self.root_tables * ENTRIES_PER_TABLE;
        if (per as usize) < full {
            per as usize
        } else {
            full
        }
    }
    pub const fn vmid_bits(&self) -> u8 {
        self.vmid_bits
    }
    /// Largest VMID this CPU can tag translations with.
    pub const fn max_vmid(&self) -> u16 {
        if self.vmid_bits == 16 {
            u16::MAX
        } else {
            u8::MAX as u16
        }
    }
    /// MemAttr encoding to use (depends on FEAT_S2FWB).
    pub const fn attr_encoding(&self) -> AttrEncoding {
        self.enc
    }

    /// VTCR_EL2: T0SZ, SL0, inner/outer write-back write-allocate inner-shareable walks,
    /// 4 KiB granule, PS, VS; RES1 bit 31. Hardware AF/dirty management stays off.
    pub const fn vtcr(&self) -> u64 {
        const IRGN0_WBWA: u64 = 0b01 << 8;
        const ORGN0_WBWA: u64 = 0b01 << 10;
        const SH0_INNER: u64 = 0b11 << 12;
        const TG0_4K: u64 = 0b00 << 14;
        const VS_16BIT: u64 = 1 << 19;
        const RES1: u64 = 1 << 31;
        let t0sz = 64 - self.ipa_bits as u64;
        // SL0 for a 4 KiB granule: 0 = level 2, 1 = level 1, 2 = level 0.
        let sl0 = 2 - self.start_level.raw() as u64;
        let vs = if self.vmid_bits == 16 { VS_16BIT } else { 0 };
        t0sz | sl0 << 6
            | IRGN0_WBWA
            | ORGN0_WBWA
            | SH0_INNER
            | TG0_4K
            | (self.ps as u64) << 16
            | vs
            | RES1
    }

    /// VTTBR_EL2 for a VM: BADDR and VMID go in one register, so a switch can never pair one
    /// VM's tables with another's VMID. `None` if `vmid` is wider than the CPU supports or
    /// `root` is not aligned to the concatenated root size.
    pub fn vttbr(&self, root: Pa, vmid: Vmid) -> Option<u64> {
        if vmid.raw() > self.max_vmid()
            || !root.is_aligned(self.root_tables as u64 * PAGE_SIZE)
            || root.raw() >= self.pa_limit()
        {
            return None;
        }
        Some(root.raw() | u64::from(vmid.raw()) << 48)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features(parange: u8) -> CpuFeatures {
        CpuFeatures {
            parange,
            vmid_bits: 2,
            fwb: false,
        }
    }

    #[test]
    fn start_level_and_concatenation_follow_ipa_size() {
        // (PARange, cap) -> (ipa bits, start level, root tables, T0SZ, SL0)
        let cases = [
            (5, 39, 39, 1, 1, 25, 1),
            (5, 40, 40, 1, 2, 24, 1),
            (2, 48, 40, 1, 2, 24, 1),
            (3, 48, 42, 1, 8, 22, 1),
            (4, 48, 44, 0, 1, 20, 2),
            (5, 48, 48, 0, 1, 16, 2),
            (1, 48, 36, 1, 1, 28, 1),
            (0, 48, 32, 2, 4, 32, 0),
        ];
        for (parange, cap, bits, level, tables, t0sz, sl0) in cases {
            let c = Stage2Config::from_features(features(parange), cap).unwrap();
            assert_eq!(c.ipa_bits(), bits, "parange {parange} cap {cap}");
            assert_eq!(c.start_level().raw(), level, "{bits} bits");
            assert_eq!(c.root_tables(), tables, "{bits} bits");
            assert_eq!(c.vtcr() & 0x3f, t0sz);
            assert_eq!((c.vtcr() >> 6) & 3, sl0);
            // The root must resolve exactly the IPA space.
            assert_eq!(
                (c.root_entries() as u64) << c.start_level().shift(),
                c.ipa_limit()
            );
        }
    }

    #[test]
    fn vtcr_fields() {
        let c = Stage2Config::from_features(features(5), 40).unwrap();
        let vtcr = c.vtcr();
        assert_eq!((vtcr >> 8) & 0xf, 0b0101, "write-back walks");
        assert_eq!((vtcr >> 12) & 3, 0b11, "inner shareable walks");
        assert_eq!((vtcr >> 14) & 3, 0, "4K granule");
        assert_eq!((vtcr >> 16) & 7, 5, "48-bit PS");
        assert_eq!((vtcr >> 19) & 1, 1, "16-bit VMID");
        assert_eq!(vtcr >> 31 & 1, 1, "RES1");
        let c8 = Stage2Config::from_features(
            CpuFeatures {
                vmid_bits: 0,
                ..features(5)
            },
            40,
        );
        assert_eq!((c8.unwrap().vtcr() >> 19) & 1, 0);
    }

    #[test]
    fn vttbr_packs_root_and_vmid_and_rejects_bad_ones() {
        let c = Stage2Config::from_features(features(5), 40).unwrap();
        assert_eq!(
            c.vttbr(Pa::new(0x8000_2000), Vmid::new(0x1234)),
            Some(0x1234_0000_8000_2000)
        );
        // Two concatenated tables need 8 KiB alignment.
        assert_eq!(c.vttbr(Pa::new(0x8000_1000), Vmid::new(1)), None);
        let c8 = Stage2Config::from_features(
            CpuFeatures {
                vmid_bits: 0,
                ..features(5)
            },
            40,
        );
        let c8 = c8.unwrap();
        assert_eq!(c8.max_vmid(), 255);
        assert_eq!(c8.vttbr(Pa::new(0x2000), Vmid::new(256)), None);
        assert_eq!(
            c8.vttbr(Pa::new(0x2000), Vmid::new(255)),
            Some(0xff << 48 | 0x2000)
        );
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert_eq!(
            Stage2Config::from_features(features(7), 40),
            Err(ConfigError::UnknownPaRange { parange: 7 })
        );
        assert_eq!(
            Stage2Config::from_features(
                CpuFeatures {
                    vmid_bits: 1,
                    ..features(5)
                },
                40
            ),
            Err(ConfigError::UnknownVmidBits { vmid_bits: 1 })
        );
        assert_eq!(
            Stage2Config::from_features(features(5), 52),
            Err(ConfigError::IpaCapOutOfRange { cap: 52 })
        );
        let regs = CpuFeatures::from_id_regs(0x5, 0x20, 1 << 40);
        assert_eq!(
            regs,
            CpuFeatures {
                parange: 5,
                vmid_bits: 2,
                fwb: true
            }
        );
    }
}
