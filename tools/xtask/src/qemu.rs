//! `cargo xtask qemu`: build the hypervisor and boot it under QEMU with one guest on this
//! terminal (Debian's kernel and a busybox initramfs, files given on the command line, or a
//! snapshot chain to restore), or the guest alone natively, or the hypervisor alone.

use crate::build::{self, Variant};
use crate::debian;
use crate::exit::Exit;
use crate::guest::{self, Guest};
use crate::guest_images::{self, Images};
use crate::host::which;
use crate::machine::{Machine, command_line};
use crate::process::{self, Outcome};
use crate::qemu_bin::find_qemu;
use crate::size::{self, Size};
use crate::snapshot::Restore;
use crate::workspace::Workspace;
use anyhow::{Context, Result, bail};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

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
    /// the monitor's unattended `hyp.*` operations (hyp-formats/src/monitor/bootargs.rs),
    /// separated by spaces.
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
            Images {
                kernel: debian::raw_image(kernel, &unpacked)?,
                initrd: initrd.clone(),
            }
        }
        (KernelArg::Debian(kernel), Some(initrd)) => Images {
            kernel: debian::images(ws, *kernel)?.kernel,
            initrd: Some(initrd.clone()),
        },
        (KernelArg::Debian(kernel), None) => guest_images::linux(ws, *kernel, &args.initramfs)?,
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
    let (machine, elf) = machine(&ws, &qemu, args, guest.as_ref(), restore.as_ref())?;
    let qemu_args = machine.args();
    eprintln!("+ {}", command_line(&qemu, &qemu_args));
    if args.gdb {
        print_gdb_command(elf.as_deref().unwrap_or(&machine.kernel));
    }
    if guest.is_some() || restore.is_some() {
        eprintln!("(the guest's `poweroff` ends the run; quit QEMU by hand with Ctrl-A X)");
    } else {
        eprintln!("(quit QEMU with Ctrl-A X)");
    }
    boot(&qemu, &qemu_args, args.timeout)
}

/// The machine the options describe, and the hypervisor's ELF (its symbols) unless the guest
/// runs natively: the hypervisor is built, and the guest or the restored domain is added to
/// the boot DTB.
fn machine(
    ws: &Workspace,
    qemu: &Path,
    args: &QemuArgs,
    guest: Option<&Guest>,
    restore: Option<&Restore>,
) -> Result<(Machine, Option<PathBuf>)> {
    let guest_cpus = guest.map(|g| g.cpus).or(restore.map(|r| r.cpus));
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
    if let Some(g) = guest.filter(|_| args.native) {
        return Ok((g.native(machine), None));
    }
    let hyp = build::build_hyp(ws, &Variant::new(args.features.clone()), args.release)?;
    machine.kernel = hyp.bin.clone();
    let dtb = ws.target_dir.join("guest-images/boot.dtb");
    if let Some(g) = guest {
        machine.mem = g.machine_mem(args.mem)?;
        g.add_to(qemu, &mut machine, &dtb)?;
    } else if let Some(r) = restore {
        let domain = r.domain();
        machine.mem = args.mem.unwrap_or_else(|| guest::machine_mem(&domain));
        guest::add_domain(&domain, qemu, &mut machine, &dtb)?;
    }
    Ok((machine, Some(hyp.elf)))
}

/// How to attach GDB, with the file that has the symbols of what QEMU boots.
fn print_gdb_command(symbols: &Path) {
    eprintln!("QEMU waits for GDB on localhost:1234; in another terminal run:");
    eprintln!(
        "    gdb-multiarch {} -ex 'target remote :1234'",
        symbols.display()
    );
    if which("gdb-multiarch").is_none() {
        eprintln!("    (gdb-multiarch is not installed: apt-get install -y gdb-multiarch)");
    }
}

/// Runs QEMU on this terminal; an exit status other than 0 (or the timeout's) becomes the
/// xtask's.
fn boot(qemu: &Path, qemu_args: &[OsString], timeout: Option<u64>) -> Result<()> {
    let mut child = Command::new(qemu)
        .args(qemu_args)
        .spawn()
        .with_context(|| format!("cannot start {}", qemu.display()))?;
    let outcome = process::wait(&mut child, timeout.map(Duration::from_secs))?;
    match outcome {
        Outcome::Exited(0) => Ok(()),
        Outcome::Exited(code) => {
            eprintln!("QEMU exited with status {code}");
            Err(Exit::silent(outcome.exit_code()).into())
        }
        Outcome::TimedOut => {
            eprintln!("\nstopped QEMU after the {}s timeout", timeout.unwrap_or(0));
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
}
