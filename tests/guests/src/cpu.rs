//! vCPU identity, per-vCPU stacks, and starting secondary vCPUs through PSCI.

use core::sync::atomic::{AtomicUsize, Ordering};

use crate::psci;

/// vCPUs with a stack slot: MPIDR 0..MAX_CPUS (`start.rs` parks any other, so `index` is
/// always in range in Rust code).
pub const MAX_CPUS: usize = 4;
pub const STACK_SIZE: usize = 16 * 1024;

const MPIDR_AFF_MASK: u64 = 0xff_00ff_ffff;

pub fn mpidr() -> u64 {
    let v: u64;
    // SAFETY: reading MPIDR_EL1 has no side effects.
    unsafe { core::arch::asm!("mrs {}, mpidr_el1", out(reg) v, options(nomem, nostack)) };
    v & MPIDR_AFF_MASK
}

/// This vCPU's stack slot index (MPIDR Aff0).
pub fn index() -> usize {
    (mpidr() & 0xff) as usize
}

/// Aff3.Aff2.Aff1.Aff0 packed into 32 bits, the way GICR_TYPER[63:32] reports it.
pub fn affinity_compact(mpidr: u64) -> u64 {
    ((mpidr >> 8) & 0xff00_0000) | (mpidr & 0xff_ffff)
}

/// A secondary vCPU's Rust entry point; gets the CPU_ON context id.
pub type Entry = fn(u64) -> !;

static ENTRIES: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(0) }; MAX_CPUS];

unsafe extern "C" {
    /// `start.rs`: MMU, stack and vectors, then `rust_secondary`.
    fn secondary_entry();
}

/// The address to give CPU_ON so the new vCPU runs through the runtime's entry code.
pub fn secondary_entry_point() -> u64 {
    secondary_entry as *const () as u64
}

/// Starts the vCPU with affinity `mpidr` (< MAX_CPUS) at `entry(context)`.
///
/// # Errors
/// What CPU_ON returned; `InvalidParameters` without calling it if the vCPU has no stack.
pub fn start(mpidr: u64, entry: Entry, context: u64) -> Result<(), psci::Error> {
    let slot = usize::try_from(mpidr)
        .ok()
        .and_then(|i| ENTRIES.get(i))
        .ok_or(psci::Error::InvalidParameters)?;
    slot.store(entry as usize, Ordering::Release);
    psci::cpu_on(mpidr, secondary_entry_point(), context)
}

#[unsafe(no_mangle)]
extern "C" fn rust_secondary(context: u64) -> ! {
    let raw = ENTRIES[index()].load(Ordering::Acquire);
    if raw == 0 {
        crate::report::error(format_args!(
            "vCPU {:#x} started with no entry registered (CPU_ON not from cpu::start?)",
            mpidr()
        ));
    }
    // SAFETY: `start` stored an `Entry` in this slot before CPU_ON, which happens-before this
    // vCPU runs; function pointers are `usize`-sized here.
    let entry = unsafe { core::mem::transmute::<usize, Entry>(raw) };
    entry(context)
}

/// Stops this vCPU with CPU_OFF; if that fails, the whole test errors.
pub fn stop() -> ! {
    let err = psci::cpu_off();
    crate::report::error(format_args!("CPU_OFF returned {err}"))
}
