//! Starting the secondary CPUs with PSCI CPU_ON and parking them while no guest exists.
//!
//! Logical CPU numbers: the boot CPU is 0, the other DTB CPUs follow in DTB order. A CPU that
//! does not come online within `ONLINE_TIMEOUT_MS` is reported by name and bring-up carries on
//! without it (the run still ends cleanly; the missing "all N CPUs online" line tells).

use super::head::{MMU_CONFIG, MmuConfig, secondary_entry};
use super::layout::MAX_CPUS;
use super::percpu::{self, PerCpu};
use super::{el2, psci, sysreg};
use crate::platform::Machine;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

const ONLINE_TIMEOUT_MS: u64 = 5000;

/// Logs the line every CPU prints once it runs with the MMU on and its per-CPU data set.
fn announce(cpu: &PerCpu) {
    log::info!(
        "cpu {} online (MPIDR {:#x})",
        cpu.index,
        cpu.mpidr.load(Ordering::Relaxed)
    );
    cpu.online.store(true, Ordering::Release);
    sysreg::sev();
}

/// The DTB CPUs in logical order (boot CPU first), as (logical index, MPIDR, node name).
fn logical_order<'m>(machine: &'m Machine<'_>, boot_mpidr: u64) -> Vec<(usize, u64, &'m str)> {
    let boot = machine.cpu_index(boot_mpidr);
    let others = machine
        .cpus
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != boot);
    core::iter::once((
        boot_mpidr,
        machine
            .cpus
            .get(boot.unwrap_or(usize::MAX))
            .map_or("?", |c| c.node),
    ))
    .chain(others.map(|(_, c)| (c.mpidr, c.node)))
    .enumerate()
    .map(|(i, (mpidr, node))| (i, mpidr, node))
    .collect()
}

/// Starts every other CPU in the DTB and waits for them. Returns how many CPUs are online,
/// the boot CPU included.
pub fn start_secondaries(machine: &Machine<'_>) -> usize {
    announce(percpu::get(0));
    let boot_mpidr = sysreg::mpidr_affinity();
    if machine.cpu_index(boot_mpidr).is_none() {
        log::warn!("the boot CPU (MPIDR {boot_mpidr:#x}) is not among the DTB's CPUs");
    }
    if !psci::set_conduit(machine.psci, sysreg::current_el()) {
        log::warn!("the DTB asks for PSCI over HVC, which traps to ourselves at EL2; using SMC");
    }
    let (major, minor) = psci::version();
    log::debug!("PSCI {major}.{minor}");
    // Secondaries read MMU_CONFIG with their caches off.
    sysreg::clean_dcache_range(
        (&raw const MMU_CONFIG) as u64,
        size_of::<MmuConfig>() as u64,
    );

    let cpus = logical_order(machine, boot_mpidr);
    let entry = secondary_entry as *const () as u64;
    let mut started = Vec::new();
    for &(index, mpidr, node) in cpus.iter().skip(1) {
        if index >= MAX_CPUS {
            log::error!(
                "cpu {index} ({node}, MPIDR {mpidr:#x}) not started: this build supports {MAX_CPUS} CPUs"
            );
            continue;
        }
        match psci::cpu_on(mpidr, entry, index as u64) {
            Ok(()) => started.push((index, mpidr, node)),
            Err(e) => log::error!("cpu {index} ({node}, MPIDR {mpidr:#x}) failed to start: {e}"),
        }
    }

    let freq = sysreg::counter_frequency().max(1);
    let deadline = sysreg::counter() + ONLINE_TIMEOUT_MS * freq / 1000;
    while sysreg::counter() < deadline
        && !started
            .iter()
            .all(|&(i, _, _)| percpu::get(i).online.load(Ordering::Acquire))
    {
        core::hint::spin_loop();
    }
    let mut online = 1;
    for &(index, mpidr, node) in &started {
        if percpu::get(index).online.load(Ordering::Acquire) {
            online += 1;
        } else {
            log::error!(
                "cpu {index} ({node}, MPIDR {mpidr:#x}) did not come online within {ONLINE_TIMEOUT_MS} ms"
            );
        }
    }
    if online == cpus.len() {
        log::info!("all {online} CPUs online");
    } else {
        log::error!("{online} of {} CPUs online", cpus.len());
    }
    online
}

/// A secondary CPU's first Rust code (from `secondary_entry`, MMU already on).
#[unsafe(no_mangle)]
extern "C" fn secondary_main(index: u64) -> ! {
    let cpu = percpu::init_this_cpu(index as usize);
    el2::init_this_cpu();
    announce(cpu);
    // Wait for a vCPU to run (or for the machine to stop).
    super::guest::pcpu_main(cpu.index)
}
