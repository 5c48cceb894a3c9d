use super::*;
use crate::monitor::path::BadPath;
use crate::monitor::select::VmNumber;
use alloc::format;
use alloc::string::String;

fn vm(n: u16) -> VmSelector {
    VmSelector::Number(VmNumber::new(n).unwrap())
}

fn name(s: &str) -> VmSelector {
    VmSelector::Name(s.into())
}

fn path(s: &str) -> HostPath {
    HostPath::new(s).unwrap()
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
fn table_names_are_unique() {
    for spec in &COMMANDS {
        assert_eq!(spec.kind.spec().name, spec.name);
        assert!(!spec.about.is_empty());
    }
    let mut names: alloc::vec::Vec<_> = COMMANDS.iter().map(|s| s.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), COMMANDS.len(), "duplicate command names");
}

#[test]
fn valid_commands() {
    let cases: &[(&str, Command)] = &[
        ("help", Command::Help(None)),
        ("help snapshot", Command::Help(Some(Kind::Snapshot.spec()))),
        ("vms", Command::Vms),
        ("vcpus", Command::Vcpus(vm(1))),
        ("vcpus 2", Command::Vcpus(vm(2))),
        ("vcpus domU1", Command::Vcpus(name("domU1"))),
        ("stats", Command::Stats(vm(1))),
        ("  stats\t3  ", Command::Stats(vm(3))),
        ("mem", Command::Mem),
        (
            "dirty start",
            Command::Dirty {
                op: DirtyOp::Start,
                vm: vm(1),
            },
        ),
        (
            "dirty stop 2",
            Command::Dirty {
                op: DirtyOp::Stop,
                vm: vm(2),
            },
        ),
        (
            "dirty stats domU2",
            Command::Dirty {
                op: DirtyOp::Stats,
                vm: name("domU2"),
            },
        ),
        ("pause", Command::Pause(vm(1))),
        ("pause domU1", Command::Pause(name("domU1"))),
        ("resume 1", Command::Resume(vm(1))),
        ("snapshot a.snap", snap("a.snap", false, None, vm(1))),
        ("snapshot a.snap --live", snap("a.snap", true, None, vm(1))),
        (
            "snapshot --live a.snap 2",
            snap("a.snap", true, None, vm(2)),
        ),
        (
            "snapshot d1.snap --base a.snap",
            snap("d1.snap", false, Some("a.snap"), vm(1)),
        ),
        (
            "snapshot d1.snap --base a.snap --live domU1",
            snap("d1.snap", true, Some("a.snap"), name("domU1")),
        ),
        (
            "snapshot /tmp/x/y.snap domU1 --live",
            snap("/tmp/x/y.snap", true, None, name("domU1")),
        ),
        (
            "migrate 1",
            Command::Migrate {
                pages: 1,
                vm: vm(1),
            },
        ),
        (
            "migrate 10000000 2",
            Command::Migrate {
                pages: 10_000_000,
                vm: vm(2),
            },
        ),
        (
            "migrate 0042",
            Command::Migrate {
                pages: 42,
                vm: vm(1),
            },
        ),
        ("log off", Command::Log(LevelFilter::Off)),
        ("log error", Command::Log(LevelFilter::Error)),
        ("log warn", Command::Log(LevelFilter::Warn)),
        ("log info", Command::Log(LevelFilter::Info)),
        ("log debug", Command::Log(LevelFilter::Debug)),
        ("log trace", Command::Log(LevelFilter::Trace)),
        ("console 2", Command::Console(vm(2))),
        ("console domU1", Command::Console(name("domU1"))),
        ("exit", Command::Exit),
        ("quit", Command::Exit),
    ];
    for (line, want) in cases {
        assert_eq!(Command::parse(line).as_ref(), Ok(want), "{line:?}");
        // Displayed, it reads back as the same command.
        let text = format!("{want}");
        assert_eq!(Command::parse(&text).as_ref(), Ok(want), "{text:?}");
    }
}

const ALL: &str =
    "commands: help vms vcpus stats mem dirty pause resume snapshot migrate log console exit quit";

#[test]
fn malformed_commands_say_why_and_how() {
    let cases: &[(&str, &str)] = &[
        ("", "no command; {ALL}"),
        ("   \t ", "no command; {ALL}"),
        ("frobnicate", "unknown command `frobnicate`; {ALL}"),
        ("HELP", "unknown command `HELP`; {ALL}"),
        ("help nope", "unknown command `nope`; usage: help [COMMAND]"),
        (
            "help vms vcpus",
            "unexpected `vcpus`; usage: help [COMMAND]",
        ),
        ("vms 1", "unexpected `1`; usage: vms"),
        ("mem --all", "unknown option `--all`; usage: mem"),
        (
            "vcpus 0",
            "`0` is not a VM (want a number from 1 to 65535 or a name like domU1); usage: vcpus [VM]",
        ),
        ("stats 1 2", "unexpected `2`; usage: stats [VM]"),
        (
            "dirty",
            "missing start|stop|stats; usage: dirty start|stop|stats [VM]",
        ),
        (
            "dirty go",
            "`go` is not one of start|stop|stats; usage: dirty start|stop|stats [VM]",
        ),
        (
            "dirty start 1 1",
            "unexpected `1`; usage: dirty start|stop|stats [VM]",
        ),
        (
            "pause 70000",
            "`70000` is not a VM (want a number from 1 to 65535 or a name like domU1); usage: pause [VM]",
        ),
        (
            "resume 1dom",
            "`1dom` is not a VM (want a number from 1 to 65535 or a name like domU1); usage: resume [VM]",
        ),
        (
            "snapshot",
            "missing FILE; usage: snapshot FILE [--live] [--base FILE] [VM]",
        ),
        (
            "snapshot --live",
            "missing FILE; usage: snapshot FILE [--live] [--base FILE] [VM]",
        ),
        (
            "snapshot a --base",
            "missing FILE after --base; usage: snapshot FILE [--live] [--base FILE] [VM]",
        ),
        (
            "snapshot a --base --live",
            "unknown option `--live`; usage: snapshot FILE [--live] [--base FILE] [VM]",
        ),
        (
            "snapshot a --live --live",
            "--live given twice; usage: snapshot FILE [--live] [--base FILE] [VM]",
        ),
        (
            "snapshot a --base b --base c",
            "--base given twice; usage: snapshot FILE [--live] [--base FILE] [VM]",
        ),
        (
            "snapshot a --fast",
            "unknown option `--fast`; usage: snapshot FILE [--live] [--base FILE] [VM]",
        ),
        (
            "snapshot -a",
            "unknown option `-a`; usage: snapshot FILE [--live] [--base FILE] [VM]",
        ),
        (
            "snapshot a 1 2",
            "unexpected `2`; usage: snapshot FILE [--live] [--base FILE] [VM]",
        ),
        (
            "snapshot a\x01b",
            "the file name `a\\u{1}b` has a control character; usage: snapshot FILE [--live] [--base FILE] [VM]",
        ),
        (
            "snapshot a.snap --base a.snap",
            "the snapshot would overwrite its own base; usage: snapshot FILE [--live] [--base FILE] [VM]",
        ),
        ("migrate", "missing N; usage: migrate N [VM]"),
        (
            "migrate 0",
            "`0` is out of range (1 to 10000000); usage: migrate N [VM]",
        ),
        (
            "migrate 10000001",
            "`10000001` is out of range (1 to 10000000); usage: migrate N [VM]",
        ),
        (
            "migrate 99999999999999999999999",
            "`99999999999999999999999` is out of range (1 to 10000000); usage: migrate N [VM]",
        ),
        ("migrate -5", "unknown option `-5`; usage: migrate N [VM]"),
        ("migrate +5", "`+5` is not a number; usage: migrate N [VM]"),
        (
            "migrate 0x10",
            "`0x10` is not a number; usage: migrate N [VM]",
        ),
        (
            "migrate 1_000",
            "`1_000` is not a number; usage: migrate N [VM]",
        ),
        ("log", "missing LEVEL; usage: log LEVEL"),
        (
            "log loud",
            "`loud` is not one of off|error|warn|info|debug|trace; usage: log LEVEL",
        ),
        (
            "log INFO",
            "`INFO` is not one of off|error|warn|info|debug|trace; usage: log LEVEL",
        ),
        ("console", "missing VM; usage: console VM"),
        ("exit now", "unexpected `now`; usage: exit"),
        ("quit 1", "unexpected `1`; usage: quit"),
    ];
    for (line, want) in cases {
        let want = want.replace("{ALL}", ALL);
        let got = Command::parse(line).map(|c| format!("{c:?}"));
        assert_eq!(got.map_err(|e| format!("{e}")), Err(want), "{line:?}");
    }
}

#[test]
fn long_input_is_cut_in_errors() {
    let long = "x".repeat(10_000);
    let e = Command::parse(&long).unwrap_err();
    let text = format!("{e}");
    assert!(text.starts_with(&format!("unknown command `{}...`", "x".repeat(32))));
    assert!(text.len() < 200, "{text}");
    assert!(!text.contains('\n'));
}

#[test]
fn file_name_length_is_bounded() {
    let ok = "f".repeat(255);
    assert!(Command::parse(&format!("snapshot {ok}")).is_ok());
    let e = Command::parse(&format!("snapshot {ok}f")).unwrap_err();
    assert_eq!(
        e.reason,
        Reason::Path(BadPath::TooLong(256)),
        "a 256-byte name is refused"
    );
    let e = Command::parse(&format!("snapshot a --base {ok}f")).unwrap_err();
    assert_eq!(e.reason, Reason::Path(BadPath::TooLong(256)));
}

#[test]
fn display_spells_out_defaults() {
    let shown = |line: &str| format!("{}", Command::parse(line).unwrap());
    assert_eq!(shown("pause"), "pause 1");
    assert_eq!(shown("dirty stats"), "dirty stats 1");
    assert_eq!(
        shown("snapshot d --live --base a domU1"),
        "snapshot d --live --base a domU1"
    );
    assert_eq!(shown("snapshot --base a d"), "snapshot d --base a 1");
    assert_eq!(shown("log warn"), "log warn");
    assert_eq!(shown("quit"), "exit");
    assert_eq!(shown("help  mem"), "help mem");
}

#[test]
fn help_lines_pad_every_usage_to_one_column() {
    let width = "snapshot FILE [--live] [--base FILE] [VM]".len();
    for spec in &COMMANDS {
        let line = format!("{spec}");
        assert!(line.starts_with(spec.name), "{line}");
        assert!(line.ends_with(spec.about), "{line}");
        // The usage is padded to one column, so descriptions line up.
        assert_eq!(line.find(spec.about), Some(width + 1), "{line}");
    }
    assert_eq!(
        format!("{}", Kind::Snapshot.spec()),
        String::from("snapshot FILE [--live] [--base FILE] [VM] ") + Kind::Snapshot.spec().about
    );
    assert_eq!(format!("{}", Kind::Vms.spec().usage()), "vms");
}
