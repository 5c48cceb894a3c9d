//! Monitor commands: a typed line into a [`Command`], or a [`UsageError`] that says in one line
//! what was wrong and how the command is used.
//!
//! One table, [`COMMANDS`], gives every command's name, arguments and description; `help`, the
//! usage in errors and the list of commands for an unknown name are all generated from it.
//! Words are separated by spaces, so a file name cannot contain one. An argument starting with
//! `-` is an option, never a file or VM. `VM` is a VM number (1 is the first) or a name such as
//! `domU1`; without it a command means VM 1.
#![forbid(unsafe_code)]

use super::LineSink;
use super::path::{BadPath, HostPath};
use super::select::{BadVm, VmSelector};
use super::word::Word;
use core::fmt;
use core::str::SplitAsciiWhitespace;
use log::LevelFilter;

/// Which command a table row describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Help,
    Vms,
    Vcpus,
    Stats,
    Mem,
    Dirty,
    Pause,
    Resume,
    Snapshot,
    Migrate,
    Log,
    Console,
    Exit,
    Quit,
}

/// One row of the command table.
#[derive(Debug)]
pub struct Spec {
    pub kind: Kind,
    pub name: &'static str,
    /// The arguments as the usage line shows them.
    pub args: &'static str,
    pub about: &'static str,
}

/// Every command, in the order `help` lists them.
pub static COMMANDS: [Spec; 14] = TABLE;

// `Kind::spec` indexes the table by kind.
const _: () = {
    let mut i = 0;
    while i < TABLE.len() {
        assert!(
            TABLE[i].kind as usize == i,
            "COMMANDS rows out of Kind order"
        );
        i += 1;
    }
};

const TABLE: [Spec; 14] = [
    row(
        Kind::Help,
        "help",
        "[COMMAND]",
        "list the commands, or show how one is used",
    ),
    row(
        Kind::Vms,
        "vms",
        "",
        "list the VMs: number, name, vCPUs, memory, state",
    ),
    row(
        Kind::Vcpus,
        "vcpus",
        "[VM]",
        "show a VM's vCPUs: state, PC, exits",
    ),
    row(
        Kind::Stats,
        "stats",
        "[VM]",
        "exits by reason, stage-2 faults, TLB invalidations, dirty pages",
    ),
    row(
        Kind::Mem,
        "mem",
        "",
        "frames per ownership state and stage-2 table pages",
    ),
    row(
        Kind::Dirty,
        "dirty",
        "start|stop|stats [VM]",
        "start or stop dirty logging, or count dirty pages",
    ),
    row(Kind::Pause, "pause", "[VM]", "stop every vCPU of a VM"),
    row(Kind::Resume, "resume", "[VM]", "run a paused VM again"),
    row(
        Kind::Snapshot,
        "snapshot",
        "FILE [--live] [--base FILE] [VM]",
        "save a VM to FILE on the host (--live: while it runs; --base: only pages dirtied since)",
    ),
    row(
        Kind::Migrate,
        "migrate",
        "N [VM]",
        "move N guest pages to new frames",
    ),
    row(
        Kind::Log,
        "log",
        "LEVEL",
        "set the log level: off, error, warn, info, debug or trace",
    ),
    row(
        Kind::Console,
        "console",
        "VM",
        "send guest input to this VM's console",
    ),
    row(
        Kind::Exit,
        "exit",
        "",
        "return to the guest console (Ctrl-] does too)",
    ),
    row(Kind::Quit, "quit", "", "same as exit"),
];

const fn row(kind: Kind, name: &'static str, args: &'static str, about: &'static str) -> Spec {
    Spec {
        kind,
        name,
        args,
        about,
    }
}

/// Most pages one `migrate` moves.
pub const MIGRATE_MAX: u32 = 10_000_000;

impl Kind {
    /// This command's row of [`COMMANDS`].
    pub fn spec(self) -> &'static Spec {
        // In range: the table has one row per kind, in declaration order (checked at compile time).
        &COMMANDS[self as usize]
    }
}

impl Spec {
    /// The usage line: `name args`.
    pub fn usage(&self) -> Usage<'_> {
        Usage(self)
    }

    /// The row named `name`, if any.
    pub fn find(name: &str) -> Option<&'static Spec> {
        COMMANDS.iter().find(|s| s.name == name)
    }
}

/// Displays a command's usage line.
pub struct Usage<'a>(&'a Spec);

impl fmt::Display for Usage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.args.is_empty() {
            f.pad(self.0.name)
        } else {
            // Built first so a width (as `help` uses) pads the whole usage.
            let mut s = alloc::string::String::new();
            s.push_str(self.0.name);
            s.push(' ');
            s.push_str(self.0.args);
            f.pad(&s)
        }
    }
}

/// One line of `help`: the usage padded to the longest one, then the description.
impl fmt::Display for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<w$} {}", self.usage(), self.about, w = usage_width())
    }
}

/// The length of the longest usage line.
fn usage_width() -> usize {
    COMMANDS
        .iter()
        .map(|s| {
            s.name.len()
                + if s.args.is_empty() {
                    0
                } else {
                    1 + s.args.len()
                }
        })
        .max()
        .unwrap_or(0)
}

/// `help`: one line per command, then what `VM` means.
pub fn help(out: LineSink<'_>) {
    for spec in &COMMANDS {
        out(format_args!("{spec}"));
    }
    out(format_args!("{VM_NOTE}"));
}

/// What the `VM` argument means, shown at the end of `help`.
pub const VM_NOTE: &str = "VM is a VM number (1 is the first) or name (domU1); without one, VM 1. Ctrl-] switches between guest and monitor.";

/// The dirty-logging operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirtyOp {
    Start,
    Stop,
    Stats,
}

impl DirtyOp {
    const ALL: [Self; 3] = [Self::Start, Self::Stop, Self::Stats];
    const CHOICES: &'static str = "start|stop|stats";

    pub fn name(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Stop => "stop",
            Self::Stats => "stats",
        }
    }

    /// # Errors
    /// [`Reason::NotOneOf`] for a word that names no operation.
    pub fn parse(w: &str) -> Result<Self, Reason> {
        Self::ALL
            .into_iter()
            .find(|op| op.name() == w)
            .ok_or_else(|| Reason::NotOneOf {
                got: Word::new(w),
                choices: Self::CHOICES,
            })
    }
}

/// What `snapshot` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotRequest {
    pub file: HostPath,
    /// Pre-copy while the guest runs, pausing only for the last dirty pages and device state.
    pub live: bool,
    /// Save only the pages dirtied since this snapshot (a diff in a chain).
    pub base: Option<HostPath>,
    pub vm: VmSelector,
}

impl SnapshotRequest {
    /// # Errors
    /// [`Reason::BaseIsFile`] when the diff would overwrite its own base.
    pub fn new(
        file: HostPath,
        live: bool,
        base: Option<HostPath>,
        vm: VmSelector,
    ) -> Result<Self, Reason> {
        if base.as_ref() == Some(&file) {
            return Err(Reason::BaseIsFile);
        }
        Ok(Self {
            file,
            live,
            base,
            vm,
        })
    }
}

/// A parsed monitor command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `help` alone (`None`) or about one command.
    Help(Option<&'static Spec>),
    Vms,
    Vcpus(VmSelector),
    Stats(VmSelector),
    Mem,
    Dirty {
        op: DirtyOp,
        vm: VmSelector,
    },
    Pause(VmSelector),
    Resume(VmSelector),
    Snapshot(SnapshotRequest),
    /// Move `pages` (1 to [`MIGRATE_MAX`]) guest pages to new frames.
    Migrate {
        pages: u32,
        vm: VmSelector,
    },
    Log(LevelFilter),
    Console(VmSelector),
    /// `exit` or `quit`.
    Exit,
}

impl PartialEq for Spec {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
    }
}
impl Eq for Spec {}

/// Why a line is not a command; displays as one line with the reason and the usage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageError {
    /// The command whose usage is shown; `None` when no command was recognised.
    pub command: Option<Kind>,
    pub reason: Reason,
}

/// What was wrong with a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// A blank line.
    Empty,
    UnknownCommand(Word),
    /// The placeholder of the missing argument, as in the usage (`FILE`, `LEVEL`, ...).
    Missing(&'static str),
    Unexpected(Word),
    UnknownOption(Word),
    RepeatedOption(&'static str),
    /// A word that is not one of `choices` (e.g. `start|stop|stats`).
    NotOneOf {
        got: Word,
        choices: &'static str,
    },
    NotANumber(Word),
    OutOfRange {
        got: Word,
        min: u64,
        max: u64,
    },
    Vm(BadVm),
    Path(BadPath),
    /// A snapshot whose base is the file it writes.
    BaseIsFile,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("no command"),
            Self::UnknownCommand(w) => write!(f, "unknown command {w}"),
            Self::Missing(what) => write!(f, "missing {what}"),
            Self::Unexpected(w) => write!(f, "unexpected {w}"),
            Self::UnknownOption(w) => write!(f, "unknown option {w}"),
            Self::RepeatedOption(o) => write!(f, "{o} given twice"),
            Self::NotOneOf { got, choices } => write!(f, "{got} is not one of {choices}"),
            Self::NotANumber(w) => write!(f, "{w} is not a number"),
            Self::OutOfRange { got, min, max } => {
                write!(f, "{got} is out of range ({min} to {max})")
            }
            Self::Vm(e) => write!(f, "{e}"),
            Self::Path(e) => write!(f, "{e}"),
            Self::BaseIsFile => f.write_str("the snapshot would overwrite its own base"),
        }
    }
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; ", self.reason)?;
        match self.command {
            Some(kind) => write!(f, "usage: {}", kind.spec().usage()),
            None => {
                f.write_str("commands:")?;
                for spec in &COMMANDS {
                    write!(f, " {}", spec.name)?;
                }
                Ok(())
            }
        }
    }
}

/// The command as it would be typed, with every default spelled out: parsing the text gives
/// the same command back. Used to log what a bootarg runs.
impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Help(None) => f.write_str("help"),
            Self::Help(Some(spec)) => write!(f, "help {}", spec.name),
            Self::Vms => f.write_str("vms"),
            Self::Vcpus(vm) => write!(f, "vcpus {vm}"),
            Self::Stats(vm) => write!(f, "stats {vm}"),
            Self::Mem => f.write_str("mem"),
            Self::Dirty { op, vm } => write!(f, "dirty {} {vm}", op.name()),
            Self::Pause(vm) => write!(f, "pause {vm}"),
            Self::Resume(vm) => write!(f, "resume {vm}"),
            Self::Snapshot(r) => {
                write!(f, "snapshot {}", r.file)?;
                if r.live {
                    f.write_str(" --live")?;
                }
                if let Some(base) = &r.base {
                    write!(f, " --base {base}")?;
                }
                write!(f, " {}", r.vm)
            }
            Self::Migrate { pages, vm } => write!(f, "migrate {pages} {vm}"),
            Self::Log(level) => write!(f, "log {}", level_name(*level)),
            Self::Console(vm) => write!(f, "console {vm}"),
            Self::Exit => f.write_str("exit"),
        }
    }
}

impl Command {
    /// Parses one line typed at the monitor prompt.
    ///
    /// # Errors
    /// A [`UsageError`] for a blank line, an unknown command, or a command whose arguments are
    /// missing, extra or malformed.
    pub fn parse(line: &str) -> Result<Self, UsageError> {
        let mut words = line.split_ascii_whitespace();
        let Some(name) = words.next() else {
            return Err(UsageError {
                command: None,
                reason: Reason::Empty,
            });
        };
        let Some(spec) = Spec::find(name) else {
            return Err(UsageError {
                command: None,
                reason: Reason::UnknownCommand(Word::new(name)),
            });
        };
        let mut args = Args(words);
        parse_args(spec.kind, &mut args)
            .and_then(|cmd| args.finish().map(|()| cmd))
            .map_err(|reason| UsageError {
                command: Some(spec.kind),
                reason,
            })
    }
}

fn parse_args(kind: Kind, a: &mut Args<'_>) -> Result<Command, Reason> {
    Ok(match kind {
        Kind::Help => Command::Help(match a.next_positional()? {
            None => None,
            Some(w) => Some(Spec::find(w).ok_or_else(|| Reason::UnknownCommand(Word::new(w)))?),
        }),
        Kind::Vms => Command::Vms,
        Kind::Vcpus => Command::Vcpus(a.vm()?),
        Kind::Stats => Command::Stats(a.vm()?),
        Kind::Mem => Command::Mem,
        Kind::Dirty => {
            let op = DirtyOp::parse(a.required(DirtyOp::CHOICES)?)?;
            Command::Dirty { op, vm: a.vm()? }
        }
        Kind::Pause => Command::Pause(a.vm()?),
        Kind::Resume => Command::Resume(a.vm()?),
        Kind::Snapshot => Command::Snapshot(parse_snapshot(a)?),
        Kind::Migrate => {
            let w = a.required("N")?;
            let pages = parse_number(w, 1, MIGRATE_MAX.into())?;
            Command::Migrate {
                // In range of u32: bounded by MIGRATE_MAX just above.
                pages: u32::try_from(pages).unwrap_or(MIGRATE_MAX),
                vm: a.vm()?,
            }
        }
        Kind::Log => Command::Log(parse_level(a.required("LEVEL")?)?),
        Kind::Console => {
            Command::Console(VmSelector::parse(a.required("VM")?).map_err(Reason::Vm)?)
        }
        Kind::Exit | Kind::Quit => Command::Exit,
    })
}

fn parse_snapshot(a: &mut Args<'_>) -> Result<SnapshotRequest, Reason> {
    let mut file = None;
    let mut live = false;
    let mut base = None;
    let mut vm = None;
    while let Some(w) = a.0.next() {
        match w {
            "--live" if live => return Err(Reason::RepeatedOption("--live")),
            "--live" => live = true,
            "--base" if base.is_some() => return Err(Reason::RepeatedOption("--base")),
            "--base" => {
                let f = a.0.next().ok_or(Reason::Missing("FILE after --base"))?;
                base = Some(parse_path(f)?);
            }
            _ if w.starts_with('-') => return Err(Reason::UnknownOption(Word::new(w))),
            _ if file.is_none() => file = Some(parse_path(w)?),
            _ if vm.is_none() => vm = Some(VmSelector::parse(w).map_err(Reason::Vm)?),
            _ => return Err(Reason::Unexpected(Word::new(w))),
        }
    }
    let file = file.ok_or(Reason::Missing("FILE"))?;
    SnapshotRequest::new(file, live, base, vm.unwrap_or_default())
}

/// A file name as a command or bootarg gives it.
pub(super) fn parse_path(w: &str) -> Result<HostPath, Reason> {
    if w.starts_with('-') {
        return Err(Reason::UnknownOption(Word::new(w)));
    }
    HostPath::new(w).map_err(Reason::Path)
}

/// A decimal number from `min` to `max` (digits only: no sign, no separators).
pub(super) fn parse_number(w: &str, min: u64, max: u64) -> Result<u64, Reason> {
    if w.is_empty() || !w.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Reason::NotANumber(Word::new(w)));
    }
    // All digits: the only parse failure left is overflow, which is out of range too.
    match w.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(Reason::OutOfRange {
            got: Word::new(w),
            min,
            max,
        }),
    }
}

/// Log levels by name, as `log` takes them.
const LEVELS: [(&str, LevelFilter); 6] = [
    ("off", LevelFilter::Off),
    ("error", LevelFilter::Error),
    ("warn", LevelFilter::Warn),
    ("info", LevelFilter::Info),
    ("debug", LevelFilter::Debug),
    ("trace", LevelFilter::Trace),
];

/// A log level as `log` and `hyp.log=` name them, plus `off`.
///
/// # Errors
/// [`Reason::NotOneOf`] for any other word.
pub fn parse_level(w: &str) -> Result<LevelFilter, Reason> {
    LEVELS
        .iter()
        .find(|(name, _)| *name == w)
        .map(|(_, level)| *level)
        .ok_or_else(|| Reason::NotOneOf {
            got: Word::new(w),
            choices: "off|error|warn|info|debug|trace",
        })
}

fn level_name(level: LevelFilter) -> &'static str {
    LEVELS
        .iter()
        .find(|(_, l)| *l == level)
        .map_or("info", |(name, _)| name)
}

/// The words after the command name.
struct Args<'a>(SplitAsciiWhitespace<'a>);

impl<'a> Args<'a> {
    /// The next word, which must not be an option.
    fn next_positional(&mut self) -> Result<Option<&'a str>, Reason> {
        match self.0.next() {
            Some(w) if w.starts_with('-') => Err(Reason::UnknownOption(Word::new(w))),
            w => Ok(w),
        }
    }

    fn required(&mut self, placeholder: &'static str) -> Result<&'a str, Reason> {
        self.next_positional()?.ok_or(Reason::Missing(placeholder))
    }

    /// An optional trailing VM, VM 1 without one.
    fn vm(&mut self) -> Result<VmSelector, Reason> {
        match self.next_positional()? {
            None => Ok(VmSelector::DEFAULT),
            Some(w) => VmSelector::parse(w).map_err(Reason::Vm),
        }
    }

    fn finish(&mut self) -> Result<(), Reason> {
        match self.next_positional()? {
            None => Ok(()),
            Some(w) => Err(Reason::Unexpected(Word::new(w))),
        }
    }
}

#[cfg(test)]
mod tests;
