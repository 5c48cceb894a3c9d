//! One QEMU test: its machine and first run, then, if that passed, the dirty-log check
//! (`dirty-log-file`) and the restore run (`then-restore`).

use super::boot::boot;
use super::scratch::{prepare_snapshots, restored_what, snapshot_arg};
use crate::build::HypImage;
use crate::guest::{self, Guest};
use crate::guest_images::Images;
use crate::machine::Machine;
use crate::snapshot::Restore;
use crate::spec::{self, GuestKind, Spec};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How one test went, for its result line.
pub(super) struct TestResult {
    pub(super) name: String,
    pub(super) failure: Option<String>,
    pub(super) log: Option<PathBuf>,
    pub(super) duration: Duration,
}

pub(super) fn run_one(
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
        hyp_args = hyp_args.replace(spec::placeholders::DIRTY_LOG_PLACEHOLDER, &snapshot_arg(d)?);
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
