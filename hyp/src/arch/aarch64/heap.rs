//! The hypervisor's heap for metadata (tables of VMs, frame lists, ...): a buddy allocator over a
//! fixed region in .bss, so it exists before anything about RAM is known.

use buddy_system_allocator::LockedHeap;

const HEAP_SIZE: usize = 2 << 20;

#[repr(C, align(4096))]
struct HeapArea([u8; HEAP_SIZE]);

static mut HEAP_AREA: HeapArea = HeapArea([0; HEAP_SIZE]);

#[global_allocator]
static HEAP: LockedHeap<32> = LockedHeap::empty();

/// Hands the heap region to the allocator. Call once, with the MMU on (the allocator's lock
/// uses exclusive accesses, which need cacheable memory on real hardware).
pub fn init() {
    // SAFETY: HEAP_AREA is used nowhere else; `init` runs once on the boot CPU before any
    // allocation, so the region is given to the allocator exactly once.
    unsafe {
        let start = (&raw mut HEAP_AREA) as usize;
        HEAP.lock().init(start, HEAP_SIZE);
    }
}

/// Adds `[start, start + len)` to the heap: metadata that grows with guest memory (the
/// ownership layer's frame table, 8 bytes per frame) outgrows the fixed region.
///
/// # Safety
/// The range must be RAM mapped read-write at EL2, unused, and never used for anything else.
pub unsafe fn grow(start: usize, len: usize) {
    // SAFETY: the caller gives the range to the allocator for good.
    unsafe { HEAP.lock().add_to_heap(start, start + len) };
}

/// (bytes handed out, bytes the heap owns).
pub fn usage() -> (usize, usize) {
    let heap = HEAP.lock();
    (heap.stats_alloc_actual(), heap.stats_total_bytes())
}
