//! Creating the VMs: one per dom0less domain that is valid and fits, with its memory pool,
//! stage 2, devices and boot images loaded into its RAM; and what a restore and a reset reuse
//! of that.

use super::*;

/// A boot module's bytes in host memory.
pub(super) fn module_bytes(m: &guest_loader::domain::Module<'_>) -> &'static [u8] {
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
        Some(at) => unsafe {
            crate::arch::aarch64::heap::grow(at.raw() as usize, heap_bytes as usize)
        },
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
pub(super) enum CreateError {
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

pub(super) fn create(
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
pub(super) fn new_memory(
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
pub(super) fn guest_console(id: usize, name: &str) -> GuestConsole {
    GuestConsole {
        id,
        prefix: Box::leak(alloc::format!("{name}| ").into_boxed_str()),
        line: LineBuffer::new(),
        announce_first_write: false,
    }
}

/// The VM around memory and devices made for domain `d` (no vCPU asked to start yet).
#[allow(clippy::too_many_arguments)]
pub(super) fn assemble(
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
        id_regs: crate::arch::aarch64::cpu_id::guest_id_regs(config.ipa_bits()),
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
pub(super) fn new_vgic(vcpus: usize) -> Result<Vgic, crate::vdev::vgic::VgicError> {
    let mut vgic = Vgic::new(vcpus, DEFAULT_SPIS)?;
    for v in 0..vcpus {
        vgic.link_hw(v, Intid::VTIMER, guest_irq::vtimer_intid())?;
    }
    Ok(vgic)
}

/// What a VM boots from, kept for its reboots (PSCI SYSTEM_RESET).
pub(super) struct BootImages {
    kernel: &'static [u8],
    initrd: Option<&'static [u8]>,
    dtb: Vec<u8>,
    place: layout::GuestLayout,
}

impl BootImages {
    /// vCPU 0's first instruction and x0 (booting.rst).
    pub(super) fn start(&self) -> StartRequest {
        StartRequest {
            entry: self.place.kernel,
            context: self.place.dtb,
        }
    }
}

/// Copies kernel, initrd and DTB into guest RAM (into freshly donated frames).
pub(super) fn load_images(
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
        super::env::donate_block(mem, b);
    }
    // SAFETY: invalidating the instruction caches only drops cached instructions; the guest
    // must fetch the code just copied, not stale lines.
    unsafe { core::arch::asm!("ic ialluis", "dsb ish", "isb", options(nostack)) };
    Ok(())
}

/// Copies `bytes` to guest RAM at `at`, page by page, into frames donated to the VM.
pub(super) fn populate(
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
        super::env::donate_block(mem, b);
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
        unsafe { crate::arch::aarch64::memops::copy(dst, src.as_ptr() as u64, src.len() as u64) };
        clean_dcache_range(dst, src.len() as u64);
        page += PAGE_SIZE;
    }
    Ok(())
}
