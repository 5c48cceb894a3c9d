//! The `snapshot` benchmark, under `-icount` (one counter tick, 16 ns, per instruction):
//!
//! - a live and a coherent snapshot of the Linux workload (2 vCPUs, 512 MiB, 2 processes
//!   sweeping 64 MiB) at 24 s of guest time (`hyp.snapshot=FILE@24000[,live]`): how long the VM
//!   was paused and how many pages were copied, from the hypervisor's report line;
//! - a restore of that coherent snapshot by a fresh QEMU: the time from QEMU's start (the
//!   hypervisor's log timestamps count from it, in instructions under -icount) to the
//!   hypervisor's `restored from a snapshot` line, when the vCPUs run again. (The snapshot of
//!   an idle shell would be the better subject, but pausing an idle guest fails today: its vCPU
//!   waiting in WFI does not park, `vCPU 1 did not stop within 1000 ms`.)
//!
//! The kernel runs `quiet` (its boot log on the trapped console would slow the boot), and the
//! snapshot waits until the workload is well under way: at 8 s of guest time the kernel is
//! still booting, with vCPU 1 idle, which cannot be paused (above). Each run stops once the
//! line it measures, or a snapshot error, is out.

use super::{Figure, Report, run_logged_within};
use crate::build::{self, Variant};
use crate::guest::{self, Guest};
use crate::qemu::{self, Machine};
use crate::size::Size;
use crate::snapshot::Restore;
use crate::workspace::Workspace;
use anyhow::{Context, Result, bail};
use std::time::Duration;

const WORKLOAD_APPEND: &str = "console=ttyAMA0 quiet workload.args=--procs,2,--mib,64,--seconds,20";
const MEM_MIB: u64 = 512;
const CPUS: u32 = 2;
/// Mid-workload: under the hypervisor and -icount the kernel reaches /init at about 16 s of
/// guest time, the workload then runs 20 s.
const SNAPSHOT_AT_MS: u64 = 24000;
/// Counter ticks per second: QEMU virt's 62.5 MHz, one instruction each under shift=4.
const TICKS_PER_S: f64 = 62_500_000.0;
/// What the hypervisor prints once a live snapshot is written.
const LIVE_DONE: &str = "paused_us=";
/// What it prints once a coherent one is written.
const COHERENT_DONE: &str = " bytes, paused ";
const RESTORED: &str = "restored from a snapshot";
/// Wall-clock limit of one run: the runs take under a minute; a snapshot that never finishes
/// (the live one has hung) should not hold the benchmark for the default ten minutes.
const RUN_TIMEOUT: Duration = Duration::from_secs(240);
/// How the hypervisor's snapshot errors start (`domU1: snapshot: ...`, `... live snapshot F:`).
const FAILED: [&str; 2] = [": snapshot: ", ": live snapshot "];

/// What a snapshot's report line says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Taken {
    pages: u64,
    paused_us: u64,
    /// Pre-copy rounds; 0 for a coherent snapshot.
    rounds: u64,
}

pub(super) fn run(ws: &Workspace, report: &mut Report) -> Result<()> {
    let qemu_bin = qemu::find_qemu()?;
    let hyp = build::build_hyp(ws, &Variant::new(Vec::new()), true)?;
    let dir = ws.target_dir.join("bench");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let linux = |recipe: &str, append: &str| -> Result<Guest> {
        Ok(Guest {
            images: guest::linux(ws, recipe)?,
            cpus: CPUS,
            mem: Size::from_mib(MEM_MIB),
            append: append.into(),
        })
    };
    let workload = linux("workload", WORKLOAD_APPEND)?;
    let file = |name: &str| dir.join(format!("{name}.snap"));
    let machine = |guest: &Guest, name: &str, options: &str| -> Result<Machine> {
        let snap = file(name);
        // A stale file must not pass for this run's.
        let _ = std::fs::remove_file(&snap);
        let mut m = Machine {
            smp: CPUS,
            mem: guest.machine_mem(None)?,
            hyp_args: format!("hyp.snapshot={}@{SNAPSHOT_AT_MS}{options}", snap.display()),
            ..Machine::new(hyp.bin.clone())
        };
        super::deterministic(&mut m);
        guest.add_to(&qemu_bin, &mut m, &dir.join(format!("snapshot-{name}.dtb")))?;
        Ok(m)
    };
    let live = machine(&workload, "live", ",live")?;
    let coherent = machine(&workload, "coherent", "")?;
    let log = |name: &str| dir.join(format!("snapshot-{name}.log"));
    let until = |done: &'static str| [done, FAILED[0], FAILED[1]];
    let (live_out, coherent_out, restore_out) = std::thread::scope(|s| {
        let live_run = s.spawn(|| {
            run_logged_within(
                &qemu_bin,
                &live,
                &log("live"),
                &until(LIVE_DONE),
                RUN_TIMEOUT,
            )
        });
        let coherent_out = run_logged_within(
            &qemu_bin,
            &coherent,
            &log("coherent"),
            &until(COHERENT_DONE),
            RUN_TIMEOUT,
        );
        let written = coherent_out.as_ref().is_ok_and(|out| taken(out).is_some());
        let restore_out = if written {
            (|| -> Result<String> {
                let restore = Restore::from_file(&file("coherent"))?;
                let domain = restore.domain();
                let mut m = Machine {
                    smp: CPUS,
                    mem: guest::machine_mem(&domain),
                    ..Machine::new(hyp.bin.clone())
                };
                super::deterministic(&mut m);
                guest::add_domain(
                    &domain,
                    &qemu_bin,
                    &mut m,
                    &dir.join("snapshot-restore.dtb"),
                )?;
                run_logged_within(&qemu_bin, &m, &log("restore"), &[RESTORED], RUN_TIMEOUT)
            })()
        } else {
            Err(anyhow::anyhow!("no coherent snapshot to restore"))
        };
        (
            live_run.join().expect("no panics"),
            coherent_out,
            restore_out,
        )
    });
    let mut failed = Vec::new();
    let mut add = |what: &str, figures: Result<Vec<Figure>>| match figures {
        Ok(f) => report.figures.extend(f),
        Err(e) => {
            report.figures.push(Figure {
                name: what.into(),
                value: None,
                unit: String::new(),
                method: format!("not measured: {e:#}"),
            });
            failed.push(what.to_string());
        }
    };
    add("live snapshot", live_out.and_then(|out| live_figures(&out)));
    add(
        "coherent snapshot",
        coherent_out.and_then(|out| coherent_figures(&out)),
    );
    add("restore", restore_out.and_then(|out| restore_figures(&out)));
    if !failed.is_empty() {
        bail!("not measured: {}", failed.join(", "));
    }
    Ok(())
}

const WORKLOAD: &str = "Linux workload (2 vCPUs, 512 MiB, 2 procs over 64 MiB)";

fn fig(name: String, value: f64, unit: &str, how: &str) -> Figure {
    Figure {
        name,
        value: Some(value),
        unit: unit.into(),
        method: how.into(),
    }
}

fn ticks(us: u64) -> f64 {
    (us as f64 * TICKS_PER_S / 1e6).round()
}

fn live_figures(output: &str) -> Result<Vec<Figure>> {
    let live = taken(output).context("the live snapshot's report line is missing")?;
    if live.rounds == 0 {
        bail!("the live snapshot made no pre-copy round: it was not live");
    }
    Ok(vec![
        fig(
            format!(
                "live snapshot of the {WORKLOAD}: paused ({} us)",
                live.paused_us
            ),
            ticks(live.paused_us),
            "ticks",
            "`paused_us` of the hypervisor's report, at 24 s of guest time",
        ),
        fig(
            format!("live snapshot: pages copied ({} rounds)", live.rounds),
            live.pages as f64,
            "pages",
            "`total_pages`: every pre-copy round plus the paused copy",
        ),
    ])
}

fn coherent_figures(output: &str) -> Result<Vec<Figure>> {
    let coherent = taken(output).context("the coherent snapshot's line is missing")?;
    Ok(vec![
        fig(
            format!(
                "coherent snapshot of the {WORKLOAD}: paused ({} us)",
                coherent.paused_us
            ),
            ticks(coherent.paused_us),
            "ticks",
            "`paused U us` of the hypervisor's line, at 24 s of guest time",
        ),
        fig(
            "coherent snapshot: pages copied".into(),
            coherent.pages as f64,
            "pages",
            "`N pages` of the hypervisor's line",
        ),
    ])
}

fn restore_figures(restore: &str) -> Result<Vec<Figure>> {
    let restored_s = restore
        .lines()
        .find(|l| l.contains(RESTORED))
        .and_then(timestamp)
        .context("the restore run has no timestamped `restored from a snapshot` line")?;
    let restored_pages = restore
        .lines()
        .find_map(|l| {
            let rest = &l[l.find(RESTORED)? + RESTORED.len()..];
            rest.trim_start_matches(':')
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(0);
    Ok(vec![fig(
        format!(
            "restore of the coherent snapshot ({restored_pages} pages), QEMU start to vCPUs running ({:.1} ms)",
            restored_s * 1e3
        ),
        (restored_s * TICKS_PER_S).round(),
        "ticks",
        "timestamp of the hypervisor's `restored from a snapshot` line",
    )])
}

/// The snapshot report in `output`: a live one's `snapshot F: live rounds=R ... paused_us=U
/// total_pages=T bytes=B`, or a coherent one's `snapshot F: N pages, B bytes, paused U us`.
fn taken(output: &str) -> Option<Taken> {
    output.lines().find_map(|l| {
        let rest = &l[l.find("snapshot ")?..];
        if rest.contains(LIVE_DONE) {
            let field = |key: &str| -> Option<u64> {
                rest.split_whitespace()
                    .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))?
                    .parse()
                    .ok()
            };
            Some(Taken {
                pages: field("total_pages")?,
                paused_us: field("paused_us")?,
                rounds: field("rounds")?,
            })
        } else {
            let (_, counts) = rest.split_once(": ")?;
            let pages = counts.strip_suffix(" us")?;
            let (pages, paused) = pages.split_once(" pages, ")?;
            let (_, paused) = paused.split_once(COHERENT_DONE)?;
            Some(Taken {
                pages: pages.trim().parse().ok()?,
                paused_us: paused.trim().parse().ok()?,
                rounds: 0,
            })
        }
    })
}

/// The seconds of a `[    1.586058] ...` log line.
fn timestamp(line: &str) -> Option<f64> {
    let inner = line.trim_start().strip_prefix('[')?;
    inner.split_once(']')?.0.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIVE: &str = "\
[    8.1] cpu0 INFO  bootargs: at 8000 ms: snapshot /t/live.snap --live 1
snapshot /t/live.snap: live rounds=3 round_pages=20000,400,30 paused_pages=5 paused_us=830 total_pages=20435 bytes=83700000
";
    const COHERENT: &str =
        "domU1: snapshot /t/coherent.snap: 20100 pages, 82329600 bytes, paused 250000 us\n";
    const RESTORE: &str = "\
[    0.083521] cpu0 INFO  domain domU1 = VM 1 (VMID 1): restored from a snapshot: 9000 pages, 2 of 2 vCPU(s) on, guest counter 500000000, on pCPU 0..1
";

    #[test]
    fn snapshot_lines_parse_in_both_forms() {
        assert_eq!(
            taken(LIVE),
            Some(Taken {
                pages: 20435,
                paused_us: 830,
                rounds: 3
            })
        );
        assert_eq!(
            taken(COHERENT),
            Some(Taken {
                pages: 20100,
                paused_us: 250_000,
                rounds: 0
            })
        );
        assert_eq!(taken("domU1: snapshot x: cannot open"), None);
        assert_eq!(taken("snapshot x: live rounds=1 paused_us=9"), None);
        assert_eq!(timestamp(RESTORE.lines().next().unwrap()), Some(0.083521));
        assert_eq!(timestamp("domU1| [    1.0] kernel"), None);
    }

    #[test]
    fn figures_convert_microseconds_and_seconds_to_ticks() {
        let f = [
            live_figures(LIVE).unwrap(),
            coherent_figures(COHERENT).unwrap(),
            restore_figures(RESTORE).unwrap(),
        ]
        .concat();
        let values: Vec<f64> = f.iter().map(|f| f.value.unwrap()).collect();
        assert_eq!(
            values,
            [51_875.0, 20435.0, 15_625_000.0, 20100.0, 5_220_063.0]
        );
        // A coherent line where a live one is expected is refused.
        assert!(live_figures(COHERENT).is_err());
        assert!(coherent_figures("").is_err());
        assert!(restore_figures("no restore").is_err());
    }
}
