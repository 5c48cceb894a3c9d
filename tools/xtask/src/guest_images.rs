//! The files a guest boots from, made ready: Debian's kernel with an initramfs built from a
//! recipe (and the test programs it names), or a bare-metal test guest from `tests/guests`
//! built and flattened. Debian's packages themselves are fetched by `debian`.

use crate::build::HYP_TARGET;
use crate::debian;
use crate::image;
use crate::initramfs;
use crate::workspace::Workspace;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

/// The bare-metal test guests' own workspace.
const GUESTS_MANIFEST: &str = "tests/guests/Cargo.toml";
const PROGS_MANIFEST: &str = "tests/linux/progs/Cargo.toml";
const PROGS_TARGET: &str = "aarch64-unknown-none";

/// The files a guest boots from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Images {
    /// An arm64 Image (flat, with the Image header).
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
}

/// Debian's `kernel` with the initramfs from `tests/linux/init-<recipe>.sh`.
pub fn linux(ws: &Workspace, kernel: debian::Kernel, recipe: &str) -> Result<Images> {
    let script_path = initramfs::recipe_path(&ws.root, recipe)?;
    let debian = debian::images(ws, kernel)?;
    let initrd = build_initramfs(ws, recipe, &script_path, &debian.busybox)?;
    Ok(Images {
        kernel: debian.kernel,
        initrd: Some(initrd),
    })
}

/// `<target>/guest-images/initramfs-<recipe>.cpio.gz`, rebuilt every time (it takes a moment
/// and a stale one would hide an edit to the recipe).
pub fn build_initramfs(
    ws: &Workspace,
    recipe: &str,
    script_path: &Path,
    busybox: &Path,
) -> Result<PathBuf> {
    let script = std::fs::read_to_string(script_path)
        .with_context(|| format!("cannot read {}", script_path.display()))?;
    let busybox_bytes =
        std::fs::read(busybox).with_context(|| format!("cannot read {}", busybox.display()))?;
    let progs = build_progs(ws, &initramfs::progs_needed(&script))?;
    let archive = initramfs::build(&script, &busybox_bytes, &progs)
        .with_context(|| format!("initramfs recipe {}", ws.display(script_path)))?;
    let dir = ws.target_dir.join("guest-images");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let out = dir.join(format!("initramfs-{recipe}.cpio.gz"));
    std::fs::write(&out, archive).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(out)
}

/// The static aarch64 Linux ELFs `names` of `tests/linux/progs`, as `(name, bytes)`.
pub fn build_progs(ws: &Workspace, names: &[&'static str]) -> Result<Vec<(&'static str, Vec<u8>)>> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    ws.require_target(PROGS_TARGET)?;
    let target_dir = ws.target_dir.join("progs");
    let status = ws
        .cargo()
        .args([
            "build",
            "--release",
            "--quiet",
            "--manifest-path",
            PROGS_MANIFEST,
        ])
        .args(["--target", PROGS_TARGET, "--target-dir"])
        .arg(&target_dir)
        .status()
        .context("cannot run `cargo build`")?;
    if !status.success() {
        bail!("building {PROGS_MANIFEST} failed; the compiler's messages are above");
    }
    names
        .iter()
        .map(|&name| {
            let elf = target_dir.join(PROGS_TARGET).join("release").join(name);
            let bytes =
                std::fs::read(&elf).with_context(|| format!("cannot read {}", elf.display()))?;
            Ok((name, bytes))
        })
        .collect()
}

/// The bare-metal test guest `name` (`tests/guests/src/bin/<name>.rs`), built and flattened to
/// `<target>/guests/<name>.bin`.
pub fn bare_metal(ws: &Workspace, name: &str) -> Result<Images> {
    let manifest = ws.root.join(GUESTS_MANIFEST);
    if !manifest.is_file() {
        bail!("there are no bare-metal test guests yet: {GUESTS_MANIFEST} does not exist");
    }
    let source = ws.root.join(format!("tests/guests/src/bin/{name}.rs"));
    if !source.is_file() {
        bail!(
            "no bare-metal test guest `{name}` (tests/guests/src/bin/{name}.rs); the guests are: {}",
            bare_metal_names(ws).join(", ")
        );
    }
    ws.require_target(HYP_TARGET)?;
    let target_dir = ws.target_dir.join("guests");
    let status = ws
        .cargo()
        .args([
            "build",
            "--release",
            "--quiet",
            "--manifest-path",
            GUESTS_MANIFEST,
        ])
        .args(["--target", HYP_TARGET, "--bin", name, "--target-dir"])
        .arg(&target_dir)
        .status()
        .context("cannot run `cargo build`")?;
    if !status.success() {
        bail!("building the test guest `{name}` failed; the compiler's messages are above");
    }
    let elf = target_dir.join(HYP_TARGET).join("release").join(name);
    let bytes = std::fs::read(&elf).with_context(|| format!("cannot read {}", elf.display()))?;
    let flat = image::flat_image(&bytes)
        .with_context(|| format!("cannot make a flat image of {}", ws.display(&elf)))?;
    let bin = target_dir.join(format!("{name}.bin"));
    std::fs::write(&bin, flat).with_context(|| format!("cannot write {}", bin.display()))?;
    Ok(Images {
        kernel: bin,
        initrd: None,
    })
}

/// The bare-metal test guests there are, sorted.
pub fn bare_metal_names(ws: &Workspace) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(ws.root.join("tests/guests/src/bin"))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.strip_suffix(".rs").map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}
