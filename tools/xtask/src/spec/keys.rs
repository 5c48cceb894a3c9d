//! The keys a test file may use, and which of them a test may repeat or that only make sense
//! with a guest or a restore run. An unknown key is an error, so a typo cannot make a test
//! silently weaker.

pub const KEYS: &[&str] = &[
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

/// The key as the `&'static str` from [`KEYS`], for error messages.
pub fn known_key(key: &str) -> Option<&'static str> {
    KEYS.iter().copied().find(|k| *k == key)
}

/// Keys that may be given more than once: each adds to a list.
pub fn repeatable(key: &str) -> bool {
    matches!(
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
    )
}

/// Keys that describe the guest VM, so they need a `guest`.
pub fn describes_guest(key: &str) -> bool {
    matches!(
        key,
        "initramfs" | "kernel" | "guest-cpus" | "guest-mem" | "append" | "native"
    )
}

/// Guest keys that only a Linux guest takes.
pub fn linux_only(key: &str) -> bool {
    matches!(key, "initramfs" | "kernel")
}

/// Keys that check the restore run, so they need `then-restore = true`.
pub fn checks_restore(key: &str) -> bool {
    key.starts_with("restore-")
}
