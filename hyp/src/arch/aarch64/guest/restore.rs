//! Creating a VM from a snapshot (a boot module `hyp,snapshot`), or from a chain of them (a
//! full snapshot, then the diffs taken after it, one module each in order): every file is
//! validated whole (`snapshot::Snapshot::parse`), the chain is checked to link up
//! (`snapshot::Chain`) and against the domain node, the newest copy of each page is copied
//! into frames donated to the VM, the vGIC and virtual UART get their saved state, and each
//! vCPU that was on starts from its saved registers. The guest's virtual counter continues
//! from the value saved (CNTVOFF is chosen so), so guest time does not jump.

use super::control::{self, VcpuSaved};
use super::dirty_users::{Tracked, User};
use super::{CreateError, Guest, assemble, guest_console, module_bytes, new_memory, populate};
use crate::arch::aarch64::fpsimd::FpState;
use crate::arch::aarch64::guest_irq;
use crate::arch::aarch64::ich::VgicCpuState;
use crate::arch::aarch64::sysreg::{counter, counter_frequency};
use crate::arch::aarch64::vcpu::{El1State, GuestRegs};
use crate::mm::addr::PAGE_SIZE;
use crate::mm::stage2::config::Stage2Config;
use crate::snapshot::{Chain, DeviceKind, PowerState, Snapshot, VcpuState};
use crate::vdev::phys_timer::PhysTimer;
use crate::vdev::pl011::Pl011;
use crate::vdev::vgic::{Intid, Vgic};
use crate::vm::power::StartRequest;
use alloc::format;
use alloc::string::String;
use guest_loader::domain::{DomainConfig, Module};
use guest_loader::guest_dtb::virt;

fn saved(s: &VcpuState) -> VcpuSaved {
    let e = &s.el1;
    let mut regs = GuestRegs::default();
    regs.x = s.x;
    regs.sp_el0 = s.sp_el0;
    regs.pc = s.pc;
    regs.pstate = s.pstate;
    VcpuSaved {
        regs,
        el1: El1State {
            sctlr: e.sctlr_el1,
            ttbr0: e.ttbr0_el1,
            ttbr1: e.ttbr1_el1,
            tcr: e.tcr_el1,
            mair: e.mair_el1,
            amair: e.amair_el1,
            vbar: e.vbar_el1,
            contextidr: e.contextidr_el1,
            tpidr_el0: e.tpidr_el0,
            tpidr_el1: e.tpidr_el1,
            tpidrro_el0: e.tpidrro_el0,
            esr: e.esr_el1,
            far: e.far_el1,
            afsr0: e.afsr0_el1,
            afsr1: e.afsr1_el1,
            par: e.par_el1,
            cpacr: e.cpacr_el1,
            cntkctl: e.cntkctl_el1,
            cntv_ctl: e.cntv_ctl_el0,
            cntv_cval: e.cntv_cval_el0,
            mdscr: e.mdscr_el1,
            csselr: e.csselr_el1,
            sp_el1: e.sp_el1,
            elr_el1: e.elr_el1,
            spsr_el1: e.spsr_el1,
            pauth: [
                e.apiakeylo_el1,
                e.apiakeyhi_el1,
                e.apibkeylo_el1,
                e.apibkeyhi_el1,
                e.apdakeylo_el1,
                e.apdakeyhi_el1,
                e.apdbkeylo_el1,
                e.apdbkeyhi_el1,
                e.apgakeylo_el1,
                e.apgakeyhi_el1,
            ],
        },
        fp: FpState {
            q: s.q,
            fpcr: s.fpcr,
            fpsr: s.fpsr,
        },
        gic: VgicCpuState {
            vmcr: s.gic.ich_vmcr,
            ap0r: s.gic.ich_ap0r,
            ap1r: s.gic.ich_ap1r,
            ..VgicCpuState::default()
        },
    }
}

fn restored_console(id: usize, name: &str) -> super::GuestConsole {
    let mut c = guest_console(id, name);
    c.announce_first_write = true;
    c
}

/// The VM of domain `d`, restored from the snapshot modules `chain` (base first).
pub(super) fn create(
    d: &DomainConfig<'static>,
    chain: &[Module<'static>],
    id: usize,
    first_pcpu: usize,
    config: Stage2Config,
) -> Result<Guest, CreateError> {
    let bad = |why: String| CreateError::Snapshot(why);
    let mut snaps = alloc::vec::Vec::with_capacity(chain.len());
    for (i, m) in chain.iter().enumerate() {
        let s = Snapshot::parse(module_bytes(m))
            .map_err(|e| bad(format!("module {} (chain position {i}): {e}", m.node)))?;
        snaps.push(s);
    }
    let mut snaps = snaps.into_iter();
    let base = snaps
        .next()
        .ok_or_else(|| bad("no snapshot module".into()))?;
    let snap = Chain::new(base, snaps).map_err(|e| bad(format!("{e}")))?;
    let h = snap.header();
    let c = &h.config;
    if c.vcpus != d.cpus || c.ram_size != d.memory || c.ram_base != virt::RAM_BASE {
        return Err(bad(format!(
            "the snapshot is of a VM with {} vCPUs and {} MiB at {:#x}; the domain node asks for {} vCPUs and {} MiB at {:#x}",
            c.vcpus,
            c.ram_size >> 20,
            c.ram_base,
            d.cpus,
            d.memory >> 20,
            virt::RAM_BASE
        )));
    }
    if c.counter_freq != counter_frequency() {
        log::warn!(
            "{}: the snapshot was taken with a {} Hz counter, this machine's runs at {} Hz: guest time will run at a different rate",
            d.name,
            c.counter_freq,
            counter_frequency()
        );
    }
    let ram = (virt::RAM_BASE, d.memory);
    let mem = new_memory(id, ram, config)?;
    for (gfn, data) in snap.pages() {
        populate(&mem, gfn * PAGE_SIZE, data)?;
    }
    // SAFETY: invalidating the instruction caches only drops cached instructions; the guest
    // must fetch the code just copied.
    unsafe { core::arch::asm!("ic ialluis", "dsb ish", "isb", options(nostack)) };
    let mut vgic = match snap.device(DeviceKind::Vgic) {
        Some(b) => Vgic::load_state(d.cpus as usize, b).map_err(|e| bad(format!("vGIC: {e:?}")))?,
        None => return Err(bad("the snapshot has no vGIC state".into())),
    };
    // The timer's physical INTID is this machine's, not the one the snapshot was taken on.
    for v in 0..d.cpus as usize {
        vgic.link_hw(v, Intid::VTIMER, guest_irq::vtimer_intid())
            .map_err(|e| bad(format!("vGIC: {e:?}")))?;
    }
    let uart = match (d.vpl011, snap.device(DeviceKind::Uart)) {
        (true, Some(b)) => Some(
            Pl011::load_state(restored_console(id, d.name), b)
                .map_err(|e| bad(format!("UART: {e:?}")))?,
        ),
        (true, None) => Some(Pl011::new(restored_console(id, d.name))),
        (false, _) => None,
    };
    // The guest's time when its vCPUs stopped: the TIMER section's, else the header's.
    let guest_counter = match snap.device(DeviceKind::Timer) {
        Some(b) => u64::from_le_bytes(
            b.try_into()
                .map_err(|_| bad(format!("TIMER section of {} bytes, not 8", b.len())))?,
        ),
        None => h.counter,
    };
    let cntvoff = counter().wrapping_sub(guest_counter);
    let g = assemble(d, first_pcpu, config, mem, cntvoff, vgic, uart, None);
    // The VM's memory is the newest snapshot's: a diff taken now can continue the chain.
    {
        let mut dirty = g.dirty.lock();
        // Turning the log on counts every writable page as dirty; they are the snapshot's.
        match dirty
            .join(&g, User::Snapshots)
            .and_then(|_| dirty.discard(&g, User::Snapshots))
        {
            Ok(()) => {
                dirty.tracked = Some(Tracked {
                    id: h.id,
                    file: format!(
                        "the snapshot restored, module {}",
                        chain[chain.len() - 1].node
                    ),
                });
            }
            Err(e) => log::warn!(
                "{}: no snapshot tracking ({e}): the next snapshot must be a full one",
                d.name
            ),
        }
    }
    let mut on = 0;
    for s in snap.vcpus() {
        g.devices.lock().ptimers[s.index as usize] =
            PhysTimer::from_saved(s.el1.cntp_ctl_el0, s.el1.cntp_cval_el0);
        if s.power == PowerState::On {
            let v = s.index as usize;
            control::set_restore(&g, v, saved(s));
            g.power.request_start(
                v,
                StartRequest {
                    entry: s.pc,
                    context: s.x[0],
                },
            );
            on += 1;
        }
    }
    log::info!(
        "domain {} = VM {id} (VMID {id}): restored from a snapshot{}: {} pages, {on} of {} vCPU(s) on, guest counter {}, on pCPU {}..{}",
        d.name,
        match chain.len() {
            1 => String::new(),
            n => format!(" chain (a full snapshot and {} diffs)", n - 1),
        },
        snap.page_count(),
        d.cpus,
        guest_counter,
        first_pcpu,
        first_pcpu + d.cpus as usize - 1,
    );
    Ok(g)
}
