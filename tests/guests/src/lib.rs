//! Tiny runtime for the bare-metal test guests (Xen XTF style).
//!
//! A guest is an arm64 Image that QEMU can boot directly (`-kernel`, the guest at EL1 on the
//! bare machine) or the hypervisor can boot as a dom0less guest, with the same result line in
//! both cases. The runtime gives it: the Image header and entry code (`start`), an identity MMU
//! (`mmu`), vectors with test hooks (`exceptions`), the console, the RAM range from the DTB
//! (`fdt`), PSCI/SMCCC calls, GICv3, the virtual timer, secondary vCPU start-up (`cpu`) and the
//! result line (`report`).
//!
//! Inline asm that masks interrupts, waits, or changes when an interrupt fires (DAIF, WFI, timer
//! and GIC writes, the counter reads that time memory accesses) deliberately omits `nomem`, so
//! the compiler keeps memory accesses on their side of it, as a memory clobber would in C.
//!
//! A guest binary is `#![no_std] #![no_main]` and names its main function with
//! [`test_main!`]; main ends with a `report` call (the type `-> !` makes sure of it).
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod console;
pub mod cpu;
pub mod exceptions;
pub mod fdt;
pub mod gic;
pub mod mmio;
pub mod mmu;
pub mod psci;
pub mod report;
mod start;
pub mod timer;

use core::sync::atomic::{AtomicU64, Ordering};

/// RAM base in both environments.
pub const RAM_BASE: u64 = 0x4000_0000;

static BOOT_DTB: AtomicU64 = AtomicU64::new(0);

/// The device-tree address the loader passed in x0.
pub fn boot_dtb() -> u64 {
    BOOT_DTB.load(Ordering::Relaxed)
}

unsafe extern "C" {
    static __image_start: u8;
    static __image_end: u8;
}

/// The memory this image occupies once loaded, .bss and stacks included.
pub fn image_range() -> core::ops::Range<u64> {
    // Linker-script symbols: only their addresses mean anything.
    (&raw const __image_start) as u64..(&raw const __image_end) as u64
}

unsafe extern "Rust" {
    /// Defined by [`test_main!`] in each guest binary.
    fn __test_guest_main() -> !;
}

#[unsafe(no_mangle)]
extern "C" fn rust_boot(dtb: u64) -> ! {
    BOOT_DTB.store(dtb, Ordering::Relaxed);
    console::init();
    // SAFETY: every guest binary defines this through `test_main!`, with this signature.
    unsafe { __test_guest_main() }
}

/// Names the guest's main function: `test_guests::test_main!(main);` with `fn main() -> !`.
#[macro_export]
macro_rules! test_main {
    ($main:path) => {
        #[unsafe(no_mangle)]
        fn __test_guest_main() -> ! {
            $main()
        }
    };
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    match info.location() {
        Some(l) => report::error(format_args!(
            "panic: {} ({}:{})",
            info.message(),
            l.file(),
            l.line()
        )),
        None => report::error(format_args!("panic: {}", info.message())),
    }
}
