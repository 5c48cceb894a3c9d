//! vtimer: the EL1 virtual timer interrupt arrives through the GICv3 as PPI 27.
//!
//! Sets up the distributor, this vCPU's redistributor and the ICC_* CPU interface, enables PPI
//! 27, then several times programs CNTV_TVAL_EL0 and waits: the first interrupt by polling with
//! a timeout, the rest in WFI. The handler checks the INTID, that the timer really expired
//! (CNTVCT >= CVAL, ISTATUS set) and masks it before EOI. Afterwards, the counter must have
//! advanced. Then 100 short, varied countdowns re-armed back to back, polled, and 100 more in
//! WFI: each must bring exactly one interrupt. A failure points at the hypervisor's
//! virtual timer (CNTVOFF, the hardware-linked list register, re-arming after the guest masks
//! it), its vGIC PPI path, or WFI handling (a hang in WFI means a lost wake-up).
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use test_guests::gic;
use test_guests::timer::{self, CTL_ENABLE, CTL_IMASK, CTL_ISTATUS, VTIMER_INTID};
use test_guests::{check, exceptions, println, report};

test_guests::test_main!(main);

const ROUNDS: u32 = 5;
const PERIOD_MS: u64 = 2;
/// Back-to-back short countdowns, where a lost or doubled interrupt shows up.
const RAPID_ROUNDS: u32 = 100;

static TAKEN: AtomicU32 = AtomicU32::new(0);
/// The first problem the handler saw (0 = none): an unexpected INTID, or 1 << 31 when the
/// timer was not expired at interrupt time.
static BAD: AtomicU64 = AtomicU64::new(0);
const NOT_EXPIRED: u64 = 1 << 31;

fn on_irq(intid: u32) {
    if intid != VTIMER_INTID {
        BAD.store(u64::from(intid) | 1 << 32, Ordering::Relaxed);
        return;
    }
    let (now, cval, ctl) = (timer::counter(), timer::compare(), timer::control());
    if now < cval || ctl & CTL_ISTATUS == 0 {
        BAD.store(NOT_EXPIRED, Ordering::Relaxed);
    }
    // The timer's output is level-triggered: mask it or it fires again right after EOI.
    timer::set_control(CTL_ENABLE | CTL_IMASK);
    TAKEN.fetch_add(1, Ordering::AcqRel);
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// Spin until the interrupt is taken, failing after this many milliseconds.
    Poll(u64),
    /// WFI until it is taken (a lost wake-up hangs here, and the runner's timeout reports it).
    Wfi,
}

/// Programs the timer `ticks` ahead, waits for its interrupt, checks what the handler saw.
fn expire(phase: &str, round: u32, ticks: u32, wait: Wait) {
    let before = TAKEN.load(Ordering::Acquire);
    timer::set_countdown(ticks);
    timer::set_control(CTL_ENABLE);
    exceptions::enable_irqs();
    let arrived = match wait {
        Wait::Poll(ms) => timer::wait_until(ms, || TAKEN.load(Ordering::Acquire) != before),
        Wait::Wfi => {
            exceptions::wait_for_interrupt_while(|| TAKEN.load(Ordering::Acquire) == before);
            true
        }
    };
    exceptions::disable_irqs();
    check!(
        arrived,
        "{phase} round {round}: no virtual timer interrupt for a {ticks}-tick countdown \
         (CNTV_CTL_EL0 = {:#x}, CVAL {:#x}, CNTVCT {:#x})",
        timer::control(),
        timer::compare(),
        timer::counter()
    );
    let bad = BAD.load(Ordering::Relaxed);
    check!(
        bad != NOT_EXPIRED,
        "{phase} round {round}: interrupt 27 taken before the timer expired"
    );
    check!(
        bad == 0,
        "{phase} round {round}: unexpected interrupt {}",
        bad & 0xffff_ffff
    );
    let taken = TAKEN.load(Ordering::Acquire) - before;
    check!(
        taken == 1,
        "{phase} round {round}: {taken} interrupts for one expiry"
    );
}

/// Short countdowns, varied so that expiry lands at different points of the re-arming path.
fn rapid_ticks(round: u32) -> u32 {
    200 + (round * 397) % 4000
}

fn main() -> ! {
    let freq = timer::frequency();
    check!(freq != 0, "CNTFRQ_EL0 is 0");
    let rd = gic::setup_boot_cpu();
    exceptions::set_irq_hook(Some(on_irq));
    rd.enable(VTIMER_INTID, 0x80);

    let start = timer::counter();
    let ticks = timer::ms_to_ticks(PERIOD_MS) as u32;
    expire("slow", 0, ticks, Wait::Poll(1000));
    println!("vtimer: first interrupt taken; the rest are awaited in WFI");
    for round in 1..ROUNDS {
        expire("slow", round, ticks, Wait::Wfi);
    }
    let elapsed = timer::counter() - start;
    let min = u64::from(ROUNDS) * u64::from(ticks);
    check!(
        elapsed >= min,
        "CNTVCT_EL0 advanced {elapsed} ticks over {ROUNDS} expiries of {ticks} ticks each"
    );
    println!("vtimer: {ROUNDS} interrupts, counter advanced {elapsed} ticks at {freq} Hz");

    for round in 0..RAPID_ROUNDS {
        expire("rapid polled", round, rapid_ticks(round), Wait::Poll(100));
    }
    println!("vtimer: {RAPID_ROUNDS} rapid re-arms polled; now {RAPID_ROUNDS} in WFI");
    for round in 0..RAPID_ROUNDS {
        expire("rapid WFI", round, rapid_ticks(round), Wait::Wfi);
    }
    timer::set_control(0);
    let taken = TAKEN.load(Ordering::Acquire);
    let want = ROUNDS + 2 * RAPID_ROUNDS;
    check!(
        taken == want,
        "took {taken} timer interrupts for {want} expiries"
    );
    println!("vtimer: {taken} interrupts in all");
    report::success()
}
