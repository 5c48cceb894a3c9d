use super::*;
use alloc::format;
use alloc::string::String;

#[test]
fn help_lists_every_command_from_the_table() {
    let mut lines = alloc::vec::Vec::new();
    help(&mut |args| lines.push(alloc::fmt::format(args)));
    let width = "snapshot FILE [--live] [--base FILE] [VM]".len();
    assert_eq!(lines.len(), COMMANDS.len() + 1);
    for (line, spec) in lines.iter().zip(&COMMANDS) {
        assert!(line.starts_with(spec.name), "{line}");
        assert!(line.ends_with(spec.about), "{line}");
        // The usage is padded to one column, so descriptions line up.
        assert_eq!(line.find(spec.about), Some(width + 1), "{line}");
    }
    assert_eq!(
        format!("{}", Kind::Snapshot.spec()),
        String::from("snapshot FILE [--live] [--base FILE] [VM] ") + Kind::Snapshot.spec().about
    );
    assert_eq!(lines[COMMANDS.len()], VM_NOTE);
    assert_eq!(format!("{}", Kind::Vms.spec().usage()), "vms");
}
