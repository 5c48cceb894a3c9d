//! `cargo xtask bench`: the project's benchmarks, listed in one table so new kinds join as new
//! rows: the host criterion benchmark of the stage-2 code, and guest boots under QEMU
//! `-icount shift=4,sleep=off`, where the virtual counter advances one tick per instruction,
//! run natively (the guest at EL1, no hypervisor) and under the hypervisor with the same vCPUs
//! and RAM, so the ratio is the hypervisor's overhead in instructions, the same on every host.
//! Figures with no native counterpart (dirty logging, migration, snapshots: `bench/dirty.rs`,
//! `bench/snapshot.rs`, each documenting its method) go in a second table, `figures` in JSON.
//! Every guest run goes through `bench/logged_run.rs`, its figures are read from the console by
//! `bench/console.rs`, and `bench/report.rs` lays out the tables and the JSON.

mod console;
mod dirty;
mod logged_run;
mod report;
mod snapshot;

use crate::build::{self, Variant};
use crate::debian;
use crate::exit::Exit;
use crate::guest::{self, Guest};
use crate::guest_images;
use crate::machine::Machine;
use crate::qemu_bin::find_qemu;
use crate::size::Size;
use crate::workspace::Workspace;
use anyhow::{Context, Result, bail};
use console::{banner_ticks, counter_offset, exits, guest_lines};
use logged_run::{deterministic, run_logged};
use report::{Report, Row, json, markdown};
use std::process::Stdio;

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
const BENCH_GUEST: &str = "bench";

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

/// The two runs of `guest`: natively, and under the release hypervisor with its boot DTB at
/// `<target>/bench/<name>.dtb`. Returns both outputs.
fn both_ways(ws: &Workspace, name: &str, guest: &Guest) -> Result<(String, String)> {
    let qemu_bin = find_qemu()?;
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

fn linux_boot(ws: &Workspace, args: &BenchArgs, report: &mut Report) -> Result<()> {
    if args.guest_cpus == 0 {
        bail!("--guest-cpus must be at least 1");
    }
    let guest = Guest {
        images: guest_images::linux(ws, debian::Kernel::default(), "bench")?,
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
        images: guest_images::bare_metal(ws, BENCH_GUEST)?,
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
