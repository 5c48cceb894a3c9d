//! hvc: the HVC round trip (SMCCC, Arm DEN 0028).
//!
//! Checks that `hvc #0` returns to the next instruction with SMCCC_VERSION >= 1.1 (or, if
//! PSCI_FEATURES says SMCCC_VERSION is absent, NOT_SUPPORTED, which means SMCCC 1.0 as QEMU's
//! built-in PSCI has, and the line `SMCCC 1.0 only` that the hypervisor's test forbids), that
//! PSCI_VERSION is 1.0 or later, and, for SMCCC >= 1.1, that x4-x17 survive the call as the
//! specification requires. A failure points at the hypervisor's HVC exit path: the function-ID
//! decode, the return value written to the wrong register, or GPRs not restored on return.
#![no_std]
#![no_main]

use test_guests::psci::{self, id};
use test_guests::{check, println, report};

test_guests::test_main!(main);

const SMCCC_1_1: u64 = 0x1_0001;
const PSCI_1_0: u64 = 0x1_0000;
const NOT_SUPPORTED: u64 = u64::MAX;

fn main() -> ! {
    let psci_version = psci::psci_version();
    println!(
        "hvc: PSCI_VERSION = {}.{}",
        psci_version >> 16,
        psci_version & 0xffff
    );
    check!(
        psci_version >= PSCI_1_0 && psci_version >> 32 == 0,
        "PSCI_VERSION returned {psci_version:#x}, want 1.0 (0x10000) or later"
    );

    let smccc_version = psci::hvc(id::SMCCC_VERSION, 0, 0, 0);
    let advertised = psci::features(id::SMCCC_VERSION);
    println!(
        "hvc: SMCCC_VERSION = {smccc_version:#x}, PSCI_FEATURES(SMCCC_VERSION) = {advertised:?}"
    );
    if advertised.is_err() {
        // SMCCC 1.0 callers must not call SMCCC_VERSION; a 1.0 implementation may say so.
        check!(
            smccc_version == NOT_SUPPORTED,
            "SMCCC_VERSION returned {smccc_version:#x} though PSCI_FEATURES says it is absent"
        );
        // QEMU's own PSCI (no hypervisor) is here; the hypervisor's tests forbid this line.
        println!("hvc: SMCCC 1.0 only: x4-x17 preservation not required, not checked");
        report::success();
    }
    check!(
        smccc_version >= SMCCC_1_1 && smccc_version >> 31 == 0,
        "SMCCC_VERSION returned {smccc_version:#x}, want 1.1 (0x10001) or later"
    );

    check_preserved();
    report::success()
}

/// SMCCC 1.1 (and 1.2 for calls without results there): the callee preserves x4-x17.
fn check_preserved() {
    let seed = 0x5a5a_0000_0000_0000u64;
    let want: [u64; 14] = core::array::from_fn(|i| seed | ((i as u64 + 4) << 8) | 0xa5);
    let mut got = want;
    // SAFETY: an SMCCC 1.1 call changes no memory; x0-x3 are declared clobbered and x4-x17 are
    // in/out operands, so the compiler assumes nothing about them either way.
    unsafe {
        core::arch::asm!(
            "hvc #0",
            inlateout("x0") u64::from(id::SMCCC_VERSION) => _,
            lateout("x1") _, lateout("x2") _, lateout("x3") _,
            inout("x4") got[0], inout("x5") got[1], inout("x6") got[2], inout("x7") got[3],
            inout("x8") got[4], inout("x9") got[5], inout("x10") got[6], inout("x11") got[7],
            inout("x12") got[8], inout("x13") got[9], inout("x14") got[10],
            inout("x15") got[11], inout("x16") got[12], inout("x17") got[13],
            options(nostack),
        );
    }
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        check!(
            *g == w,
            "x{} changed across HVC SMCCC_VERSION: {w:#x} -> {g:#x}",
            i + 4
        );
    }
    println!("hvc: x4-x17 preserved across the call");
}
