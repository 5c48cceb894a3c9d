//! How the xtask ends: an error message saying what to do, or a specific exit status that the
//! caller relies on (QEMU's status passed through, 124 for a timeout, 2 for a missing tool).

use std::fmt;
use std::process::ExitCode;

/// Ends the xtask with `code`. The message, if any, is printed like any error; without one the
/// reason was already reported (a test summary, QEMU's own output).
#[derive(Debug)]
pub struct Exit {
    pub code: u8,
    pub message: Option<String>,
}

impl Exit {
    pub fn silent(code: u8) -> Self {
        Self {
            code,
            message: None,
        }
    }

    pub fn with_message(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: Some(message.into()),
        }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.message {
            Some(m) => f.write_str(m),
            None => write!(f, "exit status {}", self.code),
        }
    }
}

impl std::error::Error for Exit {}

/// Turns a subcommand's result into the process exit status, printing the error chain.
pub fn report(result: anyhow::Result<()>) -> ExitCode {
    let Err(err) = result else {
        return ExitCode::SUCCESS;
    };
    match err.downcast_ref::<Exit>() {
        Some(exit) => {
            if exit.message.is_some() {
                eprintln!("error: {err:#}");
            }
            ExitCode::from(exit.code)
        }
        None => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
