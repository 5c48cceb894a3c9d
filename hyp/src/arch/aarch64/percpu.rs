//! Per-CPU data, reached through TPIDR_EL2 (the entry code zeroes it, `init_this_cpu` sets it).

use super::layout::MAX_CPUS;
use super::sysreg::{mpidr_affinity, read_sysreg, write_sysreg};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// What each CPU keeps about itself.
pub struct PerCpu {
    /// Logical index: 0 is the boot CPU, the others follow DTB order.
    pub index: usize,
    /// MPIDR affinity this CPU read from its own MPIDR_EL1.
    pub mpidr: AtomicU64,
    /// Set once the CPU runs with the MMU on and logs; the boot CPU waits for it.
    pub online: AtomicBool,
}

static PERCPU: [PerCpu; MAX_CPUS] = {
    let mut cpus = [const {
        PerCpu {
            index: 0,
            mpidr: AtomicU64::new(0),
            online: AtomicBool::new(false),
        }
    }; MAX_CPUS];
    let mut i = 0;
    while i < MAX_CPUS {
        cpus[i].index = i;
        i += 1;
    }
    cpus
};

/// Points this CPU's TPIDR_EL2 at slot `index` and records its MPIDR.
pub fn init_this_cpu(index: usize) -> &'static PerCpu {
    let cpu = &PERCPU[index];
    cpu.mpidr.store(mpidr_affinity(), Ordering::Relaxed);
    // SAFETY: TPIDR_EL2 is ours alone (no guest runs yet, EL1 cannot read it); it now holds
    // the address of a 'static PerCpu, which `this_cpu` relies on.
    unsafe { write_sysreg!("tpidr_el2", core::ptr::from_ref(cpu) as u64) };
    cpu
}

/// This CPU's data, or `None` before `init_this_cpu` ran here.
pub fn this_cpu() -> Option<&'static PerCpu> {
    let ptr = read_sysreg!("tpidr_el2") as *const PerCpu;
    // SAFETY: TPIDR_EL2 is either zero (set by the entry code) or the address of an element of
    // the 'static PERCPU array (set by `init_this_cpu`).
    unsafe { ptr.as_ref() }
}

/// This CPU's logical index (0 before `init_this_cpu`, and when misbooted at EL1 where
/// TPIDR_EL2 is inaccessible).
pub fn cpu_index() -> usize {
    if super::sysreg::current_el() != 2 {
        return 0;
    }
    this_cpu().map_or(0, |c| c.index)
}

pub fn get(index: usize) -> &'static PerCpu {
    &PERCPU[index]
}
