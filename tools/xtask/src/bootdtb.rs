//! The boot DTB handed to the hypervisor: QEMU's own tree for the machine (dumped with
//! `-M ...,dumpdtb=`), re-emitted node by node with vm-fdt plus one dom0less domain node per
//! guest under `/chosen` and the hypervisor's own options (`hyp.log=`, the monitor's `hyp.*`)
//! as `/chosen/bootargs`, and where each guest's boot modules sit in machine RAM.
//!
//! The domain nodes follow Xen's dom0less binding as `guest-loader/src/domain.rs` parses it:
//! `memory` in KiB as two cells, `cpus`, `vpl011`, and `module@ADDR` children compatible with
//! `multiboot,kernel` / `multiboot,ramdisk`, or for a restore one `module@ADDR` compatible
//! with `hyp,snapshot` per snapshot file instead: a chain's full snapshot first, then its
//! diffs, since the guest-loader applies them in node order (nodes are written in module
//! order; their addresses go down, so the order is not the addresses'). The domain uses two
//! address and two size cells so modules may sit above 4 GiB on big machines.

use std::fmt;
use std::path::PathBuf;

/// Where QEMU's `virt` machine has its RAM.
pub const RAM_BASE: u64 = 0x4000_0000;
/// The bottom of RAM is left alone: the hypervisor image sits at its base and QEMU puts the DTB
/// at `RAM_BASE + min(RAM / 2, 128 MiB)` when it boots a kernel with `-kernel`.
pub const LOW_RESERVE: u64 = 130 << 20;
/// Modules start on 2 MiB boundaries so each is mapped with blocks when copied.
pub const MODULE_ALIGN: u64 = 2 << 20;
/// What the hypervisor may need besides guest RAM (stage-2 tables, vCPU state, its heap),
/// generously: a machine this much short would fail later and less clearly.
pub const HYP_HEADROOM: u64 = 64 << 20;
const MIB: u64 = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModuleKind {
    Kernel,
    Ramdisk,
    /// A snapshot file the domain resumes from instead of booting a kernel.
    Snapshot,
}

impl ModuleKind {
    fn compatible(self) -> &'static str {
        match self {
            Self::Kernel => "multiboot,kernel",
            Self::Ramdisk => "multiboot,ramdisk",
            Self::Snapshot => "hyp,snapshot",
        }
    }
}

/// A file to load into machine RAM for a guest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleFile {
    pub kind: ModuleKind,
    pub path: PathBuf,
    pub size: u64,
}

/// One guest VM as the boot DTB will describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Domain {
    /// The node name under `/chosen` (`domU1`); the hypervisor prefixes console lines with it.
    pub name: String,
    pub cpus: u32,
    /// Guest RAM in bytes.
    pub mem: u64,
    pub bootargs: String,
    /// The kernel first, then the ramdisk if any; for a restore, the snapshot files alone,
    /// base first, then the diffs in the order they apply.
    pub modules: Vec<ModuleFile>,
}

/// A module with its machine address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placed {
    pub file: ModuleFile,
    pub addr: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlacedDomain {
    pub domain: Domain,
    pub modules: Vec<Placed>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// The machine's RAM cannot hold the modules and the guests' RAM; `needed` is the smallest
    /// machine that can, in bytes.
    TooSmall { mem: u64, needed: u64 },
    /// A guest asks for no RAM or for RAM that is not whole MiB.
    BadGuestMem { domain: String, mem: u64 },
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooSmall { mem, needed } => write!(
                f,
                "the machine's {} MiB of RAM cannot hold the guest: its boot modules, its RAM, \
                 the bottom {} MiB (hypervisor image and DTB) and {} MiB for the hypervisor \
                 need {} MiB; give --mem {}M or more, or less --guest-mem",
                mem / MIB,
                LOW_RESERVE / MIB,
                HYP_HEADROOM / MIB,
                needed / MIB,
                needed / MIB
            ),
            Self::BadGuestMem { domain, mem } => write!(
                f,
                "guest {domain}: RAM of {mem} bytes is not a non-zero whole number of MiB"
            ),
        }
    }
}

impl std::error::Error for LayoutError {}

fn align_up(x: u64, a: u64) -> u64 {
    x.div_ceil(a) * a
}

/// The smallest machine RAM (whole MiB) that holds `domains`.
pub fn required_mem(domains: &[Domain]) -> u64 {
    let modules: u64 = domains
        .iter()
        .flat_map(|d| &d.modules)
        .map(|m| align_up(m.size, MODULE_ALIGN))
        .sum();
    let guests: u64 = domains.iter().map(|d| d.mem).sum();
    LOW_RESERVE + modules + guests + HYP_HEADROOM
}

/// Places every module at the top of a machine with `mem` bytes of RAM, 2 MiB-aligned, going
/// down in order, and checks the rest still holds the guests' RAM.
pub fn place(domains: &[Domain], mem: u64) -> Result<Vec<PlacedDomain>, LayoutError> {
    for d in domains {
        if d.mem == 0 || !d.mem.is_multiple_of(MIB) {
            return Err(LayoutError::BadGuestMem {
                domain: d.name.clone(),
                mem: d.mem,
            });
        }
    }
    let needed = required_mem(domains);
    if mem < needed {
        return Err(LayoutError::TooSmall { mem, needed });
    }
    let mut cursor = RAM_BASE + mem / MODULE_ALIGN * MODULE_ALIGN;
    let placed = domains
        .iter()
        .map(|d| PlacedDomain {
            domain: d.clone(),
            modules: d
                .modules
                .iter()
                .map(|m| {
                    cursor -= align_up(m.size, MODULE_ALIGN);
                    Placed {
                        file: m.clone(),
                        addr: cursor,
                    }
                })
                .collect(),
        })
        .collect();
    Ok(placed)
}

#[derive(Debug)]
pub enum DtbError {
    /// QEMU's dump is not a device tree the `fdt` crate reads.
    Unreadable(String),
    /// QEMU's tree has no root node.
    NoRoot,
    /// vm-fdt refused a node or property (a name it finds invalid, say).
    Write(String),
}

impl fmt::Display for DtbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreadable(e) => write!(f, "QEMU's dumped device tree is unreadable: {e}"),
            Self::NoRoot => write!(f, "QEMU's dumped device tree has no root node"),
            Self::Write(e) => write!(f, "cannot write the boot device tree: {e}"),
        }
    }
}

impl std::error::Error for DtbError {}

fn write_err(e: vm_fdt::Error) -> DtbError {
    DtbError::Write(e.to_string())
}

/// `base` (QEMU's tree) with `domains` added under `/chosen` (created if missing) and, unless
/// `bootargs` is empty, `/chosen/bootargs` set to it: the hypervisor's own command line. (QEMU
/// puts its `-append` there, which hypervisor runs do not pass, so nothing is lost.)
pub fn with_domains(
    base: &[u8],
    bootargs: &str,
    domains: &[PlacedDomain],
) -> Result<Vec<u8>, DtbError> {
    let fdt = fdt::Fdt::new(base).map_err(|e| DtbError::Unreadable(format!("{e:?}")))?;
    let reservations: Vec<vm_fdt::FdtReserveEntry> = fdt
        .memory_reservations()
        .map(|r| vm_fdt::FdtReserveEntry::new(r.address() as u64, r.size() as u64))
        .collect::<Result<_, _>>()
        .map_err(write_err)?;
    let mut w = vm_fdt::FdtWriter::new_with_mem_reserv(&reservations).map_err(write_err)?;
    let root = fdt.find_node("/").ok_or(DtbError::NoRoot)?;
    let chosen = Chosen { bootargs, domains };
    copy_node(&mut w, root, "", &chosen)?;
    w.finish().map_err(write_err)
}

/// What goes into `/chosen` besides QEMU's properties.
struct Chosen<'a> {
    /// Empty: keep QEMU's (if any).
    bootargs: &'a str,
    domains: &'a [PlacedDomain],
}

impl Chosen<'_> {
    fn is_empty(&self) -> bool {
        self.bootargs.is_empty() && self.domains.is_empty()
    }

    /// Our properties, after QEMU's: a node's properties come before its children.
    fn write_properties(&self, w: &mut vm_fdt::FdtWriter) -> Result<(), DtbError> {
        if !self.bootargs.is_empty() {
            w.property_string("bootargs", self.bootargs)
                .map_err(write_err)?;
        }
        Ok(())
    }

    fn write_domains(&self, w: &mut vm_fdt::FdtWriter) -> Result<(), DtbError> {
        self.domains.iter().try_for_each(|d| domain_node(w, d))
    }
}

fn copy_node(
    w: &mut vm_fdt::FdtWriter,
    node: fdt::node::FdtNode<'_, '_>,
    path: &str,
    chosen: &Chosen<'_>,
) -> Result<(), DtbError> {
    let name = if path.is_empty() { "" } else { node.name };
    let handle = w.begin_node(name).map_err(write_err)?;
    let is_chosen = path == "/chosen";
    for p in node.properties() {
        // vm-fdt refuses a property given twice; ours replaces QEMU's.
        if is_chosen && p.name == "bootargs" && !chosen.bootargs.is_empty() {
            continue;
        }
        w.property(p.name, p.value).map_err(write_err)?;
    }
    if is_chosen {
        // Properties must come before child nodes.
        chosen.write_properties(w)?;
    }
    let mut has_chosen = false;
    for child in node.children() {
        let child_path = format!("{path}/{}", child.name);
        has_chosen |= child_path == "/chosen";
        copy_node(w, child, &child_path, chosen)?;
    }
    if is_chosen {
        chosen.write_domains(w)?;
    }
    if path.is_empty() && !has_chosen && !chosen.is_empty() {
        let node = w.begin_node("chosen").map_err(write_err)?;
        chosen.write_properties(w)?;
        chosen.write_domains(w)?;
        w.end_node(node).map_err(write_err)?;
    }
    w.end_node(handle).map_err(write_err)
}

fn domain_node(w: &mut vm_fdt::FdtWriter, d: &PlacedDomain) -> Result<(), DtbError> {
    let node = w.begin_node(&d.domain.name).map_err(write_err)?;
    w.property_string_list("compatible", vec!["xen,domain".into()])
        .map_err(write_err)?;
    w.property_u32("#address-cells", 2).map_err(write_err)?;
    w.property_u32("#size-cells", 2).map_err(write_err)?;
    w.property_u64("memory", d.domain.mem / 1024)
        .map_err(write_err)?;
    w.property_u32("cpus", d.domain.cpus).map_err(write_err)?;
    w.property_null("vpl011").map_err(write_err)?;
    for m in &d.modules {
        let module = w
            .begin_node(&format!("module@{:x}", m.addr))
            .map_err(write_err)?;
        w.property_string_list(
            "compatible",
            vec![m.file.kind.compatible().into(), "multiboot,module".into()],
        )
        .map_err(write_err)?;
        w.property_array_u64("reg", &[m.addr, m.file.size])
            .map_err(write_err)?;
        if m.file.kind == ModuleKind::Kernel && !d.domain.bootargs.is_empty() {
            w.property_string("bootargs", &d.domain.bootargs)
                .map_err(write_err)?;
        }
        w.end_node(module).map_err(write_err)?;
    }
    w.end_node(node).map_err(write_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain(kernel: u64, ramdisk: Option<u64>, mem: u64) -> Domain {
        let mut modules = vec![ModuleFile {
            kind: ModuleKind::Kernel,
            path: "Image".into(),
            size: kernel,
        }];
        modules.extend(ramdisk.map(|size| ModuleFile {
            kind: ModuleKind::Ramdisk,
            path: "initrd".into(),
            size,
        }));
        Domain {
            name: "domU1".into(),
            cpus: 2,
            mem,
            bootargs: "console=ttyAMA0".into(),
            modules,
        }
    }

    #[test]
    fn modules_go_to_the_top_of_ram_aligned_and_apart() {
        let d = domain(33 * MIB + 5, Some(MIB + 1), 512 * MIB);
        let placed = place(&[d], 1024 * MIB).unwrap();
        let m = &placed[0].modules;
        assert_eq!(m[0].addr, RAM_BASE + 1024 * MIB - 34 * MIB);
        assert_eq!(m[1].addr, m[0].addr - 2 * MIB);
        for p in m {
            assert_eq!(p.addr % MODULE_ALIGN, 0);
            assert!(p.addr >= RAM_BASE + LOW_RESERVE);
        }
        assert!(m[1].addr + m[1].file.size <= m[0].addr);
    }

    #[test]
    fn a_machine_too_small_says_how_much_it_needs() {
        let d = domain(33 * MIB, Some(2 * MIB), 512 * MIB);
        let needed = required_mem(std::slice::from_ref(&d));
        assert_eq!(needed, LOW_RESERVE + 36 * MIB + 512 * MIB + HYP_HEADROOM);
        let e = place(std::slice::from_ref(&d), 512 * MIB).unwrap_err();
        assert_eq!(
            e,
            LayoutError::TooSmall {
                mem: 512 * MIB,
                needed
            }
        );
        assert!(e.to_string().contains(&format!("--mem {}M", needed / MIB)));
        assert!(place(&[d], needed).is_ok());
        assert!(matches!(
            place(&[domain(MIB, None, MIB + 1)], 1024 * MIB),
            Err(LayoutError::BadGuestMem { .. })
        ));
    }

    fn base_tree(with_chosen: bool) -> Vec<u8> {
        base_tree_with(with_chosen, None)
    }

    /// A small QEMU-like tree; `bootargs` goes into `/chosen` as QEMU's `-append` would.
    fn base_tree_with(with_chosen: bool, bootargs: Option<&str>) -> Vec<u8> {
        let mut w = vm_fdt::FdtWriter::new_with_mem_reserv(&[vm_fdt::FdtReserveEntry::new(
            0x4800_0000,
            0x1000,
        )
        .unwrap()])
        .unwrap();
        let root = w.begin_node("").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
        let mem = w.begin_node("memory@40000000").unwrap();
        w.property_array_u64("reg", &[RAM_BASE, 1 << 30]).unwrap();
        w.end_node(mem).unwrap();
        if with_chosen {
            let chosen = w.begin_node("chosen").unwrap();
            w.property_string("stdout-path", "/pl011@9000000").unwrap();
            if let Some(b) = bootargs {
                w.property_string("bootargs", b).unwrap();
            }
            let rng = w.begin_node("rng").unwrap();
            w.end_node(rng).unwrap();
            w.end_node(chosen).unwrap();
        }
        w.end_node(root).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn the_tree_is_copied_and_domains_land_under_chosen() {
        for with_chosen in [true, false] {
            let placed = place(&[domain(33 * MIB, Some(MIB), 512 * MIB)], 1024 * MIB).unwrap();
            let blob = with_domains(&base_tree(with_chosen), "", &placed).unwrap();
            let fdt = fdt::Fdt::new(&blob).unwrap();
            let reserved: Vec<_> = fdt
                .memory_reservations()
                .map(|r| (r.address() as u64, r.size()))
                .collect();
            assert_eq!(reserved, [(0x4800_0000, 0x1000)]);
            let mem = fdt.find_node("/memory@40000000").unwrap();
            assert_eq!(
                mem.property("reg").unwrap().value,
                [RAM_BASE.to_be_bytes(), (1u64 << 30).to_be_bytes()].concat()
            );
            let chosen = fdt.find_node("/chosen").unwrap();
            assert_eq!(
                chosen
                    .property("stdout-path")
                    .and_then(|p| p.as_str())
                    .is_some(),
                with_chosen
            );
            let dom = fdt.find_node("/chosen/domU1").unwrap();
            assert_eq!(
                dom.property("memory").unwrap().value,
                (512u64 * 1024).to_be_bytes()
            );
            assert_eq!(dom.property("cpus").unwrap().as_usize(), Some(2));
            assert!(dom.property("vpl011").is_some());
            let kernel_at = placed[0].modules[0].addr;
            let kernel = fdt
                .find_node(&format!("/chosen/domU1/module@{kernel_at:x}"))
                .unwrap();
            assert_eq!(
                kernel.property("reg").unwrap().value,
                [kernel_at.to_be_bytes(), (33 * MIB).to_be_bytes()].concat()
            );
            assert_eq!(
                kernel.property("compatible").unwrap().value,
                b"multiboot,kernel\0multiboot,module\0"
            );
            assert_eq!(
                kernel.property("bootargs").and_then(|p| p.as_str()),
                Some("console=ttyAMA0")
            );
        }
    }

    #[test]
    fn a_restore_domain_has_one_snapshot_module_and_no_bootargs() {
        let d = Domain {
            name: "domU1".into(),
            cpus: 2,
            mem: 512 * MIB,
            bootargs: String::new(),
            modules: vec![ModuleFile {
                kind: ModuleKind::Snapshot,
                path: "run.snap".into(),
                size: 130 * MIB + 5,
            }],
        };
        let placed = place(std::slice::from_ref(&d), 1024 * MIB).unwrap();
        let at = placed[0].modules[0].addr;
        assert_eq!(at, RAM_BASE + 1024 * MIB - 132 * MIB);
        let blob = with_domains(&base_tree(true), "hyp.log=info", &placed).unwrap();
        let fdt = fdt::Fdt::new(&blob).unwrap();
        let dom = fdt.find_node("/chosen/domU1").unwrap();
        assert_eq!(dom.property("cpus").unwrap().as_usize(), Some(2));
        let modules: Vec<_> = dom.children().collect();
        assert_eq!(modules.len(), 1);
        assert_eq!(modules[0].name, format!("module@{at:x}"));
        assert_eq!(
            modules[0].property("compatible").unwrap().value,
            b"hyp,snapshot\0multiboot,module\0"
        );
        assert!(modules[0].property("bootargs").is_none());
        assert_eq!(
            dom.property("memory").unwrap().value,
            (512u64 * 1024).to_be_bytes()
        );
    }

    #[test]
    fn a_restore_chain_keeps_its_order_in_the_nodes_and_the_machine_grows_for_it() {
        let sizes = [40 * MIB + 1, 3 * MIB, 5];
        let d = Domain {
            name: "domU1".into(),
            cpus: 2,
            mem: 512 * MIB,
            bootargs: String::new(),
            modules: ["base.snap", "d1.snap", "d2.snap"]
                .iter()
                .zip(sizes)
                .map(|(path, size)| ModuleFile {
                    kind: ModuleKind::Snapshot,
                    path: path.into(),
                    size,
                })
                .collect(),
        };
        // Each module takes whole 2 MiB blocks: 42 + 4 + 2 MiB.
        let needed = required_mem(std::slice::from_ref(&d));
        assert_eq!(needed, LOW_RESERVE + 48 * MIB + 512 * MIB + HYP_HEADROOM);
        assert!(place(std::slice::from_ref(&d), needed - MIB).is_err());
        let placed = place(std::slice::from_ref(&d), 1024 * MIB).unwrap();
        let addrs: Vec<u64> = placed[0].modules.iter().map(|m| m.addr).collect();
        let top = RAM_BASE + 1024 * MIB;
        assert_eq!(addrs, [top - 42 * MIB, top - 46 * MIB, top - 48 * MIB]);
        let blob = with_domains(&base_tree(true), "", &placed).unwrap();
        let fdt = fdt::Fdt::new(&blob).unwrap();
        let dom = fdt.find_node("/chosen/domU1").unwrap();
        let nodes: Vec<(String, Vec<u8>)> = dom
            .children()
            .map(|m| {
                (
                    m.name.to_string(),
                    m.property("reg").unwrap().value.to_vec(),
                )
            })
            .collect();
        let want: Vec<(String, Vec<u8>)> = addrs
            .iter()
            .zip(sizes)
            .map(|(at, size)| {
                (
                    format!("module@{at:x}"),
                    [at.to_be_bytes(), size.to_be_bytes()].concat(),
                )
            })
            .collect();
        assert_eq!(nodes, want, "base first, then the diffs in order");
        for m in dom.children() {
            assert_eq!(
                m.property("compatible").unwrap().value,
                b"hyp,snapshot\0multiboot,module\0"
            );
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(matches!(
            with_domains(b"not a device tree at all", "", &[]),
            Err(DtbError::Unreadable(_))
        ));
        let mut blob = base_tree(true);
        blob.truncate(blob.len() / 2);
        assert!(with_domains(&blob, "", &[]).is_err());
    }

    fn chosen_bootargs(blob: &[u8]) -> Option<String> {
        let fdt = fdt::Fdt::new(blob).unwrap();
        let chosen = fdt.find_node("/chosen")?;
        let values: Vec<&str> = chosen
            .properties()
            .filter(|p| p.name == "bootargs")
            .filter_map(|p| p.as_str())
            .collect();
        assert!(values.len() <= 1, "bootargs given twice: {values:?}");
        values.first().map(|v| v.to_string())
    }

    #[test]
    fn hypervisor_bootargs_go_into_chosen_replacing_qemus() {
        let placed = place(&[domain(33 * MIB, Some(MIB), 512 * MIB)], 1024 * MIB).unwrap();
        let args = "hyp.log=debug hyp.migrate-storm=10";
        for (with_chosen, qemu_args) in [(true, None), (true, Some("from -append")), (false, None)]
        {
            let base = base_tree_with(with_chosen, qemu_args);
            let blob = with_domains(&base, args, &placed).unwrap();
            assert_eq!(chosen_bootargs(&blob).as_deref(), Some(args));
            let fdt = fdt::Fdt::new(&blob).unwrap();
            assert!(fdt.find_node("/chosen/domU1").is_some());
            assert_eq!(fdt.find_node("/chosen/rng").is_some(), with_chosen);
            // Without guests the bootargs still get a /chosen.
            let alone = with_domains(&base, args, &[]).unwrap();
            assert_eq!(chosen_bootargs(&alone).as_deref(), Some(args));
            // Empty bootargs keep whatever QEMU had.
            let kept = with_domains(&base, "", &placed).unwrap();
            assert_eq!(chosen_bootargs(&kept).as_deref(), qemu_args);
        }
    }
}
