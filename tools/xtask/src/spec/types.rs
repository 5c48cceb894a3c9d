//! What a QEMU integration test is once its file is read: how to build and boot the hypervisor
//! and its guest, what to type on the console and when, and what the output and exit status
//! must be, for the first run and for a `then-restore` run.

use super::placeholders::snapshot_placeholder;
use crate::build::Variant;
use crate::debian;
use crate::size::Size;
use std::time::Duration;

/// What a test's guest boots.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum GuestKind {
    /// A Debian kernel with the initramfs from `tests/linux/init-<recipe>.sh`.
    Linux {
        kernel: debian::Kernel,
        initramfs: String,
    },
    /// A bare-metal test guest, `tests/guests/src/bin/<name>.rs`.
    BareMetal(String),
}

/// The guest VM of a test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestSpec {
    pub kind: GuestKind,
    pub cpus: u32,
    pub mem: Size,
    /// The kernel command line; `None` means the kind's default.
    pub append: Option<String>,
    /// Run the guest directly under QEMU at EL1, without the hypervisor.
    pub native: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpectedExit {
    Code(i32),
    NonZero,
}

/// The second run of a `then-restore` test: a fresh QEMU resuming the snapshot file the first
/// run wrote, and what its output and status must be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestorePhase {
    pub expect: Vec<String>,
    /// As [`Spec::send`], against `expect`.
    pub send: Vec<(Gate, Vec<u8>)>,
    pub forbid: Vec<String>,
    pub exit: ExpectedExit,
    pub timeout: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    /// The file's path below `tests/` without `.test`, e.g. `boot/smp4`.
    pub name: String,
    pub variant: Variant,
    pub smp: u32,
    pub mem: Size,
    pub machine_options: Vec<(String, String)>,
    pub qemu_args: Vec<String>,
    pub expect: Vec<String>,
    /// Console input: each text's bytes (a `send`'s with its newline) are typed once its gate
    /// opens: the `expect` and `expect-anywhere` lines above it have appeared.
    pub send: Vec<(Gate, Vec<u8>)>,
    pub expect_anywhere: Vec<String>,
    /// `expect-number`: the decimal number after the last appearance of the text must be at
    /// least the bound.
    pub expect_number: Vec<(String, u64)>,
    pub forbid: Vec<String>,
    pub exit: ExpectedExit,
    pub timeout: Duration,
    /// Without a guest the hypervisor boots alone.
    pub guest: Option<GuestSpec>,
    /// The hypervisor's bootargs (`/chosen/bootargs` of its boot DTB); empty for none. May
    /// hold the snapshot files' placeholders: see [`Spec::hyp_args_with`].
    pub hyp_args: String,
    /// `snapshot-file`: plain file names, created in the test's scratch directory; empty for
    /// none. A restore takes them as one chain in this order.
    pub snapshot_files: Vec<String>,
    /// `then-restore = true`: what the run restoring `snapshot_files` must show.
    pub restore: Option<RestorePhase>,
    /// `dirty-log-file`: a plain file name in the scratch directory, `{dirtylog}` in
    /// `hyp-args`; after a passing run the runner checks the console log against it
    /// (`dirtylog::check`).
    pub dirty_log_file: Option<String>,
    /// `dirty-log-expect = missed`: the check must fail, finding writes missing (a build that
    /// loses them on purpose).
    pub dirty_log_missed: bool,
}

impl Spec {
    /// `hyp_args` with each snapshot file's placeholder ([`snapshot_placeholder`]) replaced
    /// by its path in `snapshots`, in `snapshot_files` order.
    pub fn hyp_args_with(&self, snapshots: &[&str]) -> String {
        snapshots
            .iter()
            .enumerate()
            .fold(self.hyp_args.clone(), |args, (i, path)| {
                args.replace(&snapshot_placeholder(i), path)
            })
    }

    /// The restore run as a spec of its own, for [`judge`](fn@super::judge): its checks and
    /// what to type, no guest to boot.
    pub fn restore_spec(&self) -> Option<Spec> {
        let phase = self.restore.as_ref()?;
        Some(Spec {
            name: format!("{} (restore)", self.name),
            expect: phase.expect.clone(),
            expect_anywhere: Vec::new(),
            expect_number: Vec::new(),
            send: phase.send.clone(),
            forbid: phase.forbid.clone(),
            exit: phase.exit,
            timeout: phase.timeout,
            guest: None,
            hyp_args: String::new(),
            snapshot_files: Vec::new(),
            dirty_log_file: None,
            dirty_log_missed: false,
            restore: None,
            ..self.clone()
        })
    }
}

/// When a `send` is typed: once the first `expects` of `expect` have appeared in order and the
/// first `anywhere` of `expect-anywhere` anywhere (the lines above it in the file; an
/// `expect-anywhere` gate lets a test wait for two things whose order the guest does not fix).
/// Whether output opens one is for `gate`, which reads output; this is what a spec holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gate {
    pub expects: usize,
    pub anywhere: usize,
}

impl Gate {
    /// After the first `n` `expect` lines, no `expect-anywhere`.
    pub const fn expects(n: usize) -> Self {
        Self {
            expects: n,
            anywhere: 0,
        }
    }
}
