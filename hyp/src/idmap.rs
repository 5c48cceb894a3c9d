//! The EL2 stage-1 identity map: descriptor encoding and a builder over a fixed pool of tables.
//! Portable: the builder only indexes the pool, the caller says where the pool is physically,
//! so the host tests walk exactly the tables the hypervisor hands to the MMU.
//!
//! Format: 4 KiB granule, 39-bit input addresses (TCR_EL2.T0SZ = 25), so the walk starts at
//! level 1 (1 GiB blocks), then level 2 (2 MiB blocks) and level 3 (4 KiB pages). The builder
//! uses the largest block that fits (descending into a table already there) and never splits
//! a block: mapping over an existing mapping is an error, so a map only grows by filling invalid entries, which needs no TLB maintenance.
//!
//! Invariants: every valid leaf has AF set; writable or device leaves are XN; a table
//! descriptor points inside the pool.
#![forbid(unsafe_code)]

use crate::mm::addr::{PAGE_SIZE, Pa};
use core::fmt;

pub const ENTRIES: usize = 512;
/// Input (= output, identity) address bits.
pub const VA_BITS: u32 = 39;
/// The first level of the walk for `VA_BITS`.
const ROOT_LEVEL: u32 = 1;

/// One translation table.
#[derive(Clone)]
#[repr(C, align(4096))]
pub struct Table(pub [u64; ENTRIES]);

impl Table {
    pub const EMPTY: Self = Self([0; ENTRIES]);
}

const _: () = assert!(core::mem::size_of::<Table>() == PAGE_SIZE as usize);

/// Memory type, an index into MAIR_EL2 (see `MAIR`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemType {
    /// Normal, inner/outer write-back, read/write-allocate, inner shareable.
    Normal,
    /// Device-nGnRE.
    Device,
}

/// What EL2 may do with a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    ReadExecute,
    ReadOnly,
    ReadWrite,
}

/// Attributes of a leaf.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attrs {
    pub mem: MemType,
    pub access: Access,
}

/// MAIR_EL2: attribute 0 = Normal WB RWA (0xff), attribute 1 = Device-nGnRE (0x04).
pub const MAIR: u64 = 0xff | (0x04 << 8);

const VALID: u64 = 1;
const TABLE_OR_PAGE: u64 = 1 << 1;
const ATTR_INDEX_SHIFT: u64 = 2;
/// AP[1] is RES1 in the EL2 regime; AP[2] set makes the mapping read-only.
const AP_RES1: u64 = 1 << 6;
const AP_READ_ONLY: u64 = 1 << 7;
const SH_INNER: u64 = 3 << 8;
const AF: u64 = 1 << 10;
const XN: u64 = 1 << 54;
const ADDR_MASK: u64 = 0x0000_ffff_ffff_f000;

impl Attrs {
    /// The lower and upper attribute bits of a leaf.
    pub const fn bits(self) -> u64 {
        let mem = match self.mem {
            MemType::Normal => SH_INNER,
            MemType::Device => (1 << ATTR_INDEX_SHIFT) | XN,
        };
        let access = match self.access {
            Access::ReadExecute => AP_READ_ONLY,
            Access::ReadOnly => AP_READ_ONLY | XN,
            Access::ReadWrite => XN,
        };
        mem | access | AP_RES1 | AF
    }

    /// Decodes the attribute bits of a leaf made by [`Attrs::bits`].
    pub const fn from_bits(d: u64) -> Self {
        let mem = if (d >> ATTR_INDEX_SHIFT) & 7 == 1 {
            MemType::Device
        } else {
            MemType::Normal
        };
        let access = match (d & AP_READ_ONLY != 0, d & XN != 0) {
            (true, false) => Access::ReadExecute,
            (true, true) => Access::ReadOnly,
            (false, _) => Access::ReadWrite,
        };
        Self { mem, access }
    }
}

/// Why a range could not be mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// Start or end is not page aligned, or end is not above start.
    BadRange { start: Pa, end: Pa },
    /// The range ends beyond the `VA_BITS` input range.
    OutOfRange { end: Pa },
    /// Part of the range is mapped already.
    AlreadyMapped { at: Pa },
    /// The table pool is used up.
    OutOfTables { at: Pa },
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadRange { start, end } => {
                write!(
                    f,
                    "cannot map {start}..{end}: not a page-aligned, non-empty range"
                )
            }
            Self::OutOfRange { end } => write!(
                f,
                "cannot map up to {end}: the EL2 map covers only {VA_BITS}-bit addresses"
            ),
            Self::AlreadyMapped { at } => write!(f, "cannot map {at}: it is mapped already"),
            Self::OutOfTables { at } => {
                write!(f, "cannot map {at}: the EL2 page-table pool is used up")
            }
        }
    }
}

/// An identity map under construction (or live: it only ever fills invalid entries).
pub struct IdMap<'t> {
    tables: &'t mut [Table],
    /// Physical address of `tables[0]`, the root.
    base: Pa,
    used: usize,
}

const fn level_shift(level: u32) -> u32 {
    12 + 9 * (3 - level)
}

impl<'t> IdMap<'t> {
    /// A map with an empty root in `tables[0]`; `base` is the physical address of the pool.
    pub fn new(tables: &'t mut [Table], base: Pa) -> Self {
        assert!(
            !tables.is_empty() && base.is_aligned(PAGE_SIZE),
            "table pool"
        );
        tables[0] = Table::EMPTY;
        Self {
            tables,
            base,
            used: 1,
        }
    }

    /// For TTBR0_EL2.
    pub fn root(&self) -> Pa {
        self.base
    }

    pub fn tables_used(&self) -> usize {
        self.used
    }

    /// Maps `[start, end)` to itself with `attrs`.
    ///
    /// # Errors
    /// `BadRange`, `OutOfRange`, `AlreadyMapped` or `OutOfTables`; on `AlreadyMapped` and
    /// `OutOfTables` the part of the range before `at` stays mapped.
    pub fn map(&mut self, start: Pa, end: Pa, attrs: Attrs) -> Result<(), MapError> {
        if !start.is_aligned(PAGE_SIZE) || !end.is_aligned(PAGE_SIZE) || end <= start {
            return Err(MapError::BadRange { start, end });
        }
        if end.raw() > 1 << VA_BITS {
            return Err(MapError::OutOfRange { end });
        }
        self.map_level(0, ROOT_LEVEL, start.raw(), end.raw(), attrs.bits())
    }

    fn map_level(
        &mut self,
        table: usize,
        level: u32,
        start: u64,
        end: u64,
        attrs: u64,
    ) -> Result<(), MapError> {
        let shift = level_shift(level);
        let size = 1u64 << shift;
        let mut va = start;
        while va < end {
            let index = ((va >> shift) as usize) % ENTRIES;
            let next = end.min((va & !(size - 1)) + size);
            let entry = self.tables[table].0[index];
            let is_table = level < 3 && entry & (VALID | TABLE_OR_PAGE) == VALID | TABLE_OR_PAGE;
            if va.is_multiple_of(size) && next - va == size && !is_table {
                if entry & VALID != 0 {
                    return Err(MapError::AlreadyMapped { at: Pa::new(va) });
                }
                let kind = if level == 3 { TABLE_OR_PAGE } else { 0 };
                self.tables[table].0[index] = va | attrs | kind | VALID;
            } else {
                let child = match (entry & VALID != 0, entry & TABLE_OR_PAGE != 0) {
                    (false, _) => {
                        let child = self.alloc_table(va)?;
                        let pa = self.base.raw() + (child as u64) * PAGE_SIZE;
                        self.tables[table].0[index] = pa | TABLE_OR_PAGE | VALID;
                        child
                    }
                    (true, true) => self.table_index(entry),
                    (true, false) => return Err(MapError::AlreadyMapped { at: Pa::new(va) }),
                };
                self.map_level(child, level + 1, va, next, attrs)?;
            }
            va = next;
        }
        Ok(())
    }

    fn alloc_table(&mut self, at: u64) -> Result<usize, MapError> {
        if self.used == self.tables.len() {
            return Err(MapError::OutOfTables { at: Pa::new(at) });
        }
        self.tables[self.used] = Table::EMPTY;
        self.used += 1;
        Ok(self.used - 1)
    }

    fn table_index(&self, descriptor: u64) -> usize {
        let index = ((descriptor & ADDR_MASK) - self.base.raw()) / PAGE_SIZE;
        debug_assert!(
            (index as usize) < self.used,
            "table descriptor outside the pool"
        );
        index as usize
    }

    /// Walks the map: the output address, attributes and level of the leaf mapping `va`.
    pub fn translate(&self, va: u64) -> Option<(Pa, Attrs, u32)> {
        if va >= 1 << VA_BITS {
            return None;
        }
        let mut table = 0;
        for level in ROOT_LEVEL..=3 {
            let shift = level_shift(level);
            let entry = self.tables[table].0[((va >> shift) as usize) % ENTRIES];
            if entry & VALID == 0 {
                return None;
            }
            if level == 3 || entry & TABLE_OR_PAGE == 0 {
                let offset = va & ((1 << shift) - 1);
                return Some((
                    Pa::new((entry & ADDR_MASK) + offset),
                    Attrs::from_bits(entry),
                    level,
                ));
            }
            table = self.table_index(entry);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

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
    const DEV: Attrs = Attrs {
        mem: MemType::Device,
        access: Access::ReadWrite,
    };
    const BASE: Pa = Pa::new(0x4030_0000);

    fn pa(x: u64) -> Pa {
        Pa::new(x)
    }

    #[test]
    fn hypervisor_like_layout_translates_with_the_right_attributes() {
        let mut pool = vec![Table::EMPTY; 16];
        let mut m = IdMap::new(&mut pool, BASE);
        m.map(pa(0x4020_0000), pa(0x4020_3000), RX).unwrap();
        m.map(pa(0x4020_3000), pa(0x4020_5000), RO).unwrap();
        // Data with a guard page at 0x4020_6000.
        m.map(pa(0x4020_5000), pa(0x4020_6000), RW).unwrap();
        m.map(pa(0x4020_7000), pa(0x4040_0000), RW).unwrap();
        // RAM around the image, 1 GiB of it.
        m.map(pa(0x4000_0000), pa(0x4020_0000), RW).unwrap();
        m.map(pa(0x4040_0000), pa(0x8000_0000), RW).unwrap();
        m.map(pa(0x0900_0000), pa(0x0900_1000), DEV).unwrap();

        assert_eq!(m.translate(0x4020_0010), Some((pa(0x4020_0010), RX, 3)));
        assert_eq!(m.translate(0x4020_4ff8), Some((pa(0x4020_4ff8), RO, 3)));
        assert_eq!(m.translate(0x4020_5000), Some((pa(0x4020_5000), RW, 3)));
        assert_eq!(m.translate(0x4020_6abc), None, "guard page");
        assert_eq!(m.translate(0x4020_7000), Some((pa(0x4020_7000), RW, 3)));
        assert_eq!(
            m.translate(0x4000_1234),
            Some((pa(0x4000_1234), RW, 2)),
            "2 MiB block"
        );
        assert_eq!(m.translate(0x7fff_fff8), Some((pa(0x7fff_fff8), RW, 2)));
        assert_eq!(m.translate(0x0900_0018), Some((pa(0x0900_0018), DEV, 3)));
        assert_eq!(m.translate(0x0900_1000), None);
        assert_eq!(m.translate(0x8000_0000), None);
        assert_eq!(m.translate(1 << 40), None);
        // root + L2 for 1-2 GiB + one L3 for the image's 2 MiB + L2 and L3 for the UART.
        assert_eq!(m.tables_used(), 5);
    }

    #[test]
    fn aligned_gigabytes_use_level_1_blocks() {
        let mut pool = vec![Table::EMPTY; 4];
        let mut m = IdMap::new(&mut pool, BASE);
        m.map(pa(0x4000_0000), pa(0x1_4000_0000), RW).unwrap();
        assert_eq!(m.tables_used(), 1);
        assert_eq!(m.translate(0x1_0000_0000), Some((pa(0x1_0000_0000), RW, 1)));
    }

    #[test]
    fn descriptors_follow_the_el2_format() {
        // Writable and device memory never executable; code read-only; AF and AP[1] always.
        assert_eq!(RW.bits(), XN | SH_INNER | AP_RES1 | AF);
        assert_eq!(RX.bits(), AP_READ_ONLY | SH_INNER | AP_RES1 | AF);
        assert_eq!(DEV.bits() & (7 << 2), 1 << 2);
        assert_ne!(DEV.bits() & XN, 0);
        for a in [RX, RO, RW, DEV] {
            assert_eq!(Attrs::from_bits(a.bits()), a);
        }
        let mut pool = vec![Table::EMPTY; 4];
        IdMap::new(&mut pool, BASE)
            .map(pa(0x4000_0000), pa(0x4000_1000), RX)
            .unwrap();
        let l1 = pool[0].0[1];
        assert_eq!(l1, (BASE.raw() + PAGE_SIZE) | 3, "level-1 table descriptor");
        assert_eq!(
            pool[2].0[0],
            0x4000_0000 | RX.bits() | 3,
            "level-3 page descriptor"
        );
    }

    #[test]
    fn overlaps_and_bad_ranges_are_errors() {
        let mut pool = vec![Table::EMPTY; 8];
        let mut m = IdMap::new(&mut pool, BASE);
        m.map(pa(0x4000_0000), pa(0x4040_0000), RW).unwrap();
        assert_eq!(
            m.map(pa(0x4020_0000), pa(0x4020_1000), RX),
            Err(MapError::AlreadyMapped {
                at: pa(0x4020_0000)
            })
        );
        m.map(pa(0x4040_1000), pa(0x4040_2000), RW).unwrap();
        assert_eq!(
            m.map(pa(0x4040_0000), pa(0x4060_0000), RW),
            Err(MapError::AlreadyMapped {
                at: pa(0x4040_1000)
            })
        );
        assert_eq!(
            m.map(pa(0x1001), pa(0x2000), RW),
            Err(MapError::BadRange {
                start: pa(0x1001),
                end: pa(0x2000)
            })
        );
        assert_eq!(
            m.map(pa(0x2000), pa(0x2000), RW),
            Err(MapError::BadRange {
                start: pa(0x2000),
                end: pa(0x2000)
            })
        );
        let end = pa((1 << VA_BITS) + 0x1000);
        assert_eq!(
            m.map(pa(0x1000), end, RW),
            Err(MapError::OutOfRange { end })
        );
        assert!(MapError::OutOfRange { end }.to_string().contains("39-bit"));
    }

    #[test]
    fn running_out_of_tables_is_an_error() {
        let mut pool = vec![Table::EMPTY; 2];
        let mut m = IdMap::new(&mut pool, BASE);
        m.map(pa(0x4000_0000), pa(0x4020_0000), RW).unwrap(); // L2 block: 1 table
        assert_eq!(
            m.map(pa(0x4020_0000), pa(0x4020_1000), RW),
            Err(MapError::OutOfTables {
                at: pa(0x4020_0000)
            })
        );
    }
}
