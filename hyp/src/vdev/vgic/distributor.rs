//! GICD_*: the distributor's MMIO registers. With affinity routing the registers for INTIDs
//! 0..32 live in the redistributors, so here they are RAZ/WI.

use super::bank::{BitReg, id_register};
use super::irq::Intid;
use super::{CTLR_ARE, CTLR_DS, CTLR_ENABLE_GRP0, CTLR_ENABLE_GRP1, GICD_SIZE, Vgic};
use crate::vdev::mmio::{AccessSize, MmioDevice, MmioError, check_access};

/// GICD_IIDR: implementer 0 (not a JEP106 vendor: no quirk tables match it), product 'H'.
pub const GICD_IIDR: u32 = 0x4800_0000;
/// GICD_IROUTER<n> bits that hold state: Aff3 [39:32], IRM [31], Aff2..Aff0 [23:0].
const IROUTER_MASK: u64 = 0xff_80ff_ffff;
/// GICD_TYPER fields.
const TYPER_IDBITS_10: u32 = 9 << 19;
const TYPER_A3V: u32 = 1 << 24;

/// A decoded distributor register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reg {
    Ctlr,
    Typer,
    Iidr,
    Typer2,
    Bits(BitReg, u32),
    Priority(u32),
    Config(u32),
    /// GICD_IROUTER<n> for INTID n, upper half when `true`.
    Router(u32, bool),
    /// Registers that exist but are RAZ/WI in this configuration, byte-accessible or not.
    Raz {
        bytes: bool,
    },
    Id(u32),
    Reserved,
}

impl Reg {
    fn decode(offset: u64) -> Self {
        if let Some((reg, word)) = BitReg::at(offset) {
            return Self::Bits(reg, (word / 4 * 32) as u32);
        }
        if let Some(v) = id_register(offset) {
            return Self::Id(v);
        }
        match offset {
            0x0000 => Self::Ctlr,
            0x0004 => Self::Typer,
            0x0008 => Self::Iidr,
            0x000c => Self::Typer2,
            0x0010 => Self::Raz { bytes: false }, // STATUSR
            0x0400..0x07fc => Self::Priority((offset - 0x400) as u32),
            0x0800..0x0c00 => Self::Raz { bytes: true }, // ITARGETSR (ARE = 1)
            0x0c00..0x0d00 => Self::Config(((offset - 0xc00) / 4 * 16) as u32),
            0x0d00..0x0d80 => Self::Raz { bytes: false }, // IGRPMODR (DS = 1)
            0x0e00..0x0f00 => Self::Raz { bytes: false }, // NSACR (DS = 1)
            0x0f00 => Self::Raz { bytes: false },         // SGIR (ARE = 1)
            0x0f10..0x0f30 => Self::Raz { bytes: true },  // C/SPENDSGIR (ARE = 1)
            0x6000..0x7fe0 => Self::Router(((offset - 0x6000) / 8) as u32, offset % 8 == 4),
            _ => Self::Reserved,
        }
    }

    fn width_ok(self, size: AccessSize) -> bool {
        match self {
            Self::Priority(_) | Self::Raz { bytes: true } => {
                matches!(size, AccessSize::Byte | AccessSize::Word)
            }
            Self::Router(_, upper) => {
                size == AccessSize::Word || (size == AccessSize::Double && !upper)
            }
            Self::Reserved => true,
            _ => size == AccessSize::Word,
        }
    }
}

/// The distributor as an MMIO device (a view of the [`Vgic`]).
pub struct Distributor<'a> {
    gic: &'a mut Vgic,
}

impl<'a> Distributor<'a> {
    pub(crate) fn new(gic: &'a mut Vgic) -> Self {
        Self { gic }
    }

    fn decode(offset: u64, size: AccessSize) -> Result<Reg, MmioError> {
        check_access(offset, size, GICD_SIZE)?;
        let reg = Reg::decode(offset);
        if reg.width_ok(size) {
            Ok(reg)
        } else {
            Err(MmioError::BadWidth { offset, size })
        }
    }

    fn typer(&self) -> u32 {
        let it_lines = (Intid::SPI_BASE + self.gic.spi_count()) / 32 - 1;
        let cpus = (self.gic.vcpus() as u32 - 1).min(7);
        it_lines | cpus << 5 | TYPER_IDBITS_10 | TYPER_A3V
    }
}

/// SPI registers only: the first 32 INTIDs of every bank are the redistributors'.
fn spis_only(first: u32) -> bool {
    first >= Intid::SPI_BASE
}

impl MmioDevice for Distributor<'_> {
    fn read(&mut self, vcpu: usize, offset: u64, size: AccessSize) -> Result<u64, MmioError> {
        let gic = &*self.gic;
        Ok(match Self::decode(offset, size)? {
            Reg::Ctlr => u64::from(gic.ctlr | CTLR_ARE | CTLR_DS),
            Reg::Typer => u64::from(self.typer()),
            Reg::Iidr => u64::from(GICD_IIDR),
            Reg::Bits(reg, first) if spis_only(first) => u64::from(gic.read_bits(vcpu, first, reg)),
            Reg::Priority(first) if spis_only(first) => gic.read_priorities(vcpu, first, size),
            Reg::Config(first) if spis_only(first) => u64::from(gic.read_config(vcpu, first)),
            Reg::Router(n, upper) => match gic.spi_index(Intid::new(n)) {
                Some(i) if upper => gic.spis[i].route >> 32,
                Some(i) => gic.spis[i].route & size.mask(),
                None => 0,
            },
            Reg::Id(v) => u64::from(v),
            _ => 0,
        })
    }

    fn write(
        &mut self,
        vcpu: usize,
        offset: u64,
        size: AccessSize,
        value: u64,
    ) -> Result<(), MmioError> {
        let value = value & size.mask();
        let gic = &mut *self.gic;
        match Self::decode(offset, size)? {
            Reg::Ctlr => gic.ctlr = value as u32 & (CTLR_ENABLE_GRP0 | CTLR_ENABLE_GRP1),
            Reg::Bits(reg, first) if spis_only(first) => {
                gic.write_bits(vcpu, first, reg, value as u32)
            }
            Reg::Priority(first) if spis_only(first) => {
                gic.write_priorities(vcpu, first, size, value)
            }
            Reg::Config(first) if spis_only(first) => gic.write_config(vcpu, first, value as u32),
            Reg::Router(n, upper) => {
                if let Some(i) = gic.spi_index(Intid::new(n)) {
                    let old = gic.spis[i].route;
                    let new = match (size, upper) {
                        (AccessSize::Double, _) => value,
                        (_, true) => (old & 0xffff_ffff) | value << 32,
                        (_, false) => (old & !0xffff_ffff) | value,
                    };
                    gic.spis[i].route = new & IROUTER_MASK;
                }
            }
            _ => {}
        }
        Ok(())
    }
}
