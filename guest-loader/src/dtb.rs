//! Opening a flattened device tree safely.
//!
//! The `fdt` crate (0.1) trusts its input: a truncated property, a name without its NUL, a
//! property after a subnode, a one-byte `#address-cells` or a tree deeper than its 64-entry
//! parent stack makes it panic, and at EL2 a panic stops every guest. It also mishandles
//! FDT_NOP tokens between properties and children and resolves a property name starting with
//! '/' as an alias of itself without end; both are refused here (stricter than the spec, and
//! no DTB written by dtc, QEMU or U-Boot's `fdt` commands contains either). [`open`] therefore walks the whole blob once, checking every assumption that
//! crate makes, and only then hands it over. After `open` succeeds, callers may use
//! `Fdt::find_node`, `Fdt::all_nodes`, and on nodes `name`, `properties`, `property`, `children`,
//! `reg`, `cell_sizes`, and on properties `value`, `as_usize`, `as_str`. Avoid the crate's
//! "standard node" helpers (`Fdt::chosen`, `cpus`, `memory`, `root`, `Compatible::first`): they
//! panic when a node or property is merely absent.

use core::fmt;

pub use fdt::Fdt;

const MAGIC: u32 = 0xd00d_feed;
const HEADER_LEN: usize = 40;
const BEGIN_NODE: u32 = 1;
const END_NODE: u32 = 2;
const PROP: u32 = 3;
const NOP: u32 = 4;
const END: u32 = 9;
/// Deeper trees are refused: `fdt` keeps the parents of the current node in a 64-entry array
/// indexed from 1 (no real machine nests anywhere near this far).
pub const MAX_DEPTH: usize = 60;

/// Why a device tree blob was refused. Offsets are from the start of the blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtbError {
    /// Shorter than the 40-byte header, or than the header's `totalsize`.
    Truncated {
        len: usize,
        needed: usize,
    },
    BadMagic {
        found: u32,
    },
    /// Only version 17 blobs (with 16 compatibility) are understood.
    UnsupportedVersion {
        version: u32,
        last_compatible: u32,
    },
    /// A block named by the header lies outside the blob or is misaligned.
    BadBlock {
        block: &'static str,
    },
    /// The memory reservation map runs off its end without its terminating entry.
    UnterminatedReservations,
    /// A memory reservation's address plus size wraps past 2^64.
    BadReservation {
        base: u64,
        size: u64,
    },
    /// The structure block is malformed at `offset`; `what` says how.
    BadStructure {
        offset: usize,
        what: &'static str,
    },
    /// A property name offset points outside the strings block or at a string without a NUL.
    BadPropertyName {
        offset: usize,
    },
    /// `#address-cells`, `#size-cells` or `#interrupt-cells` is not a single cell of at most 4.
    BadCellCount {
        offset: usize,
    },
}

impl fmt::Display for DtbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Truncated { len, needed } => {
                write!(
                    f,
                    "device tree is truncated: {len} bytes, header needs {needed}"
                )
            }
            Self::BadMagic { found } => {
                write!(
                    f,
                    "not a device tree: magic {found:#010x}, expected {MAGIC:#010x}"
                )
            }
            Self::UnsupportedVersion {
                version,
                last_compatible,
            } => write!(
                f,
                "device tree version {version} (compatible with {last_compatible}) is not \
                 supported; version 17 is required"
            ),
            Self::BadBlock { block } => {
                write!(
                    f,
                    "device tree {block} block lies outside the blob or is misaligned"
                )
            }
            Self::BadReservation { base, size } => write!(
                f,
                "device tree memory reservation {base:#x}+{size:#x} wraps past the end of memory"
            ),
            Self::UnterminatedReservations => {
                write!(
                    f,
                    "device tree memory reservation map has no terminating entry"
                )
            }
            Self::BadStructure { offset, what } => {
                write!(
                    f,
                    "device tree structure is malformed at offset {offset:#x}: {what}"
                )
            }
            Self::BadPropertyName { offset } => write!(
                f,
                "device tree property at offset {offset:#x} names a string outside the strings block"
            ),
            Self::BadCellCount { offset } => write!(
                f,
                "device tree #address-cells/#size-cells/#interrupt-cells at offset {offset:#x} is not one cell of at most 4"
            ),
        }
    }
}

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// A NUL-terminated UTF-8 string starting at `at`; returns its length without the NUL.
fn c_str(bytes: &[u8], at: usize) -> Option<usize> {
    let rest = bytes.get(at..)?;
    let len = rest.iter().position(|&b| b == 0)?;
    core::str::from_utf8(&rest[..len]).ok()?;
    Some(len)
}

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Checks `blob` completely, then opens it with the `fdt` crate.
///
/// # Errors
/// Any [`DtbError`]: the first problem found, with its offset where it has one.
pub fn open(blob: &[u8]) -> Result<Fdt<'_>, DtbError> {
    let blob = validate(blob)?;
    // The walk above checked every invariant `Fdt::new` and its node iterators rely on.
    Fdt::new(blob).map_err(|_| DtbError::BadMagic {
        found: be32(blob, 0).unwrap_or(0),
    })
}

/// Checks `blob` and returns the part of it the header covers (`totalsize` bytes).
///
/// # Errors
/// See [`open`].
pub fn validate(blob: &[u8]) -> Result<&[u8], DtbError> {
    if blob.len() < HEADER_LEN {
        return Err(DtbError::Truncated {
            len: blob.len(),
            needed: HEADER_LEN,
        });
    }
    let field = |i: usize| be32(blob, i * 4).unwrap_or(0) as usize;
    let magic = field(0) as u32;
    if magic != MAGIC {
        return Err(DtbError::BadMagic { found: magic });
    }
    let total = field(1);
    if total > blob.len() || total < HEADER_LEN {
        return Err(DtbError::Truncated {
            len: blob.len(),
            needed: total.max(HEADER_LEN),
        });
    }
    let blob = &blob[..total];
    let (off_struct, off_strings, off_rsv) = (field(2), field(3), field(4));
    let (version, last_comp) = (field(5) as u32, field(6) as u32);
    if version < 17 || last_comp > 17 {
        return Err(DtbError::UnsupportedVersion {
            version,
            last_compatible: last_comp,
        });
    }
    let (size_strings, size_struct) = (field(8), field(9));
    let within = |off: usize, size: usize| off.checked_add(size).is_some_and(|end| end <= total);
    if !within(off_struct, size_struct) || off_struct % 4 != 0 || size_struct % 4 != 0 {
        return Err(DtbError::BadBlock { block: "structure" });
    }
    if !within(off_strings, size_strings) {
        return Err(DtbError::BadBlock { block: "strings" });
    }
    if off_rsv % 8 != 0 || off_rsv >= total {
        return Err(DtbError::BadBlock {
            block: "memory reservation",
        });
    }
    check_reservations(&blob[off_rsv..])?;
    let structure = &blob[off_struct..off_struct + size_struct];
    let strings = &blob[off_strings..off_strings + size_strings];
    check_structure(structure, strings, off_struct)?;
    Ok(blob)
}

fn check_reservations(map: &[u8]) -> Result<(), DtbError> {
    for entry in map.as_chunks::<16>().0 {
        let (base, size) = entry.split_at(8);
        let word = |b: &[u8]| u64::from_be_bytes(b.try_into().unwrap_or([0; 8]));
        let (base, size) = (word(base), word(size));
        if base == 0 && size == 0 {
            return Ok(());
        }
        if base.checked_add(size).is_none() {
            return Err(DtbError::BadReservation { base, size });
        }
    }
    Err(DtbError::UnterminatedReservations)
}

fn check_structure(s: &[u8], strings: &[u8], base: usize) -> Result<(), DtbError> {
    let bad = |at: usize, what| DtbError::BadStructure {
        offset: base + at,
        what,
    };
    let mut at = 0;
    let mut depth = 0usize;
    // Per open node: whether a subnode has been seen (properties must come first).
    let mut seen_child = [false; MAX_DEPTH + 1];
    let mut root_done = false;
    loop {
        let token = be32(s, at).ok_or_else(|| bad(at, "ends without an END token"))?;
        let token_at = at;
        at += 4;
        match token {
            NOP => return Err(bad(token_at, "FDT_NOP tokens are not supported")),
            BEGIN_NODE => {
                if root_done {
                    return Err(bad(token_at, "a second root node"));
                }
                if depth > 0 {
                    seen_child[depth] = true;
                }
                if depth == MAX_DEPTH {
                    return Err(bad(token_at, "nodes nested too deeply"));
                }
                let len =
                    c_str(s, at).ok_or_else(|| bad(at, "node name without NUL or not UTF-8"))?;
                if (depth == 0) != (len == 0) {
                    return Err(bad(token_at, "only the root node may have an empty name"));
                }
                at = align4(at + len + 1);
                depth += 1;
                seen_child[depth] = false;
            }
            END_NODE => {
                if depth == 0 {
                    return Err(bad(token_at, "END_NODE without a node"));
                }
                depth -= 1;
                root_done = depth == 0;
            }
            PROP => {
                if depth == 0 {
                    return Err(bad(token_at, "property outside any node"));
                }
                if seen_child[depth] {
                    return Err(bad(token_at, "property after a subnode"));
                }
                let len = be32(s, at).ok_or_else(|| bad(at, "truncated property header"))? as usize;
                let name_off =
                    be32(s, at + 4).ok_or_else(|| bad(at, "truncated property header"))? as usize;
                at += 8;
                let value_end = at.checked_add(len).filter(|&e| e <= s.len());
                let value_end =
                    value_end.ok_or_else(|| bad(at, "property value runs past the block"))?;
                let name_len = c_str(strings, name_off).ok_or(DtbError::BadPropertyName {
                    offset: base + token_at,
                })?;
                let name = &strings[name_off..name_off + name_len];
                if name.first() == Some(&b'/') {
                    return Err(bad(token_at, "property name starts with '/'"));
                }
                if name == b"#address-cells"
                    || name == b"#size-cells"
                    || name == b"#interrupt-cells"
                {
                    let cells = if len == 4 { be32(s, at) } else { None };
                    if cells.is_none_or(|c| c > 4) {
                        return Err(DtbError::BadCellCount {
                            offset: base + token_at,
                        });
                    }
                }
                at = align4(value_end);
            }
            END => {
                if depth != 0 || !root_done {
                    return Err(bad(token_at, "END inside a node or before the root node"));
                }
                return Ok(());
            }
            _ => return Err(bad(token_at, "unknown token")),
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    /// A small but complete tree, written with an independent FDT writer.
    fn sample() -> Vec<u8> {
        let mut w = vm_fdt::FdtWriter::new().unwrap();
        let root = w.begin_node("").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
        let mem = w.begin_node("memory@40000000").unwrap();
        w.property_string("device_type", "memory").unwrap();
        w.property_array_u64("reg", &[0x4000_0000, 0x2000_0000])
            .unwrap();
        w.end_node(mem).unwrap();
        let chosen = w.begin_node("chosen").unwrap();
        w.property_string("bootargs", "console=ttyAMA0").unwrap();
        w.end_node(chosen).unwrap();
        w.end_node(root).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn a_well_formed_tree_opens_and_reads() {
        let blob = sample();
        let fdt = open(&blob).unwrap();
        let mem = fdt.find_node("/memory@40000000").unwrap();
        let r = mem.reg().unwrap().next().unwrap();
        assert_eq!(r.starting_address as usize, 0x4000_0000);
        assert_eq!(r.size, Some(0x2000_0000));
        let args = fdt
            .find_node("/chosen")
            .unwrap()
            .property("bootargs")
            .unwrap();
        assert_eq!(args.as_str(), Some("console=ttyAMA0"));
    }

    #[test]
    fn damaged_headers_are_named() {
        let blob = sample();
        assert_eq!(
            validate(&blob[..20]),
            Err(DtbError::Truncated {
                len: 20,
                needed: 40
            })
        );
        let mut b = blob.clone();
        b[0] = 0;
        assert!(matches!(validate(&b), Err(DtbError::BadMagic { .. })));
        let cut = &blob[..blob.len() - 1];
        assert!(matches!(validate(cut), Err(DtbError::Truncated { .. })));
        let mut b = blob.clone();
        b[20..24].copy_from_slice(&16u32.to_be_bytes());
        assert!(matches!(
            validate(&b),
            Err(DtbError::UnsupportedVersion { version: 16, .. })
        ));
    }

    /// A blob with the given structure block, written by hand (writers refuse what we test).
    fn raw(structure: &[u32]) -> Vec<u8> {
        let words = |v: &[u32]| v.iter().flat_map(|w| w.to_be_bytes()).collect::<Vec<u8>>();
        let rsv_at = 40u32;
        let struct_at = rsv_at + 16;
        let size_struct = (structure.len() * 4) as u32;
        let strings_at = struct_at + size_struct;
        let total = strings_at;
        let mut b = words(&[
            MAGIC,
            total,
            struct_at,
            strings_at,
            rsv_at,
            17,
            16,
            0,
            0,
            size_struct,
        ]);
        b.extend([0u8; 16]);
        b.extend(words(structure));
        b
    }

    #[test]
    fn trees_deeper_than_the_parsers_stack_are_refused() {
        // Root, then 70 nested nodes named "n" (0x6e000000 = "n\0" padded), then closing tokens.
        let mut st = std::vec![BEGIN_NODE, 0];
        for _ in 0..70 {
            st.extend([BEGIN_NODE, 0x6e00_0000]);
        }
        st.extend(std::iter::repeat_n(END_NODE, 71));
        st.push(END);
        assert!(matches!(
            validate(&raw(&st)),
            Err(DtbError::BadStructure {
                what: "nodes nested too deeply",
                ..
            })
        ));
        // The same shape at a legal depth is accepted, so the refusal above is about depth.
        let mut st = std::vec![BEGIN_NODE, 0];
        for _ in 0..10 {
            st.extend([BEGIN_NODE, 0x6e00_0000]);
        }
        st.extend(std::iter::repeat_n(END_NODE, 11));
        st.push(END);
        assert!(validate(&raw(&st)).is_ok());
        let nop = [BEGIN_NODE, 0, NOP, END_NODE, END];
        assert!(matches!(
            validate(&raw(&nop)),
            Err(DtbError::BadStructure {
                what: "FDT_NOP tokens are not supported",
                ..
            })
        ));
    }

    #[test]
    fn one_byte_cell_count_is_refused_not_a_panic() {
        let mut w = vm_fdt::FdtWriter::new().unwrap();
        let root = w.begin_node("").unwrap();
        w.property("#address-cells", &[2]).unwrap();
        w.end_node(root).unwrap();
        let blob = w.finish().unwrap();
        assert!(matches!(
            validate(&blob),
            Err(DtbError::BadCellCount { .. })
        ));
    }

    /// Every byte position overwritten with every interesting value: never a panic, and whatever
    /// `open` accepts can be walked in full with the accessors this module allows.
    fn walk_everything(blob: &[u8]) {
        if let Ok(fdt) = open(blob) {
            for node in fdt.all_nodes() {
                for p in node.properties() {
                    let _ = (p.as_usize(), p.as_str());
                }
                let _ = node.cell_sizes();
                if let Some(reg) = node.reg() {
                    reg.for_each(drop);
                }
                node.children().for_each(drop);
            }
            let _ = fdt.find_node("/chosen/module@0");
        }
    }

    #[test]
    fn every_single_byte_corruption_is_safe() {
        let blob = sample();
        for i in 0..blob.len() {
            for v in [0u8, 1, 2, 3, 4, 9, 0x7f, 0xff] {
                let mut b = blob.clone();
                b[i] = v;
                walk_everything(&b);
            }
        }
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            walk_everything(&bytes);
        }

        #[test]
        fn random_corruption_of_a_real_tree_never_panics(
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
            cut in any::<usize>(),
        ) {
            let mut b = sample();
            for (i, v) in edits {
                let n = b.len();
                b[i % n] = v;
            }
            let keep = b.len() - cut % 64;
            b.truncate(keep);
            walk_everything(&b);
        }
    }
}
