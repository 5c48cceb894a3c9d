//! The host half of `cargo xtask test`: `cargo test --workspace` for every host-testable crate,
//! its output streamed as it comes, its per-binary result lines summed into the final count.

use crate::workspace::Workspace;
use anyhow::{Context, Result};
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub passed: u64,
    pub failed: u64,
}

/// Counts from a libtest summary such as
/// `test result: FAILED. 16 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; ...`.
pub fn parse_result_line(line: &str) -> Option<Tally> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let (_, counts) = rest.split_once(". ")?;
    let mut tally = Tally::default();
    let mut seen = 0;
    for part in counts.split(';') {
        let mut words = part.split_whitespace();
        let (Some(n), Some(what)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(n) = n.parse::<u64>() else { continue };
        match what {
            "passed" => tally.passed = n,
            "failed" => tally.failed = n,
            _ => continue,
        }
        seen += 1;
    }
    (seen == 2).then_some(tally)
}

/// Runs the host tests. A cargo failure that no result line accounts for (a compile error,
/// a crashed test binary) counts as one failed test, so it cannot go unnoticed in the total.
pub fn run(ws: &Workspace) -> Result<Tally> {
    println!("== host tests: cargo test --workspace");
    let mut child = ws
        .cargo()
        .args(["test", "--workspace"])
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run `cargo test`")?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut tally = Tally::default();
    let mut out = std::io::stdout();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading the output of `cargo test`")?;
        writeln!(out, "{line}")?;
        if let Some(t) = parse_result_line(&line) {
            tally.passed += t.passed;
            tally.failed += t.failed;
        }
    }
    let status = child.wait().context("waiting for `cargo test`")?;
    if !status.success() && tally.failed == 0 {
        println!(
            "FAIL host tests: `cargo test --workspace` failed ({status}) before reporting a failed test; see above"
        );
        tally.failed += 1;
    }
    println!(
        "== host tests: {} passed, {} failed",
        tally.passed, tally.failed
    );
    Ok(tally)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtest_summaries_are_counted() {
        assert_eq!(
            parse_result_line(
                "test result: ok. 17 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s"
            ),
            Some(Tally {
                passed: 17,
                failed: 0
            })
        );
        assert_eq!(
            parse_result_line(
                "test result: FAILED. 16 passed; 2 failed; 1 ignored; 0 measured; 0 filtered out; finished in 1.20s"
            ),
            Some(Tally {
                passed: 16,
                failed: 2
            })
        );
    }

    #[test]
    fn other_lines_are_not_counted() {
        assert_eq!(parse_result_line("test mm::tests::x ... ok"), None);
        assert_eq!(parse_result_line("running 17 tests"), None);
        assert_eq!(parse_result_line("test result: ok."), None);
        assert_eq!(
            parse_result_line("println: test result: ok. 1 passed; 0 failed"),
            None
        );
    }
}
