//! Table-driven transition tests in the style of pKVM's ownership selftest: every operation is
//! tried from every state, and after each attempt (failed ones included) every view is compared:
//! both frames' states and counts, both VMs' guest maps, frame contents, and the notifier log.

use alloc::vec::Vec;
use core::cell::RefCell;
use std::rc::Rc;

use super::*;

const F: Pfn = Pfn::new(0x100);
const S: Pfn = Pfn::new(0x101);
const G: Gfn = Gfn::new(0x40);
const MARK: u64 = 0xab;

fn vm(n: u16) -> VmId {
    VmId::new(n).unwrap()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Ev {
    Begin(Gfn, u64),
    End(Gfn, u64),
    Zero(Pfn),
    Copy(Pfn, Pfn),
}

type Log = Rc<RefCell<Vec<Ev>>>;

/// Frame contents as one word per frame: enough to see zeroing and copying.
struct Data {
    words: [u64; 2],
    log: Log,
}

impl Data {
    fn slot(p: Pfn) -> usize {
        (p.raw() - F.raw()) as usize
    }
}

impl FrameData for Data {
    fn zero_frame(&mut self, pfn: Pfn) {
        self.words[Self::slot(pfn)] = 0;
        self.log.borrow_mut().push(Ev::Zero(pfn));
    }
    fn copy_frame(&mut self, from: Pfn, to: Pfn) {
        self.words[Self::slot(to)] = self.words[Self::slot(from)];
        self.log.borrow_mut().push(Ev::Copy(from, to));
    }
}

struct Inv(Log);

impl Invalidate for Inv {
    fn begin(&mut self, gfn: Gfn, pages: u64) {
        self.0.borrow_mut().push(Ev::Begin(gfn, pages));
    }
    fn end(&mut self, gfn: Gfn, pages: u64) {
        self.0.borrow_mut().push(Ev::End(gfn, pages));
    }
}

/// Which frame a VM's page `G` refers to, as the tests name them.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum P {
    None,
    OwnF,
    OwnS,
    BorrowF,
}

/// Everything observable about the test world.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct View {
    f: FrameState,
    f_pins: u16,
    f_refs: u16,
    s: FrameState,
    g0: P,
    g1: P,
    f_word: u64,
    s_word: u64,
}

const FREE: FrameState = FrameState::Free;
const HYP: FrameState = FrameState::Owned(Owner::Hyp);
const VM0: FrameState = FrameState::Owned(Owner::Vm(VmId(0)));
const VM1: FrameState = FrameState::Owned(Owner::Vm(VmId(1)));
const SHARED0: FrameState = FrameState::Shared {
    owner: Owner::Hyp,
    borrower: Owner::Vm(VmId(0)),
};

const fn view(f: FrameState, s: FrameState, g0: P, g1: P) -> View {
    let f_word = if matches!(f, FrameState::Free) {
        0
    } else {
        MARK
    };
    View {
        f,
        f_pins: 0,
        f_refs: 0,
        s,
        g0,
        g1,
        f_word,
        s_word: 0,
    }
}
const fn pins(v: View, n: u16) -> View {
    View { f_pins: n, ..v }
}
const fn refs(v: View, n: u16) -> View {
    View { f_refs: n, ..v }
}

// Start states. `S` is the spare frame: free unless the state says otherwise, so transitions that
// need a free frame have exactly one candidate.
const ST_FREE: View = view(FREE, HYP, P::None, P::None);
const ST_HYP: View = view(HYP, FREE, P::None, P::None);
const ST_HYP_FULL: View = view(HYP, HYP, P::None, P::None);
const ST_GUEST: View = view(VM0, FREE, P::OwnF, P::None);
const ST_GUEST_FULL: View = view(VM0, HYP, P::OwnF, P::None);
const ST_GUEST_PINNED: View = pins(ST_GUEST, 1);
const ST_GUEST_REF: View = refs(ST_GUEST, 1);
const ST_SHARED: View = view(SHARED0, FREE, P::BorrowF, P::None);
const ST_SHARED_PINNED: View = pins(ST_SHARED, 1);
const ST_SHARED_REF: View = refs(ST_SHARED, 1);
const ST_OTHER: View = view(VM1, FREE, P::None, P::OwnF);

// Results that are not start states.
const HYP_POPULATED_S: View = View {
    s: VM0,
    g0: P::OwnS,
    ..ST_HYP
};
const RECLAIMED: View = view(FREE, FREE, P::None, P::None);
const MIGRATED: View = View {
    f: FREE,
    f_word: 0,
    s: VM0,
    s_word: MARK,
    g0: P::OwnS,
    ..ST_GUEST
};
const SHARED_UNSHARED: View = view(HYP, FREE, P::None, P::None);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Try {
    HypFree,
    Populate,
    Donate,
    Share,
    Unshare,
    Reclaim,
    Migrate,
    Pin,
    Unpin,
    Get,
    Put,
}

const OPS: [Try; 11] = [
    Try::HypFree,
    Try::Populate,
    Try::Donate,
    Try::Share,
    Try::Unshare,
    Try::Reclaim,
    Try::Migrate,
    Try::Pin,
    Try::Unpin,
    Try::Get,
    Try::Put,
];

/// The error variant expected, without its payload (checked separately to name `F`/`G`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum K {
    WrongFrame,
    WrongGuest,
    Pinned,
    Busy,
    Overflow,
    Underflow,
    Oom,
}

#[derive(Clone, Copy, Debug)]
enum Want {
    Ok(View),
    Err(K),
}
use Want::{Err as E, Ok as O};

/// The spec, one row per start state, one column per operation in `OPS` order:
/// HypFree, Populate, Donate, Share, Unshare, Reclaim, Migrate, Pin, Unpin, Get, Put.
#[rustfmt::skip]
const TABLE: &[(&str, View, [Want; 11])] = &[
    ("free", ST_FREE, [
        E(K::WrongFrame), O(View { f: VM0, g0: P::OwnF, ..ST_FREE }), E(K::WrongFrame), E(K::WrongFrame), E(K::WrongGuest),
        E(K::WrongGuest), E(K::WrongGuest), E(K::WrongGuest), E(K::WrongGuest), E(K::WrongGuest),
        E(K::WrongGuest),
    ]),
    ("hyp", ST_HYP, [
        O(view(FREE, FREE, P::None, P::None)), O(HYP_POPULATED_S), O(ST_GUEST), O(ST_SHARED),
        E(K::WrongGuest), E(K::WrongGuest), E(K::WrongGuest), E(K::WrongGuest), E(K::WrongGuest),
        E(K::WrongGuest), E(K::WrongGuest),
    ]),
    ("hyp, no free frame", ST_HYP_FULL, [
        O(view(FREE, HYP, P::None, P::None)), E(K::Oom), O(ST_GUEST_FULL),
        O(View { f: SHARED0, g0: P::BorrowF, ..ST_HYP_FULL }), E(K::WrongGuest),
        E(K::WrongGuest), E(K::WrongGuest), E(K::WrongGuest), E(K::WrongGuest), E(K::WrongGuest),
        E(K::WrongGuest),
    ]),
    ("guest", ST_GUEST, [
        E(K::WrongFrame), E(K::WrongGuest), E(K::WrongFrame), E(K::WrongFrame), E(K::WrongGuest),
        O(RECLAIMED), O(MIGRATED), O(ST_GUEST_PINNED), E(K::Underflow), O(ST_GUEST_REF),
        E(K::Underflow),
    ]),
    ("guest, no free frame", ST_GUEST_FULL, [
        E(K::WrongFrame), E(K::WrongGuest), E(K::WrongFrame), E(K::WrongFrame), E(K::WrongGuest),
        O(view(FREE, HYP, P::None, P::None)), E(K::Oom), O(pins(ST_GUEST_FULL, 1)),
        E(K::Underflow), O(refs(ST_GUEST_FULL, 1)), E(K::Underflow),
    ]),
    ("guest, pinned", ST_GUEST_PINNED, [
        E(K::WrongFrame), E(K::WrongGuest), E(K::WrongFrame), E(K::WrongFrame), E(K::WrongGuest),
        E(K::Pinned), E(K::Pinned), O(pins(ST_GUEST, 2)), O(ST_GUEST), O(refs(ST_GUEST_PINNED, 1)),
        E(K::Underflow),
    ]),
    ("guest, referenced", ST_GUEST_REF, [
        E(K::WrongFrame), E(K::WrongGuest), E(K::WrongFrame), E(K::WrongFrame), E(K::WrongGuest),
        E(K::Busy), E(K::Busy), O(pins(ST_GUEST_REF, 1)), E(K::Underflow), O(refs(ST_GUEST, 2)),
        O(ST_GUEST),
    ]),
    ("shared", ST_SHARED, [
        E(K::WrongFrame), E(K::WrongGuest), E(K::WrongFrame), E(K::WrongFrame),
        O(SHARED_UNSHARED), E(K::WrongGuest), E(K::WrongGuest), O(ST_SHARED_PINNED),
        E(K::Underflow), O(ST_SHARED_REF), E(K::Underflow),
    ]),
    ("shared, pinned", ST_SHARED_PINNED, [
        E(K::WrongFrame), E(K::WrongGuest), E(K::WrongFrame), E(K::WrongFrame), E(K::Pinned),
        E(K::WrongGuest), E(K::WrongGuest), O(pins(ST_SHARED, 2)), O(ST_SHARED),
        O(refs(ST_SHARED_PINNED, 1)), E(K::Underflow),
    ]),
    ("shared, referenced", ST_SHARED_REF, [
        E(K::WrongFrame), E(K::WrongGuest), E(K::WrongFrame), E(K::WrongFrame), E(K::Busy),
        E(K::WrongGuest), E(K::WrongGuest), O(pins(ST_SHARED_REF, 1)), E(K::Underflow),
        O(refs(ST_SHARED, 2)), O(ST_SHARED),
    ]),
    ("other guest's", ST_OTHER, [
        E(K::WrongFrame), O(View { s: VM0, g0: P::OwnS, ..ST_OTHER }), E(K::WrongFrame),
        E(K::WrongFrame), E(K::WrongGuest), E(K::WrongGuest), E(K::WrongGuest), E(K::WrongGuest),
        E(K::WrongGuest), E(K::WrongGuest), E(K::WrongGuest),
    ]),
];

struct World {
    frames: FrameTable,
    g0: GuestMap,
    g1: GuestMap,
    data: Data,
    log: Log,
}

impl World {
    /// Builds a world in `v` through the public transitions only.
    fn build(v: View) -> Self {
        let log = Log::default();
        let mut w = World {
            frames: FrameTable::new(F, 2),
            g0: GuestMap::new(vm(0), &[(G, 4)]),
            g1: GuestMap::new(vm(1), &[(G, 4)]),
            data: Data {
                words: [0; 2],
                log: log.clone(),
            },
            log,
        };
        assert_eq!(w.frames.hyp_alloc(&mut NoData), Ok(F));
        assert_eq!(w.frames.hyp_alloc(&mut NoData), Ok(S));
        let (f, g0, g1) = (&mut w.frames, &mut w.g0, &mut w.g1);
        match (v.f, v.g0, v.g1) {
            (FrameState::Free, P::None, P::None) => f.hyp_free(F, &mut w.data).unwrap(),
            (FrameState::Owned(Owner::Hyp), P::None, P::None) => {}
            (s, P::OwnF, P::None) if s == VM0 => f.donate_to_guest(g0, F, G, 1).unwrap(),
            (s, P::BorrowF, P::None) if s == SHARED0 => {
                f.share_with_guest(g0, F, G, 1, true).unwrap()
            }
            (s, P::None, P::OwnF) if s == VM1 => f.donate_to_guest(g1, F, G, 1).unwrap(),
            other => panic!("no recipe for {other:?}"),
        }
        if v.f != FREE {
            w.data.words[0] = MARK;
        }
        let g = if v.g1 == P::OwnF { &w.g1 } else { &w.g0 };
        for _ in 0..v.f_pins {
            w.frames.pin(g, G).unwrap();
        }
        for _ in 0..v.f_refs {
            w.frames.get_page(g, G).unwrap();
        }
        if v.s == FREE {
            w.frames.hyp_free(S, &mut w.data).unwrap();
        }
        w.log.borrow_mut().clear();
        let got = w.view();
        assert_eq!(got, v, "world built for {v:?} looks like {got:?}");
        w
    }

    fn page(&self, m: &GuestMap) -> P {
        match m.get(G) {
            GuestPage::NoPage => P::None,
            GuestPage::Owned(p) if p == F => P::OwnF,
            GuestPage::Owned(p) if p == S => P::OwnS,
            GuestPage::Borrowed {
                pfn,
                writable: true,
            } if pfn == F => P::BorrowF,
            other => panic!("unexpected guest page {other:?}"),
        }
    }

    fn view(&self) -> View {
        self.frames.check_invariants();
        self.g0.check_against(&self.frames);
        self.g1.check_against(&self.frames);
        let f = self.frames.record(F).unwrap();
        let s = self.frames.record(S).unwrap();
        assert_eq!((s.pins(), s.refs()), (0, 0), "spare frame picked up counts");
        for (rec, word) in [(f, self.data.words[0]), (s, self.data.words[1])] {
            if rec.state() == FrameState::Free {
                assert_eq!(word, 0, "I4: a free frame is not zeroed");
            }
        }
        View {
            f: f.state(),
            f_pins: f.pins(),
            f_refs: f.refs(),
            s: s.state(),
            g0: self.page(&self.g0),
            g1: self.page(&self.g1),
            f_word: self.data.words[0],
            s_word: self.data.words[1],
        }
    }

    fn run(&mut self, op: Try) -> Result<(), OwnershipError> {
        let mut inv = Inv(self.log.clone());
        let (f, g0, d) = (&mut self.frames, &mut self.g0, &mut self.data);
        match op {
            Try::HypFree => f.hyp_free(F, d),
            Try::Populate => f.populate(g0, G, d).map(drop),
            Try::Donate => f.donate_to_guest(g0, F, G, 1),
            Try::Share => f.share_with_guest(g0, F, G, 1, true),
            Try::Unshare => f.unshare_from_guest(g0, G, 1, &mut inv),
            Try::Reclaim => f.reclaim(g0, G, 1, &mut inv, d),
            Try::Migrate => f.migrate(g0, G, &mut inv, d).map(drop),
            Try::Pin => f.pin(g0, G).map(drop),
            Try::Unpin => f.unpin(g0, G).map(drop),
            Try::Get => f.get_page(g0, G).map(drop),
            Try::Put => f.put_page(g0, G).map(drop),
        }
    }
}

fn kind(e: OwnershipError) -> K {
    match e {
        OwnershipError::WrongFrameState { pfn, .. } => {
            assert_eq!(pfn, F, "error names the wrong frame");
            K::WrongFrame
        }
        OwnershipError::WrongGuestState { gfn, vm: v, .. } => {
            assert_eq!((gfn, v), (G, vm(0)), "error names the wrong page");
            K::WrongGuest
        }
        OwnershipError::Pinned { pfn, .. } => {
            assert_eq!(pfn, F);
            K::Pinned
        }
        OwnershipError::Busy { pfn, .. } => {
            assert_eq!(pfn, F);
            K::Busy
        }
        OwnershipError::CountOverflow { .. } => K::Overflow,
        OwnershipError::CountUnderflow { .. } => K::Underflow,
        OwnershipError::OutOfMemory { .. } => K::Oom,
        other => panic!("unexpected error {other:?}"),
    }
}

fn removes_access(op: Try) -> bool {
    matches!(op, Try::Unshare | Try::Reclaim | Try::Migrate)
}

#[test]
fn every_operation_from_every_state() {
    let mut checked = 0;
    for (name, start, wants) in TABLE {
        for (op, want) in OPS.iter().zip(wants) {
            let mut w = World::build(*start);
            let got = w.run(*op);
            let after = w.view();
            let log = w.log.borrow().clone();
            match (want, got) {
                (Want::Err(k), Err(e)) => {
                    assert_eq!(kind(e), *k, "{name}: {op:?} failed with {e}");
                    assert_eq!(after, *start, "{name}: failed {op:?} changed the world");
                    assert!(log.is_empty(), "{name}: failed {op:?} did {log:?}");
                }
                (Want::Ok(v), Ok(())) => {
                    assert_eq!(after, *v, "{name}: {op:?} left the wrong state");
                    if removes_access(*op) {
                        assert_eq!(
                            log.first(),
                            Some(&Ev::Begin(G, 1)),
                            "{name}: {op:?}: {log:?}"
                        );
                        assert_eq!(log.last(), Some(&Ev::End(G, 1)), "{name}: {op:?}: {log:?}");
                    } else {
                        assert!(
                            log.iter().all(|e| matches!(e, Ev::Zero(_))),
                            "{name}: {op:?} invalidated without taking access away: {log:?}"
                        );
                    }
                }
                (want, got) => panic!("{name}: {op:?}: wanted {want:?}, got {got:?}"),
            }
            checked += 1;
        }
    }
    assert_eq!(checked, TABLE.len() * OPS.len());
}

#[test]
fn record_fits_eight_bytes_and_round_trips() {
    assert_eq!(FrameTable::bytes_per_frame(), 8);
    let states = [
        FrameState::Owned(Owner::Hyp),
        FrameState::Owned(Owner::Vm(vm(VmId::MAX))),
        FrameState::Shared {
            owner: Owner::Hyp,
            borrower: Owner::Vm(vm(7)),
        },
        FrameState::Shared {
            owner: Owner::Vm(vm(3)),
            borrower: Owner::Hyp,
        },
    ];
    for s in states {
        let r = FrameRecord(0)
            .with_state(s)
            .with_pins(MAX_PINS)
            .with_refs(5);
        assert_eq!((r.state(), r.pins(), r.refs()), (s, MAX_PINS, 5));
        let r = r.with_pins(0).with_state(FrameState::Owned(Owner::Hyp));
        assert_eq!(
            (r.pins(), r.refs()),
            (0, 5),
            "changing state must keep counts"
        );
    }
    assert_eq!(VmId::new(u16::MAX), None);
}

#[test]
fn ranges_are_checked_whole_before_any_write() {
    let log = Log::default();
    let mut data = Data {
        words: [0; 2],
        log: log.clone(),
    };
    let mut frames = FrameTable::new(F, 2);
    let mut g = GuestMap::new(vm(0), &[(G, 2)]);
    frames.hyp_alloc(&mut NoData).unwrap();
    frames.hyp_alloc(&mut NoData).unwrap();
    // The second page is outside guest memory: nothing may change for the first.
    let e = frames
        .donate_to_guest(&mut g, F, Gfn::new(G.raw() + 1), 2)
        .unwrap_err();
    assert_eq!(
        e,
        OwnershipError::NotGuestMemory {
            vm: vm(0),
            gfn: Gfn::new(G.raw() + 2)
        }
    );
    assert_eq!(frames.state(F), Some(HYP));
    assert_eq!(g.get(Gfn::new(G.raw() + 1)), GuestPage::NoPage);
    // The second frame is not RAM.
    let e = frames.share_with_guest(&mut g, S, G, 2, false).unwrap_err();
    assert_eq!(
        e,
        OwnershipError::NotRam {
            pfn: Pfn::new(S.raw() + 1)
        }
    );
    assert_eq!(frames.state(S), Some(HYP));
    frames.donate_to_guest(&mut g, F, G, 2).unwrap();
    frames.pin(&g, Gfn::new(G.raw() + 1)).unwrap();
    // One pinned page in the range: the whole reclaim is refused, before any invalidation.
    let mut inv = Inv(log.clone());
    let e = frames
        .reclaim(&mut g, G, 2, &mut inv, &mut data)
        .unwrap_err();
    assert_eq!(
        e,
        OwnershipError::Pinned {
            op: Op::Reclaim,
            pfn: S,
            pins: 1
        }
    );
    assert!(log.borrow().is_empty());
    assert_eq!(g.get(G), GuestPage::Owned(F));
    frames.unpin(&g, Gfn::new(G.raw() + 1)).unwrap();
    frames.reclaim(&mut g, G, 2, &mut inv, &mut data).unwrap();
    assert_eq!(log.borrow().first(), Some(&Ev::Begin(G, 2)));
    assert_eq!(frames.free_frames(), 2);
    assert_eq!(
        frames.donate_to_guest(&mut g, F, G, 0),
        Err(OwnershipError::BadRange { op: Op::Donate })
    );
    frames.check_invariants();
    g.check_against(&frames);
}

#[test]
fn pin_count_saturates_with_an_error() {
    let mut frames = FrameTable::new(F, 1);
    let mut g = GuestMap::new(vm(0), &[(G, 1)]);
    frames.populate(&mut g, G, &mut NoData).unwrap();
    for _ in 0..MAX_PINS {
        frames.pin(&g, G).unwrap();
    }
    assert_eq!(
        frames.pin(&g, G),
        Err(OwnershipError::CountOverflow {
            op: Op::Pin,
            pfn: F
        })
    );
    assert_eq!(frames.record(F).unwrap().pins(), MAX_PINS);
}

#[test]
fn errors_read_as_sentences() {
    let e = OwnershipError::WrongFrameState {
        op: Op::Donate,
        pfn: F,
        found: VM1,
    };
    assert_eq!(
        e.to_string(),
        "cannot donate to a guest frame 0x100: it is owned by VM 1"
    );
    let e = OwnershipError::Pinned {
        op: Op::Migrate,
        pfn: F,
        pins: 2,
    };
    assert_eq!(
        e.to_string(),
        "cannot migrate frame 0x100: it has 2 long-term pins"
    );
}

/// Frame data for tests that only count: nothing is stored.
struct NoData;

impl FrameData for NoData {
    fn zero_frame(&mut self, _: Pfn) {}
    fn copy_frame(&mut self, _: Pfn, _: Pfn) {}
}

/// Frame data that records which runs it was asked to zero, as (first frame, count).
#[derive(Default)]
struct Zeroes(Vec<(u64, u64)>);

impl FrameData for Zeroes {
    fn zero_frame(&mut self, pfn: Pfn) {
        self.0.push((pfn.raw(), 1));
    }
    fn copy_frame(&mut self, _: Pfn, _: Pfn) {}
    fn zero_frames(&mut self, first: Pfn, count: u64) {
        self.0.push((first.raw(), count));
    }
}

impl Zeroes {
    fn take(&mut self) -> Vec<(u64, u64)> {
        core::mem::take(&mut self.0)
    }
}

#[test]
fn an_unzeroed_table_zeroes_frames_as_it_hands_them_out_and_cuts_runs_from_its_tail() {
    // A base off the run alignment, so cutting a run skips frames.
    let base = 0x1003u64;
    let mut t = FrameTable::new_unzeroed(Pfn::new(base), 40);
    let mut z = Zeroes::default();
    t.check_invariants();
    assert_eq!(t.free_frames(), 40);

    // Single frames come from the tail, each zeroed once.
    assert_eq!(t.hyp_alloc(&mut z).unwrap(), Pfn::new(base));
    assert_eq!(z.take(), vec![(base, 1)]);
    // An aligned run of 8 starts at 0x1008: the frames skipped (0x1004..0x1008) go to the free
    // list zeroed, the run itself is zeroed as it is handed out.
    assert_eq!(t.hyp_alloc_run(8, &mut z).unwrap(), Pfn::new(0x1008));
    assert_eq!(z.take(), vec![(0x1004, 4), (0x1008, 8)]);
    t.check_invariants();
    assert_eq!(t.free_frames(), 40 - 1 - 8);
    // The skipped frames are handed out next, from the free list: no zeroing again.
    let next = t.hyp_alloc(&mut z).unwrap().raw();
    assert!((0x1004..0x1008).contains(&next), "{next:#x}");
    assert!(z.take().is_empty());
    // A freed frame is zeroed when it is freed (as in a zeroed table), and reused.
    t.hyp_free(Pfn::new(base), &mut z).unwrap();
    assert_eq!(z.take(), vec![(base, 1)]);
    t.check_invariants();

    // Run out: everything is handed out exactly once, then OutOfMemory.
    let mut got = vec![base, next];
    got.extend(0x1008..0x1010);
    while let Ok(p) = t.hyp_alloc(&mut z) {
        got.push(p.raw());
    }
    got.sort_unstable();
    got.dedup();
    assert_eq!(got, (base..base + 40).collect::<Vec<_>>());
    assert_eq!(t.free_frames(), 0);
    assert!(matches!(
        t.hyp_alloc_run(8, &mut z),
        Err(OwnershipError::OutOfMemory { .. })
    ));
    t.check_invariants();
}
