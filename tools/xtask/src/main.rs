//! Developer tasks for the hypervisor, run as `cargo xtask <COMMAND>` (an alias in
//! `.cargo/config.toml`): build the EL2 image, boot it under QEMU, run the host and QEMU tests,
//! lint, benchmark. Big commands compose small ones: `test` builds every image variant its tests
//! need, then boots each the way `qemu` does.

mod build;
mod exit;
mod host_tests;
mod image;
mod process;
mod qemu;
mod runner;
mod size;
mod spec;
mod workspace;

use clap::Parser;
use std::process::ExitCode;

/// Developer tasks for the aarch64 EL2 hypervisor.
#[derive(Parser)]
#[command(name = "cargo xtask", version, about)]
enum Xtask {
    /// Build the hypervisor ELF and its flat arm64 Image (what QEMU `-kernel` and U-Boot `booti`
    /// load) and print their paths.
    Build(build::BuildArgs),
    /// Build, then boot the hypervisor under QEMU with the console on this terminal. Exits with
    /// the hypervisor's status: 0 after a clean shutdown, non-zero after a panic or an unexpected
    /// EL2 exception, 124 on --timeout. Quit QEMU by hand with Ctrl-A X.
    Qemu(qemu::QemuArgs),
    /// Run the host unit tests (`cargo test --workspace`), then the QEMU integration tests
    /// described by `tests/**/*.test`, in parallel. Logs go to <target>/qemu-logs/<test>.log;
    /// the last line is `N passed, M failed`, and the status is non-zero unless all pass.
    Test(runner::TestArgs),
}

fn main() -> ExitCode {
    let result = match Xtask::parse() {
        Xtask::Build(args) => build::run(&args),
        Xtask::Qemu(args) => qemu::run(&args),
        Xtask::Test(args) => runner::run(&args),
    };
    exit::report(result)
}
