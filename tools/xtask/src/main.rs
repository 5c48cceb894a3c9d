//! Developer tasks for the hypervisor, run as `cargo xtask <COMMAND>` (an alias in
//! `.cargo/config.toml`): build the EL2 image, boot it under QEMU, run the host and QEMU tests,
//! lint, benchmark. Big commands compose small ones: `test` builds every image variant its tests
//! need, then boots each the way `qemu` does.

mod apt_sources;
mod bench;
mod bootdtb;
mod build;
mod check;
mod debian;
mod dirtylog;
mod exit;
mod guest;
mod guest_images;
mod host;
mod host_tests;
mod image;
mod initramfs;
mod machine;
mod process;
mod qemu;
mod qemu_bin;
mod runner;
mod size;
mod snapshot;
mod spec;
mod workspace;

use clap::Parser;
use std::process::ExitCode;

/// Developer tasks for the aarch64 EL2 hypervisor.
#[derive(Parser)]
#[command(bin_name = "cargo xtask", version)]
enum Xtask {
    /// Build the hypervisor ELF and flat arm64 Image, print their paths.
    ///
    /// The flat Image is what QEMU `-kernel` and U-Boot `booti` load; the ELF is for GDB.
    Build(build::BuildArgs),
    /// Build, then boot the hypervisor under QEMU with a Linux guest on this terminal.
    ///
    /// The guest is Debian's arm64 kernel with a busybox initramfs (fetched with apt-get on
    /// first use), 2 vCPUs and 512 MiB, described to the hypervisor in the boot DTB the
    /// dom0less way; its shell's `poweroff` ends the run. `--restore FILE` resumes the guest a
    /// snapshot file saved instead; repeated (`--restore BASE --restore DIFF ...`), a chain of
    /// a full snapshot and its diffs. Exits with the hypervisor's status:
    /// 0 after a clean shutdown, non-zero after a panic or an unexpected EL2 exception, 124 on
    /// --timeout. Quit QEMU by hand with Ctrl-A X.
    /// QEMU is `$QEMU` if set, else qemu-system-aarch64 (installed with apt-get when missing
    /// and run as root on Debian/Ubuntu).
    Qemu(qemu::QemuArgs),
    /// Run the host unit tests, then the QEMU integration tests under tests/.
    ///
    /// Host tests are `cargo test --workspace`; QEMU tests are the `tests/**/*.test` files
    /// (format: tests/README.md), run in parallel, each with a timeout and its log in
    /// <target>/qemu-logs/<test>.log. The last line is `N passed, M failed`; the status is
    /// non-zero unless all pass.
    Test(runner::TestArgs),
    /// Check formatting, run clippy (host and aarch64) and build the hypervisor.
    ///
    /// `cargo fmt --all --check`, clippy with `-D warnings` on the host (all targets) and for
    /// the aarch64 hypervisor, rustfmt and clippy for the guest crates with workspaces of their
    /// own (tests/guests, tests/linux/progs), and the aarch64 build with its flat image. Runs every step and
    /// names the ones that failed.
    Check,
    /// Run the benchmarks.
    ///
    /// The host criterion benchmark of the stage-2 code, and guest boots under QEMU -icount
    /// (one counter tick per instruction) natively and under the hypervisor: Linux to its init
    /// banner, and the bare-metal `bench` guest. Ends with a markdown table (or --json);
    /// `--list` shows them all.
    Bench(bench::BenchArgs),
    /// Describe snapshot files: header (name, vCPUs, RAM, counter, kind, ids, live), vCPUs,
    /// sections and pages; with several (a full snapshot, then its diffs in order), also
    /// whether they form a chain a restore takes, or why not.
    ///
    /// Each file is validated with the hypervisor's own parser first; an invalid one prints the
    /// parser's error and exits with status 1, as do files that do not form a chain.
    SnapshotInfo(snapshot::InfoArgs),
    /// Check that every page write a `workload --pagelog` run logged on the console is in the
    /// hypervisor's dirty-log harvests (the `hyp.dirty-log=FILE` file).
    ///
    /// Prints a one-line summary (harvests, batches and page writes checked, batches that could
    /// not be); exits with status 1 naming the first missed writes, a malformed file, or a run
    /// with too little checked.
    DirtyCheck(dirtylog::CheckArgs),
}

fn main() -> ExitCode {
    let result = match Xtask::parse() {
        Xtask::Build(args) => build::run(&args),
        Xtask::Qemu(args) => qemu::run(&args),
        Xtask::Test(args) => runner::run(&args),
        Xtask::Check => check::run(),
        Xtask::Bench(args) => bench::run(&args),
        Xtask::SnapshotInfo(args) => snapshot::info(&args),
        Xtask::DirtyCheck(args) => dirtylog::run(&args),
    };
    exit::report(result)
}
