//! A VM's emulated devices and the glue the run loop drives them with: trapped MMIO accesses
//! routed to the vGIC or the vPL011, typed input moved into the UART while it has room, and
//! the UART's interrupt line driven into the vGIC when it changes (the protocol in `vdev`'s
//! docs). Portable: the arch layer holds a [`Devices`] under the VM's device lock and only
//! kicks the vCPU these calls name; host tests drive the same code.
#![forbid(unsafe_code)]

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use crate::sync::Mutex;
use crate::vdev::mmio::{MmioAccess, MmioDevice, MmioError};
use crate::vdev::phys_timer::PhysTimer;
use crate::vdev::pl011::{Pl011, SerialOut};
use crate::vdev::vgic::Vgic;
use crate::vdev::{DeviceKind, UART_INTID};

/// Bytes typed for a VM and not yet taken by its UART.
const INPUT_MAX: usize = 4096;

/// What is typed for one VM, waiting for room in its UART's receive FIFO. Bounded: a guest
/// that does not read its console loses what is typed past [`INPUT_MAX`] bytes, counted.
#[derive(Default)]
pub struct InputQueue {
    bytes: VecDeque<u8>,
    dropped: u64,
}

impl InputQueue {
    /// Queues `b`; returns `false` if the queue was full and `b` was dropped.
    pub fn push(&mut self, b: u8) -> bool {
        if self.bytes.len() >= INPUT_MAX {
            self.dropped += 1;
            return false;
        }
        self.bytes.push_back(b);
        true
    }

    /// Bytes dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Hands bytes to `accept` in order until it refuses one.
    pub fn feed(&mut self, mut accept: impl FnMut(u8) -> bool) {
        while let Some(&b) = self.bytes.front() {
            if !accept(b) {
                return;
            }
            self.bytes.pop_front();
        }
    }
}

/// The emulated devices of one VM.
pub struct Devices<O> {
    /// The vPL011, if the VM has a console.
    pub uart: Option<Pl011<O>>,
    /// The UART's interrupt line as last driven into the vGIC.
    uart_line: bool,
    pub vgic: Vgic,
    /// Each vCPU's emulated EL1 physical timer.
    pub ptimers: Vec<PhysTimer>,
}

impl<O: SerialOut> Devices<O> {
    pub fn new(uart: Option<Pl011<O>>, vgic: Vgic, vcpus: usize) -> Self {
        Self {
            uart,
            uart_line: false,
            vgic,
            ptimers: alloc::vec![PhysTimer::default(); vcpus],
        }
    }

    /// Vcpu `v`'s access to the device window `kind`: the device's result (`None` if the VM
    /// has no such device), and the vCPU to kick if the access made an interrupt deliverable
    /// to another one. A UART access may free FIFO room for typed input or change its line; a
    /// GIC access may enable or route a pending interrupt.
    pub fn access(
        &mut self,
        v: usize,
        kind: DeviceKind,
        access: MmioAccess,
        input: &Mutex<InputQueue>,
    ) -> (Option<Result<u64, MmioError>>, Option<usize>) {
        let result = match kind {
            DeviceKind::Uart => self.uart.as_mut().map(|u| u.access(v, access)),
            DeviceKind::GicDistributor => Some(self.vgic.distributor().access(v, access)),
            DeviceKind::GicRedistributors => Some(self.vgic.redistributors().access(v, access)),
        };
        (result, self.uart_update(input))
    }

    /// Moves typed bytes into the UART while it has room and drives its interrupt into the
    /// vGIC when the line changed. Returns the vCPU to kick when that made the interrupt
    /// deliverable.
    pub fn uart_update(&mut self, input: &Mutex<InputQueue>) -> Option<usize> {
        let uart = self.uart.as_mut()?;
        input
            .lock()
            .feed(|b| uart.rx_space() > 0 && uart.push_rx(b));
        let level = uart.irq_level();
        // Only a change of the line is news to the vGIC (and a reason to rebuild list registers).
        if level == core::mem::replace(&mut self.uart_line, level) {
            return None;
        }
        self.vgic.set_spi_level(UART_INTID, level).ok().flatten()
    }

    /// Back to power-on state, with a fresh vGIC `vgic`: timers stopped, the UART as new (its
    /// output kept), the line low.
    pub fn reset(&mut self, vgic: Vgic) {
        self.vgic = vgic;
        self.ptimers.fill(PhysTimer::default());
        self.uart_line = false;
        self.uart = self.uart.take().map(|u| Pl011::new(u.into_output()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vdev::mmio::AccessSize;
    use crate::vdev::pl011::{INT_RT, INT_RX};
    use crate::vdev::vgic::{self, LrState};
    use alloc::vec::Vec;

    const W: AccessSize = AccessSize::Word;

    /// What the guest transmitted.
    #[derive(Default)]
    struct Sink(Vec<u8>);
    impl SerialOut for Sink {
        fn write_byte(&mut self, byte: u8) {
            self.0.push(byte);
        }
    }

    fn write(offset: u64, value: u64) -> MmioAccess {
        MmioAccess {
            offset,
            size: W,
            write: Some(value),
        }
    }
    fn read(offset: u64) -> MmioAccess {
        MmioAccess {
            offset,
            size: W,
            write: None,
        }
    }

    fn devices(vcpus: usize) -> Devices<Sink> {
        let gic = Vgic::new(vcpus, vgic::DEFAULT_SPIS).unwrap();
        Devices::new(Some(Pl011::new(Sink::default())), gic, vcpus)
    }

    /// The guest sets the GIC and the UART up as Linux does, routing the UART to `target`.
    fn linux_setup(d: &mut Devices<Sink>, input: &Mutex<InputQueue>, target: u64) {
        use DeviceKind::{GicDistributor as Gicd, Uart};
        let ok = |r: (Option<Result<u64, MmioError>>, Option<usize>)| {
            assert!(matches!(r.0, Some(Ok(_))), "{:?}", r.0);
        };
        ok(d.access(0, Gicd, write(0x84, u64::from(u32::MAX)), input));
        ok(d.access(0, Gicd, write(0x104, 1 << 1), input));
        let irouter = MmioAccess {
            offset: 0x6000 + 8 * 33,
            size: AccessSize::Double,
            write: Some(target),
        };
        ok(d.access(0, Gicd, irouter, input));
        ok(d.access(0, Gicd, write(0, 0x13), input));
        ok(d.access(0, Uart, write(0x30, 0x301), input));
        ok(d.access(0, Uart, write(0x2c, 0x70), input));
        ok(d.access(0, Uart, write(0x38, u64::from(INT_RX | INT_RT)), input));
    }

    #[test]
    fn typed_byte_raises_the_uart_interrupt_and_reading_it_lowers_it() {
        let mut d = devices(1);
        let input = Mutex::new(InputQueue::default());
        linux_setup(&mut d, &input, 0);
        assert!(input.lock().push(b'k'));
        assert_eq!(d.uart_update(&input), Some(0), "vCPU 0 is told");
        assert_eq!(d.uart_update(&input), None, "the line did not change again");
        assert_eq!(d.vgic.vcpu_has_pending(0), Ok(true), "a WFI wakes up");
        let lr = d.vgic.flush(0, 4).unwrap().lrs[0].unwrap();
        assert_eq!((lr.vintid, lr.state), (UART_INTID, LrState::Pending));
        // The guest acknowledges, then its handler reads the byte: the access itself lowers
        // the line (no separate step), then EOIs.
        let mut back = lr;
        back.state = LrState::Active;
        d.vgic.sync(0, &[back.encode(), 0, 0, 0]).unwrap();
        let (r, kick) = d.access(0, DeviceKind::Uart, read(0), &input);
        assert_eq!((r, kick), (Some(Ok(u64::from(b'k'))), None));
        let lr = d.vgic.flush(0, 4).unwrap().lrs[0].unwrap();
        assert_eq!(lr.state, LrState::Active, "no longer pending: line low");
        back.state = LrState::Invalid;
        d.vgic.sync(0, &[back.encode(), 0, 0, 0]).unwrap();
        assert_eq!(d.vgic.flush(0, 4).unwrap().used(), 0);
        assert_eq!(d.vgic.vcpu_has_pending(0), Ok(false));
        // Output goes to the UART's sink.
        d.access(0, DeviceKind::Uart, write(0, u64::from(b'!')), &input);
        assert_eq!(d.uart.as_mut().unwrap().output().0.as_slice(), b"!");
    }

    #[test]
    fn input_waits_for_fifo_room_and_the_access_that_frees_it_refills() {
        let mut d = devices(2);
        let input = Mutex::new(InputQueue::default());
        linux_setup(&mut d, &input, 1);
        for b in 0..40u8 {
            assert!(input.lock().push(b));
        }
        // The interrupt is routed to vCPU 1: an access by vCPU 0 kicks it.
        let (_, kick) = d.access(0, DeviceKind::Uart, read(0x18), &input);
        assert_eq!(kick, Some(1));
        let mut got = Vec::new();
        for _ in 0..40 {
            let (r, _) = d.access(1, DeviceKind::Uart, read(0), &input);
            got.push(r.unwrap().unwrap() as u8);
        }
        assert_eq!(got, (0..40).collect::<Vec<u8>>(), "in order, none lost");
    }

    #[test]
    fn a_vm_without_a_console_has_no_uart_and_input_queue_is_bounded() {
        let gic = Vgic::new(1, vgic::DEFAULT_SPIS).unwrap();
        let mut d: Devices<Sink> = Devices::new(None, gic, 1);
        let input = Mutex::new(InputQueue::default());
        assert_eq!(d.access(0, DeviceKind::Uart, read(0), &input), (None, None));
        let mut q = InputQueue::default();
        assert!((0..INPUT_MAX).all(|_| q.push(1)));
        assert!(!q.push(2));
        assert_eq!(q.dropped(), 1);
    }

    #[test]
    fn reset_keeps_the_output_and_forgets_the_line() {
        let mut d = devices(1);
        let input = Mutex::new(InputQueue::default());
        linux_setup(&mut d, &input, 0);
        d.access(0, DeviceKind::Uart, write(0, u64::from(b'a')), &input);
        input.lock().push(b'x');
        assert_eq!(d.uart_update(&input), Some(0));
        d.reset(Vgic::new(1, vgic::DEFAULT_SPIS).unwrap());
        assert_eq!(d.uart.as_mut().unwrap().output().0.as_slice(), b"a");
        assert_eq!(d.vgic.vcpu_has_pending(0), Ok(false));
        // The line is low again: raising it after the guest sets up is news again.
        linux_setup(&mut d, &input, 0);
        input.lock().push(b'y');
        assert_eq!(d.uart_update(&input), Some(0));
    }
}
