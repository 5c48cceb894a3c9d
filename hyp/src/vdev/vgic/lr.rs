//! ICH_LR<n>_EL2, the list registers of the virtual CPU interface, as a typed value. This is the
//! only place that knows their bit layout (GICv3 architecture spec, ICH_LR<n>_EL2):
//! vINTID [31:0], pINTID [44:32] when HW = 1, EOI [41] when HW = 0, Priority [55:48],
//! Group [60], HW [61], State [63:62].

use super::irq::Intid;

/// How many list registers the architecture allows (ICH_VTR_EL2.ListRegs is four bits).
pub const MAX_LRS: usize = 16;

/// The state field of a list register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LrState {
    Invalid,
    Pending,
    Active,
    PendingActive,
}

impl LrState {
    pub const fn from_bits(bits: u64) -> Self {
        match bits & 3 {
            0 => Self::Invalid,
            1 => Self::Pending,
            2 => Self::Active,
            _ => Self::PendingActive,
        }
    }

    pub const fn bits(self) -> u64 {
        match self {
            Self::Invalid => 0,
            Self::Pending => 1,
            Self::Active => 2,
            Self::PendingActive => 3,
        }
    }

    pub const fn new(pending: bool, active: bool) -> Self {
        match (pending, active) {
            (false, false) => Self::Invalid,
            (true, false) => Self::Pending,
            (false, true) => Self::Active,
            (true, true) => Self::PendingActive,
        }
    }

    pub const fn is_pending(self) -> bool {
        matches!(self, Self::Pending | Self::PendingActive)
    }

    pub const fn is_active(self) -> bool {
        matches!(self, Self::Active | Self::PendingActive)
    }
}

/// Whether the virtual interrupt is tied to a physical one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LrLink {
    /// HW = 0. `eoi_maintenance`: a maintenance interrupt fires when the guest deactivates it
    /// (used for level-sensitive interrupts so the line is re-sampled promptly).
    Virtual { eoi_maintenance: bool },
    /// HW = 1: the guest's deactivation also deactivates physical INTID `pintid` (13 bits).
    Hardware { pintid: u32 },
}

/// One list register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Lr {
    pub vintid: Intid,
    pub state: LrState,
    pub priority: u8,
    pub group1: bool,
    pub link: LrLink,
}

const PINTID_SHIFT: u32 = 32;
const PINTID_MASK: u64 = 0x1fff;
const EOI: u64 = 1 << 41;
const PRIORITY_SHIFT: u32 = 48;
const GROUP: u64 = 1 << 60;
const HW: u64 = 1 << 61;
const STATE_SHIFT: u32 = 62;

/// Largest physical INTID an LR can name.
pub const MAX_PINTID: u32 = PINTID_MASK as u32;

impl Lr {
    /// The register value. `pintid` is truncated to its 13-bit field (callers keep it below
    /// [`MAX_PINTID`], which `Vgic::link_hw` checks).
    pub const fn encode(&self) -> u64 {
        let mut v = self.vintid.raw() as u64
            | (self.priority as u64) << PRIORITY_SHIFT
            | self.state.bits() << STATE_SHIFT;
        if self.group1 {
            v |= GROUP;
        }
        match self.link {
            LrLink::Virtual { eoi_maintenance } => {
                if eoi_maintenance {
                    v |= EOI;
                }
            }
            LrLink::Hardware { pintid } => {
                v |= HW | ((pintid as u64 & PINTID_MASK) << PINTID_SHIFT);
            }
        }
        v
    }

    /// Decodes any register value; RES0 bits are ignored.
    pub const fn decode(raw: u64) -> Self {
        let link = if raw & HW != 0 {
            LrLink::Hardware {
                pintid: ((raw >> PINTID_SHIFT) & PINTID_MASK) as u32,
            }
        } else {
            LrLink::Virtual {
                eoi_maintenance: raw & EOI != 0,
            }
        };
        Self {
            vintid: Intid::new(raw as u32),
            state: LrState::from_bits(raw >> STATE_SHIFT),
            priority: (raw >> PRIORITY_SHIFT) as u8,
            group1: raw & GROUP != 0,
            link,
        }
    }

    /// The bits of `raw` that [`Lr::decode`] reads (the rest are RES0 for that HW setting).
    pub const fn defined_bits(raw: u64) -> u64 {
        let common = 0xffff_ffff | (0xff << PRIORITY_SHIFT) | GROUP | HW | (3 << STATE_SHIFT);
        if raw & HW != 0 {
            common | (PINTID_MASK << PINTID_SHIFT)
        } else {
            common | EOI
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hardware_timer_lr_is_bit_exact() {
        let lr = Lr {
            vintid: Intid::VTIMER,
            state: LrState::Pending,
            priority: 0xa0,
            group1: true,
            link: LrLink::Hardware { pintid: 27 },
        };
        // State 01, HW, Group, priority 0xa0, pINTID 27, vINTID 27.
        assert_eq!(
            lr.encode(),
            0x7000_0000_0000_0000 | (0xa0 << 48) | (27 << 32) | 27
        );
        assert_eq!(lr.encode(), 0x70a0_001b_0000_001b);
    }

    #[test]
    fn virtual_level_lr_with_eoi_maintenance() {
        let lr = Lr {
            vintid: Intid::new(33),
            state: LrState::PendingActive,
            priority: 0x80,
            group1: false,
            link: LrLink::Virtual {
                eoi_maintenance: true,
            },
        };
        assert_eq!(lr.encode(), 0xc080_0200_0000_0021);
        assert_eq!(Lr::decode(lr.encode()), lr);
    }

    fn any_lr() -> impl Strategy<Value = Lr> {
        (
            any::<u32>(),
            0u64..4,
            any::<u8>(),
            any::<bool>(),
            prop_oneof![
                any::<bool>().prop_map(|e| LrLink::Virtual { eoi_maintenance: e }),
                (0..=MAX_PINTID).prop_map(|p| LrLink::Hardware { pintid: p }),
            ],
        )
            .prop_map(|(v, s, p, g, link)| Lr {
                vintid: Intid::new(v),
                state: LrState::from_bits(s),
                priority: p,
                group1: g,
                link,
            })
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(lr in any_lr()) {
            prop_assert_eq!(Lr::decode(lr.encode()), lr);
        }

        #[test]
        fn encode_inverts_decode_on_defined_bits(raw in any::<u64>()) {
            prop_assert_eq!(Lr::decode(raw).encode(), raw & Lr::defined_bits(raw));
        }
    }
}
