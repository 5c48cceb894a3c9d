//! `workload [--procs N] [--mib M] [--seconds S | --passes P | --until-input] [--seed X]
//! [--lose-write]`: memory
//! traffic that proves no write is lost while the hypervisor moves, logs or snapshots the
//! guest's pages.
//!
//! N processes (default 4) each map M/N MiB (M default 256) of private anonymous memory and
//! sweep it pass after pass: pass 0 writes every word, each later pass reads every word back,
//! checks it, and writes the next pass's value in the same sweep, and a last sweep checks the
//! final pass. A word's value is derived from the process, the word's index and the pass
//! (`key(seed, process, pass) + index * odd constant`, different for every word of a pass), so a
//! lost write, a stale page, a page mapped twice or another process's page all read as a wrong
//! value. The sweeps go on for S seconds of guest time (CLOCK_MONOTONIC, checked between passes;
//! default 20), exactly P passes, or, with `--until-input`, until the line `stop` (or end of
//! file) comes on standard input: a test types it once the hypervisor has done what it tests
//! (e.g. taken a snapshot), so the workload is still running then however slowly the host runs
//! the guest. Other lines are shown as `workload: input LINE`: a test types them to mark a
//! point of the run for the hypervisor's console triggers.
//!
//! Output: the first few mismatches of each process (`workload: proc I: bad word at ADDR pass
//! P: expected X, got Y, reread Z`), one `workload: proc I: passes P, words W, bad B` line per
//! process, then `workload: total bad words B (N procs, M MiB, P passes)` (P summed over the
//! processes) and `workload: verified V MiB in T ms of guest time`. Exits 0 only if every
//! process finished and B is 0; 1 otherwise, 2 for bad arguments.
//!
//! Progress marks: once all processes have started, `workload: N procs started
//! WORKLOAD-STARTED`; once every process has finished pass P (pass 0: every word written once),
//! the last one to finish it prints `workload: all N procs finished pass P WORKLOAD-PASS-P-DONE`
//! (for P below [`MARKS`]). The hypervisor's bootargs trigger on these
//! (`hyp.snapshot=FILE@after:WORKLOAD-PASS-1-DONE`), so an operation meant for the middle of
//! the workload comes there however fast the host runs the guest.
//!
//! `--lose-write` checks the checker: process 0 puts one word back to its old value after its
//! second pass, as a lost write would leave it, so the run must end with exactly 1 bad word.
//!
//! The sweeps are plain loops with volatile accesses and no formatting, as fast as TCG allows.
//!
//! `workload --pagelog ...` is another program sharing this binary (so the initramfs recipes
//! get it as `/bin/workload`): timed page writes for the dirty-log check, see [`pagelog`].

#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};
use linux_progs::{ChildExit, Forked, Line, print};

// Not src/bin/pagelog.rs, which cargo would build as a program of its own.
#[path = "workload/pagelog.rs"]
mod pagelog;

linux_progs::entry!(main);

const USAGE: &[u8] = b"usage: workload [--procs N] [--mib M] \
    [--seconds S | --passes P | --until-input] [--seed X] [--lose-write]\n";
/// Most processes: their reports must fit the shared page.
const PROCS_MAX: u64 = 64;
/// Mismatches printed per process; the rest are only counted.
const SHOWN_MAX: u64 = 4;
/// Between neighbouring words' values. Odd, so `index * SPREAD` differs for every index of a
/// mapping, and large, so neighbouring words differ in many bits.
const SPREAD: u64 = 0x9e37_79b9_7f4a_7c15;
const PAGE: usize = 4096;

#[derive(Clone, Copy)]
enum Limit {
    Seconds(u64),
    Passes(u64),
    /// Until the parent reads a line on standard input.
    Input,
}

#[derive(Clone, Copy)]
struct Options {
    procs: u64,
    mib: u64,
    limit: Limit,
    seed: u64,
    lose_write: bool,
}

/// One process's result, written by the child into the page shared with the parent.
#[repr(C)]
struct Report {
    passes: u64,
    words: u64,
    bad: u64,
    /// Non-zero once the other fields are final.
    done: u64,
}

/// Passes 0 to MARKS - 1 have a progress mark (a line each: a long run prints no more).
const MARKS: usize = 17;

/// The shared page: each process's report, then the stop flag, then per marked pass how many
/// processes finished it.
const _: () = assert!(PROCS_MAX as usize * size_of::<Report>() + (1 + MARKS) * 8 <= PAGE);

struct Shared {
    reports: *mut Report,
    /// Set by the parent for `--until-input`; the children stop after their current pass.
    stop: *const AtomicU64,
    marks: *const AtomicU64,
    procs: u64,
}

impl Shared {
    fn stop(&self) -> &AtomicU64 {
        // SAFETY: inside the shared page (the assertion above), and only used atomically.
        unsafe { &*self.stop }
    }

    /// This process finished `pass`: the last of all to finish it prints the pass's mark.
    fn finished(&self, pass: u64) {
        let Some(i) = usize::try_from(pass).ok().filter(|&i| i < MARKS) else {
            return;
        };
        // SAFETY: `i` < MARKS, so the counter lies in the shared page (the assertion above);
        // every process updates it atomically.
        let count = unsafe { &*self.marks.add(i) };
        if count.fetch_add(1, Ordering::AcqRel) + 1 == self.procs {
            Line::new()
                .text(b"workload: all ")
                .dec(self.procs)
                .text(b" procs finished pass ")
                .dec(pass)
                .text(b" WORKLOAD-PASS-")
                .dec(pass)
                .text(b"-DONE")
                .print();
        }
    }
}

fn parse(args: &linux_progs::Args) -> Option<Options> {
    let mut o = Options {
        procs: 4,
        mib: 256,
        limit: Limit::Seconds(20),
        seed: 1,
        lose_write: false,
    };
    let mut limit_given = false;
    let mut i = 1;
    while i < args.len() {
        let flag = args.get(i)?;
        if flag == b"--lose-write" {
            o.lose_write = true;
            i += 1;
            continue;
        }
        if flag == b"--until-input" {
            if limit_given {
                return None;
            }
            o.limit = Limit::Input;
            limit_given = true;
            i += 1;
            continue;
        }
        let value = linux_progs::parse_num(args.get(i + 1)?)?;
        match flag {
            b"--procs" => o.procs = value,
            b"--mib" => o.mib = value,
            b"--seconds" | b"--passes" if limit_given => return None,
            b"--seconds" => o.limit = Limit::Seconds(value),
            b"--passes" => o.limit = Limit::Passes(value),
            b"--seed" => o.seed = value,
            _ => return None,
        }
        limit_given |= matches!(flag, b"--seconds" | b"--passes");
        i += 2;
    }
    let per_proc = o.mib.checked_mul(1 << 20)? / o.procs.max(1);
    let valid = (1..=PROCS_MAX).contains(&o.procs)
        && per_proc >= PAGE as u64
        && !matches!(o.limit, Limit::Passes(0));
    valid.then_some(o)
}

fn main(args: linux_progs::Args) -> i32 {
    if args.get(1) == Some(b"--pagelog") {
        return pagelog::main(&args);
    }
    let Some(o) = parse(&args) else {
        print(USAGE);
        return 2;
    };
    let Some(page) = linux_progs::mmap_shared_anonymous(PAGE) else {
        print(b"workload: cannot map the report page\n");
        return 1;
    };
    let reports_words = PROCS_MAX as usize * size_of::<Report>() / 8;
    // SAFETY: the reports take the page's first `reports_words` words; the stop flag and the
    // marks follow, inside the page (the assertion at MARKS).
    let tail = unsafe { page.add(reports_words) }.cast::<AtomicU64>();
    let shared = Shared {
        reports: page.cast::<Report>(),
        stop: tail,
        // SAFETY: as above.
        marks: unsafe { tail.add(1) },
        procs: o.procs,
    };
    let reports = shared.reports;
    let start = linux_progs::monotonic_ns();
    let mut failed = false;
    for proc in 0..o.procs {
        match linux_progs::fork() {
            Ok(Forked::Child) => {
                // SAFETY: `proc` < PROCS_MAX, so the slot is inside the shared page, and only
                // this child writes it.
                let report = unsafe { &mut *reports.add(proc as usize) };
                linux_progs::exit(run(&o, proc, start, report, &shared))
            }
            Ok(Forked::Parent(_)) => {}
            Err(errno) => {
                Line::new()
                    .text(b"workload: fork failed, errno ")
                    .dec(errno.unsigned_abs() as u64)
                    .print();
                failed = true;
                break;
            }
        }
    }
    if !failed {
        Line::new()
            .text(b"workload: ")
            .dec(o.procs)
            .text(b" procs started WORKLOAD-STARTED")
            .print();
    }
    if matches!(o.limit, Limit::Input) {
        wait_for_stop();
        shared.stop().store(1, Ordering::Release);
    }
    while let Ok((pid, how)) = linux_progs::wait_any() {
        if how != ChildExit::Exited(0) {
            let mut line = Line::new();
            line.text(b"workload: process ").dec(pid as u64);
            match how {
                ChildExit::Exited(code) => line.text(b" exited with status ").dec(code.into()),
                ChildExit::Signalled(sig) => line.text(b" was killed by signal ").dec(sig.into()),
            };
            line.print();
            failed = true;
        }
    }
    let elapsed_ms = (linux_progs::monotonic_ns() - start) / 1_000_000;
    let (mut bad, mut passes, mut words) = (0u64, 0u64, 0u64);
    for proc in 0..o.procs {
        // SAFETY: the children have all ended, so nothing writes the shared page any more.
        let r = unsafe { &*reports.add(proc as usize) };
        if r.done == 0 {
            Line::new()
                .text(b"workload: proc ")
                .dec(proc)
                .text(b" did not finish")
                .print();
            failed = true;
        }
        bad += r.bad;
        passes += r.passes;
        words += r.words;
    }
    Line::new()
        .text(b"workload: total bad words ")
        .dec(bad)
        .text(b" (")
        .dec(o.procs)
        .text(b" procs, ")
        .dec(o.mib)
        .text(b" MiB, ")
        .dec(passes)
        .text(b" passes)")
        .print();
    Line::new()
        .text(b"workload: verified ")
        .dec((words * 8) >> 20)
        .text(b" MiB in ")
        .dec(elapsed_ms)
        .text(b" ms of guest time")
        .print();
    i32::from(failed || bad != 0)
}

/// Process `proc`'s share of the work; fills `report` and returns the exit status.
fn run(o: &Options, proc: u64, start: u64, report: &mut Report, shared: &Shared) -> i32 {
    let bytes = (o.mib << 20) / o.procs / PAGE as u64 * PAGE as u64;
    let words = (bytes / 8) as usize;
    let Some(base) = linux_progs::mmap_anonymous(bytes as usize) else {
        Line::new()
            .text(b"workload: proc ")
            .dec(proc)
            .text(b": cannot map ")
            .dec(bytes >> 10)
            .text(b" KiB")
            .print();
        return 1;
    };
    let mut check = Check { proc, base, bad: 0 };
    fill(base, words, key(o.seed, proc, 0));
    shared.finished(0);
    let mut passes = 1;
    loop {
        let done = match o.limit {
            Limit::Passes(p) => passes >= p,
            Limit::Seconds(s) => {
                linux_progs::monotonic_ns().saturating_sub(start) >= s.saturating_mul(1_000_000_000)
            }
            Limit::Input => shared.stop().load(Ordering::Acquire) != 0,
        };
        if done {
            break;
        }
        // Each word's values follow from the previous word's by one addition.
        let mut old = key(o.seed, proc, passes - 1);
        let mut new = key(o.seed, proc, passes);
        for i in 0..words {
            // SAFETY: `i` < `words`, inside this process's mapping.
            let word = unsafe { base.add(i) };
            // SAFETY: as above.
            let got = unsafe { word.read_volatile() };
            if got != old {
                check.mismatch(i, passes - 1, old, got);
            }
            // SAFETY: as above.
            unsafe { word.write_volatile(new) };
            old = old.wrapping_add(SPREAD);
            new = new.wrapping_add(SPREAD);
        }
        if o.lose_write && proc == 0 && passes == 1 {
            lose_write(base, words / 2, key(o.seed, proc, 0));
        }
        shared.finished(passes);
        passes += 1;
    }
    let mut last = key(o.seed, proc, passes - 1);
    for i in 0..words {
        // SAFETY: `i` < `words`, inside this process's mapping.
        let got = unsafe { base.add(i).read_volatile() };
        if got != last {
            check.mismatch(i, passes - 1, last, got);
        }
        last = last.wrapping_add(SPREAD);
    }
    *report = Report {
        passes,
        words: passes * words as u64,
        bad: check.bad,
        done: 1,
    };
    Line::new()
        .text(b"workload: proc ")
        .dec(proc)
        .text(b": passes ")
        .dec(passes)
        .text(b", words ")
        .dec(report.words)
        .text(b", bad ")
        .dec(check.bad)
        .print();
    i32::from(check.bad != 0)
}

/// Blocks until the line `stop` (or end of file, or an error) comes on standard input. Other
/// lines are shown (`workload: input LINE`) and otherwise ignored: a test types them to mark a
/// point in the run that the hypervisor's bootargs trigger on.
fn wait_for_stop() {
    let mut buf = [0u8; 64];
    let mut line = [0u8; 64];
    let mut len = 0;
    loop {
        let n = linux_progs::read(0, &mut buf);
        let Ok(n) = usize::try_from(n) else {
            Line::new()
                .text(b"workload: cannot read standard input, errno ")
                .dec(n.unsigned_abs() as u64)
                .text(b"; stopping")
                .print();
            return;
        };
        if n == 0 {
            print(b"workload: standard input closed; stopping\n");
            return;
        }
        for &b in &buf[..n] {
            match b {
                b'\n' => {
                    let got = line[..len].trim_ascii();
                    if got == b"stop" {
                        print(b"workload: stopping after the current pass\n");
                        return;
                    }
                    Line::new().text(b"workload: input ").text(got).print();
                    len = 0;
                }
                // A longer line is cut: it is only shown.
                b if len < line.len() => {
                    line[len] = b;
                    len += 1;
                }
                _ => {}
            }
        }
    }
}

/// Puts word `index` back to its value of the pass with `old_key`, as if the last write to it
/// had been lost.
fn lose_write(base: *mut u64, index: usize, old_key: u64) {
    let old = old_key.wrapping_add((index as u64).wrapping_mul(SPREAD));
    // SAFETY: the caller's mapping holds more than `index` words.
    unsafe { base.add(index).write_volatile(old) };
}

/// Pass 0: every word written, nothing to check yet.
fn fill(base: *mut u64, words: usize, key: u64) {
    let mut value = key;
    for i in 0..words {
        // SAFETY: the caller's mapping holds `words` words.
        unsafe { base.add(i).write_volatile(value) };
        value = value.wrapping_add(SPREAD);
    }
}

/// The pass's key: a 64-bit mix (splitmix64's finalizer) of the seed, process and pass, so
/// neighbouring passes and processes differ in about half their bits.
fn key(seed: u64, proc: u64, pass: u64) -> u64 {
    let mut z = seed ^ proc.rotate_left(48) ^ pass.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Mismatches of one process: counted, the first few printed.
struct Check {
    proc: u64,
    base: *mut u64,
    bad: u64,
}

impl Check {
    /// Out of line and cold, so the sweep loops stay tight.
    #[cold]
    #[inline(never)]
    fn mismatch(&mut self, index: usize, pass: u64, expected: u64, got: u64) {
        self.bad += 1;
        if self.bad > SHOWN_MAX {
            return;
        }
        // SAFETY: `index` is a word of the mapping the sweep is checking.
        let word = unsafe { self.base.add(index) };
        // A second read tells a word that changed under us from one that holds a wrong value.
        // SAFETY: as above.
        let reread = unsafe { word.read_volatile() };
        Line::new()
            .text(b"workload: proc ")
            .dec(self.proc)
            .text(b": bad word at ")
            .hex(word as u64)
            .text(b" pass ")
            .dec(pass)
            .text(b": expected ")
            .hex(expected)
            .text(b", got ")
            .hex(got)
            .text(b", reread ")
            .hex(reread)
            .print();
    }
}
