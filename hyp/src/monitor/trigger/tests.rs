use super::*;
use alloc::format;

fn text(s: &str) -> ConsoleText {
    ConsoleText::parse(s).unwrap()
}

/// Feeds `bytes` as VM `vm`'s output; returns what fired, in order.
fn feed(w: &mut ConsoleWatch<u32>, vm: usize, bytes: &[u8]) -> Vec<u32> {
    let mut out = Vec::new();
    for &b in bytes {
        w.byte(vm, b, |item| out.push(item));
    }
    out
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

#[test]
fn a_text_fires_once_when_its_last_byte_is_printed() {
    let mut w = ConsoleWatch::new(1);
    w.watch(0, text("READY"), 7).unwrap();
    assert_eq!(feed(&mut w, 0, b"init: not REA"), Vec::<u32>::new());
    assert_eq!(feed(&mut w, 0, b"D"), Vec::<u32>::new());
    assert_eq!(feed(&mut w, 0, b"Y"), vec![7]);
    assert!(w.is_empty());
    assert_eq!(feed(&mut w, 0, b"\nREADY\n"), Vec::<u32>::new());
}

#[test]
fn a_text_never_matches_across_a_line_break() {
    let mut w = ConsoleWatch::new(1);
    w.watch(0, text("AB"), 1).unwrap();
    assert!(feed(&mut w, 0, b"xA\nBx\r\nA\r\nB\n").is_empty());
    // A CR inside a line (as a tty's `\r\n`) belongs to the break, not the text.
    assert_eq!(feed(&mut w, 0, b"zzA\rB"), vec![1]);
}

#[test]
fn each_vm_has_its_own_console() {
    let mut w = ConsoleWatch::new(2);
    w.watch(1, text("GO"), 1).unwrap();
    w.watch(0, text("GO"), 0).unwrap();
    assert_eq!(feed(&mut w, 1, b"G"), Vec::<u32>::new());
    // VM 0's `O` does not complete VM 1's `G`.
    assert_eq!(feed(&mut w, 0, b"O"), Vec::<u32>::new());
    assert_eq!(feed(&mut w, 1, b"O"), vec![1]);
    assert_eq!(feed(&mut w, 0, b"GO"), vec![0]);
    assert!(w.watch(2, text("GO"), 2).is_none(), "no VM 3");
    assert_eq!(feed(&mut w, 5, b"GO"), Vec::<u32>::new());
}

#[test]
fn several_items_on_one_line_fire_in_watch_order() {
    let mut w = ConsoleWatch::new(1);
    w.watch(0, text("PASS-2"), 2).unwrap();
    w.watch(0, text("PASS-1"), 1).unwrap();
    w.watch(0, text("PASS-1"), 10).unwrap();
    w.watch(0, text("1"), 11).unwrap();
    assert_eq!(feed(&mut w, 0, b"workload: PASS-1 "), vec![1, 10, 11]);
    assert_eq!(feed(&mut w, 0, b"PASS-2\n"), vec![2]);
    assert!(w.is_empty());
}

#[test]
fn a_long_line_keeps_matching_at_its_end() {
    let mut w = ConsoleWatch::new(1);
    let long = "y".repeat(TEXT_MAX);
    w.watch(0, text(&long), 1).unwrap();
    w.watch(0, text("END"), 2).unwrap();
    let mut line = "x".repeat(1000);
    line.push_str(&"y".repeat(TEXT_MAX - 1));
    assert!(feed(&mut w, 0, line.as_bytes()).is_empty());
    assert_eq!(feed(&mut w, 0, b"y"), vec![1]);
    assert_eq!(feed(&mut w, 0, &[b'z'; 5000]), Vec::<u32>::new());
    assert_eq!(feed(&mut w, 0, b"END"), vec![2]);
}
