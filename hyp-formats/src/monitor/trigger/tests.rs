use super::*;
use alloc::format;

fn text(s: &str) -> ConsoleText {
    ConsoleText::parse(s).unwrap()
}

#[test]
fn when_is_a_time_or_a_console_text() {
    assert_eq!(Trigger::parse("0", 10), Ok(Trigger::At(0)));
    assert_eq!(Trigger::parse("10", 10), Ok(Trigger::At(10)));
    assert_eq!(
        Trigger::parse("after:WORKLOAD-STARTED", 10),
        Ok(Trigger::After(text("WORKLOAD-STARTED")))
    );
    // Anything printable but a comma, `@` and `:` included.
    assert_eq!(
        Trigger::parse("after:a@b:c=[1]", 10),
        Ok(Trigger::After(text("a@b:c=[1]")))
    );
    let long = "x".repeat(TEXT_MAX);
    assert_eq!(
        Trigger::parse(&format!("after:{long}"), 10),
        Ok(Trigger::After(text(&long)))
    );
}

#[test]
fn malformed_triggers_are_refused_with_the_reason() {
    let too_long = format!("after:{}", "x".repeat(TEXT_MAX + 1));
    let cases: &[(&str, &str)] = &[
        ("", "missing MS or after:TEXT"),
        ("after:", "missing TEXT after after:"),
        ("11", "`11` is out of range (0 to 10)"),
        ("soon", "`soon` is not a number"),
        ("after", "`after` is not a number"),
        (
            "after:tab\there",
            "text `tab\\there` may hold only printable ASCII",
        ),
        (
            "after:caf\u{e9}",
            "text `caf\u{e9}` may hold only printable ASCII",
        ),
        (&too_long, "is longer than 64 bytes"),
    ];
    for (when, want) in cases {
        let e = Trigger::parse(when, 10).expect_err(when);
        let got = format!("{e}");
        assert!(got.contains(want), "{when:?}: {got:?} lacks {want:?}");
    }
}

#[test]
fn triggers_show_in_the_log() {
    assert_eq!(format!("{}", Trigger::At(5)), "at 5 ms");
    assert_eq!(format!("{}", Trigger::After(text("GO"))), "after `GO`");
}
