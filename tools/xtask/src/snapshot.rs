//! Snapshot files on the host (format: `hyp/src/snapshot`): read and validated with the
//! hypervisor's own parser, so a corrupt, truncated or other-version file is refused with the
//! parser's words before QEMU starts; turned into the dom0less domain a restore boots
//! (`cargo xtask qemu --restore`, the tests' `then-restore`); described for people
//! (`cargo xtask snapshot-info`).

use crate::bootdtb::{Domain, ModuleFile, ModuleKind};
use crate::exit::Exit;
use anyhow::{Context, Result};
use hyp::snapshot::{
    HEADER_LEN, Kind, PowerState, SECTION_HEADER_LEN, SectionKind, Snapshot, TRAILER_LEN,
};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

const MIB: u64 = 1 << 20;

#[derive(clap::Args)]
pub struct InfoArgs {
    /// The snapshot file.
    pub file: PathBuf,
}

/// `cargo xtask snapshot-info FILE`: the description, or the parser's error and status 1.
pub fn info(args: &InfoArgs) -> Result<()> {
    let bytes = read(&args.file)?;
    let snapshot = parse(&args.file, &bytes)?;
    print!("{}", describe(&args.file, &snapshot, &bytes));
    Ok(())
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

/// The VM a snapshot file restores, read from its header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restore {
    pub file: PathBuf,
    /// The file's length: the boot module's size.
    pub size: u64,
    /// The VM's name, the domain node's.
    pub name: String,
    pub cpus: u32,
    /// Guest RAM in bytes.
    pub mem: u64,
}

impl Restore {
    /// Reads and validates `file`. Refuses, naming the file, what the parser refuses, a diff
    /// (it needs its base, and a restore takes one file) and RAM that is not whole MiB (the
    /// boot DTB's domains are whole MiB).
    pub fn from_file(file: &Path) -> Result<Self> {
        let bytes = read(file)?;
        let snapshot = parse(file, &bytes)?;
        let header = snapshot.header();
        let refuse = |why: String| {
            Exit::with_message(1, format!("cannot restore {}: {why}", file.display()))
        };
        if let Kind::Diff { base_id } = header.kind {
            return Err(refuse(format!(
                "it is a diff snapshot (relative to snapshot {base_id:#x}); a restore takes a \
                 full snapshot"
            ))
            .into());
        }
        let config = &header.config;
        if !config.ram_size.is_multiple_of(MIB) {
            return Err(refuse(format!(
                "its VM has {:#x} bytes of RAM, not a whole number of MiB",
                config.ram_size
            ))
            .into());
        }
        Ok(Self {
            file: file.to_path_buf(),
            size: bytes.len() as u64,
            name: config.name.as_str().to_string(),
            cpus: config.vcpus,
            mem: config.ram_size,
        })
    }

    /// The domain that resumes this snapshot: one `hyp,snapshot` module, no kernel, the VM's
    /// name, vCPUs and RAM.
    pub fn domain(&self) -> Domain {
        Domain {
            name: self.name.clone(),
            cpus: self.cpus,
            mem: self.mem,
            bootargs: String::new(),
            modules: vec![ModuleFile {
                kind: ModuleKind::Snapshot,
                path: self.file.clone(),
                size: self.size,
            }],
        }
    }
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
    use hyp::snapshot::{
        DeviceKind, Header, SnapshotWriter, VCPU_LEN, VERSION, VcpuState, VmConfig, VmName,
    };

    /// A valid full (or diff) snapshot of a VM `name` with `vcpus`, `mib` MiB of RAM at
    /// 0x4000_0000 and three pages saved in two runs.
    fn file_bytes(name: &str, vcpus: u32, mib: u64, kind: Kind) -> Vec<u8> {
        let header = Header {
            id: 0x51,
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
        w.pages(gfn, &[7u8; 2 * 4096]).unwrap();
        w.pages(gfn + 10, &[9u8; 4096]).unwrap();
        w.finish().unwrap();
        out
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
                file: path.clone(),
                size: bytes.len() as u64,
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
                "diff snapshot (relative to snapshot 0x50)",
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
}
