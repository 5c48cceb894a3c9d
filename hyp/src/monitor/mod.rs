//! The hypervisor monitor's portable half: everything between the bytes typed on the physical
//! console and a typed request the arch layer carries out at EL2, plus the same requests taken
//! from the hypervisor's bootargs for unattended runs. Host-tested; no hardware access.
//!
//! The language itself (commands, bootargs, triggers, VM selectors, file names, quoting) is
//! `hyp_formats::monitor`, shared with the host tools; its modules are re-exported here under
//! the same names.
//!
//! - [`router`]: which way each typed byte goes (the focused guest, or the monitor); Ctrl-]
//!   toggles.
//! - [`editor`]: the monitor's line input (echo, backspace, Ctrl-C, Ctrl-U, bell at the limit).
//! - [`command`]: a line into a [`command::Command`], or a one-line usage error; the command
//!   table also produces `help`.
//! - [`session`]: router + editor + parser in one step per byte, as the console driver uses them.
//! - [`bootargs`]: `hyp.*` bootargs into a [`bootargs::Schedule`] of timed commands and modes.
//! - [`trigger`]: when a bootarg operation runs (a guest time, or a text the VM's console
//!   printed) and the watch over the consoles' output for those texts.
//! - [`stats`]: the text of `vms`, `vcpus`, `stats` and `mem` from plain data.
//! - [`select`], [`path`], [`word`]: VM selectors, host file names, and quoting user input in
//!   errors.
//!
//! Nothing typed or passed as a bootarg can panic here or grow memory without bound: lines are
//! capped by the editor, and every piece of input quoted in an error is cut to [`word::WORD_MAX`].
#![forbid(unsafe_code)]

pub use hyp_formats::monitor::{bootargs, path, select, word};

pub mod command;
pub mod editor;
pub mod router;
pub mod session;
pub mod stats;
pub mod trigger;

/// Where the monitor's multi-line output (`help`, reports) goes: called once per line, without
/// a line end, so the console can print whole lines that never interleave with a guest's.
pub type LineSink<'a> = &'a mut dyn FnMut(core::fmt::Arguments<'_>);

/// The monitor's prompt, printed after the banner and after each command's output.
pub const PROMPT: &str = "hyp> ";
