//! Walking a validated DTB with the parent's cell sizes at hand, and decoding `reg`.

use super::error::DtbError;
use super::{MAX_DEPTH, Region};
use crate::mm::addr::Pa;
use fdt::node::FdtNode;

/// `#address-cells` / `#size-cells` a node gives its children.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cells {
    pub address: u32,
    pub size: u32,
}

impl Cells {
    /// What the specification says a node without the properties gives its children.
    pub const DEFAULT: Self = Self {
        address: 2,
        size: 1,
    };
}

/// One node during the walk.
pub struct Visit<'b, 'a> {
    pub node: FdtNode<'b, 'a>,
    /// Cell sizes from the parent, for this node's `reg`.
    pub cells: Cells,
    /// Names from the root's child down to this node.
    pub path: &'b [&'a str],
    /// An ancestor has a `ranges` property that is not empty: our `reg` reading, which
    /// assumes identity bus translation, does not apply.
    pub translated: bool,
}

impl Visit<'_, '_> {
    /// Whether the node's path matches `wanted` ("/a/b@1"), a component without a unit address
    /// matching any unit address.
    pub fn path_is(&self, wanted: &str) -> bool {
        let mut parts = wanted
            .trim_start_matches('/')
            .split('/')
            .filter(|p| !p.is_empty());
        let mut mine = self.path.iter();
        loop {
            match (parts.next(), mine.next()) {
                (None, None) => return true,
                (Some(w), Some(m)) => {
                    let base = m.split('@').next().unwrap_or(m);
                    if w != *m && (w.contains('@') || w != base) {
                        return false;
                    }
                }
                _ => return false,
            }
        }
    }

    pub fn is_compatible(&self, with: &str) -> bool {
        self.node
            .compatible()
            .is_some_and(|c| c.all().any(|s| s == with))
    }

    pub fn string_prop(&self, name: &str) -> Option<&'_ str> {
        self.node.property(name).and_then(|p| p.as_str())
    }
}

fn cells_of(node: FdtNode<'_, '_>) -> Cells {
    let read = |name| {
        node.property(name)
            .and_then(|p| p.value.get(..4))
            .map(|v| u32::from_be_bytes([v[0], v[1], v[2], v[3]]))
    };
    Cells {
        address: read("#address-cells").unwrap_or(Cells::DEFAULT.address),
        size: read("#size-cells").unwrap_or(Cells::DEFAULT.size),
    }
}

/// Calls `f` on every node below the root, depth first, in blob order.
///
/// # Errors
/// The first error `f` returns.
pub fn walk<'a>(
    fdt: &fdt::Fdt<'a>,
    f: &mut dyn FnMut(&Visit<'_, 'a>) -> Result<(), DtbError<'a>>,
) -> Result<(), DtbError<'a>> {
    let root = fdt
        .find_node("/")
        .ok_or(DtbError::MissingNode { node: "/" })?;
    let mut path = [""; MAX_DEPTH];
    walk_children(root, cells_of(root), false, &mut path, 0, f)
}

fn walk_children<'b, 'a>(
    parent: FdtNode<'b, 'a>,
    cells: Cells,
    translated: bool,
    path: &mut [&'a str; MAX_DEPTH],
    depth: usize,
    f: &mut dyn FnMut(&Visit<'_, 'a>) -> Result<(), DtbError<'a>>,
) -> Result<(), DtbError<'a>> {
    for child in parent.children() {
        // Validation bounds the depth below MAX_DEPTH.
        let Some(slot) = path.get_mut(depth) else {
            break;
        };
        *slot = child.name;
        let visit = Visit {
            node: child,
            cells,
            path: &path[..=depth],
            translated,
        };
        f(&visit)?;
        let ranges = child
            .property("ranges")
            .is_some_and(|r| !r.value.is_empty());
        walk_children(
            child,
            cells_of(child),
            translated || ranges,
            path,
            depth + 1,
            f,
        )?;
    }
    Ok(())
}

fn be_cells(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

/// The (address, size) pairs of `node`'s `reg`, or `None` without one.
///
/// # Errors
/// `BadProperty` when the cell sizes are not 1-2 address cells and 0-2 size cells, the length is
/// not a whole number of entries, a region wraps around, or a bus translates addresses.
pub fn reg<'a>(
    v: &Visit<'_, 'a>,
    node_name: &'a str,
    mut each: impl FnMut(u64, u64) -> Result<(), DtbError<'a>>,
) -> Result<Option<()>, DtbError<'a>> {
    let Some(prop) = v.node.property("reg") else {
        return Ok(None);
    };
    let bad = |why| DtbError::BadProperty {
        node: node_name,
        property: "reg",
        why,
    };
    if v.translated {
        return Err(bad(
            "the node sits behind a bus whose `ranges` translate addresses",
        ));
    }
    let (ac, sc) = (v.cells.address as usize, v.cells.size as usize);
    if !(1..=2).contains(&ac) || sc > 2 {
        return Err(bad(
            "the parent's #address-cells/#size-cells are not 1-2 and 0-2",
        ));
    }
    let entry = (ac + sc) * 4;
    if prop.value.is_empty() || prop.value.len() % entry != 0 {
        return Err(bad(
            "its length is not a whole number of (address, size) entries",
        ));
    }
    for e in prop.value.chunks_exact(entry) {
        let (addr, size) = (be_cells(&e[..ac * 4]), be_cells(&e[ac * 4..]));
        if addr.checked_add(size).is_none() {
            return Err(bad("a region wraps around the address space"));
        }
        each(addr, size)?;
    }
    Ok(Some(()))
}

/// `reg` entries as regions, requiring at least `min` of them.
pub fn reg_regions<'a>(
    v: &Visit<'_, 'a>,
    node_name: &'a str,
    min: usize,
    out: &mut dyn FnMut(Region) -> Result<(), DtbError<'a>>,
) -> Result<(), DtbError<'a>> {
    let mut n = 0;
    let found = reg(v, node_name, |addr, size| {
        n += 1;
        out(Region {
            base: Pa::new(addr),
            size,
        })
    })?;
    if found.is_none() {
        return Err(DtbError::MissingProperty {
            node: node_name,
            property: "reg",
        });
    }
    if n < min {
        return Err(DtbError::BadProperty {
            node: node_name,
            property: "reg",
            why: "it has fewer entries than the binding requires",
        });
    }
    Ok(())
}

/// A property holding one number in one or two cells.
pub fn number<'a>(
    v: &Visit<'_, 'a>,
    node_name: &'a str,
    name: &'static str,
) -> Result<Option<u64>, DtbError<'a>> {
    match v.node.property(name) {
        None => Ok(None),
        Some(p) if p.value.len() == 4 || p.value.len() == 8 => Ok(Some(be_cells(p.value))),
        Some(_) => Err(DtbError::BadProperty {
            node: node_name,
            property: name,
            why: "it is not one or two cells",
        }),
    }
}
