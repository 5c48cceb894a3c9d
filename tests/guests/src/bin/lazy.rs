//! lazy: guest RAM that is touched for the first time reads as zero and keeps what is written.
//!
//! Under the hypervisor guest RAM is mapped on demand by stage-2 faults, so this walks up to
//! 32 MiB of RAM past the image a page at a time: writes a few words per 4 KiB page (address-
//! dependent values, so a page mapped twice or at the wrong frame shows), reads them all back,
//! checks the words it did not write in those pages are still zero, and then that every word
//! of the RAM it never wrote (to the end of RAM from the DTB, minus the DTB itself) is zero.
//! A failure points at the hypervisor's stage-2 fault path (wrong frame, lost mapping, a frame
//! not zeroed before it is given to the VM: a leak of another VM's or the hypervisor's data).
#![no_std]
#![no_main]

use core::ops::Range;

use test_guests::fdt::Fdt;
use test_guests::{check, println, report};

test_guests::test_main!(main);

const PAGE: u64 = 4096;
const BLOCK: u64 = 2 << 20;
const WRITE_BYTES: u64 = 32 << 20;
const PATTERN: u64 = 0x6c61_7a79_0000_0000;
/// Word offsets written in every page: both ends, the middle, one odd spot.
const WRITTEN: [u64; 4] = [0, 8, 2048, PAGE - 8];
/// Word offsets in written pages that must stay zero.
const UNWRITTEN: [u64; 3] = [16, 1024, PAGE - 16];

fn value(addr: u64) -> u64 {
    PATTERN ^ addr.rotate_left(17)
}

fn read(addr: u64) -> u64 {
    // SAFETY: `addr` is an 8-byte aligned RAM address outside this image and the DTB (see
    // `main`), so nothing else uses it; volatile keeps every access a real first touch.
    unsafe { core::ptr::read_volatile(addr as *const u64) }
}

fn write(addr: u64, v: u64) {
    // SAFETY: as in `read`.
    unsafe { core::ptr::write_volatile(addr as *mut u64, v) }
}

fn overlaps(a: &Range<u64>, b: &Range<u64>) -> bool {
    a.start < b.end && b.start < a.end
}

fn main() -> ! {
    let dtb_at = test_guests::boot_dtb();
    let fdt = match Fdt::at(dtb_at) {
        Ok(f) => f,
        Err(e) => report::error(format_args!("no usable boot DTB at {dtb_at:#x}: {e:?}")),
    };
    let ram = match fdt.memory() {
        Ok(r) => r,
        Err(e) => report::error(format_args!("cannot find RAM in the boot DTB: {e:?}")),
    };
    let dtb = (dtb_at & !(PAGE - 1))..(dtb_at + fdt.size() as u64).next_multiple_of(PAGE);
    let image = test_guests::image_range();
    let start = image.end.next_multiple_of(BLOCK);
    // Only the RAM block of the identity map is Normal memory (see mmu.rs).
    let end = ram.end.min(test_guests::RAM_BASE + (1 << 30));
    if start + WRITE_BYTES > end {
        report::skip(format_args!(
            "RAM {:#x}..{:#x} leaves less than {} MiB past the image",
            ram.start,
            ram.end,
            WRITE_BYTES >> 20
        ));
    }
    let written = start..start + WRITE_BYTES;
    println!(
        "lazy: RAM {:#x}..{:#x}, image {:#x}..{:#x}, DTB {:#x}..{:#x}; writing {:#x}..{:#x}",
        ram.start, ram.end, image.start, image.end, dtb.start, dtb.end, written.start, written.end
    );

    let pages = || {
        (written.start..written.end)
            .step_by(PAGE as usize)
            .filter(|p| !overlaps(&(*p..p + PAGE), &dtb))
    };
    for page in pages() {
        for off in WRITTEN {
            write(page + off, value(page + off));
        }
    }
    let mut count = 0u64;
    for page in pages() {
        for off in WRITTEN {
            let (addr, got) = (page + off, read(page + off));
            check!(
                got == value(addr),
                "{addr:#x} reads {got:#x}, wrote {:#x}",
                value(addr)
            );
        }
        for off in UNWRITTEN {
            let (addr, got) = (page + off, read(page + off));
            check!(
                got == 0,
                "{addr:#x} (never written, in a written page) reads {got:#x}"
            );
        }
        count += 1;
    }
    println!("lazy: {count} pages written and read back");

    let mut zero_pages = 0u64;
    for page in (written.end..end).step_by(PAGE as usize) {
        if overlaps(&(page..page + PAGE), &dtb) {
            continue;
        }
        for addr in (page..page + PAGE).step_by(8) {
            let got = read(addr);
            check!(got == 0, "{addr:#x} (never written) reads {got:#x}, want 0");
        }
        zero_pages += 1;
    }
    println!("lazy: {zero_pages} never-written pages read as zero");
    report::success()
}
