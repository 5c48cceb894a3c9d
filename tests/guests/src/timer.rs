//! The EL1 virtual timer and counter (CNTV_*_EL0, CNTVCT_EL0).

/// The virtual timer's PPI on QEMU virt (and in the hypervisor's guests).
pub const VTIMER_INTID: u32 = 27;

pub const CTL_ENABLE: u64 = 1 << 0;
pub const CTL_IMASK: u64 = 1 << 1;
pub const CTL_ISTATUS: u64 = 1 << 2;

/// The virtual count, ordered after earlier instructions by an ISB.
pub fn counter() -> u64 {
    let v: u64;
    // SAFETY: reading the counter has no side effects.
    unsafe { core::arch::asm!("isb", "mrs {}, cntvct_el0", out(reg) v, options(nomem, nostack)) };
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
    unsafe {
        core::arch::asm!("msr cntv_cval_el0, {}", "isb", in(reg) cval, options(nomem, nostack))
    };
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
        core::arch::asm!("msr cntv_tval_el0, {}", "isb", in(reg) u64::from(ticks), options(nomem, nostack))
    };
}

pub fn set_control(ctl: u64) {
    // SAFETY: programs this vCPU's virtual timer; no memory is touched.
    unsafe {
        core::arch::asm!("msr cntv_ctl_el0, {}", "isb", in(reg) ctl, options(nomem, nostack))
    };
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
