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

use crate::build::{self, HypImage, Variant};
use crate::exit::Exit;
use crate::guest::{self, Guest, Images};
use crate::host_tests::{self, Tally};
use crate::process::{self, Outcome};
use crate::qemu::{self, Machine};
use crate::snapshot::Restore;
use crate::spec::{self, GuestKind, Spec};
use crate::workspace::Workspace;
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

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

struct TestResult {
    name: String,
    failure: Option<String>,
    log: Option<PathBuf>,
    duration: Duration,
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
    let qemu = if run_qemu {
        Some(qemu::find_qemu()?)
    } else {
        None
    };

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

/// Every `tests/**/*.test`, sorted by name. A malformed file stops the run before anything is
/// built: a broken test must be fixed, not skipped.
pub fn load_specs(tests_dir: &Path) -> Result<Vec<Spec>> {
    let mut files = Vec::new();
    collect_test_files(tests_dir, &mut files)?;
    let mut specs = Vec::new();
    for file in files {
        let name = file
            .strip_prefix(tests_dir)
            .expect("found below tests/")
            .with_extension("")
            .to_string_lossy()
            .replace('\\', "/");
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let spec = spec::parse(&name, &text)
            .with_context(|| format!("invalid test file {}", file.display()))?;
        specs.push(spec);
    }
    specs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(specs)
}

fn collect_test_files(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        // Guest crates under tests/ may keep a local cargo `target/`; nothing there is a test.
        if path.is_dir() && !path.ends_with("target") {
            collect_test_files(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "test") {
            files.push(path);
        }
    }
    Ok(())
}

fn run_qemu_tests(
    ws: &Workspace,
    qemu: &Path,
    specs: &[Spec],
    args: &TestArgs,
) -> Result<Vec<TestResult>> {
    let mut images: BTreeMap<Variant, Result<HypImage, String>> = BTreeMap::new();
    let mut guests: BTreeMap<GuestKind, Result<Images, String>> = BTreeMap::new();
    for guest in specs.iter().filter_map(|s| s.guest.as_ref()) {
        if guests.contains_key(&guest.kind) {
            continue;
        }
        let built = match &guest.kind {
            GuestKind::Linux { kernel, initramfs } => {
                println!("== preparing guest linux (kernel {kernel}, initramfs {initramfs})");
                guest::linux(ws, *kernel, initramfs)
            }
            GuestKind::BareMetal(name) => {
                println!("== building test guest {name}");
                guest::bare_metal(ws, name)
            }
        };
        let built = built.map_err(|e| {
            println!("error: {e:#}");
            "the guest could not be prepared; see the error above".to_string()
        });
        guests.insert(guest.kind.clone(), built);
    }
    for spec in specs {
        if images.contains_key(&spec.variant) || spec.guest.as_ref().is_some_and(|g| g.native) {
            continue;
        }
        println!("== building hyp ({})", spec.variant);
        let built = build::build_hyp(ws, &spec.variant, args.release).map_err(|e| {
            println!("error: {e:#}");
            format!(
                "the hyp build ({}) failed; see its output above",
                spec.variant
            )
        });
        images.insert(spec.variant.clone(), built);
    }

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
                    let image = match spec.guest.as_ref() {
                        Some(g) if g.native => Ok(None),
                        _ => images[&spec.variant].as_ref().map(Some),
                    };
                    let guest = spec
                        .guest
                        .as_ref()
                        .map(|g| guests[&g.kind].as_ref())
                        .transpose();
                    let result = match image.and_then(|i| guest.map(|g| (i, g))) {
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

fn run_one(
    qemu: &Path,
    spec: &Spec,
    image: Option<&HypImage>,
    guest: Option<&Images>,
    logs: &Path,
) -> TestResult {
    let start = Instant::now();
    let log = logs.join(format!("{}.log", spec.name));
    let scratch = logs.join(&spec.name);
    let snapshots: Vec<PathBuf> = spec
        .snapshot_files
        .iter()
        .map(|f| scratch.join(f))
        .collect();
    let dirty_log = spec.dirty_log_file.as_ref().map(|f| scratch.join(f));
    let first = prepare_snapshots(&snapshots)
        .and_then(|()| prepare_snapshots(dirty_log.as_slice()))
        .and_then(|()| {
            machine(
                qemu,
                spec,
                image,
                guest,
                &log,
                &snapshots,
                dirty_log.as_deref(),
            )
        })
        .and_then(|m| boot(qemu, spec, &m, &log))
        .unwrap_or_else(|e| Some(format!("{e:#}")));
    let first = match (first, &dirty_log) {
        (None, Some(dirty_log)) => check_dirty_log(spec, &log, dirty_log),
        (first, _) => first,
    };
    let (failure, log) = match (first, spec.restore_spec(), image) {
        (None, Some(second), Some(image)) if !snapshots.is_empty() => {
            let restore_log = scratch.join("restore.log");
            // A log left by an earlier run would pass for this one's.
            let _ = std::fs::remove_file(&restore_log);
            let failure = restore(qemu, spec, &second, image, &snapshots, &restore_log)
                .unwrap_or_else(|e| Some(format!("{e:#}")))
                .map(|why| format!("restoring {}: {why}", restored_what(&snapshots)));
            // Refused before booting: the first run's log says more than none.
            let log = if restore_log.exists() {
                restore_log
            } else {
                log
            };
            (failure, log)
        }
        (first, ..) => (first, log),
    };
    TestResult {
        name: spec.name.clone(),
        failure,
        log: Some(log),
        duration: start.elapsed(),
    }
}

/// After a passing run with `dirty-log-file`: the guest's page log in the console `log`
/// checked against the hypervisor's harvests (`dirtylog::check`); the failure, if any. With
/// `dirty-log-expect = missed` the check must instead find writes missing.
fn check_dirty_log(spec: &Spec, log: &Path, dirty_log: &Path) -> Option<String> {
    let name = &spec.name;
    let console = match std::fs::read(log) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => return Some(format!("cannot read {}: {e}", log.display())),
    };
    let harvests = match std::fs::read(dirty_log) {
        Ok(b) => b,
        Err(e) => {
            return Some(format!(
                "the run passed but wrote no dirty log {}: {e}",
                dirty_log.display()
            ));
        }
    };
    match (
        crate::dirtylog::check(&console, &harvests),
        spec.dirty_log_missed,
    ) {
        (Ok(summary), false) => {
            println!("{name}: {summary}");
            None
        }
        (Err(why), false) => Some(format!("dirty-log check ({}): {why}", dirty_log.display())),
        (Err(why), true) if why.contains(MISSING_WRITES) => {
            println!("{name}: caught, as it must be: {why}");
            None
        }
        (Err(why), true) => Some(format!(
            "dirty-log check ({}): expected missing writes, but it failed otherwise: {why}",
            dirty_log.display()
        )),
        (Ok(summary), true) => Some(format!(
            "dirty-log check ({}): this build loses writes on purpose, but the check passed: \
             {summary}",
            dirty_log.display()
        )),
    }
}

/// How `dirtylog::check` words the failure that writes are missing from the harvests.
const MISSING_WRITES: &str = "are missing from the dirty log";

/// The snapshot file, or for a chain its directory and the files in order, for a failure
/// line.
fn restored_what(snapshots: &[PathBuf]) -> String {
    match snapshots {
        [one] => one.display().to_string(),
        [first, ..] => {
            let names: Vec<String> = snapshots
                .iter()
                .map(|s| {
                    s.file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect();
            let dir = first.parent().unwrap_or(Path::new(""));
            format!("the chain {} in {}", names.join(" + "), dir.display())
        }
        [] => "nothing".to_string(),
    }
}

/// Makes the snapshot files' directory and removes files left by an earlier run, so the
/// restore can only find what this run wrote.
fn prepare_snapshots(snapshots: &[PathBuf]) -> Result<()> {
    for snapshot in snapshots {
        if let Some(dir) = snapshot.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        match std::fs::remove_file(snapshot) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("cannot remove {}", snapshot.display()));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The path as `hyp-args` may carry it: the hypervisor's bootargs split at spaces and its
/// options at commas, and it takes at most 255 bytes.
fn snapshot_arg(snapshot: &Path) -> Result<String> {
    let path = snapshot
        .to_str()
        .with_context(|| format!("{} is not UTF-8", snapshot.display()))?;
    if path.contains([' ', ',']) || path.len() > hyp::monitor::path::PATH_MAX {
        bail!(
            "the snapshot path {path} cannot be a hypervisor bootarg (no spaces or commas, at most \
             {} bytes); use a shorter target directory",
            hyp::monitor::path::PATH_MAX
        );
    }
    Ok(path.to_string())
}

/// The second run of a `then-restore` test: the snapshot files the first run wrote, validated
/// here as one chain in `snapshot-file` order, restored by a fresh QEMU on the same machine
/// (grown if the files need room), judged by `second`.
fn restore(
    qemu: &Path,
    spec: &Spec,
    second: &Spec,
    image: &HypImage,
    snapshots: &[PathBuf],
    log: &Path,
) -> Result<Option<String>> {
    let domain = Restore::from_files(snapshots)
        .context("the first run passed but its snapshots cannot be restored")?
        .domain();
    let needed = guest::machine_mem(&domain);
    let mut machine = Machine {
        smp: spec.smp,
        mem: if needed.bytes() > spec.mem.bytes() {
            needed
        } else {
            spec.mem
        },
        machine_options: spec.machine_options.clone(),
        extra: spec.qemu_args.clone(),
        ..Machine::new(image.bin.clone())
    };
    guest::add_domain(&domain, qemu, &mut machine, &log.with_extension("dtb"))?;
    boot(qemu, second, &machine, log)
}

/// The machine `spec` describes: the hypervisor `image` with the guest's boot DTB (written
/// beside `log`) and modules, or the guest alone when it runs natively. `snapshots` are the
/// paths `{snapshot}`, `{snapshot2}`, ... in `hyp-args` stand for.
fn machine(
    qemu: &Path,
    spec: &Spec,
    image: Option<&HypImage>,
    images: Option<&Images>,
    log: &Path,
    snapshots: &[PathBuf],
    dirty_log: Option<&Path>,
) -> Result<Machine> {
    let args: Vec<String> = snapshots
        .iter()
        .map(|s| snapshot_arg(s))
        .collect::<Result<_>>()?;
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut hyp_args = spec.hyp_args_with(&args);
    if let Some(d) = dirty_log {
        hyp_args = hyp_args.replace(spec::DIRTY_LOG_PLACEHOLDER, &snapshot_arg(d)?);
    }
    let mut machine = Machine {
        smp: spec.smp,
        mem: spec.mem,
        machine_options: spec.machine_options.clone(),
        extra: spec.qemu_args.clone(),
        hyp_args,
        ..Machine::new(image.map(|i| i.bin.clone()).unwrap_or_default())
    };
    let (Some(g), Some(images)) = (&spec.guest, images) else {
        return Ok(machine);
    };
    let guest = Guest {
        images: images.clone(),
        cpus: g.cpus,
        mem: g.mem,
        append: g.append.clone().unwrap_or_else(|| match g.kind {
            GuestKind::Linux { .. } => guest::LINUX_APPEND.to_string(),
            GuestKind::BareMetal(_) => String::new(),
        }),
    };
    if g.native {
        return Ok(guest.native(machine));
    }
    guest.add_to(qemu, &mut machine, &log.with_extension("dtb"))?;
    Ok(machine)
}

/// Boots `machine`, QEMU's output going to `log` after a header line with the command;
/// returns why the run failed, if it did.
fn boot(qemu: &Path, spec: &Spec, machine: &Machine, log: &Path) -> Result<Option<String>> {
    let args = machine.args();
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut file = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let header = format!("# {}\n", qemu::command_line(qemu, &args));
    file.write_all(header.as_bytes())?;
    let mut child = Command::new(qemu)
        .args(&args)
        .stdin(if spec.send.is_empty() {
            Stdio::null()
        } else {
            Stdio::piped()
        })
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .with_context(|| format!("cannot start {}", qemu.display()))?;
    let mut sent = 0;
    let outcome = process::wait_polling(&mut child, Some(spec.timeout), |child| {
        if sent == spec.send.len() {
            return Ok(());
        }
        let bytes = std::fs::read(log).with_context(|| format!("cannot read {}", log.display()))?;
        let output = String::from_utf8_lossy(&bytes[header.len().min(bytes.len())..]);
        let stdin = child
            .stdin
            .as_mut()
            .expect("stdin is piped when there is input");
        while let Some((_, bytes)) = spec
            .send
            .get(sent)
            .filter(|(gate, _)| gate.open(spec, &output))
        {
            // A write error means QEMU is gone; its exit status tells the rest.
            let _ = stdin.write_all(bytes);
            let _ = stdin.flush();
            sent += 1;
        }
        Ok(())
    })?;
    let bytes = std::fs::read(log).with_context(|| format!("cannot read {}", log.display()))?;
    let output = String::from_utf8_lossy(&bytes[header.len().min(bytes.len())..]);
    let mut failure = spec::judge(spec, &output, outcome);
    if let (Some(f), Outcome::Exited(code)) = (&mut failure, outcome)
        && !f.starts_with("exit status")
    {
        f.push_str(&format!(" (exit status {code})"));
    }
    Ok(failure)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_tests_parse_and_cover_issues_2_and_4() {
        let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests");
        let specs = load_specs(&tests).unwrap();
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        for name in [
            "boot/smp1",
            "boot/smp4",
            "boot/el2-fault",
            "boot/panic",
            "boot/el1-entry",
            "linux/boot",
            "linux/shell",
            "linux/native",
        ] {
            assert!(names.contains(&name), "{name} missing from {names:?}");
        }
    }

    /// A typo in a test's `hyp-args` would only show as a log line in a QEMU run that may
    /// fail for other reasons; the hypervisor's own parsers catch it here.
    #[test]
    fn the_committed_hyp_args_are_bootargs_the_hypervisor_takes() {
        let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests");
        let specs = load_specs(&tests).unwrap();
        let with_args: Vec<&Spec> = specs.iter().filter(|s| !s.hyp_args.is_empty()).collect();
        assert!(
            with_args
                .iter()
                .any(|s| s.name == "linux/snapshot" && s.restore.is_some()),
            "the snapshot test lost its hyp-args or its restore"
        );
        assert!(
            with_args.iter().any(|s| s.name == "linux/migrate-storm")
                && with_args.iter().any(|s| s.name == "linux/dirty-harvest"),
            "the migration and dirty-log tests lost their hyp-args"
        );
        for name in ["linux/workload", "linux/console-bytes"] {
            assert!(specs.iter().any(|s| s.name == name), "{name} missing");
        }
        assert!(
            with_args
                .iter()
                .any(|s| s.name == "linux/snapshot-chain" && s.snapshot_files.len() == 3),
            "the snapshot chain test lost its files"
        );
        for spec in with_args {
            let paths: Vec<String> = spec
                .snapshot_files
                .iter()
                .map(|f| format!("/work/target/qemu-logs/{}/{f}", spec.name))
                .collect();
            let path_args: Vec<&str> = paths.iter().map(String::as_str).collect();
            let hyp_args = spec.hyp_args_with(&path_args);
            let (schedule, errors) = hyp::monitor::bootargs::schedule_from_bootargs(&hyp_args);
            let errors: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{}: {errors:?}", spec.name);
            // Each placeholder must end up as the path of a snapshot the hypervisor takes.
            for (i, path) in paths.iter().enumerate() {
                assert!(
                    schedule
                        .timed()
                        .any(|t| t.to_string().contains(&format!("snapshot {path}"))),
                    "{}: no hyp.snapshot= of {}",
                    spec.name,
                    spec::snapshot_placeholder(i)
                );
            }
            assert!(
                hyp::log::level_from_bootargs(&spec.hyp_args).is_ok(),
                "{}: bad hyp.log=",
                spec.name
            );
        }
        let (schedule, errors) = hyp::monitor::bootargs::schedule_from_bootargs(
            "hyp.migrate-storm=1 hyp.dirty-harvest=200 hyp.dirty-check=1",
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert!(schedule.migrate_storm.is_some() && schedule.dirty_check);
        let (_, errors) = hyp::monitor::bootargs::schedule_from_bootargs("hyp.migrate-strom=2");
        assert_eq!(errors.len(), 1, "a misspelt key is refused");
    }

    #[test]
    fn the_snapshot_files_start_absent_and_their_paths_must_fit_a_bootarg() {
        let dir = std::env::temp_dir().join(format!("xtask-scratch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let files: Vec<PathBuf> = ["base.snap", "d1.snap", "d2.snap"]
            .iter()
            .map(|f| dir.join("linux/chain").join(f))
            .collect();
        prepare_snapshots(&files).unwrap();
        assert!(files[0].parent().unwrap().is_dir());
        assert!(files.iter().all(|f| !f.exists()));
        for f in &files[1..] {
            std::fs::write(f, b"stale").unwrap();
        }
        prepare_snapshots(&files).unwrap();
        assert!(
            files.iter().all(|f| !f.exists()),
            "a stale diff would be restored"
        );
        prepare_snapshots(&[]).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(restored_what(&files[..1]), files[0].display().to_string());
        assert_eq!(
            restored_what(&files),
            format!(
                "the chain base.snap + d1.snap + d2.snap in {}",
                dir.join("linux/chain").display()
            )
        );

        assert_eq!(
            snapshot_arg(Path::new("/t/qemu-logs/a/run.snap")).unwrap(),
            "/t/qemu-logs/a/run.snap"
        );
        let long = format!("/{}/run.snap", "d".repeat(250));
        for bad in ["/my target/run.snap", "/a,b/run.snap", long.as_str()] {
            let e = snapshot_arg(Path::new(bad)).unwrap_err().to_string();
            assert!(e.contains("cannot be a hypervisor bootarg"), "{bad}: {e}");
        }
    }

    #[test]
    fn test_files_are_found_recursively_and_named_by_their_path() {
        let dir = std::env::temp_dir().join(format!("xtask-specs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("b/deep")).unwrap();
        std::fs::write(dir.join("b/deep/two.test"), "expect = y\n").unwrap();
        std::fs::write(dir.join("a.test"), "expect = x\n").unwrap();
        std::fs::write(dir.join("notes.md"), "not a test").unwrap();
        std::fs::create_dir_all(dir.join("b/target")).unwrap();
        std::fs::write(dir.join("b/target/built.test"), "expect = z\n").unwrap();
        let names: Vec<String> = load_specs(&dir)
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["a", "b/deep/two"]);

        std::fs::write(dir.join("bad.test"), "expect = x\nsmp = many\n").unwrap();
        let err = format!("{:#}", load_specs(&dir).unwrap_err());
        assert!(err.contains("bad.test") && err.contains("line 2"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
