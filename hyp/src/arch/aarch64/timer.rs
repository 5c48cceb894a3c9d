//! Timers at EL2: the EL2 physical timer (CNTHP_*) for the hypervisor's own deadlines, and
//! the guest virtual-timer state the run loop needs to decide whether a vCPU blocked in WFI
//! must be woken (its CNTV_* registers themselves are switched by `vcpu`).

/// CNTx_CTL.ENABLE.
pub const CTL_ENABLE: u64 = 1 << 0;
/// CNTx_CTL.IMASK: the timer condition does not assert the interrupt.
pub const CTL_IMASK: u64 = 1 << 1;
/// CNTx_CTL.ISTATUS: the timer condition is met.
pub const CTL_ISTATUS: u64 = 1 << 2;

/// Whether a timer with control `ctl` and compare value `cval` asserts its interrupt at
/// counter value `now` (ISTATUS is recomputed, so a saved CTL value works as well).
pub fn fires(ctl: u64, cval: u64, now: u64) -> bool {
    ctl & (CTL_ENABLE | CTL_IMASK) == CTL_ENABLE && now >= cval
}

/// Arms the EL2 physical timer to fire at absolute counter value `cval` (interrupt unmasked).
pub fn hyp_arm(cval: u64) {
    // SAFETY: the EL2 physical timer belongs to the hypervisor alone; programming it only
    // raises its PPI, which stays disabled at the GIC until a handler is registered.
    unsafe {
        core::arch::asm!("msr cnthp_cval_el2, {}", "msr cnthp_ctl_el2, {}", "isb",
            in(reg) cval, in(reg) CTL_ENABLE, options(nomem, nostack, preserves_flags));
    }
}

/// Arms the EL2 physical timer for `cval` unless it is already armed for an earlier time: it
/// serves several deadlines (the monitor's wake-ups, the guest's emulated physical timer), and
/// each user arms it again after it fires, so the earliest must win.
pub fn hyp_arm_by(cval: u64) {
    let (ctl, armed): (u64, u64);
    // SAFETY: reading the EL2 timer registers has no side effects.
    unsafe {
        core::arch::asm!("mrs {}, cnthp_ctl_el2", "mrs {}, cnthp_cval_el2",
            out(reg) ctl, out(reg) armed, options(nomem, nostack, preserves_flags));
    }
    if ctl & CTL_ENABLE == 0 || cval < armed {
        hyp_arm(cval);
    }
}

/// The line of the running guest's virtual timer (CNTV_CTL_EL0: enabled, not masked, and
/// ISTATUS, which the hardware computes against the virtual counter).
pub fn guest_vtimer_level() -> bool {
    let ctl: u64;
    // SAFETY: reading the virtual timer's control register has no side effects.
    unsafe {
        core::arch::asm!("mrs {}, cntv_ctl_el0", out(reg) ctl,
            options(nomem, nostack, preserves_flags));
    }
    ctl & (CTL_ENABLE | CTL_IMASK | CTL_ISTATUS) == CTL_ENABLE | CTL_ISTATUS
}

/// Stops the EL2 physical timer (its interrupt line drops).
pub fn hyp_disarm() {
    // SAFETY: disabling the hypervisor's own timer has no effect beyond its PPI.
    unsafe {
        core::arch::asm!("msr cnthp_ctl_el2, {}", "isb", in(reg) 0u64,
            options(nomem, nostack, preserves_flags));
    }
}

/// CNTHP_CTL_EL2.
pub fn hyp_ctl() -> u64 {
    let v: u64;
    // SAFETY: reading the EL2 timer control register has no side effects.
    unsafe {
        core::arch::asm!("mrs {}, cnthp_ctl_el2", out(reg) v,
            options(nomem, nostack, preserves_flags));
    }
    v
}

/// CNTVOFF_EL2: the offset between the physical and the guest's virtual counter.
pub fn set_cntvoff(off: u64) {
    // SAFETY: CNTVOFF_EL2 only changes what EL0/EL1 read as the virtual counter; the
    // hypervisor reads the physical counter.
    unsafe {
        core::arch::asm!("msr cntvoff_el2, {}", "isb", in(reg) off,
            options(nomem, nostack, preserves_flags));
    }
}

/// The running guest's virtual timer (CNTV_CTL_EL0, CNTV_CVAL_EL0), read at EL2 before its
/// context is switched out.
pub fn guest_vtimer() -> (u64, u64) {
    let (ctl, cval): (u64, u64);
    // SAFETY: reading the virtual timer registers has no side effects.
    unsafe {
        core::arch::asm!("mrs {}, cntv_ctl_el0", "mrs {}, cntv_cval_el0",
            out(reg) ctl, out(reg) cval, options(nomem, nostack, preserves_flags));
    }
    (ctl, cval)
}
