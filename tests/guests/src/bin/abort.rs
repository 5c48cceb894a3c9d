//! abort: an access to an address with neither RAM nor a device behind it comes back to the
//! guest as a synchronous external abort, and the guest can carry on.
//!
//! Installs a sync hook, then loads from and stores to the first 1 GiB boundary above the end
//! of RAM (from the DTB; nothing is there on QEMU virt below 256 GiB, and the hypervisor maps
//! nothing there), twice each. Each access must be taken as a Data Abort from the same EL
//! (ESR_EL1.EC 0x25) with DFSC 0x10 (synchronous external abort), the right WnR, FAR_EL1 = the
//! address when FnV is clear, and ELR_EL1 = the faulting instruction. The hook steps over it.
//! A failure points at the hypervisor's abort injection (ESR/FAR/ELR/SPSR it builds, the vector
//! it enters) or at it treating the access as something else (a hang or hypervisor panic
//! means it did not inject at all). Natively, run QEMU with -m equal to the VM's memory.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};

use test_guests::exceptions::{self, Frame, Syndrome, ec};
use test_guests::fdt::Fdt;
use test_guests::{check, println, report};

test_guests::test_main!(main);

const GIB: u64 = 1 << 30;
const DFSC_SYNC_EXTERNAL: u64 = 0x10;
const ISS_WNR: u64 = 1 << 6;
const ISS_FNV: u64 = 1 << 10;

static TAKEN_ESR: AtomicU64 = AtomicU64::new(0);
static TAKEN_FAR: AtomicU64 = AtomicU64::new(0);
static TAKEN_ELR: AtomicU64 = AtomicU64::new(0);

fn on_sync(frame: &mut Frame, s: Syndrome) -> bool {
    if s.class() != ec::DATA_ABORT_SAME_EL || TAKEN_ESR.load(Ordering::Relaxed) != 0 {
        return false;
    }
    TAKEN_ESR.store(s.esr, Ordering::Relaxed);
    TAKEN_FAR.store(s.far, Ordering::Relaxed);
    TAKEN_ELR.store(frame.elr, Ordering::Relaxed);
    frame.elr += 4;
    true
}

#[derive(Clone, Copy, Debug)]
enum Access {
    Load,
    Store,
}

/// Performs the access and returns the address of the accessing instruction.
fn access(addr: u64, kind: Access) -> u64 {
    let pc: u64;
    match kind {
        // SAFETY: `addr` is device-mapped with nothing behind it: the access faults and the
        // hook resumes after it; the loaded value is discarded and no memory changes.
        Access::Load => unsafe {
            core::arch::asm!("adr {pc}, 2f", "2: ldr {v}, [{a}]",
                pc = out(reg) pc, v = out(reg) _, a = in(reg) addr, options(nostack));
        },
        // SAFETY: as for the load; nothing is there to be written.
        Access::Store => unsafe {
            core::arch::asm!("adr {pc}, 2f", "2: str {v}, [{a}]",
                pc = out(reg) pc, v = in(reg) 0x5a5au64, a = in(reg) addr, options(nostack));
        },
    }
    pc
}

fn main() -> ! {
    let ram = match Fdt::at(test_guests::boot_dtb()).and_then(|f| f.memory()) {
        Ok(r) => r,
        Err(e) => report::error(format_args!("cannot find RAM in the boot DTB: {e:?}")),
    };
    let target = ram.end.div_ceil(GIB) * GIB;
    println!(
        "abort: RAM {:#x}..{:#x}; probing {target:#x}",
        ram.start, ram.end
    );
    exceptions::set_sync_hook(Some(on_sync));

    for (round, kind) in [Access::Load, Access::Store, Access::Load, Access::Store]
        .into_iter()
        .enumerate()
    {
        TAKEN_ESR.store(0, Ordering::Relaxed);
        let pc = access(target, kind);
        let esr = TAKEN_ESR.load(Ordering::Relaxed);
        let s = Syndrome {
            esr,
            far: TAKEN_FAR.load(Ordering::Relaxed),
        };
        let elr = TAKEN_ELR.load(Ordering::Relaxed);
        check!(
            esr != 0,
            "{kind:?} {round} of {target:#x} completed without an abort"
        );
        check!(
            s.class() == ec::DATA_ABORT_SAME_EL,
            "{kind:?} {round}: ESR_EL1 {esr:#x} has EC {:#x}, want 0x25 (data abort, same EL)",
            s.class()
        );
        let dfsc = s.iss() & 0x3f;
        check!(
            dfsc == DFSC_SYNC_EXTERNAL,
            "{kind:?} {round}: ESR_EL1 {esr:#x} has DFSC {dfsc:#x}, want 0x10 (synchronous external abort)"
        );
        let write = s.iss() & ISS_WNR != 0;
        check!(
            write == matches!(kind, Access::Store),
            "{kind:?} {round}: ESR_EL1 {esr:#x} has WnR = {write}"
        );
        check!(
            s.iss() & ISS_FNV != 0 || s.far == target,
            "{kind:?} {round}: FAR_EL1 {:#x}, want {target:#x}",
            s.far
        );
        check!(
            elr == pc,
            "{kind:?} {round}: ELR_EL1 {elr:#x}, want the access at {pc:#x}"
        );
        println!(
            "abort: {kind:?} {round}: ESR_EL1 {esr:#x}, FAR_EL1 {:#x}",
            s.far
        );
    }
    exceptions::set_sync_hook(None);
    report::success()
}
