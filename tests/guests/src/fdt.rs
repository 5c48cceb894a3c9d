//! Just enough of a flattened device tree reader to find the first RAM range (`/memory@...`
//! `reg`), so tests that walk RAM use the VM's real size instead of assuming one.
//!
//! The tree comes from the loader (QEMU or the hypervisor), but it is still checked as input:
//! every offset is bounds-checked and a malformed tree yields an error, never a panic.

use core::ops::Range;

const MAGIC: u32 = 0xd00d_feed;
const BEGIN_NODE: u32 = 1;
const END_NODE: u32 = 2;
const PROP: u32 = 3;
const NOP: u32 = 4;
const END: u32 = 9;
/// Refuse to believe in a DTB larger than this.
const MAX_SIZE: usize = 2 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// x0 was 0 or not 8-byte aligned.
    NoTree,
    BadMagic(u32),
    BadSize(u32),
    /// A structure offset ran past the end of the blob.
    Truncated,
    UnknownToken(u32),
    NoMemoryNode,
    /// `reg` shorter than one (address, size) pair for the root's cell counts.
    BadReg,
}

/// A DTB in memory.
pub struct Fdt<'a> {
    blob: &'a [u8],
}

fn be32(b: &[u8], at: usize) -> Result<u32, Error> {
    let bytes = b.get(at..at + 4).ok_or(Error::Truncated)?;
    Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

fn cells(b: &[u8], n: u32) -> Result<u64, Error> {
    (0..n as usize).try_fold(0u64, |acc, i| Ok((acc << 32) | u64::from(be32(b, i * 4)?)))
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

impl Fdt<'static> {
    /// The tree the loader passed in x0.
    ///
    /// # Errors
    /// `NoTree`, `BadMagic` or `BadSize` if there is no plausible DTB at `addr`.
    pub fn at(addr: u64) -> Result<Self, Error> {
        if addr == 0 || addr % 8 != 0 {
            return Err(Error::NoTree);
        }
        // SAFETY: booting.rst requires x0 to hold a DTB's address; the header's 8 bytes are read
        // before trusting anything else, and `mmu.rs` maps every address (the RAM block as
        // Normal memory, where loaders put the DTB).
        let head = unsafe { core::slice::from_raw_parts(addr as *const u8, 8) };
        let magic = be32(head, 0)?;
        if magic != MAGIC {
            return Err(Error::BadMagic(magic));
        }
        let size = be32(head, 4)?;
        if !(40..=MAX_SIZE as u32).contains(&size) {
            return Err(Error::BadSize(size));
        }
        // SAFETY: as above; `size` is the blob's own total size, bounded by MAX_SIZE, and nothing
        // writes to the DTB while the test runs.
        let blob = unsafe { core::slice::from_raw_parts(addr as *const u8, size as usize) };
        Ok(Self { blob })
    }
}

impl Fdt<'_> {
    pub fn size(&self) -> usize {
        self.blob.len()
    }

    /// The first (base, size) of the first node at depth 1 named `memory` or `memory@...`.
    ///
    /// # Errors
    /// Any malformation met on the way, or `NoMemoryNode`.
    pub fn memory(&self) -> Result<Range<u64>, Error> {
        let b = self.blob;
        let structs = be32(b, 8)? as usize;
        let strings = be32(b, 12)? as usize;
        let (mut addr_cells, mut size_cells) = (2, 1);
        let mut depth = 0usize;
        let mut in_memory = false;
        let mut at = structs;
        loop {
            let token = be32(b, at)?;
            at += 4;
            match token {
                BEGIN_NODE => {
                    let rest = b.get(at..).ok_or(Error::Truncated)?;
                    let len = rest.iter().position(|&c| c == 0).ok_or(Error::Truncated)?;
                    let name = &rest[..len];
                    depth += 1;
                    in_memory = depth == 2 && (name == b"memory" || name.starts_with(b"memory@"));
                    at += align4(len + 1);
                }
                END_NODE => {
                    depth = depth.checked_sub(1).ok_or(Error::Truncated)?;
                    in_memory = false;
                }
                PROP => {
                    let len = be32(b, at)? as usize;
                    let name_off = be32(b, at + 4)? as usize;
                    let value = b.get(at + 8..at + 8 + len).ok_or(Error::Truncated)?;
                    let names = b.get(strings + name_off..).ok_or(Error::Truncated)?;
                    let name_len = names.iter().position(|&c| c == 0).ok_or(Error::Truncated)?;
                    let name = &names[..name_len];
                    if depth == 1 && name == b"#address-cells" {
                        addr_cells = be32(value, 0)?;
                    } else if depth == 1 && name == b"#size-cells" {
                        size_cells = be32(value, 0)?;
                    } else if in_memory && name == b"reg" {
                        if !(1..=2).contains(&addr_cells) || !(1..=2).contains(&size_cells) {
                            return Err(Error::BadReg);
                        }
                        let base = cells(value, addr_cells).map_err(|_| Error::BadReg)?;
                        let size_at = value.get(addr_cells as usize * 4..).ok_or(Error::BadReg)?;
                        let size = cells(size_at, size_cells).map_err(|_| Error::BadReg)?;
                        let end = base.checked_add(size).ok_or(Error::BadReg)?;
                        return Ok(base..end);
                    }
                    at += 8 + align4(len);
                }
                NOP => {}
                END => return Err(Error::NoMemoryNode),
                other => return Err(Error::UnknownToken(other)),
            }
        }
    }
}
