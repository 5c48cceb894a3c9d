//! The runtime of the initramfs programs: the process entry point, the few Linux system calls
//! they make, and decimal/hex output (straight to stdout, or gathered into a [`Line`] that is
//! written with one `write`, so lines from several processes never mix). Each program defines
//! `fn main(args: Args) -> i32` with [`entry!`].

#![no_std]

use core::arch::asm;

const SYS_OPENAT: usize = 56;
const SYS_CLOSE: usize = 57;
const SYS_IOCTL: usize = 29;
const SYS_READ: usize = 63;
const SYS_PREAD64: usize = 67;
const SYS_WRITE: usize = 64;
const SYS_NANOSLEEP: usize = 101;
const SYS_EXIT_GROUP: usize = 94;
const SYS_CLOCK_GETTIME: usize = 113;
const SYS_CLONE: usize = 220;
const SYS_MMAP: usize = 222;
const SYS_MLOCK: usize = 228;
const SYS_MADVISE: usize = 233;
const SYS_WAIT4: usize = 260;

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

    /// How many arguments there are, the program included.
    pub fn len(&self) -> usize {
        // SAFETY: Linux puts argc at the initial stack pointer.
        unsafe { self.stack.read() }
    }

    /// Whether there are no arguments at all, not even the program's name.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
    print(dec(n, &mut digits));
}

/// Writes `n` as `0x` and 16 hex digits to stdout.
pub fn print_hex(n: u64) {
    print(&hex(n));
}

/// `n` in decimal, in the tail of `digits`.
fn dec(n: u64, digits: &mut [u8; 20]) -> &[u8] {
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
    &digits[at..]
}

/// `n` as `0x` and 16 hex digits.
fn hex(n: u64) -> [u8; 18] {
    let mut out = *b"0x0000000000000000";
    for i in 0..16 {
        let nibble = (n >> (60 - 4 * i)) & 0xf;
        out[2 + i] = b"0123456789abcdef"[nibble as usize];
    }
    out
}

/// One line of output built up on the stack and written with a single write(2), so that
/// processes printing at once never split each other's lines. What does not fit is dropped.
pub struct Line {
    buf: [u8; 160],
    len: usize,
}

impl Default for Line {
    fn default() -> Self {
        Self::new()
    }
}

impl Line {
    pub fn new() -> Self {
        Self {
            buf: [0; 160],
            len: 0,
        }
    }

    pub fn text(&mut self, bytes: &[u8]) -> &mut Self {
        let n = bytes.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
        self
    }

    pub fn dec(&mut self, n: u64) -> &mut Self {
        let mut digits = [0u8; 20];
        self.text(dec(n, &mut digits))
    }

    pub fn hex(&mut self, n: u64) -> &mut Self {
        self.text(&hex(n))
    }

    /// `n` in hex without `0x` or leading zeros, for compact machine-read lines.
    pub fn hex_short(&mut self, n: u64) -> &mut Self {
        let digits = hex(n);
        let first = digits[2..17]
            .iter()
            .position(|&d| d != b'0')
            .map_or(17, |p| p + 2);
        self.text(&digits[first..])
    }

    /// Bytes gathered so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Ends the line with a newline (kept even when the line is full) and writes it.
    pub fn print(&mut self) {
        if self.len == self.buf.len() {
            self.len -= 1;
        }
        self.buf[self.len] = b'\n';
        print(&self.buf[..=self.len]);
        self.len = 0;
    }
}

/// Parses a decimal number, or a hexadecimal one after `0x`.
pub fn parse_num(s: &[u8]) -> Option<u64> {
    let Some(digits) = s.strip_prefix(b"0x") else {
        return parse_dec(s);
    };
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &c| {
        let d = (c as char).to_digit(16)?;
        Some(acc << 4 | u64::from(d))
    })
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
    const MAP_PRIVATE: usize = 0x02;
    mmap(len, MAP_PRIVATE)
}

/// Maps `len` bytes of anonymous memory shared with the children this process forks later,
/// read-write, or `None` if Linux refuses.
pub fn mmap_shared_anonymous(len: usize) -> Option<*mut u64> {
    const MAP_SHARED: usize = 0x01;
    mmap(len, MAP_SHARED)
}

fn mmap(len: usize, sharing: usize) -> Option<*mut u64> {
    const PROT_READ_WRITE: usize = 0x3;
    const MAP_ANONYMOUS: usize = 0x20;
    let ret: isize;
    // SAFETY: a new anonymous mapping touches no existing memory.
    unsafe {
        asm!("svc #0", in("x8") SYS_MMAP, inlateout("x0") 0usize => ret, in("x1") len,
             in("x2") PROT_READ_WRITE, in("x3") sharing | MAP_ANONYMOUS, in("x4") -1isize,
             in("x5") 0usize, options(nostack))
    };
    // Errors are -4095..=-1.
    (!(-4095..0).contains(&ret)).then_some(ret as *mut u64)
}

/// Locks `len` bytes from `addr` into RAM (mlock(2)), faulting them in: 0 or the negative errno.
pub fn mlock(addr: *const u64, len: usize) -> isize {
    let ret: isize;
    // SAFETY: mlock(2) changes no memory contents, only whether the pages may be swapped out.
    unsafe {
        asm!("svc #0", in("x8") SYS_MLOCK, inlateout("x0") addr => ret, in("x1") len,
             options(nostack))
    };
    ret
}

/// madvise(2) `advice` for `len` bytes from `addr`: 0 or the negative errno.
pub fn madvise(addr: *const u64, len: usize, advice: usize) -> isize {
    let ret: isize;
    // SAFETY: the callers' advice (e.g. MADV_NOHUGEPAGE) changes how pages are backed, never
    // their contents.
    unsafe {
        asm!("svc #0", in("x8") SYS_MADVISE, inlateout("x0") addr => ret, in("x1") len,
             in("x2") advice, options(nostack))
    };
    ret
}

/// Opens `path` read-only: the file descriptor or the negative errno.
pub fn open_read(path: &core::ffi::CStr) -> isize {
    const AT_FDCWD: isize = -100;
    const O_RDONLY: usize = 0;
    let ret: isize;
    // SAFETY: openat(2) reads the NUL-terminated path, which lives until it returns.
    unsafe {
        asm!("svc #0", in("x8") SYS_OPENAT, inlateout("x0") AT_FDCWD => ret,
             in("x1") path.as_ptr(), in("x2") O_RDONLY, in("x3") 0usize, options(nostack))
    };
    ret
}

/// Reads up to `buf.len()` bytes of `fd` at `offset` (pread64(2)): the byte count or the
/// negative errno.
pub fn pread(fd: isize, buf: &mut [u8], offset: u64) -> isize {
    let ret: isize;
    // SAFETY: pread64(2) writes at most `buf.len()` bytes to `buf`, which we own.
    unsafe {
        asm!("svc #0", in("x8") SYS_PREAD64, inlateout("x0") fd => ret,
             in("x1") buf.as_mut_ptr(), in("x2") buf.len(), in("x3") offset, options(nostack))
    };
    ret
}

/// Reads up to `buf.len()` bytes of `fd` (read(2)): the byte count (0 at end of file) or the
/// negative errno.
pub fn read(fd: isize, buf: &mut [u8]) -> isize {
    let ret: isize;
    // SAFETY: read(2) writes at most `buf.len()` bytes to `buf`, which we own.
    unsafe {
        asm!("svc #0", in("x8") SYS_READ, inlateout("x0") fd => ret,
             in("x1") buf.as_mut_ptr(), in("x2") buf.len(), options(nostack))
    };
    ret
}

/// Waits until everything written to terminal `fd` has been transmitted (tcdrain(3): the
/// TCSBRK ioctl with a non-zero argument sends no break). 0 or the negative errno.
pub fn tcdrain(fd: isize) -> isize {
    const TCSBRK: usize = 0x5409;
    let ret: isize;
    // SAFETY: TCSBRK with argument 1 only waits; it reads and writes no memory of ours.
    unsafe {
        asm!("svc #0", in("x8") SYS_IOCTL, inlateout("x0") fd => ret,
             in("x1") TCSBRK, in("x2") 1usize, options(nostack))
    };
    ret
}

/// Closes `fd`.
pub fn close(fd: isize) {
    // SAFETY: closing a descriptor touches no memory of ours.
    unsafe { asm!("svc #0", in("x8") SYS_CLOSE, inlateout("x0") fd => _, options(nostack)) };
}

/// Sleeps for `ns` nanoseconds of guest time (a signal may cut it short).
pub fn sleep_ns(ns: u64) {
    let ts = [(ns / 1_000_000_000) as i64, (ns % 1_000_000_000) as i64];
    // SAFETY: nanosleep(2) reads one struct timespec from `ts`; the remainder pointer is null.
    unsafe {
        asm!("svc #0", in("x8") SYS_NANOSLEEP, inlateout("x0") ts.as_ptr() => _,
             in("x1") 0usize, options(nostack))
    };
}

/// Who runs on after [`fork`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forked {
    /// The new process.
    Child,
    /// The caller, with the child's process ID.
    Parent(i32),
}

/// A copy of this process (`clone(SIGCHLD)`, which is what fork(2) is), or the negative errno.
pub fn fork() -> Result<Forked, isize> {
    const SIGCHLD: usize = 17;
    let ret: isize;
    // SAFETY: without CLONE_VM or a new stack the child gets its own copy of the address space
    // and returns here on its copy of this stack, so neither process sees the other's writes.
    unsafe {
        asm!("svc #0", in("x8") SYS_CLONE, inlateout("x0") SIGCHLD => ret, in("x1") 0usize,
             in("x2") 0usize, in("x3") 0usize, in("x4") 0usize, options(nostack))
    };
    match ret {
        0 => Ok(Forked::Child),
        pid if pid > 0 => Ok(Forked::Parent(pid as i32)),
        errno => Err(errno),
    }
}

/// How a child ended, from wait4(2)'s status word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildExit {
    Exited(u8),
    Signalled(u8),
}

/// Waits for any child to end: its process ID and how it ended, or the negative errno
/// (`-ECHILD` when there are no children left).
pub fn wait_any() -> Result<(i32, ChildExit), isize> {
    let mut status = 0i32;
    let ret: isize;
    // SAFETY: wait4(2) writes the status word to `status`, which lives until it returns; the
    // rusage pointer is null, so it writes nothing else.
    unsafe {
        asm!("svc #0", in("x8") SYS_WAIT4, inlateout("x0") -1isize => ret,
             in("x1") &raw mut status, in("x2") 0usize, in("x3") 0usize, options(nostack))
    };
    if ret < 0 {
        return Err(ret);
    }
    let how = if status & 0x7f == 0 {
        ChildExit::Exited(((status >> 8) & 0xff) as u8)
    } else {
        ChildExit::Signalled((status & 0x7f) as u8)
    };
    Ok((ret as i32, how))
}

/// CLOCK_MONOTONIC in nanoseconds: the guest's own time, which stops while the VM is paused.
pub fn monotonic_ns() -> u64 {
    const CLOCK_MONOTONIC: usize = 1;
    let mut ts = [0i64; 2];
    // SAFETY: clock_gettime(2) writes one struct timespec (two 64-bit fields) to `ts`.
    unsafe {
        asm!("svc #0", in("x8") SYS_CLOCK_GETTIME, inlateout("x0") CLOCK_MONOTONIC => _,
             in("x1") ts.as_mut_ptr(), options(nostack))
    };
    (ts[0] as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts[1] as u64)
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

/// The virtual counter once every earlier memory access has completed (`dsb ish`, then as
/// [`cntvct`]), and before any later one: a write before the call happened before the value
/// read, a write after it after.
pub fn cntvct_fenced() -> u64 {
    let ticks: u64;
    // SAFETY: as in `cntvct`; the barriers only order, and no `nomem`, so the compiler keeps
    // earlier volatile writes before them.
    unsafe { asm!("dsb ish", "isb", "mrs {}, cntvct_el0", out(reg) ticks, options(nostack)) };
    ticks
}

/// The counter's frequency in Hz (CNTFRQ_EL0, readable from EL0).
pub fn cntfrq() -> u64 {
    let hz: u64;
    // SAFETY: reading CNTFRQ_EL0 has no side effects; EL0 may read it when it may read the
    // counter.
    unsafe { asm!("mrs {}, cntfrq_el0", out(reg) hz, options(nomem, nostack)) };
    hz
}
