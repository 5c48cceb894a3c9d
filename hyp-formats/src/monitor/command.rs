//! Monitor commands: a typed line into a [`Command`], or a [`UsageError`] that says in one line
//! what was wrong and how the command is used.
//!
//! One table, [`COMMANDS`], gives every command's name, arguments and description; `help`, the
//! usage in errors and the list of commands for an unknown name are all generated from it.
//! Words are separated by spaces, so a file name cannot contain one. An argument starting with
//! `-` is an option, never a file or VM. `VM` is a VM number (1 is the first) or a name such as
//! `domU1`; without it a command means VM 1.
#![forbid(unsafe_code)]

mod table;
mod usage;

pub use table::{COMMANDS, Kind, Spec, Usage};
pub use usage::{Reason, UsageError};

use super::path::HostPath;
use super::select::VmSelector;
use super::word::Word;
use core::fmt;
use core::str::SplitAsciiWhitespace;
use log::LevelFilter;

/// Most pages one `migrate` moves.
pub const MIGRATE_MAX: u32 = 10_000_000;

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
    /// The VM the command is about, if it is about one.
    pub fn vm(&self) -> Option<&VmSelector> {
        match self {
            Self::Vcpus(vm)
            | Self::Stats(vm)
            | Self::Dirty { vm, .. }
            | Self::Pause(vm)
            | Self::Resume(vm)
            | Self::Migrate { vm, .. }
            | Self::Console(vm) => Some(vm),
            Self::Snapshot(r) => Some(&r.vm),
            Self::Help(_) | Self::Vms | Self::Mem | Self::Log(_) | Self::Exit => None,
        }
    }

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
