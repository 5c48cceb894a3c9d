//! PSCI calls (CPU_ON, CPU_OFF, SYSTEM_OFF) through the conduit the DTB names.

use crate::platform::PsciMethod;
use core::sync::atomic::{AtomicU8, Ordering};

const PSCI_VERSION: u32 = 0x8400_0000;
const CPU_OFF: u32 = 0x8400_0002;
const CPU_ON_64: u32 = 0xC400_0003;
const SYSTEM_OFF: u32 = 0x8400_0008;

/// The conduit in use: 0 = SMC, 1 = HVC. SMC until the DTB says otherwise.
static CONDUIT: AtomicU8 = AtomicU8::new(0);

/// Selects the conduit. At EL2 an HVC would trap to ourselves, so firmware must be reached with
/// SMC there whatever the DTB says; returns false when the DTB's choice was overridden.
pub fn set_conduit(method: PsciMethod, el: u8) -> bool {
    let hvc = method == PsciMethod::Hvc && el < 2;
    CONDUIT.store(u8::from(hvc), Ordering::Relaxed);
    method != PsciMethod::Hvc || hvc
}

fn call(function: u32, a1: u64, a2: u64, a3: u64) -> i64 {
    let mut x0 = u64::from(function);
    if CONDUIT.load(Ordering::Relaxed) == 1 {
        // SAFETY: an SMCCC call to the hypervisor/firmware; it clobbers at most x0-x17 per
        // SMCCC 1.1 (declared), and reads/writes no memory of ours.
        unsafe {
            core::arch::asm!("hvc #0", inout("x0") x0, inout("x1") a1 => _,
                inout("x2") a2 => _, inout("x3") a3 => _, out("x4") _, out("x5") _,
                out("x6") _, out("x7") _, out("x8") _, out("x9") _, out("x10") _, out("x11") _,
                out("x12") _, out("x13") _, out("x14") _, out("x15") _, out("x16") _,
                out("x17") _, options(nostack));
        }
    } else {
        // SAFETY: as above, to EL3 firmware (or QEMU's PSCI emulation).
        unsafe {
            core::arch::asm!("smc #0", inout("x0") x0, inout("x1") a1 => _,
                inout("x2") a2 => _, inout("x3") a3 => _, out("x4") _, out("x5") _,
                out("x6") _, out("x7") _, out("x8") _, out("x9") _, out("x10") _, out("x11") _,
                out("x12") _, out("x13") _, out("x14") _, out("x15") _, out("x16") _,
                out("x17") _, options(nostack));
        }
    }
    x0 as i64
}

/// A PSCI return code other than SUCCESS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PsciError(pub i64);

impl core::fmt::Display for PsciError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let name = match self.0 {
            -1 => "NOT_SUPPORTED",
            -2 => "INVALID_PARAMETERS",
            -3 => "DENIED",
            -4 => "ALREADY_ON",
            -5 => "ON_PENDING",
            -6 => "INTERNAL_FAILURE",
            -7 => "NOT_PRESENT",
            -8 => "DISABLED",
            -9 => "INVALID_ADDRESS",
            _ => "unknown error",
        };
        write!(f, "psci returned {} ({name})", self.0)
    }
}

pub fn version() -> (u16, u16) {
    let v = call(PSCI_VERSION, 0, 0, 0) as u64;
    ((v >> 16) as u16, v as u16)
}

/// Starts the CPU with affinity `mpidr` at physical address `entry` with x0 = `context`.
///
/// # Errors
/// The firmware's return code when it refuses (ALREADY_ON, INVALID_PARAMETERS, ...).
pub fn cpu_on(mpidr: u64, entry: u64, context: u64) -> Result<(), PsciError> {
    match call(CPU_ON_64, mpidr, entry, context) {
        0 => Ok(()),
        e => Err(PsciError(e)),
    }
}

/// Powers this CPU off. Returns only on failure.
pub fn cpu_off() -> PsciError {
    PsciError(call(CPU_OFF, 0, 0, 0))
}

/// Powers the machine off (QEMU exits with status 0). Returns only on failure.
pub fn system_off() -> PsciError {
    PsciError(call(SYSTEM_OFF, 0, 0, 0))
}
