//! Whether a run met its test: the expected output in order, the output expected anywhere,
//! the numbers bounded, no forbidden output, the exit status; else the first reason it did
//! not, worded for the one FAIL line a test gets.

use super::types::{ExpectedExit, Spec};
use crate::process::Outcome;

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
    use crate::spec::error::{SpecErrorKind, err};
    use crate::spec::examples::SMP4;
    use crate::spec::parse;
    use crate::spec::types::{Gate, RestorePhase};
    use std::time::Duration;

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
