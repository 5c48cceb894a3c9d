//! sgi: software-generated interrupts between two vCPUs through ICC_SGI1R_EL1.
//!
//! vCPU 0 starts vCPU 1 with CPU_ON; each wakes its own redistributor and CPU interface. For
//! several rounds vCPU 0 sends SGI 3 to vCPU 1 (target list Aff0 = 1); vCPU 1's handler sees
//! INTID 3 and answers with SGI 5 to vCPU 0, whose handler must see INTID 5. Both wait in WFI
//! (vCPU 0 with its virtual timer as the timeout), so each SGI must also wake its target. A failure points at the hypervisor's trapped ICC_SGI1R_EL1
//! decode (affinity, target list), SGI injection into another vCPU (and kicking it out of WFI
//! or guest mode), or its vGIC redistributor/list-register handling. Needs two vCPUs.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU32, Ordering};

use test_guests::gic::{self, Redistributor};
use test_guests::psci::{self, Error};
use test_guests::{check, cpu, exceptions, println, report, timer};

test_guests::test_main!(main);

const PRIMARY: u64 = 0;
const SECONDARY: u64 = 1;
const PING: u32 = 3;
const PONG: u32 = 5;
const ROUNDS: u32 = 4;
const TIMEOUT_MS: u64 = 1000;

/// vCPU 1 is ready to take SGIs (1), or could not set up its GIC (2).
static READY: AtomicU32 = AtomicU32::new(0);
/// SGIs counted on each side, and the first wrong INTID each side saw (0 = none).
static PINGS: AtomicU32 = AtomicU32::new(0);
static PONGS: AtomicU32 = AtomicU32::new(0);
static WRONG_ON_0: AtomicU32 = AtomicU32::new(0);
static WRONG_ON_1: AtomicU32 = AtomicU32::new(0);

fn on_irq(intid: u32) {
    match (cpu::mpidr(), intid) {
        (SECONDARY, PING) => {
            PINGS.fetch_add(1, Ordering::AcqRel);
            gic::send_sgi(PONG, PRIMARY);
        }
        (PRIMARY, PONG) => {
            PONGS.fetch_add(1, Ordering::AcqRel);
        }
        (SECONDARY, other) => WRONG_ON_1.store(other | 1 << 16, Ordering::Relaxed),
        (_, other) => WRONG_ON_0.store(other | 1 << 16, Ordering::Relaxed),
    }
}

fn setup_this_cpu(sgi: u32) -> Result<(), gic::Error> {
    let rd = Redistributor::this_cpu()?;
    gic::init_cpu_interface();
    rd.enable(sgi, 0x80);
    Ok(())
}

fn secondary(_context: u64) -> ! {
    if setup_this_cpu(PING).is_err() {
        READY.store(2, Ordering::Release);
        cpu::stop();
    }
    READY.store(1, Ordering::Release);
    exceptions::enable_irqs();
    // vCPU 0 ends the test (SYSTEM_OFF) once it has all the answers. A PING taken between
    // two WFIs is already answered, so this wait needs no masking.
    loop {
        exceptions::wait_for_interrupt();
    }
}

fn main() -> ! {
    if psci::affinity_info(SECONDARY) == Err(Error::InvalidParameters) {
        report::skip(format_args!("needs a second vCPU (MPIDR {SECONDARY})"));
    }
    if let Err(e) = gic::init_distributor().and_then(|()| setup_this_cpu(PONG)) {
        report::error(format_args!("vCPU 0 GIC setup failed: {e:?}"));
    }
    exceptions::set_irq_hook(Some(on_irq));
    if let Err(e) = cpu::start(SECONDARY, secondary, 0) {
        report::error(format_args!("CPU_ON of vCPU 1 failed: {e}"));
    }
    let up = timer::wfi_until(TIMEOUT_MS, || READY.load(Ordering::Acquire) != 0)
        .unwrap_or_else(|e| report::error(format_args!("vCPU 0 redistributor: {e:?}")));
    match READY.load(Ordering::Acquire) {
        1 => {}
        2 => report::error(format_args!("vCPU 1 could not set up its redistributor")),
        _ => report::error(format_args!(
            "vCPU 1 not ready {TIMEOUT_MS} ms after CPU_ON (in time: {up})"
        )),
    }

    for round in 1..=ROUNDS {
        gic::send_sgi(PING, SECONDARY);
        let answered = timer::wfi_until(TIMEOUT_MS, || PONGS.load(Ordering::Acquire) >= round);
        let answered = answered.unwrap_or_else(|e| report::error(format_args!("{e:?}")));
        let (pings, pongs) = (PINGS.load(Ordering::Acquire), PONGS.load(Ordering::Acquire));
        let wrong = (
            WRONG_ON_0.load(Ordering::Relaxed),
            WRONG_ON_1.load(Ordering::Relaxed),
        );
        check!(
            wrong.1 == 0,
            "vCPU 1 took INTID {} (want only {PING})",
            wrong.1 & 0xffff
        );
        check!(
            wrong.0 == 0,
            "vCPU 0 took INTID {} (want only {PONG})",
            wrong.0 & 0xffff
        );
        check!(
            pings == round,
            "round {round}: vCPU 1 took {pings} SGI {PING}s after {round} sent to it"
        );
        check!(
            answered && pongs == round,
            "round {round}: vCPU 0 took {pongs} SGI {PONG}s in reply, want {round}"
        );
    }
    exceptions::disable_irqs();
    println!("sgi: {ROUNDS} rounds of SGI {PING} to vCPU 1 and SGI {PONG} back to vCPU 0");
    report::success()
}
