//! Arm semihosting (QEMU started with -semihosting): ending a run with a status, and files on
//! the host for snapshots. Without semihosting the trap instruction is undefined: for exit the
//! exception handler powers off instead; for file I/O it makes the call fail (`io_hlt_address`).

/// SYS_EXIT_EXTENDED: the parameter block carries the exit code (QEMU passes it to exit(3)).
const SYS_EXIT_EXTENDED: u64 = 0x20;
/// ADP_Stopped_ApplicationExit: with it, the block's second word is the status.
const ADP_STOPPED_APPLICATION_EXIT: u64 = 0x2_0026;

core::arch::global_asm!(
    r#"
    .section .text.semihosting, "ax"
    .global semihosting_call
    .global semihosting_hlt
semihosting_call:
semihosting_hlt:
    hlt     #0xf000
    ret
    .global semihosting_io
    .global semihosting_io_hlt
semihosting_io:
semihosting_io_hlt:
    hlt     #0xf000
    ret
"#
);

unsafe extern "C" {
    /// Semihosting operation `op` with parameter `arg` (x0, x1); returns x0.
    fn semihosting_call(op: u64, arg: *const u64) -> u64;
    static semihosting_hlt: u8;
    /// As `semihosting_call`, for calls that may fail: without semihosting it returns
    /// `u64::MAX` (see `exception::el2_sync_fixup`).
    fn semihosting_io(op: u64, arg: *const u64) -> u64;
    static semihosting_io_hlt: u8;
}

/// Asks the debugger/emulator to exit with `code`. Returns only if the request was ignored;
/// without semihosting the `hlt` is an undefined instruction, which the exception handler
/// recognises by its address (`hlt_address`) and turns into a PSCI shutdown.
pub fn exit(code: u32) {
    let block = [ADP_STOPPED_APPLICATION_EXIT, u64::from(code)];
    // SAFETY: SYS_EXIT_EXTENDED reads the two-word block (alive across the call) and stops the
    // machine; if it returns, it changed no memory of ours.
    unsafe {
        semihosting_call(SYS_EXIT_EXTENDED, block.as_ptr());
    }
}

/// The address of the semihosting trap instruction.
pub fn hlt_address() -> u64 {
    // SAFETY: only the address of the label is taken, never its contents.
    unsafe { core::ptr::from_ref(&semihosting_hlt) as u64 }
}

/// The address of the I/O calls' trap instruction.
pub fn io_hlt_address() -> u64 {
    // SAFETY: only the address of the label is taken, never its contents.
    unsafe { core::ptr::from_ref(&semihosting_io_hlt) as u64 }
}

const SYS_OPEN: u64 = 0x01;
const SYS_CLOSE: u64 = 0x02;
const SYS_WRITE: u64 = 0x05;
const SYS_READ: u64 = 0x06;
const SYS_FLEN: u64 = 0x0c;
/// SYS_OPEN modes (ISO C fopen): "rb" and "wb".
const MODE_READ_BINARY: u64 = 1;
const MODE_WRITE_BINARY: u64 = 5;
/// Longest path passed to the host (the call takes a NUL-terminated copy).
pub const MAX_PATH: usize = 255;

/// Why a host file operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostFileError {
    /// No semihosting (QEMU without `-semihosting`), or the host refused to open the file.
    Open,
    /// The path is empty, too long or contains a NUL.
    BadPath,
    /// The host wrote or read less than asked (disk full, I/O error, file shorter than said).
    Short,
}

impl core::fmt::Display for HostFileError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Open => "the host file cannot be opened (is QEMU running with -semihosting?)",
            Self::BadPath => "the path is empty, longer than 255 bytes or contains a NUL",
            Self::Short => "the host transferred fewer bytes than asked (disk full or I/O error)",
        })
    }
}

/// A file on the host, closed when dropped.
pub struct HostFile {
    handle: u64,
}

impl HostFile {
    fn open(path: &str, mode: u64) -> Result<Self, HostFileError> {
        if path.is_empty() || path.len() > MAX_PATH || path.contains('\0') {
            return Err(HostFileError::BadPath);
        }
        let mut name = [0u8; MAX_PATH + 1];
        name[..path.len()].copy_from_slice(path.as_bytes());
        let block = [name.as_ptr() as u64, mode, path.len() as u64];
        // SAFETY: SYS_OPEN reads the three-word block and the NUL-terminated name, both alive
        // across the call; without semihosting the call returns u64::MAX.
        let handle = unsafe { semihosting_io(SYS_OPEN, block.as_ptr()) };
        if handle == u64::MAX {
            return Err(HostFileError::Open);
        }
        Ok(Self { handle })
    }

    /// Creates (or truncates) `path` on the host for writing.
    pub fn create(path: &str) -> Result<Self, HostFileError> {
        Self::open(path, MODE_WRITE_BINARY)
    }

    /// Opens `path` on the host for reading.
    pub fn open_read(path: &str) -> Result<Self, HostFileError> {
        Self::open(path, MODE_READ_BINARY)
    }

    /// Writes all of `bytes`.
    pub fn write_all(&mut self, bytes: &[u8]) -> Result<(), HostFileError> {
        let block = [self.handle, bytes.as_ptr() as u64, bytes.len() as u64];
        // SAFETY: SYS_WRITE reads `bytes` (alive across the call) through the block.
        let left = unsafe { semihosting_io(SYS_WRITE, block.as_ptr()) };
        if left != 0 {
            return Err(HostFileError::Short);
        }
        Ok(())
    }

    /// Fills all of `buf`.
    pub fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), HostFileError> {
        let block = [self.handle, buf.as_mut_ptr() as u64, buf.len() as u64];
        // SAFETY: SYS_READ writes at most `buf.len()` bytes into `buf`, which is ours.
        let left = unsafe { semihosting_io(SYS_READ, block.as_ptr()) };
        if left != 0 {
            return Err(HostFileError::Short);
        }
        Ok(())
    }

    /// The file's length in bytes.
    pub fn size(&self) -> Result<u64, HostFileError> {
        let block = [self.handle];
        // SAFETY: SYS_FLEN reads the one-word block.
        let n = unsafe { semihosting_io(SYS_FLEN, block.as_ptr()) };
        if n == u64::MAX {
            return Err(HostFileError::Short);
        }
        Ok(n)
    }
}

impl Drop for HostFile {
    fn drop(&mut self) {
        let block = [self.handle];
        // SAFETY: SYS_CLOSE reads the one-word block; the handle is ours and not used again.
        unsafe {
            semihosting_io(SYS_CLOSE, block.as_ptr());
        }
    }
}
