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

use crate::build::Variant;
use crate::debian;
use crate::process::Outcome;
use crate::size::{self, Size};
use std::fmt;
use std::time::Duration;

const KEYS: &[&str] = &[
    "features",
    "smp",
    "mem",
    "machine",
    "qemu-args",
    "expect",
    "expect-anywhere",
    "expect-number",
    "forbid",
    "exit",
    "timeout",
    "guest",
    "initramfs",
    "kernel",
    "guest-cpus",
    "guest-mem",
    "append",
    "native",
    "hyp-args",
    "send",
    "send-raw",
    "snapshot-file",
    "then-restore",
    "restore-expect",
    "restore-forbid",
    "restore-send",
    "restore-send-raw",
    "restore-exit",
    "restore-timeout",
    "dirty-log-file",
    "dirty-log-expect",
];

/// What `hyp-args` says for the path of the first `snapshot-file`; the `n`-th (from 2 on) is
/// [`snapshot_placeholder`]`(n - 1)`, `{snapshotN}`.
pub const SNAPSHOT_PLACEHOLDER: &str = "{snapshot}";

/// What `hyp-args` says for the path of `dirty-log-file`.
pub const DIRTY_LOG_PLACEHOLDER: &str = "{dirtylog}";

/// The placeholder of the snapshot file at `index` (0-based) of `snapshot-file`: `{snapshot}`
/// for the first, `{snapshot2}` for the second, and so on.
pub fn snapshot_placeholder(index: usize) -> String {
    match index {
        0 => SNAPSHOT_PLACEHOLDER.to_string(),
        i => format!("{{snapshot{}}}", i + 1),
    }
}

/// The 0-based file index a placeholder's inside (`snapshot`, `snapshot2`, ...) stands for;
/// `None` for anything else (`snapshot1`, `snapshot02` and `snapshot0` included, so each file
/// has one spelling).
fn placeholder_index(inner: &str) -> Option<usize> {
    let digits = inner.strip_prefix("snapshot")?;
    if digits.is_empty() {
        return Some(0);
    }
    if digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits
        .parse::<usize>()
        .ok()
        .filter(|&n| n >= 2)
        .map(|n| n - 1)
}

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

    /// The restore run as a spec of its own, for [`judge`]: its checks and what to type, no
    /// guest to boot.
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
            SpecErrorKind::NothingChecked => write!(
                f,
                "the test checks no output; add at least one `expect` or `expect-anywhere`"
            ),
            SpecErrorKind::BadGuestName(v) => write!(
                f,
                "`guest` must be `linux` or a bare-metal guest's name (letters, digits, - and _), \
                 not `{v}`"
            ),
            SpecErrorKind::BadBool { key, value } => {
                write!(f, "`{key}` must be true or false, not `{value}`")
            }
            SpecErrorKind::NeedsGuest(k) => {
                write!(
                    f,
                    "`{k}` describes a guest; add `guest = linux` or `guest = <name>`"
                )
            }
            SpecErrorKind::NeedsLinux(k) => {
                write!(f, "`{k}` is only for `guest = linux`")
            }
            SpecErrorKind::BadKernel(v) => write!(
                f,
                "`kernel` must be one of Debian's kernels ({}), not `{v}`",
                debian::Kernel::names()
            ),
            SpecErrorKind::HypArgsNative => {
                write!(
                    f,
                    "`hyp-args` needs the hypervisor, but `native = true` runs without it"
                )
            }
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
            SpecErrorKind::BadDirtyLogExpect(v) => {
                write!(f, "`dirty-log-expect` is `pass` or `missed`, not `{v}`")
            }
            SpecErrorKind::RepeatedSnapshotFile(v) => {
                write!(f, "`snapshot-file` lists `{v}` twice")
            }
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
            SpecErrorKind::BadEscape(e) => write!(
                f,
                "unknown escape `{e}`; the escapes are \\n, \\r, \\t, \\\\ and \\xHH"
            ),
        }
    }
}

impl std::error::Error for SpecError {}

fn err(line: usize, kind: SpecErrorKind) -> SpecError {
    SpecError { line, kind }
}

/// The key as the `&'static str` from [`KEYS`], for error messages.
fn known_key(key: &str) -> Option<&'static str> {
    KEYS.iter().copied().find(|k| *k == key)
}

/// A `send`/`send-raw` value as bytes, its escapes resolved; the error names the bad escape.
pub fn unescape(value: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find('\\') {
        out.extend_from_slice(&rest.as_bytes()[..at]);
        let escape = &rest[at..];
        let (byte, len) = match escape.as_bytes().get(1) {
            Some(b'n') => (b'\n', 2),
            Some(b'r') => (b'\r', 2),
            Some(b't') => (b'\t', 2),
            Some(b'\\') => (b'\\', 2),
            Some(b'x') => {
                let hex = escape
                    .get(2..4)
                    .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()));
                match hex {
                    Some(hex) => (u8::from_str_radix(hex, 16).expect("two hex digits"), 4),
                    None => return Err(escape.chars().take(4).collect()),
                }
            }
            _ => return Err(escape.chars().take(2).collect()),
        };
        out.push(byte);
        rest = &escape[len..];
    }
    out.extend_from_slice(rest.as_bytes());
    Ok(out)
}

fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}

pub fn parse(name: &str, text: &str) -> Result<Spec, SpecError> {
    let mut spec = Spec {
        name: name.to_string(),
        variant: Variant::new(Vec::new()),
        smp: 1,
        mem: Size::from_mib(1024),
        machine_options: Vec::new(),
        qemu_args: Vec::new(),
        expect: Vec::new(),
        expect_anywhere: Vec::new(),
        expect_number: Vec::new(),
        send: Vec::new(),
        forbid: Vec::new(),
        exit: ExpectedExit::Code(0),
        timeout: Duration::from_secs(60),
        guest: None,
        hyp_args: String::new(),
        snapshot_files: Vec::new(),
        dirty_log_file: None,
        dirty_log_missed: false,
        restore: None,
    };
    let mut then_restore = false;
    let mut restore = RestorePhase {
        expect: Vec::new(),
        send: Vec::new(),
        forbid: Vec::new(),
        exit: ExpectedExit::Code(0),
        timeout: Duration::ZERO,
    };
    let mut restore_timeout = None;
    let mut restore_keys: Vec<(usize, &'static str)> = Vec::new();
    let mut then_restore_line = 0;
    let mut guest_name: Option<String> = None;
    let mut initramfs: Option<String> = None;
    let mut kernel: Option<debian::Kernel> = None;
    let mut guest_cpus: Option<u32> = None;
    let mut guest_mem: Option<Size> = None;
    let mut append: Option<String> = None;
    let mut native = false;
    let mut guest_keys: Vec<(usize, &'static str)> = Vec::new();
    let mut seen: Vec<&'static str> = Vec::new();
    let mut hyp_args_line = 0;
    let mut snapshot_file_line = 0;
    let mut dirty_log_line = 0;
    let mut dirty_log_expect_line = 0;
    let mut features = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let (key, value) = trimmed
            .split_once('=')
            .ok_or(err(line, SpecErrorKind::NoEquals))?;
        let key = known_key(key.trim())
            .ok_or_else(|| err(line, SpecErrorKind::UnknownKey(key.trim().to_string())))?;
        let value = unquote(value.trim());
        let repeatable = matches!(
            key,
            "features"
                | "machine"
                | "qemu-args"
                | "expect"
                | "expect-anywhere"
                | "expect-number"
                | "forbid"
                | "send"
                | "send-raw"
                | "restore-expect"
                | "restore-forbid"
                | "restore-send"
                | "restore-send-raw"
        );
        if !repeatable && seen.contains(&key) {
            return Err(err(line, SpecErrorKind::Repeated(key)));
        }
        seen.push(key);
        if value.is_empty() && key != "features" {
            return Err(err(line, SpecErrorKind::EmptyValue(key)));
        }
        let number = |value: &str| -> Result<u64, SpecError> {
            value.parse::<u64>().ok().filter(|&n| n > 0).ok_or_else(|| {
                err(
                    line,
                    SpecErrorKind::BadNumber {
                        key,
                        value: value.to_string(),
                    },
                )
            })
        };
        match key {
            "features" => features.extend(value.split(',').map(str::to_string)),
            "smp" => {
                spec.smp = u32::try_from(number(value)?).map_err(|_| {
                    err(
                        line,
                        SpecErrorKind::BadNumber {
                            key,
                            value: value.to_string(),
                        },
                    )
                })?
            }
            "mem" => {
                spec.mem = size::parse(value).map_err(|e| err(line, SpecErrorKind::BadSize(e)))?
            }
            "machine" => {
                for option in value.split(',').map(str::trim).filter(|o| !o.is_empty()) {
                    let (k, v) = option
                        .split_once('=')
                        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
                        .ok_or_else(|| {
                            err(line, SpecErrorKind::BadMachineOption(option.to_string()))
                        })?;
                    spec.machine_options.push((k.to_string(), v.to_string()));
                }
            }
            "qemu-args" => spec
                .qemu_args
                .extend(value.split_whitespace().map(str::to_string)),
            "expect" => spec.expect.push(value.to_string()),
            "send" | "send-raw" => {
                let bytes = typed(line, value, key == "send")?;
                let gate = Gate {
                    expects: spec.expect.len(),
                    anywhere: spec.expect_anywhere.len(),
                };
                spec.send.push((gate, bytes));
            }
            "hyp-args" => {
                spec.hyp_args = value.to_string();
                hyp_args_line = line;
            }
            "expect-anywhere" => spec.expect_anywhere.push(value.to_string()),
            "expect-number" => {
                let parsed = value
                    .rsplit_once(">=")
                    .map(|(text, n)| (text.trim(), n.trim()))
                    .filter(|(text, _)| !text.is_empty())
                    .and_then(|(text, n)| Some((text.to_string(), n.parse().ok()?)));
                let Some(parsed) = parsed else {
                    return Err(err(line, SpecErrorKind::BadExpectNumber(value.to_string())));
                };
                spec.expect_number.push(parsed);
            }
            "forbid" => spec.forbid.push(value.to_string()),
            "exit" => spec.exit = parse_exit(line, value)?,
            "timeout" => spec.timeout = Duration::from_secs(number(value)?),
            "snapshot-file" => {
                for name in value.split_whitespace() {
                    if !plain_file_name(name) {
                        return Err(err(line, SpecErrorKind::BadSnapshotFile(name.to_string())));
                    }
                    if spec.snapshot_files.iter().any(|n| n == name) {
                        return Err(err(
                            line,
                            SpecErrorKind::RepeatedSnapshotFile(name.to_string()),
                        ));
                    }
                    spec.snapshot_files.push(name.to_string());
                }
                snapshot_file_line = line;
            }
            "dirty-log-file" => {
                if !plain_file_name(value) {
                    return Err(err(line, SpecErrorKind::BadDirtyLogFile(value.to_string())));
                }
                spec.dirty_log_file = Some(value.to_string());
                dirty_log_line = line;
            }
            "dirty-log-expect" => {
                spec.dirty_log_missed = match value {
                    "pass" => false,
                    "missed" => true,
                    v => return Err(err(line, SpecErrorKind::BadDirtyLogExpect(v.to_string()))),
                };
                dirty_log_expect_line = line;
            }
            "then-restore" => {
                then_restore = parse_bool(line, key, value)?;
                then_restore_line = line;
            }
            "restore-expect" => restore.expect.push(value.to_string()),
            "restore-send" | "restore-send-raw" => {
                let bytes = typed(line, value, key == "restore-send")?;
                restore
                    .send
                    .push((Gate::expects(restore.expect.len()), bytes));
            }
            "restore-forbid" => restore.forbid.push(value.to_string()),
            "restore-exit" => restore.exit = parse_exit(line, value)?,
            "restore-timeout" => restore_timeout = Some(Duration::from_secs(number(value)?)),
            "guest" => {
                let valid = value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                if !valid {
                    return Err(err(line, SpecErrorKind::BadGuestName(value.to_string())));
                }
                guest_name = Some(value.to_string());
            }
            "initramfs" => initramfs = Some(value.to_string()),
            "kernel" => {
                kernel = Some(
                    debian::Kernel::from_name(value)
                        .ok_or_else(|| err(line, SpecErrorKind::BadKernel(value.to_string())))?,
                )
            }
            "guest-cpus" => {
                guest_cpus = Some(u32::try_from(number(value)?).map_err(|_| {
                    err(
                        line,
                        SpecErrorKind::BadNumber {
                            key,
                            value: value.to_string(),
                        },
                    )
                })?)
            }
            "guest-mem" => {
                guest_mem =
                    Some(size::parse(value).map_err(|e| err(line, SpecErrorKind::BadSize(e)))?)
            }
            "append" => append = Some(value.to_string()),
            "native" => native = parse_bool(line, key, value)?,
            _ => unreachable!("every key in KEYS is handled"),
        }
        if key.starts_with("restore-") {
            restore_keys.push((line, key));
        }
        if matches!(
            key,
            "initramfs" | "kernel" | "guest-cpus" | "guest-mem" | "append" | "native"
        ) {
            guest_keys.push((line, key));
        }
    }
    match guest_name {
        None => {
            if let Some(&(line, key)) = guest_keys.first() {
                return Err(err(line, SpecErrorKind::NeedsGuest(key)));
            }
        }
        Some(_) if native && !spec.hyp_args.is_empty() => {
            return Err(err(hyp_args_line, SpecErrorKind::HypArgsNative));
        }
        Some(name) => {
            let linux = name == "linux";
            let linux_only =
                (guest_keys.iter()).find(|(_, k)| matches!(*k, "initramfs" | "kernel"));
            if let (false, Some(&(line, key))) = (linux, linux_only) {
                return Err(err(line, SpecErrorKind::NeedsLinux(key)));
            }
            spec.guest = Some(GuestSpec {
                kind: if linux {
                    GuestKind::Linux {
                        kernel: kernel.unwrap_or_default(),
                        initramfs: initramfs.unwrap_or_else(|| "shell".to_string()),
                    }
                } else {
                    GuestKind::BareMetal(name)
                },
                cpus: guest_cpus.unwrap_or(1),
                mem: guest_mem.unwrap_or(Size::from_mib(if linux {
                    crate::guest::LINUX_MEM_MIB
                } else {
                    crate::guest::BARE_METAL_MEM_MIB
                })),
                append,
                native,
            });
        }
    }
    if spec.expect.is_empty() && spec.expect_anywhere.is_empty() && spec.expect_number.is_empty() {
        return Err(err(0, SpecErrorKind::NothingChecked));
    }
    if dirty_log_expect_line != 0 && spec.dirty_log_file.is_none() {
        return Err(err(dirty_log_expect_line, SpecErrorKind::NeedsDirtyLogFile));
    }
    let dirty_log_named = spec.hyp_args.contains(DIRTY_LOG_PLACEHOLDER);
    match (&spec.dirty_log_file, dirty_log_named) {
        (Some(_), false) => return Err(err(dirty_log_line, SpecErrorKind::UnusedDirtyLogFile)),
        (None, true) => return Err(err(hyp_args_line, SpecErrorKind::NeedsDirtyLogFile)),
        _ => {}
    }
    let used = placeholders_used(&spec.hyp_args.replace(DIRTY_LOG_PLACEHOLDER, ""))
        .map_err(|k| err(hyp_args_line, k))?;
    if let Some(&past) = used.iter().find(|&&i| i >= spec.snapshot_files.len())
        && !spec.snapshot_files.is_empty()
    {
        return Err(err(
            hyp_args_line,
            SpecErrorKind::PlaceholderPastFiles {
                placeholder: snapshot_placeholder(past),
                files: spec.snapshot_files.len(),
            },
        ));
    }
    if spec.snapshot_files.is_empty() {
        if !used.is_empty() {
            return Err(err(
                hyp_args_line,
                SpecErrorKind::NeedsSnapshotFile("{snapshot} in `hyp-args`"),
            ));
        }
        if then_restore {
            return Err(err(
                then_restore_line,
                SpecErrorKind::NeedsSnapshotFile("`then-restore`"),
            ));
        }
    }
    if then_restore {
        if spec.guest.as_ref().is_none_or(|g| g.native) {
            return Err(err(then_restore_line, SpecErrorKind::RestoreNeedsGuest));
        }
        if restore.expect.is_empty() {
            return Err(err(then_restore_line, SpecErrorKind::RestoreChecksNothing));
        }
        restore.timeout = restore_timeout.unwrap_or(spec.timeout);
        spec.restore = Some(restore);
    } else if let Some(&(line, key)) = restore_keys.first() {
        return Err(err(line, SpecErrorKind::NeedsThenRestore(key)));
    }
    if let Some((i, file)) =
        (spec.snapshot_files.iter().enumerate()).find(|(i, _)| !used.contains(i))
    {
        return Err(err(
            snapshot_file_line,
            SpecErrorKind::UnusedSnapshotFile {
                file: file.clone(),
                placeholder: snapshot_placeholder(i),
            },
        ));
    }
    spec.variant = Variant::new(features);
    Ok(spec)
}

/// The file indexes of the snapshot placeholders in `hyp_args`, sorted, each once; the error
/// names the first `{...}` (or lone brace) that is not one.
fn placeholders_used(hyp_args: &str) -> Result<Vec<usize>, SpecErrorKind> {
    let mut used = Vec::new();
    let mut rest = hyp_args;
    while let Some(at) = rest.find(['{', '}']) {
        let from = &rest[at..];
        let inner = from
            .strip_prefix('{')
            .and_then(|f| f.split_once('}'))
            .map(|(inner, _)| inner);
        let Some(index) = inner.and_then(placeholder_index) else {
            let word = from.split_whitespace().next().unwrap_or("");
            return Err(SpecErrorKind::UnknownPlaceholder(word.to_string()));
        };
        used.push(index);
        rest = &from[inner.map_or(0, str::len) + 2..];
    }
    used.sort_unstable();
    used.dedup();
    Ok(used)
}

/// The bytes a `send`-like key types: `value` unescaped, with a newline for a whole line.
fn typed(line: usize, value: &str, newline: bool) -> Result<Vec<u8>, SpecError> {
    let mut bytes = unescape(value).map_err(|e| err(line, SpecErrorKind::BadEscape(e)))?;
    if newline {
        bytes.push(b'\n');
    }
    Ok(bytes)
}

/// A file name for the test's scratch directory: no path, no hidden file, no character a
/// bootarg or shell would trip on.
fn plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

fn parse_exit(line: usize, value: &str) -> Result<ExpectedExit, SpecError> {
    match value {
        "nonzero" => Ok(ExpectedExit::NonZero),
        v => v
            .parse()
            .map(ExpectedExit::Code)
            .map_err(|_| err(line, SpecErrorKind::BadExit(v.to_string()))),
    }
}

fn parse_bool(line: usize, key: &'static str, value: &str) -> Result<bool, SpecError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        v => Err(err(
            line,
            SpecErrorKind::BadBool {
                key,
                value: v.to_string(),
            },
        )),
    }
}

/// How many of `spec.expect` appear in `output`, each after the previous one.
/// When a `send` is typed: once the first `expects` of `expect` have appeared in order and the
/// first `anywhere` of `expect-anywhere` anywhere (the lines above it in the file; an
/// `expect-anywhere` gate lets a test wait for two things whose order the guest does not fix).
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

    /// Whether `output` opens the gate.
    pub fn open(&self, spec: &Spec, output: &str) -> bool {
        self.expects <= expects_seen(spec, output)
            && spec.expect_anywhere[..self.anywhere.min(spec.expect_anywhere.len())]
                .iter()
                .all(|want| output.contains(want.as_str()))
    }
}

pub fn expects_seen(spec: &Spec, output: &str) -> usize {
    let mut from = 0;
    for (i, want) in spec.expect.iter().enumerate() {
        match output[from..].find(want.as_str()) {
            Some(at) => from += at + want.len(),
            None => return i,
        }
    }
    spec.expect.len()
}

/// Why the number after the last `text` in `output` is not at least `min`, if it is not.
fn number_short_of(output: &str, text: &str, min: u64) -> Option<String> {
    let Some(at) = output.rfind(text) else {
        return Some(format!("{text:?} not found"));
    };
    let after = output[at + text.len()..].trim_start_matches([' ', '\t']);
    let digits = &after[..after
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(after.len())];
    match digits.parse::<u64>() {
        Ok(n) if n >= min => None,
        Ok(n) => Some(format!("{text:?} {n}, expected at least {min}")),
        // All digits, so only too many of them: far above any bound.
        Err(_) if !digits.is_empty() => None,
        Err(_) => Some(format!("no number after the last {text:?}")),
    }
}

/// Why a run does not meet its spec; `None` means it passed.
pub fn judge(spec: &Spec, output: &str, outcome: Outcome) -> Option<String> {
    let mut missing = None;
    let mut from = 0;
    for (i, want) in spec.expect.iter().enumerate() {
        match output[from..].find(want.as_str()) {
            Some(at) => from += at + want.len(),
            None => {
                missing = Some(match i.checked_sub(1).map(|p| &spec.expect[p]) {
                    Some(previous) => format!("{want:?} not found after {previous:?}"),
                    None => format!("{want:?} not found"),
                });
                break;
            }
        }
    }
    if missing.is_none() {
        missing = spec
            .expect_anywhere
            .iter()
            .find(|want| !output.contains(want.as_str()))
            .map(|want| format!("{want:?} not found"));
    }
    if missing.is_none() {
        missing = spec
            .expect_number
            .iter()
            .find_map(|(text, min)| number_short_of(output, text, *min));
    }
    if outcome == Outcome::TimedOut {
        let secs = spec.timeout.as_secs();
        return Some(match missing {
            Some(m) => format!("timed out after {secs}s; {m}"),
            None => format!("timed out after {secs}s with all expected output seen"),
        });
    }
    if let Some(bad) = spec.forbid.iter().find(|bad| output.contains(bad.as_str())) {
        return Some(format!("forbidden output {bad:?} found"));
    }
    if let Some(m) = missing {
        return Some(m);
    }
    let Outcome::Exited(code) = outcome else {
        unreachable!("timeouts are handled above")
    };
    match spec.exit {
        ExpectedExit::Code(want) if code != want => {
            Some(format!("exit status {code}, expected {want}"))
        }
        ExpectedExit::NonZero if code == 0 => {
            Some("exit status 0, expected a failure status".to_string())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMP4: &str = r#"
# Four CPUs come online.
smp = 4
mem = 512M
machine = highmem=off
expect = cpu 0 online (MPIDR 0x
expect-anywhere = cpu 3 online
expect = all 4 CPUs online
forbid = panic at
timeout = 30
"#;

    #[test]
    fn a_full_spec_parses_with_defaults_for_the_rest() {
        let spec = parse("boot/smp4", SMP4).unwrap();
        assert_eq!(spec.name, "boot/smp4");
        assert_eq!(spec.smp, 4);
        assert_eq!(spec.mem, size::parse("512M").unwrap());
        assert_eq!(
            spec.machine_options,
            [("highmem".to_string(), "off".to_string())]
        );
        assert_eq!(spec.expect, ["cpu 0 online (MPIDR 0x", "all 4 CPUs online"]);
        assert_eq!(spec.expect_anywhere, ["cpu 3 online"]);
        assert_eq!(spec.forbid, ["panic at"]);
        assert_eq!(spec.exit, ExpectedExit::Code(0));
        assert_eq!(spec.timeout, Duration::from_secs(30));
        assert_eq!(spec.variant.to_string(), "default");
    }

    #[test]
    fn features_exit_quotes_and_qemu_args() {
        let spec = parse(
            "t",
            "features = test-panic\nexit = nonzero\nexpect = \" panic at \"\nqemu-args = -d  guest_errors\n",
        )
        .unwrap();
        assert_eq!(spec.variant.to_string(), "test-panic");
        assert_eq!(spec.exit, ExpectedExit::NonZero);
        assert_eq!(spec.expect, [" panic at "]);
        assert_eq!(spec.qemu_args, ["-d", "guest_errors"]);
        assert_eq!(
            parse("t", "exit = 3\nexpect = x").unwrap().exit,
            ExpectedExit::Code(3)
        );
    }

    #[test]
    fn mistakes_name_the_line_and_the_fix() {
        let kind = |text: &str| parse("t", text).unwrap_err();
        assert_eq!(
            kind("expect = x\nsmpp = 2"),
            err(2, SpecErrorKind::UnknownKey("smpp".into()))
        );
        assert_eq!(kind("expect x"), err(1, SpecErrorKind::NoEquals));
        assert_eq!(
            kind("smp = 1\nsmp = 2"),
            err(2, SpecErrorKind::Repeated("smp"))
        );
        assert_eq!(
            kind("smp = 0"),
            err(
                1,
                SpecErrorKind::BadNumber {
                    key: "smp",
                    value: "0".into()
                }
            )
        );
        assert!(matches!(kind("mem = 512").kind, SpecErrorKind::BadSize(_)));
        assert_eq!(
            kind("machine = gic"),
            err(1, SpecErrorKind::BadMachineOption("gic".into()))
        );
        assert_eq!(
            kind("exit = maybe"),
            err(1, SpecErrorKind::BadExit("maybe".into()))
        );
        assert_eq!(
            kind("expect ="),
            err(1, SpecErrorKind::EmptyValue("expect"))
        );
        assert_eq!(kind("smp = 2"), err(0, SpecErrorKind::NothingChecked));
        assert!(
            kind("expect = x\nsmpp = 2")
                .to_string()
                .starts_with("line 2: unknown key `smpp`")
        );
    }

    #[test]
    fn guest_keys_describe_a_vm_with_defaults_by_kind() {
        let spec = parse(
            "t",
            "guest = linux\ninitramfs = test\nguest-cpus = 2\nappend = \"quiet \"\nexpect = x\n",
        )
        .unwrap();
        assert_eq!(
            spec.guest,
            Some(GuestSpec {
                kind: GuestKind::Linux {
                    kernel: debian::Kernel::Host,
                    initramfs: "test".into()
                },
                cpus: 2,
                mem: Size::from_mib(512),
                append: Some("quiet ".into()),
                native: false,
            })
        );
        let bare = parse("t", "guest = hvc\nnative = true\nexpect = x\n")
            .unwrap()
            .guest
            .unwrap();
        assert_eq!(bare.kind, GuestKind::BareMetal("hvc".into()));
        assert_eq!(
            (bare.cpus, bare.mem, bare.native),
            (1, Size::from_mib(64), true)
        );
        assert_eq!(
            parse("t", "guest = linux\nexpect = x")
                .unwrap()
                .guest
                .unwrap()
                .kind,
            GuestKind::Linux {
                kernel: debian::Kernel::Host,
                initramfs: "shell".into()
            }
        );
        assert_eq!(parse("t", "expect = x").unwrap().guest, None);
    }

    #[test]
    fn a_linux_guest_names_its_debian_kernel() {
        let kernel = |text: &str| match parse("t", text).unwrap().guest.unwrap().kind {
            GuestKind::Linux { kernel, .. } => kernel,
            other => panic!("{other:?}"),
        };
        assert_eq!(kernel("guest = linux\nexpect = x"), debian::Kernel::Host);
        assert_eq!(
            kernel("guest = linux\nkernel = debian\nexpect = x"),
            debian::Kernel::Host
        );
        assert_eq!(
            kernel("guest = linux\nkernel = debian-trixie\nexpect = x"),
            debian::Kernel::Trixie
        );
        assert_eq!(
            kernel("kernel = debian-unstable\nguest = linux\nexpect = x"),
            debian::Kernel::Unstable
        );
        // The same test for two kernels: two guests, prepared separately.
        let trixie = parse("t", "guest = linux\nkernel = debian-trixie\nexpect = x").unwrap();
        let host = parse("t", "guest = linux\nexpect = x").unwrap();
        assert_ne!(trixie.guest.unwrap().kind, host.guest.unwrap().kind);
    }

    #[test]
    fn a_kernel_must_be_a_known_debian_kernel_of_a_linux_guest() {
        let kind = |text: &str| parse("t", text).unwrap_err();
        for bad in [
            "debian-sid",
            "trixie",
            "Debian",
            "/boot/vmlinuz",
            "debian-unstable x",
        ] {
            assert_eq!(
                kind(&format!("guest = linux\nkernel = {bad}\nexpect = x")),
                err(2, SpecErrorKind::BadKernel(bad.into())),
                "{bad}"
            );
        }
        assert_eq!(
            kind("guest = linux\nkernel = sid\nexpect = x").to_string(),
            "line 2: `kernel` must be one of Debian's kernels (debian, debian-trixie, \
             debian-unstable), not `sid`"
        );
        assert_eq!(
            kind("guest = hvc\nexpect = x\nkernel = debian-trixie"),
            err(3, SpecErrorKind::NeedsLinux("kernel"))
        );
        assert_eq!(
            kind("kernel = debian\nexpect = x"),
            err(1, SpecErrorKind::NeedsGuest("kernel"))
        );
        assert_eq!(
            kind("guest = linux\nkernel = debian\nkernel = debian\nexpect = x"),
            err(3, SpecErrorKind::Repeated("kernel"))
        );
        assert_eq!(
            kind("guest = linux\nkernel =\nexpect = x"),
            err(2, SpecErrorKind::EmptyValue("kernel"))
        );
    }

    #[test]
    fn send_waits_for_the_expects_above_it() {
        let spec = parse(
            "t",
            "send = early\nexpect = / #\nsend = echo hi\nexpect = hi\nsend = poweroff\n",
        )
        .unwrap();
        assert_eq!(
            spec.send,
            [
                (Gate::expects(0), b"early\n".to_vec()),
                (Gate::expects(1), b"echo hi\n".to_vec()),
                (Gate::expects(2), b"poweroff\n".to_vec())
            ]
        );
        assert_eq!(expects_seen(&spec, ""), 0);
        assert_eq!(expects_seen(&spec, "hi\n/ # "), 1);
        assert_eq!(expects_seen(&spec, "/ # echo hi\nhi\n"), 2);
    }

    #[test]
    fn send_can_wait_for_expect_anywhere_lines_above_it() {
        // A live snapshot's report and the workload's start come in either order.
        let spec = parse(
            "t",
            "expect = live rounds=\nexpect-anywhere = STARTED\nsend = stop\nexpect-anywhere = later\n",
        )
        .unwrap();
        let gate = spec.send[0].0;
        assert_eq!(
            gate,
            Gate {
                expects: 1,
                anywhere: 1
            }
        );
        assert!(!gate.open(&spec, "live rounds=9"));
        assert!(!gate.open(&spec, "STARTED"));
        assert!(gate.open(&spec, "STARTED\nlive rounds=9"));
        assert!(gate.open(&spec, "live rounds=9\nSTARTED"));
    }

    #[test]
    fn send_escapes_reach_control_characters_and_send_raw_adds_no_newline() {
        let spec = parse(
            "t",
            "expect = / #\nsend-raw = \\x1d\nsend = stats\\r\nsend-raw = \"a\\\\b\\tc\\n \"\nsend = \\x1D\\x00\n",
        )
        .unwrap();
        assert_eq!(
            spec.send,
            [
                (Gate::expects(1), vec![0x1d]),
                (Gate::expects(1), b"stats\r\n".to_vec()),
                (Gate::expects(1), b"a\\b\tc\n ".to_vec()),
                (Gate::expects(1), vec![0x1d, 0, b'\n'])
            ]
        );
        assert_eq!(
            unescape("no escapes: $((6*7))"),
            Ok(b"no escapes: $((6*7))".to_vec())
        );
        assert_eq!(
            unescape("caf\u{e9}\\x41"),
            Ok("caf\u{e9}A".as_bytes().to_vec())
        );
        for (bad, named) in [
            ("a\\q", "\\q"),
            ("tail\\", "\\"),
            ("\\x1", "\\x1"),
            ("\\xg0", "\\xg0"),
            ("\\x\u{e9}0", "\\x\u{e9}0"),
        ] {
            assert_eq!(unescape(bad), Err(named.to_string()), "{bad}");
        }
        let e = parse("t", "expect = x\nsend = \\e[A").unwrap_err();
        assert_eq!(e, err(2, SpecErrorKind::BadEscape("\\e".into())));
        assert!(e.to_string().contains("\\xHH"), "{e}");
    }

    #[test]
    fn expect_number_bounds_the_number_after_the_last_appearance() {
        let spec = parse("t", "expect-number = migration storm: >= 10000\n").unwrap();
        assert_eq!(
            spec.expect_number,
            [("migration storm:".to_string(), 10000)]
        );
        let judged = |out: &str| judge(&spec, out, Outcome::Exited(0));
        assert_eq!(judged("domU1: migration storm: 12345 pages moved\n"), None);
        assert_eq!(judged("migration storm:10000"), None);
        assert_eq!(
            judged("migration storm: 20000\nmigration storm: 9999 pages moved\n").unwrap(),
            "\"migration storm:\" 9999, expected at least 10000"
        );
        assert_eq!(
            judged("migration storm: off\n").unwrap(),
            "no number after the last \"migration storm:\""
        );
        assert_eq!(
            judged("nothing\n").unwrap(),
            "\"migration storm:\" not found"
        );
        assert_eq!(judged("migration storm: 99999999999999999999999"), None);
        for bad in ["x", "x >= many", ">= 5", "x > 5"] {
            assert_eq!(
                parse("t", &format!("expect-number = {bad}")).unwrap_err(),
                err(1, SpecErrorKind::BadExpectNumber(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn hyp_args_are_kept_whole_and_refused_for_native_guests() {
        let spec = parse(
            "t",
            "hyp-args = hyp.log=debug  hyp.migrate-storm=5\nexpect = x",
        )
        .unwrap();
        assert_eq!(spec.hyp_args, "hyp.log=debug  hyp.migrate-storm=5");
        assert_eq!(parse("t", "expect = x").unwrap().hyp_args, "");
        assert_eq!(
            parse(
                "t",
                "guest = linux\nnative = true\nhyp-args = hyp.log=debug\nexpect = x"
            )
            .unwrap_err(),
            err(3, SpecErrorKind::HypArgsNative)
        );
    }

    #[test]
    fn guest_keys_without_a_fitting_guest_are_errors() {
        let kind = |text: &str| parse("t", text).unwrap_err();
        assert_eq!(
            kind("expect = x\nguest-cpus = 2"),
            err(2, SpecErrorKind::NeedsGuest("guest-cpus"))
        );
        assert_eq!(
            kind("guest = hvc\ninitramfs = test\nexpect = x"),
            err(2, SpecErrorKind::NeedsLinux("initramfs"))
        );
        assert_eq!(
            kind("guest = ../x\nexpect = x"),
            err(1, SpecErrorKind::BadGuestName("../x".into()))
        );
        assert_eq!(
            kind("guest = linux\nnative = yes\nexpect = x"),
            err(
                2,
                SpecErrorKind::BadBool {
                    key: "native",
                    value: "yes".into()
                }
            )
        );
        assert!(matches!(
            kind("guest = linux\nguest-mem = 12\nexpect = x").kind,
            SpecErrorKind::BadSize(_)
        ));
    }

    const RESTORE: &str = "guest = linux
snapshot-file = run.snap
hyp-args = hyp.log=info hyp.snapshot={snapshot}@15000
expect = domU1: snapshot
timeout = 100
then-restore = true
restore-send = echo early
restore-expect = workload: total bad words 0
restore-send-raw = \\x1d
restore-expect = workload: PASS
restore-forbid = panic
restore-exit = nonzero
";

    #[test]
    fn then_restore_describes_a_second_run_from_the_snapshot_file() {
        let spec = parse("linux/snap", RESTORE).unwrap();
        assert_eq!(spec.snapshot_files, ["run.snap"]);
        assert_eq!(
            spec.hyp_args_with(&["/t/logs/linux/snap/run.snap"]),
            "hyp.log=info hyp.snapshot=/t/logs/linux/snap/run.snap@15000"
        );
        assert_eq!(
            spec.restore,
            Some(RestorePhase {
                expect: vec![
                    "workload: total bad words 0".into(),
                    "workload: PASS".into()
                ],
                send: vec![
                    (Gate::expects(0), b"echo early\n".to_vec()),
                    (Gate::expects(1), vec![0x1d])
                ],
                forbid: vec!["panic".into()],
                exit: ExpectedExit::NonZero,
                timeout: Duration::from_secs(100),
            })
        );
        let second = spec.restore_spec().unwrap();
        assert_eq!(second.name, "linux/snap (restore)");
        assert_eq!(second.expect, spec.restore.as_ref().unwrap().expect);
        assert_eq!(second.guest, None);
        assert_eq!(second.send, spec.restore.as_ref().unwrap().send);
        assert!(
            spec.send.is_empty(),
            "restore-send types in the restore run only"
        );
        let out = "workload: total bad words 0\nworkload: PASS\n";
        assert_eq!(judge(&second, out, Outcome::Exited(1)), None);
        assert_eq!(
            judge(&second, out, Outcome::Exited(0)).unwrap(),
            "exit status 0, expected a failure status"
        );
        assert_eq!(
            judge(&second, "workload: PASS\n", Outcome::Exited(1)).unwrap(),
            "\"workload: total bad words 0\" not found"
        );
        // The first run's checks are its own.
        assert_eq!(judge(&spec, "domU1: snapshot x", Outcome::Exited(0)), None);
        let timed = parse("t", &format!("{RESTORE}restore-timeout = 300\n")).unwrap();
        assert_eq!(timed.restore.unwrap().timeout, Duration::from_secs(300));
        // A snapshot file without a restore: the first run alone.
        let alone = parse(
            "t",
            "guest = linux\nsnapshot-file = a.snap\nhyp-args = hyp.snapshot={snapshot}@5\nexpect = x",
        )
        .unwrap();
        assert_eq!((alone.restore_spec(), alone.restore), (None, None));
    }

    #[test]
    fn restore_keys_need_their_context() {
        let kind = |text: &str| parse("t", text).unwrap_err();
        assert_eq!(
            kind("guest = linux\nhyp-args = hyp.snapshot={snapshot}@5\nexpect = x"),
            err(
                2,
                SpecErrorKind::NeedsSnapshotFile("{snapshot} in `hyp-args`")
            )
        );
        assert_eq!(
            kind("guest = linux\nthen-restore = true\nrestore-expect = y\nexpect = x"),
            err(2, SpecErrorKind::NeedsSnapshotFile("`then-restore`"))
        );
        assert_eq!(
            kind("guest = linux\nexpect = x\nrestore-expect = y"),
            err(3, SpecErrorKind::NeedsThenRestore("restore-expect"))
        );
        assert_eq!(
            kind("guest = linux\nexpect = x\nthen-restore = false\nrestore-exit = 0"),
            err(4, SpecErrorKind::NeedsThenRestore("restore-exit"))
        );
        assert_eq!(
            kind("snapshot-file = a\nthen-restore = true\nrestore-expect = y\nexpect = x"),
            err(2, SpecErrorKind::RestoreNeedsGuest)
        );
        assert_eq!(
            kind(
                "guest = linux\nnative = true\nsnapshot-file = a\nthen-restore = true\nrestore-expect = y\nexpect = x"
            ),
            err(4, SpecErrorKind::RestoreNeedsGuest)
        );
        assert_eq!(
            kind("guest = linux\nsnapshot-file = a\nthen-restore = true\nexpect = x"),
            err(3, SpecErrorKind::RestoreChecksNothing)
        );
        assert_eq!(
            kind("guest = linux\nsnapshot-file = a\nhyp-args = hyp.snapshot={snap}@5\nexpect = x"),
            err(3, SpecErrorKind::UnknownPlaceholder("{snap}@5".into()))
        );
        assert_eq!(
            kind("guest = linux\nthen-restore = yes\nexpect = x"),
            err(
                2,
                SpecErrorKind::BadBool {
                    key: "then-restore",
                    value: "yes".into()
                }
            )
        );
        for bad in ["../x", "a/b", ".hidden", "a,b", "a@1"] {
            assert_eq!(
                kind(&format!("snapshot-file = \"{bad}\"\nexpect = x")),
                err(1, SpecErrorKind::BadSnapshotFile(bad.into())),
                "{bad}"
            );
        }
        assert!(
            kind("guest = linux\nexpect = x\nrestore-forbid = y")
                .to_string()
                .contains("add `then-restore = true`")
        );
    }

    const CHAIN: &str = "guest = linux
snapshot-file = base.snap  d1.snap d2.snap
hyp-args = hyp.snapshot={snapshot}@12000,live hyp.snapshot={snapshot2}@16000,base={snapshot} hyp.snapshot={snapshot3}@20000,live,base={snapshot2}
expect = live diff rounds=
then-restore = true
restore-expect = restored from a snapshot chain
";

    #[test]
    fn a_dirty_log_file_is_named_by_dirtylog_in_hyp_args() {
        let spec = parse(
            "t",
            "guest = linux\nexpect = x\nhyp-args = hyp.dirty-harvest=100 hyp.dirty-log={dirtylog}\n\
             dirty-log-file = h.dlog",
        )
        .unwrap();
        assert_eq!(spec.dirty_log_file.as_deref(), Some("h.dlog"));
        assert!(spec.snapshot_files.is_empty());
        let kind = |text: &str| parse("t", text).unwrap_err().kind;
        assert_eq!(
            kind("guest = linux\nexpect = x\ndirty-log-file = h.dlog"),
            SpecErrorKind::UnusedDirtyLogFile
        );
        assert_eq!(
            kind("guest = linux\nexpect = x\nhyp-args = hyp.dirty-log={dirtylog}"),
            SpecErrorKind::NeedsDirtyLogFile
        );
        assert_eq!(
            kind(
                "guest = linux\nexpect = x\nhyp-args = hyp.dirty-log={dirtylog}\ndirty-log-file = ../h"
            ),
            SpecErrorKind::BadDirtyLogFile("../h".into())
        );
        assert_eq!(
            kind(
                "guest = linux\nexpect = x\nhyp-args = hyp.dirty-log={dirtylogs}\ndirty-log-file = h"
            ),
            SpecErrorKind::UnusedDirtyLogFile
        );
        assert!(!spec.dirty_log_missed);
        let missed = parse(
            "t",
            "guest = linux\nexpect = x\nhyp-args = hyp.dirty-log={dirtylog}\n\
             dirty-log-file = h\ndirty-log-expect = missed",
        )
        .unwrap();
        assert!(missed.dirty_log_missed);
        assert_eq!(
            kind("guest = linux\nexpect = x\ndirty-log-expect = missed"),
            SpecErrorKind::NeedsDirtyLogFile
        );
        assert_eq!(
            kind(
                "guest = linux\nexpect = x\nhyp-args = hyp.dirty-log={dirtylog}\n\
                 dirty-log-file = h\ndirty-log-expect = fail"
            ),
            SpecErrorKind::BadDirtyLogExpect("fail".into())
        );
    }

    #[test]
    fn snapshot_files_are_listed_by_spaces_and_named_snapshot_snapshot2_and_on() {
        let spec = parse("linux/chain", CHAIN).unwrap();
        assert_eq!(spec.snapshot_files, ["base.snap", "d1.snap", "d2.snap"]);
        assert_eq!(
            spec.hyp_args_with(&["/s/base.snap", "/s/d1.snap", "/s/d2.snap"]),
            "hyp.snapshot=/s/base.snap@12000,live hyp.snapshot=/s/d1.snap@16000,base=/s/base.snap \
             hyp.snapshot=/s/d2.snap@20000,live,base=/s/d1.snap"
        );
        assert_eq!(
            (0..4).map(snapshot_placeholder).collect::<Vec<_>>(),
            ["{snapshot}", "{snapshot2}", "{snapshot3}", "{snapshot4}"]
        );
        // The tenth file's placeholder is not read as the first's or the second's.
        let names: Vec<String> = (1..=10).map(|i| format!("f{i}")).collect();
        let args: Vec<String> = (0..10).map(snapshot_placeholder).collect();
        let ten = parse(
            "t",
            &format!(
                "guest = linux\nsnapshot-file = {}\nhyp-args = {}\nexpect = x",
                names.join(" "),
                args.join(" ")
            ),
        )
        .unwrap();
        let paths: Vec<String> = (1..=10).map(|i| format!("/p{i}")).collect();
        let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
        assert_eq!(ten.hyp_args_with(&paths), paths.join(" "));
        assert_eq!(
            placeholders_used("{snapshot2} {snapshot} {snapshot2}"),
            Ok(vec![0, 1])
        );
    }

    #[test]
    fn snapshot_placeholders_must_match_the_files_listed() {
        let kind = |text: &str| parse("t", text).unwrap_err();
        let two = "guest = linux\nsnapshot-file = a b\nexpect = x\nhyp-args = ";
        assert_eq!(
            kind(&format!(
                "{two}hyp.snapshot={{snapshot}}@1 hyp.snapshot={{snapshot3}}@2"
            )),
            err(
                4,
                SpecErrorKind::PlaceholderPastFiles {
                    placeholder: "{snapshot3}".into(),
                    files: 2
                }
            )
        );
        assert_eq!(
            kind(&format!("{two}hyp.snapshot={{snapshot}}@1")),
            err(
                2,
                SpecErrorKind::UnusedSnapshotFile {
                    file: "b".into(),
                    placeholder: "{snapshot2}".into()
                }
            )
        );
        for bad in [
            "{snapshot1}",
            "{snapshot0}",
            "{snapshot02}",
            "{snapshot2x}",
            "{snapshot",
            "}",
        ] {
            assert_eq!(
                kind(&format!("{two}{{snapshot}}{{snapshot2}} x={bad}")),
                err(4, SpecErrorKind::UnknownPlaceholder(bad.into())),
                "{bad}"
            );
        }
        assert_eq!(
            kind("guest = linux\nhyp-args = hyp.snapshot={snapshot2}@5\nexpect = x"),
            err(
                2,
                SpecErrorKind::NeedsSnapshotFile("{snapshot} in `hyp-args`")
            )
        );
        assert_eq!(
            kind("guest = linux\nsnapshot-file = a.snap b a.snap\nexpect = x"),
            err(2, SpecErrorKind::RepeatedSnapshotFile("a.snap".into()))
        );
        assert_eq!(
            kind("guest = linux\nsnapshot-file = a\nsnapshot-file = b\nexpect = x"),
            err(3, SpecErrorKind::Repeated("snapshot-file"))
        );
        let e = kind(&format!("{two}{{snapshot}}")).to_string();
        assert!(e.contains("never names it with {snapshot2}"), "{e}");
    }

    fn smp4() -> Spec {
        parse("boot/smp4", SMP4).unwrap()
    }

    const GOOD: &str = "cpu 0 online (MPIDR 0x0)\ncpu 3 online (MPIDR 0x3)\nall 4 CPUs online\n";

    #[test]
    fn expected_output_and_status_pass() {
        assert_eq!(judge(&smp4(), GOOD, Outcome::Exited(0)), None);
    }

    #[test]
    fn ordered_expectations_must_come_in_order() {
        let out = "all 4 CPUs online\ncpu 0 online (MPIDR 0x0)\ncpu 3 online\n";
        assert_eq!(
            judge(&smp4(), out, Outcome::Exited(0)).unwrap(),
            "\"all 4 CPUs online\" not found after \"cpu 0 online (MPIDR 0x\""
        );
        let out = "cpu 0 online (MPIDR 0x0)\nall 4 CPUs online\n";
        assert_eq!(
            judge(&smp4(), out, Outcome::Exited(0)).unwrap(),
            "\"cpu 3 online\" not found"
        );
    }

    #[test]
    fn forbidden_output_and_wrong_status_fail() {
        let out = format!("{GOOD}panic at hyp/src/main.rs:1:1\n");
        assert_eq!(
            judge(&smp4(), &out, Outcome::Exited(0)).unwrap(),
            "forbidden output \"panic at\" found"
        );
        assert_eq!(
            judge(&smp4(), GOOD, Outcome::Exited(1)).unwrap(),
            "exit status 1, expected 0"
        );
        let mut failing = smp4();
        failing.exit = ExpectedExit::NonZero;
        assert_eq!(judge(&failing, GOOD, Outcome::Exited(1)), None);
        assert_eq!(
            judge(&failing, GOOD, Outcome::Exited(0)).unwrap(),
            "exit status 0, expected a failure status"
        );
    }

    #[test]
    fn a_timeout_fails_even_with_the_right_output_and_names_what_is_missing() {
        assert_eq!(
            judge(&smp4(), GOOD, Outcome::TimedOut).unwrap(),
            "timed out after 30s with all expected output seen"
        );
        assert_eq!(
            judge(&smp4(), "cpu 0 online (MPIDR 0x0)\n", Outcome::TimedOut).unwrap(),
            "timed out after 30s; \"all 4 CPUs online\" not found after \"cpu 0 online (MPIDR 0x\""
        );
    }
}
