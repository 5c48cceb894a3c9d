//! dirtybench: what dirty logging, harvests and migrations cost the guest, in virtual counter
//! ticks (one instruction each under `-icount shift=4`). The xtask's benchmark runs it under
//! the hypervisor several times, each with other bootargs, on a fixed guest-time schedule:
//!
//! 1. before [`DIRTY_AT_MS`]: one write into each of [`BLOCKS`] 2 MiB blocks (each mapped
//!    whole on first touch) and every page of the busy region;
//! 2. from [`DIRTY_AT_MS`] + [`DIRTY_SETTLE_MS`] (the run with `hyp.dirty=start@DIRTY_AT_MS`
//!    has logging on by then), per block: the first write (a write fault that splits the block),
//!    a write to a second and a third page (plain 4 KiB dirty faults), and a second write to a
//!    written page (no fault: the baseline), printed as medians `dirty-fault-block`,
//!    `dirty-fault-4k`, `dirty-rewrite`;
//! 3. from [`BUSY_START_MS`] to [`BUSY_END_MS`]: a busy loop writing one word per iteration to
//!    the busy region's pages in turn, and making an HVC once per millisecond so the hypervisor
//!    gets its service points (where it migrates and harvests); it prints `busy-iterations`,
//!    which drops by the instructions the hypervisor took from this vCPU, with the window
//!    (`busy-start`, `busy-end` in ms, `busy-window` in ticks).
//!
//! Every wait makes HVCs too: timed bootarg actions only run at a service point. Ends with
//! SUCCESS unless a measurement could not be made (ERROR); it judges no numbers.
#![no_std]
#![no_main]

use test_guests::psci::{self, id};
use test_guests::{fdt, println, report, timer};

test_guests::test_main!(main);

const PAGE: u64 = 4096;
const BLOCK: u64 = 2 << 20;
/// Blocks measured; each gives one block-split sample and two 4 KiB samples.
const BLOCKS: usize = 64;
/// Pages the busy loop writes in turn (more than one harvest's worth of iterations cover).
const BUSY_PAGES: u64 = 2048;
/// When the xtask's run asks for dirty logging (`hyp.dirty=start@DIRTY_AT_MS`).
const DIRTY_AT_MS: u64 = 1000;
const DIRTY_SETTLE_MS: u64 = 50;
const BUSY_START_MS: u64 = 1300;
const BUSY_END_MS: u64 = 1500;
/// Guest RAM the layout needs (the domain gets this much).
const RAM_NEEDED: u64 = 256 << 20;

fn main() -> ! {
    let ram = match fdt::Fdt::at(test_guests::boot_dtb()).and_then(|f| f.memory()) {
        Ok(ram) => ram,
        Err(e) => report::error(format_args!("no memory range in the device tree: {e:?}")),
    };
    let blocks = test_guests::image_range().end.next_multiple_of(BLOCK) + BLOCK;
    let busy = blocks + BLOCKS as u64 * BLOCK;
    if busy + BUSY_PAGES * PAGE > ram.end || ram.end - ram.start < RAM_NEEDED {
        report::error(format_args!(
            "needs {} MiB of RAM, has {:#x}..{:#x}",
            RAM_NEEDED >> 20,
            ram.start,
            ram.end
        ));
    }
    let block = |i: usize| blocks + i as u64 * BLOCK;
    for i in 0..BLOCKS {
        store(block(i) + 3 * PAGE);
    }
    for p in 0..BUSY_PAGES {
        store(busy + p * PAGE);
    }
    if timer::counter() >= ms(DIRTY_AT_MS) {
        report::error(format_args!("setup ran past {DIRTY_AT_MS} ms"));
    }
    serve_until(ms(DIRTY_AT_MS + DIRTY_SETTLE_MS));

    let mut split = [0u64; BLOCKS];
    let mut small = [0u64; 2 * BLOCKS];
    let mut again = [0u64; BLOCKS];
    for i in 0..BLOCKS {
        split[i] = store_ticks(block(i));
        small[2 * i] = store_ticks(block(i) + PAGE);
        small[2 * i + 1] = store_ticks(block(i) + 2 * PAGE);
        again[i] = store_ticks(block(i) + PAGE + 8);
    }
    report_line("dirty-fault-block", median(&mut split));
    report_line("dirty-fault-4k", median(&mut small));
    report_line("dirty-rewrite", median(&mut again));

    if timer::counter() >= ms(BUSY_START_MS) {
        report::error(format_args!(
            "the fault measurements ran past {BUSY_START_MS} ms"
        ));
    }
    serve_until(ms(BUSY_START_MS));
    let iterations = busy_loop(busy, ms(BUSY_END_MS));
    println!("bench: busy-start = {BUSY_START_MS} ms");
    println!("bench: busy-end = {BUSY_END_MS} ms");
    report_line("busy-window", ms(BUSY_END_MS - BUSY_START_MS));
    println!("bench: busy-iterations = {iterations} iterations");
    report::success()
}

fn ms(ms: u64) -> u64 {
    timer::ms_to_ticks(ms)
}

fn report_line(name: &str, ticks: u64) {
    println!("bench: {name} = {ticks} ticks");
}

fn median(samples: &mut [u64]) -> u64 {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

/// One exit to the hypervisor: a service point for its timed actions, storms and harvests.
fn hvc() {
    psci::hvc(id::SMCCC_VERSION, 0, 0, 0);
}

/// Waits, with an HVC a millisecond, until the counter reaches `until`.
fn serve_until(until: u64) {
    let step = ms(1);
    let mut next = timer::counter();
    loop {
        let now = timer::counter();
        if now >= until {
            return;
        }
        if now >= next {
            hvc();
            next = now + step;
        }
        core::hint::spin_loop();
    }
}

#[inline(never)]
fn store(addr: u64) {
    // SAFETY: callers pass RAM past this image (whose .bss and stacks end before it) and inside
    // the range the device tree gives, checked in main; nothing else uses that memory.
    unsafe { core::ptr::write_volatile(addr as *mut u64, addr) }
}

/// Ticks for one 8-byte store to `addr`.
#[inline(never)]
fn store_ticks(addr: u64) -> u64 {
    let t0 = timer::counter();
    store(addr);
    timer::counter() - t0
}

/// Iterations of a write loop over the busy region until the counter reaches `until`, with an
/// HVC each millisecond.
#[inline(never)]
fn busy_loop(busy: u64, until: u64) -> u64 {
    let step = ms(1);
    let mut next = timer::counter() + step;
    let mut n = 0u64;
    loop {
        let now = timer::counter();
        if now >= until {
            return n;
        }
        if now >= next {
            hvc();
            next += step;
        }
        store(busy + (n % BUSY_PAGES) * PAGE);
        n += 1;
    }
}
