//! The world switch: entering a guest vCPU at EL1 and coming back on its next exit.
//!
//! One vCPU is pinned to each physical CPU and nothing else runs at EL1 there, so the guest's
//! EL1 system registers (SCTLR, TTBR0/1, TCR, MAIR, AMAIR, VBAR, CONTEXTIDR, TPIDR*, ESR, FAR,
//! AFSR0/1, PAR, CPACR, CNTKCTL, CNTV_CTL/CVAL, MDSCR, CSSELR, SP_EL1, ELR_EL1, SPSR_EL1) and its
//! FP/SIMD/SVE registers stay live in hardware across exits: the hypervisor is built
//! soft-float and never touches them. [`El1State::load`] sets them when a vCPU (re)starts;
//! the switch itself only moves x0-x30, SP_EL0, PC (ELR_EL2) and PSTATE (SPSR_EL2). Should
//! vCPUs ever share a pCPU, `El1State::save`/`load` around the switch plus an FP save are what
//! it needs.
//!
//! Stacks: hypervisor code runs on SP_EL0 (SPSel = 0), exceptions on SP_EL2. `guest_enter`
//! saves the callee-saved registers on the hypervisor stack, keeps that stack pointer in the
//! context, switches to SP_EL2 and leaves the context's address at the top of it, then loads
//! the guest's SP_EL0 and erets. The lower-EL vectors find the context there, save the guest,
//! and return from `guest_enter` with the vector kind.

use super::sysreg::{isb, read_sysreg, write_sysreg};

/// General-purpose state moved by the switch.
#[repr(C)]
#[derive(Clone, Debug, Default)]
pub struct GuestRegs {
    pub x: [u64; 31],
    pub sp_el0: u64,
    /// ELR_EL2: where the vCPU continues.
    pub pc: u64,
    /// SPSR_EL2: the PSTATE it continues with.
    pub pstate: u64,
    host_sp: u64,
    _pad: u64,
}

const OFF_SP_EL0: usize = 31 * 8;
const OFF_PC: usize = 32 * 8;
const OFF_HOST_SP: usize = 34 * 8;
const _: () = assert!(core::mem::offset_of!(GuestRegs, sp_el0) == OFF_SP_EL0);
const _: () = assert!(core::mem::offset_of!(GuestRegs, pc) == OFF_PC);
const _: () = assert!(core::mem::offset_of!(GuestRegs, pstate) == OFF_PC + 8);
const _: () = assert!(core::mem::offset_of!(GuestRegs, host_sp) == OFF_HOST_SP);

impl GuestRegs {
    /// Register `n` as an instruction names it; 31 is XZR (reads 0).
    pub fn get(&self, n: u8) -> u64 {
        self.x.get(usize::from(n)).copied().unwrap_or(0)
    }
    /// Writes register `n`; writes to 31 (XZR) are discarded.
    pub fn set(&mut self, n: u8, v: u64) {
        if let Some(r) = self.x.get_mut(usize::from(n)) {
            *r = v;
        }
    }
}

/// The vCPU running on this pCPU, as `vm::step` drives it: its saved registers, and its EL1
/// exception registers and HCR_EL2, live in hardware while it is pinned here.
pub struct HwVcpu<'a>(pub &'a mut GuestRegs);

impl crate::vm::step::VcpuHw for HwVcpu<'_> {
    fn gpr(&self, n: u8) -> u64 {
        self.0.get(n)
    }
    fn set_gpr(&mut self, n: u8, value: u64) {
        self.0.set(n, value);
    }
    fn pc(&self) -> u64 {
        self.0.pc
    }
    fn set_pc(&mut self, pc: u64) {
        self.0.pc = pc;
    }
    fn pstate(&self) -> u64 {
        self.0.pstate
    }
    fn set_pstate(&mut self, pstate: u64) {
        self.0.pstate = pstate;
    }
    fn vbar_el1(&self) -> u64 {
        read_sysreg!("vbar_el1")
    }
    fn set_el1_exception(&mut self, e: &crate::vm::inject::El1Entry) {
        // SAFETY: the EL1 registers are the pinned vCPU's (live in hardware); this is the
        // state the architecture's exception entry would leave in them.
        unsafe {
            write_sysreg!("esr_el1", e.esr);
            if let Some(far) = e.far {
                write_sysreg!("far_el1", far);
            }
            write_sysreg!("elr_el1", e.elr);
            write_sysreg!("spsr_el1", e.spsr);
        }
    }
    fn pend_virtual_serror(&mut self) {
        // HCR_EL2.VSE: taken once the guest unmasks SErrors; the PE clears the bit.
        const HCR_VSE: u64 = 1 << 8;
        let hcr = read_sysreg!("hcr_el2") | HCR_VSE;
        // SAFETY: only this vCPU's pending virtual SError changes; HCR_EL2's other bits are
        // written back as they were.
        unsafe { write_sysreg!("hcr_el2", hcr) };
    }
}

core::arch::global_asm!(
    r#"
    .section .text.guest_switch, "ax"
    .global guest_enter
guest_enter:
    stp     x29, x30, [sp, #-96]!
    stp     x19, x20, [sp, #16]
    stp     x21, x22, [sp, #32]
    stp     x23, x24, [sp, #48]
    stp     x25, x26, [sp, #64]
    stp     x27, x28, [sp, #80]
    mov     x1, sp
    str     x1, [x0, #{host_sp}]
    msr     spsel, #1
    str     x0, [sp, #-16]!
    ldr     x1, [x0, #{sp_el0}]
    msr     sp_el0, x1
    ldp     x1, x2, [x0, #{pc}]
    msr     elr_el2, x1
    msr     spsr_el2, x2
    ldp     x2, x3, [x0, #16]
    ldp     x4, x5, [x0, #32]
    ldp     x6, x7, [x0, #48]
    ldp     x8, x9, [x0, #64]
    ldp     x10, x11, [x0, #80]
    ldp     x12, x13, [x0, #96]
    ldp     x14, x15, [x0, #112]
    ldp     x16, x17, [x0, #128]
    ldp     x18, x19, [x0, #144]
    ldp     x20, x21, [x0, #160]
    ldp     x22, x23, [x0, #176]
    ldp     x24, x25, [x0, #192]
    ldp     x26, x27, [x0, #208]
    ldp     x28, x29, [x0, #224]
    ldr     x30, [x0, #240]
    ldp     x0, x1, [x0]
    eret
    dsb     nsh
    isb

    /* From the lower-EL vectors: guest x0/x1 at [sp], x1 = kind, context at [sp, #16]. */
    .global guest_exit
guest_exit:
    ldr     x0, [sp, #16]
    stp     x2, x3, [x0, #16]
    stp     x4, x5, [x0, #32]
    stp     x6, x7, [x0, #48]
    stp     x8, x9, [x0, #64]
    stp     x10, x11, [x0, #80]
    stp     x12, x13, [x0, #96]
    stp     x14, x15, [x0, #112]
    stp     x16, x17, [x0, #128]
    stp     x18, x19, [x0, #144]
    stp     x20, x21, [x0, #160]
    stp     x22, x23, [x0, #176]
    stp     x24, x25, [x0, #192]
    stp     x26, x27, [x0, #208]
    stp     x28, x29, [x0, #224]
    str     x30, [x0, #240]
    ldp     x2, x3, [sp], #16
    stp     x2, x3, [x0]
    add     sp, sp, #16
    mrs     x2, sp_el0
    str     x2, [x0, #{sp_el0}]
    mrs     x2, elr_el2
    mrs     x3, spsr_el2
    stp     x2, x3, [x0, #{pc}]
    ldr     x2, [x0, #{host_sp}]
    msr     spsel, #0
    mov     sp, x2
    mov     x0, x1
    ldp     x19, x20, [sp, #16]
    ldp     x21, x22, [sp, #32]
    ldp     x23, x24, [sp, #48]
    ldp     x25, x26, [sp, #64]
    ldp     x27, x28, [sp, #80]
    ldp     x29, x30, [sp], #96
    ret
"#,
    host_sp = const OFF_HOST_SP,
    sp_el0 = const OFF_SP_EL0,
    pc = const OFF_PC,
);

unsafe extern "C" {
    fn guest_enter(regs: *mut GuestRegs) -> u64;
}

/// Runs the guest until its next exit; returns the vector kind (0 sync, 1 IRQ, 2 FIQ,
/// 3 SError). ESR_EL2, FAR_EL2 and HPFAR_EL2 describe the exit until the next exception.
///
/// # Safety
/// The EL2 guest controls (HCR_EL2, VTTBR_EL2, ...) must be set for the VM `regs` belongs to
/// ([`configure`]), and the vCPU's PC/PSTATE must be an EL1/EL0 AArch64 state.
pub unsafe fn run(regs: &mut GuestRegs) -> u64 {
    // SAFETY: `guest_enter` saves and restores every callee-saved register and the stack
    // pointer, and writes only `*regs`; the caller vouches for the guest configuration. The
    // exception that ends the guest comes back here through `guest_exit`.
    let kind = unsafe { guest_enter(regs) };
    // SAFETY: the exit masked DAIF; SError is unmasked again as `el2::init_this_cpu` had it.
    unsafe { core::arch::asm!("msr daifclr, #4", options(nomem, nostack, preserves_flags)) };
    kind
}

/// HCR_EL2 for guests: VM (stage 2), SWIO, PTW, FMO/IMO/AMO (interrupts and SError to EL2),
/// FB and BSU=inner (broadcast TLB/cache maintenance), TWI (WFI exits so the vCPU can wait for
/// its interrupts), TSC (SMC exits: PSCI over SMC), TID3 (ID register reads exit, and the guest
/// sees the curated CPU of `vm::cpu_id`), RW (EL1 is AArch64). E2H = 0 (nVHE), no TVM/TSW. API/APK when pointer authentication
/// exists, so the guest's PAC instructions and key registers do not trap; FWB with FEAT_S2FWB
/// (the stage-2 attribute encoding depends on it).
pub fn guest_hcr(fwb: bool) -> u64 {
    const VM: u64 = 1 << 0;
    const SWIO: u64 = 1 << 1;
    const PTW: u64 = 1 << 2;
    const FMO: u64 = 1 << 3;
    const IMO: u64 = 1 << 4;
    const AMO: u64 = 1 << 5;
    const FB: u64 = 1 << 9;
    const BSU_INNER: u64 = 1 << 10;
    const TWI: u64 = 1 << 13;
    const TID3: u64 = 1 << 18;
    const TSC: u64 = 1 << 19;
    const RW: u64 = 1 << 31;
    const APK: u64 = 1 << 40;
    const API: u64 = 1 << 41;
    const FWB: u64 = 1 << 46;
    let isar1 = read_sysreg!("id_aa64isar1_el1");
    let isar2 = read_sysreg!("id_aa64isar2_el1");
    // APA [7:4], API [11:8], GPA [27:24], GPI [31:28]; APA3 [15:12], GPA3 [11:8] in ISAR2.
    let pauth = isar1 & 0xf000_0ff0 != 0 || isar2 & 0xff00 != 0;
    let mut hcr = VM | SWIO | PTW | FMO | IMO | AMO | FB | BSU_INNER | TWI | TID3 | TSC | RW;
    if pauth {
        hcr |= API | APK;
    }
    if fwb {
        hcr |= FWB;
    }
    hcr
}

/// CPTR_EL2 (nVHE layout) for guests: RES1 bits, TFP = 0 so FP/SIMD runs without traps (its
/// registers are the guest's while it is pinned here), TZ and TSM set: SVE and SME are hidden
/// from the guest (`vm::cpu_id`; their state is not saved in snapshots), so using them traps
/// and the guest gets UNDEFINED, as on a CPU without them.
const GUEST_CPTR: u64 = 0x33ff;
/// CNTHCTL_EL2 (E2H = 0): EL1PCTEN = 0 and EL1PCEN = 0: the physical counter and the EL1
/// physical timer trap and are emulated (`vdev::phys_timer`): the timer's interrupt would reach
/// the physical GIC, and the guest's physical counter is offset like its virtual one, by
/// CNTVOFF_EL2, so that both survive a restore. Guests mostly use the virtual timer, which
/// does not trap.
const GUEST_CNTHCTL: u64 = 0b00;

/// Per-vCPU EL2 controls, set on the vCPU's pCPU before its first entry.
#[derive(Clone, Copy, Debug)]
pub struct GuestConfig {
    pub hcr: u64,
    pub vtcr: u64,
    pub vttbr: u64,
    /// MPIDR_EL1 as the guest reads it (bit 31 RES1 set).
    pub vmpidr: u64,
    /// CNTVOFF_EL2: the VM's creation time, so its virtual counter starts at 0.
    pub cntvoff: u64,
}

/// Loads `cfg` into this CPU's EL2 controls.
///
/// # Safety
/// Nothing may run at EL1 on this CPU except the vCPU `cfg` describes; `cfg.vttbr` must hold a
/// stage-2 root the memory core built, with a VMID no other VM uses.
pub unsafe fn configure(cfg: &GuestConfig) {
    let midr = read_sysreg!("midr_el1");
    // SAFETY: these only decide what EL1 sees and what traps; the caller vouches for the
    // tables and VMID.
    unsafe {
        write_sysreg!("vtcr_el2", cfg.vtcr);
        write_sysreg!("vttbr_el2", cfg.vttbr);
        write_sysreg!("hcr_el2", cfg.hcr);
        write_sysreg!("cptr_el2", GUEST_CPTR);
        write_sysreg!("cnthctl_el2", GUEST_CNTHCTL);
        write_sysreg!("cntvoff_el2", cfg.cntvoff);
        write_sysreg!("s3_4_c0_c0_0", midr);
        write_sysreg!("s3_4_c0_c0_5", cfg.vmpidr | 1 << 31);
    }
    isb();
}

/// The EL1 registers a vCPU starts with.
#[derive(Clone, Copy, Debug, Default)]
pub struct El1State {
    pub sctlr: u64,
    pub ttbr0: u64,
    pub ttbr1: u64,
    pub tcr: u64,
    pub mair: u64,
    pub amair: u64,
    pub vbar: u64,
    pub contextidr: u64,
    pub tpidr_el0: u64,
    pub tpidr_el1: u64,
    pub tpidrro_el0: u64,
    pub esr: u64,
    pub far: u64,
    pub afsr0: u64,
    pub afsr1: u64,
    pub par: u64,
    pub cpacr: u64,
    pub cntkctl: u64,
    pub cntv_ctl: u64,
    pub cntv_cval: u64,
    pub mdscr: u64,
    pub csselr: u64,
    pub sp_el1: u64,
    pub elr_el1: u64,
    pub spsr_el1: u64,
    /// Pointer-authentication keys APIAKeyLo/Hi, APIBKeyLo/Hi, APDAKeyLo/Hi, APDBKeyLo/Hi,
    /// APGAKeyLo/Hi (zero without PAuth). A guest kernel signs its return addresses with them:
    /// a vCPU continued elsewhere (a restore) needs them back. By encoding, because an
    /// assembler for the base architecture does not know their names.
    pub pauth: [u64; 10],
}

/// Whether this CPU has pointer authentication (its key registers exist).
fn has_pauth() -> bool {
    let isar1 = read_sysreg!("id_aa64isar1_el1");
    let isar2 = read_sysreg!("s3_0_c0_c6_2");
    // ISAR1: APA [7:4], API [11:8], GPA [27:24], GPI [31:28]; ISAR2: GPA3 [11:8], APA3 [15:12].
    isar1 & 0xff00_0ff0 != 0 || isar2 & 0xff00 != 0
}

macro_rules! pauth_keys {
    ($m:ident) => {
        [
            $m!("s3_0_c2_c1_0"),
            $m!("s3_0_c2_c1_1"),
            $m!("s3_0_c2_c1_2"),
            $m!("s3_0_c2_c1_3"),
            $m!("s3_0_c2_c2_0"),
            $m!("s3_0_c2_c2_1"),
            $m!("s3_0_c2_c2_2"),
            $m!("s3_0_c2_c2_3"),
            $m!("s3_0_c2_c3_0"),
            $m!("s3_0_c2_c3_1"),
        ]
    };
}

impl El1State {
    /// Reset state: MMU and caches off (SCTLR_EL1 RES1 bits only), virtual timer disabled,
    /// everything else zero.
    pub fn reset() -> Self {
        Self {
            sctlr: 0x30d0_0800,
            ..Self::default()
        }
    }

    /// Writes these values into this CPU's EL1 registers.
    ///
    /// # Safety
    /// Only for the vCPU pinned to this CPU, before it runs (EL1 state is the guest's).
    pub unsafe fn load(&self) {
        // SAFETY: EL1 registers only affect EL1/EL0 execution, which is the guest's alone here.
        unsafe {
            write_sysreg!("sctlr_el1", self.sctlr);
            write_sysreg!("ttbr0_el1", self.ttbr0);
            write_sysreg!("ttbr1_el1", self.ttbr1);
            write_sysreg!("tcr_el1", self.tcr);
            write_sysreg!("mair_el1", self.mair);
            write_sysreg!("amair_el1", self.amair);
            write_sysreg!("vbar_el1", self.vbar);
            write_sysreg!("contextidr_el1", self.contextidr);
            write_sysreg!("tpidr_el0", self.tpidr_el0);
            write_sysreg!("tpidr_el1", self.tpidr_el1);
            write_sysreg!("tpidrro_el0", self.tpidrro_el0);
            write_sysreg!("esr_el1", self.esr);
            write_sysreg!("far_el1", self.far);
            write_sysreg!("afsr0_el1", self.afsr0);
            write_sysreg!("afsr1_el1", self.afsr1);
            write_sysreg!("par_el1", self.par);
            write_sysreg!("cpacr_el1", self.cpacr);
            write_sysreg!("cntkctl_el1", self.cntkctl);
            write_sysreg!("cntv_ctl_el0", self.cntv_ctl);
            write_sysreg!("cntv_cval_el0", self.cntv_cval);
            write_sysreg!("mdscr_el1", self.mdscr);
            write_sysreg!("csselr_el1", self.csselr);
            write_sysreg!("sp_el1", self.sp_el1);
            write_sysreg!("elr_el1", self.elr_el1);
            write_sysreg!("spsr_el1", self.spsr_el1);
            if has_pauth() {
                let k = &self.pauth;
                write_sysreg!("s3_0_c2_c1_0", k[0]);
                write_sysreg!("s3_0_c2_c1_1", k[1]);
                write_sysreg!("s3_0_c2_c1_2", k[2]);
                write_sysreg!("s3_0_c2_c1_3", k[3]);
                write_sysreg!("s3_0_c2_c2_0", k[4]);
                write_sysreg!("s3_0_c2_c2_1", k[5]);
                write_sysreg!("s3_0_c2_c2_2", k[6]);
                write_sysreg!("s3_0_c2_c2_3", k[7]);
                write_sysreg!("s3_0_c2_c3_0", k[8]);
                write_sysreg!("s3_0_c2_c3_1", k[9]);
            }
        }
        isb();
    }

    /// Reads this CPU's EL1 registers (the pinned vCPU's state).
    pub fn save() -> Self {
        Self {
            sctlr: read_sysreg!("sctlr_el1"),
            ttbr0: read_sysreg!("ttbr0_el1"),
            ttbr1: read_sysreg!("ttbr1_el1"),
            tcr: read_sysreg!("tcr_el1"),
            mair: read_sysreg!("mair_el1"),
            amair: read_sysreg!("amair_el1"),
            vbar: read_sysreg!("vbar_el1"),
            contextidr: read_sysreg!("contextidr_el1"),
            tpidr_el0: read_sysreg!("tpidr_el0"),
            tpidr_el1: read_sysreg!("tpidr_el1"),
            tpidrro_el0: read_sysreg!("tpidrro_el0"),
            esr: read_sysreg!("esr_el1"),
            far: read_sysreg!("far_el1"),
            afsr0: read_sysreg!("afsr0_el1"),
            afsr1: read_sysreg!("afsr1_el1"),
            par: read_sysreg!("par_el1"),
            cpacr: read_sysreg!("cpacr_el1"),
            cntkctl: read_sysreg!("cntkctl_el1"),
            cntv_ctl: read_sysreg!("cntv_ctl_el0"),
            cntv_cval: read_sysreg!("cntv_cval_el0"),
            mdscr: read_sysreg!("mdscr_el1"),
            csselr: read_sysreg!("csselr_el1"),
            sp_el1: read_sysreg!("sp_el1"),
            elr_el1: read_sysreg!("elr_el1"),
            spsr_el1: read_sysreg!("spsr_el1"),
            pauth: if has_pauth() {
                pauth_keys!(read_sysreg)
            } else {
                [0; 10]
            },
        }
    }
}

/// The exit syndrome registers: (ESR_EL2, FAR_EL2, HPFAR_EL2).
pub fn exit_syndrome() -> (u64, u64, u64) {
    (
        read_sysreg!("esr_el2"),
        read_sysreg!("far_el2"),
        read_sysreg!("hpfar_el2"),
    )
}
