//! Where the linker and the entry code put things: image bounds, section groups, per-CPU stacks.
//!
//! Each CPU owns one stack slot in `.bss.stacks`, laid out from low to high addresses as
//! `[guard][stack][guard][exception stack]`. Normal code runs on the stack with SP_EL0
//! (SPSel = 0); exceptions switch to SP_EL2, the exception stack. The guard pages are left out of
//! the EL2 stage-1 map, so overflowing either stack faults, and an overflow of the normal stack is
//! still reported because the handler runs on the other one.

use crate::mm::addr::{PAGE_SIZE, Pa};

/// CPUs this build can bring up; further CPUs in the DTB are reported and left off.
pub const MAX_CPUS: usize = 16;
pub const GUARD_SIZE: usize = PAGE_SIZE as usize;
pub const STACK_SIZE: usize = 8 * PAGE_SIZE as usize;
pub const EXC_STACK_SIZE: usize = 4 * PAGE_SIZE as usize;
/// Bytes per CPU slot: guard, stack, guard, exception stack.
pub const STACK_SLOT_SIZE: usize = GUARD_SIZE + STACK_SIZE + GUARD_SIZE + EXC_STACK_SIZE;
/// Offset of the initial SP_EL0 (the normal stack's top) in a slot.
pub const STACK_TOP_OFFSET: usize = GUARD_SIZE + STACK_SIZE;
/// Offset of the initial SP_EL2 (the exception stack's top) in a slot.
pub const EXC_STACK_TOP_OFFSET: usize = STACK_SLOT_SIZE;

const _: () = assert!(STACK_SLOT_SIZE.is_multiple_of(PAGE_SIZE as usize));
// The entry code adds these with one `add #imm, lsl #12`-free immediate each.
const _: () = assert!(STACK_TOP_OFFSET < (1 << 24) && EXC_STACK_TOP_OFFSET < (1 << 24));

unsafe extern "C" {
    static __image_start: u8;
    static __text_end: u8;
    static __rodata_end: u8;
    static __bss_start: u8;
    static __bss_end: u8;
    static __image_end: u8;
    static __stacks_start: u8;
}

/// The address of a linker symbol. Under the identity map (and with the MMU off) a symbol's
/// virtual address is its physical address.
fn sym(s: &u8) -> Pa {
    Pa::new(core::ptr::from_ref(s) as u64)
}

/// Physical address range `[start, end)` of one part of the image.
#[derive(Clone, Copy, Debug)]
pub struct Span {
    pub start: Pa,
    pub end: Pa,
}

/// The image's parts, with the permissions each gets in the EL2 map.
#[derive(Clone, Copy, Debug)]
pub struct ImageLayout {
    /// Header and code: read + execute.
    pub text: Span,
    /// Read-only data and relocation tables: read, never execute.
    pub rodata: Span,
    /// .data, .bss, stacks, heap, page tables: read + write, never execute.
    pub data: Span,
    /// .bss alone (zeroed by the entry code).
    pub bss: Span,
    /// First stack slot (CPU 0); slot `i` follows at `i * STACK_SLOT_SIZE`.
    pub stacks: Pa,
}

impl ImageLayout {
    pub fn get() -> Self {
        // SAFETY: the linker script defines every symbol below; only their addresses are taken,
        // never their (nonexistent) contents.
        unsafe {
            Self {
                text: Span {
                    start: sym(&__image_start),
                    end: sym(&__text_end),
                },
                rodata: Span {
                    start: sym(&__text_end),
                    end: sym(&__rodata_end),
                },
                data: Span {
                    start: sym(&__rodata_end),
                    end: sym(&__image_end),
                },
                bss: Span {
                    start: sym(&__bss_start),
                    end: sym(&__bss_end),
                },
                stacks: sym(&__stacks_start),
            }
        }
    }

    /// The whole image, header to end of .bss.
    pub fn image(&self) -> Span {
        Span {
            start: self.text.start,
            end: self.data.end,
        }
    }

    /// The two guard pages of CPU slot `cpu`.
    pub fn guard_pages(&self, cpu: usize) -> [Pa; 2] {
        let slot = self.stacks.raw() + (cpu * STACK_SLOT_SIZE) as u64;
        [
            Pa::new(slot),
            Pa::new(slot + (GUARD_SIZE + STACK_SIZE) as u64),
        ]
    }
}
