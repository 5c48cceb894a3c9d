//! Debian's arm64 kernels and busybox-static, fetched without root: `apt-get download` with the
//! architecture forced to arm64 and a private state and cache directory (so no `dpkg
//! --add-architecture` and no lock on the system's apt). The unpacked packages are kept; later
//! runs reuse them.
//!
//! The default kernel (`debian`) and busybox come from this host's own apt sources as they
//! are, under `<target>/guest-images/debian`. The other kernels come from another suite of the
//! same Debian archive: [`apt_sources`] finds the host's archive entry (its URI and keyring)
//! and a private sources file for the suite is written under
//! `<target>/guest-images/<kernel name>/apt`. busybox is always the host suite's: the
//! initramfs does not depend on the kernel.

use crate::apt_sources;
use crate::host::{is_root, which};
use crate::workspace::Workspace;
use anyhow::{Context, Result, bail};
use flate2::read::GzDecoder;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The meta-package that names Debian's current arm64 kernel package.
const KERNEL_META: &str = "linux-image-arm64";
const BUSYBOX: &str = "busybox-static";

/// Which of Debian's arm64 kernels a Linux guest boots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kernel {
    /// `debian`: the suite of the host's own apt sources (bookworm's 6.1 where this project
    /// is developed).
    #[default]
    Host,
    /// `debian-trixie`: Debian 13's (6.12).
    Trixie,
    /// `debian-unstable`: sid's, the newest Debian has.
    Unstable,
}

impl Kernel {
    pub const ALL: [Kernel; 3] = [Kernel::Host, Kernel::Trixie, Kernel::Unstable];

    /// The name `--kernel` and a test's `kernel` key take; also its cache directory's.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Host => "debian",
            Kernel::Trixie => "debian-trixie",
            Kernel::Unstable => "debian-unstable",
        }
    }

    pub fn from_name(name: &str) -> Option<Kernel> {
        Kernel::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The names, for messages: `debian, debian-trixie, debian-unstable`.
    pub fn names() -> String {
        Kernel::ALL.map(Kernel::name).join(", ")
    }

    /// The Debian suite to fetch from; `None` for the host's own sources.
    fn suite(self) -> Option<&'static str> {
        match self {
            Kernel::Host => None,
            Kernel::Trixie => Some("trixie"),
            Kernel::Unstable => Some("sid"),
        }
    }

    /// `<target>/guest-images/<name>`: the unpacked kernel and, for [`Kernel::Host`], busybox.
    fn dir(self, ws: &Workspace) -> PathBuf {
        ws.target_dir.join("guest-images").join(self.name())
    }
}

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

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
    format!(
        "the default guest is a Debian arm64 kernel ({}) with a busybox initramfs, fetched \
         with apt-get, which this host lacks; give --kernel PATH (an arm64 Linux Image) and \
         --initrd PATH (an initramfs), or --no-guest to boot the hypervisor alone",
        Kernel::names()
    )
}

/// `kernel` and busybox, downloaded and unpacked on first use.
pub fn images(ws: &Workspace, kernel: Kernel) -> Result<DebianImages> {
    let host_dir = Kernel::Host.dir(ws);
    let kernel_dir = kernel.dir(ws);
    let mut busybox = cached_busybox(&host_dir);
    let mut image = cached_kernel(&kernel_dir)?;
    if busybox.is_none() || image.is_none() {
        if which("apt-get").is_none() || which("dpkg-deb").is_none() {
            bail!("{}", no_apt_message());
        }
        // One `apt-get update` for whatever the host's sources provide.
        let mut from_host = Vec::new();
        if busybox.is_none() {
            from_host.push(Package::Busybox);
        }
        if image.is_none() && kernel == Kernel::Host {
            from_host.push(Package::Kernel);
        }
        if !from_host.is_empty() {
            fetch(ws, &host_dir, None, &from_host)?;
        }
        if let (None, Some(suite)) = (&image, kernel.suite()) {
            fetch(ws, &kernel_dir, Some(suite), &[Package::Kernel])?;
        }
        busybox = cached_busybox(&host_dir);
        image = cached_kernel(&kernel_dir)?;
    }
    let busybox = busybox.with_context(|| {
        format!(
            "the unpacked {BUSYBOX} in {} lacks bin/busybox",
            host_dir.display()
        )
    })?;
    let kernel = image.with_context(|| {
        format!(
            "the unpacked kernel package in {} has neither boot/vmlinuz-* nor \
             usr/lib/modules/*/vmlinuz",
            kernel_dir.join("kernel").display()
        )
    })?;
    Ok(DebianImages { kernel, busybox })
}

/// What [`fetch`] downloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Package {
    /// The package with the kernel that [`KERNEL_META`] currently names.
    Kernel,
    Busybox,
}

impl Package {
    /// Where it is unpacked, below its directory in `guest-images`.
    fn subdir(self) -> &'static str {
        match self {
            Package::Kernel => "kernel",
            Package::Busybox => "busybox",
        }
    }
}

/// Downloads `packages` and unpacks each into its subdirectory of `dir`. Without a `suite`
/// apt uses the host's sources, else a file for that suite of the host's Debian archive.
fn fetch(ws: &Workspace, dir: &Path, suite: Option<&str>, packages: &[Package]) -> Result<()> {
    let apt_dir = dir.join("apt");
    let sources = suite
        .map(|s| write_suite_sources(&apt_dir, s))
        .transpose()?;
    let apt = Apt::new(&apt_dir, sources.as_deref())?;
    let lists = match suite {
        None => "Debian arm64 package lists".to_string(),
        Some(s) => format!("Debian {s} arm64 package lists"),
    };
    eprintln!("fetching {lists} (once; cached in {})", ws.display(dir));
    let no_arm64 = || match &sources {
        None => format!(
            "this host's apt sources offer no arm64 packages ({}); Debian's mirrors carry \
             arm64, while Ubuntu keeps it on ports.ubuntu.com. Give --kernel PATH and --initrd PATH",
            apt_dir.display()
        ),
        Some(file) => format!(
            "the {lists} could not be had from the host's Debian archive (apt read {}, \
             written from the host's apt sources); give --kernel PATH",
            file.display()
        ),
    };
    apt.run("apt-get", &["update"]).with_context(no_arm64)?;
    for &package in packages {
        let name = match package {
            Package::Kernel => apt.kernel_package().with_context(no_arm64)?,
            Package::Busybox => BUSYBOX.to_string(),
        };
        eprintln!("fetching {name} (arm64)");
        let deb = apt.download(&name)?;
        unpack(&deb, &dir.join(package.subdir()))?;
    }
    Ok(())
}

/// The private sources file of a suite, in its apt directory.
const SUITE_SOURCES: &str = "debian.sources";

/// Writes `apt_dir/debian.sources` for `suite` of the host's Debian archive; returns its path.
fn write_suite_sources(apt_dir: &Path, suite: &str) -> Result<PathBuf> {
    let archive = apt_sources::host_archive()?;
    std::fs::create_dir_all(apt_dir)
        .with_context(|| format!("cannot create {}", apt_dir.display()))?;
    let path = apt_dir.join(SUITE_SOURCES);
    std::fs::write(&path, apt_sources::suite_sources(&archive, suite))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Unpacks `deb` into `out`, replacing what was there.
fn unpack(deb: &Path, out: &Path) -> Result<()> {
    let _ = std::fs::remove_dir_all(out);
    let status = Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb)
        .arg(out)
        .status()
        .context("cannot run dpkg-deb")?;
    if !status.success() {
        bail!("`dpkg-deb -x {}` failed", deb.display());
    }
    Ok(())
}

fn cached_busybox(dir: &Path) -> Option<PathBuf> {
    Some(dir.join("busybox/bin/busybox")).filter(|p| p.is_file())
}

/// The raw Image of the kernel package unpacked under `dir`, if it is.
fn cached_kernel(dir: &Path) -> Result<Option<PathBuf>> {
    let Some(vmlinuz) = find_vmlinuz(&dir.join("kernel")) else {
        return Ok(None);
    };
    raw_image(&vmlinuz, &dir.join("Image")).map(Some)
}

/// Where an unpacked kernel package keeps the kernel: `boot/vmlinuz-VERSION`, or
/// `usr/lib/modules/VERSION/vmlinuz` in packages that leave the copy to /boot to an install
/// hook (sid's 7.x). A package holds one kernel; were there several, the last by name.
fn find_vmlinuz(root: &Path) -> Option<PathBuf> {
    let in_boot = children(&root.join("boot")).filter(|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
    });
    let in_modules = children(&root.join("usr/lib/modules")).map(|d| d.join("vmlinuz"));
    let last = |paths: Vec<PathBuf>| paths.into_iter().filter(|p| p.is_file()).max();
    last(in_boot.collect()).or_else(|| last(in_modules.collect()))
}

/// The entries of `dir`; none if it cannot be read.
fn children(dir: &Path) -> impl Iterator<Item = PathBuf> + use<> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
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
    /// With `sources`, apt reads that file alone instead of the host's sources.
    fn new(dir: &Path, sources: Option<&Path>) -> Result<Self> {
        let state = dir.join("state");
        let cache = dir.join("cache");
        // Stays empty: apt would otherwise add the host's parts to `sources`.
        let no_parts = dir.join("sources.list.d");
        let dirs = [
            state.join("lists/partial"),
            cache.join("archives/partial"),
            dir.join("debs"),
        ];
        for d in dirs.iter().chain(sources.map(|_| &no_parts)) {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
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
        if let Some(sources) = sources {
            options.push(format!("Dir::Etc::SourceList={}", sources.display()));
            options.push(format!("Dir::Etc::SourceParts={}", no_parts.display()));
        }
        // As root apt drops to the `_apt` user to download, which cannot write our directory.
        if is_root() {
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

    /// The package holding the kernel's `boot/vmlinuz-*`: the versioned image package the
    /// meta-package depends on (`linux-image-6.1.0-NN-arm64`), or, where that package has
    /// become a meta-package itself (sid's 7.x), the `linux-binary-*` package it depends on.
    fn kernel_package(&self) -> Result<String> {
        let depends = self.run("apt-cache", &["depends", KERNEL_META])?;
        let image = kernel_from_depends(&depends).with_context(|| {
            format!("`apt-cache depends {KERNEL_META}` names no linux-image-*-arm64 package")
        })?;
        let depends = self.run("apt-cache", &["depends", &image])?;
        Ok(binary_from_depends(&image, &depends).unwrap_or(image))
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

/// The versioned image package among the `Depends:` lines of `apt-cache depends`
/// (`linux-image-6.1.0-57-arm64`, `linux-image-7.2.13+deb14-arm64`): a version follows
/// `linux-image-`, which tells it from other dependencies the meta-package may gain (sid's
/// also depends on `linux-base-arm64`).
fn kernel_from_depends(text: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .find(|p| {
            p.strip_prefix("linux-image-")
                .is_some_and(|v| v.starts_with(|c: char| c.is_ascii_digit()))
                && p.ends_with("-arm64")
        })
        .map(str::to_string)
}

/// The `linux-binary-*` package of the same version among the `Depends:` lines of `apt-cache
/// depends IMAGE`, if IMAGE (`linux-image-7.2.13+deb14-arm64`) is split that way.
fn binary_from_depends(image: &str, text: &str) -> Option<String> {
    let binary = format!("linux-binary-{}", image.strip_prefix("linux-image-")?);
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .any(|p| p.trim() == binary)
        .then_some(binary)
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
    fn the_kernel_package_is_found_among_several_depends() {
        // `apt-cache depends linux-image-arm64` for sid.
        let sid = "linux-image-arm64\n  Depends: linux-base-arm64\n  \
                   Depends: linux-image-7.2.13+deb14-arm64\n";
        assert_eq!(
            kernel_from_depends(sid).as_deref(),
            Some("linux-image-7.2.13+deb14-arm64")
        );
        // Neither an unversioned image package nor another architecture's.
        let other = "x\n  Depends: linux-image-arm64-unsigned\n  \
                     Depends: linux-image-6.12.43+deb13-amd64\n";
        assert_eq!(kernel_from_depends(other), None);
    }

    #[test]
    fn a_split_image_package_leads_to_its_binary_package() {
        // `apt-cache depends linux-image-7.2.13+deb14-arm64` for sid, shortened.
        let sid = "linux-image-7.2.13+deb14-arm64\n  PreDepends: linux-base\n \
                   |Depends: dracut\n  Depends: <linux-initramfs-tool>\n    dracut\n  \
                   Depends: linux-base-7.2.13+deb14-arm64\n  \
                   Depends: linux-binary-7.2.13+deb14-arm64\n  \
                   Depends: linux-modules-7.2.13+deb14-arm64\n  Recommends: apparmor\n";
        assert_eq!(
            binary_from_depends("linux-image-7.2.13+deb14-arm64", sid).as_deref(),
            Some("linux-binary-7.2.13+deb14-arm64")
        );
        // Older image packages hold the kernel themselves; another version's binary is not it.
        let trixie = "linux-image-6.12.117+deb13-arm64\n  Depends: kmod\n  \
                      Depends: linux-base\n  Depends: initramfs-tools\n";
        assert_eq!(
            binary_from_depends("linux-image-6.12.117+deb13-arm64", trixie),
            None
        );
        assert_eq!(
            binary_from_depends("linux-image-7.2.14+deb14-arm64", sid),
            None
        );
    }

    #[test]
    fn the_kernel_is_found_in_boot_or_in_the_modules_directory() {
        let dir = std::env::temp_dir().join(format!("xtask-vmlinuz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let file = |path: &str| {
            let path = dir.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, b"k").unwrap();
            path
        };
        assert_eq!(find_vmlinuz(&dir), None);
        std::fs::create_dir_all(dir.join("usr/lib/modules/7.2.13+deb14-arm64/kernel")).unwrap();
        assert_eq!(
            find_vmlinuz(&dir),
            None,
            "a modules directory without a kernel"
        );
        let split = file("usr/lib/modules/7.2.13+deb14-arm64/vmlinuz");
        assert_eq!(find_vmlinuz(&dir), Some(split));
        file("boot/config-6.1.0-57-arm64");
        let boot = file("boot/vmlinuz-6.1.0-57-arm64");
        assert_eq!(find_vmlinuz(&dir), Some(boot));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn kernels_are_named_and_cached_by_name() {
        for k in Kernel::ALL {
            assert_eq!(Kernel::from_name(k.name()), Some(k));
        }
        assert_eq!(Kernel::from_name("debian-sid"), None);
        assert_eq!(Kernel::default(), Kernel::Host);
        assert_eq!(Kernel::names(), "debian, debian-trixie, debian-unstable");
        // The default kernel keeps the cache directory it always had.
        let ws = Workspace {
            root: "/w".into(),
            target_dir: "/w/target".into(),
        };
        assert_eq!(
            Kernel::Host.dir(&ws),
            Path::new("/w/target/guest-images/debian")
        );
        assert_eq!(
            Kernel::Unstable.dir(&ws),
            Path::new("/w/target/guest-images/debian-unstable")
        );
        assert_eq!(
            Kernel::ALL.map(Kernel::suite),
            [None, Some("trixie"), Some("sid")]
        );
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
