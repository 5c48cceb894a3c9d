use super::*;
use crate::monitor::select::VmNumber;
use crate::monitor::trigger::Trigger;
use alloc::format;
use alloc::string::String;
use alloc::vec;

fn vm(n: u16) -> VmSelector {
    VmSelector::Number(VmNumber::new(n).unwrap())
}

fn path(s: &str) -> HostPath {
    HostPath::new(s).unwrap()
}

fn ok(bootargs: &str) -> Schedule {
    let (s, errors) = schedule_from_bootargs(bootargs);
    assert!(errors.is_empty(), "{bootargs}: {errors:?}");
    s
}

/// The actions due at a time, as (ms, command).
fn timed(s: &Schedule) -> Vec<(u64, Command)> {
    s.timed()
        .map(|t| match &t.when {
            Trigger::At(ms) => (*ms, t.command.clone()),
            Trigger::After(text) => panic!("after `{}`", text.as_str()),
        })
        .collect()
}

fn after(text: &str) -> Trigger {
    Trigger::After(crate::monitor::trigger::ConsoleText::parse(text).unwrap())
}

fn snap(file: &str, live: bool, base: Option<&str>, sel: VmSelector) -> Command {
    Command::Snapshot(SnapshotRequest {
        file: path(file),
        live,
        base: base.map(path),
        vm: sel,
    })
}

#[test]
fn nothing_asked_is_an_empty_schedule() {
    for args in [
        "",
        "console=ttyAMA0 earlycon",
        "hyp.log=debug",
        "hyp.log=loud",
        "xhyp.pause=1",
    ] {
        assert_eq!(ok(args), Schedule::default(), "{args}");
    }
}

#[test]
fn timed_actions() {
    let cases: &[(&str, u64, Command)] = &[
        (
            "hyp.snapshot=a.snap@5000",
            5000,
            snap("a.snap", false, None, vm(1)),
        ),
        (
            "hyp.snapshot=a.snap@0,live",
            0,
            snap("a.snap", true, None, vm(1)),
        ),
        (
            "hyp.snapshot=d.snap@7,base=a.snap,live,vm=domU2",
            7,
            snap(
                "d.snap",
                true,
                Some("a.snap"),
                VmSelector::Name("domU2".into()),
            ),
        ),
        (
            "hyp.snapshot=/x/a@b@9",
            9,
            snap("/x/a@b", false, None, vm(1)),
        ),
        ("hyp.pause=100", 100, Command::Pause(vm(1))),
        ("hyp.pause=100,vm=2", 100, Command::Pause(vm(2))),
        ("hyp.resume=1000000000", MS_MAX, Command::Resume(vm(1))),
        ("hyp.stats=42", 42, Command::Stats(vm(1))),
        (
            "hyp.migrate=512@300,vm=3",
            300,
            Command::Migrate {
                pages: 512,
                vm: vm(3),
            },
        ),
        (
            "hyp.dirty=start@10",
            10,
            Command::Dirty {
                op: DirtyOp::Start,
                vm: vm(1),
            },
        ),
        (
            "hyp.dirty=stats@20",
            20,
            Command::Dirty {
                op: DirtyOp::Stats,
                vm: vm(1),
            },
        ),
        (
            "hyp.dirty=stop@30,vm=domU1",
            30,
            Command::Dirty {
                op: DirtyOp::Stop,
                vm: VmSelector::Name("domU1".into()),
            },
        ),
    ];
    for (arg, at, cmd) in cases {
        let s = ok(arg);
        assert_eq!(timed(&s), [(*at, cmd.clone())], "{arg}");
    }
}

#[test]
fn modes() {
    let s = ok(
        "hyp.migrate-storm=50 hyp.dirty-harvest=10,vm=2 hyp.dirty-check=1 hyp.dirty-log=/t/h@1.dlog",
    );
    assert_eq!(
        s.dirty_log.as_ref().map(|p| p.as_str()),
        Some("/t/h@1.dlog")
    );
    assert_eq!(
        s.migrate_storm,
        Some(Storm {
            pages_per_ms: 50,
            vm: vm(1),
            start: Trigger::At(0),
        })
    );
    assert_eq!(
        s.dirty_harvest,
        Some(Harvest {
            every_ms: 10,
            vm: vm(2),
            start: Trigger::At(0),
        })
    );
    assert!(s.dirty_check);
    assert!(s.is_empty());
    // The last of a repeated mode wins, as with hyp.log=.
    let s = ok(
        "hyp.dirty-check=1 hyp.dirty-check=0 hyp.migrate-storm=1 hyp.migrate-storm=1000000,vm=domU1",
    );
    assert!(!s.dirty_check);
    assert_eq!(
        s.migrate_storm,
        Some(Storm {
            pages_per_ms: STORM_MAX,
            vm: VmSelector::Name("domU1".into()),
            start: Trigger::At(0),
        })
    );
}

#[test]
fn a_snapshot_chain_comes_out_in_time_order() {
    let mut s = ok(
        "hyp.snapshot=c@6000,base=b console=ttyAMA0 hyp.snapshot=a@2000 hyp.pause=2000 \
         hyp.snapshot=b@4000,base=a hyp.resume=2000",
    );
    assert_eq!(s.len(), 5);
    let shown: Vec<String> = s.timed().map(|t| format!("{t}")).collect();
    assert_eq!(
        shown,
        [
            "at 2000 ms: snapshot a 1",
            "at 2000 ms: pause 1",
            "at 2000 ms: resume 1",
            "at 4000 ms: snapshot b --base a 1",
            "at 6000 ms: snapshot c --base b 1",
        ]
    );
    assert_eq!(s.next_due_ms(), Some(2000));
    assert_eq!(s.take_due(1999), None);
    // Same time: bootarg order.
    assert_eq!(
        s.take_due(2000).map(|t| t.command),
        Some(snap("a", false, None, vm(1)))
    );
    assert_eq!(
        s.take_due(2000).map(|t| t.command),
        Some(Command::Pause(vm(1)))
    );
    assert_eq!(
        s.take_due(2000).map(|t| t.command),
        Some(Command::Resume(vm(1)))
    );
    assert_eq!(s.take_due(2000), None);
    assert_eq!(s.next_due_ms(), Some(4000));
    // A late check takes everything overdue, in order.
    assert_eq!(
        s.take_due(u64::MAX).map(|t| t.when),
        Some(Trigger::At(4000))
    );
    assert_eq!(
        s.take_due(u64::MAX).map(|t| t.command),
        Some(snap("c", false, Some("b"), vm(1)))
    );
    assert_eq!(s.take_due(u64::MAX), None);
    assert_eq!(s.next_due_ms(), None);
}

#[test]
fn malformed_values_are_reported_and_skipped() {
    let cases: &[(&str, &str)] = &[
        (
            "hyp.pasue=1",
            "ignoring bootarg `hyp.pasue=1`: unknown key (known: hyp.log hyp.snapshot hyp.pause hyp.resume hyp.migrate hyp.dirty hyp.stats hyp.migrate-storm hyp.dirty-harvest hyp.dirty-check hyp.dirty-log)",
        ),
        (
            "hyp.pause",
            "ignoring bootarg `hyp.pause`: unknown key (known: hyp.log hyp.snapshot hyp.pause hyp.resume hyp.migrate hyp.dirty hyp.stats hyp.migrate-storm hyp.dirty-harvest hyp.dirty-check hyp.dirty-log)",
        ),
        (
            "hyp.pause=",
            "ignoring bootarg `hyp.pause=`: missing MS or after:TEXT (want hyp.pause=WHEN[,vm=VM])",
        ),
        (
            "hyp.pause=5s",
            "ignoring bootarg `hyp.pause=5s`: `5s` is not a number (want hyp.pause=WHEN[,vm=VM])",
        ),
        (
            "hyp.pause=1000000001",
            "ignoring bootarg `hyp.pause=1000000001`: `1000000001` is out of range (0 to 1000000000) (want hyp.pause=WHEN[,vm=VM])",
        ),
        (
            "hyp.pause=1,vm=0",
            "ignoring bootarg `hyp.pause=1,vm=0`: `0` is not a VM (want a number from 1 to 65535 or a name like domU1) (want hyp.pause=WHEN[,vm=VM])",
        ),
        (
            "hyp.pause=1,vm=1,vm=2",
            "ignoring bootarg `hyp.pause=1,vm=1,vm=2`: vm= given twice (want hyp.pause=WHEN[,vm=VM])",
        ),
        (
            "hyp.pause=1,live",
            "ignoring bootarg `hyp.pause=1,live`: unknown option `live` (want hyp.pause=WHEN[,vm=VM])",
        ),
        (
            "hyp.resume=1,",
            "ignoring bootarg `hyp.resume=1,`: unknown option `` (want hyp.resume=WHEN[,vm=VM])",
        ),
        (
            "hyp.snapshot=a.snap",
            "ignoring bootarg `hyp.snapshot=a.snap`: missing @WHEN after FILE (want hyp.snapshot=FILE@WHEN[,live][,base=FILE][,vm=VM])",
        ),
        (
            "hyp.snapshot=@5",
            "ignoring bootarg `hyp.snapshot=@5`: the file name is empty (want hyp.snapshot=FILE@WHEN[,live][,base=FILE][,vm=VM])",
        ),
        (
            "hyp.snapshot=a@",
            "ignoring bootarg `hyp.snapshot=a@`: missing MS or after:TEXT (want hyp.snapshot=FILE@WHEN[,live][,base=FILE][,vm=VM])",
        ),
        (
            "hyp.snapshot=a@1,live,live",
            "ignoring bootarg `hyp.snapshot=a@1,live,live`: live given twice (want hyp.snapshot=FILE@WHEN[,live][,base=FILE][,vm=VM])",
        ),
        (
            "hyp.snapshot=a@1,base=",
            "ignoring bootarg `hyp.snapshot=a@1,base=`: the file name is empty (want hyp.snapshot=FILE@WHEN[,live][,base=FILE][,vm=VM])",
        ),
        (
            "hyp.snapshot=a@1,base=b,base=c",
            "ignoring bootarg `hyp.snapshot=a@1,base=b,base=c`: base= given twice (want hyp.snapshot=FILE@WHEN[,live][,base=FILE][,vm=VM])",
        ),
        (
            "hyp.snapshot=a@1,fast",
            "ignoring bootarg `hyp.snapshot=a@1,fast`: unknown option `fast` (want hyp.snapshot=FILE@WHEN[,live][,base=FILE][,vm=VM])",
        ),
        (
            "hyp.migrate=0@1",
            "ignoring bootarg `hyp.migrate=0@1`: `0` is out of range (1 to 10000000) (want hyp.migrate=PAGES@WHEN[,vm=VM])",
        ),
        (
            "hyp.migrate=5",
            "ignoring bootarg `hyp.migrate=5`: missing @WHEN after PAGES (want hyp.migrate=PAGES@WHEN[,vm=VM])",
        ),
        (
            "hyp.dirty=go@1",
            "ignoring bootarg `hyp.dirty=go@1`: `go` is not one of start|stop|stats (want hyp.dirty=start|stop|stats@WHEN[,vm=VM])",
        ),
        (
            "hyp.migrate-storm=0",
            "ignoring bootarg `hyp.migrate-storm=0`: `0` is out of range (1 to 1000000) (want hyp.migrate-storm=PAGES_PER_MS[@WHEN][,vm=VM])",
        ),
        (
            "hyp.migrate-storm=-1",
            "ignoring bootarg `hyp.migrate-storm=-1`: `-1` is not a number (want hyp.migrate-storm=PAGES_PER_MS[@WHEN][,vm=VM])",
        ),
        (
            "hyp.dirty-harvest=0",
            "ignoring bootarg `hyp.dirty-harvest=0`: `0` is out of range (1 to 1000000000) (want hyp.dirty-harvest=MS[@WHEN][,vm=VM])",
        ),
        (
            "hyp.dirty-check=yes",
            "ignoring bootarg `hyp.dirty-check=yes`: `yes` is not one of 0|1 (want hyp.dirty-check=0|1)",
        ),
        (
            "hyp.dirty-log=a,vm=1",
            "ignoring bootarg `hyp.dirty-log=a,vm=1`: unknown option `vm` (want hyp.dirty-log=FILE)",
        ),
        (
            "hyp.dirty-check=1,vm=1",
            "ignoring bootarg `hyp.dirty-check=1,vm=1`: unknown option `vm` (want hyp.dirty-check=0|1)",
        ),
    ];
    for (arg, want) in cases {
        let (s, errors) = schedule_from_bootargs(&format!("console=ttyAMA0 {arg} hyp.stats=1"));
        let texts: Vec<String> = errors.iter().map(|e| format!("{e}")).collect();
        assert_eq!(texts, [*want], "{arg}");
        // The good argument next to the bad one still applies; the bad one changes nothing.
        assert_eq!(timed(&s), [(1, Command::Stats(vm(1)))], "{arg}");
        assert_eq!(
            (s.migrate_storm, s.dirty_harvest, s.dirty_check),
            (None, None, false)
        );
    }
}

#[test]
fn timed_actions_are_bounded() {
    let args: Vec<String> = (0..ACTIONS_MAX + 2)
        .map(|i| format!("hyp.stats={i}"))
        .collect();
    let (s, errors) = schedule_from_bootargs(&args.join(" "));
    assert_eq!(s.len(), ACTIONS_MAX);
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[0].reason, BootargReason::TooManyActions);
    assert_eq!(
        format!("{}", errors[1]),
        format!(
            "ignoring bootarg `hyp.stats={}`: more than 256 timed actions",
            ACTIONS_MAX + 1
        )
    );
}

#[test]
fn actions_after_a_console_text() {
    let mut s = ok(
        "hyp.snapshot=/s/a@b.snap@after:PASS-1,live hyp.pause=after:x@y:z,vm=2 \
         hyp.stats=5 hyp.migrate=8@after:GO hyp.dirty=stats@after:GO hyp.resume=after:GO \
         hyp.snapshot=d@after:PASS-3,base=/s/a@b.snap",
    );
    assert_eq!(s.len(), 7);
    let shown: Vec<String> = s.timed().map(|t| format!("{t}")).collect();
    assert_eq!(
        shown,
        [
            "at 5 ms: stats 1",
            "after `PASS-1`: snapshot /s/a@b.snap --live 1",
            "after `x@y:z`: pause 2",
            "after `GO`: migrate 8 1",
            "after `GO`: dirty stats 1",
            "after `GO`: resume 1",
            "after `PASS-3`: snapshot d --base /s/a@b.snap 1",
        ]
    );
    // Only the timed one has a time; the watched ones go to the caller, in bootarg order.
    assert_eq!(s.next_due_ms(), Some(5));
    let watched = s.take_watched();
    assert_eq!(watched.len(), 6);
    assert_eq!(watched[0].when, after("PASS-1"));
    assert_eq!(watched[0].command, snap("/s/a@b.snap", true, None, vm(1)));
    assert_eq!(watched[1].when, after("x@y:z"));
    assert_eq!(watched[1].command, Command::Pause(vm(2)));
    assert_eq!(
        watched[3].command,
        Command::Dirty {
            op: DirtyOp::Stats,
            vm: vm(1)
        }
    );
    assert_eq!(watched[5].when, after("PASS-3"));
    assert_eq!(s.len(), 1);
    assert!(s.take_watched().is_empty());
    assert_eq!(
        s.take_due(5).map(|t| t.command),
        Some(Command::Stats(vm(1)))
    );
    assert!(s.is_empty());
}

#[test]
fn modes_start_at_boot_a_time_or_a_console_text() {
    let s = ok("hyp.migrate-storm=3@after:WORKLOAD-STARTED,vm=2 hyp.dirty-harvest=100@2500");
    assert_eq!(
        s.migrate_storm,
        Some(Storm {
            pages_per_ms: 3,
            vm: vm(2),
            start: after("WORKLOAD-STARTED"),
        })
    );
    assert_eq!(
        s.dirty_harvest,
        Some(Harvest {
            every_ms: 100,
            vm: vm(1),
            start: Trigger::At(2500),
        })
    );
    // Modes are not actions.
    assert!(s.is_empty());
}

#[test]
fn malformed_triggers_are_reported_and_skipped() {
    let long = "x".repeat(crate::monitor::trigger::TEXT_MAX + 1);
    let cases: Vec<(String, String)> = vec![
        (
            "hyp.pause=after:".into(),
            "ignoring bootarg `hyp.pause=after:`: missing TEXT after after: (want hyp.pause=WHEN[,vm=VM])".into(),
        ),
        (
            "hyp.snapshot=a@after:".into(),
            "ignoring bootarg `hyp.snapshot=a@after:`: missing TEXT after after: (want hyp.snapshot=FILE@WHEN[,live][,base=FILE][,vm=VM])".into(),
        ),
        (
            "hyp.snapshot=a@afterGO".into(),
            "ignoring bootarg `hyp.snapshot=a@afterGO`: `afterGO` is not a number (want hyp.snapshot=FILE@WHEN[,live][,base=FILE][,vm=VM])".into(),
        ),
        (
            "hyp.snapshot=@after:GO".into(),
            "ignoring bootarg `hyp.snapshot=@after:GO`: the file name is empty (want hyp.snapshot=FILE@WHEN[,live][,base=FILE][,vm=VM])".into(),
        ),
        (
            "hyp.stats=after:caf\u{e9}".into(),
            "ignoring bootarg `hyp.stats=after:caf\u{e9}`: text `caf\u{e9}` may hold only printable ASCII without spaces or commas (want hyp.stats=WHEN[,vm=VM])".into(),
        ),
        (
            format!("hyp.migrate=1@after:{long}"),
            format!("ignoring bootarg `hyp.migrate=1@after:{}...`: text `{}...` is longer than 64 bytes (want hyp.migrate=PAGES@WHEN[,vm=VM])", &long[..12], &long[..32]),
        ),
        (
            "hyp.migrate-storm=1@".into(),
            "ignoring bootarg `hyp.migrate-storm=1@`: missing MS or after:TEXT (want hyp.migrate-storm=PAGES_PER_MS[@WHEN][,vm=VM])".into(),
        ),
        (
            "hyp.dirty-harvest=1@after:G,vm=0".into(),
            "ignoring bootarg `hyp.dirty-harvest=1@after:G,vm=0`: `0` is not a VM (want a number from 1 to 65535 or a name like domU1) (want hyp.dirty-harvest=MS[@WHEN][,vm=VM])".into(),
        ),
        (
            "hyp.dirty-harvest=@after:GO".into(),
            "ignoring bootarg `hyp.dirty-harvest=@after:GO`: `` is not a number (want hyp.dirty-harvest=MS[@WHEN][,vm=VM])".into(),
        ),
    ];
    for (arg, want) in &cases {
        let (s, errors) = schedule_from_bootargs(&format!("console=ttyAMA0 {arg} hyp.stats=1"));
        let texts: Vec<String> = errors.iter().map(|e| format!("{e}")).collect();
        assert_eq!(texts, [want.as_str()], "{arg}");
        assert_eq!(timed(&s), [(1, Command::Stats(vm(1)))], "{arg}");
        assert_eq!((s.migrate_storm, s.dirty_harvest), (None, None));
    }
}
