//! The runtime of the initramfs programs: the process entry point, the few Linux system calls
//! they make, and decimal/hex output. Each program defines `fn main(args: Args) -> i32`
//! with [`entry!`].

#![no_std]

use core::arch::asm;

const SYS_WRITE: usize = 64;
const SYS_EXIT_GROUP: usize = 94;
const SYS_MMAP: usize = 222;

/// The program's arguments, from the initial stack: `argc`, then `argc` pointers to
/// NUL-terminated strings.
pub struct Args {
    stack: *const usize,
}

impl Args {
    /// # Safety
    /// `stack` must be the stack pointer Linux started the process with.
    pub unsafe fn from_initial_stack(stack: *const usize) -> Self {
        Self { stack }
    }

    /// Argument `i` (0 is the program), if there is one.
    pub fn get(&self, i: usize) -> Option<&'static [u8]> {
        // SAFETY: Linux puts argc at the initial stack pointer.
        let argc = unsafe { self.stack.read() };
        if i >= argc {
            return None;
        }
        // SAFETY: argv[i] (i < argc) follows argc on the initial stack.
        let arg = unsafe { self.stack.add(1 + i).read() } as *const u8;
        let mut len = 0;
        // SAFETY: the string ends at its NUL terminator, which we stop at.
        while unsafe { arg.add(len).read() } != 0 {
            len += 1;
        }
        // SAFETY: `len` bytes from `arg` are the argument, alive for the whole process.
        Some(unsafe { core::slice::from_raw_parts(arg, len) })
    }
}

/// Defines the process entry point `_start`, calling `$main(Args) -> i32` and exiting with its
/// status.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        core::arch::global_asm!(
            ".section .text._start, \"ax\"",
            ".global _start",
            "_start:",
            "mov x0, sp",
            "bl {start}",
            start = sym __start,
        );

        extern "C" fn __start(stack: *const usize) -> ! {
            // SAFETY: `_start` passes the stack pointer Linux started the process with.
            let args = unsafe { $crate::Args::from_initial_stack(stack) };
            $crate::exit($main(args))
        }

        #[panic_handler]
        fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
            $crate::print(b"panic\n");
            $crate::exit(101)
        }
    };
}

/// Writes `bytes` to stdout.
pub fn print(bytes: &[u8]) {
    let mut rest = bytes;
    while !rest.is_empty() {
        let written: isize;
        // SAFETY: write(2) reads `rest.len()` bytes from `rest`, which we own.
        unsafe {
            asm!("svc #0", in("x8") SYS_WRITE, inlateout("x0") 1isize => written,
                 in("x1") rest.as_ptr(), in("x2") rest.len(), options(nostack))
        };
        if written <= 0 {
            return;
        }
        rest = &rest[written as usize..];
    }
}

/// Writes `n` in decimal to stdout.
pub fn print_dec(n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    print(&digits[at..]);
}

/// Writes `n` as `0x` and 16 hex digits to stdout.
pub fn print_hex(n: u64) {
    let mut out = *b"0x0000000000000000";
    for i in 0..16 {
        let nibble = (n >> (60 - 4 * i)) & 0xf;
        out[2 + i] = b"0123456789abcdef"[nibble as usize];
    }
    print(&out);
}

/// Parses a decimal number.
pub fn parse_dec(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &c| {
        c.is_ascii_digit()
            .then_some(())
            .and(acc.checked_mul(10)?.checked_add(u64::from(c - b'0')))
    })
}

/// Maps `len` bytes of private anonymous memory, read-write, or `None` if Linux refuses.
pub fn mmap_anonymous(len: usize) -> Option<*mut u64> {
    const PROT_READ_WRITE: usize = 0x3;
    const MAP_PRIVATE_ANONYMOUS: usize = 0x02 | 0x20;
    let ret: isize;
    // SAFETY: a new anonymous mapping touches no existing memory.
    unsafe {
        asm!("svc #0", in("x8") SYS_MMAP, inlateout("x0") 0usize => ret, in("x1") len,
             in("x2") PROT_READ_WRITE, in("x3") MAP_PRIVATE_ANONYMOUS, in("x4") -1isize,
             in("x5") 0usize, options(nostack))
    };
    // Errors are -4095..=-1.
    (!(-4095..0).contains(&ret)).then_some(ret as *mut u64)
}

/// Ends the process (all its threads) with `code`.
pub fn exit(code: i32) -> ! {
    // SAFETY: exit_group(2) does not return.
    unsafe {
        asm!("svc #0", in("x8") SYS_EXIT_GROUP, in("x0") code as isize, options(noreturn, nostack))
    }
}

/// The virtual counter.
pub fn cntvct() -> u64 {
    let ticks: u64;
    // SAFETY: Linux sets CNTKCTL_EL1.EL0VCTEN, so EL0 may read the virtual counter; the ISB
    // keeps the read from moving before earlier instructions.
    unsafe { asm!("isb", "mrs {}, cntvct_el0", out(reg) ticks, options(nomem, nostack)) };
    ticks
}
