//! The QEMU binary every run needs: found, installed where that is ours to do, or else named
//! with the command that installs it here.

use crate::exit::Exit;
use crate::host::{is_root, which};
use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::Command;

const QEMU_BIN: &str = "qemu-system-aarch64";

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
