//! Checks a DTB blob completely before the `fdt` crate sees it.
//!
//! `fdt` 0.1.5 trusts its input: it slices, unwraps and asserts on header offsets, token
//! order, string offsets and `#address-cells` lengths, and keeps parents in a 64-entry array.
//! So everything it would trip over is checked here first, and `validate` is the only way to a
//! `fdt::Fdt` in this module (see `super::open`). Accepting only what the parser handles is
//! stricter than the specification in one place: FDT_NOP tokens are refused (the parser
//! mishandles them between properties and children).

use super::error::DtbError;

const MAGIC: u32 = 0xd00d_feed;
const HEADER_LEN: usize = 40;
const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;
/// `fdt` keeps the parents of the current node in a 64-entry array indexed from 1.
pub const MAX_DEPTH: usize = 60;

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let bytes = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// Header fields at their offsets.
struct Header {
    totalsize: usize,
    off_struct: usize,
    off_strings: usize,
    off_rsvmap: usize,
    size_strings: usize,
    size_struct: usize,
}

fn header(blob: &[u8]) -> Result<Header, DtbError<'static>> {
    let field = |i: usize| be32(blob, i * 4).map(|v| v as usize);
    let (Some(magic), Some(total)) = (be32(blob, 0), field(1)) else {
        return Err(DtbError::Truncated {
            len: blob.len(),
            needed: HEADER_LEN,
        });
    };
    if magic != MAGIC {
        return Err(DtbError::BadMagic { found: magic });
    }
    if blob.len() < HEADER_LEN {
        return Err(DtbError::Truncated {
            len: blob.len(),
            needed: HEADER_LEN,
        });
    }
    if blob.len() < total {
        return Err(DtbError::Truncated {
            len: blob.len(),
            needed: total,
        });
    }
    let get = |i| field(i).unwrap_or(0);
    let (version, last_compatible) = (get(5) as u32, get(6) as u32);
    if version < 16 || last_compatible > 17 {
        return Err(DtbError::UnsupportedVersion {
            version,
            last_compatible,
        });
    }
    let h = Header {
        totalsize: total,
        off_struct: get(2),
        off_strings: get(3),
        off_rsvmap: get(4),
        size_strings: get(8),
        size_struct: get(9),
    };
    let within = |off: usize, size: usize| off.checked_add(size).is_some_and(|e| e <= total);
    if total < HEADER_LEN {
        return Err(DtbError::BadHeader { field: "totalsize" });
    }
    if !within(h.off_struct, h.size_struct)
        || !h.off_struct.is_multiple_of(4)
        || !h.size_struct.is_multiple_of(4)
    {
        return Err(DtbError::BadHeader {
            field: "off_dt_struct/size_dt_struct",
        });
    }
    if !within(h.off_strings, h.size_strings) {
        return Err(DtbError::BadHeader {
            field: "off_dt_strings/size_dt_strings",
        });
    }
    if !h.off_rsvmap.is_multiple_of(8) || h.off_rsvmap >= total {
        return Err(DtbError::BadHeader {
            field: "off_mem_rsvmap",
        });
    }
    Ok(h)
}

/// The memory reservation block must end with a zero entry inside the blob.
fn check_rsvmap(blob: &[u8], h: &Header) -> Result<(), DtbError<'static>> {
    let mut at = h.off_rsvmap;
    loop {
        let entry =
            at.checked_add(16)
                .filter(|&e| e <= h.totalsize)
                .ok_or(DtbError::BadHeader {
                    field: "off_mem_rsvmap (no terminating entry)",
                })?;
        if blob[at..entry].iter().all(|&b| b == 0) {
            return Ok(());
        }
        at = entry;
    }
}

/// A NUL-terminated UTF-8 string starting at `at` in `block`; returns its length without NUL.
fn cstr(block: &[u8], at: usize) -> Option<usize> {
    let rest = block.get(at..)?;
    let len = rest.iter().position(|&b| b == 0)?;
    core::str::from_utf8(&rest[..len]).ok()?;
    Some(len)
}

/// Validates the whole blob and returns it cut to `totalsize`.
///
/// # Errors
/// The first problem found, with the structure-block offset for token-level problems.
pub fn validate(blob: &[u8]) -> Result<&[u8], DtbError<'static>> {
    let h = header(blob)?;
    let blob = &blob[..h.totalsize];
    check_rsvmap(blob, &h)?;
    let st = &blob[h.off_struct..h.off_struct + h.size_struct];
    let strings = &blob[h.off_strings..h.off_strings + h.size_strings];
    let bad = |offset: usize, what: &'static str| DtbError::Malformed { offset, what };

    let mut at = 0usize;
    let mut depth = 0usize;
    // Whether the current node has had a child yet (properties must come first).
    let mut seen_child = [false; MAX_DEPTH + 1];
    let mut roots = 0;
    loop {
        let token = be32(st, at).ok_or(bad(at, "ends before FDT_END"))?;
        let token_at = at;
        at += 4;
        match token {
            FDT_BEGIN_NODE => {
                let len = cstr(st, at)
                    .ok_or(bad(at, "node name is not a NUL-terminated UTF-8 string"))?;
                if depth == 0 {
                    roots += 1;
                    if roots > 1 {
                        return Err(bad(token_at, "more than one root node"));
                    }
                    if len != 0 {
                        return Err(bad(token_at, "root node has a name"));
                    }
                } else if len == 0 {
                    return Err(bad(token_at, "node without a name"));
                } else {
                    seen_child[depth] = true;
                }
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(bad(token_at, "nodes nested too deeply"));
                }
                seen_child[depth] = false;
                at += (len + 1).next_multiple_of(4);
            }
            FDT_END_NODE => {
                if depth == 0 {
                    return Err(bad(token_at, "FDT_END_NODE without a node"));
                }
                depth -= 1;
            }
            FDT_PROP => {
                if depth == 0 {
                    return Err(bad(token_at, "property outside any node"));
                }
                if seen_child[depth] {
                    return Err(bad(token_at, "property after a child node"));
                }
                let len = be32(st, at).ok_or(bad(at, "truncated property header"))? as usize;
                let name_off =
                    be32(st, at + 4).ok_or(bad(at, "truncated property header"))? as usize;
                at += 8;
                let name_len = cstr(strings, name_off).ok_or(bad(
                    token_at,
                    "property name offset is outside the strings block",
                ))?;
                let name = &strings[name_off..name_off + name_len];
                if at.checked_add(len).is_none_or(|e| e > st.len()) {
                    return Err(bad(
                        token_at,
                        "property value runs past the structure block",
                    ));
                }
                if (name == b"#address-cells"
                    || name == b"#size-cells"
                    || name == b"#interrupt-cells")
                    && len != 4
                {
                    return Err(bad(token_at, "a #...-cells property is not one cell long"));
                }
                if name.first() == Some(&b'/') {
                    // The parser resolves such a name as an alias of itself, without end.
                    return Err(bad(token_at, "property name starts with '/'"));
                }
                at += len.next_multiple_of(4);
            }
            FDT_NOP => return Err(bad(token_at, "FDT_NOP tokens are not supported")),
            FDT_END => {
                if depth != 0 || roots != 1 {
                    return Err(bad(
                        token_at,
                        "FDT_END inside a node or without a root node",
                    ));
                }
                return Ok(blob);
            }
            _ => return Err(bad(token_at, "unknown token")),
        }
    }
}
