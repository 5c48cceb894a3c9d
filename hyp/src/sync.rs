//! The hypervisor's lock: `spin`'s mutex, but a CPU waiting for it executes YIELD.
//!
//! YIELD is only a hint on hardware, but QEMU's single-threaded TCG (`-icount`, where every
//! vCPU runs in turn on one host thread) switches to the next vCPU on it. With the default
//! relax (ISB) a vCPU spinning on a lock ran its whole time slice again and again while the
//! holder, stopped in a broadcast TLB invalidation that needs the others to yield, never ran:
//! a live snapshot's first harvest waited for ever on a fault that was splitting a block.

/// A spin lock whose waiters yield the CPU.
pub type Mutex<T> = spin::mutex::Mutex<T, Relax>;
pub type MutexGuard<'a, T> = spin::mutex::MutexGuard<'a, T, Relax>;

pub struct Relax;

impl spin::RelaxStrategy for Relax {
    #[inline(always)]
    fn relax() {
        #[cfg(target_arch = "aarch64")]
        // SAFETY: YIELD is a hint; it changes no register, memory or flag.
        unsafe {
            core::arch::asm!("yield", options(nomem, nostack, preserves_flags))
        };
        #[cfg(not(target_arch = "aarch64"))]
        core::hint::spin_loop();
    }
}
