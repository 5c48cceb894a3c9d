//! `memtest MIB`: maps MIB MiB of anonymous memory, fills it twice with a pattern unique to
//! each word and pass (derived from the word's index and a per-pass seed), and reads it back
//! after each fill. Prints `memtest: PASS ...` and exits 0, or `memtest: FAIL ...` naming the
//! first bad word and exits 1. A page mapped twice, a lost write or a stale page after the
//! second fill all show up as a word holding another word's or another pass's value.

#![no_std]
#![no_main]

use linux_progs::{print, print_dec, print_hex};

linux_progs::entry!(main);

const SEEDS: [u64; 2] = [0x5555_aaaa_0f0f_f0f0, 0x0123_4567_89ab_cdef];

fn pattern(index: usize, seed: u64) -> u64 {
    (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ seed
}

fn main(args: linux_progs::Args) -> i32 {
    let Some(mib) = args.get(1).and_then(linux_progs::parse_dec) else {
        print(b"usage: memtest MIB\n");
        return 2;
    };
    let len = (mib as usize) << 20;
    let words = len / 8;
    let Some(base) = linux_progs::mmap_anonymous(len) else {
        print(b"memtest: FAIL cannot map ");
        print_dec(mib);
        print(b" MiB\n");
        return 1;
    };
    for seed in SEEDS {
        for i in 0..words {
            // SAFETY: `i` < `words`, inside the mapping made above.
            unsafe { base.add(i).write_volatile(pattern(i, seed)) };
        }
        for i in 0..words {
            // SAFETY: as above.
            let got = unsafe { base.add(i).read_volatile() };
            let want = pattern(i, seed);
            if got != want {
                print(b"memtest: FAIL at byte offset ");
                print_hex((i * 8) as u64);
                print(b": read ");
                print_hex(got);
                print(b", wrote ");
                print_hex(want);
                print(b"\n");
                return 1;
            }
        }
    }
    print(b"memtest: PASS wrote and verified ");
    print_dec(mib);
    print(b" MiB twice\n");
    0
}
