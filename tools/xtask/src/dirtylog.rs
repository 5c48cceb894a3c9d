//! The end-to-end dirty-log check: every page a Linux workload wrote must show up in the
//! hypervisor's dirty-log harvests. Two inputs:
//!
//! - the console log of a run of `workload --pagelog` (tests/linux/progs/src/bin/workload/
//!   pagelog.rs): the guest frame of each page of a locked region (`pagelog: map` lines), then
//!   batches of writes to some of those pages, each with the guest's virtual counter read just
//!   before and just after (`pagelog: w SEQ T0 T1 PAGE...`), and a `pagelog: done` line that
//!   counts them and confirms no page moved to another frame;
//! - the file `hyp.dirty-log=FILE` has the hypervisor write (format and reader:
//!   `hyp_formats::dirty_log`): for each harvest, the guest's virtual counter just before it
//!   began write-protecting and just after it finished, and a bitmap of the guest frames
//!   written since the previous harvest. A trailing partial record (the VM was killed
//!   mid-write) is ignored.
//!
//! A write at guest time t must be in the first harvest that started after t, or in a harvest
//! that was running at t. The write of a batch happened at some unknown t in [T0, T1], so its
//! page must be dirty in one of: the harvests overlapping [T0, T1], or the first one starting
//! after T1. A batch with no harvest starting after T1 cannot be checked (the log ended first),
//! nor one with T0 before the first harvest's start (logging may have begun after it). The
//! check is one-sided: another write to the same page in the window also sets the bit, so it
//! finds lost writes only where the window holds one write to the page, which most do (a few
//! dozen of a thousand pages per batch, a few batches per harvest).
//!
//! `cargo xtask dirty-check CONSOLE_LOG DIRTY_LOG` runs [`check`] on two files; the test runner
//! calls it after a passing run of a test with `dirty-log-file`.

use crate::exit::Exit;
use anyhow::{Context, Result};
use hyp_formats::dirty_log::DirtyLog;
use std::fmt::Write as _;
use std::path::PathBuf;

/// Fewer checked batches than this and the check has not looked at enough to pass.
pub const MIN_CHECKED_BATCHES: usize = 20;
/// Missed writes named in the error; the rest are counted.
const SHOWN_MISSES: usize = 5;
/// How many harvests away the control looks (see [`check`]).
const CONTROL_SHIFT: usize = 8;
/// What the guest program's lines start with (after the hypervisor's `domU1| `).
const PREFIX: &str = "pagelog: ";

#[derive(clap::Args)]
pub struct CheckArgs {
    /// The console log of the run (QEMU's output, the guest's lines among it).
    pub console_log: PathBuf,
    /// The file the hypervisor wrote for `hyp.dirty-log=FILE`.
    pub dirty_log: PathBuf,
}

/// `cargo xtask dirty-check`: the summary, or the reason and status 1.
pub fn run(args: &CheckArgs) -> Result<()> {
    let console = std::fs::read(&args.console_log)
        .with_context(|| format!("cannot read {}", args.console_log.display()))?;
    let log = std::fs::read(&args.dirty_log)
        .with_context(|| format!("cannot read {}", args.dirty_log.display()))?;
    match check(&String::from_utf8_lossy(&console), &log) {
        Ok(summary) => {
            println!("{summary}");
            Ok(())
        }
        Err(why) => Err(Exit::with_message(1, why).into()),
    }
}

/// Checks the page-log run in `console_log` against the harvests in `dirty_log`: `Ok` with a
/// one-line summary of what was checked, or `Err` saying why it failed (missed writes, a bad
/// file, a guest program that did not finish, too little checked).
pub fn check(console_log: &str, dirty_log: &[u8]) -> Result<String, String> {
    let log = DirtyLog::parse(dirty_log).map_err(|e| format!("dirty log: {e}"))?;
    let run = PageLog::parse(console_log).map_err(|e| format!("console log: {e}"))?;
    let h = &log.header;
    for (page, &gfn) in run.frames.iter().enumerate() {
        if gfn < h.first_gfn || gfn - h.first_gfn >= h.pages {
            return Err(format!(
                "page {page} is at guest frame {gfn:#x}, outside the guest RAM of the dirty log \
                 (frames {:#x}..{:#x})",
                h.first_gfn,
                h.first_gfn + h.pages
            ));
        }
    }
    if log.harvests.is_empty() {
        return Err("the dirty log has no harvest record".to_string());
    }
    let mut tally = Tally::default();
    let mut misses = Vec::new();
    for batch in &run.batches {
        let Some(window) = harvest_window(&log, batch.t0, batch.t1) else {
            tally.unchecked += 1;
            continue;
        };
        tally.batches += 1;
        tally.first_t0.get_or_insert(batch.t0);
        tally.last_t1 = batch.t1;
        for &page in &batch.pages {
            tally.writes += 1;
            let frame = run.frames[page as usize] - h.first_gfn;
            if !log.harvests[window.clone()]
                .iter()
                .any(|hv| hv.dirty(frame))
            {
                misses.push(Miss {
                    page,
                    gfn: run.frames[page as usize],
                    seq: batch.seq,
                    t0: batch.t0,
                    t1: batch.t1,
                    window: window.clone(),
                });
            }
            if let Some(control) = control_window(&window, log.harvests.len()) {
                tally.control_tried += 1;
                if log.harvests[control].iter().any(|hv| hv.dirty(frame)) {
                    tally.control_hits += 1;
                }
            }
        }
    }
    if !misses.is_empty() {
        return Err(describe_misses(&misses, &tally, &log));
    }
    if tally.batches < MIN_CHECKED_BATCHES {
        return Err(format!(
            "only {} batches of page writes could be checked ({} were not: before the first \
             harvest or after the last one started; {} harvests); at least {MIN_CHECKED_BATCHES} \
             are needed",
            tally.batches,
            tally.unchecked,
            log.harvests.len()
        ));
    }
    // A hypervisor that marked every page dirty in every harvest would pass the check above.
    if tally.control_tried < MIN_CHECKED_BATCHES {
        return Err(format!(
            "only {} writes have a control window {CONTROL_SHIFT} harvests away ({} harvests), \
             so a log marking every page dirty could not be told from a good one",
            tally.control_tried,
            log.harvests.len()
        ));
    }
    if tally.control_hits * 2 > tally.control_tried {
        return Err(format!(
            "the harvests mark the written pages dirty almost everywhere: {} of {} writes are \
             also dirty in harvests {CONTROL_SHIFT} away from their own, so finding them proves \
             nothing",
            tally.control_hits, tally.control_tried
        ));
    }
    let span = tally.last_t1 - tally.first_t0.unwrap_or(tally.last_t1);
    let mut summary = format!(
        "dirty-log check passed: {} harvests; {} batches, {} page writes to {} pages over {:.1} \
         s of guest time, all found in their harvests ({:.1}% of them also dirty {CONTROL_SHIFT} \
         harvests away); {} batches uncheckable",
        log.harvests.len(),
        tally.batches,
        tally.writes,
        run.frames.len(),
        span as f64 / h.frequency as f64,
        100.0 * tally.control_hits as f64 / tally.control_tried.max(1) as f64,
        tally.unchecked
    );
    if log.trailing > 0 {
        let _ = write!(
            summary,
            "; a partial last record ({} bytes) ignored",
            log.trailing
        );
    }
    Ok(summary)
}

#[derive(Default)]
struct Tally {
    batches: usize,
    writes: usize,
    unchecked: usize,
    first_t0: Option<u64>,
    last_t1: u64,
    /// Writes looked for in the control window, and found there.
    control_tried: usize,
    control_hits: usize,
}

/// The control for a write whose harvests are `window`: as many harvests, [`CONTROL_SHIFT`]
/// later (or earlier, near the end of the log), where that write cannot be. Its page is dirty
/// there only through other writes to it, so the rate at which writes are "found" there says
/// how much finding them in their own window means.
fn control_window(
    window: &std::ops::Range<usize>,
    harvests: usize,
) -> Option<std::ops::Range<usize>> {
    let len = window.len();
    let later = window.start + CONTROL_SHIFT;
    if later + len <= harvests {
        return Some(later..later + len);
    }
    let earlier = window.start.checked_sub(CONTROL_SHIFT)?;
    Some(earlier..earlier + len)
}

/// A write not found in any harvest it could be in.
struct Miss {
    page: u32,
    gfn: u64,
    seq: u64,
    t0: u64,
    t1: u64,
    /// Indices of the harvests it could have been in.
    window: std::ops::Range<usize>,
}

fn describe_misses(misses: &[Miss], tally: &Tally, log: &DirtyLog) -> String {
    let batches = {
        let mut seqs: Vec<u64> = misses.iter().map(|m| m.seq).collect();
        seqs.dedup();
        seqs.len()
    };
    let mut out = format!(
        "{} of {} page writes checked are missing from the dirty log (in {} of {} batches):",
        misses.len(),
        tally.writes,
        batches,
        tally.batches
    );
    for m in misses.iter().take(SHOWN_MISSES) {
        let _ = write!(
            out,
            " page {} (gfn {:#x}) written in batch {} between counter {} and {}, not dirty in",
            m.page, m.gfn, m.seq, m.t0, m.t1
        );
        for (i, hv) in log.harvests[m.window.clone()].iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(
                out,
                "{sep} harvest {} ({}..{})",
                m.window.start + i,
                hv.start,
                hv.end
            );
        }
        out.push(';');
    }
    if misses.len() > SHOWN_MISSES {
        let _ = write!(out, " and {} more", misses.len() - SHOWN_MISSES);
    }
    out.trim_end_matches(';').to_string()
}

/// The harvests a write at some time in [t0, t1] may be in (those overlapping the interval and
/// the first one starting after it), or `None` when that cannot be told.
fn harvest_window(log: &DirtyLog, t0: u64, t1: u64) -> Option<std::ops::Range<usize>> {
    let first = log.harvests.first()?;
    if t0 < first.start {
        return None;
    }
    // Harvests do not overlap, so `end` grows with `start`.
    let from = log.harvests.partition_point(|h| h.end < t0);
    let after = log.harvests.partition_point(|h| h.start <= t1);
    (after < log.harvests.len()).then_some(from..after + 1)
}

// ---- the console log ----

/// One batch of page writes, all between the counter values `t0` and `t1`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Batch {
    seq: u64,
    t0: u64,
    t1: u64,
    pages: Vec<u32>,
}

#[derive(Debug)]
struct PageLog {
    /// Guest frame of each page.
    frames: Vec<u64>,
    batches: Vec<Batch>,
}

fn num(word: Option<&str>, what: &str) -> Result<u64, String> {
    let word = word.ok_or_else(|| format!("no {what}"))?;
    word.parse()
        .map_err(|_| format!("{what} `{word}` is not a decimal number"))
}

impl PageLog {
    fn parse(text: &str) -> Result<Self, String> {
        let mut pages: Option<usize> = None;
        let mut frames: Vec<u64> = Vec::new();
        let mut batches: Vec<Batch> = Vec::new();
        let mut done = None;
        for (n, line) in text.lines().enumerate() {
            let Some(at) = line.find(PREFIX) else {
                continue;
            };
            let body = line[at + PREFIX.len()..].trim_end();
            let bad = |why: String| format!("line {}: {why}: `{}`", n + 1, line.trim_end());
            let mut words = body.split_ascii_whitespace();
            let kind = words.next().unwrap_or("");
            if done.is_some() && kind != "FAIL" {
                return Err(bad("a line after `pagelog: done`".to_string()));
            }
            match kind {
                "start" => {
                    if pages.is_some() {
                        return Err(bad("a second run of the page-log program".to_string()));
                    }
                    if words.next() != Some("pages") {
                        return Err(bad("expected `start pages N ...`".to_string()));
                    }
                    let n = num(words.next(), "page count").map_err(&bad)?;
                    if n == 0 || n > 1 << 24 {
                        return Err(bad(format!("{n} pages")));
                    }
                    pages = Some(n as usize);
                }
                "map" => {
                    let Some(pages) = pages else {
                        return Err(bad("a map line before `pagelog: start`".to_string()));
                    };
                    let from = num(words.next(), "first page").map_err(&bad)?;
                    if from != frames.len() as u64 {
                        return Err(bad(format!(
                            "starts at page {from}, and the lines before end at {}",
                            frames.len()
                        )));
                    }
                    for run in words {
                        let (gfn, len) = run
                            .split_once('+')
                            .and_then(|(g, l)| {
                                Some((u64::from_str_radix(g, 16).ok()?, l.parse::<u64>().ok()?))
                            })
                            .ok_or_else(|| bad(format!("`{run}` is not GFN+LENGTH")))?;
                        if len == 0 || frames.len() as u64 + len > pages as u64 {
                            return Err(bad(format!("run `{run}` goes past page {pages}")));
                        }
                        frames.extend((0..len).map(|k| gfn + k));
                    }
                }
                "w" => {
                    let pages = pages.unwrap_or(0);
                    if frames.len() != pages || pages == 0 {
                        return Err(bad(format!(
                            "writes before the map is complete ({} of {pages} pages)",
                            frames.len()
                        )));
                    }
                    let seq = num(words.next(), "batch number").map_err(&bad)?;
                    let t0 = num(words.next(), "start counter").map_err(&bad)?;
                    let t1 = num(words.next(), "end counter").map_err(&bad)?;
                    if t1 < t0 {
                        return Err(bad("the end counter is before the start".to_string()));
                    }
                    let mut written = Vec::new();
                    for w in words {
                        let page = num(Some(w), "page").map_err(&bad)?;
                        if page >= pages as u64 {
                            return Err(bad(format!("page {page} of {pages}")));
                        }
                        written.push(page as u32);
                    }
                    if written.is_empty() {
                        return Err(bad("no page".to_string()));
                    }
                    match batches.last_mut() {
                        Some(last) if last.seq == seq => {
                            if (last.t0, last.t1) != (t0, t1) {
                                return Err(bad(format!(
                                    "batch {seq} continued with other counter values"
                                )));
                            }
                            last.pages.extend(written);
                        }
                        Some(last) if last.seq > seq => {
                            return Err(bad(format!("batch {seq} after batch {}", last.seq)));
                        }
                        _ => batches.push(Batch {
                            seq,
                            t0,
                            t1,
                            pages: written,
                        }),
                    }
                }
                "moved" => {}
                "done" => {
                    let mut field = |name: &str| {
                        if words.next() != Some(name) {
                            return Err(bad(format!("expected `{name}`")));
                        }
                        num(words.next(), name).map_err(&bad)
                    };
                    done = Some((field("batches")?, field("writes")?, field("moved")?));
                }
                "FAIL" => return Err(format!("the page-log program failed: `{}`", line.trim())),
                _ => return Err(bad(format!("unknown kind of line `{kind}`"))),
            }
        }
        if pages.is_none() {
            return Err(
                "no `pagelog: start` line: the page-log program (`workload --pagelog`) did not run"
                    .to_string(),
            );
        }
        let Some((done_batches, done_writes, moved)) = done else {
            return Err("no `pagelog: done` line: the page-log program did not finish".to_string());
        };
        if moved != 0 {
            return Err(format!(
                "{moved} pages moved to other frames during the run, so the frames of the map \
                 no longer name the pages written and nothing can be checked"
            ));
        }
        let writes: usize = batches.iter().map(|b| b.pages.len()).sum();
        if (done_batches, done_writes) != (batches.len() as u64, writes as u64) {
            return Err(format!(
                "the program reports {done_batches} batches and {done_writes} page writes, and \
                 the log shows {} and {writes}: lines are missing",
                batches.len()
            ));
        }
        Ok(Self { frames, batches })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyp_formats::dirty_log::{HEADER_LEN, Header, Record};

    const FIRST: u64 = 0x40000;
    const PAGES: u64 = 1000;
    /// Frame of page i of the synthetic run: two runs, the second backwards.
    fn gfn(page: u32) -> u64 {
        if page < 10 {
            FIRST + 100 + u64::from(page)
        } else {
            FIRST + 900 - u64::from(page)
        }
    }
    const RUN_PAGES: u32 = 20;
    /// A batch as (t0, t1, pages).
    type BatchSpec = (u64, u64, Vec<u32>);
    /// A harvest as (start, end, dirty frames).
    type HarvestSpec = (u64, u64, Vec<u64>);

    /// A dirty log as the hypervisor writes it, with `harvests` as (start, end, dirty frames).
    fn file(harvests: &[(u64, u64, &[u64])]) -> Vec<u8> {
        let header = Header {
            first_gfn: FIRST,
            pages: PAGES,
            frequency: 62_500_000,
        };
        let mut out = header.encode().to_vec();
        for &(start, end, gfns) in harvests {
            let mut bits = vec![0u64; PAGES.div_ceil(64) as usize];
            for &g in gfns {
                let f = g - FIRST;
                bits[(f / 64) as usize] |= 1 << (f % 64);
            }
            let count: u64 = bits.iter().map(|w| u64::from(w.count_ones())).sum();
            Record {
                start,
                end,
                count,
                bits: &bits,
            }
            .encode_into(&mut out);
        }
        out
    }

    /// A console log with `batches` as (t0, t1, pages), among other output; batches of more
    /// than 3 pages take several lines, as the program splits them.
    fn console(batches: &[BatchSpec]) -> String {
        let mut s = String::from("hyp: booting\ndomU1| init: Linux up\n");
        s += &format!(
            "domU1| pagelog: start pages {RUN_PAGES} batch 3 seconds 1 seed 1 cntfrq 62500000\n"
        );
        s += &format!("domU1| pagelog: map 0 {:x}+10\n", gfn(0));
        s += "domU1| workload: proc 0: passes 3\n";
        s += &format!("domU1| pagelog: map 10 {:x}+1", gfn(10));
        for p in 11..RUN_PAGES {
            s += &format!(" {:x}+1", gfn(p));
        }
        s += "\r\n";
        let mut writes = 0;
        for (seq, (t0, t1, pages)) in batches.iter().enumerate() {
            for chunk in pages.chunks(3) {
                s += &format!("domU1| pagelog: w {seq} {t0} {t1}");
                for p in chunk {
                    s += &format!(" {p}");
                }
                s += "\n";
            }
            writes += pages.len();
        }
        s += &format!(
            "domU1| pagelog: done batches {} writes {writes} moved 0\n",
            batches.len()
        );
        s + "domU1| init: pagelog PASS\n"
    }

    /// 30 batches, one every 50 ticks from 1030, 15 harvests every 100 ticks from 1000 taking
    /// 20; each batch's pages are dirty in the harvest that follows it.
    fn passing() -> (Vec<BatchSpec>, Vec<HarvestSpec>) {
        let batches: Vec<_> = (0..30u32)
            .map(|i| {
                let t0 = 1030 + 50 * u64::from(i);
                (
                    t0,
                    t0 + 10,
                    vec![
                        i % RUN_PAGES,
                        (i * 7 + 3) % RUN_PAGES,
                        (i * 13 + 5) % RUN_PAGES,
                    ],
                )
            })
            .collect();
        let harvests = (0..15u64)
            .map(|k| {
                let start = 1000 + 100 * k;
                let gfns = batches
                    .iter()
                    .filter(|b| b.1 < start && b.0 >= start - 100)
                    .flat_map(|b| b.2.iter().map(|&p| gfn(p)))
                    .collect();
                (start, start + 20, gfns)
            })
            .collect();
        (batches, harvests)
    }

    fn as_file(harvests: &[HarvestSpec]) -> Vec<u8> {
        let refs: Vec<(u64, u64, &[u64])> = harvests.iter().map(|h| (h.0, h.1, &h.2[..])).collect();
        file(&refs)
    }

    #[test]
    fn every_write_found_passes_with_figures() {
        let (batches, harvests) = passing();
        let summary = check(&console(&batches), &as_file(&harvests)).unwrap();
        assert!(summary.contains("15 harvests"), "{summary}");
        // The last 2 of the 30 batches end after the last harvest (2400) started.
        assert!(
            summary.contains("28 batches, 84 page writes to 20 pages"),
            "{summary}"
        );
        assert!(summary.contains("2 batches uncheckable"), "{summary}");
    }

    #[test]
    fn a_missed_write_is_named() {
        let (batches, mut harvests) = passing();
        // Batch 4 (1230..1240) wrote page 4 (and 11 and 17), which harvest 3 (1300) must have.
        let lost = gfn(4);
        harvests[3].2.retain(|&g| g != lost);
        let err = check(&console(&batches), &as_file(&harvests)).unwrap_err();
        assert!(err.starts_with("1 of 84 page writes"), "{err}");
        assert!(
            err.contains(&format!(
                "page 4 (gfn {lost:#x}) written in batch 4 between counter 1230 and 1240"
            )),
            "{err}"
        );
        assert!(err.contains("harvest 3 (1300..1320)"), "{err}");
    }

    #[test]
    fn a_write_during_a_harvest_may_be_in_that_harvest_or_the_next() {
        let batches: Vec<_> = (0..25u64)
            .map(|i| {
                (
                    1100 + 100 * i + 5,
                    1100 + 100 * i + 15,
                    vec![i as u32 % RUN_PAGES],
                )
            })
            .collect();
        // A harvest runs from 1000 + 100 k to + 20: every batch overlaps one.
        let harvests = |in_next: bool| -> Vec<HarvestSpec> {
            (0..28u64)
                .map(|k| {
                    let start = 1000 + 100 * k;
                    // Batch i runs during harvest i + 1.
                    let batch = k.checked_sub(if in_next { 2 } else { 1 });
                    let dirty = batch.map(|i| gfn(i as u32 % RUN_PAGES));
                    (start, start + 20, dirty.into_iter().collect())
                })
                .collect()
        };
        assert!(check(&console(&batches), &as_file(&harvests(false))).is_ok());
        assert!(check(&console(&batches), &as_file(&harvests(true))).is_ok());
        // Dirty only in the harvest before the one running: missed.
        let mut h = harvests(false);
        h[11].2.clear();
        h[10].2.push(gfn(10));
        let err = check(&console(&batches), &as_file(&h)).unwrap_err();
        assert!(
            err.contains("page 10 ") && err.contains("harvest 11 (2100..2120), harvest 12"),
            "{err}"
        );
    }

    #[test]
    fn writes_after_the_last_harvest_started_are_unchecked() {
        let (mut batches, harvests) = passing();
        // Dirty nowhere: after the last harvest's start it cannot be checked, so it passes.
        batches.push((2410, 2420, vec![19]));
        batches.push((2500, 2510, vec![19]));
        let summary = check(&console(&batches), &as_file(&harvests)).unwrap();
        assert!(summary.contains("4 batches uncheckable"), "{summary}");
        // Starting before the last harvest but ending after its start: unchecked too.
        let mut log = DirtyLog::parse(&as_file(&harvests)).unwrap();
        assert_eq!(harvest_window(&log, 2390, 2405), None);
        // Overlapping harvest 13's start, or between two harvests.
        assert_eq!(harvest_window(&log, 2300, 2310), Some(13..15));
        assert_eq!(harvest_window(&log, 2330, 2340), Some(14..15));
        assert_eq!(
            harvest_window(&log, 999, 1005),
            None,
            "before the first harvest"
        );
        log.harvests.clear();
        assert_eq!(harvest_window(&log, 5000, 5001), None);
    }

    #[test]
    fn harvests_with_every_page_dirty_prove_nothing() {
        let (batches, mut harvests) = passing();
        for h in &mut harvests {
            h.2 = (0..RUN_PAGES).map(gfn).collect();
        }
        let err = check(&console(&batches), &as_file(&harvests)).unwrap_err();
        // 26 of the 28 checked batches have a control window 8 harvests away.
        assert!(err.contains("78 of 78 writes are also dirty"), "{err}");
        assert_eq!(control_window(&(3..5), 15), Some(11..13));
        assert_eq!(control_window(&(13..14), 15), Some(5..6));
        assert_eq!(control_window(&(3..5), 10), None);
        // Too few harvests for any control: refused rather than passed. All 30 batches fall
        // between harvests 0 and 1 of 8.
        let (batches, _) = passing();
        let batches: Vec<BatchSpec> = batches.into_iter().map(|b| (1030, 1040, b.2)).collect();
        let all: Vec<u64> = (0..RUN_PAGES).map(gfn).collect();
        let few: Vec<HarvestSpec> = (0..8)
            .map(|k| (1000 + 100 * k, 1020 + 100 * k, all.clone()))
            .collect();
        let err = check(&console(&batches), &as_file(&few)).unwrap_err();
        assert!(err.contains("control window"), "{err}");
    }

    #[test]
    fn too_few_checked_batches_fail() {
        let (batches, harvests) = passing();
        let err = check(&console(&batches[..15]), &as_file(&harvests)).unwrap_err();
        assert!(err.contains("only 15 batches"), "{err}");
        let err = check(&console(&batches), &as_file(&harvests[..1])).unwrap_err();
        assert!(err.contains("only 0 batches"), "{err}");
        assert!(
            check(&console(&batches), &as_file(&[]))
                .unwrap_err()
                .contains("no harvest")
        );
    }

    #[test]
    fn a_partial_last_record_is_ignored() {
        let (batches, harvests) = passing();
        let mut bytes = as_file(&harvests);
        let whole = bytes.len();
        bytes.extend_from_slice(&as_file(&harvests[..1])[HEADER_LEN..][..100]);
        let summary = check(&console(&batches), &bytes).unwrap();
        assert!(
            summary.contains("partial last record (100 bytes)"),
            "{summary}"
        );
        bytes.truncate(whole + 7);
        assert_eq!(DirtyLog::parse(&bytes).unwrap().trailing, 7);
        assert_eq!(DirtyLog::parse(&bytes).unwrap().harvests.len(), 15);
    }

    /// Each way a file is refused is tested with the reader (`hyp_formats::dirty_log`); here,
    /// that the check says it is the dirty log that is wrong.
    #[test]
    fn a_malformed_dirty_log_is_named_as_such() {
        let good = as_file(&passing().1);
        let (batches, _) = passing();
        assert!(
            check(&console(&batches), &good[..10])
                .unwrap_err()
                .starts_with("dirty log: truncated")
        );
    }

    #[test]
    fn malformed_or_incomplete_console_logs_are_refused() {
        let (batches, harvests) = passing();
        let file = as_file(&harvests);
        let good = console(&batches);
        let err = |text: &str| check(text, &file).unwrap_err();
        assert!(err("domU1| init: Linux up\n").contains("did not run"));
        let cut = &good[..good.find("pagelog: done").unwrap()];
        assert!(err(cut).contains("did not finish"), "{}", err(cut));
        let moved = good.replace("moved 0", "moved 2");
        assert!(err(&moved).contains("2 pages moved"), "{}", err(&moved));
        // A line lost: the counts in `done` disagree.
        let lost = good.replace("domU1| pagelog: w 7 1380 1390 7 12 16\n", "");
        assert_ne!(lost, good);
        assert!(err(&lost).contains("lines are missing"), "{}", err(&lost));
        let garbled = good.replace(
            "pagelog: w 7 1380 1390 7 12 16",
            "pagelog: w 7 1380 13[ 1.2] x",
        );
        assert!(err(&garbled).contains("line "), "{}", err(&garbled));
        let out_of_range = good.replace(
            "pagelog: w 7 1380 1390 7 12 16",
            "pagelog: w 7 1380 1390 7 12 20",
        );
        assert!(
            err(&out_of_range).contains("page 20 of 20"),
            "{}",
            err(&out_of_range)
        );
        let failed = good.replace(
            "domU1| init: pagelog PASS",
            "domU1| pagelog: FAIL mlock, errno 12",
        );
        assert!(err(&failed).contains("program failed"), "{}", err(&failed));
        let twice = format!("{good}{good}");
        assert!(
            err(&twice).contains("after `pagelog: done`"),
            "{}",
            err(&twice)
        );
        let short_map = good.replace(&format!(" {:x}+1\r\n", gfn(RUN_PAGES - 1)), "\n");
        assert!(
            err(&short_map).contains("map is complete"),
            "{}",
            err(&short_map)
        );
        // A frame outside the log's guest RAM.
        let outside = good.replace(&format!("map 0 {:x}+10", gfn(0)), "map 0 10+10");
        assert!(
            err(&outside).contains("outside the guest RAM"),
            "{}",
            err(&outside)
        );
    }
}
