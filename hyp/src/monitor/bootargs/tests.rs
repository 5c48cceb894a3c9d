use super::*;
use crate::monitor::select::VmNumber;
use alloc::format;
use alloc::string::String;

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

fn timed(s: &Schedule) -> Vec<(u64, Command)> {
    s.timed().map(|t| (t.at_ms, t.command.clone())).collect()
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
            vm: vm(1)
        })
    );
    assert_eq!(
        s.dirty_harvest,
        Some(Harvest {
            every_ms: 10,
            vm: vm(2)
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
            vm: VmSelector::Name("domU1".into())
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
    assert_eq!(s.take_due(u64::MAX).map(|t| t.at_ms), Some(4000));
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
            "ignoring bootarg `hyp.pause=`: missing MS (want hyp.pause=MS[,vm=VM])",
        ),
        (
            "hyp.pause=5s",
            "ignoring bootarg `hyp.pause=5s`: `5s` is not a number (want hyp.pause=MS[,vm=VM])",
        ),
        (
            "hyp.pause=1000000001",
            "ignoring bootarg `hyp.pause=1000000001`: `1000000001` is out of range (0 to 1000000000) (want hyp.pause=MS[,vm=VM])",
        ),
        (
            "hyp.pause=1,vm=0",
            "ignoring bootarg `hyp.pause=1,vm=0`: `0` is not a VM (want a number from 1 to 65535 or a name like domU1) (want hyp.pause=MS[,vm=VM])",
        ),
        (
            "hyp.pause=1,vm=1,vm=2",
            "ignoring bootarg `hyp.pause=1,vm=1,vm=2`: vm= given twice (want hyp.pause=MS[,vm=VM])",
        ),
        (
            "hyp.pause=1,live",
            "ignoring bootarg `hyp.pause=1,live`: unknown option `live` (want hyp.pause=MS[,vm=VM])",
        ),
        (
            "hyp.resume=1,",
            "ignoring bootarg `hyp.resume=1,`: unknown option `` (want hyp.resume=MS[,vm=VM])",
        ),
        (
            "hyp.snapshot=a.snap",
            "ignoring bootarg `hyp.snapshot=a.snap`: missing @MS after FILE (want hyp.snapshot=FILE@MS[,live][,base=FILE][,vm=VM])",
        ),
        (
            "hyp.snapshot=@5",
            "ignoring bootarg `hyp.snapshot=@5`: the file name is empty (want hyp.snapshot=FILE@MS[,live][,base=FILE][,vm=VM])",
        ),
        (
            "hyp.snapshot=a@",
            "ignoring bootarg `hyp.snapshot=a@`: `` is not a number (want hyp.snapshot=FILE@MS[,live][,base=FILE][,vm=VM])",
        ),
        (
            "hyp.snapshot=a@1,live,live",
            "ignoring bootarg `hyp.snapshot=a@1,live,live`: live given twice (want hyp.snapshot=FILE@MS[,live][,base=FILE][,vm=VM])",
        ),
        (
            "hyp.snapshot=a@1,base=",
            "ignoring bootarg `hyp.snapshot=a@1,base=`: the file name is empty (want hyp.snapshot=FILE@MS[,live][,base=FILE][,vm=VM])",
        ),
        (
            "hyp.snapshot=a@1,base=b,base=c",
            "ignoring bootarg `hyp.snapshot=a@1,base=b,base=c`: base= given twice (want hyp.snapshot=FILE@MS[,live][,base=FILE][,vm=VM])",
        ),
        (
            "hyp.snapshot=a@1,fast",
            "ignoring bootarg `hyp.snapshot=a@1,fast`: unknown option `fast` (want hyp.snapshot=FILE@MS[,live][,base=FILE][,vm=VM])",
        ),
        (
            "hyp.migrate=0@1",
            "ignoring bootarg `hyp.migrate=0@1`: `0` is out of range (1 to 10000000) (want hyp.migrate=PAGES@MS[,vm=VM])",
        ),
        (
            "hyp.migrate=5",
            "ignoring bootarg `hyp.migrate=5`: missing @MS after PAGES (want hyp.migrate=PAGES@MS[,vm=VM])",
        ),
        (
            "hyp.dirty=go@1",
            "ignoring bootarg `hyp.dirty=go@1`: `go` is not one of start|stop|stats (want hyp.dirty=start|stop|stats@MS[,vm=VM])",
        ),
        (
            "hyp.migrate-storm=0",
            "ignoring bootarg `hyp.migrate-storm=0`: `0` is out of range (1 to 1000000) (want hyp.migrate-storm=PAGES_PER_MS[,vm=VM])",
        ),
        (
            "hyp.migrate-storm=-1",
            "ignoring bootarg `hyp.migrate-storm=-1`: `-1` is not a number (want hyp.migrate-storm=PAGES_PER_MS[,vm=VM])",
        ),
        (
            "hyp.dirty-harvest=0",
            "ignoring bootarg `hyp.dirty-harvest=0`: `0` is out of range (1 to 1000000000) (want hyp.dirty-harvest=MS[,vm=VM])",
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
