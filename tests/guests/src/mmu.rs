//! A fixed identity map for EL1 stage 1, so that RAM is Normal cacheable memory.
//!
//! With the MMU off every data access is to Device memory, where exclusives (the console lock)
//! are not guaranteed to work. One level-1 table of 1 GiB blocks covers the 39-bit space: the
//! block holding RAM (0x4000_0000..0x8000_0000) is Normal write-back, every other block is
//! Device-nGnRnE and execute-never. Addresses with nothing behind them stay mapped, so an access
//! there reaches the bus (or the hypervisor) and comes back as an external abort, not a
//! translation fault of our own making.

/// MAIR_EL1: attribute 0 = Device-nGnRnE, attribute 1 = Normal, inner/outer write-back.
pub const MAIR: u64 = 0xff << 8;
/// TCR_EL1: T0SZ = 25 (39-bit VA, walks start at level 1), 4K granule, table walks inner
/// shareable write-back, TTBR1 walks disabled (EPD1), 40-bit output (IPS = 0b010).
pub const TCR: u64 = 25 | (1 << 8) | (1 << 10) | (3 << 12) | (1 << 23) | (2 << 32);
/// SCTLR_EL1: RES1 bits of the Armv8.0 layout plus M (MMU), C (data cache), SA (stack
/// alignment check) and I (instruction cache). Little-endian, no alignment checking.
pub const SCTLR: u64 = 0x30d0_0800 | (1 << 0) | (1 << 2) | (1 << 3) | (1 << 12);

/// The RAM block of the map: QEMU virt and the hypervisor both put guest RAM at 0x4000_0000.
const RAM_BLOCK: usize = 1;
const ENTRIES: usize = 512;
const BLOCK_SHIFT: u32 = 30;

const VALID_BLOCK: u64 = 0b01;
const ATTR_DEVICE: u64 = 0 << 2;
const ATTR_NORMAL: u64 = 1 << 2;
const INNER_SHAREABLE: u64 = 3 << 8;
const AF: u64 = 1 << 10;
const PXN: u64 = 1 << 53;
const UXN: u64 = 1 << 54;

#[repr(C, align(4096))]
pub struct Table([u64; ENTRIES]);

impl Table {
    const fn identity() -> Self {
        let mut entries = [0; ENTRIES];
        let mut i = 0;
        while i < ENTRIES {
            let attrs = if i == RAM_BLOCK {
                ATTR_NORMAL | INNER_SHAREABLE
            } else {
                ATTR_DEVICE | PXN | UXN
            };
            entries[i] = ((i as u64) << BLOCK_SHIFT) | attrs | AF | VALID_BLOCK;
            i += 1;
        }
        Self(entries)
    }
}

/// Read by the table walker only (from `start.rs`'s `mmu_on`), never written.
#[unsafe(no_mangle)]
pub static IDMAP: Table = Table::identity();
