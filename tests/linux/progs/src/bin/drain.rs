//! `drain`: waits until everything written to standard output (the console) has left the UART,
//! so the `poweroff -f` an init script runs next loses none of its last lines. A tty keeps
//! output in a buffer that its driver sends as the UART's FIFO empties, and a forced power-off
//! drops what is still there: on a loaded host the test scripts' final `workload: PASS` was
//! lost that way. Waiting follows the guest's UART, not a clock. Exits 0, or 1 with a message
//! if standard output is not a terminal that can drain.

#![no_std]
#![no_main]

linux_progs::entry!(main);

fn main(_: linux_progs::Args) -> i32 {
    let ret = linux_progs::tcdrain(1);
    if ret < 0 {
        linux_progs::print(b"drain: tcdrain failed, errno ");
        linux_progs::print_dec(ret.unsigned_abs() as u64);
        linux_progs::print(b"\n");
        return 1;
    }
    0
}
