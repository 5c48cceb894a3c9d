//! Prints `argv[1]`, the virtual counter in decimal and a newline on stdout, then exits 0.
//! Linux starts `_start` with the stack pointer at `argc`, followed by the `argv` pointers.

#![no_std]
#![no_main]

use core::arch::{asm, global_asm};

const SYS_WRITE: usize = 64;
const SYS_EXIT_GROUP: usize = 94;

global_asm!(
    ".section .text._start, \"ax\"",
    ".global _start",
    "_start:",
    "mov x0, sp",
    "bl {main}",
    main = sym main,
);

/// `stack` is the initial stack pointer: `argc`, then `argc` argument pointers.
extern "C" fn main(stack: *const usize) -> ! {
    // Read first, so nothing the program does is counted.
    let ticks = cntvct();
    // SAFETY: Linux puts argc at the initial stack pointer.
    let argc = unsafe { stack.read() };
    if argc > 1 {
        // SAFETY: argv[1] follows argc and argv[0] and is a NUL-terminated string.
        let arg = unsafe { stack.add(2).read() } as *const u8;
        let mut len = 0;
        // SAFETY: reads stop at the string's NUL terminator.
        while unsafe { arg.add(len).read() } != 0 {
            len += 1;
        }
        write(arg, len);
    }
    let mut digits = [0u8; 21];
    let mut at = digits.len() - 1;
    digits[at] = b'\n';
    let mut n = ticks;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    write(digits[at..].as_ptr(), digits.len() - at);
    exit(0)
}

fn cntvct() -> u64 {
    let ticks: u64;
    // SAFETY: Linux sets CNTKCTL_EL1.EL0VCTEN, so EL0 may read the virtual counter; the ISB
    // keeps the read from being hoisted before earlier instructions.
    unsafe { asm!("isb", "mrs {}, cntvct_el0", out(reg) ticks, options(nomem, nostack)) };
    ticks
}

fn write(buf: *const u8, len: usize) {
    // SAFETY: write(2) on stdout reads `len` bytes at `buf`, which the callers own.
    unsafe {
        asm!("svc #0", in("x8") SYS_WRITE, inlateout("x0") 1usize => _, in("x1") buf, in("x2") len,
             options(nostack))
    };
}

fn exit(code: usize) -> ! {
    // SAFETY: exit_group(2) does not return.
    unsafe { asm!("svc #0", in("x8") SYS_EXIT_GROUP, in("x0") code, options(noreturn, nostack)) }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    exit(1)
}
