//! The memory core's hardware hooks on aarch64: TLB maintenance under a VM's VMID ([`HwTlb`]),
//! table memory through the EL2 identity map ([`HwPhysMem`]), frame contents for the ownership
//! layer ([`HwFrameData`]), and the stage-2 configuration read from the ID registers.
//!
//! Every table frame and guest frame is RAM the EL2 identity map covers (the boot code maps all
//! of RAM), so a [`Pa`] is also the address to dereference: this file is the one place that
//! turns one into memory.

use super::sysreg::{clean_dcache_range, isb, read_sysreg, write_sysreg};
use crate::mm::addr::{PAGE_SIZE, Pa, Pfn};
use crate::mm::descriptor::{Level, Pte};
use crate::mm::ownership::FrameData;
use crate::mm::phys::PhysMem;
use crate::mm::stage2::config::{ConfigError, CpuFeatures, Stage2Config, Vmid};
use crate::mm::tlb::Tlb;
use core::sync::atomic::{AtomicU64, Ordering};

/// IPA size cap: 40 bits covers QEMU virt's whole map (RAM to 1 TiB) with a level-1 start.
pub const IPA_CAP_BITS: u8 = 40;

/// This CPU's stage-2 parameters (ID_AA64MMFR0/1/2_EL1).
///
/// # Errors
/// The configuration error when the ID registers hold values the core does not know.
pub fn config() -> Result<Stage2Config, ConfigError> {
    let f = CpuFeatures::from_id_regs(
        read_sysreg!("id_aa64mmfr0_el1"),
        read_sysreg!("id_aa64mmfr1_el1"),
        read_sysreg!("id_aa64mmfr2_el1"),
    );
    Stage2Config::from_features(f, IPA_CAP_BITS)
}

/// Most VMs (and so VMIDs) one run creates; VMID `n` is VM `n`'s, never 0.
pub const MAX_VMS: usize = 16;
/// VTTBR_EL2 of each VMID once its VM exists, so TLB maintenance can run under the right VMID
/// with that VM's tables (0 = not yet known: the VMID alone, BADDR 0, is loaded then).
static VTTBR_OF_VMID: [AtomicU64; MAX_VMS + 1] = [const { AtomicU64::new(0) }; MAX_VMS + 1];

/// Records the VTTBR_EL2 value of a VM (its VMID is in bits [63:48]).
pub fn register_vttbr(vttbr: u64) {
    let vmid = (vttbr >> 48) as usize;
    if let Some(slot) = VTTBR_OF_VMID.get(vmid) {
        slot.store(vttbr, Ordering::Release);
    }
}

/// Runs `f` with VTTBR_EL2 holding `vmid`, restoring the previous value afterwards. TLBI by
/// IPA and VMALLS12E1 act on the VMID in VTTBR_EL2 (KVM's `__load_stage2` does the same).
fn with_vmid(vmid: Vmid, f: impl FnOnce()) {
    let prev = read_sysreg!("vttbr_el2");
    let same = (prev >> 48) as u16 == vmid.raw();
    if !same {
        let known = VTTBR_OF_VMID
            .get(usize::from(vmid.raw()))
            .map_or(0, |v| v.load(Ordering::Acquire));
        let vttbr = if known != 0 {
            known
        } else {
            u64::from(vmid.raw()) << 48
        };
        // SAFETY: EL2 runs with interrupts masked and its own accesses never go through
        // stage 2 (it only applies to the EL1&0 regime), so pointing VTTBR_EL2 at another VM
        // for the length of the maintenance changes nothing this CPU executes; the ISB makes
        // the TLBIs below use it.
        unsafe { write_sysreg!("vttbr_el2", vttbr) };
        isb();
    }
    f();
    if !same {
        // SAFETY: restores the value read above (this CPU's own vCPU's VM, or 0).
        unsafe { write_sysreg!("vttbr_el2", prev) };
        isb();
    }
}

/// Stage-2 TLB maintenance by broadcast TLBIs (inner shareable), under the VM's VMID.
#[derive(Clone, Copy, Debug, Default)]
pub struct HwTlb;

/// TLB invalidations issued for guests (both kinds), for the monitor's `stats`.
static TLB_INVALIDATIONS: AtomicU64 = AtomicU64::new(0);

pub fn tlb_invalidations() -> u64 {
    TLB_INVALIDATIONS.load(Ordering::Relaxed)
}

impl Tlb for HwTlb {
    fn invalidate_ipa(&mut self, vmid: Vmid, ipa: crate::mm::addr::Ipa, _level: Level) {
        TLB_INVALIDATIONS.fetch_add(1, Ordering::Relaxed);
        with_vmid(vmid, || {
            // SAFETY: the sequence the `Tlb` contract names: order the entry store, drop the
            // stage-2 entry for the IPA (operand IPA[47:12]), wait, drop combined stage-1
            // entries of this VMID (they may be tagged by VA only), wait, synchronise. It
            // touches no memory the compiler knows about.
            unsafe {
                core::arch::asm!(
                    "dsb ishst",
                    "tlbi ipas2e1is, {page}",
                    "dsb ish",
                    "tlbi vmalle1is",
                    "dsb ish",
                    "isb",
                    page = in(reg) (ipa.raw() >> 12) & 0xf_ffff_ffff,
                    options(nostack, preserves_flags)
                );
            }
        });
    }

    fn invalidate_vmid_all(&mut self, vmid: Vmid) {
        TLB_INVALIDATIONS.fetch_add(1, Ordering::Relaxed);
        with_vmid(vmid, || {
            // SAFETY: as above, dropping every stage-1 and stage-2 entry and walk-cache entry
            // of this VMID on every CPU of the inner-shareable domain.
            unsafe {
                core::arch::asm!(
                    "dsb ishst",
                    "tlbi vmalls12e1is",
                    "dsb ish",
                    "isb",
                    options(nostack, preserves_flags)
                );
            }
        });
    }
}

/// Stage-2 table memory through the EL2 identity map.
#[derive(Clone, Copy, Debug, Default)]
pub struct HwPhysMem;

fn entry_ptr(table: Pa, index: usize) -> *mut u64 {
    debug_assert!(table.is_aligned(PAGE_SIZE));
    (table.raw() as *mut u64).wrapping_add(index)
}

impl PhysMem for HwPhysMem {
    fn read_pte(&self, table: Pa, index: usize) -> Pte {
        // SAFETY: `table` is a table frame the memory core allocated from RAM, which the EL2
        // map covers read/write; `index` is inside its (possibly concatenated) root or table.
        // A volatile aligned 64-bit load is single-copy atomic, as the hardware walker needs.
        Pte::from_raw(unsafe { entry_ptr(table, index).read_volatile() })
    }
    fn write_pte(&mut self, table: Pa, index: usize, pte: Pte) {
        // SAFETY: as in `read_pte`; the core holds the VM's MMU lock, so no other CPU writes
        // this entry, and the walker (inner-shareable, write-back walks per VTCR_EL2) sees
        // the store once the core's DSB before its TLBI or first use completes.
        unsafe { entry_ptr(table, index).write_volatile(pte.raw()) }
    }
    fn zero_table(&mut self, table: Pa) {
        // SAFETY: a whole 4 KiB frame the core just took for a table; nothing walks it yet.
        unsafe { core::ptr::write_bytes(table.raw() as *mut u8, 0, PAGE_SIZE as usize) }
    }
    fn publish_barrier(&mut self) {
        // SAFETY: a barrier only orders this CPU's stores; it touches no memory itself.
        unsafe { core::arch::asm!("dmb ishst", options(nostack, preserves_flags)) }
    }
}

/// Frame contents for the ownership layer: zeroing and copying go to the point of coherency,
/// because a guest with its MMU off reads memory non-cacheable.
#[derive(Clone, Copy, Debug, Default)]
pub struct HwFrameData;

impl FrameData for HwFrameData {
    fn zero_frame(&mut self, pfn: Pfn) {
        let at = pfn.base().raw();
        // SAFETY: the ownership layer calls this only for a frame no guest can reach (it is
        // being freed or handed out fresh) and that lies in RAM, mapped at EL2.
        unsafe { super::memops::zero(at, PAGE_SIZE) };
        clean_dcache_range(at, PAGE_SIZE);
    }
    /// Zeroes a run of frames the first time they are handed out, and cleans them to the point
    /// of coherency: a guest with its MMU off reads memory, not our cache, and must not see what
    /// the frames held before (another VM's data, or the hypervisor's).
    fn zero_frames(&mut self, first: Pfn, count: u64) {
        let (at, len) = (first.base().raw(), count * PAGE_SIZE);
        // SAFETY: the ownership layer zeroes only frames of the pool it owns that no guest can
        // reach (fresh ones, not yet handed out); the pool is RAM mapped read-write at EL2.
        unsafe { super::memops::zero(at, len) };
        clean_dcache_range(at, len);
    }
    fn copy_frame(&mut self, from: Pfn, to: Pfn) {
        let (src, dst) = (from.base().raw(), to.base().raw());
        // SAFETY: two distinct RAM frames; the ownership layer holds its lock and took every
        // guest translation of both away (migrate runs the VM's invalidation first).
        unsafe { super::memops::copy(dst, src, PAGE_SIZE) };
        clean_dcache_range(dst, PAGE_SIZE);
    }
}
