//! When an unattended operation runs: at a guest time, or once a VM's console has printed a
//! given text. Tests and benchmarks trigger on what the guest printed, so their outcome follows
//! the guest's progress and not how fast the host runs it (a slow host boots the guest in more
//! guest time, and an operation at a fixed time would then come before the point it was meant
//! for).
//!
//! This is the grammar of `WHEN`; the hypervisor's monitor watches the consoles for the texts
//! (`hyp::monitor::trigger::ConsoleWatch`).
#![forbid(unsafe_code)]

use super::command::{Reason, parse_number};
use super::word::Word;
use alloc::string::String;
use core::fmt;

/// Longest text a trigger waits for, in bytes.
pub const TEXT_MAX: usize = 64;

/// The prefix of a console trigger in `WHEN`.
pub const AFTER: &str = "after:";

/// When an operation is due.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Once VM 1's guest time reaches this many milliseconds.
    At(u64),
    /// Once the operation's VM has printed this text on its console, within one line.
    After(ConsoleText),
}

impl Trigger {
    /// `WHEN`: `MS` (0 to `max_ms`) or `after:TEXT`.
    pub fn parse(when: &str, max_ms: u64) -> Result<Self, Reason> {
        match when.strip_prefix(AFTER) {
            Some(text) => ConsoleText::parse(text).map(Self::After),
            None if when.is_empty() => Err(Reason::Missing("MS or after:TEXT")),
            None => parse_number(when, 0, max_ms).map(Self::At),
        }
    }
}

/// `at 2000 ms` or ``after `TEXT` ``, for the log.
impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::At(ms) => write!(f, "at {ms} ms"),
            Self::After(text) => write!(f, "after `{}`", text.as_str()),
        }
    }
}

/// A text to wait for: 1 to [`TEXT_MAX`] printable ASCII bytes, no space and no comma (in
/// bootargs a space ends the argument and a comma starts an option).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleText(String);

impl ConsoleText {
    pub fn parse(text: &str) -> Result<Self, Reason> {
        if text.is_empty() {
            return Err(Reason::Missing("TEXT after after:"));
        }
        if text.len() > TEXT_MAX {
            return Err(Reason::TextTooLong {
                got: Word::new(text),
                max: TEXT_MAX,
            });
        }
        if !text.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
            return Err(Reason::BadText(Word::new(text)));
        }
        Ok(Self(String::from(text)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests;
