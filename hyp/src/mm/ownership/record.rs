//! One frame's ownership record: state, pin and reference counts, or the free-list link,
//! packed into 8 bytes.

use core::fmt;

use super::{FrameState, Owner};

/// One frame's ownership record, packed into 8 bytes.
///
/// Layout: bits 0..2 kind (0 free, 1 owned, 2 shared); bits 2..18 owner code and bits 18..34
/// borrower code (0 = hypervisor, n + 1 = VM n), or for a free frame bits 2..34 the index of the
/// next free frame; bits 34..46 pins; bits 46..58 refs.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(transparent)]
pub struct FrameRecord(pub(super) u64);

const _: () = assert!(core::mem::size_of::<FrameRecord>() <= 8);

pub(super) const KIND_MASK: u64 = 0b11;
pub(super) const KIND_FREE: u64 = 0;
pub(super) const KIND_OWNED: u64 = 1;
pub(super) const KIND_SHARED: u64 = 2;
pub(super) const OWNER_SHIFT: u32 = 2;
pub(super) const BORROWER_SHIFT: u32 = 18;
pub(super) const CODE_MASK: u64 = 0xffff;
pub(super) const NEXT_SHIFT: u32 = 2;
pub(super) const NEXT_MASK: u64 = 0xffff_ffff;
pub(super) const NO_NEXT: u32 = u32::MAX;
pub(super) const PINS_SHIFT: u32 = 34;
pub(super) const REFS_SHIFT: u32 = 46;
pub(super) const COUNT_MASK: u64 = 0xfff;
/// Largest pin (and reference) count a record holds.
pub const MAX_PINS: u16 = COUNT_MASK as u16;

impl FrameRecord {
    pub(super) const fn free(next: u32) -> Self {
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

    pub(super) const fn next_free(self) -> u32 {
        ((self.0 >> NEXT_SHIFT) & NEXT_MASK) as u32
    }

    /// Keeps pins and refs; only non-free states may be set this way.
    pub(super) fn with_state(self, s: FrameState) -> Self {
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

    pub(super) fn with_pins(self, n: u16) -> Self {
        Self((self.0 & !(COUNT_MASK << PINS_SHIFT)) | ((n as u64) << PINS_SHIFT))
    }

    pub(super) fn with_refs(self, n: u16) -> Self {
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
