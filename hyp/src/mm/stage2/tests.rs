//! Unit tests of every stage-2 operation, on plain simulated memory (structure, translations,
//! table accounting) and on the simulated machine (step order, stale TLBs, I2/I4 checks).

use alloc::vec::Vec;

use super::*;
use crate::mm::addr::Pfn;
use crate::mm::descriptor::{MemType, SwBits};
use crate::mm::sim::{
    GuestFault, MachineConfig, SharedMachine, SimFrameAlloc, SimMemory, Step, Violation,
};
use crate::mm::tlb::NoTlb;

const GIB: u64 = 1 << 30;
const MIB2: u64 = 2 << 20;
const KIB4: u64 = 4096;
const RW: LeafAttrs = LeafAttrs::normal(S2Perms::RW);

fn config(ipa_bits: u8) -> Stage2Config {
    let f = CpuFeatures {
        parange: 5,
        vmid_bits: 2,
        fwb: false,
    };
    Stage2Config::from_features(f, ipa_bits).unwrap()
}

type Plain = Stage2<SimMemory, NoTlb>;

/// Tables at 1 GiB (16 MiB of frames); guest "RAM" PAs are never dereferenced here.
fn plain(ipa_bits: u8) -> (Plain, SimFrameAlloc) {
    let mut alloc = SimFrameAlloc::new(Pa::new(GIB), 16 << 20);
    let mem = SimMemory::new(Pa::new(GIB), 16 << 20);
    let s2 = Stage2::new(mem, NoTlb, config(ipa_bits), Vmid::new(1), &mut alloc).unwrap();
    (s2, alloc)
}

fn leaf_at(s2: &Plain, ipa: u64) -> Option<(u64, u8, LeafAttrs)> {
    s2.translate(Ipa::new(ipa))
        .map(|t| (t.pa.raw(), t.leaf.level.raw(), t.leaf.attrs))
}

#[test]
fn map_uses_largest_blocks_alignment_allows() {
    let (mut s2, mut alloc) = plain(40);
    // 1 GiB + 2 MiB + 4 KiB, all aligned: one 1 GiB block, one 2 MiB block, one page.
    let len = GIB + MIB2 + KIB4;
    s2.map(
        &mut alloc,
        Ipa::new(GIB),
        Pa::new(4 * GIB),
        len,
        RW,
        MapFlags::BLOCKS,
    )
    .unwrap();
    assert_eq!(
        leaf_at(&s2, GIB + 0x1234_5678),
        Some((4 * GIB + 0x1234_5678, 1, RW))
    );
    assert_eq!(
        leaf_at(&s2, 2 * GIB + 0x1000),
        Some((5 * GIB + 0x1000, 2, RW))
    );
    assert_eq!(
        leaf_at(&s2, 2 * GIB + MIB2 + 8),
        Some((5 * GIB + MIB2 + 8, 3, RW))
    );
    assert_eq!(leaf_at(&s2, 2 * GIB + MIB2 + KIB4), None);
    assert_eq!(leaf_at(&s2, GIB - 1), None);
    // Root (2 concatenated frames) + one level-2 + one level-3 table.
    assert_eq!(s2.table_pages(), 4);
    let mut leaves = Vec::new();
    s2.for_each_leaf(Ipa::new(0), 4 * GIB, |l| {
        leaves.push((l.ipa.raw(), l.level.raw()))
    })
    .unwrap();
    assert_eq!(leaves, [(GIB, 1), (2 * GIB, 2), (2 * GIB + MIB2, 3)]);
    s2.check_invariants();
}

#[test]
fn map_uses_pages_when_forced_or_pa_misaligned() {
    let (mut s2, mut alloc) = plain(39);
    s2.map(
        &mut alloc,
        Ipa::new(0),
        Pa::new(GIB),
        MIB2,
        RW,
        MapFlags::PAGES_ONLY,
    )
    .unwrap();
    assert_eq!(leaf_at(&s2, 0x1000).unwrap().1, 3);
    // IPA 2 MiB aligned, PA only 4 KiB aligned: pages.
    s2.map(
        &mut alloc,
        Ipa::new(MIB2),
        Pa::new(GIB + KIB4),
        MIB2,
        RW,
        MapFlags::BLOCKS,
    )
    .unwrap();
    assert_eq!(leaf_at(&s2, MIB2 + 0x10), Some((GIB + KIB4 + 0x10, 3, RW)));
    s2.check_invariants();
}

#[test]
fn a_fault_inside_an_identical_block_keeps_the_block() {
    let (mut s2, mut alloc) = plain(39);
    s2.map(
        &mut alloc,
        Ipa::new(0),
        Pa::new(GIB),
        MIB2,
        RW,
        MapFlags::BLOCKS,
    )
    .unwrap();
    let pages = s2.table_pages();
    s2.map(
        &mut alloc,
        Ipa::new(0x5000),
        Pa::new(GIB + 0x5000),
        KIB4,
        RW,
        MapFlags::BLOCKS,
    )
    .unwrap();
    assert_eq!(s2.table_pages(), pages);
    assert_eq!(leaf_at(&s2, 0x5000).unwrap().1, 2);
}

#[test]
fn mapping_a_page_inside_a_block_splits_it_and_keeps_the_rest() {
    let (mut s2, mut alloc) = plain(39);
    s2.map(
        &mut alloc,
        Ipa::new(0),
        Pa::new(GIB),
        MIB2,
        RW,
        MapFlags::BLOCKS,
    )
    .unwrap();
    s2.map(
        &mut alloc,
        Ipa::new(0x5000),
        Pa::new(3 * GIB),
        KIB4,
        RW,
        MapFlags::BLOCKS,
    )
    .unwrap();
    assert_eq!(leaf_at(&s2, 0x5008), Some((3 * GIB + 8, 3, RW)));
    assert_eq!(leaf_at(&s2, 0x4008), Some((GIB + 0x4008, 3, RW)));
    assert_eq!(leaf_at(&s2, 0x6000), Some((GIB + 0x6000, 3, RW)));
    s2.check_invariants();
}

#[test]
fn mapping_a_block_over_a_table_frees_the_table() {
    let (mut s2, mut alloc) = plain(39);
    s2.map(
        &mut alloc,
        Ipa::new(0),
        Pa::new(GIB),
        MIB2,
        RW,
        MapFlags::PAGES_ONLY,
    )
    .unwrap();
    let with_table = s2.table_pages();
    s2.map(
        &mut alloc,
        Ipa::new(0),
        Pa::new(2 * GIB),
        MIB2,
        RW,
        MapFlags::BLOCKS,
    )
    .unwrap();
    assert_eq!(s2.table_pages(), with_table - 1);
    assert_eq!(leaf_at(&s2, 0x3000), Some((2 * GIB + 0x3000, 2, RW)));
    assert_eq!(alloc.live(), s2.table_pages());
    s2.check_invariants();
}

#[test]
fn unmap_frees_every_table_no_leak() {
    let (mut s2, mut alloc) = plain(40);
    let ranges = [
        (0, 3 * MIB2 + 5 * KIB4),
        (GIB - KIB4, 2 * KIB4),
        (600 * GIB, GIB + MIB2),
    ];
    for (i, (ipa, len)) in ranges.into_iter().enumerate() {
        let flags = if i == 1 {
            MapFlags::PAGES_ONLY
        } else {
            MapFlags::BLOCKS
        };
        s2.map(
            &mut alloc,
            Ipa::new(ipa),
            Pa::new(ipa + 8 * GIB),
            len,
            RW,
            flags,
        )
        .unwrap();
    }
    assert!(s2.table_pages() > 2);
    // Unmap piecewise: partial unmaps split blocks and free tables that become empty.
    s2.unmap(&mut alloc, Ipa::new(KIB4), MIB2).unwrap();
    assert_eq!(leaf_at(&s2, 0).unwrap().0, 8 * GIB);
    assert_eq!(leaf_at(&s2, KIB4), None);
    assert_eq!(leaf_at(&s2, MIB2 + KIB4).unwrap().0, 8 * GIB + MIB2 + KIB4);
    for (ipa, len) in ranges {
        s2.unmap(&mut alloc, Ipa::new(ipa), len).unwrap();
        s2.check_invariants();
    }
    assert_eq!(s2.table_pages(), 2, "only the concatenated root remains");
    assert_eq!(alloc.live(), 2);
    s2.destroy(&mut alloc);
    assert_eq!(alloc.live(), 0);
}

#[test]
fn unmap_of_blocks_across_two_tables_frees_both() {
    // The benchmark's layout: 1 GiB of 2 MiB blocks starting 2 MiB into a level-2 table, so
    // the range ends in the first entry of the next one.
    let (mut s2, mut alloc) = plain(39);
    let base = GIB + MIB2;
    s2.map(
        &mut alloc,
        Ipa::new(base),
        Pa::new(base),
        GIB,
        RW,
        MapFlags::BLOCKS,
    )
    .unwrap();
    assert_eq!(s2.table_pages(), 3);
    // Unmapping all but the last block keeps the second table.
    s2.unmap(&mut alloc, Ipa::new(base), GIB - MIB2).unwrap();
    assert_eq!(s2.table_pages(), 2);
    assert_eq!(leaf_at(&s2, 2 * GIB - KIB4), None);
    assert_eq!(leaf_at(&s2, 2 * GIB).unwrap().1, 2);
    s2.map(
        &mut alloc,
        Ipa::new(base),
        Pa::new(base),
        GIB,
        RW,
        MapFlags::BLOCKS,
    )
    .unwrap();
    s2.unmap(&mut alloc, Ipa::new(base), GIB).unwrap();
    assert_eq!(s2.table_pages(), 1, "only the root remains");
    assert_eq!(alloc.live(), 1);
    s2.check_invariants();
}

#[test]
fn unmap_inside_blocks_splits_only_the_ends() {
    let (mut s2, mut alloc) = plain(40);
    s2.map(
        &mut alloc,
        Ipa::new(0),
        Pa::new(8 * GIB),
        4 * GIB,
        RW,
        MapFlags::BLOCKS,
    )
    .unwrap();
    assert_eq!(s2.table_pages(), 2, "four 1 GiB blocks in the root");
    let (start, end) = (GIB + MIB2 + KIB4, 3 * GIB - KIB4);
    s2.unmap(&mut alloc, Ipa::new(start), end - start).unwrap();
    s2.check_invariants();
    let expect = |ipa: u64, level: Option<u8>| {
        assert_eq!(
            leaf_at(&s2, ipa).map(|(pa, l, _)| (pa, l)),
            level.map(|l| (8 * GIB + ipa, l)),
            "IPA {ipa:#x}"
        );
    };
    expect(GIB - KIB4, Some(1));
    expect(GIB, Some(2));
    expect(GIB + MIB2, Some(3));
    expect(start, None);
    expect(2 * GIB, None);
    expect(end - KIB4, None);
    expect(end, Some(3));
    expect(3 * GIB, Some(1));
    // Root (2) + two level-2 tables + two level-3 tables at the ends; the blocks wholly
    // inside were cleared in place, the middle 1 GiB block went without a table.
    assert_eq!(s2.table_pages(), 6);
    // Unmapping what is left around the hole frees every table.
    s2.unmap(&mut alloc, Ipa::new(0), start).unwrap();
    s2.unmap(&mut alloc, Ipa::new(end), 4 * GIB - end).unwrap();
    s2.check_invariants();
    assert_eq!(s2.table_pages(), 2);
    assert_eq!(alloc.live(), 2);
}

#[test]
fn split_then_collapse_round_trips() {
    let (mut s2, mut alloc) = plain(39);
    let attrs = LeafAttrs::normal(S2Perms::RWX).with_sw(SwBits::new(5).unwrap());
    s2.map(
        &mut alloc,
        Ipa::new(GIB),
        Pa::new(2 * GIB),
        GIB,
        attrs,
        MapFlags::BLOCKS,
    )
    .unwrap();
    let before = s2.table_pages();
    s2.split(&mut alloc, Ipa::new(GIB), GIB, Level::L3).unwrap();
    assert_eq!(s2.table_pages(), before + 1 + 512);
    for off in [0, 0x1234_5000, GIB - KIB4] {
        assert_eq!(leaf_at(&s2, GIB + off), Some((2 * GIB + off, 3, attrs)));
    }
    s2.check_invariants();
    assert_eq!(s2.collapse(&mut alloc, Ipa::new(GIB), GIB).unwrap(), 513);
    assert_eq!(s2.table_pages(), before);
    assert_eq!(
        leaf_at(&s2, GIB + 0x1234_5000),
        Some((2 * GIB + 0x1234_5000, 1, attrs))
    );
    assert_eq!(alloc.live(), before);
    s2.check_invariants();
}

#[test]
fn split_only_touches_blocks_in_range() {
    let (mut s2, mut alloc) = plain(39);
    s2.map(
        &mut alloc,
        Ipa::new(0),
        Pa::new(GIB),
        2 * MIB2,
        RW,
        MapFlags::BLOCKS,
    )
    .unwrap();
    s2.split(&mut alloc, Ipa::new(MIB2 + KIB4), KIB4, Level::L3)
        .unwrap();
    assert_eq!(leaf_at(&s2, 0).unwrap().1, 2);
    assert_eq!(leaf_at(&s2, MIB2).unwrap().1, 3);
}

#[test]
fn collapse_refuses_non_uniform_tables() {
    let (mut s2, mut alloc) = plain(39);
    s2.map(
        &mut alloc,
        Ipa::new(0),
        Pa::new(GIB),
        MIB2,
        RW,
        MapFlags::PAGES_ONLY,
    )
    .unwrap();
    s2.set_perms(&mut alloc, Ipa::new(0x7000), KIB4, S2Perms::R)
        .unwrap();
    assert_eq!(s2.collapse(&mut alloc, Ipa::new(0), MIB2).unwrap(), 0);
    s2.set_perms(&mut alloc, Ipa::new(0x7000), KIB4, S2Perms::RW)
        .unwrap();
    // Not contiguous: one page elsewhere.
    s2.map(
        &mut alloc,
        Ipa::new(0x9000),
        Pa::new(3 * GIB),
        KIB4,
        RW,
        MapFlags::BLOCKS,
    )
    .unwrap();
    assert_eq!(s2.collapse(&mut alloc, Ipa::new(0), MIB2).unwrap(), 0);
    s2.map(
        &mut alloc,
        Ipa::new(0x9000),
        Pa::new(GIB + 0x9000),
        KIB4,
        RW,
        MapFlags::BLOCKS,
    )
    .unwrap();
    assert_eq!(s2.collapse(&mut alloc, Ipa::new(0), MIB2).unwrap(), 1);
    // Misaligned PA: contiguous but cannot be a block.
    s2.map(
        &mut alloc,
        Ipa::new(MIB2),
        Pa::new(GIB + KIB4),
        MIB2,
        RW,
        MapFlags::BLOCKS,
    )
    .unwrap();
    assert_eq!(s2.collapse(&mut alloc, Ipa::new(MIB2), MIB2).unwrap(), 0);
}

#[test]
fn write_protect_and_relax_change_only_permissions() {
    let (mut s2, mut alloc) = plain(39);
    s2.map(
        &mut alloc,
        Ipa::new(0),
        Pa::new(GIB),
        MIB2,
        RW,
        MapFlags::BLOCKS,
    )
    .unwrap();
    // Protect one page of the block: the block is split, the rest stays writable.
    s2.write_protect(&mut alloc, Ipa::new(0x3000), KIB4)
        .unwrap();
    assert_eq!(leaf_at(&s2, 0x3000).unwrap().2.perms, S2Perms::R);
    assert_eq!(leaf_at(&s2, 0x4000).unwrap().2.perms, S2Perms::RW);
    s2.set_perms(&mut alloc, Ipa::new(0), MIB2, S2Perms::RWX)
        .unwrap();
    assert_eq!(leaf_at(&s2, 0x3000).unwrap().2.perms, S2Perms::RWX);
    // Unmapped entries stay unmapped.
    s2.write_protect(&mut alloc, Ipa::new(0), 2 * MIB2).unwrap();
    assert_eq!(leaf_at(&s2, MIB2), None);
    // Changing the memory type keeps the address.
    s2.update_leaves(&mut alloc, Ipa::new(0), KIB4, |a| LeafAttrs {
        mem: MemType::Device,
        ..a
    })
    .unwrap();
    assert_eq!(leaf_at(&s2, 0).unwrap().2.mem, MemType::Device);
    s2.check_invariants();
}

#[test]
fn annotations_keep_tables_until_unmapped() {
    let (mut s2, mut alloc) = plain(39);
    let owner = Annotation::new(7).unwrap();
    s2.annotate(&mut alloc, Ipa::new(0x1000), KIB4, owner)
        .unwrap();
    let t = s2.table_pages();
    assert_eq!(t, 3, "root, level-2 and level-3 tables");
    s2.unmap(&mut alloc, Ipa::new(0x1000), KIB4).unwrap();
    assert_eq!(
        s2.table_pages(),
        1,
        "empty tables freed once the annotation is gone"
    );
    // A block-sized annotation needs no level-3 table.
    s2.annotate(&mut alloc, Ipa::new(MIB2), MIB2, owner)
        .unwrap();
    assert_eq!(s2.table_pages(), 2);
    s2.check_invariants();
}

#[test]
fn bad_requests_are_errors() {
    let (mut s2, mut alloc) = plain(39);
    let e = s2.map(
        &mut alloc,
        Ipa::new(0x800),
        Pa::new(0),
        KIB4,
        RW,
        MapFlags::BLOCKS,
    );
    assert_eq!(
        e,
        Err(Stage2Error::MisalignedIpa {
            ipa: Ipa::new(0x800)
        })
    );
    let e = s2.map(
        &mut alloc,
        Ipa::new(0),
        Pa::new(0x10),
        KIB4,
        RW,
        MapFlags::BLOCKS,
    );
    assert_eq!(e, Err(Stage2Error::MisalignedPa { pa: Pa::new(0x10) }));
    let e = s2.unmap(&mut alloc, Ipa::new(0), 100);
    assert_eq!(e, Err(Stage2Error::MisalignedLength { len: 100 }));
    let e = s2.unmap(&mut alloc, Ipa::new((1 << 39) - KIB4), 2 * KIB4);
    assert!(matches!(e, Err(Stage2Error::IpaOutOfRange { limit, .. }) if limit == 1 << 39));
    let e = s2.map(
        &mut alloc,
        Ipa::new(0),
        Pa::new((1 << 48) - KIB4),
        2 * KIB4,
        RW,
        MapFlags::BLOCKS,
    );
    assert!(matches!(e, Err(Stage2Error::PaOutOfRange { .. })));
    let f8 = CpuFeatures {
        parange: 5,
        vmid_bits: 0,
        fwb: false,
    };
    let c8 = Stage2Config::from_features(f8, 40).unwrap();
    let mem = SimMemory::new(Pa::new(GIB), 1 << 20);
    let e = Stage2::new(mem, NoTlb, c8, Vmid::new(300), &mut alloc).map(|_| ());
    assert_eq!(
        e,
        Err(Stage2Error::VmidOutOfRange {
            vmid: Vmid::new(300),
            max: 255
        })
    );
    assert_eq!(
        Stage2Error::MisalignedIpa {
            ipa: Ipa::new(0x800)
        }
        .to_string(),
        "cannot change stage 2 at IPA 0x800: not 4 KiB aligned"
    );
}

#[test]
fn running_out_of_tables_is_an_error_and_leaves_a_consistent_tree() {
    let (mut s2, mut alloc) = plain(39);
    alloc.set_budget(Some(2));
    let e = s2.map(
        &mut alloc,
        Ipa::new(0),
        Pa::new(GIB),
        2 * MIB2,
        RW,
        MapFlags::PAGES_ONLY,
    );
    assert_eq!(
        e,
        Err(Stage2Error::OutOfTableMemory {
            ipa: Ipa::new(MIB2),
            level: Level::L3
        })
    );
    assert_eq!(
        leaf_at(&s2, MIB2 - KIB4).unwrap().0,
        GIB + MIB2 - KIB4,
        "prefix mapped"
    );
    s2.check_invariants();
    assert_eq!(alloc.live(), s2.table_pages());
    assert!(s2.max_tables_for_map(2 * MIB2) >= 3);
}

#[test]
fn concatenated_root_reaches_the_top_of_a_40_bit_space() {
    let (mut s2, mut alloc) = plain(40);
    let top = (1 << 40) - MIB2;
    s2.map(
        &mut alloc,
        Ipa::new(top),
        Pa::new(GIB),
        MIB2,
        RW,
        MapFlags::BLOCKS,
    )
    .unwrap();
    assert_eq!(leaf_at(&s2, top + 0x10), Some((GIB + 0x10, 2, RW)));
    assert_eq!(s2.vttbr() & ((1 << 48) - 1), s2.root().raw());
    assert_eq!(s2.vttbr() >> 48, 1);
}

// ---- On the simulated machine: order of steps, stale TLBs, invariant checks. ----

const VM: Vmid = Vmid::new(3);
const DATA: u64 = 0x4100_0000; // guest frames: above the 4 MiB of table frames

fn machine() -> SharedMachine {
    SharedMachine::new(MachineConfig::default())
}

#[test]
fn i2_live_remap_goes_through_invalid() {
    let m = machine();
    let mut alloc = m.alloc();
    let mut s2 = m.new_stage2(config(39), VM, &mut alloc).unwrap();
    s2.map(
        &mut alloc,
        Ipa::new(0),
        Pa::new(DATA),
        KIB4,
        RW,
        MapFlags::BLOCKS,
    )
    .unwrap();
    m.get().set_trace(true);
    s2.map(
        &mut alloc,
        Ipa::new(0),
        Pa::new(DATA + KIB4),
        KIB4,
        RW,
        MapFlags::BLOCKS,
    )
    .unwrap();
    let trace = m.get().set_trace(false);
    match trace.as_slice() {
        [
            Step::WritePte {
                old, new: broken, ..
            },
            Step::InvalidateIpa { vmid, ipa, level },
            Step::WritePte {
                old: invalid, new, ..
            },
        ] => {
            assert!(old.is_valid() && !broken.is_valid() && !invalid.is_valid());
            assert_eq!((*vmid, *ipa, *level), (VM, Ipa::new(0), Level::L3));
            assert!(new.is_valid());
        }
        other => panic!("unexpected steps {other:?}"),
    }
    assert!(m.get().violations().is_empty());
}

#[test]
fn relaxing_skips_the_tlbi_and_restricting_does_not() {
    let m = machine();
    let mut alloc = m.alloc();
    let mut s2 = m.new_stage2(config(39), VM, &mut alloc).unwrap();
    let ro = LeafAttrs::normal(S2Perms::R);
    s2.map(
        &mut alloc,
        Ipa::new(0),
        Pa::new(DATA),
        KIB4,
        ro,
        MapFlags::BLOCKS,
    )
    .unwrap();
    m.get().set_trace(true);
    s2.set_perms(&mut alloc, Ipa::new(0), KIB4, S2Perms::RW)
        .unwrap();
    let relax = m.get().set_trace(true);
    assert_eq!(relax.len(), 1, "one store, no TLBI: {relax:?}");
    s2.write_protect(&mut alloc, Ipa::new(0), KIB4).unwrap();
    let restrict = m.get().set_trace(false);
    assert!(matches!(
        restrict.as_slice(),
        [Step::WritePte { .. }, Step::InvalidateIpa { ipa, .. }] if *ipa == Ipa::new(0)
    ));
}

#[test]
fn stale_tlb_keeps_a_translation_until_invalidated() {
    let m = machine();
    let mut alloc = m.alloc();
    let mut s2 = m.new_stage2(config(39), VM, &mut alloc).unwrap();
    s2.map(
        &mut alloc,
        Ipa::new(0),
        Pa::new(DATA),
        KIB4,
        RW,
        MapFlags::BLOCKS,
    )
    .unwrap();
    assert!(m.get().fill(1, VM, Ipa::new(0)));
    // Change the tables behind the TLB's back (raw store, no TLBI): CPU 1 still uses the old
    // translation, CPU 0 walks the new tables.
    let (table, index) = {
        let hit = m.get().walk(VM, Ipa::new(0)).unwrap();
        (hit.path[hit.path_len - 1], 0)
    };
    m.get()
        .mem
        .write_pte(table, index, crate::mm::descriptor::Pte::INVALID);
    assert_eq!(
        m.get().guest_write(1, VM, Ipa::new(8), 5).unwrap().pa,
        Pa::new(DATA + 8)
    );
    assert!(matches!(
        m.get().guest_write(0, VM, Ipa::new(8), 6),
        Err(GuestFault::Translation { level: Level::L3 })
    ));
    m.tlb().invalidate_ipa(VM, Ipa::new(0), Level::L3);
    assert!(
        m.get().guest_read(1, VM, Ipa::new(8)).is_err(),
        "gone once invalidated"
    );
}

/// A `Tlb` that forgets to invalidate: the deliberate bug the sim must expose.
struct ForgetfulTlb;
impl Tlb for ForgetfulTlb {
    fn invalidate_ipa(&mut self, _: Vmid, _: Ipa, _: Level) {}
    fn invalidate_vmid_all(&mut self, _: Vmid) {}
}

#[test]
fn missing_tlbi_shows_as_a_lost_write_and_an_i2_violation() {
    let m = machine();
    let mut alloc = m.alloc();
    let s2 = m.new_stage2(config(39), VM, &mut alloc).unwrap();
    let (mem, _tlb) = (s2.mem().clone(), ());
    let root = s2.root();
    // Same tables, but changed through a Stage2 whose TLB maintenance does nothing.
    let mut buggy = Stage2 {
        mem,
        tlb: ForgetfulTlb,
        config: config(39),
        vmid: VM,
        root,
        table_pages: 1,
    };
    buggy
        .map(
            &mut alloc,
            Ipa::new(0),
            Pa::new(DATA),
            KIB4,
            RW,
            MapFlags::BLOCKS,
        )
        .unwrap();
    m.get().guest_write(1, VM, Ipa::new(0), 1).unwrap(); // CPU 1 caches IPA 0 -> DATA
    // Migrate: copy the frame, remap to the copy.
    let new = Pa::new(DATA + KIB4);
    m.get()
        .mem
        .copy_frame(Pfn::containing(Pa::new(DATA)), Pfn::containing(new));
    buggy
        .map(&mut alloc, Ipa::new(0), new, KIB4, RW, MapFlags::BLOCKS)
        .unwrap();
    let w = m.get().guest_write(1, VM, Ipa::new(0), 2).unwrap();
    assert!(
        w.from_tlb && w.pa == Pa::new(DATA),
        "stale translation used"
    );
    assert_eq!(
        m.get().mem.read_u64(new),
        1,
        "the write is lost: the copy never sees it"
    );
    let v = m.get().take_violations();
    assert!(
        matches!(v.as_slice(), [Violation::ChangeWithoutTlbi { .. }]),
        "{v:?}"
    );
}

#[test]
fn the_correct_sequence_keeps_the_write() {
    let m = machine();
    let mut alloc = m.alloc();
    let mut s2 = m.new_stage2(config(39), VM, &mut alloc).unwrap();
    s2.map(
        &mut alloc,
        Ipa::new(0),
        Pa::new(DATA),
        KIB4,
        RW,
        MapFlags::BLOCKS,
    )
    .unwrap();
    m.get().guest_write(1, VM, Ipa::new(0), 1).unwrap();
    let new = Pa::new(DATA + KIB4);
    m.get()
        .mem
        .copy_frame(Pfn::containing(Pa::new(DATA)), Pfn::containing(new));
    s2.map(&mut alloc, Ipa::new(0), new, KIB4, RW, MapFlags::BLOCKS)
        .unwrap();
    let w = m.get().guest_write(1, VM, Ipa::new(0), 2).unwrap();
    assert_eq!(w.pa, new);
    assert_eq!(m.get().mem.read_u64(new), 2);
    assert!(m.get().violations().is_empty());
}

#[test]
fn hook_runs_between_steps_and_speculative_fills_see_only_current_tables() {
    let m = machine();
    let mut alloc = m.alloc();
    let mut s2 = m.new_stage2(config(39), VM, &mut alloc).unwrap();
    s2.map(
        &mut alloc,
        Ipa::new(0),
        Pa::new(DATA),
        MIB2,
        RW,
        MapFlags::BLOCKS,
    )
    .unwrap();
    let seen = alloc::rc::Rc::new(core::cell::Cell::new(0));
    let counter = seen.clone();
    m.get().set_hook(Some(alloc::boxed::Box::new(
        move |mach: &mut crate::mm::sim::Machine, _: &Step| {
            counter.set(counter.get() + 1);
            // CPU 1 speculatively walks and writes between every two steps.
            mach.fill(1, VM, Ipa::new(0x3000));
            let _ = mach.guest_write(1, VM, Ipa::new(0x3000), 0xabcd);
        },
    )));
    // Split the block and move one page: every intermediate state is visited by CPU 1.
    s2.split(&mut alloc, Ipa::new(0), MIB2, Level::L3).unwrap();
    s2.map(
        &mut alloc,
        Ipa::new(0x3000),
        Pa::new(DATA + 4 * MIB2),
        KIB4,
        RW,
        MapFlags::BLOCKS,
    )
    .unwrap();
    s2.unmap(&mut alloc, Ipa::new(0), MIB2).unwrap();
    m.get().set_hook(None);
    assert!(
        seen.get() > 512,
        "hook ran after each of {} steps",
        seen.get()
    );
    assert!(
        m.get().violations().is_empty(),
        "{:?}",
        m.get().violations()
    );
    drop(s2);
}

#[test]
fn i4_freeing_a_table_before_its_tlbi_is_caught() {
    let m = machine();
    let mut alloc = m.alloc();
    let s2 = m.new_stage2(config(39), VM, &mut alloc).unwrap();
    let mem = s2.mem().clone();
    let mut buggy = Stage2 {
        mem,
        tlb: ForgetfulTlb,
        config: config(39),
        vmid: VM,
        root: s2.root(),
        table_pages: 1,
    };
    buggy
        .map(
            &mut alloc,
            Ipa::new(0),
            Pa::new(DATA),
            KIB4,
            RW,
            MapFlags::BLOCKS,
        )
        .unwrap();
    assert!(m.get().fill(0, VM, Ipa::new(0)));
    buggy.unmap(&mut alloc, Ipa::new(0), KIB4).unwrap();
    let v = m.get().take_violations();
    assert!(
        v.iter()
            .any(|v| matches!(v, Violation::FreedWhileCached { .. })),
        "{v:?}"
    );
    m.tlb().invalidate_vmid_all(VM); // clean up after the bug before the correct run
    // With real maintenance the same sequence is clean, and destroy leaks nothing.
    let mut s2 = s2;
    s2.map(
        &mut alloc,
        Ipa::new(0),
        Pa::new(DATA),
        KIB4,
        RW,
        MapFlags::BLOCKS,
    )
    .unwrap();
    assert!(m.get().fill(0, VM, Ipa::new(0)));
    s2.unmap(&mut alloc, Ipa::new(0), KIB4).unwrap();
    assert!(
        m.get().violations().is_empty(),
        "{:?}",
        m.get().violations()
    );
    s2.destroy(&mut alloc);
    assert_eq!(m.get().tables.live(), 0);
}

/// Issue 12, bug 2: a new table is published only after its contents. Unmapping returns a
/// subtree to the cache without clearing it, so a recycled table frame holds dead leaves until
/// it is zeroed; a link stored before a barrier orders the zeroes would let another CPU's
/// walker read them. The machine flags a link to a frame stored into since the last barrier.
#[test]
fn a_recycled_table_is_zeroed_and_published_before_it_is_linked() {
    let m = machine();
    let mut alloc = m.alloc();
    let mut s2 = m.new_stage2(config(39), VM, &mut alloc).unwrap();
    // Map, unmap (the level-2 and level-3 tables go back to the allocator with their leaves)
    // and map again elsewhere: the new tables are the recycled frames.
    for round in 0..3u64 {
        let ipa = Ipa::new(round * GIB);
        s2.map(
            &mut alloc,
            ipa,
            Pa::new(DATA),
            KIB4,
            RW,
            MapFlags::PAGES_ONLY,
        )
        .unwrap();
        s2.unmap(&mut alloc, ipa, KIB4).unwrap();
    }
    assert_eq!(m.get().violations(), &[], "every link came after a barrier");
    // The rule the check enforces: a link right after a store into the table is caught.
    let t = alloc.alloc_table().unwrap();
    let mut mem = m.mem();
    mem.zero_table(t);
    mem.write_pte(Pa::new(DATA), 0, Pte::table(t));
    assert!(matches!(
        m.get().take_violations().as_slice(),
        [Violation::LinkBeforePublish { table, .. }] if *table == t
    ));
    mem.publish_barrier();
    mem.write_pte(Pa::new(DATA), 1, Pte::table(t));
    assert!(m.get().violations().is_empty());
}
