//! EL2 control registers of one CPU while no guest exists. HCR_EL2 (E2H = 0, RW = 1, no traps)
//! and SCTLR_EL2 are set by the entry code before anything else; this sets the rest.

use super::sysreg::{isb, read_sysreg, write_sysreg};

/// CPTR_EL2 (non-VHE layout): the RES1 bits plus TZ (trap SVE); FP/SIMD is not trapped, so a
/// future guest owns it (the hypervisor itself is built soft-float and never touches it).
const CPTR_EL2: u64 = 0x33ff;
/// CNTHCTL_EL2: EL1 may read the physical counter and use the physical timer.
const CNTHCTL_EL2: u64 = 0b11;
/// ICC_SRE_EL2: system-register GIC interface at EL2 (SRE) and allowed at EL1 (Enable).
const ICC_SRE_EL2: u64 = 0b1001;

/// Sets this CPU's EL2 controls to "no guest yet" and unmasks SError. Call on every CPU at
/// EL2 once its vectors are installed.
pub fn init_this_cpu() {
    let gic_sysregs = (read_sysreg!("id_aa64pfr0_el1") >> 24) & 0xf != 0;
    let pmu = matches!((read_sysreg!("id_aa64dfr0_el1") >> 8) & 0xf, 1..=0xe);
    let hpmn = if pmu {
        (read_sysreg!("pmcr_el0") >> 11) & 0x1f
    } else {
        0
    };
    let midr = read_sysreg!("midr_el1");
    let mpidr = read_sysreg!("mpidr_el1");
    // SAFETY: these registers only configure what lower ELs see and which of their accesses
    // trap; no lower EL runs yet. VTTBR_EL2 = 0 means no stage-2 tables and VMID 0 (written
    // whole, so VMID is not lost as with a BADDR-only write). ICC_SRE_EL2 exists when
    // ID_AA64PFR0_EL1.GIC says so; PMCR_EL0 when a PMU is implemented.
    unsafe {
        write_sysreg!("cptr_el2", CPTR_EL2);
        write_sysreg!("mdcr_el2", hpmn);
        write_sysreg!("cnthctl_el2", CNTHCTL_EL2);
        write_sysreg!("cntvoff_el2", 0u64);
        write_sysreg!("vttbr_el2", 0u64);
        // HSTR_EL2: no AArch32 CP15 traps.
        write_sysreg!("s3_4_c1_c1_3", 0u64);
        // VPIDR_EL2 / VMPIDR_EL2: what EL1 reads as MIDR/MPIDR.
        write_sysreg!("s3_4_c0_c0_0", midr);
        write_sysreg!("s3_4_c0_c0_5", mpidr);
        if gic_sysregs {
            write_sysreg!("s3_4_c12_c9_5", ICC_SRE_EL2);
        }
    }
    isb();
    // SAFETY: the vectors are installed, so an SError (asynchronous abort) is now reported
    // instead of staying pending unseen; IRQ and FIQ stay masked (no interrupt driver yet).
    unsafe { core::arch::asm!("msr daifclr, #4", options(nomem, nostack, preserves_flags)) };
}
