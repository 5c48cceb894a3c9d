//! The device tree a Linux guest boots with. It describes only what the guest owns: its RAM, its
//! vCPUs, PSCI over HVC, the virtual GICv3, the architected timer and (when asked for) the
//! virtual PL011. Addresses mirror QEMU's `virt` board, so guest kernels configured for it need
//! nothing special.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use vm_fdt::FdtWriter;

use crate::layout::MAX_DTB_SIZE;

/// The guest-physical map (QEMU `virt`'s).
pub mod virt {
    pub const GICD_BASE: u64 = 0x0800_0000;
    pub const GICD_SIZE: u64 = 0x1_0000;
    pub const GICR_BASE: u64 = 0x080A_0000;
    /// Each vCPU has an RD_base frame and an SGI_base frame of 64 KiB.
    pub const GICR_STRIDE: u64 = 0x2_0000;
    pub const UART_BASE: u64 = 0x0900_0000;
    pub const UART_SIZE: u64 = 0x1000;
    /// The virtual PL011's SPI number (INTID 33).
    pub const UART_SPI: u32 = 1;
    pub const RAM_BASE: u64 = 0x4000_0000;
    /// PPIs of the architected timer: secure physical, non-secure physical, virtual, hypervisor.
    pub const TIMER_PPIS: [u32; 4] = [13, 14, 11, 10];
    /// The redistributor region must stay below the UART.
    pub const MAX_VCPUS: u32 = ((UART_BASE - GICR_BASE) / GICR_STRIDE) as u32;
}

/// The MPIDR_EL1 value vCPU `index` reports (and the `reg` of its cpu node): 16 vCPUs per
/// Aff1 cluster, matching the GICv3 SGI target-list width.
pub const fn vcpu_mpidr(index: u32) -> u64 {
    ((index as u64 >> 4) << 8) | (index as u64 & 0xf)
}

/// What the guest DTB says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestDtbConfig<'a> {
    pub ram_base: u64,
    pub ram_size: u64,
    pub cpus: u32,
    pub bootargs: &'a str,
    /// `(start, len)` of the initrd in guest memory.
    pub initrd: Option<(u64, u64)>,
    /// Whether the guest has the virtual PL011 (and so a console at `virt::UART_BASE`).
    pub uart: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GuestDtbError {
    TooManyCpus {
        cpus: u32,
    },
    /// The writer refused something (a bug here, reported rather than unwrapped).
    Writer(String),
    TooLarge {
        len: usize,
    },
}

impl fmt::Display for GuestDtbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooManyCpus { cpus } => write!(
                f,
                "cannot describe {cpus} vCPUs: the redistributor map has room for {}",
                virt::MAX_VCPUS
            ),
            Self::Writer(e) => write!(f, "cannot write the guest device tree: {e}"),
            Self::TooLarge { len } => write!(f, "guest device tree is {len} bytes, over 2 MiB"),
        }
    }
}

impl From<vm_fdt::Error> for GuestDtbError {
    fn from(e: vm_fdt::Error) -> Self {
        Self::Writer(e.to_string())
    }
}

const GIC_PHANDLE: u32 = 1;
const CLOCK_PHANDLE: u32 = 2;
/// Interrupt specifier types (`arm,gic-v3` binding) and the level-high trigger flag.
const SPI: u32 = 0;
const PPI: u32 = 1;
const LEVEL_HIGH: u32 = 4;

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Writes the guest's DTB.
///
/// # Errors
/// [`GuestDtbError`]: more vCPUs than the map holds, or a writer failure.
pub fn build(cfg: &GuestDtbConfig<'_>) -> Result<Vec<u8>, GuestDtbError> {
    if cfg.cpus == 0 || cfg.cpus > virt::MAX_VCPUS {
        return Err(GuestDtbError::TooManyCpus { cpus: cfg.cpus });
    }
    let mut w = FdtWriter::new()?;
    let root = w.begin_node("")?;
    w.property_string("compatible", "linux,dummy-virt")?;
    w.property_u32("#address-cells", 2)?;
    w.property_u32("#size-cells", 2)?;
    w.property_u32("interrupt-parent", GIC_PHANDLE)?;

    let cpus = w.begin_node("cpus")?;
    w.property_u32("#address-cells", 1)?;
    w.property_u32("#size-cells", 0)?;
    for i in 0..cfg.cpus {
        let mpidr = vcpu_mpidr(i);
        let cpu = w.begin_node(&alloc::format!("cpu@{mpidr:x}"))?;
        w.property_string("device_type", "cpu")?;
        w.property_string("compatible", "arm,armv8")?;
        w.property_u32("reg", mpidr as u32)?;
        w.property_string("enable-method", "psci")?;
        w.end_node(cpu)?;
    }
    w.end_node(cpus)?;

    let psci = w.begin_node("psci")?;
    w.property_string_list(
        "compatible",
        strings(&["arm,psci-1.0", "arm,psci-0.2", "arm,psci"]),
    )?;
    w.property_string("method", "hvc")?;
    w.end_node(psci)?;

    let mem = w.begin_node(&alloc::format!("memory@{:x}", cfg.ram_base))?;
    w.property_string("device_type", "memory")?;
    w.property_array_u64("reg", &[cfg.ram_base, cfg.ram_size])?;
    w.end_node(mem)?;

    let gic = w.begin_node(&alloc::format!("intc@{:x}", virt::GICD_BASE))?;
    w.property_string("compatible", "arm,gic-v3")?;
    w.property_u32("#interrupt-cells", 3)?;
    w.property_null("interrupt-controller")?;
    let gicr_size = virt::GICR_STRIDE * u64::from(cfg.cpus);
    w.property_array_u64(
        "reg",
        &[virt::GICD_BASE, virt::GICD_SIZE, virt::GICR_BASE, gicr_size],
    )?;
    w.property_u32("#redistributor-regions", 1)?;
    w.property_phandle(GIC_PHANDLE)?;
    w.end_node(gic)?;

    let timer = w.begin_node("timer")?;
    w.property_string("compatible", "arm,armv8-timer")?;
    let irqs: Vec<u32> = virt::TIMER_PPIS
        .iter()
        .flat_map(|&ppi| [PPI, ppi, LEVEL_HIGH])
        .collect();
    w.property_array_u32("interrupts", &irqs)?;
    w.property_null("always-on")?;
    w.end_node(timer)?;

    let uart_path = alloc::format!("/pl011@{:x}", virt::UART_BASE);
    if cfg.uart {
        // The AMBA bus driver reads the PL011's peripheral ID, which needs the bus clock named.
        let clk = w.begin_node("apb-pclk")?;
        w.property_string("compatible", "fixed-clock")?;
        w.property_u32("#clock-cells", 0)?;
        w.property_u32("clock-frequency", 24_000_000)?;
        w.property_string("clock-output-names", "clk24mhz")?;
        w.property_phandle(CLOCK_PHANDLE)?;
        w.end_node(clk)?;

        let uart = w.begin_node(&uart_path[1..])?;
        w.property_string_list("compatible", strings(&["arm,pl011", "arm,primecell"]))?;
        w.property_array_u64("reg", &[virt::UART_BASE, virt::UART_SIZE])?;
        w.property_array_u32("interrupts", &[SPI, virt::UART_SPI, LEVEL_HIGH])?;
        w.property_array_u32("clocks", &[CLOCK_PHANDLE, CLOCK_PHANDLE])?;
        w.property_string_list("clock-names", strings(&["uartclk", "apb_pclk"]))?;
        w.end_node(uart)?;
    }

    let chosen = w.begin_node("chosen")?;
    w.property_string("bootargs", cfg.bootargs)?;
    if cfg.uart {
        w.property_string("stdout-path", &uart_path)?;
    }
    if let Some((start, len)) = cfg.initrd {
        w.property_u64("linux,initrd-start", start)?;
        w.property_u64("linux,initrd-end", start + len)?;
    }
    w.end_node(chosen)?;
    w.end_node(root)?;
    let blob = w.finish()?;
    if blob.len() as u64 > MAX_DTB_SIZE {
        return Err(GuestDtbError::TooLarge { len: blob.len() });
    }
    Ok(blob)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtb;

    fn cfg(cpus: u32) -> GuestDtbConfig<'static> {
        GuestDtbConfig {
            ram_base: virt::RAM_BASE,
            ram_size: 512 << 20,
            cpus,
            bootargs: "console=ttyAMA0 earlycon",
            initrd: Some((0x5f00_0000, 0x12_3456)),
            uart: true,
        }
    }

    fn reg(fdt: &dtb::Fdt<'_>, path: &str) -> Vec<(usize, Option<usize>)> {
        let node = fdt
            .find_node(path)
            .unwrap_or_else(|| panic!("{path} missing"));
        node.reg()
            .unwrap()
            .map(|r| (r.starting_address as usize, r.size))
            .collect()
    }

    #[test]
    fn describes_exactly_the_guest() {
        let blob = build(&cfg(2)).unwrap();
        let fdt = dtb::open(&blob).unwrap();
        assert_eq!(
            reg(&fdt, "/memory@40000000"),
            [(0x4000_0000, Some(512 << 20))]
        );
        assert_eq!(
            reg(&fdt, "/intc@8000000"),
            [(0x0800_0000, Some(0x1_0000)), (0x080A_0000, Some(0x4_0000))]
        );
        assert_eq!(reg(&fdt, "/pl011@9000000"), [(0x0900_0000, Some(0x1000))]);
        let cpus: Vec<_> = fdt
            .find_node("/cpus")
            .unwrap()
            .children()
            .map(|c| c.name)
            .collect();
        assert_eq!(cpus, ["cpu@0", "cpu@1"]);
        let chosen = fdt.find_node("/chosen").unwrap();
        assert_eq!(
            chosen.property("bootargs").unwrap().as_str(),
            Some("console=ttyAMA0 earlycon")
        );
        assert_eq!(
            chosen.property("stdout-path").unwrap().as_str(),
            Some("/pl011@9000000")
        );
        assert_eq!(
            chosen.property("linux,initrd-start").unwrap().as_usize(),
            Some(0x5f00_0000)
        );
        assert_eq!(
            chosen.property("linux,initrd-end").unwrap().as_usize(),
            Some(0x5f00_0000 + 0x12_3456)
        );
        let psci = fdt.find_node("/psci").unwrap();
        assert_eq!(psci.property("method").unwrap().as_str(), Some("hvc"));
        // Nothing of the host leaks in: exactly these top-level nodes.
        let top: Vec<_> = fdt
            .find_node("/")
            .unwrap()
            .children()
            .map(|c| c.name)
            .collect();
        assert_eq!(
            top,
            [
                "cpus",
                "psci",
                "memory@40000000",
                "intc@8000000",
                "timer",
                "apb-pclk",
                "pl011@9000000",
                "chosen"
            ]
        );
    }

    #[test]
    fn mpidrs_group_sixteen_per_cluster() {
        assert_eq!(vcpu_mpidr(0), 0);
        assert_eq!(vcpu_mpidr(15), 0xf);
        assert_eq!(vcpu_mpidr(16), 0x100);
        let blob = build(&cfg(17)).unwrap();
        let fdt = dtb::open(&blob).unwrap();
        assert!(fdt.find_node("/cpus/cpu@100").is_some());
    }

    #[test]
    fn no_uart_no_console_and_bad_cpu_counts_refused() {
        let mut c = cfg(1);
        c.uart = false;
        c.initrd = None;
        let blob = build(&c).unwrap();
        let fdt = dtb::open(&blob).unwrap();
        assert!(fdt.find_node("/pl011@9000000").is_none());
        assert!(
            fdt.find_node("/chosen")
                .unwrap()
                .property("linux,initrd-start")
                .is_none()
        );
        assert_eq!(build(&cfg(0)), Err(GuestDtbError::TooManyCpus { cpus: 0 }));
        let too_many = virt::MAX_VCPUS + 1;
        assert_eq!(
            build(&cfg(too_many)),
            Err(GuestDtbError::TooManyCpus { cpus: too_many })
        );
    }
}
