//! Why a typed line is not a command: one line with the reason and the command's usage.
#![forbid(unsafe_code)]

use super::table::{COMMANDS, Kind};
use crate::monitor::path::BadPath;
use crate::monitor::select::BadVm;
use crate::monitor::word::Word;
use core::fmt;

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
    /// A console trigger's text longer than `max` bytes.
    TextTooLong {
        got: Word,
        max: usize,
    },
    /// A console trigger's text with a byte that is not printable ASCII, or a comma.
    BadText(Word),
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
            Self::TextTooLong { got, max } => {
                write!(f, "text {got} is longer than {max} bytes")
            }
            Self::BadText(w) => write!(
                f,
                "text {w} may hold only printable ASCII without spaces or commas"
            ),
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
