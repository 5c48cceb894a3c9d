//! Debian's arm64 kernel and busybox-static, fetched without root: `apt-get download` against
//! this host's own apt sources, with the architecture forced to arm64 and a private state and
//! cache directory under `<target>/guest-images/debian/apt` (so no `dpkg --add-architecture`
//! and no lock on the system's apt). The unpacked packages are kept; later runs reuse them.

use crate::workspace::{Workspace, which};
use anyhow::{Context, Result, bail};
use flate2::read::GzDecoder;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The meta-package that names Debian's current arm64 kernel package.
const KERNEL_META: &str = "linux-image-arm64";
const BUSYBOX: &str = "busybox-static";

/// The unpacked images.
#[derive(Clone, Debug)]
pub struct DebianImages {
    /// An uncompressed arm64 Image.
    pub kernel: PathBuf,
    /// A static aarch64 busybox.
    pub busybox: PathBuf,
}

/// The message for hosts that cannot fetch the default guest.
pub fn no_apt_message() -> String {
    "the default guest is Debian's arm64 kernel with a busybox initramfs, fetched with apt-get, \
     which this host lacks; give --kernel PATH (an arm64 Linux Image) and --initrd PATH \
     (an initramfs), or --no-guest to boot the hypervisor alone"
        .to_string()
}

/// The kernel and busybox, downloaded and unpacked on first use.
pub fn images(ws: &Workspace) -> Result<DebianImages> {
    let dir = ws.target_dir.join("guest-images/debian");
    if let Some(images) = cached(&dir)? {
        return Ok(images);
    }
    if which("apt-get").is_none() || which("dpkg-deb").is_none() {
        bail!("{}", no_apt_message());
    }
    let apt = Apt::new(&dir.join("apt"))?;
    eprintln!(
        "fetching Debian arm64 package lists (once; cached in {})",
        ws.display(&dir)
    );
    let no_arm64 = || {
        format!(
            "this host's apt sources offer no arm64 packages ({}); Debian's mirrors carry \
             arm64, while Ubuntu keeps it on ports.ubuntu.com. Give --kernel PATH and --initrd PATH",
            dir.join("apt").display()
        )
    };
    apt.run("apt-get", &["update"]).with_context(no_arm64)?;
    let kernel_pkg = apt.kernel_package().with_context(no_arm64)?;
    for (package, into) in [(kernel_pkg.as_str(), "kernel"), (BUSYBOX, "busybox")] {
        eprintln!("fetching {package} (arm64)");
        let deb = apt.download(package)?;
        let out = dir.join(into);
        let _ = std::fs::remove_dir_all(&out);
        let status = Command::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(&out)
            .status()
            .context("cannot run dpkg-deb")?;
        if !status.success() {
            bail!("`dpkg-deb -x {}` failed", deb.display());
        }
    }
    cached(&dir)?.with_context(|| {
        format!(
            "the unpacked packages in {} lack boot/vmlinuz-* or bin/busybox",
            dir.display()
        )
    })
}

/// The images when both packages are already unpacked under `dir`.
fn cached(dir: &Path) -> Result<Option<DebianImages>> {
    let busybox = dir.join("busybox/bin/busybox");
    let Ok(entries) = std::fs::read_dir(dir.join("kernel/boot")) else {
        return Ok(None);
    };
    let mut vmlinuz: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .collect();
    vmlinuz.sort();
    let (Some(vmlinuz), true) = (vmlinuz.pop(), busybox.is_file()) else {
        return Ok(None);
    };
    let kernel = raw_image(&vmlinuz, &dir.join("Image"))?;
    Ok(Some(DebianImages { kernel, busybox }))
}

/// `path` itself when it is an uncompressed arm64 Image, else its gzip contents written to
/// `unpacked` (some distributions ship `vmlinuz` gzipped; the hypervisor boots raw Images).
pub fn raw_image(path: &Path, unpacked: &Path) -> Result<PathBuf> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if is_arm64_image(&bytes) {
        return Ok(path.to_path_buf());
    }
    if bytes.starts_with(&[0x1f, 0x8b]) {
        if unpacked.is_file()
            && unpacked.metadata()?.modified()? >= path.metadata()?.modified()?
            && is_arm64_image(&std::fs::read(unpacked)?)
        {
            return Ok(unpacked.to_path_buf());
        }
        let mut raw = Vec::new();
        GzDecoder::new(&bytes[..])
            .read_to_end(&mut raw)
            .with_context(|| format!("cannot gunzip {}", path.display()))?;
        if is_arm64_image(&raw) {
            std::fs::write(unpacked, raw)
                .with_context(|| format!("cannot write {}", unpacked.display()))?;
            return Ok(unpacked.to_path_buf());
        }
    }
    bail!(
        "{} is not an arm64 Linux Image (no \"ARM\\x64\" magic at offset 56, plain or gzipped)",
        path.display()
    )
}

fn is_arm64_image(bytes: &[u8]) -> bool {
    bytes.get(crate::image::MAGIC_OFFSET..crate::image::MAGIC_OFFSET + 4)
        == Some(&crate::image::MAGIC[..])
}

/// apt-get and apt-cache with private state, for arm64 only.
struct Apt {
    dir: PathBuf,
    options: Vec<String>,
}

impl Apt {
    fn new(dir: &Path) -> Result<Self> {
        let state = dir.join("state");
        let cache = dir.join("cache");
        for d in [
            state.join("lists/partial"),
            cache.join("archives/partial"),
            dir.join("debs"),
        ] {
            std::fs::create_dir_all(&d)
                .with_context(|| format!("cannot create {}", d.display()))?;
        }
        let status = state.join("status");
        if !status.is_file() {
            std::fs::write(&status, "")
                .with_context(|| format!("cannot create {}", status.display()))?;
        }
        let mut options: Vec<String> = [
            "APT::Architecture=arm64".to_string(),
            "APT::Architectures::=arm64".to_string(),
            format!("Dir::State={}", state.display()),
            format!("Dir::Cache={}", cache.display()),
            format!("Dir::State::status={}", status.display()),
            "Debug::NoLocking=1".to_string(),
        ]
        .to_vec();
        // As root apt drops to the `_apt` user to download, which cannot write our directory.
        if crate::qemu::is_root() {
            options.push("APT::Sandbox::User=root".to_string());
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            options,
        })
    }

    fn command(&self, tool: &str) -> Command {
        let mut cmd = Command::new(tool);
        for o in &self.options {
            cmd.args(["-o", o]);
        }
        cmd.current_dir(self.dir.join("debs"));
        cmd
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<String> {
        let out = self
            .command(tool)
            .args(args)
            .output()
            .with_context(|| format!("cannot run {tool}"))?;
        if !out.status.success() {
            bail!(
                "`{tool} {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The versioned kernel package the meta-package depends on (`linux-image-6.1.0-NN-arm64`).
    fn kernel_package(&self) -> Result<String> {
        let depends = self.run("apt-cache", &["depends", KERNEL_META])?;
        kernel_from_depends(&depends).with_context(|| {
            format!("`apt-cache depends {KERNEL_META}` names no linux-image-*-arm64 package")
        })
    }

    /// Downloads `package` into `debs/` and returns the .deb's path.
    fn download(&self, package: &str) -> Result<PathBuf> {
        let debs = self.dir.join("debs");
        let prefix = format!("{package}_");
        let find = || -> Result<Option<PathBuf>> {
            Ok(std::fs::read_dir(&debs)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .find(|p| {
                    p.file_name().is_some_and(|n| {
                        let n = n.to_string_lossy();
                        n.starts_with(&prefix) && n.ends_with(".deb")
                    })
                }))
        };
        if let Some(deb) = find()? {
            return Ok(deb);
        }
        self.run("apt-get", &["download", package])?;
        find()?.with_context(|| format!("apt-get download {package} left no .deb"))
    }
}

fn kernel_from_depends(text: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .find(|p| p.starts_with("linux-image-") && p.ends_with("-arm64"))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use std::io::Write;

    #[test]
    fn the_kernel_package_comes_from_the_meta_package() {
        let text = "linux-image-arm64\n  Depends: linux-image-6.1.0-57-arm64\n  Recommends: x\n";
        assert_eq!(
            kernel_from_depends(text).as_deref(),
            Some("linux-image-6.1.0-57-arm64")
        );
        assert_eq!(kernel_from_depends("linux-image-arm64\n"), None);
    }

    #[test]
    fn gzipped_images_are_unpacked_and_other_files_refused() {
        let dir = std::env::temp_dir().join(format!("xtask-debian-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut image = vec![0u8; 64];
        image[56..60].copy_from_slice(b"ARM\x64");
        let raw = dir.join("raw");
        std::fs::write(&raw, &image).unwrap();
        assert_eq!(raw_image(&raw, &dir.join("out")).unwrap(), raw);

        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(&image).unwrap();
        let zipped = dir.join("zipped");
        std::fs::write(&zipped, gz.finish().unwrap()).unwrap();
        let out = raw_image(&zipped, &dir.join("out")).unwrap();
        assert_eq!(std::fs::read(out).unwrap(), image);

        let junk = dir.join("junk");
        std::fs::write(&junk, b"MZ not a kernel").unwrap();
        let e = raw_image(&junk, &dir.join("out2")).unwrap_err().to_string();
        assert!(e.contains("not an arm64 Linux Image"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
