//! Frame ownership: the hypervisor's record of who owns every RAM frame and, per VM, which frame
//! backs each guest page. This is the "primary MMU" of the design: stage-2 tables only cache what
//! is recorded here, the way KVM's stage-2 caches the host page tables reached through
//! `get_user_pages`, and every change that takes access away first runs the VM's invalidation
//! (the MMU-notifier analogue, [`Invalidate`]).
//!
//! # States (the spec)
//!
//! | Frame state (frame table)          | Who may map it                      | Guest-side entry      |
//! |------------------------------------|-------------------------------------|-----------------------|
//! | `Free`                             | nobody; contents are zero           | —                     |
//! | `Owned(Hyp)`                       | the hypervisor only                 | —                     |
//! | `Owned(Vm(n))`                     | VM `n` only                         | `Owned(pfn)` in VM n  |
//! | `Shared { owner: Hyp, borrower }`  | the hypervisor and VM `borrower`    | `Borrowed(pfn)` there |
//!
//! Orthogonal counters in the same 8-byte record: `pins` (long-term pins, e.g. DMA; a pinned frame
//! never moves or frees) and `refs` (short-term `gup` references held across a fault's lookup).
//!
//! # Transitions
//!
//! Every transition validates the whole range on both sides (frame table and guest map) before it
//! writes anything, and returns an [`OwnershipError`] on a wrong state; the set phase cannot fail.
//! "inv" marks transitions that take access away from a VM: they run [`Invalidate::begin`] (which
//! removes stage-2 entries with break-before-make and completes the TLB invalidation) before
//! changing anything, and [`Invalidate::end`] after.
//!
//! | Operation            | Frame before → after                         | Guest before → after        | Also needs      |
//! |----------------------|----------------------------------------------|-----------------------------|-----------------|
//! | `hyp_alloc`          | `Free` → `Owned(Hyp)`                         | —                           |                 |
//! | `hyp_free`           | `Owned(Hyp)` → `Free` (zeroed)                | —                           | pins = refs = 0 |
//! | `populate`           | `Free` → `Owned(Vm)`                          | `NoPage` → `Owned`          |                 |
//! | `donate_to_guest`    | `Owned(Hyp)` → `Owned(Vm)`                    | `NoPage` → `Owned`          | pins = 0        |
//! | `share_with_guest`   | `Owned(Hyp)` → `Shared{Hyp, Vm}`              | `NoPage` → `Borrowed`       | pins = 0        |
//! | `unshare_from_guest` | `Shared{Hyp, Vm}` → `Owned(Hyp)` (inv)        | `Borrowed` → `NoPage`       | pins = refs = 0 |
//! | `reclaim`            | `Owned(Vm)` → `Free`, zeroed (inv)            | `Owned` → `NoPage`          | pins = refs = 0 |
//! | `migrate`            | old `Owned(Vm)` → `Free` (zeroed), new `Free` → `Owned(Vm)` with a copy (inv) | `Owned(old)` → `Owned(new)` | pins = refs = 0 |
//! | `pin` / `unpin`      | pins ± 1 on `Owned(Vm)` / `Shared{_, Vm}`     | unchanged (`Owned`/`Borrowed`) | pins < max / > 0 |
//! | `get_page` / `put_page` | refs ± 1, same states as `pin`             | unchanged                   |                 |
//!
//! # Invariants (numbers from `docs/design.md`; all checked by [`FrameTable::check_invariants`] and
//! [`GuestMap::check_against`])
//! - I1 (ownership half): a guest entry `Owned(p)` in VM `n` ⇔ frame `p` is `Owned(Vm(n))` and is
//!   recorded in exactly one guest entry; `Borrowed(p)` in VM `n` ⇔ `p` is `Shared{_, Vm(n)}`.
//!   Stage-2 leaves are checked against the guest map in `vm.rs`.
//! - I4 (ownership half): a frame becomes `Free` only inside a transition that ran
//!   [`Invalidate::begin`] first, and `Free` frames are zero and on the free list exactly once.
//! - Pins and references are only held on frames a VM can reach (`Owned(Vm)`/`Shared`).
//!
//! Locking: the frame table and every VM's guest map are guarded by one ownership lock held by the
//! caller (`vm.rs`); take it before any VM's MMU lock (`Invalidate` takes the MMU lock inside it).

use alloc::vec::Vec;
use core::fmt;

use super::addr::{Gfn, Pfn};
use super::bugs::bug;

/// A VM's identity in ownership records (not the hardware VMID, which the stage-2 config picks).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct VmId(u16);

impl VmId {
    /// The largest id: codes in a [`FrameRecord`] reserve 0 for the hypervisor.
    pub const MAX: u16 = u16::MAX - 1;

    /// `None` if `raw` exceeds [`VmId::MAX`].
    pub const fn new(raw: u16) -> Option<Self> {
        if raw <= Self::MAX {
            Some(Self(raw))
        } else {
            None
        }
    }
    pub const fn raw(self) -> u16 {
        self.0
    }
}

impl fmt::Display for VmId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VM {}", self.0)
    }
}

/// Who owns (or borrows) a frame.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Owner {
    Hyp,
    Vm(VmId),
}

impl Owner {
    const fn code(self) -> u64 {
        match self {
            Owner::Hyp => 0,
            Owner::Vm(id) => id.0 as u64 + 1,
        }
    }
    const fn from_code(code: u64) -> Self {
        match code {
            0 => Owner::Hyp,
            c => Owner::Vm(VmId((c - 1) as u16)),
        }
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::Hyp => f.write_str("the hypervisor"),
            Owner::Vm(id) => write!(f, "{id}"),
        }
    }
}

/// The state of one frame, decoded from its [`FrameRecord`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FrameState {
    Free,
    Owned(Owner),
    Shared { owner: Owner, borrower: Owner },
}

impl FrameState {
    /// Whether VM `vm` may have a stage-2 leaf to a frame in this state.
    pub fn reachable_by(self, vm: VmId) -> bool {
        match self {
            FrameState::Owned(o) => o == Owner::Vm(vm),
            FrameState::Shared { owner, borrower } => {
                owner == Owner::Vm(vm) || borrower == Owner::Vm(vm)
            }
            FrameState::Free => false,
        }
    }
}

impl fmt::Display for FrameState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameState::Free => f.write_str("free"),
            FrameState::Owned(o) => write!(f, "owned by {o}"),
            FrameState::Shared { owner, borrower } => {
                write!(f, "owned by {owner} and shared with {borrower}")
            }
        }
    }
}

/// One frame's ownership record, packed into 8 bytes.
///
/// Layout: bits 0..2 kind (0 free, 1 owned, 2 shared); bits 2..18 owner code and bits 18..34
/// borrower code (0 = hypervisor, n + 1 = VM n), or for a free frame bits 2..34 the index of the
/// next free frame; bits 34..46 pins; bits 46..58 refs.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(transparent)]
pub struct FrameRecord(u64);

const _: () = assert!(core::mem::size_of::<FrameRecord>() <= 8);

const KIND_MASK: u64 = 0b11;
const KIND_FREE: u64 = 0;
const KIND_OWNED: u64 = 1;
const KIND_SHARED: u64 = 2;
const OWNER_SHIFT: u32 = 2;
const BORROWER_SHIFT: u32 = 18;
const CODE_MASK: u64 = 0xffff;
const NEXT_SHIFT: u32 = 2;
const NEXT_MASK: u64 = 0xffff_ffff;
const NO_NEXT: u32 = u32::MAX;
const PINS_SHIFT: u32 = 34;
const REFS_SHIFT: u32 = 46;
const COUNT_MASK: u64 = 0xfff;
/// Largest pin (and reference) count a record holds.
pub const MAX_PINS: u16 = COUNT_MASK as u16;

impl FrameRecord {
    const fn free(next: u32) -> Self {
        Self(KIND_FREE | ((next as u64) << NEXT_SHIFT))
    }

    pub const fn state(self) -> FrameState {
        let owner = Owner::from_code((self.0 >> OWNER_SHIFT) & CODE_MASK);
        match self.0 & KIND_MASK {
            KIND_FREE => FrameState::Free,
            KIND_OWNED => FrameState::Owned(owner),
            _ => FrameState::Shared {
                owner,
                borrower: Owner::from_code((self.0 >> BORROWER_SHIFT) & CODE_MASK),
            },
        }
    }

    pub const fn pins(self) -> u16 {
        ((self.0 >> PINS_SHIFT) & COUNT_MASK) as u16
    }

    pub const fn refs(self) -> u16 {
        ((self.0 >> REFS_SHIFT) & COUNT_MASK) as u16
    }

    const fn next_free(self) -> u32 {
        ((self.0 >> NEXT_SHIFT) & NEXT_MASK) as u32
    }

    /// Keeps pins and refs; only non-free states may be set this way.
    fn with_state(self, s: FrameState) -> Self {
        let counts = self.0 & !((1 << PINS_SHIFT) - 1);
        let body = match s {
            FrameState::Free => unreachable!("frames become free only through FrameTable::release"),
            FrameState::Owned(o) => KIND_OWNED | (o.code() << OWNER_SHIFT),
            FrameState::Shared { owner, borrower } => {
                KIND_SHARED | (owner.code() << OWNER_SHIFT) | (borrower.code() << BORROWER_SHIFT)
            }
        };
        Self(counts | body)
    }

    fn with_pins(self, n: u16) -> Self {
        Self((self.0 & !(COUNT_MASK << PINS_SHIFT)) | ((n as u64) << PINS_SHIFT))
    }

    fn with_refs(self, n: u16) -> Self {
        Self((self.0 & !(COUNT_MASK << REFS_SHIFT)) | ((n as u64) << REFS_SHIFT))
    }
}

impl fmt::Debug for FrameRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} pins={} refs={}",
            self.state(),
            self.pins(),
            self.refs()
        )
    }
}

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
struct GuestEntry(u64);

impl GuestEntry {
    const NONE: Self = Self(0);
    fn new(p: GuestPage) -> Self {
        match p {
            GuestPage::NoPage => Self::NONE,
            GuestPage::Owned(pfn) => Self(1 | (pfn.raw() << 2)),
            GuestPage::Borrowed { pfn, writable } => Self(2 | writable as u64 | (pfn.raw() << 2)),
        }
    }
    fn get(self) -> GuestPage {
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

/// Why an ownership transition was refused. Nothing was changed when one of these is returned.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum OwnershipError {
    /// The frame is not RAM described by the frame table.
    NotRam { pfn: Pfn },
    /// The guest page is outside every memory region of the VM.
    NotGuestMemory { vm: VmId, gfn: Gfn },
    /// The frame is in a state the operation does not start from.
    WrongFrameState { op: Op, pfn: Pfn, found: FrameState },
    /// The guest page is in a state the operation does not start from.
    WrongGuestState {
        op: Op,
        vm: VmId,
        gfn: Gfn,
        found: GuestPage,
    },
    /// The frame has long-term pins, so it can neither move nor change owner.
    Pinned { op: Op, pfn: Pfn, pins: u16 },
    /// Someone holds a short-term reference to the frame; retry later.
    Busy { op: Op, pfn: Pfn, refs: u16 },
    /// The pin or reference count is at its maximum.
    CountOverflow { op: Op, pfn: Pfn },
    /// `unpin`/`put_page` without a matching `pin`/`get_page`.
    CountUnderflow { op: Op, pfn: Pfn },
    /// No free frame is left.
    OutOfMemory { op: Op },
    /// A zero-length or wrapping range.
    BadRange { op: Op },
}

/// Names an operation in errors.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Op {
    HypAlloc,
    HypFree,
    Populate,
    Donate,
    Share,
    Unshare,
    Reclaim,
    Migrate,
    Pin,
    Unpin,
    GetPage,
    PutPage,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::HypAlloc => "allocate for the hypervisor",
            Op::HypFree => "free from the hypervisor",
            Op::Populate => "populate",
            Op::Donate => "donate to a guest",
            Op::Share => "share with a guest",
            Op::Unshare => "unshare from a guest",
            Op::Reclaim => "reclaim",
            Op::Migrate => "migrate",
            Op::Pin => "pin",
            Op::Unpin => "unpin",
            Op::GetPage => "take a reference to",
            Op::PutPage => "drop a reference to",
        })
    }
}

impl fmt::Display for OwnershipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotRam { pfn } => write!(f, "frame {:#x} is not RAM", pfn.raw()),
            Self::NotGuestMemory { vm, gfn } => {
                write!(
                    f,
                    "guest page {:#x} is outside the memory of {vm}",
                    gfn.raw()
                )
            }
            Self::WrongFrameState { op, pfn, found } => {
                write!(f, "cannot {op} frame {:#x}: it is {found}", pfn.raw())
            }
            Self::WrongGuestState { op, vm, gfn, found } => {
                write!(
                    f,
                    "cannot {op} guest page {:#x} of {vm}: it is {found}",
                    gfn.raw()
                )
            }
            Self::Pinned { op, pfn, pins } => {
                write!(
                    f,
                    "cannot {op} frame {:#x}: it has {pins} long-term pins",
                    pfn.raw()
                )
            }
            Self::Busy { op, pfn, refs } => {
                write!(
                    f,
                    "cannot {op} frame {:#x}: {refs} references are held",
                    pfn.raw()
                )
            }
            Self::CountOverflow { op, pfn } => {
                write!(
                    f,
                    "cannot {op} frame {:#x}: its counter is at its maximum",
                    pfn.raw()
                )
            }
            Self::CountUnderflow { op, pfn } => {
                write!(
                    f,
                    "cannot {op} frame {:#x}: its counter is already zero",
                    pfn.raw()
                )
            }
            Self::OutOfMemory { op } => write!(f, "cannot {op}: no free frame is left"),
            Self::BadRange { op } => write!(f, "cannot {op}: the range is empty or wraps"),
        }
    }
}

/// Access to frame contents, so transitions can zero and copy frames.
pub trait FrameData {
    fn zero_frame(&mut self, pfn: Pfn);
    fn copy_frame(&mut self, from: Pfn, to: Pfn);
}

#[cfg(any(test, feature = "sim", not(target_os = "none")))]
impl FrameData for super::sim::SimMemory {
    fn zero_frame(&mut self, pfn: Pfn) {
        super::sim::SimMemory::zero_frame(self, pfn)
    }
    fn copy_frame(&mut self, from: Pfn, to: Pfn) {
        super::sim::SimMemory::copy_frame(self, from, to)
    }
}

/// The secondary-MMU side of a VM: what an MMU notifier is to KVM. `begin` must leave no stage-2
/// entry and no TLB entry (on any CPU) for the range before it returns, and make faults on the
/// range retry until `end`.
pub trait Invalidate {
    fn begin(&mut self, gfn: Gfn, pages: u64);
    fn end(&mut self, gfn: Gfn, pages: u64);
}

/// The frame table: one [`FrameRecord`] per RAM frame in `[base, base + len)`, with the free
/// frames threaded into a list through their records.
///
/// A table made by [`FrameTable::new_unzeroed`] also has a *fresh tail*: frames from index
/// `fresh` on are free but on no list and not zeroed yet. They are zeroed as they are handed
/// out, so creating a VM costs nothing per frame of memory it never touches (zeroing a whole
/// pool up front cost seconds of boot time for a 512 MiB guest), and whole aligned runs are cut
/// from the tail without scanning the table.
pub struct FrameTable {
    base: Pfn,
    records: Vec<FrameRecord>,
    free_head: u32,
    /// Free frames, on the list and in the fresh tail.
    free_count: u64,
    /// First frame of the fresh tail (`records.len()` when there is none).
    fresh: usize,
    /// Zeroes `count` frames from `pfn`, for the fresh tail.
    zero_fresh: fn(Pfn, u64),
}

impl FrameTable {
    /// A table for `frames` RAM frames starting at `base`, all free (their contents must be zero).
    ///
    /// # Panics
    /// If `frames` does not fit the 32-bit free-list link.
    pub fn new(base: Pfn, frames: u64) -> Self {
        assert!(
            frames < u64::from(NO_NEXT),
            "frame table too large for its free-list links"
        );
        let records = (0..frames)
            .map(|i| {
                FrameRecord::free(if i + 1 < frames {
                    i as u32 + 1
                } else {
                    NO_NEXT
                })
            })
            .collect();
        Self {
            base,
            records,
            free_head: if frames > 0 { 0 } else { NO_NEXT },
            free_count: frames,
            fresh: frames as usize,
            zero_fresh: |_, _| {},
        }
    }

    /// A table for `frames` RAM frames starting at `base`, all free, whose contents are not
    /// zero yet: `zero(pfn, count)` zeroes frames as they are first handed out.
    ///
    /// # Panics
    /// If `frames` does not fit the 32-bit free-list link.
    pub fn new_unzeroed(base: Pfn, frames: u64, zero: fn(Pfn, u64)) -> Self {
        assert!(
            frames < u64::from(NO_NEXT),
            "frame table too large for its free-list links"
        );
        Self {
            base,
            records: alloc::vec![FrameRecord::free(NO_NEXT); frames as usize],
            free_head: NO_NEXT,
            free_count: frames,
            fresh: 0,
            zero_fresh: zero,
        }
    }

    /// Takes `n` frames from the front of the fresh tail for `owner`, zeroed.
    fn take_fresh(&mut self, n: usize, owner: Owner) -> Pfn {
        let first = self.fresh;
        debug_assert!(first + n <= self.records.len());
        let pfn = Pfn::new(self.base.raw() + first as u64);
        (self.zero_fresh)(pfn, n as u64);
        for r in &mut self.records[first..first + n] {
            *r = FrameRecord(0).with_state(FrameState::Owned(owner));
        }
        self.fresh += n;
        self.free_count -= n as u64;
        pfn
    }

    /// Moves the front of the fresh tail up to frame index `to` onto the free list, zeroed.
    fn retire_fresh(&mut self, to: usize) {
        let from = self.fresh;
        if to <= from {
            return;
        }
        (self.zero_fresh)(Pfn::new(self.base.raw() + from as u64), (to - from) as u64);
        for i in from..to {
            self.records[i] = FrameRecord::free(self.free_head);
            self.free_head = i as u32;
        }
        self.fresh = to;
    }

    pub fn base(&self) -> Pfn {
        self.base
    }
    pub fn frames(&self) -> u64 {
        self.records.len() as u64
    }
    pub fn free_frames(&self) -> u64 {
        self.free_count
    }
    /// Bytes of ownership metadata per 4 KiB frame.
    pub const fn bytes_per_frame() -> usize {
        core::mem::size_of::<FrameRecord>()
    }

    fn index(&self, pfn: Pfn) -> Option<usize> {
        let i = pfn.raw().checked_sub(self.base.raw())?;
        (i < self.records.len() as u64).then_some(i as usize)
    }

    fn idx(&self, pfn: Pfn) -> Result<usize, OwnershipError> {
        self.index(pfn).ok_or(OwnershipError::NotRam { pfn })
    }

    /// The record of `pfn`, or `None` if it is not RAM.
    pub fn record(&self, pfn: Pfn) -> Option<FrameRecord> {
        self.index(pfn).map(|i| self.records[i])
    }

    pub fn state(&self, pfn: Pfn) -> Option<FrameState> {
        self.record(pfn).map(FrameRecord::state)
    }

    /// Takes a free frame off the list and gives it to `owner`.
    fn take_free(&mut self, op: Op, owner: Owner) -> Result<Pfn, OwnershipError> {
        if self.free_head == NO_NEXT {
            if self.fresh < self.records.len() {
                return Ok(self.take_fresh(1, owner));
            }
            return Err(OwnershipError::OutOfMemory { op });
        }
        let i = self.free_head as usize;
        self.free_head = self.records[i].next_free();
        self.free_count -= 1;
        self.records[i] = FrameRecord(0).with_state(FrameState::Owned(owner));
        Ok(Pfn::new(self.base.raw() + i as u64))
    }

    /// The frame `take_free` would return next, without taking it.
    fn peek_free(&self, op: Op) -> Result<Pfn, OwnershipError> {
        if self.free_head == NO_NEXT {
            if self.fresh < self.records.len() {
                return Ok(Pfn::new(self.base.raw() + self.fresh as u64));
            }
            return Err(OwnershipError::OutOfMemory { op });
        }
        Ok(Pfn::new(self.base.raw() + u64::from(self.free_head)))
    }

    /// Zeroes `pfn` and puts it back on the free list. Callers have removed every translation to
    /// it (I4) and checked that it has no pins or references.
    fn release(&mut self, pfn: Pfn, data: &mut dyn FrameData) {
        let i = self.index(pfn).expect("released frame is RAM");
        debug_assert!(
            self.records[i].state() != FrameState::Free,
            "{pfn:?} freed twice"
        );
        debug_assert!(self.records[i].pins() == 0 && self.records[i].refs() == 0);
        data.zero_frame(pfn);
        self.records[i] = FrameRecord::free(self.free_head);
        self.free_head = i as u32;
        self.free_count += 1;
    }

    fn set_state(&mut self, pfn: Pfn, s: FrameState) {
        let i = self.index(pfn).expect("checked frame is RAM");
        self.records[i] = self.records[i].with_state(s);
    }

    /// Checks that every frame of `[pfn, pfn + n)` is RAM in state `want` with no pins (and, if
    /// `idle`, no references).
    fn expect_frames(
        &self,
        op: Op,
        pfn: Pfn,
        n: u64,
        want: FrameState,
        idle: bool,
    ) -> Result<(), OwnershipError> {
        if n == 0 || pfn.raw().checked_add(n).is_none() {
            return Err(OwnershipError::BadRange { op });
        }
        for p in (pfn.raw()..pfn.raw() + n).map(Pfn::new) {
            let r = self.records[self.idx(p)?];
            if r.state() != want {
                return Err(OwnershipError::WrongFrameState {
                    op,
                    pfn: p,
                    found: r.state(),
                });
            }
            expect_movable(op, p, r, idle)?;
        }
        Ok(())
    }

    /// Allocates a zeroed frame for the hypervisor (stage-2 tables, donations).
    ///
    /// # Errors
    /// `OutOfMemory` if no frame is free.
    pub fn hyp_alloc(&mut self) -> Result<Pfn, OwnershipError> {
        self.take_free(Op::HypAlloc, Owner::Hyp)
    }

    /// Allocates `n` contiguous free frames aligned to `n` frames for the hypervisor (a
    /// concatenated stage-2 root). Slow (scans the table): for VM creation only.
    ///
    /// # Errors
    /// `BadRange` if `n` is not a power of two; `OutOfMemory` if no aligned free run exists.
    pub fn hyp_alloc_run(&mut self, n: u64) -> Result<Pfn, OwnershipError> {
        let op = Op::HypAlloc;
        if !n.is_power_of_two() {
            return Err(OwnershipError::BadRange { op });
        }
        let base = self.base.raw();
        // The fresh tail first: an aligned run cut from it costs no scan.
        let start = (base + self.fresh as u64).div_ceil(n) * n;
        if start + n <= base + self.frames() {
            self.retire_fresh((start - base) as usize);
            return Ok(self.take_fresh(n as usize, Owner::Hyp));
        }
        let first = base.div_ceil(n) * n;
        let found = (first..base + self.frames())
            .step_by(n as usize)
            .find(|&p| {
                p + n <= base + self.fresh as u64
                    && (p..p + n)
                        .all(|q| self.records[(q - base) as usize].state() == FrameState::Free)
            })
            .ok_or(OwnershipError::OutOfMemory { op })?;
        // Unlink the run: rebuild the free list without it, keeping the others' order.
        let mut prev: Option<usize> = None;
        let mut cur = self.free_head;
        while cur != NO_NEXT {
            let i = cur as usize;
            let next = self.records[i].next_free();
            let p = base + i as u64;
            if p >= found && p < found + n {
                match prev {
                    None => self.free_head = next,
                    Some(j) => self.records[j] = FrameRecord::free(next),
                }
                self.records[i] = FrameRecord(0).with_state(FrameState::Owned(Owner::Hyp));
                self.free_count -= 1;
            } else {
                prev = Some(i);
            }
            cur = next;
        }
        Ok(Pfn::new(found))
    }

    /// Returns a hypervisor frame to the free list, zeroed.
    ///
    /// # Errors
    /// `NotRam`, `WrongFrameState` (not `Owned(Hyp)`), `Pinned`, `Busy`.
    pub fn hyp_free(&mut self, pfn: Pfn, data: &mut dyn FrameData) -> Result<(), OwnershipError> {
        self.expect_frames(Op::HypFree, pfn, 1, FrameState::Owned(Owner::Hyp), true)?;
        self.release(pfn, data);
        Ok(())
    }

    /// Gives a free frame to `guest` at `gfn` (the fault path's "allocate the backing frame").
    ///
    /// # Errors
    /// `NotGuestMemory`, `WrongGuestState` (already backed), `OutOfMemory`.
    pub fn populate(&mut self, guest: &mut GuestMap, gfn: Gfn) -> Result<Pfn, OwnershipError> {
        let op = Op::Populate;
        guest.expect_pages(op, gfn, 1, |p| p == GuestPage::NoPage)?;
        let pfn = self.take_free(op, Owner::Vm(guest.vm))?;
        guest.set(gfn, GuestPage::Owned(pfn));
        Ok(pfn)
    }

    /// Backs the `n` unbacked pages of `guest` from `gfn` (`n` a power of two, `gfn` aligned
    /// to it, all in one region) with one fresh `n`-aligned run of frames, so that one block
    /// entry can map them: a first touch of a whole block of guest RAM. All or nothing in one
    /// transition under the lock the caller holds: if any page is already backed (another vCPU
    /// populated it), nothing is allocated.
    ///
    /// # Errors
    /// `BadRange` (not a power of two or not aligned), `NotGuestMemory` (not inside one
    /// region), `WrongGuestState` (a page is backed), `OutOfMemory` (no free aligned run).
    pub fn populate_run(
        &mut self,
        guest: &mut GuestMap,
        gfn: Gfn,
        n: u64,
    ) -> Result<Pfn, OwnershipError> {
        let op = Op::Populate;
        if !n.is_power_of_two() || !gfn.raw().is_multiple_of(n) {
            return Err(OwnershipError::BadRange { op });
        }
        if !guest.contains(gfn, n) {
            return Err(OwnershipError::NotGuestMemory { vm: guest.vm, gfn });
        }
        guest.expect_pages(op, gfn, n, |p| p == GuestPage::NoPage)?;
        let run = self.hyp_alloc_run(n).map_err(|e| match e {
            OwnershipError::OutOfMemory { .. } => OwnershipError::OutOfMemory { op },
            e => e,
        })?;
        let to = FrameState::Owned(Owner::Vm(guest.vm));
        for i in 0..n {
            let p = Pfn::new(run.raw() + i);
            self.set_state(p, to);
            guest.set(Gfn::new(gfn.raw() + i), GuestPage::Owned(p));
        }
        Ok(run)
    }

    /// Moves `[pfn, pfn + n)` from the hypervisor to `guest` at `[gfn, gfn + n)`.
    ///
    /// # Errors
    /// `BadRange`, `NotRam`, `NotGuestMemory`, `WrongFrameState`, `WrongGuestState`, `Pinned`,
    /// `Busy`.
    pub fn donate_to_guest(
        &mut self,
        guest: &mut GuestMap,
        pfn: Pfn,
        gfn: Gfn,
        n: u64,
    ) -> Result<(), OwnershipError> {
        let op = Op::Donate;
        if !bug!(skip_owner_check) {
            self.expect_frames(op, pfn, n, FrameState::Owned(Owner::Hyp), true)?;
        }
        guest.expect_pages(op, gfn, n, |p| p == GuestPage::NoPage)?;
        let to = FrameState::Owned(Owner::Vm(guest.vm));
        for i in 0..n {
            let p = Pfn::new(pfn.raw() + i);
            self.set_state(p, to);
            guest.set(Gfn::new(gfn.raw() + i), GuestPage::Owned(p));
        }
        Ok(())
    }

    /// Lets `guest` access hypervisor frames `[pfn, pfn + n)` at `[gfn, gfn + n)`.
    ///
    /// # Errors
    /// As [`FrameTable::donate_to_guest`].
    pub fn share_with_guest(
        &mut self,
        guest: &mut GuestMap,
        pfn: Pfn,
        gfn: Gfn,
        n: u64,
        writable: bool,
    ) -> Result<(), OwnershipError> {
        let op = Op::Share;
        if !bug!(skip_owner_check) {
            self.expect_frames(op, pfn, n, FrameState::Owned(Owner::Hyp), true)?;
        }
        guest.expect_pages(op, gfn, n, |p| p == GuestPage::NoPage)?;
        let to = FrameState::Shared {
            owner: Owner::Hyp,
            borrower: Owner::Vm(guest.vm),
        };
        for i in 0..n {
            let p = Pfn::new(pfn.raw() + i);
            self.set_state(p, to);
            guest.set(
                Gfn::new(gfn.raw() + i),
                GuestPage::Borrowed { pfn: p, writable },
            );
        }
        Ok(())
    }

    /// Takes back from `guest` the frames it borrows at `[gfn, gfn + n)`; they return to the
    /// hypervisor alone once `inv` has removed the guest's translations.
    ///
    /// # Errors
    /// `BadRange`, `NotGuestMemory`, `WrongGuestState` (not borrowed), `Pinned`, `Busy`.
    pub fn unshare_from_guest(
        &mut self,
        guest: &mut GuestMap,
        gfn: Gfn,
        n: u64,
        inv: &mut dyn Invalidate,
    ) -> Result<(), OwnershipError> {
        let op = Op::Unshare;
        guest.expect_pages(op, gfn, n, |p| matches!(p, GuestPage::Borrowed { .. }))?;
        for g in gfns(gfn, n) {
            let pfn = guest.get(g).pfn().expect("checked borrowed");
            let r = self.records[self.idx(pfn)?];
            debug_assert_eq!(
                r.state(),
                FrameState::Shared {
                    owner: Owner::Hyp,
                    borrower: Owner::Vm(guest.vm)
                },
                "I1: guest map and frame table disagree on {pfn:?}"
            );
            expect_movable(op, pfn, r, true)?;
        }
        inv.begin(gfn, n);
        for g in gfns(gfn, n) {
            let pfn = guest.get(g).pfn().expect("checked borrowed");
            self.set_state(pfn, FrameState::Owned(Owner::Hyp));
            guest.set(g, GuestPage::NoPage);
        }
        inv.end(gfn, n);
        Ok(())
    }

    /// Takes `[gfn, gfn + n)` away from `guest` (every page must be owned and backed); the frames
    /// are zeroed and freed after `inv` removed every translation to them.
    ///
    /// # Errors
    /// `BadRange`, `NotGuestMemory`, `WrongGuestState` (not owned), `Pinned`, `Busy`.
    pub fn reclaim(
        &mut self,
        guest: &mut GuestMap,
        gfn: Gfn,
        n: u64,
        inv: &mut dyn Invalidate,
        data: &mut dyn FrameData,
    ) -> Result<(), OwnershipError> {
        let op = Op::Reclaim;
        guest.expect_pages(op, gfn, n, |p| matches!(p, GuestPage::Owned(_)))?;
        for g in gfns(gfn, n) {
            let pfn = guest.get(g).pfn().expect("checked owned");
            let r = self.records[self.idx(pfn)?];
            debug_assert_eq!(
                r.state(),
                FrameState::Owned(Owner::Vm(guest.vm)),
                "I1 at {pfn:?}"
            );
            expect_movable(op, pfn, r, true)?;
        }
        inv.begin(gfn, n);
        for g in gfns(gfn, n) {
            let pfn = guest.get(g).pfn().expect("checked owned");
            guest.set(g, GuestPage::NoPage);
            self.release(pfn, data);
        }
        inv.end(gfn, n);
        Ok(())
    }

    /// Moves guest page `gfn` to a fresh frame holding a copy of its contents; the old frame is
    /// zeroed and freed. Returns the new frame.
    ///
    /// # Errors
    /// `NotGuestMemory`, `WrongGuestState` (not owned), `Pinned`, `Busy`, `OutOfMemory`.
    pub fn migrate(
        &mut self,
        guest: &mut GuestMap,
        gfn: Gfn,
        inv: &mut dyn Invalidate,
        data: &mut dyn FrameData,
    ) -> Result<Pfn, OwnershipError> {
        let op = Op::Migrate;
        guest.expect_pages(op, gfn, 1, |p| matches!(p, GuestPage::Owned(_)))?;
        let old = guest.get(gfn).pfn().expect("checked owned");
        let r = self.records[self.idx(old)?];
        debug_assert_eq!(
            r.state(),
            FrameState::Owned(Owner::Vm(guest.vm)),
            "I1 at {old:?}"
        );
        expect_movable(op, old, r, true)?;
        self.peek_free(op)?;
        inv.begin(gfn, 1);
        let new = self
            .take_free(op, Owner::Vm(guest.vm))
            .expect("peeked a free frame");
        data.copy_frame(old, new);
        guest.set(gfn, GuestPage::Owned(new));
        self.release(old, data);
        inv.end(gfn, 1);
        Ok(new)
    }

    /// Adds a long-term pin to the frame backing `gfn`: until unpinned it cannot move or be freed.
    ///
    /// # Errors
    /// `NotGuestMemory`, `WrongGuestState` (not backed), `CountOverflow`.
    pub fn pin(&mut self, guest: &GuestMap, gfn: Gfn) -> Result<Pfn, OwnershipError> {
        self.adjust(guest, gfn, Op::Pin, 1)
    }

    /// Drops a long-term pin.
    ///
    /// # Errors
    /// `NotGuestMemory`, `WrongGuestState` (not backed), `CountUnderflow`.
    pub fn unpin(&mut self, guest: &GuestMap, gfn: Gfn) -> Result<Pfn, OwnershipError> {
        self.adjust(guest, gfn, Op::Unpin, -1)
    }

    /// `gup`: a short-term reference to the frame backing `gfn`, which must be dropped with
    /// [`FrameTable::put_page`].
    ///
    /// # Errors
    /// `NotGuestMemory`, `WrongGuestState` (not backed), `CountOverflow`.
    pub fn get_page(&mut self, guest: &GuestMap, gfn: Gfn) -> Result<Pfn, OwnershipError> {
        self.adjust(guest, gfn, Op::GetPage, 1)
    }

    /// Drops a reference taken by [`FrameTable::get_page`].
    ///
    /// # Errors
    /// `NotGuestMemory`, `WrongGuestState` (not backed), `CountUnderflow`.
    pub fn put_page(&mut self, guest: &GuestMap, gfn: Gfn) -> Result<Pfn, OwnershipError> {
        self.adjust(guest, gfn, Op::PutPage, -1)
    }

    fn adjust(
        &mut self,
        guest: &GuestMap,
        gfn: Gfn,
        op: Op,
        d: i32,
    ) -> Result<Pfn, OwnershipError> {
        guest.expect_pages(op, gfn, 1, |p| p != GuestPage::NoPage)?;
        let pfn = guest.get(gfn).pfn().expect("checked backed");
        let i = self.idx(pfn)?;
        let r = self.records[i];
        debug_assert!(r.state().reachable_by(guest.vm), "I1 at {pfn:?}");
        let pins = matches!(op, Op::Pin | Op::Unpin);
        let cur = if pins { r.pins() } else { r.refs() };
        let new = match (d > 0, cur) {
            (true, MAX_PINS) => return Err(OwnershipError::CountOverflow { op, pfn }),
            (false, 0) => return Err(OwnershipError::CountUnderflow { op, pfn }),
            (true, c) => c + 1,
            (false, c) => c - 1,
        };
        self.records[i] = if pins {
            r.with_pins(new)
        } else {
            r.with_refs(new)
        };
        Ok(pfn)
    }

    /// Panics if the frame table is inconsistent: the free list holds exactly the free frames,
    /// once each, and free frames carry no counts.
    pub fn check_invariants(&self) {
        let mut on_list = alloc::vec![false; self.records.len()];
        let mut n = 0u64;
        let mut cur = self.free_head;
        while cur != NO_NEXT {
            let i = cur as usize;
            assert!(i < self.records.len(), "free list points outside the table");
            assert!(!on_list[i], "I4: frame index {i} is on the free list twice");
            assert_eq!(
                self.records[i].state(),
                FrameState::Free,
                "non-free frame on free list"
            );
            on_list[i] = true;
            n += 1;
            cur = self.records[i].next_free();
        }
        let fresh = self.records.len() - self.fresh;
        assert_eq!(
            n + fresh as u64,
            self.free_count,
            "free count disagrees with the free list and the fresh tail"
        );
        for (i, r) in self.records.iter().enumerate() {
            if i >= self.fresh {
                assert_eq!(r.state(), FrameState::Free, "fresh frame {i} is in use");
            } else if r.state() == FrameState::Free {
                assert!(
                    on_list[i],
                    "I4: free frame index {i} is not on the free list"
                );
            } else if r.state() == FrameState::Owned(Owner::Hyp) {
                assert!(
                    r.pins() == 0 && r.refs() == 0,
                    "hypervisor frame {i} has counts: {r:?}"
                );
            }
        }
    }
}

fn gfns(gfn: Gfn, n: u64) -> impl Iterator<Item = Gfn> {
    (gfn.raw()..gfn.raw() + n).map(Gfn::new)
}

fn expect_movable(op: Op, pfn: Pfn, r: FrameRecord, idle: bool) -> Result<(), OwnershipError> {
    if r.pins() != 0 {
        return Err(OwnershipError::Pinned {
            op,
            pfn,
            pins: r.pins(),
        });
    }
    if idle && r.refs() != 0 {
        return Err(OwnershipError::Busy {
            op,
            pfn,
            refs: r.refs(),
        });
    }
    Ok(())
}

/// A VM's side of ownership: for each guest page of its memory regions, the frame backing it.
pub struct GuestMap {
    vm: VmId,
    regions: Vec<(Gfn, Vec<GuestEntry>)>,
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

    fn set(&mut self, gfn: Gfn, p: GuestPage) {
        let (r, i) = self.locate(gfn).expect("checked guest memory");
        self.regions[r].1[i] = GuestEntry::new(p);
    }

    fn expect_pages(
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

#[cfg(test)]
mod tests;
