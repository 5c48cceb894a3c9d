//! EL2 interrupt dispatch: acknowledge (ICC_IAR1_EL1), run the INTID's handler from the
//! `irq_table`, drop priority (ICC_EOIR1_EL1) and deactivate (ICC_DIR_EL1).
//!
//! The hypervisor runs with PSTATE.I set at EL2 and takes physical interrupts as guest exits;
//! only `selftest` unmasks them at EL2. A guest-exit IRQ handler calls [`handle_one`] too;
//! an interrupt it forwards to a guest through a hardware-linked LR must use
//! [`gic::eoi`] only, leaving deactivation to the guest.

use super::{gic, sysreg, timer};
use crate::irq_table::{Handler, HandlerError, IrqTable, SPURIOUS_INTID};
use crate::sync::Mutex;

static TABLE: Mutex<IrqTable> = Mutex::new(IrqTable::new());

/// Registers `handler` for `intid` on every CPU.
///
/// # Errors
/// As [`IrqTable::register`].
pub fn register(intid: u32, handler: Handler) -> Result<(), HandlerError> {
    TABLE.lock().register(intid, handler)
}

/// Acknowledges and handles one pending interrupt; false when none was pending.
pub fn handle_one() -> bool {
    let intid = gic::ack();
    if intid >= 1020 {
        debug_assert!(intid == SPURIOUS_INTID || intid >= 1020);
        return false;
    }
    // Copy the handler out so a handler may itself register or unregister.
    let handler = TABLE.lock().handler(intid);
    match handler {
        Some(h) => h(intid),
        None => log::warn!("EL2: unhandled interrupt {intid}"),
    }
    gic::eoi(intid);
    gic::deactivate(intid);
    true
}

/// Entry from the vector for an IRQ taken at EL2 (only when PSTATE.I was cleared).
#[unsafe(no_mangle)]
extern "C" fn el2_irq() {
    while handle_one() {}
}

mod selftest_state {
    use core::sync::atomic::AtomicU32;
    pub static TICKS: AtomicU32 = AtomicU32::new(0);
    pub static SGIS: AtomicU32 = AtomicU32::new(0);
}

const SELFTEST_SGI: u8 = 1;
const SELFTEST_TICKS: u32 = 3;

fn selftest_timer(_: u32) {
    use core::sync::atomic::Ordering;
    let n = selftest_state::TICKS.fetch_add(1, Ordering::SeqCst) + 1;
    if n < SELFTEST_TICKS {
        timer::hyp_arm(sysreg::counter() + sysreg::counter_frequency() / 100);
    } else {
        timer::hyp_disarm();
    }
}

fn selftest_sgi(_: u32) {
    selftest_state::SGIS.fetch_add(1, core::sync::atomic::Ordering::SeqCst);
}

/// Boot-CPU self test: GIC init, EL2 physical timer interrupts through the vector, and an
/// SGI sent to this CPU. Returns whether it passed (and logs the result).
pub fn selftest(machine: &crate::platform::Machine<'_>) -> bool {
    use core::sync::atomic::Ordering;
    let mpidr = sysreg::mpidr_affinity();
    gic::Distributor::new(&machine.gic).init(mpidr);
    let Some(rd) = gic::Redistributor::find(&machine.gic, mpidr) else {
        log::error!("irq selftest: no redistributor for MPIDR {mpidr:#x}");
        return false;
    };
    rd.init();
    gic::cpu_interface_init();
    let timer_intid = machine.timer.hyp_phys;
    if register(timer_intid, selftest_timer).is_err()
        || register(u32::from(SELFTEST_SGI), selftest_sgi).is_err()
    {
        log::error!("irq selftest: handlers already registered");
        return false;
    }
    rd.set_enabled(timer_intid, true);
    rd.set_enabled(u32::from(SELFTEST_SGI), true);
    timer::hyp_arm(sysreg::counter() + sysreg::counter_frequency() / 100);
    gic::send_sgi(mpidr, SELFTEST_SGI);
    // Physical IRQs reach EL2 only with HCR_EL2.IMO set: routed to EL1 they are never taken
    // while the CPU runs at EL2.
    let hcr: u64;
    // SAFETY: the vectors are installed and `el2_irq` returns through them; setting IMO and
    // unmasking IRQs at EL2 is confined to this loop, no guest runs on this CPU yet.
    unsafe {
        core::arch::asm!("mrs {h}, hcr_el2", "orr {t}, {h}, #(1 << 4)", "msr hcr_el2, {t}",
            "isb", "msr daifclr, #2", h = out(reg) hcr, t = out(reg) _, options(nomem, nostack));
    }
    let deadline = sysreg::counter() + sysreg::counter_frequency();
    while (selftest_state::TICKS.load(Ordering::SeqCst) < SELFTEST_TICKS
        || selftest_state::SGIS.load(Ordering::SeqCst) < 1)
        && sysreg::counter() < deadline
    {
        core::hint::spin_loop();
    }
    // SAFETY: masks IRQs at EL2 again and restores HCR_EL2, the hypervisor's normal state.
    unsafe {
        core::arch::asm!("msr daifset, #2", "msr hcr_el2, {}", "isb", in(reg) hcr,
            options(nomem, nostack));
    }
    rd.set_enabled(timer_intid, false);
    let (t, s) = (
        selftest_state::TICKS.load(Ordering::SeqCst),
        selftest_state::SGIS.load(Ordering::SeqCst),
    );
    log::info!(
        "irq selftest: cpu {} took {t} timer interrupts and {s} SGIs",
        super::percpu::cpu_index()
    );
    let ok = t >= SELFTEST_TICKS && s >= 1;
    if ok {
        log::info!("irq selftest passed");
    } else {
        log::error!("irq selftest failed");
    }
    ok
}
