//! The validating reader: [`Snapshot::parse`] checks a whole file before anything in it is
//! used, and the result borrows page data and device blobs from the file's bytes.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

use super::crc::{Crc32, combine, crc32};
use super::format::{
    ConfigError, DeviceKind, HEADER_LEN, Header, PAGE_SIZE, PAGES_PREFIX_LEN, RawHeader,
    SECTION_HEADER_LEN, SectionKind, TRAILER_LEN, TRAILER_MAGIC, VCPU_LEN, VERSION,
    VcpuDecodeError, VcpuState, get32, get64,
};

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

/// Consecutive guest pages stored together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRun<'a> {
    pub first_gfn: u64,
    /// `count() * 4096` bytes.
    pub data: &'a [u8],
}

impl<'a> PageRun<'a> {
    pub fn count(&self) -> u64 {
        (self.data.len() / PAGE_SIZE) as u64
    }

    /// Each page with its guest frame number.
    pub fn pages(&self) -> impl Iterator<Item = (u64, &'a [u8])> + use<'a> {
        let first = self.first_gfn;
        self.data
            .as_chunks::<PAGE_SIZE>()
            .0
            .iter()
            .enumerate()
            .map(move |(i, p)| (first + i as u64, p.as_slice()))
    }
}

#[derive(Clone, Copy, Debug)]
struct RunRef {
    first_gfn: u64,
    count: u64,
    /// Offset of the page data in the file.
    data_at: usize,
    /// Offset of the section header (for errors).
    section_at: usize,
}

/// A validated snapshot file.
#[derive(Clone, Debug)]
pub struct Snapshot<'a> {
    bytes: &'a [u8],
    header: Header,
    /// By index: `vcpus[i].index == i`.
    vcpus: Vec<VcpuState>,
    devices: [Option<&'a [u8]>; 3],
    /// What each saved frame holds, by first frame, non-overlapping (for a LIVE file, the
    /// parts of each run that no later run overrides).
    runs: Vec<RunRef>,
    /// Distinct frames saved.
    pages: u64,
    /// Sum of the PAGES counts (the trailer's page count).
    pages_written: u64,
}

impl<'a> Snapshot<'a> {
    /// Validates all of `bytes` (see the format's "a reader refuses" list) and indexes it.
    ///
    /// # Errors
    /// The first problem found, in file order.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, SnapshotError> {
        let header = parse_header(bytes)?;
        let vcpus = header.config.vcpus;
        let trailer_at = match bytes.len().checked_sub(TRAILER_LEN) {
            Some(at) if at >= HEADER_LEN => at,
            _ => {
                return Err(SnapshotError::Truncated {
                    what: "trailer",
                    offset: HEADER_LEN,
                    needed: TRAILER_LEN as u64,
                    available: (bytes.len() - HEADER_LEN) as u64,
                });
            }
        };
        if bytes[trailer_at..trailer_at + 8] != TRAILER_MAGIC {
            return Err(SnapshotError::NoTrailer { offset: trailer_at });
        }

        let mut file_crc = Crc32::new();
        file_crc.update(&bytes[..HEADER_LEN]);
        let mut slots: Vec<Option<VcpuState>> = alloc::vec![None; vcpus as usize];
        let mut devices: [Option<&'a [u8]>; 3] = [None; 3];
        let mut runs = Vec::new();
        let (mut sections, mut pages) = (0u64, 0u64);
        let mut at = HEADER_LEN;
        while at < trailer_at {
            let s = parse_section(bytes, at, trailer_at)?;
            file_crc = Crc32::resume(combine(
                combine(
                    file_crc.value(),
                    crc32(&bytes[at..at + SECTION_HEADER_LEN]),
                    SECTION_HEADER_LEN as u64,
                ),
                s.payload_crc,
                s.payload.len() as u64,
            ));
            match s.kind {
                SectionKind::Vcpu => {
                    let v = parse_vcpu(at, s.payload, vcpus)?;
                    let slot = &mut slots[v.index as usize];
                    if slot.is_some() {
                        return Err(SnapshotError::VcpuTwice {
                            offset: at,
                            index: v.index,
                        });
                    }
                    *slot = Some(v);
                }
                SectionKind::Vgic | SectionKind::Uart | SectionKind::Timer => {
                    let kind = match s.kind {
                        SectionKind::Vgic => DeviceKind::Vgic,
                        SectionKind::Uart => DeviceKind::Uart,
                        _ => DeviceKind::Timer,
                    };
                    let slot = &mut devices[kind.index()];
                    if slot.is_some() {
                        return Err(SnapshotError::DeviceTwice { offset: at, kind });
                    }
                    *slot = Some(s.payload);
                }
                SectionKind::Pages => {
                    let run = parse_run(at, s.payload, &header)?;
                    pages += run.count;
                    runs.push(run);
                }
            }
            sections += 1;
            at += SECTION_HEADER_LEN + s.payload.len();
        }

        let t = &bytes[trailer_at..];
        let (t_sections, t_pages) = (get64(t, 8).unwrap_or(0), get64(t, 16).unwrap_or(0));
        let stored = get32(t, 24).unwrap_or(0);
        if stored != file_crc.value() {
            return Err(SnapshotError::FileCrc {
                stored,
                computed: file_crc.value(),
            });
        }
        if get32(t, 28) != Some(0) {
            return Err(SnapshotError::Reserved {
                offset: trailer_at + 28,
            });
        }
        if t_sections != sections || t_pages != pages {
            return Err(SnapshotError::TrailerCounts {
                sections: t_sections,
                sections_found: sections,
                pages: t_pages,
                pages_found: pages,
            });
        }
        let mut vcpu_states = Vec::with_capacity(slots.len());
        for (index, slot) in slots.into_iter().enumerate() {
            let index = index as u32;
            vcpu_states.push(slot.ok_or(SnapshotError::MissingVcpu { index })?);
        }
        let runs = if header.live {
            latest_copies(&runs)
        } else {
            runs.sort_unstable_by_key(|r: &RunRef| r.first_gfn);
            if let Some(w) = runs
                .windows(2)
                .find(|w| w[0].first_gfn + w[0].count > w[1].first_gfn)
            {
                let later = if w[0].section_at > w[1].section_at {
                    &w[0]
                } else {
                    &w[1]
                };
                return Err(SnapshotError::PageTwice {
                    offset: later.section_at,
                    gfn: w[1].first_gfn,
                });
            }
            runs
        };
        let distinct = runs.iter().map(|r| r.count).sum();
        Ok(Self {
            bytes,
            header,
            vcpus: vcpu_states,
            devices,
            runs,
            pages: distinct,
            pages_written: pages,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Every vCPU, in index order.
    pub fn vcpus(&self) -> &[VcpuState] {
        &self.vcpus
    }

    /// A device's state blob, `None` when the file has no section for it.
    pub fn device(&self, kind: DeviceKind) -> Option<&'a [u8]> {
        self.devices[kind.index()]
    }

    /// The saved pages as runs in guest-frame order, never overlapping. In a LIVE file a run
    /// may be part of a PAGES section: the rest was overridden by a later section.
    pub fn runs(&self) -> impl ExactSizeIterator<Item = PageRun<'a>> + '_ {
        self.runs.iter().map(|r| self.run(r))
    }

    /// The saved contents of guest frame `gfn`, if this file has them.
    pub fn page(&self, gfn: u64) -> Option<&'a [u8]> {
        let i = self
            .runs
            .partition_point(|r| r.first_gfn <= gfn)
            .checked_sub(1)?;
        let r = &self.runs[i];
        let k = gfn - r.first_gfn;
        if k >= r.count {
            return None;
        }
        let at = r.data_at + k as usize * PAGE_SIZE;
        self.bytes.get(at..at + PAGE_SIZE)
    }

    /// Distinct guest frames saved.
    pub fn page_count(&self) -> u64 {
        self.pages
    }

    /// Pages in all PAGES sections; more than [`Snapshot::page_count`] when a LIVE file saved
    /// some frames again.
    pub fn pages_written(&self) -> u64 {
        self.pages_written
    }

    /// The file's length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always false: a valid file has at least a header and a trailer.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn run(&self, r: &RunRef) -> PageRun<'a> {
        let bytes: &'a [u8] = self.bytes;
        let len = r.count as usize * PAGE_SIZE;
        PageRun {
            first_gfn: r.first_gfn,
            data: bytes.get(r.data_at..r.data_at + len).unwrap_or(&[]),
        }
    }
}

/// The parts of `runs` (in file order) that no later run overrides, sorted by frame: walks
/// the runs newest first, keeping the frames already claimed as disjoint intervals.
fn latest_copies(runs: &[RunRef]) -> Vec<RunRef> {
    let mut claimed: BTreeMap<u64, u64> = BTreeMap::new(); // start -> end
    let mut out = Vec::new();
    for r in runs.iter().rev() {
        let (start, end) = (r.first_gfn, r.first_gfn + r.count);
        let piece = |from: u64, to: u64| RunRef {
            first_gfn: from,
            count: to - from,
            data_at: r.data_at + (from - start) as usize * PAGE_SIZE,
            section_at: r.section_at,
        };
        let mut hits: Vec<(u64, u64)> = claimed
            .range(..start)
            .next_back()
            .map(|(&a, &b)| (a, b))
            .filter(|&(_, b)| b > start)
            .into_iter()
            .collect();
        hits.extend(claimed.range(start..end).map(|(&a, &b)| (a, b)));
        let mut at = start;
        let (mut lo, mut hi) = (start, end);
        for &(a, b) in &hits {
            if a > at {
                out.push(piece(at, a));
            }
            at = at.max(b);
            lo = lo.min(a);
            hi = hi.max(b);
            claimed.remove(&a);
        }
        if at < end {
            out.push(piece(at, end));
        }
        claimed.insert(lo, hi);
    }
    out.sort_unstable_by_key(|r| r.first_gfn);
    out
}

impl Header {
    /// Reads and checks only the header at the start of `bytes` (its own CRC included), e.g.
    /// of a base file too large to read whole just to learn its id.
    ///
    /// # Errors
    /// What [`Snapshot::parse`] says of a bad header.
    pub fn parse(bytes: &[u8]) -> Result<Self, SnapshotError> {
        parse_header(bytes)
    }
}

fn parse_header(bytes: &[u8]) -> Result<Header, SnapshotError> {
    let truncated = SnapshotError::Truncated {
        what: "header",
        offset: 0,
        needed: HEADER_LEN as u64,
        available: bytes.len() as u64,
    };
    match Header::decode(bytes) {
        None => Err(truncated),
        Some(RawHeader::BadMagic(found)) => Err(SnapshotError::BadMagic { found }),
        Some(RawHeader::Version(found)) => Err(SnapshotError::Version {
            found,
            supported: VERSION,
        }),
        Some(RawHeader::Length(found)) => Err(SnapshotError::HeaderLength {
            found,
            expected: HEADER_LEN as u32,
        }),
        Some(RawHeader::Crc { stored, computed }) => {
            Err(SnapshotError::HeaderCrc { stored, computed })
        }
        Some(RawHeader::Reserved { offset }) => Err(SnapshotError::Reserved { offset }),
        Some(RawHeader::Flags(flags)) => Err(SnapshotError::HeaderFlags { flags }),
        Some(RawHeader::Kind { raw, base_id }) => Err(SnapshotError::Kind { raw, base_id }),
        Some(RawHeader::Config(e)) => Err(SnapshotError::Config(e)),
        Some(RawHeader::Ok(h)) => Ok(h),
    }
}

struct Section<'a> {
    kind: SectionKind,
    payload: &'a [u8],
    payload_crc: u32,
}

/// The section at `at`, which must end by `end` (the trailer); its CRC checked.
fn parse_section(bytes: &[u8], at: usize, end: usize) -> Result<Section<'_>, SnapshotError> {
    let room = end - at;
    let Some(h) = bytes
        .get(at..at + SECTION_HEADER_LEN)
        .filter(|_| room >= SECTION_HEADER_LEN)
    else {
        return Err(SnapshotError::Truncated {
            what: "section header",
            offset: at,
            needed: SECTION_HEADER_LEN as u64,
            available: room as u64,
        });
    };
    let raw = get32(h, 0).unwrap_or(0);
    let kind =
        SectionKind::from_raw(raw).ok_or(SnapshotError::UnknownSection { offset: at, raw })?;
    let flags = get32(h, 4).unwrap_or(0);
    if flags != 0 {
        return Err(SnapshotError::SectionFlags { offset: at, flags });
    }
    let length = get64(h, 8).unwrap_or(0);
    if get32(h, 20) != Some(0) {
        return Err(SnapshotError::Reserved { offset: at + 20 });
    }
    let available = (room - SECTION_HEADER_LEN) as u64;
    if length > available {
        return Err(SnapshotError::Truncated {
            what: "section payload",
            offset: at + SECTION_HEADER_LEN,
            needed: length,
            available,
        });
    }
    let start = at + SECTION_HEADER_LEN;
    let payload = &bytes[start..start + length as usize];
    let payload_crc = crc32(payload);
    let computed = combine(crc32(&h[..16]), payload_crc, length);
    let stored = get32(h, 16).unwrap_or(0);
    if stored != computed {
        return Err(SnapshotError::SectionCrc {
            offset: at,
            kind,
            stored,
            computed,
        });
    }
    Ok(Section {
        kind,
        payload,
        payload_crc,
    })
}

fn parse_vcpu(at: usize, payload: &[u8], vcpus: u32) -> Result<VcpuState, SnapshotError> {
    let Ok(p) = <&[u8; VCPU_LEN]>::try_from(payload) else {
        return Err(SnapshotError::SectionLength {
            offset: at,
            kind: SectionKind::Vcpu,
            length: payload.len() as u64,
        });
    };
    let index = get32(p, 0).unwrap_or(0);
    if index >= vcpus {
        return Err(SnapshotError::VcpuIndex {
            offset: at,
            index,
            vcpus,
        });
    }
    VcpuState::decode(p).map_err(|e| match e {
        VcpuDecodeError::Power(raw) => SnapshotError::VcpuPower {
            offset: at,
            index,
            raw,
        },
        VcpuDecodeError::Pstate(pstate) => SnapshotError::VcpuPstate {
            offset: at,
            index,
            pstate,
        },
    })
}

fn parse_run(at: usize, payload: &[u8], header: &Header) -> Result<RunRef, SnapshotError> {
    let length = payload.len() as u64;
    let (Some(first_gfn), Some(count)) = (get64(payload, 0), get64(payload, 8)) else {
        return Err(SnapshotError::SectionLength {
            offset: at,
            kind: SectionKind::Pages,
            length,
        });
    };
    let data = length - PAGES_PREFIX_LEN as u64;
    if count == 0 || count.checked_mul(PAGE_SIZE as u64) != Some(data) {
        return Err(SnapshotError::RunCount {
            offset: at,
            count,
            length,
        });
    }
    let ram = header.config.ram_gfns();
    if first_gfn < ram.start || first_gfn.checked_add(count).is_none_or(|e| e > ram.end) {
        return Err(SnapshotError::RunOutsideRam {
            offset: at,
            first_gfn,
            count,
        });
    }
    Ok(RunRef {
        first_gfn,
        count,
        data_at: at + SECTION_HEADER_LEN + PAGES_PREFIX_LEN,
        section_at: at,
    })
}
