//! QEMU integration tests as small declarative files, `tests/**/<name>.test`: how to build and
//! boot the hypervisor, and what its console output and exit status must be. A test is data,
//! so adding one needs no Rust, and a typo in a key is an error rather than a silently weaker
//! test.
//!
//! ```text
//! # comment
//! features = test-panic              # hyp cargo features, comma-separated
//! smp = 4                            # CPUs (default 1)
//! mem = 512M                         # RAM (default 1G)
//! machine = virtualization=off       # -M virt options overriding the defaults
//! qemu-args = -d guest_errors        # extra QEMU arguments, split at spaces
//! expect = cpu 0 online              # must appear, each after the previous `expect`
//! expect-anywhere = cpu 1 online     # must appear somewhere
//! expect-number = moved: >= 10000    # the number after the last `moved:` is at least 10000
//! forbid = panic at                  # must not appear
//! exit = 0                           # 0, nonzero, or a number (default 0)
//! timeout = 60                       # seconds (default 60)
//! guest = linux                      # a guest VM: `linux` or a bare-metal guest's name
//! initramfs = test                   # linux only: tests/linux/init-<recipe>.sh (default shell)
//! kernel = debian-trixie             # linux only: debian (default), debian-trixie or
//!                                    # debian-unstable
//! guest-cpus = 2                     # the guest's vCPUs (default 1)
//! guest-mem = 512M                   # the guest's RAM (default 512M linux, 64M bare-metal)
//! append = console=ttyAMA0           # the guest's kernel command line
//! native = true                      # run the guest at EL1 without the hypervisor
//! hyp-args = hyp.log=debug           # the hypervisor's own bootargs (/chosen/bootargs)
//! send = poweroff                    # typed on the console (with a newline) once every
//!                                    # `expect` above it has appeared
//! send-raw = \x1d                    # the same without the newline (here Ctrl-])
//! snapshot-file = base.snap d1.snap  # files in the test's scratch dir, split at spaces;
//!                                    # in hyp-args `{snapshot}` is the first one's path,
//!                                    # `{snapshot2}` the second's, and so on
//! then-restore = true                # after a passing run, restore the snapshot files in a
//!                                    # second QEMU (one chain: a full snapshot, then its
//!                                    # diffs, in the order listed), checked by the
//!                                    # restore-* keys:
//! restore-expect = workload: PASS    # must appear, each after the previous (repeatable)
//! restore-forbid = bad words 1       # must not appear (repeatable)
//! restore-send = echo hi             # as `send`, after the `restore-expect`s above it
//! restore-send-raw = \x1d            # as `send-raw`
//! restore-exit = 0                   # as `exit` (default 0)
//! restore-timeout = 120              # as `timeout` (default: `timeout`)
//! dirty-log-file = h.dlog            # a file in the scratch dir, `{dirtylog}` in hyp-args
//!                                    # (for `hyp.dirty-log=`); after a passing run the
//!                                    # guest's page log is checked against it
//!                                    # (`dirtylog::check`)
//! dirty-log-expect = missed          # `pass` (default) or `missed`: the check must find
//!                                    # writes missing from the harvests (teeth tests)
//! ```
//! Values run to the end of the line (a `#` starts a comment only at the start of a line);
//! wrap a value in double quotes to keep leading or trailing spaces. `send` and `send-raw`
//! values take the escapes `\n`, `\r`, `\t`, `\\` and `\xHH` (any byte); any other backslash is
//! an error.
//!
//! Every `snapshot-file` is removed before the first run, and each must be named by its
//! placeholder in `hyp-args` (nothing else can write it); a placeholder past the files listed,
//! or any other `{...}`, is an error.
//!
//! The parts: `types` is what a test is once read and `keys` the keys it may use; `parse` reads
//! a file line by line, each line's value through `values` (`escape`, `placeholders`), or names
//! what is wrong with it in an `error`; `gate` says when console input is typed, and `judge`
//! whether a run's output and status meet the spec.

mod error;
mod escape;
#[cfg(test)]
mod examples;
mod gate;
mod judge;
mod keys;
mod parse;
pub mod placeholders;
mod types;
mod values;

pub use judge::judge;
pub use parse::parse;
pub use types::{GuestKind, Spec};
