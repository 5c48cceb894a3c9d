//! What the boot DTB says about the machine (memory, CPUs, GIC, UART, PSCI, timer). Portable.
//!
//! A blob is validated in full (`guest_loader::dtb::open`) before the `fdt` crate reads it, so
//! bad input gives a `DtbError` naming the node or what is malformed, never a panic. [`Early`] is what the boot CPU
//! needs before its MMU is on (RAM and the console) and needs no heap; [`Machine`] is the rest.
#![forbid(unsafe_code)]

mod error;
mod tree;

#[cfg(test)]
mod tests;

pub use error::DtbError;
use guest_loader::dtb::MAX_DEPTH;

use crate::mm::addr::Pa;
use alloc::vec::Vec;
use tree::{Visit, number, reg_regions, walk};

/// How PSCI firmware is called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsciMethod {
    Smc,
    Hvc,
}

/// A physical address range from the DTB. `base + size` never overflows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub base: Pa,
    pub size: u64,
}

impl Region {
    /// The first address past the region.
    pub fn end(&self) -> Pa {
        Pa::new(self.base.raw().saturating_add(self.size))
    }
}

/// A CPU node: its MPIDR affinity value (`reg`) and node name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cpu<'a> {
    pub mpidr: u64,
    pub node: &'a str,
}

/// The GICv3 register frames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gic {
    pub distributor: Region,
    pub redistributors: Vec<Region>,
}

/// The architected timer's interrupts, as GIC INTIDs (PPIs, 16..32).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerIrqs {
    pub secure_phys: u32,
    pub phys: u32,
    pub virt: u32,
    pub hyp_phys: u32,
}

/// `/chosen`: what the boot loader passed along.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Chosen<'a> {
    pub bootargs: &'a str,
    pub stdout_path: Option<&'a str>,
    pub initrd: Option<Region>,
    /// `multiboot,module` children (guest kernels, ramdisks, DTBs from the boot loader).
    pub modules: Vec<Region>,
}

/// Everything the hypervisor takes from the boot DTB.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Machine<'a> {
    /// Size of the blob (`totalsize`): the range to keep out of the frame allocator.
    pub dtb_size: u64,
    pub memory: Vec<Region>,
    /// `/reserved-memory` children with a `reg` and `/memreserve/` entries.
    pub reserved: Vec<Region>,
    pub chosen: Chosen<'a>,
    /// In DTB order; disabled CPUs are left out.
    pub cpus: Vec<Cpu<'a>>,
    pub gic: Gic,
    /// The PL011 console (stdout-path's node, else the first PL011).
    pub uart: Region,
    /// The console's interrupt (an SPI's INTID), when its node names one; console input
    /// reaches guests only with it.
    pub uart_intid: Option<u32>,
    pub timer: TimerIrqs,
    pub psci: PsciMethod,
}

/// RAM regions kept by [`Early`].
pub const MAX_MEMORY_REGIONS: usize = 8;

/// The part of the DTB the boot CPU needs before its MMU (and so its heap) is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Early {
    pub dtb_size: u64,
    memory: [Region; MAX_MEMORY_REGIONS],
    memory_count: usize,
    /// The PL011 console, if one can be found.
    pub uart: Option<Region>,
}

impl Early {
    pub fn memory(&self) -> &[Region] {
        &self.memory[..self.memory_count]
    }
}

fn open(blob: &[u8]) -> Result<fdt::Fdt<'_>, DtbError<'static>> {
    Ok(guest_loader::dtb::open(blob)?)
}

fn is_disabled(v: &Visit<'_, '_>) -> bool {
    v.string_prop("status")
        .is_some_and(|s| s != "okay" && s != "ok")
}

/// Calls `out` for each region of each `device_type = "memory"` node under the root.
fn memory<'a>(
    fdt: &fdt::Fdt<'a>,
    out: &mut dyn FnMut(Region) -> Result<(), DtbError<'a>>,
) -> Result<(), DtbError<'a>> {
    let mut any = false;
    walk(fdt, &mut |v| {
        if v.path.len() == 1 && v.string_prop("device_type") == Some("memory") && !is_disabled(v) {
            any = true;
            reg_regions(v, v.node.name, 1, &mut |r| {
                if r.size == 0 { Ok(()) } else { out(r) }
            })?;
        }
        Ok(())
    })?;
    if any {
        Ok(())
    } else {
        Err(DtbError::MissingNode { node: "/memory" })
    }
}

/// The INTID of a node's first interrupt when it is an SPI in the GICv3 binding's three-cell
/// form (type 0 = SPI, number, flags); `None` for anything else.
fn spi_intid(node: &fdt::node::FdtNode<'_, '_>) -> Option<u32> {
    let value = node.property("interrupts")?.value;
    let cell = |k: usize| {
        Some(u32::from_be_bytes(
            value.get(k * 4..k * 4 + 4)?.try_into().ok()?,
        ))
    };
    (value.len() >= 12 && cell(0)? == 0 && cell(1)? < 988).then(|| 32 + cell(1).unwrap_or(0))
}

/// The console: `/chosen/stdout-path` (a path or an alias, options after ':' ignored) if it is a
/// PL011, else the first enabled `arm,pl011`.
fn uart<'a>(
    fdt: &fdt::Fdt<'a>,
    stdout_path: Option<&'a str>,
) -> Result<(Region, Option<u32>), DtbError<'a>> {
    let wanted = stdout_path
        .map(|p| p.split(':').next().unwrap_or(p))
        .map(|p| {
            if p.starts_with('/') {
                p
            } else {
                fdt.aliases().and_then(|a| a.resolve(p)).unwrap_or(p)
            }
        });
    let mut stdout = None;
    let mut first = None;
    walk(fdt, &mut |v| {
        if v.is_compatible("arm,pl011") && !is_disabled(v) {
            let mut region = None;
            reg_regions(v, v.node.name, 1, &mut |r| {
                region.get_or_insert(r);
                Ok(())
            })?;
            let region = region.map(|r| (r, spi_intid(&v.node)));
            if wanted.is_some_and(|w| v.path_is(w)) {
                stdout = region;
            }
            first = first.or(region);
        }
        Ok(())
    })?;
    stdout.or(first).ok_or(DtbError::MissingNode {
        node: "arm,pl011 UART",
    })
}

fn chosen<'a>(fdt: &fdt::Fdt<'a>) -> Result<Chosen<'a>, DtbError<'a>> {
    let mut chosen = Chosen::default();
    let mut initrd = (None, None);
    walk(fdt, &mut |v| {
        if v.path_is("/chosen") {
            let node = v.node.name;
            let text = |name: &'static str| match v.node.property(name) {
                None => Ok(None),
                Some(p) => p.as_str().map(Some).ok_or(DtbError::BadProperty {
                    node,
                    property: name,
                    why: "it is not a UTF-8 string",
                }),
            };
            chosen.bootargs = text("bootargs")?.unwrap_or("");
            chosen.stdout_path = text("stdout-path")?;
            initrd = (
                number(v, node, "linux,initrd-start")?,
                number(v, node, "linux,initrd-end")?,
            );
        } else if v.path.len() == 2 && v.path[0] == "chosen" && v.is_compatible("multiboot,module")
        {
            reg_regions(v, v.node.name, 1, &mut |r| {
                chosen.modules.push(r);
                Ok(())
            })?;
        }
        Ok(())
    })?;
    chosen.initrd = match initrd {
        (None, None) => None,
        (Some(start), Some(end)) if start <= end => Some(Region {
            base: Pa::new(start),
            size: end - start,
        }),
        (Some(_), Some(_)) => {
            return Err(DtbError::BadProperty {
                node: "chosen",
                property: "linux,initrd-end",
                why: "it is below linux,initrd-start",
            });
        }
        (Some(_), None) => {
            return Err(DtbError::MissingProperty {
                node: "chosen",
                property: "linux,initrd-end",
            });
        }
        (None, Some(_)) => {
            return Err(DtbError::MissingProperty {
                node: "chosen",
                property: "linux,initrd-start",
            });
        }
    };
    Ok(chosen)
}

fn cpus<'a>(fdt: &fdt::Fdt<'a>) -> Result<Vec<Cpu<'a>>, DtbError<'a>> {
    let mut cpus = Vec::new();
    let mut have_cpus_node = false;
    walk(fdt, &mut |v| {
        have_cpus_node |= v.path_is("/cpus");
        if v.path.len() == 2 && v.path[0] == "cpus" && v.string_prop("device_type") == Some("cpu") {
            let node = v.node.name;
            if is_disabled(v) {
                return Ok(());
            }
            if v.cells.size != 0 {
                return Err(DtbError::BadProperty {
                    node: "cpus",
                    property: "#size-cells",
                    why: "it is not 0",
                });
            }
            let mut mpidr = None;
            if tree::reg(v, node, |addr, _| {
                mpidr.get_or_insert(addr);
                Ok(())
            })?
            .is_none()
            {
                return Err(DtbError::MissingProperty {
                    node,
                    property: "reg",
                });
            }
            let mpidr = mpidr.unwrap_or(0);
            if mpidr & !0xff_00ff_ffff != 0 {
                return Err(DtbError::BadProperty {
                    node,
                    property: "reg",
                    why: "it has bits outside MPIDR's affinity fields",
                });
            }
            if cpus.iter().any(|c: &Cpu<'_>| c.mpidr == mpidr) {
                return Err(DtbError::BadProperty {
                    node,
                    property: "reg",
                    why: "another CPU has the same MPIDR",
                });
            }
            cpus.push(Cpu { mpidr, node });
        }
        Ok(())
    })?;
    if !have_cpus_node {
        return Err(DtbError::MissingNode { node: "/cpus" });
    }
    if cpus.is_empty() {
        return Err(DtbError::MissingNode { node: "/cpus/cpu" });
    }
    Ok(cpus)
}

fn gic<'a>(fdt: &fdt::Fdt<'a>) -> Result<(Gic, u32), DtbError<'a>> {
    let mut found = None;
    walk(fdt, &mut |v| {
        if found.is_none() && v.is_compatible("arm,gic-v3") && !is_disabled(v) {
            let node = v.node.name;
            let redist_regions = number(v, node, "#redistributor-regions")?.unwrap_or(1);
            if redist_regions == 0 || redist_regions > 64 {
                return Err(DtbError::BadProperty {
                    node,
                    property: "#redistributor-regions",
                    why: "it is not 1..=64",
                });
            }
            let mut regions = Vec::new();
            reg_regions(v, node, 1 + redist_regions as usize, &mut |r| {
                regions.push(r);
                Ok(())
            })?;
            let cells = number(v, node, "#interrupt-cells")?.unwrap_or(3) as u32;
            let distributor = regions[0];
            let redistributors = regions[1..=redist_regions as usize].to_vec();
            found = Some((
                Gic {
                    distributor,
                    redistributors,
                },
                cells,
            ));
        }
        Ok(())
    })?;
    found.ok_or(DtbError::MissingNode {
        node: "interrupt-controller compatible with arm,gic-v3",
    })
}

fn timer<'a>(fdt: &fdt::Fdt<'a>, gic_cells: u32) -> Result<TimerIrqs, DtbError<'a>> {
    let mut found = None;
    walk(fdt, &mut |v| {
        if found.is_none() && v.is_compatible("arm,armv8-timer") {
            let node = v.node.name;
            let bad = |why| DtbError::BadProperty {
                node,
                property: "interrupts",
                why,
            };
            let prop = v
                .node
                .property("interrupts")
                .ok_or(DtbError::MissingProperty {
                    node,
                    property: "interrupts",
                })?;
            if gic_cells != 3 {
                return Err(DtbError::BadProperty {
                    node: "interrupt-controller",
                    property: "#interrupt-cells",
                    why: "it is not 3 as the GICv3 binding requires",
                });
            }
            if prop.value.len() % 12 != 0 || prop.value.len() < 48 {
                return Err(bad("it does not hold four (type, number, flags) triples"));
            }
            let mut ppis = [0u32; 4];
            for (i, t) in prop.value.as_chunks::<12>().0.iter().take(4).enumerate() {
                let cell = |k: usize| {
                    u32::from_be_bytes([t[k * 4], t[k * 4 + 1], t[k * 4 + 2], t[k * 4 + 3]])
                };
                if cell(0) != 1 || cell(1) >= 16 {
                    return Err(bad("a timer interrupt is not a PPI"));
                }
                ppis[i] = 16 + cell(1);
            }
            found = Some(TimerIrqs {
                secure_phys: ppis[0],
                phys: ppis[1],
                virt: ppis[2],
                hyp_phys: ppis[3],
            });
        }
        Ok(())
    })?;
    found.ok_or(DtbError::MissingNode {
        node: "timer compatible with arm,armv8-timer",
    })
}

fn psci<'a>(fdt: &fdt::Fdt<'a>) -> Result<PsciMethod, DtbError<'a>> {
    let mut found = None;
    walk(fdt, &mut |v| {
        let compatible = ["arm,psci-1.0", "arm,psci-0.2", "arm,psci"]
            .iter()
            .any(|c| v.is_compatible(c));
        if found.is_none() && compatible {
            let node = v.node.name;
            found = Some(match v.string_prop("method") {
                Some("smc") => PsciMethod::Smc,
                Some("hvc") => PsciMethod::Hvc,
                Some(_) => {
                    return Err(DtbError::BadProperty {
                        node,
                        property: "method",
                        why: "it is neither smc nor hvc",
                    });
                }
                None => {
                    return Err(DtbError::MissingProperty {
                        node,
                        property: "method",
                    });
                }
            });
        }
        Ok(())
    })?;
    found.ok_or(DtbError::MissingNode { node: "psci" })
}

fn reserved<'a>(fdt: &fdt::Fdt<'a>) -> Result<Vec<Region>, DtbError<'a>> {
    let mut out: Vec<Region> = fdt
        .memory_reservations()
        .map(|r| Region {
            base: Pa::new(r.address() as u64),
            size: r.size() as u64,
        })
        .filter(|r| r.size != 0)
        .collect();
    // Validation refused reservations that wrap, so `Region`'s promise holds.
    debug_assert!(
        out.iter()
            .all(|r| r.base.raw().checked_add(r.size).is_some())
    );
    walk(fdt, &mut |v| {
        if v.path.len() == 2 && v.path[0] == "reserved-memory" {
            // Children with only `size` ask the OS to allocate; there is no OS to ask.
            tree::reg(v, v.node.name, |addr, size| {
                out.push(Region {
                    base: Pa::new(addr),
                    size,
                });
                Ok(())
            })?;
        }
        Ok(())
    })?;
    Ok(out)
}

impl Early {
    /// Reads RAM and the console from `blob` without allocating.
    ///
    /// # Errors
    /// A malformed blob, no memory node, or more than [`MAX_MEMORY_REGIONS`] RAM regions. A
    /// console that cannot be found is not an error here (`uart` is `None`).
    pub fn parse(blob: &[u8]) -> Result<Self, DtbError<'_>> {
        let fdt = open(blob)?;
        let mut early = Early {
            dtb_size: fdt.total_size() as u64,
            memory: [Region {
                base: Pa::new(0),
                size: 0,
            }; MAX_MEMORY_REGIONS],
            memory_count: 0,
            uart: None,
        };
        memory(&fdt, &mut |r| {
            let slot = early
                .memory
                .get_mut(early.memory_count)
                .ok_or(DtbError::TooMany {
                    node: "memory",
                    what: "regions",
                    max: MAX_MEMORY_REGIONS,
                })?;
            *slot = r;
            early.memory_count += 1;
            Ok(())
        })?;
        let stdout = walk_stdout(&fdt);
        early.uart = uart(&fdt, stdout).ok().map(|(r, _)| r);
        Ok(early)
    }
}

fn walk_stdout<'a>(fdt: &fdt::Fdt<'a>) -> Option<&'a str> {
    let mut path = None;
    let _ = walk(fdt, &mut |v| {
        if v.path_is("/chosen") {
            path = v.node.property("stdout-path").and_then(|p| p.as_str());
        }
        Ok(())
    });
    path
}

impl<'a> Machine<'a> {
    /// Reads everything the hypervisor needs from `blob`.
    ///
    /// # Errors
    /// A malformed blob, or a missing/unusable memory, CPU, GICv3, PL011, timer or PSCI node,
    /// `/chosen` property or `/reserved-memory` entry; the error names the node.
    pub fn parse(blob: &'a [u8]) -> Result<Self, DtbError<'a>> {
        let fdt = open(blob)?;
        let mut mem = Vec::new();
        memory(&fdt, &mut |r| {
            mem.push(r);
            Ok(())
        })?;
        let chosen = chosen(&fdt)?;
        let (uart, uart_intid) = uart(&fdt, chosen.stdout_path)?;
        let (gic, gic_cells) = gic(&fdt)?;
        Ok(Self {
            dtb_size: fdt.total_size() as u64,
            memory: mem,
            reserved: reserved(&fdt)?,
            cpus: cpus(&fdt)?,
            timer: timer(&fdt, gic_cells)?,
            psci: psci(&fdt)?,
            gic,
            uart,
            uart_intid,
            chosen,
        })
    }

    /// Index in `cpus` of the CPU with affinity `mpidr`.
    pub fn cpu_index(&self, mpidr: u64) -> Option<usize> {
        self.cpus.iter().position(|c| c.mpidr == mpidr)
    }
}
