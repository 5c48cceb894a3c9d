//! VMID allocation: each live VM gets its own stage-2 TLB tag (VTTBR_EL2.VMID).
//!
//! The width comes from ID_AA64MMFR1_EL1.VMIDBits (through [`Stage2Config::max_vmid`]): 8 bits
//! give VMIDs 1..=255, 16 bits give 1..=65535. VMID 0 is never handed out: it is what the host
//! context (no VM, VTTBR_EL2 at reset) runs with, so a guest tagged 0 could hit translations
//! cached outside any VM.
//!
//! Reuse rule: a freed VMID may still tag TLB entries of the VM that had it. Whoever frees one
//! must first have completed a VMID-wide invalidation under it (`TLBI VMALLS12E1IS`), which
//! [`crate::mm::stage2::Stage2::destroy`] does. Allocation is next-fit (it continues after the
//! last VMID handed out), so a freed VMID is the last to come back, not the first.
//!
//! Locking: none inside; the owner keeps the allocator behind the lock that serialises VM
//! creation and teardown.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use super::stage2::{Stage2Config, Vmid};

const WORD: usize = 64;

/// Why a VMID request was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum VmidError {
    /// Every VMID from 1 to `max` is in use.
    Exhausted { max: u16 },
    /// VMID 0 belongs to the host and is never allocated or freed.
    Reserved,
    /// The VMID is wider than this CPU's VMIDs.
    OutOfRange { vmid: Vmid, max: u16 },
    /// The VMID is not allocated (a double free, or never handed out).
    NotAllocated { vmid: Vmid },
}

impl fmt::Display for VmidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exhausted { max } => {
                write!(f, "cannot allocate a VMID: all of 1..={max} are in use")
            }
            Self::Reserved => f.write_str("VMID 0 is reserved for the host"),
            Self::OutOfRange { vmid, max } => {
                write!(f, "cannot free VMID {vmid}: this CPU's VMIDs end at {max}")
            }
            Self::NotAllocated { vmid } => write!(f, "cannot free VMID {vmid}: not allocated"),
        }
    }
}

/// The set of VMIDs in use, as a bitmap (32 bytes for 8-bit VMIDs, 8 KiB for 16-bit).
#[derive(Clone, Debug)]
pub struct VmidAllocator {
    used: Vec<u64>,
    max: u16,
    /// Where the next search starts (next-fit).
    next: u16,
    in_use: usize,
}

impl VmidAllocator {
    /// All VMIDs the CPU supports (per `config`) free.
    pub fn new(config: &Stage2Config) -> Self {
        Self::with_max(config.max_vmid())
    }

    /// VMIDs `1..=max` free (`max` is 255 or 65535 on real CPUs; smaller for tests).
    pub fn with_max(max: u16) -> Self {
        let bits = usize::from(max) + 1;
        let mut used = vec![0; bits.div_ceil(WORD)];
        // VMID 0 is permanently taken.
        used[0] = 1;
        Self {
            used,
            max,
            next: 1,
            in_use: 0,
        }
    }

    /// The largest VMID this allocator hands out.
    pub fn max(&self) -> u16 {
        self.max
    }

    /// How many VMIDs are allocated.
    pub fn in_use(&self) -> usize {
        self.in_use
    }

    pub fn is_allocated(&self, vmid: Vmid) -> bool {
        vmid.raw() != 0 && vmid.raw() <= self.max && self.bit(vmid.raw())
    }

    fn bit(&self, v: u16) -> bool {
        let v = usize::from(v);
        self.used[v / WORD] & (1 << (v % WORD)) != 0
    }

    /// A free VMID, never 0.
    ///
    /// # Errors
    /// [`VmidError::Exhausted`] when all of `1..=max` are in use.
    pub fn alloc(&mut self) -> Result<Vmid, VmidError> {
        if self.in_use == usize::from(self.max) {
            return Err(VmidError::Exhausted { max: self.max });
        }
        // From `next` to the end, then from the start: a free bit exists (counted above).
        let start = usize::from(self.next);
        let found = self
            .first_free(start, usize::from(self.max) + 1)
            .or_else(|| self.first_free(0, start))
            .expect("in_use < max, so some VMID is free");
        self.used[found / WORD] |= 1 << (found % WORD);
        self.in_use += 1;
        let vmid = u16::try_from(found).expect("found <= max");
        self.next = if vmid == self.max { 1 } else { vmid + 1 };
        Ok(Vmid::new(vmid))
    }

    /// The first clear bit in `[from, to)`, a word at a time.
    fn first_free(&self, from: usize, to: usize) -> Option<usize> {
        let mut i = from;
        while i < to {
            let free = !self.used[i / WORD] >> (i % WORD);
            if free == 0 {
                i = (i / WORD + 1) * WORD;
                continue;
            }
            let at = i + free.trailing_zeros() as usize;
            return (at < to).then_some(at);
        }
        None
    }

    /// Give `vmid` back. The caller has completed a VMID-wide TLB invalidation under it (see
    /// the module docs).
    ///
    /// # Errors
    /// [`VmidError::Reserved`] for 0, [`VmidError::OutOfRange`] past `max`,
    /// [`VmidError::NotAllocated`] if it is free.
    pub fn free(&mut self, vmid: Vmid) -> Result<(), VmidError> {
        let v = vmid.raw();
        if v == 0 {
            return Err(VmidError::Reserved);
        }
        if v > self.max {
            return Err(VmidError::OutOfRange {
                vmid,
                max: self.max,
            });
        }
        if !self.bit(v) {
            return Err(VmidError::NotAllocated { vmid });
        }
        let v = usize::from(v);
        self.used[v / WORD] &= !(1 << (v % WORD));
        self.in_use -= 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::stage2::CpuFeatures;

    fn config(vmid_bits: u8) -> Stage2Config {
        let f = CpuFeatures {
            parange: 5,
            vmid_bits,
            fwb: false,
        };
        Stage2Config::from_features(f, 40).unwrap()
    }

    #[test]
    fn eight_bit_vmids_are_1_to_255_then_exhausted() {
        let mut a = VmidAllocator::new(&config(0));
        assert_eq!(a.max(), 255);
        let got: Vec<u16> = (0..255).map(|_| a.alloc().unwrap().raw()).collect();
        assert_eq!(
            got,
            (1..=255).collect::<Vec<_>>(),
            "every VMID once, never 0"
        );
        assert_eq!(a.alloc(), Err(VmidError::Exhausted { max: 255 }));
        assert_eq!(a.in_use(), 255);
        // One freed VMID is the only one left to hand out.
        a.free(Vmid::new(77)).unwrap();
        assert_eq!(a.alloc(), Ok(Vmid::new(77)));
        assert_eq!(a.alloc(), Err(VmidError::Exhausted { max: 255 }));
    }

    #[test]
    fn sixteen_bit_vmids_reach_65535_and_never_0() {
        let mut a = VmidAllocator::new(&config(2));
        assert_eq!(a.max(), u16::MAX);
        let mut last = 0;
        for _ in 0..u16::MAX {
            let v = a.alloc().unwrap().raw();
            assert!(v > last, "in order from 1");
            last = v;
        }
        assert_eq!(last, u16::MAX);
        assert_eq!(a.alloc(), Err(VmidError::Exhausted { max: u16::MAX }));
        assert!(!a.is_allocated(Vmid::new(0)));
    }

    #[test]
    fn next_fit_reuses_a_freed_vmid_last_and_wraps_past_0() {
        let mut a = VmidAllocator::with_max(4);
        let v: Vec<_> = (0..3).map(|_| a.alloc().unwrap()).collect();
        assert_eq!(v, [Vmid::new(1), Vmid::new(2), Vmid::new(3)]);
        a.free(Vmid::new(1)).unwrap();
        assert_eq!(a.alloc(), Ok(Vmid::new(4)), "continues after the last one");
        assert_eq!(a.alloc(), Ok(Vmid::new(1)), "wraps to 1, skipping 0");
        a.free(Vmid::new(3)).unwrap();
        a.free(Vmid::new(2)).unwrap();
        assert_eq!(a.alloc(), Ok(Vmid::new(2)));
        assert_eq!(a.alloc(), Ok(Vmid::new(3)));
        assert_eq!(a.alloc(), Err(VmidError::Exhausted { max: 4 }));
    }

    #[test]
    fn bad_frees_are_errors_and_change_nothing() {
        let mut a = VmidAllocator::with_max(255);
        let v = a.alloc().unwrap();
        assert_eq!(a.free(Vmid::new(0)), Err(VmidError::Reserved));
        assert_eq!(
            a.free(Vmid::new(256)),
            Err(VmidError::OutOfRange {
                vmid: Vmid::new(256),
                max: 255
            })
        );
        assert_eq!(
            a.free(Vmid::new(9)),
            Err(VmidError::NotAllocated { vmid: Vmid::new(9) })
        );
        assert_eq!(a.in_use(), 1);
        a.free(v).unwrap();
        assert_eq!(a.free(v), Err(VmidError::NotAllocated { vmid: v }));
        assert_eq!(a.in_use(), 0);
        assert!(!a.is_allocated(v));
    }

    #[test]
    fn errors_read_as_sentences() {
        let e = VmidError::Exhausted { max: 255 };
        assert_eq!(
            alloc::format!("{e}"),
            "cannot allocate a VMID: all of 1..=255 are in use"
        );
    }
}
