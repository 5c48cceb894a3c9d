//! smccc: SMCCC calls nobody implements return NOT_SUPPORTED, over HVC and over SMC.
//!
//! Makes fast calls with unknown function IDs in several owner ranges (Arm architecture, SiP,
//! standard secure/PSCI, standard and vendor hypervisor) in both the SMC32 and SMC64
//! conventions. Each must come back to the next instruction with NOT_SUPPORTED: -1 in w0 for
//! SMC32 IDs, in x0 for SMC64 IDs. SMC is tried too: under the hypervisor it is trapped and
//! answered like HVC; on bare QEMU without EL3 it is UNDEFINED, which the test observes,
//! reports with the line `SMC #0 took an UNDEF`, and then skips the SMC half (the hypervisor's
//! test forbids that line). A failure points at the hypervisor's SMCCC dispatch: an unknown ID
//! treated as a known one, an injected UNDEF instead of a return, or a bad return value.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicBool, Ordering};

use test_guests::exceptions::{self, Frame, Syndrome, ec};
use test_guests::{check, println, psci, report};

test_guests::test_main!(main);

/// Function IDs no specification gives a meaning to (the general service queries at
/// 0xFF00..0xFFFF of each SMC32 range are avoided: an implementation may answer those).
const UNKNOWN_IDS: [u32; 8] = [
    0x8000_00ff, // Arm architecture service, SMC32
    0x8200_7f00, // SiP, SMC32
    0xc200_ff00, // SiP, SMC64
    0x8400_00ff, // standard secure (PSCI range), SMC32
    0xc400_00ff, // standard secure, SMC64
    0x8500_00ff, // standard hypervisor, SMC32
    0x8600_0000, // vendor-specific hypervisor, SMC32
    0xc600_00ff, // vendor-specific hypervisor, SMC64
];

static SMC_UNDEFINED: AtomicBool = AtomicBool::new(false);

/// Steps over an UNDEFINED `smc` and notes it.
fn on_sync(frame: &mut Frame, s: Syndrome) -> bool {
    if s.class() != ec::UNKNOWN {
        return false;
    }
    // The only instructions in this test that may be UNDEFINED are the SMCs.
    SMC_UNDEFINED.store(true, Ordering::Relaxed);
    frame.elr += 4;
    true
}

fn not_supported(fid: u32, x0: u64) -> bool {
    if fid & 0x4000_0000 != 0 {
        x0 == u64::MAX
    } else {
        x0 as u32 == u32::MAX
    }
}

fn main() -> ! {
    for fid in UNKNOWN_IDS {
        let x0 = psci::hvc(fid, 1, 2, 3);
        check!(
            not_supported(fid, x0),
            "HVC with unknown function ID {fid:#x} returned {x0:#x}, want NOT_SUPPORTED (-1)"
        );
    }
    println!(
        "smccc: {} unknown IDs over HVC returned NOT_SUPPORTED",
        UNKNOWN_IDS.len()
    );

    exceptions::set_sync_hook(Some(on_sync));
    for fid in UNKNOWN_IDS {
        let x0 = psci::smc(fid, 1, 2, 3);
        if SMC_UNDEFINED.load(Ordering::Relaxed) {
            println!("smccc: SMC #0 took an UNDEF exception (no EL3 here); SMC checks skipped");
            break;
        }
        check!(
            not_supported(fid, x0),
            "SMC with unknown function ID {fid:#x} returned {x0:#x}, want NOT_SUPPORTED (-1)"
        );
    }
    exceptions::set_sync_hook(None);
    if !SMC_UNDEFINED.load(Ordering::Relaxed) {
        println!(
            "smccc: {} unknown IDs over SMC returned NOT_SUPPORTED",
            UNKNOWN_IDS.len()
        );
        // PSCI itself over SMC: the conduit list includes it.
        let v = psci::smc(psci::id::PSCI_VERSION, 0, 0, 0);
        check!(
            v >= 0x1_0000 && v >> 32 == 0,
            "PSCI_VERSION over SMC returned {v:#x}"
        );
    }
    report::success()
}
