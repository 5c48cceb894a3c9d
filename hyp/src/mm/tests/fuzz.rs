//! The memory-core fuzzer: random sequences of stage-2 maintenance, faults, guest accesses,
//! ownership transitions and dirty logging by two VMs (own VMIDs, one frame table) on a
//! simulated multi-CPU machine, checked against a reference model per VM (IPA word -> value,
//! which frame backs each page, which pages have no translation, pages written since the last
//! harvest, pins).
//!
//! Every stage-2 operation runs as primitive steps (entry stores, TLB invalidations); between
//! any two of them the machine's hook lets other CPUs fill their TLBs speculatively from any
//! valid entry and read or write guest memory through their (possibly stale) TLBs. Walks by
//! other CPUs are weakly ordered: an entry stored since the last barrier may still read as what
//! it held before (so a table linked before its contents were published shows its old
//! contents). Operations include bursts of fault lookups whose installs run afterwards in
//! another order (many vCPUs faulting at once), whole 2 MiB chunks filled page by page from
//! contiguous, scattered or shuffled frames (so collapses see full tables), cross-VM donations
//! and shares of frames another VM owns (refused), and a VM destroyed and created again with
//! the same VMID. Checked:
//! - at every step: I2/I4 (the simulator's checker: break-before-make, no frame freed or
//!   table linked while unpublished or cached), I3 for the entry just stored and for every
//!   cached TLB entry, every leaf stored maps the frame the model says backs each of its pages
//!   and no page the model says has no translation, and every guest read returns what the
//!   model says was last written;
//! - after every operation: the VMs' and frame table's invariants (I1, I3 on stage 2, no leaf
//!   in a range being invalidated), every TLB entry agrees with the tables (same address and
//!   size, no more permissions), each VM's backing and translations equal the model's (an
//!   unmap that stops one page short shows here at once), guest memory equals the model (a
//!   write through a stale translation to a freed or migrated frame is lost and shows here),
//!   pinned frames have not moved, a harvest reported every page written since the previous
//!   one, and a fault that raced with a successful reclaim or migrate retried;
//! - at the end: no table frame left after unmapping everything, every frame back (and zero)
//!   after destroying the VMs.
//!
//! The snapshot property runs harvest + copy rounds on VM 0 (whose first chunk starts out
//! mapped by a live block) while writes continue, and checks the copy against guest memory
//! after a final harvest.
//!
//! `teeth_*` tests switch on one deliberate bug each and assert that the fuzzer finds it, and
//! print within how many cases. `PROPTEST_CASES` overrides the case count (default keeps
//! `cargo test` short).

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};

use crate::mm::addr::{Gfn, Ipa, PAGE_SIZE, Pa, Pfn};
use crate::mm::bugs::Bugs;
use crate::mm::descriptor::Entry;
use crate::mm::dirty::{DirtyLogError, DirtyObserver};
use crate::mm::fault::{Access, FaultOutcome};
use crate::mm::ownership::{Invalidate, OwnershipError};
use crate::mm::sim::{Machine, Step};
use crate::mm::stage2::Vmid;

use super::harness::{R0, R1, R2, REGIONS, TlbBugs, VMID, World, vmid};

const CPUS: usize = 3;
const VMS: usize = 2;
const WORDS: u64 = 4;
const BLOCK: u64 = 512;
/// Pages the fuzzer and the hook touch: chunk edges and a few inside in region 0, all of
/// region 1's sixteen pages, one page in each of region 2's sixteen chunks. Few pages keep TLB
/// hits on stale entries likely.
const HOT0: [u64; 12] = [0, 1, 2, 3, 255, 256, 510, 511, 512, 513, 700, 1023];
const HOT: usize = HOT0.len() + 16 + 16;

fn hot(i: u8) -> Ipa {
    let i = i as usize % HOT;
    let n0 = HOT0.len();
    match i {
        _ if i < n0 => Ipa::new(R0.0 + HOT0[i] * PAGE_SIZE),
        _ if i < n0 + 16 => Ipa::new(R1.0 + (i - n0) as u64 * PAGE_SIZE),
        _ => Ipa::new(R2.0 + ((i - n0 - 16) as u64 * BLOCK + 7) * PAGE_SIZE),
    }
}

/// Hot pages in region 2, one per chunk: where a fault burst drains the table cache.
fn hot2(i: u8) -> u8 {
    (HOT0.len() + 16) as u8 + i % 16
}

fn region_of(ipa: Ipa) -> usize {
    REGIONS
        .iter()
        .position(|&(b, s)| ipa.raw() >= b && ipa.raw() < b + s)
        .expect("fuzzer addresses lie in a region")
}

fn gfn(ipa: Ipa) -> u64 {
    Gfn::containing(ipa).raw()
}

/// `[ipa, ipa + len)` for a range kind: a few pages from a hot page, its 2 MiB chunk (clipped
/// to the region), or its whole region.
fn range(page: u8, kind: u8) -> (Ipa, u64) {
    let ipa = hot(page);
    let (base, size) = REGIONS[region_of(ipa)];
    let (start, len) = match kind % 4 {
        0 => (ipa.raw(), PAGE_SIZE),
        1 => (ipa.raw(), 3 * PAGE_SIZE),
        2 => {
            let s = ipa.raw() & !((2 << 20) - 1);
            (s.max(base), (s + (2 << 20)).min(base + size) - s.max(base))
        }
        _ => (base, size),
    };
    let end = (start + len).min(base + size);
    (Ipa::new(start), end - start)
}

fn pages_of(ipa: Ipa, len: u64) -> core::ops::Range<u64> {
    gfn(ipa)..gfn(ipa) + len / PAGE_SIZE
}

/// The 2 MiB chunks `[first, last]` that pages `r` touch, as a page range.
fn chunks_of(r: core::ops::Range<u64>) -> core::ops::Range<u64> {
    (r.start & !(BLOCK - 1))..((r.end + BLOCK - 1) & !(BLOCK - 1))
}

fn vm_of(v: u8) -> usize {
    v as usize % VMS
}

#[derive(Clone, Copy, Debug)]
enum Racer {
    Nothing,
    Reclaim,
    Migrate,
    Unmap,
    /// An invalidation of the page begins; a second fault looks up and installs while it is
    /// in progress, then the first installs, then the invalidation ends: both must retry.
    InProgress,
}

#[derive(Clone, Debug)]
enum Op {
    Access {
        vm: u8,
        cpu: u8,
        page: u8,
        word: u8,
        write: Option<u64>,
    },
    /// A fault whose lookup and install are separated by another CPU's operation.
    RacyFault {
        vm: u8,
        page: u8,
        write: bool,
        racer: Racer,
    },
    /// Lookups for several faults (region 2's chunks, each needing a table, and others), then
    /// their installs in another order, as when many vCPUs fault at once.
    FaultBurst {
        vm: u8,
        pages: Vec<u8>,
        write: bool,
        order: u64,
    },
    /// Writes `n` consecutive pages from a hot page on one CPU (more leaves than the deferred
    /// invalidation list holds for the next harvest to write-protect).
    WriteRun {
        vm: u8,
        cpu: u8,
        page: u8,
        n: u8,
        value: u64,
    },
    Donate {
        vm: u8,
        chunk: u8,
    },
    /// Reclaims a region-0 chunk, donates each of its pages on its own, from a 2 MiB-aligned
    /// run in order (0), single frames wherever the free list has them (1), or the run with
    /// every page but the first in reverse (2), then maps the chunk (and splits it if it mapped
    /// as a block): a full table of leaves for a collapse to look at.
    FillChunk {
        vm: u8,
        chunk: u8,
        order: u8,
    },
    Map {
        vm: u8,
        page: u8,
        kind: u8,
    },
    Unmap {
        vm: u8,
        page: u8,
        kind: u8,
    },
    Protect {
        vm: u8,
        page: u8,
        kind: u8,
    },
    Split {
        vm: u8,
        page: u8,
        kind: u8,
    },
    Collapse {
        vm: u8,
        page: u8,
        kind: u8,
    },
    Reclaim {
        vm: u8,
        page: u8,
        kind: u8,
    },
    Migrate {
        vm: u8,
        page: u8,
    },
    Share {
        vm: u8,
        page: u8,
        writable: bool,
    },
    Unshare {
        vm: u8,
        page: u8,
    },
    /// Donates or shares the frame behind one VM's page to a VM (the other or the same):
    /// always refused, since the frame is not the hypervisor's.
    Steal {
        from: u8,
        to: u8,
        page: u8,
        to_page: u8,
        share: bool,
    },
    Pin {
        vm: u8,
        page: u8,
    },
    Unpin {
        vm: u8,
        page: u8,
    },
    DirtyEnable {
        vm: u8,
        region: u8,
    },
    Harvest {
        vm: u8,
        region: u8,
    },
    DirtyDisable {
        vm: u8,
        region: u8,
    },
    /// Destroys a VM and creates it again with the same VMID (stale translations of the old
    /// one must not reach the new one).
    Recreate {
        vm: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let page = any::<u8>();
    let kind = any::<u8>();
    let vm = 0..VMS as u8;
    let racer = prop_oneof![
        Just(Racer::Nothing),
        Just(Racer::Reclaim),
        Just(Racer::Migrate),
        Just(Racer::Unmap),
        Just(Racer::InProgress)
    ];
    let burst = proptest::collection::vec(
        prop_oneof![3 => any::<u8>().prop_map(hot2), 1 => any::<u8>()],
        2..16,
    );
    prop_oneof![
        12 => (vm.clone(), 0..CPUS as u8, page, 0..WORDS as u8, any::<bool>(), any::<u64>())
            .prop_map(|(vm, cpu, page, word, w, v)| Op::Access {
                vm, cpu, page, word, write: w.then_some(v | 1)
            }),
        3 => (vm.clone(), page, any::<bool>(), racer)
            .prop_map(|(vm, page, write, racer)| Op::RacyFault { vm, page, write, racer }),
        2 => (vm.clone(), burst, any::<bool>(), any::<u64>())
            .prop_map(|(vm, pages, write, order)| Op::FaultBurst { vm, pages, write, order }),
        1 => (vm.clone(), 0..CPUS as u8, page, 17..40u8, any::<u64>())
            .prop_map(|(vm, cpu, page, n, v)| Op::WriteRun { vm, cpu, page, n, value: v | 1 }),
        2 => (vm.clone(), 0..2u8).prop_map(|(vm, chunk)| Op::Donate { vm, chunk }),
        3 => (vm.clone(), 0..2u8, 0..3u8)
            .prop_map(|(vm, chunk, order)| Op::FillChunk { vm, chunk, order }),
        2 => (vm.clone(), page, kind).prop_map(|(vm, page, kind)| Op::Map { vm, page, kind }),
        2 => (vm.clone(), page, kind).prop_map(|(vm, page, kind)| Op::Unmap { vm, page, kind }),
        2 => (vm.clone(), page, kind).prop_map(|(vm, page, kind)| Op::Protect { vm, page, kind }),
        2 => (vm.clone(), page, kind).prop_map(|(vm, page, kind)| Op::Split { vm, page, kind }),
        // Collapses mostly where whole tables get filled (region 0's chunks).
        3 => (vm.clone(), prop_oneof![0..HOT0.len() as u8, any::<u8>()], 2..4u8)
            .prop_map(|(vm, page, kind)| Op::Collapse { vm, page, kind }),
        2 => (vm.clone(), page, kind).prop_map(|(vm, page, kind)| Op::Reclaim { vm, page, kind }),
        3 => (vm.clone(), page).prop_map(|(vm, page)| Op::Migrate { vm, page }),
        1 => (vm.clone(), page, any::<bool>())
            .prop_map(|(vm, page, writable)| Op::Share { vm, page, writable }),
        1 => (vm.clone(), page).prop_map(|(vm, page)| Op::Unshare { vm, page }),
        1 => (vm.clone(), vm.clone(), page, page, any::<bool>()).prop_map(
            |(from, to, page, to_page, share)| Op::Steal { from, to, page, to_page, share }
        ),
        2 => (vm.clone(), page).prop_map(|(vm, page)| Op::Pin { vm, page }),
        2 => (vm.clone(), page).prop_map(|(vm, page)| Op::Unpin { vm, page }),
        2 => (vm.clone(), 0..3u8).prop_map(|(vm, region)| Op::DirtyEnable { vm, region }),
        4 => (vm.clone(), 0..3u8).prop_map(|(vm, region)| Op::Harvest { vm, region }),
        1 => (vm.clone(), 0..3u8).prop_map(|(vm, region)| Op::DirtyDisable { vm, region }),
        1 => vm.prop_map(|vm| Op::Recreate { vm }),
    ]
}

#[derive(Clone, Debug)]
struct Case {
    seed: u64,
    ops: Vec<Op>,
}

fn case(max_ops: usize) -> impl Strategy<Value = Case> {
    (any::<u64>(), proptest::collection::vec(op(), 1..max_ops))
        .prop_map(|(seed, ops)| Case { seed, ops })
}

/// The reference model of one VM.
#[derive(Default)]
struct VmModel {
    /// Last value written to each word; absent means zero.
    words: BTreeMap<(u64, u64), u64>,
    /// Pages written (while logged) since the region's last harvest.
    dirty: [BTreeSet<u64>; REGIONS.len()],
    /// Pinned pages: the frame they were pinned in and the pin count.
    pins: BTreeMap<u64, (Pfn, u32)>,
    /// Pages shared read-only with the guest, and every shared page's frame.
    read_only: BTreeSet<u64>,
    shared: BTreeMap<u64, Pfn>,
    /// The frame backing each page: set by donations, shares and migrations, dropped by
    /// reclaims and unshares, and learnt for a page a fault populated.
    frames: BTreeMap<u64, Pfn>,
    /// Pages that can have no translation: taken away or unmapped, and not touched since (an
    /// operation that may map a page clears its whole 2 MiB chunk first, as a fault or map
    /// may install a block).
    unmapped: BTreeSet<u64>,
}

impl VmModel {
    fn forget_page(&mut self, gfn: u64) {
        self.words.retain(|&(g, _), _| g != gfn);
    }
    fn note_write(&mut self, obs: &DirtyObserver, ipa: Ipa, value: u64) {
        let g = Gfn::containing(ipa);
        self.words.insert((g.raw(), ipa.page_offset() / 8), value);
        if obs.logged_bit(g).is_some() {
            self.dirty[region_of(ipa)].insert(g.raw());
        }
    }
    fn value(&self, ipa: Ipa) -> u64 {
        let key = (gfn(ipa), ipa.page_offset() / 8);
        self.words.get(&key).copied().unwrap_or(0)
    }
    /// Pages `r` may be mapped from now on (their 2 MiB chunks, for blocks).
    fn may_map(&mut self, r: core::ops::Range<u64>) {
        let c = chunks_of(r);
        let gone: Vec<u64> = self.unmapped.range(c).copied().collect();
        for g in gone {
            self.unmapped.remove(&g);
        }
    }
    /// Pages `r` have no translation and no backing any more.
    fn taken(&mut self, r: core::ops::Range<u64>) {
        for g in r {
            self.frames.remove(&g);
            self.unmapped.insert(g);
            self.forget_page(g);
        }
    }
    /// What is wrong with a translation of page `g` to frame `pfn`, if anything.
    fn bad_translation(&self, g: u64, pfn: Pfn) -> Option<String> {
        if self.unmapped.contains(&g) {
            return Some(format!(
                "page {g:#x} translates to {pfn:?} but was unmapped or taken away"
            ));
        }
        match self.frames.get(&g) {
            Some(&f) if f != pfn => Some(format!(
                "page {g:#x} translates to {pfn:?}, the model says it is backed by {f:?}"
            )),
            _ => None,
        }
    }
}

/// What the between-steps hook shares with the test.
struct HookShared {
    vms: RefCell<[VmModel; VMS]>,
    observers: RefCell<Vec<DirtyObserver>>,
    errors: RefCell<Vec<String>>,
    active: Cell<bool>,
    rng: Cell<u64>,
}

impl HookShared {
    fn next(&self) -> u64 {
        // xorshift64*: deterministic per case, so failures replay.
        let mut x = self.rng.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn error(&self, e: String) {
        let mut errs = self.errors.borrow_mut();
        if errs.len() < 4 {
            errs.push(e);
        }
    }
}

fn vm_index(id: Vmid) -> Option<usize> {
    let i = id.raw().checked_sub(VMID.raw())? as usize;
    (i < VMS).then_some(i)
}

/// I3 over what the machine holds right now: every cached writable translation.
fn check_tlb_dirty(m: &Machine, obs: &[DirtyObserver]) -> Option<String> {
    m.tlb.entries().find_map(|(cpu, e)| {
        let vm = vm_index(e.vmid)?;
        let pages = e.hit.level.entry_size() / PAGE_SIZE;
        let clean = obs[vm]
            .first_clean(Gfn::containing(e.hit.ipa), pages)
            .filter(|_| e.hit.attrs.perms.writable())?;
        Some(format!(
            "I3: CPU {cpu} caches a writable translation of VM {vm}'s clean logged page \
             {clean:?}"
        ))
    })
}

fn hook(m: &mut Machine, step: &Step, h: &HookShared) {
    if let Step::WritePte {
        new,
        slot: Some(slot),
        ..
    } = step
        && let Some(vm) = vm_index(slot.vmid)
        && let Entry::Leaf { pa, attrs } = new.decode(slot.level)
    {
        let pages = slot.level.entry_size() / PAGE_SIZE;
        let first = gfn(slot.ipa);
        if attrs.perms.writable()
            && let Some(g) = h.observers.borrow()[vm].first_clean(Gfn::new(first), pages)
        {
            h.error(format!(
                "I3: writable entry stored for VM {vm}'s clean logged page {g:?}"
            ));
        }
        let model = &h.vms.borrow()[vm];
        let base = Pfn::containing(pa).raw();
        if let Some(e) =
            (0..pages).find_map(|i| model.bad_translation(first + i, Pfn::new(base + i)))
        {
            h.error(format!("VM {vm}: leaf stored at {:?}: {e}", slot.ipa));
        }
    }
    if let Some(e) = check_tlb_dirty(m, &h.observers.borrow()) {
        h.error(e);
    }
    if !h.active.get() {
        return;
    }
    // A walker on another CPU races every table link: it walks a hot page under the new
    // table (weakly ordered: it may see the link and the table's old contents unless a barrier
    // published them).
    if let Step::WritePte {
        new,
        slot: Some(slot),
        ..
    } = step
        && let Some(vm) = vm_index(slot.vmid)
        && new.next_table(slot.level).is_some()
    {
        let (lo, hi) = (slot.ipa.raw(), slot.ipa.raw() + slot.level.entry_size());
        let under: Vec<Ipa> = (0..HOT as u8)
            .map(hot)
            .filter(|a| (lo..hi).contains(&a.raw()))
            .collect();
        let r = h.next();
        let ipa = under
            .get(r as usize % under.len().max(1))
            .copied()
            .unwrap_or(slot.ipa);
        m.fill((r >> 32) as usize % CPUS, vmid(vm), ipa);
    }
    let r = h.next();
    let cpu = (r >> 8) as usize % CPUS;
    let vm = (r >> 40) as usize % VMS;
    let id = vmid(vm);
    let ipa = Ipa::new(hot((r >> 16) as u8).raw() + 8 * ((r >> 24) % WORDS));
    match r % 8 {
        0..=2 => {
            m.fill(cpu, id, ipa);
        }
        3 | 4 => {
            let v = h.next() | 1;
            if m.guest_write(cpu, id, ipa, v).is_ok() {
                let obs = &h.observers.borrow()[vm];
                h.vms.borrow_mut()[vm].note_write(obs, ipa, v);
            }
        }
        5 => {
            if let Ok((v, a)) = m.guest_read(cpu, id, ipa) {
                let want = h.vms.borrow()[vm].value(ipa);
                if v != want {
                    h.error(format!(
                        "stale read by VM {vm} on CPU {cpu}: {ipa:?} gave {v:#x} from {:?} \
                         (TLB: {}), model {want:#x}",
                        a.pa, a.from_tlb
                    ));
                }
            }
        }
        _ => {}
    }
}

/// How a fuzzer run is set up; the teeth tests weaken it to show what catches a bug.
#[derive(Clone, Copy, Debug)]
struct Checks {
    /// Check that TLB entries agree with the tables after each operation (off: only the
    /// consequences, stale reads and lost writes, can catch a missing invalidation).
    tlb_coherence: bool,
    /// Record a link to a table whose contents are unpublished as a violation (off: only the
    /// weakly ordered walker can show it).
    publication: bool,
}

const ALL_CHECKS: Checks = Checks {
    tlb_coherence: true,
    publication: true,
};

struct Fuzz {
    w: World,
    h: Rc<HookShared>,
    checks: Checks,
}

impl Fuzz {
    fn new(seed: u64, bugs: Bugs, tlb_bugs: TlbBugs, checks: Checks) -> Self {
        let mut w = World::with_vms(CPUS, VMS, bugs);
        w.tlb_bugs.set(tlb_bugs);
        w.data.check_freed = checks.tlb_coherence;
        {
            let mut m = w.machine.get();
            m.set_weak_publication(Some(seed ^ 0x5eed));
            m.check_publication = checks.publication;
        }
        let h = Rc::new(HookShared {
            vms: RefCell::default(),
            observers: RefCell::new(w.vms.iter().map(|v| v.dirty_observer()).collect()),
            errors: RefCell::default(),
            active: Cell::new(true),
            rng: Cell::new(seed | 1),
        });
        let hh = h.clone();
        w.machine
            .get()
            .set_hook(Some(alloc::boxed::Box::new(move |m, s| hook(m, s, &hh))));
        Self { w, h, checks }
    }

    fn model(&self, vm: usize) -> core::cell::RefMut<'_, VmModel> {
        core::cell::RefMut::map(self.h.vms.borrow_mut(), |v| &mut v[vm])
    }

    fn access(&mut self, vm: usize, cpu: usize, ipa: Ipa, write: Option<u64>) {
        self.model(vm).may_map(gfn(ipa)..gfn(ipa) + 1);
        let r = self.w.access_on(vm, cpu, ipa, write);
        self.learn(vm, gfn(ipa)..gfn(ipa) + 1);
        let g = gfn(ipa);
        match (r, write) {
            (Ok(_), Some(v)) => {
                let obs = &self.h.observers.borrow()[vm];
                self.model(vm).note_write(obs, ipa, v)
            }
            (Ok(v), None) => {
                let want = self.model(vm).value(ipa);
                assert_eq!(
                    v, want,
                    "VM {vm}'s read of {ipa:?} on CPU {cpu} disagrees with the model"
                );
            }
            (Err(FaultOutcome::PermissionDenied), Some(_)) => {
                assert!(
                    self.model(vm).read_only.contains(&g),
                    "VM {vm}'s write to {ipa:?} denied"
                )
            }
            (Err(o), _) => panic!("VM {vm}'s access to {ipa:?} ended with {o:?}"),
        }
    }

    /// Records the frames a fault populated among pages `r`.
    fn learn(&mut self, vm: usize, r: core::ops::Range<u64>) {
        for g in r {
            if let Some(pfn) = self.w.vms[vm].backing(Gfn::new(g).base()).pfn() {
                self.model(vm).frames.entry(g).or_insert(pfn);
            }
        }
    }

    fn reclaim(&mut self, vm: usize, ipa: Ipa, len: u64) -> bool {
        let r = self.w.vms[vm].reclaim(&self.w.frames, &mut self.w.data, ipa, len);
        let pages = pages_of(ipa, len);
        if r.is_ok() {
            let mut m = self.model(vm);
            assert!(
                pages.clone().all(|g| !m.pins.contains_key(&g)),
                "reclaimed a pinned page"
            );
            m.taken(pages);
        } else if self.model(vm).pins.keys().any(|g| pages.contains(g)) {
            assert!(
                matches!(
                    r,
                    Err(OwnershipError::Pinned { .. } | OwnershipError::WrongGuestState { .. })
                ),
                "{r:?}"
            );
        }
        r.is_ok()
    }

    fn migrate(&mut self, vm: usize, ipa: Ipa) -> bool {
        let r = self.w.vms[vm].migrate(&self.w.frames, &mut self.w.data, ipa);
        let g = gfn(ipa);
        let mut m = self.model(vm);
        if m.pins.contains_key(&g) {
            assert!(r.is_err(), "migrated a pinned page");
        }
        if let Ok(pa) = r {
            m.frames.insert(g, Pfn::containing(pa));
            m.unmapped.insert(g);
        }
        r.is_ok()
    }

    /// One fault's install after its lookup; `true` if it has to be retried.
    fn install(&mut self, vm: usize, l: crate::mm::fault::Lookup) -> bool {
        match self.w.vms[vm].fault_install(l) {
            Ok(FaultOutcome::Retry) => true,
            Ok(_) => false,
            Err(e) => panic!("VM {vm}: fault install failed: {e}"),
        }
    }

    fn exec(&mut self, op: &Op) {
        match *op {
            Op::Access {
                vm,
                cpu,
                page,
                word,
                write,
            } => {
                let ipa = Ipa::new(hot(page).raw() + 8 * u64::from(word));
                self.access(vm_of(vm), cpu as usize, ipa, write);
            }
            Op::RacyFault {
                vm,
                page,
                write,
                racer,
            } => self.racy_fault(vm_of(vm), hot(page), write, racer),
            Op::FaultBurst {
                vm,
                ref pages,
                write,
                order,
            } => self.fault_burst(vm_of(vm), pages, write, order),
            Op::WriteRun {
                vm,
                cpu,
                page,
                n,
                value,
            } => {
                let vm = vm_of(vm);
                let start = hot(page);
                let (base, size) = REGIONS[region_of(start)];
                let end = (start.raw() + u64::from(n) * PAGE_SIZE).min(base + size);
                let writable =
                    |f: &Self, ipa: Ipa| !f.h.vms.borrow()[vm].read_only.contains(&gfn(ipa));
                for a in (start.raw()..end).step_by(PAGE_SIZE as usize).map(Ipa::new) {
                    if writable(self, a) {
                        self.access(vm, cpu as usize, a, Some(value));
                    }
                }
            }
            Op::Donate { vm, chunk } => {
                let vm = vm_of(vm);
                let ipa = Ipa::new(R0.0 + u64::from(chunk) * (2 << 20));
                if let Ok(pfn) = self.w.donate_block_to(vm, ipa) {
                    let mut m = self.model(vm);
                    for i in 0..BLOCK {
                        m.frames.insert(gfn(ipa) + i, Pfn::new(pfn.raw() + i));
                    }
                }
            }
            Op::FillChunk { vm, chunk, order } => self.fill_chunk(vm_of(vm), chunk, order),
            Op::Map { vm, page, kind } => {
                let vm = vm_of(vm);
                let (ipa, len) = range(page, kind);
                self.model(vm).may_map(pages_of(ipa, len));
                let w = &mut self.w;
                w.vms[vm]
                    .map_range(&w.frames, &mut w.data, ipa, len)
                    .unwrap();
            }
            Op::Unmap { vm, page, kind } => {
                let vm = vm_of(vm);
                let (ipa, len) = range(page, kind);
                let w = &mut self.w;
                w.vms[vm]
                    .unmap_range(&w.frames, &mut w.data, ipa, len)
                    .unwrap();
                self.model(vm).unmapped.extend(pages_of(ipa, len));
            }
            Op::Protect { vm, page, kind } => {
                let (ipa, len) = range(page, kind);
                let w = &mut self.w;
                w.vms[vm_of(vm)]
                    .write_protect_range(&w.frames, &mut w.data, ipa, len)
                    .unwrap();
            }
            Op::Split { vm, page, kind } => {
                let (ipa, len) = range(page, kind);
                let w = &mut self.w;
                w.vms[vm_of(vm)]
                    .split_range(&w.frames, &mut w.data, ipa, len)
                    .unwrap();
            }
            Op::Collapse { vm, page, kind } => {
                let (ipa, len) = range(page, kind);
                self.w.vms[vm_of(vm)].collapse_range(ipa, len).unwrap();
            }
            Op::Reclaim { vm, page, kind } => {
                let (ipa, len) = range(page, kind % 2);
                self.reclaim(vm_of(vm), ipa, len);
            }
            Op::Migrate { vm, page } => {
                self.migrate(vm_of(vm), hot(page));
            }
            Op::Share { vm, page, writable } => {
                let vm = vm_of(vm);
                let ipa = hot(page);
                let w = &mut self.w;
                let pfn = w.frames.lock().hyp_alloc(&mut w.data).expect("frames left");
                match w.vms[vm].share(&w.frames, pfn.base(), ipa, PAGE_SIZE, writable) {
                    Ok(()) => {
                        let mut m = self.model(vm);
                        let g = gfn(ipa);
                        m.shared.insert(g, pfn);
                        m.frames.insert(g, pfn);
                        if !writable {
                            m.read_only.insert(g);
                        }
                    }
                    Err(_) => w.frames.lock().hyp_free(pfn, &mut w.data).unwrap(),
                }
            }
            Op::Unshare { vm, page } => {
                let vm = vm_of(vm);
                let ipa = hot(page);
                let w = &mut self.w;
                if w.vms[vm]
                    .unshare(&w.frames, &mut w.data, ipa, PAGE_SIZE)
                    .is_ok()
                {
                    let g = gfn(ipa);
                    let mut m = self.model(vm);
                    let pfn = m.shared.remove(&g).expect("model knew the share");
                    m.read_only.remove(&g);
                    assert!(!m.pins.contains_key(&g), "unshared a pinned page");
                    m.taken(g..g + 1);
                    drop(m);
                    let w = &mut self.w;
                    w.frames.lock().hyp_free(pfn, &mut w.data).unwrap();
                }
            }
            Op::Steal {
                from,
                to,
                page,
                to_page,
                share,
            } => {
                let (from, to) = (vm_of(from), vm_of(to));
                let Some(pfn) = self.w.vms[from].backing(hot(page)).pfn() else {
                    return;
                };
                let ipa = hot(to_page);
                let w = &self.w;
                let r = if share {
                    w.vms[to].share(&w.frames, pfn.base(), ipa, PAGE_SIZE, true)
                } else {
                    w.vms[to].donate(&w.frames, pfn.base(), ipa, PAGE_SIZE)
                };
                assert!(
                    matches!(r, Err(OwnershipError::WrongFrameState { .. })),
                    "{} VM {from}'s frame {pfn:?} to VM {to} at {ipa:?}: {r:?}",
                    if share { "shared" } else { "donated" }
                );
            }
            Op::Pin { vm, page } => {
                let vm = vm_of(vm);
                let ipa = hot(page);
                if let Ok(pa) = self.w.vms[vm].pin(&self.w.frames, ipa) {
                    let mut m = self.model(vm);
                    let e = m.pins.entry(gfn(ipa)).or_insert((Pfn::containing(pa), 0));
                    e.1 += 1;
                }
            }
            Op::Unpin { vm, page } => {
                let vm = vm_of(vm);
                let ipa = hot(page);
                let g = gfn(ipa);
                let r = self.w.vms[vm].unpin(&self.w.frames, ipa);
                let mut m = self.model(vm);
                assert_eq!(
                    r.is_ok(),
                    m.pins.contains_key(&g),
                    "unpin of VM {vm}'s {ipa:?}: {r:?}"
                );
                if r.is_ok() {
                    let e = m.pins.get_mut(&g).unwrap();
                    e.1 -= 1;
                    if e.1 == 0 {
                        m.pins.remove(&g);
                    }
                }
            }
            Op::DirtyEnable { vm, region } => {
                let (vm, r) = (vm_of(vm), usize::from(region));
                let w = &mut self.w;
                if w.vms[vm]
                    .enable_dirty_log(&w.frames, &mut w.data, r)
                    .is_ok()
                {
                    self.model(vm).dirty[r].clear();
                }
            }
            Op::Harvest { vm, region } => {
                let _ = self.harvest(vm_of(vm), usize::from(region));
            }
            Op::DirtyDisable { vm, region } => {
                let (vm, r) = (vm_of(vm), usize::from(region));
                // Disabling restores blocks wherever the backing allows.
                let (base, size) = REGIONS[r];
                self.model(vm).may_map(pages_of(Ipa::new(base), size));
                let w = &mut self.w;
                if w.vms[vm]
                    .disable_dirty_log(&w.frames, &mut w.data, r)
                    .is_ok()
                {
                    self.model(vm).dirty[r].clear();
                }
            }
            Op::Recreate { vm } => self.recreate(vm_of(vm)),
        }
    }

    fn racy_fault(&mut self, vm: usize, ipa: Ipa, write: bool, racer: Racer) {
        let access = if write { Access::Write } else { Access::Read };
        self.model(vm).may_map(gfn(ipa)..gfn(ipa) + 1);
        let w = &mut self.w;
        let l = match w.vms[vm].fault_lookup(&w.frames, &mut w.data, ipa, access) {
            Ok(Ok(l)) => l,
            Ok(Err(_)) => return,
            Err(e) => panic!("{e}"),
        };
        self.learn(vm, gfn(ipa)..gfn(ipa) + 1);
        let invalidated = match racer {
            Racer::Nothing => false,
            Racer::Reclaim => self.reclaim(vm, ipa, PAGE_SIZE),
            Racer::Migrate => self.migrate(vm, ipa),
            Racer::Unmap => {
                let w = &mut self.w;
                w.vms[vm]
                    .unmap_range(&w.frames, &mut w.data, ipa, PAGE_SIZE)
                    .unwrap();
                false
            }
            Racer::InProgress => {
                let g = Gfn::containing(ipa);
                self.w.vms[vm].notifier().begin(g, 1);
                let w = &mut self.w;
                let inner = w.vms[vm].fault_lookup(&w.frames, &mut w.data, ipa, access);
                if let Ok(Ok(l2)) = inner {
                    assert!(
                        self.install(vm, l2),
                        "a fault installed inside an invalidation in progress"
                    );
                }
                let retried = self.install(vm, l);
                self.w.vms[vm].notifier().end(g, 1);
                assert!(
                    retried,
                    "a fault installed inside an invalidation in progress"
                );
                return;
            }
        };
        let retried = self.install(vm, l);
        if invalidated {
            assert!(retried, "fault raced with {racer:?} but installed");
        }
    }

    fn fault_burst(&mut self, vm: usize, pages: &[u8], write: bool, order: u64) {
        let access = if write { Access::Write } else { Access::Read };
        let mut lookups = Vec::new();
        for &p in pages {
            let ipa = hot(p);
            self.model(vm).may_map(gfn(ipa)..gfn(ipa) + 1);
            let w = &mut self.w;
            match w.vms[vm].fault_lookup(&w.frames, &mut w.data, ipa, access) {
                Ok(Ok(l)) => lookups.push(l),
                Ok(Err(_)) => {}
                Err(e) => panic!("{e}"),
            }
            self.learn(vm, gfn(ipa)..gfn(ipa) + 1);
        }
        // The installs in an order of their own (a permutation picked by `order`).
        let mut x = order | 1;
        for i in (1..lookups.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            lookups.swap(i, (x % (i as u64 + 1)) as usize);
        }
        for l in lookups {
            self.install(vm, l);
        }
    }

    fn fill_chunk(&mut self, vm: usize, chunk: u8, order: u8) {
        let base = gfn(Ipa::new(R0.0)) + u64::from(chunk % 2) * BLOCK;
        // Start from an empty chunk where nothing is pinned (faults populate hot pages).
        self.reclaim(vm, Gfn::new(base).base(), 2 << 20);
        let w = &mut self.w;
        let run = match order % 3 {
            1 => None,
            _ => match w.frames.lock().hyp_alloc_run(BLOCK, &mut w.data) {
                Ok(p) => Some(p),
                Err(_) => return,
            },
        };
        for i in 0..BLOCK {
            let g = base + i;
            let pfn = match (run, order % 3) {
                (Some(r), 0) => Pfn::new(r.raw() + i),
                // The first page keeps the aligned frame, the others come in reverse: only a
                // check of every page tells this from a block.
                (Some(r), _) => Pfn::new(r.raw() + (BLOCK - i) % BLOCK),
                (None, _) => match w.frames.lock().hyp_alloc(&mut w.data) {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let done = w.vms[vm]
                .donate(&w.frames, pfn.base(), Gfn::new(g).base(), PAGE_SIZE)
                .is_ok();
            if done {
                self.h.vms.borrow_mut()[vm].frames.insert(g, pfn);
            } else {
                w.frames.lock().hyp_free(pfn, &mut w.data).unwrap();
            }
        }
        self.model(vm).may_map(base..base + BLOCK);
        let w = &mut self.w;
        let (ipa, len) = (Gfn::new(base).base(), 2 << 20);
        w.vms[vm]
            .map_range(&w.frames, &mut w.data, ipa, len)
            .unwrap();
        if order.is_multiple_of(3) {
            // An aligned run maps as a block: split it so a collapse has a table to look at.
            w.vms[vm]
                .split_range(&w.frames, &mut w.data, ipa, len)
                .unwrap();
        }
    }

    fn recreate(&mut self, vm: usize) {
        let pins: Vec<(u64, u32)> = self.model(vm).pins.iter().map(|(g, p)| (*g, p.1)).collect();
        for (g, n) in pins {
            for _ in 0..n {
                self.w.vms[vm]
                    .unpin(&self.w.frames, Gfn::new(g).base())
                    .unwrap();
            }
        }
        let w = &mut self.w;
        let old = w.vms.remove(vm);
        old.destroy(&w.frames, &mut w.data)
            .map_err(|(_, e)| e)
            .expect("nothing pinned");
        w.machine.get().unregister_vm(vmid(vm));
        let shared: Vec<Pfn> = self.model(vm).shared.values().copied().collect();
        for pfn in shared {
            let w = &mut self.w;
            w.frames.lock().hyp_free(pfn, &mut w.data).unwrap();
        }
        let new = self.w.create_vm(vm);
        self.h.observers.borrow_mut()[vm] = new.dirty_observer();
        self.w.vms.insert(vm, new);
        self.h.vms.borrow_mut()[vm] = VmModel::default();
    }

    /// Harvests VM `vm`'s `region`, checks that every page written since the last harvest is
    /// reported, and returns the reported pages.
    fn harvest(&mut self, vm: usize, region: usize) -> Option<Vec<u64>> {
        let (base, size) = REGIONS[region];
        let pages = size / PAGE_SIZE;
        let mut out = alloc::vec![0u64; pages.div_ceil(64) as usize];
        match self.w.vms[vm].harvest_dirty_log(region, &mut out) {
            Err(DirtyLogError::NotLogging { .. }) => return None,
            Err(e) => panic!("harvest: {e}"),
            Ok(_) => {}
        }
        let first = gfn(Ipa::new(base));
        let reported: BTreeSet<u64> = (0..pages as usize)
            .filter(|i| out[i / 64] & (1 << (i % 64)) != 0)
            .map(|i| first + i as u64)
            .collect();
        let mut m = self.model(vm);
        for g in core::mem::take(&mut m.dirty[region]) {
            assert!(
                reported.contains(&g),
                "lost dirty page {g:#x} of VM {vm}: written, not harvested"
            );
        }
        Some(reported.into_iter().collect())
    }

    /// The four tracked words of a guest page, read from its backing frame.
    fn page_words(&self, vm: usize, g: u64) -> [u64; WORDS as usize] {
        let mut words = [0; WORDS as usize];
        if let Some(pfn) = self.w.vms[vm].backing(Gfn::new(g).base()).pfn() {
            let m = self.w.machine.get();
            for (i, v) in words.iter_mut().enumerate() {
                *v = m.mem.read_u64(Pa::new(pfn.base().raw() + 8 * i as u64));
            }
        }
        words
    }

    fn check(&self) {
        let errs = self.h.errors.borrow().clone();
        assert!(errs.is_empty(), "between-steps checks failed: {errs:?}");
        self.w.check();
        for vm in 0..VMS {
            check_translations(&self.w, &self.h, vm);
        }
        let m = self.w.machine.get();
        if let Some(e) = check_tlb_dirty(&m, &self.h.observers.borrow()) {
            panic!("{e}");
        }
        if self.checks.tlb_coherence {
            for (cpu, e) in m.tlb.entries() {
                let now = m.walk(e.vmid, e.hit.ipa);
                let ok = now.is_ok_and(|n| {
                    n.pa == e.hit.pa
                        && n.level == e.hit.level
                        && n.attrs.perms.union(e.hit.attrs.perms) == n.attrs.perms
                });
                assert!(
                    ok,
                    "CPU {cpu} caches {:?} for {}, tables say {now:?}",
                    e.hit, e.vmid
                );
            }
        }
        for vm in 0..VMS {
            let model = &self.h.vms.borrow()[vm];
            // The backing is what the model says, and so is every translation.
            let backed: Vec<_> = self.w.vms[vm].backing.lock().backed().collect();
            for (g, page) in &backed {
                assert_eq!(
                    model.frames.get(&g.raw()).copied(),
                    page.pfn(),
                    "VM {vm}'s page {g:?} is {page}, the model disagrees"
                );
            }
            assert_eq!(backed.len(), model.frames.len(), "VM {vm}: backed pages");
            for (&(g, word), &v) in &model.words {
                let got = self.page_words_locked(&m, vm, g)[word as usize];
                assert_eq!(
                    got, v,
                    "lost write: VM {vm}'s page {g:#x} word {word} holds {got:#x}, wrote {v:#x}"
                );
            }
            for (&g, &(pfn, _)) in &model.pins {
                let now = self.w.vms[vm].backing(Gfn::new(g).base());
                assert_eq!(
                    now.pfn(),
                    Some(pfn),
                    "VM {vm}'s pinned page {g:#x} moved: {now:?}"
                );
            }
        }
    }

    fn page_words_locked(&self, m: &Machine, vm: usize, g: u64) -> [u64; WORDS as usize] {
        let mut words = [0; WORDS as usize];
        if let Some(pfn) = self.w.vms[vm].backing(Gfn::new(g).base()).pfn() {
            for (i, v) in words.iter_mut().enumerate() {
                *v = m.mem.read_u64(Pa::new(pfn.base().raw() + 8 * i as u64));
            }
        }
        words
    }

    /// Unmap everything (no table may be left), then destroy the VMs (every frame comes back,
    /// zeroed).
    fn finish(self) {
        let Fuzz { mut w, h, .. } = self;
        h.active.set(false);
        for vm in 0..VMS {
            for r in 0..REGIONS.len() {
                let _ = w.vms[vm].disable_dirty_log(&w.frames, &mut w.data, r);
            }
            let pins: Vec<(u64, u32)> = h.vms.borrow()[vm]
                .pins
                .iter()
                .map(|(g, p)| (*g, p.1))
                .collect();
            for (g, n) in pins {
                for _ in 0..n {
                    w.vms[vm].unpin(&w.frames, Gfn::new(g).base()).unwrap();
                }
            }
            for (base, size) in REGIONS {
                w.vms[vm]
                    .unmap_range(&w.frames, &mut w.data, Ipa::new(base), size)
                    .unwrap();
                h.vms.borrow_mut()[vm]
                    .unmapped
                    .extend(pages_of(Ipa::new(base), size));
            }
            check_translations(&w, &h, vm);
            assert_eq!(
                w.vms[vm].table_pages(),
                w.root_tables,
                "VM {vm}: table frames left after unmapping all"
            );
        }
        w.check();
        let total = w.frames.lock().frames();
        let super::harness::World {
            machine,
            frames,
            mut data,
            vms,
            ..
        } = w;
        for (i, vm) in vms.into_iter().enumerate() {
            vm.destroy(&frames, &mut data)
                .map_err(|(_, e)| e)
                .expect("nothing pinned");
            for &pfn in h.vms.borrow()[i].shared.values() {
                frames.lock().hyp_free(pfn, &mut data).unwrap();
            }
        }
        assert_eq!(frames.lock().free_frames(), total, "frames leaked");
        // I4's consequence: nothing wrote to a frame after it was freed (free frames are zero).
        let f = frames.lock();
        let m = machine.get();
        for i in 0..total {
            let pfn = Pfn::new(f.base().raw() + i);
            assert!(
                m.mem.frame_words(pfn).iter().all(|&x| x == 0),
                "free {pfn:?} is not zero"
            );
        }
        drop((m, f));
        let v = machine.get().take_violations();
        assert!(v.is_empty(), "{v:?}");
        machine.get().set_hook(None);
    }
}

/// Every page VM `vm` has a frame for, and every hot page, translates as the model says (or
/// not at all).
fn check_translations(w: &World, h: &HookShared, vm: usize) {
    let model = &h.vms.borrow()[vm];
    let m = w.machine.get();
    let hot_pages = (0..HOT as u8).map(|p| gfn(hot(p)));
    // Only backed pages can be mapped (I1, checked by the VM): those and the hot pages.
    for g in model.frames.keys().copied().chain(hot_pages) {
        if let Ok(hit) = m.walk(vmid(vm), Gfn::new(g).base()) {
            let pfn = Pfn::new(Pfn::containing(hit.pa).raw() + (g - gfn(hit.ipa)));
            if let Some(e) = model.bad_translation(g, pfn) {
                panic!("VM {vm}: {e}");
            }
        }
    }
}

fn run_case(c: &Case, bugs: Bugs, tlb_bugs: TlbBugs, checks: Checks) {
    let mut f = Fuzz::new(c.seed, bugs, tlb_bugs, checks);
    // Without the coherence check, also leave dirty logging off so I3 does not catch stale
    // writable entries first: only the data checks remain.
    let ops = c
        .ops
        .iter()
        .filter(|op| checks.tlb_coherence || !matches!(op, Op::DirtyEnable { .. }));
    for op in ops {
        f.exec(op);
        f.check();
    }
    f.finish();
}

type Copy = [BTreeMap<u64, [u64; WORDS as usize]>; REGIONS.len()];

/// Snapshot coherence: VM 0's first chunk is mapped by a block and written, dirty logging
/// starts on all of VM 0's regions, then rounds of harvest + copy run while writes continue
/// (from the operations and between their steps; VM 1 runs its own operations), then writes
/// stop, a final harvest + copy, and the copy must equal guest memory.
fn run_snapshot(c: &Case, bugs: Bugs, tlb_bugs: TlbBugs, checks: Checks) {
    let mut f = Fuzz::new(c.seed, bugs, tlb_bugs, checks);
    let pfn = f.w.donate_block(Ipa::new(R0.0)).unwrap();
    {
        let mut m = f.model(0);
        for i in 0..BLOCK {
            m.frames
                .insert(gfn(Ipa::new(R0.0)) + i, Pfn::new(pfn.raw() + i));
        }
    }
    f.w.vms[0]
        .map_range(&f.w.frames, &mut f.w.data, Ipa::new(R0.0), 2 << 20)
        .unwrap();
    for cpu in 0..CPUS {
        f.access(
            0,
            cpu,
            Ipa::new(R0.0 + 8 * cpu as u64),
            Some(cpu as u64 + 1),
        );
    }
    let mut copy = Copy::default();
    for r in 0..REGIONS.len() {
        f.w.vms[0]
            .enable_dirty_log(&f.w.frames, &mut f.w.data, r)
            .unwrap();
        f.model(0).dirty[r].clear();
    }
    let round = |f: &mut Fuzz, copy: &mut Copy| {
        for (r, snap) in copy.iter_mut().enumerate() {
            for g in f.harvest(0, r).expect("logging") {
                snap.insert(g, f.page_words(0, g));
            }
        }
    };
    for op in &c.ops {
        let on_vm0 = match op {
            Op::Harvest { .. } | Op::Collapse { .. } => {
                round(&mut f, &mut copy);
                continue;
            }
            Op::DirtyEnable { vm, .. }
            | Op::DirtyDisable { vm, .. }
            | Op::Share { vm, .. }
            | Op::Unshare { vm, .. }
            | Op::Recreate { vm } => vm_of(*vm) == 0,
            _ => false,
        };
        if !on_vm0 {
            f.exec(op);
        }
        f.check();
    }
    f.h.active.set(false);
    round(&mut f, &mut copy);
    for (r, snap) in copy.iter().enumerate() {
        let (base, size) = REGIONS[r];
        for g in pages_of(Ipa::new(base), size) {
            let want = f.page_words(0, g);
            let got = snap.get(&g).copied().unwrap_or_default();
            assert_eq!(got, want, "snapshot of page {g:#x} is stale");
        }
    }
    f.finish();
}

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const MAX_OPS: usize = 48;

proptest! {
    #![proptest_config(Config { cases: cases(256), failure_persistence: None, ..Config::default() })]

    #[test]
    fn fuzz_memory_core(c in case(MAX_OPS)) {
        run_case(&c, Bugs::default(), TlbBugs::default(), ALL_CHECKS);
    }

    #[test]
    fn fuzz_snapshot_coherence(c in case(MAX_OPS)) {
        run_snapshot(&c, Bugs::default(), TlbBugs::default(), ALL_CHECKS);
    }
}

/// Which property a teeth test runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Prop {
    /// The main property and the snapshot property, alternating.
    Both,
    Snapshot,
}

/// A deliberate bug and how the fuzzer is set up to look for it.
#[derive(Clone, Copy, Debug)]
struct Teeth {
    bugs: Bugs,
    tlb_bugs: TlbBugs,
    prop: Prop,
    checks: Checks,
}

impl Teeth {
    fn bug(bugs: Bugs) -> Self {
        Self {
            bugs,
            tlb_bugs: TlbBugs::default(),
            prop: Prop::Both,
            checks: ALL_CHECKS,
        }
    }
    fn tlb(tlb_bugs: TlbBugs) -> Self {
        Self {
            tlb_bugs,
            ..Self::bug(Bugs::default())
        }
    }
    fn snapshot(self) -> Self {
        Self {
            prop: Prop::Snapshot,
            ..self
        }
    }

    /// The bugs switched on and how the fuzzer looks, in a few words.
    fn name(&self) -> String {
        let on = |d: String| {
            d.split([',', '{', '}'])
                .filter_map(|f| f.trim().strip_suffix(": true").map(String::from))
                .collect::<Vec<_>>()
                .join("+")
        };
        let mut n = on(format!("{:?}{:?}", self.bugs, self.tlb_bugs));
        if self.prop == Prop::Snapshot {
            n.push_str(" (snapshot property)");
        }
        if !self.checks.tlb_coherence {
            n.push_str(" (no TLB coherence check)");
        }
        if !self.checks.publication {
            n.push_str(" (no link check)");
        }
        n
    }

    /// Runs the fuzzer with the bug switched on until it fails; returns the 1-based number of
    /// the first failing case and its message.
    fn cases_to_catch(self) -> (u32, String) {
        const LIMIT: u32 = 2000;
        let config = Config {
            cases: LIMIT,
            failure_persistence: None,
            max_shrink_iters: 0,
            rng_algorithm: RngAlgorithm::ChaCha,
            ..Config::default()
        };
        // `TEETH_SEED=n` picks another deterministic case stream (to measure the spread).
        let seed: u64 = std::env::var("TEETH_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut seed_bytes = [0u8; 32];
        seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
        let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes);
        let mut runner = TestRunner::new_with_rng(config, rng);
        let count = Cell::new(0u32);
        let found = RefCell::new(None);
        let r = runner.run(&case(MAX_OPS), |c| {
            count.set(count.get() + 1);
            let snapshot = self.prop == Prop::Snapshot
                || (self.checks.tlb_coherence && count.get().is_multiple_of(2));
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                if snapshot {
                    run_snapshot(&c, self.bugs, self.tlb_bugs, self.checks)
                } else {
                    run_case(&c, self.bugs, self.tlb_bugs, self.checks)
                }
            }));
            match run {
                Ok(()) => Ok(()),
                Err(payload) => {
                    if found.borrow().is_none() {
                        let msg = payload
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| payload.downcast_ref::<&str>().map(|s| String::from(*s)))
                            .unwrap_or_default();
                        *found.borrow_mut() = Some((count.get(), msg));
                    }
                    Err(TestCaseError::fail("caught"))
                }
            }
        });
        crate::mm::bugs::set(Bugs::default());
        assert!(
            matches!(r, Err(TestError::Fail(..))),
            "{self:?} not found in {LIMIT} cases"
        );
        let (n, msg) = found.into_inner().expect("a failing case");
        std::println!(
            "teeth: {} caught at case {n}: {}",
            self.name(),
            msg.chars().take(300).collect::<String>()
        );
        (n, msg)
    }

    /// Like [`Teeth::cases_to_catch`], and the failure message must contain `what` (which
    /// check caught it).
    fn caught_by(self, what: &str) {
        let (_, msg) = self.cases_to_catch();
        assert!(msg.contains(what), "caught, but not by {what:?}: {msg}");
    }
}

#[test]
fn teeth_dropped_leaf_tlbi() {
    Teeth::tlb(TlbBugs {
        drop_ipa: true,
        drop_vmid: false,
    })
    .cases_to_catch();
}

#[test]
fn teeth_table_freed_without_its_tlbi() {
    Teeth::tlb(TlbBugs {
        drop_ipa: false,
        drop_vmid: true,
    })
    .cases_to_catch();
}

#[test]
fn teeth_dirty_marked_after_install() {
    Teeth::bug(Bugs {
        dirty_after_install: true,
        ..Bugs::default()
    })
    .cases_to_catch();
}

#[test]
fn teeth_dirty_cleared_before_write_protect() {
    Teeth::bug(Bugs {
        clear_before_protect: true,
        ..Bugs::default()
    })
    .cases_to_catch();
}

#[test]
fn teeth_fault_ignores_invalidate_sequence() {
    Teeth::bug(Bugs {
        skip_retry_check: true,
        ..Bugs::default()
    })
    .cases_to_catch();
}

#[test]
fn teeth_invalidation_keeps_stage2_entries() {
    Teeth::bug(Bugs {
        skip_invalidate_unmap: true,
        ..Bugs::default()
    })
    .cases_to_catch();
}

#[test]
fn teeth_read_fault_installs_writable_while_logging() {
    Teeth::bug(Bugs {
        writable_read_fault: true,
        ..Bugs::default()
    })
    .cases_to_catch();
}

#[test]
fn teeth_harvest_without_write_protect() {
    Teeth::bug(Bugs {
        skip_harvest_protect: true,
        ..Bugs::default()
    })
    .cases_to_catch();
}

/// The dropped leaf TLBI again, without the TLB/table agreement check, the freed-while-cached
/// check and dirty logging: what remains to catch it is its consequence, a guest access
/// through a stale translation (a stale read or a lost write).
#[test]
fn teeth_dropped_leaf_tlbi_seen_as_lost_write() {
    Teeth {
        checks: Checks {
            tlb_coherence: false,
            publication: true,
        },
        ..Teeth::tlb(TlbBugs {
            drop_ipa: true,
            drop_vmid: false,
        })
    }
    .cases_to_catch();
}

/// Issue 12, bug 1 put back: the fault bursts drain the table cache and an install fails.
#[test]
fn teeth_fault_burst_installs_without_table_reserve() {
    Teeth::bug(Bugs {
        no_table_reserve_retry: true,
        ..Bugs::default()
    })
    .caught_by("fault install failed");
}

/// Issue 12, bug 2 put back: a new table linked before its zeroes are published.
#[test]
fn teeth_table_linked_before_its_contents() {
    Teeth::bug(Bugs {
        skip_publish_barrier: true,
        ..Bugs::default()
    })
    .caught_by("linked");
}

/// Bug 2 again with the simulator's link check off: the weakly ordered walker follows the
/// link into the recycled table's stale leaves, and what it caches or reads is caught.
#[test]
fn teeth_table_linked_before_its_contents_seen_by_a_weak_walker() {
    Teeth {
        checks: Checks {
            tlb_coherence: true,
            publication: false,
        },
        ..Teeth::bug(Bugs {
            skip_publish_barrier: true,
            ..Bugs::default()
        })
    }
    .cases_to_catch();
}

#[test]
fn teeth_donate_and_share_without_owner_check() {
    Teeth::bug(Bugs {
        skip_owner_check: true,
        ..Bugs::default()
    })
    .cases_to_catch();
}

#[test]
fn teeth_tables_freed_before_their_tlbi() {
    Teeth::bug(Bugs {
        free_tables_before_tlbi: true,
        ..Bugs::default()
    })
    .caught_by("freed");
}

#[test]
fn teeth_collapse_of_scattered_frames() {
    Teeth::bug(Bugs {
        collapse_ignores_contiguity: true,
        ..Bugs::default()
    })
    .cases_to_catch();
}

/// An unmap that stops one page short is a wrong translation right after the operation, not
/// only a table left over at the end.
#[test]
fn teeth_unmap_one_page_short() {
    Teeth::bug(Bugs {
        unmap_one_page_short: true,
        ..Bugs::default()
    })
    .caught_by("unmapped or taken away");
}

#[test]
fn teeth_snapshot_dropped_leaf_tlbi() {
    Teeth::tlb(TlbBugs {
        drop_ipa: true,
        drop_vmid: false,
    })
    .snapshot()
    .cases_to_catch();
}

#[test]
fn teeth_snapshot_split_over_live_block() {
    Teeth::bug(Bugs {
        split_without_break: true,
        ..Bugs::default()
    })
    .snapshot()
    .cases_to_catch();
}

#[test]
fn teeth_snapshot_deferred_tlbi_overflow_dropped() {
    Teeth::bug(Bugs {
        deferred_overflow_dropped: true,
        ..Bugs::default()
    })
    .snapshot()
    .cases_to_catch();
}
