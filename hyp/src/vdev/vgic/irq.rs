//! The state of one interrupt as the virtual distributor/redistributor sees it, and the
//! interrupt-ID newtype.

use core::fmt;

/// A GIC interrupt ID. SGIs are 0..16, PPIs 16..32, SPIs 32..1020.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct Intid(u32);

impl Intid {
    /// The EL1 virtual timer's PPI (PPI 11).
    pub const VTIMER: Self = Self(27);
    /// First SPI.
    pub const SPI_BASE: u32 = 32;
    /// INTIDs 1020..1024 are special (spurious and friends); SPIs stop below them.
    pub const SPI_LIMIT: u32 = 1020;

    pub const fn new(raw: u32) -> Self {
        Self(raw)
    }

    /// The INTID of SPI number `n` (as in the device tree's interrupt specifier).
    pub const fn spi(n: u32) -> Self {
        Self(n + Self::SPI_BASE)
    }

    /// The INTID of PPI number `n` (as in the device tree's interrupt specifier).
    pub const fn ppi(n: u32) -> Self {
        Self(n + 16)
    }

    pub const fn raw(self) -> u32 {
        self.0
    }

    pub const fn is_sgi(self) -> bool {
        self.0 < 16
    }

    pub const fn is_ppi(self) -> bool {
        self.0 >= 16 && self.0 < 32
    }

    /// SGIs and PPIs: banked per vCPU, living in the redistributor.
    pub const fn is_private(self) -> bool {
        self.0 < 32
    }

    pub const fn is_spi(self) -> bool {
        self.0 >= Self::SPI_BASE && self.0 < Self::SPI_LIMIT
    }
}

impl fmt::Debug for Intid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Intid({})", self.0)
    }
}

impl fmt::Display for Intid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Priority bits kept (5, the minimum ICH_VTR_EL2.PRIbits any GICv3 CPU interface offers), so
/// a priority the guest reads back is one the list registers can represent.
pub const PRIORITY_MASK: u8 = 0xf8;

/// One interrupt's state. `pending` is derived: the latch (edge, ISPENDR, injection) or, for a
/// level-sensitive interrupt, the input line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Irq {
    pub enabled: bool,
    pub pending_latch: bool,
    /// Input line, meaningful for level-sensitive interrupts.
    pub line: bool,
    pub active: bool,
    pub priority: u8,
    pub group1: bool,
    pub edge: bool,
    /// Physical INTID this virtual interrupt is linked to (ICH_LR<n>_EL2.HW).
    pub hw: Option<u32>,
    /// The vCPU whose list registers hold this interrupt, or whose CPU interface has it active.
    pub owner: Option<usize>,
    /// GICD_IROUTER<n> for SPIs (Aff3..Aff0 and IRM); unused for private interrupts.
    pub route: u64,
}

impl Irq {
    /// Reset state: disabled, inactive, group 0, priority 0, level-sensitive.
    pub const fn reset(edge: bool) -> Self {
        Self {
            enabled: false,
            pending_latch: false,
            line: false,
            active: false,
            priority: 0,
            group1: false,
            edge,
            hw: None,
            owner: None,
            route: 0,
        }
    }

    pub const fn pending(&self) -> bool {
        self.pending_latch || (!self.edge && self.line)
    }
}
