//! Virtual devices of a Linux guest, as portable models: the vGICv3 (distributor,
//! redistributors, list-register manager) and the vPL011. Nothing here touches hardware; the
//! arch layer feeds trapped MMIO accesses, trapped ICC_SGI1R_EL1 writes and list-register
//! contents in, and writes back what the models return.
//!
//! Glue, per exit of vCPU `v` (all under the VM's device lock; the MMIO and UART steps are
//! `vm::devices::Devices`, host-tested there):
//! 1. `vgic.sync(v, &ich_lr_values)` with the list registers the last flush wrote.
//! 2. Handle the exit: a data abort decodes with [`mmio::DataAbort::decode`], its IPA goes
//!    through [`DeviceMap::lookup`], the access to `vgic.distributor()`,
//!    `vgic.redistributors()` or the [`pl011::Pl011`]; after any UART access or RX push,
//!    `vgic.set_spi_level(UART_INTID, uart.irq_level())`. A trapped ICC_SGI1R_EL1 write goes
//!    to `vgic.send_sgi(v, value)`; the physical virtual-timer interrupt to
//!    `vgic.inject_ppi(v, Intid::VTIMER)` (acknowledged and priority-dropped at EL2, left
//!    active: the guest's deactivation through the HW list register ends it). Kick the vCPUs
//!    these calls return.
//! 3. `vgic.flush(v, n_lrs)`: write every ICH_LR<i>_EL2 with `flush.raw(i)` and set
//!    ICH_HCR_EL2.UIE when `flush.underflow` (maintenance interrupts are just exits).
#![forbid(unsafe_code)]

pub mod mmio;
pub mod phys_timer;
pub mod pl011;
pub mod vgic;

use crate::mm::addr::Ipa;
use guest_loader::guest_dtb::virt;

/// The vPL011's interrupt (the SPI the guest DTB gives the UART).
pub const UART_INTID: vgic::Intid = vgic::Intid::spi(virt::UART_SPI);

/// Which emulated device a guest-physical address belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    GicDistributor,
    GicRedistributors,
    Uart,
}

/// A device window in the guest-physical map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub kind: DeviceKind,
    pub base: Ipa,
    pub size: u64,
}

impl Window {
    /// The offset of `ipa` inside the window, if it falls inside.
    pub fn offset_of(&self, ipa: Ipa) -> Option<u64> {
        let off = ipa.raw().checked_sub(self.base.raw())?;
        (off < self.size).then_some(off)
    }
}

/// Where the emulated devices sit in one VM's guest-physical map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceMap {
    windows: [Window; 3],
}

impl DeviceMap {
    /// The map the guest DTB describes (QEMU `virt` addresses), for `vcpus` redistributors.
    pub fn qemu_virt(vcpus: usize) -> Self {
        Self::new(
            Ipa::new(virt::GICD_BASE),
            Ipa::new(virt::GICR_BASE),
            vcpus,
            Ipa::new(virt::UART_BASE),
        )
    }

    /// A map with explicit bases; the redistributor window is `vcpus` frames of
    /// [`vgic::GICR_STRIDE`] bytes.
    pub fn new(gicd: Ipa, gicr: Ipa, vcpus: usize, uart: Ipa) -> Self {
        Self {
            windows: [
                Window {
                    kind: DeviceKind::GicDistributor,
                    base: gicd,
                    size: vgic::GICD_SIZE,
                },
                Window {
                    kind: DeviceKind::GicRedistributors,
                    base: gicr,
                    size: vgic::GICR_STRIDE * vcpus as u64,
                },
                Window {
                    kind: DeviceKind::Uart,
                    base: uart,
                    size: pl011::PL011_SIZE,
                },
            ],
        }
    }

    /// The device and offset a trapped access at `ipa` goes to, or `None` when no emulated
    /// device lives there (the arch layer injects an external abort).
    pub fn lookup(&self, ipa: Ipa) -> Option<(DeviceKind, u64)> {
        self.windows
            .iter()
            .find_map(|w| w.offset_of(ipa).map(|off| (w.kind, off)))
    }

    pub fn windows(&self) -> &[Window] {
        &self.windows
    }
}

#[cfg(test)]
mod tests {
    use super::vgic::{GICR_SGI_BASE, GICR_STRIDE, Vgic};
    use super::*;

    #[test]
    fn redistributor_window_matches_the_model() {
        let mut gic = Vgic::new(1, vgic::DEFAULT_SPIS).unwrap();
        assert_eq!(UART_INTID.raw(), 33);
        assert_eq!(
            DeviceMap::qemu_virt(1).windows()[1].size,
            gic.redistributors().size()
        );
        assert_eq!(
            DeviceMap::qemu_virt(1).lookup(Ipa::new(virt::GICR_BASE + GICR_SGI_BASE + 0x100)),
            Some((DeviceKind::GicRedistributors, GICR_STRIDE / 2 + 0x100))
        );
    }

    #[test]
    fn qemu_virt_map_matches_the_guest_dtb() {
        let m = DeviceMap::qemu_virt(2);
        assert_eq!(
            m.lookup(Ipa::new(0x0800_0000)),
            Some((DeviceKind::GicDistributor, 0))
        );
        assert_eq!(
            m.lookup(Ipa::new(0x0800_ffff)),
            Some((DeviceKind::GicDistributor, 0xffff))
        );
        assert_eq!(m.lookup(Ipa::new(0x0801_0000)), None);
        assert_eq!(
            m.lookup(Ipa::new(0x080A_0000 + 0x3_0080)),
            Some((DeviceKind::GicRedistributors, 0x3_0080))
        );
        // Two vCPUs: the third frame is not ours.
        assert_eq!(m.lookup(Ipa::new(0x080A_0000 + 0x4_0000)), None);
        assert_eq!(
            m.lookup(Ipa::new(0x0900_0018)),
            Some((DeviceKind::Uart, 0x18))
        );
        assert_eq!(m.lookup(Ipa::new(0x0900_1000)), None);
        assert_eq!(m.lookup(Ipa::new(0x4000_0000)), None);
    }
}
