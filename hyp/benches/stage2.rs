//! Stage-2 table operations against aarch64-paging 0.12's `Stage2` regime on the host: TLB
//! maintenance off on both (our `NoTlb`; their tables never activated), 39-bit IPA (level-1
//! root), identity IPA = PA.
//!
//! Run: `cargo bench -p hyp --bench stage2` (criterion statistics, then a summary table of
//! ns/page and our time relative to aarch64-paging's; below 1.00 means we are faster);
//! `-- summary` for the tables alone (also the VM-level figures from `support/vm.rs`: fault
//! path, dirty harvest, eager vs lazy splitting for dirty logging).

use std::hint::black_box;
use std::time::{Duration, Instant};

use aarch64_paging::descriptor::Stage2Attributes as A;
use aarch64_paging::idmap::IdMap;
use aarch64_paging::paging::{Constraints, MemoryRegion, Stage2 as TheirStage2};
use criterion::Criterion;
use hyp::mm::addr::{Ipa, Pa};
use hyp::mm::descriptor::{LeafAttrs, S2Perms};
use hyp::mm::sim::{SimFrameAlloc, SimMemory};
use hyp::mm::stage2::{CpuFeatures, MapFlags, Stage2, Stage2Config, Vmid};
use hyp::mm::tlb::NoTlb;

#[path = "support/vm.rs"]
mod vm;

const GIB: u64 = 1 << 30;
const MIB2: u64 = 2 << 20;
const PAGES: u64 = GIB / 4096;
const TRANSLATIONS: usize = 1 << 20;
/// 1 GiB at 1 GiB: pages fill one level-2 table's worth of level-3 tables.
const PAGE_BASE: u64 = GIB;
/// 1 GiB at 1 GiB + 2 MiB: 2 MiB-aligned but not 1 GiB-aligned, so both sides use 512 2 MiB
/// blocks (at 1 GiB alignment they would both use one 1 GiB block).
const BLOCK_BASE: u64 = GIB + MIB2;
/// Simulated RAM holding our tables (guest frames are never dereferenced).
const TABLE_RAM: u64 = 64 * GIB;

type Ours = Stage2<SimMemory, NoTlb>;
type Theirs = IdMap<TheirStage2>;

thread_local! {
    /// Table memory and allocator of the last destroyed tree: reusing them keeps our tables in
    /// warm, already-faulted host memory, as the global allocator does for aarch64-paging.
    static POOL: std::cell::RefCell<Option<(SimMemory, SimFrameAlloc)>> =
        const { std::cell::RefCell::new(None) };
}

fn ours() -> (Ours, SimFrameAlloc) {
    let features = CpuFeatures {
        parange: 5,
        vmid_bits: 2,
        fwb: false,
    };
    let config = Stage2Config::from_features(features, 39).unwrap();
    let (mem, mut alloc) = POOL.with(|p| p.borrow_mut().take()).unwrap_or_else(|| {
        let ram = (Pa::new(TABLE_RAM), 8 << 20);
        (
            SimMemory::new(ram.0, ram.1),
            SimFrameAlloc::new(ram.0, ram.1),
        )
    });
    let s2 = Stage2::new(mem, NoTlb, config, Vmid::new(1), &mut alloc).unwrap();
    (s2, alloc)
}

/// Give a tree's memory back to the pool (outside any timed region).
fn recycle((s2, mut alloc): (Ours, SimFrameAlloc)) {
    let (mem, _) = s2.destroy(&mut alloc);
    assert_eq!(alloc.live(), 0, "tables leaked");
    POOL.with(|p| *p.borrow_mut() = Some((mem, alloc)));
}

/// Criterion's custom timing: fresh `setup()` each iteration, only `op` timed, `teardown`
/// outside the timing.
fn timed<S, R>(
    iters: u64,
    mut setup: impl FnMut() -> S,
    mut op: impl FnMut(&mut S) -> R,
    mut teardown: impl FnMut(S),
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let mut s = setup();
        let t0 = Instant::now();
        black_box(op(&mut s));
        total += t0.elapsed();
        teardown(s);
    }
    total
}

const RW: LeafAttrs = LeafAttrs::normal(S2Perms::RW);

fn their_rw() -> A {
    A::VALID
        | A::MEMATTR_NORMAL_INNER_WB
        | A::MEMATTR_NORMAL_OUTER_WB
        | A::S2AP_ACCESS_RW
        | A::SH_INNER
        | A::ACCESS_FLAG
        | A::XN
}

fn no_blocks(pages_only: bool) -> Constraints {
    if pages_only {
        Constraints::NO_BLOCK_MAPPINGS
    } else {
        Constraints::empty()
    }
}

fn ours_mapped(base: u64, pages_only: bool) -> (Ours, SimFrameAlloc) {
    let (mut s2, mut alloc) = ours();
    let flags = if pages_only {
        MapFlags::PAGES_ONLY
    } else {
        MapFlags::BLOCKS
    };
    s2.map(&mut alloc, Ipa::new(base), Pa::new(base), GIB, RW, flags)
        .unwrap();
    (s2, alloc)
}

fn theirs_mapped(base: u64, pages_only: bool) -> Theirs {
    let mut t = Theirs::new(1, TheirStage2);
    let region = MemoryRegion::new(base as usize, (base + GIB) as usize);
    t.map_range_with_constraints(&region, their_rw(), no_blocks(pages_only))
        .unwrap();
    t
}

fn ours_unmap(s: &mut (Ours, SimFrameAlloc), base: u64) {
    s.0.unmap(&mut s.1, Ipa::new(base), GIB).unwrap();
}

/// aarch64-paging unmaps by mapping without VALID (it keeps the tables; `compact_subtables`
/// would free them separately, we free them as part of unmap).
fn theirs_unmap(t: &mut Theirs, base: u64, pages_only: bool) {
    let region = MemoryRegion::new(base as usize, (base + GIB) as usize);
    t.map_range_with_constraints(&region, A::empty(), no_blocks(pages_only))
        .unwrap();
}

fn ours_wp(s: &mut (Ours, SimFrameAlloc)) {
    s.0.write_protect(&mut s.1, Ipa::new(PAGE_BASE), GIB)
        .unwrap();
}

fn theirs_wp(t: &mut Theirs) {
    let region = MemoryRegion::new(PAGE_BASE as usize, (PAGE_BASE + GIB) as usize);
    t.modify_range(&region, &|_, d| {
        if d.flags().contains(A::VALID) {
            let pa = d.output_address();
            d.set(pa, d.flags() - A::S2AP_ACCESS_WO)
        } else {
            Ok(())
        }
    })
    .unwrap();
}

/// Page-aligned-ish random IPAs inside the mapped GiB (xorshift; same sequence for both).
fn random_ipas() -> Vec<u64> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..TRANSLATIONS)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            PAGE_BASE + ((x % GIB) & !7)
        })
        .collect()
}

fn ours_translate(s2: &Ours, ipas: &[u64]) -> u64 {
    ipas.iter()
        .map(|&ipa| s2.translate(Ipa::new(ipa)).unwrap().pa.raw())
        .fold(0, u64::wrapping_add)
}

fn theirs_translate(t: &Theirs, ipas: &[u64]) -> u64 {
    let mut sum = 0u64;
    for &ipa in ipas {
        let region = MemoryRegion::new(ipa as usize, ipa as usize + 1);
        t.walk_range(&region, &mut |mr, d, _level| {
            sum =
                sum.wrapping_add(d.output_address().0 as u64 + (ipa - mr.start().0 as u64) % 4096);
            Ok(())
        })
        .unwrap();
    }
    sum
}

fn criterion_benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("stage2");
    macro_rules! case {
        ($name:literal, $setup:expr, $op:expr) => {
            g.bench_function($name, |b| {
                b.iter_custom(|n| timed(n, $setup, $op, Teardown::teardown))
            });
        };
    }
    let fresh = || Theirs::new(1, TheirStage2);
    case!("ours/map_1g_4k", ours, |s| ours_map(s, PAGE_BASE, true));
    case!("theirs/map_1g_4k", fresh, |t| theirs_map(
        t, PAGE_BASE, true
    ));
    case!("ours/map_1g_2m", ours, |s| ours_map(s, BLOCK_BASE, false));
    case!("theirs/map_1g_2m", fresh, |t| theirs_map(
        t, BLOCK_BASE, false
    ));
    case!("ours/unmap_1g_4k", || ours_mapped(PAGE_BASE, true), |s| {
        ours_unmap(s, PAGE_BASE)
    });
    case!(
        "theirs/unmap_1g_4k",
        || theirs_mapped(PAGE_BASE, true),
        |t| { theirs_unmap(t, PAGE_BASE, true) }
    );
    case!("ours/unmap_1g_2m", || ours_mapped(BLOCK_BASE, false), |s| {
        ours_unmap(s, BLOCK_BASE)
    });
    case!(
        "theirs/unmap_1g_2m",
        || theirs_mapped(BLOCK_BASE, false),
        |t| { theirs_unmap(t, BLOCK_BASE, false) }
    );
    case!(
        "ours/write_protect_1g_4k",
        || ours_mapped(PAGE_BASE, true),
        ours_wp
    );
    case!(
        "theirs/write_protect_1g_4k",
        || theirs_mapped(PAGE_BASE, true),
        theirs_wp
    );
    let ipas = random_ipas();
    let s2 = ours_mapped(PAGE_BASE, true);
    let t = theirs_mapped(PAGE_BASE, true);
    g.bench_function("ours/translate_1m", |b| {
        b.iter(|| ours_translate(&s2.0, black_box(&ipas)))
    });
    g.bench_function("theirs/translate_1m", |b| {
        b.iter(|| theirs_translate(&t, black_box(&ipas)))
    });
    g.finish();
    recycle(s2);
}

fn ours_map(s: &mut (Ours, SimFrameAlloc), base: u64, pages_only: bool) {
    let flags = if pages_only {
        MapFlags::PAGES_ONLY
    } else {
        MapFlags::BLOCKS
    };
    s.0.map(&mut s.1, Ipa::new(base), Pa::new(base), GIB, RW, flags)
        .unwrap();
}

fn theirs_map(t: &mut Theirs, base: u64, pages_only: bool) {
    let region = MemoryRegion::new(base as usize, (base + GIB) as usize);
    t.map_range_with_constraints(&region, their_rw(), no_blocks(pages_only))
        .unwrap();
}

/// Timings of `op` on a fresh `setup()` each run: at least `MIN_RUNS` runs and `MIN_TIME` of
/// measured time (at most `MAX_RUNS`), so short operations get many samples.
fn sample<S: Teardown, R>(mut setup: impl FnMut() -> S, mut op: impl FnMut(&mut S) -> R) -> Stats {
    const MIN_RUNS: usize = 15;
    const MAX_RUNS: usize = 20_000;
    const MIN_TIME: Duration = Duration::from_millis(300);
    let mut runs = Vec::new();
    let mut total = Duration::ZERO;
    while runs.len() < MIN_RUNS || (total < MIN_TIME && runs.len() < MAX_RUNS) {
        let t = timed(1, &mut setup, &mut op, S::teardown);
        total += t;
        runs.push(t);
    }
    Stats::of(runs)
}

/// Best and median of a set of timings.
#[derive(Clone, Copy)]
struct Stats {
    best: Duration,
    median: Duration,
    runs: usize,
}

impl Stats {
    fn of(mut runs: Vec<Duration>) -> Self {
        runs.sort_unstable();
        Self {
            best: runs[0],
            median: runs[runs.len() / 2],
            runs: runs.len(),
        }
    }
}

trait Teardown {
    fn teardown(self);
}
impl Teardown for (Ours, SimFrameAlloc) {
    fn teardown(self) {
        recycle(self)
    }
}
impl Teardown for Theirs {
    fn teardown(self) {}
}

fn ns(d: Duration, units: u64) -> f64 {
    d.as_nanos() as f64 / units as f64
}

fn summary() {
    let ipas = random_ipas();
    let fresh = || Theirs::new(1, TheirStage2);
    let rows: [(&str, u64, Stats, Stats); 6] = [
        (
            "map 1 GiB, 4 KiB pages",
            PAGES,
            sample(ours, |s| ours_map(s, PAGE_BASE, true)),
            sample(fresh, |t| theirs_map(t, PAGE_BASE, true)),
        ),
        (
            "map 1 GiB, 2 MiB blocks",
            PAGES,
            sample(ours, |s| ours_map(s, BLOCK_BASE, false)),
            sample(fresh, |t| theirs_map(t, BLOCK_BASE, false)),
        ),
        (
            "unmap 1 GiB of 4 KiB pages",
            PAGES,
            sample(
                || ours_mapped(PAGE_BASE, true),
                |s| ours_unmap(s, PAGE_BASE),
            ),
            sample(
                || theirs_mapped(PAGE_BASE, true),
                |t| theirs_unmap(t, PAGE_BASE, true),
            ),
        ),
        (
            "unmap 1 GiB of 2 MiB blocks",
            PAGES,
            sample(
                || ours_mapped(BLOCK_BASE, false),
                |s| ours_unmap(s, BLOCK_BASE),
            ),
            sample(
                || theirs_mapped(BLOCK_BASE, false),
                |t| theirs_unmap(t, BLOCK_BASE, false),
            ),
        ),
        (
            "write-protect 1 GiB of 4 KiB pages",
            PAGES,
            sample(|| ours_mapped(PAGE_BASE, true), ours_wp),
            sample(|| theirs_mapped(PAGE_BASE, true), theirs_wp),
        ),
        (
            "1M random translations (per lookup)",
            TRANSLATIONS as u64,
            sample(
                || ours_mapped(PAGE_BASE, true),
                |s| ours_translate(&s.0, black_box(&ipas)),
            ),
            sample(
                || theirs_mapped(PAGE_BASE, true),
                |t| theirs_translate(t, black_box(&ipas)),
            ),
        ),
    ];
    println!();
    println!(
        "stage-2 vs aarch64-paging 0.12 (ns per 4 KiB page or per lookup; best run, ratio of \
         best and of medians)"
    );
    println!(
        "| operation | ours ns | aarch64-paging ns | ours/theirs (best) | ours/theirs (median) | runs |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, units, o, t) in rows {
        println!(
            "| {name} | {:.4} | {:.4} | {:.2} | {:.2} | {}/{} |",
            ns(o.best, units),
            ns(t.best, units),
            ns(o.best, units) / ns(t.best, units),
            ns(o.median, units) / ns(t.median, units),
            o.runs,
            t.runs
        );
    }
    let count = |base, pages_only| {
        let s = ours_mapped(base, pages_only);
        let n = s.0.table_pages();
        recycle(s);
        n
    };
    println!();
    println!(
        "table pages for 1 GiB (root included): 1 GiB-aligned {} (one 1 GiB block), \
         2 MiB-aligned {} (512 2 MiB blocks), 4 KiB pages {}",
        count(PAGE_BASE, false),
        count(BLOCK_BASE, false),
        count(PAGE_BASE, true)
    );
    println!(
        "ownership metadata: {} bytes per 4 KiB frame ({} KiB per GiB of RAM)",
        hyp::mm::ownership::FrameTable::bytes_per_frame(),
        hyp::mm::ownership::FrameTable::bytes_per_frame() as u64 * PAGES / 1024
    );
    vm_summary();
}

/// The VM-level figures (no aarch64-paging counterpart).
fn vm_summary() {
    const RUNS: usize = 5;
    println!();
    let (fault, blocks) = vm::fault_path(RUNS);
    println!(
        "fault path: {:.1} ns per 4 KiB first-touch write fault (1 GiB, page order, \
         frame populated + mapped; {blocks} faults mapped a 2 MiB block)",
        fault.as_nanos() as f64
    );
    for dirty in [vm::PAGES, vm::PAGES / 64, 0] {
        let t = vm::harvest(RUNS, dirty);
        println!(
            "dirty harvest of 1 GiB with {dirty} pages dirty: {:.1} us per GiB{}",
            t.as_nanos() as f64 / 1e3,
            if dirty > 0 {
                format!(" ({:.2} ns per dirty page)", ns(t, dirty))
            } else {
                String::new()
            }
        );
    }
    println!();
    println!("dirty logging on 1 GiB of 2 MiB blocks: enable, then N write faults spread evenly");
    println!(
        "| N faults | lazy enable us | lazy total us | lazy tables | eager enable us | eager total us | eager tables |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for n in [0, 1, 16, 512, 4096, vm::PAGES] {
        let (le, lt, ltab) = vm::enable_then_faults(RUNS, false, n);
        let (ee, et, etab) = vm::enable_then_faults(RUNS, true, n);
        let us = |d: Duration| d.as_nanos() as f64 / 1e3;
        println!(
            "| {n} | {:.1} | {:.1} | {ltab} | {:.1} | {:.1} | {etab} |",
            us(le),
            us(lt),
            us(ee),
            us(et)
        );
    }
}

fn main() {
    // Both sides should run on warm, already-faulted memory: ours reuses its pooled table
    // memory; for aarch64-paging's tables (malloc'd and freed per iteration), freeing one
    // large mmap'd block first makes glibc raise its trim threshold, so freed tables stay in
    // the heap instead of going back to the OS and faulting in again on the next iteration.
    drop(black_box(vec![1u8; 16 << 20]));
    // `cargo bench --bench stage2 -- summary`: only the tables; `-- vm`: only the VM-level
    // figures; any other filter: only the matching criterion benchmarks; no filter: both.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    if filter.as_deref() == Some("vm") {
        vm_summary();
        return;
    }
    if filter.as_deref() == Some("summary") {
        summary();
        return;
    }
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    criterion_benches(&mut c);
    c.final_summary();
    if filter.is_none() {
        summary();
    }
}
