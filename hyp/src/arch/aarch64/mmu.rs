//! The EL2 stage-1 MMU: building the identity map in a .bss table pool and turning it on.
//!
//! The boot CPU builds the map with its MMU off (`enable_boot`), publishes the register values in
//! `head::MMU_CONFIG` for the secondaries and turns the MMU on. Later additions (device frames
//! found in the full DTB parse) only fill invalid entries (`map_device`), which needs a barrier
//! but no TLB invalidation.

use super::head::{MMU_CONFIG, MmuConfig, SCTLR_EL2_MMU_OFF, enable_mmu};
use super::layout::{ImageLayout, MAX_CPUS, Span};
use super::sysreg::{self, read_sysreg};
use crate::idmap::{Access, Attrs, IdMap, MAIR, MapError, MemType, Table, VA_BITS};
use crate::mm::addr::{PAGE_SIZE, Pa};
use crate::platform::Region;
use crate::sync::Mutex;

const POOL_TABLES: usize = 64;

static mut POOL: [Table; POOL_TABLES] = [const { Table::EMPTY }; POOL_TABLES];

/// The live map, once the MMU is on.
static LIVE: Mutex<Option<IdMap<'static>>> = Mutex::new(None);

const RX: Attrs = Attrs {
    mem: MemType::Normal,
    access: Access::ReadExecute,
};
const RO: Attrs = Attrs {
    mem: MemType::Normal,
    access: Access::ReadOnly,
};
const RW: Attrs = Attrs {
    mem: MemType::Normal,
    access: Access::ReadWrite,
};
const DEVICE: Attrs = Attrs {
    mem: MemType::Device,
    access: Access::ReadWrite,
};

/// SCTLR_EL2 with the MMU on: M, C (data cache), SA (stack alignment check), WXN (writable
/// never executable), plus I and the RES1 bits.
const SCTLR_EL2_MMU_ON: u64 = SCTLR_EL2_MMU_OFF | 1 | (1 << 2) | (1 << 3) | (1 << 19);

fn tcr() -> u64 {
    // PS: the CPU's physical address size, capped at 48 bits (no 52-bit output here).
    let parange = (read_sysreg!("id_aa64mmfr0_el1") & 0xf).min(5);
    let t0sz = u64::from(64 - VA_BITS);
    // T0SZ | IRGN0 = WBWA | ORGN0 = WBWA | SH0 = inner | TG0 = 4K | PS | RES1 (bits 23, 31).
    t0sz | (1 << 8) | (1 << 10) | (3 << 12) | (parange << 16) | (1 << 23) | (1 << 31)
}

fn map_span(map: &mut IdMap<'_>, span: Span, attrs: Attrs) -> Result<(), MapError> {
    if span.end > span.start {
        map.map(span.start, span.end, attrs)
    } else {
        Ok(())
    }
}

/// Maps `r` minus `hole` (the image) as normal RW memory, rounded inward to pages.
fn map_ram(map: &mut IdMap<'_>, r: Region, hole: Span) -> Result<(), MapError> {
    let start = r.base.raw().next_multiple_of(PAGE_SIZE);
    let end = r.end().align_down(PAGE_SIZE).raw();
    let pieces = [
        (start, end.min(hole.start.raw())),
        (start.max(hole.end.raw()), end),
    ];
    for (s, e) in pieces {
        if s < e {
            map.map(Pa::new(s), Pa::new(e), RW)?;
        }
    }
    Ok(())
}

/// Maps the image (text RX, rodata R, data RW without the stack guard pages), `ram` and the
/// console page, then turns the MMU and caches on.
///
/// # Errors
/// A mapping error (overlap, out of range, pool exhausted); the MMU stays off then.
pub fn enable_boot(ram: &[Region], uart: Pa) -> Result<usize, MapError> {
    let layout = ImageLayout::get();
    // SAFETY: the pool is used only through this map, built once on the boot CPU before any
    // other CPU runs; afterwards only LIVE (a lock) reaches it.
    let pool: &'static mut [Table] =
        unsafe { core::slice::from_raw_parts_mut((&raw mut POOL).cast::<Table>(), POOL_TABLES) };
    let base = Pa::new(pool.as_ptr() as u64);
    let mut map = IdMap::new(pool, base);

    map_span(&mut map, layout.text, RX)?;
    map_span(&mut map, layout.rodata, RO)?;
    let mut guards: [Pa; 2 * MAX_CPUS] = [Pa::new(0); 2 * MAX_CPUS];
    for cpu in 0..MAX_CPUS {
        guards[2 * cpu..2 * cpu + 2].copy_from_slice(&layout.guard_pages(cpu));
    }
    let mut start = layout.data.start;
    for g in guards {
        map_span(&mut map, Span { start, end: g }, RW)?;
        start = Pa::new(g.raw() + PAGE_SIZE);
    }
    map_span(
        &mut map,
        Span {
            start,
            end: layout.data.end,
        },
        RW,
    )?;
    for r in ram {
        map_ram(&mut map, *r, layout.image())?;
    }
    let page = uart.align_down(PAGE_SIZE);
    map.map(page, Pa::new(page.raw() + PAGE_SIZE), DEVICE)?;

    let config = MmuConfig {
        mair: MAIR,
        tcr: tcr(),
        ttbr0: map.root().raw(),
        sctlr: SCTLR_EL2_MMU_ON,
    };
    let image = layout.image();
    // SAFETY: the MMU and data cache are off, so every write so far (relocations, .bss, the
    // tables, MMU_CONFIG below) went to memory; invalidating drops only stale lines the loader
    // may have left. Then the map covers this code, its stack, the UART and all of RAM, with
    // the attributes MAIR describes.
    unsafe {
        (&raw mut MMU_CONFIG).write(config);
        sysreg::invalidate_dcache_range(image.start.raw(), image.end.raw() - image.start.raw());
        enable_mmu(config.mair, config.tcr, config.ttbr0, config.sctlr);
    }
    let used = map.tables_used();
    *LIVE.lock() = Some(map);
    Ok(used)
}

/// Adds a device region (e.g. GIC frames) to the live map, rounded out to pages.
///
/// # Errors
/// A mapping error; what was mapped before it stays mapped.
pub fn map_device(r: Region) -> Result<(), MapError> {
    let start = r.base.align_down(PAGE_SIZE);
    let end = Pa::new(r.end().raw().next_multiple_of(PAGE_SIZE));
    let mut live = LIVE.lock();
    let map = live.as_mut().expect("map_device before the MMU is on");
    let result = map.map(start, end, DEVICE);
    // New valid entries must be visible to the table walker before anything uses them.
    sysreg::dsb_ish();
    sysreg::isb();
    result
}

/// Whether `va` is mapped, and how (for the fault test and diagnostics).
pub fn translate(va: u64) -> Option<(Pa, Attrs, u32)> {
    LIVE.lock().as_ref().and_then(|m| m.translate(va))
}
