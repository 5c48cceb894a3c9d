//! `cargo xtask bench`: the project's benchmarks, listed in one table so new kinds join as new
//! rows: the host criterion benchmark of the stage-2 code, and guest boots under QEMU
//! `-icount shift=4,sleep=off`, where the virtual counter advances one tick per instruction,
//! run natively (the guest at EL1, no hypervisor) and under the hypervisor with the same vCPUs
//! and RAM, so the ratio is the hypervisor's overhead in instructions, the same on every host.
//! Figures with no native counterpart (dirty logging, migration, snapshots: `bench/dirty.rs`,
//! `bench/snapshot.rs`, each documenting its method) go in a second table, `figures` in JSON.

mod dirty;
mod snapshot;

use crate::build::{self, Variant};
use crate::debian;
use crate::exit::Exit;
use crate::guest::{self, Guest};
use crate::process::{self, Outcome};
use crate::qemu::{self, Machine};
use crate::size::Size;
use crate::workspace::Workspace;
use anyhow::{Context, Result, bail};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Run only the benchmarks whose name contains FILTER.
    pub filter: Option<String>,
    /// List the benchmarks instead of running them.
    #[arg(long)]
    pub list: bool,
    /// Print the guest benchmarks' results as one JSON object on stdout (progress goes to
    /// stderr).
    #[arg(long)]
    pub json: bool,
    /// vCPUs of the Linux boot benchmark's guest (and CPUs of both machines).
    #[arg(long, default_value_t = 2)]
    pub guest_cpus: u32,
    /// Kernel command line of the Linux boot benchmark. The default keeps the kernel's log
    /// off the console: under the hypervisor every character is a trapped PL011 write, which
    /// would measure printing rather than booting.
    #[arg(long, default_value = BOOT_APPEND)]
    pub append: String,
}

/// How a benchmark runs.
enum Kind {
    /// A criterion benchmark on the host: `cargo bench -p <package> --bench <bench>`.
    Criterion {
        package: &'static str,
        bench: &'static str,
        /// Its source, checked first so a missing bench is named rather than a cargo error.
        source: &'static str,
    },
    /// Debian's kernel with the `bench` initramfs, whose /init prints the virtual counter.
    LinuxBoot,
    /// The bare-metal guest `bench` of tests/guests, printing `bench: <name> = <value> <unit>`.
    GuestMicro,
    /// The bare-metal guest `dirtybench` under the hypervisor with dirty logging, harvests
    /// and a migration storm (see `bench/dirty.rs`).
    Dirty,
    /// Live and coherent snapshots of the Linux workload, restores of the coherent one and of
    /// an idle shell's (see `bench/snapshot.rs`).
    Snapshot,
}

struct Bench {
    name: &'static str,
    about: &'static str,
    kind: Kind,
}

const BENCHES: &[Bench] = &[
    Bench {
        name: "stage2",
        about: "stage-2 map, unmap and fault paths of the memory core (host, criterion)",
        kind: Kind::Criterion {
            package: "hyp",
            bench: "stage2",
            source: "hyp/benches/stage2.rs",
        },
    },
    Bench {
        name: "boot",
        about: "Linux boot to the init banner (2 vCPUs by default, 512 MiB): native vs under the hypervisor (QEMU -icount)",
        kind: Kind::LinuxBoot,
    },
    Bench {
        name: "guest",
        about: "bare-metal guest `bench` (HVC round trip, timer latency, ...): native vs under the hypervisor (QEMU -icount)",
        kind: Kind::GuestMicro,
    },
    Bench {
        name: "dirty",
        about: "dirty-log write faults (4 KiB, 2 MiB split), cost per harvested and per migrated page (bare-metal guest `dirtybench`, QEMU -icount)",
        kind: Kind::Dirty,
    },
    Bench {
        name: "snapshot",
        about: "live and coherent snapshot of the Linux workload (paused time, pages copied), restore of the coherent one, restore of an idle shell to its answer (QEMU -icount)",
        kind: Kind::Snapshot,
    },
];

const BOOT_APPEND: &str = "console=ttyAMA0 quiet";
const BOOT_MEM_MIB: u64 = 512;
/// Wall-clock limit of one benchmark boot; -icount makes QEMU slower than a normal run.
const BOOT_TIMEOUT: Duration = Duration::from_secs(600);
const BANNER: &str = "init: banner at cntvct=";
const COUNTER_OFFSET: &str = ": virtual counter offset ";
const BENCH_GUEST: &str = "bench";

/// One measured quantity, natively and under the hypervisor.
#[derive(Clone, Debug, PartialEq)]
struct Row {
    name: String,
    unit: String,
    native: Option<f64>,
    hyp: Option<f64>,
}

impl Row {
    fn ratio(&self) -> Option<f64> {
        match (self.native, self.hyp) {
            (Some(n), Some(h)) if n > 0.0 => Some(h / n),
            _ => None,
        }
    }
}

/// One figure measured under the hypervisor only, with how it was derived.
#[derive(Clone, Debug, PartialEq)]
struct Figure {
    name: String,
    value: Option<f64>,
    unit: String,
    method: String,
}

/// What the guest benchmarks measured.
#[derive(Default)]
struct Report {
    rows: Vec<Row>,
    /// Figures without a native counterpart (dirty logging, migration, snapshots).
    figures: Vec<Figure>,
    /// Exits per reason under the hypervisor, per benchmark: `(bench, reason, count)`.
    exits: Vec<(String, String, u64)>,
}

pub fn run(args: &BenchArgs) -> Result<()> {
    let ws = Workspace::locate()?;
    let selected: Vec<&Bench> = BENCHES
        .iter()
        .filter(|b| args.filter.as_deref().is_none_or(|f| b.name.contains(f)))
        .collect();
    if selected.is_empty() {
        let names: Vec<&str> = BENCHES.iter().map(|b| b.name).collect();
        bail!(
            "no benchmark name contains `{}`; the benchmarks are: {}",
            args.filter.as_deref().unwrap_or_default(),
            names.join(", ")
        );
    }
    if args.list {
        for b in selected {
            println!("{:<12} {}", b.name, b.about);
        }
        return Ok(());
    }
    let mut failed = Vec::new();
    let mut report = Report::default();
    for b in selected {
        eprintln!("== bench {}: {}", b.name, b.about);
        let result = match &b.kind {
            Kind::Criterion {
                package,
                bench,
                source,
            } => {
                if !ws.root.join(source).is_file() {
                    bail!(
                        "benchmark `{}` has no source yet: {source} does not exist \
                         (it belongs to the memory-core work); nothing was measured",
                        b.name
                    );
                }
                let mut cargo = ws.cargo();
                cargo.args(["bench", "-p", package, "--bench", bench]);
                if args.json {
                    // Keep stdout for the JSON report.
                    cargo.stdout(Stdio::from(std::io::stderr()));
                }
                let status = cargo.status().context("cannot run `cargo bench`")?;
                if status.success() {
                    Ok(())
                } else {
                    Err(anyhow::anyhow!("cargo bench failed"))
                }
            }
            Kind::LinuxBoot => linux_boot(&ws, args, &mut report),
            Kind::GuestMicro => guest_micro(&ws, &mut report),
            Kind::Dirty => dirty::run(&ws, &mut report),
            Kind::Snapshot => snapshot::run(&ws, &mut report),
        };
        if let Err(e) = result {
            eprintln!("error: bench {}: {e:#}", b.name);
            failed.push(b.name);
        }
    }
    if args.json {
        println!("{}", json(&report));
    } else if !report.rows.is_empty() || !report.figures.is_empty() {
        print!("{}", markdown(&report));
    }
    if !failed.is_empty() {
        return Err(
            Exit::with_message(1, format!("benchmarks failed: {}", failed.join(", "))).into(),
        );
    }
    Ok(())
}

/// The machine options and arguments that make a run repeatable: instruction-counted time, no
/// random DTB seeds, a fixed RNG seed and a fixed wall clock that follows the virtual one.
fn deterministic(machine: &mut Machine) {
    machine.icount = true;
    machine
        .machine_options
        .push(("dtb-randomness".into(), "off".into()));
    machine.extra.extend(
        ["-seed", "1", "-rtc", "base=2024-01-01T00:00:00,clock=vm"]
            .into_iter()
            .map(String::from),
    );
}

/// The two runs of `guest`: natively, and under the release hypervisor with its boot DTB at
/// `<target>/bench/<name>.dtb`. Returns both outputs.
fn both_ways(ws: &Workspace, name: &str, guest: &Guest) -> Result<(String, String)> {
    let qemu_bin = qemu::find_qemu()?;
    let hyp = build::build_hyp(ws, &Variant::new(Vec::new()), true)?;
    let dir = ws.target_dir.join("bench");
    let mut native = guest.native(Machine::new(hyp.bin.clone()));
    deterministic(&mut native);
    let mut under = Machine {
        smp: guest.cpus,
        mem: guest.machine_mem(None)?,
        ..Machine::new(hyp.bin.clone())
    };
    deterministic(&mut under);
    guest.add_to(&qemu_bin, &mut under, &dir.join(format!("{name}.dtb")))?;
    // -icount runs are deterministic whatever else the host does, so both go at once.
    let (native_out, hyp_out) = std::thread::scope(|s| {
        let native_run = s.spawn(|| {
            run_logged(
                &qemu_bin,
                &native,
                &dir.join(format!("{name}-native.log")),
                &[],
            )
        });
        let hyp_run = run_logged(&qemu_bin, &under, &dir.join(format!("{name}-hyp.log")), &[]);
        (native_run.join().expect("no panics"), hyp_run)
    });
    Ok((native_out?, hyp_out?))
}

/// Runs `machine` to completion, or until its output contains one of the `stop` texts, with
/// its output in `log`; returns the output.
fn run_logged(qemu_bin: &Path, machine: &Machine, log: &Path, stop: &[&str]) -> Result<String> {
    run_logged_within(qemu_bin, machine, log, stop, BOOT_TIMEOUT, None)
}

/// Bytes for QEMU's standard input (the console), written once the output shows `after`.
/// Written at QEMU's start they were lost before they reached a guest; written once the
/// hypervisor is up (and before the guest runs), they wait in QEMU's UART until the guest
/// reads them, which keeps a deterministic run deterministic. `before` in the output by then
/// means they came too late for that: the run fails rather than measure a wall-clock delay.
#[derive(Clone, Copy, Debug)]
struct Input<'a> {
    after: &'a str,
    before: &'a str,
    bytes: &'a [u8],
}

/// [`run_logged`] with another wall-clock limit than [`BOOT_TIMEOUT`], and `input` for the
/// console if given.
fn run_logged_within(
    qemu_bin: &Path,
    machine: &Machine,
    log: &Path,
    stop: &[&str],
    timeout: Duration,
    input: Option<Input<'_>>,
) -> Result<String> {
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let args = machine.args();
    eprintln!("+ {}", qemu::command_line(qemu_bin, &args));
    let file =
        std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let mut child = Command::new(qemu_bin)
        .args(&args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .with_context(|| format!("cannot start {}", qemu_bin.display()))?;
    // Held open until QEMU ends: the end of its standard input would end its console input.
    let mut stdin = child.stdin.take();
    let mut pending = input;
    let mut stopped = false;
    let outcome = process::wait_polling(&mut child, Some(timeout), |child| {
        if stopped || (stop.is_empty() && pending.is_none()) {
            return Ok(());
        }
        let out = String::from_utf8_lossy(&std::fs::read(log)?).into_owned();
        if let Some(i) = pending.filter(|i| out.contains(i.after)) {
            pending = None;
            if out.contains(i.before) {
                bail!(
                    "the console input was due before `{}`, which is out already (host too slow?); see {}",
                    i.before,
                    log.display()
                );
            }
            let pipe = stdin.as_mut().expect("stdin is piped when there is input");
            pipe.write_all(i.bytes)
                .and_then(|()| pipe.flush())
                .context("cannot write QEMU's standard input")?;
        }
        if !stop.is_empty() && stop.iter().any(|t| out.contains(t)) {
            stopped = true;
            child.kill().context("cannot stop QEMU")?;
        }
        Ok(())
    });
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
    };
    drop(stdin);
    let output = String::from_utf8_lossy(&std::fs::read(log)?).into_owned();
    match outcome {
        Outcome::Exited(0) => Ok(output),
        Outcome::Exited(_) if stopped => Ok(output),
        Outcome::Exited(code) => bail!("QEMU exited with status {code}; see {}", log.display()),
        Outcome::TimedOut => bail!(
            "QEMU did not finish in {}s; see {}",
            timeout.as_secs(),
            log.display()
        ),
    }
}

fn linux_boot(ws: &Workspace, args: &BenchArgs, report: &mut Report) -> Result<()> {
    if args.guest_cpus == 0 {
        bail!("--guest-cpus must be at least 1");
    }
    let guest = Guest {
        images: guest::linux(ws, debian::Kernel::default(), "bench")?,
        cpus: args.guest_cpus,
        mem: Size::from_mib(BOOT_MEM_MIB),
        append: args.append.clone(),
    };
    let (native, hyp) = both_ways(ws, "boot", &guest)?;
    let native_ticks =
        banner_ticks(&native).context("the native boot printed no init banner with the counter")?;
    let banner =
        banner_ticks(&hyp).context("the boot under the hypervisor printed no init banner")?;
    let offset = counter_offset(&hyp).context(
        "the hypervisor did not log `domU1: virtual counter offset N`, needed to add the time before the VM started",
    )?;
    report.rows.push(Row {
        name: format!(
            "Linux boot to init banner ({} vCPUs, {BOOT_MEM_MIB} MiB, `{}`)",
            args.guest_cpus, args.append
        ),
        unit: "ticks".into(),
        native: Some(native_ticks as f64),
        hyp: Some((offset + banner) as f64),
    });
    report.exits.extend(
        exits(&hyp)
            .into_iter()
            .map(|(r, n)| ("boot".to_string(), r, n)),
    );
    Ok(())
}

fn guest_micro(ws: &Workspace, report: &mut Report) -> Result<()> {
    let guest = Guest {
        images: guest::bare_metal(ws, BENCH_GUEST)?,
        cpus: 1,
        mem: Size::from_mib(guest::BARE_METAL_MEM_MIB),
        append: String::new(),
    };
    let (native, hyp) = both_ways(ws, "guest", &guest)?;
    let native = guest_lines(&native);
    let hyp_lines = guest_lines(&hyp);
    if native.is_empty() && hyp_lines.is_empty() {
        bail!("the bench guest printed no `bench: <name> = <value> <unit>` lines");
    }
    let mut names: Vec<(String, String)> = Vec::new();
    for (name, _, unit) in native.iter().chain(&hyp_lines) {
        if !names.iter().any(|(n, _)| n == name) {
            names.push((name.clone(), unit.clone()));
        }
    }
    for (name, unit) in names {
        let find = |lines: &[(String, f64, String)]| {
            lines
                .iter()
                .find(|(n, _, _)| *n == name)
                .map(|(_, v, _)| *v)
        };
        report.rows.push(Row {
            native: find(&native),
            hyp: find(&hyp_lines),
            name,
            unit,
        });
    }
    report.exits.extend(
        exits(&hyp)
            .into_iter()
            .map(|(r, n)| ("guest".to_string(), r, n)),
    );
    Ok(())
}

/// The counter value of the init banner, wherever the console prefix puts it.
fn banner_ticks(output: &str) -> Option<u64> {
    output.lines().find_map(|l| {
        let at = l.find(BANNER)? + BANNER.len();
        l[at..].trim().parse().ok()
    })
}

/// The hypervisor's `<domain>: virtual counter offset N` for the first domain.
fn counter_offset(output: &str) -> Option<u64> {
    output.lines().find_map(|l| {
        let at = l.find(COUNTER_OFFSET)? + COUNTER_OFFSET.len();
        l[at..].split_whitespace().next()?.parse().ok()
    })
}

/// `bench: <name> = <value> <unit>` lines, in order.
fn guest_lines(output: &str) -> Vec<(String, f64, String)> {
    output
        .lines()
        .filter_map(|l| {
            let rest = &l[l.find("bench: ")? + "bench: ".len()..];
            let (name, value) = rest.split_once(" = ")?;
            let mut words = value.split_whitespace();
            let number = words.next()?.parse().ok()?;
            let unit = words.next().unwrap_or("").to_string();
            Some((name.trim().to_string(), number, unit))
        })
        .collect()
}

/// The exit counts of `<domain>: powered off; exits: a=1 b=2 (3 total)`.
fn exits(output: &str) -> Vec<(String, u64)> {
    let Some(line) = output
        .lines()
        .find(|l| l.contains(": powered off; exits: "))
    else {
        return Vec::new();
    };
    let list = &line[line.find("exits: ").expect("matched above") + "exits: ".len()..];
    let mut out: Vec<(String, u64)> = list
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter_map(|w| {
            let (k, v) = w.split_once('=')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect();
    if let Some(total) = list
        .find('(')
        .and_then(|at| list[at + 1..].split_whitespace().next())
        .and_then(|n| n.parse().ok())
    {
        out.push(("total".into(), total));
    }
    out
}

fn number(v: Option<f64>) -> String {
    match v {
        Some(v) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{}", v as i64),
        Some(v) => format!("{v:.3}"),
        None => "-".into(),
    }
}

fn markdown(report: &Report) -> String {
    let mut s = String::new();
    if !report.rows.is_empty() {
        s.push_str("\n| benchmark | native | under hyp | ratio |\n| --- | ---: | ---: | ---: |\n");
    }
    for r in &report.rows {
        let unit = if r.unit.is_empty() {
            String::new()
        } else {
            format!(" {}", r.unit)
        };
        let _ = writeln!(
            s,
            "| {} | {}{unit} | {}{unit} | {} |",
            r.name,
            number(r.native),
            number(r.hyp),
            r.ratio().map_or("-".into(), |x| format!("{x:.3}"))
        );
    }
    if !report.figures.is_empty() {
        s.push_str("\n| under the hypervisor | value | how |\n| --- | ---: | --- |\n");
        for f in &report.figures {
            let _ = writeln!(
                s,
                "| {} | {} {} | {} |",
                f.name,
                number(f.value),
                f.unit,
                f.method
            );
        }
    }
    if !report.exits.is_empty() {
        s.push_str("\n| run | exit reason | count |\n| --- | --- | ---: |\n");
        for (bench, reason, n) in &report.exits {
            let _ = writeln!(s, "| {bench} | {reason} | {n} |");
        }
    }
    s
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_num(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => number(Some(v)),
        _ => "null".into(),
    }
}

fn json(report: &Report) -> String {
    let rows: Vec<String> = report
        .rows
        .iter()
        .map(|r| {
            format!(
                "{{\"name\":{},\"unit\":{},\"native\":{},\"hyp\":{},\"ratio\":{}}}",
                json_str(&r.name),
                json_str(&r.unit),
                json_num(r.native),
                json_num(r.hyp),
                json_num(r.ratio())
            )
        })
        .collect();
    let exits: Vec<String> = report
        .exits
        .iter()
        .map(|(b, r, n)| {
            format!(
                "{{\"run\":{},\"reason\":{},\"count\":{n}}}",
                json_str(b),
                json_str(r)
            )
        })
        .collect();
    let figures: Vec<String> = report
        .figures
        .iter()
        .map(|f| {
            format!(
                "{{\"name\":{},\"value\":{},\"unit\":{},\"method\":{}}}",
                json_str(&f.name),
                json_num(f.value),
                json_str(&f.unit),
                json_str(&f.method)
            )
        })
        .collect();
    format!(
        "{{\"results\":[{}],\"figures\":[{}],\"exits\":[{}]}}",
        rows.join(","),
        figures.join(","),
        exits.join(",")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYP_LOG: &str = "\
[    0.1] cpu0 INFO  domU1: virtual counter offset 123456
domU1| [    1.0] Run /init as init process
domU1| init: banner at cntvct=1000
[    2.0] cpu0 INFO  domU1: powered off; exits: hvc=12 s2-fault-mapped=33 mmio=38352 irq=812 (39209 total), 3 stage-2 table pages
";

    #[test]
    fn boot_figures_are_read_from_the_logs() {
        assert_eq!(banner_ticks(HYP_LOG), Some(1000));
        assert_eq!(banner_ticks("init: banner at cntvct=77\n"), Some(77));
        assert_eq!(banner_ticks("init: banner at cntvct=\n"), None);
        assert_eq!(counter_offset(HYP_LOG), Some(123_456));
        assert_eq!(counter_offset("nothing"), None);
        assert_eq!(
            exits(HYP_LOG),
            [
                ("hvc".to_string(), 12),
                ("s2-fault-mapped".into(), 33),
                ("mmio".into(), 38352),
                ("irq".into(), 812),
                ("total".into(), 39209)
            ]
        );
        assert!(exits("no exits line").is_empty());
    }

    /// A stand-in for QEMU (it ignores QEMU's arguments): prints `first` in one write, answers
    /// the first line of its standard input, then waits for that input to end.
    fn fake_qemu(dir: &Path, name: &str, first: &str) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let script = dir.join(name);
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nprintf '{first}'\nread line\necho \"domU1| $line\"\ncat >/dev/null\n"
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        script
    }

    #[test]
    fn console_input_is_written_after_its_text_and_refused_when_late() {
        let dir = std::env::temp_dir().join(format!("xtask-bench-input-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let machine = Machine::new(dir.join("unused.bin"));
        let input = Input {
            after: "hyp up",
            before: "restored",
            bytes: b"echo hi\n",
        };
        let run = |qemu: &Path, log: &str| {
            let timeout = Duration::from_secs(20);
            run_logged_within(
                qemu,
                &machine,
                &dir.join(log),
                &["| echo hi"],
                timeout,
                Some(input),
            )
        };
        let out = run(&fake_qemu(&dir, "on-time", "hyp up\\n"), "on-time.log").unwrap();
        assert!(out.contains("domU1| echo hi"), "{out}");
        let late = run(&fake_qemu(&dir, "late", "hyp up\\nrestored\\n"), "late.log").unwrap_err();
        assert!(format!("{late:#}").contains("`restored`"), "{late:#}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn guest_bench_lines_parse_and_junk_is_skipped() {
        let out = "domU1| bench: hvc round trip = 1234 ticks\nbench: timer latency = 5.5 us\nbench: broken = x ticks\nbench without colon\n";
        assert_eq!(
            guest_lines(out),
            [
                ("hvc round trip".to_string(), 1234.0, "ticks".to_string()),
                ("timer latency".into(), 5.5, "us".into())
            ]
        );
    }

    #[test]
    fn the_table_and_json_show_ratios() {
        let report = Report {
            rows: vec![
                Row {
                    name: "boot".into(),
                    unit: "ticks".into(),
                    native: Some(1000.0),
                    hyp: Some(1050.0),
                },
                Row {
                    name: "only \"hyp\"".into(),
                    unit: String::new(),
                    native: None,
                    hyp: Some(2.5),
                },
            ],
            figures: vec![Figure {
                name: "per page".into(),
                value: Some(31.25),
                unit: "ticks".into(),
                method: "lost / pages".into(),
            }],
            exits: vec![("boot".into(), "hvc".into(), 12)],
        };
        let md = markdown(&report);
        assert!(
            md.contains("| boot | 1000 ticks | 1050 ticks | 1.050 |"),
            "{md}"
        );
        assert!(md.contains("| only \"hyp\" | - | 2.500 | - |"), "{md}");
        assert!(md.contains("| boot | hvc | 12 |"), "{md}");
        assert!(
            md.contains("| per page | 31.250 ticks | lost / pages |"),
            "{md}"
        );
        let figures_only = Report {
            figures: report.figures.clone(),
            ..Report::default()
        };
        let md = markdown(&figures_only);
        assert!(!md.contains("| benchmark |"), "{md}");
        assert!(md.contains("| per page |"), "{md}");
        assert_eq!(
            json(&report),
            "{\"results\":[{\"name\":\"boot\",\"unit\":\"ticks\",\"native\":1000,\"hyp\":1050,\"ratio\":1.050},\
             {\"name\":\"only \\\"hyp\\\"\",\"unit\":\"\",\"native\":null,\"hyp\":2.500,\"ratio\":null}],\
             \"figures\":[{\"name\":\"per page\",\"value\":31.250,\"unit\":\"ticks\",\"method\":\"lost / pages\"}],\
             \"exits\":[{\"run\":\"boot\",\"reason\":\"hvc\",\"count\":12}]}"
        );
    }
}
