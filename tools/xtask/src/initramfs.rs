//! The Linux guest's initramfs: a gzipped newc cpio archive (the format the kernel unpacks into
//! its root tmpfs) with busybox at `/bin/busybox`, `/bin/sh` linking to it, the directories
//! `/init` mounts on, `/dev/console` (the kernel opens it for init's stdio before anything
//! mounts devtmpfs), and `/init` itself from a recipe file `tests/linux/init-<recipe>.sh`.
//! The archive is written here rather than with `cpio`, which many hosts lack.

use anyhow::{Context, Result, bail};
use flate2::Compression;
use flate2::write::GzEncoder;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where recipes live, relative to the workspace root.
pub const RECIPE_DIR: &str = "tests/linux";
/// The programs of `tests/linux/progs`; a recipe that mentions `/bin/<name>` gets that one.
pub const PROGS: &[&str] = &["cntvct", "drain", "memtest", "workload"];

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

/// A newc ("070701") cpio archive being written. Every entry has owner root, mtime 0 and its own
/// inode number, so the same inputs give the same bytes.
pub struct Cpio {
    out: Vec<u8>,
    next_ino: u32,
}

impl Default for Cpio {
    fn default() -> Self {
        Self::new()
    }
}

impl Cpio {
    pub fn new() -> Self {
        Self {
            out: Vec::new(),
            next_ino: 1,
        }
    }

    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        let ino = self.next_ino;
        self.next_ino += 1;
        let nlink = if mode & S_IFDIR != 0 { 2 } else { 1 };
        let fields = [
            ino,
            mode,
            0,
            0,
            nlink,
            0,
            u32::try_from(data.len()).expect("initramfs files are far below 4 GiB"),
            0,
            0,
            rdev.0,
            rdev.1,
            u32::try_from(name.len() + 1).expect("short names"),
            0,
        ];
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    /// `path` without its leading `/`, as archives name entries.
    fn name(path: &str) -> &str {
        path.trim_start_matches('/')
    }

    pub fn dir(&mut self, path: &str) {
        self.entry(Self::name(path), S_IFDIR | 0o755, (0, 0), &[]);
    }

    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) {
        self.entry(Self::name(path), S_IFREG | mode, (0, 0), data);
    }

    pub fn symlink(&mut self, path: &str, target: &str) {
        self.entry(Self::name(path), S_IFLNK | 0o777, (0, 0), target.as_bytes());
    }

    pub fn char_dev(&mut self, path: &str, mode: u32, major: u32, minor: u32) {
        self.entry(Self::name(path), S_IFCHR | mode, (major, minor), &[]);
    }

    /// The archive with its `TRAILER!!!` entry.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        self.out
    }
}

/// The recipe file for `recipe`, or an error listing the recipes there are.
pub fn recipe_path(root: &Path, recipe: &str) -> Result<PathBuf> {
    let dir = root.join(RECIPE_DIR);
    let path = dir.join(format!("init-{recipe}.sh"));
    let valid = !recipe.is_empty()
        && recipe
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if valid && path.is_file() {
        return Ok(path);
    }
    let mut known: Vec<String> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    Some(name.strip_prefix("init-")?.strip_suffix(".sh")?.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    known.sort();
    bail!(
        "no initramfs recipe `{recipe}` (a file {RECIPE_DIR}/init-{recipe}.sh); the recipes are: {}",
        known.join(", ")
    )
}

/// The programs of [`PROGS`] that `script` runs.
pub fn progs_needed(script: &str) -> Vec<&'static str> {
    PROGS
        .iter()
        .copied()
        .filter(|p| script.contains(&format!("/bin/{p}")))
        .collect()
}

/// The gzipped archive for `init` (the script's text), with `busybox` and `progs`
/// (`(name, ELF)`, installed as `/bin/<name>`).
pub fn build(init: &str, busybox: &[u8], progs: &[(&str, Vec<u8>)]) -> Result<Vec<u8>> {
    if !init.starts_with("#!") {
        bail!("an /init script must start with `#!/bin/sh`");
    }
    let mut cpio = Cpio::new();
    for dir in [
        "/bin",
        "/sbin",
        "/usr",
        "/usr/bin",
        "/usr/sbin",
        "/dev",
        "/proc",
        "/sys",
        "/tmp",
        "/mnt",
        "/root",
        "/etc",
    ] {
        cpio.dir(dir);
    }
    cpio.char_dev("/dev/console", 0o600, 5, 1);
    cpio.char_dev("/dev/null", 0o666, 1, 3);
    cpio.file("/bin/busybox", 0o755, busybox);
    // Enough for the script's `#!` line; the script installs the other applets itself.
    cpio.symlink("/bin/sh", "busybox");
    for (name, elf) in progs {
        cpio.file(&format!("/bin/{name}"), 0o755, elf);
    }
    cpio.file("/init", 0o755, init.as_bytes());
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(&cpio.finish())
        .context("compressing the initramfs")?;
    gz.finish().context("compressing the initramfs")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An archive entry: name, mode, (rdevmajor, rdevminor), contents.
    type Entry = (String, u32, (u32, u32), Vec<u8>);

    /// A minimal newc reader: (name, mode, rdev, data) per entry, checking the format as the
    /// kernel's unpacker does (magic, 4-byte alignment of names and data).
    fn entries(bytes: &[u8]) -> Vec<Entry> {
        let mut out = Vec::new();
        let mut at = 0;
        loop {
            assert_eq!(&bytes[at..at + 6], b"070701", "magic at {at}");
            let field = |i: usize| {
                let s = std::str::from_utf8(&bytes[at + 6 + i * 8..at + 14 + i * 8]).unwrap();
                u32::from_str_radix(s, 16).unwrap() as usize
            };
            let (mode, size, namesize) = (field(1), field(6), field(11));
            let rdev = (field(9) as u32, field(10) as u32);
            let name_at = at + 110;
            let name = std::str::from_utf8(&bytes[name_at..name_at + namesize - 1]).unwrap();
            assert_eq!(bytes[name_at + namesize - 1], 0);
            let data_at = (name_at + namesize).next_multiple_of(4);
            let data = bytes[data_at..data_at + size].to_vec();
            at = (data_at + size).next_multiple_of(4);
            if name == "TRAILER!!!" {
                assert_eq!(at, bytes.len());
                return out;
            }
            out.push((name.to_string(), mode as u32, rdev, data));
        }
    }

    #[test]
    fn entries_round_trip_with_types_and_alignment() {
        let mut c = Cpio::new();
        c.dir("/dev");
        c.char_dev("/dev/console", 0o600, 5, 1);
        c.file("/a", 0o644, b"xyz");
        c.symlink("/bin/sh", "busybox");
        let e = entries(&c.finish());
        assert_eq!(e.len(), 4);
        assert_eq!(e[0].0, "dev");
        assert_eq!(e[0].1, S_IFDIR | 0o755);
        assert_eq!((e[1].1, e[1].2), (S_IFCHR | 0o600, (5, 1)));
        assert_eq!((e[2].0.as_str(), e[2].3.as_slice()), ("a", &b"xyz"[..]));
        assert_eq!(e[3].1 & 0o170_000, S_IFLNK);
        assert_eq!(e[3].3, b"busybox");
    }

    #[test]
    fn the_initramfs_has_busybox_init_and_console() {
        use std::io::Read;
        let gz = build(
            "#!/bin/sh\necho hi\n",
            b"BUSYBOX",
            &[("cntvct", b"CNT".to_vec())],
        )
        .unwrap();
        let mut cpio = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut cpio)
            .unwrap();
        let e = entries(&cpio);
        let find = |n: &str| e.iter().find(|x| x.0 == n).unwrap_or_else(|| panic!("{n}"));
        assert_eq!(find("bin/busybox").3, b"BUSYBOX");
        assert_eq!(find("bin/busybox").1, S_IFREG | 0o755);
        assert_eq!(find("init").3, b"#!/bin/sh\necho hi\n");
        assert_eq!(find("bin/cntvct").3, b"CNT");
        assert_eq!(find("dev/console").2, (5, 1));
        assert!(build("echo no shebang", b"", &[]).is_err());
        assert_eq!(
            progs_needed("#!/bin/sh\n/bin/memtest 256\n/bin/cntvct x\n"),
            ["cntvct", "memtest"]
        );
        assert!(progs_needed("#!/bin/sh\ncntvct\n").is_empty());
    }

    #[test]
    fn recipes_are_files_and_unknown_ones_are_listed() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        assert!(recipe_path(&root, "shell").is_ok());
        let e = recipe_path(&root, "nope").unwrap_err().to_string();
        assert!(e.contains("shell") && e.contains("test"), "{e}");
        assert!(recipe_path(&root, "../shell").is_err());
    }
}
