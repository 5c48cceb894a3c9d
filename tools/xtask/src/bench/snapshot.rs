//! The `snapshot` benchmark, under `-icount` (one counter tick, 16 ns, per instruction):
//!
//! - a live and a coherent snapshot of the Linux workload (2 vCPUs, 512 MiB, 2 processes
//!   sweeping 64 MiB) at 24 s of guest time (`hyp.snapshot=FILE@24000[,live]`): how long the VM
//!   was paused and how many pages were copied, from the hypervisor's report line;
//! - a restore of that coherent snapshot by a fresh QEMU: the time from QEMU's start (the
//!   hypervisor's log timestamps count from it, in instructions under -icount) to the
//!   hypervisor's `restored from a snapshot` line, when the vCPUs run again;
//! - a coherent snapshot of the idle `shell` guest (the default guest of `cargo xtask qemu`,
//!   same vCPUs and RAM) at 25 s, when its prompt has long been up, and a restore of it with
//!   `echo restored-ok` typed on QEMU's standard input as soon as the hypervisor is up, before
//!   it reads the snapshot (the bytes wait in QEMU's UART, so the run stays deterministic):
//!   the time from QEMU's start to the hypervisor's `first console output since the restore`
//!   line, the shell echoing the typed line (busybox's line editing echoes itself), so the
//!   restored guest took the UART's interrupt and ran its kernel and shell. The run ends once
//!   the command's output, `restored-ok` on a line of its own, is out, which shows the shell
//!   really answered.
//!
//! The kernel runs `quiet` (its boot log on the trapped console would slow the boot). The
//! workload's snapshots wait until it is well under way: at 8 s of guest time the kernel is
//! still booting. (An idle guest pauses too: its vCPUs waiting in WFI park like busy ones.)
//! Each run stops once the line it measures, or a snapshot error, is out. Runs go two at a
//! time, one a core: live, shell snapshot, shell restore in one thread; coherent and its
//! restore in the other.

use super::logged_run::{Input, deterministic, run_logged_within};
use super::report::{Figure, Report};
use crate::build::{self, Variant};
use crate::debian;
use crate::guest::{self, Guest};
use crate::guest_images;
use crate::machine::Machine;
use crate::qemu_bin::find_qemu;
use crate::size::Size;
use crate::snapshot::Restore;
use crate::workspace::Workspace;
use anyhow::{Context, Result, anyhow, bail};
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
const SHELL_APPEND: &str = "console=ttyAMA0 quiet";
/// The kernel reaches /init at about 16 s of guest time (as for the workload) and the prompt
/// follows at once; an idle guest's seconds cost QEMU little, so the margin is cheap. The
/// figures check that the prompt was out before the snapshot.
const SHELL_SNAPSHOT_AT_MS: u64 = 25000;
/// The busybox shell's prompt, which must be out before the snapshot.
const PROMPT: &str = "/ # ";
/// Logged by the hypervisor before it reads a snapshot: typed bytes written after it wait
/// for the restored guest (see [`Input`]).
const HYP_UP: &str = "guest memory pool: ";
/// Typed into the restored shell.
const SHELL_INPUT: &[u8] = b"echo restored-ok\n";
/// The command's output, on a line of its own (the echoed command line has `echo ` before it).
const SHELL_OUTPUT: &str = "restored-ok";
/// What the hypervisor logs, with its timestamp, when a restored guest first writes to its
/// console.
const FIRST_OUTPUT: &str = "first console output since the restore";
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
    let qemu_bin = find_qemu()?;
    let hyp = build::build_hyp(ws, &Variant::new(Vec::new()), true)?;
    let dir = ws.target_dir.join("bench");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let linux = |recipe: &str, append: &str| -> Result<Guest> {
        Ok(Guest {
            images: guest_images::linux(ws, debian::Kernel::default(), recipe)?,
            cpus: CPUS,
            mem: Size::from_mib(MEM_MIB),
            append: append.into(),
        })
    };
    let workload = linux("workload", WORKLOAD_APPEND)?;
    let shell = linux("shell", SHELL_APPEND)?;
    let file = |name: &str| dir.join(format!("{name}.snap"));
    let machine = |guest: &Guest, name: &str, at_ms: u64, options: &str| -> Result<Machine> {
        let snap = file(name);
        // A stale file must not pass for this run's.
        let _ = std::fs::remove_file(&snap);
        let mut m = Machine {
            smp: CPUS,
            mem: guest.machine_mem(None)?,
            hyp_args: format!("hyp.snapshot={}@{at_ms}{options}", snap.display()),
            ..Machine::new(hyp.bin.clone())
        };
        deterministic(&mut m);
        guest.add_to(&qemu_bin, &mut m, &dir.join(format!("snapshot-{name}.dtb")))?;
        Ok(m)
    };
    let live = machine(&workload, "live", SNAPSHOT_AT_MS, ",live")?;
    let coherent = machine(&workload, "coherent", SNAPSHOT_AT_MS, "")?;
    let idle = machine(&shell, "shell", SHELL_SNAPSHOT_AT_MS, "")?;
    let log = |name: &str| dir.join(format!("snapshot-{name}.log"));
    let until = |done: &'static str| [done, FAILED[0], FAILED[1]];
    let snapshot_run = |m: &Machine, name: &str, done: &'static str| {
        run_logged_within(&qemu_bin, m, &log(name), &until(done), RUN_TIMEOUT, None)
    };
    // A fresh QEMU restoring the snapshot `name` took, until its output shows one of `stop`.
    let restore_run = |name: &str, stop: &[&str], input: Option<Input<'_>>| -> Result<String> {
        let restore = Restore::from_file(&file(name))?;
        let domain = restore.domain();
        let mut m = Machine {
            smp: CPUS,
            mem: guest::machine_mem(&domain),
            ..Machine::new(hyp.bin.clone())
        };
        deterministic(&mut m);
        guest::add_domain(
            &domain,
            &qemu_bin,
            &mut m,
            &dir.join(format!("snapshot-restore-{name}.dtb")),
        )?;
        let log = log(&format!("restore-{name}"));
        run_logged_within(&qemu_bin, &m, &log, stop, RUN_TIMEOUT, input)
    };
    let answer = shell_answer();
    let (live_out, coherent_out, restore_out, shell_out, shell_restore_out) =
        std::thread::scope(|s| {
            let other = s.spawn(|| {
                let live_out = snapshot_run(&live, "live", LIVE_DONE);
                let shell_out = snapshot_run(&idle, "shell", COHERENT_DONE);
                let shell_restore_out = match &shell_out {
                    Ok(out) if taken(out).is_some() => {
                        let input = Input {
                            after: HYP_UP,
                            before: RESTORED,
                            bytes: SHELL_INPUT,
                        };
                        restore_run("shell", &[answer.as_str()], Some(input))
                    }
                    _ => Err(anyhow!("no snapshot of the idle shell to restore")),
                };
                (live_out, shell_out, shell_restore_out)
            });
            let coherent_out = snapshot_run(&coherent, "coherent", COHERENT_DONE);
            let restore_out = match &coherent_out {
                Ok(out) if taken(out).is_some() => restore_run("coherent", &[RESTORED], None),
                _ => Err(anyhow!("no coherent snapshot to restore")),
            };
            let (live_out, shell_out, shell_restore_out) = other.join().expect("no panics");
            (
                live_out,
                coherent_out,
                restore_out,
                shell_out,
                shell_restore_out,
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
    add(
        "restore of an idle shell snapshot",
        shell_out.and_then(|snap| shell_restore_out.and_then(|out| shell_figures(&snap, &out))),
    );
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

/// The restored shell's answer as the console shows it: the hypervisor starts each of the
/// guest's lines with `<domain>| `.
fn shell_answer() -> String {
    format!("{}| {SHELL_OUTPUT}", guest::DOMAIN_NAME)
}

/// The restore of the idle shell, from its snapshot run's output and the restore run's.
fn shell_figures(snapshot: &str, restore: &str) -> Result<Vec<Figure>> {
    let snapshot_line = snapshot
        .find(COHERENT_DONE)
        .filter(|_| taken(snapshot).is_some())
        .context("the idle shell's snapshot line is missing")?;
    if !snapshot[..snapshot_line].contains(PROMPT) {
        bail!("the shell's prompt `{PROMPT}` was not out before the snapshot: take it later");
    }
    let pages = taken(snapshot).map_or(0, |t| t.pages);
    if !restore.lines().any(|l| l.trim_end() == shell_answer()) {
        bail!("the restored shell did not answer `{SHELL_OUTPUT}`");
    }
    let first_s = restore
        .lines()
        .find(|l| l.contains(FIRST_OUTPUT))
        .and_then(timestamp)
        .with_context(|| format!("the restore run has no timestamped `{FIRST_OUTPUT}` line"))?;
    Ok(vec![fig(
        format!(
            "restore of an idle shell snapshot ({pages} pages): QEMU start to the shell's answer ({:.1} ms)",
            first_s * 1e3
        ),
        (first_s * TICKS_PER_S).round(),
        "ticks",
        "timestamp of the hypervisor's `first console output since the restore` line (the shell echoing `echo restored-ok`, typed on QEMU's stdin once the hypervisor is up; the run ends at the command's output)",
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

    const SHELL_SNAPSHOT: &str = "\
[    0.3] cpu0 INFO  bootargs: 1 timed action(s)
domU1| / # \x1b[6n
[   25.3] cpu0 INFO  bootargs: at 25000 ms: snapshot /t/shell.snap 1
domU1: snapshot /t/shell.snap: 17408 pages, 71311704 bytes, paused 6570254 us
";
    const SHELL_RESTORE: &str = "\
[    7.258797] cpu0 INFO  domain domU1 = VM 1 (VMID 1): restored from a snapshot: 17408 pages, 2 of 2 vCPU(s) on
[    7.284183] cpu1 INFO  domU1: first console output since the restore
domU1| echo restored-ok\r
domU1| restored-ok\r
";

    #[test]
    fn the_shell_restore_counts_to_its_first_output_and_needs_its_answer() {
        let f = shell_figures(SHELL_SNAPSHOT, SHELL_RESTORE).unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].value, Some(455_261_438.0));
        assert!(f[0].name.contains("(17408 pages)"), "{}", f[0].name);
        assert!(f[0].name.contains("(7284.2 ms)"), "{}", f[0].name);
        // Only the echoed command line, no output of it: the shell did not answer.
        let echo_only = SHELL_RESTORE.replace("domU1| restored-ok\r\n", "");
        assert!(shell_figures(SHELL_SNAPSHOT, &echo_only).is_err());
        // A prompt that came after the snapshot does not count.
        let late = "domU1: snapshot /t/s: 1 pages, 4096 bytes, paused 9 us\ndomU1| / # \n";
        assert!(shell_figures(late, SHELL_RESTORE).is_err());
        assert!(shell_figures(SHELL_SNAPSHOT, "domU1| restored-ok\n").is_err());
        assert!(shell_figures("", SHELL_RESTORE).is_err());
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
