//! silent: a guest that dies before it prints anything is not left to hang silently: the
//! hypervisor logs what it could not handle as an ERROR, naming the exception.
//!
//! Before its first console byte, loads from an address with neither RAM nor a device (the
//! first 1 GiB boundary above RAM, as `abort` does). The hypervisor injects an external abort
//! and, since the guest has printed nothing yet, must log the fault at ERROR level (the .test
//! expects the line); the guest's hook steps over the abort, and only then does it print.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};

use test_guests::exceptions::{self, Frame, Syndrome, ec};
use test_guests::fdt::Fdt;
use test_guests::{check, println, report};

test_guests::test_main!(main);

const GIB: u64 = 1 << 30;

static TAKEN_ESR: AtomicU64 = AtomicU64::new(0);

fn on_sync(frame: &mut Frame, s: Syndrome) -> bool {
    if s.class() != ec::DATA_ABORT_SAME_EL {
        return false;
    }
    TAKEN_ESR.store(s.esr, Ordering::Relaxed);
    frame.elr += 4;
    true
}

fn main() -> ! {
    // Nothing may be printed before the access: that is what the test is about.
    let Ok(ram) = Fdt::at(test_guests::boot_dtb()).and_then(|f| f.memory()) else {
        report::error(format_args!("cannot find RAM in the boot DTB"))
    };
    let target = ram.end.div_ceil(GIB) * GIB;
    exceptions::set_sync_hook(Some(on_sync));
    // SAFETY: nothing is mapped at `target`: the load faults, the hook resumes after it, and
    // the loaded value is discarded.
    unsafe {
        core::arch::asm!("ldr {v}, [{a}]", v = out(reg) _, a = in(reg) target, options(nostack));
    }
    exceptions::set_sync_hook(None);
    let esr = TAKEN_ESR.load(Ordering::Relaxed);
    println!("silent: the load of {target:#x} came back with ESR_EL1 {esr:#x}");
    check!(
        esr != 0,
        "the load of {target:#x} completed without an abort"
    );
    report::success()
}
