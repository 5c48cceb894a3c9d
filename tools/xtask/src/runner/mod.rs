//! `cargo xtask test`: the host unit tests, then every QEMU integration test under `tests/`
//! (see [`crate::spec`] for the file format). Each hypervisor variant and each guest (Linux
//! images per initramfs recipe, bare-metal test guests) is built once up front; the boots then
//! run in parallel, bounded by the cores, each with its own timeout, log and boot DTB.
//!
//! A test with `snapshot-file` gets a scratch directory, `<target>/qemu-logs/<name>/`, emptied
//! of those files before it boots, and `{snapshot}`, `{snapshot2}`, ... in its `hyp-args` name
//! the files there. With `then-restore`, a first run that passes is followed by a second QEMU
//! that restores the files as one chain in the order listed (validated on the host first, as
//! `cargo xtask qemu --restore` does) and is judged by the `restore-*` keys; its log and boot
//! DTB are `restore.log` and `restore.dtb` in the scratch directory.

mod boot;
mod one_test;
mod prepare;
mod scratch;
mod test_files;

use crate::exit::Exit;
use crate::host_tests::{self, Tally};
use crate::qemu_bin::find_qemu;
use crate::spec::Spec;
use crate::workspace::Workspace;
use anyhow::{Result, bail};
use one_test::{TestResult, run_one};
use prepare::Prepared;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use test_files::load_specs;

/// Lines of a failed test's log shown under its FAIL line, so CI output alone explains it.
const TAIL_LINES: usize = 12;

#[derive(clap::Args)]
pub struct TestArgs {
    /// Run only the QEMU tests whose name (path below tests/ without `.test`) contains FILTER;
    /// the host tests still run unless --qemu-only.
    pub filter: Option<String>,
    /// Skip the host unit tests (`cargo test --workspace`).
    #[arg(long, conflicts_with = "host_only")]
    pub qemu_only: bool,
    /// Run only the host unit tests.
    #[arg(long)]
    pub host_only: bool,
    /// QEMU tests run at once [default: the number of available cores].
    #[arg(long, short)]
    pub jobs: Option<usize>,
    /// Test the optimized (`release`) hypervisor.
    #[arg(long)]
    pub release: bool,
}

pub fn run(args: &TestArgs) -> Result<()> {
    let ws = Workspace::locate()?;
    let tests_dir = ws.root.join("tests");
    let mut specs = load_specs(&tests_dir)?;
    if let Some(filter) = &args.filter {
        let all: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
        specs.retain(|s| s.name.contains(filter.as_str()));
        if specs.is_empty() && !args.host_only {
            bail!(
                "no QEMU test name contains `{filter}`; the tests are: {}",
                all.join(", ")
            );
        }
    }
    let run_qemu = !args.host_only && !specs.is_empty();
    let qemu = if run_qemu { Some(find_qemu()?) } else { None };

    let mut tally = Tally::default();
    if !args.qemu_only {
        let host = host_tests::run(&ws)?;
        tally.passed += host.passed;
        tally.failed += host.failed;
    }
    if let Some(qemu) = qemu {
        let results = run_qemu_tests(&ws, &qemu, &specs, args)?;
        for r in &results {
            if r.failure.is_some() {
                tally.failed += 1;
            } else {
                tally.passed += 1;
            }
        }
    }
    println!("{} passed, {} failed", tally.passed, tally.failed);
    if tally.failed > 0 {
        return Err(Exit::silent(1).into());
    }
    Ok(())
}

fn run_qemu_tests(
    ws: &Workspace,
    qemu: &Path,
    specs: &[Spec],
    args: &TestArgs,
) -> Result<Vec<TestResult>> {
    let prepared = Prepared::build(ws, specs, args.release);

    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, specs.len().max(1));
    let logs = ws.target_dir.join("qemu-logs");
    println!(
        "== QEMU tests: {} tests, {jobs} at a time, logs in {}",
        specs.len(),
        ws.display(&logs)
    );

    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                while let Some(spec) = specs.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let result = match prepared.for_spec(spec) {
                        Ok((image, guest)) => run_one(qemu, spec, image, guest, &logs),
                        Err(e) => TestResult {
                            name: spec.name.clone(),
                            failure: Some(e.clone()),
                            log: None,
                            duration: Duration::ZERO,
                        },
                    };
                    print_result(ws, &result);
                    results.lock().expect("no worker panics").push(result);
                }
            });
        }
    });
    Ok(results.into_inner().expect("no worker panics"))
}

fn print_result(ws: &Workspace, r: &TestResult) {
    let log = r
        .log
        .as_deref()
        .map(|l| format!(" {}", ws.display(l)))
        .unwrap_or_default();
    let secs = r.duration.as_secs_f64();
    let mut out = std::io::stdout().lock();
    let _ = match &r.failure {
        None => writeln!(out, "PASS {} ({secs:.1}s){log}", r.name),
        Some(why) => writeln!(out, "FAIL {} ({secs:.1}s){log}: {why}", r.name),
    };
    if let (Some(_), Some(log)) = (&r.failure, &r.log) {
        let text = std::fs::read(log).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        let lines: Vec<&str> = text.lines().collect();
        for line in &lines[lines.len().saturating_sub(TAIL_LINES)..] {
            let _ = writeln!(out, "    | {line}");
        }
    }
}
