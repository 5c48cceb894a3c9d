//! Bulk zeroing and copying of guest RAM: the work of creating a VM (copying its kernel,
//! zeroing the blocks around it) and of every first touch of a 2 MiB block. The generic
//! `memset`/`memcpy` move 8 bytes per loop trip; here a cache line goes per `DC ZVA`, and a
//! copy moves 64 bytes per trip, which under QEMU's instruction counting (`-icount`) is the
//! difference between a fraction of a second and a few milliseconds of boot time.

use super::sysreg::read_sysreg;

/// Bytes `DC ZVA` zeroes, or `None` when it is prohibited (DCZID_EL0.DZP).
fn zva_block() -> Option<usize> {
    let dczid = read_sysreg!("dczid_el0");
    (dczid & (1 << 4) == 0).then(|| 4usize << (dczid & 0xf))
}

/// Zeroes `[at, at + len)`.
///
/// # Safety
/// The range must be RAM mapped writable (Normal memory: `DC ZVA` faults on Device memory) at
/// EL2 and not in use by anything else.
pub unsafe fn zero(at: u64, len: u64) {
    let (mut p, end) = (at as usize, (at + len) as usize);
    if let Some(block) = zva_block() {
        // Bytes before the first block boundary and after the last go the generic way.
        let first = p.next_multiple_of(block).min(end);
        // SAFETY: inside the caller's range.
        unsafe { core::ptr::write_bytes(p as *mut u8, 0, first - p) };
        p = first;
        while p + block <= end {
            // SAFETY: `p` is block-aligned and the whole block lies in the caller's range.
            unsafe { core::arch::asm!("dc zva, {}", in(reg) p, options(nostack, preserves_flags)) };
            p += block;
        }
    }
    // SAFETY: inside the caller's range.
    unsafe { core::ptr::write_bytes(p as *mut u8, 0, end - p) };
}

/// Copies `len` bytes from `src` to `dst`.
///
/// # Safety
/// Both ranges must be mapped (source readable, destination writable), not overlap, and the
/// destination must not be in use by anything else.
pub unsafe fn copy(dst: u64, src: u64, len: u64) {
    let (mut d, mut s, mut n) = (dst as usize, src as usize, len as usize);
    if d % 16 == s % 16 && n >= 64 {
        let head = d.next_multiple_of(16) - d;
        // SAFETY: inside both ranges (`head` < 16 <= `n`).
        unsafe { core::ptr::copy_nonoverlapping(s as *const u8, d as *mut u8, head) };
        (d, s, n) = (d + head, s + head, n - head);
        let chunks = n / 64;
        if chunks > 0 {
            // SAFETY: `chunks * 64` bytes from 16-byte aligned `s` and `d`, inside both ranges;
            // the registers named are clobbered and declared.
            unsafe {
                core::arch::asm!(
                    "2:",
                    "ldp {a}, {b}, [{s}]",
                    "ldp {c}, {e}, [{s}, #16]",
                    "stp {a}, {b}, [{d}]",
                    "stp {c}, {e}, [{d}, #16]",
                    "ldp {a}, {b}, [{s}, #32]",
                    "ldp {c}, {e}, [{s}, #48]",
                    "stp {a}, {b}, [{d}, #32]",
                    "stp {c}, {e}, [{d}, #48]",
                    "add {s}, {s}, #64",
                    "add {d}, {d}, #64",
                    "subs {k}, {k}, #1",
                    "b.ne 2b",
                    s = inout(reg) s,
                    d = inout(reg) d,
                    k = inout(reg) chunks => _,
                    a = out(reg) _, b = out(reg) _, c = out(reg) _, e = out(reg) _,
                    options(nostack),
                );
            }
            n -= chunks * 64;
        }
    }
    // SAFETY: what is left lies inside both ranges.
    unsafe { core::ptr::copy_nonoverlapping(s as *const u8, d as *mut u8, n) };
}
