//! Register banks shared by the distributor and the redistributors: one bit, one byte or two
//! bits per interrupt over a run of INTIDs, plus the CoreSight-style ID registers.

use super::Vgic;
use super::irq::{Intid, Irq, PRIORITY_MASK};
use crate::vdev::mmio::AccessSize;

/// The one-bit-per-interrupt registers (GICD_/GICR_ I{S,C}{ENABLE,PEND,ACTIVE}R, IGROUPR).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BitReg {
    Group,
    SetEnable,
    ClearEnable,
    SetPending,
    ClearPending,
    SetActive,
    ClearActive,
}

impl BitReg {
    /// The register at `offset` of a bank laid out as the GIC lays them out (0x80 group, 0x100
    /// set-enable, ... each 0x80 wide), with the offset of its first word.
    pub fn at(offset: u64) -> Option<(Self, u64)> {
        let reg = match offset {
            0x080..0x100 => Self::Group,
            0x100..0x180 => Self::SetEnable,
            0x180..0x200 => Self::ClearEnable,
            0x200..0x280 => Self::SetPending,
            0x280..0x300 => Self::ClearPending,
            0x300..0x380 => Self::SetActive,
            0x380..0x400 => Self::ClearActive,
            _ => return None,
        };
        Some((reg, offset & 0x7f))
    }

    fn get(self, irq: &Irq) -> bool {
        match self {
            Self::Group => irq.group1,
            Self::SetEnable | Self::ClearEnable => irq.enabled,
            Self::SetPending | Self::ClearPending => irq.pending(),
            Self::SetActive | Self::ClearActive => irq.active,
        }
    }

    fn put(self, irq: &mut Irq, bit: bool) {
        match (self, bit) {
            (Self::Group, b) => irq.group1 = b,
            (_, false) => {}
            (Self::SetEnable, true) => irq.enabled = true,
            (Self::ClearEnable, true) => irq.enabled = false,
            (Self::SetPending, true) => irq.pending_latch = true,
            // A level-sensitive interrupt stays pending while its line is high.
            (Self::ClearPending, true) => irq.pending_latch = false,
            (Self::SetActive, true) => irq.active = true,
            (Self::ClearActive, true) => irq.active = false,
        }
    }
}

/// Value of the ID register at `offset` (0xFFD0..0x10000 of a 64 KiB frame): PIDR2.ArchRev = 3
/// (GICv3), which Linux checks before using a distributor or redistributor; CoreSight CIDRs.
pub(crate) fn id_register(offset: u64) -> Option<u32> {
    Some(match offset {
        0xffe8 => 0x30,
        0xfff0 => 0x0d,
        0xfff4 => 0xf0,
        0xfff8 => 0x05,
        0xfffc => 0xb1,
        0xffd0..0x1_0000 => 0,
        _ => return None,
    })
}

impl Vgic {
    /// 32 bits for INTIDs `first..first + 32` as `vcpu` sees them; unimplemented ones read 0.
    pub(crate) fn read_bits(&self, vcpu: usize, first: u32, reg: BitReg) -> u32 {
        (0..32).fold(0, |acc, i| match self.irq(vcpu, Intid::new(first + i)) {
            Some(irq) if reg.get(irq) => acc | 1 << i,
            _ => acc,
        })
    }

    pub(crate) fn write_bits(&mut self, vcpu: usize, first: u32, reg: BitReg, value: u32) {
        for i in 0..32 {
            let id = Intid::new(first + i);
            let Some(irq) = self.irq_mut(vcpu, id) else {
                continue;
            };
            reg.put(irq, value & (1 << i) != 0);
            // Deactivated behind the guest CPU interface's back (ICACTIVER): a vCPU that
            // only kept the interrupt for its pending deactivation lets go of it.
            if let Some(owner) = irq.owner.filter(|_| !irq.active) {
                let in_lr = self.cpus[owner]
                    .lrs
                    .iter()
                    .flatten()
                    .any(|s| s.lr.vintid == id);
                if !in_lr {
                    self.irq_mut(vcpu, id).expect("looked up above").owner = None;
                }
            }
        }
    }

    /// Priority bytes for INTIDs `first..first + size` (one byte each, little-endian).
    pub(crate) fn read_priorities(&self, vcpu: usize, first: u32, size: AccessSize) -> u64 {
        (0..size.bytes() as u32).fold(0, |acc, b| {
            let p = self
                .irq(vcpu, Intid::new(first + b))
                .map_or(0, |irq| irq.priority);
            acc | u64::from(p) << (8 * b)
        })
    }

    pub(crate) fn write_priorities(
        &mut self,
        vcpu: usize,
        first: u32,
        size: AccessSize,
        value: u64,
    ) {
        for b in 0..size.bytes() as u32 {
            if let Some(irq) = self.irq_mut(vcpu, Intid::new(first + b)) {
                irq.priority = (value >> (8 * b)) as u8 & PRIORITY_MASK;
            }
        }
    }

    /// ICFGR: two bits for each of INTIDs `first..first + 16`; bit 2k+1 set = edge-triggered.
    pub(crate) fn read_config(&self, vcpu: usize, first: u32) -> u32 {
        (0..16).fold(0, |acc, i| match self.irq(vcpu, Intid::new(first + i)) {
            Some(irq) if irq.edge => acc | 2 << (2 * i),
            _ => acc,
        })
    }

    /// SGIs are always edge-triggered: their configuration bits ignore writes.
    pub(crate) fn write_config(&mut self, vcpu: usize, first: u32, value: u32) {
        for i in 0..16 {
            let id = Intid::new(first + i);
            if id.is_sgi() {
                continue;
            }
            if let Some(irq) = self.irq_mut(vcpu, id) {
                irq.edge = value & (2 << (2 * i)) != 0;
            }
        }
    }
}
