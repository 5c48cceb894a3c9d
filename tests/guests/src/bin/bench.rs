//! bench: micro-benchmarks of the exits a guest pays for, in virtual counter ticks.
//!
//! Prints `bench: <name> = <value> <unit>` lines, each a median over several samples, for the
//! xtask's benchmark to compare native QEMU with the same guest under the hypervisor. Under
//! `-icount shift=4` a tick is one instruction, so the numbers are deterministic:
//! - counter-read: an empty measurement (ISB + CNTVCT read), the floor under every other line;
//! - hvc-roundtrip: a null SMCCC call (SMCCC_VERSION over HVC) and back;
//! - mmio-read: one read of the PL011 flag register (trap-and-emulate under the hypervisor);
//! - sgi-self-latency: ICC_SGI1R_EL1 write of an SGI to this vCPU until its handler runs;
//! - vtimer-latency: from the virtual timer's deadline (CVAL) to its handler, woken from WFI;
//! - first-touch: first write to a fresh 2 MiB of RAM (a stage-2 fault under the hypervisor);
//! - retouch: a write to RAM already touched.
//!
//! Ends with SUCCESS unless a measurement could not be made (ERROR); it judges no numbers.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};

use test_guests::console::{UART, reg};
use test_guests::gic;
use test_guests::psci::{self, id};
use test_guests::timer::{self, CTL_ENABLE, CTL_IMASK, VTIMER_INTID};
use test_guests::{exceptions, println, report};

test_guests::test_main!(main);

const SAMPLES: usize = 31;
const SELF_SGI: u32 = 1;
/// How far ahead the timer is set: enough to be in WFI before it fires.
const TIMER_LEAD: u64 = 5000;
const BLOCK: u64 = 2 << 20;
const TOUCH_BLOCKS: usize = 8;

/// Counter value recorded by the last interrupt handler run.
static IRQ_AT: AtomicU64 = AtomicU64::new(0);
static TIMER_LATE: AtomicU64 = AtomicU64::new(0);

fn on_irq(intid: u32) {
    let now = timer::counter();
    match intid {
        VTIMER_INTID => {
            TIMER_LATE.store(now.wrapping_sub(timer::compare()), Ordering::Relaxed);
            timer::set_control(CTL_ENABLE | CTL_IMASK);
        }
        SELF_SGI => {}
        other => report::error(format_args!("unexpected interrupt {other}")),
    }
    IRQ_AT.store(now, Ordering::Release);
}

fn median(mut samples: [u64; SAMPLES]) -> u64 {
    samples.sort_unstable();
    samples[SAMPLES / 2]
}

/// Median of `SAMPLES` runs of `one`, each returning the ticks it measured.
fn measure(mut one: impl FnMut() -> u64) -> u64 {
    // One unrecorded run first, so the median never includes cold-path effects twice.
    one();
    median(core::array::from_fn(|_| one()))
}

fn timed(f: impl FnOnce()) -> u64 {
    let t0 = timer::counter();
    f();
    timer::counter() - t0
}

fn report_line(name: &str, ticks: u64) {
    println!("bench: {name} = {ticks} ticks");
}

fn main() -> ! {
    let rd = gic::setup_boot_cpu();
    exceptions::set_irq_hook(Some(on_irq));
    rd.enable(VTIMER_INTID, 0x80);
    rd.enable(SELF_SGI, 0x80);

    report_line("counter-read", measure(|| timed(|| {})));
    report_line(
        "hvc-roundtrip",
        measure(|| {
            timed(|| {
                psci::hvc(id::SMCCC_VERSION, 0, 0, 0);
            })
        }),
    );
    report_line(
        "mmio-read",
        measure(|| {
            timed(|| {
                UART.read32(reg::FR);
            })
        }),
    );
    report_line("sgi-self-latency", measure(sgi_self));
    report_line("vtimer-latency", measure(vtimer));
    touch();
    report::success()
}

/// Spins until the handler has recorded an interrupt. No time limit of its own: a starved host
/// can hold this vCPU past any bound in guest time (a 100 ms one failed a loaded CI run), and
/// the runner's timeout ends a run whose interrupt never comes.
fn wait_for_irq() {
    while IRQ_AT.load(Ordering::Acquire) == 0 {
        core::hint::spin_loop();
    }
}

fn sgi_self() -> u64 {
    IRQ_AT.store(0, Ordering::Release);
    exceptions::enable_irqs();
    let t0 = timer::counter();
    gic::send_sgi(SELF_SGI, test_guests::cpu::mpidr());
    wait_for_irq();
    exceptions::disable_irqs();
    IRQ_AT.load(Ordering::Acquire) - t0
}

fn vtimer() -> u64 {
    IRQ_AT.store(0, Ordering::Release);
    timer::set_compare(timer::counter() + TIMER_LEAD);
    timer::set_control(CTL_ENABLE);
    exceptions::enable_irqs();
    // The first sample proves the interrupt arrives at all before anything waits in WFI.
    wait_for_irq();
    // Now the measured run, from WFI.
    IRQ_AT.store(0, Ordering::Release);
    timer::set_compare(timer::counter() + TIMER_LEAD);
    timer::set_control(CTL_ENABLE);
    exceptions::wait_for_interrupt_while(|| IRQ_AT.load(Ordering::Acquire) == 0);
    exceptions::disable_irqs();
    timer::set_control(0);
    TIMER_LATE.load(Ordering::Relaxed)
}

/// Ticks for one 8-byte store to `addr`.
#[inline(never)]
fn store_ticks(addr: u64) -> u64 {
    // SAFETY: callers pass RAM past this image (whose .bss and stacks end before it), below the
    // 64 MiB every test VM has; nothing else uses that memory.
    timed(|| unsafe { core::ptr::write_volatile(addr as *mut u64, addr) })
}

fn touch() {
    let base = test_guests::image_range().end.next_multiple_of(BLOCK) + BLOCK;
    let mut first: [u64; TOUCH_BLOCKS] =
        core::array::from_fn(|i| store_ticks(base + i as u64 * BLOCK));
    let mut again: [u64; TOUCH_BLOCKS] =
        core::array::from_fn(|i| store_ticks(base + i as u64 * BLOCK + 8));
    first.sort_unstable();
    again.sort_unstable();
    report_line("first-touch", first[TOUCH_BLOCKS / 2]);
    report_line("retouch", again[TOUCH_BLOCKS / 2]);
}
