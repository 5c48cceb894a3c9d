//! The boot CPU's bring-up, in order: EL check, early DTB read (console, RAM), EL2 map and MMU,
//! heap, logger, full DTB parse, frame allocator. Each step's failure is reported and ends the
//! run with a non-zero status.

use super::fatal::{self, ExitCode};
use super::layout::ImageLayout;
use super::pl011::QEMU_VIRT_PL011;
use super::{console, el2, heap, mmu, percpu, sysreg};
use crate::frames::FrameAllocator;
use crate::idmap::MapError;
use crate::mm::addr::Pa;
use crate::platform::{Early, Machine, Region};
use alloc::vec::Vec;
use guest_loader::domain::{self, DomainConfig, DomainError};

/// booting.rst: the DTB must not exceed 2 MiB.
const DTB_MAX: usize = 2 << 20;

/// What bring-up produced, for the rest of the hypervisor.
pub struct Booted {
    pub machine: Machine<'static>,
    pub frames: FrameAllocator,
    pub dtb: Region,
    /// The dom0less domains of `/chosen` that passed `check_layout` (their modules are kept
    /// out of `frames`).
    pub domains: Vec<DomainConfig<'static>>,
}

/// The boot DTB as a byte slice (up to its header's `totalsize`, at most 2 MiB).
///
/// # Safety
/// `pa` must be the address the boot loader passed in x0, identity mapped (or the MMU off), and
/// the blob must stay untouched for the rest of the run (the frame allocator excludes it).
unsafe fn dtb_slice(pa: u64) -> Option<&'static [u8]> {
    if pa == 0 || !pa.is_multiple_of(8) {
        return None;
    }
    // SAFETY: the caller guarantees the header words are readable; the size field is bounded
    // before the slice is formed, and the boot protocol places the whole blob in RAM.
    unsafe {
        let total = u32::from_be((pa as *const u32).add(1).read_volatile()) as usize;
        Some(core::slice::from_raw_parts(
            pa as *const u8,
            total.clamp(40, DTB_MAX),
        ))
    }
}

/// Removes FDT_NOP tokens from the structure block in place (shrinking `size_dt_struct`).
/// QEMU leaves runs of them when it edits a `-dtb` blob (it NOPs the nodes it replaces), and
/// the DTB reader refuses them. Stops, changing nothing more, at anything malformed: the
/// validator reports that afterwards.
fn strip_nops(blob: &mut [u8]) {
    let word = |b: &[u8], at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
    };
    let (Some(off), Some(size)) = (word(blob, 8), word(blob, 36)) else {
        return;
    };
    let (off, size) = (off as usize, size as usize);
    let Some(block) = blob.get_mut(off..off.saturating_add(size)) else {
        return;
    };
    let (mut rd, mut wr) = (0usize, 0usize);
    while let Some(token) = word(block, rd) {
        let len = match token {
            1 => match block
                .get(rd + 4..)
                .and_then(|r| r.iter().position(|&c| c == 0))
            {
                Some(n) => 4 + (n + 1).next_multiple_of(4),
                None => return,
            },
            3 => match word(block, rd + 4) {
                Some(l) => 12 + (l as usize).next_multiple_of(4),
                None => return,
            },
            2 | 9 => 4,
            4 => {
                rd += 4;
                continue;
            }
            _ => return,
        };
        if rd + len > block.len() {
            return;
        }
        block.copy_within(rd..rd + len, wr);
        rd += len;
        wr += len;
        if token == 9 {
            break;
        }
    }
    blob[36..40].copy_from_slice(&(wr as u32).to_be_bytes());
}

/// Bring-up of the boot CPU with `dtb` from x0. Returns with the MMU, heap and logger up.
pub fn boot_cpu(dtb_pa: u64) -> Booted {
    // SAFETY: x0 from the boot loader; the MMU is off, so any RAM address is readable.
    let blob = unsafe { dtb_slice(dtb_pa) };
    if let Some(b) = blob {
        // SAFETY: the boot protocol hands the DTB over to us: nothing else reads or writes it
        // while this CPU (alone, MMU off) edits it in place; `b` covers exactly the blob.
        strip_nops(unsafe { core::slice::from_raw_parts_mut(b.as_ptr().cast_mut(), b.len()) });
    }
    let early = blob.map(Early::parse);
    let uart = match early {
        Some(Ok(e)) => e.uart.map_or(QEMU_VIRT_PL011, |u| u.base.raw()),
        _ => QEMU_VIRT_PL011,
    };
    // SAFETY: the DTB names this PL011 (else it is QEMU virt's); the MMU is off.
    unsafe { console::init(uart) };

    let el = sysreg::current_el();
    if el != 2 {
        console::print_raw(format_args!(
            "hyp: entered at EL{el}: must be entered at EL2; on QEMU use -M virt,virtualization=on"
        ));
        fatal::stop_machine(ExitCode::WrongEl);
    }
    let (blob, early) = match (blob, early) {
        (Some(blob), Some(Ok(early))) => (blob, early),
        (_, Some(Err(e))) => boot_failed(format_args!("boot DTB at {dtb_pa:#x}: {e}")),
        _ => boot_failed(format_args!(
            "no usable boot DTB address in x0 ({dtb_pa:#x})"
        )),
    };
    let blob = &blob[..early.dtb_size as usize];

    let tables = match mmu::enable_boot(early.memory(), Pa::new(console::uart_base())) {
        Ok(tables) => tables,
        Err(e) => boot_failed(format_args!("EL2 map: {e}")),
    };
    percpu::init_this_cpu(0);
    heap::init();
    console::install_logger(log::LevelFilter::Info);
    el2::init_this_cpu();

    let machine = match Machine::parse(blob) {
        Ok(m) => m,
        Err(e) => boot_failed(format_args!("boot DTB at {dtb_pa:#x}: {e}")),
    };
    match crate::log::level_from_bootargs(machine.chosen.bootargs) {
        Ok(level) => log::set_max_level(level),
        Err(unknown) => log::warn!("{unknown}"),
    }
    let dtb = Region {
        base: Pa::new(dtb_pa),
        size: early.dtb_size,
    };
    log_machine(&machine, dtb);
    let gic =
        core::iter::once(machine.gic.distributor).chain(machine.gic.redistributors.iter().copied());
    for r in gic.chain(core::iter::once(machine.uart)) {
        if let Err(e) = mmu::map_device(r).or_else(|e| match e {
            // The console page is mapped already.
            MapError::AlreadyMapped { .. } if r == machine.uart => Ok(()),
            e => Err(e),
        }) {
            boot_failed(format_args!(
                "EL2 map of device {}..{}: {e}",
                r.base,
                r.end()
            ));
        }
    }
    log::info!("EL2 MMU on: identity map in {tables} tables, GIC frames mapped");

    let layout = ImageLayout::get();
    let image = layout.image();
    let image = Region {
        base: image.start,
        size: image.end.raw() - image.start.raw(),
    };
    let mut reserved: Vec<Region> = [image, dtb]
        .into_iter()
        .chain(machine.reserved.iter().copied())
        .collect();
    reserved.extend(machine.chosen.initrd);
    reserved.extend(machine.chosen.modules.iter().copied());
    let domains = guest_domains(blob, &machine, &reserved);
    for d in &domains {
        for m in core::iter::once(d.kernel).chain(d.ramdisk) {
            reserved.push(Region {
                base: Pa::new(m.region.base),
                size: m.region.size,
            });
        }
    }
    let frames = FrameAllocator::new(&machine.memory, &reserved);
    let stats = frames.stats();
    let (heap_used, heap_total) = heap::usage();
    log::info!(
        "memory: {} MiB RAM, {} KiB reserved (image {} KiB, DTB, reserved-memory, modules), {} free frames ({} MiB); heap {} bytes of {} KiB in use",
        stats.ram_bytes >> 20,
        stats.reserved_bytes >> 10,
        image.size >> 10,
        stats.free_frames,
        stats.free_frames >> 8,
        heap_used,
        heap_total >> 10,
    );
    Booted {
        machine,
        frames,
        dtb,
        domains,
    }
}

/// The domains described under `/chosen`, each checked against RAM, the hypervisor's
/// reservations and the other domains' modules; a domain whose layout is refused is reported
/// with the reason and left out, the others carry on.
fn guest_domains(
    blob: &'static [u8],
    machine: &Machine<'_>,
    reserved: &[Region],
) -> Vec<DomainConfig<'static>> {
    let Ok(fdt) = fdt::Fdt::new(blob) else {
        return Vec::new();
    };
    let all = match domain::parse_domains(&fdt) {
        Ok(d) => d,
        Err(DomainError::NoDomains | DomainError::NoChosen) => return Vec::new(),
        Err(e) => {
            log::error!("guest domains refused: {e}");
            return Vec::new();
        }
    };
    let gl = |r: &Region| domain::Region {
        base: r.base.raw(),
        size: r.size,
    };
    let ram: Vec<domain::Region> = machine.memory.iter().map(gl).collect();
    let reserved: Vec<domain::Region> = reserved.iter().map(gl).collect();
    let mut kept: Vec<DomainConfig<'static>> = Vec::new();
    for d in all {
        let mut with = kept.clone();
        with.push(d.clone());
        match domain::check_layout(&with, &ram, &reserved) {
            Ok(()) => kept.push(d),
            Err(e) => log::error!("domain {}: refused: {e}", d.name),
        }
    }
    kept
}

fn log_machine(m: &Machine<'_>, dtb: Region) {
    let image = ImageLayout::get().image();
    log::info!(
        "hyp: EL2 hypervisor at {}..{} (linked for {:#x}), DTB at {} ({} bytes)",
        image.start,
        image.end,
        super::head::link_base(),
        dtb.base,
        dtb.size
    );
    for r in &m.memory {
        log::info!("RAM {}..{} ({} MiB)", r.base, r.end(), r.size >> 20);
    }
    for r in &m.reserved {
        log::info!("reserved {}..{}", r.base, r.end());
    }
    log::info!("bootargs: \"{}\"", m.chosen.bootargs);
    if let Some(i) = m.chosen.initrd {
        log::info!("initrd {}..{}", i.base, i.end());
    }
    for r in &m.chosen.modules {
        log::info!("boot module {}..{}", r.base, r.end());
    }
    log::info!(
        "GICv3: distributor {}, {} redistributor region(s) from {}; PL011 at {}; timer PPIs (hyp {}, phys {}, virt {}); PSCI via {:?}",
        m.gic.distributor.base,
        m.gic.redistributors.len(),
        m.gic.redistributors[0].base,
        m.uart.base,
        m.timer.hyp_phys,
        m.timer.phys,
        m.timer.virt,
        m.psci,
    );
    log::debug!(
        "{} CPUs in the DTB: {:x?}",
        m.cpus.len(),
        m.cpus.iter().map(|c| c.mpidr).collect::<Vec<_>>()
    );
}

/// Reports a bring-up failure and ends the run (status 4).
fn boot_failed(args: core::fmt::Arguments<'_>) -> ! {
    console::print_raw(format_args!("hyp: boot failed: {args}"));
    fatal::stop_machine(ExitCode::BootFailed)
}
