//! System-register access for registers `aarch64-cpu` lacks or where a plain `mrs`/`msr` is the
//! clearest statement (CurrentEL, MPIDR, counters, ICC_SRE_EL2, VPIDR_EL2, HSTR_EL2, ...).

/// Reads a system register by name. Reading the registers used here has no side effects.
macro_rules! read_sysreg {
    ($name:literal) => {{
        let value: u64;
        // SAFETY: an `mrs` of an ID, status or control register only copies its value into a
        // general-purpose register; every caller names a register that exists at the current EL.
        unsafe {
            core::arch::asm!(concat!("mrs {}, ", $name), out(reg) value,
                options(nomem, nostack, preserves_flags));
        }
        value
    }};
}

/// Writes a system register by name. Expands to an unsafe operation: the caller's `unsafe` block
/// says why the new value is sound.
macro_rules! write_sysreg {
    ($name:literal, $value:expr) => {
        core::arch::asm!(concat!("msr ", $name, ", {}"), in(reg) $value,
            options(nostack, preserves_flags))
    };
}

/// The exception level the CPU runs at (0..=3).
pub fn current_el() -> u8 {
    ((read_sysreg!("CurrentEL") >> 2) & 3) as u8
}

/// MPIDR_EL1 reduced to its affinity fields (Aff3..Aff0), the value DTB `cpu` nodes carry in
/// `reg`.
pub fn mpidr_affinity() -> u64 {
    read_sysreg!("mpidr_el1") & 0xff_00ff_ffff
}

/// The system counter (CNTPCT_EL0), ticking at `counter_frequency` Hz.
pub fn counter() -> u64 {
    // The ISB keeps the read from being hoisted above earlier instructions.
    isb();
    read_sysreg!("cntpct_el0")
}

pub fn counter_frequency() -> u64 {
    read_sysreg!("cntfrq_el0")
}

pub fn isb() {
    // SAFETY: a context synchronisation barrier has no memory or register effects.
    unsafe { core::arch::asm!("isb", options(nostack, preserves_flags)) }
}

pub fn dsb_ish() {
    // SAFETY: a data synchronisation barrier only orders memory accesses.
    unsafe { core::arch::asm!("dsb ish", options(nostack, preserves_flags)) }
}

pub fn dsb_sy() {
    // SAFETY: a data synchronisation barrier only orders memory accesses.
    unsafe { core::arch::asm!("dsb sy", options(nostack, preserves_flags)) }
}

pub fn sev() {
    // SAFETY: signalling an event wakes CPUs sleeping in WFE; nothing else changes.
    unsafe { core::arch::asm!("sev", options(nomem, nostack, preserves_flags)) }
}

pub fn wfe() {
    // SAFETY: waiting for an event only stalls this CPU.
    unsafe { core::arch::asm!("wfe", options(nomem, nostack, preserves_flags)) }
}

/// Waits for an interrupt: returns once one is pending at this CPU, even while PSTATE.I masks
/// it (the caller then acknowledges it at the GIC itself).
pub fn wfi() {
    // SAFETY: waiting for an interrupt only stalls this CPU.
    unsafe { core::arch::asm!("wfi", options(nomem, nostack, preserves_flags)) }
}

/// Smallest data cache line size in bytes (CTR_EL0.DminLine).
fn dcache_line() -> u64 {
    4 << ((read_sysreg!("ctr_el0") >> 16) & 0xf)
}

/// Cleans `[start, start + len)` to the point of coherency, so an observer with its caches (or
/// MMU) off reads what this CPU wrote.
pub fn clean_dcache_range(start: u64, len: u64) {
    let line = dcache_line();
    let mut addr = start & !(line - 1);
    while addr < start + len {
        // SAFETY: cleaning writes back dirty lines without changing memory contents as any
        // program sees them; `addr` lies in mapped memory the caller names.
        unsafe { core::arch::asm!("dc cvac, {}", in(reg) addr, options(nostack, preserves_flags)) }
        addr += line;
    }
    dsb_sy();
}

/// Invalidates `[start, start + len)` from the data caches without writing back.
///
/// # Safety
/// Dirty lines in the range are discarded: only call this on memory whose current contents
/// were written with the caches off (or are otherwise already in memory), e.g. before the MMU
/// and caches are first turned on.
pub unsafe fn invalidate_dcache_range(start: u64, len: u64) {
    let line = dcache_line();
    let mut addr = start & !(line - 1);
    while addr < start + len {
        // SAFETY: the caller guarantees memory already holds the data; dropping cached copies
        // only makes later cached reads fetch it from there.
        unsafe { core::arch::asm!("dc ivac, {}", in(reg) addr, options(nostack, preserves_flags)) }
        addr += line;
    }
    dsb_sy();
}
pub(crate) use {read_sysreg, write_sysreg};
