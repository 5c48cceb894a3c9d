//! ptimer_restore: the emulated EL1 physical timer survives a snapshot and restore.
//!
//! Arms the physical timer 300 ms ahead (guest time), prints `PTIMER-ARMED` (the hypervisor's
//! console trigger takes a snapshot there), and waits in WFI for its interrupt. In the first
//! run and in the restored one alike the interrupt must come, with the physical counter at or
//! past the compare value, and the guest's physical and virtual counters must agree (both
//! offset alike, so the restore keeps them together). A restore that lost the timer leaves the
//! guest asleep (the runner's timeout reports it); one that lost the counter offset shows as a
//! counter mismatch.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU32, Ordering};

use test_guests::gic;
use test_guests::timer::{self, CTL_ENABLE, CTL_IMASK, PTIMER_INTID, physical};
use test_guests::{check, exceptions, println, report};

test_guests::test_main!(main);

static TAKEN: AtomicU32 = AtomicU32::new(0);

fn on_irq(intid: u32) {
    if intid == PTIMER_INTID {
        physical::set_control(CTL_ENABLE | CTL_IMASK);
        TAKEN.fetch_add(1, Ordering::AcqRel);
    }
}

/// The physical counter read between two virtual counter reads must lie between them.
fn counters_agree() -> bool {
    let before = timer::counter();
    let phys = physical::counter();
    let after = timer::counter();
    before <= phys && phys <= after
}

fn main() -> ! {
    let rd = gic::setup_boot_cpu();
    exceptions::set_irq_hook(Some(on_irq));
    rd.enable(PTIMER_INTID, 0x80);
    check!(
        counters_agree(),
        "the physical counter does not lie between two virtual counter reads"
    );
    let cval = physical::counter() + timer::ms_to_ticks(300);
    physical::set_compare(cval);
    physical::set_control(CTL_ENABLE);
    println!("ptimer_restore: armed for {cval:#x} PTIMER-ARMED");
    exceptions::enable_irqs();
    exceptions::wait_for_interrupt_while(|| TAKEN.load(Ordering::Acquire) == 0);
    exceptions::disable_irqs();
    let now = physical::counter();
    check!(
        now >= cval,
        "interrupt at {now:#x}, before the compare value {cval:#x}"
    );
    check!(
        counters_agree(),
        "after the wait the physical and virtual counters disagree"
    );
    println!("ptimer_restore: fired at {now:#x}, counters agree");
    report::success()
}
