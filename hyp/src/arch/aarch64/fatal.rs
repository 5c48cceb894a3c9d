//! Ending the run: stopping the other CPUs and exiting QEMU with a status.
//!
//! Exit statuses (semihosting SYS_EXIT_EXTENDED): see [`ExitCode`]. A clean shutdown is PSCI
//! SYSTEM_OFF (QEMU status 0); without semihosting, a fatal stop falls back to SYSTEM_OFF too.

use super::percpu::cpu_index;
use super::{console, psci, semihosting, sysreg};
use core::sync::atomic::{AtomicUsize, Ordering};

/// Non-zero statuses the hypervisor ends QEMU with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ExitCode {
    Panic = 1,
    Exception = 2,
    /// Entered at EL1 (or EL3): nothing to do without EL2.
    WrongEl = 3,
    /// The boot DTB or memory layout was unusable.
    BootFailed = 4,
}

const NOBODY: usize = usize::MAX;
/// The CPU reporting a fatal error, or NOBODY.
static FATAL_CPU: AtomicUsize = AtomicUsize::new(NOBODY);

/// What a CPU entering the fatal path should do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fatal {
    /// First to fail: report, then `stop_machine`.
    Report,
    /// Failed again while reporting (e.g. a fault in the report itself): stop now.
    Nested,
    /// Another CPU is reporting: stay out of its way.
    Park,
}

/// Claims the fatal report for this CPU and tells idle CPUs to stop.
pub fn enter() -> Fatal {
    let me = cpu_index();
    let result = match FATAL_CPU.compare_exchange(NOBODY, me, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => Fatal::Report,
        Err(owner) if owner == me => Fatal::Nested,
        Err(_) => Fatal::Park,
    };
    sysreg::sev();
    result
}

/// Whether some CPU is stopping the machine (idle CPUs poll this after each WFE).
pub fn stopping() -> bool {
    FATAL_CPU.load(Ordering::Acquire) != NOBODY
}

/// Masks interrupts and sleeps forever.
pub fn park() -> ! {
    // SAFETY: masking all interrupts on this CPU only keeps it asleep.
    unsafe {
        core::arch::asm!(
            "msr daifset, #0xf",
            options(nomem, nostack, preserves_flags)
        )
    };
    loop {
        sysreg::wfe();
    }
}

/// Ends the run with `code`: semihosting exit, else PSCI SYSTEM_OFF, else sleep. The other CPUs
/// are idle in WFE loops that see `stopping()` and park; until there is an interrupt controller
/// driver a busy CPU is not interrupted, but exiting QEMU stops it anyway.
pub fn stop_machine(code: ExitCode) -> ! {
    if FATAL_CPU.load(Ordering::Relaxed) == NOBODY {
        FATAL_CPU.store(cpu_index(), Ordering::Release);
        sysreg::sev();
    }
    console::flush();
    semihosting::exit(code as u32);
    semihosting_unavailable()
}

/// Called when the semihosting trap did nothing or was undefined.
pub fn semihosting_unavailable() -> ! {
    console::print_raw(format_args!(
        "semihosting unavailable; powering off through PSCI"
    ));
    console::flush();
    let _ = psci::system_off();
    park()
}

/// Clean shutdown (status 0 on QEMU).
pub fn power_off() -> ! {
    console::flush();
    let err = psci::system_off();
    log::error!("SYSTEM_OFF failed: {err}");
    stop_machine(ExitCode::BootFailed)
}
