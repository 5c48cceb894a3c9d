//! timers: both EL1 timers are exact. The virtual timer (native, its interrupt forwarded by
//! the hypervisor) and the physical timer (emulated by the hypervisor: its registers trap).
//!
//! For each timer: its pending state, as GICR_ISPENDR0 shows it, follows the timer's line with
//! interrupts masked in PSTATE: pending once it expires, not pending once masked (IMASK), pending
//! again once unmasked, not pending once disabled; a disabled timer's interrupt is not taken when
//! PSTATE unmasks interrupts; enabled again (its compare value long past) it is taken at once,
//! exactly once. For the physical timer also: CTL reads back with ISTATUS computed, CVAL/TVAL
//! agree with the physical counter, and expiries arrive by polling and in WFI (a lost wake-up
//! hangs there and the runner's timeout reports it). A failure points at the hypervisor's
//! physical-timer emulation (hyp/src/vdev/phys_timer.rs and its glue) or at the virtual timer's
//! level not being sampled again at exits (`vgic_sync` in arch/aarch64/guest.rs).
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use test_guests::gic::{self, Redistributor};
use test_guests::timer::{
    self, CTL_ENABLE, CTL_IMASK, CTL_ISTATUS, PTIMER_INTID, VTIMER_INTID, physical,
};
use test_guests::{check, exceptions, println, report};

test_guests::test_main!(main);

/// Interrupts taken, by timer: [virtual, physical].
static TAKEN: [AtomicU32; 2] = [AtomicU32::new(0), AtomicU32::new(0)];
/// The first unexpected thing the handler saw: an INTID | 1 << 32, or 1 << 33 for a timer that
/// had not expired.
static BAD: AtomicU64 = AtomicU64::new(0);

/// One of the two timers, as the test drives it.
struct Timer {
    name: &'static str,
    intid: u32,
    slot: usize,
    set_countdown: fn(u32),
    set_control: fn(u64),
    control: fn() -> u64,
}

const VIRTUAL: Timer = Timer {
    name: "virtual timer",
    intid: VTIMER_INTID,
    slot: 0,
    set_countdown: timer::set_countdown,
    set_control: timer::set_control,
    control: timer::control,
};

const PHYSICAL: Timer = Timer {
    name: "physical timer",
    intid: PTIMER_INTID,
    slot: 1,
    set_countdown: physical::set_countdown,
    set_control: physical::set_control,
    control: physical::control,
};

fn on_irq(intid: u32) {
    let t = match intid {
        VTIMER_INTID => &VIRTUAL,
        PTIMER_INTID => &PHYSICAL,
        other => {
            BAD.store(u64::from(other) | 1 << 32, Ordering::Relaxed);
            return;
        }
    };
    if (t.control)() & CTL_ISTATUS == 0 {
        BAD.store(1 << 33 | u64::from(intid), Ordering::Relaxed);
    }
    // Level-triggered: mask it, or it fires again right after EOI.
    (t.set_control)(CTL_ENABLE | CTL_IMASK);
    TAKEN[t.slot].fetch_add(1, Ordering::AcqRel);
}

fn taken(t: &Timer) -> u32 {
    TAKEN[t.slot].load(Ordering::Acquire)
}

fn check_handler(t: &Timer, when: &str) {
    let bad = BAD.swap(0, Ordering::Relaxed);
    check!(
        bad == 0,
        "{} ({when}): {}",
        t.name,
        if bad & 1 << 33 != 0 {
            "interrupt taken while CTL.ISTATUS was clear"
        } else {
            "unexpected interrupt"
        }
    );
}

/// The pending state follows the line, with PSTATE.I set throughout but where said.
fn pending_follows_the_line(rd: Redistributor, t: &Timer) {
    exceptions::disable_irqs();
    (t.set_control)(0);
    (t.set_countdown)(timer::ms_to_ticks(1) as u32);
    (t.set_control)(CTL_ENABLE);
    let expired = timer::wait_until(1000, || {
        (t.control)() & CTL_ISTATUS != 0 && rd.pending(t.intid)
    });
    check!(
        expired,
        "{}: expired (CTL {:#x}) but not pending in GICR_ISPENDR0",
        t.name,
        (t.control)()
    );
    (t.set_control)(CTL_ENABLE | CTL_IMASK);
    check!(
        !rd.pending(t.intid),
        "{}: masked (IMASK) but still pending in GICR_ISPENDR0",
        t.name
    );
    (t.set_control)(CTL_ENABLE);
    check!(
        rd.pending(t.intid),
        "{}: unmasked while expired but not pending in GICR_ISPENDR0",
        t.name
    );
    (t.set_control)(0);
    check!(
        !rd.pending(t.intid),
        "{}: disabled but still pending in GICR_ISPENDR0",
        t.name
    );
    let before = taken(t);
    exceptions::enable_irqs();
    timer::wait_until(2, || false);
    exceptions::disable_irqs();
    check!(
        taken(t) == before,
        "{}: a disabled timer's interrupt was taken",
        t.name
    );
    // Enabled again with its compare value long past: the line rises at once.
    exceptions::enable_irqs();
    (t.set_control)(CTL_ENABLE);
    let arrived = timer::wait_until(1000, || taken(t) != before);
    exceptions::disable_irqs();
    check!(arrived, "{}: re-enabled after expiry, no interrupt", t.name);
    check!(
        taken(t) == before + 1,
        "{}: {} interrupts for one expiry",
        t.name,
        taken(t) - before
    );
    check_handler(t, "re-enabled");
    println!(
        "timers: {}: pending follows enable and mask, nothing stale taken",
        t.name
    );
}

/// The physical timer's registers read back as the architecture says.
fn physical_registers() {
    physical::set_control(0);
    check!(
        physical::control() == 0,
        "CNTP_CTL_EL0 reads {:#x} after writing 0",
        physical::control()
    );
    let now = physical::counter();
    physical::set_compare(now + 1_000_000_000);
    let tval = physical::countdown();
    check!(
        tval <= 1_000_000_000 && tval > 1_000_000_000 - timer::ms_to_ticks(1000),
        "CNTP_TVAL_EL0 reads {tval} for a compare value 1e9 ticks ahead"
    );
    physical::set_countdown(500_000);
    let cval = physical::compare();
    let after = physical::counter();
    check!(
        cval > now && cval <= after + 500_000,
        "CNTP_CVAL_EL0 {cval:#x} after TVAL = 500000 between counter {now:#x} and {after:#x}"
    );
    // Disabled, then enabled with the compare value in the past: ISTATUS only when enabled.
    physical::set_compare(0);
    check!(
        physical::control() & CTL_ISTATUS == 0,
        "disabled timer shows ISTATUS"
    );
    physical::set_control(CTL_ENABLE | CTL_IMASK);
    check!(
        physical::control() == CTL_ENABLE | CTL_IMASK | CTL_ISTATUS,
        "CNTP_CTL_EL0 reads {:#x}, want ENABLE | IMASK | ISTATUS",
        physical::control()
    );
    physical::set_control(0);
    // The guest's physical counter is offset like its virtual one: read between two virtual
    // reads, it lies between them.
    let before = timer::counter();
    let phys = physical::counter();
    let after = timer::counter();
    check!(
        before <= phys && phys <= after,
        "CNTPCT_EL0 {phys:#x} not between two CNTVCT_EL0 reads {before:#x} and {after:#x}"
    );
    println!("timers: physical timer registers read back as written");
}

/// Expiries of the physical timer, polled and in WFI.
fn physical_expiries() {
    for (round, wfi) in (0..40).map(|r| (r, r % 2 == 1)) {
        let before = taken(&PHYSICAL);
        physical::set_countdown(200 + (round * 397) % 4000);
        physical::set_control(CTL_ENABLE);
        exceptions::enable_irqs();
        let arrived = if wfi {
            exceptions::wait_for_interrupt_while(|| taken(&PHYSICAL) == before);
            true
        } else {
            timer::wait_until(1000, || taken(&PHYSICAL) != before)
        };
        exceptions::disable_irqs();
        check!(
            arrived,
            "physical timer round {round}: no interrupt (CTL {:#x})",
            physical::control()
        );
        check!(
            taken(&PHYSICAL) == before + 1,
            "physical timer round {round}: {} interrupts for one expiry",
            taken(&PHYSICAL) - before
        );
        check_handler(&PHYSICAL, "expiry");
    }
    physical::set_control(0);
    println!("timers: physical timer: 40 expiries, 20 of them awaited in WFI");
}

fn main() -> ! {
    let rd = gic::setup_boot_cpu();
    exceptions::set_irq_hook(Some(on_irq));
    rd.enable(VTIMER_INTID, 0x80);
    rd.enable(PTIMER_INTID, 0x80);

    physical_registers();
    physical_expiries();
    pending_follows_the_line(rd, &PHYSICAL);
    pending_follows_the_line(rd, &VIRTUAL);
    report::success()
}
