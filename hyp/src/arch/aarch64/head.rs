//! The arm64 Image header and the first instructions of every CPU.
//!
//! Boot CPU (`_start`, reached from the header's first word with x0 = DTB physical address,
//! MMU off, interrupts masked, at EL2 or, misconfigured, EL1):
//! 1. force a known HCR_EL2/SCTLR_EL2 (E2H=0, MMU and D-cache off) when at EL2;
//! 2. apply our R_AARCH64_RELATIVE relocations for wherever the loader put us;
//! 3. zero .bss; set SP_EL2 to CPU 0's exception stack, switch to SP_EL0 and its normal stack;
//! 4. install the vectors (VBAR_EL2, or VBAR_EL1 if entered at EL1);
//! 5. call `hyp_boot(dtb)` (in main.rs), which checks the EL and never returns.
//!
//! Secondary CPUs (`secondary_entry`, started by PSCI CPU_ON with x0 = logical index) turn the
//! MMU on from `MMU_CONFIG` before touching memory, so they never see stale cache lines through
//! the stack, then set their stacks and vectors and call `secondary_main`.

use super::layout::{EXC_STACK_TOP_OFFSET, MAX_CPUS, STACK_SLOT_SIZE, STACK_TOP_OFFSET};

/// System-register values a CPU loads to join the EL2 map. Written by the boot CPU before it turns
/// its own MMU on and cleaned to the point of coherency before any CPU_ON, because secondaries
/// read it with their MMU (and so their caches) still off.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct MmuConfig {
    pub mair: u64,
    pub tcr: u64,
    pub ttbr0: u64,
    pub sctlr: u64,
}

#[unsafe(no_mangle)]
pub static mut MMU_CONFIG: MmuConfig = MmuConfig {
    mair: 0,
    tcr: 0,
    ttbr0: 0,
    sctlr: 0,
};

/// HCR_EL2 while no guest exists: EL1 is AArch64 (RW) and nothing else is trapped or routed;
/// E2H = 0 so EL2 registers keep their non-VHE layout.
pub const HCR_EL2_NO_GUEST: u64 = 1 << 31;
/// SCTLR_EL2 with the MMU and data cache off, instruction cache on, little-endian: the RES1
/// bits of the non-VHE layout plus I.
pub const SCTLR_EL2_MMU_OFF: u64 = 0x30C5_0830 | (1 << 12);

/// R_AARCH64_RELATIVE, the only dynamic relocation a static PIE of ours contains.
const R_AARCH64_RELATIVE: u64 = 1027;

core::arch::global_asm!(
    r#"
    .section .text.head, "ax"
    .global _start
_start:
    /* arm64 Image header (Linux Documentation/arch/arm64/booting.rst). */
    b       1f                      /* code0: branch to the entry code */
    .long   0                       /* code1 */
    .quad   0                       /* text_offset: loaded at a 2 MiB boundary */
    .quad   __image_size            /* image_size: file + .bss, for the loader's placement */
    .quad   0xa                     /* flags: LE, 4K pages, may be placed anywhere in RAM */
    .quad   0                       /* res2 */
    .quad   0                       /* res3 */
    .quad   0                       /* res4 */
    .ascii  "ARM\x64"               /* magic */
    .long   0                       /* res5: no PE/COFF header */
    .global link_base
link_base:
    .quad   __link_base             /* absolute: the address everything was linked for */

1:  msr     daifset, #0xf
    mov     x19, x0                 /* DTB physical address, kept for hyp_boot */

    mrs     x9, CurrentEL
    cmp     x9, #(2 << 2)
    b.ne    2f
    ldr     x9, ={hcr}
    msr     hcr_el2, x9
    ldr     x9, ={sctlr}
    msr     sctlr_el2, x9
    msr     tpidr_el2, xzr          /* no per-CPU data yet (see percpu.rs) */
    isb
2:
    /* Relocate: x20 = load address - link address. */
    adr     x9, _start
    ldr     x10, link_base
    sub     x20, x9, x10
    adrp    x11, __rela_start
    add     x11, x11, :lo12:__rela_start
    adrp    x12, __rela_end
    add     x12, x12, :lo12:__rela_end
3:  cmp     x11, x12
    b.hs    5f
    ldp     x13, x14, [x11], #16    /* r_offset, r_info */
    ldr     x15, [x11], #8          /* r_addend */
    and     x14, x14, #0xffffffff
    cmp     x14, #{rel}
    b.ne    4f                      /* the link never emits others; ignoring beats hanging */
    add     x15, x15, x20
    str     x15, [x13, x20]
4:  b       3b
5:
    /* Zero .bss (16-byte aligned bounds, see hyp.ld). */
    adrp    x9, __bss_start
    add     x9, x9, :lo12:__bss_start
    adrp    x10, __bss_end
    add     x10, x10, :lo12:__bss_end
6:  cmp     x9, x10
    b.hs    7f
    stp     xzr, xzr, [x9], #16
    b       6b
7:
    /* Stacks of slot 0: SP_EL2 = exception stack, then SP_EL0 = normal stack. */
    adrp    x9, __stacks_start
    add     x9, x9, :lo12:__stacks_start
    ldr     x10, ={exc_top}
    add     x10, x9, x10
    mov     sp, x10
    msr     spsel, #0
    ldr     x10, ={stack_top}
    add     x10, x9, x10
    mov     sp, x10

    adrp    x9, el2_vectors
    add     x9, x9, :lo12:el2_vectors
    mrs     x10, CurrentEL
    cmp     x10, #(2 << 2)
    b.ne    8f
    msr     vbar_el2, x9
    b       9f
8:  adrp    x9, el1_vectors
    add     x9, x9, :lo12:el1_vectors
    msr     vbar_el1, x9
9:  isb
    mov     x0, x19
    bl      hyp_boot
10: wfe
    b       10b

    .section .text.boot, "ax"
    .global secondary_entry
secondary_entry:
    msr     daifset, #0xf
    mov     x19, x0                 /* logical CPU index */
    ldr     x9, ={hcr}
    msr     hcr_el2, x9
    ldr     x9, ={sctlr}
    msr     sctlr_el2, x9
    isb
    adrp    x9, MMU_CONFIG
    add     x9, x9, :lo12:MMU_CONFIG
    ldp     x10, x11, [x9]          /* mair, tcr */
    ldp     x12, x13, [x9, #16]     /* ttbr0, sctlr */
    msr     mair_el2, x10
    msr     tcr_el2, x11
    msr     ttbr0_el2, x12
    isb
    tlbi    alle2
    dsb     nsh
    isb
    msr     sctlr_el2, x13
    isb
    ic      iallu
    dsb     nsh
    isb

    cmp     x19, #{max_cpus}
    b.hs    10b                     /* boot code never starts these; never touch memory */
    adrp    x9, __stacks_start
    add     x9, x9, :lo12:__stacks_start
    ldr     x10, ={slot}
    madd    x9, x19, x10, x9
    ldr     x10, ={exc_top}
    add     x10, x9, x10
    mov     sp, x10
    msr     spsel, #0
    ldr     x10, ={stack_top}
    add     x10, x9, x10
    mov     sp, x10
    adrp    x9, el2_vectors
    add     x9, x9, :lo12:el2_vectors
    msr     vbar_el2, x9
    isb
    mov     x0, x19
    bl      secondary_main
    b       10b

    /*
     * enable_mmu(mair, tcr, ttbr0, sctlr): turn the EL2 stage-1 MMU on. The caller's code, stack
     * and everything it touches next must be identity mapped by ttbr0.
     */
    .global enable_mmu
enable_mmu:
    msr     mair_el2, x0
    msr     tcr_el2, x1
    msr     ttbr0_el2, x2
    isb
    tlbi    alle2
    dsb     nsh
    isb
    msr     sctlr_el2, x3
    isb
    ic      iallu
    dsb     nsh
    isb
    ret

    /* Per-CPU stacks: see layout.rs for the slot layout. */
    .section .bss.stacks, "aw", %nobits
    .balign 4096
    .global __stacks_start
__stacks_start:
    .space  {slot} * {max_cpus}
"#,
    hcr = const HCR_EL2_NO_GUEST,
    sctlr = const SCTLR_EL2_MMU_OFF,
    rel = const R_AARCH64_RELATIVE,
    exc_top = const EXC_STACK_TOP_OFFSET,
    stack_top = const STACK_TOP_OFFSET,
    slot = const STACK_SLOT_SIZE,
    max_cpus = const MAX_CPUS,
);

/// The address the image was linked for (on QEMU virt also where it runs).
pub fn link_base() -> u64 {
    unsafe extern "C" {
        static link_base: u64;
    }
    // SAFETY: `link_base` is a word in the image header holding an absolute linker constant;
    // it is never written.
    unsafe { core::ptr::read_volatile(&raw const link_base) }
}

unsafe extern "C" {
    /// Turns the EL2 MMU on with the given register values.
    ///
    /// # Safety
    /// `ttbr0` must hold a complete identity map of everything the caller runs or touches from
    /// here on, with attributes matching `mair`; the CPU must be at EL2 with the MMU off.
    pub fn enable_mmu(mair: u64, tcr: u64, ttbr0: u64, sctlr: u64);
    /// Where PSCI CPU_ON starts secondaries (x0 = logical CPU index).
    pub fn secondary_entry();
}
