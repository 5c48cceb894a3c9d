//! Building the hypervisor: one cargo build per feature set ("variant"), each result copied out
//! of cargo's output directory (the next variant's build overwrites it) and converted to the
//! flat image loaders boot.

use crate::image;
use crate::workspace::Workspace;
use anyhow::{Context, Result, bail};
use std::fmt;
use std::path::PathBuf;

/// The hypervisor's target: EL2 code must not touch FP/SIMD registers (they are the guest's),
/// and `aarch64-unknown-none` emits NEON in memcpy.
pub const HYP_TARGET: &str = "aarch64-unknown-none-softfloat";

#[derive(clap::Args)]
pub struct BuildArgs {
    /// Build with optimizations (the `release` profile).
    #[arg(long)]
    pub release: bool,
    /// Cargo features of the hyp crate, comma-separated (e.g. test-panic).
    #[arg(long, value_delimiter = ',')]
    pub features: Vec<String>,
}

/// A build of the hypervisor with one set of cargo features.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Variant {
    features: Vec<String>,
}

impl Variant {
    pub fn new(features: impl IntoIterator<Item = String>) -> Self {
        let mut features: Vec<String> = features
            .into_iter()
            .map(|f| f.trim().to_string())
            .filter(|f| !f.is_empty())
            .collect();
        features.sort();
        features.dedup();
        Self { features }
    }
}

/// The name used in file names and messages: `default`, or the features joined by `+`.
impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.features.is_empty() {
            f.write_str("default")
        } else {
            f.write_str(&self.features.join("+"))
        }
    }
}

#[derive(Clone, Debug)]
pub struct HypImage {
    /// The linked ELF, for GDB.
    pub elf: PathBuf,
    /// The flat arm64 Image, for QEMU `-kernel`.
    pub bin: PathBuf,
}

pub fn run(args: &BuildArgs) -> Result<()> {
    let ws = Workspace::locate()?;
    let hyp = build_hyp(&ws, &Variant::new(args.features.clone()), args.release)?;
    println!("{}", ws.display(&hyp.elf));
    println!("{}", ws.display(&hyp.bin));
    Ok(())
}

/// Builds `variant` and leaves `hyp-<variant>.elf` and `.bin` in `<target>/images/<profile>/`.
pub fn build_hyp(ws: &Workspace, variant: &Variant, release: bool) -> Result<HypImage> {
    ws.require_target(HYP_TARGET)?;
    let profile = if release { "release" } else { "debug" };
    let mut cargo = ws.cargo();
    cargo.args(["build", "-p", "hyp", "--bin", "hyp", "--target", HYP_TARGET]);
    if release {
        cargo.arg("--release");
    }
    if !variant.features.is_empty() {
        cargo.args(["--features", &variant.features.join(",")]);
    }
    let status = cargo.status().context("cannot run `cargo build`")?;
    if !status.success() {
        bail!(
            "building the hypervisor ({variant}, {profile}) failed; the compiler's messages are above"
        );
    }

    let built = ws.target_dir.join(HYP_TARGET).join(profile).join("hyp");
    let out_dir = ws.target_dir.join("images").join(profile);
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let elf = out_dir.join(format!("hyp-{variant}.elf"));
    let bin = out_dir.join(format!("hyp-{variant}.bin"));
    std::fs::copy(&built, &elf)
        .with_context(|| format!("cannot copy {} to {}", built.display(), elf.display()))?;
    let bytes = std::fs::read(&elf).with_context(|| format!("cannot read {}", elf.display()))?;
    let flat = image::flat_image(&bytes)
        .with_context(|| format!("cannot make a flat image of {}", ws.display(&elf)))?;
    std::fs::write(&bin, flat).with_context(|| format!("cannot write {}", bin.display()))?;
    Ok(HypImage { elf, bin })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_are_named_by_their_sorted_unique_features() {
        assert_eq!(Variant::new(Vec::new()).to_string(), "default");
        let v = Variant::new([
            "test-panic".into(),
            " ".into(),
            "a".into(),
            "test-panic".into(),
        ]);
        assert_eq!(v.to_string(), "a+test-panic");
        assert_eq!(v, Variant::new(["a".into(), "test-panic".into()]));
    }
}
