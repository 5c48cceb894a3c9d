//! Snapshot files on the host (format: `hyp-formats/src/snapshot`): read and validated with the
//! hypervisor's own parser, so a corrupt, truncated or other-version file is refused with the
//! parser's words before QEMU starts; a chain (a full snapshot, then diffs) checked to link up
//! with [`Chain`] the way the hypervisor will; turned into the dom0less domain a restore boots
//! (`cargo xtask qemu --restore`, the tests' `then-restore`); described for people
//! (`cargo xtask snapshot-info`).

use crate::bootdtb::{Domain, ModuleFile, ModuleKind};
use crate::exit::Exit;
use anyhow::{Context, Result};
use hyp_formats::snapshot::{
    Chain, ChainError, HEADER_LEN, Kind, PowerState, SECTION_HEADER_LEN, SectionKind, Snapshot,
    TRAILER_LEN,
};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

const MIB: u64 = 1 << 20;

/// Most files one restore takes: the guest-loader refuses a domain with more `hyp,snapshot`
/// modules (`guest-loader/src/domain.rs`, `MAX_SNAPSHOTS`); refusing here says so before
/// anything boots.
pub const MAX_CHAIN: usize = 16;

#[derive(clap::Args)]
pub struct InfoArgs {
    /// The snapshot files; with several, a full snapshot then its diffs in order, and the
    /// description ends with whether they form a chain a restore takes.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// `cargo xtask snapshot-info FILE...`: each file's description, then for several whether
/// they form a chain. Status 1 for an invalid file (the parser's error) or files that do not
/// form a chain (why not).
pub fn info(args: &InfoArgs) -> Result<()> {
    let bytes: Vec<Vec<u8>> = args.files.iter().map(|f| read(f)).collect::<Result<_>>()?;
    let mut snaps = Vec::with_capacity(bytes.len());
    for (i, (file, b)) in args.files.iter().zip(&bytes).enumerate() {
        let s = parse(file, b)?;
        if i > 0 {
            println!();
        }
        print!("{}", describe(file, &s, b));
        snaps.push(s);
    }
    if snaps.len() < 2 {
        return Ok(());
    }
    println!();
    match chain_of(&args.files, snaps) {
        Ok(chain) => {
            print!("{}", describe_chain(&chain));
            Ok(())
        }
        Err(why) => {
            println!("{:<10} no: {why}", "chain");
            Err(Exit::silent(1).into())
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read snapshot {}", path.display()))
}

/// Validates the whole file; the error (exit status 1) is the parser's.
fn parse<'a>(path: &Path, bytes: &'a [u8]) -> Result<Snapshot<'a>> {
    Snapshot::parse(bytes).map_err(|e| {
        Exit::with_message(
            1,
            format!("{} is not a valid snapshot: {e}", path.display()),
        )
        .into()
    })
}

/// `snaps` (parsed from `files`, base first) as a [`Chain`]; the error is a sentence naming
/// the file that does not fit.
fn chain_of<'a>(files: &[PathBuf], snaps: Vec<Snapshot<'a>>) -> Result<Chain<'a>, String> {
    let mut snaps = snaps.into_iter();
    let base = snaps.next().expect("a chain of at least one file");
    if let Kind::Diff { base_id } = base.header().kind {
        // ChainError::BaseNotFull names an id; a person holds file names.
        return Err(format!(
            "{}: it is a diff snapshot (relative to snapshot {base_id:#x}); a restore starts \
             from a full snapshot, then takes the diffs in order",
            files[0].display()
        ));
    }
    Chain::new(base, snaps).map_err(|e| {
        let position = match e {
            ChainError::BaseNotFull { .. } => 0,
            ChainError::NotADiff { position, .. }
            | ChainError::BrokenLink { position, .. }
            | ChainError::ConfigMismatch { position } => position,
        };
        format!("{}: {e}", files[position].display())
    })
}

/// One snapshot file of a restore.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreFile {
    pub path: PathBuf,
    /// The file's length: the boot module's size.
    pub size: u64,
}

/// The VM a snapshot chain restores (a full snapshot, then any diffs), read from its headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restore {
    /// Base first, then the diffs in the order they apply.
    pub files: Vec<RestoreFile>,
    /// The VM's name, the domain node's.
    pub name: String,
    pub cpus: u32,
    /// Guest RAM in bytes.
    pub mem: u64,
}

impl Restore {
    /// A restore of the single full snapshot `file`; see [`Restore::from_files`].
    pub fn from_file(file: &Path) -> Result<Self> {
        Self::from_files(std::slice::from_ref(&file.to_path_buf()))
    }

    /// Reads and validates `files`, a full snapshot then its diffs in order. Refuses with
    /// status 1, naming the file: what the parser refuses, files that do not form a
    /// [`Chain`] (a diff first, as when it is given alone, a full snapshot later, a diff
    /// relative to another snapshot than the one before it, another VM), more than
    /// [`MAX_CHAIN`] files, and RAM that is not whole MiB (the boot DTB's domains are whole
    /// MiB).
    pub fn from_files(files: &[PathBuf]) -> Result<Self> {
        let Some(first) = files.first() else {
            return Err(Exit::with_message(1, "a restore needs a snapshot file").into());
        };
        if files.len() > MAX_CHAIN {
            return Err(Exit::with_message(
                1,
                format!(
                    "cannot restore {} snapshot files: a chain has at most {MAX_CHAIN} (a full \
                     snapshot and {} diffs); take a full snapshot to start a shorter one",
                    files.len(),
                    MAX_CHAIN - 1
                ),
            )
            .into());
        }
        let bytes: Vec<Vec<u8>> = files.iter().map(|f| read(f)).collect::<Result<_>>()?;
        let snaps = files
            .iter()
            .zip(&bytes)
            .map(|(f, b)| parse(f, b))
            .collect::<Result<Vec<_>>>()?;
        let chain = chain_of(files, snaps)
            .map_err(|why| Exit::with_message(1, format!("cannot restore {why}")))?;
        let config = &chain.header().config;
        if !config.ram_size.is_multiple_of(MIB) {
            return Err(Exit::with_message(
                1,
                format!(
                    "cannot restore {}: its VM has {:#x} bytes of RAM, not a whole number of MiB",
                    first.display(),
                    config.ram_size
                ),
            )
            .into());
        }
        Ok(Self {
            files: files
                .iter()
                .zip(&bytes)
                .map(|(path, b)| RestoreFile {
                    path: path.clone(),
                    size: b.len() as u64,
                })
                .collect(),
            name: config.name.as_str().to_string(),
            cpus: config.vcpus,
            mem: config.ram_size,
        })
    }

    /// The domain that resumes this chain: one `hyp,snapshot` module per file in chain order
    /// (the guest-loader takes them in node order), no kernel, the VM's name, vCPUs and RAM.
    pub fn domain(&self) -> Domain {
        Domain {
            name: self.name.clone(),
            cpus: self.cpus,
            mem: self.mem,
            bootargs: String::new(),
            modules: self
                .files
                .iter()
                .map(|f| ModuleFile {
                    kind: ModuleKind::Snapshot,
                    path: f.path.clone(),
                    size: f.size,
                })
                .collect(),
        }
    }
}

/// What a chain restores, after the files' own descriptions.
fn describe_chain(chain: &Chain<'_>) -> String {
    let h = chain.header();
    let diffs = chain.snapshots().len() - 1;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<10} yes: a full snapshot and {diffs} diff{}, restoring {} pages ({} MiB), vCPUs \
         and devices as of snapshot {:#x}",
        "chain",
        if diffs == 1 { "" } else { "s" },
        chain.page_count(),
        chain.page_count() * 4096 / MIB,
        h.id
    );
    out
}

/// Counts of one section type in file order.
#[derive(Default)]
struct SectionTally {
    sections: u64,
    bytes: u64,
}

/// The header, the sections by type, and the pages, one fact per line.
fn describe(path: &Path, s: &Snapshot<'_>, bytes: &[u8]) -> String {
    let h = s.header();
    let c = &h.config;
    let mut out = String::new();
    let mut line = |label: &str, value: String| {
        let _ = writeln!(out, "{label:<10} {value}");
    };
    line(
        "file",
        format!("{} ({} bytes)", path.display(), bytes.len()),
    );
    line(
        "kind",
        match h.kind {
            Kind::Full => "full".to_string(),
            Kind::Diff { base_id } => format!("diff of {base_id:#x}"),
        },
    );
    line("id", format!("{:#x}", h.id));
    line(
        "base id",
        match h.kind {
            Kind::Full => "none".to_string(),
            Kind::Diff { base_id } => format!("{base_id:#x}"),
        },
    );
    line(
        "live",
        if h.live {
            "yes (pages copied while the guest ran)".to_string()
        } else {
            "no (coherent: the guest was paused)".to_string()
        },
    );
    line("name", c.name.as_str().to_string());
    line("vcpus", c.vcpus.to_string());
    line(
        "ram",
        format!(
            "{} MiB at {:#x} ({:#x} bytes)",
            c.ram_size / MIB,
            c.ram_base,
            c.ram_size
        ),
    );
    let secs = h.counter as f64 / c.counter_freq as f64;
    line(
        "counter",
        format!(
            "{} at {} Hz ({secs:.3} s of guest time)",
            h.counter, c.counter_freq
        ),
    );
    for v in s.vcpus() {
        let power = match v.power {
            PowerState::On => "on",
            PowerState::Off => "off",
        };
        line(
            &format!("vcpu {}", v.index),
            format!("{power}, pc {:#x}, pstate {:#x}", v.pc, v.pstate),
        );
    }
    let order = [
        SectionKind::Vcpu,
        SectionKind::Vgic,
        SectionKind::Uart,
        SectionKind::Pages,
    ];
    let mut tally: Vec<SectionTally> = order.iter().map(|_| SectionTally::default()).collect();
    for (kind, len) in sections(bytes) {
        if let Some(i) = order.iter().position(|k| *k == kind) {
            tally[i].sections += 1;
            tally[i].bytes += len;
        }
    }
    for (kind, t) in order.iter().zip(&tally) {
        line(
            "section",
            format!("{kind}: {} ({} payload bytes)", t.sections, t.bytes),
        );
    }
    line(
        "pages",
        format!(
            "{} distinct ({} MiB), {} written, in {} runs",
            s.page_count(),
            s.page_count() * 4096 / MIB,
            s.pages_written(),
            s.runs().len()
        ),
    );
    out
}

/// Each section's type and payload length, in file order. `bytes` must have passed
/// [`Snapshot::parse`]; a section that does not fit ends the walk rather than panicking.
fn sections(bytes: &[u8]) -> Vec<(SectionKind, u64)> {
    let field = |at: usize, len: usize| bytes.get(at..at + len);
    let end = bytes.len().saturating_sub(TRAILER_LEN);
    let mut out = Vec::new();
    let mut at = HEADER_LEN;
    while at + SECTION_HEADER_LEN <= end {
        let (Some(kind), Some(len)) = (field(at, 4), field(at + 8, 8)) else {
            break;
        };
        let kind = u32::from_le_bytes(kind.try_into().expect("4 bytes"));
        let len = u64::from_le_bytes(len.try_into().expect("8 bytes"));
        let Some(kind) = SectionKind::from_raw(kind) else {
            break;
        };
        out.push((kind, len));
        match usize::try_from(len)
            .ok()
            .and_then(|l| (at + SECTION_HEADER_LEN).checked_add(l))
        {
            Some(next) => at = next,
            None => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyp_formats::snapshot::{
        DeviceKind, Header, SnapshotWriter, VCPU_LEN, VERSION, VcpuState, VmConfig, VmName,
    };

    /// A valid full (or diff) snapshot with id 0x51 of a VM `name` with `vcpus`, `mib` MiB
    /// of RAM at 0x4000_0000 and three pages saved in two runs.
    fn file_bytes(name: &str, vcpus: u32, mib: u64, kind: Kind) -> Vec<u8> {
        snapshot_bytes(0x51, name, vcpus, mib, kind, 7)
    }

    /// As [`file_bytes`], with the id and the first two pages' byte chosen.
    fn snapshot_bytes(id: u64, name: &str, vcpus: u32, mib: u64, kind: Kind, fill: u8) -> Vec<u8> {
        let header = Header {
            id,
            kind,
            config: VmConfig {
                name: VmName::new(name).unwrap(),
                vcpus,
                ram_base: 0x4000_0000,
                ram_size: mib * MIB,
                counter_freq: 62_500_000,
            },
            counter: 62_500_000 * 3 / 2,
            live: false,
        };
        let mut out = Vec::new();
        let mut w = SnapshotWriter::begin(&mut out, &header).unwrap();
        for index in 0..vcpus {
            w.vcpu(&VcpuState {
                index,
                power: if index == 0 {
                    PowerState::On
                } else {
                    PowerState::Off
                },
                pc: 0xffff_8000_1000_0000 + u64::from(index),
                pstate: 0x3c5,
                ..VcpuState::default()
            })
            .unwrap();
        }
        w.device(DeviceKind::Uart, &[1, 2, 3]).unwrap();
        let gfn = 0x4000_0000 / 4096;
        w.pages(gfn, &[fill; 2 * 4096]).unwrap();
        w.pages(gfn + 10 + id % 8, &[9u8; 4096]).unwrap();
        w.finish().unwrap();
        out
    }

    /// A full snapshot 0x10 and diffs 0x11 (of 0x10) and 0x12 (of 0x11) of one VM, written
    /// as `<prefix>-base.snap`, `<prefix>-d1.snap`, `<prefix>-d2.snap`.
    fn chain_files(prefix: &str) -> Vec<PathBuf> {
        [
            (0x10, Kind::Full),
            (0x11, Kind::Diff { base_id: 0x10 }),
            (0x12, Kind::Diff { base_id: 0x11 }),
        ]
        .into_iter()
        .zip(["base", "d1", "d2"])
        .map(|((id, kind), name)| {
            let bytes = snapshot_bytes(id, "domU1", 2, 64, kind, id as u8);
            temp(&format!("{prefix}-{name}.snap"), &bytes)
        })
        .collect()
    }

    fn temp(name: &str, bytes: &[u8]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-snapshot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn message(e: &anyhow::Error) -> (u8, String) {
        let exit = e.downcast_ref::<Exit>().expect("an Exit");
        (exit.code, format!("{e:#}"))
    }

    #[test]
    fn a_full_snapshot_becomes_a_restore_domain_from_its_header() {
        let bytes = file_bytes("domU1", 2, 512, Kind::Full);
        let path = temp("full.snap", &bytes);
        let r = Restore::from_file(&path).unwrap();
        assert_eq!(
            r,
            Restore {
                files: vec![RestoreFile {
                    path: path.clone(),
                    size: bytes.len() as u64,
                }],
                name: "domU1".into(),
                cpus: 2,
                mem: 512 * MIB,
            }
        );
        let d = r.domain();
        assert_eq!((d.name.as_str(), d.cpus, d.mem), ("domU1", 2, 512 * MIB));
        assert_eq!(d.modules.len(), 1);
        assert_eq!(d.modules[0].kind, ModuleKind::Snapshot);
        assert_eq!(d.modules[0].size, bytes.len() as u64);
    }

    #[test]
    fn corrupt_truncated_other_version_and_diff_files_are_refused_by_name() {
        let good = file_bytes("domU1", 1, 64, Kind::Full);
        let mut flipped = good.clone();
        flipped[HEADER_LEN + 40] ^= 1;
        let mut version = good.clone();
        version[8..12].copy_from_slice(&(VERSION + 1).to_le_bytes());
        let cases: [(&str, Vec<u8>, &str); 5] = [
            ("flipped.snap", flipped, "CRC"),
            ("short.snap", good[..good.len() - 100].to_vec(), ""),
            ("version.snap", version, "version"),
            ("empty.snap", Vec::new(), ""),
            (
                "diff.snap",
                file_bytes("domU1", 1, 64, Kind::Diff { base_id: 0x50 }),
                "diff.snap: it is a diff snapshot (relative to snapshot 0x50); a restore starts \
                 from a full snapshot",
            ),
        ];
        for (name, bytes, says) in cases {
            let path = temp(name, &bytes);
            let e = Restore::from_file(&path).unwrap_err();
            let (code, text) = message(&e);
            assert_eq!(code, 1, "{name}");
            assert!(text.contains(name), "{text}");
            assert!(text.contains(says), "{name}: {text}");
        }
        let odd = temp("odd.snap", &file_bytes("domU1", 1, 1, Kind::Full));
        assert!(Restore::from_file(&odd).is_ok());
        let e = Restore::from_file(Path::new("/nonexistent/x.snap")).unwrap_err();
        assert!(format!("{e:#}").contains("cannot read snapshot"), "{e:#}");
    }

    #[test]
    fn the_description_names_header_sections_and_pages() {
        let bytes = file_bytes("vm-a", 2, 64, Kind::Full);
        let s = Snapshot::parse(&bytes).unwrap();
        let text = describe(Path::new("a.snap"), &s, &bytes);
        for want in [
            format!("file       a.snap ({} bytes)", bytes.len()),
            "kind       full".into(),
            "id         0x51".into(),
            "base id    none".into(),
            "live       no".into(),
            "name       vm-a".into(),
            "vcpus      2".into(),
            "ram        64 MiB at 0x40000000".into(),
            "counter    93750000 at 62500000 Hz (1.500 s of guest time)".into(),
            "vcpu 0     on, pc 0xffff800010000000".into(),
            "vcpu 1     off, pc 0xffff800010000001".into(),
            format!("section    VCPU: 2 ({} payload bytes)", 2 * VCPU_LEN),
            "section    VGIC: 0 (0 payload bytes)".into(),
            "section    UART: 1 (3 payload bytes)".into(),
            format!("section    PAGES: 2 ({} payload bytes)", 3 * 4096 + 2 * 16),
            "pages      3 distinct (0 MiB), 3 written, in 2 runs".into(),
        ] {
            assert!(text.contains(&want), "{want:?} not in\n{text}");
        }
        let diff = file_bytes("vm-a", 1, 64, Kind::Diff { base_id: 0x50 });
        let s = Snapshot::parse(&diff).unwrap();
        let text = describe(Path::new("d.snap"), &s, &diff);
        assert!(text.contains("kind       diff of 0x50"), "{text}");
        assert!(text.contains("base id    0x50"), "{text}");
    }

    #[test]
    fn a_chain_becomes_one_snapshot_module_per_file_in_chain_order() {
        let files = chain_files("good");
        let r = Restore::from_files(&files).unwrap();
        assert_eq!((r.name.as_str(), r.cpus, r.mem), ("domU1", 2, 64 * MIB));
        let d = r.domain();
        let paths: Vec<&Path> = d.modules.iter().map(|m| m.path.as_path()).collect();
        assert_eq!(
            paths,
            files.iter().map(PathBuf::as_path).collect::<Vec<_>>()
        );
        for (m, f) in d.modules.iter().zip(&files) {
            assert_eq!(m.kind, ModuleKind::Snapshot);
            assert_eq!(m.size, std::fs::metadata(f).unwrap().len());
        }
        // A prefix of a chain is a chain.
        assert_eq!(Restore::from_files(&files[..2]).unwrap().files.len(), 2);
    }

    /// Each way files fail to chain is refused before QEMU starts, naming the file that does
    /// not fit and the hypervisor's reason.
    #[test]
    fn files_that_do_not_chain_are_refused_by_the_file_that_breaks_it() {
        let files = chain_files("bad");
        let (base, d1, d2) = (&files[0], &files[1], &files[2]);
        let other_vm = temp(
            "bad-other.snap",
            &snapshot_bytes(0x11, "domU2", 2, 64, Kind::Diff { base_id: 0x10 }, 1),
        );
        let name = |p: &PathBuf| p.display().to_string();
        let cases: [(Vec<PathBuf>, String, &str); 6] = [
            // Out of order: d2 is relative to d1, not to the base.
            (
                vec![base.clone(), d2.clone()],
                name(d2),
                "cannot apply diff 1: it is relative to snapshot 0x11, the chain so far ends at 0x10",
            ),
            (
                vec![base.clone(), d2.clone(), d1.clone()],
                name(d2),
                "relative to snapshot 0x11",
            ),
            // A diff first, alone or with its successors.
            (
                vec![d1.clone()],
                name(d1),
                "it is a diff snapshot (relative to snapshot 0x10)",
            ),
            (
                vec![d1.clone(), d2.clone()],
                name(d1),
                "a restore starts from a full snapshot",
            ),
            (
                vec![base.clone(), base.clone()],
                name(base),
                "cannot apply snapshot 0x10 as diff 1: it is a full snapshot",
            ),
            (
                vec![base.clone(), other_vm.clone()],
                name(&other_vm),
                "cannot apply diff 1: its VM configuration differs from the base's",
            ),
        ];
        for (chain, file, says) in cases {
            let e = Restore::from_files(&chain).unwrap_err();
            let (code, text) = message(&e);
            assert_eq!(code, 1, "{text}");
            assert!(
                text.starts_with(&format!("cannot restore {file}: ")),
                "{file}: {text}"
            );
            assert!(text.contains(says), "{says:?} not in {text}");
        }
        // The second base is refused by position, not by the first file's name.
        let twice = message(&Restore::from_files(&[base.clone(), base.clone()]).unwrap_err()).1;
        assert!(twice.contains("diff 1"), "{twice}");

        let mut corrupt = std::fs::read(d2).unwrap();
        corrupt[HEADER_LEN + 40] ^= 1;
        let corrupt = temp("bad-corrupt.snap", &corrupt);
        let text = message(
            &Restore::from_files(&[base.clone(), d1.clone(), corrupt.clone()]).unwrap_err(),
        )
        .1;
        assert!(
            text.starts_with(&format!("{} is not a valid snapshot", corrupt.display())),
            "{text}"
        );
        let long = vec![base.clone(); MAX_CHAIN + 1];
        let text = message(&Restore::from_files(&long).unwrap_err()).1;
        assert!(text.contains("at most 16"), "{text}");
        assert!(Restore::from_files(&[]).is_err());
    }

    #[test]
    fn a_chain_description_counts_the_pages_it_restores() {
        let files = chain_files("info");
        let bytes: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
        let snaps: Vec<Snapshot<'_>> = bytes.iter().map(|b| Snapshot::parse(b).unwrap()).collect();
        let chain = chain_of(&files, snaps).unwrap();
        // Every file saves GFNs 0 and 1 of RAM; each also one of 10 + id % 8, distinct.
        assert_eq!(
            describe_chain(&chain),
            "chain      yes: a full snapshot and 2 diffs, restoring 5 pages (0 MiB), vCPUs and \
             devices as of snapshot 0x12\n"
        );
        let gfn = 0x4000_0000 / 4096;
        assert_eq!(chain.page(gfn).unwrap()[0], 0x12, "the newest copy wins");
        let snaps: Vec<Snapshot<'_>> = [&bytes[0], &bytes[2]]
            .iter()
            .map(|b| Snapshot::parse(b).unwrap())
            .collect();
        let why = chain_of(&[files[0].clone(), files[2].clone()], snaps).unwrap_err();
        assert!(
            why.starts_with(&format!("{}: cannot apply diff 1", files[2].display())),
            "{why}"
        );
    }
}
