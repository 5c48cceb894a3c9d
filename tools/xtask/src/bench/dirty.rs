//! The `dirty` benchmark: what dirty logging, harvests and migrations cost, from the
//! bare-metal guest `dirtybench` run under the hypervisor four times, each with other
//! bootargs, under `-icount` (one tick is one instruction):
//!
//! - `faults`: `hyp.dirty=start@1000`; the guest times its first writes after logging is on:
//!   into an untouched 2 MiB block (a write fault that splits the block), into a page of a
//!   block already split (a 4 KiB write fault), and a write again (no fault, the baseline that
//!   is subtracted);
//! - `base`, `storm`, `harvest`: no bootargs, `hyp.migrate-storm=N`, and
//!   `hyp.dirty-harvest=MS` with `hyp.dirty=stats@<window start>`; the guest counts iterations
//!   of a write loop (an HVC a millisecond gives the hypervisor its service points) in a fixed
//!   window of guest time. The hypervisor migrates and harvests on pCPU 0 while vCPU 0 is out,
//!   so the instructions it spends (and the guest's refaults they cause) are missing from the
//!   window: lost ticks = window × (1 − iterations / base iterations), divided by the pages
//!   moved or harvested in the window. Pages harvested in the window are the power-off total
//!   less the count `dirty stats` printed at the window's start; pages the storm moved are its
//!   power-off total scaled by window / run length in guest time (it moves at a fixed rate).

use super::console::{exits, guest_lines};
use super::logged_run::{deterministic, run_logged};
use super::report::{Figure, Report};
use crate::build::{self, Variant};
use crate::guest::Guest;
use crate::guest_images;
use crate::machine::Machine;
use crate::qemu_bin::find_qemu;
use crate::size::Size;
use crate::workspace::Workspace;
use anyhow::{Context, Result, bail};

const GUEST: &str = "dirtybench";
/// The guest's layout: 64 blocks of 2 MiB, the busy region, its image (see dirtybench.rs).
const GUEST_MEM_MIB: u64 = 256;
/// Must match `DIRTY_AT_MS` of dirtybench.rs.
const DIRTY_AT_MS: u64 = 1000;
/// Each migration picks a page that has a frame and copies it: at 20 pages/ms the storm took
/// more instructions than a millisecond of guest time has, and the guest's setup never ended.
const STORM_PAGES_PER_MS: u64 = 10;
const HARVEST_EVERY_MS: u64 = 10;

/// One run of the guest: its name (for its log) and the hypervisor's bootargs.
struct Run {
    name: &'static str,
    hyp_args: String,
}

fn runs(window_start_ms: u64) -> [Run; 4] {
    [
        Run {
            name: "faults",
            hyp_args: format!("hyp.dirty=start@{DIRTY_AT_MS}"),
        },
        Run {
            name: "base",
            hyp_args: String::new(),
        },
        Run {
            name: "storm",
            hyp_args: format!("hyp.migrate-storm={STORM_PAGES_PER_MS}"),
        },
        Run {
            name: "harvest",
            hyp_args: format!(
                "hyp.dirty-harvest={HARVEST_EVERY_MS} hyp.dirty=stats@{window_start_ms}"
            ),
        },
    ]
}

/// The guest's busy window, which it prints as `busy-start` and `busy-end` (ms); the harvest
/// run needs the start before it runs, so it is fixed here and checked against the output.
const WINDOW_MS: (u64, u64) = (1300, 1500);

pub(super) fn run(ws: &Workspace, report: &mut Report) -> Result<()> {
    let qemu_bin = find_qemu()?;
    let hyp = build::build_hyp(ws, &Variant::new(Vec::new()), true)?;
    let guest = Guest {
        images: guest_images::bare_metal(ws, GUEST)?,
        cpus: 1,
        mem: Size::from_mib(GUEST_MEM_MIB),
        append: String::new(),
    };
    let dir = ws.target_dir.join("bench");
    let mut machines = Vec::new();
    for r in runs(WINDOW_MS.0) {
        let mut m = Machine {
            smp: 1,
            mem: guest.machine_mem(None)?,
            hyp_args: r.hyp_args.clone(),
            ..Machine::new(hyp.bin.clone())
        };
        deterministic(&mut m);
        guest.add_to(
            &qemu_bin,
            &mut m,
            &dir.join(format!("dirty-{}.dtb", r.name)),
        )?;
        machines.push((r.name, m));
    }
    // Deterministic runs: two at a time, one a core.
    let run_all = |ms: &[(&str, Machine)]| -> Vec<Result<String>> {
        ms.iter()
            .map(|(name, m)| run_logged(&qemu_bin, m, &dir.join(format!("dirty-{name}.log")), &[]))
            .collect()
    };
    let (first, second) = machines.split_at(machines.len() / 2);
    let outputs: Vec<Result<String>> = std::thread::scope(|s| {
        let other = s.spawn(|| run_all(first));
        let mut out = run_all(second);
        let mut all = other.join().expect("no panics");
        all.append(&mut out);
        all
    });
    let mut logs = Vec::new();
    for ((name, _), out) in machines.iter().zip(outputs) {
        logs.push(out.with_context(|| format!("run `{name}`"))?);
    }
    let [faults, base, storm, harvest] = <[String; 4]>::try_from(logs).expect("four runs");
    report
        .figures
        .extend(figures(&faults, &base, &storm, &harvest)?);
    Ok(())
}

/// A `bench:` line's value in `output`.
fn value(output: &str, name: &str) -> Option<f64> {
    guest_lines(output)
        .into_iter()
        .find(|(n, _, _)| n == name)
        .map(|(_, v, _)| v)
}

fn need(output: &str, run: &str, name: &str) -> Result<f64> {
    value(output, name)
        .with_context(|| format!("the `{run}` run printed no `bench: {name} = ` line"))
}

/// The figures from the four runs' outputs.
fn figures(faults: &str, base: &str, storm: &str, harvest: &str) -> Result<Vec<Figure>> {
    if !faults.contains("dirty logging on") {
        bail!("the `faults` run never logged `dirty logging on`: its times are not of faults");
    }
    let rewrite = need(faults, "faults", "dirty-rewrite")?;
    let small = need(faults, "faults", "dirty-fault-4k")?;
    let block = need(faults, "faults", "dirty-fault-block")?;
    let start = need(base, "base", "busy-start")?;
    let end = need(base, "base", "busy-end")?;
    if (start, end) != (WINDOW_MS.0 as f64, WINDOW_MS.1 as f64) {
        bail!(
            "the guest's busy window is {start}..{end} ms, the xtask expects {}..{} ms",
            WINDOW_MS.0,
            WINDOW_MS.1
        );
    }
    let window = need(base, "base", "busy-window")?;
    let base_iters = need(base, "base", "busy-iterations")?;
    let lost = |output: &str, run: &str| -> Result<f64> {
        let iters = need(output, run, "busy-iterations")?;
        if base_iters <= 0.0 {
            bail!("the `base` run counted no iterations");
        }
        Ok(window * (1.0 - iters / base_iters))
    };
    let storm_lost = lost(storm, "storm")?;
    let moved = storm_moved(storm)
        .context("the `storm` run did not log `migration storm: N pages moved`")?;
    // The storm moves at a fixed rate from boot to power-off, right after the window ends.
    let moved_in_window = moved as f64 * (end - start) / end;
    let harvest_lost = lost(harvest, "harvest")?;
    let before = harvested_pages(harvest)
        .context("the `harvest` run printed no `harvested pages` line (from `dirty stats`)")?;
    let total = power_off_count(harvest, "dirty-harvested")
        .context("the `harvest` run's power-off line has no `dirty-harvested=` count")?;
    let harvested = total.saturating_sub(before);
    let per = |lost: f64, pages: f64| (pages > 0.0).then(|| lost / pages);
    let fig = |name: String, value: Option<f64>, unit: &str, how: &str| Figure {
        name,
        value,
        unit: unit.into(),
        method: how.into(),
    };
    Ok(vec![
        fig(
            "dirty-log write fault, 4 KiB page (its block already split)".into(),
            Some(small - rewrite),
            "ticks",
            "median of 128 first writes after `dirty start`, less a write without fault",
        ),
        fig(
            "dirty-log write fault, page of a 2 MiB block (block split)".into(),
            Some(block - rewrite),
            "ticks",
            "median of 64 first writes into a block, less a write without fault",
        ),
        fig(
            "write without fault (subtracted above)".into(),
            Some(rewrite),
            "ticks",
            "median of 64",
        ),
        fig(
            format!(
                "per harvested page ({harvested} pages, every {HARVEST_EVERY_MS} ms, {:.0} ticks lost)",
                harvest_lost
            ),
            per(harvest_lost, harvested as f64),
            "ticks",
            "guest ticks lost in a busy window / pages harvested in it (refaults included)",
        ),
        fig(
            "per harvested page, less its 4 KiB refault".into(),
            per(harvest_lost, harvested as f64).map(|p| p - (small - rewrite)),
            "ticks",
            "the line above less the 4 KiB dirty-log write fault: the harvest's own share",
        ),
        fig(
            format!(
                "per migrated page ({moved_in_window:.0} pages at {STORM_PAGES_PER_MS}/ms, {storm_lost:.0} ticks lost)"
            ),
            per(storm_lost, moved_in_window),
            "ticks",
            "guest ticks lost in a busy window / pages the storm moved in it (refaults included)",
        ),
    ])
}

/// `<domain>: migration storm: N pages moved`.
fn storm_moved(output: &str) -> Option<u64> {
    output.lines().find_map(|l| {
        let rest = &l[l.find("migration storm: ")? + "migration storm: ".len()..];
        rest.split(" pages moved").next()?.trim().parse().ok()
    })
}

/// The first `harvested pages   N` line of a `dirty stats` report.
fn harvested_pages(output: &str) -> Option<u64> {
    output.lines().find_map(|l| {
        let rest = &l[l.find("harvested pages")? + "harvested pages".len()..];
        rest.trim().parse().ok()
    })
}

/// A `key=N` count of the first VM's power-off line.
fn power_off_count(output: &str, key: &str) -> Option<u64> {
    exits(output)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, n)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAULTS: &str = "\
[    0.3] cpu0 INFO  domU1: dirty logging on
domU1| bench: dirty-fault-block = 9100 ticks
domU1| bench: dirty-fault-4k = 3100 ticks
domU1| bench: dirty-rewrite = 100 ticks
";
    const BASE: &str = "\
domU1| bench: busy-start = 1300 ms
domU1| bench: busy-end = 1500 ms
domU1| bench: busy-window = 12500000 ticks
domU1| bench: busy-iterations = 1000000 iterations
";
    const STORM: &str = "\
domU1| bench: busy-iterations = 990000 iterations
[    0.7] cpu0 INFO  domU1: migration storm: 15000 pages moved
[    0.7] cpu0 INFO  domU1: powered off; exits: hvc=700 (700 total), 3 stage-2 table pages
";
    const HARVEST: &str = "\
VM 1: dirty logging on
dirty pages                 70
harvests                     5
harvested pages           2000
domU1| bench: busy-iterations = 900000 iterations
[    0.7] cpu0 INFO  domU1: powered off; exits: hvc=700 dirty-harvested=42000 harvests=25 (725 total), 3 stage-2 table pages
";

    #[test]
    fn counts_are_read_from_the_hypervisor_log() {
        assert_eq!(storm_moved(STORM), Some(15000));
        assert_eq!(storm_moved("migration storm: x pages moved"), None);
        assert_eq!(harvested_pages(HARVEST), Some(2000));
        assert_eq!(harvested_pages("harvested pages"), None);
        assert_eq!(power_off_count(HARVEST, "dirty-harvested"), Some(42000));
        assert_eq!(power_off_count(STORM, "dirty-harvested"), None);
    }

    #[test]
    fn figures_subtract_the_baseline_and_divide_lost_ticks_by_pages() {
        let f = figures(FAULTS, BASE, STORM, HARVEST).unwrap();
        let values: Vec<f64> = f.iter().map(|f| f.value.unwrap()).collect();
        // 1% of 12.5M ticks lost over 15000 * 200 / 1500 = 2000 pages; 10% over 40000 pages.
        let expected = [
            3000.0,
            9000.0,
            100.0,
            1_250_000.0 / 40_000.0,
            1_250_000.0 / 40_000.0 - 3000.0,
            125_000.0 / 2000.0,
        ];
        assert_eq!(values.len(), expected.len());
        for (v, e) in values.iter().zip(expected) {
            assert!((v - e).abs() < 1e-6, "{values:?} != {expected:?}");
        }
    }

    #[test]
    fn missing_or_mismatched_lines_are_errors() {
        let no_log = FAULTS.replace("dirty logging on", "");
        assert!(figures(&no_log, BASE, STORM, HARVEST).is_err());
        let other_window = BASE.replace("busy-end = 1500", "busy-end = 1600");
        let e = figures(FAULTS, &other_window, STORM, HARVEST).unwrap_err();
        assert!(e.to_string().contains("busy window"), "{e}");
        assert!(figures(FAULTS, BASE, "", HARVEST).is_err());
        assert!(figures(FAULTS, BASE, STORM, BASE).is_err());
    }
}
