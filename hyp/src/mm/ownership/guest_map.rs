//! A VM's side of ownership: which frame backs each guest page.

use alloc::vec::Vec;
use core::fmt;

use super::{FrameState, FrameTable, Op, Owner, OwnershipError, VmId, gfns};
use crate::mm::addr::{Gfn, Pfn};

/// What a guest page is, from its VM's side.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum GuestPage {
    /// Not backed: a fault may populate it.
    NoPage,
    /// Backed by a frame the VM owns.
    Owned(Pfn),
    /// Backed by a frame the hypervisor shares with the VM.
    Borrowed { pfn: Pfn, writable: bool },
}

impl GuestPage {
    pub fn pfn(self) -> Option<Pfn> {
        match self {
            GuestPage::NoPage => None,
            GuestPage::Owned(p) | GuestPage::Borrowed { pfn: p, .. } => Some(p),
        }
    }
    /// Whether a guest write may be allowed by a stage-2 entry for this page.
    pub fn writable(self) -> bool {
        matches!(
            self,
            GuestPage::Owned(_) | GuestPage::Borrowed { writable: true, .. }
        )
    }
}

impl fmt::Display for GuestPage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuestPage::NoPage => f.write_str("not backed"),
            GuestPage::Owned(p) => write!(f, "owned (frame {:#x})", p.raw()),
            GuestPage::Borrowed { pfn, .. } => write!(f, "borrowed (frame {:#x})", pfn.raw()),
        }
    }
}

/// A guest page's entry in its VM's guest map: kind in bits 0..2, frame number above.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(transparent)]
pub(super) struct GuestEntry(pub(super) u64);

impl GuestEntry {
    const NONE: Self = Self(0);
    pub(super) fn new(p: GuestPage) -> Self {
        match p {
            GuestPage::NoPage => Self::NONE,
            GuestPage::Owned(pfn) => Self(1 | (pfn.raw() << 2)),
            GuestPage::Borrowed { pfn, writable } => Self(2 | writable as u64 | (pfn.raw() << 2)),
        }
    }
    pub(super) fn get(self) -> GuestPage {
        let pfn = Pfn::new(self.0 >> 2);
        match self.0 & 0b11 {
            0 => GuestPage::NoPage,
            1 => GuestPage::Owned(pfn),
            k => GuestPage::Borrowed {
                pfn,
                writable: k == 3,
            },
        }
    }
}

/// A VM's side of ownership: for each guest page of its memory regions, the frame backing it.
pub struct GuestMap {
    pub(super) vm: VmId,
    pub(super) regions: Vec<(Gfn, Vec<GuestEntry>)>,
}

impl GuestMap {
    /// A map for `vm` with regions `(first page, pages)`, all unbacked.
    ///
    /// # Panics
    /// If regions overlap or wrap.
    pub fn new(vm: VmId, regions: &[(Gfn, u64)]) -> Self {
        for (i, &(a, n)) in regions.iter().enumerate() {
            let end = a.raw().checked_add(n).expect("guest region wraps");
            for &(b, m) in &regions[i + 1..] {
                assert!(
                    end <= b.raw() || b.raw() + m <= a.raw(),
                    "guest regions overlap"
                );
            }
        }
        let regions = regions
            .iter()
            .map(|&(g, n)| (g, alloc::vec![GuestEntry::NONE; n as usize]))
            .collect();
        Self { vm, regions }
    }

    pub fn vm(&self) -> VmId {
        self.vm
    }

    /// `(region index, page index)` of `gfn`, or `None` outside guest memory.
    pub fn locate(&self, gfn: Gfn) -> Option<(usize, usize)> {
        self.regions
            .iter()
            .enumerate()
            .find_map(|(r, (base, pages))| {
                let i = gfn.raw().checked_sub(base.raw())?;
                (i < pages.len() as u64).then_some((r, i as usize))
            })
    }

    /// The regions as `(first page, pages)`.
    pub fn regions(&self) -> impl Iterator<Item = (Gfn, u64)> + '_ {
        self.regions.iter().map(|(g, p)| (*g, p.len() as u64))
    }

    /// What backs `gfn`; `NoPage` also outside guest memory.
    pub fn get(&self, gfn: Gfn) -> GuestPage {
        self.locate(gfn)
            .map_or(GuestPage::NoPage, |(r, i)| self.regions[r].1[i].get())
    }

    /// Whether every page of `[gfn, gfn + n)` lies in one region.
    pub fn contains(&self, gfn: Gfn, n: u64) -> bool {
        n > 0
            && self
                .locate(gfn)
                .is_some_and(|(r, i)| i as u64 + n <= self.regions[r].1.len() as u64)
    }

    pub(super) fn set(&mut self, gfn: Gfn, p: GuestPage) {
        let (r, i) = self.locate(gfn).expect("checked guest memory");
        self.regions[r].1[i] = GuestEntry::new(p);
    }

    pub(super) fn expect_pages(
        &self,
        op: Op,
        gfn: Gfn,
        n: u64,
        ok: impl Fn(GuestPage) -> bool,
    ) -> Result<(), OwnershipError> {
        if n == 0 || gfn.raw().checked_add(n).is_none() {
            return Err(OwnershipError::BadRange { op });
        }
        for g in gfns(gfn, n) {
            if self.locate(g).is_none() {
                return Err(OwnershipError::NotGuestMemory {
                    vm: self.vm,
                    gfn: g,
                });
            }
            let found = self.get(g);
            if !ok(found) {
                return Err(OwnershipError::WrongGuestState {
                    op,
                    vm: self.vm,
                    gfn: g,
                    found,
                });
            }
        }
        Ok(())
    }

    /// Every backed page as `(gfn, page)`.
    pub fn backed(&self) -> impl Iterator<Item = (Gfn, GuestPage)> + '_ {
        self.regions.iter().flat_map(|(base, pages)| {
            pages.iter().enumerate().filter_map(move |(i, e)| {
                let p = e.get();
                (p != GuestPage::NoPage).then(|| (Gfn::new(base.raw() + i as u64), p))
            })
        })
    }

    /// Panics unless this map and `frames` agree (I1, ownership half): every backed page's frame
    /// is owned by or shared with this VM, and no frame backs two pages.
    pub fn check_against(&self, frames: &FrameTable) {
        let mut seen = alloc::collections::BTreeSet::new();
        for (gfn, page) in self.backed() {
            let pfn = page.pfn().expect("backed");
            let st = frames
                .state(pfn)
                .unwrap_or_else(|| panic!("{gfn:?} backed by non-RAM"));
            let want = match page {
                GuestPage::Owned(_) => FrameState::Owned(Owner::Vm(self.vm)),
                _ => FrameState::Shared {
                    owner: Owner::Hyp,
                    borrower: Owner::Vm(self.vm),
                },
            };
            assert_eq!(
                st, want,
                "I1: {gfn:?} of {} is {page} but frame is {st}",
                self.vm
            );
            assert!(
                seen.insert(pfn),
                "I1: {pfn:?} backs two pages of {}",
                self.vm
            );
        }
        assert_eq!(
            seen.len() as u64,
            self.frames_held(frames),
            "I1: a frame of {} is missing from its guest map",
            self.vm
        );
    }

    /// Frames of this VM counted in `frames` (owned by or borrowed by it).
    pub fn frames_held(&self, frames: &FrameTable) -> u64 {
        (0..frames.frames())
            .filter(|i| {
                frames
                    .state(Pfn::new(frames.base.raw() + i))
                    .is_some_and(|s| s.reachable_by(self.vm))
            })
            .count() as u64
    }
}
