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
mod dirty_users;
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

/// A boot module's bytes in host memory.
fn module_bytes(m: &guest_loader::domain::Module<'_>) -> &'static [u8] {
    // SAFETY: `check_layout` put the module inside RAM, the boot code kept it out of the frame
    // allocator (so nothing else writes it) and the EL2 map covers all of RAM.
    unsafe { core::slice::from_raw_parts(m.region.base as *const u8, m.region.size as usize) }
}

/// Creates a VM for each domain that is valid and fits, logging why others are refused.
/// Returns how many were created.
pub fn create_all(
    domains: &[DomainConfig<'static>],
    alloc: &mut FrameAllocator,
    pcpus: usize,
    machine: &crate::platform::Machine<'_>,
) -> usize {
    let config = match stage2::config() {
        Ok(c) => c,
        Err(e) => {
            log::error!("no guest can run: {e}");
            return 0;
        }
    };
    // The pool: all guest RAM, plus tables (one per 2 MiB mapped, one per GiB, the root and
    // the per-VM cache).
    let ram_pages: u64 = domains.iter().map(|d| d.memory / PAGE_SIZE).sum();
    let pool = ram_pages + ram_pages / BLOCK_PAGES + domains.len() as u64 * 256 + 64;
    let Some(base) = alloc.alloc_contiguous(pool, BLOCK_PAGES) else {
        log::error!(
            "no guest can run: {} MiB of guest memory asked for, not that much contiguous RAM is free",
            (pool * PAGE_SIZE) >> 20
        );
        return 0;
    };
    // The frame table (8 bytes a frame) and its neighbours come from the heap: grow it by a
    // power-of-two block (the buddy allocator's largest allocation is its largest block).
    let heap_bytes = (pool * 16).next_power_of_two().max(2 << 20);
    match alloc.alloc_contiguous(heap_bytes / PAGE_SIZE, heap_bytes / PAGE_SIZE) {
        // SAFETY: the frame allocator gave these frames to us alone, for good; RAM is mapped
        // read-write at EL2.
        Some(at) => unsafe { super::heap::grow(at.raw() as usize, heap_bytes as usize) },
        None => log::warn!(
            "could not grow the heap by {} KiB for the guests' metadata",
            heap_bytes >> 10
        ),
    }
    // The pool is zeroed (through HwFrameData) as the ownership layer first hands frames out.
    FRAMES.call_once(|| Mutex::new(FrameTable::new_unzeroed(Pfn::containing(base), pool)));
    log::info!(
        "guest memory pool: {} frames at {} ({} MiB), stage 2: {}-bit IPA, {}-bit VMIDs",
        pool,
        base,
        (pool * PAGE_SIZE) >> 20,
        config.ipa_bits(),
        config.vmid_bits()
    );

    // Console input goes to the first VM with a virtual UART.
    guest_irq::init(machine, domains.iter().any(|d| d.vpl011));
    let mut guests = Vec::new();
    let mut next_pcpu = 0usize;
    for d in domains {
        let id = guests.len() + 1;
        if d.cpus as usize > pcpus - next_pcpu.min(pcpus) {
            log::error!(
                "domain {}: refused: it asks for {} vCPUs but only {} physical CPUs are left (one vCPU per pCPU)",
                d.name,
                d.cpus,
                pcpus - next_pcpu.min(pcpus)
            );
            continue;
        }
        if id > stage2::MAX_VMS || id > usize::from(config.max_vmid()) {
            log::error!(
                "domain {}: refused: at most {} VMs",
                d.name,
                stage2::MAX_VMS
            );
            continue;
        }
        let created = if d.snapshots.is_empty() {
            create(d, id, next_pcpu, config)
        } else {
            restore::create(d, &d.snapshots, id, next_pcpu, config)
        };
        match created {
            Ok(g) => {
                next_pcpu += d.cpus as usize;
                guests.push(&*Box::leak(Box::new(g)));
            }
            Err(e) => log::error!("domain {}: refused: {e}", d.name),
        }
    }
    let n = guests.len();
    RUNNING.store(n, Ordering::Release);
    for g in &guests {
        g.running.store(true, Ordering::Release);
    }
    GUESTS.call_once(|| guests);
    monitor::init(GUESTS.get().expect("just set"), machine.chosen.bootargs);
    sev();
    n
}

/// Why a domain could not be created.
#[derive(Debug)]
enum CreateError {
    Image(guest_loader::image::ImageError),
    Place(layout::PlaceError),
    Dtb(guest_dtb::GuestDtbError),
    Memory(crate::mm::vm::MmuError),
    Ownership(crate::mm::ownership::OwnershipError),
    /// The snapshot to restore is unusable or does not match the domain node.
    Snapshot(alloc::string::String),
}

impl core::fmt::Display for CreateError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Image(e) => write!(f, "kernel image: {e}"),
            Self::Place(e) => write!(f, "{e}"),
            Self::Dtb(e) => write!(f, "guest device tree: {e:?}"),
            Self::Memory(e) => write!(f, "{e}"),
            Self::Ownership(e) => write!(f, "populating guest memory: {e}"),
            Self::Snapshot(e) => write!(f, "snapshot: {e}"),
        }
    }
}

fn create(
    d: &DomainConfig<'static>,
    id: usize,
    first_pcpu: usize,
    config: Stage2Config,
) -> Result<Guest, CreateError> {
    let kernel = module_bytes(&d.kernel);
    let header = ImageHeader::parse(kernel).map_err(CreateError::Image)?;
    let initrd = d.ramdisk.as_ref().map(module_bytes);
    let ram = (virt::RAM_BASE, d.memory);
    let place = layout::place(ram.0, ram.1, &header, initrd.map(|i| i.len() as u64), 0)
        .map_err(CreateError::Place)?;
    let dtb = guest_dtb::build(&GuestDtbConfig {
        ram_base: ram.0,
        ram_size: ram.1,
        cpus: d.cpus,
        bootargs: d.bootargs.unwrap_or(""),
        initrd: place.initrd,
        uart: d.vpl011,
    })
    .map_err(CreateError::Dtb)?;
    let mem = new_memory(id, ram, config)?;
    let boot = BootImages {
        kernel,
        initrd,
        dtb,
        place,
    };
    load_images(&mem, &boot)?;
    let vgic = new_vgic(d.cpus as usize)
        .map_err(|_| CreateError::Dtb(guest_dtb::GuestDtbError::TooManyCpus { cpus: d.cpus }))?;
    let uart = d.vpl011.then(|| Pl011::new(guest_console(id, d.name)));
    let g = assemble(
        d,
        first_pcpu,
        config,
        mem,
        counter(),
        vgic,
        uart,
        Some(boot),
    );
    g.power
        .request_start(0, g.boot.as_ref().expect("just loaded").start());
    log::info!("{}: virtual counter offset {}", d.name, g.hw.cntvoff);
    log::info!(
        "domain {} = VM {id} (VMID {id}): {} MiB at IPA {:#x}, {} vCPU(s) on pCPU {}..{}, kernel at {:#x}, DTB at {:#x}{}, console {}",
        d.name,
        ram.1 >> 20,
        ram.0,
        d.cpus,
        first_pcpu,
        first_pcpu + d.cpus as usize - 1,
        place.kernel,
        place.dtb,
        place
            .initrd
            .map_or(alloc::string::String::new(), |(a, l)| alloc::format!(
                ", initrd {a:#x}+{l:#x}"
            )),
        if d.vpl011 { "vpl011" } else { "none" }
    );
    Ok(g)
}

/// A VM's stage-2 memory: its RAM region, with VMID `id`.
fn new_memory(
    id: usize,
    ram: (u64, u64),
    config: Stage2Config,
) -> Result<crate::mm::vm::Vm<HwPhysMem, HwTlb>, CreateError> {
    let vm_id = VmId::new(id as u16).expect("at most MAX_VMS VMs");
    crate::mm::vm::Vm::new(
        vm_id,
        &[(Ipa::new(ram.0), ram.1)],
        config,
        Vmid::new(id as u16),
        HwPhysMem,
        HwTlb,
        &mut frames().lock(),
        &mut HwFrameData,
    )
    .map_err(CreateError::Memory)
}

/// The virtual UART's output of VM `id` named `name`.
fn guest_console(id: usize, name: &str) -> GuestConsole {
    GuestConsole {
        id,
        prefix: Box::leak(alloc::format!("{name}| ").into_boxed_str()),
        line: LineBuffer::new(),
        announce_first_write: false,
    }
}

/// The VM around memory and devices made for domain `d` (no vCPU asked to start yet).
#[allow(clippy::too_many_arguments)]
fn assemble(
    d: &DomainConfig<'static>,
    first_pcpu: usize,
    config: Stage2Config,
    mem: crate::mm::vm::Vm<HwPhysMem, HwTlb>,
    cntvoff: u64,
    vgic: Vgic,
    uart: Option<Pl011<GuestConsole>>,
    boot: Option<BootImages>,
) -> Guest {
    stage2::register_vttbr(mem.vttbr());
    let ram = (virt::RAM_BASE, d.memory);
    let hw = GuestConfig {
        hcr: vcpu::guest_hcr(config.attr_encoding().fwb),
        vtcr: config.vtcr(),
        vttbr: mem.vttbr(),
        vmpidr: 0,
        cntvoff,
    };
    Guest {
        name: d.name,
        mem,
        power: VmPower::new((0..d.cpus).map(guest_dtb::vcpu_mpidr), ram.0, ram.1),
        stats: exit::ExitStats::new(),
        devices: Mutex::new(Devices::new(uart, vgic, d.cpus as usize)),
        ptimer_deadline: (0..d.cpus).map(|_| AtomicU64::new(NO_DEADLINE)).collect(),
        map: DeviceMap::qemu_virt(d.cpus as usize),
        first_pcpu,
        hw,
        id_regs: super::cpu_id::guest_id_regs(config.ipa_bits()),
        ram,
        running: AtomicBool::new(false),
        control: control::Control::new(d.cpus as usize),
        input: Mutex::new(InputQueue::default()),
        resetting: AtomicBool::new(false),
        boot,
        has_uart: d.vpl011,
        logged: [const { AtomicBool::new(false) }; 4],
        dirty: Mutex::new(dirty_users::DirtyUsers::new(d.memory)),
    }
}

/// A VM's vGIC at reset: every vCPU's virtual timer linked to the physical one.
fn new_vgic(vcpus: usize) -> Result<Vgic, crate::vdev::vgic::VgicError> {
    let mut vgic = Vgic::new(vcpus, DEFAULT_SPIS)?;
    for v in 0..vcpus {
        vgic.link_hw(v, Intid::VTIMER, guest_irq::vtimer_intid())?;
    }
    Ok(vgic)
}

/// What a VM boots from, kept for its reboots (PSCI SYSTEM_RESET).
struct BootImages {
    kernel: &'static [u8],
    initrd: Option<&'static [u8]>,
    dtb: Vec<u8>,
    place: layout::GuestLayout,
}

impl BootImages {
    /// vCPU 0's first instruction and x0 (booting.rst).
    fn start(&self) -> StartRequest {
        StartRequest {
            entry: self.place.kernel,
            context: self.place.dtb,
        }
    }
}

/// Copies kernel, initrd and DTB into guest RAM (into freshly donated frames).
fn load_images(
    mem: &crate::mm::vm::Vm<HwPhysMem, HwTlb>,
    boot: &BootImages,
) -> Result<(), CreateError> {
    let place = &boot.place;
    let mut images: Vec<(u64, &[u8])> = Vec::new();
    images.push((place.kernel, boot.kernel));
    if let (Some((at, _)), Some(bytes)) = (place.initrd, boot.initrd) {
        images.push((at, bytes));
    }
    images.push((place.dtb, &boot.dtb));
    for (at, bytes) in images {
        populate(mem, at, bytes)?;
    }
    // The kernel's BSS and early allocations lie past its file, in blocks touched at once.
    let block = BLOCK_PAGES * PAGE_SIZE;
    for b in (place.kernel & !(block - 1)..place.kernel_end).step_by(block as usize) {
        donate_block(mem, b);
    }
    // SAFETY: invalidating the instruction caches only drops cached instructions; the guest
    // must fetch the code just copied, not stale lines.
    unsafe { core::arch::asm!("ic ialluis", "dsb ish", "isb", options(nostack)) };
    Ok(())
}

/// Copies `bytes` to guest RAM at `at`, page by page, into frames donated to the VM.
fn populate(
    mem: &crate::mm::vm::Vm<HwPhysMem, HwTlb>,
    at: u64,
    bytes: &[u8],
) -> Result<(), CreateError> {
    let first = at & !(PAGE_SIZE - 1);
    let end = at + bytes.len() as u64;
    // Whole blocks where they fit, so the image's first touches map 2 MiB at once instead of
    // faulting page by page around the copied pages.
    let block = BLOCK_PAGES * PAGE_SIZE;
    let mut b = first & !(block - 1);
    while b < end {
        donate_block(mem, b);
        b += block;
    }
    let mut page = first;
    while page < end {
        let pa = match mem.backing(Ipa::new(page)) {
            GuestPage::Owned(pfn) => pfn.base(),
            _ => {
                let pfn = frames()
                    .lock()
                    .hyp_alloc(&mut HwFrameData)
                    .map_err(CreateError::Ownership)?;
                mem.donate(frames(), pfn.base(), Ipa::new(page), PAGE_SIZE)
                    .map_err(CreateError::Ownership)?;
                pfn.base()
            }
        };
        let from = page.max(at);
        let to = (page + PAGE_SIZE).min(end);
        let src = &bytes[(from - at) as usize..(to - at) as usize];
        let dst = pa.raw() + (from - page);
        // SAFETY: `pa` is a RAM frame this VM owns and no vCPU runs yet; the copy stays
        // inside it (`from..to` lies in one page).
        unsafe { super::memops::copy(dst, src.as_ptr() as u64, src.len() as u64) };
        clean_dcache_range(dst, src.len() as u64);
        page += PAGE_SIZE;
    }
    Ok(())
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

impl VmEnv for Guest {
    fn name(&self) -> &str {
        self.name
    }
    fn count(&self, c: Counter) {
        self.stats.count(c);
    }
    fn power(&self) -> &VmPower {
        &self.power
    }
    fn wake_starters(&self) {
        sev();
    }
    fn id_regs(&self) -> &GuestIdRegs {
        &self.id_regs
    }
    fn send_sgi(&self, v: usize, value: u64) {
        send_sgi(self, v, value);
    }
    /// Then the timer's line and deadline follow.
    fn ptimer_access(&self, v: usize, reg: TimerReg, write: Option<u64>) -> u64 {
        let now = guest_counter(self);
        let mut dev = self.devices.lock();
        let value = match write {
            Some(x) => {
                dev.ptimers[v].write(reg, x, now);
                0
            }
            None => dev.ptimers[v].read(reg, now),
        };
        drop(dev);
        ptimer_update(self, v);
        value
    }
    fn is_guest_memory(&self, ipa: Ipa) -> bool {
        self.mem.is_guest_memory(ipa)
    }
    fn is_backed(&self, ipa: Ipa) -> bool {
        self.mem.backing(ipa) != GuestPage::NoPage
    }
    fn restored(&self) -> bool {
        self.boot.is_none()
    }
    fn stage2_fault(&self, ipa: Ipa, access: Access) -> Result<FaultOutcome, FaultError> {
        prefer_block(self, ipa.raw());
        self.mem
            .handle_fault(frames(), &mut HwFrameData, ipa, access)
    }
    fn device_at(&self, ipa: Ipa) -> Option<(DeviceKind, u64)> {
        self.map.lookup(ipa)
    }
    fn device_access(
        &self,
        v: usize,
        kind: DeviceKind,
        access: MmioAccess,
    ) -> (Option<Result<u64, MmioError>>, Option<usize>) {
        self.devices.lock().access(v, kind, access, &self.input)
    }
    fn kick(&self, v: usize) {
        guest_irq::kick(self.first_pcpu + v);
    }
    fn take_physical_irqs(&self, v: usize) {
        deliver(self, v, guest_irq::drain());
    }
    fn log(&self, level: Level, args: core::fmt::Arguments<'_>) {
        match level {
            Level::Info => log::info!("{args}"),
            Level::Warn => log::warn!("{args}"),
            Level::Error => log::error!("{args}"),
        }
    }
    fn log_once(&self, which: step::Once, args: core::fmt::Arguments<'_>) {
        if which == step::Once::AbortOnRam {
            // Always an error: the hypervisor's own bug.
            if !self.logged[which as usize].swap(true, Ordering::Relaxed) {
                log::error!("{args}");
            }
            return;
        }
        log_once(self, which as usize, args);
    }
}

/// A message logged the first time `which` happens in `g`: an error while the guest has not
/// printed anything yet (it may never), a warning after.
fn log_once(g: &Guest, which: usize, args: core::fmt::Arguments<'_>) {
    if g.logged[which].swap(true, Ordering::Relaxed) {
        return;
    }
    let id = GUESTS
        .get()
        .and_then(|gs| gs.iter().position(|x| core::ptr::eq(*x, g)))
        .map_or(0, |i| i + 1);
    let silent = !PRINTED.get(id).is_some_and(|p| p.load(Ordering::Relaxed));
    if silent && g.has_uart {
        log::error!(
            "{args}, before the guest printed anything on its console (it may never; logged once per VM)"
        );
    } else {
        log::warn!("{args} (logged once per VM)");
    }
}

/// On a first touch of an untouched 2 MiB block of guest RAM, backs the whole block with one
/// aligned run so the fault path can map it with one block entry. Best effort: without a free
/// run, or with a page of the block already backed, the fault path populates the single page.
fn prefer_block(g: &Guest, ipa: u64) {
    donate_block(&g.mem, ipa);
}

/// Backs the untouched 2 MiB block of guest memory holding `ipa`, if it is one (best effort).
fn donate_block(mem: &crate::mm::vm::Vm<HwPhysMem, HwTlb>, ipa: u64) {
    let _ = mem.populate_block(frames(), &mut HwFrameData, Ipa::new(ipa));
}
