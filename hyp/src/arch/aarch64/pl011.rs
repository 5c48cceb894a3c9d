//! ARM PL011 UART: the console. The firmware (or QEMU) configured baud rate and framing; we
//! wait for FIFO space and write bytes, and take received bytes for the guest that owns the
//! console input (receive interrupt on, FIFO drained by the interrupt handler).

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};

register_bitfields![u32,
    FR [
        /// Transmit FIFO full.
        TXFF OFFSET(5) NUMBITS(1) [],
        /// Receive FIFO empty.
        RXFE OFFSET(4) NUMBITS(1) [],
        /// UART busy transmitting.
        BUSY OFFSET(3) NUMBITS(1) [],
    ],
];

register_structs! {
    pub Pl011Regs {
        (0x000 => dr: ReadWrite<u32>),
        (0x004 => rsr_ecr: ReadWrite<u32>),
        (0x008 => _reserved0),
        (0x018 => fr: ReadOnly<u32, FR::Register>),
        (0x01c => _reserved1),
        (0x024 => ibrd: ReadWrite<u32>),
        (0x028 => fbrd: ReadWrite<u32>),
        (0x02c => lcr_h: ReadWrite<u32>),
        (0x030 => cr: ReadWrite<u32>),
        (0x034 => ifls: ReadWrite<u32>),
        (0x038 => imsc: ReadWrite<u32>),
        (0x03c => ris: ReadOnly<u32>),
        (0x040 => mis: ReadOnly<u32>),
        (0x044 => icr: WriteOnly<u32>),
        (0x048 => @END),
    }
}

/// UARTIMSC/UARTICR bits: receive and receive-timeout interrupts.
const IMSC_RX: u32 = 1 << 4;
const IMSC_RT: u32 = 1 << 6;

/// QEMU virt's PL011, used when the DTB cannot tell us where the console is.
pub const QEMU_VIRT_PL011: u64 = 0x0900_0000;

/// A PL011 at a fixed physical (= identity-mapped virtual) address.
#[derive(Clone, Copy)]
pub struct Pl011 {
    regs: &'static Pl011Regs,
}

impl Pl011 {
    /// # Safety
    /// `base` must be the address of a PL011's registers, accessible as device memory (MMU off,
    /// or mapped Device-nGnRE) for as long as the value is used.
    pub const unsafe fn new(base: u64) -> Self {
        // SAFETY: the caller guarantees `base` points at PL011 registers that stay mapped; the
        // register block is only accessed through volatile tock-registers accessors.
        let regs = unsafe { &*(base as *const Pl011Regs) };
        Self { regs }
    }

    pub fn base(&self) -> u64 {
        core::ptr::from_ref(self.regs) as u64
    }

    pub fn write_byte(&self, b: u8) {
        while self.regs.fr.is_set(FR::TXFF) {
            core::hint::spin_loop();
        }
        self.regs.dr.set(u32::from(b));
    }

    pub fn write_bytes(&self, s: &[u8]) {
        for &b in s {
            if b == b'\n' {
                self.write_byte(b'\r');
            }
            self.write_byte(b);
        }
    }

    /// Unmasks the receive and receive-timeout interrupts, so every byte typed raises the
    /// UART's interrupt (a byte alone in the FIFO raises only the timeout one).
    pub fn enable_rx_interrupt(&self) {
        self.regs.icr.set(IMSC_RX | IMSC_RT);
        self.regs.imsc.set(self.regs.imsc.get() | IMSC_RX | IMSC_RT);
    }

    /// The next received byte, if any; draining the FIFO clears the receive interrupts.
    pub fn read_byte(&self) -> Option<u8> {
        if self.regs.fr.is_set(FR::RXFE) {
            return None;
        }
        // Bits 8..12 are error flags (framing, parity, break, overrun): the byte is kept
        // anyway, a console has no better use for a damaged keystroke than to show it.
        Some((self.regs.dr.get() & 0xff) as u8)
    }

    /// Waits until everything written has left the UART, so a shutdown does not cut the output.
    pub fn flush(&self) {
        while self.regs.fr.is_set(FR::BUSY) {
            core::hint::spin_loop();
        }
    }
}

impl core::fmt::Write for Pl011 {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.write_bytes(s.as_bytes());
        Ok(())
    }
}
