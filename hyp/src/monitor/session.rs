//! The console driver's one entry point for typed input: the router, the line editor and the
//! command parser chained, one call per byte. The arch layer prints [`Step::echo`] and then
//! acts on [`Step::action`].
//!
//! Entering the monitor forgets any half-typed monitor line (the banner and a fresh prompt
//! replace it on screen). `exit`/`quit` is handled here, because only the router can give focus
//! back; every other command goes to the caller.
//!
//! ```
//! use hyp::monitor::select::VmNumber;
//! use hyp::monitor::session::{Action, MonitorInput};
//!
//! let mut input = MonitorInput::new(Some(VmNumber::FIRST));
//! let mut screen = Vec::new();
//! let mut run = Vec::new();
//! for &byte in b"ls\x1dmem\rexit\r" {
//!     let step = input.feed(byte);
//!     screen.extend_from_slice(step.echo);
//!     match step.action {
//!         Action::Guest { .. } => {} // give the byte to that VM's virtual UART
//!         Action::Run(command) => run.push(command.to_string()),
//!         _ => {}
//!     }
//! }
//! assert_eq!(run, ["mem"]);
//! assert!(screen.ends_with(b"exit\r\n[back to the guest console]\r\n"));
//! ```
#![forbid(unsafe_code)]

use super::command::{Command, Reason, UsageError};
use super::editor::LineEditor;
use super::router::{Focus, InputRouter, Route};
use super::select::VmNumber;

/// Printed when focus moves to the monitor: a fresh line, the banner, the prompt.
pub const ENTER_ECHO: &[u8] =
    b"\r\n[hyp monitor: `help` lists commands; Ctrl-] or `exit` returns to the guest]\r\nhyp> ";

/// Printed when focus moves back to a guest.
pub const LEAVE_ECHO: &[u8] = b"\r\n[back to the guest console]\r\n";

/// Said when `exit` has no guest to return to.
pub const NO_GUEST: &str = "no VM has a console; staying in the monitor";

/// What the caller does after printing the echo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Nothing,
    /// Give `byte` to `vm`'s virtual UART.
    Guest {
        vm: VmNumber,
        byte: u8,
    },
    /// Focus moved to the monitor (the echo has the banner and prompt).
    EnteredMonitor,
    /// Focus moved back to `vm`'s console.
    LeftMonitor(VmNumber),
    /// Carry out the command, print its output, then the prompt.
    Run(Command),
    /// Print the error (one line), then the prompt.
    Usage(UsageError),
    /// Print this line, then the prompt.
    Say(&'static str),
    /// A blank line: print the prompt.
    Prompt,
}

/// What one typed byte did.
#[derive(Debug, PartialEq, Eq)]
pub struct Step<'a> {
    /// Print these bytes first (the monitor's echo; empty for guest input).
    pub echo: &'a [u8],
    pub action: Action,
}

/// Typed-input state of the physical console.
pub struct MonitorInput {
    router: InputRouter,
    editor: LineEditor,
}

impl MonitorInput {
    /// Guest input goes to `console` first; with `None` the monitor has focus from the start.
    pub const fn new(console: Option<VmNumber>) -> Self {
        Self {
            router: InputRouter::new(console),
            editor: LineEditor::new(),
        }
    }

    pub fn router(&self) -> &InputRouter {
        &self.router
    }

    /// For `console VM`: [`InputRouter::set_console_vm`].
    pub fn router_mut(&mut self) -> &mut InputRouter {
        &mut self.router
    }

    /// Takes one byte typed on the physical console.
    pub fn feed(&mut self, byte: u8) -> Step<'_> {
        let byte = match self.router.route(byte) {
            Route::Guest { vm, byte } => return quiet(Action::Guest { vm, byte }),
            Route::Ignored => return quiet(Action::Nothing),
            Route::Switched(focus) => return self.switched(focus),
            Route::Monitor(byte) => byte,
        };
        let edit = self.editor.feed(byte);
        let Some(line) = edit.line else {
            return Step {
                echo: edit.echo,
                action: Action::Nothing,
            };
        };
        let action = match Command::parse(line) {
            Ok(Command::Exit) => match self.router.enter_guest() {
                Focus::Guest(vm) => {
                    return Step {
                        echo: LEAVE_ECHO,
                        action: Action::LeftMonitor(vm),
                    };
                }
                Focus::Monitor => Action::Say(NO_GUEST),
            },
            Ok(command) => Action::Run(command),
            Err(UsageError {
                reason: Reason::Empty,
                ..
            }) => Action::Prompt,
            Err(e) => Action::Usage(e),
        };
        Step {
            echo: edit.echo,
            action,
        }
    }

    fn switched(&mut self, focus: Focus) -> Step<'static> {
        match focus {
            Focus::Monitor => {
                self.editor.clear();
                Step {
                    echo: ENTER_ECHO,
                    action: Action::EnteredMonitor,
                }
            }
            Focus::Guest(vm) => Step {
                echo: LEAVE_ECHO,
                action: Action::LeftMonitor(vm),
            },
        }
    }
}

fn quiet(action: Action) -> Step<'static> {
    Step { echo: b"", action }
}

#[cfg(test)]
mod tests;
