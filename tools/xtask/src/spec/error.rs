//! What is wrong with a test file, by line: one variant per mistake, each message naming the
//! fix, since the file's author reads it in a failed run of the whole suite.

use super::keys::KEYS;
use super::placeholders::{DIRTY_LOG_PLACEHOLDER, SNAPSHOT_PLACEHOLDER};
use crate::debian;
use crate::size;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub line: usize,
    pub kind: SpecErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecErrorKind {
    NoEquals,
    UnknownKey(String),
    Repeated(&'static str),
    BadNumber {
        key: &'static str,
        value: String,
    },
    BadSize(size::SizeError),
    BadMachineOption(String),
    BadExit(String),
    EmptyValue(&'static str),
    NothingChecked,
    BadGuestName(String),
    BadBool {
        key: &'static str,
        value: String,
    },
    /// A guest key in a test without `guest`.
    NeedsGuest(&'static str),
    /// `initramfs` or `kernel` for a guest that is not Linux.
    NeedsLinux(&'static str),
    /// A `kernel` that is none of Debian's kernels.
    BadKernel(String),
    /// `hyp-args` in a test that runs its guest without the hypervisor.
    HypArgsNative,
    /// A `send` or `send-raw` value with a backslash that starts no known escape.
    BadEscape(String),
    /// An `expect-number` value that is not `TEXT >= N`.
    BadExpectNumber(String),
    /// A `snapshot-file` name that is not a plain file name.
    BadSnapshotFile(String),
    /// A `snapshot-file` name listed twice.
    RepeatedSnapshotFile(String),
    /// A `dirty-log-file` that is not a plain file name.
    BadDirtyLogFile(String),
    /// `dirty-log-file` without `{dirtylog}` in `hyp-args` (nothing would write it).
    UnusedDirtyLogFile,
    /// `{dirtylog}` in `hyp-args`, or `dirty-log-expect`, without `dirty-log-file`.
    NeedsDirtyLogFile,
    /// `dirty-log-expect` neither `pass` nor `missed`.
    BadDirtyLogExpect(String),
    /// `hyp-args` has a `{...}` that is no snapshot file's placeholder.
    UnknownPlaceholder(String),
    /// `hyp-args` has `{snapshotN}` but `snapshot-file` lists fewer than N files.
    PlaceholderPastFiles {
        placeholder: String,
        files: usize,
    },
    /// A `snapshot-file` whose placeholder `hyp-args` does not hold: nothing would write it.
    UnusedSnapshotFile {
        file: String,
        placeholder: String,
    },
    /// `{snapshot}` in `hyp-args`, or `then-restore`, without `snapshot-file`.
    NeedsSnapshotFile(&'static str),
    /// A `restore-*` key without `then-restore = true`.
    NeedsThenRestore(&'static str),
    /// `then-restore` in a test without a guest under the hypervisor.
    RestoreNeedsGuest,
    /// `then-restore` without a `restore-expect`.
    RestoreChecksNothing,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "line {}: ", self.line)?;
        }
        match &self.kind {
            SpecErrorKind::NoEquals => write!(f, "expected `key = value`"),
            SpecErrorKind::UnknownKey(k) => {
                write!(f, "unknown key `{k}`; the keys are {}", KEYS.join(", "))
            }
            SpecErrorKind::Repeated(k) => write!(f, "`{k}` is given twice"),
            SpecErrorKind::BadNumber { key, value } => {
                write!(f, "`{key}` must be a positive whole number, not `{value}`")
            }
            SpecErrorKind::BadSize(e) => write!(f, "size: {e}"),
            SpecErrorKind::BadMachineOption(o) => {
                write!(f, "machine option `{o}` is not `key=value`")
            }
            SpecErrorKind::BadExit(v) => {
                write!(f, "`exit` must be 0, nonzero or a number, not `{v}`")
            }
            SpecErrorKind::EmptyValue(k) => write!(f, "`{k}` needs a value"),
            SpecErrorKind::BadGuestName(v) => write!(
                f,
                "`guest` must be `linux` or a bare-metal guest's name (letters, digits, - and _), \
                 not `{v}`"
            ),
            SpecErrorKind::BadBool { key, value } => {
                write!(f, "`{key}` must be true or false, not `{value}`")
            }
            SpecErrorKind::BadKernel(v) => write!(
                f,
                "`kernel` must be one of Debian's kernels ({}), not `{v}`",
                debian::Kernel::names()
            ),
            SpecErrorKind::BadExpectNumber(v) => write!(
                f,
                "`expect-number` must be `TEXT >= N` (N a whole number), not `{v}`"
            ),
            SpecErrorKind::BadSnapshotFile(v) => write!(
                f,
                "`snapshot-file` takes plain file names separated by spaces (letters, digits, \
                 `.`, `-` and `_`, not starting with `.`), not `{v}`"
            ),
            SpecErrorKind::BadDirtyLogFile(v) => write!(
                f,
                "`dirty-log-file` takes a plain file name (letters, digits, `.`, `-` and `_`, \
                 not starting with `.`), not `{v}`"
            ),
            SpecErrorKind::BadDirtyLogExpect(v) => {
                write!(f, "`dirty-log-expect` is `pass` or `missed`, not `{v}`")
            }
            SpecErrorKind::RepeatedSnapshotFile(v) => {
                write!(f, "`snapshot-file` lists `{v}` twice")
            }
            SpecErrorKind::BadEscape(e) => write!(
                f,
                "unknown escape `{e}`; the escapes are \\n, \\r, \\t, \\\\ and \\xHH"
            ),
            kind => fmt_across_keys(kind, f),
        }
    }
}

/// The mistakes only the whole file shows: a key that needs another, a file or placeholder
/// that nothing names, a test that checks nothing.
fn fmt_across_keys(kind: &SpecErrorKind, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match kind {
        SpecErrorKind::NothingChecked => write!(
            f,
            "the test checks no output; add at least one `expect` or `expect-anywhere`"
        ),
        SpecErrorKind::NeedsGuest(k) => {
            write!(
                f,
                "`{k}` describes a guest; add `guest = linux` or `guest = <name>`"
            )
        }
        SpecErrorKind::NeedsLinux(k) => {
            write!(f, "`{k}` is only for `guest = linux`")
        }
        SpecErrorKind::HypArgsNative => {
            write!(
                f,
                "`hyp-args` needs the hypervisor, but `native = true` runs without it"
            )
        }
        SpecErrorKind::UnusedDirtyLogFile => write!(
            f,
            "`dirty-log-file` is written by `hyp.dirty-log={DIRTY_LOG_PLACEHOLDER}` in \
             `hyp-args`, which does not name it"
        ),
        SpecErrorKind::NeedsDirtyLogFile => write!(
            f,
            "{DIRTY_LOG_PLACEHOLDER} in `hyp-args` and `dirty-log-expect` need \
             `dirty-log-file = NAME`"
        ),
        SpecErrorKind::UnknownPlaceholder(v) => write!(
            f,
            "`hyp-args` may only hold the snapshot files' placeholders \
             {SNAPSHOT_PLACEHOLDER}, {{snapshot2}}, {{snapshot3}}, ..., not `{v}`"
        ),
        SpecErrorKind::PlaceholderPastFiles { placeholder, files } => write!(
            f,
            "`hyp-args` has {placeholder} but `snapshot-file` lists {files} file{}",
            if *files == 1 { "" } else { "s" }
        ),
        SpecErrorKind::UnusedSnapshotFile { file, placeholder } => write!(
            f,
            "`snapshot-file` lists `{file}` but `hyp-args` never names it with \
             {placeholder}, so no run would write it"
        ),
        SpecErrorKind::NeedsSnapshotFile(k) => write!(
            f,
            "{k} needs `snapshot-file = NAME...`: the files in the test's scratch directory \
             that {SNAPSHOT_PLACEHOLDER}, {{snapshot2}}, ... name"
        ),
        SpecErrorKind::NeedsThenRestore(k) => {
            write!(f, "`{k}` checks a restore run; add `then-restore = true`")
        }
        SpecErrorKind::RestoreNeedsGuest => write!(
            f,
            "`then-restore` restores the guest of the first run; it needs a `guest` run \
             under the hypervisor (not `native = true`)"
        ),
        SpecErrorKind::RestoreChecksNothing => write!(
            f,
            "`then-restore = true` needs at least one `restore-expect`"
        ),
        _ => unreachable!("a line's own mistakes are worded by `SpecError::fmt`"),
    }
}

impl std::error::Error for SpecError {}

/// The error `kind` at `line`; line 0 is the file as a whole.
pub fn err(line: usize, kind: SpecErrorKind) -> SpecError {
    SpecError { line, kind }
}
