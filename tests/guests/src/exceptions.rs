//! The EL1 exception vector table and hooks a test installs to observe exceptions.
//!
//! Every vector saves all general-purpose registers, ELR_EL1 and SPSR_EL1 into a [`Frame`] on
//! the current stack and calls `rust_exception`. IRQs are acknowledged here and passed to the IRQ
//! hook by INTID; synchronous exceptions go to the sync hook, which may resolve them (for
//! example by stepping ELR_EL1 over a faulting instruction). Anything nobody claims ends the
//! test with `Test result: ERROR`, naming the exception, so a stray fault is never silent.

use core::sync::atomic::{AtomicUsize, Ordering};

use crate::{gic, report, timer};

/// The state saved on exception entry; a hook may change it before the `eret`.
#[repr(C)]
pub struct Frame {
    pub x: [u64; 31],
    pub elr: u64,
    pub spsr: u64,
    _pad: u64,
}

const FRAME_SIZE: usize = core::mem::size_of::<Frame>();
const _: () = assert!(FRAME_SIZE % 16 == 0);

/// What a synchronous exception looked like: ESR_EL1 and FAR_EL1 at entry.
#[derive(Clone, Copy, Debug)]
pub struct Syndrome {
    pub esr: u64,
    pub far: u64,
}

impl Syndrome {
    /// Exception class, ESR_EL1[31:26].
    pub fn class(self) -> u64 {
        (self.esr >> 26) & 0x3f
    }

    /// Instruction-specific syndrome, ESR_EL1[24:0].
    pub fn iss(self) -> u64 {
        self.esr & 0x1ff_ffff
    }
}

/// Exception classes the tests look for.
pub mod ec {
    pub const UNKNOWN: u64 = 0x00;
    pub const DATA_ABORT_SAME_EL: u64 = 0x25;
}

/// Returns true when it handled the exception (the frame is then restored and resumed).
pub type SyncHook = fn(&mut Frame, Syndrome) -> bool;
/// Called with the INTID of each acknowledged interrupt, before its EOI.
pub type IrqHook = fn(u32);

static SYNC_HOOK: AtomicUsize = AtomicUsize::new(0);
static IRQ_HOOK: AtomicUsize = AtomicUsize::new(0);

pub fn set_sync_hook(hook: Option<SyncHook>) {
    SYNC_HOOK.store(hook.map_or(0, |f| f as usize), Ordering::Release);
}

pub fn set_irq_hook(hook: Option<IrqHook>) {
    IRQ_HOOK.store(hook.map_or(0, |f| f as usize), Ordering::Release);
}

fn sync_hook() -> Option<SyncHook> {
    let raw = SYNC_HOOK.load(Ordering::Acquire);
    // SAFETY: a non-zero value was stored by `set_sync_hook` from a `SyncHook`, and function
    // pointers and `usize` have the same size on this target.
    (raw != 0).then(|| unsafe { core::mem::transmute::<usize, SyncHook>(raw) })
}

fn irq_hook() -> Option<IrqHook> {
    let raw = IRQ_HOOK.load(Ordering::Acquire);
    // SAFETY: as in `sync_hook`, only `set_irq_hook` stores non-zero values, from an `IrqHook`.
    (raw != 0).then(|| unsafe { core::mem::transmute::<usize, IrqHook>(raw) })
}

/// Unmasks IRQs on this vCPU (PSTATE.I = 0).
pub fn enable_irqs() {
    // SAFETY: only changes the interrupt mask; handlers run on the current stack and restore it.
    unsafe { core::arch::asm!("msr daifclr, #2", options(nostack)) };
}

/// Masks IRQs on this vCPU.
pub fn disable_irqs() {
    // SAFETY: only changes the interrupt mask.
    unsafe { core::arch::asm!("msr daifset, #2", options(nostack)) };
}

/// Waits in WFI while `waiting()` holds, taking interrupts in between; returns with IRQs
/// unmasked. IRQs are masked from each check to its WFI (which still wakes on a pending
/// interrupt): with them unmasked, an interrupt taken just after the check would leave the WFI
/// waiting for the next one, which may never come.
pub fn wait_for_interrupt_while(mut waiting: impl FnMut() -> bool) {
    loop {
        disable_irqs();
        if !waiting() {
            break;
        }
        wait_for_interrupt();
        enable_irqs();
    }
    enable_irqs();
}

/// Waits for an interrupt (it may also return spuriously; callers loop on a condition, and
/// with IRQs unmasked must mind the race [`wait_for_interrupt_while`] avoids).
pub fn wait_for_interrupt() {
    // SAFETY: WFI only suspends execution until an interrupt or event.
    unsafe { core::arch::asm!("dsb sy", "wfi", options(nostack)) };
}

/// Vector kinds, in table order: group (current EL with SP_EL0, current EL with SP_ELx, lower EL
/// AArch64, lower EL AArch32) times type (sync, IRQ, FIQ, SError).
const KIND_NAMES: [&str; 4] = ["sync", "IRQ", "FIQ", "SError"];
const GROUP_NAMES: [&str; 4] = ["EL1t", "EL1h", "EL0 64-bit", "EL0 32-bit"];
const KIND_SYNC: u64 = 0;
const KIND_IRQ: u64 = 1;
const GROUP_EL1H: u64 = 1;

#[unsafe(no_mangle)]
extern "C" fn rust_exception(vector: u64, frame: &mut Frame) {
    let (group, kind) = (vector / 4, vector % 4);
    if group == GROUP_EL1H && kind == KIND_IRQ {
        return handle_irq();
    }
    let syndrome = Syndrome {
        esr: read_esr(),
        far: read_far(),
    };
    if group == GROUP_EL1H && kind == KIND_SYNC && sync_hook().is_some_and(|h| h(frame, syndrome)) {
        return;
    }
    report::error(format_args!(
        "unexpected {} exception from {}: ESR_EL1 {:#x} (EC {:#x}), FAR_EL1 {:#x}, ELR_EL1 {:#x}",
        KIND_NAMES[kind as usize],
        GROUP_NAMES[group as usize],
        syndrome.esr,
        syndrome.class(),
        syndrome.far,
        frame.elr
    ));
}

fn handle_irq() {
    let intid = gic::acknowledge();
    if gic::is_spurious(intid) {
        return;
    }
    if intid == timer::VTIMER_INTID && timer::take_watchdog() {
        return gic::end_of_interrupt(intid);
    }
    match irq_hook() {
        Some(hook) => hook(intid),
        None => report::error(format_args!("interrupt {intid} with no IRQ hook installed")),
    }
    gic::end_of_interrupt(intid);
}

fn read_esr() -> u64 {
    let v: u64;
    // SAFETY: reading ESR_EL1 has no side effects.
    unsafe { core::arch::asm!("mrs {}, esr_el1", out(reg) v, options(nomem, nostack)) };
    v
}

fn read_far() -> u64 {
    let v: u64;
    // SAFETY: reading FAR_EL1 has no side effects.
    unsafe { core::arch::asm!("mrs {}, far_el1", out(reg) v, options(nomem, nostack)) };
    v
}

// Each vector saves x0/x1, puts its index in x0 and joins the common path, which saves the rest
// and passes the frame (the stack pointer) as the second argument.
macro_rules! vector_table {
    ($($n:literal)*) => {
        core::arch::global_asm!(
            ".section .text.vectors, \"ax\"",
            ".balign 0x800",
            ".global exception_vectors",
            "exception_vectors:",
            $(
                ".balign 0x80",
                "sub sp, sp, #{frame}",
                "stp x0, x1, [sp]",
                concat!("mov x0, #", $n),
                "b exception_common",
            )*
            "exception_common:",
            "stp x2, x3, [sp, #16]",
            "stp x4, x5, [sp, #32]",
            "stp x6, x7, [sp, #48]",
            "stp x8, x9, [sp, #64]",
            "stp x10, x11, [sp, #80]",
            "stp x12, x13, [sp, #96]",
            "stp x14, x15, [sp, #112]",
            "stp x16, x17, [sp, #128]",
            "stp x18, x19, [sp, #144]",
            "stp x20, x21, [sp, #160]",
            "stp x22, x23, [sp, #176]",
            "stp x24, x25, [sp, #192]",
            "stp x26, x27, [sp, #208]",
            "stp x28, x29, [sp, #224]",
            "mrs x9, elr_el1",
            "mrs x10, spsr_el1",
            "stp x30, x9, [sp, #240]",
            "str x10, [sp, #256]",
            "mov x1, sp",
            "bl rust_exception",
            "ldp x30, x9, [sp, #240]",
            "ldr x10, [sp, #256]",
            "msr elr_el1, x9",
            "msr spsr_el1, x10",
            "ldp x0, x1, [sp]",
            "ldp x2, x3, [sp, #16]",
            "ldp x4, x5, [sp, #32]",
            "ldp x6, x7, [sp, #48]",
            "ldp x8, x9, [sp, #64]",
            "ldp x10, x11, [sp, #80]",
            "ldp x12, x13, [sp, #96]",
            "ldp x14, x15, [sp, #112]",
            "ldp x16, x17, [sp, #128]",
            "ldp x18, x19, [sp, #144]",
            "ldp x20, x21, [sp, #160]",
            "ldp x22, x23, [sp, #176]",
            "ldp x24, x25, [sp, #192]",
            "ldp x26, x27, [sp, #208]",
            "ldp x28, x29, [sp, #224]",
            "add sp, sp, #{frame}",
            "eret",
            frame = const FRAME_SIZE,
        );
    };
}

vector_table!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
