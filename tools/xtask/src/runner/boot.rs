//! One QEMU boot of a test: its output logged, console input typed as the output opens each
//! `send`'s gate, and the run judged against the spec.

use crate::machine::{Machine, command_line};
use crate::process::{self, Outcome};
use crate::spec::{self, Spec};
use anyhow::{Context, Result};
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// Boots `machine`, QEMU's output going to `log` after a header line with the command;
/// returns why the run failed, if it did.
pub(super) fn boot(
    qemu: &Path,
    spec: &Spec,
    machine: &Machine,
    log: &Path,
) -> Result<Option<String>> {
    let args = machine.args();
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut file = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let header = format!("# {}\n", command_line(qemu, &args));
    file.write_all(header.as_bytes())?;
    let mut child = Command::new(qemu)
        .args(&args)
        .stdin(if spec.send.is_empty() {
            Stdio::null()
        } else {
            Stdio::piped()
        })
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .with_context(|| format!("cannot start {}", qemu.display()))?;
    let mut sent = 0;
    let outcome = process::wait_polling(&mut child, Some(spec.timeout), |child| {
        if sent == spec.send.len() {
            return Ok(());
        }
        let bytes = std::fs::read(log).with_context(|| format!("cannot read {}", log.display()))?;
        let output = String::from_utf8_lossy(&bytes[header.len().min(bytes.len())..]);
        let stdin = child
            .stdin
            .as_mut()
            .expect("stdin is piped when there is input");
        while let Some((_, bytes)) = spec
            .send
            .get(sent)
            .filter(|(gate, _)| gate.open(spec, &output))
        {
            // A write error means QEMU is gone; its exit status tells the rest.
            let _ = stdin.write_all(bytes);
            let _ = stdin.flush();
            sent += 1;
        }
        Ok(())
    })?;
    let bytes = std::fs::read(log).with_context(|| format!("cannot read {}", log.display()))?;
    let output = String::from_utf8_lossy(&bytes[header.len().min(bytes.len())..]);
    let mut failure = spec::judge(spec, &output, outcome);
    if let (Some(f), Outcome::Exited(code)) = (&mut failure, outcome)
        && !f.starts_with("exit status")
    {
        f.push_str(&format!(" (exit status {code})"));
    }
    Ok(failure)
}
