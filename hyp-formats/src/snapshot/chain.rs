//! A base snapshot and the diffs taken after it, read as one: the newest copy of each page,
//! the newest vCPU and device state.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use super::format::{DeviceKind, Header, Kind, VcpuState};
use super::reader::Snapshot;

/// Why snapshots do not form a chain. `position` 0 is the base, `n` the n-th diff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainError {
    BaseNotFull {
        id: u64,
    },
    NotADiff {
        position: usize,
        id: u64,
    },
    /// The diff's base is not the snapshot before it.
    BrokenLink {
        position: usize,
        base_id: u64,
        previous_id: u64,
    },
    /// The diff was taken of another VM (name, vCPUs, RAM or counter frequency differ).
    ConfigMismatch {
        position: usize,
    },
}

impl fmt::Display for ChainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BaseNotFull { id } => write!(
                f,
                "cannot start a chain with snapshot {id:#x}: it is a diff, the base must be full"
            ),
            Self::NotADiff { position, id } => write!(
                f,
                "cannot apply snapshot {id:#x} as diff {position}: it is a full snapshot"
            ),
            Self::BrokenLink {
                position,
                base_id,
                previous_id,
            } => write!(
                f,
                "cannot apply diff {position}: it is relative to snapshot {base_id:#x}, the chain so far ends at {previous_id:#x}"
            ),
            Self::ConfigMismatch { position } => write!(
                f,
                "cannot apply diff {position}: its VM configuration differs from the base's"
            ),
        }
    }
}

/// A base and its diffs, checked to link up.
#[derive(Clone, Debug)]
pub struct Chain<'a> {
    /// Base first.
    snaps: Vec<Snapshot<'a>>,
}

impl<'a> Chain<'a> {
    /// # Errors
    /// [`ChainError`]: the base is a diff, a later one is full, a diff's base id is not the
    /// previous snapshot's id, or the VM configurations differ.
    pub fn new(
        base: Snapshot<'a>,
        diffs: impl IntoIterator<Item = Snapshot<'a>>,
    ) -> Result<Self, ChainError> {
        if base.header().kind != Kind::Full {
            return Err(ChainError::BaseNotFull {
                id: base.header().id,
            });
        }
        let mut snaps = vec![base];
        for (i, d) in diffs.into_iter().enumerate() {
            let position = i + 1;
            let (h, prev) = (d.header(), snaps[i].header());
            let Kind::Diff { base_id } = h.kind else {
                return Err(ChainError::NotADiff { position, id: h.id });
            };
            if base_id != prev.id {
                return Err(ChainError::BrokenLink {
                    position,
                    base_id,
                    previous_id: prev.id,
                });
            }
            if h.config != prev.config {
                return Err(ChainError::ConfigMismatch { position });
            }
            snaps.push(d);
        }
        Ok(Self { snaps })
    }

    /// The newest snapshot's header (its id, counter value).
    pub fn header(&self) -> &Header {
        self.newest().header()
    }

    /// The newest vCPU state (every snapshot saves every vCPU).
    pub fn vcpus(&self) -> &[VcpuState] {
        self.newest().vcpus()
    }

    /// The newest state saved for `kind`.
    pub fn device(&self, kind: DeviceKind) -> Option<&'a [u8]> {
        self.snaps.iter().rev().find_map(|s| s.device(kind))
    }

    /// The newest saved copy of guest frame `gfn`.
    pub fn page(&self, gfn: u64) -> Option<&'a [u8]> {
        self.snaps.iter().rev().find_map(|s| s.page(gfn))
    }

    /// Every saved guest frame once, with its newest contents: the newest snapshot's pages
    /// first, then each older one's that no newer snapshot saved again.
    pub fn pages(&self) -> impl Iterator<Item = (u64, &'a [u8])> + '_ {
        self.snaps.iter().enumerate().rev().flat_map(move |(k, s)| {
            let newer = &self.snaps[k + 1..];
            s.runs()
                .flat_map(|r| r.pages())
                .filter(move |&(gfn, _)| newer.iter().all(|n| n.page(gfn).is_none()))
        })
    }

    /// Number of distinct guest frames saved.
    pub fn page_count(&self) -> u64 {
        self.pages().count() as u64
    }

    /// The snapshots, base first.
    pub fn snapshots(&self) -> &[Snapshot<'a>] {
        &self.snaps
    }

    fn newest(&self) -> &Snapshot<'a> {
        self.snaps.last().expect("a chain starts with its base")
    }
}
