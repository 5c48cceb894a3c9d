//! Simulated physical memory: a contiguous RAM range of 4 KiB frames, initially zero. Holds
//! page tables and guest data alike.

use alloc::vec;
use alloc::vec::Vec;

use crate::mm::addr::{PAGE_SIZE, Pa, Pfn};
use crate::mm::descriptor::{ENTRIES_PER_TABLE, Pte};
use crate::mm::phys::PhysMem;

/// One frame as 64-bit words.
pub type FrameWords = [u64; ENTRIES_PER_TABLE];

/// RAM `[base, base + len)`. Accesses outside it are bugs in the caller and panic.
///
/// One contiguous zeroed allocation (the host OS commits pages lazily), so an entry access is
/// an index, like a table access through an identity map on hardware.
pub struct SimMemory {
    base: u64,
    words: Vec<u64>,
}

impl core::fmt::Debug for SimMemory {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SimMemory")
            .field("base", &Pa::new(self.base))
            .field("frames", &(self.words.len() / ENTRIES_PER_TABLE))
            .finish()
    }
}

impl SimMemory {
    /// RAM of `len` bytes at `base` (both page aligned).
    pub fn new(base: Pa, len: u64) -> Self {
        assert!(
            base.is_aligned(PAGE_SIZE) && len.is_multiple_of(PAGE_SIZE),
            "unaligned sim RAM"
        );
        Self {
            base: base.raw(),
            words: vec![0; (len / 8) as usize],
        }
    }

    pub fn base(&self) -> Pa {
        Pa::new(self.base)
    }
    /// One past the last byte.
    pub fn end(&self) -> Pa {
        Pa::new(self.base + self.words.len() as u64 * 8)
    }
    pub fn contains(&self, pa: Pa) -> bool {
        pa >= self.base() && pa < self.end()
    }

    #[inline(always)]
    fn word(&self, pa: u64) -> usize {
        (pa.wrapping_sub(self.base) >> 3) as usize
    }

    /// The 64-bit word at `pa` (8-byte aligned).
    #[inline(always)]
    pub fn read_u64(&self, pa: Pa) -> u64 {
        debug_assert!(pa.is_aligned(8), "unaligned read at {pa:?}");
        self.words[self.word(pa.raw())]
    }

    /// Store the 64-bit word at `pa` (8-byte aligned).
    #[inline(always)]
    pub fn write_u64(&mut self, pa: Pa, value: u64) {
        debug_assert!(pa.is_aligned(8), "unaligned write at {pa:?}");
        let i = self.word(pa.raw());
        self.words[i] = value;
    }

    /// Copy bytes out of RAM starting at `pa` (may cross frames).
    pub fn read_bytes(&self, pa: Pa, buf: &mut [u8]) {
        for (i, b) in buf.iter_mut().enumerate() {
            let at = pa.raw() + i as u64;
            let word = self.read_u64(Pa::new(at & !7));
            *b = (word >> ((at & 7) * 8)) as u8;
        }
    }

    /// Copy bytes into RAM starting at `pa` (may cross frames).
    pub fn write_bytes(&mut self, pa: Pa, buf: &[u8]) {
        for (i, &b) in buf.iter().enumerate() {
            let at = pa.raw() + i as u64;
            let aligned = Pa::new(at & !7);
            let shift = (at & 7) * 8;
            let word = (self.read_u64(aligned) & !(0xff << shift)) | (u64::from(b) << shift);
            self.write_u64(aligned, word);
        }
    }

    fn frame(&self, pfn: Pfn) -> core::ops::Range<usize> {
        let first = self.word(pfn.base().raw());
        assert!(
            first + ENTRIES_PER_TABLE <= self.words.len(),
            "{pfn:?} outside sim RAM"
        );
        first..first + ENTRIES_PER_TABLE
    }

    /// Fill the frame with zeros.
    pub fn zero_frame(&mut self, pfn: Pfn) {
        let r = self.frame(pfn);
        self.words[r].fill(0);
    }

    /// Copy a whole frame's contents.
    pub fn copy_frame(&mut self, from: Pfn, to: Pfn) {
        let (src, dst) = (self.frame(from), self.frame(to));
        self.words.copy_within(src, dst.start);
    }

    /// A frame's contents as words.
    pub fn frame_words(&self, pfn: Pfn) -> FrameWords {
        let mut out = [0; ENTRIES_PER_TABLE];
        out.copy_from_slice(&self.words[self.frame(pfn)]);
        out
    }
}

impl PhysMem for SimMemory {
    #[inline(always)]
    fn read_pte(&self, table: Pa, index: usize) -> Pte {
        Pte::from_raw(self.read_u64(Pa::new(table.raw() + 8 * index as u64)))
    }
    #[inline(always)]
    fn write_pte(&mut self, table: Pa, index: usize, pte: Pte) {
        self.write_u64(Pa::new(table.raw() + 8 * index as u64), pte.raw())
    }
    fn zero_table(&mut self, table: Pa) {
        self.zero_frame(Pfn::containing(table))
    }
    /// Plain memory has no other walker to order for; [`super::MachineMem`] checks barriers.
    fn publish_barrier(&mut self) {}
    fn entries_equal(&self, table: Pa, indices: core::ops::Range<usize>, pte: Pte) -> bool {
        let first = self.word(table.raw());
        let words = &self.words[first + indices.start..first + indices.end];
        // Branch-free chunks vectorise; the scan stops at the first chunk that differs.
        words
            .chunks(8)
            .all(|c| c.iter().fold(0, |acc, &w| acc | (w ^ pte.raw())) == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_bytes_and_frames() {
        let mut m = SimMemory::new(Pa::new(0x4000_0000), 4 * PAGE_SIZE);
        assert_eq!(
            m.read_u64(Pa::new(0x4000_1008)),
            0,
            "untouched RAM reads zero"
        );
        m.write_u64(Pa::new(0x4000_1008), 0x1122_3344_5566_7788);
        let mut b = [0u8; 3];
        m.read_bytes(Pa::new(0x4000_1009), &mut b);
        assert_eq!(b, [0x77, 0x66, 0x55], "little endian");
        // Across a frame boundary.
        m.write_bytes(Pa::new(0x4000_1ffe), &[1, 2, 3, 4]);
        assert_eq!(m.read_u64(Pa::new(0x4000_2000)) & 0xffff, 0x0403);
        m.copy_frame(
            Pfn::containing(Pa::new(0x4000_1000)),
            Pfn::containing(Pa::new(0x4000_3000)),
        );
        assert_eq!(m.read_u64(Pa::new(0x4000_3008)), 0x1122_3344_5566_7788);
        m.zero_frame(Pfn::containing(Pa::new(0x4000_1000)));
        assert_eq!(
            m.frame_words(Pfn::containing(Pa::new(0x4000_1000))),
            [0; 512]
        );
        assert!(m.contains(Pa::new(0x4000_3fff)) && !m.contains(Pa::new(0x4000_4000)));
    }
}
