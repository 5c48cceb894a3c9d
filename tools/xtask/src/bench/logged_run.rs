//! A benchmark's QEMU run: made repeatable (instruction-counted time, fixed seeds and clock),
//! its output logged to a file and read while it runs, to stop it once the figure it is for is
//! out and to type console input at the right moment.

use crate::machine::{Machine, command_line};
use crate::process::{self, Outcome};
use anyhow::{Context, Result, bail};
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Wall-clock limit of one benchmark boot; -icount makes QEMU slower than a normal run.
const BOOT_TIMEOUT: Duration = Duration::from_secs(600);

/// The machine options and arguments that make a run repeatable: instruction-counted time, no
/// random DTB seeds, a fixed RNG seed and a fixed wall clock that follows the virtual one.
pub(super) fn deterministic(machine: &mut Machine) {
    machine.icount = true;
    machine
        .machine_options
        .push(("dtb-randomness".into(), "off".into()));
    machine.extra.extend(
        ["-seed", "1", "-rtc", "base=2024-01-01T00:00:00,clock=vm"]
            .into_iter()
            .map(String::from),
    );
}

/// Runs `machine` to completion, or until its output contains one of the `stop` texts, with
/// its output in `log`; returns the output.
pub(super) fn run_logged(
    qemu_bin: &Path,
    machine: &Machine,
    log: &Path,
    stop: &[&str],
) -> Result<String> {
    run_logged_within(qemu_bin, machine, log, stop, BOOT_TIMEOUT, None)
}

/// Bytes for QEMU's standard input (the console), written once the output shows `after`.
/// Written at QEMU's start they were lost before they reached a guest; written once the
/// hypervisor is up (and before the guest runs), they wait in QEMU's UART until the guest
/// reads them, which keeps a deterministic run deterministic. `before` in the output by then
/// means they came too late for that: the run fails rather than measure a wall-clock delay.
#[derive(Clone, Copy, Debug)]
pub(super) struct Input<'a> {
    pub(super) after: &'a str,
    pub(super) before: &'a str,
    pub(super) bytes: &'a [u8],
}

/// [`run_logged`] with another wall-clock limit than [`BOOT_TIMEOUT`], and `input` for the
/// console if given.
pub(super) fn run_logged_within(
    qemu_bin: &Path,
    machine: &Machine,
    log: &Path,
    stop: &[&str],
    timeout: Duration,
    input: Option<Input<'_>>,
) -> Result<String> {
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let args = machine.args();
    eprintln!("+ {}", command_line(qemu_bin, &args));
    let file =
        std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let mut child = Command::new(qemu_bin)
        .args(&args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .with_context(|| format!("cannot start {}", qemu_bin.display()))?;
    // Held open until QEMU ends: the end of its standard input would end its console input.
    let mut stdin = child.stdin.take();
    let mut pending = input;
    let mut stopped = false;
    let outcome = process::wait_polling(&mut child, Some(timeout), |child| {
        if stopped || (stop.is_empty() && pending.is_none()) {
            return Ok(());
        }
        let out = String::from_utf8_lossy(&std::fs::read(log)?).into_owned();
        if let Some(i) = pending.filter(|i| out.contains(i.after)) {
            pending = None;
            if out.contains(i.before) {
                bail!(
                    "the console input was due before `{}`, which is out already (host too slow?); see {}",
                    i.before,
                    log.display()
                );
            }
            let pipe = stdin.as_mut().expect("stdin is piped when there is input");
            pipe.write_all(i.bytes)
                .and_then(|()| pipe.flush())
                .context("cannot write QEMU's standard input")?;
        }
        if !stop.is_empty() && stop.iter().any(|t| out.contains(t)) {
            stopped = true;
            child.kill().context("cannot stop QEMU")?;
        }
        Ok(())
    });
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
    };
    drop(stdin);
    let output = String::from_utf8_lossy(&std::fs::read(log)?).into_owned();
    match outcome {
        Outcome::Exited(0) => Ok(output),
        Outcome::Exited(_) if stopped => Ok(output),
        Outcome::Exited(code) => bail!("QEMU exited with status {code}; see {}", log.display()),
        Outcome::TimedOut => bail!(
            "QEMU did not finish in {}s; see {}",
            timeout.as_secs(),
            log.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// the first line of its standard input, then waits for that input to end.
    fn fake_qemu(dir: &Path, name: &str, first: &str) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let script = dir.join(name);
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nprintf '{first}'\nread line\necho \"domU1| $line\"\ncat >/dev/null\n"
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        script
    }

    #[test]
    fn console_input_is_written_after_its_text_and_refused_when_late() {
        let dir = std::env::temp_dir().join(format!("xtask-bench-input-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let machine = Machine::new(dir.join("unused.bin"));
        let input = Input {
            after: "hyp up",
            before: "restored",
            bytes: b"echo hi\n",
        };
        let run = |qemu: &Path, log: &str| {
            let timeout = Duration::from_secs(20);
            run_logged_within(
                qemu,
                &machine,
                &dir.join(log),
                &["| echo hi"],
                timeout,
                Some(input),
            )
        };
        let out = run(&fake_qemu(&dir, "on-time", "hyp up\\n"), "on-time.log").unwrap();
        assert!(out.contains("domU1| echo hi"), "{out}");
        let late = run(&fake_qemu(&dir, "late", "hyp up\\nrestored\\n"), "late.log").unwrap_err();
        assert!(format!("{late:#}").contains("`restored`"), "{late:#}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
