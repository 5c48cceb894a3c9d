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

use core::fmt;

use super::addr::{Gfn, Pfn};

mod frame_table;
mod guest_map;
mod record;
mod transitions;

pub use frame_table::FrameTable;
pub use guest_map::{GuestMap, GuestPage};
pub use record::{FrameRecord, MAX_PINS};

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

/// Access to frame contents, so transitions can zero and copy frames: the one way the
/// ownership layer reaches what frames hold (freed frames are zeroed through it, and so are
/// fresh frames the first time they are handed out).
pub trait FrameData {
    fn zero_frame(&mut self, pfn: Pfn);
    fn copy_frame(&mut self, from: Pfn, to: Pfn);
    /// Zeroes `count` frames from `first` (a fresh run); implementations may do it in one go.
    fn zero_frames(&mut self, first: Pfn, count: u64) {
        for i in 0..count {
            self.zero_frame(Pfn::new(first.raw() + i));
        }
    }
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

#[cfg(test)]
mod tests;
