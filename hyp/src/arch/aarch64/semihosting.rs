//! Arm semihosting, used only to end a QEMU run with a status (QEMU started with -semihosting).

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
"#
);

unsafe extern "C" {
    /// Semihosting operation `op` with parameter `arg` (x0, x1); returns x0.
    fn semihosting_call(op: u64, arg: *const u64) -> u64;
    static semihosting_hlt: u8;
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
