//! A vCPU's FP/SIMD registers. The hypervisor is built soft-float and never touches them, so
//! they stay live in hardware across exits (the pCPU runs only this vCPU); they are read out
//! only when the vCPU's whole state is wanted elsewhere (a snapshot) and written back when a
//! saved state replaces it (a restore).
//!
//! SVE: with SVE the low 128 bits of each Z register are the V register saved here; the bits
//! above, the predicate registers and FFR are not saved, so a snapshot taken while guest code
//! holds live SVE state beyond 128 bits loses that part (Linux discards a task's SVE state at
//! every syscall, and a paused vCPU was interrupted at EL1 or EL0 at any point, so this is a
//! known limitation, logged by the snapshot writer's caller).

/// Q0..Q31, FPCR, FPSR.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C, align(16))]
pub struct FpState {
    pub q: [u128; 32],
    pub fpcr: u64,
    pub fpsr: u64,
}

impl FpState {
    /// Reads this pCPU's FP/SIMD registers (the guest's, live in hardware).
    pub fn save() -> Self {
        let mut s = Self::default();
        let (fpcr, fpsr): (u64, u64);
        // SAFETY: stores 512 bytes into `s.q`, a 16-byte aligned array of that size; reading
        // FP/SIMD registers has no side effect (CPTR_EL2.TFP is clear).
        unsafe {
            core::arch::asm!(
                ".arch_extension fp",
                ".arch_extension simd",
                "stp q0, q1, [{p}, #0]",
                "stp q2, q3, [{p}, #32]",
                "stp q4, q5, [{p}, #64]",
                "stp q6, q7, [{p}, #96]",
                "stp q8, q9, [{p}, #128]",
                "stp q10, q11, [{p}, #160]",
                "stp q12, q13, [{p}, #192]",
                "stp q14, q15, [{p}, #224]",
                "stp q16, q17, [{p}, #256]",
                "stp q18, q19, [{p}, #288]",
                "stp q20, q21, [{p}, #320]",
                "stp q22, q23, [{p}, #352]",
                "stp q24, q25, [{p}, #384]",
                "stp q26, q27, [{p}, #416]",
                "stp q28, q29, [{p}, #448]",
                "stp q30, q31, [{p}, #480]",
                "mrs {c}, fpcr",
                "mrs {s}, fpsr",
                p = in(reg) s.q.as_mut_ptr(),
                c = out(reg) fpcr,
                s = out(reg) fpsr,
                options(nostack, preserves_flags),
            );
        }
        s.fpcr = fpcr;
        s.fpsr = fpsr;
        s
    }

    /// Makes these the pCPU's FP/SIMD registers (the guest continues with them).
    pub fn load(&self) {
        // SAFETY: loads 512 bytes from `self.q`; the registers written belong to the guest
        // this pCPU runs (EL2 code is soft-float and holds nothing in them).
        unsafe {
            core::arch::asm!(
                ".arch_extension fp",
                ".arch_extension simd",
                "ldp q0, q1, [{p}, #0]",
                "ldp q2, q3, [{p}, #32]",
                "ldp q4, q5, [{p}, #64]",
                "ldp q6, q7, [{p}, #96]",
                "ldp q8, q9, [{p}, #128]",
                "ldp q10, q11, [{p}, #160]",
                "ldp q12, q13, [{p}, #192]",
                "ldp q14, q15, [{p}, #224]",
                "ldp q16, q17, [{p}, #256]",
                "ldp q18, q19, [{p}, #288]",
                "ldp q20, q21, [{p}, #320]",
                "ldp q22, q23, [{p}, #352]",
                "ldp q24, q25, [{p}, #384]",
                "ldp q26, q27, [{p}, #416]",
                "ldp q28, q29, [{p}, #448]",
                "ldp q30, q31, [{p}, #480]",
                "msr fpcr, {c}",
                "msr fpsr, {s}",
                p = in(reg) self.q.as_ptr(),
                c = in(reg) self.fpcr,
                s = in(reg) self.fpsr,
                options(nostack, preserves_flags, readonly),
            );
        }
    }
}
