//! uart: the PL011 as Linux's amba-pl011 driver sees it.
//!
//! Prints several lines, one of 200 characters, so the output path must carry long runs of
//! bytes intact; checks the flag register says the transmitter drains (TXFE set, BUSY clear
//! within a timeout), that UARTCR, UARTLCR_H and UARTIMSC read back what was written, and the
//! PrimeCell identification registers the AMBA bus matches the driver with. A failure points at
//! the hypervisor's virtual PL011: register decode, read-back state, or the ID values (a wrong
//! ID makes Linux skip the device: no console). Last it reads the line the test typed before
//! QEMU even started the hypervisor (`send` before any `expect`): input typed ahead must wait,
//! not vanish.
#![no_std]
#![no_main]

use test_guests::console::{UART, reg};
use test_guests::{check, println, report, timer};

test_guests::test_main!(main);

/// UARTPeriphID0..3 and UARTPCellID0..3, 0xFE0..0xFFC. PeriphID2's top nibble is the revision
/// (r1p5 reads 0x34, older 0x14), so only its low nibble (the designer's ID bits) is compared.
const ID_WANT: [(u32, u32); 8] = [
    (0xff, 0x11),
    (0xff, 0x10),
    (0x0f, 0x04),
    (0xff, 0x00),
    (0xff, 0x0d),
    (0xff, 0xf0),
    (0xff, 0x05),
    (0xff, 0xb1),
];
const IMSC_RX_RT: u32 = (1 << 4) | (1 << 6);

fn main() -> ! {
    println!("uart: line 1 of 3");
    let long: [u8; 200] = core::array::from_fn(|i| b'a' + (i % 26) as u8);
    // Built from ASCII letters above.
    let long = core::str::from_utf8(&long).unwrap_or("");
    println!("{long}");
    println!("uart: line 3 of 3 (the line before is 200 characters, a..z repeated)");

    let drained = timer::wait_until(100, || {
        UART.read32(reg::FR) & (reg::FR_TXFE | reg::FR_BUSY) == reg::FR_TXFE
    });
    check!(
        drained,
        "UARTFR = {:#x}: TXFE not set or BUSY still set 100 ms after the last byte",
        UART.read32(reg::FR)
    );

    let cr = reg::CR_UARTEN | reg::CR_TXE | reg::CR_RXE;
    UART.write32(reg::CR, cr);
    let got = UART.read32(reg::CR);
    check!(
        got & cr == cr,
        "UARTCR read back {got:#x} after writing {cr:#x}"
    );

    let got = UART.read32(reg::LCR_H);
    check!(
        got & 0xff == reg::LCR_H_8N1_FIFO,
        "UARTLCR_H read back {got:#x} after writing {:#x}",
        reg::LCR_H_8N1_FIFO
    );

    UART.write32(reg::IMSC, IMSC_RX_RT);
    let got = UART.read32(reg::IMSC);
    UART.write32(reg::IMSC, 0);
    check!(
        got & 0x7ff == IMSC_RX_RT,
        "UARTIMSC read back {got:#x} after writing {IMSC_RX_RT:#x}"
    );
    let got = UART.read32(reg::IMSC);
    check!(
        got & 0x7ff == 0,
        "UARTIMSC read back {got:#x} after writing 0"
    );

    for (i, (mask, want)) in ID_WANT.into_iter().enumerate() {
        let offset = reg::PERIPH_ID0 + 4 * i;
        let got = UART.read32(offset);
        check!(
            got & mask == want && got >> 8 == 0,
            "ID register at {offset:#x} reads {got:#x}, want {want:#x} (mask {mask:#x})"
        );
    }
    println!("uart: flags, control, line control, interrupt mask and IDs as a PL011's");

    let mut line = [0u8; 64];
    let mut len = 0;
    while len < line.len() {
        // No time limit of its own: a byte that never comes is the runner's timeout, however
        // slowly the host delivers typed input.
        while UART.read32(reg::FR) & reg::FR_RXFE != 0 {
            core::hint::spin_loop();
        }
        let b = (UART.read32(reg::DR) & 0xff) as u8;
        if b == b'\n' || b == b'\r' {
            break;
        }
        line[len] = b;
        len += 1;
    }
    println!(
        "uart: read the line typed ahead: `{}`",
        core::str::from_utf8(&line[..len]).unwrap_or("(not UTF-8)")
    );
    report::success()
}
