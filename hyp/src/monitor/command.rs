//! Monitor commands: the grammar (a typed line into a [`Command`], the command table, usage
//! errors) is `hyp_formats::monitor::command`, shared with the host tools; `help`, which prints
//! the table on the console, is the monitor's own.
#![forbid(unsafe_code)]

pub use hyp_formats::monitor::command::*;

use super::LineSink;

/// `help`: one line per command, then what `VM` means.
pub fn help(out: LineSink<'_>) {
    for spec in &COMMANDS {
        out(format_args!("{spec}"));
    }
    out(format_args!("{VM_NOTE}"));
}

/// What the `VM` argument means, shown at the end of `help`.
pub const VM_NOTE: &str = "VM is a VM number (1 is the first) or name (domU1); without one, VM 1. Ctrl-] switches between guest and monitor.";

#[cfg(test)]
mod tests;
