//! Guests on the hardware: VM creation from the boot DTB's dom0less domains, the per-pCPU run
//! loop and the exit handlers that apply the portable decisions of `vm` and `mm`.
//!
//! Pinning: the domains' vCPUs are laid out on pCPUs in order (the first domain's vCPU i on
//! pCPU i, the next domain's after those); a domain that does not fit in the pCPUs left is
//! refused. Every pCPU runs [`pcpu_main`]: it sleeps in WFE until its vCPU has a start request
//! (the boot vCPU at creation, the others by PSCI CPU_ON, which sends SEV), runs it until
//! CPU_OFF or the VM stops, and waits again. When the last VM powers off, the machine does.
//!
//! Memory: one contiguous pool of frames from the boot frame allocator is handed to the
//! ownership layer (`mm::ownership::FrameTable`); each VM's RAM is a region of its guest map at
//! IPA 0x4000_0000. Kernel, initrd and DTB pages are copied into frames donated at creation;
//! every other page is populated on first touch by the memory core's fault path, a whole 2 MiB
//! block at once (a donated aligned run, mapped as a block) when the block is untouched and a
//! run is free, else one zeroed page.
//!
//! Interrupts: the vGIC model (`vdev::vgic`) decides what the guest sees; before each entry
//! its choice is loaded into the list registers ([`vgic_flush`]), after each exit the list
//! registers are read back into it ([`vgic_sync`]). Physical interrupts taken as exits
//! ([`irq_exit`]) or while a vCPU waits in a trapped WFI ([`wait_for_interrupt`]) are drained
//! by `guest_irq`: the virtual timer becomes the vCPU's hardware-linked PPI 27, console input
//! goes to the console guest's virtual UART. An interrupt made pending for a vCPU on another
//! pCPU (an SGI, a UART SPI) kicks that pCPU with a physical SGI.

mod control;
mod create;
mod dirty_users;
mod env;
mod monitor;
mod restore;
mod snapshot;

use super::guest_irq::{self, Drained};
use super::stage2::{self, HwFrameData, HwPhysMem, HwTlb};
use super::sysreg::{clean_dcache_range, counter, sev, wfe, wfi, write_sysreg};
use super::vcpu::{self, El1State, GuestConfig, GuestRegs};
use super::{console, layout::MAX_CPUS};
use super::{fatal, ich};
use crate::frames::FrameAllocator;
use crate::mm::addr::{Ipa, PAGE_SIZE, Pfn};
use crate::mm::fault::{Access, FaultError, FaultOutcome};
use crate::mm::ownership::{FrameTable, GuestPage, VmId};
use crate::mm::stage2::config::{Stage2Config, Vmid};
use crate::sync::Mutex;
use crate::vdev::mmio::{MmioAccess, MmioError};
use crate::vdev::phys_timer::{PTIMER_INTID, TimerReg};
use crate::vdev::pl011::{Pl011, SerialOut};
use crate::vdev::vgic::{DEFAULT_SPIS, Intid, Vgic};
use crate::vdev::{DeviceKind, DeviceMap};
use crate::vm::console::LineBuffer;
use crate::vm::cpu_id::GuestIdRegs;
use crate::vm::devices::{Devices, InputQueue};
use crate::vm::exit::{self, Counter, ExitKind};
use crate::vm::power::{StartRequest, VmPower};
use crate::vm::step::{self, Action, Exit, Level, VmEnv, step};
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use guest_loader::domain::DomainConfig;
use guest_loader::guest_dtb::{self, GuestDtbConfig, virt};
use guest_loader::image::ImageHeader;
use guest_loader::layout;
use spin::Once;

use crate::mm::vm::BLOCK_PAGES;

pub use create::create_all;
use create::{
    BootImages, CreateError, assemble, guest_console, load_images, module_bytes, new_memory,
    new_vgic, populate,
};

/// PSTATE at a vCPU's first instruction: EL1h, D/A/I/F masked (booting.rst).
const START_PSTATE: u64 = 0x3c5;

/// What the virtual PL011 transmits: lines to the console, prefixed with the VM's name; an
/// unfinished line (a prompt) is shown once the guest idles.
struct GuestConsole {
    /// The VM's number, the console's tag for its open line.
    id: usize,
    /// `"<name>| "`.
    prefix: &'static str,
    line: LineBuffer,
    /// A restored guest: log (timestamped) when it first writes, so a benchmark can tell how
    /// long a restore takes until the guest answers.
    announce_first_write: bool,
}

impl GuestConsole {
    /// Shows what the guest wrote of an unfinished line.
    fn show_partial(&mut self) {
        let (id, prefix) = (self.id, self.prefix);
        self.line
            .flush(|piece| console::print_guest(id, prefix, piece, false));
    }
}

/// Per VM number: its console has printed something since it was created or restored. An
/// exception the hypervisor cannot handle before that is an error, not a warning: the guest
/// died before it could say anything, and would otherwise hang silently.
static PRINTED: [AtomicBool; stage2::MAX_VMS + 1] =
    [const { AtomicBool::new(false) }; stage2::MAX_VMS + 1];

impl SerialOut for GuestConsole {
    fn write_byte(&mut self, byte: u8) {
        if let Some(p) = PRINTED.get(self.id).filter(|p| !p.load(Ordering::Relaxed)) {
            p.store(true, Ordering::Relaxed);
        }
        if core::mem::take(&mut self.announce_first_write) {
            let name = self.prefix.trim_end_matches("| ");
            log::info!("{name}: first console output since the restore");
        }
        let (id, prefix) = (self.id, self.prefix);
        monitor::console_output(id - 1, byte);
        self.line.push(byte, |piece, ends| {
            console::print_guest(id, prefix, piece, ends)
        });
    }
}

/// One VM.
pub struct Guest {
    name: &'static str,
    mem: crate::mm::vm::Vm<HwPhysMem, HwTlb>,
    power: VmPower,
    stats: exit::ExitStats,
    devices: Mutex<Devices<GuestConsole>>,
    map: DeviceMap,
    /// pCPU of vCPU 0.
    first_pcpu: usize,
    hw: GuestConfig,
    /// The ID registers the guest reads (HCR_EL2.TID3).
    id_regs: GuestIdRegs,
    /// Per vCPU, when its emulated physical timer next fires ([`NO_DEADLINE`]: not armed),
    /// so the run loop arms the EL2 timer for it without taking the devices lock.
    ptimer_deadline: Vec<AtomicU64>,
    ram: (u64, u64),
    running: AtomicBool,
    control: control::Control,
    /// Typed console input waiting for this VM's virtual UART.
    input: Mutex<InputQueue>,
    /// A PSCI SYSTEM_RESET is under way: every vCPU leaves the guest.
    resetting: AtomicBool,
    /// What the VM boots from again on a reset; `None` for a VM restored from a snapshot.
    boot: Option<BootImages>,
    has_uart: bool,
    /// "Logged once" flags: unhandled abort, unknown exit, SError, abort for populated RAM.
    logged: [AtomicBool; 4],
    /// The dirty log's users (only pCPU 0's monitor and snapshots harvest; a reset clears
    /// snapshot tracking).
    dirty: Mutex<dirty_users::DirtyUsers>,
}

static FRAMES: Once<Mutex<FrameTable>> = Once::new();
static GUESTS: Once<Vec<&'static Guest>> = Once::new();
static RUNNING: AtomicUsize = AtomicUsize::new(0);

fn frames() -> &'static Mutex<FrameTable> {
    FRAMES.get().expect("frame pool set up before any guest")
}

/// Which guest and vCPU pCPU `cpu` runs.
fn assignment(cpu: usize) -> Option<(&'static Guest, usize)> {
    GUESTS.get()?.iter().find_map(|g| {
        let v = cpu.checked_sub(g.first_pcpu)?;
        (v < g.power.vcpus()).then_some((*g, v))
    })
}

/// Every pCPU's life once bring-up is done: wait for the guests, run the vCPU pinned here
/// whenever it has a start request, sleep otherwise. Returns when guests were never created
/// (the caller decides what to do) only on the boot CPU's path; secondaries never return.
pub fn pcpu_main(cpu: usize) -> ! {
    debug_assert!(cpu < MAX_CPUS);
    loop {
        if fatal::stopping() {
            fatal::park();
        }
        if let Some((g, v)) = assignment(cpu)
            && g.running.load(Ordering::Acquire)
            && !g.resetting.load(Ordering::Acquire)
            && let Some(req) = g.power.take_start(v)
        {
            run_vcpu(g, v, req);
            continue;
        }
        wfe();
    }
}

fn run_vcpu(g: &'static Guest, v: usize, req: StartRequest) {
    let mut regs = GuestRegs::default();
    regs.x[0] = req.context;
    regs.pc = req.entry;
    regs.pstate = START_PSTATE;
    let hw = GuestConfig {
        vmpidr: guest_dtb::vcpu_mpidr(v as u32),
        ..g.hw
    };
    // SAFETY: this pCPU runs only this vCPU; the VTTBR is the VM's own root and VMID. The
    // EL1 reset state has the virtual timer off, so no stale timer interrupt follows.
    unsafe {
        vcpu::configure(&hw);
        El1State::reset().load();
    }
    guest_irq::vcpu_starting(g.first_pcpu + v);
    let mut gic_state = ich::VgicCpuState::default();
    // A fresh vCPU starts from the reset virtual CPU interface state.
    let mut lrs = LrTrack {
        saved: true,
        ..LrTrack::default()
    };
    // A vCPU of a restored VM continues from its saved state instead.
    if let Some(s) = control::take_restore(g, v) {
        regs = s.regs;
        // SAFETY: as for the reset state above: an EL1 context of this VM's vCPU.
        unsafe { s.el1.load() };
        s.fp.load();
        gic_state = s.gic;
        // Its emulated physical timer was restored with the devices: drive its line and arm
        // its deadline on this pCPU.
        ptimer_update(g, v);
    }
    log::debug!("{}: vCPU {v} starts at {:#x}", g.name, req.entry);
    let next = loop {
        if !g.running.load(Ordering::Acquire) || g.resetting.load(Ordering::Acquire) {
            break Action::StopVcpu;
        }
        monitor::service(g, v);
        control::park_if_paused(g, v, &mut regs, &mut gic_state, &mut lrs);
        if !vgic_flush(g, v, &gic_state, &mut lrs) {
            break Action::StopVm;
        }
        ptimer_arm(g, v);
        // SAFETY: configured above for this VM; PC/PSTATE are an EL1 state set by us or the
        // guest itself.
        let kind = unsafe { vcpu::run(&mut regs) };
        let (esr, far, hpfar) = vcpu::exit_syndrome();
        vgic_sync(g, v, &mut gic_state, &mut lrs);
        let kind = ExitKind::from_raw(kind).expect("the vectors pass 0..=3");
        let exit = Exit {
            reason: exit::decode(kind, esr),
            far,
            hpfar,
        };
        match step(g, &mut vcpu::HwVcpu(&mut regs), v, exit) {
            Action::Resume => {}
            Action::WaitForInterrupt => wait_for_interrupt(g, v),
            stop => break stop,
        }
    };
    // SAFETY: the vCPU is off: its timer must not raise interrupts for nobody.
    unsafe { write_sysreg!("cntv_ctl_el0", 0u64) };
    g.power.set_off(v);
    match next {
        Action::StopVm => vm_stopped(g),
        Action::ResetVm => reset_vm(g, v),
        Action::Resume | Action::WaitForInterrupt | Action::StopVcpu => {}
    }
}

/// How long a reset waits for the other vCPUs to leave the guest.
const RESET_WAIT_MS: u64 = 1000;

/// PSCI SYSTEM_RESET, on the pCPU of vCPU `v` (already off): once every vCPU is out, gives all
/// guest memory back (zeroed, with break-before-make and TLB invalidation), resets the
/// virtual devices, reloads the boot images and starts vCPU 0 as at creation. The vCPUs keep
/// their pCPUs, the VM its VMID, stage-2 root and virtual counter.
fn reset_vm(g: &'static Guest, v: usize) {
    g.resetting.store(true, Ordering::Release);
    for other in (0..g.power.vcpus()).filter(|&o| o != v) {
        guest_irq::kick(g.first_pcpu + other);
    }
    let deadline = counter() + super::sysreg::counter_frequency() * RESET_WAIT_MS / 1000;
    while !(0..g.power.vcpus()).all(|o| g.power.is_off(o)) {
        if counter() > deadline {
            log::error!(
                "{}: reset: a vCPU did not stop; powering the VM off",
                g.name
            );
            g.resetting.store(false, Ordering::Release);
            vm_stopped(g);
            return;
        }
        core::hint::spin_loop();
    }
    // Pages given back cannot be told by a diff: the next snapshot must be a full one.
    g.dirty.lock().tracked = None;
    if let Err(e) = g.mem.release_all(frames(), &mut HwFrameData) {
        log::error!(
            "{}: reset: giving memory back: {e}; powering the VM off",
            g.name
        );
        g.resetting.store(false, Ordering::Release);
        vm_stopped(g);
        return;
    }
    {
        let mut dev = g.devices.lock();
        if let Some(u) = dev.uart.as_mut() {
            u.output().show_partial();
        }
        dev.reset(new_vgic(g.power.vcpus()).expect("the VM's vGIC was created with these vCPUs"));
        for d in &g.ptimer_deadline {
            d.store(NO_DEADLINE, Ordering::Relaxed);
        }
    }
    let Some(boot) = g.boot.as_ref() else {
        log::error!(
            "{}: reset: a VM restored from a snapshot has no kernel image to boot again; powering it off",
            g.name
        );
        g.resetting.store(false, Ordering::Release);
        vm_stopped(g);
        return;
    };
    if let Err(e) = load_images(&g.mem, boot) {
        log::error!(
            "{}: reset: reloading the images: {e}; powering the VM off",
            g.name
        );
        g.resetting.store(false, Ordering::Release);
        vm_stopped(g);
        return;
    }
    g.stats.count(Counter::Reset);
    log::info!(
        "{}: reset: memory given back, images reloaded, vCPU 0 restarts",
        g.name
    );
    g.resetting.store(false, Ordering::Release);
    g.power.request_start(0, boot.start());
    sev();
}

/// A VM has stopped: report it; power the machine off when it was the last.
fn vm_stopped(g: &Guest) {
    if !g.running.swap(false, Ordering::AcqRel) {
        return;
    }
    if let Some(u) = g.devices.lock().uart.as_mut() {
        u.output().show_partial();
    }
    // vCPUs running or waiting on other pCPUs see `running` cleared once kicked.
    for v in 0..g.power.vcpus() {
        guest_irq::kick(g.first_pcpu + v);
    }
    if let Some(n) = monitor::storm_moved() {
        log::info!("{}: migration storm: {n} pages moved", g.name);
    }
    log::info!(
        "{}: powered off; exits: {} ({} total), {} stage-2 table pages",
        g.name,
        g.stats,
        g.stats.total(),
        g.mem.table_pages()
    );
    sev();
    if RUNNING.fetch_sub(1, Ordering::AcqRel) == 1 {
        log::info!("no guest left running: powering off");
        fatal::power_off();
    }
}

/// What the list registers hold since the last flush, so that exits with no interrupt
/// traffic (most of them) skip rebuilding and reading them back.
#[derive(Default)]
struct LrTrack {
    /// The last flush loaded a list register or asked for a maintenance interrupt.
    loaded: bool,
    /// The vGIC generation that flush saw.
    generation: Option<u64>,
    /// The virtual CPU interface state was saved (and the interface disabled) at the last exit
    /// and must be restored; otherwise it is still live in the ICH registers.
    saved: bool,
}

/// Loads this vCPU's virtual CPU interface and the interrupts the vGIC chose into the list
/// registers. False when the vGIC refuses (a bug: the VM is stopped rather than run with
/// interrupts lost).
///
/// Skipped when the last flush loaded nothing and the vGIC's generation has not moved: the
/// flush would load nothing again (`Vgic::generation`), the list registers are all invalid
/// and the virtual CPU interface state is still live (this pCPU runs only this vCPU).
fn vgic_flush(g: &Guest, v: usize, state: &ich::VgicCpuState, track: &mut LrTrack) -> bool {
    let mut dev = g.devices.lock();
    if !track.loaded && track.generation == Some(dev.vgic.generation()) {
        return true;
    }
    match dev.vgic.flush(v, ich::n_lrs()) {
        Ok(f) => {
            if core::mem::take(&mut track.saved) {
                ich::restore(state);
            }
            ich::apply_flush(&f);
            track.loaded = f.used() > 0 || f.underflow;
            track.generation = Some(dev.vgic.generation());
            true
        }
        Err(e) => {
            log::error!("{}: vCPU {v}: vGIC flush: {e:?}; stopping the VM", g.name);
            false
        }
    }
}

/// Reads the list registers back into the vGIC model after an exit (nothing to read when the
/// last flush loaded none), and samples the virtual timer's line again.
///
/// The guest programs its virtual timer without trapping, so its line can fall (the guest
/// disabled or masked the timer) while a copy the guest has not taken waits in a list
/// register; at every exit, which includes every read of the redistributor's pending state,
/// such a copy is withdrawn, as a redistributor drops a level interrupt whose line fell. And
/// a line that rose while nothing was delivered is fetched from the physical GIC at once, so
/// the pending state the guest reads next is the line's. (Without FEAT_ECV's EL1TVT trap, a
/// guest that masks its timer and unmasks its interrupts with no exit in between can still
/// take one stale interrupt, as under KVM on such a CPU.)
fn vgic_sync(g: &Guest, v: usize, state: &mut ich::VgicCpuState, track: &mut LrTrack) {
    let pcpu = g.first_pcpu + v;
    let level = super::timer::guest_vtimer_level();
    if !track.loaded && !guest_irq::vtimer_held(pcpu) {
        if level {
            deliver(g, v, guest_irq::drain());
        }
        return;
    }
    let mut dev = g.devices.lock();
    if track.loaded {
        ich::save(state);
        track.saved = true;
        if let Err(e) = dev.vgic.sync(v, &state.lrs[..ich::n_lrs()]) {
            log::error!("{}: vCPU {v}: vGIC sync: {e:?}", g.name);
        }
    }
    if !level && guest_irq::vtimer_held(pcpu) {
        let _ = dev.vgic.withdraw_ppi(v, Intid::VTIMER);
    }
    if guest_irq::vtimer_held(pcpu) && !dev.vgic.pending_or_active(v, Intid::VTIMER).unwrap_or(true)
    {
        // Usually the guest's deactivation already reached the physical interrupt; releasing
        // it again costs one write and covers a guest that masked or cleared its virtual
        // copy instead, which would leave the timer dead on this pCPU.
        drop(dev);
        guest_irq::release_vtimer(pcpu);
    }
}

/// Per-vCPU deadline meaning "none".
const NO_DEADLINE: u64 = u64::MAX;

/// Samples vCPU `v`'s emulated physical timer: drives its PPI and arms the EL2 timer for its
/// next expiry. On the vCPU's own pCPU.
fn ptimer_update(g: &Guest, v: usize) {
    let now = guest_counter(g);
    let mut dev = g.devices.lock();
    let t = dev.ptimers[v];
    let _ = dev.vgic.set_ppi_level(v, PTIMER_INTID, t.level(now));
    drop(dev);
    // In the host's time base, for the EL2 timer.
    let deadline = t
        .deadline(now)
        .map_or(NO_DEADLINE, |d| d.wrapping_add(g.hw.cntvoff));
    g.ptimer_deadline[v].store(deadline, Ordering::Relaxed);
    if deadline != NO_DEADLINE {
        super::timer::hyp_arm_by(deadline);
    }
}

/// The guest's counters (virtual and physical): the host's minus the VM's offset.
fn guest_counter(g: &Guest) -> u64 {
    counter().wrapping_sub(g.hw.cntvoff)
}

/// Arms the EL2 timer for vCPU `v`'s emulated physical timer, if it waits to fire (before
/// the vCPU runs or sleeps: other users of the EL2 timer may have disarmed it).
fn ptimer_arm(g: &Guest, v: usize) {
    let deadline = g.ptimer_deadline[v].load(Ordering::Relaxed);
    if deadline != NO_DEADLINE {
        super::timer::hyp_arm_by(deadline);
    }
}

/// Applies what `guest_irq::drain` found to the vCPU on this pCPU and the console guest.
fn deliver(g: &Guest, v: usize, d: Drained) {
    if d.hyp_timer && g.ptimer_deadline[v].load(Ordering::Relaxed) != NO_DEADLINE {
        ptimer_update(g, v);
    }
    if d.vtimer {
        g.stats.count(Counter::VtimerIrq);
        let _ = g.devices.lock().vgic.inject_ppi(v, Intid::VTIMER);
    }
    if d.console {
        monitor::console_input();
    }
}

/// Console input arrived for `g`: moves it into its virtual UART and kicks the vCPU whose
/// interrupt that raised.
fn console_input_for(g: &Guest) {
    let mut dev = g.devices.lock();
    if let Some(target) = dev.uart_update(&g.input) {
        drop(dev);
        guest_irq::kick(g.first_pcpu + target);
    }
}

/// A trapped WFI: sleeps until the vCPU has an interrupt to take (or its VM stops). Physical
/// interrupts wake the pCPU's WFI although PSTATE.I masks them at EL2; they are drained here.
fn wait_for_interrupt(g: &'static Guest, v: usize) {
    // The guest idles: what it printed of an unfinished line (a prompt) is due now.
    if let Some(u) = g.devices.lock().uart.as_mut() {
        u.output().show_partial();
    }
    loop {
        deliver(g, v, guest_irq::drain());
        monitor::service(g, v);
        if !g.running.load(Ordering::Acquire)
            || g.control.must_park(v)
            || g.devices.lock().vgic.vcpu_has_pending(v).unwrap_or(true)
        {
            return;
        }
        monitor::arm_wakeup();
        ptimer_arm(g, v);
        wfi();
    }
}

/// The guest wrote ICC_SGI1R_EL1 (`value`): the vGIC makes the SGI pending at its targets,
/// the ones on other pCPUs are kicked.
fn send_sgi(g: &Guest, v: usize, value: u64) {
    let targets = g.devices.lock().vgic.send_sgi(v, value);
    match targets {
        Ok(mask) => {
            for t in mask.iter().filter(|&t| t != v) {
                guest_irq::kick(g.first_pcpu + t);
            }
        }
        Err(e) => log::error!("{}: vCPU {v}: SGI: {e:?}", g.name),
    }
}
