//! Reading a test file into a [`Spec`]: line by line into a [`Draft`], each value checked as it
//! is read, then the checks only the whole file can settle (a guest key needs a `guest`, every
//! snapshot file must be named in `hyp-args`, ...), in a fixed order so a file with several
//! mistakes always reports the same one first.

#[cfg(test)]
mod tests;

use super::error::{SpecError, SpecErrorKind, err};
use super::keys;
use super::placeholders::{DIRTY_LOG_PLACEHOLDER, placeholders_used, snapshot_placeholder};
use super::types::{ExpectedExit, Gate, GuestKind, GuestSpec, RestorePhase, Spec};
use super::values::{Entry, plain_file_name};
use crate::build::Variant;
use crate::debian;
use crate::size::Size;
use std::time::Duration;

pub fn parse(name: &str, text: &str) -> Result<Spec, SpecError> {
    let mut draft = Draft::new(name);
    for (index, raw) in text.lines().enumerate() {
        if let Some(entry) = Entry::read(index + 1, raw)? {
            draft.add(entry)?;
        }
    }
    draft.finish()
}

/// A test file read so far: the spec with what the lines set, what only the whole file can
/// complete (the guest, the restore run, the features), and where each key was.
struct Draft {
    spec: Spec,
    features: Vec<String>,
    guest: GuestKeys,
    restore: RestoreKeys,
    /// Every key read, with its line, in file order.
    keys: Vec<(usize, &'static str)>,
}

/// The guest keys as given.
#[derive(Default)]
struct GuestKeys {
    name: Option<String>,
    initramfs: Option<String>,
    kernel: Option<debian::Kernel>,
    cpus: Option<u32>,
    mem: Option<Size>,
    append: Option<String>,
    native: bool,
}

/// `then-restore` and the `restore-*` keys as given.
struct RestoreKeys {
    then_restore: bool,
    /// Its timeout is `restore-timeout`'s or the first run's, known at the end.
    phase: RestorePhase,
    timeout: Option<Duration>,
}

impl Draft {
    fn new(name: &str) -> Self {
        let spec = Spec {
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
        let restore = RestoreKeys {
            then_restore: false,
            phase: RestorePhase {
                expect: Vec::new(),
                send: Vec::new(),
                forbid: Vec::new(),
                exit: ExpectedExit::Code(0),
                timeout: Duration::ZERO,
            },
            timeout: None,
        };
        Self {
            spec,
            features: Vec::new(),
            guest: GuestKeys::default(),
            restore,
            keys: Vec::new(),
        }
    }

    /// The line of `key`, if the file has it (the first, for a repeatable key).
    fn line_of(&self, key: &str) -> Option<usize> {
        (self.keys.iter())
            .find(|(_, k)| *k == key)
            .map(|&(line, _)| line)
    }

    /// The first key, with its line, for which `which` holds.
    fn first_key(&self, which: impl Fn(&str) -> bool) -> Option<(usize, &'static str)> {
        self.keys.iter().copied().find(|(_, k)| which(k))
    }

    fn add(&mut self, e: Entry<'_>) -> Result<(), SpecError> {
        if !keys::repeatable(e.key) && self.line_of(e.key).is_some() {
            return Err(e.error(SpecErrorKind::Repeated(e.key)));
        }
        self.keys.push((e.line, e.key));
        // `features =` means none; every other key needs a value.
        if e.value.is_empty() && e.key != "features" {
            return Err(e.error(SpecErrorKind::EmptyValue(e.key)));
        }
        self.set(e)
    }

    fn set(&mut self, e: Entry<'_>) -> Result<(), SpecError> {
        let (spec, guest, restore) = (&mut self.spec, &mut self.guest, &mut self.restore);
        let text = || e.value.to_string();
        match e.key {
            "features" => self.features.extend(e.value.split(',').map(str::to_string)),
            "smp" => spec.smp = e.count()?,
            "mem" => spec.mem = e.size()?,
            "machine" => spec.machine_options.extend(e.machine_options()?),
            "qemu-args" => (spec.qemu_args).extend(e.value.split_whitespace().map(str::to_string)),
            "expect" => spec.expect.push(text()),
            "send" | "send-raw" => {
                let bytes = e.typed(e.key == "send")?;
                let gate = Gate {
                    expects: spec.expect.len(),
                    anywhere: spec.expect_anywhere.len(),
                };
                spec.send.push((gate, bytes));
            }
            "hyp-args" => spec.hyp_args = text(),
            "expect-anywhere" => spec.expect_anywhere.push(text()),
            "expect-number" => spec.expect_number.push(e.expect_number()?),
            "forbid" => spec.forbid.push(text()),
            "exit" => spec.exit = e.exit()?,
            "timeout" => spec.timeout = Duration::from_secs(e.number()?),
            "snapshot-file" => add_snapshot_files(spec, e)?,
            "dirty-log-file" => spec.dirty_log_file = Some(dirty_log_file(e)?),
            "dirty-log-expect" => spec.dirty_log_missed = e.dirty_log_missed()?,
            "then-restore" => restore.then_restore = e.bool()?,
            "restore-expect" => restore.phase.expect.push(text()),
            "restore-send" | "restore-send-raw" => {
                let bytes = e.typed(e.key == "restore-send")?;
                let gate = Gate::expects(restore.phase.expect.len());
                restore.phase.send.push((gate, bytes));
            }
            "restore-forbid" => restore.phase.forbid.push(text()),
            "restore-exit" => restore.phase.exit = e.exit()?,
            "restore-timeout" => restore.timeout = Some(Duration::from_secs(e.number()?)),
            "guest" => guest.name = Some(e.guest_name()?),
            "initramfs" => guest.initramfs = Some(text()),
            "kernel" => guest.kernel = Some(e.kernel()?),
            "guest-cpus" => guest.cpus = Some(e.count()?),
            "guest-mem" => guest.mem = Some(e.size()?),
            "append" => guest.append = Some(text()),
            "native" => guest.native = e.bool()?,
            _ => unreachable!("every key in KEYS is handled"),
        }
        Ok(())
    }

    /// The spec, once the checks that need the whole file pass.
    fn finish(mut self) -> Result<Spec, SpecError> {
        self.spec.guest = self.guest_spec()?;
        let spec = &self.spec;
        if spec.expect.is_empty()
            && spec.expect_anywhere.is_empty()
            && spec.expect_number.is_empty()
        {
            return Err(err(0, SpecErrorKind::NothingChecked));
        }
        self.check_dirty_log()?;
        let used = self.snapshot_placeholders()?;
        self.spec.restore = self.restore_phase()?;
        self.check_snapshot_files_named(&used)?;
        self.spec.variant = Variant::new(self.features);
        Ok(self.spec)
    }

    /// The guest VM, if `guest` names one, with the defaults of its kind.
    fn guest_spec(&self) -> Result<Option<GuestSpec>, SpecError> {
        let g = &self.guest;
        let Some(name) = &g.name else {
            return match self.first_key(keys::describes_guest) {
                Some((line, key)) => Err(err(line, SpecErrorKind::NeedsGuest(key))),
                None => Ok(None),
            };
        };
        if g.native && !self.spec.hyp_args.is_empty() {
            let line = self.line_of("hyp-args").unwrap_or(0);
            return Err(err(line, SpecErrorKind::HypArgsNative));
        }
        let linux = name == "linux";
        if let (false, Some((line, key))) = (linux, self.first_key(keys::linux_only)) {
            return Err(err(line, SpecErrorKind::NeedsLinux(key)));
        }
        Ok(Some(GuestSpec {
            kind: if linux {
                GuestKind::Linux {
                    kernel: g.kernel.unwrap_or_default(),
                    initramfs: g.initramfs.clone().unwrap_or_else(|| "shell".to_string()),
                }
            } else {
                GuestKind::BareMetal(name.clone())
            },
            cpus: g.cpus.unwrap_or(1),
            mem: g.mem.unwrap_or(Size::from_mib(if linux {
                crate::guest::LINUX_MEM_MIB
            } else {
                crate::guest::BARE_METAL_MEM_MIB
            })),
            append: g.append.clone(),
            native: g.native,
        }))
    }

    /// A dirty log file is named in `hyp-args`, and the placeholder has a file.
    fn check_dirty_log(&self) -> Result<(), SpecError> {
        let file = &self.spec.dirty_log_file;
        if let Some(line) = self.line_of("dirty-log-expect")
            && file.is_none()
        {
            return Err(err(line, SpecErrorKind::NeedsDirtyLogFile));
        }
        let named = self.spec.hyp_args.contains(DIRTY_LOG_PLACEHOLDER);
        let line = |key| self.line_of(key).unwrap_or(0);
        match (file, named) {
            (Some(_), false) => Err(err(
                line("dirty-log-file"),
                SpecErrorKind::UnusedDirtyLogFile,
            )),
            (None, true) => Err(err(line("hyp-args"), SpecErrorKind::NeedsDirtyLogFile)),
            _ => Ok(()),
        }
    }

    /// The indexes of the snapshot files `hyp-args` names, each of which must be listed.
    fn snapshot_placeholders(&self) -> Result<Vec<usize>, SpecError> {
        let line = self.line_of("hyp-args").unwrap_or(0);
        let used = placeholders_used(&self.spec.hyp_args.replace(DIRTY_LOG_PLACEHOLDER, ""))
            .map_err(|word| err(line, SpecErrorKind::UnknownPlaceholder(word)))?;
        let files = self.spec.snapshot_files.len();
        if let Some(&past) = used.iter().find(|&&i| i >= files)
            && files > 0
        {
            let placeholder = snapshot_placeholder(past);
            return Err(err(
                line,
                SpecErrorKind::PlaceholderPastFiles { placeholder, files },
            ));
        }
        if files == 0 && !used.is_empty() {
            let needs = SpecErrorKind::NeedsSnapshotFile("{snapshot} in `hyp-args`");
            return Err(err(line, needs));
        }
        Ok(used)
    }

    /// The restore run, with `then-restore = true`; the `restore-*` keys need that.
    fn restore_phase(&self) -> Result<Option<RestorePhase>, SpecError> {
        let restore = &self.restore;
        if !restore.then_restore {
            return match self.first_key(keys::checks_restore) {
                Some((line, key)) => Err(err(line, SpecErrorKind::NeedsThenRestore(key))),
                None => Ok(None),
            };
        }
        let line = self.line_of("then-restore").unwrap_or(0);
        if self.spec.snapshot_files.is_empty() {
            return Err(err(
                line,
                SpecErrorKind::NeedsSnapshotFile("`then-restore`"),
            ));
        }
        if self.spec.guest.as_ref().is_none_or(|g| g.native) {
            return Err(err(line, SpecErrorKind::RestoreNeedsGuest));
        }
        if restore.phase.expect.is_empty() {
            return Err(err(line, SpecErrorKind::RestoreChecksNothing));
        }
        Ok(Some(RestorePhase {
            timeout: restore.timeout.unwrap_or(self.spec.timeout),
            ..restore.phase.clone()
        }))
    }

    /// Every snapshot file is named in `hyp-args` (`used`): nothing else could write it.
    fn check_snapshot_files_named(&self, used: &[usize]) -> Result<(), SpecError> {
        let mut files = self.spec.snapshot_files.iter().enumerate();
        let Some((i, file)) = files.find(|(i, _)| !used.contains(i)) else {
            return Ok(());
        };
        let line = self.line_of("snapshot-file").unwrap_or(0);
        let unused = SpecErrorKind::UnusedSnapshotFile {
            file: file.clone(),
            placeholder: snapshot_placeholder(i),
        };
        Err(err(line, unused))
    }
}

/// `snapshot-file`'s names, in order, each a plain file name listed once.
fn add_snapshot_files(spec: &mut Spec, e: Entry<'_>) -> Result<(), SpecError> {
    for name in e.value.split_whitespace() {
        if !plain_file_name(name) {
            return Err(e.error(SpecErrorKind::BadSnapshotFile(name.to_string())));
        }
        if spec.snapshot_files.iter().any(|n| n == name) {
            return Err(e.error(SpecErrorKind::RepeatedSnapshotFile(name.to_string())));
        }
        spec.snapshot_files.push(name.to_string());
    }
    Ok(())
}

/// `dirty-log-file`'s name, a plain file name.
fn dirty_log_file(e: Entry<'_>) -> Result<String, SpecError> {
    if !plain_file_name(e.value) {
        return Err(e.error(SpecErrorKind::BadDirtyLogFile(e.value.to_string())));
    }
    Ok(e.value.to_string())
}
