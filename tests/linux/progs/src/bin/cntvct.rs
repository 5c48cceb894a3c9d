//! `cntvct [PREFIX]`: prints PREFIX, the virtual counter in decimal and a newline.

#![no_std]
#![no_main]

linux_progs::entry!(main);

fn main(args: linux_progs::Args) -> i32 {
    // Read first, so nothing the program does is counted.
    let ticks = linux_progs::cntvct();
    if let Some(prefix) = args.get(1) {
        linux_progs::print(prefix);
    }
    linux_progs::print_dec(ticks);
    linux_progs::print(b"\n");
    0
}
