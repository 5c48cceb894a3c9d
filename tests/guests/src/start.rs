//! The arm64 Image header and the first instructions of every vCPU.
//!
//! Boot vCPU (`_start`, entered per Linux's booting.rst: EL1h, MMU off, x0 = DTB address):
//! turn the identity MMU on (`mmu.rs`), zero .bss, take this vCPU's stack, install the vectors,
//! call `rust_boot(dtb)`. Secondary vCPUs (`secondary_entry`, started by PSCI CPU_ON with
//! x0 = context id) do the same minus the .bss clearing and call `rust_secondary(context)`.
//! Stacks are picked by MPIDR_EL1.Aff0, so a vCPU needs no memory to find its own.

use crate::cpu::{MAX_CPUS, STACK_SIZE};
use crate::mmu;

core::arch::global_asm!(
    r#"
    .section .text.head, "ax"
    .global _start
_start:
    /* arm64 Image header (Linux Documentation/arch/arm64/booting.rst). */
    b       1f                      /* code0: branch to the entry code */
    .long   0                       /* code1 */
    .quad   0x80000                 /* text_offset: both loaders put us at RAM base + this */
    .quad   __image_size            /* image_size: file + .bss, so the loader keeps it free */
    .quad   0x2                     /* flags: LE, 4K pages, base near the start of RAM
                                       (bit 3 clear: not relocatable, linked for 0x40080000) */
    .quad   0                       /* res2 */
    .quad   0                       /* res3 */
    .quad   0                       /* res4 */
    .ascii  "ARM\x64"               /* magic */
    .long   0                       /* res5: no PE/COFF header */

1:  msr     daifset, #0xf
    mov     x19, x0                 /* DTB address, kept for rust_boot */
    bl      mmu_on

    adrp    x9, __bss_start
    add     x9, x9, :lo12:__bss_start
    adrp    x10, __bss_end
    add     x10, x10, :lo12:__bss_end
2:  cmp     x9, x10
    b.hs    3f
    stp     xzr, xzr, [x9], #16
    b       2b
3:  bl      cpu_setup
    mov     x0, x19
    bl      rust_boot
    b       park

    .section .text, "ax"
    .global secondary_entry
    .balign 4
secondary_entry:
    msr     daifset, #0xf
    mov     x19, x0                 /* PSCI context id */
    bl      mmu_on
    bl      cpu_setup
    mov     x0, x19
    bl      rust_secondary
    b       park

/* Stack and vectors for this vCPU; a vCPU without a stack slot (Aff0 >= MAX_CPUS, or any of
   Aff1..Aff3 set) parks rather than share one. Clobbers x9, x10. */
cpu_setup:
    mrs     x9, mpidr_el1
    ubfx    x10, x9, #8, #16
    cbnz    x10, park
    ubfx    x10, x9, #32, #8
    cbnz    x10, park
    and     x9, x9, #0xff
    cmp     x9, #{max_cpus}
    b.hs    park
    add     x9, x9, #1
    mov     x10, #{stack_size}
    mul     x9, x9, x10
    adrp    x10, guest_stacks
    add     x10, x10, :lo12:guest_stacks
    add     x9, x10, x9
    mov     sp, x9
    adrp    x9, exception_vectors
    add     x9, x9, :lo12:exception_vectors
    msr     vbar_el1, x9
    isb
    ret

/* Identity map on, caches on (see mmu.rs). Uses no memory but the table. Clobbers x9. */
mmu_on:
    ldr     x9, ={mair}
    msr     mair_el1, x9
    ldr     x9, ={tcr}
    msr     tcr_el1, x9
    adrp    x9, IDMAP
    add     x9, x9, :lo12:IDMAP
    msr     ttbr0_el1, x9
    isb
    tlbi    vmalle1
    dsb     nsh
    isb
    ldr     x9, ={sctlr}
    msr     sctlr_el1, x9
    isb
    ret

    .global park
park:
    msr     daifset, #0xf
4:  wfe
    b       4b

    .section .bss.stacks, "aw", %nobits
    .balign 16
guest_stacks:
    .space  {stacks_bytes}
    "#,
    max_cpus = const MAX_CPUS,
    stack_size = const STACK_SIZE,
    stacks_bytes = const MAX_CPUS * STACK_SIZE,
    mair = const mmu::MAIR,
    tcr = const mmu::TCR,
    sctlr = const mmu::SCTLR,
);
