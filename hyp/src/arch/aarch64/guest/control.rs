//! Stopping a VM's vCPUs at EL2 (pause) and the operations run on a live or paused VM:
//! resume, dirty logging, page migration.
//!
//! Pause protocol: the pauser sets the VM's pause flag and kicks every vCPU; each vCPU, at the
//! top of its run loop, saves its whole state (registers, EL1 system registers, FP/SIMD, the
//! virtual CPU interface; its list registers are already folded back into the vGIC model) into
//! its slot and parks at EL2, still draining its pCPU's interrupts into the vGIC. Once every
//! vCPU is parked or off, nothing writes guest memory or device state: the VM is a coherent
//! image. On resume each vCPU reloads its slot, which a restore may have replaced. The flags and
//! slots are `vm::pause::PauseControl` (portable, host-tested); saving and loading the
//! hardware state, kicking and waiting are here.

use super::{Guest, LrTrack, deliver, frames};
use crate::arch::aarch64::fpsimd::FpState;
use crate::arch::aarch64::guest_irq;
use crate::arch::aarch64::ich::{self, VgicCpuState};
use crate::arch::aarch64::stage2::HwFrameData;
use crate::arch::aarch64::sysreg::{counter, counter_frequency, wfi};
use crate::arch::aarch64::vcpu::{El1State, GuestRegs};
use crate::mm::addr::{Ipa, PAGE_SIZE};
use crate::mm::ownership::GuestPage;
use crate::vm::exit::Counter;
use crate::vm::pause::PauseControl;
use core::sync::atomic::Ordering;

/// How long a pause waits for every vCPU to park.
const PAUSE_WAIT_MS: u64 = 1000;

/// Everything a vCPU needs to continue, as saved when it parked.
#[derive(Clone, Debug, Default)]
pub struct VcpuSaved {
    pub regs: GuestRegs,
    pub el1: El1State,
    pub fp: FpState,
    pub gic: VgicCpuState,
}

/// A VM's pause state (the protocol's flags and saved states are portable).
pub(super) type Control = PauseControl<VcpuSaved>;

/// Whether vCPU `v` of `g` is parked.
pub(super) fn is_parked(g: &Guest, v: usize) -> bool {
    g.control.is_parked(v)
}

/// Why a pause did not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PauseError {
    /// A vCPU did not park in time (it stays asked to; `resume` cancels).
    Timeout { vcpu: usize },
    /// The VM is not running.
    NotRunning,
}

impl core::fmt::Display for PauseError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Timeout { vcpu } => {
                write!(f, "vCPU {vcpu} did not stop within {PAUSE_WAIT_MS} ms")
            }
            Self::NotRunning => f.write_str("the VM is not running"),
        }
    }
}

/// At the top of the run loop: while the VM is paused, saves this vCPU's state, parks, and
/// reloads the (possibly replaced) state on resume.
pub(super) fn park_if_paused(
    g: &'static Guest,
    v: usize,
    regs: &mut GuestRegs,
    gic: &mut VgicCpuState,
    lrs: &mut LrTrack,
) {
    let c = &g.control;
    if !c.must_park(v) {
        return;
    }
    ich::save(gic);
    c.park(
        v,
        VcpuSaved {
            regs: regs.clone(),
            el1: El1State::save(),
            fp: FpState::save(),
            gic: *gic,
        },
    );
    while c.must_park(v) && g.running.load(Ordering::Acquire) {
        deliver(g, v, guest_irq::drain());
        super::monitor::service(g, v);
        if !c.must_park(v) {
            break;
        }
        wfi();
    }
    let s = c.unpark(v).unwrap_or_default();
    *regs = s.regs;
    // SAFETY: this pCPU runs only this vCPU; the state is the one it parked with (or a
    // restored one of the same VM), an EL1 context like any the guest set itself.
    unsafe { s.el1.load() };
    s.fp.load();
    *gic = s.gic;
    // The virtual CPU interface was saved and disabled: restore it and reload the list
    // registers at the next entry.
    lrs.saved = true;
    lrs.generation = None;
}

/// Whether every vCPU of `g` is parked or off (other than `except`, the caller's own).
fn all_stopped(g: &Guest, except: Option<usize>) -> Option<usize> {
    g.control.first_running(except, |v| g.power.is_off(v))
}

/// Asks every vCPU of `g` to park and waits until they have. `me` is the caller's own vCPU of
/// `g` if it has one: it must already be parked (the caller runs in its park loop) or the
/// wait would never end, so it is not waited for.
pub(super) fn pause(g: &Guest, me: Option<usize>) -> Result<(), PauseError> {
    if !g.running.load(Ordering::Acquire) {
        return Err(PauseError::NotRunning);
    }
    g.control.request_pause();
    for v in 0..g.power.vcpus() {
        guest_irq::kick(g.first_pcpu + v);
    }
    let deadline = counter() + counter_frequency() * PAUSE_WAIT_MS / 1000;
    loop {
        match all_stopped(g, me) {
            None => return Ok(()),
            Some(v) if counter() > deadline => return Err(PauseError::Timeout { vcpu: v }),
            Some(_) => nap(),
        }
    }
}

/// Waits about a millisecond in WFI rather than spinning: under QEMU's `-icount` a spinning
/// CPU keeps a halted one (a vCPU about to park) from being run at all.
fn nap() {
    crate::arch::aarch64::timer::hyp_arm(counter() + counter_frequency() / 1000);
    wfi();
    crate::arch::aarch64::timer::hyp_disarm();
}

/// Lets every vCPU of `g` continue.
pub(super) fn resume(g: &Guest) {
    g.control.release();
    for v in 0..g.power.vcpus() {
        guest_irq::kick(g.first_pcpu + v);
    }
}

/// Makes vCPU `v` of `g` start from `state` (a restore).
pub(super) fn set_restore(g: &Guest, v: usize, state: VcpuSaved) {
    g.control.set_restore(v, state);
}

/// The state vCPU `v` of a restored VM starts from, once.
pub(super) fn take_restore(g: &Guest, v: usize) -> Option<VcpuSaved> {
    g.control.take_restore(v)
}

/// A parked vCPU's saved state (for a snapshot).
pub(super) fn saved(g: &Guest, v: usize) -> Option<VcpuSaved> {
    g.control.saved(v)
}

/// A parked vCPU's PC.
pub(super) fn saved_pc(g: &Guest, v: usize) -> Option<u64> {
    g.control.with_saved(v, |s| s.regs.pc)
}

/// A small deterministic generator for picking pages (xorshift64*).
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Self {
        Self(seed | 1)
    }
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Random picks per page `migrate` tries before counting it as unbacked.
const PICK_TRIES: usize = 16;

/// What `migrate` did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MigrateReport {
    pub moved: u64,
    /// Pages for which every pick had no frame yet (nothing to move).
    pub unbacked: u64,
    /// Moves refused by the ownership layer (pinned, busy, out of frames).
    pub refused: u64,
}

/// Moves up to `n` randomly chosen guest pages to new frames while the VM runs (invalidate,
/// break-before-make, copy, remap on the next fault). Pages inside 2 MiB blocks are included:
/// the invalidation takes the block entry away and the refault maps pages.
pub(super) fn migrate(g: &Guest, n: u64, rng: &mut Rng) -> MigrateReport {
    let pages = g.ram.1 / PAGE_SIZE;
    let mut r = MigrateReport::default();
    for _ in 0..n {
        // A few tries to land on a page that has a frame: on a lightly used guest most of
        // RAM has none, and moving nothing tells nothing.
        let Some(ipa) = (0..PICK_TRIES)
            .map(|_| Ipa::new(g.ram.0 + (rng.next() % pages) * PAGE_SIZE))
            .find(|&ipa| matches!(g.mem.backing(ipa), GuestPage::Owned(_)))
        else {
            r.unbacked += 1;
            continue;
        };
        match g.mem.migrate(frames(), &mut HwFrameData, ipa) {
            Ok(_) => {
                r.moved += 1;
                g.stats.count(Counter::Migrated);
            }
            Err(_) => r.refused += 1,
        }
    }
    r
}
