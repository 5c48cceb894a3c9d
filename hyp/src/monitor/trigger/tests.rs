use super::*;

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
