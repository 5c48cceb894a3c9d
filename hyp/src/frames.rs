//! The hypervisor's page-frame allocator: every RAM frame except the hypervisor image, the boot
//! DTB, `/reserved-memory`, `/memreserve/` and the boot modules (initrd, `multiboot,module`).
//! Portable and host-tested.
//!
//! Invariants (checked by `check_invariants` after every operation in tests and debug builds):
//! - F1: the free list is sorted, its ranges are non-empty, disjoint and not adjacent (merged).
//! - F2: every free frame lies in RAM and in no reserved range given at construction.
//! - F3: `free_frames` equals the total length of the free list.
#![forbid(unsafe_code)]

use crate::mm::addr::{PAGE_SHIFT, PAGE_SIZE, Pa};
use crate::platform::Region;
use alloc::vec::Vec;
use core::fmt;

/// A half-open range of frame numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    start: u64,
    end: u64,
}

/// Frames of RAM not owned by anything else, handed out one or many at a time.
#[derive(Debug)]
pub struct FrameAllocator {
    /// RAM as given, in frames (partial pages at the edges left out).
    ram: Vec<Span>,
    /// Reserved ranges as given, in frames (partial pages included).
    reserved: Vec<Span>,
    free: Vec<Span>,
    free_frames: u64,
}

/// Totals for the boot log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameStats {
    pub ram_bytes: u64,
    /// RAM bytes kept out of the allocator at construction.
    pub reserved_bytes: u64,
    pub free_frames: u64,
}

/// Why frames could not be given back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeError {
    /// `pa` is not page aligned.
    Unaligned { pa: Pa },
    /// Some frame in the range is not allocatable RAM (outside RAM or reserved).
    NotAllocatable { pa: Pa },
    /// Some frame in the range is free already.
    AlreadyFree { pa: Pa },
}

impl fmt::Display for FreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unaligned { pa } => write!(f, "cannot free frames at {pa}: not page aligned"),
            Self::NotAllocatable { pa } => {
                write!(
                    f,
                    "cannot free frame {pa}: it is not RAM the allocator manages"
                )
            }
            Self::AlreadyFree { pa } => write!(f, "cannot free frame {pa}: it is free already"),
        }
    }
}

fn pa(frame: u64) -> Pa {
    Pa::new(frame << PAGE_SHIFT)
}

/// Sorted, merged copy of `spans` without empty ones.
fn normalise(mut spans: Vec<Span>) -> Vec<Span> {
    spans.retain(|s| s.start < s.end);
    spans.sort_by_key(|s| s.start);
    let mut out: Vec<Span> = Vec::with_capacity(spans.len());
    for s in spans {
        match out.last_mut() {
            Some(last) if s.start <= last.end => last.end = last.end.max(s.end),
            _ => out.push(s),
        }
    }
    out
}

/// `a` minus every span of `b` (both normalised).
fn subtract(a: &[Span], b: &[Span]) -> Vec<Span> {
    let mut out = Vec::new();
    for &s in a {
        let mut start = s.start;
        for r in b.iter().filter(|r| r.end > s.start && r.start < s.end) {
            if r.start > start {
                out.push(Span {
                    start,
                    end: r.start,
                });
            }
            start = start.max(r.end);
        }
        if start < s.end {
            out.push(Span { start, end: s.end });
        }
    }
    out
}

impl FrameAllocator {
    /// All of `ram` except `reserved`, in whole pages.
    pub fn new(ram: &[Region], reserved: &[Region]) -> Self {
        let ram = normalise(
            ram.iter()
                .map(|r| Span {
                    start: r.base.raw().div_ceil(PAGE_SIZE),
                    end: r.end().raw() >> PAGE_SHIFT,
                })
                .collect(),
        );
        let reserved = normalise(
            reserved
                .iter()
                .map(|r| Span {
                    start: r.base.raw() >> PAGE_SHIFT,
                    end: r.end().raw().div_ceil(PAGE_SIZE),
                })
                .collect(),
        );
        let free = subtract(&ram, &reserved);
        let free_frames = free.iter().map(|s| s.end - s.start).sum();
        let this = Self {
            ram,
            reserved,
            free,
            free_frames,
        };
        this.debug_check();
        this
    }

    pub fn stats(&self) -> FrameStats {
        let ram_frames: u64 = self.ram.iter().map(|s| s.end - s.start).sum();
        let reserved: u64 = subtract(&self.ram, &subtract(&self.ram, &self.reserved))
            .iter()
            .map(|s| s.end - s.start)
            .sum();
        FrameStats {
            ram_bytes: ram_frames * PAGE_SIZE,
            reserved_bytes: reserved * PAGE_SIZE,
            free_frames: self.free_frames,
        }
    }

    /// One frame, or `None` when none is left.
    pub fn alloc(&mut self) -> Option<Pa> {
        self.alloc_contiguous(1, 1)
    }

    /// `count` contiguous frames whose first frame number is a multiple of `align` (a power of
    /// two, in frames).
    pub fn alloc_contiguous(&mut self, count: u64, align: u64) -> Option<Pa> {
        debug_assert!(align.is_power_of_two() && count > 0);
        let (i, start) = self.free.iter().enumerate().find_map(|(i, s)| {
            let start = s.start.next_multiple_of(align);
            (start.checked_add(count)? <= s.end).then_some((i, start))
        })?;
        let s = self.free[i];
        let (before, after) = (
            Span {
                start: s.start,
                end: start,
            },
            Span {
                start: start + count,
                end: s.end,
            },
        );
        self.free.remove(i);
        for (k, piece) in [before, after]
            .into_iter()
            .filter(|p| p.start < p.end)
            .enumerate()
        {
            self.free.insert(i + k, piece);
        }
        self.free_frames -= count;
        self.debug_check();
        Some(pa(start))
    }

    /// Gives back `count` frames from `at`.
    ///
    /// # Errors
    /// `Unaligned`, `NotAllocatable` (outside RAM, or reserved) or `AlreadyFree`; nothing is
    /// freed then.
    pub fn free(&mut self, at: Pa, count: u64) -> Result<(), FreeError> {
        if !at.is_aligned(PAGE_SIZE) {
            return Err(FreeError::Unaligned { pa: at });
        }
        let span = Span {
            start: at.raw() >> PAGE_SHIFT,
            end: (at.raw() >> PAGE_SHIFT) + count,
        };
        let outside = subtract(&[span], &subtract(&self.ram, &self.reserved));
        if let Some(o) = outside.first() {
            return Err(FreeError::NotAllocatable { pa: pa(o.start) });
        }
        if let Some(f) = self
            .free
            .iter()
            .find(|f| f.end > span.start && f.start < span.end)
        {
            return Err(FreeError::AlreadyFree {
                pa: pa(f.start.max(span.start)),
            });
        }
        let i = self.free.partition_point(|f| f.start < span.start);
        self.free.insert(i, span);
        self.free = normalise(core::mem::take(&mut self.free));
        self.free_frames += count;
        self.debug_check();
        Ok(())
    }

    fn debug_check(&self) {
        if cfg!(debug_assertions) {
            self.check_invariants();
        }
    }

    /// Panics unless F1-F3 hold.
    pub fn check_invariants(&self) {
        for w in self.free.windows(2) {
            assert!(
                w[0].end < w[1].start,
                "F1: free ranges {w:?} overlap or touch"
            );
        }
        assert!(
            self.free.iter().all(|s| s.start < s.end),
            "F1: empty free range"
        );
        let allowed = subtract(&self.ram, &self.reserved);
        assert!(
            subtract(&self.free, &allowed).is_empty(),
            "F2: a free frame is not allocatable RAM"
        );
        let total: u64 = self.free.iter().map(|s| s.end - s.start).sum();
        assert_eq!(total, self.free_frames, "F3: free count");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use proptest::prelude::*;

    fn region(base: u64, size: u64) -> Region {
        Region {
            base: Pa::new(base),
            size,
        }
    }

    const MIB: u64 = 1 << 20;

    #[test]
    fn image_dtb_and_initrd_are_not_handed_out() {
        let ram = [region(0x4000_0000, 64 * MIB)];
        let image = region(0x4020_0000, 0x12_3456);
        let dtb = region(0x43ff_0000, 0x2000);
        let initrd = region(0x4800_0000, 0x1_0001); // partial last page is reserved too
        let mut fa = FrameAllocator::new(&ram, &[image, dtb, initrd]);
        let s = fa.stats();
        assert_eq!(s.ram_bytes, 64 * MIB);
        // The initrd lies beyond the 64 MiB of RAM and so reserves nothing.
        assert_eq!(s.reserved_bytes, 0x12_4000 + 0x2000);
        assert_eq!(s.free_frames, (64 * MIB - s.reserved_bytes) / PAGE_SIZE);
        let mut n = 0;
        while let Some(p) = fa.alloc() {
            for r in [image, dtb] {
                assert!(
                    p.raw() + PAGE_SIZE <= r.base.raw() || p.raw() >= r.end().raw(),
                    "{p:?} in {r:?}"
                );
            }
            n += 1;
        }
        assert_eq!(n, s.free_frames);
        assert_eq!(fa.stats().free_frames, 0);
    }

    #[test]
    fn partial_ram_pages_are_left_out() {
        let fa = FrameAllocator::new(&[region(0x1800, 0x3000)], &[]);
        assert_eq!(fa.stats().free_frames, 2); // 0x2000..0x4000
    }

    #[test]
    fn contiguous_allocation_honours_alignment() {
        let mut fa = FrameAllocator::new(&[region(0x1000, 16 * MIB)], &[]);
        let p = fa.alloc_contiguous(512, 512).unwrap();
        assert!(p.is_aligned(2 * MIB));
        assert_eq!(fa.stats().free_frames, 4096 - 512);
        assert_eq!(fa.alloc_contiguous(4096, 1), None);
    }

    #[test]
    fn bad_frees_are_errors_and_change_nothing() {
        let mut fa =
            FrameAllocator::new(&[region(0x4000_0000, MIB)], &[region(0x4000_0000, 0x1000)]);
        let p = fa.alloc().unwrap();
        let before = fa.stats();
        assert_eq!(
            fa.free(Pa::new(p.raw() + 8), 1),
            Err(FreeError::Unaligned {
                pa: Pa::new(p.raw() + 8)
            })
        );
        assert_eq!(
            fa.free(Pa::new(0x4000_0000), 1),
            Err(FreeError::NotAllocatable {
                pa: Pa::new(0x4000_0000)
            })
        );
        assert_eq!(
            fa.free(Pa::new(0x5000_0000), 1),
            Err(FreeError::NotAllocatable {
                pa: Pa::new(0x5000_0000)
            })
        );
        assert_eq!(
            fa.free(Pa::new(p.raw() + PAGE_SIZE), 1),
            Err(FreeError::AlreadyFree {
                pa: Pa::new(p.raw() + PAGE_SIZE)
            })
        );
        assert_eq!(fa.stats(), before);
        fa.free(p, 1).unwrap();
        assert_eq!(fa.free(p, 1), Err(FreeError::AlreadyFree { pa: p }));
        assert!(
            FreeError::AlreadyFree { pa: p }
                .to_string()
                .contains("free already")
        );
    }

    proptest! {
        /// Random alloc/free sequences keep F1-F3, never hand out a frame twice or a reserved
        /// one, and freeing everything restores the initial count.
        #[test]
        fn random_alloc_free_keeps_invariants(
            ops in prop::collection::vec((any::<bool>(), 1u64..5, 0u32..3), 1..200),
            res in prop::collection::vec((0u64..256, 1u64..20), 0..5),
        ) {
            let ram = [region(0x10_0000, 256 * PAGE_SIZE), region(0x80_0000, 64 * PAGE_SIZE)];
            let reserved: Vec<Region> =
                res.iter().map(|&(f, n)| region(0x10_0000 + f * PAGE_SIZE + 5, n * PAGE_SIZE)).collect();
            let mut fa = FrameAllocator::new(&ram, &reserved);
            let initial = fa.stats().free_frames;
            let mut held: Vec<(Pa, u64)> = vec![];
            for (alloc, count, align_log) in ops {
                if alloc || held.is_empty() {
                    if let Some(p) = fa.alloc_contiguous(count, 1 << align_log) {
                        prop_assert!(p.is_aligned(PAGE_SIZE << align_log));
                        for r in &reserved {
                            let (a, b) = (p.raw(), p.raw() + count * PAGE_SIZE);
                            prop_assert!(b <= r.base.raw() & !(PAGE_SIZE - 1) || a >= r.end().raw());
                        }
                        for &(q, n) in &held {
                            prop_assert!(p.raw() + count * PAGE_SIZE <= q.raw() || p.raw() >= q.raw() + n * PAGE_SIZE);
                        }
                        held.push((p, count));
                    }
                } else {
                    let (p, n) = held.swap_remove(0);
                    prop_assert_eq!(fa.free(p, n), Ok(()));
                }
                fa.check_invariants();
            }
            for (p, n) in held {
                prop_assert_eq!(fa.free(p, n), Ok(()));
            }
            prop_assert_eq!(fa.stats().free_frames, initial);
        }
    }
}
