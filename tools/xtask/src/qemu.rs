//! Booting the hypervisor under QEMU's `virt` machine: finding (or installing) QEMU, the command
//! line, and the interactive `cargo xtask qemu` run.

use crate::build::{self, Variant};
use crate::debian;
use crate::exit::Exit;
use crate::guest::{self, Guest};
use crate::process::{self, Outcome};
use crate::size::{self, Size};
use crate::snapshot::Restore;
use crate::workspace::{Workspace, which};
use anyhow::{Context, Result, bail};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const QEMU_BIN: &str = "qemu-system-aarch64";

/// Machine options every run gets unless it overrides them: EL2 exists (otherwise the firmware
/// enters at EL1 and the hypervisor refuses to run) and the GIC is v3 (the vGIC emulates v3).
pub const DEFAULT_MACHINE: &[(&str, &str)] = &[("virtualization", "on"), ("gic-version", "3")];

/// `-cpu`: every feature TCG has; `pauth-impdef` makes pointer authentication cheap (the QARMA
/// default dominates run time otherwise).
const CPU: &str = "max,pauth-impdef=on";

#[derive(clap::Args)]
pub struct QemuArgs {
    /// Physical CPUs of the emulated machine [default: the guest's vCPUs, at least 2].
    #[arg(long)]
    pub smp: Option<u32>,
    /// RAM of the emulated machine, with a unit (512M, 4G) [default: 1G, more if the guest
    /// needs it].
    #[arg(long, value_parser = size::parse)]
    pub mem: Option<Size>,
    /// The guest's kernel: `debian` (the host's Debian release's, bookworm's here),
    /// `debian-trixie` or `debian-unstable` (sid's), fetched with apt-get on first use and
    /// kept in target/guest-images/<NAME>; or the PATH of an arm64 Image (plain or gzipped).
    /// A value with a `/`, or naming an existing file, is a path [default: debian].
    #[arg(long, value_name = "NAME|PATH", value_parser = parse_kernel_arg)]
    pub kernel: Option<KernelArg>,
    /// The guest's initramfs [default: with a Debian kernel, one built from busybox and the
    /// --initramfs recipe; with --kernel PATH, none].
    #[arg(long, value_name = "PATH")]
    pub initrd: Option<PathBuf>,
    /// The recipe for the default initramfs: tests/linux/init-<RECIPE>.sh.
    #[arg(
        long,
        value_name = "RECIPE",
        default_value = "shell",
        conflicts_with = "initrd"
    )]
    pub initramfs: String,
    /// The guest's kernel command line [default: console=ttyAMA0 earlycon=pl011,0x9000000].
    #[arg(long, value_name = "STR")]
    pub append: Option<String>,
    /// The hypervisor's own options, as the boot DTB's /chosen/bootargs: `hyp.log=LEVEL` and
    /// the monitor's unattended `hyp.*` operations (hyp/src/monitor/bootargs.rs), separated by
    /// spaces.
    #[arg(long, value_name = "STR", conflicts_with = "native")]
    pub hyp_args: Option<String>,
    /// The guest's vCPUs.
    #[arg(long, default_value_t = 2)]
    pub guest_cpus: u32,
    /// The guest's RAM, with a unit.
    #[arg(long, default_value = "512M", value_parser = size::parse)]
    pub guest_mem: Size,
    /// Boot the hypervisor alone, with no guest.
    #[arg(long, conflicts_with_all = ["kernel", "initrd", "append", "native"])]
    pub no_guest: bool,
    /// Resume the guest saved in the snapshot FILE (written by the monitor's `snapshot` or
    /// `hyp.snapshot=`) instead of booting one. Repeat it to restore a chain: the full
    /// snapshot first, then its diffs in the order they were taken (`--restore base.snap
    /// --restore d1.snap --restore d2.snap`). Every file is validated first and the list must
    /// link up (each diff relative to the file before it, all of one VM); a corrupt,
    /// truncated or other-version file, a diff without its base or a broken chain is refused
    /// before QEMU starts. The headers give the guest's name, vCPUs and RAM, and each file is
    /// loaded as one of the domain's `hyp,snapshot` modules, in order.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with_all = [
            "kernel", "initrd", "initramfs", "append", "guest_cpus", "guest_mem", "no_guest",
            "native",
        ]
    )]
    pub restore: Vec<PathBuf>,
    /// Run the guest directly under QEMU at EL1, without the hypervisor (for comparison).
    #[arg(long)]
    pub native: bool,
    /// Stop before the first instruction and wait for GDB on localhost:1234; prints the gdb
    /// command line to use.
    #[arg(long)]
    pub gdb: bool,
    /// Deterministic timing: the virtual clock advances by instructions executed
    /// (`-icount shift=4,sleep=off`), as the benchmarks run.
    #[arg(long)]
    pub icount: bool,
    /// Stop QEMU after SECS seconds and exit with status 124.
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// Build and boot the optimized (`release`) hypervisor.
    #[arg(long)]
    pub release: bool,
    /// Cargo features of the hyp crate, comma-separated (e.g. test-panic).
    #[arg(long, value_delimiter = ',')]
    pub features: Vec<String>,
    /// Arguments passed to QEMU as they are, after `--`.
    #[arg(last = true, value_name = "QEMU_ARGS")]
    pub extra: Vec<String>,
}

/// What `--kernel` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelArg {
    Debian(debian::Kernel),
    File(PathBuf),
}

/// `--kernel`'s value, looking at the file system for a file of that name.
fn parse_kernel_arg(value: &str) -> Result<KernelArg, String> {
    kernel_arg(value, Path::new(value).is_file())
}

/// `--kernel`'s value: a file when it has a `/` or `is_file` (so `--kernel` never passes over a
/// file the user pointed at; a kernel's name has no `/`), else one of Debian's kernels by name.
/// Anything else is an error naming both forms: a mistyped name would otherwise fail later as
/// a missing file.
fn kernel_arg(value: &str, is_file: bool) -> Result<KernelArg, String> {
    if is_file || value.contains('/') {
        return Ok(KernelArg::File(value.into()));
    }
    debian::Kernel::from_name(value)
        .map(KernelArg::Debian)
        .ok_or_else(|| {
            format!(
                "`{value}` is neither a file nor a Debian kernel ({})",
                debian::Kernel::names()
            )
        })
}

/// One QEMU run of the hypervisor image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Machine {
    pub kernel: PathBuf,
    pub smp: u32,
    pub mem: Size,
    /// `key=value` options overriding or extending [`DEFAULT_MACHINE`].
    pub machine_options: Vec<(String, String)>,
    pub icount: bool,
    pub gdb: bool,
    /// `-initrd`: only for a guest run natively; under the hypervisor images go in `loaders`.
    pub initrd: Option<PathBuf>,
    /// `-append`: the kernel command line, likewise only for a native guest.
    pub append: Option<String>,
    /// `-dtb`: the boot device tree, describing the hypervisor's guests.
    pub dtb: Option<PathBuf>,
    /// The hypervisor's own command line, its boot DTB's `/chosen/bootargs`: written into `dtb`
    /// by [`Guest::add_to`], or without a `dtb` given to QEMU as `-append`, which QEMU puts
    /// there in the tree it makes.
    pub hyp_args: String,
    /// Files QEMU copies into RAM at an address before the first instruction.
    pub loaders: Vec<(PathBuf, u64)>,
    pub extra: Vec<String>,
}

impl Machine {
    pub fn new(kernel: PathBuf) -> Self {
        Self {
            kernel,
            smp: 1,
            mem: Size::from_mib(1024),
            machine_options: Vec::new(),
            icount: false,
            gdb: false,
            initrd: None,
            append: None,
            dtb: None,
            hyp_args: String::new(),
            loaders: Vec::new(),
            extra: Vec::new(),
        }
    }

    /// The `-M` value: `virt` with the defaults, each overridden by a same-named option.
    pub fn machine_arg(&self) -> String {
        let mut options: Vec<(String, String)> = DEFAULT_MACHINE
            .iter()
            .map(|&(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for (key, value) in &self.machine_options {
            match options.iter_mut().find(|(k, _)| k == key) {
                Some(slot) => slot.1 = value.clone(),
                None => options.push((key.clone(), value.clone())),
            }
        }
        let mut arg = String::from("virt");
        for (key, value) in options {
            arg.push_str(&format!(",{key}={value}"));
        }
        arg
    }

    /// QEMU's arguments. `-semihosting` is how the hypervisor reports a failure as QEMU's exit
    /// status; `-nographic` puts the console and QEMU's monitor on stdio (Ctrl-A X quits).
    pub fn args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = [
            "-M".to_string(),
            self.machine_arg(),
            "-cpu".into(),
            CPU.into(),
            "-smp".into(),
            self.smp.to_string(),
            "-m".into(),
            self.mem.qemu_arg(),
            "-nographic".into(),
            "-semihosting".into(),
        ]
        .into_iter()
        .map(OsString::from)
        .collect();
        args.push("-kernel".into());
        args.push(self.kernel.clone().into());
        if let Some(initrd) = &self.initrd {
            args.extend(["-initrd".into(), initrd.clone().into()]);
        }
        let hyp_append = Some(&self.hyp_args).filter(|a| self.dtb.is_none() && !a.is_empty());
        if let Some(append) = self.append.as_ref().or(hyp_append) {
            args.extend(["-append".into(), append.into()]);
        }
        if let Some(dtb) = &self.dtb {
            args.extend(["-dtb".into(), dtb.clone().into()]);
        }
        for (file, addr) in &self.loaders {
            // QEMU option values escape a comma by doubling it.
            let file = file.to_string_lossy().replace(',', ",,");
            args.push("-device".into());
            args.push(format!("loader,file={file},addr={addr:#x},force-raw=on").into());
        }
        if self.icount {
            args.extend(["-icount".into(), "shift=4,sleep=off".into()]);
        }
        if self.gdb {
            args.extend(["-s".into(), "-S".into()]);
        }
        args.extend(self.extra.iter().map(OsString::from));
        args
    }

    /// The arguments that make QEMU write this machine's device tree to `out` and exit: the
    /// same `-M`, CPU, CPU count and RAM, since the tree describes all of them.
    pub fn dump_dtb_args(&self, out: &Path) -> Vec<OsString> {
        let machine = format!(
            "{},dumpdtb={}",
            self.machine_arg(),
            out.to_string_lossy().replace(',', ",,")
        );
        [
            "-M",
            &machine,
            "-cpu",
            CPU,
            "-smp",
            &self.smp.to_string(),
            "-m",
            &self.mem.qemu_arg(),
            "-nographic",
        ]
        .into_iter()
        .map(OsString::from)
        .collect()
    }
}

/// The QEMU binary: `$QEMU` if set, else `qemu-system-aarch64` on PATH, installed first when
/// this is a Debian/Ubuntu machine we are root on. Otherwise exits 2 naming the install command.
pub fn find_qemu() -> Result<PathBuf> {
    if let Some(qemu) = std::env::var_os("QEMU") {
        let qemu = PathBuf::from(qemu);
        return match Command::new(&qemu).arg("--version").output() {
            Ok(out) if out.status.success() => Ok(qemu),
            Ok(out) => Err(Exit::with_message(
                2,
                format!(
                    "QEMU={} does not run (`--version` exited with {}); point QEMU at a working \
                     qemu-system-aarch64 or unset it",
                    qemu.display(),
                    out.status
                ),
            )
            .into()),
            Err(e) => Err(Exit::with_message(
                2,
                format!(
                    "cannot run QEMU={} ({e}); point QEMU at a qemu-system-aarch64 binary or \
                     unset it",
                    qemu.display()
                ),
            )
            .into()),
        };
    }
    if let Some(qemu) = which(QEMU_BIN) {
        return Ok(qemu);
    }
    if is_root() && which("apt-get").is_some() {
        install_with_apt()?;
        if let Some(qemu) = which(QEMU_BIN) {
            return Ok(qemu);
        }
        bail!("installed qemu-system-arm but {QEMU_BIN} is still not on PATH");
    }
    Err(Exit::with_message(2, missing_qemu_message()).into())
}

fn missing_qemu_message() -> String {
    let managers = [
        (
            "apt-get",
            "Debian/Ubuntu",
            "sudo apt-get install -y qemu-system-arm",
        ),
        ("dnf", "Fedora", "sudo dnf install -y qemu-system-aarch64"),
        ("brew", "macOS", "brew install qemu"),
    ];
    let here: Vec<_> = managers
        .iter()
        .filter(|(tool, _, _)| which(tool).is_some())
        .collect();
    let shown = if here.is_empty() {
        managers.iter().collect()
    } else {
        here
    };
    let mut msg = format!("{QEMU_BIN} is not on PATH; install it with");
    for (_, system, command) in shown {
        msg.push_str(&format!("\n    {command}    ({system})"));
    }
    msg.push_str(&format!("\nor set QEMU=/path/to/{QEMU_BIN}"));
    msg
}

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

fn install_with_apt() -> Result<()> {
    let install = || {
        eprintln!("{QEMU_BIN} is missing; running `apt-get install -y qemu-system-arm`");
        Command::new("apt-get")
            .args(["install", "-y", "qemu-system-arm"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("cannot run apt-get")
    };
    if install()?.success() {
        return Ok(());
    }
    // A fresh machine has no package lists yet; fetching them is slow, so only when needed.
    eprintln!("running `apt-get update` and trying again");
    let updated = Command::new("apt-get")
        .arg("update")
        .status()
        .context("cannot run apt-get update")?;
    if !updated.success() || !install()?.success() {
        bail!(
            "could not install qemu-system-arm with apt-get; install it by hand \
             (`apt-get update && apt-get install -y qemu-system-arm`) or set QEMU=/path/to/{QEMU_BIN}"
        );
    }
    Ok(())
}

/// The command line as a shell would take it, for logs and for copying.
pub fn command_line(program: &Path, args: &[OsString]) -> String {
    std::iter::once(program.as_os_str())
        .chain(args.iter().map(OsString::as_os_str))
        .map(|a| {
            let a = a.to_string_lossy();
            if a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_=,./:+@".contains(c))
            {
                a.into_owned()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The guest `cargo xtask qemu` boots, from its options.
fn guest_from_args(ws: &Workspace, args: &QemuArgs) -> Result<Guest> {
    if args.guest_cpus == 0 {
        bail!("--guest-cpus must be at least 1");
    }
    let kernel = args
        .kernel
        .clone()
        .unwrap_or(KernelArg::Debian(debian::Kernel::default()));
    let images = match (&kernel, &args.initrd) {
        (KernelArg::File(kernel), initrd) => {
            let unpacked = ws.target_dir.join("guest-images/kernel-arg.Image");
            if let Some(dir) = unpacked.parent() {
                std::fs::create_dir_all(dir)?;
            }
            guest::Images {
                kernel: debian::raw_image(kernel, &unpacked)?,
                initrd: initrd.clone(),
            }
        }
        (KernelArg::Debian(kernel), Some(initrd)) => guest::Images {
            kernel: debian::images(ws, *kernel)?.kernel,
            initrd: Some(initrd.clone()),
        },
        (KernelArg::Debian(kernel), None) => guest::linux(ws, *kernel, &args.initramfs)?,
    };
    Ok(Guest {
        images,
        cpus: args.guest_cpus,
        mem: args.guest_mem,
        append: args
            .append
            .clone()
            .unwrap_or_else(|| guest::LINUX_APPEND.to_string()),
    })
}

pub fn run(args: &QemuArgs) -> Result<()> {
    let ws = Workspace::locate()?;
    let qemu = find_qemu()?;
    if args.smp == Some(0) {
        bail!("--smp must be at least 1");
    }
    // Before anything is built: a bad file is the user's to fix, and the error says how.
    let restore = if args.restore.is_empty() {
        None
    } else {
        Some(Restore::from_files(&args.restore)?)
    };
    let guest = if args.no_guest || restore.is_some() {
        None
    } else {
        Some(guest_from_args(&ws, args)?)
    };
    let guest_cpus = guest
        .as_ref()
        .map(|g| g.cpus)
        .or(restore.as_ref().map(|r| r.cpus));
    let smp = args
        .smp
        .unwrap_or_else(|| guest_cpus.map_or(2, |cpus| cpus.max(2)));
    let mut machine = Machine {
        smp,
        mem: args.mem.unwrap_or(Size::from_mib(1024)),
        icount: args.icount,
        gdb: args.gdb,
        hyp_args: args.hyp_args.clone().unwrap_or_default(),
        extra: args.extra.clone(),
        ..Machine::new(PathBuf::new())
    };
    let mut elf = None;
    match &guest {
        Some(g) if args.native => machine = g.native(machine),
        _ => {
            let hyp = build::build_hyp(&ws, &Variant::new(args.features.clone()), args.release)?;
            machine.kernel = hyp.bin.clone();
            elf = Some(hyp.elf);
            let dtb = ws.target_dir.join("guest-images/boot.dtb");
            if let Some(g) = &guest {
                machine.mem = g.machine_mem(args.mem)?;
                g.add_to(&qemu, &mut machine, &dtb)?;
            } else if let Some(r) = &restore {
                let domain = r.domain();
                machine.mem = args.mem.unwrap_or_else(|| guest::machine_mem(&domain));
                guest::add_domain(&domain, &qemu, &mut machine, &dtb)?;
            }
        }
    }
    let qemu_args = machine.args();
    eprintln!("+ {}", command_line(&qemu, &qemu_args));
    if args.gdb {
        eprintln!("QEMU waits for GDB on localhost:1234; in another terminal run:");
        let symbols = elf.as_deref().unwrap_or(&machine.kernel);
        eprintln!(
            "    gdb-multiarch {} -ex 'target remote :1234'",
            symbols.display()
        );
        if which("gdb-multiarch").is_none() {
            eprintln!("    (gdb-multiarch is not installed: apt-get install -y gdb-multiarch)");
        }
    }
    if guest.is_some() || restore.is_some() {
        eprintln!("(the guest's `poweroff` ends the run; quit QEMU by hand with Ctrl-A X)");
    } else {
        eprintln!("(quit QEMU with Ctrl-A X)");
    }
    let mut child = Command::new(&qemu)
        .args(&qemu_args)
        .spawn()
        .with_context(|| format!("cannot start {}", qemu.display()))?;
    let outcome = process::wait(&mut child, args.timeout.map(Duration::from_secs))?;
    match outcome {
        Outcome::Exited(0) => Ok(()),
        Outcome::Exited(code) => {
            eprintln!("QEMU exited with status {code}");
            Err(Exit::silent(outcome.exit_code()).into())
        }
        Outcome::TimedOut => {
            eprintln!(
                "\nstopped QEMU after the {}s timeout",
                args.timeout.unwrap_or(0)
            );
            Err(Exit::silent(outcome.exit_code()).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_names_pick_debian_kernels_and_anything_with_a_slash_or_a_file_is_a_path() {
        let debian = |k| Ok(KernelArg::Debian(k));
        let file = |p: &str| Ok(KernelArg::File(p.into()));
        assert_eq!(kernel_arg("debian", false), debian(debian::Kernel::Host));
        assert_eq!(
            kernel_arg("debian-trixie", false),
            debian(debian::Kernel::Trixie)
        );
        assert_eq!(
            kernel_arg("debian-unstable", false),
            debian(debian::Kernel::Unstable)
        );
        assert_eq!(kernel_arg("debian", true), file("debian"));
        assert_eq!(kernel_arg("./debian", false), file("./debian"));
        assert_eq!(kernel_arg("/boot/vmlinuz", false), file("/boot/vmlinuz"));
        assert_eq!(kernel_arg("Image", true), file("Image"));
        let e = kernel_arg("debian-sid", false).unwrap_err();
        assert!(
            e.contains(
                "neither a file nor a Debian kernel (debian, debian-trixie, debian-unstable)"
            ),
            "{e}"
        );
    }

    fn strings(args: Vec<OsString>) -> Vec<String> {
        args.into_iter().map(|a| a.into_string().unwrap()).collect()
    }

    #[test]
    fn the_default_machine_has_el2_and_gicv3() {
        let m = Machine::new("hyp.bin".into());
        assert_eq!(
            strings(m.args()),
            [
                "-M",
                "virt,virtualization=on,gic-version=3",
                "-cpu",
                "max,pauth-impdef=on",
                "-smp",
                "1",
                "-m",
                "1024M",
                "-nographic",
                "-semihosting",
                "-kernel",
                "hyp.bin"
            ]
        );
    }

    #[test]
    fn machine_options_override_defaults_in_place_and_extend_them() {
        let m = Machine {
            machine_options: vec![
                ("virtualization".into(), "off".into()),
                ("highmem".into(), "off".into()),
            ],
            ..Machine::new("hyp.bin".into())
        };
        assert_eq!(
            m.machine_arg(),
            "virt,virtualization=off,gic-version=3,highmem=off"
        );
    }

    #[test]
    fn icount_gdb_and_extra_arguments_come_after_the_kernel() {
        let m = Machine {
            smp: 4,
            mem: size::parse("4G").unwrap(),
            icount: true,
            gdb: true,
            extra: vec!["-d".into(), "guest_errors".into()],
            ..Machine::new("hyp.bin".into())
        };
        let args = strings(m.args());
        let tail = &args[args.iter().position(|a| a == "hyp.bin").unwrap() + 1..];
        assert_eq!(
            tail,
            [
                "-icount",
                "shift=4,sleep=off",
                "-s",
                "-S",
                "-d",
                "guest_errors"
            ]
        );
        assert!(args.windows(2).any(|w| w == ["-smp", "4"]));
        assert!(args.windows(2).any(|w| w == ["-m", "4096M"]));
    }

    #[test]
    fn guests_add_a_dtb_and_loaders_and_native_runs_an_initrd() {
        let m = Machine {
            dtb: Some("boot.dtb".into()),
            loaders: vec![
                ("Image".into(), 0x7e00_0000),
                ("a,b.cpio".into(), 0x7de0_0000),
            ],
            ..Machine::new("hyp.bin".into())
        };
        let args = strings(m.args());
        let tail = &args[args.iter().position(|a| a == "hyp.bin").unwrap() + 1..];
        assert_eq!(
            tail,
            [
                "-dtb",
                "boot.dtb",
                "-device",
                "loader,file=Image,addr=0x7e000000,force-raw=on",
                "-device",
                "loader,file=a,,b.cpio,addr=0x7de00000,force-raw=on"
            ]
        );
        let native = Machine {
            initrd: Some("initrd".into()),
            append: Some("console=ttyAMA0 quiet".into()),
            ..Machine::new("Image".into())
        };
        let args = strings(native.args());
        let tail = &args[args.iter().position(|a| a == "Image").unwrap() + 1..];
        assert_eq!(
            tail,
            ["-initrd", "initrd", "-append", "console=ttyAMA0 quiet"]
        );
    }

    #[test]
    fn hypervisor_bootargs_without_a_boot_dtb_go_to_qemus_tree() {
        let alone = Machine {
            hyp_args: "hyp.log=debug".into(),
            ..Machine::new("hyp.bin".into())
        };
        let args = strings(alone.args());
        assert!(args.windows(2).any(|w| w == ["-append", "hyp.log=debug"]));
        // With our own DTB, Guest::add_to has written them there; QEMU must not add them.
        let with_dtb = Machine {
            dtb: Some("boot.dtb".into()),
            ..alone
        };
        assert!(!strings(with_dtb.args()).contains(&"-append".to_string()));
    }

    #[test]
    fn the_dtb_dump_describes_the_same_machine() {
        let m = Machine {
            smp: 2,
            machine_options: vec![("dtb-randomness".into(), "off".into())],
            ..Machine::new("hyp.bin".into())
        };
        assert_eq!(
            strings(m.dump_dtb_args(Path::new("/t/x.dtb"))),
            [
                "-M",
                "virt,virtualization=on,gic-version=3,dtb-randomness=off,dumpdtb=/t/x.dtb",
                "-cpu",
                "max,pauth-impdef=on",
                "-smp",
                "2",
                "-m",
                "1024M",
                "-nographic"
            ]
        );
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        qemu: QemuArgs,
    }

    #[test]
    fn restore_repeats_for_a_chain_in_the_order_given_and_excludes_a_boot() {
        use clap::Parser;
        let args = Cli::try_parse_from([
            "qemu",
            "--restore",
            "base.snap",
            "--restore",
            "d1.snap",
            "--restore=d2.snap",
        ])
        .unwrap()
        .qemu;
        assert_eq!(
            args.restore,
            [
                PathBuf::from("base.snap"),
                "d1.snap".into(),
                "d2.snap".into()
            ]
        );
        assert!(
            Cli::try_parse_from(["qemu"])
                .unwrap()
                .qemu
                .restore
                .is_empty()
        );
        for other in ["--kernel=Image", "--guest-cpus=4", "--no-guest", "--native"] {
            assert!(
                Cli::try_parse_from(["qemu", "--restore", "a.snap", other]).is_err(),
                "{other}"
            );
        }
    }

    #[test]
    fn command_lines_quote_what_a_shell_would_split() {
        let line = command_line(
            Path::new("qemu"),
            &["-M".into(), "virt,x=on".into(), "a b".into(), "it's".into()],
        );
        assert_eq!(line, r"qemu -M virt,x=on 'a b' 'it'\''s'");
    }
}
