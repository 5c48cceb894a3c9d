//! Unit tests of the VM layer, fault path and dirty log on the simulated machine.

use crate::mm::addr::{Gfn, Ipa, PAGE_SIZE, Pfn};
use crate::mm::bugs::Bugs;
use crate::mm::dirty::DirtyLogError;
use crate::mm::fault::{Access, FaultOutcome};
use crate::mm::ownership::{FrameState, GuestPage, Invalidate, Op, OwnershipError};

use super::harness::{R0, R1, World};

fn r0(page: u64) -> Ipa {
    Ipa::new(R0.0 + page * PAGE_SIZE)
}
fn r1(page: u64) -> Ipa {
    Ipa::new(R1.0 + page * PAGE_SIZE)
}

#[test]
fn fault_maps_a_block_when_backing_and_alignment_allow() {
    let mut w = World::new(2, Bugs::default());
    w.donate_block(r0(0)).unwrap();
    assert_eq!(w.access(0, r0(7), None), Ok(0));
    let t = w.vms[0].translate(r0(7)).expect("mapped");
    assert_eq!(t.leaf.size(), 2 << 20, "one fault maps the whole 2 MiB");
    assert!(
        t.leaf.attrs.perms.writable(),
        "not logging: the guest may write its own page"
    );
    assert_eq!(w.access(1, r0(300), Some(42)), Ok(42));
    assert_eq!(w.access(0, r0(300), None), Ok(42));
    w.check();
}

#[test]
fn fault_populates_pages_where_no_block_fits() {
    let mut w = World::new(2, Bugs::default());
    let free = w.frames.lock().free_frames();
    assert_eq!(w.access(0, r1(3), Some(7)), Ok(7));
    let t = w.vms[0].translate(r1(3)).expect("mapped");
    assert_eq!(t.leaf.size(), PAGE_SIZE);
    assert_eq!(
        w.frames.lock().free_frames(),
        free - 1,
        "one frame populated, no table needed"
    );
    assert_eq!(
        w.vms[0].backing(r1(4)),
        GuestPage::NoPage,
        "neighbours stay unbacked"
    );
    w.check();
}

#[test]
fn fault_outcomes_outside_memory_and_read_only_share() {
    let mut w = World::new(1, Bugs::default());
    let out = w.vms[0].handle_fault(&w.frames, &mut w.data, Ipa::new(0x1000), Access::Read);
    assert_eq!(out, Ok(FaultOutcome::OutsideGuestMemory));
    let pfn = w.frames.lock().hyp_alloc(&mut w.data).unwrap();
    w.vms[0]
        .share(&w.frames, pfn.base(), r1(0), PAGE_SIZE, false)
        .unwrap();
    assert_eq!(
        w.access(0, r1(0), Some(1)),
        Err(FaultOutcome::PermissionDenied)
    );
    assert_eq!(w.access(0, r1(0), None), Ok(0));
    assert!(
        !w.vms[0]
            .translate(r1(0))
            .unwrap()
            .leaf
            .attrs
            .perms
            .writable()
    );
    w.check();
    w.vms[0]
        .unshare(&w.frames, &mut w.data, r1(0), PAGE_SIZE)
        .unwrap();
    assert!(
        w.vms[0].translate(r1(0)).is_none(),
        "unshare removes the translation"
    );
    assert_eq!(
        w.frames.lock().state(pfn),
        Some(FrameState::Owned(crate::mm::ownership::Owner::Hyp))
    );
    w.check();
}

#[test]
fn fault_retries_when_an_invalidation_ran_between_lookup_and_install() {
    let mut w = World::new(2, Bugs::default());
    assert_eq!(w.access(0, r1(1), Some(5)), Ok(5));
    w.vms[0]
        .unmap_range(&w.frames, &mut w.data, r1(1), PAGE_SIZE)
        .unwrap();
    let l = w.vms[0]
        .fault_lookup(&w.frames, &mut w.data, r1(1), Access::Write)
        .unwrap()
        .unwrap();
    // Another CPU reclaims the page before this one takes the MMU lock.
    w.vms[0]
        .reclaim(&w.frames, &mut w.data, r1(1), PAGE_SIZE)
        .unwrap();
    assert_eq!(w.vms[0].fault_install(l), Ok(FaultOutcome::Retry));
    assert!(
        w.vms[0].translate(r1(1)).is_none(),
        "nothing installed for the stale frame"
    );
    w.check();
    assert_eq!(
        w.access(0, r1(1), None),
        Ok(0),
        "the page comes back zeroed"
    );
    w.check();
}

#[test]
fn fault_retries_while_an_invalidation_is_in_progress() {
    let w = World::new(1, Bugs::default());
    let g = Gfn::containing(r1(2));
    let seq = w.vms[0].invalidate_seq();
    w.vms[0].notifier().begin(g, 1);
    assert!(w.vms[0].invalidate_seq() > seq);
    let out = w.vms[0].handle_fault(&w.frames, &mut SimDataRef(&w), r1(2), Access::Read);
    assert_eq!(out, Ok(FaultOutcome::Retry));
    assert!(w.vms[0].translate(r1(2)).is_none());
    w.vms[0].notifier().end(g, 1);
    let out = w.vms[0].handle_fault(&w.frames, &mut SimDataRef(&w), r1(2), Access::Read);
    assert!(
        matches!(
            out,
            Ok(FaultOutcome::Mapped {
                writable: true,
                block: false,
                ..
            })
        ),
        "{out:?}"
    );
    w.check();
}

/// Frame data through a shared borrow of the world (the machine is reference-counted).
struct SimDataRef<'a>(&'a World);
impl crate::mm::ownership::FrameData for SimDataRef<'_> {
    fn zero_frame(&mut self, pfn: Pfn) {
        super::harness::SimData {
            machine: self.0.machine.clone(),
            check_freed: true,
        }
        .zero_frame(pfn)
    }
    fn copy_frame(&mut self, from: Pfn, to: Pfn) {
        super::harness::SimData {
            machine: self.0.machine.clone(),
            check_freed: true,
        }
        .copy_frame(from, to)
    }
}

#[test]
fn reclaim_and_migrate_go_through_invalidation_and_respect_pins() {
    let mut w = World::new(2, Bugs::default());
    w.donate_block(r0(512)).unwrap();
    assert_eq!(w.access(0, r0(600), Some(0xabc)), Ok(0xabc));
    assert_eq!(w.access(1, r0(601), Some(0xdef)), Ok(0xdef));
    let old = w.vms[0].backing(r0(600)).pfn().unwrap();
    w.vms[0].pin(&w.frames, r0(600)).unwrap();
    let e = w.vms[0]
        .migrate(&w.frames, &mut w.data, r0(600))
        .unwrap_err();
    assert!(matches!(
        e,
        OwnershipError::Pinned {
            op: Op::Migrate,
            ..
        }
    ));
    let e = w.vms[0]
        .reclaim(&w.frames, &mut w.data, r0(600), PAGE_SIZE)
        .unwrap_err();
    assert!(matches!(
        e,
        OwnershipError::Pinned {
            op: Op::Reclaim,
            ..
        }
    ));
    assert_eq!(
        w.vms[0].backing(r0(600)).pfn(),
        Some(old),
        "a pinned frame never moves"
    );
    w.vms[0].unpin(&w.frames, r0(600)).unwrap();
    let new = w.vms[0].migrate(&w.frames, &mut w.data, r0(600)).unwrap();
    assert_ne!(Pfn::containing(new), old);
    assert_eq!(w.frames.lock().state(old), Some(FrameState::Free));
    w.check();
    assert_eq!(
        w.access(1, r0(600), None),
        Ok(0xabc),
        "contents moved with the page"
    );
    assert_eq!(
        w.vms[0].translate(r0(600)).unwrap().leaf.size(),
        PAGE_SIZE,
        "block split around it"
    );
    assert_eq!(w.access(0, r0(601), None), Ok(0xdef));
    w.vms[0]
        .reclaim(&w.frames, &mut w.data, r0(601), PAGE_SIZE)
        .unwrap();
    assert_eq!(
        w.access(0, r0(601), None),
        Ok(0),
        "a reclaimed page comes back zeroed"
    );
    w.check();
}

#[test]
fn dirty_log_enable_harvest_disable() {
    let mut w = World::new(2, Bugs::default());
    w.donate_block(r0(0)).unwrap();
    assert_eq!(w.access(0, r0(1), Some(1)), Ok(1));
    w.vms[0]
        .enable_dirty_log(&w.frames, &mut w.data, 0)
        .unwrap();
    assert_eq!(
        w.vms[0].enable_dirty_log(&w.frames, &mut w.data, 0),
        Err(DirtyLogError::AlreadyLogging { region: 0 })
    );
    let t = w.vms[0].translate(r0(1)).unwrap();
    assert_eq!(
        t.leaf.size(),
        2 << 20,
        "enabling keeps the block (split lazily)"
    );
    assert!(!t.leaf.attrs.perms.writable());
    let mut out = [0u64; 16];
    assert_eq!(
        w.vms[0].harvest_dirty_log(0, &mut out),
        Ok(1024),
        "initially every page is dirty"
    );
    assert!(out.iter().all(|&x| x == u64::MAX));
    w.check();
    assert_eq!(w.access(1, r0(3), Some(3)), Ok(3));
    let t = w.vms[0].translate(r0(3)).unwrap();
    assert_eq!(
        (t.leaf.size(), t.leaf.attrs.perms.writable()),
        (PAGE_SIZE, true)
    );
    assert!(
        !w.vms[0]
            .translate(r0(4))
            .unwrap()
            .leaf
            .attrs
            .perms
            .writable()
    );
    assert_eq!(w.access(0, r0(4), None), Ok(0), "reads do not dirty");
    w.check();
    let mut out = [0u64; 16];
    assert_eq!(w.vms[0].harvest_dirty_log(0, &mut out), Ok(1));
    assert_eq!(out[0], 1 << 3);
    assert!(
        !w.vms[0]
            .translate(r0(3))
            .unwrap()
            .leaf
            .attrs
            .perms
            .writable(),
        "harvest protects"
    );
    let mut out = [0u64; 16];
    assert_eq!(w.vms[0].harvest_dirty_log(0, &mut out), Ok(0));
    assert_eq!(
        w.vms[0].harvest_dirty_log(0, &mut [0; 2]),
        Err(DirtyLogError::BitmapTooSmall {
            words: 2,
            needed: 16
        })
    );
    w.check();
    w.vms[0]
        .disable_dirty_log(&w.frames, &mut w.data, 0)
        .unwrap();
    let t = w.vms[0].translate(r0(3)).unwrap();
    assert_eq!(
        (t.leaf.size(), t.leaf.attrs.perms.writable()),
        (2 << 20, true),
        "block restored"
    );
    assert_eq!(
        w.vms[0].harvest_dirty_log(0, &mut out),
        Err(DirtyLogError::NotLogging { region: 0 })
    );
    w.check();
}

#[test]
fn pages_only_region_is_restored_writable_on_disable() {
    let mut w = World::new(1, Bugs::default());
    assert_eq!(w.access(0, r1(0), Some(9)), Ok(9));
    w.vms[0]
        .enable_dirty_log(&w.frames, &mut w.data, 1)
        .unwrap();
    assert!(
        !w.vms[0]
            .translate(r1(0))
            .unwrap()
            .leaf
            .attrs
            .perms
            .writable()
    );
    w.vms[0]
        .disable_dirty_log(&w.frames, &mut w.data, 1)
        .unwrap();
    assert!(
        w.vms[0]
            .translate(r1(0))
            .unwrap()
            .leaf
            .attrs
            .perms
            .writable()
    );
    w.check();
}

#[test]
fn no_table_frame_leaks_and_destroy_returns_every_frame() {
    let mut w = World::new(2, Bugs::default());
    let total = w.frames.lock().frames();
    w.donate_block(r0(0)).unwrap();
    for p in [0, 5, 700, 1023] {
        w.access(0, r0(p), Some(p)).unwrap();
    }
    for p in 0..16 {
        w.access(1, r1(p), Some(p)).unwrap();
    }
    w.vms[0]
        .split_range(&w.frames, &mut w.data, r0(0), 2 << 20)
        .unwrap();
    w.vms[0].migrate(&w.frames, &mut w.data, r0(5)).unwrap();
    assert!(w.vms[0].table_pages() > w.root_tables);
    w.vms[0]
        .unmap_range(&w.frames, &mut w.data, Ipa::new(R0.0), R0.1)
        .unwrap();
    w.vms[0]
        .unmap_range(&w.frames, &mut w.data, Ipa::new(R1.0), R1.1)
        .unwrap();
    assert_eq!(
        w.vms[0].table_pages(),
        w.root_tables,
        "every table freed after unmapping all"
    );
    w.check();
    let World {
        machine,
        frames,
        mut data,
        mut vms,
        ..
    } = w;
    vms.remove(0)
        .destroy(&frames, &mut data)
        .map_err(|(_, e)| e)
        .unwrap();
    assert_eq!(
        frames.lock().free_frames(),
        total,
        "every frame back on the free list"
    );
    assert!(machine.get().take_violations().is_empty());
}

/// Issue 12, bug 1: faults whose lookups all ran before any install (many vCPUs writing at
/// once) drain the table cache that each lookup saw full; an install that then finds too few
/// table frames must retry (its next lookup refills from the pool), never fail while the pool
/// still has frames.
#[test]
fn install_retries_when_other_faults_drained_the_table_cache() {
    use crate::mm::phys::TableAlloc;
    let mut w = World::new(2, Bugs::default());
    w.donate_block(r0(0)).unwrap();
    assert_eq!(w.access(0, r0(1), Some(1)), Ok(1));
    w.vms[0]
        .enable_dirty_log(&w.frames, &mut w.data, 0)
        .unwrap();
    // The write splits the block: it needs a table frame at install.
    let l = w.vms[0]
        .fault_lookup(&w.frames, &mut w.data, r0(2), Access::Write)
        .unwrap()
        .unwrap();
    // Other vCPUs' installs, between this lookup and this install, take every cached frame.
    let mut taken = Vec::new();
    while let Some(t) = w.vms[0].table_alloc().alloc_table() {
        taken.push(t);
    }
    assert!(!taken.is_empty());
    assert_eq!(w.vms[0].fault_install(l), Ok(FaultOutcome::Retry));
    assert_eq!(
        w.access(0, r0(2), Some(2)),
        Ok(2),
        "the retried fault refills the cache and maps"
    );
    for t in taken {
        w.vms[0].table_alloc().free_table(t);
    }
    w.check();
}

/// A first touch of a whole untouched block backs it with one aligned run, in one transition:
/// a block with a page already backed, or one that does not fit in a region, allocates
/// nothing.
#[test]
fn populate_block_backs_an_untouched_block_with_one_aligned_run() {
    let mut w = World::new(1, Bugs::default());
    let free = w.frames.lock().free_frames();
    let run = w.vms[0]
        .populate_block(&w.frames, &mut w.data, r0(700))
        .unwrap();
    assert_eq!(run.raw() % 512, 0, "the run is 2 MiB aligned");
    assert_eq!(w.frames.lock().free_frames(), free - 512);
    for p in [512, 700, 1023] {
        assert_eq!(
            w.vms[0].backing(r0(p)),
            GuestPage::Owned(Pfn::new(run.raw() + p - 512))
        );
    }
    assert_eq!(
        w.vms[0].backing(r0(0)),
        GuestPage::NoPage,
        "the other block untouched"
    );
    assert_eq!(w.access(0, r0(600), Some(9)), Ok(9));
    let t = w.vms[0].translate(r0(600)).expect("mapped");
    assert_eq!(
        t.leaf.size(),
        2 << 20,
        "the fault maps the block with one entry"
    );
    // The same block again, a block with one page populated, a region too small for one.
    assert!(matches!(
        w.vms[0].populate_block(&w.frames, &mut w.data, r0(513)),
        Err(OwnershipError::WrongGuestState { .. })
    ));
    assert_eq!(w.access(0, r0(3), Some(1)), Ok(1));
    let free = w.frames.lock().free_frames();
    assert!(matches!(
        w.vms[0].populate_block(&w.frames, &mut w.data, r0(0)),
        Err(OwnershipError::WrongGuestState { .. })
    ));
    assert!(matches!(
        w.vms[0].populate_block(&w.frames, &mut w.data, r1(0)),
        Err(OwnershipError::NotGuestMemory { .. })
    ));
    assert_eq!(
        w.frames.lock().free_frames(),
        free,
        "refusals allocate nothing"
    );
    w.check();
}

/// Reset gives back every page: an owned block in one transition, single pages, a share; a
/// pinned page stops it with an error.
#[test]
fn release_all_gives_back_blocks_pages_and_shares() {
    let mut w = World::new(1, Bugs::default());
    let free = w.frames.lock().free_frames();
    let tables = |w: &World| (w.vms[0].table_pages() + w.vms[0].cached_tables()) as u64;
    let tables0 = tables(&w);
    w.vms[0]
        .populate_block(&w.frames, &mut w.data, r0(0))
        .unwrap();
    assert_eq!(w.access(0, r0(600), Some(5)), Ok(5));
    assert_eq!(w.access(0, r1(3), Some(6)), Ok(6));
    let shared = w.frames.lock().hyp_alloc(&mut w.data).unwrap();
    w.vms[0]
        .share(&w.frames, shared.base(), r1(5), PAGE_SIZE, true)
        .unwrap();
    w.vms[0].pin(&w.frames, r1(3)).unwrap();
    assert!(matches!(
        w.vms[0].release_all(&w.frames, &mut w.data),
        Err(OwnershipError::Pinned { .. })
    ));
    w.vms[0].unpin(&w.frames, r1(3)).unwrap();
    w.vms[0].release_all(&w.frames, &mut w.data).unwrap();
    assert_eq!(
        w.vms[0].backing.lock().backed().count(),
        0,
        "nothing backed"
    );
    w.frames.lock().hyp_free(shared, &mut w.data).unwrap();
    assert_eq!(
        w.frames.lock().free_frames() + tables(&w) - tables0,
        free,
        "every guest frame is back"
    );
    w.check();
}
