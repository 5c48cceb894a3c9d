//! One guest VM (its images, vCPUs, RAM and command line) and the two ways to run it: under
//! the hypervisor, as a dom0less domain in the boot DTB with its images loaded high in machine
//! RAM, or natively, directly at EL1 under QEMU, for comparison.

use crate::bootdtb::{self, Domain, ModuleFile, ModuleKind};
use crate::guest_images::Images;
use crate::machine::{Machine, command_line};
use crate::size::Size;
use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::Command;

/// Linux's console: the PL011 (physical natively, virtual under the hypervisor), with early
/// output from the first instructions on, which is what shows where a failing boot stopped.
pub const LINUX_APPEND: &str = "console=ttyAMA0 earlycon=pl011,0x9000000";
pub const LINUX_MEM_MIB: u64 = 512;
pub const BARE_METAL_MEM_MIB: u64 = 64;
/// The domain's name: the hypervisor prefixes the guest's console lines with `domU1| `.
pub const DOMAIN_NAME: &str = "domU1";

/// One guest VM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Guest {
    pub images: Images,
    pub cpus: u32,
    pub mem: Size,
    /// The kernel command line (`bootargs`).
    pub append: String,
}

fn file_size(path: &Path) -> Result<u64> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.len() == 0 {
        bail!("{} is empty", path.display());
    }
    Ok(meta.len())
}

impl Guest {
    fn domain(&self) -> Result<Domain> {
        let mut modules = vec![ModuleFile {
            kind: ModuleKind::Kernel,
            path: self.images.kernel.clone(),
            size: file_size(&self.images.kernel)?,
        }];
        if let Some(initrd) = &self.images.initrd {
            modules.push(ModuleFile {
                kind: ModuleKind::Ramdisk,
                path: initrd.clone(),
                size: file_size(initrd)?,
            });
        }
        Ok(Domain {
            name: DOMAIN_NAME.to_string(),
            cpus: self.cpus,
            mem: self.mem.bytes(),
            bootargs: self.append.clone(),
            modules,
        })
    }

    /// The machine RAM to run this guest under the hypervisor: `given`, or else the default
    /// 1 GiB grown in 256 MiB steps until everything fits.
    pub fn machine_mem(&self, given: Option<Size>) -> Result<Size> {
        if let Some(mem) = given {
            return Ok(mem);
        }
        Ok(machine_mem(&self.domain()?))
    }

    /// Adds this guest to `machine` (which boots the hypervisor), as [`add_domain`] does.
    pub fn add_to(&self, qemu_bin: &Path, machine: &mut Machine, dtb: &Path) -> Result<()> {
        add_domain(&self.domain()?, qemu_bin, machine, dtb)
    }

    /// A machine running this guest directly at EL1 (no EL2, so QEMU implements PSCI itself),
    /// with as many CPUs and as much RAM as the guest gets under the hypervisor.
    pub fn native(&self, mut machine: Machine) -> Machine {
        machine.kernel = self.images.kernel.clone();
        machine.initrd = self.images.initrd.clone();
        machine.append = Some(self.append.clone()).filter(|a| !a.is_empty());
        machine.smp = self.cpus;
        machine.mem = self.mem;
        machine
            .machine_options
            .push(("virtualization".into(), "off".into()));
        machine
    }
}

/// The machine RAM that holds `domain` under the hypervisor: the default 1 GiB grown in
/// 256 MiB steps until everything fits.
pub fn machine_mem(domain: &Domain) -> Size {
    let needed = bootdtb::required_mem(std::slice::from_ref(domain));
    let step = 256 << 20;
    Size::from_mib((needed.div_ceil(step).max(4) * step) >> 20)
}

/// Adds `domain` to `machine` (which boots the hypervisor): dumps QEMU's device tree for the
/// machine into `dtb` with the domain node and the machine's `hyp_args` added, and loads the
/// module files where the node says they are.
pub fn add_domain(
    domain: &Domain,
    qemu_bin: &Path,
    machine: &mut Machine,
    dtb: &Path,
) -> Result<()> {
    let placed = bootdtb::place(std::slice::from_ref(domain), machine.mem.bytes())?;
    let base = dump_dtb(qemu_bin, machine, dtb)?;
    let blob = bootdtb::with_domains(&base, &machine.hyp_args, &placed)?;
    std::fs::write(dtb, blob).with_context(|| format!("cannot write {}", dtb.display()))?;
    machine.dtb = Some(dtb.to_path_buf());
    for m in &placed[0].modules {
        machine.loaders.push((m.file.path.clone(), m.addr));
    }
    Ok(())
}

/// QEMU's device tree for `machine` (same -M options, CPUs and RAM), dumped through `out`.
fn dump_dtb(qemu_bin: &Path, machine: &Machine, out: &Path) -> Result<Vec<u8>> {
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let _ = std::fs::remove_file(out);
    let args = machine.dump_dtb_args(out);
    let result = Command::new(qemu_bin)
        .args(&args)
        .output()
        .with_context(|| format!("cannot start {}", qemu_bin.display()))?;
    if !result.status.success() || !out.is_file() {
        bail!(
            "QEMU did not dump its device tree ({}): {}",
            command_line(qemu_bin, &args),
            String::from_utf8_lossy(&result.stderr).trim()
        );
    }
    std::fs::read(out).with_context(|| format!("cannot read {}", out.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guest(dir: &Path) -> Guest {
        std::fs::create_dir_all(dir).unwrap();
        let kernel = dir.join("Image");
        std::fs::write(&kernel, vec![0u8; 3 << 20]).unwrap();
        let initrd = dir.join("initrd");
        std::fs::write(&initrd, [1u8; 100]).unwrap();
        Guest {
            images: Images {
                kernel,
                initrd: Some(initrd),
            },
            cpus: 2,
            mem: Size::from_mib(512),
            append: "console=ttyAMA0".into(),
        }
    }

    #[test]
    fn machine_ram_defaults_to_1g_and_grows_for_big_guests() {
        let dir = std::env::temp_dir().join(format!("xtask-guest-{}", std::process::id()));
        let mut g = guest(&dir);
        assert_eq!(g.machine_mem(None).unwrap(), Size::from_mib(1024));
        assert_eq!(
            g.machine_mem(Some(Size::from_mib(300))).unwrap(),
            Size::from_mib(300)
        );
        g.mem = Size::from_mib(1024);
        // 130 MiB low, 6 MiB of modules, 1 GiB of guest, 64 MiB headroom: 1224 MiB -> 1280.
        assert_eq!(g.machine_mem(None).unwrap(), Size::from_mib(1280));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_native_run_gives_the_guest_the_whole_machine_at_el1() {
        let dir = std::env::temp_dir().join(format!("xtask-native-{}", std::process::id()));
        let g = guest(&dir);
        let m = g.native(Machine::new("hyp.bin".into()));
        assert_eq!(m.kernel, g.images.kernel);
        assert_eq!(m.initrd, g.images.initrd);
        assert_eq!((m.smp, m.mem), (2, Size::from_mib(512)));
        assert!(m.machine_arg().contains("virtualization=off"));
        assert_eq!(m.append.as_deref(), Some("console=ttyAMA0"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
