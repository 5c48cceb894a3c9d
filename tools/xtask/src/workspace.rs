//! Where the workspace and its build outputs are, and the preconditions every command checks
//! before doing real work (a Rust target that is not installed fails late and obscurely otherwise).

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Workspace {
    pub root: PathBuf,
    pub target_dir: PathBuf,
}

impl Workspace {
    /// The workspace that contains this xtask (`tools/xtask` two levels below the root), so the
    /// commands work from any directory.
    pub fn locate() -> Result<Self> {
        let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
        let root = manifest_dir.join("../..");
        let root = root
            .canonicalize()
            .with_context(|| format!("cannot find the workspace root at {}", root.display()))?;
        if !root.join("Cargo.toml").is_file() || !root.join("hyp/Cargo.toml").is_file() {
            bail!(
                "{} is not the hypervisor workspace (no Cargo.toml with hyp/ beside it); \
                 run `cargo xtask` from inside the workspace",
                root.display()
            );
        }
        let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) => root.join(dir),
            None => root.join("target"),
        };
        Ok(Self { root, target_dir })
    }

    /// A `cargo` command run at the workspace root, so `rust-toolchain.toml` picks the toolchain.
    pub fn cargo(&self) -> Command {
        let mut cmd = Command::new("cargo");
        cmd.current_dir(&self.root);
        cmd
    }

    /// `path` relative to the workspace root when it is inside it, for short messages.
    pub fn display<'a>(&self, path: &'a Path) -> std::path::Display<'a> {
        path.strip_prefix(&self.root).unwrap_or(path).display()
    }

    /// Fails unless the standard library for `target` is installed in the toolchain that
    /// `rust-toolchain.toml` selects.
    pub fn require_target(&self, target: &str) -> Result<()> {
        let out = Command::new("rustc")
            .args(["--print", "sysroot"])
            .current_dir(&self.root)
            .output()
            .context("cannot run `rustc`; install Rust with rustup (https://rustup.rs)")?;
        if !out.status.success() {
            bail!(
                "`rustc --print sysroot` failed: {}\n{}",
                String::from_utf8_lossy(&out.stderr).trim(),
                self.toolchain_fix()
            );
        }
        let sysroot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if !sysroot.join("lib/rustlib").join(target).is_dir() {
            bail!(
                "the Rust target {target} is not installed in {}\n{}",
                sysroot.display(),
                self.toolchain_fix()
            );
        }
        Ok(())
    }

    /// Fails unless the toolchain's `component` (rustfmt, clippy) answers `cargo SUB --version`.
    pub fn require_component(&self, component: &str, sub: &str) -> Result<()> {
        let ok = self
            .cargo()
            .args([sub, "--version"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            bail!(
                "the Rust component {component} is not installed (`cargo {sub}` does not run)\n{}",
                self.toolchain_fix()
            );
        }
        Ok(())
    }

    /// What installs the pinned toolchain with every target and component it needs.
    fn toolchain_fix(&self) -> String {
        format!(
            "rust-toolchain.toml pins the release with its targets and components; install them \
             with `rustup toolchain install` in {} (rustup 1.28 or newer)",
            self.root.display()
        )
    }
}
