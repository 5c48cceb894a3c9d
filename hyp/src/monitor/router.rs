//! Where each byte typed on the physical console goes: to the VM that has console focus, or to
//! the monitor. The escape key, Ctrl-] (0x1d, as telnet uses it), toggles between the two: QEMU's
//! console mux uses Ctrl-A and shells don't bind Ctrl-], so neither loses a key to it.
//!
//! Rules, kept simple on purpose:
//! - One Ctrl-] toggles, whichever side has focus; it is never passed on, so a guest can't
//!   receive 0x1d. In the monitor, `exit` or `quit` also goes back ([`InputRouter::enter_guest`]).
//! - Guest input goes to one VM at a time, VM 1 at first; the monitor's `console VM` picks
//!   another ([`InputRouter::set_console_vm`]).
//! - The router holds no bytes: each byte is routed the moment it arrives, so none meant for
//!   the guest can be lost here (the guest UART's receive FIFO decides what it accepts).
//! - With no VM console at all, focus stays on the monitor and Ctrl-] does nothing.
#![forbid(unsafe_code)]

use super::select::VmNumber;

/// Ctrl-]: switches console input between the guest and the monitor.
pub const ESCAPE: u8 = 0x1d;

/// Who receives typed input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Focus {
    Guest(VmNumber),
    Monitor,
}

/// What to do with one typed byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Give `byte` to `vm`'s console (its virtual UART receives it).
    Guest { vm: VmNumber, byte: u8 },
    /// Give `byte` to the monitor's line editor.
    Monitor(u8),
    /// The escape key moved the focus; the byte itself goes nowhere.
    Switched(Focus),
    /// The escape key with no guest console to switch to.
    Ignored,
}

/// The console input switch.
#[derive(Clone, Debug)]
pub struct InputRouter {
    /// The VM that receives guest input, if any VM has a console.
    console: Option<VmNumber>,
    in_monitor: bool,
}

impl InputRouter {
    /// Input goes to `console` first; with `None` (no VM has a console) to the monitor.
    pub const fn new(console: Option<VmNumber>) -> Self {
        Self {
            console,
            in_monitor: console.is_none(),
        }
    }

    pub fn focus(&self) -> Focus {
        match self.console {
            Some(vm) if !self.in_monitor => Focus::Guest(vm),
            _ => Focus::Monitor,
        }
    }

    /// The VM that gets guest input when the guest has focus.
    pub fn console_vm(&self) -> Option<VmNumber> {
        self.console
    }

    /// Routes one typed byte.
    pub fn route(&mut self, byte: u8) -> Route {
        match (byte, self.focus()) {
            (ESCAPE, Focus::Guest(_)) => Route::Switched(self.enter_monitor()),
            (ESCAPE, Focus::Monitor) if self.console.is_some() => {
                Route::Switched(self.enter_guest())
            }
            (ESCAPE, Focus::Monitor) => Route::Ignored,
            (byte, Focus::Guest(vm)) => Route::Guest { vm, byte },
            (byte, Focus::Monitor) => Route::Monitor(byte),
        }
    }

    pub fn enter_monitor(&mut self) -> Focus {
        self.in_monitor = true;
        self.focus()
    }

    /// Gives focus back to the console VM (`exit`); stays in the monitor if there is none.
    pub fn enter_guest(&mut self) -> Focus {
        self.in_monitor = false;
        self.focus()
    }

    /// Sends guest input to `vm` from now on (`console VM`, after the caller checked that
    /// `vm` exists and has a console). Focus stays where it is.
    pub fn set_console_vm(&mut self, vm: VmNumber) {
        if self.console.is_none() {
            // Until now there was no guest to go back to, so we were in the monitor.
            self.in_monitor = true;
        }
        self.console = Some(vm);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn vm(n: u16) -> VmNumber {
        VmNumber::new(n).unwrap()
    }

    fn route_all(r: &mut InputRouter, input: &[u8]) -> Vec<Route> {
        input.iter().map(|&b| r.route(b)).collect()
    }

    #[test]
    fn guest_gets_every_byte_but_the_escape_key() {
        let mut r = InputRouter::new(Some(vm(1)));
        assert_eq!(r.focus(), Focus::Guest(vm(1)));
        let input: Vec<u8> = (0..=255u8).filter(|&b| b != ESCAPE).collect();
        let routes = route_all(&mut r, &input);
        for (b, route) in input.iter().zip(routes) {
            assert_eq!(
                route,
                Route::Guest {
                    vm: vm(1),
                    byte: *b
                }
            );
        }
    }

    #[test]
    fn escape_toggles_and_is_never_passed_on() {
        let mut r = InputRouter::new(Some(vm(1)));
        let routes = route_all(&mut r, b"a\x1db\x1dc\x1d\x1dd");
        assert_eq!(
            routes,
            [
                Route::Guest {
                    vm: vm(1),
                    byte: b'a'
                },
                Route::Switched(Focus::Monitor),
                Route::Monitor(b'b'),
                Route::Switched(Focus::Guest(vm(1))),
                Route::Guest {
                    vm: vm(1),
                    byte: b'c'
                },
                Route::Switched(Focus::Monitor),
                Route::Switched(Focus::Guest(vm(1))),
                Route::Guest {
                    vm: vm(1),
                    byte: b'd'
                },
            ]
        );
    }

    #[test]
    fn exit_returns_to_the_guest() {
        let mut r = InputRouter::new(Some(vm(1)));
        r.route(ESCAPE);
        assert_eq!(r.route(b'x'), Route::Monitor(b'x'));
        assert_eq!(r.enter_guest(), Focus::Guest(vm(1)));
        assert_eq!(
            r.route(b'x'),
            Route::Guest {
                vm: vm(1),
                byte: b'x'
            }
        );
    }

    #[test]
    fn console_command_picks_the_guest_that_gets_input() {
        let mut r = InputRouter::new(Some(vm(1)));
        r.route(ESCAPE);
        r.set_console_vm(vm(2));
        assert_eq!(r.focus(), Focus::Monitor, "focus stays in the monitor");
        assert_eq!(r.route(ESCAPE), Route::Switched(Focus::Guest(vm(2))));
        assert_eq!(
            r.route(b'z'),
            Route::Guest {
                vm: vm(2),
                byte: b'z'
            }
        );
        assert_eq!(r.console_vm(), Some(vm(2)));
    }

    #[test]
    fn without_a_guest_console_the_monitor_keeps_focus() {
        let mut r = InputRouter::new(None);
        assert_eq!(r.focus(), Focus::Monitor);
        assert_eq!(
            route_all(&mut r, b"\x1dq\x1d"),
            [Route::Ignored, Route::Monitor(b'q'), Route::Ignored]
        );
        assert_eq!(r.enter_guest(), Focus::Monitor);
        // A console appearing later (`console 1`) becomes the place Ctrl-] goes.
        r.set_console_vm(vm(1));
        assert_eq!(r.focus(), Focus::Monitor);
        assert_eq!(r.route(ESCAPE), Route::Switched(Focus::Guest(vm(1))));
    }
}
