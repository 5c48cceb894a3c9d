//! psci: PSCI CPU_ON, AFFINITY_INFO and CPU_OFF for a second vCPU, and the error returns.
//!
//! vCPU 0 starts vCPU 1 (MPIDR 1) with a context id; vCPU 1 reports the id it got in x0 and
//! waits to be released, then calls CPU_OFF. vCPU 0 checks AFFINITY_INFO goes OFF -> ON -> OFF,
//! that a second CPU_ON of a running vCPU returns ALREADY_ON, that a vCPU can be started again
//! after CPU_OFF, that CPU_ON/AFFINITY_INFO of a non-existent MPIDR return INVALID_PARAMETERS,
//! and PSCI_FEATURES / MIGRATE_INFO_TYPE. A failure points at the hypervisor's PSCI handling:
//! vCPU power-state bookkeeping, the entry point or context id not reaching the new vCPU, or
//! MPIDR lookup. Needs two vCPUs (skips with one).
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};

use test_guests::psci::{self, Affinity, Error, id};
use test_guests::{check, cpu, println, report, timer};

test_guests::test_main!(main);

const SECONDARY: u64 = 1;
/// No vCPU of a test VM has this affinity.
const ABSENT: u64 = 0xff;
const TIMEOUT_MS: u64 = 1000;

/// The context id each secondary run received (0 = not yet).
static ARRIVED: AtomicU64 = AtomicU64::new(0);
/// Which run the secondary may finish (it calls CPU_OFF once this equals its context id).
static RELEASED: AtomicU64 = AtomicU64::new(0);

fn secondary(context: u64) -> ! {
    ARRIVED.store(context, Ordering::Release);
    let released = timer::wait_until(TIMEOUT_MS * 10, || {
        RELEASED.load(Ordering::Acquire) == context
    });
    if !released {
        report::error(format_args!("secondary: never released by vCPU 0"));
    }
    cpu::stop()
}

fn main() -> ! {
    match psci::affinity_info(SECONDARY) {
        Err(Error::InvalidParameters) => {
            report::skip(format_args!("needs a second vCPU (MPIDR {SECONDARY})"))
        }
        Ok(Affinity::Off) => {}
        other => report::failure(format_args!(
            "AFFINITY_INFO of the not yet started vCPU 1 returned {other:?}, want Ok(Off)"
        )),
    }
    let me = psci::affinity_info(cpu::mpidr());
    check!(
        me == Ok(Affinity::On),
        "AFFINITY_INFO of the calling vCPU returned {me:?}, want Ok(On)"
    );

    check_features();
    let mit = psci::hvc(id::MIGRATE_INFO_TYPE, 0, 0, 0);
    check!(
        mit == 2,
        "MIGRATE_INFO_TYPE returned {mit:#x}, want 2 (no Trusted OS to migrate)"
    );

    for (run, context) in [0x1234_5678_9abc_def0u64, 0x0fed_cba9_8765_4321]
        .into_iter()
        .enumerate()
    {
        start_and_stop(run, context);
    }

    let absent = psci::cpu_on(ABSENT, cpu::secondary_entry_point(), 0);
    check!(
        absent == Err(Error::InvalidParameters),
        "CPU_ON of absent MPIDR {ABSENT:#x} returned {absent:?}, want Err(InvalidParameters)"
    );
    let absent = psci::affinity_info(ABSENT);
    check!(
        absent == Err(Error::InvalidParameters),
        "AFFINITY_INFO of absent MPIDR {ABSENT:#x} returned {absent:?}, want Err(InvalidParameters)"
    );
    report::success()
}

fn check_features() {
    for fid in [
        id::CPU_ON,
        id::CPU_ON_64,
        id::CPU_OFF,
        id::AFFINITY_INFO_64,
        id::SYSTEM_OFF,
    ] {
        let f = psci::features(fid);
        check!(
            f == Ok(0),
            "PSCI_FEATURES({fid:#x}) returned {f:?}, want Ok(0)"
        );
    }
    let unknown = 0x8400_00ff;
    let f = psci::features(unknown);
    check!(
        f == Err(Error::NotSupported),
        "PSCI_FEATURES({unknown:#x}) returned {f:?}, want Err(NotSupported)"
    );
}

/// One CPU_ON .. CPU_OFF cycle of the secondary with `context`.
fn start_and_stop(run: usize, context: u64) {
    let r = cpu::start(SECONDARY, secondary, context);
    check!(r.is_ok(), "run {run}: CPU_ON of vCPU 1 returned {r:?}");

    let arrived = timer::wait_until(TIMEOUT_MS, || ARRIVED.load(Ordering::Acquire) != 0);
    check!(
        arrived,
        "run {run}: vCPU 1 did not start within {TIMEOUT_MS} ms of CPU_ON"
    );
    let got = ARRIVED.swap(0, Ordering::AcqRel);
    check!(
        got == context,
        "run {run}: vCPU 1 got context id {got:#x} in x0, want {context:#x}"
    );

    // The secondary is held until released, so it must read as ON now.
    let state = psci::affinity_info(SECONDARY);
    check!(
        state == Ok(Affinity::On),
        "run {run}: AFFINITY_INFO of running vCPU 1 returned {state:?}"
    );
    let again = psci::cpu_on(SECONDARY, cpu::secondary_entry_point(), 0);
    check!(
        again == Err(Error::AlreadyOn),
        "run {run}: CPU_ON of running vCPU 1 returned {again:?}, want Err(AlreadyOn)"
    );

    RELEASED.store(context, Ordering::Release);
    let off = timer::wait_until(TIMEOUT_MS, || {
        psci::affinity_info(SECONDARY) == Ok(Affinity::Off)
    });
    check!(
        off,
        "run {run}: AFFINITY_INFO of vCPU 1 still {:?} {TIMEOUT_MS} ms after its CPU_OFF",
        psci::affinity_info(SECONDARY)
    );
    println!("psci: run {run}: vCPU 1 started with context {context:#x}, ran, and powered off");
}
