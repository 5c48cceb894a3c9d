//! The command table: every command's name, arguments and description, from which the
//! monitor's `help` (`hyp::monitor::command::help`), the usage lines in errors and the list of
//! commands are all generated.
#![forbid(unsafe_code)]

use core::fmt;

/// Which command a table row describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Help,
    Vms,
    Vcpus,
    Stats,
    Mem,
    Dirty,
    Pause,
    Resume,
    Snapshot,
    Migrate,
    Log,
    Console,
    Exit,
    Quit,
}

/// One row of the command table.
#[derive(Debug)]
pub struct Spec {
    pub kind: Kind,
    pub name: &'static str,
    /// The arguments as the usage line shows them.
    pub args: &'static str,
    pub about: &'static str,
}

/// Every command, in the order `help` lists them.
pub static COMMANDS: [Spec; 14] = TABLE;

// `Kind::spec` indexes the table by kind.
const _: () = {
    let mut i = 0;
    while i < TABLE.len() {
        assert!(
            TABLE[i].kind as usize == i,
            "COMMANDS rows out of Kind order"
        );
        i += 1;
    }
};

const TABLE: [Spec; 14] = [
    row(
        Kind::Help,
        "help",
        "[COMMAND]",
        "list the commands, or show how one is used",
    ),
    row(
        Kind::Vms,
        "vms",
        "",
        "list the VMs: number, name, vCPUs, memory, state",
    ),
    row(
        Kind::Vcpus,
        "vcpus",
        "[VM]",
        "show a VM's vCPUs: state, PC, exits",
    ),
    row(
        Kind::Stats,
        "stats",
        "[VM]",
        "exits by reason, stage-2 faults, TLB invalidations, dirty pages",
    ),
    row(
        Kind::Mem,
        "mem",
        "",
        "frames per ownership state and stage-2 table pages",
    ),
    row(
        Kind::Dirty,
        "dirty",
        "start|stop|stats [VM]",
        "start or stop dirty logging, or count dirty pages",
    ),
    row(Kind::Pause, "pause", "[VM]", "stop every vCPU of a VM"),
    row(Kind::Resume, "resume", "[VM]", "run a paused VM again"),
    row(
        Kind::Snapshot,
        "snapshot",
        "FILE [--live] [--base FILE] [VM]",
        "save a VM to FILE on the host (--live: while it runs; --base: only pages dirtied since)",
    ),
    row(
        Kind::Migrate,
        "migrate",
        "N [VM]",
        "move N guest pages to new frames",
    ),
    row(
        Kind::Log,
        "log",
        "LEVEL",
        "set the log level: off, error, warn, info, debug or trace",
    ),
    row(
        Kind::Console,
        "console",
        "VM",
        "send guest input to this VM's console",
    ),
    row(
        Kind::Exit,
        "exit",
        "",
        "return to the guest console (Ctrl-] does too)",
    ),
    row(Kind::Quit, "quit", "", "same as exit"),
];

const fn row(kind: Kind, name: &'static str, args: &'static str, about: &'static str) -> Spec {
    Spec {
        kind,
        name,
        args,
        about,
    }
}

impl Kind {
    /// This command's row of [`COMMANDS`].
    pub fn spec(self) -> &'static Spec {
        // In range: the table has one row per kind, in declaration order (checked at compile time).
        &COMMANDS[self as usize]
    }
}

impl Spec {
    /// The usage line: `name args`.
    pub fn usage(&self) -> Usage<'_> {
        Usage(self)
    }

    /// The row named `name`, if any.
    pub fn find(name: &str) -> Option<&'static Spec> {
        COMMANDS.iter().find(|s| s.name == name)
    }
}

/// Displays a command's usage line.
pub struct Usage<'a>(&'a Spec);

impl fmt::Display for Usage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.args.is_empty() {
            f.pad(self.0.name)
        } else {
            // Built first so a width (as `help` uses) pads the whole usage.
            let mut s = alloc::string::String::new();
            s.push_str(self.0.name);
            s.push(' ');
            s.push_str(self.0.args);
            f.pad(&s)
        }
    }
}

/// One line of `help`: the usage padded to the longest one, then the description.
impl fmt::Display for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<w$} {}", self.usage(), self.about, w = usage_width())
    }
}

/// The length of the longest usage line.
fn usage_width() -> usize {
    COMMANDS
        .iter()
        .map(|s| {
            s.name.len()
                + if s.args.is_empty() {
                    0
                } else {
                    1 + s.args.len()
                }
        })
        .max()
        .unwrap_or(0)
}

impl PartialEq for Spec {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
    }
}
impl Eq for Spec {}
