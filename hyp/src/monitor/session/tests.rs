use super::*;
use crate::monitor::PROMPT;
use crate::monitor::bootargs::schedule_from_bootargs;
use crate::monitor::command::{DirtyOp, Kind};
use crate::monitor::editor::LINE_MAX;
use crate::monitor::router::ESCAPE;
use crate::monitor::select::VmSelector;
use alloc::vec::Vec;
use proptest::prelude::*;

fn vm(n: u16) -> VmNumber {
    VmNumber::new(n).unwrap()
}

/// Feeds `input`; returns all echo and every action but `Nothing`.
fn type_in(m: &mut MonitorInput, input: &[u8]) -> (Vec<u8>, Vec<Action>) {
    let mut echo = Vec::new();
    let mut actions = Vec::new();
    for &b in input {
        let step = m.feed(b);
        echo.extend_from_slice(step.echo);
        if step.action != Action::Nothing {
            actions.push(step.action);
        }
    }
    (echo, actions)
}

#[test]
fn banner_ends_with_the_prompt() {
    assert!(ENTER_ECHO.ends_with(PROMPT.as_bytes()));
    assert!(ENTER_ECHO.starts_with(b"\r\n"));
}

#[test]
fn guest_typing_passes_through_untouched() {
    let mut m = MonitorInput::new(Some(vm(1)));
    let (echo, actions) = type_in(&mut m, b"ls\r\x03");
    assert!(echo.is_empty(), "the guest echoes its own input");
    let bytes: Vec<u8> = actions
        .iter()
        .map(|a| match a {
            Action::Guest { vm: v, byte } if *v == vm(1) => *byte,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(bytes, b"ls\r\x03");
}

#[test]
fn a_monitor_session_runs_commands_and_exits() {
    let mut m = MonitorInput::new(Some(vm(1)));
    let mut input = Vec::from(&b"x"[..]);
    input.push(ESCAPE);
    input.extend_from_slice(b"dirty start\r\n\rfoo\rexit\ry");
    let (echo, actions) = type_in(&mut m, &input);
    assert_eq!(
        actions,
        [
            Action::Guest {
                vm: vm(1),
                byte: b'x'
            },
            Action::EnteredMonitor,
            Action::Run(Command::Dirty {
                op: DirtyOp::Start,
                vm: VmSelector::DEFAULT,
            }),
            Action::Prompt,
            Action::Usage(Command::parse("foo").unwrap_err()),
            Action::LeftMonitor(vm(1)),
            Action::Guest {
                vm: vm(1),
                byte: b'y'
            },
        ]
    );
    let mut want = Vec::from(ENTER_ECHO);
    want.extend_from_slice(b"dirty start\r\n\r\nfoo\r\nexit");
    want.extend_from_slice(LEAVE_ECHO);
    assert_eq!(echo, want);
}

#[test]
fn entering_the_monitor_drops_a_half_typed_line() {
    let mut m = MonitorInput::new(Some(vm(1)));
    let mut input = alloc::vec![ESCAPE];
    input.extend_from_slice(b"snapsh");
    input.extend_from_slice(&[ESCAPE, ESCAPE]);
    input.extend_from_slice(b"mem\r");
    let (_, actions) = type_in(&mut m, &input);
    assert_eq!(actions.last(), Some(&Action::Run(Command::Mem)));
}

#[test]
fn exit_without_a_guest_console_stays() {
    let mut m = MonitorInput::new(None);
    let (_, actions) = type_in(&mut m, b"quit\r\x1dhelp vms\r");
    assert_eq!(
        actions,
        [
            Action::Say(NO_GUEST),
            Action::Run(Command::Help(Some(Kind::Vms.spec())))
        ]
    );
}

#[test]
fn console_switch_sends_input_to_the_chosen_vm() {
    let mut m = MonitorInput::new(Some(vm(1)));
    let (_, actions) = type_in(&mut m, b"\x1dconsole 2\r");
    assert_eq!(
        actions.last(),
        Some(&Action::Run(Command::Console(VmSelector::Number(vm(2)))))
    );
    m.router_mut().set_console_vm(vm(2));
    let (_, actions) = type_in(&mut m, b"\x1dk");
    assert_eq!(
        actions,
        [
            Action::LeftMonitor(vm(2)),
            Action::Guest {
                vm: vm(2),
                byte: b'k'
            }
        ]
    );
}

proptest! {
    /// Whatever is typed: no panic, echo bounded per byte, every non-escape byte typed while the
    /// guest has focus reaches the guest, and the monitor never sees a line past the limit.
    #[test]
    fn random_typing_is_always_handled(raw in prop::collection::vec(any::<u8>(), 0..2000)) {
        let mut m = MonitorInput::new(Some(vm(1)));
        let mut in_guest = true;
        // Skewed towards the bytes that change state, so focus and lines change often.
        let input = raw.iter().map(|&b| match b {
            0xf8.. => ESCAPE,
            0xf0.. => b'\r',
            0xe0.. => b' ',
            b => b,
        });
        for b in input {
            let was_guest = in_guest;
            let step = m.feed(b);
            prop_assert!(step.echo.len() <= ENTER_ECHO.len().max(3 * LINE_MAX));
            match step.action {
                Action::Guest { byte, .. } => {
                    prop_assert!(was_guest);
                    prop_assert_eq!(byte, b);
                }
                Action::EnteredMonitor => in_guest = false,
                Action::LeftMonitor(_) => in_guest = true,
                _ => prop_assert!(!was_guest || b == ESCAPE),
            }
            if was_guest && b != ESCAPE {
                prop_assert!(in_guest, "a guest byte switched focus");
            }
            if let Action::Usage(e) = &step.action {
                let text = alloc::format!("{e}");
                prop_assert!(!text.contains('\n') && text.len() < 400);
            }
        }
    }

    #[test]
    fn random_lines_never_panic_the_parser(line in ".{0,300}") {
        if let Err(e) = Command::parse(&line) {
            let text = alloc::format!("{e}");
            prop_assert!(!text.contains(['\n', '\r']) && text.len() < 400, "{}", text);
        }
    }

    #[test]
    fn random_command_like_lines_never_panic_the_parser(
        words in prop::collection::vec(prop_oneof![
            Just("snapshot"), Just("migrate"), Just("dirty"), Just("--live"), Just("--base"),
            Just("log"), Just("console"), Just("0"), Just("1"), Just("99999999999"),
            Just("domU1"), Just("stats"), Just("-"), Just("help"), Just("a.snap"),
        ], 0..8)
    ) {
        if let Ok(command) = Command::parse(&words.join(" ")) {
            let text = alloc::format!("{command}");
            prop_assert_eq!(Command::parse(&text), Ok(command), "{}", text);
        }
    }

    #[test]
    fn random_bootargs_never_panic(args in ".{0,400}") {
        let (schedule, errors) = schedule_from_bootargs(&args);
        prop_assert!(errors.len() <= args.split_ascii_whitespace().count());
        prop_assert!(schedule.len() <= args.split_ascii_whitespace().count());
        for e in errors {
            let text = alloc::format!("{e}");
            prop_assert!(!text.contains(['\n', '\r']) && text.len() < 400, "{}", text);
        }
    }

    #[test]
    fn random_hyp_bootargs_never_panic(
        args in prop::collection::vec(
            (prop_oneof![
                Just("hyp.snapshot="), Just("hyp.pause="), Just("hyp.resume="),
                Just("hyp.migrate="), Just("hyp.migrate-storm="), Just("hyp.dirty-harvest="),
                Just("hyp.dirty-check="), Just("hyp.stats="), Just("hyp."),
            ], "[a-z0-9@,=./]{0,30}"),
            0..10)
    ) {
        let line: Vec<_> = args.iter().map(|(k, v)| alloc::format!("{k}{v}")).collect();
        let _ = schedule_from_bootargs(&line.join(" "));
    }
}
