//! VM-level figures of the memory core (no aarch64-paging counterpart): the fault path per
//! 4 KiB fault, dirty harvest per GiB, and eager vs lazy block splitting for dirty logging.
//!
//! One VM with one 1 GiB memory region, TLB maintenance off (`NoTlb`), 39-bit IPA. Stage-2
//! tables live in simulated memory; guest frame contents are not modelled (`NoData`: the paths
//! measured never read or write guest data, and the frame table hands out frames that are
//! already zero).

use std::hint::black_box;
use std::time::{Duration, Instant};

use hyp::mm::addr::{Ipa, PAGE_SIZE, Pa, Pfn};
use hyp::mm::fault::{Access, FaultOutcome};
use hyp::mm::ownership::{FrameData, FrameTable, VmId};
use hyp::mm::sim::SimMemory;
use hyp::mm::stage2::{CpuFeatures, Stage2Config, Vmid};
use hyp::mm::tlb::NoTlb;
use hyp::mm::vm::Vm;
use hyp::sync::Mutex;

const GIB: u64 = 1 << 30;
pub const PAGES: u64 = GIB / PAGE_SIZE;
/// Guest RAM (PA) starts 1 GiB aligned, so a donated 1 GiB run is 2 MiB aligned.
const RAM_BASE: u64 = 4 * GIB;
/// Frames beyond the guest's GiB, for tables.
const SPARE_FRAMES: u64 = 8192;
/// The guest's only memory region.
const REGION: (u64, u64) = (GIB, GIB);

type BenchVm = Vm<SimMemory, NoTlb>;

/// Frame contents are not modelled: nothing on the measured paths reads them, and frames are
/// only zeroed or copied when they change hands (teardown, reclaim, migrate).
struct NoData;

impl FrameData for NoData {
    fn zero_frame(&mut self, _pfn: Pfn) {}
    fn copy_frame(&mut self, _from: Pfn, _to: Pfn) {}
}

struct World {
    frames: Mutex<FrameTable>,
    vm: BenchVm,
}

fn config() -> Stage2Config {
    let features = CpuFeatures {
        parange: 5,
        vmid_bits: 2,
        fwb: false,
    };
    Stage2Config::from_features(features, 39).unwrap()
}

/// A VM whose region is unbacked (`donated == false`: every page is populated by its first
/// fault) or backed by one donated, 2 MiB-aligned, contiguous GiB mapped with 2 MiB blocks.
fn world(donated: bool) -> World {
    let base = Pfn::containing(Pa::new(RAM_BASE));
    let mut frames = FrameTable::new(base, PAGES + SPARE_FRAMES);
    let run = donated.then(|| frames.hyp_alloc_run(PAGES, &mut NoData).unwrap());
    // Where tables can be: anywhere in RAM when faults populate frames from the same free
    // list; only past the donated GiB otherwise.
    let tables = if donated {
        (
            Pfn::new(base.raw() + PAGES).base(),
            SPARE_FRAMES * PAGE_SIZE,
        )
    } else {
        (base.base(), (PAGES + SPARE_FRAMES) * PAGE_SIZE)
    };
    let mut mem = SimMemory::new(tables.0, tables.1);
    // Fault the host pages in now: a table's first touch must not cost a host page fault in
    // the measurement (on hardware, table frames are plain RAM).
    for offset in (0..tables.1).step_by(PAGE_SIZE as usize) {
        mem.write_u64(Pa::new(tables.0.raw() + offset), 0);
    }
    let (ipa, len) = (Ipa::new(REGION.0), REGION.1);
    let vm = Vm::new(
        VmId::new(1).unwrap(),
        &[(ipa, len)],
        config(),
        Vmid::new(1),
        mem,
        NoTlb,
        &mut frames,
        &mut NoData,
    )
    .unwrap();
    let frames = Mutex::new(frames);
    if let Some(run) = run {
        vm.donate(&frames, run.base(), ipa, len).unwrap();
        vm.map_range(&frames, &mut NoData, ipa, len).unwrap();
        assert_eq!(
            vm.translate(ipa).unwrap().leaf.size(),
            2 << 20,
            "donated memory maps with 2 MiB blocks"
        );
    }
    World { frames, vm }
}

fn page_ipa(page: u64) -> Ipa {
    Ipa::new(REGION.0 + page * PAGE_SIZE)
}

fn write_fault(w: &World, page: u64) -> FaultOutcome {
    w.vm.handle_fault(&w.frames, &mut NoData, page_ipa(page), Access::Write)
        .unwrap()
}

fn best(runs: usize, mut f: impl FnMut() -> Duration) -> Duration {
    (0..runs).map(|_| f()).min().unwrap()
}

/// First-touch write faults over the whole unbacked GiB, in page order: each allocates the
/// frame, maps it (allocating tables as needed). Returns the best time per fault and how many
/// faults mapped a 2 MiB block instead of a page.
pub fn fault_path(runs: usize) -> (Duration, u64) {
    let mut blocks = 0;
    let t = best(runs, || {
        let w = world(false);
        blocks = 0;
        let t0 = Instant::now();
        for page in 0..PAGES {
            if let FaultOutcome::Mapped { block: true, .. } = black_box(write_fault(&w, page)) {
                blocks += 1;
            }
        }
        let t = t0.elapsed();
        drop(black_box(w));
        t
    });
    (t / PAGES as u32, blocks)
}

/// A logged GiB after one harvest, with `dirty` pages (spread evenly) written since.
fn logged(dirty: u64) -> (World, Vec<u64>) {
    let w = world(true);
    w.vm.enable_dirty_log(&w.frames, &mut NoData, 0).unwrap();
    let mut out = vec![0; (PAGES / 64) as usize];
    assert_eq!(w.vm.harvest_dirty_log(0, &mut out).unwrap(), PAGES);
    out.fill(0);
    for i in 0..dirty {
        write_fault(&w, i * (PAGES / dirty));
    }
    (w, out)
}

/// Harvest of the GiB with `dirty` pages dirty: best time for the whole harvest.
pub fn harvest(runs: usize, dirty: u64) -> Duration {
    best(runs, || {
        let (w, mut out) = logged(dirty);
        let t0 = Instant::now();
        let n = w.vm.harvest_dirty_log(0, black_box(&mut out)).unwrap();
        let t = t0.elapsed();
        assert_eq!(n, dirty);
        t
    })
}

/// Enabling dirty logging on the GiB mapped with 2 MiB blocks, then `n` write faults spread
/// evenly over it: lazy (blocks stay read-only blocks until a write fault splits one) or eager
/// (every block is split into read-only pages at enable, as KVM's eager page split does after
/// write-protecting). Returns the best times of (enable, enable + faults) and the table pages
/// in use at the end.
pub fn enable_then_faults(runs: usize, eager: bool, n: u64) -> (Duration, Duration, usize) {
    let mut tables = 0;
    let mut enable = Duration::MAX;
    let total = best(runs, || {
        let w = world(true);
        let (ipa, len) = (Ipa::new(REGION.0), REGION.1);
        let t0 = Instant::now();
        w.vm.enable_dirty_log(&w.frames, &mut NoData, 0).unwrap();
        if eager {
            w.vm.split_range(&w.frames, &mut NoData, ipa, len).unwrap();
        }
        enable = enable.min(t0.elapsed());
        for i in 0..n {
            black_box(write_fault(&w, i * (PAGES / n.max(1))));
        }
        let t = t0.elapsed();
        tables = w.vm.table_pages();
        t
    });
    (enable, total, tables)
}
