//! The console: whole lines to the PL011, one CPU at a time, and the `log` backend.
//!
//! A line is formatted into a stack buffer first and written under a spinlock whose owner is a
//! CPU index, so CPUs never interleave mid-line, and a CPU that faults while holding the lock
//! (it is the owner) can still report.
//!
//! A guest may also leave a line open (a shell prompt waits for input without a newline): its
//! piece is printed at once and the line stays open for that guest's next piece. Anyone else
//! printing first ends the open line, so two writers still never share a line; the guest's
//! next piece then starts a fresh, prefixed line.

use super::percpu::cpu_index;
use super::pl011::{Pl011, QEMU_VIRT_PL011};
use super::sysreg::{counter, counter_frequency};
use crate::log::{LineBuf, Timestamp, write_prefix};
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

const LINE_MAX: usize = 256;
const FREE: usize = usize::MAX;

static UART_BASE: AtomicU64 = AtomicU64::new(QEMU_VIRT_PL011);
static LINE_OWNER: AtomicUsize = AtomicUsize::new(FREE);
static BOOT_TICKS: AtomicU64 = AtomicU64::new(0);
/// Tag of the guest whose line is open (printed without its newline yet), or `NO_LINE`.
static OPEN_LINE: AtomicUsize = AtomicUsize::new(NO_LINE);
const NO_LINE: usize = usize::MAX;

/// Records the boot time (log timestamps count from here) and the UART to use.
///
/// # Safety
/// `uart_base` must be the address of a PL011 that stays accessible (identity mapped as
/// device memory once the MMU is on).
pub unsafe fn init(uart_base: u64) {
    BOOT_TICKS.store(counter(), Ordering::Relaxed);
    UART_BASE.store(uart_base, Ordering::Relaxed);
}

pub fn uart_base() -> u64 {
    UART_BASE.load(Ordering::Relaxed)
}

fn uart() -> Pl011 {
    // SAFETY: UART_BASE holds QEMU virt's PL011 or the one `init`'s caller vouched for.
    unsafe { Pl011::new(UART_BASE.load(Ordering::Relaxed)) }
}

pub fn now() -> Timestamp {
    Timestamp {
        ticks: counter().wrapping_sub(BOOT_TICKS.load(Ordering::Relaxed)),
        frequency: counter_frequency(),
    }
}

/// Writes one line without locking: only for use before the MMU is on (exclusive accesses to
/// device memory are not guaranteed to work) and on the path that stops the machine.
pub fn print_raw(args: fmt::Arguments<'_>) {
    let mut u = uart();
    let _ = u.write_fmt(args);
    u.write_bytes(b"\n");
}

/// Runs `f` holding the console, so what it writes is not interleaved with other CPUs.
fn locked(f: impl FnOnce(Pl011)) {
    let me = cpu_index();
    let reentered = LINE_OWNER.load(Ordering::Relaxed) == me;
    if !reentered {
        while LINE_OWNER
            .compare_exchange_weak(FREE, me, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
    }
    f(uart());
    if !reentered {
        LINE_OWNER.store(FREE, Ordering::Release);
    }
}

/// Ends a guest's open line unless `tag` is that guest; returns whether `tag`'s line is open.
fn close_other_line(u: Pl011, tag: usize) -> bool {
    let open = OPEN_LINE.load(Ordering::Relaxed);
    if open == tag {
        return true;
    }
    if open != NO_LINE {
        u.write_bytes(b"\n");
        OPEN_LINE.store(NO_LINE, Ordering::Relaxed);
    }
    false
}

/// Writes `line` and a newline as one unit.
fn emit(line: &[u8]) {
    locked(|u| {
        close_other_line(u, NO_LINE);
        u.write_bytes(line);
        u.write_bytes(b"\n");
    });
}

/// Prints a piece of guest `tag`'s console output: `prefix` first unless it continues that
/// guest's open line; `ends_line` closes the line, otherwise it stays open for the next piece.
pub fn print_guest(tag: usize, prefix: &str, piece: &[u8], ends_line: bool) {
    debug_assert!(tag != NO_LINE);
    locked(|u| {
        if !close_other_line(u, tag) {
            u.write_bytes(prefix.as_bytes());
        }
        u.write_bytes(piece);
        if ends_line {
            u.write_bytes(b"\n");
            OPEN_LINE.store(NO_LINE, Ordering::Relaxed);
        } else {
            OPEN_LINE.store(tag, Ordering::Relaxed);
        }
    });
}

/// Turns on the console's receive interrupt (the caller routes and enables it at the GIC).
pub fn enable_input() {
    uart().enable_rx_interrupt();
}

/// The next byte typed on the console, if any.
pub fn read_input() -> Option<u8> {
    uart().read_byte()
}

/// Prints one line (no prefix).
pub fn print_line(args: fmt::Arguments<'_>) {
    let mut line = LineBuf::<LINE_MAX>::new();
    let _ = line.write_fmt(args);
    emit(line.as_bytes());
}

/// Waits until the UART has sent everything, before the machine is turned off.
pub fn flush() {
    uart().flush();
}

struct Logger;

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut line = LineBuf::<LINE_MAX>::new();
        let _ = write_prefix(&mut line, now(), cpu_index(), record.level());
        let _ = line.write_fmt(*record.args());
        emit(line.as_bytes());
    }

    fn flush(&self) {}
}

static LOGGER: Logger = Logger;

/// Installs the `log` backend. Call once, with the MMU on.
pub fn install_logger(level: log::LevelFilter) {
    // A second call finds the logger installed already; the level still applies.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}
