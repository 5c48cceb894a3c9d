//! cpuid: the CPU the guest is shown is consistent: every feature its ID registers show works,
//! and using one they hide is UNDEFINED, as on a CPU without it.
//!
//! Reads ID_AA64PFR0/PFR1 (and ZFR0, SMFR0), prints which of SVE and SME they show, then with
//! both enabled in CPACR_EL1 executes `RDVL` (SVE) and `RDSVL` (SME): shown means the
//! instruction must run, hidden means it must take an UNDEFINED exception (EC 0). Also MTE and
//! EL2 (nested virtualization) must not be shown under the hypervisor: their state or their
//! support is not there (the .test forbids the lines). A failure points at the ID register
//! curation (hyp/src/vm/cpu_id.rs) disagreeing with CPTR_EL2's traps (arch/aarch64/vcpu.rs).
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicBool, Ordering};

use test_guests::exceptions::{self, Frame, Syndrome, ec};
use test_guests::{check, println, report};

test_guests::test_main!(main);

static UNDEFINED: AtomicBool = AtomicBool::new(false);

/// Steps over an UNDEFINED instruction and notes it.
fn on_sync(frame: &mut Frame, s: Syndrome) -> bool {
    if s.class() != ec::UNKNOWN {
        return false;
    }
    UNDEFINED.store(true, Ordering::Relaxed);
    frame.elr += 4;
    true
}

macro_rules! mrs {
    ($name:literal) => {{
        let v: u64;
        // SAFETY: reading an ID register has no side effect.
        unsafe { core::arch::asm!(concat!("mrs {}, ", $name), out(reg) v, options(nomem, nostack)) };
        v
    }};
}

fn field(v: u64, shift: u32) -> u64 {
    (v >> shift) & 0xf
}

/// Runs `probe` (one instruction that may be UNDEFINED); true if it ran.
fn runs(probe: fn()) -> bool {
    UNDEFINED.store(false, Ordering::Relaxed);
    probe();
    !UNDEFINED.load(Ordering::Relaxed)
}

fn rdvl() {
    // SAFETY: RDVL x0, #1 only writes x0 (declared clobbered); UNDEFINED without SVE.
    unsafe { core::arch::asm!(".inst 0x04bf5020", out("x0") _, options(nomem, nostack)) };
}

fn rdsvl() {
    // SAFETY: RDSVL x0, #1 only writes x0 (declared clobbered); UNDEFINED without SME.
    unsafe { core::arch::asm!(".inst 0x04bf5820", out("x0") _, options(nomem, nostack)) };
}

fn main() -> ! {
    let pfr0 = mrs!("id_aa64pfr0_el1");
    let pfr1 = mrs!("id_aa64pfr1_el1");
    let zfr0 = mrs!("s3_0_c0_c4_4");
    let smfr0 = mrs!("s3_0_c0_c4_5");
    println!("cpuid: ID_AA64PFR0_EL1 {pfr0:#018x} ID_AA64PFR1_EL1 {pfr1:#018x}");
    // Reads are stable: the same value every time.
    check!(
        mrs!("id_aa64pfr0_el1") == pfr0 && mrs!("id_aa64pfr1_el1") == pfr1,
        "ID registers changed between two reads"
    );
    let sve = field(pfr0, 32) != 0;
    let sme = field(pfr1, 24) != 0;
    println!("cpuid: SVE {}", if sve { "shown" } else { "hidden" });
    println!("cpuid: SME {}", if sme { "shown" } else { "hidden" });
    if field(pfr1, 8) != 0 {
        println!("cpuid: MTE shown");
    }
    if field(pfr0, 8) != 0 {
        println!("cpuid: EL2 shown");
    }
    check!(
        sve || zfr0 == 0,
        "SVE hidden but ID_AA64ZFR0_EL1 = {zfr0:#x}"
    );
    check!(
        sme || smfr0 == 0,
        "SME hidden but ID_AA64SMFR0_EL1 = {smfr0:#x}"
    );

    // CPACR_EL1.ZEN [17:16], FPEN [21:20] (SVE and SME instructions need it too) and SMEN
    // [25:24] = 0b11: no EL1 trap of what the CPU has.
    let cpacr = mrs!("cpacr_el1") | 3 << 16 | 3 << 20 | 3 << 24;
    // SAFETY: only changes which instructions trap at EL1; this test expects those traps.
    unsafe { core::arch::asm!("msr cpacr_el1, {}", "isb", in(reg) cpacr, options(nostack)) };
    exceptions::set_sync_hook(Some(on_sync));
    let rdvl_ran = runs(rdvl);
    let rdsvl_ran = runs(rdsvl);
    exceptions::set_sync_hook(None);
    check!(
        rdvl_ran == sve,
        "SVE {} but RDVL {}",
        if sve { "shown" } else { "hidden" },
        if rdvl_ran { "ran" } else { "was UNDEFINED" }
    );
    check!(
        rdsvl_ran == sme,
        "SME {} but RDSVL {}",
        if sme { "shown" } else { "hidden" },
        if rdsvl_ran { "ran" } else { "was UNDEFINED" }
    );
    println!("cpuid: every feature checked behaves as its ID registers say");
    report::success()
}
