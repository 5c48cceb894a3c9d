//! GICR_*: the redistributors' MMIO registers. Frame `i` (at `i * GICR_STRIDE`) belongs to
//! vCPU `i`: RD_base (control, identification, WAKER) then SGI_base (the SGI/PPI banks).

use super::bank::{BitReg, id_register};
use super::{GICR_SGI_BASE, GICR_STRIDE, Vgic};
use crate::vdev::mmio::{AccessSize, MmioDevice, MmioError, check_access};

/// GICR_IIDR: the same identity as the distributor's.
pub const GICR_IIDR: u32 = super::distributor::GICD_IIDR;
/// GICR_TYPER.Last: the highest redistributor of the region.
pub const TYPER_LAST: u64 = 1 << 4;
/// GICR_WAKER.ProcessorSleep and ChildrenAsleep.
pub const WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
pub const WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reg {
    Ctlr,
    Iidr,
    /// GICR_TYPER, upper half when `true`.
    Typer(bool),
    Waker,
    Bits(BitReg),
    Priority(u32),
    Config(u32),
    Raz,
    Id(u32),
    Reserved,
}

impl Reg {
    fn decode(local: u64) -> Self {
        if local < GICR_SGI_BASE {
            if let Some(v) = id_register(local) {
                return Self::Id(v);
            }
            return match local {
                0x0000 => Self::Ctlr,
                0x0004 => Self::Iidr,
                0x0008 => Self::Typer(false),
                0x000c => Self::Typer(true),
                0x0010 => Self::Raz, // STATUSR
                0x0014 => Self::Waker,
                _ => Self::Reserved,
            };
        }
        let sgi = local - GICR_SGI_BASE;
        match BitReg::at(sgi) {
            Some((reg, 0)) => return Self::Bits(reg),
            Some(_) => return Self::Reserved, // extended PPI range: not implemented
            None => {}
        }
        match sgi {
            0x0400..0x0420 => Self::Priority((sgi - 0x400) as u32),
            0x0c00 => Self::Config(0),
            0x0c04 => Self::Config(16),
            0x0d00 | 0x0e00 => Self::Raz, // IGRPMODR0 and NSACR (DS = 1)
            _ => Self::Reserved,
        }
    }

    fn width_ok(self, size: AccessSize) -> bool {
        match self {
            Self::Priority(_) => matches!(size, AccessSize::Byte | AccessSize::Word),
            Self::Typer(upper) => {
                size == AccessSize::Word || (size == AccessSize::Double && !upper)
            }
            Self::Reserved => true,
            _ => size == AccessSize::Word,
        }
    }
}

/// All vCPUs' redistributors as one MMIO device (a view of the [`Vgic`]).
pub struct Redistributors<'a> {
    gic: &'a mut Vgic,
}

impl<'a> Redistributors<'a> {
    pub(crate) fn new(gic: &'a mut Vgic) -> Self {
        Self { gic }
    }

    /// The window size: one frame per vCPU.
    pub fn size(&self) -> u64 {
        GICR_STRIDE * self.gic.vcpus() as u64
    }

    /// (frame's vCPU, decoded register).
    fn decode(&self, offset: u64, size: AccessSize) -> Result<(usize, Reg), MmioError> {
        check_access(offset, size, self.size())?;
        let reg = Reg::decode(offset % GICR_STRIDE);
        if !reg.width_ok(size) {
            return Err(MmioError::BadWidth { offset, size });
        }
        Ok(((offset / GICR_STRIDE) as usize, reg))
    }

    fn typer(&self, frame: usize) -> u64 {
        let m = self.gic.cpus[frame].mpidr;
        let affinity = (m >> 8 & 0xff_ffff) << 8 | (m >> 32 & 0xff) << 24 | (m & 0xff);
        let last = if frame + 1 == self.gic.vcpus() {
            TYPER_LAST
        } else {
            0
        };
        affinity << 32 | (frame as u64) << 8 | last
    }
}

impl MmioDevice for Redistributors<'_> {
    /// `vcpu` is not used: a redistributor's registers belong to its frame's vCPU, whoever
    /// accesses them.
    fn read(&mut self, _vcpu: usize, offset: u64, size: AccessSize) -> Result<u64, MmioError> {
        let (frame, reg) = self.decode(offset, size)?;
        let gic = &*self.gic;
        Ok(match reg {
            Reg::Iidr => u64::from(GICR_IIDR),
            Reg::Typer(true) => self.typer(frame) >> 32,
            Reg::Typer(false) => self.typer(frame) & size.mask(),
            Reg::Waker if gic.cpus[frame].sleep => {
                u64::from(WAKER_PROCESSOR_SLEEP | WAKER_CHILDREN_ASLEEP)
            }
            Reg::Bits(reg) => u64::from(gic.read_bits(frame, 0, reg)),
            Reg::Priority(first) => gic.read_priorities(frame, first, size),
            Reg::Config(first) => u64::from(gic.read_config(frame, first)),
            Reg::Id(v) => u64::from(v),
            Reg::Ctlr | Reg::Waker | Reg::Raz | Reg::Reserved => 0,
        })
    }

    fn write(
        &mut self,
        _vcpu: usize,
        offset: u64,
        size: AccessSize,
        value: u64,
    ) -> Result<(), MmioError> {
        let (frame, reg) = self.decode(offset, size)?;
        let value = value & size.mask();
        let gic = &mut *self.gic;
        match reg {
            // ChildrenAsleep follows ProcessorSleep at once: there is no interface to quiesce.
            Reg::Waker => gic.cpus[frame].sleep = value as u32 & WAKER_PROCESSOR_SLEEP != 0,
            Reg::Bits(reg) => gic.write_bits(frame, 0, reg, value as u32),
            Reg::Priority(first) => gic.write_priorities(frame, first, size, value),
            Reg::Config(first) => gic.write_config(frame, first, value as u32),
            _ => {}
        }
        Ok(())
    }
}
