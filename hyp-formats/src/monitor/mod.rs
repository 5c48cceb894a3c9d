//! The monitor's language: a line typed at its prompt into a typed request, and the `hyp.*`
//! bootargs into a schedule of the same requests. The hypervisor's monitor (`hyp::monitor`)
//! adds the console side (routing, line editing, status texts) and carries the requests out;
//! `xtask` uses the bootarg grammar to check the tests' `hyp-args` before anything boots.
//!
//! - [`command`]: a line into a [`command::Command`], or a one-line usage error, from one
//!   command table.
//! - [`bootargs`]: `hyp.*` bootargs into a [`bootargs::Schedule`] of timed commands and modes.
//! - [`trigger`]: when a bootarg operation runs (a guest time, or a text the VM's console
//!   printed).
//! - [`select`], [`path`], [`word`]: VM selectors, host file names, and quoting user input in
//!   errors.
//!
//! Nothing typed or passed as a bootarg can panic here or grow memory without bound: every
//! piece of input quoted in an error is cut to [`word::WORD_MAX`].
#![forbid(unsafe_code)]

pub mod bootargs;
pub mod command;
pub mod path;
pub mod select;
pub mod trigger;
pub mod word;
