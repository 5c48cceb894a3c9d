//! The parser's tests: a file with every key, each key's defaults and mistakes, and the checks
//! across keys. Judging a run against a parsed file is tested in `judge`.

use super::*;
use crate::size;
use crate::spec::escape::unescape;
use crate::spec::examples::SMP4;
use crate::spec::gate::expects_seen;

#[test]
fn a_full_spec_parses_with_defaults_for_the_rest() {
    let spec = parse("boot/smp4", SMP4).unwrap();
    assert_eq!(spec.name, "boot/smp4");
    assert_eq!(spec.smp, 4);
    assert_eq!(spec.mem, size::parse("512M").unwrap());
    assert_eq!(
        spec.machine_options,
        [("highmem".to_string(), "off".to_string())]
    );
    assert_eq!(spec.expect, ["cpu 0 online (MPIDR 0x", "all 4 CPUs online"]);
    assert_eq!(spec.expect_anywhere, ["cpu 3 online"]);
    assert_eq!(spec.forbid, ["panic at"]);
    assert_eq!(spec.exit, ExpectedExit::Code(0));
    assert_eq!(spec.timeout, Duration::from_secs(30));
    assert_eq!(spec.variant.to_string(), "default");
}

#[test]
fn features_exit_quotes_and_qemu_args() {
    let spec = parse(
            "t",
            "features = test-panic\nexit = nonzero\nexpect = \" panic at \"\nqemu-args = -d  guest_errors\n",
        )
        .unwrap();
    assert_eq!(spec.variant.to_string(), "test-panic");
    assert_eq!(spec.exit, ExpectedExit::NonZero);
    assert_eq!(spec.expect, [" panic at "]);
    assert_eq!(spec.qemu_args, ["-d", "guest_errors"]);
    assert_eq!(
        parse("t", "exit = 3\nexpect = x").unwrap().exit,
        ExpectedExit::Code(3)
    );
}

#[test]
fn mistakes_name_the_line_and_the_fix() {
    let kind = |text: &str| parse("t", text).unwrap_err();
    assert_eq!(
        kind("expect = x\nsmpp = 2"),
        err(2, SpecErrorKind::UnknownKey("smpp".into()))
    );
    assert_eq!(kind("expect x"), err(1, SpecErrorKind::NoEquals));
    assert_eq!(
        kind("smp = 1\nsmp = 2"),
        err(2, SpecErrorKind::Repeated("smp"))
    );
    assert_eq!(
        kind("smp = 0"),
        err(
            1,
            SpecErrorKind::BadNumber {
                key: "smp",
                value: "0".into()
            }
        )
    );
    assert!(matches!(kind("mem = 512").kind, SpecErrorKind::BadSize(_)));
    assert_eq!(
        kind("machine = gic"),
        err(1, SpecErrorKind::BadMachineOption("gic".into()))
    );
    assert_eq!(
        kind("exit = maybe"),
        err(1, SpecErrorKind::BadExit("maybe".into()))
    );
    assert_eq!(
        kind("expect ="),
        err(1, SpecErrorKind::EmptyValue("expect"))
    );
    assert_eq!(kind("smp = 2"), err(0, SpecErrorKind::NothingChecked));
    assert!(
        kind("expect = x\nsmpp = 2")
            .to_string()
            .starts_with("line 2: unknown key `smpp`")
    );
}

#[test]
fn guest_keys_describe_a_vm_with_defaults_by_kind() {
    let spec = parse(
        "t",
        "guest = linux\ninitramfs = test\nguest-cpus = 2\nappend = \"quiet \"\nexpect = x\n",
    )
    .unwrap();
    assert_eq!(
        spec.guest,
        Some(GuestSpec {
            kind: GuestKind::Linux {
                kernel: debian::Kernel::Host,
                initramfs: "test".into()
            },
            cpus: 2,
            mem: Size::from_mib(512),
            append: Some("quiet ".into()),
            native: false,
        })
    );
    let bare = parse("t", "guest = hvc\nnative = true\nexpect = x\n")
        .unwrap()
        .guest
        .unwrap();
    assert_eq!(bare.kind, GuestKind::BareMetal("hvc".into()));
    assert_eq!(
        (bare.cpus, bare.mem, bare.native),
        (1, Size::from_mib(64), true)
    );
    assert_eq!(
        parse("t", "guest = linux\nexpect = x")
            .unwrap()
            .guest
            .unwrap()
            .kind,
        GuestKind::Linux {
            kernel: debian::Kernel::Host,
            initramfs: "shell".into()
        }
    );
    assert_eq!(parse("t", "expect = x").unwrap().guest, None);
}

#[test]
fn a_linux_guest_names_its_debian_kernel() {
    let kernel = |text: &str| match parse("t", text).unwrap().guest.unwrap().kind {
        GuestKind::Linux { kernel, .. } => kernel,
        other => panic!("{other:?}"),
    };
    assert_eq!(kernel("guest = linux\nexpect = x"), debian::Kernel::Host);
    assert_eq!(
        kernel("guest = linux\nkernel = debian\nexpect = x"),
        debian::Kernel::Host
    );
    assert_eq!(
        kernel("guest = linux\nkernel = debian-trixie\nexpect = x"),
        debian::Kernel::Trixie
    );
    assert_eq!(
        kernel("kernel = debian-unstable\nguest = linux\nexpect = x"),
        debian::Kernel::Unstable
    );
    // The same test for two kernels: two guests, prepared separately.
    let trixie = parse("t", "guest = linux\nkernel = debian-trixie\nexpect = x").unwrap();
    let host = parse("t", "guest = linux\nexpect = x").unwrap();
    assert_ne!(trixie.guest.unwrap().kind, host.guest.unwrap().kind);
}

#[test]
fn a_kernel_must_be_a_known_debian_kernel_of_a_linux_guest() {
    let kind = |text: &str| parse("t", text).unwrap_err();
    for bad in [
        "debian-sid",
        "trixie",
        "Debian",
        "/boot/vmlinuz",
        "debian-unstable x",
    ] {
        assert_eq!(
            kind(&format!("guest = linux\nkernel = {bad}\nexpect = x")),
            err(2, SpecErrorKind::BadKernel(bad.into())),
            "{bad}"
        );
    }
    assert_eq!(
        kind("guest = linux\nkernel = sid\nexpect = x").to_string(),
        "line 2: `kernel` must be one of Debian's kernels (debian, debian-trixie, \
             debian-unstable), not `sid`"
    );
    assert_eq!(
        kind("guest = hvc\nexpect = x\nkernel = debian-trixie"),
        err(3, SpecErrorKind::NeedsLinux("kernel"))
    );
    assert_eq!(
        kind("kernel = debian\nexpect = x"),
        err(1, SpecErrorKind::NeedsGuest("kernel"))
    );
    assert_eq!(
        kind("guest = linux\nkernel = debian\nkernel = debian\nexpect = x"),
        err(3, SpecErrorKind::Repeated("kernel"))
    );
    assert_eq!(
        kind("guest = linux\nkernel =\nexpect = x"),
        err(2, SpecErrorKind::EmptyValue("kernel"))
    );
}

#[test]
fn send_waits_for_the_expects_above_it() {
    let spec = parse(
        "t",
        "send = early\nexpect = / #\nsend = echo hi\nexpect = hi\nsend = poweroff\n",
    )
    .unwrap();
    assert_eq!(
        spec.send,
        [
            (Gate::expects(0), b"early\n".to_vec()),
            (Gate::expects(1), b"echo hi\n".to_vec()),
            (Gate::expects(2), b"poweroff\n".to_vec())
        ]
    );
    assert_eq!(expects_seen(&spec, ""), 0);
    assert_eq!(expects_seen(&spec, "hi\n/ # "), 1);
    assert_eq!(expects_seen(&spec, "/ # echo hi\nhi\n"), 2);
}

#[test]
fn send_can_wait_for_expect_anywhere_lines_above_it() {
    // A live snapshot's report and the workload's start come in either order.
    let spec = parse(
        "t",
        "expect = live rounds=\nexpect-anywhere = STARTED\nsend = stop\nexpect-anywhere = later\n",
    )
    .unwrap();
    let gate = spec.send[0].0;
    assert_eq!(
        gate,
        Gate {
            expects: 1,
            anywhere: 1
        }
    );
    assert!(!gate.open(&spec, "live rounds=9"));
    assert!(!gate.open(&spec, "STARTED"));
    assert!(gate.open(&spec, "STARTED\nlive rounds=9"));
    assert!(gate.open(&spec, "live rounds=9\nSTARTED"));
}

#[test]
fn send_escapes_reach_control_characters_and_send_raw_adds_no_newline() {
    let spec = parse(
            "t",
            "expect = / #\nsend-raw = \\x1d\nsend = stats\\r\nsend-raw = \"a\\\\b\\tc\\n \"\nsend = \\x1D\\x00\n",
        )
        .unwrap();
    assert_eq!(
        spec.send,
        [
            (Gate::expects(1), vec![0x1d]),
            (Gate::expects(1), b"stats\r\n".to_vec()),
            (Gate::expects(1), b"a\\b\tc\n ".to_vec()),
            (Gate::expects(1), vec![0x1d, 0, b'\n'])
        ]
    );
    assert_eq!(
        unescape("no escapes: $((6*7))"),
        Ok(b"no escapes: $((6*7))".to_vec())
    );
    assert_eq!(
        unescape("caf\u{e9}\\x41"),
        Ok("caf\u{e9}A".as_bytes().to_vec())
    );
    for (bad, named) in [
        ("a\\q", "\\q"),
        ("tail\\", "\\"),
        ("\\x1", "\\x1"),
        ("\\xg0", "\\xg0"),
        ("\\x\u{e9}0", "\\x\u{e9}0"),
    ] {
        assert_eq!(unescape(bad), Err(named.to_string()), "{bad}");
    }
    let e = parse("t", "expect = x\nsend = \\e[A").unwrap_err();
    assert_eq!(e, err(2, SpecErrorKind::BadEscape("\\e".into())));
    assert!(e.to_string().contains("\\xHH"), "{e}");
}

#[test]
fn hyp_args_are_kept_whole_and_refused_for_native_guests() {
    let spec = parse(
        "t",
        "hyp-args = hyp.log=debug  hyp.migrate-storm=5\nexpect = x",
    )
    .unwrap();
    assert_eq!(spec.hyp_args, "hyp.log=debug  hyp.migrate-storm=5");
    assert_eq!(parse("t", "expect = x").unwrap().hyp_args, "");
    assert_eq!(
        parse(
            "t",
            "guest = linux\nnative = true\nhyp-args = hyp.log=debug\nexpect = x"
        )
        .unwrap_err(),
        err(3, SpecErrorKind::HypArgsNative)
    );
}

#[test]
fn guest_keys_without_a_fitting_guest_are_errors() {
    let kind = |text: &str| parse("t", text).unwrap_err();
    assert_eq!(
        kind("expect = x\nguest-cpus = 2"),
        err(2, SpecErrorKind::NeedsGuest("guest-cpus"))
    );
    assert_eq!(
        kind("guest = hvc\ninitramfs = test\nexpect = x"),
        err(2, SpecErrorKind::NeedsLinux("initramfs"))
    );
    assert_eq!(
        kind("guest = ../x\nexpect = x"),
        err(1, SpecErrorKind::BadGuestName("../x".into()))
    );
    assert_eq!(
        kind("guest = linux\nnative = yes\nexpect = x"),
        err(
            2,
            SpecErrorKind::BadBool {
                key: "native",
                value: "yes".into()
            }
        )
    );
    assert!(matches!(
        kind("guest = linux\nguest-mem = 12\nexpect = x").kind,
        SpecErrorKind::BadSize(_)
    ));
}

#[test]
fn restore_keys_need_their_context() {
    let kind = |text: &str| parse("t", text).unwrap_err();
    assert_eq!(
        kind("guest = linux\nhyp-args = hyp.snapshot={snapshot}@5\nexpect = x"),
        err(
            2,
            SpecErrorKind::NeedsSnapshotFile("{snapshot} in `hyp-args`")
        )
    );
    assert_eq!(
        kind("guest = linux\nthen-restore = true\nrestore-expect = y\nexpect = x"),
        err(2, SpecErrorKind::NeedsSnapshotFile("`then-restore`"))
    );
    assert_eq!(
        kind("guest = linux\nexpect = x\nrestore-expect = y"),
        err(3, SpecErrorKind::NeedsThenRestore("restore-expect"))
    );
    assert_eq!(
        kind("guest = linux\nexpect = x\nthen-restore = false\nrestore-exit = 0"),
        err(4, SpecErrorKind::NeedsThenRestore("restore-exit"))
    );
    assert_eq!(
        kind("snapshot-file = a\nthen-restore = true\nrestore-expect = y\nexpect = x"),
        err(2, SpecErrorKind::RestoreNeedsGuest)
    );
    assert_eq!(
        kind(
            "guest = linux\nnative = true\nsnapshot-file = a\nthen-restore = true\nrestore-expect = y\nexpect = x"
        ),
        err(4, SpecErrorKind::RestoreNeedsGuest)
    );
    assert_eq!(
        kind("guest = linux\nsnapshot-file = a\nthen-restore = true\nexpect = x"),
        err(3, SpecErrorKind::RestoreChecksNothing)
    );
    assert_eq!(
        kind("guest = linux\nsnapshot-file = a\nhyp-args = hyp.snapshot={snap}@5\nexpect = x"),
        err(3, SpecErrorKind::UnknownPlaceholder("{snap}@5".into()))
    );
    assert_eq!(
        kind("guest = linux\nthen-restore = yes\nexpect = x"),
        err(
            2,
            SpecErrorKind::BadBool {
                key: "then-restore",
                value: "yes".into()
            }
        )
    );
    for bad in ["../x", "a/b", ".hidden", "a,b", "a@1"] {
        assert_eq!(
            kind(&format!("snapshot-file = \"{bad}\"\nexpect = x")),
            err(1, SpecErrorKind::BadSnapshotFile(bad.into())),
            "{bad}"
        );
    }
    assert!(
        kind("guest = linux\nexpect = x\nrestore-forbid = y")
            .to_string()
            .contains("add `then-restore = true`")
    );
}

const CHAIN: &str = "guest = linux
snapshot-file = base.snap  d1.snap d2.snap
hyp-args = hyp.snapshot={snapshot}@12000,live hyp.snapshot={snapshot2}@16000,base={snapshot} hyp.snapshot={snapshot3}@20000,live,base={snapshot2}
expect = live diff rounds=
then-restore = true
restore-expect = restored from a snapshot chain
";

#[test]
fn a_dirty_log_file_is_named_by_dirtylog_in_hyp_args() {
    let spec = parse(
        "t",
        "guest = linux\nexpect = x\nhyp-args = hyp.dirty-harvest=100 hyp.dirty-log={dirtylog}\n\
             dirty-log-file = h.dlog",
    )
    .unwrap();
    assert_eq!(spec.dirty_log_file.as_deref(), Some("h.dlog"));
    assert!(spec.snapshot_files.is_empty());
    let kind = |text: &str| parse("t", text).unwrap_err().kind;
    assert_eq!(
        kind("guest = linux\nexpect = x\ndirty-log-file = h.dlog"),
        SpecErrorKind::UnusedDirtyLogFile
    );
    assert_eq!(
        kind("guest = linux\nexpect = x\nhyp-args = hyp.dirty-log={dirtylog}"),
        SpecErrorKind::NeedsDirtyLogFile
    );
    assert_eq!(
        kind(
            "guest = linux\nexpect = x\nhyp-args = hyp.dirty-log={dirtylog}\ndirty-log-file = ../h"
        ),
        SpecErrorKind::BadDirtyLogFile("../h".into())
    );
    assert_eq!(
        kind("guest = linux\nexpect = x\nhyp-args = hyp.dirty-log={dirtylogs}\ndirty-log-file = h"),
        SpecErrorKind::UnusedDirtyLogFile
    );
    assert!(!spec.dirty_log_missed);
    let missed = parse(
        "t",
        "guest = linux\nexpect = x\nhyp-args = hyp.dirty-log={dirtylog}\n\
             dirty-log-file = h\ndirty-log-expect = missed",
    )
    .unwrap();
    assert!(missed.dirty_log_missed);
    assert_eq!(
        kind("guest = linux\nexpect = x\ndirty-log-expect = missed"),
        SpecErrorKind::NeedsDirtyLogFile
    );
    assert_eq!(
        kind(
            "guest = linux\nexpect = x\nhyp-args = hyp.dirty-log={dirtylog}\n\
                 dirty-log-file = h\ndirty-log-expect = fail"
        ),
        SpecErrorKind::BadDirtyLogExpect("fail".into())
    );
}

#[test]
fn snapshot_files_are_listed_by_spaces_and_named_snapshot_snapshot2_and_on() {
    let spec = parse("linux/chain", CHAIN).unwrap();
    assert_eq!(spec.snapshot_files, ["base.snap", "d1.snap", "d2.snap"]);
    assert_eq!(
        spec.hyp_args_with(&["/s/base.snap", "/s/d1.snap", "/s/d2.snap"]),
        "hyp.snapshot=/s/base.snap@12000,live hyp.snapshot=/s/d1.snap@16000,base=/s/base.snap \
             hyp.snapshot=/s/d2.snap@20000,live,base=/s/d1.snap"
    );
    assert_eq!(
        (0..4).map(snapshot_placeholder).collect::<Vec<_>>(),
        ["{snapshot}", "{snapshot2}", "{snapshot3}", "{snapshot4}"]
    );
    // The tenth file's placeholder is not read as the first's or the second's.
    let names: Vec<String> = (1..=10).map(|i| format!("f{i}")).collect();
    let args: Vec<String> = (0..10).map(snapshot_placeholder).collect();
    let ten = parse(
        "t",
        &format!(
            "guest = linux\nsnapshot-file = {}\nhyp-args = {}\nexpect = x",
            names.join(" "),
            args.join(" ")
        ),
    )
    .unwrap();
    let paths: Vec<String> = (1..=10).map(|i| format!("/p{i}")).collect();
    let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
    assert_eq!(ten.hyp_args_with(&paths), paths.join(" "));
    assert_eq!(
        placeholders_used("{snapshot2} {snapshot} {snapshot2}"),
        Ok(vec![0, 1])
    );
}

#[test]
fn snapshot_placeholders_must_match_the_files_listed() {
    let kind = |text: &str| parse("t", text).unwrap_err();
    let two = "guest = linux\nsnapshot-file = a b\nexpect = x\nhyp-args = ";
    assert_eq!(
        kind(&format!(
            "{two}hyp.snapshot={{snapshot}}@1 hyp.snapshot={{snapshot3}}@2"
        )),
        err(
            4,
            SpecErrorKind::PlaceholderPastFiles {
                placeholder: "{snapshot3}".into(),
                files: 2
            }
        )
    );
    assert_eq!(
        kind(&format!("{two}hyp.snapshot={{snapshot}}@1")),
        err(
            2,
            SpecErrorKind::UnusedSnapshotFile {
                file: "b".into(),
                placeholder: "{snapshot2}".into()
            }
        )
    );
    for bad in [
        "{snapshot1}",
        "{snapshot0}",
        "{snapshot02}",
        "{snapshot2x}",
        "{snapshot",
        "}",
    ] {
        assert_eq!(
            kind(&format!("{two}{{snapshot}}{{snapshot2}} x={bad}")),
            err(4, SpecErrorKind::UnknownPlaceholder(bad.into())),
            "{bad}"
        );
    }
    assert_eq!(
        kind("guest = linux\nhyp-args = hyp.snapshot={snapshot2}@5\nexpect = x"),
        err(
            2,
            SpecErrorKind::NeedsSnapshotFile("{snapshot} in `hyp-args`")
        )
    );
    assert_eq!(
        kind("guest = linux\nsnapshot-file = a.snap b a.snap\nexpect = x"),
        err(2, SpecErrorKind::RepeatedSnapshotFile("a.snap".into()))
    );
    assert_eq!(
        kind("guest = linux\nsnapshot-file = a\nsnapshot-file = b\nexpect = x"),
        err(3, SpecErrorKind::Repeated("snapshot-file"))
    );
    let e = kind(&format!("{two}{{snapshot}}")).to_string();
    assert!(e.contains("never names it with {snapshot2}"), "{e}");
}
