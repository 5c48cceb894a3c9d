//! The text of the monitor's reports (`vms`, `vcpus`, `stats`, `mem`, `dirty stats`) from plain
//! data the arch layer gathers, so the format is fixed here and host-tested.
//!
//! Each function hands out one line at a time (without a line end) to `out`, so the console
//! prints whole lines and never interleaves them with a guest's. Columns are aligned with
//! spaces and numbers are plain decimal, so scripts (and the QEMU tests) can read them.
#![forbid(unsafe_code)]

use super::LineSink;
use super::select::VmNumber;
use core::fmt;

/// A VM's run state as the monitor shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    Running,
    Paused,
    /// Powered off (or every vCPU off).
    Off,
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Off => "off",
        })
    }
}

/// A size in bytes, shown in the largest binary unit that keeps it short: `512 MiB`,
/// `1.5 GiB`, `4 KiB`, `100 B`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size(pub u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
        let mut unit = 0;
        let mut scale: u64 = 1;
        while unit + 1 < UNITS.len() && self.0 / scale >= 1024 {
            scale *= 1024;
            unit += 1;
        }
        let whole = self.0 / scale;
        // One decimal, rounded down, so a size is never shown larger than it is.
        let tenths = (self.0 % scale) * 10 / scale;
        let text = if tenths == 0 {
            alloc::format!("{whole} {}", UNITS[unit])
        } else {
            alloc::format!("{whole}.{tenths} {}", UNITS[unit])
        };
        f.pad(&text)
    }
}

/// One row of `vms`.
#[derive(Clone, Copy, Debug)]
pub struct VmRow<'a> {
    pub number: VmNumber,
    pub name: &'a str,
    pub vcpus: usize,
    pub memory: u64,
    pub state: RunState,
    /// Whether this VM gets guest input (`console VM`).
    pub console: bool,
}

/// `vms`: a header, then one line per VM; `*` after the number marks the VM that gets guest
/// input.
pub fn vms(rows: &[VmRow<'_>], out: LineSink<'_>) {
    out(format_args!(
        "{:>3}   {:<12} {:>5}  {:>10}  STATE",
        "VM", "NAME", "VCPUS", "MEMORY"
    ));
    for r in rows {
        out(format_args!(
            "{:>3}{}  {:<12} {:>5}  {:>10}  {}",
            r.number,
            if r.console { '*' } else { ' ' },
            r.name,
            r.vcpus,
            Size(r.memory),
            r.state,
        ));
    }
}

/// What a vCPU is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VcpuState {
    /// In the guest or about to enter it.
    Running,
    /// Waiting for an interrupt (WFI).
    Waiting,
    /// Stopped by `pause`.
    Paused,
    /// Never started or stopped by PSCI CPU_OFF.
    Off,
}

impl fmt::Display for VcpuState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Self::Running => "running",
            Self::Waiting => "wfi",
            Self::Paused => "paused",
            Self::Off => "off",
        })
    }
}

/// One row of `vcpus`.
#[derive(Clone, Copy, Debug)]
pub struct VcpuRow {
    pub index: usize,
    /// The physical CPU it runs on, if it is placed.
    pub pcpu: Option<usize>,
    pub state: VcpuState,
    /// The guest PC when it last left the guest.
    pub pc: u64,
    pub exits: u64,
}

/// `vcpus VM`: a title line, a header, then one line per vCPU.
pub fn vcpus(vm: VmNumber, name: &str, rows: &[VcpuRow], out: LineSink<'_>) {
    out(format_args!("VM {vm} ({name}): {} vCPUs", rows.len()));
    out(format_args!(
        "{:>4}  {:>4}  {:<8} {:<18} {:>12}",
        "VCPU", "CPU", "STATE", "PC", "EXITS"
    ));
    for r in rows {
        let pcpu = r.pcpu.map_or_else(
            || alloc::string::String::from("-"),
            |c| alloc::format!("{c}"),
        );
        out(format_args!(
            "{:>4}  {:>4}  {:<8} {:#018x} {:>12}",
            r.index, pcpu, r.state, r.pc, r.exits
        ));
    }
}

/// What `stats VM` shows.
#[derive(Clone, Copy, Debug)]
pub struct VmStats<'a> {
    /// Exits by reason (e.g. `("data abort", 120)`), in the order to show them.
    pub exits: &'a [(&'a str, u64)],
    pub stage2_faults: u64,
    pub tlb_invalidations: u64,
    /// Pages dirty now; `None` while dirty logging is off.
    pub dirty_pages: Option<u64>,
}

/// Width of the label column in `stats`, `mem` and `dirty stats`.
const LABEL: usize = 20;
/// Width of the number column.
const VALUE: usize = 12;

/// `stats VM`: total exits, exits per reason (indented, zero counts left out), then the
/// memory counters.
pub fn vm_stats(vm: VmNumber, name: &str, s: &VmStats<'_>, out: LineSink<'_>) {
    out(format_args!("VM {vm} ({name})"));
    let total = s.exits.iter().fold(0u64, |t, (_, n)| t.saturating_add(*n));
    out(format_args!("{:<LABEL$}{total:>VALUE$}", "exits"));
    for (reason, n) in s.exits.iter().filter(|(_, n)| *n > 0) {
        out(format_args!("  {reason:<w$}{n:>VALUE$}", w = LABEL - 2));
    }
    out(format_args!(
        "{:<LABEL$}{:>VALUE$}",
        "stage-2 faults", s.stage2_faults
    ));
    out(format_args!(
        "{:<LABEL$}{:>VALUE$}",
        "TLB invalidations", s.tlb_invalidations
    ));
    match s.dirty_pages {
        Some(n) => out(format_args!("{:<LABEL$}{n:>VALUE$}", "dirty pages")),
        None => out(format_args!("{:<LABEL$}{:>VALUE$}", "dirty pages", "off")),
    }
}

/// What `mem` shows.
#[derive(Clone, Copy, Debug)]
pub struct MemStats<'a> {
    /// Frames per ownership state (e.g. `("free", 1000)`), in the order to show them.
    pub frames: &'a [(&'a str, u64)],
    /// Bytes per frame.
    pub frame_size: u64,
    /// Pages holding stage-2 tables, over all VMs.
    pub table_pages: u64,
}

/// `mem`: frames per state with their size, the total, and the stage-2 table pages.
pub fn mem(s: &MemStats<'_>, out: LineSink<'_>) {
    let size = |n: u64| Size(n.saturating_mul(s.frame_size));
    let mut total = 0u64;
    for (state, n) in s.frames {
        total = total.saturating_add(*n);
        out(format_args!(
            "frames {state:<w$}{n:>VALUE$}  {:>10}",
            size(*n),
            w = LABEL - 7
        ));
    }
    out(format_args!(
        "{:<LABEL$}{total:>VALUE$}  {:>10}",
        "frames total",
        size(total)
    ));
    out(format_args!(
        "{:<LABEL$}{:>VALUE$}  {:>10}",
        "stage-2 table pages",
        s.table_pages,
        size(s.table_pages)
    ));
}

/// What `dirty stats` shows.
#[derive(Clone, Copy, Debug)]
pub struct DirtyStats {
    pub logging: bool,
    /// Pages dirtied since the last harvest.
    pub dirty_pages: u64,
    pub harvests: u64,
    /// Pages returned by all harvests so far.
    pub harvested_pages: u64,
}

/// `dirty stats VM`.
pub fn dirty_stats(vm: VmNumber, s: &DirtyStats, out: LineSink<'_>) {
    out(format_args!(
        "VM {vm}: dirty logging {}",
        if s.logging { "on" } else { "off" }
    ));
    out(format_args!(
        "{:<LABEL$}{:>VALUE$}",
        "dirty pages", s.dirty_pages
    ));
    out(format_args!("{:<LABEL$}{:>VALUE$}", "harvests", s.harvests));
    out(format_args!(
        "{:<LABEL$}{:>VALUE$}",
        "harvested pages", s.harvested_pages
    ));
}

#[cfg(test)]
mod tests;

/// What a finished snapshot did, for its report.
#[derive(Clone, Copy, Debug)]
pub struct SnapshotReport<'a> {
    pub file: &'a str,
    pub live: bool,
    /// Only pages dirtied since a base snapshot were saved.
    pub diff: bool,
    /// Pages copied in each pre-copy round while the guest ran; empty for a paused snapshot.
    pub rounds: &'a [u64],
    /// Pages copied while the VM was paused.
    pub paused_pages: u64,
    pub paused_us: u64,
    pub file_bytes: u64,
}

/// Most rounds listed one by one in a report; the rest are summed into `+N`.
const ROUNDS_SHOWN: usize = 16;

/// A snapshot's report: one line of `key=value` fields, so people read it and the benchmarks
/// parse it, e.g. `snapshot a.snap: live rounds=3 round_pages=1000,40,7 paused_pages=2
/// paused_us=830 total_pages=1049 bytes=4321280`.
pub fn snapshot_report(r: &SnapshotReport<'_>, out: LineSink<'_>) {
    let mut rounds = alloc::string::String::new();
    for (i, n) in r.rounds.iter().take(ROUNDS_SHOWN).enumerate() {
        if i > 0 {
            rounds.push(',');
        }
        rounds.push_str(&alloc::format!("{n}"));
    }
    if r.rounds.len() > ROUNDS_SHOWN {
        rounds.push_str(&alloc::format!(",+{}", r.rounds.len() - ROUNDS_SHOWN));
    }
    if rounds.is_empty() {
        rounds.push('-');
    }
    let total = r
        .rounds
        .iter()
        .fold(r.paused_pages, |t, n| t.saturating_add(*n));
    let kind = match (r.live, r.diff) {
        (false, false) => "paused",
        (true, false) => "live",
        (false, true) => "diff",
        (true, true) => "live diff",
    };
    out(format_args!(
        "snapshot {}: {kind} rounds={} round_pages={rounds} paused_pages={} paused_us={} \
         total_pages={total} bytes={}",
        r.file,
        r.rounds.len(),
        r.paused_pages,
        r.paused_us,
        r.file_bytes
    ));
}
