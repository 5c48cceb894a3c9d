//! Why the reader refuses a snapshot file, in sentences that name the offset and what was
//! found.

use core::fmt;

use super::format::{ConfigError, DeviceKind, SectionKind, VERSION};

/// Why a snapshot file was refused. Offsets are from the start of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapshotError {
    /// The file ends inside `what`, which starts at `offset` and needs `needed` bytes.
    Truncated {
        what: &'static str,
        offset: usize,
        needed: u64,
        available: u64,
    },
    BadMagic {
        found: [u8; 8],
    },
    /// Written by another version of the format.
    Version {
        found: u32,
        supported: u32,
    },
    HeaderLength {
        found: u32,
        expected: u32,
    },
    HeaderCrc {
        stored: u32,
        computed: u32,
    },
    /// Reserved bytes that must be zero are not.
    Reserved {
        offset: usize,
    },
    /// Header flags this version does not define.
    HeaderFlags {
        flags: u32,
    },
    /// The kind field is unknown, or a full snapshot names a base.
    Kind {
        raw: u32,
        base_id: u64,
    },
    Config(ConfigError),
    /// The last 32 bytes are not a trailer: truncated, or bytes appended.
    NoTrailer {
        offset: usize,
    },
    UnknownSection {
        offset: usize,
        raw: u32,
    },
    SectionFlags {
        offset: usize,
        flags: u32,
    },
    SectionCrc {
        offset: usize,
        kind: SectionKind,
        stored: u32,
        computed: u32,
    },
    SectionLength {
        offset: usize,
        kind: SectionKind,
        length: u64,
    },
    VcpuIndex {
        offset: usize,
        index: u32,
        vcpus: u32,
    },
    VcpuTwice {
        offset: usize,
        index: u32,
    },
    VcpuPower {
        offset: usize,
        index: u32,
        raw: u32,
    },
    VcpuPstate {
        offset: usize,
        index: u32,
        pstate: u64,
    },
    MissingVcpu {
        index: u32,
    },
    DeviceTwice {
        offset: usize,
        kind: DeviceKind,
    },
    /// A PAGES section whose count disagrees with its length, or holds no page.
    RunCount {
        offset: usize,
        count: u64,
        length: u64,
    },
    RunOutsideRam {
        offset: usize,
        first_gfn: u64,
        count: u64,
    },
    /// Guest frame `gfn` is in two page runs (the later one at `offset`).
    PageTwice {
        offset: usize,
        gfn: u64,
    },
    FileCrc {
        stored: u32,
        computed: u32,
    },
    TrailerCounts {
        sections: u64,
        sections_found: u64,
        pages: u64,
        pages_found: u64,
    },
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("snapshot refused: ")?;
        match self {
            Self::Truncated {
                what,
                offset,
                needed,
                available,
            } => write!(
                f,
                "the file ends inside the {what} at offset {offset}: it needs {needed} bytes, {available} remain"
            ),
            Self::BadMagic { found } => write!(
                f,
                "not a snapshot file: it starts with {found:02x?}, not \"HYPSNAP\\0\""
            ),
            Self::Version { found, supported } => write!(
                f,
                "the file is format version {found}, this hypervisor reads only version {supported}"
            ),
            Self::HeaderLength { found, expected } => write!(
                f,
                "the header claims {found} bytes, this version's headers are {expected}"
            ),
            Self::HeaderCrc { stored, computed } => write!(
                f,
                "header CRC mismatch at offset 116: stored {stored:#010x}, computed {computed:#010x}"
            ),
            Self::Reserved { offset } => {
                write!(f, "reserved bytes at offset {offset} are not zero")
            }
            Self::HeaderFlags { flags } => write!(
                f,
                "the header has flags {flags:#x}; version {VERSION} defines only bit 0 (LIVE)"
            ),
            Self::Kind { raw, base_id } => write!(
                f,
                "the header's kind {raw} with base id {base_id:#x} is neither a full snapshot (1, base 0) nor a diff (2)"
            ),
            Self::Config(e) => write!(f, "bad VM configuration in the header: {e}"),
            Self::NoTrailer { offset } => write!(
                f,
                "no trailer at offset {offset}: the file is truncated or has bytes after its end"
            ),
            Self::UnknownSection { offset, raw } => write!(
                f,
                "unknown section type {raw} at offset {offset} (this reader knows 1 to 5 of format version {VERSION})"
            ),
            Self::SectionFlags { offset, flags } => write!(
                f,
                "section at offset {offset} has flags {flags:#x}; version {VERSION} defines none"
            ),
            Self::SectionCrc {
                offset,
                kind,
                stored,
                computed,
            } => write!(
                f,
                "{kind} section at offset {offset} is corrupt: stored CRC {stored:#010x}, computed {computed:#010x}"
            ),
            Self::SectionLength {
                offset,
                kind,
                length,
            } => write!(
                f,
                "{kind} section at offset {offset} has a payload of {length} bytes, which does not fit the file or its type"
            ),
            Self::VcpuIndex {
                offset,
                index,
                vcpus,
            } => write!(
                f,
                "VCPU section at offset {offset} is vCPU {index}, the VM has {vcpus}"
            ),
            Self::VcpuTwice { offset, index } => write!(
                f,
                "VCPU section at offset {offset} saves vCPU {index} a second time"
            ),
            Self::VcpuPower { offset, index, raw } => write!(
                f,
                "VCPU section at offset {offset} gives vCPU {index} power state {raw} (0 off, 1 on)"
            ),
            Self::VcpuPstate {
                offset,
                index,
                pstate,
            } => write!(
                f,
                "VCPU section at offset {offset} would resume vCPU {index} with PSTATE {pstate:#x}, not an EL0/EL1 AArch64 mode"
            ),
            Self::MissingVcpu { index } => write!(f, "no VCPU section for vCPU {index}"),
            Self::DeviceTwice { offset, kind } => {
                write!(f, "second {} section at offset {offset}", kind.section())
            }
            Self::RunCount {
                offset,
                count,
                length,
            } => write!(
                f,
                "PAGES section at offset {offset} claims {count} pages in a payload of {length} bytes"
            ),
            Self::RunOutsideRam {
                offset,
                first_gfn,
                count,
            } => write!(
                f,
                "PAGES section at offset {offset} ({count} pages at guest frame {first_gfn:#x}) is not inside the VM's RAM"
            ),
            Self::PageTwice { offset, gfn } => write!(
                f,
                "PAGES section at offset {offset} saves guest frame {gfn:#x} a second time"
            ),
            Self::FileCrc { stored, computed } => write!(
                f,
                "file CRC mismatch: the trailer says {stored:#010x}, the contents give {computed:#010x}"
            ),
            Self::TrailerCounts {
                sections,
                sections_found,
                pages,
                pages_found,
            } => write!(
                f,
                "the trailer counts {sections} sections and {pages} pages, the file holds {sections_found} and {pages_found}"
            ),
        }
    }
}
