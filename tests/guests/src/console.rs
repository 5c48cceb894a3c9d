//! Line output on the PL011 at QEMU virt's 0x0900_0000, shared by all vCPUs.
//!
//! Nothing has set the UART up before us (there is no firmware), so `init` enables it the way
//! Linux's amba-pl011 driver does. A lock keeps lines from different vCPUs whole; IRQs are
//! masked while it is held, so an interrupt handler that prints cannot deadlock its own vCPU.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};

use crate::mmio::Mmio;

pub const PL011_BASE: usize = 0x0900_0000;

/// PL011 register offsets and bits (Arm PrimeCell UART (PL011) TRM).
pub mod reg {
    pub const DR: usize = 0x00;
    pub const FR: usize = 0x18;
    pub const LCR_H: usize = 0x2c;
    pub const CR: usize = 0x30;
    pub const IMSC: usize = 0x38;
    pub const PERIPH_ID0: usize = 0xfe0;

    pub const FR_BUSY: u32 = 1 << 3;
    pub const FR_RXFE: u32 = 1 << 4;
    pub const FR_TXFF: u32 = 1 << 5;
    pub const FR_TXFE: u32 = 1 << 7;
    /// 8 data bits, FIFOs on.
    pub const LCR_H_8N1_FIFO: u32 = (3 << 5) | (1 << 4);
    pub const CR_UARTEN: u32 = 1 << 0;
    pub const CR_TXE: u32 = 1 << 8;
    pub const CR_RXE: u32 = 1 << 9;
}

pub const UART: Mmio = Mmio::new(PL011_BASE);

static LOCK: AtomicBool = AtomicBool::new(false);
/// Far longer than any line takes to print.
const LOCK_SPINS: u32 = 50_000_000;

/// Enables the UART for 8N1 with FIFOs, transmitter and receiver on.
pub fn init() {
    UART.write32(reg::CR, 0);
    UART.write32(reg::LCR_H, reg::LCR_H_8N1_FIFO);
    UART.write32(reg::CR, reg::CR_UARTEN | reg::CR_TXE | reg::CR_RXE);
}

fn put_byte(b: u8) {
    // A stuck TXFF must not hang the test forever: give up on the byte after a while.
    for _ in 0..1_000_000 {
        if UART.read32(reg::FR) & reg::FR_TXFF == 0 {
            break;
        }
        core::hint::spin_loop();
    }
    UART.write32(reg::DR, u32::from(b));
}

struct Uart;

impl Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                put_byte(b'\r');
            }
            put_byte(b);
        }
        Ok(())
    }
}

/// Holds the console; dropping it unlocks and restores the interrupt mask.
struct Guard {
    daif: u64,
}

impl Guard {
    fn lock() -> Self {
        let daif: u64;
        // SAFETY: saves DAIF and masks IRQs; `Drop` restores the saved value.
        unsafe {
            core::arch::asm!("mrs {}, daif", "msr daifset, #2", out(reg) daif, options(nostack));
        }
        // A holder that never lets go (a panic while printing, a vCPU stopped mid-line) must
        // not silence the result line: after a while, print anyway, interleaved if need be (and
        // release the lock afterwards: its holder is stuck).
        for _ in 0..LOCK_SPINS {
            if LOCK
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                break;
            }
            core::hint::spin_loop();
        }
        Self { daif }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        LOCK.store(false, Ordering::Release);
        // SAFETY: restores the interrupt mask saved by `lock`.
        unsafe { core::arch::asm!("msr daif, {}", in(reg) self.daif, options(nostack)) };
    }
}

/// Prints `args` followed by a newline, as one uninterrupted line.
pub fn print_line(args: fmt::Arguments<'_>) {
    let _guard = Guard::lock();
    // Uart::write_str cannot fail.
    let _ = Uart.write_fmt(args);
    let _ = Uart.write_str("\n");
}

/// Prints a formatted line on the console.
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {
        $crate::console::print_line(format_args!($($arg)*))
    };
}
