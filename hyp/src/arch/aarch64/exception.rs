//! EL2 exception vectors and the report of an unexpected exception.
//!
//! Exceptions from a lower EL (AArch64) are guest exits and go to `guest_exit` (vcpu.rs). Every
//! other exception taken to EL2 is unexpected: the handler prints the decoded syndrome and the
//! registers, then stops the machine with a non-zero exit status.
//! Normal code runs on SP_EL0, so the vectors used are "current EL with SP0"; exceptions always
//! switch to SP_EL2 (the per-CPU exception stack), so a normal stack overflowing into its guard
//! page is still reported.

use super::fatal::{self, ExitCode, Fatal};
use super::layout::{ImageLayout, MAX_CPUS};
use super::{console, percpu, psci, semihosting};
use crate::esr::Esr;
use crate::platform::PsciMethod;
use core::sync::atomic::{AtomicU8, Ordering};

/// Registers saved by the vector entry, in the order `el2_trap_common` stores them.
#[repr(C)]
pub struct TrapFrame {
    pub x: [u64; 31],
    pub elr: u64,
    pub spsr: u64,
    pub esr: u64,
    pub far: u64,
    pub sp_el0: u64,
}

const FRAME_SIZE: usize = core::mem::size_of::<TrapFrame>();
const _: () = assert!(FRAME_SIZE == 36 * 8 && FRAME_SIZE.is_multiple_of(16));

core::arch::global_asm!(
    r#"
    .macro  VENTRY kind
    .balign 0x80
    sub     sp, sp, #{frame}
    stp     x0, x1, [sp]
    mov     x1, #\kind
    b       el2_trap_common
    .endm

    /* A guest exit: keep the guest's x0/x1 below the vCPU context pointer that
       `guest_enter` left at the top of SP_EL2, pass the vector kind, save the rest there. */
    .macro  GUEST_VENTRY kind
    .balign 0x80
    stp     x0, x1, [sp, #-16]!
    mov     x1, #\kind
    b       guest_exit
    .endm

    .section .text.vectors, "ax"
    .balign 2048
    .global el2_vectors
el2_vectors:
    VENTRY 0
    VENTRY 1
    VENTRY 2
    VENTRY 3
    VENTRY 4
    VENTRY 5
    VENTRY 6
    VENTRY 7
    GUEST_VENTRY 0
    GUEST_VENTRY 1
    GUEST_VENTRY 2
    GUEST_VENTRY 3
    VENTRY 12
    VENTRY 13
    VENTRY 14
    VENTRY 15

el2_trap_common:
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x19, [sp, #144]
    stp     x20, x21, [sp, #160]
    stp     x22, x23, [sp, #176]
    stp     x24, x25, [sp, #192]
    stp     x26, x27, [sp, #208]
    stp     x28, x29, [sp, #224]
    mrs     x2, elr_el2
    stp     x30, x2, [sp, #240]
    mrs     x3, spsr_el2
    mrs     x4, esr_el2
    stp     x3, x4, [sp, #256]
    mrs     x5, far_el2
    mrs     x6, sp_el0
    stp     x5, x6, [sp, #272]
    /* irq.rs: an IRQ at EL2 (kinds 1, 5; only irq::selftest unmasks them) is handled by
       `el2_irq` and returns; x19-x29 are callee-saved by it, the rest come from the frame. */
    cmp     x1, #1
    b.eq    2f
    cmp     x1, #5
    b.eq    2f
    /* A semihosting I/O call without semihosting is refused, not fatal (`el2_sync_fixup`). */
    mov     x19, x1
    mov     x0, sp
    bl      el2_sync_fixup
    cbnz    x0, 3f
    mov     x0, sp
    mov     x1, x19
    bl      el2_unexpected_exception
1:  wfe
    b       1b
2:  bl      el2_irq
3:  ldp     x2, x3, [sp, #248]
    msr     elr_el2, x2
    msr     spsr_el2, x3
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    ldp     x18, x19, [sp, #144]
    ldr     x30, [sp, #240]
    ldp     x0, x1, [sp]
    add     sp, sp, #{frame}
    eret

    /* Entered at EL1 by mistake and something trapped (e.g. no semihosting): power off. */
    .macro  VENTRY1
    .balign 0x80
    b       el1_unexpected_exception
    .endm
    .balign 2048
    .global el1_vectors
el1_vectors:
    .rept 16
    VENTRY1
    .endr
"#,
    frame = const FRAME_SIZE,
);

/// Where the exception came from, from the vector index.
fn origin(kind: u64) -> &'static str {
    const ORIGIN: [&str; 16] = [
        "synchronous from EL2 (SP_EL0)",
        "IRQ from EL2 (SP_EL0)",
        "FIQ from EL2 (SP_EL0)",
        "SError from EL2 (SP_EL0)",
        "synchronous from EL2 (SP_EL2)",
        "IRQ from EL2 (SP_EL2)",
        "FIQ from EL2 (SP_EL2)",
        "SError from EL2 (SP_EL2)",
        "synchronous from a lower EL (AArch64)",
        "IRQ from a lower EL (AArch64)",
        "FIQ from a lower EL (AArch64)",
        "SError from a lower EL (AArch64)",
        "synchronous from a lower EL (AArch32)",
        "IRQ from a lower EL (AArch32)",
        "FIQ from a lower EL (AArch32)",
        "SError from a lower EL (AArch32)",
    ];
    ORIGIN
        .get(kind as usize)
        .copied()
        .unwrap_or("unknown vector")
}

/// Which stack guard page, if any, `addr` falls in: (cpu, is the exception stack's guard).
fn guard_page_hit(addr: u64) -> Option<(usize, bool)> {
    let layout = ImageLayout::get();
    (0..MAX_CPUS).find_map(|cpu| {
        let [below_stack, below_exc] = layout.guard_pages(cpu);
        let hit = |g: crate::mm::addr::Pa| (g.raw()..g.raw() + 4096).contains(&addr);
        if hit(below_stack) {
            Some((cpu, false))
        } else if hit(below_exc) {
            Some((cpu, true))
        } else {
            None
        }
    })
}

/// A synchronous EL2 exception that is an answer rather than an error: the semihosting I/O
/// trap without semihosting (an undefined instruction) returns "failed" to its caller. Returns
/// whether `frame` was fixed up to resume.
#[unsafe(no_mangle)]
extern "C" fn el2_sync_fixup(frame: &mut TrapFrame) -> bool {
    if Esr(frame.esr).ec() == 0 && frame.elr == semihosting::io_hlt_address() {
        frame.x[0] = u64::MAX;
        frame.elr += 4;
        return true;
    }
    false
}

#[unsafe(no_mangle)]
extern "C" fn el2_unexpected_exception(frame: &TrapFrame, kind: u64) -> ! {
    let esr = Esr(frame.esr);
    if esr.ec() == 0 && frame.elr == semihosting::hlt_address() {
        fatal::semihosting_unavailable();
    }
    let cpu = percpu::cpu_index();
    match fatal::enter() {
        Fatal::Report => {}
        Fatal::Park => fatal::park(),
        Fatal::Nested => {
            console::print_raw(format_args!(
                "EL2 exception while reporting a fatal error on cpu {cpu}: {esr} ELR={:#x} FAR={:#x}",
                frame.elr, frame.far
            ));
            fatal::stop_machine(ExitCode::Exception);
        }
    }
    console::print_line(format_args!("EL2 exception on cpu {cpu}: {}", origin(kind)));
    console::print_line(format_args!("  {esr}"));
    console::print_line(format_args!(
        "  FAR={:#018x} ELR={:#018x} SPSR={:#010x} ESR={:#010x}",
        frame.far, frame.elr, frame.spsr, frame.esr
    ));
    console::print_line(format_args!(
        "  SP_EL0={:#018x} LR={:#018x}",
        frame.sp_el0, frame.x[30]
    ));
    let guard = (esr.is_abort() && esr.far_valid()).then(|| guard_page_hit(frame.far));
    if let Some(Some((owner, exc))) = guard {
        let which = if exc { "exception stack" } else { "stack" };
        console::print_line(format_args!(
            "  FAR is in the guard page below cpu {owner}'s {which}: stack overflow?"
        ));
    }
    fatal::stop_machine(ExitCode::Exception)
}

/// How often `el1_unexpected_exception` ran: each failed power-off attempt traps again.
static EL1_ATTEMPTS: AtomicU8 = AtomicU8::new(0);

#[unsafe(no_mangle)]
extern "C" fn el1_unexpected_exception() -> ! {
    // Entered at EL1 and semihosting is missing (the EL message is printed already). QEMU virt
    // without virtualization answers PSCI on HVC; try that, then SMC, then sleep. Plain loads
    // and stores only: the MMU is off, so exclusive accesses may not work.
    let attempt = EL1_ATTEMPTS.load(Ordering::Relaxed);
    EL1_ATTEMPTS.store(attempt.saturating_add(1), Ordering::Relaxed);
    let method = match attempt {
        0 => {
            console::print_raw(format_args!(
                "semihosting unavailable; powering off through PSCI"
            ));
            Some(PsciMethod::Hvc)
        }
        1 => Some(PsciMethod::Smc),
        _ => None,
    };
    if let Some(method) = method {
        psci::set_conduit(method, 1);
        let _ = psci::system_off();
    }
    fatal::park()
}
