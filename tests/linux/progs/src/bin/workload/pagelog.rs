//! `workload --pagelog [--mib M] [--seconds S | --batches B] [--batch N] [--pause-ms P]
//! [--seed X]`: a log of
//! page writes with guest-counter timestamps and guest frame numbers, for the host to check
//! against the hypervisor's dirty-log harvests (`cargo xtask dirty-check`,
//! tools/xtask/src/dirtylog.rs, which parses these lines).
//!
//! One process maps M MiB (default 4), asks for no huge pages, mlocks and touches every page,
//! and reads each page's guest frame from /proc/self/pagemap (root only: others read frame 0).
//! Then, for S seconds of guest time (default 10) or B batches (a count a test can rely on
//! however slowly the host runs the guest), in batches: the virtual counter, one word
//! written in each of N pseudo-randomly chosen pages (default 32, duplicates possible), the
//! counter again, each read fenced so the writes happened between the two values; then a pause
//! of P ms (default 25) so the console log stays small. At the end pagemap is read again: a
//! page that moved to another frame makes the run fail, since the frames printed would no
//! longer name the pages written.
//!
//! Output, every line starting `pagelog: ` and shorter than 113 bytes, numbers decimal unless
//! said otherwise:
//!
//! ```text
//! pagelog: start pages 1024 batch 32 seconds 10 seed 1 cntfrq 62500000   (or `batches B`)
//! pagelog: map 0 4a3c0+16 4a1f2+1 ...          page indices from 0: runs GFN(hex)+LENGTH,
//!                                              page I+k at frame GFN+k
//! pagelog: w 7 1234567890 1234569999 3 981 17 ...  batch 7: counter before, after, pages
//! pagelog: moved page 5 from 4a3c5 to 51002   (hex frames; fails the run)
//! pagelog: done batches 400 writes 11200 moved 0
//! ```
//!
//! The map lines cover every page in order; a batch whose pages do not fit one line (19 pages
//! of 1024 fit) takes several `w` lines with the same batch number and counter values. Exits 0
//! if no page moved, 1 otherwise (or when a system call fails, with a `pagelog: FAIL` line), 2
//! for bad arguments.

use linux_progs::{Args, Line, print};

const USAGE: &[u8] = b"usage: workload --pagelog [--mib M] [--seconds S | --batches B] \
    [--batch N] [--pause-ms P] [--seed X]\n";
const PAGE: usize = 4096;
/// Longest line before the newline; with the hypervisor's `domU1| ` it stays under 120.
const LINE_MAX: usize = 112;
/// Most pages in a batch.
const BATCH_MAX: u64 = 256;
/// Most MiB: the frame table is mapped beside the region, 8 bytes a page.
const MIB_MAX: u64 = 256;
/// Page-frame number bits of a pagemap entry, and its present bit.
const PFN_MASK: u64 = (1 << 55) - 1;
const PRESENT: u64 = 1 << 63;
const MADV_NOHUGEPAGE: usize = 15;

#[derive(Clone, Copy)]
enum Limit {
    Seconds(u64),
    Batches(u64),
}

struct Options {
    mib: u64,
    limit: Limit,
    batch: u64,
    pause_ms: u64,
    seed: u64,
}

fn parse(args: &Args) -> Option<Options> {
    let mut o = Options {
        mib: 4,
        limit: Limit::Seconds(10),
        batch: 32,
        pause_ms: 25,
        seed: 1,
    };
    // Argument 1 is `--pagelog`.
    let mut i = 2;
    let mut limit_given = false;
    while i < args.len() {
        let value = linux_progs::parse_num(args.get(i + 1)?)?;
        let flag = args.get(i)?;
        if matches!(flag, b"--seconds" | b"--batches") && core::mem::replace(&mut limit_given, true)
        {
            return None;
        }
        match flag {
            b"--mib" => o.mib = value,
            b"--seconds" => o.limit = Limit::Seconds(value),
            b"--batches" => o.limit = Limit::Batches(value),
            b"--batch" => o.batch = value,
            b"--pause-ms" => o.pause_ms = value,
            b"--seed" => o.seed = value,
            _ => return None,
        }
        i += 2;
    }
    let valid = (1..=MIB_MAX).contains(&o.mib) && (1..=BATCH_MAX).contains(&o.batch);
    valid.then_some(o)
}

fn fail(what: &[u8], errno: isize) -> i32 {
    Line::new()
        .text(b"pagelog: FAIL ")
        .text(what)
        .text(b", errno ")
        .dec(errno.unsigned_abs() as u64)
        .print();
    1
}

pub fn main(args: &Args) -> i32 {
    let Some(o) = parse(args) else {
        print(USAGE);
        return 2;
    };
    let pages = (o.mib << 20) as usize / PAGE;
    let bytes = pages * PAGE;
    let (Some(base), Some(frames)) = (
        linux_progs::mmap_anonymous(bytes),
        linux_progs::mmap_anonymous(pages * 8),
    ) else {
        return fail(b"cannot map the region", 0);
    };
    // A huge page could be split or collapsed (khugepaged), moving its pages to other frames.
    let ret = linux_progs::madvise(base, bytes, MADV_NOHUGEPAGE);
    if ret < 0 {
        return fail(b"madvise(MADV_NOHUGEPAGE)", ret);
    }
    let ret = linux_progs::mlock(base, bytes);
    if ret < 0 {
        return fail(b"mlock", ret);
    }
    for page in 0..pages {
        // SAFETY: the page is inside the region.
        unsafe { base.add(page * PAGE / 8).write_volatile(page as u64) };
    }
    // SAFETY: `frames` holds `pages` words, and nothing else refers to it.
    let frames = unsafe { core::slice::from_raw_parts_mut(frames, pages) };
    if let Err(e) = read_frames(base, frames, |_, frame, slot| *slot = frame) {
        return e;
    }
    let mut start = Line::new();
    start
        .text(b"pagelog: start pages ")
        .dec(pages as u64)
        .text(b" batch ")
        .dec(o.batch);
    match o.limit {
        Limit::Seconds(s) => start.text(b" seconds ").dec(s),
        Limit::Batches(b) => start.text(b" batches ").dec(b),
    };
    start
        .text(b" seed ")
        .dec(o.seed)
        .text(b" cntfrq ")
        .dec(linux_progs::cntfrq())
        .print();
    print_map(frames);
    let (batches, writes) = write_batches(&o, base, pages);
    let mut moved = 0u64;
    let checked = read_frames(base, frames, |page, frame, slot| {
        if frame != *slot {
            moved += 1;
            if moved <= 4 {
                Line::new()
                    .text(b"pagelog: moved page ")
                    .dec(page)
                    .text(b" from ")
                    .hex_short(*slot)
                    .text(b" to ")
                    .hex_short(frame)
                    .print();
            }
        }
    });
    if let Err(e) = checked {
        return e;
    }
    Line::new()
        .text(b"pagelog: done batches ")
        .dec(batches)
        .text(b" writes ")
        .dec(writes)
        .text(b" moved ")
        .dec(moved)
        .print();
    i32::from(moved != 0)
}

/// Reads the frame of every page of the region from pagemap and calls `each(page, frame, slot)`
/// with the page's slot of `frames`. A page that is not present, or a frame of 0 (what pagemap
/// shows a process without CAP_SYS_ADMIN), is an error: the exit status, after a FAIL line.
fn read_frames(
    base: *mut u64,
    frames: &mut [u64],
    mut each: impl FnMut(u64, u64, &mut u64),
) -> Result<(), i32> {
    let fd = linux_progs::open_read(c"/proc/self/pagemap");
    if fd < 0 {
        return Err(fail(b"cannot open /proc/self/pagemap", fd));
    }
    let first_vpn = base as u64 / PAGE as u64;
    let mut buf = [0u8; 4096];
    let mut page = 0;
    let mut result = Ok(());
    while page < frames.len() {
        let want = (buf.len() / 8).min(frames.len() - page) * 8;
        let got = linux_progs::pread(fd, &mut buf[..want], (first_vpn + page as u64) * 8);
        if got != want as isize {
            result = Err(fail(b"short read of /proc/self/pagemap", got.min(0)));
            break;
        }
        for entry in buf[..want].chunks_exact(8) {
            let entry = u64::from_le_bytes(entry.try_into().expect("8-byte chunks"));
            let frame = entry & PFN_MASK;
            if entry & PRESENT == 0 || frame == 0 {
                Line::new()
                    .text(b"pagelog: FAIL page ")
                    .dec(page as u64)
                    .text(b" has no frame in pagemap (entry ")
                    .hex(entry)
                    .text(b"); run as root")
                    .print();
                linux_progs::close(fd);
                return Err(1);
            }
            each(page as u64, frame, &mut frames[page]);
            page += 1;
        }
    }
    linux_progs::close(fd);
    result
}

/// The page-to-frame map as `map` lines of runs of consecutive frames.
fn print_map(frames: &[u64]) {
    let mut line = Line::new();
    let mut page = 0;
    while page < frames.len() {
        let mut len = 1;
        while page + len < frames.len() && frames[page + len] == frames[page] + len as u64 {
            len += 1;
        }
        // A run takes at most 1 + 14 + 1 + 5 characters.
        if !line.is_empty() && line.len() + 21 > LINE_MAX {
            line.print();
        }
        if line.is_empty() {
            line.text(b"pagelog: map ").dec(page as u64);
        }
        line.text(b" ")
            .hex_short(frames[page])
            .text(b"+")
            .dec(len as u64);
        page += len;
    }
    if !line.is_empty() {
        line.print();
    }
}

/// The timed batches until `o.limit`: (batches, page writes).
fn write_batches(o: &Options, base: *mut u64, pages: usize) -> (u64, u64) {
    let start = linux_progs::monotonic_ns();
    let mut rng = o.seed;
    let mut picked = [0u16; BATCH_MAX as usize];
    let picked = &mut picked[..o.batch as usize];
    let (mut batches, mut writes) = (0u64, 0u64);
    while match o.limit {
        Limit::Seconds(s) => {
            linux_progs::monotonic_ns().saturating_sub(start) < s.saturating_mul(1_000_000_000)
        }
        Limit::Batches(b) => batches < b,
    } {
        for p in picked.iter_mut() {
            *p = (next(&mut rng) % pages as u64) as u16;
        }
        let t0 = linux_progs::cntvct_fenced();
        for (k, &p) in picked.iter().enumerate() {
            // A different word of the page each batch, so no write stores what is there.
            let word = 1 + (batches as usize + k) % (PAGE / 8 - 1);
            // SAFETY: `p` < `pages`, and `word` < PAGE / 8: inside the region.
            unsafe {
                base.add(p as usize * PAGE / 8 + word)
                    .write_volatile(batches)
            };
        }
        let t1 = linux_progs::cntvct_fenced();
        let head = |line: &mut Line| {
            line.text(b"pagelog: w ")
                .dec(batches)
                .text(b" ")
                .dec(t0)
                .text(b" ")
                .dec(t1);
        };
        let mut line = Line::new();
        head(&mut line);
        let mut on_line = 0;
        for &p in picked.iter() {
            // An index takes at most 6 characters with its space.
            if on_line > 0 && line.len() + 6 > LINE_MAX {
                line.print();
                head(&mut line);
                on_line = 0;
            }
            line.text(b" ").dec(p.into());
            on_line += 1;
        }
        line.print();
        batches += 1;
        writes += picked.len() as u64;
        linux_progs::sleep_ns(o.pause_ms * 1_000_000);
    }
    (batches, writes)
}

/// splitmix64: the next pseudo-random number of the sequence in `state`.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
