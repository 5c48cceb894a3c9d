//! The EL1 virtual timer and counter (CNTV_*_EL0, CNTVCT_EL0).

use core::sync::atomic::{AtomicBool, Ordering};

use crate::cpu::{self, MAX_CPUS};
use crate::exceptions;
use crate::gic::{self, Redistributor};

/// The virtual timer's PPI on QEMU virt (and in the hypervisor's guests).
pub const VTIMER_INTID: u32 = 27;
/// The non-secure EL1 physical timer's PPI.
pub const PTIMER_INTID: u32 = 30;

pub const CTL_ENABLE: u64 = 1 << 0;
pub const CTL_IMASK: u64 = 1 << 1;
pub const CTL_ISTATUS: u64 = 1 << 2;

/// The virtual count, ordered after earlier instructions by an ISB.
pub fn counter() -> u64 {
    let v: u64;
    // SAFETY: reading the counter has no side effects.
    unsafe { core::arch::asm!("isb", "mrs {}, cntvct_el0", out(reg) v, options(nostack)) };
    v
}

/// Counter ticks per second.
pub fn frequency() -> u64 {
    let v: u64;
    // SAFETY: reading CNTFRQ_EL0 has no side effects.
    unsafe { core::arch::asm!("mrs {}, cntfrq_el0", out(reg) v, options(nomem, nostack)) };
    v
}

pub fn set_compare(cval: u64) {
    // SAFETY: programs this vCPU's virtual timer; no memory is touched.
    unsafe { core::arch::asm!("msr cntv_cval_el0, {}", "isb", in(reg) cval, options(nostack)) };
}

pub fn compare() -> u64 {
    let v: u64;
    // SAFETY: reading CNTV_CVAL_EL0 has no side effects.
    unsafe { core::arch::asm!("mrs {}, cntv_cval_el0", out(reg) v, options(nomem, nostack)) };
    v
}

/// Sets the timer to fire `ticks` from now (CNTV_TVAL_EL0, a signed 32-bit down-count).
pub fn set_countdown(ticks: u32) {
    // SAFETY: programs this vCPU's virtual timer; no memory is touched.
    unsafe {
        core::arch::asm!("msr cntv_tval_el0, {}", "isb", in(reg) u64::from(ticks), options(nostack))
    };
}

pub fn set_control(ctl: u64) {
    // SAFETY: programs this vCPU's virtual timer; no memory is touched.
    unsafe { core::arch::asm!("msr cntv_ctl_el0, {}", "isb", in(reg) ctl, options(nostack)) };
}

pub fn control() -> u64 {
    let v: u64;
    // SAFETY: reading CNTV_CTL_EL0 has no side effects.
    unsafe { core::arch::asm!("mrs {}, cntv_ctl_el0", out(reg) v, options(nomem, nostack)) };
    v
}

/// Counter ticks in `ms` milliseconds.
pub fn ms_to_ticks(ms: u64) -> u64 {
    frequency() / 1000 * ms
}

/// Polls `done` until it returns true or `ms` milliseconds of virtual count pass; returns
/// whether it finished in time.
pub fn wait_until(ms: u64, mut done: impl FnMut() -> bool) -> bool {
    let deadline = counter().saturating_add(ms_to_ticks(ms));
    loop {
        if done() {
            return true;
        }
        if counter() >= deadline {
            return done();
        }
        core::hint::spin_loop();
    }
}

/// Per vCPU: the virtual timer is armed by [`wfi_until`] as a wake-up, not by the test.
static WATCHDOG: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// Called by the IRQ path for the virtual timer's INTID: if [`wfi_until`] armed it, masks it
/// and returns true (the interrupt is the runtime's own, not the test's).
pub(crate) fn take_watchdog() -> bool {
    let armed = WATCHDOG[cpu::index()].swap(false, Ordering::AcqRel);
    if armed {
        set_control(CTL_ENABLE | CTL_IMASK);
    }
    armed
}

/// Longest WFI of [`wfi_until`] before it looks at its condition again.
const NAP_MS: u64 = 1;

/// Waits in WFI until `done` returns true or `ms` milliseconds pass; returns whether it
/// finished in time. For waits on another vCPU: a halted vCPU lets a single-threaded emulator
/// (QEMU with -icount) run the others, where a polling loop may not. The virtual timer wakes
/// this vCPU at least every millisecond, so `done` need not be made true by an interrupt, and it
/// must not be used while a test uses the timer itself. Needs the distributor and this vCPU's
/// CPU interface set up (`gic`); enables the timer's PPI here. Leaves IRQs unmasked.
///
/// # Errors
/// The redistributor could not be found or woken.
pub fn wfi_until(ms: u64, mut done: impl FnMut() -> bool) -> Result<bool, gic::Error> {
    Redistributor::this_cpu()?.enable(VTIMER_INTID, 0x80);
    let watchdog = &WATCHDOG[cpu::index()];
    let deadline = counter().saturating_add(ms_to_ticks(ms));
    let nap = ms_to_ticks(NAP_MS).max(1);
    let finished = loop {
        if done() {
            break true;
        }
        let now = counter();
        if now >= deadline {
            break done();
        }
        watchdog.store(true, Ordering::Release);
        set_compare(now.saturating_add(nap).min(deadline));
        set_control(CTL_ENABLE);
        // Ends when `done` or when the timer fired (`take_watchdog` cleared the flag).
        exceptions::wait_for_interrupt_while(|| !done() && watchdog.load(Ordering::Acquire));
    };
    set_control(0);
    watchdog.store(false, Ordering::Release);
    exceptions::enable_irqs();
    Ok(finished)
}

/// The EL1 physical timer (CNTP_*_EL0, against the physical counter CNTPCT_EL0).
pub mod physical {
    /// The physical count, ordered after earlier instructions by an ISB.
    pub fn counter() -> u64 {
        let v: u64;
        // SAFETY: reading the counter has no side effects.
        unsafe { core::arch::asm!("isb", "mrs {}, cntpct_el0", out(reg) v, options(nostack)) };
        v
    }

    pub fn set_compare(cval: u64) {
        // SAFETY: programs this vCPU's physical timer; no memory is touched.
        unsafe { core::arch::asm!("msr cntp_cval_el0, {}", "isb", in(reg) cval, options(nostack)) };
    }

    pub fn compare() -> u64 {
        let v: u64;
        // SAFETY: reading CNTP_CVAL_EL0 has no side effects.
        unsafe { core::arch::asm!("mrs {}, cntp_cval_el0", out(reg) v, options(nostack)) };
        v
    }

    /// Sets the timer to fire `ticks` from now (CNTP_TVAL_EL0).
    pub fn set_countdown(ticks: u32) {
        // SAFETY: programs this vCPU's physical timer; no memory is touched.
        unsafe {
            core::arch::asm!("msr cntp_tval_el0, {}", "isb", in(reg) u64::from(ticks), options(nostack))
        };
    }

    /// CNTP_TVAL_EL0 as read: the low 32 bits of CVAL - counter.
    pub fn countdown() -> u64 {
        let v: u64;
        // SAFETY: reading CNTP_TVAL_EL0 has no side effects.
        unsafe { core::arch::asm!("mrs {}, cntp_tval_el0", out(reg) v, options(nostack)) };
        v
    }

    pub fn set_control(ctl: u64) {
        // SAFETY: programs this vCPU's physical timer; no memory is touched.
        unsafe { core::arch::asm!("msr cntp_ctl_el0, {}", "isb", in(reg) ctl, options(nostack)) };
    }

    pub fn control() -> u64 {
        let v: u64;
        // SAFETY: reading CNTP_CTL_EL0 has no side effects.
        unsafe { core::arch::asm!("mrs {}, cntp_ctl_el0", out(reg) v, options(nostack)) };
        v
    }
}
