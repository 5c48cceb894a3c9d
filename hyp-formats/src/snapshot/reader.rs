//! The validating reader: [`Snapshot::parse`] checks a whole file before anything in it is
//! used, and the result borrows page data and device blobs from the file's bytes.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use super::crc::{Crc32, combine, crc32};
use super::error::SnapshotError;
use super::format::{
    DeviceKind, HEADER_LEN, Header, PAGE_SIZE, PAGES_PREFIX_LEN, RawHeader, SECTION_HEADER_LEN,
    SectionKind, TRAILER_LEN, TRAILER_MAGIC, VCPU_LEN, VERSION, VcpuDecodeError, VcpuState, get32,
    get64,
};

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
