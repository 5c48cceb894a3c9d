//! Waiting for a child (QEMU) with a deadline. QEMU gets SIGTERM first so it can restore the
//! terminal it put in raw mode; SIGKILL only if it ignores that.

use anyhow::{Context, Result};
use std::process::{Child, Command, ExitStatus};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Exit status used for a run that hit its timeout, as coreutils `timeout` does.
pub const TIMEOUT_STATUS: u8 = 124;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The exit status; 128 + N for death by signal N, as shells report it.
    Exited(i32),
    TimedOut,
}

impl Outcome {
    /// The status this xtask exits with to pass the outcome on.
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Exited(code) => u8::try_from(code).unwrap_or(1),
            Self::TimedOut => TIMEOUT_STATUS,
        }
    }
}

pub fn status_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

/// Waits for `child`, ending it when `timeout` passes.
pub fn wait(child: &mut Child, timeout: Option<Duration>) -> Result<Outcome> {
    wait_polling(child, timeout, |_| Ok(()))
}

/// [`wait`], calling `poll` with the child every few milliseconds while it runs (to feed it
/// input as its output asks for it, say).
pub fn wait_polling(
    child: &mut Child,
    timeout: Option<Duration>,
    mut poll: impl FnMut(&mut Child) -> Result<()>,
) -> Result<Outcome> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().context("waiting for QEMU")? {
            return Ok(Outcome::Exited(status_code(status)));
        }
        poll(child)?;
        if timeout.is_some_and(|t| start.elapsed() >= t) {
            terminate(child)?;
            return Ok(Outcome::TimedOut);
        }
        sleep(Duration::from_millis(20));
    }
}

fn terminate(child: &mut Child) -> Result<()> {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let grace = Instant::now();
    while grace.elapsed() < Duration::from_secs(3) {
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        sleep(Duration::from_millis(20));
    }
    child.kill().context("killing QEMU after its timeout")?;
    child.wait()?;
    Ok(())
}
