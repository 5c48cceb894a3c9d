//! Dirty logging: one bitmap per memory region of a VM, one bit per 4 KiB guest page.
//!
//! The stage-2 side (write-protecting on enable and harvest, restoring on disable) lives in
//! `vm/dirty_log.rs`; the VM holds this log under its MMU lock together with the stage-2
//! tables. This module is the bitmap and its rules.
//!
//! # Protocol
//! - Enable: every page's bit is set first ("initially set": a page may have a writable entry
//!   from before logging started, so it must count as dirty until write-protected; the first
//!   harvest then returns the whole region, which is the full copy a snapshot or migration
//!   starts with). Then the region is write-protected. Blocks are kept as read-only blocks and
//!   split lazily on the first write fault: enabling costs one entry per 2 MiB instead of 512,
//!   regions that are only read never get tables, and the fault that splits has to take the MMU
//!   lock anyway (figures below).
//! - Write fault in a logged region: the page's bit is set *before* a writable entry is
//!   installed (the seed's rule: mark dirty, then establish the writable mapping).
//! - Harvest: for the pages whose bit is set, write-protect their entries and complete the TLB
//!   invalidation, and only then clear the bits and report the pages. A write after the harvest
//!   therefore faults and sets the bit again: it is in the next harvest (rule 4).
//! - Disable: bits are dropped and writable entries and block mappings are restored.
//!
//! # Lazy, not eager, block splitting (measured)
//! Enabling on memory mapped with 2 MiB blocks can split every block into 4 KiB pages right
//! away (eager, as KVM's eager page split does after write-protecting) or leave read-only blocks
//! for the first write fault in each to split (lazy). `cargo bench -p hyp --bench stage2 -- vm`
//! measures enable plus N write faults spread evenly over 1 GiB of blocks (host, TLBI off,
//! best of 5; "tables" = stage-2 table pages afterwards, root included):
//!
//! | N write faults | lazy: enable / total | tables | eager: enable / total | tables |
//! |---:|---:|---:|---:|---:|
//! | 0 | 8.6 us / 9.0 us | 2 | 514 us / 514 us | 514 |
//! | 1 | 8.4 us / 11.7 us | 3 | 504 us / 506 us | 514 |
//! | 16 | 9.0 us / 27.2 us | 18 | 496 us / 501 us | 514 |
//! | 512 (one per block) | 9.4 us / 645 us | 514 | 516 us / 587 us | 514 |
//! | 4096 | 7.8 us / 963 us | 514 | 471 us / 990 us | 514 |
//! | 262144 (every page) | 8.4 us / 33.6 ms | 514 | 526 us / 34.9 ms | 514 |
//!
//! Lazy enables ~60x faster (512 block entries write-protected instead of 512 tables built),
//! allocates tables only for blocks that are written, and costs at most ~10% more in total in
//! its worst case (exactly one write per block). Eager's one advantage is a shorter first write
//! fault per block (~0.15 us instead of ~1.2 us with the split under the MMU lock), small next
//! to a guest exit on hardware. So: lazy.
//! - Bitmaps are allocated with the VM (one bit per page, 32 KiB per GiB), so enabling cannot
//!   fail for lack of memory, and they are atomics so the host simulation can check I3 between
//!   any two primitive steps while an operation holds the MMU lock.
//!
//! # Invariants (numbers from `docs/design.md`)
//! - I3: while a region is logged, a stage-2 entry or a cached TLB entry allowing writes to page
//!   P of it implies P's bit is set. `vm.rs` checks it against stage-2 (`check_invariants`) and
//!   the host tests against every simulated TLB.
//! - I5 (dirty half): a page written since the last harvest has its bit set, or is about to be
//!   reported by the harvest in progress.
//!
//! Locking: guarded by the VM's MMU lock.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::addr::Gfn;

const WORD_BITS: u64 = 64;

/// A region's logging flag and bitmap. Written only under the MMU lock; atomics so observers
/// (the host simulation's between-steps checks) can read them while an operation holds the lock.
struct RegionBits {
    logging: AtomicBool,
    bits: Box<[AtomicU64]>,
}

impl RegionBits {
    fn word(&self, i: u64) -> &AtomicU64 {
        &self.bits[(i / WORD_BITS) as usize]
    }
    fn test(&self, i: u64) -> bool {
        self.word(i).load(Ordering::Relaxed) & (1 << (i % WORD_BITS)) != 0
    }
}

struct RegionLog {
    base: Gfn,
    pages: u64,
    shared: Arc<RegionBits>,
}

impl RegionLog {
    fn logging(&self) -> bool {
        self.shared.logging.load(Ordering::Relaxed)
    }
}

/// The dirty bitmaps of one VM, one per memory region (same order as the VM's regions).
pub struct DirtyLog {
    regions: Vec<RegionLog>,
}

impl DirtyLog {
    /// A log for regions `(first page, pages)`, none of them logged. The bitmaps (one bit per
    /// page: 32 KiB per GiB) are allocated here so enabling logging cannot fail for memory.
    pub fn new(regions: impl IntoIterator<Item = (Gfn, u64)>) -> Self {
        let regions = regions
            .into_iter()
            .map(|(base, pages)| {
                let bits = (0..pages.div_ceil(WORD_BITS))
                    .map(|_| AtomicU64::new(0))
                    .collect();
                let shared = Arc::new(RegionBits {
                    logging: AtomicBool::new(false),
                    bits,
                });
                RegionLog {
                    base,
                    pages,
                    shared,
                }
            })
            .collect();
        Self { regions }
    }

    /// A read-only view of the flags and bitmaps that stays valid while the log changes.
    pub fn observer(&self) -> DirtyObserver {
        DirtyObserver {
            regions: self
                .regions
                .iter()
                .map(|r| (r.base, r.pages, r.shared.clone()))
                .collect(),
        }
    }

    /// `(region, bit index)` of a logged page, or `None` if `gfn` is not in a logged region.
    fn logged(&self, gfn: Gfn) -> Option<(usize, u64)> {
        self.regions.iter().enumerate().find_map(|(r, log)| {
            let i = gfn.raw().checked_sub(log.base.raw())?;
            (i < log.pages && log.logging()).then_some((r, i))
        })
    }

    /// Whether `gfn` lies in a region being logged.
    pub fn is_logging(&self, gfn: Gfn) -> bool {
        self.logged(gfn).is_some()
    }

    /// Whether region `region` is being logged.
    pub fn region_logging(&self, region: usize) -> bool {
        self.regions[region].logging()
    }

    /// Whether any region is logged.
    pub fn any_logging(&self) -> bool {
        self.regions.iter().any(RegionLog::logging)
    }

    /// The region's `(first page, pages)`.
    pub fn region(&self, region: usize) -> (Gfn, u64) {
        (self.regions[region].base, self.regions[region].pages)
    }

    pub fn region_count(&self) -> usize {
        self.regions.len()
    }

    /// Whether `gfn` is in a logged region with its bit set.
    pub fn is_dirty(&self, gfn: Gfn) -> bool {
        self.logged(gfn)
            .is_some_and(|(r, i)| self.regions[r].shared.test(i))
    }

    /// Set `gfn`'s bit if its region is logged; returns whether it is.
    pub fn mark(&mut self, gfn: Gfn) -> bool {
        let Some((r, i)) = self.logged(gfn) else {
            return false;
        };
        self.regions[r]
            .shared
            .word(i)
            .fetch_or(1 << (i % WORD_BITS), Ordering::Relaxed);
        true
    }

    /// Start logging `region` with every bit set (see the protocol). The caller write-protects
    /// the region afterwards. Returns `false` if it was already logged.
    pub fn start(&mut self, region: usize) -> bool {
        let log = &self.regions[region];
        if log.logging() {
            return false;
        }
        let words = log.shared.bits.len();
        for (w, word) in log.shared.bits.iter().enumerate() {
            let tail = log.pages % WORD_BITS;
            let v = if w + 1 == words && tail != 0 {
                (1 << tail) - 1
            } else {
                u64::MAX
            };
            word.store(v, Ordering::Relaxed);
        }
        // Bits before the flag: an observer that sees the flag sees the bits.
        log.shared.logging.store(true, Ordering::Release);
        true
    }

    /// Stop logging `region` and clear its bitmap. Returns `false` if it was not logged.
    pub fn stop(&mut self, region: usize) -> bool {
        let log = &self.regions[region];
        let was = log.shared.logging.swap(false, Ordering::AcqRel);
        for word in log.shared.bits.iter() {
            word.store(0, Ordering::Relaxed);
        }
        was
    }

    /// Runs of set bits in `region` as `(first page, pages)`, in order, without clearing them.
    pub fn dirty_runs(&self, region: usize) -> DirtyRuns<'_> {
        DirtyRuns {
            log: &self.regions[region],
            next: 0,
        }
    }

    /// The first run of set bits in `region` at or after page index `from`.
    pub fn next_run(&self, region: usize, from: u64) -> Option<(Gfn, u64)> {
        DirtyRuns {
            log: &self.regions[region],
            next: from,
        }
        .next()
    }

    /// Clear the bits of `[gfn, gfn + n)` (all in `region`), ORing them into `out` (bit `i`
    /// is page `base + i`). Callers have write-protected those pages and completed the TLB
    /// invalidation first (I3).
    pub fn take(&mut self, region: usize, gfn: Gfn, n: u64, out: &mut [u64]) {
        let log = &self.regions[region];
        let first = gfn.raw() - log.base.raw();
        debug_assert!(first + n <= log.pages);
        // A word at a time: one atomic clear per 64 pages, not per page.
        let end = first + n;
        let mut i = first;
        while i < end {
            let w = i / WORD_BITS;
            let lo = i % WORD_BITS;
            let hi = (end - w * WORD_BITS).min(WORD_BITS);
            let mask = (u64::MAX >> (WORD_BITS - (hi - lo))) << lo;
            let old = log.shared.bits[w as usize].fetch_and(!mask, Ordering::Relaxed);
            out[w as usize] |= old & mask;
            i = (w + 1) * WORD_BITS;
        }
    }

    /// Words a harvest output for `region` needs.
    pub fn bitmap_words(&self, region: usize) -> usize {
        self.regions[region].pages.div_ceil(WORD_BITS) as usize
    }

    /// Which region `gfn` is in, logged or not.
    pub fn region_of(&self, gfn: Gfn) -> Option<usize> {
        self.regions.iter().position(|log| {
            gfn.raw()
                .checked_sub(log.base.raw())
                .is_some_and(|i| i < log.pages)
        })
    }
}

/// What [`DirtyLog::observer`] returns: the logging flags and bits, readable at any instant.
#[derive(Clone)]
pub struct DirtyObserver {
    regions: Vec<(Gfn, u64, Arc<RegionBits>)>,
}

impl DirtyObserver {
    /// The first page of `[gfn, gfn + pages)` that is in a logged region with its bit clear.
    pub fn first_clean(&self, gfn: Gfn, pages: u64) -> Option<Gfn> {
        let (start, end) = (gfn.raw(), gfn.raw() + pages);
        self.regions.iter().find_map(|(base, n, bits)| {
            let (lo, hi) = (start.max(base.raw()), end.min(base.raw() + n));
            if lo >= hi || !bits.logging.load(Ordering::Acquire) {
                return None;
            }
            (lo..hi).find(|&g| !bits.test(g - base.raw())).map(Gfn::new)
        })
    }

    /// `Some(dirty)` if `gfn` is in a logged region, `None` otherwise.
    pub fn logged_bit(&self, gfn: Gfn) -> Option<bool> {
        self.regions.iter().find_map(|(base, pages, bits)| {
            let i = gfn.raw().checked_sub(base.raw())?;
            (i < *pages && bits.logging.load(Ordering::Acquire)).then(|| bits.test(i))
        })
    }
}

/// Iterator over runs of set bits of a region.
pub struct DirtyRuns<'a> {
    log: &'a RegionLog,
    next: u64,
}

impl Iterator for DirtyRuns<'_> {
    type Item = (Gfn, u64);

    fn next(&mut self) -> Option<(Gfn, u64)> {
        let bits = &self.log.shared;
        let mut i = self.next;
        while i < self.log.pages {
            let w = bits.word(i).load(Ordering::Relaxed) >> (i % WORD_BITS);
            if w == 0 {
                i = (i / WORD_BITS + 1) * WORD_BITS; // skip the rest of an empty word
                continue;
            }
            i += u64::from(w.trailing_zeros());
            let start = i;
            while i < self.log.pages && bits.test(i) {
                i += 1;
            }
            self.next = i;
            return Some((Gfn::new(self.log.base.raw() + start), i - start));
        }
        self.next = self.log.pages;
        None
    }
}

/// Why a dirty-log request was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DirtyLogError {
    /// The VM has no memory region with this number.
    NoSuchRegion { region: usize },
    /// Logging is already on for the region.
    AlreadyLogging { region: usize },
    /// Logging is off for the region.
    NotLogging { region: usize },
    /// The output bitmap has fewer words than the region needs.
    BitmapTooSmall { words: usize, needed: usize },
    /// No frame was left for a stage-2 table.
    OutOfMemory,
}

impl core::fmt::Display for DirtyLogError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoSuchRegion { region } => write!(f, "the VM has no memory region {region}"),
            Self::AlreadyLogging { region } => {
                write!(
                    f,
                    "cannot enable dirty logging on region {region}: it is already on"
                )
            }
            Self::NotLogging { region } => {
                write!(
                    f,
                    "cannot use the dirty log of region {region}: logging is off"
                )
            }
            Self::BitmapTooSmall { words, needed } => {
                write!(
                    f,
                    "cannot harvest into {words} words: the region needs {needed}"
                )
            }
            Self::OutOfMemory => f.write_str("no frame is left for a stage-2 table"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log() -> DirtyLog {
        DirtyLog::new([(Gfn::new(0x100), 130), (Gfn::new(0x1000), 64)])
    }

    #[test]
    fn start_sets_every_page_and_nothing_past_the_end() {
        let mut l = log();
        assert!(!l.is_logging(Gfn::new(0x100)));
        assert!(!l.mark(Gfn::new(0x100)), "unlogged pages are not tracked");
        assert!(l.start(0));
        assert!(!l.start(0));
        assert!(l.is_dirty(Gfn::new(0x100)) && l.is_dirty(Gfn::new(0x100 + 129)));
        assert!(!l.is_logging(Gfn::new(0x100 + 130)));
        assert_eq!(
            l.dirty_runs(0).collect::<Vec<_>>(),
            [(Gfn::new(0x100), 130)]
        );
        assert!(
            !l.is_logging(Gfn::new(0x1000)),
            "other regions stay unlogged"
        );
    }

    #[test]
    fn take_clears_and_reports_runs() {
        let mut l = log();
        l.start(0);
        let mut out = alloc::vec![0; l.bitmap_words(0)];
        l.take(0, Gfn::new(0x100), 130, &mut out);
        assert_eq!(out, [u64::MAX, u64::MAX, 0b11]);
        assert_eq!(l.dirty_runs(0).next(), None);
        for g in [0x101, 0x102, 0x13f, 0x140, 0x181] {
            assert!(l.mark(Gfn::new(g)));
        }
        let runs: Vec<_> = l.dirty_runs(0).map(|(g, n)| (g.raw(), n)).collect();
        assert_eq!(runs, [(0x101, 2), (0x13f, 2), (0x181, 1)]);
        let mut out = alloc::vec![0; 3];
        l.take(0, Gfn::new(0x13f), 2, &mut out);
        assert_eq!(out, [1 << 63, 1, 0]);
        // A range spanning whole words and partial ones clears only inside it.
        for g in 0x100..0x100 + 130 {
            l.mark(Gfn::new(g));
        }
        let mut out = alloc::vec![0; 3];
        l.take(0, Gfn::new(0x103), 126, &mut out);
        assert_eq!(out, [u64::MAX << 3, u64::MAX, 0b1]);
        let left: Vec<_> = l.dirty_runs(0).map(|(g, n)| (g.raw(), n)).collect();
        assert_eq!(left, [(0x100, 3), (0x181, 1)]);
        assert!(l.is_dirty(Gfn::new(0x101)) && !l.is_dirty(Gfn::new(0x140)));
        assert!(l.stop(0));
        assert!(!l.is_dirty(Gfn::new(0x101)) && !l.any_logging());
    }
}
