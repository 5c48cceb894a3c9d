//! VM descriptions in the boot DTB, in the shape of Xen's dom0less binding, so existing U-Boot
//! scripts carry over:
//!
//! ```text
//! chosen {
//!     domU1 {
//!         compatible = "xen,domain";
//!         #address-cells = <1>; #size-cells = <1>;
//!         memory = <0 0x80000>;          // KiB, as one 64-bit value (two cells)
//!         cpus = <2>;
//!         vpl011;                         // optional: give the guest the virtual PL011
//!         module@42000000 { compatible = "multiboot,kernel", "multiboot,module";
//!                           reg = <0x42000000 0x1800000>; bootargs = "console=ttyAMA0"; };
//!         module@44000000 { compatible = "multiboot,ramdisk", "multiboot,module";
//!                           reg = <0x44000000 0x400000>; };
//!     };
//! };
//! ```
//!
//! A restore replaces the kernel (and ramdisk) with a module holding a snapshot file
//! (`hyp-formats/src/snapshot`), loaded where its `reg` says; a chain (a full snapshot and the diffs
//! taken after it) is one such module per file, base first, in the order of the nodes:
//!
//! ```text
//!         module@7e000000 { compatible = "hyp,snapshot", "multiboot,module";
//!                           reg = <0x0 0x7e000000 0x0 0x2000000>; };
//! ```
//!
//! The domain keeps `memory`, `cpus` and `vpl011`, copied from the snapshot's header by whoever
//! wrote the tree, so the checks below apply to a restore as to a boot; the hypervisor still
//! compares them with the file.
//!
//! Parsing checks each domain on its own; [`check_layout`] then checks all modules against each
//! other, RAM and what the hypervisor reserved, because overlapping modules caught here are a
//! clear error, while caught later they are random guest crashes.

use alloc::vec::Vec;
use core::fmt;

use fdt::Fdt;
use fdt::node::FdtNode;

/// A physical range of the host, `[base, base + size)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub base: u64,
    pub size: u64,
}

impl Region {
    pub fn end(&self) -> Option<u64> {
        self.base.checked_add(self.size)
    }
    fn overlaps(&self, other: &Region) -> bool {
        let (Some(a_end), Some(b_end)) = (self.end(), other.end()) else {
            return true;
        };
        self.base < b_end && other.base < a_end
    }
    fn within(&self, outer: &Region) -> bool {
        match (self.end(), outer.end()) {
            (Some(end), Some(outer_end)) => self.base >= outer.base && end <= outer_end,
            _ => false,
        }
    }
}

/// One boot module: where the bootloader put it in host memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Module<'a> {
    pub region: Region,
    /// Path of the module node, for messages.
    pub node: &'a str,
}

/// One VM as the boot DTB describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainConfig<'a> {
    /// The domain node's name (`domU1`).
    pub name: &'a str,
    /// Guest RAM in bytes.
    pub memory: u64,
    pub cpus: u32,
    /// The `multiboot,kernel` module. For a restore, `kernel` is the first snapshot module
    /// (the chain's base, also `snapshots[0]`).
    pub kernel: Module<'a>,
    /// The kernel module's `bootargs`, else the domain's own `bootargs`; `None` for a restore
    /// (the restored kernel has long read its command line).
    pub bootargs: Option<&'a str>,
    /// `None` for a restore.
    pub ramdisk: Option<Module<'a>>,
    /// The domain asks for the virtual PL011 (`vpl011`).
    pub vpl011: bool,
    /// The `hyp,snapshot` modules in node order: the domain resumes from this chain (a full
    /// snapshot, then diffs) instead of booting a kernel. Empty for a boot.
    pub snapshots: Vec<Module<'a>>,
}

/// Longest snapshot chain (a full snapshot and its diffs) one domain may restore.
pub const MAX_SNAPSHOTS: usize = 16;
/// Most vCPUs one domain may ask for (GICv3 redistributor frames we emulate per VM).
pub const MAX_VCPUS: u32 = 64;
/// Guest RAM is mapped in 4 KiB pages at least, so its size must be a multiple of that.
const RAM_GRANULE: u64 = 4096;

/// Why a domain description was refused. `domain` is the domain node's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DomainError<'a> {
    /// `/chosen` is missing.
    NoChosen,
    /// The DTB describes no `xen,domain` node under `/chosen`.
    NoDomains,
    MissingProperty {
        domain: &'a str,
        property: &'static str,
    },
    /// A property is present but its value has the wrong size or is out of range.
    BadProperty {
        domain: &'a str,
        property: &'static str,
        why: &'static str,
    },
    /// A module node lacks a usable `reg`.
    BadModuleReg { domain: &'a str, module: &'a str },
    /// A domain has neither a `multiboot,kernel` nor a `hyp,snapshot` module.
    NoKernel { domain: &'a str },
    /// A domain has two modules of the same kind (`kernel` or `ramdisk`).
    DuplicateModule { domain: &'a str, kind: &'static str },
    /// A domain has more than [`MAX_SNAPSHOTS`] `hyp,snapshot` modules.
    TooManySnapshots { domain: &'a str },
    /// A domain has a `hyp,snapshot` module and a `multiboot,{kind}` module: a restore resumes
    /// the snapshot's kernel, so a kernel or ramdisk beside it would be silently unused.
    SnapshotWithBootModule { domain: &'a str, kind: &'static str },
    /// Two modules overlap each other.
    ModulesOverlap { first: &'a str, second: &'a str },
    /// A module overlaps memory the hypervisor reserved (its image, the DTB, reserved-memory).
    ModuleOverlapsReserved { module: &'a str, reserved: Region },
    /// A module does not lie entirely inside RAM.
    ModuleOutsideRam { module: &'a str },
}

impl fmt::Display for DomainError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoChosen => write!(f, "boot device tree has no /chosen node, so no domains"),
            Self::NoDomains => write!(
                f,
                "boot device tree has no domain: add a /chosen child with compatible = \"xen,domain\""
            ),
            Self::MissingProperty { domain, property } => {
                write!(f, "domain /chosen/{domain} has no `{property}` property")
            }
            Self::BadProperty {
                domain,
                property,
                why,
            } => {
                write!(
                    f,
                    "domain /chosen/{domain} property `{property}` is invalid: {why}"
                )
            }
            Self::BadModuleReg { domain, module } => write!(
                f,
                "module /chosen/{domain}/{module} has no valid `reg` (one address and one size \
                 in the domain's #address-cells/#size-cells)"
            ),
            Self::NoKernel { domain } => {
                write!(
                    f,
                    "domain /chosen/{domain} has no module compatible with \"multiboot,kernel\" \
                     (or \"hyp,snapshot\" to restore a snapshot)"
                )
            }
            Self::DuplicateModule { domain, kind } => {
                write!(
                    f,
                    "domain /chosen/{domain} has more than one \"{}\" module",
                    compatible_of(kind)
                )
            }
            Self::TooManySnapshots { domain } => write!(
                f,
                "domain /chosen/{domain} has more than {MAX_SNAPSHOTS} \"hyp,snapshot\" modules \
                 (a full snapshot and its diffs); take a full snapshot to start a shorter chain"
            ),
            Self::SnapshotWithBootModule { domain, kind } => write!(
                f,
                "domain /chosen/{domain} has both a \"hyp,snapshot\" module and a \"{}\" one; \
                 a restore resumes the snapshot's kernel, so give one or the other",
                compatible_of(kind)
            ),
            Self::ModulesOverlap { first, second } => {
                write!(f, "boot modules {first} and {second} overlap in memory")
            }
            Self::ModuleOverlapsReserved { module, reserved } => write!(
                f,
                "boot module {module} overlaps reserved memory {:#x}..{:#x}",
                reserved.base,
                reserved.base.saturating_add(reserved.size)
            ),
            Self::ModuleOutsideRam { module } => {
                write!(f, "boot module {module} does not lie inside RAM")
            }
        }
    }
}

/// The `compatible` string of a module kind as [`DomainError`] names it.
fn compatible_of(kind: &str) -> &'static str {
    match kind {
        "kernel" => "multiboot,kernel",
        "ramdisk" => "multiboot,ramdisk",
        _ => "hyp,snapshot",
    }
}

fn has_compatible(node: FdtNode<'_, '_>, want: &str) -> bool {
    node.property("compatible")
        .is_some_and(|p| p.value.split(|&b| b == 0).any(|s| s == want.as_bytes()))
}

/// Reads `cells` big-endian 32-bit cells from `bytes` as one number.
fn read_cells(bytes: &[u8], cells: usize) -> Option<u64> {
    if cells == 0 || cells > 2 || bytes.len() < cells * 4 {
        return None;
    }
    Some(bytes[..cells * 4].chunks(4).fold(0, |acc, c| {
        (acc << 32) | u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    }))
}

/// Every `xen,domain` node under `/chosen`, parsed and checked on its own.
/// `fdt` must come from [`crate::dtb::open`].
///
/// # Errors
/// The first [`DomainError`] found, naming the node.
pub fn parse_domains<'a>(fdt: &Fdt<'a>) -> Result<Vec<DomainConfig<'a>>, DomainError<'a>> {
    let chosen = fdt.find_node("/chosen").ok_or(DomainError::NoChosen)?;
    let mut out = Vec::new();
    for node in chosen.children() {
        if has_compatible(node, "xen,domain") {
            out.push(parse_domain(node)?);
        }
    }
    if out.is_empty() {
        return Err(DomainError::NoDomains);
    }
    Ok(out)
}

fn parse_domain<'a>(node: FdtNode<'_, 'a>) -> Result<DomainConfig<'a>, DomainError<'a>> {
    let domain = node.name;
    let bad = |property, why| DomainError::BadProperty {
        domain,
        property,
        why,
    };
    let memory_kib = match node.property("memory") {
        None => {
            return Err(DomainError::MissingProperty {
                domain,
                property: "memory",
            });
        }
        Some(p) if p.value.len() == 8 || p.value.len() == 4 => {
            read_cells(p.value, p.value.len() / 4).unwrap_or(0)
        }
        Some(_) => return Err(bad("memory", "expected a 64-bit KiB count (two cells)")),
    };
    let memory = memory_kib
        .checked_mul(1024)
        .ok_or(bad("memory", "size overflows"))?;
    if memory == 0 || !memory.is_multiple_of(RAM_GRANULE) {
        return Err(bad("memory", "must be a non-zero multiple of 4 KiB"));
    }
    let cpus = match node.property("cpus") {
        None => {
            return Err(DomainError::MissingProperty {
                domain,
                property: "cpus",
            });
        }
        Some(p) if p.value.len() == 4 => read_cells(p.value, 1).unwrap_or(0) as u32,
        Some(_) => return Err(bad("cpus", "expected one cell")),
    };
    if cpus == 0 || cpus > MAX_VCPUS {
        return Err(bad("cpus", "must be between 1 and 64"));
    }
    let cells = node.cell_sizes();
    let (addr_cells, size_cells) = (cells.address_cells, cells.size_cells);
    let mut kernel = None;
    let mut kernel_args = None;
    let mut ramdisk = None;
    let mut snapshots = Vec::new();
    for child in node.children() {
        let kind = if has_compatible(child, "multiboot,kernel") {
            "kernel"
        } else if has_compatible(child, "multiboot,ramdisk") {
            "ramdisk"
        } else if has_compatible(child, "hyp,snapshot") {
            "snapshot"
        } else {
            continue;
        };
        let bad_reg = DomainError::BadModuleReg {
            domain,
            module: child.name,
        };
        let reg = child.property("reg").ok_or(bad_reg.clone())?.value;
        if reg.len() != (addr_cells + size_cells) * 4 {
            return Err(bad_reg);
        }
        let base = read_cells(reg, addr_cells).ok_or(bad_reg.clone())?;
        let size = read_cells(&reg[addr_cells * 4..], size_cells).ok_or(bad_reg.clone())?;
        if size == 0 || base.checked_add(size).is_none() {
            return Err(bad_reg);
        }
        let module = Module {
            region: Region { base, size },
            node: child.name,
        };
        let slot = match kind {
            "kernel" => &mut kernel,
            "ramdisk" => &mut ramdisk,
            _ => {
                if snapshots.len() == MAX_SNAPSHOTS {
                    return Err(DomainError::TooManySnapshots { domain });
                }
                snapshots.push(module);
                continue;
            }
        };
        if slot.replace(module).is_some() {
            return Err(DomainError::DuplicateModule { domain, kind });
        }
        if kind == "kernel" {
            kernel_args = child.property("bootargs").and_then(|p| p.as_str());
        }
    }
    let vpl011 = node.property("vpl011").is_some();
    if let Some(&base) = snapshots.first() {
        let other = [("kernel", kernel.is_some()), ("ramdisk", ramdisk.is_some())];
        if let Some(&(kind, _)) = other.iter().find(|(_, present)| *present) {
            return Err(DomainError::SnapshotWithBootModule { domain, kind });
        }
        return Ok(DomainConfig {
            name: domain,
            memory,
            cpus,
            kernel: base,
            bootargs: None,
            ramdisk: None,
            vpl011,
            snapshots,
        });
    }
    let kernel = kernel.ok_or(DomainError::NoKernel { domain })?;
    let bootargs = kernel_args.or_else(|| node.property("bootargs").and_then(|p| p.as_str()));
    Ok(DomainConfig {
        name: domain,
        memory,
        cpus,
        kernel,
        bootargs,
        ramdisk,
        vpl011,
        snapshots: Vec::new(),
    })
}

/// Checks every module of every domain: inside `ram`, clear of `reserved` and of each other.
/// A restore's snapshot modules are checked like any other.
///
/// # Errors
/// The first conflict found, naming both sides.
pub fn check_layout<'a>(
    domains: &[DomainConfig<'a>],
    ram: &[Region],
    reserved: &[Region],
) -> Result<(), DomainError<'a>> {
    let modules = || {
        domains.iter().flat_map(|d| {
            core::iter::once(d.kernel)
                .chain(d.ramdisk)
                .chain(d.snapshots.iter().skip(1).copied())
        })
    };
    for (i, m) in modules().enumerate() {
        if !ram.iter().any(|r| m.region.within(r)) {
            return Err(DomainError::ModuleOutsideRam { module: m.node });
        }
        if let Some(r) = reserved.iter().find(|r| r.overlaps(&m.region)) {
            return Err(DomainError::ModuleOverlapsReserved {
                module: m.node,
                reserved: *r,
            });
        }
        if let Some(other) = modules().skip(i + 1).find(|o| o.region.overlaps(&m.region)) {
            return Err(DomainError::ModulesOverlap {
                first: m.node,
                second: other.node,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::dtb;
    use proptest::prelude::*;
    use std::vec::Vec;

    struct Dom<'a> {
        name: &'a str,
        memory: Option<&'a [u32]>,
        cpus: Option<u32>,
        modules: &'a [(&'a str, &'a str, u32, u32)],
    }

    fn tree(domains: &[Dom<'_>]) -> Vec<u8> {
        let mut w = vm_fdt::FdtWriter::new().unwrap();
        let root = w.begin_node("").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
        let chosen = w.begin_node("chosen").unwrap();
        w.property_string("bootargs", "hyp.log=info").unwrap();
        for d in domains {
            let n = w.begin_node(d.name).unwrap();
            w.property_string_list("compatible", std::vec!["xen,domain".into()])
                .unwrap();
            w.property_u32("#address-cells", 1).unwrap();
            w.property_u32("#size-cells", 1).unwrap();
            if let Some(m) = d.memory {
                w.property_array_u32("memory", m).unwrap();
            }
            if let Some(c) = d.cpus {
                w.property_u32("cpus", c).unwrap();
            }
            w.property_null("vpl011").unwrap();
            for (name, kind, base, size) in d.modules {
                let m = w.begin_node(name).unwrap();
                let compat = std::vec![compatible_of(kind).into(), "multiboot,module".into()];
                w.property_string_list("compatible", compat).unwrap();
                w.property_array_u32("reg", &[*base, *size]).unwrap();
                if *kind == "kernel" {
                    w.property_string("bootargs", "console=ttyAMA0").unwrap();
                }
                w.end_node(m).unwrap();
            }
            w.end_node(n).unwrap();
        }
        w.end_node(chosen).unwrap();
        w.end_node(root).unwrap();
        w.finish().unwrap()
    }

    const KERNEL: (&str, &str, u32, u32) = ("module@42000000", "kernel", 0x4200_0000, 0x180_0000);
    const RAMDISK: (&str, &str, u32, u32) = ("module@44000000", "ramdisk", 0x4400_0000, 0x40_0000);

    /// A module node: name, kind (`kernel`, `ramdisk`, `snapshot`), base, size.
    type ModuleSpec<'a> = (&'a str, &'a str, u32, u32);

    const SNAPSHOT: ModuleSpec<'_> = ("module@46000000", "snapshot", 0x4600_0000, 0x120_0000);

    fn one(modules: &[(&str, &str, u32, u32)]) -> Vec<u8> {
        tree(&[Dom {
            name: "domU1",
            memory: Some(&[0, 0x8_0000]),
            cpus: Some(2),
            modules,
        }])
    }

    #[test]
    fn a_dom0less_domain_parses() {
        let blob = one(&[KERNEL, RAMDISK]);
        let fdt = dtb::open(&blob).unwrap();
        let d = parse_domains(&fdt).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].name, "domU1");
        assert_eq!(d[0].memory, 512 << 20);
        assert_eq!(d[0].cpus, 2);
        assert_eq!(
            d[0].kernel.region,
            Region {
                base: 0x4200_0000,
                size: 0x180_0000
            }
        );
        assert_eq!(d[0].bootargs, Some("console=ttyAMA0"));
        assert_eq!(d[0].ramdisk.unwrap().region.base, 0x4400_0000);
        assert!(d[0].vpl011);
        let ram = [Region {
            base: 0x4000_0000,
            size: 1 << 30,
        }];
        let hyp = [Region {
            base: 0x4000_0000,
            size: 0x20_0000,
        }];
        assert_eq!(check_layout(&d, &ram, &hyp), Ok(()));
    }

    #[test]
    fn a_snapshot_module_makes_a_restore_domain() {
        let blob = one(&[SNAPSHOT]);
        let fdt = dtb::open(&blob).unwrap();
        let d = parse_domains(&fdt).unwrap();
        let snapshot = Module {
            region: Region {
                base: 0x4600_0000,
                size: 0x120_0000,
            },
            node: "module@46000000",
        };
        assert_eq!(
            d[0],
            DomainConfig {
                name: "domU1",
                memory: 512 << 20,
                cpus: 2,
                kernel: snapshot,
                bootargs: None,
                ramdisk: None,
                vpl011: true,
                snapshots: alloc::vec![snapshot],
            }
        );
        // A kernel boot has no snapshot.
        let blob = one(&[KERNEL]);
        assert!(
            parse_domains(&dtb::open(&blob).unwrap()).unwrap()[0]
                .snapshots
                .is_empty()
        );
    }

    #[test]
    fn several_snapshot_modules_are_a_chain_in_node_order() {
        let diff1 = ("module@48000000", "snapshot", 0x4800_0000, 0x1000);
        let diff2 = ("module@47800000", "snapshot", 0x4780_0000, 0x1000);
        let blob = one(&[SNAPSHOT, diff1, diff2]);
        let d = parse_domains(&dtb::open(&blob).unwrap()).unwrap();
        let nodes: Vec<&str> = d[0].snapshots.iter().map(|m| m.node).collect();
        assert_eq!(
            nodes,
            ["module@46000000", "module@48000000", "module@47800000"]
        );
        assert_eq!(d[0].kernel, d[0].snapshots[0]);
        let ram = [Region {
            base: 0x4000_0000,
            size: 1 << 30,
        }];
        assert_eq!(check_layout(&d, &ram, &[]), Ok(()));
        // A diff on top of the base is caught like any other overlap.
        let onto_base = ("module@46100000", "snapshot", 0x4610_0000, 0x1000);
        let blob = one(&[SNAPSHOT, diff1, onto_base]);
        let d = parse_domains(&dtb::open(&blob).unwrap()).unwrap();
        assert_eq!(
            check_layout(&d, &ram, &[]),
            Err(DomainError::ModulesOverlap {
                first: "module@46000000",
                second: "module@46100000"
            })
        );
        let names: Vec<std::string::String> = (0..=MAX_SNAPSHOTS)
            .map(|i| std::format!("module@{:x}", 0x5000_0000 + i * 0x1000))
            .collect();
        let many: Vec<ModuleSpec<'_>> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                (
                    n.as_str(),
                    "snapshot",
                    0x5000_0000 + i as u32 * 0x1000,
                    0x1000,
                )
            })
            .collect();
        assert_eq!(
            parse_domains(&dtb::open(&one(&many)).unwrap()),
            Err(DomainError::TooManySnapshots { domain: "domU1" })
        );
        assert!(
            parse_domains(&dtb::open(&one(&many[..MAX_SNAPSHOTS])).unwrap()).is_ok(),
            "a chain of MAX_SNAPSHOTS is allowed"
        );
    }

    #[test]
    fn a_snapshot_beside_a_kernel_or_a_ramdisk_is_refused() {
        let cases: [(&[ModuleSpec<'_>], DomainError<'static>); 4] = [
            (
                &[KERNEL, SNAPSHOT],
                DomainError::SnapshotWithBootModule {
                    domain: "domU1",
                    kind: "kernel",
                },
            ),
            (
                &[SNAPSHOT, KERNEL, RAMDISK],
                DomainError::SnapshotWithBootModule {
                    domain: "domU1",
                    kind: "kernel",
                },
            ),
            (
                &[SNAPSHOT, RAMDISK],
                DomainError::SnapshotWithBootModule {
                    domain: "domU1",
                    kind: "ramdisk",
                },
            ),
            (&[], DomainError::NoKernel { domain: "domU1" }),
        ];
        for (modules, want) in cases {
            let blob = one(modules);
            let got = parse_domains(&dtb::open(&blob).unwrap());
            assert_eq!(got, Err(want), "{modules:?}");
        }
        let msg = |e: DomainError<'_>| std::format!("{e}");
        assert!(
            msg(DomainError::DuplicateModule {
                domain: "d",
                kind: "ramdisk"
            })
            .contains("more than one \"multiboot,ramdisk\" module")
        );
        assert!(
            msg(DomainError::SnapshotWithBootModule {
                domain: "d",
                kind: "ramdisk"
            })
            .contains("\"hyp,snapshot\" module and a \"multiboot,ramdisk\" one")
        );
        assert!(msg(DomainError::NoKernel { domain: "d" }).contains("hyp,snapshot"));
    }

    #[test]
    fn the_snapshot_module_is_laid_out_like_a_kernel() {
        let ram = [Region {
            base: 0x4000_0000,
            size: 1 << 30,
        }];
        let blob = one(&[SNAPSHOT]);
        let fdt = dtb::open(&blob).unwrap();
        let d = parse_domains(&fdt).unwrap();
        assert_eq!(check_layout(&d, &ram, &[]), Ok(()));
        let hyp = Region {
            base: 0x4700_0000,
            size: 0x1000,
        };
        assert_eq!(
            check_layout(&d, &ram, &[hyp]),
            Err(DomainError::ModuleOverlapsReserved {
                module: "module@46000000",
                reserved: hyp
            })
        );
        let small_ram = [Region {
            base: 0x4000_0000,
            size: 0x600_0000,
        }];
        assert_eq!(
            check_layout(&d, &small_ram, &[]),
            Err(DomainError::ModuleOutsideRam {
                module: "module@46000000"
            })
        );
        // Another domain's kernel on top of the snapshot.
        let blob = tree(&[
            Dom {
                name: "a",
                memory: Some(&[0, 4]),
                cpus: Some(1),
                modules: &[SNAPSHOT],
            },
            Dom {
                name: "b",
                memory: Some(&[0, 4]),
                cpus: Some(1),
                modules: &[("module@47000000", "kernel", 0x4700_0000, 0x10_0000)],
            },
        ]);
        let fdt = dtb::open(&blob).unwrap();
        let d = parse_domains(&fdt).unwrap();
        assert_eq!(
            check_layout(&d, &ram, &[]),
            Err(DomainError::ModulesOverlap {
                first: "module@46000000",
                second: "module@47000000"
            })
        );
    }

    #[test]
    fn each_missing_or_bad_piece_is_named() {
        let cases: [(Vec<u8>, DomainError<'static>); 5] = [
            (
                tree(&[Dom {
                    name: "d",
                    memory: None,
                    cpus: Some(1),
                    modules: &[KERNEL],
                }]),
                DomainError::MissingProperty {
                    domain: "d",
                    property: "memory",
                },
            ),
            (
                tree(&[Dom {
                    name: "d",
                    memory: Some(&[0, 4]),
                    cpus: None,
                    modules: &[KERNEL],
                }]),
                DomainError::MissingProperty {
                    domain: "d",
                    property: "cpus",
                },
            ),
            (
                tree(&[Dom {
                    name: "d",
                    memory: Some(&[0, 4]),
                    cpus: Some(0),
                    modules: &[KERNEL],
                }]),
                DomainError::BadProperty {
                    domain: "d",
                    property: "cpus",
                    why: "must be between 1 and 64",
                },
            ),
            (
                tree(&[Dom {
                    name: "d",
                    memory: Some(&[0, 4]),
                    cpus: Some(1),
                    modules: &[RAMDISK],
                }]),
                DomainError::NoKernel { domain: "d" },
            ),
            (
                tree(&[Dom {
                    name: "d",
                    memory: Some(&[0, 4]),
                    cpus: Some(1),
                    modules: &[KERNEL, KERNEL],
                }]),
                DomainError::DuplicateModule {
                    domain: "d",
                    kind: "kernel",
                },
            ),
        ];
        for (blob, want) in cases {
            let fdt = dtb::open(&blob).unwrap();
            assert_eq!(parse_domains(&fdt), Err(want));
        }
        let empty = tree(&[]);
        assert_eq!(
            parse_domains(&dtb::open(&empty).unwrap()),
            Err(DomainError::NoDomains)
        );
    }

    #[test]
    fn overlapping_modules_are_refused_up_front() {
        let overlapping = ("module@43000000", "ramdisk", 0x4300_0000, 0x100_0000);
        let blob = one(&[KERNEL, overlapping]);
        let fdt = dtb::open(&blob).unwrap();
        let d = parse_domains(&fdt).unwrap();
        let ram = [Region {
            base: 0x4000_0000,
            size: 1 << 30,
        }];
        let err = check_layout(&d, &ram, &[]).unwrap_err();
        assert_eq!(
            err,
            DomainError::ModulesOverlap {
                first: "module@42000000",
                second: "module@43000000"
            }
        );
        assert!(std::format!("{err}").contains("overlap"));

        let blob = one(&[KERNEL]);
        let fdt = dtb::open(&blob).unwrap();
        let d = parse_domains(&fdt).unwrap();
        let hyp = Region {
            base: 0x4300_0000,
            size: 0x1000,
        };
        assert_eq!(
            check_layout(&d, &ram, &[hyp]),
            Err(DomainError::ModuleOverlapsReserved {
                module: "module@42000000",
                reserved: hyp
            })
        );
        let small_ram = [Region {
            base: 0x4000_0000,
            size: 0x200_0000,
        }];
        assert_eq!(
            check_layout(&d, &small_ram, &[]),
            Err(DomainError::ModuleOutsideRam {
                module: "module@42000000"
            })
        );
    }

    #[test]
    fn modules_of_different_domains_must_not_overlap() {
        let blob = tree(&[
            Dom {
                name: "a",
                memory: Some(&[0, 4]),
                cpus: Some(1),
                modules: &[KERNEL],
            },
            Dom {
                name: "b",
                memory: Some(&[0, 4]),
                cpus: Some(1),
                modules: &[KERNEL],
            },
        ]);
        let fdt = dtb::open(&blob).unwrap();
        let d = parse_domains(&fdt).unwrap();
        let ram = [Region {
            base: 0,
            size: u64::MAX,
        }];
        assert!(matches!(
            check_layout(&d, &ram, &[]),
            Err(DomainError::ModulesOverlap { .. })
        ));
    }

    proptest! {
        #[test]
        fn corrupted_domain_trees_never_panic(
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        ) {
            let mut blob = one(&[KERNEL, RAMDISK]);
            for (i, v) in edits {
                let n = blob.len();
                blob[i % n] = v;
            }
            if let Ok(fdt) = dtb::open(&blob)
                && let Ok(d) = parse_domains(&fdt)
            {
                let _ = check_layout(&d, &[Region { base: 0, size: 1 << 40 }], &[]);
            }
        }
    }
}
