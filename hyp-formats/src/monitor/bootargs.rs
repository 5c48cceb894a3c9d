//! The monitor's operations for unattended runs, from the hypervisor's own bootargs
//! (`/chosen/bootargs` of the boot DTB, separated by spaces), so tests and benchmarks need no
//! typed input.
//!
//! Timed actions (repeatable; each runs once, when its `WHEN` comes, see below):
//!
//! | bootarg | does what the monitor command does |
//! |---|---|
//! | `hyp.snapshot=FILE@WHEN[,live][,base=FILE][,vm=VM]` | `snapshot FILE [--live] [--base FILE] [VM]` |
//! | `hyp.pause=WHEN[,vm=VM]` | `pause [VM]` |
//! | `hyp.resume=WHEN[,vm=VM]` | `resume [VM]` |
//! | `hyp.migrate=PAGES@WHEN[,vm=VM]` | `migrate PAGES [VM]` |
//! | `hyp.dirty=start\|stop\|stats@WHEN[,vm=VM]` | `dirty start\|stop\|stats [VM]` |
//! | `hyp.stats=WHEN[,vm=VM]` | `stats [VM]` |
//!
//! `WHEN` is either of:
//! - `MS`: when VM 1's guest time, as its virtual counter shows it, reaches `MS` milliseconds;
//!   actions due at the same time run in the order given.
//! - `after:TEXT`: once the action's VM has printed `TEXT` on its console, within one line (as
//!   soon as its last byte is out; [`crate::monitor::trigger`]). `TEXT` is 1 to
//!   [`TEXT_MAX`](super::trigger::TEXT_MAX) bytes of printable ASCII without commas; actions waiting for the same text
//!   run in the order given. This is what tests use: it follows the guest's progress, where a
//!   time races it (a slow host boots the guest in more guest time). An action whose text never
//!   comes never runs.
//!
//! Modes (for the whole run; if one is given twice the last wins, as with `hyp.log=`):
//!
//! | bootarg | meaning |
//! |---|---|
//! | `hyp.migrate-storm=PAGES_PER_MS[@WHEN][,vm=VM]` | migrate random pages continuously, this many per millisecond of guest time |
//! | `hyp.dirty-harvest=MS[@WHEN][,vm=VM]` | log dirty pages and harvest them every `MS` ms |
//! | `hyp.dirty-check=0\|1` | at every harvest, walk stage 2 and check that writable implies dirty |
//! | `hyp.dirty-log=FILE` | append each `dirty-harvest` harvest's pages to the host file FILE (format: [`crate::dirty_log`]) |
//!
//! The `hyp.dirty-log=` file lets a host-side checker compare the harvests with what a guest
//! says it wrote.
//!
//! A storm or harvest starts at boot, or when its `@WHEN` comes (e.g.
//! `hyp.migrate-storm=1@after:WORKLOAD-STARTED`: from the first line of the workload on).
//!
//! `MS` is 0 to [`MS_MAX`] (the interval of `dirty-harvest` at least 1), `PAGES` 1 to
//! [`MIGRATE_MAX`], `PAGES_PER_MS` 1 to [`STORM_MAX`]; numbers are plain decimal. `VM` is a
//! number or name as in the monitor, VM 1 by default. `FILE` is a host path (no spaces, and no
//! commas, which separate options; a `@` is allowed: `WHEN` starts at the first `@after:`, or
//! else at the last `@`). A chain of snapshots is several `hyp.snapshot=` with `base=`, e.g.
//! `hyp.snapshot=a@2000 hyp.snapshot=b@4000,base=a hyp.snapshot=c@6000,base=b`, or
//! `hyp.snapshot=a@after:PASS-1 hyp.snapshot=b@after:PASS-3,base=a`.
//!
//! Arguments without the `hyp.` prefix are not ours and are skipped, and so are the
//! [`FOREIGN_KEYS`] such as `hyp.log=` (read by [`crate::log_level::level_from_bootargs`]). Any other `hyp.` argument that is unknown or
//! malformed becomes a [`BootargError`] for the caller to log; the remaining arguments still
//! apply.
#![forbid(unsafe_code)]

use super::command::{
    Command, DirtyOp, MIGRATE_MAX, Reason, SnapshotRequest, parse_number, parse_path,
};
use super::path::HostPath;
use super::select::VmSelector;
use super::trigger::{AFTER, Trigger};
use super::word::Word;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::fmt;

/// Latest action time and longest harvest interval, in ms (about 11.6 days): small enough that
/// converting to counter ticks cannot overflow at any counter frequency up to 10 GHz.
pub const MS_MAX: u64 = 1_000_000_000;

/// Highest `hyp.migrate-storm=` rate, in pages per millisecond.
pub const STORM_MAX: u32 = 1_000_000;

/// Most timed actions kept; later ones are refused.
pub const ACTIONS_MAX: usize = 256;

/// `hyp.` keys other modules read: skipped here, not reported as unknown. A module that adds
/// a `hyp.` bootarg lists it here.
pub const FOREIGN_KEYS: &[&str] = &["hyp.log="];

/// One `hyp.` key: what it looks like, for errors and docs.
#[derive(Debug)]
pub struct KeySpec {
    key: Key,
    /// Including the `hyp.` prefix and `=`.
    pub prefix: &'static str,
    pub syntax: &'static str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Key {
    Snapshot,
    Pause,
    Resume,
    Migrate,
    Dirty,
    Stats,
    MigrateStorm,
    DirtyHarvest,
    DirtyCheck,
    DirtyLog,
}

/// Every `hyp.` key this module reads.
pub static KEYS: [KeySpec; 10] = [
    key(
        Key::Snapshot,
        "hyp.snapshot=",
        "FILE@WHEN[,live][,base=FILE][,vm=VM]",
    ),
    key(Key::Pause, "hyp.pause=", "WHEN[,vm=VM]"),
    key(Key::Resume, "hyp.resume=", "WHEN[,vm=VM]"),
    key(Key::Migrate, "hyp.migrate=", "PAGES@WHEN[,vm=VM]"),
    key(Key::Dirty, "hyp.dirty=", "start|stop|stats@WHEN[,vm=VM]"),
    key(Key::Stats, "hyp.stats=", "WHEN[,vm=VM]"),
    key(
        Key::MigrateStorm,
        "hyp.migrate-storm=",
        "PAGES_PER_MS[@WHEN][,vm=VM]",
    ),
    key(Key::DirtyHarvest, "hyp.dirty-harvest=", "MS[@WHEN][,vm=VM]"),
    key(Key::DirtyCheck, "hyp.dirty-check=", "0|1"),
    key(Key::DirtyLog, "hyp.dirty-log=", "FILE"),
];

const fn key(key: Key, prefix: &'static str, syntax: &'static str) -> KeySpec {
    KeySpec {
        key,
        prefix,
        syntax,
    }
}

/// A monitor command to run when its trigger comes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timed {
    pub when: Trigger,
    pub command: Command,
}

/// `at 2000 ms: snapshot a.snap --live 1`, for the log.
impl fmt::Display for Timed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.when, self.command)
    }
}

/// `hyp.migrate-storm=`: continuous migration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Storm {
    pub pages_per_ms: u32,
    pub vm: VmSelector,
    /// When it starts (`At(0)`: from boot).
    pub start: Trigger,
}

/// `hyp.dirty-harvest=`: dirty logging with a periodic harvest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Harvest {
    pub every_ms: u64,
    pub vm: VmSelector,
    /// When logging starts (`At(0)`: from boot).
    pub start: Trigger,
}

/// What the bootargs ask for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schedule {
    /// The actions due at a guest time: earliest first; same-time actions in bootarg order.
    timed: VecDeque<Timed>,
    /// The actions waiting for a console text, in bootarg order.
    watched: Vec<Timed>,
    pub migrate_storm: Option<Storm>,
    pub dirty_harvest: Option<Harvest>,
    /// `hyp.dirty-check=1`.
    pub dirty_check: bool,
    /// `hyp.dirty-log=FILE`.
    pub dirty_log: Option<HostPath>,
}

impl Schedule {
    /// The actions not yet taken: those due at a time, earliest first, then those waiting for
    /// a console text.
    pub fn timed(&self) -> impl Iterator<Item = &Timed> {
        self.timed.iter().chain(&self.watched)
    }

    /// How many actions are left.
    pub fn len(&self) -> usize {
        self.timed.len() + self.watched.len()
    }

    pub fn is_empty(&self) -> bool {
        self.timed.is_empty() && self.watched.is_empty()
    }

    /// When the next action due at a time is, to arm a timer for it.
    pub fn next_due_ms(&self) -> Option<u64> {
        self.timed.front().map(|t| match t.when {
            Trigger::At(ms) => ms,
            Trigger::After(_) => 0,
        })
    }

    /// The next action due at a time if it is due at `now_ms`; call again until `None`.
    pub fn take_due(&mut self, now_ms: u64) -> Option<Timed> {
        if self.next_due_ms()? <= now_ms {
            self.timed.pop_front()
        } else {
            None
        }
    }

    /// Takes out the actions that wait for a console text, in bootarg order, for the caller to
    /// watch the consoles for (in the hypervisor, a `hyp::monitor::trigger::ConsoleWatch`).
    pub fn take_watched(&mut self) -> Vec<Timed> {
        core::mem::take(&mut self.watched)
    }
}

/// A `hyp.` bootarg that was not understood and is ignored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootargError {
    /// The whole argument, as given.
    pub arg: Word,
    pub reason: BootargReason,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BootargReason {
    /// `hyp.KEY` that no module reads.
    UnknownKey,
    /// A known key with a malformed value; the syntax is the key's row of [`KEYS`].
    Value {
        spec: &'static KeySpec,
        reason: Reason,
    },
    /// More than [`ACTIONS_MAX`] timed actions.
    TooManyActions,
}

impl PartialEq for KeySpec {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for KeySpec {}

impl fmt::Display for BootargError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ignoring bootarg {}: ", self.arg)?;
        match &self.reason {
            BootargReason::UnknownKey => {
                f.write_str("unknown key (known:")?;
                let foreign = FOREIGN_KEYS.iter().copied();
                for k in foreign.chain(KEYS.iter().map(|k| k.prefix)) {
                    write!(f, " {}", k.trim_end_matches('='))?;
                }
                f.write_str(")")
            }
            BootargReason::Value { spec, reason } => {
                write!(f, "{reason} (want {}{})", spec.prefix, spec.syntax)
            }
            BootargReason::TooManyActions => {
                write!(f, "more than {ACTIONS_MAX} timed actions")
            }
        }
    }
}

/// What the `hyp.` bootargs ask for, and the arguments that were refused.
pub fn schedule_from_bootargs(bootargs: &str) -> (Schedule, Vec<BootargError>) {
    let mut schedule = Schedule::default();
    let mut timed = Vec::new();
    let mut errors = Vec::new();
    for arg in bootargs.split_ascii_whitespace() {
        if !arg.starts_with("hyp.") || FOREIGN_KEYS.iter().any(|k| arg.starts_with(k)) {
            continue;
        }
        let error = |reason| BootargError {
            arg: Word::new(arg),
            reason,
        };
        let Some((spec, value)) = KEYS
            .iter()
            .find_map(|k| Some((k, arg.strip_prefix(k.prefix)?)))
        else {
            errors.push(error(BootargReason::UnknownKey));
            continue;
        };
        match parse_value(spec.key, value, &mut schedule) {
            Ok(None) => {}
            Ok(Some(_)) if timed.len() == ACTIONS_MAX => {
                errors.push(error(BootargReason::TooManyActions));
            }
            Ok(Some(t)) => timed.push(t),
            Err(reason) => errors.push(error(BootargReason::Value { spec, reason })),
        }
    }
    let (mut timed, watched): (Vec<Timed>, Vec<Timed>) = timed
        .into_iter()
        .partition(|t: &Timed| matches!(t.when, Trigger::At(_)));
    // Stable: actions due at the same time keep their order.
    timed.sort_by_key(|t: &Timed| match t.when {
        Trigger::At(ms) => ms,
        Trigger::After(_) => 0,
    });
    schedule.timed = timed.into();
    schedule.watched = watched;
    (schedule, errors)
}

/// Parses one value: a timed action is returned, a mode is set in `schedule`.
fn parse_value(key: Key, value: &str, schedule: &mut Schedule) -> Result<Option<Timed>, Reason> {
    let mut parts = value.split(',');
    let head = parts.next().unwrap_or("");
    let opts = Options::parse(parts, key == Key::Snapshot)?;
    let vm = opts.vm.clone().unwrap_or_default();
    let at = |what: &'static str| -> Result<(&str, Trigger), Reason> {
        let (arg, when) = split_when(head).ok_or(Reason::Missing(what))?;
        Ok((arg, Trigger::parse(when, MS_MAX)?))
    };
    // A mode's `[@WHEN]`: from boot without it.
    let start = || -> Result<(&str, Trigger), Reason> {
        match split_when(head) {
            Some((arg, when)) => Ok((arg, Trigger::parse(when, MS_MAX)?)),
            None => Ok((head, Trigger::At(0))),
        }
    };
    let command = |when, command| Ok(Some(Timed { when, command }));
    match key {
        Key::Snapshot => {
            let (file, when) = at("@WHEN after FILE")?;
            let file = parse_path(file)?;
            let request = SnapshotRequest::new(file, opts.live, opts.base, vm)?;
            command(when, Command::Snapshot(request))
        }
        Key::Pause => command(Trigger::parse(head, MS_MAX)?, Command::Pause(vm)),
        Key::Resume => command(Trigger::parse(head, MS_MAX)?, Command::Resume(vm)),
        Key::Stats => command(Trigger::parse(head, MS_MAX)?, Command::Stats(vm)),
        Key::Migrate => {
            let (pages, when) = at("@WHEN after PAGES")?;
            let pages = parse_number(pages, 1, MIGRATE_MAX.into())?;
            let pages = u32::try_from(pages).unwrap_or(MIGRATE_MAX);
            command(when, Command::Migrate { pages, vm })
        }
        Key::Dirty => {
            let (op, when) = at("@WHEN after start|stop|stats")?;
            let op = DirtyOp::parse(op)?;
            command(when, Command::Dirty { op, vm })
        }
        Key::MigrateStorm => {
            let (rate, start) = start()?;
            let rate = parse_number(rate, 1, STORM_MAX.into())?;
            schedule.migrate_storm = Some(Storm {
                pages_per_ms: u32::try_from(rate).unwrap_or(STORM_MAX),
                vm,
                start,
            });
            Ok(None)
        }
        Key::DirtyHarvest => {
            let (every, start) = start()?;
            let every_ms = parse_number(every, 1, MS_MAX)?;
            schedule.dirty_harvest = Some(Harvest {
                every_ms,
                vm,
                start,
            });
            Ok(None)
        }
        Key::DirtyLog => {
            if opts.vm.is_some() {
                return Err(Reason::UnknownOption(Word::new("vm")));
            }
            schedule.dirty_log = Some(parse_path(head)?);
            Ok(None)
        }
        Key::DirtyCheck => {
            if opts.vm.is_some() {
                return Err(Reason::UnknownOption(Word::new("vm")));
            }
            schedule.dirty_check = match head {
                "0" => false,
                "1" => true,
                _ => {
                    return Err(Reason::NotOneOf {
                        got: Word::new(head),
                        choices: "0|1",
                    });
                }
            };
            Ok(None)
        }
    }
}

/// `ARG@WHEN` into `ARG` and `WHEN`: at the first `@after:` (a text may hold `@`), else at the
/// last `@` (a file name may).
fn split_when(head: &str) -> Option<(&str, &str)> {
    let after = head
        .match_indices('@')
        .map(|(i, _)| i)
        .find(|&i| head[i + 1..].starts_with(AFTER));
    match after {
        Some(i) => Some((&head[..i], &head[i + 1..])),
        None => head.rsplit_once('@'),
    }
}

/// The `,opt` parts after a value.
#[derive(Default)]
struct Options {
    live: bool,
    base: Option<HostPath>,
    vm: Option<VmSelector>,
}

impl Options {
    /// `live` and `base=` only for snapshots; `vm=` for all.
    fn parse<'a>(parts: impl Iterator<Item = &'a str>, snapshot: bool) -> Result<Self, Reason> {
        let mut o = Self::default();
        for part in parts {
            match part.split_once('=') {
                None if part == "live" && snapshot => {
                    if core::mem::replace(&mut o.live, true) {
                        return Err(Reason::RepeatedOption("live"));
                    }
                }
                Some(("base", file)) if snapshot => {
                    if o.base.replace(parse_path(file)?).is_some() {
                        return Err(Reason::RepeatedOption("base="));
                    }
                }
                Some(("vm", vm)) => {
                    if o.vm
                        .replace(VmSelector::parse(vm).map_err(Reason::Vm)?)
                        .is_some()
                    {
                        return Err(Reason::RepeatedOption("vm="));
                    }
                }
                _ => return Err(Reason::UnknownOption(Word::new(part))),
            }
        }
        Ok(o)
    }
}

#[cfg(test)]
mod tests;
