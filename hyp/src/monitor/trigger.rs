//! When an unattended operation runs: at a guest time, or once a VM's console has printed a
//! given text. Tests and benchmarks trigger on what the guest printed, so their outcome follows
//! the guest's progress and not how fast the host runs it (a slow host boots the guest in more
//! guest time, and an operation at a fixed time would then come before the point it was meant
//! for).
//!
//! [`ConsoleWatch`] scans the bytes a console prints for the texts operations wait for. It
//! keeps the tail of each console's current line, so a text matches within one line whatever
//! pieces the guest writes it in, and never across a line break.
#![forbid(unsafe_code)]

use super::command::{Reason, parse_number};
use super::word::Word;
use alloc::string::String;
use alloc::vec::Vec;
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

/// The last [`TEXT_MAX`] bytes of one console's current line.
#[derive(Clone)]
struct LineTail {
    buf: [u8; TEXT_MAX],
    len: usize,
}

impl LineTail {
    const fn new() -> Self {
        Self {
            buf: [0; TEXT_MAX],
            len: 0,
        }
    }

    /// Adds a printed byte: a line break starts a new line; `\r` belongs to the break.
    fn push(&mut self, b: u8) {
        match b {
            b'\n' => self.len = 0,
            b'\r' => {}
            b => {
                if self.len == TEXT_MAX {
                    self.buf.copy_within(1.., 0);
                    self.len -= 1;
                }
                self.buf[self.len] = b;
                self.len += 1;
            }
        }
    }

    fn ends_with(&self, text: &[u8]) -> bool {
        self.buf[..self.len].ends_with(text)
    }
}

/// Items waiting for texts on the consoles of VMs `0..vms` (by index).
pub struct ConsoleWatch<T> {
    tails: Vec<LineTail>,
    /// (VM index, text, item), in the order watched.
    waiting: Vec<(usize, ConsoleText, T)>,
}

impl<T> ConsoleWatch<T> {
    pub fn new(vms: usize) -> Self {
        Self {
            tails: alloc::vec![LineTail::new(); vms],
            waiting: Vec::new(),
        }
    }

    /// Waits for VM `vm` to print `text`; `None` (and nothing watched) if there is no such VM.
    pub fn watch(&mut self, vm: usize, text: ConsoleText, item: T) -> Option<()> {
        (vm < self.tails.len()).then(|| self.waiting.push((vm, text, item)))
    }

    /// Nothing is waiting any more.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// VM `vm` printed `byte`: hands `fired` each item whose text that byte completed, in the
    /// order they were watched, and stops watching for them.
    pub fn byte(&mut self, vm: usize, byte: u8, mut fired: impl FnMut(T)) {
        let Some(tail) = self.tails.get_mut(vm) else {
            return;
        };
        tail.push(byte);
        let tail = &self.tails[vm];
        if byte == b'\n' || byte == b'\r' {
            return;
        }
        let mut i = 0;
        while i < self.waiting.len() {
            let (v, text, _) = &self.waiting[i];
            if *v == vm && tail.ends_with(text.as_str().as_bytes()) {
                fired(self.waiting.remove(i).2);
            } else {
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests;
